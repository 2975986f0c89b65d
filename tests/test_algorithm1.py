"""Algorithm 1: stage schedule, one-step checks against plain NumPy, fixed points, tie rule,
convergence and validity of the Theorem 1 bound."""

from fractions import Fraction

import numpy as np
import pytest

from solvers import algorithm1
from solvers.algorithm1 import _best_in_hindsight, _omwu_cell, solve
from solvers.evaluate import evaluate_policy, nash_equilibrium, solve_matrix_game
from solvers.games import ZeroSumGame
from solvers.generators import paper_zero_sum_game, random_zero_sum_game
from solvers.meta import solve_with_bound
from solvers.schedule import eval_iterations, stage_lengths


def matrix_game(M) -> ZeroSumGame:
    """H = 1, S = 1: a matrix game."""
    M = np.asarray(M, dtype=float)
    A, B = M.shape
    return ZeroSumGame(M[None, None], np.ones((1, 1, A, B, 1)), 0)


# ----------------------------------------------------------------------------- schedules


def test_stage_lengths_match_exact_recursion():
    for H in (1, 2, 3, 10):
        for T in (1, 7, 100, 1000):
            L, total, expected = Fraction(H), 0, []
            while total < T:
                expected.append(min(int(L), T - total))
                total += expected[-1]
                L = Fraction(int(L * (1 + Fraction(1, H))))
            assert stage_lengths(H, T).tolist() == expected
            assert stage_lengths(H, T).sum() == T


def test_stage_lengths_hand_worked():
    # H = 10: 10, 11, 12, ..., 20, 22 (floor(1.1 * 20)), 24, 26, 28, 30, 33 ...
    assert stage_lengths(10, 10_000)[:17].tolist() == [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28, 30, 33]
    assert stage_lengths(2, 20).tolist() == [2, 3, 4, 6, 5]  # last stage truncated from 9 to 5
    assert len(stage_lengths(10, 1000)) == 29


def test_eval_iterations():
    assert eval_iterations(5).tolist() == [1, 2, 3, 4, 5]
    assert eval_iterations(10, every=3).tolist() == [3, 6, 9, 10]
    its = eval_iterations(1000, log_points=20)
    assert its[0] == 1 and its[-1] == 1000 and np.all(np.diff(its) > 0) and len(its) <= 20


# ----------------------------------------------------------------------------- one step in plain NumPy


@pytest.mark.parametrize("kernel", [_omwu_cell, _omwu_cell.py_func])
def test_omwu_cell_against_numpy(kernel):
    rng = np.random.default_rng(0)
    p_hat = rng.dirichlet(np.ones(4))
    g = rng.normal(size=4)
    eta = 0.3
    hat_new = p_hat * np.exp(eta * g)
    hat_new /= hat_new.sum()
    pol_new = hat_new * np.exp(eta * g)
    pol_new /= pol_new.sum()
    # the linear fast path (all log_hat > -600) and the exact log-space path (forced by one tiny entry)
    for p0 in (p_hat, np.r_[p_hat[:3] * (1 - 1e-300), 1e-300]):
        h_new = p0 * np.exp(eta * g)
        h_new /= h_new.sum()
        q_new = h_new * np.exp(eta * g)
        q_new /= q_new.sum()
        log_hat, hat, pol = np.log(p0), p0.copy(), np.empty(4)
        kernel(log_hat, hat, pol, g, eta, 4)
        np.testing.assert_allclose(np.exp(log_hat), h_new, rtol=1e-13)
        np.testing.assert_allclose(hat, h_new, rtol=1e-13)
        np.testing.assert_allclose(pol, q_new, rtol=1e-13)
    np.testing.assert_allclose(h_new[:3] / h_new[:3].sum(), hat_new[:3] / hat_new[:3].sum(), rtol=1e-12)


def test_omwu_cell_log_space_survives_huge_eta_q():
    log_hat, hat, pol = np.log(np.full(3, 1 / 3)), np.full(3, 1 / 3), np.empty(3)
    _omwu_cell(log_hat, hat, pol, np.array([1e5, 0.0, -1e5]), 1e4, 3)  # eta * g = 1e9: exp would overflow
    assert np.all(np.isfinite(log_hat)) and np.all(np.isfinite(pol))
    np.testing.assert_allclose(pol, [1.0, 0.0, 0.0], atol=1e-300)
    assert log_hat[2] == pytest.approx(-2e9, rel=1e-12)  # kept exactly in log space, not lost to underflow
    # the action can recover: reversed predictions move the mass back (a linear-space update could not)
    for _ in range(3):
        _omwu_cell(log_hat, hat, pol, np.array([-1e5, 0.0, 1e5]), 1e4, 3)
    assert pol[2] == pytest.approx(1.0) and np.all(np.isfinite(log_hat))


@pytest.mark.parametrize("stage_reset", [True, False])
def test_first_iterations_of_a_matrix_game_by_hand(stage_reset):
    """H = 1: L = 1, 2, ...; stage 1 cannot move (Q^1 = 0); Q^2 = r; iterations 2 and 3 by hand."""
    rng = np.random.default_rng(1)
    M = rng.normal(size=(3, 2))
    g = matrix_game(M)
    eta = 0.4
    res = solve(g, 3, eta, stage_reset=stage_reset)
    u_a, u_b = np.full(3, 1 / 3), np.full(2, 1 / 2)
    # iteration 1 (stage 1, Q = 0): policies stay uniform; the stage-2 start predictions use Q^2 = M
    mu1, nu1 = u_a, u_b
    # iteration 2 (stage 2 start; with or without reset the iterates are uniform here)
    gm, gn = M @ nu1, -(mu1 @ M)
    hat_mu2 = u_a * np.exp(eta * gm); hat_mu2 /= hat_mu2.sum()
    hat_nu2 = u_b * np.exp(eta * gn); hat_nu2 /= hat_nu2.sum()
    mu2 = hat_mu2 * np.exp(eta * gm); mu2 /= mu2.sum()
    nu2 = hat_nu2 * np.exp(eta * gn); nu2 /= nu2.sum()
    # iteration 3
    gm, gn = M @ nu2, -(mu2 @ M)
    hat_mu3 = hat_mu2 * np.exp(eta * gm); hat_mu3 /= hat_mu3.sum()
    hat_nu3 = hat_nu2 * np.exp(eta * gn); hat_nu3 /= hat_nu3.sum()
    mu3 = hat_mu3 * np.exp(eta * gm); mu3 /= mu3.sum()
    nu3 = hat_nu3 * np.exp(eta * gn); nu3 /= nu3.sum()
    np.testing.assert_allclose(res.mu_bar[0, 0], (mu1 + mu2 + mu3) / 3, rtol=1e-13)
    np.testing.assert_allclose(res.nu_bar[0, 0], (nu1 + nu2 + nu3) / 3, rtol=1e-13)
    # running-average curve against the independent evaluator
    for t, (ms, ns) in enumerate([(mu1, nu1), (mu1 + mu2, nu1 + nu2), (mu1 + mu2 + mu3, nu1 + nu2 + nu3)], start=1):
        ev = evaluate_policy(g, (ms / t)[None, None], (ns / t)[None, None])
        assert res.gap[t - 1] == pytest.approx(ev.ne_gap, abs=1e-13)
        assert res.value[t - 1] == pytest.approx(ev.value, abs=1e-13)
    # best fixed policy in hindsight of stage 2 = argmax of M (nu2 + nu3), a pure action (no tie)
    assert res.mu_dagger[1, 0, 0].tolist() == np.eye(3)[np.argmax(M @ (nu2 + nu3))].tolist()
    assert res.nu_dagger[1, 0, 0].tolist() == np.eye(2)[np.argmin((mu2 + mu3) @ M)].tolist()
    # stage 1: Q^1 = 0, every action ties: uniform by default
    np.testing.assert_allclose(res.mu_dagger[0, 0, 0], u_a)


def test_kernel_and_py_func_agree(monkeypatch):
    g = random_zero_sum_game(3, 3, (2, 3), np.random.default_rng(2))
    compiled = solve(g, 40, 0.2, eval_every=3)
    monkeypatch.setattr(algorithm1, "_algorithm1_kernel", algorithm1._algorithm1_kernel.py_func)
    python = solve(g, 40, 0.2, eval_every=3)
    np.testing.assert_allclose(python.gap, compiled.gap, atol=1e-12)
    np.testing.assert_allclose(python.mu_bar, compiled.mu_bar, atol=1e-13)
    np.testing.assert_array_equal(python.mu_dagger, compiled.mu_dagger)


# ----------------------------------------------------------------------------- fixed points, ties, schedule


@pytest.mark.parametrize("stage_reset", [True, False])
def test_equilibrium_is_a_fixed_point(stage_reset):
    """A fully mixed equilibrium of a matrix game: the predictions are constant across actions, so
    the multiplicative updates do not move it and the NE-gap stays 0 at every iteration.

    eta = 0.05 keeps eta * max|M| = 0.15 in the stable range (Theorem 1: eta <= 1/8 for payoffs in
    [0, 1]); at eta = 0.5 the optimistic dynamics around this equilibrium are unstable and rounding
    noise of 1e-16 grows to a gap of 1e-2 within 200 iterations (measured), whatever the arithmetic."""
    M = np.array([[3.0, -1.0], [-2.0, 1.0]])  # no saddle point
    value, x, y = solve_matrix_game(M)
    res = solve(matrix_game(M), 2000, 0.05, mu_init=x[None, None], nu_init=y[None, None], stage_reset=stage_reset)
    np.testing.assert_allclose(res.mu_bar[0, 0], x, atol=1e-12)
    np.testing.assert_allclose(res.nu_bar[0, 0], y, atol=1e-12)
    assert np.max(np.abs(res.gap)) < 1e-12
    assert res.value[-1] == pytest.approx(value, abs=1e-9)


def test_tie_rule():
    out = np.empty(4)
    _best_in_hindsight(np.array([1.0, 3.0, 3.0, 2.0]), out, False, 1e-9)
    assert out.tolist() == [0.0, 0.5, 0.5, 0.0]
    _best_in_hindsight(np.array([1.0, 3.0, 3.0, 2.0]), out, True, 1e-9)
    assert out.tolist() == [0.0, 1.0, 0.0, 0.0]
    _best_in_hindsight(np.array([1.0, 3.0, 3.0 - 1e-12, 2.0]), out, False, 1e-9)  # within rtol: tied
    assert out.tolist() == [0.0, 0.5, 0.5, 0.0]
    _best_in_hindsight(np.array([1.0, 3.0, 3.0 - 1e-12, 2.0]), out, False, 0.0)  # exact only
    assert out.tolist() == [0.0, 1.0, 0.0, 0.0]
    _best_in_hindsight(np.zeros(3), out[:3], False, 1e-9)  # Q^1 = 0: everything ties
    np.testing.assert_allclose(out[:3], 1 / 3)


def test_stage_reset_reading_differs_and_first_stage_is_frozen():
    g = paper_zero_sum_game(10)
    a = solve(g, 200, 0.02, stage_reset=True)
    b = solve(g, 200, 0.02, stage_reset=False)
    # stage 1 (10 iterations): Q^1 = 0, so the uniform running average cannot move
    assert np.all(a.gap[:10] == a.gap[0]) and np.all(b.gap[:10] == b.gap[0])
    assert a.gap[0] == pytest.approx(3.875, abs=1e-12)  # uniform policies on F.1, H = 10
    assert b.gap[-1] < a.gap[-1] - 0.1  # the no-reset variant converges much faster here (NOTES.md)


def test_eval_schedules_agree_with_every_iteration():
    g = random_zero_sum_game(4, 3, (3, 2), np.random.default_rng(3))
    full = solve(g, 300, 0.05)
    for kw in (dict(eval_every=7), dict(eval_log_points=15)):
        part = solve(g, 300, 0.05, **kw)
        np.testing.assert_allclose(part.gap, full.gap[part.iterations - 1], atol=1e-12)
        assert part.iterations[-1] == 300


def test_block_evaluation_size_does_not_change_curves(monkeypatch):
    g = random_zero_sum_game(3, 4, (2, 2), np.random.default_rng(4))
    ref = solve(g, 100, 0.1)
    monkeypatch.setattr(algorithm1, "EVAL_BLOCK", 1)
    np.testing.assert_allclose(solve(g, 100, 0.1).gap, ref.gap, atol=1e-12)


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(eta=0.0), dict(eta=-1.0), dict(eta=float("nan")),
                                 dict(tie_break="random"), dict(tie_rtol=-1.0)])
def test_bad_arguments(bad):
    kw = dict(iterations=10, eta=0.1) | bad
    with pytest.raises(ValueError):
        solve(paper_zero_sum_game(2), **kw)


# ----------------------------------------------------------------------------- convergence and Theorem 1


@pytest.mark.slow
def test_converges_at_rate_one_over_t_on_a_matrix_game():
    """H = 1, eta = 0.1 (<= 1/8): optimistic MWU's average converges like 1/T. Measured on this game:
    no reset 0.0217 (T=1e3) -> 0.00217 (T=1e4); with the stage reset (stages 1, 2, 4, ...) 0.0997 -> 0.0185."""
    M = np.random.default_rng(5).random((3, 3))
    v, _, _ = solve_matrix_game(M)
    for stage_reset, ratio in ((False, 0.15), (True, 0.3)):
        res = solve(matrix_game(M), 10_000, 0.1, stage_reset=stage_reset, eval_every=1000)
        assert res.iterations[0] == 1000 and res.iterations[-1] == 10_000
        assert res.gap[-1] <= ratio * res.gap[0]
        assert abs(res.value[-1] - v) <= res.gap[-1]  # V^{mu,dag} <= v <= V^{dag,nu} and the value lies between


@pytest.mark.slow
def test_no_reset_variant_converges_on_f1():
    """F.1, H = 10, eta = 0.02, no reset: K=1 gap below 0.5 at T = 1000 (0.36 measured)."""
    g = paper_zero_sum_game(10)
    res = solve(g, 1000, 0.02, stage_reset=False)
    nash = nash_equilibrium(g).value
    assert res.gap[-1] < 0.5
    assert res.best_response_value_min[-1] - 1e-12 <= nash <= res.best_response_value_max[-1] + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_gap_never_exceeds_theorem1_bound_when_conditions_hold(seed):
    rng = np.random.default_rng(100 + seed)
    H = int(rng.integers(1, 4))
    g = random_zero_sum_game(H, int(rng.integers(1, 4)), (int(rng.integers(2, 4)), int(rng.integers(2, 4))), rng)
    eta = 1.0 / (8 * H * H)
    for stage_reset in (True, False):
        run = solve_with_bound(g, 400, eta, stage_reset=stage_reset)
        assert run.bound.eta_ok and run.bound.conditions_hold == stage_reset  # the proof analyses the reset
        assert np.all(run.result.gap >= -1e-12)
        if stage_reset:
            assert np.all(run.result.gap <= run.bound.kl_form)
        assert run.bound.kl_form <= run.bound.uniform_form * (1 + 1e-12)


def test_parallel_cell_sweep_gives_identical_results(monkeypatch):
    """Large games run each iteration's cells on all Numba threads: the results are bitwise those of the
    serial sweep (checked here by lowering the size threshold on a small random game)."""
    import numba

    from solvers import algorithm1
    from solvers.generators import random_zero_sum_game

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: the parallel sweep is never used")
    game = random_zero_sum_game(3, 40, (3, 2), np.random.default_rng(5))
    serial = algorithm1.solve(game, 150, 0.05, eval_every=10)
    monkeypatch.setattr(algorithm1, "PARALLEL_CELLS", 1)
    parallel = algorithm1.solve(game, 150, 0.05, eval_every=10)
    for name in ("gap", "value", "mu_bar", "nu_bar", "mu_dagger", "nu_dagger"):
        assert np.array_equal(getattr(serial, name), getattr(parallel, name)), name
