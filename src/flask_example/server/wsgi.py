"""The WSGI app as the server runs it: the Flask app, told the server's readiness.

gunicorn imports this in each worker (`wsgi_app` in gunicorn_conf), after the master has
prepared the environment that the app's metrics read.
"""

from __future__ import annotations

from flask import Flask

from flask_example.app import create_app
from flask_example.server import lifecycle


def application() -> Flask:
    """The app, answering /readyz from this server's lifecycle."""
    return create_app({"READINESS": lifecycle.readiness})
