"""N-player Markov games (Sections 4 and 5 of the paper): container, validation, file I/O.

One type serves Markov potential games (Section 4) and general-sum games (Section 5). Player i's
reward is ``r_{h,i}(s, a_1, ..., a_N)``; the transition kernel ``P_h(s' | s, a_1, ..., a_N)`` is
shared. A finite-horizon game has ``gamma = None`` and a fixed initial state. A discounted
infinite-horizon game (Section 4, Eq. 6-7) is stationary: it is stored with ``H = 1``, a discount
``gamma`` in [0, 1) and an initial distribution ``rho`` over states.

File format (``.npz``, always loaded with ``allow_pickle=False``):

=================  ================================  ===============================================
key                dtype / shape                     meaning
=================  ================================  ===============================================
``kind``           str                               ``"potential"`` or ``"general_sum"``
``rewards``        float64 (N, H, S, A_1, ..., A_N)  r_{h,i}(s, a): player i's reward
``transitions``    float64 (H, S, A_1, ..., A_N, S)  P_h(s' | s, a), rows sum to 1 (dense form), or
``transition_next`` int32 (H, S, A_1, ..., A_N, k)   sparse form (issue 9): k successor states per
``transition_prob`` float64 (same shape)             (h, s, a) and their probabilities, padded with
                                                     probability 0 (as for zero-sum games,
                                                     :mod:`solvers.games`)
``initial_state``  int scalar                        s_1 in [0, S) (finite horizon)
``gamma``          float scalar, optional            discount in [0, 1): a discounted game (H = 1)
``rho``            float64 (S,), optional            initial distribution of a discounted game
                                                     (default: all mass on ``initial_state``)
``potential``      float64 (H, S, A_1, ..., A_N),    a declared stage potential phi_h(s, a) (kind
                   optional                          "potential"): r_i - phi must not depend on a_i
=================  ================================  ===============================================

``kind`` is a declaration: a "potential" file whose rewards are not a potential game is accepted
here; algorithms that rely on a potential check it themselves with :func:`stage_potential` /
:func:`potential_certificate` (Monderer-Shapley: a stage game is an exact potential game iff
``r_i - phi`` is independent of ``a_i`` for every player i). Zero-sum files (``kind
"zero_sum"``, :mod:`solvers.games`) load through :func:`load_any_game`, and
:meth:`MarkovGame.from_zero_sum` lifts a zero-sum game to this type (rewards r and -r).

Policies are ``.npz`` files with one array ``policy_i`` float64 (H, S, A_i) per player i = 0..N-1,
each row a distribution (the same keys as zero-sum policies for N = 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .games import (
    MAX_DENSE_ENTRIES,
    MAX_SPARSE_ENTRIES,
    PROB_ATOL,
    GameError,
    ZeroSumGame,
    _as_float_array,
    _check_distributions,
    _open_npz,
    _read_array,
    _sparse_transitions,
    check_initial_state,
    load_game,
    read_kind,
)

__all__ = [
    "KINDS",
    "MarkovGame",
    "load_markov_game",
    "load_any_game",
    "save_markov_game",
    "validate_policies",
    "load_policies",
    "save_policies",
    "uniform_policies",
    "stage_potential",
    "PotentialCertificate",
    "potential_certificate",
]

KINDS = ("potential", "general_sum")
#: Largest number of players accepted (joint actions grow as prod A_i).
MAX_PLAYERS = 16


def check_discount(gamma, rho, H: int, S: int, s1: int) -> tuple[float | None, np.ndarray | None]:
    """(gamma, rho) of a game: None for a finite-horizon game; for a discounted one a float in [0, 1),
    H = 1, and rho a distribution over the S states (default: all mass on ``s1``), read-only."""
    if gamma is None:
        if rho is not None:
            raise GameError("rho (an initial distribution) is only meaningful for a discounted game: set gamma too")
        return None, None
    if isinstance(gamma, np.ndarray) and gamma.ndim == 0:
        gamma = gamma.item()
    if isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, (int, float, np.floating, np.integer)):
        raise GameError(f"gamma must be a number in [0, 1), got {gamma!r}")
    gamma = float(gamma)
    if not 0.0 <= gamma < 1.0:
        raise GameError(f"gamma must lie in [0, 1) (a discounted game), got {gamma}")
    if H != 1:
        raise GameError(f"a discounted game (gamma set) is stationary: rewards and transitions need H = 1, got H = {H}")
    if rho is None:
        rho = np.zeros(S)
        rho[s1] = 1.0
    rho_arr = np.asarray(rho)
    if rho_arr.shape != (S,):
        raise GameError(f"rho must have shape (S,) = {(S,)}, got {rho_arr.shape}")
    rho = _as_float_array("rho", rho_arr, 1)
    _check_distributions("rho", rho, PROB_ATOL)
    rho.flags.writeable = False
    return gamma, rho


def check_potential(phi, shape: tuple) -> np.ndarray | None:
    """A declared stage potential Phi_h(s, a) of shape (H, S, A_1, ..., A_N), read-only, or None."""
    if phi is None:
        return None
    if np.shape(phi) != tuple(shape):
        raise GameError(f"potential must have shape (H, S, A_1, ..., A_N) = {tuple(shape)}, got {np.shape(phi)}")
    phi = _as_float_array("potential", phi, len(shape))
    phi.flags.writeable = False
    return phi


class NPlayerShape:
    """Dimensions shared by :class:`MarkovGame` and :class:`solvers.product_games.ProductMarkovGame`
    (both hold ``rewards`` (N, H, S, A_1, ..., A_N), ``initial_state``, ``gamma``, ``rho``)."""

    @property
    def num_players(self) -> int:
        return self.rewards.shape[0]

    @property
    def horizon(self) -> int:
        return self.rewards.shape[1]

    @property
    def num_states(self) -> int:
        return self.rewards.shape[2]

    @property
    def num_actions(self) -> tuple[int, ...]:
        """(A_1, ..., A_N)."""
        return tuple(self.rewards.shape[3:])

    @property
    def discounted(self) -> bool:
        return self.gamma is not None

    @property
    def initial_distribution(self) -> np.ndarray:
        """rho for a discounted game, the one-hot vector of ``initial_state`` otherwise."""
        if self.rho is not None:
            return self.rho
        e = np.zeros(self.num_states)
        e[self.initial_state] = 1.0
        return e

    def is_identical_interest(self, atol: float = 1e-12) -> bool:
        """True if every player receives the same reward (a potential game with Phi = r_1)."""
        return bool(np.all(np.abs(self.rewards - self.rewards[:1]) <= atol))


@dataclass(frozen=True)
class MarkovGame(NPlayerShape):
    """An N-player Markov game (module docstring for shapes and the discounted variant).

    Parameters
    ----------
    rewards : float64 (N, H, S, A_1, ..., A_N)
    transitions : float64 (H, S, A_1, ..., A_N, S), or None with the sparse pair
    initial_state : int
    kind : "potential" or "general_sum"
    gamma : None (finite horizon) or a discount in [0, 1) (then H must be 1)
    rho : None or float64 (S,), the initial distribution of a discounted game
    potential : None or float64 (H, S, A_1, ..., A_N), a declared stage potential phi (not checked
        here: :func:`potential_certificate` checks it)
    transition_next : int32 (H, S, A_1, ..., A_N, k), optional; transition_prob : float64 (same shape),
        optional: the sparse form of the transitions (give these instead of ``transitions``)

    Read-only, C-contiguous inputs of the stored dtype are shared without a copy (as in :class:`ZeroSumGame`).
    """

    rewards: np.ndarray
    transitions: np.ndarray | None
    initial_state: int = 0
    kind: str = "general_sum"
    gamma: float | None = None
    rho: np.ndarray | None = None
    potential: np.ndarray | None = None
    transition_next: np.ndarray | None = None
    transition_prob: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise GameError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        r_in = np.asarray(self.rewards)
        if r_in.ndim < 5:
            raise GameError(f"rewards must have shape (N, H, S, A_1, ..., A_N) with N >= 2, got shape {r_in.shape}")
        N = r_in.shape[0]
        if not 2 <= N <= MAX_PLAYERS or r_in.ndim != N + 3:
            raise GameError(
                f"rewards of shape {r_in.shape}: the first axis is N = {N} players, so rewards must have "
                f"N + 3 = {N + 3} dimensions (N, H, S, A_1, ..., A_N) with 2 <= N <= {MAX_PLAYERS}"
            )
        r = _as_float_array("rewards", r_in, N + 3)
        H, S = r.shape[1], r.shape[2]
        joint = r.shape[3:]
        sparse = self.transition_next is not None or self.transition_prob is not None
        if sparse:
            if self.transitions is not None:
                raise GameError("give either dense transitions or the sparse transition_next/transition_prob, not both")
            nxt, p = _sparse_transitions(self.transition_next, self.transition_prob, (H, S, *joint),
                                         "(H, S, A_1, ..., A_N, k)")
            nxt.flags.writeable = False
            object.__setattr__(self, "transition_next", nxt)
            object.__setattr__(self, "transition_prob", p)
        else:
            if self.transitions is None:
                raise GameError("a game needs transitions (H, S, A_1, ..., A_N, S) or the sparse pair transition_next, "
                                "transition_prob")
            p = np.asarray(self.transitions)
            if p.shape != (H, S, *joint, S):
                raise GameError(f"transitions must have shape (H, S, A_1, ..., A_N, S) = {(H, S, *joint, S)} to match "
                                f"rewards, got {p.shape}")
            p = _as_float_array("transitions", p, N + 3)
            _check_distributions("transitions", p, PROB_ATOL)
        s1 = check_initial_state(self.initial_state, S)
        gamma, rho = check_discount(self.gamma, self.rho, H, S, s1)
        phi = check_potential(self.potential, r.shape[1:])
        r.flags.writeable = False
        p.flags.writeable = False
        object.__setattr__(self, "rewards", r)
        if not sparse:
            object.__setattr__(self, "transitions", p)
        object.__setattr__(self, "initial_state", s1)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "rho", rho)
        object.__setattr__(self, "potential", phi)

    @property
    def is_sparse(self) -> bool:
        """Whether the transitions are stored in the sparse form (transition_next, transition_prob)."""
        return self.transition_next is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the game's rewards and transitions."""
        if self.is_sparse:
            return self.rewards.nbytes + self.transition_next.nbytes + self.transition_prob.nbytes
        return self.rewards.nbytes + self.transitions.nbytes

    def action_independent_transitions(self, atol: float = 0.0) -> bool:
        """True if P_h(. | s, a) does not depend on the joint action a.

        Sparse form: the expectations of two fixed random vectors in [0, 1]^S under every joint action
        agree within ``atol`` + 1e-12 (equal distributions always pass; distinct ones fail with
        probability 1, unless they differ by less than the tolerance).
        """
        N = self.num_players
        if not self.is_sparse:
            p = self.transitions
            first = p[(slice(None), slice(None)) + (slice(0, 1),) * N]
            return bool(np.all(np.abs(p - first) <= atol))
        test = np.random.default_rng(0).random((2, self.num_states))
        nxt = self.transition_next.reshape(self.horizon, self.num_states, -1, self.transition_next.shape[-1])
        prob = self.transition_prob.reshape(nxt.shape)
        for v in test:
            e = np.einsum("hsjk,hsjk->hsj", prob, v[nxt])
            if np.any(np.abs(e - e[:, :, :1]) > atol + 1e-12):
                return False
        return True

    def with_rewards(self, rewards: np.ndarray, potential: np.ndarray | None = None) -> "MarkovGame":
        """A copy with other rewards (and the given declared potential, none by default); transitions shared."""
        return MarkovGame(rewards, self.transitions, self.initial_state, self.kind, self.gamma, self.rho, potential,
                          self.transition_next, self.transition_prob)

    def to_dense(self) -> "MarkovGame":
        """The same game with dense (H, S, A_1, ..., A_N, S) transitions (small games)."""
        if not self.is_sparse:
            return self
        S = self.num_states
        k = self.transition_next.shape[-1]
        rows = self.transition_next.size // k
        if rows * S > MAX_DENSE_ENTRIES:
            raise GameError(f"dense transitions would have {rows * S:.3g} entries, above {MAX_DENSE_ENTRIES:.3g}")
        P = np.zeros((rows, S))
        np.add.at(P, (np.arange(rows)[:, None], self.transition_next.reshape(rows, k)), self.transition_prob.reshape(rows, k))
        return MarkovGame(self.rewards, P.reshape(self.transition_next.shape[:-1] + (S,)), self.initial_state, self.kind,
                          self.gamma, self.rho, self.potential)

    @classmethod
    def from_zero_sum(cls, game: ZeroSumGame) -> "MarkovGame":
        """The zero-sum game as a two-player general-sum game: rewards (r, -r)."""
        return cls(np.stack([game.rewards, -game.rewards]), game.transitions, game.initial_state, "general_sum",
                   transition_next=game.transition_next, transition_prob=game.transition_prob)


# ----------------------------------------------------------------------------- file I/O


def _scalar(data, key, path):
    arr = _read_array(data, key, path, 1)
    if arr.ndim != 0:
        raise GameError(f"{path}: '{key}' must be a scalar, got shape {arr.shape}")
    return arr


def read_nplayer_kind(data, path: str) -> str:
    """The ``kind`` of an open N-player game ``.npz``: one of :data:`KINDS`, else one :class:`GameError`."""
    kind = read_kind(data, path)
    if kind not in KINDS:
        hint = " (use load_any_game for zero-sum files)" if kind == "zero_sum" else ""
        raise GameError(f"{path}: kind '{kind}' is not an N-player kind ({', '.join(KINDS)}){hint}")
    return kind


def read_nplayer_common(data, path: str) -> tuple:
    """(rewards, initial_state, gamma, rho, potential) of an open N-player game ``.npz`` (the optional ones None)."""
    rewards = _read_array(data, "rewards", path, MAX_DENSE_ENTRIES)
    s1 = _scalar(data, "initial_state", path)
    gamma = _scalar(data, "gamma", path) if "gamma" in data.files else None
    rho = _read_array(data, "rho", path, MAX_DENSE_ENTRIES) if "rho" in data.files else None
    phi = _read_array(data, "potential", path, MAX_DENSE_ENTRIES) if "potential" in data.files else None
    return rewards, s1, gamma, rho, phi


def load_markov_game(path) -> MarkovGame:
    """Load and validate an N-player game ``.npz`` (kind "potential" or "general_sum")."""
    path = os.fspath(path)
    with _open_npz(path, "game") as data:
        kind = read_nplayer_kind(data, path)
        if "local_transitions" in data.files:
            raise GameError(f"{path}: a product-state game (local_transitions): load it with load_any_game or "
                            "solvers.product_games.load_product_game")
        rewards, s1, gamma, rho, phi = read_nplayer_common(data, path)
        nxt = prob = transitions = None
        if "transitions" not in data.files and {"transition_next", "transition_prob"} & set(data.files):
            nxt = _read_array(data, "transition_next", path, MAX_SPARSE_ENTRIES)
            prob = _read_array(data, "transition_prob", path, MAX_SPARSE_ENTRIES)
            for arr in (rewards, nxt, prob):  # freshly read: the game shares them without a copy
                arr.flags.writeable = False
        else:
            transitions = _read_array(data, "transitions", path, MAX_DENSE_ENTRIES)
    try:
        return MarkovGame(rewards, transitions, s1, kind, gamma, rho, phi, nxt, prob)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def load_any_game(path):
    """A zero-sum file as :class:`ZeroSumGame`, a potential or general-sum file as :class:`MarkovGame`, a
    product-state file (``local_transitions``) as :class:`solvers.product_games.ProductMarkovGame`."""
    path = os.fspath(path)
    with _open_npz(path, "game") as data:
        kind = read_kind(data, path)
        product = "local_transitions" in data.files
    if kind == "zero_sum":
        return load_game(path)
    if product:
        from .product_games import load_product_game

        return load_product_game(path)
    return load_markov_game(path)


def save_markov_game(path, game: MarkovGame) -> None:
    """Write ``game`` as a ``.npz`` (format in the module docstring; a product-state game in its own format)."""
    if hasattr(game, "local_transitions"):
        from .product_games import save_product_game

        return save_product_game(path, game)
    extra = {}
    if game.gamma is not None:
        extra = dict(gamma=np.array(game.gamma, dtype=np.float64), rho=game.rho)
    if game.potential is not None:
        extra["potential"] = game.potential
    if game.is_sparse:
        extra |= {"transition_next": game.transition_next, "transition_prob": game.transition_prob}
    else:
        extra["transitions"] = game.transitions
    np.savez(
        os.fspath(path),
        kind=np.array(game.kind),
        rewards=game.rewards,
        initial_state=np.array(game.initial_state, dtype=np.int64),
        **extra,
    )


def dense_transitions(game, what: str) -> np.ndarray:
    """``game.transitions``; one :class:`GameError` for a sparse game, naming ``what`` needs the dense form."""
    if getattr(game, "is_sparse", False):
        raise GameError(f"{what} needs dense transitions, and this game is sparse (S = {game.num_states}): projected "
                        "Q-ascent and the exact evaluators take sparse games; MarkovGame.to_dense() converts small ones")
    return game.transitions


def uniform_policies(game: MarkovGame) -> list[np.ndarray]:
    """The uniform product policy: one (H, S, A_i) array per player."""
    H, S = game.horizon, game.num_states
    return [np.full((H, S, a), 1.0 / a) for a in game.num_actions]


def validate_policies(policies, game: MarkovGame, atol: float = 1e-6) -> list[np.ndarray]:
    """Check a product Markov policy (one (H, S, A_i) array per player); return float64 copies."""
    H, S, N = game.horizon, game.num_states, game.num_players
    if len(policies) != N:
        raise GameError(f"the game has {N} players, got {len(policies)} policies")
    out = []
    for i, (pol, d) in enumerate(zip(policies, game.num_actions)):
        arr = np.asarray(pol)
        if arr.shape != (H, S, d):
            raise GameError(f"policy_{i} must have shape {(H, S, d)} for this game, got {arr.shape}")
        arr = _as_float_array(f"policy_{i}", arr, 3)
        _check_distributions(f"policy_{i}", arr, atol)
        out.append(arr)
    return out


def load_policies(path, game: MarkovGame) -> list[np.ndarray]:
    """Load a policy ``.npz`` (keys ``policy_0`` ... ``policy_{N-1}``) and validate it against ``game``."""
    path = os.fspath(path)
    with _open_npz(path, "policy") as data:
        extra = sorted(k for k in data.files if k not in {f"policy_{i}" for i in range(game.num_players)})
        if extra:
            raise GameError(f"{path}: unexpected keys {extra} for a {game.num_players}-player game")
        pols = [_read_array(data, f"policy_{i}", path, MAX_DENSE_ENTRIES) for i in range(game.num_players)]
    try:
        return validate_policies(pols, game)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def save_policies(path, policies) -> None:
    np.savez(os.fspath(path), **{f"policy_{i}": np.asarray(p, dtype=np.float64) for i, p in enumerate(policies)})


# ----------------------------------------------------------------------------- potential games

#: Tolerance of the stage-potential checks (max abs deviation of r_i - phi across a_i).
POTENTIAL_ATOL = 1e-9


def _own_action_deviation(dummy: np.ndarray, i: int) -> float:
    """max |d(a_i, a_-i) - d(0, a_-i)| of ``dummy`` (H, S, A_1, ..., A_N): how much it varies with a_i."""
    return float(np.max(np.abs(dummy - np.take(dummy, [0], axis=2 + i))))


def stage_potential(rewards: np.ndarray, atol: float = POTENTIAL_ATOL) -> np.ndarray:
    """A stage potential phi_h(s, a) of ``rewards`` float64 (N, H, S, A_1, ..., A_N), or ``ValueError``.

    Monderer-Shapley: the stage game at (h, s) is an exact potential game iff some phi makes every
    ``r_i - phi`` independent of a_i; then phi is unique up to a constant per (h, s) and equals the
    telescoping sum ``phi(a) = sum_i [r_i(a_1..a_i, 0..0) - r_i(a_1..a_{i-1}, 0, 0..0)]``. Identical
    interest gives ``phi = r_1``; otherwise the constant is chosen so that the mean of phi over joint
    actions equals the players' mean reward (the convention of :mod:`solvers.maml`). Raises
    ``ValueError`` naming the player whose ``r_i - phi`` varies with a_i by more than ``atol``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    N = r.shape[0]
    if np.all(np.abs(r - r[:1]) <= atol):
        return np.ascontiguousarray(r[0])
    phi = np.zeros(r.shape[1:])
    for i in range(N):
        hi = r[i][(slice(None),) * (3 + i) + (slice(0, 1),) * (N - i - 1)]  # r_i(a_1..a_i, 0_{>i})
        phi = phi + (hi - np.take(hi, [0], axis=2 + i))
    joint_axes = tuple(range(2, 2 + N))
    phi = phi + (r.mean(axis=0).mean(axis=joint_axes, keepdims=True) - phi.mean(axis=joint_axes, keepdims=True))
    for i in range(N):
        dev = _own_action_deviation(r[i] - phi, i)
        if dev > atol:
            raise ValueError(f"the stage games are not potential games: r_{i} - phi varies with a_{i} by {dev:.3g} > {atol:g}")
    return phi


@dataclass(frozen=True)
class PotentialCertificate:
    """What is known about a game's potential (Section 4, Eq. 38).

    ``phi`` float64 (H, S, A_1, ..., A_N): the stage potential reward whose value under a product
    policy pi is Phi(pi) (finite horizon: from s_1; discounted: rho-weighted).
    ``source``: "identical_interest" (phi = r_1), "declared" (the game's ``potential``) or
    "monderer_shapley" (:func:`stage_potential`).
    ``exact``: Phi is an exact Markov potential (Eq. 38) - identical interest, or dummy terms
    ``r_i - phi`` under action-independent transitions (player i then cannot influence them).
    Otherwise every stage game is a potential game but the Markov game need not be one (e.g. the
    LQ-tracking game, whose dummy terms depend on positions that react to player i's position).
    """

    phi: np.ndarray
    source: str
    exact: bool


def potential_certificate(game: MarkovGame, atol: float = POTENTIAL_ATOL) -> PotentialCertificate:
    """The game's stage potential and whether it is an exact Markov potential; ``ValueError`` if none.

    Works for any game with ``rewards``, ``num_players``, ``potential`` and ``action_independent_transitions()``
    (:class:`MarkovGame` and :class:`solvers.product_games.ProductMarkovGame`).
    """
    r = game.rewards
    if game.potential is not None:
        for i in range(game.num_players):
            dev = _own_action_deviation(r[i] - game.potential, i)
            if dev > atol:
                raise ValueError(f"the declared potential is not a stage potential: r_{i} - phi varies with a_{i} by "
                                 f"{dev:.3g} > {atol:g}")
        identical = bool(np.all(np.abs(r - r[:1]) <= atol))
        return PotentialCertificate(game.potential, "declared", identical or game.action_independent_transitions())
    if bool(np.all(np.abs(r - r[:1]) <= atol)):
        return PotentialCertificate(np.ascontiguousarray(r[0]), "identical_interest", True)
    return PotentialCertificate(stage_potential(r, atol), "monderer_shapley", game.action_independent_transitions())
