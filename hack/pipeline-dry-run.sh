#!/bin/sh
# Dry-run the GitLab pipeline on this machine with gitlab-ci-local: validate it,
# list the jobs this branch would run, and run the jobs that need no GitLab,
# registry or cluster (chart lint/render and package) with the real Helm.
# Usage: hack/pipeline-dry-run.sh [gitlab-ci-local options, e.g. --variable KEY=VALUE]
set -eu
cd "$(dirname "$0")/.."

command -v gitlab-ci-local >/dev/null || {
	echo "pipeline-dry-run: gitlab-ci-local is missing; run: make tools" >&2
	exit 1
}

# gitlab-ci-local names the project after the 'origin' remote. A clone without
# one is dry-run from a scratch copy of its files with a made-up remote.
if ! git remote get-url origin >/dev/null 2>&1; then
	branch=$(git rev-parse --abbrev-ref HEAD)
	scratch=$(mktemp -d)/$(basename "$PWD")
	mkdir -p "$scratch"
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$scratch"
	cd "$scratch"
	git init -q -b "$branch"
	git add -A
	git -c user.name=dry-run -c user.email=dry-run@example.com commit -qm "dry run"
	git remote add origin "git@gitlab.example.com:local/$(basename "$PWD").git"
	echo "== no 'origin' remote: dry-running a copy in $scratch"
fi

echo "== validating .gitlab-ci.yml and templates/pipeline/template.yml"
gitlab-ci-local --preview "$@" >/dev/null
echo "== jobs of a push pipeline on $(git rev-parse --abbrev-ref HEAD)"
gitlab-ci-local --list "$@"

if [ ! -f chart/Chart.yaml ]; then
	echo "== no chart/Chart.yaml: skipping the chart jobs" >&2
	exit 0
fi
echo "== running the jobs that need no GitLab: chart lint, render and package"
gitlab-ci-local --force-shell-executor "$@" helm_builder:test:config:job helm_builder:build:job
echo "== rendered manifests and the chart package: $PWD/.gitlab-ci-local/artifacts/"
