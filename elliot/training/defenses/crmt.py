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

Derivation (what is certified).  Threat model: an adversary adds δ_i^(m), δ_j^(m) to the raw features
of modality m of the two compared items i and j (all modalities at once), with joint L2 norm
||δ|| = (Σ_m ||δ_i^(m)||² + ||δ_j^(m)||²)^{1/2}.  Assumptions: (A1) s_ID does not depend on item
features; (A2) s^(m)(u,i) depends on the features of item i only through x_i^(m) (for a fused branch:
through the concatenation of i's features) and is τ_{u,i}^(m)-Lipschitz in it:
|s^(m)(u,i; x+δ) − s^(m)(u,i; x)| ≤ τ_{u,i}^(m) ||δ_i^(m)||.  Then the perturbed fused margin is

    M_a(δ) ≥ Δ_ID + Σ_m a^(m) Δ^(m) − Σ_m a^(m) (τ_{u,i}^(m) ||δ_i^(m)|| + τ_{u,j}^(m) ||δ_j^(m)||)
           ≥ Δ_ID + Σ_m a^(m) Δ^(m) − ||δ|| · sqrt(Σ_m (a^(m))² ((τ_{u,i}^(m))² + (τ_{u,j}^(m))²)),

the last step by Cauchy–Schwarz on the 2M-vectors (a^(m) τ^(m)) and (||δ^(m)||).  So i stays ranked
above j for every perturbation with ||δ|| < r(u,i,j), the certified radius

    r(u,i,j) = [Δ_ID + Σ_m a^(m) Δ^(m)] / sqrt(Σ_m (a^(m))² ((τ_{u,i}^(m))² + (τ_{u,j}^(m))²)).

τ: the gradient norm ||∂s^(m)(u,i)/∂x_i^(m)||_2 by autograd through ``features_replaced``.  For a
branch linear in the features (VBPR/AMR with ``normalize: false``: s^(m) = θ_u·E_m x + β'·x, τ =
||E_mᵀ θ_u + β'|| = ||Wᵀe_u||) the gradient is constant, τ is the exact Lipschitz constant, (A1)-(A2)
hold and r is a certificate.  With L2-normalised projections the gradient is local (a first-order
estimate of r); for graph encoders (A1)-(A2) fail (an item's features reach the user embedding and
other items through propagation) and r is an estimate of the radius against perturbing i and j only.

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

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from elliot.recommender.multimodal import MultimodalRecommender
from elliot.training.addons import TrainingAddon

CRMT_DEFAULTS = {"rho": 2.0, "N": 0, "integration": True, "integration_sample": 1024, "integration_steps": 300,
                 "integration_lr": 0.05}


# ---- margins and Lipschitz constants ------------------------------------------------------------------
def modality_branches(model) -> List[str]:
    from elliot.training.defenses.modality_balancing import model_branches

    return [b for b in model_branches(model) if b != "id"]


def branch_features(model, branch: str) -> List[str]:
    """The modalities whose features feed ``branch`` (a modality branch: itself; a fused one: all)."""
    return [branch] if branch in model.modalities else list(model.modalities)


def margins(model, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
    """(Δ_fused, {branch: Δ^(b)}) for the triples, from ``score_pairs`` and ``modality_embeddings``."""
    n = len(users)
    uu, ij = torch.cat([users, users]), torch.cat([pos, neg])
    fused = model.score_pairs(uu, ij)
    scores = {b: (eu * ei).sum(-1) for b, (eu, ei) in model.modality_embeddings(uu, ij).items() if b != "id"}
    return fused[:n] - fused[n:], {b: s[:n] - s[n:] for b, s in scores.items()}


def _branch_score_grads(model, users: Tensor, items: Tensor, branches: Sequence[str]) -> Dict[str, Tensor]:
    """Per branch b: rows i_k of ∂(Σ_k s^b(u_k, i_k))/∂x^{features of b}, (len(items), Σ d_m) - one forward
    pass, one backward per branch; exact per pair when the items are distinct and each pair's score
    depends only on its own item's features."""
    mods = list(dict.fromkeys(m for b in branches for m in branch_features(model, b)))
    clean = {m: model.feature(m).detach() for m in mods}
    leaves = {m: torch.zeros_like(x).requires_grad_(True) for m, x in clean.items()}
    out = {}
    with torch.enable_grad():
        with model.features_replaced({m: clean[m] + leaves[m] for m in mods}):
            embs = model.modality_embeddings(users, items)
        for n, b in enumerate(branches):
            eu, ei = embs[b]
            wanted = branch_features(model, b)
            grads = torch.autograd.grad((eu * ei).sum(), [leaves[m] for m in wanted], allow_unused=True,
                                        retain_graph=n + 1 < len(branches))
            out[b] = torch.cat([(g if g is not None else torch.zeros_like(clean[m]))[items]
                                for m, g in zip(wanted, grads)], dim=1)
    return out


def lipschitz(model, users: Tensor, items: Tensor, branches: Sequence[str], check: int = 4) -> Dict[str, Tensor]:
    """τ_{u,i}^(b) = ||∂s^(b)(u,i)/∂x_i||_2 for aligned pairs and each branch.

    Fast path: pairs are processed in rounds with distinct items (one forward per round); it is
    checked against exact single-pair gradients on ``check`` pairs and, when they disagree (graph
    models: a pair's score also depends on other items' features), every pair gets its own pass.
    """
    branches = list(branches)
    was_training = model.training
    model.eval()
    try:
        n = len(items)
        out = {b: torch.zeros(n, device=model.device) for b in branches}
        if n == 0:
            return out
        order = np.argsort(items.cpu().numpy(), kind="stable")
        sorted_items = items.cpu().numpy()[order]
        first = np.r_[0, np.flatnonzero(sorted_items[1:] != sorted_items[:-1]) + 1]
        occurrence = np.empty(n, np.int64)
        occurrence[order] = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
        for r in range(int(occurrence.max()) + 1):
            idx = torch.as_tensor(np.flatnonzero(occurrence == r), device=model.device)
            for b, g in _branch_score_grads(model, users[idx], items[idx], branches).items():
                out[b][idx] = g.norm(dim=1)
        probe = np.linspace(0, n - 1, num=min(check, n)).astype(np.int64)
        local = True
        for k in probe:
            exact = _branch_score_grads(model, users[k:k + 1], items[k:k + 1], branches)
            if not all(torch.allclose(exact[b].norm(), out[b][k], rtol=1e-4, atol=1e-6) for b in branches):
                local = False
                break
        if not local:  # non-local scores: one pass per pair
            for k in range(n):
                for b, g in _branch_score_grads(model, users[k:k + 1], items[k:k + 1], branches).items():
                    out[b][k] = g.norm()
        return {b: t.detach() for b, t in out.items()}
    finally:
        model.train(was_training)


def radius(delta_id: Tensor, deltas: Dict[str, Tensor], tau_i: Dict[str, Tensor], tau_j: Dict[str, Tensor],
           weights: Dict[str, Tensor]) -> Tensor:
    """r(u,i,j) of the module docstring (per triple)."""
    num = delta_id + sum(weights[b] * deltas[b] for b in deltas)
    den = torch.sqrt(sum(weights[b] ** 2 * (tau_i[b] ** 2 + tau_j[b] ** 2) for b in deltas))
    return num / den.clamp_min(1e-12)


class _Frozen:
    """Δ and τ of a set of triples, computed once with the encoders frozen."""

    def __init__(self, model, users, pos, neg, branches: Sequence[str]):
        self.branches = list(branches)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                fused, self.deltas = margins(model, users, pos, neg)
        finally:
            model.train(was_training)
        self.delta_id = fused - sum(self.deltas[b] for b in self.branches)
        self.tau_i = lipschitz(model, users, pos, self.branches)
        self.tau_j = lipschitz(model, users, neg, self.branches)

    def radius(self, weights: Dict[str, Tensor]) -> Tensor:
        return radius(self.delta_id, self.deltas, self.tau_i, self.tau_j, weights)


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
    frozen = _Frozen(base, u, i, j, branches)
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


def certified_radius(model, dataset, split: str = "test", sample_size: int = 256, seed: int = 42,
                     eps_ratios: Sequence[float] = (0.01, 0.05, 0.1)) -> Dict[str, float]:
    """Certified-radius statistics on ``sample_size`` triples (u, i ∈ split, j never interacted).

    Returns ``ranked`` (fraction with a positive margin), ``radius_median`` / ``radius_mean`` (of
    max(r, 0)), ``certified@ρ`` (fraction with r > ρ · the joint feature norm of i and j), the mean τ
    per branch and the integration weights ``a_<branch>`` (1 for a model without step 2)."""
    from elliot.evaluation.attacks.perturb import split_triples

    base = model.base if isinstance(model, IntegratedModel) else model
    branches = modality_branches(base)
    if not branches:
        raise ValueError(f"{base.name} exposes no per-modality branches; no certified radius")
    weights = (model.weight_dict() if isinstance(model, IntegratedModel)
               else {b: torch.ones((), device=base.device) for b in branches})
    u, i, j = (torch.as_tensor(a, device=base.device) for a in split_triples(dataset, split, sample_size, seed))
    frozen = _Frozen(base, u, i, j, branches)
    r = frozen.radius(weights).detach()
    feats = torch.cat([base.feature(m).detach() for m in base.modalities], dim=1)
    scale = torch.sqrt(feats[i].pow(2).sum(1) + feats[j].pow(2).sum(1))
    pos = r.clamp_min(0)
    out = {"triples": float(len(r)), "ranked": float((r > 0).float().mean()),
           "radius_median": float(pos.median()), "radius_mean": float(pos.mean()),
           "rel_radius_median": float((pos / scale.clamp_min(1e-12)).median())}
    for rho in eps_ratios:
        out[f"certified@{rho:g}"] = float((r > rho * scale).float().mean())
    for b in branches:
        out[f"tau_{b}"] = float(torch.cat([frozen.tau_i[b], frozen.tau_j[b]]).mean())
        out[f"a_{b}"] = float(weights[b])
    return out
