"""Similarity Delta_Phi (Eq. 8), kappa, Phi_max, and the Proposition 1 / Theorem 3 bounds (Section 4.1, Appendix D.1).

Potential. Phi(pi; G) is the value (from s_1, or rho-weighted when discounted) of the game's stage
potential reward phi (:func:`solvers.nplayer.potential_certificate`: the shared reward of an
identical-interest game, a declared potential, or the Monderer-Shapley one). The paper defines
Delta_Phi with "the" potential functions, which are only fixed up to constants; we use phi as stated.

Delta_Phi (Eq. 8) = sum_{k<K} max_pi (Phi(pi; G^k) - Phi(pi; G^{k+1})).
When G^k and G^{k+1} share transitions (and gamma, rho, s_1), Phi(pi; G^k) - Phi(pi; G^{k+1}) is the
value of pi in one joint-action MDP with reward phi^k - phi^{k+1}; its maximum over product policies
equals the MDP optimum (attained by a deterministic Markov joint policy, which is a product of
deterministic policies), so Delta_Phi is exact: backward induction, or policy iteration with exact
linear solves when discounted. Otherwise (e.g. LQ-tracking games, which differ in their transitions)
the maximum of a difference of values under two dynamics is not an MDP, and we compute the *path*
similarity ``sum_{k<K} (Phi(pi^{k,T}; G^k) - Phi(pi^{k,T}; G^{k+1}))`` at the meta chain's iterates:
a lower bound of Delta_Phi and exactly the quantity the proof of Theorem 3 bounds by Delta_Phi
(Appendix D.1, third inequality), so Theorem 3's bound computed with it still holds.

kappa(G) = sup_pi || d_rho^pi / rho ||_inf (Appendix C), exact in the discounted setting: it is +inf
when rho misses a state reachable from supp(rho); otherwise, for every state s, sup_pi d_rho^pi(s)
is (1 - gamma) times the optimum of the joint-action MDP with reward 1{state = s}. Finite-horizon
games: Section 4.1's results are stated for the discounted setting; kappa and the bounds are NaN
and the flag ``discounted`` is False.

Proposition 1 (Ding et al. 2022, Theorem 1; reading of the OCR, consistent with Eq. (39) and the
last display of Appendix D.1): if alpha <= (1 - gamma)^4 / (8 kappa^3 N A_max),

    (1/T) sum_{t<T} NE-gap(pi^t) <= sqrt( kappa (Phi(pi^T) - Phi(pi^0)) / (alpha T (1 - gamma)^2) ).

Theorem 3 (proof in Appendix D.1, warm start pi^{k,0} = pi^{k-1,T}):

    (1/(K T)) sum_k sum_{t<T} NE-gap(pi^{k,t}) <= sqrt( kappa (2 Phi_max + Delta_Phi) / (alpha (1 - gamma)^2 K T) ),

and with alpha = (1 - gamma)^4 / (8 kappa^3 N A_max) (the "paper form")
sqrt( 8 kappa^4 N A_max (2 Phi_max + Delta_Phi) / ((1 - gamma)^6 K T) ). kappa is the largest over
the games. Reading of Phi_max: the proof bounds Phi(pi^{K,T}; G^K) - Phi(pi^{1,0}; G^1), a difference
across two games, by 2 Phi_max; that holds for Phi_max = max_k max_pi |Phi(pi; G^k)|, which we use
(the within-game range max Phi - min Phi is reported as ``phi_range``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ._blas import single_threaded_blas
from .sparse import kernel_threads
from .markov_kernels import _joint_mdp_optimum, kernel_form
from .nplayer import potential_certificate
from .potential_eval import PI_MAX_ITER, PI_RTOL

__all__ = ["joint_mdp_optimum", "shared_transitions", "delta_phi", "delta_phi_path", "phi_extremes", "mismatch_coefficient",
           "Proposition1Bound", "Theorem3Bound", "proposition1_bound", "theorem3_bound", "DeltaPhi", "KAPPA_MAX_STATES"]

#: kappa needs one MDP solve per state; above this many states it is not computed (NaN).
KAPPA_MAX_STATES = 400


def joint_mdp_optimum(game, reward: np.ndarray) -> float:
    """max over joint (equivalently product) policies of the value of ``reward`` (H, S, A_1..A_N) in ``game``."""
    kf = kernel_form(game)
    H, S = kf.horizon, kf.num_states
    d = np.ascontiguousarray(np.asarray(reward, dtype=np.float64).reshape(H, S, -1))
    Vout = np.zeros((1, S))
    with single_threaded_blas(), kernel_threads(H * S):
        return float(_joint_mdp_optimum(d, kf.num_players, kf.adec, kf.sdec, kf.dense_p, kf.snext, kf.local_p, kf.xmap, kf.factored,
                                        kf.gamma, kf.discounted, kf.rho, PI_MAX_ITER, PI_RTOL, Vout))


def shared_transitions(g1, g2) -> bool:
    """Same dynamics, discount, initial distribution (so Phi differences are one MDP's values)."""
    if type(g1) is not type(g2) or g1.gamma != g2.gamma or g1.initial_state != g2.initial_state:
        return False
    if not np.array_equal(g1.initial_distribution, g2.initial_distribution):
        return False
    if hasattr(g1, "local_transitions"):
        return bool(np.array_equal(g1.local_transitions, g2.local_transitions))
    if g1.is_sparse or g2.is_sparse:
        return g1.is_sparse and g2.is_sparse and all(np.array_equal(getattr(g1, k), getattr(g2, k))
                                                    for k in ("transition_next", "transition_prob"))
    return g1.transitions.shape == g2.transitions.shape and bool(np.array_equal(g1.transitions, g2.transitions))


@dataclass(frozen=True)
class DeltaPhi:
    """Delta_Phi of a sequence (module docstring): ``value`` is exact iff ``exact`` (shared transitions)."""

    value: float
    exact: bool
    per_pair: np.ndarray  # (K-1,), max_pi Phi^k - Phi^{k+1} (NaN where transitions differ)


def delta_phi(games) -> DeltaPhi:
    """Eq. (8), exact where consecutive games share transitions; NaN pairs otherwise (see :func:`delta_phi_path`)."""
    phis = [potential_certificate(g).phi for g in games]
    per = np.full(max(len(games) - 1, 0), np.nan)
    for k in range(len(games) - 1):
        if shared_transitions(games[k], games[k + 1]):
            per[k] = joint_mdp_optimum(games[k], phis[k] - phis[k + 1])
    exact = bool(np.all(np.isfinite(per)))
    return DeltaPhi(float(per.sum()) if exact else float("nan"), exact, per)


def delta_phi_path(games, final_policies) -> float:
    """sum_{k<K} (Phi(pi^{k,T}; G^k) - Phi(pi^{k,T}; G^{k+1})) at the chain's final iterates (a lower bound of Delta_Phi)."""
    from .potential_eval import evaluate_product_policy

    total = 0.0
    for k in range(len(games) - 1):
        a = evaluate_product_policy(games[k], final_policies[k]).potential
        b = evaluate_product_policy(games[k + 1], final_policies[k]).potential
        total += a - b
    return float(total)


def phi_extremes(game) -> tuple[float, float]:
    """(min_pi Phi(pi; G), max_pi Phi(pi; G)), exact (joint-action MDP optima)."""
    phi = potential_certificate(game).phi
    return -joint_mdp_optimum(game, -phi), joint_mdp_optimum(game, phi)


def mismatch_coefficient(game, max_states: int = KAPPA_MAX_STATES) -> float:
    """kappa(G) = sup_pi ||d_rho^pi / rho||_inf of a discounted game, exactly (module docstring).

    NaN for a finite-horizon game or more than ``max_states`` states (not computed).
    """
    if not game.discounted or game.num_states > max_states:
        return float("nan")
    kf = kernel_form(game)
    S, J = kf.num_states, int(np.prod(kf.actions))
    rho = kf.rho
    if np.any(rho <= 0.0):
        # states reachable from supp(rho) under some joint action sequence
        if kf.factored or kf.sparse:
            reach_step = game.to_dense().transitions.reshape(S, J, S).max(axis=1) > 0
        else:
            reach_step = kf.dense_p[0].max(axis=1) > 0
        reached = rho > 0
        while True:
            new = reached | reach_step[reached].any(axis=0)
            if np.array_equal(new, reached):
                break
            reached = new
        if np.any(reached & (rho <= 0.0)):
            return float("inf")
    gamma = kf.gamma
    best = 0.0
    for s in range(S):
        ind = np.zeros((1, S, J))
        ind[0, s, :] = 1.0
        d_max = (1.0 - gamma) * joint_mdp_optimum(game, ind.reshape(1, S, *kf.actions))
        best = max(best, d_max / rho[s])
    return float(best)


@dataclass(frozen=True)
class Proposition1Bound:
    """Proposition 1 for one run (module docstring).

    ``value``: sqrt(kappa (Phi(pi^T) - Phi(pi^0)) / (alpha T (1 - gamma)^2)), a bound on the mean NE-gap
    (max_i form) over t < T; NaN for finite-horizon games. ``step_max`` = (1-gamma)^4 / (8 kappa^3 N A_max).
    Flags: ``discounted`` (the setting of the result), ``step_ok`` (alpha <= step_max),
    ``potential_exact`` (phi is an exact Markov potential), ``kappa_finite``.
    """

    value: float
    kappa: float
    potential_gain: float
    step_max: float
    discounted: bool
    step_ok: bool
    potential_exact: bool
    kappa_finite: bool

    @property
    def conditions_hold(self) -> bool:
        return self.discounted and self.step_ok and self.potential_exact and self.kappa_finite

    def as_dict(self) -> dict:
        return asdict(self) | {"conditions_hold": self.conditions_hold}


def _sqrt_bound(coef: float, budget: float, denom: float) -> float:
    """sqrt(coef * budget / denom) with kappa = +inf giving +inf (not NaN) and T = 0 giving +inf."""
    if math.isnan(coef):
        return float("nan")
    if math.isinf(coef) or denom <= 0:
        return float("inf")
    return math.sqrt(coef * budget / denom)


def _step_max(kappa: float, gamma: float, N: int, A_max: int) -> float:
    if not math.isfinite(kappa) or kappa <= 0:
        return 0.0 if kappa == math.inf else float("nan")
    return (1.0 - gamma) ** 4 / (8.0 * kappa**3 * N * A_max)


def proposition1_bound(game, T: int, step: float, potential_gain: float, kappa: float | None = None,
                       potential_exact: bool | None = None) -> Proposition1Bound:
    """Proposition 1 for a run of T steps with step ``step`` and Phi(pi^T) - Phi(pi^0) = ``potential_gain``."""
    if kappa is None:
        kappa = mismatch_coefficient(game)
    if potential_exact is None:
        potential_exact = potential_certificate(game).exact
    N, A_max = game.num_players, max(game.num_actions)
    if not game.discounted:
        return Proposition1Bound(float("nan"), float("nan"), potential_gain, float("nan"), False, False,
                                 potential_exact, False)
    g = game.gamma
    smax = _step_max(kappa, g, N, A_max)
    value = _sqrt_bound(kappa, max(potential_gain, 0.0), step * T * (1 - g) ** 2)
    return Proposition1Bound(value, kappa, potential_gain, smax, True, bool(step <= smax), potential_exact,
                             math.isfinite(kappa))


@dataclass(frozen=True)
class Theorem3Bound:
    """Theorem 3 for a meta chain (module docstring).

    ``value`` = sqrt(kappa (2 Phi_max + Delta_Phi) / (alpha (1-gamma)^2 K T)) at the run's alpha;
    ``paper_form`` the same at alpha = (1-gamma)^4/(8 kappa^3 N A_max). NaN for finite-horizon games.
    ``delta_exact``: Delta_Phi exact (shared transitions) or the path similarity (module docstring).
    """

    value: float
    paper_form: float
    kappa: float
    phi_max: float
    delta_phi: float
    delta_exact: bool
    step_max: float
    discounted: bool
    step_ok: bool
    potential_exact: bool
    kappa_finite: bool

    @property
    def conditions_hold(self) -> bool:
        return self.discounted and self.step_ok and self.potential_exact and self.kappa_finite

    def as_dict(self) -> dict:
        return asdict(self) | {"conditions_hold": self.conditions_hold}


def theorem3_bound(games, T: int, step: float, delta: float, delta_exact: bool, kappa: float | None = None,
                   phi_max: float | None = None) -> Theorem3Bound:
    """Theorem 3 for K games run T steps each with step ``step``; ``delta`` the Delta_Phi used (exact or path)."""
    K = len(games)
    g0 = games[0]
    N, A_max = g0.num_players, max(g0.num_actions)
    exact = all(potential_certificate(g).exact for g in games)
    if phi_max is None:
        phi_max = max(max(abs(x) for x in phi_extremes(g)) for g in games)
    if not g0.discounted:
        nan = float("nan")
        return Theorem3Bound(nan, nan, nan, phi_max, delta, delta_exact, nan, False, False, exact, False)
    if kappa is None:
        kappa = max(mismatch_coefficient(g) for g in games)
    gm = g0.gamma
    smax = _step_max(kappa, gm, N, A_max)
    budget = max(2.0 * phi_max + delta, 0.0)
    value = _sqrt_bound(kappa, budget, step * (1 - gm) ** 2 * K * T)
    paper = _sqrt_bound(8.0 * kappa**4 * N * A_max, budget, (1 - gm) ** 6 * K * T)
    return Theorem3Bound(value, paper, kappa, phi_max, delta, delta_exact, smax, True, bool(step <= smax), exact,
                         math.isfinite(kappa))
