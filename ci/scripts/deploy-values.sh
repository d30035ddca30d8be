#!/bin/sh
# Write the Helm values this pipeline deploys with (the chart's value
# contract) to build/values/deploy.yaml and print the file's path.
# Every value is a name the pipeline computed; none is secret.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

fit_names
require_vars CI_REGISTRY_IMAGE CI_PROJECT_PATH_SLUG INGRESS_CLASS_NAME
[ -n "${CERTIFICATE_ISSUER_NAME:-}" ] ||
	die "the certificate_issuer_name input is empty: set it to the cert-manager (Cluster)Issuer that signs the pod's certificate"

# The values are names, so a quote, backslash or control character in one is
# a mistake worth stopping for (checked here, in the script's own shell).
for value in "${IMAGE_REPOSITORY:-$CI_REGISTRY_IMAGE}" "$IMAGE_TAG" "${IMAGE_DIGEST:-}" "$HOST" \
	"$CHANNEL" "$INGRESS_CLASS_NAME" "$CERTIFICATE_ISSUER_NAME" "${CERTIFICATE_ISSUER_KIND:-}" \
	"${CERTIFICATE_ISSUER_GROUP:-}" "${PUBLIC_ISSUER_NAME:-}" "${PUBLIC_ISSUER_KIND:-}" \
	"$CI_PROJECT_PATH_SLUG" "${CI_ENVIRONMENT_SLUG:-}"; do
	case $value in
	*[\"\\]* | *[[:cntrl:]]*) die "value '$value' holds a quote, backslash or control character: fix the variable that set it" ;;
	esac
done

# quote VALUE: VALUE as a YAML double-quoted scalar (checked above).
quote() {
	printf '"%s"' "$1"
}

file=build/values/deploy.yaml
mkdir -p build/values
{
	printf 'image:\n'
	printf '  repository: %s\n' "$(quote "${IMAGE_REPOSITORY:-$CI_REGISTRY_IMAGE}")"
	printf '  tag: %s\n' "$(quote "$IMAGE_TAG")"
	if [ -n "${IMAGE_DIGEST:-}" ]; then
		printf '  digest: %s\n' "$(quote "$IMAGE_DIGEST")"
	fi
	printf 'host: %s\n' "$(quote "$HOST")"
	printf 'channel: %s\n' "$(quote "$CHANNEL")"
	printf 'service:\n  enabled: true\n'
	printf 'ingress:\n  enabled: true\n  className: %s\n' "$(quote "$INGRESS_CLASS_NAME")"
	printf '  tls:\n    enabled: true\n'
	printf 'tls:\n  enabled: true\n'
	printf 'certificate:\n  enabled: true\n  issuerRef:\n'
	printf '    name: %s\n' "$(quote "$CERTIFICATE_ISSUER_NAME")"
	printf '    kind: %s\n' "$(quote "${CERTIFICATE_ISSUER_KIND:-ClusterIssuer}")"
	printf '    group: %s\n' "$(quote "${CERTIFICATE_ISSUER_GROUP:-cert-manager.io}")"
	# The public host's certificate, in its own secret from its own issuer; without
	# a public issuer the ingress controller's default certificate serves the host.
	if [ -n "${PUBLIC_ISSUER_NAME:-}" ]; then
		printf 'publicCertificate:\n  enabled: true\n  issuerRef:\n'
		printf '    name: %s\n' "$(quote "$PUBLIC_ISSUER_NAME")"
		printf '    kind: %s\n' "$(quote "${PUBLIC_ISSUER_KIND:-ClusterIssuer}")"
	fi
	# GitLab's deploy boards find the pods by these two annotations.
	printf 'podAnnotations:\n'
	printf '  app.gitlab.com/app: %s\n' "$(quote "$CI_PROJECT_PATH_SLUG")"
	if [ -n "${CI_ENVIRONMENT_SLUG:-}" ]; then
		printf '  app.gitlab.com/env: %s\n' "$(quote "$CI_ENVIRONMENT_SLUG")"
	fi
} >"$file"
debug "deploy values: $(tr '\n' ' ' <"$file")"
printf '%s\n' "$file"
