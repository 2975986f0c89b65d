"""docker-compose.yml, the Dockerfile, .env.example, the cluster launcher YAML and the KubeRay
manifests, checked by parsing (no Docker engine runs here); `docker compose config` too when a
working Docker Compose client exists.
"""

import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib

import pytest
import yaml

from sweeps.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_IMAGE = "metasweep:0.1.0"
RAY_SERVICES = ("ray-head", "ray-worker", "submit")
#: Ray's GCS, client server, dashboard/job API: never published.
RAY_PORTS = {"6379", "10001", "8265"}
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET", re.I)
REQUIRED_VAR = re.compile(r"^\$\{(\w+):\?[^}]+\}$")  # ${VAR:?message}: compose refuses to start without it


def _load(path):
    with open(os.path.join(ROOT, path)) as fh:
        return yaml.safe_load(fh)


def _compose():
    return _load("docker-compose.yml")


def _env(service) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def _ray_version() -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    return next(re.search(r"==([\w.]+)", d).group(1) for d in deps if d.startswith("ray["))


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _host_ip(port) -> tuple[str | None, str]:
    """(host ip, container port) of a published port in short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port["target"])
    parts = re.sub(r"\$\{[^}]*\}", "VAR", str(port)).split(":")  # ${MLFLOW_PORT:-5000} holds a colon
    # short syntax: [HOST_IP:]HOST_PORT:CONTAINER_PORT, or CONTAINER_PORT alone (a random host port on all interfaces)
    return (parts[0] if len(parts) == 3 else None), parts[-1].split("/")[0]


# ----------------------------------------------------------------------------- compose


def test_compose_has_the_cluster_services_on_the_project_image():
    services = _compose()["services"]
    assert {"postgres", "mlflow", "ray-head", "ray-worker", "submit"} <= set(services)
    for name in ("mlflow", *RAY_SERVICES, "fig2"):
        assert services[name]["image"] == PROJECT_IMAGE, name
        assert services[name]["build"]["context"] == "." and services[name]["build"]["dockerfile"] == "Dockerfile"
    head = shlex.join(services["ray-head"]["command"])
    assert services["ray-head"]["command"][:3] == ["ray", "start", "--head"] and "--block" in head
    worker = services["ray-worker"]["command"]
    assert worker[:2] == ["ray", "start"] and "--address=ray-head:6379" in worker and "--block" in worker
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    # MLflow on PostgreSQL, artifacts served by the server from a named volume
    mlflow = services["mlflow"]
    assert _env(mlflow)["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in _env(mlflow)["MLFLOW_BACKEND_STORE_URI"]
    cmd = mlflow["command"]
    assert cmd[:2] == ["mlflow", "server"] and "--serve-artifacts" in cmd
    dest = cmd[cmd.index("--artifacts-destination") + 1]
    assert any(v.split(":")[0] in _compose()["volumes"] and v.split(":")[1] == dest for v in mlflow["volumes"])
    # the Ray nodes send to http://mlflow:5000: the server must accept that Host header
    allowed = _env(mlflow)["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "mlflow:5000" in allowed
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    pg = services["postgres"]
    assert pg["healthcheck"]["test"] and any(v.split(":")[0] == "pgdata" for v in pg["volumes"])
    assert "pgdata" in _compose()["volumes"]


def test_compose_publishes_only_the_mlflow_ui_on_loopback():
    services = _compose()["services"]
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert set(published) == {"mlflow"}
    for port in published["mlflow"]:
        host_ip, target = _host_ip(port)
        assert host_ip == "127.0.0.1" and target == "5000", port
    for name in RAY_SERVICES:  # no Ray port leaves the compose network, not even through `expose`
        assert not services[name].get("ports") and not services[name].get("network_mode") == "host"
    # the optional dashboard overlay binds loopback too, and publishes nothing else
    overlay = _load("cluster/compose.dashboard.yml")["services"]
    assert set(overlay) == {"ray-head"}
    for port in overlay["ray-head"]["ports"]:
        host_ip, target = _host_ip(port)
        assert (host_ip, target) == ("127.0.0.1", "8265")


def test_compose_workers_are_scalable():
    worker = _compose()["services"]["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    replicas = (worker.get("deploy") or {}).get("replicas")
    assert replicas is None or isinstance(replicas, int)


def test_compose_secrets_are_required_and_never_literal():
    compose = _compose()
    required = set()
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            value = str(value)
            if SECRET_KEY.search(key):  # a secret is only ever "${VAR:?message}"
                m = REQUIRED_VAR.match(value)
                assert m, f"{name}.{key} = {value!r} is not a required variable"
                required.add(m.group(1))
            for user_pass in re.findall(r"://([^/@\s]+)@", value):  # credentials inside URIs
                password = user_pass.split(":", 1)[1]
                m = REQUIRED_VAR.match(password)
                assert m, f"{name}.{key}: literal password in a URI"
                required.add(m.group(1))
    assert required == {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"}
    # no default for a secret anywhere in the file (${POSTGRES_PASSWORD:-...} or =...)
    text = open(os.path.join(ROOT, "docker-compose.yml")).read()
    for var in required:
        assert re.findall(r"\$\{" + var + r"(:?[-?])", text) and set(re.findall(r"\$\{" + var + r"(:?[-?])", text)) == {":?"}
    # every Ray process gets an explicit auth mode (STACK.md), token here
    for name in RAY_SERVICES:
        env = _env(compose["services"][name])
        assert env["RAY_AUTH_MODE"] == "token" and REQUIRED_VAR.match(env["RAY_AUTH_TOKEN"])


def test_env_example_documents_every_variable_and_holds_no_secret():
    text = open(os.path.join(ROOT, "docker-compose.yml")).read()
    used = set(re.findall(r"\$\{(\w+)", text)) | set(re.findall(r"\$\{(\w+)", open(os.path.join(ROOT, "cluster", "compose.dashboard.yml")).read()))
    example = {}
    for line in open(os.path.join(ROOT, ".env.example")):
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            example[key] = value
    assert used <= set(example), used - set(example)
    for key in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"):
        assert example[key] == ""  # copying the example unchanged does not start anything
    # the real .env is ignored and not committed
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
    assert subprocess.run(["git", "ls-files", "--error-unmatch", ".env"], cwd=ROOT, capture_output=True).returncode != 0


def test_submit_runs_metasweep_against_the_cluster():
    services = _compose()["services"]
    submit = services["submit"]
    assert submit["profiles"] == ["submit"]  # `docker compose up` does not start it
    script = submit["entrypoint"][0]
    assert script.startswith("/home/ray/metasweep/")
    local = os.path.join(ROOT, script[len("/home/ray/metasweep/"):])
    assert os.stat(local).st_mode & stat.S_IXUSR
    body = open(local).read()
    assert "--num-cpus=0" in body and 'exec metasweep run "$@"' in body
    spec = submit["command"][0]
    assert os.path.isfile(os.path.join(ROOT, spec[len("/home/ray/metasweep/"):]))
    # what the script runs parses with the real CLI
    args = build_parser().parse_args(["run", spec, "--address", _env(submit)["RAY_HEAD_ADDRESS"],
                                      "--tracking-uri", "http://mlflow:5000"])
    assert args.command == "run" and args.address == "ray-head:6379"
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", local]).returncode == 0
        # no spec: one clear error, exit 2, before Ray starts
        proc = subprocess.run([shutil.which("sh"), local], capture_output=True, text=True,
                              env={"PATH": "/nonexistent", "MLFLOW_TRACKING_URI": "http://mlflow:5000"})
        assert proc.returncode == 2 and proc.stderr.startswith("submit: error:")


def test_fig2_service_runs_an_existing_command():
    service = _compose()["services"]["fig2"]
    assert service["command"][0] == "metasweep"
    args = build_parser().parse_args(service["command"][1:])
    assert args.command == "fig2" and args.out.startswith("/home/ray/work/runs")
    assert service["volumes"][0].split(":")[0] in _compose()["volumes"]


def test_docker_compose_config_when_a_client_works(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no working `docker compose` client here")
    base = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN")}
    cmd = [docker, "compose", "--env-file", os.devnull, "-f", os.path.join(ROOT, "docker-compose.yml"), "config", "-q"]
    missing = subprocess.run(cmd, capture_output=True, text=True, env=base, cwd=tmp_path)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr + missing.stdout
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                        env=base | {"POSTGRES_PASSWORD": "x" * 16, "RAY_AUTH_TOKEN": "y" * 16})
    assert ok.returncode == 0, ok.stderr


# ----------------------------------------------------------------------------- image, launcher, KubeRay


def test_dockerfile_is_the_official_ray_image_with_the_project():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    assert lines[0] == f"FROM rayproject/ray:{_ray_version()}-py311-cpu"
    copied = {shlex.split(line)[-2].split("/")[0] for line in lines if line.startswith("COPY")}
    assert {"solvers", "sweeps", "tracking", "cluster"} <= copied
    assert any("pip install" in line and '".[postgres,openspiel]"' in line for line in lines)
    assert not any(line.startswith("ENTRYPOINT") for line in lines)  # the launcher and KubeRay run `ray start`
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "ray"  # not root


def test_cluster_launcher_uses_the_project_image_and_token_auth():
    cfg = _load("cluster/ray-cluster.yaml")
    assert cfg["docker"]["image"].endswith("/" + PROJECT_IMAGE)
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert "/home/ray/.ray/auth_token" in cfg["file_mounts"]
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--head" in head and "--dashboard-host=127.0.0.1" in head
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    assert not any(SECRET_KEY.search(s) and "=" in s and "RAY_AUTH_MODE" not in s for s in _strings(cfg))


def test_kuberay_manifests_use_the_project_image_and_pinned_ray():
    with open(os.path.join(ROOT, "cluster", "kuberay", "raycluster.yaml")) as fh:
        docs = {d["kind"]: d for d in yaml.safe_load_all(fh)}
    rc = docs["RayCluster"]
    assert rc["spec"]["rayVersion"] == _ray_version()
    pods = [rc["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in rc["spec"]["workerGroupSpecs"]]
    for pod in pods:
        for c in pod["spec"]["containers"]:
            assert c["image"].endswith("/" + PROJECT_IMAGE)
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["RAY_AUTH_MODE"] == "disabled" and env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert docs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": rc["metadata"]["name"]}
    job = _load("cluster/kuberay/rayjob.yaml")
    assert job["kind"] == "RayJob" and job["spec"]["clusterSelector"] == {"ray.io/cluster": rc["metadata"]["name"]}
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "metasweep"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and os.path.isfile(os.path.join(ROOT, args.spec[len("/home/ray/metasweep/"):]))
    with open(os.path.join(ROOT, "cluster", "kuberay", "mlflow.yaml")) as fh:
        companion = list(yaml.safe_load_all(fh))
    for s in _strings(companion):  # the password only ever comes from the Secret
        assert not re.search(r"://[^/@\s$]+:[^/@\s$(]+@", s), s
