"""MAML over Markov potential games (solvers.maml): exact gradients, HVPs and meta-gradients.

References and tolerances:
- gradients against central finite differences of Phi (step 1e-6): atol 1e-7 (observed ~1e-9);
- HVPs against central differences of the exact gradient (step 1e-6): atol 1e-6 (observed ~1e-8);
- HVPs against a dense Hessian from Lemma 15's closed form (discounted; its dV/dtheta by finite
  differences of an independent value solve, step 1e-6): atol 1e-6; the dense Hessian from HVPs
  is symmetric to 1e-12;
- the meta-gradient of T = 1 (and T = 3) against central differences of F_T (step 1e-6): atol 1e-6;
- NE-gaps against brute force over deterministic policies: 1e-10.
"""

import itertools

import numpy as np
import pytest

from solvers import maml
from solvers.nplayer import MarkovGame


def random_potential_game(rng, N=3, H=2, S=3, A=(2, 3, 2), gamma=None, identical=True):
    """Identical-interest rewards, or a stage potential plus per-player dummy terms u_i(s, a_{-i})."""
    A = tuple(A)
    phi = rng.random((H, S) + A)
    if identical:
        r = np.broadcast_to(phi, (N, H, S) + A).copy()
    else:
        r = np.stack([phi + np.take(rng.random((H, S) + A), [0], axis=2 + i) for i in range(N)])
    P = rng.dirichlet(np.ones(S), size=(H, S) + A)
    rho = rng.dirichlet(np.ones(S)) if gamma is not None else None
    return MarkovGame(r, P, 0, "potential", gamma, rho)


def paper_potential(sigma=0.0, H=10, rng=None):
    """The F.2 base game (Table 2), optionally with N(0, sigma^2) reward perturbations shared by all h."""
    base = np.array([[[0.1, 0.5], [0.5, 1.0]], [[0.8, 0.2], [0.2, 0.8]]])
    if sigma:
        base = base + rng.normal(0.0, sigma, base.shape)
    r = np.broadcast_to(base, (2, H, 2, 2, 2)).copy()
    P = np.zeros((2, 2, 2, 2))
    for s in range(2):
        for a in range(2):
            for b in range(2):
                stay = 0.9 if a == b else 0.1
                P[s, a, b, s], P[s, a, b, 1 - s] = stay, 1 - stay
    return MarkovGame(r, np.broadcast_to(P, (H, 2, 2, 2, 2)).copy(), 0, "potential")


SETTINGS = [
    pytest.param(None, True, id="finite-identical"),
    pytest.param(None, False, id="finite-dummy"),
    pytest.param(0.9, True, id="discounted-identical"),
    pytest.param(0.8, False, id="discounted-dummy"),
]


def _game(seed, gamma, identical):
    rng = np.random.default_rng(seed)
    return random_potential_game(rng, H=1 if gamma else 3, gamma=gamma, identical=identical), rng


def _fd_grad(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


@pytest.mark.parametrize("gamma,identical", SETTINGS)
def test_gradient_matches_finite_differences(gamma, identical):
    game, rng = _game(1, gamma, identical)
    g = maml.potential_game(game)
    theta = rng.normal(size=g.dim)
    value, grad = maml.potential_gradient(theta, g)
    assert value == pytest.approx(maml.potential(theta, g), abs=0)
    np.testing.assert_allclose(grad, _fd_grad(lambda t: maml.potential(t, g), theta), atol=1e-7, rtol=0)
    # the gradient is not trivially small: the test can fail
    assert np.abs(grad).max() > 1e-2


@pytest.mark.parametrize("gamma,identical", SETTINGS)
def test_hvp_matches_finite_differences_and_dense_hessian(gamma, identical):
    game, rng = _game(2, gamma, identical)
    g = maml.potential_game(game)
    theta, u = rng.normal(size=g.dim), rng.normal(size=g.dim)
    hu = maml.hessian_vector_product(theta, g, u)
    eps = 1e-6
    fd = (maml.potential_gradient(theta + eps * u, g)[1] - maml.potential_gradient(theta - eps * u, g)[1]) / (2 * eps)
    np.testing.assert_allclose(hu, fd, atol=1e-6, rtol=0)
    dense = maml.dense_hessian(theta, g)
    np.testing.assert_allclose(dense, dense.T, atol=1e-12, rtol=0)
    np.testing.assert_allclose(dense @ u, hu, atol=1e-12, rtol=0)
    assert np.abs(hu).max() > 1e-2


def _lemma15_hessian(game: MarkovGame, theta: np.ndarray) -> np.ndarray:
    """Lemma 15 (discounted), written independently of solvers.maml's passes:
    Hess = H1 + H2 + H3 + H3^T with (unnormalised visitation d, i.e. 1/(1-gamma) d_rho)
    H1 = sum d(s) pi(a|s) Q(s,a) glog glog^T, H2 = sum d pi Q Hess log pi, H3 = sum d pi glog (grad Q)^T,
    grad Q(s, a) = gamma sum_s' P(s'|s,a) grad V(s') (grad V(s') by finite differences of a plain solve)."""
    S, A = game.num_states, game.num_actions
    N, gm = game.num_players, game.gamma
    joint = list(itertools.product(*[range(a) for a in A]))
    # the potential's reward (player i's r_i in the paper's block (i, j); equal for identical interest)
    r, P, rho = maml.stage_potential(game.rewards)[0], game.transitions[0], game.rho

    def policies(t):
        out, k = [], 0
        for a in A:
            x = t[k:k + S * a].reshape(S, a)
            k += S * a
            z = np.exp(x - x.max(axis=1, keepdims=True))
            out.append(z / z.sum(axis=1, keepdims=True))
        return out

    def values(t):
        sig = policies(t)
        pi = np.array([[np.prod([sig[i][s, a[i]] for i in range(N)]) for a in joint] for s in range(S)])
        r_pi = np.array([sum(pi[s, j] * r[(s,) + a] for j, a in enumerate(joint)) for s in range(S)])
        P_pi = np.array([sum(pi[s, j] * P[(s,) + a] for j, a in enumerate(joint)) for s in range(S)])
        V = np.linalg.solve(np.eye(S) - gm * P_pi, r_pi)
        d = np.linalg.solve((np.eye(S) - gm * P_pi).T, rho)
        return sig, pi, V, d

    sig, pi, V, d = values(theta)
    D = theta.size
    gradV = np.stack([_fd_grad(lambda t, s=s: values(t)[2][s], theta) for s in range(S)])  # (S, D)
    offsets = np.cumsum([0] + [S * a for a in A])
    Hm = np.zeros((D, D))
    for s in range(S):
        for j, a in enumerate(joint):
            glog = np.zeros(D)
            hlog = np.zeros((D, D))
            for i in range(N):
                idx = offsets[i] + s * A[i] + np.arange(A[i])
                glog[idx] = (np.arange(A[i]) == a[i]) - sig[i][s]
                hlog[np.ix_(idx, idx)] = -(np.diag(sig[i][s]) - np.outer(sig[i][s], sig[i][s]))
            Q = r[(s,) + a] + gm * P[(s,) + a] @ V
            gradQ = gm * P[(s,) + a] @ gradV
            w = d[s] * pi[s, j]
            Hm += w * (Q * (np.outer(glog, glog) + hlog) + np.outer(glog, gradQ) + np.outer(gradQ, glog))
    return Hm


@pytest.mark.parametrize("identical", [True, False])
def test_hessian_matches_lemma15_closed_form(identical):
    rng = np.random.default_rng(3)
    game = random_potential_game(rng, N=2, H=1, S=3, A=(2, 3), gamma=0.7, identical=identical)
    g = maml.potential_game(game)
    theta = rng.normal(size=g.dim)
    np.testing.assert_allclose(maml.dense_hessian(theta, g), _lemma15_hessian(game, theta), atol=1e-6, rtol=0)


@pytest.mark.parametrize("gamma,identical", [SETTINGS[0], SETTINGS[3]])
@pytest.mark.parametrize("T", [1, 3])
def test_meta_gradient_matches_finite_differences_of_F_T(gamma, identical, T):
    game, rng = _game(4, gamma, identical)
    g = maml.potential_game(game)
    theta, alpha = rng.normal(size=g.dim), 0.7

    def F(t):
        return maml.adapt(t, g, T, alpha)[1].value

    value, mg = maml.meta_gradient(theta, g, T, alpha)
    assert value == pytest.approx(F(theta), abs=1e-14)
    np.testing.assert_allclose(mg, _fd_grad(F, theta), atol=1e-6, rtol=0)
    # T = 1 closed form of Eq. (46): (I + alpha H(theta)) grad Phi(theta + alpha grad Phi(theta))
    if T == 1:
        theta1 = theta + alpha * maml.potential_gradient(theta, g)[1]
        v = maml.potential_gradient(theta1, g)[1]
        np.testing.assert_allclose(mg, v + alpha * maml.dense_hessian(theta, g) @ v, atol=1e-12, rtol=0)


def test_stage_potential():
    rng = np.random.default_rng(5)
    game = random_potential_game(rng, identical=False)
    phi = maml.stage_potential(game.rewards)
    for i in range(3):  # r_i - phi does not depend on a_i
        dummy = game.rewards[i] - phi
        np.testing.assert_allclose(dummy, np.broadcast_to(np.take(dummy, [0], axis=2 + i), dummy.shape), atol=1e-12)
    ident = random_potential_game(rng, identical=True)
    np.testing.assert_array_equal(maml.stage_potential(ident.rewards), ident.rewards[0])
    bad = game.rewards.copy()
    bad[1, 0, 0, 0, 1, 0] += 0.5  # player 1's own deviation payoff changes: no potential
    with pytest.raises(ValueError, match="rewards are not a stage potential game"):
        maml.stage_potential(bad)


def _brute_force_gaps(game: MarkovGame, policies):
    """V_i and max over deterministic (Markov, resp. stationary) policies of player i, by enumeration."""
    N, H, S, A = game.num_players, game.horizon, game.num_states, game.num_actions
    joint = list(itertools.product(*[range(a) for a in A]))

    def value(pols, i):
        pi = [[np.array([np.prod([pols[k][h, s, a[k]] for k in range(N)]) for a in joint]) for s in range(S)]
              for h in range(H)]
        rew = lambda h, s: sum(p * game.rewards[(i, h, s) + a] for p, a in zip(pi[h][s], joint))
        trans = lambda h, s: sum(p * game.transitions[(h, s) + a] for p, a in zip(pi[h][s], joint))
        if game.gamma is None:
            v = np.zeros(S)
            for h in reversed(range(H)):
                v = np.array([rew(h, s) + trans(h, s) @ v for s in range(S)])
        else:
            Pm = np.array([trans(0, s) for s in range(S)])
            v = np.linalg.solve(np.eye(S) - game.gamma * Pm, np.array([rew(0, s) for s in range(S)]))
        return game.initial_distribution @ v

    vals, brs = [], []
    for i in range(N):
        vals.append(value(policies, i))
        best = -np.inf
        for choice in itertools.product(range(A[i]), repeat=H * S):
            det = np.zeros((H, S, A[i]))
            det[np.arange(H).repeat(S), np.tile(np.arange(S), H), choice] = 1.0
            best = max(best, value([det if k == i else policies[k] for k in range(N)], i))
        brs.append(best)
    return np.array(vals), np.array(brs)


@pytest.mark.parametrize("gamma", [None, 0.85])
def test_nash_gaps_against_brute_force(gamma):
    rng = np.random.default_rng(6)
    game = random_potential_game(rng, N=2, H=1 if gamma else 2, S=2, A=(2, 3), gamma=gamma, identical=False)
    H, S = game.horizon, game.num_states
    theta = rng.normal(size=maml.theta_size(H, S, game.num_actions))
    pols = maml.softmax_policies(theta, H, S, game.num_actions)
    v, br = maml.nash_gaps(game, pols)
    v_ref, br_ref = _brute_force_gaps(game, pols)
    np.testing.assert_allclose(v, v_ref, atol=1e-10)
    np.testing.assert_allclose(br, br_ref, atol=1e-10)
    assert np.all(br - v > 1e-3)


def test_nash_gap_zero_at_pure_equilibrium():
    # F.2 base game: both players always play action 1 (reward 1 in s0, 0.8 in s1); a NE of the team game
    game = paper_potential(H=3)
    pols = [np.tile([0.0, 1.0], (3, 2, 1)) for _ in range(2)]
    v, br = maml.nash_gaps(game, pols)
    np.testing.assert_allclose(br - v, 0.0, atol=1e-12)


def test_maml_run_improves_adaptation_over_uniform():
    """Perturbed F.2 games: MAML's outer ascent raises F_T (small beta: monotone) and its initialisation
    adapts to held-out games better than the uniform one (higher potential, smaller NE-gap)."""
    rng = np.random.default_rng(7)
    games = [paper_potential(0.1, H=5, rng=rng) for _ in range(6)]
    res = maml.run_maml(games[:4], games[4:], T=2, alpha=0.1, outer_iterations=30, beta=0.5, eval_every=10)
    assert list(res.eval_outer) == [0, 10, 20, 30]
    assert np.all(np.diff(res.potential) >= -1e-12)
    assert res.potential[-1] > res.potential[0] + 0.1
    np.testing.assert_allclose(res.meta[0].potential, res.uniform.potential, atol=1e-14)  # theta^0 = 0 = uniform
    assert res.meta[-1].potential.mean() > res.uniform.potential.mean() + 0.1
    assert res.meta[-1].gap.mean() < 0.5 * res.uniform.gap.mean()
    assert np.all(res.meta[-1].gap_avg <= res.meta[-1].gap + 1e-12)


def test_bad_input():
    rng = np.random.default_rng(8)
    game = random_potential_game(rng)
    g = maml.potential_game(game)
    with pytest.raises(ValueError, match="theta must have shape"):
        maml.potential(np.zeros(3), g)
    with pytest.raises(ValueError, match="alpha must be"):
        maml.run_maml([game], [game], 1, -0.1, 1, 0.1)
    with pytest.raises(TypeError, match="MarkovGame"):
        maml.potential_game(object())
    other = random_potential_game(rng, A=(2, 2, 2))
    with pytest.raises(ValueError, match="unlike game 0"):
        maml.run_maml([game, other], [game], 1, 0.1, 1, 0.1)
