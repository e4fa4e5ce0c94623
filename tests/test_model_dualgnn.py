"""DualGNN: the co-occurrence user graph, loss against MMRec's formulation written densely, hooks, trainer."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.registry import resolve_model
from external.models.dualgnn import DualGNN
from elliot.recommender.knn import top_cooccurring_users
from tests.helpers import (assert_deterministic_fit, assert_same_loss_and_grads, assert_views_agree, model_factory,
                           random_dataset, replaced_feature_grad, single_thread_fixture, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(DualGNN, factors=8, lr=0.01, knn_k=5)


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
    users, items, _, _ = assert_views_agree(model, ds, exact_cache=True)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"visual", "textual"}
    with torch.no_grad():
        hu, _ = model._final()
        torch.testing.assert_close(sum(eu for eu, _ in emb.values()), hu[users], rtol=1e-5, atol=1e-6)
    assert replaced_feature_grad(model, lambda: model.score_pairs(users[:5], items[:5])).abs().sum() > 0


def test_deterministic_and_one_trainer_epoch():
    ds = random_dataset()
    assert_deterministic_fit(_model, ds, epochs=2)
    assert resolve_model("external.DualGNN") is DualGNN and resolve_model("DualGNN") is DualGNN
