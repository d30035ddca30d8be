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
    """Readiness: 503 until every worker has started and from the moment shutdown begins."""
    if lifecycle.is_draining():
        return jsonify(status="draining"), 503
    if not lifecycle.is_started():
        return jsonify(status="starting"), 503
    return jsonify(status="ready"), 200
