import pytest
import torch
from torch.nn import functional as F

from external.models.dragon import DRAGON
from elliot.recommender.knn import sample_user_graph, top_cooccurring_users
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree,
                           model_factory, random_dataset, replaced_feature_grad, scores_with_replaced_feature,
                           single_thread_fixture, structured_dataset, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(DRAGON, factors=8, top_k=4, lr=0.01, user_k=5)


def test_cooccurrence_neighbours_match_the_preprocessing_loop():
    ds = random_dataset(n_users=25, n_items=12, density=0.2)
    items = [set(ds.train[u].indices) for u in range(ds.n_users)]
    nbr, counts, n = top_cooccurring_users(ds.train, 6)
    for u in range(ds.n_users):
        full = sorted(((-len(items[u] & items[v]), v) for v in range(ds.n_users)
                       if v != u and items[u] & items[v]))[:6]
        assert n[u] == len(full)
        assert nbr[u, : n[u]].tolist() == [v for _, v in full]
        assert counts[u, : n[u]].tolist() == [-c for c, _ in full]
        assert (nbr[u, n[u]:] == -1).all()


def test_user_graph_padding_and_softmax_weights():
    nbr = torch.tensor([[1, 2, 3], [0, -1, -1], [-1, -1, -1], [0, 1, -1]])
    counts = torch.tensor([[3.0, 2.0, 1.0], [2.0, 0, 0], [0, 0, 0], [1.0, 1.0, 0]])
    n = torch.tensor([3, 1, 0, 2])
    g = sample_user_graph(nbr, counts, n, torch.Generator().manual_seed(0)).to_dense()
    assert torch.allclose(g[0, 1:], torch.softmax(torch.tensor([3.0, 2.0, 1.0]), 0))  # full rows: softmax
    assert torch.allclose(g[1], torch.tensor([1.0, 0, 0, 0]))  # one neighbour, copied into every slot
    assert g[2].abs().sum() == 0  # no co-occurrence: no neighbours
    assert torch.allclose(g[3, :2].sum(), torch.tensor(1.0)) and g[3, 2:].sum() == 0
    assert torch.allclose(g.sum(1), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    weights = {round(float(x) * 3) for x in g[3, :2]}  # slots split 2:1 either way (equal counts)
    assert weights == {1, 2}
    again = sample_user_graph(nbr, counts, n, torch.Generator().manual_seed(0)).to_dense()
    assert torch.equal(g, again)


def _reference_loss(model, batch, ds):
    """MMRec ``DRAGON.forward`` + ``calculate_loss`` written out densely ("cat", two modalities); the
    epoch's user graph is the model's (tested above)."""
    nu = model.n_users
    r = torch.as_tensor(ds.train.toarray())
    a = torch.zeros(nu + model.n_items, nu + model.n_items)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    d = a.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    norm = d.view(-1, 1) * a * d.view(1, -1)
    reps = []
    for m, pref, mlp in zip(model.modalities, model.preference, model.mlp):
        temp = mlp[2](F.leaky_relu(mlp[0](model.feature(m))))
        x = F.normalize(torch.cat([pref, temp]))
        h = norm @ x
        h_1 = norm @ h
        reps.append(h + x + h_1)
    v_rep, t_rep = reps
    user_rep = torch.cat([model.weight_u[:, 0:1] * v_rep[:nu], model.weight_u[:, 1:2] * t_rep[:nu]], 1)
    item_rep = torch.cat([v_rep[nu:], t_rep[nu:]], 1)
    mm_adj = torch.zeros(model.n_items, model.n_items)
    for w, m in zip((0.1, 0.9), model.modalities):
        x = model.feature(m) / model.feature(m).norm(dim=1, keepdim=True)
        ind = torch.topk(x @ x.T, model.top_k, dim=-1).indices
        adj = torch.zeros_like(mm_adj).scatter_(1, ind, 1.0)
        dd = (adj.sum(1) + 1e-7).pow(-0.5)
        mm_adj = mm_adj + w * dd.view(-1, 1) * adj * dd.view(1, -1)
    h = item_rep
    for _ in range(model.n_mm_layers):
        h = mm_adj @ h
    user_rep = user_rep + model._user_adj.to_dense() @ user_rep
    item_rep = item_rep + h
    u, i, j = user_rep[batch.users], item_rep[batch.pos_items], item_rep[batch.neg_items]
    loss = -torch.mean(torch.log2(torch.sigmoid((u * i).sum(1) - (u * j).sum(1))))
    reg = sum((p[batch.users] ** 2).mean() for p in model.preference)
    return loss + model.l_w * (reg + (model.weight_u ** 2).mean())


@pytest.mark.parametrize("hp", [{}, {"l_w": 0.5, "n_mm_layers": 2, "user_k": 3}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    model.on_epoch_start(3)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds), atol=1e-6)


def test_training_lowers_loss_and_trains_every_part():
    ds = random_dataset()
    model = _model(ds)
    assert_training_lowers_loss(model, triplet_batch(ds), 20, reset=lambda: model.on_epoch_start(0))
    assert model.mlp[1][0].weight.grad.abs().sum() > 0 and model.weight_u.grad.abs().sum() > 0
    assert model.preference[0].grad.abs().sum() > 0
    assert torch.allclose(_model(ds).weight_u.sum(1), torch.ones(ds.n_users))  # softmax initialisation


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"visual", "textual"})


def test_replaced_features_reach_their_block_not_the_graphs():
    ds = random_dataset()
    model = _model(ds)
    graph = model.item_adj.to_dense().clone()
    users, items = torch.arange(5), torch.arange(5)
    assert replaced_feature_grad(model, lambda: model.score_pairs(users, items)).abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, lambda: model.modality_scores(users, items))
    assert not torch.allclose(attacked["visual"], clean["visual"])
    assert torch.equal(attacked["textual"], clean["textual"])  # blocks are per modality
    assert torch.equal(model.item_adj.to_dense(), graph)


def test_deterministic_with_fixed_seed_and_one_modality():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(_model, ds, batch, steps=4)
    one = _model(ds, modalities=["textual"])
    assert one.hp["mw"] == [1.0] and torch.isfinite(one.loss(batch))
    with pytest.raises(Exception, match="mw"):
        _model(ds, mw=[1.0])


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds), ds, batch_size=128)
