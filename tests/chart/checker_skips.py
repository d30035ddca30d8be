"""The findings of kube-score and kube-linter that do not apply to the chart, each with its reason.

One table per tool, in the shape of tests/chart/checkov_skips.py (whose Skip rows and conditions
these reuse): a row names the tool's check, the kind of object (the helm test pods are `Pod`)
and the condition, read off that case's rendered manifests, under which the finding is excused.
tests/chart/test_chart_checkers.py holds each tool to its table both ways. kubeconform and
`ct lint` have no table: every object must validate and the chart must lint.
"""

from __future__ import annotations

from tests.chart.checkov_skips import Skip, always, image, no_network_policy


def has_network_policy(objects: list[dict], obj: dict) -> bool:
    """networkPolicy.enabled is true: the chart renders a NetworkPolicy (ingress only)."""
    return not no_network_policy(objects, obj)


def digest_if_not_present(_objects: list[dict], obj: dict) -> bool:
    """The image is pinned by digest and image.pullPolicy is IfNotPresent."""
    ctr = image(obj)
    return "@sha256:" in ctr["image"] and ctr["imagePullPolicy"] == "IfNotPresent"


# kube-score's findings (grade CRITICAL or WARNING), by check id (`kube-score list`).
KUBE_SCORE = (
    Skip(
        "pod-networkpolicy",
        "Deployment",
        no_network_policy,
        "networkPolicy.enabled is false; the namespace's own policies apply",
    ),
    Skip(
        "pod-networkpolicy",
        "Deployment",
        has_network_policy,
        "a WARNING that no egress policy exists: what the app calls out to (a database, an API)"
        " is the adopter's, and a default egress policy would cut the first such call",
    ),
    Skip(
        "pod-networkpolicy",
        "Pod",
        always,
        "a helm test pod accepts no connections; the NetworkPolicy guards the server pods",
    ),
    Skip(
        "container-image-pull-policy",
        "Deployment",
        digest_if_not_present,
        "the digest case shows IfNotPresent for an image that cannot change; the default and"
        " the pipeline keep Always, which re-checks the pull secret on every start",
    ),
    Skip(
        "container-image-pull-policy",
        "Pod",
        digest_if_not_present,
        "the helm test pod pulls the chart's image exactly as the Deployment does",
    ),
)

# kube-linter's findings with its default checks: none to excuse.
KUBE_LINTER: tuple[Skip, ...] = ()
