"""Benchmark: the sweep service (Ray Tune + MLflow) vs a serial loop over the same trials, side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sweep.py [--trials N | --quick] [--out FILE.json]
        [--backends sqlite,postgres] [--tracking overlap,serial] [--reps R] [--serial-reps R] [--replay N]
        [--wait-idle S] [--keep] [--iterations T[,T...]] [--ray local,head] [--code DIR[,DIR...]]

Results and their reading: docs/benchmarks.md ("Sweep service: Ray Tune + MLflow vs a serial loop").
A full run with ``--reps 3 --wait-idle 20`` takes about 6.5 minutes on 2 cores; ``--quick`` about 45 s.

The work: N trials (default 100) of the F.1 configuration (family paper-zero-sum, K = 10, H = 10,
T = 1000, eta = 0.02, sigma = 0.1, stage_reset true, methods individual + meta, resources.cpus 1,
gap every iteration), seeds 0..N-1.

1. Serial baseline: ``sweeps.trial.run_trial(config, settings)`` in a loop in this process (no Ray,
   no MLflow), after one untimed call that warms the Numba cache (the on-disk cache the Ray workers
   load too). ``settings`` is built from the benchmark's spec exactly as the service builds it.
   ``--serial-reps`` loops (default 1) at the start and one right before every sweep (the machine's
   speed drifts); the baseline is the median of all loops.
2. The sweep: ``metasweep run SPEC --num-cpus 2 --tracking-uri URI`` as a subprocess (its own
   working directory, so ``runs/`` and Ray's ``RAY_TMPDIR`` stay in the benchmark's temporary
   folder) on a spec with the same configs (``seed: {grid: [0..N-1]}``). Measured:
   - command wall time (process start to exit);
   - Tune fit time = the parent MLflow run's span (start_time to end_time; the service creates the
     parent just before building the Tuner and ends it right after ``tuner.fit()`` returns), and the
     trial span (first trial function start to last child run end; a trial's start = its child
     run's end_time minus Tune's ``time_total_s`` of the trial from ``result.json``);
   - a timeline: process start + imports + MLflow store check (launch to the Ray session's
     timestamp), Ray start (to the experiment's creation_time), experiment + parent run, Tune start to
     the first trial, the trials, Tune end + summary, Ray shutdown + exit;
   - efficiency = serial time / (2 CPUs x sweep time), with the command's wall time and with the
     fit time; trials per second;
   - tracking: the child metric ``time/tracking_s`` (the service's ``log_trial`` up to its artifact:
     [get_run], log_batch, curves.parquet, log_artifact), median and sum, and sum / (2 x fit time);
     plus the rest of each trial's MLflow work that ``time/tracking_s`` does not cover ("other
     MLflow": the ``search_runs`` lookup(s), ``create_run``, the final ``log_metric`` and
     ``set_terminated``, and in a worker's first trial the import of MLflow; = Tune's
     ``time_total_s`` minus ``time/trial_s`` minus ``time/tracking_s``; serial tracking only: with
     overlapped tracking ``log_trial`` runs in the background, outside ``time_total_s``);
   - tracking as the trials see it: the child metric ``time/tracking_wait_s`` (the seconds a trial
     spent on tracking before reporting to Tune: lookup, its MLflow record, create_run, outbox entry
     and waiting for its worker's previous upload; serial tracking: also ``log_trial``), median, sum
     and sum / (2 x fit time) = the tracking share of the workers' time;
   - where the two workers' time goes (sums over the trials, as shares of 2 x fit time): compute
     (``time/trial_s``), tracking the trial waited for (``time/tracking_wait_s``), the rest of the
     trial function (``time_total_s`` minus both: Tune's report, and in serial tracking the final
     ``log_metric`` + ``set_terminated``; in a worker's first trial the import of MLflow), the gaps
     between consecutive trials of a worker (Tune: result handling, actor reset, next trial), before
     each worker's first trial (Tune start, worker process start), after its last trial (with
     overlapped tracking: its last upload, which the stopping worker finishes); a trial ends at its
     Tune report (``reported_at``), not at its child run's end (the upload may still run);
   - CPU seconds used during the sweep by the driver (metasweep), Ray system processes, Ray workers,
     the MLflow server and PostgreSQL (sampled from /proc every 0.5 s), vs the serial CPU time;
   - all N child runs FINISHED (and the parent).

   ``--iterations T1,T2,...`` (default 1000 = F.1): the trials' iteration count T (spec ``T``; the serial
   loop runs the same configs). Each T has its own serial baseline (a loop at the start and one before
   every sweep of that T); a sweep's efficiency uses its T's median loop. Longer trials amortise the
   fixed costs (start-up, shutdown) and the per-trial tracking, whose history size does not grow with T
   (``metric_history_points``; the full-resolution Parquet artifact does).

   ``--ray local,head`` (default local): ``local`` = ``metasweep run`` starts an embedded Ray in its process
   and shuts it down at its exit (the default local mode); ``head`` = the sweeps join an already running
   local Ray head with 2 CPUs (``metasweep run ... --address 127.0.0.1:PORT``), as on a cluster whose head
   is up: Ray's start and shutdown are not part of the command. The head is started once, before the
   first sweep, with the project's ``cluster/harness.py up --workers 0 --head-cpus 2 --no-tracking`` in
   the work folder (its start-up time is reported separately) and stopped at the end with ``harness.py
   down`` (by PID). Its processes' CPU counts as "Ray system" / "Ray workers" of the sweeps.

   ``--code DIR1,DIR2`` (default: this checkout): the sweeps run the code of each folder (``PYTHONPATH=DIR``
   for ``metasweep run``; e.g. git worktrees of two commits), side by side in every repetition; each
   folder's Numba cache is filled by one trial in a subprocess first. The serial loops run this
   checkout's code (compare the folders' sweeps with each other). Not with ``--ray head`` (the head's
   workers would import one folder's code for both).
3. ``--tracking overlap,serial`` (default both): each repetition runs one sweep per tracking mode,
   one after the other on the same store type, with the spec's ``tracking: {overlap: true|false}``
   (overlapped: what the default ``auto`` picks for a server store; serial: every trial uploads before
   reporting, what ``auto`` picks for a local store).
   Each sweep with (a) a local SQLite store ``sqlite:///TMP/mlflow.db`` (created before the timed
   command, as a first ``metasweep run`` would in its start-up) and (b) an MLflow server
   (``cluster/mlflow_server.py``, one worker) whose backend store is PostgreSQL
   (``cluster/postgres.py``; needs ``pip install -e '.[postgres]'``), both started before and
   stopped after the timed command (their start-up times are reported separately).
4. Tracking replay (``--replay N``, default 10): after the first sweep on each store, this process
   repeats what a trial's trainable sends to MLflow (mirroring the checked-out service's trainable)
   for N of the serial loop's outputs, under a separate parent run in the same experiment (so the
   tables are as large as in the sweep), and times every client call; once with the spec's
   ``metric_history_points`` (the service default) and once with 200 (or 50 if that is the default).

Everything the benchmark starts is stopped by PID, also on failure or SIGTERM: the metasweep process
(SIGINT, then SIGKILL to its process group), any Ray process it left (tracked by PID and start time
from /proc while it ran), the MLflow server and PostgreSQL (their scripts' ``stop``).

"other load" is the CPU time used by processes that are not the benchmark's (or hypervisor steal)
during a phase, as a share of the machine (wall x CPUs), from /proc/stat minus the benchmark's own
processes (the last up to 0.5 s of CPU of our processes that exit between two samples is counted as
other load: an upper bound). ``--wait-idle S`` waits before each measured phase until no other
process has been busy (> 5 % of a CPU) and none of metasweep, ray::, default_worker, pytest, mlflow
runs outside the benchmark, for S seconds (like /tmp/bench/wait_idle.sh, which cannot be called from
here: it would see this busy process and our MLflow server).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._common import cpu_model, dirty, git  # noqa: E402

CPUS = 2
#: The F.1 configuration's T (``--iterations`` default).
DEFAULT_T = 1000
HARNESS = os.path.join(ROOT, "cluster", "harness.py")
#: ProcWatch category root of a Ray head started before the sweeps (``--ray head``).
HEAD_CAT = "ray head"
MLFLOW_SERVER = os.path.join(ROOT, "cluster", "mlflow_server.py")
POSTGRES = os.path.join(ROOT, "cluster", "postgres.py")
METASWEEP = os.path.join(os.path.dirname(sys.executable), "metasweep")
CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

SPEC_TEMPLATE = """\
# benchmarks/bench_sweep.py: the F.1 configuration (Figure 2), {n} family seeds
experiment: {experiment}
algorithm: optimistic-mwu
game:
  family: paper-zero-sum
methods: [individual, meta]
search_space:
  eta: 0.02
  K: 10
  H: 10
  sigma: 0.1
  T: {T}
  seed: {{grid: [{seeds}]}}
  stage_reset: true
resources:
  cpus: 1
tracking:
  overlap: {overlap}
"""


#: A second tracking replay with another metric_history_points (the first of these that is not the
#: spec's): what a different history size costs.
REPLAY_OTHER_POINTS = (200, 50)
STORE_NAMES = {"sqlite": "SQLite file (sqlite:/// in every process)",
               "postgres": "MLflow server (1 worker) on PostgreSQL"}


class BenchError(RuntimeError):
    pass


def _log(msg: str = "") -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- /proc accounting


def _proc_stat(pid: int):
    """(state, ppid, pgrp, utime+stime seconds, starttime ticks) of ``pid`` or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            s = fh.read()
    except OSError:
        return None
    f = s[s.rfind(")") + 2:].split()
    # f[0]=state f[1]=ppid f[2]=pgrp ... f[11]=utime f[12]=stime ... f[19]=starttime
    return f[0], int(f[1]), int(f[2]), (int(f[11]) + int(f[12])) / CLK, int(f[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read(600).replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _machine_busy():
    """(busy seconds, steal seconds) of the whole machine from /proc/stat."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK, v[7] / CLK


def _own_rusage() -> float:
    return sum(getattr(resource.getrusage(w), a) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for a in ("ru_utime", "ru_stime"))


_IDLE_PATTERN = re.compile(r"metasweep|ray::|default_worker|pytest|mlflow")


class ProcWatch:
    """Tracks the benchmark's own processes (its descendants and the services it started) from /proc.

    A background thread samples every ``interval`` s while a phase runs: every process seen as ours is
    remembered by (pid, start time) with its CPU time at the phase start (0 if it started later) and
    at the last sample, and its category (from its command line). ``stop_leftovers`` kills, by PID,
    processes of a category that should be gone.
    """

    def __init__(self):
        self.me = os.getpid()
        self.service_roots: dict[int, str] = {}  # pid -> category (descendants and process group count)
        self.driver_pid: int | None = None
        self.seen: dict[tuple[int, int], dict] = {}
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self.phase = None

    # -- classification
    def _category(self, pid: int, cmd: str, root_cat: str | None) -> str:
        if pid == self.me:
            return "bench"
        if root_cat == HEAD_CAT:  # a Ray head started before the sweeps: classified, but never a leftover
            return self._category(pid, cmd, None) + "@head" if pid != self.driver_pid else "driver"
        if root_cat:
            return root_cat
        if pid == self.driver_pid:
            return "driver"
        if cmd.startswith("ray::") and "Agent" not in cmd or "default_worker.py" in cmd:
            return "ray workers"
        if any(k in cmd for k in ("gcs_server", "raylet", "monitor.py", "dashboard", "log_monitor", "ray::",
                                  "ray/_private", "runtime_env")):
            return "ray system"
        return "helpers"

    def _scan(self):
        """{pid: (stat tuple)} of all processes, and the set of ours with their category root."""
        procs = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = _proc_stat(int(name))
                if st is not None:
                    procs[int(name)] = st
        children = defaultdict(list)
        for pid, st in procs.items():
            children[st[1]].append(pid)
        ours: dict[int, str | None] = {}
        stack = [(self.me, None)]
        for root, cat in self.service_roots.items():
            stack.append((root, cat))
            for pid, st in procs.items():  # process group members (a server's workers)
                if st[2] == root:
                    stack.append((pid, cat))
        while stack:
            pid, cat = stack.pop()
            if pid in ours and (ours[pid] is not None or cat is None):
                continue
            ours[pid] = cat
            stack.extend((c, cat) for c in children.get(pid, ()))
        return procs, ours

    def sample(self):
        procs, ours = self._scan()
        with self._lock:
            live = set()
            for pid, root_cat in ours.items():
                st = procs.get(pid)
                if st is None:
                    continue
                key = (pid, st[4])
                live.add(key)
                rec = self.seen.get(key)
                cmd = _cmdline(pid)
                if rec is None:
                    rec = {"pid": pid, "start": st[4], "cpu0": st[3] if self.phase is None else 0.0, "cpu": st[3],
                           "cmd": cmd[:200], "cat": None, "born_in_phase": self.phase}
                    self.seen[key] = rec
                rec["cpu"] = st[3]
                if cmd or rec["cat"] is None:  # an exiting process has no command line: keep its category
                    rec["cat"] = self._category(pid, cmd, root_cat)
                if cmd:
                    rec["cmd"] = cmd[:200]
                rec["alive"] = st[0] != "Z"
            for key, rec in self.seen.items():
                if key not in live:
                    rec["alive"] = False
        return procs, ours

    # -- phases
    def begin(self, name: str, sample_thread: bool = True, interval: float = 0.5):
        self.sample()  # baselines of the processes alive now
        with self._lock:
            for rec in self.seen.values():
                rec["cpu0"] = rec["cpu"]
            self.phase = name
        self._t0 = time.perf_counter()
        self._busy0, self._steal0 = _machine_busy()
        if sample_thread:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
            self._thread.start()

    def _loop(self, interval):
        while not self._stop.wait(interval):
            try:
                self.sample()
            except Exception:  # never let accounting break a measurement
                pass

    def end(self) -> dict:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.sample()
        wall = time.perf_counter() - self._t0
        busy1, steal1 = _machine_busy()
        by_cat = defaultdict(float)
        top = []
        with self._lock:
            for rec in self.seen.values():
                d = max(0.0, rec["cpu"] - rec["cpu0"])
                by_cat[rec["cat"]] += d
                if d > 0.05:
                    top.append({"pid": rec["pid"], "cat": rec["cat"], "cpu_s": d, "cmd": rec["cmd"][:100]})
                rec["cpu0"] = rec["cpu"]
            self.phase = None
        ours = sum(by_cat.values())
        busy = busy1 - self._busy0
        other = max(0.0, busy - ours)
        steal = steal1 - self._steal0
        return {"wall_s": wall, "machine_busy_cpu_s": busy, "ours_cpu_s": ours, "cpu_by_category_s": dict(by_cat),
                "other_cpu_s": other, "steal_s": steal, "other_share": (other + steal) / (wall * NCPU),
                "top_processes": sorted(top, key=lambda t: -t["cpu_s"])[:25]}

    # -- clean-up
    def remember_group(self, pgid: int, cat: str = "ray system") -> None:
        """Remember the live members of process group ``pgid`` (a process started after the last sample
        and already orphaned, e.g. a Ray agent of an interrupted start-up, is still in its driver's group)."""
        procs, _ = self._scan()
        with self._lock:
            for pid, st in procs.items():
                if st[2] == pgid and pid != self.me and (pid, st[4]) not in self.seen:
                    self.seen[(pid, st[4])] = {"pid": pid, "start": st[4], "cpu0": st[3], "cpu": st[3],
                                               "cmd": _cmdline(pid)[:200], "cat": cat, "born_in_phase": self.phase}

    def alive_of(self, cats) -> list[dict]:
        out = []
        with self._lock:
            recs = list(self.seen.values())
        for rec in recs:
            if rec["cat"] in cats and rec["pid"] != self.me:
                st = _proc_stat(rec["pid"])
                if st is not None and st[4] == rec["start"] and st[0] != "Z":
                    out.append(rec)
        return out

    def stop_leftovers(self, cats=("driver", "ray workers", "ray system", "helpers"), grace: float = 5.0) -> list:
        """SIGTERM, then SIGKILL, our processes of ``cats`` that are still alive (same PID and start time)."""
        self.sample()
        left = self.alive_of(cats)
        for rec in left:
            try:
                os.kill(rec["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.alive_of(cats) and time.monotonic() < deadline:
            time.sleep(0.1)
        for rec in self.alive_of(cats):
            try:
                os.kill(rec["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        return [{"pid": r["pid"], "cat": r["cat"], "cmd": r["cmd"][:120]} for r in left]

    # -- idle wait
    def wait_idle(self, seconds: float, max_wait: float) -> dict:
        """Block until no other process was busy (> 5 % of a CPU) or matched the pattern for ``seconds``."""
        if seconds <= 0:
            return {"waited_s": 0.0, "idle": None}
        t0 = time.monotonic()
        idle_since = None
        prev = {}
        last_busy = []
        while True:
            procs, ours = self._scan()
            now = time.monotonic()
            busy = []
            for pid, st in procs.items():
                if pid in ours:
                    continue
                key = (pid, st[4])
                if key in prev and now - prev[key][1] > 0 and (st[3] - prev[key][0]) / (now - prev[key][1]) > 0.05:
                    busy.append(f"{pid} {_cmdline(pid)[:60] or '?'} (busy)")
                elif _IDLE_PATTERN.search(_cmdline(pid)):
                    busy.append(f"{pid} {_cmdline(pid)[:60]}")
            prev = {(pid, st[4]): (st[3], now) for pid, st in procs.items()}
            if busy:
                idle_since = None
                last_busy = busy
            elif idle_since is None:
                idle_since = now
            if idle_since is not None and now - idle_since >= seconds and len(prev) and now - t0 >= 2:
                return {"waited_s": now - t0, "idle": True}
            if now - t0 > max_wait:
                _log(f"  (not idle after {max_wait:.0f} s; measuring anyway; busy: {last_busy[:3]})")
                return {"waited_s": now - t0, "idle": False, "busy": last_busy[:5]}
            time.sleep(2.0)


# ----------------------------------------------------------------------------- services


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _script(path: str, *args, timeout: float = 300, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, path, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
        raise BenchError(f"{os.path.basename(path)} {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Services:
    """PostgreSQL and an MLflow server on it, stopped by their scripts (by PID) in ``close``."""

    def __init__(self, workdir: str, watch: ProcWatch):
        self.workdir, self.watch = workdir, watch
        self.pg_dir = self.mlflow_dir = None
        self.info = {}

    def start_postgres_mlflow(self, label: str) -> str:
        self.pg_dir = os.path.join(self.workdir, f"pg-{label}")
        t0 = time.perf_counter()
        for attempt in range(3):  # the free port may be taken between the probe and the bind
            try:
                pg = _script(POSTGRES, "start", "--state-dir", self.pg_dir, "--port", _free_port(), "--timeout", 60)
                break
            except BenchError as exc:
                if "already in use" not in str(exc) or attempt == 2:
                    raise
        self.watch.service_roots[pg["pid"]] = "postgres"
        t_pg = time.perf_counter() - t0
        self.mlflow_dir = os.path.join(self.workdir, f"mlflow-server-{label}")
        t0 = time.perf_counter()
        for attempt in range(3):
            try:
                srv = _script(MLFLOW_SERVER, "start", "--state-dir", self.mlflow_dir, "--port", _free_port(),
                              "--backend-store-uri", pg["uri"], "--timeout", 120)
                break
            except BenchError as exc:
                if "already in use" not in str(exc) or attempt == 2:
                    raise
        self.watch.service_roots[srv["pid"]] = "mlflow server"
        t_srv = time.perf_counter() - t0
        self.info = {"postgres_start_s": t_pg, "mlflow_server_start_s": t_srv, "postgres_pid": pg["pid"],
                     "mlflow_server_pid": srv["pid"], "mlflow_url": srv["url"], "postgres_port": pg["port"]}
        _log(f"  PostgreSQL started in {t_pg:.1f} s (pid {pg['pid']}, port {pg['port']}); MLflow server on it "
             f"ready in {t_srv:.1f} s (pid {srv['pid']}, {srv['url']})")
        return srv["url"]

    def close(self) -> dict:
        out = {}
        if self.mlflow_dir and os.path.exists(os.path.join(self.mlflow_dir, "mlflow.pid")):
            try:
                out["mlflow_server"] = _script(MLFLOW_SERVER, "stop", "--state-dir", self.mlflow_dir)
            except Exception as exc:  # keep going: PostgreSQL must be stopped too
                out["mlflow_server"] = {"error": str(exc)}
        if self.pg_dir and os.path.exists(os.path.join(self.pg_dir, "data", "postmaster.pid")):
            try:
                out["postgres"] = _script(POSTGRES, "stop", "--state-dir", self.pg_dir)
            except Exception as exc:
                out["postgres"] = {"error": str(exc)}
        for pid in list(self.watch.service_roots):
            self.watch.service_roots.pop(pid, None)
        self.mlflow_dir = self.pg_dir = None
        return out


class RayHead:
    """A local Ray head with ``CPUS`` CPUs (``--ray head``): ``cluster/harness.py up --workers 0 --head-cpus 2
    --no-tracking`` in the work folder, stopped by ``harness.py down`` (by PID) in ``close``."""

    def __init__(self, workdir: str, watch: ProcWatch):
        self.state_dir = os.path.join(workdir, "head")  # short: Ray's socket paths (harness links longer ones)
        self.watch = watch
        self.info = None

    def start(self) -> str:
        t0 = time.perf_counter()
        try:
            info = _script(HARNESS, "up", "--state-dir", self.state_dir, "--workers", 0, "--head-cpus", CPUS,
                           "--no-tracking", "--timeout", 120, env=dict(os.environ, PYTHONPATH=ROOT))  # its workers' code
        except BaseException:
            self.close()
            raise
        node = info["nodes"][0]
        self.watch.service_roots[node["pid"]] = HEAD_CAT
        self.info = {"start_s": time.perf_counter() - t0, "address": info["address"], "pid": node["pid"],
                     "harness_up_s": info.get("up_s")}
        self.watch.sample()
        _log(f"  Ray head (cluster/harness.py up --workers 0 --head-cpus {CPUS} --no-tracking) up in "
             f"{self.info['start_s']:.1f} s: {info['address']} (pid {node['pid']})")
        return info["address"]

    def close(self) -> dict | None:
        if not os.path.exists(os.path.join(self.state_dir, "cluster.json")):
            return None
        try:
            out = _script(HARNESS, "down", "--state-dir", self.state_dir)
        except Exception as exc:  # keep going: the watch stops what is left by PID
            out = {"error": str(exc)}
        self.watch.stop_leftovers(cats=tuple(c + "@head" for c in ("ray workers", "ray system", "helpers")))
        for pid, cat in list(self.watch.service_roots.items()):
            if cat == HEAD_CAT:
                self.watch.service_roots.pop(pid, None)
        self.info = None
        return out


# ----------------------------------------------------------------------------- serial baseline


def _settings_and_configs(spec_text: str, n: int):
    from sweeps.spec import parse_spec, read_yaml
    from sweeps.trial import TrialSettings

    spec = parse_spec(read_yaml(spec_text, "bench spec"), "bench spec")
    settings = TrialSettings.from_spec(spec)  # as sweeps.service builds it
    space = spec.param_space()
    base = {k: v for k, v in space.items() if k != "seed"}
    configs = [dict(base, seed=s) for s in space["seed"]["grid_search"]]
    assert len(configs) == n == spec.num_trials
    return spec, settings, configs


def _warm_folder(folder: str, spec_text: str) -> None:
    """One trial of the spec with the code of ``folder`` in a subprocess: fills that folder's Numba cache."""
    prog = ("import sys; from sweeps.spec import parse_spec, read_yaml; from sweeps.trial import TrialSettings, run_trial; "
            "spec = parse_spec(read_yaml(sys.stdin.read(), 'bench spec'), 'bench spec'); space = spec.param_space(); "
            "cfg = {k: v for k, v in space.items() if k != 'seed'} | {'seed': space['seed']['grid_search'][0]}; "
            "run_trial(cfg, TrialSettings.from_spec(spec))")
    proc = subprocess.run([sys.executable, "-c", prog], input=spec_text, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=folder), cwd=folder, timeout=900)
    if proc.returncode != 0:
        raise BenchError(f"warm-up in {folder} failed: {proc.stderr.strip()[-1500:]}")


class Serial:
    """The serial baseline: loops of ``run_trial`` over all configs in this process, no Ray, no MLflow.

    Loops are taken at the start and again right before every sweep (the machine's speed drifts: a
    VM's neighbours are not visible in /proc/stat), and the baseline is their median.
    """

    def __init__(self, settings, configs, keep: int, watch: ProcWatch):
        self.settings, self.configs, self.keep, self.watch = settings, configs, keep, watch
        self.loops, self.when, self.per_trial, self.kernel, self.kept, self.loads = [], [], [], [], [], []

    def loop(self, when: str) -> float:
        from sweeps.trial import run_trial

        self.watch.begin(f"serial-{len(self.loops)}", sample_thread=False)
        t0 = time.perf_counter()
        times = []
        for i, cfg in enumerate(self.configs):
            t1 = time.perf_counter()
            out = run_trial(cfg, self.settings)
            times.append(time.perf_counter() - t1)
            if not self.loops:
                self.kernel.append(out.scalars["time/kernel_s"])
                if i < self.keep:
                    self.kept.append((cfg, out))
        self.loops.append(time.perf_counter() - t0)
        load = self.watch.end()
        self.loads.append(load)
        self.when.append(when)
        self.per_trial.extend(times)
        _log(f"  serial loop {len(self.loops)} ({when}): {self.loops[-1]:.2f} s for {len(self.configs)} trials "
             f"(median {statistics.median(times) * 1e3:.1f} ms per trial), other load {100 * load['other_share']:.1f}%")
        return self.loops[-1]

    def result(self) -> dict:
        return {"reps": len(self.loops), "loop_s": self.loops, "loop_taken": self.when,
                "median_loop_s": statistics.median(self.loops), "per_trial_median_s": statistics.median(self.per_trial),
                "per_trial_min_s": min(self.per_trial), "per_trial_max_s": max(self.per_trial),
                "kernel_median_s": statistics.median(self.kernel), "kernel_sum_s": sum(self.kernel),
                "other_load": self.loads}


# ----------------------------------------------------------------------------- the sweep


def _ray_session_time(ray_tmp: str) -> float | None:
    """Epoch seconds of the Ray session's name (taken when ray.init starts the local node)."""
    for d in glob.glob(os.path.join(ray_tmp, "**", "session_20*"), recursive=True):
        m = re.search(r"session_(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+)_\d+$", d)
        if m and not os.path.islink(d):
            return _dt.datetime.strptime(m.group(1), "%Y-%m-%d_%H-%M-%S_%f").timestamp()
    return None


def _kill_sweep(proc: subprocess.Popen, watch: ProcWatch) -> list:
    """Interrupt the metasweep process (SIGINT: it marks the parent KILLED and shuts Ray down), then kill
    what is left of it, by PID: its process group and every process the watch saw descend from it."""
    watch.remember_group(proc.pid)
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    watch.remember_group(proc.pid)
    return watch.stop_leftovers()


def run_sweep(label: str, spec_path: str, uri: str, workdir: str, n: int, watch: ProcWatch, timeout: float,
              address: str | None = None, ray_tmp_name: str | None = None, code: str = ROOT) -> dict:
    """One timed ``metasweep run`` of the code in ``code``: an embedded Ray (``address`` None), or joining the Ray
    head at ``address``."""
    cwd = os.path.join(workdir, f"sweep-{label}")
    os.makedirs(cwd, exist_ok=True)
    # short: Ray's socket paths must stay < 108 bytes
    ray_tmp = os.path.join(workdir, ray_tmp_name or f"r-{label}")
    os.makedirs(ray_tmp, exist_ok=True)
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=code)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    cmd = [METASWEEP, "run", spec_path, "--tracking-uri", uri]
    cmd += ["--address", address] if address else ["--num-cpus", str(CPUS)]
    out_path, err_path = os.path.join(cwd, "stdout.txt"), os.path.join(cwd, "stderr.txt")
    watch.begin(f"sweep-{label}")
    t_launch = time.time()
    t0 = time.perf_counter()
    with open(out_path, "w") as fo, open(err_path, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                start_new_session=True)
    watch.driver_pid = proc.pid
    try:
        rc = proc.wait(timeout=timeout)
    except BaseException:
        left = _kill_sweep(proc, watch)  # while the sampler still runs
        watch.end()
        raise BenchError(f"sweep {label} did not finish (timeout {timeout:.0f} s or interrupt); stopped it and "
                         f"{len(left)} leftover processes; logs in {cwd}")
    wall = time.perf_counter() - t0
    t_exit = time.time()
    load = watch.end()
    watch.remember_group(proc.pid)
    leftovers = watch.stop_leftovers()
    watch.driver_pid = None
    with open(out_path) as fh:
        lines = fh.read().strip().splitlines()
    if rc != 0 or not lines:
        with open(err_path) as fh:
            tail = "".join(fh.readlines()[-15:])
        raise BenchError(f"metasweep run exited {rc}; stderr tail:\n{tail}")
    summary = json.loads(lines[-1])
    return {"label": label, "command": cmd, "cwd": cwd, "uri": uri, "rc": rc, "wall_s": wall, "t_launch": t_launch,
            "address": address, "code": code,
            "t_exit": t_exit, "ray_session_t": _ray_session_time(ray_tmp), "summary": summary, "load": load,
            "leftover_processes_killed": leftovers}


def _tune_results(state_dir: str) -> dict:
    """trial_id -> Tune's last result (result.json of each trial directory)."""
    out = {}
    for f in glob.glob(os.path.join(state_dir, "*", "result.json")):
        with open(f) as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
        if lines:
            r = json.loads(lines[-1])
            out[r["trial_id"]] = r
    return out


def analyse_sweep(run: dict, query_uri: str, n: int, serial_s: float) -> dict:
    from mlflow.tracking import MlflowClient

    s = run["summary"]
    client = MlflowClient(tracking_uri=query_uri)
    parent = client.get_run(s["parent_run_id"])
    exp = client.get_experiment(s["experiment_id"])
    children = client.search_runs([s["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{s['parent_run_id']}'",
                                  max_results=50_000)
    tune_res = _tune_results(s["state_dir"])
    rows = []
    for c in children:
        m = c.data.metrics
        tid = c.data.tags.get("metasweep.trial_id")
        tr = tune_res.get(tid, {})
        rows.append({"trial_id": tid, "status": c.info.status, "start": c.info.start_time / 1e3,
                     "end": (c.info.end_time or 0) / 1e3, "trial_s": m.get("time/trial_s"),
                     "tracking_s": m.get("time/tracking_s"), "kernel_s": m.get("time/kernel_s"),
                     "wait_s": m.get("time/tracking_wait_s", tr.get("time/tracking_wait_s")),
                     "reported_at": tr.get("reported_at"),
                     "time_total_s": tr.get("time_total_s"), "pid": tr.get("pid"), "seed": c.data.params.get("seed")})
    finished = sum(r["status"] == "FINISHED" for r in rows)
    complete = [r for r in rows if r["status"] == "FINISHED" and r["time_total_s"] is not None and r["trial_s"] is not None]
    p_start, p_end = parent.info.start_time / 1e3, parent.info.end_time / 1e3
    fit = p_end - p_start
    overlap = run.get("tracking") == "overlap"
    for r in complete:
        r["upload_end"] = r["end"]
        if r["reported_at"] is not None:  # the trial's end is its report; its child run may end later (overlap)
            r["end"] = r["reported_at"]
        r["begin"] = r["end"] - r["time_total_s"]
        r["mlflow_other_s"] = None if overlap else r["time_total_s"] - r["trial_s"] - r["tracking_s"]
        r["wait_s"] = r["wait_s"] if r["wait_s"] is not None else float("nan")
        r["rest_s"] = r["time_total_s"] - r["trial_s"] - r["wait_s"]
    first_begin = min(r["begin"] for r in complete)
    last_end = max(r["end"] for r in complete)
    last_upload_end = max(r["upload_end"] for r in complete)
    # per-worker timelines
    workers = defaultdict(list)
    for r in complete:
        workers[r["pid"]].append(r)
    pre = gaps = post = 0.0
    first_trials = []
    for pid, rs in workers.items():
        rs.sort(key=lambda r: r["begin"])
        pre += rs[0]["begin"] - p_start
        post += p_end - rs[-1]["end"]
        gaps += sum(b["begin"] - a["end"] for a, b in zip(rs, rs[1:]))
        first_trials.append(rs[0])
    later = [r for r in complete if r not in first_trials] or complete
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    sum_trial = sum(r["trial_s"] for r in complete)
    sum_track = sum(r["tracking_s"] for r in complete)
    sum_other = None if overlap else sum(r["mlflow_other_s"] for r in complete)
    sum_wait = sum(r["wait_s"] for r in complete)
    sum_rest = sum(r["rest_s"] for r in complete)
    capacity = CPUS * fit
    accounted = sum_trial + sum_wait + sum_rest + gaps + pre + post
    exp_t = exp.creation_time / 1e3 if exp.creation_time else None
    head = run.get("address") is not None
    timeline = {
        "process start + imports + MLflow store check": (run["ray_session_t"] or p_start) - run["t_launch"],
        "Ray start": exp_t - run["ray_session_t"] if run["ray_session_t"] and exp_t else None,
    } if not head else {
        "process start + imports + MLflow store check + Ray connect": (exp_t or p_start) - run["t_launch"],
    }
    timeline |= {
        "experiment + parent run": p_start - exp_t if exp_t else None,
        "Tune start to first trial start": first_begin - p_start,
        "trials (first start to last end)": last_end - first_begin,
        "Tune end + summary (last end to parent end)": p_end - last_end,
        ("Ray shutdown + exit" if not head else "Ray disconnect + exit"): run["t_exit"] - p_end,
    }
    load = run["load"]
    cats = load["cpu_by_category_s"]
    res = {
        "label": run["label"], "uri": run["uri"], "trials": n, "wall_s": run["wall_s"], "fit_s": fit,
        "iterations": run.get("iterations"), "ray": "head" if head else "local", "address": run.get("address"),
        "code": run.get("code"), "code_commit": git_at(run.get("code") or ROOT),
        "trial_span_s": last_end - first_begin, "timeline_s": timeline,
        "trials_per_s_wall": n / run["wall_s"], "trials_per_s_fit": n / fit,
        "efficiency_wall": serial_s / (CPUS * run["wall_s"]), "efficiency_fit": serial_s / (CPUS * fit),
        "serial_loop_before_s": serial_s,
        "children": len(rows), "children_finished": finished, "parent_status": parent.info.status,
        "sweep_status": run["summary"].get("status"), "all_finished": finished == n and len(rows) == n,
        "tracking_median_s": med([r["tracking_s"] for r in complete]), "tracking_sum_s": sum_track,
        "tracking_share_of_fit": sum_track / capacity, "tracking_mode": run.get("tracking"),
        "wait_median_s": med([r["wait_s"] for r in later]), "wait_sum_s": sum_wait,
        "wait_share_of_fit": sum_wait / capacity, "rest_median_s": med([r["rest_s"] for r in later]),
        "last_upload_after_last_report_s": last_upload_end - last_end,
        "mlflow_other_median_s": None if overlap else med([r["mlflow_other_s"] for r in later]),
        "mlflow_other_sum_s": sum_other,
        "mlflow_total_share_of_fit": None if overlap else (sum_track + sum_other) / capacity,
        "trial_compute_median_s": med([r["trial_s"] for r in later]), "trial_compute_sum_s": sum_trial,
        "kernel_median_s": med([r["kernel_s"] for r in later if r["kernel_s"] is not None]),
        "time_total_median_s": med([r["time_total_s"] for r in later]),
        "first_trial_per_worker": [{"pid": r["pid"], "time_total_s": r["time_total_s"], "trial_s": r["trial_s"],
                                    "tracking_s": r["tracking_s"], "wait_s": r["wait_s"], "rest_s": r["rest_s"]}
                                   for r in first_trials],
        "workers": len(workers),
        "worker_time_s": {"compute (time/trial_s)": sum_trial, "tracking waited for (time/tracking_wait_s)": sum_wait,
                          "rest of the trial function (report; serial: final log_metric + set_terminated; "
                          "a new worker's imports)": sum_rest,
                          "between trials (Tune)": gaps, "before first trial": pre, "after last trial": post,
                          "unaccounted (2 x fit - the rest)": capacity - accounted},
        "cpu_s": {"driver (metasweep)": cats.get("driver", 0.0),
                  "Ray system": cats.get("ray system", 0.0) + cats.get("ray system@head", 0.0),
                  "Ray workers": cats.get("ray workers", 0.0) + cats.get("ray workers@head", 0.0),
                  "MLflow server": cats.get("mlflow server", 0.0),
                  "PostgreSQL": cats.get("postgres", 0.0), "benchmark + helpers": cats.get("bench", 0.0) +
                  cats.get("helpers", 0.0) + cats.get("helpers@head", 0.0) + cats.get(None, 0.0)},
        "load": load, "leftover_processes_killed": run["leftover_processes_killed"],
        "per_trial": rows,
    }
    return res


# ----------------------------------------------------------------------------- tracking replay


class _TimedClient:
    def __init__(self, client):
        self._c = client
        self.times = defaultdict(list)

    def __getattr__(self, name):
        attr = getattr(self._c, name)
        if not callable(attr):
            return attr

        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self.times[name].append(time.perf_counter() - t0)

        return wrapped


def tracking_replay(uri: str, experiment_id: str, kept, spec, history_points: int) -> dict:
    """What a trial's trainable sends to MLflow, for already computed outputs, timed per call: the
    service's own ``find_child`` + ``record_trial`` (sweeps/service.py), through a timing client."""
    from sweeps.service import record_trial
    from sweeps.trial import TrialSettings
    from tracking.mlflow_runs import client_for, find_child, history_steps, start_parent_run

    settings = TrialSettings.from_spec(spec)
    client = _TimedClient(client_for(uri))
    sweep_id = f"replay-{history_points}-{os.getpid()}-{time.time_ns()}"  # a new parent, new children
    parent_id = start_parent_run(client._c, experiment_id, sweep_id, "replay", {})
    totals, tracking = [], []
    for i, (config, out) in enumerate(kept):
        trial_id = f"replay_{i:05d}"
        t0 = time.perf_counter()
        existing = find_child(client, experiment_id, parent_id, trial_id)
        _, tracking_s = record_trial(client, config, out, settings, experiment_id, parent_id, sweep_id, trial_id,
                                     history_points, existing=existing)
        tracking.append(tracking_s)
        totals.append(time.perf_counter() - t0)
    client._c.set_terminated(parent_id, status="FINISHED")
    calls = {k: {"calls": len(v), "median_ms": statistics.median(v) * 1e3, "per_trial_ms": sum(v) / len(kept) * 1e3}
             for k, v in client.times.items()}
    in_log_trial = sum(sum(client.times.get(k, [])) for k in ("get_run", "log_batch", "log_artifact")) / len(kept)
    return {"trials": len(kept), "history_points": history_points, "calls": calls,
            "flow": "find_child + record_trial", "total_median_ms": statistics.median(totals) * 1e3,
            "log_trial_median_ms": statistics.median(tracking) * 1e3,
            "log_trial_non_client_ms_per_trial": statistics.mean(tracking) * 1e3 - in_log_trial * 1e3,
            "points_per_trial": sum(len(history_steps(its, history_points))
                                    for its, _ in kept[0][1].histories.values())}


# ----------------------------------------------------------------------------- report


def git_at(folder: str) -> str | None:
    """Short commit of the checkout ``folder`` (and "+changes" when it has uncommitted ones in the code)."""
    out = git("rev-parse", "--short", "HEAD", cwd=folder)
    return (out or None) and out + ("+changes" if git("status", "--porcelain", "--", "solvers", "sweeps", "tracking",
                                                      cwd=folder) else "")


def _code_version():
    import hashlib

    diff = git("diff", "HEAD", "--", "solvers", "sweeps", "tracking") or ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": {d: dirty(d) for d in ("solvers", "sweeps", "tracking", "cluster", "benchmarks")},
            "service_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else None,
            "service_diff_files": (git("diff", "HEAD", "--name-only", "--", "solvers", "sweeps", "tracking") or "").split()}


def _machine():
    from importlib import metadata

    info = {"python": platform.python_version(), "nproc": NCPU, "platform": platform.platform()}
    for pkg in ("numpy", "numba", "ray", "mlflow", "sqlalchemy", "psycopg", "pyarrow"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    if cpu_model():
        info["cpu"] = cpu_model()
    info["code"] = _code_version()
    return info


def _med(rs, key):
    xs = [r[key] for r in rs if r[key] is not None]
    return statistics.median(xs) if xs else float("nan")


def _sweep_key(backend: str, mode: str, T: int, ray: str, iterations: list, code: str | None = None) -> str:
    """"sqlite/serial" (the default T and the embedded Ray, as before ``--iterations`` / ``--ray``), else
    "sqlite/serial/T=10000/head", with "/code=DIR" for ``--code``."""
    if iterations == [DEFAULT_T] and ray == "local" and code is None:
        return f"{backend}/{mode}"
    return f"{backend}/{mode}/T={T}/{ray}" + (f"/code={code}" if code else "")


def _sweep_name(key: str) -> str:
    """"sqlite/overlap" -> "SQLite file (...), overlapped tracking"; "sqlite/serial/T=10000/head" ->
    "SQLite file (...), serial tracking, T=10000, Ray head running"."""
    backend, _, rest = key.partition("/")
    mode, _, rest = rest.partition("/")
    T, _, rest = rest.partition("/")
    ray, _, code = rest.partition("/")
    return (STORE_NAMES.get(backend, backend) + (f", {mode} tracking" if mode else "") + (f", {T}" if T else "")
            + {"head": ", Ray head running", "local": ", embedded Ray", "": ""}.get(ray, f", {ray}")
            + (f", {code}" if code else ""))


def _ms(x) -> str:
    return "-" if x is None or x != x else f"{x * 1e3:.0f}"


def print_report(res: dict) -> None:
    ser = res["serial"]
    n = res["trials"]
    its = res.get("iterations") or [DEFAULT_T]
    by_T = res.get("serial_by_T") or {its[0]: ser}
    _log(f"\n=== Sweep service vs serial loop: {n} trials (F.1: K=10, H=10, T={','.join(map(str, its))}, "
         f"individual+meta), {CPUS} CPUs ===")
    for T, st in by_T.items():
        _log(f"serial baseline{f' T={T}' if len(by_T) > 1 or T != DEFAULT_T else ''}: {st['median_loop_s']:.2f} s "
             f"(median of {st['reps']} loops: "
             f"{', '.join(f'{x:.2f}' for x in st['loop_s'])}); per trial median {st['per_trial_median_s'] * 1e3:.1f} ms "
             f"(kernels {st['kernel_median_s'] * 1e3:.1f} ms); other load "
             + ", ".join(f"{100 * x['other_share']:.1f}%" for x in st["other_load"]))
    _log("")
    _log("| store, tracking | reps | command wall (s) | Tune fit = parent run span (s) | trial span (s) | trials/s (wall) | "
         "efficiency (wall) | efficiency (fit) | tracking per trial, median (ms) | tracking sum (s) | "
         "tracking / (2 x fit) | other MLflow per trial, median (ms) | tracking waited for per trial, median (ms) | "
         "tracking waited for / (2 x fit) | children FINISHED | other load |")
    _log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for label, rs in res["sweeps"].items():
        if not rs:
            continue
        label = _sweep_name(label)
        fin = ", ".join(f"{r['children_finished']}/{n}" for r in rs)
        _log(f"| {label} | {len(rs)} | {_med(rs, 'wall_s'):.2f} | {_med(rs, 'fit_s'):.2f} | {_med(rs, 'trial_span_s'):.2f} | "
             f"{_med(rs, 'trials_per_s_wall'):.2f} | {_med(rs, 'efficiency_wall'):.2f} | {_med(rs, 'efficiency_fit'):.2f} | "
             f"{_med(rs, 'tracking_median_s') * 1e3:.0f} | {_med(rs, 'tracking_sum_s'):.2f} | "
             f"{100 * _med(rs, 'tracking_share_of_fit'):.1f}% | {_ms(_med(rs, 'mlflow_other_median_s'))} | "
             f"{_ms(_med(rs, 'wait_median_s'))} | {100 * _med(rs, 'wait_share_of_fit'):.1f}% | {fin} | "
             + ", ".join(f"{100 * x['load']['other_share']:.1f}%" for x in rs) + " |")
    if len(its) > 1 or len(res.get("ray") or ["local"]) > 1 or its != [DEFAULT_T]:
        _log("\nAgainst the goals (medians over the repetitions; efficiency = serial / (2 x time); tracking share = "
             "sum over trials / (2 x fit)):")
        _log("| T | Ray | store, tracking | serial (s) | command wall (s) | Tune fit (s) | efficiency (wall) | "
             "efficiency (fit) | time/tracking_s / (2 x fit) | tracking waited for / (2 x fit) | "
             "all MLflow in trials / (2 x fit) | other load |")
        _log("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, rs in res["sweeps"].items():
            if not rs:
                continue
            T = rs[0].get("iterations") or its[0]
            mlf = _med(rs, "mlflow_total_share_of_fit")
            _log(f"| {T} | {rs[0].get('ray', 'local')} | {_sweep_name(label.split('/T=')[0])} | "
                 f"{by_T[T]['median_loop_s']:.2f} | {_med(rs, 'wall_s'):.2f} | {_med(rs, 'fit_s'):.2f} | "
                 f"{_med(rs, 'efficiency_wall'):.2f} | {_med(rs, 'efficiency_fit'):.2f} | "
                 f"{100 * _med(rs, 'tracking_share_of_fit'):.1f}% | {100 * _med(rs, 'wait_share_of_fit'):.1f}% | "
                 + ("-" if mlf != mlf else f"{100 * mlf:.1f}%") + " | "
                 + ", ".join(f"{100 * x['load']['other_share']:.1f}%" for x in rs) + " |")
    for label, rs in res["sweeps"].items():
        if not rs:
            continue
        r = rs[len(rs) // 2] if len(rs) % 2 else rs[0]
        label = _sweep_name(label)
        _log(f"\n[{label}] timeline of one sweep (s):")
        _log("  " + " | ".join(f"{k} {v:.2f}" if v is not None else f"{k} ?" for k, v in r["timeline_s"].items()))
        cap = CPUS * r["fit_s"]
        _log(f"  the {r['workers']} workers' time ({CPUS} x fit = {cap:.2f} s): " + " | ".join(
            f"{k} {v:.2f} s ({100 * v / cap:.0f}%)" for k, v in r["worker_time_s"].items()))
        st = by_T.get(r.get("iterations") or its[0], ser)
        _log(f"  per trial, medians over trials after each worker's first: compute {r['trial_compute_median_s'] * 1e3:.0f} ms "
             f"(serial {st['per_trial_median_s'] * 1e3:.0f} ms; kernels {r['kernel_median_s'] * 1e3:.0f} ms vs "
             f"{st['kernel_median_s'] * 1e3:.0f} ms) | log_trial {r['tracking_median_s'] * 1e3:.0f} ms | other MLflow "
             f"{_ms(r['mlflow_other_median_s'])} ms | tracking waited for {_ms(r['wait_median_s'])} ms | rest of the "
             f"trial function {_ms(r['rest_median_s'])} ms | Tune time_total {r['time_total_median_s'] * 1e3:.0f} ms")
        _log(f"  the last upload ended {r['last_upload_after_last_report_s']:.2f} s after the last trial's report")
        _log("  first trial per worker: " + "; ".join(
            f"time_total {f['time_total_s']:.2f} s (compute {f['trial_s']:.2f}, tracking waited for {f['wait_s']:.2f}, "
            f"rest {f['rest_s']:.2f}; log_trial {f['tracking_s']:.2f})" for f in r["first_trial_per_worker"]))
        serial_cpu = st["median_loop_s"]
        tot = sum(r["cpu_s"].values())
        _log(f"  CPU seconds during the command (sampled; serial loop ~{serial_cpu:.1f}): " + " | ".join(
            f"{k} {v:.1f}" for k, v in r["cpu_s"].items()) + f" | total {tot:.1f} ({tot / n * 1e3:.0f} ms per trial)")
        if r["leftover_processes_killed"]:
            _log(f"  leftover processes killed after the command: {r['leftover_processes_killed']}")
    if res.get("replay"):
        _log("\nTracking replay in the benchmark process (what one trial sends; medians in ms per call, "
             "per-trial totals):")
        _log("| store, history points per trial | trials | search_runs | create_run | get_run | log_batch | log_artifact | log_metric | "
             "set_terminated | log_trial (time/tracking_s) | all MLflow work of a trial |")
        _log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, rp in res["replay"].items():
            b, _, pts = label.partition(", ")
            label = f"{_sweep_name(b)}, {rp['points_per_trial']} history points"
            c = rp["calls"]
            cell = lambda k: f"{c[k]['median_ms']:.1f} (x{c[k]['calls'] // rp['trials']})" if k in c else "-"  # noqa: E731
            _log(f"| {label} | {rp['trials']} | {cell('search_runs')} | {cell('create_run')} | {cell('get_run')} | "
                 f"{cell('log_batch')} | {cell('log_artifact')} | {cell('log_metric')} | {cell('set_terminated')} | "
                 f"{rp['log_trial_median_ms']:.1f} | {rp['total_median_ms']:.1f} |")
        first = next(iter(res["replay"].values()))
        _log(f"  (flow: {first['flow']}; log_batch sends the history points plus the trial's scalars and params; "
             f"history points = 4 curves x metric_history_points; the sweeps used the spec default "
             f"{res['metric_history_points']})")


# ----------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100, help="trials (seeds 0..N-1), default 100")
    ap.add_argument("--quick", action="store_true", help="10 trials, 3 replayed trials (smoke test)")
    ap.add_argument("--backends", default="sqlite,postgres", help="comma list of sqlite, postgres (default both)")
    ap.add_argument("--tracking", default="overlap,serial",
                    help="comma list of overlap, serial: the spec's tracking.overlap true / false (default both)")
    ap.add_argument("--reps", type=int, default=1, help="sweeps per backend and tracking mode (default 1; the table "
                    "shows medians)")
    ap.add_argument("--serial-reps", type=int, default=1,
                    help="serial loops at the start (default 1); one more runs right before every sweep")
    ap.add_argument("--replay", type=int, default=None, help="trials in the tracking replay (default 10; --quick 3; 0: off)")
    ap.add_argument("--wait-idle", type=float, default=0.0, help="seconds of idle machine to wait for before each phase")
    ap.add_argument("--wait-idle-max", type=float, default=1800.0, help="give up waiting after this many seconds")
    ap.add_argument("--sweep-timeout", type=float, default=1800.0, help="seconds before a sweep is stopped (default 1800)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (stores, logs, Tune state)")
    ap.add_argument("--out", help="write all measurements to this JSON file")
    ap.add_argument("--iterations", default=str(DEFAULT_T),
                    help=f"comma list of the trials' iteration counts T (default {DEFAULT_T} = F.1); each T gets its "
                    "own serial baseline, its sweeps run side by side with the others' in every repetition")
    ap.add_argument("--ray", default="local", help="comma list of local (metasweep starts an embedded Ray, default) "
                    "and head (the sweeps join a local Ray head with 2 CPUs started before them by cluster/harness.py)")
    ap.add_argument("--code", default=None, help="comma list of checkout folders whose code the sweeps run "
                    "(PYTHONPATH=DIR), side by side, e.g. git worktrees of two commits (default: this checkout)")
    args = ap.parse_args(argv)
    n = 10 if args.quick else args.trials
    if n < 2:
        ap.error("--trials must be >= 2")
    serial_reps = max(1, args.serial_reps)
    replay_n = min(n, 3 if args.quick else 10) if args.replay is None else min(n, args.replay)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgres"):
            ap.error(f"unknown backend {b!r} (sqlite, postgres)")
    modes = [m.strip() for m in args.tracking.split(",") if m.strip()]
    for m in modes:
        if m not in ("overlap", "serial"):
            ap.error(f"unknown tracking mode {m!r} (overlap, serial)")
    try:
        iterations = [int(t) for t in args.iterations.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--iterations: expected a comma list of integers, got {args.iterations!r}")
    if not iterations or min(iterations) < 1 or len(set(iterations)) != len(iterations):
        ap.error(f"--iterations: expected distinct integers >= 1, got {args.iterations!r}")
    rays = [r.strip() for r in args.ray.split(",") if r.strip()]
    if not rays or any(r not in ("local", "head") for r in rays) or len(set(rays)) != len(rays):
        ap.error(f"--ray: expected a comma list of local, head; got {args.ray!r}")
    codes = [os.path.abspath(c.strip()) for c in (args.code or "").split(",") if c.strip()]
    for c in codes:
        if not os.path.isfile(os.path.join(c, "sweeps", "service.py")):
            ap.error(f"--code: {c} is not a metasweep checkout (no sweeps/service.py)")
    if len(set(codes)) != len(codes) or len({os.path.basename(c) for c in codes}) != len(codes):
        ap.error("--code: folders must be distinct and have distinct names")
    if codes and "head" in rays:
        ap.error("--code cannot be combined with --ray head (the head's workers import one folder's code)")
    if "postgres" in backends:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            ap.error("the postgres backend needs psycopg 3: pip install -e '.[postgres]'")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    import logging

    import mlflow  # noqa: F401  (it configures its logger on import: quieten it afterwards)

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Creating initial MLflow database tables" lines
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the replay's runs: no URLs on stdout
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    t_start = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="bsw-", dir="/tmp")  # short path (Ray sockets); reachable by postgres
    os.chmod(workdir, 0o755)
    watch = ProcWatch()
    services = Services(workdir, watch)
    head = RayHead(workdir, watch)
    machine = _machine()
    _log(f"machine: {machine.get('cpu', '?')}, {NCPU} CPUs; python {machine['python']}, numpy {machine['numpy']}, "
         f"numba {machine['numba']}, ray {machine['ray']}, mlflow {machine['mlflow']}, sqlalchemy {machine['sqlalchemy']}, "
         f"psycopg {machine['psycopg']}")
    code = machine["code"]
    _log(f"code: commit {code['commit']}, uncommitted changes: {code['uncommitted_changes']}; service diff "
         f"{code['service_diff_sha1']} {code['service_diff_files']}")
    _log(f"work folder: {workdir}")
    res = {"machine": machine, "trials": n, "quick": args.quick, "cpus": CPUS, "backends": backends,
           "reps": args.reps, "tracking": modes, "iterations": iterations, "ray": rays, "serial": None,
           "code_folders": {os.path.basename(c): {"path": c, "commit": git_at(c)} for c in codes},
           "sweeps": {_sweep_key(b, m, t, r, iterations, os.path.basename(c) if c else None): []
                      for b in backends for t in iterations for r in rays for c in (codes or [None]) for m in modes},
           "serial_by_T": {}, "replay": {}, "services": {},
           "idle_waits": []}

    def wait():
        if args.wait_idle > 0:
            w = watch.wait_idle(args.wait_idle, args.wait_idle_max)
            res["idle_waits"].append(w)

    ok = False
    try:
        seeds = list(range(n))
        spec_text_for = lambda exp, overlap="true", T=iterations[0]: SPEC_TEMPLATE.format(  # noqa: E731
            n=n, experiment=exp, seeds=", ".join(map(str, seeds)), overlap=overlap, T=T)
        serials = {}
        from sweeps.trial import run_trial

        for T in iterations:
            spec, settings, configs = _settings_and_configs(spec_text_for("bench-sweep", T=T), n)
            if T == iterations[0]:
                first_spec = spec
                res["metric_history_points"] = spec.metric_history_points
                _log(f"spec: F.1, {n} seeds, metric_history_points {spec.metric_history_points} (the service's default)")
            # -- warm-up: compile or load the kernels (fills the on-disk cache the Ray workers load)
            t0 = time.perf_counter()
            run_trial(configs[0], settings)
            res.setdefault("warmup_s", time.perf_counter() - t0)
            _log(f"warm-up trial T={T} (Numba cache): {time.perf_counter() - t0:.2f} s")
            serials[T] = Serial(settings, configs, replay_n if T == iterations[0] else 0, watch)
        spec = first_spec
        for c in codes:  # fill each code folder's Numba cache (the sweeps' workers load it)
            for T in iterations:
                t0 = time.perf_counter()
                _warm_folder(c, spec_text_for("bench-sweep", T=T))
                _log(f"warm-up trial T={T} in {c} (subprocess, its Numba cache): {time.perf_counter() - t0:.2f} s")

        # -- serial baseline
        for T in iterations:
            _log(f"\nserial baseline T={T}: {n} trials in this process, {serial_reps} loop(s) now and one before every "
                 "sweep of this T")
            for _ in range(serial_reps):
                wait()
                serials[T].loop("start")
        serial = serials[iterations[0]]
        kept = serial.kept
        address = None
        if "head" in rays:
            _log("\nRay head for --ray head:")
            address = head.start()
            res["services"]["ray_head"] = dict(head.info)

        # -- sweeps
        seq = 0
        for backend in backends:
            _log(f"\nsweeps on {backend}:")
            for rep, T, ray_mode, code, mode in ((r, t, h, c, m) for r in range(args.reps) for t in iterations
                                                 for h in rays for c in (codes or [None]) for m in modes):
                seq += 1
                cname = os.path.basename(code) if code else None
                label = f"{backend}-{mode}-{rep + 1}" \
                    if (T, ray_mode, code) == (DEFAULT_T, "local", None) and iterations == [DEFAULT_T] \
                    else f"{backend}-{mode}-T{T}-{ray_mode}-" + (f"{cname}-" if cname else "") + f"{rep + 1}"
                exp = f"bench-sweep-{label}"
                spec_path = os.path.join(workdir, f"spec-{label}.yaml")
                with open(spec_path, "w") as fh:
                    fh.write(spec_text_for(exp, "true" if mode == "overlap" else "false", T))
                wait()
                serial_s = serials[T].loop(f"before {label}")
                if backend == "sqlite":
                    db = os.path.join(workdir, f"sqlite-{label}", "mlflow.db")
                    os.makedirs(os.path.dirname(db), exist_ok=True)
                    uri = "sqlite:///" + db
                    from tracking.mlflow_runs import client_for

                    t0 = time.perf_counter()
                    client_for(uri).search_experiments(max_results=1)  # create the tables once, untimed
                    res["services"].setdefault("sqlite_store_create_s", []).append(time.perf_counter() - t0)
                    query_uri = uri
                else:
                    uri = services.start_postgres_mlflow(label)
                    res["services"].setdefault("postgres", []).append(dict(services.info))
                    query_uri = uri
                try:
                    run = run_sweep(label, spec_path, uri, workdir, n, watch, args.sweep_timeout,
                                    address=address if ray_mode == "head" else None, ray_tmp_name=f"r{seq}",
                                    code=code or ROOT) \
                        | {"tracking": mode, "iterations": T}
                    a = analyse_sweep(run, query_uri, n, serial_s)
                    res["sweeps"][_sweep_key(backend, mode, T, ray_mode, iterations, cname)].append(a)
                    _log(f"  {label}: command {a['wall_s']:.2f} s, fit {a['fit_s']:.2f} s, efficiency "
                         f"{a['efficiency_wall']:.2f} (wall) / {a['efficiency_fit']:.2f} (fit), tracking median "
                         f"{a['tracking_median_s'] * 1e3:.0f} ms, waited for {_ms(a['wait_median_s'])} ms "
                         f"({100 * a['wait_share_of_fit']:.1f}% of 2 x fit), {a['children_finished']}/{n} children FINISHED, "
                         f"parent {a['parent_status']}, other load {100 * a['load']['other_share']:.1f}%")
                    if not a["all_finished"]:
                        _log(f"  WARNING: only {a['children_finished']} of {n} child runs FINISHED")
                    if rep == 0 and mode == modes[0] and T == iterations[0] and ray_mode == rays[0] and replay_n \
                            and code == (codes or [None])[0]:
                        alt = REPLAY_OTHER_POINTS[0] if spec.metric_history_points != REPLAY_OTHER_POINTS[0] \
                            else REPLAY_OTHER_POINTS[1]
                        for points in (spec.metric_history_points, alt):
                            rp = tracking_replay(query_uri, run["summary"]["experiment_id"], kept, spec, points)
                            res["replay"][f"{backend}, {points} points"] = rp
                            _log(f"  tracking replay ({replay_n} trials, metric_history_points {points}): log_trial "
                                 f"median {rp['log_trial_median_ms']:.0f} ms, all MLflow work of a trial "
                                 f"{rp['total_median_ms']:.0f} ms")
                finally:
                    if backend == "postgres":
                        res["services"].setdefault("stopped", []).append(services.close())
        # efficiency against the median of all serial loops of its T (each sweep also keeps the loop just before it)
        res["serial"] = serial.result()
        res["serial_by_T"] = {T: serials[T].result() for T in iterations}
        for rs in res["sweeps"].values():
            for a in rs:
                base = res["serial_by_T"][a["iterations"]]["median_loop_s"]
                a["efficiency_wall"] = base / (CPUS * a["wall_s"])
                a["efficiency_fit"] = base / (CPUS * a["fit_s"])
        ok = True
    finally:
        head_stopped = head.close()
        if head_stopped:
            res["services"]["ray_head_stopped"] = head_stopped
        stopped = services.close()
        if stopped:
            res["services"].setdefault("stopped", []).append(stopped)
        left = watch.stop_leftovers()
        if left:
            _log(f"stopped leftover processes: {left}")
        res["benchmark_wall_s"] = time.perf_counter() - t_start
        res["code_at_end"] = _code_version()
        if ok:
            print_report(res)
            _log(f"\nbenchmark wall time: {res['benchmark_wall_s']:.0f} s")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(res, fh, indent=1, default=str)
            _log(f"wrote {args.out}")
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _log(f"kept the work folder {workdir}")


if __name__ == "__main__":
    main()
