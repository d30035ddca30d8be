"""The application factory: it only wires settings, blueprints and hooks together."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from flask_example.app import (
    diagnostics,
    errors,
    faults,
    metrics,
    openapi,
    pages,
    probes,
    security,
    transfer,
    websocket,
)
from flask_example.app.body_limit import LimitedRequest
from flask_example.settings import load_settings

DEFAULTS = {
    # No endpoint needs a larger body than /echo's limit.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # The server replaces these with its own answers (see flask_example.server.wsgi).
    "READINESS": probes.always_ready,
    "TLS_FACTS": diagnostics.no_tls,
    "WAIT": diagnostics.sleep,
}


class App(Flask):
    """Flask, with the sync check of each view and hook made once per function.

    Flask asks inspect whether a view or hook is a coroutine function every time it calls one
    (ensure_sync): three times per page, about 1 us each. The answer for a function never
    changes; ensure_sync is the method Flask's documentation says to override.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def ensure_sync(self, func):
        """Flask's ensure_sync, remembered per function (bound methods compare equal)."""
        sync = self._sync.get(func)
        if sync is None:
            sync = self._sync[func] = super().ensure_sync(func)
        return sync


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app: defaults, then settings from the environment, then `config`.

    `config` is the test mapping, or the server's READINESS, TLS_FACTS and WAIT callables
    (see app.probes and app.diagnostics).
    """
    # Named after the service package (its logger), rooted here, beside templates/.
    app = App("flask_example", root_path=str(Path(__file__).parent), static_folder=None)
    app.request_class = LimitedRequest
    app.config.from_mapping(DEFAULTS)
    app.config["SETTINGS"] = load_settings()
    if config is not None:
        app.config.from_mapping(config)
    # Never debug: it would turn errors into tracebacks for anyone who asks (FLASK_DEBUG is
    # read by Flask itself, so it is overridden here rather than trusted).
    app.config["DEBUG"] = False
    app.logger.setLevel(app.config["SETTINGS"].log_level.upper())
    app.json.sort_keys = False  # keep facts in reading order

    errors.init_app(app)
    security.init_app(app)
    metrics.init_app(app)
    # After metrics: an injected error or delay is counted and timed like any other answer.
    faults.init_app(app)
    for blueprint in (
        pages.bp,
        probes.bp,
        diagnostics.bp,
        transfer.bp,
        websocket.bp,
        metrics.bp,
        openapi.bp,
    ):
        app.register_blueprint(blueprint)
    return app
