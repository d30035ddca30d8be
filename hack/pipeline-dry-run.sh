#!/bin/sh
# Dry-run the GitLab pipeline on this machine with gitlab-ci-local: validate it,
# list the jobs this branch would run, and run the jobs that need no GitLab,
# registry or cluster (chart lint/render and package) with the real Helm.
# Usage: hack/pipeline-dry-run.sh [--variable KEY=VALUE ...]   (make pipeline)
set -eu
cd "$(dirname "$0")/.."

command -v gitlab-ci-local >/dev/null || {
	echo "pipeline-dry-run: gitlab-ci-local is missing; run: make tools" >&2
	exit 1
}
git remote get-url origin >/dev/null 2>&1 || {
	echo "pipeline-dry-run: this clone has no 'origin' remote; gitlab-ci-local derives the project's name from it: git remote add origin <url>" >&2
	exit 1
}

echo "== validating .gitlab-ci.yml and ci/pipeline.yml"
gitlab-ci-local --preview "$@" >/dev/null
echo "== jobs of a push pipeline on $(git rev-parse --abbrev-ref HEAD)"
gitlab-ci-local --list "$@"

if [ ! -f chart/Chart.yaml ]; then
	echo "== no chart/Chart.yaml yet: skipping the chart jobs" >&2
	exit 0
fi
echo "== running the jobs that need no GitLab: chart lint, render and package"
gitlab-ci-local --force-shell-executor "$@" helm_builder:test:config:job helm_builder:build:job
echo "== rendered manifests and the chart package are under .gitlab-ci-local/artifacts/"
