"""The server's side of the multiprocess metrics: what the master does when a worker dies."""

from __future__ import annotations

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def mark_process_dead(pid: int) -> None:
    """Call when a worker exits: drop its in-progress gauge, keep its counts (totals never drop)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    # Imported on first use, in the master, after on_starting has set the variable: imported
    # before, prometheus_client would keep its values in memory for good.
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(pid, directory)
