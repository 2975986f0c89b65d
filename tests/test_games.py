"""Tests for solvers/games.py: ZeroSumGame validation, .npz game and policy files.

Every malformed input must raise ``GameError`` with a message naming the problem; the tests
assert on a substring of that message. File tests build their inputs in ``tmp_path``.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from solvers.games import (
    MAX_DENSE_ENTRIES,
    PROB_ATOL,
    GameError,
    ZeroSumGame,
    load_game,
    load_policy,
    save_game,
    save_policy,
    validate_policy,
)

H, S, A, B = 3, 2, 2, 3


def _valid_arrays(seed: int = 0):
    """Rewards (H, S, A, B) and row-stochastic transitions (H, S, A, B, S), built independently of the generators."""
    rng = np.random.default_rng(seed)
    rewards = rng.random((H, S, A, B))
    t = rng.random((H, S, A, B, S)) + 0.1
    transitions = t / t.sum(axis=-1, keepdims=True)
    return rewards, transitions


def _uniform_policy():
    return np.full((H, S, A), 1.0 / A), np.full((H, S, B), 1.0 / B)


def _npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _game_entries(game: ZeroSumGame) -> dict[str, bytes]:
    """The zip members of a valid game file, as raw .npy bytes (to be tampered with)."""
    return {
        "kind.npy": _npy_bytes(np.array("zero_sum")),
        "rewards.npy": _npy_bytes(game.rewards),
        "transitions.npy": _npy_bytes(game.transitions),
        "initial_state.npy": _npy_bytes(np.array(game.initial_state, dtype=np.int64)),
    }


def _write_zip(path, entries: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _npy_header_only(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A version-1.0 .npy header declaring ``shape`` with no array data after it (NEP 1 layout)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    preamble = 6 + 2 + 2  # magic, version, uint16 header length
    pad = (-(preamble + len(header) + 1)) % 64
    header = header + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + np.uint16(len(header)).astype("<u2").tobytes() + header


class _Sentinel:
    """Unpickling this object creates a file: proof that a loader executed pickled code."""

    def __init__(self, marker_path: str):
        self.marker_path = marker_path

    def __reduce__(self):
        return (open, (self.marker_path, "w"))


@pytest.fixture
def game() -> ZeroSumGame:
    rewards, transitions = _valid_arrays()
    return ZeroSumGame(rewards, transitions, 1)


# ----------------------------------------------------------------------------- construction


def test_valid_game_properties_and_readonly(game):
    rewards, transitions = _valid_arrays()
    assert game.shape == (H, S, A, B)
    assert (game.horizon, game.num_states, game.num_actions) == (H, S, (A, B))
    assert game.initial_state == 1 and type(game.initial_state) is int
    np.testing.assert_array_equal(game.rewards, rewards)
    np.testing.assert_array_equal(game.transitions, transitions)
    assert game.rewards.dtype == np.float64 and game.transitions.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        game.rewards[0, 0, 0, 0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        game.transitions[0, 0, 0, 0, 0] = 5.0


def test_integer_inputs_are_converted_to_float64():
    transitions = np.zeros((1, 2, 1, 1, 2), dtype=np.int64)
    transitions[..., 0] = 1
    g = ZeroSumGame(np.ones((1, 2, 1, 1), dtype=np.int32), transitions, np.int64(1))
    assert g.rewards.dtype == np.float64 and g.transitions.dtype == np.float64
    assert g.initial_state == 1 and type(g.initial_state) is int


def test_row_sum_within_tolerance_is_accepted():
    rewards, transitions = _valid_arrays()
    transitions = transitions.copy()
    transitions[0, 0, 0, 0, 0] += 0.5 * PROB_ATOL
    ZeroSumGame(rewards, transitions)  # no error: |sum - 1| = PROB_ATOL / 2


def test_perturbed_rewards_outside_unit_interval_are_allowed():
    # NOTES.md "Setting": perturbed games may leave [0, 1].
    rewards, transitions = _valid_arrays()
    g = ZeroSumGame(rewards * 10.0 - 5.0, transitions)
    assert g.rewards.min() < 0.0 and g.rewards.max() > 1.0


def _bad(what: str):
    """(rewards, transitions, initial_state) with one defect, and the expected message substring."""
    rewards, transitions = _valid_arrays()
    rewards, transitions = rewards.copy(), transitions.copy()
    s1 = 0
    if what == "rewards_3d":
        return rewards[0], transitions, s1, "rewards must have 4 dimensions"
    if what == "rewards_5d":
        return rewards[None], transitions, s1, "rewards must have 4 dimensions"
    if what == "rewards_empty":
        return rewards[:, :, :0], transitions[:, :, :0], s1, "rewards has an empty dimension"
    if what == "transitions_wrong_next_states":
        return rewards, transitions[..., :1], s1, "transitions must have shape (H, S, A, B, S) = (3, 2, 2, 3, 2)"
    if what == "transitions_wrong_horizon":
        return rewards, transitions[:2], s1, "transitions must have shape"
    if what == "transitions_swapped_actions":
        return rewards, np.swapaxes(transitions, 2, 3), s1, "transitions must have shape"
    if what == "transitions_4d":
        return rewards, transitions[0], s1, "transitions must have shape"
    if what == "rewards_nan":
        rewards[1, 0, 1, 2] = np.nan
        return rewards, transitions, s1, "rewards has a non-finite entry at index (1, 0, 1, 2)"
    if what == "rewards_inf":
        rewards[2, 1, 0, 0] = np.inf
        return rewards, transitions, s1, "rewards has a non-finite entry at index (2, 1, 0, 0)"
    if what == "rewards_neg_inf":
        rewards[0, 0, 0, 0] = -np.inf
        return rewards, transitions, s1, "rewards has a non-finite entry"
    if what == "transitions_nan":
        transitions[0, 1, 1, 1, 0] = np.nan
        return rewards, transitions, s1, "transitions has a non-finite entry at index (0, 1, 1, 1, 0)"
    if what == "transitions_inf":
        transitions[0, 0, 0, 0, 1] = np.inf
        return rewards, transitions, s1, "transitions has a non-finite entry"
    if what == "transitions_negative":
        transitions[1, 1, 0, 2] = [1.25, -0.25]  # sums to 1, so only the sign check can catch it
        return rewards, transitions, s1, "transitions has a negative probability at index (1, 1, 0, 2, 1)"
    if what == "transitions_row_sum":
        transitions[2, 0, 1, 1] = [0.5, 0.4]
        return rewards, transitions, s1, "transitions rows must sum to 1 (tolerance 1e-08); row (2, 0, 1, 1) sums to 0.9"
    if what == "transitions_row_sum_just_outside_tol":
        transitions[0, 0, 0, 0, 0] += 10 * PROB_ATOL
        return rewards, transitions, s1, "transitions rows must sum to 1"
    if what == "s1_too_large":
        return rewards, transitions, S, "initial_state must lie in [0, 2), got 2"
    if what == "s1_negative":
        return rewards, transitions, -1, "initial_state must lie in [0, 2), got -1"
    if what == "s1_float":
        return rewards, transitions, 1.0, "initial_state must be an integer, got 1.0"
    if what == "s1_str":
        return rewards, transitions, "0", "initial_state must be an integer"
    if what == "s1_bool":
        return rewards, transitions, True, "initial_state must be an integer, got True"
    if what == "s1_array":
        return rewards, transitions, np.array([0]), "initial_state must be a scalar, got shape (1,)"
    if what == "s1_float_0d_array":
        return rewards, transitions, np.array(0.0), "initial_state must be an integer"
    if what == "rewards_object":
        return rewards.astype(object), transitions, s1, "rewards must be a real numeric array, got dtype object"
    if what == "transitions_object":
        return rewards, transitions.astype(object), s1, "transitions must be a real numeric array, got dtype object"
    if what == "rewards_complex":
        return rewards.astype(complex), transitions, s1, "rewards must be a real numeric array, got dtype complex128"
    if what == "rewards_str":
        return rewards.astype(str), transitions, s1, "rewards must be a real numeric array"
    if what == "rewards_bool":
        return rewards > 0.5, transitions, s1, "rewards must be a real numeric array, got dtype bool"
    raise AssertionError(what)


BAD_CASES = [
    "rewards_3d",
    "rewards_5d",
    "rewards_empty",
    "transitions_wrong_next_states",
    "transitions_wrong_horizon",
    "transitions_swapped_actions",
    "transitions_4d",
    "rewards_nan",
    "rewards_inf",
    "rewards_neg_inf",
    "transitions_nan",
    "transitions_inf",
    "transitions_negative",
    "transitions_row_sum",
    "transitions_row_sum_just_outside_tol",
    "s1_too_large",
    "s1_negative",
    "s1_float",
    "s1_str",
    "s1_bool",
    "s1_array",
    "s1_float_0d_array",
    "rewards_object",
    "transitions_object",
    "rewards_complex",
    "rewards_str",
    "rewards_bool",
]


@pytest.mark.parametrize("what", BAD_CASES)
def test_invalid_game_raises_game_error_naming_problem(what):
    rewards, transitions, s1, message = _bad(what)
    with pytest.raises(GameError) as info:
        ZeroSumGame(rewards, transitions, s1)
    assert message in str(info.value)


def test_game_error_is_a_value_error():
    # STYLE.md: boundary checks raise ValueError (or TypeError); callers may catch ValueError.
    assert issubclass(GameError, ValueError)


def test_with_rewards_revalidates(game):
    bad = game.rewards.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(GameError, match="rewards has a non-finite entry"):
        game.with_rewards(bad)
    g2 = game.with_rewards(game.rewards + 1.0)
    np.testing.assert_array_equal(g2.rewards, game.rewards + 1.0)
    assert g2.transitions is game.transitions and g2.initial_state == game.initial_state


def test_game_does_not_alias_caller_arrays():
    rewards, transitions = _valid_arrays()
    storage = np.stack([rewards, rewards])  # rewards view storage[0] is float64 and C-contiguous
    g = ZeroSumGame(storage[0], transitions)
    storage[0, 0, 0, 0, 0] = np.nan  # the caller reuses its own buffer after building the game
    assert np.isfinite(g.rewards).all()


# ----------------------------------------------------------------------------- game files


def test_save_load_round_trip_is_exact(tmp_path, game):
    path = tmp_path / "game.npz"
    save_game(path, game)
    loaded = load_game(path)
    assert loaded.rewards.dtype == np.float64 and loaded.transitions.dtype == np.float64
    np.testing.assert_array_equal(loaded.rewards, game.rewards)
    np.testing.assert_array_equal(loaded.transitions, game.transitions)
    assert loaded.initial_state == game.initial_state == 1
    # bitwise identical, including the sign of zeros and the last ulp
    assert loaded.rewards.tobytes() == game.rewards.tobytes()
    assert loaded.transitions.tobytes() == game.transitions.tobytes()
    # str path works as well as a Path
    assert load_game(str(path)).rewards.tobytes() == game.rewards.tobytes()


def test_saved_file_has_documented_keys(tmp_path, game):
    path = tmp_path / "game.npz"
    save_game(path, game)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["initial_state", "kind", "rewards", "transitions"]
        assert str(data["kind"]) == "zero_sum"
        assert data["initial_state"].shape == () and data["initial_state"].dtype == np.int64


def test_load_missing_file(tmp_path):
    with pytest.raises(GameError, match="game file not found"):
        load_game(tmp_path / "nope.npz")


def test_load_directory(tmp_path):
    with pytest.raises(GameError, match="is a directory"):
        load_game(tmp_path)


def test_load_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("this is not a zip archive\n" * 10)
    # np.load takes a file without zip or .npy magic for a pickle and refuses it (allow_pickle=False);
    # the loader reports that as "cannot be loaded safely".
    with pytest.raises(GameError, match=r"game file .*text\.npz (is not a readable \.npz archive|cannot be loaded safely)"):
        load_game(path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(GameError, match="game file .*empty.npz"):
        load_game(path)


def test_load_plain_npy_instead_of_npz(tmp_path, game):
    # Regression: np.load returns an ndarray (not an NpzFile) for a .npy file; it must not leak a TypeError.
    path = tmp_path / "rewards.npy"
    np.save(path, game.rewards)
    with pytest.raises(GameError, match=r"rewards\.npy is not a readable \.npz archive"):
        load_game(path)
    with pytest.raises(GameError):
        load_policy(path, game)


def test_load_truncated_file(tmp_path, game):
    path = tmp_path / "game.npz"
    save_game(path, game)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GameError, match="not a readable .npz archive"):
        load_game(path)


def test_load_truncated_array_member(tmp_path, game):
    # A well-formed zip whose 'rewards' member lost its last two float64 entries.
    entries = _game_entries(game)
    entries["rewards.npy"] = entries["rewards.npy"][:-16]
    path = tmp_path / "game.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match="'rewards'"):
        load_game(path)


@pytest.mark.parametrize("missing", ["kind", "rewards", "transitions", "initial_state"])
def test_load_missing_key(tmp_path, game, missing):
    entries = _game_entries(game)
    del entries[missing + ".npy"]
    path = tmp_path / "game.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match=f"missing key '{missing}'"):
        load_game(path)


def test_load_wrong_kind(tmp_path, game):
    entries = _game_entries(game)
    entries["kind.npy"] = _npy_bytes(np.array("general_sum"))
    path = tmp_path / "game.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match="kind 'general_sum' is not supported"):
        load_game(path)


def test_load_kind_not_a_string(tmp_path, game):
    entries = _game_entries(game)
    entries["kind.npy"] = _npy_bytes(np.array([1.0, 2.0]))
    path = tmp_path / "game.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match="'kind' must be a string scalar"):
        load_game(path)


def test_load_invalid_content_names_file_and_problem(tmp_path, game):
    entries = _game_entries(game)
    bad = game.transitions.copy()
    bad[0, 0, 0, 0] = [0.7, 0.7]
    entries["transitions.npy"] = _npy_bytes(bad)
    path = tmp_path / "bad_rows.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError) as info:
        load_game(path)
    assert "bad_rows.npz" in str(info.value)
    assert "transitions rows must sum to 1" in str(info.value)


def test_load_initial_state_out_of_range(tmp_path, game):
    entries = _game_entries(game)
    entries["initial_state.npy"] = _npy_bytes(np.array(7))
    path = tmp_path / "game.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match=r"initial_state must lie in \[0, 2\), got 7"):
        load_game(path)


def test_load_initial_state_with_many_entries_refused(tmp_path, game):
    entries = _game_entries(game)
    entries["initial_state.npy"] = _npy_bytes(np.array([0, 1]))
    path = tmp_path / "game.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match="'initial_state' has shape \\(2,\\)"):
        load_game(path)


@pytest.mark.parametrize("key", ["rewards", "kind"])
def test_load_refuses_pickled_object_array(tmp_path, game, key):
    marker = tmp_path / f"unpickled_{key}"
    payload = np.empty((1,), dtype=object)
    payload[0] = _Sentinel(str(marker))
    # sanity check of the test itself: unpickling this payload would create the marker
    assert not marker.exists()
    entries = _game_entries(game)
    entries[key + ".npy"] = _npy_bytes(payload, allow_pickle=True)
    path = tmp_path / "pickled.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match="pickle"):
        load_game(path)
    assert not marker.exists(), "load_game unpickled the object array"


def test_sentinel_would_be_detected(tmp_path):
    # The oracle of the pickle test works: loading with pickle enabled does create the marker.
    marker = tmp_path / "unpickled"
    payload = np.empty((1,), dtype=object)
    payload[0] = _Sentinel(str(marker))
    buf = io.BytesIO(_npy_bytes(payload, allow_pickle=True))
    np.load(buf, allow_pickle=True)
    assert marker.exists()


def test_load_refuses_huge_declared_shape_before_allocating(tmp_path, game):
    # 1e12 float64 entries (8 TB) declared, no data at all: only a header check can refuse this.
    shape = (100_000, 100_000, 10, 10)
    assert np.prod(shape, dtype=np.float64) > MAX_DENSE_ENTRIES
    entries = _game_entries(game)
    entries["rewards.npy"] = _npy_header_only(shape)
    path = tmp_path / "huge.npz"
    _write_zip(path, entries)
    # the crafted header is a valid .npy header (read back by numpy's own parser)
    with zipfile.ZipFile(path) as zf, zf.open("rewards.npy") as fh:
        assert np.lib.format.read_magic(fh) == (1, 0)
        assert np.lib.format.read_array_header_1_0(fh)[0] == shape
    with pytest.raises(GameError) as info:
        load_game(path)
    assert "'rewards' has shape (100000, 100000, 10, 10)" in str(info.value)
    assert "above the limit" in str(info.value)


def test_load_refuses_huge_declared_transitions(tmp_path, game):
    entries = _game_entries(game)
    entries["transitions.npy"] = _npy_header_only((1000, 1000, 10, 10, 1000))
    path = tmp_path / "huge.npz"
    _write_zip(path, entries)
    with pytest.raises(GameError, match="'transitions' has shape .* above the limit"):
        load_game(path)


def test_load_accepts_npy_format_version_2(tmp_path, game):
    entries = _game_entries(game)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, game.rewards, version=(2, 0))
    entries["rewards.npy"] = buf.getvalue()
    path = tmp_path / "v2.npz"
    _write_zip(path, entries)
    assert load_game(path).rewards.tobytes() == game.rewards.tobytes()


# Corruptions of one zip member: each must become one GameError naming the member.


def _corrupt_member_file(tmp_path, game, how: str):
    entries = _game_entries(game)
    path = tmp_path / f"{how}.npz"
    if how == "member_without_npy_suffix":
        entries["rewards"] = entries.pop("rewards.npy")
    elif how == "bad_magic":
        entries["rewards.npy"] = b"this is not an npy header at all"
    elif how == "empty_member":
        entries["rewards.npy"] = b""
    elif how == "malformed_header_dict":
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,"
        header = header + b" " * ((-(10 + len(header) + 1)) % 64) + b"\n"
        entries["rewards.npy"] = b"\x93NUMPY\x01\x00" + np.uint16(len(header)).tobytes() + header
    elif how == "corrupt_deflate_stream":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("rewards.npy")
        raw = bytearray(path.read_bytes())
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        for i in range(start, start + 16):  # scramble the start of the compressed stream
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
        return path
    else:
        raise AssertionError(how)
    _write_zip(path, entries)
    return path


@pytest.mark.parametrize(
    "how, exc",
    [
        ("member_without_npy_suffix", "KeyError"),
        ("bad_magic", "ValueError"),
        ("empty_member", "ValueError"),
        ("malformed_header_dict", "tokenize.TokenError"),
        ("corrupt_deflate_stream", "zlib.error"),
    ],
)
def test_load_corrupt_member_raises_game_error(tmp_path, game, how, exc):
    """Regression: a corrupt member used to escape as the raw ``exc`` instead of GameError."""
    path = _corrupt_member_file(tmp_path, game, how)
    with pytest.raises(GameError, match="'rewards'"):
        load_game(path)


# ----------------------------------------------------------------------------- policies


def test_policy_round_trip(tmp_path, game):
    rng = np.random.default_rng(3)
    mu = rng.dirichlet(np.ones(A), size=(H, S))
    nu = rng.dirichlet(np.ones(B), size=(H, S))
    path = tmp_path / "policy.npz"
    save_policy(path, mu, nu)
    mu2, nu2 = load_policy(path, game)
    assert mu2.tobytes() == mu.tobytes() and nu2.tobytes() == nu.tobytes()
    assert mu2.dtype == np.float64 and nu2.dtype == np.float64


def test_validate_policy_accepts_and_copies_to_float64(game):
    mu = np.zeros((H, S, A), dtype=np.int64)
    mu[..., 0] = 1
    nu = np.full((H, S, B), 1.0 / B, dtype=np.float32)  # float32 rows sum to 1 within 1e-6
    mu2, nu2 = validate_policy(mu, nu, game)
    assert mu2.dtype == np.float64 and nu2.dtype == np.float64
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_allclose(nu2.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "which, shape, message",
    [
        ("mu", (H, S, A + 1), "policy_0 must have shape (3, 2, 2) for this game, got (3, 2, 3)"),
        ("mu", (H - 1, S, A), "policy_0 must have shape (3, 2, 2)"),
        ("mu", (S, A), "policy_0 must have shape (3, 2, 2) for this game, got (2, 2)"),
        ("nu", (H, S, A), "policy_1 must have shape (3, 2, 3) for this game, got (3, 2, 2)"),
        ("nu", (H, S + 1, B), "policy_1 must have shape (3, 2, 3)"),
    ],
)
def test_policy_wrong_shape(tmp_path, game, which, shape, message):
    mu, nu = _uniform_policy()
    bad = np.full(shape, 1.0 / shape[-1])
    mu, nu = (bad, nu) if which == "mu" else (mu, bad)
    with pytest.raises(GameError) as info:
        validate_policy(mu, nu, game)
    assert message in str(info.value)
    path = tmp_path / "policy.npz"
    save_policy(path, mu, nu)
    with pytest.raises(GameError) as info:
        load_policy(path, game)
    assert message in str(info.value) and "policy.npz" in str(info.value)


@pytest.mark.parametrize(
    "which, defect, message",
    [
        ("mu", "scaled", "policy_0 rows must sum to 1 (tolerance 1e-06); row (1, 0) sums to 1.1"),
        ("nu", "scaled", "policy_1 rows must sum to 1 (tolerance 1e-06); row (1, 0) sums to 1.1"),
        ("mu", "negative", "policy_0 has a negative probability at index (1, 0, 1)"),
        ("nu", "nan", "policy_1 has a non-finite entry at index (1, 0, 0)"),
        ("mu", "zeros", "policy_0 rows must sum to 1"),
    ],
)
def test_policy_not_normalised(tmp_path, game, which, defect, message):
    mu, nu = _uniform_policy()
    target = mu if which == "mu" else nu
    if defect == "scaled":
        target[1, 0] *= 1.1
    elif defect == "negative":
        target[1, 0] = 0.0
        target[1, 0, 0], target[1, 0, 1] = 1.5, -0.5
    elif defect == "nan":
        target[1, 0, 0] = np.nan
    elif defect == "zeros":
        target[2, 1] = 0.0
    with pytest.raises(GameError) as info:
        validate_policy(mu, nu, game)
    assert message in str(info.value)
    path = tmp_path / "policy.npz"
    save_policy(path, mu, nu)
    with pytest.raises(GameError) as info:
        load_policy(path, game)
    assert message in str(info.value)


def test_policy_row_within_tolerance_is_accepted(game):
    mu, nu = _uniform_policy()
    mu[0, 0, 0] += 5e-7
    validate_policy(mu, nu, game)  # |sum - 1| = 5e-7 <= atol 1e-6
    with pytest.raises(GameError, match="policy_0 rows must sum to 1 \\(tolerance 1e-07\\)"):
        validate_policy(mu, nu, game, atol=1e-7)


def test_policy_missing_key(tmp_path, game):
    mu, _ = _uniform_policy()
    path = tmp_path / "policy.npz"
    np.savez(path, policy_0=mu)
    with pytest.raises(GameError, match="missing key 'policy_1'"):
        load_policy(path, game)


def test_policy_file_errors(tmp_path, game):
    with pytest.raises(GameError, match="policy file not found"):
        load_policy(tmp_path / "none.npz", game)
    with pytest.raises(GameError, match="policy path is a directory"):
        load_policy(tmp_path, game)
    marker = tmp_path / "unpickled"
    payload = np.empty((1,), dtype=object)
    payload[0] = _Sentinel(str(marker))
    path = tmp_path / "pickled_policy.npz"
    _write_zip(path, {"policy_0.npy": _npy_bytes(payload, allow_pickle=True), "policy_1.npy": b""})
    with pytest.raises(GameError, match="'policy_0' holds Python objects"):
        load_policy(path, game)
    assert not marker.exists()
