"""The gunicorn worker: gthread, with every client wait bounded and probes kept apart.

gunicorn's gthread worker hands a connection to a request thread as soon as it is readable,
so a client that trickles its headers or its body, or stalls its TLS handshake, holds a thread
for as long as it likes; with every thread held, the kubelet's probes fail and the pod is
restarted. This worker does all waiting for a client in the worker's main loop, which waits
on every connection at once without blocking:

- the TLS handshake, bounded by TLS_HANDSHAKE_TIMEOUT;
- the request head (request line and headers), bounded by HEADER_TIMEOUT; when a body
  follows, the head is parsed there by gunicorn's own parser (a head without one is parsed
  by the request thread);
- the body, up to BODY_BUFFER bytes, bounded by BODY_TIMEOUT (an `Expect: 100-continue` is
  answered here too); a larger body (a streamed upload) is read by the request thread, with
  the same deadline. Bodies are decoded by `framing`, strictly and in linear time; a framing
  error closes the connection.

A request thread only gets a request whose head, and small body, are already in memory, and
it sends the answer under SEND_TIMEOUT per write and SEND_TOTAL_TIMEOUT for all the writes of
one answer (see `CoalescedResponse`), so a client that does not read, or reads just fast
enough for each write, cannot keep it. Requests wait for a thread while the wait stays short: when
the oldest waiting one has waited MAX_QUEUE_WAIT, or QUEUE_PER_THREAD x `threads` requests are
in or waiting for the threads, more are answered 503 with Retry-After at once; a request whose
client left while it waited is dropped, not run.

Probes: with PROBE_PORT set, a thread of each worker answers /healthz and /readyz on that port
alone (see `ProbeListener`): no client of the app can queue in front of the kubelet. On the
app's port, when every request thread is taken, the probes (GET/HEAD of PROBE_PATHS without a
body) go to a thread of their own as well as to the request threads' queue, and whichever
thread is free first answers (the probe thread never waits for a client: its answer is sent at
once or the connection is closed). Never to the probe thread alone: a client that asks for
/healthz on 16 keep-alive connections would queue behind that one thread while the request
threads stood idle.

A request thread sends an answer's head with the first part of its body in one write, and
writes the access line after it has given the connection back: a system call lets the other
threads take the GIL, and a thread that has lost it waits behind them, with the client
waiting for its answer or for its next request to be read.

Pipelined requests are served in order: bytes that follow a request are the start of the
next one, not lost when the connection goes back to the main loop.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import email.utils
import errno
import io
import json
import queue
import re
import select
import selectors
import socket
import ssl
import sys
import threading
import time
from http import HTTPStatus
from urllib.parse import urlsplit

from gunicorn import sock as gsock
from gunicorn import util as gutil
from gunicorn.http import errors as http_errors
from gunicorn.http import message as gmessage
from gunicorn.http import wsgi as gwsgi
from gunicorn.http.body import Body
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import BadRequest, HTTPException

from flask_example.server import framing
from flask_example.server.log import ACCESS_HOLD
from flask_example.settings import load_settings

# Requests answered by the probe thread: the kubelet's liveness and readiness probes.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_METHODS = frozenset({"GET", "HEAD"})
_PROBE_TARGETS = frozenset(path.encode() for path in PROBE_PATHS)
_PROBE_METHODS = frozenset(method.encode() for method in PROBE_METHODS)
# A head that names neither has no body (gunicorn reads it as Content-Length: 0). Searched
# for anywhere in the head, ignoring case, without a lower-cased copy of it.
_BODY_HEADERS = re.compile(rb"content-length|transfer-encoding", re.IGNORECASE)
_NO_HOST = "an HTTP/1.1 request needs exactly one Host header: send Host: <the name you connect to>"
_BAD_HOST = "the Host header is no host[:port]: send the name you connect to"
# RFC 9112 3.2 and RFC 3986 3.2.2: an IP literal or a reg-name, and an optional port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(:[0-9]*)?")
# A request head larger than this is refused (431): gunicorn's own limits allow ~800 KiB,
# far more than any client sends (ingress-nginx forwards at most 4 x 8 KiB of headers).
MAX_HEAD = 64 * 1024
# Bodies up to this size are read by the main loop before a thread sees the request.
BODY_BUFFER = 64 * 1024
# How often the main loop closes connections whose deadline has passed.
SWEEP_INTERVAL = 0.25
# A request that waited for a thread longer than this is dropped if its client has left.
STALE_AFTER = 0.5
# Overload: while the oldest request waiting for a thread has waited this long, or this many
# requests per thread are in or waiting for the threads, more are refused (503) at once. A
# burst of quick requests (32 keep-alive clients of /healthz) waits milliseconds and is
# served; a flood of slow ones (/delay) is refused within a second.
MAX_QUEUE_WAIT = 1.0
QUEUE_PER_THREAD = 8
# Balance: the workers share one listening socket, and the kernel hands a burst of new
# connections to whichever worker is awake, often all to one (32 of 32 seen), and a
# keep-alive connection stays with its worker: one process, one CPU (the GIL). A worker
# that holds this many connections per thread pauses accepting for ACCEPT_PAUSE after each
# one, so that a less busy worker takes the next; alone, it still accepts hundreds a second.
SHARE_PER_THREAD = 4
ACCEPT_PAUSE = 0.002
# What an overloaded worker asks clients to wait before they try again (Retry-After).
RETRY_AFTER = 1
_RECV_SIZE = 65536
# Writes up to this size go straight into the socket's buffer (see CoalescedResponse).
FAST_WRITE = 16 * 1024
_WAIT_READ = (BlockingIOError, InterruptedError, ssl.SSLWantReadError)
# A connection wakes the main loop once per arming (see HardenedWorker._arm).
_ONCE = {
    selectors.EVENT_READ: select.EPOLLIN | select.EPOLLONESHOT,
    selectors.EVENT_WRITE: select.EPOLLOUT | select.EPOLLONESHOT,
}

# Connection states while the main loop owns the connection.
HANDSHAKE, HEAD, BODY, IDLE, BUSY = "handshake", "head", "body", "idle", "busy"


class SecondDate:
    """gunicorn's `http_date`, formatted once a second instead of for every answer.

    The Date header (RFC 9110 6.6.1) counts whole seconds, so the text is the same for every
    answer within one; gunicorn formatted it anew each time, 26,700 instructions (valgrind),
    more than the drain check and the bound on the answer together.
    """

    def __init__(self) -> None:
        self.last = (-1, "")  # (second, its text), replaced whole: safe across threads

    def __call__(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return email.utils.formatdate(timestamp, usegmt=True)
        second = int(time.time())
        last = self.last
        if last[0] != second:
            last = self.last = (second, email.utils.formatdate(second, usegmt=True))
        return last[1]


class SettledConfig:
    """gunicorn's Config for the request path: each setting looked up once, then kept.

    gunicorn's parser and gwsgi.create read about fifteen settings per request, each through
    Config.__getattr__ (a dict lookup and the setting's get()): 40 % of the time they took for
    a two-line request, measured in-process (docs/benchmark.md). A worker's settings never
    change while it runs (a reload starts new workers), so the first answer for each name
    stands; methods stay bound to the real Config.
    """

    def __init__(self, cfg) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str):
        # Only called for a name not kept yet: keep it, so the next read is a plain attribute.
        value = getattr(self._cfg, name)
        setattr(self, name, value)
        return value


class TrustedPeers:
    """gunicorn's check of a peer against FORWARDED_ALLOW_IPS, answered once per address.

    gunicorn parses the peer's address with ipaddress and tests it against every trusted
    network for every request it parses (a fifth of what parsing a two-line request and
    making its environ still took with SettledConfig); the answer for one address and one
    allow list never changes while the worker runs. At most MAX_PEERS answers are kept, so
    clients from many addresses cannot grow the worker.
    """

    MAX_PEERS = 1024

    def __init__(self, check) -> None:
        self.check = check
        self.known: dict[tuple[str, int], bool] = {}

    def __call__(self, address: str, allow_list, networks) -> bool:
        key = (address, id(allow_list))  # the worker's one allow list, kept by its Config
        known = self.known.get(key)
        if known is None:
            if len(self.known) >= self.MAX_PEERS:
                self.known = {}
            known = self.known[key] = self.check(address, allow_list, networks)
        return known


class CoalescedResponse(gwsgi.Response):
    """gunicorn's Response, its head sent with the first part of the body, and every write bounded.

    gunicorn writes the head and each part of the body apart: two system calls for the
    smallest answer, and between them, another thread may take the GIL (see the module's
    docstring) while the client has half an answer. What is written is the same bytes.

    The socket stays non-blocking for small writes (up to FAST_WRITE): they go straight
    into the kernel's buffer, where a socket with a timeout would ask poll() first, and its
    timeout would be set and reset for every request, each a system call. A larger write, or
    what the buffer did not take, waits for the client with the socket's timeout at
    SEND_TIMEOUT (`write_timeout`), or what is left of SEND_TOTAL_TIMEOUT for all the waits
    of one answer (`budget`) when that is less; the app's own pauses (a paced stream) are no
    wait and do not count. The timeout stays until the connection goes back to the main loop
    (see _non_blocking). A probe thread's answer (write_timeout 0) is sent at once or not at
    all. Never sendfile, so the bounds hold for a file answer too.
    """

    head = b""
    write_timeout = 0.0  # seconds a write may wait for the client; 0: it may not
    budget = 0.0  # seconds all the waits of this answer may take together

    def send_headers(self) -> None:
        """Make the head; the next write sends it."""
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self.head = ("".join(lines) + "\r\n").encode("latin-1")
        self.headers_sent = True

    def write(self, arg: bytes) -> None:
        """Write a part of the body (framed when chunked), after the head if not yet sent."""
        self.send_headers()
        if not isinstance(arg, bytes):
            raise TypeError(f"{arg!r} is not a byte")
        size = len(arg)
        if self.response_length is not None:
            if self.sent >= self.response_length:
                return  # never more than Content-Length
            size = min(self.response_length - self.sent, size)
            arg = arg[:size]
        if self.chunked:
            if size == 0:
                return  # an empty chunk would end the body
            arg = b"%X\r\n%s\r\n" % (size, arg)
        self.sent += size
        self._send(arg)

    def close(self) -> None:
        """End the answer: the head if nothing was written, the last chunk if chunked."""
        self.send_headers()
        self._send(b"0\r\n\r\n" if self.chunked else b"")

    def sendfile(self, respiter) -> bool:
        """Never: every answer is written part by part, under the send bounds."""
        return False

    def _send(self, data: bytes) -> None:
        head = self.head
        if head:
            self.head = b""
            data = head + data
        if not data:
            return
        if len(data) <= FAST_WRITE and self.sock.gettimeout() == 0.0:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, ssl.SSLWantWriteError):
                sent = 0
            if sent == len(data):
                return
            # TLS: a write that was refused is tried again with the same bytes, as it must be.
            data = memoryview(data)[sent:]
        self._wait_and_send(data)

    def _wait_and_send(self, data) -> None:
        if self.write_timeout <= 0:
            raise BlockingIOError("the client did not take the answer at once")
        timeout = min(self.write_timeout, self.budget)
        if timeout <= 0:
            raise TimeoutError("the client took longer than SEND_TOTAL_TIMEOUT in all")
        if self.sock.gettimeout() != timeout:
            self.sock.settimeout(timeout)
        started = time.monotonic()
        try:
            self.sock.sendall(data)  # its timeout bounds the whole call (Python 3.5+)
        finally:
            self.budget -= time.monotonic() - started


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, holding bytes read ahead, with a deadline for every read."""

    def __init__(self, sock, data: bytes) -> None:
        super().__init__(sock, max_chunk=_RECV_SIZE)
        self.buf.write(data)
        self.deadline = 0.0
        self.budget = 0.0  # BODY_TIMEOUT, for the 408's text

    def feed(self, data: bytes) -> None:
        """Append bytes the main loop read from the socket."""
        self.buf.seek(0, 2)
        self.buf.write(data)

    def buffered(self) -> bytes:
        """The bytes read ahead and not yet consumed."""
        return self.buf.getvalue()

    def take(self) -> bytes:
        """The bytes read ahead, now no longer held here."""
        data = self.buf.getvalue()
        self.buf = io.BytesIO()
        return data

    def chunk(self) -> bytes:
        """Read from the socket (in a request thread), never past the deadline."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        self.sock.settimeout(remaining)
        try:
            return super().chunk()
        except TimeoutError as error:
            raise self._late() from error
        except OSError as error:
            raise framing.BodyCutShort() from error
        finally:
            self.sock.settimeout(0.0)  # non-blocking between reads, as everywhere

    def _late(self) -> framing.BodyTimeout:
        return framing.BodyTimeout(
            f"the request body took longer than {self.budget:g}s: send it faster"
        )


class _Prepared:
    """Hands gthread's request handler the request the main loop has already parsed."""

    def __init__(self, parser: RequestParser | None, request, error: Exception | None) -> None:
        self.parser = parser
        self.request = request
        self.error = error

    def __next__(self):
        if self.error is not None:
            raise self.error
        return self.request

    def finish_body(self) -> None:
        """Read what the application left of the body, so the next request starts clean."""
        if self.parser is None:
            return
        try:
            self.parser.finish_body()
        except Exception as error:
            # A broken or late body after the answer went out: the close is the answer.
            raise StopIteration(str(error)) from error


class RequestThreads:
    """A fixed number of threads running calls from one queue, first come first served.

    All the worker needs of a thread pool: ThreadPoolExecutor.submit makes a Future and takes
    two locks per call, a tenth of the main loop's time per /healthz by profile.
    """

    def __init__(self, count: int, name: str) -> None:
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, name=f"{name}-{number}", daemon=True)
            for number in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, call, *args) -> None:
        """Run call(*args) in the next free thread."""
        self.calls.put((call, args))

    def shutdown(self, wait: bool = False) -> None:
        """Let each thread end after the calls queued before this one."""
        for _ in self.threads:
            self.calls.put(None)
        if wait:
            for thread in self.threads:
                thread.join()

    def _run(self) -> None:
        while (item := self.calls.get()) is not None:
            call, args = item
            call(*args)


class Connection:
    """One client connection and what the main loop knows of it."""

    def __init__(self, cfg, sock, client, server) -> None:
        self.cfg = cfg
        self.sock = sock
        self.fd = sock.fileno()  # kept: a closed socket's fileno() is -1
        self.client = client
        self.server = server
        self.state = HEAD
        self.event = selectors.EVENT_READ  # what the main loop waits for on the socket
        self.deadline = 0.0
        self.data: bytes | bytearray = b""  # the request head read so far
        self.unreader: DeadlineUnreader | None = None
        self.reader: framing.BodyReader | None = None
        self.parser = None  # what gthread's handler calls next() on
        self.request = None
        self.probe = False
        self.queued = False  # handed to the request threads (not the probe thread)
        self.dispatched = 0.0
        self.started = False  # a request thread took the request (set by that thread)
        self.access = None  # the access line's arguments, written after the connection is kept
        # gthread's TConn interface, as its handler and error paths use it.
        self.initialized = True
        self.is_http2 = False
        self.data_ready = True

    def init(self) -> None:
        """Nothing to do: the main loop did the handshake and read the head."""

    def forget_request(self) -> None:
        """Drop what belonged to the request just answered, before the next one."""
        self.unreader = self.parser = self.request = self.reader = None
        self.probe = False

    def close(self) -> None:
        """Close the socket, ignoring a peer that is gone."""
        with contextlib.suppress(OSError):
            self.sock.close()


def _is_probe(request_line: bytes) -> bool:
    # Only for a request without a body; an odd line just takes the usual way.
    method, _, rest = request_line.partition(b" ")
    target, _, _ = rest.partition(b" ")
    return method in _PROBE_METHODS and target in _PROBE_TARGETS


def problem(status: int, detail: str, headers: tuple[str, ...] = ()) -> bytes:
    """A complete HTTP/1.1 answer with a problem-details body (RFC 9457), closing."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps(
        {"type": "about:blank", "title": phrase, "status": status, "detail": detail}
    ).encode()
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Connection: close",
        "Content-Type: application/problem+json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# What answers a request that gunicorn's parser refused, by the parser's exception.
_REFUSALS = (
    (http_errors.LimitRequestLine, 414, "the request line is over {limit} bytes: shorten it"),
    (
        http_errors.LimitRequestHeaders,
        431,
        "the request headers are too many or too large: send fewer or shorter ones",
    ),
    (
        http_errors.InvalidHTTPVersion,
        505,
        "this server speaks HTTP/1.0 and HTTP/1.1: send one of those",
    ),
    (
        http_errors.UnsupportedTransferCoding,
        501,
        "the only transfer coding understood is chunked: send chunked or a Content-Length",
    ),
    (http_errors.ExpectationFailed, 417, "the only expectation understood is 100-continue"),
)


def refusal(error: BaseException, limit_request_line: int) -> tuple[int, str]:
    """The status and the text that answer a request the parser or the framing refused."""
    if isinstance(error, HTTPException):  # framing's errors
        return error.code, error.description
    for kind, status, text in _REFUSALS:
        if isinstance(error, kind):
            return status, text.format(limit=limit_request_line)
    return 400, f"the request is malformed ({type(error).__name__}): {error}"


def _check_host(request) -> str | None:
    """Apply RFC 9112 3.2 to a parsed request; the problem's text if it breaks it."""
    # RFC 9110 2.5: a higher minor version is served as the highest one we speak.
    request.version = min(request.version, (1, 1))
    hosts = [value for name, value in request.headers if name == "HOST"]
    if request.version >= (1, 1) and len(hosts) != 1:
        return _NO_HOST
    if len(hosts) > 1 or (hosts and not _HOST.fullmatch(hosts[0])):
        return _BAD_HOST
    if "://" in request.uri[:10]:
        # Absolute form (RFC 9112 3.2.2): the target's authority replaces Host.
        authority = urlsplit(request.uri).netloc.rpartition("@")[2]
        request.headers = [(n, v) for n, v in request.headers if n != "HOST"]
        request.headers.append(("HOST", authority))
    return None


class HardenedWorker(ThreadWorker):
    """gthread with bounded client waits, probes apart, bounded queueing and pipelining."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = load_settings()
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.send_timeout = settings.send_timeout
        self.send_total_timeout = settings.send_total_timeout
        self.handshake_timeout = settings.tls_handshake_timeout
        self.probe_port = settings.probe_port
        self.probe_pool = None
        self.probe_listener = None
        # Read once: gunicorn's Config looks every setting up (is_ssl was 3 % of a /healthz).
        self.threads = self.cfg.threads
        self.keepalive = self.cfg.keepalive
        self.is_ssl = self.cfg.is_ssl
        self.pre_request = self.cfg.pre_request
        self.post_request = self.cfg.post_request
        self.request_cfg = SettledConfig(self.cfg)  # what the parser and the environ read
        self.queued = 0  # requests handed to the request threads and not finished yet
        self.queued_lock = threading.Lock()  # the main loop adds to queued, threads take away
        # (dispatched, connection) of requests handed to the request threads, oldest first;
        # an entry is spent once its request started (or the connection went on to the next).
        self.backlog: collections.deque = collections.deque()
        # Connections the main loop waits on, oldest first (a dict keeps insertion order).
        # A request thread adds its connection back when it is done (see _keep).
        self.waiting: dict[Connection, None] = {}
        # Every open connection by its file descriptor, registered once in `ready`.
        self.connections: dict[int, Connection] = {}
        self.ready = None
        self.listeners: dict = {}  # listening socket by file descriptor (see run)
        self.method_queue_fd = -1
        self.share = SHARE_PER_THREAD * self.threads
        self.accept_paused_until = 0.0
        self._swept = 0.0

    def init_process(self) -> None:
        """Start the probe thread; keep the probe port away from the main loop."""
        self.probe_pool = RequestThreads(1, "probe")
        # The main loop's epoll. Connections are one-shot in it: each is registered once and
        # armed for one event at a time, by the main loop or by the request thread that is
        # done with it, so a finished keep-alive request needs no wake-up of the main loop.
        # The listeners and the method queue's pipe wait in it too (see run).
        self.ready = select.epoll()
        gutil.http_date = SecondDate()  # gunicorn's Response looks it up for every answer
        gwsgi.Response = CoalescedResponse  # what gwsgi.create makes for every request
        if not isinstance(gmessage._ip_in_allow_list, TrustedPeers):
            gmessage._ip_in_allow_list = TrustedPeers(gmessage._ip_in_allow_list)
        for listener in list(self.sockets):
            if self.probe_port and listener.getsockname()[1] == self.probe_port:
                self.sockets.remove(listener)
                self.probe_listener = listener
        super().init_process()

    def handle_quit(self, sig, frame) -> None:
        """SIGQUIT or SIGINT: gthread's immediate stop, the held access lines written first."""
        self.log.flush_access()
        super().handle_quit(sig, frame)

    def get_thread_pool(self) -> RequestThreads:
        """The request threads (gthread calls this as the worker starts)."""
        return RequestThreads(self.cfg.threads, "request")

    @property
    def max_queued(self) -> int:
        """Requests in the request threads plus those waiting for one, at most."""
        return QUEUE_PER_THREAD * self.threads

    def overloaded(self) -> bool:
        """Whether a new request would wait too long for a thread (see MAX_QUEUE_WAIT)."""
        backlog = self.backlog
        while backlog and (backlog[0][1].started or backlog[0][1].dispatched != backlog[0][0]):
            backlog.popleft()  # spent: kept only while it may be the oldest waiting
        if self.queued < self.threads:
            return False  # a thread is free
        if self.queued >= self.max_queued:
            return True
        return bool(backlog) and time.monotonic() - backlog[0][0] >= MAX_QUEUE_WAIT

    # --- accepting and reading, in the main loop ---------------------------------------

    def accept(self, listener) -> None:
        """Accept one connection and start waiting for its handshake or request head.

        At worker_connections (or out of file descriptors), the connection waited on the
        longest is closed to make room: a flood of idle or slow connections then costs its
        own oldest members, never the client that arrives last.
        """
        if self.nr_conns >= self.worker_connections:
            self._evict()
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):
                self.log.warning("Out of file descriptors; closing the oldest waiting connection")
                self._evict()
                return
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        if self.nr_conns >= self.share:
            self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
        client_sock.setblocking(False)
        conn = Connection(self.cfg, client_sock, client_addr, listener.getsockname())
        self.connections[conn.fd] = conn
        self.ready.register(conn.fd, select.EPOLLONESHOT)  # armed once it is waited on
        if self.is_ssl:
            try:
                conn.sock = gsock.ssl_context(self.cfg).wrap_socket(
                    client_sock,
                    server_side=True,
                    do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except (OSError, ValueError) as error:
                self.log.warning("Cannot start TLS on a new connection: %s", error)
                self._close(conn)
                return
            self._wait(conn, HANDSHAKE, self.handshake_timeout)
            self._handshake(conn)
        else:
            self._wait(conn, HEAD, self.header_timeout)
        self._arm(conn)

    def _wait(self, conn: Connection, state: str, timeout: float) -> None:
        conn.state = state
        conn.deadline = time.monotonic() + timeout
        conn.event = selectors.EVENT_READ
        self.waiting[conn] = None

    def _arm(self, conn: Connection) -> None:
        # After the main loop handled a connection: wait for its next event, unless a request
        # thread has it now (or it was closed).
        if conn.state != BUSY and conn in self.waiting:
            with contextlib.suppress(OSError, ValueError):
                self.ready.modify(conn.fd, _ONCE[conn.event])

    def set_accept_enabled(self, enabled: bool) -> None:
        """Wait, or stop waiting, for new connections: in the one epoll of the main loop."""
        if enabled == self._accepting:
            return
        for fd, listener in self.listeners.items():
            if enabled:
                listener.setblocking(False)
                self.ready.register(fd, select.EPOLLIN)
            else:
                self.ready.unregister(fd)
        self._accepting = enabled

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wait on the one epoll for connections, new connections and the method queue.

        One epoll for all, not gthread's selector with the connections' epoll inside it: one
        system call per wake-up instead of two, and no selector keys made for each event.
        """
        for fd, _events in self.ready.poll(timeout):
            conn = self.connections.get(fd)
            if conn is not None:
                if conn.state != BUSY:
                    self._on_event(conn)
            elif fd == self.method_queue_fd:
                self.method_queue.run_callbacks(None)
            elif (listener := self.listeners.get(fd)) is not None:
                self.accept(listener)

    def _on_event(self, conn: Connection) -> None:
        if conn.state == HANDSHAKE:
            self._handshake(conn)
        else:
            self._read(conn)
        self._arm(conn)

    def _handshake(self, conn: Connection) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.event = selectors.EVENT_READ  # what _arm waits for next
            return
        except ssl.SSLWantWriteError:
            conn.event = selectors.EVENT_WRITE
            return
        except (OSError, ValueError) as error:
            self.log.debug("TLS handshake failed: %s", error)
            self._close(conn)
            return
        if gsock.is_http2_negotiated(conn.sock):
            self._close(conn)  # not offered (h1 only); a client that insists is not served
            return
        self._wait(conn, HEAD, self.header_timeout)
        self._read(conn)  # the first request may have come with the handshake's last flight

    def _read(self, conn: Connection) -> None:
        chunks = []
        total = 0
        while total <= MAX_HEAD:
            try:
                data = conn.sock.recv(_RECV_SIZE)
            except _WAIT_READ:
                break
            except ssl.SSLWantWriteError:
                break
            except (OSError, ValueError):
                self._close(conn)
                return
            if not data:
                if chunks:
                    break  # serve what came before the end; the next read sees it again
                self._close(conn)  # the client is gone (or closed an idle keep-alive)
                return
            chunks.append(data)
            total += len(data)
            if len(data) < _RECV_SIZE and not (self.is_ssl and conn.sock.pending()):
                break  # drained: spare the read that would only say so
        if chunks:
            self._received(conn, chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _received(self, conn: Connection, data: bytes) -> None:
        if conn.state == IDLE:
            # The next request on a keep-alive connection: its head gets the full budget.
            self._wait(conn, HEAD, self.header_timeout)
        if conn.state == HEAD:
            if conn.data:
                conn.data += data
            else:
                conn.data = data  # the usual case: the whole head in one read, no copy
            self._head(conn)
        elif conn.state == BODY:
            try:
                conn.reader.feed(data)
            except HTTPException as error:
                self._refuse(conn, error.code, error.description)
                return
            self._body(conn)

    def _head(self, conn: Connection) -> None:
        end = conn.data.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.data) > MAX_HEAD:
                self._refuse(
                    conn,
                    431,
                    f"the request head is larger than {MAX_HEAD} bytes: send fewer or "
                    "shorter headers",
                )
            return
        data = bytes(conn.data)
        conn.data = b""
        conn.unreader = DeadlineUnreader(conn.sock, data)
        if _BODY_HEADERS.search(data, 0, end) is None:
            # No body to wait for: the request thread parses the head, which spares the main
            # loop (and its GIL time) the most common request of all.
            conn.probe = _is_probe(data[: data.find(b"\r\n")])
            self._dispatch(conn)
            return
        try:
            request = self._parse(conn)
        except http_errors.NoMoreData:
            self._close(conn)
            return
        except Exception as error:
            self._refuse(conn, *refusal(error, self.cfg.limit_request_line))
            return
        if conn.reader is None or conn.reader.complete:
            self._dispatch(conn)
        else:
            self._await_body(conn, request)

    def _await_body(self, conn: Connection, request) -> None:
        if conn.reader.decoder is None and conn.reader.left > framing.MAX_BODY:
            self._refuse(conn, 413, framing.BodyTooLarge.description)
            return
        if request._expected_100_continue:
            # Asked for here, so the body too is awaited here, not by a request thread.
            request._expected_100_continue = False
            with contextlib.suppress(OSError, ValueError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._wait(conn, BODY, self.body_timeout)

    def _parse(self, conn: Connection):
        """Parse the head read ahead with gunicorn's parser, check it, frame its body.

        Raises what gunicorn's parser raises, or a BadRequest for a missing or bad Host.
        """
        parser = RequestParser(self.request_cfg, conn.sock, conn.client)
        parser.unreader = conn.unreader
        request = next(parser)
        text = _check_host(request)
        if text is not None:
            raise BadRequest(text)
        conn.request = request
        conn.parser = _Prepared(parser, request, None)
        conn.reader = None
        # gunicorn frames the body: a LengthReader (length 0 without one) or a ChunkedReader.
        length = getattr(request.body.reader, "length", None)
        if length == 0:
            return request
        conn.reader = framing.BodyReader(request, conn.unreader, length)
        if length is None:
            conn.reader.feed(conn.unreader.take())
        else:
            conn.reader.buffered = len(conn.unreader.buffered())
        request.body = Body(conn.reader)
        return request

    def serve(self, conn: Connection, queued: bool, ticket: list) -> None:
        """In a request thread: answer the request, then give the connection back.

        A probe may be handed to two threads (see _dispatch) with one ticket: the first to
        take it serves, the other returns at once.
        """
        try:
            ticket.pop()  # one step under the GIL: only one thread gets it
        except IndexError:
            if queued:
                with self.queued_lock:
                    self.queued -= 1
            return
        conn.queued = queued
        try:
            keepalive = self.handle(conn)
        except Exception:
            self.log.exception("Error handling request")
            keepalive = False
        access, conn.access = conn.access, None
        if queued:
            with self.queued_lock:
                self.queued -= 1
        conn.queued = False
        if not (keepalive and self.alive and self._keep(conn)):
            self.method_queue.defer(self.finish_request, conn, keepalive)
        if access is not None:
            # The client has its answer and its next request is read. While other requests are
            # in the worker, the line may wait to go out with theirs (see log.ACCESS_HOLD).
            self.log.access(*access, hold=self.queued > 0)

    def handle(self, conn: Connection) -> bool:
        """In a request thread: drop a request whose client left, parse, serve; keep-alive?

        gthread's own handle() without what this worker does elsewhere: the socket stays
        non-blocking (the answer's writes are bounded by CoalescedResponse), the TLS handshake
        is done, and HTTP/2 is never negotiated.
        """
        conn.started = True
        if conn.queued and time.monotonic() - conn.dispatched > STALE_AFTER and _gone(conn.sock):
            self.log.info("Dropped a request of %s: the client left while it waited", conn.client)
            return False
        request = None
        try:
            if conn.parser is None:
                try:
                    self._parse(conn)
                except http_errors.NoMoreData:
                    return False
                except Exception as error:
                    self._answer_refusal(conn, error)
                    return False
            request = next(conn.parser)
            if self.handle_request(request, conn):
                conn.parser.finish_body()
                return True
        except (http_errors.NoMoreData, StopIteration) as error:
            self.log.debug("Closing %s: %s", conn.client, error)
        except ssl.SSLError as error:
            if error.args[0] != ssl.SSL_ERROR_EOF:
                self.handle_error(request, conn.sock, conn.client, error)
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as error:
            self.handle_error(request, conn.sock, conn.client, error)
        return False

    def _keep(self, conn: Connection) -> bool:
        """In a request thread: hand a keep-alive connection straight back to the main loop.

        The connection is waited on again and armed for its next request, which wakes the
        main loop as any client does: no wake-up of its own, no re-registration. Bytes read
        ahead (a pipelined request) or held by TLS are the main loop's to serve in order, so
        such a connection goes back through finish_request instead (False).
        """
        if conn.unreader is not None and conn.unreader.buffered():
            return False
        if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
            return False
        if not _non_blocking(conn.sock):
            return False
        conn.forget_request()
        self._wait(conn, IDLE, self.keepalive)
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the main loop's
            self.ready.modify(conn.fd, _ONCE[selectors.EVENT_READ])
        return True

    def handle_request(self, req, conn):
        """Serve one request; a client that does not take its answer in time is closed."""
        try:
            return self._respond(req, conn)
        except (TimeoutError, BlockingIOError):  # the second: a probe's, never waited for
            within = (
                f"within {self.send_timeout:g}s a write and {self.send_total_timeout:g}s in all"
                if conn.queued
                else "at once (a probe)"
            )
            self.log.info("Closed %s: it did not take its answer %s", conn.client, within)
            return False

    def _respond(self, req, conn) -> bool:
        """gthread's handle_request, less what this worker does elsewhere; keep-alive?

        The hooks are looked up once (see __init__), the access line is left in conn.access
        for serve to write, and the time is taken with the monotonic clock.
        """
        environ = {}
        resp = None
        try:
            self.pre_request(self, req)
            started = time.monotonic()
            resp, environ = gwsgi.create(req, conn.sock, conn.client, conn.server, self.request_cfg)
            # A probe thread's answer is sent at once or not at all (see CoalescedResponse).
            resp.write_timeout = self.send_timeout if conn.queued else 0.0
            resp.budget = self.send_total_timeout
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                spent = datetime.timedelta(seconds=time.monotonic() - started)
                conn.access = (resp, req, environ, spent)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except Exception:
            if resp is not None and resp.headers_sent:
                # Part of the answer may be out: only closing the connection can tell.
                self.log.exception("Error handling request")
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
                    conn.sock.close()
                raise StopIteration() from None
            raise
        finally:
            try:
                self.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")

    def handle_error(self, req, client, addr, exc):
        """gunicorn's error answer, as problem JSON instead of an HTML page."""
        if isinstance(exc, http_errors.ParseException | ssl.SSLError):
            status, text = refusal(exc, self.cfg.limit_request_line)
            self.log.info("Refused %s: %s", addr, status)
        else:
            self.log.exception("Error handling request")
            status, text = 500, "the server failed to answer: see its log"
        with contextlib.suppress(Exception):
            client.sendall(problem(status, text))

    def _answer_refusal(self, conn: Connection, error: Exception) -> None:
        status, text = refusal(error, self.cfg.limit_request_line)
        self.log.info("Refused %s: %s", conn.client, status)
        with contextlib.suppress(OSError, ValueError):
            conn.sock.sendall(problem(status, text))

    def _body(self, conn: Connection) -> None:
        if conn.reader.complete or conn.reader.buffered >= BODY_BUFFER:
            self._dispatch(conn)

    def _dispatch(self, conn: Connection) -> None:
        # The body's deadline holds in the request thread too: from when the head was read.
        unreader = conn.unreader
        if unreader is not None:
            unreader.budget = self.body_timeout
            unreader.deadline = (
                conn.deadline if conn.state == BODY else time.monotonic() + self.body_timeout
            )
        # A probe goes to the request threads and, when they are all busy, to the probe
        # thread as well: the first of them that is free answers it (see serve). When enough
        # requests wait (overloaded), a probe goes to the probe thread alone, others get 503.
        to_probe_thread = conn.probe and self.queued >= self.threads
        overloaded = self.overloaded()
        if overloaded and not to_probe_thread:
            self._refuse(
                conn,
                503,
                "every request thread is busy and enough requests wait: try again in a second",
                (f"Retry-After: {RETRY_AFTER}",),
            )
            return
        self.waiting.pop(conn, None)
        conn.state = BUSY
        conn.started = False
        conn.dispatched = time.monotonic()
        ticket = [True]
        if not overloaded:
            with self.queued_lock:
                self.queued += 1
            self.backlog.append((conn.dispatched, conn))
            # The request thread owns the connection from here (see serve).
            self.tpool.submit(self.serve, conn, True, ticket)
        if to_probe_thread:
            self.probe_pool.submit(self.serve, conn, False, ticket)

    def _evict(self) -> None:
        oldest = next(iter(self.waiting), None)
        if oldest is not None:
            self.log.debug("At the connection limit: closing %s", oldest.client)
            self._close(oldest)

    def _close(self, conn: Connection) -> None:
        self.waiting.pop(conn, None)
        # The app may have closed the socket already (a WebSocket session), and its file
        # descriptor may now be a newer connection's.
        if self.connections.get(conn.fd) is conn:
            del self.connections[conn.fd]
            with contextlib.suppress(OSError, ValueError):
                self.ready.unregister(conn.fd)
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn: Connection, status: int, text: str, headers=()) -> None:
        # A few hundred bytes into an empty send buffer: never blocks; if it cannot be sent
        # whole, the client is not reading, and the close is the answer.
        self.log.info("Refused %s: %s", conn.client, status)
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(problem(status, text, headers))
        self._close(conn)

    # --- after a request thread is done, in the main loop ------------------------------

    def finish_request(self, conn: Connection, keepalive: bool) -> None:
        """Close the connection, or serve what came after its request (see _keep)."""
        if not (keepalive and self.alive):
            self._close(conn)
            return
        leftover = conn.unreader.buffered() if conn.unreader is not None else b""
        conn.forget_request()
        if not _non_blocking(conn.sock):
            self._close(conn)
            return
        self._wait(conn, IDLE, self.keepalive)
        pending = isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()
        if leftover:
            # Pipelined: the next request came with this one; serve it now, in order.
            self._received(conn, leftover)
        if pending and conn.state != BUSY and conn in self.waiting:
            self._read(conn)  # TLS holds decrypted bytes that the poller cannot see
        self._arm(conn)

    # --- deadlines and the main loop ---------------------------------------------------

    def sweep(self) -> None:
        """Close every connection whose handshake, head, body or keep-alive time is up.

        Every SWEEP_INTERVAL at most, not at every wake-up of the main loop: it also writes
        the access lines held longer than ACCESS_HOLD (see log.JsonLogger.access).
        """
        now = time.monotonic()
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        self.log.flush_access(older_than=ACCESS_HOLD)
        # A copy first: request threads add connections back meanwhile.
        for conn in [c for c in list(self.waiting) if c.deadline <= now or not self.alive]:
            expired = conn.deadline <= now
            if conn.state == IDLE or (conn.state == HEAD and not conn.data):
                # Nothing of a request yet (or stopping): a silent close is the answer.
                if expired or not self.alive:
                    self._close(conn)
            elif not expired:
                continue  # stopping: a request under way may still finish in the grace time
            elif conn.state == HANDSHAKE:
                self.log.debug("TLS handshake with %s took too long", conn.client)
                self._close(conn)
            elif conn.state == HEAD:
                self._refuse(
                    conn,
                    408,
                    f"the request head took longer than {self.header_timeout:g}s: send it at once",
                )
            else:
                self._refuse(
                    conn,
                    408,
                    f"the request body took longer than {self.body_timeout:g}s: send it faster",
                )

    def run(self) -> None:
        """gthread's main loop, with deadlines swept several times a second."""
        if self.probe_listener is not None:
            probes = ProbeListener(self.probe_listener, self.wsgi, self.log)
            threading.Thread(target=probes.serve, name="probe-listener", daemon=True).start()
        self.listeners = {listener.fileno(): listener for listener in self.sockets}
        self.method_queue_fd = self.method_queue.fileno()
        self.ready.register(self.method_queue_fd, select.EPOLLIN)
        self.set_accept_enabled(True)
        while self.alive:
            self.notify()
            # At the limit, a new connection replaces the oldest waiting one (see accept).
            can_accept = self.nr_conns < self.worker_connections or bool(self.waiting)
            pause = self.accept_paused_until - time.monotonic()  # see SHARE_PER_THREAD
            if (can_accept and pause <= 0) != self._accepting:
                self.set_accept_enabled(can_accept and pause <= 0)
            timeout = pause if 0 < pause < 2 * SWEEP_INTERVAL else 2 * SWEEP_INTERVAL
            self.wait_for_and_dispatch_events(timeout=timeout)
            if not self.is_parent_alive():
                break
            self.sweep()
        # Graceful stop: no new connections; idle ones close now, requests may finish.
        self.set_accept_enabled(False)
        graceful_end = time.monotonic() + self.cfg.graceful_timeout
        self._swept = 0.0
        self.sweep()
        while self.nr_conns > 0:
            remaining = graceful_end - time.monotonic()
            if remaining <= 0:
                break
            self.wait_for_and_dispatch_events(timeout=min(remaining, 2 * SWEEP_INTERVAL))
            self.sweep()
        self.log.flush_access()
        self.tpool.shutdown(wait=False)
        self.probe_pool.shutdown(wait=False)
        self.poller.close()
        self.ready.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()


def _non_blocking(sock) -> bool:
    """Make sure the main loop never waits on the socket; False if the app closed it.

    Sockets stay non-blocking all along: only an answer that waited for its client (see
    CoalescedResponse) or an app that set a timeout of its own costs the system call here.
    """
    if sock.fileno() < 0:
        return False  # closed by the app (a WebSocket session ends so)
    if sock.gettimeout() != 0.0:
        try:
            sock.settimeout(0.0)
        except OSError:
            return False
    return True


def _gone(sock) -> bool:
    # The client closed (or reset) its side: its answer would go nowhere. Peeks at the TCP
    # stream under TLS too, so a request that was pipelined after this one is no sign. The
    # socket is non-blocking here (see _non_blocking), so the peek never waits.
    try:
        return socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class ProbeListener:
    """Answers GET/HEAD /healthz and /readyz on the probe port, one connection at a time.

    The port is the kubelet's: it only answers the probes (anything else is a 404), always
    closes after one answer, and gives each client PROBE_TIMEOUT for its request and for
    taking the answer, so that no one holds it for longer.
    """

    PROBE_TIMEOUT = 1.0
    MAX_REQUEST = 8192

    def __init__(self, listener, app, log) -> None:
        self.listener = listener
        self.app = app
        self.log = log
        self.port = listener.getsockname()[1]

    def serve(self) -> None:
        """Accept and answer until the listener closes (the worker exits)."""
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        while True:
            selector.select()
            try:
                client, address = self.listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # another worker took it
            except OSError:
                return
            with client:
                try:
                    self.answer(client, address)
                except Exception as error:  # a probe must never take the thread down
                    self.log.debug("Probe connection from %s failed: %s", address, error)

    def answer(self, client, address) -> None:
        """Read one request head under the deadline and answer it."""
        client.settimeout(self.PROBE_TIMEOUT)
        deadline = time.monotonic() + self.PROBE_TIMEOUT
        head = b""
        while b"\r\n\r\n" not in head:
            if len(head) > self.MAX_REQUEST or time.monotonic() > deadline:
                return
            client.settimeout(max(deadline - time.monotonic(), 0.01))
            data = client.recv(4096)
            if not data:
                return
            head += data
        method, _, rest = head.partition(b"\r\n")[0].decode("latin-1").partition(" ")
        target = rest.partition(" ")[0]
        path, _, query = target.partition("?")
        if method not in PROBE_METHODS or path not in PROBE_PATHS:
            client.sendall(problem(404, "this port answers only GET /healthz and GET /readyz"))
            return
        client.settimeout(max(deadline - time.monotonic(), 0.01))
        client.sendall(self._call(method, path, query, address))

    def _call(self, method: str, path: str, query: str, address) -> bytes:
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": address[0],
            "REMOTE_PORT": str(address[1]),
            "HTTP_HOST": f"localhost:{self.port}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        started: list = []
        result = self.app(
            environ, lambda status, headers, exc_info=None: started.extend((status, headers))
        )
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        lines = [f"HTTP/1.1 {status}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() != "connection"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (
            b"" if method == "HEAD" else body
        )
