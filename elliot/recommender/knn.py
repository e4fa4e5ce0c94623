"""Item-item kNN graphs from item features, built in row chunks (memory O(chunk x items + items x k)): binary
(:func:`knn_graph` + :func:`sym_norm_values`, FREEDOM / DRAGON) or similarity-weighted (:func:`knn_laplacian`, MGCN;
:func:`shrunk_cosine_topk`, ItemKNNCBF); user-user co-occurrence graphs (:func:`top_cooccurring_users`,
:func:`sample_user_graph`, DualGNN / DRAGON)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.nn import functional as F


def knn_graph(features: Tensor, k: int, chunk_size: int = 0) -> Tensor:
    """Indices (2, n·k) of the ``k`` most cosine-similar items of every item (the item itself included,
    as in MMRec's ``get_knn_adj_mat``).  Similarities are computed ``chunk_size`` rows at a time
    (default: as many rows as keep one chunk of similarities near 2^24 floats), so no n x n matrix exists.
    Zero feature rows get zero similarity to everything (MMRec would produce NaNs)."""
    x = F.normalize(features.detach().float(), p=2, dim=1)
    n = x.shape[0]
    k = max(1, min(int(k), n))
    chunk = int(chunk_size) if chunk_size and chunk_size > 0 else max(1, (1 << 24) // max(n, 1))
    cols = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        cols[start:stop] = torch.topk(x[start:stop] @ x.T, k, dim=1).indices
    rows = torch.arange(n, device=x.device).repeat_interleave(k)
    return torch.stack([rows, cols.reshape(-1)])


def sym_norm_values(index: Tensor, n: int) -> Tensor:
    """Edge values D^{-1/2} A D^{-1/2} of the binary adjacency ``index`` (n x n), D = row degrees
    (MMRec's ``compute_normalized_laplacian``: with k neighbours per row every value is 1/k)."""
    deg = torch.bincount(index[0], minlength=n).float() + 1e-7
    inv_sqrt = deg.pow(-0.5)
    return inv_sqrt[index[0]] * inv_sqrt[index[1]]


def knn_laplacian(features: Tensor, k: int, chunk_size: int = 0) -> tuple:
    """The WEIGHTED kNN item graph D^{-1/2} S D^{-1/2} as (index (2, n·k), values (n·k,)): S keeps, in every row,
    the cosine similarities of the ``k`` most similar items (the item itself included), D = row sums of S
    (MMRec's ``build_sim`` + ``build_knn_normalized_graph(..., norm_type='sym')``, used by MGCN and LATTICE's
    initial graph).  Rows whose degree is not positive get D^{-1/2} = 0 (MMRec: inf -> 0, NaN when negative).
    No gradient (a graph frozen at construction)."""
    with torch.no_grad():
        x = F.normalize(features.detach().float(), p=2, dim=1)
        index = knn_graph(x, k, chunk_size)
        sim = (x.index_select(0, index[0]) * x.index_select(0, index[1])).sum(1)
        deg = torch.zeros(x.shape[0], dtype=sim.dtype, device=sim.device).index_add_(0, index[0], sim)
        inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        return index, inv_sqrt[index[0]] * sim * inv_sqrt[index[1]]


def shrunk_cosine_topk(features: Tensor, k: int, shrink: float = 0.0, rows: Tensor = None,
                       chunk_size: int = 0):
    """The ``k`` largest shrunk cosine similarities  s_ij = x_i·x_j / (|x_i||x_j| + shrink)  of the items
    ``rows`` (all when None) against every item, the item itself included (MMRec's ItemKNNCBF
    ``build_item_sim_matrix``): (indices, values), each (len(rows), k).  The values are differentiable
    w.r.t. ``features`` (the selection is not).  Computed ``chunk_size`` rows at a time (default: chunks of
    about 2^24 similarities); a zero feature row with ``shrink`` 0 has similarity 0, not NaN."""
    n = features.shape[0]
    k = max(1, min(int(k), n))
    rows = torch.arange(n, device=features.device) if rows is None else rows
    norms = features.norm(p=2, dim=1)
    chunk = int(chunk_size) if chunk_size and chunk_size > 0 else max(1, (1 << 24) // max(n, 1))
    indices, values = [], []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        denom = (norms.index_select(0, part).unsqueeze(1) * norms.unsqueeze(0) + float(shrink)).clamp_min(1e-12)
        sim = (features.index_select(0, part) @ features.T) / denom
        top = torch.topk(sim, k, dim=1)
        indices.append(top.indices)
        values.append(top.values)
    if not indices:
        empty = features.new_zeros(0, k)
        return empty.long(), empty
    return torch.cat(indices), torch.cat(values)


# ---- user-user co-occurrence graphs (DualGNN's and DRAGON's user graph; MMRec's dualgnn-gen-u-u-matrix.py) --------

def top_cooccurring_users(train: sp.spmatrix, k: int):
    """(neighbours (U, k) int64, counts (U, k) float32, found (U,) int64) as numpy arrays: every user's ``k``
    users with the most common training items, c_uv = |R_u ∩ R_v| > 0, v != u, most first, ties by lower
    index (C = R R^T, vectorised; MMRec reads it from a preprocessed .npy); unused slots hold -1 / 0."""
    r = sp.csr_matrix((train > 0).astype(np.float32))
    c = (r @ r.T).tocoo()
    off = c.row != c.col
    row, col, val = c.row[off].astype(np.int64), c.col[off].astype(np.int64), c.data[off]
    order = np.lexsort((col, -val, row))
    row, col, val = row[order], col[order], val[order]
    n = r.shape[0]
    rank = np.arange(len(row)) - np.searchsorted(row, np.arange(n))[row]
    keep = rank < k
    nbr, cnt = np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32)
    nbr[row[keep], rank[keep]] = col[keep]
    cnt[row[keep], rank[keep]] = val[keep]
    return nbr, cnt, np.minimum(np.bincount(row, minlength=n), k)


def sample_user_graph(nbr: Tensor, counts: Tensor, found: Tensor, gen: torch.Generator) -> Tensor:
    """One epoch's user graph G (U x U coalesced COO, CPU) from :func:`top_cooccurring_users` (as tensors): a
    user with 0 < found < k gets its empty slots filled one by one, slot j copying a slot drawn uniformly among
    0..j-1 (MMRec's ``topk_sample`` urn); row u = softmax over its k slots' counts (repeats counted each time);
    users with no co-occurring user get an empty row."""
    nbr, counts = nbr.clone(), counts.clone()
    n_users, k = nbr.shape
    for j in range(1, k):
        pad = ((found > 0) & (found <= j)).nonzero().squeeze(1)
        if len(pad):
            src = (torch.rand(len(pad), generator=gen) * j).long().clamp_max(j - 1)
            nbr[pad, j], counts[pad, j] = nbr[pad, src], counts[pad, src]
    has = found > 0
    rows = torch.arange(n_users).view(-1, 1).expand(n_users, k)[has].reshape(-1)
    values = torch.softmax(counts, 1)[has].reshape(-1)
    return torch.sparse_coo_tensor(torch.stack([rows, nbr[has].reshape(-1)]), values, (n_users, n_users),
                                   check_invariants=False).coalesce()


def modality_weights(given, modalities, model: str, first: float = 0.1) -> list:
    """FREEDOM's α_m of the item-graph sum: ``given`` (one per modality), else ``first`` for the first
    modality (the authors' visual weight ``mm_image_weight``, 0.1) and the rest shared by the others."""
    n = len(modalities)
    weights = [float(w) for w in (given or [])]
    if not weights:
        weights = [1.0] if n == 1 else [float(first)] + [(1.0 - float(first)) / (n - 1)] * (n - 1)
    if len(weights) != n:
        from elliot.errors import ConfigError

        raise ConfigError(f"{model}: mw has {len(weights)} weights for {n} modalities {list(modalities)}")
    return weights


def weighted_knn_graph(features, weights, k: int, n: int) -> Tensor:
    """S = Σ_m α_m D^{-1/2} kNN_m D^{-1/2} (FREEDOM, DRAGON, PGL): a coalesced sparse (n, n) tensor on the
    features' device, from each modality's top-``k`` cosine graph (:func:`knn_graph`)."""
    indices, values = [], []
    for x, w in zip(features, weights):
        index = knn_graph(x, int(k))
        indices.append(index)
        values.append(float(w) * sym_norm_values(index, n))
    return torch.sparse_coo_tensor(torch.cat(indices, 1), torch.cat(values), (n, n)).coalesce()
