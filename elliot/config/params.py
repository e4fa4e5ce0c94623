"""Typed model hyperparameters: declared (name, type, default), coerced from YAML, expanded to grids."""
from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from elliot.errors import ConfigError, unknown_name

SPACE_KINDS = ("choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal",
               "qlognormal", "randint")


#: Domains of the hyperparameter names every model shares (a user who types ``epochs: 0`` or ``factors: -3``
#: gets an error naming the key before any data is read).  A Param may declare its own ``low`` / ``high``;
#: these apply when it does not.  (low, high, low inclusive, high inclusive); None = unbounded.
SHARED_DOMAINS: Dict[str, Tuple[Optional[float], Optional[float], bool, bool]] = {
    **{n: (1, None, True, True) for n in (
        "epochs", "batch_size", "factors", "factors_d", "factors_multimod", "n_layers", "n_ui_layers",
        "n_mm_layers", "top_k", "knn_k", "dim_latent", "nb_iter", "pgd_steps", "ws", "num_neg")},
    **{n: (0, None, False, True) for n in ("lr", "temp", "ssl_temp", "eps", "distill_eps", "pgd_step_size")},
    **{n: (0, None, True, True) for n in ("l_w", "l_b", "l_e", "l_adv", "weight_decay", "ssl_alpha", "lambda",
                                           "eps_iter", "num_routing")},
    **{n: (0, 1, True, False) for n in ("drop", "dropout", "dropout_rate", "dl")},
    "l_m": (0, 1, True, True),
    "lr_sched": (0, None, False, True),
    "lr_decay": (0, 1, False, True),
}


@dataclass(frozen=True)
class Param:
    name: str
    type: Any  # int, float, bool, str, or "list[str]" / "list[int]" / "list[float]"
    default: Any
    help: str = ""
    choices: Optional[tuple] = None
    low: Optional[float] = None  # domain; None: SHARED_DOMAINS by name, else unbounded
    high: Optional[float] = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    lengths: Optional[tuple] = None  # allowed lengths of a list-typed value (None: any)
    aliases: tuple = ()  # other names of this parameter in Elliot / its forks / MMRec, accepted in the YAML
    none_means: Any = None  # the value a YAML null / Python None element stands for (None: refused)

    def __post_init__(self):
        if self.low is None and self.high is None and self.name in SHARED_DOMAINS \
                and (self.item_type in (int, float)):
            low, high, lo_inc, hi_inc = SHARED_DOMAINS[self.name]
            object.__setattr__(self, "low", low)
            object.__setattr__(self, "high", high)
            object.__setattr__(self, "low_inclusive", lo_inc)
            object.__setattr__(self, "high_inclusive", hi_inc)

    def domain(self) -> str:
        """Human-readable domain, e.g. ``>= 1`` or ``in [0, 1)``."""
        if self.low is not None and self.high is not None:
            return (f"in {'[' if self.low_inclusive else '('}{self.low:g}, {self.high:g}"
                    f"{']' if self.high_inclusive else ')'}")
        if self.low is not None:
            return f"{'>=' if self.low_inclusive else '>'} {self.low:g}"
        if self.high is not None:
            return f"{'<=' if self.high_inclusive else '<'} {self.high:g}"
        return "any value"

    def in_domain(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        if value != value or value in (float("inf"), float("-inf")):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            return False
        return True

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
    out = _typed_unchecked(param, value, where)
    if param.lengths is not None and isinstance(out, list) and len(out) not in param.lengths:
        raise ConfigError(f"{where}: {value!r} has {len(out)} value(s); {param.name} takes "
                          f"{' or '.join(str(n) for n in param.lengths)} ({param.help})")
    for v in (out if isinstance(out, list) else [out]):
        if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {v!r} is not a finite number")
        if not param.in_domain(v):
            raise ConfigError(f"{where}: {v!r} is out of range; {param.name} must be {param.domain()}")
    return out


def _typed_unchecked(param: Param, value, where: str):
    if param.is_list:
        if isinstance(value, str):
            try:
                value = parse_tuple_string(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(value, (list, tuple)):
            value = [value]
        if param.none_means is not None:
            value = [param.none_means if v is None or v == "None" else v for v in value]
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
    # a numeric space for a list of numbers draws one value, used as a one-element list (Elliot's NGCF
    # writes node_dropout: [loguniform, a, b] for its per-layer tuple)
    numeric = p.item_type in (int, float) and not (p.is_list and value and isinstance(value[0], list))
    if head in SPACE_KINDS:
        return SearchSpace(head, tuple(value[1:])) if numeric or p.item_type is bool else None
    if numeric and not _is_number(head):
        raise ConfigError(f"{loc}: {unknown_name('hyperopt space kind', head, SPACE_KINDS)}")
    return None


def _rejoin_tuple_grid(p: Param, value):
    """YAML splits ``[(32,16),(64,32)]`` at every comma into ``['(32', 16, '32)', ...]``; Elliot re-joins it
    with ``literal_eval`` into a grid of two tuples: so do we (for list-typed parameters only)."""
    if not (p.is_list and isinstance(value, list) and value and isinstance(value[0], str)
            and value[0].lstrip().startswith("(") and not all(isinstance(v, str) and v.strip().startswith("(")
                                                              and v.strip().endswith(")") for v in value)):
        return value
    try:
        joined = ast.literal_eval("[" + ",".join(str(v) for v in value) + "]")
    except (ValueError, SyntaxError):
        return value
    if all(isinstance(v, tuple) for v in joined):
        return [list(v) for v in joined]
    return value


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
    aliases = {a: p.name for p in declared for a in p.aliases}
    renamed: Dict[str, Any] = {}
    for name, value in (raw or {}).items():
        canonical = aliases.get(name, name)
        if canonical in renamed:
            raise ConfigError(f"{where}: '{name}' and '{canonical}' are the same parameter; give one of them")
        renamed[canonical] = value
    for name, value in renamed.items():
        if name not in by_name:
            raise ConfigError(unknown_name("parameter", name, [*by_name, *aliases], where=where))
        p, loc = by_name[name], f"{where}.{name}"
        value = _rejoin_tuple_grid(p, value)
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
