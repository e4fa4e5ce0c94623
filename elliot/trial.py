"""One trial = one model configuration: build, train with validation, evaluate on test, save artefacts.

Everything a trial needs travels in :class:`TrialContext` (picklable), so executors can run trials in
other processes; a trial's outcome is a plain :class:`TrialResult`.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from elliot.dataset.dataset import Dataset
from elliot.evaluation.evaluator import Evaluator
from elliot.training.trainer import Trainer
from elliot.utils.paths import file_stem


@dataclass
class TrialContext:
    dataset: Dataset
    experiment: dict  # resolved experiment section (plain dict, YAML key names)
    device: str = "cpu"
    progress: bool = True

    def evaluator(self) -> Evaluator:
        ev = self.experiment.get("evaluation") or {}
        return Evaluator(self.dataset, cutoffs=ev.get("cutoffs", [10]), metrics=ev.get("simple_metrics"),
                         relevance_threshold=ev.get("relevance_threshold", 0.0),
                         mask_validation_in_test=ev.get("mask_validation_in_test", True),
                         batch_size=ev.get("batch_size", 1024), top_k=self.experiment.get("top_k"),
                         complex_metrics=ev.get("complex_metrics") or [],
                         negative_sampling=self.experiment.get("negative_sampling"))


@dataclass
class TrialResult:
    model: str  # registry name, e.g. "BPRMF" or "external.VBPR"
    name: str  # configuration name (Elliot style), used for file names and table rows
    params: Dict[str, object]
    selected_on: str
    best_epoch: int
    epochs_run: int
    seconds_per_epoch: float
    train_seconds: float
    validation: Dict[int, Dict[str, float]]
    test: Dict[int, Dict[str, float]]
    history: List[Dict[str, float]] = field(default_factory=list)
    test_per_user: Dict[int, Dict[str, np.ndarray]] = field(default_factory=dict)
    test_users: Optional[np.ndarray] = None
    attacks: List[dict] = field(default_factory=list)  # robustness results (see elliot.evaluation.attacks)
    extra: Dict[str, object] = field(default_factory=dict)
    # recommendations / weights computed in a worker, written by the parent (see ``run_trial(save=False)``)
    artefacts: Optional[dict] = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """JSON-friendly record (no per-user arrays, no artefacts)."""
        artefacts, self.artefacts = self.artefacts, None
        try:
            d = asdict(self)
        finally:
            self.artefacts = artefacts
        d.pop("test_per_user")
        d.pop("test_users")
        d.pop("artefacts")
        return d


def _format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_format_value(v) for v in value)
    if isinstance(value, float):
        value = f"{value:g}"
    return str(value).replace(".", "$").replace("/", "_").replace(" ", "")


_SHORT = {"epochs": "e", "batch_size": "bs"}


def config_name(model: str, params: Dict[str, object]) -> str:
    """Elliot-style configuration name, e.g. ``BPRMF_seed=42_e=10_bs=1024_factors=64_lr=0$001``."""
    base = model.split(".")[-1]
    parts = [f"{_SHORT.get(k, k)}={_format_value(v)}" for k, v in params.items()
             if not (isinstance(v, (list, tuple)) and len(v) == 0)]
    return "_".join([base] + parts)


def short_label(model: str, params: Dict[str, object], varying=(), limit: int = 60) -> str:
    """Progress-bar label: the model and the values that vary across its sweep (bounded)."""
    base = model.split(".")[-1]
    parts = [f"{_SHORT.get(k, k)}={_format_value(params[k])}" for k in varying if k in params]
    label = " ".join([base] + parts)
    return label if len(label) <= limit else label[: limit - 3] + "..."


def run_trial(ctx: TrialContext, model_name: str, model_cls, params: Dict[str, object], meta,
              defense: Optional[dict] = None, training: Optional[dict] = None, log=None,
              save: bool = True, label: str = "") -> TrialResult:
    """Train and evaluate one configuration.  ``meta`` is the model's validated ``meta`` block.

    ``save=False`` (executors: the trial may run on another machine) keeps the history, recommendations
    and weights in ``result.artefacts`` for :func:`write_artefacts` in the parent process."""
    log = log or (lambda msg: None)
    device = torch.device(ctx.device)
    seed = int(params.get("seed", 42))
    torch.manual_seed(seed)  # weights; the sampler has its own seeded generator
    name = config_name(model_name, params)
    model = model_cls(ctx.dataset, params, device)
    evaluator = ctx.evaluator()
    addons = []
    if defense or training:
        from elliot.training.defenses import build_addons  # robustness add-ons (issue: adversarial robustness)

        addons = build_addons(model, ctx.dataset, defense=defense, training=training, seed=seed)
    if getattr(meta, "eval_perturbations", False):
        from elliot.training.addons import PerturbedValidation

        addons.append(PerturbedValidation(ctx.dataset, evaluator, seed))
    trainer = Trainer(model, ctx.dataset, evaluator, epochs=params.get("epochs", 0),
                      batch_size=params.get("batch_size", 1024), seed=seed,
                      validation_rate=meta.validation_rate, validation_metric=meta.validation_metric,
                      early_stopping=_early_stopping(meta), addons=addons,
                      progress=ctx.progress, description=label or short_label(model_name, params), log=log,
                      optimize_internal_loss=getattr(meta, "optimize_internal_loss", False))
    if getattr(meta, "restore", False):
        fit = _restore_weights(ctx, model, name, trainer, log)
    else:
        fit = trainer.fit()
    test = evaluator.evaluate(model, "test")
    result = TrialResult(model=model_name, name=name, params=dict(params), selected_on=fit.selected_on,
                         best_epoch=fit.best_epoch, epochs_run=fit.epochs_run,
                         seconds_per_epoch=fit.seconds_per_epoch, train_seconds=fit.train_seconds,
                         validation=fit.best_validation, test=test.values, history=fit.history,
                         test_per_user=test.per_user, test_users=test.users)
    attacks = (ctx.experiment.get("evaluation") or {}).get("attacks") or []
    if attacks:
        from elliot.evaluation.attacks import evaluate_attacks

        result.attacks = evaluate_attacks(model, ctx.dataset, evaluator, attacks, clean=test, seed=seed,
                                          target_seed=ctx.experiment.get("random_seed"))
    result.artefacts = collect_artefacts(model, evaluator, meta)
    if save:
        write_artefacts(ctx, result)
    return result


def weights_path(ctx: TrialContext, name: str) -> Path:
    return Path(ctx.experiment["path_output_rec_weight"]) / f"{file_stem(name)}.pt"


def _restore_weights(ctx: TrialContext, model, name: str, trainer: Trainer, log):
    """Elliot's ``meta.restore: true``: load ``weights/<configuration>.pt`` (written by ``save_weights``)
    instead of training, then evaluate as if the loaded epoch had been selected."""
    from elliot.errors import DataError
    from elliot.training.trainer import TrainingResult

    path = weights_path(ctx, name)
    if not path.exists():
        raise DataError(f"meta.restore: true, but there are no saved weights for {name[:80]} at {path}; run it once "
                        "with meta.save_weights: true (and restore: false)")
    try:
        saved = torch.load(path, map_location=model.device, weights_only=True)
        model.load_state_dict(saved["state_dict"])
    except Exception as exc:  # a file of another model / configuration, or a truncated one
        raise DataError(f"meta.restore: cannot load {path} into {name[:80]}: {str(exc).splitlines()[0]}") from None
    log(f"{name}: weights restored from {path} (epoch {saved.get('best_epoch')}); not trained")
    validation = trainer._validate() if ctx.dataset.has_validation else {}
    return TrainingResult(best_epoch=int(saved.get("best_epoch") or 0),
                          selected_on="restored" if not validation else "validation", best_validation=validation,
                          history=[], epochs_run=0)


def _early_stopping(meta) -> Optional[dict]:
    es = getattr(meta, "early_stopping", None)
    if es is None:
        return None
    return es if isinstance(es, dict) else es.model_dump()


def collect_artefacts(model, evaluator: Evaluator, meta) -> dict:
    """What a trial leaves besides its record: top-k recommendations (a rating model: the predicted rating of
    every test pair) and weights when asked for."""
    out = {}
    if getattr(meta, "save_recs", False):
        if getattr(model, "task", "ranking") == "rating":  # every test pair with its predicted rating
            ctx = evaluator.rating_context(model, "test")
            out["recs"] = (ctx.users, ctx.items, ctx.predictions)
        else:
            out["recs"] = evaluator.recommendations(model)
    if getattr(meta, "save_weights", False):
        out["weights"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return out


def write_artefacts(ctx: TrialContext, result: TrialResult) -> None:
    """``history/<name>.tsv`` always; ``recs/<name>.tsv`` and ``weights/<name>.pt`` when collected."""
    from elliot.results.writers import write_history, write_recommendations

    exp = ctx.experiment
    artefacts, result.artefacts = result.artefacts or {}, None
    write_history(Path(exp["path_output_rec_performance"]).parent / "history", result)
    if "recs" in artefacts:
        users, items, scores = artefacts["recs"]
        write_recommendations(Path(exp["path_output_rec_result"]) / f"{file_stem(result.name)}.tsv", ctx.dataset,
                              users, items, scores)
    if "weights" in artefacts:
        path = weights_path(ctx, result.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"configuration": result.name, "params": result.params, "best_epoch": result.best_epoch,
                    "state_dict": artefacts["weights"]}, tmp)
        os.replace(tmp, path)
