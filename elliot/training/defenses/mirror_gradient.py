"""Mirror Gradient (Zhong et al., "Mirror Gradient: Towards Robust Multimodal Recommender Systems via
Exploring Flat Local Minima", WWW 2024; code: Qrange-group/Mirror-Gradient, ``src/common/trainer.py``).

Algorithm (the paper's Alg. 1 as in the authors' trainer): on every ``beta``-th batch of an epoch
(batch index t with t mod beta = 0, counted from 0 in each epoch) the optimiser takes two steps on
the same batch instead of one,

    θ'  = step(θ,  α1 · ∇L(θ))      (a normal step on the gradient scaled by alpha1)
    θ'' = step(θ', −α2 · ∇L(θ'))    (a *mirror* step: the gradient at θ' with its sign inverted)

so that training is pushed away from sharp minima (a flat minimum tolerates the reversed step);
other batches are unchanged.  Defaults from the authors' ``configs/mg.yaml``: alpha1 = 1.0,
alpha2 = 0.1 (their grid: 0.1, 0.2, 0.3), beta = 3.  The optimiser is the model's own (Adam, as
theirs), so the scale alpha1 is nearly neutral for Adam (as in their code).

As a trainer add-on: ``extra_loss`` remembers the batch, ``after_backward`` scales the gradient by
alpha1, ``after_step`` recomputes ``model.loss(batch)`` at θ', back-propagates −alpha2 times it and
steps again.  The mirror step uses the model's loss only (other add-ons' terms enter the first step).
Works for any trainable model (multimodal or not).  Config::

    training:
      mirror_gradient: {enable: true, alpha1: 1.0, alpha2: 0.1, beta: 3}

(``interval`` is accepted as another name of ``beta``.)
"""
from __future__ import annotations

from typing import Optional

import torch

from elliot.training.addons import TrainingAddon

MG_DEFAULTS = {"alpha1": 1.0, "alpha2": 0.1, "beta": 3}


class MirrorGradient(TrainingAddon):
    name = "mirror_gradient"

    def __init__(self, alpha1: float = 1.0, alpha2: float = 0.1, beta: int = 3):
        self.alpha1, self.alpha2, self.beta = float(alpha1), float(alpha2), max(int(beta), 1)
        self._index = -1
        self._batch = None
        self.mirror_steps = 0

    def on_epoch_start(self, model, epoch: int) -> None:
        self._index = -1

    def extra_loss(self, model, batch, epoch: int) -> Optional[torch.Tensor]:
        self._index += 1
        self._batch = batch if self._index % self.beta == 0 else None
        return None

    def after_backward(self, model, optimizer, epoch: int) -> None:
        if self._batch is not None and self.alpha1 != 1.0:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(self.alpha1)

    def after_step(self, model, optimizer, epoch: int) -> None:
        if self._batch is None:
            return
        batch, self._batch = self._batch, None
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        (-self.alpha2 * loss).backward()
        optimizer.step()
        self.mirror_steps += 1
