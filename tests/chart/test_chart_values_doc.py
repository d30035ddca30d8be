"""chart/README.md's values table is what values_doc.py generates from values.yaml."""

import json

import jsonschema
import yaml

from tests.chart import values_doc
from tests.chart.chartlib import CHART


def test_readme_values_table_is_current() -> None:
    assert values_doc.rendered_readme() == values_doc.README.read_text(), (
        "chart/README.md is stale: run `python tests/chart/values_doc.py`"
    )


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
