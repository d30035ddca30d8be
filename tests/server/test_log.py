"""The JSON access log writes one line per request, to gunicorn's handlers or through logging."""

from __future__ import annotations

import datetime
import json

from gunicorn.config import Config

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
