"""renovate.json: valid for Renovate's schema, and it covers every pin it promises to keep
fresh: each image input of the pipeline component, the Dockerfile's base image (by digest)
and the upstream module of each Go tool pin."""

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
    """Renovate's regex (JavaScript named groups, read here by Python's re) matches each
    `*_image` input's default, as image name, tag and (where pinned) digest."""
    [manager] = config()["customManagers"]
    assert manager["managerFilePatterns"] == ["/^templates/pipeline/template\\.yml$/"]
    [pattern] = manager["matchStrings"]
    text = COMPONENT.read_text(encoding="utf-8")
    found = {
        f"{m['depName']}:{m['currentValue']}"
        + (f"@{m['currentDigest']}" if m["currentDigest"] else "")
        for m in re.finditer(pattern.replace("(?<", "(?P<"), text)
    }
    inputs = yaml.safe_load(text.split("\n---\n", 1)[0])["spec"]["inputs"]
    images = {  # (build_image is the boolean that turns the image part on)
        spec["default"]
        for name, spec in inputs.items()
        if name.endswith("_image") and spec.get("type", "string") == "string"
    }
    assert len(images) >= 6
    assert found == images


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
