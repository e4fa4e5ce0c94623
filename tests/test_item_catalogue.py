"""``data_config.item_catalogue`` (train | all), ``evaluation.mask_validation_in_test`` and the cold-start
metrics, on small generated fixtures whose validation/test splits hold items without a training interaction."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from elliot.config import load_config
from elliot.dataset.builder import build_dataset
from elliot.dataset.samplers import BPRSampler
from elliot.errors import ConfigError
from elliot.evaluation.evaluator import Evaluator
from elliot.recommender.registry import available_models
from elliot.search.store import dataset_fingerprint
from tests.helpers import FixedScores


def _write(path: Path, rows) -> str:
    path.write_text("".join("\t".join(str(x) for x in r) + "\n" for r in rows))
    return str(path)


# ---- the hand-checked fixture -------------------------------------------------------------------------
# users 0..2 (user 3 only in test: dropped in both settings), items 0..5; items 4 and 5 never in train
TRAIN = [(0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 2, 1), (2, 0, 1), (2, 2, 1), (2, 3, 1)]
VAL = [(0, 3, 1), (1, 0, 1)]
TEST = [(0, 2, 1), (0, 4, 1), (1, 3, 1), (2, 1, 1), (2, 5, 1), (3, 2, 1)]
# scores of items 0..5 for users 0..2 (the 'all' catalogue: item index = raw id)
SCORES = np.array([[9, 8, 1, 5, 7, 3],
                   [7, 9, 9, 4, 6, 1],
                   [9, 6, 9, 9, 1, 5]], dtype=np.float32)


def _hand(tmp_path, catalogue, features=False):
    dc = {"strategy": "fixed", "train_path": _write(tmp_path / "train.tsv", TRAIN),
          "validation_path": _write(tmp_path / "val.tsv", VAL), "test_path": _write(tmp_path / "test.tsv", TEST),
          "item_catalogue": catalogue}
    if features:  # row i = item i; row 6 belongs to an item without any interaction
        np.save(tmp_path / "visual.npy", np.arange(7 * 3, dtype=np.float32).reshape(7, 3))
        dc["side_information"] = [{"modality": "visual", "features": str(tmp_path / "visual.npy")}]
    with pytest.warns(UserWarning):
        return build_dataset({"dataset": "hand", "data_config": dc})


def test_counts_per_catalogue(tmp_path):
    train = _hand(tmp_path, "train")
    assert train.item_catalogue == "train" and train.n_items == 4 and train.n_users == 3
    assert train.test.nnz == 3 and train.info["unseen_items_dropped"] == {"test": 2}
    assert train.info["unseen_users_dropped"] == {"test": 1}
    assert not train.cold_items().any()
    full = _hand(tmp_path, "all")
    assert full.n_items == 6 and full.n_users == 3 and full.test.nnz == 5 and full.validation.nnz == 2
    assert "unseen_items_dropped" not in full.info and full.info["unseen_users_dropped"] == {"test": 1}
    assert full.info["cold_items"] == 2 and full.info["cold_item_interactions"] == {"test": 2}
    assert full.item_ids.tolist() == [str(i) for i in range(6)]  # sorted by raw id, cold ones included
    assert np.flatnonzero(full.cold_items()).tolist() == [4, 5]
    assert np.diff(full.train.tocsc().indptr)[4:].tolist() == [0, 0]  # empty train columns
    assert "catalogue all: 2 cold" in full.summary()


def test_items_with_side_information_join_the_catalogue(tmp_path):
    ds = _hand(tmp_path, "all", features=True)
    assert ds.n_items == 7 and np.flatnonzero(ds.cold_items()).tolist() == [4, 5, 6]
    # features aligned with the item indices, cold items included
    assert np.array_equal(ds.features["visual"], np.arange(21, dtype=np.float32).reshape(7, 3))
    assert ds.info["raw_items"] == 6  # items read in the interaction files
    train = _hand(tmp_path, "train", features=True)
    assert train.n_items == 4 and np.array_equal(train.features["visual"], ds.features["visual"][:4])


def test_unknown_catalogue_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match=r"item_catalogue 'al'.*did you mean 'all'"):
        build_dataset({"data_config": {"strategy": "fixed", "item_catalogue": "al",
                                       "train_path": _write(tmp_path / "t.tsv", TRAIN),
                                       "test_path": _write(tmp_path / "s.tsv", TEST)}})
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(yaml.safe_dump({"experiment": {
        "dataset": "hand", "data_config": {"strategy": "fixed", "train_path": str(tmp_path / "t.tsv"),
                                           "test_path": str(tmp_path / "s.tsv"), "item_catalogue": "Al"},
        "models": {"MostPop": {}}}}))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "\n" not in str(err.value) and "did you mean 'all'" in str(err.value)
    good = load_config(cfg, {"experiment.data_config.item_catalogue": "all"}).experiment_dict()
    assert good["data_config"]["item_catalogue"] == "all"
    default = load_config(cfg, {"experiment.data_config.item_catalogue": "train"}).experiment_dict()
    assert default["data_config"]["item_catalogue"] == "train"
    assert default["evaluation"]["mask_validation_in_test"] is True


def _evaluate(ds, scores, mask):
    ev = Evaluator(ds, cutoffs=[1, 2, 3], metrics=["Recall", "nDCG", "Precision"], mask_validation_in_test=mask)
    return ev, ev.evaluate(FixedScores(scores), "test")


def _dcg(ranks):
    return sum(1.0 / math.log2(r + 1) for r in ranks)


def test_hand_computed_metrics_with_cold_relevant_items(tmp_path):
    ds = _hand(tmp_path, "all")
    ev, res = _evaluate(ds, SCORES, mask=True)
    # rankings after masking train (+ validation) items: u0 4,5,2  u1 4,3,5  u2 1,5,4
    # relevant: u0 {2, 4}  u1 {3}  u2 {1, 5}
    v = res.values
    assert v[1]["Recall"] == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert v[2]["Recall"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert v[3]["Recall"] == pytest.approx(1.0)
    ndcg2 = (1 / _dcg([1, 2]) + _dcg([2]) / _dcg([1]) + 1.0) / 3
    assert v[2]["nDCG"] == pytest.approx(ndcg2)
    assert v[2]["Precision"] == pytest.approx((1 / 2 + 1 / 2 + 2 / 2) / 3)
    # cold-start: users 0 and 2, only items 4 (u0) and 5 (u2) relevant
    assert res.cold_users.tolist() == [0, 2] and ev.cold_users("test").tolist() == [0, 2]
    assert v[1]["Recall_cold"] == pytest.approx(0.5)  # u0's item 4 at rank 1, u2's item 5 at rank 2
    assert v[2]["Recall_cold"] == pytest.approx(1.0)
    assert v[2]["nDCG_cold"] == pytest.approx((1.0 + _dcg([2])) / 2)
    assert v[1]["Precision_cold"] == pytest.approx(0.5)
    # ColdShare: cold items (4, 5) among every user's top-k slots
    assert v[1]["ColdShare"] == pytest.approx(2 / 3)  # 4 | 4 | 1
    assert v[2]["ColdShare"] == pytest.approx(4 / 6)  # 4 5 | 4 3 | 1 5
    assert v[3]["ColdShare"] == pytest.approx(6 / 9)
    # the overall per-user values stay those of every test user
    assert res.users.tolist() == [0, 1, 2] and len(res.per_user[2]["Recall"]) == 3
    assert "Recall_cold" not in res.per_user[2]
    # validation: never cold metrics; and none when asked for named metrics only
    assert "Recall_cold" not in ev.evaluate(FixedScores(SCORES), "validation").values[2]
    assert "Recall_cold" not in ev.evaluate(FixedScores(SCORES), "test", metrics=["Recall"]).values[2]


def test_masking_validation_on_off(tmp_path):
    ds = _hand(tmp_path, "all")
    _, on = _evaluate(ds, SCORES, mask=True)
    _, off = _evaluate(ds, SCORES, mask=False)
    # unmasked validation items: u0's item 3 (score 5) enters at rank 2, u1's item 0 (score 7) at rank 1
    # u0: 4,3,5,2   u1: 0,4,3,5   u2 (no validation item): 1,5,4
    assert off.values[2]["Recall"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert off.values[3]["Recall"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert on.values[2]["Recall"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert off.values[3]["Recall_cold"] == pytest.approx(1.0) and off.values[1]["Recall_cold"] == 0.5


def test_train_catalogue_drops_cold_test_items(tmp_path):
    ds = _hand(tmp_path, "train")  # items 0..3; test u0 {2}, u1 {3}, u2 {1}: every one is ranked first
    ev, res = _evaluate(ds, SCORES[:, :4], mask=True)
    assert res.values[1]["Recall"] == pytest.approx(1.0)
    assert res.cold_users is None and "Recall_cold" not in res.values[1] and "ColdShare" not in res.values[1]
    assert not len(ev.cold_users("test"))


# ---- every model on a generated dataset with cold items ---------------------------------------------------
def _generated(tmp_path, catalogue="all", n_users=60, n_items=50, seed=0):
    """Interactions over items 0..n_items-1 where items >= n_items - 8 never occur in train (4 of them in
    validation/test only, 4 only in the feature files); visual and textual features for every item."""
    rng = np.random.default_rng(seed)
    warm = n_items - 8
    rows = set()
    for u in range(n_users):
        for i in rng.choice(warm, size=8, replace=False):
            rows.add((u, int(i)))
    rows = sorted(rows)
    part = rng.random(len(rows))
    train = [r + (1,) for r, p in zip(rows, part) if p < 0.7]
    val = [r + (1,) for r, p in zip(rows, part) if 0.7 <= p < 0.85]
    test = [r + (1,) for r, p in zip(rows, part) if p >= 0.85]
    test += [(u, warm + u % 4, 1) for u in range(0, n_users, 3)]  # cold test items
    val += [(u, warm + (u + 1) % 4, 1) for u in range(1, n_users, 5)]  # cold validation items
    for name, dim in (("visual", 8), ("textual", 8)):  # one shared dimension: CLIP-space models need it
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((n_items, dim)).astype(np.float32))
    exp = {"dataset": "gen", "random_seed": 1, "data_config": {
        "strategy": "fixed", "item_catalogue": catalogue,
        "train_path": _write(tmp_path / "train.tsv", train), "validation_path": _write(tmp_path / "val.tsv", val),
        "test_path": _write(tmp_path / "test.tsv", test),
        "side_information": [{"modality": m, "features": str(tmp_path / f"{m}.npy")} for m in ("visual", "textual")]}}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_dataset(exp)


@pytest.fixture(scope="module")
def cold_ds(tmp_path_factory):
    return _generated(tmp_path_factory.mktemp("gen"))


def test_generated_fixture_has_cold_items(cold_ds, tmp_path):
    assert cold_ds.n_items == 50 and int(cold_ds.cold_items().sum()) == 8
    ev = Evaluator(cold_ds, [10], ["Recall"])
    assert len(ev.cold_users("test")) == 20
    train = _generated(tmp_path, "train")
    assert train.n_items == 42 and train.test.nnz == cold_ds.test.nnz - 20


def test_sampler_never_draws_cold_items(cold_ds):
    cold = cold_ds.cold_items()
    sampler = BPRSampler(cold_ds.train, seed=0, negative_items=cold_ds.warm_items())
    for u, i, j in sampler.epoch(64):
        assert not cold[i].any() and not cold[j].any()
        assert not sampler.is_positive(u, j).any()
    from elliot.recommender.baselines import BPRMF

    params = {p.name: p.default for p in BPRMF.declared_params()}
    assert BPRMF(cold_ds, params, torch.device("cpu")).make_sampler(cold_ds, 0).pool is not None
    # without a pool, every item can be a negative (the 'train' catalogue has no cold item anyway)
    free = BPRSampler(cold_ds.train, seed=0)
    assert free.pool is None and cold[free.negatives(np.zeros(5000, dtype=np.int64))].any()
    with pytest.raises(ValueError, match="negative_items"):
        BPRSampler(cold_ds.train, seed=0, negative_items=[cold_ds.n_items])


SKIP = {"RecommendationFile", "RecommendationFolder", "ProxyRecommender"}  # they read stored lists (below)


def _params(cls, **extra):
    params = {p.name: p.default for p in cls.declared_params()}
    for key in ("factors", "factors_d", "factors_multimod", "embed_k", "embedding_size"):
        if isinstance(params.get(key), int) and not isinstance(params.get(key), bool):
            params[key] = 8
    params.update({"epochs": 1, "batch_size": 64, "seed": 3}, **extra)
    return params


def _train_and_score(cls, ds):
    from elliot.training.trainer import Trainer

    torch.manual_seed(3)
    model = cls(ds, _params(cls), torch.device("cpu"))
    rating = getattr(model, "task", "ranking") == "rating"
    metrics = ["RMSE"] if rating else ["Recall", "nDCG"]
    ev = Evaluator(ds, [5, 10], metrics)
    Trainer(model, ds, ev, epochs=1, batch_size=64, seed=3, validation_rate=1,
            validation_metric=f"{metrics[0]}@10", progress=False).fit()
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        try:
            if rating:
                users = torch.arange(ds.n_users).repeat_interleave(ds.n_items)
                scores = model.predict(users, torch.arange(ds.n_items).repeat(ds.n_users)).view(ds.n_users, -1)
            else:
                scores = model.score(torch.arange(ds.n_users))
        finally:
            model.end_scoring()
    return model, scores, ev.evaluate(model, "test")


@pytest.mark.parametrize("name", sorted(set(available_models()) - SKIP))
def test_every_model_trains_and_scores_cold_items(cold_ds, name):
    cls = available_models()[name]
    model, scores, res = _train_and_score(cls, cold_ds)
    assert scores.shape == (cold_ds.n_users, cold_ds.n_items)
    assert torch.isfinite(scores).all(), f"{name}: non-finite scores"
    cold = torch.from_numpy(cold_ds.cold_items())
    assert torch.isfinite(scores[:, cold]).all()
    for k, values in res.values.items():
        assert all(np.isfinite(v) for v in values.values()), (name, k, values)
    if getattr(model, "task", "ranking") != "rating":
        assert {"Recall_cold", "nDCG_cold"} <= set(res.values[10])
        assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: non-finite parameters"


def test_stored_recommendations_of_cold_items(cold_ds, tmp_path):
    cls = available_models()["RecommendationFile"]
    cold = np.flatnonzero(cold_ds.cold_items())
    lines = [f"{cold_ds.user_ids[u]}\t{cold_ds.item_ids[cold[u % len(cold)]]}\t1.0" for u in range(cold_ds.n_users)]
    path = tmp_path / "recs.tsv"
    path.write_text("\n".join(lines) + "\n")
    model = cls(cold_ds, {"path": str(path)}, torch.device("cpu"))
    model.fit(cold_ds)
    res = Evaluator(cold_ds, [5], ["Recall"]).evaluate(model, "test")
    assert res.values[5]["Recall_cold"] > 0


def test_determinism(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _generated(tmp_path / "a"), _generated(tmp_path / "b")
    assert dataset_fingerprint(a) == dataset_fingerprint(b)
    cls = available_models()["external.VBPR"]
    first, second = _train_and_score(cls, a), _train_and_score(cls, b)
    assert torch.equal(first[1], second[1]) and first[2].values == second[2].values


# ---- the MMRec-protocol bench configs and the results doc ------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
MMREC_CONFIGS = sorted((ROOT / "config_files" / "bench" / "mmrec_protocol").glob("*.yml"))


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "tiktok").exists(), reason="../shared/data absent")
@pytest.mark.parametrize("path", MMREC_CONFIGS, ids=lambda p: p.name)
def test_mmrec_protocol_configs(path):
    from benchmarks.results import protocol_of, run_key

    mine = load_config(path).experiment_dict()
    original = load_config(path.parent.parent / path.name).experiment_dict()
    assert protocol_of(mine) == "mmrec" and protocol_of(original) == "elliot"
    assert mine["models"] == original["models"] and mine["evaluation"]["cutoffs"] == original["evaluation"]["cutoffs"]
    assert {k: v for k, v in mine["data_config"].items() if k != "item_catalogue"} == \
        {k: v for k, v in original["data_config"].items() if k != "item_catalogue"}
    assert run_key(path) == f"mmrec_protocol/{path.name}" and run_key(path.parent.parent / path.name) == path.name


@pytest.mark.parametrize("path", MMREC_CONFIGS, ids=lambda p: p.name)
def test_mmrec_protocol_copies_match_their_originals(path):
    from benchmarks.mmrec_protocol import mmrec_copy

    original = path.parent.parent / path.name
    assert path.read_text() == mmrec_copy(original.read_text(), path.name), \
        f"{path.name} is stale: python benchmarks/mmrec_protocol.py {original.relative_to(ROOT)}"


def test_results_doc_has_one_section_per_protocol():
    import copy
    import json

    from benchmarks.results import RUNS, render_doc

    stored = json.loads(RUNS.read_text())
    # runs stored before protocols were recorded have no "protocol" key and render as Elliot's
    runs = {k: {kk: vv for kk, vv in v.items() if kk != "protocol"} for k, v in stored.items()
            if v.get("protocol", "elliot") == "elliot"}
    doc = render_doc(runs)
    assert "## Protocol: elliot" in doc and "## Protocol: mmrec" not in doc and "cold |" not in doc
    key = next(k for k in runs if k.startswith("vbpr_tiktok.yml::"))
    entry = copy.deepcopy(runs[key])
    entry["protocol"] = "mmrec"
    for t in entry["trials"]:
        t["test"]["20"].update({"Recall_cold": 0.0123, "nDCG_cold": 0.0045})
    runs[f"mmrec_protocol/{key}"] = entry
    doc = render_doc(runs)
    elliot_part, mmrec_part = doc.split("## Protocol: mmrec")
    assert "## Protocol: elliot" in elliot_part and "Recall@20 cold" not in elliot_part
    assert "Recall@20 cold | nDCG@20 cold" in mmrec_part and "| 0.0123 | 0.0045 |" in mmrec_part


def test_diffmm_negatives_all_draws_cold_items_as_the_authors_code(cold_ds):
    """DiffMM's ``negatives: all`` (HKUDS DataHandler.negSampling: any catalogue item) vs the default 'warm'
    (MMRec's sampler: never a cold item); the user's training items are rejected in both."""
    from external.models.diffmm import DiffMM
    params = {p.name: p.default for p in DiffMM.declared_params()}
    params.update(factors=8, dims=[12], batch_size=64, diff_batch_size=10)
    cold = cold_ds.cold_items()
    drawn = {}
    for rule in ("warm", "all"):
        model = DiffMM(cold_ds, {**params, "negatives": rule}, torch.device("cpu"))
        sampler = model.make_sampler(cold_ds, 0)
        users = np.repeat(np.arange(cold_ds.n_users, dtype=np.int64), 50)
        j = sampler.base.negatives(users)
        assert not sampler.base.is_positive(users, j).any()
        drawn[rule] = cold[j].mean()
    assert drawn["warm"] == 0 and drawn["all"] > 0.05  # 8 of 50 items are cold


def test_anchors_table_matches_a_long_trial_name_by_its_file_stem(monkeypatch):
    """The test-selected diagnostic names its trial by file stem (a long name is cut to a prefix plus a hash);
    the anchors table must still recognise it as today's selected configuration, and flag another one."""
    import benchmarks.best_test_epoch as bte
    from benchmarks.results import _published_rows
    from elliot.utils.paths import file_stem

    long_name = "DiffMM_" + "_".join(f"p{i}={i}" for i in range(60))
    assert file_stem(long_name) != long_name
    diag = {"DiffMM": {"best": 0.1056, "best_epoch": 36, "grid": False, "best_trial": file_stem(long_name)}}
    monkeypatch.setattr(bte, "stored", lambda dataset: diag)
    row = next(r for r in _published_rows("tiktok", {"DiffMM": 0.1017}, {"DiffMM": long_name})
               if r.startswith("| DiffMM"))
    assert row.endswith("| 0.1056 (epoch 36) |")
    other = long_name.replace("p59=59", "p59=58")
    row = next(r for r in _published_rows("tiktok", {"DiffMM": 0.1017}, {"DiffMM": other})
               if r.startswith("| DiffMM"))
    assert row.endswith("| 0.1056 (epoch 36, an earlier configuration) |")
