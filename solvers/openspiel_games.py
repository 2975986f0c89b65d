"""OpenSpiel games as finite-horizon Markov games (Section 2 of the paper), and perturbed task families.

:func:`import_openspiel` walks the whole game tree of a perfect-information OpenSpiel game (loaded
from its load string, e.g. ``"goofspiel(num_cards=4,imp_info=False,points_order=descending)"``)
and writes it as a finite-horizon Markov game: a :class:`solvers.games.ZeroSumGame` for two-player
zero-sum games, a :class:`solvers.nplayer.MarkovGame` otherwise (``kind "potential"`` with the
declared potential phi = r_1 for identical-interest games, ``"general_sum"`` for the others).

Import rules (each is tested in ``tests/test_openspiel.py``):

- **Steps.** Step h is the h-th decision of the game: a simultaneous node, or one player's move in a
  turn-based perfect-information game, read as a simultaneous step where the waiting players have a
  single (no-op) action. Chance nodes are not steps (next rule). H is the largest number of steps
  on any path (plus one for a chance root).
- **States** are numbered per step: at step h, 0 .. n_h - 1 are the distinct states of step h in
  the order a depth-first walk (joint actions in lexicographic index order, chance outcomes in
  OpenSpiel's order) first enters them; S = max_h n_h + 1. The last state S - 1 is **absorbing**
  (reward 0, stays in S - 1); every terminal goes there, and the unused rows (s >= n_h, s != S - 1)
  behave exactly like it. The initial state is s_1 = 0.
- **Actions.** Action index i of player p in state s is the i-th legal action of p in OpenSpiel's
  ascending order; A_p is the largest legal-action count of p over all states. An index
  i >= (number of legal actions of p in s) is illegal and behaves exactly as index 0 (the first
  legal action): same rewards, same transitions.
- **Chance** nodes are folded into the transitions: after a joint action, the chance outcomes up to
  the next decision (or terminal) are expanded with their probabilities. A chance root becomes a
  dummy first step (one state, every action index behaves the same) whose transition is the chance
  distribution.
- **Rewards.** r_{h,i}(s, a) is player i's expected increase of OpenSpiel's ``returns()`` (the total
  reward so far, which holds the final returns at terminals) from the decision at step h to the next
  decision node or terminal, over the chance outcomes in between: terminal returns and intermediate
  rewards are credited to the step that produces them. So V^pi_1(s_1) = E[returns(terminal)] -
  returns(root) for every Markov policy pi.
- **Merging.** Two histories at the same step become one state only when they are provably the
  same state: the same legal actions (OpenSpiel ids) for every player and, for every joint action,
  the same reward vector and the same distribution over next states (exact floating-point equality,
  decided from the last step backwards, so merged histories have identical futures). OpenSpiel's
  state strings are never used: some games (e.g. markov_soccer) omit the move counter from them.

The walk visits every history once; ``max_histories`` bounds it and ``max_states`` bounds S (both
raise :class:`OpenSpielImportError` with the reason, as do imperfect-information games,
mean-field games, sampled chance and games with fewer than 2 players).

:func:`openspiel_family` makes the task family of a meta-learning run from one imported game: game
k adds i.i.d. N(0, sigma^2) noise to the rewards (Appendix F.1's perturbation; sigma is the
standard deviation), drawn from child k of ``SeedSequence(seed)``.

``open_spiel`` is an optional dependency (``pip install -e '.[openspiel]'``), imported only when a
function here needs it.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from .games import MAX_DENSE_ENTRIES, GameError, ZeroSumGame
from .nplayer import MAX_PLAYERS, MarkovGame

__all__ = [
    "OpenSpielImportError",
    "ImportedGame",
    "import_openspiel",
    "check_load_string",
    "pad_horizon",
    "perturb_imported",
    "perturb_parameters",
    "parse_param_sigma",
    "openspiel_family",
    "DEFAULT_MAX_STATES",
    "DEFAULT_MAX_HISTORIES",
]

#: Default limit on S (states per step + the absorbing state).
DEFAULT_MAX_STATES = 10_000
#: Default limit on the histories (decision, chance and terminal nodes) the walk visits.
DEFAULT_MAX_HISTORIES = 2_000_000
#: |r_2 + r_1| allowed in a game OpenSpiel declares zero-sum, relative to max |r|.
ZERO_SUM_RTOL = 1e-9
#: |sum of chance probabilities - 1| allowed after one decision.
CHANCE_ATOL = 1e-9

_ABSORB = -1


class OpenSpielImportError(GameError):
    """An OpenSpiel game cannot be imported (the message says why); a :class:`GameError`, so the CLI exits 2."""


@dataclass(frozen=True)
class ImportedGame:
    """An imported OpenSpiel game.

    Attributes
    ----------
    game : ZeroSumGame or MarkovGame
        The Markov game (module docstring for the rules).
    load_string : str
        The OpenSpiel load string it came from.
    legal_counts : int64 (H, S, N)
        Number of legal actions of each player in each state (1 for a waiting player or the dummy
        chance step; 0 for the absorbing state and the unused rows).
    states_per_step : tuple of int
        n_h, the distinct states of each step.
    num_histories : int
        Histories (decision, chance and terminal nodes) visited by the walk.
    chance_root : bool
        The game starts with a chance node (step 0 is the dummy step).
    history_states : dict or None
        ``tuple(state.history())`` -> (h, s) of every decision history, when requested.
    """

    game: object
    load_string: str
    legal_counts: np.ndarray
    states_per_step: tuple
    num_histories: int
    chance_root: bool
    history_states: dict | None = None

    @property
    def horizon(self) -> int:
        return self.game.horizon

    @property
    def num_states(self) -> int:
        return self.game.num_states

    @property
    def num_players(self) -> int:
        return self.legal_counts.shape[2]

    def summary(self) -> dict:
        """The JSON-able facts of the import."""
        kind = "zero_sum" if isinstance(self.game, ZeroSumGame) else self.game.kind
        return {"load_string": self.load_string, "kind": kind, "players": self.num_players, "horizon": self.horizon,
                "states": self.num_states, "actions": list(self.game.num_actions),
                "states_per_step": list(self.states_per_step), "histories": self.num_histories,
                "chance_root": self.chance_root}


def _pyspiel():
    try:
        import pyspiel
    except ImportError:
        raise OpenSpielImportError("open_spiel is not installed: .venv/bin/pip install -e '.[openspiel]'") from None
    return pyspiel


def _load(pyspiel, game):
    """(load string, game); OpenSpiel's own report of a bad load string (printed on fd 2) is kept out of stderr."""
    if not isinstance(game, str):
        return str(game), game
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                return game, pyspiel.load_game(game)
            except pyspiel.SpielError as exc:
                reason = str(exc).strip().splitlines()[0].split(". Available games")[0]
                raise OpenSpielImportError(f"OpenSpiel cannot load {game!r}: {reason}") from None
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _check_type(pyspiel, load_string: str, game) -> None:
    """Refuse what cannot be a perfect-information simultaneous-move Markov game (module docstring)."""
    t = game.get_type()
    info, dyn = pyspiel.GameType.Information, pyspiel.GameType.Dynamics
    if t.information not in (info.PERFECT_INFORMATION, info.ONE_SHOT):
        raise OpenSpielImportError(
            f"{load_string}: {t.short_name} has imperfect information ({t.information.name}); only perfect-information "
            "games become Markov games (a simultaneous-move game may need imp_info=False)")
    if t.dynamics not in (dyn.SIMULTANEOUS, dyn.SEQUENTIAL):
        raise OpenSpielImportError(f"{load_string}: {t.short_name} has {t.dynamics.name} dynamics: its moves cannot be "
                                   "read as simultaneous moves of a Markov game")
    if t.chance_mode == pyspiel.GameType.ChanceMode.SAMPLED_STOCHASTIC:
        raise OpenSpielImportError(f"{load_string}: {t.short_name} samples its chance outcomes: the transitions "
                                   "cannot be enumerated")
    n = game.num_players()
    if not 2 <= n <= MAX_PLAYERS:
        raise OpenSpielImportError(f"{load_string}: {n} players; a Markov game here has 2 to {MAX_PLAYERS}")


def check_load_string(load_string: str):
    """Load ``load_string`` and check its game type (the refusals of :func:`import_openspiel` that need no tree
    walk); return the loaded ``pyspiel.Game``. Cheap: used to validate sweep specs before anything starts."""
    pyspiel = _pyspiel()
    load_string, g = _load(pyspiel, load_string)
    _check_type(pyspiel, load_string, g)
    return g


class _Walker:
    """Depth-first walk of the game tree; states of each step identified by their signature."""

    def __init__(self, load_string, num_players, max_states, max_histories, keep_map):
        self.load_string, self.N = load_string, num_players
        self.max_states, self.max_histories = max_states, max_histories
        self.ids: list[dict] = []  # per step: signature -> raw id (post-order)
        self.first: list[list] = []  # per step: preorder index of the first history of each raw id
        self.histories = 0
        self.history_raw = {} if keep_map else None  # history -> (h, raw id)

    def _visit(self):
        self.histories += 1
        if self.histories > self.max_histories:
            raise OpenSpielImportError(
                f"{self.load_string}: the game tree has more than {self.max_histories} histories (max_histories); "
                "import a smaller game (fewer cards, coins or a shorter horizon, or start_at(...) mid-play) or raise "
                "the limit")
        return self.histories

    def _legal(self, state) -> tuple:
        if state.is_simultaneous_node():
            legal = tuple(tuple(state.legal_actions(p)) for p in range(self.N))
            empty = [p for p, l in enumerate(legal) if not l]
            if empty:
                raise OpenSpielImportError(f"{self.load_string}: player {empty[0]} has no legal action at a "
                                           f"simultaneous node ({state.history()}): cannot be read as a simultaneous step")
            return legal
        p = state.current_player()
        if not 0 <= p < self.N:
            raise OpenSpielImportError(f"{self.load_string}: a node whose mover is {p} ({state.history()}): cannot "
                                       "be read as a simultaneous step")
        return tuple(tuple(state.legal_actions(q)) if q == p else () for q in range(self.N))

    def resolve(self, state, h, prob, base, out):
        """Append (probability, returns - base, next raw id at step h or _ABSORB) of ``state`` and its chance expansion."""
        if state.is_terminal():
            out.append((prob, [r - b for r, b in zip(state.returns(), base)], _ABSORB))
        elif state.is_chance_node():
            for action, p in state.chance_outcomes():
                child = state.clone()
                child.apply_action(action)
                self._visit()
                self.resolve(child, h, prob * p, base, out)
        else:
            out.append((prob, [r - b for r, b in zip(state.returns(), base)], self.decision(state, h)))

    def row(self, state, h, legal, base):
        """Per legal joint index: (expected reward vector, sorted ((next id, prob), ...))."""
        table = []
        simultaneous, chance = state.is_simultaneous_node(), state.is_chance_node()
        N = self.N
        for joint in itertools.product(*(range(max(1, len(l))) for l in legal)):
            if chance:  # the dummy chance step: every index is the chance distribution
                child = state
            else:
                child = state.clone()
                if simultaneous:
                    child.apply_actions([l[j] for l, j in zip(legal, joint)])
                else:
                    p = next(q for q, l in enumerate(legal) if l)
                    child.apply_action(legal[p][joint[p]])
                self._visit()
            outs = []
            self.resolve(child, h + 1, 1.0, base, outs)
            reward = [0.0] * N
            nxt: dict = {}
            for prob, diff, sid in outs:
                for i in range(N):
                    reward[i] += prob * diff[i]
                nxt[sid] = nxt.get(sid, 0.0) + prob
            total = sum(nxt.values())
            if abs(total - 1.0) > CHANCE_ATOL:
                raise OpenSpielImportError(f"{self.load_string}: the chance outcomes after {state.history()} have total "
                                           f"probability {total:.12g}, not 1")
            table.append((tuple(reward), tuple(sorted(nxt.items()))))
        return tuple(table)

    def register(self, h, signature, order, history):
        while len(self.ids) <= h:
            self.ids.append({})
            self.first.append([])
        ids = self.ids[h]
        sid = ids.get(signature)
        if sid is None:
            sid = ids[signature] = len(ids)
            self.first[h].append(order)
            if len(ids) + 1 > self.max_states:
                raise OpenSpielImportError(
                    f"{self.load_string}: more than {self.max_states - 1} distinct states at step {h} (S would exceed "
                    f"max_states = {self.max_states}); import a smaller game or raise the limit")
        else:
            self.first[h][sid] = min(self.first[h][sid], order)
        if self.history_raw is not None and history is not None:
            self.history_raw[history] = (h, sid)
        return sid

    def decision(self, state, h) -> int:
        order = self.histories
        legal = self._legal(state)
        table = self.row(state, h, legal, state.returns())
        return self.register(h, (legal, table), order, tuple(state.history()))

    def chance_root(self, state) -> int:
        legal = ((),) * self.N
        table = self.row(state, 0, legal, state.returns())
        return self.register(0, (legal, table), 0, None)


def import_openspiel(game, max_states: int = DEFAULT_MAX_STATES, max_histories: int = DEFAULT_MAX_HISTORIES,
                     keep_history_map: bool = False) -> ImportedGame:
    """Import a perfect-information OpenSpiel game as a finite-horizon Markov game (module docstring).

    Parameters
    ----------
    game : str or pyspiel.Game
        An OpenSpiel load string (e.g. ``"oshi_zumo(coins=4,size=1,horizon=4)"``) or a loaded game.
    max_states : int
        Refuse games whose S (largest number of distinct states of a step, plus the absorbing one)
        exceeds this.
    max_histories : int
        Refuse games whose tree has more histories than this (the walk visits each once).
    keep_history_map : bool
        Also return ``history_states``: ``tuple(state.history())`` -> (h, s) for every decision history.

    Returns
    -------
    ImportedGame

    Raises
    ------
    OpenSpielImportError
        open_spiel missing, a load string OpenSpiel rejects, imperfect information, mean-field
        dynamics, sampled chance, fewer than 2 players, or a limit exceeded.
    """
    for name, v in (("max_states", max_states), ("max_histories", max_histories)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise GameError(f"{name} must be an integer >= 2, got {v!r}")
    pyspiel = _pyspiel()
    load_string, g = _load(pyspiel, game)
    _check_type(pyspiel, load_string, g)
    N = g.num_players()
    root = g.new_initial_state()
    if root.is_terminal():
        raise OpenSpielImportError(f"{load_string}: the game is over at its initial state")
    walker = _Walker(load_string, N, int(max_states), int(max_histories), keep_history_map)
    walker._visit()
    chance_root = root.is_chance_node()
    try:
        (walker.chance_root if chance_root else functools.partial(walker.decision, h=0))(root)
    except RecursionError:
        raise OpenSpielImportError(f"{load_string}: the game is too deep for the walk (more than about "
                                   f"{sys.getrecursionlimit() // 3} steps)") from None
    return _assemble(walker, load_string, g.get_type(), N, chance_root, pyspiel)


def _assemble(walker: _Walker, load_string, game_type, N, chance_root, pyspiel) -> ImportedGame:
    """The dense arrays of the walked game (module docstring's numbering rules)."""
    H = len(walker.ids)
    n_h = [len(ids) for ids in walker.ids]
    S = max(n_h) + 1
    absorbing = S - 1
    A = [1] * N
    for ids in walker.ids:
        for legal, _ in ids:
            for p in range(N):
                A[p] = max(A[p], len(legal[p]))
    entries = H * S * int(np.prod(A)) * S
    if entries > MAX_DENSE_ENTRIES:
        raise OpenSpielImportError(f"{load_string}: the dense transitions would hold {entries} entries (H={H}, S={S}, "
                                   f"actions={A}), above the limit {MAX_DENSE_ENTRIES}")
    # renumber each step's raw (post-order) ids by first entry in the walk (pre-order)
    rank = [np.argsort(np.argsort(np.asarray(first, dtype=np.int64), kind="stable"), kind="stable")
            for first in walker.first]
    rewards = np.zeros((N, H, S, *A))
    transitions = np.zeros((H, S, *A, S))
    transitions[..., absorbing] = 1.0
    legal_counts = np.zeros((H, S, N), dtype=np.int64)
    for h, ids in enumerate(walker.ids):
        for (legal, table), raw in ids.items():
            s = int(rank[h][raw])
            counts = [max(1, len(l)) for l in legal]
            legal_counts[h, s] = counts
            r_small = np.empty((*counts, N))
            p_small = np.zeros((*counts, S))
            for joint, (reward, nxt) in zip(itertools.product(*(range(c) for c in counts)), table):
                r_small[joint] = reward
                for sid, prob in nxt:
                    p_small[joint + ((absorbing if sid == _ABSORB else int(rank[h + 1][sid])),)] += prob
            # illegal index i >= counts[p] behaves as index 0 of player p
            idx = np.ix_(*(np.where(np.arange(a) < c, np.arange(a), 0) for a, c in zip(A, counts)))
            rewards[(slice(None), h, s)] = np.moveaxis(r_small[idx], -1, 0)
            transitions[h, s] = p_small[idx]
    history_states = None
    if walker.history_raw is not None:
        history_states = {k: (h, int(rank[h][raw])) for k, (h, raw) in walker.history_raw.items()}
    utility = pyspiel.GameType.Utility
    if game_type.utility == utility.ZERO_SUM and N == 2:
        scale = max(1.0, float(np.abs(rewards).max()))
        if np.abs(rewards[0] + rewards[1]).max() > ZERO_SUM_RTOL * scale:
            raise OpenSpielImportError(f"{load_string}: declared zero-sum but r_1 + r_2 reaches "
                                       f"{np.abs(rewards[0] + rewards[1]).max():g}")
        game = ZeroSumGame(rewards[0], transitions, 0)
    elif game_type.utility == utility.IDENTICAL:
        game = MarkovGame(rewards, transitions, 0, "potential", potential=rewards[0])
    else:
        game = MarkovGame(rewards, transitions, 0, "general_sum")
    return ImportedGame(game, load_string, legal_counts, tuple(n_h), walker.histories, chance_root, history_states)


# ----------------------------------------------------------------------------- task families


def pad_horizon(imported: ImportedGame, game, horizon: int):
    """``game`` (shaped like ``imported``) extended to ``horizon`` >= its H by absorbing steps (reward 0).

    The extra steps start in the absorbing state, so every value is unchanged.
    """
    H = game.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < H:
        raise GameError(f"horizon must be an integer >= the imported game's H = {H} ({imported.load_string}), got {horizon!r}")
    if horizon == H:
        return game
    extra = horizon - H
    zs = isinstance(game, ZeroSumGame)
    r = game.rewards if zs else np.moveaxis(game.rewards, 0, 1)  # (H, ...) first
    r = np.concatenate([r, np.zeros((extra, *r.shape[1:]))])
    p_pad = np.zeros((extra, *game.transitions.shape[1:]))
    p_pad[..., game.num_states - 1] = 1.0
    p = np.concatenate([game.transitions, p_pad])
    if zs:
        return ZeroSumGame(r, p, game.initial_state)
    phi = None if game.potential is None else np.concatenate([game.potential, np.zeros((extra, *game.potential.shape[1:]))])
    return MarkovGame(np.moveaxis(r, 1, 0), p, game.initial_state, game.kind, potential=phi)


def perturb_imported(imported: ImportedGame, sigma: float, rng: np.random.Generator):
    """A copy of the imported game with i.i.d. N(0, sigma^2) reward noise (Appendix F.1's perturbation).

    One draw per (h, s, legal joint action) of every real state (the absorbing state and unused rows
    keep reward 0; an illegal index gets the noise of index 0, so it still behaves as the first legal
    action). Zero-sum games: one draw on r (the min-player gets -r); identical-interest games: one
    draw shared by all players (and added to the declared potential, so the game stays an
    identical-interest potential game); general-sum games: one draw per player.
    """
    if not np.isfinite(sigma) or sigma < 0:
        raise GameError(f"sigma must be a finite number >= 0, got {sigma!r}")
    game = imported.game
    zs = isinstance(game, ZeroSumGame)
    H, S = game.horizon, game.num_states
    A = game.num_actions
    draws = 1 if zs or game.kind == "potential" else game.num_players
    eps = rng.normal(0.0, 1.0, size=(draws, H, S, *A)) * float(sigma)
    counts = imported.legal_counts
    grid = [np.arange(H).reshape((H,) + (1,) * (len(A) + 1)), np.arange(S).reshape((1, S) + (1,) * len(A))]
    for p, a in enumerate(A):
        shape = [1] * len(A)
        shape[p] = a
        ar = np.arange(a).reshape((1, 1, *shape))
        grid.append(np.where(ar < counts[:, :, p].reshape((H, S) + (1,) * len(A)), ar, 0))
    eps = eps[(slice(None), *grid)]
    eps *= (counts[:, :, 0] > 0).reshape((1, H, S) + (1,) * len(A))
    if zs:
        return game.with_rewards(game.rewards + eps[0])
    if game.kind == "potential":
        return game.with_rewards(game.rewards + eps[0][None], potential=game.potential + eps[0])
    return game.with_rewards(game.rewards + eps)


def perturb_parameters(game, param_sigma: dict, rng: np.random.Generator):
    """The OpenSpiel game with its real-valued parameters perturbed: theta_j + N(0, sigma_j^2) per name j.

    ``game``: a loaded ``pyspiel.Game``; ``param_sigma``: parameter name -> standard deviation (>= 0).
    Draws in sorted name order. Only top-level float parameters (e.g. pathfinding's ``step_reward``,
    go's ``komi``) can be perturbed; anything else raises :class:`GameError` naming the parameter.
    Returns (perturbed pyspiel.Game, {name: drawn value}).
    """
    pyspiel = _pyspiel()
    params = game.get_parameters()
    values = {}
    for name in sorted(param_sigma):
        s = param_sigma[name]
        if name not in params:
            raise GameError(f"{game}: no parameter {name!r} to perturb (parameters: {', '.join(sorted(params))})")
        if not isinstance(params[name], float):
            raise GameError(f"{game}: parameter {name} = {params[name]!r} is not real-valued; only real-valued parameters "
                            "can be perturbed")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not np.isfinite(s) or s < 0:
            raise GameError(f"the standard deviation of parameter {name} must be a finite number >= 0, got {s!r}")
        values[name] = params[name] + float(s) * rng.normal()
    return pyspiel.load_game(game.get_type().short_name, {**params, **values}), values


def parse_param_sigma(items) -> dict | None:
    """``["NAME=SIGMA", ...]`` (the spec's ``param_sigma`` and ``--param-sigma``) as {NAME: SIGMA}; None if empty."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        try:
            sigma = float(value)
        except ValueError:
            sigma = float("nan")
        if not sep or not name.strip() or not 0 <= sigma < float("inf"):
            raise GameError(f"a parameter perturbation is NAME=SIGMA with SIGMA a finite number >= 0, got {item!r}")
        out[name.strip()] = sigma
    return out


@functools.lru_cache(maxsize=8)
def _cached_import(load_string: str, max_states: int, max_histories: int) -> ImportedGame:
    return import_openspiel(load_string, max_states=max_states, max_histories=max_histories)


def openspiel_family(load_string: str, count: int, sigma: float, horizon: int | None, seed: int,
                     max_states: int = DEFAULT_MAX_STATES, max_histories: int = DEFAULT_MAX_HISTORIES,
                     param_sigma: dict | None = None) -> list:
    """K perturbed copies of an imported OpenSpiel game: the task family of a meta-learning run.

    Game k draws from child seed k of ``SeedSequence(seed)`` (so the first k games do not depend on
    ``count``): first, when ``param_sigma`` names real-valued game parameters, their perturbation
    (:func:`perturb_parameters`; the perturbed game is imported again and must keep the base game's
    H, S and actions), then the reward noise of :func:`perturb_imported`; it is then padded to
    ``horizon`` (None: the game's own H) by :func:`pad_horizon`. The base import is cached per process.
    """
    from .generators import _check_positive_int, _check_seed

    if not isinstance(load_string, str) or not load_string.strip():
        raise GameError(f"an OpenSpiel load string is required, got {load_string!r}")
    _check_positive_int("count", count)
    root = np.random.SeedSequence(_check_seed(seed))
    imported = _cached_import(load_string, int(max_states), int(max_histories))
    H = imported.horizon if horizon is None else horizon
    pad_horizon(imported, imported.game, H)  # checks the horizon before any draw
    base = _load(_pyspiel(), load_string)[1] if param_sigma else None
    games = []
    for child in root.spawn(count):
        rng = np.random.default_rng(child)
        source = imported
        if param_sigma:
            game_k, values = perturb_parameters(base, param_sigma, rng)
            source = import_openspiel(game_k, max_states=max_states, max_histories=max_histories)
            shape = (source.horizon, source.num_states, source.game.num_actions)
            if shape != (imported.horizon, imported.num_states, imported.game.num_actions):
                raise GameError(f"{load_string}: the parameters {values} give a game with (H, S, actions) = {shape}, "
                                f"not the base game's {(imported.horizon, imported.num_states, imported.game.num_actions)}; "
                                "a task family needs one shape")
        games.append(pad_horizon(imported, perturb_imported(source, sigma, rng), H))
    return games
