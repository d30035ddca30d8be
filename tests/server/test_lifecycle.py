"""The runtime dir and the drain flag that the gunicorn master shares with its workers."""

from __future__ import annotations

import fcntl
import multiprocessing
import os

import pytest

from flask_example import lifecycle


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


def _child_reports_drain(go, queue) -> None:
    queue.put(lifecycle.is_draining())
    go.wait(10)
    queue.put(lifecycle.is_draining())


def test_drain_begun_in_the_master_is_seen_by_a_forked_worker(tmp_path):
    lifecycle.create_runtime_dir(str(tmp_path))
    context = multiprocessing.get_context("fork")
    go, queue = context.Event(), context.Queue()
    worker = context.Process(target=_child_reports_drain, args=(go, queue))
    worker.start()  # forked before the drain, like a running worker
    assert queue.get(timeout=10) is False
    lifecycle.begin_drain()  # in the "master"
    go.set()
    assert queue.get(timeout=10) is True
    worker.join(10)


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
