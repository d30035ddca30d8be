#!/bin/sh
# Install the chart through the GitLab agent's kube context.
#   helm-deploy.sh dry-run  helm_builder:test:deploy:job: the chart in the
#                           repository, --dry-run=server against the cluster
#   helm-deploy.sh install  helm:deploy:job: exactly the chart version and the
#                           image digest this pipeline pushed; waits for
#                           readiness, rolls back by itself on failure, then
#                           runs the chart's tests (helm test)
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

mode=${1:-}
fit_names
require_vars KUBE_CONTEXT
private_helm_home

# The GitLab server's own CA (set by the runner) is trusted for the registry.
tls=$(tls_flags helm)
eval "set -- $tls"

# fetch_chart TLS-ARGS...: download the chart version this pipeline pushed
# (or, with the chart part off, the channel's newest) from the Helm registry
# and print the archive's path. The registry indexes an upload in the
# background, so a missing version is retried for a while.
fetch_chart() {
	require_vars CI_API_V4_URL CI_PROJECT_ID CI_JOB_TOKEN
	if [ -n "${CHART_VERSION:-}" ]; then
		wanted="--version $CHART_VERSION"
	else
		log "no chart version from helm_builder:push:job (build_chart input off): deploying the newest chart in channel $CHANNEL"
		wanted="--devel"
		CHART_NAME=${CHART_NAME:-$(helm show chart "${CHART_DIR:-chart}" | sed -n 's/^name:[[:space:]]*//p')}
	fi
	require_vars CHART_NAME
	repo_url="$CI_API_V4_URL/projects/$CI_PROJECT_ID/packages/helm/$CHANNEL"
	log "helm repo add project $repo_url"
	# (This runs in a command substitution, where BusyBox sh ignores set -e.)
	printf '%s' "$CI_JOB_TOKEN" |
		helm repo add project "$repo_url" --username gitlab-ci-token --password-stdin "$@" >&2 ||
		die "cannot add the Helm registry $repo_url: is the package registry enabled?"
	rm -rf build/deploy
	mkdir -p build/deploy
	attempt=1
	# shellcheck disable=SC2086 # $wanted is one flag, or a flag and its value
	until helm pull "project/$CHART_NAME" $wanted --destination build/deploy "$@" >&2; do
		[ "$attempt" -lt "${CHART_FETCH_ATTEMPTS:-10}" ] ||
			die "chart $CHART_NAME ($wanted) is not in channel $CHANNEL: did helm_builder:push:job succeed?"
		attempt=$((attempt + 1))
		sleep "${CHART_FETCH_DELAY:-6}"
		helm repo update project >&2
	done
	for archive in build/deploy/*.tgz; do
		printf '%s\n' "$archive"
	done
}

mkdir -p build/deploy
case $mode in
dry-run)
	chart=${CHART_DIR:-chart}
	[ -f "$chart/Chart.yaml" ] || die "$chart/Chart.yaml is missing: set the chart_dir input to the chart's folder"
	set -- --dry-run=server
	;;
install)
	chart=$(fetch_chart "$@")
	rollback=$(helm_rollback_flag)
	set -- --wait --timeout "${DEPLOY_TIMEOUT:-5m}" "$rollback"
	;;
*) die "usage: helm-deploy.sh dry-run|install (got '$mode')" ;;
esac

values=$(sh "$(dirname "$0")/deploy-values.sh")
set -- upgrade --install "$RELEASE_NAME" "$chart" --namespace "$NS" --kube-context "$KUBE_CONTEXT" \
	"$@" --values "$values"
if [ -n "${VALUES_FILE:-}" ]; then
	set -- "$@" --values "$VALUES_FILE"
fi
log "helm $*"
if ! helm "$@" >&2; then
	[ "$mode" = install ] || die "the cluster refused release $RELEASE_NAME in $NS: helm's error above names the object and the rule"
	die "deploying release $RELEASE_NAME to $NS failed, helm's error above says why (a release not ready within ${DEPLOY_TIMEOUT:-5m} is rolled back: helm history $RELEASE_NAME -n $NS)"
fi

if [ "$mode" = install ]; then
	# The environment's URL, and what helm:stop:job removes (it has no checkout);
	# written before the release test, so a failed test still leaves them.
	printf 'DYNAMIC_ENVIRONMENT_URL=https://%s\nDEPLOYED_RELEASE_NAME=%s\nDEPLOYED_NAMESPACE=%s\nDEPLOYED_KUBE_CONTEXT=%s\n' \
		"$HOST" "$RELEASE_NAME" "$NS" "$KUBE_CONTEXT" >build/deploy.env
	log "deployed https://$HOST (release $RELEASE_NAME in $NS)"
	if is_true "${PIPELINE_HELM_TEST:-true}"; then
		# The chart's test pod calls the service over verified TLS from inside the cluster.
		# Helm 3 deletes a passed test pod (hook-succeeded) before --logs reads it, and then
		# fails (helm/helm#9098); Helm 4 reads the logs first.
		major=$(helm_major) || exit 1
		set -- test "$RELEASE_NAME" --namespace "$NS" --kube-context "$KUBE_CONTEXT"
		if [ "$major" -ge 4 ]; then
			set -- "$@" --logs
		fi
		set -- "$@" --timeout "${DEPLOY_TIMEOUT:-5m}"
		log "helm $*"
		helm "$@" >&2
	fi
fi
