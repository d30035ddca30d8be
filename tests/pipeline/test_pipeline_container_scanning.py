"""GitLab's own container scanning behind the input container_scanning: the component's
include as GitLab reads it (inputs interpolated, include rules evaluated, the inputs it
passes checked against the component's spec by GitLab's rule), and the pipeline under
gitlab-ci-local with a stand-in of the component served from a local Git repository
standing in for its project on the GitLab host: off, no job and nothing fetched; on, its
job scans the digest docker_builder:push:job pushed, on the pinned analyzer image, with
TLS verified against PIPELINE_CA_FILE; on with an analyzer image pinned by tag alone, the
component is not included and the pipeline fails with one line naming the input."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from hack.pki import Pki
from tests.pipeline.conftest import DIGEST, GITLAB_HOST, ROOT, Scratch, build_scratch
from tests.pipeline.conftest import commit_project as commit_repository
from tests.pipeline.pipelinelib import (
    IMAGE,
    PLATFORMS,
    build_job,
    component_documents,
    readme_graph,
    registry_variables,
)
from tests.support.gitlab_rules import include_taken, input_errors

STANDIN = ROOT / "tests" / "support" / "container_scanning_standin.yml"
OVERRIDE = "templates/pipeline/container-scanning.yml"
GUARD_FILE = "templates/pipeline/container-scanning-pin.yml"
JOB = "container_scanning"
GUARD = "container_scanning:pin:job"
PUSH = "docker_builder:push:job"
# The component's address, pinned to a release: GitLab.com's project, or its mirror at
# the same path on a self-managed instance ($CI_SERVER_FQDN names either).
COMPONENT_PROJECT = "components/container-scanning"
ADDRESS = re.compile(rf"\$CI_SERVER_FQDN/{COMPONENT_PROJECT}/container-scanning@(\d+\.\d+\.\d+)")
# An analyzer image pinned by digest (a made-up one: the registry is a stand-in's), and the
# input's default, GitLab's moving tag.
PINNED = "registry.example.test/mirror/container-scanning:8@sha256:" + "0" * 64
TAG_ONLY = "registry.gitlab.com/security-products/container-scanning:8"
ON = ("--input", "container_scanning=true", "--input", f"container_scanning_image={PINNED}")
ON_TAG_ONLY = ("--input", "container_scanning=true")
REFUSAL = (
    f"ERROR: container_scanning_image {TAG_ONLY} is not pinned by digest:"
    " set it to <image>:<tag>@sha256:<digest> to run the scan"
)


class GitLabLoader(yaml.SafeLoader):
    """YAML with GitLab's !reference tag, read as the list it holds."""


GitLabLoader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def interpolated(path: Path, arguments: dict) -> dict:
    """PATH's pipeline document as GitLab reads it with ARGUMENTS for its spec:inputs (the
    defaults for the rest): every `$[[ inputs.x ]]` replaced, booleans as true/false."""
    header, body = path.read_text().split("\n---\n", 1)
    specs = yaml.safe_load(header)["spec"]["inputs"]
    assert not input_errors(specs, arguments)
    values = {name: arguments.get(name, spec.get("default")) for name, spec in specs.items()}

    def text(match: re.Match) -> str:
        value = values[match[1]]
        return str(value).lower() if isinstance(value, bool) else str(value)

    return yaml.load(re.sub(r"\$\[\[ inputs\.(\w+) \]\]", text, body), Loader=GitLabLoader)  # noqa: S506


def included(arguments: dict) -> list[dict]:
    """The component's include entries that GitLab takes with ARGUMENTS (its include rules
    read only the interpolated inputs, so no pipeline variable is needed)."""
    pipeline = interpolated(ROOT / "templates" / "pipeline" / "template.yml", arguments)
    return [entry for entry in pipeline["include"] if include_taken(entry.get("rules"), {})]


REQUIRED = {"certificate_issuer_name": "private-ca"}


def scanning(arguments: dict) -> list[dict]:
    """The include entries of the container scanning (the component, its fit, the guard)."""
    return [
        entry
        for entry in included({**REQUIRED, **arguments})
        if "component" in entry or entry.get("local") in (OVERRIDE, GUARD_FILE)
    ]


def standin_inputs() -> dict:
    """The stand-in's spec:inputs: the inputs of the real component this project sourced."""
    return yaml.safe_load(STANDIN.read_text().split("\n---\n", 1)[0])["spec"]["inputs"]


def test_off_by_default_nothing_is_included() -> None:
    """The input defaults to false, and then neither the component nor its fit is read; nor
    with the image part off (nothing is pushed to scan)."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    assert inputs["container_scanning"] == {**inputs["container_scanning"], "type": "boolean"}
    assert inputs["container_scanning"]["default"] is False
    assert scanning({}) == []
    assert scanning({"container_scanning": True, "build_image": False}) == []
    assert scanning({"container_scanning_image": PINNED}) == []


def test_on_includes_the_pinned_release_with_inputs_it_declares() -> None:
    """On, the component comes from a release (never ~latest, a partial version or a
    branch), followed by its fit (the later definition of the job wins), and every input
    the pipeline passes is one the component declares (GitLab refuses the pipeline
    otherwise, as the stand-in's spec does here)."""
    component, fit = scanning({"container_scanning": True, "container_scanning_image": PINNED})
    assert ADDRESS.fullmatch(component["component"]), component["component"]
    assert fit["local"] == OVERRIDE
    assert component["inputs"] == {"cs_image": "$IMAGE_REPOSITORY@$IMAGE_DIGEST"}
    assert input_errors(standin_inputs(), component["inputs"]) == []


DIGEST_HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        (TAG_ONLY, False),
        (f"{TAG_ONLY}@sha256:{DIGEST_HEX}", True),
        (f"registry.example.test/container-scanning@sha256:{DIGEST_HEX}", True),
        (f"{TAG_ONLY}@sha256:{DIGEST_HEX[:-1]}", False),
        (f"{TAG_ONLY}@sha256:{DIGEST_HEX.upper()}", False),
        (f"{TAG_ONLY}@sha256:{DIGEST_HEX}-moved", False),
        (f"{TAG_ONLY}@sha512:{DIGEST_HEX}{DIGEST_HEX}", False),
        (f"sha256:{DIGEST_HEX}", False),
    ],
    ids=[
        "tag",
        "tag and digest",
        "digest",
        "short digest",
        "upper case",
        "suffix",
        "sha512",
        "no name",
    ],
)
def test_on_only_a_digest_pinned_analyzer_includes_the_scan(image: str, pinned: bool) -> None:
    """On, an analyzer image that ends in @sha256:<64 hex> includes the component and its
    fit; anything else includes only the guard, whose job refuses it, and no scan."""
    entries = scanning({"container_scanning": True, "container_scanning_image": image})
    if pinned:
        assert [entry.get("local") for entry in entries] == [None, OVERRIDE]
    else:
        [guard] = entries
        assert guard["local"] == GUARD_FILE
        assert guard["inputs"] == {"image": image, "shell_image": guard["inputs"]["shell_image"]}


def test_the_guard_runs_on_an_image_the_pipeline_already_uses() -> None:
    """The guard needs a shell only: the pinned alpine_image, on the general runner, no
    checkout, starting with the pipeline; CONTAINER_SCANNING_DISABLED skips it as it skips
    the scan."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    [guard] = scanning({"container_scanning": True})
    assert guard["inputs"]["shell_image"] == inputs["alpine_image"]["default"]
    job = interpolated(ROOT / GUARD_FILE, guard["inputs"])[GUARD]
    assert job["image"] == inputs["alpine_image"]["default"]
    assert job["needs"] == []
    assert "tags" not in job
    assert job["variables"] == {"GIT_STRATEGY": "none", "CONTAINER_SCANNING_IMAGE": TAG_ONLY}
    assert job["rules"][0] == {
        "if": '$CONTAINER_SCANNING_DISABLED == "true" || $CONTAINER_SCANNING_DISABLED == "1"',
        "when": "never",
    }


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"cs_analyzer_image": "x"}, "unknown input arguments: cs_analyzer_image"),
        ({"cs_image": "x", "CS_IMAGE": "x"}, "unknown input arguments: CS_IMAGE"),
    ],
)
def test_the_standin_refuses_what_gitlab_refuses(arguments: dict, error: str) -> None:
    """An input the component does not declare fails the pipeline, in GitLab's words."""
    assert input_errors(standin_inputs(), arguments) == [error]


def test_the_job_gets_the_push_jobs_dotenv_and_the_pinned_image() -> None:
    """The fit puts the job after the push, in a stage of this pipeline, on the analyzer
    image input, with TLS verification on unless insecure_registry, the private CA's
    bundle, and the push job in `dependencies`: GitLab hands a job the dotenv variables
    only of the jobs whose artifacts it gets, and the component's `dependencies: []` would
    leave CS_IMAGE without its digest (gitlab-ci-local hands them on either way)."""
    image = "registry.example.test/mirror/container-scanning:8@sha256:" + "0" * 64
    job = interpolated(ROOT / OVERRIDE, {"image": image, "insecure_registry": False})[JOB]
    assert job["image"] == image
    assert job["stage"] == "push"
    assert job["needs"] == [{"job": PUSH, "artifacts": True}]
    assert job["dependencies"] == [PUSH]
    assert job["variables"] == {
        "ADDITIONAL_CA_CERT_BUNDLE": "$PIPELINE_CA_FILE",
        "CS_DOCKER_INSECURE": "false",
    }
    insecure = interpolated(ROOT / OVERRIDE, {"image": image, "insecure_registry": True})[JOB]
    assert insecure["variables"]["CS_DOCKER_INSECURE"] == "true"
    standin_job = yaml.safe_load(STANDIN.read_text().split("\n---\n", 1)[1])
    assert standin_job["$[[ inputs.job_name ]]"]["dependencies"] == []


@pytest.fixture(scope="module")
def component_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in for the component's project on the GitLab host: a bare Git repository with
    the stand-in as templates/container-scanning.yml, tagged with the release the pipeline
    pins (gitlab-ci-local fetches it with `git ls-remote` and `git archive`)."""
    [component, _fit] = scanning({"container_scanning": True, "container_scanning_image": PINNED})
    [release] = ADDRESS.fullmatch(component["component"]).groups()
    work = tmp_path_factory.mktemp("container-scanning-host") / "work"
    (work / "templates").mkdir(parents=True)
    (work / "templates" / "container-scanning.yml").write_text(STANDIN.read_text())
    repository = commit_repository(work, COMPONENT_PROJECT)
    repository.git("tag", "-a", "-m", f"release {release}", release)
    bare = work.parent / "host.git"
    repository.git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def reaching(host: Path, repo_root: Path, base: Path) -> Scratch:
    """This project in BASE, whose Git reaches the component's project at HOST."""
    scratch = build_scratch(repo_root, base)
    for url in (
        f"ssh://git@{GITLAB_HOST}:22/{COMPONENT_PROJECT}.git",
        f"git@{GITLAB_HOST}:{COMPONENT_PROJECT}",
    ):
        subprocess.run(
            ["git", "config", "--file", base / "home" / ".gitconfig", "--add",
             f"url.{host}.insteadOf", url],
            check=True,
        )  # fmt: skip
    scratch.checkout_branch("feature/Login_Form")
    return scratch


@pytest.fixture(scope="module")
def project(repo_root: Path, tmp_path_factory: pytest.TempPathFactory, component_host) -> Scratch:
    """This project, whose Git reaches the component's project through the stand-in."""
    return reaching(component_host, repo_root, tmp_path_factory.mktemp("container-scanning"))


def test_off_the_pipeline_runs_without_the_component(scratch: Scratch) -> None:
    """Under gitlab-ci-local, with the input left at its default, the pipeline has no
    scanning job and no guard, and nothing was fetched (the shared scratch project reaches
    no host)."""
    scratch.checkout_branch("feature/Login_Form")
    jobs = scratch.list_jobs({})
    assert JOB not in jobs
    assert GUARD not in jobs
    assert PUSH in jobs


def test_on_with_a_tag_alone_the_guard_fails_and_nothing_scans(scratch: Scratch) -> None:
    """Under gitlab-ci-local, on with the analyzer image's default (GitLab's moving tag):
    the component is not fetched (the shared scratch project reaches no host), its job is
    not in the pipeline, and the guard fails with one line naming the input and the fix;
    CONTAINER_SCANNING_DISABLED leaves the guard out too."""
    scratch.checkout_branch("feature/Login_Form")
    jobs = scratch.list_jobs({}, (), *ON_TAG_ONLY)
    assert JOB not in jobs
    assert jobs[GUARD]["stage"] == "build"
    assert jobs[GUARD]["needs"] == []
    run = scratch.gcl("--force-shell-executor", *ON_TAG_ONLY, GUARD)
    assert run.returncode != 0, run.output
    # What the job printed (gitlab-ci-local marks it `<job> > `): the one line, only.
    printed = [line for line in run.output.splitlines() if line.startswith(f"{GUARD} > ")]
    assert printed == [f"{GUARD} > {REFUSAL}"], run.output
    disabled = scratch.list_jobs({"CONTAINER_SCANNING_DISABLED": "true"}, (), *ON_TAG_ONLY)
    assert GUARD not in disabled


def test_on_the_job_follows_the_push_on_the_pinned_image(project: Scratch) -> None:
    """Under gitlab-ci-local, with the input on, the component's job is in the pipeline,
    in stage push, needing the push job, on the input's analyzer image."""
    jobs = project.list_jobs({}, (), *ON)
    assert jobs[JOB]["stage"] == "push"
    assert jobs[JOB]["needs"] == [{"job": PUSH, "artifacts": True, "optional": False}]
    assert GUARD not in jobs
    run = project.gcl("--preview", *ON)
    assert run.returncode == 0, run.output
    preview = yaml.safe_load(run.stdout)[JOB]
    assert preview["image"]["name"] == PINNED
    assert preview["variables"]["CS_IMAGE"] == "$IMAGE_REPOSITORY@$IMAGE_DIGEST"


def test_the_readme_graph_shows_the_job(project: Scratch) -> None:
    """The README's job graph has the job and its one edge, as gitlab-ci-local reads them
    with the input on, and the guard, which has no edge."""
    jobs = project.list_jobs({}, (), *ON)
    guarded = project.list_jobs({}, (), *ON_TAG_ONLY)
    names, edges = readme_graph()
    assert {JOB, GUARD} <= names
    assert {edge for edge in edges if JOB in edge} == {
        (need["job"], JOB) for need in jobs[JOB]["needs"]
    }
    assert {edge for edge in edges if GUARD in edge} == set()
    assert guarded[GUARD]["needs"] == []


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA's bundle, as the CI/CD variable PIPELINE_CA_FILE (type File) holds it."""
    path = tmp_path_factory.mktemp("scan-ca") / "ca-bundle.pem"
    path.write_bytes(Pki(path.parent / "pki").cert_pem())
    return path


def test_the_scan_gets_the_pushed_digest_and_the_ca(
    project: Scratch, tmp_path: Path, bundle: Path
) -> None:
    """The image jobs, then the scan, under gitlab-ci-local: the stand-in analyzer pulls
    exactly the index the push job pushed, by digest, trusting the private CA's bundle,
    with TLS verification on."""
    variables = {**registry_variables(tmp_path), "PIPELINE_CA_FILE": str(bundle)}
    builds = [build_job(platform) for platform in PLATFORMS]
    run = project.gcl("--force-shell-executor", *ON, *builds, PUSH, JOB, variables=variables)
    assert run.returncode == 0, run.output
    assert (
        f"stand-in gtcs: scanned {IMAGE}@{DIGEST} (CA bundle {bundle}, insecure false)"
        in run.output
    )


def test_the_scan_fails_without_the_push_jobs_digest(
    repo_root: Path, component_host: Path, tmp_path: Path
) -> None:
    """Alone, in a project where no push job ran (no dotenv report), the scan has no digest
    and the stand-in analyzer, like the real one, cannot pull what it was given: the job
    fails, naming it (a failure GitLab's job allows, so the pipeline goes on)."""
    (tmp_path / "alone").mkdir()
    project = reaching(component_host, repo_root, tmp_path / "alone")
    run = project.gcl("--force-shell-executor", *ON, JOB, variables=registry_variables(tmp_path))
    refused = re.search(
        r"stand-in gtcs: cannot pull '([^']*)': the registry holds (\S+)", run.output
    )
    assert refused, run.output
    assert refused[2] == f"{IMAGE}@{DIGEST}" != refused[1]
    assert re.search(rf"{JOB} +finished in .* WARN 1", run.output), run.output
