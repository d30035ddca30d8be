"""Every error is problem JSON with the right status, never HTML, never a traceback."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.app.conftest import assert_problem


@pytest.mark.parametrize("path", ["/nope", "/healthz/", "/status", "/delay/1/2", "/%3Cscript%3E"])
def test_unknown_route_is_404_json(client: FlaskClient, path: str) -> None:
    assert assert_problem(client.get(path), 404)["title"] == "Not Found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/healthz", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/metrics", {"GET", "HEAD", "OPTIONS"}),
        ("POST", "/status/200", {"GET", "HEAD", "OPTIONS"}),
        ("TRACE", "/echo", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}),
    ],
)
def test_wrong_method_is_405_json_with_allow(
    client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method)
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == allowed


def test_unhandled_exception_is_500_json_without_details(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def boom() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom", view_func=boom)
    body = assert_problem(app.test_client().get("/boom"), 500)
    assert "secret" not in str(body)
    assert "Traceback" not in str(body)
    # The traceback goes to the log, for the operator.
    assert "secret internals" in caplog.text
