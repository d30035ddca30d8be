"""hack/bench.py reads wrk's report correctly (the benchmark itself is `make bench`)."""

from __future__ import annotations

import subprocess

import pytest

from hack.bench import ROOT, extract, parse_wrk, spread

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
