r"""Certified margins of a pairwise ranking under feature perturbations: a measurement on a trained model.

Used by ``evaluation.attacks`` entries ``{method: certified_radius}`` and by the CRMT defense
(:mod:`elliot.training.defenses.crmt`, whose step 2 maximises the radius below).  The model's hooks split
the fused score into branches (``modality_embeddings``): s(u,i) = s_ID(u,i) + Σ_m s^(m)(u,i), with
s^(m)(u,i) = <e_u^m, e_i^m>; s_ID := s − Σ_m s^(m).  Per-modality margins of a triple (u, i, j):
Δ^(m)(u,i,j) = s^(m)(u,i) − s^(m)(u,j), Δ_ID = s_ID(u,i) − s_ID(u,j).  A model with integration weights
a^(m) (CRMT step 2: an object with ``base`` and ``weight_dict()``) is scored s_a = s_ID + Σ_m a^(m) s^(m).

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
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from elliot.recommender.multimodal import model_branches


def unwrap_integrated(model) -> Tuple[object, Optional[Dict[str, Tensor]]]:
    """(base model, integration weights) of a model scored with integration weights (CRMT step 2:
    ``base`` + ``weight_dict()``), else (model, None)."""
    if hasattr(model, "weight_dict") and hasattr(model, "base"):
        return model.base, model.weight_dict()
    return model, None


# ---- margins and Lipschitz constants ------------------------------------------------------------------
def modality_branches(model) -> List[str]:
    """The per-modality branches of ``model.modality_embeddings`` (every branch but ``"id"``)."""
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


class FrozenMargins:
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


def certified_radius(model, dataset, split: str = "test", sample_size: int = 256, seed: int = 42,
                     eps_ratios: Sequence[float] = (0.01, 0.05, 0.1)) -> Dict[str, float]:
    """Certified-radius statistics on ``sample_size`` triples (u, i ∈ split, j never interacted).

    Returns ``ranked`` (fraction with a positive margin), ``radius_median`` / ``radius_mean`` (of
    max(r, 0)), ``certified@ρ`` (fraction with r > ρ · the joint feature norm of i and j), the mean τ
    per branch and the integration weights ``a_<branch>`` (1 for a model without step 2)."""
    from elliot.evaluation.attacks.perturb import split_triples

    base, weights = unwrap_integrated(model)
    branches = modality_branches(base)
    if not branches:
        raise ValueError(f"{base.name} exposes no per-modality branches; no certified radius")
    if weights is None:
        weights = {b: torch.ones((), device=base.device) for b in branches}
    u, i, j = (torch.as_tensor(a, device=base.device) for a in split_triples(dataset, split, sample_size, seed))
    frozen = FrozenMargins(base, u, i, j, branches)
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
