"""pleval.match end to end: the matched-sample contract, independent re-computations of the
propensity model, balance and effect, and every bad input."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

import pleval
from pleval.data import SAMPLE_COLUMNS, validate
from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.matching import EffectTable, MatchResult, fit_propensity, match
from pleval.simulate import simulate_matched

COLS = SAMPLE_COLUMNS


@pytest.fixture(scope="module")
def sim():
    return simulate_matched(n_schools=60, n_pl_schools=12, students_per_grade=15, seed=11)


@pytest.fixture(scope="module")
def df(sim):
    return sim.data


@pytest.fixture(scope="module")
def results(df):
    v = validate(df, COLS)
    return {m: match(v, COLS, method=m) for m in ("propensity", "mahalanobis", "vcg", "weighting")}


@pytest.mark.parametrize("method", ["propensity", "mahalanobis", "vcg", "weighting"])
def test_matched_sample_contract(results, df, method):
    r = results[method]
    assert isinstance(r, MatchResult)
    m = r.matched
    assert {"_set", "_weight", "_pl_school"} <= set(m.columns)
    assert set(df.columns) <= set(m.columns)
    t = m["treatment"] == 1
    assert (m.loc[t, "_weight"] == 1).all()
    assert (m.loc[t, "_pl_school"] == m.loc[t, "school_id"]).all()
    if method == "weighting":
        assert (m["_set"] == -1).all()
        assert m.loc[~t, "_pl_school"].isna().all()
        assert m.loc[~t, "_weight"].sum() == pytest.approx(t.sum())  # stabilized
        return
    # one treated row per set; comparisons of a set sum to 1 and carry the anchor's school
    assert m.loc[t, "_set"].is_unique
    assert sorted(m.loc[t, "_set"]) == list(range(t.sum()))
    np.testing.assert_allclose(m.loc[~t].groupby("_set")["_weight"].sum().to_numpy(), 1.0)
    anchor = m.loc[t].set_index("_set")["school_id"]
    assert (m.loc[~t, "_pl_school"].to_numpy() == anchor.loc[m.loc[~t, "_set"]].to_numpy()).all()
    # exact on subject and grade
    first = m.groupby("_set")[["subject", "grade"]].nunique()
    assert (first == 1).all().all()
    # counts add up
    assert r.n_treated_matched + len(r.unmatched) == r.n_treated


def test_vcg_comparisons_only_from_non_pl_schools(results, df):
    r = results["vcg"]
    m = r.matched
    pl_schools = set(df.loc[df.treatment == 1, "school_id"])
    assert not set(m.loc[m.treatment == 0, "school_id"]) & pl_schools
    # keys equal and pretest within the band inside every set
    t = m[m.treatment == 1].set_index("_set")
    c = m[m.treatment == 0]
    for col in ("grade", "subject", "female", "frl", "ell", "sped", "race"):
        assert (c[col].to_numpy() == t.loc[c["_set"], col].to_numpy()).all()
    assert (np.abs(c["pretest"].to_numpy() - t.loc[c["_set"], "pretest"].to_numpy()) <= 1.0).all()
    assert (m.groupby("_set").size() <= 52).all()
    # the unmatched are reported with reasons, and reproducibility under the seed
    assert set(r.unmatched["reason"]) <= {"no comparison student in its exact-match cell",
                                          "no comparison student within the pretest band"}
    again = match(df, COLS, method="vcg")
    pd.testing.assert_frame_equal(again.matched, m)


def test_vcg_school_keys_and_bins(df):
    r = match(df, COLS, method="vcg", school_keys=("urbanicity", "school_poverty"),
              school_bins={"school_poverty": [0, 0.33, 0.66, 1.0]})
    m = r.matched
    t = m[m.treatment == 1].set_index("_set")
    c = m[m.treatment == 0]
    assert (c["urbanicity"].to_numpy() == t.loc[c["_set"], "urbanicity"].to_numpy()).all()
    band = lambda s: np.digitize(s, [0.33, 0.66], right=True)  # noqa: E731
    assert (band(c["school_poverty"].to_numpy()) == band(t.loc[c["_set"], "school_poverty"].to_numpy())).all()
    with pytest.raises(DataError, match="school_bins"):
        match(df, COLS, method="vcg", school_keys="urbanicity", school_bins={"school_poverty": [0, 1]})


def test_propensity_caliper_and_distance(results):
    r = results["propensity"]
    ps = r.propensity
    lp = pd.Series(ps.logit_ps, index=r.data.index)
    m = r.matched.assign(lp=lp.reindex(r.matched.index).to_numpy())
    t = m[m.treatment == 1].set_index("_set")
    c = m[m.treatment == 0]
    d = np.abs(c["lp"].to_numpy() - t.loc[c["_set"], "lp"].to_numpy())
    tt = r.data.treatment.to_numpy() == 1
    sd = np.sqrt((ps.logit_ps[tt].var(ddof=1) + ps.logit_ps[~tt].var(ddof=1)) / 2)
    assert d.max() <= 0.2 * sd + 1e-12
    assert r.diagnostics["caliper (logit PS units)"] == pytest.approx(0.2 * sd)


def test_propensity_model_matches_statsmodels_formula(df):
    pm = fit_propensity(df, "treatment", ["pretest", "female", "frl", "race"])
    ref = smf.logit("treatment ~ pretest + female + frl + C(race)", data=df).fit(disp=0)
    np.testing.assert_allclose(pm.ps, ref.predict(df), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pm.logit_ps, np.log(pm.ps / (1 - pm.ps)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("noise", [False, True])
def test_propensity_fit_on_patterns_is_the_rows_mle(noise):
    """The Newton fit on distinct covariate patterns (counts and treated counts) is the MLE of
    the rows: statsmodels' Logit on every row, converged tightly, gives the same coefficients and
    scores to 1e-10 — with few patterns (whole-point scores, categories) and with every row its
    own pattern (a continuous covariate)."""
    from pleval.matching._design import encode
    from pleval.matching.propensity import covariate_patterns

    rng = np.random.default_rng(7)
    n = 20_000
    d = pd.DataFrame({"pretest": rng.integers(0, 40, n).astype(float), "frl": rng.integers(0, 2, n),
                      "race": rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2])})
    if noise:
        d["pretest"] += rng.normal(size=n)
    lin = -1.5 + 0.04 * d["pretest"] + 0.8 * d["frl"] - 0.5 * (d["race"] == "b")
    d["t"] = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    covs = ["pretest", "frl", "race"]
    pm = fit_propensity(d, "t", covs)
    X = encode(d, covs, intercept=True).X
    pattern, first = covariate_patterns(d, covs)
    assert np.array_equal(X[first][pattern], X)  # equal patterns, equal design rows
    assert len(first) == len(np.unique(X, axis=0)) and (len(first) == n) == noise
    ref = sm.Logit(d["t"].to_numpy(), X).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    np.testing.assert_allclose(pm.params.to_numpy(), ref.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pm.logit_ps, X @ ref.params, rtol=1e-10, atol=1e-12)
    assert np.array_equal(pm.logit_ps, (X[first] @ pm.params.to_numpy())[pattern])


def test_encode_rows_is_the_design_of_those_rows():
    """encode(..., rows=r) is encode(...).X[r] with the same names and reference levels (the most
    frequent level over every row, even when another is the most frequent among the rows r),
    also with the categorical codes given; a missing value outside r still raises."""
    from pleval.matching._design import codes_and_levels, encode

    d = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "g": ["a", "a", "a", "b", "b", "c"], "k": [0, 1, 1, 2, 2, 2]})
    r = np.array([3, 4, 5, 5])  # "b" the most frequent here, "a" over every row
    full = encode(d, ["x", "g", "k"], categorical=("k",), intercept=True)
    for codes in (None, {"g": codes_and_levels(d["g"])}):
        sub = encode(d, ["x", "g", "k"], categorical=("k",), intercept=True, codes=codes, rows=r)
        assert sub.names == full.names and "g[a]" not in sub.names
        assert np.array_equal(sub.X, full.X[r])
    with pytest.raises(DataError, match="missing"):
        encode(d.assign(x=[np.nan, 2, 3, 4, 5, 6]), ["x"], rows=r)


def test_encode_and_cem_name_infinite_and_missing_covariate_values():
    """A covariate's infinite values are called infinite, with their rows, and its missing ones
    missing, by encode and cem_cells alike (before 2026-12-05 both "missing or non-numeric")."""
    from pleval.matching._design import encode
    from pleval.matching.cem import cem_cells

    d = pd.DataFrame({"x": [1.0, np.inf, 3.0, -np.inf, np.nan, 6.0]}, index=[10, 11, 12, 13, 14, 15])
    want = "column 'x' (covariates): 2 row(s) are infinite (index 11, 13); 1 row(s) are missing"
    for call in (lambda: encode(d, ["x"]), lambda: cem_cells(d, ["x"])):
        with pytest.raises(DataError, match=re.escape(want)):
            call()


def test_logit_propensity_encodes_the_patterns_only(monkeypatch):
    """The logit fit forms the design rows of the distinct covariate patterns only, not a row
    per student (a 10M-row design is 0.8 GB), with the same scores as from every row's."""
    from pleval.matching import _design, propensity

    rng = np.random.default_rng(5)
    n = 5000
    d = pd.DataFrame({"pretest": rng.integers(0, 30, n).astype(float), "frl": rng.integers(0, 2, n),
                      "race": rng.choice(np.array(["a", "b", "c"], dtype=object), n)})
    d["t"] = (rng.random(n) < 1 / (1 + np.exp(1.5 - 0.05 * d["pretest"]))).astype(int)
    sizes = []
    real = _design.encode

    def spy(*a, **k):
        enc = real(*a, **k)
        sizes.append(len(enc.X))
        return enc

    monkeypatch.setattr(propensity, "encode", spy)
    pm = fit_propensity(d, "t", ["pretest", "frl", "race"])
    n_patterns = len(propensity.covariate_patterns(d, ["pretest", "frl", "race"])[1])
    assert sizes == [n_patterns] and n_patterns < n
    X = real(d, ["pretest", "frl", "race"], intercept=True).X
    np.testing.assert_allclose(pm.logit_ps, X @ pm.params.to_numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("penalize", [False, True])
def test_support_and_discard_from_patterns_are_those_of_the_rows(penalize):
    """The groups' logit-score ranges, the counts outside the other group's range and the rows
    ``discard`` keeps, computed on the covariate patterns (then each row its pattern's), are those
    of the rows, for every ``discard``; so are the scores (a pattern's score, each of its rows')."""
    rng = np.random.default_rng(2)
    n = 4000
    d = pd.DataFrame({"pretest": rng.integers(0, 40, n).astype(float), "frl": rng.integers(0, 2, n)})
    d["t"] = (rng.random(n) < 1 / (1 + np.exp(4.0 - 0.12 * d["pretest"]))).astype(int)
    for discard in ("none", "treated", "control", "both"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            pm = fit_propensity(d, "t", ["pretest", "frl"], discard=discard, penalize=penalize)
        lin, t1 = pm.logit_ps, d["t"].to_numpy() == 1
        assert np.array_equal(pm.ps, 1.0 / (1.0 + np.exp(-lin)))
        lo_t, hi_t, lo_c, hi_c = lin[t1].min(), lin[t1].max(), lin[~t1].min(), lin[~t1].max()
        t_out, c_out = t1 & ((lin < lo_c) | (lin > hi_c)), ~t1 & ((lin < lo_t) | (lin > hi_t))
        s = pm.support
        assert (s.treated_range, s.control_range) == ((lo_t, hi_t), (lo_c, hi_c))
        assert (s.n_treated_outside, s.n_control_outside) == (int(t_out.sum()), int(c_out.sum())) != (0, 0)
        keep = ~(t_out & (discard in ("treated", "both"))) & ~(c_out & (discard in ("control", "both")))
        assert np.array_equal(pm.keep, keep)
        assert (s.n_discarded_treated, s.n_discarded_control) == (int((t1 & ~keep).sum()), int((~t1 & ~keep).sum()))


def test_separation_checks_on_patterns_are_those_on_rows():
    """The per-covariate separation checks on covariate patterns with their row and treated
    counts (as fit_propensity runs them) name the same covariates and levels, with the same
    counts and ranges, as on the rows: a level all treated, one without treated rows, a 0/1
    covariate, a numeric range beyond the other group's, and none."""
    from pleval.matching.propensity import _separation_by_covariate, covariate_patterns

    rng = np.random.default_rng(3)
    n = 3000
    d = pd.DataFrame({"x": rng.integers(0, 30, n).astype(float), "b": rng.integers(0, 2, n),
                      "g": rng.choice(np.array(["u", "v", "w", "z"], dtype=object), n)})
    d["t"] = (rng.random(n) < 0.3).astype(int)
    d.loc[d["g"] == "u", "t"] = 1
    d.loc[d["g"] == "z", "t"] = 0
    d.loc[(d["b"] == 1) & (d["g"] != "z"), "t"] = 1
    d["far"] = d["x"] + 100.0 * d["t"]
    for covs in (["x", "b", "g"], ["far", "x"], ["x"]):
        t = d["t"].to_numpy()
        pattern, first = covariate_patterns(d, covs)
        n_u = np.bincount(pattern).astype(float)
        y_u = np.bincount(pattern, weights=t)
        rows = _separation_by_covariate(d, t, covs, set())
        assert _separation_by_covariate(d.iloc[first], y_u, covs, set(), n_u) == rows
        assert bool(rows) == (covs != ["x"]), rows


def test_common_support_report_and_discard(df):
    pm = fit_propensity(df, "treatment", ["pretest", "frl"], discard="both")
    t = df.treatment.to_numpy() == 1
    lo, hi = pm.logit_ps[~t].min(), pm.logit_ps[~t].max()
    assert pm.support.n_treated_outside == int((t & ((pm.logit_ps < lo) | (pm.logit_ps > hi))).sum())
    assert pm.support.n_discarded_treated == pm.support.n_treated_outside
    assert (~pm.keep).sum() == pm.support.n_treated_outside + pm.support.n_control_outside
    r = match(df, COLS, covariates=["pretest", "frl"], discard="both")
    assert (~pm.keep).any()
    ex = r.exclusions.set_index("reason")["n_rows"]
    assert ex["outside common support (discard='both')"] == (~pm.keep).sum()
    assert r.n_treated == int(df.treatment.sum()) - pm.support.n_discarded_treated
    assert r.n_treated_matched + len(r.unmatched) == r.n_treated


def test_balance_against_independent_computation(results):
    r = results["vcg"]
    b = r.balance()
    m = r.matched
    tab = b.table[b.table.group == "all"].set_index("variable")
    before = r.data
    for var in ("pretest", "frl"):
        xb_t, xb_c = before.loc[before.treatment == 1, var], before.loc[before.treatment == 0, var]
        sd0 = np.sqrt((xb_t.var() + xb_c.var()) / 2)
        assert tab.loc[var, "smd_before"] == pytest.approx((xb_t.mean() - xb_c.mean()) / sd0, rel=1e-10)
        mt, mc = m[m.treatment == 1], m[m.treatment == 0]
        mean_c = np.average(mc[var], weights=mc["_weight"])
        assert tab.loc[var, "smd_after"] == pytest.approx((mt[var].mean() - mean_c) / sd0, rel=1e-9, abs=1e-12)
    vt = np.cov(m.loc[m.treatment == 1, "pretest"])
    vc = np.cov(m.loc[m.treatment == 0, "pretest"], aweights=m.loc[m.treatment == 0, "_weight"])
    assert tab.loc["pretest", "var_ratio_after"] == pytest.approx(vt / vc, rel=1e-10)
    # one row per level of a categorical covariate
    assert {"race[white]", "race[black]"} <= set(tab.index)
    # WWC verdict from pleval.standards on the matched-sample Hedges g
    eq = b.equivalence.set_index("group")
    assert set(eq.index) == {"all", "math", "reading"}
    x_t = mt["pretest"].to_numpy()
    w_c = mc["_weight"].to_numpy()
    n_c = w_c.sum() ** 2 / (w_c**2).sum()
    # the SD pooled within arm x subject x grade (the exact-match cells), as the impact's
    ss = dof = 0.0
    for _, cell in m.groupby(["treatment", "subject", "grade"]):
        w = cell["_weight"].to_numpy()
        n_eff = w.sum() ** 2 / (w**2).sum()
        if n_eff > 1:
            ss += (n_eff - 1) * np.cov(cell["pretest"], aweights=w)
            dof += n_eff - 1
    sp = np.sqrt(ss / dof)
    g = (1 - 3 / (4 * (len(x_t) + n_c) - 9)) * (x_t.mean() - np.average(mc["pretest"], weights=w_c)) / sp
    assert eq.loc["all", "hedges_g"] == pytest.approx(g, rel=1e-9, abs=1e-12)
    assert eq.loc["all", "sd"] == pytest.approx(sp, rel=1e-12)
    assert eq.loc["all", "wwc_baseline_equivalence"] == pleval.standards.baseline_equivalence(g)
    assert "baseline equivalence" in b.summary()


def test_balance_improves_after_matching(results):
    for method in ("propensity", "vcg", "weighting"):
        tab = results[method].balance().table
        allg = tab[tab.group == "all"].set_index("variable")
        assert abs(allg.loc["pretest", "smd_after"]) < abs(allg.loc["pretest", "smd_before"])
        assert abs(allg.loc["frl", "smd_after"]) < 0.1 < abs(allg.loc["frl", "smd_before"])


@pytest.mark.parametrize("method", ["propensity", "vcg", "weighting"])
def test_estimate_equals_statsmodels_wls_cluster(results, method):
    r = results[method]
    e = r.estimate(vcov="CR1")
    m = r.matched
    X = pd.get_dummies(m[["pretest", "female", "frl", "ell", "sped", "race", "grade", "subject"]].astype(
        {"grade": str}), drop_first=True, dtype=float)
    X.insert(0, "treatment", m["treatment"].astype(float))
    X = sm.add_constant(X)
    ref = sm.WLS(m["posttest"], X, weights=m["_weight"]).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(m["school_id"])[0]})
    assert e.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-8)
    assert e.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-6)
    assert e.raw.n_clusters == m["school_id"].nunique()
    # effect size: pooled within-group SD of the unadjusted matched outcome, pooled within
    # grade x subject (weighted; effective n per cell), times ω
    t = m.treatment == 1
    num = den = 0.0
    for _, cell in m.groupby(["grade", "subject"]):
        for arm in (0, 1):
            part = cell[cell.treatment == arm]
            w = part["_weight"]
            n_eff = w.sum() ** 2 / (w**2).sum()
            if len(part) > 1 and n_eff > 1:
                num += (n_eff - 1) * np.cov(part["posttest"], aweights=w)
                den += n_eff - 1
    sp = np.sqrt(num / den)
    n_distinct = t.sum() + m.index[~t].nunique()
    omega = 1 - 3 / (4 * n_distinct - 9)
    assert e.sd == pytest.approx(sp, rel=1e-9)
    assert e.effect_size.estimate == pytest.approx(omega * e.raw.estimate / sp, rel=1e-9)
    assert e.effect_size.se == pytest.approx(omega * e.raw.se / sp, rel=1e-9)
    assert "pooled" in e.sd_kind
    assert e.percentile_points.estimate == pytest.approx(pleval.to_percentile_points(e.effect_size.estimate))


def test_reused_comparisons_share_their_cluster(results):
    """The CR SE treats all copies of a reused comparison as one school cluster: collapsing
    the copies into one row with their weights summed gives the same estimate and the same
    CR0 standard error (the copies' score contributions add within the cluster)."""
    r = results["vcg"]
    m = r.matched
    assert m.index[m.treatment == 0].duplicated().any()  # reuse happens
    e = r.estimate(vcov="CR0")
    collapsed = m.assign(_row=m.index).groupby("_row").agg(
        {**{c: "first" for c in m.columns if c not in ("_weight", "_set", "_pl_school")}, "_weight": "sum"})
    X = pd.get_dummies(collapsed[["pretest", "female", "frl", "ell", "sped", "race", "grade", "subject"]].astype(
        {"grade": str}), drop_first=True, dtype=float)
    X.insert(0, "treatment", collapsed["treatment"].astype(float))
    ref = sm.WLS(collapsed["posttest"], sm.add_constant(X), weights=collapsed["_weight"]).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(collapsed["school_id"])[0], "use_correction": False})
    assert e.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-8)
    assert e.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-6)


def test_estimate_by_subject_and_grade(results):
    r = results["vcg"]
    tab = r.estimate(by="subject")
    assert isinstance(tab, EffectTable) and set(k[0] for k, _ in tab) == {"math", "reading"}
    math_only = r.matched[r.matched.subject == "math"]
    from pleval.matching.effect import regression_effect

    direct = regression_effect(math_only, outcome="posttest", treatment="treatment", pretests=("pretest",),
                               covariates=COLS.covariates, strata=("subject", "grade"), school="school_id")
    assert tab["math"].raw.estimate == pytest.approx(direct.raw.estimate)
    fr = r.estimate(by=("subject", "grade")).to_frame()
    assert {"subject", "grade", "scale", "estimate"} <= set(fr.columns)
    assert len(fr) == 3 * 2 * 6
    with pytest.raises(DataError, match="not columns"):
        r.estimate(by="nope")


def test_given_sd_and_comparison_sd(results):
    r = results["propensity"]
    e = r.estimate(sd=15.0)
    assert e.sd == 15.0 and e.effect_size.estimate == pytest.approx(e.raw.estimate / 15.0)
    assert "comparison" in r.estimate(sd="comparison").sd_kind


def test_summary_and_frames(results):
    for r in results.values():
        s = r.summary()
        assert "treated rows eligible" in s
        assert isinstance(r.to_frame(), pd.DataFrame)
        assert "Effect" in repr(r.estimate())


def test_mahalanobis_caliper(df):
    r = match(df, COLS, method="mahalanobis", distance=["pretest"], caliper=0.05)
    m = r.matched
    t = m[m.treatment == 1].set_index("_set")
    c = m[m.treatment == 0]
    x = r.data["pretest"]
    tt = r.data.treatment == 1
    sp = np.sqrt(((tt.sum() - 1) * x[tt].var() + ((~tt).sum() - 1) * x[~tt].var()) / (len(x) - 2))
    assert (np.abs(c["pretest"].to_numpy() - t.loc[c["_set"], "pretest"].to_numpy()) / sp <= 0.05 + 1e-12).all()


def test_without_replacement_each_comparison_once(df):
    r = match(df, COLS, replace=False, k=2)
    c = r.matched[r.matched.treatment == 0]
    assert c.index.is_unique
    assert r.options["order"] == "largest"


# --- bad input ------------------------------------------------------------------------------

def test_missing_covariates_are_counted_exclusions(df):
    bad = df.copy()
    bad.loc[bad.index[:37], "frl"] = np.nan
    bad.loc[bad.index[100:105], "posttest"] = np.nan
    bad.loc[bad.index[200:203], "urbanicity"] = None
    r = match(bad, COLS, method="vcg", school_keys="urbanicity")
    ex = r.exclusions.set_index("reason")["n_rows"]
    assert ex["missing covariates"] == 37
    assert ex["missing outcome"] == 5
    assert ex["missing urbanicity"] == 3
    assert len(r.data) == len(bad) - 45 - int(ex.get("comparison rows in PL schools (comparisons come from non-PL schools only)", 0))
    assert "excluded: missing covariates [frl]" in r.summary()


@pytest.mark.parametrize("kw", [dict(covariates=["pretest", "extra"]), dict(method="vcg", school_keys=["extra"]),
                                dict(method="mahalanobis", distance=["pretest", "extra"])])
def test_a_column_missing_in_every_pl_row_is_named_with_its_counts(df, kw):
    bad = df.copy()
    pl = bad.treatment == 1
    bad["extra"] = np.where(pl, np.nan, 1.0)  # a column the PL district did not send
    bad.loc[bad.index[pl][:4], "posttest"] = np.nan
    n_pl = int((pl & bad.posttest.notna()).sum())  # PL rows it removes: those the missing outcome left
    with pytest.raises(DesignError, match=rf"no PL rows are left: 4 PL row\(s\) missing outcome \(column 'posttest'\); "
                                          rf"{n_pl:,} PL row\(s\) missing extra \(column 'extra'\)"):
        match(bad, COLS, **kw)
    bad["extra"] = np.nan  # missing everywhere: both groups named, each with its count
    n_c = int(((~pl) & bad.posttest.notna()).sum())
    with pytest.raises(DesignError, match=rf"no PL and no comparison rows are left: .*{n_pl:,} PL and {n_c:,} "
                                          r"comparison row\(s\) missing extra \(column 'extra'\)"):
        match(bad, COLS, **kw)


def test_a_constant_or_collinear_mahalanobis_variable_is_named(df):
    """A singular Mahalanobis covariance said only "a constant or collinear covariate"; the error
    now names the variable, and whether it is constant (in every row or within each group)."""
    d = df.assign(fall=1.0, twice=df.pretest * 2 + 5, pl_flag=df.treatment * 3.0)
    assert np.ptp(d.fall) == 0 and d.groupby("treatment").pl_flag.nunique().eq(1).all()
    with pytest.raises(DesignError, match=r"\(pretest, fall, frl\); 'fall' takes one value in every row"):
        match(d, COLS, method="mahalanobis", distance=["pretest", "fall", "frl"])
    with pytest.raises(DesignError, match=r"'twice' is a combination of the columns before it"):
        match(d, COLS, method="mahalanobis", distance=["pretest", "frl", "twice"])
    with pytest.raises(DesignError, match=r"'pl_flag' takes one value among the PL rows and one among the comparison"):
        match(d, COLS, method="mahalanobis", distance=["pretest", "pl_flag"])
    with pytest.raises(DesignError, match=r"\(pretest, fall\); 'fall' takes one value in every row"):
        match(d, COLS, method="propensity", mahvars=["pretest", "fall"])


def test_mahalanobis_matching_does_not_depend_on_a_columns_units(df):
    """The Mahalanobis distance is the same in any units, and so is the match: a share given as a
    proportion of a thousandth (variance about 1e-11 beside the pretest's hundreds) matches as in
    its own units. Before 2026-12-04 the singular-covariance test read S's own condition number and
    stopped such a run as "singular"."""
    rng = np.random.default_rng(3)
    d = df.assign(share=rng.normal(0.5, 0.2, len(df)))
    tiny = d.assign(share=d.share * 1e-5)
    a = match(d, COLS, method="mahalanobis", distance=["pretest", "share"])
    b = match(tiny, COLS, method="mahalanobis", distance=["pretest", "share"])
    pd.testing.assert_frame_equal(a.matched[["student_id", "_weight"]], b.matched[["student_id", "_weight"]])


def test_no_comparison_in_exact_cell_is_reported(df):
    bad = df.copy()
    bad.loc[(bad.treatment == 0) & (bad.grade == 8), "grade"] = 7  # no grade-8 comparisons
    r = match(bad, COLS, method="vcg")
    n8 = int(((bad.treatment == 1) & (bad.grade == 8)).sum())
    g8 = r.unmatched[r.unmatched.grade == 8]
    assert len(g8) == n8 and (g8.reason == "no comparison student in its exact-match cell").all()
    counts = r.unmatched_counts().set_index("reason")["n_rows"]
    assert counts["no comparison student in its exact-match cell"] >= n8
    assert "unmatched treated: no comparison student in its exact-match cell" in r.summary()
    r2 = match(bad, COLS, method="propensity")
    assert (r2.unmatched["reason"] == "no comparison in its exact-match cell").sum() == n8


def test_separation_names_the_covariate(df):
    bad = df.copy()
    bad["site"] = np.where(bad.treatment == 1, "pl_site", bad["urbanicity"])
    bad.loc[bad.index[bad.treatment == 1][:1], "site"] = "urban"  # quasi-complete only
    with pytest.raises(DesignError, match=r"site = 'pl_site'.*\(penalize=True: --penalize in pleval match and pleval sensitivity, --set penalize=true in pleval estimate\)"):
        match(bad, COLS, covariates=["pretest", "site"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = match(bad, COLS, covariates=["pretest", "site"], penalize=True)
    assert any(issubclass(x.category, PlevalWarning) and "penalized" in str(x.message) for x in w)
    assert np.isfinite(r.propensity.logit_ps).all() and r.propensity.penalized


def test_separation_by_numeric_covariate(df):
    bad = df.copy()
    bad["score2"] = np.where(bad.treatment == 1, 300.0, 100.0) + np.arange(len(bad)) % 7
    with pytest.raises(DesignError, match="score2"):
        fit_propensity(bad, "treatment", ["pretest", "score2"])


def test_multivariate_separation_is_detected():
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=400), rng.normal(size=400)
    d = pd.DataFrame({"t": (x1 + x2 > 0).astype(int), "x1": x1, "x2": x2})
    with pytest.raises(DesignError, match="separation.*(x1|x2).*--set penalize=true"):
        fit_propensity(d, "t", ["x1", "x2"])


def test_no_overlap_gives_clear_error(df):
    bad = df.copy()
    bad.loc[bad.treatment == 1, "pretest"] += 400  # no comparison within any band
    with pytest.raises(DesignError, match="no treated row found a match.*within the pretest band"):
        match(bad, COLS, method="vcg")


def test_bad_arguments(df):
    with pytest.raises(DataError, match="method must be"):
        match(df, COLS, method="genetic")
    with pytest.raises(DataError, match="not in the data"):
        match(df, COLS, exact=("grade", "district"))
    with pytest.raises(DataError, match="school column"):
        match(df, COLS.replace(school=None), method="vcg")
    with pytest.raises(DataError, match="not in the data"):
        match(df, COLS.replace(covariates=("female", "income")))
    with pytest.raises(DataError, match="discard"):
        match(df, COLS, discard="some")
    with pytest.raises(DataError, match="trim"):
        match(df, COLS, method="weighting", trim=0.7)


def test_weighting_trim_and_truncate(df):
    r = match(df, COLS, method="weighting", trim=0.05, truncate=0.95)
    full = fit_propensity(df, "treatment", ["pretest", *COLS.covariates]).ps
    n_out = int(((full < 0.05) | (full > 0.95)).sum())
    assert n_out > 0
    ex = r.exclusions.set_index("reason")["n_rows"]
    assert ex["propensity score outside [0.05, 0.95] (trim)"] == n_out
    assert len(r.data) == len(df) - n_out - int(df.posttest.isna().sum())
    assert ((r.propensity.ps >= 0.05) & (r.propensity.ps <= 0.95)).all()
    m = r.matched
    w = m.loc[m.treatment == 0, "_weight"]
    assert w.max() / w.min() < 0.95 / 0.05 / (0.05 / 0.95) + 1e-9
    assert r.diagnostics["comparison weights truncated"] > 0


def test_weights_formula():
    from pleval.matching.weighting import att_weights

    ps = np.array([0.5, 0.2, 0.8, 0.25])
    t = np.array([1, 0, 0, 1])
    w = att_weights(ps, t, stabilize=False).weight
    np.testing.assert_allclose(w, [1, 0.25, 4.0, 1])
    w = att_weights(ps, t).weight
    assert w[t == 0].sum() == pytest.approx(2)


def test_row_order_and_treatment_labels_do_not_matter(df):
    shuffled = df.sample(frac=1.0, random_state=3)
    p1 = match(df, COLS).propensity
    p2 = match(shuffled, COLS).propensity
    np.testing.assert_allclose(pd.Series(p2.ps, index=shuffled.index).loc[df.index].to_numpy(), p1.ps, rtol=1e-9)
    lab = df.assign(treatment=np.where(df.treatment == 1, "PL", "non-PL"))
    r1 = match(df, COLS, method="vcg")
    r4 = match(lab, COLS.replace(treated_label="PL"), method="vcg")
    assert r4.estimate().raw.estimate == pytest.approx(r1.estimate().raw.estimate, rel=1e-12)
    flipped = match(df.assign(posttest=-df.posttest), COLS, method="vcg").estimate()
    assert flipped.raw.estimate == pytest.approx(-r1.estimate().raw.estimate, rel=1e-10)


def test_no_school_column_clusters_by_student(df):
    cols = COLS.replace(school=None)
    r = match(df, cols, method="propensity")
    e = r.estimate()
    assert e.raw.n_clusters == r.matched.index.nunique()
    assert "CR1 SE by student" in e.raw.method


def test_rescaling_the_outcome_leaves_the_effect_size_unchanged(df):
    base = match(df, COLS, method="vcg").estimate()
    scaled = match(df.assign(posttest=10 * df.posttest + 3), COLS, method="vcg").estimate()
    assert scaled.raw.estimate == pytest.approx(10 * base.raw.estimate, rel=1e-9)
    assert scaled.effect_size.estimate == pytest.approx(base.effect_size.estimate, rel=1e-9)
    assert scaled.effect_size.se == pytest.approx(base.effect_size.se, rel=1e-9)
    assert scaled.raw.pvalue == pytest.approx(base.raw.pvalue, rel=1e-9)


def test_balance_ecdf_and_flags(results, df):
    """eCDF max before matching is the two-sample KS statistic (scipy); after matching, the
    weighted eCDFs of the matched sample; flags follow their definitions."""
    from scipy import stats

    m = results["propensity"]
    t = m.balance().table
    row = t[(t.group == "all") & (t.variable == "pretest")].iloc[0]
    d = m.data
    x_t, x_c = d.loc[d.treatment == 1, "pretest"], d.loc[d.treatment == 0, "pretest"]
    assert row.ecdf_max_before == pytest.approx(stats.ks_2samp(x_t, x_c).statistic, abs=1e-12)
    x = m.matched
    grid = np.unique(d["pretest"])
    w = x["_weight"].to_numpy()
    tt = x["treatment"].to_numpy() == 1
    F = lambda sel: np.array([w[sel & (x["pretest"].to_numpy() <= g)].sum() for g in grid]) / w[sel].sum()
    gap = np.abs(F(tt) - F(~tt))
    assert row.ecdf_max_after == pytest.approx(gap.max(), abs=1e-12)
    assert row.ecdf_mean_after == pytest.approx(gap.mean(), abs=1e-12)
    a, b = t["smd_after"].abs(), t["smd_before"].abs()
    assert (t["imbalanced"] == (a > 0.1)).all()
    assert (t["worse"] == ((a > b) & (a > 0.05))).all()


def test_mahalanobis_match_does_not_depend_on_flags_being_booleans():
    """0/1 covariates stored as booleans (as Parquet and Stata files store flags) were left out
    of the default Mahalanobis distance, so the sample's match moved (1.30 → 1.26 points) and
    frl's balance after matching went from 0 to 0.52 SD. They now enter as 0/1, and the summary
    names the distance's variables."""
    import warnings

    from pleval.data import SAMPLE_COLUMNS
    from pleval.errors import PlevalWarning

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    flags = ["female", "frl", "ell", "sped"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        a = match(d, SAMPLE_COLUMNS, method="mahalanobis")
        b = match(d.astype({f: bool for f in flags}), SAMPLE_COLUMNS, method="mahalanobis")
    assert a.options["distance"] == b.options["distance"] == ("pretest", *flags)
    assert b.estimate().raw.estimate == a.estimate().raw.estimate
    assert "Mahalanobis distance on: pretest, female, frl, ell, sped" in b.summary()


def test_a_two_level_variable_is_one_balance_row_whatever_its_type():
    """A 0/1 flag stored as booleans gave two mirror-image balance rows (frl[False], frl[True]),
    counted twice among the imbalanced ones; it is now the 0/1 row, and a two-level text
    variable is its second level alone (cobalt's ``drop.first = "if2"``)."""
    from pleval.data import SAMPLE_COLUMNS

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[d.grade.isin([3, 4])]
    typed = d.assign(frl=d.frl.astype(bool), female=np.where(d.female == 1, "yes", "no"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        m = match(typed, SAMPLE_COLUMNS, method="mahalanobis", distance=["pretest"])
    t = m.balance().table.set_index(["group", "variable"])
    assert list(t.loc["all"].index) == ["pretest", "female[yes]", "frl", "ell", "sped", "race[asian]", "race[black]",
                                        "race[hispanic]", "race[other]", "race[white]"]
    x, a = m.data, m.matched
    tt, ta, w = x.treatment == 1, a.treatment == 1, a["_weight"]
    for row, flag in (("frl", a.frl == True), ("female[yes]", a.female == "yes")):  # noqa: E712
        col = (x.frl == True) if row == "frl" else (x.female == "yes")  # noqa: E712
        sd = np.sqrt((col[tt].var() + col[~tt].var()) / 2)
        after = (np.average(flag[ta], weights=w[ta]) - np.average(flag[~ta], weights=w[~ta])) / sd
        assert t.loc[("all", row), "smd_before"] == pytest.approx((col[tt].mean() - col[~tt].mean()) / sd, rel=1e-9)
        assert t.loc[("all", row), "smd_after"] == pytest.approx(after, rel=1e-9)


def test_estimate_by_a_column_with_missing_values_warns_of_the_rows_in_no_group():
    """MatchResult.estimate(by=col) left rows without a value of col out of every group without
    a word (541 of the sample's 5,301 matched PL rows for a 10%-missing column)."""
    from pleval.data import SAMPLE_COLUMNS
    from pleval.errors import PlevalWarning

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    rng = np.random.default_rng(0)
    d["tier"] = rng.choice(["low", "high"], len(d))
    d.loc[rng.choice(len(d), 5000, replace=False), "tier"] = None
    m = match(d, SAMPLE_COLUMNS, method="vcg")
    n_pl = m.estimate().raw.n_treated
    with pytest.warns(PlevalWarning, match=r"matched row\(s\) \((\d+) PL\) have no value of 'tier'") as rec:
        t = m.estimate(by="tier").to_frame()
    n_out = int(re.search(r"\((\d+) PL\)", str(rec[0].message)).group(1))
    assert n_out == n_pl - int(t[t.scale == "raw"]["n_treated"].sum()) > 0


def test_balance_table_does_not_depend_on_the_row_order():
    """The balance table's subject blocks came in the order the subjects first appear in the
    rows: the same match gave ['all', 'reading', 'math'] for one row order and
    ['all', 'math', 'reading'] for another. The groups are now sorted by name."""
    from pleval.data import SAMPLE_COLUMNS

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d.iloc[np.r_[np.flatnonzero(d.subject == "reading"), np.flatnonzero(d.subject == "math")]]
    a = match(d, SAMPLE_COLUMNS, method="vcg").balance().table
    b = match(d.sample(frac=1.0, random_state=4), SAMPLE_COLUMNS, method="vcg").balance().table
    assert list(dict.fromkeys(a["group"])) == ["all", "math", "reading"]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", ["0.1", -0.1, 0, float("nan"), True, None])
def test_balance_threshold_must_be_a_positive_number(results, bad):
    """balance(threshold="0.1") raised numpy's "Invalid comparison between dtype=float64 and
    str"; a negative, zero or NaN threshold flagged every row or none, and True was read as 1."""
    with pytest.raises(DataError, match=r"threshold \(the \|SMD\| above which balance is flagged\) must be a positive"):
        results["vcg"].balance(threshold=bad)
    b = results["vcg"].balance(threshold=np.float32(0.2))
    assert b.threshold == pytest.approx(0.2) and (b.table["imbalanced"] == (b.table["smd_after"].abs() > b.threshold)).all()


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
@pytest.mark.parametrize("method", ["vcg", "propensity"])
def test_effects_by_a_column_that_is_not_an_exact_key_keep_the_sets_whole(method):
    """estimate(by=col) for a column the sets are not matched on (urbanicity): every matched set
    in its PL student's group, as the subgroup analysis does; a comparison student reused by
    sets of two groups counts in each with its sets' weight there. Before, rows went by their
    own value: 5,816 of 9,030 VCG comparison rows sat in another group than their PL student's
    (rural 0.737 where the whole sets give 1.260). Checked against statsmodels WLS on the long
    sample grouped by the PL student's value; grouping by an exact key (grade) is unchanged."""
    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[d["grade"].isin([3, 4]) & (d["subject"] == "math")].reset_index(drop=True)
    m = pleval.match(d, COLS, method=method)
    s = m.matched
    pl_val = s[s["treatment"] == 1].set_index("_set")["urbanicity"]
    s = s.assign(group=s["_set"].map(pl_val))
    got = m.estimate(by="urbanicity").to_frame()
    got = got[got["scale"] == "raw"].set_index("urbanicity")["estimate"]
    f = "posttest ~ treatment + pretest + female + frl + ell + sped + C(race) + C(grade)"
    for g, part in s.groupby("group"):
        ref = smf.wls(f, part, weights=part["_weight"]).fit().params["treatment"]
        assert got[g] == pytest.approx(ref, rel=1e-8, abs=1e-9), g
    by_grade = m.estimate(by="grade").to_frame()
    by_grade = by_grade[by_grade["scale"] == "raw"].set_index("grade")["estimate"]
    for g, part in s.groupby("grade"):
        assert by_grade[g] == pytest.approx(smf.wls(f.replace(" + C(grade)", ""), part, weights=part["_weight"]).fit()
                                            .params["treatment"], rel=1e-8)


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_effects_and_sensitivity_by_a_numeric_column_with_missing_values():
    """A numeric by column with missing values (groupby's ngroup gives floats) stopped with a
    TypeError; and sensitivity by a column the sets are not matched on took other groups' sets
    through reused comparisons (sets without a PL row: the bounds stopped). Each group's Rosenbaum
    bounds now count its own PL students' sets."""
    from pleval.sensitivity import sensitivity

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[d["grade"].isin([3, 4]) & (d["subject"] == "math")].reset_index(drop=True)
    d["pov_hi"] = (d["school_poverty"] > 0.5).astype(float).where(d.index % 7 != 0)
    m = pleval.match(d, COLS, method="vcg")
    tab = m.estimate(by="pov_hi").to_frame()
    assert sorted(tab["pov_hi"].unique()) == [0.0, 1.0]
    s = sensitivity(m, by="urbanicity")
    pl = m.matched[m.matched["treatment"] == 1].groupby("urbanicity")["_set"].nunique()
    for (level,), r in s:
        assert r.rosenbaum.n_sets == pl[level]


def test_hedges_omega_goes_with_the_pooled_sd_only(results):
    """ω = 1 − 3/(4N − 9) corrects the pooled SD's g (WWC); with the comparison group's SD (Glass)
    or a norm SD the effect size is the difference over that SD, as in the RCT designs and the
    docs. Before 2026-12-04 a matched design's Glass effect size took ω and an RCT's did not."""
    m = results["propensity"]
    pooled, glass = m.estimate(), m.estimate(sd="comparison")
    assert pooled.omega < 1 and glass.omega == 1.0
    assert glass.effect_size.estimate == pytest.approx(glass.raw.estimate / glass.sd, rel=1e-12)


def test_hc_by_a_group_that_is_not_an_exact_key_fits_the_groups_own_sets(df):
    """estimate(by=col, vcov="HC1") with col not an exact key: each group's copies are those of
    its own sets (each set in its PL row's group), as the CR fit takes them; before 2026-12-04 the
    copies of other groups' sets reusing a row of the group were fitted too (HC1 gave 1.110 where
    CR1 and the sets by hand give 1.274). Checked against statsmodels WLS with HC1."""
    import statsmodels.api as sm

    from pleval.matching.effect import effect_design

    d = df.assign(urb=np.where(np.random.default_rng(0).random(len(df)) < 0.5, "a", "b"))
    m = match(d, COLS, method="propensity")
    e = m.estimate(by="urb", vcov="HC1")
    long = m.matched.copy()
    t = long["treatment"].to_numpy() == 1
    long["g"] = long["_set"].map(long[t].set_index("_set")["urb"])
    for g in "ab":
        part = long[long["g"] == g]
        des = effect_design(part, outcome="posttest", treatment="treatment", pretests=COLS.pretest,
                            covariates=COLS.covariates, strata=m.strata, school="school_id")
        fit = sm.WLS(des.y, des.X, weights=des.weights).fit(cov_type="HC1")
        j = list(des.names).index("treatment")
        assert e[g].raw.estimate == pytest.approx(fit.params[j], rel=1e-9)
        assert e[g].raw.se == pytest.approx(fit.bse[j], rel=1e-9)


def test_vcg_a_pl_school_whose_pl_rows_lack_the_outcome_is_still_a_pl_school():
    """VCG draws comparisons from non-PL schools. A PL school whose PL rows all lack the outcome (or
    the pretest) is still a PL school: its comparison rows are left out and counted (before
    2026-12-04 the rows without an outcome left first, the school no longer counted as PL, and 41
    of its comparison rows became comparisons; 82 without the pretest)."""
    d = pd.read_csv("sample_data/pl_matched_students.csv")
    s0 = d.loc[d.treatment == 1, "school_id"].iloc[0]
    d.loc[d.index[d.treatment == 0][:30], "school_id"] = s0
    for col in ("posttest", "pretest"):  # left by match, or by validation (a PL row needs its pretest)
        lost = d.copy()
        lost.loc[(lost.school_id == s0) & (lost.treatment == 1), col] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pleval.PlevalWarning)
            m = pleval.match(lost, SAMPLE_COLUMNS, method="vcg")
        ex = m.exclusions.set_index("reason")["n_rows"]
        assert ex["comparison rows in PL schools (comparisons come from non-PL schools only)"] == \
            30 - int(lost.loc[d.index[d.treatment == 0][:30], "pretest"].isna().sum()), col
        assert not (m.matched["school_id"] == s0).any()


def test_writing_into_the_frames_read_from_a_result_leaves_its_answers_unchanged(df):
    """res.data, res.matched and balance tables are read as shallow copies (copy-on-write): a write into
    them copies only what it writes and never reaches the result, whose later estimate and balance equal
    those before the write; before 2026-12-05 ``res.data["posttest"] = 0`` changed them."""
    res = match(validate(df, COLS), COLS, method="propensity")
    before, bal = res.estimate().raw, res.balance().table
    data = res.data
    assert np.shares_memory(data[COLS.pretest[0]].to_numpy(), res.data[COLS.pretest[0]].to_numpy())  # no copy
    data[COLS.outcome] = 0.0
    data.loc[data.index[::2], COLS.pretest[0]] = 0.0
    matched = res.matched
    matched[COLS.outcome] = 0.0
    b = res.balance()
    table = b.table
    table.loc[:, "smd"] = 0.0
    after = res.estimate().raw
    assert (after.estimate, after.se) == (before.estimate, before.se)
    pd.testing.assert_frame_equal(res.balance().table, bal)
    pd.testing.assert_frame_equal(b.table, bal)
    assert not res.matched[COLS.outcome].eq(0).all()
    assert res.data[COLS.outcome].equals(df.loc[res.data.index, COLS.outcome])
    assert data[COLS.outcome].eq(0).all()  # the write is the caller's own


def test_writing_into_the_pl_row_frames_read_from_results_leaves_the_pl_row_counts_unchanged(df):
    """Validated.dropped_pl and MatchResult.excluded_pl (fields with a default) are read as shallow
    copies too: the PL rows followed from the file to the estimate stay those counted here, whatever
    is written into the frames read; before 2026-12-05 such a write changed those counts."""
    from pleval.estimate import _pl_flows

    d, c = df.copy(), COLS
    pl = d.index[d[c.treatment] == 1]
    d.loc[pl[:20], c.pretest[0]] = np.nan  # validation drops these
    d.loc[pl[20:30], c.outcome] = np.nan  # matching excludes these
    v = validate(d, c)
    m = match(v, c, method="propensity")
    for frame in (v.dropped_pl, m.excluded_pl):
        frame["n_rows"] = 999
        frame.loc[:, "subject"] = "written"
    keys = sorted(d[c.subject].unique())
    for key, flow in zip(keys, _pl_flows(v, m, keys)):
        t = (d[c.subject] == key) & (d[c.treatment] == 1)
        n = dict(zip(flow["reason"], flow["n_rows"]))
        assert n["PL rows read"] == t.sum()
        assert n["missing pretest"] == (t & d[c.pretest[0]].isna()).sum() > 0
        assert n["missing outcome"] == (t & d[c.pretest[0]].notna() & d[c.outcome].isna()).sum() > 0
        mt = m.matched
        assert n["PL rows in the estimate"] == ((mt[c.subject] == key) & (mt[c.treatment] == 1)).sum()


def test_every_frame_of_a_frozen_results_class_is_read_through_frame():
    """Every public field of a frozen dataclass in pleval whose type names a DataFrame (a frame, an
    optional one, a mapping of frames) is a pleval._results.Frame, as docs/architecture.md says; private
    ones (RCTResult's) are read through properties that copy, report blocks are formatted cells."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    from pleval._results import Frame

    covered, not_covered = [], []
    for mod in pkgutil.walk_packages(pleval.__path__, "pleval."):
        if mod.name.startswith("pleval.report"):
            continue
        module = importlib.import_module(mod.name)
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == mod.name
                    and cls.__dataclass_params__.frozen):
                continue
            for f in dataclasses.fields(cls):
                if "DataFrame" in str(f.type) and not f.name.startswith("_"):
                    read = inspect.getattr_static(cls, f.name, None)
                    (covered if isinstance(read, Frame) else not_covered).append(f"{cls.__qualname__}.{f.name}")
    assert not not_covered
    assert {"MatchResult.excluded_pl", "Validated.dropped_pl", "CheckReport.roles", "SchoolEffects.vcov",
            "SchoolEffects.vcov_raw", "PlaceboResult.placebo_vcov", "MatchResult.data"} <= set(covered)


def test_estimate_label_names_the_matched_pl_students_when_some_are_left_out(df):
    """With a caliper and no replacement some PL rows find no comparison: the estimate is the effect
    on the PL students matched, not on the treated. Before 2026-12-05 its label still said "effect on
    the treated" (the report already said whom it is about)."""
    m = match(df, COLS, replace=False, caliper=0.02)
    x = m.matched
    n_in = int(x.loc[x[COLS.treatment] == 1].index.nunique())  # the PL rows in the matched sample
    n = int((m.data[COLS.treatment] == 1).sum())  # every PL row of the file reached matching here
    assert (df[COLS.treatment] == 1).sum() == n and 0 < n_in < n
    e = m.estimate()
    assert e.raw.label == f"{COLS.outcome}: effect on the matched PL students ({n_in:,} of {n:,})"
    assert e.raw.n_treated == n_in
    why = m.unmatched["reason"].value_counts()
    assert e.note == (f"{n - n_in:,} of {n:,} PL rows ({(n - n_in) / n:.1%}) are not in the estimate ("
                      + "; ".join(f"{r}: {k:,}" for r, k in why.items()) + "): it is the effect on the PL students in it.")
    assert (e.to_frame()["note"] == e.note).all() and e.note in e.summary()
    full = match(df, COLS, caliper=False)  # with replacement, no caliper: every PL row matched
    assert full.unmatched.empty
    assert full.estimate().raw.label == f"{COLS.outcome}: effect on the treated" and full.estimate().note == ""
    assert "note" not in full.estimate().to_frame()


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_few_comparison_schools_behind_the_matched_effect_are_noted():
    """With a handful of comparison schools serving every PL school, a nominal 95% interval covers
    about 93% (docs/matching.md): the matched effect says how many schools the comparison weight
    rests on (Kish's effective number of the schools' summed weights, checked against the long
    matched sample), in the Python result and in pleval.estimate's notes; with the sample's 268
    comparison schools it says nothing."""
    from pleval.matching.effect import comparison_schools

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[d["subject"] == "math"]
    comp = d.loc[d["treatment"] == 0, "school_id"].unique()
    few = d[(d["treatment"] == 1) | d["school_id"].isin(comp[:4])].reset_index(drop=True)
    m = pleval.match(few, COLS, method="propensity")
    s = m.matched
    W = s[s["treatment"] == 0].groupby("school_id")["_weight"].sum()
    J_eff, share = W.sum() ** 2 / (W**2).sum(), W.max() / W.sum()
    codes = pd.factorize(s["school_id"])[0]
    assert comparison_schools(s["_weight"].to_numpy(), codes, s["treatment"].to_numpy() == 1) == pytest.approx(
        (4, J_eff, share), rel=1e-12)
    note = m.estimate().note
    assert f"4 comparison schools, {J_eff:.1f} effectively; the largest holds {share:.0%}" in note
    assert note.startswith("252 of 3,051 PL rows")  # after the note on who the estimate is about
    ev = pleval.estimate(few, COLS, method="propensity", placebo=False, sensitivity=False)
    assert any(n.startswith("math: the comparison students' weight rests on few schools") for n in ev.notes)
    assert "few schools" not in (pleval.match(d, COLS, method="propensity").estimate().note)
