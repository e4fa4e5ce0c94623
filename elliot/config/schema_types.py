"""What the experiment-file models (:mod:`elliot.config.schema`) are made of, on pydantic v2.

* :class:`Block`: a mapping with a fixed set of keys; an unknown key is a ``unknown_key`` error carrying the
  valid keys (the loader turns it into one line with "did you mean"), a refused key with its reason a
  ``key_hint`` error.  A block whose keys depend on one of its values (a loader, a strategy) narrows them
  in :meth:`Block.known_keys`.
* Elliot's lenient scalars: YAML 1.1 reads ``1e-4`` as a string (:func:`number`), Elliot reads meta flags
  through a SimpleNamespace, so ``"true"`` slips through (:data:`Flag`).
* one value or a list of them (:func:`one_or_list`), case-insensitive names (:func:`name_of`).

Each type carries the JSON Schema an editor is given for it (``python -m elliot.config schema``).
"""
from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      WithJsonSchema, model_validator)
from pydantic_core import PydanticCustomError


class Block(BaseModel):
    """One mapping of the experiment file, strict: only its fields are keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    #: key -> why it is refused here (said instead of "unknown key")
    key_hints: ClassVar[Dict[str, str]] = {}

    @classmethod
    def known_keys(cls, data: dict) -> Tuple[str, List[str]]:
        """(what a key is called in the message, the valid keys) of this mapping given its content."""
        return "key", list(cls.model_fields)

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data):
        if not isinstance(data, dict):
            return data  # the field's type error: "must be a mapping"
        kind, valid = cls.known_keys(data)
        for key in data:
            if key in cls.key_hints:
                raise PydanticCustomError("key_hint", "{hint}", {"key": str(key), "hint": cls.key_hints[key]})
            if key not in valid:
                raise PydanticCustomError("unknown_key", "unknown {kind} '{key}'",
                                          {"kind": kind, "key": str(key), "valid": list(valid)})
        return data


def ci_pattern(names: Sequence[str], suffix: str = "") -> str:
    """A regular expression (ECMA 262, no flags) matching any of ``names`` in any letter case, then ``suffix``."""
    def one(name: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)
    return "^(" + "|".join(one(n) for n in names) + ")" + suffix + "$"


class Alternatives:
    """Annotated marker: the JSON Schema of the field also accepts ``schemas`` (what a before-validator
    rewrites into the field's type); ``items=True`` also accepts one item of an array type."""

    def __init__(self, *schemas: dict, items: bool = False):
        self.schemas, self.items = list(schemas), items

    def __get_pydantic_json_schema__(self, core_schema, handler):
        inner = handler(core_schema)
        options = inner["anyOf"] if set(inner) == {"anyOf"} else [inner]
        extra = [o["items"] for o in options if self.items and o.get("type") == "array"]
        return {"anyOf": [*self.schemas, *extra, *options]}


def _listify(value):
    return value if isinstance(value, list) else [value]


def one_or_list(item: Any):
    """A list of ``item``; one item alone stands for a list of one (Elliot's ``cutoffs: 10``)."""
    return Annotated[List[item], BeforeValidator(_listify), Alternatives(items=True)]


def _flag(value):
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


_FLAG_STRING = {"type": "string", "pattern": ci_pattern(["true", "false"])}
#: true/false, or the strings "true"/"false" in any case (Elliot reads meta through a SimpleNamespace)
Flag = Annotated[StrictBool, BeforeValidator(_flag),
                 WithJsonSchema({"anyOf": [{"type": "boolean"}, _FLAG_STRING]})]
_NUMBER_STRING = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_INTEGER_STRING = r"^\s*\d+\s*$"


def _bounds(ge=None, gt=None, le=None, lt=None) -> Tuple[dict, dict]:
    """(pydantic's constraints, the JSON Schema's keywords) of the bounds that are given."""
    given = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    names = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    return given, {names[k]: v for k, v in given.items()}


def number(ge=None, gt=None, le=None, lt=None, strings: bool = False):
    """A real number (never true/false) within the bounds; ``strings``: also YAML 1.1's ``"1e-4"``."""
    def parse(value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
                isinstance(value, str) and not strings):
            raise PydanticCustomError("number_type", "is not a number")
        try:
            return float(value)
        except ValueError:
            raise PydanticCustomError("number_type", "is not a number") from None
    constraints, keywords = _bounds(ge, gt, le, lt)
    schema = {"type": "number", **keywords}
    if strings:
        schema = {"anyOf": [schema, {"type": "string", "pattern": _NUMBER_STRING}]}
    return Annotated[float, BeforeValidator(parse), Field(**constraints), WithJsonSchema(schema)]


def integer(ge=None, le=None, strings: bool = False):
    """An integer (never true/false) within the bounds; ``strings``: also a string of digits."""
    def parse(value):
        if strings and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value
    constraints, keywords = _bounds(ge=ge, le=le)
    schema = {"type": "integer", **keywords}
    if strings:
        schema = {"anyOf": [schema, {"type": "string", "pattern": _INTEGER_STRING}]}
    return Annotated[StrictInt, BeforeValidator(parse), Field(**constraints), WithJsonSchema(schema)]


PositiveInt = integer(ge=1)


def name_of(names: Sequence[str], what: str, also: Sequence[str] = ()):
    """One of ``names`` (or of the accepted spellings ``also``), in any letter case.  The editor completes
    ``names``."""
    lowered = {n.lower() for n in [*names, *also]}

    def check(value: str) -> str:
        if value.lower() not in lowered:
            raise PydanticCustomError("unknown_name", "unknown {what} '{value}'",
                                      {"what": what, "value": value, "valid": sorted(names)})
        return value
    schema = {"anyOf": [{"enum": sorted(names)}, {"type": "string", "pattern": ci_pattern(sorted(lowered))}]}
    return Annotated[str, Field(strict=True), AfterValidator(check), WithJsonSchema(schema)]


def open_mapping(description: str):
    """A mapping this package validates elsewhere (its own keys and messages)."""
    return Annotated[Optional[Dict[str, Any]], Field(default=None, description=description)]
