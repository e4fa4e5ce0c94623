"""Run the configured attacks on a trained model: perturbed full-ranking metrics next to the clean ones."""
from __future__ import annotations

import logging
import math
import time
from typing import Dict, List, Optional, Sequence

import torch

from elliot.evaluation.attacks.perturb import FeatureAttack, fgsm, msap, sample_triples
from elliot.evaluation.attacks.spec import attack_label, budget_label, validate_attacks

logger = logging.getLogger("elliot")

#: which tensor an attack perturbs (recorded with every result)
TARGET = "raw item features read through model.feature(m) (x_m + δ_m), all items"


def is_attackable(model) -> bool:
    """Does ``model`` read item features through the hooks (``features_replaced``, ``modalities``)?"""
    from elliot.recommender.multimodal import MultimodalRecommender

    return isinstance(model, MultimodalRecommender) and bool(getattr(model, "modalities", None))


def relative_drop(clean: float, attacked: float) -> float:
    """(clean - attacked) / clean; NaN when the clean value is 0 or missing."""
    if clean is None or attacked is None or not math.isfinite(clean) or clean == 0:
        return float("nan")
    return (clean - attacked) / clean


def skipped(spec: dict, reason: str, name: Optional[str] = None) -> dict:
    """The record of an attack that does not apply (``skipped`` = the reason, also logged)."""
    logger.warning("attack skipped: %s", reason)
    return {"name": name or spec.get("name") or spec["method"], "method": spec["method"],
            "modality": spec.get("modality"), "budget": None, "cutoff": None, "values": {}, "clean": {},
            "drop": {}, "skipped": reason}


def _modality_groups(spec: dict, model) -> List[List[str]]:
    m = spec["modality"]
    if m == "all":
        return [list(model.modalities)]
    if m == "each":
        return [[x] for x in model.modalities]
    names = m if isinstance(m, list) else [m]
    return [[x] for x in names]


def perturbation_stats(clean: Dict[str, torch.Tensor], deltas: Dict[str, torch.Tensor]) -> Dict[str, dict]:
    """Per modality: mean ||δ_i||_2, max |δ|, mean ||δ_i|| / ||x_i||, items with δ_i ≠ 0."""
    rel = {}
    for m, d in deltas.items():
        x_norm = clean[m].norm(dim=1)
        d_norm = d.norm(dim=1)
        ok = x_norm > 0
        rel[m] = {"mean_l2": float(d_norm.mean()), "max_linf": float(d.abs().max()) if d.numel() else 0.0,
                  "mean_rel_l2": float((d_norm[ok] / x_norm[ok]).mean()) if ok.any() else float("nan"),
                  "items_perturbed": int((d_norm > 0).sum())}
    return rel


def attacked_records(model, evaluator, split: str, clean, replaced: Dict[str, torch.Tensor], base: dict,
                     seconds: float, perturbation: dict) -> List[dict]:
    """Evaluate ``model`` with the features ``replaced``: one record per cutoff (``base`` + values, clean,
    drop, split, perturbation, seconds; ``target`` defaults to :data:`TARGET`)."""
    with model.features_replaced(replaced):
        result = evaluator.evaluate(model, split)
    out = []
    for k in sorted(result.values):
        attacked = result.values[k]
        clean_k = clean.values.get(k, {}) if clean is not None else {}
        out.append({"target": TARGET, **base, "cutoff": k, "values": dict(attacked), "clean": dict(clean_k),
                    "drop": {m: relative_drop(clean_k.get(m), v) for m, v in attacked.items()},
                    "split": split, "perturbation": perturbation, "seconds": seconds})
    return out


def evaluate_attacks(model, dataset, evaluator, attacks: Sequence[dict], clean=None, seed: int = 42,
                     target_seed: Optional[int] = None) -> List[dict]:
    """Evaluate ``model`` under every attack of ``attacks`` (the ``evaluation.attacks`` list).

    Returns one record per (attack, modality group, budget, cutoff): ``name`` (e.g.
    ``fgsm_l2-visual-eps0.05``), ``method``, ``modality``, ``budget``, ``cutoff``, ``values`` (attacked
    metric values), ``clean`` (the same metrics without attack, taken from ``clean``), ``drop``
    (relative drop (clean - attacked) / clean), plus ``perturbation`` statistics, ``split``,
    ``seconds`` and ``target``.  ``certified_radius`` entries give one record with ``cutoff`` None and
    the radius statistics in ``values``.  ``promotion`` records (:mod:`.promotion`) add ``promotion``
    (target exposure / HR / mean rank, clean and attacked) and ``targets`` (original item ids);
    ``missing_modality`` records (:mod:`.missing`) add ``mode``.  Clean metrics are never recomputed or
    modified; the model's parameters and stored features are unchanged afterwards.  A model that reads
    no item features gets one record per attack with ``skipped`` set (and a log line).

    ``seed`` seeds the attacks' training triples; ``target_seed`` (default ``seed``; the trial passes the
    experiment's ``random_seed``, so every model of an experiment gets the same items) seeds the
    promotion targets and the items of a missing-modality entry.  An entry's own ``seed`` wins.
    """
    specs = validate_attacks(list(attacks))
    records: List[dict] = []
    if not specs:
        return records
    if not is_attackable(model):
        reason = (f"model {getattr(model, 'name', type(model).__name__)} reads no item features; "
                  "feature attacks do not apply")
        return [skipped(s, reason) for s in specs]
    for n, spec in enumerate(specs):
        s_seed = int(spec.get("seed", seed))
        split = spec["split"]
        if split == "validation" and not dataset.has_validation:
            records.append(skipped(spec, "the dataset has no validation split"))
            continue
        if spec["method"] in ("promotion", "missing_modality"):
            items_seed = int(spec.get("seed", seed if target_seed is None else target_seed))
            clean_split = clean if (clean is not None and getattr(clean, "split", split) == split) else None
            if clean_split is None:
                clean_split = evaluator.evaluate(model, split)
            groups = _modality_groups(spec, model)

            def label_of(group, spec=spec):
                return "all" if spec["modality"] == "all" else "+".join(group)

            if spec["method"] == "promotion":
                from elliot.evaluation.attacks.promotion import evaluate_promotion

                records.extend(evaluate_promotion(model, dataset, evaluator, spec, clean_split, items_seed, groups,
                                                  f"experiment.evaluation.attacks[{n}]", label_of))
            else:
                from elliot.evaluation.attacks.missing import evaluate_missing

                records.extend(evaluate_missing(model, dataset, evaluator, spec, clean_split, items_seed, groups,
                                                label_of))
            continue
        if spec["method"] == "certified_radius":
            from elliot.evaluation.certified import certified_radius

            start = time.perf_counter()
            try:
                stats = certified_radius(model, dataset, split=split, sample_size=spec["sample_size"], seed=s_seed,
                                         eps_ratios=spec["eps_ratio"])
            except ValueError as exc:
                records.append(skipped(spec, str(exc), name=spec.get("name", "certified_radius")))
                continue
            records.append({"name": spec.get("name", "certified_radius"), "method": "certified_radius",
                            "modality": "all", "budget": None, "cutoff": None, "values": stats, "clean": {},
                            "drop": {}, "split": split, "seconds": time.perf_counter() - start})
            continue
        clean_split = clean if (clean is None or getattr(clean, "split", split) == split) else None
        if clean_split is None:
            clean_split = evaluator.evaluate(model, split)
        triples = sample_triples(dataset, spec["sample_size"], s_seed)
        label = attack_label(spec)
        for group in _modality_groups(spec, model):
            missing = [m for m in group if m not in model.modalities]
            mod_label = "all" if spec["modality"] == "all" else "+".join(group)
            if missing:
                reason = f"model {model.name} does not use modality {missing}; it uses {model.modalities}"
                records.append(skipped(spec, reason, name=f"{label}-{mod_label}"))
                continue
            attack = FeatureAttack(model, group, triples, batch_size=spec["batch_size"])
            start = time.perf_counter()
            if spec["method"] in ("fgsm_l2", "fgsm"):
                norm = "l2" if spec["method"] == "fgsm_l2" else "linf"
                sweep = fgsm(attack, spec["budget_kind"], spec["budgets"], norm)
            else:
                sweep = [msap(attack, spec["budget_kind"], v, spec["projection"], spec["step"], spec["nb_iter"],
                              spec["eps_iter"]) for v in spec["budgets"]]
            seconds = (time.perf_counter() - start) / max(len(sweep), 1)
            for value, deltas in zip(spec["budgets"], sweep):
                name = f"{label}-{mod_label}-{budget_label(spec['budget_kind'], value)}"
                if spec.get("name"):
                    name = f"{spec['name']}-{mod_label}-{budget_label(spec['budget_kind'], value)}"
                base = {"name": name, "method": label, "modality": mod_label,
                        "budget": {"kind": "eps_ratio" if spec["budget_kind"] == "ratio" else "eps", "value": value},
                        "sample_size": spec["sample_size"] or len(triples[0])}
                if spec["method"] == "msap":
                    base.update(nb_iter=spec["nb_iter"], projection=spec["projection"], step=spec["step"])
                replaced = {m: attack.clean[m] + deltas[m] for m in deltas}
                records.extend(attacked_records(model, evaluator, split, clean_split, replaced, base, seconds,
                                                perturbation_stats(attack.clean, deltas)))
                logger.info("attack %s: %s", name, {k: round(v, 5) for k, v in
                                                    (records[-1]["values"] if records else {}).items()})
    return records
