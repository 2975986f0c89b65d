"""Exact evaluators for zero-sum Markov games (Section 2): values, best responses, NE-gap, Nash value.

For a product Markov policy (mu, nu) backward induction from V_{H+1} = 0 gives, at every (h, s),

    Q_h(s, a, b)     = r_h(s, a, b) + sum_{s'} P_h(s' | s, a, b) V_{h+1}(s')
    V^{mu,nu}_h(s)   = mu_h(.|s)^T Q^{mu,nu}_h(s) nu_h(.|s)
    V^{dag,nu}_h(s)  = max_a  [Q^{dag,nu}_h(s) nu_h(.|s)](a)        (max-player best response)
    V^{mu,dag}_h(s)  = min_b  [mu_h(.|s)^T Q^{mu,dag}_h(s)](b)      (min-player best response)

and NE-gap(mu, nu) = V^{dag,nu}_1(s_1) - V^{mu,dag}_1(s_1) >= 0. The Nash value solves one matrix
game per (h, s) by linear programming (scipy's HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ._jit import njit

from ._blas import kernel_blas
from .games import ZeroSumGame, validate_policy

__all__ = ["PolicyEvaluation", "evaluate_policy", "NashSolution", "nash_equilibrium", "solve_matrix_game"]


@njit(cache=True)
def _evaluate_block(rewards, trans2d, s1, mu_blk, nu_blk, n_used, v_next, v_cur, q_blk, out):
    """Evaluate ``n_used`` product policies at once by backward induction; fills ``out`` in place.

    rewards: float64 (H, S, A, B); trans2d: float64 (H, S*A*B, S) (the transition tensor reshaped);
    mu_blk: float64 (nb, H, S, A); nu_blk: float64 (nb, H, S, B); work arrays v_next, v_cur:
    float64 (S, 3*nb), q_blk: float64 (S*A*B, 3*nb). Column 3j holds V^{mu_j,nu_j}, 3j+1 holds
    V^{dag,nu_j}, 3j+2 holds V^{mu_j,dag}. ``out[j]`` receives (value, br_max, br_min) at s1.
    Transitions are streamed once per step h for the whole block (a BLAS matrix product).
    """
    H, S, A, B = rewards.shape
    ncol = v_next.shape[1]
    v_next[:, :] = 0.0
    for h in range(H - 1, -1, -1):
        np.dot(trans2d[h], v_next, q_blk)
        for s in range(S):
            for j in range(n_used):
                c = 3 * j
                val = 0.0
                brmax = -np.inf
                for a in range(A):
                    row = (s * A + a) * B
                    pa = mu_blk[j, h, s, a]
                    inner_val = 0.0
                    inner_max = 0.0
                    for b in range(B):
                        rb = rewards[h, s, a, b]
                        nb_ = nu_blk[j, h, s, b]
                        inner_val += nb_ * (rb + q_blk[row + b, c])
                        inner_max += nb_ * (rb + q_blk[row + b, c + 1])
                    val += pa * inner_val
                    if inner_max > brmax:
                        brmax = inner_max
                brmin = np.inf
                for b in range(B):
                    col = 0.0
                    for a in range(A):
                        col += mu_blk[j, h, s, a] * (rewards[h, s, a, b] + q_blk[(s * A + a) * B + b, c + 2])
                    if col < brmin:
                        brmin = col
                v_cur[s, c] = val
                v_cur[s, c + 1] = brmax
                v_cur[s, c + 2] = brmin
            for c in range(3 * n_used, ncol):
                v_cur[s, c] = 0.0
        v_next[:, :] = v_cur
    for j in range(n_used):
        out[j, 0] = v_next[s1, 3 * j]
        out[j, 1] = v_next[s1, 3 * j + 1]
        out[j, 2] = v_next[s1, 3 * j + 2]


@dataclass(frozen=True)
class PolicyEvaluation:
    """Exact values at s_1 of a product Markov policy (mu, nu).

    ``best_response_value_max`` is V^{dag,nu}_1(s_1) (the max-player best-responds to nu);
    ``best_response_value_min`` is V^{mu,dag}_1(s_1) (the min-player best-responds to mu).
    """

    value: float
    best_response_value_max: float
    best_response_value_min: float

    @property
    def ne_gap(self) -> float:
        return self.best_response_value_max - self.best_response_value_min

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "best_response_value_max": self.best_response_value_max,
            "best_response_value_min": self.best_response_value_min,
            "ne_gap": self.ne_gap,
        }


def evaluate_policy(game: ZeroSumGame, mu, nu) -> PolicyEvaluation:
    """V^{mu,nu}_1(s_1), both best-response values and the NE-gap, exactly (backward induction).

    Parameters
    ----------
    game : ZeroSumGame
    mu : float64 (H, S, A)
        Max-player Markov policy.
    nu : float64 (H, S, B)
        Min-player Markov policy.
    """
    mu, nu = validate_policy(mu, nu, game)
    H, S, A, B = game.shape
    if game.is_sparse:  # parallel gather kernel, one pass over the sparse transitions per step h
        from .sparse import evaluate_sparse

        return PolicyEvaluation(*(float(x) for x in evaluate_sparse(game, mu, nu)))
    out = np.empty((1, 3))
    with kernel_blas(S * A * B * S):
        _evaluate_block(
            game.rewards,
            game.transitions.reshape(H, S * A * B, S),
            game.initial_state,
            mu[None],
            nu[None],
            1,
            np.zeros((S, 3)),
            np.zeros((S, 3)),
            np.empty((S * A * B, 3)),
            out,
        )
    return PolicyEvaluation(float(out[0, 0]), float(out[0, 1]), float(out[0, 2]))


# ----------------------------------------------------------------------------- Nash value by LP


def solve_matrix_game(payoff: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Value and optimal strategies of the matrix game max_x min_y x^T M y (two LPs, HiGHS).

    Returns (value, x, y). The two LPs' values agree to HiGHS's tolerance (about 1e-9); the mean is
    returned.
    """
    from scipy.optimize import linprog  # here, not at import: it adds ~40 MB and 0.2 s to every process

    M = np.asarray(payoff, dtype=np.float64)
    A, B = M.shape
    # max-player: maximise v s.t. v - x^T M e_b <= 0 for all b, sum x = 1, x >= 0.
    res_x = linprog(
        c=np.r_[np.zeros(A), -1.0],
        A_ub=np.c_[-M.T, np.ones(B)],
        b_ub=np.zeros(B),
        A_eq=np.r_[np.ones(A), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * A + [(None, None)],
        method="highs",
    )
    # min-player: minimise w s.t. e_a^T M y - w <= 0 for all a, sum y = 1, y >= 0.
    res_y = linprog(
        c=np.r_[np.zeros(B), 1.0],
        A_ub=np.c_[M, -np.ones(A)],
        b_ub=np.zeros(A),
        A_eq=np.r_[np.ones(B), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * B + [(None, None)],
        method="highs",
    )
    if res_x.status != 0 or res_y.status != 0:  # pragma: no cover - HiGHS always solves a bounded matrix game
        raise RuntimeError(f"LP failed: {res_x.message} / {res_y.message}")
    x = np.clip(res_x.x[:A], 0.0, None)
    y = np.clip(res_y.x[:B], 0.0, None)
    return 0.5 * (-res_x.fun + res_y.fun), x / x.sum(), y / y.sum()


@dataclass(frozen=True)
class NashSolution:
    """Nash value V*_1(s_1), NE value function V* (H+1, S) and a Markov equilibrium (mu*, nu*)."""

    value: float
    values: np.ndarray
    mu: np.ndarray
    nu: np.ndarray


def nash_equilibrium(game: ZeroSumGame) -> NashSolution:
    """Nash value and a Markov equilibrium by backward induction with one LP per (h, s).

    Q*_h(s, a, b) = r_h(s, a, b) + [P_h V*_{h+1}](s, a, b), V*_h(s) = max_x min_y x^T Q*_h(s) y.
    Costs H * S pairs of LPs of size A x B: meant for small and moderate games (dense or sparse).
    """
    H, S, A, B = game.shape
    if game.is_sparse:
        from .sparse import expected_next_value
    V = np.zeros((H + 1, S))
    mu = np.empty((H, S, A))
    nu = np.empty((H, S, B))
    for h in range(H - 1, -1, -1):
        pv = expected_next_value(game, h, V[h + 1]) if game.is_sparse else game.transitions[h] @ V[h + 1]
        Q = game.rewards[h] + pv
        for s in range(S):
            V[h, s], mu[h, s], nu[h, s] = solve_matrix_game(Q[s])
    return NashSolution(float(V[0, game.initial_state]), V, mu, nu)
