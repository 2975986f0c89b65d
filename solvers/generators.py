"""Game generators: the paper's F.1 zero-sum game, perturbed task families, random zero-sum games.

Every generator takes a ``numpy.random.Generator``; families derive one child seed per game from a
``numpy.random.SeedSequence``, so game k of a family depends only on (seed, k), never on K or on
which process made it.
"""

from __future__ import annotations

import numpy as np

from .games import GameError, ZeroSumGame

__all__ = [
    "paper_zero_sum_game",
    "perturb_rewards",
    "random_zero_sum_game",
    "game_family",
    "FAMILIES",
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
    return game.with_rewards(game.rewards + eps[None])


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


FAMILIES = ("paper-zero-sum", "random-zero-sum")


def game_family(
    family: str,
    count: int,
    sigma: float,
    horizon: int,
    seed: int,
    num_states: int = 2,
    num_actions: tuple[int, int] = (2, 2),
) -> list[ZeroSumGame]:
    """K perturbed copies of a base game: the task family of a meta-learning run.

    ``paper-zero-sum``: the F.1 base game. ``random-zero-sum``: a random base game drawn from
    ``seed`` (its own child seed). Game k adds N(0, sigma^2) reward noise drawn from child seed k
    of ``SeedSequence(seed)``, so the first k games of a family do not depend on ``count``.
    """
    if family not in FAMILIES:
        raise GameError(f"unknown game family '{family}' (choose from {', '.join(FAMILIES)})")
    _check_positive_int("count", count)
    _check_sigma(sigma)
    _check_positive_int("horizon", horizon)
    root = np.random.SeedSequence(_check_seed(seed))
    if family == "paper-zero-sum":
        base = paper_zero_sum_game(horizon)
    else:
        base_seq = np.random.SeedSequence(root.entropy, spawn_key=(2**31,))  # disjoint from the games' keys
        base = random_zero_sum_game(horizon, num_states, num_actions, np.random.default_rng(base_seq))
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
