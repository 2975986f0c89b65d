#!/usr/bin/env python
"""Start, stop and inspect a private PostgreSQL server on 127.0.0.1 for MLflow (stdlib only).

Used by ``benchmarks/bench_sweep.py`` and by hand::

    python cluster/postgres.py start  --state-dir DIR --port P [--user mlflow] [--database mlflow] [--timeout S]
    python cluster/postgres.py status --state-dir DIR
    python cluster/postgres.py stop   --state-dir DIR [--timeout S]

``start`` uses Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``, the newest
version found). If there is no ``initdb`` it installs the ``postgresql`` package first
(``apt-get update`` then ``apt-get install -y postgresql``; needs root). ``initdb`` and ``pg_ctl``
refuse to run as root, so when started by root every PostgreSQL command runs as the ``postgres``
system user and DIR (created if needed) is chowned to it; every ancestor of DIR must be
searchable by that user (``/tmp/...`` is; ``/root/...`` is not). Run by another user, everything
runs as that user.

The first ``start`` initialises a cluster in ``DIR/data`` (``initdb``, UTF-8, locale C; local
connections by peer authentication, TCP connections by password, scram-sha-256), then every
``start`` runs ``pg_ctl start`` with the server listening only on ``127.0.0.1:P`` and its Unix
socket in ``DIR/socket`` (mode 0700), creates the role ``--user`` (LOGIN, password generated once
and kept in ``DIR/password``, mode 600) and the database ``--database`` owned by it if they do not
exist, checks a password login over TCP, and prints one JSON line::

    {"uri": "postgresql+psycopg://USER:PASSWORD@127.0.0.1:P/DATABASE", "pid": ..., "port": P, ...}

``uri`` is an SQLAlchemy URI for psycopg 3 (``pip install -e '.[postgres]'``), usable as MLflow's
``--backend-store-uri``. The same JSON is kept in ``DIR/postgres.json`` (mode 600). ``start``
fails (exit 1, one line ``postgres: error: ...`` and the log's tail on stderr) if the server of
DIR is already running, if the port is taken, or if the server does not accept connections within
``--timeout`` seconds (default 60); a server it started is stopped again on such a failure.

``stop`` stops the server of DIR with ``pg_ctl stop -m fast`` (pg_ctl finds the postmaster through
its PID file ``DIR/data/postmaster.pid``), then ``-m immediate`` if it is still running after
``--timeout`` seconds (default 30). ``status`` prints one JSON line and exits 0 if the server
accepts connections (``pg_isready``), 1 otherwise. Every command exits 2 on bad usage.

Files in DIR: ``data/`` (the cluster; its ``postmaster.pid``), ``socket/``, ``password``,
``postgres.json``, ``postgres.log`` (the server's log).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
PG_SYSTEM_USER = "postgres"
INFO_FILE = "postgres.json"
LOG_FILE = "postgres.log"
PASSWORD_FILE = "password"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgError(Exception):
    """One clear line for the user; exit status 1."""


# ----------------------------------------------------------------------------- helpers


def _paths(state_dir: str) -> dict:
    d = os.path.abspath(state_dir)
    return {"dir": d, "data": os.path.join(d, "data"), "socket": os.path.join(d, "socket"),
            "password": os.path.join(d, PASSWORD_FILE), "info": os.path.join(d, INFO_FILE),
            "log": os.path.join(d, LOG_FILE), "pidfile": os.path.join(d, "data", "postmaster.pid")}


def _version_key(path: str) -> tuple:
    v = path.split(os.sep)[-3]  # /usr/lib/postgresql/<version>/bin/initdb
    return tuple(int(x) if x.isdigit() else 0 for x in v.split("."))


def _find_bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return os.path.dirname(found[-1])
    exe = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(exe)) if exe else None


def _install() -> None:
    """``apt-get update`` and ``apt-get install -y postgresql`` (Debian; needs root)."""
    if os.geteuid() != 0:
        raise PgError("initdb not found and installing PostgreSQL needs root: run `apt-get install -y postgresql` first")
    if shutil.which("apt-get") is None:
        raise PgError("initdb not found and there is no apt-get to install PostgreSQL with")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
        print(f"postgres: running {' '.join(cmd)}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise PgError(f"{' '.join(cmd)} failed with status {proc.returncode}:\n{tail}")


def _bin_dir(install: bool) -> str:
    d = _find_bin_dir()
    if d is None and install:
        _install()
        d = _find_bin_dir()
    if d is None:
        raise PgError("PostgreSQL binaries not found (looked for /usr/lib/postgresql/*/bin/initdb and initdb on PATH)")
    return d


def _run_as() -> dict:
    """How PostgreSQL commands run: as the ``postgres`` user when we are root, else as ourselves."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return {"name": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid, "home": pw.pw_dir, "switch": False}
    try:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise PgError(f"running as root needs the '{PG_SYSTEM_USER}' system user (created by Debian's postgresql package)") from None
    return {"name": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid, "home": pw.pw_dir, "switch": True}


def _pg(who: dict, cmd: list[str], cwd: str, timeout: float = 120, input_text: str | None = None,
        extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "HOME": who["home"], "PGAPPNAME": "cluster/postgres.py"}
    env.update(extra_env or {})
    kwargs = dict(user=who["uid"], group=who["gid"], extra_groups=[]) if who["switch"] else {}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=None if input_text is not None else subprocess.DEVNULL, input=input_text, **kwargs)


def _check_reachable(path: str, who: dict) -> None:
    """Every ancestor of ``path`` must be searchable by the user the server runs as."""
    if not who["switch"]:
        return
    groups = {who["gid"]} | {g.gr_gid for g in _groups_of(who["name"])}
    p = os.path.dirname(path)
    while True:
        try:
            st = os.stat(p)
        except FileNotFoundError:  # created later by us (mode 700, chowned to the server's user)
            p = os.path.dirname(p)
            continue
        ok = (st.st_uid == who["uid"] and st.st_mode & 0o100) or (st.st_gid in groups and st.st_mode & 0o010) \
            or (st.st_mode & 0o001)
        if not ok:
            raise PgError(f"the '{who['name']}' user cannot enter {p} (mode {st.st_mode & 0o777:o}): "
                          "use a state directory it can reach, e.g. under /tmp")
        if p == os.path.dirname(p):
            return
        p = os.path.dirname(p)


def _groups_of(user: str):
    import grp

    return [g for g in grp.getgrall() if user in g.gr_mem]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _read_postmaster(pidfile: str) -> dict | None:
    """PID, data directory and port from ``postmaster.pid`` (lines 1, 2 and 4), or None."""
    try:
        with open(pidfile) as fh:
            lines = fh.read().splitlines()
        return {"pid": int(lines[0]), "data": lines[1], "port": int(lines[3]) if len(lines) > 3 else None}
    except (OSError, ValueError, IndexError):
        return None


def _is_postmaster(pid: int, data_dir: str) -> bool:
    """True if ``pid`` is a live PostgreSQL server of ``data_dir`` (never trust a PID file alone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except (OSError, IndexError):
        return False
    if not args or not os.path.basename(args[0]).startswith(("postgres", "postmaster")):
        return False
    joined = " ".join(args)  # a server may have rewritten its process title into one string
    return os.path.realpath(data_dir) in joined or os.path.abspath(data_dir) in joined


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600 (created with that mode, never readable by others)."""
    tmp = path + ".tmp"
    try:
        os.remove(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _password(p: dict) -> str:
    try:
        with open(p["password"]) as fh:
            pw = fh.read().strip()
        if pw:
            return pw
    except FileNotFoundError:
        pass
    pw = secrets.token_hex(24)  # hex: nothing to escape in a URI or in SQL
    _write_private(p["password"], pw + "\n")
    return pw


def _status_of(p: dict) -> dict:
    pm = _read_postmaster(p["pidfile"])
    running = bool(pm and _is_postmaster(pm["pid"], p["data"]))
    return {"running": running, "pid": pm["pid"] if pm else None, "port": pm["port"] if pm else None}


# ----------------------------------------------------------------------------- commands


def start(state_dir: str, port: int, user: str = "mlflow", database: str = "mlflow", timeout: float = 60.0) -> dict:
    if not 1 <= port <= 65535:
        raise PgError(f"port must be in [1, 65535], got {port}")
    for what, name in (("user", user), ("database", database)):
        if not _IDENT.match(name):
            raise PgError(f"--{what} must match {_IDENT.pattern}, got {name!r}")
    p = _paths(state_dir)
    st = _status_of(p)
    if st["running"]:
        raise PgError(f"the server of {p['dir']} is already running (pid {st['pid']}); stop it first")
    if _port_in_use(port):
        raise PgError(f"port {port} on {HOST} is already in use")
    bindir = _bin_dir(install=True)
    who = _run_as()
    _check_reachable(p["dir"], who)
    os.makedirs(p["dir"], mode=0o700, exist_ok=True)
    os.makedirs(p["socket"], mode=0o700, exist_ok=True)
    if who["switch"]:
        for path in (p["dir"], p["socket"]):
            os.chown(path, who["uid"], who["gid"])
        os.chmod(p["dir"], 0o700)
    password = _password(p)  # owned by the caller, mode 600 (root reads it; the server never needs it)
    if not os.path.isfile(os.path.join(p["data"], "PG_VERSION")):
        proc = _pg(who, [os.path.join(bindir, "initdb"), "-D", p["data"], "-U", who["name"], "--encoding=UTF8",
                         "--locale=C", "--auth-local=peer", "--auth-host=scram-sha-256"], cwd=p["dir"])
        if proc.returncode != 0:
            raise PgError(f"initdb failed with status {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    opts = " ".join(shlex.quote(o) for o in ("-c", f"listen_addresses={HOST}", "-c", f"port={port}",
                                             "-c", f"unix_socket_directories={p['socket']}",
                                             "-c", "unix_socket_permissions=0700"))
    if who["switch"] and not os.path.exists(p["log"]):
        fd = os.open(p["log"], os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        os.chown(p["log"], who["uid"], who["gid"])
    proc = _pg(who, [os.path.join(bindir, "pg_ctl"), "start", "-D", p["data"], "-l", p["log"], "-w",
                     "-t", str(max(1, int(timeout))), "-s", "-o", opts], cwd=p["dir"], timeout=timeout + 30)
    if proc.returncode != 0:
        _stop_quietly(p, who, bindir)
        raise PgError(f"pg_ctl start failed with status {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}; "
                      f"log {p['log']}:\n{_log_tail(p['log'])}")
    try:
        _ensure_role_and_db(p, who, bindir, port, user, database, password)
    except Exception:
        _stop_quietly(p, who, bindir)
        raise
    st = _status_of(p)
    info = {"uri": f"postgresql+psycopg://{user}:{password}@{HOST}:{port}/{database}", "pid": st["pid"], "port": port,
            "user": user, "database": database, "data_dir": p["data"], "socket_dir": p["socket"], "log": p["log"],
            "bin_dir": bindir, "run_as": who["name"]}
    _write_private(p["info"], json.dumps(info) + "\n")
    return info


def _psql(p: dict, who: dict, bindir: str, port: int, sql: str, database: str = "postgres") -> str:
    proc = _pg(who, [os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", p["socket"],
                     "-p", str(port), "-U", who["name"], "-d", database, "-f", "-"], cwd=p["dir"], input_text=sql)
    if proc.returncode != 0:
        raise PgError(f"psql failed with status {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return proc.stdout.strip()


def _ensure_role_and_db(p, who, bindir, port, user, database, password) -> None:
    # identifiers are checked against _IDENT and the password is hex: plain interpolation is safe
    if _psql(p, who, bindir, port, f"SELECT 1 FROM pg_roles WHERE rolname = '{user}';"):
        _psql(p, who, bindir, port, f"ALTER ROLE {user} WITH LOGIN PASSWORD '{password}';")
    else:
        _psql(p, who, bindir, port, f"CREATE ROLE {user} WITH LOGIN PASSWORD '{password}';")
    if not _psql(p, who, bindir, port, f"SELECT 1 FROM pg_database WHERE datname = '{database}';"):
        _psql(p, who, bindir, port, f"CREATE DATABASE {database} OWNER {user};")
    # the login the URI will use: TCP, password (scram-sha-256); the password goes through the environment
    proc = _pg(who, [os.path.join(bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST,
                     "-p", str(port), "-U", user, "-d", database, "-c", "SELECT current_user;"], cwd=p["dir"],
               extra_env={"PGPASSWORD": password})
    if proc.returncode != 0 or proc.stdout.strip() != user:
        raise PgError(f"password login as {user} on {HOST}:{port} failed: {proc.stderr.strip()[-300:]}")


def _stop_quietly(p: dict, who: dict, bindir: str) -> None:
    if _status_of(p)["running"]:
        _pg(who, [os.path.join(bindir, "pg_ctl"), "stop", "-D", p["data"], "-m", "immediate", "-w", "-s"], cwd=p["dir"])


def stop(state_dir: str, timeout: float = 30.0) -> dict:
    p = _paths(state_dir)
    st = _status_of(p)
    if st["pid"] is None:
        return {"stopped": False, "reason": f"no PID file {p['pidfile']}"}
    if not st["running"]:
        return {"stopped": False, "pid": st["pid"], "reason": "not running"}
    bindir = _bin_dir(install=False)
    who = _run_as()
    how = "fast"
    proc = _pg(who, [os.path.join(bindir, "pg_ctl"), "stop", "-D", p["data"], "-m", "fast", "-w",
                     "-t", str(max(1, int(timeout))), "-s"], cwd=p["dir"], timeout=timeout + 30)
    if proc.returncode != 0 and _status_of(p)["running"]:
        how = "immediate"
        proc = _pg(who, [os.path.join(bindir, "pg_ctl"), "stop", "-D", p["data"], "-m", "immediate", "-w", "-s"],
                   cwd=p["dir"], timeout=60)
    deadline = time.monotonic() + 10
    while _is_postmaster(st["pid"], p["data"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _is_postmaster(st["pid"], p["data"]):
        raise PgError(f"pg_ctl stop did not stop pid {st['pid']}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    try:
        os.remove(p["info"])
    except FileNotFoundError:
        pass
    return {"stopped": True, "pid": st["pid"], "how": how}


def status(state_dir: str) -> dict:
    p = _paths(state_dir)
    st = _status_of(p)
    ready = False
    if st["running"] and st["port"]:
        bindir = _find_bin_dir()
        if bindir:
            proc = subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", HOST, "-p", str(st["port"])],
                                  capture_output=True, timeout=30)
            ready = proc.returncode == 0
    return {"running": st["running"], "ready": ready, "pid": st["pid"], "port": st["port"], "data_dir": p["data"]}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"postgres: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="postgres", description="A private PostgreSQL server on 127.0.0.1 (for MLflow).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("start", help="initialise (first time) and start the server, create the role and database")
    s.add_argument("--state-dir", required=True, help="folder of the cluster, socket, password, log")
    s.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    s.add_argument("--user", default="mlflow", help="login role to create (default mlflow)")
    s.add_argument("--database", default="mlflow", help="database to create, owned by --user (default mlflow)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
    t = sub.add_parser("stop", help="stop the server of STATE_DIR (pg_ctl stop -m fast, then -m immediate)")
    t.add_argument("--state-dir", required=True)
    t.add_argument("--timeout", type=float, default=30.0, help="seconds before -m immediate (default 30)")
    u = sub.add_parser("status", help="does the server of STATE_DIR accept connections (exit 0) or not (exit 1)")
    u.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            out = start(args.state_dir, args.port, args.user, args.database, args.timeout)
        elif args.command == "stop":
            out = stop(args.state_dir, args.timeout)
        else:
            out = status(args.state_dir)
    except (PgError, subprocess.TimeoutExpired) as exc:
        print(f"postgres: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 1 if args.command == "status" and not out["ready"] else 0


if __name__ == "__main__":
    sys.exit(main())
