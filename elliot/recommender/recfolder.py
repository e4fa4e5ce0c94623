"""Evaluate stored recommendation lists without a model (Elliot's ``RecommendationFolder``).

    models:
      RecommendationFolder:
        folder: ../results/other_tool/recs      # every *.tsv in it is one configuration
      RecommendationFile:
        path: ../results/other_tool/recs/x.tsv  # a single list

Each file holds ``user<TAB>item<TAB>score`` rows (the layout ``meta.save_recs`` writes; a header
line ``user item score`` is skipped; rows without a score rank in file order) with the dataset's
original ids.  Every file becomes one trial, scored under exactly the protocol of trained models
(same splits, masks, cutoffs and metrics).  Items a list does not contain are "not recommended"
(score -inf: never a hit, never counted as covered); a list shorter than the cutoff is evaluated
as it is.  Users or items unknown to the dataset are dropped with a counted warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError, DataError
from elliot.recommender.base import Recommender


def read_recommendations(path: Path, dataset: Dataset) -> sp.csr_matrix:
    """The lists of ``path`` as a users x items matrix of scores (stored as score + offset so that
    every recommended item, whatever its score, is an explicit entry)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read recommendation file ({exc.strerror})") from None
    rows = [line.split("\t") if "\t" in line else line.split() for line in lines if line.strip()]
    if rows and rows[0][:2] == ["user", "item"]:
        rows = rows[1:]
    bad = next((n for n, r in enumerate(rows, 1) if len(r) < 2), None)
    if bad is not None:
        raise DataError(f"{path}: line {bad} has {len(rows[bad - 1])} column(s); expected user<TAB>item[<TAB>score]")
    users = np.array([r[0] for r in rows], dtype=str)
    items = np.array([r[1] for r in rows], dtype=str)
    n = len(rows)
    if n and all(len(r) >= 3 for r in rows):
        try:
            scores = np.array([float(r[2]) for r in rows], dtype=np.float64)
        except ValueError:
            raise DataError(f"{path}: the third column must be a numeric score") from None
    else:  # no scores: file order is the ranking
        scores = -np.arange(n, dtype=np.float64)
    uidx = _lookup(dataset.user_ids, users)
    iidx = _lookup(dataset.item_ids, items)
    known = (uidx >= 0) & (iidx >= 0)
    if (~known).any():
        warnings.warn(f"{path}: {(uidx < 0).sum()} rows with users and {(iidx < 0).sum()} rows with items "
                      "unknown to the dataset are ignored")
    uidx, iidx, scores = uidx[known], iidx[known], scores[known]
    if len(scores):
        # strictly positive stored values preserve the order and keep every entry explicit
        scores = scores - scores.min() + 1.0
    matrix = sp.csr_matrix((scores, (uidx, iidx)), shape=(dataset.n_users, dataset.n_items))
    matrix.sum_duplicates()
    return matrix


def _lookup(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Index of each ``raw`` id in ``ids`` (-1 when absent), vectorised."""
    ids = np.asarray(ids).astype(str)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], raw)
    pos[pos >= len(ids)] = 0
    found = ids[order][pos] == raw if len(ids) else np.zeros(len(raw), dtype=bool)
    return np.where(found, order[pos], -1).astype(np.int64)


class RecommendationFile(Recommender):
    """Scores read from one stored recommendation file (see the module docstring)."""

    name = "RecommendationFile"
    trainable = False
    params = (Param("path", str, "", "a user<TAB>item<TAB>score file with the dataset's original ids"),)

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        if not str(self.path):
            raise ConfigError(f"{self.name}: `path` is required (a recommendation TSV file)")
        self._scores = read_recommendations(Path(str(self.path)), dataset)

    def fit(self, dataset: Dataset) -> None:
        """Nothing to learn: the scores are the file's."""

    def score(self, users: Tensor) -> Tensor:
        rows = self._scores[users.cpu().numpy()].toarray()
        out = torch.from_numpy(rows.astype(np.float32)).to(self.device)
        return out.masked_fill(out == 0, -torch.inf)


class RecommendationFolder(RecommendationFile):
    """One :class:`RecommendationFile` trial per ``*.tsv`` file of ``folder`` (Elliot's RecommendationFolder)."""

    name = "RecommendationFolder"
    params = (Param("folder", str, "", "a folder of recommendation files (*.tsv), one configuration each"),
              Param("path", str, "", "set per trial from `folder`; leave empty"))

    @classmethod
    def expand_configurations(cls, params: Dict[str, object], where: str) -> List[Dict[str, object]]:
        """One configuration per file of ``folder`` (sorted by name), with ``path`` set."""
        folder = Path(str(params.get("folder") or ""))
        if not str(params.get("folder") or ""):
            raise ConfigError(f"{where}.folder: required (a folder of recommendation .tsv files)")
        if not folder.is_dir():
            raise ConfigError(f"{where}.folder: {folder} is not a folder")
        files = sorted(folder.glob("*.tsv"))
        if not files:
            raise ConfigError(f"{where}.folder: {folder} holds no .tsv recommendation files")
        return [{**params, "path": str(f)} for f in files]
