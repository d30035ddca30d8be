"""The factory: nothing happens at import, settings then the test mapping, never debug."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import flask.app
import pytest
from flask import Flask

from flask_example import __version__
from flask_example.app import create_app
from flask_example.settings import Settings
from tests.app.conftest import FACTS_ENV


def test_import_reads_no_settings(repo_root: Path) -> None:
    # An invalid environment must only fail when an app is created, not on import.
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src"), "PORT": "abc"}
    code = "import flask_example, flask_example.app.factory; print(flask_example.__version__)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_settings_come_from_the_environment(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    assert settings.version == FACTS_ENV["APP_VERSION"]
    assert settings.pod_name == FACTS_ENV["APP_POD_NAME"]


def test_the_test_mapping_wins(app: Flask) -> None:
    settings = replace(app.config["SETTINGS"], commit="feedbeef")
    other = create_app({"TESTING": True, "SETTINGS": settings, "MAX_CONTENT_LENGTH": 10})
    assert other.config["SETTINGS"].commit == "feedbeef"
    assert other.config["MAX_CONTENT_LENGTH"] == 10
    assert other.test_client().get("/version").get_json()["commit"] == "feedbeef"


def test_each_app_is_independent(app: Flask) -> None:
    app.test_client().get("/healthz")
    fresh = create_app({"TESTING": True}).test_client().get("/metrics").get_data(as_text=True)
    assert 'route="/healthz"' not in fresh


@pytest.mark.parametrize("mapping", [None, {"DEBUG": True}])
def test_debug_is_never_on(monkeypatch: pytest.MonkeyPatch, mapping: dict | None) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app(mapping)
    assert app.debug is False


@pytest.mark.parametrize(("raw", "level"), [("debug", logging.DEBUG), ("ERROR", logging.ERROR)])
def test_log_level_applies_to_the_app_logger(
    monkeypatch: pytest.MonkeyPatch, raw: str, level: int
) -> None:
    monkeypatch.setenv("LOG_LEVEL", raw)
    app = create_app()
    assert app.logger.name == "flask_example"
    assert app.logger.level == level


def test_no_static_route_or_development_server_hooks(app: Flask) -> None:
    assert "static" not in app.view_functions
    assert app.static_folder is None


def test_each_view_and_hook_is_checked_for_async_once(app: Flask, monkeypatch) -> None:
    """App.ensure_sync gives Flask's answer, asking inspect once per function."""
    asked = []
    real = flask.app.iscoroutinefunction
    monkeypatch.setattr(flask.app, "iscoroutinefunction", lambda f: asked.append(f) or real(f))
    client = app.test_client()
    for _ in range(3):
        assert client.get("/", headers={"Accept": "application/json"}).status_code == 200
    assert asked, "Flask no longer asks through ensure_sync: App's override is dead"
    assert len(asked) == len(set(asked))

    async def view() -> str:
        return "async"

    # A coroutine function still goes to Flask's async_to_sync, every time it is asked for
    # (without the async extra installed, that is Flask's error).
    for _ in range(2):
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(view)
