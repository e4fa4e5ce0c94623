"""DLRM: Deep Learning Recommendation Model for Personalization and Recommendation Systems
(Naumov et al., arXiv:1906.00091, 2019), for rating prediction (``task = "rating"``).

Architecture (paper Sec. 2-3, Fig. 1; the reference code ``facebookresearch/dlrm``, ``arch_interaction_op:
dot``):

* sparse features -> embedding tables of dimension d (``factors``): e_u = E_U[u], e_i = E_I[i] (user id
  and item id);
* dense features -> bottom MLP -> x ∈ R^d (ReLU after every layer, the last one of width d, as the
  reference code);
* item side information (``modalities``: feature sets of ``data_config.side_information``, e.g. visual /
  textual): each modality m has its own MLP tower t_m = T_m(f_i^m) ∈ R^d (ReLU between layers, linear
  output), an extra interaction vector (this model's extension: the paper's sparse/dense inputs are
  categorical ids and numeric counters);
* interaction: the F = 3 + |modalities| vectors V = [x, e_u, e_i, t_1, ...] ∈ R^{F x d}, their pairwise
  dot products z = (v_a · v_b)_{a < b} (the F(F-1)/2 entries of the strict upper triangle of V Vᵀ; the
  reference code takes the strict lower triangle, the same values in another order), concatenated
  with the bottom-MLP output: h = [x, z];
* top MLP: r̂_ui = W_L ReLU(... ReLU(W_1 h + b_1) ...) + b_L (linear output: a rating, where the paper's
  click-through model has a sigmoid); dropout (``dropout``) after every hidden top layer.

Objective: mean squared error over the batch + l_w · mean_batch(‖e_u‖² + ‖e_i‖²) (L2 on the embedding rows
of the batch), Adam with ``lr``.  Predictions are clipped to the training rating range at evaluation.

Defaults (factors 32, bottom [32], top [64, 32], towers [128], lr 3e-4, l_w 0.03, batch 256, 20 epochs) are
ours, picked on ML-100K u1's validation carve-out (docs/rating.md); the paper's Criteo settings do not
apply to a 943 x 1682 rating matrix.  The model overfits within a few epochs: select the epoch on
validation RMSE (``meta.validation_metric: RMSE``).

Dense features.  The ML-100K rating experiments have no numeric user/item counters; the dense input is
then the constant 1 (``x`` becomes one learned vector, so x · e_u and x · e_i act as user and item
bias terms and e_u · e_i as the matrix-factorisation term).  Initialisation as the reference code:
embedding rows ~ U(-sqrt(1/n), sqrt(1/n)) (n rows of the table), MLP weights ~ N(0, 2/(fan_in + fan_out)),
biases ~ N(0, 1/fan_out); except the top MLP's output bias, set to the mean training rating μ (the model
starts from GlobalMean's prediction instead of 0).  Item features are fixed inputs, standardised per
dimension on the training items' statistics (mean 0, std 1) before the towers.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import RatingBatch, RatingRecommender, gather_rows


def pairwise_interaction(vectors: Tensor) -> Tensor:
    """(B, F, d) -> (B, F(F-1)/2): the dot products v_a · v_b for a < b, in ``torch.triu_indices`` order
    ((0,1), (0,2), ..., (1,2), ...)."""
    n = vectors.shape[1]
    gram = torch.bmm(vectors, vectors.transpose(1, 2))
    a, b = torch.triu_indices(n, n, offset=1, device=vectors.device)
    return gram[:, a, b]


def mlp(sizes: Sequence[int], final_activation: bool, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers sizes[0] -> ... -> sizes[-1], ReLU between them (and after the last when
    ``final_activation``), dropout after every hidden activation; the reference code's initialisation."""
    layers: List[nn.Module] = []
    for k in range(len(sizes) - 1):
        lin = nn.Linear(sizes[k], sizes[k + 1])
        fan_in, fan_out = sizes[k], sizes[k + 1]
        nn.init.normal_(lin.weight, std=float(np.sqrt(2.0 / (fan_in + fan_out))))
        nn.init.normal_(lin.bias, std=float(np.sqrt(1.0 / fan_out)))
        layers.append(lin)
        last = k == len(sizes) - 2
        if not last or final_activation:
            layers.append(nn.ReLU())
            if dropout > 0 and not last:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DLRM(RatingRecommender):
    """DLRM for rating prediction; see the module docstring for the equations and the defaults' sources."""

    name = "DLRM"
    params = (
        Param("epochs", int, 20, "training epochs"),
        Param("batch_size", int, 256, "ratings per optimisation step"),
        Param("factors", int, 32, "embedding dimension d (sparse tables, bottom-MLP output, towers)"),
        Param("bottom_mlp", "list[int]", [32], "hidden widths of the bottom MLP (its last layer, of width "
              "factors, is added)"),
        Param("top_mlp", "list[int]", [64, 32], "hidden widths of the top MLP (its output layer, to 1, is added)"),
        Param("tower_mlp", "list[int]", [128], "hidden widths of each modality tower (output: factors)"),
        Param("modalities", "list[str]", [], "item feature sets of side_information, each through its own "
              "tower as an extra interaction vector; [] = ids only"),
        Param("lr", float, 3e-4, "Adam learning rate"),
        Param("l_w", float, 0.03, "L2 weight of the batch's embedding rows"),
        Param("dropout", float, 0.0, "dropout after every hidden layer of the top MLP"),
        Param("clip", bool, True, "clip evaluated predictions to the training rating range"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        d = int(self.factors)
        self.modalities = list(self.hp.get("modalities") or [])
        missing = [m for m in self.modalities if m not in dataset.features]
        if missing:
            raise ConfigError(f"model {self.name}: modalities {missing} are not in the dataset; side_information "
                              f"provides: {', '.join(dataset.features) or 'nothing'}")
        data = dataset.train.data
        self.rating_range = (float(data.min()), float(data.max())) if dataset.train.nnz else (0.0, 0.0)
        self.user_emb = nn.Embedding(self.n_users, d)
        self.item_emb = nn.Embedding(self.n_items, d)
        for table, n in ((self.user_emb, self.n_users), (self.item_emb, self.n_items)):
            bound = float(np.sqrt(1.0 / max(n, 1)))
            nn.init.uniform_(table.weight, -bound, bound)
        self.n_dense = 1  # the constant dense input (no numeric features in the rating data)
        self.bottom = mlp([self.n_dense, *self.bottom_mlp, d], final_activation=True)
        self.towers = nn.ModuleDict()
        for m in self.modalities:
            x = dataset.features[m].astype(np.float64)
            used = np.diff(dataset.train.tocsc().indptr) > 0
            ref = x[used] if used.any() else x
            mean, std = ref.mean(0), ref.std(0)
            std[std == 0] = 1.0
            self.register_buffer(f"_feat_{m}", torch.from_numpy(((x - mean) / std).astype(np.float32)),
                                 persistent=False)
            self.towers[m] = mlp([x.shape[1], *self.tower_mlp, d], final_activation=False)
        n_vectors = 3 + len(self.modalities)
        self.top = mlp([d + n_vectors * (n_vectors - 1) // 2, *self.top_mlp, 1], final_activation=False,
                       dropout=float(self.dropout))
        with torch.no_grad():
            self.top[-1].bias.fill_(self.global_mean)
        self.to(self.device)

    def _forward(self, users: Tensor, items: Tensor):
        dense = torch.ones(len(users), self.n_dense, device=users.device)
        x = self.bottom(dense)
        eu, ei = self.user_emb(users), self.item_emb(items)
        vectors = [x, eu, ei] + [self.towers[m](gather_rows(getattr(self, f"_feat_{m}"), items))
                                 for m in self.modalities]
        z = pairwise_interaction(torch.stack(vectors, dim=1))
        return self.top(torch.cat([x, z], dim=1)).squeeze(-1), eu, ei

    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        pred, _, _ = self._forward(users, items)
        if self.hp.get("clip", True) and not self.training:
            pred = pred.clamp(*self.rating_range)
        return pred

    def loss(self, batch: RatingBatch) -> Tensor:
        pred, eu, ei = self._forward(batch.users, batch.items)
        mse = (pred - batch.ratings).pow(2).mean()
        return mse + self.l_w * (eu.pow(2).sum(-1) + ei.pow(2).sum(-1)).mean()
