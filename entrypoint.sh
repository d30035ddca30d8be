#!/bin/sh
# How the image starts flask-example-1 (and what `make run` runs).
#   entrypoint.sh                  check the environment, then serve with gunicorn
#   entrypoint.sh --log-level X    the same, with extra gunicorn flags
#   entrypoint.sh sh               run any other command instead (docker run IMAGE sh)
set -eu

# Validate every setting with the server's own code; a bad one prints one line and fails.
check_config() {
	python3 -m flask_example
}

# Replace this shell with gunicorn, so signals from Kubernetes or `docker stop` reach the
# server itself and its exit status is the container's.
serve() {
	check_config
	exec gunicorn --config python:flask_example.server.gunicorn_conf "$@"
}

# No arguments, or flags only: the default command with those flags.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- gunicorn "$@"
fi
# The default command serves; anything else runs instead (docker run IMAGE sh).
if [ "$1" = gunicorn ]; then
	shift
	serve "$@"
fi
exec "$@"
