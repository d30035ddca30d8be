"""Fixtures for the chart tests: the Helm binaries, parametrized."""

import pytest

from tests.chart.chartlib import HELMS


@pytest.fixture(params=sorted(HELMS))
def helm_name(request: pytest.FixtureRequest) -> str:
    """Each real Helm binary in turn (helm3, helm4); fails early if it is missing."""
    path = HELMS[request.param]
    assert path.is_file(), f"{path} is missing: run `make tools`"
    return request.param
