"""Algorithm 2: optimistic online mirror descent (optimistic multiplicative weights) with stage-based
value updates for N-player general-sum Markov games (Section 5, Appendix E.1 of the paper).

Every player i keeps its own value estimate Q^tau_{h,i}(s, a) over joint actions a = (a_1, ..., a_N).
Its prediction at (h, s) is Q marginalised over the other players' current policies,

    g_i^{t-1}(a_i) = [Q^tau_{h,i} pi^{t-1}_{h,-i}](s, a_i) = sum_{a_{-i}} Q^tau_{h,i}(s, a_i, a_{-i}) prod_{j != i} pi^{t-1}_{h,j}(a_j | s),

and with the negative-entropy regulariser lines 5-6 of Algorithm 2 are the same closed-form steps
as in Algorithm 1 (done in log space by :func:`solvers.algorithm1._omwu_cell`):

    pi_hat^t_{h,i} ∝ pi_hat^{t-1}_{h,i} * exp(eta g_i^{t-1})      (auxiliary step, line 5)
    pi^t_{h,i}     ∝ pi_hat^t_{h,i}     * exp(eta g_i^{t-1})      (policy step, line 6)

Stages: L_1 = H, L_{tau+1} = floor((1 + 1/H) L_tau) (:func:`solvers.schedule.stage_lengths`). Q^tau
is fixed inside a stage; at its end (line 9), with the joint *product* policy pi^t_{h+1} = prod_i pi^t_{h+1,i}
and Q_{H+1} = 0,

    Q^{tau+1}_{h,i}(s, a) = r_{h,i}(s, a) + sum_{s'} P_h(s' | s, a) (1/L_tau) sum_{t in tau} [pi^t_{h+1} Q^tau_{h+1,i}](s').

The inner average is accumulated during the stage, as in Algorithm 1.

Readings (NOTES.md), the same options as Algorithm 1:

* ``stage_reset=True`` (default, line 10): at every stage start each player's policy and auxiliary
  policy are reset to the stage's initial policy pi_tilde^tau_{h,i}(.|s); ``False`` keeps the iterates.
* Best fixed policy in hindsight pi^{tau,dag}_{h,i}(.|s): the maximiser of
  sum_{t in tau} <pi, g_i^t>(s) (Eq. 61), with the tie rule ``tie_break`` / ``tie_rtol`` of Algorithm 1.

On a two-player zero-sum game (rewards r and -r) Q_{h,2} = -Q_{h,1} by induction and the updates are
exactly those of Algorithm 1 (tested to rounding).

The output of Algorithm 2 is not an average but the correlated policy of Algorithm 3, built from
the whole policy trajectory {pi^t}: the result keeps the trajectory and the stage schedule
(:mod:`solvers.cce` evaluates it exactly).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from ._jit import njit

from ._blas import single_threaded_blas
from .algorithm1 import TIE_BREAKS, _best_in_hindsight, _check_eta, _check_iterations, _omwu_cell, _reset_cell
from .nplayer import MarkovGame, dense_transitions
from .schedule import stage_lengths

__all__ = ["Algorithm2Result", "solve", "default_eta", "joint_action_table", "MAX_TRAJECTORY_ENTRIES"]

#: Largest policy trajectory (T * H * S * sum_i A_i float64 entries) a run keeps (3.2 GB).
MAX_TRAJECTORY_ENTRIES = 4 * 10**8


def default_eta(H: int, T: int, N: int) -> float:
    """Theorem 5's learning rate eta = H^{-2/3} T^{-1/3} (N - 1)^{-2/3}."""
    if N < 2:
        raise ValueError(f"Theorem 5's learning rate needs N >= 2 players, got {N}")
    return float(H ** (-2.0 / 3.0) * T ** (-1.0 / 3.0) * (N - 1) ** (-2.0 / 3.0))


def joint_action_table(num_actions) -> np.ndarray:
    """int64 (J, N): row j holds the actions (a_1, ..., a_N) of flat joint index j (C order, last player fastest)."""
    shape = tuple(int(a) for a in num_actions)
    return np.ascontiguousarray(np.stack(np.unravel_index(np.arange(math.prod(shape)), shape), axis=1).astype(np.int64))


@njit(cache=True)
def _marginals(Qc, pol, nact, off, g, buf_a, buf_b):
    """g[off_i + a_i] = sum_{a_{-i}} Qc[i, a] prod_{k != i} pol[off_k + a_k] for every player i; in place.

    Qc: float64 (N, J) the players' Q at one (h, s), joint actions flattened in C order; pol: float64
    (sum A_i,) the players' policies at (h, s), player i in pol[off[i]:off[i+1]]; nact: int64 (N,);
    buf_a, buf_b: work arrays (J,). For each player the other players' axes are contracted one at a
    time, first axis first (a view (outer, A_k, inner) of the current tensor, outer = A_i once axis i
    has been passed), so the innermost loop runs over the long trailing block: O(J) per player.
    For N = 2 the sums run in the same order as Algorithm 1's predictions.
    """
    N = nact.shape[0]
    J = Qc.shape[1]
    for i in range(N):
        size = J
        src = Qc[i]
        dst = buf_a
        other = buf_b
        outer = 1
        for k in range(N):
            n = nact[k]
            if k == i:
                outer = n
                continue
            inner = size // (outer * n)
            for o in range(outer):
                ob = o * inner
                for y in range(inner):
                    dst[ob + y] = 0.0
                for a in range(n):
                    p = pol[off[k] + a]
                    base = (o * n + a) * inner
                    for y in range(inner):
                        dst[ob + y] += src[base + y] * p
            size = outer * inner
            src = dst
            dst = other
            other = src
        for a in range(nact[i]):
            g[off[i] + a] = src[a]


@njit(cache=True)
def _algorithm2_kernel(rewards, trans2d, log_init, nact, off, stage_len, eta, stage_reset, tie_first, tie_rtol, traj, dag):
    """Run Algorithm 2 for sum(stage_len) iterations; fills ``traj`` and ``dag`` in place.

    rewards: float64 (N, H, S, J) (joint actions flattened, :func:`joint_action_table` order);
    trans2d: float64 (H, S*J, S); log_init: float64 (n_stages, H, S, sum A_i), logs of the initial
    policies per (tau, h, s), player i in the slice off[i]:off[i+1]; nact: int64 (N,) = (A_1, ..., A_N);
    off: int64 (N + 1,); stage_len: int64 (n_stages,). Outputs: traj float64 (T, H, S, sum A_i), the iterates
    pi^t; dag float64 (n_stages, H, S, sum A_i), the best fixed policies in hindsight per stage.
    Returns 0, or the iteration at which a non-finite value appeared.
    """
    N, H, S, J = rewards.shape
    n_stages = stage_len.shape[0]
    D = off[N]
    log_hat = np.empty((H, S, D))
    hat = np.empty((H, S, D))
    pol = np.empty((H, S, D))
    g = np.empty((H, S, D))
    G = np.empty((H, S, D))
    Q = np.zeros((H, S, N, J))
    W = np.zeros((H + 1, S, N))  # W[h, s, i] = sum_{t in stage} [pi^t_h Q^tau_{h,i}](s); W[H] = 0
    vnext = np.empty((S, N))
    pv = np.empty((S * J, N))
    buf_a = np.empty(J)
    buf_b = np.empty(J)

    t = 0
    for tau in range(n_stages):
        # ---- stage start: reset (line 10), predictions from Q^tau and the current policies
        for h in range(H):
            for s in range(S):
                if stage_reset or tau == 0:
                    for i in range(N):
                        a0, a1 = off[i], off[i + 1]
                        _reset_cell(log_init[tau, h, s, a0:a1], log_hat[h, s, a0:a1], hat[h, s, a0:a1], pol[h, s, a0:a1])
                _marginals(Q[h, s], pol[h, s], nact, off, g[h, s], buf_a, buf_b)
        G[:] = 0.0
        W[:] = 0.0

        # ---- the stage's iterations (lines 5-6)
        for _ in range(stage_len[tau]):
            for h in range(H):
                for s in range(S):
                    for i in range(N):
                        a0, a1 = off[i], off[i + 1]
                        _omwu_cell(log_hat[h, s, a0:a1], hat[h, s, a0:a1], pol[h, s, a0:a1], g[h, s, a0:a1], eta, a1 - a0)
                    _marginals(Q[h, s], pol[h, s], nact, off, g[h, s], buf_a, buf_b)
                    for i in range(N):
                        w = 0.0
                        for x in range(off[i], off[i + 1]):
                            w += pol[h, s, x] * g[h, s, x]
                            G[h, s, x] += g[h, s, x]
                        W[h, s, i] += w
                        if not np.isfinite(w):
                            return t + 1
                    for x in range(D):
                        traj[t, h, s, x] = pol[h, s, x]
            t += 1

        # ---- stage end: best fixed policies in hindsight, then the value update (line 9)
        for h in range(H):
            for s in range(S):
                for i in range(N):
                    a0, a1 = off[i], off[i + 1]
                    _best_in_hindsight(G[h, s, a0:a1], dag[tau, h, s, a0:a1], tie_first, tie_rtol)
        if tau + 1 < n_stages:
            inv_L = 1.0 / stage_len[tau]
            for h in range(H - 1, -1, -1):
                for sp in range(S):
                    for i in range(N):
                        vnext[sp, i] = W[h + 1, sp, i] * inv_L
                np.dot(trans2d[h], vnext, pv)  # [P_h V_i](s, a) for all players: one pass over P_h
                for s in range(S):
                    for j in range(J):
                        for i in range(N):
                            Q[h, s, i, j] = rewards[i, h, s, j] + pv[s * J + j, i]
    return 0


@dataclass(frozen=True)
class Algorithm2Result:
    """Output of :func:`solve`: the policy trajectory (the compact form of Algorithm 3's policy) and more.

    Attributes
    ----------
    trajectory : list of float64 (T, H, S, A_i)
        The iterates pi^t_{h,i}(.|s), t = 1..T (row t-1), one array per player.
    stage_lengths : int64 (tau_bar,)
        The stage schedule (the last stage possibly truncated).
    daggers : list of float64 (tau_bar, H, S, A_i)
        Best fixed policies in hindsight per (tau, h, s), one array per player.
    eta, stage_reset : the run's learning rate and stage-reset reading.
    kernel_seconds : wall time of the kernel call (includes compilation on the first call in a process).
    """

    trajectory: list
    stage_lengths: np.ndarray
    daggers: list
    eta: float
    stage_reset: bool
    kernel_seconds: float

    @property
    def iterations(self) -> int:
        return int(self.stage_lengths.sum())

    @property
    def num_stages(self) -> int:
        return int(self.stage_lengths.shape[0])

    def average_policies(self, t: int | None = None) -> list[np.ndarray]:
        """The plain per-player averages (1/t) sum_{j<=t} pi^j_i (default t = T): a product Markov policy."""
        t = self.iterations if t is None else int(t)
        return [p[:t].mean(axis=0) for p in self.trajectory]


def _expand_init(init, n_stages: int, H: int, S: int, num_actions) -> np.ndarray:
    """Logs of the initial policies per (tau, h, s), players concatenated on the last axis.

    ``init``: None (uniform) or one array per player, (H, S, A_i) (every stage) or (tau_bar, H, S, A_i).
    """
    N = len(num_actions)
    if init is None:
        return np.concatenate([np.full((n_stages, H, S, a), -np.log(a)) for a in num_actions], axis=-1)
    if len(init) != N:
        raise ValueError(f"init needs one policy per player ({N}), got {len(init)}")
    parts = []
    for i, (p, a) in enumerate(zip(init, num_actions)):
        p = np.asarray(p, dtype=np.float64)
        if p.shape == (H, S, a):
            p = np.broadcast_to(p, (n_stages, H, S, a))
        elif p.shape != (n_stages, H, S, a):
            raise ValueError(f"init[{i}] must have shape {(H, S, a)} or {(n_stages, H, S, a)}, got {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(np.abs(p.sum(-1) - 1.0) > 1e-6):
            raise ValueError(f"init[{i}] must hold probability distributions over the last axis")
        with np.errstate(divide="ignore"):
            parts.append(np.log(p))
    return np.ascontiguousarray(np.concatenate(parts, axis=-1))


def solve(
    game: MarkovGame,
    iterations: int,
    eta: float | None = None,
    init=None,
    stage_reset: bool = True,
    tie_break: str = "uniform",
    tie_rtol: float = 1e-9,
) -> Algorithm2Result:
    """Run Algorithm 2 on a finite-horizon N-player ``game`` (module docstring for the rules and readings).

    Parameters
    ----------
    game : MarkovGame
        Finite horizon (``gamma`` None); any kind (general-sum, potential, a lifted zero-sum game).
    iterations : int
        T >= 1.
    eta : float, optional
        Learning rate > 0; default Theorem 5's H^{-2/3} T^{-1/3} (N-1)^{-2/3} (:func:`default_eta`).
    init : list of float64 (H, S, A_i) or (tau_bar, H, S, A_i), optional
        Initial policies pi_tilde_i per player (per stage if 4-D); uniform when omitted.
    stage_reset, tie_break, tie_rtol
        As in :func:`solvers.algorithm1.solve`.
    """
    if game.discounted:
        raise ValueError("Algorithm 2 runs on finite-horizon games; this game is discounted (gamma set)")
    T = _check_iterations(iterations)
    H, S, N, acts_n = game.horizon, game.num_states, game.num_players, game.num_actions
    eta = default_eta(H, T, N) if eta is None else _check_eta(eta)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if not (np.isfinite(tie_rtol) and tie_rtol >= 0):
        raise ValueError(f"tie_rtol must be a finite number >= 0, got {tie_rtol!r}")
    D = sum(acts_n)
    if T * H * S * D > MAX_TRAJECTORY_ENTRIES:
        raise ValueError(f"the policy trajectory would hold T*H*S*sum(A_i) = {T * H * S * D} entries "
                         f"(limit {MAX_TRAJECTORY_ENTRIES}); reduce T")
    L = stage_lengths(H, T)
    n_stages = L.shape[0]
    log_init = _expand_init(init, n_stages, H, S, acts_n)
    nact = np.asarray(acts_n, dtype=np.int64)
    J = int(np.prod(nact))
    off = np.concatenate([[0], np.cumsum(acts_n)]).astype(np.int64)
    rewards = np.ascontiguousarray(game.rewards.reshape(N, H, S, J))
    trans2d = np.ascontiguousarray(dense_transitions(game, "Algorithm 2").reshape(H, S * J, S))
    traj = np.empty((T, H, S, D))
    dag = np.empty((n_stages, H, S, D))
    t0 = time.perf_counter()
    with single_threaded_blas():
        bad = _algorithm2_kernel(rewards, trans2d, log_init, nact, off, L, eta, bool(stage_reset), tie_break == "first",
                                 float(tie_rtol), traj, dag)
    elapsed = time.perf_counter() - t0
    if bad:
        raise FloatingPointError(f"Algorithm 2 produced a non-finite value at iteration {bad} (eta={eta})")
    return Algorithm2Result(
        trajectory=[np.ascontiguousarray(traj[..., off[i]:off[i + 1]]) for i in range(N)],
        stage_lengths=L,
        daggers=[np.ascontiguousarray(dag[..., off[i]:off[i + 1]]) for i in range(N)],
        eta=eta,
        stage_reset=bool(stage_reset),
        kernel_seconds=elapsed,
    )
