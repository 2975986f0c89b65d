"""The metasweep command line end to end: JSON last line, Parquet curves, policies; bad input."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from solvers.evaluate import evaluate_policy, nash_equilibrium
from solvers.games import load_game, load_policy, save_game, save_policy
from solvers.generators import paper_zero_sum_game
from sweeps.cli import main

METASWEEP = [sys.executable, "-m", "sweeps.cli"]


def run_cli(*args, check=True):
    proc = subprocess.run(METASWEEP + [str(a) for a in args], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def last_json(proc):
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    proc = run_cli("game", "make", "--family", "paper-zero-sum", "--count", 3, "--sigma", 0.1, "--horizon", 3,
                   "--seed", 11, "--out", out)
    return out, last_json(proc)


def test_game_make(games):
    out, summary = games
    assert summary["count"] == 3 and summary["horizon"] == 3 and summary["actions"] == [2, 2]
    assert sorted(os.listdir(out)) == ["game_000.npz", "game_001.npz", "game_002.npz"]
    g0 = load_game(out / "game_000.npz")
    base = paper_zero_sum_game(3)
    np.testing.assert_array_equal(g0.transitions, base.transitions)
    diff = g0.rewards - base.rewards
    assert np.ptp(diff, axis=0).max() == 0.0 and np.abs(diff).max() > 0  # one draw per (s, a, b), shared by h
    # refusing to overwrite: nothing lost
    proc = run_cli("game", "make", "--family", "paper-zero-sum", "--count", 3, "--sigma", 0.2, "--horizon", 3,
                   "--seed", 1, "--out", out, check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    np.testing.assert_array_equal(load_game(out / "game_000.npz").rewards, g0.rewards)


def test_nash_and_evaluate(games, tmp_path):
    out, _ = games
    game_path = out / "game_001.npz"
    pol = tmp_path / "nash.npz"
    nash = last_json(run_cli("nash", "--game", game_path, "--policy-out", pol))
    assert nash["value"] == pytest.approx(nash_equilibrium(load_game(game_path)).value, abs=1e-12)
    ev = last_json(run_cli("evaluate", "--game", game_path, "--policy", pol))
    assert set(ev) == {"value", "best_response_value_max", "best_response_value_min", "ne_gap"}
    assert abs(ev["ne_gap"]) < 1e-8 and ev["value"] == pytest.approx(nash["value"], abs=1e-8)


def test_solve(games, tmp_path):
    out, _ = games
    game_path = out / "game_000.npz"
    curve, pol = tmp_path / "c.parquet", tmp_path / "p.npz"
    s = last_json(run_cli("solve", "--game", game_path, "--iterations", 50, "--eta", 0.1, "--eval-every", 10,
                          "--curve", curve, "--policy-out", pol))
    # H = 3: L = 3, 4, 5, 6, 8, 10, 13 (sum 49), then 17 truncated to 1
    assert s["num_stages"] == 8 and s["iterations"] == 50 and s["stage_reset"] is True
    table = pq.read_table(curve).to_pandas()
    assert list(table.columns[:5]) == ["method", "game", "iteration", "gap", "value"]
    assert table["iteration"].tolist() == [10, 20, 30, 40, 50] and set(table["method"]) == {"single"}
    assert s["final_gap"] == pytest.approx(table["gap"].iloc[-1])
    assert s["bound"]["eta_ok"] is False and s["conditions_hold"] is False  # 0.1 > 1/(8*9)
    game = load_game(game_path)
    mu, nu = load_policy(pol, game)
    assert evaluate_policy(game, mu, nu).ne_gap == pytest.approx(s["final_gap"], abs=1e-12)
    # --init with the uniform policy and --no-stage-reset / --tie-break first are accepted
    save_policy(tmp_path / "u.npz", np.full((3, 2, 2), 0.5), np.full((3, 2, 2), 0.5))
    s2 = last_json(run_cli("solve", "--game", game_path, "-T", 50, "--eta", 0.1, "--init", tmp_path / "u.npz",
                           "--no-stage-reset", "--tie-break", "first", "--eval-log", 5, "--curve", curve))
    assert s2["stage_reset"] is False and s2["tie_break"] == "first"
    assert pq.read_table(curve).column("iteration").to_pylist()[-1] == 50


def test_meta(games, tmp_path):
    out, _ = games
    curve = tmp_path / "m.parquet"
    paths = [out / f"game_{k:03d}.npz" for k in range(3)]
    s = last_json(run_cli("meta", "--games", *paths, "--iterations", 40, "--eta", 0.05, "--alpha", 0.3, "--curve", curve))
    assert s["K"] == 3 and s["alpha"] == 0.3
    for m in ("individual", "meta"):
        assert math.isfinite(s[m]["delta"]) and s[m]["delta"] >= 0 and "delta_smoothed" in s[m]
    assert "theorem2" in s["meta"] and s["meta"]["theorem2"]["alpha_ok"] is True
    t = pq.read_table(curve).to_pandas()
    assert sorted(set(t["method"])) == ["individual", "meta"] and sorted(set(t["game"])) == [0, 1, 2]
    assert len(t) == 2 * 3 * 40
    mean_final = t[(t.method == "meta") & (t.iteration == 40)]["gap"].mean()
    assert s["meta"]["final_gap_mean"] == pytest.approx(mean_final, rel=1e-12)


def test_fig2_smoke(tmp_path):
    s = last_json(run_cli("fig2", "--smoke-test", "--out", tmp_path))
    assert s["K"] == 3 and s["T"] == 100 and len(s["seeds"]) == 2
    assert {(r["stage_reset"], r["method"]) for r in s["results"]} == {(a, b) for a in (True, False) for b in ("individual", "meta")}
    assert os.path.getsize(tmp_path / "fig2.png") > 10_000
    t = pq.read_table(tmp_path / "curves.parquet")
    assert t.num_rows == 2 * 2 * 2 * 3 * 100  # readings x seeds x methods x K x T
    assert {"seed", "stage_reset"} <= set(t.column_names)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    g = paper_zero_sum_game(2)
    save_game(d / "good.npz", g)
    r = g.rewards.copy()
    r[0, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", kind="zero_sum", rewards=r, transitions=g.transitions, initial_state=0)
    p = g.transitions.copy()
    p[1, 0, 0, 0, :] = [0.7, 0.7]
    np.savez(d / "rows.npz", kind="zero_sum", rewards=g.rewards, transitions=p, initial_state=0)
    p = g.transitions.copy()
    p[0, 1, 1, 0, :] = [-0.5, 1.5]
    np.savez(d / "neg.npz", kind="zero_sum", rewards=g.rewards, transitions=p, initial_state=0)
    np.savez(d / "shape.npz", kind="zero_sum", rewards=g.rewards[:, :, :1], transitions=g.transitions, initial_state=0)
    np.savez(d / "nokey.npz", kind="zero_sum", rewards=g.rewards, initial_state=0)
    np.savez(d / "pickled.npz", kind="zero_sum", rewards=np.array([{"x": 1}], dtype=object),
             transitions=g.transitions, initial_state=0)
    (d / "text.npz").write_text("not a zip")
    save_policy(d / "badpol.npz", np.full((2, 2, 2), 0.7), np.full((2, 2, 2), 0.5))
    return d


BAD_CASES = [
    (["solve", "--game", "{d}/missing.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "not found"),
    (["solve", "--game", "{d}/nan.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "non-finite"),
    (["solve", "--game", "{d}/rows.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "sum to 1"),
    (["solve", "--game", "{d}/neg.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "negative"),
    (["solve", "--game", "{d}/shape.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "shape"),
    (["solve", "--game", "{d}/nokey.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "missing key 'transitions'"),
    (["solve", "--game", "{d}/pickled.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "pickle"),
    (["solve", "--game", "{d}/text.npz", "-T", "5", "--eta", "0.1", "--curve", "{d}/c.parquet"], "not a readable .npz"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--eta", "0", "--curve", "{d}/c.parquet"], "--eta"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--eta", "-1", "--curve", "{d}/c.parquet"], "--eta"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--eta", "nan", "--curve", "{d}/c.parquet"], "--eta"),
    (["solve", "--game", "{d}/good.npz", "-T", "0", "--eta", "0.1", "--curve", "{d}/c.parquet"], "--iterations"),
    (["solve", "--game", "{d}/good.npz", "-T", "ten", "--eta", "0.1", "--curve", "{d}/c.parquet"], "--iterations"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--eta", "0.1"], "--curve"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--eta", "0.1", "--init", "{d}/badpol.npz", "--curve", "{d}/c.parquet"], "policy_0"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--eta", "0.1", "--tie-break", "random", "--curve", "{d}/c.parquet"], "--tie-break"),
    (["meta", "--games", "{d}/good.npz", "-T", "5", "--eta", "0.1", "--alpha", "0.5", "--curve", "{d}/c.parquet"], "--alpha"),
    (["meta", "--games", "{d}/good.npz", "-T", "5", "--eta", "0.1", "--alpha", "0", "--curve", "{d}/c.parquet"], "--alpha"),
    (["evaluate", "--game", "{d}/good.npz", "--policy", "{d}/badpol.npz"], "sum to 1"),
    (["evaluate", "--game", "{d}/good.npz", "--policy", "{d}/good.npz"], "missing key 'policy_0'"),
    (["game", "make", "--family", "poker", "--count", "2", "--sigma", "0.1", "-H", "2", "--seed", "0", "--out", "{d}/g"], "--family"),
    (["game", "make", "--family", "paper-zero-sum", "--count", "2", "--sigma", "-0.1", "-H", "2", "--seed", "0", "--out", "{d}/g"], "--sigma"),
    (["solve", "--game", "{d}/good.npz", "-T", "5", "--curve", "{d}/c.parquet"], "needs --eta"),
    (["meta", "--games", "{d}/good.npz", "-T", "5", "--curve", "{d}/c.parquet"], "needs --eta"),
    (["game", "make", "--family", "random-zero-sum", "--actions", "2", "2", "2", "--count", "2", "--sigma", "0.1", "-H", "2",
      "--seed", "0", "--out", "{d}/g"], "--actions takes A B"),
    (["nosuchcommand"], "invalid choice"),
]


@pytest.mark.parametrize("argv,needle", BAD_CASES, ids=[f"{c[0][0]}-{i}" for i, c in enumerate(BAD_CASES)])
def test_bad_input_one_clear_line(bad_files, capsys, argv, needle):
    argv = [a.format(d=bad_files) for a in argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""  # no result, nothing half-written
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("metasweep: error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err
    assert not os.path.exists(bad_files / "c.parquet")


def test_bad_input_through_the_console_script(bad_files):
    proc = run_cli("solve", "--game", bad_files / "nan.npz", "-T", 5, "--eta", 0.1, "--curve", bad_files / "c.parquet", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "non-finite" in proc.stderr
