"""The server on its own, without a proxy in front: slow and odd clients, over real sockets.

Every test starts the real server (entrypoint.sh -> gunicorn, 2 workers x 4 threads) and
talks to it with raw sockets on loopback, so that each client misbehaves exactly as written;
every loop has a deadline.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.serverlib import chunked, connect, exchange, read_until_closed, statuses

LIMIT = 64 * 1024  # /echo's body limit


class ProbeWatch:
    """Polls URLs like a kubelet does (new connection, short timeout) and records failures."""

    def __init__(self, server, paths=("/healthz", "/readyz"), timeout: float = 1.5) -> None:
        self.server = server
        self.paths = paths
        self.timeout = timeout
        self.answers: list[tuple[str, object, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                started = time.monotonic()
                try:
                    status = self.server.get(path, timeout=self.timeout)[0]
                except (OSError, http.client.HTTPException) as error:
                    status = repr(error)
                self.answers.append((path, status, time.monotonic() - started))
            self._stop.wait(0.2)

    def __enter__(self) -> ProbeWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def failures(self) -> list:
        """Every answer that was not a 200."""
        return [answer for answer in self.answers if answer[1] != 200]


@contextlib.contextmanager
def clients(count: int, open_one: Callable[[], socket.socket]) -> Iterator[list[socket.socket]]:
    """Open `count` connections; close them all afterwards."""
    opened = []
    try:
        for _ in range(count):
            opened.append(open_one())
        yield opened
    finally:
        for sock in opened:
            sock.close()


def trickle(socks: list[socket.socket], piece: bytes, seconds: float, every: float) -> None:
    """Send `piece` on every connection each `every` seconds, for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(piece)
        time.sleep(every)


def test_slow_headers_hold_no_request_thread(start_server, server_env):
    """16 clients trickling their headers (slowloris): probes and pages still answer."""
    server = start_server(env=server_env(HEADER_TIMEOUT="60"))

    def slow_client() -> socket.socket:
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        return sock

    with clients(16, slow_client) as socks, ProbeWatch(server, ("/healthz", "/readyz", "/")) as w:
        trickle(socks, b"X-Slow: 1\r\n", seconds=4, every=0.5)
    assert len(w.answers) >= 9
    assert w.failures() == []


def test_request_head_is_cut_at_the_header_timeout(start_server, server_env):
    """A head still unfinished after HEADER_TIMEOUT gets 408; a silent connection is closed."""
    server = start_server(env=server_env(HEADER_TIMEOUT="1"))
    with connect(server) as slow, connect(server) as silent:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 4 and not answer.endswith((b"<closed>", b"<reset>")):
            with contextlib.suppress(OSError):
                slow.sendall(b"X-Slow: 1\r\n")
            answer += read_until_closed(slow, 0.3)
        slow_took = time.monotonic() - started
        assert statuses(answer) == [408], answer
        assert answer.endswith(b"<closed>"), answer
        assert 0.9 <= slow_took < 4.0
        assert read_until_closed(silent, 3.0) == b"<closed>"
        assert time.monotonic() - started < 4.5


def test_slow_bodies_hold_no_request_thread_and_are_cut(start_server, server_env):
    """16 clients trickling a body: probes answer; each slow body gets 408 at BODY_TIMEOUT."""
    server = start_server(env=server_env(BODY_TIMEOUT="3"))
    head = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"

    def slow_client() -> socket.socket:
        sock = connect(server)
        sock.sendall(head)
        return sock

    with clients(16, slow_client) as socks:
        started = time.monotonic()
        with ProbeWatch(server, ("/healthz", "/readyz", "/")) as watch:
            trickle(socks, b"a", seconds=2.5, every=0.3)
        assert watch.failures() == []
        assert len(watch.answers) >= 6
        answers = [read_until_closed(sock, 6 - (time.monotonic() - started)) for sock in socks]
        assert [statuses(answer) for answer in answers] == [[408]] * 16
        assert time.monotonic() - started < 6


def test_busy_request_threads_leave_the_probes_answering(start_server, server_env):
    """8 concurrent /delay/6 hold the 4 request threads; /healthz and /readyz still answer."""
    server = start_server(env=server_env(WEB_CONCURRENCY="1"))
    results: list = []

    def delay() -> None:
        results.append(server.get("/delay/6", timeout=30)[0])

    threads = [threading.Thread(target=delay) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    with ProbeWatch(server, timeout=2.0) as watch:
        time.sleep(3)
    for thread in threads:
        thread.join(30)
    assert watch.failures() == []
    assert len(watch.answers) >= 6
    assert results == [200] * 8


def test_a_connection_flood_leaves_room_for_the_probes(start_server):
    """More idle and half-sent connections than the workers take: probes still get in."""
    server = start_server("--worker-connections", "20")

    def idle() -> socket.socket:
        return connect(server)

    def half_sent() -> socket.socket:
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        return sock

    with clients(60, idle), clients(60, half_sent):
        time.sleep(0.5)
        with ProbeWatch(server, timeout=2.0) as watch:
            time.sleep(2)
    assert len(watch.answers) >= 6
    assert watch.failures() == []


@pytest.mark.parametrize(
    ("framing", "length", "want"),
    [
        ("chunked", LIMIT + 1, 413),
        ("chunked-small-pieces", LIMIT + 1000, 413),
        ("chunked", 4 * LIMIT, 413),
        ("content-length", LIMIT + 1, 413),
        ("chunked", LIMIT, 200),
        ("content-length", LIMIT, 200),
    ],
)
def test_a_body_over_the_limit_is_refused_chunked_or_not(start_server, framing, length, want):
    """/echo answers 413 for any body over 64 KiB, never a truncated 200."""
    server = start_server()
    body = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    if framing == "content-length":
        head = f"Content-Length: {length}"
        payload = body
    else:
        head = "Transfer-Encoding: chunked"
        payload = chunked(body, 1000 if framing == "chunked-small-pieces" else length)
    answer = exchange(
        server,
        f"POST /echo HTTP/1.1\r\nHost: localhost\r\n{head}\r\nConnection: close\r\n\r\n".encode()
        + payload,
    )
    assert statuses(answer) == [want], answer[:300]
    if want == 200:
        assert answer.endswith(b"\r\n\r\n" + body + b"<closed>")


def test_pipelined_requests_are_all_answered_in_order(start_server):
    """Requests sent back to back on one connection each get their answer, in order."""
    server = start_server()
    requests = (
        b"GET /delay/0.2 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\nsecond"
        b"GET /status/202 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nfour!\r\n0\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    answer = exchange(server, requests)
    assert statuses(answer) == [200, 200, 202, 200, 200], answer
    assert answer.index(b'"delay":0.2') < answer.index(b"second") < answer.index(b"four!")
    assert answer.endswith(b'{"status":"ok"}\n<closed>')


def test_pipelined_requests_arriving_in_pieces_are_answered(start_server):
    """The second request arrives while the first is served: it is answered, not dropped."""
    server = start_server()
    with connect(server) as sock:
        sock.sendall(b"GET /delay/0.5 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /status/201 HT")
        time.sleep(0.2)
        sock.sendall(b"TP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert statuses(read_until_closed(sock, 5)) == [200, 201]


@pytest.mark.parametrize(
    ("request_head", "want"),
    [
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 200),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
    ],
)
def test_http11_needs_exactly_one_host(start_server, request_head, want):
    """RFC 9112 3.2: an HTTP/1.1 request without Host, or with two, is a 400."""
    server = start_server()
    answer = exchange(server, request_head)
    assert statuses(answer.replace(b"HTTP/1.0 ", b"HTTP/1.1 ")) == [want], answer
    if want == 400:
        assert b"Host" in answer.split(b"\r\n\r\n", 1)[1]


def test_stalled_tls_handshakes_hold_no_thread_and_are_cut(start_server, server_env, tls_files):
    """16 handshakes stalled after the first bytes: probes answer; each is closed in time."""
    cert, key = tls_files
    context = ssl.create_default_context(cafile=str(cert))
    server = start_server(
        env=server_env(TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key), TLS_HANDSHAKE_TIMEOUT="2"),
        ssl_context=context,
    )

    def stalled() -> socket.socket:
        sock = connect(server)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, never finished
        return sock

    with clients(16, stalled) as socks:
        started = time.monotonic()
        with ProbeWatch(server, ("/healthz", "/readyz", "/")) as watch:
            time.sleep(1.5)
        assert watch.failures() == []
        assert len(watch.answers) >= 3
        answers = [read_until_closed(sock, 5 - (time.monotonic() - started)) for sock in socks]
        assert set(answers) <= {b"<closed>", b"<reset>"}, answers
        assert time.monotonic() - started < 4.5


def metric_files(server) -> list[Path]:
    """The Prometheus multiprocess files of the running server."""
    (directory,) = Path(server.env["TMPDIR"]).glob("flask-example-*/metrics")
    return sorted(directory.glob("*.db"))


def worker_pids(master: int) -> set[int]:
    """The running worker processes of a gunicorn master."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master and fields[0] != "Z":
                found.add(int(stat.parent.name))
    return found


def requests_total(server) -> float:
    """The sum of http_requests_total over every series, as a scrape sees it."""
    body = server.get("/metrics")[2].decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("http_requests_total{")
    )


def test_a_dead_workers_metric_files_are_removed_and_its_counts_kept(start_server):
    """Each worker restart leaves no files behind, and no counter goes down."""
    server = start_server()
    for _ in range(20):
        assert server.get("/")[0] == 200
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2
    for _ in range(3):
        before = requests_total(server)
        victim = workers.pop()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            workers = worker_pids(server.process.pid)
            if len(workers) == 2 and victim not in workers:
                break
            time.sleep(0.1)
        assert victim not in workers and len(workers) == 2
        for _ in range(10):  # reach the new worker too, so it writes files of its own
            assert server.get("/")[0] == 200
        names = [f.name for f in metric_files(server)]
        assert not [name for name in names if f"_{victim}.db" in name], names
        assert requests_total(server) >= before + 10
    # Files of the two live workers and one merged set of the dead ones: no growth per restart.
    pids = {int(m) for name in names for m in re.findall(r"_(\d+)\.db$", name)}
    assert pids <= worker_pids(server.process.pid)


def test_pipelined_requests_over_tls_are_all_answered(start_server, server_env, tls_files):
    """Over TLS too, bytes already decrypted for the next request are not forgotten."""
    cert, key = tls_files
    context = ssl.create_default_context(cafile=str(cert))
    server = start_server(
        env=server_env(TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key)), ssl_context=context
    )
    with context.wrap_socket(connect(server), server_hostname="localhost") as sock:
        sock.sendall(
            b"GET /status/201 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /status/202 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        time.sleep(0.3)
        sock.sendall(b"GET /status/203 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(statuses(answer)) < 3:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = sock.recv(65536)
            except (TimeoutError, ssl.SSLError):
                break
            if not data:
                break
            answer += data
    assert statuses(answer) == [201, 202, 203], answer


def test_a_request_head_over_64_kib_is_refused(start_server):
    """Headers without end are not buffered forever: past 64 KiB the answer is 431."""
    server = start_server()
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000) for i in range(70))
    answer = exchange(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + filler)
    assert statuses(answer) == [431], answer[:200]


def test_a_client_that_expects_100_continue_gets_it_then_its_answer(start_server):
    """Expect: 100-continue: the server asks for the body instead of waiting for it."""
    server = start_server()
    with connect(server) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(3)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        answer = read_until_closed(sock, 5)
    assert statuses(answer) == [200], answer
    assert answer.endswith(b"\r\n\r\nhello<closed>")


def test_the_date_header_is_this_seconds(start_server):
    """RFC 9110 6.6.1: Date is the time of the answer, to the second, also once cached."""
    server = start_server()
    dates = []
    for _ in range(2):
        before = int(time.time())
        headers = server.get("/healthz")[1]
        dates.append(email.utils.parsedate_to_datetime(headers["Date"]).timestamp())
        assert before <= dates[-1] <= time.time()
        time.sleep(1.1)
    assert dates[1] > dates[0]


@pytest.mark.parametrize(("allowed", "scheme"), [(None, "https"), ("10.0.0.0/8", "http")])
def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(
    start_server, server_env, allowed, scheme
):
    """FORWARDED_ALLOW_IPS decides, on every request of a connection (the answer is cached)."""
    env = server_env() if allowed is None else server_env(FORWARDED_ALLOW_IPS=allowed)
    server = start_server(env=env)
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head, body = answer.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < length:
                body += sock.recv(65536)
            assert f'"scheme":"{scheme}"'.encode() in body.replace(b" ", b""), body
