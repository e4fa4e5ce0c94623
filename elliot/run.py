"""``run_experiment(path)``: config -> dataset -> for each model: sweep of trials -> results.  Only wiring."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from elliot.config import load_config
from elliot.dataset.builder import build_dataset
from elliot.errors import ConfigError
from elliot.recommender.registry import resolve_model
from elliot.results import report
from elliot.results.tracking import check_tracking, safely, start_tracking
from elliot.results.html_report import write_plots_and_report
from elliot.results.writers import write_data_summary
from elliot.search import plan_trials
from elliot.search.executors import make_executor, resolve_n_jobs
from elliot.search.store import TrialStore, dataset_fingerprint, protocol_fingerprint
from elliot.search.sweep import make_task_factory, run_sweep
from elliot.trial import TrialContext, TrialResult
from elliot.utils.device import select_device

logger = logging.getLogger("elliot")


@dataclass
class ExperimentResult:
    results_folder: Path
    trials: Dict[str, List[TrialResult]] = field(default_factory=dict)  # model -> its trials
    best: Dict[str, TrialResult] = field(default_factory=dict)  # model -> configuration selected on validation
    files: List[Path] = field(default_factory=list)
    table: str = ""
    restored: Dict[str, int] = field(default_factory=dict)  # model -> trials reused from its trials file
    ran: Dict[str, int] = field(default_factory=dict)  # model -> trials run by this call


@dataclass(frozen=True)
class Execution:
    """Where a model's trials run (meta overrides the experiment-level setting) and whether finished
    trials are reused."""

    kind: str  # sequential | process | ray
    n_jobs: int
    address: Optional[str]
    reuse: bool  # finished trials in the trials file are reused


def _execution(meta, exp: dict, where: str) -> Execution:
    n_jobs = meta.n_jobs if meta.n_jobs is not None else exp.get("n_jobs")
    kind = meta.executor or exp.get("executor")
    address = meta.ray_address or exp.get("ray_address")
    reuse = meta.reuse_trials if meta.reuse_trials is not None else exp.get("reuse_trials")
    if meta.restore:  # Elliot's restore: evaluate the saved weights now, never a stored record
        reuse = False
    if kind is None:
        kind = "process" if resolve_n_jobs(n_jobs) > 1 else "sequential"
    if kind == "sequential":
        n = 1
    elif n_jobs is None:
        n = os.cpu_count() or 1
    else:
        n = resolve_n_jobs(n_jobs)
    if kind == "ray":
        from elliot.search.executors import _ray_module

        _ray_module(where)  # a missing optional dependency is said before any data is read
    return Execution(kind, n, address, True if reuse is None else bool(reuse))


def _setup_logging(folder: Path, timestamp: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"elliot_{timestamp}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.FileHandler)]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path


def run_experiment(config_path, overrides: Optional[dict] = None, progress: bool = True) -> ExperimentResult:
    """Run every model of the YAML experiment and write Elliot's result files.

    User mistakes raise :class:`elliot.errors.ElliotError` subclasses with a one-line message; the
    whole config (models and their hyperparameters included) is validated before any data is read.
    """
    cfg = load_config(config_path, overrides)
    exp = cfg.experiment_dict()
    external = exp.get("external_models_path")
    plans = {}
    seed = 42 if exp.get("random_seed") is None else int(exp["random_seed"])
    for name, spec in cfg.models.items():
        where = f"experiment.models.{name}"
        try:
            cls = resolve_model(name, external)
            problem = _task_problem(cls, spec, exp)
            if problem:
                raise ConfigError(f"{where}: {problem}")
            _check_attacks(cls, exp, where)
            plans[name] = (cls, spec, plan_trials(cls, spec, where=where, seed=seed))
        except ConfigError as exc:  # every config error names the file
            message = str(exc)
            raise ConfigError(message if message.startswith(cfg.file) else f"{cfg.file}: {message}") from None
    execution = {name: _execution(spec.meta, exp, f"experiment.models.{name}.meta")
                 for name, (_, spec, _) in plans.items()}
    check_tracking(exp.get("tracking"))  # a missing package or setting is said before any data is read

    timestamp = time.strftime("%Y_%m_%d_%H_%M_%S")
    results_folder = Path(exp["path_output_rec_performance"]).parent
    log_path = _setup_logging(Path(exp["path_log_folder"]), timestamp)
    say = _say(progress)
    say(f"config {config_path} -> results in {results_folder}")
    if exp.get("config_test"):  # Elliot's config test: every model once on mock data, before the real run
        from elliot.dry_run import dry_run

        dry_run(exp, plans, str(select_device(exp.get("gpu", -1))), say)
    fetch = exp["data_config"].get("fetch")
    if fetch:  # data_config.fetch: the catalogue's download (no-op when present), after all validation
        from elliot.datasets import ensure_dataset

        ensure_dataset(fetch["name"], Path(fetch["root"]), log=say)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = build_dataset(exp, log=logger.info)
    for w in caught:
        say(f"warning: {w.message}")
        logger.warning(str(w.message))
    say(dataset.summary())
    logger.info(dataset.summary())
    for name, (_, spec, trials) in plans.items():
        if trials.size > 1 and not dataset.has_validation:
            raise ConfigError(f"experiment.models.{name}: {trials.size} configurations need a validation split to "
                              "choose between them (selection on test is never done); add "
                              "data_config.validation_path or splitting.validation_splitting")

    for _, _, trials in plans.values():
        for note in trials.notes:
            say(note)
            logger.info(note)
    results_folder.mkdir(parents=True, exist_ok=True)
    config_file = results_folder / f"config_{timestamp}.yml"
    config_file.write_text(yaml.safe_dump(_resolved(cfg, plans, execution), sort_keys=False))
    tracker = start_tracking(exp.get("tracking"), exp, results_folder, timestamp, config_file)
    write_data_summary(results_folder, dataset)
    device = select_device(exp.get("gpu", -1))
    ctx = TrialContext(dataset=dataset, experiment=exp, device=str(device), progress=progress)
    outcome = ExperimentResult(results_folder=results_folder)
    writer = report.ReportWriter(exp, timestamp, cfg.models)
    data_hash = dataset_fingerprint(dataset)
    executors: dict = {}
    try:
        for name, (cls, spec, trials) in plans.items():
            run = execution[name]
            kind = "sequential" if run.kind == "process" and trials.size == 1 else run.kind
            if (kind, run.n_jobs, run.address) not in executors:
                executors[(kind, run.n_jobs, run.address)] = make_executor(
                    kind, ctx, run.n_jobs, run.address, where=f"experiment.models.{name}.meta")
            executor = executors[(kind, run.n_jobs, run.address)]
            store = TrialStore(results_folder / "trials", name).load()
            if store.corrupt:
                msg = (f"{name}: {len(store.corrupt)} corrupt or partial record(s) in {store.path} ignored "
                       f"(those trials run again): {'; '.join(store.corrupt[:3])}")
                say(f"warning: {msg}")
                logger.warning(msg)
            where = "" if kind == "sequential" else f" on {executor.workers} {kind} worker(s)"
            logger.info("%s: %s, %d trial(s)%s; trials file %s", name, trials.algorithm, trials.size, where,
                        store.path)
            if trials.size > 1:
                say(f"{name}: {trials.algorithm} search, {trials.size} trials{where}")

            def on_change(results, name=name):
                outcome.trials[name] = list(results)
                writer.write_all(outcome.trials)  # after every trial: the tables are always current

            epoch_bar = progress and kind == "sequential" and (spec.meta.verbose or trials.size == 1)
            sweep = run_sweep(name, trials, store, executor, ctx,
                              fingerprint=protocol_fingerprint(data_hash, exp, spec, cls),
                              make_task=make_task_factory(name, spec, external, epoch_bar,
                                                          varying=[*trials.space.axes, *trials.space.spaces]),
                              restore=run.reuse, progress=progress, on_change=on_change, say=say,
                              on_trial=tracker and (lambda result: safely("a trial", tracker.log_trial, result)))
            outcome.trials[name], outcome.best[name] = sweep.results, sweep.best
            outcome.restored[name], outcome.ran[name] = sweep.restored, sweep.ran
            summary = (f"{name}: {sweep.evaluations} trial(s), {sweep.restored} restored from {store.path}, "
                       f"{sweep.ran} run; selected {sweep.best.name} on validation "
                       f"{trials.metric}@{trials.cutoff} {trials.validation_score(sweep.best):.4f}")
            if sweep.lost:
                summary += f"; {len(sweep.lost)} trial(s) lost on the Ray cluster (a rerun runs them)"
            logger.info(summary)
            if trials.size > 1 or sweep.restored or sweep.lost:
                say(summary)
    except BaseException:  # Ctrl-C or an error: stop the workers now, finished trials are stored
        for executor in executors.values():
            executor.close(abort=True)
        if tracker is not None:
            safely("closing the run", tracker.finish, [], status="FAILED")
        raise
    for executor in executors.values():
        executor.close()
    outcome.files = writer.write_all(outcome.trials, best=outcome.best, final=True)
    outcome.table = report.final_table(outcome.best, exp)
    outcome.files += write_plots_and_report(results_folder, timestamp, exp["path_output_rec_performance"])
    if tracker is not None:
        safely("the plots and report", tracker.finish, outcome.files)
    say(outcome.table)
    logger.info("\n%s", outcome.table)
    say(f"report: {results_folder / 'report.html'}\nlog: {log_path}")
    return outcome


def _check_attacks(cls, exp: dict, where: str) -> None:
    """``evaluation.attacks`` entries (keys, values, modality names) checked before any data is read; a model
    that reads no item features is skipped at evaluation with a log line, not refused."""
    attacks = (exp.get("evaluation") or {}).get("attacks")
    if attacks:
        from elliot.evaluation.attacks import check_attackable

        modalities = [e.get("modality") for e in exp["data_config"].get("side_information") or []
                      if isinstance(e, dict) and e.get("modality")]
        check_attackable(cls, attacks, where, modalities=modalities or None, strict=False)


def _task_problem(cls, spec, exp: dict) -> Optional[str]:
    """Why a model's task cannot be evaluated by the experiment (None when it can): a rating model
    (``task: rating``) is evaluated only by the rating errors over the split's pairs."""
    if getattr(cls, "task", "ranking") != "rating":
        return None
    from elliot.evaluation.metrics.rating import RATING_METRICS

    ev = exp.get("evaluation") or {}
    names = ", ".join(sorted(RATING_METRICS))
    ranking = [m for m in ev.get("simple_metrics") or [] if m not in RATING_METRICS]
    if ranking:
        return (f"{cls.name or cls.__name__} is a rating-prediction model (evaluated on every pair of the split by "
                f"{names}); evaluation.simple_metrics has ranking metrics {ranking}: list only {names}, and run "
                "ranking models in another experiment")
    for present, what in ((ev.get("complex_metrics"), "evaluation.complex_metrics"),
                          (ev.get("attacks"), "evaluation.attacks"),
                          (exp.get("negative_sampling"), "negative_sampling"),
                          (spec.defense, "the defense block"), (spec.training, "the training block")):
        if present:
            return f"{cls.name or cls.__name__} is a rating-prediction model: {what} applies to ranking models only"
    return None


def _resolved(cfg, plans, execution) -> dict:
    """The resolved experiment (absolute paths, defaults, typed hyperparameters) logged next to results."""
    exp = cfg.experiment_dict()
    exp["models"] = {name: {"meta": spec.meta.model_dump(), "search": trials.describe(),
                            "execution": vars(execution[name]).copy()}
                     for name, (_, spec, trials) in plans.items()}
    return {"experiment": _plain(exp)}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a side_information extraction job
        return _plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if callable(getattr(value, "params", None)) and isinstance(getattr(value, "name", None), str):  # its encoder
        return _plain({"name": value.name, **value.params()})
    return str(value)


def _say(progress: bool):
    def say(message: str) -> None:
        if progress:
            print(message, flush=True)
    return say
