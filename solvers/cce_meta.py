"""Meta-learning over a sequence of N-player general-sum Markov games (Section 5, Theorem 6).

Individual learning runs Algorithm 2 on every game from uniform policies. Meta-learning starts game
1 uniform and game k+1, for every player i and every (tau, h, s), from

    pi_tilde^{k+1}_i = (1/k) sum_{k' <= k} [pi^{k',dag}_i]_alpha,   [x]_alpha = (1 - alpha) x + (alpha/A_i) 1

(Theorem 6; the alpha-greedy average of previous best responses in hindsight, :func:`solvers.meta.meta_initialization`),
alpha = 1/sqrt(K) by default (capped at 0.45 for K <= 4, as for Theorem 2: :func:`solvers.meta.default_alpha`).

Similarity (Section 5): Delta_pi = sum_k sum_i KL(pi^{k,dag}_i || pi^*_i), pi^*_i = (1/K) sum_k pi^{k,dag}_i,
with KL of two collections = sum_h sum_tau max_s KL (finite: pi^* >= pi^{k,dag}/K). The alpha-smoothed
version (both sides smoothed) is reported as ``delta_smoothed``.

The learning rate defaults to Theorem 5's eta = H^{-2/3} T^{-1/3} (N-1)^{-2/3} for both methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import algorithm2
from .cce import CCECurves, cce_curves
from .cce_bounds import Theorem5Bound, Theorem6Bound, theorem5_bound, theorem6_bound
from .meta import METHODS, check_alpha, default_alpha, kl_collection, meta_initialization, smooth
from .nplayer import MarkovGame

__all__ = ["GeneralSumRun", "GeneralSumMethodResult", "solve_with_bound", "individual_runs", "meta_chain", "similarity",
           "run_sequence", "kl_max_over_players"]


def kl_max_over_players(daggers: list[np.ndarray], inits: list[np.ndarray]) -> float:
    """sum_tau sum_h max_{s,i} KL(dagger_i || init_i): Theorem 5's KL sum; arrays (tau_bar, H, S, A_i)."""
    per_player = []
    for p, q in zip(daggers, inits):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0.0, p * (np.log(p) - np.log(q)), 0.0)
        per_player.append(terms.sum(-1).max(-1))  # (tau_bar, H)
    return float(np.max(per_player, axis=0).sum())


def similarity(daggers: list[list[np.ndarray]], alpha: float | None = None) -> float:
    """Delta_pi over K games (module docstring): ``daggers[k][i]`` is game k's (tau_bar, H, S, A_i) best responses."""
    N = len(daggers[0])
    f = (lambda x: x) if alpha is None else (lambda x: smooth(x, alpha))
    total = 0.0
    for i in range(N):
        star = np.mean([d[i] for d in daggers], axis=0)
        total += sum(kl_collection(f(d[i]), f(star)) for d in daggers)
    return total


@dataclass(frozen=True)
class GeneralSumRun:
    """One game of a sequence: the Algorithm 2 result, its CCE curves and its Theorem 5 bound."""

    result: algorithm2.Algorithm2Result
    curves: CCECurves
    bound: Theorem5Bound


def _rewards_ok(game: MarkovGame) -> bool:
    return bool(game.rewards.min() >= 0.0 and game.rewards.max() <= 1.0)


def solve_with_bound(game: MarkovGame, iterations: int, eta: float | None = None, init=None,
                     eval_every: int | None = None, eval_log_points: int | None = None, **options) -> GeneralSumRun:
    """Algorithm 2 on one game, its exact CCE curves and Theorem 5's bound from the initial policies actually used.

    ``options``: stage_reset, tie_break, tie_rtol of :func:`solvers.algorithm2.solve`.
    """
    res = algorithm2.solve(game, iterations, eta, init=init, **options)
    curves = cce_curves(game, res, eval_every, eval_log_points)
    inits = [np.full(d.shape, 1.0 / d.shape[-1]) if init is None else np.broadcast_to(p, d.shape)
             for d, p in zip(res.daggers, init or [None] * len(res.daggers))]
    bound = theorem5_bound(game.horizon, iterations, res.eta, game.num_players, max(game.num_actions), res.num_stages,
                           kl_max_over_players(res.daggers, inits), res.stage_reset, _rewards_ok(game))
    return GeneralSumRun(res, curves, bound)


def individual_runs(games: list[MarkovGame], iterations: int, eta: float | None = None, **options) -> list[GeneralSumRun]:
    """Individual learning: Algorithm 2 from uniform policies on every game."""
    return [solve_with_bound(g, iterations, eta, **options) for g in games]


def meta_chain(games: list[MarkovGame], iterations: int, eta: float | None, alpha: float, **options) -> list[GeneralSumRun]:
    """Meta learning: game 1 from uniform policies, game k+1 from Theorem 6's initialisation over games 1..k."""
    runs: list[GeneralSumRun] = []
    for k, game in enumerate(games):
        init = None
        if k > 0:
            init = [meta_initialization([r.result.daggers[i] for r in runs], alpha) for i in range(game.num_players)]
        runs.append(solve_with_bound(game, iterations, eta, init, **options))
    return runs


@dataclass(frozen=True)
class GeneralSumMethodResult:
    """A method ("individual" or "meta") on the K games: runs, Delta_pi and (meta) the Theorem 6 bound."""

    method: str
    runs: list[GeneralSumRun]
    delta: float
    delta_smoothed: float
    alpha: float
    theorem6: Theorem6Bound | None

    @property
    def iterations(self) -> np.ndarray:
        return self.runs[0].curves.iterations

    @property
    def mean_gap(self) -> np.ndarray:
        """K-averaged expected CCE-gap of Algorithm 3's output."""
        return np.mean([r.curves.gap for r in self.runs], axis=0)

    def mean_of(self, column: str) -> np.ndarray:
        return np.mean([r.curves.columns()[column] for r in self.runs], axis=0)

    def summary(self) -> dict:
        out = {
            "final_gap_mean": float(self.mean_gap[-1]),
            "final_gap_joint_average_mean": float(self.mean_of("gap_joint_average")[-1]),
            "final_gap_product_average_mean": float(self.mean_of("gap_product_average")[-1]),
            "delta": self.delta,
            "delta_smoothed": self.delta_smoothed,
            "theorem5_kl_form_mean": float(np.mean([r.bound.kl_form for r in self.runs])),
            "theorem5_conditions_hold": all(r.bound.conditions_hold for r in self.runs),
        }
        if self.theorem6 is not None:
            out["theorem6"] = self.theorem6.as_dict()
        return out


def run_sequence(games: list[MarkovGame], iterations: int, eta: float | None = None, alpha: float | None = None,
                 methods: tuple[str, ...] = METHODS, **options) -> dict[str, GeneralSumMethodResult]:
    """Individual and/or meta learning with Algorithm 2 on ``games`` (all of one shape, finite horizon).

    ``options``: stage_reset, tie_break, tie_rtol, eval_every, eval_log_points.
    """
    if not games:
        raise ValueError("run_sequence needs at least one game")
    shapes = {(g.num_players, g.horizon, g.num_states, g.num_actions) for g in games}
    if len(shapes) != 1:
        raise ValueError(f"all games of a sequence must share (N, H, S, actions); got {sorted(shapes)}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} (choose from {', '.join(METHODS)})")
    K = len(games)
    alpha = default_alpha(K) if alpha is None else check_alpha(alpha)
    out = {}
    for method in methods:
        runs = meta_chain(games, iterations, eta, alpha, **options) if method == "meta" else \
            individual_runs(games, iterations, eta, **options)
        out[method] = summarize_method(method, runs, games, iterations, alpha)
    return out


def summarize_method(method: str, runs: list[GeneralSumRun], games: list[MarkovGame], iterations: int,
                     alpha: float) -> GeneralSumMethodResult:
    daggers = [r.result.daggers for r in runs]
    delta = similarity(daggers)
    t6 = None
    if method == "meta":
        first = runs[0].result
        g = games[0]
        t6 = theorem6_bound(g.horizon, iterations, first.eta, len(games), g.num_actions, alpha, first.num_stages, delta,
                            first.stage_reset, all(_rewards_ok(x) for x in games))
    return GeneralSumMethodResult(method, runs, delta, similarity(daggers, alpha), alpha, t6)
