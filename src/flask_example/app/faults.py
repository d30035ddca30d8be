"""Fault injection, for rehearsing failures: off unless the FAULT_* settings turn it on.

Only settings (the chart's `faults` values) turn it on; no request can, so nobody can make a
pod fail by calling it. Probes and /metrics are spared from errors and latency, so the pod stays
alive and observable; readiness fails only when FAULT_UNREADY_AFTER asks for it.
"""

from __future__ import annotations

import random
import time

from flask import Flask, Response, request

from flask_example.app.errors import problem
from flask_example.settings import Settings

# What keeps Kubernetes and Prometheus informed: never delayed, never failed.
SPARED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def unready(app: Flask) -> bool:
    """Whether FAULT_UNREADY_AFTER seconds have passed since the app was made."""
    after = app.config["SETTINGS"].fault_unready_after
    return after > 0 and time.monotonic() - app.extensions["faults_started"] >= after


def init_app(app: Flask) -> None:
    """Delay and fail requests as the settings say; say so in the log once."""
    settings: Settings = app.config["SETTINGS"]
    app.extensions["faults_started"] = time.monotonic()
    rate, latency = settings.fault_error_rate, settings.fault_latency
    if rate > 0 or latency > 0 or settings.fault_unready_after > 0:
        app.logger.warning(
            "Fault injection is on: FAULT_ERROR_RATE=%g FAULT_LATENCY=%g FAULT_UNREADY_AFTER=%g",
            rate,
            latency,
            settings.fault_unready_after,
        )
    if rate <= 0 and latency <= 0:
        return
    # Not for security: which requests fail needs no unpredictability.
    chance = random.Random()  # noqa: S311

    def inject() -> Response | None:
        if request.path in SPARED_PATHS:
            return None
        if latency > 0:
            time.sleep(latency)
        if rate > 0 and chance.random() < rate:
            return problem(500, f"fault injected: FAULT_ERROR_RATE is {rate:g}")
        return None

    app.before_request(inject)
