"""Request bodies over the app's limit are a 413, however they are framed.

Werkzeug enforces MAX_CONTENT_LENGTH against the Content-Length header, and for a body without
one (chunked transfer coding) it stops reading at the limit and returns what it has: the view
sees a body cut short and answers 200. This request class looks one byte past the limit
instead, and answers 413 when there is one.
"""

from __future__ import annotations

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length, get_input_stream


class _AtMost(LimitedStream):
    """The input stream up to a maximum; RequestEntityTooLarge if the client sent more."""

    def __init__(self, stream, limit: int) -> None:
        super().__init__(stream, limit, is_max=True)

    def on_exhausted(self) -> None:
        """At the limit: the end of the body, or a body over the limit (413)."""
        if self._stream.read(1):
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        """Read to the end of the body; RequestEntityTooLarge past the limit."""
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


class LimitedRequest(Request):
    """Flask's request, with MAX_CONTENT_LENGTH enforced on bodies of unknown length too."""

    @cached_property
    def stream(self):
        """The body stream: limited by Content-Length, or by MAX_CONTENT_LENGTH without one."""
        limit = self.max_content_length
        environ = self.environ
        if (
            limit is not None
            and "wsgi.input_terminated" in environ
            and get_content_length(environ) is None
        ):
            return _AtMost(environ["wsgi.input"], limit)
        return get_input_stream(environ, max_content_length=limit)
