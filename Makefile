# The verbs a newcomer types. Every target installs what it needs, pinned,
# into ignored folders of the repo (.venv/, .tools/, node_modules/) and
# reuses it on the next run.

SHELL := /bin/sh
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Our tools first, so the pinned versions win over anything on the machine.
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONPATH := $(CURDIR)/src
export PYTHONDONTWRITEBYTECODE := 1

SHELL_SCRIPTS := $(shell git ls-files --cached --others --exclude-standard '*.sh' 2>/dev/null)

.PHONY: help run test lint pytest generate bench pipeline tools browser-check cluster cluster-down bench-cluster clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# make run listens on loopback unless told otherwise; every variable of the
# configuration table (docs/server.md) reaches the server from the environment (PORT=9000 make run).
LISTEN_HOST ?= 127.0.0.1
PORT ?= 8080

run: $(VENV)/.runtime ## serve the app on http://127.0.0.1:8080 (or $$LISTEN_HOST:$$PORT) with gunicorn, as the image does
	LISTEN_HOST='$(LISTEN_HOST)' PORT='$(PORT)' ./entrypoint.sh

test: tools lint pytest ## install every tool, then run all linters and tests

lint: $(VENV)/.dev ## ruff, shellcheck, hadolint, yamllint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck $(SHELL_SCRIPTS)
	$(BIN)/hadolint Dockerfile
	$(BIN)/yamllint --strict .

pytest: tools ## run the test suite (pass ARGS=... to select)
	$(BIN)/pytest $(ARGS)

generate: $(VENV)/.dev ## rewrite every generated file (templates/pipeline/scripts.generated.yml, chart/README.md's values, docs/server.md's settings)
	$(BIN)/python -m hack.generate

bench: $(VENV)/.dev .tools/bench/.stamp ## our server against bare Flask and httpbin on gunicorn: ratios, p99, CPU per request; SERVERS=1 adds gthread, sync and granian; PROFILE=<path> profiles; AGAINST=<git ref> compares with that commit's server
	hack/system-deps.sh wrk
	$(BIN)/python hack/bench.py $(if $(AGAINST),--against $(AGAINST)) $(if $(SERVERS),--servers) $(if $(PROFILE),--profile $(PROFILE))

pipeline: tools ## dry-run the GitLab pipeline locally with gitlab-ci-local
	hack/pipeline-dry-run.sh

cluster: tools ## start a local control plane in the background (kubeconfig: build/cluster/kubeconfig)
	$(BIN)/python -m hack.cluster up

cluster-down: $(VENV)/.dev ## stop the local control plane; no process is left
	$(BIN)/python -m hack.cluster down

bench-cluster: tools ## measure the local control plane's start (cold, warm) and helm --wait deploys
	$(BIN)/python -m hack.bench_cluster

browser-check: $(VENV)/.dev ## render the index page in headless Chromium
	hack/system-deps.sh chromium
	$(BIN)/pytest -m browser tests/app

tools: $(VENV)/.dev .tools/.helm .tools/checkov/.stamp .tools/.cluster-tools node_modules/.stamp ## install the pinned tools
	hack/system-deps.sh rsync openssl chromium curl jq busybox nginx docker-registry htpasswd:apache2-utils

$(VENV)/.runtime: requirements/runtime.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/runtime.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

.tools/.helm: hack/install_helm.py
	$(PYTHON) hack/install_helm.py
	touch $@

# kube-apiserver & co., etcd, kwok, crane and the chart checkers (kubeconform, kube-score,
# kube-linter, ct): reused from KUBEBUILDER_ASSETS or PATH, else built with Go (the first build
# takes many minutes; Go's caches make the next ones fast).
.tools/.cluster-tools: hack/cluster_tools.py $(wildcard hack/tools/*/go.mod hack/tools/*/go.sum)
	nice $(PYTHON) hack/cluster_tools.py
	touch $@

.tools/bench/.stamp: requirements/bench.txt requirements/runtime.txt
	test -x .tools/bench/bin/python || $(PYTHON) -m venv .tools/bench
	.tools/bench/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt
	touch $@

.tools/checkov/.stamp: requirements/checkov.txt
	test -x .tools/checkov/bin/python || $(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/checkov.txt
	mkdir -p .tools/bin && ln -sf ../checkov/bin/checkov .tools/bin/checkov
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

clean: ## remove installed tools and caches
	rm -rf $(VENV) .tools node_modules .pytest_cache .ruff_cache build .gitlab-ci-local
