"""Benchmark: sweep throughput on one Ray node vs two local Ray nodes with the same total CPUs, side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cluster.py [--trials N] [--reps R] [--cpus C]
        [--spec FILE] [--out FILE.json] [--quick]

Results and their reading: docs/scaling.md. Needs ``.venv/bin/pip install -e '.[postgres]'``.

Options:

``--trials N``  trials per sweep (default 100): the configuration of ``--spec`` with ``seed`` as a grid
                0..N-1 (every other search-space key fixed to its first value).
``--reps R``    sweeps per topology (default 3); the two topologies alternate (A B, B A, A B, ...)
                so that drift of the machine's speed hits both alike; medians are reported.
``--cpus C``    total logical CPUs of each topology (default 2; even): one node of C CPUs vs two
                nodes of C/2 each.
``--spec FILE`` the shipped spec whose configuration is measured (default sweeps/specs/paper-fig2.yaml:
                K = 10, H = 10, T = 1000, metric_history_points 200, resources.cpus 1).
``--history-points P``  override the spec's ``tracking.metric_history_points`` (points per step metric).
``--out FILE``  also write every figure as JSON.
``--quick``     20 trials, 1 rep (a smoke run of the benchmark itself, ~1.5 min).

What runs: one PostgreSQL (``cluster/postgres.py``) and one MLflow server on it
(``cluster/mlflow_server.py``) for the whole benchmark, then per sweep a fresh Ray cluster from
``cluster/harness.py up --no-tracking`` (A: ``--workers 0 --head-cpus C``; B: ``--workers 1
--head-cpus C/2 --worker-cpus C/2``), ``metasweep run SPEC --address 127.0.0.1:P --tracking-uri URL``
as a subprocess (its own working directory), and ``harness.py down``. Cluster start and stop are not
timed. Per sweep:

- wall: the ``metasweep run`` command, process start to exit (includes Ray driver connection,
  experiment and parent run creation, Tune start-up and shutdown);
- fit: the parent MLflow run's span (created just before the Tuner, ended right after ``fit()``);
- throughput = N / fit (trials per second) and N / wall;
- per trial, from the child runs: ``time/trial_s`` (compute), ``time/tracking_s`` (log_trial);
- CPU seconds during the sweep: the driver (``os.wait4`` rusage of the metasweep process, which is
  where Tune's controller runs; ``driver_fit``: its CPU within the fit span only, sampled from
  /proc every 0.25 s, i.e. without imports, Ray connection and shutdown), the Ray processes of the cluster (the nodes' process groups incl.
  reaped workers; split into worker processes and Ray system processes), the MLflow server and
  PostgreSQL (their process trees, reaped children included), each also per trial;
- other load: CPU time of processes that are not ours (or steal) during the sweep, as a share of the
  machine (from /proc/stat minus our processes' CPU time).

Ratios (two nodes / one node) are of the medians. Everything started is stopped by PID (the
scripts' ``stop``/``down``), also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, cpu_model, dirty, git  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
HARNESS = os.path.join(ROOT, "cluster", "harness.py")
POSTGRES = os.path.join(ROOT, "cluster", "postgres.py")
MLFLOW_SERVER = os.path.join(ROOT, "cluster", "mlflow_server.py")
METASWEEP = os.path.join(os.path.dirname(sys.executable), "metasweep")
STATE_ROOT = os.path.join(ROOT, ".state", "b")  # short: Ray's Unix socket paths live below it


class BenchError(RuntimeError):
    pass


def _log(msg: str = "") -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- /proc accounting


def _stat(pid: int):
    """(state, ppid, pgrp, own cpu s, reaped children's cpu s) of ``pid`` or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            s = fh.read()
    except OSError:
        return None
    f = s[s.rfind(")") + 2:].split()
    return f[0], int(f[1]), int(f[2]), (int(f[11]) + int(f[12])) / CLK, (int(f[13]) + int(f[14])) / CLK


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read(300).replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _table() -> dict:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            out[int(name)] = st
    return out


def _tree(table: dict, roots) -> set:
    children: dict[int, list] = {}
    for pid, st in table.items():
        children.setdefault(st[1], []).append(pid)
    out, todo = set(), [r for r in roots if r in table]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, []))
    return out


def _cpu(table: dict, pids) -> float:
    """Own + reaped-children CPU seconds of ``pids`` (a tree: reaped children are no longer listed)."""
    return sum(table[p][3] + table[p][4] for p in pids if p in table)


def _machine_busy() -> float:
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK  # user nice system irq softirq steal


class Snapshot:
    """Machine busy time and CPU seconds of the MLflow server and PostgreSQL (process trees, reaped
    children included: PostgreSQL's per-connection backends are reaped by the postmaster)."""

    def __init__(self, mlflow_pid, pg_pid):
        t = _table()
        self.busy = _machine_busy()
        self.mlflow = _cpu(t, _tree(t, [pid for pid, st in t.items() if st[2] == mlflow_pid]))
        self.postgres = _cpu(t, _tree(t, [pg_pid]))


class RaySampler(threading.Thread):
    """Own CPU seconds (last seen, sampled every 0.25 s) of every process in the Ray nodes' process
    groups and their descendants while a sweep runs, split into worker processes (``ray::...``, default_worker.py: trials,
    tasks) and Ray's system processes (GCS, raylets, agents, monitors). Own time only, so nothing is
    counted twice; a process that exits loses at most its last 0.25 s."""

    def __init__(self, ray_groups):
        super().__init__(daemon=True)
        self.groups, self.stop = set(ray_groups), threading.Event()
        self.first: dict[tuple, float] = {}
        self.last: dict[tuple, float] = {}
        self.kind: dict[tuple, str] = {}
        self.driver_pid: int | None = None
        self.driver: list[tuple[float, float]] = []  # (epoch s, the driver's CPU s) while it runs
        self._sample(initial=True)

    def _sample(self, initial=False):
        table, start = {}, {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as fh:
                    f = fh.read()
            except OSError:
                continue
            f = f[f.rfind(")") + 2:].split()
            pid = int(name)
            table[pid] = (f[0], int(f[1]), int(f[2]), (int(f[11]) + int(f[12])) / CLK, 0.0)
            start[pid] = int(f[19])
        if self.driver_pid in table:
            self.driver.append((time.time(), table[self.driver_pid][3]))
        # the groups' members and their descendants: Ray workers run in sessions of their own
        for pid in _tree(table, [p for p, st in table.items() if st[2] in self.groups]):
            key = (pid, start[pid])  # pid and start time: a reused PID is another process
            if key not in self.kind:
                cmd = _cmd(pid)
                self.kind[key] = "ray_workers" if cmd.startswith("ray::") or "default_worker.py" in cmd else "ray_system"
                self.first[key] = table[pid][3] if initial else 0.0
            self.last[key] = table[pid][3]

    def run(self):
        while not self.stop.wait(0.25):
            self._sample()

    def driver_cpu_between(self, t0: float, t1: float) -> float | None:
        """The driver's CPU seconds between epoch times t0 and t1 (nearest samples), None if not sampled."""
        inside = [c for t, c in self.driver if t0 <= t <= t1]
        if len(inside) < 2:
            return None
        return inside[-1] - inside[0]

    def totals(self) -> dict:
        self._sample()
        out = {"ray_workers": 0.0, "ray_system": 0.0}
        for key, cpu in self.last.items():
            out[self.kind[key]] += cpu - self.first[key]
        return out


# ----------------------------------------------------------------------------- services and sweeps


def _script(path: str, *args, timeout: float = 300) -> dict:
    proc = subprocess.run([sys.executable, path, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"{os.path.basename(path)} {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec_text(path: str, n: int, experiment: str, history_points: int | None = None) -> str:
    import yaml

    with open(path) as fh:
        spec = yaml.safe_load(fh)
    space = {}
    for k, v in spec["search_space"].items():
        if isinstance(v, dict) and "grid" in v:
            v = v["grid"][0]
        space[k] = v
    space["seed"] = {"grid": list(range(n))}
    spec["search_space"] = space
    spec["experiment"] = experiment
    spec.pop("stopper", None)
    if history_points is not None:
        spec.setdefault("tracking", {})["metric_history_points"] = history_points
    return yaml.safe_dump(spec, sort_keys=False)


def run_sweep(label: str, topology: dict, spec_text: str, n: int, tracking: dict, workdir: str) -> dict:
    state = os.path.join(STATE_ROOT, f"{label}")
    up = _script(HARNESS, "up", "--state-dir", state, "--no-tracking", *topology["args"], timeout=300)
    try:
        groups = [node["pid"] for node in up["nodes"]]
        cwd = os.path.join(workdir, label)
        os.makedirs(cwd)
        with open(os.path.join(cwd, "spec.yaml"), "w") as fh:
            fh.write(spec_text)
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
        env.update(up["env"])
        before = Snapshot(tracking["mlflow_pid"], tracking["pg_pid"])
        sampler = RaySampler(groups)
        sampler.start()
        t0 = time.perf_counter()
        with open(os.path.join(cwd, "stdout"), "w") as out, open(os.path.join(cwd, "stderr"), "w") as err:
            proc = subprocess.Popen([METASWEEP, "run", "spec.yaml", "--address", up["address"], "--tracking-uri",
                                     tracking["url"]], cwd=cwd, env=env, stdout=out, stderr=err)
            sampler.driver_pid = proc.pid
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        ray_cpu = sampler.totals()
        after = Snapshot(tracking["mlflow_pid"], tracking["pg_pid"])
        if proc.returncode != 0:
            raise BenchError(f"sweep {label} exited {proc.returncode}: {open(os.path.join(cwd, 'stderr')).read()[-2000:]}")
    finally:
        _script(HARNESS, "down", "--state-dir", state, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
    driver = ru.ru_utime + ru.ru_stime
    cpu = {"driver": driver, **ray_cpu, "mlflow": after.mlflow - before.mlflow, "postgres": after.postgres - before.postgres}
    ours = sum(cpu.values())  # (driver_fit, added later, is a part of driver)
    machine = after.busy - before.busy
    return {"label": label, "wall_s": wall, "cpu_s": cpu, "sampler": sampler, "other_load": max(0.0, machine - ours) / (wall * os.cpu_count()),
            "nodes": len(groups)}


def analyse(run: dict, client, experiment: str, n: int) -> dict:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    parent = next(r for r in runs if r.data.tags.get("metasweep.role") == "sweep")
    children = [r for r in runs if r.data.tags.get("metasweep.role") == "trial"]
    finished = [c for c in children if c.info.status == "FINISHED"]
    if len(finished) != n or parent.info.status != "FINISHED":
        raise BenchError(f"{run['label']}: {len(finished)}/{n} child runs FINISHED, parent {parent.info.status}")
    fit = (parent.info.end_time - parent.info.start_time) / 1e3
    med = lambda xs: statistics.median(xs)  # noqa: E731
    nodes = {c.data.tags.get("metasweep.node_id") for c in children}
    sampler = run.pop("sampler")
    fit_driver = sampler.driver_cpu_between(parent.info.start_time / 1e3, parent.info.end_time / 1e3)
    run["cpu_s"]["driver_fit"] = fit_driver if fit_driver is not None else float("nan")
    return run | {
        "fit_s": fit, "trials_per_s_fit": n / fit, "trials_per_s_wall": n / run["wall_s"],
        "trial_compute_median_s": med([c.data.metrics["time/trial_s"] for c in children]),
        "tracking_median_s": med([c.data.metrics["time/tracking_s"] for c in children]),
        "nodes_used": len(nodes), "cluster_nodes": int(parent.data.tags["metasweep.cluster_nodes"]),
        "cpu_per_trial_ms": {k: 1e3 * v / n for k, v in run["cpu_s"].items()},
    }


# ----------------------------------------------------------------------------- report


def report(res: dict) -> None:
    _log()
    _log(f"{res['trials']} trials of {os.path.relpath(res['spec'], ROOT)} per sweep, {res['reps']} reps per topology, "
         f"{res['cpus']} CPUs each, metric_history_points {res['history_points'] or 'of the spec'}; commit {res['commit'][:10]}{' (dirty)' if res['dirty'] else ''}")
    _log(f"{'topology':<22}{'wall s':>9}{'fit s':>9}{'trials/s':>10}{'compute ms':>12}{'log ms':>9}"
         f"{'worker ms':>11}{'driver ms':>11}{'drv fit ms':>11}{'mlflow ms':>11}{'pg ms':>8}{'raysys ms':>11}{'other':>8}")
    for key, name in (("one", f"1 node x {res['cpus']} CPU"), ("two", f"2 nodes x {res['cpus'] // 2} CPU")):
        m = res["medians"][key]
        _log(f"{name:<22}{m['wall_s']:>9.2f}{m['fit_s']:>9.2f}{m['trials_per_s_fit']:>10.2f}"
             f"{1e3 * m['trial_compute_median_s']:>12.1f}{1e3 * m['tracking_median_s']:>9.1f}"
             f"{m['cpu_per_trial_ms']['ray_workers']:>11.1f}{m['cpu_per_trial_ms']['driver']:>11.1f}"
             f"{m['cpu_per_trial_ms']['driver_fit']:>11.1f}{m['cpu_per_trial_ms']['mlflow']:>11.1f}"
             f"{m['cpu_per_trial_ms']['postgres']:>8.1f}{m['cpu_per_trial_ms']['ray_system']:>11.1f}"
             f"{100 * m['other_load']:>7.0f}%")
    r = res["ratios"]
    _log(f"two nodes / one node (medians): throughput (fit) {r['trials_per_s_fit']:.3f}, wall {r['wall_s']:.3f}, "
         f"compute per trial {r['trial_compute_median_s']:.3f}, log_trial {r['tracking_median_s']:.3f}, "
         f"Ray system CPU per trial {r['ray_system_cpu']:.2f}")
    _log("per-sweep figures (label: wall s, fit s, trials/s, other load): " + "; ".join(
        f"{x['label']}: {x['wall_s']:.1f}, {x['fit_s']:.1f}, {x['trials_per_s_fit']:.2f}, {100 * x['other_load']:.0f}%"
        for x in res["sweeps"]))


def _median_of(runs: list) -> dict:
    keys = ("wall_s", "fit_s", "trials_per_s_fit", "trials_per_s_wall", "trial_compute_median_s", "tracking_median_s",
            "other_load")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["cpu_per_trial_ms"] = {k: statistics.median(r["cpu_per_trial_ms"][k] for r in runs) for k in runs[0]["cpu_per_trial_ms"]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100, help="trials per sweep (default 100)")
    ap.add_argument("--reps", type=int, default=3, help="sweeps per topology (default 3)")
    ap.add_argument("--cpus", type=int, default=2, help="total CPUs of each topology, even (default 2)")
    ap.add_argument("--spec", default=os.path.join(ROOT, "sweeps", "specs", "paper-fig2.yaml"), help="shipped spec")
    ap.add_argument("--history-points", type=int, help="override the spec's tracking.metric_history_points")
    ap.add_argument("--out", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="20 trials, 1 rep")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.reps = 20, 1
    if args.trials < 2 or args.reps < 1 or args.cpus < 2 or args.cpus % 2:
        ap.error("--trials >= 2, --reps >= 1, --cpus even and >= 2")
    if not os.path.isfile(args.spec):
        ap.error(f"no spec {args.spec}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        ap.error("needs psycopg: .venv/bin/pip install -e '.[postgres]'")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    topologies = {"one": {"args": ["--workers", 0, "--head-cpus", args.cpus]},
                  "two": {"args": ["--workers", 1, "--head-cpus", args.cpus // 2, "--worker-cpus", args.cpus // 2]}}
    os.makedirs(STATE_ROOT, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="bench-cluster-")
    pg_dir, ml_dir = os.path.join(STATE_ROOT, "pg"), os.path.join(STATE_ROOT, "mlflow")
    results, started = [], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        pg = _script(POSTGRES, "start", "--state-dir", pg_dir, "--port", _free_port())
        srv = _script(MLFLOW_SERVER, "start", "--state-dir", ml_dir, "--port", _free_port(), "--backend-store-uri",
                      pg["uri"], "--timeout", 120)
        tracking = {"url": srv["url"], "mlflow_pid": srv["pid"], "pg_pid": pg["pid"]}
        client = MlflowClient(tracking_uri=srv["url"])
        _log(f"PostgreSQL pid {pg['pid']}, MLflow server {srv['url']} (pid {srv['pid']})")
        tag = time.strftime("%H%M%S")
        for rep in range(args.reps):
            order = ("one", "two") if rep % 2 == 0 else ("two", "one")
            for key in order:
                label = f"{key}{rep}"
                exp = f"bench-cluster-{tag}-{label}"
                run = run_sweep(label, topologies[key], _spec_text(args.spec, args.trials, exp, args.history_points), args.trials, tracking, workdir)
                run = analyse(run, client, exp, args.trials) | {"topology": key}
                results.append(run)
                _log(f"  {label}: wall {run['wall_s']:.1f} s, fit {run['fit_s']:.1f} s, {run['trials_per_s_fit']:.2f} trials/s, "
                     f"nodes used {run['nodes_used']}/{run['cluster_nodes']}, other load {100 * run['other_load']:.0f}%")
    finally:
        for path, d in ((MLFLOW_SERVER, ml_dir), (POSTGRES, pg_dir)):
            try:
                _script(path, "stop", "--state-dir", d)
            except Exception as exc:  # keep stopping the rest
                _log(f"stop {os.path.basename(path)}: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(STATE_ROOT, ignore_errors=True)
    med = {k: _median_of([r for r in results if r["topology"] == k]) for k in ("one", "two")}
    ratios = {k: med["two"][k] / med["one"][k] for k in ("trials_per_s_fit", "wall_s", "trial_compute_median_s", "tracking_median_s")}
    ratios["ray_system_cpu"] = med["two"]["cpu_per_trial_ms"]["ray_system"] / med["one"]["cpu_per_trial_ms"]["ray_system"]
    res = {"history_points": args.history_points, "trials": args.trials, "reps": args.reps, "cpus": args.cpus, "spec": os.path.abspath(args.spec),
           "commit": git("rev-parse", "HEAD") or "unknown", "dirty": dirty("sweeps") or dirty("tracking") or dirty("cluster"),
           "cpu_model": cpu_model(), "machine_cpus": os.cpu_count(), "python": platform.python_version(),
           "started": started, "sweeps": results, "medians": med, "ratios": ratios}
    report(res)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
