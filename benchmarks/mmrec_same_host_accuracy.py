"""MMRec's own accuracy on this host, same split, same configuration, validation-only selection.

    OMP_NUM_THREADS=1 python benchmarks/mmrec_same_host.py --accuracy --mmrec /path/to/MMRec \
        [--python /path/to/python] [--models BPR VBPR ...] [--commit SHA] [--only-doc]

The second anchor issue 14 asks for next to the published table: MMRec (unmodified, through the same driver
and shims as the speed comparison in ``mmrec_same_host.py``) trains each model on TikTok's fixed split in
MMRec's format, at the one configuration of the speed pair (``PAIRS``: our bench config's first grid point,
in MMRec's keys), with our stopping rule in MMRec's terms: validation every ``validation_rate`` epochs
(MMRec ``eval_step``), stop after ``patience`` validations without improvement (MMRec stops when its
counter *exceeds* ``stopping_step``, so ``stopping_step = patience - 1``), at most our config's ``epochs``.
MMRec keeps the test result of the best validation epoch (``best_test_upon_valid``); with one configuration
its grid-point choice by test never comes into play, so the number is validation-selected, like ours.

MMRec's protocol is the one of our ``config_files/bench/mmrec_protocol/`` copies: every item of any split in
the catalogue, only training items masked at test, users without a training interaction dropped.  *ours,
same configuration* is the trial of that same grid point in our MMRec-protocol run
(``benchmarks/results_runs.json``); *ours, selected* is the configuration our validation picked from the
whole grid (the number in ``docs/results.md``).

Writes ``benchmarks/mmrec_same_host_accuracy_runs.json`` and ``docs/mmrec_same_host_accuracy.md``.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mmrec_same_host import (ACCURACY_ONLY, DATASET, DRIVER, PAIRS, SKIPPED, base_record,  # noqa: E402
                                        prepare, prepare_work)

RUNS = ROOT / "benchmarks" / "mmrec_same_host_accuracy_runs.json"
DOC = ROOT / "docs" / "mmrec_same_host_accuracy.md"
RESULTS = ROOT / "benchmarks" / "results_runs.json"
BENCH = ROOT / "config_files" / "bench"
METRIC_LINE = re.compile(r"([a-z]+@\d+): ([\d.]+)")


def our_schedule(config: str, ours: str) -> dict:
    """epochs cap, validation_rate and patience of ``ours`` in config_files/bench/<config> (a model without
    training, :data:`ACCURACY_ONLY`: one epoch, one evaluation)."""
    if ours in {p.ours for p in ACCURACY_ONLY.values()}:
        return {"epochs": 1, "validation_rate": 1, "patience": 1}
    import yaml
    models = yaml.safe_load((BENCH / config).read_text())["experiment"]["models"]
    block = next(b for n, b in models.items() if n.split(".")[-1] == ours)
    meta = block.get("meta") or {}
    epochs = block.get("epochs", 100)
    return {"epochs": int(epochs[0] if isinstance(epochs, list) else epochs),
            "validation_rate": int(meta.get("validation_rate", 1)),
            "patience": int((meta.get("early_stopping") or {}).get("patience", 5))}


def parse_metrics(text: str) -> dict:
    return {k: float(v) for k, v in METRIC_LINE.findall(text)}


def mmrec_accuracy(mmrec: Path, python: str, model: str, work: Path, overrides: dict, schedule: dict) -> dict:
    """Train MMRec to its early stop; the validation and test metrics of its best validation epoch."""
    run = {"use_gpu": False, "gpu_id": 0, "data_path": str(work) + "/", "train_batch_size": 2048,
           "embedding_size": 64, "save_recommended_topk": False, "epochs": schedule["epochs"],
           "eval_step": schedule["validation_rate"], "stopping_step": schedule["patience"] - 1,
           "topk": [10, 20, 50], **overrides}
    start = time.perf_counter()
    proc = subprocess.run([python, "-c", DRIVER, model, DATASET, json.dumps(run)], cwd=mmrec / "src",
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    if proc.returncode:
        raise RuntimeError(f"MMRec {model} failed (exit {proc.returncode}):\n{log[-3000:]}")
    try:
        out = parse_log(log)
    except RuntimeError as err:
        raise RuntimeError(f"MMRec {model}: {err}:\n{log[-3000:]}") from None
    return {**out, "wall_s": round(wall, 1), "run": run}


def parse_log(log: str) -> dict:
    """The result of a finished MMRec run from its log text (``quick_start``'s last lines)."""
    valid = re.findall(r"best valid result: (.*)", log)
    test = re.findall(r"\btest result: (.*)\n", log)
    if not valid or not test:
        raise RuntimeError("no 'best valid result' / 'test result' lines: the run did not finish")
    stop = re.search(r"best eval result in epoch (\d+)", log)
    trained = re.findall(r"epoch (\d+) training \[time", log)
    train_s = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", log)]
    return {"valid": parse_metrics(valid[-1]), "test": parse_metrics(test[-1]),
            "best_epoch": int(stop.group(1)) + 1 if stop else None,  # MMRec counts epochs from 0
            "epochs_run": int(trained[-1]) + 1 if trained else 0, "stopped_early": bool(stop),
            "train_s": round(sum(train_s), 1)}


def ours_at(config: str, ours: str) -> dict:
    """Our MMRec-protocol run of the same config: the first grid point's trial and the selected one."""
    if not RESULTS.exists():
        return {}
    runs = json.loads(RESULTS.read_text())
    key = next((k for k in runs if k.startswith(f"mmrec_protocol/{config}::")
                and k.split("::")[1].split(".")[-1] == ours), None)
    if key is None:
        return {}
    rec = runs[key]
    from elliot.config import load_config
    from elliot.recommender.registry import resolve_model
    from elliot.search.plan import plan_trials
    cfg = load_config(BENCH / "mmrec_protocol" / config)
    name = key.split("::")[1]
    first = next(iter(plan_trials(resolve_model(name, None), cfg.models[name], where=name).configurations()))
    same = next((t for t in rec["trials"] if all(t["params"].get(k) == v for k, v in first.items()
                                                 if k in t["params"])), None)
    best = next((t for t in rec["trials"] if t["name"] == rec["best"]), None)

    def pick(t):
        return None if t is None else {"test": t["test"]["20"]["Recall"], "valid": t["validation"]["20"]["Recall"],
                                       "best_epoch": t["best_epoch"], "epochs_run": t["epochs_run"],
                                       "name": t["name"]}
    return {"key": key, "same": pick(same), "selected": pick(best), "trials": len(rec["trials"]),
            "commit": rec.get("commit")}


def write_doc(runs: dict) -> None:
    lines = ["# MMRec's accuracy on this host, next to ours", "",
             "Written by `python benchmarks/mmrec_same_host.py --accuracy` (`benchmarks/mmrec_same_host_accuracy.py`; "
             "its docstring says exactly what runs).  TikTok's fixed split, MMRec's protocol in both frameworks "
             "(every item of any split ranked, only training items masked at test).  MMRec, unmodified, trains "
             "ONE configuration - the first grid point of our bench config, in MMRec's keys (*settings*) - "
             "with our stopping rule (validation every *val every* epochs, stop after *patience* validations "
             "without improvement, at most *cap* epochs) and keeps the test result of its best validation epoch, "
             "so its number is selected on validation only.  *ours, same config*: our trial of that grid point; "
             "*ours, selected*: the configuration our validation picked from the whole grid (`docs/results.md`).  "
             "Recall@20 throughout; MMRec logs 4 decimals.", "",
             "| model (MMRec / ours) | MMRec test | MMRec val | MMRec best ep / ran | ours, same config: test | val "
             "| best ep / ran | ours, selected: test | val | trials | MMRec - ours (same config) | settings | cap "
             "| val every | patience | MMRec train s | when |", "|" + "---|" * 17]
    for name in [m for m in PAIRS if m in runs]:
        r = runs[name]
        label = f"{name} / {PAIRS[name].ours}"
        if "mmrec" not in r:
            lines.append(f"| {label} | failed: {r.get('error', '?')[:160].replace('|', '/').replace(chr(10), ' ')} |" + " |" * 15)
            continue
        mm, ours = r["mmrec"], r.get("ours") or {}
        same, sel = ours.get("same"), ours.get("selected")
        sched = r["schedule"]
        settings = ", ".join(f"{k} {v[0] if isinstance(v, list) and len(v) == 1 else v}"
                             for k, v in r["mmrec_params"].items() if k != "learning_rate_scheduler")

        def fmt(t, key):
            return "-" if not t else f"{t[key]:.4f}"
        same_ep = "-" if not same else f"{same['best_epoch']} / {same['epochs_run']}"
        diff = "-" if not same else f"{mm['test']['recall@20'] - same['test']:+.4f}"
        lines.append(
            f"| {label} | {mm['test']['recall@20']:.4f} | {mm['valid']['recall@20']:.4f} | "
            f"{mm['best_epoch'] or '-'} / {mm['epochs_run']} | {fmt(same, 'test')} | {fmt(same, 'valid')} | "
            f"{same_ep} | "
            f"{fmt(sel, 'test')} | {fmt(sel, 'valid')} | {ours.get('trials', '-')} | {diff} | {settings} | "
            f"{sched['epochs']} | {sched['validation_rate']} | {sched['patience']} | {mm['train_s']:.0f} | "
            f"{r['when']} |")
    missing = [m for m in PAIRS if m not in runs]
    if missing:
        lines += ["", "**Not run yet** (the 2-core host's time went to our own runs; each takes MMRec's s/epoch "
                  "in `docs/mmrec_same_host.md` times its epochs): " + ", ".join(missing) + "."]
    lines += ["", "**Not comparable here**: " + "; ".join(f"{label} ({why})" for name, (label, why, _) in SKIPPED.items()
                                              if name not in ACCURACY_ONLY)
              + "."]
    DOC.write_text("\n".join(lines) + "\n")


def main(args) -> None:
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    if args.only_doc:
        for name, r in runs.items():  # our side may have been re-run since
            if name in PAIRS:
                r["ours"] = ours_at(PAIRS[name].config, PAIRS[name].ours)
        write_doc(runs)
        print(f"wrote {DOC.relative_to(ROOT)}")
        return
    if args.from_log:
        for path in args.from_log:
            name = path.name.split("-")[0]
            if name not in PAIRS:
                raise SystemExit(f"{path}: {name!r} is not one of the pairs: {', '.join(PAIRS)}")
            pair = PAIRS[name]
            record = {**base_record(args.mmrec, name, args.commit or "unknown", {}),
                      "schedule": our_schedule(pair.config, pair.ours),
                      "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime)),
                      "mmrec": {**parse_log(path.read_text()), "recovered_from": path.name}}
            record["ours"] = ours_at(pair.config, pair.ours)
            runs[name] = record
            print(f"{name}: MMRec test Recall@20 {record['mmrec']['test']['recall@20']:.4f} (from {path.name})")
        RUNS.write_text(json.dumps(runs, indent=1, sort_keys=True))
        write_doc(runs)
        return
    commit, counts = prepare_work(args)
    for name in args.models:
        pair = PAIRS[name]
        schedule = our_schedule(pair.config, pair.ours)
        record = {**base_record(args.mmrec, name, commit, counts), "schedule": schedule}
        overrides = record["mmrec_params"]
        try:
            record["preprocessing_s"] = prepare(args.mmrec, args.python, args.work, pair.needs)
            record["mmrec"] = mmrec_accuracy(args.mmrec, args.python, name, args.work, overrides, schedule)
        except (RuntimeError, SystemExit) as err:
            record["error"] = str(err)[-3000:]
            print(f"{name}: FAILED\n{record['error']}", flush=True)
        runs[name] = record
        RUNS.write_text(json.dumps(runs, indent=1, sort_keys=True))  # MMRec's finished run first
        try:
            record["ours"] = ours_at(pair.config, pair.ours)
        except Exception as err:  # our side is looked up again by --only-doc; never lose MMRec's run to it
            print(f"{name}: our side not read ({type(err).__name__}: {err})", flush=True)
        if "mmrec" in record:
            print(f"{name}: MMRec test Recall@20 {record['mmrec']['test']['recall@20']:.4f} "
                  f"(val {record['mmrec']['valid']['recall@20']:.4f}, best epoch {record['mmrec']['best_epoch']})",
                  flush=True)
        RUNS.write_text(json.dumps(runs, indent=1, sort_keys=True))
        write_doc(runs)
    print(f"wrote {DOC.relative_to(ROOT)}")
