import pytest
import torch
from torch.nn import functional as F

from elliot.errors import ConfigError
from external.models.lgmrec import LGMRec
from external.models.lgmrec.lgmrec import hyper_nce
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree,
                           model_factory, random_dataset, replaced_feature_grad, scores_with_replaced_feature,
                           single_thread_fixture, structured_dataset, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(LGMRec, factors=8, factors_multimod=8, lr=0.01)


def _reference_loss(model, batch, ds):
    """MMRec ``LGMRec.forward`` + ``calculate_loss`` written out densely (two modalities, ``lightgcn``); the
    Gumbel/dropout draws are the model's own ``_assign`` in the code's order."""
    nu, tau = model.n_users, 0.2
    r = torch.as_tensor(ds.train.toarray())
    a = torch.zeros(nu + model.n_items, nu + model.n_items)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    d = (a.sum(1) + 1e-7).pow(-0.5)
    norm = d.view(-1, 1) * a * d.view(1, -1)
    num_inters = 1.0 / (a.sum(1, keepdim=True) + 1e-7)
    ego = model.embeddings
    layers = [ego]
    for _ in range(model.n_ui_layers):
        layers.append(norm @ layers[-1])
    cge = torch.stack(layers, 1).mean(1)
    hyper, mge = [], []
    for m, w, v in zip(model.modalities, model.trs, model.hyper):
        x = model.feature(m)
        item_feats = x @ w
        feats = torch.cat([(r @ item_feats) * num_inters[:nu], item_feats])
        for _ in range(model.n_mm_layers):
            feats = norm @ feats
        mge.append(feats)
        i_hyper = x @ v
        u_hyper = r @ i_hyper
        i_hyper, u_hyper = model._assign(i_hyper), model._assign(u_hyper)
        i_ret = cge[nu:]
        for _ in range(model.n_hyper_layer):
            lat = i_hyper.T @ i_ret
            i_ret = i_hyper @ lat
            u_ret = u_hyper @ lat
        hyper.append((u_ret, i_ret))
    lge = cge + F.normalize(mge[0]) + F.normalize(mge[1])
    ghe = torch.cat(hyper[0]) + torch.cat(hyper[1])
    final = lge + model.alpha * F.normalize(ghe)
    u, i, j = final[batch.users], final[nu + batch.pos_items], final[nu + batch.neg_items]
    bpr = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()

    def ssl(e1, e2, all_e):
        e1, e2, all_e = F.normalize(e1), F.normalize(e2), F.normalize(all_e)
        pos = torch.exp((e1 * e2).sum(1) / tau)
        ttl = torch.exp(e1 @ all_e.T / tau).sum(1)
        return -torch.log(pos / ttl).sum()

    (uv, iv), (ut, it) = hyper
    hcl = ssl(uv[batch.users], ut[batch.users], ut) + ssl(iv[batch.pos_items], it[batch.pos_items], it)
    reg = (u.norm() + i.norm() + j.norm()) / j.shape[0]
    return bpr + model.cl_weight * hcl + model.l_w * reg


def test_low_rank_contrastive_term_equals_dense():
    a1, l1, a2, l2 = torch.rand(6, 3), torch.randn(3, 5), torch.rand(9, 3), torch.randn(3, 5)
    idx = torch.tensor([0, 4, 4, 8, 1, 2])
    g1, g2 = F.normalize(a1 @ l1), F.normalize(a2 @ l2)
    dense = -torch.log(torch.exp((g1 * g2[idx]).sum(1) / 0.2) / torch.exp(g1 @ g2.T / 0.2).sum(1)).sum()
    assert torch.allclose(hyper_nce(a1, l1, a2, l2, idx, 0.2), dense, atol=1e-5)
    assert torch.allclose(hyper_nce(a1 @ l1, None, a2 @ l2, None, idx, 0.2), dense, atol=1e-5)


@pytest.mark.parametrize("hp", [{"cl_weight": 0.05, "l_w": 0.01},
                                {"n_hyper_layer": 2, "hyper_num": 16, "cl_weight": 0.05, "l_w": 0.01,
                                 "n_mm_layers": 1}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    model.train()
    batch = triplet_batch(ds)

    def seeded(fn):
        return lambda b: (model._gen.manual_seed(5), fn(b))[1]

    assert_same_loss_and_grads(model, batch, seeded(model.loss), seeded(lambda b: _reference_loss(model, b, ds)),
                               atol=1e-5)


def test_assignments_noisy_in_training_deterministic_at_evaluation():
    ds = random_dataset()
    model = _model(ds)
    logits = torch.randn(50, 4)
    model.train()
    h = model._assign(logits)
    assert not torch.allclose(h, model._assign(logits))  # fresh Gumbel noise and dropout per draw
    kept = h != 0
    assert 0.3 < kept.float().mean() < 0.7  # keep_rate 0.5
    assert torch.allclose(h.sum(1)[kept.all(1)], torch.full((int(kept.all(1).sum()),), 2.0))  # 1 / keep_rate
    model.eval()
    assert torch.equal(model._assign(logits), torch.softmax(logits / 0.2, 1))


def test_training_lowers_loss_and_trains_every_part():
    ds = random_dataset()
    model = _model(ds, cl_weight=0.01)
    assert_training_lowers_loss(model, triplet_batch(ds), 25, reset=lambda: model._gen.manual_seed(1))
    assert all(p.grad.abs().sum() > 0 for p in list(model.trs) + list(model.hyper))


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=3)
    model.eval()
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})


def test_replaced_features_reach_the_score():
    ds = random_dataset()
    model = _model(ds)
    model.eval()
    users, items = torch.arange(5), torch.arange(5)
    assert replaced_feature_grad(model, lambda: model.modality_scores(users, items)["visual"]).abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert not torch.allclose(attacked, clean)


def test_deterministic_with_fixed_seed_one_modality_and_mf():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(_model, ds, batch, steps=4, eval_mode=True)
    one = _model(ds, modalities=["textual"], cf="mf")
    assert torch.isfinite(one.loss(batch))
    assert set(one.modality_embeddings(torch.arange(3), torch.arange(3))) == {"id", "textual"}
    with pytest.raises(ConfigError, match="factors must equal factors_multimod"):
        _model(ds, factors=8, factors_multimod=6)


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds), ds, batch_size=128)
