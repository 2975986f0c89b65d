"""Plain-NumPy projected Q-ascent (Eq. 7) on a finite-horizon product-state game: the benchmark baseline.

Written independently of :mod:`solvers.markov_kernels` (tensordot mode products, broadcasting over
joint actions, a vectorised sort-based projection); the benchmark compares its iterates with the
Numba kernel's. No evaluation (best responses) is done: this is the cost of T update steps.
"""

from __future__ import annotations

import numpy as np


def project_rows(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of every row of v (..., n) onto the simplex (sort-based)."""
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1) - 1.0
    k = np.arange(1, v.shape[-1] + 1)
    cond = u - css / k > 0
    rho = v.shape[-1] - 1 - np.argmax(cond[..., ::-1], axis=-1)  # last index where cond holds
    theta = np.take_along_axis(css, rho[..., None], axis=-1) / (rho[..., None] + 1)
    return np.maximum(v - theta, 0.0)


def q_ascent_numpy(game, iterations: int, step: float, init=None) -> list[np.ndarray]:
    """T steps of Eq. (7) on a :class:`solvers.product_games.ProductMarkovGame` with finite horizon; returns pi^T."""
    N, H, S = game.num_players, game.horizon, game.num_states
    L, A = game.num_local_states, game.num_actions[0]
    J = A**N
    local = game.local_transitions  # (N, H, L, A, L)
    r = game.rewards.reshape(N, H, S, J)
    pols = [np.full((H, S, A), 1.0 / A) if init is None else np.array(p, dtype=np.float64) for p in (init or [None] * N)]
    sdec = np.stack(np.unravel_index(np.arange(S), (L,) * N), axis=1)
    adec = np.stack(np.unravel_index(np.arange(J), (A,) * N), axis=1)
    x = sdec[:, None, :] * A + adec[None, :, :]
    xmap = np.ravel_multi_index(tuple(np.moveaxis(x, 2, 0)), (L * A,) * N)
    for _ in range(iterations):
        V = np.zeros((N, S))
        new = [p.copy() for p in pols]
        for h in range(H - 1, -1, -1):
            W = V.reshape(N, *([L] * N))
            for i in range(N):
                M = local[i, h].reshape(L * A, L)
                W = np.moveaxis(np.tensordot(M, W, axes=([1], [1 + i])), 0, 1 + i)
            E = W.reshape(N, -1)[:, xmap]  # (N, S, J): expected next value of (s, a)
            Q = r[:, h] + E
            probs = [pols[i][h][:, adec[:, i]] for i in range(N)]  # (S, J) each
            joint = np.prod(probs, axis=0)
            V = (joint[None] * Q).sum(axis=2)
            for i in range(N):
                others = np.prod([probs[k] for k in range(N) if k != i], axis=0)
                qb = np.moveaxis((others * Q[i]).reshape(S, *([A] * N)), 1 + i, -1).reshape(S, -1, A).sum(axis=1)
                new[i][h] = project_rows(pols[i][h] + step * qb)
        pols = new
    return pols
