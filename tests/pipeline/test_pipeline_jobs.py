"""The jobs themselves, run by gitlab-ci-local's shell executor: real Helm on the
chart, stand-ins for kaniko, crane, the cluster and the GitLab API that record
exactly what the pipeline sends."""

import json
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import (
    HELM,
    NOWHERE,
    PROJECT,
    Scratch,
)
from tests.pipeline.pipelinelib import (
    CHART_JOBS,
    DEPLOYS,
    IMAGE,
    IMAGE_JOBS,
    PLATFORMS,
    assert_no_secrets,
    build_job,
    check_chart_publish_and_deploy,
    check_image_build_and_push,
    kept_prove_json,
    registry_variables,
)
from tests.support.gitlab_api import GitLabStandIn, chart_yaml


@pytest.mark.parametrize(
    "insecure", [False, True], ids=["tls-verified", "insecure-and-debug-opt-in"]
)
def test_image_build_and_push_stand_in(scratch: Scratch, tmp_path: Path, insecure: bool) -> None:
    """kaniko builds one image per platform with cache and build args; crane pushes each and
    assembles one index, tagged. The opt-ins turn TLS verification off and debug logging on,
    still without secrets."""
    check_image_build_and_push(scratch, tmp_path, insecure)


def test_arm64_off_builds_amd64_only_stand_in(fresh_scratch: Scratch, tmp_path: Path) -> None:
    """build_arm64 false: the amd64 build job alone, and an index of that one image (in a
    scratch repository of its own: no arm64 image left by another test's pipeline)."""
    check_image_build_and_push(
        fresh_scratch, tmp_path, insecure=False, platforms=("linux/amd64",), arm64="false"
    )


def test_build_matrix_has_one_job_per_platform_on_its_runner(scratch: Scratch) -> None:
    """The build is a parallel:matrix whose jobs run on the runner tag of their platform's
    input (docker_builder_tag, docker_builder_tag_arm64); build_arm64 false leaves the arm64
    job out of the pipeline, and the push job needs whichever build jobs there are."""
    scratch.checkout_branch("main")
    for arm64, platforms in (("true", PLATFORMS), ("false", PLATFORMS[:1])):
        jobs = scratch.list_jobs({"PIPELINE_BUILD_ARM64": arm64}, matrix=True)
        builds = sorted(name for name in jobs if name.startswith("docker_builder:build:job"))
        assert builds == [build_job(platform) for platform in platforms], arm64
        assert {"job": "docker_builder:build:job", "artifacts": True, "optional": True} in jobs[
            "docker_builder:push:job"
        ]["needs"]
    preview = yaml.safe_load(scratch.gcl("--preview").stdout)["docker_builder:build:job"]
    assert preview["tags"] == ["$RUNNER_TAG"]
    assert preview["parallel"]["matrix"] == [
        {"PLATFORM": ["linux/amd64"], "RUNNER_TAG": ["docker-builder"]},
        {"PLATFORM": ["linux/arm64"], "RUNNER_TAG": ["docker-builder-arm64"]},
    ]  # (gitlab-ci-local's preview writes each value as a one-item list)


@pytest.mark.parametrize("expected", DEPLOYS, ids=["dev-branch-helm4", "main-helm3"])
def test_chart_publish_and_deploy_stand_in(
    scratch: Scratch,
    gitlab: GitLabStandIn,
    tmp_path: Path,
    expected: dict,
    verify_url: str,
) -> None:
    """The chart is linted, packaged, uploaded with the job token, pulled back at exactly
    that version and installed with the pushed digest; review environments stop; a review
    deploy is verified with the prober (against a real server standing in for the host)."""
    check_chart_publish_and_deploy(scratch, gitlab, tmp_path, expected, verify_url)


def test_deploy_with_the_chart_part_off_takes_the_newest_chart_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, verify_url: str
) -> None:
    """build_chart=false: no version comes from this pipeline, so the channel's newest
    (pre-releases included, as the pipeline's own versions are) is deployed."""
    fresh_scratch.checkout_branch("dev")
    for version in ("1.0.0-3", "1.0.0-12", "1.0.0-9"):
        subprocess.run(
            [HELM[4], "package", "chart", "--version", version, "--destination", tmp_path],
            cwd=fresh_scratch.path,
            check=True,
            capture_output=True,
        )
        archive = (tmp_path / f"{PROJECT}-{version}.tgz").read_bytes()
        gitlab.state.charts[("dev", f"{PROJECT}-{version}.tgz")] = (archive, chart_yaml(archive))
    variables = {
        **registry_variables(tmp_path),
        "CI_API_V4_URL": gitlab.url,
        "VERIFY_URL": verify_url,
    }
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "--input",
        "build_chart=false",
        *IMAGE_JOBS,
        "helm:deploy:job",
        variables=variables,
    )
    assert run.returncode == 0, run.output
    assert_no_secrets(run, fresh_scratch)
    [upgrade] = [c for c in run.tool("helm") if c["argv"][0] == "upgrade"]
    assert upgrade["argv"][2:4] == [f"dev-{PROJECT}", f"build/deploy/{PROJECT}-1.0.0-12.tgz"]
    assert "deploying the newest chart in channel dev" in run.output


def test_deploy_fails_clearly_when_the_pushed_chart_is_missing_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path
) -> None:
    """A chart version the registry never lists stops the deploy (after retries), not
    a silent install of something else; nothing reaches the cluster."""
    fresh_scratch.checkout_branch("dev")
    variables = {
        **registry_variables(tmp_path),
        "CI_API_V4_URL": gitlab.url,
        "CHART_NAME": PROJECT,
        "CHART_VERSION": "1.0.0-404",
        "CHART_FETCH_ATTEMPTS": "2",
        "CHART_FETCH_DELAY": "0",
    }
    run = fresh_scratch.gcl("--force-shell-executor", "helm:deploy:job", variables=variables)
    assert run.returncode != 0
    assert f"chart {PROJECT} (--version 1.0.0-404) is not in channel dev" in run.output
    assert run.tool("helm") == []
    index_reads = [r for r in gitlab.state.requests if r.path.endswith("/dev/index.yaml")]
    assert len(index_reads) == 2  # helm repo add, then one helm repo update
    assert_no_secrets(run, fresh_scratch)


def deploy_with_verify(scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, url: str, *args):
    """helm:deploy:job of a review pipeline (after the chart is pushed), verifying URL."""
    scratch.checkout_branch("feature/verify")
    variables = {**registry_variables(tmp_path), "CI_API_V4_URL": gitlab.url, "VERIFY_URL": url}
    return scratch.gcl(
        "--force-shell-executor",
        *args,
        *IMAGE_JOBS,
        *CHART_JOBS,
        "helm:deploy:job",
        variables=variables,
        env={"STANDIN_UPGRADE_SECONDS": "2"},
    )


def test_verify_during_probes_while_the_rollout_runs_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, verify_url: str
) -> None:
    """verify_during: the prober asks /version from before the upgrade until it returns (the
    stand-in helm takes 2 s), then measures; nothing failed, so the job passes."""
    run = deploy_with_verify(
        fresh_scratch, gitlab, tmp_path, verify_url, "--input", "verify_during=true"
    )
    assert run.returncode == 0, run.output
    [status] = [c["argv"] for c in run.tool("helm") if c["argv"][0] == "status"]
    assert status[1] == f"feature-verify-{PROJECT}", "the check runs only over an existing release"
    results = json.loads(kept_prove_json(fresh_scratch).read_text())
    # Ten a second while the 2 s upgrade ran: the check spanned the rollout, and SIGTERM ended it.
    assert results["during"]["requests"] >= 10, results["during"]
    assert results["during"]["failed"] == []
    assert results["failures"] == []
    assert_no_secrets(run, fresh_scratch)


def test_verify_fails_the_deploy_when_the_host_does_not_answer_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path
) -> None:
    """Nothing answers at the host: the deploy job fails with one line, after the release is
    deployed and its environment recorded, and keeps the prober's JSON."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        run = deploy_with_verify(
            fresh_scratch, gitlab, tmp_path, url, "--input", "verify_during=true"
        )
    assert run.returncode != 0
    assert f"the prober found failures at {url}" in run.output
    assert "the release stays deployed" in run.output
    results = json.loads(kept_prove_json(fresh_scratch).read_text())
    assert results["during"]["failed"], "every request of the rollout check failed"
    assert any("requests failed during the rollout check" in f for f in results["failures"])
    assert (fresh_scratch.path / "build" / "deploy.env").is_file()


def test_verify_never_runs_no_prober_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path
) -> None:
    """verify=never: a review deploy with nothing at the host still passes."""
    run = deploy_with_verify(fresh_scratch, gitlab, tmp_path, NOWHERE, "--input", "verify=never")
    assert run.returncode == 0, run.output
    assert "prove.py" not in run.output
    assert [c for c in run.tool("helm") if c["argv"][0] == "status"] == []


@pytest.mark.parametrize("debug", [False, True], ids=["default", "pipeline-debug"])
def test_deploy_prints_values_only_with_pipeline_debug_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, debug: bool
) -> None:
    """The deploy values (names only) reach the log only when PIPELINE_DEBUG=true; the
    project's extra values file, which may hold anything, is never printed."""
    fresh_scratch.checkout_branch("dev")
    extra = tmp_path / "extra-values.yaml"
    extra.write_text("podLabels:\n  team: extra-values-marker-3f9a\n")
    variables = {**registry_variables(tmp_path), "VALUES_FILE": str(extra)}
    if debug:
        variables["PIPELINE_DEBUG"] = "true"
    run = fresh_scratch.gcl(
        "--force-shell-executor", "helm_builder:test:deploy:job", variables=variables
    )
    assert run.returncode == 0, run.output
    # helm upgrade --dry-run=server, then the render for the API server's dry run.
    [upgrade, template] = run.tool("helm")
    assert upgrade["argv"][-2:] == ["--values", str(extra)]
    assert template["argv"][-2:] == ["--values", str(extra)]
    assert ("app.gitlab.com/app" in run.output) == debug
    assert "extra-values-marker-3f9a" not in run.output
    assert_no_secrets(run, fresh_scratch)


def render_config(scratch: Scratch, ref: str) -> dict[str, str]:
    """Run helm_builder:test:config:job on REF; its rendered artifacts, by file name."""
    scratch.checkout_branch(ref)
    run = scratch.gcl(
        "--force-shell-executor",
        "helm_builder:test:config:job",
        variables={"CI_REGISTRY_IMAGE": IMAGE},
    )
    assert run.returncode == 0, run.output
    [folder] = {p.parent for p in (scratch.path / ".gitlab-ci-local").rglob("pipeline-*.yaml")}
    return {path.name: path.read_text() for path in folder.iterdir()}


def assert_tier(rendered: dict[str, str], tier: str, branch: str | None) -> None:
    """The TIER manifests and values are the README's table (dev: for BRANCH's slug)."""
    prefix = f"{branch}." if branch else ""
    release = f"{branch}-{PROJECT}" if branch else PROJECT
    [ingress] = [
        doc
        for doc in yaml.safe_load_all(rendered[f"pipeline-{tier}.yaml"])
        if doc and doc["kind"] == "Ingress"
    ]
    assert ingress["metadata"]["namespace"] == tier
    assert ingress["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    assert (
        ingress["spec"]["ingressClassName"]
        == {
            "prod": "external-nginx",
            "dev": "internal-nginx",
        }[tier]
    )
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [f"{prefix}{PROJECT}.fzen.pro"]
    values = yaml.safe_load(rendered[f"pipeline-{tier}-values.yaml"])
    assert (values["channel"], values["image"]["tag"]) == (
        (branch, branch) if branch else ("release", "latest")
    )


def test_chart_config_renders_the_pipelines_own_tier(fresh_scratch: Scratch) -> None:
    """A dev and a prod pipeline each lint and render the chart with their own tier's deploy
    values, the names of the README's table (the other tier is its own pipelines' check)."""
    feature = render_config(fresh_scratch, "feature/Login_Form")
    assert_tier(feature, "dev", "feature-login-form")
    assert "pipeline-prod.yaml" not in feature
    main = render_config(fresh_scratch, "main")
    assert_tier(main, "prod", None)
    # The chart's own test values are rendered too.
    assert "full-values.yaml" in feature


@pytest.mark.parametrize(
    ("ref", "release"),
    [("dev", f"dev-{PROJECT}"), ("feature/Login_Form", f"feature-login-form-{PROJECT}")],
)
def test_stop_needs_no_artifact_and_no_checkout_stand_in(
    fresh_scratch: Scratch, ref: str, release: str
) -> None:
    """helm:stop:job alone, in a project where no deploy job ever left an artifact (they
    expire before a review environment may be stopped): it uninstalls the release from the
    pipeline's own variables, exactly the names the deploy job used."""
    fresh_scratch.checkout_branch(ref)
    run = fresh_scratch.gcl("--force-shell-executor", "helm:stop:job", "--manual", "helm:stop:job")
    assert run.returncode == 0, run.output
    assert not list((fresh_scratch.path / ".gitlab-ci-local").rglob("deploy.env"))
    assert [c["argv"] for c in run.tool("helm")] == [
        [
            "uninstall",
            release,
            "--namespace",
            "dev",
            "--kube-context",
            "dev/kubernetes-agent-config:kubernetes-agent-dev",
            "--wait",
            "--ignore-not-found",
        ]
    ]
