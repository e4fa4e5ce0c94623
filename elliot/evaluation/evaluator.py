"""Full-ranking evaluation, batched over users; talks to any model through ``score(users)``; rating
models (``model.task == "rating"``) are evaluated on their rating predictions instead (below).

Protocol: every item of the catalogue (``data_config.item_catalogue``, see :mod:`elliot.dataset.builder`)
is a candidate; the user's training items are masked (-inf); at test time the validation items are
masked too when ``mask_validation_in_test`` is true (our default: a known positive is never counted as a
miss).  An item is relevant when its rating in the evaluated split is >= ``relevance_threshold``.  Users
without a relevant item in the split are not evaluated.  Memory is bounded by ``batch_size`` x n_items
scores at a time; everything is vectorised per user batch.

MMRec's protocol, read in its code (github.com/enoche/MMRec, commit e775373):

* catalogue: ``RecDataset.__init__`` sets ``item_num = max(itemID) + 1`` over the whole ``.inter`` file,
  every split included (``src/utils/dataset.py`` l.47); validation/test items absent from training stay
  (only users absent from training are filtered, ``filter_out_cod_start_users: True`` in
  ``src/configs/overall.yaml`` l.9, ``src/utils/dataset.py`` l.64-70) -> ``item_catalogue: all``;
* evaluated users: the distinct users of the evaluated split (``EvalDataLoader``: ``eval_u =
  dataset.df[uid].unique()``, ``src/utils/dataloader.py`` l.345), i.e. users with >= 1 test item; they all
  have training interactions (above);
* masking: the test loader's ``additional_dataset`` is the training split (``src/utils/quick_start.py``
  l.43), its items get -1e10 (``src/common/trainer.py`` l.305-307, ``_get_pos_items_per_u`` in
  ``dataloader.py`` l.370-391): only training items are masked, never validation items ->
  ``mask_validation_in_test: false``;
* metrics: Recall = hits@k / |test items of u|, averaged over the evaluated users (``src/utils/metrics.py``
  l.12-15, ``src/utils/topk_evaluator.py`` l.88-101), as ours.
With both settings a run follows MMRec's protocol.

Cold-start metrics (``<metric>_cold`` on the test split when the catalogue holds cold items, and
``ColdShare``, the share of top-k slots given to cold items): see :mod:`elliot.evaluation.cold`; they are
computed in the same scoring pass as the overall metrics.

Sampled evaluation (Elliot's ``negative_sampling``, see :mod:`elliot.evaluation.negative_sampling`): each
user's candidates are its split items plus its negatives; every other item scores -inf, then the masks
apply as above.  Complex metrics (Elliot's ``complex_metrics``, see :mod:`elliot.evaluation.metrics.complex`)
are computed with the simple ones and reported under Elliot's result names.

Rating task (:meth:`Evaluator.evaluate` with a model whose ``task`` is ``"rating"``): the model's
``predict(users, items)`` is called, in batches of ``pair_batch_size`` pairs, on EVERY stored (user, item)
pair of the split, and MAE / MSE / RMSE are the pair-averaged errors against the split ratings
(:mod:`elliot.evaluation.metrics.rating`); the relevance threshold, the masks, negative sampling and the
cutoffs do not apply (the values are repeated at every cutoff so the result layout is the same).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from elliot.dataset.dataset import Dataset
from elliot.evaluation.cold import ColdStart, add_cold_share, add_cold_values
from elliot.evaluation.metrics import (RankingContext, compute_metrics, merge_contexts, needs_full_ranks,
                                      prepare_complex_metrics)
from elliot.evaluation.metrics.rating import RatingContext, compute_rating_metrics
from elliot.evaluation.negative_sampling import negatives_for_split


@dataclass
class EvaluationResult:
    split: str
    values: Dict[int, Dict[str, float]]  # cutoff -> metric -> value
    per_user: Dict[int, Dict[str, np.ndarray]] = field(default_factory=dict)
    users: Optional[np.ndarray] = None  # evaluated user indices, aligned with per_user arrays
    cold_users: Optional[np.ndarray] = None  # users of the <metric>_cold values (None: not computed)

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


def _negatives_above(scores: torch.Tensor, owner: torch.Tensor, rel_scores: torch.Tensor,
                     n_rel: np.ndarray) -> np.ndarray:
    """(R,) for every relevant (row, item): candidates scored strictly above it that are not relevant,
    nan for a masked relevant item.  Candidates above: row-vs-score comparisons in chunks of about 2^24
    entries (R x n_items work, less than sorting the rows while users hold fewer than log2(n_items)
    relevant items); relevant above: a sort of the R relevant scores within each user."""
    if len(owner) == 0:
        return np.zeros(0)
    n_items = scores.shape[1]
    chunk = max(1, (1 << 24) // n_items)
    above_all = torch.cat([(scores[owner[i:i + chunk]] > rel_scores[i:i + chunk, None]).sum(1, dtype=torch.int32)
                           for i in range(0, len(owner), chunk)]).cpu().numpy()
    rel = rel_scores.cpu().numpy().astype(np.float64)
    own = owner.cpu().numpy()
    order = np.lexsort((-rel, own))  # by user, then score descending
    srt, so = rel[order], own[order]
    idx = np.arange(len(order))
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = (so[1:] != so[:-1]) | (srt[1:] != srt[:-1])
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
    group_start = np.repeat(np.cumsum(n_rel) - n_rel, n_rel)  # flat entries are grouped by user already
    above_rel = np.empty(len(order), dtype=np.int64)
    above_rel[order] = run_start - group_start[order]
    out = (above_all - above_rel).astype(np.float64)
    out[~np.isfinite(rel)] = np.nan
    return out


def _merged(parts: List[RankingContext], counts: np.ndarray) -> RankingContext:
    """The batches' contexts of one pass merged, with the pass's candidate counts per item."""
    merged = merge_contexts(parts)
    return dataclasses.replace(merged, candidate_item_counts=counts) if parts else merged


class Evaluator:
    """Evaluates any model (``score(users)``) on the validation / test split.

    ``complex_metrics``: Elliot's complex metrics as :func:`elliot.evaluation.metrics.parse_complex_metrics`
    returns them (their files are read here, once).  ``negative_sampling``: the dict of
    :func:`elliot.evaluation.negative_sampling.parse_negative_sampling` (sampled evaluation; None = full
    ranking).  Both default to off.
    """

    def __init__(self, dataset: Dataset, cutoffs: Sequence[int], metrics: Sequence[str],
                 relevance_threshold: float = 0.0, mask_validation_in_test: bool = True,
                 batch_size: int = 1024, top_k: Optional[int] = None,
                 complex_metrics: Sequence[dict] = (), negative_sampling: Optional[dict] = None):
        self.dataset = dataset
        self.cutoffs = sorted(set(int(k) for k in cutoffs))
        self.metrics = list(metrics)
        self.relevance_threshold = float(relevance_threshold)
        self.mask_validation_in_test = mask_validation_in_test
        self.batch_size = int(batch_size)
        self.pair_batch_size = max(self.batch_size, 1) * 64  # rating task: pairs per predict call
        self.top_k = max(int(top_k or 0), self.cutoffs[-1])
        self.popularity = dataset.item_popularity()
        self._n_train = np.diff(dataset.train.indptr).astype(np.int64)
        self.n_users_total = int((self._n_train > 0).sum())
        self._relevant = {}  # split -> bool CSR of the relevant (u, i), sorted indices
        self._ratings = {}  # split -> float64 CSR of their ratings, the same structure
        self._graded = {}
        for split in ("validation", "test"):
            matrix = getattr(dataset, split)
            if matrix is None:
                continue
            rel = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
            rel.sum_duplicates()
            rel.data[~((rel.data > 0) & (rel.data >= self.relevance_threshold))] = 0
            rel.eliminate_zeros()
            self._ratings[split] = rel
            self._relevant[split] = rel.astype(bool)
            self._graded[split] = bool(rel.nnz) and not np.all(rel.data == rel.data[0])
        self._cold = ColdStart(dataset, self._ratings)
        self.complex_metrics = prepare_complex_metrics(list(complex_metrics or ()), dataset.user_ids,
                                                       dataset.item_ids, dataset.train)
        self.negative_sampling = dict(negative_sampling) if negative_sampling else None
        self._candidates: Dict[str, Optional[sp.csr_matrix]] = {}

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

    def gain(self, ratings: np.ndarray) -> np.ndarray:
        """Elliot's discounted relevance of a relevant rating r: 2^(r - t + 1) - 1, t the threshold."""
        return np.exp2(ratings - self.relevance_threshold + 1.0) - 1.0

    def candidates(self, split: str) -> Optional[sp.csr_matrix]:
        """(n_users, n_items) bool CSR of the candidate items under negative sampling (the split's items
        plus the sampled / listed negatives), None for full ranking.  Computed once per split."""
        if self.negative_sampling is None:
            return None
        if split not in self._candidates:
            ds = self.dataset
            split_items = getattr(ds, split).astype(bool)
            exclude = ds.train.astype(bool) + split_items
            for other in ("validation", "test"):
                if other != split and getattr(ds, other) is not None:
                    exclude = exclude + getattr(ds, other).astype(bool)
            neg = negatives_for_split(self.negative_sampling, split, self.evaluated_users(split), ds.user_ids,
                                      ds.item_ids, exclude.tocsr())
            self._candidates[split] = None if neg is None else (split_items + neg).astype(bool).tocsr()
        return self._candidates[split]

    @torch.no_grad()
    def _scored(self, model, users: np.ndarray, masks: Sequence[sp.csr_matrix],
                candidates: Optional[sp.csr_matrix] = None):
        """Yield (batch_users, scores (B, n_items) tensor) with masked / non-candidate items at -inf."""
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
            if candidates is not None:  # sampled evaluation: only the candidates keep their scores
                cr, cc = _mask_rows([candidates], batch)
                cr, cc = torch.from_numpy(cr).to(device), torch.from_numpy(cc).to(device)
                restricted = torch.full_like(scores, -torch.inf)
                restricted[cr, cc] = scores[cr, cc]
                scores = restricted
            r, c = _mask_rows(masks, batch)
            if len(r):
                if candidates is None and (scores._base is not None
                                           or scores.untyped_storage().data_ptr() in state):
                    scores = scores.clone()
                scores[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)] = -torch.inf
            yield batch, scores

    @torch.no_grad()
    def top_items(self, model, users: np.ndarray, k: int, masks: Sequence[sp.csr_matrix],
                  candidates: Optional[sp.csr_matrix] = None):
        """Yield (batch_users, top_items (B,k) int64, top_scores (B,k) float32) in user batches."""
        for batch, scores in self._scored(model, users, masks, candidates):
            top_scores, top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
            yield batch, top.cpu().numpy(), top_scores.cpu().numpy()

    def rank(self, model, split: str, full_ranks: bool = False) -> RankingContext:
        """The :class:`RankingContext` of ``split``: every optional field, plus ``relevant_neg_above`` (the
        full-ranking position of every relevant item, for AUC / GAUC) when ``full_ranks`` is true."""
        return self.rank_contexts(model, split, full_ranks)[0]

    def rank_contexts(self, model, split: str, full_ranks: bool = False, cold: bool = False):
        """(context of ``split``, its cold-start context or None): with ``cold`` and cold relevant items in
        the split, the second context is computed from the same scores (one scoring pass), restricted to
        the :meth:`cold_users` and with only their cold items relevant (see :meth:`cold_ratings`)."""
        users = self.evaluated_users(split)
        ratings = self._ratings[split]
        n_items = self.dataset.n_items
        cold_pass = self._cold.collector(split, n_items) if cold else None
        k = min(self.cutoffs[-1], n_items)
        context = functools.partial(self._batch_context, graded=self._graded[split], full_ranks=full_ranks, k=k)
        counts = np.zeros(n_items, dtype=np.int64)
        parts: List[RankingContext] = []
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            try:
                for batch, scores in self._scored(model, users, self._masks(split), self.candidates(split)):
                    top_scores_t, top_t = torch.topk(scores, k=k, dim=1)
                    top, top_scores = top_t.cpu().numpy().astype(np.int64), top_scores_t.cpu().numpy()
                    finite = torch.isfinite(scores)
                    n_cand = finite.sum(1, dtype=torch.int32).cpu().numpy().astype(np.int64)
                    counts += finite.sum(0, dtype=torch.int32).cpu().numpy()
                    parts.append(context(batch, scores, top, top_scores, n_cand, ratings))
                    if cold_pass is not None:
                        cold_pass.add(batch, scores, finite, top, top_scores, n_cand, context)
            finally:
                model.end_scoring()
        cold_ctx = None if cold_pass is None else _merged(cold_pass.parts, cold_pass.counts)
        return _merged(parts, counts), cold_ctx

    def _batch_context(self, batch: np.ndarray, scores: torch.Tensor, top: np.ndarray, top_scores: np.ndarray,
                       n_cand: np.ndarray, ratings: sp.csr_matrix, graded: bool, full_ranks: bool,
                       k: int) -> RankingContext:
        """The :class:`RankingContext` of one user batch, relevance read from ``ratings`` (rows = users)."""
        n_items = self.dataset.n_items
        rows = ratings[batch]
        n_rel = np.diff(rows.indptr).astype(np.int64)
        owner = np.repeat(np.arange(len(batch)), n_rel)
        rel_items = rows.indices.astype(np.int64)
        device = scores.device
        owner_t, items_t = torch.from_numpy(owner).to(device), torch.from_numpy(rel_items).to(device)
        rel_scores_t = scores[owner_t, items_t]
        rel_ratings = rows.data
        rel_gain = self.gain(rel_ratings)
        # hits via sorted keys (CSR rows hold sorted indices): row-local key = row * n_items + item
        keys = owner * n_items + rel_items
        cand = np.arange(len(batch))[:, None] * n_items + top
        pos = np.searchsorted(keys, cand)
        pos[pos >= len(keys)] = 0
        hits = keys[pos] == cand if len(keys) else np.zeros_like(cand, dtype=bool)
        hits &= np.isfinite(top_scores)  # a -inf score is "not recommended" (masked or absent)
        gains = np.where(hits, rel_gain[pos] if len(keys) else 0.0, 0.0)
        # ideal gains: each user's gains sorted descending, first k
        order = np.lexsort((-rel_gain, owner))
        within = np.arange(len(owner)) - rows.indptr[owner[order]]
        keep = within < k
        ideal = np.zeros((len(batch), k))
        ideal[owner[order][keep], within[keep]] = rel_gain[order][keep]
        neg_above = None
        if full_ranks:
            neg_above = _negatives_above(scores, owner_t, rel_scores_t, n_rel)
        return RankingContext(
            top_items=top, hits=hits, n_relevant=n_rel, item_popularity=self.popularity,
            n_items=n_items, top_scores=top_scores, gains=gains, ideal_gains=ideal,
            graded=graded, relevant_items=rel_items, relevant_ratings=rel_ratings,
            relevant_scores=rel_scores_t.cpu().numpy().astype(np.float64), relevant_neg_above=neg_above,
            n_train=self._n_train[batch], n_candidates=n_cand, user_index=batch.astype(np.int64),
            n_users_total=self.n_users_total)

    # ---- cold-start evaluation (data_config.item_catalogue: all; elliot.evaluation.cold) -------------
    def cold_ratings(self, split: str) -> Optional[sp.csr_matrix]:
        """The relevant ratings of ``split`` restricted to cold items (:meth:`ColdStart.ratings`)."""
        return self._cold.ratings(split)

    def cold_users(self, split: str = "test") -> np.ndarray:
        """Users with at least one relevant cold item in ``split`` (the cold-start metrics' users)."""
        return self._cold.users(split)

    def metric_names(self) -> List[str]:
        """Every result name :meth:`evaluate` reports by default: the simple metrics, then the complex
        metrics' results under Elliot's names (e.g. ``UserMADrating_Happiness``, ``REO_items:Pop``, one
        ``RSP-ProbToBeRanked_items:<name>-<cluster>`` per cluster)."""
        return list(self.metrics) + [n for p in self.complex_metrics for n in p.output_names()]

    def evaluate(self, model, split: str = "test", metrics: Optional[Sequence[str]] = None,
                 cutoffs: Optional[Sequence[int]] = None, complex_metrics: Optional[bool] = None,
                 cold_start: Optional[bool] = None) -> EvaluationResult:
        """Metrics of ``model`` on ``split`` ("validation" or "test") at every cutoff.  The complex metrics
        are computed when ``complex_metrics`` is true, by default when ``metrics`` is not given.  The
        cold-start metrics (``<metric>_cold``, see the module docstring) when ``cold_start`` is true and the
        split has cold relevant items; by default on the test split when ``metrics`` is not given."""
        if split not in self._relevant:
            raise ValueError(f"the dataset has no {split} split")
        names = list(metrics or self.metrics)
        if getattr(model, "task", "ranking") == "rating":
            ctx = self.rating_context(model, split)
            values, per_user = compute_rating_metrics(ctx, list(cutoffs or self.cutoffs), names)
            return EvaluationResult(split=split, values=values, per_user=per_user, users=ctx.evaluated_users())
        with_complex = (metrics is None) if complex_metrics is None else complex_metrics
        prepared = self.complex_metrics if with_complex else []
        if cold_start is None:
            cold_start = metrics is None and split == "test"
        ctx, cold_ctx = self.rank_contexts(model, split, full_ranks=needs_full_ranks(names, prepared),
                                           cold=bool(cold_start))
        cutoffs = list(cutoffs or self.cutoffs)
        values, per_user = compute_metrics(ctx, cutoffs, names, prepared)
        cold_users = None if cold_ctx is None else add_cold_values(values, cold_ctx, cutoffs, names)
        if cold_start and self._cold.items.any():
            add_cold_share(values, ctx, self._cold.items, cutoffs)
        return EvaluationResult(split=split, values=values, per_user=per_user, users=self.evaluated_users(split),
                                cold_users=cold_users)

    # ---- rating task ---------------------------------------------------------------------------
    def rating_context(self, model, split: str) -> RatingContext:
        """Every stored (user, item, rating) of ``split`` (CSR order: by user, then item) with the model's
        ``predict`` of each pair."""
        matrix = getattr(self.dataset, split)
        if matrix is None:
            raise ValueError(f"the dataset has no {split} split")
        coo = sp.csr_matrix(matrix).tocoo()
        users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        preds = np.empty(len(users), dtype=np.float64)
        device = model.device
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            try:
                for start in range(0, len(users), self.pair_batch_size):
                    sl = slice(start, start + self.pair_batch_size)
                    out = model.predict(torch.from_numpy(users[sl]).to(device), torch.from_numpy(items[sl]).to(device))
                    if out.shape != (len(users[sl]),):
                        raise RuntimeError(f"{type(model).__name__}.predict returned shape {tuple(out.shape)}, "
                                           f"expected ({len(users[sl])},)")
                    preds[sl] = out.float().cpu().numpy()
            finally:
                model.end_scoring()
        return RatingContext(users=users, items=items, ratings=coo.data.astype(np.float64), predictions=preds)

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
