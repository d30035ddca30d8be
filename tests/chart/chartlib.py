"""Run the real Helm binaries on the chart and parse what they render."""

from __future__ import annotations

import datetime
import functools
import subprocess
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
HELMS = {
    "helm3": ROOT / ".tools" / "helm3" / "helm",
    "helm4": ROOT / ".tools" / "helm4" / "helm",
}
RELEASE = "demo"
NAMESPACE = "flask-test"
# The value matrix, chart-testing style: the defaults plus every file in chart/ci/.
CI_FILES = {
    path.name.removesuffix("-values.yaml"): path for path in sorted(CHART.glob("ci/*.yaml"))
}
MATRIX = ["default", *CI_FILES]
# Kubernetes releases the chart supports, oldest to newest that the schemas cover.
KUBE_VERSIONS = [f"1.{minor}" for minor in range(29, 38)]
# What ci/scripts/deploy-values.sh reads in each tier's deploy job (the seed's names for
# project flask-example-1, branch `dev`); prod also turns the NetworkPolicy on.
PIPELINE_TIERS = {
    "prod": {
        "NS": "prod",
        "RELEASE_NAME": "flask-example-1",
        "CHANNEL": "release",
        "IMAGE_TAG": "latest",
        "HOST": "flask-example-1.fzen.pro",
        "INGRESS_CLASS_NAME": "external-nginx",
        "INGRESS_NAMESPACE": "ingress-nginx",
        "CI_ENVIRONMENT_SLUG": "production",
    },
    "dev": {
        "NS": "dev",
        "RELEASE_NAME": "dev-flask-example-1",
        "CHANNEL": "dev",
        "IMAGE_TAG": "dev",
        "HOST": "dev.flask-example-1.fzen.pro",
        "INGRESS_CLASS_NAME": "internal-nginx",
        "CI_ENVIRONMENT_SLUG": "review-dev-abc123",
    },
}
PIPELINE_JOB = {
    "CI_REGISTRY_IMAGE": "registry.example.test/group/flask-example-1",
    "CI_PROJECT_PATH_SLUG": "group-flask-example-1",
    "CERTIFICATE_ISSUER_NAME": "private-ca",
    "IMAGE_DIGEST": "sha256:" + "ab12" * 16,
}
# The pipeline's renders: the chart as each tier's deploy job installs it.
PIPELINE_CASES = [f"pipeline-{tier}" for tier in PIPELINE_TIERS]
PIPELINE_PULL_CREDENTIAL = "pullSecret.username=deploy-token-user,pullSecret.password=made-up"


@functools.cache
def helm(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one Helm binary with args in the repository (cached: same args, same answer)."""
    return subprocess.run(
        [str(HELMS[name]), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"HOME": str(ROOT / ".tools" / "helm-home"), "PATH": "/usr/bin:/bin"},
    )


@functools.cache
def pipeline_values(tier: str) -> Path:
    """The values file ci/scripts/deploy-values.sh writes for a tier's deploy job."""
    folder = ROOT / "build" / "chart-tests" / tier
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["sh", str(ROOT / "ci" / "scripts" / "deploy-values.sh")],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", **PIPELINE_TIERS[tier], **PIPELINE_JOB},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return folder / result.stdout.strip()


def template_args(case: str = "default", *extra: str, release: str = RELEASE) -> tuple[str, ...]:
    """The `helm template` arguments for a matrix or pipeline case plus extra flags."""
    if case in PIPELINE_CASES:
        tier = PIPELINE_TIERS[case.removeprefix("pipeline-")]
        values = pipeline_values(case.removeprefix("pipeline-"))
        args = ["template", tier["RELEASE_NAME"], str(CHART), "--namespace", tier["NS"]]
        # The deploy job hands the deploy token over from private files; a stand-in here.
        args += ["--values", str(values), "--set-string", PIPELINE_PULL_CREDENTIAL]
        return (*args, *extra)
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    if case != "default":
        args += ["--values", str(CI_FILES[case])]
    return (*args, *extra)


@functools.cache
def render_text(name: str, case: str = "default", *extra: str, release: str = RELEASE) -> str:
    """Render a matrix case with one Helm binary; fail the test with Helm's error if it fails."""
    result = helm(name, *template_args(case, *extra, release=release))
    if result.returncode != 0:
        raise AssertionError(f"{name} template {case} failed:\n{result.stderr}")
    return result.stdout


def render(name: str, case: str = "default", *extra: str, release: str = RELEASE) -> list[dict]:
    """Render a matrix case and return its objects, parsed from YAML (a fresh copy each call)."""
    return [
        doc for doc in yaml.safe_load_all(render_text(name, case, *extra, release=release)) if doc
    ]


def find(objects: list[dict], kind: str) -> list[dict]:
    """The objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    """The single object of a kind; fails when there is none or more than one."""
    found = find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def proving_pod(objects: list[dict]) -> dict:
    """The helm test pod that proves the Service (not the NetworkPolicy's denied pod)."""
    (pod,) = (o for o in find(objects, "Pod") if o["metadata"]["name"].endswith("-test"))
    return pod


def denied_pods(objects: list[dict]) -> list[dict]:
    """The helm test pod that the NetworkPolicy must keep out, when rendered."""
    return [o for o in find(objects, "Pod") if o["metadata"]["name"].endswith("-test-denied")]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    """Every pod spec rendered: Deployments' templates and bare Pods (the helm test pod)."""
    specs = [
        (f"Deployment/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in find(objects, "Deployment")
    ]
    specs += [(f"Pod/{o['metadata']['name']}", o["spec"]) for o in find(objects, "Pod")]
    return specs


def probe_options(pod: dict) -> dict[str, str]:
    """The helm test pod's readiness step's options: `--name=value` -> {name: value}."""
    command = pod["spec"]["initContainers"][0]["command"]
    assert command[:3] == ["python3", "-m", "flask_example.probe"], command
    return dict(arg.removeprefix("--").split("=", 1) for arg in command[3:])


def issue(tmp: Path, names: list[str], label: str) -> tuple[Path, Path, Path]:
    """A fresh CA and a server certificate for names signed by it: (ca.crt, tls.crt, tls.key)."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build(f"{label} CA", ca_key, f"{label} CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(names[0], key, f"{label} CA", ca_key, ca=False)
    paths = tmp / f"{label}-ca.crt", tmp / f"{label}-tls.crt", tmp / f"{label}-tls.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
