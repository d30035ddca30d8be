"""Parts of the worker on their own: what the raw-socket tests cannot tell apart from outside.

The answer's bytes are the same whether gunicorn writes the head and the body apart or
together, and which of two threads answers a probe does not show in the answer; these tests
hold the real classes to both, with a socket that records its writes.
"""

from __future__ import annotations

import io
import threading

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi as gwsgi
from gunicorn.http.parser import RequestParser

from flask_example.server import lifecycle
from flask_example.server.worker import CoalescedResponse, HardenedWorker


class RecordingSocket:
    """A socket that keeps every sendall apart and reads a fixed request."""

    def __init__(self, request: bytes = b"") -> None:
        self.incoming = io.BytesIO(request)
        self.writes: list[bytes] = []

    def recv(self, size: int) -> bytes:
        return self.incoming.read(size)

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def parsed(head: bytes):
    """A request as gunicorn's own parser makes it."""
    return next(RequestParser(Config(), RecordingSocket(head), ("127.0.0.1", 1)))


# (request head, status, headers, body parts): what each answer shape looks like.
ANSWERS = {
    "content-length": (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", "5")],
        [b"hello"],
    ),
    "chunked": (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "200 OK",
        [("Content-Type", "text/plain")],
        [b"one", b"", b"three"],
    ),
    "no body": (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "204 No Content",
        [],
        [],
    ),
    "longer than Content-Length": (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "200 OK",
        [("Content-Length", "4")],
        [b"abc", b"def"],
    ),
    "HTTP/1.0": (
        b"GET / HTTP/1.0\r\n\r\n",
        "200 OK",
        [("Content-Length", "2")],
        [b"ok"],
    ),
}


def answer(response_class, shape: str) -> list[bytes]:
    """The writes a response class makes for one answer shape."""
    head, status, headers, parts = ANSWERS[shape]
    sock = RecordingSocket()
    response = response_class(parsed(head), sock, Config())
    response.start_response(status, headers)
    for part in parts:
        response.write(part)
    response.close()
    return sock.writes


@pytest.fixture(autouse=True)
def _fixed_date(monkeypatch):
    # Both answers must carry the same Date, whatever second each is made in.
    monkeypatch.setattr(gwsgi.util, "http_date", lambda: "Sun, 06 Dec 2026 06:00:00 GMT")


@pytest.mark.parametrize("shape", ANSWERS)
def test_an_answer_is_gunicorns_bytes_with_its_head_in_the_first_write(shape):
    """The same bytes as gunicorn's Response; the head never goes out in a write of its own."""
    ours = answer(CoalescedResponse, shape)
    gunicorns = answer(gwsgi.Response, shape)
    assert b"".join(ours) == b"".join(gunicorns)
    head_end = ours[0].find(b"\r\n\r\n") + 4
    assert head_end >= 4
    body = b"".join(ours)[head_end:]
    if body:
        assert len(ours[0]) > head_end, "the head went out alone"
    assert len(ours) == max(len(gunicorns) - 1, 1)  # one write fewer: the head's own


def test_a_response_never_uses_sendfile():
    """Every answer is written part by part, under the send bounds (see bounded_answer)."""
    response = CoalescedResponse(parsed(ANSWERS["no body"][0]), RecordingSocket(), Config())
    assert response.sendfile(object()) is False


class Connection:
    """What serve reads of a connection before it takes the request."""

    queued = False


def test_a_probe_handed_to_two_threads_is_served_once():
    """A probe goes to the request threads and the probe thread; the second to come returns."""
    worker = HardenedWorker.__new__(HardenedWorker)
    worker.queued = 1  # the request threads' share of it, counted when it was handed over
    worker.queued_lock = threading.Lock()
    served = []
    worker.handle = lambda conn: served.append(conn) or False
    worker.alive = True
    worker.send_timeout = 5.0
    worker.method_queue = type("Deferred", (), {"defer": lambda *_args: None})()
    conn = Connection()
    conn.sock = type("Sock", (), {"settimeout": lambda _self, _t: None})()
    conn.access = None
    ticket = [True]
    worker.serve(conn, False, ticket)  # the probe thread comes first
    worker.serve(conn, True, ticket)  # then a request thread: nothing left to do
    assert served == [conn]
    assert worker.queued == 0


def test_the_drain_flag_is_looked_for_at_most_once_per_recheck(tmp_path, monkeypatch):
    """pre_request's check: the answer may be DRAIN_RECHECK old, never older."""
    monkeypatch.setenv(lifecycle.RUNTIME_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(lifecycle, "_last_check", [-1e9, False])
    now = [100.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: now[0])
    assert lifecycle.is_draining(recheck_after=0.1) is False
    (tmp_path / "draining").touch()
    now[0] += 0.05
    assert lifecycle.is_draining(recheck_after=0.1) is False  # within the recheck time
    assert lifecycle.is_draining() is True  # readiness asks anew every time
    now[0] += 0.06
    assert lifecycle.is_draining(recheck_after=0.1) is True
