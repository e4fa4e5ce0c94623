"""SGL: loss and gradients against the authors' formulation written out densely, augmentations, scoring."""
import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.registry import resolve_model
from elliot.recommender.sgl import SGL
from tests.helpers import (assert_deterministic_fit, assert_same_loss_and_grads, model_factory, random_dataset,
                           single_thread_fixture, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(SGL, factors=8, lr=0.01)


def _gcn(model, adjs):
    ego = model.embedding
    layers = [ego]
    for k in range(model.n_layers):
        layers.append(adjs[k] @ layers[-1])
    return torch.stack(layers, 1).mean(1)


def _reference_loss(model, batch, mode="both_side"):
    """SGL-Torch's ``train_model`` loss (sums over the batch), divided by the batch size."""
    K, nu = model.n_layers, model.n_users
    full = [model.adj.to_dense()] * K
    views = [[v.to_dense() for v in view] if isinstance(view, list) else [view.to_dense()] * K
             for view in model._views]
    main = _gcn(model, full)
    z1, z2 = (F.normalize(_gcn(model, v), dim=1) for v in views)
    u, i, j = main[batch.users], main[nu + batch.pos_items], main[nu + batch.neg_items]
    bpr = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).sum()
    u1, u2, i1, i2 = z1[batch.users], z2[batch.users], z1[nu + batch.pos_items], z2[nu + batch.pos_items]
    logits_u = u1 @ z2[:nu].T - (u1 * u2).sum(1, keepdim=True)
    logits_i = i1 @ z2[nu:].T - (i1 * i2).sum(1, keepdim=True)
    cl_u = torch.logsumexp(logits_u / model.ssl_temp, dim=1)
    cl_i = torch.logsumexp(logits_i / model.ssl_temp, dim=1)
    infonce = {"both_side": cl_u + cl_i, "user_side": cl_u, "item_side": cl_i}[mode].sum()
    ego = model.embedding
    reg = sum(0.5 * (e ** 2).sum() for e in (ego[batch.users], ego[nu + batch.pos_items], ego[nu + batch.neg_items]))
    return (bpr + model.ssl_reg * infonce + model.l_w * reg) / len(batch.users)


@pytest.mark.parametrize("aug,mode", [("ed", "both_side"), ("nd", "user_side"), ("rw", "item_side")])
def test_loss_matches_authors_formulation(aug, mode):
    ds = random_dataset()
    model = _model(ds, aug_type=aug, ssl_mode=mode, n_layers=2, l_w=0.1, ssl_ratio=0.3)
    model.on_epoch_start(0)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, mode), atol=1e-6)


def test_augmentations():
    ds = random_dataset(n_users=60, n_items=50, density=0.3)
    nu, E = ds.n_users, ds.train.nnz

    def edges(op):
        return int((op.to_dense()[:nu, nu:] > 0).sum())

    ed = _model(ds, aug_type="ed", ssl_ratio=0.2)
    ed.on_epoch_start(0)
    v1, v2 = ed._views
    assert edges(v1) == edges(v2) == int(E * 0.8) and not torch.equal(v1.to_dense(), v2.to_dense())
    binary = v1.to_dense().ne(0).float()  # re-normalised with the sub-graph's own degrees
    d = binary.sum(1).clamp(min=1).pow(-0.5)
    torch.testing.assert_close(v1.to_dense(), d[:, None] * binary * d[None, :])
    again = _model(ds, aug_type="ed", ssl_ratio=0.2)
    again.on_epoch_start(0)
    assert torch.equal(again._views[0].to_dense(), v1.to_dense())  # seeded by (seed, epoch)
    ed.on_epoch_start(1)
    assert not torch.equal(ed._views[0].to_dense(), v1.to_dense())

    nd = _model(ds, aug_type="nd", ssl_ratio=0.2)
    nd.on_epoch_start(0)
    dense = nd._views[0].to_dense()
    isolated_users = (dense[:nu].ne(0).sum(1) == 0).sum()
    assert isolated_users >= int(nu * 0.2)  # the dropped users (and any left without edges)
    rw = _model(ds, aug_type="RW", n_layers=3)
    rw.on_epoch_start(0)
    assert rw.aug == "rw" and all(len(v) == 3 for v in rw._views)
    assert not torch.equal(rw._views[0][0].to_dense(), rw._views[0][1].to_dense())


def test_scores_and_determinism_through_the_trainer():
    ds = random_dataset()
    a, b = assert_deterministic_fit(_model, ds, epochs=2)
    users = torch.arange(ds.n_users)
    with torch.no_grad():
        full = a.score(users)
        z = _gcn(a, [a.adj.to_dense()] * a.n_layers)
        assert full.shape == (ds.n_users, ds.n_items) and torch.isfinite(full).all()
        torch.testing.assert_close(full, z[: ds.n_users] @ z[ds.n_users:].T, rtol=1e-5, atol=1e-6)
        assert torch.equal(full, b.score(users))


def test_registry_and_fork_names():
    assert resolve_model("SGL") is SGL and resolve_model("external.SGL") is SGL
    from elliot.config import coerce_params

    raw = {"factors": 64, "lr": [0.0001, 0.0005], "l_w": [1e-5, 1e-2], "n_layers": 3, "ssl_temp": 0.2,
           "ssl_reg": 0.1, "ssl_ratio": 0.1, "sampling": "ed", "seed": 123}  # Formal-MultiMod-Rec's block
    space = coerce_params(SGL.declared_params(), raw, "m")
    assert space.fixed["aug_type"] == "ed" and space.axes["l_w"] == [1e-5, 1e-2]
