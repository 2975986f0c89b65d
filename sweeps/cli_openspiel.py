"""``metasweep game import-openspiel`` and ``metasweep game make --family openspiel`` (OpenSpiel bridge).

Plugged in through :data:`sweeps.cli.GAME_COMMANDS` (the ``import-openspiel`` subcommand) and
:data:`sweeps.cli.GAME_MAKERS` (the ``openspiel`` family, whose ``--game LOAD_STRING`` option is added
here). The import rules are in :mod:`solvers.openspiel_games`. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import os

from .cli import UsageError, _positive_int


def _limit(text: str) -> int:
    v = _positive_int(text)
    if v < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {v}")
    return v


def _add_limits(parser: argparse.ArgumentParser) -> None:
    from solvers.openspiel_games import DEFAULT_MAX_HISTORIES, DEFAULT_MAX_STATES

    parser.add_argument("--max-states", type=_limit, default=DEFAULT_MAX_STATES, metavar="N",
                        help=f"openspiel: refuse games with more than N states S (default {DEFAULT_MAX_STATES})")
    parser.add_argument("--max-histories", type=_limit, default=DEFAULT_MAX_HISTORIES, metavar="M",
                        help=f"openspiel: refuse games whose tree has more than M histories (default {DEFAULT_MAX_HISTORIES})")


def add_options(parser: argparse.ArgumentParser) -> None:
    """``game make``: ``--game LOAD_STRING`` and the import limits of the ``openspiel`` family."""
    parser.add_argument("--game", metavar="LOAD_STRING",
                        help="openspiel: the OpenSpiel load string of the base game, e.g. "
                             "'goofspiel(num_cards=4,imp_info=False,points_order=descending)'")
    parser.add_argument("--param-sigma", action="append", metavar="NAME=SIGMA",
                        help="openspiel: also perturb the game's real-valued parameter NAME by N(0, SIGMA^2) per game "
                             "(repeatable), e.g. step_reward=0.05 for pathfinding")
    _add_limits(parser)


def _param_sigma(items) -> dict | None:
    from solvers.games import GameError
    from solvers.openspiel_games import parse_param_sigma

    try:
        return parse_param_sigma(items)
    except GameError as exc:
        raise UsageError(f"--param-sigma: {exc}") from None


def make_games(args) -> list:
    from solvers.openspiel_games import openspiel_family

    if not args.game:
        raise UsageError("--family openspiel needs --game LOAD_STRING (an OpenSpiel load string)")
    if args.actions is not None or args.states != 2:
        raise UsageError("--family openspiel takes its states and actions from the game: drop --states and --actions")
    return openspiel_family(args.game, args.count, args.sigma, args.horizon, args.seed, max_states=args.max_states,
                            max_histories=args.max_histories, param_sigma=_param_sigma(args.param_sigma))


def add_game_command(game_sub) -> None:
    """The ``game import-openspiel`` subparser."""
    p = game_sub.add_parser("import-openspiel",
                            help="import a perfect-information simultaneous-move OpenSpiel game as a Markov game .npz")
    p.add_argument("load_string", metavar="LOAD_STRING",
                   help="OpenSpiel load string, e.g. 'oshi_zumo(coins=4,size=1,horizon=4)' or "
                        "'start_at(history=0;1,game=goofspiel(num_cards=4,imp_info=False,points_order=descending))'")
    p.add_argument("--out", required=True, help="output game .npz")
    p.add_argument("--horizon", "-H", type=_positive_int,
                   help="pad to this horizon with absorbing steps (default: the game's own H; smaller is refused)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_limits(p)


def cmd_import(args) -> dict:
    """``game import-openspiel``: one clear error (exit 2) for games that cannot be imported, else the file."""
    from solvers.games import ZeroSumGame, save_game
    from solvers.nplayer import save_markov_game
    from solvers.openspiel_games import import_openspiel, pad_horizon

    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} already exists (pass --overwrite to replace it)")
    imported = import_openspiel(args.load_string, max_states=args.max_states, max_histories=args.max_histories)
    game = imported.game if args.horizon is None else pad_horizon(imported, imported.game, args.horizon)
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    (save_game if isinstance(game, ZeroSumGame) else save_markov_game)(args.out, game)
    summary = imported.summary()
    summary.update(horizon=game.horizon, game_horizon=imported.horizon, out=args.out)
    return summary
