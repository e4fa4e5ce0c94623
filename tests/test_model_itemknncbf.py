"""ItemKNNCBF: scores equal MMRec's dense computation; pairs, hooks, attacks on features, the trainer."""
import numpy as np
import pytest
import torch

from elliot.recommender.registry import resolve_model
from external.models.itemknncbf import ItemKNNCBF
from tests.helpers import (fit_through_trainer, model_factory, random_dataset, replaced_feature_grad,
                           scores_with_replaced_feature, scoring_views)

_model = model_factory(ItemKNNCBF, seed=None)


def _mmrec_scores(ds, knn_k, shrink, modalities=("visual", "textual")):
    """MMRec ``ItemKNNCBF``: dense shrunk-cosine matrix, top-k per row scattered back, R @ W."""
    feats = torch.cat([torch.from_numpy(ds.features[m]) for m in modalities], -1)
    norm = torch.norm(feats, p=2, dim=-1, keepdim=True)
    sim = (feats @ feats.T) / (norm * norm.T + shrink)
    val, ind = torch.topk(sim, knn_k, dim=-1)
    w = torch.zeros_like(sim).scatter_(-1, ind, val)
    r = torch.from_numpy((ds.train > 0).astype(np.float32).toarray())
    return r @ w


@pytest.mark.parametrize("knn_k,shrink", [(10, 10.0), (3, 0.0)])
def test_scores_equal_mmrec(knn_k, shrink):
    ds = random_dataset()
    model = _model(ds, knn_k=knn_k, shrink=shrink)
    users, items, full, cached, pairs = scoring_views(model, ds)
    expected = _mmrec_scores(ds, knn_k, shrink)
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(full, cached)
    torch.testing.assert_close(pairs, expected.gather(1, items.view(-1, 1)).squeeze(1), rtol=1e-5, atol=1e-5)


def test_one_modality_and_no_branches():
    ds = random_dataset()
    model = _model(ds, modalities=["textual"], knn_k=5)
    with torch.no_grad():
        torch.testing.assert_close(model.score(torch.arange(ds.n_users)),
                                   _mmrec_scores(ds, 5, 10.0, ("textual",)), rtol=1e-5, atol=1e-5)
    assert model.modality_embeddings(torch.arange(3), torch.arange(3)) == {}


def test_feature_attacks_reach_score_pairs():
    ds = random_dataset()
    model = _model(ds)
    score = lambda: model.score_pairs(torch.arange(8), torch.arange(8, 16))  # noqa: E731
    assert replaced_feature_grad(model, score).abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, score)
    assert not torch.allclose(attacked, clean)


def test_through_the_trainer_and_registry():
    ds = random_dataset()
    fit, test = fit_through_trainer(_model(ds), ds)
    assert fit.best_epoch == 0 and test.values[10]["Recall"] >= 0
    _, again = fit_through_trainer(_model(ds), ds)
    assert again.values == test.values
    assert resolve_model("external.ItemKNNCBF") is ItemKNNCBF and resolve_model("ItemKNNCBF") is ItemKNNCBF
