"""Novelty metrics (Vargas & Castells, RecSys 2011) as Elliot's ``novelty`` package.

Both are rank- and relevance-aware: nov_u@k = Σ_{r<|L_u|} rel_r·disc(r)·novelty(i_r) / Σ_{r<|L_u|} disc(r),
disc(r) = 1 / log2(r + 2), rel_r = 1 for a hit (binary) or the graded gain 2^(rating - t + 1) - 1
(``relevance: discounted`` of the Extended versions).
"""
from __future__ import annotations

import numpy as np

from elliot.evaluation.metrics.base import RankingContext, disc, graded_gains, safe_div, valid


def _expected(ctx: RankingContext, k: int, novelty: np.ndarray, discounted: bool) -> np.ndarray:
    ok = valid(ctx, k)
    d = disc(k)[: ok.shape[1]] * ok
    rel = graded_gains(ctx, k)[0] if discounted else ctx.hits[:, :k].astype(np.float64)
    return safe_div((rel * d * novelty[ctx.top_items[:, :k]]).sum(1), d.sum(1))


def _epc_novelty(ctx: RankingContext) -> np.ndarray:
    """1 - pop_i / |users with training data|; contexts without ``n_users_total`` use the largest item
    popularity as the user count."""
    n_users = ctx.n_users_total if ctx.n_users_total > 0 else max(float(ctx.item_popularity.max(initial=0)), 1.0)
    return 1.0 - ctx.item_popularity / n_users


def _efd_novelty(ctx: RankingContext) -> np.ndarray:
    """-log2(pop_i / Σ_j pop_j); items never seen in training get the largest novelty of a seen item."""
    pop = ctx.item_popularity.astype(np.float64)
    total = pop.sum()
    seen = pop > 0
    out = np.zeros_like(pop)
    if total > 0:
        out[seen] = -np.log2(pop[seen] / total)
        out[~seen] = -np.log2(pop[seen].min() / total)
    return out


def epc(ctx: RankingContext, k: int) -> np.ndarray:
    """EPC@k (expected popularity complement): novelty(i) = 1 - pop_i / |U_train| (Elliot: users who
    interacted with i over the users of the training set), binary relevance."""
    return _expected(ctx, k, _epc_novelty(ctx), discounted=False)


def extended_epc(ctx: RankingContext, k: int, discounted: bool = False) -> np.ndarray:
    """ExtendedEPC@k: EPC with ``relevance: binary`` (default) or ``discounted`` (graded gains)."""
    return _expected(ctx, k, _epc_novelty(ctx), discounted)


def efd(ctx: RankingContext, k: int) -> np.ndarray:
    """EFD@k (expected free discovery): novelty(i) = -log2(pop_i / Σ_j pop_j) (the inverse collection
    frequency of i in the training interactions), binary relevance."""
    return _expected(ctx, k, _efd_novelty(ctx), discounted=False)


def extended_efd(ctx: RankingContext, k: int, discounted: bool = False) -> np.ndarray:
    """ExtendedEFD@k: EFD with ``relevance: binary`` (default) or ``discounted`` (graded gains)."""
    return _expected(ctx, k, _efd_novelty(ctx), discounted)
