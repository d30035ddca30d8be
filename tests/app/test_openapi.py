"""The OpenAPI document is valid and true: the app's routes, methods and statuses, no more."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from flask_example.app.diagnostics import ECHO_METHODS

# Flask answers these for every route by itself.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}

WS_UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
# The 101 needs gunicorn's socket, which the test client has not: tests/server/test_websocket.py
# sees it on the real server.
# The same for /tls's 200, which needs a TLS socket: tests/server/test_tls.py; and for the
# 503 of a worker full of WebSocket sessions: tests/server/test_attacks.py.
SEEN_ELSEWHERE = {("/ws/echo", "get", "101"), ("/ws/echo", "get", "503"), ("/tls", "get", "200")}

# (documented path, method, url, request headers, body): each produces one documented status.
REQUESTS: list[tuple[str, str, str, dict[str, str], bytes | None]] = [
    ("/", "get", "/", {"Accept": "text/html"}, None),
    ("/", "get", "/", {"Accept": "application/json", "X-Forwarded-For": "192.0.2.1"}, None),
    ("/", "get", "/", {"Accept": "image/png"}, None),
    ("/version", "get", "/version", {}, None),
    ("/healthz", "get", "/healthz", {}, None),
    ("/readyz", "get", "/readyz", {}, None),
    ("/readyz", "get", "/readyz", {"X-Test-Draining": "yes"}, None),
    ("/metrics", "get", "/metrics", {}, None),
    ("/metrics", "get", "/metrics", {"Accept": "application/openmetrics-text"}, None),
    ("/tls", "get", "/tls", {}, None),
    ("/headers", "get", "/headers", {"X-Test": "1"}, None),
    *[("/echo", m.lower(), "/echo", {}, b"hello") for m in ECHO_METHODS],
    *[("/echo", m.lower(), "/echo", {}, b"x" * (64 * 1024 + 1)) for m in ECHO_METHODS],
    ("/status/{code}", "get", "/status/201", {}, None),
    ("/status/{code}", "get", "/status/302", {}, None),
    ("/status/{code}", "get", "/status/418", {}, None),
    ("/status/{code}", "get", "/status/503", {}, None),
    ("/status/{code}", "get", "/status/101", {}, None),
    ("/delay/{seconds}", "get", "/delay/0", {}, None),
    ("/delay/{seconds}", "get", "/delay/11", {}, None),
    ("/stream/{n}", "get", "/stream/2?interval=0", {}, None),
    ("/stream/{n}", "get", "/stream/0", {}, None),
    ("/sse/{n}", "get", "/sse/2?interval=0", {}, None),
    ("/sse/{n}", "get", "/sse/2?interval=11", {}, None),
    ("/bytes/{n}", "get", "/bytes/10?seed=1", {}, None),
    ("/bytes/{n}", "get", "/bytes/16777217", {}, None),
    ("/sink", "post", "/sink", {}, b"hello"),
    ("/sink", "post", "/sink", {}, b"x" * (32 * 1024 * 1024 + 1)),
    ("/ws/echo", "get", "/ws/echo", {}, None),
    ("/ws/echo", "get", "/ws/echo", {"Upgrade": "websocket", "Connection": "Upgrade"}, None),
    ("/ws/echo", "get", "/ws/echo", WS_UPGRADE, None),
    ("/ws/echo", "get", "/ws/echo", {**WS_UPGRADE, "Sec-WebSocket-Version": "8"}, None),
    ("/openapi.json", "get", "/openapi.json", {}, None),
]


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    """The document as served."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"].startswith("3.1.")


def test_document_names_the_running_version(document: dict[str, Any], app: Flask) -> None:
    assert document["info"]["version"] == app.config["SETTINGS"].version


def test_paths_and_methods_are_exactly_the_app_routes(document: dict[str, Any], app: Flask) -> None:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - AUTOMATIC_METHODS)
    documented = {path: set(item) - {"parameters"} for path, item in document["paths"].items()}
    assert documented == routes


def _documented_key(responses: dict[str, Any], status: int) -> str:
    """The responses key that describes status: exact, else its range (2XX ...)."""
    return str(status) if str(status) in responses else f"{status // 100}XX"


def _media_schema(content: dict[str, Any], content_type: str) -> dict[str, Any]:
    for key, media in content.items():
        if key in ("*/*", content_type) or key == content_type.split(";", maxsplit=1)[0]:
            return media["schema"]
    raise AssertionError(f"{content_type} is not documented among {list(content)}")


def test_every_documented_status_happens_and_every_status_is_documented(
    document: dict[str, Any], client: FlaskClient
) -> None:
    draining = False
    client.application.config["READINESS"] = lambda: "draining" if draining else "ready"
    seen = set()
    for path, method, url, headers, body in REQUESTS:
        draining = "X-Test-Draining" in headers
        response = client.open(url, method=method.upper(), headers=headers, data=body)
        responses = document["paths"][path][method]["responses"]
        key = _documented_key(responses, response.status_code)
        assert key in responses, f"{method} {url} answered an undocumented {response.status_code}"
        seen.add((path, method, key))
        schema = _media_schema(responses[key]["content"], response.content_type)
        # Bytes that are not UTF-8 (/bytes) are still one string each: latin-1 maps every byte.
        text = response.get_data().decode("latin-1")
        instance = response.get_json() if response.is_json else text
        # OpenAPI 3.1 schemas are JSON Schema 2020-12; "#/components/..." resolves against the
        # root, so the components ride along beside the schema.
        Draft202012Validator({**schema, "components": document["components"]}).validate(instance)
    documented = {
        (path, method, key)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for key in operation["responses"]
    }
    assert seen == documented - SEEN_ELSEWHERE
