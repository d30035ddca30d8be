"""Liveness and readiness probes for Kubernetes.

Readiness is the server's to know (has every worker booted, has shutdown begun), so the app
asks a callable that the server hands it as `create_app({"READINESS": ...})`; it returns
"ready", "starting" or "draining". Without a server (tests, a plain WSGI host) the app is ready.
FAULT_UNREADY_AFTER (see app.faults) turns readiness to "fault" for good.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify

from flask_example.app import faults

Readiness = Callable[[], str]
READY = "ready"

bp = Blueprint("probes", __name__)


def always_ready() -> str:
    """The readiness of an app that no server manages."""
    return READY


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: 503 until every worker has started and from the moment shutdown begins."""
    status = current_app.config["READINESS"]()
    if status == READY and faults.unready(current_app):
        status = "fault"
    return jsonify(status=status), 200 if status == READY else 503
