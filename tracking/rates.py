"""Empirical convergence rates and bound checks: the numerics behind ``metasweep report``.

Rates. The theorems bound a gap by ``C * polylog(T) / T^p`` (Theorems 1, 2: p = 1 at a fixed eta;
Theorems 5, 6: p = 2/3 with eta = H^{-2/3} T^{-1/3} (N-1)^{-2/3}; Proposition 1 and Theorem 3: p = 1/2
for the time-averaged gap). We measure p by ordinary least squares on the tail of a curve,

    log gap(t) = a - p log t        over t >= t_min^(1 - tail) * t_max^tail   (the last ``tail`` of the log-range),

with a Student-t confidence interval. On one deterministic curve the residuals are not independent
(the curve is smooth), so that interval describes the fit only; across seeds (independent
replicates, :func:`combine_fits`) the interval is the Student-t interval of the mean of the per-seed
exponents, which is a real confidence interval. Points at or below ``floor`` (a gap at numerical
zero) are dropped; a tail with fewer than ``min_points`` left gives no fit.

A polylog factor changes the local log-log slope: d log(log t / t) / d log t = -1 + 1/log t. So the
measured exponent is compared with the predicted one up to ``allowance = 1 / log(t_tail_start)``
(:func:`rate_verdict`).

Bounds. Every trial logs ``bound/<theorem>_ratio[/<method>]`` = empirical gap / bound and
``conditions/<theorem>`` (1.0 when the theorem's conditions hold). :func:`bound_verdict` classifies
one ratio: a ratio above 1 under the theorem's conditions is a defect (in our code or our constants).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLawFit", "fit_power_law", "combine_fits", "rate_verdict", "LinearFit", "fit_linear",
           "bound_verdict", "parse_ratio_key", "running_mean", "DEFECT", "HOLDS", "OUTSIDE", "UNKNOWN"]

DEFECT = "DEFECT"
HOLDS = "holds"
OUTSIDE = "outside conditions"
UNKNOWN = "conditions unknown"

_RATIO_KEY = re.compile(r"^bound/([A-Za-z0-9_]+?)_ratio(?:/([A-Za-z0-9_]+))?$")


@dataclass(frozen=True)
class PowerLawFit:
    """gap ~ exp(intercept) * t^(-exponent) on [t_min, t_max]; CI at ``confidence``; ``n`` points (or seeds)."""

    exponent: float
    ci_low: float
    ci_high: float
    intercept: float
    n: int
    t_min: float
    t_max: float
    confidence: float
    kind: str  # "ols" (one curve: residuals not independent) or "seeds" (t-interval over per-seed exponents)

    def contains(self, p: float) -> bool:
        return self.ci_low <= p <= self.ci_high


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + confidence / 2.0, dof))


def fit_power_law(t, gap, tail: float = 0.5, floor: float = 1e-12, confidence: float = 0.95,
                  min_points: int = 4) -> PowerLawFit | None:
    """OLS fit of log gap = a - p log t on the tail of a curve (module docstring); None if too few points.

    Parameters
    ----------
    t : iterations (>= 1; iteration 0 is dropped), any order.
    gap : float (len(t),) values of the curve.
    tail : fraction in (0, 1] of the log-iteration range kept (the last part).
    floor : points with gap <= floor are dropped (numerical zero).
    """
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    t = np.asarray(t, dtype=float)
    y = np.asarray(gap, dtype=float)
    ok = (t >= 1) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size == 0:
        return None
    lo, hi = math.log(t.min()), math.log(t.max())
    start = math.exp(lo + (1.0 - tail) * (hi - lo))
    keep = (t >= start * (1 - 1e-12)) & (y > floor)
    t, y = t[keep], y[keep]
    if t.size < max(min_points, 3):
        return None
    x, z = np.log(t), np.log(y)
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx <= 0:
        return None
    slope = float(np.sum((x - xm) * (z - z.mean())) / sxx)
    intercept = float(z.mean() - slope * xm)
    resid = z - (intercept + slope * x)
    dof = t.size - 2
    se = math.sqrt(float(np.sum(resid**2)) / dof / sxx)
    half = _t_quantile(confidence, dof) * se
    p = -slope
    return PowerLawFit(p, p - half, p + half, intercept, int(t.size), float(t.min()), float(t.max()), confidence, "ols")


def combine_fits(fits: list[PowerLawFit], confidence: float = 0.95) -> PowerLawFit | None:
    """One exponent from per-seed fits: their mean, with the Student-t interval over seeds (>= 2 fits);
    a single fit is returned as it is (its OLS interval)."""
    fits = [f for f in fits if f is not None]
    if not fits:
        return None
    if len(fits) == 1:
        return fits[0]
    p = np.array([f.exponent for f in fits])
    n = p.size
    half = _t_quantile(confidence, n - 1) * float(p.std(ddof=1)) / math.sqrt(n)
    m = float(p.mean())
    return PowerLawFit(m, m - half, m + half, float(np.mean([f.intercept for f in fits])), n,
                       float(min(f.t_min for f in fits)), float(max(f.t_max for f in fits)), confidence, "seeds")


def rate_verdict(fit: PowerLawFit | None, predicted: float | None, bound_ok: bool | None = None) -> tuple[str, float]:
    """(verdict, allowance) of a measured exponent against the predicted one (module docstring).

    ``bound_ok``: every run of the fit lies below its bound (gap / bound <= 1), which tells a curve
    that decays more slowly than the bound's rate but stays under it (pre-asymptotic) from a violation.
    """
    if fit is None:
        return "no fit (too few points above numerical zero)", float("nan")
    if predicted is None:
        return "no rate theorem", float("nan")
    allowance = 1.0 / math.log(max(fit.t_min, math.e))
    if fit.ci_high < predicted - allowance:
        if bound_ok is False:
            return "SLOWER than predicted and above the bound", allowance
        return "slower than predicted (pre-asymptotic: below the bound)" if bound_ok else "slower than predicted", allowance
    if fit.ci_low > predicted + allowance:
        return "faster than predicted (consistent: the bound is an upper bound)", allowance
    return "consistent with the predicted rate", allowance


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope * x by OLS, slope CI at ``confidence``, Spearman rank correlation ``rho``."""

    slope: float
    ci_low: float
    ci_high: float
    intercept: float
    rho: float
    n: int
    confidence: float


def fit_linear(x, y, confidence: float = 0.95, groups=None) -> LinearFit | None:
    """OLS of y on x (finite pairs only); None with fewer than 3 pairs or no spread in x.

    ``groups`` (one label per pair): a fixed-effects fit, i.e. one common slope with an intercept per
    group (x and y centred within each group; the degrees of freedom lose one per group), so that a
    confounder constant within each group (H, eta, T, ...) does not enter the slope. ``rho`` is then
    Spearman's correlation of the centred values and ``intercept`` the mean of y - slope x.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    g = np.zeros(x.size, dtype=np.int64) if groups is None else np.unique(np.asarray(groups, dtype=object)[ok].astype(str),
                                                                       return_inverse=True)[1]
    n_groups = int(g.max()) + 1 if g.size else 0
    if x.size - n_groups < 2:
        return None
    xc, yc = x.copy(), y.copy()
    for j in range(n_groups):
        sel = g == j
        xc[sel] -= x[sel].mean()
        yc[sel] -= y[sel].mean()
    sxx = float(np.sum(xc**2))
    if sxx <= 0:
        return None
    slope = float(np.sum(xc * yc) / sxx)
    intercept = float(np.mean(y - slope * x))
    resid = yc - slope * xc
    dof = x.size - n_groups - 1
    se = math.sqrt(float(np.sum(resid**2)) / dof / sxx) if dof > 0 else float("inf")
    half = _t_quantile(confidence, dof) * se if dof > 0 else float("inf")
    from scipy.stats import spearmanr

    rho = float(spearmanr(xc, yc).statistic) if np.ptp(yc) > 0 else float("nan")
    return LinearFit(slope, slope - half, slope + half, intercept, rho, int(x.size), confidence)


def parse_ratio_key(key: str) -> tuple[str, str | None] | None:
    """``bound/theorem1_ratio/meta`` -> ("theorem1", "meta"); ``bound/theorem2_ratio`` -> ("theorem2", None)."""
    m = _RATIO_KEY.match(key)
    return (m.group(1), m.group(2)) if m else None


def bound_verdict(ratio: float, conditions: float | None, tolerance: float = 1e-9) -> str:
    """Classify one gap / bound ratio: DEFECT (conditions hold and ratio > 1 + tolerance), holds,
    outside conditions (``conditions`` = 0: the ratio is informative only), or conditions unknown."""
    if conditions is None or not math.isfinite(conditions):
        return UNKNOWN
    if conditions < 0.5:
        return OUTSIDE
    if not math.isfinite(ratio) or ratio > 1.0 + tolerance:
        return DEFECT
    return HOLDS


def running_mean(t, gap) -> tuple[np.ndarray, np.ndarray]:
    """(t, (1/t) * integral of the gap over [t_0, t]) by the trapezoid rule on the evaluated points.

    Proposition 1 and Theorem 3 bound the mean gap over the iterations; metric histories are log-spaced
    beyond their first points, so this is an approximation that is exact on the densely logged start and
    piecewise linear beyond (points at t = 0 are used for the integral, not returned).
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(gap, dtype=float)
    order = np.argsort(t)
    t, y = t[order], y[order]
    area = np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(t))])
    span = t - t[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(span > 0, area / np.where(span > 0, span, 1.0), y)
    keep = t >= 1
    return t[keep], mean[keep]
