"""The one immutable object every model, trainer and evaluator reads.

Users and items are indexed 0..n-1; ``user_ids[u]`` / ``item_ids[i]`` give the raw ids (strings) used
in the input files and written back in every output.  Splits are CSR matrices (users x items) whose
values are the interaction ratings (1.0 for implicit data); ``train`` drives training and masking,
``validation`` drives model selection, ``test`` the reported metrics.  Item side information is a
dict modality -> float32 matrix whose row ``i`` belongs to item index ``i``.

``item_catalogue`` is the ``data_config.item_catalogue`` the items come from: ``train`` (every item has a
training interaction) or ``all`` (items of any split and items with side information; those without a
training interaction -- :meth:`Dataset.cold_items` -- have empty train columns, filled feature rows, and
are ranked and relevant like any other item).

``user_attributes`` / ``item_attributes``: tabular side information (``ItemAttributes`` / ``UserAttributes``
loaders), name -> :class:`~elliot.dataset.side_information.attributes.Attribute` whose row ``r`` belongs to
user / item index ``r``: categorical int64 codes ``(n, width)`` (0 = unknown, -1 = padding of a
multi-valued set such as genres) or dense float32 values ``(n, width)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Optional

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from elliot.dataset.side_information.attributes import Attribute


@dataclass(frozen=True)
class Dataset:
    name: str
    user_ids: np.ndarray  # (n_users,) raw ids as str
    item_ids: np.ndarray  # (n_items,) raw ids as str
    train: sp.csr_matrix  # (n_users, n_items) float32 ratings
    test: sp.csr_matrix
    validation: Optional[sp.csr_matrix] = None
    features: Dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n_items, d) float32
    info: Dict[str, object] = field(default_factory=dict)  # counts of dropped rows etc., for the log
    item_catalogue: str = "train"  # data_config.item_catalogue: "train" or "all"
    user_attributes: Dict[str, "Attribute"] = field(default_factory=dict)  # name -> aligned with user_ids
    item_attributes: Dict[str, "Attribute"] = field(default_factory=dict)  # name -> aligned with item_ids

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def has_validation(self) -> bool:
        return self.validation is not None and self.validation.nnz > 0

    @property
    def modalities(self) -> list:
        return list(self.features)

    def item_popularity(self) -> np.ndarray:
        """Number of training interactions of each item (float64, length n_items)."""
        return np.asarray((self.train > 0).sum(axis=0)).ravel().astype(np.float64)

    def cold_items(self) -> np.ndarray:
        """(n_items,) bool: the items without a training interaction (only ``item_catalogue: all`` has them
        by construction)."""
        return np.bincount(self.train.indices, minlength=self.n_items)[:self.n_items] == 0

    def warm_items(self) -> np.ndarray:
        """int64 indices of the items with a training interaction (ascending)."""
        return np.flatnonzero(~self.cold_items()).astype(np.int64)

    def train_pairs(self) -> tuple:
        """(users, items) int64 arrays of all training interactions, CSR order."""
        coo = self.train.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)

    def summary(self) -> str:
        parts = [f"{self.name}: {self.n_users} users, {self.n_items} items",
                 f"train {self.train.nnz}",
                 f"validation {self.validation.nnz if self.validation is not None else 0}",
                 f"test {self.test.nnz}"]
        if self.item_catalogue != "train":
            parts[0] += f" (catalogue {self.item_catalogue}: {int(self.cold_items().sum())} cold)"
        for m, x in self.features.items():
            parts.append(f"{m} {x.shape[1]}-d")
        for side, attrs in (("user", self.user_attributes), ("item", self.item_attributes)):
            if attrs:
                parts.append(f"{side} attributes {', '.join(attrs)}")
        return ", ".join(parts)
