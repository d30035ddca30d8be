"""A project that adopts the pipeline includes the component with inputs and has no
copy of ci/scripts/: the jobs run the scripts embedded in
templates/pipeline/scripts.generated.yml. The core job flows run here in such a
project (real Helm; stand-ins for the rest)."""

from pathlib import Path

import pytest

from tests.pipeline.conftest import Run, Scratch, build_scratch
from tests.pipeline.test_pipeline_jobs import (
    DEPLOYS,
    check_chart_publish_and_deploy,
    check_image_build_and_push,
)
from tests.support.gitlab_api import GitLabStandIn


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
