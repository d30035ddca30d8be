"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# pytest explains a failed assert only in the modules it rewrites: test modules, conftest.py
# files and these, whose helpers (assert_no_secrets, check_image_build_and_push, ...) assert
# for the tests that call them.
pytest.register_assert_rewrite(
    "tests.chart.chartlib",
    "tests.pipeline.pipelinelib",
    "tests.registry.registrylib",
    "tests.server.serverlib",
)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return ROOT
