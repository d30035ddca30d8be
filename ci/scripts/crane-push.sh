#!/bin/sh
# docker_builder:push:job: push each platform's image that docker_builder:build:job
# built (build/images/<arch>.tar) under <commit SHA>-<arch>, then assemble one
# image index of them under the immutable commit tag (the full commit SHA: short
# ones can collide) and point $IMAGE_TAG at the index; hand the index's digest
# to deploy (dotenv), so every node pulls the image of its own architecture.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_REGISTRY CI_REGISTRY_IMAGE CI_REGISTRY_USER CI_REGISTRY_PASSWORD CI_COMMIT_SHA
fit_names

# pushed_digest OUTPUT: the sha256 digest of the ref@digest that crane printed.
pushed_digest() {
	printf '%s' "${1##*@}" | grep -Eqx 'sha256:[0-9a-f]{64}' ||
		die "crane printed '$1', not a reference with a sha256 digest: check the crane image input"
	printf '%s\n' "${1##*@}"
}

# The registry's CA: system CAs plus the bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE.
trust_ca
tls=$(tls_flags crane)
eval "set -- $tls"
crane_login

manifests=""
for tar in build/images/*.tar; do
	[ -f "$tar" ] || die "build/images/ holds no image: docker_builder:build:job must run first and keep its artifacts"
	arch=$(basename "$tar" .tar)
	log "crane push $tar $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-$arch"
	pushed=$(tls_checked "the registry $CI_REGISTRY" crane push "$@" "$tar" "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-$arch") || exit 1
	digest=$(pushed_digest "$pushed") || exit 1
	manifests="$manifests $(shell_words --manifest "$CI_REGISTRY_IMAGE@$digest")"
done

# kaniko's images have Docker media types: the index gets the matching type.
# crane reads each image's platform from its config.
eval "set -- index append \"\$@\" --docker-empty-base $manifests --tag \"\$CI_REGISTRY_IMAGE:\$CI_COMMIT_SHA\""
log "crane $*"
pushed=$(tls_checked "the registry $CI_REGISTRY" crane "$@") || exit 1
digest=$(pushed_digest "$pushed") || exit 1

eval "set -- $tls"
log "crane tag $CI_REGISTRY_IMAGE@$digest $IMAGE_TAG"
tls_checked "the registry $CI_REGISTRY" crane tag "$@" "$CI_REGISTRY_IMAGE@$digest" "$IMAGE_TAG" >&2

mkdir -p build
printf 'IMAGE_REPOSITORY=%s\nIMAGE_DIGEST=%s\n' "$CI_REGISTRY_IMAGE" "$digest" >build/image.env
log "pushed the image index $CI_REGISTRY_IMAGE@$digest as $CI_COMMIT_SHA and $IMAGE_TAG"
