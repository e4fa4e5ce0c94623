"""Modality Balancing (Shang et al., ACM MM 2023) as a training add-on for any multimodal model.

Per batch, ``N`` of the batch's BPR triples (u, i, j) are drawn (seeded, without replacement) and

1. an adversarial item embedding of the *sensitive* modality v is distilled: PGD in the raw
   feature space of v, ``pgd_steps`` sign steps of size ``pgd_step_size`` projected onto the L∞
   ball of radius ``distill_eps`` around x_i^v, minimising ||e_i^v(x_i^v + δ) − e_j^v||² (the
   positive's v-embedding is pushed toward the negative's; e_j^v is fixed), gradients w.r.t. δ only;
   e_{i,adv}^v = e_i^v(x_i^v + δ*) is then recomputed with gradients to the model's parameters;
2. s_margin^t = <e_u^t, e_i^t> − <e_u^t, e_j^t>       (the robust modality t)
   s_margin^v = <e_u^v, e_i^v> − <e_u^v, e_{i,adv}^v> (the sensitive modality v)
   L_balance  = mean over the N triples of max(s_margin^v − s_margin^t, 0)
3. ``lambda`` · L_balance is added to the model's loss (L_BPR + its regularisers).

e^m are the model's per-modality branch embeddings ``modality_embeddings(users, items)[m]``
(the hooks), so the defense works unchanged for VBPR (``fusion: per_modality``), LightGCNM, MMGCN,
GRCN, SLMRec, LATTICE and any model exposing per-modality branches.  For graph models the
adversarial features of the sampled positives are put into the full feature matrix
(``features_replaced``) and propagate like any feature; e_u^v is taken from the clean pass.

Defaults (the defense block of the authors' MMRec integration): lambda 0.01, N 20, distill_eps 1.0
(absolute, raw-feature units), pgd_steps 10, pgd_step_size 0.1.  PGD has no random start, and the
triple sampling uses a private generator: switching the defense on never changes the global RNG
stream the rest of training uses, and ``enable: false`` builds no add-on at all (bit-identical).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from elliot.errors import ConfigError
from elliot.recommender.base import unique_index
from elliot.recommender.multimodal import model_branches
from elliot.training.addons import TrainingAddon

MB_DEFAULTS = {"sensitive_modality": "visual", "robust_modality": "", "lambda": 0.01, "N": 20,
               "distill_eps": 1.0, "pgd_steps": 10, "pgd_step_size": 0.1}


def resolve_modalities(model, sensitive: str, robust: str, where: str) -> tuple:
    """Check (and default) the sensitive / robust modalities against the model's branches."""
    branches = [b for b in model_branches(model) if b != "id"]
    if not branches:
        raise ConfigError(f"{where}: model {model.name} exposes no per-modality branches "
                          "(modality_embeddings is empty); Modality Balancing needs them")
    if sensitive not in branches:
        hint = ("; with VBPR set `fusion: per_modality`" if "multimodal" in branches else "")
        raise ConfigError(f"{where}.sensitive_modality: '{sensitive}' is not a branch of {model.name} "
                          f"(branches: {', '.join(branches)}){hint}")
    if not robust:
        others = [b for b in branches if b != sensitive]
        if not others:
            raise ConfigError(f"{where}.robust_modality: {model.name} has no modality branch other than "
                              f"'{sensitive}'")
        robust = others[0]
    if robust not in branches or robust == sensitive:
        raise ConfigError(f"{where}.robust_modality: '{robust}' must be a branch of {model.name} other than "
                          f"the sensitive one (branches: {', '.join(branches)})")
    return sensitive, robust


class ModalityBalancing(TrainingAddon):
    """L_BPR + λ · L_balance; see the module docstring."""

    name = "modality_balancing"

    def __init__(self, sensitive_modality: str, robust_modality: str, lam: float = 0.01, N: int = 20,
                 distill_eps: float = 1.0, pgd_steps: int = 10, pgd_step_size: float = 0.1, seed: int = 42):
        self.sensitive, self.robust = sensitive_modality, robust_modality
        self.lam, self.N = float(lam), int(N)
        self.eps, self.steps, self.step_size = float(distill_eps), int(pgd_steps), float(pgd_step_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_loss: Optional[Tensor] = None  # detached; no host sync in the training loop

    def sample(self, batch_size: int, device) -> Tensor:
        n = min(self.N, batch_size)
        return torch.randperm(batch_size, generator=self.generator)[:n].to(device)

    def distill(self, model, users: Tensor, pos: Tensor, neg_item_emb: Tensor) -> Tensor:
        """δ* (n_unique_pos, d_v) by PGD-L∞ on the sensitive modality's raw features; returns the
        replacement feature matrix x^v + δ* (no gradient to anything)."""
        v = self.sensitive
        x = model.feature(v).detach()
        uniq, inv = unique_index(pos, x.shape[0])
        delta = torch.zeros(len(uniq), x.shape[1], device=x.device, dtype=x.dtype)
        for _ in range(self.steps):
            leaf = delta.clone().requires_grad_(True)
            full = x.index_add(0, uniq, leaf)
            with torch.enable_grad():
                with model.features_replaced({v: full}):
                    _, e_i = model.modality_embeddings(users, pos)[v]
                objective = (e_i - neg_item_emb).pow(2).sum()
                (grad,) = torch.autograd.grad(objective, leaf)
            delta = (delta - self.step_size * grad.sign()).clamp(-self.eps, self.eps)
        return x.index_add(0, uniq, delta)

    def balance_loss(self, model, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        v, t = self.sensitive, self.robust
        n = len(users)
        clean = model.modality_embeddings(torch.cat([users, users]), torch.cat([pos, neg]))
        eu_t, ei_t = clean[t]
        eu_v, ei_v = clean[v]
        margin_t = (eu_t[:n] * ei_t[:n]).sum(-1) - (eu_t[n:] * ei_t[n:]).sum(-1)
        adv_features = self.distill(model, users, pos, ei_v[n:].detach())
        with model.features_replaced({v: adv_features}):
            _, ei_adv = model.modality_embeddings(users, pos)[v]
        margin_v = (eu_v[:n] * ei_v[:n]).sum(-1) - (eu_v[:n] * ei_adv).sum(-1)
        return torch.relu(margin_v - margin_t).mean()

    def extra_loss(self, model, batch, epoch: int) -> Optional[Tensor]:
        if self.lam == 0 or self.N <= 0 or len(batch.users) == 0:
            return None
        idx = self.sample(len(batch.users), batch.users.device)
        loss = self.balance_loss(model, batch.users[idx], batch.pos_items[idx], batch.neg_items[idx])
        self.last_loss = loss.detach()
        return self.lam * loss
