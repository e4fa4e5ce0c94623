"""FREEDOM: A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal Recommendation
(Zhou & Shen, ACM MM 2023; arXiv 2211.06924; code: enoche/FREEDOM, enoche/MMRec ``models/freedom.py``).

What is implemented (paper Sec. 3, in the order of the paper):

* Frozen item-item graph (Sec. 3.1), built ONCE at construction from the modality features:
  cosine similarity S^m_ij = x_i^m·x_j^m / (|x_i^m||x_j^m|); kNN sparsification to a binary graph
  keeping the ``top_k`` most similar items of each row (the item itself included, as the code does);
  normalisation Ŝ^m = D^{-1/2} Ŝ^m D^{-1/2} (D = row degrees, so every entry is 1/k as in MMRec);
  weighted sum over modalities S = Σ_m α_m Ŝ^m.  Built in row chunks by :func:`knn_graph`
  (memory O(items x top_k)).
* Degree-sensitive edge pruning of the user-item graph (Sec. 3.2), re-drawn every epoch in
  :meth:`on_epoch_start`: keep ⌊(1 - drop)·|E|⌋ edges sampled WITHOUT replacement with probability
  p_(u,i) ∝ 1/(√d_u √d_i) (degrees of the full training graph), then symmetrically re-normalise the
  kept graph with its own degrees (MMRec ``pre_epoch_processing`` / ``_normalize_adj_m``).
* Graph convolutions (Sec. 3.3): on the item-item graph, of the item ID embeddings,
  h̃_i = (S^L e)_i with L = ``n_layers``; on the (pruned while training, full at inference) user-item
  graph, LightGCN with K = ``n_ui_layers`` layers and mean readout ĥ = 1/(K+1) Σ_k Â^k [e_u; e_i].
  Final representations h_u = ĥ_u, h_i = ĥ_i + h̃_i; score ŷ_ui = h_u·h_i.
* Objective (Sec. 3.4): modality projections h_i^m = W_m x_i^m + b_m (``factors_multimod`` wide, MMRec's
  image_trs / text_trs) and
      L = BPR(h_u, h_i, h_j) + λ Σ_m BPR(h_u, h_i^m, h_j^m),   BPR = mean -ln σ(s_ui - s_uj),
  λ = ``l_w`` (MMRec ``reg_weight``).  No L2 term: MMRec trains FREEDOM with weight_decay 0 and no
  embedding regulariser.

Defaults (MMRec ``configs/model/FREEDOM.yaml`` + ``overall.yaml``): factors = factors_multimod = 64,
lr 1e-3 (Adam), n_layers 1 (``n_mm_layers``), n_ui_layers 2, top_k 10 (``knn_k``), drop 0.8 (MMRec's
``dropout``; its grid is {0.8, 0.9}), l_w 1e-4 (MMRec tunes ``reg_weight`` in {0, 1e-5, 1e-4, 1e-3} and
ships no single value).  ``mw`` (Elliot / Formal-MultiMod-Rec's name) are the α_m; empty means MMRec's
``mm_image_weight`` = 0.1 for the first modality (visual in MMRec) and the remaining 0.9 split evenly
between the others (1.0 when there is one modality).  ``lambda_coeff`` of the MMRec config is not used
by FREEDOM's code and is not exposed.  Initialisation: Xavier-uniform ID embeddings, default nn.Linear
projections (as MMRec).

Deviations from MMRec's code: (1) MMRec fine-tunes the raw features (``Embedding.from_pretrained(...,
freeze=False)``); here features are fixed inputs read through ``self.feature(m)`` (the benchmark's
attack surface) and only W_m, b_m are trained, unless ``fine_tune_features: true`` (MMRec's behaviour; the
kNN graph stays the one built from the raw features at construction, as in MMRec); (2) the kNN graph uses ``F.normalize`` (zero rows do not
produce NaNs); (3) pruning randomness comes from a generator seeded by ``seed`` and the epoch, so runs
are reproducible; (4) the projections are computed only for the batch items (same values);
(5) ``fuse_modalities`` (default false = MMRec) is an optional variant, see below.  The MMRec
trainer's LR scheduler [1.0, 50] is constant, so none is needed.

What is fused, and the hooks.  At inference MMRec scores with the ID path only: ŷ_ui = h_u·h_i; the
features influence it only through the FROZEN item-item graph S (built from the clean features at
construction) and through training (the λ-weighted modality BPR terms shape h_u).  Therefore:

* ``modality_embeddings`` returns ``"id"``: (h_u, h_i), whose inner product IS the fused score, and for
  every modality m: (h_u, h_i^m = W_m x_i^m + b_m), the auxiliary per-modality score of the training
  objective (computed from the current, possibly replaced, features, differentiable w.r.t. them).
  These modality scores are NOT part of the default fused score.
* An attack on raw features reaches only the projection path h_i^m: it changes the modality branch
  scores (and, when training on attacked features, the modality loss), never the frozen graph S, and
  with the default it does not change ``score``/``score_pairs`` at all (their gradient w.r.t. the
  features is absent).
* With ``fuse_modalities: true`` the inference score becomes ŷ_ui = h_u·(h_i + Σ_m h_i^m), i.e. exactly
  the sum of all branch scores (id + modalities), and attacks on features reach the fused score
  through the projections (not through S).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, unique_index
from elliot.recommender.graph import (bipartite_norm_values, normalized_ui_graph, propagate_sum, sample_edges,
                                      ui_edges, ui_subgraph_op)
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.knn import modality_weights, weighted_knn_graph
from elliot.recommender.sparse import SparseOp


class FREEDOM(EmbeddingScoring, MultimodalRecommender):
    """FREEDOM (Zhou & Shen, ACM MM 2023); see the module docstring."""

    name = "FREEDOM"
    fine_tunable_features = True  # every use of the features is self.feature(m) in the forward
    params = (
        Param("factors", int, 64, "size of user/item ID embeddings (MMRec embedding_size)",
              aliases=("embedding_size",)),
        Param("factors_multimod", int, 64, "size of the projected modality features (MMRec feat_embed_dim)",
              aliases=("feat_embed_dim", "multimod_factors")),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 1e-4, "λ, weight of the per-modality BPR terms (MMRec reg_weight)",
              aliases=("reg_weight",)),
        Param("n_layers", int, 1, "convolutions on the frozen item-item graph (MMRec n_mm_layers)",
              aliases=("n_mm_layers",)),
        Param("n_ui_layers", int, 2, "LightGCN layers on the user-item graph"),
        Param("top_k", int, 10, "neighbours per item in the frozen kNN graph (MMRec knn_k)",
              aliases=("knn_k",)),
        Param("mw", "list[float]", [], "weights α_m of the modality kNN graphs, in `modalities` order "
              "(empty: 0.1 for the first, 0.9 split between the others - MMRec mm_image_weight)"),
        Param("drop", float, 0.8, "fraction of user-item edges pruned each epoch (MMRec dropout)",
              aliases=("dropout",)),
        Param("fuse_modalities", bool, False, "also add the modality scores h_u·h_i^m at inference "
              "(not in the paper; makes the score feature-dependent)"),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]):
        k, km = int(params.get("factors", 64)), int(params.get("factors_multimod", 64))
        if params.get("fuse_modalities") and k != km:
            return f"fuse_modalities needs factors == factors_multimod ({k} != {km})"
        if float(params.get("l_w", 1e-4)) > 0 and k != km:  # the modality BPR term: user IDs vs projected features
            return (f"l_w > 0 scores the {k}-d user embeddings against the {km}-d projected features, so factors "
                    "must equal factors_multimod (or set l_w: 0)")
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, km = int(self.factors), int(self.factors_multimod)
        # user and item ID embeddings in one table [E_u; E_i] (saves a concatenation per batch), each block
        # Xavier-uniform initialised on its own shape as MMRec's two nn.Embedding tables
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))
        self.proj = nn.ModuleList([nn.Linear(self.feature_dim(m), km) for m in self.modalities])
        # ---- graphs (plain attributes: not parameters, not in the state dict) ----
        self.norm_adj = SparseOp(normalized_ui_graph(dataset.train, self.device), symmetric=True)
        self.item_adj = self._frozen_item_graph()
        self._edges = ui_edges(dataset.train)  # CPU, (2, |E|)
        self._edge_probs = bipartite_norm_values(self._edges, self.n_users, self.n_items)  # 1/(√d_u √d_i), full graph
        self._masked_adj: Optional[SparseOp] = None
        self.to(self.device)

    # ---- graphs -------------------------------------------------------------------------------
    def _frozen_item_graph(self) -> SparseOp:
        """S = Σ_m α_m D^{-1/2} kNN_m D^{-1/2}, built once from the features present at construction."""
        weights = modality_weights(self.mw, self.modalities, "FREEDOM")
        self.hp["mw"] = weights
        return SparseOp(weighted_knn_graph([self.feature(m) for m in self.modalities], weights, int(self.top_k),
                                           self.n_items).to(self.device))

    def _pruned_graph(self, epoch: int) -> SparseOp:
        """Degree-sensitive edge pruning (Sec. 3.2): the epoch's normalised user-item graph."""
        if self.drop <= 0:
            return self.norm_adj
        n_keep = max(1, int(self._edges.shape[1] * (1.0 - float(self.drop))))
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        keep = sample_edges(self._edges.shape[1], n_keep, gen, probs=self._edge_probs)
        return ui_subgraph_op(self._edges[:, keep], self.n_users, self.n_items, self.device)

    def on_epoch_start(self, epoch: int) -> None:
        self._masked_adj = self._pruned_graph(epoch)

    # ---- representations ------------------------------------------------------------------------
    def _propagate(self, adj: SparseOp) -> Tuple[Tensor, Tensor]:
        """(Σ_k Â^k [E_u; E_i]  (users + items, un-averaged),  h̃ = S^L E_i) over the user-item graph ``adj``;
        h_u / h_i are rows of  total / (K+1)  (+ h̃ for items), see :meth:`_rows`."""
        h = self.embeddings[self.n_users:]
        for _ in range(int(self.n_layers)):
            h = self.item_adj @ h
        return propagate_sum(adj, self.embeddings, int(self.n_ui_layers)), h

    def _rows(self, total: Tensor, h: Tensor, users: Optional[Tensor], items: Optional[Tensor]):
        """h_u for ``users`` and h_i = ĥ_i + h̃_i for ``items`` (all when None); only those rows are averaged."""
        scale = 1.0 / (int(self.n_ui_layers) + 1)
        u_all, i_all = total[: self.n_users], total[self.n_users:]
        hu = (u_all if users is None else u_all.index_select(0, users)) * scale
        hi = (i_all * scale + h) if items is None else i_all.index_select(0, items) * scale + h.index_select(0, items)
        return hu, hi

    def _projected(self, items: Optional[Tensor] = None) -> List[Tensor]:
        """h_i^m = W_m x_i^m + b_m for ``items`` (all items when None), from the current features."""
        return [lin(self.feature(m) if items is None else self.feature(m).index_select(0, items))
                for m, lin in zip(self.modalities, self.proj)]

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        if self._masked_adj is None:
            self.on_epoch_start(0)
        n = len(batch.users)
        both = torch.cat([batch.pos_items, batch.neg_items])
        u, items = self._rows(*self._propagate(self._masked_adj), batch.users, both)
        u2 = u.repeat(2, 1)
        scores = (u2 * items).sum(-1)
        loss = bpr_loss(scores[:n], scores[n:])
        if self.l_w:
            uniq, inv = unique_index(both, self.n_items)
            modal = 0.0
            for p in self._projected(uniq):
                s = (u2 * p.index_select(0, inv)).sum(-1)
                modal = modal + bpr_loss(s[:n], s[n:])
            loss = loss + self.l_w * modal
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec); the fused kernel (same maths, one pass per tensor)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    # ---- scoring ------------------------------------------------------------------------------------
    def _final(self) -> Tuple[Tensor, Tensor]:
        """(h_u of all users, scoring vectors of all items: h_i (+ Σ_m h_i^m when fused))."""
        users_all, item_vec = self._rows(*self._propagate(self.norm_adj), None, None)
        if self.fuse_modalities:
            item_vec = item_vec + sum(self._projected())
        return users_all, item_vec

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self._final()

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        hu, hi = self._rows(*self._propagate(self.norm_adj), users, items)
        if self.fuse_modalities:
            hi = hi + sum(self._projected(items))
        return (hu * hi).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        hu, hi = self._rows(*self._propagate(self.norm_adj), users, items)
        out = {"id": (hu, hi)}
        for m, p in zip(self.modalities, self._projected(items)):
            out[m] = (hu, p)
        return out
