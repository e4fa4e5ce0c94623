"""Plots of the robustness and rating evaluations of a results folder (see :mod:`elliot.results.plots`).

* ``attack_<Model>_cutoff_<k>.png``: for the model's selected configuration, when an attack was run at two or
  more budgets (an ε sweep), each metric clean (dashed) and attacked (solid) against ε, a panel per metric
  (rows) and attacked modality (columns), from the long-form ``attacks_*.tsv``;
* ``rating_predicted_vs_true.png``: for a rating run (only RMSE / MAE / MSE evaluated), the predicted rating
  of every test pair (``recs/<configuration>.tsv``: ``user item prediction``) against its true rating (the
  test file of the resolved config), a panel per model's selected configuration.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from elliot.results.folder import Results
from elliot.results.plots import Plot, figure, metric_label, model_colors, safe_name, save, short_model, suptitle

RATING = {"RMSE", "MAE", "MSE"}
BUDGET_AXIS = {"eps_ratio": "ε (fraction of each item's feature L2 norm)", "eps": "ε (absolute, in feature units)"}
METHOD_COLORS = ["#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


# ---- (4) attacks against ε ------------------------------------------------------------------------------
def attack_plots(results: Results, out: Path) -> List[Plot]:
    plots = []
    for record in results.best:
        name, model = record["recommender"], record.get("model", record["recommender"])
        rows = [r for r in results.attacks if r["model"] == name and r["cutoff"] is not None and not r["skipped"]
                and np.isfinite(r["budget_value"])]
        for k in sorted({r["cutoff"] for r in rows}):
            at_k = [r for r in rows if r["cutoff"] == k]
            sweeps: Dict[Tuple[str, str, str], List[dict]] = {}
            for r in at_k:
                sweeps.setdefault((r["method"], r["modality"], r["budget_kind"]), []).append(r)
            sweeps = {key: rs for key, rs in sweeps.items() if len({r["budget_value"] for r in rs}) >= 2}
            if not sweeps:
                continue
            kind = next(iter(sweeps))[2]
            sweeps = {key: rs for key, rs in sweeps.items() if key[2] == kind}
            modalities = sorted({key[1] for key in sweeps})
            methods = sorted({key[0] for key in sweeps})
            metrics = [m for m in results.metrics if any(r["metric"] == m for rs in sweeps.values() for r in rs)]
            fig, axes = figure(len(metrics), len(modalities), size=(3.9 * len(modalities) + 0.6,
                                                                     2.9 * len(metrics) + 0.7), sharey="row")
            for i, metric in enumerate(metrics):
                for j, modality in enumerate(modalities):
                    ax = axes[i, j]
                    clean = None
                    for c, method in enumerate(methods):
                        pts = sorted((r["budget_value"], r["attacked"], r["clean"])
                                     for r in sweeps.get((method, modality, kind), []) if r["metric"] == metric)
                        if not pts:
                            continue
                        eps, attacked, cleans = zip(*pts)
                        clean = cleans[0]
                        ax.plot(eps, attacked, marker="o", color=METHOD_COLORS[c % len(METHOD_COLORS)],
                                label=f"attacked ({method})")
                    if clean is not None:
                        ax.axhline(clean, color="#2ca02c", linestyle="--", label=f"clean {clean:.4f}")
                    ax.set_title(f"{metric}@{k}, {modality} features perturbed", fontsize=9)
                    ax.set_ylabel(metric_label(metric, k, "test "), fontsize=8)
                    ax.set_xlabel(BUDGET_AXIS.get(kind, kind), fontsize=8)
                    ax.set_xlim(left=0)
                    ax.grid(alpha=0.3)
                    ax.legend(fontsize=7, loc="best")
            suptitle(fig, f"{short_model(model)} (selected configuration): clean vs attacked test metrics "
                          f"against the attack budget, cutoff {k}")
            path = save(fig, out / f"attack_{safe_name(model)}_cutoff_{k}.png")
            plots.append(Plot("attack", path, f"{short_model(model)}: clean vs attacked against ε, cutoff {k}",
                              model))
    return plots


# ---- (5) rating predictions ------------------------------------------------------------------------------
def is_rating_run(results: Results) -> bool:
    return bool(results.metrics) and set(results.metrics) <= RATING


def test_ratings_path(results: Results) -> Optional[Tuple[Path, bool]]:
    """(file, labelled) holding the test ratings of the resolved config: ``test_path`` (fixed), the split
    written by ``splitting.save_on_disk``, or the ``.inter`` file (labelled: the rows with ``x_label`` 2);
    None when they are not on disk."""
    dc = results.config.get("data_config") or {}
    splitting = results.config.get("splitting") or {}
    strategy = dc.get("strategy")
    source = dc.get("dataset_path") or dc.get("train_path")
    if strategy == "fixed" and dc.get("test_path"):
        path, labelled = Path(dc["test_path"]), False
    elif splitting.get("save_on_disk") and source:
        path, labelled = Path(splitting.get("save_folder") or Path(source).parent / "splitting") / "test.tsv", False
    elif strategy in ("mmrec", "dataset") and source:
        path, labelled = Path(source), True  # the test rows of an x_label column, when it has one
    else:
        return None
    return (path, labelled) if path.is_file() else None


def _ids(column: np.ndarray) -> np.ndarray:
    return np.char.decode(column, "utf-8") if column.dtype.kind == "S" else column.astype(str)


def test_ratings(results: Results) -> Optional[Dict[Tuple[str, str], float]]:
    from elliot.dataset.readers import read_table

    found = test_ratings_path(results)
    if found is None:
        return None
    path, labelled = found
    dc = results.config.get("data_config") or {}
    table = read_table(path, dc.get("separator", "\t"), dc.get("header"), mmrec=dc.get("strategy") == "mmrec")
    if labelled and table.labels is None:
        return None  # a dataset split in memory: its test ratings are not on disk
    keep = table.labels == 2 if labelled else np.ones(len(table.users), dtype=bool)
    return dict(zip(zip(_ids(table.users[keep]).tolist(), _ids(table.items[keep]).tolist()),
                    table.ratings[keep].tolist()))


def _predictions(path: Path) -> List[Tuple[str, str, float]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        cells = line.split("\t")
        if len(cells) < 3:
            from elliot.errors import DataError

            raise DataError(f"{path}: line {n}: expected user<TAB>item<TAB>prediction")
        rows.append((cells[0], cells[1], float(cells[2])))
    return rows


def rating_plots(results: Results, out: Path) -> List[Plot]:
    from elliot.utils.paths import file_stem

    if not is_rating_run(results) or not results.best:
        return []
    recs = results.folder("path_output_rec_result", "recs")
    found = [(b, recs / f"{file_stem(b['recommender'])}.tsv") for b in results.best]
    found = [(b, p) for b, p in found if p.is_file()]
    truth = test_ratings(results) if found else None
    if not truth:
        return []
    panels = []
    for b, path in found:
        pairs = [(truth[(u, i)], s) for u, i, s in _predictions(path) if (u, i) in truth]
        if pairs:
            panels.append((b.get("model", b["recommender"]), np.array(pairs, dtype=float)))
    if not panels:
        return []
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    colors = model_colors(results.models)
    fig, axes = figure(nrows, ncols, size=(4.3 * ncols, 3.9 * nrows + 0.4), sharex=True, sharey=True)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    lo = min(p.min() for _, p in panels)
    hi = max(p.max() for _, p in panels)
    for ax, (model, pairs) in zip(axes.ravel(), panels):
        true, pred = pairs[:, 0], pairs[:, 1]
        levels = np.unique(true)
        color = colors.get(model, "#1f77b4")
        if len(levels) <= 15:  # discrete stars: the distribution of the predictions at each true rating
            groups = [pred[true == v] for v in levels]
            width = 0.6 * (np.min(np.diff(levels)) if len(levels) > 1 else 1.0)
            box = ax.boxplot(groups, positions=levels, widths=width, patch_artist=True, showfliers=False,
                             manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(color)
                patch.set_alpha(0.5)
            ax.scatter(levels, [g.mean() for g in groups], color="black", marker="D", s=18, zorder=3,
                       label="mean prediction")
        else:
            ax.scatter(true, pred, s=6, alpha=0.3, color=color, label="test pair")
        ax.plot([lo, hi], [lo, hi], color="#7f7f7f", linestyle="--", linewidth=1, label="prediction = truth")
        rmse = float(np.sqrt(np.mean((pred - true) ** 2)))
        mae = float(np.mean(np.abs(pred - true)))
        ax.set_title(f"{short_model(model)}: RMSE {rmse:.3f}, MAE {mae:.3f}\n{len(true)} test pairs", fontsize=9)
        ax.set_xlabel("true rating (test file)")
        ax.set_ylabel("predicted rating")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    suptitle(fig, "Predicted vs true test ratings of each model's selected configuration\n"
                  "boxes: quartiles of the predictions at each true rating; whiskers: 1.5 IQR")
    path = save(fig, out / "rating_predicted_vs_true.png")
    return [Plot("rating", path, "Predicted vs true test ratings")]
