import pytest
import torch
from torch.nn import functional as F

from elliot.evaluation.evaluator import Evaluator
from elliot.training.trainer import Trainer
from external.models.dragon import DRAGON
from elliot.recommender.knn import sample_user_graph, top_cooccurring_users
from tests.helpers import (assert_same_loss_and_grads, random_dataset, scoring_views, structured_dataset,
                           train_steps, triplet_batch)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: thread hand-offs cost more than the work on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(ds, seed=0, **hp):
    params = {p.name: p.default for p in DRAGON.declared_params()}
    params.update({"factors": 8, "top_k": 4, "lr": 0.01, "user_k": 5}, **hp)
    torch.manual_seed(seed)
    return DRAGON(ds, params, torch.device("cpu"))


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
    batch = triplet_batch(ds)
    model.on_epoch_start(0)
    first = model.loss(batch).item()
    train_steps(model, batch, 20)
    model.on_epoch_start(0)
    assert model.loss(batch).item() < first
    assert model.mlp[1][0].weight.grad.abs().sum() > 0 and model.weight_u.grad.abs().sum() > 0
    assert model.preference[0].grad.abs().sum() > 0
    assert torch.allclose(_model(ds).weight_u.sum(1), torch.ones(ds.n_users))  # softmax initialisation


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


def test_replaced_features_reach_their_block_not_the_graphs():
    ds = random_dataset()
    model = _model(ds)
    graph = model.item_adj.to_dense().clone()
    stored = model.feature("visual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad.abs().sum() > 0
    with torch.no_grad(), model.features_replaced({"visual": stored * 3 + 1}):
        attacked = model.modality_scores(users, items)
    clean = model.modality_scores(users, items)
    assert not torch.allclose(attacked["visual"], clean["visual"])
    assert torch.equal(attacked["textual"], clean["textual"])  # blocks are per modality
    assert torch.equal(model.item_adj.to_dense(), graph)


def test_deterministic_with_fixed_seed_and_one_modality():
    ds = random_dataset()
    batch = triplet_batch(ds)
    a, b = _model(ds, seed=3), _model(ds, seed=3)
    assert torch.equal(train_steps(a, batch, 4), train_steps(b, batch, 4))
    with torch.no_grad():
        assert torch.equal(a.score(torch.arange(5)), b.score(torch.arange(5)))
    one = _model(ds, modalities=["textual"])
    assert one.hp["mw"] == [1.0] and torch.isfinite(one.loss(batch))
    with pytest.raises(Exception, match="mw"):
        _model(ds, mw=[1.0])


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    model = _model(ds)
    ev = Evaluator(ds, [10], ["Recall"])
    fit = Trainer(model, ds, ev, epochs=1, batch_size=128, seed=0, validation_metric="Recall@10",
                  progress=False).fit()
    assert fit.epochs_run == 1 and fit.best_epoch == 1 and fit.history
    assert 0.0 <= ev.evaluate(model, "test").values[10]["Recall"] <= 1.0
