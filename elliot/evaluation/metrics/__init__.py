"""Elliot's metric catalogue (v0.3.1 ``_metric_dictionary``) as pure, vectorised functions of a
:class:`RankingContext`.

``METRICS`` holds the simple metrics (name -> :class:`Metric`), the ones a YAML lists in
``simple_metrics``; the parametrised ones (``complex_metrics``: files, β, ...) are in
:mod:`elliot.evaluation.metrics.complex` (``COMPLEX_METRICS``, :func:`parse_complex_metrics`).
Per-user metrics return a (U,) array whose mean is reported (unless the metric has an ``overall``);
catalogue metrics return a float.  Every function's docstring gives its formula and any difference from
Elliot's code.  No torch here.

Differences from Elliot that apply to every metric: only users with a relevant item in the split are
evaluated (Elliot evaluates users with any test interaction for the list-only metrics such as ARP or
Gini; the two agree when the relevance threshold keeps every test interaction); "the user's training
items" of Elliot's formulas are the items masked by the evaluator (training, plus validation at test by
default) or, under negative sampling, the items outside the candidate set.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from elliot.evaluation.metrics import accuracy as _acc
from elliot.evaluation.metrics import bias as _bias
from elliot.evaluation.metrics import coverage as _cov
from elliot.evaluation.metrics import novelty as _nov
from elliot.evaluation.metrics import rating as _rat
from elliot.evaluation.metrics.base import Metric, RankingContext, merge_contexts
from elliot.evaluation.metrics.bias import short_head_items
from elliot.evaluation.metrics.complex import (COMPLEX_METRICS, PreparedComplex, parse_complex_metrics,
                                               prepare_complex_metrics)

FULL_RANKS = "relevant_neg_above"  # the context field only metrics over the whole ranking need

METRICS: Dict[str, Metric] = {m.name: m for m in (
    # accuracy
    Metric("nDCG", _acc.ndcg, True),
    Metric("nDCGRendle2020", _acc.ndcg_rendle2020, True),
    Metric("Precision", _acc.precision, True),
    Metric("Recall", _acc.recall, True),
    Metric("HR", _acc.hit_rate, True),
    Metric("MRR", _acc.reciprocal_rank, True),
    Metric("MAP", _acc.average_precision, True),
    Metric("MAR", _acc.average_recall, True),
    Metric("F1", _acc.f1, True),
    Metric("ExtendedF1", _acc.extended_f1, True),
    Metric("DSC", _acc.dsc, True),
    Metric("LAUC", _acc.lauc, True),
    Metric("GAUC", _acc.gauc, True, needs=(FULL_RANKS,)),
    Metric("AUC", _acc.auc, False, needs=(FULL_RANKS,)),
    # rating
    Metric("MAE", _rat.mae, True, False, overall=_rat.mae_overall),
    Metric("MSE", _rat.mse, True, False, overall=_rat.mse_overall),
    Metric("RMSE", _rat.rmse, True, False, overall=_rat.rmse_overall),
    # coverage
    Metric("ItemCoverage", _cov.item_coverage, False),
    Metric("UserCoverage", _cov.user_coverage, False),
    Metric("UserCoverageAtN", _cov.user_coverage_at_n, False),
    Metric("NumRetrieved", _cov.num_retrieved, True),
    # diversity
    Metric("Gini", _cov.gini, False),
    Metric("SEntropy", _cov.shannon_entropy, False),
    # novelty
    Metric("EFD", _nov.efd, True),
    Metric("ExtendedEFD", _nov.extended_efd, True),
    Metric("EPC", _nov.epc, True),
    Metric("ExtendedEPC", _nov.extended_epc, True),
    # popularity bias
    Metric("ARP", _bias.arp, True, False),
    Metric("APLT", _bias.aplt, True),
    Metric("ACLT", _bias.aclt, True),
    Metric("PopRSP", _bias.pop_rsp, False, False),
    Metric("PopREO", _bias.pop_reo, False, False),
    Metric("ExtendedPopRSP", _bias.extended_pop_rsp, False, False),
    Metric("ExtendedPopREO", _bias.extended_pop_reo, False, False),
)}


def needs_full_ranks(names: Sequence[str] = (), complex_metrics: Sequence[PreparedComplex] = ()) -> bool:
    """Whether any of the metrics needs the rank of every relevant item in the full ranking."""
    return any(FULL_RANKS in METRICS[n].needs for n in names) or any(
        FULL_RANKS in METRICS[p.params[key]].needs for p in complex_metrics
        for key in ("metric_0", "metric_1") if key in p.params)


def compute_metrics(ctx: RankingContext, cutoffs: Sequence[int], names: Sequence[str],
                    complex_metrics: Sequence[PreparedComplex] = ()
                    ) -> Tuple[Dict[int, Dict[str, float]], Dict[int, Dict[str, np.ndarray]]]:
    """(cutoff -> name -> value, cutoff -> name -> per-user values) for the simple metrics ``names`` and
    the prepared complex metrics (their results under Elliot's names).  nan everywhere on an empty context."""
    values: Dict[int, Dict[str, float]] = {}
    per_user: Dict[int, Dict[str, np.ndarray]] = {}
    empty = len(ctx.hits) == 0
    for k in cutoffs:
        values[k], per_user[k] = {}, {}
        for name in names:
            metric = METRICS[name]
            if empty:
                values[k][name] = float("nan")
                continue
            out = metric.fn(ctx, k)
            if metric.per_user:
                per_user[k][name] = np.asarray(out, dtype=np.float64)
                values[k][name] = float(metric.overall(ctx, k)) if metric.overall else float(np.mean(out))
            else:
                values[k][name] = float(out)
        for spec in complex_metrics:
            if empty:
                values[k].update(dict.fromkeys(spec.output_names(), float("nan")))
                continue
            v, pu = spec.compute(ctx, k, METRICS)
            values[k].update(v)
            per_user[k].update({n: np.asarray(a, dtype=np.float64) for n, a in pu.items()})
    return values, per_user


__all__ = ["METRICS", "COMPLEX_METRICS", "Metric", "RankingContext", "PreparedComplex", "compute_metrics",
           "merge_contexts", "short_head_items", "parse_complex_metrics", "prepare_complex_metrics",
           "needs_full_ranks"]
