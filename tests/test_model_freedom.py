import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.knn import knn_graph
from external.models.freedom import FREEDOM
from tests.helpers import (assert_deterministic_training, assert_training_lowers_loss, assert_views_agree,
                           model_factory, random_dataset, replaced_feature_grad, scores_with_replaced_feature,
                           single_thread_fixture, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(FREEDOM, factors=8, factors_multimod=8, top_k=4, lr=0.01, l_w=0.1)


_batch = triplet_batch


def _train(model, batch, steps=30):
    return train_steps(model, batch, steps)


def test_knn_graph_matches_dense_topk_in_chunks():
    x = torch.randn(50, 7)
    index = knn_graph(x, 5, chunk_size=7)
    assert index.shape == (2, 250)
    xn = F.normalize(x, dim=1)
    expected = torch.topk(xn @ xn.T, 5, dim=1).indices
    got = index[1].view(50, 5)
    assert torch.equal(index[0].view(50, 5), torch.arange(50).view(-1, 1).expand(50, 5))
    assert all(set(got[i].tolist()) == set(expected[i].tolist()) for i in range(50))
    assert torch.equal(knn_graph(x, 5), index)  # chunking does not change the result
    assert (got == torch.arange(50).view(-1, 1)).any(1).all()  # an item is its own nearest neighbour


def test_frozen_item_graph_is_weighted_mean_of_knn_graphs():
    ds = random_dataset()
    model = _model(ds, top_k=4)
    assert model.hp["mw"] == [0.1, 0.9]
    dense = model.item_adj.to_dense()
    # every modality graph has k entries of 1/k per row, weighted by 0.1 / 0.9 -> rows sum to 1
    assert torch.allclose(dense.sum(1), torch.ones(ds.n_items), atol=1e-5)
    vis = torch.zeros(ds.n_items, ds.n_items)
    index = knn_graph(torch.as_tensor(ds.features["visual"]), 4)
    vis[index[0], index[1]] = 0.25
    txt = torch.zeros_like(vis)
    index = knn_graph(torch.as_tensor(ds.features["textual"]), 4)
    txt[index[0], index[1]] = 0.25
    assert torch.allclose(dense, 0.1 * vis + 0.9 * txt, atol=1e-6)
    with pytest.raises(Exception):
        _model(ds, mw=[1.0])


def test_degree_sensitive_pruning():
    ds = random_dataset()
    model = _model(ds, drop=0.5)
    n_edges = ds.train.nnz
    model.on_epoch_start(0)
    a0 = model._masked_adj.to_dense()
    model.on_epoch_start(0)
    assert torch.equal(a0, model._masked_adj.to_dense())  # seeded by (seed, epoch)
    model.on_epoch_start(1)
    assert not torch.equal(a0, model._masked_adj.to_dense())
    assert torch.allclose(a0, a0.T)
    nu = ds.n_users
    block = a0[:nu, nu:]
    assert int((block > 0).sum()) == int(n_edges * 0.5)
    assert not block[torch.as_tensor(ds.train.toarray()) == 0].any()  # only training edges
    # symmetric normalisation with the kept graph's degrees
    binary = (block > 0).float()
    du, di = binary.sum(1), binary.sum(0)
    rows, cols = torch.nonzero(binary, as_tuple=True)
    assert torch.allclose(block[rows, cols], (du[rows] * di[cols]).rsqrt(), atol=1e-5)
    model_full = _model(ds, drop=0.0)
    model_full.on_epoch_start(0)
    assert torch.allclose(model_full._masked_adj.to_dense(), model_full.norm_adj.to_dense())


def test_training_lowers_loss_and_trains_projections():
    ds = random_dataset()
    model = _model(ds)
    loss = assert_training_lowers_loss(model, _batch(ds), 30, reset=lambda: model.on_epoch_start(0))
    assert torch.isfinite(loss)
    assert model.proj[0].weight.grad is not None and model.proj[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("fuse", [False, True])
def test_score_and_pairs_agree(fuse):
    ds = random_dataset()
    model = _model(ds, fuse_modalities=fuse)
    _train(model, _batch(ds), steps=3)
    assert_views_agree(model, ds)


@pytest.mark.parametrize("fuse", [False, True])
def test_modality_embeddings(fuse):
    ds = random_dataset()
    model = _model(ds, fuse_modalities=fuse)
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    for eu, ei in emb.values():
        assert eu.shape == (10, 8) and ei.shape == (10, 8)
    scores = model.modality_scores(users, items)
    fused = model.score_pairs(users, items)
    if fuse:  # the fused score is exactly the sum of the branch scores
        assert torch.allclose(sum(scores.values()), fused, atol=1e-5)
    else:  # MMRec: the ID path alone is the fused score
        assert torch.allclose(scores["id"], fused, atol=1e-6)


def test_gradients_reach_replaced_features():
    ds = random_dataset()
    model = _model(ds)
    graph = model.item_adj.to_dense().clone()
    users, items = torch.arange(5), torch.arange(5)
    grad = replaced_feature_grad(model, lambda: model.modality_scores(users, items)["visual"])
    assert grad is not None and grad[:5].abs().sum() > 0
    assert grad[5:].abs().sum() == 0
    # default (MMRec): features reach neither the fused score nor the frozen graph
    attacked, clean = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert torch.equal(attacked, clean)
    assert torch.equal(model.item_adj.to_dense(), graph)
    # fused variant: the replacement reaches the score through the projection
    fused = _model(ds, fuse_modalities=True)
    score = lambda: fused.score_pairs(users, items)  # noqa: E731
    assert replaced_feature_grad(fused, score)[:5].abs().sum() > 0
    changed, clean = scores_with_replaced_feature(fused, score)
    assert not torch.allclose(changed, clean)


def test_deterministic_with_fixed_seed():
    ds = random_dataset()
    assert_deterministic_training(_model, ds, _batch(ds), steps=5)


def test_modality_loss_needs_matching_sizes():
    from elliot.errors import ConfigError
    ds = random_dataset()
    with pytest.raises(ConfigError, match="factors must equal factors_multimod"):
        _model(ds, factors=8, factors_multimod=6)
    assert _model(ds, factors=8, factors_multimod=6, l_w=0.0).loss(triplet_batch(ds)).isfinite()


def test_fine_tune_features_trains_the_tables_but_keeps_the_frozen_graph():
    ds = random_dataset()
    tuned = _model(ds, fine_tune_features=True)
    graph = tuned.item_adj.to_dense().clone()
    raw = {m: tuned.feature(m).detach().clone() for m in tuned.modalities}
    train_steps(tuned, triplet_batch(ds), 3)
    assert all(not torch.equal(tuned.feature(m).detach(), raw[m]) for m in tuned.modalities)
    assert torch.equal(tuned.item_adj.to_dense(), graph)  # built once from the raw features, as MMRec's
