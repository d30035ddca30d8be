#!/usr/bin/env python3
"""Benchmark our server (entrypoint.sh -> gunicorn) against plain Flask and httpbin on gunicorn.

One run, rounds alternating the servers (a shared machine moves every figure; alternating hits
all servers alike), wrk at 32 connections on each server's paths:
- ours: `/`, `/healthz`, `/headers`, `/status/200`;
- a bare Flask app doing the same work as our `/` and `/healthz` (hack/bench_bare.py) and
  httpbin (`/headers`, `/status/200`), each on stock gunicorn with 2 sync workers, the
  baselines the targets in TARGETS are ratios to.
Each ratio is worked out per round, then the median is printed with the lowest and highest
round beside it (the spread). CPU per request is the user + system time of all server
processes over the requests served, the figure that other load on the machine hardly moves.
Then the time from start to the first 200 from /readyz and the resident memory of all server
processes. Exits 1 if a target is missed.

--servers adds our app under other servers to the same rounds: gunicorn's stock gthread and
sync workers (with our gunicorn config otherwise) and granian (its own event loop, in Rust).
--profile PATH runs py-spy on our server under load on PATH and prints the top lines.

With --against REF it compares instead: the server of the working tree against the server of a
git commit (its src/ and entrypoint.sh, extracted to a temporary folder), rounds alternating,
and prints each figure's ratio beside each side's own spread between rounds: a change costs
nothing measurable when the ratio stays within that spread.

The baselines, granian and py-spy come from requirements/bench.txt, installed by `make bench`
into .tools/bench.

Usage: hack/bench.py [--duration SECONDS] [--connections N] [--rounds N] [--starts N] [--servers]
       hack/bench.py --profile PATH [--duration SECONDS]
       hack/bench.py --against REF [--duration SECONDS] [--connections N] [--rounds N]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The virtualenv of requirements/bench.txt (see the Makefile's bench target).
BENCH_BIN = ROOT / ".tools" / "bench" / "bin"
OUR_PATHS = ("/", "/healthz", "/headers", "/status/200")
# --against compares these two, the paths every change to the app touches.
PATHS = ("/", "/healthz")
BARE, HTTPBIN, OURS = "bare", "httpbin", "ours"
# name -> (how it compares, bound).
TARGETS = {
    "/healthz req/s, ours / bare Flask": (">=", 1.0),
    "/headers req/s, ours / httpbin": (">=", 1.0),
    "/status/200 req/s, ours / httpbin": (">=", 1.0),
    "/ CPU per request, ours / bare Flask": ("<=", 1.1),
    "p99 ms at 32 connections, ours, worst path": ("<", 30.0),
    "first ready s (median)": ("<", 1.5),
}
# Target name -> (figure, path, baseline): the ratios in TARGETS, ours over the baseline's.
RATIOS = {
    "/healthz req/s, ours / bare Flask": ("requests_per_second", "/healthz", BARE),
    "/headers req/s, ours / httpbin": ("requests_per_second", "/headers", HTTPBIN),
    "/status/200 req/s, ours / httpbin": ("requests_per_second", "/status/200", HTTPBIN),
    "/ CPU per request, ours / bare Flask": ("cpu_us_per_request", "/", BARE),
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclasses.dataclass(frozen=True)
class Server:
    """One server under test: what it is, which paths it serves, how it starts."""

    label: str
    paths: tuple[str, ...]
    # (port, source root) -> the command line.
    command: Callable[[int, Path], list[str]]
    # A path answering 200 once the server serves.
    ready_path: str = "/readyz"


def _gunicorn(app: str) -> Callable[[int, Path], list[str]]:
    # Stock gunicorn as its docs start it: 2 sync workers, nothing else set.
    return lambda port, _root: [
        str(BENCH_BIN / "python"),
        "-m",
        "gunicorn",
        "--workers=2",
        f"--bind=127.0.0.1:{port}",
        app,
    ]


def _entrypoint(*flags: str) -> Callable[[int, Path], list[str]]:
    return lambda _port, root: [str(root / "entrypoint.sh"), *flags]


def _granian(port: int, _root: Path) -> list[str]:
    # granian's WSGI interface, with as many processes and Python threads as ours.
    return [
        str(BENCH_BIN / "granian"),
        "--interface=wsgi",
        "--workers=2",
        "--blocking-threads=4",
        "--host=127.0.0.1",
        f"--port={port}",
        "--access-log",
        "--factory",
        "flask_example.server.wsgi:application",
    ]


SERVERS = {
    OURS: Server("ours (entrypoint.sh, defaults)", OUR_PATHS, _entrypoint()),
    BARE: Server(
        "bare Flask, gunicorn 2 sync workers",
        ("/", "/healthz"),
        _gunicorn("hack.bench_bare:app"),
        "/healthz",
    ),
    HTTPBIN: Server(
        "httpbin, gunicorn 2 sync workers",
        ("/headers", "/status/200"),
        _gunicorn("httpbin:app"),
        "/status/200",
    ),
}
# --servers: our app under other servers, with our settings wherever the server reads them.
ALTERNATIVES = {
    "gthread": Server(
        "our app, gunicorn gthread (stock)", OUR_PATHS, _entrypoint("--worker-class=gthread")
    ),
    "sync": Server("our app, gunicorn sync (stock)", OUR_PATHS, _entrypoint("--worker-class=sync")),
    "granian": Server("our app, granian 2.8 WSGI", OUR_PATHS, _granian),
}


@dataclasses.dataclass
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


def base_env(port: int, root: Path = ROOT, metrics_dir: str = "") -> dict[str, str]:
    """The server's environment: loopback, the settings' defaults otherwise, no TLS."""
    env = dict(os.environ)
    env.update(
        LISTEN_HOST="127.0.0.1",
        PORT=str(port),
        # hack/ for the bare app, src/ for ours.
        PYTHONPATH=f"{root / 'src'}{os.pathsep}{ROOT}",
        PYTHONDONTWRITEBYTECODE="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        TLS_CERT_FILE="/nonexistent/tls.crt",
        TLS_KEY_FILE="/nonexistent/tls.key",
    )
    if metrics_dir:
        # For a server without our gunicorn config (granian): the multiprocess metrics ours
        # keep, so that it does the same work per request (our config sets its own).
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


def start(server: Server, root: Path = ROOT, metrics_dir: str = "") -> tuple[subprocess.Popen, int]:
    """Start a server on a free loopback port; return it and its port."""
    port = free_port()
    process = subprocess.Popen(
        server.command(port, root),
        cwd=ROOT,
        env=base_env(port, root, metrics_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,
    )
    return process, port


def wait_ready(
    process: subprocess.Popen, port: int, path: str = "/readyz", timeout: float = 30.0
) -> float:
    """Poll path every 10 ms; return seconds from now until the first 200."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
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
    server: Server, duration: int, connections: int, root: Path = ROOT
) -> tuple[dict[str, WrkResult], float]:
    """wrk every path against one server; also return its RSS right after the load."""
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
        process, port = start(server, root, metrics_dir)
        try:
            wait_ready(process, port, server.ready_path)
            results = {}
            for path in server.paths:
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
        process, port = start(SERVERS[OURS])
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
    ok = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[operator]
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
        ours = dataclasses.replace(SERVERS[OURS], paths=PATHS)
        samples: dict[str, list] = {side: [] for side in roots}
        load_before = os.getloadavg()[0]
        for _ in range(rounds):
            for side, root in roots.items():
                samples[side].append(load(ours, duration, connections, root)[0])
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


def per_round(
    samples: dict[str, list], figure: str, path: str, side: str, base: str
) -> list[float]:
    """One side's figure over another's for one path, round by round (same round, same load)."""
    return [
        getattr(mine[0][path], figure) / getattr(theirs[0][path], figure)
        for mine, theirs in zip(samples[side], samples[base], strict=True)
    ]


def with_spread(values: list[float]) -> str:
    """The median, and the lowest and highest round: how far one round can be trusted."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def run_rounds(servers: dict[str, Server], args: argparse.Namespace) -> dict[str, list]:
    """Load every server, rounds alternating them so that other work hits all alike."""
    samples: dict[str, list] = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, server in servers.items():
            samples[name].append(load(server, args.duration, args.connections))
    return samples


def print_table(servers: dict[str, Server], samples: dict[str, list]) -> None:
    """Each server's median figures, path by path."""
    print(
        f"\n{'server':<38}{'path':<13}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU us/req':>12}{'errors':>8}"
    )
    for name, server in servers.items():
        for path in server.paths:
            result = median_result([sample[0][path] for sample in samples[name]])
            print(
                f"{server.label:<38}{path:<13}{result.requests_per_second:>8.0f}"
                f"{result.p50_ms:>9.2f}{result.p99_ms:>9.2f}"
                f"{result.cpu_us_per_request:>12.0f}{result.errors:>8}"
            )


def print_alternatives(samples: dict[str, list]) -> None:
    """Our app under each other server, as ratios to ours (same rounds)."""
    print(
        f"\n{'our app under':<38}{'path':<13}{'req/s vs ours':>20}{'CPU/req vs ours':>20}"
        f"{'p99 ms':>9}"
    )
    for name, server in ALTERNATIVES.items():
        for path in server.paths:
            throughput = per_round(samples, "requests_per_second", path, name, OURS)
            cpu = per_round(samples, "cpu_us_per_request", path, name, OURS)
            p99 = statistics.median(sample[0][path].p99_ms for sample in samples[name])
            print(
                f"{server.label:<38}{path:<13}{with_spread(throughput):>20}"
                f"{with_spread(cpu):>20}{p99:>9.2f}"
            )


def profile(path: str, duration: int, connections: int, keep: str = "") -> int:
    """py-spy on all of our server's processes under wrk on path; print the top lines."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as folder:
        process, port = start(SERVERS[OURS])
        try:
            wait_ready(process, port)
            stacks = Path(folder) / "stacks.txt"
            load_generator = subprocess.Popen(
                [
                    "wrk",
                    "--threads=1",
                    f"--connections={connections}",
                    f"--duration={duration + 4}s",
                    f"http://127.0.0.1:{port}{path}",
                ],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(2)  # past wrk's connecting
            subprocess.run(
                [
                    str(BENCH_BIN / "py-spy"),
                    "record",
                    "--subprocesses",
                    "--gil",
                    "--rate=250",
                    "--format=raw",
                    f"--duration={duration}",
                    f"--pid={process.pid}",
                    f"--output={stacks}",
                ],
                stdout=subprocess.DEVNULL,
                check=True,
            )
            load_generator.wait()
            lines = stacks.read_text().splitlines()
            if keep:
                Path(keep).write_text("\n".join(lines) + "\n")
        finally:
            stop(process)
    print(f"py-spy, --gil (the thread holding the GIL), {path}, {duration}s under wrk")
    for title, counts, total in top_frames(lines):
        print(f"\n{title}")
        for frame, count in counts:
            print(f"{100 * count / total:6.1f}%  {frame}")
    return 0


def top_frames(lines: list[str], top: int = 15) -> list[tuple[str, list, int]]:
    """From py-spy's raw (collapsed) stacks: the frames most often on top, and most often in."""
    own: collections.Counter = collections.Counter()
    inside: collections.Counter = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the first is the process
        total += int(count)
        if frames:
            own[frames[-1]] += int(count)
        # Inclusive by function: its lines added up.
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames}:
            inside[function] += int(count)
    return [
        ("self (the line running when sampled)", own.most_common(top), max(total, 1)),
        ("inclusive, by function", inside.most_common(3 * top), max(total, 1)),
    ]


def main() -> int:
    """Run everything and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per path")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--starts", type=int, default=5, help="starts for the ready time")
    parser.add_argument("--servers", action="store_true", help="add gthread, sync and granian")
    parser.add_argument("--profile", metavar="PATH", help="profile our server on PATH")
    parser.add_argument("--profile-output", metavar="FILE", help="keep py-spy's raw stacks")
    parser.add_argument("--against", metavar="REF", help="compare with the server of a commit")
    args = parser.parse_args()
    if not (BENCH_BIN / "python").exists():
        sys.exit(f"bench: {BENCH_BIN.parent} is missing: run `make bench`, which installs it")
    if args.against:
        return compare(args.against, args.duration, args.connections, args.rounds)
    if args.profile:
        return profile(args.profile, args.duration * 3, args.connections, args.profile_output)

    servers = {**SERVERS, **(ALTERNATIVES if args.servers else {})}
    print(
        f"machine: {machine()}; wrk {args.connections} connections, {args.duration}s per path, "
        f"{args.rounds} rounds alternating {len(servers)} servers"
    )
    load_before = os.getloadavg()[0]
    samples = run_rounds(servers, args)
    ready = first_ready(args.starts)
    # Other work on the machine moves every figure: say how busy it was.
    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print_table(servers, samples)
    if args.servers:
        print_alternatives(samples)

    ratios = {
        name: per_round(samples, figure, path, OURS, baseline)
        for name, (figure, path, baseline) in RATIOS.items()
    }
    worst_p99 = {
        path: statistics.median(sample[0][path].p99_ms for sample in samples[OURS])
        for path in OUR_PATHS
    }
    worst = max(worst_p99, key=worst_p99.get)
    figures = {name: statistics.median(values) for name, values in ratios.items()}
    figures["p99 ms at 32 connections, ours, worst path"] = worst_p99[worst]
    figures["first ready s (median)"] = statistics.median(ready)
    print("\nmedian of the rounds (lowest-highest round)")
    for name, value in figures.items():
        shown = with_spread(ratios[name]) if name in ratios else f"{value:.2f}"
        note = f" ({worst})" if name.startswith("p99") else ""
        print(f"{name:<46}{shown + note:>26}  {check(name, value)}")
    print(f"first ready after start: {', '.join(f'{t:.2f}' for t in ready)} s")
    rss = {name: statistics.median(sample[1] for sample in samples[name]) for name in servers}
    print("RSS after load, all processes: " + ", ".join(f"{n} {v:.0f} MiB" for n, v in rss.items()))
    errors = sum(r.errors for runs in samples.values() for run in runs for r in run[0].values())
    if errors:
        print(f"{errors} requests failed or got a non-2xx answer")
    passed = all(check(name, value).startswith("PASS") for name, value in figures.items())
    return 0 if errors == 0 and passed else 1


if __name__ == "__main__":
    sys.exit(main())
