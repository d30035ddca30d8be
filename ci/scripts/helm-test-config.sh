#!/bin/sh
# helm_builder:test:config:job: lint the chart strictly and render it with
# each of its test value files and with this pipeline's deploy values; the
# manifests are kept as an artifact. Schema errors fail the job.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

chart=${CHART_DIR:-chart}
[ -f "$chart/Chart.yaml" ] || die "$chart/Chart.yaml is missing: set the chart_dir input to the chart's folder"
fit_names
out=build/rendered
mkdir -p "$out"

for values in "$chart"/ci/*values.yaml; do
	[ -f "$values" ] || continue
	name=$(basename "$values" .yaml)
	log "helm lint --strict $chart --values $values"
	helm lint --strict "$chart" --values "$values" >&2
	helm template "$RELEASE_NAME" "$chart" --namespace "$NS" --values "$values" >"$out/$name.yaml"
done

values=$(sh "$(dirname "$0")/deploy-values.sh")
log "helm lint --strict $chart with this pipeline's deploy values ($PIPELINE_TIER)"
set -- --values "$values"
if [ -n "${VALUES_FILE:-}" ]; then
	set -- "$@" --values "$VALUES_FILE"
fi
helm lint --strict "$chart" "$@" >&2
helm template "$RELEASE_NAME" "$chart" --namespace "$NS" "$@" >"$out/pipeline-${PIPELINE_TIER:-dev}.yaml"
log "rendered manifests are in $out/"
