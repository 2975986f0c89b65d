"""Algorithm 2 (general-sum CCE), the exact CCE-gaps of solvers.cce, Theorems 5-6 and the meta chain.

Oracles: Algorithm 1 on lifted zero-sum games (iterates), brute force over deterministic deviations
with a forward computation of state distributions (CCE-gaps), the LP Nash value (zero-sum values),
a plain NumPy step (the Numba kernel).
"""

import itertools

import numpy as np
import pytest

from solvers import algorithm1, algorithm2
from solvers.cce import (
    cce_curves,
    certified_evaluations,
    evaluate_joint_policy,
    product_joint,
)
from solvers.evaluate import nash_equilibrium
from solvers.generators import random_zero_sum_game
from solvers.nplayer import MarkovGame
from solvers.schedule import stage_lengths


def random_game(rng, N=3, H=2, S=2, A=2):
    acts = (A,) * N
    r = rng.random((N, H, S) + acts)
    p = rng.dirichlet(np.ones(S), size=(H, S) + acts)
    return MarkovGame(r, p, 0, "general_sum")


def random_joint(rng, game):
    H, S = game.horizon, game.num_states
    J = int(np.prod(game.num_actions))
    x = rng.random((H, S, J)) ** 3
    return (x / x.sum(-1, keepdims=True)).reshape((H, S) + game.num_actions)


# ----------------------------------------------------------------------------- brute force


def forward_value(game, i, joint_at, deviation=None):
    """Player i's value by a forward pass over state distributions (independent of the backward induction).

    joint_at(h, s): distribution over joint actions (A_1..A_N); deviation: dict (h, s) -> a_i or None.
    """
    N, H, S = game.num_players, game.horizon, game.num_states
    d = np.zeros(S)
    d[game.initial_state] = 1.0
    total = 0.0
    for h in range(H):
        nd = np.zeros(S)
        for s in range(S):
            if d[s] == 0:
                continue
            rho = joint_at(h, s)
            if deviation is not None:
                rho = rho.sum(axis=i, keepdims=True)
                rho = np.repeat(np.zeros_like(rho), game.num_actions[i], axis=i)
                marg = joint_at(h, s).sum(axis=i)
                idx = [slice(None)] * N
                idx[i] = deviation[(h, s)]
                rho[tuple(idx)] = marg
            total += d[s] * (rho * game.rewards[i, h, s]).sum()
            nd += d[s] * np.tensordot(rho, game.transitions[h, s], axes=N)
        d = nd
    return total


def brute_force_best_deviation(game, i, joint_at):
    """max over deterministic Markov deviations (h, s) -> a_i of player i's forward value."""
    H, S = game.horizon, game.num_states
    cells = [(h, s) for h in range(H) for s in range(S)]
    best = -np.inf
    for choice in itertools.product(range(game.num_actions[i]), repeat=len(cells)):
        best = max(best, forward_value(game, i, joint_at, dict(zip(cells, choice))))
    return best


@pytest.mark.parametrize("N,A", [(2, 3), (3, 2)])
def test_joint_policy_cce_gap_matches_brute_force(N, A):
    rng = np.random.default_rng(N * 10 + A)
    game = random_game(rng, N=N, A=A)
    joint = random_joint(rng, game)
    ev = evaluate_joint_policy(game, joint)
    for i in range(N):
        v = forward_value(game, i, lambda h, s: joint[h, s])
        b = brute_force_best_deviation(game, i, lambda h, s: joint[h, s])
        assert ev.values[i] == pytest.approx(v, abs=1e-12)
        assert ev.best_response_values[i] == pytest.approx(b, abs=1e-12)
    assert ev.cce_gap >= 0


def random_product(rng, game):
    return [rng.dirichlet(np.ones(a), size=(game.horizon, game.num_states)) for a in game.num_actions]


def test_cce_gap_nonnegative_for_product_policies():
    """Not deviating is a deviation when the others play a product policy: every player's gain is >= 0."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        game = random_game(rng, N=int(rng.integers(2, 5)), H=3, S=3)
        ev = evaluate_joint_policy(game, product_joint(random_product(rng, game)))
        assert np.all(ev.gains >= -1e-12)
        assert ev.cce_gap >= -1e-12


def test_correlated_policy_can_have_negative_cce_gap():
    """Coordination game r_1 = r_2 = [[1, 0], [0, 1]], H = S = 1, rho = (1/2)(a0, a0) + (1/2)(a1, a1):
    V_i = 1 while any fixed deviation against the other's (1/2, 1/2) marginal gets 1/2 (by hand): gap = -1/2.
    A strict CCE has a negative gap; the evaluator reports it unclamped."""
    r = np.array([[[[[1.0, 0.0], [0.0, 1.0]]]]] * 2)
    game = MarkovGame(r, np.ones((1, 1, 2, 2, 1)), 0, "general_sum")
    ev = evaluate_joint_policy(game, np.array([[[[0.5, 0.0], [0.0, 0.5]]]]))
    assert ev.values.tolist() == [1.0, 1.0]
    assert ev.best_response_values.tolist() == [0.5, 0.5]
    assert ev.cce_gap == -0.5


# ----------------------------------------------------------------------------- Algorithm 2


@pytest.mark.parametrize("stage_reset", [True, False])
def test_zero_sum_iterates_coincide_with_algorithm1(stage_reset):
    """On (r, -r) Algorithm 2 is Algorithm 1: the running sums of the iterates agree at every t to 1e-12."""
    rng = np.random.default_rng(3)
    g = random_zero_sum_game(3, 3, (2, 3), rng)
    T, eta = 25, 0.3
    r2 = algorithm2.solve(MarkovGame.from_zero_sum(g), T, eta, stage_reset=stage_reset)
    c_mu, c_nu = np.cumsum(r2.trajectory[0], 0), np.cumsum(r2.trajectory[1], 0)
    for t in (1, 3, 4, 9, 17, 25):
        r1 = algorithm1.solve(g, t, eta, stage_reset=stage_reset, eval_every=t)
        np.testing.assert_allclose(c_mu[t - 1], r1.mu_bar * t, rtol=0, atol=1e-12)
        np.testing.assert_allclose(c_nu[t - 1], r1.nu_bar * t, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(r2.daggers[0], r1.mu_dagger)
    np.testing.assert_array_equal(r2.daggers[1], r1.nu_dagger)


def test_kernel_matches_numpy_reference():
    from benchmarks.numpy_algorithm2 import solve_numpy

    rng = np.random.default_rng(11)
    game = random_game(rng, N=3, H=3, S=3, A=3)
    for stage_reset in (True, False):
        res = algorithm2.solve(game, 40, 0.5, stage_reset=stage_reset)
        traj, dags = solve_numpy(game, 40, 0.5, stage_reset=stage_reset)
        for i in range(3):
            np.testing.assert_allclose(res.trajectory[i], traj[i], rtol=0, atol=1e-12)
            np.testing.assert_array_equal(res.daggers[i], dags[i])
    # the compiled kernel's Python version gives the same iterates (typing mistakes show up here)
    out = algorithm2.solve(game, 12, 0.5)
    py = algorithm2._algorithm2_kernel.py_func
    L = stage_lengths(3, 12)
    traj = np.empty((12, 3, 3, 9))
    dag = np.empty((L.shape[0], 3, 3, 9))
    log_init = np.full((L.shape[0], 3, 3, 9), -np.log(3.0))
    off = np.array([0, 3, 6, 9])
    assert py(np.ascontiguousarray(game.rewards.reshape(3, 3, 3, 27)), game.transitions.reshape(3, 81, 3), log_init,
              np.array([3, 3, 3]), off, L, 0.5, True, False, 1e-9, traj, dag) == 0
    np.testing.assert_allclose(traj[..., 3:6], out.trajectory[1], atol=1e-13)


def test_fixed_point_at_a_pure_equilibrium_with_one_step():
    """H = 1, a dominant-strategy game: every player's first action is strictly dominant (reward 1 vs 0).
    From stage 2 on the predictions favour action 0 and the iterates (not reset) move towards it, never away."""
    N, A = 3, 2
    r = np.zeros((N, 1, 1) + (A,) * N)
    for i in range(N):
        idx = [slice(None)] * N
        idx[i] = 0
        r[(i, 0, 0) + tuple(idx)] = 1.0
    game = MarkovGame(r, np.ones((1, 1) + (A,) * N + (1,)), 0, "general_sum")
    res = algorithm2.solve(game, 30, 0.5, stage_reset=False)
    p0 = np.array([p[:, 0, 0, 0] for p in res.trajectory])  # (N, T)
    assert np.all(np.diff(p0, axis=1) >= -1e-15)
    assert np.all(p0[:, -1] > 0.99)
    for d in res.daggers:
        assert d[0, 0, 0, 0] == 0.5 and np.all(d[1:, 0, 0, 0] == 1.0)  # stage 1: Q = 0, all actions tie


# ----------------------------------------------------------------------------- Algorithm 3


def forward_certified(game, res, i, t, deviation=None):
    """Player i's value of pi_bar^t_1 by a forward pass over (index, state), from the raw trajectory and
    Algorithm 3's index chain (each step draws the index uniformly from the stage before the current
    index's stage, stage 1 for stage 1, then plays it)."""
    L = res.stage_lengths
    starts = np.concatenate([[0], np.cumsum(L)])
    stage_of = np.repeat(np.arange(L.shape[0]), L)
    T, N, H, S = res.iterations, game.num_players, game.horizon, game.num_states
    prev = max(stage_of[t] - 1, 0)
    d = np.zeros((T, S))
    d[starts[prev]:starts[prev + 1], game.initial_state] = 1.0 / L[prev]
    total = 0.0
    for h in range(H):
        nd = np.zeros((T, S))
        for j, s in zip(*np.nonzero(d)):
            rho = product_joint([p[j, h, s] for p in res.trajectory])
            if deviation is not None:
                marg = rho.sum(axis=i)
                rho = np.zeros_like(rho)
                idx = [slice(None)] * N
                idx[i] = deviation[(h, s)]
                rho[tuple(idx)] = marg
            total += d[j, s] * (rho * game.rewards[i, h, s]).sum()
            nxt = np.tensordot(rho, game.transitions[h, s], axes=N)
            prev = max(stage_of[j] - 1, 0)
            for jj in range(starts[prev], starts[prev + 1]):
                nd[jj] += d[j, s] * nxt / L[prev]
        d = nd
    return total


@pytest.mark.parametrize("N", [2, 3])
def test_algorithm3_policy_values_match_brute_force(N):
    rng = np.random.default_rng(N)
    game = random_game(rng, N=N, H=3, S=2, A=2)
    res = algorithm2.solve(game, 22, 0.8)  # stages 3, 4, 5, 6, 4
    cert = certified_evaluations(game, res)
    cells = [(h, s) for h in range(3) for s in range(2)]
    for t in (0, 5, 9, 14, 21):
        for i in range(N):
            assert cert.values[t, i] == pytest.approx(forward_certified(game, res, i, t), abs=1e-12)
            best = max(forward_certified(game, res, i, t, dict(zip(cells, c)))
                       for c in itertools.product(range(2), repeat=len(cells)))
            assert cert.best_response_values[t, i] == pytest.approx(best, abs=1e-12)


def test_curves_agree_with_direct_evaluations():
    rng = np.random.default_rng(5)
    game = random_game(rng, N=3, H=3, S=3, A=2)
    res = algorithm2.solve(game, 60, 0.4)
    cur = cce_curves(game, res, eval_every=20)
    assert cur.iterations.tolist() == [20, 40, 60]
    for e, t in enumerate(cur.iterations):
        joint = np.mean([product_joint([p[j] for p in res.trajectory]) for j in range(t)], axis=0)
        assert cur.gap_joint_average[e] == pytest.approx(evaluate_joint_policy(game, joint).cce_gap, abs=1e-12)
        prod = product_joint(res.average_policies(t))
        assert cur.gap_product_average[e] == pytest.approx(evaluate_joint_policy(game, prod).cce_gap, abs=1e-12)
        assert cur.gap[e] == pytest.approx(cur.certified.gaps[:t].mean(), abs=1e-12)
    assert np.all(cur.gap_mixture_bound <= cur.gap + 1e-12)


def test_zero_sum_values_of_eps_cce_lie_within_eps_of_nash_value():
    """Two-player zero-sum: a Markov correlated policy with CCE-gap eps has |V_1 - V*| <= eps (V* by LP)."""
    rng = np.random.default_rng(2)
    g = random_zero_sum_game(3, 3, (3, 2), rng)
    v_star = nash_equilibrium(g).value
    game = MarkovGame.from_zero_sum(g)
    res = algorithm2.solve(game, 200, 0.2)
    cert = certified_evaluations(game, res)
    assert np.all(np.abs(cert.values[:, 0] - v_star) <= np.maximum(cert.gaps, 0) + 1e-10)
    assert np.abs(cert.values[:, 0] + cert.values[:, 1]).max() < 1e-12
    cur = cce_curves(game, res, eval_every=50)
    for joint in (np.mean([product_joint([p[j] for p in res.trajectory]) for j in range(200)], axis=0),
                  product_joint(res.average_policies())):
        ev = evaluate_joint_policy(game, joint)
        assert abs(ev.values[0] - v_star) <= max(ev.cce_gap, 0) + 1e-10
    for _ in range(10):
        ev = evaluate_joint_policy(game, random_joint(rng, game))
        assert abs(ev.values[0] - v_star) <= max(ev.cce_gap, 0) + 1e-10
    assert cur.gap[-1] < cur.gap[0]


# ----------------------------------------------------------------------------- games


def test_markov_shapley_cycles_and_its_joint_average_is_a_cce():
    from solvers.general_sum_games import markov_shapley_game

    g = markov_shapley_game(3)
    still = algorithm2.solve(g, 50, 0.3)  # uniform: an exact fixed point
    assert np.abs(still.trajectory[0] - 1.0 / 3.0).max() < 1e-15
    init = [np.broadcast_to([0.6, 0.3, 0.1], (3, 2, 3)), np.broadcast_to([0.2, 0.2, 0.6], (3, 2, 3))]
    res = algorithm2.solve(g, 3000, 0.3, init=init)
    cur = cce_curves(g, res, eval_every=1000)
    a0 = res.trajectory[0][-1000:, 0, 0, 0]
    assert a0.max() - a0.min() > 0.9  # the iterates cycle between (nearly) pure actions
    assert cur.gap_product_average[-1] > 0.2  # the product of averages is no Nash equilibrium (measured 0.243)
    assert cur.gap_joint_average[-1] < 0.0  # the joint average is a strict CCE (measured -0.196)
    assert cur.gap[-1] < cur.certified.gaps[0] / 4  # Algorithm 3's output converges (measured 0.84 -> 0.11)


def test_families_are_seeded_per_game_and_documented_shapes():
    from solvers.general_sum_games import general_sum_family

    a = general_sum_family("random-general-sum", 3, 0.1, 2, 7, players=4, num_states=2, num_actions=2)
    b = general_sum_family("random-general-sum", 5, 0.1, 2, 7, players=4, num_states=2, num_actions=2)
    assert a[0].rewards.shape == (4, 2, 2, 2, 2, 2, 2)
    for x, y in zip(a, b):  # game k does not depend on K
        np.testing.assert_array_equal(x.rewards, y.rewards)
    np.testing.assert_array_equal(a[0].transitions, a[2].transitions)
    d = a[1].rewards - a[0].rewards
    np.testing.assert_allclose(d[:, 0], d[:, 1])  # one perturbation per (i, s, a), shared by all h
    assert 0.05 < d.std() < 0.2
    s = general_sum_family("markov-shapley", 2, 0.0, 4, 0)
    np.testing.assert_array_equal(s[0].rewards, s[1].rewards)
    assert s[0].num_actions == (3, 3)


# ----------------------------------------------------------------------------- theory and meta-learning


def test_theorem5_bound_holds_and_its_forms_are_ordered():
    """Rewards in [0, 1], stage reset: the expected CCE-gap of Algorithm 3's output lies below the KL form,
    which lies below the uniform form (uniform init), which (tau_bar <= 4 H log T) lies below the rate form."""
    from solvers.cce_meta import solve_with_bound

    rng = np.random.default_rng(8)
    game = random_game(rng, N=3, H=3, S=2, A=3)
    for T, eta in ((200, None), (200, 0.05), (600, 1.0)):
        run = solve_with_bound(game, T, eta, eval_every=T)
        b = run.bound
        assert b.conditions_hold and b.stages_ok
        assert b.eta_is_default == (eta is None)
        assert run.curves.gap[-1] <= b.kl_form <= b.uniform_form + 1e-12 <= b.rate_form + 2e-12
        assert b.deviation == pytest.approx(36 * 4 * run.result.eta**2 * 3**4)
    # 1/eta growth: with eta -> 0 nothing moves and the bound must not vanish
    small = solve_with_bound(game, 200, 1e-6, eval_every=200).bound
    assert small.kl_form > 1e3


def test_theorem5_kl_sum_by_hand():
    """Pure best responses against uniform inits: KL = log A per (tau, h, s, i); stage 1 ties are uniform (KL 0)."""
    from solvers.cce_meta import kl_max_over_players

    dag = [np.zeros((3, 2, 2, 2)), np.zeros((3, 2, 2, 3))]
    dag[0][..., 0] = 1.0
    dag[1][..., 1] = 1.0
    dag[0][0], dag[1][0] = 0.5, 1.0 / 3.0
    init = [np.full(d.shape, 1.0 / d.shape[-1]) for d in dag]
    assert kl_max_over_players(dag, init) == pytest.approx(2 * 2 * np.log(3))  # (tau 2, 3) x (h 1, 2) x max_i log A_i


def test_meta_chain_uses_theorem6_initialisation_and_delta_by_hand():
    from solvers.cce_meta import meta_chain, run_sequence, similarity
    from solvers.general_sum_games import general_sum_family
    from solvers.meta import smooth

    games = general_sum_family("random-general-sum", 3, 0.3, 2, 4, players=3, num_states=2, num_actions=2)
    runs = meta_chain(games, 40, 0.5, 0.3, eval_every=40)
    init = [smooth((runs[0].result.daggers[i] + runs[1].result.daggers[i]) / 2, 0.3) for i in range(3)]
    again = algorithm2.solve(games[2], 40, 0.5, init=init)
    for i in range(3):
        np.testing.assert_array_equal(again.trajectory[i], runs[2].result.trajectory[i])
    # Delta_pi by hand on two one-stage, one-state, two-player collections
    p = [np.array([[[[1.0, 0.0]]]]), np.array([[[[0.0, 1.0]]]])]
    q = [np.array([[[[1.0, 0.0]]]]), np.array([[[[1.0, 0.0]]]])]
    # player 0: pi* = (1/2, 1/2): KL = log 2 for each game; player 1: pi* = (1, 0): KL = 0
    assert similarity([[p[0], q[0]], [p[1], q[1]]]) == pytest.approx(2 * np.log(2))
    out = run_sequence(games, 40, 0.5, eval_every=20)
    t6 = out["meta"].theorem6
    assert t6.alpha_is_default is False and out["meta"].alpha == 0.45  # K = 3: 1/sqrt(K) capped at 0.45
    assert t6.intermediate > 0 and t6.substituted > 0
    assert out["individual"].theorem6 is None


def test_theorem6_substituted_form_dominates_the_intermediate_at_default_alpha():
    from solvers.cce_bounds import theorem6_bound

    for K, T, H in ((16, 1000, 3), (100, 5000, 5)):
        from solvers.schedule import stage_lengths

        tb = stage_lengths(H, T).shape[0]
        b = theorem6_bound(H, T, 0.05, K, (2, 3, 4), 1 / np.sqrt(K), tb, 10.0)
        assert b.alpha_is_default and b.stages_ok and b.conditions_hold
        assert b.intermediate <= b.substituted
