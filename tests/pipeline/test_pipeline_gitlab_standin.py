"""A commit id that reads as a number: GitLab's Helm registry lists it bare, Helm refuses it,
so helm-package.sh gives such an appVersion in full."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.pipeline.conftest import HELM, ROOT, SECRETS
from tests.support.gitlab_api import chart_yaml


def package(tmp_path: Path, short: str, full: str) -> Path:
    """Run helm-package.sh as helm_builder:build:job does; the archive it wrote."""
    work = tmp_path / "work"
    shutil.copytree(ROOT / "chart", work / "chart")
    env = {
        **os.environ,
        "PATH": f"{HELM[4].parent}{os.pathsep}{os.environ['PATH']}",
        "CI_PIPELINE_IID": "7",
        "CI_COMMIT_SHA": full,
        "CI_COMMIT_SHORT_SHA": short,
    }
    script = ROOT / "ci" / "scripts" / "helm-package.sh"
    subprocess.run(["sh", str(script)], cwd=work, env=env, check=True, capture_output=True)
    (archive,) = (work / "build" / "chart").glob("*.tgz")
    return archive


def helm_lists(gitlab, tmp_path: Path, archive: Path) -> subprocess.CompletedProcess:
    """`helm repo add` of the stand-in's channel holding ARCHIVE, as helm:deploy:job runs it."""
    gitlab.state.charts[("dev", archive.name)] = (
        archive.read_bytes(),
        chart_yaml(archive.read_bytes()),
    )
    home = {
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [str(HELM[4]), "repo", "add", "project", f"{gitlab.url}/projects/1217/packages/helm/dev",
         "--username", "gitlab-ci-token", "--password-stdin"],
        input=SECRETS["CI_JOB_TOKEN"], env=home, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_stand_in_registry_lists_a_numeric_looking_app_version_bare_as_gitlab_does(
    gitlab, tmp_path: Path
) -> None:
    subprocess.run(
        [str(HELM[4]), "package", str(ROOT / "chart"), "--app-version", "392065e2",
         "--destination", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    (archive,) = tmp_path.glob("*.tgz")
    refused = helm_lists(gitlab, tmp_path, archive)
    assert refused.returncode != 0
    assert "cannot unmarshal number" in refused.stderr


@pytest.mark.parametrize(
    ("short", "in_full"),
    [("392065e2", True), ("12345678", True), ("392065ab", False), ("3920e5e2", False)],
)
def test_helm_package_gives_a_numeric_looking_commit_in_full_stand_in(
    gitlab, tmp_path: Path, short: str, in_full: bool
) -> None:
    full = short + "0" * 32
    archive = package(tmp_path, short, full)
    assert chart_yaml(archive.read_bytes())["appVersion"] == (full if in_full else short)
    listed = helm_lists(gitlab, tmp_path, archive)
    assert listed.returncode == 0, listed.stderr
