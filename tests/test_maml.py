"""MAML over Markov potential games (solvers.maml): exact gradients, HVPs and meta-gradients.

References and tolerances:
- gradients against central finite differences of Phi (step 1e-6): atol 1e-7 (observed ~1e-9);
- HVPs against central differences of the exact gradient (step 1e-6): atol 1e-6 (observed ~1e-8);
- HVPs against a dense Hessian from Lemma 15's closed form (discounted; its dV/dtheta by finite
  differences of an independent value solve, step 1e-6): atol 1e-6; the dense Hessian from HVPs
  is symmetric to 1e-12;
- the meta-gradient of T = 1 (and T = 3) against central differences of F_T (step 1e-6): atol 1e-6;
- the Numba kernels against the NumPy reference (value, gradient, HVP, meta-gradient), dense and
  product-state games (against their dense form): atol 1e-12;
- Phi against the independent evaluator solvers.potential_eval: atol 1e-12;
- in an exact MPG each player's own value gradient (Eq. 44, central differences of the exact
  values, step 1e-6) equals grad_{theta_i} Phi: atol 1e-7.
"""

import itertools

import numpy as np
import pytest

from solvers import maml
from solvers.nplayer import MarkovGame, stage_potential
from solvers.potential_eval import evaluate_product_policy
from solvers.product_games import ProductMarkovGame


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
    r, P, rho = stage_potential(game.rewards)[0], game.transitions[0], game.rho

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


def _product_game(rng, H, gamma):
    """A 3-player product-state game (L = 3 local states, 2 actions) with a stage potential plus dummy terms."""
    N, L, A = 3, 3, 2
    q = rng.dirichlet(np.ones(L), size=(N, H, L, A))
    S = L**N
    phi = rng.random((H, S) + (A,) * N)
    r = np.stack([phi + np.take(rng.random((H, S) + (A,) * N), [0], axis=2 + i) for i in range(N)])
    return ProductMarkovGame(r, q, 0, "potential", gamma, None if gamma is None else rng.dirichlet(np.ones(S)))


PRODUCT = [pytest.param(3, None, id="product-finite"), pytest.param(1, 0.9, id="product-discounted")]


@pytest.mark.parametrize("gamma,identical", SETTINGS)
def test_numba_kernels_match_numpy_reference(gamma, identical):
    game, rng = _game(9, gamma, identical)
    _compare_backends(maml.potential_game(game), rng)


@pytest.mark.parametrize("H,gamma", PRODUCT)
def test_product_games_match_their_dense_form(H, gamma):
    rng = np.random.default_rng(10)
    game = _product_game(rng, H, gamma)
    g, dense = maml.potential_game(game), maml.potential_game(game.to_dense())
    _compare_backends(g, rng)
    theta, u = rng.normal(size=g.dim), rng.normal(size=g.dim)
    for backend in maml.BACKENDS:
        v1, g1 = maml.potential_gradient(theta, g, backend)
        v2, g2 = maml.potential_gradient(theta, dense, backend)
        assert v1 == pytest.approx(v2, abs=1e-12)
        np.testing.assert_allclose(g1, g2, atol=1e-12, rtol=0)
        np.testing.assert_allclose(maml.hessian_vector_product(theta, g, u, backend),
                                   maml.hessian_vector_product(theta, dense, u, backend), atol=1e-12, rtol=0)


def _compare_backends(g, rng):
    theta, u = rng.normal(size=g.dim), rng.normal(size=g.dim)
    (v1, g1), (v2, g2) = (maml.potential_gradient(theta, g, b) for b in ("numba", "numpy"))
    assert v1 == pytest.approx(v2, abs=1e-12)
    np.testing.assert_allclose(g1, g2, atol=1e-12, rtol=0)
    np.testing.assert_allclose(maml.hessian_vector_product(theta, g, u, "numba"),
                               maml.hessian_vector_product(theta, g, u, "numpy"), atol=1e-12, rtol=0)
    (f1, m1), (f2, m2) = (maml.meta_gradient(theta, g, 3, 0.5, b) for b in ("numba", "numpy"))
    assert f1 == pytest.approx(f2, abs=1e-12)
    np.testing.assert_allclose(m1, m2, atol=1e-12, rtol=0)


def test_kernels_run_uncompiled():
    """The kernels' Python bodies (``py_func``) give the compiled results: catches typing-only behaviour."""
    from solvers import maml_kernels as mk

    rng = np.random.default_rng(11)
    g = maml.potential_game(_product_game(rng, 2, None))
    ops = g.ops("numba")
    theta = ops.pad(rng.normal(size=g.dim))
    out = {}
    for name, fn in (("jit", mk._finite_primal), ("py", mk._finite_primal.py_func)):
        arrays = (np.zeros_like(theta), np.zeros((2, 27, 8)), np.zeros((2, 27, 8)), np.zeros((3, 27)), np.zeros((2, 27)))
        val = fn(theta, ops.actions, ops.adec, ops.phi, ops.rho, ops.dense_p, ops.local_p, ops.xmap, True, *arrays,
                 np.empty((27, 8)), np.empty(ops.buf1.size), np.empty(ops.buf2.size))
        out[name] = (val, arrays)
    assert out["jit"][0] == pytest.approx(out["py"][0], abs=1e-14)
    for a, b in zip(out["jit"][1], out["py"][1]):
        np.testing.assert_allclose(a, b, atol=1e-14)


@pytest.mark.parametrize("H,gamma", [pytest.param(3, None, id="finite"), pytest.param(1, 0.8, id="discounted")])
def test_potential_matches_independent_evaluator(H, gamma):
    rng = np.random.default_rng(12)
    for game in (_product_game(rng, H, gamma), random_potential_game(rng, H=H, gamma=gamma, identical=False)):
        g = maml.potential_game(game)
        theta = rng.normal(size=g.dim)
        pols = maml.softmax_policies(theta, g.horizon, g.num_states, g.actions)
        assert maml.potential(theta, g) == pytest.approx(evaluate_product_policy(game, pols).potential, abs=1e-12)


def _own_value_gradient(game, theta, i, eps=1e-6):
    """d V_i / d theta_i by central differences of the players' exact values (solvers.potential_eval)."""
    g = maml.potential_game(game)
    H, S, A = g.horizon, g.num_states, g.actions
    lo = sum(H * S * a for a in A[:i])
    out = np.empty(H * S * A[i])
    for k in range(out.size):
        e = np.zeros_like(theta)
        e[lo + k] = eps
        vp = evaluate_product_policy(game, maml.softmax_policies(theta + e, H, S, A), with_potential=False).values[i]
        vm = evaluate_product_policy(game, maml.softmax_policies(theta - e, H, S, A), with_potential=False).values[i]
        out[k] = (vp - vm) / (2 * eps)
    return out, slice(lo, lo + out.size)


@pytest.mark.parametrize("gamma", [None, 0.8])
def test_inner_step_is_independent_policy_gradient_in_an_exact_mpg(gamma):
    """Eq. (44) = Eq. (9)'s zeta: in an exact MPG (dummy terms, action-independent transitions) each
    player's own value gradient grad_{theta_i} V_i equals grad_{theta_i} Phi (atol 1e-7); with
    action-dependent transitions (not an MPG, like LQ tracking) they differ."""
    from solvers.potential_games import random_potential_game as family_game

    rng = np.random.default_rng(13)
    H = 1 if gamma else 3
    exact = family_game(H, 3, (2, 3), rng, gamma=gamma)
    g = maml.potential_game(exact)
    assert g.exact
    theta = rng.normal(size=g.dim)
    grad = maml.potential_gradient(theta, g)[1]
    for i in range(2):
        own, block = _own_value_gradient(exact, theta, i)
        np.testing.assert_allclose(own, grad[block], atol=1e-7, rtol=0)
    inexact = random_potential_game(rng, N=2, H=H, S=3, A=(2, 3), gamma=gamma, identical=False)
    g2 = maml.potential_game(inexact)
    assert not g2.exact
    grad2 = maml.potential_gradient(theta, g2)[1]
    own, block = _own_value_gradient(inexact, theta, 0)
    assert np.abs(own - grad2[block]).max() > 1e-3


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
