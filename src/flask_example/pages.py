"""The index page (HTML for people, JSON for programs) and the build facts."""

from __future__ import annotations

import base64
import hashlib

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import NotAcceptable

from flask_example import facts

bp = Blueprint("pages", __name__)

HTML, JSON = "text/html", "application/json"


def _wants() -> str:
    # No Accept header means "anything", and people come first.
    if not request.accept_mimetypes:
        return HTML
    best = request.accept_mimetypes.best_match([HTML, JSON])
    if best is None:
        raise NotAcceptable(f"this page is available as {HTML} or {JSON}")
    return best


def index_facts() -> dict[str, object]:
    """Everything the index page shows, in the order it shows it."""
    settings = current_app.config["SETTINGS"]
    return {
        **facts.build_facts(settings),
        **facts.deployment_facts(settings),
        "request": facts.request_facts(request),
    }


@bp.get("/")
def index() -> Response:
    """Which build runs where, and how this request reached it."""
    if _wants() == JSON:
        response = jsonify(index_facts())
    else:
        # The stylesheet is inlined and allowed by its hash: one request, and no inline
        # content other than exactly this stylesheet can apply.
        style = render_template("index.css")
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        response = Response(
            render_template("index.html", facts=index_facts(), style=Markup(style)),  # noqa: S704 - our own stylesheet
            mimetype=HTML,
        )
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    response.vary.add("Accept")
    return response


@bp.get("/version")
def version() -> Response:
    """The build facts: service, version, commit, branch."""
    return jsonify(facts.build_facts(current_app.config["SETTINGS"]))
