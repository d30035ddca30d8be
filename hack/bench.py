#!/usr/bin/env python3
"""Benchmark the real server (entrypoint.sh -> gunicorn) against Flask's development server.

For `/` and `/healthz`: wrk's requests/s and p50/p99 latency at 32 connections, for gunicorn
and, as the naive baseline, the same app under werkzeug's threaded development server (debug
off, loopback only; this script is the one place it ever runs). Then the time from process
start to the first 200 from /readyz (median of several starts) and the resident memory of all
server processes. Each wrk figure is the median of several rounds that alternate the two
servers. Prints a table and exits 1 if a target in TARGETS is missed.

With --against REF it compares instead: the server of the working tree against the server of a
git commit (its src/ and entrypoint.sh, extracted to a temporary folder), rounds alternating,
and prints each figure's ratio beside each side's own spread between rounds: a change costs
nothing measurable when the ratio stays within that spread.

Usage: hack/bench.py [--duration SECONDS] [--connections N] [--rounds N] [--starts N]
       hack/bench.py --against REF [--duration SECONDS] [--connections N] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("/", "/healthz")
TARGETS = {
    "throughput ratio (gunicorn / dev server)": (">=", 2.5),
    "gunicorn /healthz p99 ms": ("<", 50.0),
    "first ready s (median)": ("<", 1.5),
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}

# The baseline: the same app factory under werkzeug's threaded development server.
DEV_SERVER = """
import sys
from werkzeug.serving import run_simple
from flask_example.app import create_app
run_simple("127.0.0.1", int(sys.argv[1]), create_app(), threaded=True,
           use_debugger=False, use_reloader=False)
"""


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    # CPU time all server processes spent per request: unlike requests/s, hardly moved by
    # other work competing for the CPUs.
    cpu_us_per_request: float = 0.0


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read requests/s, the 50% and 99% latencies and the error count from `wrk --latency`."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise ValueError(f"not the output of wrk --latency:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    return WrkResult(
        float(rps.group(1)),
        _milliseconds(p50.group(1)),
        _milliseconds(p99.group(1)),
        errors,
        int(total.group(1)) if total else 0,
    )


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_env(port: int, root: Path = ROOT) -> dict[str, str]:
    """The server's environment: loopback, the settings' defaults otherwise, no TLS."""
    env = dict(os.environ)
    env.update(
        LISTEN_HOST="127.0.0.1",
        PORT=str(port),
        PYTHONPATH=str(root / "src"),
        PYTHONDONTWRITEBYTECODE="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        TLS_CERT_FILE="/nonexistent/tls.crt",
        TLS_KEY_FILE="/nonexistent/tls.key",
    )
    return env


def start(kind: str, root: Path = ROOT) -> tuple[subprocess.Popen, int]:
    """Start the gunicorn server (as `make run` does) or the dev server; return it and its port."""
    port = free_port()
    if kind == "gunicorn":
        command = [str(root / "entrypoint.sh")]
    else:
        command = [sys.executable, "-c", DEV_SERVER, str(port)]
    process = subprocess.Popen(
        command,
        env=base_env(port, root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,
    )
    return process, port


def wait_ready(process: subprocess.Popen, port: int, timeout: float = 30.0) -> float:
    """Poll /readyz every 10 ms; return seconds from now until the first 200."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return time.monotonic() - began
        time.sleep(0.01)
    raise RuntimeError("server not ready")


def stop(process: subprocess.Popen) -> None:
    """Stop a server and every process in its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            found.append(current)
            pending.extend(int(child) for child in children)
    return found


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc, in MiB."""
    total_kib = 0
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            status = Path(f"/proc/{member}/status").read_text()
            total_kib += int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return total_kib / 1024


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants, from /proc."""
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(port: int, path: str, duration: int, connections: int) -> WrkResult:
    """Run wrk against one path."""
    output = subprocess.run(
        [
            "wrk",
            # One wrk thread is plenty for 32 connections and leaves the servers more of the CPUs.
            "--threads=1",
            f"--connections={connections}",
            f"--duration={duration}s",
            "--latency",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def load(
    kind: str, duration: int, connections: int, root: Path = ROOT
) -> tuple[dict[str, WrkResult], float]:
    """wrk every path against one server; also return its RSS right after the load."""
    process, port = start(kind, root)
    try:
        wait_ready(process, port)
        results = {}
        for path in PATHS:
            before = tree_cpu_seconds(process.pid)
            result = wrk(port, path, duration, connections)
            spent = tree_cpu_seconds(process.pid) - before
            result.cpu_us_per_request = spent / max(result.requests, 1) * 1e6
            results[path] = result
        return results, tree_rss_mib(process.pid)
    finally:
        stop(process)


def first_ready(starts: int) -> list[float]:
    """Seconds from starting entrypoint.sh to the first 200 from /readyz, for several starts."""
    times = []
    for _ in range(starts):
        began = time.monotonic()
        process, port = start("gunicorn")
        try:
            wait_ready(process, port)
            times.append(time.monotonic() - began)
        finally:
            stop(process)
    return times


def machine() -> str:
    """CPU count and model of this machine."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return f"{os.cpu_count()} CPUs, {model.group(1) if model else platform.processor()}"


def check(name: str, value: float) -> str:
    """PASS or FAIL against the target for name."""
    operator, bound = TARGETS[name]
    ok = value >= bound if operator == ">=" else value < bound
    return f"{'PASS' if ok else 'FAIL'} (target {operator} {bound:g})"


def median_result(results: list[WrkResult]) -> WrkResult:
    """The median of each figure over several runs (errors are summed, not hidden)."""
    return WrkResult(
        statistics.median(r.requests_per_second for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        sum(r.requests for r in results),
        statistics.median(r.cpu_us_per_request for r in results),
    )


def extract(ref: str, folder: Path) -> Path:
    """The server's files (src/, entrypoint.sh) of a git commit, written below folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src", "entrypoint.sh"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        error = archive.stderr.decode(errors="replace").strip()
        sys.exit(f"bench: cannot read {ref!r} from git ({error}): give a commit, tag or branch")
    tree = folder / "tree"
    tree.mkdir()
    archive_path = folder / "tree.tar"
    archive_path.write_bytes(archive.stdout)
    with tarfile.open(archive_path) as tar:
        tar.extractall(tree, filter="data")
    return tree


def spread(values: list[float]) -> float:
    """Largest over smallest of one side's rounds: how much the same server moves by itself."""
    return max(values) / min(values) if min(values) > 0 else float("inf")


def compare(ref: str, duration: int, connections: int, rounds: int) -> int:
    """The working tree's gunicorn against REF's, rounds alternating; print the ratios."""
    print(
        f"machine: {machine()}; wrk {connections} connections, {duration}s per path, "
        f"{rounds} rounds alternating {ref} and the working tree"
    )
    with tempfile.TemporaryDirectory() as folder:
        roots = {ref: extract(ref, Path(folder)), "working tree": ROOT}
        samples: dict[str, list] = {side: [] for side in roots}
        load_before = os.getloadavg()[0]
        for _ in range(rounds):
            for side, root in roots.items():
                samples[side].append(load("gunicorn", duration, connections, root)[0])
    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(
        f"\n{'path':<10}{'figure':<14}{ref:>14}{'working tree':>14}{'ratio':>8}"
        f"{'spread ' + ref:>18}{'spread now':>12}"
    )
    errors = 0
    for path in PATHS:
        for figure, attribute in (
            ("req/s", "requests_per_second"),
            ("CPU us/req", "cpu_us_per_request"),
        ):
            values = {
                side: [getattr(run[path], attribute) for run in runs]
                for side, runs in samples.items()
            }
            before, after = (statistics.median(v) for v in values.values())
            print(
                f"{path:<10}{figure:<14}{before:>14.0f}{after:>14.0f}{after / before:>8.3f}"
                f"{spread(values[ref]):>18.3f}{spread(values['working tree']):>12.3f}"
            )
        errors += sum(run[path].errors for runs in samples.values() for run in runs)
    if errors:
        print(f"{errors} requests failed or got a non-2xx answer")
    return 1 if errors else 0


def main() -> int:
    """Run everything and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per path")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--starts", type=int, default=5, help="starts for the ready time")
    parser.add_argument("--against", metavar="REF", help="compare with the server of a commit")
    args = parser.parse_args()
    if args.against:
        return compare(args.against, args.duration, args.connections, args.rounds)

    print(
        f"machine: {machine()}; wrk {args.connections} connections, {args.duration}s per path, "
        f"median of {args.rounds} rounds"
    )
    load_before = os.getloadavg()[0]
    kinds = ("gunicorn", "dev")
    samples: dict[str, list] = {kind: [] for kind in kinds}
    # Rounds alternate the two servers, so that other work on the machine hits both alike.
    for _ in range(args.rounds):
        for kind in kinds:
            samples[kind].append(load(kind, args.duration, args.connections))
    runs = {
        kind: (
            {path: median_result([s[0][path] for s in samples[kind]]) for path in PATHS},
            statistics.median(s[1] for s in samples[kind]),
        )
        for kind in kinds
    }
    ready = first_ready(args.starts)
    # Other work on the machine moves every figure: say how busy it was.
    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")

    print(
        f"\n{'server':<36}{'path':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'CPU us/req':>12}{'errors':>8}"
    )
    labels = {
        "gunicorn": "gunicorn (entrypoint.sh, defaults)",
        "dev": "Flask dev server (baseline)",
    }
    for kind, (results, _) in runs.items():
        for path, result in results.items():
            print(
                f"{labels[kind]:<36}{path:<10}{result.requests_per_second:>10.0f}"
                f"{result.p50_ms:>10.2f}{result.p99_ms:>10.2f}"
                f"{result.cpu_us_per_request:>12.0f}{result.errors:>8}"
            )
    ratios = {
        path: runs["gunicorn"][0][path].requests_per_second
        / runs["dev"][0][path].requests_per_second
        for path in PATHS
    }
    figures = {
        "throughput ratio (gunicorn / dev server)": min(ratios.values()),
        "gunicorn /healthz p99 ms": runs["gunicorn"][0]["/healthz"].p99_ms,
        "first ready s (median)": statistics.median(ready),
    }
    print()
    for path, ratio in ratios.items():
        print(f"throughput ratio {path:<9} {ratio:.1f}x")
    print(f"first ready after start: {', '.join(f'{t:.2f}' for t in ready)} s")
    print(f"RSS after load: gunicorn (all processes) {runs['gunicorn'][1]:.0f} MiB, ", end="")
    print(f"dev server {runs['dev'][1]:.0f} MiB")
    print()
    verdicts = {name: check(name, value) for name, value in figures.items()}
    for name, value in figures.items():
        print(f"{name:<44}{value:>8.2f}  {verdicts[name]}")
    errors = sum(r.errors for results, _ in runs.values() for r in results.values())
    if errors:
        print(f"{errors} requests failed or got a non-2xx answer")
    return 0 if errors == 0 and all(v.startswith("PASS") for v in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
