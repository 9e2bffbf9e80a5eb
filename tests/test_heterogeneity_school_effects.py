"""Per-school effects (pleval.heterogeneity.school_effects): every school's estimate against
one statsmodels WLS fit per school done the slow way; effect sizes, percentile points,
meta-analysis and shrinkage of the table; matched-set input; bad input; invariances;
coverage and Q-test size by simulation."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.heterogeneity import (cluster_robust, meta_analysis, meta_regression, school_effects,
                                 school_effects_from_estimates)
from pleval.percentiles import to_percentile_points

from .conftest import sim_reps


def make_sites(n_schools=12, n_per=80, effects=None, seed=0, subjects=("math", "reading"), tau=0.0, mu=0.2):
    """Multi-site data: students randomized within schools; y = 200 + 0.7(pre − 200) + 15θ_sT + noise.
    Returns the frame and the true school effects (SD units of the 15-point noise-free scale)."""
    rng = np.random.default_rng(seed)
    theta = mu + tau * rng.standard_normal(n_schools) if effects is None else np.asarray(effects)
    rows = []
    for subj in subjects:  # a loop over subjects is fine in a test generator
        school = np.repeat(np.arange(n_schools), n_per)
        n = school.size
        t = rng.integers(0, 2, n)
        pre = rng.normal(200, 15, n)
        race = rng.choice(["white", "black", "hispanic"], n, p=[0.5, 0.3, 0.2])
        y = 200 + 0.7 * (pre - 200) + 15 * theta[school] * t + rng.normal(0, 10.7, n)
        rows.append(
            pd.DataFrame(
                {
                    "school_id": [f"S{s:03d}" for s in school],
                    "subject": subj,
                    "treatment": t,
                    "posttest": y,
                    "pretest": pre,
                    "race": race,
                    "student_id": np.arange(n),
                    "poverty": (school % 5) / 5.0,
                }
            )
        )
    return pd.concat(rows, ignore_index=True), theta


def dense_hc2_df(X: np.ndarray, w: np.ndarray, j) -> float:
    """Bell & McCaffrey's Satterthwaite df of coefficient j's (or contrast j's, a vector) HC2
    variance, from the n × n matrices: (tr AM)² / tr(AMAM), M = I − H of the √w-transformed
    design, A = diag(c_i² / (1 − h_ii)), c = (X̃'X̃)⁻¹X̃' times e_j (or the contrast); with A
    diagonal, tr(AMAM) = a'(M∘M)a."""
    Xt = X * np.sqrt(w)[:, None]
    B = np.linalg.pinv(Xt.T @ Xt)
    M = np.eye(len(X)) - Xt @ B @ Xt.T
    c = np.eye(X.shape[1])[j] if np.ndim(j) == 0 else np.asarray(j, dtype=float)
    a = (Xt @ B @ c) ** 2 / np.diag(M)
    return float((a @ np.diag(M)) ** 2 / (a @ (M * M) @ a))


def slow_fit(sub, covariates, vcov, weight=None, cluster=None):
    """One statsmodels WLS per school (columns constant within the school dropped)."""
    X = pd.get_dummies(sub[["treatment", *covariates]], columns=[c for c in covariates if sub[c].dtype == object or
                                                                  pd.api.types.is_string_dtype(sub[c])],
                       drop_first=True, dtype=float)
    X = X.loc[:, X.std() > 0]
    X = sm.add_constant(X, has_constant="add")
    w = np.ones(len(sub)) if weight is None else sub[weight].to_numpy()
    mod = sm.WLS(sub["posttest"].to_numpy(), X.to_numpy(dtype=float), weights=w)
    if vcov == "CR1":
        groups = pd.factorize(sub[cluster])[0]
        r = mod.fit(cov_type="cluster", cov_kwds={"groups": groups})
        df = len(np.unique(groups)) - 1
    else:
        r = mod.fit() if vcov == "classical" else mod.fit(cov_type=vcov)
        df = r.df_resid
    j = list(X.columns).index("treatment")
    if vcov == "HC2":  # Bell & McCaffrey's df (n − p before 2026-12-04)
        df = dense_hc2_df(X.to_numpy(dtype=float), w, j)
    return r.params[j], r.bse[j], df


@pytest.mark.parametrize("vcov", ["HC2", "HC1", "classical"])
def test_matches_one_statsmodels_fit_per_school(vcov):
    d, _ = make_sites(n_schools=8, n_per=60, seed=1)
    # one school has no Hispanic students in math: that dummy is dropped for that school only
    d = d[~((d.school_id == "S003") & (d.subject == "math") & (d.race == "hispanic"))]
    r = school_effects(d, stratum="school_id", covariates=["pretest", "race"], by="subject", vcov=vcov)
    t = r.table.set_index(["subject", "school"])
    assert len(t) == 16
    for (subj, sch), sub in d.groupby(["subject", "school_id"]):  # the slow way, in the test only
        est, se, df = slow_fit(sub, ["pretest", "race"], vcov)
        row = t.loc[(subj, sch)]
        assert row.estimate == pytest.approx(est, rel=1e-9, abs=1e-10)
        assert row.se == pytest.approx(se, rel=1e-8)
        assert row.df == pytest.approx(df, rel=1e-9)
        assert row.pvalue == pytest.approx(2 * stats.t.sf(abs(est / se), df), rel=1e-7)
        crit = stats.t.ppf(0.975, df)
        assert row.ci_low == pytest.approx(est - crit * se, rel=1e-9)


def test_weights_and_cluster_robust_match_statsmodels():
    """Matched-set style input: comparison students reused (duplicated rows, weights that sum
    to the number of treated per school), CR1 clustered on the student id."""
    d, _ = make_sites(n_schools=6, n_per=90, seed=2, subjects=("math",))
    rng = np.random.default_rng(3)
    reuse = d[d.treatment == 0].sample(frac=0.4, random_state=4)
    d = pd.concat([d, reuse], ignore_index=True)
    d["w"] = np.where(d.treatment == 1, 1.0, rng.uniform(0.3, 1.5, len(d)))
    r = school_effects(d, stratum="school_id", covariates=["pretest"], weight="w", cluster="student_id",
                       unit_id="student_id")
    assert r.options["vcov"] == "CR1"
    t = r.table.set_index("school")
    for sch, sub in d.groupby("school_id"):
        est, se, df = slow_fit(sub, ["pretest"], "CR1", weight="w", cluster="student_id")
        assert t.loc[sch, "estimate"] == pytest.approx(est, rel=1e-9)
        assert t.loc[sch, "se"] == pytest.approx(se, rel=1e-8)
        assert t.loc[sch, "df"] == df
        assert t.loc[sch, "n_comparison"] == sub.loc[sub.treatment == 0, "student_id"].nunique()
        assert t.loc[sch, "n_treated"] == (sub.treatment == 1).sum()


@pytest.mark.parametrize("vcov", ["CR1", "HC2"])
def test_a_school_with_one_treated_student_is_not_estimable(vcov):
    """One treated student in a school: the treatment fits that student exactly (leverage 1), so
    a robust SE would omit the student's own deviation (statsmodels' cluster SE is then too
    small: here about a third of the model-based one). The school keeps its row, with no
    estimate and a note; the other schools' estimates are unchanged."""
    d, _ = make_sites(n_schools=4, n_per=60, seed=6, subjects=("math",))
    one = d[(d.school_id == "S001") & (d.treatment == 1)].index[1:]
    d1 = d.drop(one)
    kw = dict(stratum="school_id", covariates=["pretest"], vcov=vcov,
              **({"cluster": "student_id", "unit_id": "student_id"} if vcov == "CR1" else {}))
    with pytest.warns(PlevalWarning, match="1 of 4 school"):
        t = school_effects(d1, **kw).table.set_index("school")
    row = t.loc["S001"]
    assert np.isnan(row.estimate) and np.isnan(row.se) and row.n_treated == 1
    assert row.note.startswith("not estimable: one treated ")
    full = school_effects(d, **kw).table.set_index("school")
    others = ["S000", "S002", "S003"]
    np.testing.assert_allclose(t.loc[others, "estimate"], full.loc[others, "estimate"], rtol=1e-12)
    sub = d1[d1.school_id == "S001"]
    _, se_cl, _ = slow_fit(sub, ["pretest"], "CR1", cluster="student_id")
    _, se_ols, _ = slow_fit(sub, ["pretest"], "classical")
    assert se_cl < 0.5 * se_ols  # what the table would have shown


def test_effect_size_percentiles_meta_and_shrinkage():
    d, _ = make_sites(n_schools=10, n_per=70, seed=5, subjects=("math",))
    r = school_effects(d, stratum="school_id", covariates=["pretest"])
    t = r.table
    # pooled within-group SD of the unadjusted outcome, computed independently
    yt, yc = d.posttest[d.treatment == 1], d.posttest[d.treatment == 0]
    sd = math.sqrt(((len(yt) - 1) * yt.var() + (len(yc) - 1) * yc.var()) / (len(d) - 2))
    assert r.sd["all"][0] == pytest.approx(sd, rel=1e-12)
    N = t.n_treated + t.n_comparison
    omega = 1 - 3 / (4 * N - 9)
    np.testing.assert_allclose(t.effect_size, t.estimate * omega / sd, rtol=1e-12)
    np.testing.assert_allclose(t.es_se, t.se * omega / sd, rtol=1e-12)
    np.testing.assert_allclose(t.percentile_points, 100 * stats.norm.cdf(t.effect_size) - 50, rtol=1e-10)
    np.testing.assert_allclose(t.pp_ci_high, to_percentile_points(t.es_ci_high.to_numpy()), rtol=1e-10)
    m = meta_analysis(t.effect_size, t.es_se, "REML")
    assert r.meta["all"].estimate == pytest.approx(m.estimate) and r.meta["all"].tau2 == pytest.approx(m.tau2)
    sh = r.shrinkage["all"]
    np.testing.assert_allclose(t.shrunk_es, sh.shrunk)
    z = stats.norm.ppf(0.975)  # without placebo schools the shrunken interval is the estimate ± z × SD
    np.testing.assert_allclose(t.shrunk_es_ci_low, sh.shrunk - z * sh.shrunk_sd, rtol=1e-12)
    np.testing.assert_allclose(t.shrunk_es_ci_high, sh.shrunk + z * sh.shrunk_sd, rtol=1e-12)
    np.testing.assert_allclose(t.shrunk_pp, 100 * stats.norm.cdf(sh.shrunk) - 50, rtol=1e-10)
    assert np.all(np.abs(t.shrunk_es - m.estimate) <= np.abs(t.effect_size - m.estimate) + 1e-12)
    # BH-adjusted p within the group
    from statsmodels.stats.multitest import multipletests

    np.testing.assert_allclose(t.p_adjusted, multipletests(t.pvalue, method="fdr_bh")[1])
    assert "percentile" in r.footnote and "rank" in r.footnote
    assert "School effects" in r.summary()
    assert set(r.meta_frame().columns) >= {"estimate", "tau2", "i2", "pp_estimate"}
    assert r.counts_frame().loc[0, "k"] == 10
    # norm SD given: effect sizes scale by it; no Hedges correction on request
    r2 = school_effects(d, stratum="school_id", covariates=["pretest"], sd=15.0, hedges_correction=False)
    np.testing.assert_allclose(r2.table.effect_size, t.estimate / 15.0)


def test_matched_set_defaults_and_forest_frame():
    """``_pl_school``/``_weight`` are picked up by default (matched-set long format)."""
    d, _ = make_sites(n_schools=5, n_per=60, seed=6, subjects=("math",))
    d["_pl_school"] = d.school_id
    d["_weight"] = np.where(d.treatment == 1, 1.0, 0.5)
    d["_set"] = np.arange(len(d))
    r = school_effects(d, covariates=["pretest"])
    assert r.options["stratum"] == "_pl_school" and r.options["weight"] == "_weight"
    explicit = school_effects(d, stratum="school_id", weight="_weight", covariates=["pretest"])
    np.testing.assert_allclose(r.table.estimate, explicit.table.estimate)
    # weighting designs: comparisons have no PL school -> a clear error
    d2 = d.copy()
    d2.loc[d2.treatment == 0, "_pl_school"] = np.nan
    with pytest.raises(DesignError, match="per-school"):
        school_effects(d2, covariates=["pretest"])


def test_bad_input_and_dropped_rows():
    d, _ = make_sites(n_schools=4, n_per=40, seed=7, subjects=("math",))
    with pytest.raises(DataError, match="'nope'"):
        school_effects(d, stratum="school_id", covariates=["nope"])
    bad = d.copy()
    bad.loc[:4, "treatment"] = 2
    with pytest.raises(DataError, match="treatment.*5 row"):
        school_effects(bad, stratum="school_id")
    bad = d.copy()
    bad["posttest"] = bad["posttest"].astype(object)
    bad.loc[3, "posttest"] = "absent"
    with pytest.raises(DataError, match="posttest"):
        school_effects(bad, stratum="school_id")
    with pytest.raises(DataError, match="cluster"):
        school_effects(d, stratum="school_id", vcov="CR1")
    with pytest.raises(DataError, match="stratum"):
        school_effects(d)
    miss = d.copy()
    miss.loc[:9, "posttest"] = np.nan
    miss.loc[10:12, "pretest"] = np.nan
    with pytest.warns(PlevalWarning, match="10 row"):
        r = school_effects(miss, stratum="school_id", covariates=["pretest"])
    dr = r.dropped.set_index("reason")
    assert dr.loc["missing outcome", "n_rows"] == 10 and dr.loc["missing covariate", "n_rows"] == 3
    assert r.options["n_rows"] == len(d) - 13
    # a school without comparison students: NaN with a note, others unaffected
    nc = d[~((d.school_id == "S001") & (d.treatment == 0))]
    with pytest.warns(PlevalWarning, match="1 of 4"):
        r = school_effects(nc, stratum="school_id")
    row = r.table.set_index("school").loc["S001"]
    assert np.isnan(row.estimate) and row.note == "no comparison students" and row.n_comparison == 0
    assert r.meta["all"].k == 3


def test_invariances():
    d, _ = make_sites(n_schools=6, n_per=50, seed=8, subjects=("math",))
    base = school_effects(d, stratum="school_id", covariates=["pretest", "race"]).table.set_index("school")
    shuffled = d.sample(frac=1.0, random_state=1)
    t = school_effects(shuffled, stratum="school_id", covariates=["pretest", "race"]).table.set_index("school")
    pd.testing.assert_frame_equal(base.sort_index(), t.sort_index(), check_exact=False, rtol=1e-9)
    flip = d.assign(treatment=1 - d.treatment)
    f = school_effects(flip, stratum="school_id", covariates=["pretest", "race"]).table.set_index("school")
    np.testing.assert_allclose(f.estimate, -base.estimate, rtol=1e-9)
    np.testing.assert_allclose(f.effect_size, -base.effect_size, rtol=1e-9)
    scaled = d.assign(posttest=3 * d.posttest + 7)
    s = school_effects(scaled, stratum="school_id", covariates=["pretest", "race"]).table.set_index("school")
    np.testing.assert_allclose(s.effect_size, base.effect_size, rtol=1e-9)
    np.testing.assert_allclose(s.estimate, 3 * base.estimate, rtol=1e-9)


@pytest.mark.parametrize("ids", ["text", "numbers"])
def test_table_rows_in_sorted_order_whatever_the_row_order(ids):
    """The school table comes in sorted order of (by, school): the same rows in the same order
    (values to rounding) from the data in any row order; numeric ids sort as numbers (10 after 9)."""
    d, _ = make_sites(n_schools=12, n_per=40, seed=9)
    if ids == "numbers":
        d["school_id"] = d["school_id"].str[1:].astype(int) * 3  # 0, 3, ..., 33: 9 before 12
    runs = [school_effects(x, stratum="school_id", by="subject", covariates=["pretest"]).table
            for x in (d, d.sample(frac=1.0, random_state=2), d.iloc[::-1])]
    want = sorted(zip(runs[0]["subject"], runs[0]["school"]), key=lambda k: (k[0], k[1]))
    for t in runs:
        assert list(zip(t["subject"], t["school"])) == want
        np.testing.assert_allclose(t["estimate"], runs[0]["estimate"], rtol=1e-9)


def test_moderators_and_meta_regression():
    effects = 0.1 + 0.4 * (np.arange(20) % 5) / 5.0  # effect rises with "poverty"
    d, _ = make_sites(n_schools=20, n_per=150, effects=effects, seed=9, subjects=("math",))
    r = school_effects(d, stratum="school_id", covariates=["pretest"], moderators=["poverty"])
    np.testing.assert_allclose(r.table.poverty, (np.arange(20) % 5) / 5.0)
    mr = r.meta_regression(["poverty"])["all"]
    c = mr.coefficients.loc["poverty"]
    assert c.ci_low < 0.4 * 15 / r.sd["all"][0] < c.ci_high and c.pvalue < 0.05
    with pytest.raises(DataError, match="moderator"):
        r.meta_regression(["enrollment"])


def test_schools_without_a_moderator_value_are_left_out_of_the_meta_regression_with_a_warning():
    """A missing moderator leaves that school out of its group's meta-regression, counted and
    named (metafor omits such studies too); the fit is that of the other schools; text among a
    moderator's values is an error naming the column, rows and schools (it was read as missing)."""
    rng = np.random.default_rng(4)
    k = 12
    df = pd.DataFrame({"school_id": [f"P{i}" for i in range(k)], "estimate": rng.normal(0.1, 0.15, k),
                       "se": rng.uniform(0.04, 0.1, k), "years": rng.integers(1, 5, k).astype(float)})
    df.loc[[2, 7], "years"] = np.nan
    r = school_effects_from_estimates(df, moderators=["years"])
    with pytest.warns(PlevalWarning, match="all: 2 school\\(s\\) with a moderator missing \\(years\\): 'P2', 'P7' left "
                                           "out of the meta-regression \\(k = 10\\)"):
        got = r.meta_regression(["years"])["all"]
    rest = df.dropna()
    want = meta_regression(rest.estimate, rest.se, rest[["years"]], knapp_hartung=True)
    assert got.k == 10 and list(got.coefficients.index) == list(want.coefficients.index)
    np.testing.assert_allclose(got.coefficients.to_numpy(float), want.coefficients.to_numpy(float), rtol=1e-10)
    # what follows the fit names the schools it used: influence, BLUPs, cluster-robust tests
    assert got.labels == tuple(rest.school_id)
    inf = r.influence({"all": got})
    assert list(inf.loc[inf.analysis == "meta-regression", "school"]) == list(rest.school_id)
    df["district"] = np.arange(k) % 4
    r = school_effects_from_estimates(df, moderators=["years"], cluster="district")
    with pytest.warns(PlevalWarning, match="left out"):
        regs = r.meta_regression(["years"])
    rob = r.cluster_robust("district", regressions=regs)[("all", "meta-regression")]
    assert rob.k == 10
    np.testing.assert_allclose(rob.vcov, cluster_robust(want, rest.index.to_numpy() % 4, vcov="CR2").vcov, rtol=1e-8)
    with pytest.raises(DataError, match="column 'years' \\(moderator\\) must be numeric: 1 row\\(s\\) hold text such "
                                        "as 'four' \\(index 3; school\\(s\\) 'P3'\\)"):
        school_effects_from_estimates(df.assign(years=df["years"].astype(object).where(df.index != 3, "four")),
                                      moderators=["years"])


def test_an_infinite_moderator_is_an_error_naming_its_rows_and_schools():
    """An infinite moderator value stops school_effects (students) and school_effects_from_estimates
    (a table), naming its rows and schools, as an infinite estimate does; the meta-regression says
    "infinite". Before 2026-12-05 school_effects left it out of the school's mean without a word
    (a school whose rows were all infinite: "a moderator missing"), the table called it "missing
    or not numeric"; a missing value is still left out."""
    d, _ = make_sites(n_schools=6, n_per=40, seed=3, subjects=("math",))
    want = school_effects(d, stratum="school_id", moderators=["poverty"]).table
    treated = d.loc[[43, 47], "treatment"].eq(1).all() and d.loc[[41, 45], "treatment"].eq(0).all()
    assert treated  # school S001's rows 40-79
    bad = d.assign(poverty=d.poverty.where(~d.index.isin([43, 47]), np.inf))
    with pytest.raises(DataError, match=re.escape("column 'poverty' (moderator): 2 row(s) are infinite (index 43, 47; "
                                                  "school(s) 'S001'); correct or remove them")):
        school_effects(bad, stratum="school_id", moderators=["poverty"])
    # a school's value is the mean over its treated rows: control rows' values are never read (earlier on
    # 2026-12-05 infinite ones stopped the run)
    got = school_effects(d.assign(poverty=d.poverty.where(~d.index.isin([41, 45]), np.inf)), stratum="school_id",
                         moderators=["poverty"]).table
    pd.testing.assert_frame_equal(got, want)
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"school_id": [f"P{i}" for i in range(8)], "estimate": rng.normal(0.1, 0.15, 8),
                       "se": rng.uniform(0.04, 0.1, 8), "years": np.r_[1.0, 2, np.inf, 4, 1, 2, 3, 4]})
    with pytest.raises(DataError, match=re.escape("column 'years' (moderator): 1 row(s) are infinite (index 2; "
                                                  "school(s) 'P2')")):
        school_effects_from_estimates(df, moderators=["years"])
    with pytest.raises(DataError, match=re.escape("moderator 'years': 1 value(s) are infinite")):
        meta_regression(df.estimate, df.se, df[["years"]])


def test_hunter_schmidt_meta_regression_of_independent_school_estimates():
    """The per-school table's covariance is diagonal (independent estimates), so HS is defined:
    τ² = max(0, (Q_E − k)/Σw) and the Knapp–Hartung WLS fit (statsmodels' WLS scale is the KH
    factor). Before 2026-12-04 the diagonal matrix went in as vcov= and HS was refused; with
    covariance between the estimates it still is."""
    import dataclasses

    rng = np.random.default_rng(12)
    k = 15
    df = pd.DataFrame({"school_id": [f"P{i}" for i in range(k)], "estimate": rng.normal(0.1, 0.2, k),
                       "se": rng.uniform(0.04, 0.1, k), "years": rng.integers(1, 6, k).astype(float)})
    r = school_effects_from_estimates(df, method="HS", moderators=["years"])
    got = r.meta_regression(["years"], method="HS")["all"]
    y, v = r.table.effect_size.to_numpy(float), r.table.es_se.to_numpy(float) ** 2
    X = sm.add_constant(r.table.years.to_numpy(float))
    fe = sm.WLS(y, X, weights=1 / v).fit()
    tau2 = max(0.0, (np.sum(fe.resid**2 / v) - k) / np.sum(1 / v))
    want = sm.WLS(y, X, weights=1 / (v + tau2)).fit()
    assert tau2 > 0 and got.tau2 == pytest.approx(tau2, rel=1e-10)
    np.testing.assert_allclose(got.coefficients["estimate"], want.params, rtol=1e-10)
    np.testing.assert_allclose(got.coefficients["se"], want.bse, rtol=1e-10)
    V = r.vcov["all"].to_numpy() + 0.3 * np.sqrt(np.outer(v, v)) * (1 - np.eye(k))  # correlated estimates
    corr = dataclasses.replace(r, vcov={"all": pd.DataFrame(V, index=r.vcov["all"].index, columns=r.vcov["all"].columns)})
    with pytest.raises(DataError, match="method 'HS' needs independent estimates"):
        corr.meta_regression(["years"], method="HS")


def test_from_estimates_table():
    rng = np.random.default_rng(1)
    k = 30
    df = pd.DataFrame(
        {
            "school_id": np.tile([f"P{i}" for i in range(k)], 2),
            "subject": np.repeat(["math", "reading"], k),
            "estimate": rng.normal(0.1, 0.15, 2 * k),
            "se": rng.uniform(0.04, 0.1, 2 * k),
            "n_treated": 100,
            "n_comparison": 300,
            "years": np.tile(rng.integers(1, 5, k), 2),
        }
    )
    df.loc[3, "estimate"] = np.nan
    with pytest.warns(PlevalWarning, match="1 school"):
        r = school_effects_from_estimates(df, moderators=["years"])
    assert set(r.meta) == {"math", "reading"} and r.meta["math"].k == k - 1
    m = meta_analysis(df.estimate[k : 2 * k], df.se[k : 2 * k])
    assert r.meta["reading"].estimate == pytest.approx(m.estimate)
    t = r.table[r.table.subject == "reading"]
    np.testing.assert_allclose(t.pvalue, 2 * stats.norm.sf(np.abs(t.effect_size / t.es_se)))
    assert t.estimate.isna().all()  # no raw-unit estimates from an effect-size table
    assert "reading" in r.meta_regression(["years"])
    with pytest.raises(DataError, match="'est'"):
        school_effects_from_estimates(df, estimate="est")
    dup = pd.concat([df, df.iloc[:1]])
    with pytest.raises(DataError, match="more than once"):
        school_effects_from_estimates(dup.dropna())
    gap = pd.concat([df.dropna(), df.dropna().iloc[:1].assign(estimate=np.nan)])  # a second row without an estimate
    with pytest.warns(PlevalWarning, match="missing estimate or SE were left out"):
        assert school_effects_from_estimates(gap).meta["math"].k == school_effects_from_estimates(df.dropna()).meta["math"].k
    neg = df.dropna().copy()
    neg.loc[neg.index[0], "se"] = -1
    with pytest.raises(DataError, match="'se'"):
        school_effects_from_estimates(neg)


# ---------------------------------------------------------------- simulations


@pytest.mark.slow
def test_school_ci_coverage_and_q_size_when_tau_is_zero():
    """Every school has the same true effect (τ = 0): per-school 95% CIs cover it ~95% of the
    time, and the Q test of heterogeneity rejects ~5%."""
    reps = sim_reps(400, minimum=100)
    k = 30
    cover = total = rejections = 0
    for rep in range(reps):
        d, theta = make_sites(n_schools=k, n_per=60, seed=1000 + rep, subjects=("math",), tau=0.0, mu=0.2)
        r = school_effects(d, stratum="school_id", covariates=["pretest"], sd=15.0, hedges_correction=False)
        t = r.table
        cover += int(((t.es_ci_low <= theta) & (theta <= t.es_ci_high)).sum())
        total += k
        rejections += r.meta["all"].q_pvalue < 0.05
    rate = cover / total
    assert abs(rate - 0.95) < 3.5 * math.sqrt(0.95 * 0.05 / total) + 0.005, rate
    q = rejections / reps
    assert abs(q - 0.05) < 3.5 * math.sqrt(0.05 * 0.95 / reps), q


@pytest.mark.slow
def test_shrunken_school_effects_beat_raw_with_known_effects():
    reps = sim_reps(80, minimum=20)
    better = 0
    for rep in range(reps):
        d, theta = make_sites(n_schools=40, n_per=40, seed=5000 + rep, subjects=("math",), tau=0.15, mu=0.1)
        t = school_effects(d, stratum="school_id", covariates=["pretest"], sd=15.0, hedges_correction=False).table
        better += np.mean((t.shrunk_es - theta) ** 2) < np.mean((t.effect_size - theta) ** 2)
    assert better >= 0.85 * reps


def test_per_school_robustness_values():
    """``robustness_q``: each school's partial R², RV_q and RV_{q,α} (Cinelli & Hazlett 2020,
    eqs. 19 and 22, with pleval's design-effect adaptation) from a classical statsmodels WLS of
    that school alone, the school's reported SE and df entering through κ = SE/SE_classical."""
    d, _ = make_sites(n_schools=6, n_per=90, seed=2, subjects=("math",), mu=0.6)
    d = d[~((d.school_id == "S003") & (d.race == "hispanic"))]  # a dummy dropped for one school only
    rng = np.random.default_rng(3)
    d = d.assign(w=np.where(d.treatment == 1, 1.0, rng.uniform(0.3, 1.5, len(d))))
    r = school_effects(d, stratum="school_id", covariates=["pretest", "race"], weight="w", cluster="student_id",
                       robustness_q=0.5, alpha=0.10)
    t = r.table.set_index("school")

    def rv(f):
        return 0.5 * (math.sqrt(f**4 + 4 * f**2) - f**2)

    for sch, sub in d.groupby("school_id"):
        est, se_c, dof = slow_fit(sub, ["pretest", "race"], "classical", weight="w")
        tc = est / se_c
        fq = 0.5 * abs(tc) / math.sqrt(dof)
        fs = t.loc[sch, "se"] / se_c * stats.t.ppf(0.95, t.loc[sch, "df"]) / math.sqrt(dof - 1)
        rva = 0.0 if fq <= fs else ((fq**2 - fs**2) / (1 + fq**2) if fq > 1 / fs else rv(fq - fs))
        assert t.loc[sch, "partial_r2"] == pytest.approx(tc**2 / (tc**2 + dof), rel=1e-8)
        assert t.loc[sch, "rv_q"] == pytest.approx(rv(fq), rel=1e-8)
        assert t.loc[sch, "rv_qa"] == pytest.approx(rva, rel=1e-8, abs=1e-12)
    assert (t["rv_qa"] <= t["rv_q"]).all() and (t["rv_qa"] > 0).any()
    assert "rv_q" not in school_effects(d, stratum="school_id", covariates=["pretest"]).table.columns


@pytest.mark.parametrize("chunk", [7, 1 << 12])
def test_design_is_row_major_and_centred_at_the_copies_mean(monkeypatch, chunk):
    """``[1, t, covariates]`` with categorical covariates' indicators as ``design_matrix`` gives
    them (text columns, Arrow or object, levels sorted; a Categorical's own categories in their
    order, an unused one left out; a boolean as 0/1), each covariate column less its mean over the copies, built row-major (the
    joint covariance gathers rows), for rows in any order, by chunks of 7 rows (the last one
    shorter) or all at once."""
    import importlib

    from pleval.data import design_matrix

    se_mod = importlib.import_module("pleval.heterogeneity.school_effects")
    monkeypatch.setattr(se_mod, "_DESIGN_ROWS", chunk)
    d = make_sites(n_schools=3, n_per=20, subjects=("math",))[0]
    d["race_arrow"] = d["race"].astype("string[pyarrow]")
    d["race_cat"] = pd.Categorical(d["race"], categories=["white", "other", "black", "hispanic"])
    d["frl_bool"] = d["pretest"] > d["pretest"].median()
    covs = ["pretest", "race", "race_arrow", "race_cat", "frl_bool"]
    cnt = np.random.default_rng(1).integers(1, 4, len(d))
    t = d["treatment"].to_numpy(dtype=float)
    cov = design_matrix(d, covs).to_numpy(dtype=float)
    assert cov.shape[1] == 1 + 2 + 2 + 2 + 1  # (race_cat: "other" unused)
    for c in (None, cnt):
        n = len(d) if c is None else int(c.sum())
        rows = np.random.default_rng(2).permutation(len(d))
        design, left_out = se_mod._design_columns(d, covs, c, n)
        assert left_out == []
        X = se_mod._design_rows(design, t, rows)
        mean = cov.mean(axis=0) if c is None else c @ cov / n
        assert X.flags["C_CONTIGUOUS"] and len(d) % 7
        np.testing.assert_allclose(X, np.column_stack([np.ones(len(d)), t, cov - mean])[rows], rtol=1e-14, atol=1e-12)
    one = d.assign(race_arrow="white")["race_arrow"].astype("string[pyarrow]")
    with pytest.raises(DataError, match="single category"):
        se_mod._design_columns(d.assign(race_arrow=one), ["race_arrow"], None, len(d))


def test_a_constant_covariate_is_refused_or_left_out_without_changing_an_estimate():
    """A covariate without variation in the analysed rows (a 0/1 column all 0, a text column of
    one category) is refused by default, naming the column. With ``leave_out_constant`` (what
    each placebo round passes: a round's matched rows may lack, say, an ELL student) it is left
    out and named in the options, and every school's estimate, SE and df are those of one
    statsmodels WLS per school with the constant columns in the data (dropped there as constant
    within the school)."""
    d, _ = make_sites(n_schools=6, n_per=60, seed=4, subjects=("math",))
    d = d.assign(ell=0, race="white")
    for cov in ("ell", "race"):
        with pytest.raises(DataError, match=f"'{cov}' \\(covariate\\)"):
            school_effects(d, stratum="school_id", covariates=["pretest", cov], vcov="HC2")
    r = school_effects(d, stratum="school_id", covariates=["pretest", "ell", "race"], vcov="HC2",
                       leave_out_constant=True)
    assert r.options["covariates_left_out"] == ("ell", "race")
    assert school_effects(d, stratum="school_id", covariates=["pretest"], vcov="HC2",
                          leave_out_constant=True).options["covariates_left_out"] == ()
    t = r.table.set_index("school")
    for sch, sub in d.groupby("school_id"):  # the slow way, in the test only
        est, se, df = slow_fit(sub, ["pretest", "ell", "race"], "HC2")
        assert t.loc[sch, "estimate"] == pytest.approx(est, rel=1e-9)
        assert t.loc[sch, "se"] == pytest.approx(se, rel=1e-8)
        assert t.loc[sch, "df"] == pytest.approx(df, rel=1e-9)


def _kish_by_pandas(strata, schools, w):
    """(Σ W_c)²/Σ W_c² per stratum, W_c the summed weight of comparison school c, by groupby."""
    W = pd.Series(w).groupby([strata, schools]).sum()
    g = W.groupby(level=0)
    return (g.sum() ** 2 / g.apply(lambda x: (x**2).sum())).to_dict()


def test_comparison_schools_is_kish_effective_number_of_comparison_schools():
    """The ``comparison_schools`` column (which puts the placebo spread on the PL schools' scale,
    docs/heterogeneity.md): per PL school, Kish's effective number of the schools its comparison
    weight comes from, against a pandas groupby; the sorted-cells branch (many strata × schools)
    against the same. Without ``school=`` there are no comparison schools: NaN."""
    from pleval.heterogeneity.school_effects import _comparison_schools

    rng = np.random.default_rng(7)
    n = 3000
    d = pd.DataFrame({"_pl_school": rng.choice([f"P{i}" for i in range(8)], n), "treatment": rng.integers(0, 2, n),
                      "school_id": rng.choice([f"C{i}" for i in range(25)], n, p=np.r_[[0.3], np.full(24, 0.7 / 24)]),
                      "student_id": np.arange(n), "_weight": rng.uniform(0.2, 2.0, n)})
    d["posttest"] = rng.normal(0, 1, n) + 0.2 * d["treatment"]
    r = school_effects(d, covariates=(), cluster="student_id", school="school_id")
    c = d[d.treatment == 0]
    want = _kish_by_pandas(c["_pl_school"].to_numpy(), c["school_id"].to_numpy(), c["_weight"].to_numpy())
    got = r.table.set_index("school")["comparison_schools"]
    assert got.to_dict() == pytest.approx(want, rel=1e-8)  # (to 9 significant digits)
    assert 1 < got.min() and got.max() < 25
    assert r.table["comparison_schools"].pipe(lambda s: s.notna().all())
    assert school_effects(d, covariates=(), cluster="student_id").table["comparison_schools"].isna().all()

    G, n_s, m = 1500, 1200, 6000  # G × n_s > 4 m: the sorted branch
    codes, sc = rng.integers(0, G, m), rng.integers(0, n_s, m)
    comp, w = rng.random(m) < 0.7, rng.uniform(0.5, 3.0, m)
    out = _comparison_schools(codes, comp, sc, w, G)
    want = _kish_by_pandas(codes[comp], sc[comp], w[comp])
    assert {g: out[g] for g in want} == pytest.approx(want, rel=1e-8)
    assert np.isnan(np.delete(out, list(want))).all()
    dense = _comparison_schools(codes[:300], comp[:300], sc[:300] % 40, w[:300], G)  # the dense branch, same rule
    want = _kish_by_pandas(codes[:300][comp[:300]], sc[:300][comp[:300]] % 40, w[:300][comp[:300]])
    assert {g: dense[g] for g in want} == pytest.approx(want, rel=1e-8)
    # to 9 significant digits, the same whichever way the weights were summed: each weight split
    # into three copies (as the frame holds a reused student, where the lazy school sample merges them)
    idx = np.repeat(np.arange(m), 3)
    parts = w[idx] * np.tile([0.3, 0.3, 0.4], m)
    np.testing.assert_array_equal(_comparison_schools(codes[idx], comp[idx], sc[idx], parts, G), out)


def test_comparison_schools_dense_table_by_blocks_of_strata(monkeypatch):
    """The dense branch forms the (stratum, school) table a block of strata at a time: with
    blocks of one to a few strata (rows in no stratum order, treated rows and rows without a
    school among them, with and without weights) the counts equal the whole table's, bit for bit,
    and a pandas groupby's."""
    import importlib

    mod = importlib.import_module("pleval.heterogeneity.school_effects")  # (the package exports the function)
    rng = np.random.default_rng(11)
    G, n_s, m = 30, 50, 5000
    codes = np.repeat(rng.integers(0, G, m // 10), 10)  # runs of one stratum, as a school sample's sets
    codes[::7] = rng.integers(0, G, codes[::7].size)  # runs broken up: not in stratum order
    sc = rng.integers(0, n_s, m)
    sc[::13] = -1  # no school
    comp, w = rng.random(m) < 0.7, rng.uniform(0.5, 3.0, m)
    for weights in (w, None):
        monkeypatch.setattr(mod, "_SCHOOL_CELLS", 1 << 19)
        one = mod._comparison_schools(codes, comp, sc, weights, G)  # one block
        keep = comp & (sc >= 0)
        want = _kish_by_pandas(codes[keep], sc[keep], np.ones(keep.sum()) if weights is None else weights[keep])
        assert {g: one[g] for g in want} == pytest.approx(want, rel=1e-8)
        for cells in (1, 60, 160):  # blocks of one, one and three strata
            monkeypatch.setattr(mod, "_SCHOOL_CELLS", cells)
            np.testing.assert_array_equal(mod._comparison_schools(codes, comp, sc, weights, G), one)
    # rows of the table longer than einsum's 8,192-element buffer, blocks of two strata; unsigned school codes
    G, n_s, m = 6, 9000, 40000
    codes, sc, w = rng.integers(0, G, m), rng.integers(0, n_s, m), rng.uniform(0.5, 3.0, m)
    comp = rng.random(m) < 0.8
    monkeypatch.setattr(mod, "_SCHOOL_CELLS", 1 << 20)
    one = mod._comparison_schools(codes, comp, sc, w, G)
    monkeypatch.setattr(mod, "_SCHOOL_CELLS", 2 * (n_s + 1))
    np.testing.assert_array_equal(mod._comparison_schools(codes, comp, sc.astype(np.uint16), w, G), one)
    want = _kish_by_pandas(codes[comp], sc[comp], w[comp])
    assert {g: one[g] for g in want} == pytest.approx(want, rel=1e-8)


def test_from_estimates_reproduces_a_school_table_tests_with_its_df_column():
    """Read back with its ``df`` column, pleval's own school table gives the same per-school
    p-values, CIs and counts of significant schools (t(df), not the normal reference); without it
    (``df=None``) the p-values are the normal ones; bad df values are named."""
    d, _ = make_sites(n_schools=8, n_per=12, seed=5, subjects=("math",), tau=0.2)
    own = school_effects(d, stratum="school_id", covariates=["pretest"]).table
    back = own[["school", "effect_size", "es_se", "df"]].rename(columns={"school": "school_id", "effect_size": "estimate",
                                                                          "es_se": "se"})
    assert own["df"].max() < 30  # small schools: t and normal references differ visibly
    got = school_effects_from_estimates(back)
    np.testing.assert_allclose(got.table.pvalue, own.pvalue, rtol=1e-12)
    np.testing.assert_allclose(got.table[["es_ci_low", "es_ci_high"]], own[["es_ci_low", "es_ci_high"]], rtol=1e-12)
    assert got.options["df"] == "df"
    z = school_effects_from_estimates(back, df=None)
    np.testing.assert_allclose(z.table.pvalue, 2 * stats.norm.sf(np.abs(back.estimate / back.se)), rtol=1e-12)
    assert (z.table.pvalue < got.table.pvalue).all()
    with pytest.raises(DataError, match="column 'df' \\(df\\): 1 row\\(s\\) are zero or negative \\(index 2; school"):
        school_effects_from_estimates(back.assign(df=back.df.where(back.index != 2, 0.0)))
    with pytest.raises(DataError, match="column 'df' \\(df\\) must be numeric"):
        school_effects_from_estimates(back.assign(df=back.df.astype(object).where(back.index != 1, "many")))
    with pytest.raises(DataError, match="column 'dof' \\(df\\) is not in the data"):
        school_effects_from_estimates(back, df="dof")
    with pytest.warns(PlevalWarning, match="column 'df' \\(df\\): 1 school row\\(s\\) have no value \\(index 3; "
                                           "school\\(s\\) 'S003'\\); their p-values and CIs use the normal reference"):
        part = school_effects_from_estimates(back.assign(df=back.df.where(back.index != 3)))
    assert part.table.pvalue.iloc[3] == pytest.approx(z.table.pvalue.iloc[3]) and part.table.df.iloc[3] == np.inf
    np.testing.assert_allclose(part.table.pvalue.drop(3), own.pvalue.drop(3), rtol=1e-12)


@pytest.mark.parametrize("p0", [19, 20, 50, 61])
def test_school_table_footnote_says_ordinals_right(p0):
    """The footnote's percentiles are ordinals ("the 22nd", "the 61st"): before 2026-12-04 it
    printed "the 22th" and "the 61th"."""
    from pleval.heterogeneity.school_effects import percentile_note
    from pleval.percentiles import to_percentile_points

    q = p0 + to_percentile_points(0.1, p0)
    sfx = {1: "st", 2: "nd", 3: "rd"}
    end = lambda n: f"{n}{'th' if 10 <= n % 100 <= 20 else sfx.get(n % 10, 'th')}"  # noqa: E731
    text = percentile_note(p0)
    assert f"at the {end(p0)} percentile" in text and f"about the {end(int(q + 0.5))} with it" in text


def test_a_school_id_typed_two_ways_is_one_school_given_twice():
    """School ids 1 and '1' in one subject are the same school written two ways: the duplicate
    error (before 2026-12-04 two schools, both shown as 1)."""
    from pleval.heterogeneity import school_effects_from_estimates

    for ids in ([1, "1", 2, 3], [1, 1.0, 2, 3]):
        df = pd.DataFrame({"school_id": pd.Series(ids, dtype=object), "subject": "math", "estimate": [0.1, 0.2, 0.0, -0.1],
                           "se": [0.1] * 4, "n_treated": [40] * 4, "n_comparison": [200] * 4})
        with pytest.raises(DataError, match="1 school\\(s\\) appear more than once within subject"):
            school_effects_from_estimates(df)


def test_hc2_school_tests_hold_their_level_in_small_unbalanced_schools():
    """A multi-site trial with no effect anywhere: 30 schools of 8–40 students, 30% assigned in
    each, the treated arm's SD 1.5 times the control's. Each school's HC2 test on Bell &
    McCaffrey's df rejects about 5% of the time; on n − p df (before 2026-12-04) it rejected 8.6%
    (1,000 data sets), and the BH-adjusted count flagged a school in 11.7% of them."""
    reps = sim_reps(400, minimum=100)
    rng = np.random.default_rng(20261204)
    K = 30
    rejected = tested = any_bh = 0
    for _ in range(reps):
        n = rng.integers(8, 41, K)
        school = np.repeat(np.arange(K), n)
        z = (rng.random(school.size) < 0.3).astype(int)
        pre = rng.normal(size=school.size)
        y = 0.6 * pre + rng.normal(0, 0.3, K)[school] + rng.normal(size=school.size) * np.where(z == 1, 1.5, 1.0)
        d = pd.DataFrame({"school": school, "treatment": z, "pre": pre, "posttest": y})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)  # schools with one arm under 2 rows: no estimate
            t = school_effects(d, stratum="school", covariates=["pre"]).table
        p = t["pvalue"].dropna().to_numpy()
        rejected += int((p < 0.05).sum())
        tested += p.size
        any_bh += bool((t["p_adjusted"] < 0.05).any())
    rate = rejected / tested
    mc_se = np.sqrt(0.05 * 0.95 / tested)
    assert abs(rate - 0.05) < 3.5 * mc_se + 0.005, (rate, tested)
    assert any_bh / reps < 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps), any_bh / reps
