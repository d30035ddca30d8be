#!/bin/sh
# docker_builder:build:job: build the image of one platform (PLATFORM, set by the
# job's parallel:matrix, e.g. linux/arm64) with kaniko, on a runner of that
# architecture, into build/images/<arch>.tar, without pushing it. Layers are
# cached in the project registry; build args feed the OCI labels.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_PROJECT_DIR CI_REGISTRY CI_REGISTRY_IMAGE CI_REGISTRY_USER CI_REGISTRY_PASSWORD \
	CI_COMMIT_SHA CI_COMMIT_SHORT_SHA CI_COMMIT_REF_NAME CI_PROJECT_URL PLATFORM
fit_names
case $PLATFORM in
linux/amd64 | linux/arm64) ;;
*) die "PLATFORM is '$PLATFORM', not linux/amd64 or linux/arm64: the job's parallel:matrix sets it" ;;
esac
mkdir -p build/images

# The cache repository needs credentials; they go to kaniko's config file
# (created private) and never to the command line or the log.
docker_config=${DOCKER_CONFIG:-/kaniko/.docker}
mkdir -p "$docker_config"
auth=$(printf '%s:%s' "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" | base64 | tr -d '\n')
(
	umask 077
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$CI_REGISTRY" "$auth" >"$docker_config/config.json"
)
unset auth

set -- --context "$CI_PROJECT_DIR" \
	--dockerfile "$CI_PROJECT_DIR/${DOCKERFILE:-Dockerfile}" \
	--destination "$CI_REGISTRY_IMAGE:$IMAGE_TAG" \
	--no-push \
	--custom-platform "$PLATFORM" \
	--tar-path "build/images/${PLATFORM#linux/}.tar" \
	--cache=true \
	--cache-repo "$CI_REGISTRY_IMAGE/cache" \
	--build-arg "APP_VERSION=$CI_COMMIT_SHORT_SHA" \
	--build-arg "APP_COMMIT=$CI_COMMIT_SHA" \
	--build-arg "APP_BRANCH=${CI_COMMIT_BRANCH:-$CI_COMMIT_REF_NAME}" \
	--build-arg "BUILD_DATE=${CI_COMMIT_TIMESTAMP:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}" \
	--build-arg "SOURCE_URL=$CI_PROJECT_URL"
# With --cache-repo, kaniko checks that it may push there before it builds,
# --no-push or not: the registry's private CA must reach it (--registry-certificate).
tls=$(tls_flags kaniko) || exit 1
eval "set -- \"\$@\" $tls"
# PIPELINE_DEBUG does not raise kaniko's --verbosity: its debug log is not
# ours to vouch for (request dumps, build environment), and it must stay secret-free.
log "executor $*"
tls_checked "the registry $CI_REGISTRY (kaniko's --cache-repo)" executor "$@"
