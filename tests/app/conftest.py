"""Fixtures for the application's tests: an app built from a known environment, and its client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_example import create_app
from flask_example.config import ENVIRONMENT
from flask_example.metrics import MULTIPROC_ENV

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


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Start every test from an environment without any of our variables (nor FLASK_DEBUG)."""
    for name, _parse in ENVIRONMENT.values():
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
