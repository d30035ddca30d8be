"""Fixtures that start the real server (entrypoint.sh -> gunicorn -> app) on loopback."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server.serverlib import Issuer, SecretVolume, client_context

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "entrypoint.sh"
# The interpreter running the tests has flask, gunicorn and prometheus-client (the venv); the
# server's `python3` and `gunicorn` must be the same ones, whoever started pytest.
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shells() -> list:
    """The POSIX shells entrypoint.sh must run under: dash, and BusyBox ash as in the image."""
    found = [pytest.param(["dash"], id="dash")]
    busybox = shutil.which("busybox")
    found.append(
        pytest.param(
            [busybox or "busybox", "sh"],
            id="busybox",
            marks=pytest.mark.skipif(busybox is None, reason="busybox is not installed"),
        )
    )
    return found


def make_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment a test server gets: loopback, its own /tmp, no TLS unless asked."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(tmp),
        "LISTEN_HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "PROBE_PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "THREADS": "4",
        # No TLS unless a test mounts it: the image's default paths do not exist here.
        "TLS_CERT_FILE": str(tmp_path / "no-tls" / "tls.crt"),
        "TLS_KEY_FILE": str(tmp_path / "no-tls" / "tls.key"),
    }
    env.update(overrides)
    return env


@dataclass
class Server:
    """A running server process and how to talk to it."""

    process: subprocess.Popen
    env: dict[str, str]
    stdout: Path
    stderr: Path
    ssl_context: ssl.SSLContext | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.env["PORT"])

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A new connection to the server (HTTPS when the server has TLS)."""
        if self.ssl_context is not None:
            return http.client.HTTPSConnection(
                "localhost", self.port, timeout=timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str, timeout: float = 10.0, headers: dict | None = None):
        """GET path on a new connection; return (status, headers, body)."""
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 15.0) -> float:
        """Wait for 200 from /readyz; return seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.logs()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get("/readyz", timeout=1.0)[0] == 200:
                    return time.monotonic() - self.started
            time.sleep(0.05)
        pytest.fail(f"server not ready within {timeout}s:\n{self.logs()}")

    def signal(self, sig: int) -> None:
        """Send a signal to the server process (the gunicorn master)."""
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit; return its exit status (fail with its logs if it hangs)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running {timeout}s later:\n{self.logs()}")

    def logs(self) -> str:
        """Everything the server printed so far."""
        return self.stdout.read_text() + self.stderr.read_text()

    def stop(self) -> None:
        """Stop it quickly if it still runs, and its workers with it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def server_env(tmp_path: Path):
    """make_env bound to this test's tmp_path: server_env(PORT=..., ...) -> environment."""
    return lambda **overrides: make_env(tmp_path, **overrides)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Start entrypoint.sh (as the image does) with env overrides; stopped after the test."""
    servers: list[Server] = []

    def start(
        *args: str,
        shell: str | list[str] = "sh",
        env: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        preexec_user: int | None = None,
        cwd: Path | None = None,
        entrypoint: Path = ENTRYPOINT,
        wait: bool = True,
    ) -> Server:
        env = env if env is not None else make_env(tmp_path)
        name = f"server{len(servers)}"
        stdout, stderr = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        user = {} if preexec_user is None else {"user": preexec_user, "group": preexec_user}
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen(
                [*([shell] if isinstance(shell, str) else shell), str(entrypoint), *args],
                env=env,
                cwd=cwd or tmp_path,
                stdout=out,
                stderr=err,
                # Its own process group: cleanup reaches the workers, and a terminal's Ctrl-C
                # during the tests does not.
                process_group=0,
                extra_groups=[] if preexec_user is not None else None,
                **user,
            )
        server = Server(process, env, stdout, stderr, ssl_context)
        servers.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path / "tls"
    folder.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "tls.key", "-out", "tls.crt", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost", "-days", "1",
        ],
        cwd=folder, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return folder / "tls.crt", folder / "tls.key"


@pytest.fixture
def secret(tmp_path: Path):
    """An issuer and a secret volume holding its first certificate."""
    issuer = Issuer(tmp_path / "issuer")
    volume = SecretVolume(tmp_path / "tls")
    volume.write(issuer.issue())
    return issuer, volume


@pytest.fixture
def https_server(start_server, server_env, secret):
    """The server with the secret mounted where TLS_CERT_FILE/TLS_KEY_FILE point."""
    _, volume = secret
    env = server_env(
        TLS_CERT_FILE=str(volume.root / "tls.crt"), TLS_KEY_FILE=str(volume.root / "tls.key")
    )
    return start_server(env=env, ssl_context=client_context(volume.root / "ca.crt"))
