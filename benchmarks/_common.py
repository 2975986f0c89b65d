"""What both benchmark scripts record about the machine and the code they measured."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args: str, cwd: str = ROOT) -> str | None:
    """Output of ``git ARGS`` in the checkout, or in the checkout ``cwd`` (None when git is unavailable)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        return None


def dirty(directory: str) -> bool:
    """Whether ``directory`` has uncommitted changes."""
    return bool(git("status", "--porcelain", "--", directory))


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return None


def run_child(script: str, args: list, what: str) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter (repository root on PYTHONPATH); its last stdout
    line parsed as JSON. ``what`` names the case in the error if it fails."""
    import json
    import sys

    out = subprocess.run([sys.executable, os.path.abspath(script), *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
