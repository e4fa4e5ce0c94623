import numpy as np
import pytest
import torch

from elliot.errors import ConfigError
from external.models.mmgcn import MMGCN
from tests.helpers import (assert_same_loss_and_grads, model_factory, random_dataset, scoring_views,
                           single_thread_fixture, triplet_batch)

VARIANTS = [
    {},  # defaults: mean fusion, concatenation, mean aggregation
    {"fusion": "per_modality", "concate": False, "aggr_mode": "max"},
    {"aggr_mode": "add", "has_id": False, "n_layers": 1},
]


_single_thread = single_thread_fixture()
_model = model_factory(MMGCN, factors=8, lr=0.01, l_w=1e-3)


_batch = triplet_batch


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_lowers_loss(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    opt = model.make_optimizer()
    batch = _batch(ds)
    first = model.loss(batch).item()
    for _ in range(25):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert model.loss(batch).item() < first
    # ID embeddings and preferences are trained (the released code leaves them out of the optimiser)
    assert model.id_embedding.grad is not None and model.id_embedding.grad.abs().sum() > 0
    assert all(g.preference.grad.abs().sum() > 0 for g in model.gcns)


def test_default_projection_follows_released_code():
    ds = random_dataset()
    model = _model(ds)
    assert model.gcns[0].project.out_features == 256  # visual projected to 256
    assert model.gcns[1].project is None  # other modalities raw
    assert model.gcns[1].preference.shape == (ds.n_users, 6)
    model = _model(ds, factors_multimod=[0, 5])
    assert model.gcns[0].project is None and model.gcns[1].project.out_features == 5
    with pytest.raises(ConfigError):
        _model(ds, factors_multimod=[16])


@pytest.mark.parametrize("variant", VARIANTS)
def test_score_and_pairs_agree(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    users, items, full, cached, pairs, cached_pairs = scoring_views(model, ds, cached_pairs=True)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)
    assert torch.allclose(cached_pairs, pairs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_branch_scores_sum_to_fused_score(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"visual", "textual"}
    width = 8 if variant.get("fusion") == "per_modality" else 16
    for eu, ei in emb.values():
        assert eu.shape == (10, width) and ei.shape == (10, width)
    total = sum(model.modality_scores(users, items).values())
    assert torch.allclose(total, model.score_pairs(users, items), atol=1e-5)


def test_mean_aggregation_is_row_normalised_adjacency():
    ds = random_dataset()
    model = _model(ds)
    r = (ds.train.toarray() > 0).astype(np.float32)
    a = np.block([[np.zeros((ds.n_users, ds.n_users)), r], [r.T, np.zeros((ds.n_items, ds.n_items))]])
    deg = a.sum(1, keepdims=True)
    dense = torch.as_tensor(np.divide(a, deg, out=np.zeros_like(a), where=deg > 0), dtype=torch.float32)
    x = torch.randn(ds.n_users + ds.n_items, 5)
    assert torch.allclose(model._aggregate(x), dense @ x, atol=1e-5)
    maxed = _model(ds, aggr_mode="max")._aggregate(x)
    for v in range(len(a)):
        nb = np.nonzero(a[v])[0]
        expected = x[nb].max(0).values if len(nb) else torch.zeros(5)
        assert torch.allclose(maxed[v], expected)


@pytest.mark.parametrize("fusion", ["mean", "per_modality"])
def test_gradients_reach_replaced_features(fusion):
    ds = random_dataset()
    model = _model(ds, fusion=fusion)
    stored = model.feature("visual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert torch.equal(model.feature("visual"), stored)
    delta2 = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta2}):
        scores = model.modality_scores(users, items)
        scores["visual"].sum().backward(retain_graph=True)
        assert delta2.grad.abs().sum() > 0
        delta2.grad = None
        scores["textual"].sum().backward()
    # per_modality: the textual branch never sees visual features; mean: only via its half of the cross terms
    if fusion == "per_modality":
        assert delta2.grad is None or delta2.grad.abs().sum() == 0
    else:
        assert delta2.grad.abs().sum() > 0
    with torch.no_grad(), model.features_replaced({"visual": stored * 3 + 1}):
        changed = model.score_pairs(users, items)
    assert not torch.allclose(changed, model.score_pairs(users, items))


def test_deterministic_with_seed():
    ds = random_dataset()
    outs = []
    for _ in range(2):
        model = _model(ds, seed=7)
        opt = model.make_optimizer()
        for step in range(3):
            opt.zero_grad()
            model.loss(_batch(ds, seed=step)).backward()
            opt.step()
        with torch.no_grad():
            outs.append(model.score(torch.arange(ds.n_users)))
    assert torch.equal(outs[0], outs[1])


def test_single_modality_subset():
    ds = random_dataset()
    model = _model(ds, modalities=["textual"])
    assert set(model.modality_embeddings(torch.arange(3), torch.arange(3))) == {"textual"}
    assert model.score(torch.arange(3)).shape == (3, ds.n_items)


def _reference_modalities(model):
    """MMGCN over the whole graph as written in the paper: x = L2norm([P; f]) of all nodes, every layer on
    every node (what the side-wise, last-layer-restricted, factored fast path must reproduce)."""
    import torch.nn.functional as F

    users_m, items_m = [], []
    for b, gcn in enumerate(model.gcns):
        feat = model.feature(model.modalities[b])
        if gcn.project is not None:
            feat = gcn.project(feat)
        x = F.normalize(torch.cat([gcn.preference, feat]), dim=1)
        for layer, (w1, own, combine) in enumerate(zip(gcn.conv, gcn.own, gcn.combine)):
            h = F.leaky_relu(model._aggregate(x @ w1))
            x_hat = F.leaky_relu(own(x))
            if model.has_id:
                x_hat = x_hat + model.id_embedding
            x = F.leaky_relu(combine(h) + (x_hat @ gcn.combine_own[layer] if gcn.concate else x_hat))
        users_m.append(x[: model.n_users])
        items_m.append(x[model.n_users:])
    return users_m, items_m


@pytest.mark.parametrize("variant", VARIANTS + [{"factors_multimod": [5, 4], "n_layers": 3}, {"n_layers": 1},
                                                {"aggr_mode": "add", "concate": False}])
def test_loss_and_gradients_match_full_graph_reference(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    batch = _batch(ds)

    def reference(batch):
        eu, ei = model._fused(*_reference_modalities(model))
        u = eu[batch.users]
        pos, neg = (u * ei[batch.pos_items]).sum(-1), (u * ei[batch.neg_items]).sum(-1)
        items = torch.cat([batch.pos_items, batch.neg_items]) + model.n_users
        reg = model.id_embedding[batch.users].pow(2).mean() + model.id_embedding[items].pow(2).mean()
        for gcn in model.gcns:
            reg = reg + gcn.preference[batch.users].pow(2).mean()
        return torch.nn.functional.softplus(neg - pos).mean() + model.l_w * reg

    assert_same_loss_and_grads(model, batch, model.loss, reference, atol=1e-7)
    with torch.no_grad():
        users_m, items_m = _reference_modalities(model)
        users, items = torch.tensor([0, 2, 2, 5]), torch.tensor([1, 1, 7, 30])
        fu, fi = model.propagate()
        pu, pi = model.propagate(users, items)
        for m in range(len(model.modalities)):
            assert torch.allclose(fu[m], users_m[m], atol=1e-5) and torch.allclose(fi[m], items_m[m], atol=1e-5)
            assert torch.allclose(pu[m], users_m[m][users], atol=1e-5)
            assert torch.allclose(pi[m], items_m[m][items], atol=1e-5)


def test_train_id_false_keeps_ids_and_preferences_fixed():
    """``train_id: false`` is the released code's / MMRec's MMGCN: the ID embeddings and preferences are plain
    tensors there, outside the optimiser, so they keep their random initialisation; the rest trains."""
    ds = random_dataset()
    model = _model(ds, train_id=False)
    ids, prefs = model.id_embedding.detach().clone(), [g.preference.detach().clone() for g in model.gcns]
    w = model.gcns[0].conv[0].detach().clone()
    opt = model.make_optimizer()
    for step in range(3):
        opt.zero_grad()
        model.loss(_batch(ds, seed=step)).backward()
        opt.step()
    assert torch.equal(model.id_embedding, ids)
    assert all(torch.equal(g.preference, p) for g, p in zip(model.gcns, prefs))
    assert not torch.equal(model.gcns[0].conv[0], w)
