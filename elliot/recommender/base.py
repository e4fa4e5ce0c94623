"""The small surface every model implements; the trainer and evaluator know nothing else.

A model is a ``torch.nn.Module`` built from the dataset and its typed hyperparameters.  Trainable
models implement :meth:`Recommender.loss` for a batch of BPR triples; every model implements
:meth:`Recommender.score` (full-catalogue scores for a batch of users).  Graph models that propagate
over the whole graph can cache final embeddings in :meth:`prepare_scoring` (called once before each
evaluation pass, under ``torch.no_grad``).

Tasks.  A model declares its task (``Recommender.task``): ``"ranking"`` (the default: top-K lists from
``score``) or ``"rating"`` (rating prediction, :class:`RatingRecommender`).  The two differ only in

* the batch: the sampler the model builds (``make_sampler``, chosen by the ``sampler`` name) says which
  batch its tuples form through ``batch_kind`` (``BATCH_TYPES``): BPR triples -> :class:`TripletBatch`,
  (users, items, ratings) of the training split -> :class:`RatingBatch`; the trainer builds the batch with
  :func:`batch_type` and knows nothing else about the task;
* the loss (the model's own ``loss(batch)``);
* the evaluation: for ``task == "rating"`` the evaluator calls :meth:`Recommender.predict` on every
  (user, item) pair of the split and reports MAE / MSE / RMSE over all pairs
  (:mod:`elliot.evaluation.metrics.rating`) instead of ranking ``score``.

The trainer loop, the search, the trials store and the writers are the same for both tasks.
"""
from __future__ import annotations

from typing import ClassVar, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset

#: Parameters every trainable model accepts (Elliot's names).
TRAINING_PARAMS: Tuple[Param, ...] = (
    Param("epochs", int, 10, "training epochs"),
    Param("batch_size", int, 1024, "BPR triples per optimisation step"),
    Param("seed", int, 42, "seed of weights, sampler and everything random in the trial"),
    Param("lr_sched", "list[float]", [], "(factor, step): lr x factor^(epoch / step) each epoch, MMRec's "
          "learning_rate_scheduler as Elliot's forks write it; empty: constant", lengths=(0, 2)),
)


class TripletBatch(dict):
    """A batch of BPR triples as int64 tensors: ``users``, ``pos_items``, ``neg_items``."""

    @property
    def users(self) -> Tensor:
        return self["users"]

    @property
    def pos_items(self) -> Tensor:
        return self["pos_items"]

    @property
    def neg_items(self) -> Tensor:
        return self["neg_items"]

    @property
    def epoch_users(self) -> Optional[Tensor]:
        """The batch's chunk of all users (``UserChunkSampler``; possibly empty), None from other samplers."""
        return self.get("epoch_users")


class RatingBatch(dict):
    """A batch of training ratings: ``users``, ``items`` (int64) and ``ratings`` (float32) tensors, aligned."""

    @property
    def users(self) -> Tensor:
        return self["users"]

    @property
    def items(self) -> Tensor:
        return self["items"]

    @property
    def ratings(self) -> Tensor:
        return self["ratings"]


#: batch kind a sampler declares (``sampler.batch_kind``) -> (batch class, field names of its yielded tuples)
BATCH_TYPES: Dict[str, Tuple[type, Tuple[str, ...]]] = {
    "triplets": (TripletBatch, ("users", "pos_items", "neg_items")),
    # BPR triples + ``epoch_users``, a chunk of all users (each once per epoch; ``UserChunkSampler``)
    "triplets_with_users": (TripletBatch, ("users", "pos_items", "neg_items", "epoch_users")),
    "ratings": (RatingBatch, ("users", "items", "ratings")),
}


def batch_type(sampler) -> Tuple[type, Tuple[str, ...]]:
    """(batch class, field names) for the tuples ``sampler.epoch`` yields: its ``batch_kind``, BPR triples
    when it declares none (a wrapper of a sampler, a model's own sampler of triples)."""
    kind = getattr(sampler, "batch_kind", "triplets")
    if kind not in BATCH_TYPES:
        raise ValueError(f"{type(sampler).__name__}.batch_kind {kind!r} is not one of {sorted(BATCH_TYPES)}")
    return BATCH_TYPES[kind]


class Recommender(nn.Module):
    """Base class of every model.

    Subclasses set ``name`` and ``params`` (their own declared hyperparameters; the training ones
    above are added automatically for trainable models) and implement ``score`` (and ``loss`` when
    ``trainable``).  Hyperparameters arrive typed in ``self.hp`` and as attributes.
    """

    name: ClassVar[str] = ""
    params: ClassVar[Tuple[Param, ...]] = ()
    trainable: ClassVar[bool] = True
    #: keys Elliot's version of the model reads that have no equivalent here -> the reason, said when used
    refused_params: ClassVar[Dict[str, str]] = {}
    #: name of the sampler ``make_sampler`` builds: "bpr" (BPR triples) or "rating" (training ratings);
    #: models needing another one override ``make_sampler``
    sampler: ClassVar[str] = "bpr"
    #: "ranking" (evaluated by top-K lists from ``score``) or "rating" (by ``predict`` on the split's pairs)
    task: ClassVar[str] = "ranking"

    def __init__(self, dataset: Dataset, hp: Dict[str, object], device: torch.device):
        super().__init__()
        self.hp = dict(hp)
        self.device = torch.device(device)
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items
        for key, value in self.hp.items():
            if not hasattr(self, key):
                setattr(self, key, value)
        problem = type(self).check_params(self.hp)
        if problem:
            from elliot.errors import ConfigError

            raise ConfigError(f"{self.name}: {problem}")

    @classmethod
    def check_params(cls, params: Dict[str, object]) -> Optional[str]:
        """Why a typed configuration cannot be built (None when it can): checked for every grid
        configuration when the config is read, and again when the model is built."""
        return None

    @classmethod
    def declared_params(cls) -> Tuple[Param, ...]:
        own = tuple(cls.params)
        if not cls.trainable:
            return own
        names = {p.name for p in own}
        return tuple(p for p in TRAINING_PARAMS if p.name not in names) + own

    # ---- training surface -------------------------------------------------------------------
    def loss(self, batch: TripletBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam over all parameters with ``lr`` (models with other needs override)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.hp.get("lr", 1e-3)), fused=True)

    def make_sampler(self, dataset: Dataset, seed: int):
        """The trainer's source of batches: an object whose ``epoch(batch_size)`` yields tuples of arrays
        and whose ``batch_kind`` names the batch they form (:data:`BATCH_TYPES`).  ``sampler: "bpr"``
        (default): uniform BPR triples (users, pos_items, neg_items); ``sampler: "rating"``: the training
        split's (users, items, ratings) in a seeded order.  With ``data_config.item_catalogue: all`` the BPR
        negatives come from the items with a training interaction only (MMRec's ``TrainDataLoader``): a cold
        item is never sampled."""
        from elliot.dataset.samplers import BPRSampler, RatingSampler

        if self.sampler == "rating":
            return RatingSampler(dataset.train, seed)
        pool = dataset.warm_items() if getattr(dataset, "item_catalogue", "train") == "all" else None
        return BPRSampler(dataset.train, seed, negative_items=pool)

    def fit(self, dataset: Dataset) -> None:
        """One-shot fitting for non-trainable models (e.g. popularity counts)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based)."""

    def lr_multiplier(self, epoch: int) -> float:
        """Factor of the initial learning rate at ``epoch`` (0-based), applied by the trainer's one schedule:
        ``lr_sched: (factor, step)`` gives factor^(epoch / step) (MMRec's LambdaLR); models with a decay of
        their own multiply it in."""
        sched = self.hp.get("lr_sched") or ()
        if not sched:
            return 1.0
        factor, step = float(sched[0]), float(sched[1])
        return factor ** (epoch / step)

    # ---- scoring surface --------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        """Compute whatever ``score`` reuses across user batches (called under ``no_grad``)."""

    def end_scoring(self) -> None:
        """Drop caches built by :meth:`prepare_scoring`."""

    def score(self, users: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Scores of all items for ``users``: float tensor (len(users), n_items) on ``self.device``.
        The evaluator masks known items in place unless the result is a view or shares storage with a
        parameter or buffer, so return a fresh tensor (a product, a gather) or one of those - never a
        tensor kept in a plain attribute."""
        raise NotImplementedError

    def predict(self, users: Tensor, items: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Predicted ratings of the aligned pairs (users[n], items[n]): float tensor (N,) on ``self.device``.
        The evaluation surface of rating models (``task == "rating"``), called in batches of pairs."""
        raise NotImplementedError(f"{type(self).__name__} does not predict ratings (task {self.task!r})")


class RatingRecommender(Recommender):
    """Base class of rating-prediction models (``task = "rating"``): trained on :class:`RatingBatch` es of
    the training split's ratings (``sampler = "rating"``), evaluated through :meth:`predict` by the rating
    metrics.  ``score(users)`` is ``predict`` for every item (full-catalogue predicted ratings, for a caller
that wants lists; the evaluator never ranks a rating model)."""

    task = "rating"
    sampler = "rating"

    def __init__(self, dataset: Dataset, hp: Dict[str, object], device: torch.device):
        super().__init__(dataset, hp, device)
        train = dataset.train
        #: mean training rating mu (0 for an empty training split)
        self.global_mean = float(train.data.mean()) if train.nnz else 0.0

    def loss(self, batch: "RatingBatch") -> Tensor:
        """Default: mean squared error of :meth:`predict` on the batch (models add their regularisers)."""
        return (self.predict(batch.users, batch.items) - batch.ratings).pow(2).mean()

    def score(self, users: Tensor) -> Tensor:
        items = torch.arange(self.n_items, device=users.device)
        pairs_u = users.repeat_interleave(self.n_items)
        return self.predict(pairs_u, items.repeat(len(users))).view(len(users), self.n_items)


class EmbeddingScoring:
    """Mixin for models whose scores are inner products of final embeddings: implement
    :meth:`final_embeddings`; ``score`` reuses them across user batches between
    :meth:`prepare_scoring` and :meth:`end_scoring` (the evaluator's calls) and computes them otherwise.
    Put it before the model's base class (``class M(EmbeddingScoring, Recommender)``)."""

    _cache: Optional[Tuple[Tensor, Tensor]] = None

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """(all users' final embeddings, all items' final embeddings); s(u, i) is their inner product."""
        raise NotImplementedError

    def prepare_scoring(self) -> None:
        self._cache = self.final_embeddings()

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        user_final, item_final = self._cache if self._cache is not None else self.final_embeddings()
        return gather_rows(user_final, users) @ item_final.T


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` (rows; ``index`` of any shape) by ``index_select``.  Its backward is an
    ``index_add`` into zeros: deterministic, and ~3x faster on CPU than the accumulating ``index_put`` of
    advanced indexing, whose result with 2 threads varies from run to run (float sums in another order)."""
    if index.dim() == 1:
        return table.index_select(0, index)
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])


def unique_index(index: Tensor, size: int, return_counts: bool = False):
    """``torch.unique(index, sorted=True, return_inverse=True[, return_counts])`` for ids in [0, size):
    the same tensors, from a presence mask and a prefix sum instead of a sort when ``size`` is small
    next to the batch (2-3x faster for a training batch's users or items on TikTok)."""
    if size > 64 * max(len(index), 1):  # a mask over a huge catalogue would cost more than the sort
        return torch.unique(index, sorted=True, return_inverse=True, return_counts=return_counts)
    present = torch.zeros(size, dtype=torch.bool, device=index.device).index_fill_(0, index, True)
    uniq = present.nonzero().squeeze(1)
    inverse = (torch.cumsum(present, 0, dtype=torch.int64) - 1).index_select(0, index)
    if return_counts:
        return uniq, inverse, torch.bincount(inverse, minlength=len(uniq))
    return uniq, inverse


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Mean BPR loss  -log sigmoid(s_ui - s_uj)  (Rendle et al., UAI 2009), numerically stable."""
    return nn.functional.softplus(neg_scores - pos_scores).mean()


def l2_reg(*tensors: Tensor, batch_size: Optional[int] = None) -> Tensor:
    """Sum of squared entries / 2, divided by the batch size when given (MMRec/LightGCN convention)."""
    total = sum(t.pow(2).sum() for t in tensors) / 2
    return total / batch_size if batch_size else total


def normal_init(*modules: nn.Module, std: float = 0.1) -> None:
    for m in modules:
        for p in m.parameters():
            nn.init.normal_(p, std=std)
