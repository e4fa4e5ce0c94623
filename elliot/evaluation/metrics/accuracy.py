"""Accuracy metrics (Elliot's ``accuracy`` package): per-user values on binary relevance (nDCG: graded).

Notation: ``hit_r`` = 1 when the item at 0-based rank r is relevant, ``|Rel_u|`` = relevant items of u
in the split, ``disc(r) = 1 / log2(r + 2)``, k the cutoff.  Every metric is averaged over the evaluated
users (those with a relevant item in the split).
"""
from __future__ import annotations

import numpy as np

from elliot.evaluation.metrics.base import (RankingContext, disc, graded_gains, n_candidates, need,
                                            per_user_sum, relevant_owner, safe_div)


def precision(ctx: RankingContext, k: int) -> np.ndarray:
    """Precision@k = |hits in top k| / k (Elliot divides by the cutoff, not the list length)."""
    return ctx.hits[:, :k].sum(1) / k


def recall(ctx: RankingContext, k: int) -> np.ndarray:
    """Recall@k = |hits in top k| / |Rel_u|."""
    return ctx.hits[:, :k].sum(1) / ctx.n_relevant


def hit_rate(ctx: RankingContext, k: int) -> np.ndarray:
    """HR@k = 1 if any relevant item is in the top k, else 0."""
    return ctx.hits[:, :k].any(1).astype(np.float64)


def _binary_ndcg(ctx: RankingContext, k: int) -> np.ndarray:
    d = disc(k)
    dcg = (ctx.hits[:, :k] * d[: ctx.hits[:, :k].shape[1]]).sum(1)
    ideal = np.cumsum(d)[np.minimum(ctx.n_relevant, k) - 1]
    return dcg / ideal


def graded_ndcg(ctx: RankingContext, k: int) -> np.ndarray:
    """nDCG@k on Elliot's discounted relevance: gain g = 2^(r - t + 1) - 1 of an item rated r >= t
    (t = relevance threshold); DCG = Σ_{r<k} g_r·disc(r), IDCG = the same over u's gains sorted
    descending (min(|Rel_u|, k) of them); 0 when DCG = 0.  Binary gains when the context has none."""
    gains, ideal = graded_gains(ctx, k)
    d = disc(k)
    dcg = (gains * d[: gains.shape[1]]).sum(1)
    idcg = (ideal * d[: ideal.shape[1]]).sum(1)
    return np.where(dcg > 0, safe_div(dcg, idcg), 0.0)


def ndcg(ctx: RankingContext, k: int) -> np.ndarray:
    """nDCG@k as Elliot: graded gains 2^(r - t + 1) - 1 (r the split rating, t the relevance threshold)
    over DCG = Σ_{r<k} g_r / log2(r+2) and IDCG = the same over the user's gains sorted descending,
    min(|Rel_u|, k) positions.  When every relevant rating of the split is the same (binary / binarized
    data) all gains are equal and this is the binary nDCG, computed as Σ hit_r·disc(r) / Σ_{r<min(|Rel_u|,k)}
    disc(r) so binary values are bit-identical to the binary formula."""
    if ctx.graded and ctx.gains is not None:
        return graded_ndcg(ctx, k)
    return _binary_ndcg(ctx, k)


def ndcg_rendle2020(ctx: RankingContext, k: int) -> np.ndarray:
    """nDCGRendle2020@k (Krichene & Rendle 2020): always binary,
    Σ_{r<k} hit_r·disc(r) / Σ_{r<min(|Rel_u|,k)} disc(r)."""
    return _binary_ndcg(ctx, k)


def average_precision(ctx: RankingContext, k: int) -> np.ndarray:
    """MAP@k (per user AP@k) = Σ_{r<k} P@(r+1)·hit_r / min(k, |Rel_u|).
    This follows Elliot's documentation (normaliser 1/min(m, N)); Elliot's code instead averages
    P@1..P@k, i.e. (1/k) Σ_{n=1..k} P@n, without the rel(n) factor."""
    hits = ctx.hits[:, :k]
    prec_at = np.cumsum(hits, 1) / np.arange(1, hits.shape[1] + 1)
    return (prec_at * hits).sum(1) / np.minimum(k, ctx.n_relevant)


def average_recall(ctx: RankingContext, k: int) -> np.ndarray:
    """MAR@k = (1/k) Σ_{n=1..k} Recall@n (Elliot's code; its documented formula is not well defined)."""
    hits = ctx.hits[:, :k]
    recall_at = np.cumsum(hits, 1) / ctx.n_relevant[:, None]
    # positions past the end of a list shorter than k keep the last recall
    total = recall_at.sum(1) + (k - hits.shape[1]) * recall_at[:, -1] if hits.shape[1] else 0.0
    return total / k


def reciprocal_rank(ctx: RankingContext, k: int) -> np.ndarray:
    """MRR@k = 1 / (1-based rank of the first hit in the top k), 0 without a hit."""
    hits = ctx.hits[:, :k]
    first = hits.argmax(1)
    return np.where(hits.any(1), 1.0 / (first + 1), 0.0)


def dice(m0: np.ndarray, m1: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """Sørensen–Dice / F-beta of two per-user metrics: (1 + β²)·m0·m1 / (β²·m0 + m1), 0 when the
    denominator is 0 (Elliot's DSC)."""
    b2 = float(beta) ** 2
    return safe_div((1 + b2) * m0 * m1, b2 * m0 + m1)


def f1(ctx: RankingContext, k: int) -> np.ndarray:
    """F1@k = 2·P·R / (P + R) per user (0 when both are 0)."""
    return dice(precision(ctx, k), recall(ctx, k), 1.0)


def dsc(ctx: RankingContext, k: int) -> np.ndarray:
    """DSC@k with Elliot's defaults (β = 1, metric_0 = Precision, metric_1 = Recall):
    (1 + β²)·P·R / (β²·P + R).  Other β / metrics: the ``DSC`` complex metric."""
    return dice(precision(ctx, k), recall(ctx, k), 1.0)


def extended_f1(ctx: RankingContext, k: int) -> np.ndarray:
    """ExtendedF1@k = 2·m0·m1 / (m0 + m1) with metric_0 = Precision, metric_1 = Recall (other metrics:
    the ``ExtendedF1`` complex metric, whose result is named ``ExtendedF1_m0:<m0>-m1:<m1>`` as Elliot)."""
    return dice(precision(ctx, k), recall(ctx, k), 1.0)


# ---- AUC family ---------------------------------------------------------------------------------
def _neg_num(ctx: RankingContext) -> np.ndarray:
    """Elliot's negatives per user: num_items - |train_u| - |Rel_u| + 1, with the candidates (items not
    masked, or the sampled candidate set) in place of num_items - |train_u|."""
    return n_candidates(ctx) - ctx.n_relevant + 1.0


def _positive_auc(ctx: RankingContext, metric: str) -> np.ndarray:
    """(R,) per relevant item: (neg_num - negatives ranked above it) / neg_num; nan when masked."""
    above = need(ctx, "relevant_neg_above", metric)
    nn = _neg_num(ctx)[relevant_owner(ctx)]
    return (nn - above) / nn


def auc(ctx: RankingContext, k: int) -> float:
    """AUC (global, not limited to k, Elliot): the mean over every relevant (u, i) of the whole evaluation of
    (N_u - n_above(u, i)) / N_u, n_above = non-relevant candidates ranked above i in u's full ranking,
    N_u = candidates - |Rel_u| + 1 (Elliot's num_items - |train_u| - |Rel_u| + 1).  Relevant items that are
    masked (not in the full list) are left out, as in Elliot.  Ties: a negative with the same score as the
    positive is not counted above it."""
    values = _positive_auc(ctx, "AUC")
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def gauc(ctx: RankingContext, k: int) -> np.ndarray:
    """GAUC (group AUC, Zhou et al. KDD 2018, not limited to k) per user:
    Σ_{i ∈ Rel_u in the full list} (N_u - n_above(u, i)) / N_u / |Rel_u|, N_u and n_above as in AUC."""
    values = np.nan_to_num(_positive_auc(ctx, "GAUC"), nan=0.0)
    return per_user_sum(ctx, values) / ctx.n_relevant


def lauc(ctx: RankingContext, k: int) -> np.ndarray:
    """LAUC@k (limited AUC, Schröder et al.) per user: Σ over the hits of the top k of
    (N_u - n_above) / N_u, divided by min(k, |Rel_u|); n_above = non-relevant items ranked above the hit
    within the list (rank - hits before it), N_u = candidates - |Rel_u| + 1 as in AUC."""
    hits = ctx.hits[:, :k]
    ranks = np.arange(hits.shape[1])[None, :]
    before = np.cumsum(hits, 1) - hits  # hits ranked above this one
    nn = _neg_num(ctx)[:, None]
    contrib = np.where(hits, (nn - (ranks - before)) / nn, 0.0)
    return contrib.sum(1) / np.minimum(k, ctx.n_relevant)
