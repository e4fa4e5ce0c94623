"""Training-time add-ons: they change training only through loss terms and gradient hooks."""
from __future__ import annotations

from typing import Dict, Optional

from torch import Tensor


class TrainingAddon:
    """Base class of defenses / regularisers plugged into the one trainer (all methods optional)."""

    name = "addon"

    def on_epoch_start(self, model, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based)."""

    def extra_loss(self, model, batch, epoch: int) -> Optional[Tensor]:
        """A term added to ``model.loss(batch)``, or None."""
        return None

    def after_backward(self, model, optimizer, epoch: int) -> None:
        """After ``loss.backward()``, before ``optimizer.step()`` (may edit gradients)."""

    def after_step(self, model, optimizer, epoch: int) -> None:
        """After ``optimizer.step()``."""

    def after_validation(self, model, epoch: int, values: Dict[int, Dict[str, float]]) -> Dict[str, float]:
        """After a validation pass at epoch ``epoch`` (1-based) with metric ``values``: extra entries for
        the epoch's history record (never used for model selection)."""
        return {}


class PerturbedValidation(TrainingAddon):
    """``meta.eval_perturbations``: at every validation, the validation metrics under the model's own
    perturbations (``model.perturbation_attacks()``, e.g. AMR's FGSM and MSAP at its training budget;
    otherwise FGSM-L2 and MSAP-L2 at 5% of each item's feature norm), added to the history as
    ``val_<attack>_<Metric>@<k>``.  Evaluation only: parameters and features are unchanged."""

    name = "eval_perturbations"

    def __init__(self, dataset, evaluator, seed: int):
        self.dataset, self.evaluator, self.seed = dataset, evaluator, int(seed)

    def attacks(self, model) -> list:
        if hasattr(model, "perturbation_attacks"):
            attacks = model.perturbation_attacks()
        else:
            attacks = [{"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.05, "name": "fgsm"},
                       {"method": "msap", "projection": "l2", "modality": "all", "eps_ratio": 0.05,
                        "nb_iter": 10, "name": "msap"}]
        return [dict(a, split="validation") for a in attacks]

    def after_validation(self, model, epoch: int, values: Dict[int, Dict[str, float]]) -> Dict[str, float]:
        from elliot.evaluation.attacks import evaluate_attacks

        out: Dict[str, float] = {}
        for rec in evaluate_attacks(model, self.dataset, self.evaluator, self.attacks(model), seed=self.seed):
            if rec.get("skipped") or rec.get("cutoff") is None:
                continue
            for metric, value in rec["values"].items():
                out[f"val_{rec['name']}_{metric}@{rec['cutoff']}"] = float(value)
        return out
