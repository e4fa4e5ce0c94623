"""Where trials run: in this process (default), in local worker processes, or on a Ray cluster.

Every executor takes the same :class:`TrialTask` list and yields :class:`TrialOutcome` as each trial
finishes; only the parent process writes files (the trial's record, then its artefacts), so the trials file
and the result layout are the same whichever executor ran the trials.  A trial's numbers depend only on
its parameters and seed, never on the executor: the parallel executors give the same per-trial metrics
as the sequential one.

* ``sequential``: one after the other, here; per-epoch bars when ``meta.verbose``.
* ``process``: ``n_jobs`` processes started with ``spawn``; each receives the dataset once (initializer)
  and uses ``torch threads / n_jobs`` threads (at least one).
* ``ray``: the trials as Ray tasks (one CPU each) on the cluster at ``meta.ray_address`` /
  ``experiment.ray_address`` / ``$RAY_ADDRESS`` (``auto``, ``HOST:PORT`` of the head's GCS, or
  ``ray://HOST:PORT`` of its client server), or on a local Ray instance with ``n_jobs`` CPUs; the dataset
  is put in Ray's object store once.  A trial whose worker or node dies is retried on another node
  (:data:`RAY_TRIAL_RETRIES` times, Ray's task retry on system failures); one that is still lost after
  that is reported, never stored, and the sweep finishes without it (a rerun runs it).  An exception
  raised by the trial's own code is not retried: it is a bug and stops the sweep as in the other
  executors.  Ray is optional (``pip install -r requirements_ray.txt``); the workers need the same Python
  packages and the same external model packages at the same path as the driver.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional

from elliot.errors import ConfigError


@dataclass
class TrialTask:
    model: str  # registry name
    params: Dict[str, object]
    key: str
    meta: object
    defense: Optional[dict] = None
    training: Optional[dict] = None
    external: Optional[str] = None  # experiment.external_models_path
    epoch_bar: bool = False
    label: str = ""  # short progress label: the model and the values that vary across its sweep


@dataclass
class TrialOutcome:
    task: TrialTask
    result: Optional[object] = None  # TrialResult, or None when the trial diverged
    error: Optional[str] = None
    seconds: float = 0.0
    log: List[str] = field(default_factory=list)
    node: str = ""  # where it ran: the Ray node id ("" in this machine's processes)
    lost: bool = False  # its worker or node died (Ray); not a result, not stored, run again on a rerun


def execute(ctx, task: TrialTask) -> TrialOutcome:
    """Run one trial (in whichever process this is); artefacts stay in the result for the parent."""
    from elliot.recommender.registry import resolve_model
    from elliot.training.trainer import TrainingDiverged
    from elliot.trial import run_trial

    lines: List[str] = []
    cls = resolve_model(task.model, task.external)
    trial_ctx = dataclasses.replace(ctx, progress=bool(task.epoch_bar))
    start = time.perf_counter()
    try:
        result = run_trial(trial_ctx, task.model, cls, task.params, task.meta, defense=task.defense,
                           training=task.training, log=lines.append, save=False,
                           label=task.label)
    except TrainingDiverged as exc:  # a hyperparameter problem: recorded, the sweep goes on
        return TrialOutcome(task, None, str(exc), time.perf_counter() - start, lines)
    return TrialOutcome(task, result, None, time.perf_counter() - start, lines)


class SequentialExecutor:
    kind = "sequential"
    workers = 1

    def __init__(self, ctx):
        self.ctx = ctx

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialOutcome]:
        for task in tasks:
            yield execute(self.ctx, task)

    def close(self, abort: bool = False) -> None:
        pass


# ---- local processes ------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(ctx, threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))
    _WORKER["ctx"] = ctx


def _run_in_worker(task: TrialTask) -> TrialOutcome:
    return execute(_WORKER["ctx"], task)  # an exception reaches the parent with the worker's traceback


@contextmanager
def _spawnable_main():
    """``spawn`` re-runs ``__main__`` from its file in every worker; a main read from stdin or typed in a
    REPL has a ``__file__`` that does not exist and the workers would die at start.  Our workers need
    nothing from ``__main__``: hide such a name while they start."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or os.path.isfile(path) or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def resolve_n_jobs(n_jobs: Optional[int]) -> int:
    if n_jobs is None:
        return 1
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


class ProcessExecutor:
    kind = "process"

    def __init__(self, ctx, n_jobs: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import torch

        self.ctx = ctx
        self.workers = max(1, int(n_jobs))
        threads = max(1, torch.get_num_threads() // self.workers)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(dataclasses.replace(ctx, progress=False),
                                                                             threads))

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialOutcome]:
        from concurrent.futures import FIRST_COMPLETED, wait

        tasks = list(tasks)
        with _spawnable_main():  # workers start on submit
            futures = {self._pool.submit(_run_in_worker, dataclasses.replace(t, epoch_bar=False)): t
                       for t in tasks}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: tasks.index(futures[f])):
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()

    def close(self, abort: bool = False) -> None:
        if abort:  # do not wait for the running trials (Ctrl-C, an error in another trial)
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


# ---- Ray ----------------------------------------------------------------------------------------------
def _ray_module(where: str):
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{where}.executor: ray needs the optional package ray (pip install ray); "
                          "or use executor: process") from None
    return ray


#: times Ray reruns a trial whose worker process or node died (not when the trial's code raises)
RAY_TRIAL_RETRIES = 2


def _ray_trial(ctx, task: TrialTask, threads: int) -> TrialOutcome:
    import ray
    import torch

    torch.set_num_threads(max(1, int(threads)))
    outcome = execute(ctx, task)
    outcome.node = ray.get_runtime_context().get_node_id()
    return outcome


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ray_connect_hint(exc: BaseException) -> str:
    """What to fix when a cluster refuses the driver: token authentication is the usual cause."""
    text = str(exc)
    if "auth" in text.lower() or "token" in text.lower() or "Failed to connect" in text:
        return ("; if the cluster uses token authentication (RAY_AUTH_MODE=token), give this process the "
                "cluster's token: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> (or the token file "
                "~/.ray/auth_token)")
    return ""


#: connection attempts of a Ray Client driver (``ray://``) whose server answers "Initialization failure":
#: right after a driver was killed, the client server may still be tearing down its session, and a
#: reconnect a few seconds later succeeds (measured in tests/test_ray_cluster.py's driver-kill test)
RAY_CLIENT_CONNECT_TRIES = 4


def _client_server_busy(address: Optional[str], exc: BaseException) -> bool:
    return bool(address) and str(address).startswith("ray://") and "Initialization failure" in str(exc)


class RayExecutor:
    kind = "ray"

    def __init__(self, ctx, n_jobs: int, address: Optional[str], where: str):
        ray = _ray_module(where)
        self.ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = False
        if not ray.is_initialized():
            for attempt in range(RAY_CLIENT_CONNECT_TRIES):
                try:
                    if self.address:
                        ray.init(address=self.address, log_to_driver=False)
                    else:
                        ray.init(num_cpus=max(1, int(n_jobs)), include_dashboard=False, log_to_driver=False)
                    break
                except Exception as exc:  # an unreachable cluster is a setting to fix, not a traceback
                    if _client_server_busy(self.address, exc) and attempt + 1 < RAY_CLIENT_CONNECT_TRIES:
                        try:  # leave no half-made client connection behind
                            ray.shutdown()
                        except Exception:
                            pass
                        time.sleep(2.0 * (attempt + 1))  # the client server is still ending a dead driver's session
                        continue
                    target = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                    raise ConfigError(f"{where}.executor: ray could not start or reach {target}: "
                                      f"{_first_line(exc)}{_ray_connect_hint(exc)}") from None
            self._started = True
        self.workers = max(1, int(n_jobs)) if not self.address else int(ray.cluster_resources().get("CPU", 1))
        self._ctx_ref = ray.put(dataclasses.replace(ctx, progress=False))
        self._remote = ray.remote(num_cpus=1, max_retries=RAY_TRIAL_RETRIES, retry_exceptions=False)(_ray_trial)

    def _outcome(self, ref, task: TrialTask) -> TrialOutcome:
        errors = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except errors.RayTaskError:  # the trial's own code raised: a bug, as in the other executors
            raise
        except (errors.WorkerCrashedError, errors.NodeDiedError, errors.ObjectLostError,
                errors.OwnerDiedError, errors.RaySystemError) as exc:
            return TrialOutcome(task, None, f"lost on the Ray cluster after {RAY_TRIAL_RETRIES} retries: "
                                            f"{_first_line(exc)}", lost=True)

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialOutcome]:
        tasks = list(tasks)
        refs = {self._remote.remote(self._ctx_ref, dataclasses.replace(t, epoch_bar=False), 1): t for t in tasks}
        pending = list(refs)
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                for ref in done:
                    yield self._outcome(ref, refs[ref])
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def close(self, abort: bool = False) -> None:
        if self._started:
            self.ray.shutdown()


def make_executor(kind: str, ctx, n_jobs: int, address: Optional[str] = None, where: str = "meta"):
    if kind == "sequential":
        return SequentialExecutor(ctx)
    if kind == "process":
        return ProcessExecutor(ctx, n_jobs)
    if kind == "ray":
        return RayExecutor(ctx, n_jobs, address, where)
    raise ConfigError(f"{where}.executor: unknown executor '{kind}'")
