"""Fault: a Ray worker node is lost mid-sweep (issue "Fault tolerance").

A harness cluster (``cluster/harness.py``: a Ray head and one worker node, 1 CPU each, separate
``ray start`` processes on 127.0.0.1) runs a 6-trial sweep tracked in a real MLflow server; once
the worker node has finished a trial (and started the next), its whole process group is killed
with SIGKILL. Tune retries the trials it lost (``max_failures``, default 2) on the head node: the
sweep completes, and every trial appears exactly once in MLflow, FINISHED.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from test_sweep import METASWEEP, _env, kill_tree, runs_of, summary_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(REPO, "cluster", "harness.py")
STATE_ROOT = os.path.join(REPO, ".state", "t")  # in a deep checkout the harness moves Ray's temp dir to /tmp

# 6 trials of ~1 s of kernels each (K=3, H=3, T=250000, every 1000th iteration evaluated).
SPEC = """\
experiment: {experiment}
search_space:
  eta: 0.05
  K: 3
  H: 3
  sigma: 0.1
  T: 250000
  seed: {{grid: [0, 1, 2]}}
  stage_reset: {{grid: [true, false]}}
eval_every: 1000
resources:
  cpus: 1
max_failures: 2
tracking:
  metric_history_points: 20
"""
TRIALS = 6


def harness(*args, timeout=300):
    return subprocess.run([sys.executable, HARNESS, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_worker_node_lost_mid_sweep(mlflow_server, tmp_path):
    os.makedirs(STATE_ROOT, exist_ok=True)
    state = os.path.join(STATE_ROOT, f"w-{uuid.uuid4().hex[:6]}")
    driver = None
    try:
        up = harness("up", "--state-dir", state, "--workers", 1, "--head-cpus", 1, "--worker-cpus", 1, "--no-tracking")
        assert up.returncode == 0, up.stderr[-3000:]
        info = json.loads(up.stdout.strip().splitlines()[-1])
        worker = next(n for n in info["nodes"] if n["role"] == "worker")
        name = f"worker-loss-{uuid.uuid4().hex[:8]}"
        (tmp_path / "spec.yaml").write_text(SPEC.format(experiment=name))
        client = MlflowClient(tracking_uri=mlflow_server)
        with open(tmp_path / "run.log", "w") as log:
            driver = subprocess.Popen([METASWEEP, "run", "spec.yaml", "--address", info["address"], "--tracking-uri",
                                       mlflow_server], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=log,
                                      text=True, start_new_session=True)
        deadline, on_worker = time.monotonic() + 180, []
        while time.monotonic() < deadline and driver.poll() is None and not on_worker:
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                on_worker = client.search_runs(
                    [exp.experiment_id], f"attributes.status = 'FINISHED' and tags.`metasweep.node_id` = '{worker['node_id']}'")
            time.sleep(0.1)
        assert driver.poll() is None and on_worker, (tmp_path / "run.log").read_text()[-3000:]
        os.killpg(worker["pid"], signal.SIGKILL)  # the node is lost: ray start, its raylet and its workers
        out, _ = driver.communicate(timeout=300)
        err = (tmp_path / "run.log").read_text()
        assert driver.returncode == 0, err[-3000:]
        summary = summary_json(out)
        assert (summary["trials"], summary["finished"], summary["failed"]) == (TRIALS, TRIALS, 0), summary
        parents, children = runs_of(client, name)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(children) == TRIALS and {c.info.status for c in children} == {"FINISHED"}
        assert len({c.data.tags["metasweep.trial_id"] for c in children}) == TRIALS  # each trial exactly once
        assert sorted((c.data.params["seed"], c.data.params["stage_reset"]) for c in children) == sorted(
            (str(s), str(r)) for s in range(3) for r in (True, False))
        nodes = {c.data.tags["metasweep.node_id"] for c in children}
        assert worker["node_id"] in nodes and len(nodes) == 2  # trials ran on both nodes, the rest on the head
    finally:
        if driver is not None and driver.poll() is None:
            kill_tree(driver)
        down = harness("down", "--state-dir", state)
        assert down.returncode == 0, down.stderr
        shutil.rmtree(os.path.realpath(os.path.join(state, "ray")), ignore_errors=True)  # /tmp/msray-* when linked
        shutil.rmtree(state, ignore_errors=True)
