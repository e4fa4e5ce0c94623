"""Cold-start metrics of the evaluator (:class:`elliot.evaluation.evaluator.Evaluator`).

Only when the catalogue holds cold items, i.e. ``item_catalogue: all`` and items without a training
interaction: on the test split, :meth:`Evaluator.evaluate` also reports every simple metric restricted to
the test interactions whose item is cold, as ``<metric>_cold`` (``Recall_cold``, a column next to
``Recall`` in ``performance/rec_cutoff_<k>_...tsv``): the users are those with >= 1 cold test item, only
their cold test items are relevant, and the ranking is the same full ranking as the overall metrics (same
scores and masks; a warm test item ranked above is a miss), computed in the same scoring pass.

Next to them, ``ColdShare`` at every cutoff k: the share of all evaluated users' top-k slots (recommended,
i.e. finite-scored, items only) that hold a cold item - how much of the lists a model gives to items nobody
has interacted with yet.  The catalogue's share of cold items is the reference (TikTok: 465 of 6,710, 6.9%);
an ID-only model, which never moves a cold item's untrained embedding, gives them ~0, and a content model
that over-ranks them pays for it in the overall metrics.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from elliot.dataset.dataset import Dataset
from elliot.evaluation.metrics import RankingContext, compute_metrics

COLD_SUFFIX = "_cold"  # result name of a cold-start metric: Recall_cold, nDCG_cold, ...
COLD_SHARE = "ColdShare"  # result name of the share of top-k slots given to cold items


class ColdStart:
    """The catalogue's cold items and, per split, the relevant ratings of the cold items."""

    def __init__(self, dataset: Dataset, ratings: Dict[str, sp.csr_matrix]):
        # cold items: only a catalogue that includes items without a training interaction has them
        self.items = (dataset.cold_items() if getattr(dataset, "item_catalogue", "train") == "all"
                      else np.zeros(dataset.n_items, dtype=bool))
        self._split_ratings = ratings  # split -> its relevant ratings (the evaluator's)
        self._ratings: Dict[str, sp.csr_matrix] = {}  # split -> its relevant ratings of cold items

    def ratings(self, split: str) -> Optional[sp.csr_matrix]:
        """The relevant ratings of ``split`` restricted to cold items (no training interaction), the same
        CSR layout; None when the catalogue has no cold item (``item_catalogue: train``) or no such split."""
        if split not in self._split_ratings or not self.items.any():
            return None
        if split not in self._ratings:  # once per split
            rel = self._split_ratings[split].copy()
            rel.data = np.where(self.items[rel.indices], rel.data, 0.0)
            rel.eliminate_zeros()
            self._ratings[split] = rel
        return self._ratings[split]

    def users(self, split: str) -> np.ndarray:
        """Users with at least one relevant cold item in ``split`` (the cold-start metrics' users)."""
        rel = self.ratings(split)
        if rel is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.diff(rel.indptr) > 0).astype(np.int64)

    def collector(self, split: str, n_items: int) -> Optional["ColdPass"]:
        """A :class:`ColdPass` for one scoring pass over ``split``; None without cold relevant items."""
        rel = self.ratings(split)
        return None if rel is None or not rel.nnz else ColdPass(rel, n_items)


class ColdPass:
    """The cold-start context of one scoring pass, batch by batch: the rows of the users with a cold
    relevant item, with only their cold items relevant."""

    def __init__(self, ratings: sp.csr_matrix, n_items: int):
        self.ratings = ratings
        self._n_cold = np.diff(ratings.indptr)
        self.counts = np.zeros(n_items, dtype=np.int64)  # candidate items per item, over these users
        self.parts: List[RankingContext] = []

    def add(self, batch: np.ndarray, scores: torch.Tensor, finite: torch.Tensor, top: np.ndarray,
            top_scores: np.ndarray, n_cand: np.ndarray, context: Callable[..., RankingContext]) -> None:
        """Adds a user batch of the pass (its scores, finite mask, top-k and candidate counts);
        ``context(batch, scores, top, top_scores, n_cand, ratings)`` builds a batch's ranking context."""
        sel = np.flatnonzero(self._n_cold[batch] > 0)
        if not len(sel):
            return
        sel_t = torch.from_numpy(sel).to(scores.device)
        self.counts += finite[sel_t].sum(0, dtype=torch.int32).cpu().numpy()
        self.parts.append(context(batch[sel], scores[sel_t], top[sel], top_scores[sel], n_cand[sel], self.ratings))


def add_cold_values(values: Dict[int, Dict[str, float]], cold_ctx: RankingContext, cutoffs: Sequence[int],
                    names: Sequence[str]) -> np.ndarray:
    """Adds the cold-start values of ``names`` to ``values`` (cutoff -> metric -> value) next to the overall
    ones, as ``<metric>_cold`` (per-user values not kept); returns the cold-start users."""
    cold_values, _ = compute_metrics(cold_ctx, list(cutoffs), list(names))
    for k in cutoffs:
        values[k].update({f"{name}{COLD_SUFFIX}": v for name, v in cold_values[k].items()})
    return cold_ctx.user_index


def add_cold_share(values: Dict[int, Dict[str, float]], ctx: RankingContext, cold_items: np.ndarray,
                   cutoffs: Sequence[int]) -> None:
    """Adds ``ColdShare`` at every cutoff: cold items among the recommended (finite-scored) top-k slots of
    every evaluated user of ``ctx``, over all those slots."""
    for k in cutoffs:
        top = ctx.top_items[:, :k]
        shown = np.isfinite(ctx.top_scores[:, :k])
        n = int(shown.sum())
        values[k][COLD_SHARE] = float((cold_items[top] & shown).sum() / n) if n else 0.0
