"""The N-player game type (solvers/nplayer.py): validation, file I/O, policies."""

import numpy as np
import pytest

from solvers.games import GameError, ZeroSumGame, save_game
from solvers.nplayer import (MarkovGame, load_any_game, load_markov_game, load_policies, save_markov_game,
                             save_policies, uniform_policies)


def _game(N=3, H=2, S=3, actions=(2, 3, 2), seed=0, **kw):
    rng = np.random.default_rng(seed)
    r = rng.uniform(size=(N, H, S, *actions))
    p = rng.dirichlet(np.ones(S), size=(H, S, *actions))
    return MarkovGame(r, p, **kw)


def test_shapes_and_roundtrip(tmp_path):
    g = _game(kind="potential")
    assert g.num_players == 3 and g.horizon == 2 and g.num_states == 3 and g.num_actions == (2, 3, 2)
    path = tmp_path / "g.npz"
    save_markov_game(path, g)
    h = load_markov_game(path)
    assert h.kind == "potential" and np.array_equal(h.rewards, g.rewards) and np.array_equal(h.transitions, g.transitions)
    assert isinstance(load_any_game(path), MarkovGame)


def test_discounted_roundtrip(tmp_path):
    g = _game(H=1, gamma=0.9, rho=np.array([0.2, 0.3, 0.5]))
    path = tmp_path / "d.npz"
    save_markov_game(path, g)
    h = load_markov_game(path)
    assert h.discounted and h.gamma == 0.9 and np.allclose(h.rho, [0.2, 0.3, 0.5])
    assert np.array_equal(_game(H=1, gamma=0.5, initial_state=2).initial_distribution, [0, 0, 1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="zero_sum"), "kind must be one of"),
    (dict(gamma=0.9), "need H = 1"),
    (dict(H=1, gamma=1.0), r"gamma must lie in \[0, 1\)"),
    (dict(H=1, gamma=0.5, rho=np.array([0.5, 0.6, -0.1])), "negative probability"),
    (dict(rho=np.array([1.0, 0.0, 0.0])), "only meaningful for a discounted game"),
    (dict(initial_state=3), r"initial_state must lie in \[0, 3\)"),
])
def test_bad_games(kwargs, message):
    with pytest.raises(GameError, match=message):
        _game(**kwargs)


def test_bad_shapes():
    r = np.zeros((3, 2, 3, 2, 2))  # N = 3 players but only 2 action axes
    with pytest.raises(GameError, match="N \\+ 3 = 6 dimensions"):
        MarkovGame(r, np.ones((2, 3, 2, 2, 3)) / 3)
    r = np.zeros((2, 2, 3, 2, 2))
    with pytest.raises(GameError, match="transitions must have shape"):
        MarkovGame(r, np.ones((2, 3, 2, 3, 3)) / 3)
    p = np.ones((2, 3, 2, 2, 3)) / 3
    p[0, 0, 0, 0] = [1.0, 0.5, 0.0]
    with pytest.raises(GameError, match="rows must sum to 1"):
        MarkovGame(r, p)
    r[1, 0, 0, 0, 0] = np.nan
    with pytest.raises(GameError, match="non-finite"):
        MarkovGame(r, np.ones((2, 3, 2, 2, 3)) / 3)


def test_identical_interest_and_zero_sum_lift(tmp_path):
    g = _game(N=2, actions=(2, 2))
    same = g.with_rewards(np.stack([g.rewards[0], g.rewards[0]]))
    assert same.is_identical_interest() and not g.is_identical_interest()
    zs = ZeroSumGame(g.rewards[0], g.transitions)
    lifted = MarkovGame.from_zero_sum(zs)
    assert np.array_equal(lifted.rewards[1], -zs.rewards)
    save_game(tmp_path / "z.npz", zs)
    assert isinstance(load_any_game(tmp_path / "z.npz"), ZeroSumGame)
    with pytest.raises(GameError, match="use load_any_game"):
        load_markov_game(tmp_path / "z.npz")


def test_policies(tmp_path):
    g = _game()
    pols = uniform_policies(g)
    path = tmp_path / "p.npz"
    save_policies(path, pols)
    back = load_policies(path, g)
    assert all(np.array_equal(a, b) for a, b in zip(pols, back))
    save_policies(path, pols[:2])
    with pytest.raises(GameError, match="missing key 'policy_2'"):
        load_policies(path, g)
    bad = [p.copy() for p in pols]
    bad[1][0, 0] = [0.5, 0.5, 0.5]
    save_policies(path, bad)
    with pytest.raises(GameError, match="policy_1 rows must sum to 1"):
        load_policies(path, g)
    arr = np.empty(2, dtype=object)
    np.savez(path, policy_0=arr, policy_1=pols[1], policy_2=pols[2])
    with pytest.raises(GameError, match="Python objects"):
        load_policies(path, g)
