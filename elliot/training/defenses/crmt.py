r"""Certified-margin training (CRMT; Yang et al., "Quantifying and Enhancing Multi-modal Robustness with
Modality Preference", ICLR 2024) adapted to pairwise ranking, for any model with per-modality branches.

Setting.  The model's hooks split the fused score into branches (``modality_embeddings``):
s(u,i) = s_ID(u,i) + Σ_m s^(m)(u,i), with s^(m)(u,i) = <e_u^m, e_i^m> (branch m: a modality, or one
fused ``multimodal`` branch for models that fuse early); any part of s not covered by the modality
branches (the ``id`` branch and, for a model whose branches do not sum exactly, the remainder) is
s_ID := s − Σ_m s^(m).  Per-modality margins of a triple (u, i, j):

    Δ^(m)(u,i,j) = s^(m)(u,i) − s^(m)(u,j),      Δ_ID = s_ID(u,i) − s_ID(u,j).

Step 1 (:class:`CRMTRegulariser`, a training add-on): L = L_BPR + ρ · mean_{(u,i,j)} log Σ_m exp(−Δ^(m))
— CRMT's margin regulariser (a soft-min over modalities of the unimodal margins: it enlarges the
*smallest* per-modality margin, so no single modality carries the ranking alone); ρ = 2.0 as in the
CRMT code.

Step 2 (:func:`fit_integration_weights`): encoders frozen, learn non-negative integration weights
a^(m) of s_a = s_ID + Σ_m a^(m) s^(m) that maximise the certified radius below.

Certificate.  The certified radius r(u,i,j) that step 2 maximises, its threat model, assumptions and
derivation are a measurement and live in :mod:`elliot.evaluation.certified` (also reported by the
``certified_radius`` attack entry).

Step 2 as in the CRMT code (``the_second_step``: gradient ascent on the mean radius over training
data, encoders frozen), with one change: r → ∞ as a → 0 whenever Δ_ID > 0 (a model that ignores its
features cannot be attacked through them), so instead of CRMT's weight decay we fix Σ_m a^(m) = M
(a = M·softmax(w); a = 1, the model as trained, is feasible).  CRMT's τ is a global maximum of the
gradient norm over the training set per modality and class; ours is per (user, item) pair, the
quantity the radius formula names.  Δ and τ are computed once, so step 2 is a few hundred Adam steps
over a small tensor.  Caveat: for a model whose modality branches are auxiliary scores not summed
into its fused score (FREEDOM), s_ID = s − Σ_m s^(m) is not a meaningful ID term.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from elliot.evaluation.certified import FrozenMargins, modality_branches
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.training.addons import TrainingAddon

CRMT_DEFAULTS = {"rho": 2.0, "N": 0, "integration": True, "integration_sample": 1024, "integration_steps": 300,
                 "integration_lr": 0.05}


# ---- step 1 --------------------------------------------------------------------------------------------
class CRMTRegulariser(TrainingAddon):
    """ρ · mean log Σ_m exp(−Δ^(m)) added to the loss (step 1); ``finalize`` runs step 2."""

    name = "crmt"

    def __init__(self, rho: float = 2.0, N: int = 0, integration: bool = True, integration_sample: int = 1024,
                 integration_steps: int = 300, integration_lr: float = 0.05, seed: int = 42):
        self.rho, self.N = float(rho), int(N)
        self.integration = bool(integration)
        self.integration_sample, self.integration_steps = int(integration_sample), int(integration_steps)
        self.integration_lr, self.seed = float(integration_lr), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def extra_loss(self, model, batch, epoch: int) -> Optional[Tensor]:
        if self.rho == 0 or len(batch.users) == 0:
            return None
        u, i, j = batch.users, batch.pos_items, batch.neg_items
        if 0 < self.N < len(u):
            idx = torch.randperm(len(u), generator=self.generator)[: self.N].to(u.device)
            u, i, j = u[idx], i[idx], j[idx]
        n = len(u)
        embs = model.modality_embeddings(torch.cat([u, u]), torch.cat([i, j]))
        deltas = []
        for b, (eu, ei) in embs.items():
            if b == "id":
                continue
            s = (eu * ei).sum(-1)
            deltas.append(s[:n] - s[n:])
        if not deltas:
            return None
        return self.rho * torch.logsumexp(-torch.stack(deltas), dim=0).mean()

    def finalize(self, model, dataset):
        """Step 2 (when ``integration``): the model with fitted integration weights, else the model."""
        if not self.integration:
            return model
        return fit_integration_weights(model, dataset, sample_size=self.integration_sample,
                                       steps=self.integration_steps, lr=self.integration_lr, seed=self.seed)


# ---- step 2 --------------------------------------------------------------------------------------------
class IntegratedModel(MultimodalRecommender):
    """``base`` scored as s_a = s + Σ_m (a^(m) − 1) s^(m) (= s_ID + Σ_m a^(m) s^(m)); the hooks delegate to
    ``base`` (attacks replace ``base``'s features), so it can be evaluated and attacked like any model."""

    trainable = False

    def __init__(self, base: MultimodalRecommender, weights: Dict[str, float]):
        nn.Module.__init__(self)
        self.base = base
        self.hp = dict(base.hp)
        self.device = base.device
        self.n_users, self.n_items = base.n_users, base.n_items
        self.name = f"{base.name}+CRMT"
        self.branches = list(weights)
        self.register_buffer("weights", torch.tensor([float(weights[b]) for b in self.branches],
                                                     device=base.device))
        self._cache = None

    @property
    def modalities(self) -> List[str]:
        return self.base.modalities

    def weight_dict(self) -> Dict[str, Tensor]:
        return {b: self.weights[k] for k, b in enumerate(self.branches)}

    def feature(self, modality: str) -> Tensor:
        return self.base.feature(modality)

    def feature_dim(self, modality: str) -> int:
        return self.base.feature_dim(modality)

    def features_replaced(self, replacements):
        return self.base.features_replaced(replacements)

    def modality_embeddings(self, users: Tensor, items: Tensor):
        out = dict(self.base.modality_embeddings(users, items))
        for b, a in self.weight_dict().items():
            eu, ei = out[b]
            out[b] = (eu, ei * a)
        return out

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        s = self.base.score_pairs(users, items)
        embs = self.base.modality_embeddings(users, items)
        for b, a in self.weight_dict().items():
            eu, ei = embs[b]
            s = s + (a - 1) * (eu * ei).sum(-1)
        return s

    def _two_tower(self) -> Dict[str, Tuple[Tensor, Tensor]]:
        """Branch embeddings of every user and every item (one hook call on padded aligned indices)."""
        length = max(self.n_users, self.n_items)
        idx = torch.arange(length, device=self.device)
        embs = self.base.modality_embeddings(idx % self.n_users, idx % self.n_items)
        return {b: (embs[b][0][: self.n_users], embs[b][1][: self.n_items]) for b in self.branches}

    def check_two_tower(self, n_pairs: int = 64, seed: int = 0) -> None:
        """Full scoring caches e_u^b per user and e_i^b per item: valid only if the hooks' branch
        embeddings of a pair depend on (u, i) separately; checked on random pairs."""
        g = torch.Generator().manual_seed(seed)
        u = torch.randint(0, self.n_users, (n_pairs,), generator=g).to(self.device)
        i = torch.randint(0, self.n_items, (n_pairs,), generator=g).to(self.device)
        with torch.no_grad():
            towers = self._two_tower()
            direct = self.base.modality_embeddings(u, i)
        for b in self.branches:
            cached = (towers[b][0][u] * towers[b][1][i]).sum(-1)
            exact = (direct[b][0] * direct[b][1]).sum(-1)
            if not torch.allclose(cached, exact, rtol=1e-4, atol=1e-5):
                raise ValueError(f"CRMT integration: {self.base.name}'s branch '{b}' embeddings are not per-user / "
                                 "per-item (two-tower); full-catalogue scoring with integration weights is undefined")

    def prepare_scoring(self) -> None:
        self.base.prepare_scoring()
        self._cache = self._two_tower()

    def end_scoring(self) -> None:
        self.base.end_scoring()
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        towers = self._cache if self._cache is not None else self._two_tower()
        s = self.base.score(users)
        for b, a in self.weight_dict().items():
            eu, ei = towers[b]
            s = s + (a - 1) * (eu[users] @ ei.T)
        return s


def fit_integration_weights(model, dataset, sample_size: int = 1024, steps: int = 300, lr: float = 0.05,
                            seed: int = 42, log=None) -> IntegratedModel:
    """CRMT step 2: non-negative a^(m) with Σ_m a^(m) = M maximising the mean certified radius of
    ``sample_size`` training triples (Adam on a = M·softmax(w), ``steps`` steps, from a = 1)."""
    from elliot.evaluation.attacks.perturb import sample_triples

    base = model.base if isinstance(model, IntegratedModel) else model
    branches = modality_branches(base)
    if not branches:
        raise ValueError(f"CRMT integration: {base.name} exposes no per-modality branches")
    u, i, j = (torch.as_tensor(a, device=base.device) for a in sample_triples(dataset, sample_size, seed))
    frozen = FrozenMargins(base, u, i, j, branches)
    w = torch.zeros(len(branches), device=base.device, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(int(steps)):
        a = len(branches) * torch.softmax(w, 0)
        objective = frozen.radius({b: a[k] for k, b in enumerate(branches)}).mean()
        opt.zero_grad()
        (-objective).backward()
        opt.step()
    a = (len(branches) * torch.softmax(w.detach(), 0)).tolist()
    wrapped = IntegratedModel(base, dict(zip(branches, a)))
    wrapped.check_two_tower(seed=seed)
    if log:
        log(f"CRMT integration weights: {dict(zip(branches, [round(x, 4) for x in a]))}")
    return wrapped
