"""GET /ws/echo on the real server (entrypoint.sh -> gunicorn gthread), with wsproto as client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    TextMessage,
)

from tests.server.serverlib import Client


@pytest.fixture
def connect(start_server) -> Iterator:
    """connect() -> (server, Client) on a fresh server; every client is closed afterwards."""
    clients: list[Client] = []

    def start() -> tuple:
        server = start_server()
        clients.append(Client(server.port))
        return server, clients[-1]

    yield start
    for client in clients:
        client.sock.close()


def test_echoes_text_and_binary_and_closes_cleanly(connect) -> None:
    server, client = connect()
    client.send(TextMessage("hello, proxy"))
    reply = client.next_event()
    assert isinstance(reply, TextMessage) and reply.data == "hello, proxy"
    payload = bytes(range(256)) * 100
    client.send(BytesMessage(payload))
    received = b""
    while len(received) < len(payload):
        event = client.next_event()
        assert isinstance(event, BytesMessage)
        received += event.data
    assert received == payload
    client.send(CloseConnection(code=1000, reason="done"))
    closed = client.next_event()
    assert isinstance(closed, CloseConnection) and closed.code == 1000
    assert client.sock.recv(10) == b""  # and the server closed the connection
    # The worker serves the next request as usual, and logged no error for the handed-over socket.
    assert server.get("/healthz")[0] == 200
    assert "Error handling request" not in server.logs()


def test_a_message_above_64_kib_closes_with_1009(connect) -> None:
    _, client = connect()
    client.send(BytesMessage(b"x" * (64 * 1024 + 1)))
    closed = client.next_event()
    assert isinstance(closed, CloseConnection)
    assert closed.code == 1009
    assert "at most 65536 bytes" in closed.reason


def test_a_message_of_64_kib_in_fragments_is_echoed_whole(connect) -> None:
    _, client = connect()
    client.send(BytesMessage(b"a" * 32768, message_finished=False))
    client.send(BytesMessage(b"b" * 32768, message_finished=True))
    received = b""
    while len(received) < 65536:
        received += client.next_event().data
    assert received == b"a" * 32768 + b"b" * 32768


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 426), ({"Upgrade": "websocket", "Connection": "Upgrade"}, 400)],
)
def test_a_request_that_is_no_complete_upgrade_is_a_problem(
    start_server, headers: dict, status: int
) -> None:
    server = start_server()
    got, response_headers, body = server.get("/ws/echo", headers=headers)
    assert got == status
    assert response_headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["status"] == status
    if status == 426:
        assert response_headers["Upgrade"] == "websocket"
