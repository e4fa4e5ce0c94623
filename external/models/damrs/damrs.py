r"""DA-MRS: Improving Multi-modal Recommender Systems by Denoising and Aligning Multi-modal Content and User
Feedback (Xv, Li, Xie, Lin, Liu, Xia, Kang & Lin; KDD 2024; code: XMUDM/DA-MRS, shipped in enoche/MMRec
``src/models/damrs.py`` + ``src/configs/model/DAMRS.yaml``; item-item behaviour graph: XMUDM/DA-MRS
``build_iib_graph.py``), with LightGCN as the backbone (the code's DA-MRS+LightGCN).

What is implemented (paper Sec. 3 with the shipped code's choices; M modalities, views v ∈ {1..M, s}):

* Denoised item-item graphs (DIIG, Sec. 3.1), built ONCE from the raw features: cosine similarities S^m; an
  entry (i, j) survives only if S^m_ij ≥ mean(S^m) in EVERY modality m (cross-modal consistency); each row keeps
  its min(``top_k``, #survivors) most similar survivors per modality; binary, D^{-1/2} A D^{-1/2} with row
  degrees (:func:`~elliot.recommender.knn.sym_norm_values`).  mean(S^m) = |Σ_i x̂_i|² / n² (closed form).
* Item-item behaviour graph (Sec. 3.1, ``build_iib_graph.py``): co-occurrence c_ij = |U_i ∩ U_j| of the
  training split, pairs with c_ij ≥ ``session_min`` (2), the ``session_k`` most co-occurring per item (README:
  ``--topk=2``), plus a self-loop; binary-normalised as above (the code's weights are read but unused).
* Representations: LightGCN on Â = D^{-1/2} A D^{-1/2}, K = ``n_ui_layers``, mean readout ē; per view
  h^v = (G^v)^L e_i (L = ``n_layers``, e_i the item ID embeddings); final e*_u = ē_u,
  e*_i = ē_i + h̄_i with h̄ = (Σ_m h^m + h^s) / (M + 1);  ŷ_ui = e*_u · e*_i.
* Denoised feedback (Sec. 3.2, the code's get_weight_modal; all weights without gradient): per triple
  p^v = σ(ē_u · ĥ^v_i), n^v = σ(ē_u · ĥ^v_j) (ĥ = L2-normalised), μ = mean_v p^v, σ² = var_v p^v (unbiased),
  n̄ = the mean of n^v over views AND the batch; w⁺ = clip(μ · exp(-σ²)², 0, 1),
  w⁻ = clip(max_v p^v - n̄, 0, 1) · 1[μ < n̄];
  L_BPR = -mean[w⁺ ln σ(ŷ_ui - ŷ_uj) + w⁻ ln σ(ŷ_uj - ŷ_ui)].
* Alignment guided by user preference (L_AU, the code's KL): over the batch's distinct users U' and items I',
  P_g = σ(ē_{U'} ê_{I'}^T) (ê = normalised ē_i), P_t = σ(ē_{U'} ĥ̄_{I'}^T);
  L_AU = mean[KL(P_g‖P_t) + KL(P_t‖P_g)], KL(p‖q) = p ln(p/q) + (1-p) ln((1-p)/(1-q)).
* Alignment guided by graph (L_AI, neighbor_discrimination), per view v over I': softmax rows
  Q^w = softmax(ĥ^w_{I'} ĥ^{wT}) of every view; pseudo-positives N^v = top-``n_pseudo`` of Σ_{w≠v} Q^w + 2 Q^v
  (consistent across views), single-view positives N'^v = top-``n_pseudo`` of Q^v outside N^v; with
  z_j = exp(ĥ^v_i · ĥ^v_j / τ), A = Σ_{N^v} z, B = Σ_{N'^v} z, T = Σ_all z:
  L_AI^v = mean_i[-ln(A/T + 1e-9) - ln(B/(T - A) + 1e-9)];  L_AI = mean_v L_AI^v.
* Objective: L = L_BPR + ``neighbor_weight`` L_AI + ``kl_weight`` L_AU (no L2 term, Adam, constant lr).

Defaults (MMRec DAMRS.yaml + overall.yaml): factors 64, lr 1e-3, n_layers (n_mm_layers) 1, n_ui_layers 2,
top_k (knn_k) 10, kl_weight 1, neighbor_weight 0.001, lr constant (no scheduler in DAMRS.yaml); the code's
hard-coded 10 pseudo-positives and τ = 0.2; the behaviour graph with top-k 2 (item_graph_dict_2.npy) and
threshold 2.  ``reg_weight``, ``lambda_coeff``, ``cf_model``, ``feat_embed_dim`` and the image_trs / text_trs
projections are read or built by the code but never used, and are not exposed.

Deviations: (1) the behaviour graph is built here from the training split (the code loads a preprocessed
file); ties in co-occurrence go to the lower item index (torch.topk's order in the script); (2) DIIG rows
choose among the surviving entries only (the code's top-k over the zeroed row could pick a masked zero when
fewer than k survivors have positive similarity); the loop over items is vectorised in row chunks, zero
feature rows get zero similarity (no NaNs); (3) the symmetric KL is evaluated as (P_g - P_t)(Z_g - Z_t) (Z the
logits; algebraically the same value, finite where σ saturates) and the BPR logarithms as log-sigmoids; A and
B of L_AI come from the gathered positives (same values); (4) any M ≥ 1 modalities (the code: image and text; the view mean
divides by M + 1).

Hooks, and what an attack perturbs.  Features enter ONLY through the frozen DIIG graphs (built from the clean
features at construction, never rebuilt), so ``score`` / ``score_pairs`` do not depend on the current features
(no gradient to them), as in the code.  ``modality_embeddings`` splits the score exactly: ``"id"`` (e*_u,
ē_i + h^s_i/(M+1)) (the behavioural views) and per modality m (e*_u, h^m_i/(M+1)).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, gather_rows, unique_index
from elliot.recommender.graph import normalized_ui_graph, propagate_mean
from elliot.recommender.knn import sym_norm_values, top_cooccurring_users
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


def consistent_knn_graphs(features: List[Tensor], k: int, chunk_size: int = 0) -> List[Tensor]:
    """DA-MRS's denoised kNN graphs: one (2, E_m) index per modality.  (i, j) survives when its cosine
    similarity reaches the mean of the similarity matrix in every modality; row i keeps its min(k, #survivors)
    most similar survivors of each modality.  Computed ``chunk_size`` rows at a time (no n x n matrix)."""
    xs = [F.normalize(x.detach().float(), p=2, dim=1) for x in features]
    n = xs[0].shape[0]
    k = max(1, min(int(k), n))
    means = [x.sum(0).pow(2).sum() / n ** 2 for x in xs]  # mean_ij x̂_i·x̂_j
    chunk = int(chunk_size) if chunk_size and chunk_size > 0 else max(1, (1 << 23) // max(n, 1))
    rows, cols = [[] for _ in xs], [[] for _ in xs]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = [x[start:stop] @ x.T for x in xs]
        keep = torch.stack([s >= mu for s, mu in zip(sims, means)]).all(0)
        width = keep.sum(1).clamp_max(k)
        valid = torch.arange(k, device=keep.device).view(1, -1) < width.view(-1, 1)
        row = torch.arange(start, stop, device=keep.device).view(-1, 1).expand(-1, k)
        for m, s in enumerate(sims):
            top = torch.topk(s.masked_fill(~keep, float("-inf")), k, dim=1).indices
            rows[m].append(row[valid])
            cols[m].append(top[valid])
    return [torch.stack([torch.cat(r), torch.cat(c)]) for r, c in zip(rows, cols)]


def behaviour_graph(train, k: int, min_count: int) -> Tensor:
    """The item-item behaviour graph's index (2, E): every item's self-loop and its ``k`` most co-occurring
    items (shared training users ≥ ``min_count``; ties to the lower index)."""
    nbr, cnt, _ = top_cooccurring_users(train.T.tocsr(), int(k))
    nbr, cnt = torch.from_numpy(nbr), torch.from_numpy(cnt)
    n = nbr.shape[0]
    ok = (nbr >= 0) & (cnt >= min_count)
    rows = torch.arange(n).view(-1, 1).expand_as(nbr)[ok]
    loops = torch.arange(n)
    return torch.stack([torch.cat([loops, rows]), torch.cat([loops, nbr[ok]])])


def _symmetric_bernoulli_kl(z1: Tensor, z2: Tensor) -> Tensor:
    """KL(σ(z1) ‖ σ(z2)) + KL(σ(z2) ‖ σ(z1)) elementwise, which is exactly (σ(z1) - σ(z2)) (z1 - z2): the
    logarithms of the two KLs combine into the difference of the logits (no log of a saturated σ)."""
    return (torch.sigmoid(z1) - torch.sigmoid(z2)) * (z1 - z2)


class DAMRS(EmbeddingScoring, MultimodalRecommender):
    """DA-MRS + LightGCN (Xv et al., KDD 2024); see the module docstring."""

    name = "DAMRS"
    params = (
        Param("factors", int, 64, "size of the user / item ID embeddings (MMRec embedding_size)",
              aliases=("embedding_size",)),
        Param("lr", float, 1e-3, "Adam learning rate", aliases=("learning_rate",)),
        Param("kl_weight", float, 1.0, "weight of the preference-guided alignment L_AU", low=0.0),
        Param("neighbor_weight", float, 0.001, "weight of the graph-guided alignment L_AI", low=0.0),
        Param("temp", float, 0.2, "temperature of L_AI (hard-coded 0.2 in the code)"),
        Param("n_layers", int, 1, "convolutions on the item-item graphs", aliases=("n_mm_layers",)),
        Param("n_ui_layers", int, 2, "LightGCN layers on the user-item graph"),
        Param("top_k", int, 10, "neighbours per item in the denoised kNN graphs", aliases=("knn_k",)),
        Param("session_k", int, 2, "co-occurring items per item in the behaviour graph (build_iib_graph --topk)",
              low=0),
        Param("session_min", int, 2, "least shared training users of a behaviour-graph edge", low=1),
        Param("n_pseudo", int, 10, "pseudo-positives per item and kind in L_AI (hard-coded 10)", low=1),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]) -> Optional[str]:
        if float(params.get("temp", 0.2)) <= 0:
            return "temp must be > 0"
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k = int(self.factors)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i]
        # ---- graphs (plain attributes: not parameters, not in the state dict), from the clean features ----
        self.adj = SparseOp(normalized_ui_graph(dataset.train, self.device), symmetric=True)
        indices = consistent_knn_graphs([self.feature(m) for m in self.modalities], int(self.top_k))
        indices.append(behaviour_graph(dataset.train, int(self.session_k), int(self.session_min)))
        n = self.n_items
        self.item_graphs: List[SparseOp] = [  # one per modality, the behaviour graph last
            SparseOp(torch.sparse_coo_tensor(i, sym_norm_values(i, n), (n, n)).coalesce().to(self.device))
            for i in (idx.to(self.device) for idx in indices)]
        self.to(self.device)

    # ---- representations ------------------------------------------------------------------------
    def _propagate(self) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """(ē of all users, ē of all items, [h^1, ..., h^M, h^s] of all items)."""
        total = propagate_mean(self.adj, self.embeddings, int(self.n_ui_layers))
        views = []
        for graph in self.item_graphs:
            h = self.embeddings[self.n_users:]
            for _ in range(int(self.n_layers)):
                h = graph @ h
            views.append(h)
        return total[: self.n_users], total[self.n_users:], views

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        users, items, views = self._propagate()
        return users, items + sum(views) / len(views)

    # ---- the loss terms -----------------------------------------------------------------------------
    def _feedback_weights(self, u: Tensor, pos: Tensor, neg: Tensor, views: List[Tensor]):
        """(w⁺, w⁻) of the batch's triples (no gradient)."""
        with torch.no_grad():
            p = torch.sigmoid(torch.stack([(u * F.normalize(gather_rows(h, pos), dim=1)).sum(-1) for h in views]))
            q = torch.sigmoid(torch.stack([(u * F.normalize(gather_rows(h, neg), dim=1)).sum(-1) for h in views]))
            mean, n_mean = p.mean(0), q.mean()
            w_pos = (mean * torch.exp(-p.var(0)).pow(2)).clamp(0, 1)
            w_neg = ((p.amax(0) - n_mean) * (mean < n_mean)).clamp(0, 1)
        return w_pos, w_neg

    def _alignment_by_graph(self, items: Tensor, views: List[Tensor]) -> Tensor:
        """L_AI over the distinct batch items ``items``: per view one product ĥ_{I'} ĥ^T / τ, whose detached
        softmax (of the cosines) gives the pseudo-positives and whose exponentials give T; A and B from the
        gathered positives only (no dense gather)."""
        tau, k = float(self.temp), min(int(self.n_pseudo), self.n_items)
        tables = [F.normalize(h, dim=1) for h in views]
        rows = [gather_rows(t, items) for t in tables]
        logits = [(r / tau) @ t.T for r, t in zip(rows, tables)]
        with torch.no_grad():
            probs = [torch.softmax(z * tau, 1) for z in logits]
            total = sum(probs)
        terms = []
        for r, t, z, prob in zip(rows, tables, logits, probs):
            with torch.no_grad():
                consistent = torch.topk(total + prob, k, dim=1).indices
                single = torch.topk(prob.scatter(1, consistent, 0.0), k, dim=1).indices
            a, b = ((r.unsqueeze(1) * gather_rows(t, idx)).sum(-1).div(tau).exp().sum(1) for idx in (consistent, single))
            t_sum = z.exp().sum(1)
            terms.append((-torch.log(a / t_sum + 1e-9) - torch.log(b / (t_sum - a) + 1e-9)).mean())
        return sum(terms) / len(terms)

    def loss(self, batch: TripletBatch) -> Tensor:
        users_all, items_all, views = self._propagate()
        u = gather_rows(users_all, batch.users)
        final_items = items_all + sum(views) / len(views)
        i, j = gather_rows(final_items, torch.cat([batch.pos_items, batch.neg_items])).split(len(batch.users))
        w_pos, w_neg = self._feedback_weights(u, batch.pos_items, batch.neg_items, views)
        margin = (u * i).sum(-1) - (u * j).sum(-1)
        loss = -(F.logsigmoid(margin) * w_pos + F.logsigmoid(-margin) * w_neg).mean()
        items, _ = unique_index(torch.cat([batch.pos_items, batch.neg_items]), self.n_items)
        if self.neighbor_weight:
            loss = loss + float(self.neighbor_weight) * self._alignment_by_graph(items, views)
        if self.kl_weight:
            uu = gather_rows(users_all, unique_index(batch.users, self.n_users)[0])
            z_g = uu @ F.normalize(gather_rows(items_all, items), dim=1).T
            z_t = uu @ F.normalize(gather_rows(sum(views) / len(views), items), dim=1).T
            loss = loss + float(self.kl_weight) * _symmetric_bernoulli_kl(z_g, z_t).mean()
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec overall.yaml)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        eu, ei = self.final_embeddings()
        return (gather_rows(eu, users) * gather_rows(ei, items)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        users_all, items_all, views = self._propagate()
        eu, n_views = gather_rows(users_all, users), len(views)
        out = {"id": (eu, gather_rows(items_all + views[-1] / n_views, items))}
        for m, h in zip(self.modalities, views):
            out[m] = (eu, gather_rows(h, items) / n_views)
        return out
