"""MBPR: multimodal BPR-MF, the Elliot multimodal forks' ``external.MBPR`` (sisinflab/Multimodal-RSs-
Reproducibility ``external/models/mbpr``; Malitesta et al., "Formalizing Multimedia Recommendation through
Multimodal Deep Learning", ACM TORS 2024): BPR-MF whose item vector is its ID embedding next to a linear
projection of the concatenated multimodal features (the VBPR idea without the biases).

Model (the fork's ``MBPRModel``), with x_i = [x_i^1, ..., x_i^M] the concatenation of the item's
modality features (``fusion: concat``, the fork's ``comb_mod``):

    e_u = [γ_u, θ_u] (2·factors),   e_i = [γ_i, W x_i + b] (factors + factors),   ŷ_ui = e_u·e_i
        = γ_u·γ_i + θ_u·(W x_i + b).

Objective (the fork's ``train_step``): L = mean_batch -ln σ(ŷ_ui - ŷ_uj)
+ ``l_w`` (‖E_u‖_F + ‖E_i‖_F + ‖E_j‖_F) / B, the Frobenius norms (not squared) of the batch's stacked
e_u, e_i, e_j; Adam with the fork's schedule lr · 0.96^(epoch/50) (``lr_sched``).

Defaults: the fork's lr 1e-3, l_w 0.1, lr_sched (0.96, 50), fusion concat; factors 64 (the fork's code
default is 10, its configs use 64; the benchmark protocol's size).  Initialisation as the fork:
Xavier-uniform γ, θ, Xavier-normal W, zero b.  The fork's parameter names (``comb_mod``, ``loaders``,
``modalities``, ``lr_sched``) are accepted.

Deviations: (1) the fork sizes θ_u as factors · #modalities, which matches the item side only with two
modalities (any other number fails there); θ_u here is always ``factors`` wide (identical for two);
(2) BPR as the stable softplus (the fork's -log(1e-10 + σ) differs only for margins below -23);
(3) features are fixed inputs read through ``self.feature(m)``; the projection is computed for the batch's
distinct items (same values).

Hooks.  The projection of a concatenation is a sum of per-modality projections, W x_i = Σ_m W_m x_i^m
(W_m the block of W's columns that multiplies modality m), so the score splits EXACTLY into branches:
``"id"`` (γ_u, γ_i) and, per modality m, (θ_u, W_m x_i^m + b/M); their scores sum to ŷ_ui.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import TripletBatch, bpr_loss, gather_rows, unique_index
from elliot.recommender.multimodal import MultimodalRecommender


class MBPR(MultimodalRecommender):
    """Multimodal BPR-MF of the Elliot forks; see the module docstring."""

    name = "MBPR"
    params = (
        Param("factors", int, 64, "size of γ, θ and of the projected features"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 0.1, "weight of the Frobenius norms of the batch's user / item vectors (/ B)"),
        Param("fusion", str, "concat", "how modalities are combined (the fork implements concat only)",
              choices=("concat",), aliases=("comb_mod",)),
        Param("lr_sched", "list[float]", [0.96, 50.0], "(factor, step): lr x factor^(epoch / step) (the fork's "
              "default; empty: constant)", lengths=(0, 2)),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k = int(self.factors)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * k)))  # [γ_u, θ_u]
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, k)))  # γ_i
        self.proj = nn.Linear(sum(self.feature_dim(m) for m in self.modalities), k)
        nn.init.xavier_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        offsets = [0]
        for m in self.modalities:
            offsets.append(offsets[-1] + self.feature_dim(m))
        self._blocks = list(zip(offsets[:-1], offsets[1:]))  # columns of W per modality
        self._cache: Optional[Tuple[Tensor, Tensor]] = None
        self.to(self.device)

    # ---- item side ------------------------------------------------------------------------------
    def _content_parts(self, items: Optional[Tensor]) -> List[Tensor]:
        """W_m x_i^m + b/M for each modality m (rows ``items``, all when None), from the current features."""
        w, b, n_mod = self.proj.weight, self.proj.bias, len(self.modalities)
        parts = []
        for m, (lo, hi) in zip(self.modalities, self._blocks):
            x = self.feature(m) if items is None else gather_rows(self.feature(m), items)
            parts.append(torch.addmm(b / n_mod, x, w[:, lo:hi].T))
        return parts

    def _item_vectors(self, items: Optional[Tensor]) -> Tensor:
        """e_i = [γ_i, W x_i + b]; the projection computed once per distinct item of ``items``."""
        if items is None:
            content = self.proj(torch.cat([self.feature(m) for m in self.modalities], 1))
            return torch.cat([self.item_emb, content], 1)
        uniq, inv = unique_index(items, self.n_items)
        content = self.proj(torch.cat([gather_rows(self.feature(m), uniq) for m in self.modalities], 1))
        return torch.cat([gather_rows(self.item_emb, items), gather_rows(content, inv)], 1)

    # ---- training ---------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        n = len(batch.users)
        eu = gather_rows(self.user_emb, batch.users)
        ei, ej = self._item_vectors(torch.cat([batch.pos_items, batch.neg_items])).split(n)
        reg = (eu.norm() + ei.norm() + ej.norm()) / n
        return bpr_loss((eu * ei).sum(-1), (eu * ej).sum(-1)) + float(self.l_w) * reg

    # ---- scoring ----------------------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        self._cache = self._item_vectors(None)

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        items = self._cache if self._cache is not None else self._item_vectors(None)
        return gather_rows(self.user_emb, users) @ items.T

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        return (gather_rows(self.user_emb, users) * self._item_vectors(items)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        k = int(self.factors)
        eu = gather_rows(self.user_emb, users)
        out = {"id": (eu[:, :k], gather_rows(self.item_emb, items))}
        for m, part in zip(self.modalities, self._content_parts(items)):
            out[m] = (eu[:, k:], part)
        return out
