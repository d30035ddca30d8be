"""Liveness and readiness probes for Kubernetes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from flask_example import lifecycle

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: 503 from the moment shutdown begins, so traffic moves elsewhere first."""
    if lifecycle.is_draining():
        return jsonify(status="draining"), 503
    return jsonify(status="ready"), 200
