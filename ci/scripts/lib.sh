# shellcheck shell=sh
# Helpers shared by the pipeline's job scripts; sourced, never run.
# POSIX sh only: the job images (kaniko and crane debug, alpine/helm) have
# nothing but BusyBox.

# log MESSAGE: progress for the job log, on stderr so stdout stays data.
log() {
	printf '%s\n' "$*" >&2
}

# die MESSAGE: stop the job with one line saying what is wrong and the fix.
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

# debug MESSAGE: extra lines only when PIPELINE_DEBUG=true; never pass secrets.
debug() {
	if [ "${PIPELINE_DEBUG:-false}" = true ]; then
		printf 'debug: %s\n' "$*" >&2
	fi
}

# require_vars NAME...: every named variable must be set and non-empty.
require_vars() {
	for name in "$@"; do
		eval "value=\${$name:-}"
		# shellcheck disable=SC2154 # assigned by the eval above
		[ -n "$value" ] || die "$name is not set: GitLab sets it in a pipeline; locally pass it with --variable $name=..."
	done
}

# is_true VALUE: the input booleans arrive as the strings true/false.
is_true() {
	[ "${1:-}" = true ]
}

# short_hash TEXT: 8 hex digits of TEXT's SHA-256, a stable suffix for shortened names.
short_hash() {
	printf '%s' "$1" | sha256sum | cut -c1-8
}

# fit_name VALUE MAX: VALUE itself when it is a DNS label of at most MAX
# characters; else its slug (GitLab's CI_COMMIT_REF_SLUG rule); and when
# the slug is too long, its head plus "-" and a hash of VALUE.
fit_name() {
	fit_value=$1
	fit_max=$2
	if [ "${#fit_value}" -le "$fit_max" ] && printf '%s' "$fit_value" | grep -Eqx '[a-z0-9]([a-z0-9-]*[a-z0-9])?'; then
		printf '%s\n' "$fit_value"
		return
	fi
	fit_slug=$(printf '%s' "$fit_value" | tr '[:upper:]' '[:lower:]' | sed -e 's/[^a-z0-9][^a-z0-9]*/-/g' -e 's/^-//' -e 's/-$//')
	if [ -n "$fit_slug" ] && [ "${#fit_slug}" -le "$fit_max" ]; then
		printf '%s\n' "$fit_slug"
		return
	fi
	fit_head=$(printf '%s' "$fit_slug" | cut -c1-$((fit_max - 9)) | sed -e 's/-*$//')
	if [ -n "$fit_head" ]; then
		printf '%s-%s\n' "$fit_head" "$(short_hash "$fit_value")"
	else
		short_hash "$fit_value"
	fi
}

# fit_host NAME: every dot-separated label of NAME made a DNS label (<= 63).
fit_host() {
	fit_host_out=""
	fit_host_rest=$1
	while [ -n "$fit_host_rest" ]; do
		fit_host_label=${fit_host_rest%%.*}
		case $fit_host_rest in
		*.*) fit_host_rest=${fit_host_rest#*.} ;;
		*) fit_host_rest="" ;;
		esac
		[ -n "$fit_host_label" ] || continue
		fit_host_out="$fit_host_out${fit_host_out:+.}$(fit_name "$fit_host_label" 63)"
	done
	[ "${#fit_host_out}" -le 253 ] || die "host $fit_host_out is longer than 253 characters: choose a shorter base_domain input"
	printf '%s\n' "$fit_host_out"
}

# TIER_NAMES: the names each tier's row of the table in templates/pipeline/template.yml sets
# (the variables TIER_PROD_<NAME> and TIER_DEV_<NAME>).
TIER_NAMES="NS RELEASE_NAME CHANNEL IMAGE_TAG HOST INGRESS_CLASS_NAME"

# tier_names TIER BRANCH: set each of TIER_NAMES that is not set yet (a name set
# by hand, as a CI/CD variable, wins) to TIER's template, with every <branch>
# in it replaced by BRANCH (a branch slug).
tier_names() {
	case $1 in
	prod) tier_prefix=TIER_PROD ;;
	dev) tier_prefix=TIER_DEV ;;
	*) die "PIPELINE_TIER is '$1', not prod or dev: the pipeline's workflow rules set it" ;;
	esac
	for tier_name in $TIER_NAMES; do
		eval "tier_set=\${$tier_name:-}"
		[ -z "$tier_set" ] || continue
		require_vars "${tier_prefix}_$tier_name"
		eval "tier_rest=\$${tier_prefix}_$tier_name"
		tier_value=""
		while :; do
			case $tier_rest in
			*"<branch>"*)
				[ -n "$2" ] || die "${tier_prefix}_$tier_name needs a branch, and CI_COMMIT_REF_SLUG is empty: run a branch pipeline"
				tier_value="$tier_value${tier_rest%%"<branch>"*}$2"
				tier_rest=${tier_rest#*"<branch>"}
				;;
			*) break ;;
			esac
		done
		eval "$tier_name=\$tier_value\$tier_rest"
		# shellcheck disable=SC2163 # the name held in tier_name is exported
		export "$tier_name"
	done
}

# fit_names: make the pipeline's names valid for Helm, Kubernetes and DNS.
# In a pipeline (PIPELINE_TIER set) they come from its tier's row first.
# Names that already are valid (every DNS-label branch) stay exactly as set.
fit_names() {
	if [ -n "${PIPELINE_TIER:-}" ]; then
		tier_names "$PIPELINE_TIER" "${CI_COMMIT_REF_SLUG:-}"
	fi
	require_vars NS RELEASE_NAME CHANNEL IMAGE_TAG HOST
	NS=$(fit_name "$NS" 63)
	RELEASE_NAME=$(fit_name "$RELEASE_NAME" 53)
	CHANNEL=$(fit_name "$CHANNEL" 63)
	IMAGE_TAG=$(fit_name "$IMAGE_TAG" 128)
	HOST=$(fit_host "$HOST")
	export NS RELEASE_NAME CHANNEL IMAGE_TAG HOST
	debug "names: NS=$NS RELEASE_NAME=$RELEASE_NAME CHANNEL=$CHANNEL IMAGE_TAG=$IMAGE_TAG HOST=$HOST"
}

# helm_major: the major version of the helm on PATH (3 or 4).
helm_major() {
	helm_version=$(helm version --template '{{.Version}}')
	helm_version=${helm_version#v}
	helm_version=${helm_version%%.*}
	case $helm_version in
	'' | *[!0-9]*) die "cannot read the Helm version from 'helm version': use an image with Helm 3 or 4" ;;
	esac
	printf '%s\n' "$helm_version"
}

# helm_rollback_flag: roll back a failed upgrade by itself (Helm 4 renamed --atomic).
# (BusyBox sh ignores set -e inside a command substitution: failures exit by hand.)
helm_rollback_flag() {
	helm_major_version=$(helm_major) || exit 1
	if [ "$helm_major_version" -ge 4 ]; then
		printf '%s\n' --rollback-on-failure
	else
		printf '%s\n' --atomic
	fi
}

# private_helm_home: Helm's config, cache and repositories in a job-private
# folder, so registry credentials never outlive the job on a shell runner.
private_helm_home() {
	helm_home=$(mktemp -d)
	trap 'rm -rf "$helm_home"' EXIT
	export HELM_CONFIG_HOME="$helm_home/config" HELM_CACHE_HOME="$helm_home/cache" HELM_DATA_HOME="$helm_home/data"
}

# warn_insecure: say loudly that TLS verification is off, and why.
warn_insecure() {
	log "WARNING: TLS verification is off for the registries (input insecure_registry=true)"
}

# shell_words WORD...: the words shell-quoted, for `eval "set -- ..."`.
shell_words() {
	for shell_word in "$@"; do
		printf "'%s' " "$(printf '%s' "$shell_word" | sed "s/'/'\\\\''/g")"
	done
}

# tls_flags TOOL: TOOL's TLS options as shell words, for
#   tls=$(tls_flags TOOL) && eval "set -- $tls ..."
# Verification is off only behind the insecure_registry input (said loudly);
# otherwise helm and curl trust the GitLab server's own CA when the runner hands
# one over (CI_SERVER_TLS_CA_FILE). TOOL: kaniko, crane, cosign, helm, curl (the
# registries) or gitlab-api (curl to the GitLab API: never insecure).
tls_flags() {
	tls_tool=$1
	case $tls_tool in
	kaniko | crane | cosign | helm | curl | gitlab-api) ;;
	*) die "tls_flags: unknown tool '$tls_tool': use kaniko, crane, cosign, helm, curl or gitlab-api" ;;
	esac
	if [ "$tls_tool" != gitlab-api ] && is_true "${INSECURE_REGISTRY:-false}"; then
		warn_insecure
		case $tls_tool in
		kaniko) shell_words --skip-tls-verify --skip-tls-verify-pull ;;
		crane | curl) shell_words --insecure ;;
		cosign) shell_words --allow-insecure-registry ;;
		helm) shell_words --insecure-skip-tls-verify ;;
		esac
	elif [ -n "${CI_SERVER_TLS_CA_FILE:-}" ]; then
		case $tls_tool in
		helm) shell_words --ca-file "$CI_SERVER_TLS_CA_FILE" ;;
		curl | gitlab-api) shell_words --cacert "$CI_SERVER_TLS_CA_FILE" ;;
		esac
	fi
}

# curl_checked BODY URL REFUSED HINT [CURL-ARGS...]: call URL with curl, the
# answer in the file BODY. Unreachable, or any status but 2xx, stops the job
# with one line: REFUSED, the HTTP status, the server's answer and HINT.
# Secrets go to curl in files (--config, --header @file), never as arguments.
curl_checked() {
	curl_body=$1
	curl_url=$2
	curl_refused=$3
	curl_hint=$4
	shift 4
	curl_status=$(curl --silent --show-error --output "$curl_body" --write-out '%{http_code}' "$@" "$curl_url") ||
		die "cannot reach $curl_url: check CI_API_V4_URL and the runner's network"
	case $curl_status in
	2??) ;;
	*) die "$curl_refused with HTTP $curl_status: $(cat "$curl_body")${curl_hint:+; $curl_hint}" ;;
	esac
}
