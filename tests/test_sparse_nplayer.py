"""Sparse N-player games (issue 9): the format, projected Q-ascent and the exact evaluators on it.

References: the dense kernels on ``MarkovGame.to_dense()`` of the same game (themselves checked
against brute force and NumPy in tests/test_potential.py), to 1e-12; a NumPy backward induction.
"""

import numpy as np
import pytest

from solvers.games import GameError
from solvers.nplayer import MarkovGame, load_any_game, save_markov_game
from solvers.potential_eval import evaluate_product_policy
from solvers.potential_games import potential_family, random_sparse_identical_game
from solvers.qascent import projected_q_ascent

TOL = 1e-12


def _game(seed=0, N=3, H=3, S=9, actions=(2, 3, 2), k=3, gamma=None):
    rng = np.random.default_rng(seed)
    r = rng.random((N, H, S) + actions)
    nxt = rng.integers(0, S, (H, S) + actions + (k,))
    prob = rng.dirichlet(np.ones(k), (H, S) + actions)
    return MarkovGame(r, None, 0, "general_sum", gamma, transition_next=nxt, transition_prob=prob)


def _numpy_values(game, policies):
    """rho^T V_i by plain backward induction on dense transitions (an independent reference)."""
    P = game.to_dense().transitions
    N, H, S = game.num_players, game.horizon, game.num_states
    V = np.zeros((N, S))
    for h in range(H - 1, -1, -1):
        joint = policies[0][h]
        for i in range(1, N):
            joint = joint[..., None] * policies[i][h].reshape((S,) + (1,) * i + (-1,))
        Q = game.rewards[:, h] + np.einsum("hsjt,it->ihsj", P[h:h + 1].reshape(1, S, -1, S), V)[:, 0].reshape(
            (N, S) + game.num_actions)
        V = (Q * joint[None]).reshape(N, S, -1).sum(axis=2)
    return V[:, game.initial_state]


def test_sparse_and_dense_forms_are_the_same_game():
    g = _game()
    d = g.to_dense()
    assert g.is_sparse and not d.is_sparse and g.nbytes < d.nbytes
    pol = [np.random.default_rng(1).dirichlet(np.ones(a), (g.horizon, g.num_states)) for a in g.num_actions]
    es, ed = evaluate_product_policy(g, pol, with_potential=False), evaluate_product_policy(d, pol, with_potential=False)
    np.testing.assert_allclose(es.values, _numpy_values(g, pol), atol=TOL)
    np.testing.assert_allclose(es.values, ed.values, atol=TOL)
    np.testing.assert_allclose(es.best_response_values, ed.best_response_values, atol=TOL)


@pytest.mark.parametrize("gamma", [None, 0.9])
def test_projected_q_ascent_on_sparse_equals_dense(gamma):
    g = _game(H=1 if gamma else 3, gamma=gamma)
    a, b = projected_q_ascent(g, 25, 0.1), projected_q_ascent(g.to_dense(), 25, 0.1)
    for x, y in ((a.gap, b.gap), (a.gap_avg, b.gap_avg), (a.values, b.values)):
        np.testing.assert_allclose(x, y, atol=1e-11)
    for p, q in zip(a.policies, b.policies):
        np.testing.assert_allclose(p, q, atol=1e-11)
    assert a.gap[-1] < a.gap[0]


def test_parallel_expectations_do_not_depend_on_threads():
    """Above the parallel threshold (H S >= 50 000) the sparse expectation runs on Numba threads: bitwise equal."""
    import numba

    from solvers.sparse import PARALLEL_MIN_CELLS

    game = random_sparse_identical_game(1, PARALLEL_MIN_CELLS, (2, 2), 3, np.random.default_rng(3))
    runs = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            runs.append(projected_q_ascent(game, 2, 0.2, with_potential=False))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(runs[0].gap, runs[1].gap)
    np.testing.assert_array_equal(runs[0].policies[0], runs[1].policies[0])


def test_file_round_trip_keeps_the_sparse_form(tmp_path):
    g = _game()
    save_markov_game(tmp_path / "g.npz", g)
    with np.load(tmp_path / "g.npz", allow_pickle=False) as data:
        assert "transitions" not in data.files and data["transition_next"].dtype == np.int32
    back = load_any_game(tmp_path / "g.npz")
    assert back.is_sparse
    np.testing.assert_array_equal(back.transition_next, g.transition_next)
    np.testing.assert_array_equal(back.transition_prob, g.transition_prob)
    np.testing.assert_array_equal(back.rewards, g.rewards)


@pytest.mark.parametrize("change, message", [
    (lambda n, p: (n + 100, p), "outside \\[0, 9\\)"),
    (lambda n, p: (n, p * 1.5), "rows must sum to 1"),
    (lambda n, p: (n[..., :2], p), "must have the shape of transition_next"),
    (lambda n, p: (n[:, :, 0], p[:, :, 0]), "transition_next must have shape \\(H, S, A_1, ..., A_N, k\\)"),
    (lambda n, p: (n.astype(float), p), "must be an integer array"),
])
def test_bad_sparse_transitions_are_refused(change, message):
    g = _game()
    nxt, prob = change(g.transition_next.astype(np.int64), g.transition_prob.copy())
    with pytest.raises(GameError, match=message):
        MarkovGame(g.rewards, None, 0, "general_sum", transition_next=nxt, transition_prob=prob)


def test_both_forms_or_neither_are_refused():
    g = _game()
    with pytest.raises(GameError, match="not both"):
        MarkovGame(g.rewards, g.to_dense().transitions, 0, transition_next=g.transition_next,
                   transition_prob=g.transition_prob)
    with pytest.raises(GameError, match="needs transitions"):
        MarkovGame(g.rewards, None, 0)


def test_action_independence_of_sparse_transitions():
    g = _game()
    assert not g.action_independent_transitions()
    # one successor list per (h, s), stored in a different order for every joint action
    rng = np.random.default_rng(2)
    H, S, k = 2, 6, 3
    base_n, base_p = rng.integers(0, S, (H, S, k)), rng.dirichlet(np.ones(k), (H, S))
    nxt, prob = np.empty((H, S, 2, 2, k), dtype=np.int64), np.empty((H, S, 2, 2, k))
    for j, perm in enumerate(([0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1])):
        nxt[:, :, j // 2, j % 2], prob[:, :, j // 2, j % 2] = base_n[..., perm], base_p[..., perm]
    same = MarkovGame(rng.random((2, H, S, 2, 2)), None, 0, transition_next=nxt, transition_prob=prob)
    assert same.action_independent_transitions() and same.to_dense().action_independent_transitions()


def test_dense_only_algorithms_refuse_sparse_games():
    from solvers.algorithm2 import solve
    from solvers.maml import potential_game

    g = _game()
    with pytest.raises(GameError, match="Algorithm 2 needs dense transitions"):
        solve(g, 3, 0.1)
    with pytest.raises(GameError, match="MAML needs dense transitions"):
        potential_game(potential_family("random-sparse-identical", 1, 0.0, 2, 0, num_states=5)[0])


def test_sparse_identical_family_is_seeded_and_shares_transitions():
    a = potential_family("random-sparse-identical", 3, 0.1, 2, 5, num_states=40, num_actions=(2, 3), successors=2)
    b = potential_family("random-sparse-identical", 2, 0.1, 2, 5, num_states=40, num_actions=(2, 3), successors=2)
    assert all(g.is_sparse and g.is_identical_interest() for g in a)
    assert a[0].transition_next is a[2].transition_next  # the K games share one set of transitions
    np.testing.assert_array_equal(a[1].rewards, b[1].rewards)  # game k depends only on (seed, k)
    assert not np.array_equal(a[0].rewards, a[1].rewards)
    with pytest.raises(GameError, match="finite-horizon"):
        potential_family("random-sparse-identical", 1, 0.1, 1, 5, num_states=4, gamma=0.9)


def _settings(states, cpus=1.0):
    from sweeps.trial import TrialSettings

    return TrialSettings("random-sparse-identical", states, (2, 3), ("individual", "meta"), None, 0.01, cpus,
                         "projected-q-ascent", (("states", states), ("actions", (2, 3)), ("successors", 3)))


def test_trial_resources_of_sparse_nplayer_games():
    from sweeps.trial import LARGE_GAME_CPUS, WORKER_BASE_BYTES, trial_resources

    config = {"K": 3, "H": 5, "T": 30}
    small, large = trial_resources(_settings(100), config), trial_resources(_settings(10**6), config)
    assert small["cpu"] == 1.0 and large["cpu"] == LARGE_GAME_CPUS
    cells, J = 5 * 10**6, 6  # independent count: N = 2 players with 2 and 3 actions, k = 3, K = 3, 2 methods
    expected = cells * J * (12 * 3 + 8 * 2 * 4) + 2 * 3 * 16 * cells * 5 + 8 * cells * (2 * J + 2 + 4 * 2 * 3)
    assert large["memory"] == expected + WORKER_BASE_BYTES


def test_sparse_potential_trial_matches_a_direct_solve():
    from solvers.potential_meta import individual_q_ascent
    from sweeps.trial_potential import run_trial

    config = {"step": 0.2, "K": 2, "H": 3, "sigma": 0.1, "T": 15, "seed": 4}
    out = run_trial(config, _settings(30))
    games = potential_family("random-sparse-identical", 2, 0.1, 3, 4, num_states=30, num_actions=(2, 3), successors=3)
    direct = individual_q_ascent(games, 15, 0.2, None)
    assert out.num_tasks == 0
    assert out.scalars["final_gap/individual"] == pytest.approx(np.mean([r.gap[-1] for r in direct]), abs=TOL)
    assert np.isfinite(out.scalars["final_gap/meta"])


SWEEP = """experiment: {experiment}
algorithm: projected-q-ascent
game: {{family: random-sparse-identical, states: 40, actions: [2, 2, 2], successors: 3}}
methods: [individual, meta]
search_space:
  step: 0.2
  K: 2
  H: 3
  T: 10
  seed: {{grid: [0, 1]}}
resources:
  cpus: 1
"""


@pytest.mark.slow
def test_sweep_of_sparse_nplayer_games(mlflow_server, tmp_path):
    from test_sweep import run_small_sweep

    _, _, _, children = run_small_sweep(SWEEP, "sparse-np", mlflow_server, tmp_path)
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.params["family"] == "random-sparse-identical" and run.data.params["successors"] == "3"
        assert np.isfinite(run.data.metrics["final_gap/meta"])


def test_command_line_makes_solves_and_evaluates_a_sparse_nplayer_game(tmp_path, capsys):
    """game make -> solve (policy out) -> evaluate: the evaluated NE-gap is the solve's final gap."""
    import json

    from sweeps.cli import main

    assert main(["game", "make", "--family", "random-sparse-identical", "--count", "2", "--sigma", "0.1", "--horizon",
                 "3", "--seed", "0", "--states", "25", "--actions", "2", "3", "--successors", "2",
                 "--out", str(tmp_path / "g")]) == 0
    game = load_any_game(tmp_path / "g" / "game_000.npz")
    assert game.is_sparse and game.num_actions == (2, 3)
    capsys.readouterr()
    assert main(["solve", "--algorithm", "projected-q-ascent", "--game", str(tmp_path / "g" / "game_000.npz"), "-T", "8",
                 "--step", "0.1", "--curve", str(tmp_path / "c.parquet"), "--policy-out", str(tmp_path / "P.npz")]) == 0
    solved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", "--game", str(tmp_path / "g" / "game_000.npz"), "--policy", str(tmp_path / "P.npz")]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["gap"] == pytest.approx(solved["final_gap"], abs=TOL)
    assert main(["solve", "--algorithm", "omwu-cce", "--game", str(tmp_path / "g" / "game_000.npz"), "-T", "3",
                 "--eta", "0.1", "--curve", str(tmp_path / "x.parquet")]) == 2
    assert "Algorithm 2 needs dense transitions" in capsys.readouterr().err
