"""A GitLab API stand-in on 127.0.0.1: the Helm registry and merge request endpoints.

It records every request so tests assert exactly what the pipeline sends, and refuses
what GitLab refuses; each rule names the file of GitLab's source (gitlabhq/gitlabhq) it
comes from.
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
# GitLab's Helm channel rule (helm_channel_regex in lib/gitlab/regex/packages.rb, which
# lib/api/helm_packages.rb applies to every Helm endpoint's :channel): letters and digits,
# single ".", "-" or "_" between them, at most 255 letters and digits.
HELM_CHANNEL = re.compile(r"\A([a-zA-Z0-9](\.|-|_)?){1,255}(?<!\.|-|_)\Z")
# Grape's Boolean parameters (lib/api/merge_requests.rb declares auto_merge, squash and
# should_remove_source_branch `type: Boolean`) take these words; any other value is a 400.
GRAPE_BOOLEANS = {"true", "false", "1", "0", "t", "f", "yes", "no", "y", "n", "on", "off"}
# The detailed_merge_status values (app/services/merge_requests/mergeability/, each
# check's `identifier`) that auto-merge waits for: AutoMerge::BaseService#available_for?
# checks mergeability with the checks that MergeRequest#skipped_mergeable_checks skips
# for the merge_when_checks_pass strategy (CI, approvals, draft, blocked, discussions,
# status checks, requested changes, locked paths and files, Jira, security policies).
# need_rebase, conflict, not_open, commits_status and the rest make it unavailable.
AUTO_MERGE_WAITS_FOR = {
    "ci_still_running",
    "ci_must_pass",
    "not_approved",
    "approvals_syncing",
    "draft_status",
    "merge_request_blocked",
    "discussions_not_resolved",
    "status_checks_must_pass",
    "requested_changes",
    "locked_paths",
    "locked_lfs_files",
    "jira_association_missing",
    "security_policy_violations",
}


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
    """State of the stand-in: the expected tokens, the merge request, uploaded charts.

    merge_request: the merge request as GET returns it; `detailed_merge_status` there is
    what a GET answers once `statuses` (answered one per GET first) is used up.
    may_merge: the token's user is "allowed to merge" into the target branch.
    may_push_source: the token's user may push to the source branch (needed to rebase).
    """

    job_token: str
    api_token: str
    merge_request: dict = field(default_factory=dict)
    statuses: list = field(default_factory=list)
    may_merge: bool = True
    may_push_source: bool = True
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
                self._merge_request(match.group(3) or "", query)
            else:
                self._json(404, {"message": "404 Not Found"})

        def _basic_ok(self) -> bool:
            expected = base64.b64encode(f"gitlab-ci-token:{state.job_token}".encode()).decode()
            return self.headers.get("Authorization") == f"Basic {expected}"

        def _helm(self, path: str, body: bytes) -> None:
            match = HELM_UPLOAD.fullmatch(path) or HELM_INDEX.fullmatch(path)
            match = match or HELM_CHART.fullmatch(path)
            # Grape validates the parameters before the endpoint authenticates: a channel
            # outside the rule is a 400 whatever the token (Grape's "<param> is invalid").
            if match and not HELM_CHANNEL.match(match.group(2)):
                self._json(400, {"error": "channel is invalid"})
            elif not self._basic_ok():
                self._json(401, {"message": "401 Unauthorized"})
            elif match := HELM_UPLOAD.fullmatch(path):
                self._upload(match.group(2), body)
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

        def _upload(self, channel: str, body: bytes) -> None:
            """POST api/:channel/charts: `requires :chart` (a file) in helm_packages.rb,
            so a form without a `chart` file part is Grape's 400 "chart is missing"."""
            kind = self.headers.get("Content-Type", "")
            message = BytesParser().parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + body)
            parts = message.get_payload() if message.is_multipart() else []
            charts = [
                part
                for part in parts
                if part.get_param("name", header="content-disposition") == "chart"
                and part.get_filename()
            ]
            if not charts:
                self._json(400, {"error": "chart is missing"})
                return
            for part in charts:
                archive = part.get_payload(decode=True)
                state.charts[(channel, part.get_filename())] = (archive, chart_yaml(archive))
            self._json(201, {"message": "201 Created"})

        def _index(self, channel: str) -> str:
            entries: dict = {}
            for (chan, name), (_archive, chart) in sorted(state.charts.items()):
                if chan == channel:
                    entry = {**chart, "urls": [f"charts/{name}"]}
                    entries.setdefault(chart["name"], []).append(entry)
            return yaml.safe_dump({"apiVersion": "v1", "entries": entries})

        def _merge_request(self, suffix: str, params: dict) -> None:
            # Any route: a token GitLab does not know is a 401 (lib/api/api_guard.rb).
            if self.headers.get("PRIVATE-TOKEN") != state.api_token:
                self._json(401, {"message": "401 Unauthorized"})
                return
            refused = state.refuse.get((self.command, suffix))
            if refused:
                self._json(refused[0], {"message": refused[1]})
            elif self.command == "GET" and suffix == "":
                if state.statuses:
                    state.merge_request["detailed_merge_status"] = state.statuses.pop(0)
                self._json(200, state.merge_request)
            elif self.command == "PUT" and suffix == "/rebase":
                self._rebase()
            elif self.command == "PUT" and suffix == "/merge":
                self._merge(params)
            else:
                # No approve route: this pipeline must never approve (tests also assert
                # that no request went to it); GitLab itself would accept one.
                self._json(404, {"message": "404 Not Found"})

        def _rebase(self) -> None:
            """PUT .../rebase (lib/api/merge_requests.rb): RebaseService#validate answers
            403 when the user may not push to the source branch; else 202. GitLab rebases
            even when the merge does not need it (a new pipeline): tests assert it is asked
            only on need_rebase."""
            if not state.may_push_source:
                self._json(403, {"message": "403 Forbidden - Cannot push to source branch"})
                return
            state.merge_request["rebased"] = True
            self._json(202, {"rebase_in_progress": True})

        def _merge(self, params: dict) -> None:
            """PUT .../merge, as lib/api/merge_requests.rb (GitLab 17.11+) answers it:
            Boolean parameters checked (400), then `unauthorized!` (401) unless the user
            may merge into the target branch, the sha must be the source branch's head
            (409); auto_merge sets auto-merge when a strategy is available, else 405
            while the pipeline runs (execute_merge: not_allowed!). Without auto_merge the
            merge request must be mergeable now, which it is not while its pipeline runs."""
            mr = state.merge_request
            status = mr.get("detailed_merge_status", "ci_still_running")
            for name in ("auto_merge", "merge_when_pipeline_succeeds", "squash",
                         "should_remove_source_branch"):  # fmt: skip
                if name in params and params[name].lower() not in GRAPE_BOOLEANS:
                    self._json(400, {"error": f"{name} is invalid"})
                    return
            auto = any(
                params.get(name, "").lower() in {"true", "1", "t", "yes", "y", "on"}
                for name in ("auto_merge", "merge_when_pipeline_succeeds")
            )
            if not state.may_merge:
                self._json(401, {"message": "401 Unauthorized"})
            elif "sha" in params and params["sha"] != mr.get("sha"):
                message = f"SHA does not match HEAD of source branch: {mr.get('sha')}"
                self._json(409, {"message": message})
            elif mr.get("state") != "opened" or not auto or status not in AUTO_MERGE_WAITS_FOR:
                self._json(405, {"message": "405 Method Not Allowed"})
            else:
                mr["merge_when_pipeline_succeeds"] = True
                mr["squash"] = params.get("squash", "false").lower() in {"true", "1"}
                self._json(200, mr)

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
