#!/bin/sh
# helm_builder:build:job: package the chart with a version unique to this
# pipeline (<chart version>-<pipeline IID>) and the commit as appVersion.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_PIPELINE_IID CI_COMMIT_SHORT_SHA
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

mkdir -p build/chart
log "helm package $chart --version $version --app-version $CI_COMMIT_SHORT_SHA"
helm package "$chart" --version "$version" --app-version "$CI_COMMIT_SHORT_SHA" --destination build/chart >&2
printf 'CHART_NAME=%s\nCHART_VERSION=%s\n' "$name" "$version" >build/chart.env
