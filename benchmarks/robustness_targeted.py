"""The targeted suites of ``benchmarks/robustness.py``: item promotion, missing modalities, budget curves.

Per (dataset, backbone, defense) the trained model of ``robustness.trained_model`` (stored weights are
reused) is evaluated on test under

* ``sweep`` (every backbone and defense): FGSM-L2 on all modalities at eps_ratio in :data:`SWEEP_EPS`
  (untargeted, Recall@20 curve) and the promotion of 50 long-tail targets (seed 42) by FGSM-L2 on all
  modalities at the same budgets (target-exposure curve);
* ``promotion`` (undefended backbones): the promotion per modality at 5%, L∞ FGSM and MSAP-L2 (10
  steps) on all modalities at 5%;
* ``missing`` (undefended backbones): each modality zeroed / replaced by the mean / by another item's
  vector for all items and for half of them, and every modality zeroed at once.

Runs go to ``benchmarks/robustness_targeted_runs.json`` (a re-run replaces the same key), the curves to
``docs/img/robustness_budget_<dataset>.png`` and ``docs/img/promotion_budget_<dataset>.png``, the tables
into ``docs/robustness.md`` (:func:`doc_sections`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "robustness_targeted_runs.json"
NOTES = ROOT / "docs" / "robustness_targeted_notes.md"
IMG = ROOT / "docs" / "img"
CUTOFF = 20
SWEEP_EPS = [0.01, 0.02, 0.05, 0.1, 0.2]
TARGETS = 50
SUITES = ("sweep", "promotion", "missing")
SWEEP = [{"method": "fgsm_l2", "modality": "all", "eps_ratio": SWEEP_EPS},
         {"method": "promotion", "targets": TARGETS, "attack": "fgsm_l2", "modality": "all", "eps_ratio": SWEEP_EPS}]
PROMOTION = [{"method": "promotion", "targets": TARGETS, "attack": "fgsm_l2", "modality": "each", "eps_ratio": 0.05},
             {"method": "promotion", "targets": TARGETS, "attack": "fgsm", "modality": "all", "eps_ratio": 0.05},
             {"method": "promotion", "targets": TARGETS, "attack": "msap", "projection": "l2", "modality": "all",
              "eps_ratio": 0.05, "nb_iter": 10}]
MISSING = [{"method": "missing_modality", "modality": "each", "mode": ["zero", "mean", "swap"], "fraction": [1.0, 0.5]},
           {"method": "missing_modality", "modality": "all", "mode": "zero"}]


def suites_for(backbone: str, defense: str, wanted) -> List[str]:
    """The full set for the undefended backbones; the budget curves for defended models and AMR."""
    full = defense == "none" and backbone != "AMR"
    return [s for s in SUITES if s in wanted and (full or s == "sweep")]


def run_targeted(dataset, backbone: str, defense: str, epochs: int, suites, seed: int = 42) -> dict:
    import torch

    from benchmarks.robustness import trained_model
    from elliot.evaluation.attacks import evaluate_attacks
    from elliot.evaluation.evaluator import Evaluator

    model, info = trained_model(dataset, backbone, defense, epochs, seed)
    evaluator = Evaluator(dataset, cutoffs=[10, 20], metrics=["Recall", "nDCG"])
    clean = evaluator.evaluate(model, "test")
    record = {"dataset": dataset.name, "backbone": backbone, "defense": defense, **info,
              "clean": clean.values[CUTOFF], "attacks": {}, "suite_seconds": {}, "targets": None,
              "torch_threads": torch.get_num_threads(), "n_items": dataset.n_items}
    entries = {"sweep": SWEEP, "promotion": PROMOTION, "missing": MISSING}
    for suite in suites:
        start = time.perf_counter()
        for r in evaluate_attacks(model, dataset, evaluator, entries[suite], clean=clean, seed=seed, target_seed=seed):
            if r.get("skipped"):
                record["attacks"][r["name"]] = {"skipped": r["skipped"]}
            elif r["cutoff"] == CUTOFF:
                record["attacks"][r["name"]] = {"values": r["values"], "drop": r["drop"],
                                                "promotion": r.get("promotion"), "seconds": r["seconds"]}
                record["targets"] = r.get("targets") or record["targets"]
        record["suite_seconds"][suite] = time.perf_counter() - start
    return record


def save(record: dict) -> None:
    from benchmarks.run_store import merge_runs

    key = (record["dataset"], record["backbone"], record["defense"])

    def update(runs):
        old = next((r for r in runs if (r["dataset"], r["backbone"], r["defense"]) == key), None)
        if old and old.get("epochs") == record["epochs"]:  # keep the suites this run did not repeat
            record["attacks"] = {**old["attacks"], **record["attacks"]}
            record["suite_seconds"] = {**old.get("suite_seconds", {}), **record["suite_seconds"]}
        return [r for r in runs if (r["dataset"], r["backbone"], r["defense"]) != key] + [record]

    merge_runs(RUNS, update, [])


# ---- the document --------------------------------------------------------------------------------------
def _f(x, digits=4):
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def _chg(clean, attacked):
    return "–" if not clean or attacked is None else f"{100 * (attacked - clean) / clean:+.1f}%"


def _promo_row(r, name, label):
    a = r["attacks"].get(name)
    if not a or "values" not in a:
        return None
    p = a["promotion"]
    gain = (p["target_exposure_attacked"] / p["target_exposure_clean"]) if p["target_exposure_clean"] else None
    return (f"| {r['backbone']} | {r['defense']} | {label} | {100 * p['target_exposure_clean']:.3f}% → "
            f"{100 * p['target_exposure_attacked']:.3f}% ({'–' if gain is None else f'×{gain:.1f}'}) | "
            f"{_f(p['target_hr_clean'])} → {_f(p['target_hr_attacked'])} | "
            f"{p['target_mean_rank_clean']:.0f} → {p['target_mean_rank_attacked']:.0f} | "
            f"{_f(a['values'].get('Recall'))} ({_chg(r['clean']['Recall'], a['values'].get('Recall'))}) | "
            f"{a['seconds']:.1f} |")


def _modalities(rows) -> List[str]:
    mods = []
    for r in rows:
        for name in r["attacks"]:
            if name.startswith("missing_modality-") and not name.startswith("missing_modality-all"):
                m = name.split("-")[1]
                if m not in mods:
                    mods.append(m)
    return mods


def doc_sections() -> List[str]:
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else []
    if not runs:
        return []
    out = ["## Targeted item promotion, missing modalities, budget curves", "",
           "`python benchmarks/robustness.py --suites sweep promotion missing` (module "
           "`benchmarks/robustness_targeted.py`; runs in `benchmarks/robustness_targeted_runs.json`).  Same "
           "training protocol and seed as the tables above (column *ep*); the models differ from theirs only by "
           "float summation order when the torch thread count differs (column *threads*).  Models are trained "
           "once and stored in `benchmarks/robustness_weights/` (git-ignored; *train s* = stored when reused).  "
           "*attack s*: seconds to build the perturbation of one budget (FGSM: one gradient shared by the "
           "sweep, divided by its budgets), evaluation excluded; the runs table gives each suite's total wall time.",
           "",
           f"* **Promotion** (`{{method: promotion, targets: {TARGETS}, attack: ..., modality: ..., eps_ratio: ...}}`, "
           "`elliot.evaluation.attacks.promotion`): 50 target items drawn (seed 42) from the long tail (outside "
           "the short head that holds 80% of the training interactions); only their feature rows are perturbed, "
           "each within eps_ratio·||x_t|| (L2) or eps_ratio·||x_t||/sqrt(d) (L∞).  Objective: J = mean_t log "
           "Σ_u σ(s(u,t) − s(u,r_u)), r_u the user's clean 20th non-target item (a smooth count of the users whose "
           "top-20 each target enters; derivation and reasons in the module docstring).  *Exposure* = share of "
           "all users' top-20 slots held by targets (50 items ranked at random would hold 50/n_items of them, "
           "the dotted line of the exposure plot); *HR* = share of (user, target) pairs with the target in the user's top-20; "
           "*rank* = mean rank of a target among a user's candidates; R@20 = the test Recall@20 of all users "
           "under the attack (collateral change).",
           "* **Missing modalities** (`{method: missing_modality, modality: ..., mode: zero | mean | swap, "
           "fraction: ...}`): the modality's features replaced by 0, by the mean item vector, or by another "
           "(seeded) item's vector, for all items or a seeded half; no optimisation.",
           "* **Budget curves**: untargeted FGSM-L2 on all modalities (Recall@20) and the promotion by FGSM-L2 on "
           "all modalities (target exposure@20) at eps_ratio " + ", ".join(f"{e:g}" for e in SWEEP_EPS) + ".",
           ""]
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        rows = [r for r in runs if r["dataset"] == dataset]
        out += [f"### {dataset}: runs", "",
                "| model | defense | ep | best | s/ep | train s | clean R@20 | clean nDCG@20 | attack s (sweep / "
                "promotion / missing) | threads |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            sec = r.get("suite_seconds", {})
            train = "stored" if r.get("loaded_weights") else f"{r.get('train_seconds', 0):.0f}"
            out.append(f"| {r['backbone']} | {r['defense']} | {r['epochs']} | {r['best_epoch']} | "
                       f"{r['s_per_epoch']:.2f} | {train} | {_f(r['clean']['Recall'])} | {_f(r['clean']['nDCG'])} | " +
                       " / ".join("–" if s not in sec else f"{sec[s]:.0f}" for s in SUITES) +
                       f" | {r.get('torch_threads', '–')} |")
        out += ["", f"### {dataset}: promotion of {TARGETS} long-tail items", "",
                "| model | defense | attack | target exposure@20 | target HR@20 | target mean rank | R@20 (change) | "
                "attack s |", "|---|---|---|---|---|---|---|---|"]
        mods = _modalities(rows)
        for r in rows:
            if r["defense"] != "none" or r["backbone"] == "AMR":
                continue
            labels = [(f"promotion-fgsm_l2-{m}-eps0.05-t{TARGETS}", f"FGSM-L2 {m} 5%") for m in mods]
            labels += [(f"promotion-fgsm_l2-all-eps{e:g}-t{TARGETS}", f"FGSM-L2 all {100 * e:g}%") for e in SWEEP_EPS]
            labels += [(f"promotion-fgsm-all-eps0.05-t{TARGETS}", "FGSM-L∞ all 5%"),
                       (f"promotion-msap_l2-all-eps0.05-t{TARGETS}", "MSAP-L2 all 5%")]
            out += [row for row in (_promo_row(r, n, lab) for n, lab in labels) if row]
        out += ["", f"### {dataset}: promotion (FGSM-L2, all modalities) against the defenses", "",
                "| model | defense | attack | target exposure@20 | target HR@20 | target mean rank | R@20 (change) | "
                "attack s |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["defense"] == "none" and r["backbone"] != "AMR":
                continue
            for e in (0.05, 0.2):
                row = _promo_row(r, f"promotion-fgsm_l2-all-eps{e:g}-t{TARGETS}", f"FGSM-L2 all {100 * e:g}%")
                if row:
                    out.append(row)
        out += ["", f"### {dataset}: missing modalities (Recall@20, change vs clean)", "",
                "| model | clean | " + " | ".join(f"{m} {mode} {frac}" for m in mods for mode in ("zero", "mean", "swap")
                                                 for frac in ("100%", "50%")) + " | all zero |",
                "|---|---|" + "---|" * (6 * len(mods) + 1)]
        for r in rows:
            names = [f"missing_modality-{m}-{mode}-f{f:g}" for m in mods for mode in ("zero", "mean", "swap")
                     for f in (1.0, 0.5)] + ["missing_modality-all-zero-f1"]
            if not any(n in r["attacks"] for n in names):
                continue
            cells = []
            for n in names:
                a = r["attacks"].get(n)
                cells.append("–" if not a or "values" not in a else
                             f"{_f(a['values']['Recall'])} ({_chg(r['clean']['Recall'], a['values']['Recall'])})")
            out.append(f"| {r['backbone']} | {_f(r['clean']['Recall'])} | " + " | ".join(cells) + " |")
        out += ["", f"### {dataset}: budget curves", "",
                f"![Recall@20 under FGSM-L2 (all modalities) vs budget](img/robustness_budget_{dataset}.png)", "",
                f"![Target exposure@20 under promotion (FGSM-L2, all modalities) vs budget]"
                f"(img/promotion_budget_{dataset}.png)", "",
                "| model | defense | clean R@20 | " + " | ".join(f"R@20 {100 * e:g}%" for e in SWEEP_EPS) +
                " | exposure clean | " + " | ".join(f"exp. {100 * e:g}%" for e in SWEEP_EPS) + " |",
                "|---|---|---|" + "---|" * (2 * len(SWEEP_EPS) + 1)]
        for r in rows:
            rec = [r["attacks"].get(f"fgsm_l2-all-eps{e:g}", {}).get("values", {}).get("Recall") for e in SWEEP_EPS]
            pro = [(r["attacks"].get(f"promotion-fgsm_l2-all-eps{e:g}-t{TARGETS}") or {}).get("promotion") or {}
                   for e in SWEEP_EPS]
            exp_clean = next((p["target_exposure_clean"] for p in pro if p), None)
            out.append(f"| {r['backbone']} | {r['defense']} | {_f(r['clean']['Recall'])} | " +
                       " | ".join(_f(v) for v in rec) + f" | {'–' if exp_clean is None else f'{100 * exp_clean:.3f}%'} | " +
                       " | ".join("–" if not p else f"{100 * p['target_exposure_attacked']:.3f}%" for p in pro) + " |")
        out.append("")
        plot_curves(dataset, rows)
    if NOTES.exists():
        out += [NOTES.read_text().rstrip(), ""]
    return out


def plot_curves(dataset: str, rows: List[dict]) -> None:
    """docs/img/robustness_budget_<dataset>.png and promotion_budget_<dataset>.png: one panel per backbone
    (AMR drawn with VBPR), one line per defense; eps 0 = clean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: Dict[str, List[dict]] = {}
    for r in rows:
        panels.setdefault("VBPR" if r["backbone"] == "AMR" else r["backbone"], []).append(r)
    IMG.mkdir(parents=True, exist_ok=True)
    xs = [0.0] + SWEEP_EPS
    for kind, ylabel, fname in (("recall", "test Recall@20", f"robustness_budget_{dataset}.png"),
                                ("exposure", "target exposure@20 (% of top-20 slots, log)", f"promotion_budget_{dataset}.png")):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
        for ax, (backbone, members) in zip(axes[0], panels.items()):
            for r in members:
                if kind == "recall":
                    ys = [r["clean"]["Recall"]] + [r["attacks"].get(f"fgsm_l2-all-eps{e:g}", {}).get("values", {})
                                                   .get("Recall", float("nan")) for e in SWEEP_EPS]
                else:
                    pro = [(r["attacks"].get(f"promotion-fgsm_l2-all-eps{e:g}-t{TARGETS}") or {}).get("promotion")
                           for e in SWEEP_EPS]
                    if not any(pro):
                        continue
                    first = next(p for p in pro if p)
                    ys = [100 * first["target_exposure_clean"]] + [100 * p["target_exposure_attacked"] if p else
                                                                   float("nan") for p in pro]
                    ys = [max(y, 1e-4) for y in ys]  # log axis: 0 drawn at 1e-4 %
                label = "AMR" if r["backbone"] == "AMR" else r["defense"]
                ax.plot(xs, ys, marker="o", label=label)
            n_items = next((r.get("n_items") for r in rows if r.get("n_items")), None)
            if kind == "recall":
                ax.set_ylim(0, 1.15 * ax.get_ylim()[1])  # from 0: a graph backbone's flat curve looks flat
            if kind == "exposure":
                ax.set_yscale("log")
                if n_items:
                    ax.axhline(100 * TARGETS / n_items, color="grey", linestyle=":", linewidth=1,
                               label=f"{TARGETS} random items")
            ax.set_title(f"{backbone} ({dataset})")
            ax.set_xlabel("eps_ratio (FGSM-L2, all modalities)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(IMG / fname, dpi=110)
        plt.close(fig)
