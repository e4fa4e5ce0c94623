import pytest
import torch
from torch.nn import functional as F

from external.models.mmgcf import MMGCF
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_views_agree, dense_graph, dense_layer_mean,
                           dense_sym_norm, model_factory, random_dataset, replaced_feature_grad, single_thread_fixture,
                           structured_dataset, train_steps, triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(MMGCF, seed_param=True, factors=8, factors_multimod=8, batch_size=64)


def _reference_loss(model, batch, ds):
    """MMRec MMGCF.forward(norm_adj) + calculate_loss, dense (dropout 0: the full normalised graph)."""
    nu = model.n_users
    out = dense_layer_mean(dense_sym_norm(dense_graph(ds.train), eps=1e-7), model.embeddings, model.n_ui_layers)
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
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})
    assert replaced_feature_grad(model, lambda: model.score_pairs(users[:5], items[:5])).abs().sum() > 0


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
    assert_deterministic_training(_model, ds, triplet_batch(ds), steps=3, seed=2)


def test_one_trainer_epoch():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)
