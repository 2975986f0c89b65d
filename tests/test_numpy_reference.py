"""The Numba kernel of Algorithm 1 against the independent NumPy reference (benchmarks/numpy_algorithm1.py).

Both implement the same deterministic algorithm in float64, only the order of floating-point
operations differs, so the curves and outputs must agree to rounding error. Tolerances (absolute,
rtol = 0): CURVE_ATOL = 1e-10 for gap and value (values are O(1)-O(10)), POLICY_ATOL = 1e-10 for
mu_bar, nu_bar (probabilities), and DAGGER_ATOL = 1e-12 for the best fixed policies in hindsight,
whose entries are 0, 1 or 1/k, so any disagreement is a different tie decision or a different argmax,
never rounding. Observed differences when written: below 1e-14 everywhere.
"""

import numpy as np
import pytest

from benchmarks.numpy_algorithm1 import best_in_hindsight_numpy, evaluate_numpy, solve_numpy
from solvers.algorithm1 import solve
from solvers.evaluate import evaluate_policy
from solvers.generators import paper_zero_sum_game, random_zero_sum_game

CURVE_ATOL = 1e-10
POLICY_ATOL = 1e-10
DAGGER_ATOL = 1e-12

F1 = dict(game=lambda: paper_zero_sum_game(10), T=300, eta=0.02)
RANDOM = dict(game=lambda: random_zero_sum_game(3, 4, (3, 2), np.random.default_rng(20231)), T=200, eta=0.1)

CASES = [
    pytest.param(F1, True, None, id="F1-reset-every-iteration"),
    pytest.param(F1, False, None, id="F1-noreset-every-iteration"),
    pytest.param(F1, True, 7, id="F1-reset-every-7"),
    pytest.param(RANDOM, True, 7, id="random-H3S4A3B2-reset-every-7"),
    pytest.param(RANDOM, False, 7, id="random-H3S4A3B2-noreset-every-7"),
    pytest.param(RANDOM, True, None, id="random-H3S4A3B2-reset-every-iteration"),
]


def _close(name, got, want, atol):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    assert err <= atol, f"{name}: max |kernel - numpy| = {err:.3e} > {atol:g}"


@pytest.mark.parametrize("case, stage_reset, eval_every", CASES)
def test_kernel_matches_numpy_reference(case, stage_reset, eval_every):
    game = case["game"]()
    T, eta = case["T"], case["eta"]
    kern = solve(game, T, eta, stage_reset=stage_reset, eval_every=eval_every)
    ref = solve_numpy(game, T, eta, stage_reset=stage_reset, eval_every=eval_every)

    np.testing.assert_array_equal(kern.iterations, ref["iterations"])
    expected_its = np.arange(1, T + 1) if eval_every is None else np.r_[np.arange(eval_every, T + 1, eval_every), T]
    np.testing.assert_array_equal(np.unique(kern.iterations), np.unique(expected_its))
    np.testing.assert_array_equal(kern.stage_lengths, ref["stage_lengths"])
    assert int(kern.stage_lengths.sum()) == T

    _close("gap", kern.gap, ref["gap"], CURVE_ATOL)
    _close("value", kern.value, ref["value"], CURVE_ATOL)
    _close("br_max", kern.best_response_value_max, ref["best_response_value_max"], CURVE_ATOL)
    _close("br_min", kern.best_response_value_min, ref["best_response_value_min"], CURVE_ATOL)
    _close("mu_bar", kern.mu_bar, ref["mu_bar"], POLICY_ATOL)
    _close("nu_bar", kern.nu_bar, ref["nu_bar"], POLICY_ATOL)
    _close("mu_dagger", kern.mu_dagger, ref["mu_dagger"], DAGGER_ATOL)
    _close("nu_dagger", kern.nu_dagger, ref["nu_dagger"], DAGGER_ATOL)

    # The comparison is not vacuous: the curves move, the policies leave uniform, stage 1 is an
    # all-tie (Q^1 = 0, uniform best response) and later stages have pure best responses.
    H, S, A, B = game.shape
    assert np.ptp(kern.gap) > 1e-3 and np.ptp(kern.value) > 1e-3
    assert np.all(kern.gap >= -1e-12)
    assert np.max(np.abs(kern.mu_bar - 1.0 / A)) > 1e-3
    np.testing.assert_allclose(kern.mu_dagger[0], 1.0 / A, rtol=0, atol=0)
    np.testing.assert_allclose(kern.nu_dagger[0], 1.0 / B, rtol=0, atol=0)
    assert np.any(kern.mu_dagger[1:].max(axis=-1) == 1.0)
    assert np.any(kern.nu_dagger[1:].max(axis=-1) == 1.0)


def test_first_stage_is_frozen_at_uniform():
    """With Q^1 = 0 nothing moves in stage 1 (length H): the running average is uniform for t <= H."""
    game = paper_zero_sum_game(10)
    ref = solve_numpy(game, 10, 0.02)
    kern = solve(game, 10, 0.02)
    uni = evaluate_policy(game, np.full((10, 2, 2), 0.5), np.full((10, 2, 2), 0.5))
    np.testing.assert_allclose(ref["gap"], uni.ne_gap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(kern.gap, uni.ne_gap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref["mu_bar"], 0.5, rtol=0, atol=1e-15)
    assert uni.ne_gap > 1.0


def test_numpy_evaluator_matches_project_evaluator():
    """The reference's vectorised backward induction agrees with solvers.evaluate on random policies."""
    rng = np.random.default_rng(7)
    game = random_zero_sum_game(4, 5, (3, 2), rng)
    mu = rng.dirichlet(np.ones(3), size=(4, 5))
    nu = rng.dirichlet(np.ones(2), size=(4, 5))
    H, S, A, B = game.shape
    got = evaluate_numpy(game.rewards, game.transitions.reshape(H, S * A * B, S), game.initial_state, mu, nu)
    want = evaluate_policy(game, mu, nu)
    np.testing.assert_allclose(got, (want.value, want.best_response_value_max, want.best_response_value_min),
                               rtol=0, atol=1e-12)
    assert got[1] - got[2] > 0.0


def test_best_in_hindsight_tie_rule():
    G = np.array([[1.0, 1.0 - 1e-12, 0.5], [0.0, 0.0, 0.0], [-2.0, 3.0, 1.0]])
    out = best_in_hindsight_numpy(G, tie_rtol=1e-9)
    np.testing.assert_array_equal(out, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
