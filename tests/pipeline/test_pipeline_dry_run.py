"""helm_builder:test:deploy:job sends the release's manifests through the API server's
admission: Helm's own --dry-run=server sends no object, so after it the same render goes to
`kubectl apply --server-side --dry-run=server`. Run under gitlab-ci-local with real Helm 3
and 4 on the chart and a kubectl stand-in in place of the API server."""

from pathlib import Path

import pytest

from tests.pipeline.conftest import PROJECT, Run, Scratch, pull_flags
from tests.pipeline.pipelinelib import (
    assert_no_secrets,
    assert_pods_pull_with_the_release_secret,
    registry_variables,
    render_deployed,
)

JOB = "helm_builder:test:deploy:job"
TIERS = {
    "dev": ("dev", f"dev-{PROJECT}", "dev/kubernetes-agent-config:kubernetes-agent-dev"),
    "main": ("prod", PROJECT, "dev/kubernetes-agent-config:kubernetes-agent-prod"),
}
# What Pod Security's enforce mode says of a container that may escalate privileges.
REASON = (
    'allowPrivilegeEscalation != false (container "readyz" must set'
    " securityContext.allowPrivilegeEscalation=false)"
)
CASES = [("dev", 4), ("main", 3), ("dev", 3), ("main", 4)]
IDS = ["dev-helm4", "main-helm3", "dev-helm3", "main-helm4"]


def dry_run(scratch: Scratch, tmp_path: Path, ref: str, helm: int, env: dict | None = None) -> Run:
    """Run the dry-run job on REF with Helm HELM, the deploy token set."""
    scratch.checkout_branch(ref)
    return scratch.gcl(
        "--force-shell-executor", JOB, variables=registry_variables(tmp_path), env=env, helm=helm
    )


@pytest.mark.parametrize(("ref", "helm"), CASES, ids=IDS)
def test_dry_run_sends_helms_render_to_the_api_servers_dry_run_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, ref: str, helm: int
) -> None:
    """After helm's own dry run, helm template renders the same release with the same
    values (cluster lookups on) and kubectl hands exactly that, hooks included, to the API
    server as a server-side dry run through the agent's context; the file with the
    manifests (it holds the pull Secret) is private and gone after the job."""
    ns, release, context = TIERS[ref]
    run = dry_run(fresh_scratch, tmp_path, ref, helm)
    assert run.returncode == 0, run.output
    assert_no_secrets(run, fresh_scratch)

    upgrade, template = run.tool("helm")
    values = [*pull_flags(upgrade), "--values", "build/values/deploy.yaml"]
    assert upgrade["argv"][:2] == ["upgrade", "--install"]
    assert "--dry-run=server" in upgrade["argv"]
    assert upgrade["argv"][-len(values) :] == values
    assert template["argv"] == [
        "template",
        release,
        "chart",
        "--namespace",
        ns,
        "--kube-context",
        context,
        "--dry-run=server",
        *values,
    ]

    [apply] = run.tool("kubectl")
    manifests = Path(apply["argv"][-1])
    assert apply["argv"] == [
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=helm",
        "--context",
        context,
        "--namespace",
        ns,
        "--filename",
        str(manifests),
    ]
    assert manifests.parent == Path(apply["env"]["HELM_CONFIG_HOME"]).parent
    assert not manifests.exists()

    # Exactly what real Helm renders for the release with those values, test pod included.
    expected = render_deployed(
        helm, template, tmp_path / "credential", release, "chart", "--namespace", ns
    )
    assert apply["manifests"] == expected
    assert "helm.sh/hook: test" in expected
    assert_pods_pull_with_the_release_secret(apply["manifests"])
    assert f"deployment/{release} serverside-applied (server dry run)" in run.output


@pytest.mark.parametrize(("ref", "helm"), CASES[:2], ids=IDS[:2])
def test_dry_run_fails_with_the_api_servers_pod_security_message_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, ref: str, helm: int
) -> None:
    """The namespace's Pod Security refuses the test pod: Helm's own dry run passed with the
    same values (it never sends an object), the API server's dry run did not, and the job
    fails showing the API server's message. Without the kubectl step this job would pass."""
    _ns, release, _context = TIERS[ref]
    run = dry_run(fresh_scratch, tmp_path, ref, helm, env={"STANDIN_REJECT_PODS": REASON})
    assert run.returncode != 0, run.output
    assert_no_secrets(run, fresh_scratch)
    # Helm's own dry run ran first, with the values the API server then refused.
    upgrade, template = run.tool("helm")
    assert "--dry-run=server" in upgrade["argv"]
    assert upgrade["argv"][-6:] == template["argv"][-6:]
    [apply] = run.tool("kubectl")
    assert "--dry-run=server" in apply["argv"]
    message = (
        f'Error from server (Forbidden): pods "{release}-test" is forbidden:'
        f' violates PodSecurity "restricted:latest": {REASON}'
    )
    assert message in run.output
    assert "ERROR: the API server refused the manifests in its server-side dry run" in run.output
    # The objects it accepted are listed too, as kubectl lists them.
    assert f"deployment/{release} serverside-applied (server dry run)" in run.output
