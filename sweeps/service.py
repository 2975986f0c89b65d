"""Run, resume and inspect sweeps: a validated spec -> Ray Tune trials -> MLflow parent/child runs.

State of a sweep lives in ``runs/sweeps/SWEEP_ID/`` (git-ignored): Tune's experiment state and
``sweep.json`` (spec text, tracking URI, MLflow experiment and parent run ids, trial count), which
is all ``metasweep resume`` and ``metasweep status`` need.

Defaults (the embedded local mode): a local Ray started in-process, and an MLflow store inside the
working directory: ``sqlite:///runs/mlflow/mlflow.db`` with artifacts in ``runs/mlflow/artifacts``.
``--address``/``RAY_ADDRESS`` and ``--tracking-uri``/``MLFLOW_TRACKING_URI`` (or the spec's
``ray_address`` and ``tracking.uri``) point at a cluster and a tracking server instead.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import numpy as np

from .spec import SweepSpec, parse_spec
from .registry import ALGORITHMS
from .trial import SPARSE_FAMILIES, TrialSettings, trial_resources

log = logging.getLogger("metasweep")

__all__ = ["run_sweep", "resume_sweep", "sweep_status", "sync_sweep", "default_tracking_uri", "SweepError", "RUNS_DIR"]

RUNS_DIR = "runs"
#: Scalars sent to Tune (a handful per trial; curves go to MLflow only).
TUNE_METRICS = ("final_gap/meta", "final_gap/individual", "speedup/final_gap", "similarity/delta/meta", "time/trial_s",
                "diverged", "diverged_at")
#: Child-run tag: "ok", or "diverged" when the trial's kernel produced a non-finite number.
STATUS_TAG = "metasweep.status"
#: The scalar logged last: a child run that has it holds all of the trial's metrics.
SENTINEL = "time/trial_s"


class SweepError(RuntimeError):
    """A sweep cannot start or continue (unreachable services, unknown sweep); one clear line."""


def default_tracking_uri(root: str | None = None) -> str:
    root = os.path.abspath(root or RUNS_DIR)
    return "sqlite:///" + os.path.join(root, "mlflow", "mlflow.db")


def artifact_root(uri: str) -> str | None:
    """Local stores keep artifacts beside the database; servers decide for themselves."""
    if uri.startswith("sqlite:///"):
        return os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "artifacts")
    return None


def _sweep_dir(sweep_id: str) -> str:
    return os.path.abspath(os.path.join(RUNS_DIR, "sweeps", sweep_id))


def _outbox_dir(sweep_id: str) -> str:
    return os.path.join(_sweep_dir(sweep_id), "outbox")


def _git_commit() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------- tracking set-up


def _open_tracking(uri: str):
    """A client for ``uri`` after a read-only round trip: one clear line when the store cannot be reached."""
    from tracking.mlflow_runs import client_for

    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///"):]), exist_ok=True)
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # an outage costs seconds, not minutes
    client = client_for(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # any failure to reach the store is the user's configuration
        raise SweepError(f"cannot use MLflow tracking URI {uri!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    if uri.startswith("sqlite:///"):
        _use_wal(uri[len("sqlite:///"):])
    return client


def _use_wal(path: str) -> None:
    """Put a local SQLite store in write-ahead-log mode (a setting of the file, kept for every process).

    With the default rollback journal every commit costs several fsyncs; in WAL mode one
    (``synchronous`` stays FULL: no durability is given up), and readers no longer block the writer.
    Measured (docs/benchmarks.md): one trial's MLflow calls 1.4-1.8x faster on a loaded machine, no
    measurable change in the 100-trial sweep benchmark on a quiet one. WAL needs every writer on the
    same host, which a ``sqlite:///`` store already assumes.
    """
    import sqlite3

    try:
        with sqlite3.connect(path, timeout=30) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:  # e.g. a store on a file system without shared memory: keep the default
        log.warning("SQLite store %s stays in rollback-journal mode (%s)", path, exc)


def _probe_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, with one clear line, when a ``host:port`` / ``ray://host:port`` address does not answer
    (``ray.init`` itself waits minutes for an unreachable GCS). "auto" and the embedded local Ray are not probed."""
    import socket

    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(f"bad Ray address {address!r}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SweepError(f"cannot reach Ray at {address}: {exc.strerror or type(exc).__name__} "
                         "(is the cluster up? see cluster/README.md)") from None


def _init_ray(address: str | None, num_cpus: int | None = None):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # see ../shared/design/STACK.md: set it in every process
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0: our progress line only
    # the stdout of trials is forwarded to the driver's: MLflow must not print run URLs there
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # result.json noise on resume
    kwargs = dict(include_dashboard=False, log_to_driver=True, configure_logging=True, logging_level=logging.WARNING)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except Exception as exc:
        raise SweepError(f"cannot start or reach Ray at {address or 'local'}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return ray


# ----------------------------------------------------------------------------- the trainable


def trial_record(config: dict, out, settings: TrialSettings, metric_points: int) -> dict:
    """What a trial's child run holds (run name, params, scalars, downsampled histories, node tags), JSON-able:
    the payload of :func:`upload_trial` and of an outbox entry (:mod:`tracking.outbox`)."""
    from tracking.mlflow_runs import history_steps, node_tags

    keys = ALGORITHMS[settings.algorithm].config_keys
    name = " ".join(f"{k}={config[k]:g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                    for k in keys if config.get(k) is not None)
    params = {k: config[k] for k in keys} | {"algorithm": settings.algorithm, "family": settings.family,
                                            "methods": ",".join(settings.methods)} | settings.game
    hist = {}
    for key, (its, vals) in out.histories.items():
        idx = history_steps(its, metric_points)
        hist[key] = [np.asarray(its)[idx].tolist(), np.asarray(vals, dtype=float)[idx].tolist()]
    diverged = bool(out.scalars.get("diverged"))
    return {"run_name": name, "params": {k: str(v) for k, v in params.items()},
            "scalars": {k: float(v) for k, v in out.scalars.items()} | {"diverged": float(diverged)},
            "histories": hist, "tags": node_tags() | {STATUS_TAG: "diverged" if diverged else "ok"}, "sentinel": SENTINEL}


def upload_trial(client, record: dict, curves, exp_id: str, parent_id: str, sweep_id: str, trial_id: str,
                 existing=None, waited_s: float | None = None) -> tuple[str, float]:
    """Write one trial's :func:`trial_record` (and ``curves``: a Table or a Parquet path) to its MLflow child run.

    ``existing``: the trial's child run found by :func:`tracking.mlflow_runs.find_child` (a retry, resume
    or sync), completed in place; otherwise a new child run is created. ``waited_s``: the trial waits for
    this upload (tracking not overlapped) after waiting that long already: ``time/tracking_wait_s`` is logged.
    Returns (run id, seconds of ``log_trial``).
    """
    from tracking.mlflow_runs import create_child

    t0 = time.perf_counter()
    if existing is None:
        run_id = create_child(client, exp_id, parent_id, sweep_id, trial_id, record["run_name"], record["tags"])
    else:
        run_id = existing.info.run_id
    waited = None if waited_s is None else waited_s + time.perf_counter() - t0
    return run_id, _log_record(client, run_id, record, curves, existing is None, waited)


def _log_record(client, run_id: str, record: dict, curves, new_run: bool, waited_s: float | None = None) -> float:
    """:func:`tracking.mlflow_runs.log_trial` of a :func:`trial_record` into the existing run ``run_id``
    (reopened as RUNNING unless ``new_run``: then created by ``create_child`` with the record's tags);
    returns its seconds (``time/tracking_s``)."""
    from tracking.mlflow_runs import log_trial

    if not new_run:
        client.update_run(run_id, status="RUNNING")
    hist = {k: (np.asarray(st), np.asarray(v, dtype=float)) for k, (st, v) in record["histories"].items()}
    return log_trial(client, run_id, record["params"], record["scalars"], hist, curves, sentinel=record["sentinel"],
                     new_run=new_run, tags={} if new_run else record["tags"], waited_s=waited_s)


def record_trial(client, config: dict, out, settings: TrialSettings, exp_id: str, parent_id: str, sweep_id: str,
                 trial_id: str, metric_points: int, existing=None) -> tuple[str, float]:
    """:func:`upload_trial` of a computed trial (:class:`sweeps.trial.TrialOutput`)."""
    return upload_trial(client, trial_record(config, out, settings, metric_points), out.curves, exp_id, parent_id,
                        sweep_id, trial_id, existing)


def _diverged_output(exc: FloatingPointError, seconds: float):
    """The record of a trial whose kernel produced a non-finite number: ``diverged`` = 1 and, when the
    kernel says, ``diverged_at`` = the first iteration detected; no curves (tag ``metasweep.status`` = diverged)."""
    from .trial import TrialOutput

    scalars = {"diverged": 1.0, "time/trial_s": seconds}
    if getattr(exc, "iteration", None) is not None:
        scalars["diverged_at"] = float(exc.iteration)
    return TrialOutput(scalars, {}, None, 0)


def _deposit(outbox_dir: str, driver_node: str, trial_id: str, record: dict, curves) -> str | None:
    """Put a trial in the sweep's outbox, on the driver's node: directly when this process runs there,
    otherwise through a small actor pinned to that node (created on first use). Returns the entry's
    folder when it is on this process's node (its ``curves.parquet`` can be uploaded from there), else None."""
    folder = _outbox_call(outbox_dir, driver_node, "put", trial_id, record, curves)
    return folder if _on_node(driver_node) else None


def _on_node(node_id: str) -> bool:
    import ray

    return ray.get_runtime_context().get_node_id() == node_id


def _outbox_call(outbox_dir: str, driver_node: str, method: str, *args):
    """``Outbox(outbox_dir).method(*args)`` on the driver's node (see :func:`_deposit`)."""
    import ray

    from tracking.outbox import Outbox

    if _on_node(driver_node):
        return getattr(Outbox(outbox_dir), method)(*args)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    writer = ray.remote(num_cpus=0)(_OutboxWriter).options(
        name=f"metasweep-outbox-{os.path.basename(os.path.dirname(outbox_dir))}", get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(driver_node, soft=False)).remote(outbox_dir)
    return ray.get(getattr(writer, method).remote(*args))


class _OutboxWriter:
    """Writes outbox entries on the driver's node for trials that ran elsewhere (see :func:`_deposit`)."""

    def __init__(self, folder: str):
        from tracking.outbox import Outbox

        self.box = Outbox(folder)

    def put(self, trial_id: str, record: dict, curves) -> str:
        return self.box.put(trial_id, record, curves)

    def discard(self, trial_id: str) -> None:
        self.box.discard(trial_id)


# ----------------------------------------------------------------------------- overlapped tracking


class _Uploader:
    """The background MLflow upload of one worker process (Tune reuses a worker for many trials).

    Uploads run in a companion actor, :class:`_UploadWorker` (0 CPUs, its own process on the same
    node, started with the worker's first trial and owned by the worker), not in a thread: the
    kernels hold the GIL (Numba without ``nogil``), so a thread's MLflow client would stall them and
    be stalled by them (measured: kernels 2.5x slower beside an upload thread, docs/benchmarks.md).
    Pipeline depth 1: a trial hands its upload over and returns; the worker's next trial computes
    while it runs and, before handing over its own, waits for it only if it is still running. So at
    most one trial's results wait per worker and uploads never pile up. A worker that ends before its
    upload finished takes the companion with it (Ray fate-shares owned actors) and leaves the trial's
    outbox entry behind (deposited before the hand-over), which the end of the sweep uploads (:func:`_finish`).
    """

    def __init__(self):
        self._actor = None
        self._started = None  # ObjectRef that resolves once the companion is up
        self._pending = None  # ObjectRef of the running upload

    def start(self) -> None:
        """Start the companion actor (asynchronously) if there is none yet."""
        if self._actor is None:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            self._actor = ray.remote(num_cpus=0)(_UploadWorker).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
            self._started = self._actor.__ray_ready__.remote()

    def ready(self) -> bool:
        """Whether the companion is up (never blocks: a worker's first trial(s) upload in process meanwhile,
        instead of waiting seconds for a new process and its imports)."""
        if self._actor is None:
            return False
        if self._started is not None:
            import ray

            if not ray.wait([self._started], timeout=0)[0]:
                return False
            try:
                ray.get(self._started)
            except Exception as exc:  # could not start: upload in process; try a new companion with the next trial
                log.warning("MLflow upload process did not start (%s)", type(exc).__name__)
                self._actor = self._started = None
                return False
            self._started = None
        return True

    def wait(self, timeout: float | None = None) -> float:
        """Wait for the running upload, if any (at most ``timeout`` seconds); returns the seconds waited."""
        if self._pending is None:
            return 0.0
        import ray

        t0 = time.perf_counter()
        ready, _ = ray.wait([self._pending], timeout=timeout)
        if ready:
            try:
                ray.get(ready[0])
            except Exception as exc:  # the companion died: the trial's outbox entry stays for the end of the sweep
                log.warning("MLflow upload process lost (%s); its trial's result stays in the outbox", type(exc).__name__)
                self._actor = self._started = None
            self._pending = None
        return time.perf_counter() - t0

    def submit(self, *args) -> None:
        """:meth:`_UploadWorker.upload` ``(*args)`` in the companion, after the previous upload."""
        self.wait()
        self.start()
        self._pending = self._actor.upload.remote(*args)


class _UploadWorker:
    """A worker's companion process that uploads its trials (see :class:`_Uploader`)."""

    def __init__(self):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow.tracking  # noqa: F401  (imported while the worker's first trial computes)

    def upload(self, uri: str, run_id: str, new_run: bool, record: dict, curves, outbox_dir: str, driver_node: str,
               trial_id: str) -> float | None:
        """A trial's record into ``run_id``, then its outbox entry discarded; returns ``time/tracking_s``
        (None if the store failed: the entry then stays for the end of the sweep / ``metasweep sync``)."""
        from tracking.mlflow_runs import client_for

        try:
            tracking_s = _log_record(client_for(uri), run_id, record, curves, new_run)
        except Exception as exc:
            log.warning("trial %s: MLflow upload failed (%s: %s); result kept in the outbox", trial_id,
                        type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
            return None
        try:
            _outbox_call(outbox_dir, driver_node, "discard", trial_id)
        except Exception as exc:  # harmless: the end-of-sweep upload completes the run again, idempotently
            log.warning("trial %s: outbox entry not discarded (%s)", trial_id, type(exc).__name__)
        return tracking_s


#: This process's uploader (module-global: shared by the trials a reused Tune worker runs in sequence).
UPLOADER = _Uploader()


def _uploader() -> _Uploader:
    """:data:`UPLOADER`, for the trainable: a closure is pickled by value with copies of the globals it names,
    a module-level function by reference (its globals are the worker's own module)."""
    return UPLOADER


#: How long a stopping worker waits for its last upload (Tune kills an actor 10 s after asking it to stop).
FLUSH_TIMEOUT_S = 8.0


class _FlushOnStop:
    """Mixed into the trial's Tune trainable class (a function's ``__mixins__``, which Ray 2.60's
    ``ray.tune.trainable.function_trainable.wrap_function`` puts first among its bases).

    Tune stops a reused worker actor (evicted from its actor cache, or at the end of the sweep) with
    the actor task ``stop`` -> ``cleanup``, and kills it when that has not returned within 10 s: the
    worker's last background upload finishes here, before the process is let go.
    """

    def cleanup(self):
        try:
            UPLOADER.wait(FLUSH_TIMEOUT_S)
        finally:
            super().cleanup()


def overlap_for(setting: bool | str, uri: str) -> bool:
    """Whether a sweep's uploads overlap compute: the spec's ``tracking.overlap``; "auto" (the default)
    means yes for a tracking server or database server, no for a local store (``sqlite:///``, a path).

    Why (docs/benchmarks.md, 100 F.1 trials on 2 CPUs): a local store's work is CPU in the uploading
    process, which overlapping only moves onto the cores the kernels need, plus a companion process
    per worker to start: the sweep took 17-21 s instead of 13-14 s of Tune fit. With an MLflow server
    the upload is mostly waiting for the server: 18.6 s instead of 19.4 s, and the trials' own
    tracking time fell from 44 % to 27 % of the workers' time.
    """
    if isinstance(setting, bool):
        return setting
    return uri.startswith(("http://", "https://", "postgresql", "mysql", "mssql"))


def _make_trainable(settings: TrialSettings, uri: str, exp_id: str, parent_id: str, sweep_id: str, metric_points: int,
                    outbox_dir: str, driver_node: str, overlap: bool = True):
    """The Tune function trainable of a sweep (one trial = one config).

    The trial's results go to its MLflow child run; if the store fails, to the sweep's outbox
    (:mod:`tracking.outbox`), and the trial still completes (``metasweep sync`` uploads it later).

    ``overlap`` (spec ``tracking.overlap``, :func:`overlap_for`): after computing, the trial creates its child run
    (or reuses the one a retry found), puts its results in the outbox (local files on the driver's node),
    waits for its worker's previous upload if that is still running, hands the upload over to the
    worker's background :data:`UPLOADER` (a companion process) and reports to Tune at once: the worker's next trial computes
    while MLflow is written. The entry is discarded after the upload; what a dying worker could not
    upload is uploaded at the end of the sweep. ``time/tracking_wait_s`` = the seconds the trial spent
    on tracking itself (lookup, its MLflow record, run creation, outbox entry, waiting for the previous upload; without
    overlap also the upload up to its artifact); ``time/tracking_s`` stays the upload's ``log_trial``.
    The Tune report also carries ``reported_at`` (epoch seconds: where the trial ends on a timeline).
    """

    def trainable(config):
        from ray import tune

        from tracking.mlflow_runs import client_for, find_child

        trial_id = tune.get_context().get_trial_id()
        client = client_for(uri)
        t_lookup = time.perf_counter()
        try:
            done = find_child(client, exp_id, parent_id, trial_id)
        except Exception as exc:  # the store is unreachable: compute anyway, the outbox keeps the result
            log.warning("trial %s: MLflow lookup failed (%s); computing anyway", trial_id, type(exc).__name__)
            done = None
        lookup_s = time.perf_counter() - t_lookup
        if done is not None and done.info.status == "FINISHED" and SENTINEL in done.data.metrics:
            # finished before a driver crash: report it again instead of recomputing it
            report = {k: done.data.metrics[k] for k in TUNE_METRICS if k in done.data.metrics}
            tune.report(report | {"time/tracking_s": done.data.metrics.get("time/tracking_s", 0.0),
                                  "mlflow_run_id": done.info.run_id, "reused": 1})
            return
        if overlap:
            _uploader().start()  # the companion's process starts while this trial computes
        t0 = time.perf_counter()
        try:
            out = ALGORITHMS[settings.algorithm].run_trial(config, settings)
        except FloatingPointError as exc:  # numerical divergence: recorded as such, the sweep goes on
            log.warning("trial %s diverged: %s", trial_id, exc)
            out = _diverged_output(exc, time.perf_counter() - t0)
        t_track = time.perf_counter()
        record = trial_record(config, out, settings, metric_points)
        report = {k: float(out.scalars[k]) for k in TUNE_METRICS if k in out.scalars}
        try:
            waited = lookup_s + time.perf_counter() - t_track
            if overlap:
                report |= hand_over(client, trial_id, record, out.curves, done, waited)
            else:
                run_id, tracking_s = upload_trial(client, record, out.curves, exp_id, parent_id, sweep_id, trial_id, done,
                                                  waited_s=waited)
                report |= {"time/tracking_s": tracking_s, "mlflow_run_id": run_id}
        except Exception as exc:  # the store failed mid-trial: nothing is lost, the outbox holds the result
            log.warning("trial %s: MLflow failed (%s: %s); result kept in the outbox", trial_id, type(exc).__name__,
                        str(exc).splitlines()[0][:120] if str(exc) else "")
            _deposit(outbox_dir, driver_node, trial_id, record, out.curves)
            report |= {"mlflow_run_id": "", "outbox": 1}
        tune.report(report | {"time/tracking_wait_s": lookup_s + time.perf_counter() - t_track, "reported_at": time.time()})

    def hand_over(client, trial_id: str, record: dict, curves, done, waited: float) -> dict:
        """The trial's side of overlapped tracking (see above); returns what it adds to the Tune report."""
        from tracking.mlflow_runs import create_child

        t0 = time.perf_counter()
        run_id = done.info.run_id if done is not None else create_child(client, exp_id, parent_id, sweep_id, trial_id,
                                                                         record["run_name"], record["tags"])
        # the outbox copy holds the wait up to its own write (an upload from the outbox is the exception)
        record["scalars"]["time/tracking_wait_s"] = waited + time.perf_counter() - t0
        try:
            folder = _deposit(outbox_dir, driver_node, trial_id, record, curves)
        except Exception as exc:  # no safe copy of the results: upload them now, as without overlap
            log.warning("trial %s: no outbox entry (%s); uploading without overlap", trial_id, type(exc).__name__)
            del record["scalars"]["time/tracking_wait_s"]
            return {"time/tracking_s": _log_record(client, run_id, record, curves, done is None,
                                                   waited + time.perf_counter() - t0), "mlflow_run_id": run_id}
        _uploader().wait()
        record["scalars"]["time/tracking_wait_s"] = waited + time.perf_counter() - t0
        if folder is not None and curves is not None:
            curves = os.path.join(folder, "curves.parquet")  # written once, by the deposit
        if not _uploader().ready():  # the companion is still starting: this trial uploads itself, as without overlap
            del record["scalars"]["time/tracking_wait_s"]  # log_trial logs it, the upload included
            tracking_s = _log_record(client, run_id, record, curves, done is None, waited + time.perf_counter() - t0)
            try:
                _outbox_call(outbox_dir, driver_node, "discard", trial_id)
            except Exception as exc:  # harmless: the end-of-sweep upload completes the run again, idempotently
                log.warning("trial %s: outbox entry not discarded (%s)", trial_id, type(exc).__name__)
            return {"time/tracking_s": tracking_s, "mlflow_run_id": run_id}
        _uploader().submit(uri, run_id, done is None, record, curves, outbox_dir, driver_node, trial_id)
        return {"mlflow_run_id": run_id}

    trainable.__mixins__ = (_FlushOnStop,)
    return trainable


def _tuner_parts(spec: SweepSpec, uri: str, exp_id: str, parent_id: str, sweep_id: str):
    import ray
    from ray import tune

    settings = TrialSettings.from_spec(spec)
    fn = _make_trainable(settings, uri, exp_id, parent_id, sweep_id, spec.metric_history_points,
                         _outbox_dir(sweep_id), ray.get_runtime_context().get_node_id(),
                         overlap_for(spec.tracking_overlap, uri))
    if settings.family in SPARSE_FAMILIES:  # large games: CPUs and memory from each trial's game size (issue 9)
        return tune.with_resources(fn, lambda config: tune.PlacementGroupFactory(
            [{"CPU": (r := trial_resources(settings, config))["cpu"], "memory": r["memory"]}]))
    n = max(1, int(spec.cpus_per_trial))
    if n >= 2:  # the trial's own bundle plus spare 1-CPU bundles for its individual-learning tasks
        resources = tune.PlacementGroupFactory([{"CPU": 1}] * n, strategy="PACK")
    else:
        resources = {"cpu": spec.cpus_per_trial}
    return tune.with_resources(fn, resources)


def _progress_callback(total: int):
    from ray import tune

    class Progress(tune.Callback):
        """One status line (<= 80 columns) on stderr: done/total, running, failed, ETA, best so far."""

        def __init__(self):
            self.t0 = time.time()
            self.done = self.failed = self.running = 0
            self.best = None
            self.last = 0.0

        def _line(self, force=False):
            now = time.time()
            if not force and now - self.last < 1.0:
                return
            self.last = now
            el = now - self.t0
            eta = "--:--" if not self.done else time.strftime("%M:%S", time.gmtime(el / self.done * max(total - self.done - self.failed, 0)))
            best = "-" if self.best is None else f"{self.best:.4g}"
            line = f"[{self.done}/{total} done, {self.running} running, {self.failed} failed] ETA {eta} best gap/meta {best}"
            end = "\r" if sys.stderr.isatty() and not force else "\n"
            sys.stderr.write(line[:79].ljust(79 if end == "\r" else 0) + end)
            sys.stderr.flush()

        def on_trial_start(self, iteration, trials, trial, **info):
            self.running += 1
            self._line()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            g = result.get("final_gap/meta", result.get("final_gap/individual"))
            if g is not None and (self.best is None or g < self.best):
                self.best = g

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.running = max(0, self.running - 1)
            self.done += 1
            self._line(force=self.done == total)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.running = max(0, self.running - 1)
            self.failed += 1
            self._line(force=True)

    return Progress()


def _run_config(spec: SweepSpec, sweep_id: str, total: int):
    from ray import tune

    from .stoppers import FIRED, PlateauStopper

    FIRED.clear()
    return tune.RunConfig(
        name=sweep_id,
        storage_path=os.path.abspath(os.path.join(RUNS_DIR, "sweeps")),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        verbose=0,
        callbacks=[_progress_callback(total)],
        stop=PlateauStopper(**spec.stopper) if spec.stopper else None,
    )


def _finish(client, parent_id: str, results, sweep_id: str, total: int, exp_id: str | None = None) -> dict:
    from tracking.outbox import Outbox

    errors = [r for r in results if r.error is not None]
    ok = [r for r in results if r.error is None and r.metrics and "mlflow_run_id" in r.metrics]
    diverged = sum(1 for r in ok if r.metrics.get("diverged"))
    complete = len(ok) + len(errors) == total
    from .stoppers import FIRED

    stopped = not complete and FIRED.is_set()  # the spec's stopper ended the sweep early
    best = None
    for r in ok:
        g = r.metrics.get("final_gap/meta", r.metrics.get("final_gap/individual"))
        if g is not None and (best is None or g < best[0]):
            best = (g, {k: v for k, v in r.config.items()}, r.metrics.get("mlflow_run_id"))
    if stopped:
        status = "stopped" if not errors else "failed"
    else:
        status = "interrupted" if not complete else ("finished" if not errors else "failed")
    parent = {"metrics": {"trials/finished": len(ok), "trials/failed": len(errors), "trials/diverged": diverged},
              "status": {"interrupted": "KILLED", "failed": "FAILED"}.get(status, "FINISHED")}
    if best:
        parent["metrics"]["best/final_gap"] = float(best[0])
    outbox = Outbox(_outbox_dir(sweep_id))
    uploaded = 0
    if exp_id is not None and outbox.pending():  # a worker that ended mid-upload (overlapped tracking), or an outage
        try:
            uploaded = _upload_outbox(client, outbox, exp_id, parent_id, sweep_id)
        except Exception as exc:  # the store is down: the rest waits for `metasweep sync`
            log.warning("outbox not uploaded (%s: %s)", type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
    try:
        _log_parent(client, parent_id, parent)
    except Exception as exc:  # the store is down at the very end: sync logs the parent's record later
        log.warning("could not finish the parent run in MLflow (%s): kept in the outbox", type(exc).__name__)
        outbox.put_parent(parent)
    pending = len(outbox.pending()) + (outbox.parent() is not None)
    if pending:
        log.warning("%d result(s) wait in the outbox %s: upload them with `metasweep sync %s`", pending, outbox.folder,
                    sweep_id)
    return {
        "sweep_id": sweep_id,
        "status": status,
        "not_run": total - len(ok) - len(errors),
        "trials": total,
        "finished": len(ok),
        "failed": len(errors),
        "diverged": diverged,
        "best": None if best is None else {"final_gap": best[0], "config": best[1], "mlflow_run_id": best[2]},
        "errors": [str(r.error).splitlines()[0][:200] for r in errors][:5],
        "outbox_pending": pending,
    } | ({"outbox_uploaded": uploaded} if uploaded else {})


def _log_parent(client, parent_id: str, parent: dict) -> None:
    """The sweep's final counts on its parent run, and its terminal status."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in parent["metrics"].items()])
    client.set_terminated(parent_id, status=parent["status"])


# ----------------------------------------------------------------------------- commands


def run_sweep(spec: SweepSpec, spec_text: str, address: str | None = None, tracking_uri: str | None = None,
              num_cpus: int | None = None, smoke: bool = False) -> dict:
    """Run a validated spec to completion (module docstring); returns the sweep's summary."""
    from ray import tune

    uri = tracking_uri or spec.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    address = address or spec.ray_address or os.environ.get("RAY_ADDRESS") or None
    sweep_id = f"{spec.experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 1000:03d}"
    _probe_ray_address(address)  # before anything is created
    client = _open_tracking(uri)
    ray = _init_ray(address, num_cpus)
    cluster = ray.cluster_resources()
    _check_resources(spec, cluster)
    from tracking.mlflow_runs import ensure_experiment, json_tag, package_versions, start_parent_run

    exp_id = ensure_experiment(client, spec.experiment, artifact_root(uri))
    parent_id = start_parent_run(client, exp_id, sweep_id, spec_text, {
        "metasweep.git_commit": _git_commit(),
        "metasweep.versions": json_tag(package_versions()),
        "metasweep.cluster_cpus": str(cluster.get("CPU", 0)),
        "metasweep.cluster_nodes": str(len([n for n in ray.nodes() if n.get("Alive")])),
        "metasweep.smoke_test": str(bool(smoke)),
    })
    total = spec.num_trials
    state_dir = _sweep_dir(sweep_id)
    os.makedirs(state_dir, exist_ok=True)
    state = {"sweep_id": sweep_id, "experiment": spec.experiment, "tracking_uri": uri, "experiment_id": exp_id,
             "parent_run_id": parent_id, "trials": total, "address": address, "spec": spec_text,
             "smoke_test": bool(smoke), "confirm_large_grid": spec.confirm_large_grid}
    with open(os.path.join(state_dir, "sweep.json"), "w") as fh:
        json.dump(state, fh, indent=2)
    log.info("sweep %s: %d trials on %s CPUs; MLflow %s (parent run %s)", sweep_id, total, cluster.get("CPU"), uri, parent_id)
    search_alg = None
    if spec.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric="final_gap/meta", mode="min")
    with _parent_guard(client, parent_id, sweep_id):
        tuner = tune.Tuner(
            _tuner_parts(spec, uri, exp_id, parent_id, sweep_id),
            param_space=spec.param_space(),
            tune_config=tune.TuneConfig(num_samples=spec.num_samples, max_concurrent_trials=spec.max_concurrent_trials,
                                        reuse_actors=True, search_alg=search_alg),
            run_config=_run_config(spec, sweep_id, total),
        )
        results = tuner.fit()
        summary = _finish(client, parent_id, results, sweep_id, total, exp_id)
    summary = _sync_if_pending(summary, state_dir)
    summary |= {"tracking_uri": uri, "parent_run_id": parent_id, "experiment_id": exp_id, "state_dir": state_dir}
    return summary


def _check_resources(spec: SweepSpec, cluster: dict) -> None:
    cpus = cluster.get("CPU", 0)
    if spec.cpus_per_trial > cpus:
        raise SweepError(f"resources.cpus = {spec.cpus_per_trial:g} exceeds the {cpus:g} CPUs of the Ray cluster: "
                         "no trial could ever be scheduled (lower resources.cpus, or raise --num-cpus / add nodes)")


class _parent_guard:
    """The parent run is never left RUNNING: an exception or interrupt marks it KILLED or FAILED."""

    def __init__(self, client, parent_id: str, sweep_id: str):
        self.client, self.parent_id, self.sweep_id = client, parent_id, sweep_id

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return False
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.client.set_terminated(self.parent_id, status=status)
        except Exception:  # the store may be what failed; the original error matters more
            log.warning("could not mark parent run %s %s", self.parent_id, status)
        if issubclass(exc_type, KeyboardInterrupt):
            raise SweepError(f"interrupted: continue with `metasweep resume {self.sweep_id}`") from None
        return False


def load_state(sweep: str) -> dict:
    path = sweep if os.path.isdir(sweep) else _sweep_dir(sweep)
    f = os.path.join(path, "sweep.json")
    if not os.path.isfile(f):
        raise SweepError(f"unknown sweep {sweep!r}: no {f}")
    with open(f) as fh:
        state = json.load(fh)
    state["state_dir"] = os.path.abspath(path)
    return state


def effective_spec(state: dict) -> SweepSpec:
    """The spec a sweep actually ran: its stored text with the --smoke-test and --yes it ran with."""
    from .spec import read_yaml

    spec = parse_spec(read_yaml(state["spec"], "stored spec"), "stored spec", enforce_limit=False)
    if state.get("smoke_test"):
        spec = spec.smoke()
    return spec


def resume_sweep(sweep: str, errored: bool = False, address: str | None = None, num_cpus: int | None = None) -> dict:
    """Finish a sweep's unfinished trials (and its errored ones with ``errored``)."""
    from ray import tune

    state = load_state(sweep)
    spec = effective_spec(state)
    if not tune.Tuner.can_restore(state["state_dir"]):
        raise SweepError(f"sweep {state['sweep_id']} has no restorable Tune state in {state['state_dir']}")
    address = address or state.get("address") or os.environ.get("RAY_ADDRESS")
    _probe_ray_address(address)
    client = _open_tracking(state["tracking_uri"])
    ray = _init_ray(address, num_cpus)
    _check_resources(spec, ray.cluster_resources())
    client.update_run(state["parent_run_id"], status="RUNNING")
    trainable = _tuner_parts(spec, state["tracking_uri"], state["experiment_id"], state["parent_run_id"], state["sweep_id"])
    with _parent_guard(client, state["parent_run_id"], state["sweep_id"]):
        tuner = tune.Tuner.restore(state["state_dir"], trainable=trainable, resume_unfinished=True, resume_errored=errored)
        results = tuner.fit()
        summary = _finish(client, state["parent_run_id"], results, state["sweep_id"], state["trials"], state["experiment_id"])
    summary = _sync_if_pending(summary, state["state_dir"])
    return summary | {"tracking_uri": state["tracking_uri"], "parent_run_id": state["parent_run_id"], "resumed": True}


def _sync_if_pending(summary: dict, state_dir: str) -> dict:
    """At the end of a sweep, try once to upload what the outbox holds (the store may be back)."""
    if not summary.get("outbox_pending"):
        return summary
    try:
        synced = sync_sweep(state_dir)
    except Exception as exc:  # still unreachable: the entries stay for `metasweep sync`
        log.warning("outbox not uploaded yet (%s)", str(exc).splitlines()[0][:200])
        return summary
    return summary | {"outbox_pending": synced["pending"], "outbox_uploaded": synced["uploaded"]}


def sync_sweep(sweep: str) -> dict:
    """Upload a sweep's outbox (:mod:`tracking.outbox`) to MLflow, idempotently: every pending trial to its
    child run (found by trial id, or created), then the parent run's final record."""
    from tracking.outbox import Outbox

    state = load_state(sweep)
    client = _open_tracking(state["tracking_uri"])
    box = Outbox(os.path.join(state["state_dir"], "outbox"))
    exp_id, parent_id, sweep_id = state["experiment_id"], state["parent_run_id"], state["sweep_id"]
    uploaded = _upload_outbox(client, box, exp_id, parent_id, sweep_id)
    parent = box.parent()
    if parent is not None:
        _log_parent(client, parent_id, parent)
        box.clear_parent()
    log.info("sweep %s: %d trial(s) uploaded from the outbox", sweep_id, uploaded)
    return {"sweep_id": sweep_id, "uploaded": uploaded, "parent_logged": parent is not None,
            "pending": len(box.pending()), "tracking_uri": state["tracking_uri"]}


def _upload_outbox(client, box, exp_id: str, parent_id: str, sweep_id: str) -> int:
    """Upload every pending trial of the outbox ``box`` to its child run (found by trial id, or created),
    idempotently, marking each synced; returns how many. The first failure raises (the rest stay pending)."""
    from tracking.mlflow_runs import find_child

    uploaded = 0
    for trial_id in box.pending():
        record, curves = box.load(trial_id)
        run_id, _ = upload_trial(client, record, curves, exp_id, parent_id, sweep_id, trial_id,
                                 find_child(client, exp_id, parent_id, trial_id))
        box.mark_synced(trial_id, run_id)
        uploaded += 1
    return uploaded


def sweep_status(sweep: str) -> dict:
    """Counts of the sweep's child runs by status, and the best trial so far (from MLflow)."""
    from tracking.outbox import Outbox

    state = load_state(sweep)
    client = _open_tracking(state["tracking_uri"])
    runs = client.search_runs([state["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{state['parent_run_id']}'",
                              max_results=50_000)
    counts: dict[str, int] = {}
    best = None
    for r in runs:
        counts[r.info.status] = counts.get(r.info.status, 0) + 1
        g = r.data.metrics.get("final_gap/meta")
        if r.info.status == "FINISHED" and g is not None and (best is None or g < best["final_gap"]):
            best = {"final_gap": g, "run_id": r.info.run_id, "run_name": r.info.run_name}
    parent = client.get_run(state["parent_run_id"]).info.status
    return {"sweep_id": state["sweep_id"], "trials": state["trials"], "runs": counts, "parent_status": parent,
            "finished": counts.get("FINISHED", 0), "remaining": state["trials"] - counts.get("FINISHED", 0),
            "best": best, "tracking_uri": state["tracking_uri"],
            "outbox_pending": len(Outbox(os.path.join(state["state_dir"], "outbox")).pending())}
