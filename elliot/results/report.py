"""Everything written at the end of (and during) an experiment, and the final console table."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from elliot.evaluation.stats import pairwise_tests
from elliot.results.writers import (format_table, write_best_params, write_performance, write_stat_tests,
                                    write_triplets)


class ReportWriter:
    def __init__(self, experiment: dict, timestamp: str, model_specs: dict):
        self.exp = experiment
        self.timestamp = timestamp
        ev = experiment.get("evaluation") or {}
        self.cutoffs = list(ev.get("cutoffs") or [10])
        self.metrics = list(ev.get("simple_metrics") or [])
        self.threshold = float(ev.get("relevance_threshold", 0.0) or 0.0)
        self.folder = Path(experiment["path_output_rec_performance"])
        self.metas = {name: spec.meta.model_dump() for name, spec in model_specs.items()}
        self.ev = ev

    def write_all(self, trials: Dict[str, List], best: Optional[Dict[str, object]] = None,
                  final: bool = False) -> List[Path]:
        all_results = [r for rs in trials.values() for r in rs]
        columns = result_columns(self.metrics, all_results)
        paths = write_performance(self.folder, all_results, self.cutoffs, columns, self.threshold,
                                  self.timestamp)
        for model, rs in trials.items():  # Elliot's per-model table of every trial
            safe = model.replace("external.", "")
            paths += write_performance(self.folder, rs, self.cutoffs, columns, self.threshold,
                                       self.timestamp, prefix=f"rec_{safe}")
        if final and self.exp.get("print_results_as_triplets"):
            paths += write_triplets(self.folder, all_results, self.cutoffs, columns, self.threshold, self.timestamp)
        if best:
            paths += write_best_params(self.folder, best, self.metas, self.cutoffs, self.threshold, self.timestamp)
            paths += self._stat_tests(best)
        if any(r.attacks for r in all_results):
            from elliot.results.robustness import write_attack_tables

            paths += write_attack_tables(self.folder, all_results, self.cutoffs, self.metrics, self.threshold,
                                         self.timestamp)
        return paths

    def _stat_tests(self, best: Dict[str, object]) -> List[Path]:
        paths = []
        tests = [t for t in ("paired_ttest", "wilcoxon_test") if self.ev.get(t)]
        if not tests or len(best) < 2:
            return paths
        for test in tests:
            for k in self.cutoffs:
                rows = []
                for metric in self.metrics:
                    per_user = {r.name: r.test_per_user.get(k, {}).get(metric) for r in best.values()}
                    per_user = {n: v for n, v in per_user.items() if v is not None}
                    rows += [(a, b, metric, p) for a, b, p in pairwise_tests(per_user, test)]
                paths.append(write_stat_tests(self.folder, rows, test, k, self.threshold, self.timestamp))
        return paths


def result_columns(simple: List[str], results) -> List[str]:
    """The simple metrics, then every other result name (complex metrics) in order of appearance."""
    columns = list(simple)
    for r in results:
        for values in (r.test or {}).values():
            columns += [name for name in values if name not in columns]
    return columns


def final_table(best: Dict[str, object], experiment: dict) -> str:
    """Test metrics of every model's best configuration (selected on validation) at every cutoff.  Complex
    metrics appear by their summary name (per-cluster probabilities and bias cells are in the TSVs)."""
    ev = experiment.get("evaluation") or {}
    metrics = [m for m in result_columns(list(ev.get("simple_metrics") or []), [r for r in best.values() if r])
               if "ProbToBeRanked" not in m and not m.startswith("BiasDisparity")]
    header = ["model", "cutoff"] + metrics + ["best epoch", "selected on", "s/epoch"]
    rows = []
    for model, r in best.items():
        if r is None:
            continue
        for k in sorted(r.test):
            rows.append([r.name if len(r.name) < 60 else model, k]
                        + [f"{r.test[k].get(m, float('nan')):.4f}" for m in metrics]
                        + [r.best_epoch, r.selected_on, f"{r.seconds_per_epoch:.3f}"])
            for attack in r.attacks:
                if attack.get("cutoff") == k:
                    rows.append([f"  attacked: {attack['name']}", k]
                                + [f"{attack['values'].get(m, float('nan')):.4f}" for m in metrics] + ["", "", ""])
    return "Test metrics of each model's configuration selected on validation\n" + format_table(rows, header)
