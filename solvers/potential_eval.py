"""Exact evaluation of product policies in N-player Markov games (Section 4, Appendix C, F.2).

For a product policy pi = (pi_1, ..., pi_N) (one (H, S, A_i) array per player; discounted games
H = 1) of a :class:`solvers.nplayer.MarkovGame` or :class:`solvers.product_games.ProductMarkovGame`:

- ``values[i]`` = V_i^pi: from s_1 in finite horizon, rho-weighted (V_i^rho) when discounted;
- ``best_response_values[i]`` = max_{pi_i'} V_i^{pi_i', pi_{-i}}: backward induction (finite
  horizon), policy iteration with exact linear solves (discounted);
- ``gap`` = max_i (best_response_values[i] - values[i]): the NE-gap of Definition 1 /
  Proposition 1 (the "max_i form", NOTES.md);
- ``gap_avg`` = (1/N) sum_i (best_response_values[i] - values[i]): the form plotted in Appendix F.2,
  1/2 (V_1^{dag,nu} + V_2^{mu,dag}) - V^{mu,nu} for two identical-interest players;
- ``potential`` = Phi(pi): the value of the stage potential reward phi of
  :func:`solvers.nplayer.potential_certificate` (NaN when the game has none).

All quantities are exact (no sampling); kernels in :mod:`solvers.markov_kernels`.

>>> from solvers.potential_games import paper_potential_game
>>> from solvers.nplayer import uniform_policies
>>> g = paper_potential_game(horizon=2)
>>> ev = evaluate_product_policy(g, uniform_policies(g))
>>> round(ev.values[0], 6) == round(ev.potential, 6)
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._blas import single_threaded_blas
from .sparse import kernel_threads
from .markov_kernels import _evaluate, kernel_form, pad_policies
from .nplayer import validate_policies

__all__ = ["ProductPolicyEvaluation", "evaluate_product_policy", "game_potential", "check_product_policies",
           "PI_MAX_ITER", "PI_RTOL"]

#: Policy iteration (discounted best responses and joint-action MDPs): iteration cap and the
#: relative improvement below which a greedy action does not replace the current one.
PI_MAX_ITER = 1000
PI_RTOL = 1e-12


@dataclass(frozen=True)
class ProductPolicyEvaluation:
    """Exact values of a product policy (module docstring for each field)."""

    values: np.ndarray
    best_response_values: np.ndarray
    potential: float
    gap: float
    gap_avg: float

    def as_dict(self) -> dict:
        d = asdict(self)
        d["values"] = self.values.tolist()
        d["best_response_values"] = self.best_response_values.tolist()
        return d


def game_potential(game):
    """(phi or None, certificate or None): the stage potential when the rewards have one."""
    from .nplayer import potential_certificate

    try:
        cert = potential_certificate(game)
    except ValueError:
        return None, None
    return cert.phi, cert


def check_product_policies(policies, game) -> list[np.ndarray]:
    """Validate one (H, S, A_i) policy per player against ``game`` (either game type)."""
    return validate_policies(policies, game)


def evaluate_product_policy(game, policies, with_potential: bool = True, kf=None) -> ProductPolicyEvaluation:
    """Exact values, best-response values, both NE-gap forms and Phi of a product policy (module docstring).

    ``kf`` may pass a prepared :func:`solvers.markov_kernels.kernel_form` of ``game`` (with the
    potential row when ``with_potential``) to skip its construction.
    """
    policies = check_product_policies(policies, game)
    if kf is None:
        phi = game_potential(game)[0] if with_potential else None
        kf = kernel_form(game, phi)
    rows = kf.rewards.shape[0]
    N = kf.num_players
    pol = pad_policies(policies, kf.max_actions)
    vals, brs = np.zeros(rows), np.zeros(N)
    with single_threaded_blas(), kernel_threads(kf.horizon * kf.num_states):
        _evaluate(kf.rewards, rows, N, pol, kf.adec, kf.sdec, kf.actions, kf.dense_p, kf.snext, kf.local_p, kf.xmap, kf.factored,
                  kf.gamma, kf.discounted, kf.rho, PI_MAX_ITER, PI_RTOL, vals, brs)
    gaps = brs - vals[:N]
    return ProductPolicyEvaluation(vals[:N].copy(), brs, float(vals[N]) if kf.has_phi else float("nan"),
                                   float(gaps.max()), float(gaps.mean()))
