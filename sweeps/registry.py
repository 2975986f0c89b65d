"""What a sweep can run: algorithms, their sweepable parameters, and game families.

This is the one place a new algorithm plugs into the sweep service. An :class:`Algorithm` names

- its sweepable parameters (the spec's ``search_space`` keys, which are also Ray Tune's
  ``param_space`` names and the MLflow child-run params: a contract, extend, never rename);
- the game families it accepts (``game.family`` in the spec) — each :class:`Family` names the
  other keys its ``game`` mapping may hold, with their checks and defaults;
- its trial function, ``"module:function"``, imported lazily in the Ray worker, with the signature
  ``run_trial(config: dict, settings: sweeps.trial.TrialSettings) -> sweeps.trial.TrialOutput``.

A trial function returns the summary scalars with the shared names ``final_gap/<method>``,
``auc/<method>``, ``speedup/final_gap`` ... (see :mod:`sweeps.trial`), so that stoppers, the
progress line and ``metasweep status`` work for every algorithm.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

__all__ = ["Param", "Family", "Algorithm", "ALGORITHMS", "FAMILIES", "register_algorithm", "register_family",
           "is_num", "is_int"]


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Param:
    """One sweepable parameter (or one key of a family's ``game`` mapping).

    ``kind`` is "float", "int", "bool", "str", "alpha" (a float in (0, 1/2) or null) or "list"
    (game keys only); ``check`` is a predicate on one value and ``requirement`` says it in words.
    """

    kind: str
    check: Callable[[Any], bool]
    requirement: str
    default: Any = None
    required: bool = False


# ----------------------------------------------------------------------------- parameters

#: Parameters every algorithm shares: the task family (K games, horizon, perturbation, seed) and T.
COMMON_PARAMS: dict[str, Param] = {
    "K": Param("int", lambda v: is_int(v) and 1 <= v <= 10_000, "an integer in [1, 10000]", required=True),
    "H": Param("int", lambda v: is_int(v) and 1 <= v <= 1000, "an integer in [1, 1000]", required=True),
    "sigma": Param("float", lambda v: is_num(v) and math.isfinite(v) and v >= 0, "a number >= 0", default=0.0),
    "T": Param("int", lambda v: is_int(v) and 1 <= v <= 10_000_000, "an integer in [1, 1e7]", required=True),
    "seed": Param("int", lambda v: is_int(v) and v >= 0, "an integer >= 0", default=0),
}

ETA = Param("float", lambda v: is_num(v) and math.isfinite(v) and v > 0, "a number > 0", required=True)
ALPHA = Param("alpha", lambda v: v is None or (is_num(v) and 0 < v < 0.5), "null (1/sqrt(K)) or a number in (0, 1/2)")
STAGE_RESET = Param("bool", lambda v: isinstance(v, bool), "true or false", default=True)
TIE_BREAK = Param("str", lambda v: v in ("uniform", "first"), "'uniform' or 'first'", default="uniform")


# ----------------------------------------------------------------------------- families and algorithms


@dataclass(frozen=True)
class Family:
    """A game family of the spec's ``game`` mapping: ``game_keys`` are the keys allowed besides ``family``."""

    name: str
    game_keys: dict[str, Param]
    description: str = ""
    #: search-space parameters whose value the family fixes: the spec may give only null or that value
    fixed_params: tuple = ()  # (name, value) pairs

    def options(self, game: dict) -> dict:
        """The family's options with defaults filled in (``game`` already checked key by key)."""
        return {k: game.get(k, p.default) for k, p in self.game_keys.items()}


@dataclass(frozen=True)
class Algorithm:
    """A sweepable algorithm (module docstring)."""

    name: str
    params: dict[str, Param]
    families: tuple[str, ...]
    trial: str  # "module:function"
    description: str = ""

    @property
    def config_keys(self) -> tuple[str, ...]:
        """The Tune config keys of a trial = the MLflow params, in a stable order."""
        return tuple(self.params)

    def run_trial(self, config: dict, settings):
        module, func = self.trial.split(":")
        return getattr(importlib.import_module(module), func)(config, settings)


ALGORITHMS: dict[str, Algorithm] = {}
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    unknown = [f for f in algorithm.families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"algorithm {algorithm.name}: unknown families {unknown}")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


_ACTIONS_2 = Param("list", lambda v: isinstance(v, list) and len(v) == 2 and all(is_int(a) and 1 <= a <= 1000 for a in v),
                   "[A, B] with integers in [1, 1000]", default=[2, 2])
_STATES = Param("int", lambda v: is_int(v) and 1 <= v <= 100_000, "an integer in [1, 100000]", default=2)

register_family(Family("paper-zero-sum", {}, "the F.1 game (S = 2, A = B = 2) with perturbed rewards"))
register_family(Family("random-zero-sum", {"states": _STATES, "actions": _ACTIONS_2},
                       "a random base game (U[0,1] rewards, Dirichlet(1) transitions) with perturbed rewards"))

register_algorithm(Algorithm(
    "optimistic-mwu",
    {"eta": ETA, "alpha": ALPHA, **COMMON_PARAMS, "stage_reset": STAGE_RESET, "tie_break": TIE_BREAK},
    ("paper-zero-sum", "random-zero-sum"),
    "sweeps.trial:run_trial",
    "Algorithm 1 (zero-sum Markov games), meta-initialisation Eq. (5)",
))


# ----------------------------------------------------------------------------- general-sum games (Section 5)

#: N of a general-sum game (null: the family's N, see sweeps.trial_general_sum.DEFAULT_PLAYERS).
PLAYERS = Param("int", lambda v: v is None or (is_int(v) and 2 <= v <= 16), "null (the family's N) or an integer in [2, 16]")
#: Algorithm 2's learning rate (null: Theorem 5's H^{-2/3} T^{-1/3} (N-1)^{-2/3}).
ETA_OR_THEOREM5 = Param("float", lambda v: v is None or (is_num(v) and math.isfinite(v) and v > 0),
                        "null (Theorem 5's H^(-2/3) T^(-1/3) (N-1)^(-2/3)) or a number > 0")
_NUM_ACTIONS = Param("int", lambda v: is_int(v) and 1 <= v <= 100, "an integer in [1, 100]", default=2)

register_family(Family("random-general-sum", {"states": _STATES, "num_actions": _NUM_ACTIONS},
                       "random N-player base game (U[0,1] rewards, Dirichlet(1) transitions), A = num_actions for "
                       "every player, N = the players param; perturbed rewards"))
register_family(Family("markov-shapley", {}, "Shapley's 3x3 game lifted to a 2-state Markov game (N = 2), perturbed rewards",
                       fixed_params=(("players", 2),)))

register_algorithm(Algorithm(
    "omwu-cce",
    {"eta": ETA_OR_THEOREM5, "alpha": ALPHA, **COMMON_PARAMS, "players": PLAYERS, "stage_reset": STAGE_RESET,
     "tie_break": TIE_BREAK},
    ("random-general-sum", "markov-shapley"),
    "sweeps.trial_general_sum:run_trial",
    "Algorithm 2 (general-sum CCE, Algorithm 3's output), meta-initialisation of Theorem 6",
))


# ----------------------------------------------------------------------------- Markov potential games (Section 4)

_ACTIONS_N = Param("list", lambda v: isinstance(v, list) and 2 <= len(v) <= 16 and all(is_int(a) and 1 <= a <= 100 for a in v),
                   "[A_1, ..., A_N] with 2 <= N <= 16 integers in [1, 100]", default=[2, 2])
_GAMMA = Param("float", lambda v: v is None or (is_num(v) and 0 <= v < 1),
               "null (finite horizon) or a discount in [0, 1) (a stationary game: needs H = 1)")
_RHO = Param("str", lambda v: v in ("initial", "uniform"), "'initial' or 'uniform'", default="initial")
_DUMMY_SCALE = Param("float", lambda v: is_num(v) and math.isfinite(v) and v >= 0, "a number >= 0", default=1.0)

register_family(Family("paper-potential", {"gamma": _GAMMA, "rho": _RHO},
                       "the F.2 identical-interest game (N = 2, S = 2, 2 x 2 actions) with perturbed shared rewards"))
register_family(Family("random-identical", {"states": _STATES, "actions": _ACTIONS_N, "gamma": _GAMMA, "rho": _RHO},
                       "random identical-interest game (U[0,1] rewards, Dirichlet(1) transitions), perturbed rewards"))
register_family(Family("random-potential", {"states": _STATES, "actions": _ACTIONS_N, "dummy_scale": _DUMMY_SCALE,
                                            "gamma": _GAMMA, "rho": _RHO},
                       "random potential plus per-player dummy terms, action-independent transitions (an exact MPG)"))
register_family(Family("lq-tracking", {"gamma": _GAMMA, "rho": _RHO},
                       "the F.3 linear-quadratic tracking game (4 players, 625 states, 81 joint actions), perturbed drifts"))

POTENTIAL_FAMILIES = ("paper-potential", "random-identical", "random-potential", "lq-tracking")
#: Step sizes (alpha of Eq. (7) and Eq. (45), beta of Eq. (47)): a finite number > 0, required, as eta.
STEP = ETA

#: MAML (Section 4.2): inner step alpha, outer iterations M and step beta of Eq. (47), held-out games.
MAML_PARAMS: dict[str, Param] = {
    "step": STEP,
    "outer_iterations": Param("int", lambda v: is_int(v) and 0 <= v <= 1_000_000, "an integer in [0, 1e6]", required=True),
    "outer_step": STEP,
    "held_out": Param("int", lambda v: is_int(v) and 1 <= v <= 1000, "an integer in [1, 1000]", default=4),
}

register_algorithm(Algorithm(
    "maml",
    {**COMMON_PARAMS, **MAML_PARAMS},
    POTENTIAL_FAMILIES,
    "sweeps.trial_maml:run_trial",
    "MAML over Markov potential games (Section 4.2, Eq. 47): exact meta-gradients; meta = MAML initialisation, "
    "individual = uniform initialisation, both adapted T policy-gradient steps on held-out games",
))


# ----------------------------------------------------------------------------- projected Q-ascent (Section 4.1)
# (the potential families and STEP are registered above, with MAML; the paper's F.2 step is 0.05)
register_algorithm(Algorithm(
    "projected-q-ascent",
    {"step": STEP, **COMMON_PARAMS},
    POTENTIAL_FAMILIES,
    "sweeps.trial_potential:run_trial",
    "independent projected Q-ascent, Eq. (7) (Markov potential games), warm-start meta-learning of Theorem 3",
))


# ----------------------------------------------------------------------------- OpenSpiel games (the OpenSpiel bridge)


def _openspiel_loadable(v) -> bool:
    """A load string open_spiel loads as a perfect-information game the bridge can import (no tree walk)."""
    if not isinstance(v, str) or not v.strip() or len(v) > 4000:
        return False
    from solvers.games import GameError
    from solvers.openspiel_games import check_load_string

    try:
        check_load_string(v)
    except GameError:
        return False
    return True


def _param_sigma_ok(v) -> bool:
    if v is None:
        return True
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        return False
    from solvers.games import GameError
    from solvers.openspiel_games import parse_param_sigma

    try:
        parse_param_sigma(v)
    except GameError:
        return False
    return True


register_family(Family("openspiel", {
    "game": Param("str", _openspiel_loadable, "an OpenSpiel load string of a perfect-information game that open_spiel "
                  "loads (the openspiel extra: pip install -e '.[openspiel]')", required=True),
    "max_states": Param("int", lambda v: is_int(v) and v >= 2, "an integer >= 2", default=10_000),
    "max_histories": Param("int", lambda v: is_int(v) and v >= 2, "an integer >= 2", default=2_000_000),
    "param_sigma": Param("list", _param_sigma_ok, "null or a list of 'NAME=SIGMA' (a real-valued parameter of the game "
                         "and the std of its N(0, SIGMA^2) perturbation, SIGMA >= 0)"),
}, "an imported OpenSpiel game (solvers.openspiel_games; H >= its horizon, padded with absorbing steps) with perturbed "
   "rewards (and parameters)"))
for _name in ("optimistic-mwu", "omwu-cce"):  # zero-sum games for Algorithm 1; any game (N from the game) for Algorithm 2
    register_algorithm(replace(ALGORITHMS[_name], families=(*ALGORITHMS[_name].families, "openspiel")))


# ----------------------------------------------------------------------------- large sparse games (issue 9)
_LARGE_STATES = Param("int", lambda v: is_int(v) and 2 <= v <= 100_000_000, "an integer in [2, 1e8]", default=1000)
_SUCCESSORS = Param("int", lambda v: is_int(v) and 1 <= v <= 64, "an integer in [1, 64]", default=4)
_POT_LEVELS = Param("int", lambda v: is_int(v) and 1 <= v <= 1000, "an integer in [1, 1000]", default=8)
register_family(Family("random-sparse", {"states": _LARGE_STATES, "actions": _ACTIONS_2, "successors": _SUCCESSORS},
                       "a large random sparse game (U[0,1] rewards, `successors` uniform successors with Dirichlet(1) "
                       "weights) with perturbed rewards; trial CPUs and memory from its size"))
register_family(Family("poker-standin", {"states": _LARGE_STATES, "actions": _ACTIONS_2, "successors": _SUCCESSORS,
                                         "pot_levels": _POT_LEVELS},
                       "a structured betting-ladder game standing in for the paper's Poker endgame (NOT the "
                       "Brains-vs-AI data; states a multiple of pot_levels), perturbed rewards"))
register_algorithm(replace(ALGORITHMS["optimistic-mwu"], families=(*ALGORITHMS["optimistic-mwu"].families,
                                                                  "random-sparse", "poker-standin")))
register_family(Family("random-sparse-identical", {"states": _LARGE_STATES, "actions": _ACTIONS_N,
                                                   "successors": _SUCCESSORS},
                       "a large identical-interest game with sparse transitions (U[0,1] shared rewards, `successors` "
                       "uniform successors with Dirichlet(1) weights, finite horizon), perturbed rewards; trial CPUs "
                       "and memory from its size"))
register_algorithm(replace(ALGORITHMS["projected-q-ascent"], families=(*ALGORITHMS["projected-q-ascent"].families,
                                                                      "random-sparse-identical")))
