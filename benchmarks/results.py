"""Run benchmark configs on the real datasets and write docs/results.md from the real runs.

    python benchmarks/results.py [config_files/bench/*.yml ...] [--only-doc]

Every run of a config stores, per model, every trial (validation and test metrics, seconds per epoch,
epochs) in ``benchmarks/results_runs.json`` keyed by (config file, model); re-running a config replaces
its entries.  ``docs/results.md`` is then regenerated from that file: one row per dataset and model,
the configuration selected on validation Recall@20 (never on test), its test metrics, median seconds
per epoch, the epoch chosen and the grid searched.  Configs whose data is absent (../shared/data) are
skipped with a message.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elliot.errors import ElliotError  # noqa: E402
from benchmarks.run_store import merge_runs  # noqa: E402
from elliot.run import run_experiment  # noqa: E402

RUNS = ROOT / "benchmarks" / "results_runs.json"
DOC = ROOT / "docs" / "results.md"
CUTOFFS = (10, 20, 50)
DATASET_ORDER = ("tiktok", "lfm2k", "ml100k", "default")
MODEL_ORDER = ("MostPop", "BPRMF", "LightGCN", "VBPR", "LightGCNM", "MMGCN", "GRCN", "LATTICE", "SLMRec",
               "FREEDOM", "AMR")


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def _metrics(values) -> dict:
    return {str(k): {m: float(v) for m, v in values[k].items()} for k in values if int(k) in CUTOFFS}


def run_config(path: Path, runs: dict) -> None:
    import torch

    start = time.perf_counter()
    result = run_experiment(path, progress=False)
    wall = time.perf_counter() - start
    dataset = result.results_folder.name
    for model, trials in result.trials.items():
        best = result.best[model]
        runs[f"{path.name}::{model}"] = {
            "config": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "dataset": dataset, "model": model.split(".")[-1], "commit": _commit(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "date": time.strftime("%Y-%m-%d"), "config_wall_seconds": wall,
            "best": best.name,
            "trials": [{"name": t.name, "params": {k: v for k, v in t.params.items()},
                        "best_epoch": t.best_epoch, "epochs_run": t.epochs_run,
                        "seconds_per_epoch": t.seconds_per_epoch, "train_seconds": t.train_seconds,
                        "selected_on": t.selected_on,
                        "validation": _metrics(t.validation or {}), "test": _metrics(t.test)}
                       for t in trials],
        }
        b = next(t for t in runs[f"{path.name}::{model}"]["trials"] if t["name"] == best.name)
        print(f"{dataset} {model}: test Recall@20 {b['test']['20']['Recall']:.4f} nDCG@20 "
              f"{b['test']['20']['nDCG']:.4f} ({len(trials)} trials, {wall:.0f} s)", flush=True)


def _grid(trials) -> str:
    """The hyperparameters that vary across trials, with their values."""
    keys = sorted({k for t in trials for k in t["params"]})
    varying = []
    for k in keys:
        values = []
        for t in trials:
            v = t["params"].get(k)
            if v not in values:
                values.append(v)
        if len(values) > 1:
            varying.append(f"{k} ∈ {{{', '.join(str(v) for v in values)}}}")
    return "; ".join(varying) or "-"


def _order(entry) -> tuple:
    ds = DATASET_ORDER.index(entry["dataset"]) if entry["dataset"] in DATASET_ORDER else 99
    m = MODEL_ORDER.index(entry["model"]) if entry["model"] in MODEL_ORDER else 99
    return ds, m, entry["model"]


def write_doc(runs: dict) -> None:
    entries = sorted(runs.values(), key=_order)
    lines = ["# Results on real data", "",
             "Written by `python benchmarks/results.py` from the runs stored in `benchmarks/results_runs.json` "
             "(re-run one config with `python benchmarks/results.py config_files/bench/<file>.yml`).", "",
             "Protocol (every row): full ranking over all items; training items masked, and validation items "
             "masked at test time; the configuration AND the epoch are selected on validation Recall@20 "
             "(validation every 5 epochs, early stopping), never on test; the test metrics of that "
             "configuration at its best epoch are reported.  s/epoch = median seconds per training epoch "
             "(2 CPU cores, no GPU).  *best ep* = epoch selected, *ran* = epochs trained before early "
             "stopping.  Hyperparameters not in the grid column are those of the config file.", ""]
    for dataset in sorted({e["dataset"] for e in entries}, key=lambda d: DATASET_ORDER.index(d)
                          if d in DATASET_ORDER else 99):
        lines += [f"## {dataset}", "",
                  "| model | Recall@20 | nDCG@20 | Precision@20 | Recall@10 | Recall@50 | val Recall@20 | "
                  "s/epoch | best ep | ran | trials | grid | selected configuration | config | commit |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in (e for e in entries if e["dataset"] == dataset):
            b = next(t for t in e["trials"] if t["name"] == e["best"])
            t20, t10, t50 = b["test"]["20"], b["test"].get("10", {}), b["test"].get("50", {})
            val = b["validation"].get("20", {}).get("Recall", float("nan"))
            spe = b["seconds_per_epoch"]
            lines.append(
                f"| {e['model']} | {t20['Recall']:.4f} | {t20['nDCG']:.4f} | {t20['Precision']:.4f} | "
                f"{t10.get('Recall', float('nan')):.4f} | {t50.get('Recall', float('nan')):.4f} | {val:.4f} | "
                f"{'-' if spe != spe else f'{spe:.3f}'} | {b['best_epoch']} | {b['epochs_run']} | "
                f"{len(e['trials'])} | {_grid(e['trials'])} | `{e['best']}` | `{e['config']}` | {e['commit']} |")
        lines.append("")
    notes = ROOT / "docs" / "results_notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--only-doc", action="store_true", help="regenerate the doc from the stored runs")
    args = parser.parse_args(argv)
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    if not args.only_doc:
        paths = [p.resolve() for p in args.configs] or sorted((ROOT / "config_files" / "bench").glob("*.yml"))
        for path in paths:
            mine: dict = {}
            try:
                run_config(path, mine)
            except ElliotError as exc:
                print(f"skip {path.name}: {exc}", flush=True)
                continue
            runs = _merge_runs(mine)  # after every config: never lose a run (also another process's)
            write_doc(runs)
    write_doc(runs)


def _merge_runs(new: dict) -> dict:
    """Add ``new`` entries to the stored runs (several configs may run at once)."""
    return merge_runs(RUNS, lambda runs: {**runs, **new}, {})


if __name__ == "__main__":
    main()
