"""A real multi-node Ray cluster on 127.0.0.1 for the tests: a head and worker nodes, each started with
``ray start --block`` in its own process group (so one node can be killed without touching the others),
token authentication on (``RAY_AUTH_MODE=token``, a fresh token per cluster) as a real cluster should run.

Ray 2.60's ``ray start --head`` enables or disables token authentication from the environment; every
node and every driver must agree, so the cluster's environment (:attr:`LocalRayCluster.env`) carries
the mode and the token and drivers get it too.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRayCluster:
    def __init__(self, head_cpus: int = 1):
        self.temp_dir = tempfile.mkdtemp(prefix="elray_", dir="/tmp")  # short: Ray's socket paths are capped
        self.port = free_port()
        self.client_port = free_port()
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                        RAY_USAGE_STATS_ENABLED="0",
                        # a killed node is declared dead in ~2 s instead of ~30 s
                        RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="3",
                        RAY_health_check_initial_delay_ms="500")
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: Dict[str, subprocess.Popen] = {}
        self._start("head", ["--head", f"--port={self.port}", f"--ray-client-server-port={self.client_port}",
                             "--include-dashboard=false", f"--temp-dir={self.temp_dir}"], head_cpus)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    def add_node(self, name: str, cpus: int = 1) -> None:
        self._start(name, [f"--address={self.address}"], cpus)

    def _start(self, name: str, args: List[str], cpus: int) -> None:
        cmd = ["ray", "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
               "--disable-usage-stats", f"--resources={{\"node_{name}\": 1}}", *args]
        log = open(os.path.join(self.temp_dir, f"start_{name}.log"), "wb")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes[name] = proc
        self._wait_for(name)

    def _wait_for(self, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        log = os.path.join(self.temp_dir, f"start_{name}.log")
        while time.monotonic() < deadline:
            text = open(log, errors="replace").read()
            if self.nodes[name].poll() is not None:
                raise RuntimeError(f"ray start for node {name} exited: {text[-2000:]}")
            if "Ray runtime started" in text:
                return
            time.sleep(0.3)
        raise RuntimeError(f"node {name} did not start within {START_TIMEOUT_S} s: {text[-2000:]}")

    def node_ids(self) -> Dict[str, str]:
        """name -> Ray node id of every live node (one short driver connection)."""
        script = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                  "print(json.dumps([n for n in ray.nodes() if n['Alive']]))" % self.address)
        out = subprocess.run(["python", "-c", script], env=self.env, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"could not list the cluster's nodes: {out.stderr[-2000:]}")
        nodes = json.loads(out.stdout.strip().splitlines()[-1])
        return {key[len("node_"):]: n["NodeID"] for n in nodes for key in n.get("Resources", {})
                if key.startswith("node_") and not key.startswith("node:")}

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's whole process group (raylet, its object store and its workers)."""
        proc = self.nodes.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def shutdown(self) -> None:
        """SIGKILL every node's process group, workers first (nothing of the cluster needs to be kept)."""
        for name in [n for n in self.nodes if n != "head"] + [n for n in self.nodes if n == "head"]:
            self.kill_node(name)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def running_trial_processes() -> int:
    """Ray names a worker process after the task it runs (``ray::_ray_trial``)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("ray::_ray_trial"))
