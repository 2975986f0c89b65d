"""``metasweep meta --algorithm maml``: JSON summary, curves, bad input (in-process, no subprocess)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from solvers import maml
from solvers.nplayer import load_markov_game, load_policies, save_markov_game
from sweeps.cli import main
from tests.test_maml import paper_potential, random_potential_game


@pytest.fixture
def games(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(5):
        p = tmp_path / f"game_{k:03d}.npz"
        save_markov_game(p, paper_potential(0.1, H=4, rng=rng))
        paths.append(str(p))
    return paths


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_meta_maml_summary_and_curves(games, tmp_path, capsys):
    curve = tmp_path / "c.parquet"
    code, out, err = _run(["meta", "--algorithm", "maml", "--games", *games[:3], "--held-out", *games[3:], "-T", "2",
                           "--step", "0.1", "--outer-iterations", "6", "--outer-step", "0.5", "--eval-every", "3",
                           "--curve", str(curve), "--init-out", str(tmp_path / "init.npz")], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["algorithm"] == "maml" and summary["K"] == 3 and summary["K_held_out"] == 2
    assert summary["held_out"] is True and summary["setting"] == "finite_horizon"
    assert summary["potential_final"] > summary["potential_initial"]
    assert summary["meta"]["potential"] > summary["individual"]["potential"]
    table = pq.read_table(curve).to_pandas()
    assert set(table.columns) >= {"method", "game", "iteration", "gap", "gap_avg", "potential", "grad_norm",
                                  "train_potential"}
    assert sorted(table["iteration"].unique()) == [0, 3, 6]
    assert len(table) == 2 * 2 * 3  # methods x held-out games x evaluated outer iterations
    first = table[table.iteration == 0]
    # at k = 0 the meta-parameter is theta = 0: both methods adapt from the uniform policy
    m0 = first[first.method == "meta"].sort_values("game")
    i0 = first[first.method == "individual"].sort_values("game")
    np.testing.assert_allclose(m0["gap"].to_numpy(), i0["gap"].to_numpy(), atol=1e-14)
    last = table[table.iteration == 6]
    assert last[last.method == "meta"]["gap"].mean() == pytest.approx(summary["meta"]["gap"])
    # the learned initialisation, as a policy file: adapting from it reproduces the held-out potential
    game = load_markov_game(games[3])
    init = load_policies(tmp_path / "init.npz", game)
    theta = np.concatenate([np.log(p).ravel() for p in init])  # softmax(log p) = p
    _, pT, _ = maml.adapt(theta, game, 2, 0.1)
    meta_last = last[(last.method == "meta") & (last.game == 0)]
    assert pT.value == pytest.approx(meta_last["potential"].iloc[0], abs=1e-9)


@pytest.mark.parametrize("extra,message", [
    ([], "needs --step, --outer-iterations, --outer-step"),
    (["--step", "0.1", "--outer-iterations", "2", "--outer-step", "0.1", "--eval-log", "5"], "use --eval-every"),
    (["--step", "-1", "--outer-iterations", "2", "--outer-step", "0.1"], "must be > 0"),
])
def test_meta_maml_bad_options(games, tmp_path, capsys, extra, message):
    code, out, err = _run(["meta", "--algorithm", "maml", "--games", *games[:2], "-T", "1", *extra,
                           "--curve", str(tmp_path / "c.parquet")], capsys)
    assert code == 2 and message in err and out == ""
    assert not (tmp_path / "c.parquet").exists()


def test_meta_maml_refuses_non_potential_game(games, tmp_path, capsys):
    rng = np.random.default_rng(1)
    g = random_potential_game(rng, N=2, H=4, S=2, A=(2, 2), identical=False)
    bad = g.rewards.copy()
    bad[0, 0, 0, 1, 0] += 1.0
    path = tmp_path / "bad.npz"
    save_markov_game(path, g.with_rewards(bad))
    code, _, err = _run(["meta", "--algorithm", "maml", "--games", games[0], str(path), "-T", "1", "--step", "0.1",
                           "--outer-iterations", "1", "--outer-step", "0.1", "--curve", str(tmp_path / "c.parquet")],
                          capsys)
    assert code == 2 and "bad.npz" in err and "not potential games" in err


def test_solve_maml_is_refused(games, tmp_path, capsys):
    code, _, err = _run(["solve", "--algorithm", "maml", "--game", games[0], "-T", "1", "--curve",
                         str(tmp_path / "c.parquet")], capsys)
    assert code == 2 and "metasweep meta --algorithm maml" in err


def test_meta_maml_refuses_zero_sum_file(games, tmp_path, capsys):
    from solvers.games import save_game
    from solvers.generators import game_family

    path = tmp_path / "zs.npz"
    save_game(path, game_family("paper-zero-sum", 1, 0.0, 4, 0)[0])
    code, _, err = _run(["meta", "--algorithm", "maml", "--games", games[0], str(path), "-T", "1", "--step", "0.1",
                         "--outer-iterations", "1", "--outer-step", "0.1", "--curve", str(tmp_path / "c.parquet")], capsys)
    assert code == 2 and "zs.npz" in err and "MarkovGame" in err
