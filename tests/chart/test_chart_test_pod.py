"""The helm test pod's script, run for real against a loopback stand-in for the Service.

The script and its environment come from the rendered pod; only TARGET_HOST (the Service's
DNS name, unreachable here) becomes 127.0.0.1 and CA_FILE a file of this test's CA.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.chartlib import ROOT, denied_pods, issue, probe_options, proving_pod, render


class StandIn(http.server.ThreadingHTTPServer):
    """A loopback stand-in for the Service: answers /readyz with a set status, records paths."""

    def __init__(self, tls: tuple[Path, Path] | None) -> None:
        self.status = 200
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.socket = context.wrap_socket(self.socket, server_side=True)


@pytest.fixture
def serve() -> Iterator:
    """Start stand-in servers on loopback; shut them down after the test."""
    servers: list[StandIn] = []

    def start(tls: tuple[Path, Path] | None = None) -> StandIn:
        server = StandIn(tls)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def pod_options(case: str) -> dict[str, str]:
    """The rendered test pod's probe options."""
    return probe_options(proving_pod(render("helm4", case)))


def run_test_pod(case: str, server: StandIn, ca: Path | None) -> subprocess.CompletedProcess[str]:
    """Run the rendered test pod's command, aimed at the stand-in server; output is its log."""
    options = pod_options(case)
    assert options["attempts"] == "10"
    assert options["path"] == "/readyz"
    options.update(host="127.0.0.1", port=str(server.server_address[1]), attempts="1")
    if ca is not None:
        assert options["ca-file"] == "/tmp/tls/ca.crt"
        options["ca-file"] = str(ca)
    return run_probe([f"--{k}={v}" for k, v in options.items()])


def run_probe(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """`python3 -m flask_example.probe ARGUMENTS` as a test pod runs it; output is its log."""
    result = subprocess.run(
        [sys.executable, "-m", "flask_example.probe", *arguments],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # A pod's log holds both streams.
    result.stdout += result.stderr
    return result


def tls_server_name(case: str) -> str:
    """The name the rendered test pod verifies the certificate against."""
    return pod_options(case)["tls-server-name"]


def test_stand_in_https_readyz_passes_with_verified_certificate(serve, tmp_path: Path) -> None:
    name = tls_server_name("tls-certificate")
    ca, cert, key = issue(tmp_path, [name], "good")
    server = serve((cert, key))
    result = run_test_pod("tls-certificate", server, ca)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "200" in result.stdout
    assert server.paths == ["/readyz"]


def test_stand_in_https_fails_for_a_certificate_without_the_service_name(
    serve, tmp_path: Path
) -> None:
    ca, cert, key = issue(tmp_path, ["someone-else.example.com"], "other")
    result = run_test_pod("tls-certificate", serve((cert, key)), ca)
    assert result.returncode == 1
    assert "certificate verify failed" in result.stdout or "match" in result.stdout, result.stdout


def test_stand_in_https_fails_for_an_unknown_ca(serve, tmp_path: Path) -> None:
    name = tls_server_name("tls-certificate")
    _, cert, key = issue(tmp_path, [name], "served")
    wrong_ca, _, _ = issue(tmp_path, [name], "unrelated")
    result = run_test_pod("tls-certificate", serve((cert, key)), wrong_ca)
    assert result.returncode == 1
    assert "certificate verify failed" in result.stdout, result.stdout


def test_stand_in_not_ready_fails(serve, tmp_path: Path) -> None:
    name = tls_server_name("tls-certificate")
    ca, cert, key = issue(tmp_path, [name], "good")
    server = serve((cert, key))
    server.status = 503
    result = run_test_pod("tls-certificate", server, ca)
    assert result.returncode == 1
    assert "503" in result.stdout


def test_stand_in_plain_http_readyz(serve) -> None:
    server = serve()
    result = run_test_pod("default", server, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.paths == ["/readyz"]


@pytest.mark.parametrize("case", ["tls-certificate", "tls-existing-secret", "full"])
def test_test_pod_mounts_only_the_ca_of_the_tls_secret(case: str) -> None:
    pod = proving_pod(render("helm4", case))["spec"]
    (volume,) = (v["secret"] for v in pod["volumes"] if v["name"] == "tls")
    # Never the server's private key: the test pod only verifies.
    assert volume["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert volume["optional"] is True


def denied_command(case: str = "full") -> list[str]:
    """The rendered NetworkPolicy test pod's command."""
    (pod,) = denied_pods(render("helm4", case))
    (ctr,) = pod["spec"]["containers"]
    return ctr["command"]


def run_denied(port: int) -> subprocess.CompletedProcess[str]:
    """The denied pod's command, aimed at a loopback port in place of the Service."""
    command = ["--host=127.0.0.1" if arg.startswith("--host=") else arg for arg in denied_command()]
    command = [f"--port={port}" if arg.startswith("--port=") else arg for arg in command]
    assert command[:3] == ["python3", "-m", "flask_example.probe"]
    return run_probe(command[3:])


def test_denied_pod_passes_when_a_stand_in_service_refuses_it() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        result = run_denied(port)
    assert result.returncode == 0, result.stdout
    assert "unreachable from this pod, as it should be (refused)" in result.stdout


def test_denied_pod_fails_when_a_stand_in_service_lets_it_in(serve) -> None:
    server = serve()
    result = run_denied(server.server_address[1])
    assert result.returncode == 1
    assert "accepted a connection" in result.stdout
    assert "enforce NetworkPolicies" in result.stdout


FROM = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]


def render_values(values: dict) -> list[dict]:
    """The default case with these values set on top (each top-level key as JSON)."""
    extra = [
        arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]
    return render("helm4", "default", *extra)


def test_denied_pod_is_rendered_only_where_the_policy_keeps_some_pods_out() -> None:
    assert "--unreachable" in denied_command()
    assert denied_pods(render("helm4", "default")) == []  # no NetworkPolicy
    for values in (
        {"networkPolicy": {"enabled": True, "from": []}},  # admits every source
        {"networkPolicy": {"enabled": True, "from": FROM}, "tests": {"networkPolicy": False}},
    ):
        assert denied_pods(render_values(values)) == []
    assert len(denied_pods(render_values({"networkPolicy": {"enabled": True, "from": FROM}}))) == 1
