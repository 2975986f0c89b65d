"""Projected Q-ascent through the product: ``metasweep game make / solve / meta`` (in-process), the
trial function, the spec, and one 2-trial sweep on a real local Ray tracked in a real MLflow server."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_sweep import run_small_sweep

from solvers.potential_games import potential_family
from solvers.potential_meta import run_potential_sequence
from sweeps.cli import main
from sweeps.registry import ALGORITHMS
from sweeps.spec import SpecError, load_spec
from sweeps.trial import TrialSettings
from sweeps.trial_potential import CONFIG_KEYS, run_trial


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


def test_cli_make_solve_meta(tmp_path, capsys):
    code, made, _ = _run(["game", "make", "--family", "paper-potential", "-K", 3, "--sigma", 0.1, "-H", 4, "--seed", 0,
                          "--out", tmp_path / "g"], capsys)
    assert code == 0 and made["actions"] == [2, 2] and len(made["files"]) == 3
    code, sol, _ = _run(["solve", "--algorithm", "projected-q-ascent", "--game", made["files"][0], "-T", 40, "--step", 0.05,
                         "--curve", tmp_path / "c.parquet", "--policy-out", tmp_path / "p.npz"], capsys)
    assert code == 0 and sol["potential_certificate"] == {"source": "identical_interest", "exact": True}
    curve = pq.read_table(tmp_path / "c.parquet").to_pandas()
    assert list(curve["iteration"]) == list(range(41)) and curve["gap"].iloc[-1] == pytest.approx(sol["final_gap"])
    assert {"gap_avg", "value", "potential", "value_0", "best_response_value_1"} <= set(curve.columns)
    code, res, _ = _run(["meta", "--algorithm", "projected-q-ascent", "--games", *made["files"], "-T", 40, "--step", 0.05,
                         "--eval-every", 10, "--curve", tmp_path / "m.parquet"], capsys)
    assert code == 0 and res["delta_phi_exact"] is True
    games = potential_family("paper-potential", 3, 0.1, 4, 0)
    ref = run_potential_sequence(games, 40, 0.05, eval_every=10)
    assert res["delta_phi"] == pytest.approx(ref["meta"].delta.value, abs=1e-12)
    assert res["meta"]["final_gap"] == pytest.approx(ref["meta"].mean("gap")[-1], abs=1e-12)
    curves = pq.read_table(tmp_path / "m.parquet").to_pandas()
    assert set(curves["method"]) == {"individual", "meta"} and sorted(set(curves["iteration"])) == [0, 10, 20, 30, 40]
    # LQ tracking: product-state files, games differ in their transitions, so Delta_Phi is the path similarity
    code, lq, _ = _run(["game", "make", "--family", "lq-tracking", "-K", 2, "--sigma", 0.5, "-H", 1, "--seed", 0,
                        "--out", tmp_path / "lq"], capsys)
    assert code == 0 and lq["states"] == 625 and lq["actions"] == [3, 3, 3, 3]
    code, res, _ = _run(["meta", "--algorithm", "projected-q-ascent", "--games", *lq["files"], "-T", 2, "--step", 0.01,
                         "--curve", tmp_path / "lq.parquet"], capsys)
    assert code == 0 and res["delta_phi_exact"] is False and res["delta_phi"] == res["delta_phi_path"]


@pytest.mark.parametrize("argv, message", [
    (["solve", "--algorithm", "projected-q-ascent", "--game", "{g}", "-T", 5, "--curve", "{t}/c.parquet"], "needs --step"),
    (["solve", "--algorithm", "projected-q-ascent", "--game", "{g}", "-T", 5, "--step", 0.1, "--eta", 0.1,
      "--curve", "{t}/c.parquet"], "--eta is not used"),
    (["solve", "--algorithm", "projected-q-ascent", "--game", "{t}/missing.npz", "-T", 5, "--step", 0.1,
      "--curve", "{t}/c.parquet"], "not found"),
    (["game", "make", "--family", "lq-tracking", "-K", 1, "--sigma", 0.1, "-H", 2, "--seed", 0, "--actions", 2, 2,
      "--out", "{t}/x"], "fixed by the lq-tracking family"),
    (["game", "make", "--family", "paper-potential", "-K", 1, "--sigma", 0.1, "-H", 2, "--gamma", 0.9, "--seed", 0,
      "--out", "{t}/x"], "--horizon 1"),
])
def test_cli_bad_input_is_one_error_exit_2(tmp_path, capsys, argv, message):
    code, _, _ = _run(["game", "make", "--family", "paper-potential", "-K", 1, "--sigma", 0, "-H", 2, "--seed", 0,
                       "--out", tmp_path / "g"], capsys)
    g = tmp_path / "g" / "game_000.npz"
    code, _, err = _run([str(a).format(g=g, t=tmp_path) for a in argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.parquet").exists()


def _settings(family="paper-potential", methods=("individual", "meta"), eval_every=None, game=(("gamma", None),
                                                                                                 ("rho", "initial"))):
    return TrialSettings(family, 2, (2, 2), methods, eval_every, 0.05, 1.0, "projected-q-ascent", game)


def test_trial_scalars_histories_curves():
    assert ALGORITHMS["projected-q-ascent"].config_keys == CONFIG_KEYS
    config = {"step": 0.05, "K": 3, "H": 3, "sigma": 0.1, "T": 30, "seed": 0}
    out = run_trial(config, _settings())
    s, h = out.scalars, out.histories
    its, gap = h["gap/meta"]
    assert list(its) == list(range(31)) and gap[-1] == s["final_gap/meta"]
    curves = out.curves.to_pandas()
    first = curves[(curves.game == 0) & (curves.iteration == 0)]
    assert first.gap.iloc[0] == first.gap.iloc[1]  # game 1 starts uniform in both methods
    assert h["gap/meta"][1][0] < h["gap/individual"][1][0]  # later games start warm
    assert s["similarity/delta_phi_exact"] == 1.0 and "bound/theorem3" not in s  # finite horizon: not stated
    assert s["conditions/theorem3"] == 0.0 and s["auc/meta"] == pytest.approx(np.mean(gap))
    assert s["speedup/auc"] == pytest.approx(s["auc/individual"] / s["auc/meta"])
    assert len(curves) == 2 * 3 * 31 and not set(h) & set(s)
    disc = run_trial(dict(config, H=1), _settings(game=(("gamma", 0.7), ("rho", "uniform"))))
    assert np.isfinite(disc.scalars["bound/theorem3"]) and np.isfinite(disc.scalars["bound/kappa"])
    assert disc.scalars["bound/proposition1_ratio/meta"] > 0


SPEC = """
experiment: {experiment}
algorithm: projected-q-ascent
game:
  family: paper-potential
methods: [individual, meta]
eval_every: 5
search_space:
  step: 0.05
  K: 2
  H: 3
  sigma: 0.1
  T: 20
  seed: {{grid: [0, 1]}}
"""


def test_spec_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.format(experiment="x").replace("step: 0.05", "step: 0"))
    with pytest.raises(SpecError, match="search_space.step"):
        load_spec(bad)
    bad.write_text(SPEC.format(experiment="x").replace("paper-potential", "paper-zero-sum"))
    with pytest.raises(SpecError, match="game.family"):
        load_spec(bad)
    for shipped in ("sweeps/specs/paper-fig3.yaml", "sweeps/specs/lq-tracking.yaml"):
        spec = load_spec(shipped)
        assert spec.algorithm == "projected-q-ascent"


@pytest.mark.slow
def test_potential_sweep_end_to_end(mlflow_server, tmp_path):
    _, client, _, children = run_small_sweep(SPEC, "pqa", mlflow_server, tmp_path)
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    for child in children:
        p, m = child.data.params, child.data.metrics
        assert (p["algorithm"], p["family"], p["step"], p["T"]) == ("projected-q-ascent", "paper-potential", "0.05", "20")
        for key in ("final_gap/meta", "final_gap/individual", "final_gap_avg/meta", "similarity/delta_phi", "mean_gap/meta"):
            assert np.isfinite(m[key]), key
        gaps = sorted(client.get_metric_history(child.info.run_id, "gap/meta"), key=lambda x: x.step)
        assert [x.step for x in gaps] == [0, 5, 10, 15, 20] and gaps[-1].value == pytest.approx(m["final_gap/meta"])
        path = client.download_artifacts(child.info.run_id, "curves.parquet", str(tmp_path / child.info.run_id))
        curves = pq.read_table(path).to_pandas()
        assert {"method", "game", "iteration", "gap", "gap_avg", "potential"} <= set(curves.columns)
        assert len(curves) == 2 * 2 * 5  # methods x games x evaluated iterations
