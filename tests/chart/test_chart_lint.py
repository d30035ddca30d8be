"""`helm lint --strict` with Helm 3 and Helm 4 for the defaults and every ci/ value file."""

import pytest
import yaml

from tests.chart.chartlib import CHART, CI_FILES, MATRIX, helm


@pytest.mark.parametrize("case", MATRIX)
def test_lint_strict_passes(helm_name: str, case: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    if case != "default":
        args += ["--values", str(CI_FILES[case])]
    result = helm(helm_name, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_matrix_covers_every_switch() -> None:
    """Each feature switch is turned both on and off somewhere in the matrix."""
    seen: dict[str, set[bool]] = {}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    switches = {
        "serviceAccount",
        "pullSecret",
        "tls",
        "certificate",
        "service",
        "ingress",
        "httpRoute",
        "autoscaling",
        "podDisruptionBudget",
        "networkPolicy",
        "serviceMonitor",
    }
    for path in [None, *CI_FILES.values()]:
        values = yaml.safe_load(path.read_text()) if path else {}
        for switch in switches:
            key = "create" if switch in ("serviceAccount", "pullSecret") else "enabled"
            enabled = values.get(switch, {}).get(key, defaults[switch][key])
            seen.setdefault(switch, set()).add(enabled)
    assert {switch: states for switch, states in seen.items() if states != {True, False}} == {}
    digests = {
        bool((yaml.safe_load(p.read_text()).get("image") or {}).get("digest"))
        for p in CI_FILES.values()
    }
    assert digests == {True, False}
