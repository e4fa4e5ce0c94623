"""NGCF: Neural Graph Collaborative Filtering (Wang, He, Wang, Feng, Chua; SIGIR 2019; code:
xiangwang1223/neural_graph_collaborative_filtering ``NGCF/NGCF.py``; Elliot 0.3.1's built-in
``elliot/recommender/graph_based/ngcf``; the sisinflab forks' PyTorch ``external.NGCF``, e.g.
Graph-RSs-Reproducibility / Graph-Missing-Modalities ``external/models/ngcf``).

What is implemented (paper Sec. 2, Eq. 7-9), for layers l = 1..L of widths d_l (``weight_size``):

* Embedding propagation in matrix form (Eq. 7), with Â the propagation matrix (``adj_type``) and
  E^(0) = [E_u; E_i] the ID embeddings (``factors`` wide):
      S^(l)   = Â E^(l-1)                                               (messages summed over neighbours)
      E^(l)   = LeakyReLU_0.2( X^(l) W_1^(l) + b_1^(l) + (S^(l) ⊙ E^(l-1)) W_2^(l) + b_2^(l) )
  ``adj_type: norm`` (default; the authors' code ``adj_type = norm`` and the forks): Â = D^{-1}(A + I)
  (row-normalised, self-loops: the self-message is inside the sum) and X^(l) = S^(l);
  ``adj_type: laplacian`` (the paper's Eq. 7 and Elliot 0.3.1): Â = L = D^{-1/2} A D^{-1/2} and
  X^(l) = (L + I) E^(l-1) = S^(l) + E^(l-1).
* Message dropout (Sec. 2.4.2) on E^(l) with rate ``message_dropout`` (one value for every layer or one
  per layer), training only; E^(l) (after dropout) feeds layer l+1, its row-L2-normalised copy
  Ê^(l) = E^(l)/|E^(l)| enters the readout (the code's ``norm_embeddings``).
* Node dropout (Sec. 2.4.2; the code drops entries of Â): each entry of Â is kept with probability
  1 - ``node_dropout`` and scaled by 1/(1 - p); redrawn every epoch.
* Readout (Eq. 9): e* = E^(0) ‖ Ê^(1) ‖ ... ‖ Ê^(L) (``readout: concat``); ``readout: mean`` is the
  mean of the same L+1 blocks (Graph-Missing-Modalities' variant; needs every d_l = factors).
  Score ŷ_ui = e*_u · e*_i (Eq. 10).
* Objective (Eq. 11): L = mean_batch -ln σ(ŷ_ui - ŷ_uj) + ``l_w`` (|e*_u|² + |e*_i|² + |e*_j|²) / (2B)
  on the final embeddings of the batch (the authors' ``create_bpr_loss``: decay = regs[0], l2_loss / batch
  size; the forks write the same term), Adam.

Parameters and names.  ``weight_size`` (alias ``ws``) is Elliot's tuple of layer widths ``(64, 64, 64)``
or the forks' single int ``64`` with ``n_layers`` layers; ``n_layers: 0`` (default) means one layer per
entry of ``weight_size``, a single width is repeated ``n_layers`` times, otherwise the two must agree.
``message_dropout`` / ``node_dropout`` take Elliot's tuples ``(0.1,)`` / ``()`` or the forks' floats.
``n_fold`` (Elliot's TF memory split of Â) does not change the maths and is accepted as a no-op.

Defaults: the authors' README run (embed_size 64, layer_size [64, 64, 64], regs [1e-5], lr 1e-4,
mess_dropout 0.1 per layer, node_dropout_flag 0 = no node dropout, adj_type norm).  Elliot 0.3.1's defaults
differ (lr 5e-4, l_w 0.01, weight_size (64,), message_dropout (0.1,)), and so do the forks' (lr 5e-4,
l_w 0.01, n_layers 3 x 64, message_dropout 0.5); write them in the YAML to get them.  Initialisation:
Xavier-uniform embeddings, weights and biases (the biases as (1, d_l) matrices), as every reference.

Deviations: (1) one LeakyReLU over the sum of the two messages (the paper, Elliot, the forks); the
authors' TF code applies it to each message separately and sums; (2) node dropout is redrawn once per
epoch (as the forks; the TF code redraws it every step) from a generator seeded by (``seed``, epoch),
and message dropout draws from the model's own generator seeded by ``seed``, so runs are reproducible;
(3) the forks feed the NORMALISED Ê^(l) to the next layer, Elliot and the authors' code the
unnormalised E^(l) - we follow the authors; (4) Elliot's TF version adds the L2 of the layer weights to
the loss and sums (not averages) the BPR terms; we follow the authors' code and the forks.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import EmbeddingScoring, Recommender, TripletBatch, bpr_loss, gather_rows, l2_reg
from elliot.recommender.graph import entry_dropout, scipy_to_torch, symmetric_normalize, user_item_adjacency
from elliot.recommender.sparse import SparseOp


def row_normalized_with_self_loops(train: sp.csr_matrix) -> sp.csr_matrix:
    """D^{-1}(A + I) of the user-item graph (the NGCF code's ``norm_adj``; D = degrees of A + I)."""
    adj = user_item_adjacency(train) + sp.eye(sum(train.shape), dtype=np.float32, format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    return (sp.diags(1.0 / deg) @ adj).tocsr().astype(np.float32)


class NGCF(EmbeddingScoring, Recommender):
    """NGCF (Wang et al., SIGIR 2019); see the module docstring."""

    name = "NGCF"
    #: feed Ê^(l) (normalised) instead of E^(l) to layer l+1 (deviation (3): the forks' order; NGCFM sets it)
    feed_normalized: bool = False
    params = (
        Param("factors", int, 64, "size of the layer-0 ID embeddings (the code's embed_size)",
              aliases=("latent_dim", "embedding_size", "embed_size")),
        Param("weight_size", "list[int]", [64, 64, 64], "widths of the propagation layers (Elliot's tuple, or one "
              "width repeated n_layers times)", low=1, aliases=("ws", "layer_size")),
        Param("n_layers", int, 0, "propagation layers (0: one per weight_size entry)", low=0),
        Param("lr", float, 1e-4, "Adam learning rate"),
        Param("l_w", float, 1e-5, "L2 weight of the batch's final embeddings (the code's regs[0])"),
        Param("message_dropout", "list[float]", [0.1], "message dropout of each layer's output (one value: "
              "every layer)", low=0.0, high=1.0, high_inclusive=False, aliases=("mess_dropout",)),
        Param("node_dropout", "list[float]", [], "dropout of the entries of the propagation matrix, redrawn "
              "every epoch (empty: none)", low=0.0, high=1.0, high_inclusive=False),
        Param("adj_type", str, "norm", "propagation matrix: norm = D^-1(A+I) (the authors' code, the forks), "
              "laplacian = D^-1/2 A D^-1/2 with (L+I)E in the first term (the paper, Elliot)",
              choices=("norm", "laplacian")),
        Param("readout", str, "concat", "concatenation of the layers (paper) or their mean",
              choices=("concat", "mean")),
        Param("normalize", bool, True, "normalised propagation matrix (the forks' switch; false is not implemented)",
              choices=[True]),
        Param("n_fold", int, 5, "Elliot's split of the adjacency for TF memory: accepted, no effect", low=1),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.widths = self._widths()
        self.mess_rates = self._message_rates(len(self.widths))
        rates = sorted(set(float(p) for p in (self.node_dropout or [])))
        if len(rates) > 1:
            raise ConfigError(f"NGCF: node_dropout {list(self.node_dropout)} - the graph has one dropout rate "
                              "(the references use the first value only)")
        self.node_rate = rates[0] if rates else 0.0
        if self.readout == "mean" and any(w != int(self.factors) for w in self.widths):
            raise ConfigError(f"NGCF: readout mean needs every layer width equal to factors ({self.factors}); "
                              f"got {self.widths}")
        k = int(self.factors)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embedding = nn.Parameter(torch.cat([users, items]))  # E^(0) = [E_u; E_i]
        dims = [k] + self.widths
        self.w1 = nn.ModuleList([nn.Linear(dims[l], dims[l + 1]) for l in range(len(self.widths))])
        self.w2 = nn.ModuleList([nn.Linear(dims[l], dims[l + 1]) for l in range(len(self.widths))])
        for lin in [*self.w1, *self.w2]:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.xavier_uniform_(lin.bias.data.view(1, -1))
        laplacian = self.adj_type == "laplacian"
        matrix = symmetric_normalize(user_item_adjacency(dataset.train)) if laplacian \
            else row_normalized_with_self_loops(dataset.train)
        self._adj_coo = scipy_to_torch(matrix, self.device)  # plain attributes: not in the state dict
        self.adj = SparseOp(self._adj_coo, symmetric=laplacian)
        self._train_adj: Optional[SparseOp] = None
        self.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.hp.get("seed", 42)))

    # ---- parameters ---------------------------------------------------------------------------
    def _widths(self) -> List[int]:
        ws, n = [int(w) for w in self.weight_size], int(self.n_layers)
        if not ws:
            raise ConfigError("NGCF: weight_size is empty; give one width per layer or one width and n_layers")
        if n == 0 or n == len(ws):
            return ws
        if len(ws) == 1:
            return ws * n
        raise ConfigError(f"NGCF: weight_size {ws} has {len(ws)} layers but n_layers is {n}")

    def _message_rates(self, n: int) -> List[float]:
        rates = [float(p) for p in (self.message_dropout or [])] or [0.0]
        if len(rates) == 1:
            return rates * n
        if len(rates) != n:
            raise ConfigError(f"NGCF: message_dropout has {len(rates)} values for {n} layers")
        return rates

    # ---- graph ----------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        """Node dropout: the epoch's propagation matrix (entries kept with prob. 1 - p, scaled 1/(1 - p))."""
        if self.node_rate <= 0:
            self._train_adj = self.adj
            return
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        self._train_adj = entry_dropout(self._adj_coo, self.node_rate, gen)

    # ---- propagation --------------------------------------------------------------------------
    def _dropout(self, x: Tensor, p: float) -> Tensor:
        if p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self._gen, device=x.device) >= p
        return x * keep / (1.0 - p)

    def propagate(self, training: bool = False) -> Tuple[Tensor, Tensor]:
        """(e*_u of all users, e*_i of all items); ``training`` adds node and message dropout."""
        adj = self.adj
        if training:
            if self._train_adj is None:
                self.on_epoch_start(0)
            adj = self._train_adj
        ego = self.embedding
        blocks = [ego]
        for l, (lin1, lin2) in enumerate(zip(self.w1, self.w2)):
            side = adj @ ego
            first = side + ego if self.adj_type == "laplacian" else side
            ego = F.leaky_relu(lin1(first) + lin2(side * ego), negative_slope=0.2)
            if training:
                ego = self._dropout(ego, self.mess_rates[l])
            blocks.append(F.normalize(ego, p=2, dim=1))
            if self.feed_normalized:  # the forks' order: the next layer reads the normalised Ê^(l)
                ego = blocks[-1]
        final = torch.cat(blocks, 1) if self.readout == "concat" else torch.stack(blocks, 0).mean(0)
        return final[: self.n_users], final[self.n_users:]

    # ---- training / scoring ---------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        users_all, items_all = self.propagate(training=True)
        u = gather_rows(users_all, batch.users)
        i, j = gather_rows(items_all, torch.cat([batch.pos_items, batch.neg_items])).split(len(batch.users))
        reg = l2_reg(u, i, j, batch_size=len(batch.users))
        return bpr_loss((u * i).sum(-1), (u * j).sum(-1)) + float(self.l_w) * reg

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self.propagate(training=False)
