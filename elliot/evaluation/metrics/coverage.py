"""Coverage and diversity metrics (Elliot's ``coverage`` and ``diversity`` packages).

They read the recommendation lists of the evaluated users; ``L_u`` is u's list cut at k (its finite
entries), ``c_i`` the number of lists that hold item i, ``N = Σ_u |L_u|``.
"""
from __future__ import annotations

import numpy as np

from elliot.evaluation.metrics.base import RankingContext, list_len, valid


def _listed(ctx: RankingContext, k: int):
    """(users, items) of every recommended entry of the top-k lists, flattened."""
    ok = valid(ctx, k)
    rows, cols = np.nonzero(ok)
    return rows, ctx.top_items[:, :k][rows, cols]


def item_coverage(ctx: RankingContext, k: int) -> float:
    """ItemCoverage@k = |∪_u L_u|, the number of distinct items in anyone's top k (a count, as Elliot)."""
    return float(len(np.unique(_listed(ctx, k)[1])))


def user_coverage(ctx: RankingContext, k: int) -> float:
    """UserCoverage = number of evaluated users with a non-empty list (a count, as Elliot)."""
    return float((list_len(ctx, ctx.top_items.shape[1]) > 0).sum())


def user_coverage_at_n(ctx: RankingContext, k: int) -> float:
    """UserCoverageAtN@k = number of evaluated users whose list holds at least k items."""
    return float((list_len(ctx, k) >= k).sum())


def num_retrieved(ctx: RankingContext, k: int) -> np.ndarray:
    """NumRetrieved@k = |L_u| per user (RankSys' NumRetrieved)."""
    return list_len(ctx, k).astype(np.float64)


def gini(ctx: RankingContext, k: int) -> float:
    """Gini@k as Elliot's GiniIndex: 1 - G with G = Σ_{j=1..n} (2j - n - 1)·c_(j) / ((n - 1)·N), the counts
    of all n = n_items items sorted ascending.  1 = every item recommended equally often (most diverse),
    0 = all lists hold one item.  nan when nothing is recommended."""
    counts = np.sort(np.bincount(_listed(ctx, k)[1], minlength=ctx.n_items)).astype(np.float64)
    n, total = len(counts), counts.sum()
    if total == 0 or n < 2:
        return float("nan")
    j = np.arange(1, n + 1)
    return float(1.0 - ((2 * j - n - 1) * counts).sum() / ((n - 1) * total))


def shannon_entropy(ctx: RankingContext, k: int) -> float:
    """SEntropy@k as Elliot's ShannonEntropy: Σ_i w_i·(-log2(c_i / N)) / U with w_i = Σ_{u: i ∈ L_u} 1/|L_u|
    (for equal-length lists: the entropy -Σ p_i log2 p_i of p_i = c_i / N)."""
    rows, items = _listed(ctx, k)
    if len(items) == 0:
        return float("nan")
    lengths = np.bincount(rows, minlength=ctx.n_users).astype(np.float64)
    counts = np.bincount(items, minlength=ctx.n_items).astype(np.float64)
    weights = np.bincount(items, weights=1.0 / lengths[rows], minlength=ctx.n_items)
    seen = counts > 0
    return float((weights[seen] * -np.log2(counts[seen] / len(items))).sum() / ctx.n_users)
