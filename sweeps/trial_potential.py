"""One sweep trial of projected Q-ascent on Markov potential games (Section 4.1, Theorem 3): ``algorithm: projected-q-ascent``.

A trial draws K games of the spec's potential family from ``SeedSequence(seed)``
(:func:`solvers.potential_games.potential_family`; game k depends only on (seed, k)) with the family's
``game`` options (``states``, ``actions``, ``dummy_scale``, ``gamma``, ``rho``; ``gamma`` needs H = 1).
Methods: ``individual`` runs Eq. (7) on every game from the uniform policy (as Ray tasks in the
trial's spare CPUs when ``resources.cpus`` >= 2, like :mod:`sweeps.trial`), ``meta`` the warm-start
chain pi^{k+1,0} = pi^{k,T}. Curves hold iterations 0..T (the spec's ``eval_every``, default every
iteration, which makes Proposition 1's left side exact).

Summary scalars (MLflow metric names; the shared ones as in :mod:`sweeps.trial`), for each method m:
``final_gap/m`` (K-averaged NE-gap of pi^T, max_i form), ``final_gap_avg/m`` (the F.2 average form),
``final_value/m`` (players' mean value), ``final_potential/m`` (Phi), ``auc/m`` (mean of the
K-averaged gap over the evaluated iterations), ``iters_to_eps/m``, ``mean_gap/m`` ((1/T) sum_{t<T}
gap, K-averaged: Proposition 1's left side), ``bound/proposition1_mean/m``,
``bound/proposition1_ratio/m`` (mean over games of mean_gap_k / bound_k), ``conditions/proposition1``;
for meta ``similarity/delta_phi`` (the Delta_Phi Theorem 3 uses), ``similarity/delta_phi_exact``
(1.0: exact, shared transitions; 0.0: the path similarity), ``similarity/delta_phi_path``,
``bound/theorem3``, ``bound/theorem3_paper``, ``bound/theorem3_ratio`` (meta's K- and t-averaged gap
/ bound), ``bound/kappa``, ``bound/phi_max``, ``conditions/theorem3``; ``speedup/final_gap``,
``speedup/auc``; ``time/kernel_s``, ``time/trial_s``, ``time/individual_tasks``. Bounds that are
not defined (finite-horizon games: the paper states Section 4.1 for the discounted setting) are
not logged; their condition flags are (0.0). Histories: ``gap/m``, ``gap_avg/m``, ``value/m``,
``potential/m``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .trial import SPARSE_FAMILIES, TrialOutput, TrialSettings, trial_cpus

__all__ = ["CONFIG_KEYS", "make_games", "run_trial", "summarize"]

#: The config keys of projected-q-ascent trials (= their MLflow params), registered in :mod:`sweeps.registry`.
CONFIG_KEYS = ("step", "K", "H", "sigma", "T", "seed")
#: Spec game keys -> keyword arguments of :func:`solvers.potential_games.potential_family`.
_FAMILY_KWARGS = {"states": "num_states", "actions": "num_actions"}
#: Rough cost per (h, s, joint action, iteration) in seconds, only to size Ray task batches.
SECONDS_PER_CELL_JOINT_ITER = 3.0e-8
TASK_WORK_S = 0.05


def make_games(config: dict, settings: TrialSettings) -> list:
    from solvers.potential_games import potential_family

    opts = {_FAMILY_KWARGS.get(k, k): (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in settings.game.items()}
    return potential_family(settings.family, int(config["K"]), float(config["sigma"]), int(config["H"]),
                            int(config["seed"]), **opts)


def run_trial(config: dict, settings: TrialSettings) -> TrialOutput:
    """Run one config (module docstring). ``config`` holds :data:`CONFIG_KEYS`."""
    from solvers.potential_meta import assemble, check_potentials, individual_q_ascent, meta_q_ascent

    t0 = time.perf_counter()
    K, T, step = int(config["K"]), int(config["T"]), float(config["step"])
    games = make_games(config, settings)
    check_potentials(games)
    every = settings.eval_every
    runs, pending, num_tasks = {}, [], 0
    spare = 0 if settings.family in SPARSE_FAMILIES else int(settings.cpus_per_trial) - 1  # sparse: see trial_cpus
    with trial_cpus(settings, config):
        if "individual" in settings.methods and spare >= 1:
            g = games[0]
            work = K * g.horizon * g.num_states * int(np.prod(g.num_actions)) * T * SECONDS_PER_CELL_JOINT_ITER
            if work >= TASK_WORK_S:
                import ray

                n_tasks = max(1, min(spare, K, int(work / TASK_WORK_S)))
                remote = ray.remote(num_cpus=1)(individual_q_ascent)
                pending = [remote.remote([games[i] for i in part], T, step, every) for part in np.array_split(np.arange(K), n_tasks)]
                num_tasks = len(pending)
        if "meta" in settings.methods:
            runs["meta"] = meta_q_ascent(games, T, step, every)
        if "individual" in settings.methods:
            if pending:
                import ray

                runs["individual"] = [r for part in ray.get(pending) for r in part]
            else:
                runs["individual"] = individual_q_ascent(games, T, step, every)
        results = assemble(games, runs, T, step)
    out = summarize(results, settings)
    out.scalars["time/kernel_s"] = sum(r.kernel_seconds for rs in runs.values() for r in rs)
    out.scalars["time/individual_tasks"] = num_tasks
    out.scalars["time/trial_s"] = time.perf_counter() - t0
    out.num_tasks = num_tasks
    return out


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def summarize(results: dict, settings: TrialSettings) -> TrialOutput:
    """Scalars, histories and curves of :func:`solvers.potential_meta.assemble`'s results (module docstring)."""
    from tracking.curves import concat_curves

    from .cli_potential import curve_table

    scalars, histories, tables = {}, {}, []
    for method, res in results.items():
        its = res.iterations
        gap = res.mean("gap")
        for key in ("gap", "gap_avg", "values", "potential"):
            vals = gap if key == "gap" else res.mean(key)
            name = "value" if key == "values" else key
            histories[f"{name}/{method}"] = (its, vals)
            scalars[f"final_{name}/{method}"] = float(vals[-1])
        scalars[f"auc/{method}"] = float(np.mean(gap))
        hit = np.nonzero(gap <= settings.epsilon)[0]
        if hit.size:
            scalars[f"iters_to_eps/{method}"] = float(its[hit[0]])
        scalars[f"mean_gap/{method}"] = float(np.mean([r.mean_gap for r in res.runs]))
        bounds = [b.value for b in res.proposition1]
        if all(_finite(b) for b in bounds):
            scalars[f"bound/proposition1_mean/{method}"] = float(np.mean(bounds))
            scalars[f"bound/proposition1_ratio/{method}"] = float(np.mean(
                [r.mean_gap / b if b > 0 else math.inf for r, b in zip(res.runs, bounds)]))
        scalars["conditions/proposition1"] = float(all(b.conditions_hold for b in res.proposition1))
        if res.theorem3 is not None:
            t3 = res.theorem3
            scalars["similarity/delta_phi"] = res.delta_phi
            scalars["similarity/delta_phi_exact"] = float(res.delta.exact)
            scalars["similarity/delta_phi_path"] = res.delta_path
            scalars["bound/phi_max"] = t3.phi_max
            for key, val in (("bound/theorem3", t3.value), ("bound/theorem3_paper", t3.paper_form), ("bound/kappa", t3.kappa)):
                if _finite(val):
                    scalars[key] = val
            if _finite(t3.value) and t3.value > 0:
                scalars["bound/theorem3_ratio"] = scalars[f"mean_gap/{method}"] / t3.value
            scalars["conditions/theorem3"] = float(t3.conditions_hold)
        tables += [curve_table(method, k, r) for k, r in enumerate(res.runs)]
    if "individual" in results and "meta" in results:
        fi, fm = scalars["final_gap/individual"], scalars["final_gap/meta"]
        scalars["speedup/final_gap"] = fi / fm if fm > 0 else math.inf
        am = scalars["auc/meta"]
        scalars["speedup/auc"] = scalars["auc/individual"] / am if am > 0 else math.inf
    return TrialOutput(scalars, histories, concat_curves(tables), 0)
