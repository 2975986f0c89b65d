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


class GameError(ValueError):
    """A game or policy (array or file) is malformed; the message names the problem."""


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
    """A two-player zero-sum finite-horizon Markov game.

    Parameters
    ----------
    rewards : float64 (H, S, A, B)
        Max-player rewards r_h(s, a, b); the min-player gets -r. Perturbed games may leave [0, 1].
    transitions : float64 (H, S, A, B, S)
        P_h(s' | s, a, b).
    initial_state : int
        The fixed initial state s_1.
    """

    rewards: np.ndarray
    transitions: np.ndarray
    initial_state: int = 0

    def __post_init__(self):
        r = _as_float_array("rewards", self.rewards, 4)
        H, S, A, B = r.shape
        p = np.asarray(self.transitions)
        if p.ndim != 5 or p.shape != (H, S, A, B, S):
            raise GameError(f"transitions must have shape (H, S, A, B, S) = {(H, S, A, B, S)} to match rewards, got {p.shape}")
        p = _as_float_array("transitions", p, 5)
        _check_distributions("transitions", p, PROB_ATOL)
        s1 = self.initial_state
        if isinstance(s1, np.ndarray):
            if s1.ndim != 0:
                raise GameError(f"initial_state must be a scalar, got shape {s1.shape}")
            s1 = s1.item()
        if isinstance(s1, (bool, np.bool_)) or not isinstance(s1, (int, np.integer)):
            raise GameError(f"initial_state must be an integer, got {s1!r}")
        if not 0 <= int(s1) < S:
            raise GameError(f"initial_state must lie in [0, {S}), got {s1}")
        r.flags.writeable = False
        p.flags.writeable = False
        object.__setattr__(self, "rewards", r)
        object.__setattr__(self, "transitions", p)
        object.__setattr__(self, "initial_state", int(s1))

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

    def with_rewards(self, rewards: np.ndarray) -> "ZeroSumGame":
        return ZeroSumGame(rewards, self.transitions, self.initial_state)


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
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise GameError(f"{what} file {path} is not a readable .npz archive ({exc})") from None
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


def load_game(path) -> ZeroSumGame:
    """Load and validate a game ``.npz`` (format in the module docstring)."""
    path = os.fspath(path)
    with _open_npz(path, "game") as data:
        kind = _read_array(data, "kind", path, 64)
        if kind.dtype.kind not in "US" or kind.ndim != 0:
            raise GameError(f"{path}: 'kind' must be a string scalar, got {kind.dtype} {kind.shape}")
        kind = str(kind.item())
        if kind != "zero_sum":
            raise GameError(f"{path}: kind '{kind}' is not supported here (expected 'zero_sum')")
        rewards = _read_array(data, "rewards", path, MAX_DENSE_ENTRIES)
        transitions = _read_array(data, "transitions", path, MAX_DENSE_ENTRIES)
        s1 = _read_array(data, "initial_state", path, 1)
    try:
        return ZeroSumGame(rewards, transitions, s1)
    except GameError as exc:
        raise GameError(f"{path}: {exc}") from None


def save_game(path, game: ZeroSumGame) -> None:
    """Write ``game`` as a ``.npz`` (format in the module docstring)."""
    np.savez(
        os.fspath(path),
        kind=np.array("zero_sum"),
        rewards=game.rewards,
        transitions=game.transitions,
        initial_state=np.array(game.initial_state, dtype=np.int64),
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
