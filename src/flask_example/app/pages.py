"""The index page (HTML for people, JSON for programs) and the build facts."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import NotAcceptable

from flask_example.app import facts, security

bp = Blueprint("pages", __name__)

HTML, JSON = "text/html", "application/json"


def _wants() -> str:
    # No Accept header means "anything", and people come first. Looked for in the environ
    # first: parsing an absent header into an empty MIMEAccept costs more than the question.
    if "HTTP_ACCEPT" not in request.environ or not request.accept_mimetypes:
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


def _stylesheet() -> tuple[Markup, str]:
    # The stylesheet is inlined (one request, no assets) and allowed by its hash. It is a fixed
    # file: render and hash it once per app, not on every request.
    cached = current_app.extensions.get("index_stylesheet")
    if cached is None:
        style = render_template("index.css")
        cached = (Markup(style), security.page_policy(style))  # noqa: S704 - our own file
        current_app.extensions["index_stylesheet"] = cached
    return cached


@bp.get("/")
def index() -> Response:
    """Which build runs where, and how this request reached it."""
    if _wants() == JSON:
        response = jsonify(index_facts())
    else:
        style, policy = _stylesheet()
        page = render_template("index.html", facts=index_facts(), style=style)
        response = Response(page, mimetype=HTML)
        response.headers["Content-Security-Policy"] = policy
    # Set, not response.vary.add(): nothing else sets Vary here, and parsing and writing the
    # header set back costs a few percent of the page's CPU.
    response.headers["Vary"] = "Accept"
    return response


@bp.get("/version")
def version() -> Response:
    """The build facts: service, version, commit, branch."""
    return jsonify(facts.build_facts(current_app.config["SETTINGS"]))
