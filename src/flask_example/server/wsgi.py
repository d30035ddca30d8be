"""The WSGI app as the server runs it: the Flask app, told the server's readiness and TLS.

gunicorn imports this in each worker (`wsgi_app` in gunicorn_conf), after the master has
prepared the environment that the app's metrics read.
"""

from __future__ import annotations

from flask import Flask

from flask_example.app import create_app
from flask_example.server import lifecycle, tls


def application() -> Flask:
    """The app, answering /readyz from this server's lifecycle and /tls from its certificate."""
    app = create_app({"READINESS": lifecycle.readiness, "TLS_FACTS": tls.facts})
    # The certificate metrics follow every load in this worker (gunicorn loads the app before
    # the worker accepts its first connection, so the first load is seen too).
    tls.CERTIFICATES.listeners.append(app.extensions["metrics"].certificate_loaded)
    return app
