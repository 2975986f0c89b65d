"""Benchmark: MAML over potential games (solvers.maml), Numba kernels vs the NumPy reference, side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_maml.py [--quick] [--out FILE.json]

Results and their reading: docs/benchmarks.md. A full run takes about 2 min on 2 cores.

Per game and backend (``numba``: solvers.maml_kernels; ``numpy``: the reference passes of solvers.maml):

- ``grad``: one exact gradient, grad Phi(theta) (value pass + gradient, Eq. 45);
- ``hvp``: one exact Hessian-vector product from scratch (value pass + tangent pass);
- ``tangent``: the tangent pass alone, on a kept value pass (what the meta-gradient pays per HVP:
  the inner loop already computed the value pass at theta^(t));
- ``outer``: one MAML outer step, Eq. (47): the meta-gradient summed over K = 2 games with T = 5
  inner steps (per game T + 1 gradients and T HVPs on kept value passes).

Ratios: HVP/gradient cost (goal <= 4, the issue's), tangent/gradient, outer / ((T+1) K grad), and
numpy/numba. Every timing is a median over repetitions that alternate the two backends after one
warm-up call each; "other load" is the share of the machine used by other processes meanwhile
(see benchmarks/bench_algorithm1.py). The backends' results are compared on every case. BLAS is
limited to one thread for the whole run (as inside a sweep trial, solvers._blas).

Games (solvers.potential_games): F.2 (H = 10, S = 2, 2 x 2 actions, D = 80 parameters), the
LQ-tracking game of F.3 (H = 10, 4 players, 625 states, 81 joint actions, product-state transitions,
D = 75 000) and its discounted variant (gamma = 0.9, H = 1, D = 7 500; MAML's setting in the paper).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._common import cpu_model, dirty, git
from benchmarks.bench_algorithm1 import _interleaved, _OtherLoad
from solvers import maml
from solvers._blas import single_threaded_blas
from solvers.potential_games import potential_family

INNER_T, INNER_ALPHA, K = 5, 0.05, 2


def _case(label, games, reps, reps_outer):
    gs = [maml.potential_game(g) for g in games]
    g = gs[0]
    rng = np.random.default_rng(0)
    theta, u = 0.5 * rng.normal(size=g.dim), rng.normal(size=g.dim)
    primal = {b: g.ops(b).primal(theta) for b in maml.BACKENDS}
    fns = {
        "grad": {b: (lambda b=b: maml.potential_gradient(theta, g, b)[1]) for b in maml.BACKENDS},
        "hvp": {b: (lambda b=b: maml.hessian_vector_product(theta, g, u, b)) for b in maml.BACKENDS},
        "tangent": {b: (lambda b=b: g.ops(b).tangent(primal[b], u)) for b in maml.BACKENDS},
        "outer": {b: (lambda b=b: sum(maml.meta_gradient(theta, x, INNER_T, INNER_ALPHA, b)[1] for x in gs))
                  for b in maml.BACKENDS},
    }
    row = {"case": label, "D": g.dim, "H": g.horizon, "S": g.num_states, "actions": list(g.actions),
           "discounted": g.gamma is not None, "inner_T": INNER_T, "K": K}
    for op, pair in fns.items():
        n = reps_outer if op == "outer" else reps
        with _OtherLoad() as load:
            (tk, all_k, out_k), (tn, all_n, out_n) = _interleaved([pair["numba"], pair["numpy"]], n)
        row[op] = {"numba_s": tk, "numpy_s": tn, "numpy_over_numba": tn / tk, "reps": n,
                   "numba_range_s": [min(all_k), max(all_k)], "numpy_range_s": [min(all_n), max(all_n)],
                   "max_abs_diff": float(np.max(np.abs(out_k - out_n))), "other_load": load.share}
    for b in maml.BACKENDS:
        grad = row["grad"][f"{b}_s"]
        row[f"ratio_hvp_over_grad_{b}"] = row["hvp"][f"{b}_s"] / grad
        row[f"ratio_tangent_over_grad_{b}"] = row["tangent"][f"{b}_s"] / grad
        row[f"ratio_outer_over_grads_{b}"] = row["outer"][f"{b}_s"] / ((INNER_T + 1) * K * grad)
    print(f"{label}  (D = {g.dim})", flush=True)
    for op in fns:
        r = row[op]
        print(f"  {op:<8} numba {r['numba_s'] * 1e3:10.3f} ms   numpy {r['numpy_s'] * 1e3:10.3f} ms   "
              f"numpy/numba {r['numpy_over_numba']:6.2f}x   |diff| {r['max_abs_diff']:.1e}   "
              f"other load {100 * r['other_load']:.0f}%", flush=True)
    for b in maml.BACKENDS:
        print(f"  {b:<6} HVP/grad {row[f'ratio_hvp_over_grad_{b}']:.2f}   tangent/grad "
              f"{row[f'ratio_tangent_over_grad_{b}']:.2f}   outer/((T+1)K grad) {row[f'ratio_outer_over_grads_{b}']:.2f}",
              flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--out", help="write the rows as JSON")
    args = ap.parse_args(argv)
    small, big, big_outer = (20, 3, 2) if args.quick else (300, 9, 5)
    print(f"git {git('rev-parse', '--short', 'HEAD')}{' (solvers/ dirty)' if dirty('solvers') else ''}  "
          f"{cpu_model()}  {os.cpu_count()} CPUs  python {platform.python_version()}", flush=True)
    with single_threaded_blas():  # both backends single-threaded, as in the sweep (solvers._blas)
        rows = _cases(small, big, big_outer)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"git": git("rev-parse", "HEAD"), "cpu": cpu_model(), "rows": rows}, fh, indent=1)
    return 0


def _cases(small, big, big_outer):
    return [
        _case("F.2 (paper-potential), H=10", potential_family("paper-potential", K, 0.1, 10, 0), small, small),
        _case("LQ tracking, H=10", potential_family("lq-tracking", K, 0.5, 10, 0), big, big_outer),
        _case("LQ tracking, discounted gamma=0.9", potential_family("lq-tracking", K, 0.5, 1, 0, gamma=0.9), big,
              big_outer),
    ]


if __name__ == "__main__":
    sys.exit(main())
