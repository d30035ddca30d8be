"""TLS for gunicorn: TLS 1.2 or newer, and a renewed certificate served without a restart.

gunicorn asks its `ssl_context` hook for a context on every new connection. Each worker keeps
one context and rebuilds it when the certificate or key file changes on disk. Kubernetes
updates a mounted secret by swapping the `..data` symlink to a new directory, so a change
shows up as a new inode behind the same path. Connections already open keep the certificate
they started with; no worker restarts and no request fails.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable

# How often a worker looks at the files; kubelet refreshes secrets once a minute at best.
CHECK_INTERVAL = 1.0

_log = logging.getLogger("gunicorn.error")


def _file_stamp(path: str) -> tuple[int, int, int, int]:
    # stat() follows the `..data` symlink, so a swapped secret has a new device/inode pair.
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


class ReloadingContext:
    """The SSLContext for the current certificate files, rebuilt when they change."""

    def __init__(self, check_interval: float = CHECK_INTERVAL) -> None:
        self.check_interval = check_interval
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self, certfile: str, keyfile: str, build: Callable[[], ssl.SSLContext]):
        """Return the context, rebuilt with `build` if the files changed since the last check."""
        if self._context is not None and time.monotonic() - self._checked < self.check_interval:
            return self._context
        with self._lock:
            self._checked = time.monotonic()
            try:
                stamp = (_file_stamp(certfile), _file_stamp(keyfile))
                if self._context is None or stamp != self._stamp:
                    # A read that straddles a swap (new certificate, old key) fails the
                    # key check in build(); keep the old context and try again next time.
                    self._context, self._stamp = build(), stamp
                    _log.info("TLS certificate loaded from %s", certfile)
            except (OSError, ssl.SSLError) as error:
                if self._context is None:
                    raise
                _log.warning("New TLS files cannot be loaded yet, keeping the old: %s", error)
        return self._context


def secure(context: ssl.SSLContext) -> ssl.SSLContext:
    """Require TLS 1.2 or newer on a server context."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
