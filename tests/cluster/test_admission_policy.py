"""The README's admission policies (Sigstore policy-controller's ClusterImagePolicy: the
signature and the SBOM attestation) against the real API server: its CustomResourceDefinition
from policy-controller's own Go module (without the conversion webhook, which needs
policy-controller running), the policies applied as a server-side dry run with strict field
validation."""

from pathlib import Path

import pytest
import yaml

from hack.cluster import Cluster, module_dir
from tests.registry.registrylib import CYCLONEDX_PREDICATE

ROOT = Path(__file__).resolve().parents[2]
POLICY_CONTROLLER = "github.com/sigstore/policy-controller@v0.13.1"
CRD = "config/300-clusterimagepolicy.yaml"
MARKER = "<!-- admission-policy -->\n```yaml\n"


def readme_policy() -> str:
    """The YAML block right after the README's admission-policy marker."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split(MARKER, 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def policy_crd(cluster: Cluster) -> None:
    """policy-controller's ClusterImagePolicy CRD, installed and established. Its versions
    are converted by policy-controller's own webhook, which this control plane does not run:
    conversion is set to None, so a v1beta1 object is validated against the CRD's v1beta1
    schema (validation comes before conversion) and stored as is."""
    crd = yaml.safe_load((module_dir(POLICY_CONTROLLER) / CRD).read_text(encoding="utf-8"))
    assert crd["spec"]["conversion"]["strategy"] == "Webhook"
    crd["spec"]["conversion"] = {"strategy": "None"}
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(crd))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/clusterimagepolicies.policy.sigstore.dev",
    )


def dry_run(cluster: Cluster, manifests: str):
    """`kubectl apply` as a server-side dry run that refuses unknown fields."""
    return cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=manifests,
        check=False,
    )


def test_the_readme_policy_is_valid_for_the_api_server(cluster: Cluster, policy_crd: None) -> None:
    """The four policies (signature and SBOM, key and keyless) pass the API server's schema
    and strict validation, and they cover the project's registry path."""
    documents = list(yaml.safe_load_all(readme_policy()))
    assert [doc["kind"] for doc in documents] == ["ClusterImagePolicy"] * 4
    for doc in documents:
        assert doc["spec"]["images"][0]["glob"].endswith("/group/flask-example-1**")
    done = dry_run(cluster, readme_policy())
    assert done.returncode == 0, done.stderr
    for doc in documents:
        name = doc["metadata"]["name"]
        assert f"clusterimagepolicy.policy.sigstore.dev/{name} created (server dry run)" in (
            done.stdout
        )


def test_each_sbom_policy_asks_for_cosign_s_cyclonedx_attestation() -> None:
    """Each signature policy has an SBOM policy for the same images and the same authority
    (key or keyless identity) that asks for an attestation of the predicate type cosign
    writes for the pipeline's SBOMs; policy-controller admits an image only when both pass."""
    documents = list(yaml.safe_load_all(readme_policy()))
    signed, attested = documents[0::2], documents[1::2]
    for signature, sbom in zip(signed, attested, strict=True):
        [authority] = signature["spec"]["authorities"]
        [sbom_authority] = sbom["spec"]["authorities"]
        assert "attestations" not in authority
        assert sbom["spec"]["images"] == signature["spec"]["images"]
        assert {**sbom_authority, "name": authority["name"]} == {
            **authority,
            "attestations": [{"name": "cyclonedx-sbom", "predicateType": CYCLONEDX_PREDICATE}],
        }


@pytest.mark.parametrize(
    ("typo", "field"),
    [
        (("subjectRegExp:", "subjectRegexp:"), "keyless.identities[0].subjectRegexp"),
        (("predicateType:", "predicatetype:"), "attestations[0].predicatetype"),
    ],
    ids=["identity", "attestation"],
)
def test_a_misspelt_field_is_refused(
    cluster: Cluster, policy_crd: None, typo: tuple[str, str], field: str
) -> None:
    """The dry run checks the fields: a typo in the policy fails, naming the field."""
    done = dry_run(cluster, readme_policy().replace(*typo))
    assert done.returncode != 0
    assert f'unknown field "spec.authorities[0].{field}"' in done.stderr
