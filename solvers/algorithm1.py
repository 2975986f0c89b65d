"""Algorithm 1: optimistic online mirror descent (optimistic multiplicative weights) with stage-based
value updates for two-player zero-sum Markov games (Section 3.1 of the paper).

With the negative-entropy regulariser every argmax of Algorithm 1 is a closed-form multiplicative
update. At iteration t of stage tau, for every step h and state s (NOTES.md reading of lines 3-6):

    g^{t-1}    = [Q^tau_h nu^{t-1}_h](s, .)                        (max-player prediction)
    mu_hat^t   ∝ mu_hat^{t-1} * exp(eta * g^{t-1})                 (auxiliary step)
    mu^t       ∝ mu_hat^t     * exp(eta * g^{t-1})                 (policy step)

and symmetrically for the min-player with -[(mu^{t-1}_h)^T Q^tau_h](s, .). Both updates are done in
log space (log-sum-exp), so no eta * Q overflows. Stage tau has length L_tau
(L_1 = H, L_{tau+1} = floor((1 + 1/H) L_tau)); Q^tau is fixed inside the stage; at its end

    Q^{tau+1}_h(s,a,b) = r_h(s,a,b) + sum_{s'} P_h(s'|s,a,b) (1/L_tau) sum_{t in tau} mu^t_{h+1}(s')^T Q^tau_{h+1}(s') nu^t_{h+1}(s')

with Q_{H+1} = 0. The inner average is accumulated during the stage (O(S A B) per iteration), so
the update costs O(H S^2 A B) once per stage, not O(L_tau S^2 A B).

Readings (NOTES.md), each an option:

* ``stage_reset=True`` (default, the paper's text, line 10): at the start of every stage both
  players' policies and auxiliary policies are reset to the stage's initial policy
  mu_tilde^tau_h(.|s), nu_tilde^tau_h(.|s). With ``False`` only the first stage starts from the
  initial policy and the iterates carry over (the initial policies of later stages are unused).
* Best fixed policy in hindsight of stage tau at (h, s): mu^{tau,dag}_h(.|s) maximises
  sum_{t in tau} <mu, Q^tau_h nu^t_h>(s), a pure action up to ties. Actions within
  ``tie_rtol * max_a |G(a)|`` of the maximum are tied; ``tie_break="uniform"`` (default) returns the
  uniform distribution over them (also a maximiser), ``"first"`` the lowest-index tied action.

The output policy is the average (1/T) sum_t mu^t; convergence curves evaluate the running average
(1/t) sum_{j<=t} mu^j exactly after each iteration in the evaluation schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ._jit import njit, prange

from ._blas import kernel_blas, single_threaded_blas, thread_budget
from .evaluate import _evaluate_block
from .games import ZeroSumGame
from .schedule import eval_iterations, stage_lengths

__all__ = ["Algorithm1Result", "Diverged", "solve", "TIE_BREAKS"]

TIE_BREAKS = ("uniform", "first")
#: Snapshots of running averages buffered for one block evaluation (bounded by a memory budget).
EVAL_BLOCK = 32
#: Games with at least this many cells (h, s) run each iteration's cells on all Numba threads
#: (within the process's thread budget, :func:`solvers._blas.thread_budget`).
PARALLEL_CELLS = 20_000
EVAL_BLOCK_BYTES = 64 * 2**20


@njit(cache=True, inline="always")
def _omwu_cell(log_hat, hat, pol, g, eta, n):
    """One optimistic multiplicative-weights step for one player at one (h, s), in place.

    log_hat: log of the auxiliary policy (length n, the exact state), hat: the same in linear space
    (a shadow), pol: current policy, g: prediction. With w = exp(eta (g - max g)) <= 1:

        log_hat <- log_hat + eta g - logsumexp(log_hat + eta g)    (exact, log space)
        hat     <- hat * w / sum(hat * w)                           (= exp(log_hat))
        pol     <- hat * w / sum(hat * w)                           (= softmax(log_hat + eta g))

    Both steps of Algorithm 1 share the factor w: one exp per action. The linear shadow is used
    only while it is exact to rounding: every log_hat > -600 (no entry near underflow) and the
    normaliser >= 1e-10 (an entry that underflows here lands below -685 in log space and forces the
    next step onto this path too). Otherwise the step is done entirely in log space (two exps per
    action) and the shadow is rebuilt from log_hat, so large eta * Q never overflows or loses mass.
    """
    c = -np.inf
    low = np.inf
    for i in range(n):
        x = eta * g[i]
        if x > c:
            c = x
        if log_hat[i] < low:
            low = log_hat[i]
    if low > -600.0:
        z = 0.0
        for i in range(n):
            w = np.exp(eta * g[i] - c)
            pol[i] = w  # w kept in pol until the end of the step
            z += hat[i] * w
        if z >= 1e-10:
            lz = np.log(z)
            inv = 1.0 / z
            z2 = 0.0
            for i in range(n):
                log_hat[i] += eta * g[i] - c - lz
                hat[i] *= pol[i] * inv
                pol[i] *= hat[i]
                z2 += pol[i]
            inv2 = 1.0 / z2
            for i in range(n):
                pol[i] *= inv2
            return
    # exact log-space step
    m = -np.inf
    for i in range(n):
        x = log_hat[i] + eta * g[i]
        log_hat[i] = x
        if x > m:
            m = x
    z = 0.0
    for i in range(n):
        z += np.exp(log_hat[i] - m)
    lz = m + np.log(z)
    m2 = -np.inf
    for i in range(n):
        log_hat[i] -= lz
        hat[i] = np.exp(log_hat[i])
        y = log_hat[i] + eta * g[i]
        pol[i] = y
        if y > m2:
            m2 = y
    z2 = 0.0
    for i in range(n):
        e = np.exp(pol[i] - m2)
        pol[i] = e
        z2 += e
    for i in range(n):
        pol[i] /= z2


@njit(cache=True)
def _reset_cell(log_init, log_hat, hat, pol):
    """Set one player's auxiliary and current policy at one (h, s) to the initial policy; in place.

    log_hat <- log softmax(log_init) (normalised even if the input is off by rounding); hat, pol <- exp(log_hat).
    """
    n = log_init.shape[0]
    m = -np.inf
    for i in range(n):
        if log_init[i] > m:
            m = log_init[i]
    z = 0.0
    for i in range(n):
        z += np.exp(log_init[i] - m)
    lz = m + np.log(z)
    for i in range(n):
        log_hat[i] = log_init[i] - lz
        hat[i] = np.exp(log_hat[i])
        pol[i] = hat[i]


@njit(cache=True)
def _best_in_hindsight(G, out, tie_first, tie_rtol):
    """Fill ``out`` with the maximiser of <p, G> over the simplex, with the tie rule; in place."""
    n = G.shape[0]
    gmax = -np.inf
    scale = 0.0
    for i in range(n):
        if G[i] > gmax:
            gmax = G[i]
        if abs(G[i]) > scale:
            scale = abs(G[i])
    tol = tie_rtol * scale
    count = 0
    for i in range(n):
        if gmax - G[i] <= tol and not (tie_first and count > 0):
            out[i] = 1.0
            count += 1
        else:
            out[i] = 0.0
    for i in range(n):
        out[i] /= count


@njit(cache=True, inline="always")
def _cell_iteration(log_mu_hat, mu_hat, mu, g_mu, G_mu, mu_sum, log_nu_hat, nu_hat, nu, g_nu, G_nu, nu_sum, Q, eta):
    """One iteration of one cell (h, s): both optimistic steps (lines 5-6), then the new predictions,
    the regret sums G, the iterate sums and the cell's value term mu^T Q nu (returned)."""
    A, B = mu.shape[0], nu.shape[0]
    _omwu_cell(log_mu_hat, mu_hat, mu, g_mu, eta, A)
    _omwu_cell(log_nu_hat, nu_hat, nu, g_nu, eta, B)
    w = 0.0
    for a in range(A):
        acc = 0.0
        for b in range(B):
            acc += Q[a, b] * nu[b]
        g_mu[a] = acc
        G_mu[a] += acc
        w += mu[a] * acc
        mu_sum[a] += mu[a]
    for b in range(B):
        acc = 0.0
        for a in range(A):
            acc -= mu[a] * Q[a, b]
        g_nu[b] = acc
        G_nu[b] += acc
        nu_sum[b] += nu[b]
    return w


@njit(cache=True, parallel=True)
def _iterate_cells_parallel(log_mu_hat, mu_hat, mu, g_mu, G_mu, mu_sum, log_nu_hat, nu_hat, nu, g_nu, G_nu, nu_sum, Q,
                            W, eta, finite_ws):
    """All cells of one iteration in parallel (each cell reads and writes only its own entries);
    returns False if a non-finite value appeared. ``finite_ws``: bool (H*S,) work array."""
    H, S = mu.shape[0], mu.shape[1]
    for c in prange(H * S):
        h = c // S
        s = c - h * S
        w = _cell_iteration(log_mu_hat[h, s], mu_hat[h, s], mu[h, s], g_mu[h, s], G_mu[h, s], mu_sum[h, s],
                            log_nu_hat[h, s], nu_hat[h, s], nu[h, s], g_nu[h, s], G_nu[h, s], nu_sum[h, s], Q[h, s], eta)
        W[h, s] += w
        finite_ws[c] = np.isfinite(w)
    return finite_ws.all()


@njit(cache=True)
def _algorithm1_kernel(
    rewards, transitions, s1, log_mu_init, log_nu_init, stage_len, eta, stage_reset, tie_first, tie_rtol,
    eval_its, block, curve, mu_sum, nu_sum, mu_dag, nu_dag, parallel_cells,
):
    """Run Algorithm 1 for sum(stage_len) iterations; fills the output arrays in place.

    rewards: float64 (H, S, A, B); transitions: float64 (H, S, A, B, S); log_mu_init: float64
    (n_stages, H, S, A), log_nu_init: (n_stages, H, S, B), logs of the initial policies per
    (tau, h, s); stage_len: int64 (n_stages,), the last entry possibly truncated; eval_its: int64
    (n_eval,) ascending 1-based iterations; block: snapshot buffer size for block evaluation.
    Outputs: curve float64 (n_eval, 3) = (value, br_max, br_min) of the running average;
    mu_sum (H, S, A), nu_sum (H, S, B): sums of the iterates; mu_dag (n_stages, H, S, A),
    nu_dag (n_stages, H, S, B): best fixed policies in hindsight per stage.
    ``parallel_cells``: run each iteration's H*S cells on all Numba threads (identical results).
    Returns 0, or the iteration at which a non-finite policy appeared.
    """
    H, S, A, B = rewards.shape
    n_stages = stage_len.shape[0]
    finite_ws = np.empty(H * S, dtype=np.bool_)
    n_eval = eval_its.shape[0]
    trans2d = transitions.reshape(H, S * A * B, S)

    log_mu_hat = np.empty((H, S, A))
    log_nu_hat = np.empty((H, S, B))
    mu_hat = np.empty((H, S, A))
    nu_hat = np.empty((H, S, B))
    mu = np.empty((H, S, A))
    nu = np.empty((H, S, B))
    g_mu = np.empty((H, S, A))
    g_nu = np.empty((H, S, B))
    G_mu = np.empty((H, S, A))
    G_nu = np.empty((H, S, B))
    Q = np.zeros((H, S, A, B))
    W = np.empty((H + 1, S))  # W[h, s] = sum_{t in stage} mu^t_h(s)^T Q^tau_h(s) nu^t_h(s); W[H] = 0
    vnext_ws = np.empty(S)
    pv_ws = np.empty(S * A * B)
    # block evaluation buffers
    mu_blk = np.empty((block, H, S, A))
    nu_blk = np.empty((block, H, S, B))
    v_next = np.zeros((S, 3 * block))
    v_cur = np.zeros((S, 3 * block))
    q_blk = np.empty((S * A * B, 3 * block))
    out_blk = np.empty((block, 3))
    n_blk = 0
    first_eval = 0
    e = 0

    mu_sum[:] = 0.0
    nu_sum[:] = 0.0
    t = 0
    for tau in range(n_stages):
        # ---- stage start: reset (line 10) and predictions from the new Q^tau
        if stage_reset or tau == 0:
            for h in range(H):
                for s in range(S):
                    _reset_cell(log_mu_init[tau, h, s], log_mu_hat[h, s], mu_hat[h, s], mu[h, s])
                    _reset_cell(log_nu_init[tau, h, s], log_nu_hat[h, s], nu_hat[h, s], nu[h, s])
        for h in range(H):
            for s in range(S):
                for a in range(A):
                    acc = 0.0
                    for b in range(B):
                        acc += Q[h, s, a, b] * nu[h, s, b]
                    g_mu[h, s, a] = acc
                for b in range(B):
                    acc = 0.0
                    for a in range(A):
                        acc -= mu[h, s, a] * Q[h, s, a, b]
                    g_nu[h, s, b] = acc
        G_mu[:] = 0.0
        G_nu[:] = 0.0
        W[:] = 0.0

        # ---- the stage's iterations
        for _ in range(stage_len[tau]):
            t += 1
            if parallel_cells:  # large games: the cells on all Numba threads (one iteration is H*S independent cells)
                if not _iterate_cells_parallel(log_mu_hat, mu_hat, mu, g_mu, G_mu, mu_sum, log_nu_hat, nu_hat, nu, g_nu,
                                               G_nu, nu_sum, Q, W, eta, finite_ws):
                    return t
            else:
                for h in range(H):
                    for s in range(S):
                        w = _cell_iteration(log_mu_hat[h, s], mu_hat[h, s], mu[h, s], g_mu[h, s], G_mu[h, s],
                                            mu_sum[h, s], log_nu_hat[h, s], nu_hat[h, s], nu[h, s], g_nu[h, s],
                                            G_nu[h, s], nu_sum[h, s], Q[h, s], eta)
                        W[h, s] += w
                        if not np.isfinite(w):
                            return t
            # ---- evaluation of the running average, buffered in blocks
            if e < n_eval and eval_its[e] == t:
                inv_t = 1.0 / t
                for h in range(H):
                    for s in range(S):
                        for a in range(A):
                            mu_blk[n_blk, h, s, a] = mu_sum[h, s, a] * inv_t
                        for b in range(B):
                            nu_blk[n_blk, h, s, b] = nu_sum[h, s, b] * inv_t
                n_blk += 1
                e += 1
                if n_blk == block or e == n_eval:
                    _evaluate_block(rewards, trans2d, s1, mu_blk, nu_blk, n_blk, v_next, v_cur, q_blk, out_blk)
                    for j in range(n_blk):
                        for c in range(3):
                            curve[first_eval + j, c] = out_blk[j, c]
                    first_eval += n_blk
                    n_blk = 0

        # ---- stage end: best fixed policies in hindsight, then the value update (line 9)
        for h in range(H):
            for s in range(S):
                _best_in_hindsight(G_mu[h, s], mu_dag[tau, h, s], tie_first, tie_rtol)
                _best_in_hindsight(G_nu[h, s], nu_dag[tau, h, s], tie_first, tie_rtol)
        if tau + 1 < n_stages:
            inv_L = 1.0 / stage_len[tau]
            for h in range(H - 1, -1, -1):
                for sp in range(S):
                    vnext_ws[sp] = W[h + 1, sp] * inv_L
                np.dot(trans2d[h], vnext_ws, pv_ws)  # [P_h V](s, a, b): one pass over P_h (BLAS, 1 thread)
                for s in range(S):
                    for a in range(A):
                        for b in range(B):
                            Q[h, s, a, b] = rewards[h, s, a, b] + pv_ws[(s * A + a) * B + b]
    return 0


class Diverged(FloatingPointError):
    """A kernel produced a non-finite number; ``iteration`` is the first iteration where it was detected."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


@dataclass(frozen=True)
class Algorithm1Result:
    """Output of :func:`solve`.

    Attributes
    ----------
    mu_bar, nu_bar : float64 (H, S, A), (H, S, B)
        The output (average) policies (1/T) sum_t mu^t, nu^t.
    iterations : int64 (n_eval,)
        1-based iterations t at which the running average was evaluated.
    gap, value, best_response_value_max, best_response_value_min : float64 (n_eval,)
        NE-gap, V^{mu_bar^t, nu_bar^t}_1(s_1) and the two best-response values of the running average.
    stage_lengths : int64 (tau_bar,)
        Lengths of the stages used (the last possibly truncated).
    mu_dagger, nu_dagger : float64 (tau_bar, H, S, A), (tau_bar, H, S, B), or None
        Best fixed policies in hindsight per (tau, h, s) (None when ``store_hindsight=False``).
    kernel_seconds : float
        Wall time of the compiled kernel call (includes compilation on the first call in a process).
    """

    mu_bar: np.ndarray
    nu_bar: np.ndarray
    iterations: np.ndarray
    gap: np.ndarray
    value: np.ndarray
    best_response_value_max: np.ndarray
    best_response_value_min: np.ndarray
    stage_lengths: np.ndarray
    mu_dagger: np.ndarray
    nu_dagger: np.ndarray
    eta: float
    stage_reset: bool
    kernel_seconds: float

    @property
    def num_stages(self) -> int:
        return int(self.stage_lengths.shape[0])

    @property
    def final_gap(self) -> float:
        return float(self.gap[-1])


def _expand_init(init, n_stages: int, shape: tuple, name: str) -> np.ndarray:
    """Initial policies per (tau, h, s): None -> uniform; (H, S, d) -> same for every stage; (n_stages, H, S, d)."""
    if init is None:
        return np.full((n_stages,) + shape, -np.log(shape[-1]))
    p = np.asarray(init, dtype=np.float64)
    if p.shape == shape:
        p = np.broadcast_to(p, (n_stages,) + shape)
    elif p.shape != (n_stages,) + shape:
        raise ValueError(f"{name} must have shape {shape} or {(n_stages,) + shape}, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(np.abs(p.sum(-1) - 1.0) > 1e-6):
        raise ValueError(f"{name} must hold probability distributions over the last axis")
    with np.errstate(divide="ignore"):
        return np.ascontiguousarray(np.log(p))


def solve(
    game: ZeroSumGame,
    iterations: int,
    eta: float,
    mu_init=None,
    nu_init=None,
    stage_reset: bool = True,
    tie_break: str = "uniform",
    tie_rtol: float = 1e-9,
    eval_every: int | None = None,
    eval_log_points: int | None = None,
    store_hindsight: bool = True,
) -> Algorithm1Result:
    """Run Algorithm 1 on ``game`` (module docstring gives the update rules and readings).

    Parameters
    ----------
    game : ZeroSumGame
    iterations : int
        T >= 1.
    eta : float
        Learning rate > 0 (Theorem 1 assumes eta <= 1/(8 H^2)).
    mu_init, nu_init : float64 (H, S, A) / (H, S, B), or (tau_bar, H, S, A) / (tau_bar, H, S, B), optional
        Initial policies mu_tilde, nu_tilde (per stage if 4-D); uniform when omitted.
    stage_reset : bool
        Reset the iterates to the stage's initial policy at every stage start (paper's text).
    tie_break : {"uniform", "first"}
        Rule for exact ties in the best fixed policy in hindsight.
    tie_rtol : float
        Relative tolerance of tie detection (relative to max_a |G(a)|).
    eval_every, eval_log_points : int, optional
        Evaluation schedule (default: every iteration); see :func:`solvers.schedule.eval_iterations`.
    store_hindsight : bool
        Keep the best fixed policies in hindsight per stage (``mu_dagger``, ``nu_dagger``; needed by
        meta-learning and the Theorem 1 KL bound). They take (tau_bar, H, S, A + B) floats; on large
        sparse games ``False`` saves that memory and the result holds None.

    Sparse games (``game.is_sparse``) run the parallel kernel of :mod:`solvers.sparse` (the same
    iterates in closed form; curves equal the dense kernel's to rounding); its memory is the game,
    the outputs and O(H S (A + B) + H S A B) work arrays.
    """
    T = _check_iterations(iterations)
    eta = _check_eta(eta)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if not (np.isfinite(tie_rtol) and tie_rtol >= 0):
        raise ValueError(f"tie_rtol must be a finite number >= 0, got {tie_rtol!r}")
    H, S, A, B = game.shape
    L = stage_lengths(H, T)
    n_stages = L.shape[0]
    its = eval_iterations(T, eval_every, eval_log_points)
    curve = np.empty((its.shape[0], 3))
    if game.is_sparse:
        mu_sum, nu_sum, mu_dag, nu_dag, elapsed, bad = _solve_sparse(
            game, mu_init, nu_init, L, eta, stage_reset, tie_break, tie_rtol, its, store_hindsight, curve)
    else:
        mu_sum = np.empty((H, S, A))
        nu_sum = np.empty((H, S, B))
        if not store_hindsight:
            raise ValueError("store_hindsight=False is supported on sparse games only")
        log_mu0 = _expand_init(mu_init, n_stages, (H, S, A), "mu_init")
        log_nu0 = _expand_init(nu_init, n_stages, (H, S, B), "nu_init")
        block = int(max(1, min(EVAL_BLOCK, its.shape[0], EVAL_BLOCK_BYTES // (8 * H * S * (A + B) + 8 * S * A * B * 3))))
        mu_dag = np.empty((n_stages, H, S, A))
        nu_dag = np.empty((n_stages, H, S, B))
        t0 = time.perf_counter()
        parallel = H * S >= PARALLEL_CELLS and thread_budget() > 1
        # measured (docs/benchmarks.md, case C): parallel cells with one BLAS thread beat BLAS threads
        # with serial cells; OpenBLAS's and Numba's threads contend when both run
        with single_threaded_blas() if parallel else kernel_blas(S * A * B * S):
            bad = _algorithm1_kernel(
                game.rewards, game.transitions, game.initial_state, log_mu0, log_nu0, L, eta, bool(stage_reset),
                tie_break == "first", float(tie_rtol), its, block, curve, mu_sum, nu_sum, mu_dag, nu_dag,
                parallel,
            )
        elapsed = time.perf_counter() - t0
        mu_sum /= T  # the output average, in place (no copy of an (H, S, A) array)
        nu_sum /= T
    if bad:
        raise Diverged(f"Algorithm 1 produced a non-finite value at iteration {bad} (eta={eta})", int(bad))
    return Algorithm1Result(
        mu_bar=mu_sum,
        nu_bar=nu_sum,
        iterations=its,
        gap=curve[:, 1] - curve[:, 2],
        value=curve[:, 0].copy(),
        best_response_value_max=curve[:, 1].copy(),
        best_response_value_min=curve[:, 2].copy(),
        stage_lengths=L,
        mu_dagger=mu_dag,
        nu_dagger=nu_dag,
        eta=eta,
        stage_reset=bool(stage_reset),
        kernel_seconds=elapsed,
    )


def _init_views(init, n_stages: int, shape: tuple, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Initial policies per stage for the sparse kernel as (log, linear) arrays (n_stages, H*S, d).

    Uniform (None) and per-game (H, S, d) inputs become broadcast views (no (n_stages, H, S, d)
    array is materialised); the linear policy is normalised (p / sum p) like the dense kernel's
    log-softmax of the input.
    """
    H, S, d = shape
    if init is None:
        log_p, p = np.full(d, -np.log(d)), np.full(d, 1.0 / d)
        return (np.broadcast_to(log_p, (n_stages, H * S, d)), np.broadcast_to(p, (n_stages, H * S, d)))
    p = np.asarray(init, dtype=np.float64)
    if p.shape not in (shape, (n_stages,) + shape):
        raise ValueError(f"{name} must have shape {shape} or {(n_stages,) + shape}, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(np.abs(p.sum(-1) - 1.0) > 1e-6):
        raise ValueError(f"{name} must hold probability distributions over the last axis")
    p = p / p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    if p.shape == shape:
        return (np.broadcast_to(log_p.reshape(H * S, d), (n_stages, H * S, d)),
                np.broadcast_to(p.reshape(H * S, d), (n_stages, H * S, d)))
    return log_p.reshape(n_stages, H * S, d), p.reshape(n_stages, H * S, d)


def _solve_sparse(game, mu_init, nu_init, L, eta, stage_reset, tie_break, tie_rtol, its, store_hindsight, curve):
    """Algorithm 1 on a sparse game (solvers.sparse); returns (mu_bar, nu_bar, mu_dag, nu_dag, seconds, bad).

    Two-action games (A = B = 2) run on the compact state (one float per player and cell for the
    policy, D and the output sum; :data:`solvers.sparse.COMPACT_TWO_ACTION`); the averages are
    expanded to (H, S, 2) after the kernel has returned and freed its work arrays.
    """
    from . import sparse
    from .sparse import N_CHUNKS, algorithm1_sparse_kernel, kernel_threads

    H, S, A, B = game.shape
    T = int(L.sum())
    compact = A == 2 and B == 2 and sparse.COMPACT_TWO_ACTION
    mu_sum = np.empty((H, S, 1 if compact else A))
    nu_sum = np.empty((H, S, 1 if compact else B))
    n_stages = L.shape[0]
    log_mu0, mu0 = _init_views(mu_init, n_stages, (H, S, A), "mu_init")
    log_nu0, nu0 = _init_views(nu_init, n_stages, (H, S, B), "nu_init")
    rows = n_stages if store_hindsight else 1
    mu_dag = np.empty((rows, H * S if store_hindsight else 0, A))
    nu_dag = np.empty((rows, H * S if store_hindsight else 0, B))
    t0 = time.perf_counter()
    with kernel_threads(H * S):
        bad = algorithm1_sparse_kernel(
            game.rewards, game.transition_next, game.transition_prob, game.initial_state, log_mu0, log_nu0, mu0, nu0,
            L, eta, bool(stage_reset), tie_break == "first", float(tie_rtol), its, bool(store_hindsight), curve,
            mu_sum, nu_sum, mu_dag, nu_dag, N_CHUNKS,
        )
    elapsed = time.perf_counter() - t0
    if compact:
        mu_bar, nu_bar = _expand_two_action(mu_sum, T), _expand_two_action(nu_sum, T)
    else:
        mu_sum /= T  # the output average, in place (no copy of an (H, S, A) array)
        nu_sum /= T
        mu_bar, nu_bar = mu_sum, nu_sum
    if not store_hindsight:
        return mu_bar, nu_bar, None, None, elapsed, bad
    return mu_bar, nu_bar, mu_dag.reshape(n_stages, H, S, A), nu_dag.reshape(n_stages, H, S, B), elapsed, bad


def _expand_two_action(first_sum: np.ndarray, T: int) -> np.ndarray:
    """(H, S, 2) average policy from the sums (H, S, 1) of the first action's probability over T
    iterates: (x / T, 1 - x / T), the second entry as the compact kernel's evaluation forms it (no
    temporary array)."""
    out = np.empty(first_sum.shape[:2] + (2,))
    np.divide(first_sum[..., 0], T, out=out[..., 0])
    np.subtract(1.0, out[..., 0], out=out[..., 1])
    return out


def _check_iterations(T) -> int:
    if isinstance(T, (bool, np.bool_)) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"iterations T must be an integer >= 1, got {T!r}")
    return int(T)


def _check_eta(eta) -> float:
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number > 0, got {eta!r}") from None
    if not (np.isfinite(eta) and eta > 0):
        raise ValueError(f"eta must be a finite number > 0, got {eta!r}")
    return eta
