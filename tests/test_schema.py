"""The published JSON Schemas match the models and accept the shipped files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from monitor.schema import config_schema, rules_schema
from tests.conftest import ROOT

SCHEMA_DIR = ROOT / "config" / "schema"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "generate"), [("config", config_schema), ("rules", rules_schema)])
def test_committed_schema_is_current(name: str, generate: Any) -> None:
    committed = load(SCHEMA_DIR / f"{name}.schema.json")
    assert committed == generate(), f"regenerate: feed-monitor schema {name} > {name}.schema.json"


def test_shipped_config_and_rules_validate() -> None:
    jsonschema.validate(
        yaml.safe_load((ROOT / "config" / "monitor.yaml").read_text()), config_schema()
    )
    for pack in (ROOT / "config" / "rules").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(pack.read_text()), rules_schema())


def test_schema_rejects_what_the_loader_rejects() -> None:
    bad = {"rules": [{"id": "r", "title": "R", "thresold": 1, "match": "a"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, rules_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"rules": [{"id": "r", "title": "R", "match": {"all": []}}]}, rules_schema()
        )
