"""Request bodies as the worker reads them: framing checked strictly, in linear time.

gunicorn's body readers trust more than RFC 9112 allows (a chunk size of `0x10`, bare-LF chunk
lines) and re-read what they buffered. These readers check every byte once: a chunked body is
decoded as it arrives (in the worker's main loop, then in the request thread, by the same
decoder), a Content-Length body ends at its length. Any framing error, a body cut short, a
body past MAX_BODY or past its deadline raises an HTTP error (a werkzeug exception, so the
app answers it as problem JSON like any other) and marks the request to close its connection:
the bytes after a broken body cannot be trusted to start a request.
"""

from __future__ import annotations

import re

from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, RequestTimeout

# No endpoint takes a larger body than this (POST /sink).
MAX_BODY = 32 * 1024 * 1024
# A chunk-size line with its extensions, or a trailer line; longer ones are refused.
MAX_LINE = 4096
MAX_TRAILERS = 8192
# RFC 9112 7.1: chunk-size is hex digits only (no 0x, no sign, no spaces before), then
# optional extensions after a semicolon.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?")

# Decoder states: a chunk-size line, chunk data, the CRLF after the data, trailers, done.
SIZE, DATA, DATA_END, TRAILERS, DONE = range(5)


class BadFraming(BadRequest):
    """The body's framing is broken: answered 400, and the connection closes."""


class BodyCutShort(BadRequest):
    """The client closed the connection before the end of its body."""

    description = "the connection closed before the end of the body: send the whole body"


class BodyTimeout(RequestTimeout):
    """The client did not send its body within BODY_TIMEOUT."""


class BodyTooLarge(RequestEntityTooLarge):
    """A body larger than any endpoint takes."""

    description = f"the body is larger than {MAX_BODY} bytes: no endpoint takes more"


class ChunkDecoder:
    """Decodes chunked transfer coding incrementally; each byte is looked at once."""

    def __init__(self) -> None:
        self.state = SIZE
        self.line = bytearray()
        self.left = 0  # data bytes left in the current chunk
        self.trailers = 0
        self.total = 0

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailers have been read."""
        return self.state == DONE

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Decode `data`: (body bytes, bytes after the body's end). BadFraming if malformed."""
        out = []
        pos, end = 0, len(data)
        while pos < end and self.state != DONE:
            if self.state == DATA:
                take = min(self.left, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self.left -= take
                if not self.left:
                    self.state = DATA_END
                continue
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline + 1
            self.line += data[pos:stop]
            pos = stop
            if len(self.line) > MAX_LINE:
                raise BadFraming(f"a chunk line is longer than {MAX_LINE} bytes")
            if newline >= 0:
                self._line(bytes(self.line))
                self.line.clear()
        return b"".join(out), data[pos:]

    def _line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise BadFraming("a chunk line ends without CRLF: end every chunk line with CRLF")
        line = line[:-2]
        if self.state == DATA_END:
            if line:
                raise BadFraming("a chunk is longer than its size: send the size it has")
            self.state = SIZE
        elif self.state == SIZE:
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise BadFraming(
                    f"invalid chunk size {line[:40]!r}: send the size in hex digits, then CRLF"
                )
            self.left = int(match[1], 16)
            self.total += self.left
            if self.total > MAX_BODY:
                raise BodyTooLarge()
            self.state = DATA if self.left else TRAILERS
        else:
            self.trailers += len(line) + 2
            if self.trailers > MAX_TRAILERS:
                raise BadFraming(f"the trailers are longer than {MAX_TRAILERS} bytes")
            if not line:
                self.state = DONE


class BodyReader:
    """gunicorn's body reader interface (`read(size)`) over a deadline-bound unreader.

    `length` is the Content-Length, or None for a chunked body. `read` may return more than
    `size` bytes: gunicorn's Body keeps what its caller did not take.
    """

    def __init__(self, request, unreader, length: int | None) -> None:
        self.request = request
        self.unreader = unreader
        self.left = length
        self.decoder = ChunkDecoder() if length is None else None
        self.decoded: list[bytes] = []
        self.buffered = 0  # bytes waiting: decoded ones, or raw ones of a Content-Length body

    def feed(self, data: bytes) -> None:
        """Take bytes the main loop read (BadFraming and the like are the caller's to answer)."""
        if self.decoder is None:
            self.unreader.feed(data)
            self.buffered += len(data)
            return
        body, rest = self.decoder.feed(data)
        if body:
            self.decoded.append(body)
            self.buffered += len(body)
        if rest:
            self.unreader.feed(rest)  # the next, pipelined request

    @property
    def complete(self) -> bool:
        """True when the whole body is in memory."""
        if self.decoder is None:
            return self.buffered >= self.left
        return self.decoder.done

    def read(self, size: int) -> bytes:
        """The next bytes of the body; b"" at its end."""
        try:
            return self._read()
        except Exception:
            self.request.force_close()
            raise

    def _read(self) -> bytes:
        if self.decoder is None:
            if self.left <= 0:
                return b""
            data = self.unreader.read()
            if not data:
                raise BodyCutShort()
            if len(data) > self.left:
                self.unreader.unread(data[self.left :])
                data = data[: self.left]
            self.left -= len(data)
            self.buffered = 0
            return data
        while not self.decoded and not self.decoder.done:
            data = self.unreader.read()
            if not data:
                raise BodyCutShort()
            self.feed(data)
        body = b"".join(self.decoded)
        self.decoded.clear()
        self.buffered = 0
        return body
