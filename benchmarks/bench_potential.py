"""Benchmark: projected Q-ascent (Eq. 7) on the LQ-tracking game of Appendix F.3 (4 players, 625 states,
81 joint actions), the Numba kernel (solvers.qascent._q_ascent) vs the plain-NumPy baseline
(benchmarks/numpy_qascent.py), side by side in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_potential.py [--H 10] [--T 2000] [--segment 10] [--reps 3] [--out FILE.json]

Results and their reading: docs/benchmarks.md. The MAML part of the potential-game benchmarks is
benchmarks/bench_maml.py.

Cases (update steps only: the evaluation mask is empty, so no best responses are computed)
  full  one Numba call of T iterations (the paper-scale run): iterations per second.
  side  ``reps`` alternating calls of both implementations with ``segment`` iterations each from
        the uniform policy: medians, min-max, and ratio = NumPy median / Numba median (> 1: the
        kernel is faster). Both are warmed up first (compilation / caches excluded). The iterates
        after ``segment`` steps are compared (max |difference|), so a wrong kernel does not pass.
"other load" is the CPU share used by other processes during a case (/proc/stat, see
benchmarks/bench_algorithm1.py): timings with more than a few per cent are contaminated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._common import cpu_model, dirty, git  # noqa: E402
from benchmarks.bench_algorithm1 import _OtherLoad  # noqa: E402
from benchmarks.numpy_qascent import q_ascent_numpy  # noqa: E402
from solvers._blas import single_threaded_blas  # noqa: E402
from solvers.markov_kernels import kernel_form, pad_policies, unpad_policies  # noqa: E402
from solvers.nplayer import uniform_policies  # noqa: E402
from solvers.potential_eval import PI_MAX_ITER, PI_RTOL, game_potential  # noqa: E402
from solvers.potential_games import potential_family  # noqa: E402
from solvers.qascent import _q_ascent  # noqa: E402

STEP = 0.01


def numba_steps(kf, game, T: int):
    """T update steps of the kernel from the uniform policy, no evaluation; returns (seconds, pi^T)."""
    pol = pad_policies(uniform_policies(game), kf.max_actions)
    rows, N = kf.rewards.shape[0], kf.num_players
    mask = np.zeros(T + 1, dtype=np.bool_)
    with single_threaded_blas():  # as projected_q_ascent: the kernel's GEMMs on one BLAS thread
        t0 = time.perf_counter()
        _q_ascent(kf.rewards, rows, N, pol, kf.adec, kf.sdec, kf.actions, kf.dense_p, kf.snext, kf.local_p, kf.xmap, kf.factored,
                  kf.gamma, kf.discounted, kf.rho, STEP, T, mask, PI_MAX_ITER, PI_RTOL, np.zeros((0, rows)),
                  np.zeros((0, N)))
        seconds = time.perf_counter() - t0
    return seconds, unpad_policies(pol, kf.actions)


def numpy_steps(game, T: int):
    t0 = time.perf_counter()
    pols = q_ascent_numpy(game, T, STEP)
    return time.perf_counter() - t0, pols


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--H", type=int, default=10, help="horizon (default 10, as specs/lq-tracking.yaml)")
    ap.add_argument("--T", type=int, default=2000, help="iterations of the full Numba run (default 2000)")
    ap.add_argument("--segment", type=int, default=10, help="iterations per side-by-side call (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="side-by-side repetitions (default 3)")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()

    game = potential_family("lq-tracking", 1, 0.5, args.H, 0)[0]
    # the kernel form with the potential row, as projected_q_ascent uses it (Phi is tracked on every pass)
    kf = kernel_form(game, game_potential(game)[0])
    print(f"LQ tracking: N={game.num_players}, H={game.horizon}, S={game.num_states}, J={np.prod(game.num_actions)}, "
          f"step={STEP}; commit {git('rev-parse', '--short', 'HEAD')}{' (solvers/ dirty)' if dirty('solvers') else ''}; "
          f"CPU {cpu_model()} x{os.cpu_count()}, Python {platform.python_version()}", file=sys.stderr)
    numba_steps(kf, game, 1)  # warm-up (loads or compiles the kernel)
    numpy_steps(game, 1)

    numba_s, numpy_s, loads = [], [], []
    diff = 0.0
    for _ in range(args.reps):
        with _OtherLoad() as load_a:
            ta, pa = numba_steps(kf, game, args.segment)
        with _OtherLoad() as load_b:
            tb, pb = numpy_steps(game, args.segment)
        numba_s.append(ta)
        numpy_s.append(tb)
        loads += [load_a.share, load_b.share]
        diff = max(diff, max(float(np.abs(a - b).max()) for a, b in zip(pa, pb)))
    with _OtherLoad() as load_full:
        full_s, _ = numba_steps(kf, game, args.T)

    med_a, med_b = statistics.median(numba_s), statistics.median(numpy_s)
    res = {
        "game": {"family": "lq-tracking", "H": args.H, "S": game.num_states, "joint_actions": int(np.prod(game.num_actions))},
        "step": STEP,
        "full": {"T": args.T, "seconds": full_s, "iterations_per_s": args.T / full_s, "other_load": load_full.share},
        "side_by_side": {
            "segment": args.segment, "reps": args.reps,
            "numba_iterations_per_s": args.segment / med_a, "numpy_iterations_per_s": args.segment / med_b,
            "numba_s": numba_s, "numpy_s": numpy_s, "ratio": med_b / med_a, "max_policy_difference": diff,
            "other_load_max": max(loads),
        },
        "commit": git("rev-parse", "--short", "HEAD"),
        "cpu": cpu_model(),
    }
    s = res["side_by_side"]
    print(f"{'case':<28}{'Numba it/s':>12}{'NumPy it/s':>12}{'ratio':>8}{'other load':>12}")
    print(f"{'side by side (median)':<28}{s['numba_iterations_per_s']:>12.2f}{s['numpy_iterations_per_s']:>12.2f}"
          f"{s['ratio']:>8.2f}{s['other_load_max']:>11.0%}")
    print(f"{f'full Numba run, T={args.T}':<28}{res['full']['iterations_per_s']:>12.2f}{'':>12}{'':>8}"
          f"{load_full.share:>11.0%}")
    print(f"max |pi_numba - pi_numpy| after {args.segment} steps: {diff:.2e}; Numba runs "
          f"{[f'{x:.2f}' for x in numba_s]} s, NumPy runs {[f'{x:.2f}' for x in numpy_s]} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
