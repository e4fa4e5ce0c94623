"""Elliot's metric catalogue on hand-computed cases: every simple and complex metric, graded vs binary
nDCG, merge consistency, the config-side parser, and the evaluator's new context fields."""
import dataclasses

import numpy as np
import pytest

from elliot.errors import ConfigError, DataError
from elliot.evaluation.evaluator import Evaluator
from elliot.evaluation.metrics import (COMPLEX_METRICS, METRICS, RankingContext, compute_metrics, merge_contexts,
                                       parse_complex_metrics, prepare_complex_metrics)
from tests.helpers import FixedScores, csr, random_dataset

inf = np.inf
L2, L3 = np.log2(3), 2.0  # log2(3), log2(4): discounts of ranks 1 and 2 are 1/L2 and 1/L3

# 3 users, 6 items, top-3 lists, relevance threshold t = 1 so the gain of rating r is 2^r - 1.
#  user 0: list [0, 1, 2] (scores .9 .8 .7), relevant {0: r5, 2: r3, 4: r4} -> hits ranks 0, 2; gains 31, 7
#          full ranking 0 .9, 1 .8, 2 .7, 3 .2, 4 .1, 5 .0 (6 candidates): negatives above 0 / 2 / 4 = 0, 1, 2
#  user 1: list [3, 4] (item 5 masked, -inf), relevant {4: r2} -> hit rank 1; 5 candidates, 1 negative above
#  user 2: list [1, 0, 3], relevant {5: r1}, which is masked (score -inf); 5 candidates
# training popularity [4, 3, 2, 1, 0, 0] (10 interactions), 5 training users.
CTX = RankingContext(
    top_items=np.array([[0, 1, 2], [3, 4, 5], [1, 0, 3]]),
    hits=np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool),
    n_relevant=np.array([3, 1, 1]),
    item_popularity=np.array([4.0, 3, 2, 1, 0, 0]), n_items=6,
    top_scores=np.array([[.9, .8, .7], [.6, .5, -inf], [.4, .3, .2]]),
    gains=np.array([[31.0, 0, 7], [0, 3, 0], [0, 0, 0]]),
    ideal_gains=np.array([[31.0, 15, 7], [3, 0, 0], [1, 0, 0]]), graded=True,
    relevant_items=np.array([0, 2, 4, 4, 5]), relevant_ratings=np.array([5.0, 3, 4, 2, 1]),
    relevant_scores=np.array([.9, .7, .1, .5, -inf]), relevant_neg_above=np.array([0, 1, 2, 1, np.nan]),
    n_train=np.array([0, 1, 1]), n_candidates=np.array([6, 5, 5]), user_index=np.array([0, 1, 2]),
    candidate_item_counts=np.array([3, 3, 3, 3, 3, 1]), n_users_total=5)


def value(name, k=3, ctx=CTX):
    return compute_metrics(ctx, [k], [name])[0][k][name]


def test_accuracy_metrics():
    assert value("Precision") == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert value("Recall") == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert value("HR") == pytest.approx(2 / 3)
    assert value("MRR") == pytest.approx((1 + 1 / 2 + 0) / 3)
    # MAP (Elliot's docs): user 0 (1/1 + 2/3) / min(3, 3), user 1 (1/2) / 1
    assert value("MAP") == pytest.approx(((1 + 2 / 3) / 3 + 0.5 + 0) / 3)
    # MAR (Elliot's code): mean of Recall@1..3; user 0: 1/3, 1/3, 2/3; user 1: 0, 1, 1
    assert value("MAR") == pytest.approx((4 / 9 + 2 / 3 + 0) / 3)
    f1 = (2 / 3 + 2 * (1 / 3) * 1 / (1 / 3 + 1) + 0) / 3  # user 0: P = R = 2/3
    assert value("F1") == pytest.approx(f1)
    assert value("DSC") == pytest.approx(f1) and value("ExtendedF1") == pytest.approx(f1)


def test_ndcg_graded_and_binary():
    # graded: user 0 DCG = 31 + 7/2 = 34.5, IDCG = 31 + 15/log2(3) + 7/2; user 1: (3/log2 3) / 3
    graded = ((34.5 / (31 + 15 / L2 + 3.5)) + (3 / L2) / 3 + 0) / 3
    assert value("nDCG") == pytest.approx(graded)
    # binary: user 0 (1 + 1/2) / (1 + 1/log2 3 + 1/2), user 1 (1/log2 3) / 1
    binary = ((1.5 / (1 + 1 / L2 + 0.5)) + 1 / L2 + 0) / 3
    assert value("nDCGRendle2020") == pytest.approx(binary)
    assert value("nDCG", ctx=dataclasses.replace(CTX, graded=False)) == pytest.approx(binary)
    # the old five-field context keeps the binary formula, bit for bit
    old = RankingContext(CTX.top_items, CTX.hits, CTX.n_relevant, CTX.item_popularity, 6)
    assert value("nDCG", ctx=old) == value("nDCGRendle2020")
    assert value("nDCG", 1) == pytest.approx((31 / 31 + 0 + 0) / 3)


def test_auc_family():
    # user 0: N = 6 - 3 + 1 = 4, positives (4-0)/4, (4-1)/4, (4-2)/4; user 1: N = 5 - 1 + 1 = 5, (5-1)/5;
    # user 2's positive is masked: out of AUC, 0 in GAUC
    assert value("AUC") == pytest.approx((1 + .75 + .5 + .8) / 4)
    assert value("GAUC") == pytest.approx(((1 + .75 + .5) / 3 + .8 + 0) / 3)
    # LAUC@3: user 0 hits at ranks 0 and 2 (1 hit before): (4/4 + 3/4) / min(3, 3); user 1: (5-1)/5 / 1
    assert value("LAUC") == pytest.approx((1.75 / 3 + .8 + 0) / 3)
    with pytest.raises(ValueError, match="relevant_neg_above"):
        value("AUC", ctx=dataclasses.replace(CTX, relevant_neg_above=None))


def test_rating_metrics():
    # errors of the listed relevant items: |.9-5| |.7-3| |.1-4| |.5-2|; the masked one adds 0 but counts
    errs = np.array([4.1, 2.3, 3.9, 1.5])
    assert value("MAE") == pytest.approx(errs.sum() / 5)
    assert value("MSE") == pytest.approx((errs ** 2).sum() / 5)
    assert value("RMSE") == pytest.approx(np.sqrt((errs ** 2).sum() / 5))
    per_user = compute_metrics(CTX, [3], ["MAE"])[1][3]["MAE"]
    np.testing.assert_allclose(per_user, [(4.1 + 2.3 + 3.9) / 3, 1.5, 0.0])


def test_coverage_and_diversity():
    assert value("ItemCoverage") == 5  # {0,1,2} ∪ {3,4} ∪ {1,0,3}; item 5 is -inf for user 1
    assert value("UserCoverage") == 3
    assert value("UserCoverageAtN", 3) == 2 and value("UserCoverageAtN", 2) == 3
    assert value("NumRetrieved") == pytest.approx(8 / 3)
    # counts sorted [0,1,1,2,2,2], N = 8: G = (0 - 3 - 1 + 2 + 6 + 10) / (5 * 8) = 0.35
    assert value("Gini") == pytest.approx(0.65)
    # SEntropy: weights w = (2/3, 2/3, 1/3, 5/6, 1/2), -log2(c/8) = (2, 2, 3, 2, 3), over 3 users
    assert value("SEntropy") == pytest.approx((4 / 3 + 4 / 3 + 1 + 5 / 3 + 1.5) / 3)


def test_novelty():
    norm0, norm1 = 1 + 1 / L2 + 1 / L3, 1 + 1 / L2  # user 1's list holds 2 items
    # EFD novelty -log2(pop / 10); unseen items 4, 5 get the largest seen one, -log2(0.1)
    nov = -np.log2(np.array([.4, .3, .2, .1, .1, .1]))
    efd = ((nov[0] + nov[2] / L3) / norm0 + (nov[4] / L2) / norm1 + 0) / 3
    assert value("EFD") == pytest.approx(efd) and value("ExtendedEFD") == pytest.approx(efd)
    # EPC novelty 1 - pop / 5 training users
    nov = 1 - CTX.item_popularity / 5
    epc = ((nov[0] + nov[2] / L3) / norm0 + (nov[4] / L2) / norm1 + 0) / 3
    assert value("EPC") == pytest.approx(epc)
    prepared = prepare_complex_metrics([{"metric": "ExtendedEPC", "relevance": "discounted"}], np.arange(3),
                                       np.arange(6), csr([0], [0], (3, 6)))
    got = compute_metrics(CTX, [3], [], prepared)[0][3]["ExtendedEPC"]
    assert got == pytest.approx(((31 * nov[0] + 7 * nov[2] / L3) / norm0 + (3 * nov[4] / L2) / norm1) / 3)


def test_popularity_bias():
    # short head = 80% of 10 interactions: items 0 (4), 1 (3), 2 (2) -> cumulative 9 >= 8; long tail {3, 4, 5}
    assert value("ARP") == pytest.approx((9 / 3 + 1 / 2 + 8 / 3) / 3)
    assert value("APLT") == pytest.approx((0 + 2 / 2 + 1 / 3) / 3)
    assert value("ACLT") == pytest.approx((0 + 2 + 1) / 3)
    # PopRSP: head listed 3 + 0 + 2, tail 0 + 2 + 1; candidates head 3+3+3, tail 3+3+1
    pr = np.array([5 / 9, 3 / 7])
    assert value("PopRSP") == pytest.approx(np.std(pr) / np.mean(pr))
    # PopREO: hits head {0, 2}, tail {4}; relevant candidates head {0, 2}, tail {4 (u0), 4 (u1)}
    pr = np.array([2 / 2, 1 / 2])
    assert value("PopREO") == pytest.approx(np.std(pr) / np.mean(pr))
    assert value("ExtendedPopRSP") == value("PopRSP")


def test_all_metrics_merge_consistently():
    def user(u, counts):
        r = slice(u, u + 1)
        flat = slice(int(CTX.n_relevant[:u].sum()), int(CTX.n_relevant[:u + 1].sum()))
        return dataclasses.replace(
            CTX, top_items=CTX.top_items[r], hits=CTX.hits[r], n_relevant=CTX.n_relevant[r],
            top_scores=CTX.top_scores[r], gains=CTX.gains[r], ideal_gains=CTX.ideal_gains[r],
            relevant_items=CTX.relevant_items[flat], relevant_ratings=CTX.relevant_ratings[flat],
            relevant_scores=CTX.relevant_scores[flat], relevant_neg_above=CTX.relevant_neg_above[flat],
            n_train=CTX.n_train[r], n_candidates=CTX.n_candidates[r], user_index=CTX.user_index[r],
            candidate_item_counts=np.array(counts), graded=u == 0)
    parts = [user(0, [1] * 6), user(1, [1, 1, 1, 1, 1, 0]), user(2, [1, 1, 1, 1, 1, 0])]
    merged = merge_contexts(parts)
    assert merged.graded and list(merged.candidate_item_counts) == [3, 3, 3, 3, 3, 1]
    a, pa = compute_metrics(merged, [1, 2, 3], list(METRICS))
    b, pb = compute_metrics(CTX, [1, 2, 3], list(METRICS))
    assert a == b
    assert merge_contexts(parts[:1] + [dataclasses.replace(parts[1], gains=None)]).gains is None


# ---- complex metrics --------------------------------------------------------------------------------
USERS, ITEMS = np.array(["u0", "u1", "u2"]), np.array([f"i{n}" for n in range(6)])
TRAIN = csr([0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 3, 1], (3, 6))  # u0 {0,1,2}, u1 {0,3}, u2 {1}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "u.tsv").write_text("u0\ta\nu1\tb\nu2\tb\nghost\tc\n")  # the unknown user is ignored
    (tmp_path / "i.tsv").write_text("i0\tx\ni1\tx\ni2\ty\ni3\ty\ni4\tz\n")  # i5 has no cluster
    (tmp_path / "f.tsv").write_text("i0\tf1\tf2\ni1\tf2\ni2\tf3\ni3\tf4\ni4\tf1\tf5\n")
    return tmp_path


def _complex(entries, ctx=CTX, k=3):
    prepared = prepare_complex_metrics(entries, USERS, ITEMS, TRAIN)
    return compute_metrics(ctx, [k], [], prepared)


def test_mad_metrics(files):
    u, i = str(files / "u.tsv"), str(files / "i.tsv")
    values = _complex([{"metric": "UserMADrating", "clustering_name": "H", "clustering_file": u},
                       {"metric": "UserMADranking", "clustering_name": "H", "clustering_file": u},
                       {"metric": "ItemMADrating", "clustering_name": "P", "clustering_file": i},
                       {"metric": "ItemMADranking", "clustering_name": "P", "clustering_file": i}])[0][3]
    # user mean scores .8 (a) | .55, .3 (b)
    assert values["UserMADrating_H"] == pytest.approx(abs(.8 - (.55 + .3) / 2))
    ndcg0, ndcg1 = 34.5 / (31 + 15 / L2 + 3.5), (3 / L2) / 3
    assert values["UserMADranking_H"] == pytest.approx(abs(ndcg0 - ndcg1 / 2))
    # per item (relevant score sum / times listed): 0 .9/2, 1 0, 2 .7, 3 0, 4 .5 -> x .225, y .35, z .5
    assert values["ItemMADrating_P"] == pytest.approx((.125 + .275 + .15) / 3)
    # gains: 0 31/2, 1 0, 2 7, 3 0, 4 3 -> x 7.75, y 3.5, z 3
    assert values["ItemMADranking_P"] == pytest.approx((4.25 + 4.75 + 0.5) / 3)


def test_rsp_reo(files):
    i = str(files / "i.tsv")
    values = _complex([{"metric": "RSP", "clustering_name": "P", "clustering_file": i},
                       {"metric": "REO", "clustering_name": "P", "clustering_file": i}])[0][3]
    pr = np.array([4 / 6, 3 / 6, 1 / 3])  # listed x 4, y 3, z 1 over candidates x 6, y 6, z 3
    assert [values[f"RSP-ProbToBeRanked_items:P-{c}"] for c in "xyz"] == pytest.approx(list(pr))
    assert values["RSP_items:P"] == pytest.approx(np.std(pr) / np.mean(pr))
    pr = np.array([1, 1, .5])  # hits x 1, y 1, z 1 over relevant candidates x 1, y 1, z 2
    assert values["REO_items:P"] == pytest.approx(np.std(pr) / np.mean(pr))


def test_bias_disparity(files):
    spec = {"user_clustering_name": "H", "user_clustering_file": str(files / "u.tsv"),
            "item_clustering_name": "P", "item_clustering_file": str(files / "i.tsv")}
    with np.errstate(all="ignore"):
        values = _complex([{"metric": m, **spec} for m in ("BiasDisparityBS", "BiasDisparityBR",
                                                           "BiasDisparityBD")])[0][3]
    name = "{}_users:H-{}_items:P-{}".format
    # P(C) = (2, 2, 1) / 5; BS: a (u0 trains 0,1,2) and b (u1 0,3; u2 1) both (2/3, 1/3, 0) / P(C)
    for g in "ab":
        assert [values[name("BiasDisparityBS", g, c)] for c in "xyz"] == pytest.approx([5 / 3, 5 / 6, 0])
    # BR: a lists 0,1,2 -> as BS; b lists 3,4 and 1,0,3 -> (2, 2, 1) / 5 / P(C) = 1
    assert [values[name("BiasDisparityBR", "b", c)] for c in "xyz"] == pytest.approx([1, 1, 1])
    assert values[name("BiasDisparityBD", "b", "x")] == pytest.approx((1 - 5 / 3) / (5 / 3))
    assert values[name("BiasDisparityBD", "b", "y")] == pytest.approx((1 - 5 / 6) / (5 / 6))
    assert values[name("BiasDisparityBD", "a", "x")] == pytest.approx(0)
    # without a user clustering: one group named "-0"
    values = _complex([{"metric": "BiasDisparityBR", "item_clustering_name": "P",
                        "item_clustering_file": str(files / "i.tsv")}])[0][3]
    assert values["BiasDisparityBR_users:-0_items:P-x"] == pytest.approx(4 / 8 / .4)


def test_srecall_dsc_extended_f1(files):
    values, per_user = _complex([{"metric": "SRecall", "feature_data": str(files / "f.tsv")},
                                 {"metric": "DSC", "beta": 2.0, "metric_0": "Precision", "metric_1": "Recall"},
                                 {"metric": "ExtendedF1", "metric_0": "nDCG", "metric_1": "Recall"}])
    # user 0 hits items 0, 2 -> {f1, f2, f3}; user 1 hits item 4 -> {f1, f5}; 5 features in all
    assert values[3]["SRecall"] == pytest.approx((3 / 5 + 2 / 5 + 0) / 3)
    # DSC β=2: user 0 P = R = 2/3 -> 2/3; user 1 P 1/3, R 1 -> (5/3) / (4/3 + 1)
    assert values[3]["DSC"] == pytest.approx((2 / 3 + 5 / 7 + 0) / 3)
    assert per_user[3]["DSC"].shape == (3,)
    assert "ExtendedF1_m0:nDCG-m1:Recall" in values[3]


def test_parse_complex_metrics(files):
    def resolve(value, where):
        return str(files / value)

    out = parse_complex_metrics([{"metric": "usermadrating", "clustering_name": "H", "clustering_file": "u.tsv"},
                                 {"metric": "DSC"}, {"metric": "ExtendedEPC", "relevance": "Discounted"}],
                                resolve, "experiment.evaluation.complex_metrics", "c.yml")
    assert out[0] == {"metric": "UserMADrating", "clustering_name": "H", "clustering_file": str(files / "u.tsv")}
    assert out[1] == {"metric": "DSC", "beta": 1.0, "metric_0": "Precision", "metric_1": "Recall"}
    assert out[2]["relevance"] == "discounted"
    where = "experiment.evaluation.complex_metrics"
    bad = [([{"metric": "UserMADratin", "clustering_file": "u.tsv"}], r"did you mean 'UserMADrating'"),
           ([{"metric": "REO", "clustering_nme": "x", "clustering_file": "u.tsv"}],
            r"\[0\].*did you mean 'clustering_name'"),
           ([{"metric": "REO"}], r"REO needs 'clustering_file'"),
           ([{"metric": "nDCG"}], r"takes no parameters; list it in simple_metrics"),
           ([{"metric": "DSC", "metric_0": "Gini"}], r"unknown per-user metric 'Gini'"),
           ([{"metric": "DSC", "beta": "two"}], r"beta: 'two' must be a number"),
           ("REO", r"must be a list"), ([{"clustering_file": "x"}], r"'metric' key")]
    for entries, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_complex_metrics(entries, resolve, where, "c.yml")
    assert set(COMPLEX_METRICS) >= {"UserMADrating", "UserMADranking", "ItemMADrating", "ItemMADranking",
                                    "BiasDisparityBD", "BiasDisparityBR", "BiasDisparityBS", "RSP", "REO", "SRecall"}


def test_bad_cluster_files(tmp_path):
    (tmp_path / "one.tsv").write_text("u0\n")
    with pytest.raises(DataError, match="line 1"):
        prepare_complex_metrics([{"metric": "RSP", "clustering_file": str(tmp_path / "one.tsv")}], USERS, ITEMS, TRAIN)
    (tmp_path / "none.tsv").write_text("zz\t1\n")
    with pytest.raises(DataError, match="none of its 1 ids"):
        prepare_complex_metrics([{"metric": "RSP", "clustering_file": str(tmp_path / "none.tsv")}], USERS, ITEMS, TRAIN)


# ---- the evaluator fills the context ------------------------------------------------------------------
def _rated_dataset():
    # 2 users, 6 items; user 0 trains on item 5, test ratings {0: 5, 2: 3, 4: 1}; user 1 trains on 0, test {1: 4}
    from elliot.dataset.dataset import Dataset

    train = csr([0, 1], [5, 0], (2, 6))
    test = csr([0, 0, 0, 1], [0, 2, 4, 1], (2, 6), values=[5, 3, 1, 4])
    return Dataset("r", np.array(["a", "b"]), np.array(list("pqrstu")), train=train, test=test)


SCORES = [[.9, .8, .7, .6, .5, 9], [9, .1, .2, .3, .4, .5]]


def test_rank_fills_the_context():
    ev = Evaluator(_rated_dataset(), [3], ["nDCG"], relevance_threshold=2)
    ctx = ev.rank(FixedScores(SCORES), "test", full_ranks=True)
    # relevant (r >= 2): user 0 {0: 5, 2: 3}, user 1 {1: 4}; gains 2^(r - 2 + 1) - 1 = 15, 3, 7
    assert ctx.top_items.tolist() == [[0, 1, 2], [5, 4, 3]]
    np.testing.assert_array_equal(ctx.gains, [[15, 0, 3], [0, 0, 0]])
    np.testing.assert_array_equal(ctx.ideal_gains, [[15, 3, 0], [7, 0, 0]])
    assert ctx.graded and list(ctx.relevant_items) == [0, 2, 1] and list(ctx.relevant_ratings) == [5, 3, 4]
    np.testing.assert_allclose(ctx.relevant_scores, [.9, .7, .1])
    # user 0 ranking 0,1,2,3,4 (5 masked): negatives above item 0: 0, above item 2: 1 (item 1; item 4 is not
    # relevant at t = 2); user 1 ranking 5,4,3,2,1: 4 negatives above item 1
    np.testing.assert_array_equal(ctx.relevant_neg_above, [0, 1, 4])
    assert list(ctx.n_candidates) == [5, 5] and list(ctx.n_train) == [1, 1] and list(ctx.user_index) == [0, 1]
    assert list(ctx.candidate_item_counts) == [1, 2, 2, 2, 2, 1] and ctx.n_users_total == 2
    res = ev.evaluate(FixedScores(SCORES), "test", metrics=["nDCG", "AUC", "GAUC"])
    assert res.get("nDCG", 3) == pytest.approx((15 + 3 / 2) / (15 + 3 / L2) / 2)
    # AUC: user 0 N = 5 - 2 + 1 = 4: 4/4, 3/4; user 1 N = 5 - 1 + 1 = 5: 1/5
    assert res.get("AUC", 3) == pytest.approx((1 + .75 + .2) / 3)
    assert res.get("GAUC", 3) == pytest.approx(((1 + .75) / 2 + .2) / 2)


def test_binary_ndcg_unchanged_and_batch_invariant():
    from elliot.evaluation.metrics.accuracy import _binary_ndcg

    ds = random_dataset(n_users=40, n_items=25)
    scores = np.random.default_rng(1).random((40, 25))
    ev = Evaluator(ds, [5, 10], list(METRICS), batch_size=7)
    ctx = ev.rank(FixedScores(scores), "test", full_ranks=True)
    assert not ctx.graded
    np.testing.assert_array_equal(compute_metrics(ctx, [10], ["nDCG"])[1][10]["nDCG"], _binary_ndcg(ctx, 10))
    a = ev.evaluate(FixedScores(scores), "test").values
    b = Evaluator(ds, [5, 10], list(METRICS), batch_size=1000).evaluate(FixedScores(scores), "test").values
    assert a.keys() == b.keys() and all(a[k][m] == pytest.approx(b[k][m], nan_ok=True) for k in a for m in a[k])
    # the same ratings scaled to 5: still one relevance level, the same binary nDCG
    ds5 = dataclasses.replace(ds, test=ds.test * 5)
    assert Evaluator(ds5, [10], ["nDCG"]).evaluate(FixedScores(scores), "test").values == \
        Evaluator(ds, [10], ["nDCG"]).evaluate(FixedScores(scores), "test").values


def test_evaluator_complex_metrics_from_files(tmp_path):
    ds = _rated_dataset()
    (tmp_path / "u.tsv").write_text("a\t0\nb\t1\n")
    (tmp_path / "i.tsv").write_text("p\t0\nq\t0\nr\t1\ns\t1\nt\t1\n")
    entries = parse_complex_metrics(
        [{"metric": "UserMADrating", "clustering_name": "G", "clustering_file": "u.tsv"},
         {"metric": "REO", "clustering_name": "Pop", "clustering_file": "i.tsv"},
         {"metric": "DSC", "metric_0": "GAUC"}],
        lambda v, w: str(tmp_path / v), "experiment.evaluation.complex_metrics", "c.yml")
    ev = Evaluator(ds, [2], ["Recall"], relevance_threshold=2, complex_metrics=entries)
    res = ev.evaluate(FixedScores(SCORES), "test")
    # user 0 top-2 scores .9 .8, user 1 .5 .4
    assert res.get("UserMADrating_G", 2) == pytest.approx(abs(.85 - .45))
    # hits: user 0 item 0 (cluster 0); relevant candidates: 0 (c0), 2 (c1), 1 (c0) -> P = (1/2, 0/1)
    assert res.get("REO-ProbToBeRanked_items:Pop-0", 2) == pytest.approx(.5)
    assert res.get("REO_items:Pop", 2) == pytest.approx(1.0)
    assert "DSC" in res.per_user[2] and "Recall" in res.per_user[2]
    assert "REO_items:Pop" not in ev.evaluate(FixedScores(SCORES), "test", metrics=["Recall"]).values[2]


def test_forks_clustered_metrics(files):
    """Formal-MultiMod-Rec's clustered_<M>: the per-user metric averaged over each user cluster."""
    u = str(files / "u.tsv")
    values = _complex([{"metric": "clustered_Recall", "user_clustering_name": "W", "user_clustering_file": u},
                       {"metric": "clustered_ARP", "user_clustering_name": "W", "user_clustering_file": u}])[0][3]
    # Recall@3 per user: 2/3, 1/1, 0/1 -> cluster a {u0} 2/3, cluster b {u1, u2} 1/2
    assert values["Recall_users:W-a"] == pytest.approx(2 / 3)
    assert values["Recall_users:W-b"] == pytest.approx(0.5)
    # ARP@3 over valid (recommended) items: u0 (4+3+2)/3, u1 (1+0)/2, u2 (3+4+1)/3
    assert values["ARP_users:W-a"] == pytest.approx(value("ARP", ctx=dataclasses.replace(
        CTX, **{f: getattr(CTX, f)[:1] for f in ("top_items", "hits", "n_relevant", "top_scores", "gains",
                                                 "ideal_gains", "n_train", "n_candidates", "user_index")})))
