"""One sweep trial of Algorithm 2 on general-sum games (Section 5, Theorems 5-6): ``algorithm: omwu-cce``.

A trial draws K games of the spec's general-sum family from ``SeedSequence(seed)``
(:func:`solvers.general_sum_games.general_sum_family`; game k depends only on (seed, k)) with N =
``players`` (null: the family's N, 3 for ``random-general-sum``, 2 for ``markov-shapley``). Methods:
``individual`` runs Algorithm 2 on every game from uniform policies (as Ray tasks in the trial's
spare CPUs when ``resources.cpus`` >= 2, like :mod:`sweeps.trial`), ``meta`` the chain of Theorem 6's
initialisations. ``eta`` null means Theorem 5's H^{-2/3} T^{-1/3} (N-1)^{-2/3}.

The headline gap is the exact expected CCE-gap of Algorithm 3's output policy (:mod:`solvers.cce`,
label ``algorithm3``); the plain averages of the iterates are evaluated too. Evaluation schedule:
the spec's ``eval_every``, or (null) about 100 log-spaced iterations (the averages cost one backward
induction per evaluated iteration; Algorithm 3's curve is exact at every iteration regardless).

Summary scalars (MLflow metric names; the shared ones as in :mod:`sweeps.trial`): for each method m,
``final_gap/m`` (Algorithm 3, K-averaged), ``final_gap_joint_average/m``, ``final_gap_product_average/m``,
``final_gap_mixture_bound/m``, ``final_value_<i>/m`` (player i's expected value), ``auc/m``,
``iters_to_eps/m``, ``similarity/delta/m`` (Delta_pi), ``similarity/delta_smoothed/m``,
``bound/theorem5_mean/m`` (KL form), ``bound/theorem5_ratio/m`` (mean of gap_k / bound_k),
``conditions/theorem5``; ``bound/theorem6`` (intermediate form), ``bound/theorem6_substituted``,
``bound/theorem6_ratio``, ``conditions/theorem6``; ``speedup/final_gap``, ``speedup/auc``
(individual / meta; inf when meta's is <= 0 — a CCE-gap can be negative, a strict CCE);
``num_stages``, ``alpha_used``, ``eta_used``, ``players_used``; ``time/kernel_s``, ``time/trial_s``,
``time/individual_tasks``. Histories: ``gap/m``, ``gap_joint_average/m``, ``gap_product_average/m``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .trial import TrialOutput, TrialSettings, run_methods

__all__ = ["CONFIG_KEYS", "DEFAULT_PLAYERS", "EVAL_LOG_POINTS", "curve_tables", "make_games", "run_trial"]

#: The config keys of omwu-cce trials (= their MLflow params), registered in :mod:`sweeps.registry`.
CONFIG_KEYS = ("eta", "alpha", "K", "H", "sigma", "T", "seed", "players", "stage_reset", "tie_break")
#: N when ``players`` is null, per family.
DEFAULT_PLAYERS = {"random-general-sum": 3, "markov-shapley": 2}
#: Evaluated iterations when the spec's eval_every is null.
EVAL_LOG_POINTS = 100
#: Rough kernel + evaluation cost per cell-iteration and joint action (seconds), only to size Ray task batches.
SECONDS_PER_CELL_JOINT_ITER = 2.0e-8
TASK_WORK_S = 0.05


def curve_tables(method: str, runs) -> list:
    """Curve rows (:func:`tracking.curves.metric_table`) of one method's runs: ``gap`` is Algorithm 3's
    expected CCE-gap; columns gap_mixture_bound, gap_joint_average, gap_product_average, value_<i>."""
    from tracking.curves import metric_table

    return [metric_table(method, k, r.curves.iterations, r.curves.gap, **r.curves.columns()) for k, r in enumerate(runs)]


def players_of(config: dict, settings: TrialSettings) -> int:
    return int(config["players"]) if config.get("players") is not None else DEFAULT_PLAYERS[settings.family]


def make_games(config: dict, settings: TrialSettings) -> list:
    from solvers.general_sum_games import general_sum_family

    game = settings.game
    if settings.family == "openspiel":  # an imported OpenSpiel game (solvers.openspiel_games)
        from sweeps.trial import openspiel_games

        return openspiel_games(config, settings)
    kwargs = {}
    if settings.family == "random-general-sum":
        kwargs = dict(players=players_of(config, settings), num_states=int(game.get("states", 2)),
                      num_actions=int(game.get("num_actions", 2)))
    return general_sum_family(settings.family, int(config["K"]), float(config["sigma"]), int(config["H"]),
                              int(config["seed"]), **kwargs)


def run_trial(config: dict, settings: TrialSettings) -> TrialOutput:
    """Run one config (module docstring). ``config`` holds :data:`CONFIG_KEYS`."""
    from solvers.cce_meta import individual_runs, meta_chain
    from solvers.meta import default_alpha

    t0 = time.perf_counter()
    K, T = int(config["K"]), int(config["T"])
    eta = None if config.get("eta") is None else float(config["eta"])
    alpha = default_alpha(K) if config.get("alpha") is None else float(config["alpha"])
    games = make_games(config, settings)
    options = dict(stage_reset=bool(config["stage_reset"]), tie_break=config["tie_break"], eval_every=settings.eval_every,
                   eval_log_points=None if settings.eval_every else EVAL_LOG_POINTS)
    spare, n_tasks = int(settings.cpus_per_trial) - 1, 0
    if "individual" in settings.methods and spare >= 1:
        g = games[0]
        work = K * g.horizon * g.num_states * int(np.prod(g.num_actions)) * T * SECONDS_PER_CELL_JOINT_ITER
        if work >= TASK_WORK_S:
            n_tasks = max(1, min(spare, K, int(work / TASK_WORK_S)))
    runs, num_tasks = run_methods(settings.methods, games, individual_runs, meta_chain, n_tasks, T, eta, alpha, options)
    out = summarize(runs, games, config, settings, alpha)
    out.scalars["time/kernel_s"] = sum(r.result.kernel_seconds for rs in runs.values() for r in rs)
    out.scalars["time/individual_tasks"] = num_tasks
    out.scalars["time/trial_s"] = time.perf_counter() - t0
    out.num_tasks = num_tasks
    return out


def summarize(runs: dict, games: list, config: dict, settings: TrialSettings, alpha: float) -> TrialOutput:
    from solvers.cce_meta import summarize_method
    from tracking.curves import concat_curves

    T = int(config["T"])
    scalars, histories, tables = {}, {}, []
    first = next(iter(runs.values()))[0]
    its = first.curves.iterations
    scalars["num_stages"] = first.result.num_stages
    scalars["alpha_used"] = alpha
    scalars["eta_used"] = first.result.eta
    scalars["players_used"] = games[0].num_players
    for method, rs in runs.items():
        mres = summarize_method(method, rs, games, T, alpha)
        gap = mres.mean_gap
        histories[f"gap/{method}"] = (its, gap)
        scalars[f"final_gap/{method}"] = gap[-1]
        for col in ("gap_joint_average", "gap_product_average", "gap_mixture_bound"):
            vals = mres.mean_of(col)
            scalars[f"final_{col}/{method}"] = vals[-1]
            if col != "gap_mixture_bound":
                histories[f"{col}/{method}"] = (its, vals)
        values = np.mean([r.curves.values[-1] for r in rs], axis=0)
        for i, v in enumerate(values):
            scalars[f"final_value_{i}/{method}"] = v
        scalars[f"auc/{method}"] = float(np.mean(gap))
        hit = np.nonzero(gap <= settings.epsilon)[0]
        if hit.size:
            scalars[f"iters_to_eps/{method}"] = float(its[hit[0]])
        scalars[f"similarity/delta/{method}"] = mres.delta
        scalars[f"similarity/delta_smoothed/{method}"] = mres.delta_smoothed
        scalars[f"bound/theorem5_mean/{method}"] = float(np.mean([r.bound.kl_form for r in rs]))
        scalars[f"bound/theorem5_ratio/{method}"] = float(np.mean([r.curves.gap[-1] / r.bound.kl_form for r in rs]))
        scalars["conditions/theorem5"] = float(all(r.bound.conditions_hold for r in rs))
        if mres.theorem6 is not None:
            scalars["bound/theorem6"] = mres.theorem6.intermediate
            scalars["bound/theorem6_substituted"] = mres.theorem6.substituted
            scalars["bound/theorem6_ratio"] = gap[-1] / mres.theorem6.intermediate
            scalars["conditions/theorem6"] = float(mres.theorem6.conditions_hold)
        tables += curve_tables(method, rs)
    if "individual" in runs and "meta" in runs:
        fi, fm = scalars["final_gap/individual"], scalars["final_gap/meta"]
        scalars["speedup/final_gap"] = fi / fm if fm > 0 else math.inf
        am = scalars["auc/meta"]
        scalars["speedup/auc"] = scalars["auc/individual"] / am if am > 0 else math.inf
    return TrialOutput(scalars, histories, concat_curves(tables), 0)
