"""Run the experiment files of Elliot and its multimodal forks against this framework, as written.

    python benchmarks/elliot_configs.py --configs FOLDER [--epochs 2] [--only PATTERN]

FOLDER holds their YAML files (e.g. ``config_files/`` of sisinflab/elliot, Formal-MultiMod-Rec,
Multimodal-RSs-Reproducibility, Ducho-meets-Elliot, fetched beside this checkout; nothing of theirs is
committed here).  Every file is run unchanged except for these things, each said in the report:

* the data: every dataset a file names is a folder in the forks' layout made from ``../shared/data``:
  TikTok's interactions as ``train.txt`` / ``val.txt`` / ``test.txt`` (and the other file names the
  configs use: ``train.tsv``, ``validation.tsv``, ``*_indexed.tsv``, ...), ``image_feat/<item>.npy``
  (TikTok's visual vectors) and ``text_feat/<item>.npy`` (TikTok has no text: its AUDIO vectors stand in,
  so the configs' textual branch runs on audio features); ``dataset.tsv`` / ``reviews.tsv`` are the
  TikTok interactions in one file, or MovieLens 100K's ``u.data`` for the movielens datasets
  (timestamps, for temporal splits).  The numbers are therefore not Amazon's; they show the files run.
* ``epochs`` is cut to ``--epochs``, every grid to its first point and every hyperopt search
  (``hyper_opt_alg: tpe`` ... with ``hyper_max_evals``) to one evaluation: one trial per model;
* models this framework lacks are removed from the file and listed;
* clustering files that complex metrics name are made for the stand-in (two clusters by training counts);
* attribute files (``ItemAttributes`` / ``UserAttributes``) of a movielens dataset are made from ML-100K:
  ``item<TAB>genre<TAB>...`` from ``u.item``, ``user<TAB>gender<TAB>occupation`` from ``u.user``.

Writes ``docs/elliot_configs.md`` (a row per file) and ``benchmarks/elliot_configs_runs.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elliot.errors import ElliotError  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SPLIT_NAMES = {"train": ("train.txt", "train.tsv", "train_indexed.tsv", "trainingset.tsv"),
               "val": ("val.txt", "val.tsv", "validation.tsv", "val_indexed.tsv", "validationset.tsv"),
               "test": ("test.txt", "test.tsv", "test_indexed.tsv", "testset.tsv")}


def build_data(root: Path) -> Path:
    """The TikTok folder in the forks' layout, once: ``root/_tiktok`` (see the module doc)."""
    from elliot.datasets.elliot_layout import export_elliot_layout

    base = root / "_tiktok"
    if not (base / "train.txt").exists():
        export_elliot_layout(SHARED / "tiktok", base, name="tiktok", log=lambda msg: None)
        rows = [l for f in ("train.txt", "val.txt", "test.txt") for l in (base / f).read_text().splitlines()]
        (base / "all.tsv").write_text("\n".join(rows) + "\n")
    return base


def dataset_folder(root: Path, base: Path, name: str) -> None:
    folder = root / name
    if folder.exists():
        return
    folder.mkdir(parents=True)
    for split, names in SPLIT_NAMES.items():
        for n in names:
            os.symlink(base / f"{split}.txt", folder / n)
    os.symlink(base / "image_feat", folder / "image_feat", target_is_directory=True)
    os.symlink(base / "audio_feat", folder / "text_feat", target_is_directory=True)  # stand-in, see module doc
    os.symlink(base / "audio_feat", folder / "audio_feat", target_is_directory=True)
    whole = SHARED / "ml100k" / "u.data" if "movielens" in name else base / "all.tsv"
    for n in ("dataset.tsv", "reviews.tsv"):
        os.symlink(whole, folder / n)


def feature_folders(root: Path, base: Path, exp: dict) -> None:
    """The feature folders a config names (e.g. ``../data/{0}/visual_embeddings_indexed/torch/ResNet50/avgpool``),
    as links to the stand-in vectors of their modality."""
    entries = (exp.get("data_config") or {}).get("side_information") or []
    for entry in entries if isinstance(entries, list) else [entries]:
        for key, value in (entry or {}).items():
            if not (key.endswith("_features") and isinstance(value, str) and "../data/{0}/" in value):
                continue
            target = root / str(exp.get("dataset")) / value.split("../data/{0}/", 1)[1].rstrip("/")
            source = base / ("image_feat" if key.startswith("visual") else "audio_feat")
            if not target.exists() and not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(source, target, target_is_directory=True)


def attribute_files(root: Path, exp: dict) -> None:
    """The ``attribute_file`` of ItemAttributes / UserAttributes entries, for the movielens datasets (whose
    interactions are ML-100K's): item genres from ``u.item``, user gender and occupation from ``u.user``."""
    if "movielens" not in str(exp.get("dataset")):
        return
    entries = (exp.get("data_config") or {}).get("side_information") or []
    for entry in entries if isinstance(entries, list) else [entries]:
        value = (entry or {}).get("attribute_file")
        if not (isinstance(value, str) and "../data/{0}/" in value):
            continue
        target = root / str(exp.get("dataset")) / value.split("../data/{0}/", 1)[1]
        if target.exists():
            continue
        rows = []
        if entry.get("dataloader") == "UserAttributes":
            for line in (SHARED / "ml100k" / "u.user").read_text(encoding="latin-1").splitlines():
                user, _age, gender, occupation, _zip = line.split("|")
                rows.append(f"{user}\t{gender}\t{occupation}")
        else:
            for line in (SHARED / "ml100k" / "u.item").read_text(encoding="latin-1").splitlines():
                fields = line.split("|")
                genres = [str(g) for g, flag in enumerate(fields[5:]) if flag == "1"]
                rows.append("\t".join([fields[0], *genres]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(rows) + "\n")


def _numeric(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def cluster_files(root: Path, base: Path, exp: dict) -> None:
    """The clustering files a config's complex metrics name, made for the stand-in data: users (or items)
    in two clusters, 0 = below the median number of training interactions, 1 = the others."""
    entries = (exp.get("evaluation") or {}).get("complex_metrics") or []
    for entry in entries if isinstance(entries, list) else [entries]:
        for key, value in (entry or {}).items():
            if not (key.endswith("clustering_file") and isinstance(value, str) and "../data/" in value):
                continue
            rel = value.split("../data/", 1)[1].replace("{0}", str(exp.get("dataset")))
            target = root / rel
            if target.exists():
                continue
            train = np.loadtxt(base / "train.txt", dtype=np.int64, usecols=(0, 1), ndmin=2)
            column = 1 if key.startswith("item") or (key == "clustering_file" and "User" not in
                                                      str(entry.get("metric"))) else 0
            ids, counts = np.unique(train[:, column], return_counts=True)
            groups = (counts >= np.median(counts)).astype(int)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(f"{i}\t{g}\n" for i, g in zip(ids, groups)))


def first_point(value):
    """A grid's first value: a YAML list of numbers (YAML 1.1 reads ``1e-5`` as a string) or of lists;
    hyperopt spaces (``[loguniform, -10, -1]``) and lists of names stay as they are."""
    if isinstance(value, list) and value and (not isinstance(value[0], str) or _numeric(value[0])):
        return value[0]
    return value


def rewrite(doc: dict, epochs: int) -> tuple:
    from elliot.recommender.registry import resolve_model

    exp = doc["experiment"]
    exp["external_models_path"] = str(ROOT / "external" / "models" / "__init__.py")
    kept, absent = {}, []
    for name, block in (exp.get("models") or {}).items():
        try:
            cls = resolve_model(str(name))
        except ElliotError:
            absent.append(str(name))
            continue
        block = dict(block or {})
        meta = block.get("meta")
        if isinstance(meta, dict) and meta.get("hyper_max_evals") is not None:
            block["meta"] = {**meta, "hyper_max_evals": 1}
        for key, value in list(block.items()):
            if key not in ("meta", "early_stopping"):
                block[key] = first_point(value)
        if "epochs" in block or cls.trainable:
            block["epochs"] = min(int(float(block.get("epochs", epochs))), epochs)
        kept[name] = block
    exp["models"] = kept
    return doc, absent


def run_one(path: Path, work: Path, base: Path, epochs: int, seen: dict) -> dict:
    from elliot.run import run_experiment

    record = {"file": path.name, "models": [], "absent": [], "status": "", "metrics": {}, "seconds": 0.0}
    doc = yaml.safe_load(path.read_text())
    exp = doc.get("experiment") or {}
    dataset_folder(work / "data", base, str(exp.get("dataset")))
    feature_folders(work / "data", base, exp)
    cluster_files(work / "data", base, exp)
    attribute_files(work / "data", exp)
    doc, record["absent"] = rewrite(doc, epochs)
    record["models"] = list(doc["experiment"]["models"])
    if not record["models"]:
        record["status"] = "no model of this file exists here"
        return record
    shape = json.dumps({**doc["experiment"], "dataset": None}, sort_keys=True, default=str)
    record["shape"] = hashlib.sha1(shape.encode()).hexdigest()[:16]  # stored: --merge batches see it
    if record["shape"] in seen:  # the same file for another dataset: the data stand-in makes it the same run
        record.update(status=f"same as {seen[record['shape']]} once the data is the stand-in", duplicate=True)
        return record
    seen[record["shape"]] = path.name
    own = work / "runs" / path.stem  # a folder per file: its results (and trials) are its own
    (own / "config_files").mkdir(parents=True, exist_ok=True)
    if not (own / "data").exists():
        os.symlink(work / "data", own / "data", target_is_directory=True)
    config = own / "config_files" / path.name
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_experiment(config, progress=False)
        record["status"] = "ok"
        for model, best in result.best.items():
            k = min(best.test)
            record["metrics"][model] = {f"{m}@{k}": round(v, 4) for m, v in list(best.test[k].items())[:2]}
    except ElliotError as exc:
        record["status"] = f"refused: {str(exc).splitlines()[0][:300]}"
    except Exception as exc:  # a bug here: recorded, the next file runs
        record["status"] = f"CRASH {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def report(records, epochs: int) -> str:
    ok = sum(r["status"] == "ok" for r in records)
    same = sum(bool(r.get("duplicate")) for r in records)
    none = sum(r["status"].startswith("no model") for r in records)
    refused = [r for r in records if r["status"].startswith("refused")]
    crashed = [r for r in records if r["status"].startswith("CRASH")]
    lines = [f"# Elliot and fork experiment files run here", "",
             f"{len(records)} files: **{ok} ran to the final table**, {same} more are the same run as one of those "
             f"once the data is the stand-in, {none} use only models this framework lacks, {len(refused)} were "
             f"refused with a one-line reason, {len(crashed)} crashed.", "",
             "From `python benchmarks/elliot_configs.py` (see its docstring for the changes: the data "
             f"stand-in, epochs cut to {epochs} and grids to their first point, absent models removed).", "",
             "| file | models run | models absent here | outcome | first metrics of each model |",
             "|---|---|---|---|---|"]
    for r in records:
        metrics = "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in vals.items())
                            for m, vals in r["metrics"].items())
        lines.append(f"| {r['file']} | {', '.join(r['models'])} | {', '.join(r['absent'])} | "
                     f"{r['status'].replace('|', '/')} | {metrics} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--only", default="", help="run only files whose name contains this")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "elliot_configs.md")
    ap.add_argument("--merge", action="store_true", help="keep the stored records of the files not run now")
    args = ap.parse_args()
    files = sorted(p for p in args.configs.glob("*.y*ml") if args.only in p.name)
    store = ROOT / "benchmarks" / "elliot_configs_runs.json"
    stored = json.loads(store.read_text()) if args.merge and store.exists() else []
    names = {p.name for p in files}
    with tempfile.TemporaryDirectory(prefix="elliot-configs-") as tmp:
        work = Path(tmp)
        (work / "config_files").mkdir()
        base = build_data(work / "data")
        records = []
        seen = {r["shape"]: r["file"] for r in stored  # a batch's file can be the same run as a stored one
                if r.get("shape") and not r.get("duplicate") and r["file"] not in names}
        for path in files:
            record = run_one(path, work, base, args.epochs, seen)
            records.append(record)
            print(f"{path.name}: {record['seconds']:.1f}s {record['status'][:400]}", flush=True)
    if args.merge:  # rerun some files: the others keep their stored records
        fresh = {r["file"] for r in records}
        records = sorted([r for r in stored if r["file"] not in fresh] + records, key=lambda r: r["file"])
    args.out.write_text(report(records, args.epochs))
    store.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
