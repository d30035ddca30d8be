"""values.yaml and values.schema.json agree; chart/README.md's values table comes from them
(hack/generate/chart_values.py; tests/test_generated.py fails while it is stale)."""

import json

import jsonschema
import yaml

from hack.generate import chart_values
from tests.chart.chartlib import CHART


def test_readme_values_section_is_marked_generated() -> None:
    """The generated section starts with the line naming `make generate`."""
    readme = (CHART / "README.md").read_text()
    section = readme.split(chart_values.START, 1)[1]
    assert section.startswith(f"\n{chart_values.MARKER}\n")
    assert "`make generate`" in chart_values.MARKER


def test_schema_and_values_yaml_have_the_same_keys() -> None:
    """Every value has a schema entry (unknown keys rejected), every schema entry a default."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict, sub: dict, path: str) -> None:
        assert sub.get("additionalProperties") is False, (
            f"{path or 'top level'} admits unknown keys"
        )
        assert set(node) == set(sub["properties"]), path
        for key, child in sub["properties"].items():
            if "properties" in child and child.get("additionalProperties") is False:
                walk(node[key], child, f"{path}{key}.")

    walk(values, schema, "")


def test_schema_is_draft_07() -> None:
    """Draft-07: what Helm 3.17's validator supports and Helm 4 still accepts."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
