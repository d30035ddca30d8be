"""The chart installs on the local control plane with real Helm 3 and 4; pods are simulated.

kwok plays the kubelet (pods get Running and Ready, the Helm test pod Succeeded), nothing runs
the image. cert-manager's controller does not run either: a step of the test plays it.
"""

import base64
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hack.cluster import AGENT_CONTEXT, Cluster, Pki

ROOT = Path(__file__).resolve().parents[2]
HELMS = {
    "helm3": ROOT / ".tools" / "helm3" / "helm",
    "helm4": ROOT / ".tools" / "helm4" / "helm",
}
DEV = AGENT_CONTEXT.format(env="dev")
DIGEST = "sha256:" + "ab" * 32
# The README's "Deploy it yourself" values.
README_VALUES = {
    "image.repository": "registry.example.com/group/flask-example-1",
    "image.digest": DIGEST,
    "host": "flask-example-1.example.com",
    "tls.enabled": "true",
    "certificate.enabled": "true",
    "certificate.issuerRef.name": "local-ca",
    "ingress.enabled": "true",
    "ingress.className": "nginx",
}


def helm(
    cluster: Cluster, name: str, home: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one real Helm against the cluster as the dev agent."""
    env = dict(
        os.environ,
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return subprocess.run(
        [str(HELMS[name]), f"--kubeconfig={cluster.kubeconfig}", f"--kube-context={DEV}", *args],
        capture_output=True,
        text=True,
        check=check,
        env=env,
        timeout=300,
    )


def play_cert_manager(cluster: Cluster, name: str, pki: Pki, stop: threading.Event) -> None:
    """Do what cert-manager's controller would: fill the Secret, mark the Certificate Ready."""
    while not stop.is_set():
        out = cluster.kubectl("get", "certificate", name, "-n", "dev", "-o", "json", check=False)
        if out.returncode == 0:
            break
        time.sleep(0.3)
    else:
        return
    spec = json.loads(out.stdout)["spec"]
    crt, key = pki.issue(name, spec["dnsNames"][0], sans=tuple(spec["dnsNames"]))
    secret = json.loads(
        cluster.kubectl(
            "create",
            "secret",
            "tls",
            spec["secretName"],
            "-n",
            "dev",
            f"--cert={crt}",
            f"--key={key}",
            "--dry-run=client",
            "-o",
            "json",
        ).stdout
    )
    secret["data"]["ca.crt"] = base64.b64encode(pki.cert_pem()).decode()
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}}
    cluster.kubectl(
        "patch",
        "certificate",
        name,
        "-n",
        "dev",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )


@pytest.mark.parametrize("helm_name", sorted(HELMS))
def test_readme_install_gets_ready_simulated_pods_and_helm_test_passes(
    cluster: Cluster, helm_name: str, tmp_path: Path
) -> None:
    """`helm upgrade --install --wait` as the dev agent with the README's values; `helm test`."""
    assert HELMS[helm_name].is_file(), f"{HELMS[helm_name]} is missing: run `make tools`"
    release = f"readme-{helm_name}"
    fullname = f"{release}-flask-example-1"
    sets = [f"--set={key}={value}" for key, value in README_VALUES.items()]
    stop = threading.Event()
    player = threading.Thread(
        target=play_cert_manager, args=(cluster, fullname, Pki(tmp_path / "issuer"), stop)
    )
    player.start()
    try:
        began = time.monotonic()
        helm(
            cluster,
            helm_name,
            tmp_path,
            "upgrade",
            "--install",
            release,
            str(ROOT / "chart"),
            "-n",
            "dev",
            "--wait",
            "--timeout=3m",
            *sets,
        )
        cluster.timings[f"{helm_name} upgrade --install --wait"] = time.monotonic() - began
    finally:
        stop.set()
        player.join()
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", "dev", "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
        ).stdout
    )["items"]
    assert len(pods) == 2
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert (pod["status"]["phase"], ready["Ready"]) == ("Running", "True")
        assert pod["spec"]["containers"][0]["image"].endswith(f"@{DIGEST}")
    tested = helm(cluster, helm_name, tmp_path, "test", release, "-n", "dev")
    assert "Succeeded" in tested.stdout
    helm(cluster, helm_name, tmp_path, "uninstall", release, "-n", "dev", "--wait")
    left = cluster.kubectl(
        "get",
        "all,certificate,ingress,secret,configmap",
        "-n",
        "dev",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "name",
    )
    assert left.stdout.strip() == ""
