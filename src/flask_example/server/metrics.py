"""The server's side of the multiprocess metrics: what the master does when a worker dies.

prometheus-client's multiprocess mode keeps one file per worker and metric type, named
`<type>_<pid>.db` (`gauge_<mode>_<pid>.db` for gauges), and a scrape adds them up. Its
`mark_process_dead` removes only the live gauges of a dead worker, so every restart (a crash,
max-requests, an out-of-memory kill) would leave files behind that every scrape reads forever.
Removing them would make the pod's counters go down, which Prometheus reads as a reset. So the
master folds a dead worker's counters, histograms and summaries (sums, all of them) into one
archive file per type, then deletes the dead worker's files; its other gauges describe a
process that no longer exists and are dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Metric types whose values add up across processes, so a dead worker's part can be merged.
ADDITIVE_TYPES = ("counter", "histogram", "summary")
# Stands in for the pid in the archive files' names: `counter_archive.db`, ...
ARCHIVE = "archive"


def collect_dead_worker(pid: int) -> None:
    """Call when a worker exits: keep its counts (totals never drop), remove all its files."""
    value = os.environ.get(MULTIPROC_ENV)
    if not value:
        return
    # Imported on first use, in the master, after on_starting has set the variable: imported
    # before, prometheus_client would keep its values in memory for good.
    from prometheus_client.mmap_dict import MmapedDict  # noqa: PLC0415

    directory = Path(value)
    for path in sorted(directory.glob(f"*_{pid}.db")):
        kind = path.name.split("_", 1)[0]
        if kind in ADDITIVE_TYPES:
            # Merged before the delete: a scrape in between counts the dead worker twice for
            # a moment rather than never again (and /metrics reads again if a file vanishes).
            archive = MmapedDict(str(directory / f"{kind}_{ARCHIVE}.db"))
            try:
                for key, amount, stamp, _ in MmapedDict.read_all_values_from_file(str(path)):
                    archive.write_value(key, archive.read_value(key)[0] + amount, stamp)
            finally:
                archive.close()
        path.unlink(missing_ok=True)
