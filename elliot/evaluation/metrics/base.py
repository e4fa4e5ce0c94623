"""The ranking context every metric reads, the metric record, and the shared vectorised helpers.

A :class:`RankingContext` holds, for the U evaluated users (row u), the top-K list the model ranked
(``top_items``, best first) and what is known about the user's relevant items in the evaluated split.
Only the first five fields are required (binary metrics need nothing else); the optional ones are filled
by :class:`elliot.evaluation.evaluator.Evaluator` and read by the metrics that need them.

Flat per-relevant-item arrays (``relevant_*``) list the relevant items of user 0 first, then user 1, ...:
``n_relevant[u]`` consecutive entries each, in increasing item index within a user.

An entry of the top-K list whose score is ``-inf`` is "not recommended" (a masked or absent item the
top-k had to take to fill K, e.g. under negative sampling with fewer candidates than K); list-based
metrics count only the finite entries.  (Elliot's top-k would keep such masked items in the list; the
two agree whenever a user has at least K candidates.)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, List, Optional, Tuple, Union

import numpy as np


@dataclass(frozen=True)
class RankingContext:
    top_items: np.ndarray  # (U, K) int64, best first
    hits: np.ndarray  # (U, K) bool: the item at rank r is relevant in the split
    n_relevant: np.ndarray  # (U,) int64 >= 1: relevant items of u in the split
    item_popularity: np.ndarray  # (n_items,) training interactions per item (users who interacted)
    n_items: int
    # ---- optional, filled by the Evaluator ----------------------------------------------------
    top_scores: Optional[np.ndarray] = None  # (U, K) float: model score of each top item (-inf: not recommended)
    gains: Optional[np.ndarray] = None  # (U, K) float: gain 2^(r - t + 1) - 1 of each top item, 0 if not relevant
    ideal_gains: Optional[np.ndarray] = None  # (U, K) float: u's relevant gains sorted descending, 0-padded
    graded: bool = False  # the split's relevant ratings are not all equal (nDCG uses ``gains``)
    relevant_items: Optional[np.ndarray] = None  # (R,) int64: item index of every relevant (u, i), R = sum(n_relevant)
    relevant_ratings: Optional[np.ndarray] = None  # (R,) float: split rating of each relevant (u, i)
    relevant_scores: Optional[np.ndarray] = None  # (R,) float: model score of each relevant (u, i); -inf when masked
    relevant_neg_above: Optional[np.ndarray] = None  # (R,) float: non-relevant candidates scored strictly above
    #                                                  the relevant item in u's full ranking (nan when masked)
    n_train: Optional[np.ndarray] = None  # (U,) int64 training items per user
    n_candidates: Optional[np.ndarray] = None  # (U,) int64 items u could be recommended (not masked / sampled)
    user_index: Optional[np.ndarray] = None  # (U,) int64 dataset index of each evaluated user
    candidate_item_counts: Optional[np.ndarray] = None  # (n_items,) evaluated users for whom the item is a candidate
    n_users_total: int = 0  # users with training data (Elliot's |train_dict|)

    @property
    def n_users(self) -> int:
        return len(self.top_items)


#: fields that hold one row (or one flat block) per evaluated user and are concatenated by merge_contexts
_ROW_FIELDS = ("top_items", "hits", "n_relevant", "top_scores", "gains", "ideal_gains", "relevant_items",
               "relevant_ratings", "relevant_scores", "relevant_neg_above", "n_train", "n_candidates", "user_index")


@dataclass(frozen=True)
class Metric:
    """A metric: ``fn(ctx, k)`` gives a (U,) array (``per_user``; the mean is reported unless ``overall``
    gives the reported value, e.g. MAE's micro average) or a float (catalogue metrics)."""
    name: str
    fn: Callable[[RankingContext, int], Union[np.ndarray, float]]
    per_user: bool
    higher_is_better: bool = True
    overall: Optional[Callable[[RankingContext, int], float]] = None
    needs: Tuple[str, ...] = ()  # optional context fields the metric requires (``full_ranks`` = relevant_neg_above)


def merge_contexts(parts: List[RankingContext]) -> RankingContext:
    """One context from user batches: row fields concatenated, ``candidate_item_counts`` summed.
    An optional field is kept only when every part has it."""
    if not parts:
        return RankingContext(np.zeros((0, 1), np.int64), np.zeros((0, 1), bool), np.zeros(0, np.int64),
                              np.zeros(0), 0)
    first = parts[0]
    out = {}
    for f in fields(RankingContext):
        values = [getattr(p, f.name) for p in parts]
        if f.name in _ROW_FIELDS:
            out[f.name] = None if any(v is None for v in values) else np.concatenate(values)
        elif f.name == "candidate_item_counts":
            out[f.name] = None if any(v is None for v in values) else np.sum(values, axis=0)
        elif f.name == "graded":
            out[f.name] = any(values)
        else:
            out[f.name] = getattr(first, f.name)
    return RankingContext(**out)


# ---- helpers shared by the metric modules -------------------------------------------------------
def disc(k: int) -> np.ndarray:
    """Logarithmic rank discount 1 / log2(r + 2) for 0-based ranks r < k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def valid(ctx: RankingContext, k: int) -> np.ndarray:
    """(U, min(k, K)) bool: the entry is a recommended item (finite score)."""
    if ctx.top_scores is None:
        return np.ones(ctx.top_items[:, :k].shape, dtype=bool)
    return np.isfinite(ctx.top_scores[:, :k])


def list_len(ctx: RankingContext, k: int) -> np.ndarray:
    """(U,) length of each user's list cut at k."""
    return valid(ctx, k).sum(1)


def safe_div(num, den) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def need(ctx: RankingContext, name: str, metric: str):
    value = getattr(ctx, name)
    if value is None:
        raise ValueError(f"metric {metric} needs RankingContext.{name}, which the Evaluator fills; "
                         f"this context was built without it")
    return value


def relevant_owner(ctx: RankingContext) -> np.ndarray:
    """(R,) the row u of every flat relevant entry."""
    return np.repeat(np.arange(ctx.n_users), ctx.n_relevant)


def per_user_sum(ctx: RankingContext, values: np.ndarray) -> np.ndarray:
    """(U,) sum of a flat (R,) array over each user's relevant entries."""
    return np.bincount(relevant_owner(ctx), weights=values, minlength=ctx.n_users)


def n_candidates(ctx: RankingContext) -> np.ndarray:
    """(U,) candidates per user: the Evaluator's count, else n_items minus the training items."""
    if ctx.n_candidates is not None:
        return ctx.n_candidates.astype(np.float64)
    n_train = ctx.n_train if ctx.n_train is not None else 0
    return (ctx.n_items - np.asarray(n_train)).astype(np.float64) * np.ones(ctx.n_users)


def candidate_item_counts(ctx: RankingContext) -> np.ndarray:
    """(n_items,) evaluated users for whom each item is a candidate (every user when unknown)."""
    if ctx.candidate_item_counts is not None:
        return ctx.candidate_item_counts.astype(np.float64)
    return np.full(ctx.n_items, float(ctx.n_users))


def relevant_is_candidate(ctx: RankingContext) -> np.ndarray:
    """(R,) the relevant item could be recommended to its user (not masked); all True when unknown."""
    if ctx.relevant_scores is not None:
        return np.isfinite(ctx.relevant_scores)
    return np.ones(int(np.sum(ctx.n_relevant)), dtype=bool)


def graded_gains(ctx: RankingContext, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """(gains (U, kk), ideal gains (U, kk)) of Elliot's discounted relevance; binary 1/0 when the context
    has no gains."""
    if ctx.gains is not None and ctx.ideal_gains is not None:
        return ctx.gains[:, :k].astype(np.float64), ctx.ideal_gains[:, :k].astype(np.float64)
    hits = ctx.hits[:, :k].astype(np.float64)
    ideal = (np.arange(hits.shape[1])[None, :] < ctx.n_relevant[:, None]).astype(np.float64)
    return hits, ideal
