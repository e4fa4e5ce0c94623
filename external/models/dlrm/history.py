"""DLRM's user-history features (SVD++'s implicit feedback, Koren, KDD 2008, Eq. 15) and the feature
reduction of its content towers; the equations are in ``dlrm.py``'s module docstring.

Everything is vectorised: the history of every user is one sparse-dense product of the row-normalised
user x item training matrix N (N_uj = |N(u)|^{-1/2} for the items j the user rated in training, 0 elsewhere)
with an item table (``elliot.recommender.sparse.SparseOp``: CSR kernels both ways, the backward a product
with the precomputed CSR transpose, one output row per thread: deterministic, unlike a scatter)."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from elliot.recommender.sparse import SparseOp


def history_matrices(train: sp.csr_matrix, power: float = 0.5) -> Tuple[sp.csr_matrix, sp.csr_matrix]:
    """(N, N∘N): N_uj = |N(u)|^{-power} for every training pair (u, j) (the rating value is ignored: the
    implicit feedback is *that* u rated j), and its element-wise square |N(u)|^{-2 power} (the weights of
    the history regulariser).  Users without training ratings get an empty row."""
    indicator = sp.csr_matrix((np.ones(train.nnz, dtype=np.float64), train.indices.copy(), train.indptr.copy()),
                              shape=train.shape)
    indicator.sum_duplicates()
    counts = np.diff(indicator.indptr).astype(np.float64)
    scale = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    norm = sp.diags(scale) @ indicator
    return norm.tocsr(), (sp.diags(scale ** 2) @ indicator).tocsr()


def _op(matrix: sp.csr_matrix, device: torch.device) -> SparseOp:
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return SparseOp(torch.sparse_coo_tensor(index, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                            device=device, check_invariants=True))


class UserHistory(torch.nn.Module):
    """The normalised history operator of one training matrix: ``profile(table)`` = N @ table (all users,
    n_users x d) and ``penalty(table)`` = N∘N @ ‖table_j‖² (n_users: |N(u)|^{-1} Σ_{j∈N(u)} ‖y_j‖²)."""

    def __init__(self, train: sp.csr_matrix, device: torch.device):
        super().__init__()
        norm, squared = history_matrices(train)
        # sparse tensors are not module buffers (state_dict, .to): plain attributes, built on the device
        self._n, self._n2 = _op(norm, device), _op(squared, device)
        self.counts = torch.from_numpy(np.diff(norm.indptr).astype(np.int64))

    def profile(self, table: Tensor) -> Tensor:
        """(n_users, d): row u is |N(u)|^{-1/2} Σ_{j∈N(u)} table[j]."""
        return self._n @ table

    def penalty(self, table: Tensor) -> Tensor:
        """(n_users,): |N(u)|^{-1} Σ_{j∈N(u)} ‖table[j]‖², the mean squared norm of the user's history rows."""
        return (self._n2 @ table.pow(2).sum(1, keepdim=True)).squeeze(1)


def pca_reduce(x: np.ndarray, used: np.ndarray, k: int) -> np.ndarray:
    """The first k principal components of the standardised features x (n_items x D), fitted on the rows
    ``used`` (the training items; all rows when none is), then divided by one scalar so that the kept
    components have unit mean variance on those rows (the tower's initialisation expects unit-scale inputs;
    the components' relative scales are kept).  k >= D returns x unchanged."""
    if k <= 0 or k >= x.shape[1]:
        return x
    ref = x[used] if used.any() else x
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    z = (x - mean) @ vt[:k].T
    scale = float(np.sqrt((z[used] if used.any() else z).var(0).mean())) or 1.0
    return (z / scale).astype(np.float32)
