"""SparseOp products and the fused Horner propagation agree with dense references (values and gradients)."""
import pytest
import torch

from elliot.recommender.graph import propagate_sum
from elliot.recommender.sparse import SparseOp, csr_addmm, csr_mm


def _random_sparse(n: int, m: int, density: float = 0.2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(n, m, generator=gen) * (torch.rand(n, m, generator=gen) < density)
    return dense.to_sparse()


@pytest.mark.parametrize("symmetric", [True, False])
def test_spmm_value_and_gradient(symmetric):
    a = _random_sparse(30, 30)
    if symmetric:
        a = ((a + a.t()) / 2).coalesce()
    op = SparseOp(a, symmetric=symmetric)
    x = torch.randn(30, 5, dtype=torch.float32, requires_grad=True)
    g = torch.randn(30, 5)
    (grad,) = torch.autograd.grad(op @ x, x, g)
    dense = a.to_dense()
    torch.testing.assert_close(op @ x.detach(), dense @ x.detach())
    torch.testing.assert_close(grad, dense.T @ g)


def test_csr_addmm_equals_separate_product_and_sum():
    a = SparseOp(_random_sparse(40, 25)).csr
    base, x = torch.randn(40, 7), torch.randn(25, 7)
    assert torch.equal(csr_addmm(base, a, x), base + csr_mm(a, x))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_horner_propagation_matches_layer_by_layer_sum(symmetric, n_layers):
    a = _random_sparse(35, 35, seed=1)
    if symmetric:
        a = ((a + a.t()) / 2).coalesce()
    op = SparseOp(a, symmetric=symmetric)
    x = torch.randn(35, 6, requires_grad=True)
    g = torch.randn(35, 6)
    total = propagate_sum(op, x, n_layers)
    (grad,) = torch.autograd.grad(total, x, g)
    # reference: Σ_k A^k x, layer by layer, with autograd through torch.sparse.mm
    x_ref = x.detach().clone().requires_grad_(True)
    h = ref = x_ref
    for _ in range(n_layers):
        h = torch.sparse.mm(a, h)
        ref = ref + h
    (grad_ref,) = torch.autograd.grad(ref, x_ref, g)
    torch.testing.assert_close(total, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-6)
