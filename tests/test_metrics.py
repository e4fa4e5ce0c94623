"""Every metric on hand-computed cases."""
import numpy as np
import pytest

from elliot.evaluation.metrics import METRICS, RankingContext, compute_metrics, merge_contexts, short_head_items
from elliot.evaluation.stats import paired_ttest, pairwise_tests, wilcoxon_test

# 2 users, 6 items, top-3 lists.  user 0: hits at ranks 1 and 3, 2 relevant; user 1: no hit, 4 relevant.
CTX = RankingContext(top_items=np.array([[0, 1, 2], [3, 4, 0]]),
                     hits=np.array([[True, False, True], [False, False, False]]),
                     n_relevant=np.array([2, 4]),
                     item_popularity=np.array([10.0, 5.0, 1.0, 1.0, 0.0, 3.0]), n_items=6)


def value(name, k):
    return compute_metrics(CTX, [k], [name])[0][k][name]


def test_accuracy_metrics():
    assert value("Precision", 3) == pytest.approx((2 / 3 + 0) / 2)
    assert value("Recall", 3) == pytest.approx((2 / 2 + 0) / 2)
    assert value("HR", 1) == pytest.approx(0.5)
    # DCG = 1 + 1/log2(4) = 1.5; IDCG over min(2,3)=2 positions = 1 + 1/log2(3)
    assert value("nDCG", 3) == pytest.approx((1.5 / (1 + 1 / np.log2(3))) / 2)
    # AP@3 user 0 = (1/1 + 2/3) / min(3, 2)
    assert value("MAP", 3) == pytest.approx(((1 + 2 / 3) / 2) / 2)
    assert value("MRR", 3) == pytest.approx(0.5)
    p, r = 2 / 3, 1.0
    assert value("F1", 3) == pytest.approx((2 * p * r / (p + r)) / 2)


def test_beyond_accuracy_metrics():
    assert value("ItemCoverage", 3) == 5  # items 0,1,2,3,4
    # counts over 6 items: item0:2, items 1..4:1, item5:0 -> sorted [0,1,1,1,1,2], total 6
    counts = np.array([0, 1, 1, 1, 1, 2.0])
    j = np.arange(1, 7)
    # Elliot's GiniIndex reports 1 - G (1 = items recommended equally often)
    assert value("Gini", 3) == pytest.approx(1 - ((2 * j - 7) * counts).sum() / (5 * 6))
    disc = 1 / np.log2(np.arange(2, 5))
    novelty0 = 1 - np.array([10, 5, 1]) / 10
    assert value("EPC", 3) == pytest.approx(((disc * novelty0 * [1, 0, 1]).sum() / disc.sum()) / 2)
    assert value("ARP", 3) == pytest.approx(((10 + 5 + 1) / 3 + (1 + 0 + 10) / 3) / 2)
    assert list(np.flatnonzero(short_head_items(CTX.item_popularity, 0.2))) == [0]  # 20% of 20 = 4 -> item 0
    # Elliot's short head: 80% of the 20 interactions = 16 -> items 0 (10), 1 (5), 5 (3): cumulative 18 >= 16
    head = short_head_items(CTX.item_popularity)
    assert list(np.flatnonzero(head)) == [0, 1, 5]
    assert value("APLT", 3) == pytest.approx((1 / 3 + 2 / 3) / 2)  # long tail: {2} of [0,1,2], {3,4} of [3,4,0]


def test_all_metrics_registered_and_merge():
    assert set(METRICS) == {  # Elliot v0.3.1's _metric_dictionary less the ones that need files / clusters
        "nDCG", "nDCGRendle2020", "Precision", "Recall", "HR", "MRR", "MAP", "MAR", "F1", "ExtendedF1", "DSC",
        "LAUC", "GAUC", "AUC", "ItemCoverage", "UserCoverage", "UserCoverageAtN", "NumRetrieved", "Gini",
        "SEntropy", "EFD", "ExtendedEFD", "EPC", "ExtendedEPC", "MAE", "MSE", "RMSE", "ARP", "APLT", "ACLT",
        "PopRSP", "PopREO", "ExtendedPopRSP", "ExtendedPopREO"}
    simple = {"Precision", "Recall", "nDCG", "HR", "MAP", "MRR", "F1", "ItemCoverage", "Gini", "EPC", "APLT", "ARP"}
    halves = [RankingContext(CTX.top_items[i:i + 1], CTX.hits[i:i + 1], CTX.n_relevant[i:i + 1],
                             CTX.item_popularity, 6) for i in range(2)]
    merged = merge_contexts(halves)
    assert compute_metrics(merged, [3], list(simple))[0] == compute_metrics(CTX, [3], list(simple))[0]


def test_ndcg_perfect_ranking_is_one():
    ctx = RankingContext(np.array([[0, 1]]), np.array([[True, True]]), np.array([5]), np.ones(3), 3)
    assert compute_metrics(ctx, [2], ["nDCG"])[0][2]["nDCG"] == pytest.approx(1.0)


def test_stat_tests_on_known_inputs():
    a = np.array([0.1, 0.4, 0.35, 0.8, 0.5])
    b = np.array([0.2, 0.5, 0.30, 0.9, 0.7])
    from scipy import stats

    assert paired_ttest(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert wilcoxon_test(a, b) == pytest.approx(0.125)  # exact: P(W<=1) = 2/32, two-sided 4/32
    assert paired_ttest(a, a) == 1.0 and wilcoxon_test(a, a) == 1.0
    with pytest.raises(ValueError, match="3 vs 5"):
        paired_ttest(a[:3], b)
    assert [(x, y) for x, y, _ in pairwise_tests({"m1": a, "m2": b, "m3": a}, "paired_ttest")] == [
        ("m1", "m2"), ("m1", "m3"), ("m2", "m3")]
