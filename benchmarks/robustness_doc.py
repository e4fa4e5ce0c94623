"""``docs/robustness.md`` from the runs of ``benchmarks/robustness.py`` (``--only-doc`` writes only this)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "robustness_runs.json"
DOC = ROOT / "docs" / "robustness.md"
NOTES = ROOT / "docs" / "robustness_notes.md"


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
    lines += _candidates()
    lines += _mb_cost()
    if NOTES.exists():  # the reading of these tables, written by hand from them
        lines += [NOTES.read_text().rstrip(), ""]
    from benchmarks.robustness_targeted import doc_sections

    lines += doc_sections()
    lines += _static_sections()
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC}")


CANDIDATE_RUNS = ROOT / "benchmarks" / "robustness_candidates_runs.json"
MB_COST_RUNS = ROOT / "benchmarks" / "robustness_mb_cost_runs.json"
TARGET_DROP, MAX_CLEAN_LOSS = 0.30, 0.03


def _candidates():
    """The ``--candidates`` table: every configuration tried against the target of halving VBPR's drop."""
    runs = json.loads(CANDIDATE_RUNS.read_text()) if CANDIDATE_RUNS.exists() else []
    if not runs:
        return []
    out = ["## Candidates: halving VBPR's TikTok drop under FGSM-L2 5% (all modalities)", "",
           "`python benchmarks/robustness.py --candidates [NAME ...] --epochs 40` (runs in "
           "`benchmarks/robustness_candidates_runs.json`).  Target: attacked Recall@20 drop <= "
           f"{100 * TARGET_DROP:.0f}% (undefended: 60.9%) with at most {100 * MAX_CLEAN_LOSS:.0f}% clean loss.  "
           "Protocol of the tables above (40 epochs, best validation Recall@20 epoch, test split), 1 torch thread; "
           "*clean change* against the undefended VBPR row; *wall s* = training (as stored when the weights "
           "were reused) + attack seconds.  MB blocks: sensitive = visual, robust = audio unless `roles` says "
           "otherwise.  Every candidate tried is listed, also those that fail.", "",
           "| candidate | model | settings | best ep | val R@20 | clean R@20 | FGSM-all R@20 | FGSM-all drop | "
           "MSAP-all drop | FGSM-all 10% / 20% drop | promotion 5%: target exposure | clean change | target | "
           "wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        rows = [r for r in runs if r["dataset"] == dataset]
        base = next((r for r in rows if r["candidate"] == "none"), None)
        for r in rows:
            fg = r["attacks"].get("fgsm_l2-all-eps0.05", {})
            ms = r["attacks"].get("msap_l2-all-eps0.05", {})
            drop = fg.get("drop", {}).get("Recall")
            ms_drop = ms.get("drop", {}).get("Recall")
            larger = [r["attacks"].get(f"fgsm_l2-all-eps{eps}", {}).get("drop", {}).get("Recall")
                      for eps in ("0.1", "0.2")]
            promo = (r["attacks"].get("promotion-fgsm_l2-all-eps0.05-t50") or {}).get("promotion")
            exposure = ("–" if not promo else f"{100 * promo['target_exposure_clean']:.3f}% → "
                                              f"{100 * promo['target_exposure_attacked']:.3f}%")
            change = ((r["clean"]["Recall"] - base["clean"]["Recall"]) / base["clean"]["Recall"]
                      if base else None)
            block = r.get("defense_block") or {}
            settings = ", ".join([f"{k}={v}" for k, v in (r.get("overrides") or {}).items()] +
                                 [f"{k}={v}" for k, v in block.items()
                                  if k not in ("method", "sensitive_modality", "robust_modality")] +
                                 (["MB"] if block.get("method") == "modality_balancing" else []))
            met = (drop is not None and change is not None and drop <= TARGET_DROP and change >= -MAX_CLEAN_LOSS)
            out.append(f"| {r['candidate']} | {r['backbone']} | {settings or 'defaults'} | {r['best_epoch']} | "
                       f"{_fmt((r.get('validation') or {}).get('Recall'))} | {_fmt(r['clean']['Recall'])} | {_fmt(fg.get('values', {}).get('Recall'))} | "
                       f"{'–' if drop is None else f'{100 * drop:.1f}%'} | "
                       f"{'–' if ms_drop is None else f'{100 * ms_drop:.1f}%'} | "
                       f"{' / '.join('–' if d is None else f'{100 * d:.1f}%' for d in larger)} | {exposure} | "
                       f"{'–' if change is None else f'{100 * change:+.1f}%'} | {'**met**' if met else 'no'} | "
                       f"{r['train_seconds'] + r['attack_seconds']:.0f} |")
    return out + [""]


def _mb_cost():
    runs = json.loads(MB_COST_RUNS.read_text()) if MB_COST_RUNS.exists() else []
    if not runs:
        return []
    out = ["## Cost of Modality Balancing on graph backbones", "",
           "`OMP_NUM_THREADS=1 python benchmarks/robustness_mb_cost.py` (runs in "
           "`benchmarks/robustness_mb_cost_runs.json`): TikTok, one epoch, batch 2048, 1 thread; the three "
           "variants train their own copies side by side, interleaved batch by batch (the same host load for "
           "all).  *one pass per use*: MB as first written (a full `modality_embeddings` pass for the clean "
           "margins, each PGD step and the adversarial embedding); *shared passes*: the default (same losses and "
           "gradients to 1e-6, `tests/test_mb_cost.py`; see `ModalityBalancing.balance_loss`).  The host is "
           "shared with other jobs: compare within a row.", "",
           "| backbone | PGD steps | batches | none s/ep | MB one pass per use | MB shared passes | fast embedder |",
           "|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r["s_per_epoch"]
        none, old, new = t["none"], t["MB one pass per use"], t["MB shared passes"]
        out.append(f"| {r['backbone']} | {r['pgd_steps']} | {r['batches_per_epoch']} | {none:.2f} | "
                   f"{old:.2f} ({old / none:.1f}x) | {new:.2f} ({new / none:.1f}x; {old / new:.1f}x faster) | "
                   f"`{r['fast_embedder']}` |")
    return out + [""]


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
    from elliot.evaluation import certified

    derivation = certified.__doc__.split("Derivation (what is certified).")[1]
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
        "      - {method: promotion, targets: 50, attack: fgsm_l2, modality: each, eps_ratio: [0.01, 0.05]}",
        "      - {method: promotion, targets: [item_17, item_42], attack: msap, projection: l2, eps_ratio: 0.05}",
        "      - {method: missing_modality, modality: each, mode: [zero, mean, swap], fraction: [1.0, 0.5]}",
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
        "`name`.  `promotion`: `targets` (a count drawn from the long tail with the experiment's random_seed, "
        "default 50, or a list of original item ids), `attack` (fgsm_l2 | fgsm | msap, with the msap keys), "
        "`modality`, `eps_ratio` / `eps`, `cutoff` (K of the objective; default the largest cutoff), "
        "`batch_size` ((user, item) pairs per pass), `seed`, `split`, `name`; its tables add "
        "`target_exposure_clean`, `target_exposure_attacked`, `target_hr_*`, `target_mean_rank_*`.  "
        "`missing_modality`: `modality` (default each), `mode` (zero | mean | swap, a list = one each), "
        "`fraction` (of the items, default 1.0, a list = sweep), `seed`, `split`, `name`.  Results: `performance/rec_cutoff_<k>_relthreshold_<t>_<ts>_attack-<name>.tsv` (per "
        "configuration: metric, metric_attacked, metric_drop), `certified_radius_*.tsv`, and attacked rows in "
        "the final console table.",
        "",
        "## What is attacked, per model",
        "",
        "Every attack perturbs the raw feature matrices returned by `model.feature(m)` (the model's copy of "
        "the dataset's side information) for all items (a promotion: only the target items' rows; a missing-"
        "modality entry replaces rows instead of adding δ); no model fine-tunes these tensors (models that "
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
