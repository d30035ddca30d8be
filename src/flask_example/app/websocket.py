"""GET /ws/echo: a WebSocket echo on the same server, framed by wsproto (never by hand).

gunicorn's threaded worker hands the connection's socket to the app as
environ["gunicorn.socket"]; the view answers the upgrade on it, echoes each text or binary
message, and ends with the close handshake. A message above MAX_MESSAGE bytes closes with 1009,
an idle connection after IDLE_SECONDS and any connection after MAX_SECONDS closes with 1001, and
a worker holds at most half its threads (THREADS) in sessions, so no client holds a thread or
memory without bound: past that an upgrade is a 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from flask import Blueprint, Response, current_app, request
from werkzeug import exceptions
from werkzeug.exceptions import BadRequest, HTTPException, ServiceUnavailable
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

bp = Blueprint("websocket", __name__)

MAX_MESSAGE = 64 * 1024
IDLE_SECONDS = 30.0
MAX_SECONDS = 300.0
READ = 16 * 1024
VERSION = "13"


class Incomplete(BadRequest):
    """400: an upgrade wsproto cannot accept; it names the version this server speaks."""

    description = (
        "the WebSocket upgrade is incomplete: send Sec-WebSocket-Key and Sec-WebSocket-Version: 13"
    )

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        """The versions understood (RFC 6455 4.4)."""
        return [*super().get_headers(environ, scope), ("Sec-WebSocket-Version", VERSION)]


class UpgradeRequired(HTTPException):
    """426: this path speaks WebSocket only."""

    code = 426
    description = "send a WebSocket upgrade (Upgrade: websocket) to /ws/echo"

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        """RFC 9110: a 426 names the protocol to upgrade to."""
        return [("Upgrade", "websocket"), ("Connection", "Upgrade")]


class VersionUnsupported(HTTPException):
    """426: RFC 6455 4.4, a version this server does not speak; it names the one it does."""

    code = 426
    description = "this server speaks WebSocket version 13: send Sec-WebSocket-Version: 13"

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        """The versions understood (RFC 6455 4.4)."""
        return [("Sec-WebSocket-Version", VERSION)]


class Busy(ServiceUnavailable):
    """503: this worker holds as many sessions as it may."""

    description = "this server holds as many WebSocket sessions as it may: try again later"

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        """When to try again."""
        return [*super().get_headers(environ, scope), ("Retry-After", "5")]


class Upgraded(Response):
    """The answer after the WebSocket ended: the socket is done, so no HTTP response follows.

    gunicorn's worker closes the connection quietly on StopIteration; raised here, after the
    app's own request handling, not inside the view.
    """

    def __call__(self, environ, start_response):
        raise StopIteration


def raw_request() -> bytes:
    """The upgrade request as it came, for wsproto's handshake parser."""
    lines = [f"{request.method} {request.environ.get('RAW_URI', request.path)} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def echo_loop(sock: socket.socket, ws: WSConnection) -> None:
    """Echo messages until the close handshake, a limit, or the peer goes away."""
    ends = time.monotonic() + MAX_SECONDS
    text: list[str] = []
    data: list[bytes] = []
    size = 0
    while ws.state is ConnectionState.OPEN:
        sock.settimeout(max(0.0, min(IDLE_SECONDS, ends - time.monotonic())))
        try:
            received = sock.recv(READ)
        except TimeoutError:
            sock.sendall(ws.send(CloseConnection(CloseReason.GOING_AWAY, "time is up")))
            return
        if not received:
            return
        ws.receive_data(received)
        for event in ws.events():
            if isinstance(event, Message):
                # Bytes, also for text: 64 KiB of emoji are 256 KiB on the wire and in memory.
                size += len(event.data.encode() if isinstance(event, TextMessage) else event.data)
                if size > MAX_MESSAGE:
                    reason = f"a message may have at most {MAX_MESSAGE} bytes"
                    sock.sendall(ws.send(CloseConnection(CloseReason.MESSAGE_TOO_BIG, reason)))
                    return
                (text if isinstance(event, TextMessage) else data).append(event.data)
                if event.message_finished:
                    whole = (
                        TextMessage("".join(text))
                        if isinstance(event, TextMessage)
                        else BytesMessage(b"".join(data))
                    )
                    sock.sendall(ws.send(whole))
                    text, data, size = [], [], 0
            elif isinstance(event, Ping):
                sock.sendall(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                sock.sendall(ws.send(event.response()))
                return


@bp.get("/ws/echo")
def no_upgrade() -> Response:
    """A plain GET: 426, this path speaks WebSocket only."""
    raise UpgradeRequired()


# werkzeug's router tells upgrade requests apart: only a websocket rule matches them.
@bp.get("/ws/echo", websocket=True)
def echo() -> Response:
    """Upgrade to WebSocket and echo every message back."""
    if request.headers.get("Sec-WebSocket-Version", VERSION) != VERSION:
        raise VersionUnsupported()
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(raw_request())
        handshake = next(iter(ws.events()), None)
    except RemoteProtocolError:
        handshake = None
    if not isinstance(handshake, Request):
        raise Incomplete()
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        raise exceptions.NotImplemented(
            "WebSocket needs the service's own server: start it with gunicorn"
        )
    sessions = current_app.extensions["websocket_sessions"]
    if not sessions.acquire(blocking=False):
        raise Busy()
    try:
        sock.sendall(ws.send(AcceptConnection()))
        echo_loop(sock, ws)
    except (OSError, LocalProtocolError, RemoteProtocolError):
        pass  # the peer broke the protocol or went away: nothing left to answer
    finally:
        sessions.release()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    return Upgraded(status=101)


@bp.record_once
def _sessions(state) -> None:
    # Half of a worker's threads at most (one with a single thread): the rest serve requests.
    limit = max(1, state.app.config["SETTINGS"].threads // 2)
    state.app.extensions["websocket_sessions"] = threading.BoundedSemaphore(limit)
