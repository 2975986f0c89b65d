#!/usr/bin/env python
"""A local multi-node cluster on 127.0.0.1: Ray head + N Ray worker nodes, PostgreSQL, MLflow server.

The same topology as ``docker-compose.yml`` (and the cluster launcher / KubeRay manifests), on one
machine, from separate processes; used by ``tests/test_cluster.py``, ``benchmarks/bench_cluster.py``
and ``make cluster-up`` / ``make cluster-down``::

    python cluster/harness.py up     [--state-dir DIR] [--workers N] [--head-cpus C] [--worker-cpus C]
                                     [--object-store-mb M] [--no-tracking] [--ray-auth disabled|token] [--timeout S]
    python cluster/harness.py status [--state-dir DIR]
    python cluster/harness.py down   [--state-dir DIR] [--timeout S]

Options (every command):

``--state-dir DIR``  where everything lives (default ``.state/cluster`` in the checkout, git-ignored):
                     ``cluster.json`` (what ``up`` started: addresses, PIDs and their start times),
                     ``ray/`` (Ray's temp dir: sessions, logs, sockets; a link to ``/tmp/msray-<hash>`` when DIR/ray is too long for Ray's socket paths), ``ray-head.log``,
                     ``ray-worker-I.log``, ``postgres/`` (``cluster/postgres.py``), ``mlflow/``
                     (``cluster/mlflow_server.py``: log, served artifacts).
``--workers N``      worker nodes besides the head (default 1; 0 = head only).
``--head-cpus C``    logical CPUs the head node offers to Ray (default 1; 0 = a head that runs no
                     trials, like a production head node).
``--worker-cpus C``  logical CPUs of each worker node (default 1).
``--object-store-mb M``  object store per node, MiB (default 200; Ray's minimum is 75).
``--no-tracking``    Ray only: no PostgreSQL and no MLflow server.
``--ray-auth MODE``  ``disabled`` (default) or ``token``: Ray's token authentication, with a random
                     token generated once in ``DIR/ray_auth_token`` (mode 600) and passed to every
                     Ray process as ``RAY_AUTH_TOKEN_PATH`` (the set-up of docker-compose.yml, on
                     loopback). A driver needs the ``env`` that ``up`` prints.
``--timeout S``      ``up``: seconds to wait for each component (default 120); ``down``: seconds
                     between SIGTERM and SIGKILL of each Ray node (default 5).

``up`` starts, in this order: PostgreSQL on a free port (``cluster/postgres.py``; installs the
distribution's package when missing, runs as the ``postgres`` user when started by root), the
MLflow server on it (``cluster/mlflow_server.py``: one worker, ``--serve-artifacts``, artifacts in
``DIR/mlflow/artifacts``), the Ray head (``ray start --head --block``) and the worker nodes (``ray
start --address=HEAD --block``), each Ray node in its own session (process group) and with every
port it opens chosen free beforehand (GCS, dashboard, client server, node manager, object
manager, dashboard agent, metrics, runtime-env agent), all on 127.0.0.1, no dashboard UI.
Every Ray process gets an explicit ``RAY_AUTH_MODE`` (``../shared/design/STACK.md``: an explicit
mode in every process that starts or joins a cluster), ``disabled`` unless ``--ray-auth token``.
It prints one JSON line: ``{"address": "127.0.0.1:P", "tracking_uri": "http://127.0.0.1:M",
"env": {...}, "nodes": [...], ...}``; each node's entry has its Ray ``node_id`` (``up`` waits until
the GCS lists it alive); then ``metasweep run SPEC --address 127.0.0.1:P --tracking-uri
http://127.0.0.1:M`` with ``env`` in its environment (``RAY_AUTH_MODE=disabled`` by default) runs
a sweep on it. If any component fails, what was already started is stopped again; exit 1 with one
line ``harness: error: ...``.

``down`` stops the Ray worker nodes, then the head: SIGTERM to each node's process group, SIGKILL
of what is left once only ``ray start`` remains or after ``--timeout``, then SIGKILL of any
descendant still running (Ray workers run in sessions of their own); only a PID whose start time,
command line and working directory match what ``up`` recorded is signalled. Then the MLflow server
and PostgreSQL, by their scripts (by PID). ``status`` prints one
JSON line and exits 0 if everything ``up`` started is alive, 1 otherwise. Bad arguments: one line
``harness: error: ...``, exit 2, nothing started.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import mlflow_server  # noqa: E402  (cluster/mlflow_server.py)
import postgres  # noqa: E402  (cluster/postgres.py)

HOST = "127.0.0.1"
INFO_FILE = "cluster.json"
DEFAULT_STATE = os.path.join(REPO, ".state", "cluster")
#: Unix socket paths must stay below 108 bytes: DIR/ray + "/session_2026-11-24_14-49-23_104758_12120"
#: + "/sockets/plasma_store.1" (≈ 71 bytes) leaves 36 for DIR/ray.
MAX_RAY_TMP = 36
#: Environment of every Ray process the harness starts (and what a driver needs to join).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
           # trials run in processes of these nodes: their stdout is forwarded to the driver's
           "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class HarnessError(Exception):
    """One clear line for the user; exit status 1."""


# ----------------------------------------------------------------------------- processes


def _stat(pid: int):
    """(state, pgrp, start time in ticks) of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            s = fh.read()
    except OSError:
        return None
    f = s[s.rfind(")") + 2:].split()
    return f[0], int(f[2]), int(f[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group(pgid: int) -> list[int]:
    """Live (non-zombie) members of process group ``pgid``."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st and st[0] != "Z" and st[1] == pgid:
                out.append(int(name))
    return out


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _ours(node: dict) -> bool:
    """The recorded ``ray start`` process is still the one ``up`` started: same PID, start time,
    command and working directory (``up`` starts every node in the state folder)."""
    st = _stat(node["pid"])
    return bool(st and st[0] != "Z" and st[2] == node["start_time"] and "ray start" in _cmdline(node["pid"])
                and _cwd(node["pid"]) == node["cwd"])


def _node_alive(node: dict) -> bool:
    return _ours(node) or bool(_group(node["pid"]))


def _descendants(pids) -> dict:
    """{pid: start time} of the live descendants of ``pids`` (Ray workers run in sessions of their own,
    outside the node's process group, but are children of its raylet)."""
    children: dict[int, list[int]] = {}
    starts = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    s = fh.read()
            except OSError:
                continue
            f = s[s.rfind(")") + 2:].split()
            if f[0] != "Z":
                children.setdefault(int(f[1]), []).append(int(name))
                starts[int(name)] = int(f[19])
    out, todo = {}, list(pids)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out[c] = starts[c]
                todo.append(c)
    return out


def _kill_if_same(procs: dict) -> None:
    """SIGKILL each {pid: start time} that is still the same process."""
    for pid, start in procs.items():
        st = _stat(pid)
        if st and st[0] != "Z" and st[2] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stop_node(node: dict, timeout: float) -> str:
    """Stop one node: SIGTERM its process group, and once everything but the ``ray start`` process
    has exited (or after ``timeout`` s) SIGKILL what is left, then any descendant (Ray workers live in
    their own sessions) still running. Only a group led by the PID ``up`` recorded is signalled.

    ``ray start --block`` itself drains for up to 30 s after SIGTERM while its children (GCS,
    raylet, agents) exit at once; it only monitors them, so it is killed as soon as they are gone.
    """
    pgid = node["pid"]
    if not _ours(node):
        # the leader is gone (or the PID was reused): signal only members whose command line is Ray's
        left = [p for p in _group(pgid) if "ray" in _cmdline(p) and _cwd(p) == node["cwd"]]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return "killed leftovers" if left else "not running"
    tree = _descendants([pgid])
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    how = "terminated"
    deadline = time.monotonic() + timeout
    while [p for p in _group(pgid) if p != pgid] and time.monotonic() < deadline:
        time.sleep(0.1)
    if [p for p in _group(pgid) if p != pgid]:
        how = "killed"
    if _group(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _kill_if_same(tree)
    return how


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports on 127.0.0.1 that were free a moment ago (the OS picks them)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _tail(path: str, lines: int = 12) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def _has_ray_client() -> bool:
    """Whether ``ray[client]`` (grpcio) is installed: the head then serves ``ray://`` too."""
    import importlib.util

    return importlib.util.find_spec("grpc") is not None


def ray_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


# ----------------------------------------------------------------------------- Ray nodes


def gcs_nodes(address: str, env: dict, timeout: float = 10.0) -> dict:
    """Alive nodes registered in the GCS at ``address``: {node manager port: node id (hex)}.

    Uses Ray's GCS client (``ray._raylet.GcsClient``, internal but stable since Ray 2.7; ≈ 0.5 s,
    no driver, no session): it tells which node ``up`` just started, by the node manager port the
    harness chose for it.
    """
    os.environ.update(env)  # an explicit auth mode (and token) before Ray is imported (STACK.md)
    from ray._raylet import GcsClient

    out = {}
    for node_id, info in GcsClient(address=address).get_all_node_info(timeout=timeout).items():
        if info.state == 0:  # GcsNodeInfo.ALIVE
            out[int(info.node_manager_port)] = node_id.hex()
    return out


def _start_node(p: dict, role: str, index: int, cpus: int, object_store_mb: int, head_port: int | None,
                timeout: float, ray_env: dict) -> dict:
    """Start one ``ray start --block`` node in its own session; wait until it reports it is running."""
    node_manager, object_manager, agent, metrics, runtime_env = _free_ports(5)
    cmd = [ray_bin(), "start", "--block", "--disable-usage-stats", f"--node-ip-address={HOST}", f"--num-cpus={cpus}",
           "--num-gpus=0", f"--object-store-memory={object_store_mb * 1024 * 1024}",
           f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
           f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}",
           f"--runtime-env-agent-port={runtime_env}"]
    if role == "head":
        gcs, dashboard, client = _free_ports(3)
        cmd += ["--head", f"--port={gcs}", "--include-dashboard=false", f"--dashboard-port={dashboard}",
                f"--temp-dir={p['ray_tmp']}"]
        if _has_ray_client():
            cmd.append(f"--ray-client-server-port={client}")
        else:
            client = None
        log_path = os.path.join(p["dir"], "ray-head.log")
    else:
        gcs = client = None
        cmd += [f"--address={HOST}:{head_port}"]
        log_path = os.path.join(p["dir"], f"ray-worker-{index}.log")
    env = dict(os.environ, **ray_env)
    env.pop("RAY_ADDRESS", None)
    with open(log_path, "ab") as log:
        start_offset = log.tell()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=p["dir"], start_new_session=True)
    st = _stat(proc.pid)
    node = {"role": role, "index": index, "pid": proc.pid, "start_time": st[2] if st else None, "cpus": cpus,
            "log": log_path, "cwd": p["dir"]}
    if gcs is not None:
        node |= {"gcs_port": gcs, "client_port": client}
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _stop_node(node, 2)
            raise HarnessError(f"ray start ({role} {index}) exited with status {proc.returncode}; log {log_path}:\n"
                               f"{_tail(log_path)}")
        with open(log_path, "rb") as fh:
            fh.seek(start_offset)
            started = b"Ray runtime started" in fh.read()
        if started and (gcs is None or _port_open(gcs)):
            try:
                node_id = gcs_nodes(f"{HOST}:{gcs or head_port}", ray_env).get(node_manager)
            except Exception:  # the GCS is not answering yet
                node_id = None
            if node_id:
                return node | {"node_id": node_id, "node_manager_port": node_manager}
        if time.monotonic() > deadline:
            _stop_node(node, 2)
            raise HarnessError(f"ray start ({role} {index}) not running within {timeout:g} s (stopped); log {log_path}:\n"
                               f"{_tail(log_path)}")
        time.sleep(0.2)


# ----------------------------------------------------------------------------- commands


def _ray_tmp(d: str) -> str:
    """Ray's temp dir for state dir ``d``: ``d/ray``, or, when that is too long for Ray's Unix socket paths
    (deep checkouts), ``/tmp/msray-<hash of d>``, which ``up`` links from ``d/ray``."""
    own = os.path.join(d, "ray")
    if len(own) <= MAX_RAY_TMP:
        return own
    return os.path.join("/tmp", "msray-" + hashlib.sha1(d.encode()).hexdigest()[:12])


def _paths(state_dir: str) -> dict:
    d = os.path.abspath(state_dir)
    return {"dir": d, "info": os.path.join(d, INFO_FILE), "ray_tmp": _ray_tmp(d), "ray_link": os.path.join(d, "ray"),
            "postgres": os.path.join(d, "postgres"), "mlflow": os.path.join(d, "mlflow"),
            "token": os.path.join(d, "ray_auth_token")}


def _read_info(p: dict) -> dict | None:
    try:
        with open(p["info"]) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_info(p: dict, info: dict) -> None:
    tmp = p["info"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(info, fh, indent=1)
    os.replace(tmp, p["info"])


def check_args(state_dir: str, workers: int, head_cpus: int, worker_cpus: int, object_store_mb: int, timeout: float,
               tracking: bool) -> dict:
    """Every check that needs no process: raises HarnessError (exit 2) before anything starts."""
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    if head_cpus < 0:
        raise ValueError(f"--head-cpus must be >= 0, got {head_cpus}")
    if worker_cpus < 1:
        raise ValueError(f"--worker-cpus must be >= 1, got {worker_cpus}")
    if head_cpus + workers * worker_cpus < 1:
        raise ValueError("the cluster would have no CPU for any trial (--head-cpus 0 and --workers 0)")
    if object_store_mb < 75:
        raise ValueError(f"--object-store-mb must be >= 75 (Ray's minimum), got {object_store_mb}")
    if not timeout > 0:
        raise ValueError(f"--timeout must be > 0, got {timeout}")
    p = _paths(state_dir)
    if os.path.exists(p["dir"]) and not os.path.isdir(p["dir"]):
        raise ValueError(f"--state-dir {p['dir']} exists and is not a folder")
    if not os.path.isfile(ray_bin()):
        raise ValueError(f"no ray executable beside this interpreter ({ray_bin()}): run the harness with the project's .venv")
    if tracking:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ValueError("PostgreSQL needs psycopg 3 in this environment: .venv/bin/pip install -e '.[postgres]' "
                             "(or pass --no-tracking)") from None
    return p


def ray_env(p: dict, auth: str) -> dict:
    """Environment of the cluster's Ray processes and of any driver that joins it (``up`` prints it)."""
    env = dict(RAY_ENV)
    if auth == "token":
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": p["token"]}
    return env


def _write_token(path: str) -> None:
    """A random token, mode 600, kept across ``up``s of the same state folder."""
    if os.path.isfile(path):
        return
    import secrets

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def up(state_dir: str, workers: int = 1, head_cpus: int = 1, worker_cpus: int = 1, object_store_mb: int = 200,
       tracking: bool = True, timeout: float = 120.0, auth: str = "disabled") -> dict:
    p = check_args(state_dir, workers, head_cpus, worker_cpus, object_store_mb, timeout, tracking)
    old = _read_info(p)
    if old is not None and any(_node_alive(n) for n in old.get("nodes", [])):
        raise HarnessError(f"a cluster from {p['dir']} is already running; `harness.py down --state-dir {p['dir']}` first")
    os.makedirs(p["dir"], exist_ok=True)
    os.chmod(p["dir"], 0o755)  # PostgreSQL runs as its own user and must reach DIR/postgres
    info = {"state_dir": p["dir"], "address": None, "tracking_uri": None, "nodes": [], "postgres": None,
            "mlflow": None, "env": ray_env(p, auth), "auth": auth, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t0 = time.monotonic()
    try:
        if tracking:
            for attempt in range(3):  # a free port can be taken between the probe and the bind
                try:
                    pg = postgres.start(p["postgres"], _free_ports(1)[0], timeout=timeout)
                    break
                except postgres.PgError as exc:
                    if "already in use" not in str(exc) or attempt == 2:
                        raise HarnessError(f"PostgreSQL: {exc}") from None
            info["postgres"] = {"pid": pg["pid"], "port": pg["port"], "state_dir": p["postgres"],
                                "info": os.path.join(p["postgres"], postgres.INFO_FILE)}
            _write_info(p, info)
            for attempt in range(3):
                try:
                    srv = mlflow_server.start(p["mlflow"], _free_ports(1)[0], pg["uri"], timeout=timeout)
                    break
                except mlflow_server.ServerError as exc:
                    if "already in use" not in str(exc) or attempt == 2:
                        raise HarnessError(f"MLflow server: {exc}") from None
            info["mlflow"] = {"pid": srv["pid"], "url": srv["url"], "state_dir": p["mlflow"], "artifacts": srv["artifacts"]}
            info["tracking_uri"] = srv["url"]
            _write_info(p, info)
        os.makedirs(p["ray_tmp"], exist_ok=True)
        if p["ray_tmp"] != p["ray_link"] and not os.path.lexists(p["ray_link"]):
            os.symlink(p["ray_tmp"], p["ray_link"])
        if auth == "token":
            _write_token(p["token"])
        head = _start_node(p, "head", 0, head_cpus, object_store_mb, None, timeout, info["env"])
        info["nodes"].append(head)
        info["address"] = f"{HOST}:{head['gcs_port']}"
        info["client_address"] = f"ray://{HOST}:{head['client_port']}" if head["client_port"] else None
        _write_info(p, info)
        for i in range(1, workers + 1):
            info["nodes"].append(_start_node(p, "worker", i, worker_cpus, object_store_mb, head["gcs_port"], timeout,
                                             info["env"]))
            _write_info(p, info)
    except BaseException:
        _down(p, info, 5.0)
        raise
    info["cpus"] = head_cpus + workers * worker_cpus
    info["up_s"] = round(time.monotonic() - t0, 2)
    _write_info(p, info)
    return info


def _down(p: dict, info: dict, timeout: float) -> dict:
    out = {"nodes": []}
    for node in sorted(info.get("nodes", []), key=lambda n: n["role"] == "head"):  # workers first
        out["nodes"].append({"role": node["role"], "index": node["index"], "pid": node["pid"],
                             "how": _stop_node(node, timeout)})
    if info.get("mlflow") or os.path.exists(os.path.join(p["mlflow"], mlflow_server.PID_FILE)):
        out["mlflow"] = mlflow_server.stop(p["mlflow"])
    if info.get("postgres") or os.path.exists(os.path.join(p["postgres"], "data", "postmaster.pid")):
        try:
            out["postgres"] = postgres.stop(p["postgres"])
        except postgres.PgError as exc:
            out["postgres"] = {"stopped": False, "error": str(exc)}
    try:
        os.remove(p["info"])
    except FileNotFoundError:
        pass
    return out


def down(state_dir: str, timeout: float = 5.0) -> dict:
    p = _paths(state_dir)
    info = _read_info(p)
    if info is None:
        info = {}
    out = _down(p, info, timeout)
    # Ray's session folders (logs) are kept for inspection; the socket files are gone with the processes
    out["state_dir"] = p["dir"]
    return out


def status(state_dir: str) -> dict:
    p = _paths(state_dir)
    info = _read_info(p)
    if info is None:
        return {"running": False, "state_dir": p["dir"], "reason": f"no {p['info']}"}
    nodes = [{"role": n["role"], "index": n["index"], "pid": n["pid"], "cpus": n["cpus"], "node_id": n.get("node_id"),
              "alive": _ours(n)} for n in info.get("nodes", [])]
    out = {"state_dir": p["dir"], "address": info.get("address"), "tracking_uri": info.get("tracking_uri"), "nodes": nodes}
    ok = bool(nodes) and all(n["alive"] for n in nodes)
    if info.get("mlflow"):
        out["mlflow"] = mlflow_server.status(p["mlflow"])
        ok = ok and out["mlflow"]["healthy"]
    if info.get("postgres"):
        out["postgres"] = postgres.status(p["postgres"])
        ok = ok and out["postgres"]["ready"]
    out["running"] = ok
    return out


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"harness: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="A local multi-node Ray cluster + PostgreSQL + MLflow server on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    u = sub.add_parser("up", help="start PostgreSQL, the MLflow server, a Ray head and N Ray worker nodes")
    u.add_argument("--state-dir", default=DEFAULT_STATE, help="state folder (default .state/cluster in the checkout)")
    u.add_argument("--workers", type=int, default=1, help="Ray worker nodes besides the head (default 1)")
    u.add_argument("--head-cpus", type=int, default=1, help="logical CPUs of the head node (default 1; 0: no trials on it)")
    u.add_argument("--worker-cpus", type=int, default=1, help="logical CPUs of each worker node (default 1)")
    u.add_argument("--object-store-mb", type=int, default=200, help="object store per node in MiB (default 200, >= 75)")
    u.add_argument("--no-tracking", dest="tracking", action="store_false", help="Ray only: no PostgreSQL, no MLflow server")
    u.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each component (default 120)")
    u.add_argument("--ray-auth", choices=("disabled", "token"), default="disabled",
                   help="Ray authentication: disabled (default) or token (a random token in STATE_DIR/ray_auth_token)")
    d = sub.add_parser("down", help="stop everything `up` started in STATE_DIR, by PID")
    d.add_argument("--state-dir", default=DEFAULT_STATE)
    d.add_argument("--timeout", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL per Ray node (default 5)")
    s = sub.add_parser("status", help="is everything of STATE_DIR alive (exit 0) or not (exit 1)")
    s.add_argument("--state-dir", default=DEFAULT_STATE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            try:
                check_args(args.state_dir, args.workers, args.head_cpus, args.worker_cpus, args.object_store_mb,
                           args.timeout, args.tracking)
            except ValueError as exc:
                print(f"harness: error: {exc}", file=sys.stderr)
                return 2
            out = up(args.state_dir, args.workers, args.head_cpus, args.worker_cpus, args.object_store_mb,
                     args.tracking, args.timeout, args.ray_auth)
        elif args.command == "down":
            if not args.timeout > 0:
                print(f"harness: error: --timeout must be > 0, got {args.timeout}", file=sys.stderr)
                return 2
            out = down(args.state_dir, args.timeout)
        else:
            out = status(args.state_dir)
    except (HarnessError, postgres.PgError, mlflow_server.ServerError, subprocess.TimeoutExpired) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 1 if args.command == "status" and not out["running"] else 0


if __name__ == "__main__":
    sys.exit(main())
