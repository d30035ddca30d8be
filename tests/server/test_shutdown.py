"""Graceful shutdown of the real server under real load: readiness first, then drain, then exit."""

from __future__ import annotations

import http.client
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Load:
    """Client threads sending requests on fresh connections, as a load balancer would."""

    server: object
    path: str = "/healthz"
    clients: int = 6
    stop: threading.Event = field(default_factory=threading.Event)
    results: list = field(default_factory=list)  # (sent_at, status | exception, Connection)
    threads: list = field(default_factory=list)

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                status, headers, _ = self.server.get(self.path, timeout=10)
                self.results.append((sent, status, headers.get("Connection")))
            except (OSError, http.client.HTTPException) as error:
                self.results.append((sent, error, None))

    def start(self) -> Load:
        """Start the client threads."""
        self.threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        """Stop sending and wait for the answers still outstanding."""
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def failures(self) -> list:
        """Every request that did not get a 200."""
        return [r for r in self.results if r[1] != 200]


def slow_request(server, seconds: float, results: list) -> threading.Thread:
    """GET /delay/<seconds> in a thread; its (status | exception, finished_at) lands in results."""

    def run() -> None:
        try:
            status = server.get(f"/delay/{seconds}", timeout=seconds + 15)[0]
        except (OSError, http.client.HTTPException) as error:
            status = error
        results.append((status, time.monotonic()))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for_status(server, path: str, want: int, timeout: float) -> float:
    """Poll path until it answers want; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.get(path, timeout=2)[0] == want:
            return time.monotonic() - start
        time.sleep(0.02)
    pytest.fail(f"{path} never answered {want} within {timeout}s")


def test_sigterm_drains_under_load_and_exits_zero(start_server, server_env):
    delay, graceful = 3.0, 10
    env = server_env(SHUTDOWN_DELAY=str(delay), GRACEFUL_TIMEOUT=str(graceful))
    server = start_server(env=env)
    load = Load(server).start()
    time.sleep(0.5)
    assert load.results and not load.failures(), load.failures()[:3]

    slow: list = []
    in_flight = slow_request(server, 4, slow)  # spans SIGTERM, the drain and the graceful stop
    time.sleep(0.3)
    term_at = time.monotonic()
    server.signal(signal.SIGTERM)
    assert wait_for_status(server, "/readyz", 503, timeout=1.0) < 0.5

    # Inside the drain window a request that starts now still finishes after the stop begins.
    time.sleep(delay - 1.2)
    late = slow_request(server, 2, slow)
    # The load balancer has seen readiness fail and stops sending before the delay is over.
    time.sleep(0.7)
    load.finish()
    in_flight.join(30)
    late.join(30)
    status = server.wait(timeout=delay + graceful + 5)
    exited_after = time.monotonic() - term_at

    assert status == 0, server.logs()
    assert not load.failures(), f"{len(load.failures())} failed: {load.failures()[:3]}"
    during_drain = [r for r in load.results if r[0] > term_at + 0.5]
    assert len(during_drain) > 20, "the server must keep serving new connections while draining"
    assert all(r[2] == "close" for r in during_drain), "draining answers must close connections"
    assert [s for s, _ in slow] == [200, 200], slow
    assert all(done > term_at + delay for _, done in slow), "slow requests outlived the stop"
    assert delay <= exited_after < delay + graceful
    with pytest.raises(ConnectionRefusedError):
        server.get("/healthz", timeout=2)


def test_without_drain_delay_the_stop_is_immediate_and_still_graceful(start_server, server_env):
    server = start_server(env=server_env(SHUTDOWN_DELAY="0", GRACEFUL_TIMEOUT="10"))
    slow: list = []
    in_flight = slow_request(server, 1.5, slow)
    time.sleep(0.3)
    start = time.monotonic()
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    # No delay asked for: gunicorn stops listening at once (a connection still in the backlog
    # is reset; that is what SHUTDOWN_DELAY exists to avoid).
    with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
        server.get("/healthz", timeout=2)
    in_flight.join(20)
    assert server.wait(timeout=10) == 0, server.logs()
    assert slow[0][0] == 200
    assert time.monotonic() - start < 5


def test_second_sigterm_ends_the_delay_early(start_server, server_env):
    server = start_server(env=server_env(SHUTDOWN_DELAY="60", GRACEFUL_TIMEOUT="10"))
    server.signal(signal.SIGTERM)
    wait_for_status(server, "/readyz", 503, timeout=2)
    assert server.get("/healthz")[0] == 200  # still serving during the (long) delay
    slow: list = []
    in_flight = slow_request(server, 1, slow)
    time.sleep(0.3)
    start = time.monotonic()
    server.signal(signal.SIGTERM)
    in_flight.join(20)
    assert server.wait(timeout=10) == 0, server.logs()
    assert time.monotonic() - start < 5
    assert slow[0][0] == 200, "the second SIGTERM still stops gracefully"


def test_sigint_stops_at_once(start_server, server_env):
    server = start_server(env=server_env(SHUTDOWN_DELAY="60", GRACEFUL_TIMEOUT="30"))
    slow: list = []
    slow_request(server, 8, slow)
    time.sleep(0.3)
    start = time.monotonic()
    server.signal(signal.SIGINT)  # Ctrl-C in `make run`: no drain, no waiting
    assert server.wait(timeout=10) == 0, server.logs()
    assert time.monotonic() - start < 3


def test_runtime_dir_is_removed_on_clean_exit(start_server, server_env, tmp_path):
    server = start_server(env=server_env(SHUTDOWN_DELAY="0"))
    tmp = tmp_path / "tmp"
    (runtime,) = tmp.glob("flask-example-*")
    assert (runtime / "metrics").is_dir()
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0, server.logs()
    assert not list(tmp.glob("flask-example-*"))


def test_sigterm_exits_zero_even_when_the_drain_cannot_be_announced(
    start_server, server_env, tmp_path
):
    # Anything raised in the master's SIGTERM path reaches gunicorn's main loop, which kills
    # the workers at once and exits 255: here the drain flag's folder has gone from /tmp.
    env = server_env(SHUTDOWN_DELAY="1", GRACEFUL_TIMEOUT="10", WEB_CONCURRENCY="1")
    server = start_server(env=env)
    # The route's metric files exist before /tmp loses them, so only the drain flag is affected.
    assert server.get("/delay/0")[0] == 200
    slow: list = []
    in_flight = slow_request(server, 1.5, slow)
    time.sleep(0.3)
    (runtime,) = (tmp_path / "tmp").glob("flask-example-*")
    shutil.rmtree(runtime)
    server.signal(signal.SIGTERM)
    in_flight.join(20)
    assert server.wait(timeout=15) == 0, server.logs()
    assert slow[0][0] == 200, "requests in flight still finish"


def test_ready_only_once_every_worker_has_loaded_the_app(start_server, server_env, tmp_path):
    # A load balancer's keep-alive connections opened while a worker still boots would all
    # stay on the others: readiness waits for the last worker, not the first.
    workers = 3
    server = start_server(env=server_env(WEB_CONCURRENCY=str(workers)), wait=False)
    deadline = time.monotonic() + 30
    while True:
        assert server.process.poll() is None, server.logs()
        assert time.monotonic() < deadline, f"never ready:\n{server.logs()}"
        try:
            if server.get("/readyz", timeout=1)[0] == 200:
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.01)
    # Each worker's app opens its metric files as it loads; every one must be there already.
    (metrics_dir,) = (tmp_path / "tmp").glob("flask-example-*/metrics")
    loaded = {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("gauge_livesum_*")}
    master = server.process.pid
    forked = {
        int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()
    }
    assert len(forked) == workers
    assert loaded == forked
