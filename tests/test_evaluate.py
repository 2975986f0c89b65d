"""Tests for solvers/evaluate.py against independent oracles.

Oracles (written here, sharing no code with the module under test):
- ``_value_by_trajectories``: V^{mu,nu}_1(s_1) as the sum over every trajectory
  (s_1, a_1, b_1, s_2, ..., a_H, b_H) of its probability times its return.
- ``_value_by_recursion``: the same value by a plain-Python recursion over (h, s).
- ``_best_responses_brute_force``: max / min over ALL deterministic Markov policies (h, s) -> action
  of the responding player. Against a fixed Markov opponent the responder faces an MDP, which has an
  optimal deterministic Markov policy, so this maximum is the exact best-response value.
- Hand-computed 2x2 matrix-game values and LP optimality certificates for the Nash solver.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import pytest

from solvers.evaluate import _evaluate_block, evaluate_policy, nash_equilibrium, solve_matrix_game
from solvers.games import GameError, ZeroSumGame
from solvers.generators import paper_zero_sum_game, random_zero_sum_game

ORACLE_TOL = 1e-10
LP_TOL = 1e-8


# ----------------------------------------------------------------------------- oracles


def _value_by_trajectories(game: ZeroSumGame, mu, nu) -> float:
    H, S, A, B = game.shape
    r, P = game.rewards.tolist(), game.transitions.tolist()
    mu, nu = np.asarray(mu).tolist(), np.asarray(nu).tolist()
    total = 0.0
    # one step = (a, b, s_next); the last step's s_next is irrelevant, so enumerate H-1 next states
    for actions in itertools.product(itertools.product(range(A), range(B)), repeat=H):
        for nexts in itertools.product(range(S), repeat=H - 1):
            s, prob, ret = game.initial_state, 1.0, 0.0
            for h in range(H):
                a, b = actions[h]
                prob *= mu[h][s][a] * nu[h][s][b]
                ret += r[h][s][a][b]
                if h < H - 1:
                    prob *= P[h][s][a][b][nexts[h]]
                    s = nexts[h]
            total += prob * ret
    return total


def _value_by_recursion(game: ZeroSumGame, mu, nu, s1=None) -> float:
    H, S, A, B = game.shape
    r, P = game.rewards.tolist(), game.transitions.tolist()
    mu, nu = np.asarray(mu).tolist(), np.asarray(nu).tolist()

    @lru_cache(maxsize=None)
    def v(h, s):
        if h == H:
            return 0.0
        out = 0.0
        for a in range(A):
            for b in range(B):
                cont = sum(P[h][s][a][b][t] * v(h + 1, t) for t in range(S))
                out += mu[h][s][a] * nu[h][s][b] * (r[h][s][a][b] + cont)
        return out

    return v(0, game.initial_state if s1 is None else s1)


def _deterministic_policies(H: int, S: int, n: int):
    """Every map (h, s) -> action as a one-hot array (H, S, n)."""
    for choice in itertools.product(range(n), repeat=H * S):
        pol = np.zeros((H, S, n))
        idx = np.array(choice).reshape(H, S)
        for h in range(H):
            for s in range(S):
                pol[h, s, idx[h, s]] = 1.0
        yield pol


def _best_responses_brute_force(game: ZeroSumGame, mu, nu) -> tuple[float, float]:
    """(V^{dag,nu}, V^{mu,dag}) by enumeration of the responder's deterministic Markov policies."""
    H, S, A, B = game.shape
    br_max = max(_value_by_recursion(game, m, nu) for m in _deterministic_policies(H, S, A))
    br_min = min(_value_by_recursion(game, mu, n) for n in _deterministic_policies(H, S, B))
    return br_max, br_min


def _random_policy(rng, H, S, n, kind="dirichlet"):
    if kind == "dirichlet":
        return rng.dirichlet(np.ones(n), size=(H, S))
    if kind == "sparse":  # some exact zeros, some near-deterministic rows
        p = rng.dirichlet(np.full(n, 0.2), size=(H, S))
        p[p < 0.05] = 0.0
        return p / p.sum(-1, keepdims=True)
    if kind == "pure":
        p = np.zeros((H, S, n))
        idx = rng.integers(n, size=(H, S))
        np.put_along_axis(p, idx[..., None], 1.0, axis=-1)
        return p
    raise AssertionError(kind)


def _tiny_game(seed, H, S, A, B, s1=0):
    g = random_zero_sum_game(H, S, (A, B), np.random.default_rng(seed), concentration=0.7)
    # signed rewards exercise perturbed games (NOTES.md: they may leave [0, 1])
    return ZeroSumGame(2.0 * g.rewards - 0.7, g.transitions, s1)


TINY_CASES = [
    # (seed, H, S, A, B, initial_state)
    (0, 2, 2, 2, 2, 0),
    (1, 2, 3, 2, 2, 2),
    (2, 3, 2, 2, 2, 1),
    (3, 3, 3, 2, 2, 0),
    (4, 3, 3, 2, 2, 1),
    (5, 2, 2, 2, 3, 0),  # A != B: catches swapped action axes
    (6, 2, 2, 3, 2, 1),
]


# ----------------------------------------------------------------------------- oracle sanity


def test_oracles_agree_with_each_other():
    # The two value oracles are independent formulas; they must agree before either is trusted.
    for seed, H, S, A, B, s1 in TINY_CASES:
        g = _tiny_game(seed, H, S, A, B, s1)
        rng = np.random.default_rng(100 + seed)
        mu, nu = _random_policy(rng, H, S, A), _random_policy(rng, H, S, B)
        assert _value_by_trajectories(g, mu, nu) == pytest.approx(_value_by_recursion(g, mu, nu), abs=1e-12)


def test_oracle_hand_computed_one_step():
    # H = 1, single state: V = mu^T R nu, best responses max_a (R nu)_a and min_b (mu^T R)_b.
    R = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    g = ZeroSumGame(R[None, None], np.ones((1, 1, 2, 3, 1)))
    mu, nu = np.array([[[0.25, 0.75]]]), np.array([[[0.5, 0.2, 0.3]]])
    # mu^T R = [0.25, 1.75, -0.625]; R nu = [0.25, 0.3]; value = 0.25*0.5 + 1.75*0.2 - 0.625*0.3
    assert _value_by_recursion(g, mu, nu) == pytest.approx(0.2875, abs=1e-15)
    assert _best_responses_brute_force(g, mu, nu) == pytest.approx((0.3, -0.625), abs=1e-15)
    ev = evaluate_policy(g, mu, nu)
    assert (ev.value, ev.best_response_value_max, ev.best_response_value_min) == pytest.approx(
        (0.2875, 0.3, -0.625), abs=1e-15
    )


# ----------------------------------------------------------------------------- (a) evaluate_policy vs oracles


@pytest.mark.parametrize("case", TINY_CASES, ids=lambda c: "seed{}-H{}-S{}-A{}-B{}-s{}".format(*c))
@pytest.mark.parametrize("kind", ["dirichlet", "sparse", "pure"])
def test_evaluate_policy_matches_brute_force(case, kind):
    seed, H, S, A, B, s1 = case
    g = _tiny_game(seed, H, S, A, B, s1)
    rng = np.random.default_rng([seed, len(kind)])
    mu, nu = _random_policy(rng, H, S, A, kind), _random_policy(rng, H, S, B, kind)
    ev = evaluate_policy(g, mu, nu)
    value = _value_by_trajectories(g, mu, nu)
    br_max, br_min = _best_responses_brute_force(g, mu, nu)
    assert ev.value == pytest.approx(value, abs=ORACLE_TOL)
    assert ev.best_response_value_max == pytest.approx(br_max, abs=ORACLE_TOL)
    assert ev.best_response_value_min == pytest.approx(br_min, abs=ORACLE_TOL)
    assert ev.ne_gap == pytest.approx(br_max - br_min, abs=2 * ORACLE_TOL)
    d = ev.as_dict()
    assert d == {
        "value": ev.value,
        "best_response_value_max": ev.best_response_value_max,
        "best_response_value_min": ev.best_response_value_min,
        "ne_gap": ev.ne_gap,
    }


def test_evaluate_policy_uses_initial_state():
    g0 = _tiny_game(7, 3, 3, 2, 2, 0)
    rng = np.random.default_rng(7)
    mu, nu = _random_policy(rng, 3, 3, 2), _random_policy(rng, 3, 3, 2)
    values = []
    for s1 in range(3):
        g = ZeroSumGame(g0.rewards, g0.transitions, s1)
        values.append(evaluate_policy(g, mu, nu).value)
        assert values[-1] == pytest.approx(_value_by_recursion(g0, mu, nu, s1=s1), abs=ORACLE_TOL)
    assert len(set(np.round(values, 9))) == 3  # the three starts really differ in this game


def test_evaluate_policy_validates_policies():
    g = _tiny_game(0, 2, 2, 2, 2)
    mu = np.full((2, 2, 2), 0.5)
    with pytest.raises(GameError, match="policy_1 must have shape"):
        evaluate_policy(g, mu, np.full((2, 2, 3), 1 / 3))
    with pytest.raises(GameError, match="policy_0 rows must sum to 1"):
        evaluate_policy(g, mu * 1.5, mu)


# ----------------------------------------------------------------------------- (b) NE-gap >= 0


def test_ne_gap_nonnegative_and_values_ordered():
    rng = np.random.default_rng(2023)
    count = 0
    for H, S, A, B in [(1, 1, 2, 2), (2, 3, 2, 2), (4, 3, 3, 2), (6, 4, 2, 4)]:
        for _ in range(3):
            g = random_zero_sum_game(H, S, (A, B), rng)
            for kind in ("dirichlet", "sparse", "pure"):
                for _ in range(20):
                    mu, nu = _random_policy(rng, H, S, A, kind), _random_policy(rng, H, S, B, kind)
                    ev = evaluate_policy(g, mu, nu)
                    assert ev.ne_gap >= -1e-12
                    assert ev.best_response_value_min <= ev.value + 1e-12
                    assert ev.value <= ev.best_response_value_max + 1e-12
                    count += 1
    assert count == 720


def test_perturbed_rewards_shift_values_by_horizon_times_constant():
    # Adding c to every reward adds H*c to the value and both best-response values; gap unchanged.
    g = _tiny_game(8, 4, 3, 2, 2)
    rng = np.random.default_rng(8)
    mu, nu = _random_policy(rng, 4, 3, 2), _random_policy(rng, 4, 3, 2)
    e1, e2 = evaluate_policy(g, mu, nu), evaluate_policy(g.with_rewards(g.rewards + 0.3), mu, nu)
    assert e2.value - e1.value == pytest.approx(1.2, abs=1e-12)
    assert e2.best_response_value_max - e1.best_response_value_max == pytest.approx(1.2, abs=1e-12)
    assert e2.best_response_value_min - e1.best_response_value_min == pytest.approx(1.2, abs=1e-12)
    assert e2.ne_gap == pytest.approx(e1.ne_gap, abs=1e-12)


# ----------------------------------------------------------------------------- (c) Nash equilibrium


def _assert_matrix_equilibrium(M, value, x, y, tol=LP_TOL):
    """LP optimality certificate: x guarantees >= value against every column, y <= value against every row."""
    M = np.asarray(M, dtype=float)
    assert np.all(x >= 0) and np.all(y >= 0)
    assert x.sum() == pytest.approx(1.0, abs=1e-12) and y.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.min(x @ M) >= value - tol
    assert np.max(M @ y) <= value + tol


def _closed_form_2x2(M):
    """Mixed equilibrium of a 2x2 game without saddle point: v = (ad - bc)/(a + d - b - c)."""
    (a, b), (c, d) = M
    den = a + d - b - c
    v = (a * d - b * c) / den
    p = (d - c) / den  # probability of row 0
    q = (d - b) / den  # probability of column 0
    return v, np.array([p, 1 - p]), np.array([q, 1 - q])


def test_closed_form_helper_by_hand():
    # F.1 state s0 matrix [[0.5, 0], [-1, 0.5]]: v = (0.25 - 0)/(0.5 + 0.5 - 0 + 1) = 0.125,
    # x = (0.75, 0.25), y = (0.25, 0.75).
    v, x, y = _closed_form_2x2([[0.5, 0.0], [-1.0, 0.5]])
    assert v == 0.125
    np.testing.assert_array_equal(x, [0.75, 0.25])
    np.testing.assert_array_equal(y, [0.25, 0.75])


def test_solve_matrix_game_matching_pennies():
    v, x, y = solve_matrix_game(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert v == pytest.approx(0.0, abs=LP_TOL)
    np.testing.assert_allclose(x, [0.5, 0.5], atol=LP_TOL)
    np.testing.assert_allclose(y, [0.5, 0.5], atol=LP_TOL)


def test_solve_matrix_game_saddle_point():
    # Row mins (2, 0) -> maxmin 2 at row 0; column maxes (4, 2, 5) -> minmax 2 at column 1.
    # Row 0 strictly dominates row 1 and column 1 strictly dominates for the min-player: unique pure NE.
    M = np.array([[4.0, 2.0, 5.0], [1.0, 0.0, 3.0]])
    v, x, y = solve_matrix_game(M)
    assert v == pytest.approx(2.0, abs=LP_TOL)
    np.testing.assert_allclose(x, [1.0, 0.0], atol=LP_TOL)
    np.testing.assert_allclose(y, [0.0, 1.0, 0.0], atol=LP_TOL)


def test_solve_matrix_game_f1_stage_games_closed_form():
    for M in ([[0.5, 0.0], [-1.0, 0.5]], [[0.5, 0.0], [0.2, 1.0]]):  # NOTES.md F.1, states s0 and s1
        v_ref, x_ref, y_ref = _closed_form_2x2(M)
        v, x, y = solve_matrix_game(np.array(M))
        assert v == pytest.approx(v_ref, abs=LP_TOL)
        np.testing.assert_allclose(x, x_ref, atol=LP_TOL)
        np.testing.assert_allclose(y, y_ref, atol=LP_TOL)
    # s1 by hand: (0.5*1 - 0*0.2)/(0.5 + 1 - 0 - 0.2) = 5/13
    assert solve_matrix_game(np.array([[0.5, 0.0], [0.2, 1.0]]))[0] == pytest.approx(5 / 13, abs=LP_TOL)


def test_solve_matrix_game_random_certificates():
    rng = np.random.default_rng(31)
    for A, B in [(1, 1), (1, 4), (4, 1), (2, 2), (3, 5), (6, 6)]:
        for _ in range(5):
            M = rng.normal(size=(A, B))
            v, x, y = solve_matrix_game(M)
            _assert_matrix_equilibrium(M, v, x, y)
            assert x.shape == (A,) and y.shape == (B,)
            # pure maxmin <= value <= pure minmax
            assert M.min(axis=1).max() - LP_TOL <= v <= M.max(axis=0).min() + LP_TOL


def test_solve_matrix_game_invariances():
    # value(c*M + d) = c*value(M) + d for c > 0; value(-M^T) = -value(M).
    rng = np.random.default_rng(32)
    M = rng.normal(size=(3, 4))
    v = solve_matrix_game(M)[0]
    assert solve_matrix_game(2.5 * M + 1.0)[0] == pytest.approx(2.5 * v + 1.0, abs=LP_TOL)
    assert solve_matrix_game(-M.T)[0] == pytest.approx(-v, abs=LP_TOL)


def test_f1_game_h1_nash_value_by_hand():
    # H = 1 from s0: the stage game [[0.5, 0], [-1, 0.5]] has no saddle point (maxmin 0 < minmax 0.5);
    # v = (ad - bc)/(a + d - b - c) = 0.25 / 2 = 0.125, mu* = (0.75, 0.25), nu* = (0.25, 0.75).
    sol = nash_equilibrium(paper_zero_sum_game(1))
    assert sol.value == pytest.approx(0.125, abs=LP_TOL)
    np.testing.assert_allclose(sol.mu[0, 0], [0.75, 0.25], atol=LP_TOL)
    np.testing.assert_allclose(sol.nu[0, 0], [0.25, 0.75], atol=LP_TOL)
    np.testing.assert_allclose(sol.values[:, 1], [5 / 13, 0.0], atol=LP_TOL)  # state s1 by hand
    np.testing.assert_array_equal(sol.values[1], 0.0)


def test_f1_game_h2_nash_value_by_hand():
    # H = 2: V_2 = (1/8, 5/13). Stage games at h = 1 add P V_2: matching actions stay w.p. 0.9.
    v2 = np.array([0.125, 5 / 13])
    stay, switch = 0.9 * v2 + 0.1 * v2[::-1], 0.1 * v2 + 0.9 * v2[::-1]
    Q0 = np.array([[0.5 + stay[0], 0.0 + switch[0]], [-1.0 + switch[0], 0.5 + stay[0]]])
    Q1 = np.array([[0.5 + stay[1], 0.0 + switch[1]], [0.2 + switch[1], 1.0 + stay[1]]])
    v_s0 = _closed_form_2x2(Q0)[0]
    v_s1 = _closed_form_2x2(Q1)[0]
    # the closed form applies: no saddle point in either stage game
    for Q, v in ((Q0, v_s0), (Q1, v_s1)):
        assert Q.min(axis=1).max() < v < Q.max(axis=0).min()
    sol = nash_equilibrium(paper_zero_sum_game(2))
    np.testing.assert_allclose(sol.values, [[v_s0, v_s1], [0.125, 5 / 13], [0.0, 0.0]], atol=LP_TOL)
    assert sol.value == pytest.approx(v_s0, abs=LP_TOL)


@pytest.mark.parametrize(
    "game",
    [
        paper_zero_sum_game(10),
        _tiny_game(11, 3, 3, 2, 2, 2),
        _tiny_game(12, 5, 4, 3, 2, 1),
        random_zero_sum_game(6, 5, (4, 3), np.random.default_rng(13)),
    ],
    ids=["F1-H10", "tiny-H3", "H5-S4-A3-B2", "H6-S5-A4-B3"],
)
def test_nash_equilibrium_has_zero_gap(game):
    sol = nash_equilibrium(game)
    H, S, A, B = game.shape
    assert sol.mu.shape == (H, S, A) and sol.nu.shape == (H, S, B) and sol.values.shape == (H + 1, S)
    ev = evaluate_policy(game, sol.mu, sol.nu)
    assert abs(ev.ne_gap) <= LP_TOL
    assert ev.value == pytest.approx(sol.value, abs=LP_TOL)
    assert sol.value == sol.values[0, game.initial_state]
    # the value table is right from every start state, not only s_1
    for s in range(S):
        g_s = ZeroSumGame(game.rewards, game.transitions, s)
        ev_s = evaluate_policy(g_s, sol.mu, sol.nu)
        assert ev_s.value == pytest.approx(sol.values[0, s], abs=LP_TOL)
        assert abs(ev_s.ne_gap) <= LP_TOL
    # each (h, s) strategy pair is an equilibrium of its stage game Q*_h(s)
    for h in range(H):
        Q = game.rewards[h] + game.transitions[h] @ sol.values[h + 1]
        for s in range(S):
            _assert_matrix_equilibrium(Q[s], sol.values[h, s], sol.mu[h, s], sol.nu[h, s])


def test_nash_equilibrium_matches_brute_force_best_responses():
    # Brute-force oracle: the LP equilibrium's best-response values computed by enumeration equal V*.
    for seed, H, S, A, B, s1 in TINY_CASES[:4]:
        g = _tiny_game(seed, H, S, A, B, s1)
        sol = nash_equilibrium(g)
        br_max, br_min = _best_responses_brute_force(g, sol.mu, sol.nu)
        assert br_max == pytest.approx(sol.value, abs=LP_TOL)
        assert br_min == pytest.approx(sol.value, abs=LP_TOL)


def test_nash_value_between_best_response_values():
    # For any (mu, nu): V^{mu,dag} <= V* <= V^{dag,nu}.
    rng = np.random.default_rng(77)
    for H, S, A, B in [(2, 2, 2, 2), (4, 3, 3, 2), (10, 2, 2, 2)]:
        g = random_zero_sum_game(H, S, (A, B), rng) if H != 10 else paper_zero_sum_game(10)
        sol = nash_equilibrium(g)
        v_star = sol.value
        for kind in ("dirichlet", "sparse", "pure"):
            for _ in range(15):
                mu, nu = _random_policy(rng, H, S, A, kind), _random_policy(rng, H, S, B, kind)
                ev = evaluate_policy(g, mu, nu)
                assert ev.best_response_value_min <= v_star + LP_TOL
                assert v_star <= ev.best_response_value_max + LP_TOL
                # one-sided: against nu*, no mu beats V*; against mu*, no nu goes below V*
                assert evaluate_policy(g, mu, sol.nu).value <= v_star + LP_TOL
                assert evaluate_policy(g, sol.mu, nu).value >= v_star - LP_TOL


# ----------------------------------------------------------------------------- (d) compiled vs .py_func


def _run_block(kernel, game, mus, nus, ncol_blocks=None):
    H, S, A, B = game.shape
    n_used = len(mus)
    nb = ncol_blocks or n_used
    mu_blk = np.zeros((nb, H, S, A))
    nu_blk = np.zeros((nb, H, S, B))
    mu_blk[:n_used], nu_blk[:n_used] = mus, nus
    out = np.full((nb, 3), np.nan)
    kernel(
        game.rewards,
        game.transitions.reshape(H, S * A * B, S),
        game.initial_state,
        mu_blk,
        nu_blk,
        n_used,
        np.zeros((S, 3 * nb)),
        np.zeros((S, 3 * nb)),
        np.empty((S * A * B, 3 * nb)),
        out,
    )
    return out


def test_kernel_compiled_matches_py_func():
    g = _tiny_game(21, 2, 3, 2, 3, 1)  # A != B; 3^(H*S) = 729 deterministic min-player policies
    rng = np.random.default_rng(21)
    mus = [_random_policy(rng, 2, 3, 2) for _ in range(3)]
    nus = [_random_policy(rng, 2, 3, 3) for _ in range(3)]
    compiled = _run_block(_evaluate_block, g, mus, nus)
    python = _run_block(_evaluate_block.py_func, g, mus, nus)
    np.testing.assert_allclose(compiled, python, rtol=0, atol=1e-12)
    # and both agree with the brute-force oracle, policy by policy
    for j in range(3):
        ref = (_value_by_recursion(g, mus[j], nus[j]), *_best_responses_brute_force(g, mus[j], nus[j]))
        np.testing.assert_allclose(python[j], ref, rtol=0, atol=ORACLE_TOL)


def test_kernel_block_with_unused_slots():
    # A block of 4 slots with 2 used: used rows match single evaluations, unused rows stay untouched.
    g = _tiny_game(22, 3, 2, 2, 2, 0)
    rng = np.random.default_rng(22)
    mus = [_random_policy(rng, 3, 2, 2) for _ in range(2)]
    nus = [_random_policy(rng, 3, 2, 2) for _ in range(2)]
    for kernel in (_evaluate_block, _evaluate_block.py_func):
        out = _run_block(kernel, g, mus, nus, ncol_blocks=4)
        for j in range(2):
            ev = evaluate_policy(g, mus[j], nus[j])
            np.testing.assert_allclose(
                out[j], [ev.value, ev.best_response_value_max, ev.best_response_value_min], rtol=0, atol=1e-12
            )
        assert np.isnan(out[2:]).all()
