"""The local control plane says no the way a real one does: admission, RBAC, served CRDs."""

import base64
import json
import subprocess

import pytest

from hack.cluster import AGENT_CONTEXT, CRDS, Cluster, cluster_tools

DEV = AGENT_CONTEXT.format(env="dev")
PROD = AGENT_CONTEXT.format(env="prod")


def privileged_pod(name: str) -> str:
    """A pod that Pod Security `restricted` (and `baseline`) refuses."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
                ]
            },
        }
    )


def test_control_plane_runs_the_pinned_kubernetes(cluster: Cluster) -> None:
    """The API server answers as the version hack/tools/kubernetes pins, through the kubeconfig."""
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert (
        out["serverVersion"]["gitVersion"] == f"v{cluster_tools.TOOLS['kube-apiserver'].pinned()}"
    )
    assert set(cluster.timings) >= {"etcd", "kube-apiserver", "ready"}


def test_pod_security_restricted_rejects_a_privileged_pod_in_dev(cluster: Cluster) -> None:
    """The namespace label makes the API server's PodSecurity admission refuse the pod."""
    labels = json.loads(cluster.kubectl("get", "namespace", "dev", "-o", "json").stdout)
    assert labels["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    out = cluster.kubectl(
        "apply", "-n", "dev", "-f", "-", stdin=privileged_pod("privileged"), check=False
    )
    assert out.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in out.stderr
    assert "privileged (container" in out.stderr


def test_a_namespace_without_the_label_admits_the_same_pod(cluster: Cluster) -> None:
    """The control for the test above: the rejection comes from the label, not the API server."""
    cluster.kubectl("create", "namespace", "unlabelled")
    out = cluster.kubectl(
        "apply", "-n", "unlabelled", "--dry-run=server", "-f", "-", stdin=privileged_pod("p")
    )
    assert "pod/p created (server dry run)" in out.stdout


def test_dev_agent_can_create_in_dev(cluster: Cluster) -> None:
    """The dev agent holds `admin` in dev."""
    out = cluster.kubectl("create", "configmap", "from-dev-agent", "-n", "dev", context=DEV)
    assert "configmap/from-dev-agent created" in out.stdout


@pytest.mark.parametrize(("context", "namespace"), [(DEV, "prod"), (PROD, "dev"), (DEV, "default")])
def test_an_agent_is_forbidden_outside_its_namespace(
    cluster: Cluster, context: str, namespace: str
) -> None:
    """Each agent's rights end at its own namespace, as the API server reports."""
    user = context.rsplit(":", 1)[1]
    out = cluster.kubectl(
        "create", "configmap", "intruder", "-n", namespace, context=context, check=False
    )
    assert out.returncode != 0
    assert (
        f'User "{user}" cannot create resource "configmaps" in API group "" '
        f'in the namespace "{namespace}"'
    ) in out.stderr


@pytest.mark.parametrize(
    ("verb", "resource"),
    [("list", "namespaces"), ("create", "clusterroles"), ("list", "nodes"), ("create", "crds")],
)
def test_dev_agent_has_no_cluster_scoped_rights(cluster: Cluster, verb: str, resource: str) -> None:
    """Nothing cluster-wide: what GitLab's ci_access to one namespace gives a job."""
    out = cluster.kubectl("auth", "can-i", verb, resource, context=DEV, check=False)
    assert out.stdout.strip() == "no"


def test_the_pinned_crds_are_served(cluster: Cluster) -> None:
    """Every kind the chart can render beyond the core API is served, as each project defines it."""
    resources = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    for name in (
        "certificates.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
        "httproutes.gateway.networking.k8s.io",
        "backendtlspolicies.gateway.networking.k8s.io",
        "servicemonitors.monitoring.coreos.com",
    ):
        assert name in resources
    crd = json.loads(
        cluster.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", "-o", "json").stdout
    )
    gateway_version = next(mod for mod in CRDS if mod.startswith("sigs.k8s.io/gateway-api@"))
    assert (
        crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"]
        == (gateway_version.split("@")[1])
    )


def test_the_dev_agent_may_manage_certificates_in_dev(cluster: Cluster) -> None:
    """cert-manager's aggregated role (as its chart installs it) extends `admin` to Certificates."""
    out = cluster.kubectl(
        "auth",
        "can-i",
        "create",
        "certificates.cert-manager.io",
        "-n",
        "dev",
        context=DEV,
        check=False,
    )
    assert out.stdout.strip() == "yes"


def test_the_cert_manager_player_issues_the_secret_and_marks_the_certificate_ready_stand_in(
    cluster: Cluster,
) -> None:
    """cert-manager's controller does not run here; the test step that plays it writes the
    Certificate's Secret (a certificate for its DNS names, with ca.crt) and sets Ready True."""
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "played"},
        "spec": {
            "secretName": "played-tls",
            "dnsNames": ["played.dev.svc"],
            "issuerRef": {"name": "private-ca", "kind": "ClusterIssuer"},
        },
    }
    with cluster.playing_cert_manager("dev"):
        cluster.kubectl("apply", "-n", "dev", "-f", "-", stdin=json.dumps(certificate), context=DEV)
        cluster.kubectl(
            "wait", "-n", "dev", "--for=condition=Ready", "--timeout=30s", "certificate/played"
        )
    secret = json.loads(
        cluster.kubectl("get", "secret", "played-tls", "-n", "dev", "-o", "json").stdout
    )
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=base64.b64decode(secret["data"]["tls.crt"]),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "DNS:played.dev.svc" in text
    cluster.kubectl("delete", "certificate/played", "secret/played-tls", "-n", "dev")
