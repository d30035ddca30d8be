"""A real registry (the CNCF distribution registry, Debian's docker-registry) on loopback.

TLS from a throwaway CA, htpasswd (bcrypt) authentication; started and stopped by the tests.
"""

import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hack import cluster_tools
from hack.cluster import free_port
from hack.pki import Pki

SCRIPTS = Path(__file__).resolve().parents[2] / "ci" / "scripts"
USER = "gitlab-ci-token"
PASSWORD = "registry-test-password-7f3a"  # noqa: S105  (a throwaway test credential)
# The image jobs' commit and project, and the password of the test's cosign keys.
SHA = "89abcdef0123456789abcdef0123456789abcdef"
REPO = "group/signed-example"
KEY_PASSWORD = "cosign-key-password-e41d07"  # noqa: S105  (a throwaway test key's password)
PLATFORMS = ("linux/amd64", "linux/arm64")
# The predicate type `cosign attest --type cyclonedx` writes (the README's admission policy
# asks for it).
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"


@dataclass(frozen=True)
class Registry:
    """A running registry: where it listens and the CA that signed its certificate."""

    host: str
    ca: Path
    user: str
    password: str


@dataclass(frozen=True)
class Keys:
    """A cosign key pair made by cosign itself: the private key (encrypted) and the public one."""

    private: Path
    public: Path


def key_pair(cosign: Path, folder: Path, password: str) -> Keys:
    """`cosign generate-key-pair` in FOLDER, the private key encrypted with PASSWORD (which
    cosign reads from COSIGN_PASSWORD)."""
    folder.mkdir(parents=True)
    subprocess.run(
        [str(cosign), "generate-key-pair"],
        cwd=folder,
        env={**os.environ, "COSIGN_PASSWORD": password},
        check=True,
        capture_output=True,
    )
    return Keys(folder / "cosign.key", folder / "cosign.pub")


def answers(url: str, context: ssl.SSLContext) -> bool:
    """Whether the registry answers /v2/ over verified TLS (401 without credentials)."""
    try:
        urllib.request.urlopen(url, context=context, timeout=2)  # noqa: S310
    except urllib.error.HTTPError as error:
        return error.code == 401
    except OSError:
        return False
    return False


@contextmanager
def running_registry(folder: Path, pki: Pki | None = None) -> Iterator[Registry]:
    """Start docker-registry on a free loopback port in folder, its certificate signed by PKI
    (a throwaway CA of its own by default); stop it on exit."""
    binary = shutil.which("docker-registry")
    htpasswd = shutil.which("htpasswd")
    assert binary and htpasswd, "docker-registry or htpasswd is missing: run `make tools`"
    pki = pki or Pki(folder / "pki")
    port = free_port()
    crt, key = pki.issue("registry", "registry", sans=("127.0.0.1", "localhost"))
    # bcrypt, the only scheme the registry accepts; the password goes through stdin
    hashed = subprocess.run(
        [htpasswd, "-inB", USER], input=PASSWORD, capture_output=True, text=True, check=True
    ).stdout
    (folder / "htpasswd").write_text(hashed, encoding="utf-8")
    (folder / "config.yml").write_text(
        f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {folder / "data"}
http:
  addr: 127.0.0.1:{port}
  tls:
    certificate: {crt}
    key: {key}
auth:
  htpasswd:
    realm: test-registry
    path: {folder / "htpasswd"}
""",
        encoding="utf-8",
    )
    with (folder / "registry.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(folder / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    context = ssl.create_default_context(cafile=str(pki.folder / "ca.crt"))
    try:
        deadline = time.monotonic() + 30
        while not answers(f"https://127.0.0.1:{port}/v2/", context):
            assert proc.poll() is None, (folder / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer in 30 s"
            time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", pki.folder / "ca.crt", USER, PASSWORD)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_script(script: str, workdir: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run ci/scripts/SCRIPT as its job does: by sh, in WORKDIR (the job's checkout), with
    ENV alone (what GitLab gives the job; nothing of the test's own environment)."""
    return subprocess.run(
        ["sh", str(SCRIPTS / script), *args],
        cwd=workdir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )


def job_env(registry: Registry, workdir: Path, **extra: str) -> dict:
    """What GitLab gives the image jobs; the test registry's CA reaches the scripts the way a
    private CA does, in PIPELINE_CA_FILE (their trust_ca adds it to the system's CAs)."""
    return {
        "PATH": f"{cluster_tools.BIN}:{os.environ['PATH']}",
        "HOME": str(workdir),
        "DOCKER_CONFIG": str(workdir / "docker"),
        "PIPELINE_CA_FILE": str(registry.ca),
        "CI_REGISTRY": registry.host,
        "CI_REGISTRY_IMAGE": f"{registry.host}/{REPO}",
        "CI_REGISTRY_USER": registry.user,
        "CI_REGISTRY_PASSWORD": registry.password,
        "CI_COMMIT_SHA": SHA,
        "NS": "dev",
        "RELEASE_NAME": "signed-example-main",
        "CHANNEL": "main",
        "IMAGE_TAG": "main",
        "HOST": "signed-example.example.com",
        **extra,
    }


def trusting(env: dict) -> dict:
    """ENV for the test's own calls of crane and cosign: the registry's CA in SSL_CERT_FILE."""
    return {**env, "SSL_CERT_FILE": env.get("PIPELINE_CA_FILE") or env["CI_SERVER_TLS_CA_FILE"]}


def crane(tools: dict, env: dict, *args: str) -> str:
    """The real crane, logged in through the job's DOCKER_CONFIG; its stdout."""
    return subprocess.run(
        [str(tools["crane"]), *args], env=trusting(env), check=True, capture_output=True, text=True
    ).stdout


def login(tools: dict, env: dict, registry: Registry) -> None:
    """crane's own login into the job's DOCKER_CONFIG, as the push job does."""
    subprocess.run(
        [
            str(tools["crane"]),
            "auth",
            "login",
            registry.host,
            "-u",
            registry.user,
            "--password-stdin",
        ],
        input=registry.password,
        env=trusting(env),
        check=True,
        capture_output=True,
        text=True,
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The job failed with exactly one ERROR line; that line."""
    assert done.returncode != 0
    [line] = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    return line
