import pytest
import torch
from torch.nn import functional as F

from external.models.mmgcf import MMGCF
from tests.helpers import (assert_same_loss_and_grads, fit_through_trainer, random_dataset, scoring_views,
                           structured_dataset, train_steps, triplet_batch)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(ds, seed=0, **hp):
    params = {p.name: p.default for p in MMGCF.declared_params()}
    params.update({"factors": 8, "factors_multimod": 8, "batch_size": 64, "seed": seed}, **hp)
    torch.manual_seed(seed)
    return MMGCF(ds, params, torch.device("cpu"))


def _reference_loss(model, batch, ds):
    """MMRec MMGCF.forward(norm_adj) + calculate_loss, dense (dropout 0: the full normalised graph)."""
    nu, n = model.n_users, model.n_users + model.n_items
    r = torch.as_tensor((ds.train > 0).toarray(), dtype=torch.float32)
    a = torch.zeros(n, n)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    d = (a.sum(1) + 1e-7).pow(-0.5)
    adj = d.view(-1, 1) * a * d.view(1, -1)
    ego, layers = model.embeddings, [model.embeddings]
    for _ in range(model.n_ui_layers):
        ego = adj @ ego
        layers.append(ego)
    out = torch.stack(layers, 1).mean(1)
    users, items = out[:nu], out[nu:]
    feats = [lin(model.feature(m)) for m, lin in zip(model.modalities, model.proj)]
    mode, weighting = model.fusion_mode, model.weighting

    def fuse(ts, layer):
        return torch.stack(ts).mean(0) if mode == "mean" else torch.stack(ts).sum(0) if mode == "sum" else \
            layer(torch.cat(ts, -1))

    if weighting == "alpha":
        al = torch.sigmoid(model.alpha)
        items = fuse([items * al] + [f * (1 - al) for f in feats], getattr(model, "all_concat", None))
    elif weighting == "normalized":
        items = fuse([F.normalize(items) * len(feats)] + [F.normalize(f) for f in feats],
                     getattr(model, "all_concat", None))
    else:
        items = fuse([items, fuse(feats, getattr(model, "mm_concat", None))], getattr(model, "id_mm_concat", None))
    u, i, j = users[batch.users], items[batch.pos_items], items[batch.neg_items]
    mf = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
    e = model.embeddings
    reg = (e[batch.users].norm(2).pow(2) + e[nu + batch.pos_items].norm(2).pow(2)
           + e[nu + batch.neg_items].norm(2).pow(2)) / (2 * len(batch.users))
    return mf + model.l_w * reg


@pytest.mark.parametrize("hp", [{}, {"fusion_mode": "sum", "weighting": "alpha", "n_ui_layers": 2},
                                {"fusion_mode": "concat", "weighting": "equal", "factors_multimod": 5},
                                {"fusion_mode": "concat", "weighting": "normalized"}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, dropout=0.0, **hp)
    batch = triplet_batch(ds)
    model.on_epoch_start(0)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds), atol=1e-6)


@pytest.mark.parametrize("hp", [{}, {"fusion_mode": "concat", "weighting": "equal", "factors_multimod": 5},
                                {"fusion_mode": "sum", "weighting": "normalized"}])
def test_branches_sum_to_the_score(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    train_steps(model, triplet_batch(ds), steps=3)
    model.eval()
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached) and torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)
    assert set(model.modality_embeddings(users, items)) == {"id", "visual", "textual"}
    assert torch.allclose(sum(model.modality_scores(users, items).values()), pairs, atol=1e-5)
    stored = model.feature("visual").clone()
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users[:5], items[:5]).sum().backward()
    assert delta.grad.abs().sum() > 0


def test_pruning_is_seeded_and_degree_sensitive():
    ds = random_dataset()
    a, b = _model(ds, dropout=0.5), _model(ds, dropout=0.5)
    a.on_epoch_start(3)
    b.on_epoch_start(3)
    assert torch.equal(a._masked_adj.to_dense(), b._masked_adj.to_dense())
    b.on_epoch_start(4)
    assert not torch.equal(a._masked_adj.to_dense(), b._masked_adj.to_dense())
    kept = (a._masked_adj.to_dense()[: ds.n_users, ds.n_users:] > 0).sum()
    assert kept == int(ds.train.nnz * 0.5)
    batch = triplet_batch(ds)
    assert torch.equal(train_steps(_model(ds, seed=2), batch, 3), train_steps(_model(ds, seed=2), batch, 3))


def test_one_trainer_epoch():
    ds = structured_dataset()
    fit, test = fit_through_trainer(_model(ds, batch_size=128), ds, epochs=1, batch_size=128)
    assert fit.epochs_run == 1 and 0.0 <= test.values[10]["Recall"] <= 1.0
