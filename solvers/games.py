"""Zero-sum finite-horizon Markov games (Section 2 of the paper): container, validation, file I/O.

A game holds the max-player's rewards ``r_h(s, a, b)`` (the min-player receives ``-r``), the
transition kernel ``P_h(s' | s, a, b)`` and the fixed initial state ``s_1``.

File format (``.npz``, always loaded with ``allow_pickle=False``):

=================  =========================  ==================================================
key                dtype / shape              meaning
=================  =========================  ==================================================
``kind``           str, ``"zero_sum"``        game family tag
``rewards``        float64 (H, S, A, B)       max-player reward r_h(s, a, b)
``transitions``    float64 (H, S, A, B, S)    P_h(s' | s, a, b), rows sum to 1
``initial_state``  int scalar                 s_1 in [0, S)
=================  =========================  ==================================================

Sparse games (large state spaces) store the transition kernel with a fixed maximum number ``k`` of
successors per (h, s, a, b) instead of ``transitions`` (a file holds one form or the other):

===================  =========================  ================================================
key                  dtype / shape              meaning
===================  =========================  ================================================
``transition_next``  int32 (H, S, A, B, k)      successor states s'_j, every entry in [0, S)
``transition_prob``  float64 (H, S, A, B, k)    P_h(s'_j | s, a, b) >= 0, rows sum to 1
===================  =========================  ================================================

Rows with fewer than ``k`` successors are padded with probability 0 (the padding's index must still
lie in [0, S); by convention it repeats a real successor). Repeated successors in a row add up.
Validation is the dense one (finite, non-negative, rows sum to 1 within ``PROB_ATOL``, indices in
range), done in one parallel pass without temporaries (:mod:`solvers.sparse`).

Policies are ``.npz`` files with ``policy_0`` float64 (H, S, A) for the max-player and
``policy_1`` float64 (H, S, B) for the min-player, each row a distribution.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GameError",
    "ZeroSumGame",
    "load_game",
    "save_game",
    "load_policy",
    "save_policy",
    "validate_policy",
]

#: Tolerance on |sum_s' P(s'|s,a,b) - 1| and on policy rows.
PROB_ATOL = 1e-8
#: Refuse to allocate games beyond this many float64 entries in the dense transition tensor.
MAX_DENSE_ENTRIES = 400_000_000
#: Refuse to allocate sparse transition arrays beyond this many entries (12 bytes each: about 12 GB).
MAX_SPARSE_ENTRIES = 1_000_000_000


class GameError(ValueError):
    """A game or policy (array or file) is malformed; the message names the problem."""


def check_initial_state(s1, S: int) -> int:
    """``initial_state`` as an int in [0, S) (a scalar array is accepted), or one :class:`GameError`."""
    if isinstance(s1, np.ndarray):
        if s1.ndim != 0:
            raise GameError(f"initial_state must be a scalar, got shape {s1.shape}")
        s1 = s1.item()
    if isinstance(s1, (bool, np.bool_)) or not isinstance(s1, (int, np.integer)):
        raise GameError(f"initial_state must be an integer, got {s1!r}")
    if not 0 <= int(s1) < S:
        raise GameError(f"initial_state must lie in [0, {S}), got {s1}")
    return int(s1)


def _as_float_array(name: str, value, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise GameError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise GameError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if 0 in arr.shape:
        raise GameError(f"{name} has an empty dimension: shape {arr.shape}")
    # The game owns frozen arrays: a writeable input is copied (the caller may change it later);
    # an already read-only float64 C-contiguous array (e.g. another game's) is shared, not duplicated.
    shared = arr.dtype == np.float64 and arr.flags.c_contiguous and not arr.flags.writeable
    arr = arr if shared else np.array(arr, dtype=np.float64, order="C", copy=True)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise GameError(f"{name} has a non-finite entry at index {tuple(int(i) for i in bad)}: {arr[tuple(bad)]}")
    return arr


def _check_distributions(name: str, arr: np.ndarray, atol: float) -> None:
    """Rows along the last axis must be probability vectors."""
    if np.any(arr < 0.0):
        bad = np.argwhere(arr < 0.0)[0]
        raise GameError(f"{name} has a negative probability at index {tuple(int(i) for i in bad)}: {arr[tuple(bad)]}")
    sums = arr.sum(axis=-1)
    err = np.abs(sums - 1.0)
    if np.any(err > atol):
        bad = np.unravel_index(int(np.argmax(err)), sums.shape)
        raise GameError(
            f"{name} rows must sum to 1 (tolerance {atol:g}); row {tuple(int(i) for i in bad)} sums to {sums[bad]:.12g}"
        )


@dataclass(frozen=True)
class ZeroSumGame:
    """A two-player zero-sum finite-horizon Markov game, with dense or sparse transitions.

    Parameters
    ----------
    rewards : float64 (H, S, A, B)
        Max-player rewards r_h(s, a, b); the min-player gets -r. Perturbed games may leave [0, 1].
    transitions : float64 (H, S, A, B, S), optional
        P_h(s' | s, a, b) (dense form). Give either this or the sparse pair.
    initial_state : int
        The fixed initial state s_1.
    transition_next : int32 (H, S, A, B, k), optional
        Sparse form: successor states (any integer dtype is converted to int32).
    transition_prob : float64 (H, S, A, B, k), optional
        Sparse form: their probabilities, rows summing to 1, padding with probability 0.

    A game owns read-only arrays. Writeable inputs are copied; read-only, C-contiguous inputs of
    the stored dtype (float64, int32 for ``transition_next``) are shared without a copy, which is
    how generators and the loader hand over large arrays.
    """

    rewards: np.ndarray
    transitions: np.ndarray | None = None
    initial_state: int = 0
    transition_next: np.ndarray | None = None
    transition_prob: np.ndarray | None = None

    def __post_init__(self):
        r = _as_float_array("rewards", self.rewards, 4)
        H, S, A, B = r.shape
        sparse = self.transition_next is not None or self.transition_prob is not None
        if sparse:
            if self.transitions is not None:
                raise GameError("give either dense transitions or the sparse transition_next/transition_prob, not both")
            nxt, p = _sparse_transitions(self.transition_next, self.transition_prob, (H, S, A, B))
        else:
            if self.transitions is None:
                raise GameError("a game needs transitions (H, S, A, B, S) or the sparse pair transition_next, transition_prob")
            p = np.asarray(self.transitions)
            if p.ndim != 5 or p.shape != (H, S, A, B, S):
                raise GameError(f"transitions must have shape (H, S, A, B, S) = {(H, S, A, B, S)} to match rewards, got {p.shape}")
            p = _as_float_array("transitions", p, 5)
            _check_distributions("transitions", p, PROB_ATOL)
        s1 = check_initial_state(self.initial_state, S)
        r.flags.writeable = False
        p.flags.writeable = False
        object.__setattr__(self, "rewards", r)
        object.__setattr__(self, "initial_state", int(s1))
        if sparse:
            nxt.flags.writeable = False
            object.__setattr__(self, "transition_next", nxt)
            object.__setattr__(self, "transition_prob", p)
        else:
            object.__setattr__(self, "transitions", p)

    @property
    def horizon(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_states(self) -> int:
        return self.rewards.shape[1]

    @property
    def num_actions(self) -> tuple[int, int]:
        """(A, B): actions of the max-player and of the min-player."""
        return self.rewards.shape[2], self.rewards.shape[3]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(H, S, A, B)."""
        return self.rewards.shape

    @property
    def is_sparse(self) -> bool:
        """Whether the transitions are stored in the sparse form (transition_next, transition_prob)."""
        return self.transition_next is not None

    @property
    def num_successors(self) -> int:
        """k of the sparse form (S for a dense game)."""
        return self.transition_next.shape[-1] if self.is_sparse else self.num_states

    @property
    def nbytes(self) -> int:
        """Bytes held by the game's arrays (rewards and transitions)."""
        if self.is_sparse:
            return self.rewards.nbytes + self.transition_next.nbytes + self.transition_prob.nbytes
        return self.rewards.nbytes + self.transitions.nbytes

    def with_rewards(self, rewards: np.ndarray) -> "ZeroSumGame":
        """The same transitions (shared, not copied) with other rewards."""
        if self.is_sparse:
            return ZeroSumGame(rewards, None, self.initial_state, self.transition_next, self.transition_prob)
        return ZeroSumGame(rewards, self.transitions, self.initial_state)

    def to_sparse(self) -> "ZeroSumGame":
        """The same game in the sparse form, k = the largest number of successors of any row (small games)."""
        if self.is_sparse:
            return self
        P = self.transitions
        k = max(1, int((P > 0).sum(axis=-1).max()))
        order = np.argsort(P <= 0, axis=-1, kind="stable")[..., :k]  # successors first, in index order
        prob = np.take_along_axis(P, order, axis=-1)
        nxt = np.where(prob > 0, order, order[..., :1]).astype(np.int32)  # padding repeats the first successor
        return ZeroSumGame(self.rewards, None, self.initial_state, nxt, np.where(prob > 0, prob, 0.0))

    def to_dense(self) -> "ZeroSumGame":
        """The same game with dense (H, S, A, B, S) transitions (small games)."""
        if not self.is_sparse:
            return self
        H, S, A, B = self.shape
        if H * S * A * B * S > MAX_DENSE_ENTRIES:
            raise GameError(f"dense transitions would have {H * S * A * B * S:.3g} entries, above {MAX_DENSE_ENTRIES:.3g}")
        P = np.zeros((H, S, A, B, S))
        np.add.at(P.reshape(-1, S), (np.arange(H * S * A * B)[:, None], self.transition_next.reshape(H * S * A * B, -1)),
                  self.transition_prob.reshape(H * S * A * B, -1))
        return ZeroSumGame(self.rewards, P, self.initial_state)


def _sparse_transitions(nxt, prob, shape: tuple, axes: str = "(H, S, A, B, k)") -> tuple[np.ndarray, np.ndarray]:
    """Validate the sparse pair against the leading ``shape`` ((H, S, A, B), or (H, S, A_1, ..., A_N) with
    ``axes`` naming it in errors); return read-only int32 / float64 arrays (shared if possible)."""
    if nxt is None or prob is None:
        raise GameError("sparse transitions need both transition_next and transition_prob")
    S = shape[1]
    nxt_arr = np.asarray(nxt)
    if nxt_arr.dtype == object or not np.issubdtype(nxt_arr.dtype, np.integer):
        raise GameError(f"transition_next must be an integer array, got dtype {nxt_arr.dtype}")
    if nxt_arr.ndim != len(shape) + 1 or nxt_arr.shape[:-1] != tuple(shape) or nxt_arr.shape[-1] < 1:
        raise GameError(f"transition_next must have shape {axes} = {tuple(shape)} + (k,) with k >= 1, got {nxt_arr.shape}")
    p = np.asarray(prob)
    if p.shape != nxt_arr.shape:
        raise GameError(f"transition_prob must have the shape of transition_next {nxt_arr.shape}, got {p.shape}")
    if nxt_arr.dtype != np.int32:
        if nxt_arr.size and (nxt_arr.min() < 0 or nxt_arr.max() >= S):
            bad = np.argwhere((nxt_arr < 0) | (nxt_arr >= S))[0]
            raise GameError(f"transition_next has a state index outside [0, {S}) at index {tuple(int(i) for i in bad)}: {nxt_arr[tuple(bad)]}")
        nxt_arr = np.array(nxt_arr, dtype=np.int32, order="C", copy=True)
    elif not (nxt_arr.flags.c_contiguous and not nxt_arr.flags.writeable):
        nxt_arr = np.array(nxt_arr, order="C", copy=True)
    p = _as_float_array("transition_prob", p, nxt_arr.ndim)
    from .sparse import check_sparse_transitions  # Numba: imported only for sparse games

    check_sparse_transitions(nxt_arr, p, S, PROB_ATOL)
    return nxt_arr, p


# ----------------------------------------------------------------------------- file I/O


def _open_npz(path, what: str):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise GameError(f"{what} file not found: {path}")
    if os.path.isdir(path):
        raise GameError(f"{what} path is a directory, not an .npz file: {path}")
    if not zipfile.is_zipfile(path):
        raise GameError(f"{what} file {path} is not a readable .npz archive (not a zip file)")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:  # NotImplementedError: a damaged
        raise GameError(f"{what} file {path} is not a readable .npz archive ({exc})") from None  # zip version field
    except ValueError as exc:
        raise GameError(f"{what} file {path} cannot be loaded safely ({exc})") from None


def _read_array(data, key: str, path: str, max_entries: int) -> np.ndarray:
    """Read one array from an open npz, refusing pickled objects and oversized arrays before allocating."""
    if key not in data.files:
        raise GameError(f"{path}: missing key '{key}' (keys present: {sorted(data.files)})")
    # np.lib.format reads only the header: the type and size checks happen before any allocation.
    try:
        with data.zip.open(key + ".npy") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
    except Exception as exc:  # any failure to parse a header is a corrupt file, whatever numpy raises
        raise GameError(f"{path}: '{key}' has a corrupt .npy header ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise GameError(f"{path}: '{key}' holds Python objects (pickled data is refused)")
    n = int(np.prod(shape, dtype=np.float64))
    if n > max_entries:
        raise GameError(f"{path}: '{key}' has shape {shape} ({n:.3g} entries), above the limit of {max_entries:.3g}")
    try:
        return data[key]
    except Exception as exc:  # zlib.error, EOFError, OSError, BadZipFile...: the member is corrupt
        raise GameError(f"{path}: '{key}' is truncated or corrupt ({type(exc).__name__}: {exc})") from None


def read_kind(data, path: str) -> str:
    """The ``kind`` string of an open game ``.npz`` (one :class:`GameError` if it is missing or not a string)."""
    kind = _read_array(data, "kind", path, 64)
    if kind.dtype.kind not in "US" or kind.ndim != 0:
        raise GameError(f"{path}: 'kind' must be a string scalar, got {kind.dtype} {kind.shape}")
    return str(kind.item())


def load_game(path) -> ZeroSumGame:
    """Load and validate a game ``.npz`` (format in the module docstring)."""
    path = os.fspath(path)
    with _open_npz(path, "game") as data:
        kind = read_kind(data, path)
        if kind != "zero_sum":
            raise GameError(f"{path}: kind '{kind}' is not supported here (expected 'zero_sum')")
        rewards = _read_array(data, "rewards", path, MAX_DENSE_ENTRIES)
        sparse = "transitions" not in data.files and {"transition_next", "transition_prob"} & set(data.files)
        if sparse:
            nxt = _read_array(data, "transition_next", path, MAX_SPARSE_ENTRIES)
            prob = _read_array(data, "transition_prob", path, MAX_SPARSE_ENTRIES)
        else:
            transitions = _read_array(data, "transitions", path, MAX_DENSE_ENTRIES)
        s1 = _read_array(data, "initial_state", path, 1)
    try:
        if sparse:  # freshly read arrays are handed over without a copy (read-only, so the game shares them)
            for arr in (rewards, nxt, prob):
                arr.flags.writeable = False
            return ZeroSumGame(rewards, None, s1, nxt, prob)
        return ZeroSumGame(rewards, transitions, s1)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def save_game(path, game: ZeroSumGame) -> None:
    """Write ``game`` as a ``.npz`` (format in the module docstring; sparse games in the sparse form)."""
    if game.is_sparse:
        arrays = {"transition_next": game.transition_next, "transition_prob": game.transition_prob}
    else:
        arrays = {"transitions": game.transitions}
    np.savez(
        os.fspath(path),
        kind=np.array("zero_sum"),
        rewards=game.rewards,
        initial_state=np.array(game.initial_state, dtype=np.int64),
        **arrays,
    )


def validate_policy(mu, nu, game: ZeroSumGame, atol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Check a product Markov policy (mu (H, S, A), nu (H, S, B)) against ``game``; return float64 copies."""
    H, S, A, B = game.shape
    out = []
    for name, pol, d in (("policy_0", mu, A), ("policy_1", nu, B)):
        arr = np.asarray(pol)
        if arr.ndim != 3 or arr.shape != (H, S, d):
            raise GameError(f"{name} must have shape {(H, S, d)} for this game, got {arr.shape}")
        arr = _as_float_array(name, arr, 3)
        _check_distributions(name, arr, atol)
        out.append(arr)
    return out[0], out[1]


def load_policy(path, game: ZeroSumGame) -> tuple[np.ndarray, np.ndarray]:
    """Load a policy ``.npz`` (keys ``policy_0``, ``policy_1``) and validate it against ``game``."""
    path = os.fspath(path)
    with _open_npz(path, "policy") as data:
        mu = _read_array(data, "policy_0", path, MAX_DENSE_ENTRIES)
        nu = _read_array(data, "policy_1", path, MAX_DENSE_ENTRIES)
    try:
        return validate_policy(mu, nu, game)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def save_policy(path, mu: np.ndarray, nu: np.ndarray) -> None:
    np.savez(os.fspath(path), policy_0=np.asarray(mu, dtype=np.float64), policy_1=np.asarray(nu, dtype=np.float64))
