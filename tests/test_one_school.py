"""A single PL school (issue 11): its placebo-calibrated test and interval, the figures that need
several PL schools reported as not estimable with the reason, and why there is no calibration
when there are too few placebo schools — in the Python results, the CLI, the CSV/XLSX and the
report; and by simulation the calibrated interval's coverage of the program effect and the flag
rate with no program effect (tests/_school_sim.py's generator, one PL school)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from typer.testing import CliRunner

import pleval
from pleval.cli import app
from pleval.data import SAMPLE_COLUMNS
from pleval.errors import DesignError, PlevalWarning
from pleval.heterogeneity import calibrate, school_inference
from pleval.heterogeneity.calibration import ONE_SCHOOL, ONE_SCHOOL_ESTIMATE

from ._school_sim import ONE_SCHOOL_GEN, generate, ingredients, mc_se, score_one
from .conftest import sim_scale


def _hedges(y: np.ndarray, V: np.ndarray) -> tuple[float, float]:
    """τ̂²_placebo as pleval estimates it (Hedges' unweighted moment estimator with the full
    covariance V, docs/heterogeneity.md) and its SE, from the matrix formulas:
    ``max(0, (y'My − tr(MV))/(m − 1))`` and ``√(2 tr((M(V + τ̂²I))²))/(m − 1)``, ``M = I − 11'/m``."""
    m = y.size
    M = np.eye(m) - 1.0 / m
    t = max(0.0, float(y @ M @ y - np.trace(M @ V)) / (m - 1))
    S = M @ (V + t * np.eye(m))
    return t, math.sqrt(2.0 * np.trace(S @ S)) / (m - 1)


def _direct(y, v, d, t2p, nodes, level=0.95):
    """The calibrated figures of one school straight from their definition (docs/heterogeneity.md),
    with scipy's t distribution and root finder: the mixture over the τ²_placebo draws and weights
    ``nodes = (draws, w)`` of t(ν_j) scaled by √(v + τ²_j), ν_j = d((v + τ²_j)/v)²; p its
    two-sided tail at ``y``, the interval ``y ± h`` (h its ``(1 + level)/2`` quantile),
    ``se = √(v + τ̂²)`` and the df that turn ``se`` into ``h``."""
    draws, w = (np.asarray(a, dtype=float) for a in nodes)
    sc = np.sqrt(v + draws)
    nu = d * (sc**2 / v) ** 2 if math.isfinite(d) else np.full(draws.size, np.inf)
    q = 0.5 + level / 2
    half = optimize.brentq(lambda h: stats.t.cdf(h / sc, nu) @ w - q, 0.0, 100.0, xtol=1e-15, rtol=1e-15)
    se_cal = math.sqrt(v + t2p)
    r = half / se_cal
    df = math.inf if r <= stats.norm.ppf(q) else optimize.brentq(lambda n: stats.t.ppf(q, n) - r, 1e-3, 1e12,
                                                                  xtol=1e-12, rtol=1e-14)
    return {"se_calibrated": se_cal, "df_calibrated": df, "ci_low_calibrated": y - half,
            "ci_high_calibrated": y + half, "p_calibrated": float(2 * stats.t.sf(abs(y) / sc, nu) @ w)}


def _draws(yp, Vp):
    """``(τ²_j, w_j)``: τ²_placebo's confidence-distribution quantiles at the calibrated tests'
    probabilities (``_predictive.tail_probabilities``) and their weights: each the root of
    ``H(τ²) = P_τ²(Q₁ > q) = p``, by brentq on the survival function of the unweighted Q
    (tests/test_heterogeneity_unweighted.py checks it against Imhof's inversion), 0 where ``H(0) ≥ p``."""
    from pleval.heterogeneity._predictive import tail_probabilities
    from pleval.heterogeneity._unweighted import unweighted_q

    uq = unweighted_q(yp, Vp)
    h = lambda t: float(uq.sf(t)[0])  # noqa: E731

    def root(p):
        hi = 10.0
        while h(hi) < p:
            hi *= 2
        return optimize.brentq(lambda t: h(t) - p, 0.0, hi, xtol=1e-15)

    u, w = tail_probabilities()
    return np.array([0.0 if h(0.0) >= p else root(p) for p in u]), w


def _placebo(seed=4, m=30):
    rng = np.random.default_rng(seed)
    vp = rng.uniform(0.01, 0.03, m)
    A = rng.normal(0, 0.004, (m, m))
    Vp = np.diag(vp) + (A @ A.T) * 0.2  # a full (correlated) placebo covariance
    return rng.multivariate_normal(np.zeros(m), Vp + 0.012 * np.eye(m)), Vp


def test_one_school_equals_the_direct_formula():
    yp, Vp = _placebo()
    t2p, se_pb = _hedges(yp, Vp)
    c = calibrate(["A"], [0.21], [[0.016]], [37.0], yp, Vp)
    assert c.placebo.tau2 == pytest.approx(t2p, abs=1e-7) and c.placebo.tau2_se == pytest.approx(se_pb, rel=1e-5)
    want = _direct(0.21, 0.016, 37.0, t2p, _draws(yp, Vp))
    row = c.schools.iloc[0]
    for k, v in want.items():
        assert row[k] == pytest.approx(v, rel=1e-7), k
    assert row["p_calibrated_adjusted"] == row["p_calibrated"]  # one test: nothing to adjust


def test_one_school_is_the_k_school_formula_per_school():
    """Each school's calibrated figures are the same alone and among k schools, to the bit: the
    per-school path uses only the school and the placebo schools (a matrix product over the
    weights, briefly on 2026-12-04, moved the last bits with k)."""
    yp, Vp = _placebo(7)
    rng = np.random.default_rng(1)
    k = 37
    y, v, d = rng.normal(0, 0.2, k), rng.uniform(0.01, 0.04, k), rng.uniform(20, 80, k)
    V = np.diag(v) + 0.002 * (np.ones((k, k)) - np.eye(k))
    labels = [f"S{i}" for i in range(k)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        many = calibrate(labels, y, V, d, yp, Vp).schools.set_index("school")
    cols = ["se_calibrated", "df_calibrated", "ci_low_calibrated", "ci_high_calibrated", "p_calibrated"]
    for i, lab in enumerate(labels):
        one = calibrate([lab], y[i : i + 1], V[i : i + 1, i : i + 1], d[i : i + 1], yp, Vp).schools.iloc[0]
        np.testing.assert_array_equal(one[cols].to_numpy(dtype=float), many.loc[lab, cols].to_numpy(dtype=float),
                                      err_msg=lab)


def test_placebo_spread_is_put_on_the_pl_schools_scale():
    """A trial's placebo school is compared with one school (a = 1 + 1/1 = 2), a PL school with
    two (a = 1.5): the placebo τ̂², its SE and interval scale by 1.5/2 exactly (each deviation
    by √0.75 about the placebo mean; Hedges' estimator is quadratic in them and linear in V).
    With unequal counts each school's calibrated variance is τ̂²(a = 1)·a_s, the same alone as
    among k schools; counts of 1 everywhere, or a missing count, change nothing."""
    yp, Vp = _placebo(7)
    m = yp.size
    lab, y3, v3, d3 = ["A", "B", "C"], [0.1, -0.2, 0.05], np.array([0.01, 0.02, 0.015]), [40.0, 50.0, 45.0]
    raw = calibrate(lab, y3, np.diag(v3), d3, yp, Vp)
    trial = calibrate(lab, y3, np.diag(v3), d3, yp, Vp, comparison_schools=[2.0] * 3,
                      placebo_comparison_schools=np.ones(m))
    assert trial.placebo_scale == 0.75 and raw.placebo_scale == 1.0
    assert trial.placebo.tau2 == pytest.approx(0.75 * raw.placebo.tau2, rel=1e-12)
    assert trial.placebo.tau2_se == pytest.approx(0.75 * raw.placebo.tau2_se, rel=1e-12)
    np.testing.assert_allclose(trial.placebo.tau2_ci, 0.75 * np.asarray(raw.placebo.tau2_ci), rtol=1e-6)
    np.testing.assert_allclose(trial.schools["se_calibrated"] ** 2, v3 + 0.75 * raw.placebo.tau2, rtol=1e-12)
    for pl, pb in (([1.0] * 3, np.ones(m)), ([2.0, np.nan, 2.0], np.ones(m)), (None, np.ones(m))):
        same = calibrate(lab, y3, np.diag(v3), d3, yp, Vp, comparison_schools=pl, placebo_comparison_schools=pb)
        pd.testing.assert_frame_equal(same.schools, raw.schools)

    rng = np.random.default_rng(3)
    k = 5
    y, v, d = rng.normal(0, 0.2, k), rng.uniform(0.01, 0.04, k), rng.uniform(20, 80, k)
    n_pl, n_pb = rng.uniform(1, 6, k), rng.uniform(1, 6, m)
    labels = [f"S{i}" for i in range(k)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        many = calibrate(labels, y, np.diag(v), d, yp, Vp, comparison_schools=n_pl,
                         placebo_comparison_schools=n_pb).schools.set_index("school")
    unit = calibrate(["x"], [0.0], [[0.01]], [30.0], yp, Vp, comparison_schools=[np.inf],  # a = 1: τ̂²(a = 1)
                     placebo_comparison_schools=n_pb).placebo.tau2
    np.testing.assert_allclose(many["se_calibrated"] ** 2, v + unit * (1 + 1 / n_pl), rtol=1e-10)
    for i, lab in enumerate(labels):
        one = calibrate([lab], y[i : i + 1], [[v[i]]], d[i : i + 1], yp, Vp, comparison_schools=n_pl[i : i + 1],
                        placebo_comparison_schools=n_pb).schools.iloc[0]
        assert one["se_calibrated"] == pytest.approx(many.loc[lab, "se_calibrated"], rel=1e-10)
        assert one["df_calibrated"] == pytest.approx(many.loc[lab, "df_calibrated"], rel=1e-10)


def test_one_school_reports_what_is_not_estimable_and_why():
    yp, Vp = _placebo()
    c = calibrate(["A"], [0.3], [[0.01]], [50.0], yp, Vp)
    d = c.as_dict()
    assert c.pl is None and c.note == ONE_SCHOOL and d["calibration_note"] == ONE_SCHOOL
    for key in ("tau2_pl", "tau2_program", "tau2_program_ci_low", "tau2_total", "pi_low", "pi_high", "prob_negative_new"):
        assert math.isnan(d[key]), key
    assert math.isfinite(d["tau2_placebo"]) and d["k_pl"] == 1
    assert c.schools[["program_shrunk", "shrunk_total", "prob_negative_total"]].isna().all().all()
    assert "not estimable" in c.summary() and "SE" in c.summary()
    si = school_inference(["A"], [0.3], [[0.01]], [50.0], [0.003], yp, Vp)
    assert si.meta is None and si.shrinkage is None and si.note == ONE_SCHOOL
    assert "Not estimable" in si.summary() and len(si.to_frame()) == 1
    assert c.positive + c.negative == int(c.schools["p_calibrated"].iloc[0] < 0.05)


def test_too_few_placebo_schools_say_why():
    with pytest.raises(DesignError, match="1 placebo school.*needs at least 2"):
        calibrate(["A"], [0.3], [[0.01]], [50.0], [0.1], [[0.01]])


# --------------------------------------------------------------------------------------------
# pleval estimate end to end: Python, CLI, CSV/XLSX, report
# --------------------------------------------------------------------------------------------
GEN = dict(n_pl=1, n_comp=12, per_school=50, delta=0.10)


@pytest.fixture(scope="module")
def one_school(tmp_path_factory):
    df, truth, _ = generate(21, **GEN)
    path = tmp_path_factory.mktemp("one") / "one_school.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, seed=2, sd=15.0)
    out = path.parent / "results"
    r = CliRunner().invoke(app, ["estimate", str(path), "--out", str(out), "--seed", "2", "--sd", "15"])
    assert r.exit_code == 0, r.output
    return ev, out, r.output


def test_estimate_gives_the_single_school_its_calibrated_figures(one_school):
    ev, _, _ = one_school
    s = ev.schools
    assert len(s) == 1
    row = s.iloc[0]
    plc = ev.details["math"]["placebo"]
    p = plc.placebo[np.isfinite(plc.placebo["effect_size"].to_numpy(dtype=float))]
    Vp = plc.placebo_vcov["math"].loc[p["school"], p["school"]].to_numpy()
    yp = p["effect_size"].to_numpy(dtype=float)
    # the placebo deviations on the PL school's scale: × √(a_PL/a_j), a = 1 + 1/(effective comparison schools)
    f = np.sqrt((1 + 1 / row["comparison_schools"]) / (1 + 1 / p["comparison_schools"].to_numpy(dtype=float)))
    assert 1 <= row["comparison_schools"] <= 12 and not np.allclose(f, 1.0)
    yp, Vp = yp.mean() + (yp - yp.mean()) * f, Vp * np.outer(f, f)
    t2p, _ = _hedges(yp, Vp)
    want = _direct(row["effect_size"], row["es_se"] ** 2, row["df"], t2p, _draws(yp, Vp))
    for k, v in want.items():
        assert row[k] == pytest.approx(v, rel=1e-5), k
    h = ev.heterogeneity.iloc[0]
    assert h["k"] == 1 and h["not_estimable"] == ONE_SCHOOL and h["calibration_note"] == ""
    assert math.isnan(h["estimate"]) and math.isnan(h["tau2"]) and math.isnan(h["pi_low"])
    assert h["tau2_placebo"] == pytest.approx(t2p, abs=1e-7) and h["placebo_k"] == len(p)
    assert h["calibrated_positive"] + h["calibrated_negative"] == int(row["p_calibrated_adjusted"] < 0.05)
    assert "are not estimable" in ev.summary() and f"{row['ci_low_calibrated']:+.3f} to" in ev.summary()


def test_cli_csv_xlsx_and_report_carry_the_calibrated_figures(one_school):
    ev, out, output = one_school
    csv = pd.read_csv(out / "school_effects.csv")
    cols = ["se_calibrated", "df_calibrated", "ci_low_calibrated", "ci_high_calibrated", "p_calibrated"]
    np.testing.assert_allclose(csv[cols].to_numpy(dtype=float), ev.schools[cols].to_numpy(dtype=float), rtol=1e-9)
    het = pd.read_csv(out / "heterogeneity.csv")
    assert het["not_estimable"].iloc[0] == ONE_SCHOOL and math.isnan(het["estimate"].iloc[0])
    from openpyxl import load_workbook

    ws = load_workbook(out / "school_effects.xlsx")["math"]
    cells = [c for r in ws.iter_rows(values_only=True) for c in r if c is not None]
    assert "SE with placebo spread (ES)" in cells and "df with placebo spread" in cells
    assert cells.count("SE with placebo spread (ES)") == 1 and "se_calibrated" not in cells  # shown once
    assert any(isinstance(c, str) and "not estimable" in c for c in cells)
    r = ev.schools.iloc[0]
    text = " ".join(output.split())
    assert "One PL school" in text and f"{r['se_calibrated']:.3f}" in text
    assert f"{r['ci_low_calibrated']:+.3f}, {r['ci_high_calibrated']:+.3f}" in text
    assert "not estimable" in text
    html = (out / "report.html").read_text()
    assert f"{r['ci_low_calibrated']:+.3f} to {r['ci_high_calibrated']:+.3f}" in html
    assert "need the spread of at least 2 PL schools" in html


def test_no_placebo_schools_say_why(tmp_path):
    df, _, _ = generate(5, n_pl=1, n_comp=3, per_school=50)  # placebo schools need at least 4 comparison schools
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, seed=1, sd=15.0, sensitivity=False)
        off = pleval.estimate(df, seed=1, sd=15.0, sensitivity=False, placebo=False)
    h = ev.heterogeneity.iloc[0]
    assert h["calibration_note"].startswith("no placebo-calibrated figures: no placebo schools")
    assert "at least 4 comparison schools" in h["calibration_note"]
    assert "placebo schools were not run" in off.heterogeneity.iloc[0]["calibration_note"]
    assert "at least 4 comparison schools" in pleval.findings.text_summary(ev)
    path = tmp_path / "few.csv"
    df.to_csv(path, index=False)
    r = CliRunner().invoke(app, ["estimate", str(path), "--out", str(tmp_path / "out"), "--sd", "15"])
    assert r.exit_code == 0, r.output
    assert "at least 4 comparison schools" in " ".join(r.output.split())


# --------------------------------------------------------------------------------------------
# Simulation: coverage of θ and the flag rate with no program effect
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("delta", [0.0, 0.10])
def test_calibrated_interval_covers_the_program_effect_of_one_school(delta):
    """The study of docs/validation.md ("One PL school"): at full size (PLEVAL_SIM_SCALE=1) 400
    replications per δ, seeds 0–399, as ``benchmarks/sim_one_school.py``. One replication is a
    whole ``pleval.estimate`` with a placebo matching run per two comparison schools, so the
    reduced run shrinks with the square of the scale (25 replications at make test's 0.25)."""
    reps = max(12, round(400 * sim_scale() ** 2))
    rows = pd.DataFrame([score_one(ingredients(seed, "propensity", **ONE_SCHOOL_GEN, delta=delta)[0])
                         for seed in range(reps)])
    cov, flag = rows["cal_ci_program"], rows["flag"]
    assert (cov + flag == 1).all()  # θ = 0: the interval misses exactly when the school is flagged
    se = math.sqrt(0.95 * 0.05 / reps)  # Monte Carlo SE at the nominal rate (the observed one can be 0)
    assert 0.93 - 3 * se <= cov.mean() <= 0.97 + 3 * se, (cov.mean(), mc_se(cov))
    assert flag.mean() <= 0.07 + 3 * math.sqrt(0.07 * 0.93 / reps), flag.mean()


def test_the_overall_effect_of_one_pl_school_clusters_its_students():
    """One PL school: as one cluster its residuals are fitted by the treatment coefficient, so a
    school-clustered SE leaves its students' noise out. Its students are the clusters on its side
    instead (statsmodels' CR1 with those clusters), the comparison schools stay clusters, and the
    SE's label says so; with two PL schools nothing changes."""
    import statsmodels.api as sm

    from pleval.matching.effect import regression_effect

    df, _, _ = generate(3, n_pl=1, n_comp=24, delta=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        m = pleval.match(df, SAMPLE_COLUMNS, method="propensity")
    s = m.matched
    kw = dict(outcome="posttest", treatment="treatment", pretests=("pretest",), school="school_id")
    eff = regression_effect(s, **kw, vcov="CR1")
    X = sm.add_constant(s[["treatment", "pretest"]].to_numpy(float))
    groups = np.where(s["treatment"] == 1, "pl" + pd.Series(np.arange(len(s))).astype(str), s["school_id"])
    ref = sm.WLS(s["posttest"].to_numpy(float), X, weights=s["_weight"].to_numpy(float)).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(groups)[0]})
    assert eff.raw.estimate == pytest.approx(ref.params[1], rel=1e-9)
    assert eff.raw.se == pytest.approx(ref.bse[1], rel=1e-8)
    assert eff.raw.method.endswith(" (one PL school: its students are the clusters on its side)") and eff.raw.n_clusters == len(np.unique(groups))
    df2, _, _ = generate(3, n_pl=2, n_comp=24, delta=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        two = pleval.match(df2, SAMPLE_COLUMNS, method="propensity")
    e2 = regression_effect(two.matched, **kw, vcov="CR1")
    assert "students are the clusters" not in e2.raw.method and e2.raw.n_clusters == two.matched["school_id"].nunique()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, sd=15.0, placebo=False, sensitivity=False)
    assert any(n.startswith("math: all PL students are in one school, so students are the clusters there") for n in ev.notes)


@pytest.mark.slow
def test_the_overall_effect_of_one_pl_school_covers_by_simulation():
    """One PL school among 25, no program effect and no school deviations: the overall effect's
    95% CI covers 0 and its SE matches the spread of the estimates (200 data sets: 97.0% and
    SE/SD 1.04; clustered by school with the PL school one cluster, 85.0% and 0.75)."""
    reps = max(60, round(200 * sim_scale()))
    est, se, cover = [], [], 0
    for seed in range(reps):  # a loop over data sets, each a whole analysis
        df, _, _ = generate(seed, n_pl=1, n_comp=24, delta=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            raw = pleval.estimate(df, sd=15.0, placebo=False, sensitivity=False).effect().raw
        est.append(raw.estimate)
        se.append(raw.se)
        cover += raw.ci_low <= 0 <= raw.ci_high
    ratio = np.mean(se) / np.std(est, ddof=1)
    assert cover / reps >= 0.9 and 0.88 < ratio < 1.25, (cover / reps, ratio)


# --------------------------------------------------------------------------------------------
# One school outside the matched path: `pleval schools` and a trial's school-level path
# --------------------------------------------------------------------------------------------
def test_schools_cli_with_one_school_reports_what_is_not_estimable(tmp_path):
    """`pleval schools` on a file with one school: the school's own figures (normal reference
    without a df column), a warning, and the pooled quantities reported as not estimable with
    the reason, on screen and in the CSV (empty shrinkage)."""
    path = tmp_path / "one.csv"
    pd.DataFrame({"school_id": ["A"], "subject": ["math"], "estimate": [0.21], "se": [0.08],
                  "n_treated": [40], "n_comparison": [60]}).to_csv(path, index=False)
    with pytest.warns(PlevalWarning, match="math: fewer than 2 schools with an estimate; no meta-analysis"):
        r = CliRunner().invoke(app, ["schools", str(path), "--out", str(tmp_path / "out.csv")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "[math] Pooled: not estimable (" + " ".join(ONE_SCHOOL_ESTIMATE.split()) + ")" in text
    assert "placebo" not in text  # `pleval schools` has no placebo schools
    z = stats.norm.ppf(0.975)
    assert f"{0.21 - z * 0.08:.3f} to {0.21 + z * 0.08:.3f}" in text
    row = pd.read_csv(tmp_path / "out.csv").iloc[0]
    assert row["effect_size"] == pytest.approx(0.21) and row["pvalue"] == pytest.approx(2 * stats.norm.sf(0.21 / 0.08))
    assert row["es_ci_low"] == pytest.approx(0.21 - z * 0.08) and row["es_ci_high"] == pytest.approx(0.21 + z * 0.08)
    assert all(math.isnan(row[c]) for c in ("shrunk_es", "shrunk_es_sd", "reliability", "prob_negative"))


def _one_site(seed=3, n=200):
    """A multi-site trial with a single site: students randomized within one school."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    pre = rng.normal(200, 15, n)
    y = 200 + 0.7 * (pre - 200) + 3.0 * t + rng.normal(0, 10.7, n)
    return pd.DataFrame({"school_id": "S0", "block": "S0", "student_id": np.arange(n), "treatment": t,
                         "pretest": pre, "posttest": y})


def test_one_site_trial_runs_and_says_what_is_not_estimable(tmp_path):
    """A multi-site trial with one site: the site's effect is the trial's ITT (OLS with HC2,
    checked against statsmodels); the school-level path runs, warns, and reports the pooled
    quantities and shrinkage as not estimable with the reason; `pleval estimate`'s school table is
    that one site's row; `pleval rct` runs on it."""
    import statsmodels.api as sm

    from pleval import analyze_rct
    from pleval.data import Columns
    from pleval.heterogeneity import school_effects

    df = _one_site()
    ref = sm.OLS(df["posttest"], sm.add_constant(df[["treatment", "pretest"]])).fit(cov_type="HC2")
    cols = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), school="school_id",
                   block="block", student_id="student_id", covariates=())
    itt = analyze_rct(df, cols, design="blocked").itt
    raw = next(e for e in itt.estimates if e.scale == "raw")
    assert raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-9)
    assert raw.se == pytest.approx(ref.bse["treatment"], rel=1e-9)
    with pytest.warns(PlevalWarning, match="fewer than 2 schools with an estimate; no meta-analysis"):
        se = school_effects(df, stratum="school_id", treatment="treatment", outcome="posttest", covariates=["pretest"])
    row = se.table.iloc[0]
    assert row["estimate"] == pytest.approx(ref.params["treatment"], rel=1e-9)
    assert row["se"] == pytest.approx(ref.bse["treatment"], rel=1e-9)
    assert se.meta == {} and se.counts["all"].k == 1 and math.isnan(row["shrunk_es"])
    assert "[all] Pooled: not estimable (" + ONE_SCHOOL_ESTIMATE + ")" in se.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, design="rct", columns=cols, rct_design="blocked", seed=0)
    assert ev.effect().raw.estimate == pytest.approx(raw.estimate, rel=1e-9)
    site = ev.school_effects.table
    assert len(site) == 1 and site["estimate"].iloc[0] == pytest.approx(ref.params["treatment"], rel=1e-9)
    assert site["se"].iloc[0] == pytest.approx(ref.bse["treatment"], rel=1e-9)
    assert any(n.startswith("school effects in a multi-site trial") for n in ev.notes)
    assert ev.heterogeneity["not_estimable"].iloc[0] == ONE_SCHOOL_ESTIMATE  # no placebo test to speak of
    path = tmp_path / "site.csv"
    df.to_csv(path, index=False)
    r = CliRunner().invoke(app, ["rct", str(path), "--design", "blocked", "--subject", "none", "--covariates", "none",
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    out = pd.read_csv(tmp_path / "out" / "itt.csv")
    mine = out[(out.analysis == "ITT") & (out.scale == "raw")].iloc[0]
    assert mine["estimate"] == pytest.approx(ref.params["treatment"], rel=1e-9)


def test_cluster_trial_with_one_pl_school_is_a_clear_design_error(tmp_path):
    """A cluster-randomized trial with a single treated (PL) school has no trial-level ITT (a
    cluster-robust SE needs at least 2 schools per arm): a DesignError with the counts, in the
    API, `pleval estimate` and `pleval rct` (one line, exit code 2), not a crash."""
    from pleval import analyze_rct
    from pleval.data import RCT_SAMPLE_COLUMNS
    from pleval.simulate import simulate_cluster_rct

    d = simulate_cluster_rct(n_schools=8, n_blocks=1, students_per_school=20, grades=[4], seed=21).data
    pl = sorted(d.loc[d.treatment == 1, "school_id"].unique())
    one = d[(d.treatment == 0) | (d.school_id == pl[0])]
    n_control = one.loc[one.treatment == 0, "school_id"].nunique()
    msg = (f"needs at least 2 treated and 2 control schools (column 'school_id'); the randomized sample has 1 "
           f"treated and {n_control} control")
    with pytest.raises(DesignError, match=re.escape(msg)):
        analyze_rct(one, RCT_SAMPLE_COLUMNS, subject="math")
    with pytest.raises(DesignError, match=re.escape(msg)):
        pleval.estimate(one, design="rct", columns=RCT_SAMPLE_COLUMNS)
    path = tmp_path / "one_pl.csv"
    one.to_csv(path, index=False)
    r = CliRunner().invoke(app, ["rct", str(path), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and msg in " ".join(r.output.split())
    assert "Traceback" not in r.output



def test_cli_prints_pleval_warnings_as_one_plain_line(tmp_path):
    """A warning from the API reaches a CLI user as ``warning: …``, not as Python's
    ``file.py:LINE: PlevalWarning: …`` form (here: `pleval schools` with one school; a fresh
    process, since pytest records warnings instead of printing them)."""
    path = tmp_path / "one.csv"
    pd.DataFrame({"school_id": ["A"], "subject": ["math"], "estimate": [0.21], "se": [0.08]}).to_csv(path, index=False)
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "schools", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "warning: math: fewer than 2 schools with an estimate; no meta-analysis" in r.stderr
    assert "PlevalWarning" not in r.stderr and ".py:" not in r.stderr, r.stderr


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_the_card_says_why_one_pl_school_has_two_estimates():
    """One PL school: the card gave the headline's effect (-0.116 SD) and, a line below, the school's
    own (-0.084 SD) from the same 40 PL and 46 comparison students, without saying why they differ
    or which answers what. The reason, checked here with statsmodels' WLS on the distinct matched
    rows: the headline's regression also adjusts for grade, the school-effects model does not. The
    card now says so, and that the calibrated interval is the one for the program alone."""
    import statsmodels.formula.api as smf

    from pleval.findings import fmt
    from pleval.report import sections

    data = pleval.simulate_matched(n_schools=40, n_pl_schools=1, students_per_grade=10, subjects=("math",),
                                   seed=14).data
    ev = pleval.estimate(data, sensitivity=False)
    m, e, school = ev.details["math"]["design"], ev.effects["math"], ev.schools.iloc[0]
    d = m.distinct()
    covs = "pretest + female + frl + ell + sped + C(race)"
    with_grade = smf.wls(f"posttest ~ treatment + {covs} + C(grade)", d, weights=d["_weight"]).fit()
    without = smf.wls(f"posttest ~ treatment + {covs}", d, weights=d["_weight"]).fit()
    assert with_grade.params["treatment"] == pytest.approx(e.raw.estimate, rel=1e-8)
    assert without.params["treatment"] == pytest.approx(school["estimate"], rel=1e-8)
    assert (e.raw.n_treated, e.raw.n_control) == (school["n_treated"], school["n_comparison"])
    (card,) = sections.glance(ev, ()).blocks
    (line,) = [ln for ln in card.lines if ln.startswith("Why two estimates")]
    assert line.startswith(
        f"Why two estimates ({fmt(e.effect_size.estimate, 3, True)} and {fmt(school['effect_size'], 3, True)} SD): both "
        f"compare the same {int(school['n_treated'])} PL and {int(school['n_comparison'])} comparison students, but "
        "the headline's regression also adjusts for grade, which the school-effects model")
    assert "whether the program itself worked in this school is the placebo-calibrated interval above" in line
