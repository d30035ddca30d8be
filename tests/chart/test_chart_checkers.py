"""The checkers Kubernetes teams run on charts, pinned in hack/tools/ and built by `make tools`:
kubeconform (strict), kube-score and kube-linter (its default checks) on the Helm 4 render of
every matrix case (as the checkov test) and of the pipeline's deploy values, and chart-testing's
`ct lint` on the chart. Each tool runs once over all the renders where it can (kube-score reads
its files as one set of objects, so it runs once per case). Every finding is excused by a row of
tests/chart/checker_skips.py, and every row excuses a finding somewhere.

Not here: polaris (`go install` cannot resolve its v10 releases, whose go.mod declares no /v10
major-version suffix, and the module proxy this project builds through refused even a commit's
pseudo-version), pluto and trivy.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from hack import cluster_tools
from hack.cluster import crd_files, module_dir
from tests.chart.chartlib import (
    CHART,
    HELMS,
    KUBE_VERSIONS,
    MATRIX,
    PIPELINE_CASES,
    ROOT,
    render,
    render_text,
)
from tests.chart.checker_skips import KUBE_LINTER, KUBE_SCORE
from tests.chart.checkov_skips import Skip

CASES = [*MATRIX, *PIPELINE_CASES]
BIN = cluster_tools.BIN
KUBERNETES_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
# kube-score grades: 1 CRITICAL, 5 WARNING, 7 almost OK, 10 OK.
KUBE_SCORE_OK = 10


def run(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a checker; its exit status is read by the caller."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=300, check=False, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each case's Helm 4 render in a folder of its own, `<case>/manifests.yaml` (kube-linter
    reads each folder as one set of objects)."""
    folder = tmp_path_factory.mktemp("renders")
    for case in CASES:
        (folder / case).mkdir()
        (folder / case / "manifests.yaml").write_text(render_text("helm4", case))
    return folder


@functools.cache
def rendered(case: str) -> tuple[dict, ...]:
    """A case's rendered objects, parsed once (the tables' conditions only read them)."""
    return tuple(render("helm4", case))


def excuse(table: tuple[Skip, ...], finding: tuple[str, str, str, str]) -> Skip | None:
    """The row of a tool's table that excuses a finding (case, check, kind, name), if any."""
    case, check, kind, name = finding
    objects = list(rendered(case))
    named = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert named, f"a checker names {kind}/{name} in {case}, which the chart did not render"
    for skip in table:
        if skip.check == check and skip.kind == kind and skip.when(objects, named[0]):
            return skip
    return None


def held_to_table(table: tuple[Skip, ...], findings: list[tuple[str, str, str, str]]) -> None:
    """Every finding excused, every row needed, every reason given."""
    excuses = {finding: excuse(table, finding) for finding in set(findings)}
    assert sorted(f for f, skip in excuses.items() if skip is None) == []
    used = set(excuses.values())
    assert [s for s in table if s not in used] == [], "an excuse no case needs: remove it"
    for skip in table:
        assert len(skip.reason.split()) >= 5, f"{skip.check}: say why the check does not apply"


# kubeconform


def strict(schema: object) -> object:
    """A CRD's OpenAPI schema made strict, as the API server's field validation is: an object
    with properties accepts no others, unless it keeps unknown fields on purpose."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        open_ended = schema.get("x-kubernetes-preserve-unknown-fields") is True
        if "properties" in schema and "additionalProperties" not in schema and not open_ended:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@functools.cache
def local_refs(path: Path) -> str:
    """A kubernetes-validate schema file's text, its references to the shared definitions file
    made references into the document itself."""
    return path.read_text().replace('"/api/_definitions.json#/$defs/', '"#/$defs/')


def standalone(folder: Path, name: str) -> dict:
    """One of kubernetes-validate's schemas with the definitions it refers to inlined."""
    definitions = json.loads(local_refs(folder / "_definitions.json"))["$defs"]
    schema = json.loads(local_refs(folder / name))
    schema.pop("$id", None)
    needed, queue = {}, [schema]
    while queue:
        for ref in re.findall(r'"#/\$defs/([^"]+)"', json.dumps(queue.pop())):
            if ref not in needed:
                needed[ref] = definitions[ref]
                queue.append(needed[ref])
    return {**schema, "$defs": needed}


def schema_name(kind: str, api_version: str) -> str:
    """kubeconform's file name for a kind: `<kind>[-<first part of the group>]-<version>.json`."""
    group, _, version = api_version.rpartition("/")
    return "-".join([kind.lower(), *([group.split(".")[0]] if group else []), version]) + ".json"


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubeconform's schema folder, strict, for every kind the chart renders: the Kubernetes
    API's (kubernetes-validate's, for the oldest and newest version the chart supports) and the
    custom resources' (from the CRDs in their projects' Go modules, those the local control plane
    serves), in kubeconform's layout `v<version>-standalone-strict/<file>`."""
    root = tmp_path_factory.mktemp("schemas")
    custom = {}
    for path in crd_files():
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            name = schema_name(kind, f"{group}/{version['name']}")
            custom[name] = strict(version["schema"]["openAPIV3Schema"])
    kinds = {schema_name(o["kind"], o["apiVersion"]) for case in CASES for o in rendered(case)}
    for version in (KUBE_VERSIONS[0], KUBE_VERSIONS[-1]):
        source = KUBERNETES_SCHEMAS / f"v{version}.0-local-strict"
        target = root / f"v{version}.0-standalone-strict"
        target.mkdir()
        for name in kinds:
            schema = custom.get(name) or standalone(source, name)
            (target / name).write_text(json.dumps(schema))
    return root


def kubeconform(schemas: Path, version: str, *paths: Path) -> dict:
    """kubeconform's JSON report, strict, for one Kubernetes version, with our schemas only."""
    result = run(
        str(BIN / "kubeconform"),
        "-strict",
        "-verbose",
        "-output=json",
        f"-kubernetes-version={version}.0",
        f"-schema-location={schemas}",
        *map(str, paths),
    )
    report = json.loads(result.stdout)
    assert report["resources"], result.stderr
    return report


@pytest.mark.parametrize("version", [KUBE_VERSIONS[0], KUBE_VERSIONS[-1]])
def test_kubeconform_accepts_every_object(renders: Path, schemas: Path, version: str) -> None:
    report = kubeconform(schemas, version, renders)
    problems = [
        f"{Path(r['filename']).parent.name}: {r['kind']}/{r['name']}: {r['status']} {r['msg']}"
        for r in report["resources"]
        if r["status"] != "statusValid"
    ]
    assert problems == []
    objects = sum(len(rendered(case)) for case in CASES)
    assert len(report["resources"]) == objects, "every rendered object checked"


def test_kubeconform_rejects_an_unknown_field(tmp_path: Path, schemas: Path) -> None:
    """Strict, with the built-in and the custom schemas: a misspelt field fails either."""
    objects = render("helm4", "full")
    for obj in objects:
        if obj["kind"] == "Deployment":
            obj["spec"]["template"]["spec"]["automountServiceAccountTokens"] = False
        if obj["kind"] == "Certificate":
            obj["spec"]["renewBefor"] = "1h"
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    invalid = {
        r["kind"]
        for r in kubeconform(schemas, KUBE_VERSIONS[-1], path)["resources"]
        if r["status"] == "statusInvalid"
    }
    assert invalid == {"Deployment", "Certificate"}


# kube-score


@pytest.fixture(scope="module")
def kube_score_findings(renders: Path) -> list[tuple[str, str, str, str]]:
    """kube-score's CRITICAL and WARNING findings as (case, check id, kind, name), one run per
    case: it reads all the files of a run as one set of objects."""
    findings = []
    for case in CASES:
        result = run(
            str(BIN / "kube-score"),
            "score",
            "--output-format=json",
            str(renders / case / "manifests.yaml"),
        )
        for obj in json.loads(result.stdout):
            for check in obj["checks"]:
                if not check["skipped"] and check["grade"] < KUBE_SCORE_OK:
                    kind, name = obj["type_meta"]["kind"], obj["object_meta"]["name"]
                    findings.append((case, check["check"]["id"], kind, name))
    return findings


def test_kube_score_findings_are_excused_by_its_table(kube_score_findings: list) -> None:
    held_to_table(KUBE_SCORE, kube_score_findings)


@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_kube_score_finds_the_pipeline_deploy_highly_available(
    kube_score_findings: list, case: str
) -> None:
    """What the issue's availability checks demand passes on the pipeline's values."""
    found = {check for finding_case, check, _, _ in kube_score_findings if finding_case == case}
    assert not found & {
        "deployment-has-poddisruptionbudget",
        "deployment-has-host-podantiaffinity",
        "deployment-replicas",
        "container-ephemeral-storage-request-and-limit",
        "label-values",
        "pod-topology-spread-constraints",
    }


# kube-linter


def test_kube_linter_default_checks_find_nothing_unexcused(renders: Path) -> None:
    result = run(str(BIN / "kube-linter"), "lint", "--format=json", str(renders))
    report = json.loads(result.stdout)
    assert report["Checks"], result.stderr
    findings = [
        (
            Path(r["Object"]["Metadata"]["FilePath"]).parent.name,
            r["Check"],
            r["Object"]["K8sObject"]["GroupVersionKind"]["Kind"],
            r["Object"]["K8sObject"]["Name"],
        )
        for r in report["Reports"] or []
    ]
    held_to_table(KUBE_LINTER, findings)
    assert {"no-anti-affinity", "run-as-non-root"} <= {c["name"] for c in report["Checks"]}


# chart-testing


def test_ct_lint_passes() -> None:
    """`ct lint` as chart repositories run it: Chart.yaml against chart-testing's schema (with
    yamale), Chart.yaml and values.yaml through its yamllint rules, `helm lint --strict` with
    every chart/ci/ values file. Its schema and rules come from its own module."""
    etc = module_dir(f"github.com/helm/chart-testing/v3@v{cluster_tools.TOOLS['ct'].pinned()}")
    etc = etc / "etc"
    # Helm 4, and yamllint and yamale (requirements/dev.txt, beside pytest) for ct to call.
    path = [HELMS["helm4"].parent, Path(sys.executable).parent, "/usr/bin", "/bin"]
    env = {"HOME": str(ROOT / ".tools" / "helm-home"), "PATH": ":".join(map(str, path))}
    result = run(
        str(BIN / "ct"),
        "lint",
        f"--charts={CHART.relative_to(ROOT)}",
        f"--chart-yaml-schema={etc / 'chart_schema.yaml'}",
        f"--lint-conf={etc / 'lintconf.yaml'}",
        "--helm-lint-extra-args=--strict",
        # Both need the chart repository's git history and maintainers' accounts.
        "--check-version-increment=false",
        "--validate-maintainers=false",
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All charts linted successfully" in output
    linted = re.findall(r'Linting chart with values file "chart/ci/(\S+)"', output)
    assert len(linted) == len(MATRIX) - 1, "every chart/ci/ values file"
