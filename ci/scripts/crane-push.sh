#!/bin/sh
# docker_builder:push:job: push image.tar under the immutable commit tag (the
# full commit SHA: short ones can collide), then point $IMAGE_TAG at the same
# digest; hand the digest to deploy (dotenv).
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_REGISTRY CI_REGISTRY_IMAGE CI_REGISTRY_USER CI_REGISTRY_PASSWORD CI_COMMIT_SHA
fit_names
[ -f image.tar ] || die "image.tar is missing: docker_builder:build:job must run first and keep it as an artifact"

# The registry's CA: system CAs plus the bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE.
trust_ca
tls=$(tls_flags crane)
eval "set -- $tls"
# The password goes through stdin, never the command line.
printf '%s' "$CI_REGISTRY_PASSWORD" | crane auth login "$CI_REGISTRY" --username "$CI_REGISTRY_USER" --password-stdin >&2

log "crane push image.tar $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA"
pushed=$(tls_checked "the registry $CI_REGISTRY" crane push "$@" image.tar "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA")
digest=${pushed##*@}
printf '%s' "$digest" | grep -Eqx 'sha256:[0-9a-f]{64}' ||
	die "crane push printed '$pushed', not a reference with a sha256 digest: check the crane image input"

log "crane tag $CI_REGISTRY_IMAGE@$digest $IMAGE_TAG"
tls_checked "the registry $CI_REGISTRY" crane tag "$@" "$CI_REGISTRY_IMAGE@$digest" "$IMAGE_TAG" >&2

mkdir -p build
printf 'IMAGE_REPOSITORY=%s\nIMAGE_DIGEST=%s\n' "$CI_REGISTRY_IMAGE" "$digest" >build/image.env
log "pushed $CI_REGISTRY_IMAGE@$digest as $CI_COMMIT_SHA and $IMAGE_TAG"
