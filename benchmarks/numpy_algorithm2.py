"""A plain, vectorised NumPy implementation of Algorithm 2 (no Numba): the benchmark baseline and a
cross-check of the kernel in ``solvers/algorithm2.py`` (``tests/test_general_sum.py``).

Written from the algorithm as documented in ``/work/shared/paper/NOTES.md`` (Algorithm 2) and in
the kernel's module docstring, favouring readability: every iteration updates all (h, s) cells of
a player at once with whole-array operations on the joint-action tensors (H, S, A_1, ..., A_N).

Per iteration t of stage tau, for every player i (all h, s at once; Q^tau_i fixed inside the stage):

    g_i          = sum_{a_{-i}} Q^tau_i(., a) prod_{k != i} pi^{t-1}_k(a_k)     (H, S, A_i)  (einsum)
    log pi_hat_i = log_softmax(log pi_hat_i + eta g_i)                           (auxiliary step)
    pi_i         = softmax(log pi_hat_i + eta g_i)                               (policy step)

At a stage start the iterates are reset to the (uniform) initial policy when ``stage_reset`` is
true, otherwise only at the first stage. The value estimate W_i = sum_{t in tau} [pi^t Q^tau_i] is
accumulated during the stage; at a complete stage's end
Q^{tau+1}_{h,i} = r_{h,i} + P_h (W_{h+1,i} / L_tau), Q_{H+1} = 0. Best fixed policies in hindsight and
their ties as in the kernel (``tie_rtol`` relative to max |G|, uniform over tied actions).
"""

from __future__ import annotations

import string

import numpy as np

from solvers.schedule import stage_lengths

__all__ = ["solve_numpy"]


def _log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))


def solve_numpy(game, iterations: int, eta: float, stage_reset: bool = True, tie_rtol: float = 1e-9):
    """Run Algorithm 2 from uniform policies; returns (trajectory per player (T, H, S, A_i), daggers per player)."""
    N, H, S, acts = game.num_players, game.horizon, game.num_states, game.num_actions
    letters = string.ascii_letters[:N]
    joint = "hs" + letters
    # einsum specs: g_i = Q_i contracted with every other player's policy
    g_spec = [joint + "," + ",".join("hs" + letters[k] for k in range(N) if k != i) + "->hs" + letters[i] for i in range(N)]
    L = stage_lengths(H, iterations)
    r = game.rewards
    P = game.transitions.reshape(H, -1, S)
    Q = np.zeros((N, H, S, *acts))
    log_hat = [np.full((H, S, a), -np.log(a)) for a in acts]
    pol = [np.exp(x) for x in log_hat]
    traj = [np.empty((iterations, H, S, a)) for a in acts]
    dags = [np.empty((L.shape[0], H, S, a)) for a in acts]
    t = 0

    def predictions():
        return [np.einsum(g_spec[i], Q[i], *[pol[k] for k in range(N) if k != i]) for i in range(N)]

    for tau, length in enumerate(L):
        if stage_reset or tau == 0:
            log_hat = [np.full((H, S, a), -np.log(a)) for a in acts]
            pol = [np.exp(x) for x in log_hat]
        g = predictions()
        G = [np.zeros((H, S, a)) for a in acts]
        W = np.zeros((N, H + 1, S))
        for _ in range(length):
            for i in range(N):
                log_hat[i] = _log_softmax(log_hat[i] + eta * g[i])
                pol[i] = np.exp(_log_softmax(log_hat[i] + eta * g[i]))
                traj[i][t] = pol[i]
            g = predictions()
            for i in range(N):
                G[i] += g[i]
                W[i, :H] += (pol[i] * g[i]).sum(-1)
            t += 1
        for i in range(N):
            scale = np.abs(G[i]).max(-1, keepdims=True)
            tied = G[i].max(-1, keepdims=True) - G[i] <= tie_rtol * scale
            dags[i][tau] = tied / tied.sum(-1, keepdims=True)
        if tau + 1 < L.shape[0]:
            for h in range(H):
                Q[:, h] = r[:, h] + np.moveaxis((P[h] @ (W[:, h + 1] / length).T).reshape(S, *acts, N), -1, 0)
    return traj, dags
