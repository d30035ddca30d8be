#!/bin/sh
# Write the Helm values this pipeline deploys with (the chart's value
# contract) to build/values/deploy.yaml and print the file's path.
# Every value is a name the pipeline computed; none is secret (the pull
# credential goes to Helm from private files: see helm-deploy.sh).
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
	"$CI_PROJECT_PATH_SLUG" "${CI_ENVIRONMENT_SLUG:-}" "${PULL_SECRET:-}" "${INGRESS_NAMESPACE:-}"; do
	case $value in
	*[\"\\]* | *[[:cntrl:]]*) die "value '$value' holds a quote, backslash or control character: fix the variable that set it" ;;
	esac
done

if [ -n "${INGRESS_NAMESPACE:-}" ]; then
	printf '%s' "$INGRESS_NAMESPACE" | grep -Eqx '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?' ||
		die "the ingress_namespace input '$INGRESS_NAMESPACE' is not a namespace name (lowercase letters, digits and '-', at most 63): fix the input"
fi

# quote VALUE: VALUE as a YAML double-quoted scalar (checked above).
quote() {
	printf '"%s"' "$1"
}

# pull_values: how the pods pull the image (the pull_secret input). deploy-token:
# the chart writes its pull Secret for the image's registry; the credential
# itself never comes here (helm-deploy.sh hands it to Helm from private files).
pull_values() {
	repository=${IMAGE_REPOSITORY:-$CI_REGISTRY_IMAGE}
	case ${PULL_SECRET:-deploy-token} in
	none) ;;
	deploy-token)
		# The image reference's first part, when it names a host (as Docker reads it).
		registry=${repository%%/*}
		case $registry in
		"$repository" | *[!a-zA-Z0-9.:-]*) ;;
		*.* | *:* | localhost)
			printf 'pullSecret:\n  create: true\n  registry: %s\n' "$(quote "$registry")"
			return
			;;
		esac
		die "cannot tell the registry host of image $repository: set the pull_secret input to an existing Secret's name or none"
		;;
	*)
		printf '%s' "$PULL_SECRET" | grep -Eqx '[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?' ||
			die "the pull_secret input '$PULL_SECRET' is not deploy-token, none or a Secret name (lowercase letters, digits, '-' and '.'): fix the input"
		printf 'imagePullSecrets:\n  - name: %s\n' "$(quote "$PULL_SECRET")"
		;;
	esac
}

# (A command substitution, where BusyBox sh ignores set -e: failures exit by hand.)
pull=$(pull_values) || exit 1

file=build/values/deploy.yaml
mkdir -p build/values
{
	printf 'image:\n'
	printf '  repository: %s\n' "$(quote "${IMAGE_REPOSITORY:-$CI_REGISTRY_IMAGE}")"
	printf '  tag: %s\n' "$(quote "$IMAGE_TAG")"
	if [ -n "${IMAGE_DIGEST:-}" ]; then
		printf '  digest: %s\n' "$(quote "$IMAGE_DIGEST")"
	fi
	[ -z "$pull" ] || printf '%s\n' "$pull"
	printf 'host: %s\n' "$(quote "$HOST")"
	printf 'channel: %s\n' "$(quote "$CHANNEL")"
	printf 'service:\n  enabled: true\n'
	printf 'ingress:\n  enabled: true\n  className: %s\n' "$(quote "$INGRESS_CLASS_NAME")"
	printf '  tls:\n    enabled: true\n'
	# Only the ingress controller (and the release's helm test pod) may reach the pods.
	if [ -n "${INGRESS_NAMESPACE:-}" ]; then
		printf 'networkPolicy:\n  enabled: true\n  from:\n    - namespaceSelector:\n'
		printf '        matchLabels:\n          kubernetes.io/metadata.name: %s\n' "$(quote "$INGRESS_NAMESPACE")"
	fi
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
	# The project and environment of the pods, as GitLab's annotations name them.
	# GitLab's deploy boards read these only on certificate-based clusters (deprecated);
	# through the agent, the environment's Kubernetes dashboard (environment:kubernetes:agent
	# on the deploy job) shows the release without them. They still let anyone with
	# kubectl tell which project and environment a pod belongs to.
	printf 'podAnnotations:\n'
	printf '  app.gitlab.com/app: %s\n' "$(quote "$CI_PROJECT_PATH_SLUG")"
	if [ -n "${CI_ENVIRONMENT_SLUG:-}" ]; then
		printf '  app.gitlab.com/env: %s\n' "$(quote "$CI_ENVIRONMENT_SLUG")"
	fi
} >"$file"
debug "deploy values: $(tr '\n' ' ' <"$file")"
printf '%s\n' "$file"
