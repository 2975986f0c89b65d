"""Figures of ``metasweep report`` (matplotlib, Agg), in the style of the paper's Figures 1-4.

Every function draws one figure and saves it as PNG and SVG under the given stem; it returns the
PNG path. Bands are mean +/- standard deviation over the runs of a group (seeds), as the paper's
shaded areas. Colours: individual learning blue, dashed; meta-learning red, solid (the paper's).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

__all__ = ["save", "convergence_figure", "ne_games_figure", "vs_param_figure", "scatter_figure", "bound_ratio_figure",
           "rate_fit_figure", "STYLE"]

STYLE = {"individual": dict(color="tab:blue", linestyle="--", label="Individual"),
         "meta": dict(color="tab:red", linestyle="-", label="Meta-learning")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _wrap(title: str, width: int = 75) -> str:
    return "\n".join(textwrap.fill(part, width) for part in title.split("\n"))


def save(fig, stem: str) -> str:
    for ax in fig.axes:
        ax.set_title(_wrap(ax.get_title()), fontsize=9)
    if fig._suptitle is not None:
        fig._suptitle.set_text(_wrap(fig._suptitle.get_text(), 110))
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=110)
    fig.savefig(stem + ".svg")
    _plt().close(fig)
    return stem + ".png"


def _style(method: str) -> dict:
    return STYLE.get(method, dict(label=method))


def band(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) of several (steps, values) curves on the first curve's steps (others interpolated)."""
    steps = series[0][0]
    vals = np.array([v if (len(s) == len(steps) and np.array_equal(s, steps)) else np.interp(steps, s, v) for s, v in series])
    return steps, vals.mean(axis=0), vals.std(axis=0)


def convergence_figure(panels: list[tuple[str, dict]], title: str, xlabel: str, stem: str) -> str:
    """One panel per (y label, {method: [(steps, values) per seed]}): mean +/- std band per method."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (ylabel, by_method) in zip(axes[0], panels):
        for method, series in by_method.items():
            if not series:
                continue
            st, m, s = band(series)
            sty = _style(method)
            ax.plot(st, m, **sty)
            ax.fill_between(st, m - s, m + s, color=sty.get("color"), alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return save(fig, stem)


def ne_games_figure(points: dict, title: str, stem: str) -> str:
    """Figure 1(c): per panel title -> ({state: [(p(a_0), p(b_0)) per game]}, {state: base game's point})."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(points), figsize=(4.0 * len(points), 4.3), squeeze=False)
    markers = ["o", "s", "^", "D", "v", "P"]
    for ax, (label, (by_state, base)) in zip(axes[0], points.items()):
        for i, (state, pts) in enumerate(by_state.items()):
            pts = np.asarray(pts)
            sc = ax.scatter(pts[:, 0], pts[:, 1], marker=markers[i % len(markers)], alpha=0.75, label=f"state s{state}")
            if state in base:
                ax.scatter(*base[state], marker="x", s=80, color=sc.get_facecolor()[0], linewidths=2)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("max-player P(a0)")
        ax.set_ylabel("min-player P(b0)")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return save(fig, stem)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, stem: str, logx: bool, logy: bool) -> str:
    """Axes scales, labels, title, legend and grid of a one-panel figure; saved as ``stem``."""
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, stem)


def vs_param_figure(lines: dict, xlabel: str, ylabel: str, title: str, stem: str, logx=False, logy=False) -> str:
    """lines: label -> (x, mean, std, style dict); error bars = std over the runs at each x."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    for label, (x, m, s, sty) in lines.items():
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=label, **sty)
    return _finish(fig, ax, xlabel, ylabel, title, stem, logx, logy)


def scatter_figure(groups: dict, xlabel: str, ylabel: str, title: str, stem: str, fit=None, logx=False, logy=False,
                   hline: float | None = None) -> str:
    """groups: label -> (x, y); ``fit``: (intercept, slope) of a line y = a + b x to draw."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    for label, (x, y) in groups.items():
        ax.scatter(x, y, alpha=0.7, label=label, s=18)
    if fit is not None:
        xs = np.array([v for x, _ in groups.values() for v in x], dtype=float)
        xs = xs[np.isfinite(xs)]
        if xs.size:
            grid = np.linspace(xs.min(), xs.max(), 50)
            ax.plot(grid, fit[0] + fit[1] * grid, "k--", linewidth=1, label="OLS fit")
    if hline is not None:
        ax.axhline(hline, color="k", linewidth=1)
    return _finish(fig, ax, xlabel, ylabel, title, stem, logx, logy)


def bound_ratio_figure(by_theorem: dict, stem: str) -> str:
    """Strip plot of gap / bound per theorem; in-conditions runs filled, outside hollow; y = 1 line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(by_theorem) + 2), 3.9))
    rng = np.random.default_rng(0)
    for i, (name, (inside, outside)) in enumerate(by_theorem.items()):
        for vals, filled in ((inside, True), (outside, False)):
            vals = np.asarray([v for v in vals if math.isfinite(v) and v > 0])
            if vals.size:
                x = i + (0.15 if filled else -0.15) + rng.uniform(-0.08, 0.08, vals.size)
                ax.scatter(x, vals, s=14, facecolors="tab:green" if filled else "none", edgecolors="tab:green" if filled else "tab:gray",
                           label=None)
    ax.axhline(1.0, color="tab:red", linewidth=1.2, label="gap = bound")
    ax.scatter([], [], s=14, c="tab:green", label="conditions hold")
    ax.scatter([], [], s=14, facecolors="none", edgecolors="tab:gray", label="outside conditions")
    ax.set_xticks(range(len(by_theorem)))
    ax.set_xticklabels(list(by_theorem), fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("empirical gap / bound")
    ax.set_title("Every run against its bound (above the red line under the conditions = defect)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, stem)


def rate_fit_figure(curves: list, title: str, xlabel: str, stem: str) -> str:
    """Log-log curves with their fitted tail lines: list of (label, steps, values, fit or None, predicted or None)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.8, 4.0))
    for label, st, v, fit, predicted in curves:
        ok = (st >= 1) & (v > 0)
        line, = ax.plot(st[ok], v[ok], label=label, alpha=0.85)
        if fit is not None:
            tt = np.geomspace(fit.t_min, fit.t_max, 20)
            ax.plot(tt, np.exp(fit.intercept) * tt ** (-fit.exponent), color=line.get_color(), linestyle=":", linewidth=2)
            if predicted is not None:  # the predicted slope through the fit's end point
                y1 = np.exp(fit.intercept) * fit.t_min ** (-fit.exponent)
                ax.plot(tt, y1 * (tt / fit.t_min) ** (-predicted), color="k", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("gap")
    ax.set_title(title + "\n(dotted: fitted tail; black dashed: predicted slope)", fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return save(fig, stem)
