import pytest
import torch
from torch.nn import functional as F

from external.models.ngcfm import NGCFM
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
    params = {p.name: p.default for p in NGCFM.declared_params()}
    params.update({"factors": 8, "lr": 0.01, "batch_size": 64}, **hp)
    torch.manual_seed(seed)
    return NGCFM(ds, params, torch.device("cpu"))


def _reference_loss(model, batch, ds):
    """The fork's ``NGCFMModel.train_step`` (message dropout 0) with a dense D^-1 (A + I)."""
    nu = model.n_users
    r = torch.as_tensor(ds.train.toarray())
    a = torch.zeros(nu + model.n_items, nu + model.n_items)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    a = a + torch.eye(len(a))
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
    batch = triplet_batch(ds)
    first = model.loss(batch).item()
    train_steps(model, batch, 25)
    assert model.loss(batch).item() < first
    assert model.proj.weight.grad.abs().sum() > 0 and model.theta.grad.abs().sum() > 0
    assert model.w1[0].weight.grad.abs().sum() > 0


def test_scores_hooks_and_features():
    ds = random_dataset()
    model = _model(ds, node_dropout=[0.2])
    train_steps(model, triplet_batch(ds), steps=3)
    model.eval()
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    assert torch.allclose(sum(model.modality_scores(users, items).values()), pairs, atol=1e-5)
    stored = model.feature("visual").clone()
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users[:5], items[:5]).sum().backward()
    assert delta.grad.abs().sum() > 0


def test_deterministic_and_one_modality():
    ds = random_dataset()
    batch = triplet_batch(ds)
    a, b = _model(ds, seed=3), _model(ds, seed=3)
    assert torch.equal(train_steps(a, batch, 4), train_steps(b, batch, 4))
    with torch.no_grad():
        assert torch.equal(a.score(torch.arange(5)), b.score(torch.arange(5)))
    one = _model(ds, modalities=["textual"])
    assert one.proj.in_features == 6 and torch.isfinite(one.loss(batch))


def test_one_epoch_through_the_trainer():
    fit, test = fit_through_trainer(_model(structured_dataset(), batch_size=128), structured_dataset(),
                                    batch_size=128)
    assert fit.epochs_run == 1 and 0.0 <= test.values[10]["Recall"] <= 1.0
