"""Early stopping with Elliot's keys and, by default, Elliot's rule.

The block (``meta.early_stopping`` or, as Elliot writes it, ``early_stopping`` in the model block)::

    early_stopping: {patience: 5, monitor: Recall@20, mode: auto, min_delta: 0.001, rel_delta: 0.01,
                     baseline: 0.05, verbose: true, rule: elliot}

``monitor`` is a validation ``metric@k`` (default: the model's ``validation_metric``) or ``loss`` (the mean
training loss of the epochs at which validation runs); ``mode`` ``auto`` means ``max`` for a metric,
``min`` for the loss and for a lower-is-better metric (``Metric.higher_is_better`` false: MAE, MSE, RMSE of
the rating task, ... - Elliot's ``auto`` takes ``max`` for every metric).  Observations are taken at validation checks (every ``validation_rate`` epochs), so
``patience`` counts checks, not epochs - as in Elliot.

``rule: elliot`` (default; Elliot 0.3.1 ``EarlyStopping.stop``): stop when each of the last ``patience``
checks failed to improve on the check just before it, where "failed to improve" is: got worse, or
(when given) improved by at most ``min_delta``, or by at most ``rel_delta`` x the previous value, or
the previous value is not better than ``baseline``.  A metric that oscillates never stops under this
rule.  ``rule: fork`` (the multimodal forks' ``EarlyStopping``: Formal-MultiMod-Rec,
Multimodal-RSs-Reproducibility, Ducho-meets-Elliot, Graph-RSs-Reproducibility): stop when none of the
last ``patience`` checks beats the value ``patience`` checks ago (strictly; with ``min_delta`` /
``rel_delta``, by more than that margin - the forks' own margin test has its sign reversed, so any
improvement satisfies it; ours is the evident intent).  The forks also stop on a zero loss; a NaN loss is
a divergence here.  ``rule: best`` (Keras / MMRec's ``stopping_step``): stop after ``patience`` consecutive checks
without beating the best value so far by more than ``min_delta``.  Under Elliot's rule a stop needs more
than ``patience`` observations, and ``patience: 0`` (Elliot's default) never stops.

Early stopping only decides when to stop; which epoch is kept is the trainer's (best validation metric,
or the lowest loss with ``meta.optimize_internal_loss``).
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional

RULES = ("elliot", "fork", "best")


def _higher_is_better(monitor: str) -> bool:
    from elliot.evaluation.metrics import METRICS

    metric = METRICS.get(str(monitor).partition("@")[0])
    return True if metric is None else bool(metric.higher_is_better)


class EarlyStopping:
    def __init__(self, patience: int = 0, monitor: str = "", mode: str = "auto",
                 min_delta: Optional[float] = None, rel_delta: Optional[float] = None,
                 baseline: Optional[float] = None, verbose: bool = False, rule: str = "elliot",
                 log: Callable[[str], None] = lambda msg: None):
        self.patience = int(patience)
        self.monitor = monitor
        self.on_loss = monitor == "loss"
        self.mode = ("min" if self.on_loss or not _higher_is_better(monitor) else "max") \
            if mode in ("auto", None) else mode
        self.min_delta, self.rel_delta, self.baseline = min_delta, rel_delta, baseline
        self.verbose, self.rule, self.log = verbose, rule, log
        self.history: List[float] = []
        self._best = math.nan
        self._bad = 0

    @classmethod
    def from_config(cls, block: Optional[dict], default_monitor: str, log=lambda msg: None):
        if not block:
            return None
        kwargs = {k: block[k] for k in ("patience", "mode", "min_delta", "rel_delta", "baseline", "verbose", "rule")
                  if block.get(k) is not None}
        return cls(monitor=block.get("monitor") or default_monitor, log=log, **kwargs)

    # ---- the rules -------------------------------------------------------------------------
    def _fails_to_beat(self, reference: float, value: float) -> bool:
        """Elliot's ``check_conditions`` for one pair, oriented by ``mode``: ``value`` got worse than
        ``reference``, or (when given) improved by at most ``min_delta`` / ``rel_delta`` x reference, or
        ``reference`` is not better than ``baseline``.  Elliot applies it to consecutive checks, the forks
        to (the check ``patience`` checks ago, each later one)."""
        sign = 1.0 if self.mode == "max" else -1.0
        gain = sign * (value - reference)
        if gain < 0:
            return True
        if self.min_delta is not None and gain <= self.min_delta:
            return True
        if self.rel_delta is not None and gain <= abs(reference) * self.rel_delta:
            return True
        if self.baseline is not None and sign * (reference - self.baseline) <= 0:
            return True
        return False

    def update(self, value: float) -> bool:
        """Record one observation; True when training should stop now."""
        self.history.append(float(value))
        if self.rule == "best":
            sign = 1.0 if self.mode == "max" else -1.0
            delta = self.min_delta or 0.0
            if math.isnan(self._best) or sign * (value - self._best) > delta:
                self._best, self._bad = float(value), 0
            else:
                self._bad += 1
            stop = self._bad >= max(self.patience, 1)
        elif self.rule == "fork":
            if len(self.history) <= self.patience or self.patience == 0:
                return False
            window = self.history[-(self.patience + 1):]
            candidate = window[0]
            checks = [self._fails_to_beat(candidate, v) for v in window[1:]]
            stop = all(checks)
            if self.verbose:
                self.log(f"early stopping on {self.monitor}: {round(candidate, 5)} vs the next "
                         f"{[round(v, 5) for v in window[1:]]}, not beaten {checks}")
        else:
            if len(self.history) <= self.patience:
                return False
            window = self.history[-(self.patience + 1):]
            checks = [self._fails_to_beat(a, b) for a, b in zip(window, window[1:])]
            stop = bool(checks) and all(checks)
            if self.verbose:
                self.log(f"early stopping on {self.monitor}: last {len(window)} values "
                         f"{[round(v, 5) for v in window]}, not improving {checks}")
        return stop

    def describe(self) -> str:
        parts = [f"{self.monitor} ({self.mode})", f"patience {self.patience} checks", f"rule {self.rule}"]
        for key in ("min_delta", "rel_delta", "baseline"):
            if getattr(self, key) is not None:
                parts.append(f"{key} {getattr(self, key)}")
        return ", ".join(parts)
