"""VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback (He & McAuley, AAAI 2016).

Predictor (paper Eq. 4; α and β_u cancel in BPR and are dropped, as in every reference code):

    s(u, i) = β_i + γ_u · γ_i + θ_u · (E f_i) + β' · f_i

extended to several modalities in one of two ways:

* ``fusion = concat`` (default; sisinflab's multimodal Elliot VBPR and MMRec's VBPR): f_i is the
  concatenation of the item's modality features, E one (Σ_m d_m) x factors_d projection, θ_u one user
  vector, β' one visual-bias vector over the concatenation.
* ``fusion = per_modality``: modality m has its own projection E_m, user vector θ_u^m and bias β'_m,
  and the score is a sum of per-modality terms

      s(u, i) = β_i + γ_u · γ_i + Σ_m [ θ_u^m · (E_m f_i^m) + β'_m · f_i^m ].

With ``normalize`` (default true, as sisinflab's multimodal VBPR) E f_i (E_m f_i^m) is L2-normalised
before the inner product with θ_u; ``normalize: false`` is the paper's predictor.

``feature_norm: true`` L2-normalises each item's raw feature vector f_i^m (per modality, before the
projection and the visual bias) inside the model: f_i^m -> f_i^m / ||f_i^m||.  It is an input
normalisation, not a change of the stored features: an attack that perturbs f_i^m is normalised with
it.  With ``normalize`` the projected part n(E_m f_i^m) is scale invariant already, so the option
changes the visual-bias term β'_m · f_i^m (linear in the unnormalised features, the term whose range a
relative perturbation scales with ||f_i^m||) into β'_m · n(f_i^m).  Default false (the published
predictor).

``visual_bias: false`` drops the visual-bias term β' · f_i (β' stays zero and is never trained): the
predictor of MMRec's VBPR and of AMR's paper (Tang et al. 2019, Eq. 2), which have no such term.  The
term is linear in the raw features and the same for every user, so an attacker who moves f_i by δ
moves item i's score for everybody by β' · δ (up to ε ||β'|| ||f_i|| under an L2 budget relative to
||f_i||); without it, and with ``normalize``, the content enters only through the unit vector
n(E f_i).

Objective: BPR-Opt (paper Sec. "Model learning using BPR") with Elliot's regularisers: mean over the
batch of -ln σ(s(u,i) - s(u,j)) + [l_w (||γ_u||² + ||θ_u||² + ||γ_i||² + ||γ_j||²) + l_b (β_i² + β_j²)
+ l_e (||E||² + ||β'||²)] / 2B.  (Elliot's classic VBPR sums the BPR loss over the batch and adds the
penalties once per batch: dividing everything by B is the same objective rescaled.  It also divides
the β_j penalty by 10; we weight β_i and β_j alike - identical under the default l_b = 0.)

Defaults: factors = factors_d = 64 (the 64-d embeddings of the benchmark protocol); lr = 1e-3,
l_w = 0.1 and normalize = true from sisinflab's multimodal VBPR (Formal-MultiMod-Rec,
``external/models/vbpr``); l_b = 0 and l_e = 2e-3 from Elliot's classic VBPR (the multimodal one has
no biases).  Initialisation as Elliot: Glorot-uniform γ, θ, E, β' (each matrix on its own), zero β_i.
Features are fixed inputs (never fine-tuned), read through ``self.feature(m)`` every time.

Without ``normalize`` the content term scales with the raw feature norm (‖f‖ ≈ 33 for TikTok's
visual features) and on TikTok the model falls far below BPRMF for every lr / l_w we tried; with it,
it is on par with LightGCN (see docs/results.md).

Hooks (``modality_embeddings``): the bias terms are folded into the inner products by appending a
constant 1 to the user vector and the bias to the item vector, so the per-branch scores sum EXACTLY
to the fused score:

* ``"id"``: ([γ_u, 1], [γ_i, β_i]);
* per_modality: one branch per modality m: ([θ_u^m, 1], [n(E_m f_i^m), β'_m · f_i^m]);
* concat: one ``"multimodal"`` branch ([θ_u, 1], [n(E f_i), β' · f_i]) - the fused content term as the
  model computes it (n = L2 normalisation when ``normalize``, identity otherwise).  Without
  ``normalize`` it is block-linear, E f_i = Σ_m E[rows of m] f_i^m, but we expose the fused term.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import TripletBatch, bpr_loss, l2_reg, unique_index, gather_rows
from elliot.recommender.multimodal import MultimodalRecommender


class VBPR(MultimodalRecommender):
    """VBPR (He & McAuley, AAAI 2016) with concat or per-modality fusion; see the module docstring."""

    name = "VBPR"
    params = (
        Param("factors", int, 64, "size of the collaborative factors γ"),
        Param("factors_d", int, 64, "size of the content factors θ (per modality with per_modality fusion)"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 0.1, "L2 weight of γ_u, θ_u, γ_i, γ_j"),
        Param("l_b", float, 0.0, "L2 weight of the item biases β_i, β_j"),
        Param("l_e", float, 2e-3, "L2 weight of the projection E and the visual bias β'"),
        Param("fusion", str, "concat", "how modalities are combined", choices=("concat", "per_modality"),
              aliases=("comb_mod",)),
        Param("normalize", bool, True, "L2-normalise the projected content E f_i (false: the paper's predictor)"),
        Param("feature_norm", bool, False, "L2-normalise each item's raw features f_i^m inside the model, before E "
              "and β' (a feature-space input normalisation; the stored features are unchanged)"),
        Param("visual_bias", bool, True, "the visual-bias term β' · f_i (false: MMRec's and AMR's predictor, "
              "without it; β' stays zero)"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, kd = int(self.factors), int(self.factors_d)
        # one content branch (concat) or one per modality
        self.branches: List[str] = ["multimodal"] if self.fusion == "concat" else list(self.modalities)
        nb = len(self.branches)
        # Parameters are packed so that a batch indexes each table once (every index op costs a dense,
        # zero-filled gradient of the whole table in backward):
        #   user_factors = [γ_u | θ_u^1 | ... | θ_u^B]            (n_users, factors + B·factors_d)
        #   item_factors = [γ_i | β_i]                            (n_items, factors + 1)
        #   E[b]         = [E_b | β'_b]  (d_b, factors_d + 1), so that f_i @ E[b] = [E_b f_i, β'_b · f_i]
        gamma_u, gamma_i = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        thetas = [torch.empty(self.n_users, kd) for _ in range(nb)]
        dims = ([sum(self.feature_dim(m) for m in self.modalities)] if self.fusion == "concat"
                else [self.feature_dim(m) for m in self.modalities])
        projections, visual_biases = [torch.empty(d, kd) for d in dims], [torch.empty(d, 1) for d in dims]
        for t in [gamma_u, gamma_i, *thetas, *projections, *visual_biases]:
            nn.init.xavier_uniform_(t)  # Glorot-uniform, per matrix (Elliot)
        if not self.visual_bias:
            for t in visual_biases:
                t.zero_()
        self.user_factors = nn.Parameter(torch.cat([gamma_u, *thetas], 1))
        self.item_factors = nn.Parameter(torch.cat([gamma_i, torch.zeros(self.n_items, 1)], 1))
        self.E = nn.ParameterList([nn.Parameter(torch.cat(pair, 1)) for pair in zip(projections, visual_biases)])
        # row blocks of the concat projection that each modality's features multiply
        offsets = [0]
        for m in self.modalities:
            offsets.append(offsets[-1] + self.feature_dim(m))
        self._blocks = list(zip(offsets[:-1], offsets[1:]))
        self._cache = None
        self.to(self.device)

    # ---- content path -----------------------------------------------------------------------------
    def _content(self, items: Tensor = None) -> List[Tensor]:
        """Per branch: f_i @ [E | β'] = [E f_i, β' · f_i]  (n, factors_d + 1), rows ``items`` or all;
        with ``normalize`` the E f_i part is L2-normalised."""
        feats = [self.feature(m) if items is None else self.feature(m).index_select(0, items)
                 for m in self.modalities]
        if self.feature_norm:
            feats = [F.normalize(f, p=2, dim=1) for f in feats]
        if self.fusion == "concat":  # [f^1, ..., f^M] @ E  computed block-wise, without the concatenation
            out = [sum(f @ self.E[0][a:b] for f, (a, b) in zip(feats, self._blocks))]
        else:
            out = [f @ E for f, E in zip(feats, self.E)]
        if not self.visual_bias:  # the β' column is cut from the graph: β' gets no gradient and stays 0
            out = [torch.cat([c[:, :-1], torch.zeros_like(c[:, -1:])], 1) for c in out]
        if self.normalize:
            out = [torch.cat([F.normalize(c[:, :-1], p=2, dim=1), c[:, -1:]], 1) for c in out]
        return out

    def _item_rows(self, items: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Packed item side of aligned pairs (all items when ``items`` is None), ([γ_i | c_i^1 | ... | c_i^B], β_i + Σ_b β'_b · f_i), where
        c^b is branch b's (normalised) projected content, so that s(u, i) = <user row, first> + second
        with the packed user row [γ_u | θ_u^1 | ... | θ_u^B].  Also returns the gathered [γ_i | β_i]
        (for the regulariser).  Rows are gathered with ``index_select`` (see ``gather_rows``); the content is
        computed once per distinct item."""
        if items is None:
            itf, content = self.item_factors, self._content(None)
        else:  # content (feature gathers and projections) once per distinct item: ~2/3 of the rows
            itf = self.item_factors.index_select(0, items)
            uniq, inv = unique_index(items, self.n_items)
            content = [c.index_select(0, inv) for c in self._content(uniq)]
        vectors = torch.cat([itf[:, :-1], *[c[:, :-1] for c in content]], 1)
        bias = itf[:, -1] + sum(c[:, -1] for c in content)
        return vectors, bias, itf

    def _user_parts(self, uf: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """Split packed user rows into γ_u and the per-branch θ_u."""
        k, kd = int(self.factors), int(self.factors_d)
        return uf[:, :k], [uf[:, k + b * kd: k + (b + 1) * kd] for b in range(len(self.branches))]

    def _pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """s(u, i) for aligned pairs."""
        vectors, bias, _ = self._item_rows(items)
        return (self.user_factors.index_select(0, users) * vectors).sum(-1) + bias

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        n = len(batch.users)
        # positives and negatives in one pass; s(u,i) - s(u,j) = <user row, v_i - v_j> + (b_i - b_j)
        vectors, bias, itf = self._item_rows(torch.cat([batch.pos_items, batch.neg_items]))
        uf = self.user_factors.index_select(0, batch.users)
        v_i, v_j = vectors.split(n)
        b_i, b_j = bias.split(n)
        margin = (uf * (v_i - v_j)).sum(-1) + (b_i - b_j)
        # squared norms per column first: slicing the (2B, factors + 1) rows would cost a full-size
        # zero-filled gradient per slice in backward
        item_sq = itf.pow(2).sum(0)
        reg_w = (uf.pow(2).sum() + item_sq[:-1].sum()) / (2 * n)  # γ_u, θ_u, γ_i, γ_j of every triple
        reg_b = item_sq[-1] / (2 * n)
        reg_e = l2_reg(*self.E, batch_size=n)
        return bpr_loss(margin, torch.zeros_like(margin)) + self.l_w * reg_w + self.l_b * reg_b + self.l_e * reg_e

    # ---- scoring ------------------------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        vectors, bias, _ = self._item_rows(None)
        self._cache = (vectors, bias)

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        # one GEMM with the packed item table: [γ_u | θ_u] [γ_i | c_i]^T + (β_i + β'·f_i)
        vectors, bias = self._cache if self._cache is not None else self._item_rows(None)[:2]
        return torch.addmm(bias.unsqueeze(0), self.user_factors.index_select(0, users), vectors.T)

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        return self._pair_scores(users, items)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        ones = torch.ones(len(users), 1, device=self.device)
        gu, thetas = self._user_parts(gather_rows(self.user_factors, users))
        out = {"id": (torch.cat([gu, ones], 1), gather_rows(self.item_factors, items))}
        for branch, theta, c in zip(self.branches, thetas, self._content(items)):
            out[branch] = (torch.cat([theta, ones], 1), c)
        return out
