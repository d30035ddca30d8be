"""The sbom input's wiring under gitlab-ci-local with stand-ins for crane, syft and cosign:
docker_builder:sbom:job after the push, the sign job attesting its SBOMs and the verify job
checking that attestation; the input turns the job off. The real crane, syft and cosign
against the real registry are in tests/registry/test_sbom_real.py."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from hack import cluster_tools
from tests.pipeline.conftest import DIGEST, SECRETS, Run, Scratch
from tests.pipeline.pipelinelib import (
    IMAGE,
    SHELLS,
    assert_no_secrets,
    errors,
    id_token,
    registry_variables,
    shell_command,
)

ROOT = Path(__file__).resolve().parents[2]
SBOM_SH = ROOT / "ci" / "scripts" / "sbom.sh"
SBOM = "docker_builder:sbom:job"
SIGN = "docker_builder:sign:job"
VERIFY = "docker_builder:verify:job"
PUSH = "docker_builder:push:job"


def component_input(name: str) -> dict:
    """One input of the component, as its spec declares it."""
    spec = (ROOT / "templates" / "pipeline" / "template.yml").read_text().split("\n---\n")[0]
    return yaml.safe_load(spec)["spec"]["inputs"][name]


def attest_calls(image: str, *signer: str) -> list[list[str]]:
    """`cosign attest` as the sign job runs it, once per platform's SBOM, SIGNER being the
    key's flags (none for keyless)."""
    return [
        ["attest", "--yes", *signer, "--type", "cyclonedx", "--predicate", sbom, image]
        for sbom in ("build/sbom/amd64.cdx.json", "build/sbom/arm64.cdx.json")
    ]


def build_to_verify(scratch: Scratch, variables: dict) -> Run:
    """The image jobs from the build to the verify job under gitlab-ci-local, which pass."""
    run = scratch.gcl(
        "--force-shell-executor",
        "docker_builder:build:job",
        PUSH,
        SBOM,
        SIGN,
        VERIFY,
        variables=variables,
    )
    assert run.returncode == 0, run.output
    return run


@pytest.mark.parametrize("sbom", [True, False], ids=["sbom", "no-sbom"])
def test_sbom_job_follows_the_push_and_the_input(scratch: Scratch, sbom: bool) -> None:
    """With the sbom input (on by default) the SBOM job needs the push job and the sign job
    needs it (for its artifacts); with `sbom: false` it is not in the pipeline, and the
    dependency chain still holds."""
    scratch.checkout_branch("main")
    inputs = () if sbom else ("--input", "sbom=false")
    jobs = scratch.list_jobs({"PIPELINE_SIGNING": "key"}, (), *inputs)
    assert (SBOM in jobs) == sbom
    if sbom:
        assert [need["job"] for need in jobs[SBOM]["needs"]] == [PUSH]
        assert {"job": SBOM, "artifacts": True, "optional": True} in jobs[SIGN]["needs"]
    run = scratch.gcl("--validate-dependency-chain", *inputs)
    assert run.returncode == 0, run.output


def test_syft_image_is_the_release_the_tests_build() -> None:
    """The default syft_image is anchore/syft's release, by tag and digest, of the version
    hack/tools/syft/go.mod pins: the tests run the syft the pipeline runs."""
    name, digest = component_input("syft_image")["default"].split("@")
    assert name == f"anchore/syft:v{cluster_tools.TOOLS['syft'].pinned()}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)


def test_sbom_attest_and_verify_stand_in(fresh_scratch: Scratch, tmp_path: Path) -> None:
    """The SBOM job copies /syft out of syft_image with crane, for the runner's platform, and
    runs it on each platform of the pushed index, keeping one CycloneDX file per platform;
    with a key the sign job attests each on the index's digest and the verify job checks
    that attestation. No secret reaches a log or an artifact (the SBOMs included)."""
    fresh_scratch.checkout_branch("dev")
    key = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----stand-in-key-51be"
    (tmp_path / "cosign.key").write_text(key + "\n")
    (tmp_path / "cosign.pub").write_text("stand-in public key\n")
    variables = {
        **registry_variables(tmp_path),
        "PIPELINE_SIGNING": "key",
        "PIPELINE_SIGNING_TLOG": "false",
        "COSIGN_PRIVATE_KEY": str(tmp_path / "cosign.key"),
        "COSIGN_PUBLIC_KEY": str(tmp_path / "cosign.pub"),
        "COSIGN_PASSWORD": SECRETS["COSIGN_PASSWORD"],
    }
    run = build_to_verify(fresh_scratch, variables)
    syft_image = component_input("syft_image")["default"]
    image = f"{IMAGE}@{DIGEST}"
    sbom_crane = [c["argv"] for c in run.tool("crane") if "sbom.sh" in c["caller_argv"][-1]]
    assert sbom_crane[0][:2] == ["auth", "login"]
    assert sbom_crane[1][:4] == ["export", "--platform", "linux/amd64", syft_image]
    assert sbom_crane[2] == ["manifest", image]
    scans = [call["argv"] for call in run.tool("syft")]
    assert scans == [
        ["version"],
        *(
            [
                "scan",
                "--platform",
                f"linux/{arch}",
                f"registry:{image}",
                "--output",
                f"cyclonedx-json@1.6=build/sbom/{arch}.cdx.json",
            ]
            for arch in ("amd64", "arm64")
        ),
    ]
    [scan, *_] = run.tool("syft")
    assert scan["env"]["SYFT_CHECK_FOR_APP_UPDATE"] == "false"
    assert scan["env"]["SYFT_FORMAT_CYCLONEDX_JSON_PRETTY"] == "false"
    attests = [c["argv"] for c in run.tool("cosign") if c["argv"][0] == "attest"]
    signer = ("--key", str(tmp_path / "cosign.key"), "--use-signing-config=false")
    assert attests == attest_calls(image, *signer, "--tlog-upload=false")
    [checked] = [c["argv"] for c in run.tool("cosign") if c["argv"][0] == "verify-attestation"]
    assert checked == [
        "verify-attestation",
        "--type",
        "cyclonedx",
        "--key",
        str(tmp_path / "cosign.pub"),
        "--insecure-ignore-tlog=true",
        image,
    ]
    # The index's platforms, which each need an attested SBOM, read from the registry.
    [saved] = [c["argv"] for c in run.tool("cosign") if c["argv"][0] == "save"]
    assert (saved[1], saved[3:]) == ("--dir", [image])
    artifacts = fresh_scratch.path / ".gitlab-ci-local" / "artifacts"
    assert {p.name for p in artifacts.rglob("*.cdx.json")} == {"amd64.cdx.json", "arm64.cdx.json"}
    for arch in ("amd64", "arm64"):
        [sbom] = artifacts.rglob(f"{arch}.cdx.json")
        subject = json.loads(sbom.read_text())["metadata"]["component"]
        assert subject["properties"] == [{"name": "oci:platform", "value": f"linux/{arch}"}]
    assert_no_secrets(run, fresh_scratch, {"the private key": key})


def test_keyless_attests_with_the_id_token_stand_in(fresh_scratch: Scratch, tmp_path: Path) -> None:
    """Keyless: the sign job attests each SBOM with no key, GitLab's ID token only in
    cosign's environment (traded as Fulcio trades it); the verify job asks for an
    attestation by a certificate of this project's pipelines."""
    fresh_scratch.checkout_branch("dev")
    token = id_token()
    variables = {
        **registry_variables(tmp_path),
        "PIPELINE_SIGNING": "keyless",
        "SIGSTORE_ID_TOKEN": token,
    }
    run = build_to_verify(fresh_scratch, variables)
    image = f"{IMAGE}@{DIGEST}"
    attests = [call for call in run.tool("cosign") if call["argv"][0] == "attest"]
    assert [call["argv"] for call in attests] == attest_calls(image)
    assert {call["env"]["SIGSTORE_ID_TOKEN"] for call in attests} == {token}
    [checked] = [c["argv"] for c in run.tool("cosign") if c["argv"][0] == "verify-attestation"]
    assert checked[:3] == ["verify-attestation", "--type", "cyclonedx"]
    assert checked[3:7:2] == ["--certificate-identity-regexp", "--certificate-oidc-issuer"]
    assert checked[-1] == image
    assert_no_secrets(run, fresh_scratch, {"SIGSTORE_ID_TOKEN": token})


def verify_alone(scratch: Scratch, folder: Path, standin: dict) -> Run:
    """The verify job by itself, with a key, on the digest docker_builder:push:job would hand
    on, the stand-in cosign set by STANDIN: it fails and hands no digest on."""
    scratch.checkout_branch("dev")
    (folder / "cosign.pub").write_text("stand-in public key\n")
    variables = {
        **registry_variables(folder),
        "PIPELINE_SIGNING": "key",
        "COSIGN_PUBLIC_KEY": str(folder / "cosign.pub"),
        "IMAGE_REPOSITORY": IMAGE,
        "IMAGE_DIGEST": DIGEST,
    }
    run = scratch.gcl("--force-shell-executor", VERIFY, variables=variables, env=standin)
    assert run.returncode != 0
    assert not list((scratch.path / ".gitlab-ci-local").rglob("verified.env"))
    return run


def test_verify_refuses_an_unattested_digest_stand_in(
    fresh_scratch: Scratch, tmp_path: Path
) -> None:
    """A signed digest without the SBOM attestation stops the verify job in one line naming
    the digest and the key, and hands no digest on to the deploy."""
    run = verify_alone(fresh_scratch, tmp_path, {"STANDIN_UNATTESTED": DIGEST})
    assert errors(run.output) == {
        f"ERROR: image {IMAGE}@{DIGEST} has no valid CycloneDX SBOM attestation by the key"
        f" {tmp_path / 'cosign.pub'}: Error: no matching attestations:"
    }


def test_verify_refuses_a_platform_without_its_sbom_stand_in(
    fresh_scratch: Scratch, tmp_path: Path
) -> None:
    """A digest whose attested SBOMs cover amd64 but not arm64, both platforms of its index,
    stops the verify job in one line naming the digest and arm64, and hands no digest on."""
    run = verify_alone(fresh_scratch, tmp_path, {"STANDIN_ATTESTED": "linux/amd64"})
    assert errors(run.output) == {
        f"ERROR: image {IMAGE}@{DIGEST} has no CycloneDX SBOM attestation by the key"
        f" {tmp_path / 'cosign.pub'} for its platform linux/arm64: docker_builder:sign:job"
        " attests one for each platform of the index (build/sbom/<arch>.cdx.json from"
        " docker_builder:sbom:job)"
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_sbom_refuses_a_syft_image_without_a_digest(shell: str, tmp_path: Path) -> None:
    """syft reads every layer with the job's registry credentials: a syft_image given by tag
    alone stops the job in one line, before anything is pulled (no crane on PATH here)."""
    done = subprocess.run(
        [*shell_command(shell), str(SBOM_SH)],
        cwd=tmp_path,
        env={
            "PATH": os.environ["PATH"],
            "CI_REGISTRY": "registry.example.test",
            "CI_REGISTRY_USER": "gitlab-ci-token",
            "CI_REGISTRY_PASSWORD": SECRETS["CI_REGISTRY_PASSWORD"],
            "IMAGE_REPOSITORY": IMAGE,
            "IMAGE_DIGEST": DIGEST,
            "SYFT_IMAGE": "anchore/syft:v1.54.1",
        },
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ERROR: the syft_image input 'anchore/syft:v1.54.1' is not pinned by digest: give it"
        " as <image>:<tag>@sha256:<digest>"
    ]
