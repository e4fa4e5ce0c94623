import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from elliot.errors import ConfigError
from elliot.recommender.knn import knn_graph
from external.models.pgl import PGL
from external.models.pgl.pgl import principal_subgraph
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree,
                           dense_layer_mean, model_factory, random_dataset, reference_info_nce, replaced_feature_grad,
                           scores_with_replaced_feature, single_thread_fixture, structured_dataset, train_steps,
                           triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(PGL, factors=8, factors_multimod=8, top_k=4, lr=0.01, batch_size=64)


def _dense_knn(x, k):
    """MMRec get_knn_adj_mat: binary top-k, D^-1/2 A D^-1/2 with row degrees (every entry 1/k)."""
    index = knn_graph(x, k)
    adj = torch.zeros(len(x), len(x))
    adj[index[0], index[1]] = 1.0 / k
    return adj


def _reference_loss(model, batch, ds, adj):
    """MMRec ``PGL.forward(adj)`` + ``calculate_loss`` with dense matrices (dropout 0: deterministic views)."""
    nu = model.n_users
    image = F.normalize(model.proj[0](model.feature("visual")))
    text = F.normalize(model.proj[1](model.feature("textual")))
    user = model.user_emb  # user_image ‖ user_text
    item = torch.cat([image, text], 1)
    mm_adj = 0.1 * _dense_knn(model.feature("visual"), 4) + 0.9 * _dense_knn(model.feature("textual"), 4)
    h = item
    for _ in range(model.n_layers):
        h = mm_adj @ h
    allemb = dense_layer_mean(adj, torch.cat([user, item]), model.n_ui_layers)
    ua, ia = allemb[:nu], allemb[nu:] + h
    u, i, j = ua[batch.users], ia[batch.pos_items], ia[batch.neg_items]
    mf = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
    return mf + model.l_w * (reference_info_nce(u, u) + reference_info_nce(i, i)) / 2


@pytest.mark.parametrize("hp", [{}, {"l_w": 0.5, "dropout": 0.0, "n_layers": 2, "n_ui_layers": 3}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    batch = triplet_batch(ds)
    model.on_epoch_start(0)
    adj = model._train_adj.to_dense()
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds, adj), atol=1e-6)


def test_local_subgraph_is_a_degree_sensitive_sample_of_30_percent():
    ds = random_dataset()
    model = _model(ds)
    model.on_epoch_start(0)
    a0 = model._train_adj.to_dense()
    model.on_epoch_start(0)
    assert torch.equal(a0, model._train_adj.to_dense())
    model.on_epoch_start(1)
    assert not torch.equal(a0, model._train_adj.to_dense())
    block = a0[: ds.n_users, ds.n_users:]
    assert int((block > 0).sum()) == int(ds.train.nnz * 0.3)
    assert not block[torch.as_tensor(ds.train.toarray()) == 0].any()


def test_global_principal_subgraph_matches_dense_svd():
    a = sp.random(30, 30, density=0.2, random_state=1)
    a = ((a + a.T) > 0).astype(np.float64)
    deg = np.asarray(a.sum(1)).ravel() + 1e-7
    lap = sp.diags(deg ** -0.5) @ a @ sp.diags(deg ** -0.5)
    u, s, vt = np.linalg.svd(lap.toarray())
    rank, n = 8, 2
    dense = u[:, :n] @ np.diag(s[:n] * s[rank - n: rank]) @ vt[:n]
    dense[np.abs(dense) < 1e-3] = 0
    got = principal_subgraph(lap, rank, seed=0).toarray()
    assert np.allclose(got, dense, atol=1e-5)
    ds = random_dataset()
    model = _model(ds, mode="global")
    model.on_epoch_start(3)
    assert model._train_adj is model._global and torch.isfinite(model.loss(triplet_batch(ds)))


def test_training_lowers_loss_and_trains_projections():
    ds = random_dataset()
    model = _model(ds, l_w=0.1)
    assert_training_lowers_loss(model, triplet_batch(ds), 25, reset=lambda: model.on_epoch_start(0))
    assert model.proj[1].weight.grad.abs().sum() > 0 and model.user_emb.grad.abs().sum() > 0
    assert model.lr_multiplier(50) == pytest.approx(0.96)


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"visual", "textual"})


def test_replaced_features_reach_the_score_not_the_graph():
    ds = random_dataset()
    model = _model(ds)
    graph = model.item_adj.to_dense().clone()
    users, items = torch.arange(5), torch.arange(5)
    assert replaced_feature_grad(model, lambda: model.modality_scores(users, items)["visual"]).abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert not torch.allclose(attacked, clean)
    assert torch.equal(model.item_adj.to_dense(), graph)


def test_deterministic_one_modality_and_sizes():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(lambda d, seed: _model(d, seed=seed, l_w=0.1), ds, batch, steps=4)
    one = _model(ds, modalities=["textual"])
    assert one.hp["mw"] == [1.0] and torch.isfinite(one.loss(batch))
    with pytest.raises(ConfigError, match="factors_multimod"):
        _model(ds, factors_multimod=6)


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)
