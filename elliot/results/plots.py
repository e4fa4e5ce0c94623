"""Pictures of written results (matplotlib, headless ``Agg``); they read only what the trials hold."""
from __future__ import annotations

from pathlib import Path
from typing import Dict


def validation_curves(runs: Dict[str, object], metric: str, path, title: str = "") -> Path:
    """One line per model: the validation ``metric`` (e.g. ``Recall@20``) of the selected configuration at
    every validated epoch, its best epoch in the legend.  ``runs``: label -> TrialResult."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
