"""/headers, /echo, /status/<code> and /delay/<seconds>."""

from __future__ import annotations

import io
import time

import pytest
from flask.testing import FlaskClient

from tests.app.conftest import assert_problem

LIMIT = 64 * 1024


def test_headers_as_received(client: FlaskClient) -> None:
    response = client.get("/headers", headers={"X-Test": "one", "X-Forwarded-For": "203.0.113.9"})
    headers = response.get_json()["headers"]
    assert response.status_code == 200
    assert headers["X-Test"] == "one"
    assert headers["X-Forwarded-For"] == "203.0.113.9"
    assert headers["Host"] == "localhost"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_echo_returns_the_body_for_every_method(client: FlaskClient, method: str) -> None:
    body = bytes(range(256)) * 4
    response = client.open("/echo", method=method, data=body, content_type="application/x-test")
    assert response.status_code == 200
    assert response.data == body
    assert response.content_type == "application/x-test"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, "application/octet-stream"),
        ("application/json", "application/json"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ],
)
def test_echo_keeps_the_content_type(
    client: FlaskClient, content_type: str | None, expected: str
) -> None:
    response = client.post("/echo", data=b'{"a": 1}', content_type=content_type)
    assert response.content_type == expected
    assert response.data == b'{"a": 1}'


def test_echo_of_html_cannot_run_as_a_page(client: FlaskClient) -> None:
    response = client.post("/echo", data=b"<script>alert(1)</script>", content_type="text/html")
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_echo_does_not_parse_the_body(client: FlaskClient) -> None:
    response = client.post("/echo", data="{not json", content_type="application/json")
    assert (response.status_code, response.data) == (200, b"{not json")


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_echo_up_to_the_limit(client: FlaskClient, size: int) -> None:
    response = client.post("/echo", data=b"x" * size)
    assert (response.status_code, len(response.data)) == (200, size)


def test_echo_over_the_limit_is_413_json(client: FlaskClient) -> None:
    body = assert_problem(client.post("/echo", data=b"x" * (LIMIT + 1)), 413)
    assert f"at most {LIMIT} bytes" in body["detail"]


def test_echo_over_the_limit_without_content_length_is_413_json(client: FlaskClient) -> None:
    # A chunked upload has no Content-Length: the limit applies while reading.
    response = client.post(
        "/echo",
        input_stream=io.BytesIO(b"x" * (LIMIT + 1)),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(response, 413)


@pytest.mark.parametrize("code", [200, 201, 202, 299, 400, 418, 429, 451, 500, 502, 503, 599])
def test_status_answers_with_that_status(client: FlaskClient, code: int) -> None:
    response = client.get(f"/status/{code}")
    assert response.status_code == code
    assert response.get_json()["status"] == code


@pytest.mark.parametrize("code", [204, 205, 304])
def test_status_without_content(client: FlaskClient, code: int) -> None:
    response = client.get(f"/status/{code}")
    assert (response.status_code, response.data) == (code, b"")


@pytest.mark.parametrize(
    ("code", "header", "value"),
    [
        (301, "Location", "/"),
        (302, "Location", "/"),
        (303, "Location", "/"),
        (307, "Location", "/"),
        (308, "Location", "/"),
        (401, "WWW-Authenticate", 'Basic realm="flask-example-1"'),
        (405, "Allow", "GET, HEAD, OPTIONS"),
        (407, "Proxy-Authenticate", 'Basic realm="flask-example-1"'),
    ],
)
def test_status_with_its_required_header(
    client: FlaskClient, code: int, header: str, value: str
) -> None:
    response = client.get(f"/status/{code}")
    assert (response.status_code, response.headers[header]) == (code, value)


@pytest.mark.parametrize("code", ["100", "101", "103", "199"])
def test_status_1xx_is_400_because_it_cannot_end_a_request(client: FlaskClient, code: str) -> None:
    assert "interim (1xx)" in assert_problem(client.get(f"/status/{code}"), 400)["detail"]


@pytest.mark.parametrize("code", ["0", "99", "600", "999", "1000", "-200", "abc", "2e2", "20x"])
def test_status_out_of_range_is_400(client: FlaskClient, code: str) -> None:
    detail = assert_problem(client.get(f"/status/{code}"), 400)["detail"]
    assert "from 200 to 599" in detail


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("0.05", 0.05), (".1", 0.1)])
def test_delay_waits(client: FlaskClient, raw: str, seconds: float) -> None:
    start = time.monotonic()
    response = client.get(f"/delay/{raw}")
    assert time.monotonic() - start >= seconds
    assert (response.status_code, response.get_json()) == (200, {"delay": seconds})


@pytest.mark.parametrize("raw", ["-1", "10.01", "11", "nan", "inf", "1e1", "abc", "0x5", "1,5"])
def test_delay_out_of_range_is_400_without_waiting(client: FlaskClient, raw: str) -> None:
    start = time.monotonic()
    detail = assert_problem(client.get(f"/delay/{raw}"), 400)["detail"]
    assert time.monotonic() - start < 1
    assert "from 0 to 10" in detail
