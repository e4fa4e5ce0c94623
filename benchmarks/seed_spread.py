"""How far one seed moves a number: the selected configuration of a bench run, re-trained with other seeds.

    OMP_NUM_THREADS=1 python benchmarks/seed_spread.py config_files/bench/mmrec_protocol/freedom_tiktok.yml \
        [--seeds 1 2 3 4] [--model FREEDOM] [--work DIR] [--only-doc]

``docs/results.md`` reports one seed per model (42), and its anchors table compares that number with one run
of MMRec on this host.  A gap of 0.001-0.003 Recall@20 there is only a finding if it is larger than what
changing the seed alone does.  This script measures that: it copies the config (``config_copy.pinned_copy``:
every grid axis pinned to the configuration our validation selected in ``benchmarks/results_runs.json``),
replaces ``seed`` by the list of ``--seeds`` (so the trials differ only in the seed: weights, negatives,
dropout masks), and runs it with the config's own protocol, validation cadence and early stopping.  Every
trial's test metrics are at ITS validation-selected epoch, exactly as a table row; no trial is picked.

Writes ``benchmarks/seed_spread_runs.json`` (keyed like ``results_runs.json``; a re-run replaces its entry)
and ``docs/seed_spread.md``: per model the stored seed-42 row, every other seed, mean and sample standard
deviation over all of them, and MMRec on this host (``benchmarks/mmrec_same_host_accuracy_runs.json``) with
how many standard deviations it lies from our mean.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run_store import merge_runs  # noqa: E402
from benchmarks.config_copy import RESULTS, pinned_copy, selected_params, selected_trials  # noqa: E402, F401

RUNS = ROOT / "benchmarks" / "seed_spread_runs.json"
DOC = ROOT / "docs" / "seed_spread.md"


def seeded_config(config: Path, seeds: list, model: str | None = None) -> dict:
    """The pinned copy of ``config`` with ``seed`` as the only grid axis (``model``: keep that block only)."""
    raw = pinned_copy(config)
    models = raw["experiment"]["models"]
    if model is not None:
        names = [n for n in models if n.split(".")[-1] == model.split(".")[-1]]
        if not names:
            raise SystemExit(f"{config}: no model {model!r} (it has: {', '.join(models)})")
        raw["experiment"]["models"] = models = {names[0]: models[names[0]]}
    for block in models.values():
        block["seed"] = [int(s) for s in seeds]
    return raw


def stored_row(config: Path, model: str) -> dict | None:
    """The selected trial of ``model`` in the stored table run of ``config`` (the seed-42 number)."""
    if model not in (found := selected_trials(config)):
        return None
    rec, t = found[model]
    return {"seed": int(t["params"].get("seed", 42)), "test": t["test"]["20"]["Recall"],
            "valid": t["validation"]["20"]["Recall"], "best_epoch": t["best_epoch"], "commit": rec.get("commit")}


def mmrec_here(model: str) -> float | None:
    """MMRec's own test Recall@20 on this host (TikTok, MMRec protocol) for our model name, if measured."""
    from benchmarks.results import mmrec_here_by_model
    return mmrec_here_by_model("tiktok").get(model)


def run(config: Path, seeds: list, model: str | None, work: Path) -> dict:
    import torch

    from benchmarks.results import _commit, protocol_of, run_key
    from elliot.run import run_experiment
    raw = seeded_config(config, seeds, model)
    (work / "cfg").mkdir(parents=True, exist_ok=True)
    path = work / "cfg" / config.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    start = time.perf_counter()
    result = run_experiment(path, progress=False)
    wall = time.perf_counter() - start
    out = {}
    for name, trials in result.trials.items():
        short = name.split(".")[-1]
        out[f"{run_key(config)}::{name}"] = {
            "config": str(config.resolve().relative_to(ROOT)), "model": short, "dataset": result.results_folder.name,
            "protocol": protocol_of(raw["experiment"]), "commit": _commit(), "date": time.strftime("%Y-%m-%d"),
            "threads": torch.get_num_threads(), "wall_s": round(wall, 1),
            "pinned": {k: v for k, v in selected_params(config).get(name, {}).items() if k != "seed"},
            "stored": stored_row(config, name),
            "seeds": [{"seed": int(t.params["seed"]), "test": t.test[20]["Recall"], "valid": t.validation[20]["Recall"],
                       "best_epoch": t.best_epoch, "epochs_run": t.epochs_run} for t in trials],
        }
        values = [s["test"] for s in out[f"{run_key(config)}::{name}"]["seeds"]]
        print(f"{short}: test Recall@20 over seeds {seeds}: " + ", ".join(f"{v:.4f}" for v in values), flush=True)
    return out


def write_doc(runs: dict) -> None:
    lines = ["# Seed spread of the selected configurations", "",
             "Written by `python benchmarks/seed_spread.py` (its docstring says what runs).  Each row re-trains the "
             "configuration our validation selected for `docs/results.md` with other seeds and nothing else "
             "changed; every seed's test Recall@20 is at its own validation-selected epoch (the table's rule).  "
             "*seed 42* is the stored table row.  *sd*: sample standard deviation over all seeds listed.  "
             "*MMRec here*: MMRec's own run on this host at our first grid point, one seed "
             "(`docs/mmrec_same_host_accuracy.md`); *z* = (MMRec here - our mean) / sd.", "",
             "| model | dataset | protocol | seed 42 (table) | other seeds | mean | sd | min - max | MMRec here | z "
             "| config | commit | date | note |", "|" + "---|" * 14]
    for key in sorted(runs, key=lambda k: (runs[k]["dataset"], runs[k]["protocol"], runs[k]["model"])):
        r = runs[key]
        others = [s for s in r["seeds"] if not (r["stored"] and s["seed"] == r["stored"]["seed"])]
        values = ([r["stored"]["test"]] if r["stored"] else []) + [s["test"] for s in others]
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        mm = mmrec_here(r["model"]) if r["dataset"] == "tiktok" and r["protocol"] == "mmrec" else None
        z = "-" if mm is None or not sd > 0 else f"{(mm - mean) / sd:+.1f}"
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['protocol']} | "
            f"{'-' if not r['stored'] else format(r['stored']['test'], '.4f')} | "
            + ", ".join(f"{s['seed']}: {s['test']:.4f}" for s in others)
            + f" | {mean:.4f} | {sd:.4f} | {min(values):.4f} - {max(values):.4f} | "
              f"{'-' if mm is None else format(mm, '.4f')} | {z} | `{r['config']}` | {r['commit']} | {r['date']} | "
              f"{r.get('note', '')} |")
    DOC.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--model", help="the model block to re-run when the config has several")
    parser.add_argument("--work", type=Path, help="folder for the copy and its results (default: a temp dir)")
    parser.add_argument("--only-doc", action="store_true", help="rewrite the doc from the stored runs")
    args = parser.parse_args(argv)
    if args.only_doc:
        runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    else:
        if args.config is None:
            parser.error("a config is needed (or --only-doc)")
        work = args.work or Path(tempfile.mkdtemp(prefix="seed_spread_"))
        new = run(args.config, args.seeds, args.model, work)
        # re-read under the store's lock at the end of the (long) run: a run of another config that finished
        # meanwhile keeps its entry
        runs = merge_runs(RUNS, lambda stored: {**stored, **new}, {})
    write_doc(runs)
    print(f"wrote {DOC.relative_to(ROOT) if DOC.is_relative_to(ROOT) else DOC}")


if __name__ == "__main__":
    main()
