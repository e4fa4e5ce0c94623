"""MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation of Micro-video
(Wei, Wang, Nie, He, Hong, Chua; ACM MM 2019).

One graph convolution network per modality m over the (bidirectional) user-item graph.  Layer-0 node
vectors of modality m are the user preferences P_m (trainable, one vector per user) and the item
features, optionally projected: x^(0) = L2norm([P_m; f_m]) with f_m = W_0 x_i^m + b (the released
code projects only the visual modality, to 256 dims) or the raw features.  Every layer l then
computes (paper equation numbers)

* aggregation (Eq. 1-2, ``aggr_mode = mean``):  h = LeakyReLU( mean_{j in N(v)} W_1 x_j )
  (``add``: the sum; ``max``, Eq. 3: the element-wise max over neighbours of W_1 x_j);
* the node's own transformed vector plus its ID embedding (Eq. 5):  x_hat = LeakyReLU(W_2 x + b_2) + e_id
  (``has_id``; the ID embeddings e_id are shared by all modalities);
* combination (Eq. 6 / 7):  ``concate``:  x' = LeakyReLU(W_3 [h ; x_hat] + b_3),
  element-wise:  x' = LeakyReLU(W_3 h + b_3 + x_hat).

After L layers u_m, i_m are the modality-specific user/item representations.  Prediction (Eq. 8 and
the released code, which averages rather than sums - a constant factor): u* = (1/M) Σ_m u_m,
i* = (1/M) Σ_m i_m, s(u, i) = u* · i* (``fusion = mean``).  ``fusion = per_modality`` is a variant (not
in the paper) scoring s(u, i) = Σ_m u_m · i_m, i.e. without the cross-modal terms u_m · i_m'.
Training: BPR (Eq. 9), mean over the batch, plus l_w · (mean(e_id[u]²) + mean(e_id[i, j]²)
+ Σ_m mean(P_m[u]²)) (the released code's ``.mean()`` regulariser).

Defaults: factors 64 (dim_x), n_layers 2 (the ``num_layer`` the released code passes), aggr_mode mean,
has_id true, lr 1e-4 and l_w 1e-5 (``l_r`` / ``weight_decay`` of the released main.py),
factors_multimod [] = the released code's per-modality rule (visual projected to 256 dims, every
other modality used raw); a list gives, per modality in ``modalities`` order, the projection size
(0 = raw features).  ``concate`` defaults to true: both the released code and MMRec pass the STRING
'False', which is truthy, so the concatenation combination is the one that actually ran (Elliot's
default is also ``concatenation: True``).

Deviations from the released code (github.com/weiyinwei/MMGCN, also in MMRec's mmgcn.py):
(1) ID embeddings and user preferences are trainable parameters, as the paper intends (the released
code creates them with ``xavier_normal_(...).cuda()``, which keeps them out of ``model.parameters()``,
so they stay at their random initialisation; ``train_id: false`` reproduces that); (2) ``n_layers`` is
honoured (the released code always runs three hard-coded layers whatever ``num_layer`` says: ``n_layers: 3``
is what it computes; on TikTok the third layer is worth about +0.01 validation Recall@20, see
docs/results_notes.md, "GRCN and MMGCN against the anchors"); (3) every modality's preferences of the
batch users are regularised (the code regularises only the whole visual preference table); (4) all
weight matrices are Glorot-normal initialised, biases zero.  Message passing is a torch sparse matmul
with the row-normalised (mean) or binary (add) adjacency, no self loops (as PyG's MessagePassing).

Computation (same values and gradients as running every layer on the whole graph, up to float rounding):
the graph is bipartite, so each layer is computed per side (users <- items with the U x I block, items
<- users with the I x U block) and the linear aggregations are reassociated, A (x W_1) = (A x) W_1, so that
the square W_1 multiplies the side with fewer rows; only the last layer is restricted to the rows asked for
(the batch's distinct users and items in training); a projected modality whose raw features are narrower
than its projection keeps x = L2norm(f W_0^T + b) factored, x W = s ⊙ (f (W_0^T W) + b W) with s the row
scales, so the layer-0 products with W_1 and the own-vector weight go through the raw features.

Hooks.  Features are read through ``self.feature(m)`` on every forward pass, so an attack on modality m
reaches u_m and i_m (the users' u_m through the graph).  ``fusion = per_modality``: branch m is
(u_m, i_m) and the branch scores sum exactly to s(u, i), each depending on one modality's features
only.  ``fusion = mean``: s = u* · i* has cross terms u_m · i_m' / M²; the branch score exposed is the
Shapley value of modality m in that bilinear form, s_m = (u_m · i* + u* · i_m) / (2M), as the pair
(e_u, e_i) = ([u_m, u*] / √(2M), [i*, i_m] / √(2M)) (2·factors wide); Σ_m s_m = s(u, i) exactly, and
s_m depends on the other modalities' features only through its half of the cross terms.  There is no
separate ``"id"`` branch: the ID embeddings enter every modality's GCN.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, unique_index
from elliot.recommender.graph import scipy_to_torch, user_item_adjacency
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


def _glorot(linear: nn.Linear) -> nn.Linear:
    nn.init.xavier_normal_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class _Normalize(torch.autograd.Function):
    """F.normalize(x, dim=1) (x / max(||x||, eps) per row) with a two-pass backward
    (g - y (g·y)) / max(||x||, eps), the projection term dropped where ||x|| <= eps (the clamp)."""

    @staticmethod
    def forward(ctx, x: Tensor, eps: float = 1e-12) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        inv = norm.clamp_min(eps).reciprocal_()
        y = x * inv
        ctx.save_for_backward(y, inv, norm > eps)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, inv, active = ctx.saved_tensors
        dot = torch.bmm(grad.unsqueeze(1), y.unsqueeze(2)).squeeze(2) * active  # row dots, no N x d temporary
        return torch.addcmul(grad, y, dot, value=-1.0).mul_(inv), None


def _normalize(x: Tensor) -> Tensor:
    return _Normalize.apply(x) if x.requires_grad else F.normalize(x, dim=1)


class _ProjectedRows:
    """The rows x = normalize(f W_0^T + b) of projected features, kept factored for right products:
    x W = s ⊙ (f (W_0^T W) + b W) with s = 1 / max(||f W_0^T + b||, eps) per row, i.e. through the raw
    features when they are narrower than the projection (same values as materialising x first)."""

    def __init__(self, feat: Tensor, project: nn.Linear, eps: float = 1e-12):
        self.feat, self.project = feat, project
        self.proj = project(feat)
        self.scale = torch.linalg.vector_norm(self.proj, dim=1, keepdim=True).clamp_min(eps).reciprocal()

    def matmul(self, weight: Tensor, rows: Optional[Tensor] = None) -> Tensor:
        """x[rows] @ weight (all rows when None)."""
        feat, scale = ((self.feat, self.scale) if rows is None
                       else (self.feat.index_select(0, rows), self.scale.index_select(0, rows)))
        return scale * torch.addmm(self.project.bias @ weight, feat, self.project.weight.T @ weight)


def _row_normalized(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """D^{-1} M (rows without entries stay zero)."""
    deg = np.asarray(matrix.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)) @ matrix,
                         dtype=np.float32)


class _ModalGCN(nn.Module):
    """The per-modality stack: preferences, optional feature projection, L aggregation+combination layers."""

    def __init__(self, n_users: int, d_feat: int, d_latent: int, dim: int, n_layers: int, concate: bool):
        super().__init__()
        d0 = d_latent if d_latent > 0 else d_feat
        self.project = _glorot(nn.Linear(d_feat, d0)) if d_latent > 0 else None
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, d0)))
        dims = [d0] + [dim] * n_layers
        self.conv = nn.ParameterList([nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d))) for d in dims[:-1]])
        self.own = nn.ModuleList([_glorot(nn.Linear(d, dim)) for d in dims[:-1]])
        # W_3 acts on [h ; x_hat]: kept as W_3 = [W_3h | W_3x] so the concatenation is never materialised
        self.combine = nn.ModuleList([_glorot(nn.Linear(d, dim)) for d in dims[:-1]])
        self.combine_own = nn.ParameterList()
        if concate:
            for d in dims[:-1]:
                full = nn.init.xavier_normal_(torch.empty(dim, d + dim))  # Glorot over the whole W_3
                self.combine[len(self.combine_own)].weight.data.copy_(full[:, :d])
                self.combine_own.append(nn.Parameter(full[:, d:].T.contiguous()))
        self.concate = concate


class MMGCN(EmbeddingScoring, MultimodalRecommender):
    """MMGCN (Wei et al., ACM MM 2019); see the module docstring."""

    name = "MMGCN"
    params = (
        Param("factors", int, 64, "size of ID embeddings and of every layer's output (dim_x)"),
        Param("n_layers", int, 2, "graph convolution layers per modality", aliases=("num_layers",)),
        Param("lr", float, 1e-4, "Adam learning rate"),
        Param("l_w", float, 1e-5, "weight of the mean-square regulariser of ID embeddings and preferences"),
        Param("factors_multimod", "list[int]", [], "per-modality projection size of the features "
              "(0 or None = raw); empty = released code: visual 256, others raw", none_means=0, low=0),
        Param("aggr_mode", str, "mean", "neighbour aggregation (Eq. 2 / 3)", choices=["mean", "add", "max"],
              aliases=("aggregation",)),
        Param("concate", bool, True, "combination: concatenation (Eq. 6) or element-wise (Eq. 7)",
              aliases=("concatenation",)),
        Param("has_id", bool, True, "add the ID embedding in every layer (Eq. 5)"),
        Param("fusion", str, "mean", "score: u*·i* over averaged modalities (paper) or Σ_m u_m·i_m",
              choices=["mean", "per_modality"]),
        Param("train_id", bool, True, "train the ID embeddings and user preferences (false: they stay at their "
              "random initialisation, as in the released code and MMRec, which never register them)"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, n_layers = int(self.factors), int(self.n_layers)
        if n_layers < 1:
            raise ConfigError("MMGCN needs n_layers >= 1")
        latent = list(self.factors_multimod or [])
        if not latent:
            latent = [256 if m == "visual" else 0 for m in self.modalities]
        if len(latent) != len(self.modalities):
            raise ConfigError(f"MMGCN: factors_multimod has {len(latent)} entries for modalities {self.modalities}")
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, k)))
        self.gcns = nn.ModuleList([_ModalGCN(self.n_users, self.feature_dim(m), int(d), k, n_layers, bool(self.concate))
                                   for m, d in zip(self.modalities, latent)])
        if not self.train_id:  # the released code / MMRec: fixed random tensors, outside the optimiser
            self.id_embedding.requires_grad_(False)
            for gcn in self.gcns:
                gcn.preference.requires_grad_(False)
        # message passing side by side: users <- items (U x I block of the adjacency), items <- users
        r = sp.csr_matrix((dataset.train > 0).astype(np.float32))
        to_users, to_items = r, sp.csr_matrix(r.T)
        if self.aggr_mode == "mean":  # row-normalised: D^{-1} A restricted to each block
            to_users, to_items = _row_normalized(to_users), _row_normalized(to_items)
        self.to_users = SparseOp(scipy_to_torch(to_users, self.device))
        self.to_items = SparseOp(scipy_to_torch(to_items, self.device))
        coo = user_item_adjacency(dataset.train).tocoo()  # edge lists for the max aggregation: col -> row
        self.register_buffer("_dst", torch.as_tensor(coo.row, dtype=torch.long), persistent=False)
        self.register_buffer("_src", torch.as_tensor(coo.col, dtype=torch.long), persistent=False)
        self.to(self.device)

    # ---- propagation ------------------------------------------------------------------------------
    def _aggregate(self, x: Tensor) -> Tensor:
        """Neighbour aggregation over the whole graph, x of all U+I nodes (messages x_j, no transform)."""
        if self.aggr_mode == "max":  # nodes without neighbours keep 0 (as PyG)
            index = self._dst.unsqueeze(1).expand(-1, x.shape[1])
            return torch.zeros_like(x).scatter_reduce(0, index, x[self._src], "amax", include_self=False)
        return torch.cat([self.to_users @ x[self.n_users:], self.to_items @ x[: self.n_users]])

    def _side(self, op: SparseOp, x_src: Optional[Tensor], weight: Tensor, rows: Optional[Tensor],
              transformed: Optional[Tensor] = None) -> Tensor:
        """LeakyReLU(A (x_src W))[rows] for a linear aggregation A (one block of the adjacency).  A (x W) =
        (A x) W: the square W multiplies whichever side has fewer rows (sources, or the wanted targets);
        ``transformed`` = x_src W when already at hand."""
        if transformed is None:
            n_out = op.shape[0] if rows is None else len(rows)
            if n_out <= op.shape[1]:
                agg = op @ x_src
                return F.leaky_relu((agg if rows is None else agg.index_select(0, rows)) @ weight, inplace=True)
            transformed = x_src @ weight
        out = op @ transformed
        return F.leaky_relu(out if rows is None else out.index_select(0, rows), inplace=True)

    def _layer(self, gcn: "_ModalGCN", layer: int, xu: Tensor, xi, users: Optional[Tensor],
               items: Optional[Tensor], ids: Tuple[Optional[Tensor], Optional[Tensor]]) -> Tuple[Tensor, Tensor]:
        """One aggregation + combination layer; outputs at ``users`` / ``items`` (all when None).
        ``xi`` may be a :class:`_ProjectedRows` (layer 0 of a projected modality); ``ids`` the ID
        embeddings of those output rows (users, items)."""
        w1, own = gcn.conv[layer], gcn.own[layer]
        factored = isinstance(xi, _ProjectedRows)
        if self.aggr_mode == "max":  # nonlinear: transform every node, then take the neighbour maxima
            h = F.leaky_relu(self._aggregate(torch.cat([xu @ w1, xi.matmul(w1) if factored else xi @ w1])))
            hu, hi = h[: self.n_users], h[self.n_users:]
            hu = hu if users is None else hu.index_select(0, users)
            hi = hi if items is None else hi.index_select(0, items)
        else:
            hu = self._side(self.to_users, xi, w1, users, xi.matmul(w1) if factored else None)
            hi = self._side(self.to_items, xu, w1, items)
        outs = []
        for h, x, e_id, rows in ((hu, xu, ids[0], users), (hi, xi, ids[1], items)):
            if isinstance(x, _ProjectedRows):
                x_hat = x.matmul(own.weight.T, rows) + own.bias
            else:
                x_hat = own(x if rows is None else x.index_select(0, rows))
            x_hat = F.leaky_relu(x_hat, inplace=True)
            if e_id is not None:
                x_hat = x_hat + e_id
            # concatenation: W_3 [h ; x_hat] + b = W_3h h + W_3x x_hat + b;  element-wise: W_3 h + b + x_hat
            if gcn.concate:
                out = torch.addmm(gcn.combine[layer](h), x_hat, gcn.combine_own[layer])
            else:
                out = gcn.combine[layer](h) + x_hat
            outs.append(F.leaky_relu(out, inplace=True))
        return outs[0], outs[1]

    def _modality(self, b: int, users: Optional[Tensor], items: Optional[Tensor], ids) -> Tuple[Tensor, Tensor]:
        """(u_m, i_m) at ``users`` / ``items`` (all users / items when None) for the modality at position
        ``b``.  Only the last layer is restricted to those rows; the others run on the whole graph.
        ``ids``: (ID embeddings of all users, of all items, of ``users``, of ``items``), or Nones."""
        gcn = self.gcns[b]
        feat = self.feature(self.modalities[b])
        # L2norm([P_m; f_m]) row-wise: the two halves separately
        xu = _normalize(gcn.preference)
        if gcn.project is None:
            xi = _normalize(feat)
        elif gcn.project.in_features < gcn.project.out_features:  # products through the narrower raw features
            xi = _ProjectedRows(feat, gcn.project)
        else:
            xi = _normalize(gcn.project(feat))
        last = len(gcn.conv) - 1
        for layer in range(last + 1):
            if layer == last:
                xu, xi = self._layer(gcn, layer, xu, xi, users, items, ids[2:])
            else:
                xu, xi = self._layer(gcn, layer, xu, xi, None, None, ids[:2])
        return xu, xi

    def propagate(self, users: Optional[Tensor] = None, items: Optional[Tensor] = None
                  ) -> Tuple[List[Tensor], List[Tensor]]:
        """Per-modality (u_m, i_m) at ``users`` / ``items`` (all when None)."""
        ids = (None,) * 4
        if self.has_id:  # split / gathered once for all modalities and layers
            id_u, id_i = self.id_embedding.split([self.n_users, self.n_items])
            ids = (id_u, id_i, id_u if users is None else id_u.index_select(0, users),
                   id_i if items is None else id_i.index_select(0, items))
        reps = [self._modality(b, users, items, ids) for b in range(len(self.modalities))]
        return [u for u, _ in reps], [i for _, i in reps]

    def _fused(self, users_m: List[Tensor], items_m: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """User/item matrices whose inner product is the fused score."""
        if self.fusion == "mean":
            return torch.stack(users_m).mean(0), torch.stack(items_m).mean(0)
        return torch.cat(users_m, 1), torch.cat(items_m, 1)

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        """BPR + regulariser; the representations are computed for the batch's distinct users/items only."""
        users, u_inv = unique_index(batch.users, self.n_users)
        items, i_inv = unique_index(torch.cat([batch.pos_items, batch.neg_items]), self.n_items)
        eu, ei = self._fused(*self.propagate(users, items))
        n = len(batch.users)
        u = eu.index_select(0, u_inv)
        pos_neg = ei.index_select(0, i_inv)
        pos = (u * pos_neg[:n]).sum(-1)
        neg = (u * pos_neg[n:]).sum(-1)
        rows = torch.cat([batch.pos_items, batch.neg_items]) + self.n_users
        reg = (self.id_embedding.index_select(0, batch.users).pow(2).mean()
               + self.id_embedding.index_select(0, rows).pow(2).mean())
        for gcn in self.gcns:
            reg = reg + gcn.preference.index_select(0, batch.users).pow(2).mean()
        return bpr_loss(pos, neg) + self.l_w * reg

    # ---- scoring ------------------------------------------------------------------------------------
    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self._fused(*self.propagate())

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        eu, ei = self._fused(*self.propagate(users, items))
        return (eu * ei).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        um, im = self.propagate(users, items)
        if self.fusion == "per_modality":
            return {m: (u, i) for m, u, i in zip(self.modalities, um, im)}
        u_bar, i_bar = torch.stack(um).mean(0), torch.stack(im).mean(0)
        c = 1.0 / math.sqrt(2 * len(self.modalities))
        return {m: (torch.cat([u, u_bar], 1) * c, torch.cat([i_bar, i], 1) * c)
                for m, u, i in zip(self.modalities, um, im)}
