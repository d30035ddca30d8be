"""`make run` serves where the environment says, as the README's configuration table promises."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_run_honours_port_and_other_settings(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "APP_CHANNEL": "from-the-environment"}
    env.pop("MAKEFLAGS", None)
    # The TLS files the image mounts may exist here; point them at nothing.
    env |= {"TLS_CERT_FILE": str(tmp_path / "no.crt"), "TLS_KEY_FILE": str(tmp_path / "no.key")}
    with (tmp_path / "run.log").open("w") as log:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/"
                request = urllib.request.Request(url, headers={"Accept": "application/json"})
                with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310
                    facts = json.load(answer)
                break
            except OSError:
                assert make.poll() is None, (tmp_path / "run.log").read_text()
                assert time.monotonic() < deadline, "make run did not serve on $PORT"
                time.sleep(0.2)
        assert facts["channel"] == "from-the-environment"
        # The README's first proof: the prober against `make run`, one JSON object.
        proved = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "flask_example.prove", url, "--json"],
            env={**env, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        results = json.loads(proved.stdout)
        assert set(results) >= {
            *("body_limit_bytes", "read_timeout_seconds", "status_passthrough"),
            *("request_headers_added", "request_headers_removed", "websocket"),
            *("streaming", "pods", "tls", "failures"),
        }
        assert (proved.returncode, results["failures"]) == (0, [])
    finally:
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=30)
