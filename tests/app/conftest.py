"""Fixtures for the application's tests: an app built from a known environment, and its client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_example.app import create_app
from flask_example.app.errors import PROBLEM_JSON
from flask_example.app.facts import SERVICE
from flask_example.app.metrics import MULTIPROC_ENV
from flask_example.settings import variables

# The build and deployment facts the image and the chart would inject.
FACTS_ENV = {
    "APP_VERSION": "2.3.4",
    "APP_COMMIT": "0123abcd",
    "APP_BRANCH": "feature/login",
    "APP_CHANNEL": "release",
    "APP_RELEASE": "flask-example-1",
    "APP_NAMESPACE": "prod",
    "APP_POD_NAME": "flask-example-1-5d8f7c9b4-x2x7q",
    "APP_HOST": "flask-example-1.example.test",
}
# What /facts and the pages show for FACTS_ENV.
EXPECTED_FACTS = {
    "service": SERVICE,
    "version": FACTS_ENV["APP_VERSION"],
    "commit": FACTS_ENV["APP_COMMIT"],
    "branch": FACTS_ENV["APP_BRANCH"],
    "channel": FACTS_ENV["APP_CHANNEL"],
    "namespace": FACTS_ENV["APP_NAMESPACE"],
    "release": FACTS_ENV["APP_RELEASE"],
    "pod": FACTS_ENV["APP_POD_NAME"],
    "host": FACTS_ENV["APP_HOST"],
}


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Start every test from an environment without any of our variables (nor FLASK_DEBUG)."""
    for name in variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    # The image's default TLS paths may exist on a developer's machine; tests choose their own.
    no_tls = tmp_path_factory.mktemp("no-tls")
    monkeypatch.setenv("TLS_CERT_FILE", str(no_tls / "tls.crt"))
    monkeypatch.setenv("TLS_KEY_FILE", str(no_tls / "tls.key"))


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app as the chart would run it: facts from the environment, testing on."""
    for name, value in FACTS_ENV.items():
        monkeypatch.setenv(name, value)
    yield create_app({"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@dataclass(frozen=True)
class LiveServer:
    """A real gunicorn serving the app: its base URL and its shared metrics folder."""

    url: str
    metrics_dir: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "gunicorn exited before it was ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} was not ready within {timeout} s")


@pytest.fixture(scope="session")
def live_server(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """gunicorn with two single-threaded workers sharing a metrics folder, on a loopback port.

    Started with gunicorn's own command line, not the server's config module, so that the app's
    tests depend on nothing but the app.
    """
    workdir = tmp_path_factory.mktemp("gunicorn")
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"}
    env |= FACTS_ENV | {
        "PYTHONPATH": str(repo_root / "src"),
        "TLS_CERT_FILE": str(workdir / "absent.crt"),
        "TLS_KEY_FILE": str(workdir / "absent.key"),
        MULTIPROC_ENV: str(metrics_dir),
    }
    port = _free_port()
    command = [sys.executable, "-m", "gunicorn", "flask_example.app:create_app()"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "1"]
    # Run in an empty folder, so no gunicorn.conf.py is picked up from the working directory.
    process = subprocess.Popen(command, cwd=workdir, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{url}/readyz", process)
        yield LiveServer(url, metrics_dir)
    finally:
        process.terminate()
        process.wait(timeout=30)


def assert_problem(response: TestResponse, status: int) -> dict:
    """Check a problem-details response and return its body."""
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert body["detail"]
    return body
