#!/bin/sh
# Install the chart through the GitLab agent's kube context.
#   helm-deploy.sh dry-run  helm_builder:test:deploy:job: the chart in the
#                           repository, --dry-run=server against the cluster,
#                           then its manifests through the API server's
#                           admission as a server-side dry run (kubectl)
#   helm-deploy.sh install  helm:deploy:job: exactly the chart version and the
#                           image digest this pipeline pushed (with the
#                           signing input on, the one whose signature
#                           docker_builder:verify:job verified); waits for
#                           readiness, rolls back by itself on failure, then
#                           runs the chart's tests (helm test) and, with the
#                           verify input, probes the public host (prove.py)
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

mode=${1:-}
fit_names
require_vars KUBE_CONTEXT
private_helm_home

# GitLab's Helm registry and the agent server (KAS), whose kubeconfig from GitLab
# carries no CA, are verified against the system CAs plus the bundle of
# PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE (SSL_CERT_FILE, read by helm and kubectl).
trust_ca
tls=$(tls_flags helm)
eval "set -- $tls"

# pull_credential: with the pull_secret input deploy-token, the Helm flags that
# hand GitLab's gitlab-deploy-token (CI_DEPLOY_USER, CI_DEPLOY_PASSWORD) to the
# chart's pull Secret, as shell words; nothing for the other choices. Why files
# and --set-file: `--set` would put the password in the process list and the
# job log's command line, and a values file under build/values/ is an
# artifact; kubectl applying a Secret from stdin would need kubectl in every
# Helm job and leave a Secret that `helm uninstall` does not remove. The files
# live in the job's private Helm home (mode 0700, files 0600, removed on exit),
# outside the project directory, so no artifact can pick them up; the printf
# that writes them is a shell builtin, so the password is in no argv either.
pull_credential() {
	[ "${PULL_SECRET:-deploy-token}" = deploy-token ] || return 0
	if [ -z "${CI_DEPLOY_USER:-}" ] || [ -z "${CI_DEPLOY_PASSWORD:-}" ]; then
		die "CI_DEPLOY_USER or CI_DEPLOY_PASSWORD is empty: create a project deploy token named exactly gitlab-deploy-token with scope read_registry (Settings > Repository > Deploy tokens), or set the pull_secret input to an existing Secret's name or none"
	fi
	(
		umask 077
		printf '%s' "$CI_DEPLOY_USER" >"$helm_home/pull-username"
		printf '%s' "$CI_DEPLOY_PASSWORD" >"$helm_home/pull-password"
	) || exit 1
	shell_words --set-file "pullSecret.username=$helm_home/pull-username" \
		--set-file "pullSecret.password=$helm_home/pull-password"
}
# Checked first: a missing deploy token stops the job before any deploy step.
pull=$(pull_credential) || exit 1

# With the signing input on, only the digest whose signature
# docker_builder:verify:job verified deploys (checked before any Helm command).
if [ "$mode" = install ] && [ "${PIPELINE_SIGNING:-off}" != off ] &&
	{ [ -z "${VERIFIED_IMAGE_DIGEST:-}" ] || [ "$VERIFIED_IMAGE_DIGEST" != "${IMAGE_DIGEST:-}" ]; }; then
	die "image ${IMAGE_REPOSITORY:-${CI_REGISTRY_IMAGE:-}}@${IMAGE_DIGEST:-<no digest>} is not the digest docker_builder:verify:job verified (${VERIFIED_IMAGE_DIGEST:-none}): with the signing input ${PIPELINE_SIGNING}, only a verified image deploys"
fi

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
	# (A here-document, not a pipe: tls_checked must run in this shell to stop it.)
	tls_checked "the Helm registry $repo_url" helm repo add project "$repo_url" \
		--username gitlab-ci-token --password-stdin "$@" >&2 <<-TOKEN ||
		$CI_JOB_TOKEN
	TOKEN
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

# verify_wanted: whether the verify input asks to probe this deploy's host.
verify_wanted() {
	case ${PIPELINE_VERIFY:-review} in
	always) return 0 ;;
	review) [ "${PIPELINE_TIER:-}" = dev ] ;;
	*) return 1 ;;
	esac
}

# need_python: python3 for the prober, from the job's image (helm_kubectl_image:
# alpine/k8s has it), checked before anything is deployed. Nothing is installed
# at run time: an image built FROM alpine:edge and never rebuilt (alpine/helm:4.1.4)
# would get today's edge packages onto its stale base from apk.
need_python() {
	command -v python3 >/dev/null 2>&1 ||
		die "the verify input runs the prober with python3, which this job's image lacks: set the helm_kubectl_image input to an image with Helm, kubectl and python3 (alpine/k8s has them), or set verify to never"
}

# prove ARGS...: become the prober, against the deployed host: its table goes to
# the log, its JSON to build/verify/prove.json (an artifact of the job). It
# replaces the (sub)shell it runs in, so run it in `( )` or with `&`, where $!
# is then the prober itself.
prove() {
	set -- "${VERIFY_URL:-https://$HOST}" --json-file build/verify/prove.json "$@"
	if [ -n "${VERIFY_CA_FILE:-}" ]; then
		set -- "$@" --ca-file "$VERIFY_CA_FILE"
	fi
	log "python3 prove.py $*"
	exec python3 "$(dirname "$0")/prove.py" "$@" >&2
}

mkdir -p build/deploy
case $mode in
dry-run)
	chart=${CHART_DIR:-chart}
	[ -f "$chart/Chart.yaml" ] || die "$chart/Chart.yaml is missing: set the chart_dir input to the chart's folder"
	command -v kubectl >/dev/null ||
		die "kubectl is not in this job's image: set the helm_kubectl_image input to an image with Helm, kubectl and sh"
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
# Every value Helm gets, as shell words: the pull credential's files, the
# pipeline's values, the project's extra values file (last, so it wins).
chart_values="$pull $(shell_words --values "$values")"
if [ -n "${VALUES_FILE:-}" ]; then
	chart_values="$chart_values $(shell_words --values "$VALUES_FILE")"
fi
eval "set -- upgrade --install \"\$RELEASE_NAME\" \"\$chart\" --namespace \"\$NS\" --kube-context \"\$KUBE_CONTEXT\" \"\$@\" $chart_values"
prover=""
if [ "$mode" = install ] && verify_wanted; then
	need_python
	rm -rf build/verify
	mkdir -p build/verify
	# A rollout check needs something to roll from: a first install has no host yet.
	if is_true "${PIPELINE_VERIFY_DURING:-false}" &&
		helm status "$RELEASE_NAME" --namespace "$NS" --kube-context "$KUBE_CONTEXT" >/dev/null 2>&1; then
		# Asks /version ten times a second until the TERM below, then measures.
		prove --during 3600 &
		prover=$!
	fi
fi

log "helm $*"
kas="the agent server (KAS) of context $KUBE_CONTEXT"
deployed=0
if [ "$mode" = dry-run ]; then
	# A dry run prints the rendered manifests, the pull Secret among them: not for the log.
	tls_checked "$kas" helm "$@" >/dev/null || deployed=$?
else
	tls_checked "$kas" helm "$@" >&2 || deployed=$?
fi
if [ -n "$prover" ]; then
	kill -TERM "$prover" 2>/dev/null || true
fi
if [ "$deployed" != 0 ]; then
	[ -z "$prover" ] || wait "$prover" || true
	[ "$mode" = install ] || die "the cluster refused release $RELEASE_NAME in $NS: helm's error above names the object and the rule"
	die "deploying release $RELEASE_NAME to $NS failed, helm's error above says why (helm's status $deployed; a release not ready within ${DEPLOY_TIMEOUT:-5m} is rolled back: helm history $RELEASE_NAME -n $NS)"
fi

if [ "$mode" = dry-run ]; then
	# Helm's --dry-run=server stops before sending any object to the API server
	# (only lookups and schema checks run), so admission (Pod Security, webhooks,
	# quotas) never sees the manifests. The same render goes to the API server
	# as a server-side dry run of a server-side apply, which runs admission and
	# persists nothing: conflicts with the live objects' owners are forced
	# (nothing is written) under Helm's own field manager. Hooks are included:
	# the test pods that helm test creates are Pods, which Pod Security judges.
	# The manifests hold the pull Secret, so they stay in the private Helm home.
	manifests=$helm_home/manifests.yaml
	eval "set -- template \"\$RELEASE_NAME\" \"\$chart\" --namespace \"\$NS\" --kube-context \"\$KUBE_CONTEXT\" --dry-run=server $chart_values"
	log "helm $* (into a private file)"
	helm "$@" >"$manifests"
	set -- apply --server-side --dry-run=server --force-conflicts --field-manager=helm \
		--context "$KUBE_CONTEXT" --namespace "$NS" --filename "$manifests"
	log "kubectl $*"
	kubectl "$@" >&2 ||
		die "the API server refused the manifests in its server-side dry run (admission: Pod Security, webhooks, quotas; its message is above): fix the chart, its values or the namespace's policy"
fi

if [ "$mode" = install ]; then
	# The environment's URL, written before the release test, so a failed test
	# still leaves it.
	printf 'DYNAMIC_ENVIRONMENT_URL=https://%s\n' "$HOST" >build/deploy.env
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
	if verify_wanted; then
		verified=0
		if [ -n "$prover" ]; then
			wait "$prover" || verified=$?
		else
			(prove) || verified=$?
		fi
		[ "$verified" = 0 ] ||
			die "the prober found failures at ${VERIFY_URL:-https://$HOST} (its lines above, build/verify/prove.json); the release stays deployed"
		log "verified ${VERIFY_URL:-https://$HOST}: build/verify/prove.json"
	fi
fi
