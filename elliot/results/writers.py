"""Writers for Elliot's result layout under ``results/<dataset>/`` and the console table.

* ``performance/rec_cutoff_<k>_relthreshold_<t>_<timestamp>.tsv``: header ``model`` + metrics, a row
  per configuration (test metrics of the epoch selected on validation);
* ``performance/bestmodelparams_cutoff_<k>_relthreshold_<t>_<timestamp>.json``;
* ``recs/<configuration>.tsv``: ``user item score`` with the original ids (top-k per user; for a rating
  model ``user item prediction``, one row per test pair);
* ``history/<configuration>.tsv``: one row per epoch (loss, seconds, validation metrics);
* ``data_summary.json``: users, items, interactions per split, modalities with their dimensions.
Files are written to a temporary name and renamed, so a crash never leaves half a table.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import numpy as np

from elliot.utils.paths import file_stem


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6f}" if np.isfinite(value) else "nan"
    return str(value)


def threshold_label(threshold: float) -> str:
    return f"{threshold:g}"


def performance_path(folder, cutoff: int, threshold: float, timestamp: str, prefix: str = "rec") -> Path:
    return Path(folder) / f"{prefix}_cutoff_{cutoff}_relthreshold_{threshold_label(threshold)}_{timestamp}.tsv"


def write_performance(folder, results: Sequence, cutoffs: Iterable[int], metrics: Sequence[str],
                      threshold: float, timestamp: str, prefix: str = "rec",
                      split: str = "test") -> List[Path]:
    """One TSV per cutoff: a row per configuration, a column per metric."""
    paths = []
    for k in cutoffs:
        lines = ["\t".join(["model"] + list(metrics))]
        for r in results:
            values = getattr(r, split).get(k, {})
            lines.append("\t".join([r.name] + [_fmt(values.get(m, float("nan"))) for m in metrics]))
        path = performance_path(folder, k, threshold, timestamp, prefix)
        _atomic_write(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths


def write_triplets(folder, results: Sequence, cutoffs: Iterable[int], metrics: Sequence[str], threshold: float,
                   timestamp: str) -> List[Path]:
    """Elliot's ``print_results_as_triplets``: ``triplets_rec_cutoff_<k>_...tsv`` with ``model metric value``
    rows, one per configuration and metric."""
    paths = []
    for k in cutoffs:
        lines = ["model\tmetric\tvalue"]
        for r in results:
            values = r.test.get(k, {})
            lines += [f"{r.name}\t{m}\t{_fmt(values[m])}" for m in metrics if m in values]
        path = performance_path(folder, k, threshold, timestamp, prefix="triplets_rec")
        _atomic_write(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths


def write_best_params(folder, best: Dict[str, object], metas: Dict[str, dict], cutoffs: Iterable[int],
                      threshold: float, timestamp: str) -> List[Path]:
    """Elliot's ``bestmodelparams`` JSON: a list of {meta, recommender, configuration}."""
    records = [{"meta": metas.get(model, {}), "recommender": r.name, "model": model,
                "selected_on": r.selected_on, "best_epoch": r.best_epoch,
                "configuration": {k: v for k, v in r.params.items()}}
               for model, r in best.items()]
    paths = []
    for k in cutoffs:
        path = Path(folder) / f"bestmodelparams_cutoff_{k}_relthreshold_{threshold_label(threshold)}_{timestamp}.json"
        _atomic_write(path, json.dumps(records, indent=2, default=str) + "\n")
        paths.append(path)
    return paths


def write_recommendations(path, dataset, users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> Path:
    """``user<TAB>item<TAB>score`` rows with the dataset's original ids (top-k per user, best first; for a
    rating model the predicted rating of every test pair, by user then item)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    u = dataset.user_ids[users].astype(str)
    i = dataset.item_ids[items].astype(str)
    s = np.char.mod("%.6g", scores.astype(np.float64))
    rows = np.char.add(np.char.add(np.char.add(np.char.add(u, "\t"), i), "\t"), s)
    _atomic_write(path, "\n".join(rows.tolist()) + ("\n" if len(rows) else ""))
    return path


def write_history(folder, result) -> Path:
    keys: List[str] = []
    for row in result.history:
        keys.extend(k for k in row if k not in keys)
    lines = ["\t".join(keys)] + ["\t".join(_fmt(row.get(k, "")) for k in keys) for row in result.history]
    path = Path(folder) / f"{file_stem(result.name)}.tsv"
    _atomic_write(path, "\n".join(lines) + "\n")
    return path


def write_data_summary(folder, dataset) -> Path:
    """``data_summary.json``: users, items, the item catalogue, interactions / users / items per split, the
    modalities with their dimensions, and the builder's counts of dropped rows (``Dataset.info``)."""
    splits = {}
    for split in ("train", "validation", "test"):
        m = getattr(dataset, split)
        if m is not None:
            m = m.tocsr()
            splits[split] = {"interactions": int(m.nnz), "users": int((np.diff(m.indptr) > 0).sum()),
                             "items": int(len(np.unique(m.indices)))}
    cold = np.bincount(dataset.train.tocsr().indices, minlength=dataset.n_items)[:dataset.n_items] == 0
    summary = {"dataset": dataset.name, "users": int(dataset.n_users), "items": int(dataset.n_items),
               "item_catalogue": str((dataset.info or {}).get("item_catalogue", "train")),
               "cold_items": int(cold.sum()), "splits": splits,
               "train_density": float(dataset.train.nnz / max(dataset.n_users * dataset.n_items, 1)),
               "modalities": {m: {"dim": int(x.shape[1])} for m, x in dataset.features.items()},
               "info": json.loads(json.dumps(dataset.info or {}, default=lambda v: v.tolist() if hasattr(v, "tolist")
                                             else str(v)))}
    path = Path(folder) / "data_summary.json"
    _atomic_write(path, json.dumps(summary, indent=2) + "\n")
    return path


def write_stat_tests(folder, rows: Sequence[tuple], test: str, cutoff: int, threshold: float,
                     timestamp: str) -> Path:
    """``model_a model_b metric p_value`` for every pair of best configurations."""
    lines = ["model_a\tmodel_b\tmetric\tp_value"] + ["\t".join([a, b, m, _fmt(p)]) for a, b, m, p in rows]
    path = Path(folder) / f"stat_{test}_cutoff_{cutoff}_relthreshold_{threshold_label(threshold)}_{timestamp}.tsv"
    _atomic_write(path, "\n".join(lines) + "\n")
    return path


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
