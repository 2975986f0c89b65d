"""N-player Markov games with a product state space and independent local dynamics.

Large games such as the linear-quadratic tracking game of Appendix F.3 (4 players, 625 states, 81
joint actions) have a joint state ``s = (s_1, ..., s_N)`` whose coordinates move independently:
player i's position follows its own kernel ``p_{h,i}(s_i' | s_i, a_i)``, so

    P_h(s' | s, a) = prod_i p_{h,i}(s_i' | s_i, a_i).

Stored densely, ``P`` has H * S * J * S entries (2.5e9 bytes for the LQ game with H = 10); stored as
local kernels it has N * H * L * A * L (600 for LQ). Kernels apply it by successive mode products
(:mod:`solvers.qascent`), which costs O(N (LA)^N L) per expectation instead of O(S J S).

Joint states and joint actions are flattened in C order: ``s = sum_i s_i L^(N-1-i)`` (player 1 the
slowest index), ``a = sum_i a_i A^(N-1-i)``. All players share L local states and A actions.

File format (``.npz``, ``allow_pickle=False``; the keys of :mod:`solvers.nplayer` with
``local_transitions`` in place of ``transitions``):

=====================  =============================  ==========================================
key                    dtype / shape                  meaning
=====================  =============================  ==========================================
``kind``               str                            ``"potential"`` or ``"general_sum"``
``rewards``            float64 (N, H, S, A, ..., A)   r_{h,i}(s, a), S = L^N
``local_transitions``  float64 (N, H, L, A, L)        p_{h,i}(s_i' | s_i, a_i), rows sum to 1
``initial_state``      int scalar                     joint s_1 in [0, S)
``gamma``, ``rho``     optional                       as in :mod:`solvers.nplayer` (then H = 1)
``potential``          float64 (H, S, A, ..., A),     a declared stage potential
                       optional
=====================  =============================  ==========================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .games import (MAX_DENSE_ENTRIES, PROB_ATOL, GameError, _as_float_array, _check_distributions, _open_npz,
                    _read_array, check_initial_state)
from .nplayer import (KINDS, MarkovGame, NPlayerShape, check_discount, check_potential, read_nplayer_common,
                      read_nplayer_kind)

__all__ = ["ProductMarkovGame", "load_product_game", "save_product_game", "is_product_file"]


@dataclass(frozen=True)
class ProductMarkovGame(NPlayerShape):
    """An N-player Markov game with independent local dynamics (module docstring).

    Parameters
    ----------
    rewards : float64 (N, H, S, A, ..., A) with S = L^N
    local_transitions : float64 (N, H, L, A, L), p_{h,i}(s_i' | s_i, a_i)
    initial_state, kind, gamma, rho, potential : as :class:`solvers.nplayer.MarkovGame`
    """

    rewards: np.ndarray
    local_transitions: np.ndarray
    initial_state: int = 0
    kind: str = "general_sum"
    gamma: float | None = None
    rho: np.ndarray | None = None
    potential: np.ndarray | None = None

    def __post_init__(self):
        q = np.asarray(self.local_transitions)
        if q.ndim != 5 or q.shape[2] != q.shape[4]:
            raise GameError(f"local_transitions must have shape (N, H, L, A, L), got {q.shape}")
        N, H, L, A, _ = q.shape
        q = _as_float_array("local_transitions", q, 5)
        _check_distributions("local_transitions", q, PROB_ATOL)
        r = np.asarray(self.rewards)
        want = (N, H, L**N, *([A] * N))
        if r.shape != want:
            raise GameError(f"rewards must have shape (N, H, L^N, A, ..., A) = {want} to match local_transitions, got {r.shape}")
        r = _as_float_array("rewards", r, N + 3)
        if self.kind not in KINDS:
            raise GameError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        s1 = check_initial_state(self.initial_state, L**N)
        gamma, rho = check_discount(self.gamma, self.rho, H, L**N, s1)
        phi = check_potential(self.potential, r.shape[1:])
        q.flags.writeable = False
        r.flags.writeable = False
        for key, val in (("local_transitions", q), ("rewards", r), ("initial_state", s1), ("gamma", gamma),
                         ("rho", rho), ("potential", phi)):
            object.__setattr__(self, key, val)

    @property
    def num_local_states(self) -> int:
        return self.local_transitions.shape[2]

    def local_states(self, s: int) -> tuple[int, ...]:
        """(s_1, ..., s_N) of the joint state index s."""
        return tuple(int(x) for x in np.unravel_index(s, (self.num_local_states,) * self.num_players))

    def action_independent_transitions(self, atol: float = 0.0) -> bool:
        q = self.local_transitions
        return bool(np.all(np.abs(q - q[:, :, :, :1]) <= atol))

    def dense_transitions(self) -> np.ndarray:
        """P_h(s' | s, a) as float64 (H, S, A, ..., A, S) (large: H S^2 A^N entries)."""
        N, H, L, A, _ = self.local_transitions.shape
        S = L**N
        if H * S * S * A**N > MAX_DENSE_ENTRIES:
            raise GameError(f"dense transitions would have {H * S * S * A**N:.3g} entries (limit {MAX_DENSE_ENTRIES:.3g})")
        out = np.empty((H, *([L] * N), *([A] * N), *([L] * N)))
        for h in range(H):
            # p(s'|s,a) = prod_i q_i[s_i, a_i, s_i']: an outer product over players of (L, A, L) factors
            letters = "abcdefghijklmnop"
            sub_s, sub_a, sub_t = letters[:N], letters[N:2 * N].upper(), "qrstuvwxyzQRSTUVWXYZ"[:N]
            terms = ",".join(f"{sub_s[i]}{sub_a[i]}{sub_t[i]}" for i in range(N))
            out[h] = np.einsum(f"{terms}->{sub_s}{sub_a}{sub_t}", *[self.local_transitions[i, h] for i in range(N)])
        return out.reshape(H, S, *([A] * N), S)

    def to_dense(self) -> MarkovGame:
        """The same game as a :class:`MarkovGame` (for small instances and tests)."""
        return MarkovGame(self.rewards, self.dense_transitions(), self.initial_state, self.kind, self.gamma, self.rho,
                          self.potential)

    def with_rewards(self, rewards, potential=None) -> "ProductMarkovGame":
        return ProductMarkovGame(rewards, self.local_transitions, self.initial_state, self.kind, self.gamma, self.rho,
                                 potential)


def is_product_file(data) -> bool:
    return "local_transitions" in data.files


def load_product_game(path) -> ProductMarkovGame:
    """Load and validate a product-state game ``.npz`` (module docstring)."""
    path = os.fspath(path)
    with _open_npz(path, "game") as data:
        kind = read_nplayer_kind(data, path)
        rewards, s1, gamma, rho, phi = read_nplayer_common(data, path)
        local = _read_array(data, "local_transitions", path, MAX_DENSE_ENTRIES)
    try:
        return ProductMarkovGame(rewards, local, s1, kind, gamma, rho, phi)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def save_product_game(path, game: ProductMarkovGame) -> None:
    extra = {}
    if game.gamma is not None:
        extra = dict(gamma=np.array(game.gamma, dtype=np.float64), rho=game.rho)
    if game.potential is not None:
        extra["potential"] = game.potential
    np.savez(os.fspath(path), kind=np.array(game.kind), rewards=game.rewards, local_transitions=game.local_transitions,
             initial_state=np.array(game.initial_state, dtype=np.int64), **extra)
