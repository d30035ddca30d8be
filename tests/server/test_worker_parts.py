"""Parts of the worker on their own: what the raw-socket tests cannot tell apart from outside.

The answer's bytes are the same whether gunicorn writes the head and the body apart or
together, and which of two threads answers a probe does not show in the answer; these tests
hold the real classes to both, with a socket that records its writes.
"""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi as gwsgi
from gunicorn.http.parser import RequestParser

from flask_example.server import lifecycle
from flask_example.server.worker import (
    FAST_WRITE,
    CoalescedResponse,
    HardenedWorker,
    SettledConfig,
    TrustedPeers,
)


class RecordingSocket:
    """A socket that keeps every write apart and reads a fixed request.

    A non-blocking send takes at most `room` bytes (what the kernel's buffer has room for);
    sendall, which waits for the client, takes everything.
    """

    def __init__(self, request: bytes = b"", room: int | None = None) -> None:
        self.incoming = io.BytesIO(request)
        self.room = room
        self.timeout = 0.0
        self.writes: list[bytes] = []
        self.waits: list[float] = []  # the socket's timeout at each sendall

    def recv(self, size: int) -> bytes:
        return self.incoming.read(size)

    def send(self, data: bytes) -> int:
        taken = bytes(data[: self.room])
        if not taken:
            raise BlockingIOError("the buffer is full")
        self.writes.append(taken)
        return len(taken)

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.waits.append(self.timeout)

    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout

    def gettimeout(self) -> float:
        return self.timeout


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
    """Every answer is written part by part, under the send bounds."""
    response = CoalescedResponse(parsed(ANSWERS["no body"][0]), RecordingSocket(), Config())
    assert response.sendfile(object()) is False


def bounded(room: int, write_timeout: float, budget: float) -> tuple:
    """A response on a socket whose buffer takes `room` bytes at once, with its bounds set."""
    sock = RecordingSocket(room=room)
    response = CoalescedResponse(parsed(ANSWERS["no body"][0]), sock, Config())
    response.write_timeout, response.budget = write_timeout, budget
    response.start_response("200 OK", [("Content-Length", str(FAST_WRITE + 1))])
    return response, sock


def test_what_the_buffer_does_not_take_waits_for_the_client_send_timeout_at_most():
    """The rest of a small write is sent with the socket's timeout at SEND_TIMEOUT."""
    response, sock = bounded(room=10, write_timeout=5.0, budget=60.0)
    response.write(b"x" * 100)
    assert len(sock.writes[0]) == 10
    assert sock.waits == [5.0]
    assert b"".join(sock.writes).endswith(b"x" * 100)


def test_a_large_write_waits_for_the_client_from_the_start():
    """Over FAST_WRITE, a write is never split at the buffer's edge: it waits as a whole."""
    response, sock = bounded(room=10, write_timeout=5.0, budget=60.0)
    response.write(b"x" * (FAST_WRITE + 1))
    assert len(sock.writes) == 1
    assert sock.waits == [5.0]


def test_the_last_wait_gets_what_is_left_of_the_total():
    """With less than SEND_TIMEOUT left of SEND_TOTAL_TIMEOUT, a write may wait that long."""
    response, sock = bounded(room=10, write_timeout=5.0, budget=2.0)
    response.write(b"x" * 100)
    assert sock.waits == [2.0]


def test_a_spent_total_or_a_probe_answer_does_not_wait():
    """Nothing left of SEND_TOTAL_TIMEOUT: TimeoutError; a probe's (no wait): BlockingIOError."""
    response, _sock = bounded(room=10, write_timeout=5.0, budget=0.0)
    with pytest.raises(TimeoutError):
        response.write(b"x" * 100)
    response, sock = bounded(room=0, write_timeout=0.0, budget=60.0)
    with pytest.raises(BlockingIOError):
        response.write(b"x" * 100)
    assert sock.waits == []


def test_a_probe_handed_to_two_threads_is_served_once():
    """A probe goes to the request threads and the probe thread; the second to come returns."""
    worker = HardenedWorker.__new__(HardenedWorker)
    worker.queued = 1  # the request threads' share of it, counted when it was handed over
    worker.queued_lock = threading.Lock()
    served = []
    worker.handle = lambda conn: served.append(conn) or False
    worker.alive = True
    worker.method_queue = SimpleNamespace(defer=lambda *_args: None)
    conn = SimpleNamespace(queued=False, access=None)  # what serve reads of a connection
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


def test_a_settled_config_answers_as_gunicorns_and_asks_it_once_per_name():
    """The parser and the environ read SettledConfig: the same values, one lookup each."""
    config = Config()
    config.set("limit_request_line", 1234)
    settled = SettledConfig(config)
    is_ssl, networks = config.is_ssl, config.forwarded_allow_networks()
    asked = []
    real = Config.__getattr__

    def counting(self, name):
        asked.append(name)
        return real(self, name)

    Config.__getattr__ = counting
    try:
        for _ in range(3):
            assert settled.limit_request_line == 1234
            assert settled.is_ssl is is_ssl
            assert settled.forwarded_allow_networks() == networks
    finally:
        Config.__getattr__ = real
    assert sorted(set(asked)) == sorted(asked)  # no name asked twice
    # A request parsed with it is the request parsed with gunicorn's Config.
    head = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"
    ours = next(RequestParser(settled, RecordingSocket(head), ("127.0.0.1", 1)))
    theirs = next(RequestParser(config, RecordingSocket(head), ("127.0.0.1", 1)))
    assert (ours.method, ours.uri, ours.headers, ours.scheme) == (
        theirs.method,
        theirs.uri,
        theirs.headers,
        theirs.scheme,
    )


def test_trusted_peers_ask_once_per_address_and_list_and_stay_bounded(monkeypatch):
    """gunicorn's answer per (address, allow list), at most MAX_PEERS of them kept."""
    asked = []

    def check(address, allow_list, _networks):
        asked.append(address)
        return address in allow_list

    monkeypatch.setattr(TrustedPeers, "MAX_PEERS", 3)
    trusted = TrustedPeers(check)
    loopback, other = ["127.0.0.1"], ["10.0.0.1"]
    assert [trusted("127.0.0.1", loopback, []) for _ in range(3)] == [True] * 3
    assert trusted("127.0.0.1", other, []) is False  # another list: asked again
    assert asked == ["127.0.0.1", "127.0.0.1"]
    for n in range(5):
        trusted(f"192.0.2.{n}", loopback, [])
    assert len(trusted.known) <= 3
