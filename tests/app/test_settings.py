"""The settings' one declaration is what docs/server.md's configuration table says."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from flask_example.settings import Settings, markdown_table, variables


def test_configuration_table_is_the_declaration(repo_root: Path) -> None:
    page = (repo_root / "docs" / "server.md").read_text(encoding="utf-8")
    stale = "docs/server.md's configuration table is stale: run `make generate`"
    assert markdown_table() in page, stale


def test_every_field_declares_its_variable_parser_and_meaning() -> None:
    for field in fields(Settings):
        assert field.metadata["env"].isupper(), field.name
        assert callable(field.metadata["parse"]), field.name
        assert field.metadata["meaning"], field.name
    assert len(set(variables())) == len(fields(Settings))
