"""Typed model hyperparameters: declared (name, type, default), coerced from YAML, expanded to grids."""
from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from elliot.errors import ConfigError, unknown_name

SPACE_KINDS = ("choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal",
               "qlognormal", "randint")


@dataclass(frozen=True)
class Param:
    name: str
    type: Any  # int, float, bool, str, or "list[str]" / "list[int]" / "list[float]"
    default: Any
    help: str = ""
    choices: Optional[tuple] = None

    @property
    def is_list(self) -> bool:
        return isinstance(self.type, str) and self.type.startswith("list[")

    @property
    def item_type(self):
        if self.is_list:
            return {"str": str, "int": int, "float": float, "bool": bool}[self.type[5:-1]]
        return self.type


@dataclass(frozen=True)
class SearchSpace:
    kind: str
    args: tuple


@dataclass
class ParamSpace:
    fixed: Dict[str, Any] = field(default_factory=dict)
    axes: Dict[str, List[Any]] = field(default_factory=dict)
    spaces: Dict[str, SearchSpace] = field(default_factory=dict)
    order: List[str] = field(default_factory=list)

    def is_single(self) -> bool:
        return not self.axes and not self.spaces

    def has_spaces(self) -> bool:
        return bool(self.spaces)


def parse_tuple_string(value: str) -> list:
    """Elliot's ``"('visual','textual')"`` -> ['visual', 'textual'], safely (literal_eval, never eval)."""
    text = value.strip()
    if text[:1] in "([":
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"cannot parse {value!r} as a tuple/list literal") from exc
        return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
    return [part.strip().strip("'\"") for part in text.split(",") if part.strip()]


def _scalar(value, typ, where: str):
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            if value in (0, 1):
                return bool(value)
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, str) else value
            if float(number) != int(float(number)):
                raise ValueError
            return int(float(number))
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if isinstance(value, (list, dict)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{where}: {value!r} is not a valid {typ.__name__}")


def _typed(param: Param, value, where: str):
    if param.is_list:
        if isinstance(value, str):
            try:
                value = parse_tuple_string(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(value, (list, tuple)):
            value = [value]
        out = [_scalar(v, param.item_type, where) for v in value]
        if param.choices:
            bad = [v for v in out if v not in param.choices]
            if bad:
                raise ConfigError(f"{where}: {bad} not allowed; choose from {list(param.choices)}")
        return out
    out = _scalar(value, param.item_type, where)
    if param.choices and out not in param.choices:
        raise ConfigError(f"{where}: {out!r} is not one of {list(param.choices)}")
    return out


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _space(p: Param, value, loc: str):
    """``[kind, args...]`` -> SearchSpace; None when ``value`` is a plain list (a grid axis or a list value).

    ``choice`` is a space for every type; the numeric kinds only for numeric parameters (a ``str``
    parameter's ``[uniform, normal]`` is a grid of two strings).  A numeric parameter given a list that
    starts with an unknown word is a misspelt space kind: say so, with the closest kind."""
    if not (isinstance(value, list) and value and isinstance(value[0], str)):
        return None
    head = value[0]
    if head == "choice":
        return SearchSpace(head, tuple(value[1:]))
    numeric = not p.is_list and p.item_type in (int, float)
    if head in SPACE_KINDS:
        return SearchSpace(head, tuple(value[1:])) if numeric or p.item_type is bool else None
    if numeric and not _is_number(head):
        raise ConfigError(f"{loc}: {unknown_name('hyperopt space kind', head, SPACE_KINDS)}")
    return None


def type_value(param: Param, value, where: str):
    """Type one YAML value (not a grid, not a space) by its declared parameter."""
    return _typed(param, value, where)


def coerce_params(declared: Sequence[Param], raw: dict, where: str) -> ParamSpace:
    """Type every raw YAML value by its declared parameter; lists become grid axes (see module doc)."""
    by_name = {p.name: p for p in declared}
    space = ParamSpace()
    for p in declared:
        space.fixed[p.name] = list(p.default) if isinstance(p.default, (list, tuple)) else p.default
        space.order.append(p.name)
    for name, value in (raw or {}).items():
        if name not in by_name:
            raise ConfigError(unknown_name("parameter", name, by_name, where=where))
        p, loc = by_name[name], f"{where}.{name}"
        if isinstance(value, dict):
            if set(value) != {"grid"} or not isinstance(value["grid"], list):
                raise ConfigError(f"{loc}: a mapping must be {{grid: [values...]}}")
            space.axes[name] = [_typed(p, v, loc) for v in value["grid"]]
            continue
        sp = _space(p, value, loc)
        if sp is not None:
            space.spaces[name] = sp
            continue
        if isinstance(value, list) and (not p.is_list or (value and all(isinstance(v, list) for v in value))):
            if not value:
                raise ConfigError(f"{loc}: an empty list is not a grid")
            space.axes[name] = [_typed(p, v, loc) for v in value]
            if len(space.axes[name]) == 1:
                space.fixed[name] = space.axes.pop(name)[0]
            continue
        space.fixed[name] = _typed(p, value, loc)
    return space


def expand_grid(space: ParamSpace) -> List[Dict[str, Any]]:
    """Every combination of the grid axes (declared parameter order), each a full typed param dict."""
    if space.spaces:
        raise ConfigError(f"hyperopt spaces for {sorted(space.spaces)} need meta.hyper_opt_alg tpe|rand|anneal|atpe")
    names = [n for n in space.order if n in space.axes]
    combos = []
    for values in itertools.product(*(space.axes[n] for n in names)):
        params = dict(space.fixed)
        params.update(zip(names, values))
        combos.append({n: params[n] for n in space.order})
    return combos
