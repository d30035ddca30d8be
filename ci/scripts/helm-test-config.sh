#!/bin/sh
# helm_builder:test:config:job: lint the chart strictly and render it with
# each of its test value files and with this pipeline's deploy values (the
# names of its tier, prod or dev, from the pipeline's workflow rules). The
# manifests (and the deploy values) are kept as an artifact, named after the
# tier. Schema errors fail the job.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

chart=${CHART_DIR:-chart}
[ -f "$chart/Chart.yaml" ] || die "$chart/Chart.yaml is missing: set the chart_dir input to the chart's folder"
case ${PIPELINE_TIER:-} in
prod | dev) ;;
*) die "PIPELINE_TIER is '${PIPELINE_TIER:-}', not prod or dev: the pipeline's workflow rules set it" ;;
esac
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

# The chart with the deploy values of this pipeline's names (NS,
# RELEASE_NAME, HOST, ...), linted strictly and rendered to
# $out/pipeline-<tier>.yaml, its values beside it.
tier=$PIPELINE_TIER
values=$(sh "$(dirname "$0")/deploy-values.sh")
cp "$values" "$out/pipeline-$tier-values.yaml"
log "helm lint --strict $chart with the $tier deploy values (release $RELEASE_NAME in $NS, host $HOST)"
set -- --values "$values"
# The deploy token never comes here: its pull Secret is rendered with a
# stand-in credential, so the artifact shows its shape and no secret.
if [ "${PULL_SECRET:-deploy-token}" = deploy-token ]; then
	set -- "$@" --set-string pullSecret.username=deploy-token-user,pullSecret.password=not-the-deploy-token
fi
if [ -n "${VALUES_FILE:-}" ]; then
	set -- "$@" --values "$VALUES_FILE"
fi
helm lint --strict "$chart" "$@" >&2
helm template "$RELEASE_NAME" "$chart" --namespace "$NS" "$@" >"$out/pipeline-$tier.yaml"
log "rendered manifests (pipeline-$tier.yaml for the deploy values) are in $out/"
