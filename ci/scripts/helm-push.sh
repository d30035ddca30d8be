#!/bin/sh
# helm_builder:push:job: upload the packaged chart to the project's Helm
# registry channel $CHANNEL with the job token; any HTTP error fails the job.
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
# The token goes to curl through a private config file, not the command line.
config=$(mktemp)
trap 'rm -f "$config"' EXIT
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
