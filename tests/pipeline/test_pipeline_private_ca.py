"""GitLab, its registry and KAS behind a private CA, with TLS verification on: the one
variable that names the CA bundle (PIPELINE_CA_FILE, default the runner's
CI_SERVER_TLS_CA_FILE), lib.sh's trust and its one-line x509 message, the kaniko stand-in's
push check, and the image jobs under gitlab-ci-local against a real registry served with a
certificate of a CA the jobs know only through that variable. (The cluster jobs, through
GitLab's kubeconfig: test_pipeline_cluster_simulated.py.)"""

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack import cluster_tools
from hack.pki import Pki
from tests.pipeline.conftest import PROJECT, ROOT, Scratch, build_scratch
from tests.pipeline.pipelinelib import (
    LIB,
    SHELLS,
    component_documents,
    real_registry_variables,
    shell_command,
    x509_line,
)
from tests.registry.registrylib import Registry, running_registry

STANDIN = ROOT / "tests" / "support" / "tool_standin.py"
BUILD, PUSH = "docker_builder:build:job", "docker_builder:push:job"
# The build's parallel:matrix jobs (build_arm64 on), as gitlab-ci-local names them.
BUILDS = [f"{BUILD}: [linux/amd64,docker-builder]", f"{BUILD}: [linux/arm64,docker-builder-arm64]"]


def sh(shell: str, script: str, env: dict) -> subprocess.CompletedProcess:
    """SCRIPT with lib.sh sourced under `set -eu`, as the job scripts run."""
    return subprocess.run(
        [*shell_command(shell), "-c", f'set -eu; . "{LIB}"; {script}'],
        env={"PATH": os.environ["PATH"], **env},
        check=False,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The private CA of this module's registry."""
    return Pki(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="module")
def bundle(private_ca: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA bundle as an operator writes it: another CA first, then the registry's."""
    other = Pki(tmp_path_factory.mktemp("other-ca"))
    path = tmp_path_factory.mktemp("bundle") / "ca-bundle.pem"
    path.write_bytes(other.cert_pem() + private_ca.cert_pem())
    return path


@pytest.mark.parametrize("shell", SHELLS)
def test_trust_ca_trusts_the_system_cas_plus_the_bundle(
    shell: str, bundle: Path, tmp_path: Path
) -> None:
    """SSL_CERT_FILE becomes the system's CAs followed by the bundle; PIPELINE_CA_FILE wins over
    the runner's CI_SERVER_TLS_CA_FILE; curl gets that file too."""
    runner = tmp_path / "runner-ca.pem"
    runner.write_bytes(Pki(tmp_path / "runner").cert_pem())
    script = 'trust_ca; cat "$SSL_CERT_FILE"; tls_flags curl'
    env = {"PIPELINE_CA_FILE": str(bundle), "CI_SERVER_TLS_CA_FILE": str(runner)}
    result = sh(shell, script, env)
    assert result.returncode == 0, result.stderr
    system = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    text, _, flags = result.stdout.rpartition("'--cacert' ")
    assert text == f"{system}\n{bundle.read_text()}"
    assert flags.startswith("'/") and "BEGIN" not in flags
    from_runner = sh(
        shell, 'trust_ca; tail -c 2000 "$SSL_CERT_FILE"', {"CI_SERVER_TLS_CA_FILE": str(runner)}
    )
    assert from_runner.stdout.endswith(runner.read_text())
    untouched = sh(shell, 'trust_ca; echo "${SSL_CERT_FILE:-unset}"', {})
    assert untouched.stdout == "unset\n"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "names '{path}', which this job cannot read"),
        ("not a certificate\n", "({path}) holds no PEM certificate"),
    ],
    ids=["missing", "not-pem"],
)
def test_trust_ca_refuses_a_bundle_it_cannot_use(
    shell: str, tmp_path: Path, content: str | None, problem: str
) -> None:
    """A path nothing is at, or a file without a PEM certificate: one line, naming the fix."""
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    result = sh(shell, "trust_ca; echo reached", {"PIPELINE_CA_FILE": str(path)})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"ERROR: PIPELINE_CA_FILE {problem.format(path=path)}: set PIPELINE_CA_FILE as a CI/CD"
        " variable of type File holding the PEM bundle of the CAs of GitLab, its registry and KAS\n"
    )


GO_REFUSAL = (
    'Error: Get "https://kas.example.test/version": tls: failed to verify certificate:'
    " x509: certificate signed by unknown authority"
)


@pytest.mark.parametrize("shell", SHELLS)
def test_tls_checked_adds_one_line_naming_the_variable(shell: str, bundle: Path) -> None:
    """A command refused by Go's TLS check: its own lines, then one line with the fix; with a
    bundle that lacks the CA, the line names that bundle. Other failures keep their status,
    and the command's stdout stays the caller's."""
    refused = f"refused() {{ echo data; echo '{GO_REFUSAL}' >&2; return 1; }}"
    script = f'{refused}; out=$(tls_checked "KAS" refused); echo "not reached $out"'
    result = sh(shell, script, {})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [GO_REFUSAL, x509_line("KAS")]
    named = sh(shell, script, {"PIPELINE_CA_FILE": str(bundle)})
    assert named.stderr.splitlines()[-1] == (
        f"ERROR: x509: certificate signed by unknown authority at KAS: the bundle in"
        f" PIPELINE_CA_FILE ({bundle}) lacks the CA that signed it: set the CI/CD variable"
        " PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of GitLab, its registry and KAS"
    )
    failing = "f() { echo data; echo oops >&2; return 7; }"
    other = sh(shell, f'{failing}; out=$(tls_checked X f) || echo "$? $out"', {})
    assert (other.returncode, other.stdout, other.stderr) == (0, "7 data\n", "oops\n")


@pytest.fixture(scope="module")
def registry(private_ca: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real registry (docker-registry, htpasswd) served with a certificate of the private CA."""
    with running_registry(tmp_path_factory.mktemp("registry"), private_ca) as started:
        yield started


def kaniko(registry: Registry, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """The kaniko stand-in as the build job calls it, with the registry's credentials."""
    config = tmp_path / "docker"
    config.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    executor = tmp_path / "executor"
    executor.unlink(missing_ok=True)
    executor.symlink_to(STANDIN)
    image = f"{registry.host}/group/{PROJECT}"
    argv = [str(executor), "--destination", f"{image}:dev", "--no-push", "--tar-path"]
    argv += [str(tmp_path / "image.tar"), "--cache=true", "--cache-repo", f"{image}/cache", *flags]
    return subprocess.run(
        argv,
        env={
            "PATH": os.environ["PATH"],
            "DOCKER_CONFIG": str(config),
            "STANDIN_RECORD": str(tmp_path / "record.jsonl"),
        },
        check=False,
        capture_output=True,
        text=True,
    )


def test_kaniko_standin_refuses_a_cache_repo_whose_ca_it_was_not_given(
    registry: Registry, bundle: Path, tmp_path: Path
) -> None:
    """As kaniko v1.24.0 does (tool_standin.KANIKO_PUSH_CHECK names its source): --no-push with
    --cache-repo still checks push access there, over TLS with the system's CAs plus the
    --registry-certificate of exactly that registry; --skip-tls-verify turns the check off."""
    refused = kaniko(registry, tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error checking push permissions -- ")
    assert "x509: certificate signed by unknown authority" in refused.stderr
    assert not (tmp_path / "image.tar").exists()
    elsewhere = kaniko(registry, tmp_path, "--registry-certificate", f"other.test={bundle}")
    assert elsewhere.returncode == 1, "a certificate for another registry does not count"
    malformed = kaniko(registry, tmp_path, "--registry-certificate", str(bundle))
    assert "invalid argument value. expect key=value" in malformed.stderr
    given = kaniko(registry, tmp_path, "--registry-certificate", f"{registry.host}={bundle}")
    assert given.returncode == 0, given.stderr
    assert (tmp_path / "image.tar").stat().st_size > 0
    assert kaniko(registry, tmp_path, "--skip-tls-verify").returncode == 0


def test_kaniko_standin_refuses_a_cache_repo_it_may_not_push_to(
    registry: Registry, bundle: Path, tmp_path: Path
) -> None:
    """With the CA given but a wrong password, the registry's 401 stops the build."""
    wrong = Registry(registry.host, registry.ca, registry.user, "not-the-password-3d7e")
    refused = kaniko(wrong, tmp_path, "--registry-certificate", f"{registry.host}={bundle}")
    assert refused.returncode == 1
    assert "401 Unauthorized" in refused.stderr


@pytest.fixture
def image_pipeline(repo_root: Path, tmp_path: Path) -> Scratch:
    """A scratch repository whose crane is the real one (the pipeline's crane image version);
    kaniko is the stand-in, which checks the registry as kaniko does."""
    crane = cluster_tools.ensure(["crane"])["crane"]
    base = tmp_path / "image"
    base.mkdir()
    scratch = build_scratch(repo_root, base)
    (scratch.bin / "crane").unlink()
    (scratch.bin / "crane").symlink_to(crane)
    scratch.checkout_branch("dev")
    return scratch


@pytest.mark.parametrize("variable", ["PIPELINE_CA_FILE", "CI_SERVER_TLS_CA_FILE"])
def test_image_jobs_verify_the_registry_with_the_ca_variable_real(
    image_pipeline: Scratch, registry: Registry, bundle: Path, tmp_path: Path, variable: str
) -> None:
    """kaniko (stand-in) checks its cache repository, the real crane pushes and tags, all with
    verification on, the registry's CA known only through the variable (the pipeline's, or by
    default the runner's); the digest handed on is the one the registry serves."""
    variables = {**real_registry_variables(registry, tmp_path), variable: str(bundle)}
    run = image_pipeline.gcl("--force-shell-executor", BUILD, PUSH, variables=variables)
    assert run.returncode == 0, run.output
    builds = run.tool("executor")
    assert len(builds) == len(BUILDS), "one kaniko build per platform"
    for build in builds:
        assert build["argv"][-2:] == ["--registry-certificate", f"{registry.host}={bundle}"]
        assert "--skip-tls-verify" not in build["argv"]
    env = dict(
        line.split("=", 1)
        for line in (image_pipeline.path / "build" / "image.env").read_text().splitlines()
    )
    served = subprocess.run(
        [str(cluster_tools.BIN / "crane"), "digest", f"{env['IMAGE_REPOSITORY']}:dev"],
        env={**os.environ, "SSL_CERT_FILE": str(bundle), "DOCKER_CONFIG": str(tmp_path / "docker")},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert served == env["IMAGE_DIGEST"]
    assert registry.password not in run.output


def test_image_jobs_fail_with_one_x509_line_without_the_ca_real(
    image_pipeline: Scratch, registry: Registry, bundle: Path, tmp_path: Path
) -> None:
    """Without the variable, kaniko's check of its cache repository fails on the registry's
    certificate, and so does crane's push of an image built with the CA: each job's last line
    says which variable to set."""
    variables = real_registry_variables(registry, tmp_path)
    build = image_pipeline.gcl("--force-shell-executor", BUILD, variables=variables)
    assert build.returncode != 0
    line = x509_line(f"the registry {registry.host} (kaniko's --cache-repo)")
    for job in BUILDS:
        assert f"{job} > {line}" in build.output.splitlines()
    built = image_pipeline.gcl(
        "--force-shell-executor", BUILD, variables={**variables, "PIPELINE_CA_FILE": str(bundle)}
    )
    assert built.returncode == 0, built.output
    push = image_pipeline.gcl("--force-shell-executor", PUSH, variables=variables)
    assert push.returncode != 0
    assert f"{PUSH} > {x509_line(f'the registry {registry.host}')}" in push.output.splitlines()
    assert not (image_pipeline.path / "build" / "image.env").exists()


def test_the_component_and_the_readme_name_the_ca_variable() -> None:
    """PIPELINE_CA_FILE is the project's CI/CD variable (type File): the component sets it
    nowhere, so nothing in the YAML shadows it (a component keeps out of global
    `variables:`); the scripts read it, and the README's variables table has its row."""
    pipeline = component_documents()[1]
    assert "PIPELINE_CA_FILE" not in pipeline
    assert "${PIPELINE_CA_FILE:-}" in (ROOT / "ci" / "scripts" / "lib.sh").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "| `PIPELINE_CA_FILE` | GitLab, its registry or KAS behind a private CA |" in readme
