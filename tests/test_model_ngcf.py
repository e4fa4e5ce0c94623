import pytest
import torch
import yaml
from torch.nn import functional as F

from elliot.config.schema import Meta, ModelSpec
from elliot.errors import ConfigError
from elliot.recommender.graph import symmetric_normalize, user_item_adjacency
from elliot.recommender.ngcf import NGCF
from elliot.recommender.registry import resolve_model
from elliot.search import plan_trials
from tests.helpers import (assert_same_loss_and_grads, model_factory, random_dataset, single_thread_fixture,
                           train_steps, triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(NGCF, factors=8, weight_size=[8, 6], lr=0.01, l_w=1e-3)


def _reference_loss(model, train, batch):
    """The authors' ``_create_ngcf_embed`` + ``create_bpr_loss`` (one activation over both messages, as the
    paper) on a dense propagation matrix, without dropout."""
    a = torch.as_tensor(user_item_adjacency(train).toarray())
    if model.adj_type == "laplacian":
        adj = torch.as_tensor(symmetric_normalize(a.numpy()).toarray())
    else:
        a = a + torch.eye(a.shape[0])
        adj = a / a.sum(1, keepdim=True)
    ego, blocks = model.embedding, [model.embedding]
    for lin1, lin2 in zip(model.w1, model.w2):
        side = adj @ ego
        first = side + ego if model.adj_type == "laplacian" else side
        ego = F.leaky_relu(first @ lin1.weight.T + lin1.bias + (side * ego) @ lin2.weight.T + lin2.bias, 0.2)
        blocks.append(F.normalize(ego, dim=1))
    final = torch.cat(blocks, 1) if model.readout == "concat" else torch.stack(blocks).mean(0)
    u, i, j = final[batch.users], final[model.n_users + batch.pos_items], final[model.n_users + batch.neg_items]
    mf = -torch.log(torch.sigmoid((u * i).sum(1) - (u * j).sum(1))).mean()
    return mf + model.l_w * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / 2 / len(batch.users)


@pytest.mark.parametrize("hp", [{}, {"adj_type": "laplacian"}, {"readout": "mean", "weight_size": [8], "n_layers": 2}])
def test_loss_matches_the_authors_formulation(hp):
    ds = random_dataset()
    model = _model(ds, message_dropout=[0.0], **hp)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, ds.train, b), atol=1e-6)


def test_propagation_matrices():
    ds = random_dataset()
    n = ds.n_users + ds.n_items
    norm = _model(ds).adj.to_dense()
    assert torch.allclose(norm.sum(1), torch.ones(n), atol=1e-5) and (norm.diagonal() > 0).all()  # D^-1(A+I)
    lap = _model(ds, adj_type="laplacian").adj.to_dense()
    assert torch.allclose(lap, lap.T) and (lap.diagonal() == 0).all()


def test_message_dropout_only_in_training_and_seeded():
    ds = random_dataset()
    model = _model(ds, message_dropout=[0.5])
    with torch.no_grad():
        a, b = model.final_embeddings(), model.final_embeddings()
        assert all(torch.equal(x, y) for x, y in zip(a, b))  # scoring: no dropout
        t1, t2 = model.propagate(training=True), model.propagate(training=True)
    assert not torch.equal(t1[0], t2[0])
    blocks = t1[0][:, 8:16]  # layer 1 of the concatenation: half its entries dropped
    assert 0.4 < (blocks == 0).float().mean() < 0.6
    other = _model(ds, message_dropout=[0.5])
    with torch.no_grad():
        assert torch.equal(other.propagate(training=True)[0], t1[0])  # the model's generator, seeded by `seed`
    with pytest.raises(ConfigError, match="message_dropout has 3 values for 2 layers"):
        _model(ds, message_dropout=[0.1, 0.1, 0.1])


def test_node_dropout_per_epoch():
    ds = random_dataset()
    model = _model(ds, node_dropout=[0.5])
    full = model.adj.to_dense()
    model.on_epoch_start(0)
    a0 = model._train_adj.to_dense()
    model.on_epoch_start(0)
    assert torch.equal(a0, model._train_adj.to_dense())  # seeded by (seed, epoch)
    model.on_epoch_start(1)
    assert not torch.equal(a0, model._train_adj.to_dense())
    kept = a0 != 0
    assert 0.4 < kept.sum() / (full != 0).sum() < 0.6
    assert torch.allclose(a0[kept], 2 * full[kept])  # kept entries scaled by 1 / (1 - p)
    model_none = _model(ds)
    model_none.on_epoch_start(0)
    assert model_none._train_adj is model_none.adj
    with pytest.raises(ConfigError, match="one dropout rate"):
        _model(ds, node_dropout=[0.1, 0.2])


def test_training_lowers_loss_and_scores_are_inner_products():
    ds = random_dataset()
    model = _model(ds, node_dropout=[0.1])
    batch = triplet_batch(ds)
    with torch.no_grad():
        model.on_epoch_start(0)
        first = model.loss(batch).item()
    train_steps(model, batch, 30)
    with torch.no_grad():
        model.on_epoch_start(0)
        assert model.loss(batch).item() < first
        users = torch.arange(ds.n_users)
        full = model.score(users)
        model.prepare_scoring()
        cached = model.score(users)
        model.end_scoring()
        eu, ei = model.final_embeddings()
    assert full.shape == (ds.n_users, ds.n_items) and torch.equal(full, cached)
    assert eu.shape[1] == 8 + 8 + 6 and torch.allclose(full, eu @ ei.T)
    assert all(p.grad is not None for p in model.parameters())


def test_deterministic_with_fixed_seed():
    ds = random_dataset()
    batch = triplet_batch(ds)
    a, b = _model(ds, seed=3, node_dropout=[0.2]), _model(ds, seed=3, node_dropout=[0.2])
    assert torch.equal(train_steps(a, batch, 5), train_steps(b, batch, 5))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def _plan(raw):
    cls = resolve_model("NGCF")
    plan = plan_trials(cls, ModelSpec("NGCF", Meta(validation_metric="Recall@20"), params=raw), where="m")
    return [c for _, c in plan.ask(10)]


def test_elliot_and_fork_spellings():
    assert resolve_model("NGCF") is NGCF and resolve_model("external.NGCF") is NGCF
    ds = random_dataset()
    # Elliot 0.3.1's documented block
    elliot = _plan({"lr": 0.0005, "epochs": 2, "batch_size": 256, "factors": 8, "l_w": 0.1, "weight_size": "(8,)",
                    "node_dropout": "()", "message_dropout": "(0.1,)", "n_fold": 5})[0]
    assert (elliot["weight_size"], elliot["node_dropout"], elliot["message_dropout"]) == ([8], [], [0.1])
    model = NGCF(ds, elliot, torch.device("cpu"))
    assert model.widths == [8] and model.mess_rates == [0.1] and model.node_rate == 0.0
    # the forks' external.NGCF block: one width, n_layers, float dropouts; a grid over tuples
    fork = _plan({"factors": 8, "weight_size": 8, "n_layers": 3, "message_dropout": 0.5, "node_dropout": 0.0,
                  "normalize": True, "l_w": [0.01, 0.001]})
    assert [c["l_w"] for c in fork] == [0.01, 0.001]
    model = NGCF(ds, fork[0], torch.device("cpu"))
    assert model.widths == [8, 8, 8] and model.mess_rates == [0.5] * 3
    grid = _plan(yaml.safe_load("{factors: 8, ws: [(8,8),(8,4)]}"))  # YAML splits the tuples; they are re-joined
    assert [c["weight_size"] for c in grid] == [[8, 8], [8, 4]]
    with pytest.raises(ConfigError, match="must be in"):
        _plan({"message_dropout": 1.0})
    with pytest.raises(ConfigError, match="has 2 layers but n_layers is 3"):
        NGCF(ds, _plan({"factors": 8, "weight_size": "(8,8)", "n_layers": 3})[0], torch.device("cpu"))
