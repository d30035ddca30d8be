"""A project that adopts the pipeline includes the component with inputs and has no
copy of ci/scripts/: the jobs run the scripts embedded in
templates/pipeline/scripts.generated.yml. The core job flows run here in such a
project (real Helm; stand-ins for the rest). And a project of another name whose
.gitlab-ci.yml is one of the README's include snippets, as it stands there, gets the
component from this project's Git repository on the GitLab host (a local repository
standing in for it) and its first pipeline is green, with and without app tests."""

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import (
    DIGEST,
    GITLAB_HOST,
    PROJECT,
    Run,
    Scratch,
    _chart_into,
    build_scratch,
    commit_project,
)
from tests.pipeline.pipelinelib import (
    CHART_JOBS,
    DEPLOYS,
    IMAGE_JOBS,
    REGISTRY,
    assert_no_secrets,
    check_chart_publish_and_deploy,
    check_image_build_and_push,
    readme_includes,
    registry_variables,
)
from tests.support.gitlab_api import GitLabStandIn

# The adopting project: another group, another name, its own Dockerfile and chart.
ADOPTER = "acme/hello-service"
ADOPTER_IMAGE = f"{REGISTRY}/{ADOPTER}"
# This project on the GitLab host, where the snippets get the component from, and the
# releases it has there: `1` must resolve to 1.1.0 (newest 1.x.y, pre-releases never).
COMPONENT_PROJECT = f"dev/{PROJECT}"
RELEASES = ("1.0.0", "1.1.0", "2.0.0-rc.1")


@pytest.fixture(scope="session")
def adopter(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """A project with the pipeline's YAML, a chart and a Dockerfile, but no ci/scripts/."""
    project = build_scratch(repo_root, tmp_path_factory.mktemp("adopter"), scripts=False)
    files = set(project.git("ls-files").split())
    assert not [name for name in files if name.startswith("ci/scripts/")]
    component = {"templates/pipeline/template.yml", "templates/pipeline/scripts.generated.yml"}
    assert {".gitlab-ci.yml", *component} <= files
    return project


def assert_ran_embedded_scripts(run: Run, tool: str, scripts: set) -> None:
    """Each call of TOOL came from a script the job wrote into its .ci-scripts/ folder,
    and together those are SCRIPTS."""
    callers = set()
    for call in run.tool(tool):
        # helm's stand-in calls the real helm for local commands: skip its own calls.
        script = next(arg for arg in call["caller_argv"] if arg.endswith(".sh"))
        folder = Path(call["cwd"]) / ".ci-scripts" / f"job-{call['env']['CI_JOB_ID']}"
        assert Path(script).parent == folder, script
        callers.add(Path(script).name)
    assert callers == scripts


def test_adopter_image_build_and_push_stand_in(adopter: Scratch, tmp_path: Path) -> None:
    """kaniko and crane get exactly the calls they get in this repository."""
    run = check_image_build_and_push(adopter, tmp_path, insecure=False)
    assert_ran_embedded_scripts(run, "executor", {"kaniko-build.sh"})
    assert_ran_embedded_scripts(run, "crane", {"crane-push.sh"})


def test_adopter_chart_publish_and_deploy_stand_in(
    adopter: Scratch, gitlab: GitLabStandIn, tmp_path: Path, verify_url: str
) -> None:
    """Chart tests, package, upload, deploy with helm test, the prober (embedded in the
    pipeline, as the scripts are), and the review stop, with real Helm on the chart, exactly
    as in this repository."""
    run = check_chart_publish_and_deploy(adopter, gitlab, tmp_path, DEPLOYS[0], verify_url)
    deploys = [call for call in run.tool("helm") if call["argv"][0] in ("upgrade", "test")]
    assert_ran_embedded_scripts(Run(0, "", "", deploys), "helm", {"helm-deploy.sh"})


@pytest.fixture(scope="module")
def gitlab_host_repository(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in for this project's repository on the GitLab host: a bare Git repository
    with the component's files on main and the release tags. gitlab-ci-local fetches an
    include with `git ls-remote` and `git archive --remote` over SSH; Git's insteadOf (in
    the adopter's home) sends those to this repository."""
    work = tmp_path_factory.mktemp("component-project") / "work"
    work.mkdir()
    for name in ("README.md", "LICENSE", ".gitlab-ci.yml"):
        shutil.copy(repo_root / name, work)
    shutil.copytree(repo_root / "templates", work / "templates")
    scratch = commit_project(work, COMPONENT_PROJECT)
    for tag in RELEASES:
        scratch.git("tag", "-a", "-m", f"release {tag}", tag)
    bare = work.parent / "host.git"
    scratch.git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def build_adopter(
    repo_root: Path, base: Path, host: Path, gitlab_ci: str, files: dict | None = None
) -> Scratch:
    """ADOPTER's repository: GITLAB_CI as its .gitlab-ci.yml, a Dockerfile, a chart (ours,
    as a team that copies the template has) and FILES; no templates/, ci/ or requirements."""
    path = base / ADOPTER.rsplit("/", 1)[1]
    path.mkdir(parents=True)
    (path / ".gitlab-ci.yml").write_text(gitlab_ci)
    (path / "Dockerfile").write_text(
        "FROM alpine:3.24.2\nRUN apk add --no-cache python3 py3-flask\n"
    )
    _chart_into(repo_root, path)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    scratch = commit_project(path, ADOPTER)
    gitconfig = base / "home" / ".gitconfig"
    for url in (
        f"ssh://git@{GITLAB_HOST}:22/{COMPONENT_PROJECT}.git",
        f"git@{GITLAB_HOST}:{COMPONENT_PROJECT}",
    ):
        subprocess.run(
            ["git", "config", "--file", gitconfig, "--add", f"url.{host}.insteadOf", url],
            check=True,
        )
    scratch.checkout_branch("feature/Login_Form")
    return scratch


def adopter_variables(tmp_path: Path) -> dict:
    """What GitLab gives the adopter's jobs for its own container registry."""
    return {**registry_variables(tmp_path), "CI_REGISTRY_IMAGE": ADOPTER_IMAGE}


def listed(run: Run) -> dict:
    """gitlab-ci-local's --list-json, by job name, jobs that would run (the jobs of a
    parallel:matrix, `job: [a,b]`, count as their job, the name `needs` uses)."""
    assert run.returncode == 0, run.output
    jobs: dict = {}
    for job in json.loads(run.stdout):
        if job["when"] != "never":
            jobs.setdefault(job["name"].split(": [")[0], job)
    return jobs


def readme_adopter(form: str, repo_root: Path, host: Path, tmp_path: Path) -> Scratch:
    """ADOPTER with the README's FORM of include snippet, verbatim, as its .gitlab-ci.yml;
    its pipeline is the one GitLab would create (no app:test:job: no tests named), every
    need satisfiable (GitLab refuses a pipeline whose needs name a job it does not have),
    and the component's files came from the GitLab host."""
    snippet = readme_includes()[form]["text"]
    adopter = build_adopter(repo_root, tmp_path / "adopter", host, snippet)
    jobs = listed(adopter.gcl("--list-json"))
    assert "app:test:job" not in jobs
    assert {*IMAGE_JOBS, *CHART_JOBS, "helm:deploy:job"} <= set(jobs)
    run = adopter.gcl("--validate-dependency-chain")
    assert run.returncode == 0, run.output
    # The project form at main; the component form `1` at the newest 1.x.y release.
    ref = "main" if form == "project" else "1.1.0"
    fetched = adopter.path / ".gitlab-ci-local" / "includes" / GITLAB_HOST / COMPONENT_PROJECT
    for name in ("template.yml", "scripts.generated.yml"):
        got = (fetched / ref / "templates" / "pipeline" / name).read_text()
        assert got == (repo_root / "templates" / "pipeline" / name).read_text()
    return adopter


def test_readme_component_snippet_resolves_the_release(
    repo_root: Path, gitlab_host_repository: Path, tmp_path: Path
) -> None:
    """`include: component:` at `1`, as the README has it, takes the newest 1.x.y release
    of the GitLab host's tags, and the whole pipeline with it."""
    readme_adopter("component", repo_root, gitlab_host_repository, tmp_path)


def test_readme_project_snippet_first_pipeline_is_green_stand_in(
    repo_root: Path,
    gitlab_host_repository: Path,
    gitlab: GitLabStandIn,
    tmp_path: Path,
    verify_url: str,
) -> None:
    """The README's `include: project:` snippet in a project of another name: build, push,
    chart upload, deploy and verify pass, under the adopter's own names."""
    adopter = readme_adopter("project", repo_root, gitlab_host_repository, tmp_path)
    variables = {
        **adopter_variables(tmp_path),
        "CI_API_V4_URL": gitlab.url,
        "VERIFY_URL": verify_url,
    }
    jobs = [*IMAGE_JOBS, *CHART_JOBS, "helm:deploy:job"]
    run = adopter.gcl("--force-shell-executor", *jobs, variables=variables)
    assert run.returncode == 0, run.output
    assert_no_secrets(run, adopter)
    sha = adopter.git("rev-parse", "HEAD").strip()
    _login, *pushes, _index, tag = run.tool("crane")
    assert [push["argv"] for push in pushes] == [
        ["push", f"build/images/{arch}.tar", f"{ADOPTER_IMAGE}:{sha}-{arch}"]
        for arch in ("amd64", "arm64")
    ]
    assert tag["argv"] == ["tag", f"{ADOPTER_IMAGE}@{DIGEST}", "feature-login-form"]
    [(channel, _package)] = gitlab.state.charts
    assert channel == "feature-login-form"
    upgrade = next(c for c in run.tool("helm") if c["argv"][0] == "upgrade")
    assert upgrade["argv"][2:3] == ["feature-login-form-hello-service"]
    values = yaml.safe_load((Path(upgrade["cwd"]) / "build/values/deploy.yaml").read_text())
    assert values["host"] == "feature-login-form.hello-service.example.com"
    assert values["certificate"]["issuerRef"]["name"] == "private-ca"


# Python stand-in for app:test:job: pip (no network in tests) is recorded, anything else
# is the real Python, whose pytest runs the adopter's tests.
PYTHON_STANDIN = """#!/bin/sh
if [ "$1 $2" = "-m pip" ]; then
    printf '%s\\n' "$*" >> "$PIP_RECORD"
    exit 0
fi
exec {python} "$@"
"""
ADOPTER_TESTS = {
    "tests/test_hello.py": "def test_hello():\n    assert 'hello'.title() == 'Hello'\n",
    # Deselected by the adopter's -m "not slow": it would fail the job.
    "tests/test_slow.py": "import pytest\n\n\n@pytest.mark.slow\ndef test_slow():\n"
    "    raise AssertionError('deselected')\n",
    "requirements-test.txt": "pytest==8.4.2\n",
}


def test_adopter_app_tests_run_before_the_push_stand_in(
    repo_root: Path, gitlab_host_repository: Path, tmp_path: Path
) -> None:
    """A project that names its own tests (app_tests, quoted as in a shell) and their
    requirements gets app:test:job, which runs them with real pytest before the push."""
    config = yaml.safe_load(readme_includes()["project"]["text"])
    config["include"][0]["inputs"] |= {
        "app_tests": '-m "not slow" tests',
        "app_test_requirements": "requirements-test.txt",
    }
    adopter = build_adopter(
        repo_root,
        tmp_path / "adopter",
        gitlab_host_repository,
        yaml.safe_dump(config),
        ADOPTER_TESTS,
    )
    for tool, text in (
        ("apk", "#!/bin/sh\nexit 0\n"),
        ("python3", PYTHON_STANDIN.format(python=sys.executable)),
    ):
        (adopter.bin / tool).write_text(text)
        (adopter.bin / tool).chmod(0o755)
    jobs = listed(adopter.gcl("--list-json"))
    assert "app:test:job" in jobs
    assert "app:test:job" in [need["job"] for need in jobs["docker_builder:push:job"]["needs"]]
    pip_record = tmp_path / "pip"
    run = adopter.gcl(
        "--force-shell-executor",
        "--needs",
        "docker_builder:push:job",
        variables=adopter_variables(tmp_path),
        env={"PIP_RECORD": str(pip_record)},
    )
    assert run.returncode == 0, run.output
    assert "--requirement requirements-test.txt" in pip_record.read_text()
    # The shell executor runs the job in the project's directory: its JUnit report is there.
    root = ET.parse(adopter.path / "build" / "app-test.xml").getroot()  # noqa: S314 - pytest's own report, from this test
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    pushes = [call for call in run.tool("crane") if call["argv"][0] == "push"]
    assert pushes
    assert all(push["argv"][-1].startswith(f"{ADOPTER_IMAGE}:") for push in pushes)
