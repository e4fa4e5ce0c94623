"""SelfCF: A Simple Framework for Self-supervised Collaborative Filtering (Zhou, Sun, Yang, Wang, Xu, Li;
ACM TORS 2023; arXiv 2107.03019), the SelfCF_ed variant (embedding dropout) with a LightGCN encoder: MMRec
``models/selfcfed_lgn.py`` (``SELFCFED_LGN``) and its ``common/encoders.py`` ``LightGCN_Encoder`` (BUIR's).

SelfCF needs no negative items: one online encoder, a target view made by dropout of its own (stopped)
output, and a predictor trained to agree with it across the user-item pair.  What is implemented:

* Encoder (the code's ``LightGCN_Encoder``): LightGCN with mean readout over layers 0..K (``n_layers``),
      [h_u; h_i] = 1/(K+1) Σ_k Â'^k [e_u; e_i],
  where at inference Â' = Â = D^{-1/2} A D^{-1/2}, and while training, at every step, a fresh rate
  r ~ U(0, ``drop_ratio``) is drawn and every stored entry of Â is kept with probability 1 - r and scaled
  by 1/(1 - r) (BUIR's ``sparse_dropout``: the u->i and i->u entries are drawn independently, no
  re-normalisation).
* Views (embedding dropout, the ``ed`` of SelfCF_ed): for a batch of (user, positive item) pairs, the online rows h_u,
  h_i and the target rows h̃ = dropout_p(sg(h)) (p = ``dropout``, per batch row, scaled by 1/(1-p)).
* Loss (the code's ``calculate_loss``), with the linear predictor q(z) = W z + b and cos averaged over
  the batch:
      L = -cos(q(h_u), h̃_i)/2 - cos(q(h_i), h̃_u)/2 + ``l_w`` Σ_batch (|h_u|² + |h_i|²)/2,
  the last term MMRec's ``L2Loss`` on the batch's online rows (summed over the batch, not averaged).
* Score (the code's ``full_sort_predict``): ŷ_ui = q(h_u)·h_i + h_u·q(h_i) on the full graph.

Negatives.  The trainer hands BPR triples; an epoch visits every training interaction once in a seeded
order (MMRec's ``use_neg_sampling: False``), and ``neg_items`` is IGNORED.

Defaults: MMRec ``configs/model/SELFCFED_LGN.yaml`` + ``overall.yaml``: factors 64 (embedding_size),
lr 1e-3 (Adam, no weight decay), drop_ratio 1.0 (the encoder's constant), the first value of the grids
n_layers 1 ({1, 2}) and dropout 0.1 ({0.1, 0.2, 0.5}); l_w 1e-5 from the reg_weight grid {0.1, 1e-2, ..., 1e-5, 0}
(the value selected on TikTok validation: the grid's first value 0.1 collapses there, validation Recall@20
0.005, because the penalty is summed over the batch while the cosine terms are averaged).
Initialisation as the code: Xavier-uniform embeddings, the default nn.Linear predictor.  The registry also
resolves MMRec's name ``SELFCFED_LGN``.

Deviations: the edge-dropout rate, its mask and the target dropout come from generators seeded by
``seed`` instead of numpy's / torch's global RNG; the scores are computed from the current weights (MMRec's
``get_embedding`` does the same).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, Recommender, TripletBatch, gather_rows
from elliot.recommender.graph import EntryDropout, normalized_ui_graph, propagate_sum
from elliot.recommender.sparse import SparseOp


def neg_cosine(online: Tensor, target: Tensor) -> Tensor:
    """-mean_rows cos(online, target) (the code's ``loss_fn``; target without gradient)."""
    return -F.cosine_similarity(online, target.detach(), dim=-1).mean()


class SelfCF(EmbeddingScoring, Recommender):
    """SelfCF_ed with a LightGCN encoder (Zhou et al., TORS 2023); see the module docstring."""

    name = "SelfCF"
    params = (
        Param("factors", int, 64, "embedding size", aliases=("embedding_size", "latent_dim")),
        Param("n_layers", int, 1, "LightGCN layers K of the encoder"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 1e-5, "weight of the L2 of the batch's online rows (summed over the batch)",
              aliases=("reg_weight",)),
        Param("dropout", float, 0.1, "embedding dropout that makes the target view"),
        Param("drop_ratio", float, 1.0, "the per-step edge-dropout rate is drawn from U(0, drop_ratio) "
              "(0: no edge dropout)", low=0.0, high=1.0),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k = int(self.factors)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embedding = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i]
        self.predictor = nn.Linear(k, k)
        self._adj_coo = normalized_ui_graph(dataset.train, self.device)  # plain attributes: not in the state dict
        self.adj = SparseOp(self._adj_coo, symmetric=True)
        self._dropout_graph = EntryDropout(self._adj_coo)  # the per-step edge dropout, without a sort per step
        self.to(self.device)
        seed = int(self.hp.get("seed", 42))
        self._graph_gen = torch.Generator().manual_seed(seed)  # edge-dropout rate and masks (CPU)
        self._gen = torch.Generator(device=self.device).manual_seed(seed + 1)  # target views

    # ---- encoder ----------------------------------------------------------------------------------
    def _encode(self, adj) -> Tuple[Tensor, Tensor]:
        """(h_u of all users, h_i of all items): mean of layers 0..K over ``adj``."""
        mean = propagate_sum(adj, self.embedding, int(self.n_layers)) / (int(self.n_layers) + 1)
        return mean[: self.n_users], mean[self.n_users:]

    def _training_graph(self) -> SparseOp:
        """Â with entries dropped at a rate r ~ U(0, drop_ratio) drawn for this step."""
        rate = float(torch.rand((), generator=self._graph_gen)) * float(self.drop_ratio)
        if rate <= 0:
            return self.adj
        return self._dropout_graph(rate, self._graph_gen)

    def _target(self, x: Tensor) -> Tensor:
        """dropout_p(sg(x)) from the model's own generator (scaled by 1/(1-p) as F.dropout)."""
        p, x = float(self.dropout), x.detach()
        if p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self._gen, device=x.device) >= p
        return x * keep / (1.0 - p)

    # ---- training ---------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        """SelfCF's objective on the batch's (user, positive item) pairs; ``neg_items`` is not used."""
        users_all, items_all = self._encode(self._training_graph())
        u, i = gather_rows(users_all, batch.users), gather_rows(items_all, batch.pos_items)
        reg = (u.pow(2).sum() + i.pow(2).sum()) / 2
        u_t, i_t = self._target(u), self._target(i)
        return (neg_cosine(self.predictor(u), i_t) / 2 + neg_cosine(self.predictor(i), u_t) / 2
                + float(self.l_w) * reg)

    # ---- scoring ----------------------------------------------------------------------------------
    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        """([q(h_u), h_u], [h_i, q(h_i)]): their inner product is q(h_u)·h_i + h_u·q(h_i)."""
        hu, hi = self._encode(self.adj)
        return torch.cat([self.predictor(hu), hu], 1), torch.cat([hi, self.predictor(hi)], 1)
