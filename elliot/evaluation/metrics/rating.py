"""Rating-error metrics as Elliot computes them: over the user's full recommendation list, the model score
ŝ_ui of every relevant test item i against its split rating r_ui.

Elliot sums the errors of the relevant items found in the (full-length) list and divides by all relevant
items, so a relevant item that can not be recommended (masked: also in training, or validation at test)
adds no error but counts in the denominator.  The reported value is the micro average over all relevant
(u, i) of the evaluation; the per-user values (used by the paired tests) divide by |Rel_u|.  Not limited
to k.  Meaningful for models whose scores are rating predictions.
"""
from __future__ import annotations

import numpy as np

from elliot.evaluation.metrics.base import RankingContext, need, per_user_sum


def _errors(ctx: RankingContext, metric: str, squared: bool) -> np.ndarray:
    scores = need(ctx, "relevant_scores", metric).astype(np.float64)
    ratings = need(ctx, "relevant_ratings", metric).astype(np.float64)
    listed = np.isfinite(scores)
    diff = np.zeros_like(scores)
    diff[listed] = scores[listed] - ratings[listed]
    return diff ** 2 if squared else np.abs(diff)


def mae(ctx: RankingContext, k: int) -> np.ndarray:
    """MAE per user = Σ_{i ∈ Rel_u, listed} |ŝ_ui - r_ui| / |Rel_u|."""
    return per_user_sum(ctx, _errors(ctx, "MAE", False)) / ctx.n_relevant


def mae_overall(ctx: RankingContext, k: int) -> float:
    """MAE = Σ_{(u,i) relevant, listed} |ŝ_ui - r_ui| / Σ_u |Rel_u|."""
    return float(_errors(ctx, "MAE", False).sum() / ctx.n_relevant.sum())


def mse(ctx: RankingContext, k: int) -> np.ndarray:
    """MSE per user = Σ_{i ∈ Rel_u, listed} (ŝ_ui - r_ui)² / |Rel_u|."""
    return per_user_sum(ctx, _errors(ctx, "MSE", True)) / ctx.n_relevant


def mse_overall(ctx: RankingContext, k: int) -> float:
    """MSE = Σ_{(u,i) relevant, listed} (ŝ_ui - r_ui)² / Σ_u |Rel_u|."""
    return float(_errors(ctx, "MSE", True).sum() / ctx.n_relevant.sum())


def rmse(ctx: RankingContext, k: int) -> np.ndarray:
    """RMSE per user = sqrt(MSE_u)."""
    return np.sqrt(mse(ctx, k))


def rmse_overall(ctx: RankingContext, k: int) -> float:
    """RMSE = sqrt(Σ_{(u,i) relevant, listed} (ŝ_ui - r_ui)² / Σ_u |Rel_u|)."""
    return float(np.sqrt(mse_overall(ctx, k)))
