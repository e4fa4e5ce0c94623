r"""SMORE: Spectrum-based Modality Representation Fusion Graph Convolutional Network for Multimodal
Recommendation (Ong & Khong, WSDM 2025; arXiv 2412.14978; code: kennethorq/SMORE, shipped in enoche/MMRec
``src/models/smore.py`` + ``src/configs/model/SMORE.yaml``).

What is implemented (paper Sec. 3 with the shipped code's choices; M modalities, ⊙ elementwise, d = ``factors``):

* Projection and spectrum (Sec. 3.2): f_i^m = W_m x_i^m + b_m (d wide, the code's image_trs / text_trs) and its
  spectrum F^m = rfft(f^m) along the embedding dimension (orthonormal).  Uni-modal denoising with one learned
  complex filter per modality, c^m = irfft(F^m ⊙ w^m); cross-modal fusion, the product of the spectra (a
  circular convolution of the modalities) filtered once more, c^f = irfft(w^f ⊙ Π_m F^m)
  (:class:`~elliot.recommender.spectral.SpectralFilter`).
* Gated item views: ẽ^m = e_i ⊙ σ(W_g^m c^m + b_g^m), ẽ^f = e_i ⊙ σ(W_g^f c^f + b_g^f) (e_i the item ID
  embedding).
* Behavioural view: LightGCN on Â = D^{-1/2} A D^{-1/2}, K = ``n_ui_layers``, mean readout:
  ē = 1/(K+1) Σ_k Â^k [e_u; e_i]  (the "content" embeddings).
* Item-item views (Sec. 3.3): per modality the weighted kNN graph S^m of the raw features built ONCE
  (``top_k`` cosine neighbours with their values, item itself included, D^{-1/2} S D^{-1/2},
  :func:`~elliot.recommender.knn.knn_laplacian`); the fusion graph S^f is their elementwise MAX over the union
  of their entries (the code's ``max_pool_fusion``).  h^v = (S^v)^L ẽ^v for v ∈ {1..M, f}, L = ``n_layers``;
  users h_u^v = Σ_i Â_ui h_i^v;  h^v = [h_u^v; h_i^v].
* Modality-aware preference (Sec. 3.4), row by row:
      a^m = softmax_dim(W_2^m tanh(W_1^m h^f + b_1^m))      (a softmax over the d dimensions, the code's query_v)
      p^v = dropout(σ(W_p^v ē + b_p^v))                    (v ∈ {1..M, f}; ``dropout``, training only)
      h^side = (Σ_m p^m ⊙ a^m ⊙ h^m + p^f ⊙ h^f) / (M + 1)
  final e*_u = ē_u + h^side_u, e*_i = ē_i + h^side_i, score ŷ_ui = e*_u · e*_i.
* Objective (Sec. 3.5):  L = BPR(e*_u, e*_i, e*_j) + ``l_w`` (|e*_u|² + |e*_i|² + |e*_j|²) / (2 · batch_size)
  + ``cl_loss`` [InfoNCE(h^side_i, ē_i) + InfoNCE(h^side_u, ē_u)], BPR = mean -ln σ(s_ui - s_uj), the L2 term
  divided by the CONFIGURED batch size (the code's self.batch_size), InfoNCE over the batch's positives resp.
  users (rows L2-normalised, in-batch negatives, duplicates kept, τ = ``temp``).

Defaults: MMRec SMORE.yaml / overall.yaml and the authors' README table (Sports row): factors 64, lr 1e-3
(Adam, no weight decay), lr_sched (0.96, 50), n_ui_layers 3 (grid {3, 4}), n_layers 1, knn_k 10 (grid
{10, 15, 20, 40}), reg_weight 1e-4 (grid {1e-5, 1e-4}), cl_loss 0.01, dropout_rate 0 (grid {0, 0.1}),
temperature 0.2.  ``image_knn_k`` / ``text_knn_k`` (MMRec's names) set k of the visual / textual graph;
every other modality uses ``top_k``.  ``lambda_coeff`` is read by nothing in the code and is not exposed.
Initialisation: Xavier-uniform ID embeddings, N(0, 1) spectral weights, default nn.Linear (as the code).

Deviations: (1) the code fine-tunes the raw features (``from_pretrained(freeze=False)``); here they are fixed
inputs read through ``self.feature(m)`` unless ``fine_tune_features: true`` (then trained as the code does; the
kNN graphs stay those of the raw features, built once, as the code's); (2) the code hard-codes two modalities (image, text); here any M ≥ 1
(the fusion spectrum is the product of all M spectra, the fusion graph the max over all M graphs, side / (M+1));
(3) no kNN cache file, zero feature rows give zero similarity (no NaNs); (4) the preference dropout draws from
the model's own generator seeded by ``seed`` (reproducible) and the preference module is evaluated only for the
rows a batch needs (row-wise: the same values as for all nodes).

Hooks.  With q^m = p^m ⊙ a^m ⊙ h^m and q^f = p^f ⊙ h^f, h^side = Σ_m c^m exactly for
c^m = (q^m + q^f / M) / (M + 1): the cross-modal fusion view depends on every modality and is shared equally by
the modality branches.  ``modality_embeddings``: ``"id"`` (e*_u, ē_i) and per modality m (e*_u, c_i^m); the
branch scores sum to ``score_pairs``.  Features reach the score through the projections, spectra and gates
(differentiably); the kNN graphs are built from the clean features at construction and never rebuilt.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, gather_rows
from elliot.recommender.contrastive import rows_info_nce
from elliot.recommender.graph import propagate_mean, scipy_to_torch, symmetric_normalize, user_item_adjacency
from elliot.recommender.knn import knn_laplacian
from elliot.recommender.multimodal import ContentPlusPartsHooks, MultimodalRecommender
from elliot.recommender.sparse import SparseOp
from elliot.recommender.spectral import SpectralFilter


def max_union(graphs: List[Tuple[Tensor, Tensor]], n: int) -> Tuple[Tensor, Tensor]:
    """(index, values) of the elementwise maximum of sparse n x n graphs given as (index, values): an entry
    present in several graphs takes its largest value, one present in a single graph keeps its value."""
    index = torch.cat([i for i, _ in graphs], 1)
    values = torch.cat([v for _, v in graphs])
    keys, inverse = torch.unique(index[0] * n + index[1], return_inverse=True)
    out = torch.full((len(keys),), float("-inf"), dtype=values.dtype, device=values.device)
    out = out.scatter_reduce(0, inverse, values, reduce="amax", include_self=True)
    return torch.stack([keys // n, keys % n]), out


class SMORE(ContentPlusPartsHooks, EmbeddingScoring, MultimodalRecommender):
    """SMORE (Ong & Khong, WSDM 2025); see the module docstring."""

    name = "SMORE"
    fine_tunable_features = True  # every use of the features is self.feature(m) in the forward
    params = (
        Param("factors", int, 64, "size of ID embeddings and projected features (MMRec embedding_size)",
              aliases=("embedding_size",)),
        Param("lr", float, 1e-3, "Adam learning rate", aliases=("learning_rate",)),
        Param("l_w", float, 1e-4, "L2 weight on the batch's final embeddings / (2 batch_size) (reg_weight)",
              aliases=("reg_weight",)),
        Param("cl_loss", float, 0.01, "weight of the two InfoNCE terms", low=0.0, aliases=("cl_weight",)),
        Param("temp", float, 0.2, "InfoNCE temperature", aliases=("temperature",)),
        Param("n_ui_layers", int, 3, "LightGCN layers of the behavioural view (MMRec grid {3, 4})"),
        Param("n_layers", int, 1, "convolutions on the item-item graphs", aliases=("n_mm_layers",)),
        Param("top_k", int, 10, "neighbours per item in each modality's kNN graph", aliases=("knn_k",)),
        Param("image_knn_k", int, 0, "k of the visual graph (MMRec's name; 0: top_k)", low=0),
        Param("text_knn_k", int, 0, "k of the textual graph (MMRec's name; 0: top_k)", low=0),
        Param("dropout", float, 0.0, "dropout of the preference gates, training only (MMRec dropout_rate)",
              aliases=("dropout_rate",)),
        Param("lr_sched", "list[float]", [0.96, 50.0], "(factor, step): lr x factor^(epoch / step) (MMRec "
              "learning_rate_scheduler); empty: constant", lengths=(0, 2)),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]) -> Optional[str]:
        if float(params.get("temp", 0.2)) <= 0:
            return "temp must be > 0"
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, n_mod = int(self.factors), len(self.modalities)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i]
        self.proj = nn.ModuleList([nn.Linear(self.feature_dim(m), k) for m in self.modalities])
        self.filters = nn.ModuleList([SpectralFilter(k) for _ in range(n_mod)])
        self.fusion_filter = SpectralFilter(k)
        self.gate = nn.ModuleList([nn.Linear(k, k) for _ in range(n_mod + 1)])  # gate_v, gate_t, ..., gate_f
        self.query = nn.ModuleList([nn.Sequential(nn.Linear(k, k), nn.Tanh(), nn.Linear(k, k, bias=False))
                                    for _ in range(n_mod)])  # query_v, query_t
        self.prefer = nn.ModuleList([nn.Linear(k, k) for _ in range(n_mod + 1)])  # gate_*_prefer, fusion last
        # ---- graphs (plain attributes: not parameters, not in the state dict) ----
        norm = symmetric_normalize(user_item_adjacency(dataset.train))
        self.adj = SparseOp(scipy_to_torch(norm, self.device), symmetric=True)
        self.ui_block = SparseOp(scipy_to_torch(norm[: self.n_users, self.n_users:], self.device))  # Â_ui
        graphs = [knn_laplacian(self.feature(m), self._knn_k(m)) for m in self.modalities]  # clean features
        graphs.append(max_union(graphs, self.n_items))
        self.item_graphs: List[SparseOp] = [
            SparseOp(torch.sparse_coo_tensor(i, v, (self.n_items, self.n_items)).coalesce().to(self.device))
            for i, v in graphs]  # one per modality, the fusion graph last
        self.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.hp.get("seed", 42)))

    def _knn_k(self, modality: str) -> int:
        own = {"visual": int(self.image_knn_k), "textual": int(self.text_knn_k)}.get(modality, 0)
        return own or int(self.top_k)

    # ---- representations ------------------------------------------------------------------------
    def _views(self) -> Tuple[Tensor, List[Tensor]]:
        """(content ē of all nodes, [h^1, ..., h^M, h^f] of all nodes [users; items])."""
        e_items = self.embeddings[self.n_users:]
        content = propagate_mean(self.adj, self.embeddings, int(self.n_ui_layers))
        spectra = [filt.spectrum(proj(self.feature(m))) for m, proj, filt in
                   zip(self.modalities, self.proj, self.filters)]
        signals = [filt.inverse(s) for filt, s in zip(self.filters, spectra)] + [self.fusion_filter.fuse(spectra)]
        items = []
        for signal, gate, graph in zip(signals, self.gate, self.item_graphs):
            h = e_items * torch.sigmoid(gate(signal))
            for _ in range(int(self.n_layers)):
                h = graph @ h
            items.append(h)
        users = (self.ui_block @ torch.cat(items, 1)).split(e_items.shape[1], 1)  # one product for all views
        return content, [torch.cat([u, i]) for u, i in zip(users, items)]

    def _dropout(self, x: Tensor, training: bool) -> Tensor:
        p = float(self.dropout)
        if not training or p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self._gen, device=x.device) >= p
        return x * keep / (1.0 - p)

    def _prefer(self, content: Tensor, views: List[Tensor], training: bool) -> List[Tensor]:
        """The modality-aware preference module on these rows: the parts c^m of h^side = Σ_m c^m."""
        fusion, n_mod = views[-1], len(views) - 1
        gates = [self._dropout(torch.sigmoid(pref(content)), training) for pref in self.prefer]
        fused = gates[-1] * fusion / n_mod
        return [(gates[m] * torch.softmax(self.query[m](fusion), -1) * views[m] + fused) / (n_mod + 1)
                for m in range(n_mod)]

    def _rows(self, nodes: Optional[Tensor], training: bool = False) -> Tuple[Tensor, List[Tensor]]:
        """(ē, [c^m]) for ``nodes`` (indices into [users; items]; all when None)."""
        content, views = self._views()
        if nodes is not None:
            content, views = gather_rows(content, nodes), [gather_rows(v, nodes) for v in views]
        return content, self._prefer(content, views, training)

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        loss, content, side, idx_u, idx_i = self._bpr_head(batch, training=True)
        if self.cl_loss:
            tau, cl = float(self.temp), 0.0
            for idx in (idx_i, idx_u):  # the batch's positives, then its users
                cl = cl + rows_info_nce(side, content, idx, tau)
            loss = loss + float(self.cl_loss) * cl
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec overall.yaml)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)
