"""A model's trials: which configurations to run, and the best one by the validation metric only.

Two plans with one ask/tell interface, so the sweep driver (:mod:`elliot.search.sweep`), the trials
file and the executors do not care which search produced a configuration:

* :class:`GridPlan` (``hyper_opt_alg: grid``): every combination of the grid axes, in declared order;
* :class:`HyperoptPlan` (``tpe``, ``rand``, ``anneal``, ``atpe``): ``hyper_max_evals`` points suggested
  by hyperopt's algorithm, grid axes becoming ``choice``.  Suggestion ``t`` is made by the algorithm
  with a seed derived from (``experiment.random_seed``, ``t``) and the history of the finished
  evaluations ``0..t'`` (``t'`` < the first of its batch): the sequence of configurations is a function of
  the seed and of the results only, so a resumed search replays the stored results and continues
  exactly where it stopped.  With ``n_jobs`` workers the points are suggested in batches of ``n_jobs``
  (each with the history before the batch), hence a parallel TPE search visits other points than a
  sequential one; ``rand`` does not depend on the batching.  TPE starts with 10 random points
  (hyperopt's default 20 would leave a 20-evaluation search purely random).
"""
from __future__ import annotations

import datetime
import math
import random
from contextlib import contextmanager
from typing import Any, Dict, List, Tuple

import numpy as np

from elliot.config import coerce_params, expand_grid
from elliot.config.params import ParamSpace
from elliot.errors import ConfigError
from elliot.search import spaces as sp

DEFAULT_MAX_EVALS = 20
_EPOCH = datetime.datetime(2000, 1, 1)


def validation_score(result, metric: str, cutoff: int) -> float:
    value = (getattr(result, "validation", None) or {}).get(cutoff, {}).get(metric)
    return float("nan") if value is None else float(value)


def higher_is_better(metric: str) -> bool:
    """Direction of a validation metric (the catalogue's ``Metric.higher_is_better``; MAE / MSE / RMSE and
    the popularity-bias metrics are lower-is-better); unknown names (complex metrics' results) count as higher."""
    from elliot.evaluation.metrics import METRICS

    known = METRICS.get(metric)
    return True if known is None else bool(known.higher_is_better)


def select_best(results: List, metric: str, cutoff: int):
    """The result with the best validation metric (the highest, or the lowest for a lower-is-better metric
    such as RMSE; ties: the earliest); never test.  Without any validation value (a single configuration,
    no validation split) the first result."""
    if not results:
        return None
    scored = [(validation_score(r, metric, cutoff), i) for i, r in enumerate(results)]
    valid = [(s, i) for s, i in scored if not math.isnan(s)]
    if not valid:
        return results[0]
    best_score = (max if higher_is_better(metric) else min)(s for s, _ in valid)
    return results[min(i for s, i in valid if s == best_score)]


class TrialPlan:
    """Base: ``ask(n)`` -> up to n (token, params); ``tell(token, result or None)`` once per asked point."""

    algorithm = "grid"

    def __init__(self, model_cls, spec, space: ParamSpace, where: str):
        self.model_cls, self.spec, self.space, self.where = model_cls, spec, space, where
        self.meta = spec.meta
        self.metric, _, k = self.meta.validation_metric.partition("@")
        self.cutoff = int(k)
        self.results: List = []  # distinct finished configurations, in the order they were first asked
        self._seen: set = set()
        self.notes: List[str] = []  # defaults taken, said once the run starts
        self.told = 0

    # ---- what to run -------------------------------------------------------------------------
    @property
    def size(self) -> int:  # evaluations in the whole plan
        raise NotImplementedError

    def batch_size(self, n_jobs: int) -> int:
        return max(1, int(n_jobs))

    def ask(self, n: int) -> List[Tuple[Any, Dict[str, object]]]:
        raise NotImplementedError

    def tell(self, token, result) -> None:
        """``result`` is a TrialResult, or None for a failed (diverged) configuration."""
        self.told += 1
        if result is not None and id(result) not in self._seen:
            self._seen.add(id(result))
            self.results.append(result)

    # ---- compatibility with the grid-only plan -------------------------------------------------
    def configurations(self, ctx=None):
        while True:
            batch = self.ask(1)
            if not batch:
                return
            yield batch[0][1]

    def report(self, result) -> None:
        self.tell(None, result)

    # ---- selection -----------------------------------------------------------------------------
    def validation_score(self, result) -> float:
        return validation_score(result, self.metric, self.cutoff)

    def best(self):
        return select_best(self.results, self.metric, self.cutoff)

    def describe(self) -> dict:
        raise NotImplementedError


class GridPlan(TrialPlan):
    """Every combination of the list-valued hyperparameters of one model block."""

    def __init__(self, model_cls, spec, space: ParamSpace, where: str):
        super().__init__(model_cls, spec, space, where)
        self._grid = expand_grid(space)
        expand = getattr(model_cls, "expand_configurations", None)
        if callable(expand):  # a model that is several configurations by itself (RecommendationFolder)
            self._grid = [c for config in self._grid for c in expand(config, where)]
        self._next = 0
        for config in self._grid:  # a configuration the model cannot build fails now, not after the others ran
            problem = model_cls.check_params(config) if hasattr(model_cls, "check_params") else None
            if problem:
                raise ConfigError(f"{where}: {problem}")
        if self.meta.hyper_max_evals is not None and len(self._grid) > 1:
            self.notes.append(f"{where}.meta.hyper_max_evals is ignored with hyper_opt_alg grid "
                              f"({len(self._grid)} configurations)")

    @property
    def size(self) -> int:
        return len(self._grid)

    def batch_size(self, n_jobs: int) -> int:
        return len(self._grid)  # every configuration is known: the executor streams them all

    def ask(self, n: int):
        out = [(i, self._grid[i]) for i in range(self._next, min(self._next + max(n, 0), len(self._grid)))]
        self._next += len(out)
        return out

    def describe(self) -> dict:
        return {"algorithm": "grid", "fixed": self.space.fixed, "grid_axes": self.space.axes,
                "configurations": self.size}


TPE_STARTUP = 10


def tpe_startup(max_evals: int) -> int:
    """Random points before TPE models the history: 10 (as Optuna), not hyperopt's 20, which would make a
    search of 20 evaluations purely random.  Fixed, not a fraction of the budget: raising
    ``hyper_max_evals`` and rerunning continues the same search."""
    return TPE_STARTUP


def _algorithm(name: str, where: str, max_evals: int):
    import functools

    import hyperopt

    if name == "atpe":
        try:
            import lightgbm  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise ConfigError(f"{where}.meta.hyper_opt_alg: atpe needs lightgbm and scikit-learn "
                              "(pip install lightgbm scikit-learn); or use tpe") from None
        from hyperopt import atpe

        return atpe.suggest
    if name == "tpe":
        return functools.partial(hyperopt.tpe.suggest, n_startup_jobs=tpe_startup(max_evals), verbose=False)
    return {"rand": hyperopt.rand.suggest, "anneal": hyperopt.anneal.suggest}[name]


@contextmanager
def _global_seeds(seed: int):
    """ATPE draws from the global ``random``/``numpy.random`` states: seed them, then restore them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def derived_seed(base: int, index: int) -> int:
    return int(np.random.SeedSequence([int(base) & 0xFFFFFFFF, int(index)]).generate_state(1)[0]) % (2 ** 31 - 1)


class HyperoptPlan(TrialPlan):
    """``hyper_max_evals`` points suggested by hyperopt (tpe | rand | anneal | atpe), maximising the
    validation metric (hyperopt minimises ``-metric``; a diverged trial is a failed hyperopt trial)."""

    def __init__(self, model_cls, spec, space: ParamSpace, where: str, seed: int = 42):
        super().__init__(model_cls, spec, space, where)
        import hyperopt
        from hyperopt.base import Domain

        self.algorithm = self.meta.hyper_opt_alg
        self.max_evals = self.meta.hyper_max_evals
        if self.max_evals is None:
            self.max_evals = DEFAULT_MAX_EVALS
            self.notes.append(f"{where}.meta.hyper_max_evals not set: {self.algorithm} runs {DEFAULT_MAX_EVALS} "
                              "evaluations")
        self._suggest = _algorithm(self.algorithm, where, self.max_evals)
        self.searched = sp.build_space(model_cls.declared_params(), space.axes, space.spaces, where)
        self._params = {p.name: p for p in model_cls.declared_params()}
        self._hp_space = {name: sp.to_hyperopt(name, norm) for name, norm in self.searched.items()}
        self._domain = Domain(lambda point: 0.0, self._hp_space)
        self._space_eval = hyperopt.space_eval
        self._trials = hyperopt.Trials()
        self._base_seed = int(seed)
        self._next = 0
        self._pending: Dict[int, dict] = {}

    @property
    def size(self) -> int:
        return int(self.max_evals)

    def _point(self, doc) -> Dict[str, object]:
        from hyperopt.base import spec_from_misc

        point = self._space_eval(self._hp_space, spec_from_misc(doc["misc"]))
        params = dict(self.space.fixed)
        for name, value in point.items():
            if isinstance(value, np.generic):
                value = value.item()
            params[name] = sp.type_value(self._params[name], value, f"{self.where}.{name}")
        return {n: params[n] for n in self.space.order}

    def ask(self, n: int):
        out = []
        for _ in range(max(0, min(n, self.max_evals - self._next))):
            tid = self._next
            self._next += 1
            seed = derived_seed(self._base_seed, tid)
            if self.algorithm == "atpe":
                with _global_seeds(seed):
                    docs = self._suggest([tid], self._domain, self._trials, seed)
            else:
                docs = self._suggest([tid], self._domain, self._trials, seed)
            doc = docs[0]
            self._pending[tid] = doc
            out.append((tid, self._point(doc)))
        return out

    def tell(self, token, result) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK

        super().tell(token, result)
        doc = self._pending.pop(token, None)
        if doc is None:
            return
        score = self.validation_score(result) if result is not None else float("nan")
        doc["state"] = JOB_STATE_DONE
        loss = -score if higher_is_better(self.metric) else score  # hyperopt minimises
        doc["result"] = ({"loss": loss, "status": STATUS_OK} if not math.isnan(score)
                         else {"loss": None, "status": STATUS_FAIL})
        doc["book_time"] = doc["refresh_time"] = _EPOCH  # ATPE reads durations: a constant keeps it deterministic
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()

    def describe(self) -> dict:
        return {"algorithm": self.algorithm, "max_evals": self.size, "fixed": {
            k: v for k, v in self.space.fixed.items() if k not in self.searched},
            "searched": {k: sp.describe(v) for k, v in self.searched.items()}}


def plan_trials(model_cls, spec, where: str, seed: int = 42) -> TrialPlan:
    """Type the model's raw YAML parameters by its declared parameter list and plan its trials."""
    refused = getattr(model_cls, "refused_params", {})
    for key in spec.params:
        if key in refused:
            raise ConfigError(f"{where}.{key}: {refused[key]}")
    space = coerce_params(model_cls.declared_params(), spec.params, where=where)
    alg = spec.meta.hyper_opt_alg
    if alg == "grid":
        if space.has_spaces():
            raise ConfigError(f"{where}: hyperopt spaces for {sorted(space.spaces)} need meta.hyper_opt_alg "
                              "tpe, rand, anneal or atpe (grid only expands lists)")
        return GridPlan(model_cls, spec, space, where)
    if not space.axes and not space.spaces:
        plan = GridPlan(model_cls, spec, space, where)  # nothing to search: one configuration
        plan.notes.append(f"{where}: meta.hyper_opt_alg {alg} has nothing to search (no list or space): "
                          "one configuration")
        return plan
    return HyperoptPlan(model_cls, spec, space, where, seed=seed)
