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
set -- uninstall "$RELEASE_NAME" --namespace "$NS" --kube-context "$KUBE_CONTEXT" --wait --ignore-not-found
log "helm $*"
helm "$@"
