"""The prober against the real server, directly and behind a real nginx with known settings."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.prove.conftest import KEYS, ROOT, Proxy, free_port, prove
from tests.server.serverlib import der

PASSED = {"301": True, "404": True, "500": True, "503": True}


def ports(pods) -> list[int]:
    """The upstream ports of the pods."""
    return [server.port for server in pods]


def test_prove_without_a_proxy_reports_the_pod_itself(pods) -> None:
    proved = prove(f"http://127.0.0.1:{pods[0].port}")
    assert set(proved.results) >= KEYS, proved.results
    assert proved.results["status_passthrough"] == PASSED
    assert proved.results["request_headers_added"] == {}
    assert proved.results["request_headers_removed"] == []
    assert proved.results["read_timeout_seconds"] is None
    assert proved.results["pods"] == {
        "new_connections": {"pod-a": 10},
        "keep_alive": {"pod-a": 10},
    }
    assert proved.results["tls"] is None
    assert proved.results["failures"] == []
    assert proved.status == 0


def test_prove_measures_nginx_limits_and_headers(pods, nginx) -> None:
    url = nginx(Proxy(read_timeout="3s"), ports(pods))
    proved = prove(url)
    results = proved.results
    assert abs(results["read_timeout_seconds"] - 3.0) <= 0.5, results
    assert results["request_headers_added"] == {"x-added-by-proxy": "nginx"}
    assert results["request_headers_removed"] == ["x-prove-extra"]
    assert results["status_passthrough"] == PASSED
    # nginx balances every request, also those on one kept-alive client connection.
    for kind in ("new_connections", "keep_alive"):
        assert results["pods"][kind] == {"pod-a": 5, "pod-b": 5}, results["pods"]
    assert proved.status == 0, results["failures"]


def test_prove_fails_when_nginx_replaces_the_pods_errors(pods, nginx) -> None:
    proved = prove(nginx(Proxy(intercept_errors=True), ports(pods)))
    assert proved.results["status_passthrough"] == {
        "301": False,
        "404": False,
        "500": False,
        "503": False,
    }
    assert proved.status == 1
    assert "replaced" in proved.results["failures"][0]


@pytest.mark.parametrize(("limit", "expected"), [("1m", 1 << 20), ("300k", 300 << 10)])
def test_prove_bisects_the_body_limit(pods, nginx, limit: str, expected: int) -> None:
    proved = prove(nginx(Proxy(body_limit=limit), ports(pods)))
    found = proved.results["body_limit_bytes"]
    assert found is not None, proved.results
    assert expected - max(1024, expected // 20) <= found <= expected


def test_prove_reports_no_body_limit_when_the_proxy_allows_more_than_32_mib(pods, nginx) -> None:
    proved = prove(nginx(Proxy(body_limit="40m"), ports(pods)))
    assert proved.results["body_limit_bytes"] is None
    assert proved.results["failures"] == []


def test_prove_min_body_bytes_fails_below_the_minimum(pods, nginx) -> None:
    proved = prove(nginx(Proxy(body_limit="300k"), ports(pods)), "--min-body-bytes", "1000000")
    assert proved.status == 1
    assert any("--min-body-bytes" in failure for failure in proved.results["failures"])


def test_prove_min_read_timeout_fails_below_the_minimum(pods, nginx) -> None:
    proved = prove(nginx(Proxy(read_timeout="2s"), ports(pods)), "--min-read-timeout", "5")
    assert proved.status == 1
    assert any("--min-read-timeout" in failure for failure in proved.results["failures"])


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        # nginx writes each chunk it reads on to the client, whether or not it buffers ...
        (Proxy(buffering=True), "passes"),
        (Proxy(buffering=False), "passes"),
        # ... but when it also compresses, buffering holds the parts back until the end.
        (Proxy(buffering=True, gzip=True), "buffered"),
        (Proxy(buffering=False, gzip=True), "passes"),
    ],
    ids=["buffering-on", "buffering-off", "buffering-on-gzip", "buffering-off-gzip"],
)
def test_prove_sees_whether_nginx_holds_streams_back(
    pods, nginx, proxy: Proxy, expected: str
) -> None:
    proved = prove(nginx(proxy, ports(pods)))
    assert proved.results["streaming"] == {"chunked": expected, "sse": expected}
    assert proved.status == 0  # buffering is a property of the proxy, not a failure


@pytest.mark.parametrize("upgrade", [True, False])
def test_prove_sees_whether_nginx_passes_websocket(pods, nginx, upgrade: bool) -> None:
    proved = prove(nginx(Proxy(websocket=upgrade), ports(pods)))
    assert proved.results["websocket"] is upgrade
    assert proved.status == (0 if upgrade else 1)


def test_prove_during_reports_every_failed_request(pods, nginx) -> None:
    url = nginx(Proxy(), ports(pods))
    proved = prove(url, "--during", "2")
    healthy = proved.results["during"]
    assert healthy["failed"] == []
    assert sum(healthy["versions"].values()) == healthy["requests"] >= 10, healthy
    assert proved.status == 0
    # A stopped pod that nginx keeps sending to, and does not retry on the other.
    pods[1].stop()
    broken = prove(nginx(Proxy(next_upstream="off"), ports(pods)), "--during", "2")
    during = broken.results["during"]
    assert during["failed"], during
    assert all(line.endswith("GET /version answered 502") for line in during["failed"])
    assert len(during["failed"]) + sum(during["versions"].values()) == during["requests"]
    assert broken.status == 1


def test_prove_during_ends_at_sigterm_then_measures(pods) -> None:
    """A deploy job starts the rollout check, rolls out, then ends the check with SIGTERM."""
    command = [sys.executable, "-m", "flask_example.prove", f"http://127.0.0.1:{pods[0].port}"]
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--json", "--during", "600"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=120)
    results = json.loads(stdout)
    assert time.monotonic() - started < 60, "SIGTERM ended the 600 s check"
    assert results["during"]["failed"] == []
    assert results["during"]["requests"] >= 5, results["during"]
    # After the check, the measurements of what the rollout left.
    assert set(results) >= KEYS
    assert results["status_passthrough"] == PASSED
    assert process.returncode == 0


def run_stdlib_only(*args: str) -> subprocess.CompletedProcess:
    """The prober on an interpreter without site-packages: the standard library only."""
    return subprocess.run(
        [sys.executable, "-S", "-m", "flask_example.prove", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )


def test_prove_needs_only_the_standard_library(pods) -> None:
    done = run_stdlib_only(f"http://127.0.0.1:{pods[0].port}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status_passthrough"] == PASSED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://x"], "URL 'ftp://x' is invalid: give http://HOST[:PORT] or https://"),
        (["https://x", "--ca-file", "/nonexistent"], "--ca-file '/nonexistent' is not a file"),
        (["http://x", "--during", "0"], "'0' is invalid: give a number above 0"),
        (["http://x", "--min-read-timeout", "soon"], "'soon' is invalid: give a number above 0"),
        (["http://x", "--min-body-bytes", "1m"], "'1m' is invalid: give a whole number of bytes"),
        (["http://x", "--requests", "0"], "'0' is invalid: give a whole number from 1 to 1000"),
    ],
)
def test_prove_rejects_bad_arguments_with_one_line(args: list[str], message: str) -> None:
    done = run_stdlib_only(*args)
    assert done.returncode == 2
    assert message in done.stderr.splitlines()[-1]


def test_prove_reports_the_served_certificate_verified_with_the_ca(https_server, secret) -> None:
    _, volume = secret
    url = f"https://localhost:{https_server.port}"
    proved = prove(url, "--ca-file", str(volume.root / "ca.crt"))
    served = proved.results["tls"]["served"]
    assert served["verified"] is True and served["error"] is None
    assert served["subject"] == "commonName=localhost"
    assert served["issuer"] == "commonName=test CA"
    assert served["not_after"].endswith(" GMT")
    assert (
        served["sha256"] == hashlib.sha256(der((volume.root / "tls.crt").read_bytes())).hexdigest()
    )
    assert proved.results["status_passthrough"] == PASSED
    # No proxy in between: the pod's own certificate (its /tls) is the one served.
    assert proved.results["tls"]["pod"]["certificate"]["sha256"] == served["sha256"]
    assert proved.status == 0, proved.results["failures"]


def test_prove_fails_on_a_certificate_that_does_not_verify(https_server) -> None:
    proved = prove(f"https://localhost:{https_server.port}")
    served = proved.results["tls"]["served"]
    assert served["verified"] is False
    assert "unable to get local issuer certificate" in served["error"]
    assert served["subject"] == "commonName=localhost"
    assert proved.status == 1
    assert proved.results["failures"] == [
        f"the served certificate does not verify: {served['error']}"
    ]


def test_prove_reports_an_unreachable_url_as_one_failure() -> None:
    proved = prove(f"http://127.0.0.1:{free_port()}")
    assert proved.status == 1
    assert len(proved.results["failures"]) == 1
    assert "Connection refused" in proved.results["failures"][0]
