"""Shared fixtures: a real MLflow tracking server on 127.0.0.1 (cluster/mlflow_server.py)."""

import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLFLOW_SERVER = os.path.join(REPO, "cluster", "mlflow_server.py")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(*args, timeout=120):
    return subprocess.run([sys.executable, MLFLOW_SERVER, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URL of a real MLflow server (sqlite store, served artifacts) started for this session, stopped by PID."""
    state = tmp_path_factory.mktemp("mlflow-server")
    proc = None
    for _ in range(3):  # another process may take the free port between our probe and the server's bind
        proc = _server("start", "--state-dir", state, "--port", free_port(), "--timeout", 60)
        if proc.returncode == 0 or "already in use" not in proc.stderr:
            break
    try:
        if proc.returncode != 0:
            pytest.fail(f"cannot start the MLflow server: {proc.stderr.strip()}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        yield info["url"]
    finally:
        # stop by the PID file (a no-op if start failed: the script removes it after killing its server)
        stop = _server("stop", "--state-dir", state)
        assert stop.returncode == 0, stop.stderr
