"""Attack result tables, written next to the clean performance files (same layout, same timestamp).

* ``rec_cutoff_<k>_relthreshold_<t>_<timestamp>_attack-<name>.tsv``: one file per attack (method,
  modality group, budget) and cutoff; header ``model`` then, per metric, ``M``, ``M_attacked``,
  ``M_drop`` (clean, perturbed, relative drop (clean - attacked) / clean); a row per configuration.
  Promotion attacks (``..._attack-promotion-...tsv``) add the target items' statistics
  (:data:`PROMOTION_COLUMNS`): ``target_exposure_clean`` / ``target_exposure_attacked`` (share of all
  users' top-k slots held by target items), ``target_hr_*`` (share of (user, target) pairs with the
  target in the user's top-k), ``target_mean_rank_*``.
* ``certified_radius_relthreshold_<t>_<timestamp>[_<name>].tsv``: the certified-radius statistics
  (``ranked``, ``radius_median``, ``certified@ρ`` ...), a row per configuration.
* ``attacks_relthreshold_<t>_<timestamp>.tsv``: every record in long form (configuration, attack,
  method, modality, budget, cutoff, metric, clean, attacked, drop), plus skipped attacks with their
  reason, so a notebook reads one file; promotion rows add metrics ``target_exposure``, ``target_hr``
  and ``target_mean_rank``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from elliot.results.writers import _atomic_write, _fmt, performance_path, threshold_label


#: the extra columns of a promotion table, in order
PROMOTION_COLUMNS = ("target_exposure_clean", "target_exposure_attacked", "target_hr_clean", "target_hr_attacked",
                     "target_mean_rank_clean", "target_mean_rank_attacked")
PROMOTION_METRICS = ("target_exposure", "target_hr", "target_mean_rank")


def _attack_path(folder, cutoff: int, threshold: float, timestamp: str, name: str) -> Path:
    base = performance_path(folder, cutoff, threshold, timestamp)
    return base.with_name(f"{base.stem}_attack-{name}.tsv")


def write_attack_tables(folder, results: Sequence, cutoffs: Sequence[int], metrics: Sequence[str],
                        threshold: float, timestamp: str) -> List[Path]:
    """Write the attack tables of ``results`` (objects with ``name`` and ``attacks`` records, as made by
    :func:`elliot.evaluation.attacks.evaluate_attacks`); return the paths written."""
    folder = Path(folder)
    paths: List[Path] = []
    ranked = [r for r in results if getattr(r, "attacks", None)]
    records = [(r.name, a) for r in ranked for a in r.attacks]
    metric_records = [(n, a) for n, a in records if a.get("cutoff") is not None and not a.get("skipped")]
    for k in cutoffs:
        at_k = [(n, a) for n, a in metric_records if a["cutoff"] == k]
        for attack in dict.fromkeys(a["name"] for _, a in at_k):
            rows = [(n, a) for n, a in at_k if a["name"] == attack]
            promotion = any("promotion" in a for _, a in rows)
            header = ["model"] + [c for m in metrics for c in (m, f"{m}_attacked", f"{m}_drop")]
            header += list(PROMOTION_COLUMNS) if promotion else []
            lines = ["\t".join(header)]
            for name, a in rows:
                cells = [name]
                for m in metrics:
                    cells += [_fmt(a["clean"].get(m, float("nan"))), _fmt(a["values"].get(m, float("nan"))),
                              _fmt(a["drop"].get(m, float("nan")))]
                if promotion:
                    cells += [_fmt((a.get("promotion") or {}).get(c, float("nan"))) for c in PROMOTION_COLUMNS]
                lines.append("\t".join(cells))
            path = _attack_path(folder, k, threshold, timestamp, attack)
            _atomic_write(path, "\n".join(lines) + "\n")
            paths.append(path)

    certified = [(n, a) for n, a in records if a.get("method") == "certified_radius" and not a.get("skipped")]
    for attack in dict.fromkeys(a["name"] for _, a in certified):
        rows = [(n, a) for n, a in certified if a["name"] == attack]
        keys = list(dict.fromkeys(k for _, a in rows for k in a["values"]))
        lines = ["\t".join(["model"] + keys)]
        lines += ["\t".join([n] + [_fmt(a["values"].get(k, float("nan"))) for k in keys]) for n, a in rows]
        suffix = "" if attack == "certified_radius" else f"_{attack}"
        path = folder / f"certified_radius_relthreshold_{threshold_label(threshold)}_{timestamp}{suffix}.tsv"
        _atomic_write(path, "\n".join(lines) + "\n")
        paths.append(path)

    if records:
        lines = ["\t".join(["model", "attack", "method", "modality", "budget", "cutoff", "metric", "clean",
                            "attacked", "drop", "skipped"])]
        for n, a in records:
            budget = a.get("budget") or {}
            budget_cell = f"{budget.get('kind')}={budget.get('value')}" if budget else ""
            common = [n, str(a["name"]), str(a.get("method", "")), str(a.get("modality") or ""), budget_cell]
            if a.get("skipped"):
                lines.append("\t".join(common + ["", "", "", "", "", str(a["skipped"])]))
                continue
            cutoff = "" if a.get("cutoff") is None else str(a["cutoff"])
            for m, value in a["values"].items():
                lines.append("\t".join(common + [cutoff, m, _fmt(a["clean"].get(m, float("nan"))), _fmt(value),
                                                 _fmt(a["drop"].get(m, float("nan"))), ""]))
            stats = a.get("promotion") or {}
            for m in PROMOTION_METRICS:
                if f"{m}_clean" in stats:
                    lines.append("\t".join(common + [cutoff, m, _fmt(stats[f"{m}_clean"]), _fmt(stats[f"{m}_attacked"]),
                                                     _fmt(stats.get(f"{m}_drop", float("nan"))), ""]))
        path = folder / f"attacks_relthreshold_{threshold_label(threshold)}_{timestamp}.tsv"
        _atomic_write(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths
