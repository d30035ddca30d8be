#!/bin/sh
# Make sure the Debian packages a make target needs are installed.
# Usage: hack/system-deps.sh COMMAND[:PACKAGE] ...
# As root the missing packages are installed with apt-get; anyone else gets
# the exact command to run, and a non-zero exit.
set -eu

missing=""
for want in "$@"; do
	cmd=${want%%:*}
	pkg=${want#*:}
	command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "system-deps: installing${missing} with apt-get" >&2
	apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
	# shellcheck disable=SC2086 # one word per package is intended
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >/dev/null
	exit 0
fi
echo "system-deps: missing${missing}; install with: sudo apt-get install -y${missing}" >&2
exit 1
