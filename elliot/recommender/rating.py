"""Rating-prediction baselines (``task = "rating"``): GlobalMean, BiasBaseline, BiasedMF.

The rating task behind the one trainer and evaluator (see :mod:`elliot.recommender.base`): these models
are :class:`~elliot.recommender.base.RatingRecommender` s, so the trainer feeds them
:class:`~elliot.recommender.base.RatingBatch` es of the training ratings (``RatingSampler``: every training
rating once per epoch, seeded order) and the evaluator reports MAE / MSE / RMSE of :meth:`predict` over
every pair of the split (pair-averaged).  Select on ``validation_metric: RMSE`` (lower is better).

Objective of the trained models, Surprise's (Hug, JOSS 2020) per-rating SGD objective

    L = Σ_(u,i) in batch  ½ [ (r̂_ui - r_ui)² + reg · (‖params of (u, i)‖²) ]

summed over the batch (not averaged): plain SGD with learning rate ``lr`` then takes the sum of the
per-rating steps of Surprise's loop evaluated at the start of the batch (Surprise updates after every
rating, ``batch_size: 1`` here is exactly its update; larger batches differ by O(lr²) per step).  The
regulariser is applied per rating occurrence, as Surprise does, so frequent users / items are
regularised more.  Adam (``optimizer: adam``) is scale-invariant and reads the same sum.

Predictions are clipped to the training rating range at evaluation (``clip``, Surprise's default
``clip=True`` in ``predict``); training reads the raw prediction.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import RatingBatch, RatingRecommender

#: parameters shared by the trained rating baselines (Surprise's defaults)
_SGD_PARAMS = (
    Param("epochs", int, 20, "training epochs (Surprise: n_epochs 20)"),
    Param("batch_size", int, 128, "ratings per optimisation step (1 = Surprise's per-rating SGD)"),
    Param("lr", float, 0.005, "learning rate (Surprise: lr_all 0.005)"),
    Param("reg", float, 0.02, "L2 weight per rating occurrence (Surprise: reg_all 0.02)", aliases=("l_w",),
          low=0.0),
    Param("optimizer", str, "sgd", "sgd (Surprise's update) or adam", choices=("sgd", "adam")),
    Param("clip", bool, True, "clip evaluated predictions to the training rating range (Surprise's default)"),
)


class _ClippedRating(RatingRecommender):
    """Shared: the rating range of the training split, SGD/Adam, clipping at evaluation."""

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        data = dataset.train.data
        self.rating_range = (float(data.min()), float(data.max())) if dataset.train.nnz else (0.0, 0.0)

    def raw_prediction(self, users: Tensor, items: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        pred = self.raw_prediction(users, items)
        if self.hp.get("clip", True) and not self.training:
            pred = pred.clamp(*self.rating_range)
        return pred

    def make_optimizer(self) -> torch.optim.Optimizer:
        if self.hp.get("optimizer", "sgd") == "adam":
            return torch.optim.Adam(self.parameters(), lr=float(self.lr))
        return torch.optim.SGD(self.parameters(), lr=float(self.lr))


class GlobalMean(RatingRecommender):
    """Predicts the mean training rating μ for every pair: r̂_ui = μ = Σ_(u,i) in train r_ui / |train|.
    The floor every rating model must beat (RMSE = the standard deviation of the test ratings around μ)."""

    name = "GlobalMean"
    trainable = False

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.register_buffer("mu", torch.zeros((), device=self.device))

    def fit(self, dataset: Dataset) -> None:
        self.mu.fill_(float(dataset.train.data.mean()) if dataset.train.nnz else 0.0)

    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        return self.mu.expand(len(users)).clone()


class BiasBaseline(_ClippedRating):
    """Baseline predictor (Koren, "Factor in the neighbors", TKDD 2010, Eq. 1; Surprise's BaselineOnly
    with ``method: sgd``):

        r̂_ui = μ + b_u + b_i

    μ the (fixed) mean training rating, b_u, b_i learned (zero-initialised) by minimising
    Σ ½[(r̂_ui - r_ui)² + reg (b_u² + b_i²)] (module docstring).  Surprise's BaselineOnly defaults to ALS
    with reg_u 15, reg_i 10 (whose penalty is not per occurrence); this one is its SGD variant
    (lr 0.005, reg 0.02, 20 epochs)."""

    name = "BiasBaseline"
    params = _SGD_PARAMS

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.user_bias = nn.Embedding(self.n_users, 1)
        self.item_bias = nn.Embedding(self.n_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.to(self.device)

    def raw_prediction(self, users: Tensor, items: Tensor) -> Tensor:
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)

    def loss(self, batch: RatingBatch) -> Tensor:
        bu, bi = self.user_bias(batch.users).squeeze(-1), self.item_bias(batch.items).squeeze(-1)
        err = self.global_mean + bu + bi - batch.ratings
        return 0.5 * (err.pow(2) + self.reg * (bu.pow(2) + bi.pow(2))).sum()


class BiasedMF(_ClippedRating):
    """Biased matrix factorisation, "SVD" of the Netflix Prize (Funk 2006; Koren, Bell & Volinsky, IEEE
    Computer 2009, Eq. 3-5; Surprise's ``SVD``):

        r̂_ui = μ + b_u + b_i + p_u · q_i

    minimising Σ ½[(r̂_ui - r_ui)² + reg (b_u² + b_i² + ‖p_u‖² + ‖q_i‖²)] (module docstring) by SGD.
    Defaults are Surprise's SVD: factors 100, 20 epochs, lr 0.005, reg 0.02, p and q ~ N(0, 0.1²)
    (``init_std``), zero biases, μ fixed.  (Surprise's loop updates p_u with the old q_i and q_i with the
    old p_u, the gradient of this objective.)"""

    name = "BiasedMF"
    params = _SGD_PARAMS + (
        Param("factors", int, 100, "latent factors (Surprise: n_factors 100)"),
        Param("init_std", float, 0.1, "std of the normal initialisation of p and q (Surprise: init_std_dev)",
              low=0.0),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        self.user_emb = nn.Embedding(self.n_users, self.factors)
        self.item_emb = nn.Embedding(self.n_items, self.factors)
        self.user_bias = nn.Embedding(self.n_users, 1)
        self.item_bias = nn.Embedding(self.n_items, 1)
        nn.init.normal_(self.user_emb.weight, std=float(self.init_std))
        nn.init.normal_(self.item_emb.weight, std=float(self.init_std))
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.to(self.device)

    def _terms(self, users: Tensor, items: Tensor):
        return (self.user_emb(users), self.item_emb(items), self.user_bias(users).squeeze(-1),
                self.item_bias(items).squeeze(-1))

    def raw_prediction(self, users: Tensor, items: Tensor) -> Tensor:
        pu, qi, bu, bi = self._terms(users, items)
        return self.global_mean + bu + bi + (pu * qi).sum(-1)

    def loss(self, batch: RatingBatch) -> Tensor:
        pu, qi, bu, bi = self._terms(batch.users, batch.items)
        err = self.global_mean + bu + bi + (pu * qi).sum(-1) - batch.ratings
        reg = bu.pow(2) + bi.pow(2) + pu.pow(2).sum(-1) + qi.pow(2).sum(-1)
        return 0.5 * (err.pow(2) + self.reg * reg).sum()
