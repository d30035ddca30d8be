#!/bin/sh
# docker_builder:sbom:job: write a CycloneDX SBOM of each platform's image in the
# index docker_builder:push:job pushed (IMAGE_REPOSITORY@IMAGE_DIGEST), with syft
# taken from the digest-pinned image SYFT_IMAGE (input syft_image), into
# build/sbom/<arch>.cdx.json; docker_builder:sign:job attests them with cosign.
# syft's images have no shell: this job runs in crane's image, which copies the
# syft program out of SYFT_IMAGE (crane export) and runs it.
# Secrets: the registry password goes through stdin into a job-private docker
# config, which crane and syft read; it is never an argument or a log line.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_REGISTRY CI_REGISTRY_USER CI_REGISTRY_PASSWORD IMAGE_REPOSITORY IMAGE_DIGEST SYFT_IMAGE

# The program that reads every layer of the image with the job's registry
# credentials runs only as the exact image the input names.
case $SYFT_IMAGE in
*@sha256:*) ;;
*) die "the syft_image input '$SYFT_IMAGE' is not pinned by digest: give it as <image>:<tag>@sha256:<digest>" ;;
esac

# runner_platform: the platform of the runner (crane picks this one of a
# multi-platform image, as a container runtime would).
runner_platform() {
	case $(uname -m) in
	x86_64) printf '%s\n' linux/amd64 ;;
	aarch64 | arm64) printf '%s\n' linux/arm64 ;;
	*) die "no syft image platform for this runner's machine $(uname -m): run docker_builder:sbom:job on an amd64 or arm64 runner" ;;
	esac
}

# The registry's CA: system CAs plus the bundle of PIPELINE_CA_FILE or
# CI_SERVER_TLS_CA_FILE (SSL_CERT_FILE, which crane and syft read).
trust_ca
tls=$(tls_flags crane) || exit 1
if is_true "${INSECURE_REGISTRY:-false}"; then
	export SYFT_REGISTRY_INSECURE_SKIP_TLS_VERIFY=true
fi
# syft asks anchore.io for a newer release on every start: not from a pipeline.
export SYFT_CHECK_FOR_APP_UPDATE=false
# Compact JSON, whatever a CI/CD variable or the project's .syft.yaml says:
# name_platform edits it.
export SYFT_FORMAT_CYCLONEDX_JSON_PRETTY=false

work=$(mktemp -d)
DOCKER_CONFIG=$work/docker
export DOCKER_CONFIG
trap 'rm -rf "$work"' EXIT
crane_login
eval "set -- $tls"

platform=$(runner_platform) || exit 1
log "crane export --platform $platform $SYFT_IMAGE"
tls_checked "the registry of $SYFT_IMAGE" crane export "$@" --platform "$platform" "$SYFT_IMAGE" "$work/syft.tar" ||
	die "cannot pull the syft_image input $SYFT_IMAGE: crane's error is above"
mkdir "$work/syft"
tar -x -f "$work/syft.tar" -C "$work/syft"
rm -f "$work/syft.tar"
[ -f "$work/syft/syft" ] ||
	die "the syft_image input $SYFT_IMAGE has no /syft: use an anchore/syft release image"
chmod +x "$work/syft/syft"
"$work/syft/syft" version >&2

image=$IMAGE_REPOSITORY@$IMAGE_DIGEST
index=$(tls_checked "the registry $CI_REGISTRY" crane manifest "$@" "$image") ||
	die "cannot read the image index $image: crane's error is above"
architectures=$(index_architectures "$index")
[ -n "$architectures" ] ||
	die "$image is not an image index with platforms: docker_builder:push:job pushes one; check IMAGE_DIGEST"

# name_platform SBOM PLATFORM: record in SBOM which platform's image of the index
# it lists, as the property PLATFORM_PROPERTY of its subject (metadata.component:
# the index, by digest); the verify job requires an attested SBOM per platform.
# syft writes compact JSON whose first "component" object is that subject.
name_platform() {
	sed 's|"component":{|&"properties":[{"name":"'"$PLATFORM_PROPERTY"'","value":"'"$2"'"}],|' "$1" >"$1.named"
	mv "$1.named" "$1"
	grep -q "\"name\":\"$PLATFORM_PROPERTY\",\"value\":\"$2\"" "$1" ||
		die "the SBOM syft wrote ($1) has no metadata.component to name $2 in: check the syft_image input"
}

# CycloneDX 1.6, named: a newer syft does not change the format under the SBOM's
# readers. (syft's --quiet would hide its errors too; off a terminal it prints
# only warnings and errors anyway.)
mkdir -p build/sbom
for arch in $architectures; do
	sbom=build/sbom/$arch.cdx.json
	set -- scan --platform "linux/$arch" "registry:$image" --output "cyclonedx-json@1.6=$sbom"
	log "syft $*"
	tls_checked "the registry $CI_REGISTRY" "$work/syft/syft" "$@" ||
		die "syft could not write the SBOM of $image for linux/$arch: its error is above"
	name_platform "$sbom" "linux/$arch"
	log "wrote $sbom"
done
