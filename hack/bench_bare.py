"""The benchmark's baseline app: plain Flask doing the same work as our `/` and `/healthz`.

No security headers, metrics, access log, content negotiation or limits: what a Flask app costs
with nothing of ours around it. `make bench` serves it with stock gunicorn (2 sync workers),
so that our server's figures read as ratios to it.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, render_template, request
from markupsafe import Markup

from flask_example import app as our_app
from flask_example.app import facts
from flask_example.settings import load_settings

# The same templates as our index page, so both render the same HTML.
app = Flask(__name__, template_folder=str(Path(our_app.__file__).parent / "templates"))
settings = load_settings()
_style: list[Markup] = []  # rendered once, as ours does


@app.get("/healthz")
def healthz():
    """The liveness answer, as ours: {"status": "ok"}."""
    return jsonify(status="ok")


@app.get("/")
def index():
    """The index page with the same facts and stylesheet as ours."""
    page_facts = {
        **facts.build_facts(settings),
        **facts.deployment_facts(settings),
        "request": facts.request_facts(request),
    }
    if not _style:
        _style.append(Markup(render_template("index.css")))  # noqa: S704 - our own file
    return render_template("index.html", facts=page_facts, style=_style[0])
