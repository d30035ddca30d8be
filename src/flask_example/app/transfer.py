"""Endpoints that show how a proxy carries streams and large bodies (all bounded).

/stream/<n> and /sse/<n> send each part as it is produced; /bytes/<n> sends a deterministic
body with its length; POST /sink reads a body of up to 32 MiB a block at a time and answers its
length and SHA-256, never holding it.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from flask_example.settings import DECIMAL_NUMBER, WHOLE_NUMBER

bp = Blueprint("transfer", __name__)

MAX_PARTS = 100
MAX_INTERVAL = 10.0
# No stream holds a thread for longer than this, whatever n and interval ask for.
MAX_STREAM_SECONDS = 60.0
MAX_BYTES = 16 * 1024 * 1024
MAX_SINK = 32 * 1024 * 1024
BLOCK = 64 * 1024


def whole(name: str, raw: str, low: int, high: int) -> int:
    """A whole number from low to high, or a 400 naming the input and the range."""
    value = int(raw) if WHOLE_NUMBER.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} {raw!r} is invalid: ask for a whole number from {low} to {high}")
    return value


def stream_plan(n: str) -> tuple[int, float]:
    """The parts and the interval between them, checked against the bounds."""
    parts = whole("n", n, 1, MAX_PARTS)
    raw = request.args.get("interval", "1")
    interval = float(raw) if DECIMAL_NUMBER.fullmatch(raw) else None
    if interval is None or not 0 <= interval <= MAX_INTERVAL:
        raise BadRequest(
            f"interval {raw!r} is invalid: ask for a number of seconds from 0 to {MAX_INTERVAL:g}"
        )
    if (parts - 1) * interval > MAX_STREAM_SECONDS:
        raise BadRequest(
            f"{parts} parts {interval:g} s apart take longer than {MAX_STREAM_SECONDS:g} s: "
            "ask for fewer parts or a shorter interval"
        )
    return parts, interval


def paced(parts: int, interval: float) -> Iterator[int]:
    """1..parts, waiting `interval` seconds before each but the first."""
    for part in range(1, parts + 1):
        if part > 1:
            time.sleep(interval)
        yield part


@bp.get("/stream/<n>")
def stream(n: str) -> Response:
    """n JSON lines, one every `interval` seconds, each sent as its own chunk."""
    parts, interval = stream_plan(n)
    lines = (
        json.dumps({"part": part, "of": parts, "time": time.time()}) + "\n"
        for part in paced(parts, interval)
    )
    return Response(lines, content_type="application/x-ndjson")


@bp.get("/sse/<n>")
def sse(n: str) -> Response:
    """The same parts as server-sent events."""
    parts, interval = stream_plan(n)
    events = (
        f"id: {part}\nevent: part\ndata: "
        + json.dumps({"part": part, "of": parts, "time": time.time()})
        + "\n\n"
        for part in paced(parts, interval)
    )
    return Response(events, content_type="text/event-stream")


def seeded_bytes(size: int, seed: int) -> Iterator[bytes]:
    """`size` pseudo-random bytes from `seed`, a block at a time.

    Whole blocks are drawn and the last one cut, so a shorter answer is a prefix of a longer one.
    """
    generator = random.Random(seed)  # noqa: S311 - test data, not a secret
    left = size
    while left:
        block = generator.randbytes(BLOCK)[:left]
        yield block
        left -= len(block)


@bp.get("/bytes/<n>")
def bytes_(n: str) -> Response:
    """n bytes (up to 16 MiB) derived from the `seed` query, streamed with Content-Length."""
    size = whole("n", n, 0, MAX_BYTES)
    seed = whole("seed", request.args.get("seed", "0"), 0, 2**32 - 1)
    response = Response(seeded_bytes(size, seed), content_type="application/octet-stream")
    response.headers["Content-Length"] = str(size)
    return response


def too_large() -> RequestEntityTooLarge:
    """The 413 for a body above the sink's limit."""
    return RequestEntityTooLarge(
        f"the body is larger than {MAX_SINK} bytes: send at most {MAX_SINK} bytes to /sink"
    )


@bp.post("/sink")
def sink() -> Response:
    """Read and discard the body (Content-Length or chunked): its length and SHA-256."""
    declared = request.content_length
    if declared is not None and declared > MAX_SINK:
        raise too_large()
    # The raw input, not request.stream: the app's body limit is /echo's, the sink has its own.
    source = request.environ["wsgi.input"]
    digest, length = hashlib.sha256(), 0
    while block := source.read(BLOCK if declared is None else min(BLOCK, declared - length)):
        length += len(block)
        if length > MAX_SINK:
            raise too_large()
        digest.update(block)
        if declared is not None and length >= declared:
            break
    return jsonify(length=length, sha256=digest.hexdigest())
