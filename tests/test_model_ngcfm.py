import pytest
import torch
from torch.nn import functional as F

from external.models.ngcfm import NGCFM
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree, dense_graph,
                           model_factory, random_dataset, replaced_feature_grad, single_thread_fixture,
                           structured_dataset, train_steps, triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(NGCFM, factors=8, lr=0.01, batch_size=64)


def _reference_loss(model, batch, ds):
    """The fork's ``NGCFMModel.train_step`` (message dropout 0) with a dense D^-1 (A + I)."""
    nu = model.n_users
    a = dense_graph(ds.train, self_loops=True)
    adj = a / a.sum(1, keepdim=True)
    layers = [model.embedding]
    for lin1, lin2 in zip(model.w1, model.w2):
        x = layers[-1]
        side = adj @ x
        out = F.leaky_relu(side @ lin1.weight.T + lin1.bias + (side * x) @ lin2.weight.T + lin2.bias, 0.2)
        layers.append(F.normalize(out, p=2, dim=1))
    final = torch.stack(layers, 1).mean(1)
    gu, gi = final[:nu], final[nu:]
    feats = torch.cat([model.feature(m) for m in model.modalities], 1)

    def forward(users, items):
        theta = model.theta[users]
        proj = F.normalize(model.proj(feats[items]), p=2, dim=1)
        return (gu[users] * gi[items]).sum(1) + (theta * proj).sum(1), gu[users], gi[items], theta, proj

    xp, g_u, g_ip, theta, p_ip = forward(batch.users, batch.pos_items)
    xn, _, g_in, _, p_in = forward(batch.users, batch.neg_items)
    loss = F.softplus(-torch.clamp(xp - xn, -80.0, 1e8)).mean()
    reg = model.l_w * 0.5 * (g_u.norm(2).pow(2) + g_ip.norm(2).pow(2) + g_in.norm(2).pow(2) + theta.norm(2).pow(2)
                             + p_ip.norm(2).pow(2) + p_in.norm(2).pow(2)) / len(batch.users)
    return loss + reg


def test_fork_defaults_and_names():
    params = {p.name: p.default for p in NGCFM.declared_params()}
    assert (params["lr"], params["l_w"], params["n_layers"], params["weight_size"], params["message_dropout"],
            params["readout"]) == (5e-4, 0.01, 3, [], [0.5], "mean")
    model = _model(random_dataset(), n_layers=3)
    assert model.widths == [8, 8, 8] and model.feed_normalized


@pytest.mark.parametrize("hp", [{}, {"n_layers": 1, "l_w": 0.5}])
def test_loss_and_gradients_match_the_fork(hp):
    ds = random_dataset()
    model = _model(ds, message_dropout=[0.0], **hp)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds), atol=1e-6)


def test_training_lowers_loss_and_trains_every_part():
    ds = random_dataset()
    model = _model(ds)
    assert_training_lowers_loss(model, triplet_batch(ds), 25)
    assert model.proj.weight.grad.abs().sum() > 0 and model.theta.grad.abs().sum() > 0
    assert model.w1[0].weight.grad.abs().sum() > 0


def test_scores_hooks_and_features():
    ds = random_dataset()
    model = _model(ds, node_dropout=[0.2])
    train_steps(model, triplet_batch(ds), steps=3)
    model.eval()
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})
    assert replaced_feature_grad(model, lambda: model.score_pairs(users[:5], items[:5])).abs().sum() > 0


def test_deterministic_and_one_modality():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(_model, ds, batch, steps=4)
    one = _model(ds, modalities=["textual"])
    assert one.proj.in_features == 6 and torch.isfinite(one.loss(batch))


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)
