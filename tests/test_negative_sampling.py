"""Elliot's sampled evaluation: parsing, seeded uniform negatives, fixed files, metrics on the candidates."""
import numpy as np
import pytest

from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError, DataError
from elliot.evaluation.evaluator import Evaluator
from elliot.evaluation.negative_sampling import (parse_negative_sampling, read_negative_file,
                                                 sample_uniform_negatives)
from tests.helpers import FixedScores, csr, random_dataset

WHERE = "experiment.negative_sampling"


def _resolver(base):
    def resolve(value, where):
        path = base / value.replace("{0}", "ds")
        if not path.exists():
            raise ConfigError(f"c.yml: {where}: file not found: {path}")
        return str(path)
    return resolve


def test_parse(tmp_path):
    resolve = _resolver(tmp_path)
    assert parse_negative_sampling(None, resolve, WHERE, "c.yml") is None
    assert parse_negative_sampling({"strategy": "random", "num_items": 99}, resolve, WHERE, "c.yml", seed=7) == {
        "strategy": "random", "num_items": 99, "seed": 7, "file_path": None}
    (tmp_path / "data" / "ds").mkdir(parents=True)
    (tmp_path / "cfg").mkdir()
    out = parse_negative_sampling({"strategy": "random", "num_items": "5", "save_on_disk": True},
                                  _resolver(tmp_path / "cfg"), WHERE, "c.yml")
    assert out["num_items"] == 5 and out["file_path"].endswith("negative.tsv")
    (tmp_path / "t.neg").write_text("")
    assert parse_negative_sampling({"strategy": "fixed", "files": "t.neg"}, resolve, WHERE, "c.yml") == {
        "strategy": "fixed", "files": [str(tmp_path / "t.neg")]}
    bad = [({"strategy": "randm", "num_items": 3}, "did you mean 'random'"),
           ({"num_items": 3}, "strategy is required"),
           ({"strategy": "random"}, "num_items: None must be a positive integer"),
           ({"strategy": "random", "num_items": 0}, "num_items: 0"),
           ({"strategy": "random", "num_item": 3}, "did you mean 'num_items'"),
           ({"strategy": "fixed", "files": []}, "list of one or two paths"),
           ({"strategy": "fixed", "files": ["t.neg"], "num_items": 3}, "num_items is for strategy random"),
           ({"strategy": "fixed", "files": ["missing.neg"]}, "file not found"),
           ({"strategy": "random", "num_items": 3, "file_path": "nowhere/x.tsv"}, "file not found"),
           ({"strategy": "random", "num_items": 3, "files": ["t.neg"]}, "files is for strategy fixed")]
    for raw, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_negative_sampling(raw, resolve, WHERE, "c.yml")


def test_uniform_negatives_are_seeded_exact_and_uniform():
    rng = np.random.default_rng(0)
    n_users, n_items = 3000, 20
    exclude = csr(np.repeat(np.arange(n_users), 4), rng.integers(0, n_items, 4 * n_users), (n_users, n_items))
    users = np.arange(n_users)
    a = sample_uniform_negatives(users, exclude, 5, np.random.default_rng(3))
    b = sample_uniform_negatives(users, exclude, 5, np.random.default_rng(3))
    assert (a != b).nnz == 0
    assert np.all(np.diff(a.indptr) == 5)
    assert a.multiply(exclude.astype(bool)).nnz == 0  # never an excluded item
    # uniform over the allowed items: expected count of item i = Σ_u 5 [i allowed] / |allowed_u|
    allowed = ~exclude.toarray().astype(bool)
    expected = (allowed * (5 / allowed.sum(1, keepdims=True))).sum(0)
    counts = np.asarray(a.sum(0)).ravel()
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    # a user with fewer allowed items than asked gets all of them (exact fallback)
    few = csr([0] * 18, list(range(18)), (1, 20))
    assert sorted(sample_uniform_negatives(np.array([0]), few, 5, np.random.default_rng(0)).indices) == [18, 19]


def test_random_sampled_evaluation(tmp_path):
    ds = random_dataset(n_users=40, n_items=60)
    scores = np.random.default_rng(2).random((40, 60))
    ns = {"strategy": "random", "num_items": 10, "seed": 5, "file_path": str(tmp_path / "negative.tsv")}
    ev = Evaluator(ds, [5, 10], ["Recall", "nDCG", "AUC", "NumRetrieved"], negative_sampling=ns)
    cand = ev.candidates("test")
    users = ev.evaluated_users("test")
    positives = (ds.train + ds.validation + ds.test).astype(bool)
    neg = cand - cand.multiply(ds.test.astype(bool))
    assert neg.multiply(positives).nnz == 0  # negatives are never train / validation / test items
    assert np.all(np.diff(neg.indptr)[users] == 10)
    assert (Evaluator(ds, [5], ["Recall"], negative_sampling=ns).candidates("test") != cand).nnz == 0  # seeded
    other = Evaluator(ds, [5], ["Recall"], negative_sampling={**ns, "seed": 6, "file_path": None}).candidates("test")
    assert (other != cand).nnz > 0
    assert (ev.candidates("validation") != cand).nnz > 0
    res = ev.evaluate(FixedScores(scores), "test")
    # every top item is a candidate; each list holds at most |test_u| + 10 items
    ctx = ev.rank(FixedScores(scores), "test")
    listed = np.isfinite(ctx.top_scores)
    rows, cols = np.nonzero(listed)
    assert np.all(np.asarray(cand[users[rows], ctx.top_items[rows, cols]]).ravel())
    assert np.all(ctx.n_candidates == np.diff(cand.indptr)[users])
    full = Evaluator(ds, [5, 10], ["Recall"]).evaluate(FixedScores(scores), "test")
    assert res.get("Recall", 10) >= full.get("Recall", 10)  # fewer competitors than the full catalogue
    # the written negatives reproduce the evaluation as a fixed strategy
    files = [str(tmp_path / "negative.tsv"), str(tmp_path / "negative.validation.tsv")]
    fixed = Evaluator(ds, [5, 10], ["Recall", "nDCG", "AUC", "NumRetrieved"],
                      negative_sampling={"strategy": "fixed", "files": files})
    assert fixed.evaluate(FixedScores(scores), "test").values == res.values
    assert fixed.evaluate(FixedScores(scores), "validation").values == ev.evaluate(FixedScores(scores),
                                                                                 "validation").values


def _dataset():
    # 2 users, 6 items. user 0 trains on item 0, test {1}; user 1 trains on item 5, test {2, 3}
    return Dataset("t", np.array(["10", "20"]), np.array(list("abcdef")), train=csr([0, 1], [0, 5], (2, 6)),
                   test=csr([0, 1, 1], [1, 2, 3], (2, 6)))


SCORES = [[9, 1, 5, 4, 3, 2],  # full ranking of user 0 (0 masked): 2, 3, 4, 5, 1
          [9, 8, 1, 7, 6, 9]]  # user 1 (5 masked): 0, 1, 3, 4, 2


def test_fixed_file_metrics(tmp_path):
    path = tmp_path / "test.negative"
    # NCF's "(user, item)" first field; an unknown item and an unknown user are ignored; a train item (0) stays masked
    path.write_text("(10, b)\tf\tzz\ta\n(99,)\tc\n20\te\n")
    neg = read_negative_file(str(path), _dataset().user_ids, _dataset().item_ids)
    assert neg[0].indices.tolist() == [0, 5] and neg[1].indices.tolist() == [4]
    ev = Evaluator(_dataset(), [1, 2], ["HR", "Recall", "NumRetrieved", "AUC"],
                   negative_sampling={"strategy": "fixed", "files": [str(path)]})
    res = ev.evaluate(FixedScores(SCORES), "test")
    # user 0 candidates {1, 5} (0 masked): ranking 5, 1 -> HR@1 0, HR@2 1; user 1 candidates {2, 3, 4}: 3, 4, 2
    assert res.get("HR", 1) == pytest.approx(0.5) and res.get("HR", 2) == pytest.approx(1.0)
    assert res.get("Recall", 2) == pytest.approx((1 + 1 / 2) / 2)
    assert res.get("NumRetrieved", 2) == pytest.approx(2)
    # AUC: user 0 N = 2 - 1 + 1 = 2, 1 negative above item 1 -> 1/2; user 1 N = 3 - 2 + 1 = 2: item 3 2/2,
    # item 2 (item 4 above) 1/2
    assert res.get("AUC", 1) == pytest.approx((.5 + 1 + .5) / 3)
    path.write_text("(10, b)\tf\n")
    with pytest.raises(DataError, match="no negatives for 1 of the 2 evaluated users .* user '20'"):
        Evaluator(_dataset(), [1], ["HR"], negative_sampling={"strategy": "fixed", "files": [str(path)]}).evaluate(
            FixedScores(SCORES), "test")
