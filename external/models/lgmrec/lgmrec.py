r"""LGMRec: Local and Global Graph Learning for Multimodal Recommendation
(Guo, Li, Li, Wang, Yang & Wu; AAAI 2024; arXiv 2312.16400; code: georgeguo-cn/LGMRec, shipped in enoche/MMRec
``src/models/lgmrec.py`` + ``src/configs/model/LGMRec.yaml``).

What is implemented (paper Sec. 3, with the shipped code's choices; m runs over the M modalities):

* Collaborative graph embedding (CGE, Sec. 3.2): LightGCN on Â = D^{-1/2} A D^{-1/2} of the user-item
  graph, K = ``n_ui_layers``, mean readout:  E^c = 1/(K+1) Σ_k Â^k [E_u; E_i]  (``cf: mf``: E^c = [E_u; E_i]).
* Modality graph embedding (MGE, Sec. 3.2): item features f_i^m = x_i^m W_m (``factors_multimod`` wide, no
  bias), user features the mean over the user's items f_u^m = Σ_{i∈N_u} f_i^m / |N_u|, then
  E^m = Â^{L} [F_u^m; F_i^m] with L = ``n_mm_layers`` (last layer, no readout).
  Local embeddings E^l = E^c + Σ_m E^m / |E^m| (rows L2-normalised).
* Global hypergraph embedding (GHE, Sec. 3.3): ``hyper_num`` = h hyperedges per modality with item and user
  dependencies  H_i^m = GS(x_i^m V_m),  H_u^m = GS(Σ_{i∈N_u} x_i^m V_m)  (GS = Gumbel-softmax over the h
  hyperedges, temperature τ = 0.2), dropped out with p = 1 - ``keep_rate`` while training; with
  E_i^{c} the CGE item rows, ``n_hyper_layer`` layers of
      Λ^m = (H_i^m)^T G_i^m,   G_i^m ← H_i^m Λ^m,   G_u^m = H_u^m Λ^m       (G_i^m starts at E_i^c),
  E^g = Σ_m [G_u^m; G_i^m];  final E = E^l + α E^g / |E^g|  (α = ``alpha``), ŷ_ui = e_u · e_i.
* Objective (Sec. 3.4):
      L = BPR(e_u, e_i, e_j) + ``cl_weight`` L_HCL + ``reg_weight`` (‖e_u‖ + ‖e_i‖ + ‖e_j‖) / B,
  BPR = mean -ln σ(s_ui - s_uj); the norms are Frobenius norms (not squared) of the batch's final rows,
  B = the batch length (the code's ``reg_loss``); the hypergraph contrastive term, for every pair of
  modalities m < m' (M = 2: the code's (image, text)),
      L_HCL = Σ_{u∈batch} -ln[exp(ĝ_u^m·ĝ_u^{m'}/τ) / Σ_{v∈U} exp(ĝ_u^m·ĝ_v^{m'}/τ)] + the same over the batch's
              positive items against ALL items        (ĝ = g/|g|, a SUM over the batch as the code).
  Every G^m = H^m Λ^m has rank ≤ h, so the B x |U| similarities are computed from the h x h products
  (``hyper_num`` < ``factors``; same values, 16x fewer multiplications at the defaults).

Defaults (MMRec ``LGMRec.yaml``, its "baby" block, + ``overall.yaml``): factors = factors_multimod = 64,
cf lightgcn, n_ui_layers 2, n_mm_layers 2, n_hyper_layer 1, hyper_num 4, keep_rate 0.5, alpha 0.3,
cl_weight 1e-4, reg_weight 1e-6, lr 1e-3 (Adam, no weight decay), constant lr; Xavier-uniform ID
embeddings, W_m and V_m (as the code).

Deviations from the shipped code: (1) Gumbel noise and the hyperedge dropout come from a private generator
seeded by ``seed`` (the code: torch's global RNG); (2) at EVALUATION (``model.eval()``) the hyperedge
assignments are noise-free, H = softmax(logits / τ) - the code draws Gumbel noise in every forward, also when
it ranks, so its test scores are random; here ``score``, ``score_pairs`` and the hooks are deterministic;
(3) the code uses the multimodal path only when both image and text exist (otherwise E = E^c); here any
M >= 1 modalities (with M = 1 there is no L_HCL); (4) Â's degrees without the code's +1e-7 (same to ~1e-8).

Hooks, and what an attack perturbs.  With the shared user vector e_u, the item side splits exactly:
e_i = e_i^c + Σ_m [E^m_i/|E^m_i| + α G_i^m / |E^g_i|].  ``modality_embeddings`` returns ``"id"``: (e_u, e_i^c)
and, per modality m, (e_u, E^m_i/|E^m_i| + α G_i^m/|E^g_i|): the branch scores sum EXACTLY to ``score_pairs``.
No graph is precomputed from features: the raw features (``self.feature(m)``, current, possibly replaced)
reach the score through the MGE projections and the hyperedge assignments, differentiably, for the item,
its users (f_u^m, H_u^m) and, through Â and the hyperedges, everyone else.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, gather_rows
from elliot.recommender.graph import propagate, propagate_mean, scipy_to_torch, ui_propagation_op
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp

TAU = 0.2  # the code's self.tau: Gumbel-softmax and contrastive temperature


def _row_norms(a: Tensor, l: Optional[Tensor]) -> Tensor:
    """max(|row_r(a l)|, 1e-12) (|row_r(a)| when ``l`` is None): F.normalize's denominator, clamped BEFORE the
    square root so that a zero row (all its hyperedges dropped) gets a zero gradient, not NaN."""
    sq = (a * a).sum(1) if l is None else ((a @ (l @ l.T)) * a).sum(1)
    return sq.clamp_min(1e-24).sqrt()


def hyper_nce(a1: Tensor, l1: Optional[Tensor], a2: Tensor, l2: Optional[Tensor], idx: Tensor, tau: float) -> Tensor:
    """Σ_r -ln softmax_s(ĝ1_r · ĝ2_s / tau)[idx_r] with g1 = a1 l1 (batch rows), g2 = a2 l2 (ALL rows; the
    positive of row r is row idx_r of g2), computed in the rank-h factors when given (l None: a is g)."""
    a1 = a1 / (_row_norms(a1, l1) * tau).unsqueeze(1)  # normalise the factors: no B x N division
    a2 = a2 / _row_norms(a2, l2).unsqueeze(1)
    return _AllRowsNCE.apply(a1 if l1 is None else a1 @ (l1 @ l2.T), a2, idx)


class _AllRowsNCE(torch.autograd.Function):
    """Σ_r [logsumexp_s(q_r·k_s) - q_r·k_{idx_r}] and its gradient, computed together in row chunks of the
    B x N logits (~2^20 entries, cache-sized): the B x N matrix never exists in memory (autograd on the full
    matrix reads and writes it ~10 times: the whole training step was 3x slower on TikTok, 2048 x 9308
    users).  Same values to float rounding; not twice differentiable."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, idx: Tensor) -> Tensor:
        chunk = max(1, (1 << 20) // max(k.shape[0], 1))
        grad_q, grad_k = torch.empty_like(q), torch.zeros_like(k)
        total = q.new_zeros(())
        for start in range(0, q.shape[0], chunk):
            qc = q[start: start + chunk]
            logits = qc @ k.T
            top = logits.amax(1, keepdim=True)
            prob = logits.sub_(top).exp_()  # one exp per entry, in place
            norm = prob.sum(1, keepdim=True)
            total += (top + norm.log()).sum()  # Σ logsumexp
            prob.div_(norm)  # softmax rows
            grad_q[start: start + chunk] = prob @ k
            grad_k.addmm_(prob.T, qc)
        pos = k.index_select(0, idx)
        total -= (q * pos).sum()
        grad_q -= pos
        grad_k.index_add_(0, idx, -q)
        ctx.save_for_backward(grad_q, grad_k)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_q, grad_k = ctx.saved_tensors
        return grad * grad_q, grad * grad_k, None


class LGMRec(EmbeddingScoring, MultimodalRecommender):
    """LGMRec (Guo et al., AAAI 2024); see the module docstring."""

    name = "LGMRec"
    params = (
        Param("factors", int, 64, "size of ID embeddings (MMRec embedding_size)", aliases=("embedding_size",)),
        Param("factors_multimod", int, 64, "size of projected features (MMRec feat_embed_dim; = factors)",
              aliases=("feat_embed_dim", "multimod_factors")),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("cf", str, "lightgcn", "collaborative backbone (MMRec cf_model)", choices=("lightgcn", "mf"),
              aliases=("cf_model",)),
        Param("n_ui_layers", int, 2, "LightGCN layers of the collaborative graph embedding"),
        Param("n_mm_layers", int, 2, "propagation layers of the modality graph embedding"),
        Param("n_hyper_layer", int, 1, "hypergraph layers", low=1),
        Param("hyper_num", int, 4, "hyperedges per modality", low=1),
        Param("keep_rate", float, 0.5, "keep probability of the hyperedge-assignment dropout", low=0.0,
              high=1.0, low_inclusive=False),
        Param("alpha", float, 0.3, "weight of the global (hypergraph) embeddings", low=0.0),
        Param("cl_weight", float, 1e-4, "weight of the hypergraph contrastive loss (a sum over the batch)", low=0.0),
        Param("l_w", float, 1e-6, "weight of the Frobenius-norm term / batch length (MMRec reg_weight)",
              aliases=("reg_weight",)),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]):
        k, km = int(params.get("factors", 64)), int(params.get("factors_multimod", 64))
        if k != km:
            return f"E^c + E^m adds the {k}-d ID and {km}-d modality embeddings: factors must equal factors_multimod"
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, h = int(self.factors), int(self.hyper_num)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i]
        self.trs = nn.ParameterList([nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.feature_dim(m), k)))
                                     for m in self.modalities])  # W_m (item_image_trs / item_text_trs)
        self.hyper = nn.ParameterList([nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.feature_dim(m), h)))
                                       for m in self.modalities])  # V_m (v_hyper / t_hyper)
        # ---- graphs (plain attributes: not parameters, not in the state dict) ----
        binary = (dataset.train > 0).astype("float32")
        self.adj = ui_propagation_op(dataset.train, self.device)
        self.r = SparseOp(scipy_to_torch(binary, self.device))  # R, (U x I)
        deg = torch.as_tensor(binary.sum(axis=1).A1, dtype=torch.float32, device=self.device)
        self.inv_deg = (1.0 / (deg + 1e-7)).unsqueeze(1)  # the code's num_inters (users)
        self.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.hp.get("seed", 42)))

    # ---- representations ------------------------------------------------------------------------
    def _assign(self, logits: Tensor) -> Tensor:
        """Hyperedge assignments: Gumbel-softmax + dropout while training, softmax(logits/τ) at evaluation."""
        if not self.training:
            return torch.softmax(logits / TAU, 1)
        gumbel = -torch.empty_like(logits).exponential_(generator=self._gen).log()
        out = torch.softmax((logits + gumbel) / TAU, 1)
        p = 1.0 - float(self.keep_rate)
        if p > 0:
            out = out * (torch.rand(out.shape, generator=self._gen, device=out.device) >= p) / (1.0 - p)
        return out

    def _forward(self):
        """(E^c, [E^m/|E^m|], [(H_u^m, H_i^m, Λ^m)]) of all nodes."""
        cge = self.embeddings if self.cf == "mf" else propagate_mean(self.adj, self.embeddings, int(self.n_ui_layers))
        cge_items = cge[self.n_users:]
        local, hyper = [], []
        for m, w, v in zip(self.modalities, self.trs, self.hyper):
            x = self.feature(m)
            f_i = x @ w
            mge = torch.cat([(self.r @ f_i) * self.inv_deg, f_i])
            local.append(F.normalize(propagate(self.adj, mge, int(self.n_mm_layers))[-1]))
            logits_i = x @ v
            h_i, h_u = self._assign(logits_i), self._assign(self.r @ logits_i)  # item draws first, as the code
            g_i = cge_items
            for _ in range(int(self.n_hyper_layer)):
                lat = h_i.T @ g_i
                g_i = h_i @ lat
            hyper.append((h_u, h_i, lat))
        return cge, local, hyper

    def _parts(self, cge: Tensor, local: List[Tensor], hyper, rows: Optional[Tensor]):
        """(E^c rows, [E^m/|E^m| + α G^m/|E^g| rows]) for node ``rows`` (indices into [users; items]; all when
        None): they sum to the final rows."""
        pick = (lambda t: t) if rows is None else (lambda t: gather_rows(t, rows))
        glob = [torch.cat([h_u @ lat, h_i @ lat]) for h_u, h_i, lat in hyper]
        scale = float(self.alpha) / sum(glob).norm(dim=1, keepdim=True).clamp_min(1e-12)
        return pick(cge), [pick(loc + g * scale) for loc, g in zip(local, glob)]

    def _final(self, rows: Optional[Tensor] = None):
        cge, local, hyper = self._forward()
        base, parts = self._parts(cge, local, hyper, rows)
        return base + sum(parts), base, parts, hyper

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        final = self._final()[0]
        return final[: self.n_users], final[self.n_users:]

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        n = len(batch.users)
        rows = torch.cat([batch.users, batch.pos_items + self.n_users, batch.neg_items + self.n_users])
        final, _, _, hyper = self._final(rows)
        u, pos, neg = final[:n], final[n: 2 * n], final[2 * n:]
        loss = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        if self.cl_weight and len(hyper) > 1:
            low_rank = int(self.hyper_num) < int(self.factors)
            hcl = 0.0
            for a in range(len(hyper)):
                for b in range(a + 1, len(hyper)):
                    for side, idx in ((0, batch.users), (1, batch.pos_items)):
                        ha, hb = hyper[a][side], hyper[b][side]
                        la, lb = hyper[a][2], hyper[b][2]
                        if not low_rank:
                            ha, hb, la, lb = ha @ la, hb @ lb, None, None
                        hcl = hcl + hyper_nce(gather_rows(ha, idx), la, hb, lb, idx, TAU)
            loss = loss + float(self.cl_weight) * hcl
        if self.l_w:
            loss = loss + float(self.l_w) * (u.norm() + pos.norm() + neg.norm()) / n
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec overall.yaml)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        final = self._final(torch.cat([users, items + self.n_users]))[0]
        return (final[: len(users)] * final[len(users):]).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        n = len(users)
        final, base, parts, _ = self._final(torch.cat([users, items + self.n_users]))
        eu = final[:n]
        out = {"id": (eu, base[n:])}
        for m, part in zip(self.modalities, parts):
            out[m] = (eu, part[n:])
        return out
