"""Adversarial perturbations of raw item features: FGSM (L2 and L∞) and MSAP / PGD.

Everything goes through the hooks of :class:`~elliot.recommender.multimodal.MultimodalRecommender`:
the perturbed features ``x_m + δ_m`` replace modality ``m`` inside ``model.features_replaced`` and
the model is differentiated through ``model.score_pairs``.  Gradients are taken with
``torch.autograd.grad(loss, δ)`` only: no parameter's ``.grad`` is touched, the stored features are
never written, and the model is in eval mode (no dropout) while an attack is built.

The attacked objective is the BPR loss L = mean over triples of  -ln σ(s(u,i) - s(u,j))  over
training triples (every training interaction with a seeded uniform negative, or ``sample_size`` of
them); an attack *increases* it.  δ covers the whole catalogue (n_items x d_m): an item that no
triple reaches (directly, or through a graph) has a zero gradient and is left unperturbed.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

TripleArrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


def sample_triples(dataset, sample_size: Optional[int], seed: int) -> TripleArrays:
    """Training triples (u, i, j): every interaction (``sample_size`` None) or a seeded sample of them."""
    from elliot.dataset.samplers import BPRSampler

    sampler = BPRSampler(dataset.train, seed)
    n = len(sampler)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    idx = sampler.rng.permutation(n)
    if sample_size is not None and sample_size < n:
        idx = np.sort(idx[:sample_size])
    u, i = sampler.users[idx], sampler.items[idx]
    return u, i, sampler.negatives(u)


def split_triples(dataset, split: str, sample_size: int, seed: int) -> TripleArrays:
    """(u, i, j) with i a relevant item of ``split`` and j an item u never interacted with (any split)."""
    import scipy.sparse as sp
    from elliot.dataset.samplers import BPRSampler

    matrix = getattr(dataset, split)
    coo = matrix.tocoo()
    rng = np.random.default_rng(seed)
    n = coo.nnz
    idx = np.sort(rng.permutation(n)[:min(sample_size, n)])
    u, i = coo.row[idx].astype(np.int64), coo.col[idx].astype(np.int64)
    seen = dataset.train.copy()
    for other in (dataset.validation, dataset.test):
        if other is not None:
            seen = seen + other
    sampler = BPRSampler(sp.csr_matrix(seen), seed + 1)
    return u, i, sampler.negatives(u)


class FeatureAttack:
    """The BPR gradient w.r.t. additive perturbations of the raw features of ``modalities``."""

    def __init__(self, model, modalities: Sequence[str], triples: TripleArrays, batch_size: int = 8192):
        self.model = model
        self.modalities = list(modalities)
        self.device = model.device
        self.clean = {m: model.feature(m).detach() for m in self.modalities}
        self.triples = [torch.as_tensor(a, device=self.device) for a in triples]
        self.batch_size = int(batch_size)

    def loss_and_grad(self, deltas: Dict[str, Tensor]) -> Tuple[float, Dict[str, Tensor]]:
        """Mean BPR loss over the triples at ``x + δ`` and its gradient w.r.t. every δ_m (chunked)."""
        users, pos, neg = self.triples
        n = len(users)
        grads = {m: torch.zeros_like(self.clean[m]) for m in self.modalities}
        total = 0.0
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, n, self.batch_size):
                sl = slice(start, start + self.batch_size)
                u, i, j = users[sl], pos[sl], neg[sl]
                leaves = {m: deltas[m].detach().clone().requires_grad_(True) for m in self.modalities}
                with torch.enable_grad():
                    with self.model.features_replaced({m: self.clean[m] + leaves[m] for m in self.modalities}):
                        s = self.model.score_pairs(torch.cat([u, u]), torch.cat([i, j]))
                    loss = F.softplus(s[len(u):] - s[: len(u)]).sum() / n
                    found = torch.autograd.grad(loss, [leaves[m] for m in self.modalities], allow_unused=True)
                for m, g in zip(self.modalities, found):
                    if g is not None:
                        grads[m] += g
                total += float(loss.detach())
        finally:
            self.model.train(was_training)
        return total, grads

    # ---- budgets ------------------------------------------------------------------------------------
    def radius(self, modality: str, kind: str, value: float, norm: str) -> Tensor:
        """Per-item budget ε_i (n_items, 1) for ``norm`` in {"l2", "linf"} (see the spec module)."""
        x = self.clean[modality]
        if kind == "abs":
            return torch.full((x.shape[0], 1), float(value), device=x.device, dtype=x.dtype)
        scale = x.norm(p=2, dim=1, keepdim=True)
        if norm == "linf":
            scale = scale / math.sqrt(x.shape[1])
        return float(value) * scale


def _l2_direction(g: Tensor) -> Tensor:
    """Row-wise g / ||g||_2 (zero rows stay zero)."""
    norm = g.norm(p=2, dim=1, keepdim=True)
    return torch.where(norm > 0, g / norm.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))


def project_l2(delta: Tensor, eps: Tensor) -> Tensor:
    """Row-wise projection onto the L2 ball of radius ``eps`` (n, 1)."""
    norm = delta.norm(p=2, dim=1, keepdim=True)
    factor = torch.where(norm > eps, eps / norm.clamp_min(torch.finfo(delta.dtype).tiny), torch.ones_like(norm))
    return delta * factor


def project_linf(delta: Tensor, eps: Tensor) -> Tensor:
    """Element-wise clip to [-eps, eps] (eps per row)."""
    return torch.maximum(torch.minimum(delta, eps), -eps)


def fgsm(attack: FeatureAttack, kind: str, values: Sequence[float], norm: str) -> List[Dict[str, Tensor]]:
    """One gradient, every budget of the sweep: δ = ε Γ/||Γ||_2 (``norm`` l2) or ε sign(Γ) (linf)."""
    zero = {m: torch.zeros_like(x) for m, x in attack.clean.items()}
    _, grads = attack.loss_and_grad(zero)
    out = []
    for value in values:
        deltas = {}
        for m, g in grads.items():
            eps = attack.radius(m, kind, value, norm)
            deltas[m] = eps * (_l2_direction(g) if norm == "l2" else torch.sign(g))
        out.append(deltas)
    return out


def msap(attack: FeatureAttack, kind: str, value: float, projection: str, step: str, nb_iter: int,
         eps_iter: Optional[float]) -> Dict[str, Tensor]:
    """``nb_iter`` ascent steps of size ``eps_iter`` (default 2.5 ε / nb_iter), each projected back
    onto the ε-ball: the L2 ball (``projection: l2``) or the element-wise L∞ box (``linf``).
    ``step``: ``sign`` (α sign Γ) or ``l2`` (α Γ/||Γ||_2 per item; with ``linf`` = Elliot's MSAP).
    No random start: the first step is FGSM's."""
    eps = {m: attack.radius(m, kind, value, projection) for m in attack.modalities}
    ratio = (eps_iter / value) if eps_iter is not None else 2.5 / nb_iter  # eps_iter in the budget's units
    alpha = {m: eps[m] * ratio for m in attack.modalities}
    deltas = {m: torch.zeros_like(x) for m, x in attack.clean.items()}
    for _ in range(nb_iter):
        _, grads = attack.loss_and_grad(deltas)
        for m, g in grads.items():
            direction = torch.sign(g) if step == "sign" else _l2_direction(g)
            d = deltas[m] + alpha[m] * direction
            deltas[m] = project_l2(d, eps[m]) if projection == "l2" else project_linf(d, eps[m])
    return deltas
