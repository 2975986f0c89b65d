"""Sparse zero-sum games (issue 9): format and validation, generators, and the sparse kernels against
the dense ones (an independent implementation: dense recursion with auxiliary policies, BLAS value
updates) on small games. Tolerance of the agreement: 1e-12 on curves and policies (the sparse kernel
evaluates the same iterates in closed form, so only rounding differs)."""

import json

import numpy as np
import pytest

from solvers import sparse
from solvers.algorithm1 import solve
from solvers.evaluate import evaluate_policy, nash_equilibrium
from solvers.games import GameError, ZeroSumGame, load_game, save_game
from solvers.generators import (game_family, paper_zero_sum_game, poker_standin_game, random_sparse_zero_sum_game,
                                random_zero_sum_game)
from solvers.meta import meta_initialization
from sweeps.cli import main

TOL = 1e-12


def _sparse_game(S=12, k=3, seed=0, H=3, actions=(2, 3)):
    return random_sparse_zero_sum_game(H, S, actions, k, np.random.default_rng(seed))


# ----------------------------------------------------------------------------- format


def test_to_dense_matches_independent_construction_and_round_trips():
    g = _sparse_game()
    H, S, A, B = g.shape
    P = np.zeros((H, S, A, B, S))  # independent: explicit loops, repeated successors add up
    for idx in np.ndindex(H, S, A, B):
        for j in range(g.num_successors):
            P[idx + (g.transition_next[idx + (j,)],)] += g.transition_prob[idx + (j,)]
    np.testing.assert_allclose(g.to_dense().transitions, P, rtol=0, atol=1e-15)
    back = g.to_dense().to_sparse()
    np.testing.assert_allclose(back.to_dense().transitions, P, rtol=0, atol=1e-15)
    assert back.num_successors <= g.num_successors


def test_save_load_exact_and_flags(tmp_path):
    g = _sparse_game()
    save_game(tmp_path / "g.npz", g)
    with np.load(tmp_path / "g.npz", allow_pickle=False) as data:
        assert "transitions" not in data.files
        assert data["transition_next"].dtype == np.int32 and data["transition_prob"].dtype == np.float64
    back = load_game(tmp_path / "g.npz")
    assert back.is_sparse and back.initial_state == g.initial_state
    for name in ("rewards", "transition_next", "transition_prob"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
        assert not getattr(back, name).flags.writeable
    assert back.nbytes == g.rewards.nbytes + g.transition_next.nbytes + g.transition_prob.nbytes


def test_generated_arrays_are_shared_not_copied():
    g = _sparse_game()
    family = game_family("random-sparse", 3, 0.1, 3, 5, 12, (2, 2), successors=3)
    assert all(np.shares_memory(f.transition_prob, family[0].transition_prob) for f in family)
    assert np.shares_memory(g.with_rewards(g.rewards + 1.0).transition_next, g.transition_next)


def _defect(what):
    g = _sparse_game()
    nxt, prob = g.transition_next.copy(), g.transition_prob.copy()
    if what == "negative":
        prob[1, 2, 0, 1] = [1.25, -0.25, 0.0]
        return nxt, prob, r"transition_prob has a negative probability at index \(1, 2, 0, 1, 1\): -0.25"
    if what == "index_high":
        nxt[0, 3, 1, 2, 2] = 12
        return nxt, prob, r"transition_next has a state index outside \[0, 12\) at index \(0, 3, 1, 2, 2\): 12"
    if what == "index_negative_int64":
        nxt = nxt.astype(np.int64)
        nxt[2, 0, 0, 0, 0] = -1
        return nxt, prob, r"transition_next has a state index outside \[0, 12\) at index \(2, 0, 0, 0, 0\): -1"
    if what == "row_sum":
        prob[2, 5, 1, 0] = [0.5, 0.4, 0.0]
        return nxt, prob, r"transition_prob rows must sum to 1 \(tolerance 1e-08\); row \(2, 5, 1, 0\) sums to 0.9"
    if what == "nan":
        prob[0, 0, 0, 0, 0] = np.nan
        return nxt, prob, "transition_prob has a non-finite entry at index"
    if what == "float_next":
        return nxt.astype(float), prob, "transition_next must be an integer array"
    if what == "shape":
        return nxt[..., :2], prob, "transition_prob must have the shape of transition_next"
    if what == "horizon":
        return nxt[:2], prob[:2], r"transition_next must have shape \(H, S, A, B, k\)"
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["negative", "index_high", "index_negative_int64", "row_sum", "nan", "float_next",
                                  "shape", "horizon"])
def test_one_defect_one_error(what, tmp_path):
    g = _sparse_game()
    nxt, prob, msg = _defect(what)
    with pytest.raises(GameError, match=msg):
        ZeroSumGame(g.rewards, None, 0, nxt, prob)
    if what in ("negative", "index_high", "row_sum"):  # the same error from a file, naming the file
        np.savez(tmp_path / "bad.npz", kind=np.array("zero_sum"), rewards=g.rewards, transition_next=nxt,
                 transition_prob=prob, initial_state=np.array(0))
        with pytest.raises(GameError, match="bad.npz: " + msg.split(" at")[0].split(" \\(")[0]):
            load_game(tmp_path / "bad.npz")


def test_dense_and_sparse_together_or_half_a_pair_are_refused():
    g = _sparse_game()
    with pytest.raises(GameError, match="not both"):
        ZeroSumGame(g.rewards, g.to_dense().transitions, 0, g.transition_next, g.transition_prob)
    with pytest.raises(GameError, match="need both"):
        ZeroSumGame(g.rewards, None, 0, g.transition_next, None)
    with pytest.raises(GameError, match="needs transitions"):
        ZeroSumGame(g.rewards)


# ----------------------------------------------------------------------------- kernels vs dense


@pytest.mark.parametrize("stage_reset", [True, False])
@pytest.mark.parametrize("case", ["f1", "random", "random_sparse"])
def test_algorithm1_sparse_equals_dense(case, stage_reset):
    if case == "f1":
        dense, eta, T = paper_zero_sum_game(6), 0.05, 200
    elif case == "random":
        dense, eta, T = random_zero_sum_game(4, 7, (3, 2), np.random.default_rng(3)), 0.3, 150
    else:
        dense, eta, T = _sparse_game(S=15, k=3, seed=2, H=4).to_dense(), 0.2, 150
    sg = dense.to_sparse()
    for tie_break in ("uniform", "first"):
        rd = solve(dense, T, eta, stage_reset=stage_reset, tie_break=tie_break)
        rs = solve(sg, T, eta, stage_reset=stage_reset, tie_break=tie_break)
        np.testing.assert_array_equal(rs.iterations, rd.iterations)
        for name in ("gap", "value", "best_response_value_max", "best_response_value_min", "mu_bar", "nu_bar"):
            np.testing.assert_allclose(getattr(rs, name), getattr(rd, name), rtol=0, atol=TOL, err_msg=name)
        np.testing.assert_array_equal(rs.mu_dagger, rd.mu_dagger)
        np.testing.assert_array_equal(rs.nu_dagger, rd.nu_dagger)


def test_algorithm1_sparse_equals_dense_with_meta_initialisation_and_eval_schedule():
    dense = random_zero_sum_game(3, 5, (2, 3), np.random.default_rng(8))
    sg = dense.to_sparse()
    first = solve(dense, 60, 0.4)
    mu0 = meta_initialization([first.mu_dagger], 0.3)  # per-stage (tau_bar, H, S, A) initial policies
    nu0 = meta_initialization([first.nu_dagger], 0.3)
    rd = solve(dense, 60, 0.4, mu_init=mu0, nu_init=nu0, eval_every=7)
    rs = solve(sg, 60, 0.4, mu_init=mu0, nu_init=nu0, eval_every=7)
    np.testing.assert_allclose(rs.gap, rd.gap, rtol=0, atol=TOL)
    np.testing.assert_allclose(rs.mu_bar, rd.mu_bar, rtol=0, atol=TOL)
    np.testing.assert_array_equal(rs.mu_dagger, rd.mu_dagger)
    r1 = solve(sg, 60, 0.4, mu_init=mu0[0], nu_init=nu0[0], store_hindsight=False)  # one init for every stage
    r2 = solve(dense, 60, 0.4, mu_init=mu0[0], nu_init=nu0[0])
    np.testing.assert_allclose(r1.gap, r2.gap, rtol=0, atol=TOL)
    assert r1.mu_dagger is None and r1.nu_dagger is None
    with pytest.raises(ValueError, match="sparse games only"):
        solve(dense, 5, 0.4, store_hindsight=False)


def test_large_eta_stays_finite_and_matches_dense():
    dense = random_zero_sum_game(3, 4, (2, 2), np.random.default_rng(1))
    rd, rs = solve(dense, 80, 1e4), solve(dense.to_sparse(), 80, 1e4)
    assert np.all(np.isfinite(rs.gap))
    np.testing.assert_allclose(rs.gap, rd.gap, rtol=0, atol=1e-9)


def test_parallel_and_single_thread_runs_are_bitwise_equal(monkeypatch):
    g = _sparse_game(S=200, k=4, seed=4, H=3, actions=(3, 2))
    one = solve(g, 40, 0.3, stage_reset=False)
    monkeypatch.setattr(sparse, "PARALLEL_MIN_CELLS", 0)  # every loop on all threads
    many = solve(g, 40, 0.3, stage_reset=False)
    np.testing.assert_array_equal(one.gap, many.gap)
    np.testing.assert_array_equal(one.mu_bar, many.mu_bar)


def test_evaluators_sparse_equal_dense():
    g = _sparse_game(S=10, k=3, seed=6, H=3, actions=(3, 2))
    dense = g.to_dense()
    rng = np.random.default_rng(0)
    mu = rng.dirichlet(np.ones(3), size=(3, 10))
    nu = rng.dirichlet(np.ones(2), size=(3, 10))
    es, ed = evaluate_policy(g, mu, nu), evaluate_policy(dense, mu, nu)
    for name in ("value", "best_response_value_max", "best_response_value_min"):
        assert getattr(es, name) == pytest.approx(getattr(ed, name), abs=TOL)
    ns, nd = nash_equilibrium(g), nash_equilibrium(dense)
    assert ns.value == pytest.approx(nd.value, abs=1e-9)
    assert evaluate_policy(g, ns.mu, ns.nu).ne_gap == pytest.approx(0.0, abs=1e-7)  # an equilibrium of the sparse game


# ----------------------------------------------------------------------------- generators


def test_random_sparse_generator_is_seeded_and_stochastic():
    a, b = _sparse_game(seed=3), _sparse_game(seed=3)
    np.testing.assert_array_equal(a.transition_next, b.transition_next)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert a.rewards.min() >= 0 and a.rewards.max() <= 1
    np.testing.assert_allclose(a.transition_prob.sum(-1), 1.0, atol=1e-12)


def test_blockwise_row_normalisation_equals_one_division():
    from solvers.generators import normalise_rows

    x = np.random.default_rng(3).standard_exponential((103, 2, 3, 4))
    y = x.copy()
    x /= x.sum(axis=-1, keepdims=True)
    normalise_rows(y, rows_per_block=7)  # 15 blocks, the last one short
    np.testing.assert_array_equal(y, x)


def test_poker_standin_structure():
    H, P, k = 3, 4, 3
    g = poker_standin_game(H, 6 * P, (2, 2), k, P)
    n_buckets = 6
    assert g.initial_state == (n_buckets // 2) * P
    assert g.rewards.min() >= 0 and g.rewards.max() <= 1
    # a strong hand (top bucket) gains from betting, a weak one loses; pots only grow
    top, low = (n_buckets - 1) * P, 0
    assert g.rewards[H - 1, top, 1, 0] > g.rewards[H - 1, top, 0, 0] > 0.5
    assert g.rewards[H - 1, low, 1, 0] < g.rewards[H - 1, low, 0, 0] < 0.5
    nxt = g.transition_next
    assert np.all(nxt % P >= np.arange(g.num_states)[None, :, None, None, None] % P)
    np.testing.assert_allclose(g.transition_prob[0, 0, 0, 0], [0.25, 0.5, 0.25])  # binomial card offsets
    with pytest.raises(GameError, match="multiple of pot_levels"):
        poker_standin_game(H, 6 * P + 1, (2, 2), k, P)


# ----------------------------------------------------------------------------- command line


def test_cli_make_solve_evaluate_sparse(tmp_path, capsys):
    out = tmp_path / "games"
    assert main(["game", "make", "--family", "random-sparse", "--count", "2", "--sigma", "0.1", "--horizon", "3",
                 "--seed", "4", "--states", "40", "--successors", "3", "--out", str(out)]) == 0
    made = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert made["states"] == 40 and len(made["files"]) == 2
    g = load_game(made["files"][0])
    assert g.is_sparse and g.num_successors == 3
    assert main(["solve", "--game", made["files"][0], "--iterations", "50", "--eta", "0.1", "--curve",
                 str(tmp_path / "c.parquet"), "--policy-out", str(tmp_path / "p.npz")]) == 0
    solved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert solved["final_gap"] == pytest.approx(solve(g.to_dense(), 50, 0.1).final_gap, abs=TOL)
    assert main(["evaluate", "--game", made["files"][0], "--policy", str(tmp_path / "p.npz")]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["ne_gap"] == pytest.approx(solved["final_gap"], abs=1e-10)
    assert main(["game", "make", "--family", "poker-standin", "--count", "1", "--sigma", "0", "--horizon", "2",
                 "--seed", "0", "--states", "30", "--pot-levels", "4", "--out", str(tmp_path / "p")]) == 2
    assert "multiple of pot_levels=4" in capsys.readouterr().err


# ----------------------------------------------------------------------------- sweeps


def _settings(family="random-sparse", states=40, cpus=1.0, **game):
    from sweeps.trial import TrialSettings

    opts = {"states": states, "actions": [2, 2], "successors": 3, **game}
    return TrialSettings(family, states, (2, 2), ("individual", "meta"), None, 0.01, cpus, "optimistic-mwu",
                         tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in opts.items()))


def test_trial_resources_follow_the_game_size():
    from sweeps.trial import LARGE_GAME_CPUS, WORKER_BASE_BYTES, trial_resources

    config = {"K": 3, "H": 5, "T": 30}
    small = trial_resources(_settings(states=100), config)
    large = trial_resources(_settings(states=10**6), config)
    assert small["cpu"] == 1.0 and large["cpu"] == LARGE_GAME_CPUS
    # independent count for S = 10^6, H = 5, A = B = 2, k = 3, K = 3, 2 methods, T = 30 (5 stages: 5, 6, 7, 8, 4)
    cells = 5 * 10**6
    # work arrays on the compact two-action state: Q (4) + policy, D and output sum of both players (6)
    expected = cells * 4 * (12 * 3 + 8 * 4) + 2 * 3 * 8 * 6 * cells * 4 + 8 * cells * (4 + 6) + WORKER_BASE_BYTES
    assert large["memory"] == expected
    assert trial_resources(_settings(states=10**6, cpus=4.0), config)["cpu"] == 4.0


def test_sparse_family_trial_runs_in_process_and_matches_a_direct_solve():
    from solvers.meta import individual_runs
    from sweeps.trial import run_trial

    config = {"eta": 0.1, "alpha": None, "K": 2, "H": 3, "sigma": 0.1, "T": 30, "seed": 7, "stage_reset": True,
              "tie_break": "uniform"}
    out = run_trial(config, _settings())
    assert out.num_tasks == 0
    games = game_family("random-sparse", 2, 0.1, 3, 7, 40, (2, 2), successors=3)
    direct = individual_runs(games, 30, 0.1, stage_reset=True, tie_break="uniform", eval_every=None)
    assert out.scalars["final_gap/individual"] == pytest.approx(np.mean([r.result.gap[-1] for r in direct]), abs=TOL)


def test_spec_accepts_sparse_families_and_checks_their_keys():
    from sweeps.spec import SpecError, parse_spec

    raw = {"experiment": "large", "algorithm": "optimistic-mwu", "methods": ["individual"],
           "game": {"family": "poker-standin", "states": 80, "pot_levels": 8, "successors": 4},
           "search_space": {"eta": 0.02, "K": 1, "H": 5, "T": 30}, "resources": {"cpus": 1}}
    spec = parse_spec(raw)
    assert spec.family == "poker-standin" and spec.states == 80 and dict(spec.game_options)["pot_levels"] == 8
    with pytest.raises(SpecError, match="successors"):
        parse_spec({**raw, "game": {"family": "random-sparse", "states": 80, "successors": 0}})


SWEEP_SPEC = """experiment: sparse-{name}
algorithm: optimistic-mwu
game:
  family: random-sparse
  states: 30
  successors: 3
methods: [individual, meta]
search_space:
  eta: 0.1
  K: 2
  H: 3
  T: 20
  seed: {{grid: [0, 1]}}
resources:
  cpus: 1
"""


@pytest.mark.slow
def test_sweep_of_a_sparse_family_end_to_end(tmp_path):
    """Two trials through Ray Tune with resources from trial_resources (a placement group with memory)."""
    import os
    import signal
    import subprocess
    import sys
    import uuid

    (tmp_path / "spec.yaml").write_text(SWEEP_SPEC.format(name=uuid.uuid4().hex[:8]))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "metasweep"), "run", "spec.yaml",
                             "--tracking-uri", f"sqlite:///{tmp_path}/m/mlflow.db", "--num-cpus", "2"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
        out, err = proc.communicate()
        pytest.fail(f"sweep did not end within 240 s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["trials"], summary["finished"], summary["failed"]) == (2, 2, 0)


@pytest.mark.parametrize("stage_reset", [True, False])
def test_compact_two_action_state_equals_the_generic_state(stage_reset, monkeypatch):
    """A = B = 2 runs on one float per player and cell for policy, D and output sum (sparse.py); the
    generic (H, S, 2) state is the reference: same curves and averages to 1e-12, same best fixed
    policies in hindsight, with per-stage meta-initialisations holding a zero probability (a -inf
    logit), an evaluation schedule, and the parallel loops on all threads."""
    g = _sparse_game(S=40, k=3, seed=11, H=4, actions=(2, 2))
    first = solve(g, 90, 0.3)
    mu0 = meta_initialization([first.mu_dagger], 0.2)
    nu0 = meta_initialization([first.nu_dagger], 0.2)
    mu0[0, 0, 0] = (1.0, 0.0)  # log 0 = -inf in the first stage's initial policy
    nu0[1, 1, 2] = (0.0, 1.0)
    kw = dict(stage_reset=stage_reset, mu_init=mu0, nu_init=nu0, eval_every=3)
    compact = solve(g, 90, 0.3, **kw)
    monkeypatch.setattr(sparse, "PARALLEL_MIN_CELLS", 0)
    threads = solve(g, 90, 0.3, **kw)
    monkeypatch.setattr(sparse, "COMPACT_TWO_ACTION", False)
    generic = solve(g, 90, 0.3, **kw)
    for name in ("gap", "value", "best_response_value_max", "best_response_value_min", "mu_bar", "nu_bar"):
        np.testing.assert_allclose(getattr(compact, name), getattr(generic, name), rtol=0, atol=TOL, err_msg=name)
        np.testing.assert_array_equal(getattr(threads, name), getattr(compact, name), err_msg=name)
    np.testing.assert_array_equal(compact.mu_dagger, generic.mu_dagger)
    np.testing.assert_array_equal(compact.nu_dagger, generic.nu_dagger)
    assert compact.mu_bar.shape == (4, 40, 2)
    np.testing.assert_allclose(compact.mu_bar.sum(-1), 1.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("family", ["random-sparse", "poker-standin"])
def test_sparse_families_are_seeded_prefix_stable_and_share_transitions(family):
    short = game_family(family, 2, 0.1, 3, 5, 16, (2, 2), successors=3, pot_levels=4)
    long = game_family(family, 4, 0.1, 3, 5, 16, (2, 2), successors=3, pot_levels=4)
    other = game_family(family, 2, 0.1, 3, 6, 16, (2, 2), successors=3, pot_levels=4)
    for a, b in zip(short, long):
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.transition_next, b.transition_next)
        np.testing.assert_array_equal(a.transition_prob, b.transition_prob)
    assert not np.array_equal(short[0].rewards, other[0].rewards)
    assert len({g.rewards.tobytes() for g in long}) == 4
    assert all(np.shares_memory(g.transition_prob, long[0].transition_prob) for g in long)
