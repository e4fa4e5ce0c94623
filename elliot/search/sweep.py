"""One model's sweep: ask the plan, reuse finished trials from the trials file, run the rest on the
executor, store every trial the moment it ends, tell the plan, keep the tables current.

A trial already in the trials file (same model, parameters, data and protocol) is not run again unless
``restore`` is false, so a sweep killed at any point loses at most the trials that were running.  A
configuration suggested twice (hyperopt on a finite space) is run once and counted twice.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from tqdm.auto import tqdm

from elliot.errors import ElliotError
from elliot.search.executors import TrialTask
from elliot.search.plan import higher_is_better
from elliot.search.store import (TrialStore, per_user_bytes, record_to_result, result_to_record, trial_key)

logger = logging.getLogger("elliot")


class ResultsWriteError(ElliotError):
    """A result file could not be written after its trial was stored."""


class SweepDiverged(ElliotError):
    """Every configuration of a model diverged: nothing to select."""


@dataclass
class Diverged:
    """A finished trial whose training loss became NaN/inf (kept in the trials file, never selected)."""

    name: str
    error: str


class Lost(Diverged):
    """A trial whose Ray worker or node died past its retries: reported, not stored (a rerun runs it)."""


@dataclass
class SweepOutcome:
    results: List = field(default_factory=list)  # distinct finished configurations, in the order asked
    best: Optional[object] = None
    restored: int = 0  # trials taken from the trials file
    ran: int = 0  # trials run now
    diverged: List[str] = field(default_factory=list)
    lost: List[str] = field(default_factory=list)
    evaluations: int = 0


def run_sweep(name: str, plan, store: TrialStore, executor, ctx, *, fingerprint: str, make_task: Callable,
              restore: bool = True, progress: bool = True, on_change: Optional[Callable] = None,
              say: Callable = lambda msg: None, on_trial: Optional[Callable] = None) -> SweepOutcome:
    """``on_change(finished results)`` after every trial; ``on_trial(result)`` once per trial run now, after
    it is stored and its files are written (experiment tracking)."""
    from elliot.trial import config_name, write_artefacts

    out = SweepOutcome()
    resolved: Dict[str, object] = {}  # key -> TrialResult | Diverged
    asked: List[str] = []  # distinct keys in the order first asked
    metric = f"{plan.metric}@{plan.cutoff}"
    bar = tqdm(total=plan.size, desc=f"{name} sweep", unit="trial", disable=not progress or plan.size <= 1,
               dynamic_ncols=True, leave=True)
    best_value = float("nan")
    higher = higher_is_better(plan.metric)
    positions: Dict[str, int] = defaultdict(int)

    def finished() -> List:
        return [resolved[k] for k in asked if k in resolved and not isinstance(resolved[k], Diverged)]

    def note(key: str) -> None:
        nonlocal best_value
        count, positions[key] = positions[key], 0  # every evaluation of this key in the batch, once
        value = resolved[key]
        if not isinstance(value, Diverged):
            score = plan.validation_score(value)
            if score == score and not (best_value >= score if higher else best_value <= score):
                best_value = score
        bar.update(count)
        if best_value == best_value:
            bar.set_postfix_str(f"best {metric} {best_value:.4f}", refresh=True)

    try:
        width = plan.batch_size(executor.workers)
        while True:
            batch = plan.ask(width)
            if not batch:
                break
            keys = [trial_key(name, params, fingerprint) for _, params in batch]
            positions.clear()
            for key in keys:
                positions[key] += 1
            tasks, queued = [], set()
            for (_, params), key in zip(batch, keys):
                if key not in asked:
                    asked.append(key)
                if key in resolved:
                    note(key)  # suggested again: counted, not run
                    continue
                if key in queued:
                    continue
                found = store.get(key) if restore else None
                if found is not None:
                    record, per_user = found
                    if record.get("status") == "ok":
                        resolved[key] = record_to_result(record, per_user)
                    else:
                        resolved[key] = Diverged(config_name(name, params), str(record.get("error")))
                    out.restored += 1
                    note(key)
                    continue
                queued.add(key)
                tasks.append(make_task(params, key))
            for outcome in executor.run(tasks):
                key = outcome.task.key
                for line in outcome.log:
                    logger.info(line)
                if outcome.lost:
                    resolved[key] = Lost(config_name(name, outcome.task.params), outcome.error or "")
                    logger.warning("%s: trial %s %s", name, resolved[key].name, outcome.error)
                    say(f"warning: {name}: trial {resolved[key].name[:80]} {outcome.error}; a rerun runs it")
                elif outcome.result is None:
                    resolved[key] = Diverged(config_name(name, outcome.task.params), outcome.error or "")
                    store.append(result_to_record(None, key, fingerprint, status="diverged", error=outcome.error,
                                                  wall_seconds=outcome.seconds) | {"params": outcome.task.params})
                    logger.warning("%s: %s", name, outcome.error)
                    say(f"warning: {outcome.error}")
                else:
                    result = outcome.result
                    # the record first: a file that cannot be written (a full disk, a name the filesystem
                    # refuses) must never cost the finished trial
                    record = result_to_record(result, key, fingerprint, wall_seconds=outcome.seconds)
                    if outcome.node:
                        record["node"] = outcome.node
                    store.append(record, per_user_bytes(result))
                    resolved[key] = result
                    try:
                        write_artefacts(ctx, result)
                    except OSError as exc:
                        raise ResultsWriteError(
                            f"{name}: trial {result.name[:80]} finished and is stored in {store.path}, but writing "
                            f"its history/recs/weights failed: {exc.strerror or exc} ({exc.filename}); a rerun "
                            "reuses the stored trial (with meta.reuse_trials: false it trains again and writes "
                            "the files)") from None
                    logger.info("trial %s finished in %.1f s%s: validation %s %.4f (best epoch %d)", result.name,
                                outcome.seconds, f" on node {outcome.node[:12]}" if outcome.node else "", metric,
                                plan.validation_score(result), result.best_epoch)
                    if on_trial is not None:
                        on_trial(result)
                out.ran += 1
                note(key)
                if on_change is not None:
                    on_change(finished())
            for token, key in ((t, k) for (t, _), k in zip(batch, keys)):
                value = resolved[key]
                plan.tell(token, None if isinstance(value, Diverged) else value)
                out.evaluations += 1
    finally:
        bar.close()
    out.results = list(plan.results)
    out.diverged = sorted({v.name for v in resolved.values() if type(v) is Diverged})
    out.lost = sorted({v.name for v in resolved.values() if isinstance(v, Lost)})
    out.best = plan.best()
    if out.best is None:
        first = next((v for v in resolved.values() if isinstance(v, Diverged)), None)
        what = "was lost on the Ray cluster" if first is not None and isinstance(first, Lost) else "diverged"
        raise SweepDiverged(f"{name}: every configuration {what}" + (f"; e.g. {first.error}" if first else ""))
    if on_change is not None:
        on_change(out.results)
    return out


def make_task_factory(name: str, spec, external: Optional[str], epoch_bar: bool,
                      varying: Sequence[str] = ()) -> Callable:
    from elliot.trial import short_label

    def make(params, key) -> TrialTask:
        return TrialTask(model=name, params=params, key=key, meta=spec.meta, defense=spec.defense,
                         training=spec.training, external=external, epoch_bar=epoch_bar,
                         label=short_label(name, params, varying))
    return make
