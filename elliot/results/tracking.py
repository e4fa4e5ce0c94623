"""Optional experiment tracking: every trial of an experiment as an MLflow run (off by default).

    experiment:
      tracking:
        mlflow:
          tracking_uri: sqlite:///mlflow.db   # or http://host:5000, or a folder (MLflow's file store)
          experiment_name: my-study           # default: the dataset's name

One parent run per experiment (the resolved config, and at the end the plots and report as artifacts)
and one nested run per trial run now (parameters, the loss and every validation metric per epoch with
the epoch as step, the final validation and test metrics, best epoch, seconds per epoch).  Trials reused from the trials file were logged when they ran and are not logged again.
Logging happens in the driver after the trial is stored, so a tracking server that fails never costs
a finished trial: the error is logged as a warning and the experiment goes on.

MLflow's client API (``MlflowClient``) is used, never the fluent ``mlflow.start_run`` stack, so no
process-wide "active run" exists.  A folder or ``file:`` URI is MLflow's file store, which MLflow 3
keeps in maintenance mode and refuses unless ``MLFLOW_ALLOW_FILE_STORE=true``: asking for one here is
that opt-in, set for this process only.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlparse

from elliot.errors import ConfigError

logger = logging.getLogger("elliot")
WHERE = "experiment.tracking.mlflow"
_KEYS = ("tracking_uri", "experiment_name")


def _metric_name(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . / space``: ``val_Recall@20`` -> ``val_Recall_at_20``."""
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", name.replace("@", "_at_"))


def _is_local_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri and not uri.startswith("sqlite:")


def check_tracking(tracking: Optional[dict]) -> Optional[dict]:
    """Validate ``experiment.tracking`` at config time; returns the mlflow settings or None."""
    if not tracking:
        return None
    if not isinstance(tracking, dict) or set(tracking) - {"mlflow"}:
        from elliot.errors import did_you_mean

        extra = sorted(set(tracking) - {"mlflow"}) if isinstance(tracking, dict) else [str(tracking)]
        raise ConfigError(f"experiment.tracking: unknown tracker {extra[0]!r}{did_you_mean(extra[0], ['mlflow'])}; "
                          "valid: mlflow")
    settings = tracking["mlflow"] or {}
    if not isinstance(settings, dict) or not settings.get("tracking_uri"):
        raise ConfigError(f"{WHERE}: needs tracking_uri (e.g. sqlite:///mlflow.db, http://host:5000, or a folder)")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(f"{WHERE}: needs the package mlflow (pip install mlflow-skinny)") from None
    return dict(settings)


class MlflowTracker:
    def __init__(self, settings: dict, experiment: dict, results_folder: Path, timestamp: str, config_file: Path):
        from mlflow.tracking import MlflowClient

        uri = str(settings["tracking_uri"])
        if _is_local_store(uri):  # the user asked for the file store: MLflow 3's opt-in for it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            path = Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)
            uri = path.resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = str(settings.get("experiment_name") or experiment.get("dataset") or "elliot")
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
        self.results_folder = Path(results_folder)
        parent = self.client.create_run(self.experiment_id, run_name=f"{name} {timestamp}",
                                        tags={"elliot.results_folder": str(self.results_folder),
                                              "elliot.dataset": str(experiment.get("dataset", ""))})
        self.parent_id = parent.info.run_id
        self.client.log_artifact(self.parent_id, str(config_file))
        self.trial_runs: Dict[str, str] = {}

    def log_trial(self, result) -> None:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=result.name[:250],
                                     tags={"mlflow.parentRunId": self.parent_id, "elliot.model": result.model,
                                           "elliot.selected_on": str(result.selected_on)})
        run_id = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in sorted(result.params.items())]
        metrics: List[Metric] = []
        for row in result.history:  # per epoch: loss and every validation metric, step = epoch
            epoch = int(row.get("epoch", 0))
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and value == value:
                    metrics.append(Metric(_metric_name(key), float(value), 0, epoch))
        for split, values in (("validation", result.validation), ("test", result.test)):
            for cutoff, per_metric in (values or {}).items():
                for metric, value in per_metric.items():
                    metrics.append(Metric(_metric_name(f"{split}_{metric}@{cutoff}"), float(value), 0, 0))
        metrics += [Metric("best_epoch", float(result.best_epoch), 0, 0),
                    Metric("seconds_per_epoch", float(result.seconds_per_epoch), 0, 0)]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow's batch limit: 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000],
                                  params=params if start == 0 else [])
        self.client.set_terminated(run_id)
        self.trial_runs[result.name] = run_id

    def finish(self, files: List[Path], status: str = "FINISHED") -> None:
        """The plots and the report of the experiment on the parent run; the parent run ends."""
        plots = self.results_folder / "plots"
        if plots.is_dir():
            self.client.log_artifacts(self.parent_id, str(plots), artifact_path="plots")
        report = self.results_folder / "report.html"
        if report.exists():
            self.client.log_artifact(self.parent_id, str(report))
        self.client.set_terminated(self.parent_id, status=status)


def start_tracking(tracking: Optional[dict], experiment: dict, results_folder: Path, timestamp: str,
                   config_file: Path) -> Optional[MlflowTracker]:
    settings = check_tracking(tracking)
    if settings is None:
        return None
    try:
        return MlflowTracker(settings, experiment, results_folder, timestamp, config_file)
    except Exception as exc:  # an unreachable server is a setting to fix, before any trial runs
        raise ConfigError(f"{WHERE}: could not open the tracking store {settings['tracking_uri']!r}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def safely(what: str, action, *args, **kwargs) -> None:
    """Tracking never costs finished work: an error after a trial is stored becomes a warning."""
    try:
        action(*args, **kwargs)
    except Exception as exc:
        logger.warning("MLflow tracking: %s failed: %s", what, exc)
