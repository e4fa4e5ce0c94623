"""The hook interface every multimodal model implements; attacks and defenses use nothing else.

A multimodal model reads item side information ONLY through :meth:`MultimodalRecommender.feature`,
every time it computes something (never a copy taken at construction), so that
:meth:`features_replaced` can swap a modality's raw feature tensor for one forward pass: an attack
scores with ``x + δ`` without copying the model, and gradients flow to ``δ`` only.

What a model implements:

* ``loss(batch)`` and ``score(users)`` (the :class:`Recommender` surface);
* ``score_pairs(users, items)``: fused scores s(u, i) for aligned pairs, computed from the current
  features (never from a scoring cache), differentiable w.r.t. the feature tensors;
* ``modality_embeddings(users, items)``: ``{branch: (e_u, e_i)}`` with one entry per modality that
  has its own user/item representation, plus ``"id"`` for the collaborative term where the model has
  one.  Per-branch scores are ``<e_u, e_i>`` (:meth:`modality_scores`).  Models whose architecture
  fuses modalities before any per-modality score return ``{}`` and say so in their docstring.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, List, Mapping, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.recommender.base import Recommender, TripletBatch, bpr_loss, gather_rows, l2_reg, unique_index

#: Elliot's loader names -> our default modality names.
LOADER_MODALITY = {"VisualAttribute": "visual", "TextualAttribute": "textual", "AudioAttribute": "audio"}



def loader_modality(name: str) -> str:
    """Modality of an Elliot loader name in any of Elliot's spellings (``VisualAttributes``, ...)."""
    from elliot.config.elliot_compat import LOADER_SPELLINGS

    return LOADER_MODALITY.get(LOADER_SPELLINGS.get(str(name).lower(), str(name)), str(name))


MODALITY_PARAMS: Tuple[Param, ...] = (
    Param("modalities", "list[str]", [], "modalities used (default: every side_information modality)"),
    Param("loaders", "list[str]", [], "Elliot's loader names (accepted for compatibility; modalities decide)",
          aliases=("loader",)),
)


#: Declared by the models whose forward reads :meth:`MultimodalRecommender.feature` at every step
#: (``fine_tunable_features = True``), so that a trained feature table is the one they use.
FINE_TUNE_PARAM = Param("fine_tune_features", bool, False,
                        "train the raw item feature tables with the model, as MMRec's and the authors' "
                        "code do (Embedding.from_pretrained(freeze=False)); attacks then perturb the "
                        "trained tables", aliases=("train_features",))


class MultimodalRecommender(Recommender):
    """A recommender that consumes item features; see the module docstring for the hooks."""

    #: True where every use of the features goes through :meth:`feature` inside the forward (no copy or
    #: projection cached across steps), so ``fine_tune_features`` is honoured; see :data:`FINE_TUNE_PARAM`.
    fine_tunable_features = False

    @classmethod
    def declared_params(cls):
        own = super().declared_params()
        names = {p.name for p in own}
        shared = MODALITY_PARAMS + ((FINE_TUNE_PARAM,) if cls.fine_tunable_features else ())
        return tuple(p for p in shared if p.name not in names) + own

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        available = list(dataset.features)
        requested = list(self.hp.get("modalities") or [])
        if not requested:
            loaders = list(self.hp.get("loaders") or [])
            requested = [loader_modality(name) for name in loaders] or available
        if not available:
            raise ConfigError(f"model {self.name} needs item features but experiment.data_config has no "
                              "side_information entries")
        missing = [m for m in requested if m not in available]
        if missing:
            raise ConfigError(f"model {self.name}: modalities {missing} are not in the dataset; "
                              f"side_information provides: {', '.join(available)}")
        self.modalities: List[str] = requested
        self.hp["modalities"] = requested
        for m in requested:
            self.register_buffer(f"_feat_{m}", torch.from_numpy(dataset.features[m]).float().to(self.device),
                                 persistent=False)
        # trained copies of the raw tables (in the state dict, so the best epoch's tables are restored)
        self.feature_tables = nn.ParameterDict(
            {m: nn.Parameter(getattr(self, f"_feat_{m}").clone()) for m in requested}
            if self.fine_tunable_features and bool(self.hp.get("fine_tune_features", False)) else {})
        self._feature_overrides: Dict[str, Tensor] = {}

    # ---- features -----------------------------------------------------------------------------
    def feature(self, modality: str) -> Tensor:
        """Item feature matrix (n_items, d_m) of ``modality``: the replacement while one is active, else the
        trained table (``fine_tune_features``), else the raw features."""
        override = self._feature_overrides.get(modality)
        if override is not None:
            return override
        if modality in self.feature_tables:
            return self.feature_tables[modality]
        return getattr(self, f"_feat_{modality}")

    def feature_dim(self, modality: str) -> int:
        return int(getattr(self, f"_feat_{modality}").shape[1])

    @contextmanager
    def features_replaced(self, replacements: Mapping[str, Tensor]) -> Iterator[None]:
        """Use ``replacements[m]`` instead of modality ``m``'s features inside the ``with`` block."""
        unknown = [m for m in replacements if m not in self.modalities]
        if unknown:
            raise KeyError(f"{self.name} has no modality {unknown}; it uses {self.modalities}")
        previous = dict(self._feature_overrides)
        self._feature_overrides.update(replacements)
        try:
            yield
        finally:
            self._feature_overrides = previous

    # ---- hooks --------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        """Fused s(u, i) for aligned 1-D ``users``/``items``; fallback slices full scores (override it)."""
        return self.score(users).gather(1, items.view(-1, 1)).squeeze(1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        """``{branch: (e_u, e_i)}`` per modality (+ ``"id"``) for aligned pairs; ``{}`` when fused early."""
        return {}

    def modality_scores(self, users: Tensor, items: Tensor) -> Dict[str, Tensor]:
        """Per-branch scores ``<e_u^m, e_i^m>`` for aligned pairs."""
        return {m: (eu * ei).sum(-1) for m, (eu, ei) in self.modality_embeddings(users, items).items()}



class ContentPlusPartsHooks:
    """The hooks of a model whose final node embedding is ``content + Σ_m part_m`` (MGCN, SMORE): it
    implements ``_rows(nodes) -> (content, [part_m])`` for node indices (users, then items offset by
    ``n_users``) from the current features.  Branches: ``"id"`` pairs the fused user vector with the
    item's content part, each modality with its own item part, so the branch scores sum to the fused one."""

    def _bpr_head(self, batch: TripletBatch, **rows_kw) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The loss head of MMRec's MGCN and SMORE on the batch's unique nodes (``rows_kw`` go to ``_rows``): BPR on
        the final embeddings of (user, positive, negative) plus ``l_w`` × their L2 over the CONFIGURED
        ``batch_size``.  Returns ``(loss, content, side, users, positives)``: the unique rows' content and side
        (Σ parts) embeddings and the row indices of the batch's users and positives in them (for the model's
        own contrastive term)."""
        n = len(batch.users)
        nodes, inv = unique_index(torch.cat([batch.users, batch.pos_items + self.n_users,
                                             batch.neg_items + self.n_users]), self.n_users + self.n_items)
        content, parts = self._rows(nodes, **rows_kw)
        side = sum(parts)
        final = gather_rows(content + side, inv)
        u, pos, neg = final[:n], final[n: 2 * n], final[2 * n:]
        loss = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        if self.l_w:
            loss = loss + float(self.l_w) * l2_reg(u, pos, neg, batch_size=int(self.hp.get("batch_size", 1024)))
        return loss, content, side, inv[:n], inv[n: 2 * n]

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        content, parts = self._rows(None)  # None: every node
        final = content + sum(parts)
        return final[: self.n_users], final[self.n_users:]

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        n = len(users)
        content, parts = self._rows(torch.cat([users, items + self.n_users]))
        final = content + sum(parts)
        return (final[:n] * final[n:]).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        n = len(users)
        content, parts = self._rows(torch.cat([users, items + self.n_users]))
        eu = content[:n] + sum(p[:n] for p in parts)
        out = {"id": (eu, content[n:])}
        for m, part in zip(self.modalities, parts):
            out[m] = (eu, part[n:])
        return out

def model_branches(model) -> List[str]:
    """Branch names of ``model.modality_embeddings`` (probed on one pair, eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            one = torch.zeros(1, dtype=torch.long, device=model.device)
            return list(model.modality_embeddings(one, one))
    finally:
        model.train(was_training)
