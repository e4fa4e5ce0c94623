"""paired_ttest / wilcoxon_test on known inputs, and their TSV next to the performance files."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from elliot.evaluation.stats import paired_ttest, pairwise_tests, wilcoxon_test
from elliot.results.report import ReportWriter


def test_paired_ttest_known_value():
    a = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # differences 1..5: mean 3, sd sqrt(2.5), t = 3 / sqrt(0.5)
    t = 3 / math.sqrt(2.5 / 5)
    assert t == pytest.approx(4.242640687)
    # Student's t with 4 degrees of freedom in closed form: P(|T| < t) = sin(h) (1 + cos(h)^2 / 2),
    # h = atan(t / 2)
    h = math.atan(t / 2)
    p = 1 - math.sin(h) * (1 + math.cos(h) ** 2 / 2)
    assert p == pytest.approx(0.013236, abs=1e-6)
    assert paired_ttest(a, b) == pytest.approx(p, rel=1e-9)
    assert paired_ttest(a, b) == pytest.approx(0.013236, abs=1e-6)
    assert paired_ttest(b, a) == pytest.approx(0.013236, abs=1e-6)
    assert paired_ttest(a, a) == 1.0
    assert paired_ttest(b + 1.0, b) == 0.0  # a constant non-zero difference: certain
    with pytest.raises(ValueError, match="differ in length"):
        paired_ttest(a, b[:3])


def test_wilcoxon_known_values():
    a = np.array([1.5, 2.5, 3.5, 4.5, 5.5])
    b = np.array([1.0, 1.5, 2.0, 2.5, 3.0])  # every difference positive, distinct: exact p = 2 / 2^5
    assert wilcoxon_test(a, b) == pytest.approx(2 / 2 ** 5)
    c = np.append(a, 6.5)
    d = np.append(b, 3.5)
    assert wilcoxon_test(c, d) == pytest.approx(2 / 2 ** 6)
    assert wilcoxon_test(a, a) == 1.0
    # one negative difference of the smallest rank among 6: W- = 1, P(W <= 1) = 2 / 64, two-sided 4 / 64
    e = np.array([0.9, 2.0, 3.0, 4.0, 5.0, 6.0])
    f = np.array([1.0, 1.8, 2.7, 3.6, 4.5, 5.4])
    assert wilcoxon_test(e, f) == pytest.approx(4 / 2 ** 6)


def test_pairwise_tests_every_pair_once():
    rng = np.random.default_rng(0)
    per_user = {"A": rng.random(30), "B": rng.random(30), "C": rng.random(30)}
    rows = pairwise_tests(per_user, "paired_ttest")
    assert [(x, y) for x, y, _ in rows] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert all(0 <= p <= 1 for _, _, p in rows)
    assert pairwise_tests(per_user, "wilcoxon_test")[0][2] == pytest.approx(wilcoxon_test(per_user["A"],
                                                                                         per_user["B"]))


def test_stat_files_next_to_the_performance_files(tmp_path):
    a = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])

    def result(name, vec):
        return SimpleNamespace(name=name, params={}, selected_on="validation", best_epoch=1, attacks=[],
                               test={20: {"Recall": float(vec.mean())}}, validation={20: {"Recall": 0.0}},
                               test_per_user={20: {"Recall": vec}})

    exp = {"path_output_rec_performance": str(tmp_path / "performance"),
           "evaluation": {"cutoffs": [20], "simple_metrics": ["Recall"], "paired_ttest": True,
                          "wilcoxon_test": True}}
    specs = {m: SimpleNamespace(meta=SimpleNamespace(model_dump=lambda: {})) for m in ("A", "B")}
    best = {"A": result("A_cfg", a), "B": result("B_cfg", b)}
    paths = ReportWriter(exp, "T", specs).write_all({"A": [best["A"]], "B": [best["B"]]}, best=best, final=True)
    names = sorted(p.name for p in paths)
    assert "stat_paired_ttest_cutoff_20_relthreshold_0_T.tsv" in names
    assert "stat_wilcoxon_test_cutoff_20_relthreshold_0_T.tsv" in names
    assert all(p.parent == tmp_path / "performance" for p in paths)
    lines = (tmp_path / "performance" / "stat_paired_ttest_cutoff_20_relthreshold_0_T.tsv").read_text().splitlines()
    assert lines[0] == "model_a\tmodel_b\tmetric\tp_value"
    assert lines[1].split("\t")[:3] == ["A_cfg", "B_cfg", "Recall"]
    assert float(lines[1].split("\t")[3]) == pytest.approx(0.013236, abs=1e-6)
    w = (tmp_path / "performance" / "stat_wilcoxon_test_cutoff_20_relthreshold_0_T.tsv").read_text().splitlines()
    assert float(w[1].split("\t")[3]) == pytest.approx(0.0625)
