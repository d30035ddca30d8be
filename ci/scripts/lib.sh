# shellcheck shell=sh
# Helpers shared by the pipeline's job scripts; sourced, never run.
# POSIX sh only, with BusyBox's tools: kaniko's and crane's debug images have
# nothing but BusyBox; alpine/helm and alpine/k8s are Alpine (BusyBox, plus curl,
# git and yq; alpine/k8s also kubectl, python3 and jq), and the alpine_image jobs
# add what they need with apk from its pinned release.

# Temporary files (mktemp) go to TMPDIR, else /tmp. kaniko's image has no /tmp
# (it is built FROM scratch): there they go to the job's own scripts folder
# (.ci-scripts/job-<id>/, which the image leaves out, as the README says).
if [ -z "${TMPDIR:-}" ] && [ ! -d /tmp ]; then
	TMPDIR=$(cd "$(dirname "$0")" && pwd)
	export TMPDIR
fi

# The property of an SBOM's subject (metadata.component, the image index) that
# names the platform whose image the SBOM lists: sbom.sh writes it, and the
# verify job (cosign.sh) requires an attested SBOM for each platform of the index.
# shellcheck disable=SC2034 # read by the scripts that source this file
PLATFORM_PROPERTY=oci:platform

# index_architectures INDEX-JSON: the architecture of each image an image index lists.
index_architectures() {
	printf '%s\n' "$1" | tr ',' '\n' | sed -n 's/.*"architecture":[[:space:]]*"\([^"]*\)".*/\1/p'
}

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

# is_label VALUE MAX: VALUE is a DNS label (RFC 1123, as Kubernetes names
# objects) of at most MAX characters.
is_label() {
	[ "${#1}" -le "$2" ] && printf '%s' "$1" | grep -Eqx '[a-z0-9]([a-z0-9-]*[a-z0-9])?'
}

# fit_name VALUE MAX: VALUE itself when it is a DNS label of at most MAX
# characters; else its slug (GitLab's CI_COMMIT_REF_SLUG rule: lower case,
# every other character a "-", none at either end; and runs of "-" squeezed to
# one, which GitLab's Helm channel rule needs); and when the slug is too long,
# its head plus "-" and a hash of VALUE.
fit_name() {
	fit_value=$1
	fit_max=$2
	if is_label "$fit_value" "$fit_max"; then
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

# fit_channel VALUE: VALUE itself when GitLab's Helm API takes it as a channel
# (helm_channel_regex in GitLab's lib/gitlab/regex/packages.rb: letters and
# digits, with single ".", "-" or "_" between them; at most 255 here); else
# fit_name's DNS label of it (<= 63).
fit_channel() {
	if [ "${#1}" -le 255 ] && printf '%s' "$1" | grep -Eqx '[a-zA-Z0-9]([._-]?[a-zA-Z0-9])*'; then
		printf '%s\n' "$1"
	else
		fit_name "$1" 63
	fi
}

# fit_image_tag VALUE: VALUE itself when it is an image tag (the OCI
# distribution spec: a letter, digit or "_", then up to 127 of those, "." and
# "-"); else fit_name's DNS label of it (<= 128).
fit_image_tag() {
	if printf '%s' "$1" | grep -Eqx '[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}'; then
		printf '%s\n' "$1"
	else
		fit_name "$1" 128
	fi
}

# with_label VALUE BRANCH LABEL: VALUE with a leading BRANCH replaced by LABEL.
with_label() {
	case $1 in
	"$2"*) printf '%s%s\n' "$3" "${1#"$2"}" ;;
	*) printf '%s\n' "$1" ;;
	esac
}

# apart VALUE PROD: VALUE, or VALUE plus "-" and its hash when it equals PROD
# (a dev pipeline's name must never be prod's, e.g. for a branch `release`).
apart() {
	if [ -n "$2" ] && [ "$1" = "$2" ]; then
		printf '%s-%s\n' "$1" "$(short_hash "$1")"
	else
		printf '%s\n' "$1"
	fi
}

# fit_names: make the names the pipeline's workflow rules set (the table in
# templates/pipeline/template.yml) valid for Kubernetes, Helm, DNS, the image
# registry and GitLab's Helm API, and keep a dev pipeline's CHANNEL and
# IMAGE_TAG off prod's (PROD_CHANNEL, PROD_IMAGE_TAG, which only the dev rule
# sets). A branch whose name is a DNS label leaves every name as GitLab set it;
# any other branch (feature/Login_Form) gives its DNS label (fit_name) where a
# name starts with the branch's name, then each name is made valid by itself.
fit_names() {
	require_vars NS RELEASE_NAME CHANNEL IMAGE_TAG HOST
	fit_branch=${CI_COMMIT_BRANCH:-}
	if [ -n "$fit_branch" ] && ! is_label "$fit_branch" 63; then
		fit_branch_label=$(fit_name "$fit_branch" 63)
		RELEASE_NAME=$(with_label "$RELEASE_NAME" "$fit_branch" "$fit_branch_label")
		CHANNEL=$(with_label "$CHANNEL" "$fit_branch" "$fit_branch_label")
		IMAGE_TAG=$(with_label "$IMAGE_TAG" "$fit_branch" "$fit_branch_label")
		HOST=$(with_label "$HOST" "$fit_branch" "$fit_branch_label")
	fi
	NS=$(fit_name "$NS" 63)
	RELEASE_NAME=$(fit_name "$RELEASE_NAME" 53)
	CHANNEL=$(fit_channel "$CHANNEL")
	CHANNEL=$(apart "$CHANNEL" "${PROD_CHANNEL:-}")
	IMAGE_TAG=$(fit_image_tag "$IMAGE_TAG")
	IMAGE_TAG=$(apart "$IMAGE_TAG" "${PROD_IMAGE_TAG:-}")
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

# crane_login: log crane in to CI_REGISTRY as CI_REGISTRY_USER (its docker
# config, DOCKER_CONFIG's when set). The password goes through stdin, never the
# command line; crane auth login only writes the config: nothing is sent yet.
crane_login() {
	printf '%s' "$CI_REGISTRY_PASSWORD" | crane auth login "$CI_REGISTRY" --username "$CI_REGISTRY_USER" --password-stdin >&2
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

# ca_source: the name of the variable that names the CA bundle of GitLab, its
# registry and KAS (the agent server) for this job: PIPELINE_CA_FILE (a CI/CD
# variable of type File, or a path the runner mounts) when set, else the
# runner's CI_SERVER_TLS_CA_FILE (the file a runner with tls-ca-file writes for
# each job); nothing when neither is set (the system's CAs alone).
ca_source() {
	if [ -n "${PIPELINE_CA_FILE:-}" ]; then
		printf '%s\n' PIPELINE_CA_FILE
	elif [ -n "${CI_SERVER_TLS_CA_FILE:-}" ]; then
		printf '%s\n' CI_SERVER_TLS_CA_FILE
	fi
}

# ca_file: the path of that bundle, checked to hold PEM certificates; nothing
# when no variable names one. (Run it in $( ): failures exit by hand.)
ca_file() {
	ca_name=$(ca_source)
	[ -n "$ca_name" ] || return 0
	eval "ca_path=\$$ca_name"
	# shellcheck disable=SC2154 # assigned by the eval above
	[ -r "$ca_path" ] ||
		die "$ca_name names '$ca_path', which this job cannot read: set PIPELINE_CA_FILE as a CI/CD variable of type File holding the PEM bundle of the CAs of GitLab, its registry and KAS"
	grep -q -- '-----BEGIN CERTIFICATE-----' "$ca_path" ||
		die "$ca_name ($ca_path) holds no PEM certificate: set PIPELINE_CA_FILE as a CI/CD variable of type File holding the PEM bundle of the CAs of GitLab, its registry and KAS"
	printf '%s\n' "$ca_path"
}

# trust_ca: trust the system's CAs plus the bundle of ca_file for the rest of
# the job. SSL_CERT_FILE names a file with both (in the job's temporary folder;
# certificates only, nothing secret): crane, helm and kubectl read it for every
# connection (they are Go programs), the agent's kube context included, whose
# kubeconfig from GitLab carries no CA; curl gets it from tls_flags. kaniko gets
# the bundle itself (tls_flags kaniko). Without a bundle nothing changes.
trust_ca() {
	[ -z "${PIPELINE_CA_BUNDLE:-}" ] || return 0
	trust_file=$(ca_file) || exit 1
	[ -n "$trust_file" ] || return 0
	trust_bundle=$(mktemp)
	for trust_roots in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt /etc/ssl/cert.pem; do
		if [ -n "$trust_roots" ] && [ -r "$trust_roots" ]; then
			cat "$trust_roots" >"$trust_bundle"
			printf '\n' >>"$trust_bundle"
			break
		fi
	done
	cat "$trust_file" >>"$trust_bundle"
	export SSL_CERT_FILE="$trust_bundle" PIPELINE_CA_BUNDLE="$trust_bundle"
	debug "trusting the system's CAs and $(ca_source) ($trust_file)"
}

# untrusted WHERE: stop the job with one line: WHERE's certificate is signed by
# a CA this job does not trust, and the variable that gives it that CA.
untrusted() {
	untrusted_name=$(ca_source)
	if [ -z "$untrusted_name" ]; then
		die "x509: certificate signed by unknown authority at $1: set the CI/CD variable PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of GitLab, its registry and KAS, or give the runner tls-ca-file (it hands jobs CI_SERVER_TLS_CA_FILE)"
	fi
	eval "untrusted_path=\$$untrusted_name"
	# shellcheck disable=SC2154 # assigned by the eval above
	die "x509: certificate signed by unknown authority at $1: the bundle in $untrusted_name ($untrusted_path) lacks the CA that signed it: set the CI/CD variable PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of GitLab, its registry and KAS"
}

# tls_checked WHERE COMMAND...: run COMMAND (its output goes where it would);
# when it fails because it could not verify WHERE's certificate, stop the job
# with untrusted's one line. Otherwise its status is COMMAND's.
tls_checked() {
	tls_where=$1
	shift
	tls_dir=$(mktemp -d)
	# COMMAND's stderr goes to the log and, through tee, to a file; its stdout
	# stays the caller's (fd 3); its status comes back in a file (no pipefail in sh).
	{ { tls_status=0; "$@" || tls_status=$?; printf '%s\n' "$tls_status" >"$tls_dir/status"; } 2>&1 1>&3 3>&- |
		tee "$tls_dir/stderr" >&2; } 3>&1
	tls_status=$(cat "$tls_dir/status")
	tls_refused=false
	grep -q 'x509: certificate signed by unknown authority' "$tls_dir/stderr" && tls_refused=true
	rm -rf "$tls_dir"
	[ "$tls_status" = 0 ] || [ "$tls_refused" = false ] || untrusted "$tls_where"
	return "$tls_status"
}

# tls_flags TOOL: TOOL's TLS options as shell words, for
#   tls=$(tls_flags TOOL) && eval "set -- $tls ..."
# Verification is off only behind the insecure_registry input (said loudly).
# Otherwise, with a CA bundle (ca_file), kaniko gets it for the registry
# (--registry-certificate, added to the system's CAs) and curl the bundle of
# trust_ca (--cacert: system CAs plus it); crane, cosign and helm read trust_ca's
# SSL_CERT_FILE and need no option. TOOL: kaniko, crane, cosign, helm, curl (the
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
		return
	fi
	tls_ca=$(ca_file) || exit 1
	[ -n "$tls_ca" ] || return 0
	case $tls_tool in
	# kaniko's key is the registry's name as in the image reference (host[:port]).
	kaniko) shell_words --registry-certificate "${CI_REGISTRY:?}=$tls_ca" ;;
	curl | gitlab-api) shell_words --cacert "${PIPELINE_CA_BUNDLE:-$tls_ca}" ;;
	esac
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
	curl_errors=$(mktemp)
	curl_status=$(curl --silent --show-error --output "$curl_body" --write-out '%{http_code}' "$@" "$curl_url" 2>"$curl_errors") || {
		cat "$curl_errors" >&2
		# curl's words for a certificate it cannot verify against its CAs (its error 60)
		if grep -Eq 'SSL certificate problem: (unable to get local issuer|self.signed)' "$curl_errors"; then
			rm -f "$curl_errors"
			untrusted "$curl_url"
		fi
		rm -f "$curl_errors"
		die "cannot reach $curl_url: check CI_API_V4_URL and the runner's network"
	}
	rm -f "$curl_errors"
	case $curl_status in
	2??) ;;
	*) die "$curl_refused with HTTP $curl_status: $(cat "$curl_body")${curl_hint:+; $curl_hint}" ;;
	esac
}
