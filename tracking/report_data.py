"""A sweep's recorded runs, read back for ``metasweep report``: from MLflow, or from the sweep's outbox.

Sources (``source``): "mlflow" reads the child runs of the sweep's parent run (params, scalar
metrics, and the metric histories whose keys start with one of :data:`HISTORY_PREFIXES`); "outbox"
reads ``runs/sweeps/SWEEP_ID/outbox/*/record.json`` (:mod:`tracking.outbox`: the same params,
scalars and histories); "auto" reads MLflow and adds the outbox entries of trials MLflow does not
hold complete (not yet synced), or reads the outbox alone when the tracking store cannot be reached.
Only names of the contract (:mod:`tracking.mlflow_runs`) are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RunRecord", "SweepData", "load_sweep", "HISTORY_PREFIXES", "SENTINEL"]

#: Step-metric families read as curves (K-averaged, step = iteration): headline gap, values, and
#: the potential-game extras (``gap_avg``: F.2's average form, ``potential``: Phi).
HISTORY_PREFIXES = ("gap/", "value/", "gap_avg/", "potential/")
#: Concurrent metric-history requests while reading a sweep from MLflow.
HISTORY_THREADS = 8
#: The scalar a complete child run holds (logged last, :data:`sweeps.service.SENTINEL`).
SENTINEL = "time/trial_s"


@dataclass
class RunRecord:
    """One trial: its params (strings, as logged), scalar metrics, histories key -> (steps, values)."""

    trial_id: str
    name: str
    params: dict
    metrics: dict
    histories: dict
    status: str = "ok"  # the metasweep.status tag: "ok" or "diverged"
    source: str = "mlflow"
    run_id: str | None = None
    sweep: str = ""

    @property
    def algorithm(self) -> str:
        return self.params.get("algorithm", "optimistic-mwu")

    def param(self, key: str):
        """A param parsed back to a number / bool / None where it looks like one."""
        return parse_value(self.params.get(key))


def parse_value(v):
    if v is None or v == "None":
        return None
    if v in ("True", "true"):
        return True
    if v in ("False", "false"):
        return False
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f


@dataclass
class SweepData:
    sweep_id: str
    state: dict
    runs: list = field(default_factory=list)
    source: str = "mlflow"
    parent_tags: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    client: object = None  # an MlflowClient when MLflow was reachable

    @property
    def spec_text(self) -> str:
        return self.state.get("spec", "")

    @property
    def versions(self) -> dict:
        try:
            return json.loads(self.parent_tags.get("metasweep.versions", "{}"))
        except ValueError:
            return {}


def _mlflow_runs(client, state: dict) -> list[RunRecord]:
    parent = state["parent_run_id"]
    runs, token = [], None
    while True:
        page = client.search_runs([state["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    runs = [r for r in runs if SENTINEL in r.data.metrics]  # others are still running or were lost mid-logging
    wanted = [(r.info.run_id, key) for r in runs for key in r.data.metrics if key.startswith(HISTORY_PREFIXES)]

    def history(item):
        h = sorted(client.get_metric_history(*item), key=lambda m: m.step)
        return item, (np.array([m.step for m in h], dtype=float), np.array([m.value for m in h], dtype=float))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=HISTORY_THREADS) as pool:  # round trips overlap (a tracking server)
        histories = dict(pool.map(history, wanted))
    out = []
    for r in runs:
        hist = {key: histories[(r.info.run_id, key)] for key in r.data.metrics if key.startswith(HISTORY_PREFIXES)}
        tags = r.data.tags
        out.append(RunRecord(tags.get("metasweep.trial_id", r.info.run_id), r.info.run_name or "", dict(r.data.params),
                             dict(r.data.metrics), hist, tags.get("metasweep.status", "ok"), "mlflow", r.info.run_id))
    return out


def _outbox_runs(folder: str, skip: set) -> list[RunRecord]:
    out = []
    if not os.path.isdir(folder):
        return out
    for trial_id in sorted(os.listdir(folder)):
        path = os.path.join(folder, trial_id, "record.json")
        if trial_id.startswith(".") or trial_id in skip or not os.path.isfile(path):
            continue
        with open(path) as fh:
            rec = json.load(fh)
        hist = {k: (np.asarray(st, dtype=float), np.asarray(v, dtype=float)) for k, (st, v) in rec["histories"].items()
                if k.startswith(HISTORY_PREFIXES)}
        out.append(RunRecord(trial_id, rec.get("run_name", ""), dict(rec["params"]), dict(rec["scalars"]), hist,
                             rec.get("tags", {}).get("metasweep.status", "ok"), "outbox"))
    return out


def load_sweep(state: dict, source: str = "auto", tracking_uri: str | None = None) -> SweepData:
    """Read the runs of the sweep described by ``state`` (its ``sweep.json`` plus ``state_dir``), see module docstring."""
    if source not in ("auto", "mlflow", "outbox"):
        raise ValueError(f"source must be auto, mlflow or outbox, got {source!r}")
    data = SweepData(state["sweep_id"], state, source=source)
    outbox = os.path.join(state["state_dir"], "outbox")
    uri = tracking_uri or state["tracking_uri"]
    if source in ("auto", "mlflow"):
        from .mlflow_runs import client_for

        if uri.startswith(("http://", "https://")):  # an unreachable server costs seconds, not minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        try:
            client = client_for(uri)
            parent = client.get_run(state["parent_run_id"])
            data.runs = _mlflow_runs(client, state)
            data.parent_tags = dict(parent.data.tags)
            data.client = client
            data.source = "mlflow"
        except Exception as exc:  # the store is unreachable: fall back to the outbox (auto) or fail (mlflow)
            if source == "mlflow":
                raise ValueError(f"cannot read sweep {state['sweep_id']} from MLflow {uri!r}: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
            data.notes.append(f"MLflow at {uri} could not be read ({type(exc).__name__}); runs read from the outbox only")
            data.source = "outbox"
    if source == "outbox" or data.source == "outbox":
        data.runs = _outbox_runs(outbox, set())
        data.source = "outbox"
    elif source == "auto":
        extra = _outbox_runs(outbox, {r.trial_id for r in data.runs})
        if extra:
            data.notes.append(f"{len(extra)} trial(s) read from the outbox (not yet synced to MLflow)")
            data.runs.extend(extra)
            data.source = "mlflow+outbox"
    for r in data.runs:
        r.sweep = data.sweep_id
    if not data.runs:
        data.notes.append("the sweep has no complete runs")
    return data
