"""The gunicorn worker: gthread, with every client wait bounded and probes kept apart.

gunicorn's gthread worker hands a connection to a request thread as soon as it is readable,
so a client that trickles its headers or its body, or stalls its TLS handshake, holds a thread
for as long as it likes; with every thread held, the kubelet's probes fail and the pod is
restarted. This worker does all waiting for a client in the worker's main loop, which waits
on every connection at once without blocking:

- the TLS handshake, bounded by TLS_HANDSHAKE_TIMEOUT;
- the request head (request line and headers), bounded by HEADER_TIMEOUT; when a body
  follows, the head is parsed there by gunicorn's own parser, so that the framing this worker
  waits for is the one gunicorn serves (a head without one is parsed by the request thread);
- the body, up to BODY_BUFFER bytes, bounded by BODY_TIMEOUT; a larger body (a streamed
  upload) is read by the request thread, with the same deadline.

A request thread only gets a request whose head, and small body, are already in memory. When
every request thread is taken (e.g. by /delay), the probes (GET/HEAD of PROBE_PATHS without a
body) go to a thread of their own, so the kubelet still gets its answer. That is safe because
a probe request is complete before it is dispatched, its views do no I/O beyond a file check,
and its answer is a few hundred bytes that fit any socket buffer: the probe thread never waits
for a client, so one thread serves any number of probes in turn.

Pipelined requests are served in order: bytes that follow a request are the start of the
next one, not lost when the connection goes back to the main loop.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import ssl
import time
from concurrent import futures
from functools import partial

from gunicorn import sock as gsock
from gunicorn.http import errors as http_errors
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import IterUnreader, SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

from flask_example.settings import load_settings

# Requests answered by the probe thread: the kubelet's liveness and readiness probes.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_METHODS = frozenset({"GET", "HEAD"})
_PROBE_TARGETS = frozenset(path.encode() for path in PROBE_PATHS)
_PROBE_METHODS = frozenset(method.encode() for method in PROBE_METHODS)
# A head that names neither has no body (gunicorn reads it as Content-Length: 0).
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
_NO_HOST = "an HTTP/1.1 request needs exactly one Host header: send Host: <the name you connect to>"
# A request head larger than this is refused (431): gunicorn's own limits allow ~800 KiB,
# far more than any client sends (ingress-nginx forwards at most 4 x 8 KiB of headers).
MAX_HEAD = 64 * 1024
# Bodies up to this size are read by the main loop before a thread sees the request.
BODY_BUFFER = 64 * 1024
# How often the main loop closes connections whose deadline has passed.
SWEEP_INTERVAL = 0.25
_RECV_SIZE = 65536
_WAIT_READ = (BlockingIOError, InterruptedError, ssl.SSLWantReadError)

# Connection states while the main loop owns the connection.
HANDSHAKE, HEAD, BODY, IDLE, BUSY = "handshake", "head", "body", "idle", "busy"


class BodyTimeout(http_errors.NoMoreData):
    """The client did not send its body within BODY_TIMEOUT.

    A NoMoreData (an OSError): the application's input stream reports a disconnected client
    (400), and gunicorn closes the connection without logging a traceback.
    """


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, holding bytes read ahead, with a deadline for every read."""

    def __init__(self, sock, data: bytes, deadline: float | None = None) -> None:
        super().__init__(sock, max_chunk=_RECV_SIZE)
        self.buf.write(data)
        self.deadline = deadline

    def feed(self, data: bytes) -> None:
        """Append bytes the main loop read from the socket."""
        self.buf.seek(0, 2)
        self.buf.write(data)

    def buffered(self) -> bytes:
        """The bytes read ahead and not yet consumed."""
        return self.buf.getvalue()

    def chunk(self) -> bytes:
        """Read from the socket (in a request thread), never past the deadline."""
        if self.deadline is None:
            return super().chunk()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise BodyTimeout(b"")
        self.sock.settimeout(remaining)
        try:
            return super().chunk()
        except TimeoutError as error:
            raise BodyTimeout(b"") from error
        finally:
            # An application that takes over the socket (a WebSocket) expects it blocking.
            self.sock.settimeout(None)


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
        if self.parser is not None:
            self.parser.finish_body()


class Connection:
    """One client connection and what the main loop knows of it."""

    def __init__(self, cfg, sock, client, server) -> None:
        self.cfg = cfg
        self.sock = sock
        self.client = client
        self.server = server
        self.state = HEAD
        self.event = selectors.EVENT_READ  # what the main loop waits for on the socket
        self.deadline = 0.0
        self.data: bytes | bytearray = b""  # the request head read so far
        self.unreader: DeadlineUnreader | None = None
        self.parser = None  # what gthread's handler calls next() on
        self.request = None
        self.probe = False
        self.queued = False  # handed to the request threads (not the probe thread)
        # gthread's TConn interface, as its handler and error paths use it.
        self.initialized = True
        self.is_http2 = False
        self.data_ready = True

    def init(self) -> None:
        """Nothing to do: the main loop did the handshake and read the head."""

    def close(self) -> None:
        """Close the socket, ignoring a peer that is gone."""
        with contextlib.suppress(OSError):
            self.sock.close()


def _chunked_body_complete(request, data: bytes) -> bool:
    # Parse a copy of the body read so far with gunicorn's own chunked reader: True once it
    # holds the last chunk and trailers (or is malformed: the thread then answers 400).
    reader = ChunkedReader(request, IterUnreader([data]))
    try:
        while reader.read(_RECV_SIZE):
            pass
    except http_errors.NoMoreData:
        return False
    except Exception:
        return True
    return True


def _is_probe(request_line: bytes) -> bool:
    # Only for a request without a body; an odd line just takes the usual way.
    method, _, rest = request_line.partition(b" ")
    target, _, _ = rest.partition(b" ")
    return method in _PROBE_METHODS and target in _PROBE_TARGETS


def _one_host(request) -> bool:
    # RFC 9112 3.2: an HTTP/1.1 request has exactly one Host header.
    return request.version < (1, 1) or [n for n, _ in request.headers].count("HOST") == 1


def _simple_response(status: str, text: str) -> bytes:
    body = f"{text}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class HardenedWorker(ThreadWorker):
    """gthread with bounded client waits, probes on their own thread, and pipelining."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = load_settings()
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.handshake_timeout = settings.tls_handshake_timeout
        self.probe_pool = None
        self.queued = 0  # requests handed to the request threads and not finished yet
        # Connections the main loop waits on, oldest first (a dict keeps insertion order).
        self.waiting: dict[Connection, None] = {}
        self._swept = 0.0

    def init_process(self) -> None:
        """Start the probe thread beside the request threads."""
        self.probe_pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
        super().init_process()

    # --- accepting and reading, in the main loop ---------------------------------------

    def accept(self, listener) -> None:
        """Accept one connection and start waiting for its handshake or request head.

        At worker_connections (or out of file descriptors), the connection waited on the
        longest is closed to make room: a flood of idle or slow connections then costs its
        own oldest members, never the kubelet's probe that arrives last.
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
        client_sock.setblocking(False)
        conn = Connection(self.cfg, client_sock, client_addr, listener.getsockname())
        if self.cfg.is_ssl:
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

    def _wait(self, conn: Connection, state: str, timeout: float) -> None:
        conn.state = state
        conn.deadline = time.monotonic() + timeout
        if conn not in self.waiting:
            self.waiting[conn] = None
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_event, conn))
        self._listen(conn, selectors.EVENT_READ)

    def _listen(self, conn: Connection, event: int) -> None:
        if conn.event != event:
            conn.event = event
            self.poller.modify(conn.sock, event, partial(self._on_event, conn))

    def _on_event(self, conn: Connection, _fileobj) -> None:
        if conn.state == HANDSHAKE:
            self._handshake(conn)
        else:
            self._read(conn)

    def _handshake(self, conn: Connection) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._listen(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._listen(conn, selectors.EVENT_WRITE)
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
            if len(data) < _RECV_SIZE and not (conn.cfg.is_ssl and conn.sock.pending()):
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
            conn.unreader.feed(data)
            self._body(conn)

    def _head(self, conn: Connection) -> None:
        end = conn.data.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.data) > MAX_HEAD:
                self._refuse(
                    conn,
                    "431 Request Header Fields Too Large",
                    f"the request head is larger than {MAX_HEAD} bytes: send fewer or "
                    "shorter headers",
                )
            return
        data = bytes(conn.data)
        conn.data = b""
        conn.unreader = DeadlineUnreader(conn.sock, data)
        head = data[:end].lower()
        if not any(name in head for name in _BODY_HEADERS):
            # No body to wait for: the request thread parses the head, which spares the main
            # loop (and its GIL time) the most common request of all.
            conn.probe = _is_probe(data[: data.find(b"\r\n")])
            self._dispatch(conn)
            return
        request = self._parse(conn)
        if request is None:
            self._dispatch(conn)  # the request thread answers the error as gunicorn does
            return
        if not _one_host(request):
            self._refuse(conn, "400 Bad Request", _NO_HOST)
            return
        if self._body_needed(request) and not request._expected_100_continue:
            self._wait(conn, BODY, self.body_timeout)
            self._body(conn)
        else:
            self._dispatch(conn)

    def _parse(self, conn: Connection):
        """Parse the head read ahead with gunicorn's parser; None (error kept) if invalid."""
        parser = RequestParser(self.cfg, conn.sock, conn.client)
        parser.unreader = conn.unreader
        try:
            conn.request = next(parser)
        except Exception as error:
            conn.parser = _Prepared(None, None, error)
            return None
        conn.parser = _Prepared(parser, conn.request, None)
        return conn.request

    def handle(self, conn: Connection):
        """In a request thread: parse a head the main loop left unparsed, then serve it."""
        if conn.parser is None:
            request = self._parse(conn)
            if request is not None and not _one_host(request):
                self.log.info("Refused %s: 400 Bad Request", conn.client)
                with contextlib.suppress(OSError, ValueError):
                    conn.sock.sendall(_simple_response("400 Bad Request", _NO_HOST))
                return False
        return super().handle(conn)

    @staticmethod
    def _body_needed(request) -> bool:
        reader = request.body.reader
        return not isinstance(reader, LengthReader) or reader.length > 0

    def _body(self, conn: Connection) -> None:
        data = conn.unreader.buffered()
        reader = conn.request.body.reader
        if isinstance(reader, LengthReader):
            complete = len(data) >= reader.length
        else:
            complete = data.endswith(b"\r\n") and _chunked_body_complete(conn.request, data)
        if complete or len(data) >= BODY_BUFFER:
            self._dispatch(conn)

    def _dispatch(self, conn: Connection) -> None:
        # The body's deadline holds in the request thread too: from when the head was read.
        if conn.unreader is not None:
            conn.unreader.deadline = (
                conn.deadline if conn.state == BODY else time.monotonic() + self.body_timeout
            )
        self._release(conn)
        conn.state = BUSY
        conn.sock.setblocking(True)
        # A probe takes a request thread when one is free (the fast path), else its own.
        conn.queued = not (conn.probe and self.queued >= self.cfg.threads)
        self.queued += conn.queued
        pool = self.tpool if conn.queued else self.probe_pool
        future = pool.submit(self.handle, conn)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )

    def _evict(self) -> None:
        oldest = next(iter(self.waiting), None)
        if oldest is not None:
            self.log.debug("At the connection limit: closing %s", oldest.client)
            self._close(oldest)

    def _release(self, conn: Connection) -> None:
        if conn in self.waiting:
            del self.waiting[conn]
            conn.event = selectors.EVENT_READ
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _close(self, conn: Connection) -> None:
        self._release(conn)
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn: Connection, status: str, text: str) -> None:
        # A few hundred bytes into an empty send buffer: never blocks; if it cannot be sent
        # whole, the client is not reading, and the close is the answer.
        self.log.info("Refused %s: %s", conn.client, status)
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(_simple_response(status, text))
        self._close(conn)

    # --- after a request thread is done, in the main loop ------------------------------

    def finish_request(self, conn: Connection, future) -> None:
        """Keep the connection for its next request, or close it."""
        self.queued -= conn.queued
        conn.queued = False
        try:
            keepalive = future.result() if not future.cancelled() else False
        except Exception:
            keepalive = False
        if not (keepalive and self.alive):
            self.nr_conns -= 1
            conn.close()
            return
        leftover = conn.unreader.buffered() if conn.unreader is not None else b""
        conn.unreader = conn.parser = conn.request = None
        conn.probe = False
        try:
            conn.sock.setblocking(False)
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        self._wait(conn, IDLE, self.cfg.keepalive)
        pending = isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()
        if leftover:
            # Pipelined: the next request came with this one; serve it now, in order.
            self._received(conn, leftover)
        if pending and conn.state != BUSY:
            self._read(conn)  # TLS holds decrypted bytes that the poller cannot see

    # --- deadlines and the main loop ---------------------------------------------------

    def sweep(self) -> None:
        """Close every connection whose handshake, head, body or keep-alive time is up."""
        now = time.monotonic()
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        for conn in [c for c in self.waiting if c.deadline <= now or not self.alive]:
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
                    "408 Request Timeout",
                    f"the request head took longer than {self.header_timeout:g}s: send it at once",
                )
            else:
                self._refuse(
                    conn,
                    "408 Request Timeout",
                    f"the request body took longer than {self.body_timeout:g}s: send it faster",
                )

    def run(self) -> None:
        """gthread's main loop, with deadlines swept several times a second."""
        self.poller.register(
            self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks
        )
        self.set_accept_enabled(True)
        while self.alive:
            self.notify()
            # At the limit, a new connection replaces the oldest waiting one (see accept).
            can_accept = self.nr_conns < self.worker_connections or bool(self.waiting)
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self.wait_for_and_dispatch_events(timeout=2 * SWEEP_INTERVAL)
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
        self.tpool.shutdown(wait=False)
        self.probe_pool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()
