"""Seconds per training epoch of MMRec (the peer the issue's targets quote) next to ours, on this host, now.

    python benchmarks/mmrec_same_host.py --mmrec /path/to/MMRec [--python /path/to/python] \
        [--models BPR VBPR LightGCN FREEDOM] [--epochs 8] [--commit SHA]

The issue's MMRec numbers were taken on another day; this VM's speed drifts by 2x between sessions, so
the only fair comparison is both frameworks on the same host, minutes apart.  For every model the script
runs our ``epoch_probe.py`` (same data, model and first grid point as the bench config), then MMRec for
``--epochs`` epochs with the matching hyperparameters, then our probe again - one process at a time - and
writes ``docs/mmrec_same_host.md`` and ``benchmarks/mmrec_same_host_runs.json``.

What it needs: a checkout of github.com/enoche/MMRec (never copied into this repository) and a Python
that can import it (MMRec also wants pandas and lmdb; ``--system-site-packages`` venv on top of our torch).
The script converts ``../shared/data/tiktok`` into MMRec's format under ``--work`` (``.inter`` with
x_label 0/1/2 = train/val/test, raw 0-based ids, float32 features; audio goes into MMRec's t_feat slot,
which it uses as a second modality), writes ``src/configs/dataset/tiktok_elliot_bench.yaml`` into the
checkout, and runs MMRec's ``quick_start`` unmodified, on CPU, with three environment shims set in the
driver process only: ``np.float`` (removed in NumPy 2, used by MMRec's metrics), ``dok_matrix._update``
(a private SciPy method LightGCN/FREEDOM call, removed in SciPy 1.13) and a stub ``torchvision`` (imported
for raw-image helpers that ``use_raw_features: False`` never calls).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tiktok"
DATASET = "tiktok_elliot_bench"
RUNS = ROOT / "benchmarks" / "mmrec_same_host_runs.json"
DOC = ROOT / "docs" / "mmrec_same_host.md"

# MMRec model -> (its single grid point, matching our bench config's first one; our probe: config, model)
MODELS = {
    "BPR": ({"reg_weight": [1e-4]}, "baselines_tiktok.yml", "BPRMF"),
    "VBPR": ({"reg_weight": [1e-2]}, "vbpr_tiktok.yml", "VBPR"),
    "LightGCN": ({"n_layers": [3], "reg_weight": [1e-4]}, "baselines_tiktok.yml", "LightGCN"),
    "FREEDOM": ({"reg_weight": [1e-4], "dropout": [0.8]}, "freedom_tiktok.yml", "FREEDOM"),
}

DRIVER = r"""
import sys, types, numpy as np, scipy.sparse as sp
if not hasattr(np, "float"):
    np.float = float
if not hasattr(sp.dok_matrix, "_update"):
    sp.dok_matrix._update = lambda self, data: self._dict.update(data)
try:
    import torchvision.transforms.functional  # noqa: F401
except Exception:
    def _raw_images_only(*_a, **_k):
        raise RuntimeError("torchvision stub: raw-image helpers are not available")
    tv = types.ModuleType("torchvision"); tr = types.ModuleType("torchvision.transforms")
    fn = types.ModuleType("torchvision.transforms.functional"); fn.pad = fn.resize = _raw_images_only
    tv.transforms, tr.functional = tr, fn
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn})
import json
from utils.quick_start import quick_start
model, dataset, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
quick_start(model=model, dataset=dataset, config_dict=overrides, save_model=False)
"""


def convert(work: Path) -> dict:
    """TikTok's train/val/test TSVs and features in MMRec's layout; returns the counts."""
    out = work / DATASET
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for label, name in enumerate(("train", "val", "test")):
        rows = np.loadtxt(DATA / f"{name}.tsv", dtype=np.int64, usecols=(0, 1), ndmin=2)
        parts.append(np.column_stack([rows, np.full(len(rows), label)]))
    inter = np.concatenate(parts)
    with open(out / f"{DATASET}.inter", "w") as fh:
        fh.write("userID\titemID\tx_label\n")
        np.savetxt(fh, inter, fmt="%d", delimiter="\t")
    for name in ("image_feat", "audio_feat"):
        np.save(out / f"{name}.npy", np.load(DATA / f"{name}.npy").astype(np.float32))
    return {"interactions": int(len(inter)), "train": int(len(parts[0]))}


def dataset_yaml(mmrec: Path) -> None:
    (mmrec / "src" / "configs" / "dataset" / f"{DATASET}.yaml").write_text(
        "# written by elliot's benchmarks/mmrec_same_host.py: TikTok, raw 0-based ids; t_feat slot = audio\n"
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\n"
        "filter_out_cod_start_users: True\ninter_file_name: 'tiktok_elliot_bench.inter'\n"
        "vision_feature_file: 'image_feat.npy'\ntext_feature_file: 'audio_feat.npy'\n"
        "user_graph_dict_file: 'user_graph_dict.npy'\nfield_separator: \"\\t\"\n")


def our_probe(config: str, model: str, epochs: int) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "epoch_probe.py"),
                          str(ROOT / "config_files" / "bench" / config), model, "--epochs", str(epochs)],
                         capture_output=True, text=True, check=True).stdout
    times = [float(t) for t in re.search(r"\(all: ([^)]*)\)", out).group(1).split(", ")]
    return {"epoch_s_all": times, "epoch_s": statistics.median(times[1:])}


def mmrec_run(mmrec: Path, python: str, model: str, work: Path, epochs: int, params: dict) -> dict:
    overrides = {"use_gpu": False, "gpu_id": 0, "data_path": str(work) + "/", "epochs": epochs,
                 "train_batch_size": 2048, "embedding_size": 64, "save_recommended_topk": False, **params}
    proc = subprocess.run([python, "-c", DRIVER, model, DATASET, json.dumps(overrides)], cwd=mmrec / "src",
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    train = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", log)]
    evals = [float(t) for t in re.findall(r"epoch \d+ evaluating \[time: ([\d.]+)s", log)]
    if proc.returncode or not train:
        raise SystemExit(f"MMRec {model} failed (exit {proc.returncode}):\n{log[-3000:]}")
    return {"epoch_s_all": train, "epoch_s": statistics.median(train[1:] or train),
            "eval_s_all": evals, "eval_s": statistics.median(evals) if evals else None}


def write_doc(runs: dict) -> None:
    lines = ["# MMRec next to this framework, same host, minutes apart", "",
             "Written by `python benchmarks/mmrec_same_host.py` (see its docstring for what it runs and the "
             "shims MMRec needs on NumPy 2 / SciPy >= 1.13).  TikTok, 64 factors, batch 2048, Adam lr 1e-3, "
             "2 CPU cores, one process at a time.  *s/epoch*: median of the epochs after the first; ours is "
             "`benchmarks/epoch_probe.py` (the Trainer's step, first grid point of the bench config) run "
             "right before and right after MMRec.  MMRec's *eval s* is its logged validation pass (it also "
             "runs an unlogged test pass every epoch); ours is in `docs/performance.md`.", "",
             "| model (MMRec / ours) | MMRec s/epoch | MMRec epochs | ours before | ours after | MMRec / ours | "
             "MMRec eval s | MMRec commit | when |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        ours = statistics.mean([r["ours_before"]["epoch_s"], r["ours_after"]["epoch_s"]])
        ev = r["mmrec"].get("eval_s")
        lines.append(f"| {name} / {MODELS[name][2]} | {r['mmrec']['epoch_s']:.2f} | {len(r['mmrec']['epoch_s_all'])} | "
                     f"{r['ours_before']['epoch_s']:.3f} | {r['ours_after']['epoch_s']:.3f} | "
                     f"{r['mmrec']['epoch_s'] / ours:.1f}x | {'-' if ev is None else f'{ev:.2f}'} | "
                     f"{r['mmrec_commit']} | {r['when']} |")
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="checkout of github.com/enoche/MMRec")
    parser.add_argument("--python", default=sys.executable, help="interpreter that can import MMRec")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmrec_same_host"))
    parser.add_argument("--commit", default="", help="MMRec commit (default: git rev-parse of --mmrec)")
    args = parser.parse_args()
    commit = args.commit or subprocess.run(["git", "-C", str(args.mmrec), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    counts = convert(args.work)
    dataset_yaml(args.mmrec)
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    for name in args.models:
        params, config, ours = MODELS[name]
        before = our_probe(config, ours, 5)
        mm = mmrec_run(args.mmrec, args.python, name, args.work, args.epochs, params)
        after = our_probe(config, ours, 5)
        runs[name] = {"mmrec": mm, "ours_before": before, "ours_after": after, "mmrec_params": params,
                      "mmrec_commit": commit[:12], "data": counts, "host": platform.node(),
                      "when": time.strftime("%Y-%m-%d %H:%M")}
        print(f"{name}: MMRec {mm['epoch_s']:.2f} s/epoch, ours {before['epoch_s']:.3f} / {after['epoch_s']:.3f}")
        RUNS.write_text(json.dumps(runs, indent=1, sort_keys=True))
    write_doc(runs)
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
