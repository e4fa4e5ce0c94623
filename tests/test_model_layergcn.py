"""LayerGCN: loss and gradients against MMRec's formulation written out densely, edge pruning, scoring."""
import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.graph import symmetric_normalize, user_item_adjacency
from elliot.recommender.layergcn import LayerGCN
from elliot.recommender.registry import resolve_model
from tests.helpers import (assert_deterministic_fit, assert_same_loss_and_grads, csr, model_factory, random_dataset,
                           single_thread_fixture, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(LayerGCN, factors=8, lr=0.01)


def _reference_loss(model, batch, adj):
    """MMRec ``LayerGCN.calculate_loss`` on a dense adjacency: summed BPR + λ/2 Σ|e0|², divided by B."""
    ego = model.embedding
    x, layers = ego, []
    for _ in range(model.n_layers):
        x = adj @ x
        x = torch.einsum("a,ab->ab", F.cosine_similarity(x, ego, dim=-1), x)
        layers.append(x)
    final = torch.stack(layers).sum(0)
    u = final[batch.users]
    i, j = final[model.n_users + batch.pos_items], final[model.n_users + batch.neg_items]
    bpr = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).sum()
    e0 = [ego[batch.users], ego[model.n_users + batch.pos_items], ego[model.n_users + batch.neg_items]]
    reg = sum((e ** 2).sum() * 0.5 for e in e0)
    return (bpr + model.l_w * reg) / len(batch.users)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_loss_matches_mmrec_formulation(n_layers):
    ds = random_dataset()
    model = _model(ds, n_layers=n_layers, l_w=0.5)
    batch = triplet_batch(ds)
    adj = model.adj.to_dense()
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, adj), atol=1e-6)


def test_edge_pruning_alternates_and_renormalises():
    ds = random_dataset(n_users=40, n_items=30, density=0.3)
    model = _model(ds, dropout=0.5)
    n_edges = ds.train.nnz
    for epoch in (0, 1):
        model.on_epoch_start(epoch)
        dense = model._train_adj.to_dense()
        kept = dense[: model.n_users, model.n_users:] > 0
        assert kept.sum() == int(n_edges * 0.5)
        rows, cols = kept.nonzero(as_tuple=True)
        sub = csr(rows.numpy(), cols.numpy(), (ds.n_users, ds.n_items))
        expected = torch.from_numpy(symmetric_normalize(user_item_adjacency(sub)).toarray())
        torch.testing.assert_close(dense, expected, rtol=1e-5, atol=1e-6)
    model.on_epoch_start(0)
    first = model._train_adj.to_dense()
    again = _model(ds, dropout=0.5)
    again.on_epoch_start(0)
    assert torch.equal(again._train_adj.to_dense(), first)  # seeded by (seed, epoch)
    # degree-sensitive draws favour low-degree edges: over many epochs their keep rate is higher
    deg_u = torch.bincount(model._edges[0], minlength=ds.n_users).float()
    deg_i = torch.bincount(model._edges[1], minlength=ds.n_items).float()
    weight = 1 / (deg_u[model._edges[0]] * deg_i[model._edges[1]]).sqrt()
    low, high = weight >= weight.median(), weight < weight.median()
    counts = torch.zeros(n_edges)
    for epoch in range(0, 40, 2):
        model.on_epoch_start(epoch)
        d = model._train_adj.to_dense()[: model.n_users, model.n_users:]
        counts += (d[model._edges[0], model._edges[1]] > 0).float()
    assert counts[low].mean() > counts[high].mean()
    model.on_epoch_start(0)
    no_drop = _model(ds)
    no_drop.on_epoch_start(3)
    assert no_drop._train_adj is no_drop.adj


def test_scores_use_the_full_graph_and_agree():
    ds = random_dataset()
    model = _model(ds, dropout=0.3)
    batch = triplet_batch(ds)
    opt = model.make_optimizer()
    for epoch in range(3):
        model.on_epoch_start(epoch)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    users = torch.arange(ds.n_users)
    with torch.no_grad():
        full = model.score(users)
        u, i = model.propagate(model.adj)
        assert full.shape == (ds.n_users, ds.n_items) and torch.isfinite(full).all()
        torch.testing.assert_close(full, u @ i.T)
        model.prepare_scoring()
        assert torch.equal(model.score(users), full)
        model.end_scoring()


def test_deterministic_and_one_trainer_epoch():
    ds = random_dataset()
    assert_deterministic_fit(_model, ds, epochs=2, dropout=0.2)


def test_registry_and_mmrec_names():
    assert resolve_model("LayerGCN") is LayerGCN and resolve_model("external.LayerGCN") is LayerGCN
    from elliot.config import coerce_params

    space = coerce_params(LayerGCN.declared_params(), {"embedding_size": 16, "reg_weight": [1e-3, 1e-4]}, "m")
    assert space.fixed["factors"] == 16 and space.axes["l_w"] == [1e-3, 1e-4]


def test_ego_reweight_gradient_matches_autograd_of_the_cosine():
    from elliot.recommender.layergcn import _EgoReweight

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    ego = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _EgoReweight.apply(a, b, b.detach().pow(2).sum(1)), (x, ego))
    g = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    (_EgoReweight.apply(x, ego, ego.detach().pow(2).sum(1)) * g).sum().backward()
    fast = x.grad.clone(), ego.grad.clone()
    x.grad = ego.grad = None
    ((F.cosine_similarity(x, ego, dim=-1).unsqueeze(1) * x) * g).sum().backward()
    assert torch.allclose(fast[0], x.grad) and torch.allclose(fast[1], ego.grad)
