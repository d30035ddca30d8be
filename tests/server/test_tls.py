"""HTTPS serving and certificate renewal, with a secret volume laid out as kubelet does."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from flask_example.server import tls
from tests.server.serverlib import client_context, der

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def served_certificate(server) -> bytes:
    """The certificate (DER) the server presents on a new connection."""
    conn = server.connection(timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        return conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()


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


def tls_facts(server, context: ssl.SSLContext | None = None) -> dict:
    """GET /tls on a new connection, optionally with a client context of the test's own."""
    conn = http.client.HTTPSConnection(
        "localhost", server.port, timeout=10, context=context or server.ssl_context
    )
    try:
        conn.request("GET", "/tls")
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


def served_facts_match(facts: dict, files: dict[str, bytes], serial: int) -> None:
    """The /tls certificate block describes exactly this secret's certificate."""
    certificate = facts["certificate"]
    assert certificate["sha256"] == hashlib.sha256(der(files["tls.crt"])).hexdigest()
    assert certificate["serial"] == f"{serial:04X}"
    assert certificate["subject"] == "commonName=localhost"
    assert certificate["issuer"] == "commonName=test CA"
    assert certificate["subject_alt_names"] == ["localhost"]
    assert facts["ca_certificates_sha256"] == [hashlib.sha256(der(files["ca.crt"])).hexdigest()]


def test_tls_endpoint_describes_the_served_certificate_and_this_connection(https_server, secret):
    _, volume = secret
    files = {name: (volume.root / name).read_bytes() for name in ("tls.crt", "ca.crt")}
    facts = tls_facts(https_server)
    served_facts_match(facts, files, 1001)
    served = served_certificate(https_server)
    assert facts["certificate"]["sha256"] == hashlib.sha256(served).hexdigest()
    loaded = datetime.datetime.fromisoformat(facts["certificate"]["loaded_at"])
    assert abs(loaded - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)
    connection = facts["connection"]
    assert connection["version"] == "TLSv1.3"
    assert connection["server_name"] == "localhost", "the SNI the client sent"
    assert connection["alpn"] is None, "http.client offers no ALPN"
    assert connection["cipher"].startswith("TLS_")

    context = client_context(volume.root / "ca.crt")
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2", "http/1.1"])
    connection = tls_facts(https_server, context)["connection"]
    assert connection == connection | {"version": "TLSv1.2", "alpn": "http/1.1"}


def test_tls_endpoint_answers_as_the_openapi_document_says(https_server):
    document = json.loads(https_server.get("/openapi.json")[2])
    schema = document["paths"]["/tls"]["get"]["responses"]["200"]["content"]["application/json"]
    Draft202012Validator({**schema["schema"], "components": document["components"]}).validate(
        tls_facts(https_server)
    )


def metric_values(server, name: str) -> list[float]:
    """The values of every sample of one metric in the pod's /metrics."""
    text = server.get("/metrics")[2].decode()
    return [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]


def not_after(files: dict[str, bytes]) -> float:
    """The certificate's expiry as Unix time."""
    decoded = ssl._ssl._test_decode_cert  # the standard library's only decoder
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as pem:
        pem.write(files["tls.crt"])
        pem.flush()
        return ssl.cert_time_to_seconds(decoded(pem.name)["notAfter"])


def test_renewal_shows_in_tls_endpoint_and_metrics(https_server, secret):
    issuer, volume = secret
    first = {name: (volume.root / name).read_bytes() for name in ("tls.crt", "ca.crt")}
    for _ in range(4):  # a connection to each worker, most likely: each loads on its first
        served_certificate(https_server)
    assert metric_values(https_server, "tls_certificate_reloads_total") == [0.0]
    assert metric_values(https_server, "tls_certificate_not_after_timestamp_seconds") == [
        not_after(first)
    ]
    time.sleep(1.1)  # a second apart: the two certificates' not-after differ
    renewed = issuer.issue()
    volume.write(renewed)
    time.sleep(tls.CHECK_INTERVAL + 0.2)
    deadline = time.monotonic() + 10
    while tls_facts(https_server)["certificate"]["serial"] != "03EA":
        assert time.monotonic() < deadline, "the renewed certificate never reached /tls"
        time.sleep(0.1)
    served_facts_match(tls_facts(https_server), renewed, 1002)
    assert metric_values(https_server, "tls_certificate_reloads_total")[0] >= 1
    # Until every worker has reloaded, the earliest expiry shows; then the renewed one's.
    deadline = time.monotonic() + 10
    while metric_values(https_server, "tls_certificate_not_after_timestamp_seconds") != [
        not_after(renewed)
    ]:
        assert time.monotonic() < deadline, "a worker kept the old certificate"
        served_certificate(https_server)
        time.sleep(0.1)


def test_tls_endpoint_and_metrics_say_nothing_over_plain_http(start_server):
    server = start_server()
    status, headers, body = server.get("/tls")
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    assert "plain HTTP" in json.loads(body)["detail"]
    assert metric_values(server, "tls_certificate") == []
