"""Which jobs run, with which needs and the original project's variables, per kind of pipeline."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.pipeline.conftest import DEPLOY_TOKEN, PROJECT, ROOT, Scratch, build_scratch, pull_flags
from tests.pipeline.pipelinelib import DEV_BRANCH, FEATURE_BRANCH, PROD, SCENARIOS, Scenario
from tests.support.gitlab_rules import workflow_variables


def _on_ref(scratch: Scratch, scenario: Scenario) -> None:
    if scenario.tag:
        scratch.checkout_tag(scenario.ref)
    else:
        scratch.checkout_branch(scenario.ref)


@pytest.fixture(scope="module")
def preview(scratch: Scratch) -> dict:
    """The pipeline as gitlab-ci-local expands it (inputs applied)."""
    scratch.checkout_branch("main")
    run = scratch.gcl("--preview")
    assert run.returncode == 0, run.output
    return yaml.safe_load(run.stdout)


@pytest.fixture(scope="module")
def workflow(preview: dict) -> dict:
    """The workflow section of the pipeline."""
    return preview["workflow"]


FITTED = ("NS", "RELEASE_NAME", "CHANNEL", "IMAGE_TAG", "HOST")


def gitlab_slug(ref: str) -> str:
    """CI_COMMIT_REF_SLUG as GitLab computes it (Gitlab::Utils.slugify: no squeezed dashes,
    unlike gitlab-ci-local's)."""
    return re.sub(r"[^a-z0-9]", "-", ref.lower())[:63].strip("-")


def fit_names(variables: dict[str, str]) -> dict[str, str]:
    """The names lib.sh's fit_names makes of the pipeline's VARIABLES, under BusyBox sh (the
    job images' shell) or dash."""
    shell = ["busybox", "sh"] if shutil.which("busybox") else ["dash"]
    lib = ROOT / "ci" / "scripts" / "lib.sh"
    script = f'. "{lib}"; fit_names; for n in {" ".join(FITTED)}; do env | grep "^$n="; done'
    result = subprocess.run(
        [*shell, "-c", script],
        env={"PATH": os.environ["PATH"], **variables},
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize("name", SCENARIOS)
def test_workflow_rules_choose_specs_values(name: str, workflow: dict) -> None:
    """The workflow rules alone decide prod, dev or no pipeline, and set the original
    table's variables (expanded as GitLab does): for a DNS-label branch exactly its values,
    which lib.sh's fit_names leaves as they are; other branches' it makes valid."""
    scenario = SCENARIOS[name]
    slug = gitlab_slug(scenario.ref)
    predefined = {
        "CI_PIPELINE_SOURCE": "push",
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_REF_PROTECTED": "false",
        "CI_PROJECT_NAME": PROJECT,
        "CI_COMMIT_REF_NAME": scenario.ref,
        "CI_COMMIT_REF_SLUG": slug,
        "CI_COMMIT_BRANCH": scenario.ref,
        **scenario.variables,
    }
    for key in scenario.unset:
        del predefined[key]
    chosen = workflow_variables(workflow, predefined)
    if scenario.expected is None:
        assert chosen is None
        return
    if scenario.ref == slug or scenario.expected["NS"] == "prod":
        assert {key: chosen[key] for key in scenario.expected} == scenario.expected
    chosen |= fit_names({**predefined, **chosen})
    assert {key: chosen[key] for key in scenario.expected} == scenario.expected
    if scenario.expected["NS"] == "prod":
        assert (chosen["ENVIRONMENT_NAME"], chosen["AUTO_STOP_IN"]) == ("production", "never")
    else:
        assert (chosen["ENVIRONMENT_NAME"], chosen["AUTO_STOP_IN"]) == (f"review/{slug}", "1 week")


def test_deploy_environments_and_resource_groups(scratch: Scratch) -> None:
    """Deploy and stop share the environment and its resource group; review ones stop;
    the deploy names its agent (KUBE_CONTEXT) for GitLab's Kubernetes dashboard."""
    scratch.checkout_branch("main")
    jobs = yaml.safe_load(scratch.gcl("--preview").stdout)
    deploy, stop = jobs["helm:deploy:job"], jobs["helm:stop:job"]
    assert deploy["environment"] == {
        "name": "$ENVIRONMENT_NAME",
        "url": "$DYNAMIC_ENVIRONMENT_URL",
        "on_stop": "helm:stop:job",
        "auto_stop_in": "$AUTO_STOP_IN",
        "kubernetes": {"agent": "$KUBE_CONTEXT"},
    }
    assert stop["environment"] == {"name": "$ENVIRONMENT_NAME", "action": "stop"}
    assert deploy["resource_group"] == stop["resource_group"] == "$ENVIRONMENT_NAME"
    assert deploy["artifacts"]["reports"]["dotenv"] == "build/deploy.env"
    assert jobs["docker_builder:push:job"]["artifacts"]["reports"]["dotenv"] == "build/image.env"
    assert stop["variables"]["GIT_STRATEGY"] == "none"


@pytest.mark.parametrize("name", [name for name, s in SCENARIOS.items() if s.expected])
def test_jobs_and_needs(name: str, scratch: Scratch) -> None:
    """gitlab-ci-local runs exactly the expected jobs with the original project's needs."""
    scenario = SCENARIOS[name]
    _on_ref(scratch, scenario)
    jobs = scratch.list_jobs(scenario.variables, scenario.unset)
    needs = {job: {need["job"] for need in spec["needs"] or []} for job, spec in jobs.items()}
    assert needs == scenario.jobs
    if "helm:stop:job" in jobs:
        assert jobs["helm:stop:job"]["when"] == "manual"


@pytest.mark.parametrize("name", [name for name, s in SCENARIOS.items() if s.expected])
def test_job_sees_specs_values_stand_in(name: str, scratch: Scratch) -> None:
    """A real job run (server-side dry run, cluster stand-in) gets the original table's values."""
    scenario = SCENARIOS[name]
    _on_ref(scratch, scenario)
    variables = {"CI_REGISTRY_IMAGE": "registry.example.test/dev/flask-example-1", **DEPLOY_TOKEN}
    run = scratch.gcl(
        "--force-shell-executor",
        "helm_builder:test:deploy:job",
        variables={**variables, **scenario.variables},
        unset=scenario.unset,
    )
    assert run.returncode == 0, run.output
    # helm upgrade --dry-run=server, then helm template for the API server's dry run.
    [call, _template] = run.tool("helm")
    assert {key: call["env"][key] for key in scenario.expected} == scenario.expected
    expected = scenario.expected
    assert call["argv"] == [
        "upgrade",
        "--install",
        expected["RELEASE_NAME"],
        "chart",
        "--namespace",
        expected["NS"],
        "--kube-context",
        expected["KUBE_CONTEXT"],
        "--dry-run=server",
        *pull_flags(call),
        "--values",
        "build/values/deploy.yaml",
    ]


CHART_PART = {"helm_builder:test:config:job", "helm_builder:build:job", "helm_builder:push:job"}
IMAGE_PART = {
    "app:test:job",
    "docker_builder:build:job",
    "docker_builder:push:job",
    "docker_builder:sbom:job",
}


@pytest.mark.parametrize(
    ("part", "missing"),
    [
        ("build_image", IMAGE_PART),
        ("build_chart", CHART_PART | {"helm_builder:test:deploy:job"}),
        ("deploy", {"helm_builder:test:deploy:job", "helm:preflight:job", "helm:deploy:job"}),
        ("preflight", {"helm:preflight:job"}),
    ],
)
def test_parts_can_be_turned_off(scratch: Scratch, part: str, missing: set) -> None:
    """Each part input drops its jobs; the needs of the jobs left still hold."""
    scenario = SCENARIOS["merge request"]
    _on_ref(scratch, scenario)
    jobs = scratch.list_jobs(scenario.variables, scenario.unset, "--input", f"{part}=false")
    assert set(jobs) == set(scenario.jobs) - missing
    run = scratch.gcl(
        "--validate-dependency-chain",
        "--input",
        f"{part}=false",
        variables=scenario.variables,
        unset=scenario.unset,
    )
    assert run.returncode == 0, run.output


def test_unprotected_tags_are_stopped_by_the_first_workflow_rule(workflow: dict) -> None:
    """gitlab-ci-local ignores a workflow rule's `when: never`, so the "no pipeline" cases
    rest on tests/support/gitlab_rules.py; this pins the real YAML: the never-rule for
    unprotected tags comes first, before the prod rule that a web run on a tag would
    otherwise match."""
    assert workflow["rules"][0] == {
        "if": '$CI_COMMIT_TAG && $CI_COMMIT_REF_PROTECTED != "true"',
        "when": "never",
    }
    assert all(rule.get("when") != "never" for rule in workflow["rules"][1:])


def doc_table(page: str, header: str) -> dict[str, list[str]]:
    """The table under HEADER in PAGE: its first column's names, with the other cells."""
    text = (ROOT / page).read_text()
    table = text.split(f"{header}\n", 1)[1].split("\n\n", 1)[0]
    rows = [row.strip("|").split(" | ") for row in table.splitlines()[1:]]
    return {cells[0].strip(" `"): [cell.strip(" `") for cell in cells[1:]] for cells in rows}


SEVEN = ("NS", "RELEASE_NAME", "CHANNEL", "KUBE_CONTEXT", "IMAGE_TAG", "INGRESS_CLASS_NAME", "HOST")


def test_doc_tables_are_the_workflow_rules_and_the_jobs_names(workflow: dict) -> None:
    """The README's "What deploys where" table, what GitLab sets, is the workflow rules'
    variables (this project's inputs applied); docs/pipeline.md's table of what the jobs use
    is the scenarios' names."""
    _never, prod, dev = workflow["rules"]
    gitlab = doc_table("README.md", "| variable | prod | dev |")
    assert gitlab == {name: [prod["variables"][name], dev["variables"][name]] for name in SEVEN}
    header = "| variable | prod | branch `dev` | branch `feature/Login_Form` |"
    jobs = doc_table("docs/pipeline.md", header)
    assert jobs == {name: [PROD[name], DEV_BRANCH[name], FEATURE_BRANCH[name]] for name in SEVEN}


def documented_own_job() -> str:
    """docs/pipeline.md's example of a job of one's own that uses the jobs' names."""
    page = (ROOT / "docs" / "pipeline.md").read_text()
    section = page.split("A job of your own sees GitLab's values", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def user_scratch(repo_root, tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """A project whose .gitlab-ci.yml adds, after the component's include, a job printing
    the seven variables and the documented job of one's own."""
    scratch = build_scratch(repo_root, tmp_path_factory.mktemp("user-job"))
    lines = "\n".join(f'    - echo "seen {name}=${name}"' for name in SEVEN)
    job = f"\nuser:print:job:\n  stage: deploy\n  needs: []\n  script:\n{lines}\n"
    with (scratch.path / ".gitlab-ci.yml").open("a") as gitlab_ci:
        gitlab_ci.write(job + "\n" + documented_own_job())
    scratch.git("commit", "-qam", "a job of the project's own")
    return scratch


USER_PIPELINES = {
    "push main": SCENARIOS["push main"],
    "push dev": SCENARIOS["push dev"],
    "web on dev": Scenario("dev", PROD, variables={"CI_PIPELINE_SOURCE": "web"}),
    "push protected branch": SCENARIOS["push protected branch"],
    "merge request": SCENARIOS["merge request"],
}


@pytest.mark.parametrize("name", USER_PIPELINES)
def test_a_job_of_ones_own_sees_the_original_values(name: str, user_scratch: Scratch) -> None:
    """A job added to .gitlab-ci.yml gets the original table's seven variables from GitLab,
    exactly, in every kind of pipeline. gitlab-ci-local 4.73 does what GitLab does here: it
    takes the first workflow rule whose `if` holds, lays its variables over the global ones
    (job variables win over both) and expands nested references per job. It ignores a
    rule's `when: never` (the evaluator test above covers those pipelines) and applies
    --unset-variable only to jobs, not to the workflow rules, which the merge request
    pipeline does not depend on (it is prod by its CI_PIPELINE_SOURCE)."""
    scenario = USER_PIPELINES[name]
    _on_ref(user_scratch, scenario)
    run = user_scratch.gcl(
        "--force-shell-executor",
        "user:print:job",
        variables=scenario.variables,
        unset=scenario.unset,
    )
    assert run.returncode == 0, run.output
    seen = dict(re.findall(r"> seen (\w+)=(.*)$", run.output, flags=re.MULTILINE))
    assert seen == scenario.expected


def test_a_job_of_ones_own_gets_valid_names_from_lib_sh(user_scratch: Scratch) -> None:
    """The documented job of one's own, on feature/Login_Form: the names the jobs use."""
    user_scratch.checkout_branch("feature/Login_Form")
    run = user_scratch.gcl("--force-shell-executor", "my:job")
    assert run.returncode == 0, run.output
    assert f"> https://{FEATURE_BRANCH['HOST']}\n" in run.output
