"""Property-based tests (Hypothesis) of the game loaders and validators (zero-sum and N-player).

Properties: a valid game survives save -> load bit for bit; one injected defect (non-finite reward,
negative or non-normalised transition row, bad initial state) is always a ``GameError`` naming the
array; any truncation or byte flip of a valid file is a ``GameError`` or a valid game, never
another exception.
"""

import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers.games import GameError, ZeroSumGame, load_game, save_game
from solvers.nplayer import MarkovGame, load_any_game, save_markov_game

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def games(draw):
    """A valid zero-sum (N = 0 marker) or N-player game with small random dimensions."""
    n = draw(st.sampled_from([0, 2, 3]))
    H, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    actions = tuple(draw(st.integers(1, 3)) for _ in range(max(n, 2)))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 1e-300, 1e300]))
    rng = np.random.default_rng(seed)
    shape = (H, S, *actions)
    p = rng.dirichlet(np.ones(S), size=shape)
    s1 = draw(st.integers(0, S - 1))
    if n == 0:
        return ZeroSumGame(scale * rng.standard_normal(shape), p, s1)
    return MarkovGame(scale * rng.standard_normal((n, *shape)), p, s1, draw(st.sampled_from(["potential", "general_sum"])))


def _save(path, game):
    (save_game if isinstance(game, ZeroSumGame) else save_markov_game)(path, game)


def _rebuild(game, rewards=None, transitions=None, initial_state=None):
    r = game.rewards if rewards is None else rewards
    p = game.transitions if transitions is None else transitions
    s1 = game.initial_state if initial_state is None else initial_state
    if isinstance(game, ZeroSumGame):
        return ZeroSumGame(r, p, s1)
    return MarkovGame(r, p, s1, game.kind)


@SETTINGS
@given(game=games())
def test_roundtrip_is_exact(tmp_path, game):
    path = tmp_path / "g.npz"
    _save(path, game)
    back = load_any_game(path)
    assert type(back) is type(game)
    assert np.array_equal(back.rewards, game.rewards) and np.array_equal(back.transitions, game.transitions)
    assert back.initial_state == game.initial_state


@SETTINGS
@given(game=games(), defect=st.sampled_from(["nan", "inf", "negative", "row_sum", "initial_state"]),
       where=st.integers(0, 10**6))
def test_one_defect_is_one_game_error(game, defect, where):
    r, p = game.rewards.copy(), game.transitions.copy()
    if defect in ("nan", "inf"):
        r.reshape(-1)[where % r.size] = np.nan if defect == "nan" else -np.inf
        with pytest.raises(GameError, match="rewards has a non-finite entry"):
            _rebuild(game, rewards=r)
    elif defect == "negative":
        p.reshape(-1)[where % p.size] = -0.25
        with pytest.raises(GameError, match="transitions has a negative probability"):
            _rebuild(game, transitions=p)
    elif defect == "row_sum":
        rows = p.reshape(-1, p.shape[-1])
        rows[where % rows.shape[0]] *= 1.5
        with pytest.raises(GameError, match="transitions rows must sum to 1"):
            _rebuild(game, transitions=p)
    else:
        with pytest.raises(GameError, match="initial_state must lie in"):
            _rebuild(game, initial_state=game.num_states + where % 5)


@SETTINGS
@given(game=games(), cut=st.floats(0.0, 1.0), flip=st.integers(0, 10**9), how=st.sampled_from(["truncate", "flip"]))
def test_damaged_file_is_a_game_error_or_a_valid_game(tmp_path, game, cut, flip, how):
    good = tmp_path / "good.npz"
    _save(good, game)
    data = bytearray(good.read_bytes())
    if how == "truncate":
        data = data[: int(cut * (len(data) - 1))]
    else:
        data[flip % len(data)] ^= 0xFF
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    try:
        back = load_any_game(path)
    except GameError:
        return
    assert isinstance(back, (ZeroSumGame, MarkovGame))  # a flip in slack bytes may leave a valid game
    assert np.all(np.isfinite(back.rewards)) and np.all(back.transitions >= 0)


def test_pickled_member_is_refused_whatever_the_kind(tmp_path):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("kind.npy", "w") as fh:
            np.save(fh, np.array("general_sum"))
        with zf.open("rewards.npy", "w") as fh:
            np.save(fh, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GameError, match="Python objects"):
        load_any_game(path)
    with pytest.raises(GameError):
        load_game(path)
