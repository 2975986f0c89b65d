"""Stage schedule of Algorithm 1 (line 8) and evaluation schedules for convergence curves."""

from __future__ import annotations

import numpy as np

__all__ = ["stage_lengths", "eval_iterations"]


def stage_lengths(horizon: int, iterations: int) -> np.ndarray:
    """Lengths of the stages covering ``iterations`` iterations: L_1 = H, L_{tau+1} = floor((1 + 1/H) L_tau).

    The last stage is truncated so that the lengths sum to T; its length is then smaller than the
    schedule's L_tau (it is "partial": no value update follows it). The number of entries is the
    number of stages tau_bar = tau(T) used by Theorems 1 and 2.

    >>> stage_lengths(2, 20).tolist()
    [2, 3, 4, 6, 5]
    """
    H, T = int(horizon), int(iterations)
    if H < 1 or T < 1:
        raise ValueError(f"horizon and iterations must be >= 1, got H={H}, T={T}")
    out = []
    L, total = H, 0
    while total < T:
        out.append(min(L, T - total))
        total += out[-1]
        L = (L * (H + 1)) // H  # floor((1 + 1/H) L) in exact integer arithmetic
    return np.asarray(out, dtype=np.int64)


def eval_iterations(iterations: int, every: int | None = None, log_points: int | None = None) -> np.ndarray:
    """1-based iterations at which the running average is evaluated; always includes T.

    Default (both None): every iteration. ``every=k``: k, 2k, ..., and T. ``log_points=n``: about n
    log-spaced iterations from 1 to T (distinct integers, 1 and T included).
    """
    T = int(iterations)
    if every is not None and log_points is not None:
        raise ValueError("choose at most one of every and log_points")
    if every is not None:
        if every < 1:
            raise ValueError(f"eval every must be >= 1, got {every}")
        its = np.arange(every, T + 1, every, dtype=np.int64)
    elif log_points is not None:
        if log_points < 2:
            raise ValueError(f"log_points must be >= 2, got {log_points}")
        its = np.unique(np.round(np.geomspace(1, T, log_points)).astype(np.int64))
    else:
        its = np.arange(1, T + 1, dtype=np.int64)
    if its.size == 0 or its[-1] != T:
        its = np.append(its, np.int64(T))
    return its
