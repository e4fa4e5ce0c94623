"""DualGNN: the co-occurrence user graph, loss against MMRec's formulation written densely, hooks, trainer."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.registry import resolve_model
from external.models.dualgnn import DualGNN
from elliot.recommender.knn import top_cooccurring_users
from tests.helpers import (assert_same_loss_and_grads, fit_through_trainer, random_dataset, scoring_views,
                           train_steps, triplet_batch)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(ds, seed=0, **hp):
    params = {p.name: p.default for p in DualGNN.declared_params()}
    params.update({"factors": 8, "lr": 0.01, "knn_k": 5}, **hp)
    torch.manual_seed(seed)
    return DualGNN(ds, params, torch.device("cpu"))


def test_cooccurrence_neighbours_brute_force():
    ds = random_dataset(n_users=25, n_items=30, density=0.12)
    r = (ds.train.toarray() > 0).astype(np.float32)
    c = r @ r.T
    np.fill_diagonal(c, 0)
    nbr, cnt, found = top_cooccurring_users(ds.train, 4)
    for u in range(ds.n_users):
        ranked = sorted((v for v in range(ds.n_users) if c[u, v] > 0), key=lambda v: (-c[u, v], v))[:4]
        assert found[u] == len(ranked)
        assert list(nbr[u, :found[u]]) == ranked and list(cnt[u, :found[u]]) == [c[u, v] for v in ranked]


def test_user_graph_rows():
    ds = random_dataset(n_users=25, n_items=30, density=0.12)
    model = _model(ds, knn_k=4)
    g = model.user_graph(0).to_dense()
    found = model._found
    for u in range(ds.n_users):
        row = g[u]
        if found[u] == 0:
            assert row.abs().sum() == 0
            continue
        assert row.sum() == pytest.approx(1.0, abs=1e-5) and set(row.nonzero().squeeze(1).tolist()) <= \
            set(model._nbr[u, :found[u]].tolist())
        if found[u] == 4:  # no padding: the softmax of the counts
            expected = F.softmax(model._cnt[u], 0)
            torch.testing.assert_close(row[model._nbr[u]], expected)
    assert torch.equal(_model(ds, knn_k=4).user_graph(0).to_dense(), g)  # seeded by (seed, epoch)


def _reference_loss(model, batch):
    """MMRec ``DualGNN.calculate_loss`` on dense matrices (one slot per modality, see the docstring)."""
    adj, g = model.adj.to_dense(), model._user_graph.to_dense()
    reps = []
    for p, mlp, m in zip(model.preference, model.mlp, model.modalities):
        x = F.normalize(torch.cat((p, mlp(model.feature(m))), 0))
        h = adj @ x
        reps.append(h + x + adj @ h)
    stacked = torch.stack([r[: model.n_users] for r in reps], 2)  # (U, d, M)
    user_rep = torch.matmul(stacked, model.user_weight.unsqueeze(2)).squeeze(2)
    item_rep = sum(r[model.n_users:] for r in reps)
    user_rep = user_rep + g @ user_rep
    u, i, j = user_rep[batch.users], item_rep[batch.pos_items], item_rep[batch.neg_items]
    loss = -torch.mean(torch.log2(torch.sigmoid((u * i).sum(1) - (u * j).sum(1))))
    reg = sum((p[batch.users] ** 2).mean() for p in model.preference) + (model.user_weight ** 2).mean()
    return loss + model.l_w * reg


@pytest.mark.parametrize("aggr", ["add", "mean"])
def test_loss_matches_mmrec_formulation(aggr):
    ds = random_dataset()
    model = _model(ds, aggr_mode=aggr, l_w=0.5)
    model.on_epoch_start(0)
    assert_same_loss_and_grads(model, triplet_batch(ds), model.loss, lambda b: _reference_loss(model, b), atol=1e-6)


def test_hooks_scores_and_attacks():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), 3)
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.equal(full, cached)
    torch.testing.assert_close(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), rtol=1e-5, atol=1e-5)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"visual", "textual"}
    with torch.no_grad():
        hu, _ = model._final()
        torch.testing.assert_close(sum(eu for eu, _ in emb.values()), hu[users], rtol=1e-5, atol=1e-6)
    stored = model.feature("visual").clone()
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users[:5], items[:5]).sum().backward()
    assert delta.grad.abs().sum() > 0 and torch.equal(model.feature("visual"), stored)


def test_deterministic_and_one_trainer_epoch():
    ds = random_dataset()
    a, b = _model(ds, seed=3), _model(ds, seed=3)
    fa, ta = fit_through_trainer(a, ds, epochs=2)
    _, tb = fit_through_trainer(b, ds, epochs=2)
    assert fa.epochs_run == 2 and math.isfinite(fa.history[-1]["loss"]) and ta.values == tb.values
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert resolve_model("external.DualGNN") is DualGNN and resolve_model("DualGNN") is DualGNN
