"""What keeps the service up through node drains and node or zone failures: the
PodDisruptionBudget, pod anti-affinity and topology spread, by default and with the
pipeline's own deploy values; and the NetworkPolicy's peers for what the chart turns on."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.chartlib import CHART, NAMESPACE, PIPELINE_CASES, RELEASE, find, helm, one, render

SPREAD_KEYS = {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
# A label value: at most 63 characters, alphanumerics at both ends, `-`, `_` and `.` inside.
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def pod_spec(objects: list[dict]) -> dict:
    """The Deployment's pod spec."""
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def selector(objects: list[dict]) -> dict:
    """The Deployment's selector labels."""
    return one(objects, "Deployment")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_pipeline_deploy_survives_a_node_drain_and_spreads(helm_name: str, case: str) -> None:
    """Two pods, a budget that lets a drain evict one of them at a time, spread over nodes and
    zones without ever leaving a pod Pending."""
    objects = render(helm_name, case)
    replicas = one(objects, "Deployment")["spec"]["replicas"]
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"] == selector(objects)
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # Both pods Ready: exactly one may be evicted, the second waits for its replacement.
    assert (replicas, budget["maxUnavailable"]) == (2, 1)
    assert "minAvailable" not in budget

    spec = pod_spec(objects)
    spread = spec["topologySpreadConstraints"]
    assert {rule["topologyKey"] for rule in spread} == SPREAD_KEYS
    for rule in spread:
        assert rule["whenUnsatisfiable"] == "ScheduleAnyway"
        assert rule["maxSkew"] == 1
        assert rule["labelSelector"] == {"matchLabels": selector(objects)}
        assert rule["matchLabelKeys"] == ["pod-template-hash"]
    [term] = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector(objects)},
    }


@pytest.mark.parametrize(
    ("flags", "pods"),
    [
        ((), 2),
        (("--set", "replicaCount=1"), 0),
        (("--set", "replicaCount=3"), 3),
        (("--set", "podDisruptionBudget.enabled=false"), 0),
        (("--set", "autoscaling.enabled=true,autoscaling.minReplicas=1,replicaCount=3"), 0),
        (("--set", "autoscaling.enabled=true,autoscaling.minReplicas=2,replicaCount=1"), 2),
    ],
)
def test_budget_whenever_more_than_one_pod_runs(
    helm_name: str, flags: tuple[str, ...], pods: int
) -> None:
    budgets = find(render(helm_name, "default", *flags), "PodDisruptionBudget")
    assert len(budgets) == (1 if pods else 0)


def test_budget_is_overridable(helm_name: str) -> None:
    objects = render(helm_name, "autoscaling")
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "25%"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--set", "podAntiAffinity="), None),
        (("--set", "podAntiAffinity=hard"), "required"),
        (("--set-json", 'affinity={"nodeAffinity": {}}'), "preferred"),
    ],
)
def test_anti_affinity_presets(helm_name: str, flags: tuple[str, ...], expected: str) -> None:
    objects = render(helm_name, "default", *flags)
    affinity = pod_spec(objects).get("affinity", {})
    if "nodeAffinity" in flags[1]:
        assert affinity["nodeAffinity"] == {}, "the affinity value is kept beside the preset"
    if expected is None:
        assert "podAntiAffinity" not in affinity
        return
    [(key, [rule])] = affinity["podAntiAffinity"].items()
    assert key == f"{expected}DuringSchedulingIgnoredDuringExecution"
    term = rule if expected == "required" else rule["podAffinityTerm"]
    assert term["labelSelector"] == {"matchLabels": selector(objects)}


def test_own_anti_affinity_replaces_the_preset(helm_name: str) -> None:
    """The full case's own podAntiAffinity is rendered as given, with nothing added."""
    values = yaml.safe_load((CHART / "ci" / "full-values.yaml").read_text())
    assert pod_spec(render(helm_name, "full"))["affinity"] == values["affinity"]


def test_spreading_is_overridable(helm_name: str) -> None:
    assert "topologySpreadConstraints" not in pod_spec(
        render(helm_name, "default", "--set-json", "topologySpreadConstraints=[]")
    )
    # A rule with its own selector keeps it, and gets no matchLabelKeys.
    own = {
        "maxSkew": 2,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"team": "web"}},
    }
    objects = render(
        helm_name, "default", "--set-json", f"topologySpreadConstraints={json.dumps([own])}"
    )
    assert pod_spec(objects)["topologySpreadConstraints"] == [own]


def test_network_policy_admits_prometheus_and_the_gateway(helm_name: str) -> None:
    """With `from` set, the full case's ServiceMonitor and HTTPRoute still reach the pods."""
    values = yaml.safe_load((CHART / "ci" / "full-values.yaml").read_text())["networkPolicy"]
    objects = render(helm_name, "full")
    assert find(objects, "ServiceMonitor") and find(objects, "HTTPRoute")
    [rule] = one(objects, "NetworkPolicy")["spec"]["ingress"]
    peers = rule["from"]
    for key in ("from", "metricsFrom", "gatewayFrom"):
        assert values[key] and all(peer in peers for peer in values[key]), key


def test_pipeline_network_policy_admits_the_ingress_namespace(helm_name: str) -> None:
    [rule] = one(render(helm_name, "pipeline-prod"), "NetworkPolicy")["spec"]["ingress"]
    namespace = {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert rule["from"][0] == {"namespaceSelector": {"matchLabels": namespace}}
    assert len(rule["from"]) == 2, "the ingress controller and the helm test pod only"
    assert not find(render(helm_name, "pipeline-dev"), "NetworkPolicy")


@pytest.mark.parametrize(
    ("app_version", "label"),
    [
        ("1.0.0+build.7", "1.0.0_build.7"),
        ("release/2024 (beta).", "release_2024__beta"),
        ("_v2_", "v2"),
        # Cut at 63 characters, where a "." ends it.
        ("1." + "2" * 60 + ".3", "1." + "2" * 60),
        ("...", None),
    ],
)
def test_version_label_is_always_valid(
    helm_name: str, tmp_path: Path, app_version: str, label: str | None
) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    chart_yaml["appVersion"] = app_version
    (chart / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    result = helm(helm_name, "template", RELEASE, str(chart), "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stderr
    for obj in (doc for doc in yaml.safe_load_all(result.stdout) if doc):
        for value in obj["metadata"]["labels"].values():
            assert LABEL_VALUE.fullmatch(value), value
        if obj["kind"] != "Pod":
            assert obj["metadata"]["labels"].get("app.kubernetes.io/version") == label
