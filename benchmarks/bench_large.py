"""Benchmark: Algorithm 1 on large sparse zero-sum games (issue 9), side by side in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_large.py [--states 10000 100000 1000000] [--rounds 2]
        [--reps 3] [--iterations 30] [--dense-states 2000] [--out FILE.json]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_large.py --decompose 1000000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_large.py --compare-state 1000000 --iterations 100 --reps 3

Results and their reading: docs/benchmarks.md.

Every case runs in a fresh subprocess (so its peak resident memory, /proc/self/status VmHWM, is its
own): it generates a random sparse game (H = 5, A = B = 2, k = 4 successors,
solvers.generators.random_sparse_zero_sum_game), loads the Numba cache with a 2-iteration solve,
then alternates ``reps`` times

  * ``solve(T, eval_every=T)``  (one evaluation, at T), minus the median time of one exact
    evaluation of a policy (``evaluate_policy``), gives the iterations per second without gap
    evaluation (stage-end value updates included, as in any run);
  * ``solve(T1, eval_every=1)``, T1 = min(T, 10): iterations per second with the NE-gap of the
    running average after every iteration (a shorter run: every iteration costs an evaluation);
  * ``solve(T, eval_every=10)``: the same with evaluation every 10 iterations.

``store_hindsight=False`` (no per-stage best responses in hindsight: a solve-only run). The
dense case converts a sparse game with ``--dense-states`` states to dense (H, S, A, B, S)
transitions (the largest that fits comfortably: S = 2000 is 640 MB) and times the dense kernel
against the sparse kernel on the same game, with both curves compared.

Memory: VmRSS before the game (interpreter, NumPy, Numba), after the first compiled function has
initialised Numba's LLVM JIT (the "runtime", about 60 MB more, paid once by any process that runs a
kernel), after generating the game, and VmHWM at the end; ``peak / game``, ``(peak - baseline) /
game`` and ``(peak - runtime) / game`` (what grows with the game) with game = rewards + transition arrays.

Physical limit per iteration (printed): a Numba parallel triad over 2 x 512 MB arrays gives the
machine's streaming bandwidth, a parallel exp loop its exp throughput, both measured in the same
child under the same load. One iteration must stream Q (read, A B floats per cell), pol and D of
both players (read + write, 2 (A + B) floats; 4 on the compact two-action state) and W (read + write,
1 float) = 8 (AB + 4(A+B) + 2) bytes per cell, 8 (AB + 8 + 2) = 112 B at A = B = 2, and evaluate (A - 1) + (B - 1) exps per cell. The limit is
max(bytes / bandwidth, exps x time per exp); ``fraction`` = limit / measured time per iteration.

"other load": CPU time used by other processes during the timed block as a share of the machine
(benchmarks.bench_algorithm1._OtherLoad); other helpers keep this machine busy, so every timing
says how contaminated it is. The parent runs the cases round-robin ``--rounds`` times and reports
medians over rounds.
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

ETA = 0.02
H, A, B, K_SUCC = 5, 2, 2, 4


def _status(key: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


def _machine_limits() -> dict:
    """Streaming bandwidth (parallel triad) and exp throughput (parallel loop), measured here."""
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True)
    def triad(x, y, a):
        for i in prange(x.shape[0]):
            x[i] = y[i] + a * x[i]

    @njit(parallel=True)
    def exps(x):
        s = 0.0
        for i in prange(x.shape[0]):
            s += np.exp(x[i])
        return s

    n = 64 * 2**20  # 512 MB per array
    x, y = np.ones(n), np.full(n, 0.5)
    triad(x[:1000], y[:1000], 0.1)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        triad(x, y, 0.1)
        times.append(time.perf_counter() - t0)
    bw = 3 * 8 * n / statistics.median(times)  # read x, y, write x
    del x, y
    z = np.random.default_rng(0).random(10**7) - 0.5
    exps(z[:100])
    t_exp = []
    for _ in range(5):
        t0 = time.perf_counter()
        exps(z)
        t_exp.append(time.perf_counter() - t0)
    return {"bandwidth_Bps": bw, "exp_s": statistics.median(t_exp) / z.shape[0]}


def child(S: int, T: int, reps: int, dense: bool) -> dict:
    """One case in this (fresh) process; returns the JSON row."""
    import numpy as np

    from benchmarks.bench_algorithm1 import _OtherLoad
    from solvers.algorithm1 import solve
    from solvers.evaluate import evaluate_policy
    from solvers.generators import random_sparse_zero_sum_game

    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    game = random_sparse_zero_sum_game(H, S, (A, B), K_SUCC, np.random.default_rng(S))
    t_gen = time.perf_counter() - t0
    rss_game = _status("VmRSS")
    row = {"S": S, "H": H, "A": A, "B": B, "k": K_SUCC, "T": T, "reps": reps, "generate_s": t_gen,
           "game_bytes": game.nbytes, "rss_baseline_bytes": rss0, "rss_after_game_bytes": rss_game}
    import numba

    row["numba_threads"] = numba.get_num_threads()
    row["threading_layer"] = None
    kw = dict(store_hindsight=False)
    T1 = min(T, 10)
    if dense:
        dgame = game.to_dense()
        row["dense_game_bytes"] = dgame.nbytes
        solve(dgame, 2, ETA)
        solve(game, 2, ETA, **kw)
        fns = {"dense_noeval": lambda: solve(dgame, T, ETA, eval_every=T),
               "sparse_noeval": lambda: solve(game, T, ETA, eval_every=T, **kw),
               "dense_eval1": lambda: solve(dgame, T1, ETA, eval_every=1),
               "sparse_eval1": lambda: solve(game, T1, ETA, eval_every=1, **kw)}
    else:
        solve(game, 2, ETA, **kw)
        fns = {"noeval": lambda: solve(game, T, ETA, eval_every=T, **kw),
               "eval10": lambda: solve(game, T, ETA, eval_every=10, **kw),
               "eval1": lambda: solve(game, T1, ETA, eval_every=1, **kw)}
    row["threading_layer"] = numba.threading_layer()
    mu = np.full((H, S, A), 1.0 / A)
    nu = np.full((H, S, B), 1.0 / B)
    evaluate_policy(game, mu, nu)
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    t_evals, c_evals, outs, loads = [], [], {}, []
    for _ in range(reps):
        with _OtherLoad() as load:
            te, ce = time.perf_counter(), time.process_time()
            evaluate_policy(game, mu, nu)
            t_evals.append(time.perf_counter() - te)
            c_evals.append(time.process_time() - ce)
            for name, fn in fns.items():
                ts, cs = time.perf_counter(), time.process_time()
                outs[name] = fn()
                times[name].append(time.perf_counter() - ts)
                cpu[name].append(time.process_time() - cs)
                outs[name] = outs[name].gap  # keep only the curve (the policies would inflate the peak)
        loads.append(load.share)
    row["cpu_s"] = cpu
    row["eval_one_cpu_s"] = statistics.median(c_evals)
    t_eval = statistics.median(t_evals)
    row["eval_one_s"] = t_eval
    row["times_s"] = times
    row["other_load_shares"] = loads
    med = {name: statistics.median(ts) for name, ts in times.items()}
    row["median_s"] = med
    if dense:
        row["dense_iters_per_s_noeval"] = T / med["dense_noeval"]
        row["sparse_iters_per_s_noeval"] = T / med["sparse_noeval"]
        row["dense_iters_per_s_eval1"] = T1 / med["dense_eval1"]
        row["sparse_iters_per_s_eval1"] = T1 / med["sparse_eval1"]
        row["max_abs_diff_gap"] = float(np.max(np.abs(outs["dense_eval1"] - outs["sparse_eval1"])))
    else:
        row["iters_per_s_noeval"] = T / max(med["noeval"] - t_eval, 1e-12)
        row["iters_per_s_eval10"] = T / med["eval10"]
        row["iters_per_s_eval1"] = T1 / med["eval1"]
        row["final_gap"] = float(outs["eval1"][-1])
        # CPU seconds (all threads) per iteration: less sensitive to other load than wall time
        row["cpu_per_iter_noeval_s"] = max(statistics.median(cpu["noeval"]) - row["eval_one_cpu_s"], 0.0) / T
        row["rss_peak_bytes"] = _status("VmHWM")  # before the limit probes allocate their own arrays
        lim = _machine_limits()
        cells = H * S
        bytes_iter = cells * 8 * (A * B + (8 if A == B == 2 else 4 * (A + B)) + 2)  # compact two-action state
        exps_iter = cells * ((A - 1) + (B - 1))
        t_iter = 1.0 / row["iters_per_s_noeval"]
        t_limit = max(bytes_iter / lim["bandwidth_Bps"], exps_iter * lim["exp_s"])
        row["limit"] = {**lim, "bytes_per_iter": bytes_iter, "exps_per_iter": exps_iter,
                        "t_bytes_s": bytes_iter / lim["bandwidth_Bps"], "t_exps_s": exps_iter * lim["exp_s"],
                        "t_limit_s": t_limit, "t_measured_s": t_iter, "fraction": t_limit / t_iter}
    row.setdefault("rss_peak_bytes", _status("VmHWM"))
    row["peak_over_game"] = row["rss_peak_bytes"] / game.nbytes
    row["peak_minus_baseline_over_game"] = (row["rss_peak_bytes"] - rss0) / game.nbytes
    return row


def memory_child(S: int, T: int) -> dict:
    """Peak resident memory of: generate the game, one solve (evaluation every 10 iterations), nothing else."""
    import numpy as np

    from solvers.algorithm1 import solve
    from solvers.generators import random_sparse_zero_sum_game

    from solvers.sparse import _logistic

    rss0 = _status("VmRSS")
    _logistic(0.0)  # the first compiled function a process loads initialises Numba's LLVM JIT (~60 MB, once)
    rss_runtime = _status("VmRSS")
    game = random_sparse_zero_sum_game(H, S, (A, B), K_SUCC, np.random.default_rng(S))
    rss_game = _status("VmRSS")
    res = solve(game, T, ETA, eval_every=10, store_hindsight=False)
    peak = _status("VmHWM")
    cells = H * S
    # the kernel's work arrays (solvers/sparse.py): Q, policy, D and output sum per player (one float each on
    # the compact two-action state), W, two evaluation buffers
    players = 6 if A == B == 2 else 3 * (A + B)
    state = 8 * cells * (A * B + players) + 8 * (cells + S) + 2 * 8 * S * 3
    return {"S": S, "T": T, "game_bytes": game.nbytes, "rss_baseline_bytes": rss0, "rss_after_game_bytes": rss_game,
            "rss_peak_bytes": peak, "state_bytes_expected": state, "peak_over_game": peak / game.nbytes,
            "peak_minus_baseline_over_game": (peak - rss0) / game.nbytes, "rss_runtime_bytes": rss_runtime,
            "peak_minus_runtime_over_game": (peak - rss_runtime) / game.nbytes,
            "solve_extra_over_expected_state": (peak - rss_game) / state, "final_gap": float(res.gap[-1])}


def compare_state(S: int, T: int, reps: int) -> dict:
    """Side by side in one process: the compact two-action state vs the generic (H, S, 2) state
    (``solvers.sparse.COMPACT_TWO_ACTION``), one solve of T iterations evaluated only at T each,
    alternating, after one untimed solve of each; wall seconds per solve and the curves' difference."""
    import numpy as np

    from solvers import sparse
    from solvers.algorithm1 import solve
    from solvers.generators import random_sparse_zero_sum_game

    game = random_sparse_zero_sum_game(H, S, (A, B), K_SUCC, np.random.default_rng(S))
    times, gaps = {True: [], False: []}, {}
    for r in range(reps + 1):
        for compact in (True, False):
            sparse.COMPACT_TWO_ACTION = compact
            t0 = time.perf_counter()
            res = solve(game, T, ETA, eval_every=T, store_hindsight=False)
            if r:
                times[compact].append(time.perf_counter() - t0)
            gaps[compact] = res.gap
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"S": S, "T": T, "compact_s": times[True], "generic_s": times[False],
            "compact_iters_per_s": T / med[True], "generic_iters_per_s": T / med[False],
            "generic_over_compact_time": med[False] / med[True],
            "max_gap_difference": float(np.max(np.abs(gaps[True] - gaps[False])))}


def decompose(S: int, family: str, reps: int = 3) -> dict:
    """Wall and CPU ms of the three parts of a run at S (random-sparse or poker-standin game, A = B = 2):
    one iteration (the two-action step on every cell), one stage end (value update, no hindsight),
    one exact evaluation of the running average. Random successors make the last two gather-bound."""
    import numpy as np

    from solvers import sparse
    from solvers.generators import poker_standin_game, random_sparse_zero_sum_game

    g = (random_sparse_zero_sum_game(H, S, (A, B), K_SUCC, np.random.default_rng(0)) if family == "random-sparse"
         else poker_standin_game(H, S, (A, B), K_SUCC, 8))
    C, rng = H * S, np.random.default_rng(0)
    Q, W = rng.random((C, A, B)), np.zeros(C + S)
    W[:C] = rng.random(C)
    lm, m0 = np.broadcast_to(np.full(A, -np.log(A)), (C, A)), np.broadcast_to(np.full(A, 1.0 / A), (C, A))
    mu, nu, d_mu, d_nu = (np.full((C, 1), 0.5) for _ in range(4))  # the compact two-action state
    ms, ns, none = np.zeros((C, 1)), np.zeros((C, 1)), np.empty((0, 1))
    bad, scratch, out = np.zeros(sparse.N_CHUNKS, dtype=np.int64), np.empty((sparse.N_CHUNKS, 2 * (A + B))), np.empty(3)
    r2, n2, p2 = g.rewards.reshape(C, A, B), g.transition_next.reshape(C, A, B, K_SUCC), g.transition_prob.reshape(C, A, B, K_SUCC)
    parts = {
        "iteration": lambda: sparse._iterate_2x2(Q, lm, lm, m0, m0, none, none, True, ETA, 1.0, mu, nu, d_mu, d_nu, W,
                                                 sparse.N_CHUNKS, bad),
        "value_update": lambda: sparse._stage_end_2x2(r2, n2, p2, Q, W, 10.0, True, True, ETA, mu, nu, d_mu, d_nu, ms,
                                                      ns, none, none, False, none, none, False, 1e-9, scratch, S),
        "evaluation": lambda: sparse._evaluate_sparse(g.rewards, g.transition_next, g.transition_prob, g.initial_state,
                                                      ms, ns, d_mu, d_nu, mu, nu, True, 0.1, np.empty((S, 3)),
                                                      np.empty((S, 3)), np.empty((sparse.N_CHUNKS, A + 2 * B)), out),
    }
    row = {"S": S, "family": family}
    for name, fn in parts.items():
        fn()
        wall, cpu = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        row[name] = {"wall_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu)}
    return row


def _run_child(S, T, reps, dense, memory=False) -> dict:
    from benchmarks._common import run_child

    flags = ["--dense"] * dense + ["--memory"] * memory
    return run_child(__file__, ["--child", S, "--iterations", T, "--reps", reps, *flags], f"case S={S}")


def _print(row):
    gib = 2**30
    mem = (f"game {row['game_bytes'] / gib:.3f} GiB  baseline {row['rss_baseline_bytes'] / gib:.3f}  "
           f"peak {row['rss_peak_bytes'] / gib:.3f} GiB  peak/game {row['peak_over_game']:.2f}  "
           f"(peak-baseline)/game {row['peak_minus_baseline_over_game']:.2f}")
    load = "other load " + "/".join(f"{100 * x:.0f}%" for x in row["other_load_shares"])
    if "dense_iters_per_s_noeval" in row:
        print(f"  dense vs sparse S={row['S']:<8} it/s no eval: dense {row['dense_iters_per_s_noeval']:8.1f} "
              f"sparse {row['sparse_iters_per_s_noeval']:8.1f} | eval every it: dense {row['dense_iters_per_s_eval1']:8.1f} "
              f"sparse {row['sparse_iters_per_s_eval1']:8.1f} | |dgap| {row['max_abs_diff_gap']:.1e} | {load}", flush=True)
        print(f"    {mem}  (dense game {row['dense_game_bytes'] / gib:.3f} GiB)", flush=True)
        return
    lim = row["limit"]
    print(f"  S={row['S']:<8} it/s: no eval {row['iters_per_s_noeval']:8.2f}  eval/10 {row['iters_per_s_eval10']:8.2f}  "
          f"eval/1 {row['iters_per_s_eval1']:8.2f}  one eval {row['eval_one_s'] * 1e3:8.1f} ms | {load}", flush=True)
    print(f"    {mem}", flush=True)
    print(f"    CPU time (all threads) per iteration without evaluation {row['cpu_per_iter_noeval_s'] * 1e3:.1f} ms", flush=True)
    print(f"    limit/iter: {lim['bytes_per_iter'] / 1e9:.3f} GB at {lim['bandwidth_Bps'] / 1e9:.1f} GB/s = "
          f"{lim['t_bytes_s'] * 1e3:.1f} ms, {lim['exps_per_iter'] / 1e6:.1f} M exps at {lim['exp_s'] * 1e9:.2f} ns = "
          f"{lim['t_exps_s'] * 1e3:.1f} ms; measured {lim['t_measured_s'] * 1e3:.1f} ms/iter -> {100 * lim['fraction']:.0f}% of the limit",
          flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--states", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dense-states", type=int, default=2000, help="S of the dense vs sparse case (0: skip)")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", help="write all rows as JSON")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--decompose", type=int, metavar="S",
                    help="only time one iteration, one value update and one evaluation at S states "
                         "(random-sparse and poker-standin), with the other load")
    ap.add_argument("--compare-state", type=int, metavar="S",
                    help="only time the compact two-action state against the generic one at S states, side by side "
                         "(--iterations per solve, --reps pairs), with the other load")
    args = ap.parse_args(argv)
    if args.compare_state:
        from benchmarks.bench_algorithm1 import _OtherLoad

        with _OtherLoad() as load:
            row = compare_state(args.compare_state, args.iterations, args.reps)
        print(json.dumps({**row, "other_load": load.share}), flush=True)
        return
    if args.decompose:
        from benchmarks.bench_algorithm1 import _OtherLoad

        for family in ("random-sparse", "poker-standin"):
            with _OtherLoad() as load:
                row = decompose(args.decompose, family)
            print(json.dumps({**row, "other_load": load.share}), flush=True)
        return
    if args.child:
        if args.memory:
            print(json.dumps(memory_child(args.child, args.iterations)))
        else:
            print(json.dumps(child(args.child, args.iterations, args.reps, args.dense)))
        return
    from benchmarks._common import cpu_model, dirty, git

    print(f"bench_large: git {git('rev-parse', '--short', 'HEAD')} (solvers dirty: {dirty('solvers')}), "
          f"{cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    rows = []
    cases = [(S, False) for S in args.states] + ([(args.dense_states, True)] if args.dense_states else [])
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for S, dense in cases:
            row = _run_child(S, args.iterations, args.reps, dense)
            row["round"] = r
            rows.append(row)
            _print(row)
    print("peak memory (fresh process: generate the game, one solve with T iterations, evaluation every 10):")
    for S in args.states:
        m = _run_child(S, args.iterations, 1, False, memory=True)
        rows.append({"memory": m})
        gib = 2**30
        print(f"  S={S:<8} game {m['game_bytes'] / gib:.3f} GiB  baseline {m['rss_baseline_bytes'] / gib:.3f}  "
              f"after game {m['rss_after_game_bytes'] / gib:.3f}  peak {m['rss_peak_bytes'] / gib:.3f} GiB  "
              f"peak/game {m['peak_over_game']:.2f}  (peak-baseline)/game {m['peak_minus_baseline_over_game']:.2f}  "
              f"runtime (baseline + Numba's JIT) {m['rss_runtime_bytes'] / gib:.3f}  "
              f"(peak-runtime)/game {m['peak_minus_runtime_over_game']:.2f}  "
              f"solve's own (peak - after game) / expected work arrays {m['solve_extra_over_expected_state']:.2f}", flush=True)
    print("medians over rounds:")
    for S, dense in cases:
        rs = [x for x in rows if x.get("S") == S and ("dense_iters_per_s_noeval" in x) == dense]
        keys = (["dense_iters_per_s_noeval", "sparse_iters_per_s_noeval", "dense_iters_per_s_eval1", "sparse_iters_per_s_eval1"]
                if dense else ["iters_per_s_noeval", "iters_per_s_eval10", "iters_per_s_eval1", "cpu_per_iter_noeval_s"])
        med = {k: statistics.median(x[k] for x in rs) for k in keys + ["peak_over_game", "peak_minus_baseline_over_game"]}
        loads = [s for x in rs for s in x["other_load_shares"]]
        print(f"  S={S:<8} {'dense-vs-sparse ' if dense else ''}" + "  ".join(f"{k} {v:.2f}" for k, v in med.items())
              + f"  other load median {100 * statistics.median(loads):.0f}%", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
