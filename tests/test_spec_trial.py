"""Sweep spec schema, metric-history thinning and one trial computed in-process (no Ray)."""


import numpy as np
import pytest

from solvers.generators import game_family
from solvers.meta import run_sequence
from sweeps.spec import GRID_LIMIT, SpecError, load_spec, parse_spec
from sweeps.trial import TrialSettings, _batches, run_trial
from tracking.mlflow_runs import history_steps

BASE = {"experiment": "t", "search_space": {"eta": 0.05, "K": 3, "H": 3, "T": 50}}


def spec(**over):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    space = over.pop("search_space", {})
    raw["search_space"].update(space)
    raw.update(over)
    return parse_spec(raw)


def test_defaults_and_param_space():
    s = spec()
    assert s.algorithm == "optimistic-mwu" and s.family == "paper-zero-sum" and s.methods == ("individual", "meta")
    assert s.num_trials == 1 and s.cpus_per_trial == 1.0 and s.max_failures == 2
    ps = s.param_space()
    assert ps == {"eta": 0.05, "alpha": None, "K": 3, "H": 3, "sigma": 0.0, "T": 50, "seed": 0,
                  "stage_reset": True, "tie_break": "uniform"}


def test_grid_size_and_distributions():
    s = spec(search_space={"seed": {"grid": [0, 1, 2]}, "stage_reset": {"grid": [True, False]},
                           "eta": {"loguniform": [1e-3, 1e-1]}, "alpha": {"uniform": [0.1, 0.4]}}, num_samples=4)
    assert s.grid_size == 6 and s.num_trials == 24
    from ray.tune.search.sample import Float

    ps = s.param_space()
    assert ps["seed"] == {"grid_search": [0, 1, 2]} and isinstance(ps["eta"], Float)


def test_grid_limit_needs_confirmation():
    big = {"seed": {"grid": list(range(GRID_LIMIT + 1))}}
    with pytest.raises(SpecError, match="exceed the limit"):
        spec(search_space=big)
    assert spec(search_space=big, confirm_large_grid=True).num_trials == GRID_LIMIT + 1


def test_smoke_shrinks():
    s = spec(search_space={"K": {"grid": [5, 10, 20]}, "T": 1000, "H": 10, "seed": {"grid": [0, 1, 2, 3]}}).smoke()
    assert s.params["K"].values == (3,)  # 5, 10, 20 all capped to 3: one distinct value
    assert s.params["T"].values == (100,) and s.params["H"].values == (3,)
    assert s.params["seed"].values == (0, 1) and s.experiment == "t-smoke"


@pytest.mark.parametrize("raw_space,needle", [
    ({"K": 2.5}, "search_space.K"),
    ({"eta": {"grid": [0.1, 0.1]}}, "repeated"),
    ({"K": {"uniform": [1, 5]}}, "does not apply"),
    ({"seed": {"randint": [0, 1.5]}}, "randint needs integers"),
    ({"alpha": {"uniform": [0.1, 0.6]}}, "must stay within"),
])
def test_more_bad_params(raw_space, needle):
    with pytest.raises(SpecError, match=needle):
        spec(search_space=raw_space)


def test_optuna_refuses_grids_before_anything_starts():
    pytest.importorskip("optuna")  # without it the spec says how to install it (also a SpecError)
    with pytest.raises(SpecError, match=r"search_space\.seed: grid cannot be used with search: optuna"):
        spec(search="optuna", search_space={"seed": {"grid": [0, 1]}})
    assert spec(search="optuna", search_space={"eta": {"loguniform": [1e-3, 1e-1]}}).search == "optuna"


def test_load_spec_refuses_python_tags(tmp_path):
    p = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    p.write_text(f'experiment: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)
    assert not marker.exists()


def test_history_steps():
    its = np.arange(1, 1001)
    assert history_steps(its[:50], 200).tolist() == list(range(50))
    idx = history_steps(its, 200)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) <= 201 and np.all(np.diff(idx) > 0)
    assert its[idx][-1] == 1000  # always ends at T


def test_batches_respect_workers_and_work():
    assert _batches(K=10, H=10, S=2, T=1000, workers=4) == 1  # 10 x 2 ms of work: one task
    assert _batches(K=10, H=10, S=200, T=1000, workers=4) == 4
    assert _batches(K=3, H=10, S=2000, T=1000, workers=8) == 3


def test_trial_matches_run_sequence_and_reports_consistent_scalars():
    config = {"eta": 0.05, "alpha": None, "K": 3, "H": 3, "sigma": 0.1, "T": 80, "seed": 4,
              "stage_reset": True, "tie_break": "uniform"}
    settings = TrialSettings("paper-zero-sum", 2, (2, 2), ("individual", "meta"), None, 0.5, 1.0)
    out = run_trial(config, settings)
    ref = run_sequence(game_family("paper-zero-sum", 3, 0.1, 3, 4), 80, 0.05)
    s = out.scalars
    for m in ("individual", "meta"):
        assert s[f"final_gap/{m}"] == pytest.approx(ref[m].mean_gap[-1], abs=0)
        assert s[f"auc/{m}"] == pytest.approx(np.mean(ref[m].mean_gap), rel=1e-14)
        assert s[f"similarity/delta/{m}"] == pytest.approx(ref[m].delta, rel=1e-14)
        its, gap = out.histories[f"gap/{m}"]
        assert its[0] == 1 and its[-1] == 80 and np.array_equal(gap, ref[m].mean_gap)
        hit = np.nonzero(ref[m].mean_gap <= 0.5)[0]
        assert (f"iters_to_eps/{m}" in s) == bool(hit.size)
    assert s["bound/theorem2"] == pytest.approx(ref["meta"].theorem2.intermediate, rel=1e-14)
    assert s["speedup/final_gap"] == pytest.approx(s["final_gap/individual"] / s["final_gap/meta"])
    assert s["alpha_used"] == 0.45  # 1/sqrt(3) > 1/2: the default is capped
    assert s["conditions/theorem1"] == 0.0  # eta = 0.05 > 1/(8 H^2) = 1/72
    assert out.curves.num_rows == 2 * 3 * 80 and out.num_tasks == 0
