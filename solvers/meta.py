"""Meta-learning over a sequence of zero-sum Markov games (Section 3.2): Eq. (5) and the similarity Delta.

Individual learning runs Algorithm 1 on every game from uniform policies. Meta-learning starts game
1 from uniform policies and game k+1, for every (tau, h, s), from

    mu_tilde^{k+1} = (1/k) sum_{k' <= k} [mu^{k',dag}]_alpha,   [x]_alpha = (1 - alpha) x + (alpha/d) 1   (Eq. 5)

and the same for nu; alpha in (0, 1/2), by default 1/sqrt(K) (Theorem 2).

Similarity (Section 3.2, with the KL of two collections from the proof of Theorem 2):

    Delta_{mu,nu} = sum_k [KL(mu^{k,dag} || mu^*) + KL(nu^{k,dag} || nu^*)],   mu^* = (1/K) sum_k mu^{k,dag},
    KL(x || y) = sum_h sum_tau max_s KL(x_{tau,h}(.|s) || y_{tau,h}(.|s)).

Since mu^* >= mu^{k,dag}/K entrywise, every term is at most log K: Delta is always finite. The
alpha-smoothed variant KL([mu^{k,dag}]_alpha || [mu^*]_alpha) is reported too, labelled ``delta_smoothed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import algorithm1
from .bounds import Theorem1Bound, Theorem2Bound, theorem1_bound, theorem2_bound
from .games import ZeroSumGame

__all__ = [
    "METHODS",
    "default_alpha",
    "smooth",
    "meta_initialization",
    "kl_collection",
    "similarity",
    "GameRun",
    "MethodResult",
    "individual_runs",
    "meta_chain",
    "run_sequence",
]

METHODS = ("individual", "meta")
#: The default 1/sqrt(K) is capped below 1/2 so that it stays inside Theorem 2's range for K <= 4.
ALPHA_CAP = 0.45


def default_alpha(K: int) -> float:
    """alpha = 1/sqrt(K) (Theorem 2), capped at 0.45 for K <= 4 where 1/sqrt(K) >= 1/2."""
    return min(1.0 / math.sqrt(K), ALPHA_CAP)


def check_alpha(alpha) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1/2), got {alpha!r}") from None
    if not 0.0 < a < 0.5:
        raise ValueError(f"alpha must lie in (0, 1/2) (Eq. 5), got {alpha!r}")
    return a


def smooth(p: np.ndarray, alpha: float) -> np.ndarray:
    """[p]_alpha = (1 - alpha) p + alpha / d along the last axis (alpha-greedy parameterisation)."""
    return (1.0 - alpha) * p + alpha / p.shape[-1]


def meta_initialization(daggers: list[np.ndarray], alpha: float) -> np.ndarray:
    """Eq. (5): (1/k) sum_{k' <= k} [dagger_{k'}]_alpha over the k best-response collections given."""
    if not daggers:
        raise ValueError("meta_initialization needs at least one previous game")
    return smooth(np.mean(np.stack(daggers), axis=0), alpha)


def kl_collection(p: np.ndarray, q: np.ndarray) -> float:
    """sum over (tau, h) of max over s of KL(p(.|s) || q(.|s)); arrays (tau_bar, H, S, d). +inf if p is not << q."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0.0, p * (np.log(p) - np.log(q)), 0.0)
    kl = terms.sum(axis=-1)  # (tau_bar, H, S)
    return float(kl.max(axis=-1).sum())


def similarity(mu_daggers: list[np.ndarray], nu_daggers: list[np.ndarray], alpha: float | None = None) -> float:
    """Delta_{mu,nu} (module docstring); with ``alpha``, the alpha-smoothed version."""
    mu_star = np.mean(np.stack(mu_daggers), axis=0)
    nu_star = np.mean(np.stack(nu_daggers), axis=0)
    f = (lambda x: x) if alpha is None else (lambda x: smooth(x, alpha))
    return sum(
        kl_collection(f(m), f(mu_star)) + kl_collection(f(n), f(nu_star)) for m, n in zip(mu_daggers, nu_daggers)
    )


@dataclass(frozen=True)
class GameRun:
    """One game of a sequence: the Algorithm 1 result and its Theorem 1 bound (KL form from the actual init)."""

    result: algorithm1.Algorithm1Result
    bound: Theorem1Bound


@dataclass(frozen=True)
class MethodResult:
    """A method ("individual" or "meta") on the K games: per-game runs, Delta and the Theorem 2 bound."""

    method: str
    runs: list[GameRun]
    delta: float
    delta_smoothed: float
    alpha: float
    theorem2: Theorem2Bound | None

    @property
    def iterations(self) -> np.ndarray:
        return self.runs[0].result.iterations

    @property
    def mean_gap(self) -> np.ndarray:
        """K-averaged NE-gap curve."""
        return np.mean([r.result.gap for r in self.runs], axis=0)

    @property
    def mean_value(self) -> np.ndarray:
        return np.mean([r.result.value for r in self.runs], axis=0)

    def summary(self) -> dict:
        """Scalars of the method on the K games (K-averages), as the CLI reports them."""
        out = {
            "final_gap_mean": float(self.mean_gap[-1]),
            "final_value_mean": float(self.mean_value[-1]),
            "delta": self.delta,
            "delta_smoothed": self.delta_smoothed,
            "theorem1_kl_form_mean": float(np.mean([r.bound.kl_form for r in self.runs])),
            "theorem1_conditions_hold": all(r.bound.conditions_hold for r in self.runs),
        }
        if self.theorem2 is not None:
            out["theorem2"] = self.theorem2.as_dict()
        return out


def _kl_sum(res: algorithm1.Algorithm1Result, mu_init: np.ndarray | None, nu_init: np.ndarray | None) -> float:
    n, H, S, A = res.mu_dagger.shape
    B = res.nu_dagger.shape[-1]
    mu0 = np.full(res.mu_dagger.shape, 1.0 / A) if mu_init is None else np.broadcast_to(mu_init, res.mu_dagger.shape)
    nu0 = np.full(res.nu_dagger.shape, 1.0 / B) if nu_init is None else np.broadcast_to(nu_init, res.nu_dagger.shape)
    return kl_collection(res.mu_dagger, mu0) + kl_collection(res.nu_dagger, nu0)


def solve_with_bound(game: ZeroSumGame, iterations: int, eta: float, mu_init=None, nu_init=None, **options) -> GameRun:
    """Algorithm 1 on one game and its Theorem 1 bound computed from the initial policies actually used."""
    res = algorithm1.solve(game, iterations, eta, mu_init=mu_init, nu_init=nu_init, **options)
    H, S, A, B = game.shape
    bound = theorem1_bound(H, iterations, res.eta, A, B, res.num_stages, _kl_sum(res, mu_init, nu_init), res.stage_reset)
    return GameRun(res, bound)


def individual_runs(games: list[ZeroSumGame], iterations: int, eta: float, **options) -> list[GameRun]:
    """Individual learning: Algorithm 1 from uniform policies on every game."""
    return [solve_with_bound(g, iterations, eta, **options) for g in games]


def meta_chain(games: list[ZeroSumGame], iterations: int, eta: float, alpha: float, **options) -> list[GameRun]:
    """Meta learning: game 1 from uniform policies, game k+1 from Eq. (5) over games 1..k."""
    runs: list[GameRun] = []
    for k, game in enumerate(games):
        mu0 = nu0 = None
        if k > 0:
            mu0 = meta_initialization([r.result.mu_dagger for r in runs], alpha)
            nu0 = meta_initialization([r.result.nu_dagger for r in runs], alpha)
        runs.append(solve_with_bound(game, iterations, eta, mu0, nu0, **options))
    return runs


def run_sequence(
    games: list[ZeroSumGame],
    iterations: int,
    eta: float,
    alpha: float | None = None,
    methods: tuple[str, ...] = METHODS,
    **options,
) -> dict[str, MethodResult]:
    """Run individual and/or meta learning (Eq. 5) with Algorithm 1 on the sequence ``games``.

    ``options`` are passed to :func:`solvers.algorithm1.solve` (stage_reset, tie_break, tie_rtol,
    eval_every, eval_log_points). All games must share (H, S, A, B).
    """
    if not games:
        raise ValueError("run_sequence needs at least one game")
    shapes = {g.shape for g in games}
    if len(shapes) != 1:
        raise ValueError(f"all games of a sequence must share (H, S, A, B); got {sorted(shapes)}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} (choose from {', '.join(METHODS)})")
    K = len(games)
    alpha = default_alpha(K) if alpha is None else check_alpha(alpha)
    H, S, A, B = games[0].shape
    out = {}
    for method in methods:
        if method == "meta":
            runs = meta_chain(games, iterations, eta, alpha, **options)
        else:
            runs = individual_runs(games, iterations, eta, **options)
        mu_d = [r.result.mu_dagger for r in runs]
        nu_d = [r.result.nu_dagger for r in runs]
        delta = similarity(mu_d, nu_d)
        t2 = None
        if method == "meta":
            first = runs[0].result
            t2 = theorem2_bound(H, iterations, first.eta, K, A, B, alpha, first.num_stages, delta, first.stage_reset)
        out[method] = MethodResult(method, runs, delta, similarity(mu_d, nu_d, alpha), alpha, t2)
    return out
