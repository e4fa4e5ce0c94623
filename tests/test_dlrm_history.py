"""DLRM's user-history features (SVD++'s implicit feedback, the content profile) against hand-written loops,
their gradients, determinism, and the tower regularisers (feature PCA, tower dropout / weight decay)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import external.models.dlrm.dlrm as dlrm_module
from elliot.errors import ConfigError
from elliot.recommender.base import RatingBatch
from external.models.dlrm import DLRM
from external.models.dlrm.history import UserHistory, history_matrices, pca_reduce
from tests.test_rating import build, fit, rating_dataset


def _features(n_items=80, seed=0):
    rng = np.random.default_rng(seed)
    return {"visual": rng.standard_normal((n_items, 6)).astype(np.float32),
            "textual": rng.standard_normal((n_items, 5)).astype(np.float32)}


def _loop_history(train, table: np.ndarray) -> np.ndarray:
    """|N(u)|^{-1/2} Σ_{j∈N(u)} table[j], one user and one item at a time."""
    out = np.zeros((train.shape[0], table.shape[1]))
    for u in range(train.shape[0]):
        items = train.indices[train.indptr[u]:train.indptr[u + 1]]
        for j in items:
            out[u] += table[j] / np.sqrt(len(items))
    return out


def test_history_profile_and_penalty_match_a_loop():
    ds = rating_dataset()
    op = UserHistory(ds.train, torch.device("cpu"))
    table = torch.randn(ds.n_items, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    np.testing.assert_allclose(op.profile(table).numpy(), _loop_history(ds.train, table.numpy()), atol=1e-5)
    sq = (table.numpy() ** 2).sum(1)
    ref = [np.mean(sq[ds.train.indices[ds.train.indptr[u]:ds.train.indptr[u + 1]]]) for u in range(ds.n_users)]
    np.testing.assert_allclose(op.penalty(table).numpy(), ref, rtol=1e-5)
    norm, squared = history_matrices(ds.train)
    assert np.allclose(norm.multiply(norm).toarray(), squared.toarray())  # the rating value is not used
    assert np.allclose(np.asarray((norm.multiply(norm)).sum(1)).ravel(), 1.0)


def test_history_gradient_matches_dense_autograd():
    ds = rating_dataset()
    op = UserHistory(ds.train, torch.device("cpu"))
    table = torch.randn(ds.n_items, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(ds.n_users, 3, generator=torch.Generator().manual_seed(2))
    (op.profile(table) * weights).sum().backward()
    dense = torch.from_numpy(history_matrices(ds.train)[0].toarray()).float()
    ref = table.detach().clone().requires_grad_(True)
    ((dense @ ref) * weights).sum().backward()
    assert torch.allclose(table.grad, ref.grad, atol=1e-5)


def test_dlrm_history_and_content_vectors_match_a_hand_written_forward(monkeypatch):
    ds = rating_dataset(features=_features())
    model = build(DLRM, ds, factors=4, top_mlp=[6], tower_mlp=[5], modalities=["visual"], history=True,
                  history_content=True, attributes=[], clip=False)
    assert model.top[0].in_features == 4 + 6 * 5 // 2  # V = [x, e_u, e_i, t_v, h_u, c_v]
    seen = {}
    real = dlrm_module.pairwise_interaction
    monkeypatch.setattr(dlrm_module, "pairwise_interaction", lambda v: seen.setdefault("v", v) is None or real(v))
    users, items = torch.tensor([0, 3, 7]), torch.tensor([2, 5, 1])
    model.eval()
    with torch.no_grad():
        model.predict(users, items)
        v = seen["v"]
        towers = model.towers["visual"](model._feat_visual).numpy()
        y = model.history_emb.weight.numpy()
    h_ref, c_ref = _loop_history(ds.train, y), _loop_history(ds.train, towers)
    np.testing.assert_allclose(v[:, 1].numpy(), model.user_emb.weight[users].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(v[:, 3].numpy(), towers[items.numpy()], atol=1e-5)
    np.testing.assert_allclose(v[:, 4].numpy(), h_ref[users.numpy()], atol=1e-5)
    np.testing.assert_allclose(v[:, 5].numpy(), c_ref[users.numpy()], atol=1e-5)


def test_dlrm_history_gradients_reach_exactly_the_users_histories():
    ds = rating_dataset(features=_features())
    model = build(DLRM, ds, factors=4, modalities=["textual"], history=True, history_content=True)
    users = torch.tensor([0, 1, 2, 3])
    batch = RatingBatch(users=users, items=torch.tensor([4, 5, 6, 7]), ratings=torch.tensor([1.0, 5.0, 2.0, 4.0]))
    model.train()
    model.loss(batch).backward()
    grad_rows = model.history_emb.weight.grad.abs().sum(1) > 0
    in_history = np.zeros(ds.n_items, dtype=bool)
    for u in users.tolist():
        in_history[ds.train.indices[ds.train.indptr[u]:ds.train.indptr[u + 1]]] = True
    assert np.array_equal(grad_rows.numpy(), in_history)
    tower_grad = sum(p.grad.abs().sum() for p in model.towers["textual"].parameters())
    assert float(tower_grad) > 0


def test_dlrm_history_training_is_deterministic_and_defaults_are_unchanged():
    ds = rating_dataset(features=_features())
    runs = []
    for _ in range(2):
        model = build(DLRM, ds, epochs=2, factors=8, modalities=["visual"], history=True, history_content=True,
                      tower_dropout=0.2, tower_weight_decay=1e-3, feature_pca=3)
        result, _ = fit(model, ds)
        model.eval()
        runs.append((result.best_validation[10]["RMSE"], model.predict(torch.arange(5), torch.arange(5))))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert model._feat_visual.shape == (ds.n_items, 3)
    assert build(DLRM, ds, factors=8).top[0].in_features == 8 + 3  # history off by default: [x, e_u, e_i]
    assert build(DLRM, ds, factors=8, history=True).top[0].in_features == 8 + 6
    with pytest.raises(ConfigError, match="history_content needs modalities"):
        build(DLRM, ds, history_content=True)


def test_pca_reduce_keeps_the_leading_components():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)) @ np.diag([5, 3, 1, 1, 0.1, 0.1, 0.1, 0.1])
    used = np.ones(50, dtype=bool)
    z = pca_reduce(x, used, 2)
    assert z.shape == (50, 2) and np.isclose(z.var(0).mean(), 1.0, atol=1e-5)
    assert abs(np.corrcoef(z.T)[0, 1]) < 1e-6  # decorrelated components
    assert z.var(0)[0] > z.var(0)[1]  # the relative scales are kept
    assert pca_reduce(x, used, 0) is x and pca_reduce(x, used, 8) is x
