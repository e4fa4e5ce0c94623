"""A results folder (``results/<dataset>/``) read back from what the writers wrote, for the plots and the report.

Read: ``performance/rec_cutoff_<k>_...tsv`` (test metrics of every configuration), ``bestmodelparams_*.json``
(the selected configurations), ``stat_<test>_*.tsv`` (paired tests), ``attacks_*.tsv`` (the long-form attack
table), ``config_<timestamp>.yml`` (the resolved experiment), ``trials/<Model>.jsonl`` (per-epoch history,
validation metrics, parameters), ``history/<configuration>.tsv`` (when there are no trial records),
``data_summary.json`` and ``recs/``.  Nothing else: an old results folder gives the same plots.  A folder
can hold several runs (a resumed or edited experiment); one run is read, by default the newest timestamp.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from elliot.errors import DataError

TIMESTAMP = r"\d{4}(?:_\d\d){5}"
_TABLE = re.compile(rf"^rec_cutoff_(\d+)_relthreshold_([^_]+)_({TIMESTAMP})\.tsv$")
_STAT = re.compile(rf"^stat_(paired_ttest|wilcoxon_test)_cutoff_(\d+)_relthreshold_[^_]+_({TIMESTAMP})\.tsv$")
_BEST = re.compile(rf"^bestmodelparams_cutoff_\d+_relthreshold_[^_]+_({TIMESTAMP})\.json$")
_ATTACKS = re.compile(rf"^attacks_relthreshold_[^_]+_({TIMESTAMP})\.tsv$")


def number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class Table:
    """A tab-separated table: ``header`` and ``rows`` of strings (a configuration name first)."""

    path: Path
    header: List[str]
    rows: List[List[str]]

    def row(self, name: str) -> Optional[Dict[str, float]]:
        for cells in self.rows:
            if cells[0] == name:
                return {h: number(c) for h, c in zip(self.header[1:], cells[1:])}
        return None


def read_tsv(path: Path) -> Table:
    lines = [line.split("\t") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty table (no header row)")
    header = lines[0]
    for n, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(header):
            raise DataError(f"{path}: line {n} has {len(cells)} columns, the header {len(header)}")
    return Table(Path(path), header, lines[1:])


@dataclass
class Results:
    root: Path
    timestamp: str
    threshold: str  # the relevance threshold as written in the file names
    config: dict  # the experiment section of config_<timestamp>.yml ({} when it is absent)
    tables: Dict[int, Table]  # cutoff -> test metrics of every configuration of the run
    best: List[dict]  # bestmodelparams records (meta, recommender, model, selected_on, best_epoch, configuration)
    stats: Dict[str, Dict[int, Dict[Tuple[str, str, str], float]]]  # test -> cutoff -> (a, b, metric) -> p
    trials: Dict[str, List[dict]]  # model -> results of its configurations in this run (table order)
    attacks: List[dict]  # rows of the long-form attack table (see _attack_rows)
    data_summary: Optional[dict]
    history_tables: Dict[str, Path] = field(default_factory=dict)  # configuration -> history TSV (no trials)

    @property
    def cutoffs(self) -> List[int]:
        return sorted(self.tables)

    @property
    def metrics(self) -> List[str]:
        """The metric columns of the tables (per-cluster cells of complex metrics left out)."""
        header = self.tables[self.cutoffs[0]].header[1:]
        return [m for m in header if "ProbToBeRanked" not in m and not m.startswith("BiasDisparity")]

    @property
    def models(self) -> List[str]:
        return list(self.trials) or [b["model"] for b in self.best]

    @property
    def evaluation(self) -> dict:
        return self.config.get("evaluation") or {}

    def selected(self) -> Dict[str, dict]:
        """model -> its bestmodelparams record (empty when the run did not finish)."""
        return {b.get("model", b.get("recommender")): b for b in self.best}

    def selection_metric(self, model: str) -> Tuple[str, int]:
        """(metric, cutoff) the model's configurations were selected on (``meta.validation_metric``)."""
        meta = ((self.config.get("models") or {}).get(model) or {}).get("meta") or self.selected().get(
            model, {}).get("meta") or {}
        value = meta.get("validation_metric") or f"{self.metrics[0]}@{self.cutoffs[0]}"
        name, _, k = str(value).partition("@")
        return name, int(k) if k.isdigit() else self.cutoffs[0]

    def trial(self, name: str) -> Optional[dict]:
        return next((r for rs in self.trials.values() for r in rs if r["name"] == name), None)

    def folder(self, key: str, default: str) -> Path:
        """A folder of the layout: ``<root>/<default>`` when present, else the resolved config's path."""
        local = self.root / default
        configured = self.config.get(key)
        return local if local.exists() or not configured else Path(configured)


def run_timestamps(perf: Path) -> List[str]:
    """Timestamps of the runs whose performance tables are in the folder ``perf``, oldest first."""
    perf = Path(perf)
    if not perf.is_dir():
        return []
    return sorted({m.group(3) for p in perf.glob("rec_cutoff_*.tsv") if (m := _TABLE.match(p.name))})


def load_results(root, timestamp: Optional[str] = None, performance=None) -> Results:
    """Read the run ``timestamp`` (default: the newest) of the results folder ``root``; its tables are in
    ``performance`` (default ``root/performance``; an experiment's ``path_output_rec_performance``)."""
    root = Path(root)
    perf = Path(performance) if performance is not None else root / "performance"
    stamps = run_timestamps(perf)
    if not stamps:
        raise DataError(f"{root}: not a results folder (no rec_cutoff_<k>_relthreshold_<t>_<timestamp>.tsv in {perf})")
    if timestamp is None:
        timestamp = stamps[-1]
    elif timestamp not in stamps:
        raise DataError(f"{root}: no run with timestamp {timestamp}; the runs there are {', '.join(stamps)}")
    tables, threshold = {}, "0"
    for p in sorted(perf.glob(f"rec_cutoff_*_{timestamp}.tsv")):
        m = _TABLE.match(p.name)
        if m:
            tables[int(m.group(1))], threshold = read_tsv(p), m.group(2)
    config = _config(root, timestamp)
    best = []
    for p in sorted(perf.glob(f"bestmodelparams_*_{timestamp}.json")):
        if _BEST.match(p.name):
            best = _json(p)
            break  # the same records at every cutoff
    stats: Dict[str, Dict[int, Dict[Tuple[str, str, str], float]]] = {}
    for p in sorted(perf.glob(f"stat_*_{timestamp}.tsv")):
        m = _STAT.match(p.name)
        if m:
            table = read_tsv(p)
            stats.setdefault(m.group(1), {})[int(m.group(2))] = {(a, b, metric): number(pv)
                                                                 for a, b, metric, pv in table.rows}
    attacks = []
    for p in sorted(perf.glob(f"attacks_*_{timestamp}.tsv")):
        if _ATTACKS.match(p.name):
            attacks = _attack_rows(read_tsv(p))
    names = [cells[0] for cells in next(iter(tables.values())).rows]
    models = list((config.get("models") or {})) or [b["model"] for b in best]
    trials = _trials(root / "trials", models, names)
    history = {}
    if not trials:  # an old folder without trial records: the per-epoch history files
        from elliot.utils.paths import file_stem

        history = {n: p for n in names if (p := root / "history" / f"{file_stem(n)}.tsv").exists()}
    summary = root / "data_summary.json"
    return Results(root=root, timestamp=timestamp, threshold=threshold, config=config, tables=tables, best=best,
                   stats=stats, trials=trials, attacks=attacks,
                   data_summary=_json(summary) if summary.exists() else None, history_tables=history)


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _config(root: Path, timestamp: str) -> dict:
    path = root / f"config_{timestamp}.yml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return data.get("experiment") or {} if isinstance(data, dict) else {}


def _attack_rows(table: Table) -> List[dict]:
    """Rows of the long-form attack table, typed: ``cutoff`` None for certified-radius statistics, ``skipped``
    the reason for an attack that did not apply ('' otherwise)."""
    rows = []
    for cells in table.rows:
        row = dict(zip(table.header, cells))
        kind, _, value = row.get("budget", "").partition("=")
        rows.append({**row, "cutoff": int(row["cutoff"]) if row.get("cutoff", "").isdigit() else None,
                     "skipped": row.get("skipped", ""), "budget_kind": kind, "budget_value": number(value),
                     "clean": number(row.get("clean")), "attacked": number(row.get("attacked")),
                     "drop": number(row.get("drop"))})
    return rows


def _int_keys(values) -> Dict[int, Dict[str, float]]:
    return {int(k): dict(v) for k, v in (values or {}).items()}


def _trials(folder: Path, models: List[str], names: List[str]) -> Dict[str, List[dict]]:
    """model -> results of the configurations listed in the run's tables (the newest record of each)."""
    from elliot.search.store import TrialStore

    if not folder.is_dir():
        return {}
    models = models + [p.stem for p in sorted(folder.glob("*.jsonl")) if p.stem not in models]
    order = {n: i for i, n in enumerate(names)}
    out = {}
    for model in models:
        newest: Dict[str, Tuple[str, dict]] = {}
        for record in TrialStore(folder, model).records():
            result = record.get("result")
            if record.get("status") != "ok" or not isinstance(result, dict) or result.get("name") not in order:
                continue
            if result["name"] not in newest or record.get("finished_at", "") >= newest[result["name"]][0]:
                newest[result["name"]] = (record.get("finished_at", ""), result)
        results = [dict(r, validation=_int_keys(r.get("validation")), test=_int_keys(r.get("test")))
                   for _, r in newest.values()]
        if results:
            out[model] = sorted(results, key=lambda r: order[r["name"]])
    return out


def history_rows(results: Results, name: str) -> List[Dict[str, float]]:
    """The per-epoch history of a configuration: from its trial record, else its history TSV."""
    trial = results.trial(name)
    if trial is not None:
        return [{k: float(v) for k, v in row.items() if isinstance(v, (int, float))} for row in trial["history"]]
    path = results.history_tables.get(name)
    if path is None:
        return []
    table = read_tsv(path)
    return [{h: number(c) for h, c in zip(table.header, cells) if c != "" and not math.isnan(number(c))}
            for cells in table.rows]
