"""Individual vs meta-learning with projected Q-ascent on a sequence of Markov potential games (Theorem 3).

Individual learning runs Eq. (7) on every game G^k from the uniform policy. Meta-learning (Section
4.1) warm-starts game k+1 from the final iterate of game k, pi^{k+1,0} = pi^{k,T} (game 1 starts
uniform). Each method's result carries its runs (curves from iteration 0 to T), Proposition 1 per
game, and for meta Theorem 3 with Delta_Phi (:mod:`solvers.potential_bounds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .markov_kernels import kernel_form
from .nplayer import potential_certificate
from .potential_bounds import (
    DeltaPhi,
    Proposition1Bound,
    Theorem3Bound,
    delta_phi,
    delta_phi_path,
    mismatch_coefficient,
    phi_extremes,
    proposition1_bound,
    theorem3_bound,
)
from .potential_eval import game_potential
from .qascent import QAscentResult, projected_q_ascent

__all__ = ["PotentialMethodResult", "GameFacts", "game_facts", "individual_q_ascent", "meta_q_ascent",
           "run_potential_sequence", "check_sequence", "check_potentials", "assemble"]

METHODS = ("individual", "meta")


@dataclass(frozen=True)
class GameFacts:
    """Per-game constants of the bounds: kappa (NaN if finite horizon), Phi extremes, potential exactness."""

    kappa: float
    phi_min: float
    phi_max: float
    potential_exact: bool


def game_facts(game) -> GameFacts:
    lo, hi = phi_extremes(game)
    return GameFacts(mismatch_coefficient(game), lo, hi, potential_certificate(game).exact)


def check_sequence(games) -> None:
    """All games must have one shape (players, H, S, actions) and one setting (finite / same gamma)."""
    if not games:
        raise ValueError("the sequence holds no games")
    g0 = games[0]
    for k, g in enumerate(games[1:], start=1):
        if (g.num_players, g.horizon, g.num_states, g.num_actions) != (g0.num_players, g0.horizon, g0.num_states,
                                                                       g0.num_actions):
            raise ValueError(f"game {k} has shape (N={g.num_players}, H={g.horizon}, S={g.num_states}, "
                             f"actions={g.num_actions}), game 0 has (N={g0.num_players}, H={g0.horizon}, "
                             f"S={g0.num_states}, actions={g0.num_actions})")
        if g.gamma != g0.gamma:
            raise ValueError(f"game {k} has gamma={g.gamma}, game 0 has gamma={g0.gamma}")


def _kf(game):
    return kernel_form(game, game_potential(game)[0])


def individual_q_ascent(games, iterations: int, step: float, eval_every: int | None = None,
                        eval_log_points: int | None = None) -> list[QAscentResult]:
    """Eq. (7) on every game from the uniform policy."""
    return [projected_q_ascent(g, iterations, step, None, eval_every, kf=_kf(g), eval_log_points=eval_log_points)
            for g in games]


def meta_q_ascent(games, iterations: int, step: float, eval_every: int | None = None, init=None,
                  eval_log_points: int | None = None) -> list[QAscentResult]:
    """Eq. (7) on G^1, ..., G^K with the warm start pi^{k+1,0} = pi^{k,T} (Theorem 3); G^1 from ``init`` (uniform)."""
    runs, start = [], init
    for g in games:
        run = projected_q_ascent(g, iterations, step, start, eval_every, kf=_kf(g), eval_log_points=eval_log_points)
        runs.append(run)
        start = run.policies
    return runs


@dataclass
class PotentialMethodResult:
    """One method's runs on the sequence, with Proposition 1 per game and (meta) Theorem 3."""

    method: str
    runs: list[QAscentResult]
    proposition1: list[Proposition1Bound]
    theorem3: Theorem3Bound | None = None
    delta: DeltaPhi | None = None
    delta_path: float = math.nan
    extra: dict = field(default_factory=dict)

    @property
    def iterations(self) -> np.ndarray:
        return self.runs[0].iterations

    def mean(self, attr: str) -> np.ndarray:
        """K-average of a per-run curve (``gap``, ``gap_avg``, ``potential``) or of players' mean ``values``."""
        arrs = [getattr(r, attr) for r in self.runs]
        if attr in ("values", "best_response_values"):
            arrs = [a.mean(axis=1) for a in arrs]
        return np.mean(arrs, axis=0)

    @property
    def delta_phi(self) -> float:
        """Delta_Phi used by Theorem 3: exact when transitions are shared, else the path similarity."""
        if self.delta is not None and self.delta.exact:
            return self.delta.value
        return self.delta_path

    def summary(self) -> dict:
        gap, gap_avg = self.mean("gap"), self.mean("gap_avg")
        out = {
            "final_gap": float(gap[-1]),
            "final_gap_avg": float(gap_avg[-1]),
            "initial_gap": float(gap[0]),
            "mean_gap": float(np.mean([r.mean_gap for r in self.runs])),
            "final_value": float(self.mean("values")[-1]),
            "final_potential": float(self.mean("potential")[-1]),
            "proposition1_mean": float(np.mean([b.value for b in self.proposition1])),
            "proposition1_conditions_hold": all(b.conditions_hold for b in self.proposition1),
            "kernel_seconds": float(sum(r.kernel_seconds for r in self.runs)),
        }
        if self.theorem3 is not None:
            out["theorem3"] = self.theorem3.as_dict()
        return out


def run_potential_sequence(games, iterations: int, step: float, eval_every: int | None = None,
                           methods=METHODS, facts: list[GameFacts] | None = None,
                           eval_log_points: int | None = None) -> dict[str, PotentialMethodResult]:
    """Individual and/or meta projected Q-ascent on ``games`` (module docstring), with bounds and Delta_Phi.

    Needs every game's stage potential (``ValueError`` naming the game otherwise): Delta_Phi,
    Proposition 1 and Theorem 3 rely on it.
    """
    check_potentials(games)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown} (choose from {list(METHODS)})")
    runs = {}
    for method in methods:
        chain = individual_q_ascent if method == "individual" else meta_q_ascent
        runs[method] = chain(games, iterations, step, eval_every, eval_log_points=eval_log_points)
    return assemble(games, runs, iterations, step, facts)


def check_potentials(games) -> None:
    """One shape and setting for all games, and a stage potential for each (``ValueError`` naming the game)."""
    check_sequence(games)
    for k, g in enumerate(games):
        try:
            potential_certificate(g)
        except ValueError as exc:
            raise ValueError(f"game {k}: {exc} (projected Q-ascent meta-learning needs Markov potential games)") from None


def assemble(games, runs: dict, iterations: int, step: float,
             facts: list[GameFacts] | None = None) -> dict[str, PotentialMethodResult]:
    """Each method's runs with Proposition 1 per game and, for meta, Delta_Phi and Theorem 3."""
    if facts is None:
        facts = [game_facts(g) for g in games]
    out = {}
    for method, rs in runs.items():
        props = [proposition1_bound(g, iterations, step, r.potential_gain, f.kappa, f.potential_exact)
                 for g, r, f in zip(games, rs, facts)]
        out[method] = PotentialMethodResult(method, rs, props)
    if "meta" in out:
        res = out["meta"]
        res.delta = delta_phi(games)
        res.delta_path = delta_phi_path(games, [r.policies for r in res.runs])
        kappas = [f.kappa for f in facts]
        kappa = float("nan") if any(math.isnan(k) for k in kappas) else max(kappas)
        phi_max = max(max(abs(f.phi_min), abs(f.phi_max)) for f in facts)
        res.theorem3 = theorem3_bound(games, iterations, step, res.delta_phi, res.delta.exact, kappa, phi_max)
    return out
