#!/usr/bin/env python
"""Start, stop and inspect a real MLflow tracking server on 127.0.0.1 (stdlib only).

Used by the tests (``tests/conftest.py``) and by hand::

    python cluster/mlflow_server.py start  --state-dir DIR --port P [--backend-store-uri URI] [--timeout S]
    python cluster/mlflow_server.py status --state-dir DIR
    python cluster/mlflow_server.py stop   --state-dir DIR [--timeout S]

``start`` runs the ``mlflow`` console script of the same virtualenv as this interpreter::

    mlflow server --backend-store-uri URI --serve-artifacts --artifacts-destination DIR/artifacts
                  --host 127.0.0.1 --port P --workers 1

in a new session (its own process group, so ``stop`` reaches the uvicorn worker too), with
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (no job runner and huey workers, ≈ 2.5–3 GB) and
``MLFLOW_DISABLE_TELEMETRY=true`` (no writes to ``~/.config/mlflow``); ``--workers 1`` keeps
reused connections at 1–11 ms instead of 40–60 ms (../shared/design/STACK.md). The default
backend is ``sqlite:///DIR/mlflow.db``. A brand-new SQLite store must not be created by several
processes at once: ``mlflow server`` creates the tables in its own process before it starts the
uvicorn worker (its log shows "Creating initial MLflow database tables" before "Started server
process"), and there is a single worker, so no separate creation step is needed.

Files in DIR: ``mlflow.pid`` (the server's PID, which is also its process group id),
``mlflow.json`` (url, pid, port, backend store), ``mlflow.log`` (the server's stdout and stderr),
``artifacts/``. ``start`` waits until ``GET /health`` answers "OK" (``--timeout``, default 60 s);
on timeout or an early exit it kills the server, removes the PID file, prints
``mlflow_server: error: ...`` with the log's tail on stderr and exits 1. On success it prints one
JSON line ``{"url": ..., "pid": ..., ...}``. ``stop`` sends SIGTERM to the process group, then
SIGKILL after ``--timeout`` (default 10 s), and removes the PID file. ``status`` prints one JSON
line and exits 0 if the server answers /health, 1 otherwise. Every command exits 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
PID_FILE = "mlflow.pid"
INFO_FILE = "mlflow.json"
LOG_FILE = "mlflow.log"


class ServerError(Exception):
    """One clear line for the user; exit status 1."""


def mlflow_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "mlflow")


def _paths(state_dir: str) -> dict:
    d = os.path.abspath(state_dir)
    return {"dir": d, "pid": os.path.join(d, PID_FILE), "info": os.path.join(d, INFO_FILE),
            "log": os.path.join(d, LOG_FILE), "artifacts": os.path.join(d, "artifacts")}


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(name))
    return out


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def _is_our_server(pgid: int) -> bool:
    """True if process group ``pgid`` (the PID ``start`` recorded) still holds an MLflow server process.

    Checks the command lines, so a PID reused by an unrelated process is never signalled; looks at
    the whole group, so a uvicorn worker left behind by a killed ``mlflow server`` is still found.
    """
    return any(any(b"mlflow" in a for a in _cmdline(pid)) for pid in _group_members(pgid))


def _health(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as resp:
            return resp.status == 200 and resp.read().strip() == b"OK"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def _kill_group(pgid: int, timeout: float) -> str:
    """SIGTERM the group, wait up to ``timeout`` s, then SIGKILL what is left. Returns how it ended."""
    how = "terminated"
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + timeout
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_members(pgid):
        how = "killed"
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return how


def _remove(*paths: str) -> None:
    for p in paths:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


# ----------------------------------------------------------------------------- commands


def start(state_dir: str, port: int, backend_store_uri: str | None = None, timeout: float = 60.0) -> dict:
    p = _paths(state_dir)
    os.makedirs(p["dir"], exist_ok=True)
    old = _read_pid(p["pid"])
    if old is not None and _is_our_server(old):
        raise ServerError(f"a server from {p['dir']} is already running (pid {old}); stop it first")
    _remove(p["pid"], p["info"])  # stale files of a server that is gone
    if not 1 <= port <= 65535:
        raise ServerError(f"port must be in [1, 65535], got {port}")
    if _port_in_use(port):
        raise ServerError(f"port {port} on {HOST} is already in use")
    uri = backend_store_uri or "sqlite:///" + os.path.join(p["dir"], "mlflow.db")
    url = f"http://{HOST}:{port}"
    cmd = [mlflow_bin(), "server", "--backend-store-uri", uri, "--serve-artifacts", "--artifacts-destination",
           p["artifacts"], "--host", HOST, "--port", str(port), "--workers", "1"]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    with open(p["log"], "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=p["dir"], start_new_session=True)
    with open(p["pid"], "w") as fh:
        fh.write(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _kill_group(proc.pid, 5)
            _remove(p["pid"])
            raise ServerError(f"mlflow server exited with status {proc.returncode} before answering {url}/health; "
                              f"log {p['log']}:\n{_log_tail(p['log'])}")
        if _health(url):
            break
        if time.monotonic() > deadline:
            _kill_group(proc.pid, 5)
            proc.wait()
            _remove(p["pid"])
            raise ServerError(f"mlflow server did not answer {url}/health within {timeout:g} s (killed); "
                              f"log {p['log']}:\n{_log_tail(p['log'])}")
        time.sleep(0.2)
    info = {"url": url, "pid": proc.pid, "port": port, "backend_store_uri": uri, "artifacts": p["artifacts"],
            "log": p["log"]}
    with open(p["info"], "w") as fh:
        json.dump(info, fh)
    return info


def stop(state_dir: str, timeout: float = 10.0) -> dict:
    p = _paths(state_dir)
    pid = _read_pid(p["pid"])
    if pid is None:
        return {"stopped": False, "reason": f"no PID file in {p['dir']}"}
    if not _is_our_server(pid):
        _remove(p["pid"], p["info"])
        return {"stopped": False, "pid": pid, "reason": "not running (stale PID file removed)"}
    how = _kill_group(pid, timeout)
    _remove(p["pid"], p["info"])
    return {"stopped": True, "pid": pid, "how": how}


def status(state_dir: str) -> dict:
    p = _paths(state_dir)
    pid = _read_pid(p["pid"])
    info = {}
    try:
        with open(p["info"]) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        pass
    running = pid is not None and _is_our_server(pid)
    url = info.get("url")
    return {"running": running, "healthy": bool(running and url and _health(url)), "pid": pid, "url": url}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"mlflow_server: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="mlflow_server", description="A local MLflow tracking server on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("start", help="start a server and wait until /health answers")
    s.add_argument("--state-dir", required=True, help="folder of the PID file, log, default database and artifacts")
    s.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    s.add_argument("--backend-store-uri", help="default sqlite:///STATE_DIR/mlflow.db")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for /health (default 60)")
    t = sub.add_parser("stop", help="stop the server of STATE_DIR (SIGTERM its process group, then SIGKILL)")
    t.add_argument("--state-dir", required=True)
    t.add_argument("--timeout", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    u = sub.add_parser("status", help="is the server of STATE_DIR running and healthy (exit 0) or not (exit 1)")
    u.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            out = start(args.state_dir, args.port, args.backend_store_uri, args.timeout)
        elif args.command == "stop":
            out = stop(args.state_dir, args.timeout)
        else:
            out = status(args.state_dir)
    except ServerError as exc:
        print(f"mlflow_server: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 1 if args.command == "status" and not out["healthy"] else 0


if __name__ == "__main__":
    sys.exit(main())
