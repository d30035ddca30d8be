"""The pipeline's cluster jobs against the local control plane, through the agents' contexts.

gitlab-ci-local runs the real jobs with the real Helm (3.17 and 4) on PATH; the API server,
its admission (Pod Security `restricted`) and RBAC are real. Pods are simulated (kwok),
cert-manager is played by the cluster fixture, kaniko and crane are the usual stand-ins.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hack.cluster import AGENT_CONTEXT, Cluster
from tests.pipeline.conftest import HELM, PROJECT, Run, Scratch, build_scratch
from tests.pipeline.test_pipeline_jobs import (
    CHART_JOBS,
    IMAGE_JOBS,
    assert_no_secrets,
    registry_variables,
)
from tests.support.gitlab_api import GitLabStandIn

DEPLOY_JOBS = (*IMAGE_JOBS, *CHART_JOBS, "helm:deploy:job")
TIERS = {
    # helm major -> (branch, namespace, release): Helm 4 deploys a review branch to dev,
    # Helm 3.17 deploys main to prod, as test_pipeline_jobs' DEPLOYS do.
    4: ("feature/Login_Form", "dev", f"feature-login-form-{PROJECT}"),
    3: ("main", "prod", PROJECT),
}


@dataclass
class RealPipeline:
    """A scratch repository whose `helm` is the real one of one major version, the cluster
    and the GitLab stand-in: runs jobs as one pipeline each."""

    scratch: Scratch
    cluster: Cluster
    gitlab: GitLabStandIn
    tmp_path: Path
    helm: int

    @property
    def tier(self) -> tuple[str, str, str]:
        """(branch, namespace, release) of this Helm's tier."""
        return TIERS[self.helm]

    def run(self, *jobs: str, **variables: str) -> Run:
        """Run jobs as one pipeline, with the cluster's kubeconfig where the agent puts it."""
        with self.cluster.playing_cert_manager(self.tier[1]):
            run = self.scratch.gcl(
                "--force-shell-executor",
                *jobs,
                variables={
                    **registry_variables(self.tmp_path),
                    "CI_API_V4_URL": self.gitlab.url,
                    "KUBECONFIG": str(self.cluster.kubeconfig),
                    **variables,
                },
                helm=self.helm,
            )
        assert_no_secrets(run, self.scratch)
        return run


@pytest.fixture
def real(
    repo_root: Path,
    tmp_path: Path,
    cluster: Cluster,
    gitlab: GitLabStandIn,
    request: pytest.FixtureRequest,
) -> RealPipeline:
    """The pipeline with the real Helm of the requested major version, on its tier's branch."""
    base = tmp_path / "real"
    base.mkdir()
    scratch = build_scratch(repo_root, base)
    (scratch.bin / "helm").unlink()
    (scratch.bin / "helm").symlink_to(HELM[request.param])
    scratch.checkout_branch(TIERS[request.param][0])
    return RealPipeline(scratch, cluster, gitlab, tmp_path, request.param)


def history(cluster: Cluster, release: str, namespace: str) -> list[tuple[int, str]]:
    """The release's revisions and their status, as Helm stores them (admin's view)."""
    out = cluster.kubectl(
        "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={release}", "-o", "json"
    )
    items = json.loads(out.stdout)["items"]
    found = [
        (int(s["metadata"]["labels"]["version"]), s["metadata"]["labels"]["status"]) for s in items
    ]
    return sorted(found)


def ready_pods(cluster: Cluster, release: str, namespace: str) -> list[str]:
    """Names of the release's pods that are Running and Ready (simulated by kwok)."""
    out = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
    )
    ready = []
    for pod in json.loads(out.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if pod["status"]["phase"] == "Running" and conditions.get("Ready") == "True":
            ready.append(pod["metadata"]["name"])
    return ready


def leftovers(cluster: Cluster, release: str, namespace: str) -> str:
    """Every object of the release still in the namespace (helm's own records included)."""
    labelled = cluster.kubectl(
        "get",
        "all,ingress,certificate,pdb,networkpolicy,serviceaccount,configmap,secret",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "name",
    ).stdout
    records = cluster.kubectl(
        "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={release}", "-o", "name"
    ).stdout
    return (labelled + records).strip()


@pytest.mark.parametrize("real", [4, 3], ids=["helm4-dev", "helm3-prod"], indirect=True)
def test_deploy_installs_upgrades_and_tests_the_release_simulated(real: RealPipeline) -> None:
    """Two pipelines: install, then upgrade; each waits for Ready pods and runs helm test;
    a review release is then stopped by helm:stop:job and nothing of it is left."""
    _branch, namespace, release = real.tier
    jobs = list(DEPLOY_JOBS)
    first = real.run(*jobs)
    assert first.returncode == 0, first.output
    assert history(real.cluster, release, namespace) == [(1, "deployed")]
    assert len(ready_pods(real.cluster, release, namespace)) == 2
    assert "Phase:          Succeeded" in first.output

    real.scratch.git("commit", "-q", "--allow-empty", "-m", "second pipeline")
    if namespace == "dev":
        jobs += ["helm:stop:job", "--manual", "helm:stop:job"]
    second = real.run(*jobs)
    assert second.returncode == 0, second.output
    assert "Phase:          Succeeded" in second.output
    if namespace == "dev":
        assert leftovers(real.cluster, release, namespace) == ""
    else:
        assert history(real.cluster, release, namespace) == [(1, "superseded"), (2, "deployed")]
        assert len(ready_pods(real.cluster, release, namespace)) == 2
        deployment = json.loads(
            real.cluster.kubectl("get", "deploy", release, "-n", namespace, "-o", "json").stdout
        )
        assert "@sha256:" in deployment["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize("real", [4, 3], ids=["helm4", "helm3"], indirect=True)
def test_a_release_that_never_gets_ready_rolls_back_and_fails_clearly_simulated(
    real: RealPipeline,
) -> None:
    """An upgrade whose pods can never be scheduled times out, rolls back by itself, and the
    job fails with the deploy script's line; the history shows the failed revision."""
    namespace = real.tier[1]
    release = f"never-ready-h{real.helm}"
    good = real.run(*DEPLOY_JOBS, RELEASE_NAME=release)
    assert good.returncode == 0, good.output
    unschedulable = real.tmp_path / "unschedulable.yaml"
    unschedulable.write_text(yaml.safe_dump({"nodeSelector": {"simulated-node": "none"}}))
    real.scratch.git("commit", "-q", "--allow-empty", "-m", "never ready")
    bad = real.run(
        *DEPLOY_JOBS,
        RELEASE_NAME=release,
        VALUES_FILE=str(unschedulable),
        DEPLOY_TIMEOUT="20s",
    )
    assert bad.returncode != 0
    assert (
        f"deploying release {release} to {namespace} failed, helm's error above says why"
    ) in bad.output
    assert history(real.cluster, release, namespace) == [
        (1, "superseded"),
        (2, "failed"),
        (3, "deployed"),
    ]
    assert len(ready_pods(real.cluster, release, namespace)) == 2
    real.cluster.kubectl(
        "delete",
        "secrets,deploy,svc,ingress,certificate,pdb,sa",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release}",
        "--wait=false",
    )


@pytest.mark.parametrize("real", [3], ids=["helm3"], indirect=True)
def test_the_dev_agent_cannot_deploy_to_prod_simulated(real: RealPipeline) -> None:
    """A main pipeline given the dev agent's context is refused by the API server in prod."""
    run = real.run(
        *DEPLOY_JOBS,
        KUBE_CONTEXT=AGENT_CONTEXT.format(env="dev"),
        RELEASE_NAME="intruder",
    )
    assert run.returncode != 0
    assert 'User "kubernetes-agent-dev" cannot' in run.output
    assert 'in the namespace "prod"' in run.output
    assert "deploying release intruder to prod failed" in run.output
    assert history(real.cluster, "intruder", "prod") == []


@pytest.mark.parametrize("real", [4, 3], ids=["helm4", "helm3"], indirect=True)
def test_dry_run_job_passes_the_real_chart_simulated(real: RealPipeline) -> None:
    """helm_builder:test:deploy:job through the agent's context accepts the real chart."""
    run = real.run("helm_builder:test:deploy:job")
    assert run.returncode == 0, run.output
    assert "--dry-run=server" in run.output
