"""General-sum N-player Markov games for Section 5: random games, a Markov Shapley game, perturbed families.

Families follow :func:`solvers.generators.game_family`: a base game, and game k = base + reward
noise drawn from child k of ``SeedSequence(seed)``, so game k depends only on (seed, k), never on K.

* ``random-general-sum``: N players (2 <= N <= 4 in sweeps), S states, A actions per player; rewards
  r_{h,i}(s, a) i.i.d. U[0, 1], each P_h(. | s, a) ~ Dirichlet(1), s_1 = 0. The base game is drawn
  from its own child of the seed (spawn key 2**31, disjoint from the games' keys).
* ``markov-shapley``: Shapley's (1964) 3 x 3 game lifted to a two-state Markov game (below), where
  no-regret and fictitious-play dynamics cycle around the unique, fully mixed Nash equilibrium.
* Perturbation (the F.1 reading of NOTES.md, per player): one draw eps_i(s, a) ~ N(0, sigma^2) per
  (i, s, a), shared by all steps h, added to r_{h,i}(s, a); transitions unchanged.
"""

from __future__ import annotations

import numpy as np

from .games import GameError
from .generators import _check_positive_int, _check_seed, _check_sigma
from .nplayer import MarkovGame

__all__ = ["SHAPLEY_A", "SHAPLEY_B", "random_general_sum_game", "markov_shapley_game", "perturb_general_sum",
           "general_sum_family", "GENERAL_SUM_FAMILIES"]

#: Shapley's game (L. S. Shapley, "Some topics in two-person games", 1964, as in Fudenberg & Levine,
#: The Theory of Learning in Games, 1998, Sec. 2.8): row player's and column player's payoffs. Each
#: player gets 1 on one off-diagonal cycle; the diagonal pays nobody. The unique Nash equilibrium is
#: uniform play by both (value 1/3 each); fictitious play cycles through six pure profiles.
SHAPLEY_A = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
SHAPLEY_B = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

GENERAL_SUM_FAMILIES = ("random-general-sum", "markov-shapley")


def random_general_sum_game(horizon: int, num_states: int, num_actions, rng: np.random.Generator,
                            concentration: float = 1.0) -> MarkovGame:
    """Rewards i.i.d. U[0, 1] per (i, h, s, a), each P_h(. | s, a) ~ Dirichlet(concentration), s_1 = 0."""
    _check_positive_int("horizon", horizon)
    _check_positive_int("num_states", num_states)
    acts = tuple(_check_positive_int("actions", a) for a in num_actions)
    if len(acts) < 2:
        raise GameError(f"a general-sum game needs N >= 2 players, got {len(acts)}")
    if not concentration > 0:
        raise GameError(f"concentration must be > 0, got {concentration}")
    N, H, S = len(acts), horizon, num_states
    rewards = rng.random((N, H, S) + acts)
    transitions = rng.dirichlet(np.full(S, float(concentration)), size=(H, S) + acts)
    return MarkovGame(rewards, transitions, 0, "general_sum")


def markov_shapley_game(horizon: int, switch: float = 0.9) -> MarkovGame:
    """Shapley's game lifted to a Markov game: S = {s0, s1}, A_1 = A_2 = 3, s_1 = s0.

    At s0 the players get Shapley's payoffs (SHAPLEY_A, SHAPLEY_B); at s1 the roles are exchanged
    (player 1 gets SHAPLEY_B^T, player 2 SHAPLEY_A^T, i.e. the cycle runs the other way). The state
    changes with probability ``switch`` after a diagonal profile (a_1 = a_2, where nobody is paid) and
    with probability 1 - ``switch`` otherwise, at every step h.

    Uniform play by both players at every (h, s) is an exact fixed point of Algorithm 2 (every
    prediction is constant over actions), so from uniform initial policies nothing moves; a
    non-uniform start (a perturbed copy, sigma > 0, or a meta-initialisation) starts the cycling.
    Measured (``tests/test_general_sum.py``): H = 3, eta = 0.3, T = 3000 from (0.6, 0.3, 0.1) /
    (0.2, 0.2, 0.6): the iterates keep swinging between pure actions, the product of the average
    policies stays far from a Nash equilibrium, while the average joint play is an (even strict) CCE.
    """
    _check_positive_int("horizon", horizon)
    if not 0.0 <= switch <= 1.0:
        raise GameError(f"switch must lie in [0, 1], got {switch}")
    r = np.empty((2, 2, 3, 3))
    r[0, 0], r[1, 0] = SHAPLEY_A, SHAPLEY_B
    r[0, 1], r[1, 1] = SHAPLEY_B.T, SHAPLEY_A.T
    p = np.empty((2, 3, 3, 2))
    diag = np.eye(3, dtype=bool)
    for s in range(2):
        move = np.where(diag, switch, 1.0 - switch)
        p[s, :, :, 1 - s] = move
        p[s, :, :, s] = 1.0 - move
    rewards = np.broadcast_to(r[:, None], (2, horizon, 2, 3, 3)).copy()
    transitions = np.broadcast_to(p, (horizon, 2, 3, 3, 2)).copy()
    return MarkovGame(rewards, transitions, 0, "general_sum")


def perturb_general_sum(game: MarkovGame, sigma: float, rng: np.random.Generator) -> MarkovGame:
    """A copy of ``game`` with eps_i(s, a) ~ N(0, sigma^2) added to r_{h,i}(s, a) for every h (module docstring)."""
    sigma = _check_sigma(sigma)
    N, S = game.num_players, game.num_states
    eps = rng.normal(0.0, 1.0, size=(N, S) + game.num_actions) * sigma
    return game.with_rewards(game.rewards + eps[:, None])


def general_sum_family(family: str, count: int, sigma: float, horizon: int, seed: int, players: int = 3,
                       num_states: int = 2, num_actions=2) -> list[MarkovGame]:
    """K perturbed copies of a base game (module docstring). ``players``, ``num_states`` and
    ``num_actions`` (one A for every player, or (A_1, ..., A_N)) apply to ``random-general-sum``;
    ``markov-shapley`` is fixed (N = 2, S = 2, A = 3)."""
    if family not in GENERAL_SUM_FAMILIES:
        raise GameError(f"unknown general-sum family '{family}' (choose from {', '.join(GENERAL_SUM_FAMILIES)})")
    _check_positive_int("count", count)
    _check_sigma(sigma)
    _check_positive_int("horizon", horizon)
    root = np.random.SeedSequence(_check_seed(seed))
    if family == "markov-shapley":
        base = markov_shapley_game(horizon)
    else:
        if not 2 <= _check_positive_int("players", players) <= 16:
            raise GameError(f"players must lie in [2, 16], got {players}")
        base_seq = np.random.SeedSequence(root.entropy, spawn_key=(2**31,))
        acts = (num_actions,) * players if np.ndim(num_actions) == 0 else tuple(num_actions)
        if len(acts) != players:
            raise GameError(f"num_actions must give one A or N = {players} numbers, got {num_actions!r}")
        base = random_general_sum_game(horizon, num_states, acts, np.random.default_rng(base_seq))
    return [perturb_general_sum(base, sigma, np.random.default_rng(child)) for child in root.spawn(count)]
