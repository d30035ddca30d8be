"""hack/bench.py reads wrk's report correctly (the benchmark itself is `make bench`)."""

from __future__ import annotations

import subprocess

import pytest

from hack.bench import (
    BARE,
    OURS,
    RATIOS,
    ROOT,
    SERVERS,
    TARGETS,
    WrkResult,
    check,
    extract,
    parse_wrk,
    per_round,
    spread,
    top_frames,
    with_spread,
)

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/healthz
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.71ms    9.02ms 118.23ms   88.02%
    Req/Sec     1.54k   212.35     2.01k    71.00%
  Latency Distribution
     50%    8.27ms
     75%   12.90ms
     90%   19.79ms
     99%    1.20s
  30712 requests in 10.01s, 5.27MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   3068.20
Transfer/sec:    539.32KB
"""


def test_reads_throughput_latency_percentiles_and_errors():
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests_per_second == 3068.20
    assert result.p50_ms == pytest.approx(8.27)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.errors == 7
    assert result.requests == 30712


@pytest.mark.parametrize(("text", "ms"), [("850.00us", 0.85), ("2.50ms", 2.5), ("1.5m", 90000.0)])
def test_latency_units(text, ms):
    output = WRK_OUTPUT.replace("8.27ms", text)
    assert parse_wrk(output).p50_ms == pytest.approx(ms)


def test_output_without_latency_distribution_is_rejected():
    with pytest.raises(ValueError, match="wrk --latency"):
        parse_wrk("Requests/sec:   3068.20\n")


def test_against_extracts_the_server_of_a_commit(tmp_path) -> None:
    tree = extract("HEAD", tmp_path)
    assert (tree / "entrypoint.sh").read_bytes() == (ROOT / "entrypoint.sh").read_bytes()
    committed = subprocess.run(
        ["git", "-C", str(ROOT), "show", "HEAD:src/flask_example/settings.py"],
        capture_output=True,
        check=True,
    ).stdout
    assert (tree / "src" / "flask_example" / "settings.py").read_bytes() == committed
    assert not (tree / "tests").exists(), "only what the server runs"


def test_against_an_unknown_ref_is_one_line(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"cannot read 'no-such-ref' from git .*give a commit"):
        extract("no-such-ref", tmp_path)


def test_spread_is_largest_over_smallest() -> None:
    assert spread([100.0, 110.0, 105.0]) == pytest.approx(1.1)


def _round(**figures: tuple[float, float]) -> tuple[dict, float]:
    # One server's round: path -> (requests/s, CPU us per request).
    results = {
        path: WrkResult(rps, 1.0, 2.0, 0, cpu_us_per_request=cpu)
        for path, (rps, cpu) in figures.items()
    }
    return results, 90.0


def test_ratios_are_taken_round_by_round() -> None:
    samples = {
        OURS: [_round(**{"/healthz": (1200.0, 300.0)}), _round(**{"/healthz": (600.0, 330.0)})],
        BARE: [_round(**{"/healthz": (1000.0, 250.0)}), _round(**{"/healthz": (500.0, 300.0)})],
    }
    assert per_round(samples, "requests_per_second", "/healthz", OURS, BARE) == [1.2, 1.2]
    cpu = per_round(samples, "cpu_us_per_request", "/healthz", OURS, BARE)
    assert cpu == pytest.approx([1.2, 1.1])
    assert with_spread(cpu) == "1.15 (1.10-1.20)"


def test_every_target_ratio_names_a_baseline_path_it_serves() -> None:
    for name, (_figure, path, baseline) in RATIOS.items():
        assert name in TARGETS
        assert path in SERVERS[OURS].paths
        assert path in SERVERS[baseline].paths


def test_targets_pass_and_fail_at_their_bounds() -> None:
    assert check("/ CPU per request, ours / bare Flask", 1.1).startswith("PASS")
    assert check("/ CPU per request, ours / bare Flask", 1.11).startswith("FAIL")
    assert check("/healthz req/s, ours / bare Flask", 1.0).startswith("PASS")
    assert check("p99 ms at 32 connections, ours, worst path", 30.0).startswith("FAIL")


def test_profile_lines_are_counted_by_line_and_by_function() -> None:
    stacks = [
        "process 1:gunicorn;run (w.py:10);handle (w.py:20);render (t.py:5) 6",
        "process 1:gunicorn;run (w.py:10);handle (w.py:21) 4",
    ]
    (_, own, total), (_, inside, _) = top_frames(stacks)
    assert total == 10
    assert own[0] == ("render (t.py:5)", 6)
    assert dict(inside)["handle (w.py)"] == 10
    assert not any(frame.startswith("process") for frame, _ in inside)


def test_the_bench_requirements_are_pinned_and_installed_by_make_bench() -> None:
    lines = (ROOT / "requirements" / "bench.txt").read_text().splitlines()
    packages = [line for line in lines if line and not line.startswith(("#", "-r "))]
    assert packages, "requirements/bench.txt names the bench's packages"
    assert all("==" in line for line in packages), "pin every package of the bench"
    assert ".tools/bench/.stamp" in (ROOT / "Makefile").read_text()
