"""Prometheus metrics: requests and their latency by route template, method and status.

With several server worker processes each one counts only its own requests; when the
environment has PROMETHEUS_MULTIPROC_DIR, prometheus-client keeps every process's values in
files there and /metrics adds them up, so a scrape sees the whole pod whichever worker answers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flask_example.settings import ConfigError, Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A label for requests that matched no route, so unknown paths cannot create new series.
UNMATCHED = "<unmatched>"
# Methods are client input: anything else is counted as "other" to keep series bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LABELS = ("method", "route", "status")
SCRAPE_ATTEMPTS = 3
# Where Timed keeps the request's start in the WSGI environ.
START = "flask_example.metrics.start"

bp = Blueprint("metrics", __name__)


class BuildInfo(Collector):
    """A constant series whose labels say which build runs; computed at scrape time."""

    def __init__(self, settings: Settings) -> None:
        self.labels = {
            "version": settings.version,
            "commit": settings.commit,
            "branch": settings.branch,
            "channel": settings.channel,
        }

    def collect(self) -> Iterator[Metric]:
        """Yield flask_example_build_info with value 1."""
        family = GaugeMetricFamily(
            "flask_example_build_info", "Which build runs: always 1.", labels=list(self.labels)
        )
        family.add_metric(list(self.labels.values()), 1)
        yield family


@dataclass
class Metrics:
    """One app's metrics, and where /metrics reads them from."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    in_progress: Gauge
    build_info: BuildInfo
    multiprocess_dir: Path | None
    # Made on the first certificate load, so that a plain HTTP server has no TLS series.
    certificate_not_after: Gauge | None = None
    certificate_reloads: Counter | None = None
    # (method, route, status) -> its counter and histogram: labels() costs a lock and a lookup
    # per metric on every request; the set of label values is bounded (see KNOWN_METHODS).
    # Two threads may fill the same entry at once: labels() gives both the same children.
    children: dict = field(default_factory=dict)

    def observe(self, labels: tuple[str, str, str], seconds: float) -> None:
        """Count one answered request and its latency."""
        children = self.children.get(labels)
        if children is None:
            children = self.children[labels] = (
                self.requests.labels(*labels),
                self.latency.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def certificate_loaded(self, facts: dict, reloaded: bool) -> None:
        """The server loaded a certificate (see flask_example.server.tls): record its expiry."""
        if self.certificate_not_after is None or self.certificate_reloads is None:
            # With several workers the earliest expiry shows: the one an alert must see.
            self.certificate_not_after = Gauge(
                "tls_certificate_not_after_timestamp_seconds",
                "When the served TLS certificate expires (Unix time).",
                registry=self.registry,
                multiprocess_mode="min",
            )
            self.certificate_reloads = Counter(
                "tls_certificate_reloads",
                "Renewed TLS certificates loaded without a restart, counted per worker.",
                registry=self.registry,
            )
        not_after = datetime.fromisoformat(facts["not_after"]).timestamp()
        self.certificate_not_after.set(not_after)
        if reloaded:
            self.certificate_reloads.inc()

    def exposition_registry(self) -> CollectorRegistry:
        """What a scrape reads: this process's registry, or every worker's files."""
        if self.multiprocess_dir is None:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        registry.register(self.build_info)
        return registry


def multiprocess_dir() -> Path | None:
    """The shared folder when multiprocess mode is on; ConfigError when it cannot work."""
    if MULTIPROC_ENV not in os.environ:
        return None
    path = Path(os.environ[MULTIPROC_ENV])
    if not os.environ[MULTIPROC_ENV] or not path.is_dir() or not os.access(path, os.W_OK):
        raise ConfigError(
            f"{MULTIPROC_ENV}={os.environ[MULTIPROC_ENV]!r} is not a writable directory: "
            f"create it empty before the server starts, or unset {MULTIPROC_ENV} for one process"
        )
    # prometheus-client chooses between in-memory and file-backed values once, when it is first
    # imported; set after that, the variable would silently give each worker its own numbers.
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise ConfigError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported: "
            "set it in the environment before the server imports the application"
        )
    return path


class _Pid:
    """This process's id, read once and again after a fork, instead of a system call each time.

    prometheus-client asks for the pid at every metric write, to notice a fork: six system
    calls per request. Its MultiProcessValue takes the function to ask; a pid that is
    refreshed after every fork gives the same answers.
    """

    value = os.getpid()
    installed = False

    @classmethod
    def refresh(cls) -> None:
        cls.value = os.getpid()

    @classmethod
    def get(cls) -> int:
        return cls.value


os.register_at_fork(after_in_child=_Pid.refresh)


def _use_cached_pid() -> None:
    # Once per process, before the first metric of multiprocess mode is made: the values of
    # every metric must come from one class (it keeps the open files).
    if getattr(values.ValueClass, "_multiprocess", False) and not _Pid.installed:
        values.ValueClass = values.MultiProcessValue(process_identifier=_Pid.get)
        _Pid.installed = True


class Timed:
    """WSGI middleware around the app: the request's start in the environ, the in-progress gauge.

    As Flask hooks (before_request and teardown_request) these cost two more hook calls and
    four context-local lookups per request, a tenth of what /healthz costs in the app.
    """

    def __init__(self, wsgi_app, in_progress: Gauge) -> None:
        self.wsgi_app = wsgi_app
        self.in_progress = in_progress

    def __call__(self, environ, start_response):
        environ[START] = time.perf_counter()
        self.in_progress.inc()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            self.in_progress.dec()


def _observer(metrics: Metrics):
    """The after_request hook that counts and times each answer of one app."""

    def observe(response: Response) -> Response:
        # The request object itself, not its context-local proxy, for the three reads.
        current = request._get_current_object()
        started = current.environ.get(START)
        if started is not None:
            rule = current.url_rule
            method = current.method
            labels = (
                method if method in KNOWN_METHODS else "other",
                rule.rule if rule is not None else UNMATCHED,
                str(response.status_code),
            )
            metrics.observe(labels, time.perf_counter() - started)
        return response

    return observe


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text (or OpenMetrics, when the scraper asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    registry = current_app.extensions["metrics"].exposition_registry()
    # The server removes a dead worker's files; one removed between the collector listing the
    # folder and reading it is not there on the next try.
    for _ in range(SCRAPE_ATTEMPTS - 1):
        with contextlib.suppress(FileNotFoundError):
            return Response(encode(registry), content_type=content_type)
    return Response(encode(registry), content_type=content_type)


def init_app(app: Flask) -> None:
    """Create this app's metrics and time every request; bp serves /metrics."""
    settings: Settings = app.config["SETTINGS"]
    # Checked first: in multiprocess mode creating a metric already writes to the folder.
    shared_dir = multiprocess_dir()
    if shared_dir is not None:
        _use_cached_pid()
    # A registry per app, so that several apps (tests) in one process never share series.
    registry = CollectorRegistry()
    build_info = BuildInfo(settings)
    registry.register(build_info)
    app.extensions["metrics"] = Metrics(
        registry=registry,
        requests=Counter("http_requests", "HTTP requests answered.", LABELS, registry=registry),
        latency=Histogram(
            "http_request_duration_seconds",
            "Time from the request reaching the app to its response.",
            LABELS,
            registry=registry,
        ),
        in_progress=Gauge(
            "http_requests_in_progress",
            "HTTP requests being handled now.",
            registry=registry,
            multiprocess_mode="livesum",
        ),
        build_info=build_info,
        multiprocess_dir=shared_dir,
    )
    app.wsgi_app = Timed(app.wsgi_app, app.extensions["metrics"].in_progress)
    app.after_request(_observer(app.extensions["metrics"]))
