"""The pull_secret input: the pods pull the deployed image with GitLab's gitlab-deploy-token
(default), an existing Secret, or nothing; a missing deploy token stops the deploy first."""

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import DEPLOY_TOKEN, Scratch
from tests.pipeline.pipelinelib import (
    REGISTRY,
    assert_no_secrets,
    assert_pods_pull_with_the_release_secret,
    registry_variables,
)
from tests.support.gitlab_api import GitLabStandIn

DRY_RUN = "helm_builder:test:deploy:job"


def without_token(tmp_path: Path) -> dict:
    """What GitLab gives a job of a project without a gitlab-deploy-token."""
    variables = registry_variables(tmp_path)
    for key in DEPLOY_TOKEN:
        del variables[key]
    return variables


def pod_specs(manifests: str) -> list[dict]:
    """The pod specs of the Deployment and the test pod in rendered MANIFESTS."""
    objects = [doc for doc in yaml.safe_load_all(manifests) if doc]
    specs = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    return specs + [o["spec"] for o in objects if o["kind"] == "Pod"]


def test_config_job_renders_the_pull_secret_but_never_the_token(
    fresh_scratch: Scratch, tmp_path: Path
) -> None:
    """helm template with the pipeline's deploy values (a dev pipeline's) renders pods that pull
    with the release's pull Secret; the kept manifests carry a stand-in credential, never
    the deploy token the job could read."""
    fresh_scratch.checkout_branch("feature/Login_Form")
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "helm_builder:test:config:job",
        variables=registry_variables(tmp_path),
    )
    assert run.returncode == 0, run.output
    assert_no_secrets(run, fresh_scratch)
    [folder] = {p.parent for p in (fresh_scratch.path / ".gitlab-ci-local").rglob("pipeline-*")}
    secret = assert_pods_pull_with_the_release_secret((folder / "pipeline-dev.yaml").read_text())
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = config["auths"][REGISTRY]
    assert (entry["username"], entry["password"]) == ("deploy-token-user", "not-the-deploy-token")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("registry-credentials", [{"name": "registry-credentials"}]), ("none", None)],
    ids=["existing-secret", "none"],
)
def test_other_choices_need_no_deploy_token_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, choice: str, expected: list | None
) -> None:
    """pull_secret=<name>: the pods pull with that existing Secret; none: with nothing (a
    public image). Neither writes a Secret or needs the deploy token."""
    fresh_scratch.checkout_branch("dev")
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "--input",
        f"pull_secret={choice}",
        DRY_RUN,
        variables=without_token(tmp_path),
    )
    assert run.returncode == 0, run.output
    for call in run.tool("helm"):
        assert "--set-file" not in call["argv"]
    workdir = Path(run.tool("helm")[0]["cwd"])
    values = yaml.safe_load((workdir / "build/values/deploy.yaml").read_text())
    assert "pullSecret" not in values
    assert values.get("imagePullSecrets") == expected
    [apply] = run.tool("kubectl")
    assert "kind: Secret" not in apply["manifests"]
    specs = pod_specs(apply["manifests"])
    assert len(specs) == 2
    for spec in specs:
        assert spec.get("imagePullSecrets") == expected


@pytest.mark.parametrize(
    "unset", [tuple(DEPLOY_TOKEN), ("CI_DEPLOY_PASSWORD",)], ids=["no-token", "no-password"]
)
@pytest.mark.parametrize("job", [DRY_RUN, "helm:deploy:job"])
def test_missing_deploy_token_stops_before_deploying_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, job: str, unset: tuple
) -> None:
    """Without a deploy token named gitlab-deploy-token, the job stops with one line naming
    the token to create and its scope, before it fetches a chart or calls the cluster."""
    fresh_scratch.checkout_branch("dev")
    variables = {**registry_variables(tmp_path), "CI_API_V4_URL": gitlab.url}
    for key in unset:
        del variables[key]
    run = fresh_scratch.gcl("--force-shell-executor", job, variables=variables)
    assert run.returncode != 0
    errors = {line.split("> ", 1)[-1] for line in run.output.splitlines() if "ERROR: " in line}
    assert errors == {
        "ERROR: CI_DEPLOY_USER or CI_DEPLOY_PASSWORD is empty: create a project deploy token"
        " named exactly gitlab-deploy-token with scope read_registry (Settings > Repository >"
        " Deploy tokens), or set the pull_secret input to an existing Secret's name or none"
    }
    assert run.tool("helm") == []
    assert run.tool("kubectl") == []
    assert gitlab.state.requests == []
    assert_no_secrets(run, fresh_scratch)


def test_a_bad_pull_secret_input_is_named_stand_in(fresh_scratch: Scratch, tmp_path: Path) -> None:
    """A pull_secret that is no Secret name stops the job with one line naming the input."""
    fresh_scratch.checkout_branch("dev")
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "--input",
        "pull_secret=Registry_Credentials",
        DRY_RUN,
        variables=registry_variables(tmp_path),
    )
    assert run.returncode != 0
    [error] = {line.split("> ", 1)[-1] for line in run.output.splitlines() if "ERROR: " in line}
    assert error.startswith(
        "ERROR: the pull_secret input 'Registry_Credentials' is not deploy-token, none or a"
        " Secret name"
    )
    assert error.endswith(": fix the input")
    assert run.tool("helm") == []
