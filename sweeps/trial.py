"""One sweep trial: one config -> K seeded games -> individual and meta learning -> summary.

Individual learning is K independent runs of Algorithm 1 from uniform policies; when the trial owns
more than one CPU (``resources.cpus`` >= 2, a placement group of that many 1-CPU bundles) they run
as Ray tasks in the trial's spare bundles, batched so that each task carries several games, while
the trial itself runs the meta chain (sequential by nature, Eq. 5). With one CPU both run in the
trial's process. Games come from ``SeedSequence(seed)`` (:func:`solvers.generators.game_family`), so a
result never depends on which worker or node ran it.

Summary scalars (MLflow metric names, contract): for each method m in {individual, meta}:
``final_gap/m``, ``final_value/m``, ``auc/m`` (mean of the K-averaged gap over the evaluated
iterations), ``iters_to_eps/m`` (first evaluated iteration with K-averaged gap <= epsilon; absent if
never reached), ``similarity/delta/m`` (Delta_{mu,nu}), ``similarity/delta_smoothed/m``,
``bound/theorem1_mean/m``, ``bound/theorem1_ratio/m`` (mean over games of gap_k / bound_k);
``bound/theorem2``, ``bound/theorem2_paper``, ``bound/theorem2_ratio`` (K-averaged meta gap /
bound), ``conditions/theorem1``, ``conditions/theorem2`` (1.0 if the theorem's conditions hold),
``speedup/final_gap`` (individual / meta) and ``speedup/auc``; timings ``time/kernel_s``,
``time/trial_s``, ``time/tracking_s``, ``time/individual_tasks``; ``num_stages``, ``alpha_used``; ``diverged``
(0, or 1 with ``diverged_at`` = the iteration when a kernel produced a non-finite number: set by the service).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from solvers.bounds import theorem2_bound
from solvers.generators import game_family
from solvers.meta import GameRun, default_alpha, individual_runs, meta_chain, similarity
from tracking.curves import concat_curves, curve_table

__all__ = ["TrialSettings", "TrialOutput", "run_trial", "CONFIG_KEYS"]

#: The config keys of Algorithm 1 trials (= their MLflow params); every algorithm's are in :mod:`sweeps.registry`.
CONFIG_KEYS = ("eta", "alpha", "K", "H", "sigma", "T", "seed", "stage_reset", "tie_break")
#: Minimum estimated kernel work per Ray task (seconds): smaller work is batched.
TASK_WORK_S = 0.05
#: Measured cost of Algorithm 1 per cell-iteration (H*S cells), used only to size task batches.
SECONDS_PER_CELL_ITER = 1.0e-7
#: Families of large sparse games (issue 9): a trial's CPUs and memory come from its game's size
#: (:func:`trial_resources`), and its individual runs stay in the trial's process, on Numba threads.
#: The first two are zero-sum (Algorithm 1), the last N-player (projected Q-ascent).
SPARSE_FAMILIES = ("random-sparse", "poker-standin", "random-sparse-identical")
#: CPUs a trial of a sparse game with at least ``solvers.sparse.PARALLEL_MIN_CELLS`` cells asks for.
LARGE_GAME_CPUS = 2
#: Resident memory of a trial's worker process besides its games and runs (Python, NumPy, Numba, Ray).
WORKER_BASE_BYTES = 600 * 2**20


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (from the spec): passed to the trainable once."""

    family: str
    states: int
    actions: tuple[int, ...]
    methods: tuple[str, ...]
    eval_every: int | None
    epsilon: float
    cpus_per_trial: float
    algorithm: str = "optimistic-mwu"
    game_options: tuple = ()  # (key, value) pairs of the family's game keys (sweeps.registry.Family)

    @classmethod
    def from_spec(cls, spec) -> "TrialSettings":
        """The settings of a validated :class:`sweeps.spec.SweepSpec`."""
        return cls(spec.family, spec.states, spec.actions, spec.methods, spec.eval_every, spec.epsilon, spec.cpus_per_trial,
                   spec.algorithm, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.game_options.items()))

    @property
    def game(self) -> dict:
        """The family's game options (``game`` mapping of the spec, defaults filled in)."""
        return dict(self.game_options)


@dataclass
class TrialOutput:
    scalars: dict
    histories: dict  # key -> (iterations, K-averaged values)
    curves: object  # pyarrow.Table of per-game curves
    num_tasks: int


def _options(config: dict, settings: TrialSettings) -> dict:
    return dict(stage_reset=bool(config["stage_reset"]), tie_break=config["tie_break"], eval_every=settings.eval_every)


def _batches(K: int, H: int, S: int, T: int, workers: int) -> int:
    """Number of Ray tasks for K individual games: at most ``workers``, each with >= TASK_WORK_S of work."""
    per_game = H * S * T * SECONDS_PER_CELL_ITER
    return max(1, min(workers, K, int(K * per_game / TASK_WORK_S)))


def trial_resources(settings: TrialSettings, config: dict) -> dict:
    """Ray resources of one trial of a sparse family: ``{"cpu": c, "memory": bytes}`` from the game's size.

    c = max(resources.cpus, LARGE_GAME_CPUS) when H S reaches the sparse kernels' parallel threshold.
    With J joint actions per (h, s) (A B for zero-sum, A_1 ... A_N for N players):
    memory = the shared transitions (12 k bytes per (h, s, joint action)) + K + 1 reward arrays (N of
    them per game for N players) + the runs kept for the summary + one solve's work arrays +
    ``WORKER_BASE_BYTES``. Zero-sum (Algorithm 1): a run keeps the output average and the best
    responses in hindsight of every stage, 8 (tau_bar + 1) H S (A + B) bytes; the work arrays are
    8 H S (A B + 3 (A + B)) bytes, 8 H S (4 + 6) on the compact two-action state. Projected Q-ascent: a run keeps its first and last policies, 16 H S
    sum_i A_i bytes; the work arrays (values, averaged Q, expectations) are 8 H S (2 J + 2 + 4 N A_max) bytes.
    """
    from solvers.schedule import stage_lengths
    from solvers.sparse import PARALLEL_MIN_CELLS

    K, H, T = int(config["K"]), int(config["H"]), int(config["T"])
    S, actions = settings.states, tuple(int(a) for a in settings.actions)
    k = int(settings.game.get("successors", 4))
    cells = H * S
    J = int(np.prod(actions))
    runs_per_game = len(settings.methods) * K
    if settings.algorithm == "optimistic-mwu":
        A, B = actions
        game = cells * J * (12 * k + 8 * (K + 1))
        runs = runs_per_game * 8 * (len(stage_lengths(H, T)) + 1) * cells * (A + B)
        work = 8 * cells * (J + (6 if A == B == 2 else 3 * (A + B)))  # solvers.sparse.COMPACT_TWO_ACTION
    else:
        N = len(actions)
        game = cells * J * (12 * k + 8 * N * (K + 1))
        runs = runs_per_game * 16 * cells * sum(actions)
        work = 8 * cells * (2 * J + 2 + 4 * N * max(actions))
    cpus = settings.cpus_per_trial
    if cells >= PARALLEL_MIN_CELLS:
        cpus = max(cpus, LARGE_GAME_CPUS)
    return {"cpu": cpus, "memory": int(game + runs + work + WORKER_BASE_BYTES)}


@contextmanager
def trial_cpus(settings: TrialSettings, config: dict):
    """Sparse families: run the enclosed Numba kernels on the CPUs :func:`trial_resources` reserved (their
    trials use parallel kernels instead of Ray tasks); the thread count is restored after (``run_trial``
    also runs in-process, in tests and benchmarks). Other families: nothing changes."""
    if settings.family not in SPARSE_FAMILIES:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, int(trial_resources(settings, config)["cpu"]))))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def run_methods(methods, games, individual_fn, meta_fn, n_tasks: int, T: int, eta, alpha: float, options: dict):
    """Individual learning (``individual_fn(games, T, eta, **options)``) as ``n_tasks`` Ray tasks when
    ``n_tasks >= 1`` (else in process) while this process runs the meta chain (``meta_fn(games, T, eta,
    alpha, **options)``, sequential by nature); returns ({method: runs}, number of Ray tasks)."""
    runs, pending = {}, []
    if "individual" in methods and n_tasks >= 1:
        import ray

        remote = ray.remote(num_cpus=1)(individual_fn)
        pending = [remote.remote([games[i] for i in part], T, eta, **options)
                   for part in np.array_split(np.arange(len(games)), n_tasks)]
    if "meta" in methods:
        runs["meta"] = meta_fn(games, T, eta, alpha, **options)
    if "individual" in methods:
        if pending:
            import ray

            runs["individual"] = [r for part in ray.get(pending) for r in part]
        else:
            runs["individual"] = individual_fn(games, T, eta, **options)
    return runs, len(pending)


def run_trial(config: dict, settings: TrialSettings) -> TrialOutput:
    """Run one config (module docstring). ``config`` holds :data:`CONFIG_KEYS`."""
    t0 = time.perf_counter()
    K, H, T, eta = int(config["K"]), int(config["H"]), int(config["T"]), float(config["eta"])
    alpha = default_alpha(K) if config.get("alpha") is None else float(config["alpha"])
    if settings.family == "openspiel":  # an imported OpenSpiel game (solvers.openspiel_games)
        games = openspiel_games(config, settings)
    else:
        sparse_opts = {k: v for k, v in settings.game.items() if k in ("successors", "pot_levels")}
        games = game_family(settings.family, K, float(config["sigma"]), H, int(config["seed"]), settings.states, settings.actions,
                            **sparse_opts)
    options = _options(config, settings)
    spare = 0 if settings.family in SPARSE_FAMILIES else int(settings.cpus_per_trial) - 1  # sparse: see trial_cpus
    n_tasks = _batches(K, H, games[0].num_states, T, spare) if spare >= 1 else 0
    with trial_cpus(settings, config):
        runs, num_tasks = run_methods(settings.methods, games, individual_runs, meta_chain, n_tasks, T, eta, alpha,
                                      options)
    kernel_s = sum(r.result.kernel_seconds for rs in runs.values() for r in rs)
    out = summarize(runs, config, settings, alpha)
    out.scalars["time/kernel_s"] = kernel_s
    out.scalars["time/individual_tasks"] = num_tasks
    out.scalars["time/trial_s"] = time.perf_counter() - t0
    out.num_tasks = num_tasks
    return out


def openspiel_games(config: dict, settings: TrialSettings) -> list:
    """K perturbed copies of the spec's OpenSpiel game, padded to H (:func:`solvers.openspiel_games.openspiel_family`).

    Algorithm 1 (this module) needs a two-player zero-sum game; other algorithms get every game as a
    :class:`solvers.nplayer.MarkovGame` (zero-sum ones lifted to (r, -r)) and ``players`` must be null or its N.
    """
    from solvers.games import GameError, ZeroSumGame
    from solvers.nplayer import MarkovGame
    from solvers.openspiel_games import openspiel_family, parse_param_sigma

    opts = settings.game
    games = openspiel_family(opts["game"], int(config["K"]), float(config["sigma"]), int(config["H"]), int(config["seed"]),
                             max_states=opts["max_states"], max_histories=opts["max_histories"],
                             param_sigma=parse_param_sigma(opts.get("param_sigma")))
    if settings.algorithm == "optimistic-mwu":
        if not isinstance(games[0], ZeroSumGame):
            raise GameError(f"{opts['game']}: algorithm {settings.algorithm} needs a two-player zero-sum game")
        return games
    games = [MarkovGame.from_zero_sum(g) if isinstance(g, ZeroSumGame) else g for g in games]
    players = config.get("players")
    if players is not None and int(players) != games[0].num_players:
        raise GameError(f"{opts['game']} has {games[0].num_players} players; players must be null or {games[0].num_players}")
    return games


def summarize(runs: dict[str, list[GameRun]], config: dict, settings: TrialSettings, alpha: float) -> TrialOutput:
    K, H, T, eta = int(config["K"]), int(config["H"]), int(config["T"]), float(config["eta"])
    scalars, histories, tables = {}, {}, []
    first = next(iter(runs.values()))[0].result
    its = first.iterations
    A, B = first.mu_bar.shape[-1], first.nu_bar.shape[-1]
    scalars["num_stages"] = first.num_stages
    scalars["alpha_used"] = alpha  # the spec's alpha: null means 1/sqrt(K), capped at 0.45
    for method, rs in runs.items():
        gap = np.mean([r.result.gap for r in rs], axis=0)
        value = np.mean([r.result.value for r in rs], axis=0)
        histories[f"gap/{method}"] = (its, gap)
        histories[f"value/{method}"] = (its, value)
        scalars[f"final_gap/{method}"] = gap[-1]
        scalars[f"final_value/{method}"] = value[-1]
        scalars[f"auc/{method}"] = float(np.mean(gap))
        hit = np.nonzero(gap <= settings.epsilon)[0]
        if hit.size:
            scalars[f"iters_to_eps/{method}"] = float(its[hit[0]])
        mu_d = [r.result.mu_dagger for r in rs]
        nu_d = [r.result.nu_dagger for r in rs]
        delta = similarity(mu_d, nu_d)
        scalars[f"similarity/delta/{method}"] = delta
        scalars[f"similarity/delta_smoothed/{method}"] = similarity(mu_d, nu_d, alpha)
        scalars[f"bound/theorem1_mean/{method}"] = float(np.mean([r.bound.kl_form for r in rs]))
        scalars[f"bound/theorem1_ratio/{method}"] = float(np.mean([r.result.gap[-1] / r.bound.kl_form for r in rs]))
        scalars["conditions/theorem1"] = float(all(r.bound.conditions_hold for r in rs))
        if method == "meta":
            t2 = theorem2_bound(H, T, eta, K, A, B, alpha, first.num_stages, delta, bool(config["stage_reset"]))
            scalars["bound/theorem2"] = t2.intermediate
            scalars["bound/theorem2_paper"] = t2.paper
            scalars["bound/theorem2_ratio"] = gap[-1] / t2.intermediate
            scalars["conditions/theorem2"] = float(t2.conditions_hold)
        for k, r in enumerate(rs):
            tables.append(curve_table(method, k, r.result))
    if "individual" in runs and "meta" in runs:
        fi, fm = scalars["final_gap/individual"], scalars["final_gap/meta"]
        scalars["speedup/final_gap"] = fi / fm if fm > 0 else math.inf
        scalars["speedup/auc"] = scalars["auc/individual"] / scalars["auc/meta"] if scalars["auc/meta"] > 0 else math.inf
    return TrialOutput(scalars, histories, concat_curves(tables), 0)
