"""experiment.tracking.mlflow: every trial run now as a nested MLflow run (a local file store here)."""
import pytest
import yaml

from elliot.errors import ConfigError
from elliot.run import run_experiment
from tests.test_search_run import bprmf, make_config, make_data

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def _runs(store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    [experiment] = [e for e in client.search_experiments() if e.name == "study"]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_each_trial_is_a_nested_run_with_params_and_per_epoch_metrics(tmp_path, data):
    store = tmp_path / "mlruns"
    tracking = {"mlflow": {"tracking_uri": str(store), "experiment_name": "study"}}
    config = make_config(tmp_path, data, {"BPRMF": bprmf(factors=[4, 8], epochs=3)}, tracking=tracking)
    result = run_experiment(config, progress=False)
    client, parents, children = _runs(store)
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    by_name = {c.info.run_name: c for c in children}
    for trial in result.trials["BPRMF"]:
        run = by_name[trial.name]
        assert run.data.params["factors"] == str(trial.params["factors"])
        assert run.data.metrics["test_Recall_at_20"] == pytest.approx(trial.test[20]["Recall"])
        assert run.data.metrics["validation_nDCG_at_10"] == pytest.approx(trial.validation[10]["nDCG"])
        assert run.data.metrics["best_epoch"] == trial.best_epoch
        losses = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in losses] == [1, 2, 3]
        assert [m.value for m in losses] == pytest.approx([row["loss"] for row in trial.history])
        assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert any(p.startswith("config_") and p.endswith(".yml") for p in artifacts)
    assert (result.results_folder / "plots").is_dir() and "plots" in artifacts
    assert "report.html" in artifacts
    assert parent.info.status == "FINISHED"

    # a rerun reuses both trials: a new parent run, no trial logged twice
    run_experiment(config, progress=False)
    _, parents, children = _runs(store)
    assert len(parents) == 2 and len(children) == 2


def test_tracking_errors_are_one_line(tmp_path, data):
    config = make_config(tmp_path, data, {"BPRMF": bprmf()}, tracking={"mlflow": {}})
    with pytest.raises(ConfigError, match="tracking_uri"):
        run_experiment(config, progress=False)
    config = make_config(tmp_path, data, {"BPRMF": bprmf()}, tracking={"mlfow": {"tracking_uri": "x"}})
    with pytest.raises(ConfigError, match="mlflow"):
        run_experiment(config, progress=False)
    assert yaml.safe_load(config.read_text())["experiment"]["tracking"]  # the file said what was asked
