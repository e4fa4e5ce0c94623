"""A loaded document checked against the schema models: pydantic's errors as the project's one-line messages.

``document_problems(doc)`` returns every problem, each one line naming the key path
(``experiment.evaluation``, ``experiment.data_config.side_information[0]``); the structural ones (an unknown
key, with "did you mean", or a key refused with its reason) first.  The loader raises a structural problem at
once, lets its own checks (which say more about a wrong value) speak next, and raises a remaining problem
last, so a pydantic traceback never reaches the user.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence

from pydantic import ValidationError

from elliot.config.schema import ExperimentFile
from elliot.errors import did_you_mean, unknown_name

STRUCTURAL = ("unknown_key", "key_hint", "extra_forbidden")
_KINDS = {"string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
          "int_parsing": "an integer", "bool_type": "true/false", "bool_parsing": "true/false",
          "float_type": "a number", "float_parsing": "a number", "number_type": "a number", "list_type": "a list",
          "model_type": "a mapping", "dict_type": "a mapping", "model_attributes_type": "a mapping"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


@dataclass(frozen=True)
class Problem:
    message: str
    structural: bool


def where(loc: Sequence[Any], doc: Any, keep_last: bool = False) -> str:
    """pydantic's ``loc`` as the YAML key path; walks ``doc`` to drop the names pydantic gives union members
    (``str``, ``function-after[...]``), which are not keys (``keep_last``: the last part is a missing key)."""
    path, node = "", doc
    for n, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else node  # one value for a list
        elif isinstance(node, dict) and part in node or keep_last and n == len(loc) - 1:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return path or "top level"


def _message(err: dict, doc: Any) -> Problem:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "unknown_key":
        return Problem(unknown_name(ctx["kind"], ctx["key"], ctx["valid"], where=where(err["loc"], doc)), True)
    if kind == "key_hint":
        return Problem(f"{where([*err['loc'], ctx['key']], doc, keep_last=True)}: {ctx['hint']}", True)
    loc = where(err["loc"], doc, keep_last=kind in ("missing", "extra_forbidden"))
    if kind == "extra_forbidden":
        return Problem(f"{loc}: unknown key", True)
    if kind == "missing":
        return Problem(f"{loc} is required", False)
    if kind == "unknown_name":
        return Problem(f"{loc}: {unknown_name(ctx['what'], ctx['value'], ctx['valid'])}", False)
    if kind == "literal_error":
        return Problem(f"{loc}: {value!r}{did_you_mean(str(value), _expected(ctx))}; valid: "
                       f"{', '.join(_expected(ctx))}", False)
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return Problem(f"{loc} must be a mapping, got {type(value).__name__}", False)
    if kind in _KINDS:
        return Problem(f"{loc}: {value!r} is not {_KINDS[kind]}", False)
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        return Problem(f"{loc}: {value!r} must be {sign} {ctx.get(key)}", False)
    reason = str(err.get("msg", "")).replace("Value error, ", "")
    return Problem(f"{loc}: {value!r} {reason}", False)


def _expected(ctx: dict) -> List[str]:
    return [part.strip(" '") for part in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]


def _merged(problems: List[Problem], errors: List[dict], doc: Any) -> List[Problem]:
    """The type errors of one value against every member of a union as one line: 'is not a or b'."""
    out: List[Problem] = []
    kinds: dict = {}
    for problem, err in zip(problems, errors):
        if err["type"] in _KINDS and not problem.structural:
            key = where(err["loc"], doc)
            if key in kinds:
                first, names = kinds[key]
                names.append(_KINDS[err["type"]])
                out[first] = Problem(f"{key}: {err.get('input')!r} is not {' or '.join(dict.fromkeys(names))}",
                                     False)
                continue
            kinds[key] = (len(out), [_KINDS[err["type"]]])
        out.append(problem)
    return out


def document_problems(doc: Any) -> List[Problem]:
    """Every problem of ``doc`` (a loaded YAML document, Elliot's spellings already rewritten), structural
    ones first; empty when the document fits the schema."""
    try:
        ExperimentFile.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = _merged([_message(e, doc) for e in errors], errors, doc)
        return [p for p in problems if p.structural] + [p for p in problems if not p.structural]
    return []
