"""Item side information (``data_config.side_information``): one feature matrix per modality.

Each entry names a modality and a ``features`` path in one of two formats:

* a folder of ``<raw_item_id>.npy`` files, one vector per item (Elliot's format; each 1-D or ``(1, d)``);
* one ``.npy`` matrix whose row ``r`` belongs to raw item id ``r`` (MMRec's format), or -- with
  ``item_mapping`` -- to the raw id that the mapping file assigns to row ``r``.  The mapping is a TSV
  ``raw_item_id<TAB>row`` or one raw id per line (line order = row order).

Rows are always looked up by raw item id, never by iteration order.  :func:`load_modality` returns a
float32 matrix aligned with the raw ids it was given plus a mask of the ids that have a vector;
:func:`feature_item_ids` lists the raw ids a features path has vectors for.

Tabular attributes of users and items (``ItemAttributes`` / ``UserAttributes``: categorical ids, genres,
age, ...) are :mod:`elliot.dataset.side_information.attributes`' (skipped by :func:`parse_entries`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from elliot.dataset.side_information.attributes import (Attribute, is_attribute_entry, load_attributes,  # noqa: F401
                                                        parse_attribute_entries)
from elliot.errors import ConfigError, DataError

_DATALOADER_MODALITY = {
    "visualattribute": "visual", "textualattribute": "textual", "audioattribute": "audio",
    "visualfeatures": "visual", "textualfeatures": "textual", "audiofeatures": "audio",
}
_INT_RE = re.compile(r"^(0|[1-9][0-9]*)$")


def parse_entries(side_information) -> List[dict]:
    """Normalise the ``side_information`` list to ``[{modality, features, item_mapping}]``.

    Accepts ``{modality, features}``, Elliot's ``{dataloader: VisualAttribute, visual_features: path}`` and
    ``{<modality>_features: path}``."""
    if not side_information:
        return []
    if isinstance(side_information, dict):
        side_information = [side_information]
    out, seen = [], set()
    for k, entry in enumerate(side_information):
        where = f"data_config.side_information[{k}]"
        if is_attribute_entry(entry):
            continue  # ItemAttributes / UserAttributes: tabular attributes, parse_attribute_entries
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with 'modality' and 'features', got {entry!r}")
        path, modality = entry.get("features"), entry.get("modality")
        feature_keys = [key for key in entry if str(key).endswith("_features") and key != "features"]
        if path is None and feature_keys:
            path = entry[feature_keys[0]]
            modality = modality or str(feature_keys[0])[:-len("_features")]
        if modality is None and entry.get("dataloader"):
            loader = str(entry["dataloader"])
            modality = _DATALOADER_MODALITY.get(loader.lower(), loader.lower().replace("attribute", ""))
        if not path:
            raise ConfigError(f"{where}: missing 'features' (a folder of <item>.npy files or one .npy matrix)")
        if not modality:
            raise ConfigError(f"{where}: missing 'modality' (e.g. visual, textual, audio)")
        modality = str(modality)
        if modality in seen:
            raise ConfigError(f"{where}: modality '{modality}' is given twice")
        seen.add(modality)
        item = {"modality": modality, "features": str(path), "item_mapping": entry.get("item_mapping")}
        if entry.get("extract") is not None:
            item["extract"] = entry["extract"]  # an elliot.features Job, run before the features are read
        out.append(item)
    return out


def _as_vectors(x, path: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DataError(f"feature file {path}: dtype {x.dtype} is not numeric")
    return x.astype(np.float32, copy=False)


def _check_finite(mat: np.ndarray, present: np.ndarray, raw_ids, path: str) -> None:
    bad = present & ~np.isfinite(mat).all(axis=1)
    if bad.any():
        which = [str(raw_ids[k]) for k in np.flatnonzero(bad)[:3]]
        raise DataError(f"feature file {path}: NaN/inf values for item{'s' if bad.sum() > 1 else ''} "
                        f"{', '.join(which)}{' ...' if bad.sum() > 3 else ''} ({int(bad.sum())} in all)")


def _load_folder(folder: str, raw_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise DataError(f"feature folder {folder}: cannot list it ({e.strerror or e})") from None
    files = {n[:-4]: n for n in names if n.endswith(".npy")}
    if not files:
        raise DataError(f"feature folder {folder} has no .npy files (expected one <item_id>.npy per item)")
    present = np.array([str(r) in files for r in raw_ids.tolist()], dtype=bool)
    mat, dim, first = None, None, None
    for k in np.flatnonzero(present):
        path = os.path.join(folder, files[str(raw_ids[k])])
        try:
            v = _as_vectors(np.load(path, allow_pickle=False), path)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - any unreadable file is a data error
            raise DataError(f"feature file {path}: unreadable ({type(e).__name__}: {e})") from None
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim != 1:
            raise DataError(f"feature file {path}: expected a vector (d,) or (1, d), got shape {v.shape}")
        if mat is None:
            dim, first = len(v), path
            mat = np.zeros((len(raw_ids), dim), dtype=np.float32)
        elif len(v) != dim:
            raise DataError(f"feature file {path}: dimension {len(v)} differs from {dim} of {first}")
        mat[k] = v
    if mat is None:
        mat = np.zeros((len(raw_ids), 0), dtype=np.float32)
    return mat, present


def _read_mapping(path: str) -> Dict[str, int]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"item mapping {path}: unreadable ({e})") from None
    rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in lines if ln.strip()]
    if not rows:
        raise DataError(f"item mapping {path} is empty")
    mapping: Dict[str, int] = {}
    if all(len(r) == 1 for r in rows):  # one raw id per line, line order = row order
        for k, r in enumerate(rows):
            mapping[r[0].strip()] = k
        return mapping
    if not _INT_RE.match(rows[0][1].strip()):
        rows = rows[1:]  # header
    for k, r in enumerate(rows):
        if len(r) < 2 or not _INT_RE.match(r[1].strip()):
            raise DataError(f"item mapping {path}: line {k + 1}: expected 'raw_item_id<TAB>row', got {r!r}")
        mapping[r[0].strip()] = int(r[1])
    return mapping


def _load_matrix(path: str, raw_ids: np.ndarray, mapping_path: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    try:
        mat = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"feature file {path}: unreadable ({type(e).__name__}: {e})") from None
    if mat.ndim != 2:
        raise DataError(f"feature file {path}: expected a 2-D matrix (items x d), got shape {mat.shape}")
    if mat.dtype.kind not in "fiub":
        raise DataError(f"feature file {path}: dtype {mat.dtype} is not numeric")
    n_rows = mat.shape[0]
    if mapping_path:
        mapping = _read_mapping(mapping_path)
        too_big = [r for r, row in mapping.items() if row >= n_rows]
        if too_big:
            raise DataError(f"item mapping {mapping_path}: row {mapping[too_big[0]]} of item {too_big[0]} is "
                            f"beyond the {n_rows} rows of {path}")
        rows = np.array([mapping.get(str(r), -1) for r in raw_ids.tolist()], dtype=np.int64)
    else:
        ids = raw_ids.tolist()
        bad = [r for r in ids if not _INT_RE.match(str(r))]
        if bad:
            raise DataError(f"feature file {path}: raw item ids are not integers (e.g. '{bad[0]}'), so matrix "
                            "rows cannot be matched to items; give item_mapping (raw_item_id<TAB>row)")
        rows = np.array([int(r) for r in ids], dtype=np.int64)
        if len(rows) and rows.max() >= n_rows:
            raise DataError(f"feature file {path}: {n_rows} rows but the dataset has item id {int(rows.max())} "
                            "(row i must belong to item i; give item_mapping otherwise)")
    present = rows >= 0
    out = np.zeros((len(raw_ids), mat.shape[1]), dtype=np.float32)
    if present.any():
        rp = rows[present]
        order = np.argsort(rp, kind="stable")  # ascending reads suit a memory-mapped file
        vals = np.empty((len(rp), mat.shape[1]), dtype=np.float32)
        vals[order] = np.asarray(mat[rp[order]], dtype=np.float32)
        out[present] = vals
    return out, present


def feature_item_ids(entry: dict) -> np.ndarray:
    """The raw item ids that the entry's features path holds a vector for (``data_config.item_catalogue:
    all`` adds those without an interaction to the catalogue): a folder's ``<id>.npy`` names, a matrix's
    ``item_mapping`` ids, or ``0..rows-1`` for a matrix without one.  int64 when every id is a plain
    integer, else UTF-8 bytes (the form :func:`elliot.dataset.arrays.encode_keys` reads)."""
    path = entry["features"]
    if not os.path.exists(path):
        raise DataError(f"feature path {path} (modality {entry['modality']}) does not exist")
    if os.path.isdir(path):
        try:
            ids = [n[:-4] for n in os.listdir(path) if n.endswith(".npy")]
        except OSError as e:
            raise DataError(f"feature folder {path}: cannot list it ({e.strerror or e})") from None
    else:
        try:
            n_rows = int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        except Exception as e:  # noqa: BLE001
            raise DataError(f"feature file {path}: unreadable ({type(e).__name__}: {e})") from None
        if not entry.get("item_mapping"):
            return np.arange(n_rows, dtype=np.int64)
        ids = [r for r, row in _read_mapping(entry["item_mapping"]).items() if row < n_rows]
    if all(_INT_RE.match(r) for r in ids):
        return np.array([int(r) for r in ids], dtype=np.int64)
    return np.char.encode(np.array(ids, dtype=str), "utf-8") if ids else np.zeros(0, dtype="S1")


def load_modality(entry: dict, raw_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(features float32 (len(raw_ids), d) C-contiguous, present mask) for the given raw item ids.

    Raises :class:`DataError` naming the file for missing/unreadable files, mismatched dimensions, NaN/inf
    rows, ids that a matrix cannot resolve, and when not a single item of the dataset has a vector."""
    raw_ids = np.asarray(raw_ids).astype(str)
    path = entry["features"]
    if not os.path.exists(path):
        raise DataError(f"feature path {path} (modality {entry['modality']}) does not exist")
    if os.path.isdir(path):
        mat, present = _load_folder(path, raw_ids)
    else:
        mat, present = _load_matrix(path, raw_ids, entry.get("item_mapping"))
    if len(raw_ids) and not present.any():
        example = ", ".join(str(r) for r in raw_ids[:3].tolist())
        raise DataError(f"feature path {path} (modality {entry['modality']}): no item of the dataset has "
                        f"features (dataset item ids look like {example})")
    _check_finite(mat, present, raw_ids, path)
    return np.ascontiguousarray(mat, dtype=np.float32), present
