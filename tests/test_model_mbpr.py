"""MBPR (the Elliot forks' multimodal BPR-MF): loss against the fork's train_step, hooks, trainer, names."""
import pytest
import torch

from elliot.recommender.registry import resolve_model
from external.models.mbpr import MBPR
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_fit, assert_same_loss_and_grads,
                           assert_views_agree, model_factory, random_dataset, replaced_feature_grad,
                           scores_with_replaced_feature, single_thread_fixture, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(MBPR, factors=8, lr=0.01)


def _fork_loss(model, batch):
    """Multimodal-RSs-Reproducibility ``MBPRModel.train_step`` (the loss part)."""
    feats = torch.cat([model.feature(m) for m in model.modalities], -1)
    gu, gi = model.user_emb, torch.cat((model.item_emb, model.proj(feats)), -1)
    user_e, pos_e, neg_e = gu[batch.users], gi[batch.pos_items], gi[batch.neg_items]
    pos, neg = (user_e * pos_e).sum(1), (user_e * neg_e).sum(1)
    loss = -torch.log(1e-10 + torch.sigmoid(pos - neg)).mean()
    reg = model.l_w * (torch.norm(user_e, 2) + torch.norm(pos_e, 2) + torch.norm(neg_e, 2)) / len(batch.users)
    return loss + reg


def test_loss_matches_the_fork():
    ds = random_dataset()
    model = _model(ds, l_w=0.3)
    assert_same_loss_and_grads(model, triplet_batch(ds), model.loss, lambda b: _fork_loss(model, b), atol=1e-6)


def test_branches_sum_to_the_score_and_views_agree():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), 3)
    users, items, _, pairs = assert_views_agree(model, ds, atol=1e-6, exact_cache=True)
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})


def test_feature_attacks_reach_the_score():
    ds = random_dataset()
    model = _model(ds)
    users, items = torch.arange(6), torch.arange(6)
    grad = replaced_feature_grad(model, lambda: model.modality_scores(users, items)["visual"])
    assert grad[:6].abs().sum() > 0 and grad[6:].abs().sum() == 0
    attacked, clean = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert not torch.allclose(attacked, clean)


def test_schedule_trainer_and_determinism():
    ds = random_dataset()
    model = _model(ds)
    assert model.lr_multiplier(50) == pytest.approx(0.96) and model.lr_multiplier(0) == 1.0
    assert_deterministic_fit(_model, ds, epochs=2)
    one = _model(ds, modalities=["textual"])
    assert torch.isfinite(one.loss(triplet_batch(ds))) and set(one.modality_embeddings(
        torch.arange(3), torch.arange(3))) == {"id", "textual"}


def test_fork_spellings_parse():
    """The fork's MBPR block as its configs write it."""
    from elliot.config.schema import Meta, ModelSpec
    from elliot.search import plan_trials

    raw = {"lr": 0.0005, "modalities": "('visual','textual')", "loaders": "('VisualAttribute','TextualAttribute')",
           "epochs": 2, "factors": 64, "batch_size": 1024, "l_w": [1e-5, 1e-2], "comb_mod": "concat",
           "lr_sched": "(0.96,50)", "seed": 123}
    cls = resolve_model("external.MBPR")
    assert cls is MBPR and resolve_model("MBPR") is MBPR
    plan = plan_trials(cls, ModelSpec("external.MBPR", Meta(validation_metric="Recall@20"), params=raw),
                       where="experiment.models.external.MBPR")
    configs = [c for _, c in plan.ask(10)]
    assert [c["l_w"] for c in configs] == [1e-5, 1e-2]
    assert configs[0]["fusion"] == "concat" and configs[0]["lr_sched"] == [0.96, 50.0]
    assert configs[0]["modalities"] == ["visual", "textual"]
