"""Benchmark: the Numba kernel of Algorithm 1 (solvers.algorithm1.solve) vs the NumPy reference
(benchmarks/numpy_algorithm1.py), side by side in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_algorithm1.py [--quick] [--out FILE.json] [--sections ABCDE]

Results and their reading: docs/benchmarks.md. A full run takes about 130 s on 2 cores.

Every timing is the wall time of one ``solve`` / ``solve_numpy`` call (game generation excluded),
taken after one warm-up call of each implementation with the same arguments; the repetitions
alternate Numba and NumPy calls. The table shows the median over the repetitions (the log also the
min-max range) and ratio = NumPy median / Numba median (> 1: the kernel is faster). BLAS threads are
left at their defaults unless the caller sets OPENBLAS_NUM_THREADS; the pools in use are printed.
The two implementations' results are compared on every case (max |difference| of the gap curve
and of mu_bar), so a benchmark of a wrong kernel does not pass unnoticed.

Cases
  A  F.1 game, H=10, T=1000, gap every iteration.
  B  random game H=10, S=200, A=B=4, T=300: gap every iteration, and gap only at T.
  C  random game H=10, S=2000, A=B=2, T=200, gap every 100 iterations (dense P is ~1.3 GB);
     C1 the same at the paper's T=1000.
  D  cost without evaluation vs S in {250, 500, 1000, 2000} (A=B=2, H=10, eval only at T):
     - per iteration, amortised: time(T=100) / 100 (includes the value updates at stage ends);
     - decomposition: medians of runs with T in FIT_TS = (1, 4, 7, 10 | 11, 14, 17, 21), each with
       its single evaluation at T; T <= 10 is stage 1 (no value update), 11 <= T <= 21 is stage 2
       (one value update). Least squares t(T) = c0 + c_iter T + c_update [T > 10] gives the cost of one
       iteration without value update (c_iter), of one value update (c_update) and of the call plus
       its one evaluation (c0). Per-iteration work is O(H S A B); a value update and an evaluation are
       O(H S^2 A B) (the dense P_h times vectors), so c_iter alone should grow linearly in S A B.
  E  start-up: first-call compile time of the kernel in a fresh process whose NUMBA_CACHE_DIR is an
     empty temporary directory, and a second process on the now warm cache (import + one tiny solve).

"other load" is the CPU time used by other processes on the machine (plus hypervisor steal) while a
case ran, as a share of the machine (wall x CPUs), from /proc/stat; timings with more than a few
per cent are contaminated (the machine may be shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._common import cpu_model, dirty, git  # noqa: E402
from benchmarks.numpy_algorithm1 import solve_numpy  # noqa: E402
from solvers.algorithm1 import solve  # noqa: E402
from solvers.generators import paper_zero_sum_game, random_zero_sum_game  # noqa: E402

ETA = 0.02


class _OtherLoad:
    """CPU time used on this machine by other processes (and stolen by the hypervisor) during a block.

    busy time from /proc/stat minus this process's and its children's user+system time. Reported as
    a share of the machine's capacity (wall time x CPUs): a timing is suspect when it is not ~0.
    """

    def __enter__(self):
        self._t0, self._busy0, self._steal0, self._own0 = time.perf_counter(), *self._read()
        return self

    def __exit__(self, *exc):
        busy1, steal1, own1 = self._read()
        self.wall_s = time.perf_counter() - self._t0
        self.other_cpu_s = max(0.0, (busy1 - self._busy0) - (own1 - self._own0))
        self.steal_s = steal1 - self._steal0
        self.share = (self.other_cpu_s + self.steal_s) / (self.wall_s * (os.cpu_count() or 1))
        return False

    @staticmethod
    def _read():
        tick = os.sysconf("SC_CLK_TCK")
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        except (OSError, ValueError):  # pragma: no cover - not Linux
            v = [0] * 8
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / tick
        own = sum(getattr(resource.getrusage(w), a) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for a in ("ru_utime", "ru_stime"))
        return busy, v[7] / tick, own

    def as_dict(self):
        return {"wall_s": self.wall_s, "other_cpu_s": self.other_cpu_s, "steal_s": self.steal_s, "share": self.share}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _interleaved(fns, reps):
    """One warm-up call of each function, then ``reps`` rounds calling them in turn (so slow drifts of
    the machine hit all of them alike). Returns, per function, (median, all times, last output)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            dt, outs[i] = _timed(fn)
            times[i].append(dt)
    return [(statistics.median(ts), ts, out) for ts, out in zip(times, outs)]


def _compare(game, T, reps, eval_every, label):
    with _OtherLoad() as load:
        (t_k, all_k, res_k), (t_n, all_n, res_n) = _interleaved(
            [lambda: solve(game, T, ETA, eval_every=eval_every),
             lambda: solve_numpy(game, T, ETA, eval_every=eval_every)], reps)
    H, S, A, B = game.shape
    row = {
        "case": label, "H": H, "S": S, "A": A, "B": B, "T": T,
        "eval_every": eval_every if eval_every is not None else 1,
        "n_evals": int(res_k.iterations.shape[0]), "reps": reps,
        "numba_median_s": t_k, "numpy_median_s": t_n, "ratio_numpy_over_numba": t_n / t_k,
        "numba_times_s": all_k, "numpy_times_s": all_n,
        "max_abs_diff_gap": float(np.max(np.abs(res_k.gap - res_n["gap"]))),
        "max_abs_diff_mu_bar": float(np.max(np.abs(res_k.mu_bar - res_n["mu_bar"]))),
        "final_gap": float(res_k.gap[-1]),
        "other_load": load.as_dict(),
    }
    print(f"  {label:<44} T={T:<5} evals={row['n_evals']:<5} numba {t_k:9.4f} s [{min(all_k):.4f}-{max(all_k):.4f}]   "
          f"numpy {t_n:9.4f} s [{min(all_n):.4f}-{max(all_n):.4f}]   ratio {t_n / t_k:7.2f}x   "
          f"|dgap|max {row['max_abs_diff_gap']:.1e}   other load {100 * load.share:.1f}%", flush=True)
    return row


#: Iteration counts of the decomposition fit (H = 10): 1..10 lie in stage 1 (no value update),
#: 11..21 in stage 2 (exactly one value update, after iteration 10). Every run evaluates once, at T.
FIT_TS = (1, 4, 7, 10, 11, 14, 17, 21)


def _scaling(S, T_amortised, reps, reps_fit, rng_seed, fit_ts=FIT_TS):
    game = random_zero_sum_game(10, S, (2, 2), np.random.default_rng(rng_seed))
    H, S, A, B = game.shape
    row = {"S": S, "SAB": S * A * B, "H": H, "T_amortised": T_amortised, "fit_T": list(fit_ts)}
    with _OtherLoad() as load:
        (a_k, all_ak, _), (a_n, all_an, _) = _interleaved(
            [lambda: solve(game, T_amortised, ETA, eval_every=T_amortised),
             lambda: solve_numpy(game, T_amortised, ETA, eval_every=T_amortised)], reps)
        fit = {"numba": [], "numpy": []}
        for T in fit_ts:
            (m_k, _, _), (m_n, _, _) = _interleaved(
                [lambda: solve(game, T, ETA, eval_every=T), lambda: solve_numpy(game, T, ETA, eval_every=T)], reps_fit)
            fit["numba"].append(m_k)
            fit["numpy"].append(m_n)
    row["other_load"] = load.as_dict()
    # least squares: t(T) = c0 + c_iter * T + c_update * [T > H]  (c0: call overhead + the one evaluation)
    X = np.array([[1.0, T, float(T > H)] for T in fit_ts])
    for impl, amort, amort_all in (("numba", a_k, all_ak), ("numpy", a_n, all_an)):
        y = np.array(fit[impl])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ coef
        row[impl] = {
            "amortised_per_iter_s": amort / T_amortised, "amortised_times_s": amort_all,
            "fit_medians_s": fit[impl],
            "c0_s": float(coef[0]), "per_iter_s": float(coef[1]), "value_update_s": float(coef[2]),
            "fit_rms_residual_s": float(np.sqrt(np.mean(resid ** 2))),
        }
        # The fit is only trusted when every term is positive and the residual is small against the
        # iterations' share of the fitted range (c_iter * (max T - min T)); noisy machines fail this.
        span = coef[1] * (max(fit_ts) - min(fit_ts))
        row[impl]["fit_reliable"] = bool(np.all(coef > 0) and row[impl]["fit_rms_residual_s"] <= 0.25 * span)
    n, k = row["numpy"], row["numba"]
    print(f"  S={S:<5} S*A*B={S * A * B:<6} amortised/iter: numba {k['amortised_per_iter_s'] * 1e3:8.3f} ms  "
          f"numpy {n['amortised_per_iter_s'] * 1e3:8.3f} ms  ratio {n['amortised_per_iter_s'] / k['amortised_per_iter_s']:5.2f}x | "
          f"fit per-iter: numba {k['per_iter_s'] * 1e3:7.3f} ms  numpy {n['per_iter_s'] * 1e3:7.3f} ms | "
          f"value update: numba {k['value_update_s'] * 1e3:7.1f} ms  numpy {n['value_update_s'] * 1e3:7.1f} ms | "
          f"eval+call: numba {k['c0_s'] * 1e3:6.1f} ms  numpy {n['c0_s'] * 1e3:6.1f} ms | "
          f"rms resid numba {k['fit_rms_residual_s'] * 1e3:.1f} numpy {n['fit_rms_residual_s'] * 1e3:.1f} ms | "
          f"fit reliable: numba {k['fit_reliable']} numpy {n['fit_reliable']} | other load {100 * load.share:.1f}%", flush=True)
    return row


_STARTUP_SNIPPET = r"""
import json, time
t0 = time.perf_counter()
from solvers.algorithm1 import solve
from solvers.generators import paper_zero_sum_game
t1 = time.perf_counter()
g = paper_zero_sum_game(2)
solve(g, 5, 0.02)
t2 = time.perf_counter()
solve(g, 5, 0.02)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_solve_s": t2 - t1, "second_solve_s": t3 - t2}))
"""


def _startup_process(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _STARTUP_SNIPPET], env=env, cwd=ROOT, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t0
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def _startup(reps):
    cold, warm = [], []
    with _OtherLoad() as load:
        for _ in range(reps):
            with tempfile.TemporaryDirectory(prefix="numba-cache-") as d:
                cold.append(_startup_process(d))  # empty cache: compiles every kernel
                warm.append(_startup_process(d))  # same directory, now populated: loads from cache
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    keys = ("import_s", "first_solve_s", "second_solve_s", "process_wall_s")
    res = {"reps": reps, "cold": {k: med(cold, k) for k in keys}, "warm": {k: med(warm, k) for k in keys},
           "cold_runs": cold, "warm_runs": warm, "other_load": load.as_dict()}
    for name in ("cold", "warm"):
        r = res[name]
        print(f"  {name:<4} cache: import {r['import_s']:6.3f} s   first solve {r['first_solve_s']:7.3f} s   "
              f"second solve {r['second_solve_s'] * 1e3:7.3f} ms   whole process {r['process_wall_s']:6.3f} s", flush=True)
    print(f"  other load {100 * load.share:.1f}%")
    return res


def _code_version():
    """Commit of the checkout and whether the benchmarked code differs from it (the kernel may change)."""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in_solvers": dirty("solvers"),
            "uncommitted_changes_in_benchmarks": dirty("benchmarks")}


def _machine():
    info = {"python": platform.python_version(), "numpy": np.__version__, "nproc": os.cpu_count(),
            "platform": platform.platform()}
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:  # pragma: no cover
        pass
    info["env"] = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    try:  # BLAS pools loaded so far (numpy's, and scipy's, which the kernel's np.dot calls); optional package
        from threadpoolctl import threadpool_info
        info["blas_pools"] = [{k: p.get(k) for k in ("filepath", "version", "num_threads")} for p in threadpool_info()]
    except ImportError:  # pragma: no cover
        info["blas_pools"] = None
    info["code"] = _code_version()
    if cpu_model():
        info["cpu"] = cpu_model()
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repetitions (smoke test)")
    ap.add_argument("--out", help="write all measurements to this JSON file")
    ap.add_argument("--sections", default="ABCDE",
                    help="subset of the cases to run, e.g. 'DE' (default: ABCDE, all; B includes B')")
    args = ap.parse_args(argv)
    q = args.quick
    sec = args.sections.upper()
    t_start = time.perf_counter()
    solve(paper_zero_sum_game(2), 3, ETA)  # compile (or load) the kernel before anything is timed
    machine = _machine()
    print(f"machine: {machine.get('cpu', '?')}, {machine['nproc']} CPUs; python {machine['python']}, "
          f"numpy {machine['numpy']}, numba {machine.get('numba', '?')}")
    code = machine["code"]
    print(f"code: commit {code['commit']}, uncommitted changes in solvers/: {code['uncommitted_changes_in_solvers']}, "
          f"in benchmarks/: {code['uncommitted_changes_in_benchmarks']}")
    print(f"thread env: {machine['env']}")
    for pool in machine.get("blas_pools") or []:
        print(f"BLAS pool: {os.path.basename(pool['filepath'])} {pool['version']} threads={pool['num_threads']}")
    print("times are medians of wall time per solve call after one warm-up call of each, Numba and NumPy calls "
          "alternating; ratio = numpy / numba (> 1: the Numba kernel is faster)\n")
    results = {"machine": machine, "quick": q, "eta": ETA, "cases": [], "scaling": [], "startup": None}

    results["sections"] = sec
    if any(c in sec for c in "ABC"):
        print("Curves and costs (A-C):")
    if "A" in sec:
        f1 = paper_zero_sum_game(10)
        results["cases"].append(_compare(f1, 100 if q else 1000, 3 if q else 7, None, "A  F.1 H=10, gap every iteration"))

    if "B" in sec:
        S_b = 40 if q else 200
        g = random_zero_sum_game(10, S_b, (4, 4), np.random.default_rng(1))
        T_b = 50 if q else 300
        results["cases"].append(_compare(g, T_b, 2 if q else 3, None, f"B  random S={S_b} A=B=4, gap every iteration"))
        results["cases"].append(_compare(g, T_b, 2 if q else 5, T_b, f"B' random S={S_b} A=B=4, gap only at T"))
        del g

    if "C" in sec:
        S_c = 300 if q else 2000
        t_gen, g = _timed(lambda: random_zero_sum_game(10, S_c, (2, 2), np.random.default_rng(2)))
        print(f"  (generated the S={S_c} game in {t_gen:.1f} s; dense P = {g.transitions.nbytes / 2**30:.2f} GiB)")
        results["cases"].append(_compare(g, 50 if q else 200, 2 if q else 3, 25 if q else 100,
                                         f"C  random S={S_c} A=B=2, gap every {25 if q else 100}"))
        if not q:  # the paper's T: iterations (where the kernel is 2-2.5x faster) weigh more than value updates
            results["cases"].append(_compare(g, 1000, 3, 100, f"C1 random S={S_c} A=B=2, T=1000, gap every 100"))
        del g

    if "D" in sec:
        print("\nCost without evaluation vs S (D), A=B=2, H=10, evaluation only at T:")
        for S in ((50, 100) if q else (250, 500, 1000, 2000)):
            results["scaling"].append(_scaling(S, 30 if q else 100, 2 if q else 3, 2 if q else 5, rng_seed=3))

    if "E" in sec:
        print("\nStart-up (E): fresh processes, NUMBA_CACHE_DIR = a new empty temporary directory, then the same "
              "directory again:")
        results["startup"] = _startup(1 if q else 3)

    _print_summary(results)
    shares = [r["other_load"]["share"] for r in results["cases"] + results["scaling"]]
    if results["startup"]:
        shares.append(results["startup"]["other_load"]["share"])
    if shares and max(shares) > 0.05:
        print(f"\nWARNING: other processes (or the hypervisor) used up to {100 * max(shares):.0f}% of the machine during "
              "this run; the affected timings are not clean. Rerun on an idle machine.")
    results["total_wall_s"] = time.perf_counter() - t_start
    print(f"\ntotal benchmark wall time {results['total_wall_s']:.1f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.out}")


def _print_summary(res):
    print("\nSummary table")
    if res["cases"]:
        _print_cases(res)
    if res["scaling"]:
        _print_scaling(res)
    if res["startup"]:
        _print_startup(res)


def _print_cases(res):
    print("| case | T | evaluations | reps | Numba median (s) [min-max] | NumPy median (s) [min-max] | NumPy / Numba | "
          "other load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["cases"]:
        k, n = r["numba_times_s"], r["numpy_times_s"]
        print(f"| {r['case']} | {r['T']} | {r['n_evals']} | {r['reps']} | {r['numba_median_s']:.4f} [{min(k):.4f}-{max(k):.4f}] | "
              f"{r['numpy_median_s']:.4f} [{min(n):.4f}-{max(n):.4f}] | {r['ratio_numpy_over_numba']:.2f} | "
              f"{100 * r['other_load']['share']:.1f}% |")


def _print_scaling(res):
    T_am = res["scaling"][0]["T_amortised"]
    print(f"\n| S | S·A·B | Numba ms/iter, amortised (T={T_am}) | NumPy ms/iter, amortised | NumPy / Numba | "
          "Numba ms/iter, fit (no value update) | NumPy ms/iter, fit | NumPy / Numba | "
          "Numba ns per (h,s,a,b) per iter | NumPy ns per (h,s,a,b) per iter | "
          "Numba ms per value update | NumPy ms per value update | Numba ms eval+call | NumPy ms eval+call | "
          "fit reliable (Numba/NumPy) | other load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in res["scaling"]:
        k, n = r["numba"], r["numpy"]
        cells = r["H"] * r["SAB"]
        print(f"| {r['S']} | {r['SAB']} | {k['amortised_per_iter_s'] * 1e3:.3f} | {n['amortised_per_iter_s'] * 1e3:.3f} | "
              f"{n['amortised_per_iter_s'] / k['amortised_per_iter_s']:.2f} | {k['per_iter_s'] * 1e3:.3f} | "
              f"{n['per_iter_s'] * 1e3:.3f} | {n['per_iter_s'] / k['per_iter_s']:.2f} | "
              f"{k['per_iter_s'] / cells * 1e9:.1f} | {n['per_iter_s'] / cells * 1e9:.1f} | "
              f"{k['value_update_s'] * 1e3:.1f} | {n['value_update_s'] * 1e3:.1f} | "
              f"{k['c0_s'] * 1e3:.1f} | {n['c0_s'] * 1e3:.1f} | "
              f"{'yes' if k['fit_reliable'] else 'NO'}/{'yes' if n['fit_reliable'] else 'NO'} | "
              f"{100 * r['other_load']['share']:.1f}% |")
    if any(not (r["numba"]["fit_reliable"] and r["numpy"]["fit_reliable"]) for r in res["scaling"]):
        print("NO = the decomposition fit is not trustworthy for that row (a negative term or a large residual: "
              "timing noise); use the amortised columns, or rerun with OPENBLAS_NUM_THREADS=1.")


def _print_startup(res):
    s = res["startup"]
    print(f"\n(start-up: other load {100 * s['other_load']['share']:.1f}%)")
    print("| process | import (s) | first solve (s) | second solve (ms) | whole process (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("cold", "empty NUMBA_CACHE_DIR (compiles)"), ("warm", "warm cache (second process)")):
        r = s[name]
        print(f"| {label} | {r['import_s']:.3f} | {r['first_solve_s']:.3f} | {r['second_solve_s'] * 1e3:.3f} | "
              f"{r['process_wall_s']:.3f} |")


if __name__ == "__main__":
    main()
