"""Kernels for sparse zero-sum games (large state spaces): validation, exact evaluation, Algorithm 1.

A sparse game stores P_h(. | s, a, b) as k successor indices ``nxt`` int32 (H, S, A, B, k) and their
probabilities ``prob`` float64 (same shape), padded with probability 0 (format: :mod:`solvers.games`).
Every kernel here runs ``parallel=True`` over cells (h, s) in contiguous chunks; each cell is
computed by one thread from data no other thread writes, so results do not depend on the number
of threads (bitwise). Work arrays are allocated once per call, never per iteration.

Algorithm 1 in "follow the regularised leader" form
----------------------------------------------------
Within a stage Q^tau is fixed, so the optimistic multiplicative-weights recursion of Algorithm 1
(lines 3-6, see :mod:`solvers.algorithm1`) has a closed form. With nu^0 the stage's first
min-player policy (the reset policy nu_tilde^tau, or the carried iterate without the reset),

    log mu_hat^t = log mu_hat^0 + eta Q^tau (nu^0 + nu^1 + ... + nu^{t-1})         (+ const)
    log mu^t     = log mu_hat^t + eta Q^tau nu^{t-1}                                (+ const)
                 = log mu_hat^0 + eta Q^tau (nu^0 + D_nu^{t-1})
    D_nu^t       = R_nu^t + nu^t,  R_nu^t = nu^1 + ... + nu^t,  D_nu^t = D_nu^{t-1} - nu^{t-1} + 2 nu^t

and symmetrically mu for nu with -(Q^tau)^T. So one iteration is one softmax per player and cell
(one exp per action, no log, no auxiliary policy array), and the state per player is the current
policy, D and the running sum for the output average: 3 (H, S, A) arrays instead of 6. The softmax
subtracts the maximum, so large eta Q never overflows. It equals the dense kernel's recursion in
exact arithmetic; the curves agree to rounding (tests/test_sparse.py). The running sums of the output
average take the stage's R = D - pol at the stage end, not an update per iteration. The best fixed policy in
hindsight uses sum_{t in tau} Q^tau nu^t = Q^tau R_nu^L = Q^tau (D_nu^L - nu^L); the value update
(line 9) uses W_h(s) = sum_{t in tau} mu^t_h(s)^T Q^tau_h(s) nu^t_h(s) accumulated per iteration.
Without the stage reset, log mu_hat^0 of the next stage is carried in a ``base`` array:
base <- base + eta Q^tau (D_nu^L - 2 nu^L) (= log mu_hat^L) + eta Q^{tau+1} nu^L.

Compact two-action state (A = B = 2, the size of the paper's large games). A distribution over two
actions is its first entry p_0 (p_1 = 1 - p_0); D's entries sum to 1 + the stage's iterations so
far (D starts a stage at a policy and gains 2 p^t - p^{t-1}, of sum 1, per iteration), so D_1 is
known from D_0; a softmax over two actions depends only on the logit difference x_1 - x_0, so the
base is one difference. Per cell the state is then Q (4 floats), W, and policy, D and output sum of
both players (6): 11 floats instead of 17, for a game of 28 (k = 4): 1.39 x the game instead of
1.61 x. The iterates equal the generic state's in exact arithmetic and to rounding in floats
(tests/test_sparse.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from ._jit import njit, prange

from .algorithm1 import _best_in_hindsight

__all__ = ["check_sparse_transitions", "evaluate_sparse", "kernel_threads", "N_CHUNKS", "PARALLEL_MIN_CELLS"]

#: Run two-action games (A = B = 2) on the compact state of :func:`_iterate_2x2` (11 instead of 17
#: floats per cell; see the module docstring). Tests switch it off to compare with the generic state.
COMPACT_TWO_ACTION = True
#: Cells (or states) are split into this many contiguous chunks per parallel loop.
N_CHUNKS = 64
#: Below this many cells H * S the kernels run on one thread: a parallel loop's start and barrier
#: (tens of microseconds, milliseconds when the machine is oversubscribed) cost more than the work.
PARALLEL_MIN_CELLS = 50_000


@contextmanager
def kernel_threads(cells: int):
    """Run the enclosed kernels on Numba's default threads, or on one thread for small games."""
    import numba

    before = numba.get_num_threads()
    if cells < PARALLEL_MIN_CELLS:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# ----------------------------------------------------------------------------- validation


@njit(cache=True, parallel=True)
def _check_rows(nxt, prob, num_states, atol, n_chunks, found):
    """Scan rows of nxt/prob (n_rows, k) for defects; fills ``found`` (n_chunks, 3) in place.

    found[c] = (kind, row, j) of the first defective row of chunk c, kind 0 = none, 1 = negative
    probability, 2 = successor index outside [0, num_states), 3 = row sum off 1 by more than atol
    (j unused).
    """
    n_rows, k = prob.shape
    for c in prange(n_chunks):
        found[c, 0] = 0
        for row in range(c * n_rows // n_chunks, (c + 1) * n_rows // n_chunks):
            total = 0.0
            for j in range(k):
                if prob[row, j] < 0.0:
                    found[c, 0], found[c, 1], found[c, 2] = 1, row, j
                    break
                if nxt[row, j] < 0 or nxt[row, j] >= num_states:
                    found[c, 0], found[c, 1], found[c, 2] = 2, row, j
                    break
                total += prob[row, j]
            if found[c, 0] == 0 and abs(total - 1.0) > atol:
                found[c, 0], found[c, 1], found[c, 2] = 3, row, 0
            if found[c, 0] != 0:
                break


def check_sparse_transitions(nxt: np.ndarray, prob: np.ndarray, num_states: int, atol: float) -> None:
    """Raise ``GameError`` naming the first defective row (finite probabilities are checked before).

    nxt: int32 (..., k) (zero-sum (H, S, A, B, k), N-player (H, S, A_1, ..., A_N, k)); prob: float64 (same
    shape). One parallel pass, no temporaries.
    """
    from .games import GameError

    shape = prob.shape
    k = shape[-1]
    found = np.zeros((N_CHUNKS, 3), dtype=np.int64)
    with kernel_threads(prob.size // (4 * k)):
        _check_rows(nxt.reshape(-1, k), prob.reshape(-1, k), num_states, float(atol), N_CHUNKS, found)
    hits = found[found[:, 0] != 0]
    if hits.shape[0] == 0:
        return
    kind, row, j = (int(x) for x in hits[0])
    idx = tuple(int(i) for i in np.unravel_index(row, shape[:-1]))
    if kind == 1:
        raise GameError(f"transition_prob has a negative probability at index {idx + (j,)}: {prob[idx + (j,)]}")
    if kind == 2:
        raise GameError(f"transition_next has a state index outside [0, {num_states}) at index {idx + (j,)}: {nxt[idx + (j,)]}")
    raise GameError(f"transition_prob rows must sum to 1 (tolerance {atol:g}); row {idx} sums to {prob[idx].sum():.12g}")


# ----------------------------------------------------------------------------- exact evaluation


@njit(cache=True, parallel=True)
def _evaluate_sparse(rewards, nxt, prob, s1, mu_sum, nu_sum, d_mu, d_nu, mu, nu, running, scale, v_next, v_cur,
                     colacc, out):
    """Exact V^{mu,nu}, V^{dag,nu}, V^{mu,dag} at s1 by backward induction; fills ``out`` (3,) in place.

    rewards: float64 (H, S, A, B); nxt int32 / prob float64 (H, S, A, B, k); cell arrays (H*S, d).
    The evaluated max-player policy is scale * (mu_sum + d_mu - mu) with ``running`` (the running
    average mid-stage: earlier stages' sum plus this stage's R = D - pol, never materialised),
    scale * mu_sum otherwise (d_mu, mu unused); the same for nu. With the compact two-action state
    (A = B = 2, cell arrays (H*S, 1)) they hold the first action's entries. Work arrays: v_next,
    v_cur float64 (S, 3) (columns value, br_max, br_min, one cache line per gathered successor),
    colacc float64 (n_chunks, A + 2 B) (per-chunk scratch).
    Per step h: Q_c(s, a, b) = r_h(s, a, b) + sum_j prob_j V_{h+1}(nxt_j)[c]; rules of
    :mod:`solvers.evaluate`. Cost O(H S A B k), one pass over the game.
    """
    H, S, A, B = rewards.shape
    k = nxt.shape[4]
    n_chunks = colacc.shape[0]
    compact = A == 2 and B == 2 and mu_sum.shape[1] == 1
    v_next[:, :] = 0.0
    for h in range(H - 1, -1, -1):
        for c in prange(n_chunks):
            acc = colacc[c, :B]
            pma = colacc[c, B:B + A]
            pnb = colacc[c, B + A:]
            for s in range(c * S // n_chunks, (c + 1) * S // n_chunks):
                cell = h * S + s
                if compact:  # the first action's sums; the second's probability is 1 - the first's
                    pma[0] = scale * (mu_sum[cell, 0] + d_mu[cell, 0] - mu[cell, 0]) if running else scale * mu_sum[cell, 0]
                    pnb[0] = scale * (nu_sum[cell, 0] + d_nu[cell, 0] - nu[cell, 0]) if running else scale * nu_sum[cell, 0]
                    pma[1] = 1.0 - pma[0]
                    pnb[1] = 1.0 - pnb[0]
                else:
                    for a in range(A):
                        pma[a] = (scale * (mu_sum[cell, a] + d_mu[cell, a] - mu[cell, a]) if running
                                  else scale * mu_sum[cell, a])
                    for b in range(B):
                        pnb[b] = (scale * (nu_sum[cell, b] + d_nu[cell, b] - nu[cell, b]) if running
                                  else scale * nu_sum[cell, b])
                val = 0.0
                brmax = -np.inf
                for b in range(B):
                    acc[b] = 0.0
                for a in range(A):
                    pa = pma[a]
                    inner_val = 0.0
                    inner_max = 0.0
                    for b in range(B):
                        q0 = rewards[h, s, a, b]
                        q1 = q0
                        q2 = q0
                        for j in range(k):
                            p = prob[h, s, a, b, j]
                            sp = nxt[h, s, a, b, j]
                            q0 += p * v_next[sp, 0]
                            q1 += p * v_next[sp, 1]
                            q2 += p * v_next[sp, 2]
                        pb = pnb[b]
                        inner_val += pb * q0
                        inner_max += pb * q1
                        acc[b] += pa * q2
                    val += pa * inner_val
                    if inner_max > brmax:
                        brmax = inner_max
                brmin = np.inf
                for b in range(B):
                    if acc[b] < brmin:
                        brmin = acc[b]
                v_cur[s, 0] = val
                v_cur[s, 1] = brmax
                v_cur[s, 2] = brmin
        v_next, v_cur = v_cur, v_next
    out[0] = v_next[s1, 0]
    out[1] = v_next[s1, 1]
    out[2] = v_next[s1, 2]


def evaluate_sparse(game, mu: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """(value, br_max, br_min) at s_1 of validated policies mu (H, S, A), nu (H, S, B) on a sparse game."""
    H, S, A, B = game.shape
    out = np.empty(3)
    m2, n2 = mu.reshape(H * S, A), nu.reshape(H * S, B)
    with kernel_threads(H * S):
        _evaluate_sparse(game.rewards, game.transition_next, game.transition_prob, game.initial_state, m2, n2, m2, n2, m2, n2,
                         False, 1.0, np.empty((S, 3)), np.empty((S, 3)), np.empty((min(N_CHUNKS, S), A + 2 * B)), out)
    return out


def expected_next_value(game, h: int, v_next: np.ndarray) -> np.ndarray:
    """[P_h V](s, a, b) = sum_j prob_j V(nxt_j) as float64 (S, A, B) (NumPy; for the LP solver on moderate games)."""
    return np.einsum("sabj,sabj->sab", game.transition_prob[h], v_next[game.transition_next[h]])


# ----------------------------------------------------------------------------- Algorithm 1


@njit(cache=True, inline="always")
def _softmax(x, out, n):
    """out[:n] <- softmax(x[:n]), the maximum subtracted (no overflow); n - 1 exps (the maximum's is 1)."""
    m = x[0]
    im = 0
    for i in range(1, n):
        if x[i] > m:
            m = x[i]
            im = i
    z = 1.0
    for i in range(n):
        if i != im:
            e = np.exp(x[i] - m)
            out[i] = e
            z += e
    out[im] = 1.0
    inv = 1.0 / z
    for i in range(n):
        out[i] *= inv


@njit(cache=True, parallel=True)
def _iterate(Q, log_mu0, log_nu0, mu0, nu0, base_mu, base_nu, reset, eta, mu, nu, d_mu, d_nu, W, scratch, bad):
    """One iteration of Algorithm 1 on every cell (module docstring); arrays updated in place.

    Cell arrays are flattened over (h, s): Q (C, A, B), mu / d_mu (C, A), nu / d_nu (C, B), W (C,).
    With ``reset`` the stage's log mu_hat^0 and nu^0 are log_mu0 / nu0 of the stage (C, A) / (C, B)
    (broadcast views allowed); otherwise base_mu / base_nu hold log mu_hat^0 + eta Q nu^0.
    scratch: float64 (n_chunks, 2 (A + B)); bad: int64 (n_chunks,), set to 1 where a non-finite
    value appeared. The running sums for the output average are not touched: the stage's sum is
    R = D - pol, added at the stage end (this saves a read and a write of 2 (A + B) floats per cell).
    """
    C, A, B = Q.shape
    n_chunks = scratch.shape[0]
    for c in prange(n_chunks):
        xa = scratch[c, :A]
        xb = scratch[c, A:A + B]
        pa = scratch[c, A + B:2 * A + B]
        pb = scratch[c, 2 * A + B:]
        for cell in range(c * C // n_chunks, (c + 1) * C // n_chunks):
            if reset:
                for a in range(A):
                    acc = 0.0
                    for b in range(B):
                        acc += Q[cell, a, b] * (d_nu[cell, b] + nu0[cell, b])
                    xa[a] = log_mu0[cell, a] + eta * acc
                for b in range(B):
                    acc = 0.0
                    for a in range(A):
                        acc += Q[cell, a, b] * (d_mu[cell, a] + mu0[cell, a])
                    xb[b] = log_nu0[cell, b] - eta * acc
            else:
                for a in range(A):
                    acc = 0.0
                    for b in range(B):
                        acc += Q[cell, a, b] * d_nu[cell, b]
                    xa[a] = base_mu[cell, a] + eta * acc
                for b in range(B):
                    acc = 0.0
                    for a in range(A):
                        acc += Q[cell, a, b] * d_mu[cell, a]
                    xb[b] = base_nu[cell, b] - eta * acc
            _softmax(xa, pa, A)
            _softmax(xb, pb, B)
            w = 0.0
            for a in range(A):
                d_mu[cell, a] += 2.0 * pa[a] - mu[cell, a]
                mu[cell, a] = pa[a]
                acc = 0.0
                for b in range(B):
                    acc += Q[cell, a, b] * pb[b]
                w += pa[a] * acc
            for b in range(B):
                d_nu[cell, b] += 2.0 * pb[b] - nu[cell, b]
                nu[cell, b] = pb[b]
            W[cell] += w
            if not np.isfinite(w):
                bad[c] = 1


@njit(cache=True, inline="always")
def _logistic(d):
    """softmax((0, d)) = (p_0, p_1) with one exp and no data-dependent branch (the larger entry is
    chosen by selects); the maximum is subtracted, so any d (also +-inf) is safe."""
    e = np.exp(-abs(d))
    inv = 1.0 / (1.0 + e)
    small = e * inv
    first_larger = not d > 0.0  # ties and NaN: index 0 is the maximum, as in _softmax
    return (inv if first_larger else small), (small if first_larger else inv)


@njit(cache=True, parallel=True)
def _iterate_2x2(Q, log_mu0, log_nu0, mu0, nu0, base_mu, base_nu, reset, eta, d_total, mu, nu, d_mu, d_nu, W,
                 n_chunks, bad):
    """:func:`_iterate` for A = B = 2 on the compact two-action state (module docstring): mu, nu, d_mu,
    d_nu (C, 1) hold the first action's entry; the second is 1 - pol for the policy and
    ``d_total`` - D_0 for D (D's entries sum to 1 + the stage's iterations so far = ``d_total``).
    A softmax over two actions depends only on the logit difference x_1 - x_0, so base_mu / base_nu
    (C, 1) hold that difference. Equal to :func:`_iterate` in exact arithmetic (to rounding in floats)."""
    C = Q.shape[0]
    for c in prange(n_chunks):
        for cell in range(c * C // n_chunks, (c + 1) * C // n_chunks):
            q00 = Q[cell, 0, 0]
            q01 = Q[cell, 0, 1]
            q10 = Q[cell, 1, 0]
            q11 = Q[cell, 1, 1]
            e0 = d_nu[cell, 0]
            e1 = d_total - e0
            f0 = d_mu[cell, 0]
            f1 = d_total - f0
            if reset:
                e0 += nu0[cell, 0]
                e1 += nu0[cell, 1]
                f0 += mu0[cell, 0]
                f1 += mu0[cell, 1]
                xa = log_mu0[cell, 1] - log_mu0[cell, 0]
                xb = log_nu0[cell, 1] - log_nu0[cell, 0]
            else:
                xa = base_mu[cell, 0]
                xb = base_nu[cell, 0]
            pa0, pa1 = _logistic(xa + eta * ((q10 - q00) * e0 + (q11 - q01) * e1))
            pb0, pb1 = _logistic(xb - eta * ((q01 - q00) * f0 + (q11 - q10) * f1))
            d_mu[cell, 0] += 2.0 * pa0 - mu[cell, 0]
            d_nu[cell, 0] += 2.0 * pb0 - nu[cell, 0]
            mu[cell, 0] = pa0
            nu[cell, 0] = pb0
            w = pa0 * (q00 * pb0 + q01 * pb1) + pa1 * (q10 * pb0 + q11 * pb1)
            W[cell] += w
            if not np.isfinite(w):
                bad[c] = 1


@njit(cache=True, parallel=True)
def _stage_start(mu0, nu0, mu, nu, d_mu, d_nu, W, n_chunks):
    """Reset (line 10): mu, nu <- the stage's initial policies, D <- mu, nu (R = 0), W <- 0; in place."""
    C, A = mu.shape
    B = nu.shape[1]
    for c in prange(n_chunks):
        for cell in range(c * C // n_chunks, (c + 1) * C // n_chunks):
            for a in range(A):
                mu[cell, a] = mu0[cell, a]
                d_mu[cell, a] = mu0[cell, a]
            for b in range(B):
                nu[cell, b] = nu0[cell, b]
                d_nu[cell, b] = nu0[cell, b]
            W[cell] = 0.0


@njit(cache=True, parallel=True)
def _stage_end(rewards, nxt, prob, Q, W, inv_L, update, reset, eta, mu, nu, d_mu, d_nu, mu_sum, nu_sum, base_mu,
               base_nu, store, mu_dag, nu_dag, tie_first, tie_rtol, scratch, num_states):
    """Stage sums into the running sums, best fixed policies in hindsight (if ``store``) and the value
    update (if ``update``); in place.

    rewards (C, A, B), nxt / prob (C, A, B, k), W (C + S,) with W[C:] = 0 (Q_{H+1} = 0). Value
    update (line 9): Q_h(s, a, b) <- r_h(s, a, b) + sum_j prob_j W_{h+1}(nxt_j) / L_tau; every cell
    reads only W, so all cells update at once. Without the reset the next stage's base is
    base + eta Q^tau (D - 2 pol) (= log mu_hat^L) + eta Q^{tau+1} pol, shifted to max 0; D <- pol.
    mu_dag / nu_dag (C, A) / (C, B): this stage's slices.
    """
    C, A, B = Q.shape
    S = num_states
    n_chunks = scratch.shape[0]
    for c in prange(n_chunks):
        ga = scratch[c, :A]
        gb = scratch[c, A:A + B]
        for cell in range(c * C // n_chunks, (c + 1) * C // n_chunks):
            for a in range(A):
                mu_sum[cell, a] += d_mu[cell, a] - mu[cell, a]  # R_mu = sum of the stage's iterates
            for b in range(B):
                nu_sum[cell, b] += d_nu[cell, b] - nu[cell, b]
            if store:
                for a in range(A):
                    acc = 0.0
                    for b in range(B):
                        acc += Q[cell, a, b] * (d_nu[cell, b] - nu[cell, b])
                    ga[a] = acc
                for b in range(B):
                    acc = 0.0
                    for a in range(A):
                        acc -= Q[cell, a, b] * (d_mu[cell, a] - mu[cell, a])
                    gb[b] = acc
                _best_in_hindsight(ga, mu_dag[cell], tie_first, tie_rtol)
                _best_in_hindsight(gb, nu_dag[cell], tie_first, tie_rtol)
            if not update:
                continue
            if not reset:
                _base_step(Q[cell], base_mu[cell], base_nu[cell], d_mu[cell], d_nu[cell], mu[cell], nu[cell], eta, -2.0)
            _value_update(rewards, nxt, prob, Q, W, inv_L, S, cell)
            if not reset:
                _base_step(Q[cell], base_mu[cell], base_nu[cell], mu[cell], nu[cell], mu[cell], nu[cell], eta, 0.0)
                m = -np.inf
                for a in range(A):
                    m = max(m, base_mu[cell, a])
                for a in range(A):
                    base_mu[cell, a] -= m
                m = -np.inf
                for b in range(B):
                    m = max(m, base_nu[cell, b])
                for b in range(B):
                    base_nu[cell, b] -= m
                for a in range(A):
                    d_mu[cell, a] = mu[cell, a]
                for b in range(B):
                    d_nu[cell, b] = nu[cell, b]


@njit(cache=True, inline="always")
def _value_update(rewards, nxt, prob, Q, W, inv_L, S, cell):
    """Line 9 for one cell: Q(a, b) <- r(a, b) + sum_j prob_j W_{h+1}(nxt_j) / L_tau (W of step h + 1
    starts at (h + 1) S; W[C:] = 0 is Q_{H+1} = 0)."""
    A, B, k = nxt.shape[1], nxt.shape[2], nxt.shape[3]
    nxt_row = (cell // S + 1) * S
    for a in range(A):
        for b in range(B):
            acc = 0.0
            for j in range(k):
                acc += prob[cell, a, b, j] * W[nxt_row + nxt[cell, a, b, j]]
            Q[cell, a, b] = rewards[cell, a, b] + acc * inv_L


@njit(cache=True, parallel=True)
def _stage_end_2x2(rewards, nxt, prob, Q, W, L, update, reset, eta, mu, nu, d_mu, d_nu, mu_sum, nu_sum, base_mu,
                   base_nu, store, mu_dag, nu_dag, tie_first, tie_rtol, scratch, num_states):
    """:func:`_stage_end` on the compact two-action state of :func:`_iterate_2x2` (mu_sum / nu_sum
    (C, 1): sums of the first action's entry). At the stage end D's entries sum to 1 + L, so the
    stage's R = D - pol has entries R_0 = D_0 - pol_0 and R_1 = L - R_0; without the reset the base
    (a logit difference) takes the same steps as in :func:`_stage_end` and needs no shift."""
    C = Q.shape[0]
    S = num_states
    n_chunks = scratch.shape[0]
    for c in prange(n_chunks):
        ga = scratch[c, :2]
        gb = scratch[c, 2:4]
        for cell in range(c * C // n_chunks, (c + 1) * C // n_chunks):
            m = mu[cell, 0]
            n = nu[cell, 0]
            rm0 = d_mu[cell, 0] - m
            rn0 = d_nu[cell, 0] - n
            rm1 = L - rm0
            rn1 = L - rn0
            mu_sum[cell, 0] += rm0
            nu_sum[cell, 0] += rn0
            if store:
                ga[0] = Q[cell, 0, 0] * rn0 + Q[cell, 0, 1] * rn1
                ga[1] = Q[cell, 1, 0] * rn0 + Q[cell, 1, 1] * rn1
                gb[0] = -(Q[cell, 0, 0] * rm0 + Q[cell, 1, 0] * rm1)
                gb[1] = -(Q[cell, 0, 1] * rm0 + Q[cell, 1, 1] * rm1)
                _best_in_hindsight(ga, mu_dag[cell], tie_first, tie_rtol)
                _best_in_hindsight(gb, nu_dag[cell], tie_first, tie_rtol)
            if not update:
                continue
            if not reset:  # base <- base + eta Q^tau (D - 2 pol) = base + eta Q^tau (R - pol), as logit differences
                base_mu[cell, 0] += eta * ((Q[cell, 1, 0] - Q[cell, 0, 0]) * (rn0 - n)
                                           + (Q[cell, 1, 1] - Q[cell, 0, 1]) * (rn1 - (1.0 - n)))
                base_nu[cell, 0] -= eta * ((Q[cell, 0, 1] - Q[cell, 0, 0]) * (rm0 - m)
                                           + (Q[cell, 1, 1] - Q[cell, 1, 0]) * (rm1 - (1.0 - m)))
            _value_update(rewards, nxt, prob, Q, W, 1.0 / L, S, cell)
            if not reset:  # + eta Q^{tau+1} pol; D <- pol
                base_mu[cell, 0] += eta * ((Q[cell, 1, 0] - Q[cell, 0, 0]) * n + (Q[cell, 1, 1] - Q[cell, 0, 1]) * (1.0 - n))
                base_nu[cell, 0] -= eta * ((Q[cell, 0, 1] - Q[cell, 0, 0]) * m + (Q[cell, 1, 1] - Q[cell, 1, 0]) * (1.0 - m))
                d_mu[cell, 0] = m
                d_nu[cell, 0] = n


@njit(cache=True)
def _base_step(q, base_mu, base_nu, d_mu, d_nu, mu, nu, eta, coef):
    """base_mu += eta q (d_nu + coef nu), base_nu -= eta q^T (d_mu + coef mu); in place (one cell)."""
    A, B = q.shape
    for a in range(A):
        acc = 0.0
        for b in range(B):
            acc += q[a, b] * (d_nu[b] + coef * nu[b])
        base_mu[a] += eta * acc
    for b in range(B):
        acc = 0.0
        for a in range(A):
            acc += q[a, b] * (d_mu[a] + coef * mu[a])
        base_nu[b] -= eta * acc


@njit(cache=True)
def algorithm1_sparse_kernel(
    rewards, nxt, prob, s1, log_mu0, log_nu0, mu0, nu0, stage_len, eta, stage_reset, tie_first, tie_rtol,
    eval_its, store, curve, mu_sum, nu_sum, mu_dag, nu_dag, n_chunks,
):
    """Run Algorithm 1 on a sparse game for sum(stage_len) iterations; fills the outputs in place.

    rewards float64 (H, S, A, B); nxt int32 / prob float64 (H, S, A, B, k); log_mu0 / mu0 float64
    (n_stages, H*S, A) and log_nu0 / nu0 (n_stages, H*S, B): the initial policies per stage (log and
    linear, normalised; broadcast views allowed); stage_len int64 (n_stages,); eval_its int64
    (n_eval,) ascending 1-based. Outputs: curve (n_eval, 3) = (value, br_max, br_min) of the running
    average; mu_sum (H, S, A), nu_sum (H, S, B), or (H, S, 1) each for the compact two-action state
    (A = B = 2: the sums of the first action's entry, see :func:`_iterate_2x2`); mu_dag (n_stages, H*S,
    A), nu_dag (n_stages, H*S, B) when ``store`` (else unused, may be empty). Memory besides the game
    and outputs: Q (H, S, A, B), mu, D_mu (H S A), nu, D_nu (H S B) (H S each when compact), W
    ((H+1) S), base arrays only without the stage reset, and two (S, 3) evaluation buffers. Returns
    0, or the iteration at which a non-finite value appeared.
    """
    H, S, A, B = rewards.shape
    C = H * S
    k = nxt.shape[4]
    n_stages = stage_len.shape[0]
    n_eval = eval_its.shape[0]
    r2 = rewards.reshape(C, A, B)
    nxt2 = nxt.reshape(C, A, B, k)
    prob2 = prob.reshape(C, A, B, k)
    compact = A == 2 and B == 2 and mu_sum.shape[2] == 1
    wa = mu_sum.shape[2]
    wb = nu_sum.shape[2]
    ms = mu_sum.reshape(C, wa)
    ns = nu_sum.reshape(C, wb)
    Q = np.zeros((C, A, B))
    mu = np.empty((C, wa))
    nu = np.empty((C, wb))
    d_mu = np.empty((C, wa))
    d_nu = np.empty((C, wb))
    W = np.zeros(C + S)
    nb = 0 if stage_reset else C
    base_mu = np.empty((nb, wa))
    base_nu = np.empty((nb, wb))
    scratch = np.empty((n_chunks, 2 * (A + B)))
    bad = np.zeros(n_chunks, dtype=np.int64)
    v_next = np.empty((S, 3))
    v_cur = np.empty((S, 3))
    ev_chunks = min(n_chunks, S)
    colacc = np.empty((ev_chunks, A + 2 * B))
    out = np.empty(3)
    mu_sum[:] = 0.0
    nu_sum[:] = 0.0
    if not stage_reset and compact:
        base_mu[:, 0] = log_mu0[0][:, 1] - log_mu0[0][:, 0]
        base_nu[:, 0] = log_nu0[0][:, 1] - log_nu0[0][:, 0]
    elif not stage_reset:
        base_mu[:, :] = log_mu0[0]
        base_nu[:, :] = log_nu0[0]
    t = 0
    e = 0
    for tau in range(n_stages):
        if stage_reset or tau == 0:
            _stage_start(mu0[tau], nu0[tau], mu, nu, d_mu, d_nu, W, n_chunks)
        else:
            W[:C] = 0.0
        for i in range(stage_len[tau]):
            t += 1
            if compact:
                _iterate_2x2(Q, log_mu0[tau], log_nu0[tau], mu0[tau], nu0[tau], base_mu, base_nu, stage_reset, eta,
                             1.0 + i, mu, nu, d_mu, d_nu, W, n_chunks, bad)
            else:
                _iterate(Q, log_mu0[tau], log_nu0[tau], mu0[tau], nu0[tau], base_mu, base_nu, stage_reset, eta,
                         mu, nu, d_mu, d_nu, W, scratch, bad)
            for c in range(n_chunks):
                if bad[c]:
                    return t
            if e < n_eval and eval_its[e] == t:
                _evaluate_sparse(rewards, nxt, prob, s1, ms, ns, d_mu, d_nu, mu, nu, True, 1.0 / t, v_next, v_cur,
                                 colacc, out)
                curve[e, 0] = out[0]
                curve[e, 1] = out[1]
                curve[e, 2] = out[2]
                e += 1
        update = tau + 1 < n_stages
        dag = tau if store else 0
        if compact:
            _stage_end_2x2(r2, nxt2, prob2, Q, W, float(stage_len[tau]), update, stage_reset, eta, mu, nu, d_mu, d_nu,
                           ms, ns, base_mu, base_nu, store, mu_dag[dag], nu_dag[dag], tie_first, tie_rtol, scratch, S)
        else:
            _stage_end(r2, nxt2, prob2, Q, W, 1.0 / stage_len[tau], update, stage_reset, eta, mu, nu, d_mu, d_nu,
                       ms, ns, base_mu, base_nu, store, mu_dag[dag], nu_dag[dag], tie_first, tie_rtol, scratch, S)
    return 0
