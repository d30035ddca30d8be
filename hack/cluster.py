"""A local Kubernetes control plane on loopback: real API server, simulated nodes and pods.

Real: etcd, kube-apiserver (default admission plugins, PodSecurity among them;
authorization Node,RBAC; client-certificate identities; service-account
signing keys), kube-controller-manager (Deployments, ReplicaSets, service
accounts, garbage collection) and kube-scheduler.
Simulated: nodes and the kubelet's pod status, by kwok with its own stages:
pods get Running and Ready, Job pods and Helm test pods (hook `test`) get
Succeeded. Nothing runs a container image.

    python3 -m hack.cluster up [--dir build/cluster]     start in the background
    python3 -m hack.cluster down [--dir build/cluster]   stop, leave no process

The kubeconfig (`<dir>/kubeconfig`) has the contexts `admin`,
`dev/kubernetes-agent-config:kubernetes-agent-dev` and
`dev/kubernetes-agent-config:kubernetes-agent-prod`: the agents' identities
hold the `admin` ClusterRole only in their own namespace (`dev`, `prod`),
both labelled Pod Security `restricted`. The CRDs the chart can render come
from their projects' Go modules through the Go module proxy.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hack import cluster_tools
from hack.pki import Pki

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "cluster"
NAMESPACES = ("dev", "prod")
AGENT_CONTEXT = "dev/kubernetes-agent-config:kubernetes-agent-{env}"
# The agents' numeric ids, as GitLab numbers them in the kubeconfig it gives a job.
AGENT_IDS = {"dev": 1, "prod": 2}
SERVICE_CIDR = "10.96.0.0/16"
NODE = "kwok-node-0"
HELMS = {3: ROOT / ".tools" / "helm3" / "helm", 4: ROOT / ".tools" / "helm4" / "helm"}
# The README's "Deploy it yourself" values (the image is never pulled: pods are simulated).
README_VALUES = {
    "image.repository": "registry.example.com/group/flask-example-1",
    "image.digest": "sha256:" + "ab" * 32,
    "host": "flask-example-1.example.com",
    "tls.enabled": "true",
    "certificate.enabled": "true",
    "certificate.issuerRef.name": "local-ca",
    "ingress.enabled": "true",
    "ingress.className": "nginx",
}
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

# module@version -> the CRD files of that module the chart can need.
CRDS = {
    "github.com/cert-manager/cert-manager@v1.21.2": [
        "deploy/crds/cert-manager.io_certificates.yaml",
        "deploy/crds/cert-manager.io_issuers.yaml",
        "deploy/crds/cert-manager.io_clusterissuers.yaml",
    ],
    "sigs.k8s.io/gateway-api@v1.4.1": [
        "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
        "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
        "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
        "config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml",
    ],
    "github.com/prometheus-operator/prometheus-operator@v0.85.0": [
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    ],
}

# kwok's own stages, from its module at the version hack/tools/kwok pins.
KWOK_STAGES = [
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
]

# Ours: kwok completes only Job pods; a Helm test hook pod is a bare pod that
# the real kubelet would run to completion, so it gets Succeeded once Running.
HELM_TEST_STAGE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete-helm-test
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["helm.sh/hook"]'
      operator: 'In'
      values: ['test', 'test-success']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - type: Ready
        status: "False"
        reason: PodCompleted
        lastTransitionTime: {{ $now | Quote }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            reason: Completed
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
"""


class ClusterError(RuntimeError):
    """The control plane could not start; the message says why and what to look at."""


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig(server: str, ca: Path, users: dict[str, tuple[Path, Path]], current: str) -> str:
    """A kubeconfig with one context per user (named as the user), credentials embedded."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [
            {
                "name": ctx,
                "user": {"client-certificate-data": b64(crt), "client-key-data": b64(key)},
            }
            for ctx, (crt, key) in users.items()
        ],
        "contexts": [{"name": ctx, "context": {"cluster": "local", "user": ctx}} for ctx in users],
        "current-context": current,
    }
    return json.dumps(config, indent=2) + "\n"


def gitlab_kubeconfig(server: str, job_token: str) -> str:
    """The kubeconfig GitLab hands a CI/CD job for its authorized agents, shaped as GitLab's
    Ci::GenerateKubeconfigService writes it (app/services/ci/generate_kubeconfig_service.rb and
    lib/gitlab/kubernetes/kubeconfig/ in gitlabhq): one cluster `gitlab` with the agent
    server's URL and no certificate-authority-data, one user `agent:<id>` per agent with the
    token `ci:<id>:<job token>`, and one context `<agent project path>:<agent name>` each; no
    current context. Here the API server plays the agent server (KAS) and the agent."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gitlab", "cluster": {"server": server}}],
        "users": [
            {"name": f"agent:{agent}", "user": {"token": f"ci:{agent}:{job_token}"}}
            for agent in AGENT_IDS.values()
        ],
        "contexts": [
            {
                "name": AGENT_CONTEXT.format(env=env),
                "context": {"cluster": "gitlab", "user": f"agent:{agent}"},
            }
            for env, agent in AGENT_IDS.items()
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def readme_install(release: str, namespace: str = "dev") -> list[str]:
    """Helm arguments: `upgrade --install --wait` of the chart with the README's values."""
    return [
        "upgrade",
        "--install",
        release,
        str(ROOT / "chart"),
        f"--namespace={namespace}",
        "--wait",
        "--timeout=3m",
        *(f"--set={key}={value}" for key, value in README_VALUES.items()),
    ]


def module_dir(module_at_version: str) -> Path:
    """Download a Go module through the module proxy (checksum-verified); return its folder."""
    go = shutil.which("go")
    if go is None:
        raise ClusterError(
            "cluster: Go is needed to download the CRDs and kwok's stages: install Go 1.26"
        )
    out = subprocess.run(
        [go, "mod", "download", "-json", module_at_version],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local"),
    )
    info = json.loads(out.stdout or "{}")
    if out.returncode or "Dir" not in info:
        detail = info.get("Error") or out.stderr.strip()
        raise ClusterError(f"cluster: cannot download {module_at_version}: {detail}")
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    """The pinned CRD definitions, from their projects' own modules."""
    return [module_dir(mod) / path for mod, paths in CRDS.items() for path in paths]


def kwok_config() -> str:
    """kwok's stages (node and pod lifecycles) plus our stage for Helm test pods."""
    version = cluster_tools.TOOLS["kwok"].pinned()
    folder = module_dir(f"sigs.k8s.io/kwok@v{version}")
    docs = [(folder / path).read_text(encoding="utf-8").strip() for path in KWOK_STAGES]
    return "\n---\n".join([*docs, HELM_TEST_STAGE.strip()]) + "\n"


@dataclass
class Cluster:
    """The control plane's processes and files, all under one folder."""

    folder: Path = DEFAULT_DIR
    timings: dict[str, float] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig with the admin and agent contexts."""
        return self.folder / "kubeconfig"

    @property
    def gitlab_kubeconfig(self) -> Path:
        """The agents' contexts as GitLab writes them for a job: a token, no CA."""
        return self.folder / "gitlab-kubeconfig"

    @property
    def ca(self) -> Path:
        """The CA that signed the API server's certificate (the one `gitlab-kubeconfig` lacks)."""
        return self.folder / "pki" / "ca.crt"

    @property
    def pidfile(self) -> Path:
        return self.folder / "pids.json"

    def kubectl(
        self, *args: str, context: str = "admin", stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster."""
        return subprocess.run(
            [
                str(cluster_tools.BIN / "kubectl"),
                f"--kubeconfig={self.kubeconfig}",
                f"--context={context}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=180,
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.folder,
            )
        self._procs[name] = proc
        pids = self._pids()
        pids[name] = proc.pid
        self.pidfile.write_text(json.dumps(pids), encoding="utf-8")

    def _pids(self) -> dict[str, int]:
        try:
            return json.loads(self.pidfile.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def _alive(self, name: str) -> bool:
        if name in self._procs:
            return self._procs[name].poll() is None
        # started by another process (`up`, then `down`): trust the pid only while it runs ours
        pid = self._pids().get(name)
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            with Path(f"/proc/{pid}/stat").open() as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and Path(os.fsdecode(cmdline)).name == name

    def _wait(self, what: str, ready, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in self._pids():
                if not self._alive(name):
                    tail = (self.folder / "logs" / f"{name}.log").read_text(errors="replace")[
                        -2000:
                    ]
                    self.stop()
                    raise ClusterError(
                        f"cluster: {name} exited while waiting for {what}; its log ends:\n{tail}"
                    )
            if ready():
                return
            time.sleep(0.2)
        self.stop()
        raise ClusterError(
            f"cluster: {what} not ready after {timeout:.0f} s; see {self.folder / 'logs'}"
        )

    def _https_ok(self, url: str, context: ssl.SSLContext) -> bool:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def _etcd_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (loopback)
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def running(self) -> bool:
        """Whether every program of this cluster still runs."""
        pids = self._pids()
        return bool(pids) and all(self._alive(name) for name in pids)

    def start(self) -> None:
        """Start every program in the background and wait until pods can be scheduled."""
        if self.running():
            print(f"cluster: already running; kubeconfig {self.kubeconfig}")
            return
        self.stop()
        began = time.monotonic()
        binaries = cluster_tools.ensure(["kubectl", *PROGRAMS])
        crds = crd_files()
        kwok_yaml = kwok_config()
        self.timings["tools"] = time.monotonic() - began
        began = time.monotonic()
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self.folder.chmod(0o700)
        pki = Pki(self.folder / "pki")
        ca = pki.folder / "ca.crt"
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            sans=(
                "127.0.0.1",
                str(next(ipaddress.ip_network(SERVICE_CIDR).hosts())),
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        sa_key, sa_pub = pki.service_account_keys()
        users = {
            "admin": pki.issue("admin", "admin", ("system:masters",)),
            **{
                AGENT_CONTEXT.format(env=env): pki.issue(f"agent-{env}", f"kubernetes-agent-{env}")
                for env in NAMESPACES
            },
        }
        components = {
            "kube-controller-manager": pki.issue("kcm", "system:kube-controller-manager"),
            "kube-scheduler": pki.issue("scheduler", "system:kube-scheduler"),
            # kwok plays the kubelet of every fake node: it writes node and pod status.
            "kwok": pki.issue("kwok", "kwok", ("system:masters",)),
        }
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig.write_text(kubeconfig(server, ca, users, "admin"), encoding="utf-8")
        self.kubeconfig.chmod(0o600)
        for name, creds in components.items():
            (self.folder / f"{name}.kubeconfig").write_text(
                kubeconfig(server, ca, {name: creds}, name), encoding="utf-8"
            )
        tokens = self._agent_tokens(server)
        # kwok answers the API server's log requests for the simulated containers
        simulated_log = self.folder / "simulated-container.log"
        simulated_log.write_text(  # the CRI log format: time, stream, full line, text
            f"{datetime.datetime.now(datetime.UTC).isoformat()} stdout F"
            " simulated container: kwok plays the kubelet, nothing ran the image\n",
            encoding="utf-8",
        )
        logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "simulated-containers"},
            "spec": {"logs": [{"logsFile": str(simulated_log), "follow": False}]},
        }
        (self.folder / "kwok.yaml").write_text(
            f"{kwok_yaml}---\n{json.dumps(logs)}\n", encoding="utf-8"
        )
        kwok_serving = pki.issue("kwok-serving", "kwok", sans=("127.0.0.1",))

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--listen-metrics-urls=",
                # a test cluster: its data is thrown away, durability buys nothing
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: self._etcd_ok(f"{etcd_url}/health"))
        self.timings["etcd"] = time.monotonic() - began
        self._spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving[0]}",
                f"--tls-private-key-file={serving[1]}",
                f"--client-ca-file={ca}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                # the apiserver's own check would refuse privileged pods everywhere: allow them,
                # as kubeadm does, so that Pod Security is what decides per namespace
                "--allow-privileged=true",
                # a loopback address cannot back the `kubernetes` Service (no pod needs it)
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
            ],
        )
        admin = ssl.create_default_context(cafile=str(ca))
        admin.load_cert_chain(*users["admin"])
        self._wait("kube-apiserver", lambda: self._https_ok(f"{server}/readyz", admin))
        self.timings["kube-apiserver"] = time.monotonic() - began
        self._bootstrap(crds)
        self.timings["bootstrap"] = time.monotonic() - began

        common = ["--leader-elect=false", "--secure-port=0"]
        self._spawn(
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={self.folder / 'kube-controller-manager.kubeconfig'}",
                *common,
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={ca}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                f"--kubeconfig={self.folder / 'kube-scheduler.kubeconfig'}",
                *common,
            ],
        )
        self._spawn_kwok(binaries["kwok"], kwok_serving)
        self._wait("the simulated node", self._node_ready)
        self._wait("the service accounts of dev and prod", self._service_accounts_ready)
        self.timings["ready"] = time.monotonic() - began

    def _agent_tokens(self, server: str) -> Path:
        """The agents as a job reaches them through GitLab: one bearer token per agent, which
        the API server maps to the agent's identity (a static token file: token,user,uid);
        writes gitlab-kubeconfig with them and returns the token file."""
        job_token = secrets.token_urlsafe(24)
        tokens = self.folder / "agent-tokens.csv"
        tokens.write_text(
            "".join(
                f"ci:{agent}:{job_token},kubernetes-agent-{env},agent-{agent}\n"
                for env, agent in AGENT_IDS.items()
            ),
            encoding="utf-8",
        )
        tokens.chmod(0o600)
        self.gitlab_kubeconfig.write_text(gitlab_kubeconfig(server, job_token), encoding="utf-8")
        self.gitlab_kubeconfig.chmod(0o600)
        return tokens

    def _spawn_kwok(self, binary: Path, serving: tuple[Path, Path], attempts: int = 5) -> None:
        """Start kwok on a free port; pick another when the port was taken meanwhile (the
        API server's connections to etcd draw from the same ephemeral range)."""
        log = self.folder / "logs" / "kwok.log"
        for _ in range(attempts):
            seen = log.stat().st_size if log.exists() else 0
            port = free_port()
            self._spawn(
                "kwok",
                [
                    str(binary),
                    f"--kubeconfig={self.folder / 'kwok.kubeconfig'}",
                    f"--config={self.folder / 'kwok.yaml'}",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    "--node-lease-duration-seconds=40",
                    "--node-ip=127.0.0.1",
                    f"--node-port={port}",
                    f"--server-address=127.0.0.1:{port}",
                    f"--tls-cert-file={serving[0]}",
                    f"--tls-private-key-file={serving[1]}",
                ],
            )
            deadline = time.monotonic() + 5
            while self._procs["kwok"].poll() is None:
                if time.monotonic() > deadline or self._node_ready():
                    return  # serving
                time.sleep(0.2)
            with log.open("rb") as text:
                text.seek(seen)
                if b"address already in use" not in text.read():
                    return  # another failure: _wait reports it with the log
        raise ClusterError(f"cluster: kwok found no free port in {attempts} attempts; see {log}")

    def _bootstrap(self, crds: list[Path]) -> None:
        """Namespaces, the agents' RoleBindings, a fake node and the CRDs."""
        objects: list[dict] = []
        for env in NAMESPACES:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": env,
                        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                    },
                }
            )
            objects.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": f"kubernetes-agent-{env}-admin", "namespace": env},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "admin",
                    },
                    "subjects": [
                        {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "User",
                            "name": f"kubernetes-agent-{env}",
                        }
                    ],
                }
            )
        # cert-manager's chart extends the `admin` role to its namespaced kinds (aggregated
        # roles); its controller does not run here, so we install that piece ourselves.
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": "cert-manager-edit",
                    "labels": {
                        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                    },
                },
                "rules": [
                    {
                        "apiGroups": ["cert-manager.io"],
                        "resources": ["certificates", "certificaterequests", "issuers"],
                        "verbs": [
                            "get",
                            "list",
                            "watch",
                            "create",
                            "update",
                            "patch",
                            "delete",
                            "deletecollection",
                        ],
                    }
                ],
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": NODE,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": NODE,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                # ephemeral-storage too: without it the scheduler places no pod that requests some.
                "status": {
                    "allocatable": {
                        "cpu": "32",
                        "memory": "256Gi",
                        "ephemeral-storage": "100Gi",
                        "pods": "110",
                    },
                    "capacity": {
                        "cpu": "32",
                        "memory": "256Gi",
                        "ephemeral-storage": "100Gi",
                        "pods": "110",
                    },
                },
            }
        )
        self.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        args = ["apply", "--server-side", "--field-manager=cluster-bootstrap"]
        for crd in crds:
            args += ["-f", str(crd)]
        self.kubectl(*args)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def _node_ready(self) -> bool:
        out = self.kubectl(
            "get",
            "node",
            NODE,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return out.stdout.strip() == "True"

    def _service_accounts_ready(self) -> bool:
        return all(
            self.kubectl("get", "serviceaccount", "default", "-n", env, check=False).returncode == 0
            for env in NAMESPACES
        )

    @contextlib.contextmanager
    def playing_cert_manager(self, namespace: str) -> Iterator[None]:
        """While inside, do what cert-manager's controller would (it does not run here): for
        every Certificate in namespace, write its Secret (signed by a throwaway CA, with
        ca.crt) and mark it Ready."""
        stop = threading.Event()
        pki = Pki(self.folder / f"issuer-{namespace}-{time.monotonic_ns()}")
        done: set[str] = set()

        def play() -> None:
            while not stop.wait(0.3):
                listed = self.kubectl(
                    "get", "certificates", "-n", namespace, "-o", "json", check=False
                )
                if listed.returncode:
                    continue
                for cert in json.loads(listed.stdout)["items"]:
                    uid = cert["metadata"]["uid"]
                    if uid not in done:
                        self._issue(pki, namespace, cert)
                        done.add(uid)

        player = threading.Thread(target=play, daemon=True)
        player.start()
        try:
            yield
        finally:
            stop.set()
            player.join()

    def _issue(self, pki: Pki, namespace: str, cert: dict) -> None:
        name, spec = cert["metadata"]["name"], cert["spec"]
        crt, key = pki.issue(
            f"{namespace}-{name}", spec["dnsNames"][0], sans=tuple(spec["dnsNames"])
        )
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": spec["secretName"], "namespace": namespace},
            "data": {
                "tls.crt": base64.b64encode(crt.read_bytes()).decode(),
                "tls.key": base64.b64encode(key.read_bytes()).decode(),
                "ca.crt": base64.b64encode(pki.cert_pem()).decode(),
            },
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
        status = {
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Issued"}]}
        }
        self.kubectl(
            "patch",
            "certificate",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )

    def stop(self, timeout: float = 20) -> None:
        """Stop every program of this cluster (newest first) and wait until each is gone."""
        for name in reversed(list(self._pids())):
            if self._alive(name):
                os.killpg(self._pids()[name], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(self._alive(name) for name in self._pids()):
            if time.monotonic() > deadline:
                for name in self._pids():
                    if self._alive(name):
                        os.killpg(self._pids()[name], signal.SIGKILL)
                deadline += timeout
            time.sleep(0.1)
        for proc in self._procs.values():
            proc.wait()  # reap the children this process started
        self._procs.clear()
        self.pidfile.unlink(missing_ok=True)


def main() -> None:
    """`up` or `down`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="state folder (default build/cluster)"
    )
    args = parser.parse_args()
    cluster = Cluster(args.dir.resolve())
    if args.action == "down":
        cluster.stop()
        print("cluster: stopped")
        return
    began = time.monotonic()
    try:
        cluster.start()
    except ClusterError as error:
        sys.exit(str(error))
    print(f"cluster: ready in {time.monotonic() - began:.1f} s; logs in {cluster.folder / 'logs'}")
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    print(f"  kubectl --context {AGENT_CONTEXT.format(env='dev')} get pods -n dev")


if __name__ == "__main__":
    main()
