#!/bin/sh
# app:test:job: the application's tests on the image's Alpine release with the
# very py3-* packages (and version constraints) the Dockerfile installs, read
# from the Dockerfile itself, so what passes here is what ships.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

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

log "installing the image's packages and the test tools from apk:$packages"
# shellcheck disable=SC2086 # one word per package
apk add --no-cache $packages py3-pytest dash openssl >&2
mkdir -p build
# Browser checks need Chromium and run in `make test`, not on the image's release.
python3 -m pytest -p no:cacheprovider -m "not browser" --junitxml=build/app-test.xml tests/app tests/server
