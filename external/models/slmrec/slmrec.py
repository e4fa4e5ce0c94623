"""SLMRec: Self-supervised Learning for Multimedia Recommendation (Tao et al., IEEE TMM 2022;
code: zltao/SLMRec ``models/SLMRec.py``, ported to MMRec as ``models/slmrec.py``).

Encoders (paper Sec. III-A).  B = 1 + M branches: the ID branch and one per modality m.  Every branch
is a LightGCN over the user-item graph Â = D^{-1/2} A D^{-1/2} (the code's ``adj_type = pre``) with
mean readout over layers 0..L (L = ``n_layers``):

    [u^b; i^b] = 1/(L+1) Σ_l Â^l [e_u; x_i^b],   x_i^id = e_i,   x_i^m = W_m normalize(f_i^m) + c_m,

the user input e_u being the SAME ID embedding in every branch (as the code).  Fusion (the code's
``mm_fusion``): z_u = G_u concat_b(u^b) + g_u,  z_i = G_i concat_b(i^b) + g_i  (``fusion = mean``: the
mean of the branches instead of the concatenation);  score ŷ_ui = z_u·z_i (the code's ``predict``
applies a sigmoid, which does not change rankings; we return the inner product).

Main task (the code's ``infonce``): in-batch softmax over the L2-normalised fused embeddings of the batch
users and their positive items,  L_main = -mean_u log softmax_j(ẑ_u·ẑ_j / ``temp``)[pos(u)]
(``main_loss = bpr`` replaces it with BPR on z_u·z_i vs z_u·z_j with the sampler's negatives).

Self-supervised tasks (paper Sec. III-B/C, ``ssl_task``), InfoNCE with temperature ``ssl_temp``,
loss L = L_main + ``ssl_alpha`` · L_ssl:
* ``FAC`` (fine and coarse, the default): modalities are aligned to the ID space in a chain
  (v -> a -> t in the paper/code; here the order of ``modalities``): a_0 = i^id of the batch items,
  a_k = P_k a_{k-1},  b_k = Q_k i^{m_k},  L_ssl = Σ_k InfoNCE(a_k, b_k) with logits a_k b_k^T / ssl_temp
  (no normalisation, as the code); P_k, Q_k are linear maps to d dims, d/2 for the last one when M > 1 (as the code).
* ``FD`` (feature dropout): two views propagated with dropout (p = ``dropout_rate``) after every layer
  of every branch; fused, L2-normalised; L_ssl = InfoNCE over batch users + InfoNCE over batch items.
* ``FM`` (feature masking): two views, each zeroing the item inputs of one of the B branches (two
  distinct branches drawn at random per batch, torch RNG); same InfoNCE as FD.  ``FD+FM``: both.

Defaults: the authors' ``conf/SLMRec.properties`` + ``run.sh``: factors (recdim) 64, n_layers 3, lr 0.01,
Adam weight_decay 1e-4 over all parameters (``weight_decay``; the code's ``reg`` is unused), temp 0.2,
ssl_task FAC, ssl_alpha 0.1, ssl_temp 0.2, dropout_rate 0.3, fusion concat.  Xavier-uniform ID
embeddings and linear weights (default nn.Linear biases), as the code.

Deviations: (1) modalities are generic (the code hard-codes v/a/t, MMRec v/t with an unused audio link
in the FAC chain); (2) features are fixed inputs read through ``self.feature(m)`` (TikTok's learned
word-embedding text encoder of the code is not reproduced); (3) the B branch propagations share one
sparse product per layer (branches side by side as columns; identical maths), and FD/FM views too.

Hooks.  ``branch_embeddings(users, items)`` returns the raw per-branch GCN embeddings (u^b, i^b).  Because
the fused score z_u·z_i is bilinear in the branches (cross terms u^b·G·i^c), ``modality_embeddings``
exposes their exact additive split: with U_b = G_u[b-block] u^b and I_b = G_i[b-block] i^b (z_u = Σ_b U_b
+ g_u, z_i = Σ_b I_b + g_i), branch b's score is the Shapley value of the bilinear game,
    s_b = ½ [U_b·(z_i + g_i) + (z_u + g_u)·I_b],
returned as (e_u^b, e_i^b) = ([U_b, z_u + g_u]/√2 ⊕ [1 if b = id else 0],  [z_i + g_i, I_b]/√2 ⊕ [g_u·g_i if
b = id else 0]) (2d+1 wide), so Σ_b s_b = ŷ_ui EXACTLY (the constant g_u·g_i is put in the ``"id"`` branch).
Modality m's entry depends on its GCN embeddings u^m, i^m (hence on every item's features through the
propagation) and is differentiable w.r.t. ``self.feature(m)``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import TripletBatch, bpr_loss
from elliot.recommender.graph import normalized_ui_graph
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


def info_nce(a: Tensor, b: Tensor, temp: float) -> Tensor:
    """Cross-entropy of the in-batch logits a b^T / temp with the diagonal as targets (the temperature
    scales ``a`` before the product: same logits, no pass over the B x B matrix)."""
    logits = (a / temp) @ b.T
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


class SLMRec(MultimodalRecommender):
    """SLMRec (Tao et al., IEEE TMM 2022); see the module docstring."""

    name = "SLMRec"
    params = (
        Param("factors", int, 64, "embedding size d (recdim)"),
        Param("n_layers", int, 3, "LightGCN layers of every branch (layer_num)"),
        Param("lr", float, 0.01, "Adam learning rate"),
        Param("weight_decay", float, 1e-4, "Adam weight decay over all parameters (the authors' weight_decay)"),
        Param("temp", float, 0.2, "temperature of the main in-batch softmax task"),
        Param("main_loss", str, "infonce", "main task", choices=("infonce", "bpr")),
        Param("ssl_task", str, "FAC", "self-supervised task", choices=("FAC", "FD", "FM", "FD+FM", "none")),
        Param("ssl_alpha", float, 0.1, "weight of the self-supervised loss"),
        Param("ssl_temp", float, 0.2, "temperature of the self-supervised InfoNCE"),
        Param("dropout_rate", float, 0.3, "feature dropout of the FD / FD+FM views"),
        Param("fusion", str, "concat", "how branches are fused (mm_fusion_mode)", choices=("concat", "mean")),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        d = int(self.factors)
        self.branches: List[str] = ["id", *self.modalities]
        nb = len(self.branches)
        users, items = torch.empty(self.n_users, d), torch.empty(self.n_items, d)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.user_emb = nn.Parameter(users)
        self.item_emb = nn.Parameter(items)
        self.dense = nn.ModuleList([nn.Linear(self.feature_dim(m), d) for m in self.modalities])
        width = d * nb if self.fusion == "concat" else d
        self.fuse_user, self.fuse_item = nn.Linear(width, d), nn.Linear(width, d)
        linears = [*self.dense, self.fuse_user, self.fuse_item]
        if self.ssl_task == "FAC":
            outs = [d] * len(self.modalities)
            if len(outs) > 1:  # the coarsest alignment is d/2 wide (code: g_iva_ivat, g_t_ivat); kwai (v only): d
                outs[-1] = d // 2
            self.chain = nn.ModuleList([nn.Linear(d, o) for o in outs])  # g_i_iv, g_iv_iva, g_iva_ivat
            self.align = nn.ModuleList([nn.Linear(d, o) for o in outs])  # g_v_iv, g_a_iva, g_t_ivat
            linears += [*self.chain, *self.align]
        for lin in linears:
            nn.init.xavier_uniform_(lin.weight)
        self.adj = SparseOp(normalized_ui_graph(dataset.train, self.device), symmetric=True)
        self._cache: Optional[Tuple[Tensor, Tensor]] = None
        self.to(self.device)

    # ---- encoders -----------------------------------------------------------------------------
    def _ego(self) -> Tensor:
        """Layer-0 inputs of all branches side by side: [[e_u, ..., e_u]; [e_i, x^1, ..., x^M]]  (U+I, B·d)."""
        items = [self.item_emb] + [lin(F.normalize(self.feature(m), p=2, dim=1))
                                   for m, lin in zip(self.modalities, self.dense)]
        return torch.cat([self.user_emb.repeat(1, len(self.branches)), torch.cat(items, 1)])

    def _propagate(self, ego: Tensor, dropout: bool = False) -> Tensor:
        """Mean over layers 0..L of Â^l ego, with dropout after every layer for the FD views."""
        x = total = ego
        for _ in range(int(self.n_layers)):
            x = self.adj @ x
            if dropout:
                x = F.dropout(x, p=float(self.dropout_rate), training=True)
            total = total + x
        return total / (int(self.n_layers) + 1)

    def _fuse(self, z: Tensor, lin: nn.Linear) -> Tensor:
        if self.fusion == "mean":
            z = z.view(len(z), len(self.branches), -1).mean(1)
        return lin(z)

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        ego = self._ego()
        out = self._propagate(ego)
        users, pos = batch.users, batch.pos_items
        ub, ib = out[users], out[self.n_users + pos]
        zu, zi = self._fuse(ub, self.fuse_user), self._fuse(ib, self.fuse_item)
        if self.main_loss == "infonce":
            loss = info_nce(F.normalize(zu, dim=1), F.normalize(zi, dim=1), float(self.temp))
        else:
            zj = self._fuse(out[self.n_users + batch.neg_items], self.fuse_item)
            loss = bpr_loss((zu * zi).sum(-1), (zu * zj).sum(-1))
        if self.ssl_task != "none" and self.ssl_alpha:
            loss = loss + float(self.ssl_alpha) * self._ssl(ego, ib, users, pos)
        return loss

    def _ssl(self, ego: Tensor, ib: Tensor, users: Tensor, items: Tensor) -> Tensor:
        d, t = int(self.factors), float(self.ssl_temp)
        if self.ssl_task == "FAC":
            a, total = ib[:, :d], 0.0
            for k, (chain, align) in enumerate(zip(self.chain, self.align)):
                a = chain(a)
                total = total + info_nce(a, align(ib[:, (k + 1) * d:(k + 2) * d]), t)
            return total
        width = ego.shape[1]
        if self.ssl_task in ("FM", "FD+FM"):  # each view zeroes the item inputs of one branch
            picks = torch.randperm(len(self.branches), device=ego.device)[:2]
            masks = torch.ones(2, len(self.branches), device=ego.device, dtype=ego.dtype)
            masks[0, picks[0]] = 0.0
            masks[1, picks[1]] = 0.0
            masks = masks.repeat_interleave(d, dim=1)  # (2, B·d)
            x_items = ego[self.n_users:]
            ego2 = torch.cat([ego[: self.n_users].repeat(1, 2), torch.cat([x_items * masks[0], x_items * masks[1]], 1)])
        else:
            ego2 = ego.repeat(1, 2)
        out = self._propagate(ego2, dropout=self.ssl_task in ("FD", "FD+FM"))
        loss = 0.0
        for rows, lin in ((out[users], self.fuse_user), (out[self.n_users + items], self.fuse_item)):
            v1 = F.normalize(self._fuse(rows[:, :width], lin), dim=1)
            v2 = F.normalize(self._fuse(rows[:, width:], lin), dim=1)
            loss = loss + info_nce(v1, v2, t)
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr`` and the authors' coupled ``weight_decay`` (fused kernel, same maths)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay),
                                fused=True)

    # ---- scoring ------------------------------------------------------------------------------------
    def _final(self) -> Tuple[Tensor, Tensor]:
        out = self._propagate(self._ego())
        return self._fuse(out[: self.n_users], self.fuse_user), self._fuse(out[self.n_users:], self.fuse_item)

    def prepare_scoring(self) -> None:
        self._cache = self._final()

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        zu, zi = self._cache if self._cache is not None else self._final()
        return zu[users] @ zi.T

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        out = self._propagate(self._ego())
        zu = self._fuse(out[users], self.fuse_user)
        zi = self._fuse(out[self.n_users + items], self.fuse_item)
        return (zu * zi).sum(-1)

    # ---- hooks --------------------------------------------------------------------------------------
    def branch_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        """Raw per-branch GCN embeddings ``{branch: (u^b, i^b)}`` (branches "id" and each modality)."""
        out = self._propagate(self._ego())
        d, ub, ib = int(self.factors), out[users], out[self.n_users + items]
        return {b: (ub[:, k * d:(k + 1) * d], ib[:, k * d:(k + 1) * d]) for k, b in enumerate(self.branches)}

    def _contributions(self, z: Tensor, lin: nn.Linear) -> List[Tensor]:
        """Per-branch additive parts of lin's fused output (bias excluded)."""
        d, nb = int(self.factors), len(self.branches)
        parts = z.view(len(z), nb, d)
        if self.fusion == "mean":
            return [parts[:, k] @ lin.weight.T / nb for k in range(nb)]
        return [parts[:, k] @ lin.weight[:, k * d:(k + 1) * d].T for k in range(nb)]

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        out = self._propagate(self._ego())
        cu = self._contributions(out[users], self.fuse_user)
        ci = self._contributions(out[self.n_users + items], self.fuse_item)
        gu, gi = self.fuse_user.bias, self.fuse_item.bias
        zu, zi = sum(cu) + gu, sum(ci) + gi
        hu, hi = zu + gu, zi + gi
        scale = 1.0 / math.sqrt(2.0)
        ones, zeros = torch.ones(len(users), 1, device=zu.device), torch.zeros(len(users), 1, device=zu.device)
        const = (gu * gi).sum().expand(len(items), 1)
        result = {}
        for k, b in enumerate(self.branches):
            eu = torch.cat([cu[k] * scale, hu * scale, ones if k == 0 else zeros], 1)
            ei = torch.cat([hi * scale, ci[k] * scale, const if k == 0 else zeros], 1)
            result[b] = (eu, ei)
        return result
