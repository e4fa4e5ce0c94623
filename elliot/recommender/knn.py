"""Item-item kNN graphs from item features, built in row chunks (memory O(chunk x items + items x k))."""
from __future__ import annotations

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
