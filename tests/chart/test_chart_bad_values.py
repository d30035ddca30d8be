"""Wrong values fail `helm template` with a message that names the value (Helm 3 and 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.chart.chartlib import CHART, helm

BAD = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))


def expected_pattern(path: Path) -> str:
    """The `# expect: REGEX` first line of a bad-values file: what the error must name."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <regex>'"
    return first.removeprefix("# expect: ")


def test_at_least_ten_bad_value_files() -> None:
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_values_fail_naming_the_value(helm_name: str, path: Path) -> None:
    result = helm(helm_name, "template", "demo", str(CHART), "--values", str(path))
    assert result.returncode != 0, f"{path.name} rendered:\n{result.stdout[:400]}"
    assert result.stdout == ""
    assert re.search(expected_pattern(path), result.stderr), result.stderr


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_values_fail_helm_lint(helm_name: str, path: Path) -> None:
    """Schema errors fail `helm lint --strict`; a template's fail() only shows up in its log,
    because lint renders leniently, so there the message must at least be reported."""
    result = helm(helm_name, "lint", "--strict", str(CHART), "--values", str(path))
    output = result.stdout + result.stderr
    assert re.search(expected_pattern(path), output), output
    if "schema" in helm(helm_name, "template", "demo", str(CHART), "--values", str(path)).stderr:
        assert result.returncode != 0, output
