"""Benchmark: projected Q-ascent (Eq. 7) on large sparse N-player games (issue 9), side by side in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_large_potential.py [--states 10000 100000 1000000]
        [--iterations 10] [--reps 3] [--dense-states 2000] [--out FILE.json]

Results and their reading: docs/benchmarks.md ("Large sparse games: projected Q-ascent").

Every case runs in a fresh subprocess (its peak resident memory, VmHWM, is its own). It generates a
``random-sparse-identical`` game (N = 2 players, A = (2, 2), H = 5, k = 4 successors,
:func:`solvers.potential_games.random_sparse_identical_game`), loads the Numba cache with a
1-iteration run, then alternates ``reps`` times, on 1 Numba thread and on 2:

  * ``projected_q_ascent(n, eval_every=n)`` (evaluated at 0 and n only) for n = T and 2 T: T over
    the difference of their times is the iterations per second without evaluation. Every iteration
    still computes the values and averaged Q of pi^t (Eq. 7 needs them); an evaluation adds the
    best responses (NE-gap) and Phi (``evaluate_product_policy`` timed alone: "one evaluation");
  * ``projected_q_ascent(T, eval_every=1)``: iterations per second with the NE-gap every iteration.

The dense case converts a game with ``--dense-states`` states to dense (H, S, J, S) transitions
(S = 2000: 640 MB) and times the dense kernel against the sparse one on the same game (one thread
each: the dense path is serial), comparing the gap curves. Memory: VmRSS before the game, after
it, and VmHWM after one run with evaluation every 10 iterations; ratios to the game's arrays.
"other load" as in benchmarks/bench_algorithm1.py. Medians over ``reps``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.bench_algorithm1 import _OtherLoad  # noqa: E402
from benchmarks.bench_large import _status  # noqa: E402
from benchmarks._common import run_child  # noqa: E402

STEP = 0.1
H, ACTIONS, K_SUCC = 5, (2, 2), 4


def _game(S: int):
    import numpy as np

    from solvers.potential_games import random_sparse_identical_game

    return random_sparse_identical_game(H, S, ACTIONS, K_SUCC, np.random.default_rng(S))


def child(S: int, T: int, reps: int, dense: bool) -> dict:
    import numba
    import numpy as np

    from solvers.nplayer import uniform_policies
    from solvers.potential_eval import evaluate_product_policy
    from solvers.qascent import projected_q_ascent

    rss0 = _status("VmRSS")
    game = _game(S)
    rss_game = _status("VmRSS")
    projected_q_ascent(game, 1, STEP)  # loads the Numba cache
    evaluate_product_policy(game, uniform_policies(game))
    row = {"S": S, "T": T, "game_bytes": game.nbytes, "threads": {}}
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        one_eval, no_eval, every, loads = [], [], [], []
        for _ in range(reps):
            with _OtherLoad() as load:
                t0 = time.perf_counter()
                evaluate_product_policy(game, uniform_policies(game))
                one_eval.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                projected_q_ascent(game, T, STEP, eval_every=T)
                t1 = time.perf_counter()
                projected_q_ascent(game, 2 * T, STEP, eval_every=2 * T)
                no_eval.append((time.perf_counter() - t1) - (t1 - t0))
                t0 = time.perf_counter()
                res = projected_q_ascent(game, T, STEP, eval_every=1)
                every.append(time.perf_counter() - t0)
            loads.append(load.share)
        row["threads"][threads] = {
            "it_per_s_no_eval": T / statistics.median(no_eval),
            "it_per_s_gap_every_it": T / statistics.median(every), "one_evaluation_s": statistics.median(one_eval),
            "other_load": [round(x, 3) for x in loads], "final_gap": float(res.gap[-1])}
    numba.set_num_threads(1)
    if dense:
        d = game.to_dense()
        t0 = time.perf_counter()
        rd = projected_q_ascent(d, T, STEP, eval_every=1)
        td = time.perf_counter() - t0
        t0 = time.perf_counter()
        rs = projected_q_ascent(game, T, STEP, eval_every=1)
        ts = time.perf_counter() - t0
        row["dense"] = {"dense_transition_bytes": d.transitions.nbytes, "dense_it_per_s": T / td,
                        "sparse_it_per_s": T / ts, "max_gap_difference": float(np.abs(rd.gap - rs.gap).max())}
        del d
    else:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        projected_q_ascent(game, T, STEP, eval_every=10)
        peak = _status("VmHWM")
        row["memory"] = {"rss_baseline_bytes": rss0, "rss_after_game_bytes": rss_game, "rss_peak_bytes": peak,
                         "peak_over_game": peak / game.nbytes, "peak_minus_baseline_over_game": (peak - rss0) / game.nbytes}
    return row


def _run_child(S: int, T: int, reps: int, dense: bool) -> dict:
    return run_child(__file__, ["--child", S, "--iterations", T, "--reps", reps, *["--dense"] * dense], f"case S={S}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dense-states", type=int, default=2000, help="0 skips the dense comparison")
    ap.add_argument("--out")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.iterations, args.reps, args.dense)))
        return
    rows = [_run_child(S, args.iterations, args.reps, False) for S in args.states]
    if args.dense_states:
        rows.append(_run_child(args.dense_states, args.iterations, args.reps, True))
    print(f"projected Q-ascent, random-sparse-identical: N = 2, A = {ACTIONS}, H = {H}, k = {K_SUCC}, "
          f"T = {args.iterations}, step {STEP}, medians of {args.reps}")
    for r in rows:
        for th, v in r["threads"].items():
            print(f"S={r['S']:>8} threads={th}: {v['it_per_s_no_eval']:8.2f} it/s no evaluation, "
                  f"{v['it_per_s_gap_every_it']:8.2f} it/s gap every iteration, one evaluation "
                  f"{1e3 * v['one_evaluation_s']:.1f} ms, other load {v['other_load']}")
        if "memory" in r:
            m = r["memory"]
            print(f"   game {r['game_bytes'] / 2**30:.3f} GiB, peak {m['rss_peak_bytes'] / 2**30:.3f} GiB = "
                  f"{m['peak_over_game']:.2f} x game ({m['peak_minus_baseline_over_game']:.2f} x without the interpreter)")
        if "dense" in r:
            d = r["dense"]
            print(f"   dense ({d['dense_transition_bytes'] / 2**20:.0f} MB) {d['dense_it_per_s']:.2f} it/s vs sparse "
                  f"{d['sparse_it_per_s']:.2f} it/s (1 thread, gap every iteration); gap curves differ by "
                  f"{d['max_gap_difference']:.2g}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
