"""The SBOM and its attestation, unmodified scripts with the pinned real crane, syft and
cosign against the real TLS + htpasswd registry: sbom.sh copies syft out of a syft image
(a stand-in for anchore/syft's release image, named as such: the real syft program at /syft,
as an image index) and writes one CycloneDX document per platform of an index crane made from
two single-platform images; cosign.sh attests them on the index's digest and verifies that
attestation, and refuses, with one line naming the digest and the key, anything else."""

import base64
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from hack import cluster_tools
from tests.registry.registrylib import (
    CYCLONEDX_PREDICATE,
    KEY_PASSWORD,
    PLATFORMS,
    SHA,
    Keys,
    Registry,
    crane,
    job_env,
    key_pair,
    login,
    one_error_line,
    run_script,
    trusting,
)

REPO = "group/sbom-example"
# The stand-in for anchore/syft's release image, under the name and tag the syft_image
# input pins: FROM scratch, the syft program at /syft (syft's own Dockerfile).
SYFT_STANDIN = "anchore/syft:v1.54.1"
# The apk package each platform's image holds, so its SBOM has something of its own to list.
PROBE = "sbom-probe-{arch}"


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    """The pinned crane, cosign and syft (built or reused once)."""
    return cluster_tools.ensure(["crane", "cosign", "syft"])


@pytest.fixture(scope="module")
def keys(tools: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Keys]:
    """Key pairs made by cosign: the project's and someone else's."""
    folder = tmp_path_factory.mktemp("sbom-keys")
    return {
        owner: key_pair(tools["cosign"], folder / owner, KEY_PASSWORD)
        for owner in ("project", "other")
    }


def layer(files: dict[str, tuple[bytes, int]]) -> bytes:
    """An image layer: a tar of FILES (path: (content, mode)), as a Dockerfile's COPY makes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, (content, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def push_index(tools: dict, env: dict, folder: Path, target: str, images: dict) -> str:
    """An image index tagged TARGET of one single-platform image per entry of IMAGES
    (platform: layer bytes), pushed with crane; the index's digest."""
    repository = target.rsplit(":", 1)[0]
    manifests = []
    for platform, data in images.items():
        arch = platform.split("/")[1]
        (folder / f"{arch}.tar").write_bytes(data)
        single = f"{target}-{arch}"
        crane(tools, env, "append", "-f", str(folder / f"{arch}.tar"), "-t", single)
        crane(tools, env, "mutate", single, "--set-platform", platform)
        manifests += ["-m", f"{repository}@{crane(tools, env, 'digest', single).strip()}"]
    crane(tools, env, "index", "append", *manifests, "-t", target)
    return crane(tools, env, "digest", target).strip()


def another_index(tools: dict, env: dict, folder: Path, tag: str) -> str:
    """An index of the project's repository, tagged TAG, whose images differ from the
    module's (one small file each): its digest."""
    return push_index(
        tools,
        env,
        folder,
        f"{env['IMAGE_REPOSITORY']}:{tag}",
        {p: layer({"hello.txt": (f"{p}, {tag}\n".encode(), 0o644)}) for p in PLATFORMS},
    )


def alpine_like(arch: str) -> bytes:
    """A layer with an Alpine release file and an apk database listing one package."""
    apk_arch = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    installed = (
        f"P:{PROBE.format(arch=arch)}\nV:1.0.0-r0\nA:{apk_arch}\nL:MIT\n"
        "T:a package for the SBOM test\no:sbom-probe\n\n"
    )
    os_release = 'ID=alpine\nNAME="Alpine Linux"\nVERSION_ID=3.24.2\n'
    return layer(
        {
            "etc/os-release": (os_release.encode(), 0o644),
            "lib/apk/db/installed": (installed.encode(), 0o644),
        }
    )


@pytest.fixture(scope="module")
def job(tools: dict, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The project's index of two Alpine-like single-platform images and the stand-in syft
    image, both in the test registry; the variables the SBOM job gets."""
    workdir = tmp_path_factory.mktemp("sbom")
    env = job_env(registry, workdir, CI_REGISTRY_IMAGE=f"{registry.host}/{REPO}")
    login(tools, env, registry)
    syft = (cluster_tools.BIN / "syft").resolve().read_bytes()
    syft_tag = f"{registry.host}/{SYFT_STANDIN}"
    syft_digest = push_index(
        tools, env, workdir, syft_tag, {"linux/amd64": layer({"syft": (syft, 0o755)})}
    )
    digest = push_index(
        tools,
        env,
        workdir,
        f"{env['CI_REGISTRY_IMAGE']}:{SHA}",
        {p: alpine_like(p.split("/")[1]) for p in PLATFORMS},
    )
    return {
        "workdir": workdir,
        "env": {
            **env,
            "IMAGE_REPOSITORY": env["CI_REGISTRY_IMAGE"],
            "IMAGE_DIGEST": digest,
            "SYFT_IMAGE": f"{syft_tag}@{syft_digest}",
        },
    }


@pytest.fixture(scope="module")
def sboms(job: dict) -> dict:
    """sbom.sh as docker_builder:sbom:job runs it: each platform's SBOM (the artifacts, which
    like the log hold no password), parsed."""
    done = run_script("sbom.sh", job["workdir"], job["env"])
    assert done.returncode == 0, done.stderr
    assert job["env"]["CI_REGISTRY_PASSWORD"] not in done.stdout + done.stderr
    folder = job["workdir"] / "build" / "sbom"
    texts = {path.name: path.read_text() for path in folder.iterdir()}
    assert not [name for name, text in texts.items() if job["env"]["CI_REGISTRY_PASSWORD"] in text]
    return {name: json.loads(text) for name, text in texts.items()}


def test_one_cyclonedx_sbom_per_platform_of_the_index(job: dict, sboms: dict) -> None:
    """syft, copied out of the syft image, writes a CycloneDX document for each platform's
    image of the index: it names that image and lists that image's own apk package."""
    env = job["env"]
    assert set(sboms) == {"amd64.cdx.json", "arm64.cdx.json"}
    for platform in PLATFORMS:
        arch = platform.split("/")[1]
        sbom = sboms[f"{arch}.cdx.json"]
        assert sbom["bomFormat"] == "CycloneDX"
        assert sbom["specVersion"] == "1.6"
        [tool] = sbom["metadata"]["tools"]["components"]
        assert (tool["name"], tool["version"]) == ("syft", cluster_tools.TOOLS["syft"].pinned())
        # The subject is the index by its digest (what deploys, and what the attestation
        # names); the packages are this platform's image's own.
        subject = sbom["metadata"]["component"]
        assert (subject["type"], subject["name"], subject["version"]) == (
            "container",
            env["IMAGE_REPOSITORY"],
            env["IMAGE_DIGEST"],
        )
        # ...and it names the platform whose image it lists, for the verify job.
        assert subject["properties"] == [{"name": "oci:platform", "value": platform}]
        packages = {c["name"]: c["version"] for c in sbom["components"] if c["type"] == "library"}
        assert packages == {PROBE.format(arch=arch): "1.0.0-r0"}


def cosign_env(job: dict, keys: Keys, **extra: str) -> dict:
    """The sign and verify jobs' variables with signing key and the sbom input (no
    transparency log: offline)."""
    return {
        **job["env"],
        "PIPELINE_SIGNING": "key",
        "PIPELINE_SIGNING_TLOG": "false",
        "PIPELINE_SBOM": "true",
        "COSIGN_PRIVATE_KEY": str(keys.private),
        "COSIGN_PASSWORD": KEY_PASSWORD,
        "COSIGN_PUBLIC_KEY": str(keys.public),
        **extra,
    }


@pytest.fixture(scope="module")
def attested(job: dict, keys: dict, sboms: dict) -> dict:
    """cosign.sh sign, where sbom.sh left its SBOMs: signs the index, attests the SBOMs; its
    output, and the SBOMs."""
    done = run_script("cosign.sh", job["workdir"], cosign_env(job, keys["project"]), "sign")
    assert done.returncode == 0, done.stderr
    return {"output": done.stdout + done.stderr, "sboms": sboms}


def attestations(tools: dict, env: dict, keys: Keys, reference: str) -> list[dict]:
    """The in-toto statements of REFERENCE's CycloneDX attestations that KEYS verify."""
    done = subprocess.run(
        [
            str(tools["cosign"]),
            "verify-attestation",
            "--type",
            "cyclonedx",
            "--key",
            str(keys.public),
            "--insecure-ignore-tlog=true",
            reference,
        ],
        env=trusting(env),
        check=True,
        capture_output=True,
        text=True,
    )
    envelopes = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [json.loads(base64.b64decode(envelope["payload"])) for envelope in envelopes]


def test_the_attested_sboms_verify_before_the_deploy(
    tools: dict, job: dict, keys: dict, attested: dict, tmp_path: Path
) -> None:
    """The verify job accepts the index: signed, and the SBOMs attested, by the project's
    key; the attestations are the job's SBOM files, for the index's digest."""
    env = job["env"]
    assert KEY_PASSWORD not in attested["output"]
    assert env["CI_REGISTRY_PASSWORD"] not in attested["output"]
    done = run_script("cosign.sh", tmp_path, cosign_env(job, keys["project"]), "verify")
    assert done.returncode == 0, done.stderr
    assert (
        f"IMAGE_DIGEST={env['IMAGE_DIGEST']}" in (tmp_path / "build" / "verified.env").read_text()
    )
    reference = f"{env['IMAGE_REPOSITORY']}@{env['IMAGE_DIGEST']}"
    statements = attestations(tools, env, keys["project"], reference)
    assert {s["predicateType"] for s in statements} == {CYCLONEDX_PREDICATE}
    assert {s["subject"][0]["digest"]["sha256"] for s in statements} == {
        env["IMAGE_DIGEST"].removeprefix("sha256:")
    }
    assert sorted(json.dumps(s["predicate"], sort_keys=True) for s in statements) == sorted(
        json.dumps(sbom, sort_keys=True) for sbom in attested["sboms"].values()
    )


@pytest.mark.usefixtures("attested")
def test_what_lacks_the_project_s_attestation_is_refused_in_one_line(
    tools: dict, job: dict, keys: dict, tmp_path: Path
) -> None:
    """An index of the project signed by its key but with no SBOM attested, the project's
    tag moved to that index, and that index attested by someone else's key: each stops the
    verify job in one line naming the digest and the project's key, and hands nothing on."""
    env, project = job["env"], keys["project"]
    repository = env["IMAGE_REPOSITORY"]
    workdir = tmp_path / "unattested"
    workdir.mkdir()
    digest = another_index(tools, env, workdir, "unattested")
    signed = run_script(
        "cosign.sh",
        workdir,
        cosign_env(job, project, IMAGE_DIGEST=digest, PIPELINE_SBOM="false"),
        "sign",
    )
    assert signed.returncode == 0, signed.stderr
    refusal = (
        f"ERROR: image {repository}@{digest} has no valid CycloneDX SBOM attestation by the key"
        f" {project.public}: "
    )

    def refused(case: str, **extra: str) -> None:
        folder = tmp_path / case
        folder.mkdir()
        done = run_script("cosign.sh", folder, cosign_env(job, project, **extra), "verify")
        assert one_error_line(done).startswith(refusal), case
        assert not (folder / "build" / "verified.env").exists(), case

    refused("unattested digest", IMAGE_DIGEST=digest)
    crane(tools, env, "tag", f"{repository}@{digest}", "tampered")
    refused("tampered tag", IMAGE_DIGEST="", IMAGE_REPOSITORY="", IMAGE_TAG="tampered")
    shutil.copytree(job["workdir"] / "build" / "sbom", workdir / "build" / "sbom")
    other = run_script(
        "cosign.sh", workdir, cosign_env(job, keys["other"], IMAGE_DIGEST=digest), "sign"
    )
    assert other.returncode == 0, other.stderr
    refused("another key's attestation", IMAGE_DIGEST=digest)


@pytest.mark.usefixtures("attested")
def test_a_platform_without_its_attested_sbom_is_refused_in_one_line(
    tools: dict, job: dict, keys: dict, tmp_path: Path
) -> None:
    """An index of two platforms, signed by the project's key, with only one platform's SBOM
    attested: the verify job stops in one line naming the digest and the platform that lacks
    one, and hands nothing on."""
    env, project = job["env"], keys["project"]
    repository = env["IMAGE_REPOSITORY"]
    digest = another_index(tools, env, tmp_path, "half-attested")
    half = {**env, "IMAGE_DIGEST": digest}
    written = run_script("sbom.sh", tmp_path, half)
    assert written.returncode == 0, written.stderr
    (tmp_path / "build" / "sbom" / "arm64.cdx.json").unlink()
    signed = run_script(
        "cosign.sh", tmp_path, cosign_env(job, project, IMAGE_DIGEST=digest), "sign"
    )
    assert signed.returncode == 0, signed.stderr
    verify = tmp_path / "verify"
    verify.mkdir()
    done = run_script("cosign.sh", verify, cosign_env(job, project, IMAGE_DIGEST=digest), "verify")
    assert one_error_line(done) == (
        f"ERROR: image {repository}@{digest} has no CycloneDX SBOM attestation by the key"
        f" {project.public} for its platform linux/arm64: docker_builder:sign:job attests one"
        " for each platform of the index (build/sbom/<arch>.cdx.json from"
        " docker_builder:sbom:job)"
    )
    assert not (verify / "build" / "verified.env").exists()


def test_the_sbom_job_without_the_registry_s_ca_stops_in_one_line(
    job: dict, tmp_path: Path
) -> None:
    """Without the registry's CA the job fails on TLS verification, and its one line names
    the variable that gives the CA."""
    done = run_script("sbom.sh", tmp_path, {**job["env"], "PIPELINE_CA_FILE": ""})
    assert one_error_line(done) == (
        "ERROR: x509: certificate signed by unknown authority at the registry of"
        f" {job['env']['SYFT_IMAGE']}: set the CI/CD variable PIPELINE_CA_FILE (type File) to"
        " the PEM bundle of the CAs of GitLab, its registry and KAS, or give the runner"
        " tls-ca-file (it hands jobs CI_SERVER_TLS_CA_FILE)"
    )
    assert not (tmp_path / "build" / "sbom").exists()


def test_insecure_registry_turns_verification_off_for_crane_and_syft(
    job: dict, sboms: dict, tmp_path: Path
) -> None:
    """The insecure_registry opt-out reaches both programs: without the CA, the job writes
    the same SBOMs (but for their serial numbers and times), and says verification is off.
    (A variable asking syft for indented JSON changes nothing either.)"""
    env = {
        **job["env"],
        "PIPELINE_CA_FILE": "",
        "INSECURE_REGISTRY": "true",
        "SYFT_FORMAT_PRETTY": "true",
        "SYFT_FORMAT_CYCLONEDX_JSON_PRETTY": "true",
    }
    done = run_script("sbom.sh", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "WARNING: TLS verification is off for the registries" in done.stderr
    for name, sbom in sboms.items():
        again = json.loads((tmp_path / "build" / "sbom" / name).read_text())
        assert again["components"] == sbom["components"]
        assert again["metadata"]["component"] == sbom["metadata"]["component"]
