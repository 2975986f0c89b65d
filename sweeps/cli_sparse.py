"""``metasweep game make`` for large sparse games: zero-sum (families random-sparse, poker-standin) and
N-player identical-interest (random-sparse-identical, for projected Q-ascent).

Games are written in the sparse ``.npz`` form (``transition_next``, ``transition_prob``;
:mod:`solvers.games`); ``solve``, ``evaluate``, ``meta`` and ``nash`` read them like dense games.
Imports nothing heavy at module level.
"""

from __future__ import annotations

from .cli import UsageError, _positive_int

__all__ = ["add_options", "make_games"]


def add_options(parser) -> None:
    parser.add_argument("--successors", type=_positive_int, default=4,
                        help="random-sparse, poker-standin, random-sparse-identical: successors k per (h, s, joint "
                             "action) (default 4)")
    parser.add_argument("--pot-levels", type=_positive_int, default=8,
                        help="poker-standin: pot levels; --states must be a multiple of it (default 8)")


def make_games(args) -> list:
    from solvers.generators import game_family

    actions = tuple(args.actions or (2, 2))
    if args.family == "random-sparse-identical":  # N players: one action count each
        from solvers.potential_games import potential_family

        return potential_family(args.family, args.count, args.sigma, args.horizon, args.seed, num_states=args.states,
                                num_actions=actions, successors=args.successors)
    if len(actions) != 2:
        raise UsageError(f"--actions takes A B (2 numbers) for {args.family}, got {len(actions)}")
    return game_family(args.family, args.count, args.sigma, args.horizon, args.seed, args.states, actions,
                       successors=args.successors, pot_levels=args.pot_levels)
