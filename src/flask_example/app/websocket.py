"""GET /ws/echo: a WebSocket echo on the same server, framed by wsproto (never by hand).

gunicorn's threaded worker hands the connection's socket to the app as
environ["gunicorn.socket"]; the view answers the upgrade on it, echoes each text or binary
message, and ends with the close handshake. A message above MAX_MESSAGE closes with 1009, an
idle connection after IDLE_SECONDS and any connection after MAX_SECONDS closes with 1001, so no
client holds a thread or memory without bound.
"""

from __future__ import annotations

import contextlib
import socket
import time

from flask import Blueprint, Response, request
from werkzeug import exceptions
from werkzeug.exceptions import BadRequest, HTTPException
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


class UpgradeRequired(HTTPException):
    """426: this path speaks WebSocket only."""

    code = 426
    description = "send a WebSocket upgrade (Upgrade: websocket) to /ws/echo"

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        """RFC 9110: a 426 names the protocol to upgrade to."""
        return [("Upgrade", "websocket"), ("Connection", "Upgrade")]


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
                size += len(event.data)
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
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(raw_request())
        handshake = next(iter(ws.events()), None)
    except RemoteProtocolError:
        handshake = None
    if not isinstance(handshake, Request):
        raise BadRequest(
            "the WebSocket upgrade is incomplete: send Sec-WebSocket-Key and "
            "Sec-WebSocket-Version: 13"
        )
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        raise exceptions.NotImplemented(
            "WebSocket needs the service's own server: start it with gunicorn"
        )
    sock.sendall(ws.send(AcceptConnection()))
    try:
        echo_loop(sock, ws)
    except (OSError, LocalProtocolError, RemoteProtocolError):
        pass  # the peer broke the protocol or went away: nothing left to answer
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    return Upgraded(status=101)
