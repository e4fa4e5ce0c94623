"""LightGCN's batch loss equals the textbook computation (full readout, then the batch's rows)."""
import torch

from elliot.recommender.base import bpr_loss, l2_reg
from elliot.recommender.baselines import LightGCN
from tests.helpers import random_dataset, triplet_batch


def test_loss_and_gradient_match_full_readout():
    ds = random_dataset(n_users=50, n_items=40)
    torch.manual_seed(0)
    model = LightGCN(ds, {"factors": 8, "n_layers": 3, "lr": 0.01, "l_w": 1e-2}, torch.device("cpu"))
    batch = triplet_batch(ds, n=64)
    users, items = model.final_embeddings()  # 1/(K+1) Σ_k A^k E over the whole graph
    u, i, j = users[batch.users], items[batch.pos_items], items[batch.neg_items]
    ego = model.embedding
    reg = l2_reg(ego[batch.users], ego[model.n_users + batch.pos_items], ego[model.n_users + batch.neg_items],
                 batch_size=len(batch.users))
    reference = bpr_loss((u * i).sum(-1), (u * j).sum(-1)) + 1e-2 * reg
    (grad_ref,) = torch.autograd.grad(reference, model.embedding)
    loss = model.loss(batch)
    (grad,) = torch.autograd.grad(loss, model.embedding)
    assert torch.equal(loss, reference)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-9)
