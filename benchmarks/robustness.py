"""Robustness benchmark: clean vs attacked Recall@20 / nDCG@20 per modality, with and without defenses.

    python benchmarks/robustness.py [--datasets default tiktok] [--epochs 30] [--models VBPR LightGCNM ...]
                                    [--suites untargeted sweep promotion missing] [--only-doc]

For each dataset (the embedded ``data/default`` with the data section of ``config_files/default.yml``,
and ``../shared/data/tiktok`` when present) and each backbone (VBPR, LightGCNM, LATTICE when its
package exists) it trains the plain model, the model with Modality Balancing (``defense`` block),
the model with CRMT (step 1 regulariser + step 2 integration weights) and the model with Mirror
Gradient; plus AMR next to VBPR.  Each run: fixed epochs, validation every 5 epochs, best epoch on
validation Recall@20 (never test), then on test: clean metrics, FGSM-L2 at 5% of each item's feature
norm per modality and on all modalities jointly, MSAP (PGD, L2 ball, 10 steps, 5%) on all
modalities, and the certified radius (256 test triples).  Every run is appended to
``benchmarks/robustness_runs.json`` (re-runs replace the same key); ``docs/robustness.md`` is written
from that file.  The ``sweep``, ``promotion`` and ``missing`` suites (targeted item promotion, missing
modalities, budget curves) are :mod:`benchmarks.robustness_targeted`.  Trained models are stored in
``benchmarks/robustness_weights/`` and reused by any later run with the same settings.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from benchmarks.robustness_doc import RUNS, write_doc  # noqa: E402
from benchmarks.run_store import merge_runs  # noqa: E402

WEIGHTS = ROOT / "benchmarks" / "robustness_weights"  # trained models, reused by later runs (git-ignored)
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


#: ``--candidates``: defense configurations measured against the target "halve VBPR's TikTok FGSM-L2 5%
#: all-modality Recall@20 drop (60.9% -> <= 30%) at <= 3% clean loss"; name -> (backbone, hyperparameter
#: overrides, defense block, training block).  MB blocks get sensitive = first modality, robust = second.
CANDIDATES = {
    "none": ("VBPR", {}, None, None),
    "MB": ("VBPR", {}, {"method": "modality_balancing"}, None),
    "feature_norm": ("VBPR", {"feature_norm": True}, None, None),
    "MB(lambda=0.1)": ("VBPR", {}, {"method": "modality_balancing", "lambda": 0.1}, None),
    "MB(lambda=1)": ("VBPR", {}, {"method": "modality_balancing", "lambda": 1.0}, None),
    "MB(N=200)": ("VBPR", {}, {"method": "modality_balancing", "N": 200}, None),
    "MB(roles=alternate)": ("VBPR", {}, {"method": "modality_balancing", "roles": "alternate"}, None),
    "MB(roles=both)": ("VBPR", {}, {"method": "modality_balancing", "roles": "both"}, None),
    "MB+feature_norm": ("VBPR", {"feature_norm": True}, {"method": "modality_balancing"}, None),
    "feature_norm(l_e=2e-4)": ("VBPR", {"feature_norm": True, "l_e": 2e-4}, None, None),
    "feature_norm(normalize=false)": ("VBPR", {"feature_norm": True, "normalize": False}, None, None),
    "VBPR(lr=0.01)": ("VBPR", {"lr": 0.01}, None, None),
    "VBPR(visual_bias=false)": ("VBPR", {"visual_bias": False}, None, None),
    "VBPR(visual_bias=false)+MB": ("VBPR", {"visual_bias": False}, {"method": "modality_balancing"}, None),
    "VBPR(visual_bias=false, lr=0.01)": ("VBPR", {"visual_bias": False, "lr": 0.01}, None, None),
    "VBPR(visual_bias=false, lr=0.01)+MB": ("VBPR", {"visual_bias": False, "lr": 0.01},
                                            {"method": "modality_balancing"}, None),
    "VBPR(visual_bias=false, l_w=0.001)": ("VBPR", {"visual_bias": False, "l_w": 0.001}, None, None),
    "VBPR(visual_bias=false, lr=0.01, l_w=0.001)": ("VBPR", {"visual_bias": False, "lr": 0.01, "l_w": 0.001},
                                                    None, None),
    "AMR": ("AMR", {}, None, None),
    "AMR(all epochs)": ("AMR", {"adversarial_epochs": 40}, None, None),
    "AMR(all epochs, l_adv=0.1)": ("AMR", {"adversarial_epochs": 40, "l_adv": 0.1}, None, None),
    "AMR(all epochs, eps=0.01)": ("AMR", {"adversarial_epochs": 40, "eps": 0.01}, None, None),
    "AMR(all epochs, lr=0.01)": ("AMR", {"adversarial_epochs": 40, "lr": 0.01}, None, None),
    "AMR(catalogue)": ("AMR", {"perturbation": "catalogue"}, None, None),
    "AMR+MB": ("AMR", {}, {"method": "modality_balancing"}, None),
    "AMR(catalogue)+MB": ("AMR", {"perturbation": "catalogue"}, {"method": "modality_balancing"}, None),
    "AMR(catalogue, all epochs)": ("AMR", {"perturbation": "catalogue", "adversarial_epochs": 40}, None, None),
}
CANDIDATE_ATTACKS = [{"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.05},
                     {"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.10},
                     {"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.20},
                     {"method": "promotion", "targets": 50, "attack": "fgsm_l2", "modality": "all", "eps_ratio": 0.05},
                     {"method": "msap", "projection": "l2", "modality": "all", "eps_ratio": 0.05, "nb_iter": 10}]
#: parameters (with their defaults) that models gained after the stored weights were trained
LATER_PARAMS = {"feature_norm": False, "perturbation": "batch", "visual_bias": True}
CANDIDATE_RUNS = ROOT / "benchmarks" / "robustness_candidates_runs.json"


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


def _weights_file(dataset_name: str, backbone: str, defense: str, epochs: int, seed: int) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset_name}_{backbone}_{defense}_e{epochs}_s{seed}")
    return WEIGHTS / f"{stem}.pt"


def trained_model(dataset, backbone: str, defense: str, epochs: int, seed: int = 42, reuse: bool = True,
                  candidate: tuple = None):
    """(model ready for test evaluation, training info): trained with the protocol of the module docstring,
    or loaded from ``benchmarks/robustness_weights/`` when a run with the same hyperparameters and defense
    blocks stored its weights there (``reuse``); every training stores them.  ``candidate``: a
    :data:`CANDIDATES` entry (backbone, overrides, defense block, training block) instead of the
    ``DEFENSES[defense]`` blocks (``defense`` then names the weights file)."""
    from elliot.config.params import coerce_params, expand_grid
    from elliot.evaluation.evaluator import Evaluator
    from elliot.recommender.registry import available_models
    from elliot.training.defenses import build_addons, finalize
    from elliot.training.defenses.crmt import IntegratedModel
    from elliot.training.trainer import Trainer

    registry, raw = BACKBONES[backbone]
    cls = available_models()[registry]
    modalities = list(dataset.features)
    overrides, block, training = ({}, *DEFENSES[defense]) if candidate is None else candidate[1:]
    raw = {**raw, **overrides, "epochs": epochs, "batch_size": 2048, "seed": seed}
    hp = expand_grid(coerce_params(cls.declared_params(), raw, registry))[0]
    if block and backbone in GRAPH:
        block = {**block, **GRAPH_OVERRIDES.get(block["method"], {})}
    if block and block["method"] == "modality_balancing":
        block = {**block, "sensitive_modality": modalities[0], "robust_modality": modalities[1]}
    params = {k: v for k, v in hp.items() if not isinstance(v, list)}
    path = _weights_file(dataset.name, backbone, defense, epochs, seed)
    # hyperparameters added after weights were stored: at their defaults they leave the key as it was
    keyed = {k: v for k, v in params.items() if LATER_PARAMS.get(k, object()) != v}
    torch.manual_seed(seed)
    model = cls(dataset, hp, torch.device("cpu"))
    evaluator = Evaluator(dataset, cutoffs=[10, 20], metrics=["Recall", "nDCG"])
    key = {"params": json.dumps(keyed, sort_keys=True, default=str), "block": json.dumps(block, sort_keys=True),
           "training": json.dumps(training, sort_keys=True)}
    saved = torch.load(path, map_location="cpu", weights_only=False) if reuse and path.exists() else None
    if saved is not None and saved.get("key") == key:
        model.load_state_dict(saved["state_dict"])
        if saved.get("integration"):
            model = IntegratedModel(model, saved["integration"])
        return model, {**saved["info"], "loaded_weights": True}
    addons = build_addons(model, dataset, defense=block, training=training, seed=seed) if (block or training) else []
    trainer = Trainer(model, dataset, evaluator, epochs=epochs, batch_size=2048, seed=seed, validation_rate=5,
                      validation_metric="Recall@20", addons=addons, progress=False)
    start = time.perf_counter()
    fit = trainer.fit()
    step1 = evaluator.evaluate(model, "test").values[CUTOFF] if any(a.name == "crmt" for a in addons) else None
    base = model
    model = finalize(model, dataset, addons)
    weights = ({b: float(a) for b, a in model.weight_dict().items()} if hasattr(model, "weight_dict") else None)
    info = {"epochs": epochs, "best_epoch": fit.best_epoch, "s_per_epoch": fit.seconds_per_epoch,
            "train_seconds": time.perf_counter() - start, "defense_block": block, "training_block": training,
            "clean_before_integration": step1, "weights": weights, "params": params}
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "state_dict": base.state_dict(), "integration": weights, "info": info}, path)
    return model, {**info, "loaded_weights": False}


def run_one(dataset, backbone: str, defense: str, epochs: int, seed: int = 42) -> dict:
    from elliot.evaluation.attacks import evaluate_attacks
    from elliot.evaluation.evaluator import Evaluator

    model, info = trained_model(dataset, backbone, defense, epochs, seed)
    evaluator = Evaluator(dataset, cutoffs=[10, 20], metrics=["Recall", "nDCG"])
    clean = evaluator.evaluate(model, "test")
    start = time.perf_counter()
    records = evaluate_attacks(model, dataset, evaluator, ATTACKS, clean=clean, seed=seed)
    record = {"dataset": dataset.name, "backbone": backbone, "defense": defense, "epochs": epochs,
              "best_epoch": info["best_epoch"], "s_per_epoch": info["s_per_epoch"], "attack_seconds":
              time.perf_counter() - start, "clean": clean.values[CUTOFF], "attacks": {}, "certified": {},
              "defense_block": info["defense_block"], "training_block": info["training_block"],
              "clean_before_integration": info["clean_before_integration"], "weights": info["weights"],
              "params": info["params"]}
    for r in records:
        if r.get("skipped"):
            record["attacks"][r["name"]] = {"skipped": r["skipped"]}
        elif r["method"] == "certified_radius":
            record["certified"] = r["values"]
        elif r["cutoff"] == CUTOFF:
            record["attacks"][r["name"]] = {"values": r["values"], "drop": r["drop"]}
    return record


def _candidate_model(dataset, name: str, epochs: int, seed: int):
    """The :data:`CANDIDATES` entry ``name`` trained, or its stored weights loaded (the plain AMR is stored as
    "AMR none")."""
    spec = CANDIDATES[name]
    return trained_model(dataset, spec[0], "none" if name == spec[0] else name, epochs, seed, candidate=spec)


def run_candidate(dataset, name: str, epochs: int, seed: int = 42) -> dict:
    """One :data:`CANDIDATES` entry: trained (or stored weights reused), clean and attacked test Recall@20
    / nDCG@20 under :data:`CANDIDATE_ATTACKS`; *wall s* = training (as stored) + attack seconds."""
    from elliot.evaluation.attacks import evaluate_attacks
    from elliot.evaluation.evaluator import Evaluator

    spec = CANDIDATES[name]
    model, info = _candidate_model(dataset, name, epochs, seed)
    evaluator = Evaluator(dataset, cutoffs=[20], metrics=["Recall", "nDCG"])
    clean = evaluator.evaluate(model, "test")
    validation = evaluator.evaluate(model, "validation").values[CUTOFF]  # what a researcher may select on
    start = time.perf_counter()
    records = evaluate_attacks(model, dataset, evaluator, CANDIDATE_ATTACKS, clean=clean, seed=seed,
                               target_seed=seed)
    attack_seconds = time.perf_counter() - start
    return {"dataset": dataset.name, "candidate": name, "backbone": spec[0], "overrides": spec[1],
            "defense_block": info["defense_block"], "training_block": info["training_block"], "epochs": epochs,
            "best_epoch": info["best_epoch"], "s_per_epoch": info["s_per_epoch"],
            "train_seconds": info["train_seconds"], "attack_seconds": attack_seconds,
            "loaded_weights": info["loaded_weights"], "threads": torch.get_num_threads(),
            "clean": clean.values[CUTOFF], "validation": validation,
            "attacks": {r["name"]: {"values": r["values"], "drop": r["drop"],
                                    **({"promotion": r["promotion"]} if r.get("promotion") else {})}
                        for r in records if not r.get("skipped") and r["cutoff"] == CUTOFF}}


def fill_validation(dataset, epochs: int, seed: int = 42) -> None:
    """Add the clean validation Recall@20 / nDCG@20 (at the selected epoch) to stored candidate records that
    lack it, from their stored weights (no training, no attack)."""
    from elliot.evaluation.evaluator import Evaluator

    evaluator = Evaluator(dataset, cutoffs=[20], metrics=["Recall", "nDCG"])
    runs = json.loads(CANDIDATE_RUNS.read_text()) if CANDIDATE_RUNS.exists() else []
    for record in runs:
        if record.get("validation") or record["dataset"] != dataset.name or record["candidate"] not in CANDIDATES:
            continue
        model, info = _candidate_model(dataset, record["candidate"], record["epochs"], seed)
        if not info["loaded_weights"]:
            raise SystemExit(f"{record['candidate']}: no stored weights; rerun --candidates for it")
        record["validation"] = evaluator.evaluate(model, "validation").values[CUTOFF]
        save_candidate(record)


def save_candidate(record: dict) -> None:
    key = (record["dataset"], record["candidate"])
    merge_runs(CANDIDATE_RUNS, lambda runs: [r for r in runs if (r["dataset"], r["candidate"]) != key] + [record],
               [])


def save(record: dict) -> None:
    """Store ``record``, replacing an earlier run of the same (dataset, backbone, defense)."""
    key = (record["dataset"], record["backbone"], record["defense"])
    merge_runs(RUNS, lambda runs: [r for r in runs if (r["dataset"], r["backbone"], r["defense"]) != key]
               + [record], [])


def main() -> None:
    from benchmarks.robustness_targeted import SUITES, run_targeted, save as save_targeted, suites_for

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["default", "tiktok"])
    parser.add_argument("--models", nargs="*", default=["VBPR", "LightGCNM", "LATTICE"])
    parser.add_argument("--defenses", nargs="*", default=["none", "MB", "CRMT", "MG"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--epochs-graph", type=int, default=None, help="epochs of graph models (default --epochs)")
    parser.add_argument("--amr", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--suites", nargs="*", default=["untargeted", *SUITES], choices=["untargeted", *SUITES],
                        help="untargeted: the attack tables above; sweep / promotion / missing: "
                             "benchmarks/robustness_targeted.py")
    parser.add_argument("--only-doc", action="store_true")
    parser.add_argument("--fill-validation", action="store_true",
                        help="add clean validation metrics to stored candidate records from their weights")
    parser.add_argument("--candidates", nargs="*", default=None, metavar="NAME",
                        help=f"only the defense candidates for VBPR on TikTok (no names: all of {list(CANDIDATES)}); "
                             "stored in benchmarks/robustness_candidates_runs.json")
    args = parser.parse_args()
    if args.fill_validation:
        for dataset in datasets(["tiktok"]).values():
            fill_validation(dataset, args.epochs)
    elif args.candidates is not None and not args.only_doc:
        unknown = [c for c in args.candidates if c not in CANDIDATES]
        if unknown:
            raise SystemExit(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
        for name, dataset in datasets(["tiktok"]).items():
            for cand in args.candidates or list(CANDIDATES):
                start = time.perf_counter()
                record = run_candidate(dataset, cand, args.epochs)
                save_candidate(record)
                fg = record["attacks"].get("fgsm_l2-all-eps0.05", {}).get("drop", {}).get("Recall")
                print(f"{name} {cand}: clean R@20 {record['clean']['Recall']:.4f}, FGSM-all drop "
                      f"{100 * fg:.1f}% ({time.perf_counter() - start:.0f}s)", flush=True)
    elif not args.only_doc:
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
                if "untargeted" in args.suites:
                    start = time.perf_counter()
                    record = run_one(dataset, backbone, defense, epochs)
                    save(record)
                    print(f"{name} {backbone} {defense}: clean R@20 {record['clean']['Recall']:.4f} "
                          f"({time.perf_counter() - start:.0f}s)", flush=True)
                targeted = suites_for(backbone, defense, args.suites)
                if targeted:
                    start = time.perf_counter()
                    record = run_targeted(dataset, backbone, defense, epochs, targeted)
                    save_targeted(record)
                    print(f"{name} {backbone} {defense} {'+'.join(targeted)}: clean R@20 "
                          f"{record['clean']['Recall']:.4f} ({time.perf_counter() - start:.0f}s, "
                          f"{'stored weights' if record['loaded_weights'] else 'trained'})", flush=True)
    write_doc()


if __name__ == "__main__":
    main()
