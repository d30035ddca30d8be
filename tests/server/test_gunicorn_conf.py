"""The gunicorn settings as gunicorn itself reads them, the logs it writes, and shared metrics."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from gunicorn.workers.gthread import ThreadWorker

from flask_example.server.worker import HardenedWorker
from tests.server.conftest import VENV_BIN


def effective_config(env: dict[str, str]) -> dict[str, str]:
    """gunicorn --print-config with our module: setting -> value as gunicorn will use it."""
    result = subprocess.run(
        [
            VENV_BIN / "gunicorn",
            "-c",
            "python:flask_example.server.gunicorn_conf",
            "--print-config",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))


def test_settings_come_from_the_environment(server_env):
    config = effective_config(
        server_env(
            PORT="9123",
            PROBE_PORT="9124",
            WEB_CONCURRENCY="3",
            THREADS="7",
            GRACEFUL_TIMEOUT="12.5",
            LOG_LEVEL="warning",
        )
    )
    assert config["bind"] == "['127.0.0.1:9123', '127.0.0.1:9124']"
    assert config["limit_request_line"] == "8190"  # longer is a 414
    assert config["workers"] == "3"
    assert config["threads"] == "7"
    # gunicorn's gthread worker, with bounded client waits (tests/server/test_hardening.py).
    assert config["worker_class"] == "flask_example.server.worker.HardenedWorker"
    assert config["graceful_timeout"] == "13"  # whole seconds, rounded up
    assert config["loglevel"] == "warning"
    assert config["accesslog"] == "-"
    assert config["errorlog"] == "-"
    assert config["control_socket_disable"] == "True"
    assert config["preload_app"] == "False"
    assert config["certfile"] == "None"  # no TLS files: plain HTTP
    assert config["worker_tmp_dir"] in ("/dev/shm", "/tmp")
    assert config["forwarded_allow_ips"] == "['127.0.0.1', '::1']"


def test_defaults_are_the_contracts(server_env):
    env = server_env()
    for name in ("PORT", "PROBE_PORT", "LISTEN_HOST", "WEB_CONCURRENCY", "THREADS"):
        del env[name]
    config = effective_config(env)
    assert config["bind"] == "['0.0.0.0:8080']"
    assert (config["workers"], config["threads"], config["graceful_timeout"]) == ("2", "4", "25")


def test_ipv6_listen_address_is_bracketed(server_env):
    config = effective_config(server_env(LISTEN_HOST="::1", PORT="9000", PROBE_PORT="9001"))
    assert config["bind"] == "['[::1]:9000', '[::1]:9001']"


def test_trusted_proxies_come_from_forwarded_allow_ips(server_env):
    config = effective_config(server_env(FORWARDED_ALLOW_IPS="10.0.0.0/8"))
    assert config["forwarded_allow_ips"] == "['10.0.0.0/8']"


def read_json_lines(path: Path) -> list[dict]:
    """Every line of a log file, each of which must be one JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_json_access_line_per_request_without_secrets(start_server):
    server = start_server()
    status, _, _ = server.get(
        "/healthz?token=s3cret-query",
        headers={
            "Authorization": "Bearer s3cret-token",
            "Cookie": "session=s3cret-cookie",
            "User-Agent": 'agent "quoted"',
            "X-Request-ID": "req-42",
        },
    )
    assert status == 200
    time.sleep(0.3)
    lines = [e for e in read_json_lines(server.stdout) if e.get("path") == "/healthz"]
    assert len(lines) == 1
    (entry,) = lines
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["user_agent"] == 'agent "quoted"'
    assert entry["request_id"] == "req-42"
    assert entry["duration_ms"] >= 0
    assert "s3cret" not in server.stdout.read_text() + server.stderr.read_text()
    # The error log is JSON too, on stderr, and says how the server started.
    errors = read_json_lines(server.stderr)
    assert any("Listening at: http://127.0.0.1" in e["message"] for e in errors)
    assert {e["logger"] for e in errors} == {"gunicorn.error"}


def test_a_busy_workers_access_lines_are_all_written_soon_after(start_server, server_env):
    """Lines held while other requests run (log.ACCESS_HOLD) are whole, one per request."""
    server = start_server(env=server_env(WEB_CONCURRENCY="1"))
    per_thread, threads = 25, 8

    def client() -> None:
        for _ in range(per_thread):
            assert server.get("/version")[0] == 200

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(client) for _ in range(threads)]:
            future.result()
    answered = time.monotonic()
    lines: list[dict] = []
    while time.monotonic() - answered < 3 and len(lines) < per_thread * threads:
        time.sleep(0.05)
        lines = [e for e in read_json_lines(server.stdout) if e.get("path") == "/version"]
    assert len(lines) == per_thread * threads
    # The main loop looks twice a second, and the last request's line takes the held ones.
    assert time.monotonic() - answered < 1.5


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("traceparent", "expected"),
    [
        (f"00-{TRACE_ID}-00f067aa0ba902b7-01", TRACE_ID),
        (f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"ff-{TRACE_ID}-00f067aa0ba902b7-01", None),
        ('"}, "injected": "x', None),
        (None, "absent"),
    ],
)
def test_access_line_carries_the_traceparent_trace_id(start_server, traceparent, expected):
    server = start_server()
    headers = {} if traceparent is None else {"traceparent": traceparent}
    assert server.get("/version", headers=headers)[0] == 200
    time.sleep(0.3)
    (entry,) = [e for e in read_json_lines(server.stdout) if e.get("path") == "/version"]
    assert entry.get("trace_id", "absent") == expected
    assert "injected" not in entry


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.startswith(name + "{"):
            body = sample[len(name) + 1 : -1]
            if ",".join(sorted(body.split(","))) == wanted:
                return float(value)
    pytest.fail(f"{name}{{{wanted}}} not in /metrics")


def test_metrics_add_up_every_workers_requests(start_server, server_env):
    server = start_server(env=server_env(WEB_CONCURRENCY="2"))
    sent, pids = 0, set()
    # New connections land on either worker; go on until the access log shows both answered.
    while len(pids) < 2 and sent < 500:
        server.get("/version")
        sent += 1
        if sent % 10 == 0:
            time.sleep(0.1)
            pids = {
                entry["pid"]
                for entry in read_json_lines(server.stdout)
                if entry.get("path") == "/version"
            }
    assert len(pids) == 2, "both workers must have answered for this test to mean anything"
    for _ in range(4):  # whichever worker answers the scrape, it reports both workers' counts
        text = server.get("/metrics")[2].decode()
        assert (
            metric(text, "http_requests_total", method="GET", route="/version", status="200")
            == sent
        )


def test_a_dead_workers_live_gauge_is_dropped(start_server, server_env, tmp_path):
    server = start_server(env=server_env(WEB_CONCURRENCY="1"))
    server.get("/healthz")  # the worker writes its in-progress gauge file
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    counted = metric(server.get("/metrics")[2].decode(), "http_requests_total", **labels)
    (metrics_dir,) = (tmp_path / "tmp").glob("flask-example-*/metrics")
    master = server.process.pid
    (worker,) = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert list(metrics_dir.glob(f"gauge_livesum_{worker}.db"))
    os.kill(int(worker), signal.SIGTERM)  # gunicorn replaces it; child_exit cleans up after it
    deadline = time.monotonic() + 10
    while list(metrics_dir.glob(f"gauge_livesum_{worker}.db")):
        assert time.monotonic() < deadline, "the dead worker's gauge file is still there"
        time.sleep(0.05)
    # Its counts stay (totals never drop), merged into the archive; none of its files remain.
    assert not list(metrics_dir.glob(f"*_{worker}.db"))
    text = server.get("/metrics")[2].decode()
    assert metric(text, "http_requests_total", **labels) >= counted
    assert server.get("/healthz")[0] == 200


def test_the_worker_is_gunicorns_gthread_worker():
    assert issubclass(HardenedWorker, ThreadWorker)


def test_the_server_config_imports_neither_flask_nor_the_app(server_env):
    # The master reads this module before any worker exists: importing Flask or the app here
    # would import prometheus_client before PROMETHEUS_MULTIPROC_DIR is set.
    code = (
        "import sys\n"
        "import flask_example.server.gunicorn_conf\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'werkzeug', 'prometheus_client') or m.startswith('flask_example.app'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [VENV_BIN / "python", "-c", code],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == ""
