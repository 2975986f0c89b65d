"""Tune stoppers of a sweep spec (``stopper:`` in docs/sweep-spec.md).

Kept in their own module so that Tune pickles them by reference (a class defined inside a function
would be pickled by value, with whatever it refers to).
"""

from __future__ import annotations

import threading

from ray.tune.stopper import ExperimentPlateauStopper

#: Set, in the driver process, when a plateau stopper ended the sweep (read by the summary).
FIRED = threading.Event()


class PlateauStopper(ExperimentPlateauStopper):
    """Tune's ExperimentPlateauStopper: stop the sweep once the ``top`` best values of ``metric`` have a
    standard deviation <= ``std`` for ``patience`` more results; records that it fired in :data:`FIRED`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._seen: set[str] = set()

    def __call__(self, trial_id, result):
        # Tune passes a function trial's last result twice (as reported, then with done=True):
        # count every trial once, or one trial alone would look like a plateau of `top` values.
        if trial_id in self._seen or self._metric not in result:
            return False
        self._seen.add(trial_id)
        return super().__call__(trial_id, result)

    def stop_all(self):
        hit = super().stop_all()
        if hit:
            FIRED.set()
        return hit
