"""Sparse propagation with CSR kernels for both directions (PyTorch's COO ``torch.sparse.mm`` is several
times slower on CPU, and its backward transposes the matrix on every call)."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


class SparseOp:
    """A fixed sparse matrix A kept as CSR together with CSR(A^T), for y = A x with gradient A^T g."""

    def __init__(self, matrix: Tensor, symmetric: bool = False):
        coo = matrix.coalesce()
        self.shape = tuple(coo.shape)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.csr = coo.to_sparse_csr()
            self.csr_t = self.csr if symmetric else coo.t().coalesce().to_sparse_csr()

    def __matmul__(self, x: Tensor) -> Tensor:
        return _SpMM.apply(x, self)

    def to_dense(self) -> Tensor:
        return self.csr.to_dense()


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, op: SparseOp) -> Tensor:
        ctx.op = op
        return torch.mm(op.csr, x.contiguous())

    @staticmethod
    def backward(ctx, grad: Tensor):
        return torch.mm(ctx.op.csr_t, grad.contiguous()), None
