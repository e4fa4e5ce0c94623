"""Full-ranking evaluation, batched over users; talks to any model through ``score(users)``.

Protocol: every item is a candidate; the user's training items are masked (-inf); at test time the
validation items are masked too when ``mask_validation_in_test`` is true (our default: a known
positive is never counted as a miss; MMRec and LATTICE's code leave them in, set it to false to
compare with them).  An item is relevant when its rating in the evaluated split is >=
``relevance_threshold``.  Users without a relevant item in the split are not evaluated.
Memory is bounded by ``batch_size`` x n_items scores at a time.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from elliot.dataset.dataset import Dataset
from elliot.evaluation.metrics import RankingContext, compute_metrics, merge_contexts


@dataclass
class EvaluationResult:
    split: str
    values: Dict[int, Dict[str, float]]  # cutoff -> metric -> value
    per_user: Dict[int, Dict[str, np.ndarray]] = field(default_factory=dict)
    users: Optional[np.ndarray] = None  # evaluated user indices, aligned with per_user arrays

    def get(self, metric: str, cutoff: int) -> float:
        return self.values[cutoff][metric]


def _mask_rows(matrices: Sequence[sp.csr_matrix], users: np.ndarray):
    """Row / column indices (batch-local rows) of the stored entries of ``users`` in ``matrices``."""
    rows, cols = [], []
    for m in matrices:
        sub = m[users]
        counts = np.diff(sub.indptr)
        rows.append(np.repeat(np.arange(len(users)), counts))
        cols.append(sub.indices)
    return np.concatenate(rows), np.concatenate(cols)


class Evaluator:
    def __init__(self, dataset: Dataset, cutoffs: Sequence[int], metrics: Sequence[str],
                 relevance_threshold: float = 0.0, mask_validation_in_test: bool = True,
                 batch_size: int = 1024, top_k: Optional[int] = None):
        self.dataset = dataset
        self.cutoffs = sorted(set(int(k) for k in cutoffs))
        self.metrics = list(metrics)
        self.relevance_threshold = float(relevance_threshold)
        self.mask_validation_in_test = mask_validation_in_test
        self.batch_size = int(batch_size)
        self.top_k = max(int(top_k or 0), self.cutoffs[-1])
        self.popularity = dataset.item_popularity()
        self._relevant = {}
        for split in ("validation", "test"):
            matrix = getattr(dataset, split)
            if matrix is None:
                continue
            rel = matrix.copy()
            rel.data = ((rel.data > 0) & (rel.data >= self.relevance_threshold)).astype(np.float32)
            rel.eliminate_zeros()
            self._relevant[split] = rel.astype(bool).tocsr()

    # ---- ranking --------------------------------------------------------------------------------
    def _masks(self, split: str) -> List[sp.csr_matrix]:
        masks = [self.dataset.train]
        if split == "test" and self.mask_validation_in_test and self.dataset.validation is not None:
            masks.append(self.dataset.validation)
        return masks

    def evaluated_users(self, split: str) -> np.ndarray:
        rel = self._relevant.get(split)
        if rel is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.diff(rel.indptr) > 0).astype(np.int64)

    @torch.no_grad()
    def top_items(self, model, users: np.ndarray, k: int, masks: Sequence[sp.csr_matrix]):
        """Yield (batch_users, top_items (B,k) int64, top_scores (B,k) float32) in user batches."""
        device = model.device
        # masking writes into the scores; a copy is needed only when they alias model state (a view of a
        # buffer, as MostPop's broadcast row, or a parameter itself) - a fresh product is masked in place
        state = {t.untyped_storage().data_ptr() for t in itertools.chain(model.parameters(), model.buffers())}
        for start in range(0, len(users), self.batch_size):
            batch = users[start:start + self.batch_size]
            scores = model.score(torch.from_numpy(batch).to(device)).float()
            if scores.shape != (len(batch), self.dataset.n_items):
                raise RuntimeError(f"{type(model).__name__}.score returned shape {tuple(scores.shape)}, "
                                   f"expected ({len(batch)}, {self.dataset.n_items})")
            r, c = _mask_rows(masks, batch)
            if len(r):
                if scores._base is not None or scores.untyped_storage().data_ptr() in state:
                    scores = scores.clone()
                scores[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)] = -torch.inf
            top_scores, top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
            yield batch, top.cpu().numpy(), top_scores.cpu().numpy()

    def rank(self, model, split: str) -> RankingContext:
        users = self.evaluated_users(split)
        relevant = self._relevant[split]
        parts = []
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            try:
                for batch, top, top_scores in self.top_items(model, users, self.cutoffs[-1], self._masks(split)):
                    rel_rows = relevant[batch]
                    # hits via sorted keys: row-local key = row * n_items + item
                    keys = np.repeat(np.arange(len(batch)), np.diff(rel_rows.indptr)) * self.dataset.n_items \
                        + rel_rows.indices
                    keys.sort()
                    cand = np.arange(len(batch))[:, None] * self.dataset.n_items + top
                    pos = np.searchsorted(keys, cand)
                    pos[pos >= len(keys)] = 0
                    hits = keys[pos] == cand if len(keys) else np.zeros_like(cand, dtype=bool)
                    hits &= np.isfinite(top_scores)  # a -inf score is "not recommended" (masked or absent)
                    parts.append(RankingContext(top_items=top.astype(np.int64), hits=hits,
                                                n_relevant=np.diff(rel_rows.indptr).astype(np.int64),
                                                item_popularity=self.popularity, n_items=self.dataset.n_items))
            finally:
                model.end_scoring()
        return merge_contexts(parts)

    def evaluate(self, model, split: str = "test", metrics: Optional[Sequence[str]] = None,
                 cutoffs: Optional[Sequence[int]] = None) -> EvaluationResult:
        """Metrics of ``model`` on ``split`` ("validation" or "test") at every cutoff."""
        if split not in self._relevant:
            raise ValueError(f"the dataset has no {split} split")
        ctx = self.rank(model, split)
        values, per_user = compute_metrics(ctx, list(cutoffs or self.cutoffs), list(metrics or self.metrics))
        return EvaluationResult(split=split, values=values, per_user=per_user, users=self.evaluated_users(split))

    def recommendations(self, model, k: Optional[int] = None):
        """Top-k (users, items, scores) for every user with training data, masking train (+ validation)."""
        users = np.flatnonzero(np.diff(self.dataset.train.indptr) > 0).astype(np.int64)
        masks = self._masks("test")
        model.eval()
        out_u, out_i, out_s = [], [], []
        with torch.no_grad():
            model.prepare_scoring()
            try:
                for batch, top, scores in self.top_items(model, users, k or self.top_k, masks):
                    out_u.append(np.repeat(batch, top.shape[1]))
                    out_i.append(top.ravel())
                    out_s.append(scores.ravel())
            finally:
                model.end_scoring()
        if not out_u:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(out_u), np.concatenate(out_i), np.concatenate(out_s)
