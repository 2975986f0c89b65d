"""Overlapped tracking (issue 3, ``tracking.overlap``): a trial hands its MLflow upload to its worker's
companion upload process and returns, so the worker's next trial computes while MLflow is written.

1. A real sweep (real Ray, real MLflow server), with and without overlap: every child run FINISHED
   with its metrics, histories and curves, the worker's last trial included, uploaded by the worker
   itself (a stopping worker finishes its upload: the outbox is empty, nothing was left for the
   driver), and ``time/tracking_wait_s`` logged beside ``time/tracking_s``.
2. A worker that died mid-upload (its run RUNNING, half logged, its result in the outbox): the end
   of the sweep completes that run, FINISHED, no point logged twice.
"""

import json
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
  K: 3
  H: 3
  sigma: 0.1
  T: {T}
  seed: {{grid: [{seeds}]}}
eval_every: {eval_every}
resources:
  cpus: 1
tracking:
  metric_history_points: 20
  overlap: {overlap}
"""
# overlap: 8 trials of ~1.1 s of kernels (as tests/test_sweep.py's resume sweep), 4 per worker: a worker's
# companion upload process (~2-4 s to start) is up before its last trials; serial: 4 short trials.
CASES = {"true": dict(T=250000, eval_every=1000, trials=8), "false": dict(T=300, eval_every=1, trials=4)}


def _tune_results(state_dir):
    out = []
    for f in state_dir.glob("*/result.json"):
        out.append(json.loads(f.read_text().strip().splitlines()[-1]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("overlap", ["true", "false"])
def test_every_trial_uploaded_by_its_worker(overlap, mlflow_server, tmp_path):
    case = CASES[overlap]
    T, trials = case["T"], case["trials"]
    template = SPEC.replace("{overlap}", overlap).replace("{T}", str(T)).replace("{eval_every}", str(case["eval_every"]))
    template = template.replace("{seeds}", ", ".join(map(str, range(trials))))
    summary, client, parent, children = run_small_sweep(template, f"overlap-{overlap}", mlflow_server, tmp_path, trials)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials/finished"] == trials
    assert {c.info.status for c in children} == {"FINISHED"}
    assert len({c.data.tags["metasweep.trial_id"] for c in children}) == trials
    assert sorted(int(c.data.params["seed"]) for c in children) == list(range(trials))
    for c in children:
        m = c.data.metrics
        assert m["time/tracking_s"] > 0 and m["time/tracking_wait_s"] > 0, m
        if overlap == "false":  # the trial waited for the whole upload (up to its artifact) and its lookup
            assert m["time/tracking_wait_s"] > m["time/tracking_s"]
        steps = [h.step for h in client.get_metric_history(c.info.run_id, "gap/meta")]
        assert len(steps) == len(set(steps)) == 20 and max(steps) == T
        curves = pq.read_table(client.download_artifacts(c.info.run_id, "curves.parquet", str(tmp_path / c.info.run_id)))
        assert set(curves.column("method").to_pylist()) == {"individual", "meta"}
        assert set(curves.column("game").to_pylist()) == {0, 1, 2} and max(curves.column("iteration").to_pylist()) == T
    state_dir = tmp_path / "runs" / "sweeps" / summary["sweep_id"]
    reports = _tune_results(state_dir)
    assert len(reports) == trials and all(r["time/tracking_wait_s"] > 0 for r in reports)
    handed_over = [r for r in reports if "time/tracking_s" not in r]  # uploaded by a companion, after the report
    if overlap == "true":
        assert handed_over, "no trial's upload overlapped the next trial"
        last = {}
        for r in reports:
            if r["reported_at"] > last.get(r["pid"], {"reported_at": 0})["reported_at"]:
                last[r["pid"]] = r
        assert any(r in handed_over for r in last.values()), "no worker's last upload ran in the background"
    else:
        assert handed_over == []
    # the workers uploaded everything themselves, their last trials included: no entry left, none synced by the driver
    outbox = state_dir / "outbox"
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
    spec = parse_spec(read_yaml(SPEC.format(experiment="x", overlap="true", T=300, eval_every=1, seeds="0"), "spec"), "spec")
    settings = TrialSettings.from_spec(spec)
    config = {k: p.values[0] for k, p in spec.params.items() if p.kind == "const"} | {"seed": 0}
    out = run_trial(config, settings)
    record = service.trial_record(config, out, settings, 20)
    record["scalars"]["time/tracking_wait_s"] = 0.01

    client = MlflowClient(tracking_uri=mlflow_server)
    exp_id = ensure_experiment(client, f"dead-worker-{uuid.uuid4().hex[:8]}")
    sweep_id = f"dead-{uuid.uuid4().hex[:8]}"
    parent_id = start_parent_run(client, exp_id, sweep_id, "spec", {})
    run_id = create_child(client, exp_id, parent_id, sweep_id, "t_00000", record["run_name"], record["tags"])
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
