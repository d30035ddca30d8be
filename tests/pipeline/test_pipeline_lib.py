"""ci/scripts/lib.sh's shared steps, run in BusyBox sh and dash: the TLS options per tool
and the checked curl call."""

import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.pipeline.pipelinelib import LIB, SHELLS, shell_command

CA = "gitlab runner/it's ca.crt"  # (under tmp_path) a space and a quote survive the quoting
REGISTRY = "registry.example.test:5050"
WARNING = "WARNING: TLS verification is off for the registries (input insecure_registry=true)"


def run(shell: str, script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """SCRIPT with lib.sh sourced under `set -eu`, as the job scripts run."""
    return subprocess.run(
        [*shell_command(shell), "-c", f'set -eu; . "{LIB}"; {script}'],
        env={"PATH": os.environ["PATH"], **(env or {})},
        check=False,
        capture_output=True,
        text=True,
    )


def test_busybox_is_among_the_shells() -> None:
    """The job images' only shell is BusyBox: these tests must run in it."""
    assert "busybox" in SHELLS


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("tool", "insecure", "ca", "words"),
    [
        ("kaniko", "false", CA, ["--registry-certificate", f"{REGISTRY}={CA}"]),
        ("kaniko", "true", CA, ["--skip-tls-verify", "--skip-tls-verify-pull"]),
        ("crane", "false", CA, []),
        ("crane", "true", "", ["--insecure"]),
        ("cosign", "false", CA, []),
        ("cosign", "true", "", ["--allow-insecure-registry"]),
        ("helm", "false", "", []),
        ("helm", "false", CA, []),
        ("helm", "true", CA, ["--insecure-skip-tls-verify"]),
        ("curl", "false", "", []),
        ("curl", "false", CA, ["--cacert", CA]),
        ("curl", "true", CA, ["--insecure"]),
        ("gitlab-api", "false", CA, ["--cacert", CA]),
        ("gitlab-api", "true", CA, ["--cacert", CA]),
        ("gitlab-api", "true", "", []),
    ],
)
def test_tls_flags(
    shell: str, tool: str, insecure: str, *, ca: str, words: list, tmp_path: Path
) -> None:
    """Each tool's options: off only behind insecure_registry (with the warning); with the
    runner's CA, kaniko gets it for the registry and curl as its CAs (crane and helm read
    trust_ca's SSL_CERT_FILE); the GitLab API is never insecure. The words come through
    `eval "set -- ..."` intact."""
    if ca:
        (tmp_path / ca).parent.mkdir()
        (tmp_path / ca).write_text("-----BEGIN CERTIFICATE-----\n")
    path = str(tmp_path / ca) if ca else ""
    result = run(
        shell,
        f'tls=$(tls_flags {tool}); eval "set -- $tls"; for w in "$@"; do echo "<$w>"; done',
        {"INSECURE_REGISTRY": insecure, "CI_SERVER_TLS_CA_FILE": path, "CI_REGISTRY": REGISTRY},
    )
    assert result.returncode == 0, result.stderr
    expected = [word.replace(CA, path) for word in words]
    assert result.stdout.splitlines() == [f"<{word}>" for word in expected]
    warned = insecure == "true" and tool != "gitlab-api"
    assert result.stderr == (f"{WARNING}\n" if warned else "")


@pytest.mark.parametrize("shell", SHELLS)
def test_tls_flags_default_is_verification_on(shell: str) -> None:
    """With neither variable set, no tool gets any option: the tools verify by default."""
    for tool in ("kaniko", "crane", "cosign", "helm", "curl", "gitlab-api"):
        result = run(shell, f"tls_flags {tool}")
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), tool


@pytest.mark.parametrize("shell", SHELLS)
def test_tls_flags_refuses_an_unknown_tool(shell: str) -> None:
    """A typo in a script stops the job instead of silently passing no options."""
    result = run(shell, 'tls=$(tls_flags wget); echo "reached $tls"')
    assert result.returncode != 0
    assert result.stdout == ""
    assert "tls_flags: unknown tool 'wget'" in result.stderr


SECRET = "glpat-standin-never-printed-4e1c"  # noqa: S105 (a stand-in token)


class Answer(BaseHTTPRequestHandler):
    """Answers /<status> with that status and a short reason; records the headers."""

    seen: list = []  # noqa: RUF012 (one list for the test server's lifetime)

    def do_POST(self) -> None:
        """Read the request, answer with the status its path names."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Answer.seen.append(dict(self.headers))
        status = int(self.path.strip("/"))
        body = f"reason {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def server():
    """A plain-HTTP server on 127.0.0.1 (TLS options are tls_flags' part)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def call(shell: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """curl_checked with the secret in a header file, as auto-merge.sh sends it."""
    (tmp_path / "header").write_text(f"PRIVATE-TOKEN: {SECRET}\n")
    return run(
        shell,
        f'curl_checked "{tmp_path}/body" "{url}" "GitLab refused POST {url}" "check the token"'
        f' --request POST --header "@{tmp_path}/header" --data x=1; echo passed',
    )


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("status", [200, 201, 204])
def test_curl_checked_passes_2xx(shell: str, server: str, tmp_path: Path, status: int) -> None:
    """A 2xx answer lets the script go on, the answer in the body file."""
    Answer.seen.clear()
    result = call(shell, f"{server}/{status}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "passed\n"
    assert result.stderr == ""
    assert (tmp_path / "body").read_text() == ("" if status == 204 else f"reason {status}")
    [headers] = Answer.seen
    assert headers["PRIVATE-TOKEN"] == SECRET


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("status", [301, 401, 404, 405, 500, 503])
def test_curl_checked_stops_on_anything_else(
    shell: str, server: str, tmp_path: Path, status: int
) -> None:
    """Any other status stops the job with one line: what was refused, the status, the
    server's reason and the hint; the secret is in no output."""
    url = f"{server}/{status}"
    result = call(shell, url, tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"ERROR: GitLab refused POST {url} with HTTP {status}: reason {status}; check the token\n"
    )
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_curl_checked_stops_when_unreachable(shell: str, tmp_path: Path) -> None:
    """No server: the job stops naming the URL and what to check."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}/200"
    result = call(shell, url, tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"ERROR: cannot reach {url}: check CI_API_V4_URL" in result.stderr
    assert SECRET not in result.stderr
