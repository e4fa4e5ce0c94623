"""Missing and noisy modalities at test time: a modality's features zeroed, replaced by the mean, or by
another item's vector, for all items or a seeded fraction of them.

Not an optimised attack: the trained model is evaluated with ``model.feature(m)`` replaced (through
``features_replaced``; the stored features are never written) for the modalities of the group:

* ``zero``: the affected rows become 0 (the content is absent);
* ``mean``: the affected rows become the mean feature vector over all items (mean imputation);
* ``swap``: each affected item i gets the clean vector of another item j ≠ i, drawn uniformly (a
  mismatched image or description); with several modalities in the group the same j serves all.

The affected items are the first round(fraction · n_items) of one seeded permutation of the catalogue:
the same items for every mode, modality and model of an experiment (paired comparisons), and a smaller
fraction's items are a subset of a larger one's.
"""
from __future__ import annotations

import time
from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

#: which tensor is replaced (recorded with every result)
TARGET_MISSING = "raw item features read through model.feature(m), replaced rows (zero / mean / another item's)"


def affected_items(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted int64 indices of the round(fraction · n_items) items whose features are replaced."""
    count = int(round(float(fraction) * n_items))
    return np.sort(np.random.default_rng(seed).permutation(n_items)[:count]).astype(np.int64)


def swap_sources(items: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """For each affected item i an item j ≠ i drawn uniformly with ``seed`` (i itself when n_items is 1)."""
    if n_items < 2:
        return items.copy()
    shift = np.random.default_rng([seed, 1]).integers(1, n_items, size=len(items))
    return ((items + shift) % n_items).astype(np.int64)


def replaced_features(clean: Dict[str, Tensor], mode: str, items: np.ndarray, sources: np.ndarray) -> Dict[str, Tensor]:
    """New tensors (``clean`` untouched) with the rows ``items`` replaced as ``mode`` says."""
    out = {}
    for m, x in clean.items():
        y = x.detach().clone()
        idx = torch.as_tensor(items, device=x.device)
        if len(items):
            if mode == "zero":
                y[idx] = 0
            elif mode == "mean":
                y[idx] = x.mean(0, keepdim=True).to(y.dtype)
            elif mode == "swap":
                y[idx] = x[torch.as_tensor(sources, device=x.device)]
            else:  # validated in spec.py
                raise ValueError(f"unknown missing-modality mode {mode!r}")
        out[m] = y
    return out


def evaluate_missing(model, dataset, evaluator, spec: dict, clean, seed: int, groups: List[List[str]],
                     label_of) -> List[dict]:
    """Records of one ``missing_modality`` entry: one per modality group, mode, fraction and cutoff."""
    from elliot.evaluation.attacks.evaluate import attacked_records, skipped

    split = spec["split"]
    records: List[dict] = []
    n = dataset.n_items
    for group in groups:
        mod_label = label_of(group)
        missing = [m for m in group if m not in model.modalities]
        if missing:
            records.append(skipped(spec, f"model {model.name} does not use modality {missing}; it uses "
                                         f"{model.modalities}", name=f"missing_modality-{mod_label}"))
            continue
        clean_feats = {m: model.feature(m).detach() for m in group}
        for fraction in spec["fractions"]:
            items = affected_items(n, fraction, seed)
            sources = swap_sources(items, n, seed)
            for mode in spec["modes"]:
                start = time.perf_counter()
                replaced = replaced_features(clean_feats, mode, items, sources)
                suffix = f"{mod_label}-{mode}-f{fraction:g}"
                name = f"{spec['name']}-{suffix}" if spec.get("name") else f"missing_modality-{suffix}"
                base = {"name": name, "method": "missing_modality", "modality": mod_label, "mode": mode,
                        "budget": {"kind": "fraction", "value": fraction}, "target": TARGET_MISSING}
                changed = {m: int((replaced[m] != clean_feats[m]).any(1).sum()) for m in group}
                perturbation = {m: {"items_replaced": len(items), "items_changed": changed[m]} for m in group}
                records.extend(attacked_records(model, evaluator, split, clean, replaced, base,
                                                time.perf_counter() - start, perturbation=perturbation))
    return records
