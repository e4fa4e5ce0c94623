import pytest
import torch
from torch.nn import functional as F

from elliot.errors import ConfigError
from elliot.recommender.base import TripletBatch
from external.models.bm3 import BM3
from tests.helpers import (assert_deterministic_training, assert_fine_tuned_features, assert_same_loss_and_grads,
                           assert_views_agree,
                           model_factory, random_dataset, replaced_feature_grad, scores_with_replaced_feature,
                           single_thread_fixture, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(BM3, factors=8, factors_multimod=8, lr=0.01)


def _reference_loss(model, batch):
    """MMRec ``BM3.calculate_loss`` written out on the full tables (dropout 0: targets = detached online)."""
    ego = torch.cat([model.embeddings[: model.n_users], model.embeddings[model.n_users:]])
    layers = [ego]
    adj = model.adj.to_dense()
    for _ in range(model.n_layers):
        layers.append(adj @ layers[-1])
    mean = torch.stack(layers, 1).mean(1)
    u_ori, i_ori = mean[: model.n_users], mean[model.n_users:] + model.embeddings[model.n_users:]
    u_t, i_t = u_ori.detach(), i_ori.detach()
    u_on, i_on = model.predictor(u_ori)[batch.users], model.predictor(i_ori)[batch.pos_items]
    u_t, i_t = u_t[batch.users], i_t[batch.pos_items]
    cos = lambda a, b: 1 - F.cosine_similarity(a, b, dim=-1).mean()
    modal = 0.0
    for m, lin in zip(model.modalities, model.proj):
        feat = lin(model.feature(m))
        online = model.predictor(feat)[batch.pos_items]
        modal = modal + cos(online, i_t) + cos(online, feat.detach()[batch.pos_items])
    reg = (torch.norm(u_ori) + torch.norm(i_ori)) / i_ori.shape[0]
    return cos(u_on, i_t) + cos(i_on, u_t) + model.l_w * reg + model.cl_weight * modal


@pytest.mark.parametrize("n_layers", [1, 2])
def test_loss_matches_mmrec_formulation(n_layers):
    ds = random_dataset()
    model = _model(ds, dropout=0.0, n_layers=n_layers, l_w=0.5)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b), atol=1e-6)


def test_target_views_dropout():
    ds = random_dataset()
    model = _model(ds, dropout=0.5)
    x = torch.randn(2000, 8, requires_grad=True)
    t = model._target(x)
    assert not t.requires_grad
    kept = t != 0
    assert 0.45 < kept.float().mean() < 0.55
    assert torch.allclose(t[kept], 2 * x.detach()[kept])  # scaled by 1 / (1 - p) as F.dropout
    again = _model(ds, dropout=0.5)._target(x)
    assert torch.equal(t, again)  # the model's own generator, seeded by `seed`
    assert torch.equal(_model(ds, dropout=0.0)._target(x), x.detach())


def test_training_lowers_loss_and_ignores_negatives():
    ds = random_dataset()
    model = _model(ds)
    batch = triplet_batch(ds)
    model._gen.manual_seed(5)
    first = model.loss(batch)
    other = TripletBatch(users=batch.users, pos_items=batch.pos_items, neg_items=torch.flip(batch.neg_items, (0,)))
    model._gen.manual_seed(5)
    assert torch.equal(model.loss(other), first)  # the negatives are not used
    train_steps(model, batch, 30)
    model._gen.manual_seed(5)
    assert model.loss(batch).item() < first.item()
    assert model.proj[0].weight.grad.abs().sum() > 0 and model.predictor.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("fuse", [False, True])
def test_score_and_pairs_agree(fuse):
    ds = random_dataset()
    model = _model(ds, fuse_modalities=fuse)
    train_steps(model, triplet_batch(ds), steps=3)
    assert_views_agree(model, ds)


@pytest.mark.parametrize("fuse", [False, True])
def test_modality_embeddings(fuse):
    ds = random_dataset()
    model = _model(ds, fuse_modalities=fuse)
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    for eu, ei in emb.values():
        assert eu.shape == (10, 8) and ei.shape == (10, 8)
    scores = model.modality_scores(users, items)
    fused = model.score_pairs(users, items)
    if fuse:  # the fused score is exactly the sum of the branch scores
        assert torch.allclose(sum(scores.values()), fused, atol=1e-5)
    else:  # MMRec: the ID path alone is the score
        assert torch.allclose(scores["id"], fused, atol=1e-6)


def test_gradients_reach_replaced_features():
    ds = random_dataset()
    model = _model(ds)
    users, items = torch.arange(5), torch.arange(5)
    grad = replaced_feature_grad(model, lambda: model.modality_scores(users, items)["visual"])
    assert grad[:5].abs().sum() > 0 and grad[5:].abs().sum() == 0
    attacked, clean = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert torch.equal(attacked, clean)  # default: features never enter the score
    fused = _model(ds, fuse_modalities=True)
    changed, clean = scores_with_replaced_feature(fused, lambda: fused.score_pairs(users, items))
    assert not torch.allclose(changed, clean)


def test_deterministic_with_fixed_seed():
    ds = random_dataset()
    assert_deterministic_training(_model, ds, triplet_batch(ds), steps=5)


def test_one_modality_and_size_check():
    ds = random_dataset()
    model = _model(ds, modalities=["textual"])
    assert model.modalities == ["textual"] and len(model.proj) == 1
    assert torch.isfinite(model.loss(triplet_batch(ds)))
    with pytest.raises(ConfigError, match="factors must equal factors_multimod"):
        _model(ds, factors=8, factors_multimod=6)


def test_fork_spellings_parse():
    """The Formal-MultiMod-Rec BM3 block as written there."""
    from elliot.config.schema import Meta, ModelSpec
    from elliot.recommender.registry import resolve_model
    from elliot.search import plan_trials

    raw = {"lr": 0.0005, "factors": 64, "multimod_factors": 64, "reg_weight": [0.1, 0.01], "cl_weight": 2.0,
           "dropout": 0.3, "n_layers": 2, "lr_sched": "(1.0,50)", "modalities": "('visual','textual')",
           "loaders": "('VisualAttribute','TextualAttribute')", "epochs": 3, "batch_size": 512, "seed": 7}
    cls = resolve_model("external.BM3")
    assert cls is BM3 and resolve_model("BM3") is BM3
    plan = plan_trials(cls, ModelSpec("external.BM3", Meta(validation_metric="Recall@20"), params=raw),
                       where="experiment.models.external.BM3")
    configs = [c for _, c in plan.ask(10)]
    assert [c["l_w"] for c in configs] == [0.1, 0.01]
    c = configs[0]
    assert (c["factors_multimod"], c["cl_weight"], c["dropout"], c["n_layers"]) == (64, 2.0, 0.3, 2)
    assert c["lr_sched"] == [1.0, 50.0] and c["modalities"] == ["visual", "textual"]
    assert c["loaders"] == ["VisualAttribute", "TextualAttribute"] and c["lr"] == 0.0005
    with pytest.raises(ConfigError, match="dropout must be in"):
        plan_trials(cls, ModelSpec("external.BM3", Meta(validation_metric="Recall@20"), params={"dropout": 1.0}),
                    where="m")
    with pytest.raises(ConfigError, match="same parameter"):
        plan_trials(cls, ModelSpec("external.BM3", Meta(validation_metric="Recall@20"),
                                   params={"l_w": 0.1, "reg_weight": 0.1}), where="m")


def test_fine_tune_features_trains_the_tables_and_attacks_perturb_them():
    ds = random_dataset()
    assert_fine_tuned_features(_model(ds), _model(ds, fine_tune_features=True), triplet_batch(ds))


def test_fine_tune_features_is_refused_where_a_model_does_not_honour_it():
    from elliot.recommender.multimodal import MultimodalRecommender
    from external.models.vbpr import VBPR
    assert "fine_tune_features" in {p.name for p in BM3.declared_params()}
    assert not VBPR.fine_tunable_features and MultimodalRecommender.fine_tunable_features is False
    assert "fine_tune_features" not in {p.name for p in VBPR.declared_params()}
