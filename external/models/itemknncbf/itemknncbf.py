"""ItemKNNCBF: content-based item kNN (Ferrari Dacrema, Cremonesi, Jannach, "Are We Really Making Much
Progress? A Worrying Analysis of Recent Neural Recommendation Approaches", RecSys 2019; MMRec
``models/itemknncbf.py``).

No training.  With x_i the item's multimodal feature vector (the concatenation of every modality in
``modalities``, MMRec's ``cat(v_feat, t_feat)``):

* shrunk cosine similarity  s_ij = x_i·x_j / (|x_i||x_j| + ``shrink``);
* kNN sparsification: row i keeps its ``knn_k`` largest s_ij (the item itself included, as MMRec's
  top-k over the full row), W_ij = s_ij there and 0 elsewhere;
* score  ŷ_uj = Σ_{i ∈ R_u} W_ij = (R W)_uj, R the binary training matrix.

Defaults: MMRec ``configs/model/ItemKNNCBF.yaml``: knn_k 10, shrink 10.

Computation and deviations.  MMRec materialises the dense I x I similarity and the U x I score matrix
once; here W is kept as the (I, knn_k) neighbour lists, built in row chunks
(:func:`~elliot.recommender.knn.shrunk_cosine_topk`) in :meth:`prepare_scoring` for an evaluation pass,
and a batch's scores are accumulated from the batch users' training items (same values, memory
O(I·k)).  A zero feature row with shrink 0 gets similarity 0 (MMRec: NaN).

Hooks.  ``score_pairs`` recomputes the neighbour lists of the items the users interacted with from the
CURRENT features (differentiable w.r.t. the similarity values; the kNN selection itself is discrete), so
feature attacks reach it.  The modalities are fused (concatenated) before any similarity, there are no
per-modality embeddings: ``modality_embeddings`` returns ``{}``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.knn import shrunk_cosine_topk
from elliot.recommender.multimodal import MultimodalRecommender


class ItemKNNCBF(MultimodalRecommender):
    """Content-based item kNN over concatenated multimodal features; see the module docstring."""

    name = "ItemKNNCBF"
    trainable = False
    params = (
        Param("knn_k", int, 10, "neighbours kept per item", aliases=("neighbors",)),
        Param("shrink", float, 10.0, "shrink term of the cosine denominator", low=0.0),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        train = (dataset.train > 0).astype(np.float32).tocsr()
        train.sort_indices()
        self.register_buffer("_crow", torch.from_numpy(train.indptr.astype(np.int64)).to(self.device),
                             persistent=False)
        self.register_buffer("_col", torch.from_numpy(train.indices.astype(np.int64)).to(self.device),
                             persistent=False)
        self._cache: Optional[Tuple[Tensor, Tensor]] = None

    def _features(self) -> Tensor:
        return torch.cat([self.feature(m) for m in self.modalities], 1)

    def _neighbours(self, rows: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """(indices, values) (len(rows), knn_k) of W's rows, from the current features."""
        return shrunk_cosine_topk(self._features(), int(self.knn_k), float(self.shrink), rows=rows)

    def _user_items(self, users: Tensor) -> Tuple[Tensor, Tensor]:
        """(position in ``users``, item) of every training interaction of ``users`` (vectorised CSR slices)."""
        start, stop = self._crow.index_select(0, users), self._crow.index_select(0, users + 1)
        counts = stop - start
        owner = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        offsets = torch.cumsum(counts, 0) - counts
        within = torch.arange(len(owner), device=users.device) - offsets.index_select(0, owner)
        return owner, self._col.index_select(0, start.index_select(0, owner) + within)

    # ---- scoring ----------------------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        self._cache = self._neighbours()

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        idx, val = self._cache if self._cache is not None else self._neighbours()
        owner, items = self._user_items(users)
        flat = (owner.unsqueeze(1) * self.n_items + idx.index_select(0, items)).reshape(-1)
        scores = torch.zeros(len(users), self.n_items, dtype=val.dtype, device=val.device)
        scores.view(-1).index_add_(0, flat, val.index_select(0, items).reshape(-1))
        return scores  # a fresh tensor, not a view (the evaluator masks it in place)

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        """ŷ_ui = Σ_{i' ∈ R_u} W_{i' i} for aligned pairs, W's rows recomputed from the current features."""
        owner, seen = self._user_items(users)
        rows, inverse = torch.unique(seen, return_inverse=True)
        idx, val = self._neighbours(rows)
        hit = idx.index_select(0, inverse) == items.index_select(0, owner).unsqueeze(1)
        contrib = (val.index_select(0, inverse) * hit).sum(1)
        return torch.zeros(len(users), dtype=val.dtype, device=val.device).index_add(0, owner, contrib)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        return {}
