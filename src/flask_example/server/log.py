"""gunicorn logger writing one JSON object per line: access log on stdout, errors on stderr."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time

from gunicorn import glogging

# Request headers worth a field of their own. Credentials (Authorization, Cookie, ...) are
# deliberately absent: an access log is read by many more people than the service's secrets.
_LOGGED_HEADERS = {
    "HTTP_HOST": "host",
    "HTTP_USER_AGENT": "user_agent",
    "HTTP_REFERER": "referer",
    "HTTP_X_FORWARDED_FOR": "forwarded_for",
    "HTTP_X_REQUEST_ID": "request_id",
}


# W3C Trace Context: version-traceid-parentid-flags, lowercase hex; an all-zero id is invalid.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id(traceparent: str) -> str | None:
    """The trace id of a valid `traceparent` header (version ff is invalid), else None."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    return match.group(1) if match and not traceparent.startswith("ff") else None


# A busy worker holds access lines and writes them together, as nginx's `access_log ... buffer=
# flush=` does: one write, not one per request, while other requests wait for the same GIL.
# A held line is written at most ACCESS_HOLD seconds late (the worker's main loop looks twice
# a second), or as soon as the lines held reach ACCESS_BUFFER characters or the worker is idle.
ACCESS_HOLD = 0.1
ACCESS_BUFFER = 32 * 1024


# Made once: json.dumps with any non-default option builds a new encoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False).encode


# The last whole second and its text: every line of the same second reuses it.
_second: tuple[int, str] = (0, "")


def _now() -> str:
    """UTC now as ISO 8601 with milliseconds, 2026-01-31T12:00:00.123Z.

    The date and time of day are formatted once a second; per line only the milliseconds are
    (datetime.now(UTC).isoformat() was a quarter of an access line's CPU, by profile).
    """
    global _second  # noqa: PLW0603 - a cache; a tuple is replaced whole, safe across threads
    now = time.time()
    whole = int(now)
    second = _second
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int((now - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Format a log record as one JSON line with time, level, logger and message."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as compact JSON; a traceback goes into an `error` field."""
        entry = {
            "time": _now(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return _encode(entry)


class JsonLogger(glogging.Logger):
    """gunicorn's logger with both of its logs in JSON, one line per event."""

    def __init__(self, cfg) -> None:
        self._held: list[str] = []  # access lines not written yet, oldest first
        self._held_size = 0
        self._held_since = 0.0
        # Reentrant: a worker's SIGQUIT handler flushes too, maybe in the middle of a flush.
        self._held_lock = threading.RLock()
        super().__init__(cfg)

    def setup(self, cfg) -> None:
        """Let gunicorn set up its handlers, then format the error log as JSON too."""
        super().setup(cfg)
        # Asked on every request; the answer only changes when the config is loaded again.
        self._access_enabled = glogging.Logger.access_log_enabled.fget(self)
        # The access log's handler prints the message as is: access() already made it JSON.
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        # gunicorn's own handlers (stdout, a file) are streams that print the message as is.
        self._access_streams = all(
            isinstance(handler, logging.StreamHandler) for handler in self.access_log.handlers
        )

    def access(self, resp, req, environ, request_time, hold: bool = False) -> None:
        """Log one request as a JSON object (no query string, no credentials).

        hold=True (the worker is busy): the line may wait, ACCESS_HOLD seconds at most, to be
        written with the next ones; see flush_access.
        """
        if not self._access_enabled:  # the attribute: the property costs five config lookups
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        entry = {
            "time": _now(),
            "level": "info",
            "logger": "access",
            "pid": os.getpid(),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            # The path only: query strings carry tokens often enough to keep them out of logs.
            "path": environ.get("PATH_INFO"),
            "protocol": environ.get("SERVER_PROTOCOL"),
            "scheme": environ.get("wsgi.url_scheme"),
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
        }
        for key, field in _LOGGED_HEADERS.items():
            if key in environ:
                entry[field] = environ[key]
        if "HTTP_TRACEPARENT" in environ:
            # Only a well-formed id: a header is the client's to fill with anything.
            entry["trace_id"] = trace_id(environ["HTTP_TRACEPARENT"])
        line = _encode(entry)
        if not (hold or self._held) or not self._access_streams:
            self._write_access([line])
            return
        with self._held_lock:
            if not self._held:
                self._held_since = time.monotonic()
            self._held.append(line)
            self._held_size += len(line)
            due = (
                not hold
                or self._held_size >= ACCESS_BUFFER
                or time.monotonic() - self._held_since >= ACCESS_HOLD
            )
        if due:
            self.flush_access()

    def flush_access(self, older_than: float = 0.0) -> None:
        """Write the held access lines, in order, if the oldest waited `older_than` seconds."""
        with self._held_lock:  # written under it too: batches go out in the order they were held
            if not self._held or time.monotonic() - self._held_since < older_than:
                return
            lines, self._held, self._held_size = self._held, [], 0
            self._write_access(lines)

    def _write_access(self, lines: list[str]) -> None:
        # Straight to the handlers' streams, as StreamHandler.emit writes: through
        # Logger.info, the LogRecord made for each line (caller lookup, thread and process
        # names) and the handler chain cost more than the line itself (see docs/benchmark.md).
        # Several lines go out in one write: each is one JSON object with no line break inside
        # (json escapes them), ended by the handler's terminator as a single line is.
        if not self._access_streams:
            for line in lines:
                self.access_log.info(line)
            return
        for handler in self.access_log.handlers:
            end = handler.terminator
            with handler.lock:
                try:
                    handler.stream.write(end.join(lines) + end)
                    handler.stream.flush()
                except (OSError, ValueError):
                    # What logging does with lines it cannot write: a note on stderr.
                    handler.handleError(logging.makeLogRecord({"msg": end.join(lines)}))
