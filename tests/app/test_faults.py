"""Fault injection: off by default, on only through the FAULT_* settings, probes spared."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from flask_example.app import create_app


def faulty_app(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Flask:
    """An app made with these FAULT_* variables in its environment."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return create_app({"TESTING": True})


def test_no_fault_by_default(client) -> None:
    statuses = {client.get("/version").status_code for _ in range(200)}
    assert statuses == {200}
    assert client.get("/readyz").status_code == 200


def test_error_rate_fails_that_share_of_requests_as_problems(monkeypatch) -> None:
    client = faulty_app(monkeypatch, FAULT_ERROR_RATE="0.5").test_client()
    answers = [client.get("/version") for _ in range(400)]
    failed = [answer for answer in answers if answer.status_code == 500]
    assert {answer.status_code for answer in answers} == {200, 500}
    assert 120 < len(failed) < 280, f"{len(failed)} of 400 failed; half expected"
    assert failed[0].content_type == "application/problem+json"
    assert "FAULT_ERROR_RATE" in failed[0].get_json()["detail"]


def test_error_rate_one_fails_everything_but_probes_and_metrics(monkeypatch) -> None:
    client = faulty_app(monkeypatch, FAULT_ERROR_RATE="1").test_client()
    for path in ("/", "/version", "/headers", "/status/200", "/openapi.json"):
        assert client.get(path).status_code == 500, path
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path
    # The injected errors are counted like any other answer.
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'route="/version",status="500"' in metrics


def test_latency_delays_requests_but_not_probes(monkeypatch) -> None:
    client = faulty_app(monkeypatch, FAULT_LATENCY="0.3").test_client()
    started = time.monotonic()
    assert client.get("/version").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert time.monotonic() - started < 0.3


def test_readiness_turns_503_after_the_given_time_and_stays(monkeypatch) -> None:
    client = faulty_app(monkeypatch, FAULT_UNREADY_AFTER="0.5").test_client()
    assert client.get("/readyz").status_code == 200
    time.sleep(0.6)
    for _ in range(3):
        answer = client.get("/readyz")
        assert (answer.status_code, answer.get_json()) == (503, {"status": "fault"})
    assert client.get("/healthz").status_code == 200, "liveness stays: no restart loop"
    assert client.get("/version").status_code == 200


def test_no_request_turns_faults_on(client) -> None:
    # Nothing a client sends changes the pod's state: no endpoint takes fault settings.
    for path in ("/fault", "/faults", "/chaos", "/readyz?fail=1", "/version?FAULT_ERROR_RATE=1"):
        client.get(path)
    statuses = {client.get("/version").status_code for _ in range(50)}
    assert statuses == {200}
    assert client.get("/readyz").status_code == 200


def test_fault_injection_is_logged_when_on(monkeypatch, caplog) -> None:
    faulty_app(monkeypatch, FAULT_LATENCY="0.1")
    assert "Fault injection is on" in caplog.text
