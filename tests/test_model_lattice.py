from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError
from elliot.evaluation.evaluator import Evaluator
from elliot.recommender.base import TripletBatch
from elliot.recommender.registry import available_models
from external.models.lattice import LATTICE
from external.models.lattice.lattice import cosine_at, knn_index, laplacian_values
from tests.helpers import (csr, make_model, random_dataset, scoring_views, single_thread_fixture, train_steps,
                           triplet_batch)

ROOT = Path(__file__).resolve().parents[1]


_one_thread = single_thread_fixture()


def _model(ds, seed=0, cls=LATTICE, **hp):
    return make_model(cls, ds, seed=seed, **{"factors": 8, "factors_multimod": 8, "ws": [8, 8], "top_k": 4,
                                             "lr": 0.01, **hp})


_batch = triplet_batch


def _train(model, batch, steps=20):
    return train_steps(model, batch, steps)


def _dense(index, values, n):
    """n x n matrix with ``values`` (rows x k) at ``index`` (rows x k), duplicates summed."""
    out = torch.zeros(n, n, dtype=values.dtype)
    rows = torch.arange(index.shape[0]).view(-1, 1).expand_as(index)
    return out.index_put((rows.reshape(-1), index.reshape(-1)), values.reshape(-1), accumulate=True)


def _dense_lattice_graph(x, k):
    """The released code: build_sim -> build_knn_neighbourhood (weighted) -> D^-1/2 A D^-1/2, dense."""
    xn = F.normalize(x, dim=1)
    sim = xn @ xn.T
    val, ind = torch.topk(sim, k, dim=-1)
    return torch.zeros_like(sim).scatter_(-1, ind, val)


def _laplacian(adj):
    d = adj.sum(-1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d.view(-1, 1) * adj * d.view(1, -1)


def test_chunked_weighted_knn_matches_dense_topk():
    x = torch.randn(50, 7)
    xn = F.normalize(x, dim=1)
    index = knn_index(xn, 5, chunk_size=7)
    assert index.shape == (50, 5) and torch.equal(index, knn_index(xn, 5))  # chunking changes nothing
    values = cosine_at(xn, index)
    weighted = _dense_lattice_graph(x, 5)
    assert torch.allclose(_dense(index, values, 50), weighted, atol=1e-6)  # weighted top-k, not binary
    assert torch.allclose(_dense(index, laplacian_values(values, index), 50), _laplacian(weighted), atol=1e-6)
    rows = torch.tensor([3, 17, 40])
    assert torch.allclose(cosine_at(xn, index, rows), values[rows])


def test_initial_graph_is_frozen_weighted_laplacian():
    ds = random_dataset()
    model = _model(ds)
    for m, idx, val in zip(model.modalities, model._init_idx, model._init_val):
        expected = _laplacian(_dense_lattice_graph(torch.as_tensor(ds.features[m]), 4))
        assert torch.allclose(_dense(idx, val, ds.n_items), expected, atol=1e-6)
    frozen = [v.clone() for v in model._init_val]
    with torch.no_grad(), model.features_replaced({"visual": model.feature("visual") * 5 + 1}):
        model.prepare_scoring()
        model.end_scoring()
    assert all(torch.equal(a, b) for a, b in zip(frozen, model._init_val))


def test_learned_graph_matches_dense_formula_and_row_subsets():
    ds = random_dataset()
    model = _model(ds, l_m=0.3)
    _train(model, _batch(ds), steps=3)
    model.on_epoch_start(3)
    alpha, learned = model._learned(None)
    with torch.no_grad():
        feats = [lin(model.feature(m)) for m, lin in zip(model.modalities, model.proj)]
        a = torch.softmax(model.modal_weight, 0)
        expected = _laplacian(sum(a[i] * _dense_lattice_graph(f, 4) for i, f in enumerate(feats)))
    got = sum(_dense(i, v.detach(), ds.n_items) for i, v in zip(model._idx, learned))
    assert torch.allclose(got, expected, atol=1e-5)
    rows = torch.tensor([0, 5, 6, 31])
    _, sub = model._learned(rows)
    assert all(torch.allclose(s, v[rows], atol=1e-6) for s, v in zip(sub, learned))
    # the full item-graph operator S = (1-λ) L + λ Σ α_m Ŝ^m
    init = sum(a[i] * _dense(idx, val, ds.n_items) for i, (idx, val) in enumerate(zip(model._init_idx, model._init_val)))
    assert torch.allclose(model._graph_op((alpha, learned)).to_dense(), 0.7 * expected + 0.3 * init, atol=1e-5)


@pytest.mark.parametrize("cf", ["lightgcn", "ngcf", "mf"])
@pytest.mark.parametrize("graph_grad", ["first_batch", "every_batch"])
def test_training_trains_projections_and_lowers_loss(cf, graph_grad):
    ds = random_dataset()
    model = _model(ds, cf=cf, graph_grad=graph_grad)
    batch = _batch(ds)
    model.on_epoch_start(0)
    first = model.loss(batch)
    first.backward()
    assert model.proj[0].weight.grad.abs().sum() > 0 and model.proj[1].weight.grad.abs().sum() > 0
    assert model.modal_weight.grad.abs().sum() > 0
    loss = _train(model, batch)
    assert torch.isfinite(loss)
    model.on_epoch_start(0)
    assert model.loss(batch).item() < first.item()


def test_first_batch_mode_freezes_the_epoch_graph():
    ds = random_dataset()
    model = _model(ds, n_layers=2)
    twin = _model(ds, n_layers=2, graph_grad="every_batch")
    model.on_epoch_start(0)
    twin.on_epoch_start(0)
    b1, b2 = _batch(ds, seed=1), _batch(ds, seed=2)
    assert torch.allclose(model.loss(b1), twin.loss(b1), atol=1e-6)
    model.zero_grad()
    second = model.loss(b2)  # the code's detached graph: no gradient to W_m or w
    second.backward()
    assert model.proj[0].weight.grad is None and model.modal_weight.grad is None
    assert torch.allclose(second, twin.loss(b2), atol=1e-6)  # same parameters: same graph, same loss


@pytest.mark.parametrize("cf", ["lightgcn", "ngcf", "mf"])
def test_score_pairs_and_branches_agree(cf):
    ds = random_dataset()
    model = _model(ds, cf=cf)
    _train(model, _batch(ds), steps=3)
    model.eval()
    users, items, full, cached, pairs = scoring_views(model, ds)
    with torch.no_grad():
        emb = model.modality_embeddings(users, items)
    assert torch.allclose(full, cached, atol=1e-6)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)
    assert set(emb) == {"id", "visual", "textual"}
    assert all(eu.shape == (ds.n_users, 8) and ei.shape == (ds.n_users, 8) for eu, ei in emb.values())
    assert torch.allclose(sum(model.modality_scores(users, items).values()), pairs, atol=1e-5)


def test_feature_replacement_reaches_learned_graph_only():
    ds = random_dataset()
    model = _model(ds)
    _train(model, _batch(ds), steps=2)
    model.eval()
    stored = model.feature("visual").clone()
    index = [i.clone() for i in model._idx]
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.modality_scores(users, items)["visual"].sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert torch.equal(model.feature("visual"), stored)
    with torch.no_grad():
        clean = model.modality_embeddings(users, items)
        with model.features_replaced({"visual": stored * 3 + 1}):
            attacked = model.modality_embeddings(users, items)
            attacked_pairs = model.score_pairs(users, items)
            model.prepare_scoring()  # a fresh kNN index from the attacked features, for this evaluation only
            attacked_full = model.score(users)
            model.end_scoring()
    assert not torch.allclose(clean["visual"][1], attacked["visual"][1])
    assert torch.equal(clean["id"][1], attacked["id"][1])  # ID path and backbone untouched
    assert not torch.allclose(attacked_pairs, model.score_pairs(users, items))
    assert torch.isfinite(attacked_full).all()
    assert all(torch.equal(a, b) for a, b in zip(index, model._idx))  # the clean index is kept


def test_deterministic_with_fixed_seed():
    ds = random_dataset()
    batch = _batch(ds)
    a, b = _model(ds, seed=3), _model(ds, seed=3)
    assert torch.equal(_train(a, batch, steps=4), _train(b, batch, steps=4))
    with torch.no_grad():
        assert torch.equal(a.score(torch.arange(5)), b.score(torch.arange(5)))


def test_lr_decay_and_config_errors():
    ds = random_dataset()
    model = _model(ds, lr=0.01)
    assert model.lr_multiplier(50) == pytest.approx(0.96)  # the trainer's one schedule applies it
    assert _model(ds, lr=0.01, lr_sched=[0.5, 25]).lr_multiplier(50) == pytest.approx(0.96 * 0.25)
    with pytest.raises(ConfigError):
        _model(ds, cf="ngcf", ws=[8, 16])
    with pytest.raises(ConfigError):
        _model(ds, cf="ngcf", dl=[0.1])


def _default_data(n_users=1500):
    folder = ROOT / "data" / "default"
    splits = []
    for name in ("train.tsv", "val.tsv", "test.tsv"):
        rows = np.loadtxt(folder / name, dtype=np.int64, delimiter="\t")
        rows = rows[rows[:, 0] < n_users]
        splits.append(rows)
    feats = {m: np.load(folder / f"{m}.npy").astype(np.float32) for m in ("visual", "textual")}
    n_items = len(feats["visual"])
    mats = [csr(r[:, 0], r[:, 1], (n_users, n_items)) for r in splits]
    return Dataset(name="default", user_ids=np.array([str(u) for u in range(n_users)]),
                   item_ids=np.array([str(i) for i in range(n_items)]), train=mats[0], validation=mats[1],
                   test=mats[2], features=feats)


def test_a_few_epochs_on_default_data_improve_validation_recall():
    ds = _default_data()
    model = make_model(LATTICE, ds, factors=32, factors_multimod=32, lr=0.005, batch_size=2048)
    evaluator = Evaluator(ds, cutoffs=[20], metrics=["Recall"])
    before = evaluator.evaluate(model, "validation").values[20]["Recall"]
    opt, sampler = model.make_optimizer(), model.make_sampler(ds, 0)
    for epoch in range(3):
        model.train()
        model.on_epoch_start(epoch)
        for u, i, j in sampler.epoch(2048):
            opt.zero_grad()
            model.loss(TripletBatch(users=torch.from_numpy(u), pos_items=torch.from_numpy(i),
                                    neg_items=torch.from_numpy(j))).backward()
            opt.step()
    after = evaluator.evaluate(model, "validation").values[20]["Recall"]
    assert after > before + 0.02, (before, after)


def test_balanced_variant_trains_one_batch():
    cls = available_models()["external.LATTICE_MB"]
    ds = random_dataset()
    model = _model(ds, cls=cls, robust_modality="textual", N=8, pgd_steps=2)
    batch = _batch(ds)
    model.on_epoch_start(0)
    opt = model.make_optimizer()
    loss = model.loss(batch)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and model._balancing.last_loss is not None
    assert model.proj[0].weight.grad.abs().sum() > 0
