"""Robustness benchmark: clean vs attacked Recall@20 / nDCG@20 per modality, with and without defenses.

    python benchmarks/robustness.py [--datasets default tiktok] [--epochs 30] [--models VBPR LightGCNM ...]
                                    [--only-doc]

For each dataset (the embedded ``data/default`` with the data section of ``config_files/default.yml``,
and ``../shared/data/tiktok`` when present) and each backbone (VBPR, LightGCNM, LATTICE when its
package exists) it trains the plain model, the model with Modality Balancing (``defense`` block),
the model with CRMT (step 1 regulariser + step 2 integration weights) and the model with Mirror
Gradient; plus AMR next to VBPR.  Each run: fixed epochs, validation every 5 epochs, best epoch on
validation Recall@20 (never test), then on test: clean metrics, FGSM-L2 at 5% of each item's feature
norm per modality and on all modalities jointly, MSAP (PGD, L2 ball, 10 steps, 5%) on all
modalities, and the certified radius (256 test triples).  Every run is appended to
``benchmarks/robustness_runs.json`` (re-runs replace the same key); ``docs/robustness.md`` is written
from that file.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from benchmarks.run_store import merge_runs  # noqa: E402

RUNS = ROOT / "benchmarks" / "robustness_runs.json"
DOC = ROOT / "docs" / "robustness.md"
NOTES = ROOT / "docs" / "robustness_notes.md"
CUTOFF = 20
ATTACKS = [
    {"method": "fgsm_l2", "modality": "each", "eps_ratio": 0.05},
    {"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.05},
    {"method": "msap", "projection": "l2", "modality": "all", "eps_ratio": 0.05, "nb_iter": 10},
    {"method": "certified_radius", "sample_size": 128},
]
#: graph encoders: every hook call propagates the whole graph, so the per-batch PGD of Modality
#: Balancing and the per-pair gradients of CRMT step 2 are costly on CPU - fewer steps / triples
GRAPH = {"LightGCNM", "LATTICE"}
GRAPH_OVERRIDES = {"modality_balancing": {"pgd_steps": 3}, "crmt": {"integration_sample": 128}}

#: backbone -> (registry name, hyperparameters); per-modality fusion where the model offers it
BACKBONES = {
    "VBPR": ("external.VBPR", {"factors": 64, "factors_d": 64, "lr": 0.005, "l_w": 0.01, "l_b": 0.0, "l_e": 0.002,
                               "fusion": "per_modality", "normalize": True}),
    "LightGCNM": ("external.LightGCNM", {"factors": 64, "n_layers": 2, "lr": 0.005, "l_w": 1e-4}),
    "LATTICE": ("external.LATTICE", {"lr": 0.001}),  # the lr selected on TikTok in docs/results.md
    "AMR": ("external.AMR", {"factors": 64, "factors_d": 64, "lr": 0.005, "l_w": 0.01, "l_b": 0.0, "l_e": 0.002,
                             "normalize": True, "eps": 0.05, "eps_relative": True, "l_adv": 1.0,
                             "attack": "fgsm", "perturb": "both"}),
}
DEFENSES = {
    "none": (None, None),
    "MB": ({"method": "modality_balancing"}, None),
    "CRMT": ({"method": "crmt"}, None),
    "CRMT(rho=0.2)": ({"method": "crmt", "rho": 0.2}, None),
    "MG": (None, {"mirror_gradient": {"enable": True}}),
}


def datasets(names):
    from elliot.config import load_config
    from elliot.dataset.builder import build_dataset

    out = {}
    for name in names:
        if name == "default":
            config = ROOT / "config_files" / "default.yml"
            if not (ROOT / "data" / "default" / "train.tsv").exists():
                from elliot.dataset.generator import write_default_dataset

                write_default_dataset(ROOT / "data" / "default")
        elif name == "tiktok":
            if not (ROOT.parent / "shared" / "data" / "tiktok" / "train.tsv").exists():
                print("skip tiktok: ../shared/data/tiktok not found")
                continue
            config = ROOT / "config_files" / "bench" / "vbpr_tiktok.yml"
        else:
            raise SystemExit(f"unknown dataset {name}")
        out[name] = build_dataset(load_config(config).experiment_dict())  # only its data section is used
    return out


def run_one(dataset, backbone: str, defense: str, epochs: int, seed: int = 42) -> dict:
    from elliot.config.params import coerce_params, expand_grid
    from elliot.evaluation.attacks import evaluate_attacks
    from elliot.evaluation.evaluator import Evaluator
    from elliot.recommender.registry import available_models
    from elliot.training.defenses import build_addons, finalize
    from elliot.training.trainer import Trainer

    registry, raw = BACKBONES[backbone]
    cls = available_models()[registry]
    modalities = list(dataset.features)
    raw = {**raw, "epochs": epochs, "batch_size": 2048, "seed": seed}
    hp = expand_grid(coerce_params(cls.declared_params(), raw, registry))[0]
    block, training = DEFENSES[defense]
    if block and backbone in GRAPH:
        block = {**block, **GRAPH_OVERRIDES.get(block["method"], {})}
    if block and block["method"] == "modality_balancing":
        block = {**block, "sensitive_modality": modalities[0], "robust_modality": modalities[1]}
    torch.manual_seed(seed)
    model = cls(dataset, hp, torch.device("cpu"))
    evaluator = Evaluator(dataset, cutoffs=[10, 20], metrics=["Recall", "nDCG"])
    addons = build_addons(model, dataset, defense=block, training=training, seed=seed) if (block or training) else []
    trainer = Trainer(model, dataset, evaluator, epochs=epochs, batch_size=2048, seed=seed, validation_rate=5,
                      validation_metric="Recall@20", addons=addons, progress=False)
    fit = trainer.fit()
    step1 = evaluator.evaluate(model, "test").values[CUTOFF] if any(a.name == "crmt" for a in addons) else None
    model = finalize(model, dataset, addons)
    clean = evaluator.evaluate(model, "test")
    start = time.perf_counter()
    records = evaluate_attacks(model, dataset, evaluator, ATTACKS, clean=clean, seed=seed)
    record = {"dataset": dataset.name, "backbone": backbone, "defense": defense, "epochs": epochs,
              "best_epoch": fit.best_epoch, "s_per_epoch": fit.seconds_per_epoch, "attack_seconds":
              time.perf_counter() - start, "clean": clean.values[CUTOFF], "attacks": {}, "certified": {},
              "defense_block": block, "training_block": training, "clean_before_integration": step1,
              "weights": ({b: float(a) for b, a in model.weight_dict().items()} if hasattr(model, "weight_dict")
                          else None), "params": {k: v for k, v in hp.items() if not isinstance(v, list)}}
    for r in records:
        if r.get("skipped"):
            record["attacks"][r["name"]] = {"skipped": r["skipped"]}
        elif r["method"] == "certified_radius":
            record["certified"] = r["values"]
        elif r["cutoff"] == CUTOFF:
            record["attacks"][r["name"]] = {"values": r["values"], "drop": r["drop"]}
    return record


def save(record: dict) -> None:
    """Store ``record``, replacing an earlier run of the same (dataset, backbone, defense)."""
    key = (record["dataset"], record["backbone"], record["defense"])
    merge_runs(RUNS, lambda runs: [r for r in runs if (r["dataset"], r["backbone"], r["defense"]) != key]
               + [record], [])


# ---- the document --------------------------------------------------------------------------------------
def _fmt(x, digits=4):
    return "–" if x is None else f"{x:.{digits}f}"


def _change(drop):
    """The relative drop (clean - attacked)/clean shown as a signed change: -5.0% = 5% lower."""
    return "–" if drop is None or drop != drop else f"{-100 * drop:+.1f}%"


def write_doc() -> None:
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else []
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = [
        "# Robustness to adversarial perturbations of item features",
        "",
        "Written by `python benchmarks/robustness.py` from the runs in `benchmarks/robustness_runs.json` "
        f"(code at commit {commit} + working tree; torch {torch.__version__}, CPU).",
        "",
        "## Protocol",
        "",
        "* Training: fixed number of epochs (column *ep*), batch 2048, seed 42, validation every 5 epochs, "
        "weights of the best validation Recall@20 epoch restored (test never used for selection).",
        "* Attacks (test split, full ranking over all items, training and validation items masked), "
        "`elliot.evaluation.attacks`: the **raw item features** x_m read through `model.feature(m)` are "
        "replaced by x_m + δ_m for **every item**; δ maximises the BPR loss of one triple per training "
        "interaction (seeded uniform negatives), gradients w.r.t. δ only (parameters and stored features "
        "untouched).  **FGSM-L2 5%**: δ_i = ε_i Γ_i/||Γ_i||, ε_i = 0.05·||x_i|| (per modality: only that "
        "modality; *all*: every modality, each within its own budget).  **MSAP-L2 5%**: 10 steps of size "
        "2.5ε/10 along Γ/||Γ||, projected onto the L2 ball ε_i = 0.05·||x_i|| (PGD), all modalities.",
        "* Cells: metric@20 on clean data; attacked value and, in parentheses, its relative change "
        "(attacked − clean)/clean (the result files store the drop (clean − attacked)/clean).  A positive "
        "change means the attacked ranking scored higher: the attack maximises the *training* BPR loss, "
        "which need not lower the test metric.",
        "* Defenses: **MB** = Modality Balancing (defaults: λ 0.01, N 20, PGD-L∞ distillation ε 1.0, 10 "
        "steps of 0.1; sensitive = first modality, robust = second; graph backbones: 3 PGD steps, for CPU "
        "time); **CRMT** = margin regulariser ρ = 2 + "
        "integration weights (step 2, 1024 training triples - 128 for graph backbones, whose τ needs one "
        "backward pass per pair - 300 Adam steps, Σa = #modalities); *CRMT(rho=0.2)* the same with "
        "ρ = 0.2; **MG** = "
        "Mirror Gradient (α1 1, α2 0.1, β 3).  AMR: FGSM adversarial training (ε = 5% of ||x_i||, "
        "positives and negatives, l_adv 1, last half of the epochs), VBPR-style per-modality scoring.",
        "* Certified radius: 128 test triples (u, i, j) with j never interacted; *cert@5%* = fraction of "
        "triples whose radius exceeds 5% of the joint feature norm of i and j; *ranked* = fraction with "
        "a positive margin.  Exact certificates only for linear branches (see the derivation); "
        "estimates otherwise.",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        rows = [r for r in runs if r["dataset"] == dataset]
        mods = []
        for r in rows:
            for name in r["attacks"]:
                if name.startswith("fgsm_l2-") and not name.startswith("fgsm_l2-all"):
                    mod = name.split("-")[1]
                    if mod not in mods:
                        mods.append(mod)
        cols = [(f"fgsm_l2-{m}-eps0.05", f"FGSM {m}") for m in mods] + \
               [("fgsm_l2-all-eps0.05", "FGSM all"), ("msap_l2-all-eps0.05", "MSAP all")]
        for metric in ("Recall", "nDCG"):
            lines += [f"## {dataset}: {metric}@20", "",
                      "| model | defense | ep | best | s/ep | clean | " + " | ".join(c[1] for c in cols) +
                      " | ranked | cert@5% | radius med |",
                      "|---|---|---|---|---|---|" + "---|" * len(cols) + "---|---|---|"]
            for r in rows:
                clean = r["clean"].get(metric)
                cells = []
                for key, _ in cols:
                    a = r["attacks"].get(key)
                    if not a or "values" not in a:
                        cells.append("–")
                    else:
                        cells.append(f"{_fmt(a['values'].get(metric))} ({_change(a['drop'].get(metric))})")
                c = r.get("certified") or {}
                lines.append(f"| {r['backbone']} | {r['defense']} | {r['epochs']} | {r['best_epoch']} | "
                             f"{r['s_per_epoch']:.2f} | {_fmt(clean)} | " + " | ".join(cells) +
                             f" | {_fmt(c.get('ranked'), 3)} | {_fmt(c.get('certified@0.05'), 3)} | "
                             f"{_fmt(c.get('radius_median'), 3)} |")
            lines.append("")
        weights = [r for r in rows if r.get("weights")]
        if weights:
            lines += [f"CRMT on {dataset} - integration weights a^(m) (step 2) and test Recall@20 after step 1 "
                      "only -> after step 2: " +
                      "; ".join(f"{r['backbone']} {r['defense']}: " +
                                ", ".join(f"{b} {a:.3f}" for b, a in r["weights"].items()) +
                                (f" (R@20 {r['clean_before_integration']['Recall']:.4f} -> {r['clean']['Recall']:.4f})"
                                 if r.get("clean_before_integration") else "")
                                for r in weights), ""]
    lines += _summary(runs)
    if NOTES.exists():  # the reading of these tables, written by hand from them
        lines += [NOTES.read_text().rstrip(), ""]
    lines += _static_sections()
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC}")


def _summary(runs):
    """Per dataset and backbone: clean change and FGSM-all / MSAP-all Recall@20 drops of each defense."""
    out = ["## Summary: Recall@20, defended vs undefended", "",
           "Clean change = (clean_defended − clean_undefended)/clean_undefended; drops = relative drop of "
           "the same model under attack (lower is more robust).", "",
           "| dataset | backbone | defense | clean change | FGSM-all drop | MSAP-all drop | cert@5% |",
           "|---|---|---|---|---|---|---|"]
    for r in runs:
        base = next((b for b in runs if b["dataset"] == r["dataset"] and b["backbone"] == r["backbone"]
                     and b["defense"] == "none"), None)
        if r["backbone"] == "AMR":
            base = next((b for b in runs if b["dataset"] == r["dataset"] and b["backbone"] == "VBPR"
                         and b["defense"] == "none"), base)
        change = ((r["clean"]["Recall"] - base["clean"]["Recall"]) / base["clean"]["Recall"]
                  if base and base["clean"]["Recall"] else None)
        drops = [r["attacks"].get(k, {}).get("drop", {}).get("Recall") for k in
                 ("fgsm_l2-all-eps0.05", "msap_l2-all-eps0.05")]
        name = r["defense"] if r["backbone"] != "AMR" else "AMR (vs VBPR)"
        out.append(f"| {r['dataset']} | {r['backbone']} | {name} | "
                   f"{'–' if change is None else f'{100 * change:+.1f}%'} | " +
                   " | ".join("–" if d is None else f"{100 * d:.1f}%" for d in drops) +
                   f" | {_fmt((r.get('certified') or {}).get('certified@0.05'), 3)} |")
    return out + [""]


def _static_sections():
    from elliot.training.defenses import crmt

    derivation = crmt.__doc__.split("Derivation (what is certified).")[1].split("Step 2 as in the CRMT code")[0]
    return [
        "## Configuration",
        "",
        "Attacks are part of the experiment's `evaluation` section (or `python start_experiments.py "
        "--eval_attack`, which adds FGSM-L2 at 5% on all modalities); defenses are blocks of a model:",
        "",
        "```yaml",
        "experiment:",
        "  evaluation:",
        "    cutoffs: [10, 20]",
        "    simple_metrics: [Recall, nDCG]",
        "    attacks:",
        "      - {method: fgsm_l2, modality: each, eps_ratio: [0.01, 0.05, 0.1]}  # per modality, an eps sweep",
        "      - {method: fgsm, modality: visual, eps: 0.5}                      # L-inf sign step, absolute eps",
        "      - {method: msap, projection: l2, modality: all, eps_ratio: 0.05, nb_iter: 10}",
        "      - {method: msap, projection: linf, step: l2, eps: 0.1}          # Elliot's MSAP exactly",
        "      - {method: certified_radius, sample_size: 256}",
        "  models:",
        "    external.VBPR:",
        "      fusion: per_modality          # Modality Balancing / CRMT need one branch per modality",
        "      defense: {method: modality_balancing, sensitive_modality: visual, robust_modality: textual,",
        "                lambda: 0.01, N: 20, distill_eps: 1.0, pgd_steps: 10, pgd_step_size: 0.1}",
        "    external.LightGCNM:",
        "      defense: {method: crmt, rho: 2.0, integration: true}",
        "      training: {mirror_gradient: {enable: true, alpha1: 1.0, alpha2: 0.1, beta: 3}}",
        "    external.VBPR_MB: {}            # the balanced variant as a model name",
        "    external.AMR: {eps: 0.05, eps_relative: true, l_adv: 1.0, attack: msap, nb_iter: 5, perturb: both}",
        "```",
        "",
        "Attack keys: `method` (fgsm_l2 | fgsm | msap (= pgd) | certified_radius), `modality` (a name, a "
        "list, `all` = jointly, `each` = one attack per modality), `eps_ratio` (relative to each item's "
        "feature L2 norm; for L-inf attacks the per-entry bound is eps_ratio·||x_i||/sqrt(d)) or `eps` "
        "(absolute), a list = sweep; msap: `projection` (linf | l2), `step` (sign | l2), `nb_iter` (10), "
        "`eps_iter` (2.5·eps/nb_iter); `sample_size` (training triples attacked, `all`), `seed`, `split`, "
        "`name`.  Results: `performance/rec_cutoff_<k>_relthreshold_<t>_<ts>_attack-<name>.tsv` (per "
        "configuration: metric, metric_attacked, metric_drop), `certified_radius_*.tsv`, and attacked rows in "
        "the final console table.",
        "",
        "## What is attacked, per model",
        "",
        "Every attack perturbs the raw feature matrices returned by `model.feature(m)` (the model's copy of "
        "the dataset's side information) for all items; no model fine-tunes these tensors (models that "
        "fine-tune features in their original code - e.g. LightGCN-M - learn projections of fixed "
        "features here).  What the perturbation reaches:",
        "",
        "* **VBPR / AMR**: the projected content term θ_u·n(E_m x_i) + β'·x_i of each item (per-modality "
        "branches; scores of an item depend only on its own features).",
        "* **LightGCNM**: the projected features enter the item nodes' layer-0 embeddings and propagate "
        "through the user-item graph, so an item's features also move its users' embeddings.",
        "* **LATTICE**: the feature projections, and through them the learned item-item graph: its kNN index "
        "and edge weights are rebuilt from the attacked projections at evaluation (the original code "
        "rebuilds the learned graph at every evaluation); the initial kNN graph, built once from the clean "
        "features, is not rewired.",
        "* **FREEDOM**: the feature projections only; its frozen item-item graph is built once from the clean "
        "features at construction (as in the paper), so the attack does not rewire it.",
        "* **MMGCN / GRCN / SLMRec**: per-modality GCNs over raw features (GRCN also re-weights its ID graph "
        "from the features).",
        "",
        "## Certified margins (CRMT adapted to ranking): derivation",
        "",
        "Branches s(u,i) = s_ID(u,i) + Σ_m s^(m)(u,i) come from the models' `modality_embeddings` hook; "
        "Δ^(m)(u,i,j) = s^(m)(u,i) − s^(m)(u,j).  Step 1 trains with L_BPR + ρ · mean log Σ_m exp(−Δ^(m)); "
        "step 2 freezes the encoders and fits a^(m) ≥ 0 of s_a = s_ID + Σ_m a^(m) s^(m).",
        "",
        "```text\n" + derivation.strip() + "\n```",
        "",
        "Step 2 maximises the mean radius over training triples with Σ_m a^(m) fixed to the number of "
        "modalities (without a constraint, a → 0 makes r infinite by discarding the features).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["default", "tiktok"])
    parser.add_argument("--models", nargs="*", default=["VBPR", "LightGCNM", "LATTICE"])
    parser.add_argument("--defenses", nargs="*", default=["none", "MB", "CRMT", "MG"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--epochs-graph", type=int, default=None, help="epochs of graph models (default --epochs)")
    parser.add_argument("--amr", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--only-doc", action="store_true")
    args = parser.parse_args()
    if not args.only_doc:
        from elliot.recommender.registry import available_models

        names = available_models()
        for name, dataset in datasets(args.datasets).items():
            plan = [(m, d) for m in args.models for d in args.defenses]
            if args.amr:
                plan.append(("AMR", "none"))
            for backbone, defense in plan:
                if BACKBONES[backbone][0] not in names:
                    print(f"skip {backbone}: not available")
                    continue
                epochs = args.epochs if backbone in ("VBPR", "AMR") else (args.epochs_graph or args.epochs)
                start = time.perf_counter()
                record = run_one(dataset, backbone, defense, epochs)
                save(record)
                print(f"{name} {backbone} {defense}: clean R@20 {record['clean']['Recall']:.4f} "
                      f"({time.perf_counter() - start:.0f}s)", flush=True)
    write_doc()


if __name__ == "__main__":
    main()
