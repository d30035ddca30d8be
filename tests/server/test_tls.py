"""HTTPS serving and certificate renewal, with a secret volume laid out as kubelet does."""

from __future__ import annotations

import datetime
import http.client
import os
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flask_example import tls

FILES = ("tls.crt", "tls.key", "ca.crt")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Issuer:
    """A throwaway CA, as cert-manager's CA issuer would hold."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> Issuer:
        """A new self-signed CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("test CA"))
            .issuer_name(_name("test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self) -> dict[str, bytes]:
        """A new leaf for localhost: the three files of a kubernetes.io/tls secret."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(self.key, hashes.SHA256())
        )
        return {
            "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
            "tls.key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "ca.crt": self.cert.public_bytes(serialization.Encoding.PEM),
        }


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


def served_serial(server) -> int:
    """The serial number of the certificate the server presents on a new connection."""
    conn = server.connection(timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        der = conn.sock.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        conn.close()


@pytest.fixture
def secret(tmp_path: Path):
    """An issuer and a secret volume holding its first certificate."""
    issuer = Issuer.create()
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


def test_tls_1_2_is_the_minimum(https_server, secret):
    _, volume = secret
    modern = client_context(volume.root / "ca.crt")
    modern.minimum_version = modern.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection("localhost", https_server.port, context=modern, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    assert conn.sock.version() == "TLSv1.2"
    conn.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_server_context_refuses_old_tls(version):
    # The handshake cannot show this: the local OpenSSL client refuses TLS < 1.2 on its own.
    context = tls.secure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.minimum_version > version


def test_renewed_certificate_is_served_without_restart_or_failed_request(https_server, secret):
    issuer, volume = secret
    first = served_serial(https_server)
    workers_before = all_workers(https_server)
    failures: list = []
    seen: set[int] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                seen.add(served_serial(https_server))
            except (OSError, http.client.HTTPException, AssertionError) as error:
                failures.append(error)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    renewed = issuer.issue()
    volume.write(renewed)
    second = x509.load_pem_x509_certificate(renewed["tls.crt"]).serial_number
    deadline = time.monotonic() + tls.CHECK_INTERVAL * 3 + 5
    while second not in seen and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(tls.CHECK_INTERVAL + 0.5)  # every worker has had its chance to reload
    seen.clear()
    time.sleep(0.5)
    stop.set()
    for thread in clients:
        thread.join(10)

    assert not failures, failures[:3]
    assert seen == {second}, f"expected only the renewed certificate {second}, saw {seen}"
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
        [sys.executable, "-m", "flask_example.healthcheck"],
        env=https_server.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_healthcheck_probes_http_and_fails_when_nothing_answers(start_server, server_env):
    env = server_env()
    probe = [sys.executable, "-m", "flask_example.healthcheck"]
    down = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode == 1
    assert "healthcheck:" in down.stderr
    start_server(env=env)
    up = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert up.returncode == 0, up.stderr
