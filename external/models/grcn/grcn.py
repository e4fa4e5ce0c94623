"""GRCN: Graph-Refined Convolutional Network for Multimedia Recommendation with Implicit Feedback
(Wei, Wang, Nie, He, Chua; ACM MM 2020).

Graph refining layer, per modality m (paper Sec. 3.1):

* prototypical network: item content f_i^m = L2norm(LeakyReLU(W_m x_i^m + b_m)) and a user prototype
  (preference) p_u^m, L2-normalised;
* routing (``num_routing`` iterations, only with ``routing: paper``; see below): α_ui = softmax over i in
  N(u) of p_u · f_i, p_u <- L2norm(p_u + Σ_{i in N(u)} α_ui f_i);
* affinity of every edge, from s_ui = p_u · f_i: for the message item -> user, the softmax of s over the
  user's items; for the message user -> item, the softmax over the item's users.  The same attention
  gives the modality's content representations  u_m = p_u + Σ_i α^(u)_ui f_i,  i_m = f_i + Σ_u α^(i)_ui p_u
  (the released code's CGCN: x + GATConv(x), without activation);
* integration over modalities (``weight_mode``): ``confid`` - each node has a trainable confidence per
  modality c_v^m and an edge's weight is max_m α^m · c_source^m; ``max`` - max_m α^m; ``mean`` - the mean;
* pruning (``pruning``): weight <- ReLU(weight), i.e. edges with negative affinity are removed.

Graph convolution on the refined graph (the released code's EGCN): x^(0) = L2norm(ID embeddings of users
and items), x^(l+1)_v = Σ_{w in N(v)} weight_{w->v} x^(l)_w (``aggr_mode = add``; ``mean`` divides by the
degree), id_rep = Σ_{l=0..L} x^(l) with L = ``n_layers``.

Representations are concatenated (``fusion_mode = concat``):  e_u = [id_u, u_m1, u_m2, ...],
e_i = [id_i, i_m1, i_m2, ...];  s(u, i) = e_u · e_i = id_u · id_i + Σ_m u_m · i_m.  Loss: BPR (mean over
the batch) + l_w · (mean(E_id[u]²) + mean(E_id[i, j]²) + Σ_m mean(P_m[u]²)) (the released code's
regulariser; ``l_w`` is its ``weight_decay``).

Defaults (released code, github.com/weiyinwei/GRCN main.py, and MMRec's grcn.py / GRCN.yaml): factors
(dim_E) 64, dim_latent (dim_C) 64, num_routing 3 (MMRec passes its ``n_layers: 3`` there; it acts with
``routing: paper`` only), n_layers 2 (EGCN's two hard-coded layers), weight_mode confid, pruning true,
aggr_mode add, has_act false, lr 1e-4, l_w 1e-5 (``l_r`` / ``weight_decay``).  Edge dropout of the
released code defaults to 0 and is not implemented.

Routing (``routing``).  In the released code (and in MMRec) the routing messages only flow along
user -> item edges (PyG's source_to_target), so the user prototypes never receive messages and the routing
iterations leave them unchanged: p_u = L2norm(P_m[u]).  That is the default here (``routing: released``):
it is what the GRCN numbers we compare with (MMRec's, and the tables that run the released code)
compute.  ``routing: paper`` updates the prototypes as the paper describes (``num_routing`` iterations);
on TikTok it pulls the prototypes towards the centroid of the user's item features and costs about half
of the validation Recall@20 (docs/results_notes.md, "GRCN and MMGCN against the anchors").

Implementation (no torch_scatter / PyG MessagePassing; same values and gradients as the plain autograd
formulation, up to float32 rounding - see the tests' dense reference).  Every edge-valued operation is a
fused sparse kernel on the fixed CSR structure of R and R^T (SDDMM for the logits, SpMM for the
aggregations) inside custom autograd Functions with hand-written backward passes, so no per-edge
(E x d) tensor is ever materialised.  All modalities run at once, as the block-diagonal stack of one copy
of R per modality (one kernel call per step instead of one per modality).  One attention step (logits,
both segment softmaxes, both aggregations) is one Function (:class:`_Attention`); its logits are cosines
of L2-normalised rows, |s| <= 1, so the softmaxes skip the max-shift and share one exp (the same
softmax).  The L2 normalisation has a fused backward, and the ID graph convolution propagates users and
items together with the (U+I) x (U+I) matrix [[0, R_{w item->user}], [R^T_{w user->item}, 0]] (``mean``
aggregation folds 1/degree into its values).

Hooks.  The score is exactly the sum of the branch inner products: ``"id"`` -> (id_u, id_i) and, per
modality, m -> (u_m, i_m).  Branch m's embeddings depend on modality m's features only; the ``"id"``
branch depends on every modality's features through the refined edge weights (an attack on one
modality also re-weights the ID graph).
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, gather_rows
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import csr_mm


_EPS = 1e-12  # F.normalize's eps


def _segment_softmax(logits: Tensor, index: Tensor, n: int) -> Tensor:
    """Softmax of ``logits`` within the groups given by ``index`` (values in 0..n-1); the reference
    implementation (the model uses the fused, shift-free :class:`_Attention`, whose logits are bounded)."""
    top = torch.full((n,), float("-inf"), dtype=logits.dtype, device=logits.device)
    top = top.scatter_reduce(0, index, logits.detach(), "amax", include_self=True)
    ex = torch.exp(logits - top[index])
    denom = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_add_(0, index, ex)
    return ex / denom[index]


def _segment_sum(x: Tensor, index: Tensor, n: int) -> Tensor:
    return torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, index, x)


class _L2Normalize(torch.autograd.Function):
    """``F.normalize(x, dim=1)`` = x / max(|x|, eps), with the backward written out,
    (g - y (y . g) [|x| >= eps]) / max(|x|, eps): four passes and one buffer instead of autograd's eight
    passes and six buffers."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        n = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        y = x / n.clamp_min(_EPS)
        ctx.save_for_backward(y, n)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        y, n = ctx.saved_tensors
        out = y * grad
        dot = out.sum(1, keepdim=True).masked_fill_(n < _EPS, 0.0)
        return torch.addcmul(grad, y, dot, value=-1.0, out=out).div_(n.clamp_min(_EPS))


def _normalize(x: Tensor) -> Tensor:
    return _L2Normalize.apply(x)


def _csr_mm(crow: Tensor, col: Tensor, values: Tensor, x: Tensor, shape: Tuple[int, int]) -> Tensor:
    """(sparse CSR with ``values``) @ x, by the shared CPU-friendly product :func:`csr_mm`."""
    return csr_mm(torch.sparse_csr_tensor(crow, col, values, size=shape), x)


class _Sparse:
    """The fixed sparsity pattern of an (n x m) matrix A with entries e = 0..nnz-1 in CSR order, and the
    CSR structure of A^T (with the entry id of each of its positions), so that entry-valued operations
    run as fused sparse kernels (no autograd inside; see :class:`_SDDMM`, :class:`_SpMM`):

    * ``_sddmm(a, b)``:  (nnz,)  a[row_e] . b[col_e]
    * ``_mm(w, x)``:  (n, d)  A_w x  (A with values w)
    * ``_mm_t(w, x)``:  (m, d)  A_w^T x
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, shape: Tuple[int, int], device: torch.device):
        n, m = shape
        nnz = len(indices)
        order = sp.csr_matrix((np.arange(1, nnz + 1, dtype=np.float64), indices, indptr), shape=shape)
        order = order.T.tocsr()
        order.sort_indices()
        idx = np.int32 if max(nnz, n, m) < 2 ** 31 - 1 else np.int64  # the kernels are faster with int32
        as_idx = lambda a: torch.as_tensor(np.asarray(a, dtype=idx), device=device)  # noqa: E731
        as_long = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
        self.shape, self.nnz = (n, m), nnz
        self.rows = as_long(np.repeat(np.arange(n), np.diff(indptr)))
        self.cols = as_long(indices)
        self.crow, self.col = as_idx(indptr), as_idx(indices)
        self.crow_t, self.col_t = as_idx(order.indptr), as_idx(order.indices)
        self.perm_t = as_long(order.data - 1)  # entry id of every position of A^T's CSR
        with warnings.catch_warnings():  # sparse CSR "beta" warning, once
            warnings.simplefilter("ignore")
            self.pattern = torch.sparse_csr_tensor(self.crow, self.col, torch.ones(nnz, device=device),
                                                   size=(n, m))

    def _sddmm(self, a: Tensor, b: Tensor) -> Tensor:
        pattern = self.pattern if self.pattern.dtype == a.dtype else self.pattern.to(a.dtype)
        if a.device.type != "cpu":
            return torch.sparse.sampled_addmm(pattern, a.contiguous(), b.T, beta=0.0).values()
        # into a fresh result (without ``out`` the kernel first copies the pattern's values)
        out = torch.sparse_csr_tensor(self.crow, self.col, a.new_empty(self.nnz), size=self.shape)
        torch.sparse.sampled_addmm(pattern, a.contiguous(), b.T, beta=0.0, out=out)
        return out.values()

    def _mm(self, w: Tensor, x: Tensor) -> Tensor:
        return _csr_mm(self.crow, self.col, w, x, self.shape)

    def _mm_t(self, w: Tensor, x: Tensor, w_t: Optional[Tensor] = None) -> Tensor:
        """``w_t``: w already in A^T's order (w[perm_t]), when the caller has it."""
        w_t = w.index_select(0, self.perm_t) if w_t is None else w_t
        return _csr_mm(self.crow_t, self.col_t, w_t, x, (self.shape[1], self.shape[0]))

    # with autograd
    def sddmm(self, a: Tensor, b: Tensor) -> Tensor:
        return _SDDMM.apply(self, a, b)

    def mm(self, w: Tensor, x: Tensor, w_t: Optional[Tensor] = None) -> Tensor:
        """A_w x; ``w_t`` (optional, not differentiated): w[perm_t], for the backward's A_w^T product."""
        return _SpMM.apply(self, w, x, False, w_t)

    def mm_t(self, w: Tensor, x: Tensor) -> Tensor:
        return _SpMM.apply(self, w, x, True, None)


class _Bipartite(_Sparse):
    """The training edges (u_e, i_e), e = 0..E-1 in user-major CSR order, as the pattern of R (users x
    items); with ``copies`` = M, the block-diagonal stack of M copies of R (users and items of copy m are
    m*U + u and m*I + i, its edges m*E + e), so that M modalities run through every kernel at once.

    * ``dot(p, f)``:  (E,)  p[u_e] . f[i_e]                 (SDDMM)
    * ``to_users(w, f)``:  (U, d)  sum_e w_e f[i_e] at u_e   (SpMM with R, values w)
    * ``to_items(w, p)``:  (I, d)  sum_e w_e p[u_e] at i_e   (SpMM with R^T)
    """

    def __init__(self, train, device: torch.device, copies: int = 1):
        r = sp.csr_matrix(train, dtype=np.float32, copy=True)
        r.sum_duplicates()
        r.sort_indices()
        self.base = r  # one copy, canonical, values 1
        if copies > 1:
            r = sp.block_diag([r] * copies, format="csr")
            r.sort_indices()
        super().__init__(r.indptr, r.indices, r.shape, device)
        self.n_users, self.n_items = r.shape
        self.users, self.items = self.rows, self.cols

    def dot(self, p: Tensor, f: Tensor) -> Tensor:
        return self.sddmm(p, f)

    def to_users(self, w: Tensor, f: Tensor) -> Tensor:
        return self.mm(w, f)

    def to_items(self, w: Tensor, p: Tensor) -> Tensor:
        return self.mm_t(w, p)

    def adjacency(self, device: torch.device) -> _Sparse:
        """The (U+I) x (U+I) pattern [[0, R], [R^T, 0]]: its entries are the edges e (user rows) followed
        by the edges perm_t (item rows), i.e. values  cat(w_item->user, w_user->item[perm_t])."""
        r = self.base
        rt = r.T.tocsr()
        rt.sort_indices()
        indptr = np.concatenate([r.indptr, rt.indptr[1:] + r.nnz])
        indices = np.concatenate([r.indices + r.shape[0], rt.indices])
        n = r.shape[0] + r.shape[1]
        return _Sparse(indptr, indices, (n, n), device)


class _SDDMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g: _Sparse, a: Tensor, b: Tensor) -> Tensor:
        ctx.g = g
        ctx.save_for_backward(a, b)
        return g._sddmm(a, b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        g = ctx.g
        ga = g._mm(grad, b) if ctx.needs_input_grad[1] else None
        gb = g._mm_t(grad, a) if ctx.needs_input_grad[2] else None
        return None, ga, gb


class _SpMM(torch.autograd.Function):
    """A_w x (``transpose``: A_w^T x)."""

    @staticmethod
    def forward(ctx, g: _Sparse, w: Tensor, x: Tensor, transpose: bool, w_t: Optional[Tensor]) -> Tensor:
        ctx.g, ctx.transpose = g, transpose
        ctx.save_for_backward(w, x, w_t)
        return g._mm_t(w, x) if transpose else g._mm(w, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        w, x, w_t = ctx.saved_tensors
        g = ctx.g
        gw = gx = None
        if ctx.transpose:
            if ctx.needs_input_grad[1]:
                gw = g._sddmm(x, grad)
            if ctx.needs_input_grad[2]:
                gx = g._mm(w, grad)
        else:
            if ctx.needs_input_grad[1]:
                gw = g._sddmm(grad, x)
            if ctx.needs_input_grad[2]:
                gx = g._mm_t(w, grad, w_t)
        return None, gw, gx, None, None


def _softmax_backward(a: Tensor, grad: Tensor, index: Tensor, n: int) -> Tensor:
    """d(loss)/d(logits) of a segment softmax a, given d(loss)/da:  a (grad - sum_seg a grad)."""
    t = a * grad
    return t.sub_(a * _segment_sum(t, index, n).index_select(0, index))


class _Attention(torch.autograd.Function):
    """One attention step of the refining layer on the bipartite graph g (fused forward and backward):
    s_e = p[u_e] . f[i_e];  a_u = softmax of s over each user's edges;  hu = R_{a_u} f;  and if ``both``,
    a_i = softmax of s over each item's edges and  hi = R^T_{a_i} p.  Returns (a_u, hu[, a_i, hi]).

    The callers pass L2-normalised rows p and f, so |s| <= 1 and the softmaxes need no max-shift (exp(s)
    lies in [1/e, e]): exp(s) is computed once and shared by both."""

    @staticmethod
    def forward(ctx, g: _Bipartite, p: Tensor, f: Tensor, both: bool):
        ctx.set_materialize_grads(False)
        ctx.g, ctx.both = g, both
        ex = g._sddmm(p, f).exp_()
        a_u = ex / _segment_sum(ex, g.users, g.n_users).index_select(0, g.users)
        hu = g._mm(a_u, f)
        if not both:
            ctx.save_for_backward(p, f, a_u)
            return a_u, hu
        a_i = ex.div_(_segment_sum(ex, g.items, g.n_items).index_select(0, g.items))
        hi = g._mm_t(a_i, p)
        ctx.save_for_backward(p, f, a_u, a_i)
        return a_u, hu, a_i, hi

    @staticmethod
    def backward(ctx, *grads):
        g = ctx.g
        p, f, a_u = ctx.saved_tensors[:3]
        g_au, g_hu = grads[:2]
        if g_hu is not None:
            d_au = g._sddmm(g_hu, f)
            g_au = d_au if g_au is None else d_au.add_(g_au)
        gs = None if g_au is None else _softmax_backward(a_u, g_au, g.users, g.n_users)
        a_i = g_ai = g_hi = None
        if ctx.both:
            a_i = ctx.saved_tensors[3]
            g_ai, g_hi = grads[2:]
            if g_hi is not None:
                d_ai = g._sddmm(p, g_hi)
                g_ai = d_ai if g_ai is None else d_ai.add_(g_ai)
            if g_ai is not None:
                gs_i = _softmax_backward(a_i, g_ai, g.items, g.n_items)
                gs = gs_i if gs is None else gs.add_(gs_i)
        gp = gf = None
        if ctx.needs_input_grad[1]:
            parts = ([g._mm(gs, f)] if gs is not None else []) + ([g._mm(a_i, g_hi)] if g_hi is not None else [])
            gp = _sum(parts, p)
        if ctx.needs_input_grad[2]:
            parts = ([g._mm_t(gs, p)] if gs is not None else []) + ([g._mm_t(a_u, g_hu)] if g_hu is not None else [])
            gf = _sum(parts, f)
        return None, gp, gf, None


def _sum(parts: List[Tensor], like: Tensor) -> Tensor:
    if not parts:
        return torch.zeros_like(like)
    out = parts[0]
    for t in parts[1:]:
        out = out.add_(t)
    return out


class GRCN(EmbeddingScoring, MultimodalRecommender):
    """GRCN (Wei et al., ACM MM 2020); see the module docstring."""

    name = "GRCN"
    params = (
        Param("factors", int, 64, "ID embedding size (dim_E)"),
        Param("dim_latent", int, 64, "size of the per-modality prototypes / content representations (dim_C)",
              aliases=("factors_multimod",)),
        Param("n_layers", int, 2, "graph convolution layers over the refined graph", aliases=("num_layers",)),
        Param("num_routing", int, 3, "routing iterations of the prototypical network", aliases=("num_routings",)),
        Param("routing", str, "released", "released: the prototypes are not updated by the routing iterations "
              "(what the released code and MMRec compute); paper: they are (the paper's Sec. 3.1)",
              choices=["released", "paper"]),
        Param("lr", float, 1e-4, "Adam learning rate"),
        Param("l_w", float, 1e-5, "weight of the mean-square regulariser of ID embeddings and preferences"),
        Param("weight_mode", str, "confid", "how modality affinities are integrated", choices=["confid", "max", "mean"]),
        Param("pruning", bool, True, "drop edges with negative weight (ReLU on the edge weights)"),
        Param("aggr_mode", str, "add", "aggregation of the refined graph convolution", choices=["add", "mean"],
              aliases=("aggregation",)),
        Param("has_act", bool, False, "LeakyReLU after every graph convolution"),
        Param("fusion_mode", str, "concat", "final representation [id ; content] (the paper; the Elliot fork's "
              "id / mean fusions are not implemented)", choices=["concat"]),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, c, n_mod = int(self.factors), int(self.dim_latent), len(self.modalities)
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, k)))
        self.preference = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, c))) for _ in self.modalities])
        self.mlp = nn.ModuleList([nn.Linear(self.feature_dim(m), c) for m in self.modalities])
        for lin in self.mlp:
            nn.init.xavier_normal_(lin.weight)
        self.confidence = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, n_mod)))
        self.graph = _Bipartite(dataset.train, self.device)  # R: the refined ID graph's edges
        self._stacked = _Bipartite(dataset.train, self.device, copies=n_mod)  # one block of R per modality
        self._adj = self.graph.adjacency(self.device)  # [[0, R], [R^T, 0]] for the ID graph convolution
        self._item_nodes = self.graph.items + self.n_users
        deg = np.concatenate([np.diff(self.graph.base.indptr), np.bincount(self.graph.base.indices,
                                                                          minlength=self.n_items)])
        deg = torch.as_tensor(np.maximum(deg, 1), dtype=torch.float32, device=self.device)
        self.register_buffer("_adj_deg", deg[self._adj.rows], persistent=False)  # degree of each entry's row
        self.to(self.device)

    # ---- graph refining layer ------------------------------------------------------------------------
    def _routing_steps(self) -> int:
        """Routing iterations that change the prototypes: none for the released code's routing (its messages
        never reach the users), ``num_routing`` for the paper's."""
        return int(self.num_routing) if self.routing == "paper" else 0

    def _refine(self) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """All modalities at once, on the block-diagonal graph: content reps of users (M, U, c) and items
        (M, I, c), edge attentions item->user and user->item, (E, M) each, and the preferences (M, U, c)."""
        g, n_mod, e = self._stacked, len(self.modalities), self.graph.nnz
        f = torch.cat([F.leaky_relu(self.mlp[b](self.feature(m))) for b, m in enumerate(self.modalities)])
        f = _normalize(f)
        pref = torch.cat(list(self.preference))
        p = _normalize(pref)
        for _ in range(self._routing_steps()):
            _, hu = _Attention.apply(g, p, f, False)
            p = _normalize(hu.add_(p))  # (in place: the kernels' outputs are fresh and not saved)
        to_user, hu, to_item, hi = _Attention.apply(g, p, f, True)
        if self.has_act:
            hu, hi = F.leaky_relu(hu), F.leaky_relu(hi)
        users = hu.add_(p).view(n_mod, self.n_users, -1)
        items = hi.add_(f).view(n_mod, self.n_items, -1)
        return users, items, to_user.view(n_mod, e).T, to_item.view(n_mod, e).T, pref.view(n_mod, self.n_users, -1)

    def _edge_weights(self, to_user: Tensor, to_item: Tensor) -> Tuple[Tensor, Tensor]:
        """Integrated (and pruned) weights of the messages item->user and user->item, (E,) each."""
        if self.weight_mode == "mean":
            w_user, w_item = to_user.mean(1), to_item.mean(1)
        elif self.weight_mode == "max":
            w_user, w_item = to_user.max(1).values, to_item.max(1).values
        else:  # confid: scaled by the confidence of the message's source node
            w_user = (to_user * self.confidence.index_select(0, self._item_nodes)).max(1).values
            w_item = (to_item * self.confidence.index_select(0, self.graph.users)).max(1).values
        if self.pruning:
            w_user, w_item = F.relu(w_user), F.relu(w_item)
        return w_user, w_item

    def _id_gcn(self, w_user: Tensor, w_item: Tensor) -> Tensor:
        """The refined-graph convolution over all U + I nodes at once: (U + I, factors)."""
        values = torch.cat([w_user, w_item.index_select(0, self.graph.perm_t)])
        if self.aggr_mode == "mean":
            values = values / self._adj_deg
        values_t = values.detach().index_select(0, self._adj.perm_t)  # shared by the layers' backward
        x = _normalize(self.id_embedding)
        out = x
        for layer in range(int(self.n_layers)):
            x = self._adj.mm(values, x, values_t)
            if self.has_act:
                x = F.leaky_relu(x)
            out = out + x if layer == 0 else out.add_(x)  # x^(0), x^(1) are saved by the kernels
        return out

    def _forward(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """ID representations (U + I, factors), content ones of users (M, U, c) and items (M, I, c), and
        the (raw) preferences (M, U, c)."""
        users, items, to_user, to_item, pref = self._refine()
        return self._id_gcn(*self._edge_weights(to_user, to_item)), users, items, pref

    def branches(self) -> Tuple[List[Tensor], List[Tensor]]:
        """Per branch (``"id"`` first, then the modalities): all users' and all items' representations."""
        ids, users, items, _ = self._forward()
        return [ids[: self.n_users]] + list(users.unbind(0)), [ids[self.n_users:]] + list(items.unbind(0))

    def propagate(self) -> Tuple[Tensor, Tensor]:
        users, items = self.branches()
        return torch.cat(users, 1), torch.cat(items, 1)

    # ---- training -------------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        ids, users, items, pref = self._forward()  # gather the batch rows of all branches at once
        nu, n = self.n_users, len(batch.users)
        rows = torch.cat([batch.users, batch.pos_items + nu, batch.neg_items + nu])
        e_id = ids.index_select(0, rows).view(3, n, -1)  # (user, pos, neg) x batch x factors
        e_u = users.index_select(1, batch.users)  # (M, n, c)
        e_i = items.index_select(1, torch.cat([batch.pos_items, batch.neg_items]))
        e_i = e_i.view(-1, 2, n, e_i.shape[-1])  # (M, pos / neg, n, c)
        scores = (e_id[1:] * e_id[0]).sum(-1) + (e_i * e_u.unsqueeze(1)).sum((0, 3))  # (pos, neg) x batch
        sq = self.id_embedding.index_select(0, rows).pow(2)
        reg = sq[:n].mean() + sq[n:].mean() + pref.index_select(1, batch.users).pow(2).mean((1, 2)).sum()
        return bpr_loss(scores[0], scores[1]) + self.l_w * reg

    # ---- scoring --------------------------------------------------------------------------------------
    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self.propagate()

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        eu, ei = self.propagate()
        return (gather_rows(eu, users) * gather_rows(ei, items)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        us, its = self.branches()
        return {name: (gather_rows(u, users), gather_rows(i, items))
                for name, u, i in zip(["id"] + list(self.modalities), us, its)}

    # ---- Modality Balancing ---------------------------------------------------------------------------
    def distillation_embedder(self, modality: str, users: Tensor, items: Tensor, clean_item_emb: Optional[Tensor]):
        """The exact fast embedder δ -> e_i^v of Modality Balancing
        (:func:`elliot.training.defenses.modality_balancing.embedder_for`).  Branch v's item representations
        depend on modality v's features, MLP and preferences only (the ID graph convolution and the other
        modalities' refining are not needed): modality v's refining layer alone, on one copy of the graph (the
        stacked run is block-diagonal, so the same values)."""
        from elliot.recommender.base import unique_index

        b = self.modalities.index(modality)
        x = self.feature(modality).detach()
        uniq, _ = unique_index(items, x.shape[0])

        def embed(delta: Tensor) -> Tensor:
            f = _normalize(F.leaky_relu(self.mlp[b](x.index_add(0, uniq, delta))))
            p = _normalize(self.preference[b])
            for _ in range(self._routing_steps()):
                _, hu = _Attention.apply(self.graph, p, f, False)
                p = _normalize(hu.add_(p))
            _, hu, _, hi = _Attention.apply(self.graph, p, f, True)
            if self.has_act:
                hi = F.leaky_relu(hi)
            return gather_rows(hi.add_(f), items)

        return embed
