"""Liveness and readiness."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_while_serving(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready"})


def test_readyz_is_503_once_draining(client: FlaskClient) -> None:
    # The view asks the server's READINESS callable on every request; how the drain is shared
    # between processes is the server's part and is tested there.
    client.application.config["READINESS"] = lambda: "draining"
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "draining"})
    # Liveness stays green: the pod is healthy, only leaving.
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_until_every_worker_has_started(client: FlaskClient) -> None:
    client.application.config["READINESS"] = lambda: "starting"
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "starting"})
    assert client.get("/healthz").status_code == 200
