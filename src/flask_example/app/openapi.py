"""The OpenAPI 3.1 description of every endpoint, served at /openapi.json."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from flask_example.app.diagnostics import ECHO_METHODS, MAX_DELAY
from flask_example.app.errors import PROBLEM_JSON
from flask_example.app.facts import SERVICE
from flask_example.app.transfer import MAX_BYTES, MAX_INTERVAL, MAX_PARTS, MAX_SINK
from flask_example.app.websocket import MAX_MESSAGE

bp = Blueprint("openapi", __name__)

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict[str, object]) -> dict[str, object]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, object]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _ref("Problem")}}}


def _strings(*names: str) -> dict[str, object]:
    return {
        "type": "object",
        "required": list(names),
        "properties": {name: {"type": "string"} for name in names},
    }


def _operation(summary: str, responses: dict[str, object], **extra: object) -> dict[str, object]:
    return {"summary": summary, **extra, "responses": responses}


CERTIFICATE_FACTS = [
    *("subject", "subject_alt_names", "issuer", "serial"),
    *("not_before", "not_after", "sha256", "loaded_at"),
]

SCHEMAS: dict[str, object] = {
    "Problem": {
        "description": "RFC 9457 problem details: every error has this shape.",
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
        },
    },
    "Probe": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": ["ok", "ready", "starting", "draining", "fault"]}},
    },
    "Build": _strings("service", "version", "commit", "branch"),
    "Deployment": _strings("channel", "namespace", "release", "pod", "host"),
    "Request": {
        "description": "How the request reached the pod. Proxy headers are shown, never trusted.",
        "type": "object",
        "required": ["method", "scheme", "protocol", "host", "client", "forwarded"],
        "properties": {
            **_strings("method", "scheme", "protocol", "host", "client")["properties"],
            "forwarded": {
                "description": "Forwarded, Via, X-Forwarded-*, X-Original-*, X-Real-IP, ...",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "Index": {
        "allOf": [
            _ref("Build"),
            _ref("Deployment"),
            {"type": "object", "required": ["request"], "properties": {"request": _ref("Request")}},
        ]
    },
    "Headers": {
        "type": "object",
        "required": ["headers"],
        "properties": {"headers": {"type": "object", "additionalProperties": {"type": "string"}}},
    },
    "Status": {
        "type": "object",
        "required": ["status", "title"],
        "properties": {"status": {"type": "integer"}, "title": {"type": "string"}},
    },
    "Part": {
        "type": "object",
        "required": ["part", "of", "time"],
        "properties": {
            "part": {"type": "integer", "minimum": 1, "maximum": MAX_PARTS},
            "of": {"type": "integer", "minimum": 1, "maximum": MAX_PARTS},
            "time": {"type": "number", "description": "Unix time the part was made"},
        },
    },
    "Sink": {
        "type": "object",
        "required": ["length", "sha256"],
        "properties": {
            "length": {"type": "integer", "minimum": 0, "maximum": MAX_SINK},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
    "Certificate": {
        "description": "The certificate this worker serves, and when it loaded it.",
        "type": "object",
        "required": CERTIFICATE_FACTS,
        "properties": {
            **_strings("subject", "issuer", "serial")["properties"],
            "subject_alt_names": {"type": "array", "items": {"type": "string"}},
            **{
                name: {"type": "string", "format": "date-time"}
                for name in ("not_before", "not_after", "loaded_at")
            },
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
    "TLS": {
        "type": "object",
        "required": ["certificate", "ca_certificates_sha256", "connection"],
        "properties": {
            "certificate": _ref("Certificate"),
            "ca_certificates_sha256": {
                "description": "Each certificate of the secret's ca.crt; null without one",
                "type": ["array", "null"],
                "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
            "connection": {
                "type": "object",
                "required": ["version", "cipher", "server_name", "alpn"],
                "properties": {
                    "version": {"type": "string"},
                    "cipher": {"type": "string"},
                    "server_name": {"type": ["string", "null"], "description": "SNI"},
                    "alpn": {"type": ["string", "null"]},
                },
            },
        },
    },
    "Delay": {
        "type": "object",
        "required": ["delay"],
        "properties": {"delay": {"type": "number", "minimum": 0, "maximum": MAX_DELAY}},
    },
}

_ECHO = _operation(
    "The request body, returned byte for byte with the request's content type",
    {
        "200": {"description": "The body as sent", "content": {"*/*": {"schema": {}}}},
        "413": _problem("The body is larger than 64 KiB"),
    },
    requestBody={"required": False, "content": {"*/*": {"schema": {}}}},
)


def _path_parameter(name: str, kind: str, low: float, high: float) -> dict[str, object]:
    """A path parameter and the range the view accepts (anything else is its 400)."""
    schema = {"type": kind, "minimum": low, "maximum": high}
    return {"name": name, "in": "path", "required": True, "schema": schema}


_STREAM_BOUNDS = (
    f"n is not from 1 to {MAX_PARTS}, interval not from 0 to {MAX_INTERVAL:g} s, "
    "or the stream would last longer than 60 s"
)
_STREAM_PARAMETERS = [
    _path_parameter("n", "integer", 1, MAX_PARTS),
    {
        "name": "interval",
        "in": "query",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_INTERVAL, "default": 1},
    },
]


def _stream(summary: str, description: str, media_type: str) -> dict[str, object]:
    """A streamed answer of parts: /stream and /sse differ only in their framing."""
    return _operation(
        summary,
        {
            "200": {
                "description": description,
                "content": {media_type: {"schema": {"type": "string"}}},
            },
            "400": _problem(_STREAM_BOUNDS),
        },
        parameters=_STREAM_PARAMETERS,
    )


PATHS: dict[str, dict[str, object]] = {
    "/": {
        "get": _operation(
            "Which build runs where, and how this request reached it",
            {
                "200": {
                    "description": "An HTML page for people, or JSON when Accept prefers it",
                    "content": {
                        "text/html": {"schema": {"type": "string"}},
                        "application/json": {"schema": _ref("Index")},
                    },
                },
                "406": _problem("Accept allows neither text/html nor application/json"),
            },
        )
    },
    "/version": {"get": _operation("Build facts", {"200": _json("The build", _ref("Build"))})},
    "/healthz": {
        "get": _operation("Liveness", {"200": _json("The process answers", _ref("Probe"))})
    },
    "/readyz": {
        "get": _operation(
            "Readiness",
            {
                "200": _json("Ready for traffic", _ref("Probe")),
                "503": _json(
                    "Starting, shutting down or failing by FAULT_UNREADY_AFTER: send traffic "
                    "elsewhere",
                    _ref("Probe"),
                ),
            },
        )
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics of every worker of this pod",
            {
                "200": {
                    "description": "Prometheus text, or OpenMetrics when Accept asks for it",
                    "content": {
                        TEXT_FORMAT: {"schema": {"type": "string"}},
                        OPENMETRICS_FORMAT: {"schema": {"type": "string"}},
                    },
                }
            },
        )
    },
    "/tls": {
        "get": _operation(
            "The certificate this pod serves now, and this connection's TLS",
            {
                "200": _json("The certificate and the connection", _ref("TLS")),
                "404": _problem("The server speaks plain HTTP"),
            },
        )
    },
    "/headers": {
        "get": _operation(
            "The request headers as the pod received them",
            {"200": _json("The headers", _ref("Headers"))},
        )
    },
    "/echo": {method.lower(): _ECHO for method in ECHO_METHODS},
    "/status/{code}": {
        "get": _operation(
            "Answer with the status asked for",
            {
                **{
                    f"{first}XX": _json("The status asked for", _ref("Status"))
                    for first in range(2, 6)
                },
                "400": _problem("Not a whole number from 200 to 599 (1xx cannot end a request)"),
            },
            description=(
                "204, 205 and 304 have no content; 3xx add Location: /, 401 and 407 add a "
                "Basic challenge, 405 adds Allow."
            ),
            parameters=[_path_parameter("code", "integer", 200, 599)],
        )
    },
    "/delay/{seconds}": {
        "get": _operation(
            "Wait, then answer",
            {
                "200": _json("Waited this long", _ref("Delay")),
                "400": _problem(f"Not a number of seconds from 0 to {MAX_DELAY:g}"),
            },
            parameters=[_path_parameter("seconds", "number", 0, MAX_DELAY)],
        )
    },
    "/stream/{n}": {
        "get": _stream(
            "n JSON lines (1 to 100), one every `interval` seconds, each flushed as a chunk",
            "One Part object a line",
            "application/x-ndjson",
        )
    },
    "/sse/{n}": {
        "get": _stream(
            "The same parts as server-sent events (event `part`, data a Part object)",
            "An event stream",
            "text/event-stream",
        )
    },
    "/bytes/{n}": {
        "get": _operation(
            f"n bytes (0 to {MAX_BYTES}), the same for the same `seed`, with Content-Length",
            {
                "200": {
                    "description": "The bytes",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "400": _problem("n or seed is not a whole number in range"),
            },
            parameters=[
                _path_parameter("n", "integer", 0, MAX_BYTES),
                {
                    "name": "seed",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                },
            ],
        )
    },
    "/sink": {
        "post": _operation(
            f"Read and discard a body of up to {MAX_SINK} bytes (Content-Length or chunked)",
            {
                "200": _json("Its length and SHA-256", _ref("Sink")),
                "413": _problem(f"The body is larger than {MAX_SINK} bytes"),
            },
            requestBody={"required": False, "content": {"*/*": {"schema": {}}}},
        )
    },
    "/ws/echo": {
        "get": _operation(
            "WebSocket echo: every text or binary message comes back, then the close handshake",
            {
                "101": {"description": "Switching to WebSocket"},
                "400": _problem("An upgrade without Sec-WebSocket-Key or version 13"),
                "426": _problem("Not a WebSocket upgrade, or a version other than 13"),
                "501": _problem("Served by something other than the service's gunicorn"),
                "503": _problem("This worker holds as many sessions as it may (Retry-After)"),
            },
            description=(
                f"A message above {MAX_MESSAGE} bytes closes with 1009; 30 s idle or 300 s in "
                "all closes with 1001. A worker holds at most half its threads in sessions."
            ),
        )
    },
    "/openapi.json": {
        "get": _operation(
            "This document",
            {"200": _json("OpenAPI 3.1", {"type": "object"})},
        )
    },
}


def document(version: str) -> dict[str, object]:
    """The OpenAPI document for the build that runs."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": SERVICE,
            "version": version,
            "description": (
                "Proves that a cluster, its ingress, its certificates and its pipeline work. "
                "Unknown paths answer 404 and unsupported methods 405 (with Allow), both as "
                "problem details (#/components/schemas/Problem). With fault injection on "
                "(the FAULT_* settings), any endpoint but the probes and /metrics may also be "
                "delayed or answer 500."
            ),
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document."""
    return jsonify(document(current_app.config["SETTINGS"].version))
