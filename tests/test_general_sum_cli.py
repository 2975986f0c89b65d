"""metasweep for general-sum games: game make, solve/meta --algorithm omwu-cce, evaluate --joint-policy,
bad input (one line, exit 2), and one small end-to-end sweep on a real Ray with a real MLflow server."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_sweep import run_small_sweep

from solvers.cce import evaluate_joint_policy, joint_average, load_joint_policy
from solvers.nplayer import load_markov_game
from sweeps.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


@pytest.fixture(scope="module")
def games_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gs")
    assert main(["game", "make", "--family", "random-general-sum", "--players", "3", "-K", "3", "--sigma", "0.05",
                 "-H", "2", "--seed", "3", "--states", "2", "--actions", "2", "3", "2", "--out", str(d / "g")]) == 0
    return d


def test_make_solve_evaluate_meta(games_dir, capsys, tmp_path):
    g0 = games_dir / "g" / "game_000.npz"
    game = load_markov_game(g0)
    assert game.num_actions == (2, 3, 2) and game.kind == "general_sum"
    code, out, err = run(["solve", "--algorithm", "omwu-cce", "--game", g0, "-T", 120, "--eval-every", 40,
                          "--curve", tmp_path / "c.parquet", "--policy-out", tmp_path / "j.npz",
                          "--correlated-out", tmp_path / "cor.npz"], capsys)
    assert code == 0, err
    assert out["eta"] == pytest.approx(2 ** (-2 / 3) * 120 ** (-1 / 3) * 2 ** (-2 / 3))  # Theorem 5's default
    curve = pq.read_table(tmp_path / "c.parquet").to_pandas()
    assert curve["iteration"].tolist() == [40, 80, 120]
    assert curve["gap"].iloc[-1] == pytest.approx(out["final_gap"])
    assert set(curve.columns) >= {"gap_joint_average", "gap_product_average", "gap_mixture_bound", "value_0", "value_2"}
    # the written joint average evaluates (through evaluate --joint-policy) to the curve's last joint-average gap
    code, ev, err = run(["evaluate", "--game", g0, "--joint-policy", tmp_path / "j.npz"], capsys)
    assert code == 0, err
    assert ev["policy"] == "markov_joint" and ev["cce_gap"] == pytest.approx(out["final_gap_joint_average"], abs=1e-12)
    with np.load(tmp_path / "cor.npz") as z:
        assert z["trajectory_1"].shape == (120, 2, 2, 3) and z["stage_lengths"].sum() == 120
    # Algorithm 3's policy from its compact file evaluates to the run's final (expected) CCE-gap
    code, ev, err = run(["evaluate", "--game", g0, "--correlated-policy", tmp_path / "cor.npz"], capsys)
    assert code == 0, err
    assert ev["policy"] == "algorithm3" and ev["cce_gap"] == pytest.approx(out["final_gap"], abs=1e-12)
    assert ev["cce_gap_mixture_bound"] == pytest.approx(out["final_gap_mixture_bound"], abs=1e-12)
    assert ev["values"] == pytest.approx(out["values"], abs=1e-12)
    # a product policy on a general-sum game: labelled "product"
    from solvers.nplayer import save_policies, uniform_policies

    save_policies(tmp_path / "u.npz", uniform_policies(game))
    code, ev, err = run(["evaluate", "--game", g0, "--policy", tmp_path / "u.npz"], capsys)
    assert code == 0 and ev["policy"] == "product" and ev["cce_gap"] >= 0
    code, out, err = run(["meta", "--algorithm", "omwu-cce", "--games", *sorted((games_dir / "g").glob("*.npz")),
                          "-T", 60, "--eta", 0.3, "--eval-log", 5, "--curve", tmp_path / "m.parquet"], capsys)
    assert code == 0, err
    assert out["eta"] == 0.3 and out["K"] == 3 and "theorem6" in out["meta"] and "theorem6" not in out["individual"]
    curves = pq.read_table(tmp_path / "m.parquet").to_pandas()
    assert sorted(curves["method"].unique()) == ["individual", "meta"] and sorted(curves["game"].unique()) == [0, 1, 2]
    ind0 = curves[(curves.method == "individual") & (curves.game == 0)]
    meta0 = curves[(curves.method == "meta") & (curves.game == 0)]
    np.testing.assert_array_equal(ind0["gap"].to_numpy(), meta0["gap"].to_numpy())  # game 1 of meta starts uniform too


def test_zero_sum_file_is_lifted(capsys, tmp_path):
    assert main(["game", "make", "--family", "paper-zero-sum", "-K", "1", "--sigma", "0", "-H", "2", "--seed", "0",
                 "--out", str(tmp_path / "z")]) == 0
    capsys.readouterr()
    code, out, err = run(["solve", "--algorithm", "omwu-cce", "--game", tmp_path / "z" / "game_000.npz", "-T", 30,
                          "--curve", tmp_path / "c.parquet"], capsys)
    assert code == 0 and out["players"] == 2


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "--game", "{g}"], "one of the arguments --policy --joint-policy --correlated-policy is required"),
    (["evaluate", "--game", "{g}", "--joint-policy", "{bad}"], "joint must have shape"),
    (["game", "make", "--family", "markov-shapley", "-K", "1", "--sigma", "0", "-H", "2", "--seed", "0",
      "--players", "3", "--out", "{tmp}/x"], "markov-shapley is fixed"),
    (["game", "make", "--family", "random-general-sum", "-K", "1", "--sigma", "0", "-H", "2", "--seed", "0",
      "--players", "3", "--actions", "2", "2", "--out", "{tmp}/x"], "--actions takes one number"),
    (["solve", "--algorithm", "omwu-cce", "--game", "{g}", "-T", "5", "--curve", "{tmp}/c.parquet", "--init", "{bad}"],
     "unexpected keys"),
    (["evaluate", "--game", "{g}", "--correlated-policy", "{badc}"], "T = sum of stage_lengths"),
    (["evaluate", "--game", "{g}", "--correlated-policy", "{bad}"], "holds exactly"),
])
def test_bad_input_one_line_exit_2(argv, needle, games_dir, capsys, tmp_path):
    np.savez(tmp_path / "bad.npz", joint=np.full((2, 2, 2, 2), 0.0625))
    np.savez(tmp_path / "badc.npz", stage_lengths=np.array([2, 3]), trajectory_0=np.full((4, 2, 2, 2), 0.5),
             trajectory_1=np.full((4, 2, 2, 3), 1 / 3), trajectory_2=np.full((4, 2, 2, 2), 0.5))
    fmt = {"g": games_dir / "g" / "game_000.npz", "bad": tmp_path / "bad.npz", "badc": tmp_path / "badc.npz",
           "tmp": tmp_path}
    code = main([a.format(**fmt) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("metasweep: error:") and needle in err
    assert not os.path.exists(tmp_path / "c.parquet") and not os.path.exists(tmp_path / "x")


def test_joint_policy_roundtrip_against_direct_evaluation(games_dir):
    from solvers import algorithm2

    game = load_markov_game(games_dir / "g" / "game_001.npz")
    res = algorithm2.solve(game, 30, 0.5)
    j = joint_average(res, 17)
    np.testing.assert_allclose(j.sum(axis=(2, 3, 4)), 1.0)
    np.savez(games_dir / "j17.npz", joint=j)
    assert evaluate_joint_policy(game, load_joint_policy(games_dir / "j17.npz", game)).cce_gap == \
        evaluate_joint_policy(game, j).cce_gap


SPEC = """\
experiment: {experiment}
algorithm: omwu-cce
game: {{family: random-general-sum, states: 2, num_actions: 2}}
methods: [individual, meta]
search_space:
  K: 3
  H: 2
  sigma: 0.1
  T: 60
  players: {{grid: [2, 3]}}
resources:
  cpus: 1
eval_every: 20
"""


@pytest.mark.slow
def test_general_sum_sweep_end_to_end(mlflow_server, tmp_path):
    _, client, _, children = run_small_sweep(SPEC, "gs", mlflow_server, tmp_path)
    by_n = {c.data.params["players"]: c for c in children}
    assert set(by_n) == {"2", "3"}
    for n, c in by_n.items():
        p, m = c.data.params, c.data.metrics
        assert (p["algorithm"], p["family"], p["eta"], p["num_actions"]) == ("omwu-cce", "random-general-sum", "None", "2")
        assert m["players_used"] == int(n)
        assert m["eta_used"] == pytest.approx(2 ** (-2 / 3) * 60 ** (-1 / 3) * (int(n) - 1) ** (-2 / 3))
        for key in ("final_gap/individual", "final_gap/meta", "bound/theorem6", "similarity/delta/meta",
                    "final_gap_joint_average/meta", f"final_value_{int(n) - 1}/meta", "speedup/final_gap"):
            assert key in m, key
        hist = client.get_metric_history(c.info.run_id, "gap/meta")
        assert [h.step for h in hist] == [20, 40, 60]
        assert hist[-1].value == pytest.approx(m["final_gap/meta"])
