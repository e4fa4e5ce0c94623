"""The one training loop: epochs of sampled batches, validation every ``validation_rate`` epochs,
best epoch kept by the validation metric (weights restored), early stopping, per-epoch history.

The loop is the same for every task: the sampler's ``batch_kind`` gives the batch class its tuples form
(:func:`elliot.recommender.base.batch_type`: BPR triples for ranking models, training ratings for rating
models); the model's ``loss`` reads it.

Model selection never looks at the test split.  Without a validation split the last epoch is used
and :attr:`TrainingResult.selected_on` says ``"last_epoch"``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from elliot.dataset.dataset import Dataset
from elliot.errors import ElliotError
from elliot.recommender.base import Recommender, batch_type
from elliot.training.addons import TrainingAddon
from elliot.training.early_stopping import EarlyStopping


class TrainingDiverged(ElliotError):
    """The loss became NaN/inf: a hyperparameter problem, reported without a traceback."""


@dataclass
class TrainingResult:
    best_epoch: int  # 1-based; 0 for models without training epochs
    selected_on: str  # "validation" or "last_epoch"
    best_validation: Dict[int, Dict[str, float]] = field(default_factory=dict)
    history: List[Dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    seconds_per_epoch: float = float("nan")
    train_seconds: float = 0.0


def _snapshot(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _flatten(values: Dict[int, Dict[str, float]], prefix: str) -> Dict[str, float]:
    return {f"{prefix}{m}@{k}": v for k, ms in values.items() for m, v in ms.items()}


class Trainer:
    def __init__(self, model: Recommender, dataset: Dataset, evaluator, *, epochs: int, batch_size: int,
                 seed: int, validation_rate: int = 1, validation_metric: str = "Recall@10",
                 early_stopping: Optional[dict] = None, addons: Sequence[TrainingAddon] = (),
                 progress: bool = True, description: str = "", log=None, optimize_internal_loss: bool = False):
        self.model, self.dataset, self.evaluator = model, dataset, evaluator
        self.epochs, self.batch_size, self.seed = int(epochs), int(batch_size), int(seed)
        self.validation_rate = max(int(validation_rate), 1)
        name, _, k = validation_metric.partition("@")
        self.metric_name, self.metric_cutoff = name, int(k)
        self.addons = list(addons)
        self.progress, self.description = progress, description or model.name
        self.log = log or (lambda msg: None)
        from elliot.evaluation.metrics import METRICS

        metric = METRICS.get(name)
        self.higher_is_better = metric.higher_is_better if metric is not None else True
        # Elliot's optimize_internal_loss: the kept epoch is the one with the lowest training loss
        self.optimize_internal_loss = bool(optimize_internal_loss)
        self.early_stopping = early_stopping or None
        self.stopper = EarlyStopping.from_config(early_stopping, validation_metric, log=self.log)

    def _validate(self) -> Dict[int, Dict[str, float]]:
        return self.evaluator.evaluate(self.model, "validation").values

    def _better(self, value: float, best: float, higher_is_better: bool) -> bool:
        if math.isnan(best):
            return not math.isnan(value)
        return value > best if higher_is_better else value < best

    def _monitored(self, values: Dict[int, Dict[str, float]], loss: float) -> float:
        if self.stopper.on_loss:
            return loss
        name, _, k = self.stopper.monitor.partition("@")
        return values[int(k) if k else self.metric_cutoff][name]

    def _set_lr(self, optimizer, epoch: int) -> None:
        """The one LR schedule (``lr_sched`` and model-specific decays): lr_0 x model.lr_multiplier(epoch)."""
        factor = float(self.model.lr_multiplier(epoch))
        for group in optimizer.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * factor

    def fit(self) -> TrainingResult:
        model, dataset = self.model, self.dataset
        use_validation = dataset.has_validation
        if not model.trainable:
            start = time.perf_counter()
            model.fit(dataset)
            result = TrainingResult(best_epoch=0, selected_on="validation" if use_validation else "last_epoch",
                                    train_seconds=time.perf_counter() - start)
            if use_validation:
                result.best_validation = self._validate()
                result.history.append({"epoch": 0, **_flatten(result.best_validation, "val_")})
            return result

        optimizer = model.make_optimizer()
        sampler = model.make_sampler(dataset, self.seed)
        batch_cls, batch_fields = batch_type(sampler)
        device = model.device
        history: List[Dict[str, float]] = []
        best_value, best_epoch, best_state, best_values = float("nan"), 0, None, {}
        stopped_early, epoch_seconds = False, []
        bar = tqdm(range(self.epochs), desc=self.description, disable=not self.progress, leave=True,
                   dynamic_ncols=True)
        for epoch in bar:
            model.train()
            model.on_epoch_start(epoch)
            self._set_lr(optimizer, epoch)
            for addon in self.addons:
                addon.on_epoch_start(model, epoch)
            start = time.perf_counter()
            total, n_batches = torch.zeros((), device=device), 0
            for arrays in sampler.epoch(self.batch_size):
                batch = batch_cls(zip(batch_fields, (torch.as_tensor(a, device=device) for a in arrays)))
                optimizer.zero_grad(set_to_none=True)
                loss = model.loss(batch)
                for addon in self.addons:
                    extra = addon.extra_loss(model, batch, epoch)
                    if extra is not None:
                        loss = loss + extra
                loss.backward()
                for addon in self.addons:
                    addon.after_backward(model, optimizer, epoch)
                optimizer.step()
                for addon in self.addons:
                    addon.after_step(model, optimizer, epoch)
                total += loss.detach()
                n_batches += 1
            mean_loss = float(total) / max(n_batches, 1)  # one sync per epoch, not per batch
            epoch_seconds.append(time.perf_counter() - start)
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(f"{self.description}: training loss became {mean_loss} at epoch {epoch + 1}; "
                                       "lower `lr` or raise the regularisation")
            record = {"epoch": epoch + 1, "loss": mean_loss, "seconds": epoch_seconds[-1]}
            is_last = epoch + 1 == self.epochs
            if use_validation and ((epoch + 1) % self.validation_rate == 0 or is_last):
                values = self._validate()
                record.update(_flatten(values, "val_"))
                for addon in self.addons:
                    record.update(addon.after_validation(model, epoch + 1, values))
                value = values[self.metric_cutoff][self.metric_name]
                kept = (-mean_loss, best_value, True) if self.optimize_internal_loss else (
                    value, best_value, self.higher_is_better)
                if self._better(*kept):
                    best_value, best_epoch, best_values = kept[0], epoch + 1, values
                    best_state = _snapshot(model)
                bar.set_postfix(loss=f"{mean_loss:.4f}", **{f"{self.metric_name}@{self.metric_cutoff}": f"{value:.4f}",
                                                             "best": best_epoch})
                if self.stopper is not None and self.stopper.update(self._monitored(values, mean_loss)):
                    stopped_early = True
            else:
                bar.set_postfix(loss=f"{mean_loss:.4f}")
            history.append(record)
            if stopped_early:
                self.log(f"{self.description}: early stop at epoch {epoch + 1} (best epoch {best_epoch}; "
                         f"{self.stopper.describe()})")
                break
        bar.close()
        if use_validation and best_state is not None:
            model.load_state_dict(best_state)
            selected = "validation"
        else:
            best_epoch, selected = len(history), "last_epoch"
        return TrainingResult(best_epoch=best_epoch, selected_on=selected, best_validation=best_values,
                              history=history, epochs_run=len(history), stopped_early=stopped_early,
                              seconds_per_epoch=float(np.median(epoch_seconds)) if epoch_seconds else float("nan"),
                              train_seconds=float(sum(epoch_seconds)))
