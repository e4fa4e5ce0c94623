r"""MMGCF: Multimodal Graph Collaborative Filtering, as shipped in enoche/MMRec (``src/models/mmgcf.py`` +
``src/configs/model/MMGCF.yaml``): LightGCN ID embeddings late-fused with projected item features, trained on a
degree-sensitively pruned user-item graph.  MMRec cites no paper for it; it is the LightGCN + late-fusion
baseline (He et al., SIGIR 2020, for the backbone; the pruning is FREEDOM's, Zhou & Shen, MM 2023).

What is implemented (the shipped code; M modalities, f_m = W_m x^m + b_m, ``factors_multimod`` wide):

* Backbone: [ē_u; ē_i] = 1/(K+1) Σ_{k<=K} Â^k [e_u; e_i], K = ``n_ui_layers``; Â = D^{-1/2} A D^{-1/2} at
  inference; in training the graph of the epoch (:meth:`on_epoch_start`, MMRec ``pre_epoch_processing``): keep
  ⌊(1 - ``dropout``)|E|⌋ edges drawn without replacement ∝ 1/√(d_u d_i), re-normalised with the kept degrees.
* Item fusion (``fusion_mode`` φ ∈ mean | sum | concat, concat = a linear map of the concatenation):
      ``weighting: equal``       h_i = φ(ē_i, φ_mm(f_1, ..., f_M))   (φ_mm = f_1 for one modality)
      ``weighting: alpha``       h_i = φ(α ē_i, (1-α) f_1, ..., (1-α) f_M),   α = sigmoid(a), a learnt (init 0)
      ``weighting: normalized``  h_i = φ(M ē_i/|ē_i|, f_1/|f_1|, ..., f_M/|f_M|)
  users: h_u = ē_u; score ŷ_ui = h_u·h_i.
* Loss: mean -ln σ(ŷ_ui - ŷ_uj) + ``l_w`` (|e_u|² + |e_i|² + |e_j|²) / (2B), on the batch's ID (layer-0) rows.

Defaults: the first value of each of MMRec's grids (n_ui_layers 1, reg_weight 0.1, fusion_mode mean, weighting
equal, dropout 0.2), embedding_size = feat_embed_dim = 64, lr 1e-3 (overall.yaml).  Xavier-uniform ID
embeddings, default nn.Linear elsewhere.  Deviations: the pruning draws come from a generator seeded by
(seed, epoch) (MMRec: torch's global RNG); modalities are generic (MMRec: image and text); features are fixed
inputs read through ``self.feature(m)`` (as MMRec's frozen embeddings).

Hooks: h_i is affine in (ē_i, f_1, ..., f_M) in every mode (normalisation taken as part of each input), so it
splits exactly: h_i = φ(ē_i, 0) + Σ_m [φ(0, f_m alone) - φ(0, 0)].  ``modality_embeddings`` returns ``"id"``:
(h_u, φ(ē_i, 0)) and m: (h_u, φ(0, f_m) - φ(0, 0)); the branch scores sum to ``score_pairs``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, gather_rows
from elliot.recommender.graph import (bipartite_norm_values, propagate_mean, sample_edges, ui_edges,
                                      ui_propagation_op, ui_subgraph_op)
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


class MMGCF(EmbeddingScoring, MultimodalRecommender):
    """MMGCF (MMRec's LightGCN + late multimodal fusion); see the module docstring."""

    name = "MMGCF"
    params = (
        Param("factors", int, 64, "ID embedding size (embedding_size)", aliases=("embedding_size",)),
        Param("factors_multimod", int, 64, "projected feature size (feat_embed_dim; = factors unless concat)",
              aliases=("feat_embed_dim", "multimod_factors")),
        Param("lr", float, 1e-3, "Adam learning rate", aliases=("learning_rate",)),
        Param("n_ui_layers", int, 1, "LightGCN layers K (MMRec grid {1, 2, 3})"),
        Param("l_w", float, 0.1, "L2 weight on the batch's ID rows / (2B) (reg_weight; grid {0.1, ..., 1e-4})",
              aliases=("reg_weight",)),
        Param("fusion_mode", str, "mean", "how ID and modality vectors are combined", choices=("mean", "sum", "concat")),
        Param("weighting", str, "equal", "ID vs modality weighting", choices=("equal", "alpha", "normalized")),
        Param("dropout", float, 0.2, "share of training edges pruned each epoch (degree-sensitive)"),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]) -> Optional[str]:
        if params.get("fusion_mode", "mean") != "concat" and int(params.get("factors", 64)) != int(
                params.get("factors_multimod", 64)):
            return "factors must equal factors_multimod unless fusion_mode is concat"
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, km, n_mod = int(self.factors), int(self.factors_multimod), len(self.modalities)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))
        self.proj = nn.ModuleList(nn.Linear(self.feature_dim(m), km) for m in self.modalities)
        if self.weighting == "alpha":
            self.alpha = nn.Parameter(torch.zeros(()))
        if self.fusion_mode == "concat":
            if self.weighting == "equal":
                self.mm_concat = nn.Linear(n_mod * km, km) if n_mod > 1 else None
                self.id_mm_concat = nn.Linear(k + km, k)
            else:
                self.all_concat = nn.Linear(k + n_mod * km, k)
        elif k != km:
            raise ConfigError("MMGCF: factors must equal factors_multimod unless fusion_mode is concat")
        self.norm_adj = ui_propagation_op(dataset.train, self.device)
        self._edges = ui_edges(dataset.train)
        self._edge_probs = bipartite_norm_values(self._edges, self.n_users, self.n_items)
        self._masked_adj: Optional[SparseOp] = None
        self.to(self.device)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    def on_epoch_start(self, epoch: int) -> None:
        """Degree-sensitive edge pruning, re-drawn every epoch (MMRec ``pre_epoch_processing``)."""
        if float(self.dropout) <= 0 or self._edges.shape[1] == 0:
            self._masked_adj = self.norm_adj
            return
        n_keep = max(1, int(self._edges.shape[1] * (1.0 - float(self.dropout))))
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        keep = sample_edges(self._edges.shape[1], n_keep, gen, probs=self._edge_probs)
        self._masked_adj = ui_subgraph_op(self._edges[:, keep], self.n_users, self.n_items, self.device)

    # ---- fusion -------------------------------------------------------------------------------------
    def _phi(self, tensors: List[Tensor], layer: Optional[nn.Module]) -> Tensor:
        if self.fusion_mode == "mean":
            return torch.stack(tensors).mean(0)
        if self.fusion_mode == "sum":
            return torch.stack(tensors).sum(0)
        return layer(torch.cat(tensors, -1))

    def _fuse(self, item: Tensor, feats: List[Tensor]) -> Tensor:
        """h_i from ē_i and the projected features f_m (rows aligned)."""
        if self.weighting == "alpha":
            a = torch.sigmoid(self.alpha)
            return self._phi([item * a] + [f * (1 - a) for f in feats], getattr(self, "all_concat", None))
        if self.weighting == "normalized":
            return self._phi([F.normalize(item, dim=-1) * len(feats)] + [F.normalize(f, dim=-1) for f in feats],
                             getattr(self, "all_concat", None))
        mm = self._phi(feats, getattr(self, "mm_concat", None)) if len(feats) > 1 else feats[0]
        return self._phi([item, mm], getattr(self, "id_mm_concat", None))

    def _feats(self, items: Optional[Tensor]) -> List[Tensor]:
        return [lin(self.feature(m) if items is None else gather_rows(self.feature(m), items))
                for m, lin in zip(self.modalities, self.proj)]

    def _backbone(self) -> Tuple[Tensor, Tensor]:
        adj = self._masked_adj if (self.training and self._masked_adj is not None) else self.norm_adj
        mean = propagate_mean(adj, self.embeddings, int(self.n_ui_layers))
        return mean[: self.n_users], mean[self.n_users:]

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        users, items = self._backbone()
        return users, self._fuse(items, self._feats(None))

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        if self._masked_adj is None:
            self.on_epoch_start(0)
        users, items = self._backbone()
        u = gather_rows(users, batch.users)
        both = torch.cat([batch.pos_items, batch.neg_items])
        fused = self._fuse(gather_rows(items, both), self._feats(both))
        pos, neg = fused[: len(u)], fused[len(u):]
        loss = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        if self.l_w:
            ids = torch.cat([batch.users, both + self.n_users])
            loss = loss + float(self.l_w) * gather_rows(self.embeddings, ids).pow(2).sum() / (2 * len(u))
        return loss

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        all_users, all_items = self._backbone()
        h_i = self._fuse(gather_rows(all_items, items), self._feats(items))
        return (gather_rows(all_users, users) * h_i).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        all_users, all_items = self._backbone()
        e_u, e_i, feats = gather_rows(all_users, users), gather_rows(all_items, items), self._feats(items)
        zeros = [torch.zeros_like(f) for f in feats]
        base = self._fuse(torch.zeros_like(e_i), zeros)
        out = {"id": (e_u, self._fuse(e_i, zeros))}
        for m, name in enumerate(self.modalities):
            alone = [f if n == m else z for n, (f, z) in enumerate(zip(feats, zeros))]
            out[name] = (e_u, self._fuse(torch.zeros_like(e_i), alone) - base)
        return out
