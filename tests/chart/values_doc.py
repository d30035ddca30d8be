"""Generate the values table of chart/README.md from values.yaml comments and values.schema.json.

Run `python tests/chart/values_doc.py` after changing values.yaml; the chart tests fail while
the README's table differs from what this prints.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "chart"
README = CHART / "README.md"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9]*):")


def comments_by_path(text: str) -> dict[str, list[str]]:
    """Map each dotted key path in values.yaml to the comment lines right above it."""
    found: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.removeprefix("#").strip())
            continue
        match = KEY_LINE.match(line)
        if match:
            indent = len(match["indent"])
            stack = [(i, k) for i, k in stack if i < indent]
            stack.append((indent, match["key"]))
            found[".".join(k for _, k in stack)] = block
        block = []
    return found


def leaves(schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the values the table documents: the schema's properties, down to the
    ones that are free-form (a Kubernetes pass-through object) or scalar."""
    paths = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "properties" in sub and sub.get("additionalProperties") is False:
            paths += leaves(sub, f"{path}.")
        else:
            paths.append(path)
    return paths


def lookup(values: dict, path: str) -> object:
    """The default value at a dotted path."""
    for key in path.split("."):
        values = values[key]
    return values


def table() -> str:
    """The Markdown table of every value: key, default and description."""
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    comments = comments_by_path(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    rows = ["| key | default | description |", "| --- | --- | --- |"]
    for path in leaves(schema):
        leaf = path.rsplit(".", 1)[-1]
        comment = comments.get(path, [])
        if not comment or not comment[0].startswith(f"{leaf} -- "):
            raise SystemExit(f"values.yaml: {path} needs a comment above it: '# {leaf} -- ...'")
        description = " ".join(comment).removeprefix(f"{leaf} -- ").replace("|", "\\|")
        default = json.dumps(lookup(values, path), separators=(", ", ": "))
        rows.append(f"| `{path}` | `{default}` | {description} |")
    return "\n".join(rows) + "\n"


def rendered_readme() -> str:
    """chart/README.md with its values table regenerated."""
    readme = README.read_text()
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}{END}{tail}"


if __name__ == "__main__":
    README.write_text(rendered_readme())
    sys.stdout.write(f"wrote {README}\n")
