r"""PGL: Mind Individual Information! Principal Graph Learning for Multimedia Recommendation (Yu, Li, Wang, Dong,
Xu & Cui; AAAI 2025; code: demonph10/PGL, shipped in enoche/MMRec ``src/models/pgl.py`` +
``src/configs/model/PGL.yaml``).

What is implemented (paper Sec. 3 with the shipped code's choices; M modalities, ‖ concatenation):

* Modality representations: items f_i^m = normalise(W_m x_i^m + b_m) (``factors_multimod`` wide, the code's
  image_trs / text_trs, L2-normalised rows), users one free embedding u^m per modality (``factors`` wide):
      e_u = u^1 ‖ ... ‖ u^M,   e_i = f_i^1 ‖ ... ‖ f_i^M      (no item ID embedding).
* Frozen item-item graph (as FREEDOM): per modality a binary kNN graph of the raw features (``top_k``, the item
  itself included), D^{-1/2} Ŝ^m D^{-1/2} (every entry 1/k), S = Σ_m α_m Ŝ^m; h_i = (S^L e)_i, L = ``n_layers``.
* Principal graph learning (Sec. 3.2): training propagates on a principal sub-graph A_p of the user-item graph,
  inference on the full Â = D^{-1/2} A D^{-1/2}; LightGCN, K = ``n_ui_layers``, mean readout:
      [ē_u; ē_i] = 1/(K+1) Σ_k A^k [e_u; e_i],   final e*_u = ē_u,  e*_i = ē_i + h_i,  ŷ_ui = e*_u·e*_i.
  ``mode: local`` (default; the code's pre_epoch_processing): every epoch keep ⌊``keep``·|E|⌋ training edges
  drawn without replacement with probability ∝ 1/(√d_u √d_i) and re-normalise the kept graph with its own
  degrees (FREEDOM's degree-sensitive pruning; ``keep`` 0.3 is hard-coded in the code).
  ``mode: global`` (the code's global_subgraph_extraction): the truncated SVD Â ≈ Σ_{r<R} s_r u_r v_r^T with
  R = ``factors`` singular triplets (descending), n = ⌊R/4⌋, A_p = Σ_{r<n} s_r s_{R-n+r} u_r v_r^T (the top
  quarter of the directions, each scaled by the product of its singular value and the matching one of the
  bottom quarter), entries with |A_p| < 1e-3 dropped; fixed for the whole training.
* Objective: L = BPR(e*_u, e*_i, e*_j) + ``l_w`` · [InfoNCE(δ(e*_u), δ'(e*_u)) + InfoNCE(δ(e*_i), δ'(e*_i))] / 2
  over the batch's users and positives, δ, δ' two independent dropouts of rate ``dropout`` (the code's
  dropoutf), InfoNCE with L2-normalised rows, in-batch negatives, τ = ``temp``.  No L2 term (MMRec: weight
  decay 0, no regulariser).

Defaults (MMRec PGL.yaml + overall.yaml): factors = factors_multimod = 64, lr 1e-3 (Adam), lr_sched (0.96, 50),
n_layers (n_mm_layers) 1, n_ui_layers 2, top_k (knn_k) 10, mm_image_weight 0.1, reg_weight 0 (its grid is [0]:
the contrastive term is off), dropout 0.2, mode local.  ``mw`` (FREEDOM's name) gives the α_m explicitly;
empty: ``mm_image_weight`` for the first modality and the rest split evenly (1.0 with one modality).
``lambda_coeff`` and ``weight_size`` are read by nothing in the code and are not exposed.  Initialisation:
Xavier-uniform user embeddings, default nn.Linear (as the code).

Deviations: (1) the code fine-tunes the raw features (``from_pretrained(freeze=False)``); here they are fixed
inputs read through ``self.feature(m)``; (2) the code hard-codes two modalities; here any M ≥ 1; (3) the
sampling of the local sub-graph and the dropouts draw from generators seeded by ``seed`` (and the epoch), the
global sub-graph's SVD (scipy ``svds`` instead of ``sparsesvd``) starts from a seeded vector, and A_p is
assembled in row chunks (never the dense (U+I)² matrix of the code); (4) no kNN cache file, zero feature rows
give zero similarity (no NaNs).

Hooks.  Propagation is linear and column-wise, so each modality's column block is its own branch and the score
splits exactly: ``modality_embeddings`` returns, per modality m, (block m of e*_u, block m of e*_i); there is no
``"id"`` branch (items have no ID embedding).  Features reach the score through the projections
(differentiably, also through S and the user-item graph); S is built from the clean features at construction
and never rebuilt.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, gather_rows
from elliot.recommender.contrastive import info_nce
from elliot.recommender.graph import (bipartite_norm_values, propagate_mean, sample_edges, scipy_to_torch,
                                      symmetric_normalize, ui_edges, ui_subgraph_op, user_item_adjacency)
from elliot.recommender.knn import modality_weights, weighted_knn_graph
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


def principal_subgraph(adj: sp.spmatrix, rank: int, seed: int, threshold: float = 1e-3,
                       chunk_rows: int = 512) -> sp.csr_matrix:
    """PGL's global principal sub-graph of ``adj``: with the ``rank`` largest singular triplets (descending) and
    n = ⌊rank/4⌋, Σ_{r<n} s_r s_{rank-n+r} u_r v_r^T, entries below ``threshold`` in absolute value dropped,
    assembled ``chunk_rows`` rows at a time."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    rank = max(1, min(int(rank), min(adj.shape) - 1))
    v0 = np.random.default_rng(seed).standard_normal(min(adj.shape))
    u, s, vt = svds(adj, k=rank, v0=v0)
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    n = max(1, rank // 4)
    left = u[:, :n] * (s[:n] * s[rank - n:])
    blocks = []
    for start in range(0, adj.shape[0], chunk_rows):
        part = left[start:start + chunk_rows] @ vt[:n]
        part[np.abs(part) < threshold] = 0.0
        blocks.append(sp.csr_matrix(part))
    return sp.vstack(blocks).tocsr().astype(np.float32)


class PGL(EmbeddingScoring, MultimodalRecommender):
    """PGL (Yu et al., AAAI 2025); see the module docstring."""

    name = "PGL"
    params = (
        Param("factors", int, 64, "width of each modality's user embedding (MMRec embedding_size)",
              aliases=("embedding_size",)),
        Param("factors_multimod", int, 64, "width of each projected modality (MMRec feat_embed_dim)",
              aliases=("feat_embed_dim",)),
        Param("lr", float, 1e-3, "Adam learning rate", aliases=("learning_rate",)),
        Param("l_w", float, 0.0, "weight of the two dropout-view InfoNCE terms (MMRec reg_weight; its grid: [0])",
              low=0.0, aliases=("reg_weight",)),
        Param("dropout", float, 0.2, "dropout of the two contrastive views"),
        Param("temp", float, 0.2, "InfoNCE temperature (hard-coded 0.2 in the code)"),
        Param("n_layers", int, 1, "convolutions on the frozen item-item graph", aliases=("n_mm_layers",)),
        Param("n_ui_layers", int, 2, "LightGCN layers on the user-item graph"),
        Param("top_k", int, 10, "neighbours per item in the frozen kNN graphs", aliases=("knn_k",)),
        Param("mm_image_weight", float, 0.1, "α of the first modality's kNN graph when mw is empty", low=0.0,
              high=1.0),
        Param("mw", "list[float]", [], "weights α_m of the modality kNN graphs in `modalities` order (empty: "
              "mm_image_weight for the first, the rest split between the others)"),
        Param("mode", str, "local", "principal sub-graph: local (degree-sensitive sampling each epoch) or global "
              "(truncated SVD)", choices=("local", "global")),
        Param("keep", float, 0.3, "local mode: fraction of the training edges kept each epoch (0.3 in the code)",
              low=0.0, high=1.0, low_inclusive=False),
        Param("lr_sched", "list[float]", [0.96, 50.0], "(factor, step): lr x factor^(epoch / step) (MMRec "
              "learning_rate_scheduler); empty: constant", lengths=(0, 2)),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]) -> Optional[str]:
        k, km = int(params.get("factors", 64)), int(params.get("factors_multimod", 64))
        if k != km:
            return f"the user embeddings meet the projected features in one inner product: factors ({k}) must " \
                   f"equal factors_multimod ({km})"
        if float(params.get("temp", 0.2)) <= 0:
            return "temp must be > 0"
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, n_mod = int(self.factors), len(self.modalities)
        users = torch.empty(n_mod, self.n_users, k)
        for block in users:  # one Xavier-initialised table per modality, as the code's user_image / user_text
            nn.init.xavier_uniform_(block)
        self.user_emb = nn.Parameter(torch.cat(list(users), 1))  # (U, M·k) = u^1 ‖ ... ‖ u^M
        self.proj = nn.ModuleList([nn.Linear(self.feature_dim(m), k) for m in self.modalities])
        # ---- graphs (plain attributes: not parameters, not in the state dict) ----
        norm = symmetric_normalize(user_item_adjacency(dataset.train))
        self.norm_adj = SparseOp(scipy_to_torch(norm, self.device), symmetric=True)
        self.item_adj = self._frozen_item_graph()
        self._edges = ui_edges(dataset.train)
        self._edge_probs = bipartite_norm_values(self._edges, self.n_users, self.n_items)
        seed = int(self.hp.get("seed", 42))
        self._global: Optional[SparseOp] = None
        if self.mode == "global":
            self._global = SparseOp(scipy_to_torch(principal_subgraph(norm, k, seed), self.device))
        self._train_adj: Optional[SparseOp] = None
        self.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(seed)

    # ---- graphs -------------------------------------------------------------------------------
    def _frozen_item_graph(self) -> SparseOp:
        """S = Σ_m α_m D^{-1/2} kNN_m D^{-1/2} from the features present at construction."""
        weights = modality_weights(self.mw, self.modalities, "PGL", first=float(self.mm_image_weight))
        self.hp["mw"] = weights
        return SparseOp(weighted_knn_graph([self.feature(m) for m in self.modalities], weights, int(self.top_k),
                                           self.n_items).to(self.device))

    def on_epoch_start(self, epoch: int) -> None:
        """The epoch's principal sub-graph: a fresh degree-sensitive sample (local) or the SVD one (global)."""
        if self._global is not None:
            self._train_adj = self._global
            return
        n_keep = max(1, int(self._edges.shape[1] * float(self.keep)))
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        keep = sample_edges(self._edges.shape[1], n_keep, gen, probs=self._edge_probs)
        self._train_adj = ui_subgraph_op(self._edges[:, keep], self.n_users, self.n_items, self.device)

    # ---- representations ------------------------------------------------------------------------
    def _items(self) -> Tensor:
        """e_i = f^1 ‖ ... ‖ f^M of all items, from the current features."""
        return torch.cat([F.normalize(proj(self.feature(m)), dim=1) for m, proj in zip(self.modalities, self.proj)], 1)

    def _final(self, adj: SparseOp) -> Tuple[Tensor, Tensor]:
        """(e*_u of all users, e*_i of all items) propagated over ``adj``."""
        items = self._items()
        h = items
        for _ in range(int(self.n_layers)):
            h = self.item_adj @ h
        total = propagate_mean(adj, torch.cat([self.user_emb, items]), int(self.n_ui_layers))
        return total[: self.n_users], total[self.n_users:] + h

    def _dropout(self, x: Tensor) -> Tensor:
        p = float(self.dropout)
        if p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self._gen, device=x.device) >= p
        return x * keep / (1.0 - p)

    def _view_nce(self, x: Tensor) -> Tensor:
        """InfoNCE between two independent dropout views of the rows ``x`` (normalised, in-batch negatives)."""
        return info_nce(F.normalize(self._dropout(x), dim=1), F.normalize(self._dropout(x), dim=1), float(self.temp))

    # ---- training / scoring ---------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        if self._train_adj is None:
            self.on_epoch_start(0)
        users_all, items_all = self._final(self._train_adj)
        n = len(batch.users)
        u = gather_rows(users_all, batch.users)
        i, j = gather_rows(items_all, torch.cat([batch.pos_items, batch.neg_items])).split(n)
        loss = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        if self.l_w:
            loss = loss + float(self.l_w) * (self._view_nce(u) + self._view_nce(i)) / 2
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec overall.yaml)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self._final(self.norm_adj)

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        users_all, items_all = self._final(self.norm_adj)
        return (gather_rows(users_all, users) * gather_rows(items_all, items)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        users_all, items_all = self._final(self.norm_adj)
        k = int(self.factors)
        eu, ei = gather_rows(users_all, users), gather_rows(items_all, items)
        return {m: (eu[:, b * k:(b + 1) * k], ei[:, b * k:(b + 1) * k]) for b, m in enumerate(self.modalities)}
