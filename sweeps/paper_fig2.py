"""The paper's Figure 2 experiment (Appendix F.1) on one machine: individual vs meta learning with
Algorithm 1 on K perturbed copies of the F.1 game, for several family seeds and both readings of
the stage reset (NOTES.md). Writes curves (Parquet), a figure (PNG, SVG) and a summary, and prints
a result table on stderr; the JSON summary is the command's last stdout line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import numpy as np

from solvers.evaluate import nash_equilibrium
from solvers.generators import game_family
from solvers.meta import default_alpha, run_sequence
from tracking.curves import concat_curves, curve_table, write_curves

log = logging.getLogger("metasweep")

READINGS = (True, False)  # stage_reset: the paper's text, then the no-reset variant
REPORT_AT = (10, 100, 1000)


def run_fig2(args) -> dict:
    K, H, T, seeds = args.K, args.horizon, args.iterations, list(args.seeds)
    if args.smoke_test:
        K, T, seeds = 3, 100, seeds[:2]
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    tables, rows = [], []
    curves = {}  # (stage_reset, method) -> list over seeds of K-averaged (gap, value)
    families = {seed: game_family("paper-zero-sum", K, args.sigma, H, seed) for seed in seeds}
    # reference: the K-averaged Nash value V*_1(s_1) of each family (exact, by LP)
    nash_value = float(np.mean([np.mean([nash_equilibrium(g).value for g in fam]) for fam in families.values()]))
    for stage_reset in READINGS:
        for seed in seeds:
            games = families[seed]
            results = run_sequence(games, T, args.eta, alpha=args.alpha, stage_reset=stage_reset)
            for method, mres in results.items():
                for k, run in enumerate(mres.runs):
                    tables.append(curve_table(method, k, run.result, seed=seed, stage_reset=stage_reset))
                curves.setdefault((stage_reset, method), []).append((mres.mean_gap, mres.mean_value))
                rows.append({"stage_reset": stage_reset, "seed": seed, "method": method, **mres.summary()})
            log.info("stage_reset=%s seed=%d done (%.1fs)", stage_reset, seed, time.perf_counter() - t0)
    iterations = np.arange(1, T + 1)
    curve_path = os.path.join(args.out, "curves.parquet")
    write_curves(curve_path, concat_curves(tables))
    figure_paths = _plot(curves, iterations, K, H, T, args, args.out, nash_value)
    table = _table(curves, rows, iterations)
    print(table + f"\nK-averaged Nash value V*(s1) (LP): {nash_value:.4f}", file=sys.stderr)
    summary = {
        "experiment": "paper-fig2",
        "K": K, "H": H, "T": T, "eta": args.eta, "sigma": args.sigma, "seeds": seeds,
        "alpha": args.alpha if args.alpha is not None else default_alpha(K),
        "nash_value_mean": nash_value,
        "results": _aggregate(curves, rows, iterations),
        "curves": curve_path,
        "figures": figure_paths,
        "seconds": time.perf_counter() - t0,
    }
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=float)
    return summary


def _aggregate(curves, rows, iterations) -> list[dict]:
    out = []
    for (stage_reset, method), per_seed in curves.items():
        gaps = np.array([g for g, _ in per_seed])
        vals = np.array([v for _, v in per_seed])
        mine = [r for r in rows if r["stage_reset"] == stage_reset and r["method"] == method]
        entry = {
            "stage_reset": stage_reset,
            "method": method,
            "final_gap_mean": float(gaps[:, -1].mean()),
            "final_gap_std": float(gaps[:, -1].std()),
            "final_value_mean": float(vals[:, -1].mean()),
            "delta_mean": float(np.mean([r["delta"] for r in mine])),
            "gap_at": {int(t): float(gaps[:, t - 1].mean()) for t in REPORT_AT if t <= iterations[-1]},
        }
        if method == "meta":
            entry["theorem2_intermediate_mean"] = float(np.mean([r["theorem2"]["intermediate"] for r in mine]))
            entry["theorem2_conditions_hold"] = all(r["theorem2"]["conditions_hold"] for r in mine)
        out.append(entry)
    return out


def _table(curves, rows, iterations) -> str:
    T = iterations[-1]
    at = [t for t in REPORT_AT if t <= T] or [T]
    if T not in at:
        at.append(T)
    head = f"{'stage_reset':<12}{'method':<11}" + "".join(f"{'gap@' + str(t):>16}" for t in at) + f"{'value@T':>9}{'Delta':>10}"
    lines = ["K-averaged NE-gap (mean ± std over seeds) of the running-average policy", head, "-" * len(head)]
    for (stage_reset, method), per_seed in curves.items():
        gaps = np.array([g for g, _ in per_seed])
        vals = np.array([v for _, v in per_seed])
        delta = np.mean([r["delta"] for r in rows if r["stage_reset"] == stage_reset and r["method"] == method])
        cells = "".join(f"{gaps[:, t - 1].mean():>9.4f}±{gaps[:, t - 1].std():<6.4f}" for t in at)
        lines.append(f"{str(stage_reset):<12}{method:<11}{cells}{vals[:, -1].mean():>9.4f}{delta:>10.1f}")
    return "\n".join(lines)


def _plot(curves, iterations, K, H, T, args, out_dir, nash_value) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    colors = {"individual": "tab:blue", "meta": "tab:red"}
    for col, stage_reset in enumerate(READINGS):
        for method in ("individual", "meta"):
            per_seed = curves[(stage_reset, method)]
            for row, idx in ((0, 0), (1, 1)):
                data = np.array([c[idx] for c in per_seed])
                m, s = data.mean(0), data.std(0)
                ax = axes[row, col]
                ax.plot(iterations, m, color=colors[method], label=method)
                ax.fill_between(iterations, m - s, m + s, color=colors[method], alpha=0.2, linewidth=0)
        axes[1, col].axhline(nash_value, color="k", linestyle="--", linewidth=1, label="Nash value (LP)")
        axes[1, col].legend()
        axes[0, col].set_title(f"stage_reset={stage_reset}" + (" (paper's text)" if stage_reset else " (variant)"))
        axes[0, col].set_ylabel("K-averaged NE-gap")
        axes[1, col].set_ylabel("K-averaged value V(s1)")
        axes[1, col].set_xlabel("iteration t")
        axes[0, col].set_xscale("log")
        axes[0, col].legend()
    fig.suptitle(f"Figure 2 setting (F.1): K={K}, H={H}, T={T}, eta={args.eta}, sigma={args.sigma}; band = ±1 std over seeds")
    fig.tight_layout()
    paths = []
    for ext in ("png", "svg"):
        p = os.path.join(out_dir, f"fig2.{ext}")
        fig.savefig(p, dpi=110)
        paths.append(p)
    plt.close(fig)
    return paths
