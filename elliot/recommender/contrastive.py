"""Contrastive losses shared by self-supervised models (SLMRec, SGL, and any later one).

* :func:`info_nce` - cross-entropy of temperature-scaled inner products, positives on the diagonal
  (in-batch) or at given columns (a whole table of the other view);
* :func:`grouped_info_nce` - the in-batch loss computed from the distinct rows and columns of a batch
  with repeats (same values and gradients, a smaller logits matrix).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from elliot.recommender.base import gather_rows, unique_index


def info_nce(a: Tensor, b: Tensor, temp: float, targets: Optional[Tensor] = None,
             weights: Optional[Tensor] = None) -> Tensor:
    """InfoNCE as a cross-entropy over the logits (a / temp) b^T (the temperature scales ``a`` before the
    product: same logits, no pass over the logits matrix).

    ``targets`` None: in-batch, row n's positive is column n of ``b`` (SLMRec, SimCLR-style).  Otherwise row
    n's positive is column ``targets[n]`` of ``b`` - e.g. ``b`` a whole table of the other view and
    ``targets`` the batch's ids (SGL: softmax over all users / items).  ``weights`` (one per row) gives the
    weighted mean Σ w_n CE_n / Σ w_n (distinct rows with their multiplicity stand for a batch with
    repeats); the plain mean otherwise."""
    logits = (a / temp) @ b.T
    if targets is None:
        targets = torch.arange(len(a), device=a.device)
    if weights is None:
        return F.cross_entropy(logits, targets)
    ce = F.cross_entropy(logits, targets, reduction="none")
    return (ce * weights).sum() / weights.sum()


def grouped_info_nce(a: Tensor, b: Tensor, rows: Tensor, cols: Tensor, col_counts: Tensor, temp: float) -> Tensor:
    """``info_nce(a[rows], b[cols], temp)`` from the distinct rows ``a`` and columns ``b`` only.

    Batch entry n has logits a[rows[n]]·b[cols[k]] / temp over k; equal columns are summed once with
    their multiplicity (``col_counts[c]`` = #{k: cols[k] = c}) inside the log-sum-exp, so the logits
    matrix is (#distinct rows x #distinct columns) instead of (batch x batch).  Same loss and gradients;
    one fused forward/backward (:class:`_GroupedInfoNCE`) instead of autograd's log-softmax passes.
    """
    row_weight = torch.bincount(rows, minlength=len(a)).to(a.dtype) / len(rows)
    return _GroupedInfoNCE.apply(a / temp, b, rows, cols, col_counts.to(a.dtype).log(), row_weight)


def rows_info_nce(a: Tensor, b: Tensor, idx: Tensor, temp: float) -> Tensor:
    """In-batch InfoNCE of the L2-normalised rows ``a[idx]`` against ``b[idx]`` (row n's positive is column
    n, MMRec's MGCN / SMORE ``InfoNCE``), computed on the distinct rows of ``idx`` (:func:`grouped_info_nce`:
    a #distinct x #distinct logits matrix instead of batch x batch, the same loss and gradients)."""
    uniq, inv = unique_index(idx, a.shape[0])
    a_rows = F.normalize(gather_rows(a, uniq), dim=1)
    b_rows = F.normalize(gather_rows(b, uniq), dim=1)
    return grouped_info_nce(a_rows, b_rows, inv, inv, torch.bincount(inv, minlength=len(uniq)), temp)


class _GroupedInfoNCE(torch.autograd.Function):
    """mean_n [log Σ_c exp(a[r_n]·b_c + log_counts_c) - a[r_n]·b[c_n]]  with r = rows, c = cols.

    Backward: d/dlogits = row_weight_r · softmax_r - (1/n) Σ_n 1[r_n, c_n]  (row_weight_r = #{n: r_n = r}/n),
    the softmax kept unnormalised (exp(z - max)) with its row sums."""

    @staticmethod
    def forward(ctx, a, b, rows, cols, log_counts, row_weight):
        z = a @ b.T
        target = z[rows, cols]
        z.add_(log_counts)
        peak = z.amax(1, keepdim=True)
        z.sub_(peak).exp_()
        sums = z.sum(1, keepdim=True)
        lse = (peak + sums.log()).squeeze(1)
        ctx.save_for_backward(a, b, rows, cols, z, sums, row_weight)
        return (row_weight * lse).sum() - target.mean()

    @staticmethod
    def backward(ctx, grad):
        a, b, rows, cols, z, sums, row_weight = ctx.saved_tensors
        dz = z * (row_weight.unsqueeze(1) / sums * grad)
        dz.index_put_((rows, cols), (-grad / len(rows)).expand(len(rows)), accumulate=True)
        ga = dz @ b if ctx.needs_input_grad[0] else None
        gb = dz.T @ a if ctx.needs_input_grad[1] else None
        return ga, gb, None, None, None, None
