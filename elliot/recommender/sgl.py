"""SGL: Self-supervised Graph Learning for Recommendation (Wu, Wang, Feng, He, Chen, Lian, Xie; SIGIR 2021;
arXiv 2010.10783; code: wujcan/SGL-Torch ``model/general_recommender/SGL.py``; the Elliot forks'
``external.SGL``, e.g. sisinflab/Formal-MultiMod-Rec ``external/models/sgl``).

What is implemented (the paper's Sec. 3, as the authors' code computes it):

* Encoder: LightGCN with mean readout over layers 0..K (``n_layers``) on a propagation matrix
  Â = D^{-1/2} A D^{-1/2}:  Z(Â) = 1/(K+1) Σ_k Â^k [E_u; E_i]  (for ``rw``, layer k uses its own Â_k).
* Graph augmentations, two views s1, s2 re-drawn at the start of every epoch, each sub-graph
  re-normalised with its own degrees (``aug_type``; ρ = ``ssl_ratio``):
  ``nd`` node dropout: ⌊ρ|U|⌋ users and ⌊ρ|I|⌋ items dropped with all their edges;
  ``ed`` edge dropout: ⌊(1-ρ)|E|⌋ edges kept, uniformly without replacement;
  ``rw`` random walk: an independent edge dropout per layer and view.
* Contrastive loss (InfoNCE): with z' = Z(Â_s1), z'' = Z(Â_s2) row-L2-normalised, for each batch user u
      L_ssl^user(u) = -log [ exp(z'_u·z''_u / τ) / Σ_{v∈U} exp(z'_u·z''_v / τ) ]      (τ = ``ssl_temp``),
  the softmax over ALL users of the second view (not in-batch), and L_ssl^item likewise for the batch's
  positive items over all items; ``ssl_mode`` both_side (default) adds the two, user_side / item_side keep one.
* Multi-task objective: L = mean_batch [-ln σ(ŷ_ui - ŷ_uj)] + ``ssl_reg`` · mean_batch L_ssl
  + ``l_w`` (|e_u^(0)|² + |e_i^(0)|² + |e_j^(0)|²) / (2B), with ŷ = Z(Â)_u · Z(Â)_i on the full graph.  The code
  sums every term over the batch (and adds the L2 undivided): the same objective times B, which Adam does
  not see (up to its ε).  Scores use the full graph.

Defaults: the authors' ``conf/SGL.ini``: aug_type ED, reg 1e-4, embed_size 64, n_layers 3, ssl_reg 0.1,
ssl_ratio 0.1, ssl_temp 0.2, ssl_mode both_side, lr 1e-3 (Adam), batch 2048, Xavier-uniform embeddings.  The
Elliot fork's defaults differ (sampling nd, n_layers 1, l_w 0.01, lr 5e-4); its names (``sampling``) and the
code's / RecBole's (``reg``, ``embed_size``, ``ssl_weight``, ``ssl_tau``, ``drop_ratio``, ``type``) are
accepted as aliases.

Deviations: (1) ssl_mode ``merge`` (users and items in one softmax) is not implemented; (2) the views
are drawn from a generator seeded by (``seed``, epoch) instead of numpy's global RNG; (3) the InfoNCE of a
batch is computed once per distinct user / item, weighted by its count in the batch (the same value as
per triple); (4) the sub-graph normalisation adds 1e-7 to the degrees (MMRec's convention; the code maps
zero degrees to 0 - equal on every edge to float precision).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, Recommender, TripletBatch, bpr_loss, l2_reg, unique_index
from elliot.recommender.contrastive import info_nce
from elliot.recommender.graph import propagate_sum, sample_edges, ui_edges, ui_propagation_op, ui_subgraph_op
from elliot.recommender.sparse import SparseOp

View = Union[SparseOp, List[SparseOp]]


class SGL(EmbeddingScoring, Recommender):
    """SGL (Wu et al., SIGIR 2021); see the module docstring."""

    name = "SGL"
    params = (
        Param("factors", int, 64, "embedding size", aliases=("embed_size", "embedding_size")),
        Param("n_layers", int, 3, "LightGCN layers K"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 1e-4, "L2 weight of the batch's layer-0 embeddings (/ 2B)", aliases=("reg", "reg_weight")),
        Param("ssl_reg", float, 0.1, "weight λ1 of the contrastive loss", low=0.0, aliases=("ssl_weight",)),
        Param("ssl_ratio", float, 0.1, "dropout ratio ρ of the augmentation", low=0.0, high=1.0,
              high_inclusive=False, aliases=("drop_ratio",)),
        Param("ssl_temp", float, 0.2, "temperature τ of the InfoNCE", aliases=("ssl_tau",)),
        Param("aug_type", str, "ed", "augmentation: nd (node dropout), ed (edge dropout), rw (random walk)",
              choices=("nd", "ed", "rw", "ND", "ED", "RW"), aliases=("sampling", "type")),
        Param("ssl_mode", str, "both_side", "which InfoNCE terms: user_side, item_side or both_side",
              choices=("user_side", "item_side", "both_side")),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.aug = str(self.aug_type).lower()
        k = int(self.factors)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embedding = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i]
        self.adj = ui_propagation_op(dataset.train, self.device)  # plain attributes: not in the state dict
        self._edges = ui_edges(dataset.train)
        self._views: Optional[Tuple[View, View]] = None
        self.to(self.device)

    # ---- augmentations ----------------------------------------------------------------------------
    def _subgraph(self, gen: torch.Generator) -> SparseOp:
        """One normalised sub-graph of the epoch (``nd`` or ``ed`` draw)."""
        rho, edges = float(self.ssl_ratio), self._edges
        if rho <= 0:
            return self.adj
        if self.aug == "nd":
            drop_u = torch.zeros(self.n_users, dtype=torch.bool)
            drop_i = torch.zeros(self.n_items, dtype=torch.bool)
            drop_u[torch.randperm(self.n_users, generator=gen)[: int(self.n_users * rho)]] = True
            drop_i[torch.randperm(self.n_items, generator=gen)[: int(self.n_items * rho)]] = True
            kept = edges[:, ~(drop_u[edges[0]] | drop_i[edges[1]])]
        else:
            n = edges.shape[1]
            kept = edges[:, sample_edges(n, int(n * (1.0 - rho)), gen)]
        return ui_subgraph_op(kept, self.n_users, self.n_items, self.device)

    def _view(self, gen: torch.Generator) -> View:
        if self.aug == "rw":
            return [self._subgraph(gen) for _ in range(int(self.n_layers))]
        return self._subgraph(gen)

    def on_epoch_start(self, epoch: int) -> None:
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)) * 100_003 + int(epoch))
        self._views = (self._view(gen), self._view(gen))

    # ---- encoder ----------------------------------------------------------------------------------
    def _encode(self, adj: Union[SparseOp, Sequence[SparseOp]]) -> Tensor:
        """Z(Â) = 1/(K+1) Σ_k (layer k) of [E_u; E_i]; one matrix per layer when ``adj`` is a list."""
        n_layers = int(self.n_layers)
        if isinstance(adj, SparseOp):
            return propagate_sum(adj, self.embedding, n_layers) / (n_layers + 1)
        x = total = self.embedding
        for op in adj:
            x = op @ x
            total = total + x
        return total / (n_layers + 1)

    # ---- training ---------------------------------------------------------------------------------
    def _ssl_side(self, z1: Tensor, z2: Tensor, ids: Tensor, size: int) -> Tensor:
        """mean over the batch's ``ids`` of -log softmax(z1_id · z2_all / τ)[id] (rows of one side)."""
        uniq, _, counts = unique_index(ids, size, return_counts=True)
        rows = F.normalize(z1.index_select(0, uniq), dim=1)
        return info_nce(rows, F.normalize(z2, dim=1), float(self.ssl_temp), targets=uniq, weights=counts.float())

    def loss(self, batch: TripletBatch) -> Tensor:
        if self._views is None:
            self.on_epoch_start(0)
        n, nu = len(batch.users), self.n_users
        main = self._encode(self.adj)
        rows = torch.cat([batch.users, batch.pos_items + nu, batch.neg_items + nu])
        u, i, j = main.index_select(0, rows).split(n)
        loss = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        loss = loss + float(self.l_w) * l2_reg(*self.embedding.index_select(0, rows).split(n), batch_size=n)
        if float(self.ssl_reg) > 0:
            z1, z2 = self._encode(self._views[0]), self._encode(self._views[1])
            ssl = 0.0
            if self.ssl_mode in ("user_side", "both_side"):
                ssl = ssl + self._ssl_side(z1[:nu], z2[:nu], batch.users, nu)
            if self.ssl_mode in ("item_side", "both_side"):
                ssl = ssl + self._ssl_side(z1[nu:], z2[nu:], batch.pos_items, self.n_items)
            loss = loss + float(self.ssl_reg) * ssl
        return loss

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        z = self._encode(self.adj)
        return z[: self.n_users], z[self.n_users:]
