"""Helpers the server's tests share: raw sockets, a WebSocket client, a throwaway CA and a
secret volume as the kubelet writes it. Fixtures built on them are in conftest.py."""

from __future__ import annotations

import datetime
import os
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def connect(server, timeout: float = 5.0) -> socket.socket:
    """A raw TCP connection to the server."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or timeout passes)."""
    deadline = time.monotonic() + timeout
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received + b"<reset>"
        if not data:
            return received + b"<closed>"
        received += data
    return received


def exchange(server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a new connection, return all the server answers until it closes."""
    with connect(server) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout)


def statuses(answer: bytes) -> list[int]:
    """The status codes of the responses in a raw answer, in order."""
    return [int(code) for code in STATUS_LINE.findall(answer)]


def chunked(body: bytes, size: int) -> bytes:
    """body in chunked transfer coding, `size` bytes a chunk."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


class Client:
    """A WebSocket client on a real socket, framed by wsproto."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target="/ws/echo")))
        assert isinstance(self.next_event(), AcceptConnection)

    def next_event(self):
        """The next event from the server, reading as much as it takes."""
        while True:
            for event in self.ws.events():
                return event
            data = self.sock.recv(65536)
            if not data:
                return None
            self.ws.receive_data(data)

    def send(self, event) -> None:
        """Send one event."""
        self.sock.sendall(self.ws.send(event))


def openssl(*args: str, cwd: Path) -> None:
    """Run the openssl command line (also present on the image's Alpine release)."""
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Issuer:
    """A throwaway CA, as cert-manager's CA issuer would hold, in its own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.issued = 0
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA", "-days", "1",
            cwd=folder,
        )  # fmt: skip
        (folder / "leaf.ext").write_text("subjectAltName=DNS:localhost\n")

    def issue(self) -> dict[str, bytes]:
        """A new leaf for localhost: the three files of a kubernetes.io/tls secret."""
        self.issued += 1
        name = f"leaf{self.issued}"
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost",
            cwd=self.folder,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(1000 + self.issued), "-days", "1", "-extfile", "leaf.ext",
            "-out", f"{name}.crt",
            cwd=self.folder,
        )  # fmt: skip
        return {
            "tls.crt": (self.folder / f"{name}.crt").read_bytes(),
            "tls.key": (self.folder / f"{name}.key").read_bytes(),
            "ca.crt": (self.folder / "ca.crt").read_bytes(),
        }


def der(pem: bytes) -> bytes:
    """A PEM certificate in DER, as a TLS client receives it."""
    return ssl.PEM_cert_to_DER_cert(pem.decode())


class SecretVolume:
    """A secret volume: files -> ..data/<file>, ..data -> ..<timestamp>/, swapped atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0

    def write(self, files: dict[str, bytes]) -> None:
        """Publish new contents the way kubelet's atomic writer does."""
        self.generation += 1
        stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        new = self.root / f"{stamp}{self.generation:09d}"
        new.mkdir()
        for name, content in files.items():
            (new / name).write_bytes(content)
        data = self.root / "..data"
        old = data.resolve() if data.is_symlink() else None
        (self.root / "..data_tmp").symlink_to(new.name)
        os.replace(self.root / "..data_tmp", data)  # the one atomic step
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if old is not None:
            for child in old.iterdir():
                child.unlink()
            old.rmdir()


def client_context(ca: Path) -> ssl.SSLContext:
    """A client that verifies the server's certificate against the secret's CA."""
    return ssl.create_default_context(cafile=str(ca))
