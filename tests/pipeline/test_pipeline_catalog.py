"""The component as GitLab's CI/CD Catalog reads it: the layout, the README's include
snippets (component and project forms), and the job that releases it for semantic-version
tags, which lives in this project's .gitlab-ci.yml and never in the component."""

import re

import pytest
import yaml

from tests.pipeline.conftest import ROOT, Scratch
from tests.pipeline.pipelinelib import GitLabLoader, readme_includes

TEMPLATES = ROOT / "templates"
COMPONENT = "pipeline"
RELEASE_JOB = "component:release:job"
# GitLab hands the release's fields to glab inside double quotes in a shell
# (lib/gitlab/ci/build/releaser.rb): a quote or a command substitution would break out.
SHELL_ACTIVE = re.compile(r'["`\\]|\$\(')
# semver.org's examples and counter-examples (GitLab's Catalog checks versions with
# semver.org's expression: Gitlab::Regex.semver_regex).
SEMVER = ["0.0.4", "1.2.3", "10.20.30", "1.0.0-rc.1", "2.0.0-rc.1+build.5", "1.0.0-0A.is.legal"]
# GitLab's global keywords (doc/ci/yaml/_index.md, "Global keywords"): anything else at the
# top level of the component is a job or a hidden base.
GLOBAL_KEYWORDS = {"default", "include", "stages", "variables", "workflow"}
NOT_SEMVER = ["v1.2.3", "1.2", "1", "01.1.1", "1.02.3", "1.2.3-01", "1.2.3-rc..1", "1.2.3+", "x"]


GitLabLoader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def component() -> tuple[dict, dict]:
    """The component's two documents: its spec header and its pipeline."""
    header, body = (TEMPLATES / COMPONENT / "template.yml").read_text().split("\n---\n", 1)
    return yaml.safe_load(header), yaml.load(body, Loader=GitLabLoader)  # noqa: S506 - safe


def spec_inputs() -> dict:
    """The component's spec:inputs."""
    return component()[0]["spec"]["inputs"]


def test_catalog_layout() -> None:
    """templates/<name>.yml or templates/<name>/template.yml, each with spec:inputs that all
    have a description; one component, `pipeline`; a README and a license at the root."""
    components = {path.stem: path for path in TEMPLATES.glob("*.yml")}
    components |= {path.parent.name: path for path in TEMPLATES.glob("*/template.yml")}
    assert sorted(components) == [COMPONENT]
    for name, description in spec_inputs().items():
        assert isinstance(description.get("description"), str), f"input {name}: no description"
    assert (ROOT / "README.md").is_file()
    assert (ROOT / "LICENSE").is_file()
    # What else templates/pipeline/ holds, the component includes from its own commit.
    local = {entry["local"] for entry in component()[1]["include"] if "local" in entry}
    others = {f"templates/{COMPONENT}/{p.name}" for p in (TEMPLATES / COMPONENT).iterdir()}
    assert others - {f"templates/{COMPONENT}/template.yml"} == local


@pytest.mark.parametrize("form", ["component", "project"])
def test_readme_snippets_carry_every_required_input(form: str) -> None:
    """Both of the README's include snippets parse, name this component, and give every
    input without a default (GitLab refuses the pipeline otherwise), and no unknown one."""
    inputs = spec_inputs()
    required = {name for name, spec in inputs.items() if "default" not in spec}
    assert required == {"certificate_issuer_name"}
    include = readme_includes()[form]["include"]
    assert required <= set(include["inputs"]) <= set(inputs)
    if form == "component":
        address = re.fullmatch(r"\$CI_SERVER_FQDN/(.+)/([^/@]+)@(.+)", include["component"])
        assert address, include["component"]
        assert (address[1], address[2]) == ("dev/flask-example-1", COMPONENT)
        # A release, a partial version or ~latest: never a moving branch.
        assert re.fullmatch(r"~latest|\d+(\.\d+){0,2}", address[3]), address[3]
    else:
        assert include["project"] == "dev/flask-example-1"
        assert include["file"] == f"templates/{COMPONENT}/template.yml"


def test_readme_snippets_agree() -> None:
    """The two forms differ only in how they name the component: same inputs."""
    snippets = readme_includes()
    assert snippets["component"]["include"]["inputs"] == snippets["project"]["include"]["inputs"]


def release_job() -> dict:
    """The release job as .gitlab-ci.yml defines it."""
    return yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())[RELEASE_JOB]


def test_release_job_is_the_projects_not_the_components() -> None:
    """Projects that include the component never get a release job; this project's runs
    last (.post: after everything else passed), in glab's pinned image (GitLab's release:
    keyword needs glab 1.58.0 or newer), and its fields are safe in GitLab's shell line."""
    assert not [name for name, job in component()[1].items()
                if isinstance(job, dict) and "release" in job]  # fmt: skip
    job = release_job()
    assert job["stage"] == ".post"
    assert "needs" not in job
    image = re.fullmatch(r"registry\.gitlab\.com/gitlab-org/cli:v(\d+)\.(\d+)\.(\d+)", job["image"])
    assert image, job["image"]
    assert tuple(int(part) for part in image.groups()) >= (1, 58, 0)
    assert job["release"]["tag_name"] == "$CI_COMMIT_TAG"
    for field in ("name", "description"):
        assert not SHELL_ACTIVE.search(job["release"][field]), field


def tag_pattern() -> re.Pattern:
    """The release rule's regular expression (GitLab's RE2 syntax, which Python reads alike)."""
    [rule] = release_job()["rules"]
    pattern = re.fullmatch(
        r'\$CI_COMMIT_REF_PROTECTED == "true" && \$CI_COMMIT_TAG =~ /(.+)/', rule["if"]
    )
    assert pattern, rule["if"]
    return re.compile(pattern[1])


@pytest.mark.parametrize("version", SEMVER + NOT_SEMVER)
def test_release_rule_takes_semantic_versions_only(version: str) -> None:
    """The rule's expression matches exactly semver.org's versions."""
    assert bool(tag_pattern().search(version)) == (version in SEMVER)


@pytest.mark.parametrize(
    ("tag", "protected", "released"),
    [
        ("1.0.0", True, True),
        ("2.0.0-rc.1", True, True),
        ("v1.0.0", True, False),
        ("1.0.0", False, False),
    ],
)
def test_release_job_runs_for_protected_semver_tags(
    scratch: Scratch, tag: str, protected: bool, released: bool
) -> None:
    """Under gitlab-ci-local, on this project's pipeline: the release job is in a tag's
    pipeline only when the tag is protected and a semantic version (gitlab-ci-local ignores
    the workflow rule that stops unprotected tags, so the job's own rule must hold)."""
    scratch.checkout_tag(tag)
    variables = {"CI_COMMIT_TAG": tag, "CI_COMMIT_REF_PROTECTED": str(protected).lower()}
    jobs = scratch.list_jobs(variables, ("CI_COMMIT_BRANCH",))
    assert (RELEASE_JOB in jobs) == released
    if released:
        assert "docker_builder:push:job" in jobs, "a release tag runs the whole pipeline first"


def test_release_job_is_not_in_branch_pipelines(scratch: Scratch) -> None:
    """A push to main (protected, prod) releases nothing."""
    scratch.checkout_branch("main")
    jobs = scratch.list_jobs({"CI_COMMIT_REF_PROTECTED": "true"})
    assert RELEASE_JOB not in jobs
    assert "helm:deploy:job" in jobs


def test_self_component_form_is_the_local_include(scratch: Scratch) -> None:
    """GitLab's self-test form of the include, the component at this commit, gives the
    pipeline that this project's include: local: gives (gitlab-ci-local resolves that form
    offline: the checkout's project path and commit)."""
    scratch.checkout_branch("self-component")
    config = (scratch.path / ".gitlab-ci.yml").read_text()
    local = "  - local: templates/pipeline/template.yml\n"
    assert local in config
    expected = scratch.gcl("--preview")
    assert expected.returncode == 0, expected.output
    self_form = "  - component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/pipeline@$CI_COMMIT_SHA\n"
    (scratch.path / ".gitlab-ci.yml").write_text(config.replace(local, self_form))
    scratch.git("commit", "-qam", "the component at this commit")
    try:
        run = scratch.gcl("--preview")
    finally:
        scratch.checkout_branch("main")
    assert run.returncode == 0, run.output
    assert yaml.safe_load(run.stdout) == yaml.safe_load(expected.stdout)


def test_docs_name_the_components_global_keywords() -> None:
    """docs/pipeline.md's list of the component's global keywords is the component's own:
    every top-level key that is not a job or a hidden base."""
    global_keys = {key for key in component()[1] if key in GLOBAL_KEYWORDS}
    section = (
        (ROOT / "docs" / "pipeline.md")
        .read_text()
        .split("**Its global keywords.**", 1)[1]
        .split("\n\n**", 1)[0]
    )
    listed = set(re.findall(r"^- `(\w+):`", section, re.M))
    assert listed == global_keys


def test_hidden_bases_carry_the_components_prefix() -> None:
    """Every hidden key of the component's files starts with `.pipeline_`: GitLab merges keys
    of the same name from all included files, so a generic `.helm` in the including project
    would otherwise replace the component's."""
    files = sorted((TEMPLATES / COMPONENT).glob("*.yml"))
    hidden = {key for path in files for key in re.findall(r"^(\.[\w-]+):", path.read_text(), re.M)}
    assert ".pipeline_job" in hidden
    assert sorted(key for key in hidden if not key.startswith(".pipeline_")) == []
