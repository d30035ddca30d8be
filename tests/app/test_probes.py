"""Liveness and readiness."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from flask_example import lifecycle


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_while_serving(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready"})


def test_readyz_is_503_once_draining(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The view asks lifecycle.is_draining() on every request; how the flag is shared between
    # processes is the server's part and is tested there.
    monkeypatch.setattr(lifecycle, "is_draining", lambda: True)
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "draining"})
    # Liveness stays green: the pod is healthy, only leaving.
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_until_every_worker_has_started(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "is_started", lambda: False)
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "starting"})
    assert client.get("/healthz").status_code == 200
