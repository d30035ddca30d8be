"""The pipeline's files: valid for GitLab's schema and gitlab-ci-local, inputs
documented, images pinned, scripts POSIX, TLS and logs safe by default; and the
README's job graph equal to the needs gitlab-ci-local reads."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hack.generate import ci_scripts
from tests.pipeline.conftest import ROOT, Scratch
from tests.pipeline.pipelinelib import COMPONENT, SCENARIOS, component_documents, readme_graph

SCRIPTS_YML = ROOT / "templates" / "pipeline" / "scripts.generated.yml"
# GitLab's container-scanning job, fitted into the pipeline (the container_scanning input),
# and the job that refuses an analyzer image pinned by tag alone.
SCANNING_YML = ROOT / "templates" / "pipeline" / "container-scanning.yml"
SCANNING_PIN_YML = ROOT / "templates" / "pipeline" / "container-scanning-pin.yml"
SCRIPTS = sorted((ROOT / "ci" / "scripts").glob("*.sh"))
# The prober, which the deploy job's verify input runs with python3.
PROVER = ROOT / "src" / "flask_example" / "prove.py"
# (cosign's --insecure-ignore-tlog is about the transparency log, not TLS.)
INSECURE_FLAGS = re.compile(
    r"--insecure(?!-ignore-tlog)|--skip-tls-verify|\s-k\s|INSECURE_SKIP_TLS_VERIFY"
)


def test_gitlab_schema(tmp_path: Path) -> None:
    """check-jsonschema's GitLab CI schema accepts .gitlab-ci.yml, both component documents,
    both documents of the container scanning's fit and of its guard, and the embedded
    scripts."""
    header, body = component_documents()
    (tmp_path / "spec.yml").write_text(header)
    (tmp_path / "pipeline.yml").write_text(body)
    fit_header, fit_body = SCANNING_YML.read_text().split("\n---\n", 1)
    (tmp_path / "scanning-spec.yml").write_text(fit_header)
    (tmp_path / "scanning.yml").write_text(fit_body)
    pin_header, pin_body = SCANNING_PIN_YML.read_text().split("\n---\n", 1)
    (tmp_path / "scanning-pin-spec.yml").write_text(pin_header)
    (tmp_path / "scanning-pin.yml").write_text(pin_body)
    result = subprocess.run(
        [
            ROOT / ".venv" / "bin" / "check-jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            # GitLab's !reference tag, which plain YAML does not know.
            "--data-transform",
            "gitlab-ci",
            ROOT / ".gitlab-ci.yml",
            tmp_path / "spec.yml",
            tmp_path / "pipeline.yml",
            tmp_path / "scanning-spec.yml",
            tmp_path / "scanning.yml",
            tmp_path / "scanning-pin-spec.yml",
            tmp_path / "scanning-pin.yml",
            SCRIPTS_YML,
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
    """.gitlab-ci.yml stays short: one include of the component with inputs, and the job
    that releases the component (test_pipeline_catalog.py), which includers never get."""
    config = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert list(config) == ["include", "component:release:job"]
    [include] = config["include"]
    assert include["local"] == "templates/pipeline/template.yml"
    spec_inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    assert set(include["inputs"]) <= set(spec_inputs)


def test_inputs_are_documented_and_images_pinned() -> None:
    """Every input has a description; every image input defaults to a pinned version."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    for name, spec in inputs.items():
        assert spec.get("description"), f"input {name} has no description"
    images = ("kaniko_image", "crane_image", "cosign_image", "helm_image", "helm_kubectl_image")
    for name in (*images, "alpine_image"):
        image = inputs[name]["default"]
        tag = image.rsplit(":", 1)[1]
        assert re.fullmatch(r"v?\d+(\.\d+)+(-debug|-dev)?", tag), f"{name} is not pinned: {image}"


def test_every_input_is_in_the_readme_inputs_table() -> None:
    """The README's inputs table has a row for each input of the component, and no other."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| input | default | meaning |\n", 1)[1].split("\n\n", 1)[0]
    keys = [row.split(" | ", 1)[0].removeprefix("| ") for row in table.splitlines()[1:]]
    documented = [name.strip("`") for key in keys for name in key.split(", ")]
    assert sorted(documented) == sorted(inputs)


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


def test_jobs_run_the_embedded_scripts_through_sh() -> None:
    """Every script call first writes the embedded scripts, then runs one of them with
    `sh` (kaniko's debug image has no /bin/sh), never a file from the checkout."""
    body = component_documents()[1]
    wiring = [line for line in body.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in wiring if "ci/scripts/" in line]
    calls = re.findall(r"^(\s+)- (sh .*)$", body, flags=re.MULTILINE)
    assert len(calls) >= 8
    for indent, call in calls:
        reference = f"{indent}- !reference [.pipeline_scripts, script]\n{indent}- {call}\n"
        assert reference in body, f"{call} is not right after the scripts' !reference"
        name = re.fullmatch(r'sh "\$PIPELINE_SCRIPTS/([\w-]+\.sh)"( [\w-]+)?', call)
        assert name, call
        assert (ROOT / "ci" / "scripts" / name[1]).is_file(), call


def materialize(shell: list, project_dir: Path) -> subprocess.CompletedProcess:
    """Run the embedded block of the generated scripts file as a job would, then list
    what it wrote."""
    [block] = yaml.safe_load(SCRIPTS_YML.read_text())[".pipeline_scripts"]["script"]
    return subprocess.run(
        [*shell, "-c", "set -eu\n" + block + '\nprintf "%s\\n" "$PIPELINE_SCRIPTS"'],
        cwd=project_dir,
        env={"PATH": os.environ["PATH"], "CI_JOB_ID": "4711"},
        check=False,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("shell", [["busybox", "sh"], ["dash"]], ids=["busybox", "dash"])
def test_embedded_scripts_are_written_byte_for_byte(tmp_path: Path, shell: list) -> None:
    """In BusyBox sh (the job images' only shell) and dash, in an empty job directory
    (no checkout, as in helm:stop:job), the block writes every script unchanged and
    executable, replacing whatever an earlier job left there."""
    if not shutil.which(shell[0]):
        pytest.skip(f"{shell[0]} is not installed")
    leftover = tmp_path / ".ci-scripts" / "job-4711" / "old.sh"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("stale\n")
    result = materialize(shell, tmp_path)
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert folder == tmp_path / ".ci-scripts" / "job-4711"
    embedded = [*SCRIPTS, PROVER]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in embedded)
    for script in embedded:
        written = folder / script.name
        assert written.read_bytes() == script.read_bytes(), script.name
    for script in SCRIPTS:
        assert (folder / script.name).stat().st_mode & 0o777 == 0o755, script.name


def test_generator_refuses_a_script_it_cannot_embed(tmp_path: Path) -> None:
    """A script line equal to the heredoc delimiter would end the file early: refused."""
    (tmp_path / "bad.sh").write_text(f"#!/bin/sh\necho\n{ci_scripts.DELIMITER}\n")
    with pytest.raises(SystemExit, match=r"/bad\.sh has a line equal to the heredoc delimiter"):
        ci_scripts.render(tmp_path)


def test_readme_graph_is_the_needs_graph(scratch: Scratch) -> None:
    """The README's picture shows exactly the jobs and needs gitlab-ci-local reads from the
    pipeline (a branch pipeline has the stop job, a merge request one auto-merge), with the
    signing input on (its sign and verify jobs). (GitLab's container_scanning job comes
    from a component on the GitLab host, and its guard only with the scan on:
    test_pipeline_container_scanning.py checks their nodes and edges.)"""
    jobs: set = set()
    edges: set = set()
    for name in ("push feature/Login_Form", "merge request"):
        scenario = SCENARIOS[name]
        scratch.checkout_branch(scenario.ref)
        variables = {**scenario.variables, "PIPELINE_SIGNING": "key"}
        for job, spec in scratch.list_jobs(variables, scenario.unset).items():
            jobs.add(job)
            edges |= {(need["job"], job) for need in spec["needs"] or []}
    names, readme_edges = readme_graph()
    scan = {"container_scanning", "container_scanning:pin:job"}
    assert (names - scan, {edge for edge in readme_edges if not scan & set(edge)}) == (
        jobs,
        edges,
    )


@pytest.fixture(scope="module")
def preview_jobs(scratch: Scratch) -> dict:
    """The jobs as gitlab-ci-local expands them (inputs, extends and !reference applied)."""
    scratch.checkout_branch("main")
    run = scratch.gcl("--preview")
    assert run.returncode == 0, run.output
    jobs = yaml.safe_load(run.stdout)
    return {name: spec for name, spec in jobs.items() if ":job" in name}


def job_calls(spec: dict) -> str:
    """A job's own script lines (not the embedded scripts' heredoc), as one text."""
    return "\n".join(line for line in spec["script"] if "\n" not in line)


# Each job that uses the agent's kube context, and its environment action: the dry run and
# the preflight prepare the deploy's environment without deploying to it.
AGENT_JOBS = {
    "helm_builder:test:deploy:job": "prepare",
    "helm:preflight:job": "prepare",
    "helm:deploy:job": None,
    "helm:stop:job": "stop",
}


def test_jobs_that_use_the_agent_carry_the_deploy_environment(preview_jobs: dict) -> None:
    """An agent whose ci_access lists `environments` gives its context only to jobs of a
    matching environment: every job that uses it names the deploy's environment."""
    uses_agent = {
        name
        for name, spec in preview_jobs.items()
        if re.search(
            r"helm-deploy\.sh|helm-preflight\.sh|helm-stop\.sh|--kube-context", job_calls(spec)
        )
    }
    assert uses_agent == set(AGENT_JOBS)
    name = preview_jobs["helm:deploy:job"]["environment"]["name"]
    for job, action in AGENT_JOBS.items():
        environment = preview_jobs[job]["environment"]
        assert environment["name"] == name, job
        assert environment.get("action") == action, job


def test_the_deploy_runs_on_the_image_documented_to_carry_python3(preview_jobs: dict) -> None:
    """The verify step's prober needs python3: the deploy job runs on helm_kubectl_image,
    whose description (and the README's inputs table) says it has python3; helm_image's
    says it has none."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    image = preview_jobs["helm:deploy:job"]["image"]["name"]
    assert image == inputs["helm_kubectl_image"]["default"]
    assert "python3" in inputs["helm_kubectl_image"]["description"]
    assert "no python3" in inputs["helm_image"]["description"]
    readme = (ROOT / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| `helm_kubectl_image` |")]
    assert "`python3`" in row and "helm:deploy:job" in row


def test_only_alpine_image_jobs_install_packages(preview_jobs: dict) -> None:
    """Nothing is installed with apk on the tool images (alpine/helm:4.1.4 was built FROM
    alpine:edge and is never rebuilt: today's edge packages break on it); the alpine_image
    jobs install from their pinned release, never from edge."""
    inputs = yaml.safe_load(component_documents()[0])["spec"]["inputs"]
    for job, spec in preview_jobs.items():
        called = re.findall(r"\$PIPELINE_SCRIPTS/([\w-]+\.sh)", job_calls(spec))
        image = spec["image"]["name"] if isinstance(spec["image"], dict) else spec["image"]
        for script in called:
            text = (ROOT / "ci" / "scripts" / script).read_text()
            assert not [line for line in re.findall(r"apk .*", text) if "edge" in line], script
            if image != inputs["alpine_image"]["default"]:
                assert "apk add" not in text, f"{job} runs {script} on {image}"
