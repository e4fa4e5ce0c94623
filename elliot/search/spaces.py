"""Hyperopt search spaces written as in Elliot's YAML, checked against the parameter's declared type.

``[uniform, low, high]``, ``[quniform, low, high, q]``, ``[loguniform, low, high]`` (``exp`` of a uniform
draw in ``[low, high]``, as hyperopt), ``[qloguniform, low, high, q]``, ``[normal, mu, sigma]``,
``[qnormal, mu, sigma, q]``, ``[lognormal, mu, sigma]``, ``[qlognormal, mu, sigma, q]``,
``[randint, upper]`` / ``[randint, low, upper]`` and ``[choice, [a, b, ...]]`` (or ``[choice, a, b]``).
A grid axis (a list of values) becomes ``choice`` when the model is searched with hyperopt.

Every space is validated when the config is read (before any data): argument count and types, bounds,
and whether the kind can produce the parameter's type (an ``int`` needs ``randint``, ``choice`` or a
``q*`` kind with an integer ``q``; ``bool``/``str``/list parameters need ``choice``).  A sampled point
is typed by the same rules as a YAML value, so a trial's parameters are always typed.
"""
from __future__ import annotations

import math

from typing import Any, Dict, List, Sequence

from elliot.config.params import Param, SearchSpace, type_value
from elliot.errors import ConfigError

# kind -> names of its numeric arguments (choice and randint are special-cased)
SIGNATURES = {
    "uniform": ("low", "high"), "quniform": ("low", "high", "q"),
    "loguniform": ("low", "high"), "qloguniform": ("low", "high", "q"),
    "normal": ("mu", "sigma"), "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"), "qlognormal": ("mu", "sigma", "q"),
}
INT_KINDS = ("randint", "quniform", "qloguniform", "qnormal", "qlognormal")


def _number(value, loc: str, what: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{loc}: {what} {value!r} is not a number")
    try:
        return float(value)  # YAML 1.1 reads 1e-3 as a string: accept numeric strings
    except (TypeError, ValueError):
        raise ConfigError(f"{loc}: {what} {value!r} is not a number") from None


def choice_options(space: SearchSpace) -> list:
    """``[choice, [a, b]]`` and ``[choice, a, b]`` both mean the options a, b."""
    args = list(space.args)
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return args


def validate(param: Param, space: SearchSpace, loc: str) -> Dict[str, Any]:
    """Check one space against the parameter; return its normalised form ``{kind, args|options}``."""
    kind = space.kind
    if kind == "choice":
        options = choice_options(space)
        if not options:
            raise ConfigError(f"{loc}: [choice, [values...]] needs at least one value")
        return {"kind": "choice", "options": [type_value(param, o, loc) for o in options]}
    if param.item_type in (bool, str) or (param.is_list and param.item_type not in (int, float)):
        shown = param.type if isinstance(param.type, str) else param.type.__name__
        raise ConfigError(f"{loc}: a {shown} parameter can only be searched with [choice, [values...]], "
                          f"not {kind}")
    if kind == "randint":
        if len(space.args) not in (1, 2):
            raise ConfigError(f"{loc}: randint takes [randint, upper] or [randint, low, upper], got {len(space.args)} "
                              "arguments")
        bounds = [_number(a, loc, "randint bound") for a in space.args]
        if any(b != int(b) for b in bounds):
            raise ConfigError(f"{loc}: randint bounds must be integers, got {list(space.args)}")
        low, high = (0, int(bounds[0])) if len(bounds) == 1 else (int(bounds[0]), int(bounds[1]))
        if high <= low:
            raise ConfigError(f"{loc}: randint needs low < upper, got {list(space.args)}")
        if not param.in_domain(low) or not param.in_domain(high - 1):
            raise ConfigError(f"{loc}: [randint, {', '.join(map(str, space.args))}] draws {low}..{high - 1}, outside "
                              f"the domain of {param.name} ({param.domain()})")
        return {"kind": "randint", "args": [low, high]}
    names = SIGNATURES[kind]
    if len(space.args) != len(names):
        raise ConfigError(f"{loc}: {kind} takes [{kind}, {', '.join(names)}], got {len(space.args)} "
                          f"argument{'s' if len(space.args) != 1 else ''}")
    args = [_number(a, loc, f"{kind} {n}") for a, n in zip(space.args, names)]
    values = dict(zip(names, args))
    if "low" in values and not values["low"] < values["high"]:
        raise ConfigError(f"{loc}: {kind} needs low < high, got {list(space.args)}")
    if "sigma" in values and values["sigma"] <= 0:
        raise ConfigError(f"{loc}: {kind} needs sigma > 0, got {values['sigma']}")
    if "q" in values and values["q"] <= 0:
        raise ConfigError(f"{loc}: {kind} needs q > 0, got {values['q']}")
    if kind in ("uniform", "quniform", "loguniform", "qloguniform"):
        low, high = (values["low"], values["high"]) if kind in ("uniform", "quniform") else (
            (math.exp(values["low"]), math.exp(values["high"])))
        if "q" in values:  # hyperopt rounds: round(x / q) * q can fall below low
            low, high = round(low / values["q"]) * values["q"], round(high / values["q"]) * values["q"]
        elif kind == "uniform" and not param.low_inclusive:
            low = low + 1e-12  # uniform never draws its bound exactly
        if not param.in_domain(low) or not param.in_domain(high):
            raise ConfigError(f"{loc}: [{kind}, {', '.join(map(str, space.args))}] reaches outside the domain of "
                              f"{param.name} ({param.domain()})")
    if kind in ("normal", "qnormal") and (param.low is not None or param.high is not None):
        raise ConfigError(f"{loc}: [{kind}, {', '.join(map(str, space.args))}] is unbounded and can draw values outside "
                          f"the domain of {param.name} ({param.domain()}); use uniform, loguniform or lognormal")
    if kind in ("lognormal", "qlognormal") and (param.high is not None or (param.low or 0) > 0):
        raise ConfigError(f"{loc}: [{kind}, ...] is unbounded above and can leave the domain of {param.name} "
                          f"({param.domain()}); use uniform or loguniform")
    if param.item_type is int and (kind not in INT_KINDS or values["q"] != int(values["q"])):
        raise ConfigError(f"{loc}: the int parameter '{param.name}' needs randint, choice or a q-kind with an "
                          f"integer q (e.g. [quniform, 1, 5, 1]), not [{kind}, {', '.join(map(str, space.args))}]")
    return {"kind": kind, "args": args}


def to_hyperopt(label: str, normalised: Dict[str, Any]):
    """The hyperopt expression of one normalised space (see :func:`validate`)."""
    from hyperopt import hp

    kind = normalised["kind"]
    if kind == "choice":
        return hp.choice(label, normalised["options"])
    if kind == "randint":
        low, high = normalised["args"]
        return hp.randint(label, low, high) if low else hp.randint(label, high)
    return getattr(hp, kind)(label, *normalised["args"])


def build_space(declared: Sequence[Param], axes: Dict[str, List[Any]], spaces: Dict[str, SearchSpace],
                where: str) -> Dict[str, Dict[str, Any]]:
    """All searched parameters, normalised: grid axes become ``choice`` over their (typed) values."""
    by_name = {p.name: p for p in declared}
    out: Dict[str, Dict[str, Any]] = {}
    for name in [p.name for p in declared]:
        if name in axes:
            out[name] = {"kind": "choice", "options": list(axes[name])}
        elif name in spaces:
            out[name] = validate(by_name[name], spaces[name], f"{where}.{name}")
    return out


def describe(normalised: Dict[str, Any]) -> list:
    """The YAML-like form of a normalised space, for the resolved config written next to the results."""
    if normalised["kind"] == "choice":
        return ["choice", list(normalised["options"])]
    return [normalised["kind"], *normalised["args"]]
