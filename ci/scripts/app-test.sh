#!/bin/sh
# app:test:job: the application's tests on the image's Alpine release with the
# same py3-* packages the Dockerfile installs, so what passes here is what ships.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

log "installing the image's Python packages and the test tools from apk"
apk add --no-cache python3 py3-flask py3-gunicorn py3-prometheus-client \
	py3-pytest py3-requests py3-cryptography openssl >&2
mkdir -p build
# Browser checks need Chromium and run in `make test`, not in the image's release.
python3 -m pytest -p no:cacheprovider -m "not browser" --junitxml=build/app-test.xml tests/app tests/server
