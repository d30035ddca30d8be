"""The GitLab stand-in lists a chart so that Helm reads it as the real registry's index."""

import subprocess
from pathlib import Path

import pytest

from tests.pipeline.conftest import HELM, ROOT, SECRETS
from tests.support.gitlab_api import chart_yaml


# Commit ids that YAML readers take for numbers: octal, float (which PyYAML writes bare), decimal.
@pytest.mark.parametrize("app_version", ["01234567", "4567e123", "12345678"])
def test_helm_reads_a_numeric_looking_app_version_from_the_index(
    gitlab, tmp_path: Path, app_version: str
) -> None:
    helm = str(HELM[4])
    home = {
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
    }
    subprocess.run(
        [helm, "package", str(ROOT / "chart"), "--app-version", app_version, "--version",
         "1.0.0-1", "--destination", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    (archive_path,) = tmp_path.glob("*.tgz")
    archive = archive_path.read_bytes()
    gitlab.state.charts[("dev", archive_path.name)] = (archive, chart_yaml(archive))
    added = subprocess.run(
        [helm, "repo", "add", "project", f"{gitlab.url}/projects/1217/packages/helm/dev",
         "--username", "gitlab-ci-token", "--password-stdin"],
        input=SECRETS["CI_JOB_TOKEN"], env=home, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = subprocess.run(
        [helm, "search", "repo", "project/flask-example-1", "--devel", "--output", "json"],
        env=home, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f'"app_version":"{app_version}"' in shown.stdout
