"""Exact CCE-gaps (Section 5): Markov correlated policies, and Algorithm 3's correlated output policy.

CCE-gap(pi) = max_i V^{dag, pi_{-i}}_{1,i}(s_1) - V^{pi}_{1,i}(s_1) (NOTES.md, Section 2): the most any
player gains by deviating, while the others keep playing pi.

**Markov correlated policy** rho: a joint distribution rho_h(a | s) over joint actions per (h, s),
drawn afresh at every step. The others' actions at (h, s) are then independent of the history, so
player i faces an MDP and its best deviation (over all history-dependent policies) is found by
backward induction from V_{H+1} = 0:

    V_{h,i}(s)     = sum_a rho_h(a|s) [r_{h,i} + P_h V_{h+1,i}](s, a)
    V^dag_{h,i}(s) = max_{a_i} sum_{a_{-i}} rho_{h,-i}(a_{-i}|s) [r_{h,i} + P_h V^dag_{h+1,i}](s, a_i, a_{-i})

with rho_{h,-i} the marginal of the others. A product policy prod_i pi_i is the special case
rho = prod_i pi_i (its CCE-gap is then the max-form NE-gap).

**Algorithm 3's policy** (Appendix E.1). Reading of Algorithm 3 and line 11 of Algorithm 2: the
output is pi_bar^t_1 for t ~ Unif([T]); pi_bar^t_h, at each step h' = h, ..., H, draws j uniformly
from the stage before the stage of t, plays pi^j_{h'} and sets t <- j (so, as Lemma 19's proof
says, pi_bar^t_h is the same for every t of a stage). Because j is uniform over a whole stage
whatever t was, the index played at step h is uniform over stage tau(t) - h and independent of the
past given t: pi_bar^t_1 is the Markov correlated policy that plays the stage mixture

    M^sigma_h(a | s) = (1/L_sigma) sum_{j in stage sigma} prod_i pi^j_{h,i}(a_i | s),   sigma = tau(t) - h,

at step h. Reading: Algorithm 3 is undefined when sigma < 1 (stage 1 has no previous stage, and
a stage tau < H runs out of stages before step H); we then use stage 1 (sigma = max(1, tau(t) - h)),
whose iterates are the initial policies when Q^1 = 0. The policy is kept compactly as the
trajectory {pi^t} and the stage schedule; the stage mixtures are computed from them, never sampled.
The dynamic programme runs over (h, s, iteration index); since the index enters only through its
stage, that is one backward induction per stage tau (over h and s), shared by the stage's iterations.

Reported for a run of T iterations (each labelled):

* ``algorithm3``: (1/T) sum_t CCE-gap(pi_bar^t_1), the expected CCE-gap of Algorithm 2's random
  output, each CCE-gap exact; it is the quantity Theorem 5's proof bounds (first display of E.2),
  and (1/T) sum_t V^{pi_bar^t_1}_{1,i}(s_1), the expected value per player. After t' iterations it
  is the mean over t <= t' (the same run truncated at t').
* ``algorithm3_mixture_bound``: max_i (1/T) sum_t [V^{dag,t}_{1,i} - V^t_{1,i}], an upper bound on the
  CCE-gap of the mixture over t read as one correlated policy (a deviator who knows t does at least
  as well), and <= ``algorithm3``.
* ``joint_average``: the Markov correlated policy (1/T) sum_t prod_i pi^t_{h,i}.
* ``product_average``: the product of the per-player averages (1/T) sum_t pi^t_{h,i}.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass

import numpy as np
from ._jit import njit

from .games import MAX_DENSE_ENTRIES, GameError, _as_float_array, _check_distributions, _open_npz, _read_array
from .nplayer import MarkovGame, dense_transitions
from .schedule import eval_iterations

__all__ = [
    "CCEEvaluation",
    "evaluate_joint_policy",
    "product_joint",
    "validate_joint_policy",
    "load_joint_policy",
    "save_joint_policy",
    "CCECurves",
    "cce_curves",
    "certified_evaluations",
    "joint_average",
    "CorrelatedPolicy",
    "load_correlated_policy",
    "save_correlated_policy",
    "evaluate_correlated_policy",
]


@dataclass(frozen=True)
class CCEEvaluation:
    """Exact values at s_1 of a correlated policy: per player V^pi_{1,i} and the best-deviation value V^{dag,pi_-i}_{1,i}."""

    values: np.ndarray
    best_response_values: np.ndarray
    label: str = "markov_joint"

    @property
    def gains(self) -> np.ndarray:
        return self.best_response_values - self.values

    @property
    def cce_gap(self) -> float:
        return float(self.gains.max())

    def as_dict(self) -> dict:
        return {"policy": self.label, "cce_gap": self.cce_gap, "values": self.values.tolist(),
                "best_response_values": self.best_response_values.tolist()}


def product_joint(policies) -> np.ndarray:
    """The joint distribution prod_i pi_{h,i}(a_i | s): (H, S, A_1, ..., A_N) from one (..., H, S, A_i) array per player."""
    N = len(policies)
    letters = string.ascii_letters[:N]
    spec = ",".join(f"...{c}" for c in letters) + "->..." + letters
    return np.einsum(spec, *policies)


def _step(game_r, P2, h, joint, V_next, B_next):
    """One step of the backward induction (module docstring) at step h for all players and states.

    game_r: (N, H, S, A_1..A_N); P2: (H, S*J, S); joint: (S, A_1..A_N); V_next, B_next: (N, S).
    Returns V_h, V^dag_h: (N, S).
    """
    N, S = game_r.shape[0], game_r.shape[2]
    acts = game_r.shape[3:]
    cont = (P2[h] @ np.concatenate([V_next, B_next]).T).reshape(S, *acts, 2 * N)
    V = np.empty((N, S))
    B = np.empty((N, S))
    for i in range(N):
        qv = game_r[i, h] + cont[..., i]
        qb = game_r[i, h] + cont[..., N + i]
        V[i] = (joint * qv).reshape(S, -1).sum(-1)
        rho_mi = joint.sum(axis=1 + i, keepdims=True)
        dev = np.moveaxis(rho_mi * qb, 1 + i, -1).reshape(S, -1, acts[i]).sum(1)
        B[i] = dev.max(-1)
    return V, B


def _evaluate(game: MarkovGame, joint_at) -> tuple[np.ndarray, np.ndarray]:
    """(V_1(s), V^dag_1(s)) per player, (N, S) each, of the Markov correlated policy with joint ``joint_at(h)``."""
    N, H, S = game.num_players, game.horizon, game.num_states
    P2 = dense_transitions(game, "the CCE evaluator").reshape(H, -1, S)
    V, B = np.zeros((N, S)), np.zeros((N, S))
    for h in range(H - 1, -1, -1):
        V, B = _step(game.rewards, P2, h, joint_at(h), V, B)
    return V, B


def validate_joint_policy(joint, game: MarkovGame, atol: float = 1e-6) -> np.ndarray:
    """Check a Markov correlated policy ``joint`` (H, S, A_1, ..., A_N); return a float64 copy."""
    shape = (game.horizon, game.num_states, *game.num_actions)
    arr = np.asarray(joint)
    if arr.shape != shape:
        raise GameError(f"joint must have shape (H, S, A_1, ..., A_N) = {shape} for this game, got {arr.shape}")
    arr = _as_float_array("joint", arr, len(shape))
    _check_distributions("joint", arr.reshape(shape[0], shape[1], -1), atol)
    return arr


def evaluate_joint_policy(game: MarkovGame, joint, label: str = "markov_joint") -> CCEEvaluation:
    """Exact values, best-deviation values and CCE-gap of a Markov correlated policy (module docstring).

    Parameters
    ----------
    game : MarkovGame (finite horizon)
    joint : float64 (H, S, A_1, ..., A_N)
        rho_h(a | s), a distribution over joint actions per (h, s).
    """
    if game.discounted:
        raise GameError("CCE-gaps are computed for finite-horizon games; this game is discounted")
    joint = validate_joint_policy(joint, game)
    V, B = _evaluate(game, lambda h: joint[h])
    s1 = game.initial_state
    return CCEEvaluation(V[:, s1].copy(), B[:, s1].copy(), label)


def load_joint_policy(path, game: MarkovGame) -> np.ndarray:
    """Load a joint-policy ``.npz`` (one key ``joint``, (H, S, A_1, ..., A_N)) and validate it against ``game``."""
    path = os.fspath(path)
    with _open_npz(path, "joint policy") as data:
        extra = sorted(k for k in data.files if k != "joint")
        if extra or "joint" not in data.files:
            raise GameError(f"{path}: a joint policy file holds exactly one array 'joint', got keys {sorted(data.files)}")
        joint = _read_array(data, "joint", path, MAX_DENSE_ENTRIES)
    try:
        return validate_joint_policy(joint, game)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def save_joint_policy(path, joint) -> None:
    np.savez(os.fspath(path), joint=np.asarray(joint, dtype=np.float64))


# ----------------------------------------------------------------------------- Algorithm 3


@njit(cache=True)
def _joint_accumulate(traj, acts, off, t0, t1, acc):
    """acc += sum_{t0 <= t < t1} prod_i pi^t_{h,i}(a_i | s) (0-based t), in place.

    traj: float64 (T, H, S, sum A_i), player i in the slice off[i]:off[i+1]; acts: int64 (J, N)
    (:func:`solvers.algorithm2.joint_action_table`); acc: float64 (H, S, J).
    """
    H, S = traj.shape[1], traj.shape[2]
    J, N = acts.shape
    for t in range(t0, t1):
        for h in range(H):
            for s in range(S):
                for j in range(J):
                    p = 1.0
                    for k in range(N):
                        p *= traj[t, h, s, off[k] + acts[j, k]]
                    acc[h, s, j] += p


class _JointSums:
    """Sums of the joint product policies over ranges of iterations, O(H S J) memory (never one array per t)."""

    def __init__(self, result):
        from .algorithm2 import joint_action_table

        self.traj = np.ascontiguousarray(np.concatenate(result.trajectory, axis=-1))
        self.num_actions = tuple(p.shape[-1] for p in result.trajectory)
        self.acts = joint_action_table(self.num_actions)
        self.off = np.concatenate([[0], np.cumsum(self.num_actions)]).astype(np.int64)
        self.stage_lengths = result.stage_lengths

    def add(self, t0: int, t1: int, acc: np.ndarray) -> np.ndarray:
        _joint_accumulate(self.traj, self.acts, self.off, t0, t1, acc)
        return acc

    def zeros(self) -> np.ndarray:
        T, H, S, _ = self.traj.shape
        return np.zeros((H, S, self.acts.shape[0]))

    def stage_mixtures(self) -> np.ndarray:
        """M^sigma_h(a|s) for every stage: (tau_bar, H, S, J)."""
        starts = np.concatenate([[0], np.cumsum(self.stage_lengths)])
        return np.stack([self.add(starts[k], starts[k + 1], self.zeros()) / self.stage_lengths[k]
                         for k in range(self.stage_lengths.shape[0])])


@dataclass(frozen=True)
class CertifiedEvaluation:
    """Per-iteration exact values of Algorithm 3's policies pi_bar^t_1: arrays (T, N) (equal within a stage)."""

    values: np.ndarray
    best_response_values: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """CCE-gap(pi_bar^t_1), t = 1..T: (T,)."""
        return (self.best_response_values - self.values).max(axis=1)


def certified_evaluations(game: MarkovGame, result, stage_mixtures: np.ndarray | None = None) -> CertifiedEvaluation:
    """Exact V^{pi_bar^t_1}_{1,i}(s_1) and V^{dag, pi_bar^t_{1,-i}}_{1,i}(s_1) for every iteration t (module docstring).

    ``result``: a :class:`solvers.algorithm2.Algorithm2Result` (trajectory and stage schedule).
    ``stage_mixtures``: M^sigma_h(a|s) as (tau_bar, H, S, J) if already computed.
    """
    N, H, S, acts_n = game.num_players, game.horizon, game.num_states, game.num_actions
    L = result.stage_lengths
    if stage_mixtures is None:
        stage_mixtures = _JointSums(result).stage_mixtures()
    M = stage_mixtures.reshape(L.shape[0], H, S, *acts_n)
    P2 = dense_transitions(game, "the CCE evaluator").reshape(H, -1, S)
    s1 = game.initial_state
    values = np.empty((L.shape[0], N))
    brs = np.empty((L.shape[0], N))
    for sigma in range(L.shape[0]):  # 0-based stage of t; step h (0-based) plays stage max(sigma - h - 1, 0)
        V, B = np.zeros((N, S)), np.zeros((N, S))
        for h in range(H - 1, -1, -1):
            V, B = _step(game.rewards, P2, h, M[max(sigma - h - 1, 0), h], V, B)
        values[sigma], brs[sigma] = V[:, s1], B[:, s1]
    return CertifiedEvaluation(np.repeat(values, L, axis=0), np.repeat(brs, L, axis=0))


def joint_average(result, t: int | None = None) -> np.ndarray:
    """The Markov correlated policy (1/t) sum_{j<=t} prod_i pi^j_{h,i} (default t = T): (H, S, A_1, ..., A_N)."""
    t = result.iterations if t is None else int(t)
    sums = _JointSums(result)
    H, S = sums.traj.shape[1:3]
    return sums.add(0, t, sums.zeros()).reshape(H, S, *sums.num_actions) / t


@dataclass(frozen=True)
class CCECurves:
    """CCE-gaps of a run's output policies after each evaluated iteration (labels in the module docstring).

    ``gap`` is the headline: ``algorithm3`` (expected CCE-gap of Algorithm 3's output).
    ``values``: (n_eval, N) the expected values per player of Algorithm 3's output.
    """

    iterations: np.ndarray
    gap: np.ndarray
    gap_mixture_bound: np.ndarray
    gap_joint_average: np.ndarray
    gap_product_average: np.ndarray
    values: np.ndarray
    certified: CertifiedEvaluation

    def columns(self) -> dict:
        """Named float columns of a curve table (:func:`tracking.curves.metric_table`)."""
        cols = {"gap_mixture_bound": self.gap_mixture_bound, "gap_joint_average": self.gap_joint_average,
                "gap_product_average": self.gap_product_average}
        for i in range(self.values.shape[1]):
            cols[f"value_{i}"] = self.values[:, i]
        return cols


def cce_curves(game: MarkovGame, result, eval_every: int | None = None, eval_log_points: int | None = None,
               averages: bool = True) -> CCECurves:
    """Evaluate a run of Algorithm 2 at the schedule's iterations (:func:`solvers.schedule.eval_iterations`).

    Algorithm 3's curve is exact at every iteration at the cost of one backward induction per stage;
    the two plain averages cost one backward induction per evaluated iteration (``averages=False``
    skips them: their columns are NaN).
    """
    T = result.iterations
    its = eval_iterations(T, eval_every, eval_log_points)
    sums = _JointSums(result)
    cert = certified_evaluations(game, result, sums.stage_mixtures())
    n = np.arange(1, T + 1)[:, None]
    mean_v = np.cumsum(cert.values, axis=0) / n
    mean_gain = np.cumsum(cert.best_response_values - cert.values, axis=0) / n
    mean_gap = np.cumsum(cert.gaps) / n[:, 0]
    idx = its - 1
    shape = (game.horizon, game.num_states, *game.num_actions)
    joint_gap = np.full(its.shape[0], np.nan)
    prod_gap = np.full(its.shape[0], np.nan)
    if averages:
        acc = sums.zeros()
        marg_sums = [np.zeros(p.shape[1:]) for p in result.trajectory]
        prev = 0
        for e, t in enumerate(its):  # running sums carried from one evaluated iteration to the next
            sums.add(prev, t, acc)
            for m, p in zip(marg_sums, result.trajectory):
                m += p[prev:t].sum(axis=0)
            prev = t
            joint_gap[e] = _evaluate_gap(game, acc.reshape(shape) / t)
            prod_gap[e] = _evaluate_gap(game, product_joint([m / t for m in marg_sums]))
    return CCECurves(its, mean_gap[idx], mean_gain[idx].max(axis=1), joint_gap, prod_gap, mean_v[idx], cert)


def _evaluate_gap(game, joint) -> float:
    V, B = _evaluate(game, lambda h: joint[h])
    s1 = game.initial_state
    return float((B[:, s1] - V[:, s1]).max())


# ----------------------------------------------------------------------------- Algorithm 3's policy as a file


@dataclass(frozen=True)
class CorrelatedPolicy:
    """Algorithm 3's policy in compact form: the trajectory (one (T, H, S, A_i) array per player) and the stage schedule.

    It has the attributes :func:`certified_evaluations` reads from an Algorithm 2 result.
    """

    trajectory: list
    stage_lengths: np.ndarray

    @property
    def iterations(self) -> int:
        return int(self.stage_lengths.sum())


def save_correlated_policy(path, result) -> None:
    """Write ``trajectory_i`` float64 (T, H, S, A_i) per player and ``stage_lengths`` int64 (tau_bar,)."""
    np.savez(os.fspath(path), stage_lengths=np.asarray(result.stage_lengths, dtype=np.int64),
             **{f"trajectory_{i}": np.asarray(p, dtype=np.float64) for i, p in enumerate(result.trajectory)})


def load_correlated_policy(path, game: MarkovGame) -> CorrelatedPolicy:
    """Load and validate a :func:`save_correlated_policy` file against ``game``."""
    path = os.fspath(path)
    N, H, S = game.num_players, game.horizon, game.num_states
    keys = {"stage_lengths", *(f"trajectory_{i}" for i in range(N))}
    with _open_npz(path, "correlated policy") as data:
        if set(data.files) != keys:
            raise GameError(f"{path}: a correlated policy for this {N}-player game holds exactly {sorted(keys)}, "
                            f"got {sorted(data.files)}")
        L = _read_array(data, "stage_lengths", path, MAX_DENSE_ENTRIES)
        traj = [_read_array(data, f"trajectory_{i}", path, MAX_DENSE_ENTRIES) for i in range(N)]
    if L.ndim != 1 or L.size == 0 or L.dtype.kind not in "iu" or np.any(L < 1):
        raise GameError(f"{path}: stage_lengths must be a non-empty 1-D array of integers >= 1")
    T = int(L.sum())
    out = []
    for i, (p, a) in enumerate(zip(traj, game.num_actions)):
        if p.shape != (T, H, S, a):
            raise GameError(f"{path}: trajectory_{i} must have shape (T, H, S, A_i) = {(T, H, S, a)} "
                            f"(T = sum of stage_lengths), got {p.shape}")
        p = _as_float_array(f"trajectory_{i}", p, 4)
        try:
            _check_distributions(f"trajectory_{i}", p, 1e-6)
        except GameError as exc:
            raise GameError(f"{path}: {exc}") from None
        out.append(np.ascontiguousarray(p))
    return CorrelatedPolicy(out, L.astype(np.int64))


def evaluate_correlated_policy(game: MarkovGame, policy: CorrelatedPolicy) -> dict:
    """The exact expected CCE-gap of Algorithm 3's output (module docstring), its values and the mixture bound."""
    cert = certified_evaluations(game, policy)
    gains = (cert.best_response_values - cert.values).mean(axis=0)
    return {"policy": "algorithm3", "cce_gap": float(cert.gaps.mean()), "cce_gap_mixture_bound": float(gains.max()),
            "values": cert.values.mean(axis=0).tolist(), "best_response_values": cert.best_response_values.mean(axis=0).tolist(),
            "iterations": policy.iterations, "num_stages": int(policy.stage_lengths.shape[0])}
