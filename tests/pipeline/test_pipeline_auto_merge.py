"""auto:merge:job against the GitLab API stand-in: only this pipeline's merge
request, rebase when behind, approve, auto-merge; clear failures."""

import pytest

from tests.pipeline.conftest import SECRETS, Scratch
from tests.pipeline.test_pipeline_jobs import assert_no_secrets
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
        "diverged_commits_count": 0,
        **gitlab.state.merge_request,
    }
    base = {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "7",
        "CI_API_V4_URL": gitlab.url,
        "AUTO_MERGE_TOKEN": SECRETS["AUTO_MERGE_TOKEN"],
    }
    run = scratch.gcl(
        "--force-shell-executor",
        "auto:merge:job",
        variables={**base, **variables},
        unset=("CI_COMMIT_BRANCH",),
    )
    assert_no_secrets(run, scratch)
    sent = [(r.method, r.path, r.query) for r in gitlab.state.requests]
    return run, sent, head


def test_approves_and_sets_auto_merge_stand_in(scratch: Scratch, gitlab: GitLabStandIn) -> None:
    """Default inputs: approve, then auto-merge with squash, keeping the source branch."""
    run, sent, head = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert sent == [
        ("GET", MR, {"include_diverged_commits_count": "true"}),
        ("GET", f"{MR}/approvals", {}),
        ("POST", f"{MR}/approve", {"sha": head}),
        (
            "PUT",
            f"{MR}/merge",
            {
                "sha": head,
                "auto_merge": "true",
                "squash": "true",
                "should_remove_source_branch": "false",
            },
        ),
    ]
    assert all(
        r.headers["PRIVATE-TOKEN"] == SECRETS["AUTO_MERGE_TOKEN"] for r in gitlab.state.requests
    )


def test_delete_action_and_no_second_approval_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """merge_branch_action=delete removes the source branch; an approval is not repeated."""
    gitlab.state.user_has_approved = True
    run, sent, head = run_auto_merge(scratch, gitlab, MERGE_BRANCH_ACTION="delete")
    assert run.returncode == 0, run.output
    assert [(method, path) for method, path, _ in sent] == [
        ("GET", MR),
        ("GET", f"{MR}/approvals"),
        ("PUT", f"{MR}/merge"),
    ]
    assert sent[-1][2]["should_remove_source_branch"] == "true"
    assert sent[-1][2]["sha"] == head


def test_rebases_a_merge_request_behind_its_target_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """Behind the target: ask for a rebase and leave the merge to the new pipeline."""
    gitlab.state.merge_request = {"diverged_commits_count": 3}
    run, sent, _ = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert [(method, path) for method, path, _ in sent] == [("GET", MR), ("PUT", f"{MR}/rebase")]
    assert "rebase requested" in run.output


def test_leaves_a_moved_merge_request_alone_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn
) -> None:
    """A newer commit on the merge request is that commit's pipeline's business."""
    gitlab.state.merge_request = {"sha": "f" * 40}
    run, sent, _ = run_auto_merge(scratch, gitlab)
    assert run.returncode == 0, run.output
    assert [(method, path) for method, path, _ in sent] == [("GET", MR)]


@pytest.mark.parametrize(
    ("refuse", "variables", "message"),
    [
        (
            {("PUT", "/merge"): (405, "405 Method Not Allowed")},
            {},
            "GitLab refused PUT",
        ),
        ({}, {"AUTO_MERGE_TOKEN": "glpat-wrong-token"}, "HTTP 401"),
        ({}, {"AUTO_MERGE_TOKEN": ""}, "AUTO_MERGE_TOKEN is not set"),
    ],
    ids=["merge-refused", "token-refused", "token-missing"],
)
def test_failures_name_the_problem_stand_in(
    scratch: Scratch, gitlab: GitLabStandIn, refuse: dict, variables: dict, message: str
) -> None:
    """A refusal or a missing token fails the job with a line saying what to fix."""
    gitlab.state.refuse = refuse
    run, _sent, _ = run_auto_merge(scratch, gitlab, **variables)
    assert run.returncode != 0
    assert message in run.output
    if refuse:
        assert "405 Method Not Allowed" in run.output
