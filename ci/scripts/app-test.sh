#!/bin/sh
# app:test:job: the application's tests on the image's Alpine release with the
# very py3-* packages (and version constraints) the Dockerfile installs, read
# from the Dockerfile itself, so what passes here is what ships. The tests' own
# dependencies (pytest, jsonschema, ...) come pinned from a requirements file,
# into a folder of their own that only pytest's process sees: the servers the
# tests start run on the apk packages alone. Which tests: pytest's arguments in
# APP_TESTS (the app_tests input).
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -n "${APP_TESTS:-}" ] || die "no app tests named: set the app_tests input to pytest's arguments (e.g. tests)"

dockerfile=${DOCKERFILE:-Dockerfile}
[ -f "$dockerfile" ] || die "$dockerfile is missing: set the dockerfile input"
# The words of the Dockerfile's `apk add` instruction that name Python packages.
set -f
packages=""
# shellcheck disable=SC2013 # words are wanted: one package per word
for word in $(sed -n '/apk add/,/&&/p' "$dockerfile"); do
	case $word in
	python3 | python3[~=\<\>]* | py3-*) packages="$packages $word" ;;
	esac
done
[ -n "$packages" ] || die "no python3/py3-* packages in $dockerfile's 'apk add': the app tests install what the image installs"

requirements=${APP_TEST_REQUIREMENTS:-requirements/app-test.txt}
[ -f "$requirements" ] ||
	die "$requirements is missing: list the tests' own dependencies there, pinned (see the app_test_requirements input)"

# pip installs the tests' own dependencies (the original project's image has it already).
case " $packages " in
*" py3-pip "* | *" py3-pip"[~=\<\>]*) ;;
*) packages="$packages py3-pip" ;;
esac

log "installing the image's packages and the test tools from apk:$packages"
# shellcheck disable=SC2086 # one word per package
apk add --no-cache $packages dash openssl >&2
# Every package pinned in the file, none of their dependencies (the file lists
# them all), wheels only (no compiler here); --target keeps them out of the
# system's site-packages.
site=$(mktemp -d)
log "installing the tests' own dependencies from $requirements"
python3 -m pip install --disable-pip-version-check --no-cache-dir --no-deps --only-binary=:all: \
	--target "$site" --requirement "$requirements" >&2
mkdir -p build
# pytest splits PYTEST_ADDOPTS as a shell would, so the input's quotes hold
# (-m "not browser"); a PYTEST_ADDOPTS of the project's own comes after it.
PYTEST_ADDOPTS="$APP_TESTS${PYTEST_ADDOPTS:+ $PYTEST_ADDOPTS}" PYTHONPATH="$site" \
	python3 -m pytest -p no:cacheprovider --junitxml=build/app-test.xml
