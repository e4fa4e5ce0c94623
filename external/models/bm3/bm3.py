"""BM3: Bootstrap Latent Representations for Multi-modal Recommendation (Zhou, Zhou, Zhang, Liu, Miao,
Wang, Wei, Zhou; WWW 2023; arXiv 2207.05969; code: enoche/BM3, enoche/MMRec ``models/bm3.py``; Elliot port:
sisinflab/Formal-MultiMod-Rec ``external/models/bm3``).

BM3 needs no negative items: it bootstraps a target view from the online one by dropout and trains the
online view (through a predictor) to agree with it, BYOL-style, without a momentum encoder.  What is
implemented (paper Sec. 3, with the released code's choices where the two differ):

* Backbone (Sec. 3.1): LightGCN on the user-item graph Â = D^{-1/2} A D^{-1/2} with K = ``n_layers``
  layers and mean readout, plus a residual of the item ID embedding (the code's ``forward``):
      [h̄_u; h̄_i] = 1/(K+1) Σ_k Â^k [e_u; e_i],    h_u = h̄_u,    h_i = h̄_i + e_i.
  Modality encoders (Sec. 3.1): h_i^m = W_m x_i^m + b_m (``factors_multimod`` wide, the code's image_trs /
  text_trs; one per entry of ``modalities``).
* Online / target views (Sec. 3.2): one shared linear predictor p(z) = W_p z + b_p gives the online view
  p(h); the target view is the SAME representation with gradients stopped and dropout applied
  (the latent-embedding augmentation of Sec. 3.2, p = ``dropout``):  h̃ = dropout(sg(h)).
* Losses (Sec. 3.3), with cos(a, b) = a·b / (|a||b|) averaged over the (user, positive item) pairs of the
  batch:
      L_rec   = [1 - cos(p(h_u), h̃_i)] + [1 - cos(p(h_i), h̃_u)]                (graph reconstruction)
      L_align = Σ_m [1 - cos(p(h_i^m), h̃_i)]                                      (inter-modality alignment)
      L_mask  = Σ_m [1 - cos(p(h_i^m), h̃_i^m)],  h̃_i^m = dropout(sg(h_i^m))      (intra-modality masking)
      L = L_rec + ``cl_weight`` · (L_align + L_mask) + ``l_w`` · (‖H_U‖_F + ‖H_I‖_F) / |I|,
  the last term being the code's ``EmbLoss`` on the full tables of h_u and h_i (sum of Frobenius
  norms - not squared - divided by the number of items, the row count of its last argument).
* Scoring (the code's ``full_sort_predict``): ŷ_ui = p(h_u)·p(h_i).

Negatives.  The trainer hands every model BPR triples (users, pos_items, neg_items); an epoch visits
every training interaction once in a seeded random order (as MMRec's ``use_neg_sampling: False`` loader
does).  BM3 uses (users, pos_items) only and IGNORES ``neg_items``.

Defaults.  MMRec ``configs/model/BM3.yaml`` + ``overall.yaml``: factors = factors_multimod = 64
(embedding_size / feat_embed_dim), lr 1e-3, cl_weight 2.0, and the first value of each of its grids:
n_layers 1 (grid {1, 2}), dropout 0.3 ({0.3, 0.5}), l_w 0.1 (reg_weight, {0.1, 0.01}); lr_sched empty,
i.e. constant (MMRec's learning_rate_scheduler [1.0, 50]).  The Elliot fork's own defaults differ (lr 5e-4,
reg_weight 0.01, cl_weight 0.01, dropout 0.1, lr_sched (0.96, 50)); write them in the YAML to get them.
Initialisation as the code: Xavier-uniform ID embeddings, Xavier-normal predictor and projection weights,
default nn.Linear biases.  The fork's parameter names are accepted as aliases (``multimod_factors``,
``reg_weight``, ``loaders``, ...).

Deviations from MMRec's code: (1) MMRec fine-tunes the raw features (``Embedding.from_pretrained(...,
freeze=False)``); here they are fixed inputs read through ``self.feature(m)`` (the attack surface) and
W_m, b_m are trained, unless ``fine_tune_features: true`` (MMRec's behaviour: the tables are trained too); (2) the dropout masks come from a private generator seeded by ``seed`` (the code
uses torch's global RNG); a row repeated in a batch gets one mask, as in the code, which drops the full
tables before gathering; (3) the predictor, projections and dropout are applied to the batch's distinct
users and items only (the same values; MMRec maps every user and item each step); (4) modalities are
generic (MMRec hard-codes image and text); (5) ``fuse_modalities`` (default false = MMRec) is an optional
variant, see below.  factors must equal factors_multimod: the one predictor maps both (MMRec uses
embedding_size for both and ignores feat_embed_dim).

What is fused, and the hooks.  The score uses the ID path only; the features shape it only through
training (L_align pulls h_i towards what the modality encoders predict).  Hence:

* ``modality_embeddings`` returns ``"id"``: (p(h_u), p(h_i)), whose inner product IS the score, and for
  every modality m: (p(h_u), p(h_i^m)), the online modality view that L_align trains to agree with
  h_i, scored against the same user vector (computed from the current, possibly replaced, features;
  differentiable w.r.t. them).  These modality scores are NOT part of the default score, so an attack
  on the features changes the branch scores and never ``score`` / ``score_pairs``.
* With ``fuse_modalities: true`` the score becomes ŷ_ui = p(h_u)·(p(h_i) + Σ_m p(h_i^m)), exactly the sum
  of all branch scores, and attacks on features reach it.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import EmbeddingScoring, TripletBatch, gather_rows, unique_index
from elliot.recommender.graph import propagate_sum, ui_propagation_op
from elliot.recommender.multimodal import MultimodalRecommender


def _one_minus_cos(online: Tensor, target: Tensor) -> Tensor:
    """1 - mean_rows cos(online, target) (target already without gradient)."""
    return 1.0 - F.cosine_similarity(online, target, dim=-1).mean()


class BM3(EmbeddingScoring, MultimodalRecommender):
    """BM3 (Zhou et al., WWW 2023); see the module docstring."""

    name = "BM3"
    fine_tunable_features = True  # every use of the features is self.feature(m) in the forward
    params = (
        Param("factors", int, 64, "size of user/item ID embeddings (MMRec embedding_size)",
              aliases=("embedding_size",)),
        Param("factors_multimod", int, 64, "size of the projected modality features (MMRec feat_embed_dim; "
              "must equal factors)", aliases=("multimod_factors", "feat_embed_dim")),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("n_layers", int, 1, "LightGCN layers K on the user-item graph"),
        Param("l_w", float, 0.1, "weight of the embedding-norm term (MMRec / fork reg_weight)",
              aliases=("reg_weight",)),
        Param("cl_weight", float, 2.0, "weight of the modality alignment + masking losses", low=0.0),
        Param("dropout", float, 0.3, "dropout of the target views (latent augmentation)"),
        Param("fuse_modalities", bool, False, "also add the modality scores p(h_u)·p(h_i^m) at inference "
              "(not in the paper; makes the score feature-dependent)"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, km = int(self.factors), int(self.factors_multimod)
        if k != km:
            raise ConfigError(f"BM3: the one predictor maps the {k}-d ID embeddings and the {km}-d projected "
                              "features, so factors must equal factors_multimod")
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))  # [E_u; E_i], the propagation's input
        self.predictor = nn.Linear(k, k)
        nn.init.xavier_normal_(self.predictor.weight)
        self.proj = nn.ModuleList([nn.Linear(self.feature_dim(m), km) for m in self.modalities])
        for lin in self.proj:
            nn.init.xavier_normal_(lin.weight)
        self.adj = ui_propagation_op(dataset.train, self.device)  # not a parameter, not in the state dict
        self.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.hp.get("seed", 42)))

    # ---- representations ------------------------------------------------------------------------
    def _tables(self) -> Tuple[Tensor, Tensor]:
        """(h_u of all users, h_i = h̄_i + e_i of all items)."""
        mean = propagate_sum(self.adj, self.embeddings, int(self.n_layers)) / (int(self.n_layers) + 1)
        return mean[: self.n_users], mean[self.n_users:] + self.embeddings[self.n_users:]

    def _projected(self, items: Optional[Tensor] = None) -> List[Tensor]:
        """h_i^m = W_m x_i^m + b_m for ``items`` (all when None), from the current features."""
        return [lin(self.feature(m) if items is None else gather_rows(self.feature(m), items))
                for m, lin in zip(self.modalities, self.proj)]

    def _target(self, x: Tensor) -> Tensor:
        """dropout(sg(x)) with the model's own generator (scaled by 1/(1-p) as F.dropout)."""
        p = float(self.dropout)
        x = x.detach()
        if p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self._gen, device=x.device) >= p
        return x * keep / (1.0 - p)

    # ---- training -----------------------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        """BM3's objective on the batch's (user, positive item) pairs; ``neg_items`` is not used."""
        hu_all, hi_all = self._tables()
        uniq_u, inv_u = unique_index(batch.users, self.n_users)
        uniq_i, inv_i = unique_index(batch.pos_items, self.n_items)
        hu, hi = gather_rows(hu_all, uniq_u), gather_rows(hi_all, uniq_i)
        online_u, online_i = self.predictor(hu), self.predictor(hi)
        target_u, target_i = self._target(hu), self._target(hi)
        t_i = gather_rows(target_i, inv_i)
        loss = _one_minus_cos(gather_rows(online_u, inv_u), t_i) \
            + _one_minus_cos(gather_rows(online_i, inv_i), gather_rows(target_u, inv_u))
        if self.l_w:
            loss = loss + float(self.l_w) * (hu_all.norm() + hi_all.norm()) / self.n_items
        if self.cl_weight:
            modal = 0.0
            for h in self._projected(uniq_i):
                online_m = gather_rows(self.predictor(h), inv_i)
                modal = modal + _one_minus_cos(online_m, t_i) \
                    + _one_minus_cos(online_m, gather_rows(self._target(h), inv_i))
            loss = loss + float(self.cl_weight) * modal
        return loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``, no weight decay (MMRec overall.yaml weight_decay 0)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    # ---- scoring ------------------------------------------------------------------------------------
    def _scoring_rows(self, users: Optional[Tensor], items: Optional[Tensor]):
        """(p(h_u), p(h_i), [p(h_i^m) per modality]) for ``users`` / ``items`` (all when None)."""
        hu_all, hi_all = self._tables()
        hu = hu_all if users is None else gather_rows(hu_all, users)
        hi = hi_all if items is None else gather_rows(hi_all, items)
        return self.predictor(hu), self.predictor(hi), [self.predictor(h) for h in self._projected(items)]

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        hu_all, hi_all = self._tables()
        item_vec = self.predictor(hi_all)
        if self.fuse_modalities:
            item_vec = item_vec + sum(self.predictor(h) for h in self._projected())
        return self.predictor(hu_all), item_vec

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        hu_all, hi_all = self._tables()
        pu, pi = self.predictor(gather_rows(hu_all, users)), self.predictor(gather_rows(hi_all, items))
        if self.fuse_modalities:
            pi = pi + sum(self.predictor(h) for h in self._projected(items))
        return (pu * pi).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        pu, pi, modal = self._scoring_rows(users, items)
        out = {"id": (pu, pi)}
        for m, pm in zip(self.modalities, modal):
            out[m] = (pu, pm)
        return out
