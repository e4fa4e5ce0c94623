"""Classic collaborative-filtering baselines: MostPop, BPRMF, LightGCN."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, Recommender, TripletBatch, bpr_loss, l2_reg
from elliot.recommender.graph import propagate_mean, propagate_sum, ui_propagation_op


class MostPop(Recommender):
    """Recommends the items with the most training interactions to everyone (ties broken by index)."""

    name = "MostPop"
    trainable = False

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.register_buffer("popularity", torch.zeros(dataset.n_items, device=self.device))

    def fit(self, dataset: Dataset) -> None:
        pop = dataset.item_popularity()
        # tiny decreasing offset makes ties deterministic (lower index first)
        pop = pop + (1.0 - np.arange(dataset.n_items) / max(dataset.n_items, 1)) * 1e-3
        self.popularity.copy_(torch.from_numpy(pop.astype(np.float32)))

    def score(self, users: Tensor) -> Tensor:
        return self.popularity.unsqueeze(0).expand(len(users), -1)


ELLIOT_BPRMF_REASON = ("Elliot's numpy BPRMF regularises users, positive and negative items separately; this BPRMF (a torch model, like the forks' external.BPRMF) has l_w for every embedding and l_b for the item biases")


class BPRMF(Recommender):
    """Matrix factorisation trained with BPR (Rendle et al., UAI 2009).

    s(u, i) = b_i + p_u · q_i;  L = -mean log σ(s(u,i) - s(u,j))
    + l_w (||p_u||² + ||q_i||² + ||q_j||²) / 2B + l_b (b_i² + b_j²) / 2B, as in Elliot's BPRMF.

    ``sparse_grad: true`` makes the gradients row-sparse and the optimiser lazy Adam
    (``torch.optim.SparseAdam``): a step reads and writes only the rows of the batch, so its cost no
    longer grows with the number of users and items.  Dense Adam (the default, as Elliot and MMRec)
    updates every row on every step - its moments keep moving rows absent from the batch - which costs
    (users + items) x factors per step and makes an epoch grow quadratically with the data when the
    catalogue grows with it (``docs/performance.md``, scaling).  The two optimisers give different
    (both valid) trajectories.
    """

    name = "BPRMF"
    refused_params = {k: ELLIOT_BPRMF_REASON for k in (
        "bias_regularization", "user_regularization", "positive_item_regularization", "negative_item_regularization",
        "update_negative_item_factors", "update_users", "update_items", "update_bias")}
    params = (
        Param("factors", int, 64, "embedding size"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 1e-4, "L2 weight of the embeddings"),
        Param("l_b", float, 1e-4, "L2 weight of the item biases"),
        Param("sparse_grad", bool, False, "row-sparse gradients + lazy Adam (SparseAdam): per-step cost "
              "independent of the catalogue size, for large data"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.sparse_grad = sparse = bool(self.hp.get("sparse_grad", False))
        self.user_emb = nn.Embedding(self.n_users, self.factors, sparse=sparse)
        self.item_emb = nn.Embedding(self.n_items, self.factors, sparse=sparse)
        self.item_bias = nn.Embedding(self.n_items, 1, sparse=sparse)
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.xavier_normal_(self.item_emb.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.to(self.device)

    def loss(self, batch: TripletBatch) -> Tensor:
        pu = self.user_emb(batch.users)
        qi, qj = self.item_emb(batch.pos_items), self.item_emb(batch.neg_items)
        bi, bj = self.item_bias(batch.pos_items).squeeze(-1), self.item_bias(batch.neg_items).squeeze(-1)
        pos = bi + (pu * qi).sum(-1)
        neg = bj + (pu * qj).sum(-1)
        n = len(batch.users)
        return (bpr_loss(pos, neg) + self.l_w * l2_reg(pu, qi, qj, batch_size=n)
                + self.l_b * l2_reg(bi, bj, batch_size=n))

    def make_optimizer(self) -> torch.optim.Optimizer:
        if self.sparse_grad:
            return torch.optim.SparseAdam(list(self.parameters()), lr=float(self.lr))
        return super().make_optimizer()

    def score(self, users: Tensor) -> Tensor:
        return torch.addmm(self.item_bias.weight.T, self.user_emb(users), self.item_emb.weight.T)  # one pass


class LightGCN(EmbeddingScoring, Recommender):
    """LightGCN (He et al., SIGIR 2020).

    E^(k+1) = D^{-1/2} A D^{-1/2} E^(k) over the user-item graph (Eq. 7), final embedding
    E = Σ_k α_k E^(k) with α_k = 1/(K+1) (Eq. 8), s(u,i) = e_u · e_i; BPR loss with L2 on the
    layer-0 embeddings of the batch (l_w / batch size), as in the authors' code.
    """

    name = "LightGCN"
    params = (
        Param("factors", int, 64, "embedding size", aliases=("latent_dim", "embedding_size")),
        Param("n_layers", int, 3, "propagation layers K"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 1e-4, "L2 weight of the layer-0 embeddings"),
        Param("normalize", bool, True, "symmetric normalisation of the adjacency (the Elliot forks' switch; "
              "false, an unnormalised sum, is not implemented)", choices=[True]),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        users, items = torch.empty(self.n_users, self.factors), torch.empty(self.n_items, self.factors)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        # one table [E_u; E_i]: the layer-0 input of the propagation without a concatenation per batch
        self.embedding = nn.Parameter(torch.cat([users, items]))
        self.adj = ui_propagation_op(dataset.train, self.device)
        self.to(self.device)

    def propagate(self) -> tuple:
        final = propagate_mean(self.adj, self.embedding, self.n_layers)
        return final[: self.n_users], final[self.n_users:]

    def loss(self, batch: TripletBatch) -> Tensor:
        # the batch's rows of [users; items] gathered once per table (each gather costs a zero-filled
        # gradient of the whole table in backward; index_select, not [], see base.gather_rows), and the
        # 1/(K+1) readout applied to those rows only
        n = len(batch.users)
        rows = torch.cat([batch.users, batch.pos_items + self.n_users, batch.neg_items + self.n_users])
        total = propagate_sum(self.adj, self.embedding, self.n_layers)
        u, i, j = (total.index_select(0, rows) / (self.n_layers + 1)).split(n)
        reg = l2_reg(*self.embedding.index_select(0, rows).split(n), batch_size=n)
        return bpr_loss((u * i).sum(-1), (u * j).sum(-1)) + self.l_w * reg

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self.propagate()
