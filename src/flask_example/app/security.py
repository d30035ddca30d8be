"""Security headers on every response."""

from __future__ import annotations

import base64
import hashlib

from flask import Flask, Response

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


# (name, lower-case name, value), worked out once instead of on every response.
_DEFAULTS = tuple((name, name.lower(), value) for name, value in HEADERS.items())


def _add_headers(response: Response) -> Response:
    # One pass over the few headers the view set and one extend: setdefault per name costs a
    # scan and a raised KeyError for each header that is missing, which is nearly all of them.
    present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118 - no __iter__ of names
    response.headers.extend([(n, v) for n, lower, v in _DEFAULTS if lower not in present])
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every response that does not set its own."""
    app.after_request(_add_headers)
