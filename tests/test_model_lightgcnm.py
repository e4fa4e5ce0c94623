import pytest
import torch

from external.models.lightgcnm import LightGCNM
from tests.helpers import model_factory, random_dataset, scoring_views, triplet_batch

AGGREGATIONS = ["mean", "sum", "concat"]


_model = model_factory(LightGCNM, factors=8, n_layers=2, lr=0.01, l_w=1e-4)


_batch = triplet_batch


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_training_lowers_loss(aggregation):
    ds = random_dataset()
    model = _model(ds, aggregation=aggregation)
    opt = model.make_optimizer()
    batch = _batch(ds)
    first = model.loss(batch).item()
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert model.loss(batch).item() < first
    assert all(lin.weight.grad is not None for lin in model.proj)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_score_and_pairs_agree(aggregation):
    ds = random_dataset()
    model = _model(ds, aggregation=aggregation)
    users, items, full, cached, pairs, pairs_cached = scoring_views(model, ds, cached_pairs=True)
    assert model._cache is None
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)
    assert torch.allclose(pairs, pairs_cached)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("item_id", [True, False])
def test_branch_scores_sum_to_fused_score(aggregation, item_id):
    ds = random_dataset()
    model = _model(ds, aggregation=aggregation, item_id=item_id, normalize=aggregation != "sum")
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    for eu, ei in emb.values():
        assert eu.shape == (10, 16) and ei.shape == (10, 16)
    scores = model.modality_scores(users, items)
    assert torch.allclose(sum(scores.values()), model.score_pairs(users, items), atol=1e-5)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_gradients_reach_replaced_features(aggregation):
    ds = random_dataset()
    model = _model(ds, aggregation=aggregation)
    stored = model.feature("textual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"textual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    delta2 = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"textual": stored + delta2}):
        model.modality_scores(users, items)["textual"].sum().backward()
    assert delta2.grad.abs().sum() > 0
    assert torch.equal(model.feature("textual"), stored)
    # the replacement is really used, also by score() without a cache
    users_all = torch.arange(ds.n_users)
    with torch.no_grad():
        clean = model.score(users_all)
        with model.features_replaced({"textual": -stored}):
            attacked = model.score(users_all)
    assert not torch.allclose(clean, attacked)


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


def test_feature_only_items_have_no_id_embedding():
    ds = random_dataset()
    model = _model(ds, item_id=False, n_layers=1)
    assert model.item_emb is None
    assert model.score(torch.arange(4)).shape == (4, ds.n_items)


def test_matches_lightgcn_on_the_fused_inputs():
    ds = random_dataset()
    model = _model(ds, aggregation="mean", n_layers=2)
    with torch.no_grad():
        proj = [torch.nn.functional.normalize(lin(model.feature(m)), dim=1) for m, lin in zip(model.modalities, model.proj)]
        ego = torch.cat([model.user_emb.weight, model.item_emb.weight + sum(proj) / len(proj)])
        adj = model.adj.to_dense()
        final = (ego + adj @ ego + adj @ adj @ ego) / 3
        expected = final[: ds.n_users] @ final[ds.n_users:].T
        assert torch.allclose(model.score(torch.arange(ds.n_users)), expected, atol=1e-5)
