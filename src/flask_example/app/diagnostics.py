"""Endpoints for testing what an ingress or proxy does to requests and responses."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from flask_example.settings import DECIMAL_NUMBER, WHOLE_NUMBER

bp = Blueprint("diagnostics", __name__)

ECHO_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_DELAY = 10.0
# These statuses must not carry content (RFC 9110).
EMPTY_STATUSES = frozenset({204, 205, 304})
# Headers RFC 9110 requires with these statuses, so that clients and proxies behave as usual.
STATUS_HEADERS = {
    **{code: {"Location": "/"} for code in (301, 302, 303, 307, 308)},
    401: {"WWW-Authenticate": 'Basic realm="flask-example-1"'},
    405: {"Allow": "GET, HEAD, OPTIONS"},
    407: {"Proxy-Authenticate": 'Basic realm="flask-example-1"'},
}


def no_tls(_environ: dict) -> None:
    """The TLS facts of an app that no server manages: none (the server's are in .server.tls)."""


def sleep(_environ: dict, seconds: float) -> bool:
    """Wait as /delay does in an app that no server manages: in full (see .server.wsgi)."""
    time.sleep(seconds)
    return True


@bp.get("/tls")
def tls() -> Response:
    """The certificate this pod serves now and this connection's TLS; 404 over plain HTTP."""
    facts = current_app.config["TLS_FACTS"](request.environ)
    if facts is None:
        raise NotFound(
            "this server speaks plain HTTP: mount a TLS secret (TLS_CERT_FILE, TLS_KEY_FILE) "
            "to serve HTTPS"
        )
    return jsonify(facts)


@bp.get("/headers")
def headers() -> Response:
    """The request headers as this process received them."""
    return jsonify(headers=dict(request.headers))


@bp.route("/echo", methods=ECHO_METHODS)
def echo() -> Response:
    """The request body, byte for byte, with the request's content type."""
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge as error:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        raise RequestEntityTooLarge(
            f"the body is larger than {limit} bytes: send at most {limit} bytes to /echo"
        ) from error
    return Response(body, content_type=request.content_type or "application/octet-stream")


@bp.get("/status/<code>")
def status(code: str) -> Response:
    """Answer with the status asked for (200-599); 1xx cannot be a final answer, so 400."""
    value = int(code) if WHOLE_NUMBER.fullmatch(code) else None
    if value is None or not 100 <= value <= 599:
        raise BadRequest(f"status {code!r} is invalid: ask for a whole number from 200 to 599")
    if value < 200:
        # An application cannot send an interim (1xx) response as its final answer: the
        # server would emit a response with no end, which breaks the connection.
        raise BadRequest(
            f"status {value} is an interim (1xx) response, which cannot end a request: "
            "ask for a whole number from 200 to 599"
        )
    if value in EMPTY_STATUSES:
        response = Response(status=value)
    else:
        response = jsonify(status=value, title=HTTP_STATUS_CODES.get(value, "Unknown"))
        response.status_code = value
    response.headers.update(STATUS_HEADERS.get(value, {}))
    return response


@bp.get("/delay/<seconds>")
def delay(seconds: str) -> Response:
    """Wait the seconds asked for (0 to 10, fractions allowed), then answer.

    The server's WAIT ends the wait early when the client leaves: its thread is free again,
    and the answer, sent to no one, is dropped with the connection.
    """
    value = float(seconds) if DECIMAL_NUMBER.fullmatch(seconds) else None
    if value is None or not 0 <= value <= MAX_DELAY:
        raise BadRequest(
            f"delay {seconds!r} is invalid: ask for a number of seconds from 0 to {MAX_DELAY:g}"
        )
    if not current_app.config["WAIT"](request.environ, value):
        current_app.logger.info("/delay/%s ended early: the client left", seconds)
    return jsonify(delay=value)
