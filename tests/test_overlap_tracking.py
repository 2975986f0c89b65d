"""Overlapped tracking (issue 3, ``tracking.overlap``): a trial hands its MLflow upload to its worker's
background thread and returns, so the worker's next trial computes while MLflow is written.

1. A real sweep (real Ray, real MLflow server), with and without overlap: every child run FINISHED
   with its metrics, histories and curves, the worker's last trial included, uploaded by the worker
   itself (a stopping worker finishes its upload: the outbox is empty, nothing was left for the
   driver), and ``time/tracking_wait_s`` logged beside ``time/tracking_s``.
2. A worker that died mid-upload (its run RUNNING, half logged, its result in the outbox): the end
   of the sweep completes that run, FINISHED, no point logged twice.
"""

import os
import uuid

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from test_sweep import run_small_sweep

SPEC = """\
experiment: {experiment}
search_space:
  eta: 0.05
  K: 2
  H: 3
  sigma: 0.1
  T: 300
  seed: {{grid: [0, 1, 2, 3, 4, 5]}}
resources:
  cpus: 1
tracking:
  metric_history_points: 20
  overlap: {overlap}
"""
TRIALS, K, T = 6, 2, 300


@pytest.mark.slow
@pytest.mark.parametrize("overlap", ["true", "false"])
def test_every_trial_uploaded_by_its_worker(overlap, mlflow_server, tmp_path):
    template = SPEC.replace("{overlap}", overlap)
    summary, client, parent, children = run_small_sweep(template, f"overlap-{overlap}", mlflow_server, tmp_path, TRIALS)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials/finished"] == TRIALS
    assert {c.info.status for c in children} == {"FINISHED"}
    assert len({c.data.tags["metasweep.trial_id"] for c in children}) == TRIALS
    assert sorted(int(c.data.params["seed"]) for c in children) == list(range(TRIALS))
    for c in children:
        m = c.data.metrics
        assert m["time/tracking_s"] > 0 and m["time/tracking_wait_s"] > 0, m
        if overlap == "false":  # the trial waited for the whole upload (up to its artifact) and its lookup
            assert m["time/tracking_wait_s"] > m["time/tracking_s"]
        steps = [h.step for h in client.get_metric_history(c.info.run_id, "gap/meta")]
        assert len(steps) == len(set(steps)) == 20 and max(steps) == T
        curves = pq.read_table(client.download_artifacts(c.info.run_id, "curves.parquet", str(tmp_path / c.info.run_id)))
        assert curves.num_rows == 2 * K * T
    # the workers uploaded everything themselves, their last trials included: no entry left, none synced by the driver
    outbox = tmp_path / "runs" / "sweeps" / summary["sweep_id"] / "outbox"
    assert not outbox.exists() or os.listdir(outbox) == []
    assert summary["outbox_pending"] == 0 and "outbox_uploaded" not in summary


def test_run_left_running_by_a_dead_worker_is_completed(mlflow_server, tmp_path, monkeypatch):
    """What a worker killed mid-upload leaves: the child run created and RUNNING, the first log_batch
    through (sentinel included), no artifact, the outbox entry. ``_finish`` completes it."""
    from sweeps import service
    from sweeps.spec import parse_spec, read_yaml
    from sweeps.trial import TrialSettings, run_trial
    from tracking.mlflow_runs import create_child, ensure_experiment, start_parent_run
    from tracking.outbox import Outbox

    monkeypatch.chdir(tmp_path)  # the outbox lives in ./runs/sweeps/SWEEP_ID/outbox
    spec = parse_spec(read_yaml(SPEC.format(experiment="x", overlap="true"), "spec"), "spec")
    settings = TrialSettings.from_spec(spec)
    config = {k: p.values[0] for k, p in spec.params.items() if p.kind == "const"} | {"seed": 0}
    out = run_trial(config, settings)
    record = service.trial_record(config, out, settings, 20)
    record["scalars"]["time/tracking_wait_s"] = 0.01

    client = MlflowClient(tracking_uri=mlflow_server)
    exp_id = ensure_experiment(client, f"dead-worker-{uuid.uuid4().hex[:8]}")
    sweep_id = f"dead-{uuid.uuid4().hex[:8]}"
    parent_id = start_parent_run(client, exp_id, sweep_id, "spec", {})
    run_id = create_child(client, exp_id, parent_id, sweep_id, "t_00000", record["run_name"])
    Outbox(service._outbox_dir(sweep_id)).put("t_00000", record, out.curves)

    class Died(Exception):
        pass

    real = client.log_batch

    def first_batch_then_die(*a, **k):  # the upload's first batch reaches MLflow, then the process is gone
        real(*a, **k)
        raise Died

    monkeypatch.setattr(client, "log_batch", first_batch_then_die)
    with pytest.raises(Died):
        service._log_record(client, run_id, record, out.curves, new_run=True)
    monkeypatch.setattr(client, "log_batch", real)
    assert client.get_run(run_id).info.status == "RUNNING" and client.list_artifacts(run_id) == []

    summary = service._finish(client, parent_id, [], sweep_id, 1, exp_id)
    assert summary["outbox_uploaded"] == 1 and summary["outbox_pending"] == 0
    runs = client.search_runs([exp_id], "tags.`metasweep.role` = 'trial'")
    assert [r.info.run_id for r in runs] == [run_id]  # completed in place, not duplicated
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["time/tracking_wait_s"] == 0.01 and run.data.metrics["time/trial_s"] > 0
    steps = [h.step for h in client.get_metric_history(run_id, "gap/meta")]
    assert len(steps) == len(set(steps)) == 20  # no point logged twice
    assert [a.path for a in client.list_artifacts(run_id)] == ["curves.parquet"]
