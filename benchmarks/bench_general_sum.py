"""Benchmark: the Numba kernel of Algorithm 2 (solvers.algorithm2.solve) vs the NumPy implementation
(benchmarks/numpy_algorithm2.py), side by side in one run, on the issue's size N = 3, A_i = 3, S = 10, H = 5.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_general_sum.py [--reps 7] [--out FILE.json]

Results and their reading: docs/benchmarks.md. Takes about a minute on 2 cores.

Each timing is the wall time of one ``solve`` / ``solve_numpy`` call on the same game (game
generation excluded; both keep the full policy trajectory, neither evaluates), after one warm-up
call of each; repetitions alternate the two implementations (``_interleaved`` of
``bench_algorithm1``). Iterations per second = T / median time; the NumPy baseline runs fewer
iterations (``--numpy-iterations``) so that both take comparable time; ratio = Numba it/s / NumPy it/s.
The two implementations' trajectories are compared over the NumPy run's iterations (max |difference|),
so a benchmark of a wrong kernel does not pass unnoticed. Also timed, with the Numba kernel's T: the
exact evaluation of Algorithm 3's output at every iteration (``certified_evaluations``) and of the
two plain averages at 20 iterations (``cce_curves``). "other load" is the CPU share used by other
processes while a case ran (``_OtherLoad`` of ``bench_algorithm1``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.bench_algorithm1 import _interleaved, _machine, _OtherLoad  # noqa: E402
from benchmarks.numpy_algorithm2 import solve_numpy  # noqa: E402
from solvers import algorithm2  # noqa: E402
from solvers.cce import cce_curves, certified_evaluations  # noqa: E402
from solvers.general_sum_games import random_general_sum_game  # noqa: E402

N, A, S, H = 3, 3, 10, 5
ETA = 0.1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=5000, help="T of the Numba runs (default 5000)")
    ap.add_argument("--numpy-iterations", type=int, default=300, help="T of the NumPy runs (default 300)")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args(argv)
    game = random_general_sum_game(H, S, (A,) * N, np.random.default_rng(0))
    T, Tn = args.iterations, args.numpy_iterations

    with _OtherLoad() as load:
        (tk, tk_all, res), (tn, tn_all, (traj, _)) = _interleaved(
            [lambda: algorithm2.solve(game, T, ETA), lambda: solve_numpy(game, Tn, ETA)], args.reps)
    diff = max(float(np.abs(res.trajectory[i][:Tn] - traj[i]).max()) for i in range(N))
    with _OtherLoad() as load_eval:
        (te, te_all, _), (tc, tc_all, _) = _interleaved(
            [lambda: certified_evaluations(game, res), lambda: cce_curves(game, res, eval_every=T // 20)],
            max(3, args.reps // 2))
    out = {
        "case": {"N": N, "A_i": A, "S": S, "H": H, "joint_actions": A**N, "eta": ETA, "T_numba": T, "T_numpy": Tn,
                 "reps": args.reps},
        "numba": {"median_s": tk, "times_s": tk_all, "iterations_per_s": T / tk},
        "numpy": {"median_s": tn, "times_s": tn_all, "iterations_per_s": Tn / tn},
        "ratio": (T / tk) / (Tn / tn),
        "max_abs_trajectory_difference": diff,
        "other_load": load.as_dict(),
        "evaluation": {"algorithm3_every_iteration_s": te, "cce_curves_20_points_s": tc, "times_s": [te_all, tc_all],
                       "other_load": load_eval.as_dict()},
        "machine": _machine(),
    }
    print(f"Algorithm 2, N={N}, A_i={A}, S={S}, H={H} ({A**N} joint actions), eta={ETA}, medians of {args.reps}")
    print(f"  Numba kernel  T={T:6d}: {tk:8.3f} s  {T / tk:10.0f} it/s  (range {min(tk_all):.3f}-{max(tk_all):.3f} s)")
    print(f"  NumPy         T={Tn:6d}: {tn:8.3f} s  {Tn / tn:10.0f} it/s  (range {min(tn_all):.3f}-{max(tn_all):.3f} s)")
    print(f"  ratio (Numba it/s / NumPy it/s): {out['ratio']:.1f}; max |trajectory difference| {diff:.1e}")
    print(f"  other load {load.share:.1%} of the machine")
    print(f"  exact Algorithm 3 CCE-gap at every iteration (T={T}): {te:.3f} s; with both averages at 20 points: {tc:.3f} s"
          f" (other load {load_eval.share:.1%})")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
