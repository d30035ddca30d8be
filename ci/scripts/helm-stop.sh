#!/bin/sh
# helm:stop:job: uninstall a review environment's release. The job has no
# checkout (the branch may be gone): the release, namespace and kube context
# come from helm:deploy:job's dotenv report.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

for name in DEPLOYED_RELEASE_NAME DEPLOYED_NAMESPACE DEPLOYED_KUBE_CONTEXT; do
	eval "value=\${$name:-}"
	# shellcheck disable=SC2154 # assigned by the eval above
	[ -n "$value" ] || die "$name is not set: helm:stop:job takes it from helm:deploy:job's dotenv report (build/deploy.env); stop the environment from the pipeline that deployed it"
done
# KAS, whose kubeconfig from GitLab carries no CA, is verified against the system
# CAs plus the bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE (SSL_CERT_FILE).
trust_ca

set -- uninstall "$DEPLOYED_RELEASE_NAME" --namespace "$DEPLOYED_NAMESPACE" \
	--kube-context "$DEPLOYED_KUBE_CONTEXT" --wait --ignore-not-found
log "helm $*"
tls_checked "the agent server (KAS) of context $DEPLOYED_KUBE_CONTEXT" helm "$@" >&2
