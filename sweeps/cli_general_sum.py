"""``metasweep solve|meta --algorithm omwu-cce`` (Algorithm 2, Section 5) and ``metasweep game make``
for the general-sum families (``random-general-sum``, ``markov-shapley``).

Plugged in through :data:`sweeps.cli.CLI_ALGORITHMS` and :data:`sweeps.cli.GAME_MAKERS`; one
``add_options(parser, command=None)`` serves both (``command`` None: the ``game make`` parser).
Options besides the shared ones: ``solve --correlated-out C.npz`` (Algorithm 3's policy in compact
form: ``trajectory_i`` (T, H, S, A_i) and ``stage_lengths``); ``game make --players N`` (N of
``random-general-sum``, default 3; ``--actions`` gives one A for every player or one per player).
``--eta`` is optional: the default is Theorem 5's H^{-2/3} T^{-1/3} (N-1)^{-2/3}. Zero-sum game
files are accepted and lifted to (r, -r). Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse

from .cli import UsageError, _positive_int

#: Default number of players of ``random-general-sum`` in ``game make``.
DEFAULT_PLAYERS = 3


def _has(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_options(parser: argparse.ArgumentParser, command: str | None = None) -> None:
    """omwu-cce's options on ``solve`` (``--correlated-out``), and ``--players`` on ``game make``."""
    if command is None:
        if not _has(parser, "--players"):  # may be shared with other N-player families
            parser.add_argument("--players", type=_positive_int, metavar="N",
                                help=f"number of players N of the N-player families (random-general-sum: default "
                                     f"{DEFAULT_PLAYERS}; others: see the README)")
        return
    if command == "solve" and not _has(parser, "--correlated-out"):
        parser.add_argument("--correlated-out", metavar="C.npz",
                            help="omwu-cce: write Algorithm 3's correlated policy in compact form "
                                 "(trajectory_i (T,H,S,A_i), stage_lengths)")


def make_games(args) -> list:
    from solvers.general_sum_games import general_sum_family

    if args.family == "markov-shapley":
        if args.actions is not None or (getattr(args, "players", None) not in (None, 2)) or args.states != 2:
            raise UsageError("markov-shapley is fixed (N = 2 players, S = 2 states, 3 actions each): "
                             "drop --players, --states and --actions")
        return general_sum_family(args.family, args.count, args.sigma, args.horizon, args.seed)
    players = getattr(args, "players", None) or DEFAULT_PLAYERS
    actions = args.actions or [2]
    if len(actions) == 1:
        actions = actions * players
    elif len(actions) != players:
        raise UsageError(f"--actions takes one number (every player) or N = {players} numbers, got {len(actions)}")
    if players < 2:
        raise UsageError(f"--players must be >= 2, got {players}")
    return general_sum_family(args.family, args.count, args.sigma, args.horizon, args.seed, players, args.states,
                              tuple(actions))


def _load_game(path):
    from solvers.nplayer import MarkovGame, load_any_game

    game = load_any_game(path)
    if not isinstance(game, MarkovGame):
        game = MarkovGame.from_zero_sum(game)
    if game.discounted:
        raise UsageError(f"{path}: omwu-cce runs on finite-horizon games; this game is discounted (gamma set)")
    return game


def _options(args) -> dict:
    if args.eval_log is not None and args.eval_log < 2:
        raise UsageError("--eval-log needs at least 2 points")
    return dict(stage_reset=args.stage_reset, tie_break=args.tie_break, tie_rtol=args.tie_rtol,
                eval_every=args.eval_every, eval_log_points=args.eval_log)


def _run_summary(run) -> dict:
    c = run.curves
    return {
        "final_gap": float(c.gap[-1]),
        "final_gap_mixture_bound": float(c.gap_mixture_bound[-1]),
        "final_gap_joint_average": float(c.gap_joint_average[-1]),
        "final_gap_product_average": float(c.gap_product_average[-1]),
        "values": c.values[-1].tolist(),
        "bound": run.bound.as_dict(),
        "conditions_hold": run.bound.conditions_hold,
    }


def solve(args) -> dict:
    from solvers.cce import joint_average, save_correlated_policy, save_joint_policy
    from solvers.cce_meta import solve_with_bound
    from solvers.nplayer import load_policies
    from tracking.curves import write_curves

    from .trial_general_sum import curve_tables

    game = _load_game(args.game)
    init = load_policies(args.init, game) if args.init else None
    run = solve_with_bound(game, args.iterations, args.eta, init, **_options(args))
    write_curves(args.curve, curve_tables("single", [run])[0])
    res = run.result
    if args.policy_out:  # the joint average (1/T) sum_t prod_i pi^t_i, a Markov correlated policy
        save_joint_policy(args.policy_out, joint_average(res))
    if getattr(args, "correlated_out", None):
        save_correlated_policy(args.correlated_out, res)
    return {
        "algorithm": "omwu-cce",
        **_run_summary(run),
        "iterations": args.iterations,
        "eta": res.eta,
        "players": game.num_players,
        "num_stages": res.num_stages,
        "stage_reset": res.stage_reset,
        "tie_break": args.tie_break,
        "kernel_seconds": res.kernel_seconds,
        "curve": args.curve,
        "policy_out": args.policy_out,
        "correlated_out": getattr(args, "correlated_out", None),
    }


def meta(args) -> dict:
    from solvers.cce_meta import run_sequence
    from tracking.curves import concat_curves, write_curves

    from .trial_general_sum import curve_tables

    games = [_load_game(p) for p in args.games]
    results = run_sequence(games, args.iterations, args.eta, alpha=args.alpha, **_options(args))
    write_curves(args.curve, concat_curves([t for m, r in results.items() for t in curve_tables(m, r.runs)]))
    first = results["meta"].runs[0].result
    summary = {
        "algorithm": "omwu-cce",
        "K": len(games),
        "players": games[0].num_players,
        "iterations": args.iterations,
        "eta": first.eta,
        "alpha": results["meta"].alpha,
        "stage_reset": args.stage_reset,
        "num_stages": first.num_stages,
        "curve": args.curve,
    }
    for m, r in results.items():
        summary[m] = r.summary()
    return summary


def evaluate(args) -> dict:
    """``metasweep evaluate`` with ``--joint-policy`` or ``--correlated-policy`` (any game), or ``--policy`` on a
    general-sum game: exact values, best-deviation values and CCE-gap (:mod:`solvers.cce`), labelled."""
    from solvers.cce import (
        evaluate_correlated_policy,
        evaluate_joint_policy,
        load_correlated_policy,
        load_joint_policy,
        product_joint,
    )
    from solvers.nplayer import load_policies

    game = _load_game(args.game)
    if getattr(args, "correlated_policy", None):
        return evaluate_correlated_policy(game, load_correlated_policy(args.correlated_policy, game))
    if args.joint_policy:
        return evaluate_joint_policy(game, load_joint_policy(args.joint_policy, game), "markov_joint").as_dict()
    return evaluate_joint_policy(game, product_joint(load_policies(args.policy, game)), "product").as_dict()
