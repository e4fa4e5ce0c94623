import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from elliot.errors import ConfigError
from elliot.recommender.knn import knn_graph
from external.models.pgl import PGL
from external.models.pgl.pgl import principal_subgraph
from tests.helpers import (assert_same_loss_and_grads, fit_through_trainer, random_dataset, scoring_views,
                           structured_dataset, train_steps, triplet_batch)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: thread hand-offs cost more than the work on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(ds, seed=0, **hp):
    params = {p.name: p.default for p in PGL.declared_params()}
    params.update({"factors": 8, "factors_multimod": 8, "top_k": 4, "lr": 0.01, "batch_size": 64}, **hp)
    torch.manual_seed(seed)
    return PGL(ds, params, torch.device("cpu"))


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
    layers = [torch.cat([user, item])]
    for _ in range(model.n_ui_layers):
        layers.append(adj @ layers[-1])
    allemb = torch.stack(layers, 1).mean(1)
    ua, ia = allemb[:nu], allemb[nu:] + h
    u, i, j = ua[batch.users], ia[batch.pos_items], ia[batch.neg_items]
    mf = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()

    def nce(v1, v2):
        v1, v2 = F.normalize(v1, dim=1), F.normalize(v2, dim=1)
        pos = torch.exp((v1 * v2).sum(-1) / 0.2)
        return -torch.log(pos / torch.exp(v1 @ v2.T / 0.2).sum(1)).mean()

    return mf + model.l_w * (nce(u, u) + nce(i, i)) / 2


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
    batch = triplet_batch(ds)
    model.on_epoch_start(0)
    first = model.loss(batch).item()
    train_steps(model, batch, 25)
    model.on_epoch_start(0)
    assert model.loss(batch).item() < first
    assert model.proj[1].weight.grad.abs().sum() > 0 and model.user_emb.grad.abs().sum() > 0
    assert model.lr_multiplier(50) == pytest.approx(0.96)


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"visual", "textual"}
    assert all(eu.shape == (len(users), 8) and ei.shape == (len(users), 8) for eu, ei in emb.values())
    assert torch.allclose(sum(model.modality_scores(users, items).values()), pairs, atol=1e-5)


def test_replaced_features_reach_the_score_not_the_graph():
    ds = random_dataset()
    model = _model(ds)
    graph = model.item_adj.to_dense().clone()
    stored = model.feature("visual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.modality_scores(users, items)["visual"].sum().backward()
    assert delta.grad.abs().sum() > 0
    with torch.no_grad(), model.features_replaced({"visual": stored * 3 + 1}):
        attacked = model.score_pairs(users, items)
    assert not torch.allclose(attacked, model.score_pairs(users, items))
    assert torch.equal(model.item_adj.to_dense(), graph)


def test_deterministic_one_modality_and_sizes():
    ds = random_dataset()
    batch = triplet_batch(ds)
    a, b = _model(ds, seed=3, l_w=0.1), _model(ds, seed=3, l_w=0.1)
    assert torch.equal(train_steps(a, batch, 4), train_steps(b, batch, 4))
    with torch.no_grad():
        assert torch.equal(a.score(torch.arange(5)), b.score(torch.arange(5)))
    one = _model(ds, modalities=["textual"])
    assert one.hp["mw"] == [1.0] and torch.isfinite(one.loss(batch))
    with pytest.raises(ConfigError, match="factors_multimod"):
        _model(ds, factors_multimod=6)


def test_one_epoch_through_the_trainer():
    fit, test = fit_through_trainer(_model(structured_dataset(), batch_size=128), structured_dataset(),
                                    batch_size=128)
    assert fit.epochs_run == 1 and 0.0 <= test.values[10]["Recall"] <= 1.0
