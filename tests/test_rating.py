"""The rating-prediction task behind the one trainer / evaluator / search / writers: pair-averaged rating
metrics, the rating sampler, the rating baselines, DLRM's interaction, and a run end to end."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from elliot.config import coerce_params, expand_grid
from elliot.dataset.dataset import Dataset
from elliot.dataset.samplers import RatingSampler
from elliot.errors import ConfigError
from elliot.evaluation.evaluator import Evaluator
from elliot.evaluation.metrics.rating import RATING_METRICS, RatingContext, compute_rating_metrics
from elliot.recommender.base import RatingBatch, RatingRecommender, TripletBatch, batch_type
from elliot.recommender.rating import BiasBaseline, BiasedMF, GlobalMean
from elliot.search.plan import select_best
from elliot.training.trainer import Trainer
from external.models.dlrm import DLRM
from external.models.dlrm.dlrm import pairwise_interaction
from tests.helpers import csr


def ratings_fixture(n_users=120, n_items=80, density=0.3, seed=0):
    """(users, items, ratings) from a planted biased low-rank model, rounded to 1..5 stars."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.6, (n_users, 3)), rng.normal(0, 0.6, (n_items, 3))
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    r = 3.5 + bu[users] + bi[items] + (p[users] * q[items]).sum(1) + rng.normal(0, 0.3, len(users))
    return users, items, np.clip(np.rint(r), 1, 5).astype(np.float32)


def rating_dataset(seed=0, features=None, **kw) -> Dataset:
    users, items, ratings = ratings_fixture(seed=seed, **kw)
    n_users, n_items = users.max() + 1, items.max() + 1
    part = np.random.default_rng(seed + 1).random(len(users))
    parts = [part < 0.7, (part >= 0.7) & (part < 0.85), part >= 0.85]
    mats = [csr(users[m], items[m], (n_users, n_items), ratings[m]) for m in parts]
    return Dataset(name="ratings", user_ids=np.array([f"u{u}" for u in range(n_users)]),
                   item_ids=np.array([f"i{i}" for i in range(n_items)]), train=mats[0], validation=mats[1],
                   test=mats[2], features=features or {})


def build(cls, ds, **raw):
    hp = expand_grid(coerce_params(cls.declared_params(), raw, cls.name))[0]
    torch.manual_seed(hp.get("seed", 42))
    return cls(ds, hp, torch.device("cpu"))


def fit(model, ds, metric="RMSE@10"):
    ev = Evaluator(ds, cutoffs=[10], metrics=["RMSE", "MAE", "MSE"])
    trainer = Trainer(model, ds, ev, epochs=model.hp.get("epochs", 0), batch_size=model.hp.get("batch_size", 128),
                      seed=model.hp.get("seed", 42), validation_metric=metric, progress=False)
    return trainer.fit(), ev


# ---- metrics ---------------------------------------------------------------------------------------
def test_rating_metrics_on_a_hand_computed_case():
    ctx = RatingContext(users=np.array([0, 0, 1]), items=np.array([0, 1, 0]), ratings=np.array([4.0, 4.0, 5.0]),
                        predictions=np.array([3.0, 4.0, 2.0]))  # errors -1, 0, -3
    values, per_user = compute_rating_metrics(ctx, [5, 10], ["MAE", "MSE", "RMSE"])
    assert values[5] == values[10]  # no cutoff: the same value at every cutoff
    assert values[10]["MAE"] == pytest.approx(4 / 3)
    assert values[10]["MSE"] == pytest.approx(10 / 3)
    assert values[10]["RMSE"] == pytest.approx(math.sqrt(10 / 3))
    np.testing.assert_allclose(per_user[10]["MAE"], [0.5, 3.0])  # user 0: (1 + 0) / 2; user 1: 3
    np.testing.assert_allclose(per_user[10]["MSE"], [0.5, 9.0])
    np.testing.assert_allclose(per_user[10]["RMSE"], [math.sqrt(0.5), 3.0])
    assert all(not m.higher_is_better for m in RATING_METRICS.values())
    with pytest.raises(ValueError, match="not rating metrics"):
        compute_rating_metrics(ctx, [10], ["Recall"])
    empty = RatingContext(*(np.zeros(0),) * 4)
    assert math.isnan(compute_rating_metrics(empty, [10], ["RMSE"])[0][10]["RMSE"])


class FixedPredictions(RatingRecommender):
    """predict = a fixed (n_users, n_items) matrix, for the evaluator."""
    name = "FixedPredictions"
    trainable = False

    def __init__(self, ds, table):
        super().__init__(ds, {}, torch.device("cpu"))
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def predict(self, users, items):
        return self.table[users, items]


def test_evaluator_uses_every_pair_of_the_split_without_threshold_or_masks():
    # test pairs: (0,1)=5, (0,2)=1, (1,0)=3; training holds (0,0) and (1,1); a threshold of 4 would keep one
    train = csr([0, 1], [0, 1], (2, 3), [4.0, 2.0])
    test = csr([0, 0, 1], [1, 2, 0], (2, 3), [5.0, 1.0, 3.0])
    ds = Dataset(name="t", user_ids=np.array(["a", "b"]), item_ids=np.array(["x", "y", "z"]), train=train,
                 test=test, validation=test)
    table = np.array([[9.0, 4.0, 2.0], [3.5, 9.0, 9.0]])  # errors on the test pairs: -1, +1, +0.5
    ev = Evaluator(ds, cutoffs=[5, 10], metrics=["MAE", "RMSE", "MSE"], relevance_threshold=4.0)
    ev.pair_batch_size = 2  # batched over pairs: two predict calls
    res = ev.evaluate(FixedPredictions(ds, table), "test")
    assert res.values[5]["MAE"] == pytest.approx(2.5 / 3)
    assert res.values[10]["MSE"] == pytest.approx(2.25 / 3)
    assert res.values[10]["RMSE"] == pytest.approx(math.sqrt(2.25 / 3))
    assert res.users.tolist() == [0, 1]
    ctx = ev.rating_context(FixedPredictions(ds, table), "test")
    assert ctx.users.tolist() == [0, 0, 1] and ctx.items.tolist() == [1, 2, 0]


def test_rating_metrics_select_the_lowest_validation_value():
    trials = [SimpleNamespace(validation={10: {"RMSE": v, "Recall": v}}) for v in (0.95, 0.91, 0.93)]
    assert select_best(trials, "RMSE", 10) is trials[1]  # lower is better
    assert select_best(trials, "Recall", 10) is trials[0]  # higher is better, unchanged


def test_early_stopping_auto_mode_minimises_rating_errors():
    from elliot.training.early_stopping import EarlyStopping

    assert EarlyStopping(patience=2, monitor="RMSE@10").mode == "min"
    assert EarlyStopping(patience=2, monitor="Recall@10").mode == "max"
    assert EarlyStopping(patience=2, monitor="loss").mode == "min"


# ---- sampler ---------------------------------------------------------------------------------------
def test_rating_sampler_visits_every_training_rating_once_per_epoch_seeded():
    ds = rating_dataset()
    coo = ds.train.tocoo()
    expected = sorted(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()))
    sampler = RatingSampler(ds.train, seed=3)
    assert sampler.batch_kind == "ratings" and batch_type(sampler)[0] is RatingBatch
    epochs = []
    for _ in range(2):
        batches = list(sampler.epoch(100))
        assert all(len(b[0]) == 100 for b in batches[:-1]) and len(batches) == sampler.n_batches(100)
        u, i, r = (np.concatenate(x) for x in zip(*batches))
        assert u.dtype == np.int64 and i.dtype == np.int64 and r.dtype == np.float32
        assert sorted(zip(u.tolist(), i.tolist(), r.tolist())) == expected  # each rating once, aligned
        epochs.append(u * ds.n_items + i)
    assert not np.array_equal(epochs[0], epochs[1])  # a new order every epoch
    again = RatingSampler(ds.train, seed=3)
    first = np.concatenate([b[0] * ds.n_items + b[1] for b in again.epoch(100)])
    assert np.array_equal(first, epochs[0])  # the same seed, the same epochs
    assert batch_type(object())[0] is TripletBatch  # samplers without a kind (wrappers) yield BPR triples


# ---- models ----------------------------------------------------------------------------------------
def test_global_mean_predicts_the_training_mean():
    ds = rating_dataset()
    model = build(GlobalMean, ds)
    result, ev = fit(model, ds)
    mu = float(ds.train.data.mean())
    pred = model.predict(torch.tensor([0, 5, 7]), torch.tensor([1, 2, 3]))
    assert torch.allclose(pred, torch.full((3,), mu))
    test = ev.evaluate(model, "test").values[10]
    assert test["MSE"] == pytest.approx(float(((ds.test.data - mu) ** 2).mean()), rel=1e-5)
    assert result.selected_on == "validation"


def test_biased_mf_and_bias_baseline_beat_global_mean_and_select_the_lowest_rmse_epoch():
    ds = rating_dataset()
    gm = build(GlobalMean, ds)
    gm.fit(ds)
    ev = Evaluator(ds, cutoffs=[10], metrics=["RMSE"])
    mean_rmse = ev.evaluate(gm, "test").values[10]["RMSE"]
    base = build(BiasBaseline, ds, epochs=10, lr=0.01)
    base_result, _ = fit(base, ds)
    base_rmse = ev.evaluate(base, "test").values[10]["RMSE"]
    mf = build(BiasedMF, ds, epochs=25, factors=8, lr=0.01, reg=0.05, seed=1)
    mf_result, _ = fit(mf, ds)
    mf_rmse = ev.evaluate(mf, "test").values[10]["RMSE"]
    assert mf_rmse < base_rmse < mean_rmse - 0.05
    assert mf_rmse < 0.85 * mean_rmse
    val = [h["val_RMSE@10"] for h in mf_result.history]
    assert mf_result.best_epoch == int(np.argmin(val)) + 1  # lower-is-better selection in the trainer
    assert mf_result.best_validation[10]["RMSE"] == pytest.approx(min(val))
    # predictions are clipped to the training range at evaluation only
    mf.eval()
    with torch.no_grad():
        assert float(mf.predict(torch.arange(ds.n_users), torch.zeros(ds.n_users, dtype=torch.long)).max()) <= 5.0


def test_sgd_objective_is_surprise_per_rating_update_for_one_rating():
    ds = rating_dataset()
    model = build(BiasedMF, ds, factors=4, lr=0.005, reg=0.02, batch_size=1)
    u, i, r = torch.tensor([3]), torch.tensor([5]), torch.tensor([4.0])
    pu, qi = model.user_emb.weight[3].detach().clone(), model.item_emb.weight[5].detach().clone()
    err = r - (model.global_mean + (pu * qi).sum())  # biases start at 0
    opt = model.make_optimizer()
    model.loss(RatingBatch(users=u, items=i, ratings=r)).backward()
    opt.step()
    # Surprise's SVD.fit: bu += lr (err - reg bu); pu += lr (err qi - reg pu); qi += lr (err pu - reg qi)
    assert torch.allclose(model.user_bias.weight[3], 0.005 * err)
    assert torch.allclose(model.user_emb.weight[3], pu + 0.005 * (err * qi - 0.02 * pu))
    assert torch.allclose(model.item_emb.weight[5], qi + 0.005 * (err * pu - 0.02 * qi))


def test_dlrm_interaction_matches_a_hand_written_reference():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 4, 3, generator=g)
    out = pairwise_interaction(v)
    ref = torch.tensor([[float(v[b, i] @ v[b, j]) for i in range(4) for j in range(i + 1, 4)] for b in range(2)])
    assert out.shape == (2, 6)
    assert torch.allclose(out, ref, atol=1e-6)


def test_dlrm_ids_and_modalities_train_and_predict():
    rng = np.random.default_rng(0)
    ds = rating_dataset(features={"visual": rng.standard_normal((80, 6)).astype(np.float32),
                                  "textual": rng.standard_normal((80, 5)).astype(np.float32)})
    ids = build(DLRM, ds, epochs=3, factors=8)
    assert ids.top[0].in_features == 8 + 3  # [x, (x.eu, x.ei, eu.ei)]
    mm = build(DLRM, ds, epochs=3, factors=8, modalities=["visual", "textual"])
    assert mm.top[0].in_features == 8 + 10  # 5 vectors: 10 pairwise products
    for model in (ids, mm):
        result, ev = fit(model, ds)
        assert result.epochs_run == 3 and math.isfinite(result.best_validation[10]["RMSE"])
        pred = model.predict(torch.tensor([0, 1]), torch.tensor([2, 3]))
        assert pred.shape == (2,)
    with pytest.raises(ConfigError, match="audio"):
        build(DLRM, ds, modalities=["audio"])


# ---- the data side: a validation carve-out from a fixed training file --------------------------------
def _write(folder: Path, seed=0):
    users, items, ratings = ratings_fixture(seed=seed)
    test = np.random.default_rng(seed + 7).random(len(users)) < 0.2
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, mask in (("train.tsv", ~test), ("test.tsv", test)):
        rows = [f"user_{u}\titem_{i}\t{int(r)}\t{k}" for k, (u, i, r) in
                enumerate(zip(users[mask], items[mask], ratings[mask]))]
        (folder / "data" / name).write_text("\n".join(rows) + "\n")
    return users, items, ratings, test


def _config(folder: Path, models: dict, metrics=("RMSE", "MAE", "MSE")) -> Path:
    exp = {"dataset": "stars", "data_config": {"strategy": "fixed", "train_path": "../data/train.tsv",
                                               "test_path": "../data/test.tsv"},
           "splitting": {"validation_splitting": {"strategy": "random_subsampling", "test_ratio": 0.1}},
           "evaluation": {"cutoffs": [10], "simple_metrics": list(metrics), "paired_ttest": True}, "models": models}
    (folder / "config_files").mkdir(exist_ok=True)
    path = folder / "config_files" / "stars.yml"
    path.write_text(yaml.safe_dump({"experiment": exp}))
    return path


def test_validation_is_carved_from_the_fixed_training_file(tmp_path):
    from elliot.config import load_config
    from elliot.dataset.builder import build_dataset

    users, _, _, test = _write(tmp_path)
    cfg = load_config(_config(tmp_path, {"GlobalMean": {}}))
    ds = build_dataset(cfg.experiment_dict())
    n_train_file = int((~test).sum())
    assert ds.has_validation and ds.test.nnz == int(test.sum())
    assert ds.train.nnz + ds.validation.nnz == n_train_file  # the carve-out comes out of the training file
    assert 0.08 < ds.validation.nnz / n_train_file < 0.15  # floor(n * 0.9) kept per user (~19 each here)
    again = build_dataset(cfg.experiment_dict())
    assert (again.validation != ds.validation).nnz == 0  # seeded


# ---- end to end ----------------------------------------------------------------------------------------
def test_rating_run_end_to_end_with_rmse_selection_and_predictions_file(tmp_path):
    from elliot.run import run_experiment

    _write(tmp_path)
    models = {"GlobalMean": {"meta": {"save_recs": True}},
              "BiasedMF": {"meta": {"validation_metric": "RMSE", "save_recs": True}, "epochs": 8, "factors": 8,
                           "lr": 0.01, "reg": [0.02, 3.0], "seed": 1}}
    result = run_experiment(_config(tmp_path, models), progress=False)
    trials = result.trials["BiasedMF"]
    assert len(trials) == 2
    best = result.best["BiasedMF"]
    assert best.validation[10]["RMSE"] == min(t.validation[10]["RMSE"] for t in trials)  # the lowest RMSE
    assert best.params["reg"] == 0.02
    assert best.test[10]["RMSE"] < result.best["GlobalMean"].test[10]["RMSE"]
    folder = tmp_path / "results" / "stars"
    table = next((folder / "performance").glob("rec_cutoff_10_relthreshold_0_*.tsv")).read_text().splitlines()
    assert table[0].split("\t") == ["model", "RMSE", "MAE", "MSE"] and len(table) == 1 + 3
    test_lines = (tmp_path / "data" / "test.tsv").read_text().splitlines()
    train_pairs = {tuple(line.split("\t")[:2]) for line in (tmp_path / "data" / "train.tsv").read_text().splitlines()}
    train_users, train_items = {u for u, _ in train_pairs}, {i for _, i in train_pairs}
    expected = {tuple(line.split("\t")[:2]) for line in test_lines}
    expected = {(u, i) for u, i in expected if u in train_users and i in train_items}
    recs = (folder / "recs" / f"{best.name}.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in recs]
    assert len(rows) == len(expected) and {(u, i) for u, i, _ in rows} == expected  # one row per test pair
    assert all(1.0 <= float(p) <= 5.0 for _, _, p in rows)
    stats = next((folder / "performance").glob("stat_paired_ttest_cutoff_10_*.tsv")).read_text().splitlines()
    assert len(stats) == 1 + 3 and {frozenset(r.split("\t")[:2]) for r in stats[1:]} == {frozenset((result.best["GlobalMean"].name, best.name))}  # per-user errors, one row per metric
    gm_rows = (folder / "recs" / f"{result.best['GlobalMean'].name}.tsv").read_text().splitlines()
    assert len({line.split("\t")[2] for line in gm_rows}) == 1  # the mean everywhere


def test_a_rating_model_refuses_ranking_metrics_at_config_time(tmp_path):
    from elliot.run import run_experiment

    _write(tmp_path)
    with pytest.raises(ConfigError, match="rating-prediction model"):
        run_experiment(_config(tmp_path, {"BiasedMF": {}}, metrics=("RMSE", "Recall")), progress=False)
