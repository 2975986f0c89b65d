"""Numba kernels for product policies on N-player Markov games (dense, sparse or product-state transitions).

The kernels see a game in a flat "kernel form" (:func:`kernel_form`): rewards (R, H, S, J) over
joint actions j (C order over (A_1, ..., A_N)), either dense transitions (H, S, J, S), sparse ones
(k successors ``snext`` (H, S, J, k) with probabilities (H, S, J, k), issue 9), or local kernels
(N, H, L, A, L) of a :class:`solvers.product_games.ProductMarkovGame`, and decode tables.
A product policy is one padded float64 array ``pol`` (N, H, S, A_max), ``pol[i, h, s, a]`` =
pi_{h,i}(a | s) for a < A_i (entries a >= A_i are 0). Reward rows R >= N: rows 0..N-1 are the
players' rewards; an optional row N holds a potential phi (its value is Phi(pi)).

Finite horizon (gamma = None), for every row b (backward induction, V_{H+1} = 0):

    Q_{h,b}(s, a) = r_{h,b}(s, a) + sum_{s'} P_h(s' | s, a) V_{h+1,b}(s'),   V_{h,b}(s) = sum_a pi_h(a | s) Q_{h,b}(s, a)

Discounted (H = 1): ``V_b = (I - gamma P_pi)^{-1} r_{pi,b}`` (one LU solve), ``Q_b = r_b + gamma P V_b``.
The averaged Q of Appendix C: ``Qbar_i(s, a_i) = sum_{a_{-i}} pi_{-i}(a_{-i} | s) Q_i(s, a_i, a_{-i})``.

Expectations ``E[b, s, j] = sum_{s'} P(s' | s, j) V[b, s']`` are dense mat-vecs, k-term gathers for
sparse games (``parallel=True`` over states: O(S J k)), or for product games successive mode
products with each player's (L A, L) kernel (O(N (LA)^N L) instead of S^2 J).
Kernels fill preallocated arrays in place (said per function) and allocate only small buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ._jit import njit, prange

from .games import GameError
from .sparse import N_CHUNKS

__all__ = ["KernelForm", "kernel_form", "pad_policies", "unpad_policies"]

#: A discounted sparse game is still evaluated by dense (S, S) solves: refuse beyond this many states.
MAX_DISCOUNTED_STATES = 20_000


@dataclass(frozen=True)
class KernelForm:
    """A game's arrays as the kernels take them (module docstring).

    rewards : float64 (R, H, S, J); rows 0..N-1 the players', row N the potential if ``has_phi``
    dense_p : float64 (H, S, J, S) dense, (H, S, J, k) sparse (the probabilities of ``snext``), or a
        (1, 1, 1, 1) placeholder when ``factored``
    snext : int32 (H, S, J, k), the successors of a sparse game, else a (0, 1, 1, 1) placeholder
    local_p : float64 (N, H, L, A, L) or a (1, 1, 1, 1, 1) placeholder
    xmap : int64 (S, J), index of (s, j) in the mode-product output (factored), else (1, 1)
    adec : int64 (J, N), a_i of joint action j;  sdec : int64 (S, N), s_i of joint state s (factored)
    actions : int64 (N,);  rho : float64 (S,), the initial distribution (one-hot s_1 in finite horizon)
    gamma : the discount, 0.0 when finite horizon (then ``discounted`` is False)
    """

    rewards: np.ndarray
    dense_p: np.ndarray
    snext: np.ndarray
    local_p: np.ndarray
    xmap: np.ndarray
    adec: np.ndarray
    sdec: np.ndarray
    actions: np.ndarray
    rho: np.ndarray
    gamma: float
    discounted: bool
    factored: bool
    num_players: int
    has_phi: bool

    @property
    def horizon(self) -> int:
        return self.rewards.shape[1]

    @property
    def num_states(self) -> int:
        return self.rewards.shape[2]

    @property
    def sparse(self) -> bool:
        return self.snext.shape[0] > 0

    @property
    def max_actions(self) -> int:
        return int(self.actions.max())

    def with_rewards(self, rewards: np.ndarray, has_phi: bool = False) -> "KernelForm":
        from dataclasses import replace

        return replace(self, rewards=np.ascontiguousarray(rewards, dtype=np.float64), has_phi=has_phi)


def kernel_form(game, phi: np.ndarray | None = None) -> KernelForm:
    """The kernel form of a :class:`MarkovGame` or :class:`ProductMarkovGame`; ``phi`` (H, S, A_1..A_N) adds row N."""
    N, H, S = game.num_players, game.horizon, game.num_states
    actions = np.asarray(game.num_actions, dtype=np.int64)
    J = int(np.prod(actions))
    r = game.rewards.reshape(N, H, S, J)
    if phi is not None:
        r = np.concatenate([r, np.asarray(phi, dtype=np.float64).reshape(1, H, S, J)])
    adec = np.stack(np.unravel_index(np.arange(J), tuple(actions)), axis=1).astype(np.int64)
    factored = hasattr(game, "local_transitions")
    if factored:
        local = np.ascontiguousarray(game.local_transitions)
        L, A = local.shape[2], local.shape[3]
        sdec = np.stack(np.unravel_index(np.arange(S), (L,) * N), axis=1).astype(np.int64)
        x = sdec[:, None, :] * A + adec[None, :, :]  # (S, J, N): x_i = s_i A + a_i
        xmap = np.ravel_multi_index(tuple(np.moveaxis(x, 2, 0)), ((L * A),) * N).astype(np.int64)
        dense = np.zeros((1, 1, 1, 1))
    else:
        local = np.zeros((1, 1, 1, 1, 1))
        sdec = np.zeros((S, N), dtype=np.int64)
        xmap = np.zeros((1, 1), dtype=np.int64)
    snext = np.zeros((0, 1, 1, 1), dtype=np.int32)
    if getattr(game, "is_sparse", False):
        if game.gamma is not None and S > MAX_DISCOUNTED_STATES:
            raise GameError(f"a discounted game is evaluated by dense S x S solves; S = {S} is above "
                            f"{MAX_DISCOUNTED_STATES} (use a finite horizon for large sparse games)")
        k = game.transition_next.shape[-1]
        dense = game.transition_prob.reshape(H, S, J, k)
        snext = game.transition_next.reshape(H, S, J, k)
    elif not factored:
        dense = np.ascontiguousarray(game.transitions).reshape(H, S, J, S)
    gamma = 0.0 if game.gamma is None else float(game.gamma)
    return KernelForm(np.ascontiguousarray(r), dense, snext, local, np.ascontiguousarray(xmap), adec, sdec, actions,
                      np.ascontiguousarray(game.initial_distribution, dtype=np.float64), gamma, game.gamma is not None,
                      factored, N, phi is not None)


def pad_policies(policies, max_actions: int) -> np.ndarray:
    """Per-player (H, S, A_i) arrays -> one float64 (N, H, S, A_max) array (zeros beyond A_i)."""
    H, S = policies[0].shape[:2]
    out = np.zeros((len(policies), H, S, max_actions))
    for i, p in enumerate(policies):
        out[i, :, :, : p.shape[2]] = p
    return out


def unpad_policies(pol: np.ndarray, actions) -> list[np.ndarray]:
    return [np.ascontiguousarray(pol[i, :, :, :a]) for i, a in enumerate(actions)]


# ----------------------------------------------------------------------------- expectations


@njit(cache=True, parallel=True)
def _expect_sparse(h, V, rows, prob, snext, out, n_chunks):
    """The sparse case of :func:`_expect`: k gathers per (b, s, j), states in ``n_chunks`` parallel chunks."""
    S, J, k = out.shape[1], out.shape[2], prob.shape[3]
    for c in prange(n_chunks):
        for s in range(c * S // n_chunks, (c + 1) * S // n_chunks):
            for j in range(J):
                for b in range(rows):
                    acc = 0.0
                    for m in range(k):
                        acc += prob[h, s, j, m] * V[b, snext[h, s, j, m]]
                    out[b, s, j] = acc


@njit(cache=True)
def _expect(h, V, rows, dense_p, snext, local_p, xmap, factored, buf1, buf2, out):
    """Fill ``out[b, s, j] = sum_t P_h(t | s, j) V[b, t]`` for b < rows (in place)."""
    S = V.shape[1]
    J = out.shape[2]
    if snext.shape[0] > 0:
        _expect_sparse(h, V, rows, dense_p, snext, out, N_CHUNKS)
        return
    if not factored:
        for s in range(S):
            for j in range(J):
                for b in range(rows):
                    acc = 0.0
                    for t in range(S):
                        acc += dense_p[h, s, j, t] * V[b, t]
                    out[b, s, j] = acc
        return
    N, _, L, A, _ = local_p.shape
    LA = L * A
    # cyclic mode products, one GEMM each: the tensor's front axis (player i's next position) is
    # contracted with p_{h,i} (LA x L) and the new axis x_i = s_i A + a_i is appended at the end.
    # Start (s'_1, ..., s'_N, b); after N products (b, x_1, ..., x_N).
    for b in range(rows):
        for t in range(S):
            buf1[t * rows + b] = V[b, t]
    cur, nxt = buf1, buf2
    rest = S * rows
    for i in range(N):
        m = rest // L
        M = local_p[i, h].reshape(LA, L)
        np.dot(cur[:rest].reshape(L, m).T, M.T, nxt[:m * LA].reshape(m, LA))
        rest = m * LA
        cur, nxt = nxt, cur
    pre = rest
    X = pre // rows
    for b in range(rows):
        for s in range(S):
            for j in range(J):
                out[b, s, j] = cur[b * X + xmap[s, j]]


@njit(cache=True)
def _weights(pol, h, s, j, adec, N, w_minus):
    """Fill ``w_minus[i] = prod_{k != i} pi_k(a_k | s)`` (prefix/suffix products); return prod_k pi_k(a_k | s)."""
    pre = 1.0
    for i in range(N):
        w_minus[i] = pre
        pre *= pol[i, h, s, adec[j, i]]
    suf = 1.0
    for i in range(N - 1, -1, -1):
        w_minus[i] *= suf
        suf *= pol[i, h, s, adec[j, i]]
    return pre


@njit(cache=True)
def _joint_weights(pol, h, s, adec, N, w_minus, wall, wminus):
    """Fill wall[j] = pi_h(j | s) and wminus[i, j] = prod_{k != i} pi_{h,k}(a_k | s) for every joint action j."""
    for j in range(adec.shape[0]):
        wall[j] = _weights(pol, h, s, j, adec, N, w_minus)
        for i in range(N):
            wminus[i, j] = w_minus[i]


# ----------------------------------------------------------------------------- values and averaged Q


@njit(cache=True)
def _state_values(h, s, rewards, rows, N, pol, adec, V, Qbar, want_qbar, E, w_minus, wall, wminus):
    """V[b, h, s] for b < rows and, if ``want_qbar``, Qbar[:, h, s] (E = the expectations of step h)."""
    J = rewards.shape[3]
    _joint_weights(pol, h, s, adec, N, w_minus, wall, wminus)
    for b in range(rows):
        acc = 0.0
        for j in range(J):
            acc += wall[j] * (rewards[b, h, s, j] + E[b, s, j])
        V[b, h, s] = acc
    if want_qbar:
        Qbar[:, h, s, :] = 0.0
        for i in range(N):
            for j in range(J):
                Qbar[i, h, s, adec[j, i]] += wminus[i, j] * (rewards[i, h, s, j] + E[i, s, j])


@njit(cache=True, parallel=True)
def _states_values_parallel(h, rewards, rows, N, pol, adec, V, Qbar, want_qbar, E, n_chunks):
    """:func:`_state_values` of every state of step h, in ``n_chunks`` parallel chunks (sparse games)."""
    S, J = rewards.shape[2], rewards.shape[3]
    for c in prange(n_chunks):
        w_minus, wall, wminus = np.empty(N), np.empty(J), np.empty((N, J))
        for s in range(c * S // n_chunks, (c + 1) * S // n_chunks):
            _state_values(h, s, rewards, rows, N, pol, adec, V, Qbar, want_qbar, E, w_minus, wall, wminus)


@njit(cache=True)
def _finite_values(rewards, rows, N, pol, adec, dense_p, snext, local_p, xmap, factored, V, Qbar, want_qbar, E, buf1, buf2,
                   w_minus):
    """Finite horizon: fill V (rows, H+1, S) and, if ``want_qbar``, Qbar (N, H, S, A_max) in place."""
    H, S, J = rewards.shape[1], rewards.shape[2], rewards.shape[3]
    wall = np.empty(J)
    wminus = np.empty((N, J))
    V[:, H, :] = 0.0
    for h in range(H - 1, -1, -1):
        _expect(h, V[:, h + 1, :], rows, dense_p, snext, local_p, xmap, factored, buf1, buf2, E)
        if snext.shape[0] > 0:
            _states_values_parallel(h, rewards, rows, N, pol, adec, V, Qbar, want_qbar, E, N_CHUNKS)
        else:
            for s in range(S):
                _state_values(h, s, rewards, rows, N, pol, adec, V, Qbar, want_qbar, E, w_minus, wall, wminus)


@njit(cache=True)
def _transition_matrix(pol, adec, sdec, dense_p, snext, local_p, factored, N, out, qloc):
    """Fill out (S, S) with P_pi(s' | s) of the stationary product policy pol[:, 0] (in place)."""
    S = out.shape[0]
    J = adec.shape[0]
    sparse = snext.shape[0] > 0
    if sparse or not factored:
        out[:, :] = 0.0
        for s in range(S):
            for j in range(J):
                w = 1.0
                for i in range(N):
                    w *= pol[i, 0, s, adec[j, i]]
                if w == 0.0:
                    continue
                if sparse:
                    for m in range(snext.shape[3]):
                        out[s, snext[0, s, j, m]] += w * dense_p[0, s, j, m]
                else:
                    for t in range(S):
                        out[s, t] += w * dense_p[0, s, j, t]
        return
    L, A = local_p.shape[2], local_p.shape[3]
    for s in range(S):
        # q_i = sum_a pi_i(a | s) p_i(. | s_i, a): P_pi(. | s) is their outer product
        for i in range(N):
            for k in range(L):
                acc = 0.0
                for a in range(A):
                    acc += pol[i, 0, s, a] * local_p[i, 0, sdec[s, i], a, k]
                qloc[i, k] = acc
        for t in range(S):
            w = 1.0
            for i in range(N):
                w *= qloc[i, sdec[t, i]]
            out[s, t] = w


@njit(cache=True)
def _discounted_values(rewards, rows, N, pol, adec, sdec, dense_p, snext, local_p, xmap, factored, gamma, V, Qbar, want_qbar,
                       E, buf1, buf2, w_minus, Ppi, qloc):
    """Discounted (H = 1): fill V (rows, 2, S) (V[:, 1] = 0) and Qbar (N, 1, S, A_max) in place."""
    S, J = rewards.shape[2], rewards.shape[3]
    _transition_matrix(pol, adec, sdec, dense_p, snext, local_p, factored, N, Ppi, qloc)
    M = np.eye(S) - gamma * Ppi
    rhs = np.zeros((S, rows))
    for s in range(S):
        for j in range(J):
            w = _weights(pol, 0, s, j, adec, N, w_minus)
            for b in range(rows):
                rhs[s, b] += w * rewards[b, 0, s, j]
    sol = np.linalg.solve(M, rhs)
    for b in range(rows):
        for s in range(S):
            V[b, 0, s] = sol[s, b]
            V[b, 1, s] = 0.0
    if want_qbar:
        _expect(0, V[:, 0, :], rows, dense_p, snext, local_p, xmap, factored, buf1, buf2, E)
        Qbar[:, 0, :, :] = 0.0
        for s in range(S):
            for j in range(J):
                _weights(pol, 0, s, j, adec, N, w_minus)
                for i in range(N):
                    Qbar[i, 0, s, adec[j, i]] += w_minus[i] * (rewards[i, 0, s, j] + gamma * E[i, s, j])


# ----------------------------------------------------------------------------- best responses


@njit(cache=True)
def _state_best_responses(h, s, rewards, N, pol, adec, actions, W, E, w_minus, wall, wminus, qb):
    """W[i, h, s] = max_a of player i's averaged Q against pi_{-i} at (h, s) (E = the expectations of W[:, h+1])."""
    J = rewards.shape[3]
    qb[:, :] = 0.0
    _joint_weights(pol, h, s, adec, N, w_minus, wall, wminus)
    for i in range(N):
        for j in range(J):
            qb[i, adec[j, i]] += wminus[i, j] * (rewards[i, h, s, j] + E[i, s, j])
    for i in range(N):
        best = qb[i, 0]
        for a in range(1, actions[i]):
            if qb[i, a] > best:
                best = qb[i, a]
        W[i, h, s] = best


@njit(cache=True, parallel=True)
def _states_best_responses_parallel(h, rewards, N, pol, adec, actions, W, E, Amax, n_chunks):
    """:func:`_state_best_responses` of every state of step h, in ``n_chunks`` parallel chunks (sparse games)."""
    S, J = rewards.shape[2], rewards.shape[3]
    for c in prange(n_chunks):
        w_minus, wall, wminus, qb = np.empty(N), np.empty(J), np.empty((N, J)), np.empty((N, Amax))
        for s in range(c * S // n_chunks, (c + 1) * S // n_chunks):
            _state_best_responses(h, s, rewards, N, pol, adec, actions, W, E, w_minus, wall, wminus, qb)


@njit(cache=True)
def _finite_best_responses(rewards, N, pol, adec, actions, dense_p, snext, local_p, xmap, factored, W, E, buf1, buf2, w_minus,
                           qb):
    """Finite horizon: fill W (N, H+1, S), W[i, h, s] = max over player i's policies of its value against pi_{-i}."""
    H, S, J = rewards.shape[1], rewards.shape[2], rewards.shape[3]
    wall = np.empty(J)
    wminus = np.empty((N, J))
    W[:, H, :] = 0.0
    for h in range(H - 1, -1, -1):
        _expect(h, W[:, h + 1, :], N, dense_p, snext, local_p, xmap, factored, buf1, buf2, E)
        if snext.shape[0] > 0:
            _states_best_responses_parallel(h, rewards, N, pol, adec, actions, W, E, qb.shape[1], N_CHUNKS)
        else:
            for s in range(S):
                _state_best_responses(h, s, rewards, N, pol, adec, actions, W, E, w_minus, wall, wminus, qb)


@njit(cache=True)
def _discounted_best_response(i, rewards, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored, gamma, rho,
                              max_iter, rtol, E, buf1, buf2, w_minus, Ppi, qloc):
    """Discounted: rho^T V_i of player i's exact best response to pi_{-i} (policy iteration; returns it, iterations)."""
    S, J = rewards.shape[2], rewards.shape[3]
    A = actions[i]
    polbr = pol.copy()
    V = np.zeros((1, 2, S))
    Qb = np.zeros((1, 1, S, pol.shape[3]))
    r_i = rewards[i:i + 1]
    greedy = np.zeros(S, dtype=np.int64)
    # start from the greedy response to the one-step rewards
    for s in range(S):
        best = -np.inf
        for a in range(A):
            acc = 0.0
            for j in range(J):
                if adec[j, i] == a:
                    w = 1.0
                    for k in range(N):
                        if k != i:
                            w *= pol[k, 0, s, adec[j, k]]
                    acc += w * rewards[i, 0, s, j]
            if acc > best:
                best = acc
                greedy[s] = a
    it = 0
    while True:
        it += 1
        for s in range(S):
            for a in range(polbr.shape[3]):
                polbr[i, 0, s, a] = 0.0
            polbr[i, 0, s, greedy[s]] = 1.0
        # V_i of (greedy, pi_{-i}) and the Q of player i against pi_{-i} (Qbar_i does not depend on pi_i)
        _transition_matrix(polbr, adec, sdec, dense_p, snext, local_p, factored, N, Ppi, qloc)
        M = np.eye(S) - gamma * Ppi
        rhs = np.zeros(S)
        for s in range(S):
            for j in range(J):
                w = 1.0
                for k in range(N):
                    w *= polbr[k, 0, s, adec[j, k]]
                rhs[s] += w * rewards[i, 0, s, j]
        v = np.linalg.solve(M, rhs)
        for s in range(S):
            V[0, 0, s] = v[s]
        _expect(0, V[:, 0, :], 1, dense_p, snext, local_p, xmap, factored, buf1, buf2, E)
        Qb[:, :, :, :] = 0.0
        for s in range(S):
            for j in range(J):
                w = 1.0
                for k in range(N):
                    if k != i:
                        w *= pol[k, 0, s, adec[j, k]]
                Qb[0, 0, s, adec[j, i]] += w * (r_i[0, 0, s, j] + gamma * E[0, s, j])
        changed = False
        for s in range(S):
            cur = Qb[0, 0, s, greedy[s]]
            best_a = greedy[s]
            best = cur
            for a in range(A):
                if Qb[0, 0, s, a] > best:
                    best = Qb[0, 0, s, a]
                    best_a = a
            if best > cur + rtol * (1.0 + abs(cur)):
                greedy[s] = best_a
                changed = True
        if not changed or it >= max_iter:
            break
    value = 0.0
    for s in range(S):
        value += rho[s] * v[s]
    return value, it


# ----------------------------------------------------------------------------- joint-action MDP


@njit(cache=True)
def _joint_mdp_optimum(reward, N, adec, sdec, dense_p, snext, local_p, xmap, factored, gamma, discounted, rho, max_iter, rtol,
                       Vout):
    """max over joint policies of the value of ``reward`` (H, S, J) under the game's transitions.

    Finite horizon: backward induction; discounted: policy iteration over deterministic joint
    policies (exact at termination). Fills Vout (H+1, S) (discounted: Vout[0]); returns rho^T V_1.
    Deterministic Markov joint policies are products of deterministic policies, so this is also the
    maximum over product policies.
    """
    H, S, J = reward.shape[0], reward.shape[1], reward.shape[2]
    E = np.zeros((1, S, J))
    size = 1
    if factored:
        L, A = local_p.shape[2], local_p.shape[3]
        size = (L * A) ** N
    buf1 = np.zeros(size)
    buf2 = np.zeros(size)
    V = np.zeros((1, H + 1, S))
    if not discounted:
        for h in range(H - 1, -1, -1):
            _expect(h, V[:, h + 1, :], 1, dense_p, snext, local_p, xmap, factored, buf1, buf2, E)
            for s in range(S):
                best = -np.inf
                for j in range(J):
                    q = reward[h, s, j] + E[0, s, j]
                    if q > best:
                        best = q
                V[0, h, s] = best
    else:
        Amax = 1
        for j in range(J):
            for i in range(N):
                if adec[j, i] + 1 > Amax:
                    Amax = adec[j, i] + 1
        pol = np.zeros((N, 1, S, Amax))
        sigma = np.zeros(S, dtype=np.int64)
        for s in range(S):
            best = -np.inf
            for j in range(J):
                if reward[0, s, j] > best:
                    best = reward[0, s, j]
                    sigma[s] = j
        Ppi = np.zeros((S, S))
        L = local_p.shape[2] if factored else 1
        qloc = np.zeros((N, L))
        it = 0
        while True:
            it += 1
            pol[:, :, :, :] = 0.0
            rhs = np.zeros(S)
            for s in range(S):
                for i in range(N):
                    pol[i, 0, s, adec[sigma[s], i]] = 1.0
                rhs[s] = reward[0, s, sigma[s]]
            _transition_matrix(pol, adec, sdec, dense_p, snext, local_p, factored, N, Ppi, qloc)
            v = np.linalg.solve(np.eye(S) - gamma * Ppi, rhs)
            for s in range(S):
                V[0, 0, s] = v[s]
            _expect(0, V[:, 0, :], 1, dense_p, snext, local_p, xmap, factored, buf1, buf2, E)
            changed = False
            for s in range(S):
                cur = reward[0, s, sigma[s]] + gamma * E[0, s, sigma[s]]
                best, best_j = cur, sigma[s]
                for j in range(J):
                    q = reward[0, s, j] + gamma * E[0, s, j]
                    if q > best:
                        best, best_j = q, j
                if best > cur + rtol * (1.0 + abs(cur)):
                    sigma[s] = best_j
                    changed = True
            if not changed or it >= max_iter:
                break
    for s in range(S):
        Vout[0, s] = V[0, 0, s]
    value = 0.0
    for s in range(S):
        value += rho[s] * V[0, 0, s]
    return value


# ----------------------------------------------------------------------------- one evaluation


@njit(cache=True)
def _buffer_size(rows, N, local_p, factored):
    if not factored:
        return 1
    L, A = local_p.shape[2], local_p.shape[3]
    return rows * (L * A) ** N


@njit(cache=True)
def _values_and_qbar(rewards, rows, N, pol, adec, sdec, dense_p, snext, local_p, xmap, factored, gamma, discounted, V, Qbar,
                     want_qbar, E, buf1, buf2, w_minus, Ppi, qloc):
    """V (rows, H+1, S) and, if ``want_qbar``, Qbar (N, H, S, A_max) of the product policy, in place."""
    if discounted:
        _discounted_values(rewards, rows, N, pol, adec, sdec, dense_p, snext, local_p, xmap, factored, gamma, V, Qbar, want_qbar,
                           E, buf1, buf2, w_minus, Ppi, qloc)
    else:
        _finite_values(rewards, rows, N, pol, adec, dense_p, snext, local_p, xmap, factored, V, Qbar, want_qbar, E, buf1, buf2,
                       w_minus)


@njit(cache=True)
def _best_response_values(rewards, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored, gamma, discounted, rho,
                          max_iter, rtol, W, E, buf1, buf2, w_minus, qb, Ppi, qloc, brs):
    """Fill brs (N,) with max_{pi_i'} V_i(pi_i', pi_{-i}) (from s_1, or rho-weighted), exactly."""
    S = rewards.shape[2]
    if discounted:
        for i in range(N):
            brs[i], _ = _discounted_best_response(i, rewards, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored,
                                                  gamma, rho, max_iter, rtol, E, buf1, buf2, w_minus, Ppi, qloc)
    else:
        _finite_best_responses(rewards, N, pol, adec, actions, dense_p, snext, local_p, xmap, factored, W, E, buf1, buf2,
                               w_minus, qb)
        for i in range(N):
            acc = 0.0
            for s in range(S):
                acc += rho[s] * W[i, 0, s]
            brs[i] = acc


@njit(cache=True)
def _workspace(rewards, rows, N, Amax, local_p, factored, discounted):
    """The work arrays of :func:`_evaluate` and :func:`solvers.qascent._q_ascent`, allocated once per call:
    (buf1, buf2, E, w_minus, V, Qbar, W, qb, Ppi, qloc)."""
    H, S, J = rewards.shape[1], rewards.shape[2], rewards.shape[3]
    size = _buffer_size(rows, N, local_p, factored)
    Ppi = np.zeros((S, S)) if discounted else np.zeros((1, 1))
    L = local_p.shape[2] if factored else 1
    return (np.zeros(size), np.zeros(size), np.zeros((rows, S, J)), np.zeros(N), np.zeros((rows, H + 1, S)),
            np.zeros((N, H, S, Amax)), np.zeros((N, H + 1, S)), np.zeros((N, Amax)), Ppi, np.zeros((N, L)))


@njit(cache=True)
def _evaluate(rewards, rows, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored, gamma, discounted, rho,
              max_iter, rtol, vals, brs):
    """vals (rows,) = rho^T V_b of the product policy for every reward row; brs (N,) best-response values."""
    S = rewards.shape[2]
    Amax = pol.shape[3]
    buf1, buf2, E, w_minus, V, Qbar, W, qb, Ppi, qloc = _workspace(rewards, rows, N, Amax, local_p, factored, discounted)
    _values_and_qbar(rewards, rows, N, pol, adec, sdec, dense_p, snext, local_p, xmap, factored, gamma, discounted, V, Qbar,
                     False, E, buf1, buf2, w_minus, Ppi, qloc)
    for b in range(rows):
        acc = 0.0
        for s in range(S):
            acc += rho[s] * V[b, 0, s]
        vals[b] = acc
    _best_response_values(rewards, N, pol, adec, sdec, actions, dense_p, snext, local_p, xmap, factored, gamma, discounted, rho,
                          max_iter, rtol, W, E, buf1, buf2, w_minus, qb, Ppi, qloc, brs)
