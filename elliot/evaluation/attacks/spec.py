"""The ``evaluation.attacks`` list: validation (one-line errors, did-you-mean) and normalisation.

One entry per attack family; list-valued budgets are an ε sweep::

    evaluation:
      attacks:
        - {method: fgsm_l2, modality: each, eps_ratio: [0.01, 0.05, 0.1]}   # per modality, 3 budgets
        - {method: fgsm, modality: visual, eps: 0.5}                        # L∞ sign step, absolute ε
        - {method: msap, projection: l2, modality: all, eps_ratio: 0.05, nb_iter: 10}
        - {method: certified_radius, sample_size: 256}                      # certified margins (CRMT)

Keys (see ``docs/robustness.md``):

* ``method``: ``fgsm_l2`` | ``fgsm`` (L∞ sign step) | ``msap`` (alias ``pgd``) | ``certified_radius``;
* ``modality``: a modality name, a list of names (one attack each), ``all`` (every modality of the
  model perturbed jointly, each within its own budget) or ``each`` (one attack per modality);
* budget: ``eps_ratio`` (relative to each item's feature norm, default 0.05) or ``eps`` (absolute);
  a list of values is a sweep.  L2 attacks: ||δ_i||_2 <= ε_i with ε_i = eps_ratio · ||x_i||_2.  L∞
  attacks: ||δ_i||_∞ <= ε_i with ε_i = eps_ratio · ||x_i||_2 / sqrt(d) (the per-entry RMS scale, so
  that the corner of the L∞ ball has the same L2 norm as the L2 attack with the same ratio);
* ``msap`` only: ``projection`` (``linf`` default, ``l2``), ``step`` (``sign`` default with linf,
  ``l2`` = L2-normalised gradient steps, the default with l2; ``projection: linf, step: l2`` is
  Elliot's MSAP exactly), ``nb_iter`` (10), ``eps_iter`` (2.5·ε/nb_iter, in the budget's units);
* ``sample_size``: training triples whose BPR loss is attacked (``all`` = one triple per training
  interaction, default; an integer samples that many), ``seed`` (default: the trial's seed),
  ``batch_size`` (triples per forward pass, 8192), ``split`` (``test`` default, or ``validation``),
  ``name`` (a custom label).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from elliot.errors import ConfigError, did_you_mean, unknown_name

#: what ``start_experiments.py --eval_attack`` adds to the evaluation section
DEFAULT_ATTACK: Dict[str, Any] = {"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.05}

METHODS = ("fgsm_l2", "fgsm", "msap", "certified_radius")
ALIASES = {"pgd": "msap", "fgsm_linf": "fgsm", "certify": "certified_radius"}
COMMON_KEYS = {"method", "modality", "name", "seed", "sample_size", "batch_size", "split"}
BUDGET_KEYS = {"eps", "eps_ratio"}
METHOD_KEYS = {
    "fgsm_l2": COMMON_KEYS | BUDGET_KEYS,
    "fgsm": COMMON_KEYS | BUDGET_KEYS,
    "msap": COMMON_KEYS | BUDGET_KEYS | {"projection", "step", "nb_iter", "eps_iter"},
    "certified_radius": {"method", "name", "seed", "sample_size", "split", "eps_ratio"},
}
PROJECTIONS = ("linf", "l2")
STEPS = ("sign", "l2")
SPLITS = ("test", "validation")


def _err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _numbers(value, where: str, key: str, positive: bool = True) -> List[float]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise _err(where, f"{key} must be a number or a non-empty list of numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                v = float(v)  # YAML reads 1e-2 as a string
            except (TypeError, ValueError):
                raise _err(where, f"{key}: {v!r} is not a number") from None
        if positive and not float(v) > 0:
            raise _err(where, f"{key}: {v!r} must be > 0")
        out.append(float(v))
    return out


def _int(value, where: str, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(where, f"{key}: {value!r} must be an integer >= {minimum}")
    return int(value)


def _choice(value, valid: Sequence[str], where: str, key: str) -> str:
    if value not in valid:
        raise _err(where, f"{key}: '{value}' is not one of {', '.join(valid)}{did_you_mean(str(value), valid)}")
    return value


def normalise_attack(raw, where: str) -> Dict[str, Any]:
    """One validated attack entry with every default filled in (budgets as lists)."""
    if isinstance(raw, str):  # shorthand: "- fgsm_l2"
        raw = {"method": raw}
    if not isinstance(raw, dict):
        raise _err(where, f"an attack must be a mapping with at least 'method', got {raw!r}")
    if "method" not in raw:
        raise _err(where, f"an attack needs 'method' ({', '.join(METHODS)})")
    method = ALIASES.get(str(raw["method"]).lower(), str(raw["method"]).lower())
    if method not in METHODS:
        raise ConfigError(unknown_name("attack method", raw["method"], list(METHODS) + list(ALIASES),
                                       where=f"{where}.method"))
    valid = METHOD_KEYS[method]
    for key in raw:
        if key not in valid:
            raise ConfigError(unknown_name(f"key for attack '{method}'", key, valid, where=where))
    out: Dict[str, Any] = {"method": method}
    if raw.get("name") is not None:
        out["name"] = str(raw["name"])
    if raw.get("seed") is not None:
        out["seed"] = _int(raw["seed"], where, "seed", minimum=0)
    out["split"] = _choice(raw.get("split", "test"), SPLITS, where, "split")
    if method == "certified_radius":
        out["sample_size"] = _int(raw.get("sample_size", 256), where, "sample_size")
        out["eps_ratio"] = _numbers(raw.get("eps_ratio", [0.01, 0.05, 0.1]), where, "eps_ratio")
        out["modality"] = "all"
        return out

    modality = raw.get("modality", "all")
    if isinstance(modality, (list, tuple)):
        if not modality or not all(isinstance(m, str) and m for m in modality):
            raise _err(where, f"modality: {modality!r} must be a name, a list of names, 'all' or 'each'")
        modality = list(dict.fromkeys(modality))
    elif not isinstance(modality, str) or not modality:
        raise _err(where, f"modality: {modality!r} must be a name, a list of names, 'all' or 'each'")
    out["modality"] = modality

    if "eps" in raw and "eps_ratio" in raw:
        raise _err(where, "give either eps (absolute) or eps_ratio (relative to each item's feature norm), not both")
    if "eps" in raw:
        out["budget_kind"], out["budgets"] = "abs", _numbers(raw["eps"], where, "eps")
    else:
        out["budget_kind"], out["budgets"] = "ratio", _numbers(raw.get("eps_ratio", 0.05), where, "eps_ratio")

    size = raw.get("sample_size", "all")
    if isinstance(size, str) and size.lower() == "all":
        out["sample_size"] = None
    else:
        out["sample_size"] = _int(size, where, "sample_size")
    out["batch_size"] = _int(raw.get("batch_size", 8192), where, "batch_size")

    if method == "msap":
        out["projection"] = _choice(str(raw.get("projection", "linf")).lower(), PROJECTIONS, where, "projection")
        default_step = "sign" if out["projection"] == "linf" else "l2"
        out["step"] = _choice(str(raw.get("step", default_step)).lower(), STEPS, where, "step")
        out["nb_iter"] = _int(raw.get("nb_iter", 10), where, "nb_iter")
        out["eps_iter"] = None if raw.get("eps_iter") is None else _numbers(raw["eps_iter"], where, "eps_iter")[0]
    return out


def validate_attacks(attacks, where: str = "experiment.evaluation.attacks") -> List[Dict[str, Any]]:
    """Validate an ``evaluation.attacks`` value (a list, one mapping, or ``None``); return normalised entries."""
    if attacks is None or attacks is False:
        return []
    if attacks is True:  # `attacks: true` = the default attack
        attacks = [dict(DEFAULT_ATTACK)]
    if isinstance(attacks, (dict, str)):
        attacks = [attacks]
    if not isinstance(attacks, (list, tuple)):
        raise _err(where, f"must be a list of attacks (mappings with 'method'), got {type(attacks).__name__}")
    return [normalise_attack(a, f"{where}[{n}]") for n, a in enumerate(attacks)]


def check_attackable(model_cls, attacks, where: str, modalities: Optional[Sequence[str]] = None,
                     strict: bool = True) -> bool:
    """Can ``model_cls`` be attacked by ``attacks``?  Called once per model at config time.

    A model that reads no item features (not a :class:`MultimodalRecommender`) cannot be attacked: with
    ``strict`` this is a :class:`ConfigError` naming the model; otherwise returns False (the caller
    records a skip, e.g. for ``--eval_attack`` on an experiment mixing CF and multimodal models).
    ``modalities`` (the dataset's side_information modalities, when known) checks modality names.
    """
    from elliot.recommender.multimodal import MultimodalRecommender

    specs = validate_attacks(attacks)
    if not specs:
        return True
    if not (isinstance(model_cls, type) and issubclass(model_cls, MultimodalRecommender)):
        if strict:
            name = getattr(model_cls, "name", None) or getattr(model_cls, "__name__", str(model_cls))
            raise _err(where, f"evaluation.attacks perturb item features, but model {name} reads none "
                              "(not a multimodal model); drop the attacks or evaluate only multimodal models")
        return False
    if modalities is not None:
        known = list(modalities)
        for n, spec in enumerate(specs):
            names = spec["modality"] if isinstance(spec["modality"], list) else [spec["modality"]]
            for m in names:
                if m not in ("all", "each") and m not in known:
                    raise ConfigError(unknown_name("modality", m, known + ["all", "each"],
                                                   where=f"experiment.evaluation.attacks[{n}].modality"))
    return True


def attack_label(spec: Dict[str, Any]) -> str:
    """``fgsm_l2``, ``fgsm``, ``msap_l2``, ``msap_linf`` or ``msap_linf_l2step`` (Elliot's MSAP)."""
    if spec["method"] != "msap":
        return spec["method"]
    label = f"msap_{spec['projection']}"
    if spec["projection"] == "linf" and spec["step"] == "l2":
        label += "_l2step"
    if spec["projection"] == "l2" and spec["step"] == "sign":
        label += "_signstep"
    return label


def budget_label(kind: str, value: float) -> str:
    return f"eps{value:g}" if kind == "ratio" else f"abs{value:g}"
