"""``metasweep`` commands for Markov potential games (Section 4): projected Q-ascent and the game families.

Registered in :mod:`sweeps.cli` as ``CLI_ALGORITHMS["projected-q-ascent"]`` (``solve`` / ``meta``)
and ``GAME_MAKERS[family]`` for the families of :mod:`solvers.potential_games`. Heavy imports
happen inside the handlers only.

Curves (Parquet, :func:`tracking.curves.metric_table`): ``method`` ("single", "individual",
"meta"), ``game``, ``iteration`` (0 = the initial policy, up to T), ``gap`` (NE-gap of the iterate
pi^t, max_i form), then ``gap_avg`` (the F.2 average form), ``value`` (mean of the players'
values), ``potential`` (Phi(pi^t), NaN without a potential), ``value_<i>`` and
``best_response_value_<i>`` for every player i.
"""

from __future__ import annotations

import argparse

from .errors import UsageError

ALGORITHM = "projected-q-ascent"


def _add_once(parser: argparse.ArgumentParser, *flags, **kwargs) -> None:
    """Add an option unless another module already added it (the ``game make`` parser is shared)."""
    if not any(f in parser._option_string_actions for f in flags):
        parser.add_argument(*flags, **kwargs)


def _gamma(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got '{text}'") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1) (a discount), got {text}")
    return v


def add_options(parser: argparse.ArgumentParser, command: str | None = None) -> None:
    """Options of ``solve``/``meta`` (``command`` given) or of ``game make`` (``command`` None)."""
    from .cli import _nonneg_float, _positive_float

    if command is None:
        _add_once(parser, "--gamma", type=_gamma,
                  help="potential families: make discounted games (Appendix C) with this gamma in [0, 1); needs --horizon 1")
        _add_once(parser, "--rho", choices=("initial", "uniform"), default="initial",
                  help="initial distribution of discounted potential games: all mass on s_1 (default) or uniform")
        _add_once(parser, "--dummy-scale", type=_nonneg_float, default=1.0,
                  help="random-potential: dummy terms u_i ~ scale * U[0, 1] (default 1)")
        return
    _add_once(parser, "--step", type=_positive_float,
              help="projected-q-ascent: step size alpha > 0 of Eq. (7) (the paper's F.2 uses 0.05)")


def _potential_game_makers_check(args) -> None:
    """Options that a family fixes must not be given."""
    if args.family in ("paper-potential", "lq-tracking") and args.actions is not None:
        raise UsageError(f"--actions is fixed by the {args.family} family")
    if args.gamma is not None and args.horizon != 1:
        raise UsageError(f"--gamma makes a discounted (stationary) game: pass --horizon 1, got {args.horizon}")


def make_games(args) -> list:
    """``metasweep game make --family paper-potential | random-identical | random-potential | lq-tracking``.

    Random families: one action count per player from ``--actions A_1 ... A_N``, or N = ``--players``
    players with 2 actions each (default 2 players).
    """
    from solvers.potential_games import potential_family

    _potential_game_makers_check(args)
    players = getattr(args, "players", None)
    if args.actions is not None:
        if players is not None and players != len(args.actions):
            raise UsageError(f"--players {players} does not match the {len(args.actions)} counts of --actions")
        actions = tuple(args.actions)
    else:
        actions = (2,) * (players or 2)
    if args.family in ("paper-potential", "lq-tracking") and players is not None:
        raise UsageError(f"the number of players is fixed by the {args.family} family")
    return potential_family(args.family, args.count, args.sigma, args.horizon, args.seed, num_states=args.states,
                            num_actions=actions, dummy_scale=args.dummy_scale, gamma=args.gamma, rho=args.rho)


def _check_args(args, command: str) -> None:
    if args.step is None:
        raise UsageError(f"{command} --algorithm {ALGORITHM} needs --step (alpha of Eq. 7)")
    if args.eta is not None:
        raise UsageError(f"--eta is not used by {ALGORITHM}: its step size is --step")
    if args.eval_log is not None and args.eval_log < 2:
        raise UsageError("--eval-log needs at least 2 points")


def _load(path):
    from solvers.games import ZeroSumGame
    from solvers.nplayer import MarkovGame, load_any_game

    game = load_any_game(path)
    return MarkovGame.from_zero_sum(game) if isinstance(game, ZeroSumGame) else game


def curve_table(method: str, k: int, run):
    """The curve rows of one run (module docstring for the columns)."""
    from tracking.curves import metric_table

    cols = {"gap_avg": run.gap_avg, "value": run.values.mean(axis=1), "potential": run.potential}
    for i in range(run.values.shape[1]):
        cols[f"value_{i}"] = run.values[:, i]
        cols[f"best_response_value_{i}"] = run.best_response_values[:, i]
    return metric_table(method, k, run.iterations, run.gap, **cols)


def solve(args) -> dict:
    """``metasweep solve --algorithm projected-q-ascent --game G.npz --iterations T --step alpha --curve OUT``."""
    from solvers.nplayer import load_policies, potential_certificate, save_policies
    from solvers.potential_bounds import mismatch_coefficient, proposition1_bound
    from solvers.qascent import projected_q_ascent
    from tracking.curves import write_curves

    _check_args(args, "solve")
    game = _load(args.game)
    init = load_policies(args.init, game) if args.init else None
    run = projected_q_ascent(game, args.iterations, args.step, init, args.eval_every, eval_log_points=args.eval_log)
    write_curves(args.curve, curve_table("single", 0, run))
    if args.policy_out:
        save_policies(args.policy_out, run.policies)
    try:
        cert = potential_certificate(game)
        certificate = {"source": cert.source, "exact": cert.exact}
        bound = proposition1_bound(game, args.iterations, args.step, run.potential_gain, mismatch_coefficient(game),
                                   cert.exact).as_dict()
    except ValueError as exc:
        certificate, bound = {"source": None, "exact": False, "reason": str(exc)}, None
    return {
        "algorithm": ALGORITHM,
        "final_gap": run.final_gap,
        "final_gap_avg": float(run.gap_avg[-1]),
        "initial_gap": float(run.gap[0]),
        "mean_gap": run.mean_gap,
        "mean_gap_exact": run.every_iteration,
        "values": run.values[-1].tolist(),
        "best_response_values": run.best_response_values[-1].tolist(),
        "potential": float(run.potential[-1]),
        "potential_gain": run.potential_gain,
        "potential_certificate": certificate,
        "proposition1": bound,
        "iterations": args.iterations,
        "step": args.step,
        "discounted": game.discounted,
        "kernel_seconds": run.kernel_seconds,
        "curve": args.curve,
        "policy_out": args.policy_out,
    }


def meta(args) -> dict:
    """``metasweep meta --algorithm projected-q-ascent --games ... --iterations T --step alpha --curve OUT``."""
    from solvers.potential_meta import run_potential_sequence
    from tracking.curves import concat_curves, write_curves

    _check_args(args, "meta")
    if args.alpha is not None:
        raise UsageError(f"--alpha (Eq. 5) is not used by {ALGORITHM}: meta-learning warm-starts from the previous game")
    games = [_load(p) for p in args.games]
    results = run_potential_sequence(games, args.iterations, args.step, args.eval_every, eval_log_points=args.eval_log)
    write_curves(args.curve, concat_curves([curve_table(m, k, run) for m, res in results.items()
                                            for k, run in enumerate(res.runs)]))
    res = results["meta"]
    summary = {
        "algorithm": ALGORITHM,
        "K": len(games),
        "iterations": args.iterations,
        "step": args.step,
        "discounted": games[0].discounted,
        "delta_phi": res.delta_phi,
        "delta_phi_exact": res.delta.exact,
        "delta_phi_path": res.delta_path,
        "curve": args.curve,
    }
    for m, r in results.items():
        summary[m] = r.summary()
    return summary
