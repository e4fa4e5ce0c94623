"""Elliot's spellings at the door: everything written for Elliot 0.3.1 or its multimodal forks that means
something we do is rewritten here to our one spelling, so nothing behind the loader sees two.

* ``backend``: ``pytorch`` (or a list containing it) is what runs here; any other backend is refused.
* ``version``: recorded (Elliot refuses a mismatch; the numbers here are this framework's anyway).
* ``data_config.strategy: hierarchy`` + ``root_folder``: Elliot's saved-split layout
  (``<root>/0/test.tsv`` with ``<root>/0/train.tsv`` or ``<root>/0/0/{train,val}.tsv``) becomes ``fixed``.
* side-information loaders: ``VisualAttribute(s)``, ``TextualAttribute(s)``, ``AudioAttribute(s)`` and the
  visual loader's ``visual_pca_features`` (used as the visual features when ``visual_features`` is absent).
* ``align_side_with_train``: true (Elliot's default) = items without features leave every split
  (``missing_features: drop``); false keeps them with zero vectors (``missing_features: zeros``).
* the model block's ``early_stopping`` (where Elliot reads it) moves into ``meta``.

:func:`rewrite` applies the rewrites that need no disk to a whole document before it is checked against the
schema (the schema describes both spellings, so an editor accepts either); ``hierarchy`` and
``align_side_with_train`` are resolved by the loader, which reads the folders.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Tuple

from elliot.errors import ConfigError

# Elliot's loader class names (and the plural spelling of its docs) -> our loader name
LOADER_SPELLINGS = {
    "visualattribute": "VisualAttribute", "visualattributes": "VisualAttribute",
    "textualattribute": "TextualAttribute", "textualattributes": "TextualAttribute",
    "audioattribute": "AudioAttribute", "audioattributes": "AudioAttribute",
    "featureattribute": "FeatureAttribute",
    "itemattributes": "ItemAttributes", "userattributes": "UserAttributes",
}
#: Elliot loaders for side information no model here reads (knowledge graphs, raw images)
UNSUPPORTED_LOADERS = {
    "chainedkg": "knowledge graphs feed Elliot's KG models (KGAT, KGFlex, ...), none of which exists here",
    "knowledgechainsloader": "knowledge graphs feed Elliot's KG models (KGAT, KGFlex, ...), none of which exists here",
    "kgcompletion": "knowledge-graph completion data feed Elliot's KGIN-like models, none of which exists here",
    "kgrec": "knowledge-graph data feed Elliot's KG models, none of which exists here",
    "kaheloader": "knowledge-graph data feed Elliot's KaHFM models, none of which exists here",
    "visualattributecomplete": "raw images for end-to-end visual models (DeepStyle, ACF, DVBPR) are not read here; "
                               "extract features first and use VisualAttribute",
    "wordstextualattributes": "word-level textual features for ConvMF-like models are not read here; use "
                              "TextualAttribute with one vector per item",
    "interactionsattributes": "per-interaction attributes (KGFlex / context-aware models) are not read here",
}
SUPPORTED_BACKENDS = ("pytorch", "torch")
#: model-block keys Elliot's models read that change nothing here (said in the log, then dropped)
IGNORED_MODEL_PARAMS = {
    "batch_eval": "evaluation batches are experiment.evaluation.batch_size here (results do not depend on it)",
    "n_fold": "Elliot's LightGCN splits the adjacency in folds to save memory; sparse products need no folds",
}


#: meta keys of the forks that no code reads (there or here)
IGNORED_META = {"write_best_iterations": "read by no code of Elliot or its forks"}


def drop_ignored_params(block: dict, where: str, notes: List[str]) -> dict:
    meta = block.get("meta")
    if isinstance(meta, dict) and set(meta) & set(IGNORED_META):
        for key in set(meta) & set(IGNORED_META):
            notes.append(f"{where}.meta.{key} is accepted and not used: {IGNORED_META[key]}")
        block = {**block, "meta": {k: v for k, v in meta.items() if k not in IGNORED_META}}
    for key in [k for k in block if k in IGNORED_MODEL_PARAMS]:
        block = {k: v for k, v in block.items() if k != key}
        notes.append(f"{where}.{key} is accepted and not used: {IGNORED_MODEL_PARAMS[key]}")
    return block


def check_backend(value, file: str) -> str:
    backends = value if isinstance(value, list) else [value]
    names = [str(b).strip().lower() for b in backends]
    if any(n in SUPPORTED_BACKENDS for n in names):
        return "pytorch"
    raise ConfigError(f"{file}: experiment.backend: {value!r}: only the PyTorch backend exists here (every model "
                      "is a torch module); write backend: pytorch (or a list containing it)")


def hierarchy_paths(root: str, file: str) -> Tuple[dict, List[str]]:
    """Elliot's ``hierarchy`` layout -> fixed train/validation/test paths (fold 0; more folds are named)."""
    notes: List[str] = []
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{file}: experiment.data_config.root_folder: folder not found: {base}")
    folds = sorted(d for d in os.listdir(base) if (base / d).is_dir() and (base / d / "test.tsv").exists())
    if not folds:
        raise ConfigError(f"{file}: experiment.data_config.root_folder: {base} has no <fold>/test.tsv (Elliot's "
                          "hierarchy layout: <root>/0/test.tsv with <root>/0/train.tsv or <root>/0/0/train.tsv + val.tsv)")
    fold = base / folds[0]
    if len(folds) > 1:
        notes.append(f"data_config.root_folder has {len(folds)} test folds; cross-validation is not supported, "
                     f"fold {folds[0]} is used")
    inner = sorted(d for d in os.listdir(fold) if (fold / d).is_dir() and (fold / d / "train.tsv").exists())
    if inner:
        if len(inner) > 1:
            notes.append(f"data_config.root_folder/{folds[0]} has {len(inner)} validation folds; fold {inner[0]} "
                         "is used")
        val_dir = fold / inner[0]
        paths = {"train_path": str(val_dir / "train.tsv"),
                 "validation_path": str(val_dir / "val.tsv") if (val_dir / "val.tsv").exists() else None,
                 "test_path": str(fold / "test.tsv")}
    elif (fold / "train.tsv").exists():
        paths = {"train_path": str(fold / "train.tsv"), "validation_path": None, "test_path": str(fold / "test.tsv")}
    else:
        raise ConfigError(f"{file}: experiment.data_config.root_folder: {fold} has test.tsv but no train.tsv "
                          f"(nor {fold}/0/train.tsv)")
    return paths, notes


def normalise_loader_entry(entry: dict, where: str, file: str, notes: List[str]) -> dict:
    """One side_information entry in Elliot's spelling -> ours (a new dict; the input is not changed)."""
    entry = dict(entry)
    loader = str(entry.get("dataloader", ""))
    key = loader.lower()
    if key in UNSUPPORTED_LOADERS:
        raise ConfigError(f"{file}: {where}.dataloader: {loader}: {UNSUPPORTED_LOADERS[key]}")
    if key in LOADER_SPELLINGS:
        entry["dataloader"] = LOADER_SPELLINGS[key]
    for key in ("images_src_folder", "output_image_size"):
        if entry.pop(key, None) is not None:
            notes.append(f"{where}.{key} is not used: raw images feed Elliot's end-to-end visual models (DVBPR, "
                         "DeepStyle, ACF), which do not exist here")
    if entry.get("dataloader") == "VisualAttribute":
        pca, maps = entry.pop("visual_pca_features", None), entry.pop("visual_feat_map_features", None)
        if "visual_features" not in entry and pca:
            entry["visual_features"] = pca
            notes.append(f"{where}: visual_pca_features are used as the visual features")
        elif pca:
            notes.append(f"{where}: visual_pca_features are not used (visual_features are)")
        if maps:
            if "visual_features" not in entry:
                raise ConfigError(f"{file}: {where}.visual_feat_map_features: convolutional feature maps feed "
                                  "Elliot's ACF / DeepStyle, which do not exist here; give visual_features "
                                  "(one vector per item)")
            notes.append(f"{where}: visual_feat_map_features are not used (no model here reads feature maps)")
    return entry


def move_early_stopping(block: dict, where: str, file: str) -> dict:
    """Elliot reads ``early_stopping`` from the model block; ours lives in ``meta`` (both spellings work)."""
    if "early_stopping" not in block:
        return block
    block = dict(block)
    es = block.pop("early_stopping")
    meta = dict(block.get("meta") or {})
    if meta.get("early_stopping") is not None and es is not None:
        raise ConfigError(f"{file}: {where}: early_stopping is given both in the model block and in meta; keep one")
    if es is not None:
        meta["early_stopping"] = es
    block["meta"] = meta
    return block


def rewrite(doc: Any, file: str) -> Tuple[Any, List[str]]:
    """``doc`` with the side_information loaders and the model blocks in our spelling (a new document; the
    input is not changed), and the notes to log.  Values of the wrong shape are left for the schema to name."""
    notes: List[str] = []
    exp = doc.get("experiment") if isinstance(doc, dict) else None
    if not isinstance(exp, dict):
        return doc, notes
    exp = dict(exp)
    dc = exp.get("data_config")
    entries = dc.get("side_information") if isinstance(dc, dict) else None
    if isinstance(entries, (dict, list)):
        where = "experiment.data_config.side_information"
        listed = [entries] if isinstance(entries, dict) else entries
        listed = [normalise_loader_entry(e, f"{where}[{n}]", file, notes) if isinstance(e, dict) and "dataloader" in e
                  else e for n, e in enumerate(listed)]
        exp["data_config"] = {**dc, "side_information": listed}
    if isinstance(exp.get("models"), dict):
        models = {}
        for name, block in exp["models"].items():
            if isinstance(block, dict) and isinstance(block.get("meta") or {}, dict):
                block = move_early_stopping(block, f"experiment.models.{name}", file)
                block = drop_ignored_params(block, f"experiment.models.{name}", notes)
            models[name] = block
        exp["models"] = models
    return {**doc, "experiment": exp}, notes
