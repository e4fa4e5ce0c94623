"""Rating-error metrics, in two versions under Elliot's names (MAE, MSE, RMSE):

1. for rating models (``task == "rating"``): over ALL (u, i) pairs of the evaluated split, the predicted
   rating r̂_ui (the model's ``predict``) against the split rating r_ui, pair-averaged (micro):
   MAE = Σ |r̂ - r| / N, MSE = Σ (r̂ - r)² / N, RMSE = sqrt(MSE), N = pairs in the split.  Every stored
   pair counts: no relevance threshold, no masking, no cutoff (the value is reported at every cutoff of
   the experiment).  A :class:`RatingContext` holds the pairs; :data:`RATING_METRICS` the functions;
   the per-user values (a user's own MAE / MSE / RMSE over its pairs) feed the paired tests only.
   Lower is better for all three (``higher_is_better = False``: validation selection takes the lowest).

2. for ranking models, Elliot's top-K-list version below: over the user's full recommendation list, the
   model score ŝ_ui of every relevant test item i against its split rating r_ui.

Elliot sums the errors of the relevant items found in the (full-length) list and divides by all relevant
items, so a relevant item that can not be recommended (masked: also in training, or validation at test)
adds no error but counts in the denominator.  The reported value is the micro average over all relevant
(u, i) of the evaluation; the per-user values (used by the paired tests) divide by |Rel_u|.  Not limited
to k.  Meaningful for models whose scores are rating predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from elliot.evaluation.metrics.base import RankingContext, need, per_user_sum


# ---- rating-prediction task: every pair of the split ---------------------------------------------
@dataclass(frozen=True)
class RatingContext:
    """The evaluated split's pairs, aligned: ``users`` / ``items`` (int64 dataset indices), their split
    ``ratings`` and the model's ``predictions`` (float64)."""
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    predictions: np.ndarray

    @property
    def n_pairs(self) -> int:
        return len(self.ratings)

    def errors(self) -> np.ndarray:
        """(N,) r̂_ui - r_ui."""
        return np.asarray(self.predictions, dtype=np.float64) - np.asarray(self.ratings, dtype=np.float64)

    def evaluated_users(self) -> np.ndarray:
        """Sorted users with at least one pair (the rows of the per-user values)."""
        return np.unique(self.users)

    def per_user_mean(self, values: np.ndarray) -> np.ndarray:
        """(U,) mean of a per-pair array over each evaluated user's pairs."""
        users, inverse = np.unique(self.users, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(users))
        return np.bincount(inverse, weights=values, minlength=len(users)) / counts


def pair_mae(ctx: RatingContext) -> float:
    """MAE = Σ_(u,i) |r̂_ui - r_ui| / N over every pair of the split."""
    return float(np.abs(ctx.errors()).mean())


def pair_mse(ctx: RatingContext) -> float:
    """MSE = Σ_(u,i) (r̂_ui - r_ui)² / N over every pair of the split."""
    return float(np.square(ctx.errors()).mean())


def pair_rmse(ctx: RatingContext) -> float:
    """RMSE = sqrt(Σ_(u,i) (r̂_ui - r_ui)² / N)."""
    return float(np.sqrt(pair_mse(ctx)))


@dataclass(frozen=True)
class RatingMetric:
    """A rating-task metric: ``fn(ctx)`` the reported (pair-averaged) value, ``per_user(ctx)`` the (U,)
    values of the users in ``ctx.evaluated_users()`` (for paired tests)."""
    name: str
    fn: Callable[[RatingContext], float]
    per_user: Callable[[RatingContext], np.ndarray]
    higher_is_better: bool = False


RATING_METRICS: Dict[str, RatingMetric] = {m.name: m for m in (
    RatingMetric("MAE", pair_mae, lambda ctx: ctx.per_user_mean(np.abs(ctx.errors()))),
    RatingMetric("MSE", pair_mse, lambda ctx: ctx.per_user_mean(np.square(ctx.errors()))),
    RatingMetric("RMSE", pair_rmse, lambda ctx: np.sqrt(ctx.per_user_mean(np.square(ctx.errors())))),
)}


def compute_rating_metrics(ctx: RatingContext, cutoffs: Sequence[int], names: Sequence[str]
                           ) -> Tuple[Dict[int, Dict[str, float]], Dict[int, Dict[str, np.ndarray]]]:
    """(cutoff -> name -> value, cutoff -> name -> per-user values): the same value at every cutoff (the
    result layout is keyed by cutoff; rating errors have none).  nan on an empty split."""
    unknown = [n for n in names if n not in RATING_METRICS]
    if unknown:
        raise ValueError(f"metric(s) {unknown} are not rating metrics; a rating model is evaluated with "
                         f"{sorted(RATING_METRICS)}")
    empty = ctx.n_pairs == 0
    value = {n: float("nan") if empty else RATING_METRICS[n].fn(ctx) for n in names}
    user_values = {} if empty else {n: RATING_METRICS[n].per_user(ctx) for n in names}
    return ({k: dict(value) for k in cutoffs}, {k: dict(user_values) for k in cutoffs})


# ---- ranking task: Elliot's top-K-list version ----------------------------------------------------


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
