"""Security headers on every response."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable

from flask import Flask

# Nothing but the index page is meant to be rendered by a browser: deny everything, and
# sandbox the rest, so that an echoed body can never run as a page of this origin.
DEFAULT_CSP = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
)

HEADERS = {
    "Content-Security-Policy": DEFAULT_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Every answer describes one request to one pod: no proxy or browser may reuse it.
    "Cache-Control": "no-store",
}


def page_policy(stylesheet: str) -> str:
    """The index page's policy: exactly this inline stylesheet, nothing else, no scripts."""
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


# (lower-case name, (name, value)), worked out once instead of on every response.
_DEFAULTS = tuple((name.lower(), (name, value)) for name, value in HEADERS.items())


class SecurityHeaders:
    """WSGI middleware: add HEADERS to every response that does not set its own.

    At the WSGI level rather than in an after_request hook: the headers are plain tuples added
    to the list the server sends, which spares werkzeug's per-header validation and Headers
    object on every response (a few percent of the CPU per request, by profile).
    """

    def __init__(self, wsgi_app: Callable) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Serve the request; add the missing headers as the response starts."""

        def start(status: str, headers: list[tuple[str, str]], exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers.extend(header for lower, header in _DEFAULTS if lower not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


def init_app(app: Flask) -> None:
    """Add the headers to every response that does not set its own."""
    app.wsgi_app = SecurityHeaders(app.wsgi_app)
