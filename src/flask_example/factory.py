"""The application factory: it only wires settings, blueprints and hooks together."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from flask_example import diagnostics, errors, metrics, openapi, pages, probes, security
from flask_example.app.body_limit import LimitedRequest
from flask_example.config import load_settings

DEFAULTS = {
    # No endpoint needs a larger body than /echo's limit.
    "MAX_CONTENT_LENGTH": 64 * 1024,
}


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app: defaults, then settings from the environment, then the test mapping."""
    app = Flask("flask_example", static_folder=None)
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
    for blueprint in (pages.bp, probes.bp, diagnostics.bp, metrics.bp, openapi.bp):
        app.register_blueprint(blueprint)
    return app
