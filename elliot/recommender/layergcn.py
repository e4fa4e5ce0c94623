"""LayerGCN: Layer-refined Graph Convolutional Networks for Recommendation (Zhou, Lin, Liu, Miao, Wei,
Wang, Wei; ICDE 2023; arXiv 2207.11088; code: enoche/ImRec, enoche/MMRec ``models/layergcn.py``).

What is implemented (the paper's model, as the released code computes it):

* Layer refinement: with Â = D^{-1/2} A D^{-1/2} the user-item graph and E^(0) = [E_u; E_i],
      Ẽ^(l) = Â E^(l-1),    α^(l) = cos(Ẽ^(l), E^(0)) (row by row),    E^(l) = α^(l) ⊙ Ẽ^(l),
  for l = 1..L (``n_layers``): every layer's output is re-weighted by its cosine similarity to the ego
  embedding before it is propagated further.
* Readout: E = Σ_{l=1..L} E^(l) (a sum, without the ego layer); ŷ_ui = e_u·e_i.
* Degree-sensitive edge dropout while training, re-drawn every epoch: keep
  ⌊(1 - ``dropout``)·|E|⌋ user-item edges, sampled without replacement with probability
  ∝ 1/(√d_u √d_i) in even epochs and uniformly in odd ones (the code alternates the two with its
  ``pruning_random`` flag, starting with the degree-sensitive draw); the kept graph is re-normalised
  with its own degrees.  Inference uses the full graph.
* Objective: L = mean_batch -ln σ(ŷ_ui - ŷ_uj) + ``l_w`` (|e_u^(0)|² + |e_i^(0)|² + |e_j^(0)|²) / (2B) on
  the batch's ego embeddings.  The code SUMS the BPR terms over the batch and adds λ/2 Σ|e^(0)|² undivided:
  the same objective times B, which Adam's step does not see (up to its ε).

Defaults: MMRec ``configs/model/LayerGCN.yaml`` + ``overall.yaml``: factors 64 (embedding_size),
n_layers 4, lr 1e-3 (Adam, no weight decay), and the first value of each of its grids: l_w 1e-2
(reg_weight, grid {1e-2, 1e-3, 1e-4, 1e-5}), dropout 0.0 (grid {0.0, 0.1, 0.2}).  Xavier-uniform
embeddings.  MMRec's parameter names are accepted (``embedding_size``, ``reg_weight``).

Deviations: the pruning draws come from a generator seeded by (``seed``, epoch) instead of the global
RNG (reproducible runs); the cosine is x·e / max(|x||e|, 1e-8) (F.cosine_similarity clamps each norm
at 1e-8 instead: equal unless a row's norm is below 1e-8).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, Recommender, TripletBatch, bpr_loss, l2_reg
from elliot.recommender.graph import bipartite_norm_values, sample_edges, ui_edges, ui_propagation_op, ui_subgraph_op
from elliot.recommender.sparse import SparseOp


class _EgoReweight(torch.autograd.Function):
    """y = cos(x, e) ⊙ x row by row, cos = x·e / max(|x||e|, 1e-8), with its gradient written out:
    with s = g·y/c = g·x per row and ι = 1/max(|x||e|, 1e-8),
        ∂L/∂x = c g + s (ι e - c x / |x|²),    ∂L/∂e = s (ι x - c e / |e|²)
    (the |x|², |e|² terms vanish where the clamp is active).  Autograd through the cosine costs about twice the
    elementwise passes over the (U+I) x d table, which are most of LayerGCN's step."""

    @staticmethod
    def forward(ctx, x: Tensor, ego: Tensor, ego_sq: Tensor) -> Tensor:
        x_sq = x.pow(2).sum(1)
        inv = (x_sq * ego_sq).clamp_min(1e-16).rsqrt()
        cos = (x * ego).sum(1) * inv
        ctx.save_for_backward(x, ego, ego_sq, x_sq, inv, cos)
        return cos.unsqueeze(1) * x

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, ego, ego_sq, x_sq, inv, cos = ctx.saved_tensors
        s = (grad * x).sum(1)
        unclamped = (x_sq * ego_sq) > 1e-16
        a = (s * inv).unsqueeze(1)
        sc = torch.where(unclamped, s * cos, torch.zeros_like(s))
        grad_x = cos.unsqueeze(1) * grad
        grad_x.addcmul_(a, ego).addcmul_((sc / x_sq.clamp_min(1e-30)).unsqueeze(1), x, value=-1.0)
        grad_ego = a * x
        grad_ego.addcmul_((sc / ego_sq.clamp_min(1e-30)).unsqueeze(1), ego, value=-1.0)
        return grad_x, grad_ego, None


class LayerGCN(EmbeddingScoring, Recommender):
    """LayerGCN (Zhou et al., ICDE 2023); see the module docstring."""

    name = "LayerGCN"
    params = (
        Param("factors", int, 64, "embedding size", aliases=("embedding_size", "latent_dim")),
        Param("n_layers", int, 4, "refined propagation layers L"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 1e-2, "L2 weight of the batch's ego embeddings (/ 2B)", aliases=("reg_weight",)),
        Param("dropout", float, 0.0, "share of user-item edges dropped each epoch (degree-sensitive / uniform, "
              "alternating)"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        users, items = torch.empty(self.n_users, self.factors), torch.empty(self.n_items, self.factors)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embedding = nn.Parameter(torch.cat([users, items]))  # E^(0) = [E_u; E_i]
        self.adj = ui_propagation_op(dataset.train, self.device)  # plain attributes: not in the state dict
        self._edges = ui_edges(dataset.train)
        self._edge_probs = bipartite_norm_values(self._edges, self.n_users, self.n_items)
        self._train_adj: Optional[SparseOp] = None
        self.to(self.device)

    def on_epoch_start(self, epoch: int) -> None:
        """The epoch's training graph: edges kept degree-sensitively (even epochs) or uniformly (odd)."""
        rate = float(self.dropout)
        if rate <= 0:
            self._train_adj = self.adj
            return
        n_edges = self._edges.shape[1]
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        keep = sample_edges(n_edges, max(1, int(n_edges * (1.0 - rate))), gen,
                            probs=self._edge_probs if epoch % 2 == 0 else None)
        self._train_adj = ui_subgraph_op(self._edges[:, keep], self.n_users, self.n_items, self.device)

    def propagate(self, adj: SparseOp) -> Tuple[Tensor, Tensor]:
        """Σ_{l=1..L} E^(l) with E^(l) = cos(Â E^(l-1), E^(0)) ⊙ Â E^(l-1), split into (users, items)."""
        ego = self.embedding
        ego_sq = ego.detach().pow(2).sum(1)  # its gradient is part of _EgoReweight's
        x, total = ego, None
        for _ in range(int(self.n_layers)):
            # cos(x, ego) ⊙ x with the cosine x·e / max(|x||e|, 1e-8) (F.cosine_similarity clamps each norm
            # instead: the two differ only for rows of norm < 1e-8)
            x = _EgoReweight.apply(adj @ x, ego, ego_sq)
            total = x if total is None else total + x
        return total[: self.n_users], total[self.n_users:]

    def loss(self, batch: TripletBatch) -> Tensor:
        if self._train_adj is None:
            self.on_epoch_start(0)
        users, items = self.propagate(self._train_adj)
        n = len(batch.users)
        u = users.index_select(0, batch.users)
        i, j = items.index_select(0, torch.cat([batch.pos_items, batch.neg_items])).split(n)
        rows = torch.cat([batch.users, batch.pos_items + self.n_users, batch.neg_items + self.n_users])
        reg = l2_reg(*self.embedding.index_select(0, rows).split(n), batch_size=n)
        return bpr_loss((u * i).sum(-1), (u * j).sum(-1)) + float(self.l_w) * reg

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self.propagate(self.adj)
