"""Tests of pleval.simulate, the `pleval simulate` command and sample_data/.

The simulator is checked against independent computations on its own output: OLS with
numpy's lstsq, the one-way ANOVA ICC estimator, statsmodels MixedLM, binomial tolerances for
rates, and exact identities that follow from its common-random-numbers design.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pleval.cli import app
from pleval.percentiles import to_percentile_points
from pleval.simulate import (
    SCALE_SD,
    Simulated,
    simulate_cluster_rct,
    simulate_matched,
    simulate_school_effects,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"

MATCHED_COLUMNS = [
    "student_id", "school_id", "treatment", "grade", "subject", "pretest", "posttest", "proficient",
    "female", "frl", "ell", "sped", "race", "school_poverty", "urbanicity",
]
RCT_COLUMNS = [
    "student_id", "school_id", "block", "treatment", "takeup", "grade", "subject", "pretest",
    "posttest", "proficient", "female", "frl", "ell", "sped", "race", "school_poverty",
]
EFFECTS_COLUMNS = [
    "school_id", "subject", "estimate", "se", "n_treated", "n_comparison", "school_poverty",
    "years_implementing", "enrollment",
]
INT_COLS = {"treatment", "takeup", "grade", "female", "frl", "ell", "sped", "n_treated",
            "n_comparison", "years_implementing", "enrollment"}
FLOAT_COLS = {"pretest", "posttest", "school_poverty", "estimate", "se"}


# ---------------------------------------------------------------------------------------
# helpers (independent computations)
# ---------------------------------------------------------------------------------------
def anova_icc(y: np.ndarray, groups: np.ndarray) -> float:
    """One-way ANOVA (method-of-moments) ICC with unequal group sizes (Searle, Casella &
    McCulloch 1992, Variance Components, ch. 3, with n0)."""
    codes = np.unique(groups, return_inverse=True)[1]
    k = np.bincount(codes).astype(float)
    J, N = len(k), k.sum()
    means = np.bincount(codes, weights=y) / k
    msb = np.sum(k * (means - y.mean()) ** 2) / (J - 1)
    msw = np.sum((y - means[codes]) ** 2) / (N - J)
    n0 = (N - np.sum(k**2) / N) / (J - 1)
    sb = (msb - msw) / n0
    return sb / (sb + msw)


def ols_coef(df: pd.DataFrame, y: str, x: list[str], fe: list[str]) -> pd.Series:
    """OLS of ``y`` on ``x`` with fixed effects for the cells of ``fe`` (by Frisch–Waugh–Lovell:
    demean within cells, then numpy lstsq)."""
    cell = df.groupby(fe, sort=False).ngroup().to_numpy()
    Z = df[[y, *x]].to_numpy(float)
    counts = np.bincount(cell)
    means = np.stack([np.bincount(cell, weights=Z[:, j]) for j in range(Z.shape[1])], axis=1) / counts[:, None]
    Z = Z - means[cell]
    beta = np.linalg.lstsq(Z[:, 1:], Z[:, 0], rcond=None)[0]
    return pd.Series(beta, index=x)


def demographics(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for r in ("black", "hispanic", "asian", "other"):
        out[r] = (out["race"] == r).astype(float)
    return out


DEMO = ["female", "frl", "ell", "sped", "black", "hispanic", "asian", "other"]


# ---------------------------------------------------------------------------------------
# fixtures: one large matched population, shared
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_matched() -> Simulated:
    return simulate_matched(n_schools=1000, n_pl_schools=250, students_per_grade=25, decimals=None, seed=11)


@pytest.fixture(scope="module")
def population() -> Simulated:
    """Nearly all schools untreated, no rounding: for population moments."""
    return simulate_matched(n_schools=1500, n_pl_schools=1, students_per_grade=20, grades=[4, 7],
                            effect=0.0, tau=0.0, decimals=None, seed=21)


# ---------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "func, kw",
    [
        (simulate_matched, dict(n_schools=30, n_pl_schools=5, students_per_grade=6, missing_posttest=0.1)),
        (simulate_cluster_rct, dict(n_schools=12, n_blocks=3, students_per_school=30, attrition=0.1, noncompliance=0.2)),
        (simulate_school_effects, dict(n_schools=20)),
    ],
)
def test_same_seed_same_data_other_seed_different(func, kw):
    a, b, c = func(seed=5, **kw), func(seed=5, **kw), func(seed=6, **kw)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth.as_dict() == b.truth.as_dict()
    assert not a.data.equals(c.data)
    num = "estimate" if "estimate" in a.data else "pretest"
    assert not np.allclose(a.data[num].to_numpy()[:10], c.data[num].to_numpy()[:10])
    assert a.truth.seed == 5 and c.truth.seed == 6


def test_seed_none_records_a_reproducible_seed():
    a = simulate_school_effects(n_schools=5)
    b = simulate_school_effects(n_schools=5, seed=a.truth.seed)
    pd.testing.assert_frame_equal(a.data, b.data)


# ---------------------------------------------------------------------------------------
# column contract
# ---------------------------------------------------------------------------------------
def _check_dtypes(df: pd.DataFrame, columns: list[str]) -> None:
    assert list(df.columns) == columns
    for col in columns:
        dt = df[col].dtype
        if col == "proficient":  # 0/1, missing with the posttest
            assert dt == "Int64" and (df[col].isna() == df["posttest"].isna()).all()
        elif col in INT_COLS:
            assert dt == np.int64, (col, dt)
        elif col in FLOAT_COLS:
            assert dt == np.float64, (col, dt)
        else:
            assert pd.api.types.is_string_dtype(dt) and not isinstance(dt, pd.CategoricalDtype), (col, dt)
            assert df[col].notna().all(), col


def _check_students(df: pd.DataFrame, subjects=("math", "reading")) -> None:
    assert set(df["grade"]) <= set(range(3, 9))
    assert set(df["subject"]) == set(subjects)
    assert set(df["race"]) <= {"white", "black", "hispanic", "asian", "other"}
    for col in ("treatment", "female", "frl", "ell", "sped"):
        assert set(df[col]) <= {0, 1}, col
    assert df["school_poverty"].between(0, 1).all()
    assert df["pretest"].notna().all()
    # one row per student x subject; demographics constant within student
    assert not df.duplicated(["student_id", "subject"]).any()
    assert (df.groupby("student_id")["subject"].size() == len(subjects)).all()
    per_student = df.groupby("student_id")[["school_id", "grade", "female", "frl", "race"]].nunique()
    assert (per_student == 1).all().all()
    per_school = df.groupby("school_id")[["treatment", "school_poverty"]].nunique()
    assert (per_school == 1).all().all()
    # RIT-like scale
    assert 190 < df["pretest"].mean() < 215 and 12 < df.groupby(["grade", "subject"])["pretest"].std().mean() < 18


def test_matched_columns_and_values():
    sim = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=10, missing_posttest=0.1, seed=1)
    df = sim.data
    _check_dtypes(df, MATCHED_COLUMNS)
    _check_students(df)
    assert set(df["urbanicity"]) <= {"urban", "suburban", "rural"}
    assert df.groupby("school_id")["urbanicity"].nunique().max() == 1
    assert df.groupby("school_id")["treatment"].first().sum() == 8
    assert df["posttest"].isna().any()
    assert np.all(df["pretest"] == df["pretest"].round())  # whole RIT points by default


def test_rct_columns_and_values():
    sim = simulate_cluster_rct(n_schools=20, n_blocks=5, students_per_school=40, noncompliance=0.2,
                               attrition=0.1, seed=1)
    df = sim.data
    _check_dtypes(df, RCT_COLUMNS)
    _check_students(df)
    assert set(df["takeup"]) <= {0, 1}
    assert (df["takeup"] <= df["treatment"]).all()  # one-sided noncompliance
    assert df.groupby("school_id")[["block", "takeup"]].nunique().max().max() == 1


def test_school_effects_columns_and_values():
    sim = simulate_school_effects(n_schools=30, seed=1)
    df = sim.data
    _check_dtypes(df, EFFECTS_COLUMNS)
    assert len(df) == 60 and not df.duplicated(["school_id", "subject"]).any()
    assert (df["se"] > 0).all() and (df["n_comparison"] > df["n_treated"]).all()
    assert set(df["years_implementing"]) <= {1, 2, 3, 4}


def test_subset_of_grades_and_subjects():
    sim = simulate_matched(n_schools=20, n_pl_schools=4, students_per_grade=5, grades=[4, 5],
                           subjects=["reading"], seed=2)
    assert set(sim.data["grade"]) == {4, 5} and set(sim.data["subject"]) == {"reading"}
    assert list(sim.truth.icc_pretest) == ["reading"]


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(icc=1.2), "icc"),
        (dict(icc=0.005), "icc"),
        (dict(pretest_slope=1.3), "pretest_slope"),
        (dict(pretest_slope=0.995), "pretest_slope"),
        (dict(n_pl_schools=40), "n_pl_schools"),
        (dict(grades=[2, 3]), "grades"),
        (dict(subjects=["science"]), "subjects"),
        (dict(tau=-0.1), "tau"),
        (dict(missing_posttest=1.0), "missing_posttest"),
        (dict(effect=float("nan")), "effect"),
    ],
)
def test_bad_matched_parameters_are_named(kw, word):
    base = dict(n_schools=40, n_pl_schools=5, students_per_grade=5, seed=1)
    with pytest.raises(ValueError, match=word):
        simulate_matched(**{**base, **kw})


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(n_blocks=30), "n_blocks"),
        (dict(n_blocks=10, share_treated=0.1), "share_treated"),
        (dict(noncompliance=1.0), "noncompliance"),
        (dict(attrition=0.01, differential_attrition=0.1), "differential_attrition"),
        (dict(schools_lost=40), "schools_lost"),
    ],
)
def test_bad_rct_parameters_are_named(kw, word):
    with pytest.raises(ValueError, match=word):
        simulate_cluster_rct(**{**dict(n_schools=40, students_per_school=20, seed=1), **kw})


# ---------------------------------------------------------------------------------------
# the truth is what the data contain
# ---------------------------------------------------------------------------------------
def test_effect_enters_posttests_exactly_as_the_truth_says():
    """Common random numbers: changing `effect` changes only PL posttests, by 15·Δeffect."""
    kw = dict(n_schools=40, n_pl_schools=10, students_per_grade=8, decimals=None, seed=3)
    a, b = simulate_matched(effect=0.08, **kw), simulate_matched(effect=0.0, **kw)
    diff = a.data["posttest"] - b.data["posttest"]
    pl = a.data["treatment"] == 1
    np.testing.assert_allclose(diff[pl], 0.08 * SCALE_SD, atol=1e-9)
    np.testing.assert_allclose(diff[~pl], 0.0, atol=1e-12)
    pd.testing.assert_series_equal(a.data["pretest"], b.data["pretest"])
    # each PL school's rows carry exactly its true effect
    c = simulate_matched(effect=0.08, tau=0.0, **kw)
    shift = (a.data["posttest"] - c.data["posttest"]).groupby(a.data["school_id"]).mean()
    te = a.truth.school_effects
    np.testing.assert_allclose(shift[te.index], (te - 0.08) * SCALE_SD, atol=1e-9)
    assert set(te.index) == set(a.data.loc[pl, "school_id"])
    np.testing.assert_allclose(a.truth.school_effects_raw, te * SCALE_SD)
    # realized ATT = student-weighted mean of the PL schools' true effects
    n = a.data.loc[pl].groupby("school_id").size()
    assert a.truth.att_sd == pytest.approx(np.average(te[n.index], weights=n), abs=1e-12)


def test_truth_record_values():
    t = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=4, seed=4).truth
    assert t.effect_sd == 0.08 and t.effect_raw == pytest.approx(1.2)
    assert t.percentile_points == pytest.approx(3.19, abs=0.005)
    assert t.tau_sd == 0.15 and t.tau_raw == pytest.approx(2.25) and t.icc == 0.15
    assert "within grade and subject" in t.sd_kind and t.sd == 15.0
    d = json.loads(t.to_json())
    assert d["params"]["n_schools"] == 30 and d["params"]["grades"] == [3, 4, 5, 6, 7, 8]
    assert len(d["schools"]) == 30
    with pytest.raises(Exception):
        t.effect_sd = 1.0  # frozen
    data, truth = simulate_school_effects(n_schools=3, seed=1)  # unpacks
    assert isinstance(data, pd.DataFrame) and truth.design == "school_effects"


def test_matched_recovers_the_truth_on_large_data(big_matched):
    """Regression of posttest on PL + pretest + demographics with grade × subject fixed
    effects recovers the matched estimand (ATT + school growth gap); naive comparisons and
    pretest-free regressions do not."""
    df = demographics(big_matched.data.dropna(subset=["posttest"]))
    t = big_matched.truth
    full = ols_coef(df, "posttest", ["treatment", "pretest", *DEMO], ["grade", "subject"])
    naive = ols_coef(df, "posttest", ["treatment"], ["grade", "subject"])
    est = full["treatment"] / SCALE_SD
    # student-level noise only: SE ≈ 0.66/√(N_pl) ≈ 0.003
    assert est == pytest.approx(t.details["matched_estimand_sd"], abs=0.015)
    # school-level draws: ATT − effect ~ N(0, 0.15/√250), gap ~ N(0, 0.007)
    assert est == pytest.approx(t.effect_sd, abs=0.045)
    assert naive["treatment"] / SCALE_SD < t.effect_sd - 0.25  # selection bias is large
    # posttest on pretest slope (SD units) is the structural ρ
    assert full["pretest"] == pytest.approx(0.75, abs=0.01)
    # PL schools are poorer and lower-achieving
    schools = big_matched.truth.schools
    pl = schools["implemented"] == 1
    assert schools.loc[pl, "school_poverty"].mean() > schools.loc[~pl, "school_poverty"].mean() + 0.1
    assert t.details["pl_minus_comparison_achievement_sd"] < -0.2


def test_tau_of_true_effects_and_value_added(big_matched):
    s = big_matched.truth.schools
    # SD of 1000 normal draws: SE ≈ 0.15/√2000 = 0.0034
    assert s["potential_effect_sd"].std() == pytest.approx(0.15, abs=0.015)
    assert s["potential_effect_sd"].mean() == pytest.approx(0.08, abs=0.02)
    assert s["value_added_math"].std() == pytest.approx(0.10, abs=0.012)
    # growth deviations are unrelated to selection
    assert abs(np.corrcoef(s["value_added_math"], s["implemented"])[0, 1]) < 0.1
    assert (s.loc[s["implemented"] == 1, "potential_effect_sd"] < 0).any()  # some negative


def test_population_variance_components(population):
    """Untreated posttest: SD 15 and ICC = icc within each grade × subject; pretest ICC as
    reported. 1500 schools: SE of an ICC estimate ≈ 0.007."""
    df = population.data[population.data["treatment"] == 0]
    for (g, s), cell in df.groupby(["grade", "subject"]):
        assert cell["posttest"].std() == pytest.approx(15.0, rel=0.03)
        assert cell["pretest"].std() == pytest.approx(15.0, rel=0.03)
        assert anova_icc(cell["posttest"].to_numpy(), cell["school_id"].to_numpy()) == pytest.approx(0.15, abs=0.03)
        assert anova_icc(cell["pretest"].to_numpy(), cell["school_id"].to_numpy()) == pytest.approx(
            population.truth.icc_pretest[s], abs=0.04
        )


def test_icc_by_mixedlm():
    """statsmodels MixedLM random-intercept variance share ≈ icc (and follows it)."""
    import statsmodels.formula.api as smf

    out = []
    for icc in (0.10, 0.25):
        d = simulate_matched(n_schools=300, n_pl_schools=1, students_per_grade=20, grades=[5], subjects=["math"],
                             effect=0.0, tau=0.0, icc=icc, decimals=None, seed=8).data
        fit = smf.mixedlm("posttest ~ 1", d, groups=d["school_id"]).fit(reml=True)
        out.append(float(fit.cov_re.iloc[0, 0] / (fit.cov_re.iloc[0, 0] + fit.scale)))
    assert out[0] == pytest.approx(0.10, abs=0.04)
    assert out[1] == pytest.approx(0.25, abs=0.05)


def test_missing_posttest_rate():
    sim = simulate_matched(n_schools=100, n_pl_schools=10, students_per_grade=20, missing_posttest=0.2, seed=9)
    miss = sim.data["posttest"].isna()
    # ≈ 12,000 students: binomial SE 0.0037
    assert miss.mean() == pytest.approx(0.2, abs=0.015)
    assert (miss.groupby(sim.data["student_id"]).nunique() == 1).all()  # both subjects together
    assert sim.truth.details["n_missing_posttest_rows"] == miss.sum()


# ---------------------------------------------------------------------------------------
# cluster RCT
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_schools, n_blocks, share", [(40, 10, 0.5), (43, 8, 0.5), (30, 5, 0.34)])
def test_rct_exact_treated_counts_per_block(n_schools, n_blocks, share):
    sim = simulate_cluster_rct(n_schools=n_schools, n_blocks=n_blocks, students_per_school=12,
                               share_treated=share, seed=n_schools)
    schools = sim.data.groupby("school_id")[["block", "treatment"]].first()
    per_block = schools.groupby("block").agg(n=("treatment", "size"), t=("treatment", "sum"))
    assert per_block["n"].sum() == n_schools and len(per_block) == n_blocks
    assert per_block["n"].max() - per_block["n"].min() <= 1
    np.testing.assert_array_equal(per_block["t"], np.floor(per_block["n"] * share + 0.5))
    assert sim.truth.details["treated_per_block"] == per_block["t"].tolist()


def test_rct_assignment_is_random_within_blocks():
    """Over 200 seeds each school is treated about half the time (binomial SE 0.035)
    and assignment is unrelated to school poverty."""
    treated, corr = [], []
    for seed in range(200):
        sim = simulate_cluster_rct(n_schools=12, n_blocks=3, students_per_school=6, grades=[5],
                                   subjects=["math"], seed=seed)
        s = sim.truth.schools
        treated.append(s["assigned"].to_numpy())
        corr.append(np.corrcoef(s["assigned"], s["school_poverty"])[0, 1])
    freq = np.mean(treated, axis=0)
    assert np.all(np.abs(freq - 0.5) < 0.13)
    assert abs(np.mean(corr)) < 0.05


def test_rct_noncompliance_and_effect():
    kw = dict(n_schools=40, n_blocks=10, students_per_school=30, noncompliance=0.25, decimals=None, seed=12)
    a, b = simulate_cluster_rct(**kw), simulate_cluster_rct(**{**kw, "effect": 0.0, "tau": 0.0})
    s = a.truth.schools
    assigned = s["assigned"] == 1
    assert (s.loc[assigned, "implemented"] == 0).sum() == 5  # round(0.25 · 20)
    assert (s.loc[~assigned, "implemented"] == 0).all()
    assert a.truth.details["noncompliance_rate"] == 0.25
    # the effect reaches implementing schools only, by exactly their true effect
    shift = (a.data["posttest"] - b.data["posttest"]).groupby(a.data["school_id"]).mean() / SCALE_SD
    np.testing.assert_allclose(shift[s.index], s["effect_sd"], atol=1e-9)
    assert (shift[s.index[s["implemented"] == 0]] == 0).all()
    assert a.truth.details["itt_sd"] == pytest.approx(0.10 * 15 / 20)


def test_rct_attrition_rates():
    sim = simulate_cluster_rct(n_schools=200, n_blocks=20, students_per_school=100, grades=[5],
                               attrition=0.15, differential_attrition=0.06, attrition_pretest_slope=0.8,
                               schools_lost=4, seed=13)
    df = sim.data
    lost = sim.truth.schools.index[sim.truth.schools["lost"] == 1]
    assert len(lost) == 4
    by_school = df["posttest"].isna().groupby(df["school_id"]).mean()
    assert (by_school[lost] == 1).all() and (by_school.drop(lost) < 1).all()
    kept = df[~df["school_id"].isin(lost)]
    stu = kept.groupby("student_id").agg(t=("treatment", "first"), miss=("posttest", lambda v: v.isna().any()),
                                         pre=("pretest", "mean"))
    rates = stu.groupby("t")["miss"].mean()
    # ≈ 9,800 students per arm: binomial SE ≈ 0.004 (plus pretest-standardization error)
    assert rates[1] == pytest.approx(0.18, abs=0.02)
    assert rates[0] == pytest.approx(0.12, abs=0.02)
    assert rates[1] - rates[0] == pytest.approx(0.06, abs=0.025)
    # with a positive slope, attriters had lower pretests
    assert stu.loc[stu["miss"], "pre"].mean() < stu.loc[~stu["miss"], "pre"].mean() - 5
    d = sim.truth.details
    assert d["attrition_overall"] == pytest.approx(df["posttest"].isna().mean())


# ---------------------------------------------------------------------------------------
# school effects table
# ---------------------------------------------------------------------------------------
def test_school_effects_se_formula_and_truth():
    sim = simulate_school_effects(n_schools=3000, tau=0.15, years_slope=0.06, decimals=None, seed=14)
    df, t = sim.data, sim.truth
    np.testing.assert_allclose(df["se"], math.sqrt(1 - 0.75**2) * np.sqrt(1 / df["n_treated"] + 1 / df["n_comparison"]))
    m = df[df["subject"] == "math"]
    X = np.column_stack([np.ones(len(m)), m["years_implementing"] - 2.4, m["school_poverty"], m["enrollment"] / 100])
    beta, *_ = np.linalg.lstsq(X, m["estimate"], rcond=None)
    resid = m["estimate"] - X @ beta
    # 3000 schools, residual SD ≈ 0.185: SE(intercept) ≈ 0.0035, SE(slope) ≈ 0.0035
    assert beta[0] + beta[2] * m["school_poverty"].mean() + beta[3] * m["enrollment"].mean() / 100 == pytest.approx(0.08, abs=0.015)
    assert beta[1] == pytest.approx(0.06, abs=0.015)
    assert abs(beta[2]) < 0.05 and abs(beta[3]) < 0.01  # null moderators
    tau2 = resid.var() - np.mean(m["se"] ** 2)  # method of moments
    assert math.sqrt(tau2) == pytest.approx(t.details["tau_estimates_given_years_sd"], abs=0.012)
    assert t.school_effects.std() == pytest.approx(t.details["tau_true_effects_sd"], abs=0.01)


# ---------------------------------------------------------------------------------------
# CLI and sample_data
# ---------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_writes_csv_parquet_and_truth(tmp_path):
    out, tj = tmp_path / "m.csv", tmp_path / "sub" / "truth.json"
    res = runner.invoke(app, ["simulate", "matched", "--seed", "3", "--n-schools", "20", "--n-pl-schools", "4",
                              "--students-per-grade", "5", "--effect", "0.2", "--out", str(out), "--truth", str(tj)])
    assert res.exit_code == 0, res.output
    assert "0.2000 SD" in res.output and "percentile points" in res.output
    api = simulate_matched(n_schools=20, n_pl_schools=4, students_per_grade=5, effect=0.2, seed=3)
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(pd.io.common.StringIO(api.data.to_csv(index=False))))
    assert json.loads(tj.read_text()) == json.loads(api.truth.to_json())
    pq = tmp_path / "r.parquet"
    res = runner.invoke(app, ["simulate", "rct", "--seed", "3", "--n-schools", "8", "--n-blocks", "2",
                              "--students-per-school", "12", "--grades", "4-5", "--out", str(pq)])
    assert res.exit_code == 0, res.output
    back = pd.read_parquet(pq)
    assert list(back.columns) == RCT_COLUMNS and set(back["grade"]) <= {4, 5}


@pytest.mark.parametrize(
    "args, message",
    [
        (["rct", "--n-pl-schools", "3"], "--n-pl-schools does not apply"),
        (["school-effects", "--attrition", "0.1"], "--attrition does not apply"),
        (["matched", "--icc", "1.5"], "icc"),
        (["matched", "--grades", "three"], "--grades"),
    ],
)
def test_cli_errors(tmp_path, args, message):
    res = runner.invoke(app, ["simulate", *args, "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2
    assert message in res.output
    bad = runner.invoke(app, ["simulate", "matched", "--out", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and ".csv" in bad.output


def _documented_commands() -> list[list[str]]:
    text = (SAMPLE / "README.md").read_text()
    cmds = re.findall(r"^pleval simulate [^\n]+$", text, flags=re.M)
    return [shlex.split(c)[1:] for c in cmds]


def test_sample_data_is_what_the_documented_commands_regenerate(tmp_path):
    cmds = _documented_commands()
    outs = {Path(c[c.index("--out") + 1]).name for c in cmds}
    assert outs == {"pl_matched_students.csv", "pl_cluster_rct.csv", "school_effects.csv", "pl_panel_students.csv"}
    for args in cmds:
        for flag in ("--out", "--truth"):
            i = args.index(flag)
            committed = ROOT / args[i + 1]
            args[i + 1] = str(tmp_path / committed.name)
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        for flag in ("--out", "--truth"):
            new = Path(args[args.index(flag) + 1])
            committed = SAMPLE / new.name
            assert committed.read_bytes() == new.read_bytes(), f"{committed.name} differs from its documented command"
    assert (SAMPLE / "pl_matched_students.csv").stat().st_size < 8e6


def test_sample_readme_states_the_true_values():
    text = (SAMPLE / "README.md").read_text()
    for name in ("pl_matched_students", "pl_cluster_rct", "school_effects"):
        truth = json.loads((SAMPLE / f"{name}_truth.json").read_text())
        assert f"{truth['effect_sd']:.2f}" in text
        assert f"{truth['att_sd']:.4f}" in text, name
    assert f"{to_percentile_points(0.08):.2f}" in text
    for col in MATCHED_COLUMNS + RCT_COLUMNS + EFFECTS_COLUMNS:
        assert f"`{col}`" in text, col
