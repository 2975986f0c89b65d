"""Markov potential games (Section 4): projection, projected Q-ascent (Eq. 7), exact evaluators,
Delta_Phi (Eq. 8), kappa, the generators (F.2, random, LQ tracking), each against an independent
reference (brute force over deterministic policies, plain NumPy, a QP, linear solves)."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

from solvers.games import GameError
from solvers.nplayer import MarkovGame, potential_certificate, stage_potential, uniform_policies
from solvers.potential_bounds import delta_phi, mismatch_coefficient, phi_extremes, proposition1_bound
from solvers.potential_eval import evaluate_product_policy
from solvers.potential_games import (F2_REWARDS, lq_noise_distribution, lq_tracking_game, paper_potential_game,
                                     potential_family, random_identical_game, random_potential_game)
from solvers.potential_meta import run_potential_sequence
from solvers.product_games import ProductMarkovGame
from solvers.qascent import _project_simplex, project_simplex, projected_q_ascent

# ----------------------------------------------------------------------------- references (plain NumPy)


def brute_projection(v):
    """Projection onto the simplex by enumerating supports (KKT: p = v - theta on the support, 0 elsewhere)."""
    n, best, best_d = v.size, None, np.inf
    for k in range(1, n + 1):
        for supp in itertools.combinations(range(n), k):
            theta = (v[list(supp)].sum() - 1.0) / k
            p = np.zeros(n)
            p[list(supp)] = v[list(supp)] - theta
            if np.all(p >= -1e-15) and np.sum((p - v) ** 2) < best_d:
                best, best_d = p, np.sum((p - v) ** 2)
    return best


def joint_policy(policies, h):
    """pi_h(a | s) over joint actions, shape (S, A_1, ..., A_N)."""
    out = policies[0][h]
    for p in policies[1:]:
        out = out[..., None] * p[h].reshape(p.shape[1], *([1] * (out.ndim - 1)), p.shape[2])
    return out


def numpy_q(game, policies):
    """Finite horizon: Q_{h,i}(s, a) over joint actions and V_{h,i}(s) by backward induction, dense NumPy."""
    N, H, S = game.num_players, game.horizon, game.num_states
    P = game.transitions
    Q = np.zeros((N, H, *game.rewards.shape[2:]))
    V = np.zeros((N, H + 1, S))
    for h in range(H - 1, -1, -1):
        for i in range(N):
            Q[i, h] = game.rewards[i, h] + P[h] @ V[i, h + 1]
            pi = joint_policy(policies, h)
            V[i, h] = (pi * Q[i, h]).reshape(S, -1).sum(axis=1)
    return Q, V


def qbar(game, policies, Q_ih, h, i):
    """Qbar_i(s, a_i): Q averaged over the others' policies at step h."""
    pi = joint_policy([np.ones_like(p) if k == i else p for k, p in enumerate(policies)], h)
    return np.moveaxis(pi * Q_ih, 1 + i, -1).reshape(game.num_states, -1, game.num_actions[i]).sum(axis=1)


def deterministic_policies(H, S, A):
    for choice in itertools.product(range(A), repeat=H * S):
        p = np.zeros((H, S, A))
        p[np.arange(H).repeat(S), np.tile(np.arange(S), H), choice] = 1.0
        yield p


def random_policies(game, rng):
    return [rng.dirichlet(np.ones(a), size=(game.horizon, game.num_states)) for a in game.num_actions]


def small_product_game(N=3, H=2, L=3, A=2, seed=0, **kw):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(L), size=(N, H, L, A))
    return ProductMarkovGame(rng.random((N, H, L**N, *([A] * N))), q, **kw)


# ----------------------------------------------------------------------------- projection


@pytest.mark.parametrize("seed", range(6))
def test_projection_matches_brute_force_and_a_qp(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 2, size=1 + seed % 5)
    p = project_simplex(v)
    assert np.allclose(p, brute_projection(v), atol=1e-12)
    qp = minimize(lambda x: np.sum((x - v) ** 2), np.full(v.size, 1 / v.size), method="SLSQP",
                  bounds=[(0, 1)] * v.size, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                  options={"ftol": 1e-14})
    assert np.allclose(p, qp.x, atol=1e-6)
    out, u = np.empty_like(v), np.empty_like(v)
    _project_simplex.py_func(v, v.size, out, u)  # the uncompiled kernel agrees
    assert np.allclose(out, p, atol=1e-15)


def test_projection_keeps_distributions_and_ties():
    assert np.allclose(project_simplex(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])
    assert np.allclose(project_simplex(np.array([1.0, 1.0])), [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        project_simplex(np.array([np.nan, 1.0]))


# ----------------------------------------------------------------------------- one step against NumPy


def test_one_step_matches_numpy_finite_horizon():
    rng = np.random.default_rng(1)
    game = MarkovGame(rng.random((3, 2, 3, 2, 3, 2)), rng.dirichlet(np.ones(3), size=(2, 3, 2, 3, 2)), kind="general_sum")
    init = random_policies(game, rng)
    step = 0.3
    run = projected_q_ascent(game, 1, step, init)
    Q, V = numpy_q(game, init)
    for i in range(3):
        for h in range(2):
            qb = qbar(game, init, Q[i, h], h, i)
            for s in range(3):
                want = brute_projection(init[i][h, s] + step * qb[s])
                assert np.allclose(run.policies[i][h, s], want, atol=1e-12)
    assert np.allclose(run.values[0], V[:, 0, 0], atol=1e-12)  # values of pi^0 from s_1 = 0


def test_one_step_matches_numpy_discounted():
    rng = np.random.default_rng(2)
    S, gamma = 3, 0.8
    game = MarkovGame(rng.random((2, 1, S, 2, 3)), rng.dirichlet(np.ones(S), size=(1, S, 2, 3)), kind="general_sum",
                      gamma=gamma, rho=np.array([0.2, 0.5, 0.3]))
    init = random_policies(game, rng)
    run = projected_q_ascent(game, 1, 0.2, init)
    pi = joint_policy(init, 0).reshape(S, -1)
    P = game.transitions[0].reshape(S, -1, S)
    P_pi = np.einsum("sj,sjt->st", pi, P)
    for i in range(2):
        r = game.rewards[i, 0].reshape(S, -1)
        V = np.linalg.solve(np.eye(S) - gamma * P_pi, (pi * r).sum(axis=1))  # exact discounted value
        Q = (r + gamma * P @ V).reshape(S, 2, 3)
        assert run.values[0, i] == pytest.approx(game.rho @ V, abs=1e-12)
        qb = qbar(game, init, Q, 0, i)
        for s in range(S):
            assert np.allclose(run.policies[i][0, s], brute_projection(init[i][0, s] + 0.2 * qb[s]), atol=1e-12)


def test_discounted_values_and_best_responses_match_value_iteration():
    rng = np.random.default_rng(3)
    S, gamma = 4, 0.7
    game = MarkovGame(rng.random((2, 1, S, 2, 2)), rng.dirichlet(np.ones(S), size=(1, S, 2, 2)), kind="general_sum",
                      gamma=gamma, rho=np.full(S, 0.25))
    pols = random_policies(game, rng)
    ev = evaluate_product_policy(game, pols)
    P = game.transitions[0]
    for i in range(2):
        other = pols[1 - i][0]
        # player i's MDP against pi_{-i}: reward and kernel averaged over the other's action
        r = np.einsum("sab,sb->sa", game.rewards[i, 0], other) if i == 0 else np.einsum("sab,sa->sb", game.rewards[i, 0], other)
        Pm = np.einsum("sabt,sb->sat", P, other) if i == 0 else np.einsum("sabt,sa->sbt", P, other)
        W = np.zeros(S)
        for _ in range(2000):  # value iteration to machine precision (0.7^2000)
            W = (r + gamma * Pm @ W).max(axis=1)
        assert ev.best_response_values[i] == pytest.approx(game.rho @ W, abs=1e-10)
        V = np.zeros(S)
        mine = pols[i][0]
        for _ in range(2000):
            V = (mine * (r + gamma * Pm @ V)).sum(axis=1)
        assert ev.values[i] == pytest.approx(game.rho @ V, abs=1e-10)


def test_product_games_match_their_dense_form():
    for kw in (dict(), dict(H=1, gamma=0.75, rho=np.full(27, 1 / 27))):
        pg = small_product_game(**kw)
        dg = pg.to_dense()
        rng = np.random.default_rng(4)
        pols = random_policies(pg, rng)
        a, b = evaluate_product_policy(pg, pols), evaluate_product_policy(dg, pols)
        assert np.allclose(a.values, b.values, atol=1e-12) and np.allclose(a.best_response_values, b.best_response_values,
                                                                             atol=1e-12)
        ra, rb = projected_q_ascent(pg, 3, 0.1, pols), projected_q_ascent(dg, 3, 0.1, pols)
        assert all(np.allclose(x, y, atol=1e-12) for x, y in zip(ra.policies, rb.policies))
        assert np.allclose(ra.gap, rb.gap, atol=1e-12)


# ----------------------------------------------------------------------------- NE-gap


def test_gap_is_zero_at_a_pure_nash_equilibrium_and_matches_brute_force_deviations():
    game = paper_potential_game(horizon=2)
    # the joint optimum over deterministic policies of an identical-interest game is a Nash equilibrium
    pols = list(deterministic_policies(2, 2, 2))
    best = max(((p, q) for p in pols for q in pols), key=lambda pq: evaluate_product_policy(game, list(pq)).values[0])
    ev = evaluate_product_policy(game, list(best))
    assert ev.gap == pytest.approx(0.0, abs=1e-12) and ev.gap_avg == pytest.approx(0.0, abs=1e-12)
    # at the uniform policy: best responses equal the best deterministic deviation (brute force)
    uni = uniform_policies(game)
    ev = evaluate_product_policy(game, uni)
    for i in range(2):
        dev = max(evaluate_product_policy(game, [p if k == i else uni[k] for k in range(2)]).values[i] for p in pols)
        assert ev.best_response_values[i] == pytest.approx(dev, abs=1e-12)
    gaps = ev.best_response_values - ev.values
    assert ev.gap == pytest.approx(gaps.max()) and ev.gap_avg == pytest.approx(gaps.mean())
    assert ev.potential == pytest.approx(ev.values[0])  # identical interest: Phi = V


def test_f2_base_game_and_hand_computed_value():
    g = paper_potential_game(horizon=1)
    assert np.array_equal(g.rewards[0, 0], F2_REWARDS) and g.is_identical_interest()
    assert g.transitions[0, 0, 0, 0, 0] == 0.9 and g.transitions[0, 1, 0, 1, 1] == 0.1
    # uniform play from s0 for one step: mean of [[0.1, 0.5], [0.5, 1]] = 0.525; best response: 0.75
    ev = evaluate_product_policy(g, uniform_policies(g))
    assert ev.values[0] == pytest.approx(0.525) and ev.best_response_values[0] == pytest.approx(0.75)


def test_q_ascent_converges_on_f2():
    run = projected_q_ascent(potential_family("paper-potential", 1, 0.1, 10, 0)[0], 1000, 0.05)
    assert run.iterations[0] == 0 and run.iterations[-1] == 1000 and run.iterations.size == 1001
    assert run.gap[0] > 1.0 and run.final_gap <= 1e-3  # F.2 settings (Appendix F.2)
    assert np.all(np.diff(run.potential) >= -1e-12)  # a potential game: Phi does not decrease along Eq. (7) here


# ----------------------------------------------------------------------------- potentials, Delta_Phi, kappa


def test_stage_potential_and_certificates():
    rng = np.random.default_rng(5)
    g = random_potential_game(2, 3, (2, 3), rng, dummy_scale=0.7)
    cert = potential_certificate(g)
    assert cert.source == "declared" and cert.exact
    phi = stage_potential(g.rewards)  # Monderer-Shapley recovers phi up to a constant per (h, s)
    diff = (phi - g.potential).reshape(2, 3, -1)
    assert np.allclose(diff, diff[..., :1], atol=1e-12)
    # an exact MPG: unilateral changes of V_i equal changes of Phi (Eq. 38)
    pols, alt = random_policies(g, rng), random_policies(g, rng)
    base = evaluate_product_policy(g, pols)
    for i in range(2):
        dev = evaluate_product_policy(g, [alt[k] if k == i else pols[k] for k in range(2)])
        assert dev.values[i] - base.values[i] == pytest.approx(dev.potential - base.potential, abs=1e-12)
    not_potential = MarkovGame(rng.random((2, 1, 2, 2, 2)), g.transitions[:1, :2, :2, :2, :2] / g.transitions[
        :1, :2, :2, :2, :2].sum(-1, keepdims=True), kind="potential")
    with pytest.raises(ValueError, match="not potential games"):
        potential_certificate(not_potential)
    # a "potential" file that is not one still runs Eq. (7) (no potential needed), without Phi
    run = projected_q_ascent(not_potential, 2, 0.1)
    assert np.all(np.isnan(run.potential)) and np.isfinite(run.final_gap)
    with pytest.raises(ValueError, match="game 0"):
        run_potential_sequence([not_potential, not_potential], 2, 0.1)


@pytest.mark.parametrize("discounted", [False, True])
def test_delta_phi_matches_brute_force_over_deterministic_joint_policies(discounted):
    kw = dict(gamma=0.6, rho="uniform") if discounted else {}
    H = 1 if discounted else 2
    games = potential_family("random-identical", 3, 0.3, H, 7, num_states=2, num_actions=(2, 2), **kw)
    d = delta_phi(games)
    assert d.exact
    pols = list(deterministic_policies(H, 2, 2))
    for k in range(2):
        brute = max(evaluate_product_policy(games[k], [p, q]).potential - evaluate_product_policy(games[k + 1], [p, q]).potential
                    for p in pols for q in pols)
        assert d.per_pair[k] == pytest.approx(brute, abs=1e-10)
    assert d.value == pytest.approx(d.per_pair.sum())
    lo, hi = phi_extremes(games[0])
    vals = [evaluate_product_policy(games[0], [p, q]).potential for p in pols for q in pols]
    assert (lo, hi) == pytest.approx((min(vals), max(vals)), abs=1e-10)


def test_kappa_exact_by_brute_force_and_infinite_for_a_point_mass():
    game = random_identical_game(1, 3, (2, 2), np.random.default_rng(8), gamma=0.5, rho="uniform")
    S, gamma = 3, 0.5
    P = game.transitions[0].reshape(S, 4, S)
    best = 0.0
    for sigma in itertools.product(range(4), repeat=S):  # deterministic stationary joint policies
        P_pi = P[np.arange(S), sigma]
        d = (1 - gamma) * game.rho @ np.linalg.inv(np.eye(S) - gamma * P_pi)
        best = max(best, np.max(d / game.rho))
    assert mismatch_coefficient(game) == pytest.approx(best, rel=1e-10)
    point = random_identical_game(1, 3, (2, 2), np.random.default_rng(8), gamma=0.5)
    assert mismatch_coefficient(point) == np.inf
    b = proposition1_bound(point, 10, 0.1, 1.0)
    assert b.value == np.inf and not b.kappa_finite and not b.conditions_hold
    fh = proposition1_bound(paper_potential_game(2), 10, 0.1, 1.0)
    assert np.isnan(fh.value) and not fh.discounted


def test_meta_warm_start_and_theorem3_flags():
    games = potential_family("paper-potential", 3, 0.1, 1, 0, gamma=0.8, rho="uniform")
    out = run_potential_sequence(games, 50, 0.05)
    ind, meta = out["individual"], out["meta"]
    for k in range(1, 3):  # pi^{k,0} = pi^{k-1,T}
        assert all(np.array_equal(a, b) for a, b in zip(meta.runs[k].initial_policies, meta.runs[k - 1].policies))
    assert meta.runs[0].gap[0] == ind.runs[0].gap[0]  # both start game 1 uniform
    t3 = meta.theorem3
    assert t3.delta_exact and t3.delta_phi == pytest.approx(meta.delta.value) and t3.discounted
    assert t3.step_ok is (0.05 <= t3.step_max) and np.isfinite(t3.value)
    # Proposition 1 holds for every game when its step condition holds; report the check either way
    for run, b in zip(ind.runs, ind.proposition1):
        assert b.kappa >= 1.0 and b.potential_gain == pytest.approx(run.potential[-1] - run.potential[0])


# ----------------------------------------------------------------------------- LQ tracking (F.3)


def test_lq_tracking_transitions_and_rewards_follow_the_formula():
    game = lq_tracking_game(horizon=2, drifts=[1.0, 1.3, 0.6, 1.0])
    assert game.num_players == 4 and game.num_states == 625 and np.prod(game.num_actions) == 81
    q = game.local_transitions
    assert np.allclose(q.sum(-1), 1.0) and np.all(q >= 0)
    assert np.all((q > 0).sum(-1) >= 2)  # stochastic: every (position, action) spreads over several positions
    e, w = lq_noise_distribution(2)
    assert w == pytest.approx(np.exp(-e**2 / 2) / np.exp(-e**2 / 2).sum())
    # drift 1, position 0 (index 2), action +1: x = 1 + eps, clipped to [-2, 2]
    want = np.zeros(5)
    for ei, wi in zip(e, w):
        want[int(np.clip(1 + ei, -2, 2)) + 2] += wi
    assert np.allclose(q[0, 0, 2, 2], want)
    # drift 1.3, position 0, action +1: x = 1.3 + eps; eps = 0 puts 0.3 on position 2 (0.7 on 1), eps >= 1 all on 2
    assert q[1, 0, 2, 2, 4] == pytest.approx(0.3 * w[2] + w[3] + w[4])
    assert q[1, 0, 2, 2, 3] == pytest.approx(0.7 * w[2] + 0.3 * w[1])
    rng = np.random.default_rng(9)
    for _ in range(20):
        s = rng.integers(625)
        a = tuple(rng.integers(3, size=4))
        pos = np.array(game.local_states(s)) - 2.0
        moves = np.array(a) - 1.0
        for i in range(4):  # r_i = (-1/2 a_i^2 - (kappa/2)(mean - s_i)^2) dt, kappa = 0.5, dt = 1
            assert game.rewards[i, 1, s][a] == pytest.approx(-0.5 * moves[i] ** 2 - 0.25 * (pos.mean() - pos[i]) ** 2)
    cert = potential_certificate(game)
    assert cert.source == "declared" and not cert.exact  # stage potential only (module docstring)


def test_lq_tracking_dense_form_is_the_product_of_local_kernels():
    game = lq_tracking_game(horizon=1, drifts=[0.8, 1.2], players=2)
    P = game.to_dense().transitions  # (1, 25, 3, 3, 25)
    for s, a, b, t in [(0, 0, 2, 24), (12, 1, 1, 7), (7, 2, 0, 13)]:
        (s1, s2), (t1, t2) = game.local_states(s), game.local_states(t)
        assert P[0, s, a, b, t] == pytest.approx(game.local_transitions[0, 0, s1, a, t1] * game.local_transitions[1, 0, s2, b, t2])


def test_families_are_seeded_per_game():
    a = potential_family("lq-tracking", 3, 0.5, 1, 11)
    b = potential_family("lq-tracking", 2, 0.5, 1, 11)
    assert np.array_equal(a[1].local_transitions, b[1].local_transitions)
    assert not np.array_equal(a[0].local_transitions, a[1].local_transitions)
    r = potential_family("random-potential", 2, 0.1, 2, 3, num_states=3, num_actions=(2, 2, 2))
    assert r[0].num_players == 3 and np.array_equal(r[0].transitions, r[1].transitions)
    with pytest.raises(GameError, match="horizon 1"):
        potential_family("paper-potential", 2, 0.1, 3, 0, gamma=0.9)
    with pytest.raises(GameError, match="unknown game family"):
        potential_family("poker", 2, 0.1, 3, 0)


def test_kernel_through_py_func_matches_compiled():
    from solvers.markov_kernels import kernel_form, pad_policies
    from solvers.qascent import _q_ascent

    game = potential_family("random-potential", 1, 0.1, 2, 4, num_states=2, num_actions=(2, 3))[0]
    kf = kernel_form(game, game.potential)
    out = []
    for fn in (_q_ascent, _q_ascent.py_func):
        pol = pad_policies(uniform_policies(game), 3)
        vals, brs = np.zeros((3, 3)), np.zeros((3, 2))
        fn(kf.rewards, 3, 2, pol, kf.adec, kf.sdec, kf.actions, kf.dense_p, kf.snext, kf.local_p, kf.xmap, kf.factored, kf.gamma,
           kf.discounted, kf.rho, 0.1, 2, np.ones(3, dtype=np.bool_), 100, 1e-12, vals, brs)
        out.append((pol, vals, brs))
    for a, b in zip(*out):
        assert np.allclose(a, b, atol=1e-14)


def test_proposition1_holds_when_its_conditions_hold():
    game = paper_potential_game(horizon=1, gamma=0.5, rho="uniform")
    cond = proposition1_bound(game, 1, 1.0, 0.0)
    step = cond.step_max  # alpha = (1 - gamma)^4 / (8 kappa^3 N A_max), the largest step Proposition 1 allows
    run = projected_q_ascent(game, 400, step)
    b = proposition1_bound(game, 400, step, run.potential_gain)
    assert b.conditions_hold and run.every_iteration
    assert 0 < run.mean_gap <= b.value


def test_lq_tracking_is_not_an_exact_markov_potential_game():
    game = lq_tracking_game(horizon=2, players=2)
    rng = np.random.default_rng(10)
    pols, alt = random_policies(game, rng), random_policies(game, rng)
    base = evaluate_product_policy(game, pols)
    dev = evaluate_product_policy(game, [alt[0], pols[1]])
    # player 1's unilateral change moves V_1 and Phi by different amounts (Eq. 38 fails)
    assert abs((dev.values[0] - base.values[0]) - (dev.potential - base.potential)) > 1e-3
    # ... while the stage potential is exact within a stage: with H = 1 there is no future
    one = lq_tracking_game(horizon=1, players=2)
    pols1, alt1 = [p[:1] for p in pols], [p[:1] for p in alt]
    b1, d1 = evaluate_product_policy(one, pols1), evaluate_product_policy(one, [alt1[0], pols1[1]])
    assert (d1.values[0] - b1.values[0]) == pytest.approx(d1.potential - b1.potential, abs=1e-12)
