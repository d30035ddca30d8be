"""app:test:job installs the Dockerfile's own Python packages, then runs pytest
on the app's tests (apk and python3 are stand-ins that record the calls)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.pipeline.conftest import ROOT

RECORDER = """#!/bin/sh
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$RECORD"
"""
DOCKERFILE = """FROM alpine:3.24.2
# hadolint ignore=DL3018
RUN apk add --no-cache \\
        python3~=3.14 \\
        py3-pip \\
        py3-flask~=3.1.3 \\
        py3-gunicorn~=25.2.0 \\
    && adduser -S -D -u 10001 app
RUN apk add --no-cache curl
"""


def run_app_test(tmp_path: Path, dockerfile: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run ci/scripts/app-test.sh in BusyBox sh (or dash) next to DOCKERFILE."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apk", "python3"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    record = tmp_path / "record"
    record.write_text("")
    shell = ["busybox", "sh"] if shutil.which("busybox") else ["dash"]
    result = subprocess.run(
        [*shell, ROOT / "ci" / "scripts" / "app-test.sh"],
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record)},
        capture_output=True,
        text=True,
        check=False,
    )
    return result, record.read_text()


def test_installs_the_dockerfiles_packages_and_runs_pytest_stand_in(tmp_path: Path) -> None:
    """The same python3/py3-* packages and constraints as the image, plus the test tools."""
    result, record = run_app_test(tmp_path, DOCKERFILE)
    assert result.returncode == 0, result.stderr
    assert record.splitlines() == [
        "apk add --no-cache python3~=3.14 py3-pip py3-flask~=3.1.3 py3-gunicorn~=25.2.0"
        " py3-pytest dash openssl",
        "python3 -m pytest -p no:cacheprovider -m not browser"
        " --junitxml=build/app-test.xml tests/app tests/server",
    ]


def test_a_dockerfile_without_python_packages_is_an_error_stand_in(tmp_path: Path) -> None:
    """No packages found means the script cannot promise the image's environment: stop."""
    result, record = run_app_test(tmp_path, "FROM alpine:3.24.2\nRUN apk add --no-cache curl\n")
    assert result.returncode != 0
    assert "no python3/py3-* packages" in result.stderr
    assert record == ""


def test_the_projects_dockerfile_is_understood_stand_in(tmp_path: Path) -> None:
    """The real Dockerfile yields its python3 and py3-flask packages."""
    if not (ROOT / "Dockerfile").is_file():
        pytest.skip("the Dockerfile has not landed in this checkout yet")
    result, record = run_app_test(tmp_path, (ROOT / "Dockerfile").read_text())
    assert result.returncode == 0, result.stderr
    installed = record.splitlines()[0].split()
    assert any(word.startswith("py3-flask") for word in installed)
    assert any(word.startswith("python3") for word in installed)
