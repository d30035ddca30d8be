"""A dead worker's Prometheus multiprocess files: its counts kept, its files removed.

prometheus-client's multiprocess mode keeps one file per worker and metric type, named
`<type>_<pid>.db` (`gauge_<mode>_<pid>.db` for gauges), and a scrape adds them up. Its
`mark_process_dead` removes only the live gauges of a dead worker, so every restart (a crash,
max-requests, an out-of-memory kill) leaves files behind that every scrape reads forever.
Removing them would make the pod's counters go down, which Prometheus reads as a reset. So the
master folds a dead worker's counters, histograms and summaries (sums, all of them) into one
archive file per type, then deletes the dead worker's files; its other gauges describe a
process that no longer exists and are dropped.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

# Metric types whose values add up across processes, so a dead worker's part can be merged.
ADDITIVE_TYPES = ("counter", "histogram", "summary")
# Stands in for the pid in the archive files' names: `counter_archive.db`, ...
ARCHIVE = "archive"


def collect_dead_worker(pid: int, directory: Path) -> None:
    """Merge a dead worker's additive values into the archive files and delete its files."""
    for path in sorted(directory.glob(f"*_{pid}.db")):
        kind = path.name.split("_", 1)[0]
        if kind in ADDITIVE_TYPES:
            # Merged before the delete: a scrape in between counts the dead worker twice for
            # a moment rather than never again.
            archive = MmapedDict(str(directory / f"{kind}_{ARCHIVE}.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path)):
                    archive.write_value(key, archive.read_value(key)[0] + value, timestamp)
            finally:
                archive.close()
        path.unlink(missing_ok=True)
