"""Test Recall@20 under the published anchors' selection rule: the best *test* epoch.

    OMP_NUM_THREADS=1 python benchmarks/best_test_epoch.py config_files/bench/mmrec_protocol/grcn_tiktok.yml \
        [--epochs N] [--patience P] [--grid] [--work DIR]

DiffMM's Table 1 (HKUDS code) keeps, for every model, the epoch with the best test score, and MMRec reports
the grid point with the best test score.  Our runs never select on test, so ``docs/results.md`` cannot say
how much of a gap to a published number is that rule.  This script measures it on a copy of a bench config:
the validation split is replaced by the test split and validated every epoch (stop after ``--patience``
epochs without a new best, 20 as MMRec), so "the best validation epoch" *is* the best test epoch.  Every
list-valued hyperparameter is pinned to the configuration our validation selected in the stored run
(``benchmarks/results_runs.json``), or, with ``--grid``, every grid point is trained and the best one is
reported.  Under ``item_catalogue: all`` the catalogue does not change (it holds every item with side
information).

The number is a diagnostic, never a table row: it is selected on test.  The script prints the per-epoch
test Recall@20 and the best epoch and stores them in ``benchmarks/best_test_epoch_runs.json``;
``docs/results.md``'s anchors table shows the best as a separate, labelled column.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.config_copy import pinned_copy  # noqa: E402
from benchmarks.run_store import merge_runs  # noqa: E402

RUNS = ROOT / "benchmarks" / "best_test_epoch_runs.json"


def test_selected_config(config: Path, epochs: int | None, patience: int = 20, keep_grid: bool = False) -> dict:
    """The bench config with validation = test, validated every epoch, grid pinned to the selected point
    (``keep_grid``: every grid point is trained, as MMRec, which reports the grid point with the best test
    score)."""
    raw = pinned_copy(config, keep_grid)
    exp = raw["experiment"]
    data = exp["data_config"]
    data["validation_path"] = data["test_path"]
    for block in exp["models"].values():
        cap = int(epochs or block.get("epochs", 100))
        block["epochs"] = cap
        block["meta"] = {**block.get("meta", {}), "validation_rate": 1, "validation_metric": "Recall@20",
                         "early_stopping": {"patience": patience, "rule": "best"}}
    return raw


def _full_names(results_folder: Path) -> dict:
    """{history file stem: full trial name} from the run's trials store: a history file is named by
    ``file_stem``, which cuts a long configuration name to a prefix plus a hash."""
    from elliot.search.store import TrialStore
    from elliot.utils.paths import file_stem
    names = {}
    for trials in sorted(Path(results_folder, "trials").glob("*.jsonl")):
        for rec in TrialStore(trials.parent, trials.stem).records():
            name = (rec.get("result") or {}).get("name")
            if name:
                names[file_stem(name)] = name
    return names


def curves(results_folder: Path) -> list:
    """[{trial, curve [[epoch, test Recall@20], ...], best_epoch, best}] from a run's ``history/*.tsv``
    (``trial``: the full configuration name when the trials store has it, else the file's stem)."""
    names = _full_names(results_folder)
    out = []
    for history in sorted(Path(results_folder, "history").glob("*.tsv")):
        with history.open() as f:
            rows = [r for r in csv.DictReader(f, delimiter="\t") if r.get("val_Recall@20")]
        if rows:
            curve = [[int(r["epoch"]), float(r["val_Recall@20"])] for r in rows]
            epoch, value = max(curve, key=lambda c: c[1])
            out.append({"trial": names.get(history.stem, history.stem), "curve": curve, "best_epoch": epoch,
                        "best": value})
    return out


def record(config: Path, raw: dict, trials: list, grid: bool, patience: int) -> dict:
    """The stored entry of one diagnostic run (keyed like ``results_runs.json``: <config>::<model>)."""
    from benchmarks.results import _commit, protocol_of, run_key
    (name, block), = raw["experiment"]["models"].items()
    best = max(trials, key=lambda t: t["best"])
    return {f"{run_key(config)}::{name}": {
        "config": str(config.resolve().relative_to(ROOT)), "model": name.split(".")[-1],
        "dataset": raw["experiment"]["dataset"], "protocol": protocol_of(raw["experiment"]), "grid": grid,
        "epochs": block["epochs"], "patience": patience, "commit": _commit(), "date": time.strftime("%Y-%m-%d"),
        "trials": trials, "best": best["best"], "best_epoch": best["best_epoch"], "best_trial": best["trial"]}}


def stored(dataset: str) -> dict:
    """{our model: its stored diagnostic run on ``dataset`` under the MMRec protocol}."""
    if not RUNS.exists():
        return {}
    return {r["model"]: r for r in json.loads(RUNS.read_text()).values()
            if r["dataset"] == dataset and r["protocol"] == "mmrec"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--epochs", type=int, help="epoch cap (default: the config's)")
    parser.add_argument("--patience", type=int, default=20, help="epochs without a new best test score before stopping")
    parser.add_argument("--grid", action="store_true", help="train every grid point (MMRec's rule: the grid "
                        "point AND the epoch with the best test score) instead of pinning our validation's choice")
    parser.add_argument("--work", type=Path, help="folder for the copy and its results (default: a temp dir)")
    parser.add_argument("--from-results", type=Path, metavar="DIR", help="record a finished run of this script "
                        "from its results folder (<work>/results/<dataset>) instead of training")
    args = parser.parse_args(argv)
    raw = test_selected_config(args.config.resolve(), args.epochs, args.patience, args.grid)
    if len(raw["experiment"]["models"]) != 1:
        raise SystemExit(f"{args.config}: one model block per diagnostic run (it has "
                         f"{', '.join(raw['experiment']['models'])})")
    if args.from_results:
        folder = args.from_results
    else:
        from elliot.run import run_experiment
        work = args.work or Path(tempfile.mkdtemp(prefix="best_test_epoch_"))
        (work / "cfg").mkdir(parents=True, exist_ok=True)
        path = work / "cfg" / args.config.name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        folder = run_experiment(path, progress=False).results_folder
    trials = curves(folder)
    if not trials:
        raise SystemExit(f"{folder}: no history/*.tsv with test Recall@20 by epoch")
    for t in trials:
        print(f"{t['trial']}\n  test Recall@20 by epoch: " + " ".join(f"{e}:{v:.4f}" for e, v in t["curve"])
              + f"\n  best test epoch {t['best_epoch']}: {t['best']:.4f}")
    entry = record(args.config, raw, trials, args.grid, args.patience)
    merge_runs(RUNS, lambda runs: {**runs, **entry}, {})  # under the store's lock: other writers keep their runs
    (rec,) = entry.values()
    print(f"best: {rec['best']:.4f} at epoch {rec['best_epoch']} of {rec['best_trial']} (stored in "
          f"{RUNS.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
