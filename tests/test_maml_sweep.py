"""``algorithm: maml`` in the sweep service: the trial function (in-process) and one 2-trial sweep on a
real local Ray tracked in a real MLflow server (the session fixture ``mlflow_server``)."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_sweep import REPO, run_small_sweep

from sweeps.registry import ALGORITHMS
from sweeps.spec import SpecError, load_spec
from sweeps.trial import TrialSettings
from sweeps.trial_maml import CONFIG_KEYS, run_trial


def _settings(methods=("individual", "meta"), eval_every=2):
    return TrialSettings("paper-potential", 2, (2, 2), methods, eval_every, 0.3, 1.0, "maml",
                         (("gamma", None), ("rho", "initial")))


CONFIG = {"K": 3, "H": 4, "sigma": 0.1, "T": 2, "seed": 0, "step": 0.1, "outer_iterations": 6, "outer_step": 1.0,
          "held_out": 2}


def test_registry_and_config_keys_agree():
    assert ALGORITHMS["maml"].config_keys == CONFIG_KEYS


def test_trial_scalars_histories_curves():
    out = run_trial(CONFIG, _settings())
    s, h = out.scalars, out.histories
    # the MAML initialisation adapts better than the uniform one on the held-out games
    assert s["final_gap/meta"] < s["final_gap/individual"]
    assert s["final_potential/meta"] > s["final_potential/individual"]
    assert s["speedup/final_gap"] == pytest.approx(s["final_gap/individual"] / s["final_gap/meta"])
    assert s["maml/potential"] > s["maml/potential_initial"]
    assert s["maml/grad_norm_min"] <= s["maml/grad_norm"]
    assert not set(h) & set(s)  # a metric key is a scalar or a history, never both
    its, vals = h["grad_norm/meta"]
    assert list(its) == list(range(7)) and vals[-1] == s["maml/grad_norm"]
    its, gap = h["gap/meta"]
    assert list(its) == [0, 2, 4, 6] and gap[-1] == s["final_gap/meta"]
    assert h["gap/individual"][1][0] == pytest.approx(gap[0], abs=1e-14)  # theta^0 = 0 is the uniform policy
    assert s["auc/meta"] == pytest.approx(np.mean(gap))
    curves = out.curves.to_pandas()
    assert set(curves["method"]) == {"individual", "meta"} and set(curves["game"]) == {0, 1}
    last = curves[(curves.method == "meta") & (curves.iteration == 6)]
    assert last["gap"].mean() == pytest.approx(s["final_gap/meta"])
    assert s["time/kernel_s"] > 0 and s["time/trial_s"] >= s["time/kernel_s"]
    only_meta = run_trial(CONFIG, _settings(methods=("meta",)))
    assert "final_gap/individual" not in only_meta.scalars and "speedup/final_gap" not in only_meta.scalars
    assert only_meta.scalars["final_gap/meta"] == s["final_gap/meta"]  # deterministic from the seed


SPEC = """
experiment: {experiment}
algorithm: maml
game:
  family: paper-potential
methods: [individual, meta]
eval_every: 2
search_space:
  K: 2
  H: 3
  sigma: 0.1
  T: 2
  step: 0.1
  outer_iterations: 4
  outer_step: 1.0
  held_out: 2
  seed: {{grid: [0, 1]}}
"""


def test_spec_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.format(experiment="x").replace("step: 0.1", "step: -0.1"))
    with pytest.raises(SpecError, match="search_space.step"):
        load_spec(bad)
    bad.write_text(SPEC.format(experiment="x").replace("paper-potential", "paper-zero-sum"))
    with pytest.raises(SpecError, match="game.family"):
        load_spec(bad)


@pytest.mark.slow
def test_maml_sweep_end_to_end(mlflow_server, tmp_path):
    _, client, _, children = run_small_sweep(SPEC, "maml", mlflow_server, tmp_path)
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    for child in children:
        p, m = child.data.params, child.data.metrics
        assert (p["algorithm"], p["family"], p["step"], p["outer_iterations"], p["outer_step"], p["held_out"]) == \
            ("maml", "paper-potential", "0.1", "4", "1.0", "2")
        for key in ("final_gap/meta", "final_gap/individual", "maml/grad_norm", "maml/potential", "speedup/final_gap"):
            assert np.isfinite(m[key]), key
        hist = sorted(client.get_metric_history(child.info.run_id, "grad_norm/meta"), key=lambda x: x.step)
        assert [x.step for x in hist] == [0, 1, 2, 3, 4] and hist[-1].value == m["maml/grad_norm"]
        gaps = sorted(client.get_metric_history(child.info.run_id, "gap/meta"), key=lambda x: x.step)
        assert [x.step for x in gaps] == [0, 2, 4]
        path = client.download_artifacts(child.info.run_id, "curves.parquet", str(tmp_path / child.info.run_id))
        curves = pq.read_table(path).to_pandas()
        assert {"method", "game", "iteration", "gap", "gap_avg", "potential", "grad_norm"} <= set(curves.columns)
        assert len(curves) == 2 * 2 * 3  # methods x held-out games x evaluated outer iterations


def test_shipped_spec_is_valid():
    spec = load_spec(os.path.join(REPO, "sweeps", "specs", "maml-potential.yaml"))
    assert (spec.algorithm, spec.family, spec.num_trials) == ("maml", "paper-potential", 12)
    assert spec.game_options["gamma"] == 0.9
