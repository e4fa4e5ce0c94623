"""Sparse graph helpers shared by graph models (torch native sparse tensors; torch_sparse not needed)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from elliot.recommender.sparse import SparseOp, propagate_sum_op


def scipy_to_torch(matrix: sp.spmatrix, device: torch.device) -> Tensor:
    """A scipy sparse matrix as a coalesced float32 torch COO tensor on ``device``."""
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, coo.shape, check_invariants=False).coalesce().to(device)


def symmetric_normalize(adj: sp.spmatrix) -> sp.csr_matrix:
    """D^{-1/2} A D^{-1/2}, zero-degree rows left at zero."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = deg[nz] ** -0.5
    d = sp.diags(inv_sqrt)
    return (d @ adj @ d).tocsr().astype(np.float32)


def user_item_adjacency(train: sp.csr_matrix) -> sp.csr_matrix:
    """Bipartite adjacency [[0, R], [R^T, 0]] of size (U+I) x (U+I) with binary R."""
    r = (train > 0).astype(np.float32)
    return sp.bmat([[None, r], [r.T, None]], format="csr")


def normalized_ui_graph(train: sp.csr_matrix, device: torch.device) -> Tensor:
    """LightGCN's propagation matrix  D^{-1/2} A D^{-1/2}  of the user-item graph as a torch sparse tensor."""
    return scipy_to_torch(symmetric_normalize(user_item_adjacency(train)), device)


def ui_propagation_op(train: sp.csr_matrix, device: torch.device) -> SparseOp:
    """:func:`normalized_ui_graph` as a CSR :class:`SparseOp` (symmetric: one CSR serves forward and backward)."""
    return SparseOp(normalized_ui_graph(train, device), symmetric=True)


def propagate(adj, x: Tensor, n_layers: int) -> list:
    """[x, Ax, A^2x, ...] (n_layers + 1 tensors); ``adj`` a :class:`SparseOp` or a torch sparse tensor."""
    layers = [x]
    for _ in range(n_layers):
        x = adj @ x if isinstance(adj, SparseOp) else torch.sparse.mm(adj, x)
        layers.append(x)
    return layers


def propagate_sum(adj, x: Tensor, n_layers: int) -> Tensor:
    """Σ_k A^k x (k = 0..K): Horner's rule with fused products for a :class:`SparseOp`
    (:func:`~elliot.recommender.sparse.propagate_sum_op`), else summed layer by layer (no stacked copy
    of the K+1 layers)."""
    if isinstance(adj, SparseOp):
        return propagate_sum_op(adj, x, n_layers)
    total = x
    for _ in range(n_layers):
        x = torch.sparse.mm(adj, x)
        total = total + x
    return total


def propagate_mean(adj, x: Tensor, n_layers: int) -> Tensor:
    """LightGCN's readout 1/(K+1) Σ_k A^k x (dividing rows gathered from :func:`propagate_sum` instead
    gives the same values bit for bit)."""
    return propagate_sum(adj, x, n_layers) / (n_layers + 1)
