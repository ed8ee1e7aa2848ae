"""docs/configuration.md is rendered from `Settings`: it must be current, and every field must say what it does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.settings import Settings, _env_name, configuration_reference

REFERENCE = Path(__file__).parents[1] / "docs" / "configuration.md"
FIELDS = dataclasses.fields(Settings)


def test_the_configuration_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == configuration_reference(), (
        "docs/configuration.md is out of date with service/settings.py: run `make docs`"
    )


@pytest.mark.parametrize("spec", FIELDS, ids=[spec.name for spec in FIELDS])
def test_every_setting_has_a_one_line_description(spec: dataclasses.Field[object]) -> None:
    doc = spec.metadata.get("doc")
    assert isinstance(doc, str), f"Settings.{spec.name} has no description: use _setting(default, 'what it does')"
    assert doc.strip(), f"Settings.{spec.name} has an empty description"
    assert "\n" not in doc, f"the description of Settings.{spec.name} must be one line"


def test_every_variable_has_a_row() -> None:
    rows = [line for line in configuration_reference().splitlines() if line.startswith("| `JOBLENS_")]
    assert [row.split("`")[1] for row in rows] == [_env_name(spec.name) for spec in FIELDS]
