"""Independent projected Q-ascent (Eq. 7) for Markov potential games, in Numba.

Every player i updates, at every state s (and every step h in finite horizon),

    pi_i^{t+1}(. | s) = Proj_{Delta(A_i)}( pi_i^t(. | s) + alpha * Qbar_i^{pi^t}(s, .) )          (Eq. 7)

with the averaged Q-function ``Qbar_i^pi(s, a_i) = sum_{a_{-i}} pi_{-i}(a_{-i} | s) Q_i^pi(s, a_i, a_{-i})``
(Appendix C) computed exactly: by backward induction for a finite-horizon game (per-step policies
pi_{h,i}, Q_{h,i} the value-to-go from step h, as in the simulations of Appendix F.2), by one linear
solve ``V = (I - gamma P_pi)^{-1} r_pi`` for a discounted game (the setting of Section 4.1 and
Proposition 1). ``Proj`` is the Euclidean projection onto the simplex, computed by sorting
(:func:`project_simplex`). The paper writes "Q-descent" for this ascent on rewards.

Curves hold iterations 0 (the initial policy) to T, or every ``eval_every``-th of them (T always
included), of the current iterate pi^t (not an average): ``gap`` (max_i form, Definition 1 /
Proposition 1), ``gap_avg`` (the Appendix F.2 form, mean over players), the players' values,
best-response values and Phi(pi^t) (:mod:`solvers.potential_eval`).

References
----------
Mao et al., NeurIPS 2023, Section 4.1, Eq. (7), Proposition 1, Appendix C; Ding et al., Independent
policy gradient for large-scale Markov potential games, ICML 2022 (the base algorithm).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from ._jit import njit, prange

from ._blas import single_threaded_blas
from .sparse import N_CHUNKS, kernel_threads
from .markov_kernels import (
    _best_response_values,
    _values_and_qbar,
    _workspace,
    kernel_form,
    pad_policies,
    unpad_policies,
)
from .nplayer import uniform_policies
from .potential_eval import PI_MAX_ITER, PI_RTOL, check_product_policies, game_potential

__all__ = ["QAscentResult", "projected_q_ascent", "project_simplex", "eval_points"]


# ----------------------------------------------------------------------------- projection


@njit(cache=True)
def _project_simplex(v, n, out, u):
    """Euclidean projection of v[:n] onto the simplex into out[:n] (sort-based; u a scratch buffer).

    Sort u = v descending; rho = max{k : u_k - (sum_{l<=k} u_l - 1)/k > 0}; theta = (sum_{l<=rho} u_l - 1)/rho;
    out = max(v - theta, 0) (Held, Wolfe and Crowder 1974; Duchi et al. 2008).
    """
    for k in range(n):  # insertion sort, descending (n is an action count: small)
        x = v[k]
        m = k
        while m > 0 and u[m - 1] < x:
            u[m] = u[m - 1]
            m -= 1
        u[m] = x
    css = 0.0
    theta = 0.0
    for k in range(n):
        css += u[k]
        t = (css - 1.0) / (k + 1)
        if u[k] - t > 0.0:
            theta = t
    for k in range(n):
        out[k] = max(v[k] - theta, 0.0)


def project_simplex(v: np.ndarray) -> np.ndarray:
    """argmin_{p in simplex} ||p - v||_2 of a 1-D finite vector v."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"v must be a non-empty finite 1-D vector, got shape {v.shape}")
    out = np.empty_like(v)
    _project_simplex(v, v.size, out, np.empty_like(v))
    return out


# ----------------------------------------------------------------------------- the kernel


@njit(cache=True)
def _ascent_step(pol, Qbar, step, i, h, s, n, v, out, u):
    """Eq. (7) at (i, h, s): pol[i, h, s] <- Proj(pol[i, h, s] + step Qbar[i, h, s]) (v, out, u scratch)."""
    for a in range(n):
        v[a] = pol[i, h, s, a] + step * Qbar[i, h, s, a]
    _project_simplex(v, n, out, u)
    for a in range(n):
        pol[i, h, s, a] = out[a]


@njit(cache=True, parallel=True)
def _ascent_step_parallel(pol, Qbar, step, actions, n_chunks):
    """:func:`_ascent_step` at every (i, h, s), (h, s) cells in ``n_chunks`` parallel chunks (sparse games)."""
    N, H, S, Amax = pol.shape
    cells = H * S
    for c in prange(n_chunks):
        v, out, u = np.empty(Amax), np.empty(Amax), np.empty(Amax)
        for cell in range(c * cells // n_chunks, (c + 1) * cells // n_chunks):
            for i in range(N):
                _ascent_step(pol, Qbar, step, i, cell // S, cell % S, actions[i], v, out, u)


@njit(cache=True)
def _q_ascent(rewards, rows, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored, gamma, discounted, rho, step,
              T, eval_mask, max_iter, rtol, out_vals, out_brs):
    """Run T steps of Eq. (7) from ``pol`` (N, H, S, A_max), updated in place to pi^T.

    At every t in 0..T with eval_mask[t], fills the next row of out_vals (rows,) (rho^T V_b of pi^t)
    and out_brs (N,) (best-response values against pi^t_{-i}).
    """
    H, S = rewards.shape[1], rewards.shape[2]
    Amax = pol.shape[3]
    buf1, buf2, E, w_minus, V, Qbar, W, qb, Ppi, qloc = _workspace(rewards, rows, N, Amax, local_p, factored, discounted)
    v = np.zeros(Amax)
    u = np.zeros(Amax)
    out = np.zeros(Amax)
    brs = np.zeros(N)
    e = 0
    for t in range(T + 1):
        # the potential row (b = N) is needed only at evaluated iterations
        _values_and_qbar(rewards, rows if eval_mask[t] else N, N, pol, adec, sdec, dense_p, snext, local_p, xmap, factored, gamma,
                         discounted, V, Qbar, t < T, E, buf1, buf2, w_minus, Ppi, qloc)
        if eval_mask[t]:
            for b in range(rows):
                acc = 0.0
                for s in range(S):
                    acc += rho[s] * V[b, 0, s]
                out_vals[e, b] = acc
            _best_response_values(rewards, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored, gamma,
                                  discounted, rho, max_iter, rtol, W, E, buf1, buf2, w_minus, qb, Ppi, qloc, brs)
            for i in range(N):
                out_brs[e, i] = brs[i]
            e += 1
        if t == T:
            break
        if snext.shape[0] > 0:
            _ascent_step_parallel(pol, Qbar, step, actions, N_CHUNKS)
        else:
            for i in range(N):
                for h in range(H):
                    for s in range(S):
                        _ascent_step(pol, Qbar, step, i, h, s, actions[i], v, out, u)


# ----------------------------------------------------------------------------- the public function


def eval_points(iterations: int, every: int | None = None, log_points: int | None = None) -> np.ndarray:
    """Evaluated iterations: 0, k, 2k, ..., T (``every`` = k; default every iteration), or 0 and about
    ``log_points`` log-spaced iterations in [1, T] (T included)."""
    T = int(iterations)
    if every is not None and log_points is not None:
        raise ValueError("choose at most one of eval_every and log_points")
    if log_points is not None:
        if log_points < 2:
            raise ValueError(f"log_points must be >= 2, got {log_points}")
        its = np.unique(np.round(np.geomspace(1, max(T, 1), log_points)).astype(np.int64)) if T >= 1 else np.zeros(0, np.int64)
        return np.concatenate([[0], its]).astype(np.int64)
    k = 1 if every is None else int(every)
    if k < 1:
        raise ValueError(f"eval_every must be >= 1, got {every}")
    its = np.arange(0, T + 1, k, dtype=np.int64)
    return its if its[-1] == T else np.append(its, np.int64(T))


@dataclass(frozen=True)
class QAscentResult:
    """One run of projected Q-ascent (module docstring).

    policies : the final iterate pi^T, one (H, S, A_i) array per player
    initial_policies : pi^0
    iterations : int64 (n,), evaluated iterations (0 = the initial policy, T included)
    gap, gap_avg : float64 (n,), NE-gap of pi^t in the max_i form and the F.2 average form
    values, best_response_values : float64 (n, N)
    potential : float64 (n,), Phi(pi^t) (NaN without a potential)
    step : alpha;  kernel_seconds : wall time of the kernel call
    """

    policies: list
    initial_policies: list
    iterations: np.ndarray
    gap: np.ndarray
    gap_avg: np.ndarray
    values: np.ndarray
    best_response_values: np.ndarray
    potential: np.ndarray
    step: float
    kernel_seconds: float

    @property
    def final_gap(self) -> float:
        return float(self.gap[-1])

    @property
    def T(self) -> int:
        return int(self.iterations[-1])

    @property
    def mean_gap(self) -> float:
        """(1/T) sum_{t<T} gap(pi^t) over the evaluated t < T (Proposition 1's left side when every t is evaluated)."""
        m = self.iterations < self.T
        return float(np.mean(self.gap[m])) if np.any(m) else float(self.gap[0])

    @property
    def every_iteration(self) -> bool:
        return self.iterations.size == self.T + 1

    @property
    def potential_gain(self) -> float:
        """Phi(pi^T) - Phi(pi^0)."""
        return float(self.potential[-1] - self.potential[0])


def projected_q_ascent(game, iterations: int, step: float, init=None, eval_every: int | None = None, kf=None,
                       with_potential: bool = True, eval_log_points: int | None = None) -> QAscentResult:
    """Run Eq. (7) for T = ``iterations`` steps with step size alpha = ``step`` (module docstring).

    Parameters
    ----------
    game : :class:`solvers.nplayer.MarkovGame` or :class:`solvers.product_games.ProductMarkovGame`
    iterations : T >= 0
    step : alpha > 0
    init : one (H, S, A_i) policy per player (default: uniform)
    eval_every : evaluate every k-th iterate (and T); default every iterate
    eval_log_points : or evaluate 0 and about this many log-spaced iterates (T included)
    kf : an optional prepared :func:`solvers.markov_kernels.kernel_form` of ``game`` (the potential row included)
    with_potential : record Phi(pi^t) when the game has a stage potential
    """
    if isinstance(iterations, (bool, np.bool_)) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    if not (isinstance(step, (int, float, np.floating)) and math.isfinite(step) and step > 0):
        raise ValueError(f"step (alpha) must be a finite number > 0, got {step!r}")
    init = uniform_policies(game) if init is None else check_product_policies(init, game)
    if kf is None:
        kf = kernel_form(game, game_potential(game)[0] if with_potential else None)
    its = eval_points(iterations, eval_every, eval_log_points)
    mask = np.zeros(iterations + 1, dtype=np.bool_)
    mask[its] = True
    rows, N = kf.rewards.shape[0], kf.num_players
    pol = pad_policies(init, kf.max_actions)
    vals = np.zeros((its.size, rows))
    brs = np.zeros((its.size, N))
    t0 = time.perf_counter()
    with single_threaded_blas(), kernel_threads(kf.horizon * kf.num_states):
        _q_ascent(kf.rewards, rows, N, pol, kf.adec, kf.sdec, kf.actions, kf.dense_p, kf.snext, kf.local_p, kf.xmap, kf.factored,
                  kf.gamma, kf.discounted, kf.rho, float(step), int(iterations), mask, PI_MAX_ITER, PI_RTOL, vals, brs)
    seconds = time.perf_counter() - t0
    gaps = brs - vals[:, :N]
    potential = vals[:, N].copy() if kf.has_phi else np.full(its.size, np.nan)
    return QAscentResult(unpad_policies(pol, kf.actions), [p.copy() for p in init], its, gaps.max(axis=1),
                         gaps.mean(axis=1), vals[:, :N].copy(), brs, potential, float(step), seconds)
