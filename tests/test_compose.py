"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine runs here)."""

import os
import shlex

import yaml

from sweeps.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compose_runs_an_existing_command_in_the_project_image():
    with open(os.path.join(ROOT, "docker-compose.yml")) as fh:
        compose = yaml.safe_load(fh)
    service = compose["services"]["fig2"]
    assert service["build"]["context"] == "."
    assert os.path.exists(os.path.join(ROOT, service["build"]["dockerfile"]))
    # the command parses with the real CLI parser (the image's entrypoint is `metasweep`)
    args = build_parser().parse_args(service["command"])
    assert args.command == "fig2" and args.out.startswith("/runs")
    volume = service["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # results survive the container


def test_dockerfile_installs_the_project_and_runs_metasweep():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11")
    copied = {shlex.split(line)[1] for line in lines if line.startswith("COPY")}
    assert {"solvers", "sweeps", "tracking"} <= copied
    assert any("pip install" in line and " ." in line for line in lines)
    assert 'ENTRYPOINT ["metasweep"]' in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)  # not as root
