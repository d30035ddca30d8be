"""Every rendered object of the matrix against the Kubernetes API schemas (1.29 to the newest
that kubernetes-validate ships, strict: unknown fields fail) and, for the custom resources,
against JSON schemas written from cert-manager's, Prometheus Operator's and Gateway API's
published API references (tests/chart/schemas/)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, latest_version
from referencing import Registry, Resource

from tests.chart.chartlib import KUBE_VERSIONS, MATRIX, render

SCHEMAS = Path(__file__).parent / "schemas"
# kind -> (apiVersion, schema file) for objects whose API is not built into Kubernetes.
CUSTOM = {
    "Certificate": ("cert-manager.io/v1", "certificate-cert-manager.io-v1.json"),
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitor-monitoring.coreos.com-v1.json"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproute-gateway.networking.k8s.io-v1.json"),
    "BackendTLSPolicy": (
        "gateway.networking.k8s.io/v1",
        "backendtlspolicy-gateway.networking.k8s.io-v1.json",
    ),
}


def custom_validator(kind: str) -> jsonschema.protocols.Validator:
    """A validator for one custom resource kind, resolving the shared objectmeta.json."""
    registry = Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text())))
        for path in SCHEMAS.glob("*.json")
    )
    schema = json.loads((SCHEMAS / CUSTOM[kind][1]).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_versions_end_at_the_newest_schemas_shipped() -> None:
    assert latest_version() == f"{KUBE_VERSIONS[-1]}.0", (
        "kubernetes-validate changed: extend KUBE_VERSIONS"
    )


def test_strict_validation_rejects_an_unknown_field() -> None:
    """Strict mode is on: a misspelt field in the pod spec fails."""
    objects = render("helm4")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["automountServiceAccountTokens"] = False
    with pytest.raises(AssertionError, match="automountServiceAccountTokens"):
        validate_builtin([deployment], KUBE_VERSIONS[0])


def validate_builtin(objects: list[dict], version: str) -> None:
    """Strictly validate the built-in objects; only the known custom kinds may lack a schema."""
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']} on Kubernetes {version}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            raise AssertionError(f"{where}: {path}: {error.message}") from None
        except SchemaNotFoundError:
            assert obj["kind"] in CUSTOM, f"{where}: no Kubernetes schema for {obj['apiVersion']}"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", MATRIX)
def test_every_version_accepts_helm4_render(case: str, version: str) -> None:
    validate_builtin(render("helm4", case), version)


@pytest.mark.parametrize("version", [KUBE_VERSIONS[0], KUBE_VERSIONS[-1]])
@pytest.mark.parametrize("case", MATRIX)
def test_oldest_and_newest_accept_helm3_render(case: str, version: str) -> None:
    validate_builtin(render("helm3", case), version)


@pytest.mark.parametrize("case", MATRIX)
def test_custom_resources_match_their_api_reference(helm_name: str, case: str) -> None:
    for obj in render(helm_name, case):
        if obj["kind"] in CUSTOM:
            assert obj["apiVersion"] == CUSTOM[obj["kind"]][0]
            errors = [
                f"{'.'.join(map(str, e.path))}: {e.message}"
                for e in custom_validator(obj["kind"]).iter_errors(obj)
            ]
            assert errors == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_full_matrix_renders_every_custom_kind() -> None:
    kinds = {obj["kind"] for obj in render("helm4", "full")}
    assert set(CUSTOM) <= kinds


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        ("Certificate", lambda o: o["spec"].pop("issuerRef"), "'issuerRef' is a required property"),
        (
            "Certificate",
            lambda o: o["spec"]["privateKey"].update(rotationPolicy="Sometimes"),
            "Sometimes",
        ),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scheme="ftp"), "ftp"),
        (
            "ServiceMonitor",
            lambda o: o["spec"]["endpoints"][0].update(tlsConfig={"ca": "x"}),
            "not of type",
        ),
        (
            "HTTPRoute",
            lambda o: o["spec"]["rules"][0]["backendRefs"][0].pop("port"),
            "'port' is a required",
        ),
        ("HTTPRoute", lambda o: o["spec"].update(hostname=["x"]), "Additional properties"),
        (
            "BackendTLSPolicy",
            lambda o: o["spec"]["validation"].update(wellKnownCACertificates="System"),
            "is not valid under any of the given schemas",
        ),
    ],
)
def test_custom_schemas_reject_wrong_objects(kind: str, mutate, expected: str) -> None:
    """The hand-written schemas do catch mistakes (they are not always-pass)."""
    objects = [o for o in render("helm4", "full") if o["kind"] == kind]
    assert objects
    # Each of them (the full case has the pod's and the public host's Certificate).
    for obj in objects:
        mutate(obj)
        messages = [e.message for e in custom_validator(kind).iter_errors(obj)]
        assert any(expected in m for m in messages), messages
