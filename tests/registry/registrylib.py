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

from hack.cluster import free_port
from hack.pki import Pki

SCRIPTS = Path(__file__).resolve().parents[2] / "ci" / "scripts"
USER = "gitlab-ci-token"
PASSWORD = "registry-test-password-7f3a"  # noqa: S105  (a throwaway test credential)


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
