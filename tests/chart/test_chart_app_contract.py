"""The environment the chart gives the container is what the service's settings code accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flask_example.settings import load_settings, variables
from tests.chart.chartlib import CHART, MATRIX, one, render

# What the kubelet would fill in from the downward API.
DOWNWARD = {"metadata.namespace": "flask-test", "metadata.name": "demo-flask-example-1-abc12"}


def container_env(case: str) -> tuple[dict[str, str], set[str]]:
    """The server container's env as the kubelet resolves it, and the names values.env added."""
    objects = render("helm4", case)
    ctr = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {
        e["name"]: e["value"] if "value" in e else DOWNWARD[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in ctr["env"]
    }
    values_file = CHART / "ci" / f"{case}-values.yaml"
    extra = yaml.safe_load(values_file.read_text()).get("env", []) if case != "default" else []
    return env, {e["name"] for e in extra}


@pytest.mark.parametrize("case", MATRIX)
def test_every_variable_the_chart_sets_is_a_setting(case: str) -> None:
    env, extra = container_env(case)
    known = set(variables())
    assert set(env) - extra <= known, "a variable the service does not read (a typo?)"


@pytest.mark.parametrize("case", MATRIX)
def test_service_accepts_the_chart_environment(case: str) -> None:
    env, _ = container_env(case)
    settings = load_settings(env)
    objects = render("helm4", case)
    ctr = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert settings.port == ctr["ports"][0]["containerPort"] == 8080
    assert settings.probe_port == ctr["ports"][1]["containerPort"] == 8081
    assert settings.graceful_timeout == int(env["GRACEFUL_TIMEOUT"])
    assert settings.shutdown_delay == int(env["SHUTDOWN_DELAY"])
    assert settings.namespace == "flask-test"
    faults = (settings.fault_error_rate, settings.fault_latency, settings.fault_unready_after)
    assert faults == ((0.05, 0.25, 3600.0) if case == "full" else (0, 0, 0))
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    if "tls" in mounts:
        # The files the server looks for are the ones the secret volume provides.
        assert settings.tls_cert_file == Path(mounts["tls"]) / "tls.crt"
        assert settings.tls_key_file == Path(mounts["tls"]) / "tls.key"
    # The server writes only below /tmp, which is the emptyDir.
    assert mounts["tmp"] == "/tmp"
