"""Faults on real processes (issue "Fault tolerance"): the MLflow server dies during a sweep.

The trials still complete, their results go to the sweep's outbox (``runs/sweeps/ID/outbox``), and
``metasweep sync`` uploads them once the server is back: every trial exactly once, FINISHED, with
the expected metric points; a second sync changes nothing.
"""

import json
import subprocess
import time
import uuid

import pytest
from conftest import _server, free_port
from mlflow.tracking import MlflowClient
from test_sweep import (
    METASWEEP,
    _env,
    kill_tree,
    metasweep,
    run_small_sweep,
    runs_of,
    summary_json,
)

# 6 trials of ~1 s of kernels each (K=3, H=3, T=250000, every 1000th iteration evaluated), 2 at a time.
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
tracking:
  metric_history_points: 20
"""
TRIALS = 6


def _start(state, port):
    proc = _server("start", "--state-dir", state, "--port", port, "--timeout", 60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["url"]


@pytest.mark.slow
def test_mlflow_outage_outbox_and_sync(tmp_path):
    state, port = tmp_path / "server", free_port()
    url = _start(state, port)
    name = f"outage-{uuid.uuid4().hex[:8]}"
    (tmp_path / "spec.yaml").write_text(SPEC.format(experiment=name))
    client = MlflowClient(tracking_uri=url)
    driver = None
    try:
        with open(tmp_path / "run.log", "w") as log:
            driver = subprocess.Popen([METASWEEP, "run", "spec.yaml", "--tracking-uri", url, "--num-cpus", "2"],
                                      cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True,
                                      start_new_session=True)
        deadline, done = time.monotonic() + 120, []
        while time.monotonic() < deadline and driver.poll() is None and not done:
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                done = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and tags.`metasweep.role` = 'trial'")
            time.sleep(0.2)
        assert driver.poll() is None and done, (tmp_path / "run.log").read_text()[-3000:]
        stop = _server("stop", "--state-dir", state)  # the server dies mid-sweep (by PID)
        assert stop.returncode == 0, stop.stderr
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver is not None and driver.poll() is None:
            kill_tree(driver)
        _server("stop", "--state-dir", state)
    err = (tmp_path / "run.log").read_text()
    assert driver.returncode == 0, err[-3000:]
    summary = summary_json(out)
    assert (summary["trials"], summary["finished"], summary["failed"]) == (TRIALS, TRIALS, 0)
    assert summary["outbox_pending"] >= 2, summary  # trials after the outage and the parent's record
    assert "metasweep sync" in err
    sweep_id = summary["sweep_id"]

    url = _start(state, port)  # the same store comes back
    try:
        rc, out, err = metasweep(["sync", sweep_id], tmp_path, 120)
        assert rc == 0, err[-3000:]
        first = json.loads(out.strip().splitlines()[-1])
        assert first["uploaded"] >= 1 and first["pending"] == 0 and first["parent_logged"]
        rc, out, err = metasweep(["sync", sweep_id], tmp_path, 120)  # idempotent
        assert rc == 0 and json.loads(out.strip().splitlines()[-1])["uploaded"] == 0

        client = MlflowClient(tracking_uri=url)
        parents, children = runs_of(client, name)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert parents[0].data.metrics["trials/finished"] == TRIALS
        assert len(children) == TRIALS and {c.info.status for c in children} == {"FINISHED"}
        trial_ids = [c.data.tags["metasweep.trial_id"] for c in children]
        assert len(set(trial_ids)) == TRIALS
        for c in children:
            for key in ("gap/meta", "gap/individual", "value/meta", "value/individual"):
                steps = [m.step for m in client.get_metric_history(c.info.run_id, key)]
                assert len(steps) == len(set(steps)) == 20 and max(steps) == 250000, (key, len(steps))
            assert "final_gap/meta" in c.data.metrics and "metasweep.node_id" in c.data.tags
            assert [a.path for a in client.list_artifacts(c.info.run_id)] == ["curves.parquet"]
        rc, out, _ = metasweep(["status", sweep_id], tmp_path, 60)
        status = json.loads(out.strip().splitlines()[-1])
        assert rc == 0 and status["finished"] == TRIALS and status["outbox_pending"] == 0
    finally:
        _server("stop", "--state-dir", state)


SPEC_DIVERGE = """\
experiment: {experiment}
search_space:
  eta: {{grid: [0.05, 1.7e308]}}
  K: 2
  H: 3
  T: 100
resources:
  cpus: 1
"""


@pytest.mark.slow
def test_divergence_is_recorded_and_the_sweep_goes_on(mlflow_server, tmp_path):
    """eta = 1.7e308 overflows even the log-space updates: that trial is FINISHED with diverged = 1, the
    iteration, the tag metasweep.status = diverged and no curves; the other trial is untouched."""
    summary, client, parent, children = run_small_sweep(SPEC_DIVERGE, "diverge", mlflow_server, tmp_path)
    assert (summary["finished"], summary["failed"], summary["diverged"]) == (2, 0, 1)
    assert parent.data.metrics["trials/diverged"] == 1
    by_eta = {float(c.data.params["eta"]): c for c in children}
    bad, good = by_eta[1.7e308], by_eta[0.05]
    assert bad.info.status == good.info.status == "FINISHED"
    assert bad.data.tags["metasweep.status"] == "diverged" and good.data.tags["metasweep.status"] == "ok"
    assert bad.data.metrics["diverged"] == 1 and 1 <= bad.data.metrics["diverged_at"] <= 100
    assert "final_gap/meta" not in bad.data.metrics and client.list_artifacts(bad.info.run_id) == []
    assert good.data.metrics["diverged"] == 0 and good.data.metrics["final_gap/meta"] >= 0


@pytest.mark.parametrize("scale, eta, diverges", [(1.0, 1e300, False), (1e300, 0.05, False), (1e100, 1e300, True),
                                                  (1.0, 1.7e308, True)])
def test_kernel_is_finite_or_reports_the_iteration(scale, eta, diverges):
    """Extreme eta and rewards: the log-space updates keep the curves finite, or the kernel stops with
    Diverged(iteration) (never a silent NaN/Inf in a curve)."""
    import numpy as np

    from solvers import algorithm1
    from solvers.games import ZeroSumGame
    from solvers.generators import paper_zero_sum_game

    g = paper_zero_sum_game(3)
    game = ZeroSumGame(g.rewards * scale, g.transitions)
    if diverges:
        with pytest.raises(algorithm1.Diverged) as info:
            algorithm1.solve(game, 200, eta)
        assert 1 <= info.value.iteration <= 200
    else:
        r = algorithm1.solve(game, 200, eta)
        assert np.all(np.isfinite(r.gap)) and np.all(np.isfinite(r.value)) and np.all(r.gap >= -1e-9 * scale)
