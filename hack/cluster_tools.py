#!/usr/bin/env python3
"""Provide the pinned cluster, registry and chart-checking programs in .tools/bin/.

The versions live in the Go modules under hack/tools/ (one per upstream
project, each with its go.sum). For every program, in this order:

1. .tools/bin/<name> already runs at the pinned version: kept;
2. $KUBEBUILDER_ASSETS (controller-runtime's envtest convention: etcd,
   kube-apiserver, kubectl) or PATH has it at the pinned version (same minor
   release; crane and the chart checkers exactly): linked into .tools/bin/;
3. otherwise built once with `go build` from the Go module proxy.

Go's build and module caches make a second build of the same version fast.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "hack" / "tools"
BIN = ROOT / ".tools" / "bin"


@dataclass(frozen=True)
class Tool:
    """One program: the Go module of ours that pins it and how it reports its version."""

    name: str
    module: str  # folder under hack/tools/
    upstream: str  # the pinned upstream module, whose version is the program's
    package: str
    version_args: tuple[str, ...]
    version_pattern: str
    same_minor: bool = True  # a user's binary of the same minor release is accepted
    version_var: str = ""  # the Go variable `go build -ldflags -X` stamps the version into
    version_prefix: str = "v"  # how the program expects it: v1.2.3 or 1.2.3

    def pinned(self) -> str:
        """The upstream version our go.mod requires, without the leading v."""
        text = (MODULES / self.module / "go.mod").read_text(encoding="utf-8")
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.upstream)} v(\S+)", text, re.M)
        if match is None:
            sys.exit(
                f"cluster_tools: hack/tools/{self.module}/go.mod does not require {self.upstream}"
            )
        return match.group(1)

    def accepts(self, found: str) -> bool:
        """Whether a binary reporting version `found` is good enough."""
        if not self.same_minor:
            return found == self.pinned()
        return found.split(".")[:2] == self.pinned().split(".")[:2]

    def ldflags(self) -> str:
        """Linker flags that stamp the version where the program expects it."""
        version = self.pinned()
        if self.module == "kubernetes":
            major, minor = version.split(".")[:2]
            pkg = "k8s.io/component-base/version"
            return " ".join(
                f"-X {pkg}.{key}={value}"
                for key, value in (
                    ("gitVersion", f"v{version}"),
                    ("gitMajor", major),
                    ("gitMinor", minor),
                    ("gitTreeState", "clean"),
                )
            )
        if self.version_var:
            return f"-X {self.version_var}={self.version_prefix}{version}"
        return ""


def _k8s(name: str, args: tuple[str, ...] = ("--version",)) -> Tool:
    return Tool(
        name,
        "kubernetes",
        "k8s.io/kubernetes",
        f"k8s.io/kubernetes/cmd/{name}",
        args,
        r"(?:Kubernetes|Client Version:) v(\d+\.\d+\.\d+)",
    )


TOOLS = {
    tool.name: tool
    for tool in (
        Tool(
            "etcd",
            "etcd",
            "go.etcd.io/etcd/server/v3",
            "go.etcd.io/etcd/server/v3",
            ("--version",),
            r"etcd Version: (\d+\.\d+\.\d+)",
        ),
        _k8s("kube-apiserver"),
        _k8s("kube-controller-manager"),
        _k8s("kube-scheduler"),
        _k8s("kubectl", ("version", "--client")),
        Tool(
            "kwok",
            "kwok",
            "sigs.k8s.io/kwok",
            "sigs.k8s.io/kwok/cmd/kwok",
            ("--version",),
            r"(\d+\.\d+\.\d+)",
        ),
        Tool(
            "crane",
            "crane",
            "github.com/google/go-containerregistry",
            "github.com/google/go-containerregistry/cmd/crane",
            ("version",),
            r"v?(\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="github.com/google/go-containerregistry/cmd/crane/cmd.Version",
        ),
        # The chart's checkers (tests/chart/test_chart_checkers.py): exact versions, because
        # each release adds checks and the tests hold every finding to a table.
        Tool(
            "kubeconform",
            "kubeconform",
            "github.com/yannh/kubeconform",
            "github.com/yannh/kubeconform/cmd/kubeconform",
            ("-v",),
            r"v(\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="main.version",
        ),
        Tool(
            "kube-score",
            "kube-score",
            "github.com/zegl/kube-score",
            "github.com/zegl/kube-score/cmd/kube-score",
            ("version",),
            r"kube-score version: (\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="main.version",
            version_prefix="",
        ),
        Tool(
            "kube-linter",
            "kube-linter",
            "golang.stackrox.io/kube-linter",
            "golang.stackrox.io/kube-linter/cmd/kube-linter",
            ("version",),
            r"^v?(\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="golang.stackrox.io/kube-linter/internal/version.version",
        ),
        Tool(
            "ct",
            "chart-testing",
            "github.com/helm/chart-testing/v3",
            "github.com/helm/chart-testing/v3/ct",
            ("version",),
            r"Version:\s+v(\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="github.com/helm/chart-testing/v3/ct/cmd.Version",
        ),
        Tool(
            "cosign",
            "cosign",
            "github.com/sigstore/cosign/v3",
            "github.com/sigstore/cosign/v3/cmd/cosign",
            ("version",),
            r"GitVersion:\s+v(\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="sigs.k8s.io/release-utils/version.gitVersion",
        ),
        Tool(
            "syft",
            "syft",
            "github.com/anchore/syft",
            "github.com/anchore/syft/cmd/syft",
            ("version",),
            r"Version:\s+(\d+\.\d+\.\d+)",
            same_minor=False,
            version_var="main.version",
            version_prefix="",
        ),
    )
}


def version_of(tool: Tool, binary: Path) -> str | None:
    """The version a binary reports, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(binary), *tool.version_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(tool.version_pattern, out.stdout + out.stderr)
    return match.group(1) if match else None


def candidates(tool: Tool) -> list[Path]:
    """Binaries of the user's that could serve: $KUBEBUILDER_ASSETS first, then PATH."""
    found = []
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        found.append(Path(assets) / tool.name)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and Path(folder).resolve() != BIN.resolve():
            found.append(Path(folder) / tool.name)
    return [path for path in found if path.is_file() and os.access(path, os.X_OK)]


def go_build(module: str, tools: list[Tool]) -> None:
    """Build the tools of one of our Go modules into .tools/bin/."""
    go = shutil.which("go")
    names = ", ".join(t.name for t in tools)
    if go is None:
        sys.exit(
            f"cluster_tools: {names} not found at the pinned version and Go is not installed:"
            " install Go 1.26.8 or newer (or set KUBEBUILDER_ASSETS to envtest's binaries)"
        )
    print(f"cluster_tools: building {names} with go build (the first build takes minutes)")
    env = dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
    with tempfile.TemporaryDirectory(dir=BIN) as tmp:
        for tool in tools:
            subprocess.run(
                [go, "build", "-ldflags", tool.ldflags(), "-o", f"{tmp}/{tool.name}", tool.package],
                cwd=MODULES / module,
                env=env,
                check=True,
            )
        for tool in tools:
            os.replace(Path(tmp) / tool.name, BIN / tool.name)


def ensure(names: list[str]) -> dict[str, Path]:
    """Make .tools/bin/<name> a pinned build of every named tool; return their paths."""
    BIN.mkdir(parents=True, exist_ok=True)
    to_build: dict[str, list[Tool]] = {}
    for name in names:
        tool = TOOLS[name]
        target = BIN / name
        found = version_of(tool, target) if target.exists() else None
        if found and tool.accepts(found):
            continue
        for path in candidates(tool):
            found = version_of(tool, path)
            if found and tool.accepts(found):
                target.unlink(missing_ok=True)
                target.symlink_to(path.resolve())
                print(f"cluster_tools: {name} {found} from {path}")
                break
        else:
            target.unlink(missing_ok=True)
            to_build.setdefault(tool.module, []).append(tool)
    for module, tools in to_build.items():
        go_build(module, tools)
        for tool in tools:
            found = version_of(tool, BIN / tool.name)
            if not (found and tool.accepts(found)):
                sys.exit(
                    f"cluster_tools: the built {tool.name} reports {found}, not {tool.pinned()}"
                )
    return {name: BIN / name for name in names}


def main() -> None:
    """Provide the named tools (all of them by default) and print what is used."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(TOOLS)} (default: all)")
    names = parser.parse_args().names or list(TOOLS)
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tool {', '.join(unknown)}: choose from {', '.join(TOOLS)}")
    for name, path in ensure(names).items():
        print(
            f"{name} {version_of(TOOLS[name], path)}: {path.relative_to(ROOT)} -> {path.resolve()}"
        )


if __name__ == "__main__":
    main()
