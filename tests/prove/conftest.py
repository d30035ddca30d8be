"""A real nginx on loopback, with a config generated per case, in front of real servers."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server.conftest import (  # noqa: F401 - fixtures: a TLS pod, for `pods`
    ROOT,
    free_port,
    https_server,
    make_env,
    secret,
    server_env,
    start_server,
)

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class Proxy:
    """What the nginx in front of the pods is configured to do."""

    body_limit: str = "1m"
    read_timeout: str = "2s"
    buffering: bool = True
    gzip: bool = False
    websocket: bool = True
    intercept_errors: bool = False
    add_header: tuple[str, str] = ("X-Added-By-Proxy", "nginx")
    remove_header: str = "X-Prove-Extra"
    # Retry another pod on a refused connection only: a retried timeout would double the wait.
    next_upstream: str = "error"


def nginx_config(proxy: Proxy, port: int, upstreams: list[int], folder: Path) -> str:
    """The nginx.conf for one case: one process in the foreground, everything under folder."""
    # max_fails=0: a timed-out /delay must not take the pod out of the rotation for 10 s.
    servers = "".join(f"server 127.0.0.1:{upstream} max_fails=0;\n" for upstream in upstreams)
    temp = "".join(
        f"{kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    upgrade = (
        "proxy_set_header Upgrade $http_upgrade;\n"
        "proxy_set_header Connection $connection_upgrade;\n"
        if proxy.websocket
        else 'proxy_set_header Connection "";\n'
    )
    return f"""
daemon off;
master_process off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 256; }}
http {{
access_log off;
{temp}
map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
upstream pods {{ {servers} }}
server {{
listen 127.0.0.1:{port};
client_max_body_size {proxy.body_limit};
proxy_read_timeout {proxy.read_timeout};
proxy_buffering {"on" if proxy.buffering else "off"};
gzip {"on" if proxy.gzip else "off"};
gzip_min_length 1;
gzip_types application/x-ndjson text/event-stream;
proxy_intercept_errors {"on" if proxy.intercept_errors else "off"};
error_page 301 404 500 503 /nginx-error-page;
location = /nginx-error-page {{ internal; default_type text/html; return 200 "<h1>nginx</h1>"; }}
location / {{
proxy_pass http://pods;
proxy_http_version 1.1;
proxy_next_upstream {proxy.next_upstream};
{upgrade}
proxy_set_header {proxy.add_header[0]} {proxy.add_header[1]};
proxy_set_header {proxy.remove_header} "";
}}
}}
}}
"""


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on the port (fail if nginx exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"nginx did not listen on {port} within {timeout}s:\n{log.read_text()}")


@pytest.fixture
def pods(request: pytest.FixtureRequest, tmp_path: Path):
    """Two real servers (entrypoint.sh -> gunicorn), named pod-a and pod-b."""
    start = request.getfixturevalue("start_server")
    found = []
    for name in ("pod-a", "pod-b"):
        (tmp_path / name).mkdir()
        env = make_env(tmp_path / name, APP_POD_NAME=name, WEB_CONCURRENCY="1", THREADS="8")
        found.append(start(env=env, wait=False))
    for server in found:
        server.wait_ready()
    return found


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator:
    """nginx(Proxy(...), upstream ports) -> its URL; a real nginx in the foreground."""
    if NGINX is None:
        pytest.fail("nginx is not installed: run `make tools` (hack/system-deps.sh nginx)")
    processes: list[subprocess.Popen] = []

    def start(proxy: Proxy, upstreams: list[int]) -> str:
        folder = tmp_path / f"nginx{len(processes)}"
        folder.mkdir()
        port = free_port()
        conf = folder / "nginx.conf"
        conf.write_text(nginx_config(proxy, port, upstreams, folder))
        log = folder / "error.log"
        with (folder / "stderr").open("w") as err:
            process = subprocess.Popen(
                [NGINX, "-e", str(log), "-p", str(folder), "-c", str(conf)], stderr=err
            )
        processes.append(process)
        wait_port(port, process, folder / "stderr")
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


@dataclass
class Proved:
    """One run of the prober: exit status, the JSON object, what it printed on stderr."""

    status: int
    results: dict
    stderr: str


def prove(url: str, *args: str, timeout: float = 180) -> Proved:
    """Run `python3 -m flask_example.prove URL --json ...` as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "flask_example.prove", url, "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    try:
        results = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"prove printed no JSON (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return Proved(done.returncode, results, done.stderr)


# The keys every JSON result of the prober has.
KEYS = {
    "body_limit_bytes",
    "read_timeout_seconds",
    "status_passthrough",
    "request_headers_added",
    "request_headers_removed",
    "websocket",
    "streaming",
    "pods",
    "tls",
    "failures",
}
