"""The ``metasweep`` command line.

Every command prints exactly one JSON object as the last line of stdout; logs and progress go to
stderr. Bad input (arguments, game or policy files) gives one line ``metasweep: error: ...`` on
stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import sys

import numpy as np

from sweeps.errors import UsageError  # absolute: the same class when this module runs as __main__

log = logging.getLogger("metasweep")

#: Algorithms of ``solve`` / ``meta`` besides Algorithm 1 ("optimistic-mwu"): name -> module. The module
#: defines ``add_options(parser, command)`` (its own options on the ``solve`` or ``meta`` parser; it
#: must import nothing heavy at module level), ``solve(args) -> dict`` and ``meta(args) -> dict``.
CLI_ALGORITHMS: dict[str, str] = {}
CLI_ALGORITHMS["maml"] = "sweeps.cli_maml"  # MAML over potential games (Section 4.2)
CLI_ALGORITHMS["omwu-cce"] = "sweeps.cli_general_sum"  # Algorithm 2, general-sum CCE (Section 5)
CLI_ALGORITHMS["projected-q-ascent"] = "sweeps.cli_potential"  # Eq. 7, Markov potential games (Section 4.1)
#: Game families of ``game make`` besides the zero-sum ones: name -> module defining ``add_options(parser)``
#: and ``make_games(args) -> list`` of games (``ZeroSumGame`` or ``solvers.nplayer.MarkovGame``).
GAME_MAKERS: dict[str, str] = {}
GAME_MAKERS["random-general-sum"] = "sweeps.cli_general_sum"  # Section 5
GAME_MAKERS["markov-shapley"] = "sweeps.cli_general_sum"  # Section 5
for _family in ("paper-potential", "random-identical", "random-potential", "lq-tracking"):  # Section 4, F.2-F.3
    GAME_MAKERS[_family] = "sweeps.cli_potential"
for _family in ("random-sparse", "poker-standin", "random-sparse-identical"):  # large sparse games (issue 9)
    GAME_MAKERS[_family] = "sweeps.cli_sparse"
GAME_MAKERS["openspiel"] = "sweeps.cli_openspiel"  # an imported OpenSpiel game with perturbed rewards
#: ``game`` subcommands besides ``make``: name -> "module:function"; the module defines
#: ``add_game_command(game_subparsers)`` (adds the subparser), the function handles it (``args -> dict``).
GAME_COMMANDS: dict[str, str] = {"import-openspiel": "sweeps.cli_openspiel:cmd_import"}
ZERO_SUM_FAMILIES = ("paper-zero-sum", "random-zero-sum")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _jsonable(obj):
    """Make ``obj`` strict JSON: numpy scalars to Python, non-finite floats to the strings 'inf'/'-inf'/'nan'."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else ("nan" if math.isnan(f) else ("inf" if f > 0 else "-inf"))
    return obj


def emit(summary: dict) -> None:
    """Print the command's result: one JSON object, the last line of stdout."""
    sys.stdout.write(json.dumps(_jsonable(summary), allow_nan=False) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return v


def _positive_float(text: str) -> float:
    v = _finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _nonneg_float(text: str) -> float:
    v = _finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _alpha(text: str) -> float:
    v = _finite_float(text)
    if not 0 < v < 0.5:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1/2) (Eq. 5), got {text}")
    return v


def _add_algorithm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", "-T", type=_positive_int, required=True, help="T, iterations per game (>= 1)")
    p.add_argument("--eta", type=_positive_float,
                   help="learning rate eta > 0 (required by optimistic-mwu; Theorem 1 needs eta <= 1/(8H^2))")
    p.add_argument(
        "--no-stage-reset", dest="stage_reset", action="store_false",
        help="do not reset the iterates to the stage's initial policy at each stage start (default: reset, the paper's text)",
    )
    p.add_argument("--tie-break", choices=("uniform", "first"), default="uniform",
                   help="best fixed policy in hindsight on ties: uniform over tied actions (default) or the first")
    p.add_argument("--tie-rtol", type=_nonneg_float, default=1e-9, help="relative tolerance of tie detection (default 1e-9)")
    sched = p.add_mutually_exclusive_group()
    sched.add_argument("--eval-every", type=_positive_int, help="evaluate the running average every k iterations (and at T); default: every iteration")
    sched.add_argument("--eval-log", type=_positive_int, metavar="N", help="evaluate at about N log-spaced iterations (1 and T included)")


def _algorithm_options(args) -> dict:
    if args.eval_log is not None and args.eval_log < 2:
        raise UsageError("--eval-log needs at least 2 points")
    return dict(stage_reset=args.stage_reset, tie_break=args.tie_break, tie_rtol=args.tie_rtol,
                eval_every=args.eval_every, eval_log_points=args.eval_log)


def _add_plugin_options(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--algorithm", choices=("optimistic-mwu", *CLI_ALGORITHMS), default="optimistic-mwu",
                   help="optimistic-mwu: Algorithm 1 (zero-sum games, default); the others are documented in the README")
    for module in dict.fromkeys(CLI_ALGORITHMS.values()):
        importlib.import_module(module).add_options(p, command)


def _plugin(args, command: str):
    """The ``solve``/``meta`` handler of a non-default algorithm, or None for Algorithm 1 (which needs --eta)."""
    if args.algorithm != "optimistic-mwu":
        return getattr(importlib.import_module(CLI_ALGORITHMS[args.algorithm]), command)
    if args.eta is None:
        raise UsageError(f"{command} --algorithm optimistic-mwu needs --eta")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="metasweep", description="Multi-agent meta-RL sweeps (Mao et al., NeurIPS 2023).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    game = sub.add_parser("game", help="make game files")
    game_sub = game.add_subparsers(dest="game_command", required=True, parser_class=_Parser)
    make = game_sub.add_parser("make", help="write K perturbed games of a family as DIR/game_000.npz, ...")
    make.add_argument("--family", choices=(*ZERO_SUM_FAMILIES, *GAME_MAKERS), required=True,
                      help="paper-zero-sum: the F.1 game; random-zero-sum: a random base game (U[0,1] rewards, "
                           "Dirichlet(1) transitions); the other families are documented in the README")
    make.add_argument("--count", "-K", type=_positive_int, required=True, help="number of games K")
    make.add_argument("--sigma", type=_nonneg_float, required=True, help="std of the N(0, sigma^2) reward perturbation per (s, a, b)")
    make.add_argument("--horizon", "-H", type=_positive_int, required=True, help="horizon H")
    make.add_argument("--seed", type=_nonneg_int, required=True, help="seed of the family (game k uses child seed k)")
    make.add_argument("--states", type=_positive_int, default=2, help="S for random-zero-sum (default 2)")
    make.add_argument("--actions", type=_positive_int, nargs="+", metavar="A_i",
                      help="actions per player: A B for random-zero-sum (default 2 2)")
    make.add_argument("--out", required=True, help="output directory")
    make.add_argument("--overwrite", action="store_true", help="replace existing game files in DIR")
    for module in dict.fromkeys(GAME_MAKERS.values()):
        importlib.import_module(module).add_options(make)
    for target in GAME_COMMANDS.values():
        importlib.import_module(target.split(":")[0]).add_game_command(game_sub)

    nash = sub.add_parser("nash", help="Nash value (and an equilibrium) by backward induction with one LP per (h, s)")
    nash.add_argument("--game", required=True, help="game .npz")
    nash.add_argument("--policy-out", help="write the equilibrium policy (.npz with policy_0, policy_1)")

    ev = sub.add_parser("evaluate", help="exact value, best-response values and NE-gap of a policy")
    ev.add_argument("--game", required=True, help="game .npz")
    ev_pol = ev.add_mutually_exclusive_group(required=True)
    ev_pol.add_argument("--policy", help="policy .npz with policy_0 (H,S,A) and policy_1 (H,S,B) (one policy_i per player)")
    ev_pol.add_argument("--joint-policy", metavar="J.npz",
                        help="Markov correlated policy .npz with joint (H,S,A_1,...,A_N): its exact CCE-gap")
    ev_pol.add_argument("--correlated-policy", metavar="C.npz",
                        help="Algorithm 3's policy (.npz from solve --algorithm omwu-cce --correlated-out): its exact "
                             "expected CCE-gap")

    solve = sub.add_parser("solve", help="run one algorithm on one game (default: Algorithm 1)")
    solve.add_argument("--game", required=True, help="game .npz")
    _add_algorithm_options(solve)
    _add_plugin_options(solve, "solve")
    solve.add_argument("--init", help="initial policy .npz (default: uniform)")
    solve.add_argument("--curve", required=True, help="output Parquet of the convergence curve")
    solve.add_argument("--policy-out", help="write the output (average) policy .npz")

    meta = sub.add_parser("meta", help="individual vs meta learning (Eq. 5) on a sequence of games")
    meta.add_argument("--games", nargs="+", required=True, help="game .npz files, in sequence order")
    _add_algorithm_options(meta)
    _add_plugin_options(meta, "meta")
    meta.add_argument("--alpha", type=_alpha, help="alpha of Eq. 5 in (0, 1/2) (default 1/sqrt(K), capped at 0.45)")
    meta.add_argument("--curve", required=True, help="output Parquet of the per-game curves of both methods")

    run = sub.add_parser("run", help="run a sweep spec on Ray Tune, every trial tracked in MLflow")
    run.add_argument("spec", help="sweep spec YAML (see docs/sweep-spec.md)")
    run.add_argument("--address", help="Ray address (host:port, ray://host:10001 or auto); default RAY_ADDRESS or a local Ray")
    run.add_argument("--tracking-uri", help="MLflow tracking URI; default MLFLOW_TRACKING_URI or sqlite:///runs/mlflow/mlflow.db")
    run.add_argument("--smoke-test", action="store_true", help="shrink K, T, H and the grid so the sweep runs in seconds")
    run.add_argument("--num-cpus", type=_positive_int, help="CPUs of the embedded local Ray (default: all)")
    run.add_argument("--yes", action="store_true", help="confirm a grid larger than the limit")

    resume = sub.add_parser("resume", help="finish a sweep's unfinished trials")
    resume.add_argument("sweep", help="sweep id (runs/sweeps/SWEEP_ID) or its folder")
    resume.add_argument("--errored", action="store_true", help="also rerun trials that ended in an error")
    resume.add_argument("--address", help="Ray address (default: the sweep's, RAY_ADDRESS or local)")
    resume.add_argument("--num-cpus", type=_positive_int, help="CPUs of the embedded local Ray (default: all)")

    sync = sub.add_parser("sync", help="upload a sweep's outbox (results kept while MLflow was unreachable), idempotently")
    sync.add_argument("sweep", help="sweep id or its folder")

    status = sub.add_parser("status", help="trials finished, remaining and the best so far (from MLflow)")
    status.add_argument("sweep", help="sweep id or its folder")

    ui = sub.add_parser("ui", help="the MLflow UI for the configured store, on 127.0.0.1")
    ui.add_argument("--tracking-uri", help="default MLFLOW_TRACKING_URI or sqlite:///runs/mlflow/mlflow.db")
    ui.add_argument("--port", type=_positive_int, default=5000, help="port (default 5000)")

    fig2 = sub.add_parser("fig2", help="the paper's Figure 2 experiment: individual vs meta on K perturbed F.1 games")
    fig2.add_argument("--out", default="runs/fig2", help="output directory (curves.parquet, fig2.png, fig2.svg, summary.json)")
    fig2.add_argument("--K", type=_positive_int, default=10, help="games per sequence (default 10)")
    fig2.add_argument("--horizon", "-H", type=_positive_int, default=10, help="horizon H (default 10)")
    fig2.add_argument("--iterations", "-T", type=_positive_int, default=1000, help="T (default 1000)")
    fig2.add_argument("--eta", type=_positive_float, default=0.02, help="learning rate (default 0.02, the paper's)")
    fig2.add_argument("--sigma", type=_nonneg_float, default=0.1, help="reward perturbation std (default 0.1)")
    fig2.add_argument("--seeds", type=_nonneg_int, nargs="+", default=[0, 1, 2, 3, 4], help="family seeds (default 0 1 2 3 4)")
    fig2.add_argument("--alpha", type=_alpha, help="alpha of Eq. 5 (default 1/sqrt(K))")
    fig2.add_argument("--smoke-test", action="store_true", help="K=3, T=100, 2 seeds: runs in seconds")

    report = sub.add_parser("report", help="validation report of sweeps: figures, rate fits, every run against its bound")
    report.add_argument("sweeps", nargs="+", metavar="SWEEP", help="sweep id(s) (runs/sweeps/SWEEP_ID) or folder(s)")
    report.add_argument("--out", help="output directory (default runs/reports/FIRST_SWEEP_ID)")
    report.add_argument("--source", choices=("auto", "mlflow", "outbox"), default="auto",
                        help="read runs from MLflow, the sweep's outbox, or MLflow plus unsynced outbox entries (default auto)")
    report.add_argument("--tracking-uri", help="read MLflow here instead of the sweep's recorded tracking URI")
    report.add_argument("--tail", type=_fraction, default=0.5, help="fraction of the log-iteration range fitted (default 0.5)")
    report.add_argument("--confidence", type=_fraction, default=0.95, help="confidence level of the intervals (default 0.95)")
    report.add_argument("--max-settings", type=_positive_int, default=12,
                        help="convergence figures per algorithm, and settings per rate figure (default 12)")
    report.add_argument("--no-log", action="store_true", help="do not log the report to the sweeps' parent runs")
    report.add_argument("--fail-on-defect", action="store_true",
                        help="exit status 1 when a run exceeds its bound under the theorem's conditions")
    return parser


# ----------------------------------------------------------------------------- commands


def cmd_game_make(args) -> dict:
    from solvers.games import ZeroSumGame, save_game
    from solvers.generators import game_family
    from solvers.nplayer import save_markov_game

    if args.family in ZERO_SUM_FAMILIES:
        actions = tuple(args.actions or (2, 2))
        if len(actions) != 2:
            raise UsageError(f"--actions takes A B (2 numbers) for {args.family}, got {len(actions)}")
        games = game_family(args.family, args.count, args.sigma, args.horizon, args.seed, args.states, actions)
    else:
        games = importlib.import_module(GAME_MAKERS[args.family]).make_games(args)
    paths = [os.path.join(args.out, f"game_{k:03d}.npz") for k in range(args.count)]
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not args.overwrite:
        raise UsageError(f"{existing[0]} already exists (pass --overwrite to replace {len(existing)} file(s))")
    os.makedirs(args.out, exist_ok=True)
    for path, g in zip(paths, games):
        (save_game if isinstance(g, ZeroSumGame) else save_markov_game)(path, g)
    g = games[0]
    H, S, actions = g.horizon, g.num_states, list(g.num_actions)
    log.info("wrote %d games (H=%d, S=%d, actions=%s) to %s", len(paths), H, S, actions, args.out)
    return {"family": args.family, "count": args.count, "sigma": args.sigma, "horizon": H, "states": S,
            "actions": actions, "seed": args.seed, "files": paths}


def cmd_nash(args) -> dict:
    from solvers.evaluate import nash_equilibrium
    from solvers.games import load_game, save_policy

    game = load_game(args.game)
    sol = nash_equilibrium(game)
    if args.policy_out:
        save_policy(args.policy_out, sol.mu, sol.nu)
    return {"value": sol.value, "policy_out": args.policy_out}


def cmd_evaluate(args) -> dict:
    from solvers.evaluate import evaluate_policy
    from solvers.games import ZeroSumGame, load_policy
    from solvers.nplayer import MarkovGame, load_any_game

    if args.joint_policy or args.correlated_policy or \
            isinstance(game := load_any_game(args.game), MarkovGame) and game.kind == "general_sum":
        from .cli_general_sum import evaluate  # CCE-gaps (Section 5)

        return evaluate(args)
    if not isinstance(game, ZeroSumGame):  # a potential game (Section 4): NE-gap, values and Phi of the product policy
        from solvers.nplayer import load_policies
        from solvers.potential_eval import evaluate_product_policy

        return evaluate_product_policy(game, load_policies(args.policy, game)).as_dict()
    mu, nu = load_policy(args.policy, game)
    return evaluate_policy(game, mu, nu).as_dict()


def cmd_solve(args) -> dict:
    from solvers.games import load_game, load_policy, save_policy
    from solvers.meta import solve_with_bound
    from tracking.curves import curve_table, write_curves

    if plugin := _plugin(args, "solve"):
        return plugin(args)
    game = load_game(args.game)
    opts = _algorithm_options(args)
    mu0 = nu0 = None
    if args.init:
        mu0, nu0 = load_policy(args.init, game)
    run = solve_with_bound(game, args.iterations, args.eta, mu0, nu0, **opts)
    res = run.result
    write_curves(args.curve, curve_table("single", 0, res))
    if args.policy_out:
        save_policy(args.policy_out, res.mu_bar, res.nu_bar)
    H, S, A, B = game.shape
    return {
        "final_gap": res.final_gap,
        "value": float(res.value[-1]),
        "best_response_value_max": float(res.best_response_value_max[-1]),
        "best_response_value_min": float(res.best_response_value_min[-1]),
        "iterations": args.iterations,
        "eta": args.eta,
        "num_stages": res.num_stages,
        "stage_reset": res.stage_reset,
        "tie_break": args.tie_break,
        "bound": run.bound.as_dict(),
        "conditions_hold": run.bound.conditions_hold,
        "kernel_seconds": res.kernel_seconds,
        "curve": args.curve,
        "policy_out": args.policy_out,
    }


def cmd_meta(args) -> dict:
    from solvers.games import load_game
    from solvers.meta import run_sequence
    from tracking.curves import concat_curves, curve_table, write_curves

    if plugin := _plugin(args, "meta"):
        return plugin(args)
    games = [load_game(p) for p in args.games]
    opts = _algorithm_options(args)
    results = run_sequence(games, args.iterations, args.eta, alpha=args.alpha, **opts)
    tables = [curve_table(m, k, run.result) for m, mres in results.items() for k, run in enumerate(mres.runs)]
    write_curves(args.curve, concat_curves(tables))
    first = results["meta"].runs[0].result
    summary = {
        "K": len(games),
        "iterations": args.iterations,
        "eta": args.eta,
        "alpha": results["meta"].alpha,
        "stage_reset": args.stage_reset,
        "num_stages": first.num_stages,
        "curve": args.curve,
    }
    for m, mres in results.items():
        summary[m] = mres.summary()
    return summary


def cmd_run(args) -> dict:
    from dataclasses import replace

    from .service import run_sweep
    from .spec import check_grid_limit, load_spec

    spec = load_spec(args.spec, enforce_limit=False)  # a bad spec stops here: no Ray, no run
    if args.smoke_test:
        spec = spec.smoke()
    if args.yes:
        spec = replace(spec, confirm_large_grid=True)
    try:
        check_grid_limit(spec)
    except ValueError as exc:
        raise UsageError(f"{args.spec}: {exc}") from None
    with open(args.spec) as fh:
        text = fh.read()
    summary = run_sweep(spec, text, address=args.address, tracking_uri=args.tracking_uri, num_cpus=args.num_cpus,
                        smoke=args.smoke_test)
    return _sweep_result(summary)


def _sweep_result(summary: dict):
    """A sweep's summary, and exit status 130 when it was interrupted (resume finishes it)."""
    if summary.get("status") == "interrupted":
        log.warning("interrupted: continue with `metasweep resume %s`", summary["sweep_id"])
        return summary, 130
    log.info("open the MLflow UI with: metasweep ui --tracking-uri %s", summary["tracking_uri"])
    if summary.get("status") == "stopped":
        log.info("the stopper ended the sweep after %d trials (%d not run)", summary["finished"], summary["not_run"])
    return summary, (0 if summary.get("status") in ("finished", "stopped") else 1)


def cmd_resume(args) -> dict:
    from .service import resume_sweep

    return _sweep_result(resume_sweep(args.sweep, errored=args.errored, address=args.address, num_cpus=args.num_cpus))


def cmd_sync(args) -> dict:
    from .service import sync_sweep

    return sync_sweep(args.sweep)


def cmd_status(args) -> dict:
    from .service import sweep_status

    return sweep_status(args.sweep)


def cmd_ui(args) -> dict:
    from .service import artifact_root, default_tracking_uri

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return {"url": uri, "note": "this store is a tracking server: open its URL"}
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [mlflow_bin, "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    emit({"url": f"http://127.0.0.1:{args.port}", "tracking_uri": uri})
    log.info("MLflow UI on http://127.0.0.1:%d (Ctrl-C stops it)", args.port)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    os.execve(mlflow_bin, cmd, env)


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got '{text}'") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def cmd_report(args) -> dict:
    from tracking.report import build_report
    from tracking.report_data import load_sweep

    from .service import load_state

    if args.confidence >= 1.0:
        raise UsageError("--confidence must be below 1")
    states = [load_state(s) for s in args.sweeps]  # an unknown sweep stops here
    out = args.out or os.path.join("runs", "reports", states[0]["sweep_id"])
    data = [load_sweep(st, args.source, args.tracking_uri) for st in states]
    summary = build_report(data, out, tail=args.tail, confidence=args.confidence, max_settings=args.max_settings,
                           log_to_parent=not args.no_log)
    for line in summary["defect_runs"]:
        log.error("DEFECT: gap above its bound under the theorem's conditions: %s", line)
    return summary, (1 if args.fail_on_defect and summary["defects"] else 0)


def cmd_fig2(args) -> dict:
    from .paper_fig2 import run_fig2

    return run_fig2(args)


COMMANDS = {"nash": cmd_nash, "evaluate": cmd_evaluate, "solve": cmd_solve, "meta": cmd_meta, "fig2": cmd_fig2, "report": cmd_report,
            "run": cmd_run, "resume": cmd_resume, "sync": cmd_sync, "status": cmd_status, "ui": cmd_ui}


def _exit_without_teardown(code: int) -> None:
    """End a ``run`` / ``resume`` process whose work is done and written: the ``atexit`` handlers run as at any exit
    (Ray's shutdown of the embedded Ray, or its disconnect from a cluster; logging's and MLflow's flushes), then the
    process exits with ``code`` without the interpreter's finalization of modules and objects, about 1 s of tearing
    down Ray, MLflow, Numba and PyArrow here (docs/benchmarks.md, "Sweep efficiency vs trial length"). Returns
    (a normal exit follows) while a non-daemon thread still runs, which a normal exit would wait for."""
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    from solvers.games import GameError

    from .service import SweepError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout holds only our JSON
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        handler = cmd_game_make if args.command == "game" else COMMANDS[args.command]
        if args.command == "game" and args.game_command in GAME_COMMANDS:
            module, func = GAME_COMMANDS[args.game_command].split(":")
            handler = getattr(importlib.import_module(module), func)
        result = handler(args)
        summary, code = result if isinstance(result, tuple) else (result, 0)
        emit(summary)
        if argv is None and args.command in ("run", "resume"):  # the process's own command line: it ends here
            _exit_without_teardown(code)
        return code
    except UsageError as exc:
        print(f"metasweep: error: {exc}", file=sys.stderr)
        return 2
    except (GameError, ValueError, SweepError) as exc:
        print(f"metasweep: error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"metasweep: numerical failure: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("metasweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
