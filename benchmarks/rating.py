"""Rating prediction on MovieLens-100K's five predefined folds (u1..u5), written to docs/rating.md.

    python benchmarks/rating.py [--folds 1 2 3 4 5] [--models GlobalMean BiasedMF ...] [--surprise]
                                [--grid] [--only-doc]

Protocol (said again in the doc): fold f trains on ``u{f}.base`` minus a validation carve-out
(``splitting.validation_splitting: random_subsampling, test_ratio 0.1``: 10% of each user's base ratings,
seeded by ``random_seed`` 42) and is tested on ``u{f}.test``; each model's epoch (and configuration, where
a grid is given) is selected on validation RMSE, never on test; test MAE / MSE / RMSE are pair-averaged
over every test pair whose user and item occur in training (the framework drops the ~30 cold pairs per
fold).  Everything runs through ``run_experiment`` (one config per fold and model, in a temporary folder).

Runs are stored in ``benchmarks/rating_runs.json`` keyed by (fold, model label); re-running replaces them,
and the doc is regenerated from the store.  DLRM with item features (``DLRM[visual]`` ...) runs when
``data/ml100k/image_feat.npy`` / ``text_feat.npy`` exist (another tool's extraction from the posters /
plots: `python -m elliot.features`, whose `<stem>.ids.tsv` item mappings sit next to them); otherwise those
rows are skipped and the doc says so.

``+attr`` labels add u.user / u.item (``UserAttributes`` / ``ItemAttributes``, ``format: ml100k``, read as
shipped).  ``--grid`` first runs a small grid of DLRM+attr on u1 (selected on u1's validation RMSE); the
``DLRM*`` labels then run its selected values on every fold.

``--surprise``: also run Surprise's SVD, SVD++ and BaselineOnly (``pip install scikit-surprise``; not a
dependency of this project) on each fold, once on the full ``u{f}.base`` (Surprise's own protocol) and
once on exactly this framework's training split (the carve-out removed), so the anchor is like for like.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run_store import merge_runs  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ml100k"
FEATURES = ROOT / "data" / "ml100k"
RUNS = ROOT / "benchmarks" / "rating_runs.json"
DOC = ROOT / "docs" / "rating.md"
METRICS = ("RMSE", "MAE", "MSE")
VALIDATION = {"strategy": "random_subsampling", "test_ratio": 0.1}
ES_META = {"validation_metric": "RMSE", "early_stopping": {"patience": 3, "rule": "best"}}
#: label -> (model name in the YAML, model block, modalities needed)
MODELS = {
    "GlobalMean": ("GlobalMean", {}, ()),
    "BiasBaseline": ("BiasBaseline", {}, ()),
    "BiasedMF": ("BiasedMF", {}, ()),
    "DLRM": ("external.DLRM", {}, ()),
    "DLRM[visual]": ("external.DLRM", {"modalities": ["visual"]}, ("visual",)),
    "DLRM[textual]": ("external.DLRM", {"modalities": ["textual"]}, ("textual",)),
    "DLRM[visual,textual]": ("external.DLRM", {"modalities": ["visual", "textual"]}, ("visual", "textual")),
    # u.user / u.item through UserAttributes / ItemAttributes (format: ml100k): every attribute (age, age
    # bucket, gender, occupation, zip region; genres, year) enters, with DLRM's defaults; early stopping
    # (3 validation checks without a new best) only shortens the runs, the epoch is still the best one
    "DLRM+attr": ("external.DLRM", {"meta": dict(ES_META)}, ("attributes",)),
    "DLRM+attr[visual]": ("external.DLRM", {"meta": dict(ES_META), "modalities": ["visual"]},
                          ("attributes", "visual")),
    "DLRM+attr[textual]": ("external.DLRM", {"meta": dict(ES_META), "modalities": ["textual"]},
                           ("attributes", "textual")),
    "DLRM+attr[visual,textual]": ("external.DLRM", {"meta": dict(ES_META), "modalities": ["visual", "textual"]},
                                  ("attributes", "visual", "textual")),
}
# SVD++'s implicit feedback (``history``): factors 64 and the l_w range were picked on u1's VALIDATION split
# (docs/rating.md, Reading); on every fold the l_w grid is selected on that fold's validation RMSE
HIST = {"meta": dict(ES_META), "history": True, "factors": 64, "l_w": [0.1, 0.2]}
#: the feature towers' regularisers for ``+hist[...]`` (picked on u1's validation split, docs/rating.md):
#: 16 principal components per feature set, a linear tower, dropout 0.5 and L2 l_t 1 on its outputs; l_w 0.2
#: (u1's validation choice for DLRM+hist, selected on 4 of 5 folds) fixed to halve the runs of the towers
MM_REG = {"feature_pca": 16, "tower_mlp": [], "tower_dropout": 0.5, "l_t": 1.0, "l_w": 0.2}
MODELS.update({
    "DLRM+hist": ("external.DLRM", dict(HIST), ()),
    "DLRM+hist[visual,textual]": ("external.DLRM", {**HIST, **MM_REG, "modalities": ["visual", "textual"]},
                                  ("visual", "textual")),
    "DLRM+hist+content[visual,textual]": ("external.DLRM", {**HIST, **MM_REG, "modalities": ["visual", "textual"],
                                                            "history_content": True}, ("visual", "textual")),
    # the same with l_w selected per fold on validation from HIST's grid, as DLRM+hist (not fixed at 0.2)
    "DLRM+hist+content[visual,textual] l_w grid": ("external.DLRM", {
        **HIST, **MM_REG, "l_w": HIST["l_w"], "modalities": ["visual", "textual"], "history_content": True},
        ("visual", "textual")),
    # history + u.user / u.item attributes, without and with the posters / plots
    "DLRM+hist+attr": ("external.DLRM", dict(HIST), ("attributes",)),
    "DLRM+hist+attr+content[visual,textual]": ("external.DLRM", {
        **HIST, **MM_REG, "modalities": ["visual", "textual"], "history_content": True},
        ("attributes", "visual", "textual")),
})
#: ``--grid``: a small grid of DLRM+attr on u1 only, selected on u1's validation RMSE (the test split is not
#: read for the choice); the ``DLRM*`` labels then run its selected values on every fold
GRID_LABEL = "DLRM+attr grid (u1)"
GRID = {"factors": [32, 64], "l_w": [0.03, 0.1], "dropout": [0.0, 0.3]}
TUNED_LABELS = {"DLRM*": (), "DLRM*+attr": ("attributes",), "DLRM*+attr[textual]": ("attributes", "textual"),
                "DLRM*+attr[visual]": ("attributes", "visual"),
                "DLRM*+attr[visual,textual]": ("attributes", "visual", "textual")}
MODELS[GRID_LABEL] = ("external.DLRM", {"meta": dict(ES_META), **GRID}, ("attributes",))


def tuned_models() -> dict:
    """The ``DLRM*`` labels with the grid's selected values (empty until ``--grid`` has run)."""
    row = (merge_runs(RUNS, lambda runs: runs, {}) if RUNS.exists() else {}).get(f"u1::{GRID_LABEL}")
    if row is None:
        return {}
    chosen = {k: row["params"][k] for k in GRID}
    return {label: ("external.DLRM", {"meta": dict(ES_META), **chosen,
                                      **({"modalities": [m for m in needs if m != "attributes"]}
                                         if len(needs) > 1 else {})}, needs)
            for label, needs in TUNED_LABELS.items()}


FEATURE_FILES = {"visual": "image_feat.npy", "textual": "text_feat.npy"}
#: Surprise's README table (its benchmark script: a random 5-fold CV of u.data, default parameters)
PUBLISHED = {"SVD": (0.934, 0.737), "SVD++": (0.919, 0.721), "BaselineOnly": (0.944, 0.748)}


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def _mapping_file(features: Path) -> Path | None:
    """The item mapping of a feature matrix: elliot.features' ``<stem>.ids.tsv`` next to it, else one shared
    mapping file in ``data/ml100k/``."""
    own = features.with_name(features.stem + ".ids.tsv")
    if own.exists():
        return own
    for name in ("item_mapping.tsv", "items.tsv", "item_map.tsv", "mapping.tsv"):
        if (FEATURES / name).exists():
            return FEATURES / name
    found = sorted(p for p in FEATURES.glob("*map*") if p.suffix in (".tsv", ".txt", ".csv"))
    return found[0] if found else None


def attribute_entries() -> list:
    """ML-100K's own u.user / u.item as UserAttributes / ItemAttributes entries (read as shipped)."""
    return [{"dataloader": "UserAttributes", "attribute_file": str(DATA / "u.user"), "format": "ml100k"},
            {"dataloader": "ItemAttributes", "attribute_file": str(DATA / "u.item"), "format": "ml100k"}]


def available_modalities() -> dict:
    """modality -> side_information entry, for the feature files present (``attributes``: u.user and
    u.item, see :func:`attribute_entries`)."""
    out = {"attributes": None} if (DATA / "u.item").exists() and (DATA / "u.user").exists() else {}
    for modality, name in FEATURE_FILES.items():
        path = FEATURES / name
        if path.exists():
            mapping = _mapping_file(path)
            loader = "VisualAttribute" if modality == "visual" else "TextualAttribute"
            entry = {"dataloader": loader, f"{modality}_features": str(path)}
            if mapping is not None:
                entry["item_mapping"] = str(mapping)
            out[modality] = entry
    return out


def experiment(fold: int, name: str, block: dict, modalities, folder: Path) -> dict:
    data_config = {"strategy": "fixed", "train_path": str(DATA / f"u{fold}.base"),
                   "test_path": str(DATA / f"u{fold}.test")}
    if modalities:
        entries = available_modalities()
        data_config["side_information"] = [entries[m] for m in modalities if m != "attributes"]
        if "attributes" in modalities:
            data_config["side_information"] += attribute_entries()
        data_config["missing_features"] = "mean"  # items without a poster / plot keep their ratings
    block = {"meta": {"validation_metric": "RMSE"}, **block}
    return {"experiment": {
        "dataset": f"ml100k_u{fold}", "random_seed": 42, "data_config": data_config,
        "splitting": {"validation_splitting": dict(VALIDATION)},
        "evaluation": {"cutoffs": [10], "simple_metrics": list(METRICS)},
        "path_output_rec_result": str(folder / "results" / "recs"),
        "path_output_rec_weight": str(folder / "results" / "weights"),
        "path_output_rec_performance": str(folder / "results" / "performance"),
        "path_log_folder": str(folder / "log"),
        "models": {name: block}}}


def run_one(fold: int, label: str) -> dict:
    import torch

    from elliot.run import run_experiment

    name, block, modalities = {**MODELS, **tuned_models()}[label]
    with tempfile.TemporaryDirectory(prefix="elliot-rating-") as tmp:
        folder = Path(tmp)
        config = folder / "config.yml"
        config.write_text(yaml.safe_dump(experiment(fold, name, block, modalities, folder)))
        start = time.perf_counter()
        result = run_experiment(config, progress=False)
        wall = time.perf_counter() - start
        test_pairs = _test_pairs(config)
    best = result.best[name]
    return {"fold": fold, "model": label, "name": best.name, "params": dict(best.params),
            "test": {m: best.test[10][m] for m in METRICS},
            "validation": {m: best.validation.get(10, {}).get(m, float("nan")) for m in METRICS},
            "best_epoch": best.best_epoch, "epochs_run": best.epochs_run,
            "seconds_per_epoch": best.seconds_per_epoch, "train_seconds": best.train_seconds,
            "trials": len(result.trials[name]), "wall_seconds": wall, "test_pairs": test_pairs, "commit": _commit(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}


def _test_pairs(config: Path) -> int:
    """Test pairs the framework scores (those whose user and item have training ratings)."""
    import warnings

    from elliot.config import load_config
    from elliot.dataset.builder import build_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(build_dataset(load_config(config).experiment_dict()).test.nnz)


def run_surprise(fold: int) -> list:
    """Surprise's SVD / SVD++ / BaselineOnly on the full base and on this framework's training split."""
    from surprise import SVD, BaselineOnly, Dataset as SDataset, Reader, SVDpp, accuracy
    from surprise.model_selection import PredefinedKFold

    from elliot.config import load_config
    from elliot.dataset.builder import build_dataset

    reader = Reader(line_format="user item rating timestamp", sep="\t")
    rows = []
    with tempfile.TemporaryDirectory(prefix="elliot-rating-surprise-") as tmp:
        folder = Path(tmp)
        config = folder / "config.yml"
        config.write_text(yaml.safe_dump(experiment(fold, "GlobalMean", {}, (), folder)))
        ds = build_dataset(load_config(config).experiment_dict())
        coo = ds.train.tocoo()
        carved = folder / "train.tsv"
        carved.write_text("".join(f"{u}\t{i}\t{r:g}\t0\n" for u, i, r in zip(
            ds.user_ids[coo.row].tolist(), ds.item_ids[coo.col].tolist(), coo.data.tolist())))
        for protocol, train in (("full base", DATA / f"u{fold}.base"), ("our training split", carved)):
            data = SDataset.load_from_folds([(str(train), str(DATA / f"u{fold}.test"))], reader)
            trainset, testset = next(PredefinedKFold().split(data))
            for algo_name, algo in (("SVD", SVD(random_state=0)), ("SVD++", SVDpp(random_state=0)),
                                    ("BaselineOnly", BaselineOnly(verbose=False))):
                start = time.perf_counter()
                algo.fit(trainset)
                preds = algo.test(testset)
                seconds = time.perf_counter() - start
                warm = [p for p in preds if not p.details.get("was_impossible", False)
                        and trainset.knows_user(_inner(trainset.to_inner_uid, p.uid))
                        and trainset.knows_item(_inner(trainset.to_inner_iid, p.iid))]
                rows.append({"fold": fold, "model": f"Surprise {algo_name} ({protocol})",
                             "test": {"RMSE": accuracy.rmse(preds, verbose=False),
                                      "MAE": accuracy.mae(preds, verbose=False),
                                      "MSE": accuracy.mse(preds, verbose=False)},
                             "test_warm": {"RMSE": accuracy.rmse(warm, verbose=False),
                                           "MAE": accuracy.mae(warm, verbose=False)},
                             "test_pairs": len(testset), "warm_pairs": len(warm), "seconds": seconds,
                             "date": time.strftime("%Y-%m-%d")})
    return rows


def _inner(convert, raw) -> int:
    """Surprise's inner id of a raw id, -1 when it is not in the trainset."""
    try:
        return convert(raw)
    except ValueError:
        return -1


def _store(rows: list) -> dict:
    def update(runs: dict) -> dict:
        for row in rows:
            runs[f"u{row['fold']}::{row['model']}"] = row
        return runs
    return merge_runs(RUNS, update, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--models", nargs="*", default=None, help=f"labels among {list(MODELS)} (default: all runnable; "
                    "none: `--models` alone, e.g. with --surprise)")
    ap.add_argument("--surprise", action="store_true", help="also run Surprise's SVD / SVD++ / BaselineOnly anchors")
    ap.add_argument("--only-doc", action="store_true")
    ap.add_argument("--grid", action="store_true", help=f"run {GRID_LABEL} ({GRID}) on u1 first")
    args = ap.parse_args()
    if not args.only_doc:
        if not DATA.exists():
            sys.exit(f"{DATA} not found: the ML-100K folds are needed")
        present = available_modalities()
        if args.grid:
            _store([run_one(1, GRID_LABEL)])
        models = {**MODELS, **tuned_models()}
        labels = args.models if args.models is not None else [m for m, (_, _, mods) in models.items() if all(x in present for x in mods)
                                 and m != GRID_LABEL]
        for label in labels:
            if label not in models:
                print(f"{label}: skipped, unknown here (the DLRM* labels need --grid first)")
                continue
            if any(x not in present for x in models[label][2]):
                print(f"{label}: skipped, feature files {[FEATURE_FILES[x] for x in models[label][2]]} not in {FEATURES}")
                continue
            for fold in (args.folds if label != GRID_LABEL else [1]):
                row = run_one(fold, label)
                _store([row])
                print(f"u{fold} {label}: test RMSE {row['test']['RMSE']:.4f} MAE {row['test']['MAE']:.4f} "
                      f"(epoch {row['best_epoch']}, {row['seconds_per_epoch']:.2f} s/epoch)", flush=True)
        if args.surprise:
            for fold in args.folds:
                rows = run_surprise(fold)
                _store(rows)
                for row in rows:
                    print(f"u{fold} {row['model']}: test RMSE {row['test']['RMSE']:.4f}", flush=True)
    from benchmarks.rating_doc import write_doc

    write_doc(merge_runs(RUNS, lambda runs: runs, {}))


if __name__ == "__main__":
    main()
