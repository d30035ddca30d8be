"""The chart's helm test pod runs the prober: its rendered command against the real server.

The pod's command comes from the rendered chart; only the Service's address (unresolvable here)
becomes 127.0.0.1 and the CA file one of this test's issuer. The name the prober verifies is the
rendered one, so the certificate must carry the Service's in-cluster name, as cert-manager's does.
"""

from __future__ import annotations

import ssl
import urllib.parse
from pathlib import Path

import pytest

from tests.chart.chartlib import issue, proving_pod, render
from tests.prove.conftest import KEYS, prove


def prover_command(case: str) -> list[str]:
    """The rendered test pod's prover container's command."""
    (ctr,) = proving_pod(render("helm4", case))["spec"]["containers"]
    assert ctr["command"][:3] == ["python3", "-m", "flask_example.prove"], ctr["command"]
    return ctr["command"][3:]


def aimed(arguments: list[str], port: int, ca: Path | None) -> tuple[str, list[str]]:
    """The pod's URL and options, sent to the loopback server in place of the Service; the
    name verified stays the URL's host, the Service's name (--tls-server-name)."""
    url, *options = arguments
    parts = urllib.parse.urlsplit(url)
    options = [f"--ca-file={ca}" if arg.startswith("--ca-file=") else arg for arg in options]
    if parts.scheme == "https":
        options.append(f"--tls-server-name={parts.hostname}")
    return f"{parts.scheme}://127.0.0.1:{port}", options


def option(arguments: list[str], name: str) -> str:
    """The value of `--name=value` among the pod's arguments."""
    (value,) = (arg.split("=", 1)[1] for arg in arguments if arg.startswith(f"--{name}="))
    return value


@pytest.fixture
def tls_pod(start_server, server_env, tmp_path: Path):
    """A real server with a certificate for these names, and the CA that signed it."""

    def start(names: list[str], label: str):
        ca, cert, key = issue(tmp_path, names, label)
        env = server_env(TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key))
        # The fixture's own readiness check trusts the CA but connects to localhost.
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False
        return start_server(env=env, ssl_context=context), ca

    return start


def test_test_pod_prover_passes_against_the_real_server_over_verified_tls(tls_pod) -> None:
    arguments = prover_command("tls-certificate")
    name = urllib.parse.urlsplit(arguments[0]).hostname
    assert name.endswith(".svc"), "the Service's in-cluster name"
    assert option(arguments, "ca-file") == "/tmp/tls/ca.crt"
    server, ca = tls_pod([name], "pod")
    url, options = aimed(arguments, server.port, ca)
    proved = prove(url, *options)
    assert set(proved.results) >= KEYS
    assert proved.results["tls"]["served"]["verified"] is True
    assert proved.results["tls"]["pod"]["connection"]["server_name"] == name
    assert proved.results["websocket"] is True
    assert proved.status == 0, proved.results["failures"]


def test_test_pod_prover_fails_for_a_certificate_without_the_service_name(tls_pod) -> None:
    arguments = prover_command("tls-certificate")
    server, ca = tls_pod(["someone-else.example.com"], "other")
    url, options = aimed(arguments, server.port, ca)
    proved = prove(url, *options)
    assert proved.status == 1
    assert proved.results["tls"]["served"]["verified"] is False
    assert "Hostname mismatch" in proved.results["failures"][0], proved.results["failures"]


def test_test_pod_prover_speaks_plain_http_without_tls(start_server) -> None:
    arguments = prover_command("default")
    assert arguments[0].startswith("http://") and len(arguments) == 1
    server = start_server()
    url, options = aimed(arguments, server.port, None)
    proved = prove(url, *options)
    assert proved.results["tls"] is None
    assert proved.status == 0, proved.results["failures"]
