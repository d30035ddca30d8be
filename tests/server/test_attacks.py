"""Attacks on the server as it runs in a pod, over raw sockets, with the kubelet watching.

Each test starts the real server (entrypoint.sh -> gunicorn, 2 workers x 4 threads, a probe
port of its own as the chart sets it) and attacks it the way one defect of the past did. A
`Kubelet` probes all the while as the kubelet does: one GET /healthz and one GET /readyz a
second, each on a new connection to the probe port with a 1 s timeout; three failures in a row
would restart the pod. Connection counts are scaled down from the ones first measured (20
non-reading pipeliners stay 20; 2,200 flooding connections become 200, 16 slow readers stay 16)
where the bound that keeps the server up does not depend on the count; deadlines are shortened
through the settings so that each test takes seconds.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wsproto.events import CloseConnection, TextMessage

from tests.server.serverlib import Client, chunked, connect, exchange, read_until_closed, statuses

LIMIT = 64 * 1024


class Kubelet:
    """Probes like the kubelet: /healthz and /readyz once a second, new connection, 1 s timeout."""

    def __init__(self, server, port: int | None = None) -> None:
        self.port = port or int(server.env["PROBE_PORT"])
        self.answers: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def probe(self, path: str) -> object:
        """One probe: the status, or the error that failed it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except (OSError, http.client.HTTPException) as error:
            return repr(error)
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for path in ("/healthz", "/readyz"):
                self.answers.append(self.probe(path))
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def failures_in_a_row(self) -> int:
        """The longest run of failed probes: 3 restart the pod."""
        longest = run = 0
        for answer in self.answers:
            run = run + 1 if answer != 200 else 0
            longest = max(longest, run)
        return longest


def watched(server, attack: Callable[[], None], port: int | None = None) -> Kubelet:
    """Run `attack` while the kubelet probes; check that it never failed 3 times in a row."""
    with Kubelet(server, port) as kubelet:
        attack()
    assert len(kubelet.answers) >= 6, kubelet.answers
    assert kubelet.failures_in_a_row() < 3, kubelet.answers
    return kubelet


def answered_soon(server, within: float = 3.0) -> int:
    """The status of an ordinary request on a new connection, which must come within seconds."""
    started = time.monotonic()
    status = server.get("/status/200", timeout=within)[0]
    assert time.monotonic() - started < within
    return status


def worker_cpu_seconds(master: int) -> float:
    """User + system CPU time of a gunicorn master's workers so far."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def attackers(count: int, run: Callable[[threading.Event], None]) -> Iterator[None]:
    """`count` threads running `run(stop)` until the block ends."""
    stop = threading.Event()
    threads = [threading.Thread(target=run, args=(stop,), daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def small_window(sock: socket.socket) -> socket.socket:
    """A socket that takes little of an answer unless it is read."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


# --- 1: clients that pipeline requests and never read the answers ----------------------


def main_port_probe(server) -> object:
    """GET /healthz on the app's own port (HTTPS when it serves TLS), 1 s timeout."""
    try:
        return server.get("/healthz", timeout=1.0)[0]
    except (OSError, http.client.HTTPException) as error:
        return repr(error)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_pipeliners_that_never_read_leave_the_probes_answered(
    start_server, server_env, tls_files, scheme
):
    """20 connections pipeline GET /healthz and read nothing: probes on both ports answer."""
    cert, key = tls_files
    context = None
    env = server_env(SEND_TIMEOUT="2")
    if scheme == "https":
        context = ssl.create_default_context(cafile=str(cert))
        env.update(TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key))
    server = start_server(env=env, ssl_context=context)
    batch = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n" * 200

    def pipeline(stop: threading.Event) -> None:
        sock = small_window(socket.socket())
        sock.connect(("127.0.0.1", server.port))
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.settimeout(0.2)
        with sock:
            while not stop.is_set():
                try:
                    sock.sendall(batch)
                except (TimeoutError, ssl.SSLError):
                    stop.wait(0.1)
                except OSError:
                    return

    with attackers(20, pipeline):
        time.sleep(2)  # the kernel's buffers fill
        watched(server, lambda: time.sleep(6))
        # The app's port answers its probes too, from the probe thread that waits for no one.
        assert [main_port_probe(server) for _ in range(3)].count(200) >= 2
    assert answered_soon(server) == 200
    # A client that does not take its answer is closed, as expected: no error, no traceback.
    assert "Traceback" not in server.logs()


# --- 2: a flood of complete, slow requests --------------------------------------------


def test_a_flood_of_slow_requests_is_refused_at_once_and_forgotten(start_server):
    """200 connections ask /delay/10, each closed one replaced: overload is a 503 at once."""
    server = start_server()
    request = b"GET /delay/10 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    refused: list[tuple[float, bytes]] = []

    def flood() -> None:
        selector = selectors.DefaultSelector()

        def open_one() -> None:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
            sock.sendall(request)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, time.monotonic())

        for _ in range(200):
            open_one()
        ends = time.monotonic() + 6
        while time.monotonic() < ends:
            for key, _ in selector.select(0.2):
                with contextlib.suppress(OSError):
                    answer = key.fileobj.recv(4096)
                    refused.append((time.monotonic() - key.data, answer))
                selector.unregister(key.fileobj)
                key.fileobj.close()
                with contextlib.suppress(OSError):
                    open_one()
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # the attacker leaves: its waiting requests are for no one

    watched(server, flood)
    overloaded = [(took, answer) for took, answer in refused if statuses(answer) == [503]]
    assert len(overloaded) >= 50, refused[:5]
    assert all(b"\r\nRetry-After: 1\r\n" in answer for _, answer in overloaded)
    assert sorted(took for took, _ in overloaded)[len(overloaded) // 2] < 0.5
    # Answered at once after the attack: a 503 while the threads finish the /delay they began
    # (at most 10 s), then served; nothing queued for a client that left is run.
    assert answered_soon(server) in (200, 503)
    deadline = time.monotonic() + 15
    while answered_soon(server) != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert "the client left while it waited" in server.logs()


def test_a_delay_ends_when_its_client_leaves(start_server, server_env):
    """A client asks /delay/10 and hangs up: the only thread is free again at once."""
    server = start_server(env=server_env(WEB_CONCURRENCY="1", THREADS="1"))
    with connect(server) as sock:
        sock.sendall(b"GET /delay/10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.5)  # taken by the thread
    assert answered_soon(server, within=2.0) == 200
    assert "/delay/10 ended early: the client left" in server.logs()


def test_a_burst_of_quick_requests_waits_and_is_served(start_server):
    """32 keep-alive clients (4 per thread) ask at once, 25 times each: no 503, all served."""
    server = start_server()
    answers: list[int] = []

    def client() -> None:
        with connect(server) as sock:
            for _ in range(25):
                sock.sendall(b"GET /status/200 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                answer = b""
                while not answer.endswith(b"}\n"):  # the end of /status/200's JSON body
                    data = sock.recv(4096)
                    if not data:
                        break
                    answer += data
                answers.extend(statuses(answer))
                if b"Connection: close" in answer:
                    break

    threads = [threading.Thread(target=client) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 32 * 25, collections.Counter(answers)


def worker_sockets(master: int) -> dict[int, int]:
    """How many sockets each of a gunicorn master's workers holds open."""
    counts = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                fds = (stat.parent / "fd").iterdir()
                counts[int(stat.parent.name)] = sum(
                    os.readlink(fd).startswith("socket:") for fd in fds
                )
    return counts


def test_keep_alive_connections_are_spread_over_the_workers(start_server):
    """32 connections opened at once, then kept: each of the 2 workers holds about half."""
    server = start_server()
    before = worker_sockets(server.process.pid)
    clients = [connect(server) for _ in range(32)]
    try:
        for sock in clients:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for sock in clients:
            assert statuses(sock.recv(4096)) == [200]
        after = worker_sockets(server.process.pid)
    finally:
        for sock in clients:
            sock.close()
    held = sorted(after[pid] - before[pid] for pid in before)
    # One worker is one CPU (the GIL): all 32 on one of them (seen before) halves the pod.
    assert sum(held) == 32 and held[-1] <= 24, held


# --- 3: clients that hold request threads -----------------------------------------------


def test_slow_readers_of_large_answers_are_cut_at_the_send_timeout(start_server, server_env):
    """16 clients read /bytes/16777216 a byte at a time: closed after SEND_TIMEOUT."""
    server = start_server(env=server_env(SEND_TIMEOUT="2"))
    cut: list[float] = []

    def slow_reader(stop: threading.Event) -> None:
        started = time.monotonic()
        with small_window(connect(server)) as sock:
            sock.sendall(b"GET /bytes/16777216 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    if not sock.recv(1):
                        break
                except OSError:
                    break
            cut.append(time.monotonic() - started)

    def attack() -> None:
        # 8 are served at a time (2 workers x 4 threads), 8 wait: two rounds of a few seconds.
        deadline = time.monotonic() + 16
        while len(cut) < 16 and time.monotonic() < deadline:
            time.sleep(0.2)

    with attackers(16, slow_reader):
        watched(server, attack)
    assert len(cut) == 16, cut  # every one closed by the server, not by the test's end
    assert answered_soon(server) == 200


def drain(sock: socket.socket, pace: float, stop: threading.Event) -> int:
    """Read until the server closes or `stop` is set, waiting `pace` s after each read."""
    received = 0
    while not stop.is_set():
        try:
            data = sock.recv(8192)
        except OSError:
            break
        if not data:
            break
        received += len(data)
        stop.wait(pace)
    return received


def test_a_reader_that_keeps_pace_per_write_is_cut_at_the_total(start_server, server_env):
    """/bytes/16777216 taken at ~100 KiB/s meets SEND_TIMEOUT, but is cut at SEND_TOTAL_TIMEOUT.

    Each 64 KiB write is taken within a second, so only the bound on the whole answer frees
    the only thread, after 3 s of writes: else it would hold it for almost three minutes. A
    client that takes the same answer at full speed gets all of it, and so does one of a
    stream that the app paces over longer than the bound.
    """
    server = start_server(
        env=server_env(WEB_CONCURRENCY="1", THREADS="1", SEND_TIMEOUT="2", SEND_TOTAL_TIMEOUT="3")
    )
    request = b"GET /bytes/16777216 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    stop = threading.Event()
    with small_window(connect(server)) as sock:
        sock.sendall(request)
        reader = threading.Thread(target=drain, args=(sock, 0.08, stop))
        reader.start()
        started = time.monotonic()
        time.sleep(0.5)
        # Waits for the only thread, which the slow reader holds until its 3 s are up.
        status = server.get("/status/200", timeout=8)[0]
        waited = time.monotonic() - started
        stop.set()
        reader.join(5)
    assert status == 200
    assert 2.5 <= waited < 6, waited
    assert "within 2s a write and 3s in all" in server.logs()
    with connect(server, timeout=5) as sock:
        sock.sendall(request)
        received = drain(sock, 0, threading.Event())
    assert received > 16 * 1024 * 1024, received  # the head and the whole body
    # The app's own pauses are not the client's: a stream paced over 3.6 s is sent whole.
    status, _, body = server.get("/stream/4?interval=1.2")
    assert (status, body.count(b"\n")) == (200, 4)


def test_uploads_that_expect_100_continue_hold_no_thread(start_server, server_env):
    """16 clients ask for 100-continue and never send the body: pages answer, then 408."""
    server = start_server(env=server_env(BODY_TIMEOUT="3"))

    def waiting() -> socket.socket:
        sock = connect(server)
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        return sock

    socks = [waiting() for _ in range(16)]
    try:
        started = time.monotonic()
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(answered_soon(server, 2)))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert results == [200] * 8
        answers = [read_until_closed(sock, 6 - (time.monotonic() - started)) for sock in socks]
        assert all(answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") for answer in answers)
        assert [statuses(answer) for answer in answers] == [[100, 408]] * 16
    finally:
        for sock in socks:
            sock.close()


def test_a_large_upload_gets_body_timeout_in_all(start_server, server_env):
    """A body over 64 KiB that trickles on is cut at BODY_TIMEOUT from its head, not renewed."""
    server = start_server(env=server_env(BODY_TIMEOUT="2"))
    with connect(server) as sock:
        sock.sendall(
            b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n"
            + b"x" * 70000
        )
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 5 and not answer:
            with contextlib.suppress(OSError):
                sock.sendall(b"x" * 10)
            answer = read_until_closed(sock, 0.2)
        answer += read_until_closed(sock, 2)
    assert statuses(answer) == [408], answer
    assert b"application/problem+json" in answer
    assert time.monotonic() - started < 4


def websocket(server, version: str = "13") -> tuple[socket.socket, bytes]:
    """Send a WebSocket upgrade; the socket and the answer's head."""
    sock = connect(server)
    sock.sendall(
        b"GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: " + version.encode() + b"\r\n\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(4096)
        if not data:
            break
        answer += data
    return sock, answer


def test_idle_websockets_take_at_most_half_the_threads(start_server, server_env):
    """One worker of 4 threads holds 2 WebSocket sessions; a third is a 503, pages answer."""
    server = start_server(env=server_env(WEB_CONCURRENCY="1"))
    held = [websocket(server) for _ in range(2)]
    try:
        assert [statuses(answer) for _, answer in held] == [[101]] * 2
        extra, answer = websocket(server)
        extra.close()
        assert statuses(answer) == [503], answer
        assert b"\r\nRetry-After: 5\r\n" in answer
        assert answered_soon(server) == 200
    finally:
        for sock, _ in held:
            sock.close()


# --- 4 and 5: broken bodies --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", id="0x-size"),
        pytest.param(b"5\r\nhello, world\r\n0\r\n\r\n", id="chunk-longer-than-its-size"),
        pytest.param(b"5\nhello\n0\n\n", id="bare-lf"),
        pytest.param(chunked(b"a" * (LIMIT + 10), 4096)[:-5] + b"zz\r\n\r\n", id="after-64-kib"),
    ],
)
@pytest.mark.parametrize("target", [b"POST /echo", b"POST /sink", b"POST /healthz"])
def test_a_broken_chunked_body_closes_the_connection(start_server, body, target):
    """RFC 9112: a framing error closes the connection; what follows is never a request."""
    server = start_server()
    with connect(server) as sock:
        sock.sendall(
            target + b" HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        )
        time.sleep(0.3)  # the answer is under way when the next bytes come
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /status/418 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = read_until_closed(sock, 5)
    # A view that reads the body answers 400; one that does not (405) has its answer sent
    # before the body is read, and the close is the only answer to the body left.
    assert statuses(answer) in ([400], [405]), answer[:300]
    assert b"application/problem+json" in answer
    assert answer.endswith((b"<closed>", b"<reset>"))


@pytest.mark.parametrize(
    ("head", "body"),
    [
        pytest.param(
            b"Transfer-Encoding: chunked", chunked(b"a" * 100000, 4096)[:70000], id="chunked"
        ),
        pytest.param(b"Content-Length: 1000000", b"a" * 70000, id="content-length"),
    ],
)
def test_an_upload_cut_off_is_no_success_and_no_traceback(start_server, head, body):
    """/sink of a body whose client stops sending half-way: never a 200, never a 500."""
    server = start_server()
    with connect(server) as sock:
        sock.sendall(b"POST /sink HTTP/1.1\r\nHost: localhost\r\n" + head + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock, 5)
    assert statuses(answer) in ([], [400]), answer[:300]
    assert answered_soon(server) == 200
    assert "Traceback" not in server.logs()


# --- 6: CPU per byte -----------------------------------------------------------------


def test_a_body_of_one_byte_chunks_costs_linear_cpu(start_server):
    """4 clients send 12,000 1-byte chunks, 5 a packet: little CPU, and probes answer."""
    server = start_server()
    body = b"1\r\na\r\n" * 12000 + b"0\r\n\r\n"
    results: list[bytes] = []

    def upload() -> None:
        with connect(server, timeout=30) as sock:
            sock.sendall(
                b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n"
            )
            for start in range(0, len(body), 30):
                sock.sendall(body[start : start + 30])
                time.sleep(0.002)  # one read per packet, each ending in CRLF
            results.append(read_until_closed(sock, 10))

    before = worker_cpu_seconds(server.process.pid)

    def attack() -> None:
        threads = [threading.Thread(target=upload) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    watched(server, attack)
    assert [statuses(answer) for answer in results] == [[200]] * 4
    assert all(b'"length":12000' in answer for answer in results)
    # Linear: under a second for 48,000 chunks; parsing the whole buffer again on every
    # read, as before, took 5 s here.
    assert worker_cpu_seconds(server.process.pid) - before < 2.5


# --- 7: the smaller defects, each against RFC 9112/9110 ----------------------------------


def head_and_body(answer: bytes) -> tuple[bytes, bytes]:
    """The first answer's head and the rest."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    ("request_bytes", "want"),
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", [400], id="host-with-space"),
        pytest.param(
            b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1e23\r\n\r\n",
            [400],
            id="content-length-not-digits",
        ),
        pytest.param(
            b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 33554433\r\n\r\n",
            [413],
            id="content-length-over-32-mib",
        ),
        pytest.param(
            b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000000000000\r\n\r\n",
            [413],
            id="content-length-1e23-in-digits",
        ),
        pytest.param(
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", [414], id="long-request-line"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", [400], id="bad-header"),
        pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", [505], id="http-2.0-in-http-1"),
    ],
)
def test_bad_requests_get_a_problem_at_once(start_server, request_bytes, want):
    """Refused at once, as problem JSON (never gunicorn's HTML page), and closed."""
    server = start_server()
    started = time.monotonic()
    answer = exchange(server, request_bytes, timeout=3)
    assert time.monotonic() - started < 2
    assert statuses(answer) == want, answer[:300]
    head, body = head_and_body(answer)
    assert b"\r\nContent-Type: application/problem+json" in head
    assert json.loads(body.removesuffix(b"<closed>"))["status"] == want[0]


def test_a_request_after_a_chunked_one_is_answered_at_once(start_server):
    """Pipelined after a chunked body, the next request is served, not left until 408."""
    server = start_server()
    started = time.monotonic()
    answer = exchange(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        b"0\r\n\r\nGET /status/418 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert statuses(answer) == [200, 418], answer
    assert time.monotonic() - started < 2


def test_http_1_2_is_answered_as_http_1_1(start_server):
    """RFC 9110 2.5: a higher minor version is served as the highest one the server speaks."""
    request = b"GET /healthz HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = exchange(start_server(), request)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_an_absolute_form_target_names_the_host(start_server):
    """RFC 9112 3.2.2: the authority of an absolute-form target replaces the Host header."""
    answer = exchange(
        start_server(),
        b"GET http://target.example:8443/headers HTTP/1.1\r\nHost: other.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert statuses(answer) == [200], answer
    headers = json.loads(head_and_body(answer)[1].removesuffix(b"<closed>"))["headers"]
    assert headers["Host"] == "target.example:8443"


def test_the_websocket_limit_counts_bytes(start_server):
    """17,000 emoji are 68,000 bytes: over the 64 KiB limit, closed with 1009."""
    client = Client(start_server().port)
    with client.sock:
        client.send(TextMessage("\N{GRINNING FACE}" * 17000))
        event = client.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1009


def test_a_websocket_version_other_than_13_is_told_13(start_server):
    """RFC 6455 4.4: 426 with Sec-WebSocket-Version naming the version understood."""
    server = start_server()
    sock, answer = websocket(server, version="8")
    sock.close()
    assert statuses(answer) == [426], answer
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer


def test_the_probe_port_answers_only_the_probes(start_server):
    """The probe port serves /healthz and /readyz, closes after each, and 404s the rest."""
    server = start_server()
    port = int(server.env["PROBE_PORT"])
    kubelet = Kubelet(server, port)
    assert (kubelet.probe("/healthz"), kubelet.probe("/readyz")) == (200, 200)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(read_until_closed(sock, 3)) == [404]
