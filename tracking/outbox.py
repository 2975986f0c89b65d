"""A sweep's local outbox: results that could not reach MLflow, uploaded later by ``metasweep sync``.

When the tracking store fails while a trial logs its results (a server down, a network split),
the trial's computed results are not lost: they are written here, in the sweep's folder
(``runs/sweeps/SWEEP_ID/outbox/``), and the trial completes. ``metasweep sync SWEEP`` (and the end
of a sweep, when the store answers again) uploads every pending entry to its MLflow child run.

With overlapped tracking (the default, ``tracking.overlap``; :mod:`sweeps.service`) every trial is
put here before its worker uploads it in the background, and the entry is discarded once the
upload succeeded: a worker that dies mid-upload (killed, node lost) leaves its entry for the
end-of-sweep upload, so no result is lost.

Layout, one folder per trial, written atomically (a temporary folder renamed into place)::

    outbox/TRIAL_ID/record.json      params, scalars, histories (steps, values), tags, run name, sentinel
    outbox/TRIAL_ID/curves.parquet   the trial's per-game curves (the child run's artifact)
    outbox/TRIAL_ID/synced.json      written once uploaded: {"run_id": ..., "synced_at": ...}
    outbox/parent.json               the sweep's final parent-run metrics and status, when they could not be logged

Upload is idempotent: the child run is found by its trial id (a partly logged run is completed,
not duplicated), metrics are skipped when the trial's sentinel metric is already logged, and the
artifact is overwritten in place; running ``sync`` twice changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time

__all__ = ["Outbox"]


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)


class Outbox:
    """The outbox folder of one sweep (module docstring)."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)

    def _dir(self, trial_id: str) -> str:
        if not trial_id or "/" in trial_id or trial_id.startswith("."):
            raise ValueError(f"invalid trial id {trial_id!r}")
        return os.path.join(self.folder, trial_id)

    def put(self, trial_id: str, record: dict, curves) -> str:
        """Store one trial's results (``record`` JSON-able, ``curves`` a pyarrow Table or None); returns its folder.

        A trial already in the outbox keeps its first entry (results are deterministic per config).
        """
        from .curves import write_parquet

        final = self._dir(trial_id)
        if os.path.isdir(final):
            return final
        tmp = os.path.join(self.folder, f".{trial_id}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        os.makedirs(tmp)
        try:
            with open(os.path.join(tmp, "record.json"), "w") as fh:
                json.dump(record, fh)
            if curves is not None:
                write_parquet(curves, os.path.join(tmp, "curves.parquet"))
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(final):  # not a lost race with another writer of the same trial
                raise
        return final

    def pending(self) -> list[str]:
        """Trial ids stored and not yet uploaded, in a stable order."""
        if not os.path.isdir(self.folder):
            return []
        return sorted(d for d in os.listdir(self.folder)
                      if not d.startswith(".") and os.path.isdir(os.path.join(self.folder, d))
                      and not os.path.exists(os.path.join(self.folder, d, "synced.json")))

    def load(self, trial_id: str) -> tuple[dict, str | None]:
        """(record, path of curves.parquet or None)."""
        d = self._dir(trial_id)
        with open(os.path.join(d, "record.json")) as fh:
            record = json.load(fh)
        curves = os.path.join(d, "curves.parquet")
        return record, curves if os.path.exists(curves) else None

    def discard(self, trial_id: str) -> None:
        """Remove a trial's entry once its upload succeeded (renamed out of :meth:`pending` first, then deleted)."""
        final = self._dir(trial_id)
        gone = os.path.join(self.folder, f".{trial_id}.done-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(final, gone)
        except FileNotFoundError:  # already discarded (a retried trial uploading again)
            return
        shutil.rmtree(gone, ignore_errors=True)

    def mark_synced(self, trial_id: str, run_id: str) -> None:
        _write_json(os.path.join(self._dir(trial_id), "synced.json"), {"run_id": run_id, "synced_at": time.time()})

    # the parent run's final record
    def put_parent(self, record: dict) -> None:
        os.makedirs(self.folder, exist_ok=True)
        _write_json(os.path.join(self.folder, "parent.json"), record)

    def parent(self) -> dict | None:
        path = os.path.join(self.folder, "parent.json")
        if not os.path.exists(path):
            return None
        with open(path) as fh:
            return json.load(fh)

    def clear_parent(self) -> None:
        path = os.path.join(self.folder, "parent.json")
        if os.path.exists(path):
            os.replace(path, os.path.join(self.folder, "parent.synced.json"))
