#!/bin/sh
# helm:stop:job: uninstall a review environment's release. The job has no
# checkout (the branch may be gone) and reads no artifact (the deploy job's
# expire long before a review environment may be stopped): the names come
# from the pipeline's own variables, made valid as helm:deploy:job made them.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

fit_names
require_vars KUBE_CONTEXT
# KAS, whose kubeconfig from GitLab carries no CA, is verified against the system
# CAs plus the bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE (SSL_CERT_FILE).
trust_ca

set -- uninstall "$RELEASE_NAME" --namespace "$NS" --kube-context "$KUBE_CONTEXT" --wait --ignore-not-found
log "helm $*"
tls_checked "the agent server (KAS) of context $KUBE_CONTEXT" helm "$@" >&2
