"""The pipeline's files: valid for GitLab's schema and gitlab-ci-local, inputs
documented, images pinned, scripts POSIX, TLS and logs safe by default; and the
README's job graph equal to the needs gitlab-ci-local reads."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import ROOT, Scratch, build_scratch
from tests.pipeline.test_pipeline_scenarios import SCENARIOS

COMPONENT = ROOT / "ci" / "pipeline.yml"
SCRIPTS = sorted((ROOT / "ci" / "scripts").glob("*.sh"))
INSECURE_FLAGS = re.compile(r"--insecure|--skip-tls-verify|\s-k\s")


def component_documents() -> tuple[str, str]:
    """The component's two YAML documents: the `spec` header and the pipeline."""
    header, body = COMPONENT.read_text().split("\n---\n", 1)
    return header, body


def test_gitlab_schema(tmp_path: Path) -> None:
    """check-jsonschema's GitLab CI schema accepts .gitlab-ci.yml and both component documents."""
    header, body = component_documents()
    (tmp_path / "spec.yml").write_text(header)
    (tmp_path / "pipeline.yml").write_text(body)
    result = subprocess.run(
        [
            ROOT / ".venv" / "bin" / "check-jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            ROOT / ".gitlab-ci.yml",
            tmp_path / "spec.yml",
            tmp_path / "pipeline.yml",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["push main", "push feature/Login_Form", "merge request"])
def test_gitlab_ci_local_validates_the_needs(scratch: Scratch, name: str) -> None:
    """gitlab-ci-local's own schema validation and its check that every need exists."""
    scenario = SCENARIOS[name]
    scratch.checkout_branch(scenario.ref)
    run = scratch.gcl(
        "--validate-dependency-chain", variables=scenario.variables, unset=scenario.unset
    )
    assert run.returncode == 0, run.output


def test_gitlab_ci_yml_only_includes_the_component() -> None:
    """.gitlab-ci.yml stays tiny: one include of the component with inputs."""
    config = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert list(config) == ["include"]
    [include] = config["include"]
    assert include["local"] == "ci/pipeline.yml"
    spec_inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    assert set(include["inputs"]) <= set(spec_inputs)


def test_inputs_are_documented_and_images_pinned() -> None:
    """Every input has a description; every image input defaults to a pinned version."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    for name, spec in inputs.items():
        assert spec.get("description"), f"input {name} has no description"
    for name in ("kaniko_image", "crane_image", "helm_image", "alpine_image"):
        image = inputs[name]["default"]
        tag = image.rsplit(":", 1)[1]
        assert re.fullmatch(r"v?\d+(\.\d+)+(-debug)?", tag), f"{name} is not pinned: {image}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_posix_and_quiet_about_secrets(script: Path) -> None:
    """BusyBox sh runs them: POSIX shebang, dash parses them; no tracing that prints secrets."""
    text = script.read_text()
    if script.name != "lib.sh":
        assert text.startswith("#!/bin/sh\n")
        assert "\nset -eu\n" in text
    subprocess.run(["dash", "-n", script], check=True)
    assert not re.search(r"set -[a-z]*x|CI_DEBUG_TRACE|bash", text)


def test_tls_verification_is_only_off_behind_the_opt_in() -> None:
    """Every flag that skips TLS checks sits inside `if is_true "${INSECURE_REGISTRY..."."""
    for script in SCRIPTS:
        lines = script.read_text().splitlines()
        for number, line in enumerate(lines):
            if INSECURE_FLAGS.search(line) and not line.lstrip().startswith("#"):
                opened = next(
                    ln for ln in reversed(lines[:number]) if ln.lstrip().startswith("if ")
                )
                assert "INSECURE_REGISTRY" in opened, f"{script.name}:{number + 1}: {line}"
    pipeline = (ROOT / ".gitlab-ci.yml").read_text() + COMPONENT.read_text()
    assert not INSECURE_FLAGS.search(pipeline)
    assert "CI_DEBUG_TRACE" not in pipeline


def test_jobs_call_scripts_through_sh() -> None:
    """kaniko's debug image has no /bin/sh, so scripts start as `sh ci/scripts/...`."""
    body = component_documents()[1]
    lines = re.findall(r"^\s+- (.*ci/scripts/.*)$", body, flags=re.MULTILINE)
    calls = [line for line in lines if not line.startswith("test -f ci/scripts/lib.sh")]
    assert len(calls) == len(lines) - 1 > 0
    for call in calls:
        assert call.startswith("sh ci/scripts/"), call
        assert (ROOT / call.split()[1]).is_file()


def readme_graph() -> tuple[set, set]:
    """Job names and edges of the mermaid graph in the README's pipeline section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- section:pipeline -->")[1].split("<!-- /section:pipeline -->")[0]
    graph = section.split("```mermaid")[1].split("```")[0]
    names = {node: label.split()[0] for node, label in re.findall(r"(\w+)\[([^\]]+)\]", graph)}
    edges = set()
    for source, target in re.findall(r"(\w+)(?:\[[^\]]*\])?\s*-->\s*(\w+)", graph):
        edges.add((names[source], names[target]))
    return set(names.values()), edges


def test_readme_graph_is_the_needs_graph(scratch: Scratch) -> None:
    """The README's picture shows exactly the jobs and needs gitlab-ci-local reads from the
    pipeline (a branch pipeline has the stop job, a merge request one auto-merge)."""
    jobs: set = set()
    edges: set = set()
    for name in ("push feature/Login_Form", "merge request"):
        scenario = SCENARIOS[name]
        scratch.checkout_branch(scenario.ref)
        for job, spec in scratch.list_jobs(scenario.variables, scenario.unset).items():
            jobs.add(job)
            edges |= {(need["job"], job) for need in spec["needs"] or []}
    assert readme_graph() == (jobs, edges)


def test_a_project_without_the_scripts_gets_told_what_to_copy(tmp_path: Path) -> None:
    """Including the component without ci/scripts/ fails every job with the fix."""
    bare = build_scratch(ROOT, tmp_path, scripts=False)
    run = bare.gcl("--force-shell-executor", "helm_builder:test:config:job")
    assert run.returncode != 0
    assert (
        "ci/scripts/ is missing - copy it from the project that holds ci/pipeline.yml" in run.output
    )
