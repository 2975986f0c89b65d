"""``metasweep report``: figures, rate fits and bound checks of one or more sweeps, as files, HTML and MLflow artifacts.

What it computes (from the runs' params, scalar metrics and metric histories only, so every
algorithm that logs the shared names is covered; :data:`THEORIES` says which theorem bounds which curve):

- Figures (PNG and SVG, :mod:`tracking.report_figures`): K-averaged gap and value (or potential)
  against the iteration, mean +/- std over seeds, individual vs meta, one figure per setting (the
  paper's Figures 2, 3, 4(b)(c)); the NE policies of the K stage matrix games (Figure 1(c), zero-sum
  families with 2 x 2 actions: the games are regenerated from the family seed); meta speed-up
  against sigma and against Delta/K; final gaps against H, K and T; gap / bound of every run;
  log-log curves with their fitted tails.
- Rates (:mod:`tracking.rates`): per theorem and setting, the exponent p of gap ~ t^-p fitted on the
  tail of each seed's K-averaged curve (Proposition 1, Theorem 3: of its running mean, the quantity
  they bound) and combined over seeds; across a T sweep, the exponent of the final gap against T.
  Verdicts against the predicted exponent up to log factors.
- The meta / individual gap ratio against Delta/K (Theorems 2, 3, 6 predict it grows with Delta/K):
  OLS slope with CI and Spearman's rho.
- Every run's gap / bound (``bound/*_ratio*``) with its ``conditions/*`` flag: above 1 under the
  conditions is a DEFECT (reported first, loudly); runs outside the conditions are labelled, with
  the reason where the params tell it (eta > 1/(8 H^2), no stage reset).

Outputs in ``--out``: ``report.html`` (self-contained: figures embedded as base64 PNG), the PNG and
SVG figures, ``rates.csv``, ``bounds.csv``, ``similarity.csv``, ``summary.json``; the same files are
logged to each sweep's parent run under the artifact folder ``report/`` (unless ``log_to_parent`` is off
or MLflow cannot be reached).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from . import report_figures as figs
from .rates import (DEFECT, HOLDS, OUTSIDE, bound_verdict, combine_fits, fit_linear, fit_power_law, parse_ratio_key,
                    rate_verdict, running_mean)
from .mlflow_runs import package_versions
from .report_data import RunRecord, SweepData

__all__ = ["Theory", "THEORIES", "build_report", "analyse_bounds", "analyse_rates", "analyse_similarity", "setting_of"]


@dataclass(frozen=True)
class Theory:
    """Which curve a theorem bounds, and the rate it predicts (up to log factors).

    ``t_exponent``: p of gap(t) ~ t^-p along one run (other params fixed); ``T_exponent``: p across a
    T sweep; ``T_exponent_eta_null``: across T when the ``eta`` param is null (Theorem 5's
    eta = H^{-2/3} T^{-1/3} (N-1)^{-2/3}, which changes with T). ``averaged``: the theorem bounds the
    running mean of the gap over the iterations. ``similarity``: the Delta metric of a meta theorem.
    """

    theorem: str
    algorithm: str
    method: str
    ratio_key: str
    conditions_key: str
    t_exponent: float | None
    T_exponent: float | None
    statement: str
    averaged: bool = False
    similarity: str | None = None
    final_key: str = "final_gap"
    T_exponent_eta_null: float | None = None


THEORIES = (
    Theory("Theorem 1", "optimistic-mwu", "individual", "bound/theorem1_ratio/individual", "conditions/theorem1", 1.0, 1.0,
           "NE-gap <= (24H/(eta T)) sum KL = O(H^5 log T log(AB) / T) at eta <= 1/(8H^2)"),
    Theory("Theorem 2", "optimistic-mwu", "meta", "bound/theorem2_ratio", "conditions/theorem2", 1.0, 1.0,
           "(1/K) sum NE-gap <= (24H/(eta T)) [Delta/K + O(log K/sqrt K)]: O(1/T), constant grows with Delta/K",
           similarity="similarity/delta/meta"),
    Theory("Proposition 1", "projected-q-ascent", "individual", "bound/proposition1_ratio/individual",
           "conditions/proposition1", 0.5, 0.5, "(1/T) sum_t NE-gap <= sqrt(kappa (Phi(pi^T)-Phi(pi^0)) / (alpha T (1-gamma)^2))",
           averaged=True, final_key="mean_gap"),
    Theory("Theorem 3", "projected-q-ascent", "meta", "bound/theorem3_ratio", "conditions/theorem3", 0.5, 0.5,
           "(1/KT) sum NE-gap <= sqrt(kappa (2 Phi_max + Delta_Phi) / (alpha (1-gamma)^2 K T))",
           averaged=True, similarity="similarity/delta_phi", final_key="mean_gap"),
    Theory("Theorem 5", "omwu-cce", "individual", "bound/theorem5_ratio/individual", "conditions/theorem5", 1.0, 1.0,
           "CCE-gap <= 3/(eta T) sum KL + 36 (N-1)^2 eta^2 H^4: t^-1 at a fixed eta (until the eta^2 floor), "
           "T^-2/3 with eta = H^-2/3 T^-1/3 (N-1)^-2/3", T_exponent_eta_null=2.0 / 3.0),
    Theory("Theorem 6", "omwu-cce", "meta", "bound/theorem6_ratio", "conditions/theorem6", 1.0, 1.0,
           "meta CCE-gap: Theorem 5's rate with the KL term replaced by Delta_pi/K + O(log K/sqrt K)",
           similarity="similarity/delta/meta", T_exponent_eta_null=2.0 / 3.0),
)

#: Params that identify a run's replicate, not its setting.
REPLICATE_PARAMS = ("seed",)
#: Curves per rate figure (settings evenly spread), at most.
RATE_FIGURE_CURVES = 6
#: x-axis label of the curves of an algorithm (default "iteration t").
XLABEL = {"maml": "outer iteration k (MAML initialisation)"}


# ----------------------------------------------------------------------------- grouping


def setting_of(run: RunRecord, exclude=REPLICATE_PARAMS) -> tuple:
    """The run's setting: its params without ``exclude`` (and without ``methods``), as a sorted tuple."""
    return tuple(sorted((k, v) for k, v in run.params.items() if k not in exclude and k != "methods"))


def _label(setting: tuple, varying: set) -> str:
    keys = [(k, v) for k, v in setting if k in varying] or list(setting)
    return ", ".join(f"{k}={v}" for k, v in keys)


def _varying(runs: list[RunRecord]) -> set:
    vals = defaultdict(set)
    for r in runs:
        for k, v in r.params.items():
            vals[k].add(v)
    return {k for k, v in vals.items() if len(v) > 1}


def _groups(runs: list[RunRecord], exclude=REPLICATE_PARAMS) -> dict:
    out = defaultdict(list)
    for r in runs:
        out[setting_of(r, exclude)].append(r)
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def _spread(items: list, n: int) -> list:
    """n items evenly spread over the list (all of them if there are at most n)."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.unique(np.round(np.linspace(0, len(items) - 1, n)).astype(int))]


def _ok_runs(runs):
    return [r for r in runs if r.status != "diverged"]


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


# ----------------------------------------------------------------------------- bounds


def _outside_reasons(run: RunRecord, theorem: str) -> str:
    """Why a run lies outside a theorem's conditions, from its params where they tell it."""
    reasons = []
    if run.param("stage_reset") is False:
        reasons.append("no stage reset (the proofs analyse the reset)")
    if theorem in ("theorem1", "theorem2"):
        eta, H = run.param("eta"), run.param("H")
        if isinstance(eta, (int, float)) and isinstance(H, (int, float)) and eta > 1.0 / (8.0 * H * H):
            reasons.append(f"eta = {eta:g} > 1/(8H^2) = {1.0 / (8.0 * H * H):.3g}")
    if theorem in ("theorem5", "theorem6") and not reasons:
        reasons.append("rewards outside [0, 1] (Lemma 18) or no stage reset")
    if theorem in ("proposition1", "theorem3") and not reasons:
        reasons.append("step above (1-gamma)^4/(8 kappa^3 N A_max), or kappa infinite")
    return "; ".join(reasons) or f"conditions/{theorem} = 0"


def analyse_bounds(runs: list[RunRecord], tolerance: float = 1e-9) -> list[dict]:
    """One row per (run, logged gap/bound ratio): ratio, conditions flag, verdict, reason. Defects first."""
    rows = []
    for r in _ok_runs(runs):
        for key, ratio in r.metrics.items():
            parsed = parse_ratio_key(key)
            if parsed is None:
                continue
            theorem, method = parsed
            cond = r.metrics.get(f"conditions/{theorem}")
            verdict = bound_verdict(float(ratio), cond, tolerance)
            rows.append({"sweep": r.sweep, "trial": r.trial_id, "run": r.name, "algorithm": r.algorithm,
                         "theorem": theorem, "method": method or "meta", "ratio": float(ratio),
                         "conditions": cond, "verdict": verdict,
                         "note": _outside_reasons(r, theorem) if verdict == OUTSIDE else ""})
    order = {DEFECT: 0, HOLDS: 1, OUTSIDE: 2}
    rows.sort(key=lambda row: (order.get(row["verdict"], 3), row["theorem"], -row["ratio"]))
    return rows


# ----------------------------------------------------------------------------- rates


def _curve(run: RunRecord, theory: Theory):
    h = run.histories.get(f"gap/{theory.method}")
    if h is None or len(h[0]) == 0:
        return None
    st, v = h
    if theory.averaged:
        return running_mean(st, v)
    keep = st >= 1
    return st[keep], v[keep]


def _bounds_ok(runs, theory) -> bool | None:
    vals = [r.metrics.get(theory.ratio_key) for r in runs]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return all(v <= 1.0 for v in vals)


def _conditions(runs, theory) -> str:
    flags = {r.metrics.get(theory.conditions_key) for r in runs}
    if flags == {1.0}:
        return "hold"
    if flags == {0.0}:
        return "outside"
    if None in flags and len(flags) == 1:
        return "unknown"
    return "mixed"


def analyse_rates(runs: list[RunRecord], tail: float = 0.5, confidence: float = 0.95) -> tuple[list[dict], dict]:
    """Per theorem and setting: the t-fit (within runs, combined over seeds) and, where T varies, the T-fit.

    Returns (rows, fits) where fits maps (theorem, setting label) -> list of (run, curve, fit) for figures.
    """
    rows, fits = [], {}
    runs = _ok_runs(runs)
    for th in THEORIES:
        mine = [r for r in runs if r.algorithm == th.algorithm and f"gap/{th.method}" in r.histories]
        if not mine:
            continue
        varying = _varying(mine)
        for setting, group in _groups(mine).items():
            per_run = []
            for r in group:
                c = _curve(r, th)
                per_run.append((r, c, fit_power_law(*c, tail=tail, confidence=confidence) if c else None))
            fit = combine_fits([f for _, _, f in per_run], confidence)
            verdict, allowance = rate_verdict(fit, th.t_exponent, _bounds_ok(group, th))
            label = _label(setting, varying)
            fits[(th.theorem, label)] = per_run
            rows.append(_rate_row(th, "t (within runs)", label, th.t_exponent, fit, verdict, allowance, len(group),
                                  _conditions(group, th)))
        # across a T sweep: settings without T and seed; final gap (or mean gap) against T
        if "T" in varying:
            for setting, group in _groups(mine, exclude=("seed", "T")).items():
                Ts = sorted({r.param("T") for r in group})
                if len(Ts) < 3:
                    continue
                key = f"{th.final_key}/{th.method}"
                pts = [(r.param("T"), r.metrics.get(key)) for r in group if r.metrics.get(key) is not None]
                if len(pts) < 3:
                    continue
                x, y = np.array(pts, dtype=float).T
                fit = fit_power_law(x, y, tail=1.0, confidence=confidence, min_points=3)
                eta = group[0].param("eta")
                predicted = th.T_exponent_eta_null if (eta is None and th.T_exponent_eta_null is not None) else th.T_exponent
                verdict, allowance = rate_verdict(fit, predicted, _bounds_ok(group, th))
                label = _label(setting, varying - {"T", "seed"})
                fits[(th.theorem + " (T sweep)", label)] = [(None, (x, y), fit)]
                rows.append(_rate_row(th, f"T sweep ({', '.join(f'{t:g}' for t in Ts)})", label, predicted, fit, verdict,
                                      allowance, len(group), _conditions(group, th)))
    return rows, fits


def _rate_row(th, kind, label, predicted, fit, verdict, allowance, n_runs, conditions) -> dict:
    return {"theorem": th.theorem, "algorithm": th.algorithm, "method": th.method, "fit": kind, "setting": label,
            "curve": ("running mean of gap" if th.averaged else "gap") + f"/{th.method}",
            "predicted": predicted, "measured": fit.exponent if fit else float("nan"),
            "ci_low": fit.ci_low if fit else float("nan"), "ci_high": fit.ci_high if fit else float("nan"),
            "ci_kind": fit.kind if fit else "", "allowance": allowance, "verdict": verdict, "runs": n_runs,
            "conditions": conditions, "t_range": f"[{fit.t_min:g}, {fit.t_max:g}]" if fit else ""}


def summarize_rates(rows: list[dict]) -> list[dict]:
    """The headline table: per theorem and fit kind (t or T), the measured exponents' median and range,
    and verdict counts, separately for settings where the conditions hold and the others."""
    out = []
    keyf = lambda r: (r["theorem"], "t" if r["fit"].startswith("t ") else "T", r["conditions"] == "hold")
    buckets = defaultdict(list)
    for r in rows:
        buckets[keyf(r)].append(r)
    for (theorem, kind, inside), rs in sorted(buckets.items()):
        ms = np.array([r["measured"] for r in rs if math.isfinite(r["measured"])])
        verdicts = defaultdict(int)
        for r in rs:
            verdicts[r["verdict"]] += 1
        predicted = sorted({r["predicted"] for r in rs if r["predicted"] is not None})
        out.append({"theorem": theorem, "fit": "log gap vs log t" if kind == "t" else "log final gap vs log T",
                    "conditions": "hold" if inside else "outside/mixed", "settings": len(rs),
                    "predicted": " or ".join(f"{p:.3g}" for p in predicted),
                    "measured_median": float(np.median(ms)) if ms.size else float("nan"),
                    "measured_min": float(ms.min()) if ms.size else float("nan"),
                    "measured_max": float(ms.max()) if ms.size else float("nan"),
                    "verdicts": dict(verdicts)})
    return out


# ----------------------------------------------------------------------------- meta vs individual against Delta/K


#: Params that move Delta/K within a group of the similarity fit (everything else is held fixed per group).
SIMILARITY_FREE = ("seed", "sigma")


def analyse_similarity(runs: list[RunRecord], confidence: float = 0.95) -> tuple[list[dict], dict]:
    """Per meta theorem: the meta/individual gap ratio against Delta/K (the theorem's similarity, measured
    from the meta chain's best responses) and against sigma (the perturbation that makes the games differ),
    over the runs inside the theorem's conditions (all runs if none is). Each is a fixed-effects OLS
    (:func:`tracking.rates.fit_linear`) with one group per setting of the params other than seed and sigma,
    so that H, eta, T, K... do not confound it. The theorems predict a ratio that grows with both."""
    rows, points = [], {}
    runs = _ok_runs(runs)
    for th in THEORIES:
        if th.similarity is None:
            continue
        mine = [r for r in runs if r.algorithm == th.algorithm]
        if not mine:
            continue
        key_m, key_i = f"{th.final_key}/meta", f"{th.final_key}/individual"
        inside = [r for r in mine if r.metrics.get(th.conditions_key) == 1.0]
        scope = "runs inside the conditions" if inside else "all runs (none inside the conditions)"
        xs = {f"{th.similarity} / K": lambda r: _num(r.metrics.get(th.similarity)) / _num(r.param("K")),
              "sigma": lambda r: _num(r.param("sigma"))}
        for xname, xof in xs.items():
            x, y, groups, missing = [], [], [], 0
            for r in inside or mine:
                gm, gi, xv = r.metrics.get(key_m), r.metrics.get(key_i), xof(r)
                if gm is None or not gi or not math.isfinite(xv):
                    missing += 1
                    continue
                x.append(xv)
                y.append(gm / gi)
                groups.append(str(setting_of(r, SIMILARITY_FREE)))
            if xname != "sigma":
                points[th.theorem] = (np.array(x), np.array(y))
            fit = fit_linear(x, y, confidence, groups=groups)
            if fit is None:
                verdict = f"not enough runs with a finite {xname}, both methods and spread within a setting"
            elif fit.ci_low > 0:
                verdict = f"consistent: the ratio grows with {xname}"
            elif fit.ci_high < 0:
                verdict = f"CONTRARY: the ratio falls as {xname} grows"
            else:
                verdict = "not resolved (slope CI contains 0)"
            rows.append({"theorem": th.theorem, "algorithm": th.algorithm, "scope": scope, "groups": len(set(groups)),
                         "x": xname, "y": f"{key_m} / {key_i}", "runs": len(x), "missing": missing,
                         "slope": fit.slope if fit else float("nan"), "ci_low": fit.ci_low if fit else float("nan"),
                         "ci_high": fit.ci_high if fit else float("nan"), "spearman_rho": fit.rho if fit else float("nan"),
                         "intercept": fit.intercept if fit else float("nan"), "verdict": verdict})
    return rows, points


# ----------------------------------------------------------------------------- figures


def _ok_runs_by_algorithm(runs) -> list[tuple[str, list]]:
    """(algorithm, its successful runs), sorted by algorithm."""
    by_alg = defaultdict(list)
    for r in _ok_runs(runs):
        by_alg[r.algorithm].append(r)
    return sorted(by_alg.items())


def _fig_convergence(runs, out_dir, max_settings, notes) -> list[tuple[str, str]]:
    made = []
    for alg, rs in _ok_runs_by_algorithm(runs):
        groups = _groups(rs)
        varying = _varying(rs)
        if len(groups) > max_settings:
            notes.append(f"{alg}: convergence figures for {max_settings} of {len(groups)} settings, evenly spread "
                         f"in the sorted list (--max-settings)")
        for i, (setting, group) in enumerate(_spread(list(groups.items()), max_settings)):
            methods = sorted({k.split("/", 1)[1] for r in group for k in r.histories if k.startswith("gap/")})
            panels = [("K-averaged gap", {m: [r.histories[f"gap/{m}"] for r in group if f"gap/{m}" in r.histories]
                                          for m in methods})]
            for second in ("value", "potential"):
                if any(f"{second}/{m}" in r.histories for r in group for m in methods):
                    panels.append((f"K-averaged {second}", {m: [r.histories[f"{second}/{m}"] for r in group
                                                               if f"{second}/{m}" in r.histories] for m in methods}))
                    break
            title = f"{alg}: {_label(setting, varying)} (mean ± std over {len(group)} seed(s))"
            stem = os.path.join(out_dir, f"convergence_{alg}_{i:02d}")
            made.append((figs.convergence_figure(panels, title, XLABEL.get(alg, "iteration t"), stem), title))
    return made


def _fig_ne_games(runs, out_dir, notes) -> list[tuple[str, str]]:
    """Figure 1(c) for zero-sum families with 2 x 2 actions: the stage matrix games' NE at h = 1, per state."""
    zs = [r for r in _ok_runs(runs) if r.params.get("family") in ("paper-zero-sum", "random-zero-sum")]
    if not zs:
        return []
    from solvers.evaluate import solve_matrix_game
    from solvers.generators import game_family

    panels = {}
    for sigma in sorted({r.param("sigma") for r in zs})[:4]:
        pick = min((r for r in zs if r.param("sigma") == sigma), key=lambda r: (r.param("seed"), -r.param("K")))
        fam, K, H, seed = pick.params["family"], pick.param("K"), pick.param("H"), pick.param("seed")
        states = int(pick.params.get("states", 2) or 2)
        actions = tuple(json.loads(pick.params["actions"])) if pick.params.get("actions") else (2, 2)
        if actions != (2, 2):
            notes.append("Figure 1(c) needs 2 x 2 actions: not drawn for random-zero-sum with actions " + str(actions))
            continue
        games = game_family(fam, K, float(sigma), H, seed, states, actions)
        base = game_family(fam, 1, 0.0, H, seed, states, actions)[0]  # sigma = 0: the unperturbed base game
        by_state, base_pts = defaultdict(list), {}
        for g in games:
            for s in range(g.num_states):
                _, x, y = solve_matrix_game(g.rewards[0, s])
                by_state[s].append((x[0], y[0]))
        for s in range(base.num_states):
            _, x, y = solve_matrix_game(base.rewards[0, s])
            base_pts[s] = (x[0], y[0])
        panels[f"{fam}, sigma={sigma:g}\nK={K}, seed={seed}"] = (dict(by_state), base_pts)
    if not panels:
        return []
    title = "Figure 1(c): NE of the K games' stage matrix games at h = 1\n(games regenerated from the family seed; x: base game)"
    return [(figs.ne_games_figure(panels, title, os.path.join(out_dir, "ne_games")), title.replace("\n", " "))]


def _marginal_lines(runs, x_param, metric_for_method, methods, logx=False):
    """Lines (per method, and per stage_reset when it varies): mean +/- std over all runs at each x."""
    split = "stage_reset" if "stage_reset" in _varying(runs) else None
    lines = {}
    for m in methods:
        key = metric_for_method(m)
        for sv in sorted({r.params.get(split) for r in runs} if split else [None], key=str):
            pts = defaultdict(list)
            for r in runs:
                if split and r.params.get(split) != sv:
                    continue
                xv, yv = r.param(x_param), r.metrics.get(key)
                if isinstance(xv, (int, float)) and yv is not None and math.isfinite(yv):
                    pts[xv].append(yv)
            if not pts:
                continue
            xs = sorted(pts)
            sty = dict(figs.STYLE.get(m, {}))
            sty.pop("label", None)
            if split and sv in ("False", "false"):
                sty["linestyle"] = ":"
            label = (figs.STYLE.get(m, {}).get("label", m) if m else key) + (f" ({split}={sv})" if split else "")
            lines[label] = (np.array(xs), np.array([np.mean(pts[x]) for x in xs]), np.array([np.std(pts[x]) for x in xs]), sty)
    return lines


def _fig_vs_params(runs, out_dir) -> list[tuple[str, str]]:
    made = []
    for alg, rs in _ok_runs_by_algorithm(runs):
        varying = _varying(rs)
        methods = sorted({k.split("/", 1)[1] for r in rs for k in r.metrics if k.startswith("final_gap/")})
        if "sigma" in varying and any("speedup/final_gap" in r.metrics for r in rs):
            lines = _marginal_lines(rs, "sigma", lambda m: "speedup/final_gap", [""])
            title = f"{alg}: meta speed-up (final gap individual / meta) vs sigma; mean ± std over the other settings"
            made.append((figs.vs_param_figure(lines, "sigma (reward perturbation std)", "speed-up", title,
                                              os.path.join(out_dir, f"speedup_vs_sigma_{alg}")), title))
        for p in ("H", "K", "T"):
            if p in varying:
                lines = _marginal_lines(rs, p, lambda m: f"final_gap/{m}", methods)
                title = f"{alg}: K-averaged final gap vs {p}; mean ± std over the other settings"
                made.append((figs.vs_param_figure(lines, p, "final gap", title, os.path.join(out_dir, f"gap_vs_{p}_{alg}"),
                                                  logx=p == "T", logy=True), title))
    return made


def _fig_similarity(points, rows, out_dir) -> list[tuple[str, str]]:
    made = []
    for th in THEORIES:
        if th.theorem not in points or len(points[th.theorem][0]) == 0:
            continue
        x, y = points[th.theorem]
        row = next(r for r in rows if r["theorem"] == th.theorem and r["x"] != "sigma")
        fit = (row["intercept"], row["slope"]) if math.isfinite(row["slope"]) else None
        title = f"{th.theorem} ({th.algorithm}): meta / individual gap vs Delta/K; slope {row['slope']:.3g}"
        made.append((figs.scatter_figure({"runs": (x, 1.0 / np.where(y > 0, y, np.nan))}, "Delta / K",
                                         "speed-up (individual / meta gap)", title,
                                         os.path.join(out_dir, f"speedup_vs_delta_{th.algorithm}")), title))
        made.append((figs.scatter_figure({"runs": (x, y)}, "Delta / K", "meta / individual gap",
                                         title + " (fixed-effects slope: within settings)",
                                         os.path.join(out_dir, f"ratio_vs_delta_{th.algorithm}"), fit=fit, hline=1.0), title))
    return made


def _fig_rates(fits, out_dir, max_settings) -> list[tuple[str, str]]:
    made = []
    by_theorem = defaultdict(list)
    for (theorem, label), per_run in fits.items():
        by_theorem[theorem].append((label, per_run))
    for theorem, items in by_theorem.items():
        th = next((t for t in THEORIES if theorem.startswith(t.theorem)), None)
        curves = []
        for label, per_run in _spread(items, min(max_settings, RATE_FIGURE_CURVES)):
            for r, c, fit in per_run[:1]:  # one seed per setting keeps the figure readable
                if c is not None:
                    curves.append((label[:60], np.asarray(c[0], float), np.asarray(c[1], float), fit,
                                   th.t_exponent if th and "T sweep" not in theorem else None))
        if curves:
            title = f"{theorem}: tail fits (log-log)"
            stem = os.path.join(out_dir, "rates_" + theorem.replace(" ", "_").replace("(", "").replace(")", ""))
            made.append((figs.rate_fit_figure(curves, title, "T" if "T sweep" in theorem else "iteration t", stem), title))
    return made


def _fig_bounds(bound_rows, out_dir) -> list[tuple[str, str]]:
    if not bound_rows:
        return []
    by = defaultdict(lambda: ([], []))
    for row in bound_rows:
        name = f"{row['theorem']}/{row['method']}"
        (by[name][0] if row["verdict"] in (HOLDS, DEFECT) else by[name][1]).append(row["ratio"])
    title = "empirical gap / bound of every run"
    return [(figs.bound_ratio_figure(dict(sorted(by.items())), os.path.join(out_dir, "bound_ratios")), title)]


# ----------------------------------------------------------------------------- output


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {n}" for k, n in v.items())
    return "" if v is None else str(v)


def _table(rows: list[dict], columns: list[str] | None = None, row_class=None) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cols = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        body.append(f"<tr class='{cls}'>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        if not rows:
            return
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()})


_CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#eee}tr.defect td{background:#fcc;font-weight:bold}tr.outside td{color:#777}
.banner{padding:1em;font-size:1.2em;font-weight:bold}.bad{background:#c00;color:#fff}.good{background:#dfd}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}pre{background:#f6f6f6;padding:0.5em;overflow:auto;font-size:12px}
figure{margin:1em 0}figcaption{font-size:12px;color:#555}"""


def _html(sweeps: list[SweepData], runs, rate_rows, rate_summary, sim_rows, bound_rows, figures, notes, versions) -> str:
    defects = [r for r in bound_rows if r["verdict"] == DEFECT]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>metasweep report</title><style>{_CSS}</style></head><body>",
             "<h1>metasweep validation report</h1>",
             f"<p>Sweeps: {', '.join(html.escape(s.sweep_id) for s in sweeps)}; {len(runs)} runs "
             f"({sum(r.status == 'diverged' for r in runs)} diverged); generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.</p>"]
    if defects:
        parts.append(f"<div class='banner bad'>DEFECT: {len(defects)} run(s) exceed their theorem's bound although the "
                     "theorem's conditions hold. This is a bug in our code or in our constants. See the bound table.</div>")
    else:
        n_in = sum(r["verdict"] == HOLDS for r in bound_rows)
        parts.append(f"<div class='banner good'>No run exceeds its bound under the theorem's conditions "
                     f"({n_in} ratios checked under the conditions, {sum(r['verdict'] == OUTSIDE for r in bound_rows)} outside them).</div>")
    for n in notes:
        parts.append(f"<p><em>Note: {html.escape(n)}</em></p>")
    parts.append("<h2>Rates: theorem, predicted, measured, verdict</h2><p>Exponent p of gap ~ t<sup>-p</sup> fitted on the "
                 "tail of the log-iteration range (per seed, then mean with a Student-t interval over seeds; a single "
                 "seed gives an OLS interval, whose residuals are not independent). Predicted exponents hold up to log "
                 "factors: a verdict allows ±1/log(t_start).</p>")
    parts.append(_table(rate_summary))
    parts.append("<h3>Theorems</h3>" + _table([{"theorem": t.theorem, "algorithm": t.algorithm, "method": t.method,
                                                 "statement": t.statement} for t in THEORIES]))
    parts.append("<details><summary>Every setting's fit</summary>" + _table(rate_rows) + "</details>")
    parts.append("<h2>Meta / individual gap against Delta/K and sigma (Theorems 2, 3, 6 predict growth with both)</h2><p>Fixed-effects OLS over the runs inside the conditions: one intercept per setting of the params other than seed and sigma.</p>" + _table(sim_rows))
    parts.append("<h2>Every run against its bound</h2><p>ratio = empirical gap / bound. Under the theorem's conditions a "
                 "ratio above 1 is a DEFECT; runs outside the conditions are labelled with the reason.</p>")
    counts = defaultdict(int)
    for r in bound_rows:
        counts[(r["theorem"], r["method"], r["verdict"])] += 1
    parts.append(_table([{"theorem": t, "method": m, "verdict": v, "runs": n} for (t, m, v), n in sorted(counts.items())]))
    shown = defects + [r for r in bound_rows if r["verdict"] != DEFECT][:200]
    parts.append("<details" + (" open" if defects else "") + "><summary>Per run (defects first; up to 200 others; all in bounds.csv)"
                 "</summary>" + _table(shown, row_class=lambda r: "defect" if r["verdict"] == DEFECT else
                                       ("outside" if r["verdict"] == OUTSIDE else "")) + "</details>")
    parts.append("<h2>Figures</h2>")
    for path, caption in figures:
        with open(path, "rb") as fh:
            b64 = base64.b64encode(fh.read()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{html.escape(os.path.basename(path))}'>"
                     f"<figcaption>{html.escape(caption)} ({html.escape(os.path.basename(path))}, SVG beside it)</figcaption></figure>")
    parts.append("<h2>Sweeps, specs and versions</h2>")
    for s in sweeps:
        parts.append(f"<h3>{html.escape(s.sweep_id)}</h3><p>source: {html.escape(s.source)}; tracking URI "
                     f"{html.escape(str(s.state.get('tracking_uri')))}; parent run {html.escape(str(s.state.get('parent_run_id')))}; "
                     f"git commit {html.escape(s.parent_tags.get('metasweep.git_commit', 'unknown'))}; smoke test: "
                     f"{html.escape(str(s.state.get('smoke_test', False)))}</p>")
        parts.append(f"<pre>{html.escape(s.spec_text)}</pre>")
        parts.append(f"<p>versions when the sweep ran: <code>{html.escape(json.dumps(s.versions))}</code></p>")
    parts.append(f"<p>versions of this report: <code>{html.escape(json.dumps(versions))}</code></p></body></html>")
    return "\n".join(parts)


def build_report(sweeps: list[SweepData], out_dir: str, tail: float = 0.5, confidence: float = 0.95,
                 max_settings: int = 12, log_to_parent: bool = True, tolerance: float = 1e-9) -> dict:
    """Write the report of ``sweeps`` into ``out_dir`` (module docstring); returns a JSON-able summary."""
    os.makedirs(out_dir, exist_ok=True)
    notes = [n for s in sweeps for n in s.notes]
    runs = [r for s in sweeps for r in s.runs]
    bound_rows = analyse_bounds(runs, tolerance)
    rate_rows, fits = analyse_rates(runs, tail, confidence)
    rate_summary = summarize_rates(rate_rows)
    sim_rows, sim_points = analyse_similarity(runs, confidence)
    figures = (_fig_convergence(runs, out_dir, max_settings, notes) + _fig_ne_games(runs, out_dir, notes)
               + _fig_vs_params(runs, out_dir) + _fig_similarity(sim_points, sim_rows, out_dir)
               + _fig_rates(fits, out_dir, max_settings) + _fig_bounds(bound_rows, out_dir))
    covered = {t.algorithm for t in THEORIES}
    for alg in sorted({r.algorithm for r in runs} - covered):
        notes.append(f"{alg}: no rate theorem registered (figures and bound ratios only)")
    _write_csv(os.path.join(out_dir, "rates.csv"), rate_rows)
    _write_csv(os.path.join(out_dir, "bounds.csv"), bound_rows)
    _write_csv(os.path.join(out_dir, "similarity.csv"), sim_rows)
    versions = package_versions()
    report = os.path.join(out_dir, "report.html")
    with open(report, "w") as fh:
        fh.write(_html(sweeps, runs, rate_rows, rate_summary, sim_rows, bound_rows, figures, notes, versions))
    defects = [r for r in bound_rows if r["verdict"] == DEFECT]
    summary = {"report": os.path.abspath(report), "sweeps": [s.sweep_id for s in sweeps], "runs": len(runs),
               "diverged": sum(r.status == "diverged" for r in runs), "figures": [os.path.basename(p) for p, _ in figures],
               "defects": len(defects), "defect_runs": sorted({f"{r['trial']} {r['theorem']}" for r in defects}),
               "bounds_checked": {v: sum(r["verdict"] == v for r in bound_rows) for v in (HOLDS, DEFECT, OUTSIDE)},
               "rates": rate_summary, "similarity": sim_rows, "notes": notes, "logged_to": []}
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump(_jsonable(summary), fh, indent=2)
    if log_to_parent:
        files = [report, os.path.join(out_dir, "summary.json")] + [p for p, _ in figures] + [p[:-4] + ".svg" for p, _ in figures] \
                + [os.path.join(out_dir, n) for n in ("rates.csv", "bounds.csv", "similarity.csv")]
        for s in sweeps:
            if s.client is None:
                summary["notes"].append(f"{s.sweep_id}: not logged to the parent run (MLflow not reachable)")
                continue
            for f in files:
                s.client.log_artifact(s.state["parent_run_id"], f, artifact_path="report")
            s.client.set_tag(s.state["parent_run_id"], "metasweep.report_defects", str(len(defects)))
            summary["logged_to"].append(s.state["parent_run_id"])
    return summary


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
