"""/stream/<n>, /sse/<n>, /bytes/<n> and POST /sink."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import time
import urllib.parse

import pytest
from flask.testing import FlaskClient

from tests.app.conftest import LiveServer, assert_problem

SINK_LIMIT = 32 * 1024 * 1024


def live_connection(live_server: LiveServer) -> http.client.HTTPConnection:
    """A connection to the live gunicorn."""
    url = urllib.parse.urlsplit(live_server.url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


@pytest.mark.parametrize(("path", "marker"), [("/stream/3", b'"part": '), ("/sse/3", b"data: ")])
def test_each_part_arrives_before_the_next_is_made(
    live_server: LiveServer, path: str, marker: bytes
) -> None:
    conn = live_connection(live_server)
    conn.request("GET", f"{path}?interval=0.6")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    started = time.monotonic()
    first = response.read1(65536)
    first_at = time.monotonic() - started
    rest = response.read()
    last_at = time.monotonic() - started
    conn.close()
    assert marker in first and b'"part": 2' not in first
    assert first_at < 0.4 and last_at >= 1.1, (first_at, last_at)
    assert (first + rest).count(marker) == 3


def test_stream_parts_are_json_lines(client: FlaskClient) -> None:
    response = client.get("/stream/4?interval=0")
    assert response.mimetype == "application/x-ndjson"
    parts = [json.loads(line) for line in response.data.splitlines()]
    assert [(part["part"], part["of"]) for part in parts] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_sse_is_an_event_stream(client: FlaskClient) -> None:
    response = client.get("/sse/2?interval=0")
    assert response.mimetype == "text/event-stream"
    events = response.data.decode().split("\n\n")
    assert events[0].startswith("id: 1\nevent: part\ndata: {")
    assert events[1].startswith("id: 2\nevent: part\ndata: {")
    assert events[2] == ""


@pytest.mark.parametrize("path", ["/stream", "/sse"])
@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("/0", "n '0' is invalid: ask for a whole number from 1 to 100"),
        ("/101", "n '101' is invalid: ask for a whole number from 1 to 100"),
        ("/abc", "n 'abc' is invalid"),
        ("/2?interval=11", "interval '11' is invalid: ask for a number of seconds from 0 to 10"),
        ("/2?interval=-1", "interval '-1' is invalid"),
        ("/100?interval=1", "take longer than 60 s: ask for fewer parts or a shorter interval"),
    ],
)
def test_streams_are_bounded(client: FlaskClient, path: str, query: str, detail: str) -> None:
    assert detail in assert_problem(client.get(path + query), 400)["detail"]


def test_bytes_are_deterministic_from_the_seed(client: FlaskClient) -> None:
    one = client.get("/bytes/100000?seed=7")
    assert one.status_code == 200
    assert one.headers["Content-Length"] == "100000"
    assert len(one.data) == 100000
    assert client.get("/bytes/100000?seed=7").data == one.data
    assert client.get("/bytes/100000?seed=8").data != one.data
    assert client.get("/bytes/10?seed=7").data == one.data[:10]
    assert client.get("/bytes/0").data == b""


def test_bytes_are_streamed_with_their_length(live_server: LiveServer) -> None:
    conn = live_connection(live_server)
    conn.request("GET", "/bytes/16777216")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "16777216"
    assert response.getheader("Transfer-Encoding") is None
    assert len(response.read()) == 16 * 1024 * 1024
    conn.close()


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("/16777217", "n '16777217' is invalid: ask for a whole number from 0 to 16777216"),
        ("/-1", "n '-1' is invalid"),
        ("/10?seed=x", "seed 'x' is invalid"),
    ],
)
def test_bytes_are_bounded(client: FlaskClient, query: str, detail: str) -> None:
    assert detail in assert_problem(client.get("/bytes" + query), 400)["detail"]


def test_sink_answers_length_and_sha256(client: FlaskClient) -> None:
    body = bytes(range(256)) * 1000
    response = client.post("/sink", data=body)
    assert response.status_code == 200
    assert response.get_json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def post_sink(live_server: LiveServer, blocks: int, block: bytes, chunked: bool):
    """POST blocks x block to the live server's /sink; (status, JSON answer)."""
    conn = live_connection(live_server)
    body = (block for _ in range(blocks))
    headers = {} if chunked else {"Content-Length": str(blocks * len(block))}
    # The server may answer 413 and stop reading before the whole body is sent.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.request("POST", "/sink", body=body, headers=headers, encode_chunked=chunked)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    return response.status, answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_sink_takes_32_mib_and_no_more(live_server: LiveServer, chunked: bool) -> None:
    block = b"x" * (1024 * 1024)
    status, answer = post_sink(live_server, 32, block, chunked)
    assert status == 200
    assert answer == {
        "length": SINK_LIMIT,
        "sha256": hashlib.sha256(block * 32).hexdigest(),
    }
    status, answer = post_sink(live_server, 33, block, chunked)
    assert status == 413
    assert "send at most 33554432 bytes to /sink" in answer["detail"]


def test_sink_refuses_a_declared_length_above_the_limit_before_reading(
    live_server: LiveServer,
) -> None:
    conn = live_connection(live_server)
    conn.putrequest("POST", "/sink")
    conn.putheader("Content-Length", str(SINK_LIMIT + 1))
    conn.endheaders()  # and no body at all: the answer must come without it
    response = conn.getresponse()
    assert response.status == 413
    assert "send at most 33554432 bytes" in json.loads(response.read())["detail"]
    conn.close()


def test_echo_keeps_its_own_limit(client: FlaskClient) -> None:
    assert_problem(client.post("/echo", data=b"x" * (64 * 1024 + 1)), 413)
