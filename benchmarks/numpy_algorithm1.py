"""A plain, vectorised NumPy reference implementation of Algorithm 1 (no Numba).

Written independently of the Numba kernel in ``solvers/algorithm1.py`` from the algorithm as
documented in ``/work/shared/paper/NOTES.md`` ("Algorithm 1") and in the kernel's module
docstring. It exists for two reasons: to cross-check the kernel (``tests/test_numpy_reference.py``)
and as the baseline of ``benchmarks/bench_algorithm1.py``. It favours readability: every
iteration updates all (h, s) cells at once with whole-array operations.

Per iteration t of stage tau (all h, s at once; Q^tau fixed inside the stage):

    g_mu   = Q^tau nu^{t-1}              (H, S, A)   prediction for the max-player
    g_nu   = -(mu^{t-1})^T Q^tau         (H, S, B)   prediction for the min-player
    log mu_hat^t = log_softmax(log mu_hat^{t-1} + eta g_mu)     (auxiliary step)
    mu^t         = softmax(log mu_hat^t + eta g_mu)             (policy step)
    (same for nu with g_nu)

Log-sum-exp uses max-subtraction. At a stage start the iterates and auxiliary iterates are reset to
the initial (uniform) policy when ``stage_reset`` is true (paper's line 10), otherwise only at the
first stage; the predictions are then recomputed from the new Q^tau and the (reset or carried)
previous iterates.

Value update at the end of a (complete) stage tau of length L_tau, with Q_{H+1} = 0:

    Q^{tau+1}_h(s,a,b) = r_h(s,a,b) + sum_{s'} P_h(s'|s,a,b) * Vbar_{h+1}(s'),
    Vbar_{h+1}(s')     = (1/L_tau) sum_{t in tau} mu^t_{h+1}(s')^T Q^tau_{h+1}(s') nu^t_{h+1}(s').

Choice made here: Vbar is **accumulated during the stage** (one (H, S) array, summed after each
iteration), not recomputed from stored iterates at the stage end; the result is the same sum.
The last stage may be truncated by T; no value update follows it.

Best fixed policy in hindsight of stage tau: the maximiser over the simplex of
G_mu = sum_{t in tau} Q^tau nu^t (resp. G_nu = -sum_t (mu^t)^T Q^tau); actions with
max(G) - G(a) <= tie_rtol * max_a |G(a)| are tied and share the mass uniformly.

Evaluation: after each iteration t in ``solvers.schedule.eval_iterations(T, eval_every)`` the
running averages mu_bar^t = (1/t) sum_{j<=t} mu^j (and nu_bar^t) are evaluated exactly by a
backward induction vectorised over states: value V^{mu,nu}, best-response values V^{dag,nu},
V^{mu,dag} and NE-gap = V^{dag,nu}_1(s_1) - V^{mu,dag}_1(s_1). One evaluation per scheduled
iteration (no batching of several snapshots).
"""

from __future__ import annotations

import numpy as np

from solvers.schedule import eval_iterations, stage_lengths

__all__ = ["solve_numpy", "evaluate_numpy", "best_in_hindsight_numpy"]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, with max-subtraction."""
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    """softmax over the last axis, with max-subtraction."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def best_in_hindsight_numpy(G: np.ndarray, tie_rtol: float = 1e-9) -> np.ndarray:
    """Uniform distribution over the (tolerance-)maximisers of G along the last axis."""
    gmax = G.max(axis=-1, keepdims=True)
    scale = np.abs(G).max(axis=-1, keepdims=True)
    tied = (gmax - G) <= tie_rtol * scale
    return tied / tied.sum(axis=-1, keepdims=True)


def evaluate_numpy(rewards: np.ndarray, trans2d: np.ndarray, s1: int, mu: np.ndarray, nu: np.ndarray):
    """(value, br_max, br_min) at s_1 of the product policy (mu, nu), by backward induction.

    rewards (H, S, A, B); trans2d (H, S*A*B, S) the transitions reshaped; mu (H, S, A); nu (H, S, B).
    V[:, 0] = V^{mu,nu}, V[:, 1] = V^{dag,nu} (max-player best response), V[:, 2] = V^{mu,dag}.
    """
    H, S, A, B = rewards.shape
    V = np.zeros((S, 3))
    for h in range(H - 1, -1, -1):
        cont = (trans2d[h] @ V).reshape(S, A, B, 3)  # sum_s' P_h(s'|s,a,b) V_{h+1}(s'), for the 3 values
        q_val = rewards[h] + cont[..., 0]
        q_max = rewards[h] + cont[..., 1]
        q_min = rewards[h] + cont[..., 2]
        value = np.einsum("sa,sab,sb->s", mu[h], q_val, nu[h])
        br_max = np.einsum("sab,sb->sa", q_max, nu[h]).max(axis=1)
        br_min = np.einsum("sa,sab->sb", mu[h], q_min).min(axis=1)
        V = np.stack([value, br_max, br_min], axis=1)
    return float(V[s1, 0]), float(V[s1, 1]), float(V[s1, 2])


def solve_numpy(game, iterations: int, eta: float, stage_reset: bool = True, eval_every: int | None = None,
                tie_rtol: float = 1e-9) -> dict:
    """Run Algorithm 1 from uniform initial policies; see the module docstring.

    Returns a dict with keys ``iterations, gap, value, best_response_value_max,
    best_response_value_min, mu_bar, nu_bar, mu_dagger, nu_dagger, stage_lengths``.
    """
    r = np.asarray(game.rewards, dtype=np.float64)
    H, S, A, B = r.shape
    trans2d = np.asarray(game.transitions, dtype=np.float64).reshape(H, S * A * B, S)
    s1 = int(game.initial_state)
    T = int(iterations)
    L = stage_lengths(H, T)
    its = eval_iterations(T, eval_every)
    eval_set = set(int(i) for i in its)

    log_mu0 = np.full((H, S, A), -np.log(A))
    log_nu0 = np.full((H, S, B), -np.log(B))
    Q = np.zeros((H, S, A, B))
    mu_sum = np.zeros((H, S, A))
    nu_sum = np.zeros((H, S, B))
    mu_dag = np.empty((len(L), H, S, A))
    nu_dag = np.empty((len(L), H, S, B))
    curve = []

    t = 0
    for tau, L_tau in enumerate(L):
        if stage_reset or tau == 0:
            log_mu_hat, log_nu_hat = log_mu0.copy(), log_nu0.copy()
            mu, nu = np.exp(log_mu_hat), np.exp(log_nu_hat)
        # predictions from the previous iterates under the current Q^tau
        g_mu = np.einsum("hsab,hsb->hsa", Q, nu)
        g_nu = -np.einsum("hsa,hsab->hsb", mu, Q)
        G_mu = np.zeros((H, S, A))
        G_nu = np.zeros((H, S, B))
        v_acc = np.zeros((H, S))  # sum over the stage of mu^t_h(s)^T Q^tau_h(s) nu^t_h(s)

        for _ in range(int(L_tau)):
            t += 1
            # optimistic MWU: auxiliary step, then policy step, both with the same prediction
            log_mu_hat = _log_softmax(log_mu_hat + eta * g_mu)
            log_nu_hat = _log_softmax(log_nu_hat + eta * g_nu)
            mu = _softmax(log_mu_hat + eta * g_mu)
            nu = _softmax(log_nu_hat + eta * g_nu)
            # new predictions = losses of this iterate; regrets and value accumulators
            Q_nu = np.einsum("hsab,hsb->hsa", Q, nu)
            muT_Q = np.einsum("hsa,hsab->hsb", mu, Q)
            g_mu, g_nu = Q_nu, -muT_Q
            G_mu += Q_nu
            G_nu -= muT_Q
            v_acc += np.einsum("hsa,hsa->hs", mu, Q_nu)
            mu_sum += mu
            nu_sum += nu
            if t in eval_set:
                curve.append(evaluate_numpy(r, trans2d, s1, mu_sum / t, nu_sum / t))

        mu_dag[tau] = best_in_hindsight_numpy(G_mu, tie_rtol)
        nu_dag[tau] = best_in_hindsight_numpy(G_nu, tie_rtol)
        if tau + 1 < len(L):
            v_next = np.zeros((H, S))
            v_next[:-1] = v_acc[1:] / L_tau  # Vbar_{h+1}; Q_{H+1} = 0
            cont = np.matmul(trans2d, v_next[:, :, None])[..., 0]  # (H, S*A*B)
            Q = r + cont.reshape(H, S, A, B)

    curve = np.asarray(curve)
    return {
        "iterations": its,
        "gap": curve[:, 1] - curve[:, 2],
        "value": curve[:, 0],
        "best_response_value_max": curve[:, 1],
        "best_response_value_min": curve[:, 2],
        "mu_bar": mu_sum / T,
        "nu_bar": nu_sum / T,
        "mu_dagger": mu_dag,
        "nu_dagger": nu_dag,
        "stage_lengths": L,
    }
