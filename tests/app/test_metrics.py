"""Metrics: labelled by route template, correct across worker processes, build info."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from flask_example.app import create_app, metrics
from flask_example.server import metrics as server_metrics
from tests.app.conftest import FACTS_ENV, LiveServer


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the scrape does not have it."""
    return scrape.get((name, frozenset(labels.items())))


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset], float]:
    """Scrape /metrics and parse it."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    return samples(response.get_data(as_text=True))


def test_requests_are_counted_by_route_template_method_and_status(client: FlaskClient) -> None:
    for code in (200, 418, 418, 503):
        client.get(f"/status/{code}")
    client.post("/echo", data=b"x")
    result = scrape(client)
    route = "/status/<code>"
    for status, count in (("200", 1), ("418", 2), ("503", 1)):
        labels = {"method": "GET", "route": route, "status": status}
        assert value(result, "http_requests_total", **labels) == count
        assert value(result, "http_request_duration_seconds_count", **labels) == count
    labels = {"method": "POST", "route": "/echo", "status": "200"}
    assert value(result, "http_requests_total", **labels) == 1
    # No series names a raw path.
    assert not [key for key in result if ("route", "/status/418") in key[1]]


def test_latency_lands_in_the_right_bucket(client: FlaskClient) -> None:
    client.get("/delay/0.3")
    result = scrape(client)
    labels = {"method": "GET", "route": "/delay/<seconds>", "status": "200"}
    bucket = "http_request_duration_seconds_bucket"
    assert value(result, bucket, le="0.25", **labels) == 0
    assert value(result, bucket, le="0.5", **labels) == 1
    assert value(result, "http_request_duration_seconds_sum", **labels) >= 0.3


def test_unknown_paths_and_methods_cannot_create_series(client: FlaskClient) -> None:
    for path in ("/a", "/b", "/c/d"):
        client.get(path)
    client.open("/healthz", method="BREW")
    result = scrape(client)
    assert (
        value(result, "http_requests_total", method="GET", route="<unmatched>", status="404") == 3
    )
    labels = {"method": "other", "route": "<unmatched>", "status": "405"}
    assert value(result, "http_requests_total", **labels) == 1


def test_build_info(client: FlaskClient) -> None:
    labels = {
        "version": FACTS_ENV["APP_VERSION"],
        "commit": FACTS_ENV["APP_COMMIT"],
        "branch": FACTS_ENV["APP_BRANCH"],
        "channel": FACTS_ENV["APP_CHANNEL"],
    }
    assert value(scrape(client), "flask_example_build_info", **labels) == 1


def test_in_progress_counts_the_scrape_itself(client: FlaskClient) -> None:
    client.get("/healthz")
    assert value(scrape(client), "http_requests_in_progress") == 1


def test_openmetrics_when_the_scraper_asks(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert response.get_data(as_text=True).endswith("# EOF\n")


# Runs in its own process, as a gunicorn worker would: the variable is set before any import.
WORKER = """
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from flask_example.app import create_app
client = create_app().test_client()
for _ in range(int(sys.argv[1])):
    assert client.get("/healthz").status_code == 200
    assert client.get("/status/418").status_code == 418
"""
SCRAPE = """
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from flask_example.app import create_app
sys.stdout.write(create_app().test_client().get("/metrics").get_data(as_text=True))
"""


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter and return the result."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def multiproc_env(repo_root: Path, tmp_path: Path) -> dict[str, str]:
    """An environment for processes sharing one PROMETHEUS_MULTIPROC_DIR."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    return {
        **os.environ,
        **FACTS_ENV,
        "PYTHONPATH": str(repo_root / "src"),
        metrics.MULTIPROC_ENV: str(directory),
    }


def test_several_processes_add_up(multiproc_env: dict[str, str]) -> None:
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=multiproc_env)
        for n in (3, 5, 7)
    ]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0, 0]

    scraped = run_python(SCRAPE, multiproc_env)
    assert scraped.returncode == 0, scraped.stderr
    result = samples(scraped.stdout)
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    teapot = {"method": "GET", "route": "/status/<code>", "status": "418"}
    for labels in (healthz, teapot):
        assert value(result, "http_requests_total", **labels) == 15
        assert value(result, "http_request_duration_seconds_count", **labels) == 15
    build = [key for key in result if key[0] == "flask_example_build_info"]
    assert len(build) == 1
    # The workers are done; the one request in progress is this scrape, in its own process.
    assert value(result, "http_requests_in_progress") == 1

    # A dead worker's counts stay (totals never drop), merged into the archive files; none of
    # its files remain, its live gauge least of all.
    directory = Path(multiproc_env[metrics.MULTIPROC_ENV])
    for worker in workers:
        assert (directory / f"gauge_livesum_{worker.pid}.db").exists()
        os.environ[metrics.MULTIPROC_ENV] = str(directory)
        try:
            server_metrics.collect_dead_worker(worker.pid)
        finally:
            del os.environ[metrics.MULTIPROC_ENV]
        assert not (directory / f"gauge_livesum_{worker.pid}.db").exists()
        assert not list(directory.glob(f"*_{worker.pid}.db"))
    again = samples(run_python(SCRAPE, multiproc_env).stdout)
    assert value(again, "http_requests_total", **healthz) == 15


@pytest.mark.parametrize("problem", ["missing", "empty", "file"])
def test_unusable_multiproc_dir_is_one_line(
    multiproc_env: dict[str, str], tmp_path: Path, problem: str
) -> None:
    target = {"missing": str(tmp_path / "nope"), "empty": "", "file": str(tmp_path / "f")}[problem]
    (tmp_path / "f").write_text("")
    result = run_python(SCRAPE, {**multiproc_env, metrics.MULTIPROC_ENV: target})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"flask_example.settings.ConfigError: {metrics.MULTIPROC_ENV}=")
    assert "is not a writable directory" in last


def test_multiproc_dir_set_too_late_is_refused(multiproc_env: dict[str, str]) -> None:
    # Set after prometheus_client was imported, the variable would do nothing: each worker would
    # report only its own requests. The app refuses to start instead.
    late = (
        "import os\n"
        "from flask_example.app import create_app\n"
        f"os.environ['{metrics.MULTIPROC_ENV}'] = {multiproc_env[metrics.MULTIPROC_ENV]!r}\n"
        "create_app()\n"
    )
    env = {k: v for k, v in multiproc_env.items() if k != metrics.MULTIPROC_ENV}
    result = run_python(late, env)
    assert result.returncode != 0
    assert "was set after prometheus_client was imported" in result.stderr


def test_single_process_mode_without_the_variable() -> None:
    assert create_app({"TESTING": True}).extensions["metrics"].multiprocess_dir is None


def test_gunicorn_workers_report_one_total(live_server: LiveServer) -> None:
    # Eight overlapping slow requests cannot all go to one single-threaded worker.
    def get(path: str) -> str:
        with urllib.request.urlopen(live_server.url + path, timeout=30) as response:  # noqa: S310
            return response.read().decode()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, ["/delay/0.3"] * 8))
    assert len(list(live_server.metrics_dir.glob("counter_*.db"))) == 2

    labels = {"method": "GET", "route": "/delay/<seconds>", "status": "200"}
    totals = [value(samples(get("/metrics")), "http_requests_total", **labels) for _ in range(10)]
    assert totals == [8] * 10


def test_a_scrape_survives_files_removed_while_it_reads(app, client: FlaskClient) -> None:
    """A dead worker's file removed mid-scrape: the scrape reads again instead of failing."""

    class Vanishing(Collector):
        calls = 0

        def collect(self):
            Vanishing.calls += 1
            if Vanishing.calls < metrics.SCRAPE_ATTEMPTS:
                raise FileNotFoundError("counter_123.db")
            yield GaugeMetricFamily("survived", "The scrape read again.", value=1)

    registry = CollectorRegistry()
    registry.register(Vanishing())
    app.extensions["metrics"].exposition_registry = lambda: registry
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"survived 1.0" in response.data


# prometheus-client's pid check at each metric write asks the cached pid, not the kernel: a
# value put there shows in the files' names. A forked child refreshes it and writes its own.
FORKED = """
import os
from flask_example.app import create_app, metrics
client = create_app().test_client()
metrics._Pid.value = 999999
assert client.get("/healthz").status_code == 200
child = os.fork()
if child == 0:
    os._exit(0 if client.get("/healthz").status_code == 200 else 1)
assert os.waitpid(child, 0)[1] == 0
print(child)
"""


def test_metric_writes_ask_the_cached_pid_and_a_fork_refreshes_it(
    multiproc_env: dict[str, str],
) -> None:
    result = run_python(FORKED, multiproc_env)
    assert result.returncode == 0, result.stderr
    child = result.stdout.strip()
    files = {path.name for path in Path(multiproc_env[metrics.MULTIPROC_ENV]).iterdir()}
    assert {"counter_999999.db", f"counter_{child}.db"} <= files
