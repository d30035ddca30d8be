"""The checkov checks that do not apply to the chart's manifests, each with its reason.

Our lint configuration, kept with the tests: nothing of it ships in what users deploy. A skip
names the check, the kind of object it is excused on (the helm test pod is the `Pod`), and the
condition, read off that case's rendered manifests, under which it applies; anywhere else the
check must pass. tests/chart/test_chart_checkov.py holds checkov to this table both ways: every
failure is excused by a row, and every row excuses a failure somewhere in the value matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def image(obj: dict) -> dict:
    """The first container of a Deployment's pod template or of a bare Pod."""
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
    return spec["containers"][0]


def no_digest(_objects: list[dict], obj: dict) -> bool:
    """image.digest is empty: the image runs by tag."""
    return "@sha256:" not in image(obj)["image"]


def no_network_policy(objects: list[dict], _obj: dict) -> bool:
    """networkPolicy.enabled is false: the chart renders no NetworkPolicy."""
    return not any(o["kind"] == "NetworkPolicy" for o in objects)


def always(_objects: list[dict], _obj: dict) -> bool:
    """In every case the object is rendered."""
    return True


@dataclass(frozen=True)
class Skip:
    """One check excused on one kind of object when a condition holds."""

    check: str
    kind: str
    when: Callable[[list[dict], dict], bool]
    reason: str


SKIPS = (
    Skip(
        "CKV_K8S_43",
        "Deployment",
        no_digest,
        "image.digest is empty; deploys set it, a hand install runs the appVersion tag",
    ),
    Skip(
        "CKV_K8S_43",
        "Pod",
        no_digest,
        "the helm test pod runs the chart's image exactly as the Deployment names it",
    ),
    Skip(
        "CKV2_K8S_6",
        "Deployment",
        no_network_policy,
        "networkPolicy.enabled is false; the namespace's own policies apply",
    ),
    Skip(
        "CKV_K8S_8",
        "Pod",
        always,
        "a helm test pod runs one check and exits; a liveness probe has nothing to watch",
    ),
    Skip(
        "CKV_K8S_9",
        "Pod",
        always,
        "a helm test pod runs one check and exits; nothing routes traffic to it",
    ),
    Skip(
        "CKV2_K8S_6",
        "Pod",
        always,
        "a helm test pod accepts no connections; the NetworkPolicy guards the server pods",
    ),
)
