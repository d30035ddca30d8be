#!/bin/sh
# helm_builder:build:job: package the chart with a version unique to this
# pipeline (<chart version>-<pipeline IID>) and the commit as appVersion.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_PIPELINE_IID CI_COMMIT_SHA CI_COMMIT_SHORT_SHA
chart=${CHART_DIR:-chart}
[ -f "$chart/Chart.yaml" ] || die "$chart/Chart.yaml is missing: set the chart_dir input to the chart's folder"

# chart_field KEY: a top-level field of Chart.yaml, as Helm reads it.
chart_field() {
	helm show chart "$chart" | sed -n "s/^$1:[[:space:]]*//p" | tr -d "\"'"
}
name=$(chart_field name)
base=$(chart_field version)
base=${base%%+*}
[ -n "$name" ] && [ -n "$base" ] || die "$chart/Chart.yaml has no name or version: fix the chart"
# A pre-release chart version gets the IID as one more identifier.
case $base in
*-*) version="$base.$CI_PIPELINE_IID" ;;
*) version="$base-$CI_PIPELINE_IID" ;;
esac

# The commit is the appVersion. GitLab's Helm registry writes appVersion unquoted
# in its index, and Helm reads a bare 392065e2 or 12345678 as a number and then
# refuses the whole channel ("cannot unmarshal number ... appVersion"). A short id
# of digits and at most one e is therefore given in full (all 40 hex digits looking
# like a number: about once in a hundred million commits).
app_version=$CI_COMMIT_SHORT_SHA
case $app_version in
*[!0-9e]* | *e*e*) ;;
*) app_version=$CI_COMMIT_SHA ;;
esac

mkdir -p build/chart
log "helm package $chart --version $version --app-version $app_version"
helm package "$chart" --version "$version" --app-version "$app_version" --destination build/chart >&2
printf 'CHART_NAME=%s\nCHART_VERSION=%s\n' "$name" "$version" >build/chart.env
