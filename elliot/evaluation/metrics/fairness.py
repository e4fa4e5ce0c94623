"""Fairness metrics over user / item clusters (Elliot's ``fairness`` package), as pure functions of a
:class:`RankingContext` and cluster arrays (``user_cluster[u]`` / ``item_cluster[i]``: cluster index, -1
for an id the clustering file does not list, which is left out as Elliot's ``dict.get`` does).

MAD (Deldjoo et al., UMUAI 2021; Zhu et al. CIKM 2018): the mean absolute difference between the
per-cluster averages of a per-user (User*) or per-item (Item*) value,
MAD = avg_{a<b} |avg_a - avg_b|.

Bias disparity (Tsintzou et al. 2018): for user group G and item category C,
PR(G, C) = (interactions of G with C) / (interactions of G), P(C) = |C| / |clustered items|,
B(G, C) = PR(G, C) / P(C); BS on the training interactions of every user, BR on the top-k lists,
BD = (BR - BS) / BS.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from elliot.evaluation.metrics.base import RankingContext, graded_gains, need, safe_div, valid
from elliot.evaluation.metrics.accuracy import graded_ndcg


def pairwise_mad(avg: np.ndarray) -> float:
    """avg over cluster pairs a < b of |avg_a - avg_b| (nan with fewer than two clusters)."""
    i, j = np.triu_indices(len(avg), 1)
    if len(i) == 0:
        return float("nan")
    return float(np.mean(np.abs(avg[i] - avg[j])))


def _cluster_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    has = groups >= 0
    total = np.bincount(groups[has], weights=values[has], minlength=n_groups)
    count = np.bincount(groups[has], minlength=n_groups).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return total / count


def _user_groups(ctx: RankingContext, user_cluster: np.ndarray, metric: str) -> np.ndarray:
    return user_cluster[need(ctx, "user_index", metric)]


def user_mad_rating(ctx: RankingContext, k: int, user_cluster: np.ndarray, n_clusters: int) -> float:
    """UserMADrating@k: per-user value = mean score of u's top-k list (Elliot: np.average of the list's
    scores), averaged per user cluster, then MAD."""
    ok = valid(ctx, k)
    scores = np.where(ok, need(ctx, "top_scores", "UserMADrating")[:, :k].astype(np.float64), 0.0)
    per_user = safe_div(scores.sum(1), ok.sum(1))
    return pairwise_mad(_cluster_means(per_user, _user_groups(ctx, user_cluster, "UserMADrating"), n_clusters))


def user_mad_ranking(ctx: RankingContext, k: int, user_cluster: np.ndarray, n_clusters: int) -> float:
    """UserMADranking@k: per-user value = nDCG@k on the graded (discounted) relevance, averaged per
    user cluster, then MAD."""
    per_user = graded_ndcg(ctx, k)
    return pairwise_mad(_cluster_means(per_user, _user_groups(ctx, user_cluster, "UserMADranking"), n_clusters))


def _item_mad(ctx: RankingContext, k: int, gain: np.ndarray, item_cluster: np.ndarray, n_clusters: int) -> float:
    ok = valid(ctx, k)
    items = ctx.top_items[:, :k][ok]
    count = np.bincount(items, minlength=ctx.n_items).astype(np.float64)
    total = np.bincount(items, weights=gain[ok], minlength=ctx.n_items)
    listed = np.flatnonzero(count > 0)
    per_item = total[listed] / count[listed]
    return pairwise_mad(_cluster_means(per_item, item_cluster[listed], n_clusters))


def item_mad_rating(ctx: RankingContext, k: int, item_cluster: np.ndarray, n_clusters: int) -> float:
    """ItemMADrating@k: per recommended item i, Σ_{u: i ∈ L_u} (ŝ_ui if i ∈ Rel_u else 0) / |{u: i ∈ L_u}|,
    averaged per item cluster, then MAD."""
    scores = need(ctx, "top_scores", "ItemMADrating")[:, :k].astype(np.float64)
    gain = np.where(ctx.hits[:, :k], scores, 0.0)
    return _item_mad(ctx, k, gain, item_cluster, n_clusters)


def item_mad_ranking(ctx: RankingContext, k: int, item_cluster: np.ndarray, n_clusters: int) -> float:
    """ItemMADranking@k: per recommended item i, Σ_{u: i ∈ L_u} gain_ui / |{u: i ∈ L_u}| with the graded
    (discounted) relevance gain 2^(r - t + 1) - 1 (0 when not relevant), averaged per item cluster, MAD."""
    return _item_mad(ctx, k, graded_gains(ctx, k)[0], item_cluster, n_clusters)


def category_share(item_cluster: Optional[np.ndarray], n_categories: int) -> np.ndarray:
    """P(C): the share of the clustered items in each category (1 without an item clustering)."""
    if item_cluster is None:
        return np.ones(1)
    counts = np.bincount(item_cluster[item_cluster >= 0], minlength=n_categories).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def bias(users_group: np.ndarray, items_category: np.ndarray, n_groups: int, n_categories: int,
         share: np.ndarray) -> np.ndarray:
    """(G, C) B(G, C) = PR(G, C) / P(C) of interactions given as (group, category) per entry (-1: none)."""
    keep = (users_group >= 0) & (items_category >= 0)
    counts = np.bincount(users_group[keep] * n_categories + items_category[keep],
                         minlength=n_groups * n_categories).reshape(n_groups, n_categories).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return counts / counts.sum(1, keepdims=True) / share[None, :]


def bias_recommended(ctx: RankingContext, k: int, user_cluster: Optional[np.ndarray], n_groups: int,
                     item_cluster: Optional[np.ndarray], n_categories: int) -> np.ndarray:
    """(G, C) BR: bias of the top-k lists of the evaluated users."""
    ok = valid(ctx, k)
    rows, cols = np.nonzero(ok)
    items = ctx.top_items[:, :k][rows, cols]
    if user_cluster is None:
        groups = np.zeros(len(rows), dtype=np.int64)
    else:
        groups = _user_groups(ctx, user_cluster, "BiasDisparityBR")[rows]
    categories = np.zeros(len(items), dtype=np.int64) if item_cluster is None else item_cluster[items]
    return bias(groups, categories, n_groups, n_categories, category_share(item_cluster, n_categories))
