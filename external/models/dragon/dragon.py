r"""DRAGON: Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal Recommendation
(Zhou, Zhou, Zeng & Shen; ECAI 2023; arXiv 2301.12097; code: hongyurain/DRAGON, shipped in enoche/MMRec
``src/models/dragon.py`` + ``src/configs/model/DRAGON.yaml``).

What is implemented (paper Sec. 3, with the shipped code's choices; m runs over the M modalities, d = ``factors``):

* Heterogeneous (user-item) graph per modality (Sec. 3.1): user preference vectors P^m (U x d, learned) and item
  vectors from the raw features by a two-layer MLP, t_i^m = W_2^m LeakyReLU(W_1^m x_i^m + b_1^m) + b_2^m
  (d_m -> 4d -> d); rows L2-normalised, x^m = normalize([P^m; T^m]); K = ``n_layers`` convolutions on
  Â = D^{-1/2} A D^{-1/2} (no self-loops) summed with the input:  x̂^m = Σ_{k=0..K} Â^k x^m  (the code: x + h + h_1).
* Fusion ("cat", the code's ``construction``): learned per-user modality weights w_u (U x M, initialised as a
  softmax over M of Xavier-normal values);  u_u = [w_u1 x̂_u^1 ‖ ... ‖ w_uM x̂_u^M],  v_i = [x̂_i^1 ‖ ... ‖ x̂_i^M]
  (M·d wide).
* Homogeneous graphs (Sec. 3.2):
  - item-item: per modality the binary kNN graph (``top_k`` most cosine-similar items, the item itself included)
    of the raw features, D^{-1/2} S^m D^{-1/2}, mixed S = Σ_m α_m S^m (``mw``; MMRec mm_image_weight 0.1 for the
    first modality, the rest to the others), built ONCE at construction (FREEDOM's frozen graph);
    v*_i = v_i + (S^{L} v)_i, L = ``n_mm_layers``;
  - user-user co-occurrence graph: c_uv = |N_u ∩ N_v| (u ≠ v) from the TRAINING matrix (C = R Rᵀ, built here,
    vectorised, :func:`~elliot.recommender.knn.top_cooccurring_users` - the code reads an .npy made by
    preprocessing/dualgnn-gen-u-u-matrix.py); each user keeps its
    ``user_k`` (40) most co-occurring users (ties: lower index first); a user with fewer than ``user_k`` but at
    least one neighbour is padded, every epoch, by drawing uniformly from the slots already filled (the code's
    ``topk_sample``: an urn that includes earlier copies); weights β_uv = softmax over the user's ``user_k``
    slots of the raw counts (duplicated slots counted each time); users without co-occurrence get none.
    u*_u = u_u + Σ_v β_uv u_v.
* Score ŷ_ui = u*_u · v*_i.  Objective (the code's ``calculate_loss``):
      L = -mean log2 σ(ŷ_ui - ŷ_uj) + ``l_w`` [Σ_m mean((P^m_u)²) over the batch's users + mean(w²) over all users].

Defaults: MMRec ``DRAGON.yaml`` (embedding_size 64, n_mm_layers 1, n_layers 2, knn_k 10, mm_image_weight 0.1,
aggr_mode add) and the authors' README for Baby/Sports (lr 1e-4, reg_weight 1e-3; MMRec grids lr over
{1e-1, ..., 1e-5} and reg_weight over {1e-1, ..., 1e-5} without a single value); user_k 40 (the code's self.k).
Adam, no weight decay.  Initialisation as the code: Xavier-normal P^m, default nn.Linear MLPs.

Deviations from the shipped code: (1) the user-user graph is computed from the training matrix at
construction, and its random padding uses a generator seeded by (``seed``, epoch) (the code: numpy's global
RNG); (2) at evaluation the code ranks with the embeddings of the LAST TRAINING BATCH's forward (before the
last optimizer step); here scores come from the current parameters; (3) the code's dead code is not reproduced
(item-dropped edge lists computed but never used, image_trs / text_trs / MLP_user / weight_i unused in "cat");
(4) modalities are generic (the code: image and text); (5) zero feature rows get zero similarity (no NaNs).

Hooks, and what an attack perturbs.  The score is a sum over the M blocks of the concatenation:
ŷ_ui = Σ_m u*_u[m] · v*_i[m], block m depending on modality m's features only.  ``modality_embeddings``
returns, per modality, (u*_u[m], v*_i[m]) (d-wide), and no ``"id"`` branch (DRAGON has no item ID embedding;
the user vectors P^m belong to their modality): the branch scores sum EXACTLY to ``score_pairs``.  The raw
features (current, possibly replaced) reach the score through the item MLPs, differentiably, for the item, its
neighbours on S and, through Â and the user graph, the users.  The item-item graph S is built from the clean
features at construction and is NEVER rebuilt (also not under attack); the user-user graph depends on the
interactions only.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, gather_rows
from elliot.recommender.graph import propagate_sum, ui_propagation_op
from elliot.recommender.knn import modality_weights, sample_user_graph, top_cooccurring_users, weighted_knn_graph
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


class DRAGON(EmbeddingScoring, MultimodalRecommender):
    """DRAGON (Zhou et al., ECAI 2023); see the module docstring."""

    name = "DRAGON"
    params = (
        Param("factors", int, 64, "width d of every modality block (MMRec embedding_size / dim_latent)",
              aliases=("embedding_size",)),
        Param("lr", float, 1e-4, "Adam learning rate (authors' README: 1e-4)"),
        Param("l_w", float, 1e-3, "weight of the preference / modality-weight regulariser (reg_weight)",
              aliases=("reg_weight",)),
        Param("n_layers", int, 2, "convolutions on the user-item graph per modality (the code: two)"),
        Param("n_mm_layers", int, 1, "convolutions on the item-item graph"),
        Param("top_k", int, 10, "neighbours per item in the kNN graphs (MMRec knn_k)", aliases=("knn_k",)),
        Param("mw", "list[float]", [], "weights α_m of the modality kNN graphs, in `modalities` order "
              "(empty: 0.1 for the first, 0.9 split between the others - MMRec mm_image_weight)"),
        Param("user_k", int, 40, "co-occurring users kept per user (the code's self.k)", low=1),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        d, n_mod = int(self.factors), len(self.modalities)
        self.preference = nn.ParameterList([nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
                                            for _ in self.modalities])
        self.mlp = nn.ModuleList([nn.Sequential(nn.Linear(self.feature_dim(m), 4 * d), nn.LeakyReLU(),
                                                nn.Linear(4 * d, d)) for m in self.modalities])
        w = nn.init.xavier_normal_(torch.empty(self.n_users, n_mod, 1))
        self.weight_u = nn.Parameter(torch.softmax(w, 1).squeeze(2))
        # ---- graphs (plain attributes: not parameters, not in the state dict) ----
        self.adj = ui_propagation_op(dataset.train, self.device)
        self.item_adj = self._item_graph()
        nbr, counts, n = top_cooccurring_users(dataset.train, int(self.user_k))
        self._nbr, self._counts, self._n = torch.from_numpy(nbr), torch.from_numpy(counts), torch.from_numpy(n)
        self._user_adj: Optional[SparseOp] = None
        self.to(self.device)

    # ---- graphs -------------------------------------------------------------------------------
    def _item_graph(self) -> SparseOp:
        """S = Σ_m α_m D^{-1/2} kNN_m D^{-1/2} from the features present at construction."""
        weights = modality_weights(self.mw, self.modalities, "DRAGON")
        self.hp["mw"] = weights
        return SparseOp(weighted_knn_graph([self.feature(m) for m in self.modalities], weights, int(self.top_k),
                                           self.n_items).to(self.device))

    def on_epoch_start(self, epoch: int) -> None:
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        self._user_adj = SparseOp(sample_user_graph(self._nbr, self._counts, self._n, gen).to(self.device))

    # ---- representations ------------------------------------------------------------------------
    def _tables(self) -> Tuple[Tensor, Tensor]:
        """(u* of all users, v* of all items), M·d wide, block m = modality m."""
        if self._user_adj is None:
            self.on_epoch_start(0)
        users, items = [], []
        for k, (m, pref, mlp) in enumerate(zip(self.modalities, self.preference, self.mlp)):
            x = F.normalize(torch.cat([pref, mlp(self.feature(m))]))
            h = propagate_sum(self.adj, x, int(self.n_layers))
            users.append(self.weight_u[:, k: k + 1] * h[: self.n_users])
            items.append(h[self.n_users:])
        u, v = torch.cat(users, 1), torch.cat(items, 1)
        h = v
        for _ in range(int(self.n_mm_layers)):
            h = self.item_adj @ h
        return u + self._user_adj @ u, v + h

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self._tables()

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        u_all, v_all = self._tables()
        u = gather_rows(u_all, batch.users)
        pos, neg = gather_rows(v_all, batch.pos_items), gather_rows(v_all, batch.neg_items)
        loss = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1)) / math.log(2.0)  # -mean log2 σ(Δ)
        if self.l_w:
            reg = sum(gather_rows(p, batch.users).pow(2).mean() for p in self.preference)
            loss = loss + float(self.l_w) * (reg + self.weight_u.pow(2).mean())
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec overall.yaml)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        u_all, v_all = self._tables()
        return (gather_rows(u_all, users) * gather_rows(v_all, items)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        u_all, v_all = self._tables()
        u, v, d = gather_rows(u_all, users), gather_rows(v_all, items), int(self.factors)
        return {m: (u[:, k * d: (k + 1) * d], v[:, k * d: (k + 1) * d]) for k, m in enumerate(self.modalities)}
