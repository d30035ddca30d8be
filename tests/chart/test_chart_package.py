"""Packaging, client-side install and rendering for the oldest and newest supported Kubernetes."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import yaml

from tests.chart.chartlib import CHART, CI_FILES, MATRIX, NAMESPACE, helm, render

OLDEST, NEWEST = "1.29.0", "1.37.0"


def test_package(helm_name: str, tmp_path: Path) -> None:
    result = helm(helm_name, "package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("*.tgz")
    assert archive.name == "flask-example-1-1.0.0.tgz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "flask-example-1/values.schema.json" in names
    assert "flask-example-1/templates/tests/test-prove.yaml" in names
    assert "flask-example-1/templates/tests/test-networkpolicy.yaml" in names
    assert not any("/ci/" in name for name in names), "ci/ value files stay out of the package"
    # The package renders exactly like the source folder.
    packaged = helm(helm_name, "template", "demo", str(archive), "--namespace", NAMESPACE)
    assert packaged.returncode == 0, packaged.stderr
    assert [d for d in yaml.safe_load_all(packaged.stdout) if d] == render(helm_name)


@pytest.mark.parametrize("case", MATRIX)
def test_install_dry_run_client_with_helm4(case: str) -> None:
    """Helm 4 installs client-side (Helm 3.17 insists on reaching a cluster even for this)."""
    values = [] if case == "default" else ["--values", str(CI_FILES[case])]
    result = helm(
        "helm4", "install", "demo", str(CHART), "--dry-run=client", "-n", NAMESPACE, *values
    )
    assert result.returncode == 0, result.stderr
    assert "STATUS: pending-install" in result.stdout
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "is installed as release demo in namespace flask-test" in notes
    host = yaml.safe_load(CI_FILES[case].read_text()).get("host") if case != "default" else None
    if host:
        assert f"://{host}/" in notes, "NOTES.txt gives the public URL"
    if case != "no-service":
        assert "helm test demo -n flask-test" in notes


@pytest.mark.parametrize("kube_version", [OLDEST, NEWEST])
def test_template_for_supported_kubernetes(helm_name: str, kube_version: str) -> None:
    objects = render(helm_name, "full", "--kube-version", kube_version)
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
    }


def test_older_kubernetes_is_refused(helm_name: str) -> None:
    result = helm(helm_name, "template", "demo", str(CHART), "--kube-version", "1.28.9")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "Kubernetes version" in result.stderr, result.stderr
