"""The JSON access log writes one line per request, to gunicorn's handlers or through logging."""

from __future__ import annotations

import datetime
import json
import logging

from gunicorn.config import Config

from flask_example.server import log
from flask_example.server.log import JsonLogger, _now

ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "HTTP_HOST": "pod"}


class _Response:
    status = "200 OK"
    sent = 15


def _logger(accesslog: str) -> JsonLogger:
    config = Config()
    config.set("accesslog", accesslog)
    config.set("errorlog", "-")
    return JsonLogger(config)


def test_a_file_access_log_gets_one_json_line_per_request(tmp_path) -> None:
    path = tmp_path / "access.log"
    logger = _logger(str(path))
    for _ in range(2):
        logger.access(_Response, None, ENVIRON, datetime.timedelta(milliseconds=2))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["path"] == "/healthz"
    assert json.loads(lines[0])["status"] == 200


def test_a_handler_that_is_no_stream_gets_the_line_through_logging() -> None:
    config = Config()
    config.set("errorlog", "-")
    # A logging config (gunicorn's --log-config-dict) with a handler that keeps the records.
    config.set(
        "logconfig_dict",
        {
            "version": 1,
            "handlers": {
                "kept": {"class": "logging.handlers.MemoryHandler", "capacity": 10},
                # gunicorn's defaults for the other loggers refer to these two.
                "console": {"class": "logging.StreamHandler"},
                "error_console": {"class": "logging.StreamHandler"},
            },
            "loggers": {"gunicorn.access": {"handlers": ["kept"], "level": "INFO"}},
        },
    )
    logger = JsonLogger(config)
    logger.access(_Response, None, ENVIRON, datetime.timedelta(milliseconds=2))
    (handler,) = logger.access_log.handlers
    assert [json.loads(r.getMessage())["path"] for r in handler.buffer] == ["/healthz"]


def test_times_are_iso_8601_utc_with_milliseconds() -> None:
    before = datetime.datetime.now(datetime.UTC)
    stamps = [_now() for _ in range(3)]  # the second one reuses the first one's second
    after = datetime.datetime.now(datetime.UTC)
    for stamp in stamps:
        assert len(stamp) == len("2026-01-31T12:00:00.123Z")
        assert stamp.endswith("Z")
        moment = datetime.datetime.fromisoformat(stamp)
        assert before - datetime.timedelta(milliseconds=1) <= moment <= after


class _Writes:
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def _held_logger(monkeypatch) -> tuple[JsonLogger, _Writes]:
    logger = _logger("-")
    stream = _Writes()
    # The access logger is one per process: earlier loggers may have left handlers on it.
    monkeypatch.setattr(logger.access_log, "handlers", [logging.StreamHandler(stream)])
    monkeypatch.setattr(logger, "_access_streams", True)
    return logger, stream


def _paths(stream: _Writes) -> list[str]:
    return [json.loads(line)["path"] for line in "".join(stream.writes).splitlines()]


def _line(logger: JsonLogger, path: str, hold: bool) -> None:
    environ = {**ENVIRON, "PATH_INFO": path}
    logger.access(_Response, None, environ, datetime.timedelta(milliseconds=2), hold=hold)


def test_held_lines_go_out_together_in_order_with_the_next_unheld_one(monkeypatch) -> None:
    logger, stream = _held_logger(monkeypatch)
    _line(logger, "/a", hold=True)
    _line(logger, "/b", hold=True)
    assert stream.writes == []
    _line(logger, "/c", hold=False)  # the worker is idle again: everything goes out
    assert len(stream.writes) == 1
    assert _paths(stream) == ["/a", "/b", "/c"]
    _line(logger, "/d", hold=False)
    assert _paths(stream) == ["/a", "/b", "/c", "/d"]


def test_a_held_line_waits_access_hold_at_most(monkeypatch) -> None:
    logger, stream = _held_logger(monkeypatch)
    now = [100.0]
    monkeypatch.setattr(log.time, "monotonic", lambda: now[0])
    _line(logger, "/a", hold=True)
    logger.flush_access(older_than=log.ACCESS_HOLD)  # the main loop looks: not due yet
    assert stream.writes == []
    now[0] += log.ACCESS_HOLD + 0.001
    logger.flush_access(older_than=log.ACCESS_HOLD)
    assert _paths(stream) == ["/a"]
    _line(logger, "/b", hold=True)
    now[0] += log.ACCESS_HOLD + 0.001
    _line(logger, "/c", hold=True)  # a busy worker's own line finds the oldest due
    assert _paths(stream) == ["/a", "/b", "/c"]


def test_held_lines_go_out_once_they_fill_the_buffer(monkeypatch) -> None:
    logger, stream = _held_logger(monkeypatch)
    monkeypatch.setattr(log, "ACCESS_BUFFER", 500)
    for n in range(10):
        _line(logger, f"/{n}", hold=True)
    assert 1 <= len(stream.writes) < 10
    logger.flush_access()
    assert _paths(stream) == [f"/{n}" for n in range(10)]


def test_a_handler_that_is_no_stream_gets_every_line_at_once(monkeypatch) -> None:
    logger = _logger("-")
    records = []
    monkeypatch.setattr(logger, "_access_streams", False)
    monkeypatch.setattr(logger.access_log, "info", records.append)
    _line(logger, "/a", hold=True)
    assert [json.loads(r)["path"] for r in records] == ["/a"]
