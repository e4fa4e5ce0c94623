"""DLRM: Deep Learning Recommendation Model for Personalization and Recommendation Systems
(Naumov et al., arXiv:1906.00091, 2019), for rating prediction (``task = "rating"``).

Architecture (paper Sec. 2-3, Fig. 1; the reference code ``facebookresearch/dlrm``, ``arch_interaction_op:
dot``), for a pair (u, i):

* sparse features -> embedding tables of dimension d (``factors``): e_u = E_U[u], e_i = E_I[i] (user id
  and item id) and, for every categorical attribute a of the user or the item (``attributes``, loaded by
  ``UserAttributes`` / ``ItemAttributes``: age bucket, gender, occupation, genres, ...),
  e_a = mean_{c ∈ C_a} E_a[c] over the attribute's codes C_a of the entity (an embedding bag, mean mode: one
  code for gender, the set of genres for a movie; the reference code's ``EmbeddingBag(mode="sum")``, whose
  multi-hot inputs are counters, in mean mode so a movie's genre count does not scale its vector);
* dense features -> bottom MLP -> x = B(s) ∈ R^d, s the dense attributes of the user and the item
  (age, year, ...) concatenated and standardised per dimension on the training entities' statistics (ReLU
  after every layer, the last one of width d, as the reference code).  Without dense attributes s is the
  constant 1: x is one learned vector, and x · e_u, x · e_i act as user and item bias terms;
* item side information (``modalities``: feature sets of ``data_config.side_information``, e.g. visual /
  textual): each modality m has its own MLP tower t_m = T_m(f_i^m) ∈ R^d (ReLU between layers, linear
  output, ``dropout`` after hidden layers) on features standardised per dimension on the training items;
  :class:`DLRM_CLIP` replaces the towers by one linear projection of shared-space embeddings (below);
* interaction: the F = 3 + |sparse attributes| + |modality vectors| vectors V = [x, e_u, e_i, e_a..., t_m...]
  ∈ R^{F x d}, their pairwise dot products z = (v_a · v_b)_{a < b} (the F(F-1)/2 entries of the strict
  upper triangle of V Vᵀ; the reference code takes the strict lower triangle, the same values in another
  order), concatenated with the bottom-MLP output: h = [x, z];
* top MLP: r̂_ui = W_L ReLU(... ReLU(W_1 h + b_1) ...) + b_L (linear output: a rating, where the paper's
  click-through model has a sigmoid); ``dropout`` after every hidden top layer.

* user history (``history``, off by default): SVD++'s implicit feedback (Koren, KDD 2008, Eq. 15:
  p_u + |N(u)|^{-1/2} Σ_{j∈N(u)} y_j) as one more sparse feature, an embedding bag over the items N(u) the
  user rated in training (the rating value ignored), normalised by |N(u)|^{-1/2}:
  h_u = |N(u)|^{-1/2} Σ_{j∈N(u)} Y[j], Y a second item table (n_items x d).  It enters V as its own vector,
  so the interaction holds e_i · h_u, SVD++'s q_iᵀ |N(u)|^{-1/2} Σ y_j, next to e_i · e_u (its q_iᵀ p_u);
  computed for all users as one sparse product N Y per step (N_uj = |N(u)|^{-1/2} on the training pairs;
  ``history.py``), then gathered for the batch;
* content profile (``history_content``, with ``modalities``): the same normalised history average of each
  modality's tower outputs, c_u^m = |N(u)|^{-1/2} Σ_{j∈N(u)} t_m(f_j^m), one more vector per modality: a
  user's history in the item-content space next to the item's own t_m (the towers then run on every item
  each step, N T_m).  ``tower_dropout`` drops entries of every t_m (and so of c_u^m), ``feature_pca``
  replaces each standardised feature set by its first principal components on the training items
  (``history.pca_reduce``), ``tower_weight_decay`` adds L2 on the tower weights.

Objective: mean squared error over the batch + l_w · mean_batch(Σ_sparse ‖e‖²) (L2 on the batch's sparse
vectors: e_u, e_i and every e_a; with ``history`` also |N(u)|^{-1} Σ_{j∈N(u)} ‖y_j‖², the mean squared norm of
the user's history rows: SVD++'s λ Σ_j ‖y_j‖² per rating, scaled to one vector's) + l_t · mean_batch(Σ_m ‖t_m‖²
(+ ‖c_u^m‖²): ``l_t``, 0 by default, the same L2 on the modality vectors) + ``weight_decay`` · ‖θ‖² on
the MLP / tower / projection weights (+ ``tower_weight_decay`` on the towers; Adam's coupled L2), Adam with
``lr``.  Predictions are clipped to the training rating range at evaluation.

Defaults (factors 32, bottom [32], top [64, 32], towers [128], lr 3e-4, l_w 0.03, batch 256, 20 epochs) are
ours, picked on ML-100K u1's validation carve-out (docs/rating.md); the paper's Criteo settings do not
apply to a 943 x 1682 rating matrix; with ``history`` u1's validation split prefers factors 64 and l_w 0.2
(docs/rating.md, ``DLRM+hist``).  The model overfits within a few epochs: select the epoch on
validation RMSE (``meta.validation_metric: RMSE``, ``early_stopping``).  Initialisation as the reference
code: embedding rows ~ U(-sqrt(1/n), sqrt(1/n)) (n rows of the table), MLP weights ~ N(0, 2/(fan_in +
fan_out)), biases ~ N(0, 1/fan_out); except the top MLP's output bias, set to the mean training rating μ
(the model starts from GlobalMean's prediction instead of 0).

:class:`DLRM_CLIP` (``external.DLRM_CLIP``): item embeddings that already live in one shared image-text
space (CLIP: Radford et al., ICML 2021) enter the interaction without per-modality towers: each is
L2-normalised (CLIP compares them by cosine) and mapped by ONE linear projection P ∈ R^{d x D} shared by the
modalities, p_m = P f̂_i^m (``clip_fusion: separate``: one interaction vector per modality) or
p = P mean_m f̂_i^m (``clip_fusion: mean``: one vector); no per-dimension standardisation, which would
break the shared geometry.  The modalities must therefore have one dimension D.  The offline encoders this
project ships (EfficientNet-lite0 for posters, all-MiniLM-L6-v2 for plots, docs/features.md) are NOT a
shared space; CLIP features come from elliot.features' hub encoders where a network exists.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import RatingBatch, RatingRecommender, gather_rows

from .history import UserHistory, pca_reduce


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


def _standardise(x: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(x - mean) / std per column, statistics over the rows ``used`` (all rows when none is)."""
    ref = x[used] if used.any() else x
    mean, std = ref.mean(0), ref.std(0)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32)


def _uniform_(weight: Tensor, rows: int) -> None:
    bound = float(np.sqrt(1.0 / max(rows, 1)))
    nn.init.uniform_(weight, -bound, bound)


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
        Param("attributes", "list[str]", ["all"], "user / item attributes of UserAttributes / ItemAttributes "
              "entering the model (categorical: an embedding each; dense: the bottom MLP); [all] = every one "
              "loaded, [] = none"),
        Param("lr", float, 3e-4, "Adam learning rate"),
        Param("l_w", float, 0.03, "L2 weight of the batch's sparse embedding vectors"),
        Param("weight_decay", float, 0.0, "Adam's L2 weight decay on the MLP, tower and projection weights"),
        Param("dropout", float, 0.0, "dropout after every hidden layer of the top MLP and of the towers"),
        Param("clip", bool, True, "clip evaluated predictions to the training rating range"),
        Param("history", bool, False, "add SVD++'s implicit-feedback user vector h_u = |N(u)|^-1/2 sum_{j in N(u)} "
              "y_j over the user's training items (its own item table Y) as an interaction vector"),
        Param("history_content", bool, False, "with modalities: add, per modality, the same normalised history "
              "average of the user's items' tower outputs as an interaction vector"),
        Param("tower_dropout", float, 0.0, "dropout on the modality vectors (tower / projection outputs)",
              low=0.0, high=1.0, high_inclusive=False),
        Param("l_t", float, 0.0, "L2 weight of the batch's modality vectors t_m (and content profiles c_u^m), "
              "as l_w for the sparse vectors", low=0.0),
        Param("tower_weight_decay", float, 0.0, "Adam L2 on the tower / projection weights, added to "
              "weight_decay", low=0.0),
        Param("feature_pca", int, 0, "keep the first k principal components (fit on the training items) of "
              "each standardised modality feature set; 0 = all features", low=0),
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
        _uniform_(self.user_emb.weight, self.n_users)
        _uniform_(self.item_emb.weight, self.n_items)
        used = {"user": np.diff(dataset.train.indptr) > 0, "item": np.diff(dataset.train.tocsc().indptr) > 0}
        #: (side, name) of the categorical attributes, in interaction order (users' first)
        self.sparse_attrs: List[Tuple[str, str]] = []
        self.bags = nn.ModuleDict()
        dense: Dict[str, List[np.ndarray]] = {"user": [], "item": []}
        for side, name, attr in self._attributes(dataset):
            if attr.kind == "categorical":
                codes = np.where(attr.values < 0, attr.cardinality, attr.values)  # padding -> the last row
                self.register_buffer(f"_codes_{name}", torch.from_numpy(codes.astype(np.int64)), persistent=False)
                self.bags[name] = nn.EmbeddingBag(attr.cardinality + 1, d, mode="mean", padding_idx=attr.cardinality)
                _uniform_(self.bags[name].weight, attr.cardinality)
                with torch.no_grad():
                    self.bags[name].weight[attr.cardinality].zero_()
                self.sparse_attrs.append((side, name))
            else:
                dense[side].append(attr.values.astype(np.float64))
        self.n_dense = {side: sum(x.shape[1] for x in xs) for side, xs in dense.items()}
        for side, xs in dense.items():
            if xs:
                self.register_buffer(f"_dense_{side}", torch.from_numpy(_standardise(np.hstack(xs), used[side])),
                                     persistent=False)
        n_in = self.n_dense["user"] + self.n_dense["item"]
        self.bottom = mlp([max(n_in, 1), *self.bottom_mlp, d], final_activation=True)
        n_vectors = 3 + len(self.sparse_attrs) + self._init_modalities(dataset, used["item"], d)
        self.history_op = UserHistory(dataset.train, self.device) if self.history or self.history_content else None
        if self.history:
            self.history_emb = nn.Embedding(self.n_items, d)
            _uniform_(self.history_emb.weight, self.n_items)
            n_vectors += 1
        if self.history_content:
            if not self.modalities:
                raise ConfigError(f"model {self.name}: history_content needs modalities (the item feature sets "
                                  "whose tower outputs the user's history averages)")
            n_vectors += self._n_modality_vectors
        self.tower_drop = nn.Dropout(float(self.tower_dropout)) if self.tower_dropout > 0 else nn.Identity()
        self.top = mlp([d + n_vectors * (n_vectors - 1) // 2, *self.top_mlp, 1], final_activation=False,
                       dropout=float(self.dropout))
        with torch.no_grad():
            self.top[-1].bias.fill_(self.global_mean)
        self.to(self.device)

    def _attributes(self, dataset: Dataset):
        """(side, name, Attribute) of the attributes the ``attributes`` hyperparameter selects."""
        loaded = [("user", n, a) for n, a in dataset.user_attributes.items()] + \
                 [("item", n, a) for n, a in dataset.item_attributes.items()]
        wanted = list(self.hp.get("attributes", ["all"]) or [])
        if "all" in wanted:
            return loaded
        names = [n for _, n, _ in loaded]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(f"model {self.name}: attributes {unknown} are not in the dataset; UserAttributes / "
                              f"ItemAttributes provide: {', '.join(names) or 'nothing'} (or [all], [])")
        return [t for t in loaded if t[1] in wanted]

    def _init_modalities(self, dataset: Dataset, used_items: np.ndarray, d: int) -> int:
        """The modality towers; returns the number of interaction vectors they add."""
        self.towers = nn.ModuleDict()
        for m in self.modalities:
            x = pca_reduce(_standardise(dataset.features[m].astype(np.float64), used_items), used_items,
                           int(self.feature_pca))
            self.register_buffer(f"_feat_{m}", torch.from_numpy(x), persistent=False)
            self.towers[m] = mlp([x.shape[1], *self.tower_mlp, d], final_activation=False,
                                 dropout=float(self.dropout))
        self._n_modality_vectors = len(self.modalities)
        return self._n_modality_vectors

    def _content_modules(self) -> List[nn.Module]:
        """The modules mapping item features to modality vectors (``tower_weight_decay`` applies to them)."""
        return [self.towers]

    def _modality_vectors(self, items: Tensor) -> List[Tensor]:
        return [self.towers[m](gather_rows(getattr(self, f"_feat_{m}"), items)) for m in self.modalities]

    def _dense_input(self, users: Tensor, items: Tensor) -> Tensor:
        parts = [gather_rows(getattr(self, f"_dense_{side}"), index)
                 for side, index in (("user", users), ("item", items)) if self.n_dense[side]]
        return torch.cat(parts, dim=1) if parts else torch.ones(len(users), 1, device=users.device)

    def _forward(self, users: Tensor, items: Tensor) -> Tuple[Tensor, Tuple[List[Tensor], List[Tensor]]]:
        """(raw predictions, (the batch's squared norms under l_w: ‖e_u‖², ‖e_i‖², ‖e_a‖²..., the history's;
        those under l_t: ‖t_m‖², ‖c_u^m‖²))."""
        x = self.bottom(self._dense_input(users, items))
        sparse = [self.user_emb(users), self.item_emb(items)]
        for side, name in self.sparse_attrs:
            codes = gather_rows(getattr(self, f"_codes_{name}"), users if side == "user" else items)
            sparse.append(self.bags[name](codes))
        penalties = [e.pow(2).sum(-1) for e in sparse]
        extra: List[Tensor] = []
        if self.history:
            extra.append(gather_rows(self.history_op.profile(self.history_emb.weight), users))
            penalties.append(gather_rows(self.history_op.penalty(self.history_emb.weight), users))
        if self.history_content:  # towers on every item: the batch's t_m and every user's profile from one pass
            all_items = torch.arange(self.n_items, device=users.device)
            every = [self.tower_drop(t) for t in self._modality_vectors(all_items)]
            modal = [gather_rows(t, items) for t in every]
            extra += [gather_rows(self.history_op.profile(t), users) for t in every]
        else:
            modal = [self.tower_drop(t) for t in self._modality_vectors(items)]
        content = modal + extra[int(bool(self.history)):]  # t_m and c_u^m, for l_t
        z = pairwise_interaction(torch.stack([x, *sparse, *modal, *extra], dim=1))
        content_sq = [t.pow(2).sum(-1) for t in content] if self.l_t > 0 else []
        return self.top(torch.cat([x, z], dim=1)).squeeze(-1), (penalties, content_sq)

    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        pred, _ = self._forward(users, items)
        if self.hp.get("clip", True) and not self.training:
            pred = pred.clamp(*self.rating_range)
        return pred

    def loss(self, batch: RatingBatch) -> Tensor:
        pred, (sparse, content) = self._forward(batch.users, batch.items)
        loss = (pred - batch.ratings).pow(2).mean() + self.l_w * torch.stack(sparse).sum(0).mean()
        return loss + self.l_t * torch.stack(content).sum(0).mean() if self.l_t > 0 and content else loss

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``lr``; ``weight_decay`` on every parameter but the embedding tables (those have l_w),
        plus ``tower_weight_decay`` on the towers / projection."""
        tables = {id(p) for m in self.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
                  for p in m.parameters()}
        content = {id(p) for m in self._content_modules() for p in m.parameters()}
        wd = float(self.weight_decay)
        groups = [{"params": [p for p in self.parameters() if id(p) in tables], "weight_decay": 0.0},
                  {"params": [p for p in self.parameters() if id(p) not in tables | content], "weight_decay": wd},
                  {"params": [p for p in self.parameters() if id(p) in content],
                   "weight_decay": wd + float(self.tower_weight_decay)}]
        return torch.optim.Adam([g for g in groups if g["params"]], lr=float(self.lr), fused=True)


class DLRM_CLIP(DLRM):
    """DLRM whose item image / text embeddings share one space (CLIP): L2-normalised, one shared linear
    projection to d, no towers (module docstring)."""

    name = "DLRM_CLIP"
    params = tuple(p for p in DLRM.params if p.name not in ("modalities", "tower_mlp", "feature_pca")) + (
        Param("modalities", "list[str]", ["visual", "textual"], "item embeddings of side_information in one "
              "shared space (e.g. CLIP image and text), of one dimension"),
        Param("clip_fusion", str, "separate", "separate: one interaction vector per modality; mean: one vector, "
              "the projected mean of the normalised embeddings", choices=("separate", "mean")),
    )

    def _init_modalities(self, dataset: Dataset, used_items: np.ndarray, d: int) -> int:
        if not self.modalities:
            raise ConfigError(f"model {self.name}: modalities is empty; it needs the shared-space item embeddings "
                              "(e.g. [visual, textual] from a CLIP encoder); external.DLRM runs ids only")
        dims = {m: dataset.features[m].shape[1] for m in self.modalities}
        if len(set(dims.values())) > 1:
            raise ConfigError(f"model {self.name}: modalities {', '.join(f'{m} ({k}-d)' for m, k in dims.items())} "
                              "are not one shared space (equal dimensions, e.g. CLIP's image and text embeddings); "
                              "external.DLRM gives each modality its own tower")
        for m in self.modalities:
            x = dataset.features[m].astype(np.float64)
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            self.register_buffer(f"_feat_{m}", torch.from_numpy((x / np.where(norm > 0, norm, 1.0))
                                                                .astype(np.float32)), persistent=False)
        self.projection = nn.Linear(next(iter(dims.values())), d)
        self._n_modality_vectors = len(self.modalities) if self.clip_fusion == "separate" else 1
        return self._n_modality_vectors

    def _content_modules(self) -> List[nn.Module]:
        return [self.projection]

    def _modality_vectors(self, items: Tensor) -> List[Tensor]:
        feats = [gather_rows(getattr(self, f"_feat_{m}"), items) for m in self.modalities]
        if self.clip_fusion == "mean":
            return [self.projection(torch.stack(feats).mean(0))]
        return [self.projection(f) for f in feats]
