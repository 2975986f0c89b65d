"""`metasweep report`: rate fits on synthetic curves with known exponents, bound-ratio flagging on
constructed runs (through the outbox source and the CLI), and the report of one small real sweep
(real Ray through the console script, the session's real MLflow server)."""

import json
import math
import os
import subprocess
import uuid
from importlib import metadata

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from sweeps.cli import main
from test_sweep import metasweep, summary_json
from tracking.rates import (DEFECT, HOLDS, OUTSIDE, bound_verdict, combine_fits, fit_linear, fit_power_law,
                            parse_ratio_key, rate_verdict, running_mean)
from tracking.report import analyse_bounds, analyse_rates
from tracking.report_data import RunRecord

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


# ----------------------------------------------------------------------------- rate fitting


def _curve(p, c=2.0, noise=0.05, T=2000, rng=None, points=120, log_factor=False):
    t = np.unique(np.round(np.geomspace(1, T, points)))
    y = c * t ** (-p) * (np.log(t + 1) if log_factor else 1.0)
    if noise:
        y = y * np.exp(noise * rng.standard_normal(t.size))
    return t, y


@pytest.mark.parametrize("p", [0.5, 2.0 / 3.0, 1.0, 1.5])
def test_fit_recovers_exponent_and_its_interval_covers(p):
    """i.i.d. log-normal noise: the OLS CI (95 %) covers the true exponent in about 95 % of 400 curves."""
    rng = np.random.default_rng(int(p * 1000))
    fits = [fit_power_law(*_curve(p, rng=rng), tail=0.5) for _ in range(400)]
    cover = np.mean([f.contains(p) for f in fits])
    assert 0.91 <= cover <= 0.99, cover  # binomial(400, 0.95): sd 1.1 %
    assert abs(np.median([f.exponent for f in fits]) - p) < 0.01
    assert fits[0].t_min >= math.sqrt(2000) * 0.9 and fits[0].t_max == 2000  # the last half of log t


def test_fit_exact_power_law_and_intercept():
    t = np.arange(1, 1001, dtype=float)
    f = fit_power_law(t, 3.0 * t**-0.75, tail=1.0)
    assert f.exponent == pytest.approx(0.75, abs=1e-12) and math.exp(f.intercept) == pytest.approx(3.0, rel=1e-10)
    assert f.ci_high - f.ci_low < 1e-9


def test_combined_seed_interval_covers():
    """Per-seed exponents scattered around p (seed effects): the t-interval over 5 seeds covers p ~95 %."""
    rng = np.random.default_rng(7)
    p, hits = 1.0, []
    for _ in range(300):
        fits = [fit_power_law(*_curve(p + 0.05 * rng.standard_normal(), rng=rng, noise=0.01)) for _ in range(5)]
        c = combine_fits(fits)
        assert c.kind == "seeds" and c.n == 5
        hits.append(c.contains(p))
    assert 0.90 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_log_factor_within_allowance_and_verdicts():
    """log(t)/t is 'consistent' with p = 1 (the allowance 1/log t_start absorbs the log factor), and
    'faster' / 'slower' than a predicted 0.5 / 2."""
    t, y = _curve(1.0, noise=0.0, log_factor=True)
    f = fit_power_law(t, y)
    assert 0.8 < f.exponent < 1.0  # the log factor lowers the local slope
    assert rate_verdict(f, 1.0)[0].startswith("consistent")
    assert rate_verdict(f, 0.5)[0].startswith("faster")
    assert rate_verdict(f, 2.0, bound_ok=True)[0].startswith("slower than predicted (pre-asymptotic")
    assert rate_verdict(f, 2.0, bound_ok=False)[0].startswith("SLOWER")
    assert rate_verdict(None, 1.0)[0].startswith("no fit")


def test_numerical_zero_and_bad_arguments():
    t = np.arange(1, 200, dtype=float)
    assert fit_power_law(t, np.where(t < 10, 1.0 / t, 0.0)) is None  # the tail (t >= 14) is at numerical zero
    with pytest.raises(ValueError, match="tail"):
        fit_power_law(t, 1.0 / t, tail=0.0)


def test_running_mean_trapezoid():
    t = np.arange(0, 101, dtype=float)
    tt, m = running_mean(t, 2.0 * t)  # integral of 2t over [0, t] / t = t
    assert np.allclose(m, tt) and tt[0] == 1


def test_fixed_effects_slope():
    """A confounder that shifts y per group hides a positive within-group slope from plain OLS."""
    rng = np.random.default_rng(3)
    x, y, g = [], [], []
    for j in range(4):
        xs = rng.uniform(0, 1, 10) + 3 * j
        x += list(xs)
        y += list(0.5 * xs - 4.0 * j + 0.01 * rng.standard_normal(10))
        g += [j] * 10
    assert fit_linear(x, y).slope < 0
    fe = fit_linear(x, y, groups=g)
    assert fe.ci_low < 0.5 < fe.ci_high and fe.ci_low > 0.4


# ----------------------------------------------------------------------------- bound flagging


def _run(trial, ratio1, cond1, eta=0.001, H=2, reset="True", ratio2=0.1, cond2=1.0, gap_p=1.0):
    t = np.unique(np.round(np.geomspace(1, 400, 60)))
    hist = {f"gap/{m}": (t, 3.0 * t**-gap_p) for m in ("individual", "meta")}
    metrics = {"bound/theorem1_ratio/individual": ratio1, "conditions/theorem1": cond1,
               "bound/theorem2_ratio": ratio2, "conditions/theorem2": cond2, "final_gap/individual": 0.2,
               "final_gap/meta": 0.1, "similarity/delta/meta": 1.0, "time/trial_s": 1.0}
    params = {"eta": str(eta), "alpha": "None", "K": "3", "H": str(H), "sigma": "0.1", "T": "400", "seed": trial[-1],
              "stage_reset": reset, "tie_break": "uniform", "algorithm": "optimistic-mwu", "family": "paper-zero-sum",
              "methods": "individual,meta"}
    return RunRecord(trial, trial, params, metrics, hist, source="outbox")


def test_parse_ratio_key_and_verdict():
    assert parse_ratio_key("bound/theorem1_ratio/individual") == ("theorem1", "individual")
    assert parse_ratio_key("bound/theorem2_ratio") == ("theorem2", None)
    assert parse_ratio_key("bound/theorem2") is None and parse_ratio_key("bound/theorem1_mean/meta") is None
    assert bound_verdict(1.2, 1.0) == DEFECT and bound_verdict(0.99, 1.0) == HOLDS
    assert bound_verdict(1.2, 0.0) == OUTSIDE and bound_verdict(float("nan"), 1.0) == DEFECT
    assert bound_verdict(1.0 + 1e-12, 1.0) == HOLDS  # within the tolerance


def test_bound_rows_flag_defects_first_and_label_outside():
    runs = [_run("t0", 0.5, 1.0), _run("t1", 1.7, 1.0), _run("t2", 3.0, 0.0, eta=0.02, H=10, cond2=0.0),
            _run("t3", 2.0, 0.0, reset="False", cond2=0.0)]
    rows = analyse_bounds(runs)
    assert len(rows) == 8
    assert rows[0]["verdict"] == DEFECT and rows[0]["trial"] == "t1" and rows[0]["theorem"] == "theorem1"
    assert sum(r["verdict"] == DEFECT for r in rows) == 1
    out = {(r["trial"], r["theorem"]): r for r in rows if r["verdict"] == OUTSIDE}
    assert "eta = 0.02 > 1/(8H^2) = 0.00125" in out[("t2", "theorem1")]["note"]
    assert "no stage reset" in out[("t3", "theorem2")]["note"]


def test_rate_rows_recover_the_curves_exponent():
    runs = [_run(f"s{i}", 0.5, 1.0, gap_p=0.8) for i in range(3)]
    rows, _ = analyse_rates(runs)
    t1 = next(r for r in rows if r["theorem"] == "Theorem 1")
    assert t1["measured"] == pytest.approx(0.8, abs=1e-9) and t1["runs"] == 3 and t1["conditions"] == "hold"


def _outbox_sweep(root, runs) -> str:
    """A sweep folder whose results exist only in its outbox (MLflow never reached): sweep.json + record.json's."""
    d = root / "runs" / "sweeps" / "offline-1"
    for r in runs:
        (d / "outbox" / r.trial_id).mkdir(parents=True)
        rec = {"run_name": r.name, "params": r.params, "scalars": r.metrics, "tags": {"metasweep.status": "ok"},
               "histories": {k: [st.tolist(), v.tolist()] for k, (st, v) in r.histories.items()}, "sentinel": "time/trial_s"}
        (d / "outbox" / r.trial_id / "record.json").write_text(json.dumps(rec))
    state = {"sweep_id": "offline-1", "experiment": "offline", "tracking_uri": f"sqlite:///{root}/nowhere/x.db",
             "experiment_id": "1", "parent_run_id": "0" * 32, "trials": len(runs), "spec": "experiment: offline\n"}
    (d / "sweep.json").write_text(json.dumps(state))
    return str(d)


def test_cli_report_from_outbox_flags_defect(tmp_path, capsys, caplog):
    sweep = _outbox_sweep(tmp_path, [_run("t0", 0.5, 1.0), _run("t1", 1.7, 1.0), _run("t2", 3.0, 0.0, eta=0.02, H=10)])
    out = tmp_path / "rep"
    code = main(["report", sweep, "--source", "outbox", "--out", str(out), "--fail-on-defect", "--max-settings", "1"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 1 and summary["defects"] == 1 and summary["defect_runs"] == ["t1 theorem1"]
    assert "DEFECT: gap above its bound" in caplog.text and summary["logged_to"] == []
    page = (out / "report.html").read_text()
    assert "DEFECT: 1 run(s) exceed their theorem" in page and "class='defect'" in page
    assert "eta = 0.02 &gt; 1/(8H^2)" in page


def test_cli_report_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert main(["report", "x", "--tail", "1.5"]) == 2
    assert "must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- one small real sweep

SPEC = """\
experiment: {experiment}
algorithm: optimistic-mwu
game: {{family: paper-zero-sum}}
methods: [individual, meta]
search_space:
  eta: 0.02
  K: 2
  H: 2
  sigma: 0.1
  T: 120
  seed: {{grid: [0, 1]}}
resources:
  cpus: 1
tracking:
  metric_history_points: 40
"""


@pytest.fixture(scope="module")
def small_sweep(mlflow_server, tmp_path_factory):
    """One 2-trial sweep (2 seeds, H = 2 so that eta = 0.02 satisfies eta <= 1/(8H^2)) on a real local Ray and
    the session's MLflow server; shared by the report test and the browser test."""
    cwd = tmp_path_factory.mktemp("report-sweep")
    name = f"report-{uuid.uuid4().hex[:8]}"
    (cwd / "spec.yaml").write_text(SPEC.format(experiment=name))
    code, out, err = metasweep(["run", "spec.yaml", "--tracking-uri", mlflow_server, "--num-cpus", "1"], cwd, timeout=240)
    assert code == 0, err[-3000:]
    summary = summary_json(out)
    return {"cwd": cwd, "summary": summary, "uri": mlflow_server, "name": name,
            "state_dir": os.path.join(cwd, "runs", "sweeps", summary["sweep_id"])}


def test_report_of_a_real_sweep(small_sweep, tmp_path, capsys):
    """MLflow's 2 runs plus one trial that only the outbox holds (source auto)."""
    out = tmp_path / "report"
    extra = _run("outbox_only_7", 0.5, 1.0)
    box = os.path.join(small_sweep["state_dir"], "outbox", extra.trial_id)
    os.makedirs(box)
    with open(os.path.join(box, "record.json"), "w") as fh:
        json.dump({"run_name": extra.name, "params": extra.params, "scalars": extra.metrics, "tags": {},
                   "histories": {k: [st.tolist(), v.tolist()] for k, (st, v) in extra.histories.items()}}, fh)
    assert main(["report", small_sweep["state_dir"], "--out", str(out), "--fail-on-defect"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["runs"] == 3 and summary["defects"] == 0
    assert "1 trial(s) read from the outbox (not yet synced to MLflow)" in summary["notes"]
    # 2 runs x (theorem1 individual, theorem1 meta, theorem2) + the outbox trial's 2, all inside the conditions
    # (H = 2, eta = 0.02 <= 1/(8H^2), stage reset)
    assert summary["bounds_checked"] == {"holds": 8, "DEFECT": 0, "outside conditions": 0}
    for fig in ("convergence_optimistic-mwu_00", "ne_games", "bound_ratios", "rates_Theorem_1", "rates_Theorem_2"):
        assert (out / f"{fig}.png").stat().st_size > 5000 and (out / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(summary["figures"]) and "src='http" not in page
    assert "search_space" in page and f"mlflow&quot;: &quot;{metadata.version('mlflow')}" in page  # spec, versions
    rows = [r for r in summary["rates"] if r["fit"] == "log gap vs log t"]
    assert {r["theorem"] for r in rows} == {"Theorem 1", "Theorem 2"} and all(r["conditions"] == "hold" for r in rows)
    # the measured exponent equals a direct fit of the MLflow histories, combined over the two seeds
    client = MlflowClient(small_sweep["uri"])
    parent = small_sweep["summary"]["parent_run_id"]
    kids = client.search_runs([small_sweep["summary"]["experiment_id"]], f"tags.`mlflow.parentRunId` = '{parent}'")
    direct = []
    for k in kids:
        h = sorted(client.get_metric_history(k.info.run_id, "gap/individual"), key=lambda m: m.step)
        direct.append(fit_power_law([m.step for m in h], [m.value for m in h]))
    with open(out / "rates.csv") as fh:
        import csv

        t1 = next(r for r in csv.DictReader(fh) if r["theorem"] == "Theorem 1" and r["runs"] == "2")
    assert float(t1["measured"]) == pytest.approx(combine_fits(direct).exponent, rel=1e-9) and t1["ci_kind"] == "seeds"
    # the same files on the parent run
    logged = {os.path.basename(a.path) for a in client.list_artifacts(parent, "report")}
    assert {"report.html", "bounds.csv", "ne_games.png", "ne_games.svg"} <= logged
    assert client.get_run(parent).data.tags["metasweep.report_defects"] == "0"


# ----------------------------------------------------------------------------- the MLflow UI in a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _install_chromium() -> None:
    """``apt-get install -y chromium chromium-driver`` where that is possible (root, Debian); silent otherwise."""
    import shutil

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env, capture_output=True,
                   timeout=900)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the distribution's `chromium` and `chromium-driver` packages) driven by Selenium
    (`pip install -e '.[browser]'`); skipped, saying what is missing, where they are not installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install -e '.[browser]'")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        _install_chromium()  # as cluster/postgres.py installs PostgreSQL: the distribution's packages, as root
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1000"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def test_mlflow_ui_in_a_browser(small_sweep, browser, tmp_path):
    """The experiment page lists the parent run and, expanded, its child runs; a child's gap/meta chart renders
    as a line with one point per logged step. Screenshots go to tmp_path (and $METASWEEP_SCREENSHOTS if set)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = [str(tmp_path)] + ([os.environ["METASWEEP_SCREENSHOTS"]] if os.environ.get("METASWEEP_SCREENSHOTS") else [])
    url, exp_id = small_sweep["uri"], small_sweep["summary"]["experiment_id"]
    parent = small_sweep["summary"]["parent_run_id"]
    client = MlflowClient(url)
    kids = {r.info.run_id: r for r in client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent}'")}
    assert len(kids) == 2
    wait = WebDriverWait(browser, 90)
    browser.get(f"{url}/#/experiments/{exp_id}/runs")
    expand = wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, f"div[role='row'][row-id='{parent}'] button[data-component-id*='runnamecellrenderer']"))
    assert small_sweep["summary"]["sweep_id"] in browser.find_element(By.CSS_SELECTOR, f"div[role='row'][row-id='{parent}']").text
    expand.click()
    shown = lambda d: {e.get_attribute("row-id") for e in d.find_elements(By.CSS_SELECTOR, "div[role='row'][row-id]")}
    wait.until(lambda d: set(kids) <= shown(d))
    page = browser.find_element(By.TAG_NAME, "body").text
    assert all(k.info.run_name in page for k in kids.values())  # the children's names are listed
    for d in shots:
        browser.save_screenshot(os.path.join(d, "mlflow-sweep-runs.png"))

    child = next(iter(kids))
    steps = len(client.get_metric_history(child, "gap/meta"))
    browser.get(f"{url}/#/experiments/{exp_id}/runs/{child}/model-metrics")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[placeholder='Search metric charts']")).send_keys("gap/meta")

    def line_chart(d):  # the chart card whose legend names gap/meta, once plotly has drawn its line
        for legend in d.find_elements(By.XPATH, "//*[contains(text(), '(gap/meta)')]"):
            for card in legend.find_elements(By.XPATH, "./ancestor::*[.//*[local-name()='svg' and contains(@class, 'main-svg')]][1]"):
                lines = [p.get_attribute("d") for p in card.find_elements(By.CSS_SELECTOR, "path.js-line")]
                if any(lines):
                    return card, lines
        return None

    card, lines = wait.until(line_chart)
    # a polyline "M x,y L x,y ...": plotly merges nearly collinear vertices, so fewer than the logged steps
    assert steps == 40 and 10 <= max(ln.count("L") + 1 for ln in lines if ln) <= steps
    browser.execute_script("arguments[0].scrollIntoView(true);", card)
    for d in shots:
        browser.save_screenshot(os.path.join(d, "mlflow-gap-meta.png"))
    assert os.path.getsize(os.path.join(str(tmp_path), "mlflow-gap-meta.png")) > 10_000


@pytest.mark.parametrize("name, trials, smoke", [("rates", 972, 32), ("rates-general-sum", 144, 16),
                                                  ("rates-potential", 108, 8)])
def test_rate_specs_validate_with_their_smoke_versions(name, trials, smoke):
    """The shipped rate specs (run with --smoke-test by hand: 57 s, 84 s and 29 s here) are valid, and both
    readings of the stage reset survive the smoke cut."""
    from sweeps.spec import load_spec

    spec = load_spec(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sweeps", "specs",
                                  f"{name}.yaml"), enforce_limit=False)
    assert spec.num_trials == trials and spec.smoke().num_trials == smoke
    if "stage_reset" in spec.params:
        assert spec.smoke().params["stage_reset"].values == (True, False)
