"""``metasweep meta --algorithm maml``: MAML over Markov potential games (Section 4.2, Eq. 47).

Plugged in through :data:`sweeps.cli.CLI_ALGORITHMS`. Options (besides the shared ``--games``,
``--iterations/-T`` = inner steps T, ``--eval-every`` = evaluate every k outer iterations, ``--curve``):
``--step`` (inner step alpha, shared with projected-q-ascent), ``--outer-iterations`` M,
``--outer-step`` beta, ``--held-out`` (games the initialisations are evaluated on; default: the
training games, labelled ``held_out: false``), ``--init-out`` (the learned initialisation's policy).
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import logging

from .cli import (  # loaded: the CLI imports this module lazily
    UsageError,
    _nonneg_int,
    _positive_float,
)

log = logging.getLogger("metasweep")


def _has(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """MAML's options on the ``meta`` parser (``solve`` gets only the shared ``--step``)."""
    if not _has(parser, "--step"):  # shared with projected-q-ascent: added once, by whichever plugin comes first
        parser.add_argument("--step", type=_positive_float, metavar="ALPHA",
                            help="step size of the per-game ascent (projected-q-ascent: Eq. 7; maml: inner "
                                 "policy-gradient step, Eq. 44)")
    if command != "meta":
        return
    parser.add_argument("--outer-iterations", type=_nonneg_int, metavar="M",
                        help="maml: outer (meta) iterations M of Eq. 47 (required with --algorithm maml)")
    parser.add_argument("--outer-step", type=_positive_float, metavar="BETA",
                        help="maml: outer step size beta (the paper's eta in Eq. 47; required with --algorithm maml)")
    parser.add_argument("--held-out", nargs="+", metavar="G.npz",
                        help="maml: held-out games on which both initialisations are adapted and evaluated "
                             "(default: the training games)")
    parser.add_argument("--init-out", metavar="P.npz",
                        help="maml: write the learned initialisation's softmax policy (policy .npz, policy_i (H, S, A_i)), "
                             "usable as --init of solve")


def solve(args) -> dict:
    raise UsageError("maml learns an initialisation over several games: use 'metasweep meta --algorithm maml --games ...'")


def _load(paths):
    """Potential games from N-player files (dense or product-state); one clear error per bad file."""
    from solvers.maml import potential_game
    from solvers.nplayer import load_any_game

    out = []
    for p in paths:
        try:
            out.append(potential_game(load_any_game(p)))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{p}: {exc}") from None
    return out


def meta(args) -> dict:
    """Run :func:`solvers.maml.run_maml`; write per-held-out-game curves; return the JSON summary."""
    import numpy as np

    from solvers.maml import run_maml
    from tracking.curves import concat_curves, write_curves

    from .trial_maml import curve_tables

    missing = [o for o, v in (("--step", args.step), ("--outer-iterations", args.outer_iterations),
                              ("--outer-step", args.outer_step)) if v is None]
    if missing:
        raise UsageError(f"meta --algorithm maml needs {', '.join(missing)}")
    if args.eval_log is not None:
        raise UsageError("meta --algorithm maml evaluates every k outer iterations: use --eval-every, not --eval-log")
    train = _load(args.games)
    test = _load(args.held_out) if args.held_out else train
    res = run_maml(train, test, args.iterations, args.step, args.outer_iterations, args.outer_step,
                   eval_every=args.eval_every or 1)
    write_curves(args.curve, concat_curves(curve_tables(res)))
    if args.init_out:
        from solvers.maml import softmax_policies
        from solvers.nplayer import save_policies

        g = train[0]
        save_policies(args.init_out, softmax_policies(res.theta, g.horizon, g.num_states, g.actions))
    summary = {
        "algorithm": "maml",
        "K": len(train),
        "held_out": bool(args.held_out),
        "K_held_out": len(test),
        "iterations": args.iterations,
        "step": args.step,
        "outer_step": args.outer_step,
        "setting": "finite_horizon" if train[0].gamma is None else "discounted",
        **res.summary(),
        "kernel_seconds": res.kernel_seconds,
        "curve": args.curve,
        "init_out": args.init_out,
    }
    log.info("maml: ||grad F_T|| %.3g -> %.3g, held-out gap uniform %.4g vs maml %.4g", res.grad_norm[0],
             res.grad_norm[-1], float(np.mean(res.uniform.gap)), float(np.mean(res.meta[-1].gap)))
    return summary
