"""A GitLab API stand-in on 127.0.0.1: the Helm registry and merge request endpoints.

It records every request so tests assert exactly what the pipeline sends.
"""

import base64
import io
import json
import re
import ssl
import tarfile
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml

HELM_UPLOAD = re.compile(r"/api/v4/projects/(\d+)/packages/helm/api/([^/]+)/charts")
HELM_INDEX = re.compile(r"/api/v4/projects/(\d+)/packages/helm/([^/]+)/index\.yaml")
HELM_CHART = re.compile(r"/api/v4/projects/(\d+)/packages/helm/([^/]+)/charts/([^/]+\.tgz)")
MERGE_REQUEST = re.compile(r"/api/v4/projects/(\d+)/merge_requests/(\d+)(/\w+)?")


@dataclass
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


@dataclass
class GitLab:
    """State of the stand-in: the expected tokens, the merge request, uploaded charts."""

    job_token: str
    api_token: str
    merge_request: dict = field(default_factory=dict)
    user_has_approved: bool = False
    refuse: dict = field(default_factory=dict)  # (method, suffix) -> (status, message)
    charts: dict = field(default_factory=dict)  # (channel, file) -> (archive, Chart.yaml)
    requests: list = field(default_factory=list)


def chart_yaml(archive: bytes) -> dict:
    """The Chart.yaml inside a packaged chart, as the registry's index lists it."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = [m for m in tar.getmembers() if m.name.count("/") == 1]
        member = next(m for m in names if m.name.endswith("/Chart.yaml"))
        return yaml.safe_load(tar.extractfile(member).read())


def _handler(state: GitLab) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            """Keep the test output quiet."""

        def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: object) -> None:
            self._reply(status, json.dumps(payload).encode())

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = dict(parse_qsl(url.query))
            if self.headers.get("Content-Type", "").startswith("application/x-www-form"):
                query.update(parse_qsl(body.decode()))
            state.requests.append(
                Request(self.command, url.path, query, dict(self.headers.items()), body)
            )
            if "/packages/helm/" in url.path:
                self._helm(url.path, body)
            elif match := MERGE_REQUEST.fullmatch(url.path):
                self._merge_request(match.group(3) or "")
            else:
                self._json(404, {"message": "404 Not Found"})

        def _basic_ok(self) -> bool:
            expected = base64.b64encode(f"gitlab-ci-token:{state.job_token}".encode()).decode()
            return self.headers.get("Authorization") == f"Basic {expected}"

        def _helm(self, path: str, body: bytes) -> None:
            if not self._basic_ok():
                self._json(401, {"message": "401 Unauthorized"})
            elif match := HELM_UPLOAD.fullmatch(path):
                kind = self.headers["Content-Type"]
                message = BytesParser().parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + body)
                for part in message.get_payload():
                    if part.get_param("name", header="content-disposition") == "chart":
                        archive = part.get_payload(decode=True)
                        state.charts[(match.group(2), part.get_filename())] = (
                            archive,
                            chart_yaml(archive),
                        )
                self._json(201, {"message": "201 Created"})
            elif match := HELM_INDEX.fullmatch(path):
                self._reply(200, self._index(match.group(2)).encode(), "text/yaml")
            elif (match := HELM_CHART.fullmatch(path)) and (
                match.group(2),
                match.group(3),
            ) in state.charts:
                archive = state.charts[(match.group(2), match.group(3))][0]
                self._reply(200, archive, "application/gzip")
            else:
                self._json(404, {"message": "404 Not Found"})

        def _index(self, channel: str) -> str:
            entries: dict = {}
            for (chan, name), (_archive, chart) in sorted(state.charts.items()):
                if chan == channel:
                    entry = {**chart, "urls": [f"charts/{name}"]}
                    entries.setdefault(chart["name"], []).append(entry)
            return yaml.safe_dump({"apiVersion": "v1", "entries": entries})

        def _merge_request(self, suffix: str) -> None:
            if self.headers.get("PRIVATE-TOKEN") != state.api_token:
                self._json(401, {"message": "401 Unauthorized"})
                return
            refused = state.refuse.get((self.command, suffix))
            if refused:
                self._json(refused[0], {"message": refused[1]})
            elif self.command == "GET" and suffix == "":
                self._json(200, state.merge_request)
            elif self.command == "GET" and suffix == "/approvals":
                self._json(200, {"user_has_approved": state.user_has_approved})
            elif self.command == "POST" and suffix == "/approve":
                self._json(201, {"user_has_approved": True})
            elif self.command == "PUT" and suffix == "/rebase":
                self._json(202, {"rebase_in_progress": True})
            elif self.command == "PUT" and suffix == "/merge":
                merged = {**state.merge_request, "detailed_merge_status": "ci_still_running"}
                self._json(200, merged)
            else:
                self._json(404, {"message": "404 Not Found"})

        do_GET = do_POST = do_PUT = _handle  # noqa: N815 - http.server's naming

    return Handler


class GitLabStandIn:
    """Serve the stand-in on a free loopback port for the lifetime of a `with` block; over
    HTTPS with TLS=(certificate, key), as a GitLab behind a private CA."""

    def __init__(self, state: GitLab, tls: tuple[Path, Path] | None = None) -> None:
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/api/v4"

    def __enter__(self) -> "GitLabStandIn":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
