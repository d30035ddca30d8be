"""The pipeline's cluster jobs against the local control plane, through the agents' contexts.

gitlab-ci-local runs the real jobs with the real Helm (3.17 and 4) and the pinned kubectl on
PATH; the API server, its admission (Pod Security `restricted`), discovery and RBAC are real.
The jobs reach it the way GitLab hands a job its agents: the kubeconfig GitLab writes (a token,
no CA), the API server's private CA known only through PIPELINE_CA_FILE, together with the CA
of the GitLab API stand-in, which serves HTTPS. Pods are simulated (kwok), cert-manager is
played by the cluster fixture, kaniko and crane are the usual stand-ins.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hack import cluster_tools
from hack.cluster import AGENT_CONTEXT, Cluster, crd_files
from hack.pki import Pki
from tests.pipeline.conftest import HELM, Run, build_scratch
from tests.pipeline.pipelinelib import (
    CHART_JOBS,
    IMAGE_JOBS,
    TIERS,
    RealPipeline,
    gitlab,  # noqa: F401 - fixture, over this module's gitlab_ca
    history,
    job_lines,
    leftovers,
    ready_pods,
    x509_line,
)
from tests.support.gitlab_api import GitLabStandIn

PREFLIGHT = "helm:preflight:job"
DEPLOY_JOBS = (*IMAGE_JOBS, *CHART_JOBS, PREFLIGHT, "helm:deploy:job")


@pytest.fixture
def gitlab_ca(tmp_path: Path) -> Pki:
    """The private CA of the GitLab API stand-in's certificate."""
    return Pki(tmp_path / "gitlab-ca")


@pytest.fixture
def real(
    repo_root: Path,
    tmp_path: Path,
    cluster: Cluster,
    gitlab: GitLabStandIn,  # noqa: F811 - the fixture imported above
    gitlab_ca: Pki,
    *,
    verify_url: str,
    request: pytest.FixtureRequest,
) -> RealPipeline:
    """The pipeline with the real Helm of the requested major version, on its tier's branch."""
    base = tmp_path / "real"
    base.mkdir()
    scratch = build_scratch(repo_root, base)
    (scratch.bin / "helm").unlink()
    (scratch.bin / "helm").symlink_to(HELM[request.param])
    # The real kubectl, in place of the stand-in that the other pipeline tests use.
    (scratch.bin / "kubectl").unlink()
    (scratch.bin / "kubectl").symlink_to(cluster_tools.BIN / "kubectl")
    scratch.checkout_branch(TIERS[request.param][0])
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(gitlab_ca.cert_pem() + cluster.ca.read_bytes())
    return RealPipeline(scratch, cluster, gitlab, tmp_path, request.param, verify_url, bundle)


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
    """A main pipeline given the dev agent's context: the preflight names the missing rights in
    prod; with the preflight off, the API server refuses the deploy and the job says so."""
    intruder = {"KUBE_CONTEXT": AGENT_CONTEXT.format(env="dev"), "RELEASE_NAME": "intruder"}
    checked = real.run(PREFLIGHT, **intruder)
    assert checked.returncode != 0
    assert (
        f"the agent of context {intruder['KUBE_CONTEXT']} may not create deployments.apps in"
        " namespace prod: bind it a Role there that allows it (the admin ClusterRole in a"
        " RoleBinding does)"
    ) in gaps(checked)
    unchecked = [job for job in DEPLOY_JOBS if job != PREFLIGHT]
    run = real.run(*unchecked, PIPELINE_PREFLIGHT="false", **intruder)
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


@pytest.mark.parametrize("real", [4, 3], ids=["helm4", "helm3"], indirect=True)
def test_dry_run_job_fails_with_the_api_servers_pod_security_message_simulated(
    real: RealPipeline,
) -> None:
    """Values that Pod Security `restricted` refuses: Helm's own --dry-run=server passes them
    (it sends no object to admission), the server-side dry run of the rendered manifests that
    the job runs next is refused, and the job fails with the API server's message."""
    _branch, namespace, release = real.tier
    risky = values_file(real, "risky", {"securityContext": {"allowPrivilegeEscalation": True}})
    # The session's cluster may hold this release from an earlier test: only no change counts.
    before = history(real.cluster, release, namespace)
    run = real.run("helm_builder:test:deploy:job", VALUES_FILE=risky)
    assert run.returncode != 0
    assert "the cluster refused release" not in run.output, "Helm's own dry run passed them"
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in (
        run.output
    )
    assert "the API server refused the manifests in its server-side dry run" in run.output
    assert history(real.cluster, release, namespace) == before, "a dry run persists nothing"


def gaps(run: Run) -> list[str]:
    """The preflight job's gap lines, in order, without gitlab-ci-local's job prefix (its
    summary of a failed job repeats the last lines: left out)."""
    marker = f"{PREFLIGHT} > PREFLIGHT GAP: "
    return [
        line.removeprefix(marker) for line in run.output.splitlines() if line.startswith(marker)
    ]


def values_file(real: RealPipeline, name: str, values: dict) -> str:
    """A values file for the VALUES_FILE variable."""
    path = real.tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.fixture
def class_reader(cluster: Cluster) -> Iterator[None]:
    """The dev agent may also read IngressClasses, ClusterIssuers (cluster-scoped) and Gateways
    (the `admin` role leaves them out), so the preflight can check them; without this grant
    they are reported as not checked."""
    grant = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "preflight-class-reader"},
            "rules": [
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingressclasses"],
                    "verbs": ["get"],
                },
                {
                    "apiGroups": ["cert-manager.io"],
                    "resources": ["clusterissuers"],
                    "verbs": ["get"],
                },
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": ["gateways"],
                    "verbs": ["get"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "preflight-class-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "preflight-class-reader",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "kubernetes-agent-dev",
                }
            ],
        },
    ]
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": grant})
    cluster.kubectl("apply", "-f", "-", stdin=listed)
    yield
    cluster.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=listed)
    cluster.kubectl(
        "delete", "ingressclass,clusterissuer", "-l", "preflight-test=true", "--ignore-not-found"
    )


def set_ready(cluster: Cluster, kind: str, name: str, status: str, *namespace: str) -> None:
    """Write an issuer's Ready condition, as cert-manager's controller would."""
    condition = {"type": "Ready", "status": status, "reason": "Tested", "message": "set by a test"}
    cluster.kubectl(
        "patch",
        kind,
        name,
        *namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [condition]}}),
    )


@pytest.mark.parametrize("real", [4, 3], ids=["helm4-dev", "helm3-prod"], indirect=True)
def test_preflight_passes_and_says_what_the_agent_cannot_see_simulated(real: RealPipeline) -> None:
    """The pipeline's own values on the local control plane: no gap; the IngressClass and the
    ClusterIssuer are cluster-scoped, which the agent may not read: said, not failed."""
    _branch, namespace, release = real.tier
    run = real.run(PREFLIGHT)
    assert run.returncode == 0, run.output
    assert gaps(run) == []
    assert "IngressClass" in run.output and "ClusterIssuer private-ca not checked" in run.output
    assert f"everything release {release} in {namespace} needs" in run.output


@pytest.mark.usefixtures("class_reader")
@pytest.mark.parametrize("real", [4], ids=["helm4"], indirect=True)
def test_preflight_names_a_missing_ingress_class_and_an_issuer_not_ready_simulated(
    real: RealPipeline,
) -> None:
    """With read access to the cluster-scoped classes: missing ones are gaps naming the input;
    an issuer without a Ready condition, or with Ready False, is a gap; Ready True passes."""
    missing = real.run(PREFLIGHT)
    assert missing.returncode != 0
    assert gaps(missing) == [
        "IngressClass internal-nginx does not exist: set the ingress_class_dev input to one the"
        " cluster has (or the variable INGRESS_CLASS_NAME)",
        "ClusterIssuer private-ca does not exist: set the certificate_issuer_name and"
        " certificate_issuer_kind inputs to an issuer the cluster has",
    ]
    assert "preflight found 2 gap(s) above" in missing.output
    objects = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "internal-nginx", "labels": {"preflight-test": "true"}},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": "private-ca", "labels": {"preflight-test": "true"}},
            "spec": {"ca": {"secretName": "private-ca"}},
        },
    ]
    real.cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    unready = real.run(PREFLIGHT)
    assert unready.returncode != 0
    assert gaps(unready) == [
        "ClusterIssuer private-ca is not Ready (it reports no Ready condition): fix the issuer"
        " (kubectl describe clusterissuers.cert-manager.io private-ca) or choose a Ready one with"
        " the certificate_issuer_name input"
    ]
    set_ready(real.cluster, "clusterissuer", "private-ca", "False")
    failing = real.run(PREFLIGHT)
    assert gaps(failing) == [
        "ClusterIssuer private-ca is not Ready (False: Tested: set by a test): fix the issuer or"
        " choose a Ready one with the certificate_issuer_name input"
    ]
    set_ready(real.cluster, "clusterissuer", "private-ca", "True")
    ready = real.run(PREFLIGHT)
    assert ready.returncode == 0, ready.output
    assert gaps(ready) == []


@pytest.mark.parametrize("real", [4], ids=["helm4"], indirect=True)
def test_preflight_checks_a_namespaced_issuer_with_the_agents_own_rights_simulated(
    real: RealPipeline,
) -> None:
    """An Issuer in the agent's namespace needs no extra grant: missing, then not Ready. The
    public host's issuer is checked as well, naming its own inputs."""
    issuer = {"CERTIFICATE_ISSUER_KIND": "Issuer", "CERTIFICATE_ISSUER_NAME": "dev-ca"}
    public = {"PUBLIC_ISSUER_KIND": "Issuer", "PUBLIC_ISSUER_NAME": "public-ca"}
    missing = real.run(PREFLIGHT, **issuer, **public)
    assert sorted(gaps(missing)) == [
        "Issuer dev-ca does not exist: set the certificate_issuer_name and certificate_issuer_kind"
        " inputs to an issuer the cluster has",
        "Issuer public-ca does not exist: set the public_issuer_name and public_issuer_kind"
        " inputs to an issuer the cluster has",
    ]
    real.cluster.kubectl(
        "create",
        "-n",
        "dev",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Issuer",
                "metadata": {"name": "dev-ca"},
                "spec": {"ca": {"secretName": "dev-ca"}},
            }
        ),
    )
    try:
        set_ready(real.cluster, "issuer", "dev-ca", "False", "-n", "dev")
        failing = real.run(PREFLIGHT, **issuer)
        assert failing.returncode != 0
        assert gaps(failing) == [
            "Issuer dev-ca is not Ready (False: Tested: set by a test): fix the issuer or choose"
            " a Ready one with the certificate_issuer_name input"
        ]
        set_ready(real.cluster, "issuer", "dev-ca", "True", "-n", "dev")
        assert real.run(PREFLIGHT, **issuer).returncode == 0
    finally:
        real.cluster.kubectl("delete", "issuer", "dev-ca", "-n", "dev")


@pytest.mark.parametrize("real", [4], ids=["helm4"], indirect=True)
def test_preflight_names_missing_rights_and_pod_security_refusals_simulated(
    real: RealPipeline,
) -> None:
    """A ServiceMonitor, which the `admin` role does not cover, and a securityContext that Pod
    Security `restricted` refuses: one line per verb and per refused manifest."""
    risky = values_file(
        real,
        "risky",
        {
            "serviceMonitor": {"enabled": True},
            "securityContext": {"allowPrivilegeEscalation": True},
        },
    )
    run = real.run(PREFLIGHT, VALUES_FILE=risky)
    assert run.returncode != 0
    context = AGENT_CONTEXT.format(env="dev")
    assert gaps(run) == [
        *(
            f"the agent of context {context} may not {verb} servicemonitors.monitoring.coreos.com"
            " in namespace dev: bind it a Role there that allows it (the admin ClusterRole in a"
            " RoleBinding does)"
            for verb in ("get", "list", "watch", "create", "patch", "delete")
        ),
        *(
            f"namespace dev's Pod Security level refuses the chart's {kind}: violates PodSecurity"
            f' "restricted:latest": allowPrivilegeEscalation != false ({containers}'
            " must set securityContext.allowPrivilegeEscalation=false): fix the chart values"
            " named there (securityContext, podSecurityContext), or the namespace's"
            " pod-security.kubernetes.io/enforce label"
            for kind, containers in (
                ("Deployment", 'container "flask-example-1"'),
                ("Pod", 'containers "readyz", "prove"'),  # the helm test pod
            )
        ),
    ]
    assert "preflight found 8 gap(s) above" in run.output
    assert history(real.cluster, real.tier[2], "dev") == []


@pytest.mark.usefixtures("class_reader")
@pytest.mark.parametrize("real", [4], ids=["helm4"], indirect=True)
def test_preflight_names_a_missing_gateway_and_the_route_rights_simulated(
    real: RealPipeline,
) -> None:
    """An HTTPRoute to a Gateway that does not exist: a gap naming httpRoute.parentRefs; the
    `admin` role does not cover HTTPRoutes either, one gap per verb."""
    route = values_file(
        real,
        "route",
        {
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "public", "namespace": "dev"}],
                "backendTLS": {"enabled": False},
            }
        },
    )
    found = gaps(real.run(PREFLIGHT, VALUES_FILE=route))
    assert (
        "Gateway public in namespace dev does not exist: fix httpRoute.parentRefs in the values"
        " file, or create the Gateway"
    ) in found
    context = AGENT_CONTEXT.format(env="dev")
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert (
            f"the agent of context {context} may not {verb} httproutes.gateway.networking.k8s.io"
            " in namespace dev: bind it a Role there that allows it (the admin ClusterRole in a"
            " RoleBinding does)"
        ) in found


@pytest.mark.parametrize("real", [4], ids=["helm4"], indirect=True)
def test_preflight_names_a_kind_whose_crd_is_missing_simulated(real: RealPipeline) -> None:
    """With the ServiceMonitor CRD removed, enabling serviceMonitor is a gap naming the project."""
    crd = next(path for path in crd_files() if "servicemonitors" in path.name)
    real.cluster.kubectl("delete", "-f", str(crd), "--wait=true")
    try:
        run = real.run(
            PREFLIGHT,
            VALUES_FILE=values_file(real, "monitor", {"serviceMonitor": {"enabled": True}}),
        )
        assert run.returncode != 0
        assert gaps(run) == [
            "kind ServiceMonitor (monitoring.coreos.com/v1) is not served by the cluster: install"
            " the CRDs of the Prometheus Operator (chart value serviceMonitor.enabled), or turn"
            " that feature off"
        ]
    finally:
        real.cluster.kubectl("apply", "--server-side", "-f", str(crd))
        real.cluster.kubectl("wait", "--for=condition=Established", "-f", str(crd))


@pytest.mark.parametrize("real", [4], ids=["helm4-dev"], indirect=True)
def test_cluster_jobs_fail_with_one_x509_line_without_the_ca_simulated(
    real: RealPipeline, gitlab_ca: Pki
) -> None:
    """GitLab's kubeconfig carries no CA for KAS: without PIPELINE_CA_FILE the dry run and the
    preflight, and with a bundle that holds only GitLab's CA the deploy and the stop, fail on the
    API server's certificate, each with one line saying what to set. Nothing is deployed."""
    _branch, namespace, release = real.tier
    context = AGENT_CONTEXT.format(env="dev")
    kas = f"the agent server (KAS) of context {context}"
    before = history(real.cluster, release, namespace)
    checks = ("helm_builder:test:deploy:job", PREFLIGHT)
    unknown = real.run(*checks, PIPELINE_CA_FILE="")
    assert unknown.returncode != 0
    for job in checks:
        assert x509_line(kas) in job_lines(unknown, job), job

    gitlab_only = real.tmp_path / "gitlab-ca.pem"
    gitlab_only.write_bytes(gitlab_ca.cert_pem())
    lacking = (
        f"ERROR: x509: certificate signed by unknown authority at {kas}: the bundle in"
        f" PIPELINE_CA_FILE ({gitlab_only}) lacks the CA that signed it: set the CI/CD variable"
        " PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of GitLab, its registry and KAS"
    )
    deploy = [job for job in DEPLOY_JOBS if job != PREFLIGHT]
    refused = real.run(*deploy, PIPELINE_PREFLIGHT="false", PIPELINE_CA_FILE=str(gitlab_only))
    assert refused.returncode != 0
    assert "pushed flask-example-1" in refused.output, "GitLab's Helm registry was trusted"
    assert lacking in job_lines(refused, "helm:deploy:job")
    assert history(real.cluster, release, namespace) == before

    # What helm:deploy:job's dotenv report hands the stop job.
    deployed = {
        "DEPLOYED_RELEASE_NAME": release,
        "DEPLOYED_NAMESPACE": namespace,
        "DEPLOYED_KUBE_CONTEXT": context,
    }
    stop = real.run(
        "helm:stop:job", "--manual", "helm:stop:job", PIPELINE_CA_FILE=str(gitlab_only), **deployed
    )
    # (The stop job may fail without failing the pipeline: gitlab-ci-local says WARN.)
    assert re.search(r"helm:stop:job +finished in .* WARN 1", stop.output), stop.output
    assert lacking in job_lines(stop, "helm:stop:job")
