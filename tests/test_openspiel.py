"""The OpenSpiel bridge (solvers/openspiel_games.py, game import-openspiel, family openspiel).

Oracles, independent of the importer's arrays: the Nash value of the imported game
(solvers.evaluate.nash_equilibrium) against backward induction over OpenSpiel's own game tree with
one matrix-game LP (scipy HiGHS, written here) per simultaneous node, max/min at turn-based nodes and
expectations at chance nodes; the value of random Markov policies on the arrays against their expected
return computed on the OpenSpiel tree (each history plays the policy of the state the importer mapped it
to, an illegal index playing the first legal action). Skipped when open_spiel is absent; `make test`
installs it (the openspiel extra).
"""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linprog

pyspiel = pytest.importorskip("pyspiel")

from solvers.evaluate import evaluate_policy, nash_equilibrium  # noqa: E402
from solvers.games import GameError, ZeroSumGame, load_game  # noqa: E402
from solvers.nplayer import MarkovGame, load_markov_game, potential_certificate  # noqa: E402
from solvers.openspiel_games import (  # noqa: E402
    DEFAULT_MAX_HISTORIES,
    DEFAULT_MAX_STATES,
    OpenSpielImportError,
    import_openspiel,
    openspiel_family,
    pad_horizon,
    perturb_imported,
)
from solvers.potential_eval import evaluate_product_policy  # noqa: E402
from sweeps.cli import main  # noqa: E402

GOOF4 = "goofspiel(num_cards=4,imp_info=False,points_order=descending)"
#: Two-player zero-sum games, each started mid-play (start_at) so that the value is not 0 by symmetry,
#: with the Nash value OpenSpiel's tree gives (asserted against the LP over the tree, not hard-coded).
ZERO_SUM = [
    "start_at(history=0;1,game=goofspiel(num_cards=5,imp_info=False,points_order=descending))",
    # random prize order: a chance root (dummy first step) and a chance node before every round
    "start_at(history=3;1,game=goofspiel(num_cards=4,imp_info=False,returns_type=point_difference))",
    "start_at(history=6;7,game=oshi_zumo(coins=5,size=1,horizon=4))",
    # a chance node (move order) after every joint action; its state string has no move counter
    "start_at(history=3;12;1,game=markov_soccer(grid=AO\nOB,horizon=4))",
    # turn-based perfect information, read as simultaneous steps with a no-op for the waiting player
    "start_at(history=0;4;2;6,game=tic_tac_toe())",
]
OTHERS = ["goofspiel(num_cards=3,imp_info=False,players=3)",  # N = 3, general_sum
          "goofspiel(num_cards=3,imp_info=False,returns_type=total_points)",  # general-sum 2 players
          "matrix_coordination"]  # identical interest -> potential


def _child(state, action):
    c = state.clone()
    c.apply_action(action)
    return c


def _child_joint(state, actions):
    c = state.clone()
    c.apply_actions(list(actions))
    return c


def _matrix_value(M: np.ndarray) -> float:
    """max_x min_j (x^T M)_j by one LP (HiGHS)."""
    A, B = M.shape
    res = linprog(np.r_[np.zeros(A), -1.0], A_ub=np.c_[-M.T, np.ones(B)], b_ub=np.zeros(B),
                  A_eq=np.r_[np.ones(A), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * A + [(None, None)], method="highs")
    assert res.status == 0
    return -res.fun


def _tree_nash(state) -> float:
    """Player 0's equilibrium expected terminal return on OpenSpiel's tree (zero-sum, two players)."""
    if state.is_terminal():
        return state.returns()[0]
    if state.is_chance_node():
        return sum(p * _tree_nash(_child(state, a)) for a, p in state.chance_outcomes())
    if state.is_simultaneous_node():
        l0, l1 = state.legal_actions(0), state.legal_actions(1)
        return _matrix_value(np.array([[_tree_nash(_child_joint(state, (a, b))) for b in l1] for a in l0]))
    vals = [_tree_nash(_child(state, a)) for a in state.legal_actions()]
    return max(vals) if state.current_player() == 0 else min(vals)


def _index_probs(pol_row: np.ndarray, n: int) -> np.ndarray:
    """Probabilities of the n legal actions: an illegal index i >= n plays the first legal action."""
    q = pol_row[:n].copy()
    q[0] += pol_row[n:].sum()
    return q


def _tree_policy_value(state, policies, hmap) -> np.ndarray:
    """Expected terminal returns (one per player) on OpenSpiel's tree under Markov policies of the arrays."""
    if state.is_terminal():
        return np.asarray(state.returns())
    if state.is_chance_node():
        return sum(p * _tree_policy_value(_child(state, a), policies, hmap) for a, p in state.chance_outcomes())
    h, s = hmap[tuple(state.history())]
    if state.is_simultaneous_node():
        legal = [state.legal_actions(p) for p in range(len(policies))]
        probs = [_index_probs(pol[h, s], len(l)) for pol, l in zip(policies, legal)]
        total = 0.0
        for joint in itertools.product(*(range(len(l)) for l in legal)):
            w = np.prod([q[j] for q, j in zip(probs, joint)])
            if w > 0:
                total = total + w * _tree_policy_value(_child_joint(state, [l[j] for l, j in zip(legal, joint)]),
                                                       policies, hmap)
        return total
    p = state.current_player()
    legal = state.legal_actions(p)
    q = _index_probs(policies[p][h, s], len(legal))
    return sum(w * _tree_policy_value(_child(state, a), policies, hmap) for w, a in zip(q, legal))


def _random_policies(game, rng):
    return [rng.dirichlet(np.ones(a), size=(game.horizon, game.num_states)) for a in game.num_actions]


def _array_values(game, policies) -> np.ndarray:
    if isinstance(game, ZeroSumGame):
        v = evaluate_policy(game, *policies).value
        return np.array([v, -v])
    return evaluate_product_policy(game, policies, with_potential=False).values


# ----------------------------------------------------------------------------- import vs OpenSpiel's tree


@pytest.mark.parametrize("load_string", ZERO_SUM)
def test_nash_value_equals_lp_over_the_openspiel_tree(load_string):
    imported = import_openspiel(load_string)
    assert isinstance(imported.game, ZeroSumGame)
    root = pyspiel.load_game(load_string).new_initial_state()
    tree = _tree_nash(root) - root.returns()[0]
    assert nash_equilibrium(imported.game).value == pytest.approx(tree, abs=1e-7)
    assert abs(tree) > 0.4  # the start_at positions were chosen so that the value is not 0 by symmetry


@pytest.mark.parametrize("load_string", ZERO_SUM + OTHERS)
def test_random_policies_value_equals_expected_return_on_the_tree(load_string):
    imported = import_openspiel(load_string, keep_history_map=True)
    root = pyspiel.load_game(load_string).new_initial_state()
    rng = np.random.default_rng(7)
    for _ in range(2):
        pols = _random_policies(imported.game, rng)
        tree = _tree_policy_value(root, pols, imported.history_states) - np.asarray(root.returns())
        np.testing.assert_allclose(_array_values(imported.game, pols), tree, atol=1e-10)


def test_kinds_follow_openspiels_utility():
    three = import_openspiel(OTHERS[0])
    assert isinstance(three.game, MarkovGame) and three.game.kind == "general_sum" and three.game.num_players == 3
    coord = import_openspiel("matrix_coordination").game
    assert coord.kind == "potential" and np.array_equal(coord.potential, coord.rewards[0])
    assert potential_certificate(coord).exact
    assert isinstance(import_openspiel(GOOF4).game, ZeroSumGame)


# ----------------------------------------------------------------------------- the import rules


def _dfs_first_entries(state, hmap, order):
    """(h, s) of decision histories in the walk's order: joint indices lexicographic, chance in OpenSpiel's order."""
    if state.is_terminal():
        return
    if state.is_chance_node():
        for a, _ in state.chance_outcomes():
            _dfs_first_entries(_child(state, a), hmap, order)
        return
    order.append(hmap[tuple(state.history())])
    if state.is_simultaneous_node():
        for joint in itertools.product(*(state.legal_actions(p) for p in range(state.num_players()))):
            _dfs_first_entries(_child_joint(state, joint), hmap, order)
    else:
        for a in state.legal_actions():
            _dfs_first_entries(_child(state, a), hmap, order)


@pytest.mark.parametrize("load_string", [GOOF4, ZERO_SUM[1]])
def test_states_are_numbered_per_step_in_first_entry_order(load_string):
    imported = import_openspiel(load_string, keep_history_map=True)
    order = []
    _dfs_first_entries(pyspiel.load_game(load_string).new_initial_state(), imported.history_states, order)
    first_seen: dict[int, list[int]] = {}
    for h, s in order:
        seen = first_seen.setdefault(h, [])
        if s not in seen:
            seen.append(s)
    first_step = 1 if imported.chance_root else 0
    assert sorted(first_seen) == list(range(first_step, imported.horizon))
    for h, seen in first_seen.items():
        assert seen == list(range(imported.states_per_step[h]))  # 0, 1, 2, ... in the order first entered
    assert imported.num_states == max(imported.states_per_step) + 1
    assert imported.game.initial_state == 0


def test_chance_root_is_a_dummy_first_step():
    imported = import_openspiel(ZERO_SUM[1])
    g = imported.game
    assert imported.chance_root and imported.states_per_step[0] == 1
    assert np.all(imported.legal_counts[0, 0] == 1)
    p0 = g.transitions[0, 0]
    assert np.all(p0 == p0[0, 0])  # every action index: the same chance distribution
    root = pyspiel.load_game(ZERO_SUM[1]).new_initial_state()
    assert p0[0, 0].max() == pytest.approx(max(p for _, p in root.chance_outcomes()))


def test_absorbing_state_unused_rows_and_illegal_indices():
    imported = import_openspiel(GOOF4)
    g, counts = imported.game, imported.legal_counts
    H, S, A, B = g.shape
    absorbing = S - 1
    for h in range(H):
        for s in range(S):
            if s >= imported.states_per_step[h]:  # absorbing state and unused rows
                assert np.all(g.rewards[h, s] == 0) and np.all(g.transitions[h, s, :, :, absorbing] == 1)
                assert np.all(counts[h, s] == 0)
                continue
            n_a, n_b = counts[h, s]
            for i in range(n_a, A):
                assert np.array_equal(g.rewards[h, s, i], g.rewards[h, s, 0])
                assert np.array_equal(g.transitions[h, s, i], g.transitions[h, s, 0])
            for j in range(n_b, B):
                assert np.array_equal(g.rewards[h, s, :, j], g.rewards[h, s, :, 0])
                assert np.array_equal(g.transitions[h, s, :, j], g.transitions[h, s, :, 0])
    assert (counts[:, :, 0] < A).any()  # the hand shrinks: illegal indices exist
    # terminal returns are credited to the last step; the intermediate steps of goofspiel pay nothing
    assert np.all(g.rewards[:-1] == 0) and np.abs(g.rewards[-1]).max() == 1.0


def test_histories_are_merged_only_when_provably_identical():
    """Every pair of histories mapped to one state has the same legal actions and the same continuation
    value under random policies; and merging happens (fewer states than histories)."""
    imported = import_openspiel(GOOF4, keep_history_map=True)
    game = pyspiel.load_game(GOOF4)
    by_state: dict = {}
    for hist, hs in imported.history_states.items():
        by_state.setdefault(hs, []).append(hist)
    assert len(imported.history_states) > sum(imported.states_per_step)  # some histories were merged
    rng = np.random.default_rng(3)
    pols = _random_policies(imported.game, rng)
    for hs, hists in by_state.items():
        states = []
        for hist in hists:
            st = game.new_initial_state()
            for k in range(0, len(hist), 2):
                st.apply_actions(list(hist[k:k + 2]))
            states.append(st)
        legal = {tuple(tuple(st.legal_actions(p)) for p in range(2)) for st in states}
        assert len(legal) == 1
        conts = [_tree_policy_value(st, pols, imported.history_states) - np.asarray(st.returns()) for st in states]
        np.testing.assert_allclose(conts, np.broadcast_to(conts[0], np.shape(conts)), atol=1e-12)


@pytest.mark.parametrize("load_string, match", [
    ("kuhn_poker", "imperfect information"),
    ("turn_based_simultaneous_game(game=goofspiel(num_cards=3,imp_info=False))", "imperfect information"),
    ("goofspiel(num_cards=3,imp_info=True)", "imperfect information"),
    ("mfg_crowd_modelling", "MEAN_FIELD dynamics"),
    ("catch", "1 players"),
    ("no_such_game", "Unknown game"),
    ("markov_soccer(grid=A.\n.B\n..,horizon=3)", "total probability 0"),
])
def test_refusals(load_string, match):
    with pytest.raises(OpenSpielImportError, match=match):
        import_openspiel(load_string)


def test_limits():
    with pytest.raises(OpenSpielImportError, match="max_states = 20"):
        import_openspiel("oshi_zumo(coins=4,size=1,horizon=4)", max_states=20)
    with pytest.raises(OpenSpielImportError, match="more than 100 histories"):
        import_openspiel(GOOF4, max_histories=100)
    with pytest.raises(GameError, match="max_states must be an integer >= 2"):
        import_openspiel(GOOF4, max_states=1)


def test_missing_open_spiel_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspiel", None)
    with pytest.raises(OpenSpielImportError, match=r"pip install -e '\.\[openspiel\]'"):
        import_openspiel(GOOF4)


# ----------------------------------------------------------------------------- families


def test_family_noise_respects_the_import_rules():
    imported = import_openspiel(GOOF4)
    base, counts = imported.game, imported.legal_counts
    games = openspiel_family(GOOF4, 3, 0.3, 5, seed=11)
    assert all(isinstance(g, ZeroSumGame) and g.shape == (5, *base.shape[1:]) for g in games)
    assert not np.array_equal(games[0].rewards, games[1].rewards)
    S = base.num_states
    for g in games:
        assert np.array_equal(g.transitions[:3], base.transitions)
        assert np.all(g.rewards[3:] == 0) and np.all(g.transitions[3:, :, :, :, S - 1] == 1)  # padded steps
        eps = g.rewards[:3] - base.rewards
        real = counts[:, :, 0] > 0
        assert np.all(eps[~real] == 0) and np.all(eps[real] != 0)
        for h, s in zip(*np.nonzero(real)):
            n_a, n_b = counts[h, s]
            assert np.all(eps[h, s, n_a:] == eps[h, s, :1]) and np.all(eps[h, s, :, n_b:] == eps[h, s, :, :1])
        assert 0.2 < eps[real].std() < 0.4
    # game k depends only on (seed, k); sigma 0 is the base game; padding keeps the Nash value
    assert np.array_equal(openspiel_family(GOOF4, 1, 0.3, 5, seed=11)[0].rewards, games[0].rewards)
    assert np.array_equal(openspiel_family(GOOF4, 2, 0.0, None, seed=11)[1].rewards, base.rewards)
    small = openspiel_family(ZERO_SUM[2], 1, 0.3, 4, seed=1)[0]  # H = 2 padded to 4
    assert nash_equilibrium(small).value == pytest.approx(
        nash_equilibrium(ZeroSumGame(small.rewards[:2], small.transitions[:2], 0)).value, abs=1e-12)
    with pytest.raises(GameError, match="horizon must be an integer >= the imported game's H = 3"):
        openspiel_family(GOOF4, 2, 0.1, 2, seed=0)


PATHFINDING = "pathfinding(players=2,grid=Ab\nBa,horizon=3)"  # general-sum, real-valued reward parameters


def test_family_with_perturbed_game_parameters():
    """Game k = the game OpenSpiel loads with step_reward + sigma_p * z_k (z_k the first draw of child k), imported."""
    games = openspiel_family(PATHFINDING, 2, 0.0, None, seed=5, param_sigma={"step_reward": 0.05})
    for k, child in enumerate(np.random.SeedSequence(5).spawn(2)):
        value = -0.01 + 0.05 * np.random.default_rng(child).normal()  # pathfinding's default step_reward is -0.01
        direct = import_openspiel(f"pathfinding(players=2,grid=Ab\nBa,horizon=3,step_reward={value!r})").game
        np.testing.assert_allclose(games[k].rewards, direct.rewards, rtol=0, atol=1e-12)
    assert not np.allclose(games[0].rewards, games[1].rewards)
    with pytest.raises(GameError, match="players = 2 is not real-valued"):
        openspiel_family(PATHFINDING, 1, 0.0, None, seed=0, param_sigma={"players": 0.1})
    with pytest.raises(GameError, match="no parameter 'points'"):
        openspiel_family(PATHFINDING, 1, 0.0, None, seed=0, param_sigma={"points": 0.1})


def test_perturbation_keeps_the_kind():
    rng = np.random.default_rng(0)
    coord = perturb_imported(import_openspiel("matrix_coordination"), 0.5, rng)
    assert coord.kind == "potential" and coord.is_identical_interest() and potential_certificate(coord).exact
    three = perturb_imported(import_openspiel(OTHERS[0]), 0.5, rng)
    assert three.kind == "general_sum"
    assert not np.allclose(three.rewards[0] - three.rewards[1], import_openspiel(OTHERS[0]).game.rewards[0]
                           - import_openspiel(OTHERS[0]).game.rewards[1])  # one draw per player
    padded = pad_horizon(import_openspiel(OTHERS[0]), three, 5)
    pols = _random_policies(padded, rng)
    np.testing.assert_allclose(_array_values(padded, pols), _array_values(three, [p[:3] for p in pols]), atol=1e-12)


# ----------------------------------------------------------------------------- command line, spec, trial


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


def test_cli_import_and_make(tmp_path, capsys):
    out = tmp_path / "g.npz"
    code, summary, _ = _cli(capsys, "game", "import-openspiel", ZERO_SUM[2], "--out", str(out))
    assert code == 0 and summary["kind"] == "zero_sum" and summary["states"] == 14
    imported = import_openspiel(ZERO_SUM[2])
    assert np.array_equal(load_game(out).rewards, imported.game.rewards)
    code, summary, _ = _cli(capsys, "game", "import-openspiel", OTHERS[0], "--out", str(tmp_path / "n.npz"), "-H", "4")
    assert code == 0 and summary["kind"] == "general_sum" and summary["horizon"] == 4 and summary["game_horizon"] == 3
    assert load_markov_game(tmp_path / "n.npz").num_players == 3
    code, summary, _ = _cli(capsys, "game", "make", "--family", "openspiel", "--game", GOOF4, "--count", "2",
                            "--sigma", "0.1", "--horizon", "3", "--seed", "0", "--out", str(tmp_path / "fam"))
    assert code == 0 and len(summary["files"]) == 2
    assert np.array_equal(load_game(summary["files"][1]).rewards, openspiel_family(GOOF4, 2, 0.1, 3, 0)[1].rewards)


@pytest.mark.parametrize("argv, match", [
    (["game", "import-openspiel", "kuhn_poker", "--out", "{tmp}/k.npz"], "imperfect information"),
    (["game", "import-openspiel", "oshi_zumo(coins=4,size=1,horizon=4)", "--max-states", "20", "--out", "{tmp}/k.npz"],
     "max_states = 20"),
    (["game", "import-openspiel", GOOF4, "--max-histories", "50", "--out", "{tmp}/k.npz"], "more than 50 histories"),
    (["game", "import-openspiel", GOOF4, "-H", "2", "--out", "{tmp}/k.npz"], "horizon must be an integer >= "),
    (["game", "import-openspiel", "no_such_game", "--out", "{tmp}/k.npz"], "Unknown game 'no_such_game'"),
    (["game", "make", "--family", "openspiel", "-K", "2", "--sigma", "0.1", "-H", "3", "--seed", "0", "--out", "{tmp}/f"],
     "needs --game"),
    (["game", "make", "--family", "openspiel", "--game", GOOF4, "-K", "2", "--sigma", "0.1", "-H", "2", "--seed", "0",
      "--out", "{tmp}/f"], "imported game's H = 3"),
])
def test_cli_refusals_exit_2_with_one_line(tmp_path, capsys, argv, match):
    code, _, err = _cli(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2 and match in err
    assert len([ln for ln in err.splitlines() if ln.startswith("metasweep: error:")]) == 1
    assert not os.listdir(tmp_path)


def test_spec_and_trial(tmp_path):
    from sweeps.registry import FAMILIES
    from sweeps.spec import SpecError, load_spec, parse_spec
    from sweeps.trial import TrialSettings, run_trial

    spec = load_spec("sweeps/specs/goofspiel.yaml")
    assert spec.family == "openspiel" and spec.num_trials == 8
    opts = FAMILIES["openspiel"].game_keys
    assert (opts["max_states"].default, opts["max_histories"].default) == (DEFAULT_MAX_STATES, DEFAULT_MAX_HISTORIES)
    smoke = spec.smoke()
    config = {k: p.values[0] for k, p in smoke.params.items()} | {"K": 2, "T": 20}
    out = run_trial(config, TrialSettings.from_spec(smoke))
    assert np.isfinite(out.scalars["final_gap/meta"]) and np.isfinite(out.scalars["final_gap/individual"])
    raw = dict(spec.raw, game={"family": "openspiel"})
    with pytest.raises(SpecError, match="game.game: is required"):
        parse_spec(raw)
    with pytest.raises(SpecError, match="game.game: must be an OpenSpiel load string"):
        parse_spec(dict(spec.raw, game={"family": "openspiel", "game": "kuhn_poker"}))
    general = TrialSettings.from_spec(parse_spec(dict(spec.raw, game={"family": "openspiel", "game": OTHERS[1]})))
    with pytest.raises(GameError, match="needs a two-player zero-sum game"):
        run_trial(config, general)


def test_general_sum_trial_and_parameter_perturbation_in_specs():
    """algorithm omwu-cce on the openspiel family: N from the game (players null or N), param_sigma from the spec."""
    import sweeps.trial_general_sum as tgs
    from sweeps.spec import SpecError, parse_spec
    from sweeps.trial import TrialSettings

    raw = {"experiment": "x", "algorithm": "omwu-cce", "search_space": {"K": 2, "H": 3, "T": 10, "sigma": 0.01},
           "game": {"family": "openspiel", "game": PATHFINDING, "param_sigma": ["step_reward=0.05"]}}
    spec = parse_spec(raw)
    settings = TrialSettings.from_spec(spec)
    config = {k: p.values[0] for k, p in spec.params.items()}
    games = tgs.make_games(config, settings)
    expected = openspiel_family(PATHFINDING, 2, 0.01, 3, 0, param_sigma={"step_reward": 0.05})
    assert all(np.array_equal(g.rewards, e.rewards) for g, e in zip(games, expected))
    three = TrialSettings.from_spec(parse_spec(dict(raw, game={"family": "openspiel", "game": OTHERS[0]})))
    out = tgs.run_trial(config, three)
    assert out.scalars["players_used"] == 3 and np.isfinite(out.scalars["final_gap/meta"])
    with pytest.raises(GameError, match="players must be null or 3"):
        tgs.make_games(dict(config, players=2), three)
    with pytest.raises(SpecError, match="game.param_sigma: must be null or a list of 'NAME=SIGMA'"):
        parse_spec(dict(raw, game=dict(raw["game"], param_sigma=["step_reward"])))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # MLflow 3.17 on SQLAlchemy 2.1
def test_goofspiel_sweep_end_to_end(tmp_path):
    """One 2-trial sweep of the shipped spec's game on a real local Ray, tracked in MLflow (SQLite)."""
    from mlflow.tracking import MlflowClient

    spec = open("sweeps/specs/goofspiel.yaml").read()
    spec = spec.replace("experiment: goofspiel", "experiment: goofspiel-test")
    spec = spec.replace("eta: {grid: [0.0138, 0.1]}", "eta: 0.1").replace("sigma: {grid: [0.05, 0.2]}", "sigma: 0.1")
    spec = spec.replace("K: 10", "K: 2").replace("T: 1000", "T: 30")
    (tmp_path / "spec.yaml").write_text(spec)
    uri = f"sqlite:///{tmp_path}/m/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true")
    metasweep = os.path.join(os.path.dirname(sys.executable), "metasweep")
    proc = subprocess.run([metasweep, "run", "spec.yaml", "--tracking-uri", uri, "--num-cpus", "2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["finished"] == 2
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("goofspiel-test")
    children = [r for r in client.search_runs([exp.experiment_id]) if "final_gap/meta" in r.data.metrics]
    assert len(children) == 2
    assert {c.data.params["family"] for c in children} == {"openspiel"}
    assert {c.data.params["game"] for c in children} == {
        "goofspiel(num_cards=4,imp_info=False,points_order=descending,returns_type=win_loss)"}
