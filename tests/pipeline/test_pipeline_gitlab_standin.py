"""The GitLab API stand-in says no where GitLab's Helm API does (the channel rule, a form
without the chart, a wrong token), and helm-push.sh sends what GitLab takes, for any branch.
A commit id that reads as a number: GitLab's Helm registry lists it bare, Helm refuses it,
so helm-package.sh gives such an appVersion in full."""

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.pipeline.conftest import HELM, PROJECT, ROOT, SECRETS
from tests.pipeline.pipelinelib import SHELLS, dev_row, shell_command, short_hash
from tests.support.gitlab_api import chart_yaml

UPLOAD = "/projects/1217/packages/helm/api/{}/charts"


def chart_archive(folder: Path, version: str = "0.1.0-1") -> Path:
    """A packaged chart as helm_builder:build:job leaves it: build/chart/<name>-<version>.tgz
    holding <name>/Chart.yaml."""
    archive = folder / "build" / "chart" / f"{PROJECT}-{version}.tgz"
    archive.parent.mkdir(parents=True)
    chart = f"apiVersion: v2\nname: {PROJECT}\nversion: {version}\n".encode()
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo(f"{PROJECT}/Chart.yaml")
        member.size = len(chart)
        tar.addfile(member, io.BytesIO(chart))
    return archive


def post(url: str, token: str, *form: str) -> tuple[int, dict]:
    """curl's POST of the FORM fields to URL with the job token, as helm-push.sh sends it."""
    result = subprocess.run(
        ["curl", "--silent", "--user", f"gitlab-ci-token:{token}", "--write-out", "\n%{http_code}",
         *[arg for field in form for arg in ("--form", field)], url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    body, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


@pytest.mark.parametrize(
    "channel", ["fix--bug", "feature--x", "x-", "a..b", "-x", "a_-b", "a" * 256]
)
def test_stand_in_refuses_channels_gitlab_refuses(gitlab, tmp_path: Path, channel: str) -> None:
    """GitLab's channel rule: CI_COMMIT_REF_SLUG of fix__bug or feature/-x (fix--bug,
    feature--x) is refused with 400, before the token is even looked at."""
    archive = chart_archive(tmp_path)
    url = gitlab.url + UPLOAD.format(channel)
    assert post(url, "wrong-token", f"chart=@{archive}") == (400, {"error": "channel is invalid"})
    assert gitlab.state.charts == {}


@pytest.mark.parametrize("channel", ["release", "fix-bug", "UPPER_case", "a.b", "1.x_y-z"])
def test_stand_in_takes_channels_gitlab_takes(gitlab, tmp_path: Path, channel: str) -> None:
    archive = chart_archive(tmp_path)
    url = gitlab.url + UPLOAD.format(channel)
    assert post(url, SECRETS["CI_JOB_TOKEN"], f"chart=@{archive}")[0] == 201
    assert list(gitlab.state.charts) == [(channel, archive.name)]


def test_stand_in_refuses_a_wrong_token_and_a_form_without_the_chart(
    gitlab, tmp_path: Path
) -> None:
    archive = chart_archive(tmp_path)
    url = gitlab.url + UPLOAD.format("dev")
    assert post(url, "wrong-token", f"chart=@{archive}") == (401, {"message": "401 Unauthorized"})
    token = SECRETS["CI_JOB_TOKEN"]
    assert post(url, token, f"file=@{archive}") == (400, {"error": "chart is missing"})
    assert post(url, token, "chart=not-a-file") == (400, {"error": "chart is missing"})
    assert gitlab.state.charts == {}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("branch", "channel"),
    [("dev", "dev"), ("fix__bug", "fix-bug"), ("feature/-x", "feature-x"), ("a.b", "a-b"),
     ("UPPER_case", "upper-case"), ("release", f"release-{short_hash('release')}")],
)  # fmt: skip
def test_helm_push_uploads_to_a_channel_gitlab_takes_stand_in(
    gitlab, tmp_path: Path, shell: str, branch: str, channel: str
) -> None:
    """helm-push.sh with a dev branch's variables as GitLab sets them: the stand-in, which
    refuses what GitLab refuses, takes the upload into the fitted channel."""
    archive = chart_archive(tmp_path)
    env = {
        "PATH": os.environ["PATH"],
        "CI_API_V4_URL": gitlab.url,
        "CI_PROJECT_ID": "1217",
        "CI_JOB_TOKEN": SECRETS["CI_JOB_TOKEN"],
        "CHART_NAME": PROJECT,
        "CHART_VERSION": "0.1.0-1",
        **dev_row(branch),
    }
    result = subprocess.run(
        [*shell_command(shell), ROOT / "ci" / "scripts" / "helm-push.sh"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(gitlab.state.charts) == [(channel, archive.name)]
    assert f"CHART_CHANNEL={channel}\n" in (tmp_path / "build" / "chart-pushed.env").read_text()


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
