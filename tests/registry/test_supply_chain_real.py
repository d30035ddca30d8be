"""The multi-arch push and the signature check, unmodified scripts with the pinned real crane
and cosign against the real TLS + htpasswd registry: crane-push.sh assembles one image index
of two single-platform images; cosign.sh signs its digest with a key and verifies it, and
refuses, with one line naming the digest and the key, anything else."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from hack import cluster_tools
from tests.registry.registrylib import (
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
from tests.support.gitlab_api import GitLab, GitLabStandIn

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "helm4" / "helm"


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    """The pinned crane and cosign (built or reused once)."""
    return cluster_tools.ensure(["crane", "cosign"])


@pytest.fixture(scope="module")
def keys(tools: dict, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """The project's signing key pair."""
    return key_pair(tools["cosign"], tmp_path_factory.mktemp("keys") / "project", KEY_PASSWORD)


@pytest.fixture(scope="module")
def other_keys(tools: dict, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Someone else's key pair."""
    return key_pair(tools["cosign"], tmp_path_factory.mktemp("keys") / "other", KEY_PASSWORD)


def single_platform_image(
    tools: dict, env: dict, folder: Path, platform: str, *, text: str = ""
) -> None:
    """A one-layer image for PLATFORM, as kaniko writes it for that platform: crane appends a
    layer (TEXT, else the platform's name), sets the platform in the image's config and writes
    the tarball to FOLDER/build/images/<arch>.tar."""
    arch = platform.split("/")[1]
    (folder / "hello.txt").write_text(text or f"{platform}\n", encoding="utf-8")
    subprocess.run(["tar", "-cf", "layer.tar", "hello.txt"], cwd=folder, check=True)
    target = folder / "build" / "images" / f"{arch}.tar"
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = f"{env['CI_REGISTRY_IMAGE']}/scratch:{arch}"
    crane(tools, env, "append", "-f", str(folder / "layer.tar"), "-t", scratch)
    crane(tools, env, "mutate", scratch, "--set-platform", platform, "-o", str(target))


@pytest.fixture(scope="module")
def pushed(tools: dict, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """crane-push.sh on two single-platform tarballs; the dotenv it hands to deploy."""
    workdir = tmp_path_factory.mktemp("push")
    env = job_env(registry, workdir)
    login(tools, env, registry)
    for platform in PLATFORMS:
        single_platform_image(tools, env, workdir, platform)
    done = run_script("crane-push.sh", workdir, env)
    assert done.returncode == 0, done.stderr
    assert registry.password not in done.stdout + done.stderr
    dotenv = (workdir / "build" / "image.env").read_text().splitlines()
    return {"env": env, "workdir": workdir, **dict(line.split("=", 1) for line in dotenv)}


def test_push_assembles_one_index_of_both_platforms(tools: dict, pushed: dict) -> None:
    """IMAGE_DIGEST is the index's digest, which the commit tag and IMAGE_TAG name; the index
    lists each platform's image, each pushed under <commit>-<arch>."""
    env, digest = pushed["env"], pushed["IMAGE_DIGEST"]
    image = env["CI_REGISTRY_IMAGE"]
    assert crane(tools, env, "digest", f"{image}:{SHA}").strip() == digest
    assert crane(tools, env, "digest", f"{image}:main").strip() == digest
    index = json.loads(crane(tools, env, "manifest", f"{image}@{digest}"))
    assert index["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    assert set(platforms) == set(PLATFORMS)
    for platform, manifest in platforms.items():
        arch = platform.split("/")[1]
        assert crane(tools, env, "digest", f"{image}:{SHA}-{arch}").strip() == manifest


def signing_env(pushed: dict, keys: Keys, **extra: str) -> dict:
    """The sign and verify jobs' variables with signing key (no transparency log: offline)."""
    return {
        **pushed["env"],
        "PIPELINE_SIGNING": "key",
        "PIPELINE_SIGNING_TLOG": "false",
        "COSIGN_PRIVATE_KEY": str(keys.private),
        "COSIGN_PASSWORD": KEY_PASSWORD,
        "COSIGN_PUBLIC_KEY": str(keys.public),
        "IMAGE_REPOSITORY": pushed["IMAGE_REPOSITORY"],
        "IMAGE_DIGEST": pushed["IMAGE_DIGEST"],
        **extra,
    }


@pytest.fixture(scope="module")
def signed(pushed: dict, keys: Keys) -> dict:
    """cosign.sh sign on the pushed index: the job's output."""
    done = run_script("cosign.sh", pushed["workdir"], signing_env(pushed, keys), "sign")
    assert done.returncode == 0, done.stderr
    return {"output": done.stdout + done.stderr}


def verify(pushed: dict, keys: Keys, workdir: Path, **extra: str) -> subprocess.CompletedProcess:
    """cosign.sh verify in WORKDIR with the project's public key."""
    workdir.mkdir(exist_ok=True)
    return run_script("cosign.sh", workdir, signing_env(pushed, keys, **extra), "verify")


def test_the_signed_index_verifies_and_its_digest_is_handed_to_deploy(
    pushed: dict, keys: Keys, signed: dict, tmp_path: Path
) -> None:
    """The index digest verifies with the project's key; the dotenv names that digest."""
    assert KEY_PASSWORD not in signed["output"]
    assert pushed["env"]["CI_REGISTRY_PASSWORD"] not in signed["output"]
    done = verify(pushed, keys, tmp_path)
    assert done.returncode == 0, done.stderr
    verified = dict(
        line.split("=", 1) for line in (tmp_path / "build" / "verified.env").read_text().split()
    )
    assert verified == {
        "IMAGE_REPOSITORY": pushed["IMAGE_REPOSITORY"],
        "IMAGE_DIGEST": pushed["IMAGE_DIGEST"],
        "VERIFIED_IMAGE_DIGEST": pushed["IMAGE_DIGEST"],
    }


def test_an_unsigned_digest_is_refused_in_one_line(
    tools: dict, pushed: dict, keys: Keys, signed: dict, tmp_path: Path
) -> None:
    """The amd64 image inside the signed index carries no signature of its own."""
    env = pushed["env"]
    amd64 = crane(tools, env, "digest", f"{env['CI_REGISTRY_IMAGE']}:{SHA}-amd64").strip()
    done = verify(pushed, keys, tmp_path, IMAGE_DIGEST=amd64)
    line = one_error_line(done)
    assert f"{pushed['IMAGE_REPOSITORY']}@{amd64} has no valid signature" in line
    assert f"the key {keys.public}" in line
    assert not (tmp_path / "build" / "verified.env").exists()


def test_a_digest_signed_by_another_key_is_refused_in_one_line(
    tools: dict, pushed: dict, keys: Keys, other_keys: Keys, tmp_path: Path
) -> None:
    """An image signed with someone else's key does not verify with the project's key."""
    env = pushed["env"]
    workdir = tmp_path / "other"
    workdir.mkdir()
    single_platform_image(tools, env, workdir, "linux/amd64", text="someone else's\n")
    other_env = {**env, "CI_COMMIT_SHA": "f" * 40, "IMAGE_TAG": "other"}
    done = run_script("crane-push.sh", workdir, other_env)
    assert done.returncode == 0, done.stderr
    digest = dict(
        line.split("=", 1) for line in (workdir / "build" / "image.env").read_text().split()
    )["IMAGE_DIGEST"]
    signed = run_script(
        "cosign.sh", workdir, signing_env(pushed, other_keys, IMAGE_DIGEST=digest), "sign"
    )
    assert signed.returncode == 0, signed.stderr
    line = one_error_line(verify(pushed, keys, tmp_path / "verify", IMAGE_DIGEST=digest))
    assert f"@{digest} has no valid signature by the key {keys.public}" in line


def test_a_tag_moved_to_another_image_is_refused_in_one_line(
    tools: dict, pushed: dict, keys: Keys, signed: dict, tmp_path: Path
) -> None:
    """With the image part off the verify job checks what IMAGE_TAG names now: a tag moved
    to an unsigned image fails, naming that image's digest, and nothing is handed on."""
    env = pushed["env"]
    image = env["CI_REGISTRY_IMAGE"]
    arm64 = crane(tools, env, "digest", f"{image}:{SHA}-arm64").strip()
    crane(tools, env, "tag", f"{image}@{arm64}", "tampered")
    done = verify(
        pushed, keys, tmp_path, IMAGE_DIGEST="", IMAGE_REPOSITORY="", IMAGE_TAG="tampered"
    )
    line = one_error_line(done)
    assert f"{image}@{arm64} has no valid signature by the key {keys.public}" in line
    assert not (tmp_path / "build" / "verified.env").exists()
    # ...and the tag of the signed index verifies the same way.
    done = verify(pushed, keys, tmp_path, IMAGE_DIGEST="", IMAGE_REPOSITORY="", IMAGE_TAG="main")
    assert done.returncode == 0, done.stderr


def test_the_oci_chart_is_pushed_and_signed_like_the_image(
    tools: dict, registry: Registry, keys: Keys, tmp_path: Path
) -> None:
    """chart_oci: helm-push.sh uploads to the Helm channel (GitLab API stand-in) and pushes
    the chart to <registry image>/charts with the real helm; cosign.sh signs its digest, which
    verifies with the project's key."""
    job_token = "glcbt-standin-job-token-5d1f0a"  # noqa: S105
    subprocess.run(
        [str(HELM), "package", str(ROOT / "chart"), "--version", "1.2.3-oci", "-d", "build/chart"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    chart_name = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())["name"]
    env = job_env(
        registry,
        tmp_path,
        PATH=f"{HELM.parent}:{cluster_tools.BIN}:{os.environ['PATH']}",
        PIPELINE_CHART_OCI="true",
        PIPELINE_CA_FILE="",
        CI_SERVER_TLS_CA_FILE=str(registry.ca),  # the registry's CA, as the runner hands it
        CI_PROJECT_ID="42",
        CI_JOB_TOKEN=job_token,
        CHART_NAME=chart_name,
        CHART_VERSION="1.2.3-oci",
    )
    gitlab_state = GitLab(job_token=job_token, api_token="unused-here")  # noqa: S106
    with GitLabStandIn(gitlab_state) as gitlab:
        env["CI_API_V4_URL"] = gitlab.url
        done = run_script("helm-push.sh", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert registry.password not in done.stdout + done.stderr
    pushed = dict(
        line.split("=", 1) for line in (tmp_path / "build" / "chart-pushed.env").read_text().split()
    )
    repository = f"{env['CI_REGISTRY_IMAGE']}/charts/{chart_name}"
    assert pushed["CHART_OCI_REPOSITORY"] == repository
    assert [r.path for r in gitlab_state.requests] == [
        "/api/v4/projects/42/packages/helm/api/main/charts"
    ]
    login(tools, env, registry)
    assert (
        crane(tools, env, "digest", f"{repository}:1.2.3-oci").strip() == pushed["CHART_OCI_DIGEST"]
    )

    sign_env = {
        **env,
        "PIPELINE_SIGNING": "key",
        "PIPELINE_SIGNING_TLOG": "false",
        "COSIGN_PRIVATE_KEY": str(keys.private),
        "COSIGN_PASSWORD": KEY_PASSWORD,
        "CHART_OCI_REPOSITORY": repository,
        "CHART_OCI_DIGEST": pushed["CHART_OCI_DIGEST"],
    }
    done = run_script("cosign.sh", tmp_path, sign_env, "sign")
    assert done.returncode == 0, done.stderr
    verified = subprocess.run(
        [
            str(tools["cosign"]),
            "verify",
            "--key",
            str(keys.public),
            "--insecure-ignore-tlog=true",
            f"{repository}@{pushed['CHART_OCI_DIGEST']}",
        ],
        env=trusting(env),
        check=False,
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr


def test_cosign_without_the_registry_s_ca_stops_in_one_line(
    pushed: dict, keys: Keys, tmp_path: Path
) -> None:
    """Without the registry's CA, signing fails on TLS verification, and the job's one line
    names the variable that gives the CA. (Verifying follows the same rule, but against this
    registry on 127.0.0.1 cosign verify reports only its plain-HTTP retry, which go-
    containerregistry makes for loopback registries alone.)"""
    env = signing_env(pushed, keys, PIPELINE_CA_FILE="")
    done = run_script("cosign.sh", tmp_path, env, "sign")
    assert one_error_line(done) == (
        "ERROR: x509: certificate signed by unknown authority at the registry"
        f" {env['CI_REGISTRY']}: set the CI/CD variable PIPELINE_CA_FILE (type File) to the PEM"
        " bundle of the CAs of GitLab, its registry and KAS, or give the runner tls-ca-file (it"
        " hands jobs CI_SERVER_TLS_CA_FILE)"
    )
