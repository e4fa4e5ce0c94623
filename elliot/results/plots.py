"""Pictures of a results folder, read only from what the writers wrote (:mod:`elliot.results.folder`).

matplotlib's ``Figure`` is used without pyplot: rendering is Agg (headless), no backend is switched and no
global state is touched, so plotting inside a notebook or a worker changes nothing around it.  Under
``results/<dataset>/plots/``, each kind only when its inputs exist:

* ``training/<configuration>.png``: per trial, training loss and the validation selection metric per epoch,
  the kept (best) epoch marked;
* ``selected_cutoff_<k>.png``: per cutoff, a bar per model's selected configuration in a panel per metric,
  with the paired tests' significance against the best model when ``paired_ttest`` / ``wilcoxon_test`` ran;
* ``search_<Model>.png``: per searched model, the validation metric of every trial against each varied
  hyperparameter (:mod:`elliot.results.plots_eval` has the attack and rating kinds).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from elliot.results.folder import Results, history_rows

FRACTION = {"Recall", "Precision", "nDCG", "nDCGRendle2020", "HR", "MAP", "MAR", "MRR", "F1", "ExtendedF1", "AUC",
            "GAUC", "LAUC", "Gini", "APLT", "DSC", "PopREO", "PopRSP", "ExtendedPopREO", "ExtendedPopRSP"}
UNITS = {"ItemCoverage": "items", "NumRetrieved": "items per list", "UserCoverage": "users",
         "UserCoverageAtN": "users", "ACLT": "long-tail items per list", "ARP": "training interactions",
         "RMSE": "rating units", "MAE": "rating units", "MSE": "squared rating units", "SEntropy": "nats"}
COUNTS = {"ItemCoverage", "NumRetrieved", "UserCoverage", "UserCoverageAtN"}
RATING_ERRORS = ("RMSE", "MAE", "MSE")
SIGNIFICANCE = 0.05
TEST_MARKS = {"paired_ttest": ("*", "paired t-test"), "wilcoxon_test": ("†", "Wilcoxon signed-rank")}
DPI = 110


@dataclass(frozen=True)
class Plot:
    kind: str  # training | selected | search | attack | rating
    path: Path
    title: str
    model: str = ""
    selected: bool = True  # False for the training curves of configurations that were not selected


def at(metric: str, cutoff: Optional[int]) -> str:
    """``Recall@10``; a rating error (over every pair of the split, not a top-k list) without the cutoff."""
    return metric if cutoff is None or metric in RATING_ERRORS else f"{metric}@{cutoff}"


def metric_label(metric: str, cutoff: Optional[int] = None, prefix: str = "") -> str:
    base = metric.removesuffix("_cold")  # the cold-item version of a metric has its unit
    unit = "0-1" if base in FRACTION else UNITS.get(base)
    return f"{prefix}{at(metric, cutoff)}" + (f" ({unit})" if unit else "")


def metric_text(metric: str, value: float, digits: int = 4) -> str:
    """A metric value as shown: counts (ItemCoverage ...) and large values without decimals."""
    if not math.isfinite(value):
        return "nan"
    counted = metric.removesuffix("_cold") in COUNTS or abs(value) >= 100
    return f"{value:.0f}" if counted else f"{value:.{digits}f}"


def higher_is_better(metric: str) -> bool:
    from elliot.evaluation.metrics import METRICS

    known = METRICS.get(metric.removesuffix("_cold"))
    return True if known is None else bool(known.higher_is_better)


def short_model(model: str) -> str:
    return model.split(".", 1)[1] if model.startswith("external.") else model


def model_colors(models: Sequence[str]) -> Dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def figure(nrows: int = 1, ncols: int = 1, size=(6.4, 4.0), layout: Optional[str] = "constrained", **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout=layout)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.ravel():  # plain tick values: no "1e-5+7.666e-1" offset above the axis
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    return fig, axes


def suptitle(fig, text: str, fontsize: float = 10) -> None:
    """A figure title wrapped to the figure's width (each line of ``text`` separately)."""
    import textwrap

    width = max(int(fig.get_figwidth() * 72 / (0.6 * fontsize)), 30)
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.split("\n")), fontsize=fontsize)


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI)
    tmp.replace(path)
    return path


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=$" else "_" for c in short_model(text))


def value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def varied_params(trials: Sequence[dict]) -> List[str]:
    """The parameters whose value differs between the trials (a grid's axes, a search's dimensions)."""
    keys: List[str] = []
    for t in trials:
        keys += [k for k in t.get("params", {}) if k not in keys]
    return [k for k in keys if len({json.dumps(t.get("params", {}).get(k), sort_keys=True, default=str)
                                    for t in trials}) > 1]


def trial_label(trial: dict, varying: Sequence[str]) -> str:
    parts = [f"{k}={value_text(trial['params'][k])}" for k in varying if k in trial.get("params", {})]
    return " ".join([short_model(trial["model"])] + parts)


def validation_value(trial: dict, metric: str, cutoff: int) -> float:
    value = (trial.get("validation") or {}).get(cutoff, {}).get(metric)
    return float("nan") if value is None else float(value)


# ---- (1) training curves -------------------------------------------------------------------------------
def configurations(results: Results) -> List[tuple]:
    """(model, configuration name, trial or None) of every configuration of the run, in table order."""
    if results.trials:
        return [(m, t["name"], t) for m, ts in results.trials.items() for t in ts]
    owner = {b["recommender"]: b.get("model", b["recommender"]) for b in results.best}
    return [(owner.get(n, n.split("_")[0]), n, None) for n in results.history_tables]


def training_curves(results: Results, out: Path) -> List[Plot]:
    from matplotlib.ticker import MaxNLocator

    from elliot.utils.paths import file_stem

    selected = {b["recommender"]: b for b in results.best}
    plots = []
    for model, name, trial in configurations(results):
        rows = [r for r in history_rows(results, name) if r.get("epoch", 0) >= 1 and "loss" in r]
        if not rows:
            continue  # nothing trained (MostPop, a restored model)
        metric, k = results.selection_metric(model)
        key = f"val_{metric}@{k}"
        best_epoch = int((trial or selected.get(name) or {}).get("best_epoch") or 0)
        label = trial_label(trial, varied_params(results.trials.get(model, []))) if trial else short_model(model)
        fig, axes = figure(2, 1, size=(6.4, 4.8), layout=None, sharex=True)  # fixed margins: one draw, not two
        fig.subplots_adjust(left=0.15, right=0.97, top=0.92, bottom=0.1, hspace=0.1)
        loss_ax, val_ax = axes[0, 0], axes[1, 0]
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["loss"] for r in rows], color="#1f77b4", marker="." if len(rows) <= 50 else None,
                     label="training loss")
        loss_ax.set_ylabel("training loss\n(mean over batches)")
        points = [(r["epoch"], r[key]) for r in rows if key in r]
        if points:
            val_ax.plot(*zip(*points), marker="o", color="#2ca02c", label=f"validation {at(metric, k)}")
        else:
            val_ax.text(0.5, 0.5, "no validation split: the last epoch is kept", ha="center", va="center",
                        transform=val_ax.transAxes)
        val_ax.set_ylabel(metric_label(metric, k, "validation "))
        val_ax.set_xlabel("epoch")
        val_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch:
            for ax in (loss_ax, val_ax):
                ax.axvline(best_epoch, color="#d62728", linestyle="--", linewidth=1)
            best_value = dict(points).get(best_epoch)
            if best_value is not None:
                val_ax.plot([best_epoch], [best_value], marker="*", markersize=14, color="#d62728", linestyle="none",
                            label=f"kept: epoch {best_epoch}, {best_value:.4f}")
            else:
                val_ax.plot([], [], color="#d62728", linestyle="--", label=f"kept: epoch {best_epoch}")
        if trial and trial.get("epochs_run", 0) < int(trial.get("params", {}).get("epochs") or 0):
            loss_ax.plot([], [], linestyle="none", label=f"early stop after epoch {trial['epochs_run']}")
        for ax in (loss_ax, val_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        chosen = name in selected
        suptitle(fig, f"{label}{'  (selected)' if chosen else ''}")
        path = save(fig, out / "training" / f"{file_stem(name)}.png")
        plots.append(Plot("training", path, f"Training curve of {label}", model, selected=chosen))
    return plots


def validation_curves(runs: Dict[str, object], metric: str, path, title: str = "") -> Path:
    """One line per model: the validation ``metric`` (e.g. ``Recall@20``) of the selected configuration at
    every validated epoch, its best epoch in the legend.  ``runs``: label -> TrialResult."""
    fig, axes = figure(size=(6, 3.5))
    ax = axes[0, 0]
    key = f"val_{metric}"
    for label, best in runs.items():
        points = [(row["epoch"], row[key]) for row in best.history if key in row]
        if points:
            epochs, values = zip(*points)
            ax.plot(epochs, values, marker="o", label=f"{label} (best epoch {best.best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title or f"validation {metric}")
    ax.legend()
    return save(fig, path)


# ---- (2) the selected configurations -----------------------------------------------------------------
def _p_value(table: Dict[tuple, float], a: str, b: str, metric: str) -> float:
    return table.get((a, b, metric), table.get((b, a, metric), float("nan")))


def selected_bars(results: Results, out: Path) -> List[Plot]:
    if not results.best:
        return []
    models = [b.get("model", b["recommender"]) for b in results.best]
    colors = model_colors(results.models or models)
    tests = [t for t in TEST_MARKS if t in results.stats]
    plots = []
    rating = all(m in RATING_ERRORS for m in results.metrics)
    for k in results.cutoffs[:1] if rating else results.cutoffs:  # rating errors do not depend on the cutoff
        values = {b.get("model", b["recommender"]): results.tables[k].row(b["recommender"]) or {}
                  for b in results.best}
        metrics = results.metrics
        ncols = min(3, len(metrics))
        nrows = math.ceil(len(metrics) / ncols)
        width = max(3.2, 0.55 * len(models) + 1.4)
        fig, axes = figure(nrows, ncols, size=(width * ncols, 3.3 * nrows + 0.5))
        for ax in axes.ravel()[len(metrics):]:
            ax.set_visible(False)
        for ax, metric in zip(axes.ravel(), metrics):
            ys = np.array([values[m].get(metric, float("nan")) for m in models], dtype=float)
            xs = np.arange(len(models))
            bars = ax.bar(xs, np.nan_to_num(ys), color=[colors.get(m, "#7f7f7f") for m in models])
            finite = np.isfinite(ys)
            ref = None
            if finite.any():
                ref = int(np.nanargmax(ys) if higher_is_better(metric) else np.nanargmin(ys))
                bars[ref].set_edgecolor("black")
                bars[ref].set_linewidth(1.5)
            top = np.nanmax(np.abs(ys)) if finite.any() else 1.0
            for i, (bar, y) in enumerate(zip(bars, ys)):
                marks = ""
                if ref is not None and i != ref:
                    for test in tests:
                        p = _p_value(results.stats[test].get(k, {}), results.best[ref]["recommender"],
                                     results.best[i]["recommender"], metric)
                        marks += TEST_MARKS[test][0] if p < SIGNIFICANCE else ""
                text = "n/a" if not np.isfinite(y) else metric_text(metric, y, 3)
                ax.text(bar.get_x() + bar.get_width() / 2, max(np.nan_to_num(y), 0) + 0.01 * top, text + marks,
                        ha="center", va="bottom", fontsize=7)
            ax.set_ylim(0, top * 1.18 if top > 0 else 1)
            ax.set_xticks(xs, [short_model(m) for m in models], rotation=30, ha="right", fontsize=8)
            ax.set_title(at(metric, k), fontsize=10)
            ax.set_ylabel(metric_label(metric, k, "test "), fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        note = "black edge: best model"
        if tests:
            note += "; " + ", ".join(f"{TEST_MARKS[t][0]} p<{SIGNIFICANCE:g} against it ({TEST_MARKS[t][1]}, two-sided)"
                                     for t in tests)
        where = "over every test pair" if rating else f"at cutoff {k}"
        suptitle(fig, f"Test metrics {where} of each model's configuration selected on validation\n{note}")
        path = save(fig, out / f"selected_cutoff_{k}.png")
        plots.append(Plot("selected", path, f"Selected configurations, test metrics {where}"))
    return plots


# ---- (3) searches --------------------------------------------------------------------------------------
def _numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def search_plots(results: Results, out: Path) -> List[Plot]:
    selected = {b["recommender"] for b in results.best}
    plots = []
    for model, trials in results.trials.items():
        varying = varied_params(trials)
        if len(trials) < 2 or not varying:
            continue
        metric, k = results.selection_metric(model)
        ys = np.array([validation_value(t, metric, k) for t in trials])
        if not np.isfinite(ys).any():
            continue
        better = max if higher_is_better(metric) else min
        algorithm = (((results.config.get("models") or {}).get(model) or {}).get("search") or {}).get("algorithm", "")
        grid = algorithm in ("grid", "")
        ncols = min(3, len(varying))
        nrows = math.ceil(len(varying) / ncols)
        fig, axes = figure(nrows, ncols, size=(max(4.2 * ncols, 5.6), 3.4 * nrows + 0.5), sharey=True)
        for ax in axes.ravel()[len(varying):]:
            ax.set_visible(False)
        for ax, param in zip(axes.ravel(), varying):
            raw = [t["params"].get(param) for t in trials]
            # a grid axis or a hyperopt choice (repeated values) is discrete: ticks at its values and a line through
            # the best trial at each; a continuous hyperopt space is a plain scatter
            discrete = grid or len({value_text(v) for v in raw}) < len(raw)
            if _numeric(raw):
                xs = np.array(raw, dtype=float)
                positive = xs[np.isfinite(xs)]
                log = len(positive) and positive.min() > 0 and positive.max() / positive.min() >= 10
                if log:  # ticks at 1, 2, 5 x 10^n in plain numbers, no minor labels
                    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                    ax.set_xscale("log")
                    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    ax.xaxis.set_minor_formatter(NullFormatter())
                distinct = sorted(set(positive.tolist()))
                if discrete and len(distinct) <= 8:
                    ax.minorticks_off()
                    ax.set_xticks(distinct, [value_text(v) for v in distinct], fontsize=8)
                ax.set_xlabel(f"{param}{' (log scale)' if log else ''}")
            else:
                labels = list(dict.fromkeys(value_text(v) for v in raw))
                xs = np.array([labels.index(value_text(v)) for v in raw], dtype=float)
                ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 3 else 0, fontsize=8)
                ax.set_xlim(-0.5, len(labels) - 0.5)
                ax.set_xlabel(param)
            ok = np.isfinite(ys)
            ax.scatter(xs[ok], ys[ok], color="#1f77b4", alpha=0.7, label="trial")
            best_by_x = {}
            for x, y in zip(xs[ok], ys[ok]):
                best_by_x[x] = better(best_by_x.get(x, y), y)
            if len(best_by_x) > 1 and discrete:
                line = sorted(best_by_x.items())
                ax.plot(*zip(*line), color="#1f77b4", linewidth=1, label=f"best at each {param}")
            chosen = [i for i, t in enumerate(trials) if t["name"] in selected and ok[i]]
            if chosen:
                ax.plot(xs[chosen], ys[chosen], marker="*", markersize=15, color="#d62728", linestyle="none",
                        label="selected")
            ax.set_ylabel(metric_label(metric, k, "validation "), fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        missing = int((~np.isfinite(ys)).sum())
        suptitle(fig, f"{short_model(model)}: validation {at(metric, k)} of {len(trials)} trials"
                 f"{f' ({algorithm} search)' if algorithm else ''} against each varied hyperparameter"
                 + (f"; {missing} without a validation value not shown" if missing else ""))
        path = save(fig, out / f"search_{safe_name(model)}.png")
        plots.append(Plot("search", path, f"{short_model(model)}: validation {at(metric, k)} by hyperparameter", model))
    return plots


# ---- all of them ---------------------------------------------------------------------------------------
def write_plots(results: Results) -> List[Plot]:
    """Every plot kind whose inputs exist, under ``<results>/plots/``; PNGs there from an earlier call that
    this call did not write again are removed (they belong to configurations no longer in the run)."""
    from elliot.results.plots_eval import attack_plots, rating_plots

    out = results.root / "plots"
    plots = (training_curves(results, out) + selected_bars(results, out) + search_plots(results, out)
             + attack_plots(results, out) + rating_plots(results, out))
    written = {p.path.resolve() for p in plots}
    for old in out.rglob("*.png") if out.is_dir() else []:
        if old.resolve() not in written:
            old.unlink()
    return plots
