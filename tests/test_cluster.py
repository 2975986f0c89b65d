"""The cluster topology on one machine: `cluster/harness.py` (a Ray head and a Ray worker node as
separate `ray start` processes, PostgreSQL, an MLflow server on it, all on 127.0.0.1), a sweep
through the Ray address, and the same spec on one node.

Real processes throughout, stopped by PID (the harness's `down`). The harness state lives in the
checkout's git-ignored `.state/t/` (PostgreSQL runs as the `postgres` user and cannot reach
pytest's private temporary folders).
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from test_sweep import summary_json

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(REPO, "cluster", "harness.py")
METASWEEP = os.path.join(os.path.dirname(sys.executable), "metasweep")
STATE_ROOT = os.path.join(REPO, ".state", "t")  # in a deep checkout the harness moves Ray's temp dir to /tmp

# 4 trials, 2 CPUs each (the trial + one Ray task for its individual-learning games): on a head and
# a worker node of 2 CPUs each, two trials run at once, necessarily one per node.
SPEC = """\
experiment: {experiment}
search_space:
  eta: 0.05
  K: 3
  H: 3
  sigma: 0.1
  T: 300
  seed: {{grid: [0, 1]}}
  stage_reset: {{grid: [true, false]}}
resources:
  cpus: 2
tracking:
  metric_history_points: 50
"""


def harness(*args, timeout=300):
    return subprocess.run([sys.executable, HARNESS, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _env(extra=None) -> dict:
    """No inherited cluster or store; an explicit Ray auth mode (STACK.md), or the env `harness up` printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    return env | (extra or {})


def metasweep(args, cwd, timeout=240, env=None):
    proc = subprocess.run([METASWEEP, *map(str, args)], cwd=cwd, env=_env(env), capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def runs_of(client, name):
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"experiment {name} missing"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("metasweep.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("metasweep.role") == "trial"]
    return exp, parents, children


def curves_by_config(client, children, dest) -> dict:
    """(seed, stage_reset) -> the child's curves.parquet as a pyarrow Table, downloaded through the server."""
    out = {}
    for c in children:
        path = client.download_artifacts(c.info.run_id, "curves.parquet", str(dest / c.info.run_id))
        out[(c.data.params["seed"], c.data.params["stage_reset"])] = pq.read_table(path)
    return out


def _processes_under(state: str) -> list:
    """Live processes whose working directory or command line is inside ``state``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if state in cmd or cwd == state or cwd.startswith(state + os.sep):
            found.append((int(name), cmd[:120]))
    return found


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    """A harness cluster: head (2 CPUs) + 1 worker node (2 CPUs), PostgreSQL, MLflow server; stopped by PID."""
    os.makedirs(STATE_ROOT, exist_ok=True)
    state = os.path.join(STATE_ROOT, f"c-{uuid.uuid4().hex[:6]}")
    try:
        up = harness("up", "--state-dir", state, "--workers", 1, "--head-cpus", 2, "--worker-cpus", 2, "--timeout", 120)
        if up.returncode != 0:
            pytest.fail(f"harness up failed: {up.stderr.strip()[-3000:]}")
        info = json.loads(up.stdout.strip().splitlines()[-1])
        assert info["env"]["RAY_AUTH_MODE"] == "disabled"  # the default; set in every process that joins
        yield info
    finally:
        down = harness("down", "--state-dir", state)
        assert down.returncode == 0, down.stderr
        after = harness("status", "--state-dir", state)
        assert after.returncode == 1  # nothing left running ...
        assert _processes_under(state) == []  # ... not even a Ray helper or worker
        shutil.rmtree(os.path.realpath(os.path.join(state, "ray")), ignore_errors=True)  # /tmp/msray-* when linked
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def two_node_sweep(cluster, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("two-nodes")
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    (cwd / "spec.yaml").write_text(SPEC.format(experiment=name))
    rc, out, err = metasweep(["run", "spec.yaml", "--address", cluster["address"], "--tracking-uri",
                              cluster["tracking_uri"]], cwd, env=cluster["env"])
    assert rc == 0, err[-3000:]
    return {"name": name, "summary": summary_json(out), "cwd": cwd}


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("args, message", [
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--worker-cpus", "0"], "--worker-cpus must be >= 1"),
    (["--head-cpus", "0", "--workers", "0"], "no CPU for any trial"),
    (["--object-store-mb", "10"], "--object-store-mb must be >= 75"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--workers", "two"], "invalid int value"),
])
def test_harness_bad_input_starts_nothing(args, message):
    state = os.path.join(STATE_ROOT, f"bad-{uuid.uuid4().hex[:8]}")
    proc = harness("up", "--state-dir", state, *args, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and message in lines[0], proc.stderr
    assert not os.path.exists(state)  # nothing created, nothing started


def test_long_state_dir_gets_a_short_ray_temp_dir():
    """Ray's socket paths must stay below 108 bytes: a deep state dir puts Ray's temp dir in /tmp (linked)."""
    sys.path.insert(0, os.path.join(REPO, "cluster"))
    import harness as h
    short = h._paths("/s/ray-ok")
    assert short["ray_tmp"] == short["ray_link"] == "/s/ray-ok/ray"
    deep = h._paths("/" + "x" * 80)
    assert deep["ray_link"] == "/" + "x" * 80 + "/ray" and len(deep["ray_tmp"]) <= h.MAX_RAY_TMP
    assert deep["ray_tmp"] != h._paths("/" + "y" * 80)["ray_tmp"]  # one per state dir


def test_harness_status_and_second_up(cluster):
    status = harness("status", "--state-dir", cluster["state_dir"], timeout=60)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["running"] and [n["alive"] for n in info["nodes"]] == [True, True]
    assert info["mlflow"]["healthy"] and info["postgres"]["ready"]
    again = harness("up", "--state-dir", cluster["state_dir"], timeout=60)  # refused; the running cluster is untouched
    assert again.returncode == 1 and "already running" in again.stderr
    assert harness("status", "--state-dir", cluster["state_dir"], timeout=60).returncode == 0


@pytest.mark.slow
def test_sweep_runs_on_both_nodes_into_postgres_backed_mlflow(cluster, two_node_sweep, tmp_path):
    import psycopg

    summary = two_node_sweep["summary"]
    assert (summary["trials"], summary["finished"], summary["failed"]) == (4, 4, 0)
    assert summary["tracking_uri"] == cluster["tracking_uri"]
    node_ids = {n["role"]: n["node_id"] for n in cluster["nodes"]}
    assert set(node_ids) == {"head", "worker"}

    client = MlflowClient(tracking_uri=cluster["tracking_uri"])
    exp, parents, children = runs_of(client, two_node_sweep["name"])
    assert len(parents) == 1 and len(children) == 4
    assert parents[0].data.tags["metasweep.cluster_nodes"] == "2"
    assert float(parents[0].data.tags["metasweep.cluster_cpus"]) == 4.0
    # every trial records the node that computed it; both nodes ran trials
    ran_on = [c.data.tags["metasweep.node_id"] for c in children]
    assert set(ran_on) == set(node_ids.values()), (ran_on, node_ids)

    # every run is in the PostgreSQL database behind the MLflow server (read directly, not through MLflow)
    with open(cluster["postgres"]["info"]) as fh:
        pg_uri = json.load(fh)["uri"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(pg_uri) as conn:
        rows = conn.execute("SELECT run_uuid, status FROM runs WHERE experiment_id = %s", (int(exp.experiment_id),)).fetchall()
    assert sorted(rows) == sorted((r.info.run_id, "FINISHED") for r in parents + children)

    # artifacts logged from the worker node's processes are served by the tracking server to this driver
    from_worker = [c for c in children if c.data.tags["metasweep.node_id"] == node_ids["worker"]]
    assert from_worker
    for c in from_worker:
        assert c.info.artifact_uri.startswith("mlflow-artifacts:/")  # not a path on the worker's disk
        path = client.download_artifacts(c.info.run_id, "curves.parquet", str(tmp_path / c.info.run_id))
        table = pq.read_table(path)
        assert table.num_rows == 2 * 3 * 300
        final = table.to_pandas().query("method == 'meta' and iteration == 300")["gap"].mean()
        assert abs(final - c.data.metrics["final_gap/meta"]) <= 1e-12
        stored = os.path.join(cluster["mlflow"]["artifacts"], c.info.artifact_uri[len("mlflow-artifacts:/"):],
                              "curves.parquet")
        assert open(stored, "rb").read() == open(path, "rb").read()


@pytest.mark.slow
def test_one_node_and_two_nodes_give_bitwise_identical_curves(cluster, two_node_sweep, tmp_path):
    name = f"one-node-{uuid.uuid4().hex[:8]}"
    (tmp_path / "spec.yaml").write_text(SPEC.format(experiment=name))
    # one node with the same total CPUs: an embedded local Ray
    rc, out, err = metasweep(["run", "spec.yaml", "--num-cpus", cluster["cpus"], "--tracking-uri",
                              cluster["tracking_uri"]], tmp_path)
    assert rc == 0, err[-3000:]
    one = summary_json(out)
    assert one["finished"] == 4
    client = MlflowClient(tracking_uri=cluster["tracking_uri"])
    _, p1, c1 = runs_of(client, name)
    _, p2, c2 = runs_of(client, two_node_sweep["name"])
    assert p1[0].data.tags["metasweep.cluster_nodes"] == "1" and p2[0].data.tags["metasweep.cluster_nodes"] == "2"
    assert len({c.data.tags["metasweep.node_id"] for c in c1}) == 1
    one_node = curves_by_config(client, c1, tmp_path / "one")
    two_nodes = curves_by_config(client, c2, tmp_path / "two")
    assert sorted(one_node) == sorted(two_nodes) and len(one_node) == 4
    for key, a in one_node.items():
        b = two_nodes[key]
        assert a.schema == b.schema and a.num_rows == b.num_rows == 2 * 3 * 300
        for col in a.column_names:
            x, y = a[col].to_numpy(), b[col].to_numpy()
            if x.dtype.kind == "f":  # bitwise: the same 64-bit patterns, not merely close
                assert np.array_equal(x.view(np.uint64), y.view(np.uint64)), (key, col)
            else:
                assert np.array_equal(x, y), (key, col)
    for c in c1:  # and the logged scalars agree exactly
        twin = next(d for d in c2 if d.data.params == c.data.params)
        for key in ("final_gap/meta", "final_gap/individual", "similarity/delta/meta", "bound/theorem2"):
            assert c.data.metrics[key] == twin.data.metrics[key]
