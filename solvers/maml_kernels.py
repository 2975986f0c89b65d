"""Numba kernels of :mod:`solvers.maml`: the potential's value, exact gradient and exact
Hessian-vector product for softmax product policies (finite horizon and discounted; dense or
product-state transitions).

The mathematics (Eq. 45, the tangent pass) is in :mod:`solvers.maml`'s docstring; this module is
the same computation with fused loops over (h, s, joint action) instead of NumPy temporaries. The
NumPy version in :mod:`solvers.maml` is the reference the tests compare these kernels with, and the
baseline of ``benchmarks/bench_maml.py``.

Layout: parameters, policies and gradients are padded (N, H, S, A_max) arrays (entries a >= A_i
are 0); joint actions j are C order over (A_1, ..., A_N), decoded by ``adec`` (J, N). Transitions
are dense (H, S, J, S), or local kernels (N, H, L, A, L) of a product game applied by successive
mode products (``factored``); ``xmap`` (S, J) is the index of (s, j) in the mode-product tensor
over (s_1 A + a_1, ..., s_N A + a_N) and ``sdec`` (S, N) decodes joint states. Every kernel fills
preallocated arrays in place (said per function).
"""

from __future__ import annotations

import numpy as np
from ._jit import njit


@njit(cache=True)
def _softmax_policy(theta, actions, sig):
    """Fill ``sig[i, h, s, :A_i]`` with softmax(theta[i, h, s, :A_i]) (zeros beyond A_i)."""
    N, H, S, Amax = theta.shape
    for i in range(N):
        Ai = actions[i]
        for h in range(H):
            for s in range(S):
                m = theta[i, h, s, 0]
                for a in range(1, Ai):
                    m = max(m, theta[i, h, s, a])
                z = 0.0
                for a in range(Ai):
                    e = np.exp(theta[i, h, s, a] - m)
                    sig[i, h, s, a] = e
                    z += e
                for a in range(Ai):
                    sig[i, h, s, a] /= z
                for a in range(Ai, Amax):
                    sig[i, h, s, a] = 0.0


@njit(cache=True)
def _joint_policy(sig, adec, pi):
    """Fill ``pi[h, s, j] = prod_i sig[i, h, s, a_i(j)]``: per (h, s) the C-order outer product, built in
    place one player at a time (entry k of the first i players' product spreads to k A_i + a, which
    never overwrites an entry not yet read when k runs downwards)."""
    N, H, S, _ = sig.shape
    for h in range(H):
        for s in range(S):
            row = pi[h, s]
            row[0] = 1.0
            size = 1
            for i in range(N):
                Ai = adec[adec.shape[0] - 1, i] + 1  # the last joint action plays A_i - 1 for every i
                for k in range(size - 1, -1, -1):
                    base = row[k]
                    for a in range(Ai - 1, -1, -1):
                        row[k * Ai + a] = base * sig[i, h, s, a]
                size *= Ai


@njit(cache=True)
def _expect(h, v, dense_p, local_p, xmap, factored, buf1, buf2, out):
    """Fill ``out[s, j] = sum_t P_h(t | s, j) v[t]``."""
    S, J = out.shape
    if not factored:
        for s in range(S):
            for j in range(J):
                acc = 0.0
                for t in range(S):
                    acc += dense_p[h, s, j, t] * v[t]
                out[s, j] = acc
        return
    N, _, L, A, _ = local_p.shape
    LA = L * A
    for t in range(S):
        buf1[t] = v[t]
    cur, nxt = buf1, buf2
    # axis i: s_i' (size L) -> x_i = s_i A + a_i (size L A), last player first: axes < i still have
    # size L, axes > i already L A, so the largest (last) step has the longest contiguous inner loop
    for i in range(N - 1, -1, -1):
        pre = 1
        for _ in range(i):
            pre *= L
        post = 1
        for _ in range(N - 1 - i):
            post *= LA
        for p in range(pre):
            for x in range(LA):
                si, ai = x // A, x % A
                base_out = (p * LA + x) * post
                for q in range(post):
                    nxt[base_out + q] = 0.0
                for k in range(L):
                    m = local_p[i, h, si, ai, k]
                    if m != 0.0:
                        base_in = (p * L + k) * post
                        for q in range(post):
                            nxt[base_out + q] += m * cur[base_in + q]
        cur, nxt = nxt, cur
    for s in range(S):
        for j in range(J):
            out[s, j] = cur[xmap[s, j]]


@njit(cache=True)
def _push(h, x, dense_p, local_p, xmap, factored, buf1, buf2, out):
    """Fill ``out[t] = sum_{s, j} x[s, j] P_h(t | s, j)`` (the adjoint of :func:`_expect`)."""
    S, J = x.shape
    if not factored:
        for t in range(S):
            out[t] = 0.0
        for s in range(S):
            for j in range(J):
                w = x[s, j]
                if w != 0.0:
                    for t in range(S):
                        out[t] += w * dense_p[h, s, j, t]
        return
    N, _, L, A, _ = local_p.shape
    LA = L * A
    size = 1
    for _ in range(N):
        size *= LA
    for k in range(size):
        buf1[k] = 0.0
    for s in range(S):
        for j in range(J):
            buf1[xmap[s, j]] = x[s, j]
    cur, nxt = buf1, buf2
    pre = 1
    for i in range(N):  # axis i: x_i (size L A) -> s_i' (size L); axes < i are already s'
        post = 1
        for _ in range(N - 1 - i):
            post *= LA
        for p in range(pre):
            for k in range(L):
                base_out = (p * L + k) * post
                for q in range(post):
                    nxt[base_out + q] = 0.0
            for xx in range(LA):
                si, ai = xx // A, xx % A
                base_in = (p * LA + xx) * post
                for k in range(L):
                    m = local_p[i, h, si, ai, k]
                    if m != 0.0:
                        base_out = (p * L + k) * post
                        for q in range(post):
                            nxt[base_out + q] += m * cur[base_in + q]
        pre *= L
        cur, nxt = nxt, cur
    for t in range(S):
        out[t] = cur[t]


@njit(cache=True)
def _policy_matrix(sig, pi, dense_p, local_p, sdec, factored, out):
    """Fill ``out[s, t] = sum_j pi[0, s, j] P_0(t | s, j)`` (stationary, discounted games)."""
    S = out.shape[0]
    if not factored:
        J = pi.shape[2]
        for s in range(S):
            for t in range(S):
                out[s, t] = 0.0
            for j in range(J):
                w = pi[0, s, j]
                for t in range(S):
                    out[s, t] += w * dense_p[0, s, j, t]
        return
    N, _, L, A, _ = local_p.shape
    m = np.zeros((N, L))
    for s in range(S):
        # P_pi(s, t) = prod_i m_i(t_i), m_i(k) = sum_a sig_i(a | s) q_i(k | s_i, a)
        for i in range(N):
            for k in range(L):
                acc = 0.0
                for a in range(A):
                    acc += sig[i, 0, s, a] * local_p[i, 0, sdec[s, i], a, k]
                m[i, k] = acc
        for t in range(S):
            p = 1.0
            for i in range(N):
                p *= m[i, sdec[t, i]]
            out[s, t] = p


@njit(cache=True)
def _finite_primal(theta, actions, adec, phi, rho, dense_p, local_p, xmap, factored, sig, pi, Q, V, d, E, buf1, buf2):
    """Finite horizon: fill sig, pi, Q (H, S, J), V (H + 1, S; V[H] = 0), d (H, S); return Phi = rho . V[0]."""
    H, S, J = Q.shape
    _softmax_policy(theta, actions, sig)
    _joint_policy(sig, adec, pi)
    for s in range(S):
        V[H, s] = 0.0
    for h in range(H - 1, -1, -1):
        _expect(h, V[h + 1], dense_p, local_p, xmap, factored, buf1, buf2, E)
        for s in range(S):
            acc = 0.0
            for j in range(J):
                q = phi[h, s, j] + E[s, j]
                Q[h, s, j] = q
                acc += pi[h, s, j] * q
            V[h, s] = acc
    for s in range(S):
        d[0, s] = rho[s]
    for h in range(H - 1):
        for s in range(S):
            for j in range(J):
                E[s, j] = d[h, s] * pi[h, s, j]
        _push(h, E, dense_p, local_p, xmap, factored, buf1, buf2, d[h + 1])
    val = 0.0
    for s in range(S):
        val += rho[s] * V[0, s]
    return val


@njit(cache=True)
def _discounted_system(theta, actions, adec, sdec, phi, dense_p, local_p, factored, gamma, sig, pi, M, r_pi):
    """Discounted (H = 1): fill sig, pi, ``M = I - gamma P_pi`` (S, S) and ``r_pi`` (S,); the caller
    solves ``M V = r_pi`` and ``M^T d = rho`` (LAPACK, outside the kernel)."""
    S, J = pi.shape[1], pi.shape[2]
    _softmax_policy(theta, actions, sig)
    _joint_policy(sig, adec, pi)
    _policy_matrix(sig, pi, dense_p, local_p, sdec, factored, M)
    for s in range(S):
        for t in range(S):
            M[s, t] = -gamma * M[s, t]
        M[s, s] += 1.0
        acc = 0.0
        for j in range(J):
            acc += pi[0, s, j] * phi[0, s, j]
        r_pi[s] = acc


@njit(cache=True)
def _discounted_q(v, phi, gamma, dense_p, local_p, xmap, factored, buf1, buf2, E, Q):
    """Fill ``Q[0] = phi[0] + gamma P v`` (discounted)."""
    S, J = E.shape
    _expect(0, v, dense_p, local_p, xmap, factored, buf1, buf2, E)
    for s in range(S):
        for j in range(J):
            Q[0, s, j] = phi[0, s, j] + gamma * E[s, j]


@njit(cache=True)
def _gradient(sig, pi, Q, V, d, adec, actions, out):
    """Fill ``out[i, h, s, b] = d_h(s) (sum_{j: a_i(j) = b} pi Q - sig_i(b|s) V_h(s))`` (zeros beyond A_i)."""
    N, H, S = sig.shape[:3]
    J = adec.shape[0]
    out[:] = 0.0
    for h in range(H):
        for s in range(S):
            for j in range(J):
                w = pi[h, s, j] * Q[h, s, j]
                for i in range(N):
                    out[i, h, s, adec[j, i]] += w
            for i in range(N):
                for b in range(actions[i]):
                    out[i, h, s, b] = d[h, s] * (out[i, h, s, b] - sig[i, h, s, b] * V[h, s])


@njit(cache=True)
def _tangent_directions(u, sig, pi, adec, actions, cen, pidot):
    """Fill ``cen[i, h, s, a] = u - <sig_i, u>`` and ``pidot = pi * sum_i cen_i(a_i)`` (the tangent of pi along u)."""
    N, H, S = sig.shape[:3]
    J = adec.shape[0]
    for i in range(N):
        for h in range(H):
            for s in range(S):
                m = 0.0
                for a in range(actions[i]):
                    m += sig[i, h, s, a] * u[i, h, s, a]
                for a in range(actions[i]):
                    cen[i, h, s, a] = u[i, h, s, a] - m
    for h in range(H):
        for s in range(S):
            row = pidot[h, s]  # first sum_i cen_i(a_i) over joint actions, built in place as in _joint_policy
            row[0] = 0.0
            size = 1
            for i in range(N):
                Ai = actions[i]
                for k in range(size - 1, -1, -1):
                    base = row[k]
                    for a in range(Ai - 1, -1, -1):
                        row[k * Ai + a] = base + cen[i, h, s, a]
                size *= Ai
            for j in range(J):
                row[j] *= pi[h, s, j]


@njit(cache=True)
def _tangent_assemble(sig, pi, Q, V, d, cen, pidot, Qdot, Vdot, ddot, adec, actions, out):
    """Fill ``out`` with the product rule on ``d (M_i - sig_i V)``: ddot (M_i - sig_i V) + d (Mdot_i -
    sigdot_i V - sig_i Vdot), ``Mdot_i(b) = sum_{a_i(j) = b} (pidot Q + pi Qdot)``, ``sigdot = sig cen``."""
    N, H, S = sig.shape[:3]
    J = adec.shape[0]
    out[:] = 0.0
    for h in range(H):
        for s in range(S):
            for j in range(J):
                w = ddot[h, s] * pi[h, s, j] * Q[h, s, j] + d[h, s] * (pidot[h, s, j] * Q[h, s, j]
                                                                      + pi[h, s, j] * Qdot[h, s, j])
                for i in range(N):
                    out[i, h, s, adec[j, i]] += w
            for i in range(N):
                for b in range(actions[i]):
                    sg = sig[i, h, s, b]
                    out[i, h, s, b] -= (ddot[h, s] * sg * V[h, s]
                                        + d[h, s] * (sg * cen[i, h, s, b] * V[h, s] + sg * Vdot[h, s]))


@njit(cache=True)
def _finite_tangent(u, sig, pi, Q, V, d, adec, actions, dense_p, local_p, xmap, factored,
                    cen, pidot, Qdot, Vdot, ddot, E, buf1, buf2, out):
    """Finite horizon: fill ``out`` with Hess Phi(theta) u (padded like ``u``); work arrays cen
    (N, H, S, A_max), pidot and Qdot (H, S, J), Vdot (H + 1, S), ddot (H, S), E (S, J), buf1, buf2
    are overwritten."""
    H, S, J = Q.shape
    _tangent_directions(u, sig, pi, adec, actions, cen, pidot)
    for s in range(S):
        Vdot[H, s] = 0.0
    for h in range(H - 1, -1, -1):  # Qdot_h = P_h Vdot_{h+1}, Vdot_h = sum_j pidot Q + pi Qdot
        _expect(h, Vdot[h + 1], dense_p, local_p, xmap, factored, buf1, buf2, Qdot[h])
        for s in range(S):
            acc = 0.0
            for j in range(J):
                acc += pidot[h, s, j] * Q[h, s, j] + pi[h, s, j] * Qdot[h, s, j]
            Vdot[h, s] = acc
    for s in range(S):
        ddot[0, s] = 0.0
    for h in range(H - 1):  # ddot_{h+1} = push(ddot_h pi + d_h pidot)
        for s in range(S):
            for j in range(J):
                E[s, j] = ddot[h, s] * pi[h, s, j] + d[h, s] * pidot[h, s, j]
        _push(h, E, dense_p, local_p, xmap, factored, buf1, buf2, ddot[h + 1])
    _tangent_assemble(sig, pi, Q, V, d, cen, pidot, Qdot, Vdot, ddot, adec, actions, out)
