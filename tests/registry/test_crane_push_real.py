"""ci/scripts/crane-push.sh, unmodified, with the pinned real crane against a real registry."""

import base64
import os
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from hack import cluster_tools
from hack.pki import Pki
from tests.registry.registrylib import Registry, run_script

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "group/flask-example-1"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@pytest.fixture(scope="module")
def crane() -> Path:
    """The crane of the pipeline's crane image version (built or reused once)."""
    return cluster_tools.ensure(["crane"])["crane"]


@pytest.fixture
def image_tar(crane: Path, tmp_path: Path) -> Path:
    """A real image tarball where docker_builder:build:job leaves amd64's, made by crane
    itself (one layer with one file)."""
    (tmp_path / "hello.txt").write_text("hello from a crane-made layer\n", encoding="utf-8")
    subprocess.run(["tar", "-cf", "layer.tar", "hello.txt"], cwd=tmp_path, check=True)
    (tmp_path / "build" / "images").mkdir(parents=True)
    subprocess.run(
        [
            str(crane),
            "append",
            "-f",
            "layer.tar",
            "-t",
            "image:built",
            "-o",
            "build/images/amd64.tar",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    return tmp_path / "build" / "images" / "amd64.tar"


def push(
    registry: Registry,
    workdir: Path,
    password: str,
    *,
    ca: str = "PIPELINE_CA_FILE",
    ca_path: Path | None = None,
):
    """Run crane-push.sh as the pipeline job does, with the pipeline's variables; a CA reaches
    it only through the variable CA names (none when empty): the registry's, or CA_PATH."""
    env = {
        "PATH": f"{cluster_tools.BIN}:{os.environ['PATH']}",
        "HOME": str(workdir),
        "DOCKER_CONFIG": str(workdir / "docker"),
        "CI_REGISTRY": registry.host,
        "CI_REGISTRY_IMAGE": f"{registry.host}/{REPO}",
        "CI_REGISTRY_USER": registry.user,
        "CI_REGISTRY_PASSWORD": password,
        "CI_COMMIT_SHA": SHA,
        "NS": "dev",
        "RELEASE_NAME": "flask-example-1-main",
        "CHANNEL": "dev",
        "IMAGE_TAG": "main",
        "HOST": "flask-example-1.example.com",
    }
    if ca:
        env[ca] = str(ca_path or registry.ca)
    return run_script("crane-push.sh", workdir, env)


def served_digest(registry: Registry, reference: str) -> str:
    """The digest the registry itself reports for a tag (HEAD of the manifest), not crane's."""
    request = urllib.request.Request(
        f"https://{registry.host}/v2/{REPO}/manifests/{reference}",
        method="HEAD",
        headers={
            "Accept": MANIFEST_TYPES,
            "Authorization": "Basic "
            + base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode(),
        },
    )
    context = ssl.create_default_context(cafile=str(registry.ca))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
        return response.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("ca", ["PIPELINE_CA_FILE", "CI_SERVER_TLS_CA_FILE"])
def test_crane_push_exports_the_digest_the_registry_serves_for_both_tags(
    registry: Registry, image_tar: Path, crane: Path, ca: str
) -> None:
    """Push the image, then its index under the commit SHA, tag the index's digest as
    IMAGE_TAG, hand that digest on (dotenv); the registry's private CA comes from the
    pipeline's variable or, by default, the runner's."""
    done = push(registry, image_tar.parents[2], registry.password, ca=ca)
    assert done.returncode == 0, done.stderr
    env = dict(
        line.split("=", 1)
        for line in (image_tar.parents[2] / "build" / "image.env").read_text().splitlines()
    )
    assert env["IMAGE_REPOSITORY"] == f"{registry.host}/{REPO}"
    digest = env["IMAGE_DIGEST"]
    assert served_digest(registry, SHA) == digest
    assert served_digest(registry, "main") == digest
    # ...the digest of the image index; the tarball's image is in it, pushed as <SHA>-amd64.
    local = subprocess.run(
        [str(crane), "digest", "--tarball", str(image_tar)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert local.stdout.strip() != digest
    assert served_digest(registry, f"{SHA}-amd64") == local.stdout.strip()
    assert registry.password not in done.stdout + done.stderr


def test_crane_push_with_a_wrong_password_fails_with_the_registry_s_refusal(
    registry: Registry, image_tar: Path
) -> None:
    """A bad credential stops the job before any digest is handed on; the password stays hidden."""
    wrong = "not-the-password-b9c1"
    done = push(registry, image_tar.parents[2], wrong)
    assert done.returncode != 0
    assert "401 Unauthorized" in done.stderr
    assert not (image_tar.parents[2] / "build" / "image.env").exists()
    assert wrong not in done.stdout + done.stderr


def test_crane_push_verifies_the_registry_certificate(registry: Registry, image_tar: Path) -> None:
    """Without the CA the push fails on TLS verification: nothing is sent to an unknown server,
    and the job's last line names the variable to set."""
    done = push(registry, image_tar.parents[2], registry.password, ca="")
    assert done.returncode != 0
    assert done.stderr.splitlines()[-1] == (
        f"ERROR: x509: certificate signed by unknown authority at the registry {registry.host}:"
        " set the CI/CD variable PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of"
        " GitLab, its registry and KAS, or give the runner tls-ca-file (it hands jobs"
        " CI_SERVER_TLS_CA_FILE)"
    )
    assert not (image_tar.parents[2] / "build" / "image.env").exists()


def test_crane_push_names_a_bundle_without_the_registry_s_ca(
    registry: Registry, image_tar: Path, tmp_path: Path
) -> None:
    """A bundle that lacks the registry's CA (here: another CA's) is named in the line."""
    other = Pki(tmp_path / "other").folder / "ca.crt"
    done = push(
        registry, image_tar.parents[2], registry.password, ca="CI_SERVER_TLS_CA_FILE", ca_path=other
    )
    assert done.returncode != 0
    assert done.stderr.splitlines()[-1] == (
        f"ERROR: x509: certificate signed by unknown authority at the registry {registry.host}:"
        f" the bundle in CI_SERVER_TLS_CA_FILE ({other}) lacks the CA that signed it: set the"
        " CI/CD variable PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of GitLab,"
        " its registry and KAS"
    )
