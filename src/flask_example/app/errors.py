"""Every error answers in JSON (RFC 9457 problem details), never as an HTML page or a traceback."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A problem-details response: status, its standard title and a detail for people."""
    response = current_app.json.response(
        {
            "type": "about:blank",
            "title": HTTP_STATUS_CODES.get(status, "Unknown"),
            "status": status,
            "detail": detail,
        }
    )
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    response.headers.extend(headers)
    return response


def _http_error(error: HTTPException) -> Response:
    # Keep the headers the exception carries (Allow on a 405), but not its HTML content type.
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return problem(error.code or 500, error.description or "", headers)


def init_app(app: Flask) -> None:
    """Answer routing errors, bad input and unhandled exceptions (as a 500) with problem JSON."""
    # Flask wraps an unhandled exception in InternalServerError, so this one handler covers it;
    # the description of a 500 is werkzeug's generic text, the traceback goes to the log only.
    app.register_error_handler(HTTPException, _http_error)
