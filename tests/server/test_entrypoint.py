"""entrypoint.sh under dash and BusyBox ash: validation, exec, flags and commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import ENTRYPOINT, shells

SHELLS = shells()


def run_entrypoint(shell: list[str], env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run entrypoint.sh to completion (for errors and commands, not the server)."""
    return subprocess.run(
        [*shell, str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def worker_pids(master: int) -> list[int]:
    """The children of a process, from /proc."""
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def cmdline(pid: int) -> list[str]:
    """A process's arguments, from /proc."""
    return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("WEB_CONCURRENCY", "-1"),
        ("GRACEFUL_TIMEOUT", "soon"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_bad_setting_stops_with_one_line(shell, server_env, variable, value):
    result = run_entrypoint(shell, server_env(**{variable: value}))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"flask-example-1: {variable}={value!r} is invalid: set {variable}")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("present", ["tls.crt", "tls.key"])
def test_only_one_tls_file_stops_with_one_line(shell, server_env, tmp_path, present):
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / present).write_text("x")
    env = server_env(
        TLS_CERT_FILE=str(tmp_path / "tls" / "tls.crt"),
        TLS_KEY_FILE=str(tmp_path / "tls" / "tls.key"),
    )
    result = run_entrypoint(shell, env)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    missing = "TLS_KEY_FILE" if present == "tls.crt" else "TLS_CERT_FILE"
    assert line.startswith(f"flask-example-1: {missing} ")
    assert "mount both files" in line


@pytest.mark.parametrize("shell", SHELLS)
def test_flags_are_validated_too(shell, server_env):
    result = run_entrypoint(shell, server_env(PORT="0"), "--workers", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("flask-example-1: PORT='0' is invalid")


@pytest.mark.parametrize("shell", SHELLS)
def test_other_arguments_run_as_a_command(shell, server_env):
    # docker-library convention: `docker run IMAGE sh -c ...` runs the command, not the server,
    # even with a configuration the server would refuse.
    result = run_entrypoint(shell, server_env(PORT="abc"), "sh", "-c", 'echo "$0 $PORT"', "sh")
    assert (result.returncode, result.stdout, result.stderr) == (0, "sh abc\n", "")
    failing = run_entrypoint(shell, server_env(), "sh", "-c", "exit 7")
    assert failing.returncode == 7


@pytest.mark.parametrize("shell", SHELLS)
def test_server_replaces_the_shell(shell, start_server):
    server = start_server(shell=shell)
    # exec: the pid the shell started with is now gunicorn's master, the workers' parent.
    args = cmdline(server.process.pid)
    assert any(arg.endswith("gunicorn") for arg in args), args
    assert "python:flask_example.server.gunicorn_conf" in args
    assert worker_pids(server.process.pid)


@pytest.mark.parametrize("args", [("--workers", "1"), ("gunicorn", "--workers", "1")])
def test_flags_reach_gunicorn(start_server, server_env, args):
    # As `docker run IMAGE --workers 1` and as the image's CMD with a flag after it.
    server = start_server(*args, env=server_env(WEB_CONCURRENCY="3"))
    assert server.get("/healthz")[0] == 200
    assert len(worker_pids(server.process.pid)) == 1
