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

Targeted item promotion (:mod:`.promotion`) and missing modalities (:mod:`.missing`)::

        - {method: promotion, targets: 50, attack: fgsm_l2, modality: each, eps_ratio: [0.01, 0.05]}
        - {method: missing_modality, modality: each, mode: [zero, mean, swap], fraction: [1.0, 0.5]}

* ``promotion``: ``targets`` (a count of items sampled from the long tail with the seed, default 50, or
  a list of original item ids), ``attack`` (``fgsm_l2`` default | ``fgsm`` | ``msap``; msap takes the
  msap keys above), ``modality`` and the budget as above (each target item's own budget),
  ``cutoff`` (K of the objective's top-K threshold; default the largest evaluation cutoff),
  ``batch_size`` ((user, item) pairs per forward pass, 262144), ``seed``, ``split``, ``name``;
* ``missing_modality``: ``modality`` (default ``each``), ``mode`` (``zero`` | ``mean`` | ``swap``, a list
  = one run each; default ``zero``), ``fraction`` of the items affected (0 < f <= 1, default 1.0, a list
  = a sweep), ``seed``, ``split``, ``name``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from elliot.errors import ConfigError, did_you_mean, unknown_name

#: what ``start_experiments.py --eval_attack`` adds to the evaluation section
DEFAULT_ATTACK: Dict[str, Any] = {"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.05}

# the key tables live in a torch-free module, so that the config package (and its JSON Schema) can read them
from elliot.config.attack_keys import (ALIASES, BUDGET_KEYS, COMMON_KEYS, METHOD_KEYS, METHODS,  # noqa: E402,F401
                                       MISSING_MODES, canonical_method, MSAP_KEYS, PROJECTIONS, PROMOTION_ATTACKS, SPLITS, STEPS)


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
    method = canonical_method(raw["method"])
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

    if method == "missing_modality":
        return _missing(raw, where, out)
    out["modality"] = _modality(raw.get("modality", "all"), where)
    out["budget_kind"], out["budgets"] = _budgets(raw, where)
    if method == "promotion":
        return _promotion(raw, where, out)

    size = raw.get("sample_size", "all")
    if isinstance(size, str) and size.lower() == "all":
        out["sample_size"] = None
    else:
        out["sample_size"] = _int(size, where, "sample_size")
    out["batch_size"] = _int(raw.get("batch_size", 8192), where, "batch_size")
    if method == "msap":
        out.update(_msap(raw, where))
    return out


def _modality(modality, where: str):
    if isinstance(modality, (list, tuple)):
        if not modality or not all(isinstance(m, str) and m for m in modality):
            raise _err(where, f"modality: {modality!r} must be a name, a list of names, 'all' or 'each'")
        return list(dict.fromkeys(modality))
    if not isinstance(modality, str) or not modality:
        raise _err(where, f"modality: {modality!r} must be a name, a list of names, 'all' or 'each'")
    return modality


def _budgets(raw: dict, where: str):
    if "eps" in raw and "eps_ratio" in raw:
        raise _err(where, "give either eps (absolute) or eps_ratio (relative to each item's feature norm), not both")
    if "eps" in raw:
        return "abs", _numbers(raw["eps"], where, "eps")
    return "ratio", _numbers(raw.get("eps_ratio", 0.05), where, "eps_ratio")


def _msap(raw: dict, where: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    out["projection"] = _choice(str(raw.get("projection", "linf")).lower(), PROJECTIONS, where, "projection")
    default_step = "sign" if out["projection"] == "linf" else "l2"
    out["step"] = _choice(str(raw.get("step", default_step)).lower(), STEPS, where, "step")
    out["nb_iter"] = _int(raw.get("nb_iter", 10), where, "nb_iter")
    out["eps_iter"] = None if raw.get("eps_iter") is None else _numbers(raw["eps_iter"], where, "eps_iter")[0]
    return out


def _promotion(raw: dict, where: str, out: Dict[str, Any]) -> Dict[str, Any]:
    attack = str(raw.get("attack", "fgsm_l2")).lower()
    attack = ALIASES.get(attack, attack)
    out["attack"] = _choice(attack, PROMOTION_ATTACKS, where, "attack")
    extra = sorted(k for k in MSAP_KEYS if k in raw)
    if extra and out["attack"] != "msap":
        raise _err(where, f"{', '.join(extra)}: only with attack: msap (this entry uses attack: {out['attack']})")
    if out["attack"] == "msap":
        out.update(_msap(raw, where))
    targets = raw.get("targets", 50)
    if isinstance(targets, (list, tuple)):
        if not targets or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in targets):
            raise _err(where, f"targets: {targets!r} must be a count or a non-empty list of item ids")
        ids = [str(t) for t in targets]
        if len(set(ids)) != len(ids):
            dup = next(t for t in ids if ids.count(t) > 1)
            raise _err(where, f"targets: item id '{dup}' is listed twice")
        out["targets"] = ids
    else:
        out["targets"] = _int(targets, where, "targets")
    out["cutoff"] = None if raw.get("cutoff") is None else _int(raw["cutoff"], where, "cutoff")
    out["batch_size"] = _int(raw.get("batch_size", 1 << 18), where, "batch_size")
    return out


def _missing(raw: dict, where: str, out: Dict[str, Any]) -> Dict[str, Any]:
    out["modality"] = _modality(raw.get("modality", "each"), where)
    modes = raw.get("mode", "zero")
    modes = modes if isinstance(modes, (list, tuple)) else [modes]
    if not modes:
        raise _err(where, f"mode: must be one of {', '.join(MISSING_MODES)} or a non-empty list of them")
    out["modes"] = list(dict.fromkeys(_choice(str(m).lower(), MISSING_MODES, where, "mode") for m in modes))
    fractions = _numbers(raw.get("fraction", 1.0), where, "fraction")
    bad = [f for f in fractions if f > 1]
    if bad:
        raise _err(where, f"fraction: {bad[0]!r} must be in (0, 1] (the share of items whose features are replaced)")
    out["fractions"] = list(dict.fromkeys(fractions))
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
    """``fgsm_l2``, ``fgsm``, ``msap_l2``, ``msap_linf`` or ``msap_linf_l2step`` (Elliot's MSAP); a
    promotion entry: ``promotion-`` + the label of its ``attack``."""
    if spec["method"] == "promotion":
        return "promotion-" + attack_label({**spec, "method": spec["attack"]})
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
