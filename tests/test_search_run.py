"""Sweeps end to end on a slice of the embedded dataset: a 12-configuration grid and a 20-evaluation TPE
search, resume after SIGKILL, parallel workers = sequential, Ray (when installed), diverged trials."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from elliot.errors import ConfigError
from elliot.run import run_experiment
from elliot.search.store import TrialStore

ROOT = Path(__file__).resolve().parents[1]


def make_data(folder: Path, n_users=150) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "val.tsv", "test.tsv"):
        rows = np.loadtxt(ROOT / "data" / "default" / name, dtype=np.int64, delimiter="\t")
        np.savetxt(data / name, rows[rows[:, 0] < n_users], fmt="%d", delimiter="\t")
    return data


def make_config(folder: Path, data: Path, models: dict, **experiment) -> Path:
    exp = {"dataset": "mini",
           "data_config": {"strategy": "fixed", "train_path": str(data / "train.tsv"),
                           "validation_path": str(data / "val.tsv"), "test_path": str(data / "test.tsv")},
           "top_k": 20,
           "evaluation": {"cutoffs": [10, 20], "simple_metrics": ["Recall", "nDCG"], "paired_ttest": True,
                          "wilcoxon_test": True},
           "models": models, **experiment}
    (folder / "config_files").mkdir(parents=True, exist_ok=True)
    path = folder / "config_files" / "exp.yml"
    path.write_text(yaml.safe_dump({"experiment": exp}))
    return path


META = {"validation_metric": "Recall@20"}


def bprmf(**kw):
    return {"meta": dict(META, **kw.pop("meta", {})), "epochs": 1, "batch_size": 512, "factors": 8, "lr": 0.005,
            "seed": 5, **kw}


def table(folder: Path, prefix="rec", cutoff=20) -> str:
    [path] = sorted((folder / "results" / "mini" / "performance").glob(f"{prefix}_cutoff_{cutoff}_*.tsv"))[-1:]
    return path.read_text()


def records(folder: Path, model: str) -> TrialStore:
    return TrialStore(folder / "results" / "mini" / "trials", model).load()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def test_grid_of_12_and_tpe_of_20_complete_and_resume(tmp_path, data):
    models = {"BPRMF": bprmf(factors=[4, 8, 16], lr=[0.001, 0.005, 0.01, 0.05]),
              "LightGCN": {"meta": dict(META, hyper_opt_alg="tpe", hyper_max_evals=20), "epochs": 1,
                           "batch_size": 512, "factors": 8, "n_layers": [1, 2], "lr": ["loguniform", -7, -2],
                           "seed": 5}}
    config = make_config(tmp_path, data, models)
    result = run_experiment(config, progress=False)
    assert len(result.trials["BPRMF"]) == 12 and result.ran["BPRMF"] == 12
    assert result.ran["LightGCN"] == len(result.trials["LightGCN"]) and len(result.trials["LightGCN"]) >= 18
    for model in models:
        trials = result.trials[model]
        best = result.best[model]
        assert best.validation[20]["Recall"] == max(t.validation[20]["Recall"] for t in trials)  # validation only
        assert len(records(tmp_path, model)) == len(trials)
        rows = table(tmp_path, f"rec_{model}").splitlines()
        assert rows[0] == "model\tRecall\tnDCG" and len(rows) == 1 + len(trials)
    lr = sorted({t.params["lr"] for t in result.trials["LightGCN"]})
    assert np.exp(-7) <= lr[0] and lr[-1] <= np.exp(-2) and len(lr) >= 18
    summary = table(tmp_path).splitlines()
    assert len(summary) == 1 + 12 + len(result.trials["LightGCN"])
    perf = tmp_path / "results" / "mini" / "performance"
    best = json.loads(next(perf.glob("bestmodelparams_cutoff_20_*.json")).read_text())
    assert {b["model"]: b["recommender"] for b in best} == {m: r.name for m, r in result.best.items()}
    assert best[0]["configuration"] == result.best["BPRMF"].params
    stat = next(perf.glob("stat_wilcoxon_test_cutoff_20_*.tsv")).read_text().splitlines()
    assert stat[1].split("\t")[:2] == [result.best["BPRMF"].name, result.best["LightGCN"].name]

    # rerun the same config: nothing runs, the same selection; a larger budget continues the TPE search
    time.sleep(1.1)  # a new timestamp for the new result files
    more = dict(models, LightGCN=dict(models["LightGCN"], meta=dict(META, hyper_opt_alg="tpe", hyper_max_evals=23)))
    again = run_experiment(make_config(tmp_path, data, more), progress=False)
    assert again.ran["BPRMF"] == 0 and again.restored["BPRMF"] == 12
    assert again.restored["LightGCN"] == len(result.trials["LightGCN"]) and 1 <= again.ran["LightGCN"] <= 3
    assert [t.name for t in again.trials["LightGCN"][:len(result.trials["LightGCN"])]] == \
        [t.name for t in result.trials["LightGCN"]]
    assert again.best["BPRMF"].name == result.best["BPRMF"].name
    assert again.best["BPRMF"].test == result.best["BPRMF"].test
    assert len(table(tmp_path, "rec_LightGCN").splitlines()) == 1 + len(again.trials["LightGCN"])  # old and new


KILL_SCRIPT = "import sys; from elliot.run import run_experiment; run_experiment(sys.argv[1], progress=False)"


def test_killed_sweep_resumes_with_the_remaining_trials_only(tmp_path, data):
    models = {"BPRMF": bprmf(epochs=2, factors=[8, 16], lr=[0.001, 0.005, 0.01])}
    config = make_config(tmp_path / "killed", data, models)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(records(tmp_path / "killed", "BPRMF")) >= 1:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = len(records(tmp_path / "killed", "BPRMF"))
    assert 1 <= done < 6, "the subprocess was killed after its first trials"
    resumed = run_experiment(config, progress=False)
    assert resumed.restored["BPRMF"] == done and resumed.ran["BPRMF"] == 6 - done
    store = records(tmp_path / "killed", "BPRMF")
    assert len(store) == 6
    lines = (store.path.read_text().splitlines())
    assert len([ln for ln in lines if ln.strip()]) - len(store.corrupt) == 6  # nothing ran twice

    clean = run_experiment(make_config(tmp_path / "clean", data, models), progress=False)
    assert table(tmp_path / "killed") == table(tmp_path / "clean")
    assert table(tmp_path / "killed", "rec_BPRMF") == table(tmp_path / "clean", "rec_BPRMF")
    assert resumed.best["BPRMF"].name == clean.best["BPRMF"].name
    assert resumed.best["BPRMF"].test == clean.best["BPRMF"].test
    strip = lambda t: [ln.split()[:-1] for ln in t.splitlines()]  # noqa: E731  (s/epoch: timings differ)
    assert strip(resumed.table) == strip(clean.table)


def test_two_workers_give_the_sequential_metrics(tmp_path, data):
    models = {"BPRMF": bprmf(epochs=2, factors=[4, 8], lr=[0.005, 0.05])}
    sequential = run_experiment(make_config(tmp_path / "seq", data, models), progress=False)
    parallel = run_experiment(make_config(tmp_path / "par", data, models, n_jobs=2), progress=False)
    assert parallel.ran["BPRMF"] == 4
    for a, b in zip(sequential.trials["BPRMF"], parallel.trials["BPRMF"]):
        assert a.name == b.name and a.params == b.params
        assert a.test == b.test and a.validation == b.validation and a.best_epoch == b.best_epoch
        assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert table(tmp_path / "seq") == table(tmp_path / "par")
    history = tmp_path / "par" / "results" / "mini" / "history" / f"{parallel.best['BPRMF'].name}.tsv"
    assert history.read_text().startswith("epoch\tloss")  # artefacts written by the parent


def test_ray_executor_on_a_local_instance(tmp_path, data):
    pytest.importorskip("ray")
    models = {"BPRMF": bprmf(factors=[4, 8], meta={"executor": "ray", "n_jobs": 2})}
    result = run_experiment(make_config(tmp_path / "ray", data, models), progress=False)
    assert result.ran["BPRMF"] == 2 and len(records(tmp_path / "ray", "BPRMF")) == 2
    sequential = run_experiment(make_config(tmp_path / "seq", data, {"BPRMF": bprmf(factors=[4, 8])}),
                                progress=False)
    assert [t.test for t in result.trials["BPRMF"]] == [t.test for t in sequential.trials["BPRMF"]]


def test_diverged_trials_are_kept_but_never_selected(tmp_path, data, monkeypatch):
    import elliot.trial
    from elliot.training.trainer import TrainingDiverged

    real = elliot.trial.run_trial
    calls = []

    def flaky(ctx, name, cls, params, *args, **kwargs):
        calls.append(params["lr"])
        if params["lr"] > 1:
            raise TrainingDiverged(f"{name}: training loss became nan at epoch 1; lower `lr`")
        return real(ctx, name, cls, params, *args, **kwargs)

    monkeypatch.setattr(elliot.trial, "run_trial", flaky)
    config = make_config(tmp_path, data, {"BPRMF": bprmf(lr=[0.005, 100.0])})
    result = run_experiment(config, progress=False)
    assert [t.params["lr"] for t in result.trials["BPRMF"]] == [0.005] and result.ran["BPRMF"] == 2
    assert result.best["BPRMF"].params["lr"] == 0.005
    again = run_experiment(config, progress=False)
    assert again.restored["BPRMF"] == 2 and calls == [0.005, 100.0]  # the divergence is not re-run
    monkeypatch.setattr(elliot.trial, "run_trial", flaky)
    with pytest.raises(Exception, match="every configuration diverged"):
        run_experiment(make_config(tmp_path / "all", data, {"BPRMF": bprmf(lr=[50.0, 100.0])}), progress=False)


def test_restore_false_reruns_and_config_errors(tmp_path, data):
    models = {"BPRMF": bprmf(factors=[4, 8])}
    config = make_config(tmp_path, data, models)
    first = run_experiment(config, progress=False)
    rerun = run_experiment(config, overrides={"experiment.models.BPRMF.meta.reuse_trials": False}, progress=False)
    assert rerun.ran["BPRMF"] == 2 and rerun.restored["BPRMF"] == 0
    assert [t.test for t in rerun.trials["BPRMF"]] == [t.test for t in first.trials["BPRMF"]]
    bad = {"experiment.models.BPRMF.meta.executor": "proces"}
    with pytest.raises(ConfigError, match=r"executor: 'proces' \(did you mean 'process'\?\)"):
        run_experiment(config, overrides=bad, progress=False)
    with pytest.raises(ConfigError, match=r"meta\.n_jobs: 0 must be a positive integer"):
        run_experiment(config, overrides={"experiment.models.BPRMF.meta.n_jobs": 0}, progress=False)
    with pytest.raises(ConfigError, match=r"hyper_max_evals: 'x' is not a positive integer"):
        run_experiment(config, overrides={"experiment.models.BPRMF.meta.hyper_max_evals": "x"}, progress=False)
    with pytest.raises(ConfigError, match=r"BPRMF\.lr: unknown hyperopt space kind 'logunifrom'"):
        run_experiment(config, overrides={"experiment.models.BPRMF.lr": ["logunifrom", -5, -1]}, progress=False)


def test_missing_ray_is_a_config_error(tmp_path, data, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    config = make_config(tmp_path, data, {"BPRMF": bprmf(factors=[4, 8], meta={"executor": "ray"})})
    with pytest.raises(ConfigError, match=r"BPRMF\.meta\.executor: ray needs the optional package ray "
                                          r"\(pip install ray\)"):
        run_experiment(config, progress=False)
    assert not (tmp_path / "results").exists()  # said before any data is read or written
