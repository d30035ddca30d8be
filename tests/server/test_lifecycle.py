"""The runtime dir and the drain flag that the gunicorn master shares with its workers."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from flask_example.server import lifecycle


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No runtime dir and no drain leak in or out of a test."""
    # setenv first: monkeypatch only restores a variable it has seen, even an absent one.
    monkeypatch.setenv(lifecycle.RUNTIME_DIR_ENV, "")
    monkeypatch.delenv(lifecycle.RUNTIME_DIR_ENV)
    monkeypatch.setattr(lifecycle, "_draining", False)
    monkeypatch.setattr(lifecycle, "_lock_handle", None)
    yield
    if lifecycle._lock_handle is not None:
        os.close(lifecycle._lock_handle)


# A worker: started before the drain, it reports is_draining() before and after a line on stdin.
WORKER = """
import sys
from flask_example.server import lifecycle
print(lifecycle.is_draining(), flush=True)
sys.stdin.readline()
print(lifecycle.is_draining(), flush=True)
"""


def test_drain_begun_in_the_master_is_seen_by_a_running_worker(tmp_path):
    lifecycle.create_runtime_dir(str(tmp_path))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout.readline().strip() == "False"
    lifecycle.begin_drain()  # in the "master"
    output, _ = worker.communicate("go\n", timeout=30)
    assert output.strip() == "True"


def test_drain_without_a_master_is_per_process():
    assert not lifecycle.is_draining()
    lifecycle.begin_drain()
    assert lifecycle.is_draining()
    lifecycle.reset_drain()
    assert not lifecycle.is_draining()


def test_stale_runtime_dirs_are_removed_and_live_ones_kept(tmp_path):
    stale = tmp_path / "flask-example-dead"
    stale.mkdir()
    (stale / "master.lock").touch()
    (stale / "metrics").mkdir()
    live = tmp_path / "flask-example-live"
    live.mkdir()
    holder = os.open(live / "master.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    other = tmp_path / "unrelated"
    other.mkdir()
    try:
        created = lifecycle.create_runtime_dir(str(tmp_path))
        assert not stale.exists()
        assert live.exists()
        assert other.exists()
        assert created.name.startswith("flask-example-")
        assert os.environ[lifecycle.RUNTIME_DIR_ENV] == str(created)
    finally:
        os.close(holder)


def test_runtime_dir_is_removed_on_request(tmp_path):
    created = lifecycle.create_runtime_dir(str(tmp_path))
    (created / "metrics").mkdir()
    lifecycle.remove_runtime_dir()
    assert not created.exists()


def test_started_once_the_last_worker_of_the_first_set_has_booted(tmp_path, monkeypatch):
    assert lifecycle.is_started(), "without a gunicorn master there is nothing to wait for"
    lifecycle.create_runtime_dir(str(tmp_path))
    monkeypatch.setenv(lifecycle.WORKERS_ENV, "2")
    assert not lifecycle.is_started()
    lifecycle.worker_booted(101)
    assert not lifecycle.is_started()
    lifecycle.worker_booted(102)
    assert lifecycle.is_started()


def test_readiness_tells_the_app_starting_ready_and_draining(tmp_path, monkeypatch):
    # What /readyz answers under the server: flask_example.server.wsgi hands the app this.
    monkeypatch.setenv(lifecycle.WORKERS_ENV, "1")
    lifecycle.create_runtime_dir(str(tmp_path))
    assert lifecycle.readiness() == "starting"
    lifecycle.worker_booted(os.getpid())
    assert lifecycle.readiness() == "ready"
    lifecycle.begin_drain()
    assert lifecycle.readiness() == "draining"
