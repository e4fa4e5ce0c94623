"""DualGNN: Dual Graph Neural Network for Multimedia Recommendation (Wang, Wei, Yin, Wang, Li, Nie; IEEE TMM
2021; code: wqf321/dualgnn, ported to MMRec as ``models/dualgnn.py`` with ``preprocessing/dualgnn-gen-u-u-matrix.py``).

What is implemented (the paper's model, as MMRec's code computes it), for modalities m = 1..M:

* Single-modal representation learning on the user-item graph: item features are mapped by a
  two-layer MLP  x̃_i^m = W2_m LeakyReLU(W1_m x_i^m + c1_m) + c2_m  (d_m -> 4·``factors`` -> ``factors``),
  users have a free preference vector p_u^m; the rows are L2-normalised, X^m = normalize([P^m; X̃^m]),
  and propagated twice over Â (``aggr_mode`` add: D^{-1/2} A D^{-1/2}; mean: D^{-1} A):
      X̂^m = X^m + Â X^m + Â² X^m.
* Multi-modal fusion (``construction = weighted_sum``): u_u = Σ_m a_um X̂^m_u with per-user
  trainable weights a_u (initialised to a softmax over modalities, as the code), i_i = Σ_m X̂^m_i.
* User co-occurrence graph: each user's neighbours are the users sharing the most training
  items with it (counts c_uv = |R_u ∩ R_v|, BUILT HERE from the training split: MMRec reads it from a
  preprocessed ``.npy``; :func:`~elliot.recommender.knn.top_cooccurring_users`); every epoch the first ``knn_k``
  of them are taken (users with fewer get random repeats of their own neighbours,
  :func:`~elliot.recommender.knn.sample_user_graph`; users with none get no message), weighted by softmax(c_uv):
      h_u = u_u + Σ_v w_uv u_v.
* Score ŷ_ui = h_u·i_i; loss L = -mean log₂ σ(ŷ_ui - ŷ_uj) + ``l_w`` [Σ_m mean(P^m_batch²) + mean(A²)]
  (the code's log2 BPR and its mean-square regulariser of the batch users' preferences and of A).

Defaults: the authors' ``parse.py`` (lr 1e-4, weight_decay 0.1 = l_w, 40 sampled co-occurring users,
dim_latent 64, aggr_mode add, user_aggr_mode softmax); MMRec's DualGNN.yaml grids cover lr and reg_weight in
{1e-1, ..., 1e-5}.  Initialisation as the code: Xavier-normal P^m, default nn.Linear MLPs.  MMRec's names
(``reg_weight``, ``embedding_size``) are accepted.

Deviations from MMRec's code: (1) MMRec's ``representation += t_rep`` adds in place into v_rep, so its
"visual" user slot is X̂^v + X̂^t; here each slot holds its own modality (the paper's weighted sum); (2) MMRec keeps
a weight_i that only enters the regulariser (nowhere else): dropped; its drop-node edge lists are built but
never used by the GCN: not built; (3) the padding repeats (MMRec's urn over the slots filled so far)
come from a generator seeded by (``seed``, epoch) instead of numpy's global RNG; ties of c_uv are broken by
the lower user index; (4) scores are computed from the current weights (MMRec
reuses the embeddings of the last training batch); (5) features are fixed inputs read through
``self.feature(m)``; modalities are generic (MMRec: image and text).

Hooks.  h_u is linear in the modality terms, h_u = Σ_m [(I + G)(a_{·m} ⊙ X̂^m_U)]_u (G the epoch's user
graph), so ``modality_embeddings`` gives, per modality m, (e_u^m = [(I + G)(a_{·m} ⊙ X̂^m_U)]_u, X̂^m_i):
the within-modality parts.  ŷ_ui = Σ_m Σ_m' e_u^m·X̂^m'_i also has cross-modality terms, so the branch
scores do NOT sum to the score.  There is no ID branch (the users' P^m are per modality).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import TripletBatch, gather_rows
from elliot.recommender.graph import scipy_to_torch, symmetric_normalize, user_item_adjacency
from elliot.recommender.knn import sample_user_graph, top_cooccurring_users
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp

LN2 = float(np.log(2.0))


class DualGNN(MultimodalRecommender):
    """DualGNN (Wang et al., IEEE TMM 2021); see the module docstring."""

    name = "DualGNN"
    params = (
        Param("factors", int, 64, "size of the preferences / projected features (dim_latent)",
              aliases=("embedding_size", "dim_latent")),
        Param("lr", float, 1e-4, "Adam learning rate"),
        Param("l_w", float, 0.1, "weight of the mean-square regulariser (weight_decay, reg_weight)",
              aliases=("reg_weight", "weight_decay")),
        Param("knn_k", int, 40, "co-occurring users sampled per user each epoch", aliases=("sampling",)),
        Param("aggr_mode", str, "add", "user-item aggregation: add (symmetric normalisation) or mean",
              choices=("add", "mean")),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, m = int(self.factors), len(self.modalities)
        self.preference = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, k))) for _ in self.modalities])
        self.mlp = nn.ModuleList([nn.Sequential(nn.Linear(self.feature_dim(mod), 4 * k), nn.LeakyReLU(),
                                                nn.Linear(4 * k, k)) for mod in self.modalities])
        self.user_weight = nn.Parameter(F.softmax(nn.init.xavier_normal_(torch.empty(self.n_users, m, 1)), 1)
                                        .squeeze(2))  # a_u, (U, M)
        adj = user_item_adjacency(dataset.train)
        if self.aggr_mode == "add":
            adj = symmetric_normalize(adj)
        else:
            adj = (sp.diags(1.0 / np.maximum(np.asarray(adj.sum(1)).ravel(), 1)) @ adj).tocsr()
        self.adj = SparseOp(scipy_to_torch(adj, self.device), symmetric=self.aggr_mode == "add")
        nbr, cnt, found = top_cooccurring_users(dataset.train, int(self.knn_k))
        self._nbr, self._cnt, self._found = torch.from_numpy(nbr), torch.from_numpy(cnt), torch.from_numpy(found)
        self._user_graph: Optional[SparseOp] = None
        self._cache: Optional[Tuple[Tensor, Tensor]] = None
        self.to(self.device)

    # ---- user co-occurrence graph -------------------------------------------------------------------
    def user_graph(self, epoch: int) -> SparseOp:
        """G of the epoch: row u = softmax-weighted first knn_k co-occurring users (random repeats pad)."""
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        return SparseOp(sample_user_graph(self._nbr, self._cnt, self._found, gen).to(self.device))

    def on_epoch_start(self, epoch: int) -> None:
        self._user_graph = self.user_graph(epoch)

    # ---- representations ----------------------------------------------------------------------------
    def _branches(self) -> List[Tensor]:
        """X̂^m = X + ÂX + Â²X with X = normalize([P^m; MLP_m(x^m)]) for every modality, (U+I, factors)."""
        out = []
        for p, mlp, m in zip(self.preference, self.mlp, self.modalities):
            x = F.normalize(torch.cat([p, mlp(self.feature(m))]), dim=1)
            h = self.adj @ x
            out.append(x + h + self.adj @ h)
        return out

    def _user_parts(self, branches: List[Tensor]) -> List[Tensor]:
        """(I + G)(a_{·m} ⊙ X̂^m_U) per modality: the user side's modality terms (they sum to h_u)."""
        if self._user_graph is None:
            self.on_epoch_start(0)
        parts = []
        for b, xm in enumerate(branches):
            weighted = self.user_weight[:, b:b + 1] * xm[: self.n_users]
            parts.append(weighted + self._user_graph @ weighted)
        return parts

    def _final(self) -> Tuple[Tensor, Tensor]:
        branches = self._branches()
        return sum(self._user_parts(branches)), sum(x[self.n_users:] for x in branches)

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        users_all, items_all = self._final()
        n = len(batch.users)
        u = gather_rows(users_all, batch.users)
        i, j = gather_rows(items_all, torch.cat([batch.pos_items, batch.neg_items])).split(n)
        bpr = F.softplus((u * j).sum(-1) - (u * i).sum(-1)).mean() / LN2  # -mean log2 σ(ŷ_ui - ŷ_uj)
        reg = sum(gather_rows(p, batch.users).pow(2).mean() for p in self.preference) + self.user_weight.pow(2).mean()
        return bpr + float(self.l_w) * reg

    # ---- scoring ------------------------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        self._cache = self._final()

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        users_all, items_all = self._cache if self._cache is not None else self._final()
        return gather_rows(users_all, users) @ items_all.T

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        users_all, items_all = self._final()
        return (gather_rows(users_all, users) * gather_rows(items_all, items)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        branches = self._branches()
        parts = self._user_parts(branches)
        return {m: (gather_rows(part, users), gather_rows(xm[self.n_users:], items))
                for m, part, xm in zip(self.modalities, parts, branches)}
