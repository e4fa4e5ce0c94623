import pytest
import torch
from torch.nn import functional as F

from external.models.mvgae import MVGAE
from external.models.mvgae.mvgae import product_of_experts
from tests.helpers import (assert_deterministic_training, assert_one_trainer_epoch, assert_same_loss_and_grads,
                           assert_views_agree, dense_graph, model_factory, random_dataset, replaced_feature_grad,
                           single_thread_fixture, structured_dataset, train_steps, triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(MVGAE, seed_param=True, factors=8, dim_latent=6, collab_dim=5, batch_size=64)


def _reference_loss(model, batch, ds):
    """The code's GCN / ProductOfExperts / recon_loss / kl_loss, dense, in eval mode (no dropout, z = μ)."""
    a = dense_graph(ds.train, self_loops=True)
    adj = a / a.sum(1, keepdim=True)

    def conv(c, x):
        return F.normalize(adj @ (x @ c.weight) + c.bias, p=2, dim=-1)

    def gcn(enc, pref, feats):
        x = F.normalize(torch.cat([pref, enc.mlp(feats)]))
        for c, g in zip(enc.convs, enc.gates):
            x = F.leaky_relu(g(F.leaky_relu(conv(c, x))))
        mu = enc.g_mu(F.leaky_relu(conv(enc.conv_mu, x))) + F.leaky_relu(enc.lin_mu(x))
        lv = enc.g_lv(F.leaky_relu(conv(enc.conv_lv, x))) + F.leaky_relu(enc.lin_lv(x))
        return mu, lv

    def poe(mu, lv):
        t = 1.0 / (torch.exp(lv) + 1e-8)
        return (mu * t).sum(0) / t.sum(0), torch.log(1.0 / t.sum(0))

    inputs = [model.feature(m) for m in model.modalities] + [model.collaborative]
    outs = [gcn(e, p, f) for e, p, f in zip(model.encoders, model.preference, inputs)]
    mu, lv = poe(torch.stack([o[0] for o in outs[:-1]]), torch.stack([o[1] for o in outs[:-1]]))
    mu, lv = poe(torch.stack([mu, outs[-1][0]]), torch.stack([lv, outs[-1][1]]))
    nu = model.n_users

    def recon(z):
        z = torch.sigmoid(z)
        pos = (z[batch.users] * z[batch.pos_items + nu]).sum(1)
        neg = torch.sum(z[batch.users.view(-1, 1).repeat(1, len(batch.neg_items))] * z[batch.neg_items + nu], -1)
        return -torch.sum(torch.log2(torch.sigmoid(pos - neg.max(-1).values)))

    def kl(m, v):
        v = v.clamp(max=10)
        return -0.5 * torch.mean(torch.sum(1 + v - m ** 2 - v.exp(), dim=1))

    loss = recon(mu) + model.beta * kl(mu, lv)
    for m, v in outs:
        loss = loss + recon(m) + model.beta * kl(m, v)
    return loss


def _eval_loss(model, batch):
    """The model's loss without dropout and noise (eval mode, z = μ), to compare with the reference."""
    model.eval()
    try:
        reparam = model._reparam
        model._reparam = lambda mu, lv: mu
        return model.loss(batch)
    finally:
        model._reparam = reparam
        model.train()


@pytest.mark.parametrize("hp", [{}, {"n_layers": 2, "beta": 0.1}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    batch = triplet_batch(ds)
    model.eval()
    assert_same_loss_and_grads(model, batch, lambda b: _eval_loss(model, b),
                               lambda b: _reference_loss(model, b, ds), atol=1e-5)


def test_product_of_experts_and_training_noise():
    mu, lv = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    pm, plv = product_of_experts(mu, lv)
    prec = 1 / (lv.exp() + 1e-8)
    assert torch.allclose(plv.exp(), 1 / prec.sum(0)) and torch.allclose(pm, (mu * prec).sum(0) / prec.sum(0))
    ds = random_dataset()
    model = _model(ds)
    batch = triplet_batch(ds)
    first = model.loss(batch).item()
    assert first != model.loss(batch).item()  # dropout + reparameterisation noise in training
    train_steps(model, batch, 15)
    assert model.loss(batch).item() < first
    assert model.encoders[0].mlp.weight.grad.abs().sum() > 0
    assert not model.preference.requires_grad  # fixed random user inputs, as the code


def test_hooks_and_features():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=2)
    model.eval()
    users, items, _, _ = assert_views_agree(model, ds)
    assert set(model.modality_embeddings(users, items)) == {"visual", "textual", "id"}
    assert replaced_feature_grad(model, lambda: model.score_pairs(users[:5], items[:5])).abs().sum() > 0


def test_determinism_and_one_trainer_epoch():
    ds = random_dataset()
    assert_deterministic_training(_model, ds, triplet_batch(ds), steps=3, seed=4)
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)
