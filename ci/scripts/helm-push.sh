#!/bin/sh
# helm_builder:push:job: upload the packaged chart to the project's Helm
# registry channel $CHANNEL with the job token; any HTTP error fails the job.
# With the chart_oci input, also push it as an OCI artifact to the project's
# container registry ($CI_REGISTRY_IMAGE/charts/<name>:<version>) and hand its
# digest on, for docker_builder:sign:job to sign.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_API_V4_URL CI_PROJECT_ID CI_JOB_TOKEN CHART_NAME CHART_VERSION
fit_names
package="build/chart/$CHART_NAME-$CHART_VERSION.tgz"
[ -f "$package" ] || die "$package is missing: helm_builder:build:job must run first and keep it as an artifact"
# alpine/helm has curl; nothing is installed at run time (see helm-deploy.sh).
command -v curl >/dev/null ||
	die "curl is not in this job's image: set the helm_image input to an image with Helm and curl (alpine/helm has both)"

url="$CI_API_V4_URL/projects/$CI_PROJECT_ID/packages/helm/api/$CHANNEL/charts"
private_helm_home
# The token goes to curl through a private config file, not the command line.
config=$helm_home/curl-config
printf 'user = "gitlab-ci-token:%s"\n' "$CI_JOB_TOKEN" >"$config"
# GitLab's CA: system CAs plus the bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE.
trust_ca
tls=$(tls_flags curl)
eval "set -- $tls"

log "uploading $package to $url"
curl_checked build/helm-push.json "$url" "the Helm registry refused $package" "" \
	"$@" --config "$config" --form "chart=@$package"
printf 'CHART_NAME=%s\nCHART_VERSION=%s\nCHART_CHANNEL=%s\n' "$CHART_NAME" "$CHART_VERSION" "$CHANNEL" >build/chart-pushed.env
log "pushed $CHART_NAME $CHART_VERSION to channel $CHANNEL"

is_true "${PIPELINE_CHART_OCI:-false}" || exit 0
require_vars CI_REGISTRY CI_REGISTRY_IMAGE CI_REGISTRY_USER CI_REGISTRY_PASSWORD
# helm registry login names its TLS options differently from helm push; with a
# private CA both read trust_ca's bundle (SSL_CERT_FILE, set above).
if is_true "${INSECURE_REGISTRY:-false}"; then
	warn_insecure
	set -- --insecure
else
	set --
fi
# The password goes through stdin into the job's private Helm home (helm drops
# the here-document's newline). (A here-document, not a pipe: tls_checked must
# run in this shell to stop it.)
tls_checked "the registry $CI_REGISTRY" helm registry login "$CI_REGISTRY" \
	--username "$CI_REGISTRY_USER" --password-stdin "$@" >&2 <<-PASSWORD ||
	$CI_REGISTRY_PASSWORD
PASSWORD
	die "helm cannot log in to the container registry $CI_REGISTRY"
tls=$(tls_flags helm)
eval "set -- $tls"
repository=$CI_REGISTRY_IMAGE/charts
log "helm push $package oci://$repository"
pushed=$(helm push "$package" "oci://$repository" "$@" 2>&1) ||
	die "the container registry refused the chart $package: $(printf '%s' "$pushed" | tail -n 1)"
printf '%s\n' "$pushed" >&2
digest=$(printf '%s\n' "$pushed" | sed -n 's/^Digest: *\(sha256:[0-9a-f]\{64\}\)$/\1/p')
[ -n "$digest" ] || die "helm push printed no digest for $package: use a helm image with Helm 3.8 or later"
printf 'CHART_OCI_REPOSITORY=%s\nCHART_OCI_DIGEST=%s\n' "$repository/$CHART_NAME" "$digest" >>build/chart-pushed.env
log "pushed $repository/$CHART_NAME:$CHART_VERSION as $digest"
