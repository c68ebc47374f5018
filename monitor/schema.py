"""JSON Schemas for the config and rule files, for editors and CI.

Generated from the same pydantic models that validate the files, plus a
hand-written schema for the match tree (validated in rules.py by hand so
its errors can be located precisely).
"""

from __future__ import annotations

from typing import Any

from monitor.config import Config
from monitor.rules import RuleFileSpec

SCHEMA_ID = "https://feed-monitor.invalid/schema"

_MATCH_NODE: dict[str, Any] = {
    "description": "A concept name, or a group: all/any/none lists, at_least+of, or near.",
    "oneOf": [
        {"type": "string", "description": "holds when any term of this concept occurs"},
        {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/MatchNode"}},
                "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/MatchNode"}},
                "none": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/MatchNode"}},
                "at_least": {"type": "integer", "minimum": 1},
                "of": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/MatchNode"}},
                "near": {"type": "array", "minItems": 2, "items": {"type": "string"}},
                "within": {
                    "oneOf": [
                        {"enum": ["sentence", "paragraph"]},
                        {"type": "integer", "minimum": 1},
                    ]
                },
            },
            "dependentRequired": {"at_least": ["of"], "of": ["at_least"], "within": ["near"]},
        },
    ],
}


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["properties"].pop("source", None)
    schema["$id"] = f"{SCHEMA_ID}/config.json"
    schema["title"] = "feed-monitor config"
    return schema


def rules_schema() -> dict[str, Any]:
    schema = RuleFileSpec.model_json_schema()
    schema.setdefault("$defs", {})["MatchNode"] = _MATCH_NODE
    schema["$defs"]["RuleSpec"]["properties"]["match"] = {"$ref": "#/$defs/MatchNode"}
    schema["$id"] = f"{SCHEMA_ID}/rules.json"
    schema["title"] = "feed-monitor rule file"
    return schema


SCHEMAS = {"config": config_schema, "rules": rules_schema}
