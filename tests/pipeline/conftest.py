"""Fixtures for the pipeline tests: a scratch Git repository that gitlab-ci-local
runs the real pipeline in, stand-ins on PATH, and the GitLab API stand-in."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hack.cluster import Cluster
from tests.server.conftest import start_server  # noqa: F401 - fixture, for verify_url
from tests.support.control_plane import session_cluster
from tests.support.gitlab_api import GitLab, GitLabStandIn

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
GITLAB_CI_LOCAL = ROOT / "node_modules" / ".bin" / "gitlab-ci-local"
HELM = {3: ROOT / ".tools" / "helm3" / "helm", 4: ROOT / ".tools" / "helm4" / "helm"}
GCL_PREDEFINED = (
    "CI_PIPELINE_SOURCE,CI_COMMIT_REF_PROTECTED,CI_REGISTRY,CI_REGISTRY_IMAGE,CI_REGISTRY_USER,"
    "CI_REGISTRY_PASSWORD,CI_JOB_TOKEN,CI_API_V4_URL,CI_PROJECT_ID,CI_MERGE_REQUEST_IID,"
    "CI_COMMIT_BRANCH,CI_COMMIT_TAG,CI_SERVER_TLS_CA_FILE"
)
# Made-up secrets: no job log or artifact may ever contain them.
SECRETS = {
    "CI_JOB_TOKEN": "glcbt-standin-job-token-5d1f0a",
    "CI_REGISTRY_PASSWORD": "standin-registry-password-7c3e19",
    "AUTO_MERGE_TOKEN": "glpat-standin-api-token-93b2c4",
    "CI_DEPLOY_PASSWORD": "gldt-standin-deploy-token-2a6f81",
    "COSIGN_PASSWORD": "standin-cosign-password-0c4d2e",
}
# What GitLab gives every job of a project with a deploy token named gitlab-deploy-token.
DEPLOY_USER = "gitlab+deploy-token-41"
DEPLOY_TOKEN = {"CI_DEPLOY_USER": DEPLOY_USER, "CI_DEPLOY_PASSWORD": SECRETS["CI_DEPLOY_PASSWORD"]}
BUSYBOX_APPLETS = (
    "sh",
    "sed",
    "grep",
    "tr",
    "cut",
    "sha256sum",
    "base64",
    "mktemp",
    "date",
    "basename",
    "dirname",
    "sleep",
    "tee",
    "tar",
    "uname",
    "chmod",
)
DIGEST = "sha256:" + "ab12" * 16
# A loopback address where nothing listens (the discard port).
NOWHERE = "http://127.0.0.1:9"
PROJECT = "flask-example-1"
# The GitLab host of the scratch projects' remotes (CI_SERVER_FQDN under gitlab-ci-local).
GITLAB_HOST = "gitlab.example.com"


def pull_flags(call: dict) -> list[str]:
    """The --set-file flags a recorded helm call must carry for the deploy token: files in
    that job's private Helm home, never the credential itself."""
    home = Path(call["env"]["HELM_CONFIG_HOME"]).parent
    return [
        "--set-file",
        f"pullSecret.username={home}/pull-username",
        "--set-file",
        f"pullSecret.password={home}/pull-password",
    ]


@dataclass
class Run:
    """One gitlab-ci-local invocation: its exit code, output and recorded stand-in calls."""

    returncode: int
    stdout: str
    output: str
    calls: list = field(default_factory=list)

    def tool(self, name: str) -> list:
        """The recorded calls of one stand-in tool."""
        return [call for call in self.calls if call["tool"] == name]


@dataclass
class Scratch:
    """A throwaway clone of the pipeline's files, on a chosen ref."""

    path: Path
    bin: Path
    record: Path

    def git(self, *args: str) -> str:
        """Run git in the scratch repository."""
        return subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True
        ).stdout

    def checkout_branch(self, branch: str) -> None:
        """Put the repository on BRANCH (created from main)."""
        self.git("checkout", "-q", "-B", branch, "main")

    def checkout_tag(self, tag: str) -> None:
        """Put the repository on TAG, detached, as a tag pipeline sees it."""
        self.git("tag", "-f", tag, "main")
        self.git("checkout", "-q", "--detach", tag)

    def gcl(
        self,
        *args: str,
        variables: dict | None = None,
        unset: tuple = (),
        env: dict | None = None,
        helm: int = 4,
    ) -> Run:
        """Run gitlab-ci-local with ARGS, --variable K=V for VARIABLES, --unset-variable UNSET."""
        self.record.write_text("")
        command = [str(GITLAB_CI_LOCAL), "--ignore-predefined-vars", GCL_PREDEFINED, *args]
        # The verify input probes the environment's public host; tests never reach outside
        # this machine, so a test that does not aim it (verify_url) sees a refused connection.
        variables = {"VERIFY_URL": NOWHERE, **(variables or {})}
        for key, value in variables.items():
            command += ["--variable", f"{key}={value}"]
        for key in unset:
            command += ["--unset-variable", key]
        full_env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "STANDIN_RECORD": str(self.record),
            "STANDIN_DIGEST": DIGEST,
            "REAL_HELM": str(HELM[helm]),
            "HOME": str(self.path.parent / "home"),
            **(env or {}),
        }
        # Node cuts off output still queued for a pipe when it exits (the preview of
        # the pipeline runs to hundreds of KB); a file gets every byte.
        stdout_file = self.path.parent / "gcl-stdout.txt"
        with stdout_file.open("w+", encoding="utf-8") as stdout:
            result = subprocess.run(
                command,
                check=False,
                cwd=self.path,
                env=full_env,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                timeout=300,
            )
        output = stdout_file.read_text(encoding="utf-8")
        calls = [json.loads(line) for line in self.record.read_text().splitlines()]
        return Run(result.returncode, output, output + result.stderr, calls)

    def list_jobs(
        self, variables: dict, unset: tuple = (), *args: str, matrix: bool = False
    ) -> dict:
        """Jobs that would run (not when:never), by name, as gitlab-ci-local lists them. The
        jobs of a parallel:matrix (`job: [a,b]`) count as their job, the name `needs` uses,
        unless MATRIX asks for each of them."""
        run = self.gcl("--list-json", *args, variables=variables, unset=unset)
        assert run.returncode == 0, run.output
        jobs: dict = {}
        for job in json.loads(run.stdout):
            if job["when"] != "never":
                jobs.setdefault(job["name"] if matrix else job["name"].split(": [")[0], job)
        return jobs


def _chart_into(repo_root: Path, target: Path) -> None:
    """The project's chart; until it exists, a throwaway chart from `helm create`."""
    if (repo_root / "chart" / "Chart.yaml").is_file():
        shutil.copytree(repo_root / "chart", target / "chart")
        return
    subprocess.run([HELM[4], "create", PROJECT], cwd=target, check=True, capture_output=True)
    (target / PROJECT).rename(target / "chart")


def build_scratch(repo_root: Path, base: Path, scripts: bool = True) -> Scratch:
    """A Git repository with the pipeline, scripts and chart, remote at dev/flask-example-1."""
    path = base / PROJECT
    path.mkdir()
    shutil.copy(repo_root / ".gitlab-ci.yml", path)
    shutil.copytree(repo_root / "templates", path / "templates")
    if scripts:
        shutil.copytree(repo_root / "ci", path / "ci")
    _chart_into(repo_root, path)
    (path / "Dockerfile").write_text("FROM scratch\n")
    return commit_project(path, f"dev/{PROJECT}")


def commit_project(path: Path, project_path: str) -> Scratch:
    """PATH's files committed on main, remote at PROJECT_PATH on the GitLab host, with the
    stand-ins and a home of its own beside it: a Scratch that gitlab-ci-local runs in."""
    base = path.parent
    (base / "home").mkdir()
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for tool in ("executor", "crane", "helm", "kubectl", "cosign"):
        (bin_dir / tool).symlink_to(ROOT / "tests" / "support" / "tool_standin.py")
    # The job images have only BusyBox: where it is installed, the jobs' scripts
    # run in its sh with its tools, as they would in kaniko's or alpine/helm's image.
    busybox = shutil.which("busybox")
    if busybox:
        for applet in BUSYBOX_APPLETS:
            (bin_dir / applet).symlink_to(busybox)
    scratch = Scratch(path, bin_dir, base / "record.jsonl")
    scratch.git("init", "-q", "-b", "main")
    scratch.git("config", "user.name", "Pipeline Test")
    scratch.git("config", "user.email", "pipeline-test@example.com")
    scratch.git("remote", "add", "origin", f"git@{GITLAB_HOST}:{project_path}.git")
    scratch.git("add", "-A")
    scratch.git("commit", "-qm", "pipeline")
    # gitlab-ci-local reads the default branch from origin's HEAD.
    scratch.git("update-ref", "refs/remotes/origin/main", "HEAD")
    scratch.git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return scratch


@pytest.fixture(scope="session")
def scratch(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """The scratch repository the pipeline tests share (they only change its ref)."""
    return build_scratch(repo_root, tmp_path_factory.mktemp("pipeline"))


@pytest.fixture
def gitlab() -> GitLabStandIn:
    """The GitLab API stand-in on a free loopback port, expecting the made-up tokens."""
    state = GitLab(job_token=SECRETS["CI_JOB_TOKEN"], api_token=SECRETS["AUTO_MERGE_TOKEN"])
    with GitLabStandIn(state) as server:
        yield server


@pytest.fixture
def fresh_scratch(repo_root: Path, tmp_path: Path) -> Scratch:
    """A scratch repository of its own: no artifacts or dotenv left by other tests' runs."""
    base = tmp_path / "fresh"
    base.mkdir()
    return build_scratch(repo_root, base)


@pytest.fixture
def verify_url(start_server) -> str:  # noqa: F811 - the fixture imported above
    """A real server on loopback, standing in for the environment's host that verify probes."""
    return f"http://127.0.0.1:{start_server().port}"


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """The local control plane (shared with tests/cluster), for the cluster jobs' tests."""
    return session_cluster(pytestconfig, tmp_path_factory)
