"""The pipeline's prod deploy values on the local control plane: Ready pods, and a node drain
that the PodDisruptionBudget holds to one pod at a time. The eviction API is the real API
server's, the budget's status the real kube-controller-manager's disruption controller's;
pods are simulated by kwok."""

import json
import os
import subprocess
import time
from pathlib import Path

from hack.cluster import AGENT_CONTEXT, HELMS, NODE, ROOT, Cluster
from tests.chart.chartlib import PIPELINE_PULL_CREDENTIAL, PIPELINE_TIERS, pipeline_values

PROD = AGENT_CONTEXT.format(env="prod")


def helm_as_prod_agent(cluster: Cluster, home: Path, *args: str) -> None:
    """Run Helm 4 against the cluster as the prod agent, as the deploy job does."""
    env = dict(os.environ, HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home))
    subprocess.run(
        [str(HELMS[4]), f"--kubeconfig={cluster.kubeconfig}", f"--kube-context={PROD}", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=300,
    )


def evict(cluster: Cluster, pod: str) -> subprocess.CompletedProcess[str]:
    """Ask the API server to evict a pod (policy/v1 Eviction), as `kubectl drain` does."""
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}
    return cluster.kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/prod/pods/{pod}/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
        check=False,
    )


def disruptions_allowed(cluster: Cluster, release: str) -> int | None:
    """The budget's status as the disruption controller last wrote it."""
    status = json.loads(
        cluster.kubectl("get", "pdb", release, "-n", "prod", "-o", "json").stdout
    ).get("status", {})
    return status.get("disruptionsAllowed")


def test_prod_values_get_ready_pods_and_a_drain_evicts_one_at_a_time(
    cluster: Cluster, tmp_path: Path
) -> None:
    release = PIPELINE_TIERS["prod"]["RELEASE_NAME"]
    install = ["upgrade", "--install", release, str(ROOT / "chart"), "--namespace=prod"]
    install += ["--values", str(pipeline_values("prod")), "--set-string", PIPELINE_PULL_CREDENTIAL]
    with cluster.playing_cert_manager("prod"):
        helm_as_prod_agent(cluster, tmp_path, *install, "--wait", "--timeout=3m")
    try:
        listed = cluster.kubectl(
            "get", "pods", "-n", "prod", "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
        )
        pods = json.loads(listed.stdout)["items"]
        assert len(pods) == 2
        for pod in pods:
            ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
            assert ready["Ready"] == "True", pod["metadata"]["name"]
        deadline = time.monotonic() + 60
        while disruptions_allowed(cluster, release) != 1:
            assert time.monotonic() < deadline, "the disruption controller never counted the pods"
            time.sleep(0.5)
        # A drain cordons the node first: the evicted pod's replacement stays Pending.
        cluster.kubectl("cordon", NODE)
        first, second = (evict(cluster, pod["metadata"]["name"]) for pod in pods)
        assert first.returncode == 0, first.stderr
        assert second.returncode != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget" in second.stderr
        assert disruptions_allowed(cluster, release) == 0
    finally:
        cluster.kubectl("uncordon", NODE)
        helm_as_prod_agent(cluster, tmp_path, "uninstall", release, "--namespace=prod", "--wait")
