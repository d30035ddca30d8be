"""renovate.json: valid for Renovate's schema, and it covers every pin it promises to keep
fresh: each image input of the pipeline component (a scanner image by digest), each CI/CD
component it includes, the Dockerfile's base image (by digest) and the upstream module of
each Go tool pin."""

import json
import re
import subprocess
from pathlib import Path

import yaml

from hack import cluster_tools

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "renovate.json"
COMPONENT = ROOT / "templates" / "pipeline" / "template.yml"


def config() -> dict:
    """renovate.json, parsed."""
    return json.loads(CONFIG.read_text(encoding="utf-8"))


def manager(datasource: str) -> dict:
    """The one custom manager of DATASOURCE."""
    [found] = [m for m in config()["customManagers"] if m["datasourceTemplate"] == datasource]
    assert found["managerFilePatterns"] == ["/^templates/pipeline/template\\.yml$/"]
    return found


def matches(found: dict) -> list[dict]:
    """What a custom manager's regex (JavaScript named groups, read by Python's re) finds in
    the component."""
    [pattern] = found["matchStrings"]
    text = COMPONENT.read_text(encoding="utf-8")
    return [m.groupdict() for m in re.finditer(pattern.replace("(?<", "(?P<"), text)]


def component_inputs() -> dict:
    """The component's spec:inputs."""
    return yaml.safe_load(COMPONENT.read_text(encoding="utf-8").split("\n---\n", 1)[0])["spec"][
        "inputs"
    ]


def test_renovate_schema_accepts_the_config() -> None:
    """check-jsonschema's copy of Renovate's own JSON schema."""
    result = subprocess.run(
        [
            ROOT / ".venv" / "bin" / "check-jsonschema",
            "--builtin-schema",
            "vendor.renovate",
            CONFIG,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_regex_manager_finds_every_image_input() -> None:
    """Renovate's regex matches each `*_image` input's default, as image name, tag and
    digest (when it has one)."""
    found = {
        f"{m['depName']}:{m['currentValue']}"
        + (f"@{m['currentDigest']}" if m["currentDigest"] else "")
        for m in matches(manager("docker"))
    }
    images = {  # (build_image is the boolean that turns the image part on)
        spec["default"]
        for name, spec in component_inputs().items()
        if name.endswith("_image") and spec.get("type", "string") == "string"
    }
    assert len(images) >= 7
    assert found == images


def test_scanner_images_are_pinned_by_digest() -> None:
    """A scanner image input (container_scanning_image) defaults to tag@sha256:<digest>, or,
    while no digest of its tag could be corroborated, says so in its description and
    Renovate pins its digest (Renovate's pinDigests)."""
    [name] = [name for name in component_inputs() if "scanning" in name and name.endswith("_image")]
    image = component_inputs()[name]["default"]
    reference = re.fullmatch(r"([a-z0-9./_-]+):([\w.-]+)(@sha256:[a-f0-9]{64})?", image)
    assert reference, image
    assert reference[2] != "latest"
    if reference[3] is None:
        assert "no public digest" in component_inputs()[name]["description"]
        assert [
            rule
            for rule in config()["packageRules"]
            if rule.get("pinDigests") and reference[1] in rule.get("matchPackageNames", [])
        ], f"Renovate does not pin {reference[1]} by digest"


def test_the_component_manager_finds_every_included_component() -> None:
    """Every CI/CD component the component includes is found, by its project on GitLab.com
    and a full release version (never ~latest, a partial version or a branch)."""
    text = COMPONENT.read_text(encoding="utf-8")
    included = re.findall(r"^ *- component: (\S+)$", text, re.M)
    assert included
    found = matches(manager("gitlab-tags"))
    assert [f"$CI_SERVER_FQDN/{m['depName']}/" for m in found] == [
        address.rsplit("/", 1)[0] + "/" for address in included
    ]
    for address, m in zip(included, found, strict=True):
        assert address.endswith(f"@{m['currentValue']}")
        assert re.fullmatch(r"\d+\.\d+\.\d+", m["currentValue"]), address


def test_the_dockerfile_base_image_is_pinned_by_digest() -> None:
    """The dockerfile manager pins digests (Renovate proposes the digest of the tag)."""
    [rule] = [r for r in config()["packageRules"] if r.get("matchManagers") == ["dockerfile"]]
    assert rule["pinDigests"] is True
    assert "dockerfile" in config()["enabledManagers"]


def test_every_go_tool_pin_is_updated() -> None:
    """Each upstream module that hack/tools/*/go.mod pins (as an indirect requirement) is
    enabled for updates, the rest of those files' modules are not."""
    upstreams = {tool.upstream for tool in cluster_tools.TOOLS.values()}
    rules = [r for r in config()["packageRules"] if r.get("matchManagers") == ["gomod"]]
    enabled = [r for r in rules if r["enabled"]]
    disabled = [r for r in rules if not r["enabled"]]
    assert [set(r["matchPackageNames"]) for r in enabled] == [upstreams]
    assert enabled[0]["matchDepTypes"] == ["indirect"]
    assert [set(r["matchPackageNames"]) for r in disabled] == [{f"!{u}" for u in upstreams}]


def test_image_variants_keep_their_suffix() -> None:
    """kaniko's -debug and cosign's -dev images (the ones with a shell) update to the same
    variant: Renovate's versioning for them reads the suffix as compatibility."""
    [rule] = [r for r in config()["packageRules"] if "versioning" in r]
    pattern = re.compile(rule["versioning"].removeprefix("regex:").replace("(?<", "(?P<"))
    for name in rule["matchPackageNames"]:
        [image] = [
            spec["default"]
            for spec in component_inputs().values()
            if str(spec.get("default")).startswith(f"{name}:")
        ]
        version = pattern.fullmatch(image.split("@")[0].rsplit(":", 1)[1])
        assert version and version["compatibility"] in ("-debug", "-dev"), image
