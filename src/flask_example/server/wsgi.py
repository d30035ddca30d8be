"""The WSGI app as the server runs it: the Flask app, told the server's readiness and TLS,
and how to wait while watching the client (/delay).

gunicorn imports this in each worker (`wsgi_app` in gunicorn_conf), after the master has
prepared the environment that the app's metrics read.
"""

from __future__ import annotations

import select
import time

from flask import Flask

from flask_example.app import create_app
from flask_example.server import lifecycle, tls


def application() -> Flask:
    """The app, answering /readyz from this server's lifecycle and /tls from its certificate."""
    app = create_app(
        {"READINESS": lifecycle.readiness, "TLS_FACTS": tls.facts, "WAIT": wait_for_client}
    )
    # The certificate metrics follow every load in this worker (gunicorn loads the app before
    # the worker accepts its first connection, so the first load is seen too).
    tls.CERTIFICATES.listeners.append(app.extensions["metrics"].certificate_loaded)
    return app


def wait_for_client(environ: dict, seconds: float) -> bool:
    """Sleep `seconds`, or less if the client hangs up first; False when it did.

    Watches the connection for the peer's end of sending (FIN or reset), not for data, so a
    request pipelined behind this one does not end the wait, plain or TLS.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        time.sleep(seconds)
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP)
    # POLLHUP and POLLERR are reported whatever was asked for.
    return not poller.poll(seconds * 1000)
