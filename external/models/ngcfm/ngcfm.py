r"""NGCFM: NGCF with a multimodal item term, the Elliot forks' ``external.NGCFM`` (sisinflab/Ducho-meets-Elliot
``external/models/ngcf_m``: ``NGCFM.py``, ``NGCFMModel.py``, ``NGCFLayer.py``; the multimodal-feature NGCF of
the forks' benchmarks, after Wang et al., "Neural Graph Collaborative Filtering", SIGIR 2019).

What is implemented (the fork's model), on top of the built-in :class:`~elliot.recommender.ngcf.NGCF`
(its layer, propagation matrix, dropouts and parameters are reused, not repeated):

* Collaborative part: NGCF's propagation with Â = D^{-1}(A + I) (``adj_type: norm``; the fork's
  ``apply_norm(add_self_loops=True)``), E^(l) = LeakyReLU_0.2(Â E^(l-1) W_1 + b_1 + (Â E^(l-1) ⊙ E^(l-1)) W_2 + b_2),
  message dropout on E^(l), Ê^(l) = E^(l)/|E^(l)| fed to the next layer (the fork's order), and the MEAN
  readout e* = mean(E^(0), Ê^(1), ..., Ê^(L)) (the fork stacks and averages).
* Multimodal part: the modalities' features concatenated, x_i = x_i^1 ‖ ... ‖ x_i^M (``aggregation: concat``),
  one projection p_i = normalise(W x_i + b) (``factors`` wide, L2-normalised rows) and a user vector θ_u
  (the fork's Tu): ŷ_ui = e*_u · e*_i + θ_u · p_i.
* Objective (the fork's ``train_step``): L = mean_batch softplus(-(ŷ_ui - ŷ_uj))
  + ``l_w`` (|e*_u|² + |e*_i|² + |e*_j|² + |θ_u|² + |p_i|² + |p_j|²) / (2B), Adam.

Defaults: the fork's ``_params_list``: lr 5e-4, factors 64, l_w 0.01, n_layers 3 of weight_size 64 (here
``weight_size`` empty = ``factors`` wide, which the mean readout needs),
message_dropout 0.5, node_dropout 0 (none), normalize true, aggregation concat; readout mean (the fork's
code).  Every NGCF parameter is accepted (``adj_type``, ``readout``, tuples for ``weight_size`` /
``message_dropout`` ...), so does the fork's ``loaders`` / ``modalities``.  Initialisation: Xavier-uniform
ID embeddings, θ, NGCF weights and biases; default nn.Linear projection (as the fork).

Deviations: (1) the fork keeps its nn.Dropout layers in a plain list, so ``model.eval()`` never reaches them
and message dropout stays on when it ranks; here dropout acts in training only; (2) the fork clamps the
margin at -80 before the softplus; the plain softplus differs only below that margin; (3) NGCF's own
deviations (node dropout redrawn per epoch from a seeded generator, one LeakyReLU over the two messages)
apply; (4) features are fixed inputs read through ``self.feature(m)``, the projection computed for the
batch's distinct items (same values).

Hooks.  With W = [W_1 ... W_M] split by the concatenation's column blocks, W x_i + b = Σ_m (W_m x_i^m + b/M)
and the normalisation is one scalar per item, so θ_u · p_i splits exactly into modality branches:
``modality_embeddings`` returns ``"id"`` (e*_u, e*_i) and per modality m (θ_u, (W_m x_i^m + b/M)/|W x_i + b|);
their scores sum to ``score_pairs``.  Features reach the score only through the projection (differentiably).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import TripletBatch, bpr_loss, gather_rows, l2_reg, unique_index
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.ngcf import NGCF

#: the fork's defaults replacing the built-in NGCF's (authors') ones
_FORK_DEFAULTS = {"lr": 5e-4, "l_w": 0.01, "weight_size": [], "n_layers": 3, "message_dropout": [0.5],
                  "readout": "mean"}


class NGCFM(NGCF, MultimodalRecommender):
    """NGCF + projected concatenated features (the Elliot forks' NGCFM); see the module docstring."""

    name = "NGCFM"
    feed_normalized = True
    params = tuple(dataclasses.replace(p, default=_FORK_DEFAULTS[p.name]) if p.name in _FORK_DEFAULTS else p
                   for p in NGCF.params) + (
        Param("aggregation", str, "concat", "how the modalities' features are combined (the fork: concat only)",
              choices=("concat",)),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k = int(self.factors)
        theta = torch.empty(self.n_users, k)
        nn.init.xavier_uniform_(theta)
        self.theta = nn.Parameter(theta)  # the fork's Tu
        dims = [self.feature_dim(m) for m in self.modalities]
        self.proj = nn.Linear(sum(dims), k)
        bounds = torch.tensor([0] + dims).cumsum(0).tolist()
        self._blocks = list(zip(bounds[:-1], bounds[1:]))  # column block of W per modality
        self.to(self.device)

    def _widths(self) -> List[int]:
        """Empty ``weight_size`` (the default): every layer ``factors`` wide (the fork's 64 = its factors)."""
        if not list(self.weight_size or []):
            return [int(self.factors)] * max(1, int(self.n_layers))
        return super()._widths()

    # ---- the multimodal term ------------------------------------------------------------------
    def _raw_projection(self, items: Optional[Tensor]) -> Tensor:
        """W x_i + b for ``items`` (all when None), from the current features."""
        feats = [self.feature(m) if items is None else gather_rows(self.feature(m), items) for m in self.modalities]
        return self.proj(torch.cat(feats, 1))

    def _projection(self, items: Tensor) -> Tensor:
        """p_i = normalise(W x_i + b) for ``items``, computed once per distinct item."""
        uniq, inv = unique_index(items, self.n_items)
        return gather_rows(F.normalize(self._raw_projection(uniq), dim=1), inv)

    # ---- training / scoring ---------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:
        users_all, items_all = self.propagate(training=True)
        n = len(batch.users)
        both = torch.cat([batch.pos_items, batch.neg_items])
        u, theta = gather_rows(users_all, batch.users), gather_rows(self.theta, batch.users)
        i, j = gather_rows(items_all, both).split(n)
        p_i, p_j = self._projection(both).split(n)
        pos = (u * i).sum(-1) + (theta * p_i).sum(-1)
        neg = (u * j).sum(-1) + (theta * p_j).sum(-1)
        return bpr_loss(pos, neg) + float(self.l_w) * l2_reg(u, i, j, theta, p_i, p_j, batch_size=n)

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        users_all, items_all = self.propagate(training=False)
        content = F.normalize(self._raw_projection(None), dim=1)
        return torch.cat([users_all, self.theta], 1), torch.cat([items_all, content], 1)

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        users_all, items_all = self.propagate(training=False)
        collaborative = (gather_rows(users_all, users) * gather_rows(items_all, items)).sum(-1)
        return collaborative + (gather_rows(self.theta, users) * self._projection(items)).sum(-1)

    def _content_parts(self, items: Tensor) -> List[Tensor]:
        """(W_m x_i^m + b/M) / |W x_i + b| per modality, for ``items``."""
        w, b, n_mod = self.proj.weight, self.proj.bias, len(self.modalities)
        parts = [torch.addmm(b / n_mod, gather_rows(self.feature(m), items), w[:, lo:hi].T)
                 for m, (lo, hi) in zip(self.modalities, self._blocks)]
        scale = sum(parts).norm(dim=1, keepdim=True).clamp_min(1e-12)  # F.normalize's eps
        return [p / scale for p in parts]

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        users_all, items_all = self.propagate(training=False)
        theta = gather_rows(self.theta, users)
        out = {"id": (gather_rows(users_all, users), gather_rows(items_all, items))}
        for m, part in zip(self.modalities, self._content_parts(items)):
            out[m] = (theta, part)
        return out
