"""The experiment file's JSON Schema, exported from the schema models (``python -m elliot.config schema``).

Draft-07: the dialect VS Code's YAML extension (yaml-language-server) supports best.  pydantic writes draft
2020-12; the differences that matter are rewritten here: ``$defs`` -> ``definitions``, and a ``$ref`` with
sibling keywords (ignored next to ``$ref`` before 2019-09) wrapped in ``allOf``.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from elliot.config.schema import ExperimentFile

DRAFT = "http://json-schema.org/draft-07/schema#"
#: the committed copy, at the repository root (tests check it equals ``schema_text()``)
FILE_NAME = "experiment.schema.json"


class _Draft07(GenerateJsonSchema):
    def field_title_should_be_set(self, schema) -> bool:
        return False  # "Train Path" above train_path says nothing; descriptions do


def _draft07(node: Any) -> Any:
    if isinstance(node, list):
        return [_draft07(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _draft07(v) for k, v in node.items()}
    if "$ref" in node and len(node) > 1:
        node = {"allOf": [{"$ref": node.pop("$ref")}], **node}
    return node


def experiment_json_schema() -> dict:
    schema = ExperimentFile.model_json_schema(ref_template="#/definitions/{model}", schema_generator=_Draft07)
    definitions = schema.pop("$defs", {})
    schema = _draft07(schema)
    return {"$schema": DRAFT, "title": "Elliot experiment file (elliot-mm)",
            **{k: v for k, v in schema.items() if k != "title"},
            "definitions": _draft07(definitions)}


def schema_text() -> str:
    """What ``python -m elliot.config schema`` prints (and ``experiment.schema.json`` holds)."""
    return json.dumps(experiment_json_schema(), indent=2) + "\n"
