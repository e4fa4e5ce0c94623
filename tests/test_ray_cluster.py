"""Sweeps on a real multi-node Ray cluster on 127.0.0.1 (``ray start`` head + worker nodes, token
authentication on): trials land on both nodes, the driver killed mid-sweep and rerun reuses every
finished trial and duplicates none, a worker node killed mid-trial costs a retry and not the sweep, and
``ray://`` (Ray Client) works as ``HOST:PORT`` does.  Ray is installed in CI (requirements_ray.txt); without
it these tests skip and test_search_run checks the one-line error."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from elliot.run import run_experiment  # noqa: E402
from tests.ray_cluster import LocalRayCluster, running_trial_processes  # noqa: E402
from tests.test_search_run import bprmf, make_config, make_data, records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    cluster = LocalRayCluster(head_cpus=1)
    try:
        cluster.add_node("worker", cpus=1)
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def _refresh_ray_auth() -> None:
    """Ray caches the auth mode and token when first read; a process that changes RAY_AUTH_* after importing
    ray (as this test process does) must refresh both (a user sets them before starting Python)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture
def as_driver(cluster):
    """This process as one of the cluster's drivers: its auth mode and token, nothing else of Ray's."""
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: cluster.env[k] for k in keys[:2]})
    os.environ.pop("RAY_ADDRESS", None)
    _refresh_ray_auth()
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh_ray_auth()


def _ray_model(address: str, epochs: int = 1, **grid):
    return bprmf(meta={"executor": "ray", "ray_address": address}, epochs=epochs, **grid)


def test_a_grid_lands_on_both_nodes_and_matches_the_sequential_run(tmp_path, data, as_driver):
    cluster = as_driver
    os.environ["RAY_ADDRESS"] = cluster.address  # `ray_address: auto` finds the cluster through it
    config = make_config(tmp_path / "ray", data, {"BPRMF": _ray_model("auto", factors=[4, 8, 12, 16])})
    result = run_experiment(config, progress=False)
    assert result.ran["BPRMF"] == 4
    nodes = {r["node"] for r in _trial_lines(records(tmp_path / "ray", "BPRMF").path)}
    ids = cluster.node_ids()
    assert nodes == {ids["head"], ids["worker"]}  # one CPU per node: two trials at a time, one on each
    sequential = run_experiment(make_config(tmp_path / "seq", data, {"BPRMF": bprmf(factors=[4, 8, 12, 16])}),
                                progress=False)
    assert [t.test for t in result.trials["BPRMF"]] == [t.test for t in sequential.trials["BPRMF"]]


DRIVER = """
import sys
from elliot.run import run_experiment
result = run_experiment(sys.argv[1], progress=False)
print("restored", result.restored["BPRMF"], "ran", result.ran["BPRMF"])
"""


def _trial_lines(store_path: Path):
    if not store_path.exists():
        return []
    return [json.loads(line)["record"] for line in store_path.read_text().splitlines() if line.strip()]


def test_driver_killed_mid_sweep_then_rerun_reuses_finished_trials(tmp_path, data, cluster):
    # through Ray Client (ray://): the driver is a separate process, killed with SIGKILL mid-sweep
    grid = {"factors": [4, 8, 12, 16, 20, 24]}
    config = make_config(tmp_path, data, {"BPRMF": _ray_model(cluster.client_address, epochs=40, **grid)})
    store_path = records(tmp_path, "BPRMF").path
    env = {k: v for k, v in cluster.env.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(config)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_trial_lines(store_path)) < 1 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    finished_before = len(_trial_lines(store_path))
    assert driver.poll() is None, driver.stdout.read().decode()[-3000:]  # killed mid-sweep, not after it
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    kept = _trial_lines(store_path)
    assert 1 <= finished_before <= len(kept) < len(grid["factors"])

    rerun = subprocess.run([sys.executable, "-c", DRIVER, str(config)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    after = _trial_lines(store_path)
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == len(grid["factors"])  # nothing duplicated, nothing lost
    assert after[:len(kept)] == kept  # the finished trials were reused as stored
    assert f"restored {len(kept)} ran {len(grid['factors']) - len(kept)}" in rerun.stdout


def test_a_worker_node_killed_mid_trial_is_retried_and_the_sweep_finishes(tmp_path, data, as_driver):
    cluster = as_driver
    cluster.add_node("victim", cpus=1)
    victim = cluster.node_ids()["victim"]
    killed = threading.Event()

    def kill_when_every_node_runs_a_trial():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if running_trial_processes() >= 3:  # head, worker and victim each run one trial
                time.sleep(0.5)
                cluster.kill_node("victim")
                killed.set()
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_every_node_runs_a_trial, daemon=True)
    killer.start()
    config = make_config(tmp_path, data, {"BPRMF": _ray_model(cluster.address, epochs=60, factors=[4, 8, 12])})
    result = run_experiment(config, progress=False)
    killer.join(timeout=10)
    assert killed.is_set()
    assert result.ran["BPRMF"] == 3 and len(result.trials["BPRMF"]) == 3
    lines = _trial_lines(records(tmp_path, "BPRMF").path)
    assert len(lines) == 3 and all(r["status"] == "ok" for r in lines)
    assert victim not in {r["node"] for r in lines}  # the victim's trial was rerun elsewhere
