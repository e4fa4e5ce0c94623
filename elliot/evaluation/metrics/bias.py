"""Popularity-bias metrics (Elliot's ``bias`` package) and the group statistics RSP / REO share.

Short head Φ (Elliot's ``Popularity``): the most popular training items, taken in decreasing popularity
until they account for ``pop_ratio`` (0.8) of the training interactions; the long tail ~Φ is every other
item.  ``L_u`` is u's list cut at k.
"""
from __future__ import annotations

import numpy as np

from elliot.evaluation.metrics.base import (RankingContext, candidate_item_counts, need, relevant_is_candidate,
                                            safe_div, valid)

POP_RATIO = 0.8


def short_head_items(item_popularity: np.ndarray, fraction: float = POP_RATIO) -> np.ndarray:
    """(n_items,) bool short head: the most popular items (stable order on ties) that together account for
    ``fraction`` of the training interactions (the first prefix whose cumulative count reaches it)."""
    order = np.argsort(-item_popularity, kind="stable")
    cum = np.cumsum(item_popularity[order])
    n_head = int(np.searchsorted(cum, fraction * cum[-1], side="left")) + 1 if len(cum) and cum[-1] > 0 else 0
    head = np.zeros(len(item_popularity), dtype=bool)
    head[order[:n_head]] = True
    return head


def arp(ctx: RankingContext, k: int) -> np.ndarray:
    """ARP@k = Σ_{i ∈ L_u} pop_i / |L_u| (average recommendation popularity, Yin et al. 2012)."""
    ok = valid(ctx, k)
    return safe_div((ctx.item_popularity[ctx.top_items[:, :k]] * ok).sum(1), ok.sum(1))


def aplt(ctx: RankingContext, k: int) -> np.ndarray:
    """APLT@k = |L_u ∩ ~Φ| / |L_u| (average percentage of long-tail items, Abdollahpouri et al. 2017)."""
    tail = ~short_head_items(ctx.item_popularity)
    ok = valid(ctx, k)
    return safe_div((tail[ctx.top_items[:, :k]] & ok).sum(1), ok.sum(1))


def aclt(ctx: RankingContext, k: int) -> np.ndarray:
    """ACLT@k = |L_u ∩ ~Φ| (average coverage of long-tail items, Abdollahpouri et al. 2019)."""
    tail = ~short_head_items(ctx.item_popularity)
    return (tail[ctx.top_items[:, :k]] & valid(ctx, k)).sum(1).astype(np.float64)


# ---- ranking-based statistical parity / equal opportunity over item groups -----------------------
def group_rsp(ctx: RankingContext, k: int, item_group: np.ndarray, n_groups: int) -> np.ndarray:
    """(G,) P(R@k | g) = Σ_u |L_u ∩ g| / Σ_u |g ∩ candidates_u| (Zhu et al. SIGIR 2020; Elliot counts the
    items of g not in u's training set, here the candidates: not masked, or sampled).  Items with group
    -1 belong to none."""
    ok = valid(ctx, k)
    g = item_group[ctx.top_items[:, :k]][ok]
    num = np.bincount(g[g >= 0], minlength=n_groups).astype(np.float64)
    cand = candidate_item_counts(ctx)
    has = item_group >= 0
    den = np.bincount(item_group[has], weights=cand[has], minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def group_reo(ctx: RankingContext, k: int, item_group: np.ndarray, n_groups: int, metric: str) -> np.ndarray:
    """(G,) P(R@k | g, y=1) = Σ_u |L_u ∩ Rel_u ∩ g| / Σ_u |(g ∩ Rel_u) ∩ candidates_u| (Zhu et al. 2020;
    Elliot subtracts u's training items, here the masked ones)."""
    hit_items = ctx.top_items[:, :k][ctx.hits[:, :k]]
    g = item_group[hit_items]
    num = np.bincount(g[g >= 0], minlength=n_groups).astype(np.float64)
    rel = need(ctx, "relevant_items", metric)[relevant_is_candidate(ctx)]
    rg = item_group[rel]
    den = np.bincount(rg[rg >= 0], minlength=n_groups).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def std_over_mean(pr: np.ndarray) -> float:
    """np.std(P) / np.mean(P) (population std, as Elliot)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.std(pr) / np.mean(pr))


def _head_tail(ctx: RankingContext, pop_ratio: float) -> np.ndarray:
    return np.where(short_head_items(ctx.item_popularity, pop_ratio), 0, 1)


def extended_pop_rsp(ctx: RankingContext, k: int, pop_ratio: float = POP_RATIO) -> float:
    """ExtendedPopRSP@k: PopRSP with a short head of ``pop_ratio`` of the interactions."""
    return std_over_mean(group_rsp(ctx, k, _head_tail(ctx, pop_ratio), 2))


def extended_pop_reo(ctx: RankingContext, k: int, pop_ratio: float = POP_RATIO) -> float:
    """ExtendedPopREO@k: PopREO with a short head of ``pop_ratio`` of the interactions."""
    return std_over_mean(group_reo(ctx, k, _head_tail(ctx, pop_ratio), 2, "PopREO"))


def pop_rsp(ctx: RankingContext, k: int) -> float:
    """PopRSP@k (popularity ranking-based statistical parity) = std(P_h, P_t) / mean(P_h, P_t) over the
    short head h and long tail t, P_g = Σ_u |L_u ∩ g| / Σ_u |g \\ I_u^+| (I_u^+ : u's masked items)."""
    return extended_pop_rsp(ctx, k, POP_RATIO)


def pop_reo(ctx: RankingContext, k: int) -> float:
    """PopREO@k (popularity ranking-based equal opportunity) = std(P_h, P_t) / mean(P_h, P_t),
    P_g = Σ_u |L_u ∩ Rel_u ∩ g| / Σ_u |(Rel_u ∩ g) \\ I_u^+|."""
    return extended_pop_reo(ctx, k, POP_RATIO)


__all__ = ["short_head_items", "arp", "aplt", "aclt", "pop_rsp", "pop_reo", "extended_pop_rsp",
           "extended_pop_reo", "group_rsp", "group_reo", "std_over_mean"]
