"""One sweep trial of MAML over Markov potential games (Section 4.2, Eq. 47): ``algorithm: maml``.

A trial draws ``K + held_out`` games of the spec's potential family from ``SeedSequence(seed)``
(:func:`solvers.potential_games.potential_family`; game k depends only on (seed, k)): games
0..K-1 are the training set G of Eq. (47) (full batch, the uniform distribution over them, as in
Appendix D.2) and games K..K+held_out-1 are held-out draws from the same distribution. Methods:
``meta`` adapts T inner policy-gradient steps from the MAML initialisation theta^k, ``individual``
from the uniform initialisation theta = 0 (the same for every k).

Summary scalars (MLflow metric names, contract; "held-out mean" = mean over the held-out games after
T adaptation steps, at the last outer iteration): ``final_gap/m`` (max_i form of the NE-gap),
``final_gap_avg/m`` (F.2 average form), ``final_potential/m`` (Phi after adaptation), ``auc/m``
(mean of the held-out mean gap over the evaluated outer iterations), ``iters_to_eps/m`` (first
evaluated outer iteration with held-out mean gap <= epsilon; absent if never), ``speedup/final_gap``
and ``speedup/auc`` (individual / meta); ``maml/grad_norm`` (||grad F_T|| at the final theta,
Theorem 4's quantity), ``maml/grad_norm_initial``, ``maml/grad_norm_min``, ``maml/potential``
(F_T at the final theta on the training games), ``maml/potential_initial``; ``time/kernel_s``,
``time/trial_s``. Histories (step = outer iteration k, 0 = before the first outer step):
``gap/m``, ``gap_avg/m``, ``potential/m`` at the evaluated k, ``grad_norm/meta`` (||grad F_T(theta^k)||)
and ``train_potential/meta`` (F_T(theta^k)) at every k (the scalars ``maml/...`` are their last
values; a key is never both a scalar and a history). Curves: :func:`curve_tables`.
"""

from __future__ import annotations

import time

import numpy as np

from .trial import TrialOutput, TrialSettings

__all__ = ["CONFIG_KEYS", "curve_tables", "make_games", "run_trial", "summarize"]

#: The config keys of MAML trials (= their MLflow params), registered in :mod:`sweeps.registry`.
CONFIG_KEYS = ("K", "H", "sigma", "T", "seed", "step", "outer_iterations", "outer_step", "held_out")
#: Spec game keys -> keyword arguments of :func:`solvers.potential_games.potential_family`.
_FAMILY_KWARGS = {"states": "num_states", "actions": "num_actions"}


def make_games(config: dict, settings: TrialSettings):
    """(training games, held-out games) of one config (module docstring)."""
    from solvers.potential_games import potential_family

    K, held = int(config["K"]), int(config["held_out"])
    opts = {_FAMILY_KWARGS.get(k, k): (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in settings.game.items()}
    games = potential_family(settings.family, K + held, float(config["sigma"]), int(config["H"]), int(config["seed"]),
                             **opts)
    return games[:K], games[K:]


def run_trial(config: dict, settings: TrialSettings) -> TrialOutput:
    """Run one config (module docstring). ``config`` holds :data:`CONFIG_KEYS`."""
    from solvers.maml import run_maml

    t0 = time.perf_counter()
    train, test = make_games(config, settings)
    res = run_maml(train, test, int(config["T"]), float(config["step"]), int(config["outer_iterations"]),
                   float(config["outer_step"]), eval_every=settings.eval_every or 1)
    out = summarize(res, settings)
    out.scalars["time/kernel_s"] = res.kernel_seconds
    out.scalars["time/trial_s"] = time.perf_counter() - t0
    return out


def summarize(res, settings: TrialSettings) -> TrialOutput:
    """Scalars, histories and curves of a :class:`solvers.maml.MamlResult` (module docstring)."""
    from tracking.curves import concat_curves

    ks = res.eval_outer
    evals = {"individual": [res.uniform] * len(ks), "meta": res.meta}
    scalars, histories = {}, {}
    for m in settings.methods:
        gap = np.array([e.gap.mean() for e in evals[m]])
        gap_avg = np.array([e.gap_avg.mean() for e in evals[m]])
        pot = np.array([e.potential.mean() for e in evals[m]])
        histories[f"gap/{m}"] = (ks, gap)
        histories[f"gap_avg/{m}"] = (ks, gap_avg)
        histories[f"potential/{m}"] = (ks, pot)
        scalars[f"final_gap/{m}"] = gap[-1]
        scalars[f"final_gap_avg/{m}"] = gap_avg[-1]
        scalars[f"final_potential/{m}"] = pot[-1]
        scalars[f"auc/{m}"] = float(gap.mean())
        hit = np.nonzero(gap <= settings.epsilon)[0]
        if hit.size:
            scalars[f"iters_to_eps/{m}"] = float(ks[hit[0]])
    if "individual" in settings.methods and "meta" in settings.methods:
        fi, fm = scalars["final_gap/individual"], scalars["final_gap/meta"]
        scalars["speedup/final_gap"] = fi / fm if fm > 0 else float("inf")
        ai, am = scalars["auc/individual"], scalars["auc/meta"]
        scalars["speedup/auc"] = ai / am if am > 0 else float("inf")
    scalars["maml/grad_norm"] = res.grad_norm[-1]
    scalars["maml/grad_norm_initial"] = res.grad_norm[0]
    scalars["maml/grad_norm_min"] = float(res.grad_norm.min())
    scalars["maml/potential"] = res.potential[-1]
    scalars["maml/potential_initial"] = res.potential[0]
    histories["grad_norm/meta"] = (res.outer, res.grad_norm)
    histories["train_potential/meta"] = (res.outer, res.potential)
    tables = [t for t in curve_tables(res) if t.column("method")[0].as_py() in settings.methods]
    return TrialOutput(scalars, histories, concat_curves(tables), 0)


def curve_tables(res) -> list:
    """Curve rows (:func:`tracking.curves.metric_table`): per held-out game and evaluated outer iteration k,
    method ``meta`` (adapted from theta^k) and ``individual`` (adapted from uniform, the same every k);
    ``gap`` is the max_i form, plus ``gap_avg`` (F.2 average form), ``potential`` (Phi after T steps),
    ``grad_norm`` and ``train_potential`` (||grad F_T(theta^k)|| and F_T(theta^k) on the training games)."""
    from tracking.curves import metric_table

    ks = res.eval_outer
    gn, fp = res.grad_norm[ks], res.potential[ks]
    tables = []
    for j in range(len(res.uniform.gap)):
        for method in ("individual", "meta"):
            evs = [res.uniform] * len(ks) if method == "individual" else res.meta
            tables.append(metric_table(
                method, j, ks, np.array([e.gap[j] for e in evs]),
                gap_avg=np.array([e.gap_avg[j] for e in evs]), potential=np.array([e.potential[j] for e in evs]),
                grad_norm=gn, train_potential=fp))
    return tables
