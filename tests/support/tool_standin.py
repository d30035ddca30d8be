#!/usr/bin/env python3
"""Stand-in for executor, crane and the cluster side of helm: records each call."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# helm subcommands that talk to a cluster; everything else runs the real helm.
CLUSTER_COMMANDS = {"upgrade", "install", "uninstall", "rollback", "status", "list", "get", "test"}


def record(tool: str, argv: list[str], **extra: object) -> None:
    """Append one call (argv, environment, working directory) to the record file."""
    entry = {
        "tool": tool,
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        # The program that called the stand-in: which shell ran the job's script.
        "caller": os.readlink(f"/proc/{os.getppid()}/exe"),
        # ...and its arguments: the script that shell was running.
        "caller_argv": Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")[:-1],
        **extra,
    }
    with Path(os.environ["STANDIN_RECORD"]).open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def executor(argv: list[str]) -> int:
    """kaniko: record the build and write a small image.tar where asked."""
    config = Path(os.environ.get("DOCKER_CONFIG", "/kaniko/.docker")) / "config.json"
    record("executor", argv, docker_config=config.read_text(encoding="utf-8"))
    tar_path = argv[argv.index("--tar-path") + 1]
    Path(tar_path).write_bytes(b"stand-in image tarball\n")
    return 0


def crane(argv: list[str]) -> int:
    """crane: record; `auth login` reads the password from stdin; `push` prints ref@digest."""
    stdin = sys.stdin.read() if "--password-stdin" in argv else None
    record("crane", argv, stdin=stdin)
    if argv and argv[0] == "push":
        reference = argv[-1].rsplit(":", 1)[0]
        print(f"{reference}@{os.environ['STANDIN_DIGEST']}")
    return 0


def unknown_flags(real: str, argv: list[str]) -> list[str]:
    """Flags in ARGV that the real helm's subcommand does not document (e.g. Helm 3 and
    --rollback-on-failure), so the stand-in refuses what the real helm would refuse."""
    usage = subprocess.run(
        [real, argv[0], "--help"], check=True, capture_output=True, text=True
    ).stdout
    known = set(re.findall(r"--[a-z][a-z0-9-]*", usage))
    flags = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    return sorted(flags - known)


def helm(argv: list[str]) -> int:
    """helm: record cluster commands (checking their flags); run every other one for real."""
    real = os.environ["REAL_HELM"]
    if argv and argv[0] in CLUSTER_COMMANDS:
        record("helm", argv)
        unknown = unknown_flags(real, argv)
        if unknown:
            print(f"Error: unknown flag(s) {unknown} for helm {argv[0]}", file=sys.stderr)
            return 1
        if argv[0] == "upgrade":
            # A rollout takes a while: long enough for what runs beside it to be seen.
            time.sleep(float(os.environ.get("STANDIN_UPGRADE_SECONDS", "0")))
        return 0
    os.execv(real, [real, *argv])  # noqa: S606 - the real helm, replacing this process
    return 1


if __name__ == "__main__":
    tool = Path(sys.argv[0]).name
    sys.exit({"executor": executor, "crane": crane, "helm": helm}[tool](sys.argv[1:]))
