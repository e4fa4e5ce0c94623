"""SelfCF (MMRec's SELFCFED_LGN): loss against MMRec's formulation, views, scoring, determinism."""
import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.base import TripletBatch
from elliot.recommender.graph import EntryDropout, entry_dropout
from elliot.recommender.sparse import SparseOp
from elliot.recommender.registry import resolve_model
from elliot.recommender.selfcf import SelfCF
from tests.helpers import (assert_deterministic_fit, assert_same_loss_and_grads, model_factory, random_dataset,
                           single_thread_fixture, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(SelfCF, factors=8, lr=0.01)


def _reference_loss(model, batch):
    """MMRec ``SELFCFED_LGN.calculate_loss`` with no edge / embedding dropout (targets = online rows)."""
    adj = model.adj.to_dense()
    layers = [model.embedding]
    for _ in range(model.n_layers):
        layers.append(adj @ layers[-1])
    mean = torch.stack(layers, 1).mean(1)
    u, i = mean[batch.users], mean[model.n_users + batch.pos_items]
    u_t, i_t = u.clone().detach(), i.clone().detach()
    reg = (u ** 2).sum() * 0.5 + (i ** 2).sum() * 0.5
    pu, pi = model.predictor(u), model.predictor(i)
    loss_fn = lambda p, z: -F.cosine_similarity(p, z.detach(), dim=-1).mean()  # noqa: E731
    return loss_fn(pu, i_t) / 2 + loss_fn(pi, u_t) / 2 + model.l_w * reg


@pytest.mark.parametrize("n_layers", [1, 2])
def test_loss_matches_mmrec_formulation(n_layers):
    ds = random_dataset()
    model = _model(ds, n_layers=n_layers, dropout=0.0, drop_ratio=0.0, l_w=0.01)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b), atol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_entry_dropout_builds_the_coalesced_matrices_bit_for_bit(rate):
    ds = random_dataset(n_users=60, n_items=50, density=0.3)
    coo = _model(ds)._adj_coo
    index, values = coo.indices(), coo.values()
    keep = torch.rand(values.shape[0], generator=torch.Generator().manual_seed(5)) >= rate
    reference = SparseOp(torch.sparse_coo_tensor(index[:, keep], values[keep] / (1.0 - rate), coo.shape).coalesce())
    fast = EntryDropout(coo)(rate, torch.Generator().manual_seed(5))
    for name in ("csr", "csr_t"):
        a, b = getattr(reference, name), getattr(fast, name)
        for part in ("crow_indices", "col_indices", "values"):
            assert torch.equal(getattr(a, part)(), getattr(b, part)()), (name, part)
    x = torch.randn(coo.shape[0], 4, requires_grad=True)
    (fast @ x).pow(2).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    (reference @ x).pow(2).sum().backward()
    assert torch.equal(grad, x.grad)


def test_edge_dropout_of_entries_and_target_dropout():
    ds = random_dataset(n_users=60, n_items=50, density=0.3)
    model = _model(ds, dropout=0.5)
    coo = model._adj_coo
    dropped = entry_dropout(coo, 0.4, torch.Generator().manual_seed(0)).to_dense()
    dense = coo.to_dense()
    kept = dropped != 0
    assert 0.5 < kept.sum() / (dense != 0).sum() < 0.7
    torch.testing.assert_close(dropped[kept], dense[kept] / 0.6)
    assert not torch.equal(kept, kept.T)  # u->i and i->u entries are drawn independently
    graphs = [model._training_graph() for _ in range(3)]  # a fresh rate and mask every step
    assert len({int((g.to_dense() != 0).sum()) for g in graphs}) == 3
    x = torch.randn(2000, 8)
    t = model._target(x)
    assert 0.45 < (t != 0).float().mean() < 0.55 and torch.allclose(t[t != 0], 2 * x[t != 0])


def test_negatives_ignored_and_training_lowers_loss():
    ds = random_dataset()
    model = _model(ds, l_w=1e-3)
    batch = triplet_batch(ds)
    other = TripletBatch(users=batch.users, pos_items=batch.pos_items, neg_items=torch.flip(batch.neg_items, (0,)))
    state = (model._graph_gen.get_state(), model._gen.get_state())
    first = model.loss(batch)
    model._graph_gen.set_state(state[0])
    model._gen.set_state(state[1])
    assert torch.equal(model.loss(other), first)
    train_steps(model, batch, 30)
    model._graph_gen.set_state(state[0])
    model._gen.set_state(state[1])
    assert model.loss(batch).item() < first.item()


def test_score_is_the_two_sided_predictor_score():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), 3)
    users = torch.arange(ds.n_users)
    with torch.no_grad():
        hu, hi = model._encode(model.adj)
        expected = model.predictor(hu) @ hi.T + hu @ model.predictor(hi).T
        full = model.score(users)
        assert full.shape == (ds.n_users, ds.n_items) and torch.isfinite(full).all()
        torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-6)
        model.prepare_scoring()
        assert torch.equal(model.score(users), full)
        model.end_scoring()


def test_deterministic_and_one_trainer_epoch():
    ds = random_dataset()
    assert_deterministic_fit(_model, ds, epochs=2)


def test_registry_and_mmrec_names():
    assert resolve_model("SelfCF") is SelfCF and resolve_model("SELFCFED_LGN") is SelfCF
    from elliot.config import coerce_params

    space = coerce_params(SelfCF.declared_params(), {"embedding_size": 16, "reg_weight": [0.1, 0.0]}, "m")
    assert space.fixed["factors"] == 16 and space.axes["l_w"] == [0.1, 0.0]
