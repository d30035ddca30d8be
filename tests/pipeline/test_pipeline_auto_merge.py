"""auto:merge:job against the GitLab API stand-in: only this pipeline's merge request;
GitLab's auto-merge set, never an approval; a rebase only when GitLab says the merge needs
one; a green job and one line without a token; clear failures where GitLab refuses."""

import http.client
import json
import re
import urllib.parse

import pytest

from tests.pipeline.conftest import ROOT, SECRETS, Scratch
from tests.pipeline.pipelinelib import assert_no_secrets
from tests.support.gitlab_api import GitLabStandIn

MR = "/api/v4/projects/1217/merge_requests/7"


def run_auto_merge(scratch: Scratch, gitlab: GitLabStandIn, **variables: str):
    """Run auto:merge:job in a merge request pipeline for merge request !7."""
    scratch.checkout_branch("feature/Login_Form")
    head = scratch.git("rev-parse", "HEAD").strip()
    gitlab.state.merge_request = {
        "iid": 7,
        "state": "opened",
        "sha": head,
        # The job runs inside the merge request's own pipeline.
        "detailed_merge_status": "ci_still_running",
        "merge_when_pipeline_succeeds": False,
        **gitlab.state.merge_request,
    }
    base = {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "7",
        "CI_API_V4_URL": gitlab.url,
        "AUTO_MERGE_TOKEN": SECRETS["AUTO_MERGE_TOKEN"],
        "MERGE_STATUS_DELAY": "0",
    }
    run = scratch.gcl(
        "--force-shell-executor",
        "auto:merge:job",
        variables={**base, **variables},
        unset=("CI_COMMIT_BRANCH",),
    )
    assert_no_secrets(run, scratch)
    sent = [(r.method, r.path, r.query) for r in gitlab.state.requests]
    assert not [path for _, path, _ in sent if path.endswith("/approve")], "never approves"
    return run, sent, head


def merge_call(head: str, squash: str = "true", remove: str = "false") -> tuple:
    """The one merge request the job sends: auto-merge of exactly the tested commit."""
    query = {
        "sha": head,
        "auto_merge": "true",
        "squash": squash,
        "should_remove_source_branch": remove,
    }
    return ("PUT", f"{MR}/merge", query)


@pytest.mark.parametrize(
    "status",
    ["ci_still_running", "not_approved", "draft_status", "discussions_not_resolved"],
)
def test_sets_auto_merge_and_lets_gitlab_decide_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn, status: str
) -> None:
    """Whatever GitLab still waits for (this pipeline, approvals, a draft, threads), the job
    sets auto-merge with squash, keeping the source branch, and leaves the rest to GitLab."""
    gitlab.state.merge_request = {"detailed_merge_status": status}
    run, sent, head = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert sent == [("GET", MR, {}), merge_call(head)]
    assert gitlab.state.merge_request["merge_when_pipeline_succeeds"] is True
    assert "auto-merge set on merge request !7 (squash=true, remove source branch=false)" in (
        run.output
    )
    assert f"(now: {status})" in run.output
    assert all(
        r.headers["PRIVATE-TOKEN"] == SECRETS["AUTO_MERGE_TOKEN"] for r in gitlab.state.requests
    )


def test_delete_action_without_squash_stand_in(scratch: Scratch, gitlab: GitLabStandIn) -> None:
    """merge_branch_action=delete removes the source branch; merge_squash=false keeps commits."""
    run, sent, head = run_auto_merge(
        scratch, gitlab, MERGE_BRANCH_ACTION="delete", MERGE_SQUASH="false"
    )
    assert run.returncode == 0, run.output
    assert sent == [("GET", MR, {}), merge_call(head, squash="false", remove="true")]


def test_rebases_only_when_gitlab_says_the_merge_needs_it_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """need_rebase (a fast-forward or semi-linear merge method): ask for a rebase and leave
    auto-merge to the new head's pipeline."""
    gitlab.state.merge_request = {"detailed_merge_status": "need_rebase"}
    run, sent, _ = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert [(method, path) for method, path, _ in sent] == [("GET", MR), ("PUT", f"{MR}/rebase")]
    assert "rebase requested" in run.output


def test_behind_its_target_is_no_reason_to_rebase_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """A merge commit method merges a branch that is behind: no rebase (which would start a
    new pipeline and a new prod deploy), auto-merge as usual."""
    gitlab.state.merge_request = {"diverged_commits_count": 3}
    run, sent, head = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert sent == [("GET", MR, {}), merge_call(head)]
    assert "rebased" not in gitlab.state.merge_request


def test_waits_while_gitlab_checks_the_merge_request_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """Right after a push GitLab answers unchecked or checking: asked again until it knows
    (here, that a rebase is needed)."""
    gitlab.state.statuses = ["unchecked", "checking", "need_rebase"]
    run, sent, _ = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert [(method, path) for method, path, _ in sent] == [
        ("GET", MR),
        ("GET", MR),
        ("GET", MR),
        ("PUT", f"{MR}/rebase"),
    ]


def test_leaves_a_moved_merge_request_alone_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """A newer commit on the merge request is that commit's pipeline's business."""
    gitlab.state.merge_request = {"sha": "f" * 40}
    run, sent, _ = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert [(method, path) for method, path, _ in sent] == [("GET", MR)]


def test_without_a_token_the_job_is_green_and_says_what_to_create_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """No AUTO_MERGE_TOKEN: the merge request pipeline stays green; one line names the
    token to create and where to store it, and the section of this project's docs that says
    more; GitLab is not asked anything."""
    run, sent, _ = run_auto_merge(scratch, gitlab, AUTO_MERGE_TOKEN="")
    assert run.returncode == 0, run.output
    assert sent == []
    [line] = [line for line in run.output.splitlines() if "AUTO_MERGE_TOKEN" in line]
    assert "auto-merge is off" in line
    assert "Developer role" in line
    assert "masked and hidden CI/CD variable AUTO_MERGE_TOKEN" in line
    page, section = re.search(r"\((docs/[\w.-]+): ([^)]+)\)$", line).groups()
    assert f"\n## {section}\n" in (ROOT / page).read_text()


@pytest.mark.parametrize(
    ("state", "variables", "messages"),
    [
        (
            {"merge_request": {"detailed_merge_status": "conflict"}},
            {},
            ["GitLab refused PUT", "HTTP 405", "while its detailed_merge_status is conflict"],
        ),
        (
            {"may_merge": False},
            {},
            ["GitLab refused PUT", "HTTP 401", "not allowed to merge into the target branch"],
        ),
        (
            {"merge_request": {"detailed_merge_status": "need_rebase"}, "may_push_source": False},
            {},
            ["GitLab refused PUT", "HTTP 403", "Cannot push to source branch"],
        ),
        ({}, {"AUTO_MERGE_TOKEN": "glpat-wrong-token"}, ["GitLab refused GET", "HTTP 401"]),
        (
            {"merge_request": {"state": "merged"}},
            {},
            ["merge request !7 is merged, not opened"],
        ),
    ],
    ids=["conflict", "not-allowed-to-merge", "rebase-refused", "token-refused", "not-open"],
)
def test_failures_name_the_problem_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn, state: dict, variables: dict, messages: list
) -> None:
    """Where GitLab will not merge, the job fails with one line saying what to fix."""
    for name, value in state.items():
        setattr(gitlab.state, name, value)
    run, _sent, _ = run_auto_merge(scratch, gitlab, **variables)
    assert run.returncode != 0
    [line] = [
        line for line in run.output.splitlines() if line.startswith("auto:merge:job > ERROR: ")
    ]
    for message in messages:
        assert message in line, line


def put_merge(gitlab: GitLabStandIn, token: str, **params: str) -> tuple[int, dict]:
    """PUT .../merge on the stand-in as curl sends it (a form body); status and JSON."""
    url = urllib.parse.urlsplit(gitlab.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(
            "PUT",
            f"{url.path}/projects/1217/merge_requests/7/merge",
            body=urllib.parse.urlencode(params),
            headers={"PRIVATE-TOKEN": token, "Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse()
        return answer.status, json.load(answer)
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("merge_request", "params", "status", "message"),
    [
        ({}, {"auto_merge": "yes please"}, 400, "auto_merge is invalid"),
        ({}, {"auto_merge": "true", "sha": "0" * 40}, 409, "SHA does not match HEAD"),
        ({}, {"squash": "true"}, 405, "405 Method Not Allowed"),
        ({"detailed_merge_status": "need_rebase"}, {"auto_merge": "true"}, 405, "405"),
        ({"state": "closed"}, {"auto_merge": "true"}, 405, "405"),
        ({}, {"auto_merge": "true", "sha": "a" * 40}, 200, ""),
    ],
    ids=["not-a-boolean", "other-sha", "merge-now-while-running", "need-rebase", "closed", "ok"],
)
def test_stand_in_merge_refuses_what_gitlab_refuses(
    gitlab: GitLabStandIn, merge_request: dict, params: dict, status: int, message: str
) -> None:
    """The stand-in's merge endpoint answers as lib/api/merge_requests.rb does."""
    gitlab.state.merge_request = {
        "state": "opened",
        "sha": "a" * 40,
        "detailed_merge_status": "ci_still_running",
        **merge_request,
    }
    answer_status, answer = put_merge(gitlab, SECRETS["AUTO_MERGE_TOKEN"], **params)
    assert answer_status == status
    assert message in json.dumps(answer)
    assert (answer_status, answer.get("merge_when_pipeline_succeeds")) != (200, False)


def test_stand_in_refuses_a_wrong_token(gitlab: GitLabStandIn) -> None:
    """A token GitLab does not know: 401 before anything else."""
    assert put_merge(gitlab, "glpat-wrong", auto_merge="true")[0] == 401
