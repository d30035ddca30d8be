"""Security headers on every response, and a page that needs nothing but its own stylesheet."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from flask import template_rendered
from flask.testing import FlaskClient

from flask_example.app.security import DEFAULT_CSP

REQUESTS = [
    ("GET", "/"),
    ("GET", "/version"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/headers"),
    ("POST", "/echo"),
    ("GET", "/status/503"),
    ("GET", "/status/204"),
    ("GET", "/delay/0"),
    ("GET", "/openapi.json"),
    ("GET", "/nope"),
    ("POST", "/healthz"),
    ("GET", "/status/100"),
    ("HEAD", "/"),
    ("OPTIONS", "/echo"),
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
def test_every_response_has_the_security_headers(
    client: FlaskClient, method: str, path: str
) -> None:
    headers = client.open(path, method=method).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "Server" not in headers


@pytest.mark.parametrize(("method", "path"), [r for r in REQUESTS if r[1] != "/"])
def test_everything_but_the_page_is_sandboxed(client: FlaskClient, method: str, path: str) -> None:
    assert client.open(path, method=method).headers["Content-Security-Policy"] == DEFAULT_CSP


def test_page_policy_allows_exactly_its_inline_stylesheet(client: FlaskClient) -> None:
    response = client.get("/")
    policy = response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    styles = re.findall(r"<style>(.*?)</style>", page, flags=re.DOTALL)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy
    assert "script-src" not in policy  # falls back to default-src 'none'


def test_page_loads_nothing_from_elsewhere(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "<script" not in page
    assert re.findall(r'(?:src|href)="([^"]*)"', page) == [
        "data:,",
        "/version",
        "/headers",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ]


def test_a_header_the_view_sets_wins_in_any_spelling(app) -> None:
    @app.get("/own-headers")
    def own_headers():
        return "", 200, {"cache-control": "max-age=5", "X-FRAME-OPTIONS": "SAMEORIGIN"}

    headers = app.test_client().get("/own-headers").headers
    assert headers.getlist("Cache-Control") == ["max-age=5"]
    assert headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert headers.getlist("X-Content-Type-Options") == ["nosniff"]


def test_the_page_renders_its_stylesheet_once_per_app(app, client: FlaskClient) -> None:
    rendered = []

    def record(_sender, template, context, **_extra):
        rendered.append(template.name)

    with template_rendered.connected_to(record, app):
        first = client.get("/")
        second = client.get("/")
    assert rendered == ["index.css", "index.html", "index.html"]
    assert first.headers["Content-Security-Policy"] == second.headers["Content-Security-Policy"]
