"""MLflow records of a sweep: one parent run per sweep, one child run per trial.

Names users and our checks rely on (contract):

* parent run tags: ``metasweep.sweep_id``, ``metasweep.role`` = "sweep", ``metasweep.git_commit``,
  ``metasweep.versions`` (JSON of package versions), ``metasweep.cluster_cpus``, ``metasweep.cluster_nodes``;
  artifact ``spec.yaml``.
* child run tags: ``mlflow.parentRunId``, ``metasweep.sweep_id``, ``metasweep.trial_id``,
  ``metasweep.role`` = "trial", ``metasweep.node_id`` (the Ray node whose process logged the trial's
  results, hex; absent outside Ray), ``metasweep.hostname`` and ``metasweep.status`` ("ok", or
  "diverged" when the trial's kernel produced a non-finite number: then the metrics ``diverged`` = 1
  and ``diverged_at`` = the iteration, and no curves); run name from the config.
* child params: the trial's config with the spec's names (the algorithm's parameters in
  :mod:`sweeps.registry`; for Algorithm 1 ``eta``, ``alpha``, ``K``, ``H``, ``sigma``, ``T``, ``seed``,
  ``stage_reset``, ``tie_break``) plus ``algorithm``, ``family``, ``methods`` and the family's game keys.
* child step metrics (K-averaged, step = iteration): ``gap/individual``, ``gap/meta``,
  ``value/individual``, ``value/meta``.
* child scalar metrics: see :func:`sweeps.trial.summarize`; and the service's ``time/tracking_s`` (the
  upload's :func:`log_trial` up to its artifact) and ``time/tracking_wait_s`` (seconds the trial waited for tracking).
* child artifact ``curves.parquet``: per-game curves (columns of :mod:`tracking.curves`).

Idempotence: a retried or resumed trial finds its child run by ``metasweep.trial_id`` under its
parent and updates it; every run ends FINISHED or FAILED.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time

import numpy as np

__all__ = [
    "history_steps",
    "client_for",
    "ensure_experiment",
    "start_parent_run",
    "find_child",
    "create_child",
    "log_trial",
    "node_tags",
    "package_versions",
    "MAX_BATCH",
]

#: MLflow's log_batch limit on metrics per call.
MAX_BATCH = 1000
TAG_SWEEP = "metasweep.sweep_id"
TAG_TRIAL = "metasweep.trial_id"
TAG_ROLE = "metasweep.role"
TAG_NODE = "metasweep.node_id"
TAG_HOST = "metasweep.hostname"


def history_steps(iterations: np.ndarray, max_points: int) -> np.ndarray:
    """Indices into ``iterations`` to log as metric history.

    Every evaluated iteration while there are at most ``max_points`` of them; beyond that about
    ``max_points`` log-spaced ones, always including the first and the last.
    """
    n = len(iterations)
    if n <= max_points:
        return np.arange(n)
    # rounding merges the dense low end of a geometric grid: widen it until max_points remain
    k = max_points
    while True:
        idx = np.unique(np.round(np.geomspace(1, n, k)).astype(np.int64) - 1)
        if len(idx) >= max_points:
            break
        k += max_points - len(idx)
    if len(idx) > max_points:  # keep the first and last, drop evenly from the rest
        keep = np.round(np.linspace(0, len(idx) - 1, max_points)).astype(np.int64)
        idx = idx[keep]
    return idx


def client_for(uri: str):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client, name: str, artifact_location: str | None = None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def start_parent_run(client, experiment_id: str, sweep_id: str, spec_text: str, tags: dict) -> str:
    """Create the sweep's parent run (or return the existing one for ``sweep_id``)."""
    existing = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{sweep_id}' and tags.`{TAG_ROLE}` = 'sweep'", max_results=1
    )
    if existing:
        run_id = existing[0].info.run_id
        if existing[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=sweep_id, tags={TAG_SWEEP: sweep_id, TAG_ROLE: "sweep", **tags})
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "spec.yaml")
        with open(p, "w") as fh:
            fh.write(spec_text)
        client.log_artifact(run.info.run_id, p)
    return run.info.run_id


def find_child(client, experiment_id: str, parent_id: str, trial_id: str):
    """The child run of ``trial_id`` under ``parent_id`` (a retry or resume), or None."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_TRIAL}` = '{trial_id}' and tags.`mlflow.parentRunId` = '{parent_id}'",
        max_results=5,
    )
    return found[0] if found else None


def create_child(client, experiment_id: str, parent_id: str, sweep_id: str, trial_id: str, run_name: str,
                 tags: dict | None = None) -> str:
    """A new child run of ``trial_id`` under ``parent_id`` (call :func:`find_child` first), with ``tags``
    besides its identity tags (set here, they cost no separate write in :func:`log_trial`)."""
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags=(tags or {}) | {"mlflow.parentRunId": parent_id, TAG_SWEEP: sweep_id, TAG_TRIAL: trial_id, TAG_ROLE: "trial"},
    )
    return run.info.run_id


def node_tags() -> dict:
    """Where this process runs: the Ray node id (when Ray is initialised here) and the host name.

    Ray is never imported for this: outside a Ray process (a plain script) only the host name is given.
    """
    import socket
    import sys

    tags = {TAG_HOST: socket.gethostname()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            tags[TAG_NODE] = ray.get_runtime_context().get_node_id()
        except Exception:  # a driver in an odd state: the tag is informative, never fatal
            pass
    return tags


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def log_trial(client, run_id: str, params: dict, scalars: dict, histories: dict, curves_table, sentinel: str,
              new_run: bool = False, tags: dict | None = None, waited_s: float | None = None) -> float:
    """Log one trial's results to its child run and mark it FINISHED; returns the seconds spent.

    ``histories``: metric key -> (steps, values). Metrics go in batches of at most 1000 (one batch,
    hence one transaction, for the default history size), with the scalar ``sentinel`` in the last
    batch: a retry that finds the sentinel already logged skips the metrics, so no point is logged
    twice. Params are logged once (MLflow refuses changed params). Non-finite scalars are skipped
    (MLflow cannot store them); the artifact is overwritten in place. ``new_run``: the run was just
    created, so there is nothing logged to look up (one round trip fewer). The first batch also sets
    :func:`node_tags` (the node that computed the results, logged with them), or ``tags`` when given
    (an upload from the outbox carries the tags of the node that computed the trial; ``{}`` when
    :func:`create_child` already set them).
    ``curves_table``: a pyarrow Table, the path of a Parquet file, or None. ``waited_s``: when the trial waits
    for this call (tracking not overlapped), the seconds it already waited for tracking; ``time/tracking_wait_s``
    = ``waited_s`` + this call's time up to its artifact is then logged with ``time/tracking_s``.
    """
    from mlflow.entities import Metric, Param, RunTag

    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    logged_metrics, logged_params = ({}, {}) if new_run else (lambda d: (d.metrics, d.params))(client.get_run(run_id).data)
    if sentinel not in logged_metrics:
        new_params = [Param(k, str(v)) for k, v in params.items() if k not in logged_params]
        metrics = []
        for key, (steps, values) in histories.items():
            metrics.extend(Metric(key, float(v), now, int(s)) for s, v in zip(steps, values) if math.isfinite(v))
        last = None
        for key, v in scalars.items():
            f = _finite(v)
            if f is None:
                continue
            m = Metric(key, f, now, 0)
            if key == sentinel:
                last = m
            else:
                metrics.append(m)
        if last is None:
            raise ValueError(f"sentinel metric {sentinel!r} must be a finite scalar")
        metrics.append(last)
        run_tags = [RunTag(k, v) for k, v in (node_tags() if tags is None else tags).items()]
        first = MAX_BATCH - len(new_params) - len(run_tags)  # MLflow's limit counts metrics, params and tags together
        client.log_batch(run_id, metrics=metrics[:first], params=new_params, tags=run_tags)
        for i in range(first, len(metrics), MAX_BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH])
    if isinstance(curves_table, str):
        client.log_artifact(run_id, curves_table)
    elif curves_table is not None:
        from .curves import write_parquet

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "curves.parquet")
            write_parquet(curves_table, p)
            client.log_artifact(run_id, p)
    elapsed = time.perf_counter() - t0
    timings = {"time/tracking_s": elapsed} | ({} if waited_s is None else {"time/tracking_wait_s": waited_s + elapsed})
    timings = {k: v for k, v in timings.items() if k not in logged_metrics}
    if len(timings) == 1:
        client.log_metric(run_id, *next(iter(timings.items())))
    elif timings:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in timings.items()])
    client.set_terminated(run_id, status="FINISHED")
    return elapsed


def package_versions() -> dict:
    """Python and the versions of the packages a result depends on (the parent tag ``metasweep.versions``,
    the report's header)."""
    import sys
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("metasweep", "numpy", "numba", "scipy", "pyarrow", "matplotlib", "ray", "mlflow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def json_tag(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
