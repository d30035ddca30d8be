"""checkov on the rendered manifests: no failed check; skips only by annotations in the chart."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.chart.chartlib import MATRIX, ROOT, render, render_text

CHECKOV = ROOT / ".tools" / "bin" / "checkov"


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """One checkov run over the Helm 4 render of every matrix case (default and full too)."""
    folder = tmp_path_factory.mktemp("rendered")
    args = [str(CHECKOV), "--framework", "kubernetes", "--quiet", "--compact", "--output", "json"]
    for case in MATRIX:
        path = folder / f"{case}.yaml"
        path.write_text(render_text("helm4", case))
        args += ["--file", str(path)]
    # --skip-download: no network; the bundled checks are the ones we pin.
    result = subprocess.run(
        [*args, "--skip-download"], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def test_no_failed_checks(checkov_report: list[dict]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name})"
        for run in checkov_report
        for c in run["results"]["failed_checks"]
    ]
    assert failed == []
    assert sum(run["summary"]["passed"] for run in checkov_report) > 100


def test_skipped_checks_are_the_annotated_ones(checkov_report: list[dict]) -> None:
    """Every skip comes from a `checkov.io/skipN: CHECK=reason` annotation with a real reason."""
    annotated = 0
    for case in MATRIX:
        for obj in render("helm4", case):
            for key, value in obj["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                    assert len(reason.split()) >= 5, f"{value}: say why the check does not apply"
                    annotated += 1
    assert sum(run["summary"]["skipped"] for run in checkov_report) == annotated
