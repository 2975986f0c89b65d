"""Tests for solvers/generators.py against NOTES.md "Simulations" F.1 and the generators' contracts."""

from __future__ import annotations

import numpy as np
import pytest

from solvers.games import GameError, ZeroSumGame
from solvers.generators import FAMILIES, game_family, paper_zero_sum_game, perturb_rewards, random_zero_sum_game

# NOTES.md, "Simulations", F.1 (paper Appendix F.1): max-player rewards, rows a0, a1; columns b0, b1.
F1_S0 = [[0.5, 0.0], [-1.0, 0.5]]
F1_S1 = [[0.5, 0.0], [0.2, 1.0]]


# ----------------------------------------------------------------------------- F.1 base game


@pytest.mark.parametrize("horizon", [1, 3, 10])
def test_paper_game_matches_notes(horizon):
    g = paper_zero_sum_game(horizon)
    assert isinstance(g, ZeroSumGame)
    assert g.shape == (horizon, 2, 2, 2)
    assert g.initial_state == 0
    for h in range(horizon):
        np.testing.assert_array_equal(g.rewards[h, 0], F1_S0)
        np.testing.assert_array_equal(g.rewards[h, 1], F1_S1)
        for s in range(2):
            other = 1 - s
            for a in range(2):
                for b in range(2):
                    stay = 0.9 if a == b else 0.1  # matching (a0,b0), (a1,b1) stay w.p. 0.9
                    assert g.transitions[h, s, a, b, s] == stay, (h, s, a, b)
                    assert g.transitions[h, s, a, b, other] == pytest.approx(1.0 - stay, abs=1e-15), (h, s, a, b)


def test_paper_game_written_out_in_full():
    # The whole transition kernel of one step, entry by entry: P[s, a, b] = [P(s0), P(s1)].
    expected = np.array(
        [
            [[[0.9, 0.1], [0.1, 0.9]], [[0.1, 0.9], [0.9, 0.1]]],  # from s0
            [[[0.1, 0.9], [0.9, 0.1]], [[0.9, 0.1], [0.1, 0.9]]],  # from s1
        ]
    )
    g = paper_zero_sum_game(4)
    np.testing.assert_allclose(g.transitions, np.broadcast_to(expected, (4, 2, 2, 2, 2)), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(g.rewards, np.broadcast_to([F1_S0, F1_S1], (4, 2, 2, 2)))


def test_paper_game_default_horizon_is_ten():
    assert paper_zero_sum_game().horizon == 10  # NOTES.md F.1: H = 10


@pytest.mark.parametrize("horizon", [0, -1, 2.0, True, "3"])
def test_paper_game_bad_horizon(horizon):
    with pytest.raises(GameError, match="horizon must be a positive integer"):
        paper_zero_sum_game(horizon)


# ----------------------------------------------------------------------------- perturbation


def test_perturbation_is_one_draw_per_sab_shared_over_h():
    base = paper_zero_sum_game(6)
    g = perturb_rewards(base, 0.1, np.random.default_rng(11))
    diff = g.rewards - base.rewards
    # constant along h (up to the rounding of adding the same eps to the same base entries)
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), rtol=0, atol=1e-15)
    # eight distinct draws, none zero
    assert len(np.unique(np.round(diff[0], 12))) == 8
    assert np.all(np.abs(diff[0]) > 0)
    np.testing.assert_array_equal(g.transitions, base.transitions)
    assert g.initial_state == base.initial_state


def test_perturbation_equals_sigma_times_standard_normal():
    # The draw is rng.normal(size=(S, A, B)) scaled by sigma: reproduce it from the same seed.
    base = paper_zero_sum_game(3)
    sigma = 0.37
    g = perturb_rewards(base, sigma, np.random.default_rng(5))
    eps = np.random.default_rng(5).normal(0.0, 1.0, size=(2, 2, 2)) * sigma
    np.testing.assert_allclose(g.rewards, base.rewards + eps[None], rtol=0, atol=1e-15)


def test_perturbation_sample_std_matches_sigma():
    # 1000 games x 8 entries = 8000 i.i.d. N(0, sigma^2) draws. The standard error of the sample
    # std is sigma / sqrt(2n) = 7.9e-4 and of the mean sigma / sqrt(n) = 1.1e-3; tolerances are
    # 5 standard errors (the seed is fixed, so the test is deterministic).
    sigma, count = 0.1, 1000
    base = paper_zero_sum_game(2)
    games = game_family("paper-zero-sum", count, sigma, 2, seed=2024)
    eps = np.stack([g.rewards[0] - base.rewards[0] for g in games]).reshape(count, 8)
    n = eps.size
    assert abs(eps.std(ddof=1) - sigma) < 5 * sigma / np.sqrt(2 * n)
    assert abs(eps.mean()) < 5 * sigma / np.sqrt(n)
    # each of the 8 (s, a, b) entries separately: std within 5 standard errors (sigma/sqrt(2000) = 2.2e-3)
    np.testing.assert_allclose(eps.std(axis=0, ddof=1), sigma, rtol=0, atol=5 * sigma / np.sqrt(2 * count))
    # entries are independent: every off-diagonal sample correlation below 5/sqrt(count) = 0.16
    corr = np.corrcoef(eps, rowvar=False)
    assert np.max(np.abs(corr - np.eye(8))) < 5 / np.sqrt(count)
    # games are independent of each other: lag-1 correlation across k
    lag = np.corrcoef(eps[:-1].ravel(), eps[1:].ravel())[0, 1]
    assert abs(lag) < 5 / np.sqrt(n)


def test_perturbation_is_gaussian():
    # Kolmogorov-Smirnov distance of 8000 draws to N(0, 0.1^2): the 0.1% critical value is
    # 1.95 / sqrt(n) = 0.022.
    from scipy import stats

    sigma = 0.1
    base = paper_zero_sum_game(1)
    games = game_family("paper-zero-sum", 1000, sigma, 1, seed=99)
    eps = np.concatenate([(g.rewards - base.rewards).ravel() for g in games])
    d = stats.kstest(eps / sigma, "norm").statistic
    assert d < 1.95 / np.sqrt(eps.size)


def test_sigma_zero_leaves_game_unchanged():
    base = paper_zero_sum_game(4)
    g = perturb_rewards(base, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(g.rewards, base.rewards)
    np.testing.assert_array_equal(g.transitions, base.transitions)
    for g in game_family("paper-zero-sum", 3, 0.0, 4, seed=1):
        np.testing.assert_array_equal(g.rewards, base.rewards)


def test_perturb_does_not_modify_input():
    base = paper_zero_sum_game(2)
    before = base.rewards.copy()
    perturb_rewards(base, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(base.rewards, before)


@pytest.mark.parametrize("sigma", [-0.1, -1e-300, np.inf, np.nan])
def test_perturb_bad_sigma(sigma):
    with pytest.raises(GameError, match="sigma must be a finite number >= 0"):
        perturb_rewards(paper_zero_sum_game(2), sigma, np.random.default_rng(0))


# ----------------------------------------------------------------------------- random games


@pytest.mark.parametrize("shape", [(1, 1, (1, 1)), (3, 4, (2, 5)), (5, 2, (3, 3))])
def test_random_game_shapes_and_ranges(shape):
    H, S, (A, B) = shape
    g = random_zero_sum_game(H, S, (A, B), np.random.default_rng(7))
    assert g.shape == (H, S, A, B)
    assert g.transitions.shape == (H, S, A, B, S)
    assert g.initial_state == 0
    assert np.all(g.rewards >= 0.0) and np.all(g.rewards <= 1.0)
    assert np.all(g.transitions >= 0.0)
    np.testing.assert_allclose(g.transitions.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


def test_random_game_distribution():
    # Rewards U[0, 1]: mean 1/2, var 1/12; Dirichlet(1) over S states: mean 1/S per entry.
    # n = 20*5*3*3 = 900 rewards; 5 standard errors: mean 5*sqrt(1/12/900) = 0.048.
    g = random_zero_sum_game(20, 5, (3, 3), np.random.default_rng(8))
    assert abs(g.rewards.mean() - 0.5) < 5 * np.sqrt(1 / 12 / g.rewards.size)
    assert abs(g.rewards.var() - 1 / 12) < 0.015
    np.testing.assert_allclose(g.transitions.mean(axis=(0, 1, 2, 3)), 1 / 5, atol=0.03)


def test_random_game_concentration():
    # Large concentration -> rows close to uniform; small -> rows close to a vertex.
    flat = random_zero_sum_game(2, 4, (2, 2), np.random.default_rng(1), concentration=1e6)
    np.testing.assert_allclose(flat.transitions, 0.25, atol=0.01)
    peaked = random_zero_sum_game(2, 4, (2, 2), np.random.default_rng(1), concentration=1e-3)
    assert np.median(peaked.transitions.max(axis=-1)) > 0.99


def test_random_game_deterministic_in_rng():
    g1 = random_zero_sum_game(3, 3, (2, 2), np.random.default_rng(42))
    g2 = random_zero_sum_game(3, 3, (2, 2), np.random.default_rng(42))
    g3 = random_zero_sum_game(3, 3, (2, 2), np.random.default_rng(43))
    assert g1.rewards.tobytes() == g2.rewards.tobytes() and g1.transitions.tobytes() == g2.transitions.tobytes()
    assert not np.array_equal(g1.rewards, g3.rewards)


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 2, (2, 2)), "horizon must be a positive integer"),
        ((2, 0, (2, 2)), "num_states must be a positive integer"),
        ((2, 2, (0, 2)), "A must be a positive integer"),
        ((2, 2, (2, -1)), "B must be a positive integer"),
        ((2.5, 2, (2, 2)), "horizon must be a positive integer"),
    ],
)
def test_random_game_bad_arguments(args, message):
    with pytest.raises(GameError, match=message):
        random_zero_sum_game(*args, np.random.default_rng(0))


@pytest.mark.parametrize("conc", [0.0, -1.0, np.nan])
def test_random_game_bad_concentration(conc):
    with pytest.raises(GameError, match="concentration must be > 0"):
        random_zero_sum_game(2, 2, (2, 2), np.random.default_rng(0), concentration=conc)


# ----------------------------------------------------------------------------- families


def _same(g1: ZeroSumGame, g2: ZeroSumGame) -> bool:
    return (
        g1.rewards.tobytes() == g2.rewards.tobytes()
        and g1.transitions.tobytes() == g2.transitions.tobytes()
        and g1.initial_state == g2.initial_state
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_family_same_seed_identical(family):
    f1 = game_family(family, 4, 0.1, 3, seed=17)
    f2 = game_family(family, 4, 0.1, 3, seed=17)
    assert len(f1) == len(f2) == 4
    assert all(_same(a, b) for a, b in zip(f1, f2))
    # the games of one family differ from each other
    assert len({g.rewards.tobytes() for g in f1}) == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_family_prefix_does_not_depend_on_count(family):
    short = game_family(family, 3, 0.1, 3, seed=5)
    long = game_family(family, 7, 0.1, 3, seed=5)
    assert len(short) == 3 and len(long) == 7
    assert all(_same(a, b) for a, b in zip(short, long[:3]))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_different_seeds_differ(family):
    f1 = game_family(family, 3, 0.1, 3, seed=1)
    f2 = game_family(family, 3, 0.1, 3, seed=2)
    for a, b in zip(f1, f2):
        assert not np.array_equal(a.rewards, b.rewards)


def test_paper_family_is_perturbed_f1_game():
    base = paper_zero_sum_game(5)
    for g in game_family("paper-zero-sum", 5, 0.1, 5, seed=3):
        np.testing.assert_array_equal(g.transitions, base.transitions)
        diff = g.rewards - base.rewards
        np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), rtol=0, atol=1e-15)
        assert g.initial_state == 0


def test_random_family_shares_one_base_game():
    fam = game_family("random-zero-sum", 4, 0.05, 3, seed=9, num_states=3, num_actions=(2, 4))
    assert all(g.shape == (3, 3, 2, 4) for g in fam)
    for g in fam[1:]:
        # same transitions; reward difference to game 0 is constant along h (two shared-over-h draws)
        np.testing.assert_array_equal(g.transitions, fam[0].transitions)
        diff = g.rewards - fam[0].rewards
        np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), rtol=0, atol=1e-14)
    # with sigma = 0 every game is the base game, and the base depends on the seed
    b1 = game_family("random-zero-sum", 2, 0.0, 3, seed=9, num_states=3, num_actions=(2, 4))
    b2 = game_family("random-zero-sum", 2, 0.0, 3, seed=10, num_states=3, num_actions=(2, 4))
    assert _same(b1[0], b1[1])
    assert not np.array_equal(b1[0].rewards, b2[0].rewards)
    assert np.all((b1[0].rewards >= 0) & (b1[0].rewards <= 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sigma=-0.1), "sigma must be a finite number >= 0"),
        (dict(sigma=np.nan), "sigma must be a finite number >= 0"),
        (dict(count=0), "count must be a positive integer"),
        (dict(count=-3), "count must be a positive integer"),
        (dict(count=2.0), "count must be a positive integer"),
        (dict(family="paper"), "unknown game family 'paper'"),
        (dict(family="general-sum"), "unknown game family"),
        (dict(horizon=0), "horizon must be a positive integer"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(seed=1.5), "seed must be a non-negative integer"),
    ],
)
def test_family_bad_arguments(kwargs, message):
    args = dict(family="paper-zero-sum", count=3, sigma=0.1, horizon=2, seed=0)
    args.update(kwargs)
    with pytest.raises(GameError, match=message):
        game_family(**args)
