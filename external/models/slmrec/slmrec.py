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
word-embedding text encoder of the code is not reproduced).

Computation (same values and gradients as propagating the B branches side by side, up to float rounding):
* the propagation is linear and Â bipartite, so with M = 1/(L+1) Σ_l Â^l one width-d propagation of
  [e_u; e_i] gives the ID branch M [e_u; e_i], and its even layers on the user rows plus its odd layers
  on the item rows give the users' share M [e_u; 0] of every modality branch;
* the modality inputs are affine in fixed features: M [0; x^m] = (M [0; normalize(f^m)]) W_m^T + (M [0; 1]) c_m^T,
  the propagated features computed once per feature tensor (cached while the stored features are
  unchanged; recomputed, differentiably, for features replaced by an attack; a modality whose table would
  exceed ``feature_cache_bytes`` propagates x^m on every pass instead);
* the losses are evaluated on the batch's distinct users and items only, multiplicities kept in every
  mean and in the in-batch softmax (:func:`grouped_info_nce`, one fused forward/backward);
* FM views are the outputs with one branch replaced by M [e_u; 0] (no second propagation); FD and FD+FM
  propagate the 2·B dropout views side by side as the code does, with the same random draws.

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
from elliot.recommender.base import EmbeddingScoring, TripletBatch, bpr_loss, unique_index
from elliot.recommender.contrastive import grouped_info_nce, info_nce  # noqa: F401 (info_nce: re-exported)
from elliot.recommender.graph import normalized_ui_graph
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


class SLMRec(EmbeddingScoring, MultimodalRecommender):
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

    #: largest propagated-feature table (U+I) x (d_m + 1) float32 kept for one modality; a modality whose
    #: table would be larger propagates its projected inputs x^m on every pass instead (same values)
    feature_cache_bytes = 512 * 2 ** 20

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
        n_nodes = self.n_users + self.n_items
        # modalities whose features are propagated once (cached) rather than their projections every pass
        self._fixed_inputs = [n_nodes * (self.feature_dim(m) + 1) * 4 <= self.feature_cache_bytes
                              for m in self.modalities]
        self._feature_cache: Dict[str, Tuple[Tensor, int, Tensor]] = {}
        self.to(self.device)

    # ---- encoders -----------------------------------------------------------------------------
    def _item_input(self, k: int) -> Tensor:
        """x^m = W_m normalize(f^m) + c_m of the modality at position ``k``  (I, d)."""
        return self.dense[k](F.normalize(self.feature(self.modalities[k]), p=2, dim=1))

    def _ego(self) -> Tensor:
        """Layer-0 inputs of all branches side by side: [[e_u, ..., e_u]; [e_i, x^1, ..., x^M]]  (U+I, B·d)."""
        items = [self.item_emb] + [self._item_input(k) for k in range(len(self.modalities))]
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

    def _propagated_features(self, k: int) -> Tensor:
        """[Φ_m | σ] = 1/(L+1) Σ_l Â^l [0; normalize(f^m) | 1]  (U+I, d_m + 1): the propagation of the
        item-only inputs, which do not depend on parameters.  Cached for the stored feature tensor (until
        it is replaced or modified in place); recomputed, differentiably, for replaced features."""
        m = self.modalities[k]
        feat = self.feature(m)
        stored = (feat is getattr(self, f"_feat_{m}") and not feat.requires_grad
                  and not torch.is_inference_mode_enabled())
        if stored:
            hit = self._feature_cache.get(m)
            if hit is not None and hit[0] is feat and hit[1] == feat._version:
                return hit[2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not stored):
            items = torch.cat([F.normalize(feat, p=2, dim=1), feat.new_ones(len(feat), 1)], 1)
            table = self._propagate(torch.cat([items.new_zeros(self.n_users, items.shape[1]), items]))
        if stored:
            self._feature_cache[m] = (feat, feat._version, table)
        return table

    def _outputs(self, rows: Optional[Tensor] = None, with_user_share: bool = False):
        """``self._propagate(self._ego())[rows]`` (all nodes when ``rows`` is None), computed as

        * one propagation of [e_u; e_i] (plus the inputs [0; x^m] of modalities without a feature cache):
          its mean is the ID branch; the graph is bipartite, so Â^l [e_u; 0] lives on the user rows for
          even l and on the item rows for odd l, and that parity split of the same layers gives the users'
          share M [e_u; 0] (M = 1/(L+1) Σ_l Â^l) of every modality branch;
        * M [0; x^m] = Φ_m W_m^T + σ c_m^T for cached modalities (:meth:`_propagated_features`).

        With ``with_user_share`` also returns M [e_u; 0] at ``rows`` (the FM views' masked branch)."""
        d, n_layers = int(self.factors), int(self.n_layers)
        slow = [k for k, fixed in enumerate(self._fixed_inputs) if not fixed]
        x = torch.cat([self.user_emb, self.item_emb])
        if slow:  # columns [id | x^m of the uncached modalities]; users' inputs of the latter are zero
            items = torch.cat([self._item_input(k) for k in slow], 1)
            x = torch.cat([x, torch.cat([items.new_zeros(self.n_users, items.shape[1]), items])], 1)
        even, odd = x, None
        for layer in range(1, n_layers + 1):
            x = self.adj @ x
            if layer % 2:
                odd = x if odd is None else odd + x
            else:
                even = even + x
        if rows is not None:
            even = even.index_select(0, rows)
            odd = odd.index_select(0, rows) if odd is not None else None
        total = (even + odd if odd is not None else even) / (n_layers + 1)
        is_user = (rows < self.n_users if rows is not None
                   else torch.arange(len(total), device=total.device) < self.n_users).unsqueeze(1)
        own = odd[:, :d] if odd is not None else torch.zeros_like(even[:, :d])
        user_share = torch.where(is_user, even[:, :d], own) / (n_layers + 1)
        blocks = [total[:, :d]]
        for k, lin in enumerate(self.dense):
            if self._fixed_inputs[k]:
                table = self._propagated_features(k)
                table = table.index_select(0, rows) if rows is not None else table
                part = F.linear(table[:, :-1], lin.weight) + table[:, -1:] * lin.bias
            else:
                j = 1 + slow.index(k)
                part = total[:, j * d:(j + 1) * d]
            blocks.append(user_share + part)
        out = torch.cat(blocks, 1)
        return (out, user_share) if with_user_share else out

    def _fuse(self, z: Tensor, lin: nn.Linear) -> Tensor:
        if self.fusion == "mean":
            z = z.view(len(z), len(self.branches), -1).mean(1)
        return lin(z)

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        """Computed on the batch's distinct users and items (multiplicities kept in every mean and
        softmax, see :func:`grouped_info_nce`): the same loss as over the batch rows."""
        users, u_inv, u_cnt = unique_index(batch.users, self.n_users, return_counts=True)
        items, i_inv, i_cnt = unique_index(batch.pos_items, self.n_items, return_counts=True)
        nodes = [users, items + self.n_users]
        if self.main_loss != "infonce":
            negs, j_inv = unique_index(batch.neg_items, self.n_items)
            nodes.append(negs + self.n_users)
        fm = self.ssl_task == "FM" and self.ssl_alpha
        out = self._outputs(torch.cat(nodes), with_user_share=bool(fm))
        out, share = out if fm else (out, None)
        nu, ni = len(users), len(items)
        ub, ib = out[:nu], out[nu:nu + ni]
        zu, zi = self._fuse(ub, self.fuse_user), self._fuse(ib, self.fuse_item)
        if self.main_loss == "infonce":
            loss = grouped_info_nce(F.normalize(zu, dim=1), F.normalize(zi, dim=1), u_inv, i_inv, i_cnt,
                                    float(self.temp))
        else:
            zj = self._fuse(out[nu + ni:], self.fuse_item)
            zu = zu.index_select(0, u_inv)
            loss = bpr_loss((zu * zi.index_select(0, i_inv)).sum(-1), (zu * zj.index_select(0, j_inv)).sum(-1))
        if self.ssl_task != "none" and self.ssl_alpha:
            groups = ((users, u_inv, u_cnt), (items, i_inv, i_cnt))
            views = None if share is None else (out[:nu + ni], share[:nu + ni])
            loss = loss + float(self.ssl_alpha) * self._ssl(ib, groups, views)
        return loss

    def _ssl(self, ib: Tensor, groups, views=None) -> Tensor:
        """``groups``: ((distinct users, inverse, counts), (distinct items, inverse, counts)) of the batch;
        ``ib`` the outputs at the distinct items; ``views`` (outputs, users' share) at [users; items] (FM)."""
        d, t = int(self.factors), float(self.ssl_temp)
        (users, u_inv, u_cnt), (items, i_inv, i_cnt) = groups
        if self.ssl_task == "FAC":
            a, total = ib[:, :d], 0.0
            for k, (chain, align) in enumerate(zip(self.chain, self.align)):
                a = chain(a)
                total = total + grouped_info_nce(a, align(ib[:, (k + 1) * d:(k + 2) * d]), i_inv, i_inv, i_cnt, t)
            return total
        nb = len(self.branches)
        width = nb * d
        if self.ssl_task in ("FM", "FD+FM"):  # each view zeroes the item inputs of one branch
            picks = torch.randperm(nb, device=ib.device)[:2]
            masks = torch.ones(2, nb, device=ib.device, dtype=ib.dtype)
            masks[0, picks[0]] = 0.0
            masks[1, picks[1]] = 0.0
            masks = masks.repeat_interleave(d, dim=1)  # (2, B·d)
        if self.ssl_task == "FM":  # no dropout: a zeroed branch keeps only its users' share M [e_u; 0]
            out, share = views
            share = share.repeat(1, nb)
            out = torch.cat([torch.where(masks[0] > 0, out, share), torch.where(masks[1] > 0, out, share)], 1)
        else:
            ego = self._ego()
            if self.ssl_task == "FD+FM":
                x_items = ego[self.n_users:]
                ego2 = torch.cat([ego[: self.n_users].repeat(1, 2),
                                  torch.cat([x_items * masks[0], x_items * masks[1]], 1)])
            else:
                ego2 = ego.repeat(1, 2)
            out = self._propagate(ego2, dropout=True).index_select(0, torch.cat([users, items + self.n_users]))
        loss = 0.0
        nu = len(users)
        for rows, inv, cnt, lin in ((out[:nu], u_inv, u_cnt, self.fuse_user), (out[nu:], i_inv, i_cnt, self.fuse_item)):
            v1 = F.normalize(self._fuse(rows[:, :width], lin), dim=1)
            v2 = F.normalize(self._fuse(rows[:, width:], lin), dim=1)
            loss = loss + grouped_info_nce(v1, v2, inv, inv, cnt, t)
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr`` and the authors' coupled ``weight_decay`` (fused kernel, same maths)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay),
                                fused=True)

    # ---- scoring ------------------------------------------------------------------------------------
    def _final(self) -> Tuple[Tensor, Tensor]:
        out = self._outputs()
        return self._fuse(out[: self.n_users], self.fuse_user), self._fuse(out[self.n_users:], self.fuse_item)

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        return self._final()

    def _pair_outputs(self, users: Tensor, items: Tensor) -> Tuple[Tensor, Tensor]:
        out = self._outputs(torch.cat([users, items + self.n_users]))
        return out[: len(users)], out[len(users):]

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        ub, ib = self._pair_outputs(users, items)
        zu = self._fuse(ub, self.fuse_user)
        zi = self._fuse(ib, self.fuse_item)
        return (zu * zi).sum(-1)

    # ---- hooks --------------------------------------------------------------------------------------
    def branch_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        """Raw per-branch GCN embeddings ``{branch: (u^b, i^b)}`` (branches "id" and each modality)."""
        ub, ib = self._pair_outputs(users, items)
        d = int(self.factors)
        return {b: (ub[:, k * d:(k + 1) * d], ib[:, k * d:(k + 1) * d]) for k, b in enumerate(self.branches)}

    def _contributions(self, z: Tensor, lin: nn.Linear) -> List[Tensor]:
        """Per-branch additive parts of lin's fused output (bias excluded)."""
        d, nb = int(self.factors), len(self.branches)
        parts = z.view(len(z), nb, d)
        if self.fusion == "mean":
            return [parts[:, k] @ lin.weight.T / nb for k in range(nb)]
        return [parts[:, k] @ lin.weight[:, k * d:(k + 1) * d].T for k in range(nb)]

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        ub, ib = self._pair_outputs(users, items)
        cu = self._contributions(ub, self.fuse_user)
        ci = self._contributions(ib, self.fuse_item)
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
