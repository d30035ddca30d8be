"""The index page (HTML or JSON by content negotiation) and /version."""

from __future__ import annotations

import html

import pytest
from flask.testing import FlaskClient

from tests.app.conftest import EXPECTED_FACTS, assert_problem

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "mimetype"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        (BROWSER, "text/html"),
        ("text/html", "text/html"),
        ("text/*", "text/html"),
        ("application/json", "application/json"),
        ("application/*", "application/json"),
        ("text/html;q=0.5, application/json", "application/json"),
        ("application/json;q=0.9, text/html;q=0.1", "application/json"),
    ],
)
def test_content_negotiation(client: FlaskClient, accept: str | None, mimetype: str) -> None:
    response = client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert "Accept" in response.vary


@pytest.mark.parametrize("accept", ["image/png", "application/xml", "text/html;q=0"])
def test_nothing_acceptable_is_406(client: FlaskClient, accept: str) -> None:
    response = client.get("/", headers={"Accept": accept})
    assert "text/html or application/json" in assert_problem(response, 406)["detail"]


def test_json_facts(client: FlaskClient) -> None:
    facts = client.get(
        "/", headers={"Accept": "application/json", "X-Forwarded-Proto": "https"}
    ).get_json()
    assert {k: v for k, v in facts.items() if k != "request"} == EXPECTED_FACTS
    assert facts["request"] == {
        "method": "GET",
        "scheme": "http",
        "protocol": "HTTP/1.1",
        "host": "localhost",
        "client": "127.0.0.1",
        "forwarded": {"X-Forwarded-Proto": "https"},
    }


PROXY_HEADERS = {
    "Forwarded": "for=198.51.100.7;proto=https;host=app.example.test",
    "Via": "1.1 ingress",
    "X-Forwarded-For": "198.51.100.7, 10.0.0.3",
    "X-Forwarded-Host": "app.example.test",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Scheme": "https",
    "X-Original-Forwarded-For": "198.51.100.7",
    "X-Real-Ip": "198.51.100.7",
    "X-Request-Id": "5f0c1d",
    "X-Scheme": "https",
}


def test_proxy_headers_are_shown_but_not_trusted(client: FlaskClient) -> None:
    headers = {**PROXY_HEADERS, "X-Unrelated": "no", "Accept": "application/json"}
    request = client.get("/", headers=headers).get_json()["request"]
    assert request["forwarded"] == PROXY_HEADERS
    # Shown, not applied: scheme, host and client stay what the connection said.
    assert (request["scheme"], request["host"], request["client"]) == (
        "http",
        "localhost",
        "127.0.0.1",
    )


def test_html_shows_every_fact(client: FlaskClient) -> None:
    page = client.get("/", headers={**PROXY_HEADERS, "Accept": "text/html"}).get_data(as_text=True)
    for name, value in EXPECTED_FACTS.items():
        assert f'<dd id="fact-{name}">{html.escape(value)}</dd>' in page
    for name, value in (("scheme", "http"), ("client", "127.0.0.1"), ("protocol", "HTTP/1.1")):
        assert f'<dd id="request-{name}">{value}</dd>' in page
    for name, value in PROXY_HEADERS.items():
        assert f'<th scope="row">{name}</th><td>{html.escape(value)}</td>' in page


def test_html_says_when_no_proxy_was_involved(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "None: the request reached the pod directly." in page


@pytest.mark.parametrize("header", ["X-Forwarded-Host", "Host"])
def test_html_escapes_what_the_client_sent(client: FlaskClient, header: str) -> None:
    hostile = '<script>alert("x")</script>'
    page = client.get("/", headers={header: hostile}).get_data(as_text=True)
    assert hostile not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<script" not in page


def test_an_invalid_host_is_shown_as_sent(client: FlaskClient) -> None:
    response = client.get("/", headers={"Host": "bad host", "Accept": "application/json"})
    assert response.get_json()["request"]["host"] == "bad host"


def test_version(client: FlaskClient) -> None:
    response = client.get("/version")
    assert response.status_code == 200
    assert response.get_json() == {
        k: EXPECTED_FACTS[k] for k in ("service", "version", "commit", "branch")
    }
