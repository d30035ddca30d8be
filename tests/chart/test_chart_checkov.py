"""checkov on the rendered manifests: every failed check is one that tests/chart/checkov_skips.py
excuses, for that object and that case, and every excuse is needed somewhere."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.chart.chartlib import MATRIX, NAMESPACE, ROOT, render, render_text
from tests.chart.checkov_skips import SKIPS, Skip

CHECKOV = ROOT / ".tools" / "bin" / "checkov"


def run_checkov(path: Path) -> list[dict]:
    """checkov's JSON report on one rendered file."""
    args = [str(CHECKOV), "--framework", "kubernetes", "--quiet", "--compact", "--output", "json"]
    # --skip-download: no network; the bundled checks are the ones we pin.
    result = subprocess.run(
        [*args, "--skip-download", "--file", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """checkov over the Helm 4 render of every matrix case, one run per case.

    One run per file, as a user checks their own render: with several files in one run,
    checkov's graph checks (CKV2_*) miss some objects.
    """
    folder = tmp_path_factory.mktemp("rendered")
    paths = []
    for case in MATRIX:
        path = folder / f"{case}.yaml"
        path.write_text(render_text("helm4", case))
        paths.append(path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return [run for report in pool.map(run_checkov, paths) for run in report]


def failures(report: list[dict]) -> list[tuple[str, str, str]]:
    """Every failed check as (case, check id, checkov's resource id)."""
    return [
        (Path(c["file_path"]).stem, c["check_id"], c["resource"])
        for run in report
        for c in run["results"]["failed_checks"]
    ]


def resource_object(objects: list[dict], resource: str) -> dict:
    """The rendered object a checkov resource id names.

    `Kind.namespace.name` for an object; graph checks name a Deployment's pod template
    `Pod.namespace.<name>.<its labels>`.
    """
    kind, namespace, rest = resource.split(".", 2)
    assert namespace == NAMESPACE, resource
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == kind and rest == name:
            return obj
        if kind == "Pod" and obj["kind"] == "Deployment" and rest.startswith(f"{name}.helm.sh/"):
            return obj
    raise AssertionError(f"checkov names {resource}, which the chart did not render")


def excuse(case: str, check: str, resource: str) -> Skip | None:
    """The row of the skip table that excuses this failure, if any."""
    objects = render("helm4", case)
    obj = resource_object(objects, resource)
    for skip in SKIPS:
        if skip.check == check and skip.kind == obj["kind"] and skip.when(objects, obj):
            return skip
    return None


def test_every_failed_check_is_excused_by_the_skip_table(checkov_report: list[dict]) -> None:
    unexcused = [f for f in failures(checkov_report) if excuse(*f) is None]
    assert unexcused == []
    assert sum(run["summary"]["passed"] for run in checkov_report) > 100


def test_every_skip_is_needed_and_has_a_reason(checkov_report: list[dict]) -> None:
    used = {excuse(*f) for f in failures(checkov_report)}
    assert [s for s in SKIPS if s not in used] == [], "a skip no case needs: remove it"
    for skip in SKIPS:
        assert len(skip.reason.split()) >= 5, f"{skip.check}: say why the check does not apply"


@pytest.mark.parametrize("helm", ["helm3", "helm4"])
@pytest.mark.parametrize("case", MATRIX)
def test_manifests_carry_no_lint_configuration(helm: str, case: str) -> None:
    # Users deploy these objects: checkov's skips live in tests/chart/checkov_skips.py.
    assert "checkov.io" not in render_text(helm, case)
