"""MAML over Markov potential games (Section 4.2, Appendix D.2): exact gradients, exact
Hessian-vector products, the T-step meta-gradient of Eq. (47).

Setting. Softmax product policies ``pi_theta(a | s) = prod_i sigma(theta_i(. | s))[a_i]`` over an
N-player game (:class:`solvers.nplayer.MarkovGame`, or :class:`solvers.product_games.ProductMarkovGame`
whose transitions are applied by per-player mode products). The paper states Section 4.2 for the
infinite-horizon discounted setting; F.2-style games are finite-horizon. Both are supported:

- discounted (``gamma`` set, H = 1): one stationary parameter ``theta_i`` (S, A_i) per player,
  ``V = (I - gamma P_pi)^{-1} r_pi`` (one LU factorisation per policy), ``Phi(theta) = rho^T V``;
- finite horizon: per-step parameters ``theta_{h,i}`` (H, S, A_i), backward induction
  ``Q_h = phi_h + P_h V_{h+1}``, ``V_h(s) = sum_a pi_h(a|s) Q_h(s, a)``, ``Phi(theta) = rho^T V_1``
  (``rho`` the one-hot initial state).

The parameter vector ``theta`` is flat: player blocks (H, S, A_i) in C order, concatenated.

Potential. ``Phi(theta; G)`` is the value under pi_theta of the game's stage potential reward
``phi_h(s, a)`` from :func:`solvers.nplayer.potential_certificate` (a declared potential, ``r_1`` for
identical interest, else Monderer-Shapley). For identical-interest games (F.2) and for dummy terms
under action-independent transitions Phi is the exact Markov potential (``exact``). For other
games (e.g. LQ tracking, F.3) every stage game is a potential game but the Markov game need not
be an MPG; Phi is then the value of phi, and the inner step follows the paper's operator
``zeta(theta) = theta + alpha grad Phi(theta)`` (Eq. 9/41), which equals independent
policy-gradient ascent (Eq. 44) exactly when Phi is an exact potential. NE-gaps after adaptation
are exact (:func:`solvers.potential_eval.evaluate_product_policy`, the players' own rewards).

Gradient (policy-gradient theorem, Eq. 45, with the unnormalised visitation
``d(s) = sum_t gamma^t Pr(s_t = s)`` resp. ``d_h(s) = Pr(s_h = s)``)::

    dPhi/dtheta_i(s, b) = d(s) [ sum_{a: a_i = b} pi(a|s) Q(s, a)  -  sigma_i(b|s) V(s) ]

which is ``d(s) sigma_i(b|s) (Qbar_i(s, b) - V(s))``, Eq. (45) times 1/(1-gamma) in the paper's
normalisation. Hessian-vector products ``H u`` are the exact directional derivative of this closed
form along u (forward mode over the reverse-mode gradient, written by hand): tangents
``pidot = pi * sum_j (u_j(a_j) - <sigma_j, u_j>)``, ``Vdot`` (one more backward pass, resp. one
more LU solve), ``ddot`` (one more forward pass, resp. a transposed solve), then the product rule.
This is the same matrix as Lemma 15's closed form (both are the exact Hessian of Phi; a test
compares them), at about the cost of one more gradient and a gradient's memory (O(H S J), never
O(D^2)); a dense Hessian is formed only by :func:`dense_hessian` (tests, tiny games). The passes
run as Numba kernels (:mod:`solvers.maml_kernels`, default) or as the NumPy reference below
(``backend="numpy"``).

Meta-gradient (Eq. 46/47). With ``theta^(0) = theta``, ``theta^(t+1) = theta^(t) + alpha grad
Phi(theta^(t))``::

    grad F_T(theta) = mean_G [ prod_{t=0}^{T-1} (I + alpha Hess Phi(theta^(t); G)) ] grad Phi(theta^(T); G)

computed right to left: ``v = grad Phi(theta^(T))``, then ``v <- v + alpha H(theta^(t)) v`` for
t = T-1, ..., 0 (the Hessians are symmetric, so this is the exact chain rule). The outer step is
``theta <- theta + beta grad F_T(theta)`` (Eq. 47, beta the paper's eta).

References
----------
Mao et al., Multi-Agent Meta-Reinforcement Learning: Sharper Convergence Rates with Task
Similarity, NeurIPS 2023: Section 4.2, Eq. (9)-(10), Appendix D.2 Eq. (40)-(47), Lemma 15, Theorem 4.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ._blas import single_threaded_blas
from .nplayer import POTENTIAL_ATOL, MarkovGame, dense_transitions, potential_certificate

__all__ = [
    "BACKENDS",
    "MamlEvaluation",
    "MamlResult",
    "PotentialGame",
    "adapt",
    "dense_hessian",
    "evaluate_initialisation",
    "hessian_vector_product",
    "meta_gradient",
    "potential",
    "potential_game",
    "potential_gradient",
    "run_maml",
    "softmax_policies",
    "split_theta",
    "theta_size",
]

#: Largest parameter dimension for which :func:`dense_hessian` builds a dense matrix.
MAX_DENSE_HESSIAN = 4000
#: Implementations of the value, gradient and HVP passes: Numba kernels (default) and the NumPy reference.
BACKENDS = ("numba", "numpy")


# ----------------------------------------------------------------------------- transition operators (NumPy reference)


class _DenseKernel:
    """P_h(s' | s, a) stored densely: expectations are GEMVs on (S*J, S)."""

    def __init__(self, transitions: np.ndarray, S: int, J: int):
        self.P = np.ascontiguousarray(transitions).reshape(-1, S * J, S)
        self.S, self.J = S, J

    def expect(self, h: int, v: np.ndarray) -> np.ndarray:
        """(S, J): sum_s' P_h(s' | s, a) v(s')."""
        return (self.P[h] @ v).reshape(self.S, self.J)

    def push(self, h: int, x: np.ndarray) -> np.ndarray:
        """(S,): sum_{s, a} x(s, a) P_h(s' | s, a)."""
        return x.reshape(-1) @ self.P[h]

    def policy_matrix(self, h: int, pi_h: np.ndarray, sig_h) -> np.ndarray:
        """(S, S): P_pi(s, s') = sum_a pi(a|s) P_h(s' | s, a)."""
        return np.matmul(pi_h[:, None, :], self.P[h].reshape(self.S, self.J, self.S))[:, 0, :]


class _ProductKernel:
    """P_h(s' | s, a) = prod_i q_{h,i}(s_i' | s_i, a_i) (:mod:`solvers.product_games`): expectations by
    successive mode products, O(N (L A)^N L) instead of O(S J S)."""

    def __init__(self, local: np.ndarray):
        self.q = local  # (N, H, L, A, L)
        N, _, L, A, _ = local.shape
        self.N, self.L, self.A = N, L, A
        self.S, self.J = L**N, A**N
        letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        s, a, t = letters[:N], letters[N:2 * N], letters[2 * N:3 * N]
        factors = ",".join(f"{s[i]}{a[i]}{t[i]}" for i in range(N))
        self._expect = f"{factors},{t}->{s}{a}"
        self._push = f"{factors},{s}{a}->{t}"
        ops = [local[i, 0] for i in range(N)]
        self._expect_path = np.einsum_path(self._expect, *ops, np.zeros((L,) * N), optimize="optimal")[0]
        self._push_path = np.einsum_path(self._push, *ops, np.zeros((L,) * N + (A,) * N), optimize="optimal")[0]
        self._coords = np.array(np.unravel_index(np.arange(self.S), (L,) * N))  # (N, S): s_i of joint s

    def expect(self, h, v):
        ops = [self.q[i, h] for i in range(self.N)]
        out = np.einsum(self._expect, *ops, v.reshape((self.L,) * self.N), optimize=self._expect_path)
        return out.reshape(self.S, self.J)

    def push(self, h, x):
        ops = [self.q[i, h] for i in range(self.N)]
        out = np.einsum(self._push, *ops, x.reshape((self.L,) * self.N + (self.A,) * self.N), optimize=self._push_path)
        return out.reshape(self.S)

    def policy_matrix(self, h, pi_h, sig_h):
        # P_pi(s, s') = prod_i m_i(s, s_i'), m_i(s, s_i') = sum_{a_i} sigma_i(a_i|s) q_i(s_i' | s_i, a_i)
        out = np.ones((self.S,) + (1,) * self.N)
        for i in range(self.N):
            m = np.einsum("sa,sat->st", sig_h[i], self.q[i, h][self._coords[i]])
            out = out * m.reshape((self.S,) + _axis_shape(self.N, i, self.L))
        return out.reshape(self.S, self.S)


@dataclass(frozen=True)
class PotentialGame:
    """The arrays the MAML kernels use, prepared once per game.

    phi : float64 (H, S, J), the stage potential over joint actions (J = prod A_i, C order)
    kernel : the transition operator (dense, or local kernels of a product game)
    rho : float64 (S,), the initial distribution
    gamma : None (finite horizon) or the discount
    actions : (A_1, ..., A_N)
    game : the source game (its rewards give the NE-gap)
    exact : whether Phi is an exact Markov potential (:func:`solvers.nplayer.potential_certificate`)
    """

    phi: np.ndarray
    kernel: object
    rho: np.ndarray
    gamma: float | None
    actions: tuple
    game: object
    exact: bool = True
    _ops: dict = field(default_factory=dict, repr=False, compare=False)

    def ops(self, backend: str):
        """The value/gradient/HVP implementation: ``"numba"`` (:mod:`solvers.maml_kernels`) or ``"numpy"``."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend not in self._ops:
            self._ops[backend] = _NumbaOps(self) if backend == "numba" else _NumpyOps(self)
        return self._ops[backend]

    def evaluate(self, policies):
        """Exact values, best responses, NE-gaps and Phi of a product policy
        (:func:`solvers.potential_eval.evaluate_product_policy`, kernel form built once per game)."""
        from .markov_kernels import kernel_form
        from .potential_eval import evaluate_product_policy

        if "eval" not in self._ops:
            self._ops["eval"] = kernel_form(self.game, self.phi.reshape((self.horizon, self.num_states) + self.actions))
        return evaluate_product_policy(self.game, policies, kf=self._ops["eval"])

    @property
    def horizon(self) -> int:
        return self.phi.shape[0]

    @property
    def num_states(self) -> int:
        return self.phi.shape[1]

    @property
    def dim(self) -> int:
        return theta_size(self.horizon, self.num_states, self.actions)


def potential_game(game, atol: float = POTENTIAL_ATOL) -> PotentialGame:
    """Prepare a :class:`MarkovGame` or :class:`solvers.product_games.ProductMarkovGame` for MAML;
    ``ValueError`` if its stage rewards have no potential."""
    local = getattr(game, "local_transitions", None)
    if not isinstance(game, MarkovGame) and local is None:
        raise TypeError(f"MAML needs an N-player MarkovGame or ProductMarkovGame, got {type(game).__name__}")
    H, S, A = game.horizon, game.num_states, game.num_actions
    J = int(np.prod(A))
    cert = potential_certificate(game, atol)
    phi = np.ascontiguousarray(cert.phi, dtype=np.float64).reshape(H, S, J)
    kernel = _ProductKernel(local) if local is not None else _DenseKernel(dense_transitions(game, "MAML"), S, J)
    return PotentialGame(phi, kernel, game.initial_distribution, game.gamma, tuple(A), game, cert.exact)


def _prepare(game) -> PotentialGame:
    return game if isinstance(game, PotentialGame) else potential_game(game)


# ----------------------------------------------------------------------------- parameters and policies


def theta_size(H: int, S: int, actions) -> int:
    return H * S * int(sum(actions))


def split_theta(theta: np.ndarray, H: int, S: int, actions) -> list[np.ndarray]:
    """Views of the flat ``theta`` as one (H, S, A_i) block per player."""
    out, k = [], 0
    for a in actions:
        out.append(theta[k:k + H * S * a].reshape(H, S, a))
        k += H * S * a
    if k != theta.shape[0]:
        raise ValueError(f"theta has {theta.shape[0]} entries, expected {k} for H={H}, S={S}, actions={tuple(actions)}")
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def softmax_policies(theta: np.ndarray, H: int, S: int, actions) -> list[np.ndarray]:
    """The product policy of ``theta``: one (H, S, A_i) softmax per player (Section 4.2)."""
    return [_softmax(t) for t in split_theta(np.asarray(theta, dtype=np.float64), H, S, actions)]


def _axis_shape(N: int, i: int, a: int) -> tuple:
    shape = [1] * N
    shape[i] = a
    return tuple(shape)


def _joint(factors: list[np.ndarray], combine) -> np.ndarray:
    """(H, S, J): ``combine`` (np.multiply / np.add) of per-player (H, S, A_i) arrays over joint actions."""
    N = len(factors)
    H, S = factors[0].shape[:2]
    out = factors[0].reshape((H, S) + _axis_shape(N, 0, factors[0].shape[2]))
    for i in range(1, N):
        out = combine(out, factors[i].reshape((H, S) + _axis_shape(N, i, factors[i].shape[2])))
    return out.reshape(H, S, -1)


def _marginals(W: np.ndarray, actions) -> list[np.ndarray]:
    """Per player i, (H, S, A_i): ``sum_{a: a_i = b} W(h, s, a)``."""
    H, S = W.shape[:2]
    N = len(actions)
    Wf = W.reshape((H, S) + tuple(actions))
    return [Wf.sum(axis=tuple(2 + j for j in range(N) if j != i)) for i in range(N)]


# ----------------------------------------------------------------------------- exact value, gradient, HVP


@dataclass
class _Primal:
    """Everything of one policy that the gradient and the tangent pass reuse."""

    sig: list  # per player (H, S, A_i)
    pi: np.ndarray  # (H, S, J)
    Q: np.ndarray  # (H, S, J)
    W: np.ndarray  # pi * Q
    V: np.ndarray  # (H + 1, S), V[H] = 0
    d: np.ndarray  # (H, S)
    lu: tuple | None  # LU of I - gamma P_pi (discounted)
    value: float


def _primal(theta: np.ndarray, g: PotentialGame) -> _Primal:
    H, S = g.horizon, g.num_states
    sig = softmax_policies(theta, H, S, g.actions)
    pi = _joint(sig, np.multiply)
    J = pi.shape[2]
    V = np.zeros((H + 1, S))
    d = np.empty((H, S))
    if g.gamma is None:
        Q = np.empty((H, S, J))
        for h in range(H - 1, -1, -1):
            Q[h] = g.phi[h] + g.kernel.expect(h, V[h + 1])
            V[h] = np.einsum("sj,sj->s", pi[h], Q[h])
        d[0] = g.rho
        for h in range(H - 1):
            d[h + 1] = g.kernel.push(h, d[h][:, None] * pi[h])
        lu = None
    else:
        M = np.eye(S) - g.gamma * g.kernel.policy_matrix(0, pi[0], [x[0] for x in sig])
        with single_threaded_blas():
            lu = scipy.linalg.lu_factor(M, check_finite=False)
        V[0] = scipy.linalg.lu_solve(lu, np.einsum("sj,sj->s", pi[0], g.phi[0]), check_finite=False)
        Q = (g.phi[0] + g.gamma * g.kernel.expect(0, V[0]))[None]
        d[0] = scipy.linalg.lu_solve(lu, g.rho, trans=1, check_finite=False)
    W = pi * Q
    return _Primal(sig, pi, Q, W, V, d, lu, float(g.rho @ V[0]))


def _gradient(p: _Primal, g: PotentialGame) -> np.ndarray:
    Mi = _marginals(p.W, g.actions)
    V = p.V[:-1, :, None]
    return np.concatenate([(p.d[:, :, None] * (m - s * V)).ravel() for m, s in zip(Mi, p.sig)])


def _tangent(p: _Primal, g: PotentialGame, u: np.ndarray) -> np.ndarray:
    """H u: the directional derivative of :func:`_gradient` along ``u`` (module docstring)."""
    H, S = g.horizon, g.num_states
    us = split_theta(u, H, S, g.actions)
    centred = [ui - np.einsum("hsa,hsa->hs", s, ui)[:, :, None] for s, ui in zip(p.sig, us)]
    sigdot = [s * c for s, c in zip(p.sig, centred)]
    pidot = p.pi * _joint(centred, np.add)
    Vdot = np.zeros((H + 1, S))
    ddot = np.zeros((H, S))
    if g.gamma is None:
        Wdot = np.empty_like(p.W)
        for h in range(H - 1, -1, -1):
            Wdot[h] = pidot[h] * p.Q[h] + p.pi[h] * g.kernel.expect(h, Vdot[h + 1])
            Vdot[h] = Wdot[h].sum(axis=1)
        for h in range(H - 1):
            ddot[h + 1] = g.kernel.push(h, ddot[h][:, None] * p.pi[h] + p.d[h][:, None] * pidot[h])
    else:
        Vdot[0] = scipy.linalg.lu_solve(p.lu, np.einsum("sj,sj->s", pidot[0], p.Q[0]), check_finite=False)
        Wdot = pidot * p.Q + p.pi * (g.gamma * g.kernel.expect(0, Vdot[0]))[None]
        rhs = g.gamma * g.kernel.push(0, p.d[0][:, None] * pidot[0])
        ddot[0] = scipy.linalg.lu_solve(p.lu, rhs, trans=1, check_finite=False)
    Mi = _marginals(p.W, g.actions)
    Mdot = _marginals(Wdot, g.actions)
    V, Vd = p.V[:-1, :, None], Vdot[:-1, :, None]
    d, dd = p.d[:, :, None], ddot[:, :, None]
    return np.concatenate([
        (dd * (m - s * V) + d * (md - sd * V - s * Vd)).ravel()
        for m, md, s, sd in zip(Mi, Mdot, p.sig, sigdot)
    ])


class _NumpyOps:
    """The NumPy reference passes (:func:`_primal`, :func:`_gradient`, :func:`_tangent`)."""

    def __init__(self, g: PotentialGame):
        self.g = g

    def primal(self, theta, slot=None):
        return _primal(theta, self.g)

    def gradient(self, p):
        return _gradient(p, self.g)

    def tangent(self, p, u):
        return _tangent(p, self.g, u)


@dataclass
class _KernelPrimal:
    """The arrays :func:`solvers.maml_kernels._primal` filled (padded layout)."""

    sig_pad: np.ndarray
    pi: np.ndarray
    Q: np.ndarray
    V: np.ndarray
    d: np.ndarray
    lu: tuple | None  # LU of I - gamma P_pi (discounted)
    value: float
    actions: tuple

    @property
    def sig(self) -> list:
        return [np.ascontiguousarray(self.sig_pad[i, :, :, :a]) for i, a in enumerate(self.actions)]


class _NumbaOps:
    """The Numba passes of :mod:`solvers.maml_kernels` on one game's kernel-form arrays."""

    def __init__(self, g: PotentialGame):
        from . import maml_kernels as mk

        self.mk = mk
        self.g = g
        game = g.game
        H, S, A = g.horizon, g.num_states, g.actions
        N, J = len(A), int(np.prod(A))
        self.N, self.H, self.S, self.J, self.A, self.Amax = N, H, S, J, A, max(A)
        self.actions = np.asarray(A, dtype=np.int64)
        self.adec = np.stack(np.unravel_index(np.arange(J), A), axis=1).astype(np.int64)
        local = getattr(game, "local_transitions", None)
        self.factored = local is not None
        if self.factored:
            L, Al = local.shape[2], local.shape[3]
            self.local_p = np.ascontiguousarray(local)
            self.sdec = np.stack(np.unravel_index(np.arange(S), (L,) * N), axis=1).astype(np.int64)
            x = self.sdec[:, None, :] * Al + self.adec[None, :, :]
            self.xmap = np.ascontiguousarray(np.ravel_multi_index(tuple(np.moveaxis(x, 2, 0)), (L * Al,) * N)).astype(np.int64)
            self.dense_p = np.zeros((1, 1, 1, 1))
            buf = (L * Al) ** N
        else:
            self.local_p = np.zeros((1, 1, 1, 1, 1))
            self.sdec = np.zeros((S, N), dtype=np.int64)
            self.xmap = np.zeros((1, 1), dtype=np.int64)
            self.dense_p = np.ascontiguousarray(dense_transitions(game, "MAML")).reshape(H, S, J, S)
            buf = 1
        self.buf1, self.buf2 = np.empty(buf), np.empty(buf)
        self.E = np.empty((S, J))
        self.phi = g.phi
        self.rho = np.ascontiguousarray(g.rho, dtype=np.float64)
        self.discounted = g.gamma is not None
        self.gamma = float(g.gamma) if self.discounted else 0.0
        self.zero_phi = np.zeros_like(self.phi)
        self.offsets = np.cumsum([0] + [H * S * a for a in A])
        self._work = None
        self._slots = {}

    def pad(self, flat):
        out = np.zeros((self.N, self.H, self.S, self.Amax))
        for i, a in enumerate(self.A):
            out[i, :, :, :a] = flat[self.offsets[i]:self.offsets[i + 1]].reshape(self.H, self.S, a)
        return out

    def unpad(self, padded):
        return np.concatenate([padded[i, :, :, :a].ravel() for i, a in enumerate(self.A)])

    def _arrays(self, slot):
        """(sig, pi, Q, V, d): fresh, or the scratch set ``slot`` (reused: fresh 4 MB arrays cost page faults)."""
        H, S, J = self.H, self.S, self.J
        if slot is not None and slot in self._slots:
            return self._slots[slot]
        arrays = (np.empty((self.N, H, S, self.Amax)), np.empty((H, S, J)), np.empty((H, S, J)), np.zeros((H + 1, S)),
                  np.empty((H, S)))
        if slot is not None:
            self._slots[slot] = arrays
        return arrays

    def primal(self, theta, slot=None):
        """The value pass at ``theta``; with ``slot`` its arrays are the scratch set ``slot``, valid until the
        next call with that slot."""
        S, mk = self.S, self.mk
        sig, pi, Q, V, d = self._arrays(slot)
        tp = self.pad(theta)
        if not self.discounted:
            val = mk._finite_primal(tp, self.actions, self.adec, self.phi, self.rho, self.dense_p, self.local_p,
                                    self.xmap, self.factored, sig, pi, Q, V, d, self.E, self.buf1, self.buf2)
            return _KernelPrimal(sig, pi, Q, V, d, None, float(val), self.A)
        M, r_pi = np.empty((S, S)), np.empty(S)
        mk._discounted_system(tp, self.actions, self.adec, self.sdec, self.phi, self.dense_p, self.local_p,
                              self.factored, self.gamma, sig, pi, M, r_pi)
        with single_threaded_blas():
            lu = scipy.linalg.lu_factor(M, check_finite=False)
            V[0] = scipy.linalg.lu_solve(lu, r_pi, check_finite=False)
            d[0] = scipy.linalg.lu_solve(lu, self.rho, trans=1, check_finite=False)
        mk._discounted_q(V[0], self.phi, self.gamma, self.dense_p, self.local_p, self.xmap, self.factored, self.buf1,
                         self.buf2, self.E, Q)
        return _KernelPrimal(sig, pi, Q, V, d, lu, float(self.rho @ V[0]), self.A)

    def gradient(self, p):
        out = np.empty_like(p.sig_pad)
        self.mk._gradient(p.sig_pad, p.pi, p.Q, p.V, p.d, self.adec, self.actions, out)
        return self.unpad(out)

    def tangent(self, p, u):
        H, S, J, mk = self.H, self.S, self.J, self.mk
        if self._work is None:
            self._work = (np.empty((self.N, H, S, self.Amax)), np.empty((H, S, J)), np.empty((H, S, J)),
                          np.zeros((H + 1, S)), np.zeros((H, S)))
        cen, pidot, Qdot, Vdot, ddot = self._work
        out = np.empty_like(p.sig_pad)
        up = self.pad(u)
        if not self.discounted:
            mk._finite_tangent(up, p.sig_pad, p.pi, p.Q, p.V, p.d, self.adec, self.actions, self.dense_p, self.local_p,
                               self.xmap, self.factored, cen, pidot, Qdot, Vdot, ddot, self.E, self.buf1, self.buf2, out)
            return self.unpad(out)
        # discounted: Vdot = M^{-1} sum_j pidot Q, ddot = M^{-T} gamma push(d pidot), Qdot = gamma P Vdot
        mk._tangent_directions(up, p.sig_pad, p.pi, self.adec, self.actions, cen, pidot)
        rhs = np.empty(S)
        mk._push(0, p.d[0][:, None] * pidot[0], self.dense_p, self.local_p, self.xmap, self.factored, self.buf1,
                 self.buf2, rhs)
        with single_threaded_blas():
            Vdot[0] = scipy.linalg.lu_solve(p.lu, np.einsum("sj,sj->s", pidot[0], p.Q[0]), check_finite=False)
            ddot[0] = scipy.linalg.lu_solve(p.lu, self.gamma * rhs, trans=1, check_finite=False)
        mk._discounted_q(Vdot[0], self.zero_phi, self.gamma, self.dense_p, self.local_p, self.xmap,
                         self.factored, self.buf1, self.buf2, self.E, Qdot)
        mk._tangent_assemble(p.sig_pad, p.pi, p.Q, p.V, p.d, cen, pidot, Qdot, Vdot, ddot, self.adec, self.actions, out)
        return self.unpad(out)


def _check_theta(theta, g: PotentialGame, name: str = "theta") -> np.ndarray:
    t = np.asarray(theta, dtype=np.float64)
    if t.shape != (g.dim,):
        raise ValueError(f"{name} must have shape ({g.dim},) for this game, got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} has non-finite entries")
    return t


def potential(theta, game, backend: str = "numba") -> float:
    """Phi(theta; G), the potential's value under the softmax policy of ``theta``."""
    g = _prepare(game)
    return g.ops(backend).primal(_check_theta(theta, g)).value


def potential_gradient(theta, game, backend: str = "numba") -> tuple[float, np.ndarray]:
    """(Phi(theta), grad Phi(theta)) exactly (Eq. 45 in this module's normalisation)."""
    g = _prepare(game)
    ops = g.ops(backend)
    p = ops.primal(_check_theta(theta, g))
    return p.value, ops.gradient(p)


def hessian_vector_product(theta, game, u, backend: str = "numba") -> np.ndarray:
    """The exact product Hess Phi(theta) u (forward mode over the closed-form gradient)."""
    g = _prepare(game)
    ops = g.ops(backend)
    t = _check_theta(theta, g)
    return ops.tangent(ops.primal(t), _check_theta(u, g, "u"))


def dense_hessian(theta, game, backend: str = "numba") -> np.ndarray:
    """Hess Phi(theta) as a dense (D, D) matrix, column by column from HVPs (tiny games only)."""
    g = _prepare(game)
    t = _check_theta(theta, g)
    if g.dim > MAX_DENSE_HESSIAN:
        raise ValueError(f"a dense Hessian of dimension {g.dim} > {MAX_DENSE_HESSIAN} is refused: use hessian_vector_product")
    ops = g.ops(backend)
    p = ops.primal(t)
    return np.column_stack([ops.tangent(p, e) for e in np.eye(g.dim)])


# ----------------------------------------------------------------------------- inner loop and meta-gradient


def adapt(theta, game, T: int, alpha: float, keep: bool = False, backend: str = "numba"):
    """T steps of exact policy-gradient ascent ``theta <- theta + alpha grad Phi(theta)`` (Eq. 44-45).

    Returns ``(theta_T, p_T, primals)``: ``p_T`` is the value pass at theta_T (``p_T.value`` =
    Phi(theta_T), ``p_T.sig`` the policy); ``primals`` (the T pre-step value passes, for the
    meta-gradient) is empty unless ``keep``. Kept passes live in the game's scratch buffers: they are
    valid until the next ``adapt`` or ``meta_gradient`` call on the same game.
    """
    g = _prepare(game)
    ops = g.ops(backend)
    t = _check_theta(theta, g).copy()
    primals = []
    for step in range(T):
        p = ops.primal(t, slot=step if keep else 0)
        if keep:
            primals.append(p)
        t = t + alpha * ops.gradient(p)
    return t, ops.primal(t), primals


def meta_gradient(theta, game, T: int, alpha: float, backend: str = "numba") -> tuple[float, np.ndarray]:
    """One game's term of Eq. (46): (Phi(theta^(T)), prod_t (I + alpha H_t) grad Phi(theta^(T))).

    The T primals of the inner loop are kept (O(T H S J) memory) and reused by the T HVPs."""
    g = _prepare(game)
    ops = g.ops(backend)
    _, pT, primals = adapt(theta, g, T, alpha, keep=True, backend=backend)
    v = ops.gradient(pT)
    for p in reversed(primals):
        v = v + alpha * ops.tangent(p, v)
    return pT.value, v


# ----------------------------------------------------------------------------- the MAML run


@dataclass(frozen=True)
class MamlEvaluation:
    """Held-out games after T adaptation steps from one initialisation: per game (n_test,) arrays."""

    potential: np.ndarray  # Phi(theta^(T); G)
    gap: np.ndarray  # max_i (V_i^dag - V_i)
    gap_avg: np.ndarray  # mean_i (V_i^dag - V_i), the F.2 form


@dataclass(frozen=True)
class MamlResult:
    """A MAML run (Eq. 47). ``outer`` is 0..M (0 = before the first outer step).

    grad_norm[k], potential[k] : ||grad F_T(theta^k)|| (Theorem 4's quantity) and F_T(theta^k) on the
        training games; for k = M they are computed at the final theta.
    eval_outer : outer iterations at which the held-out games were evaluated (0 and M included)
    meta : MamlEvaluation per entry of eval_outer (adaptation from theta^k)
    uniform : MamlEvaluation of the uniform initialisation theta = 0 (does not change with k)
    """

    outer: np.ndarray
    grad_norm: np.ndarray
    potential: np.ndarray
    eval_outer: np.ndarray
    meta: list
    uniform: MamlEvaluation
    theta: np.ndarray
    T: int
    alpha: float
    beta: float
    kernel_seconds: float
    timing: dict = field(default_factory=dict)

    def summary(self) -> dict:
        last = self.meta[-1]
        return {
            "outer_iterations": int(self.outer[-1]),
            "grad_norm_initial": float(self.grad_norm[0]),
            "grad_norm_final": float(self.grad_norm[-1]),
            "grad_norm_min": float(np.min(self.grad_norm)),
            "potential_initial": float(self.potential[0]),
            "potential_final": float(self.potential[-1]),
            "meta": {"gap": float(last.gap.mean()), "gap_avg": float(last.gap_avg.mean()),
                     "potential": float(last.potential.mean())},
            "individual": {"gap": float(self.uniform.gap.mean()), "gap_avg": float(self.uniform.gap_avg.mean()),
                           "potential": float(self.uniform.potential.mean())},
        }


def _check_games(games, name: str) -> list[PotentialGame]:
    if len(games) == 0:
        raise ValueError(f"{name}: at least one game is needed")
    out = [_prepare(g) for g in games]
    g0 = out[0]
    for k, g in enumerate(out):
        if (g.phi.shape, g.actions, g.gamma is None) != (g0.phi.shape, g0.actions, g0.gamma is None):
            raise ValueError(f"{name}[{k}] has shape {g.phi.shape} / actions {g.actions} / "
                             f"{'finite horizon' if g.gamma is None else 'discounted'}, unlike game 0")
    return out


def evaluate_initialisation(theta, games, T: int, alpha: float, backend: str = "numba") -> MamlEvaluation:
    """Adapt T steps from ``theta`` on every game; the potential and the exact NE-gaps after adaptation."""
    pot, gap, gap_avg = [], [], []
    for g in games:
        g = _prepare(g)
        _, pT, _ = adapt(theta, g, T, alpha, backend=backend)
        ev = g.evaluate(pT.sig)
        pot.append(pT.value)
        gap.append(ev.gap)
        gap_avg.append(ev.gap_avg)
    return MamlEvaluation(np.array(pot), np.array(gap), np.array(gap_avg))


def _check_run_args(T, alpha, outer_iterations, beta, eval_every):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 0:
        raise ValueError(f"T (inner steps) must be an integer >= 0, got {T!r}")
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    for name, v in (("outer_iterations", outer_iterations), ("eval_every", eval_every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "outer_iterations" else 1):
            raise ValueError(f"{name} must be an integer >= {0 if name == 'outer_iterations' else 1}, got {v!r}")


def run_maml(train_games, test_games, T: int, alpha: float, outer_iterations: int, beta: float,
             eval_every: int = 1, theta0=None, backend: str = "numba") -> MamlResult:
    """MAML (Eq. 47) on ``train_games`` (full batch: the uniform distribution over them, as in D.2),
    evaluated on held-out ``test_games`` every ``eval_every`` outer iterations (and at 0 and M).

    Parameters
    ----------
    train_games, test_games : sequences of MarkovGame (or PotentialGame), all of one shape
    T : inner policy-gradient steps (Eq. 44); T = 0 gives plain gradient ascent on mean Phi
    alpha : inner step size; beta : outer step size (the paper's eta in Eq. 47)
    outer_iterations : M outer steps; theta0 : initial meta-parameter (default 0 = uniform policies)
    backend : "numba" (default) or "numpy" (the reference implementation)
    """
    with single_threaded_blas():  # single-threaded by design (parallelism comes from Ray): see solvers._blas
        return _run_maml(train_games, test_games, T, alpha, outer_iterations, beta, eval_every, theta0, backend)


def _run_maml(train_games, test_games, T, alpha, outer_iterations, beta, eval_every, theta0, backend) -> MamlResult:
    _check_run_args(T, alpha, outer_iterations, beta, eval_every)
    train = _check_games(train_games, "train_games")
    test = _check_games(test_games, "test_games")
    if (test[0].phi.shape, test[0].actions, test[0].gamma is None) != (train[0].phi.shape, train[0].actions,
                                                                        train[0].gamma is None):
        raise ValueError("held-out games must have the training games' shape, actions and setting (finite horizon "
                         "or discounted)")
    dim = train[0].dim
    theta = np.zeros(dim) if theta0 is None else _check_theta(theta0, train[0], "theta0").copy()
    t0 = time.perf_counter()
    t_eval = 0.0
    uniform = evaluate_initialisation(np.zeros(dim), test, T, alpha, backend)
    grad_norm, pot, eval_outer, meta = [], [], [], []
    for k in range(outer_iterations + 1):
        if k % eval_every == 0 or k == outer_iterations:
            te = time.perf_counter()
            meta.append(evaluate_initialisation(theta, test, T, alpha, backend))
            eval_outer.append(k)
            t_eval += time.perf_counter() - te
        grad = np.zeros(dim)
        val = 0.0
        for g in train:
            f, v = meta_gradient(theta, g, T, alpha, backend)
            val += f / len(train)
            grad += v / len(train)
        grad_norm.append(float(np.linalg.norm(grad)))
        pot.append(val)
        if k < outer_iterations:
            theta = theta + beta * grad
    total = time.perf_counter() - t0
    return MamlResult(np.arange(outer_iterations + 1), np.array(grad_norm), np.array(pot), np.array(eval_outer), meta,
                      uniform, theta, int(T), float(alpha), float(beta), total,
                      {"total_s": total, "evaluation_s": t_eval})
