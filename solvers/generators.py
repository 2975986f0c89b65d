"""Game generators: the paper's F.1 zero-sum game, perturbed task families, random zero-sum games.

Every generator takes a ``numpy.random.Generator``; families derive one child seed per game from a
``numpy.random.SeedSequence``, so game k of a family depends only on (seed, k), never on K or on
which process made it.
"""

from __future__ import annotations

import math

import numpy as np

from .games import GameError, ZeroSumGame

__all__ = [
    "paper_zero_sum_game",
    "perturb_rewards",
    "random_zero_sum_game",
    "random_sparse_zero_sum_game",
    "poker_standin_game",
    "game_family",
    "FAMILIES",
    "SPARSE_FAMILIES",
]

#: Appendix F.1: max-player rewards per state, rows a0, a1, columns b0, b1.
F1_REWARDS = np.array(
    [
        [[0.5, 0.0], [-1.0, 0.5]],  # s0
        [[0.5, 0.0], [0.2, 1.0]],  # s1
    ]
)


def paper_zero_sum_game(horizon: int = 10) -> ZeroSumGame:
    """The base game of Appendix F.1: S = {s0, s1}, A = {a0, a1}, B = {b0, b1}, s_1 = s0.

    At every step h, matching actions (a0, b0) or (a1, b1) keep the state with probability 0.9
    and switch it with probability 0.1; opposite actions keep it with 0.1 and switch with 0.9.
    """
    _check_positive_int("horizon", horizon)
    S, A, B = 2, 2, 2
    P = np.empty((S, A, B, S))
    for s in range(S):
        for a in range(A):
            for b in range(B):
                stay = 0.9 if a == b else 0.1
                P[s, a, b, s] = stay
                P[s, a, b, 1 - s] = 1.0 - stay
    rewards = np.broadcast_to(F1_REWARDS, (horizon, S, A, B)).copy()
    transitions = np.broadcast_to(P, (horizon, S, A, B, S)).copy()
    return ZeroSumGame(rewards, transitions, 0)


def perturb_rewards(game: ZeroSumGame, sigma: float, rng: np.random.Generator) -> ZeroSumGame:
    """A perturbed copy of ``game`` (Appendix F.1, NOTES.md reading).

    One draw eps(s, a, b) ~ N(0, sigma^2) per (s, a, b), shared by all steps h, is added to every
    reward entry; sigma is the standard deviation. Transitions are unchanged.
    """
    sigma = _check_sigma(sigma)
    H, S, A, B = game.shape
    eps = rng.normal(0.0, 1.0, size=(S, A, B)) * sigma
    rewards = game.rewards + eps[None]
    rewards.flags.writeable = False  # handed over to the new game without a second copy
    return game.with_rewards(rewards)


def random_zero_sum_game(
    horizon: int, num_states: int, num_actions: tuple[int, int], rng: np.random.Generator, concentration: float = 1.0
) -> ZeroSumGame:
    """A random zero-sum game: rewards i.i.d. U[0, 1], each P_h(. | s, a, b) ~ Dirichlet(concentration), s_1 = 0."""
    for name, v in (("horizon", horizon), ("num_states", num_states), ("A", num_actions[0]), ("B", num_actions[1])):
        _check_positive_int(name, v)
    if not concentration > 0:
        raise GameError(f"concentration must be > 0, got {concentration}")
    H, S, (A, B) = horizon, num_states, num_actions
    rewards = rng.random((H, S, A, B))
    transitions = rng.dirichlet(np.full(S, float(concentration)), size=(H, S, A, B))
    return ZeroSumGame(rewards, transitions, 0)


def random_sparse_zero_sum_game(
    horizon: int, num_states: int, num_actions: tuple[int, int], successors: int, rng: np.random.Generator
) -> ZeroSumGame:
    """A large random zero-sum game with sparse transitions, s_1 = 0.

    Rewards i.i.d. U[0, 1]; every P_h(. | s, a, b) puts Dirichlet(1, ..., 1) weights on ``successors``
    states drawn uniformly with replacement (a repeated successor adds up). Arrays are filled step by
    step in place, so building the game needs about its own size plus (S, A, B) temporaries: S = 10^6,
    H = 5, A = B = 2, k = 4 is 1.1 GB.
    """
    for name, v in (("horizon", horizon), ("num_states", num_states), ("A", num_actions[0]), ("B", num_actions[1]),
                    ("successors", successors)):
        _check_positive_int(name, v)
    H, S, (A, B), k = horizon, num_states, num_actions, successors
    if S > np.iinfo(np.int32).max:
        raise GameError(f"num_states must fit int32 (< 2^31), got {S}")
    rewards = np.empty((H, S, A, B))
    nxt = np.empty((H, S, A, B, k), dtype=np.int32)
    prob = np.empty((H, S, A, B, k))
    for h in range(H):
        rng.random(out=rewards[h])
        nxt[h] = rng.integers(0, S, size=(S, A, B, k), dtype=np.int32)
        rng.standard_exponential(out=prob[h])  # Dirichlet(1) = normalised i.i.d. Exp(1)
        normalise_rows(prob[h])
    return _owned_sparse_game(rewards, nxt, prob, 0)


def normalise_rows(p: np.ndarray, rows_per_block: int = 65536) -> None:
    """p /= p.sum(-1) in place, in blocks of states: the row sums' temporary stays small (one (S, A, B)
    temporary is 32 MB at S = 10^6, A = B = 2, and the allocator kept it after the generator returned).
    The same values as one whole-array division (each row is summed on its own either way)."""
    for s0 in range(0, p.shape[0], rows_per_block):
        block = p[s0:s0 + rows_per_block]
        block /= block.sum(axis=-1, keepdims=True)


def poker_standin_game(
    horizon: int, num_states: int, num_actions: tuple[int, int] = (2, 2), successors: int = 4, pot_levels: int = 8
) -> ZeroSumGame:
    """A structured large zero-sum game, a *stand-in* for the paper's Poker river endgame (Appendix F.3).

    This is not the Brains-vs-AI endgame data (not available here in usable form): it is a
    deterministic betting-ladder game with the same kind of scale and sparsity. A state is
    (hand bucket c, pot level p), c in [0, S / pot_levels), p in [0, pot_levels), s = c * pot_levels + p,
    s_1 = (middle bucket, pot 0). The max-player's equity is e(c) = c / (n_buckets - 1). At step h the
    max-player bets a in {0, ..., A-1}, the min-player raises b in {0, ..., B-1}; the pot rises to
    p' = min(p + a + b, pot_levels - 1), and a "card" moves the bucket by an offset
    o in {-(k//2), ..., k - 1 - k//2} with binomial probabilities C(k-1, j) / 2^(k-1) (buckets clipped
    to the range, so a clipped row repeats a successor). The reward is
    r_h(s, a, b) = 1/2 + (e(c) - 1/2) (1 + p + a + b) / (pot_levels + A + B) * (h + 1) / H, in [0, 1]:
    betting pays when the hand is strong, pots grow towards the last round.
    """
    for name, v in (("horizon", horizon), ("num_states", num_states), ("A", num_actions[0]), ("B", num_actions[1]),
                    ("successors", successors), ("pot_levels", pot_levels)):
        _check_positive_int(name, v)
    H, S, (A, B), k, P = horizon, num_states, num_actions, successors, pot_levels
    if S % P or S // P < 2:
        raise GameError(f"num_states must be a multiple of pot_levels={P} with at least 2 buckets, got {S}")
    n_buckets = S // P
    c = np.arange(S) // P
    p = np.arange(S) % P
    equity = c / (n_buckets - 1)
    offsets = np.arange(k) - k // 2
    weights = np.array([math.comb(k - 1, j) for j in range(k)], dtype=np.float64) / 2.0 ** (k - 1)
    ab = np.arange(A)[:, None] + np.arange(B)[None, :]  # (A, B)
    rewards = np.empty((H, S, A, B))
    nxt = np.empty((H, S, A, B, k), dtype=np.int32)
    prob = np.empty((H, S, A, B, k))
    next_bucket = np.clip(c[:, None] + offsets[None, :], 0, n_buckets - 1)  # (S, k)
    for h in range(H):
        size = (1.0 + p[:, None, None] + ab[None]) / (P + A + B) * (h + 1) / H
        rewards[h] = 0.5 + (equity - 0.5)[:, None, None] * size
        next_pot = np.minimum(p[:, None, None] + ab[None], P - 1)  # (S, A, B)
        nxt[h] = next_bucket[:, None, None, :] * P + next_pot[..., None]
        prob[h] = weights
    return _owned_sparse_game(rewards, nxt, prob, (n_buckets // 2) * P)


def _owned_sparse_game(rewards, nxt, prob, s1) -> ZeroSumGame:
    """Hand freshly built arrays to a game without a copy (read-only arrays are shared, not duplicated)."""
    for arr in (rewards, nxt, prob):
        arr.flags.writeable = False
    return ZeroSumGame(rewards, None, s1, nxt, prob)


FAMILIES = ("paper-zero-sum", "random-zero-sum")
#: Families of large games with sparse transitions (issue 9), also accepted by :func:`game_family`.
SPARSE_FAMILIES = ("random-sparse", "poker-standin")


def game_family(
    family: str,
    count: int,
    sigma: float,
    horizon: int,
    seed: int,
    num_states: int = 2,
    num_actions: tuple[int, int] = (2, 2),
    successors: int = 4,
    pot_levels: int = 8,
) -> list[ZeroSumGame]:
    """K perturbed copies of a base game: the task family of a meta-learning run.

    ``paper-zero-sum``: the F.1 base game. ``random-zero-sum``: a random base game drawn from
    ``seed`` (its own child seed). ``random-sparse``: a random sparse game with ``successors``
    successors per row (:func:`random_sparse_zero_sum_game`, drawn from the same child seed);
    ``poker-standin``: :func:`poker_standin_game` with ``pot_levels`` (not the paper's Poker data). The K games share
    one transition kernel (sparse games: the same arrays, not copies). Game k adds N(0, sigma^2) reward noise drawn from child seed k
    of ``SeedSequence(seed)``, so the first k games of a family do not depend on ``count``.
    """
    if family not in FAMILIES + SPARSE_FAMILIES:
        raise GameError(f"unknown game family '{family}' (choose from {', '.join(FAMILIES + SPARSE_FAMILIES)})")
    _check_positive_int("count", count)
    _check_sigma(sigma)
    _check_positive_int("horizon", horizon)
    root = np.random.SeedSequence(_check_seed(seed))
    base_seq = np.random.SeedSequence(root.entropy, spawn_key=(2**31,))  # disjoint from the games' keys
    if family == "paper-zero-sum":
        base = paper_zero_sum_game(horizon)
    elif family == "random-zero-sum":
        base = random_zero_sum_game(horizon, num_states, num_actions, np.random.default_rng(base_seq))
    elif family == "random-sparse":
        base = random_sparse_zero_sum_game(horizon, num_states, num_actions, successors, np.random.default_rng(base_seq))
    else:
        base = poker_standin_game(horizon, num_states, num_actions, successors, pot_levels)
    children = root.spawn(count)
    return [perturb_rewards(base, sigma, np.random.default_rng(child)) for child in children]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GameError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_sigma(sigma) -> float:
    if not np.isfinite(sigma) or sigma < 0:
        raise GameError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GameError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
