"""Markov potential games of Section 4 and Appendix F.2-F.3: base games, perturbations, seeded families.

Every generator takes a ``numpy.random.Generator``; :func:`potential_family` derives game k from
child k of ``SeedSequence(seed)`` (as :func:`solvers.generators.game_family`), so game k depends
only on (seed, k), never on K or on which process made it. A random base game comes from a child
seed disjoint from the games' ones.

Families (``potential_family`` / ``metasweep game make --family``):

``paper-potential``
    Appendix F.2: N = 2, S = {s0, s1}, two actions each, shared rewards
    s0: [[0.1, 0.5], [0.5, 1]], s1: [[0.8, 0.2], [0.2, 0.8]], the F.1 transitions, s_1 = s0.
    Game k adds one N(0, sigma^2) draw per (s, a, b), shared by all h and by both players (the
    game stays identical-interest; NOTES.md reading of "N(0, 0.1)": sigma is the std).
``random-identical``
    Identical interest: shared rewards U[0, 1] per (h, s, a), P_h(. | s, a) ~ Dirichlet(1); game k
    adds N(0, sigma^2) per (s, a) (shared by h and players).
``random-potential``
    r_i = phi + u_i with a potential phi ~ U[0, 1] per (h, s, a) and per-player dummy terms
    ``u_i(h, s, a_{-i}) ~ dummy_scale * U[0, 1]`` that do not depend on a_i; transitions
    P_h(. | s) ~ Dirichlet(1) do not depend on the actions, which makes phi an exact Markov
    potential (with action-dependent transitions, dummy terms that depend on the state would let
    player i influence them, and the game would in general not be an MPG). Game k adds N(0, sigma^2)
    per (s, a) to phi (and so to every r_i). The file declares ``potential`` = phi.
``random-sparse-identical``
    Identical interest with sparse transitions (issue 9, large state spaces): shared rewards
    U[0, 1] per (h, s, a); every P_h(. | s, a) puts Dirichlet(1) weights on ``successors`` states
    drawn uniformly with replacement (as :func:`solvers.generators.random_sparse_zero_sum_game`);
    finite horizon only. Game k adds N(0, sigma^2) per (s, a), as ``random-identical``.
``lq-tracking``
    Appendix F.3 (:func:`lq_tracking_game`); game k perturbs each player's drift magnitude,
    d_{k,i} = 1 + N(0, sigma^2) (the paper's sigma = 0.5), rewards unchanged.

A discounted variant (Appendix C) of every family: ``gamma`` in [0, 1) with H = 1 (stationary) and
``rho`` = "initial" (all mass on s_1) or "uniform".
"""

from __future__ import annotations

import math

import numpy as np

from .games import GameError
from .generators import _check_positive_int, _check_seed, _check_sigma, normalise_rows
from .nplayer import MarkovGame
from .product_games import ProductMarkovGame

__all__ = [
    "F2_REWARDS",
    "POTENTIAL_FAMILIES",
    "paper_potential_game",
    "random_identical_game",
    "random_potential_game",
    "random_sparse_identical_game",
    "lq_tracking_game",
    "lq_potential",
    "lq_noise_distribution",
    "perturb_potential_rewards",
    "potential_family",
]

#: Appendix F.2, Table 2: shared rewards per state, rows a0, a1, columns b0, b1.
F2_REWARDS = np.array(
    [
        [[0.1, 0.5], [0.5, 1.0]],  # s0
        [[0.8, 0.2], [0.2, 0.8]],  # s1
    ]
)

POTENTIAL_FAMILIES = ("paper-potential", "random-identical", "random-potential", "lq-tracking", "random-sparse-identical")
RHO_CHOICES = ("initial", "uniform")


def _rho(rho: str, S: int, s1: int, gamma) -> np.ndarray | None:
    if gamma is None:
        return None
    if rho not in RHO_CHOICES:
        raise GameError(f"rho must be one of {', '.join(RHO_CHOICES)}, got {rho!r}")
    if rho == "uniform":
        return np.full(S, 1.0 / S)
    e = np.zeros(S)
    e[s1] = 1.0
    return e


def _check_discount(horizon: int, gamma) -> None:
    if gamma is not None and horizon != 1:
        raise GameError(f"a discounted game (gamma = {gamma}) is stationary: use horizon 1, got {horizon}")


def paper_potential_game(horizon: int = 10, gamma: float | None = None, rho: str = "initial") -> MarkovGame:
    """The base game of Appendix F.2 (module docstring); identical interest, kind "potential"."""
    _check_positive_int("horizon", horizon)
    _check_discount(horizon, gamma)
    S, A = 2, 2
    P = np.empty((S, A, A, S))
    for s in range(S):
        for a in range(A):
            for b in range(A):
                stay = 0.9 if a == b else 0.1
                P[s, a, b, s] = stay
                P[s, a, b, 1 - s] = 1.0 - stay
    r = np.broadcast_to(F2_REWARDS, (horizon, S, A, A))
    return MarkovGame(np.stack([r, r]), np.broadcast_to(P, (horizon, S, A, A, S)), 0, "potential", gamma,
                      _rho(rho, S, 0, gamma))


def _check_actions(num_actions) -> tuple[int, ...]:
    actions = tuple(int(_check_positive_int("actions", a)) for a in num_actions)
    if len(actions) < 2:
        raise GameError(f"a Markov potential game needs N >= 2 players (one action count each), got {list(actions)}")
    return actions


def random_identical_game(horizon: int, num_states: int, num_actions, rng: np.random.Generator,
                          gamma: float | None = None, rho: str = "initial") -> MarkovGame:
    """Identical interest: one reward U[0, 1] per (h, s, a) for all players, P_h(. | s, a) ~ Dirichlet(1), s_1 = 0."""
    _check_positive_int("horizon", horizon)
    _check_positive_int("num_states", num_states)
    _check_discount(horizon, gamma)
    actions = _check_actions(num_actions)
    H, S, N = horizon, num_states, len(actions)
    r = rng.random((H, S, *actions))
    P = rng.dirichlet(np.ones(S), size=(H, S, *actions))
    return MarkovGame(np.broadcast_to(r, (N, *r.shape)), P, 0, "potential", gamma, _rho(rho, S, 0, gamma))


def random_sparse_identical_game(horizon: int, num_states: int, num_actions, successors: int,
                                 rng: np.random.Generator) -> MarkovGame:
    """Identical interest with sparse transitions (module docstring), s_1 = 0; arrays filled step by step in place."""
    for name, v in (("horizon", horizon), ("num_states", num_states), ("successors", successors)):
        _check_positive_int(name, v)
    actions = _check_actions(num_actions)
    H, S, N, k = horizon, num_states, len(actions), successors
    if S > np.iinfo(np.int32).max:
        raise GameError(f"num_states must fit int32 (< 2^31), got {S}")
    r = np.empty((H, S, *actions))
    nxt = np.empty((H, S, *actions, k), dtype=np.int32)
    prob = np.empty((H, S, *actions, k))
    for h in range(H):
        rng.random(out=r[h])
        nxt[h] = rng.integers(0, S, size=(S, *actions, k), dtype=np.int32)
        rng.standard_exponential(out=prob[h])  # Dirichlet(1) = normalised i.i.d. Exp(1)
        normalise_rows(prob[h])
    for arr in (nxt, prob):  # handed over without a copy
        arr.flags.writeable = False
    return MarkovGame(np.broadcast_to(r, (N, *r.shape)), None, 0, "potential", transition_next=nxt, transition_prob=prob)


def random_potential_game(horizon: int, num_states: int, num_actions, rng: np.random.Generator, dummy_scale: float = 1.0,
                          gamma: float | None = None, rho: str = "initial") -> MarkovGame:
    """r_i = phi + u_i(h, s, a_{-i}) with action-independent transitions (module docstring); declares phi."""
    _check_positive_int("horizon", horizon)
    _check_positive_int("num_states", num_states)
    _check_discount(horizon, gamma)
    if not (math.isfinite(dummy_scale) and dummy_scale >= 0):
        raise GameError(f"dummy_scale must be a finite number >= 0, got {dummy_scale!r}")
    actions = _check_actions(num_actions)
    H, S, N = horizon, num_states, len(actions)
    phi = rng.random((H, S, *actions))
    rewards = np.empty((N, H, S, *actions))
    for i in range(N):
        shape = list(phi.shape)
        shape[2 + i] = 1  # u_i does not depend on a_i
        rewards[i] = phi + dummy_scale * rng.random(shape)
    P_s = rng.dirichlet(np.ones(S), size=(H, S))
    P = np.broadcast_to(P_s.reshape(H, S, *([1] * N), S), (H, S, *actions, S))
    return MarkovGame(rewards, P, 0, "potential", gamma, _rho(rho, S, 0, gamma), phi)


def perturb_potential_rewards(game, sigma: float, rng: np.random.Generator):
    """Add one N(0, sigma^2) draw per (s, a), shared by all steps h and all players, to every r_i (and to
    the declared potential): identical-interest games stay identical-interest, potentials stay potentials."""
    sigma = _check_sigma(sigma)
    eps = rng.normal(0.0, 1.0, size=game.rewards.shape[2:]) * sigma
    phi = None if game.potential is None else game.potential + eps[None]
    return game.with_rewards(game.rewards + eps[None, None], phi)


# ----------------------------------------------------------------------------- LQ tracking (F.3)


def lq_noise_distribution(width: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The discretised standard normal on {-width, ..., width}: values and P(e) proportional to exp(-e^2 / 2)."""
    e = np.arange(-width, width + 1, dtype=np.float64)
    w = np.exp(-0.5 * e**2)
    return e, w / w.sum()


def lq_potential(players: int, positions: np.ndarray, moves: np.ndarray, dt: float, kappa: float) -> np.ndarray:
    """phi(s, a) = (-1/2 sum_j a_j^2 - (kappa/2) ((N-1)/N^2) sum_{j<k} (s_j - s_k)^2) dt, shape (S, A, ..., A).

    Derivation: with m the mean position, (m - s_i)^2 = ((N-1)/N^2) sum_{j != i} (s_i - s_j)^2 + g(s_{-i}),
    so r_i - phi depends only on (s_{-i}, a_{-i}): phi is a stage potential whose dummy terms do not
    depend on player i's own position or action (unique up to a constant with that property).
    """
    N = players
    grids = np.meshgrid(*([positions] * N), indexing="ij")
    pair = sum((grids[j] - grids[k]) ** 2 for j in range(N) for k in range(j + 1, N))
    state_part = -(kappa / 2.0) * ((N - 1) / N**2) * pair.reshape(-1)
    agrids = np.meshgrid(*([moves] * N), indexing="ij")
    action_part = -0.5 * sum(g**2 for g in agrids)
    return (state_part.reshape(-1, *([1] * N)) + action_part[None]) * dt


def lq_tracking_game(horizon: int = 10, drifts=None, players: int = 4, width: int = 2, dt: float = 1.0,
                     sigma: float = 1.0, kappa: float = 0.5, gamma: float | None = None,
                     rho: str = "initial") -> ProductMarkovGame:
    """The 1D linear-quadratic tracking game of Appendix F.3 as a product-state game.

    Positions {-width, ..., width} per player (L = 5, S = 625 for N = 4), actions {-1, 0, 1}
    (81 joint actions). Player i moves by

        x = s_i + d_i a_i dt + sigma sqrt(dt) eps,   eps in {-2, ..., 2} discretised N(0, 1),

    d_i the drift magnitude (1 in the base game). Reading: x off the grid (non-integer d_i) is split
    between its two neighbouring positions by linear interpolation (the mean is kept), then clipped
    to [-width, width]. Rewards (stationary, no terminal cost):

        r_i(s, a) = (-1/2 a_i^2 - (kappa/2) (m - s_i)^2) dt,   m = (1/N) sum_j s_j,

    with dt = 1, sigma = 1, kappa = 0.5 as in the paper. Reading: all players start at position 0.
    The file declares the stage potential of :func:`lq_potential`; its dummy terms depend on the
    others' positions, which react to player i's position through their policies, so the Markov game
    is not an exact MPG (:func:`solvers.nplayer.potential_certificate` says ``exact=False``).
    """
    _check_positive_int("horizon", horizon)
    _check_positive_int("players", players)
    _check_discount(horizon, gamma)
    if players < 2:
        raise GameError(f"lq-tracking needs >= 2 players, got {players}")
    N, H = players, horizon
    d = np.ones(N) if drifts is None else np.asarray(drifts, dtype=np.float64)
    if d.shape != (N,) or not np.all(np.isfinite(d)):
        raise GameError(f"drifts must be {N} finite numbers, got {drifts!r}")
    positions = np.arange(-width, width + 1, dtype=np.float64)
    moves = np.array([-1.0, 0.0, 1.0])
    L, A = positions.size, moves.size
    eps, w = lq_noise_distribution(2)
    local = np.zeros((N, L, A, L))
    for i in range(N):
        for si, s in enumerate(positions):
            for ai, a in enumerate(moves):
                for e, pe in zip(eps, w):
                    x = s + d[i] * a * dt + sigma * math.sqrt(dt) * e
                    lo = math.floor(x)
                    frac = x - lo
                    for y, py in ((lo, 1.0 - frac), (lo + 1, frac)):
                        if py > 0.0:
                            local[i, si, ai, int(np.clip(y, -width, width) + width)] += pe * py
    local = np.broadcast_to(local[:, None], (N, H, L, A, L))
    grids = np.meshgrid(*([positions] * N), indexing="ij")
    mean = sum(grids) / N
    rewards = np.empty((N, H, L**N, *([A] * N)))
    for i in range(N):
        state_part = (-(kappa / 2.0) * (mean - grids[i]) ** 2).reshape(-1, *([1] * N))
        shape = [1] * N
        shape[i] = A
        action_part = (-0.5 * moves**2).reshape(shape)
        rewards[i] = ((state_part + action_part[None]) * dt)[None]
    s1 = int(np.ravel_multi_index((width,) * N, (L,) * N))
    phi = np.broadcast_to(lq_potential(N, positions, moves, dt, kappa), rewards.shape[1:])
    return ProductMarkovGame(rewards, local, s1, "potential", gamma, _rho(rho, L**N, s1, gamma), phi)


# ----------------------------------------------------------------------------- families


def potential_family(family: str, count: int, sigma: float, horizon: int, seed: int, *, num_states: int = 2,
                     num_actions=(2, 2), dummy_scale: float = 1.0, gamma: float | None = None, rho: str = "initial",
                     successors: int = 4):
    """K games of a family (module docstring): game k from child k of ``SeedSequence(seed)``.

    Returns a list of :class:`MarkovGame` (``lq-tracking``: :class:`ProductMarkovGame`). ``num_states``,
    ``num_actions`` (one count per player) and ``dummy_scale`` apply to the random families only,
    ``successors`` to ``random-sparse-identical`` (whose K games share one set of transitions).
    """
    if family not in POTENTIAL_FAMILIES:
        raise GameError(f"unknown game family '{family}' (choose from {', '.join(POTENTIAL_FAMILIES)})")
    _check_positive_int("count", count)
    sigma = _check_sigma(sigma)
    _check_positive_int("horizon", horizon)
    root = np.random.SeedSequence(_check_seed(seed))
    children = root.spawn(count)
    if family == "lq-tracking":
        games = []
        for child in children:
            drifts = 1.0 + sigma * np.random.default_rng(child).normal(0.0, 1.0, size=4)
            games.append(lq_tracking_game(horizon, drifts, gamma=gamma, rho=rho))
        return games
    if family == "paper-potential":
        base = paper_potential_game(horizon, gamma, rho)
    else:
        base_rng = np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=(2**31,)))
        if family == "random-identical":
            base = random_identical_game(horizon, num_states, num_actions, base_rng, gamma, rho)
        elif family == "random-sparse-identical":
            if gamma is not None:
                raise GameError("random-sparse-identical is a finite-horizon family (gamma must be null)")
            base = random_sparse_identical_game(horizon, num_states, num_actions, successors, base_rng)
        else:
            base = random_potential_game(horizon, num_states, num_actions, base_rng, dummy_scale, gamma, rho)
    return [perturb_potential_rewards(base, sigma, np.random.default_rng(child)) for child in children]
