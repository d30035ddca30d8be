"""HTTPS serving and certificate renewal, with a secret volume laid out as kubelet does."""

from __future__ import annotations

import datetime
import http.client
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flask_example.server import tls

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


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


def served_certificate(server) -> bytes:
    """The certificate (DER) the server presents on a new connection."""
    conn = server.connection(timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        return conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()


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


def test_serves_https_only(https_server):
    assert https_server.get("/healthz")[0] == 200
    plain = http.client.HTTPConnection("127.0.0.1", https_server.port, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/healthz")
        plain.getresponse()
    plain.close()


def handshake(server, ca: Path, version: ssl.TLSVersion) -> str:
    """GET /healthz speaking exactly one TLS version; return the version the server agreed."""
    context = client_context(ca)
    # Lets this client offer what the server must refuse: OpenSSL's default security level
    # forbids the SHA-1 signatures of TLS 1.0 and 1.1.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = version
    conn = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        return conn.sock.version()
    finally:
        conn.close()


# A platform whose defaults still allow TLS 1.0 and 1.1 (an older Python or OpenSSL policy):
# what the server refuses there, it refuses because of our ssl_context hook, not by luck.
LAX_PLATFORM = """
import ssl

_create_default_context = ssl.create_default_context


def create_default_context(*args, **kwargs):
    context = _create_default_context(*args, **kwargs)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


ssl.create_default_context = create_default_context
"""


@pytest.fixture(params=["platform defaults", "lax platform"])
def tls_server(request, start_server, server_env, secret, tmp_path):
    """The HTTPS server on this platform, and on one whose TLS defaults allow TLS 1.0 and 1.1."""
    _, volume = secret
    env = server_env(
        TLS_CERT_FILE=str(volume.root / "tls.crt"), TLS_KEY_FILE=str(volume.root / "tls.key")
    )
    if request.param == "lax platform":
        site = tmp_path / "lax-site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(LAX_PLATFORM)
        env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
        lax = subprocess.run(
            [sys.executable, "-c", "import ssl; c = ssl.create_default_context("
             "ssl.Purpose.CLIENT_AUTH); print(c.minimum_version.name)"],
            env=env, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert lax.stdout.strip() == "MINIMUM_SUPPORTED", "the server's Python must be lax"
    return start_server(env=env, ssl_context=client_context(volume.root / "ca.crt"))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_live_server_speaks_tls_1_2_and_1_3_and_refuses_1_1(tls_server, secret):
    _, volume = secret
    ca = volume.root / "ca.crt"
    assert handshake(tls_server, ca, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert handshake(tls_server, ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL"):
        handshake(tls_server, ca, ssl.TLSVersion.TLSv1_1)
    assert tls_server.get("/healthz")[0] == 200, "a refused handshake costs nothing else"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_server_context_refuses_old_tls(version):
    context = tls.secure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.minimum_version > version


def test_renewed_certificate_is_served_without_restart_or_failed_request(https_server, secret):
    issuer, volume = secret
    first = served_certificate(https_server)
    workers_before = all_workers(https_server)
    failures: list = []
    seen: set[bytes] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                seen.add(served_certificate(https_server))
            except (OSError, http.client.HTTPException, AssertionError) as error:
                failures.append(error)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    renewed = issuer.issue()
    volume.write(renewed)
    second = der(renewed["tls.crt"])
    deadline = time.monotonic() + tls.CHECK_INTERVAL * 3 + 5
    while second not in seen and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2 * tls.CHECK_INTERVAL + 0.5)  # every worker has had its chance to reload
    seen.clear()
    time.sleep(0.5)
    stop.set()
    for thread in clients:
        thread.join(10)

    assert not failures, failures[:3]
    assert seen == {second}, f"expected only the renewed certificate, saw {len(seen)} others"
    assert second != first
    assert worker_pids(https_server.process.pid) == workers_before, "no worker was restarted"
    assert https_server.process.poll() is None


def worker_pids(master: int) -> set[int]:
    """The gunicorn workers of a master, from /proc."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def all_workers(server, timeout: float = 10) -> set[int]:
    """The worker pids once all WEB_CONCURRENCY workers have been forked."""
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(server.process.pid)) < int(server.env["WEB_CONCURRENCY"]):
        assert time.monotonic() < deadline, "workers did not all start"
        time.sleep(0.05)
    return pids


def test_healthcheck_probes_https(https_server):
    result = subprocess.run(
        [sys.executable, "-m", "flask_example.probe"],
        env=https_server.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_healthcheck_probes_http_and_fails_when_nothing_answers(start_server, server_env):
    env = server_env()
    probe = [sys.executable, "-m", "flask_example.probe"]
    down = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode == 1
    assert "probe:" in down.stderr
    start_server(env=env)
    up = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert up.returncode == 0, up.stderr
