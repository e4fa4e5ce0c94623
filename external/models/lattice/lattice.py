"""LATTICE: Mining Latent Structures for Multimedia Recommendation
(Zhang, Zhu, Liu, Wu, Zhang, Wang & Wang, ACM MM 2021; arXiv 2104.09036; code: CRIPAC-DIG/LATTICE
``codes/Models.py`` + ``main.py``, re-implemented in enoche/MMRec ``src/models/lattice.py``).

What is implemented (paper Sec. 3; equations as in the released code):

* Initial modality-aware item-item graphs, built ONCE at construction from the raw features x^m:
  cosine similarity S^m_ij = x̂_i·x̂_j (x̂ = x/|x|); kNN sparsification keeping the ``top_k`` largest
  entries of each row WITH THEIR SIMILARITY VALUES (the item itself included; the code's
  ``build_knn_neighbourhood`` is weighted, not binary); normalised Laplacian Ŝ^m = D^{-1/2} S^m D^{-1/2},
  D = row sums.  Stored per modality as (index, value) pairs, n x top_k, found in row chunks by
  :func:`knn_graph` (memory O(items x top_k); no items x items matrix ever exists).
* Learned latent structures: projections x̃^m = W_m x^m + b_m (``factors_multimod`` wide, the code's
  image_trs / text_trs) and the same weighted kNN on them; fused with learnable modality weights
  α = softmax(w) (w initialised equal), A = Σ_m α_m kNN(x̃^m), normalised jointly L = D_A^{-1/2} A D_A^{-1/2};
  skip connection to the initial graphs:  S = (1 - λ) L + λ Σ_m α_m Ŝ^m,  λ = ``l_m``.
* Item-graph convolution: h = S^{L} E_i on the item ID embeddings, L = ``n_layers``.
* Combination with a CF backbone, ``cf``: ``lightgcn`` (mean of layers 0..K), ``ngcf`` (GC + bi-interaction linear
  layers of widths ``ws``, LeakyReLU, message dropout ``dl``, layers 1..K L2-normalised, mean readout) or
  ``mf``; K = ``n_ui_layers`` layers on the code's user-item matrix D^{-1}(A + I) (row-normalised with
  self-loops, not LightGCN's symmetric one).  Final  e_u = backbone user,
  e_i = backbone item + h_i / |h_i|;  ŷ_ui = e_u·e_i.
* Objective: BPR + ``l_w`` · (|e_u|² + |e_i|² + |e_j|²) / (2 · batch_size) on the final batch
  embeddings (the code's ``bpr_loss``: decay = regs[0], divided by the configured ``batch_size``).

Defaults (original parser; MMRec ``LATTICE.yaml`` agrees where both set a value): factors 64,
factors_multimod 64, top_k 10, l_m 0.9 (lambda_coeff), n_layers 1, cf lightgcn, n_ui_layers 2 (= len
of weight_size [64, 64]), ws [64, 64], dl [0.1, 0.1], lr 5e-4 (original default, inside MMRec's grid
{1e-4, 5e-4, 1e-3, 5e-3}), l_w 1e-5 (original regs[0], inside MMRec's grid {0, 1e-5, 1e-4, 1e-3}),
lr_decay 0.96 (both: lr · 0.96^(epoch/50) per epoch).  Batch size: 1024 in the original, 2048 in MMRec
(set ``batch_size``; the bench configs use 2048).  Xavier-uniform ID embeddings, default nn.Linear.

When the learned graph is rebuilt.  Both codes rebuild it (kNN included, dense n x n) in the FIRST batch
of every epoch (``build_item_graph``) and at every evaluation, and use it ``.detach()``-ed in the other
batches, so W_m, b_m and w get gradients from one batch per epoch.  Here the kNN INDEX of the learned
graph is recomputed once per epoch in :meth:`on_epoch_start` (and at every evaluation, in
:meth:`prepare_scoring`) from the current projections, in chunks (topk has no gradient anyway); the
edge VALUES α_m x̃̂_i·x̃̂_j and the joint normalisation are computed differentiably at that index as
gathered dot products (O(items · top_k · d)).  ``graph_grad``: ``first_batch`` (default, the released
code: values with gradient in the epoch's first batch, then S is frozen for the epoch as one CSR
operator) or ``every_batch`` (values recomputed with gradient in every batch, for the batch's items
only; not in the code, slower).

Deviations: (1) the codes fine-tune the raw features (``Embedding.from_pretrained(freeze=False)``);
here they are fixed inputs read through ``self.feature(m)`` (the attack surface), only W_m, b_m, w are
trained; (2) zero feature rows get zero similarity (``F.normalize``) and rows with non-positive degree
get D^{-1/2} = 0 instead of NaN; (3) the initial graph is never re-read from a cache file; (4) MMRec and
the original assume exactly two modalities (visual, textual); any number M >= 1 works here;
(5) triples come from the framework's uniform BPR sampler over training interactions (MMRec's scheme; the
original samples users first).

Hooks, and what an attack perturbs.  The score splits exactly into branches: the last item-graph hop
is linear, S = Σ_m S^m with S^m = (1 - λ) L^m + λ α_m Ŝ^m (L^m: the entries of L coming from modality
m's kNN, jointly normalised), so h = Σ_m h^m with h^m = S^m S^{L-1} E_i, and with the shared norm
e_i = i_cf + Σ_m h^m / |h|.  ``modality_embeddings`` returns ``"id"``: (e_u, i_cf) and, per modality
m, (e_u, h^m_i / |h_i|): the branch scores sum EXACTLY to ``score_pairs``, which equals ``score`` whenever
the stored kNN index is current (``score`` / :meth:`prepare_scoring` rebuild and store it).  Raw features
(``self.feature(m)``, replaceable) reach the score only through the learned graph's edge values (and
degrees) of the projected features; the initial graphs Ŝ^m are built from the clean features at
construction and are NEVER rebuilt, also not under attack.  ``score_pairs`` / ``modality_embeddings``
keep the kNN index of the last clean rebuild and recompute the values from the current (possibly
replaced) features, differentiably; :meth:`prepare_scoring` under replaced features rebuilds the
index from them for that evaluation only, as the codes rebuild the graph at every evaluation.
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
from elliot.errors import ConfigError
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, l2_reg, unique_index, gather_rows
from elliot.recommender.graph import propagate_mean, scipy_to_torch, user_item_adjacency
from elliot.recommender.knn import knn_graph
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp

Graph = Tuple[Tensor, List[Tensor]]  # (α, per-modality normalised learned values, rows x top_k)


# ---- sparse kNN graphs as (index, values), n x k ------------------------------------------------------
def knn_index(features: Tensor, k: int, chunk_size: int = 0) -> Tensor:
    """(n, k) column indices of the ``k`` most cosine-similar items of every row (no grad), by
    :func:`knn_graph` in chunks of ``chunk_size`` rows (default: ~2^20 similarities per chunk, which stay
    in cache: about 2x faster on CPU than knn_graph's 2^24 default on TikTok's 6.7k items)."""
    n = features.shape[0]
    chunk = int(chunk_size) if chunk_size and chunk_size > 0 else max(1, (1 << 20) // max(n, 1))
    return knn_graph(features, k, chunk)[1].view(n, -1)


def cosine_at(xn: Tensor, index: Tensor, rows: Optional[Tensor] = None) -> Tensor:
    """xn_i · xn_j for the pairs (i, index[i, r]) of ``rows`` (all when None): (rows, k), differentiable."""
    if rows is None:
        return torch.einsum("nd,nkd->nk", xn, gather_rows(xn, index))
    return torch.einsum("nd,nkd->nk", gather_rows(xn, rows), gather_rows(xn, index[rows]))


def inv_sqrt(deg: Tensor) -> Tensor:
    """deg^{-1/2}, 0 where deg <= 0 (the code's isinf -> 0, without NaNs for negative sums)."""
    return torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))


def laplacian_values(values: Tensor, index: Tensor) -> Tensor:
    """D^{-1/2} V D^{-1/2} of the n x n matrix with rows ``values`` at ``index`` (D = row sums)."""
    d = inv_sqrt(values.sum(1))
    return values * d.unsqueeze(1) * gather_rows(d, index)


def rw_normalized_ui_graph(train: sp.csr_matrix) -> sp.csr_matrix:
    """The codes' user-item matrix D^{-1}(A + I): bipartite adjacency plus self-loops, row-normalised."""
    adj = user_item_adjacency(train) + sp.eye(sum(train.shape), dtype=np.float32, format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    return (sp.diags(1.0 / deg) @ adj).tocsr().astype(np.float32)


class LATTICE(EmbeddingScoring, MultimodalRecommender):
    """LATTICE (Zhang et al., ACM MM 2021); see the module docstring."""

    name = "LATTICE"
    params = (
        Param("factors", int, 64, "size of user/item ID embeddings (embed_size)"),
        Param("factors_multimod", int, 64, "size of the projected features the learned graph is built on "
              "(feat_embed_dim)"),
        Param("lr", float, 5e-4, "Adam learning rate"),
        Param("l_w", float, 1e-5, "L2 weight on the batch's final embeddings, / batch_size (regs[0], reg_weight)"),
        Param("l_m", float, 0.9, "λ: weight of the initial graph in S = (1-λ) learned + λ initial (lambda_coeff)"),
        Param("top_k", int, 10, "neighbours kept per item in the kNN graphs (topk, knn_k)"),
        Param("n_layers", int, 1, "convolutions on the item-item graph"),
        Param("cf", str, "lightgcn", "user-item backbone (cf_model)", choices=("lightgcn", "ngcf", "mf")),
        Param("n_ui_layers", int, 2, "backbone layers (the codes: len(weight_size))"),
        Param("ws", "list[int]", [64, 64], "NGCF layer widths (weight_size; each must equal factors)"),
        Param("dl", "list[float]", [0.1, 0.1], "NGCF message-dropout probabilities (mess_dropout)"),
        Param("lr_decay", float, 0.96, "lr · lr_decay^(epoch/50) (the codes' scheduler; 1 = constant)"),
        Param("graph_grad", str, "first_batch", "learned-graph values with gradient in the epoch's first batch "
              "only (the code) or in every batch", choices=("first_batch", "every_batch")),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, km = int(self.factors), int(self.factors_multimod)
        if int(self.n_layers) < 1 or int(self.top_k) < 1:
            raise ConfigError("LATTICE: n_layers and top_k must be >= 1")
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i]
        self.proj = nn.ModuleList([nn.Linear(self.feature_dim(m), km) for m in self.modalities])
        self.modal_weight = nn.Parameter(torch.full((len(self.modalities),), 1.0 / len(self.modalities)))
        if self.cf == "ngcf":
            ws, dl, n = [int(w) for w in self.ws], [float(p) for p in self.dl], int(self.n_ui_layers)
            if len(ws) != n or len(dl) != n or any(w != k for w in ws):
                raise ConfigError(f"LATTICE ngcf: ws {ws} and dl {dl} need n_ui_layers={n} entries, every width = "
                                  f"factors={k} (the layer mean and e_i + h_i need equal widths, as in the code)")
            self.gc = nn.ModuleList([nn.Linear(k, k) for _ in ws])
            self.bi = nn.ModuleList([nn.Linear(k, k) for _ in ws])
            self.drop = nn.ModuleList([nn.Dropout(p) for p in dl])
        # ---- graphs (plain attributes: not parameters, not in the state dict) ----
        self.adj = None if self.cf == "mf" else SparseOp(scipy_to_torch(rw_normalized_ui_graph(dataset.train),
                                                                        self.device))
        self._init_idx, self._init_val = [], []
        with torch.no_grad():  # initial graphs Ŝ^m, from the clean features present now, never rebuilt
            for m in self.modalities:
                xn = F.normalize(self.feature(m).float(), dim=1)
                index = knn_index(xn, int(self.top_k))
                self._init_idx.append(index)
                self._init_val.append(laplacian_values(cosine_at(xn, index), index))
        self._idx: Optional[List[Tensor]] = None  # learned graph's kNN index per modality (per epoch)
        self._frozen: Optional[SparseOp] = None  # first_batch mode: the epoch's graph S, detached
        self.to(self.device)

    # ---- item-item graphs -----------------------------------------------------------------------
    def _projected(self) -> List[Tensor]:
        """x̃̂^m = normalize(W_m x^m + b_m) of all items, from the current (possibly replaced) features."""
        return [F.normalize(lin(self.feature(m)), dim=1) for m, lin in zip(self.modalities, self.proj)]

    @torch.no_grad()
    def _knn_indices(self) -> List[Tensor]:
        return [knn_index(p, int(self.top_k)) for p in self._projected()]

    def _learned(self, rows: Optional[Tensor] = None) -> Graph:
        """(α, [L^m rows]): the learned graph's normalised values at the stored kNN index, for ``rows``
        (sorted unique; all when None).  Degrees need the rows' neighbours, so values are computed for
        rows ∪ neighbours only.  Differentiable w.r.t. W_m, b_m, w and the features."""
        alpha = torch.softmax(self.modal_weight, 0)
        proj, idx = self._projected(), self._idx
        need = None if rows is None else unique_index(torch.cat([rows] + [i[rows].reshape(-1) for i in idx]),
                                                      self.n_items)[0]
        raw = [alpha[m] * cosine_at(p, i, need) for m, (p, i) in enumerate(zip(proj, idx))]
        d = inv_sqrt(sum(r.sum(1) for r in raw))
        if rows is None:
            return alpha, [r * d.unsqueeze(1) * gather_rows(d, i) for r, i in zip(raw, idx)]
        full = torch.zeros(self.n_items, device=d.device, dtype=d.dtype).index_copy(0, need, d)
        pos = torch.searchsorted(need, rows)
        return alpha, [gather_rows(r, pos) * gather_rows(d, pos).unsqueeze(1) * gather_rows(full, i[rows])
                       for r, i in zip(raw, idx)]

    def _hop(self, graph: Graph, x: Tensor, rows: Optional[Tensor]) -> List[Tensor]:
        """[S^m x restricted to ``rows``] per modality, S^m = (1-λ) L^m + λ α_m Ŝ^m; ``graph`` values for rows."""
        alpha, learned = graph
        lam, out = float(self.l_m), []
        for m, values in enumerate(learned):
            idx, i0, v0 = self._idx[m], self._init_idx[m], self._init_val[m]
            if rows is not None:
                idx, i0, v0 = idx[rows], i0[rows], v0[rows]
            part = torch.einsum("nk,nkd->nd", values, gather_rows(x, idx)) * (1 - lam)
            out.append(part + torch.einsum("nk,nkd->nd", v0, gather_rows(x, i0)) * (lam * alpha[m]))
        return out

    def _item_parts(self, rows: Optional[Tensor], graph: Optional[Graph] = None) -> List[Tensor]:
        """h^m = S^m S^{L-1} E_i for ``rows`` (sorted unique; all when None); Σ_m h^m = h = S^L E_i.
        ``graph``: full-row values to use (first_batch training); else computed from the features."""
        if self._idx is None:
            self._idx = self._knn_indices()
        x = self.embeddings[self.n_users:]
        if graph is None and int(self.n_layers) > 1:
            graph = self._learned(None)
        for _ in range(int(self.n_layers) - 1):
            x = sum(self._hop(graph, x, None))
        if graph is None:
            graph = self._learned(rows)
        elif rows is not None:
            graph = (graph[0], [gather_rows(v, rows) for v in graph[1]])
        return self._hop(graph, x, rows)

    # ---- backbone -----------------------------------------------------------------------------------
    def _backbone(self) -> Tuple[Tensor, Tensor]:
        """(users, items) of the user-item backbone ``cf``, all rows."""
        ego = self.embeddings
        if self.cf == "lightgcn":
            out = propagate_mean(self.adj, ego, int(self.n_ui_layers))
        elif self.cf == "ngcf":
            total = ego
            for gc, bi, drop in zip(self.gc, self.bi, self.drop):
                side = self.adj @ ego
                ego = drop(F.leaky_relu(gc(side)) + F.leaky_relu(bi(ego * side)))
                total = total + F.normalize(ego, dim=1)
            out = total / (len(self.gc) + 1)
        else:
            out = ego
        return out[: self.n_users], out[self.n_users:]

    def _branches(self, items: Tensor) -> Tuple[Tensor, Tensor, List[Tensor], Tensor]:
        """(users_all, items_all, [h^m / |h|] for unique items, inverse) - the pieces of every hook."""
        users_all, items_all = self._backbone()
        uniq, inv = unique_index(items, self.n_items)
        parts = self._item_parts(uniq)
        scale = 1.0 / sum(parts).norm(dim=1, keepdim=True).clamp_min(1e-12)  # F.normalize's eps
        return users_all, items_all, [p * scale for p in parts], inv

    # ---- training -----------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self._idx = self._knn_indices()
        self._frozen = None

    def lr_multiplier(self, epoch: int) -> float:
        """The codes' decay lr_decay^(epoch/50), times ``lr_sched`` when one is given."""
        return super().lr_multiplier(epoch) * float(self.lr_decay) ** (epoch / 50)

    def _graph_op(self, graph: Graph) -> SparseOp:
        """S = Σ_m (1-λ) L^m + λ α_m Ŝ^m (full rows of ``graph``, no gradient) as one CSR operator."""
        alpha, learned = graph
        lam, rows = float(self.l_m), torch.arange(self.n_items, device=alpha.device)
        index, values = [], []
        for m, v in enumerate(learned):
            for idx, val in ((self._idx[m], v * (1 - lam)), (self._init_idx[m], self._init_val[m] * (lam * alpha[m]))):
                index.append(torch.stack([rows.repeat_interleave(idx.shape[1]), idx.reshape(-1)]))
                values.append(val.detach().reshape(-1))
        shape = (self.n_items, self.n_items)
        coo = torch.sparse_coo_tensor(torch.cat(index, 1), torch.cat(values), shape, check_invariants=False)
        return SparseOp(coo.coalesce())

    def loss(self, batch: TripletBatch) -> Tensor:
        if self._idx is None:
            self.on_epoch_start(0)
        n = len(batch.users)
        users_all, items_all = self._backbone()
        items = torch.cat([batch.pos_items, batch.neg_items])
        if self.graph_grad == "every_batch":  # values with gradient, only for the batch's items
            uniq, inv = unique_index(items, self.n_items)
            i = (items_all.index_select(0, uniq) + F.normalize(sum(self._item_parts(uniq)), dim=1)).index_select(0, inv)
        else:
            if self._frozen is None:  # the epoch's first batch: S with gradient, then frozen
                graph = self._learned(None)
                self._frozen = self._graph_op(graph)
                h = sum(self._item_parts(None, graph))
            else:
                h = self.embeddings[self.n_users:]
                for _ in range(int(self.n_layers)):
                    h = self._frozen @ h
            i = (items_all + F.normalize(h, dim=1)).index_select(0, items)
        u = users_all.index_select(0, batch.users)
        scores = (u.repeat(2, 1) * i).sum(-1)
        reg = l2_reg(u, i, batch_size=int(self.hp.get("batch_size", n)))
        return bpr_loss(scores[:n], scores[n:]) + float(self.l_w) * reg

    # ---- scoring ------------------------------------------------------------------------------------
    def _final(self) -> Tuple[Tensor, Tensor]:
        """All users / item vectors, with the learned graph's kNN index rebuilt from the current projections
        (the codes rebuild the graph at every evaluation).  The new index is kept (and a first_batch frozen
        graph dropped) unless features are replaced: then it serves this computation only."""
        previous, self._idx = self._idx, self._knn_indices()
        try:
            users_all, items_all = self._backbone()
            return users_all, items_all + F.normalize(sum(self._item_parts(None)), dim=1)
        finally:
            if self._feature_overrides:
                self._idx = previous
            else:
                self._frozen = None

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self._final()

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        users_all, items_all, parts, inv = self._branches(items)
        return (gather_rows(users_all, users) * (gather_rows(items_all, items) + gather_rows(sum(parts), inv))).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        users_all, items_all, parts, inv = self._branches(items)
        hu = gather_rows(users_all, users)
        out = {"id": (hu, gather_rows(items_all, items))}
        for m, p in zip(self.modalities, parts):
            out[m] = (hu, gather_rows(p, inv))
        return out
