"""Write a dataset in the layout Elliot's multimodal forks read, so their configs run on it as written.

The forks (Formal-MultiMod-Rec, Multimodal-RSs-Reproducibility, Ducho-meets-Elliot and the LoG 2023
hands-on notebook) read ``train.txt`` / ``val.txt`` / ``test.txt`` (tab-separated ``user item [rating]``,
no header) and one folder per modality with a ``<item_id>.npy`` vector per item: ``image_feat/``,
``text_feat/``, ``audio_feat/``.  Their loaders only know items that have a feature file, and every split
keeps only items seen in training, so vectors are written for the training items only - exactly the
data such a config expects.

``python -m elliot.datasets export-elliot tiktok --root data --out data/tiktok_elliot`` turns the
catalogue's TikTok (``train.tsv`` ..., ``image_feat.npy``, ``audio_feat.npy``) into that layout; Last.fm
2K (MMRec ``.inter``) works the same way.  Other datasets: ``--feature visual=image_feat.npy`` per
modality (a ``.npy`` matrix whose row r is item id r, as MMRec stores them).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from elliot.dataset.readers import read_table
from elliot.errors import DataError

#: the forks' folder name of each modality
FOLDERS = {"visual": "image_feat", "textual": "text_feat", "audio": "audio_feat"}
#: catalogue datasets: interaction files and the feature matrix of each modality
KNOWN = {
    "tiktok": {"splits": ("train.tsv", "val.tsv", "test.tsv"),
               "features": {"visual": "image_feat.npy", "audio": "audio_feat.npy"}},
    "lfm2k": {"inter": "lfm2k.inter", "features": {"textual": "all-MiniLM-L6-v2.npy", "audio": "vggish.npy"}},
}


def _splits(source: Path, spec: dict):
    """(users, items, ratings) per split as raw-id string arrays (train, validation, test)."""
    if "inter" in spec:
        table = read_table(source / spec["inter"], mmrec=True)
        labels = table.labels
        return [(table.users[labels == k], table.items[labels == k], table.ratings[labels == k]) for k in (0, 1, 2)]
    out = []
    for name in spec["splits"]:
        table = read_table(source / name)
        out.append((table.users, table.items, table.ratings))
    return out


def _as_str(ids) -> np.ndarray:
    return np.asarray(ids).astype(str)


def export_elliot_layout(source, out, features: Optional[Dict[str, str]] = None, name: Optional[str] = None,
                         log=print) -> Path:
    """Write ``out/{train,val,test}.txt`` and ``out/<image|text|audio>_feat/<item>.npy`` from ``source``.

    ``features`` maps a modality (visual, textual, audio) to a ``.npy`` matrix in ``source`` whose row r is
    item id r; by default the catalogue entry ``name`` (or the folder's name) says which files."""
    source, out = Path(source), Path(out)
    key = name or source.name
    spec = dict(KNOWN.get(key, {}))
    if features:
        spec["features"] = dict(features)
    if "features" not in spec or not ("splits" in spec or "inter" in spec):
        if not (source / "train.tsv").exists():
            raise DataError(f"export-elliot: {source} is not a known catalogue dataset ({', '.join(KNOWN)}); give "
                            "train.tsv/val.tsv/test.tsv in it and --feature modality=file.npy")
        spec.setdefault("splits", ("train.tsv", "val.tsv", "test.tsv"))
    if not spec.get("features"):
        raise DataError(f"export-elliot: no features for {source}; give --feature modality=file.npy")
    unknown = set(spec["features"]) - set(FOLDERS)
    if unknown:
        raise DataError(f"export-elliot: modality {sorted(unknown)} has no Elliot folder; valid: {', '.join(FOLDERS)}")
    splits = _splits(source, spec)
    out.mkdir(parents=True, exist_ok=True)
    for (users, items, ratings), fname in zip(splits, ("train.txt", "val.txt", "test.txt")):
        rows = np.char.add(np.char.add(np.char.add(np.char.add(_as_str(users), "\t"), _as_str(items)), "\t"),
                           np.char.mod("%g", ratings.astype(np.float64)))
        tmp = out / f".{fname}.tmp"
        tmp.write_text("\n".join(rows.tolist()) + "\n")
        os.replace(tmp, out / fname)
    train_items = np.unique(_as_str(splits[0][1]))
    for modality, fname in spec["features"].items():
        path = source / fname
        try:
            matrix = np.load(path, mmap_mode="r")
        except OSError as exc:
            raise DataError(f"export-elliot: cannot read {path}: {exc}") from None
        folder = out / FOLDERS[modality]
        folder.mkdir(exist_ok=True)
        ids = [i for i in train_items if i.isdigit() and int(i) < len(matrix)]
        for item in ids:
            np.save(folder / f"{item}.npy", np.asarray(matrix[int(item)], dtype=np.float32))
        log(f"{folder}: {len(ids)} training items of {len(matrix)} rows ({matrix.shape[1]}-d {modality})")
    log(f"{out}: train/val/test .txt with {', '.join(f'{len(s[0])}' for s in splits)} interactions")
    return out
