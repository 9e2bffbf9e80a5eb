"""Binary outcomes: the Cox index and its variance against the formula and statsmodels'
2 × 2 table; logit and linear-probability estimates against direct statsmodels fits with
cluster-robust SEs; yes/no detection and its errors."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import special
from statsmodels.stats.contingency_tables import Table2x2

from pleval import DataError, DesignError
from pleval.binary import binary_effect, binary_values, cox_index_variance, is_binary
from pleval.effect_sizes import cox_index, hedges_omega
from pleval.percentiles import improvement_index

from .conftest import sim_reps
from .test_heterogeneity_school_effects import dense_hc2_df
from .test_rct_inference import direct_cr2


# ----------------------------------------------------------------------------- Cox index
def test_cox_index_variance_is_the_handbook_formula_and_the_log_odds_ratio_variance():
    """v(d_Cox) = ω²/1.65²·[1/(n_T p_T) + 1/(n_T(1−p_T)) + 1/(n_C p_C) + 1/(n_C(1−p_C))]: the cell
    counts' log-odds-ratio variance (statsmodels Table2x2) over 1.65² (Sánchez-Meca et al. 2003)."""
    a, b, c, d = 62, 38, 45, 55  # PL yes/no, comparison yes/no
    n_t, n_c = a + b, c + d
    p_t, p_c = a / n_t, c / n_c
    lor_var = Table2x2(np.array([[a, b], [c, d]])).log_oddsratio_se ** 2
    assert cox_index_variance(p_t, p_c, n_t, n_c, correction=None) == pytest.approx(lor_var / 1.65**2, rel=1e-12)
    omega = 1 - 3 / (4 * (n_t + n_c) - 9)
    assert cox_index_variance(p_t, p_c, n_t, n_c) == pytest.approx(omega**2 * lor_var / 1.65**2, rel=1e-12)
    by_hand = omega**2 / 1.65**2 * (1 / 62 + 1 / 38 + 1 / 45 + 1 / 55)
    assert cox_index_variance(p_t, p_c, n_t, n_c) == pytest.approx(by_hand, rel=1e-12)
    # the index itself: ω·ln(OR)/1.65 with the table's odds ratio
    assert cox_index(p_t, p_c, n_t, n_c) == pytest.approx(omega * np.log(a * d / (b * c)) / 1.65, rel=1e-12)
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        cox_index_variance(1.0, 0.5, 10, 10)


@pytest.mark.parametrize("p_t, p_c, n, published", [(0.979, 0.833, 94, 41), (0.910, 0.730, 90, 29)])
def test_cox_index_reproduces_a_published_wwc_finding(p_t, p_c, n, published):
    """WWC review of Larson & Rumberger (1995), ALAS (reviewed September 2017, Study 74999):
    enrollment at the end of 9th grade, 97.9% vs 83.3% of 94 students, improvement index +41; end
    of 8th grade, 91.0% vs 73.0% of 90 students, +29. The WWC computes the Cox index and converts
    it with 100·(Φ(d) − 0.5); the 1.65 matters (1.81, the logistic SD, gives 39 and 27; probits 36 and 27)."""
    d = float(cox_index(p_t, p_c, n // 2, n - n // 2))  # ω depends on N only
    assert round(improvement_index(d)) == published
    assert round(improvement_index(d * 1.65 / 1.81)) != published


# ----------------------------------------------------------------------------- estimation
@pytest.fixture(scope="module")
def clustered():
    """A small clustered trial with a pretest and a yes/no outcome."""
    rng = np.random.default_rng(16)
    G, m = 30, 40
    school = np.repeat(np.arange(G), m)
    z = np.repeat(rng.permutation(np.r_[np.ones(G // 2), np.zeros(G // 2)]), m)
    u = np.repeat(rng.normal(0, 0.5, G), m)
    pre = rng.normal(0, 1, G * m)
    y = (rng.uniform(size=G * m) < special.expit(-0.2 + 0.4 * z + 0.8 * pre + u)).astype(float)
    w = rng.choice([0.5, 1.0, 2.0], size=G * m)
    return pd.DataFrame({"y": y, "z": z, "pre": pre, "school": school, "w": w})


def _cluster_sandwich(res, d, w):
    """CR1 sandwich of a weighted logit, one school at a time: H⁻¹(Σ_g s_g s_g')H⁻¹ · G/(G−1)·(n−1)/(n−k)."""
    X = np.column_stack([np.ones(len(d)), d["z"], d["pre"]])
    mu = res.fittedvalues.to_numpy()
    H = sum(w[i] * mu[i] * (1 - mu[i]) * np.outer(X[i], X[i]) for i in range(len(d)))
    meat = np.zeros((3, 3))
    for g in np.unique(d["school"]):
        i = (d["school"] == g).to_numpy()
        s = X[i].T @ (w[i] * (d["y"].to_numpy()[i] - mu[i]))
        meat += np.outer(s, s)
    G, n = d["school"].nunique(), len(d)
    Hi = np.linalg.inv(H)
    return G / (G - 1) * (n - 1) / (n - 3) * Hi @ meat @ Hi


def _design(d):
    X = np.column_stack([np.ones(len(d)), d["z"], d["pre"]])
    return X, ["const", "z", "pre"]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("estimand", ["ATT", "ITT"])
def test_logit_matches_statsmodels_glm_with_cluster_robust_se(clustered, weighted, estimand):
    d = clustered
    X, names = _design(d)
    w = d["w"].to_numpy() if weighted else None
    r = binary_effect(d["y"], X, names, treatment="z", weights=w, clusters=d["school"], method="logit",
                      estimand=estimand, logit_vcov="CR1")
    ref = smf.glm("y ~ z + pre", data=d, family=sm.families.Binomial(), var_weights=d["w"] if weighted else None)
    if weighted:  # statsmodels warns that its sandwich with var_weights is not supported: written out here
        ref = ref.fit()
        V = _cluster_sandwich(ref, d, d["w"].to_numpy())
    else:
        ref = ref.fit(cov_type="cluster", cov_kwds={"groups": d["school"]})
        V = ref.cov_params().to_numpy()
    b, se = ref.params["z"], np.sqrt(V[1, 1])
    omega = hedges_omega(len(d))
    assert r.conditional_log_odds_ratio == pytest.approx(b, rel=1e-7)
    assert r.conditional_log_odds_ratio_se == pytest.approx(se, rel=1e-6)
    assert r.cox.df == 29  # G − 1
    # adjusted proportions: average predictions with z set to 1 and to 0 over the estimand's rows
    rows = d[d["z"] == 1] if estimand == "ATT" else d
    ww = rows["w"].to_numpy() if weighted else np.ones(len(rows))
    p1 = np.average(ref.predict(rows.assign(z=1.0)), weights=ww)
    p0 = np.average(ref.predict(rows.assign(z=0.0)), weights=ww)
    assert (r.p_treated, r.p_comparison) == pytest.approx((p1, p0), rel=1e-7)
    assert r.difference.estimate == pytest.approx(100 * (p1 - p0), rel=1e-6)
    # the Cox index of the adjusted (marginal) proportions
    assert r.cox.estimate == pytest.approx(omega * (special.logit(p1) - special.logit(p0)) / 1.65, rel=1e-6)
    assert r.difference.scale == "percentage points"
    # delta-method SE against a numerical gradient of the average difference in the parameters

    def props(beta):
        X1 = np.column_stack([np.ones(len(rows)), np.ones(len(rows)), rows["pre"]])
        X0 = X1.copy()
        X0[:, 1] = 0
        return np.average(special.expit(X1 @ beta), weights=ww), np.average(special.expit(X0 @ beta), weights=ww)

    def diff(beta):
        a, b_ = props(beta)
        return a - b_

    def cox(beta):
        a, b_ = props(beta)
        return omega * (special.logit(a) - special.logit(b_)) / 1.65

    beta = ref.params.to_numpy()
    for f, got, k in ((diff, r.difference.se, 100), (cox, r.cox.se, 1)):
        grad = np.array([(f(beta + h) - f(beta - h)) / 2e-6 for h in np.eye(3) * 1e-6])
        assert got == pytest.approx(k * np.sqrt(grad @ V @ grad), rel=1e-5)
    assert "logistic" in r.difference.method and "CR1" in r.difference.method


@pytest.mark.parametrize("weighted", [False, True])
def test_logit_cr2_is_the_dense_bell_mccaffrey_sandwich_on_the_working_scale(clustered, weighted):
    """The default CR2: the dense CR2 of the Pearson residuals w(y − μ)/√v on √v·X (v = wμ(1 − μ)),
    whose bread is the logit's information, for each reported contrast (the conditional log odds
    ratio, the difference and the Cox index by their gradients), with its Satterthwaite df."""
    d = clustered.iloc[: 12 * 40]  # 12 schools: dense n × n stays small
    X, names = _design(d)
    w = d["w"].to_numpy() if weighted else np.ones(len(d))
    r = binary_effect(d["y"], X, names, treatment="z", weights=w if weighted else None, clusters=d["school"],
                      method="logit", estimand="ITT")
    ref = smf.glm("y ~ z + pre", data=d, family=sm.families.Binomial(), var_weights=w).fit()
    mu, y = ref.fittedvalues.to_numpy(), d["y"].to_numpy()
    v = w * mu * (1 - mu)
    Xt, e = np.sqrt(v)[:, None] * X, w * (y - mu) / np.sqrt(v)
    V, _ = direct_cr2(Xt, e, d["school"].to_numpy())  # (its refit's residuals are e: X̃'e is the score, 0)
    assert r.conditional_log_odds_ratio_se == pytest.approx(np.sqrt(V[1, 1]), rel=1e-6)
    X1, X0 = X.copy(), X.copy()
    X1[:, 1], X0[:, 1] = 1.0, 0.0
    m1, m0 = special.expit(X1 @ ref.params.to_numpy()), special.expit(X0 @ ref.params.to_numpy())
    p1, p0 = np.average(m1, weights=w), np.average(m0, weights=w)
    g = np.average((m1 * (1 - m1))[:, None] * X1, axis=0, weights=w) - np.average((m0 * (1 - m0))[:, None] * X0, axis=0,
                                                                                   weights=w)
    _, (df_d,) = direct_cr2(Xt, e, d["school"].to_numpy(), contrasts=g)
    assert r.difference.se == pytest.approx(100 * np.sqrt(g @ V @ g), rel=1e-6)
    assert r.difference.df == pytest.approx(df_d, rel=1e-6) and 1 < r.difference.df < 11
    assert (r.p_treated, r.p_comparison) == pytest.approx((p1, p0), rel=1e-7)
    assert "CR2 by school, Satterthwaite df" in r.difference.method
    cr1 = binary_effect(d["y"], X, names, treatment="z", weights=w if weighted else None, clusters=d["school"],
                        method="logit", estimand="ITT", logit_vcov="CR1")
    assert cr1.difference.estimate == r.difference.estimate and cr1.difference.df == 11
    # without clusters: HC2 on Bell & McCaffrey's df of the same working-scale fit (n − k before 2026-12-05)
    hc2 = binary_effect(d["y"], X, names, treatment="z", weights=w if weighted else None, method="logit",
                        estimand="ITT")
    assert hc2.difference.df == pytest.approx(dense_hc2_df(Xt, np.ones(len(d)), g), rel=1e-6)
    assert hc2.difference.df < len(d) - X.shape[1] and "HC2, Bell–McCaffrey df" in hc2.difference.method
    with pytest.raises(DataError, match="logit_vcov must be"):
        binary_effect(d["y"], X, names, treatment="z", clusters=d["school"], logit_vcov="CR3")


@pytest.mark.slow
def test_logit_cr2_holds_its_size_with_few_schools():
    """No effect, 12 schools of 40 students, school intercepts SD 0.6 (logit scale) the model
    omits: the default CR2 test of the difference rejects about 5% (1,000 trials: docs/outcomes.md;
    CR1 on G − 1 df 7.2%)."""
    reps = sim_reps(1000, minimum=200)
    G, m = 12, 40
    school = np.repeat(np.arange(G), m)
    rng = np.random.default_rng(7)
    rejected = 0
    for _ in range(reps):  # a loop over data sets
        z = rng.permutation(np.repeat([0.0, 1.0], G // 2))[school]
        x = rng.normal(size=G * m)
        y = (rng.random(G * m) < special.expit(-0.3 + rng.normal(0, 0.6, G)[school] + x)).astype(float)
        r = binary_effect(y, np.column_stack([np.ones(G * m), z, x]), ["const", "z", "x"], treatment="z",
                          clusters=school, estimand="ITT")
        rejected += r.difference.pvalue < 0.05
    assert rejected / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps), rejected / reps


def test_logit_without_adjusters_reproduces_the_two_proportions(clustered):
    """Treatment only: the fitted proportions are the raw ones, and the Cox index is the
    Handbook's ω·[logit(p_T) − logit(p_C)]/1.65 from them."""
    d = clustered
    X = np.column_stack([np.ones(len(d)), d["z"]])
    r = binary_effect(d["y"], X, ["const", "z"], treatment="z", clusters=d["school"], estimand="ITT")
    p_t, p_c = d.loc[d.z == 1, "y"].mean(), d.loc[d.z == 0, "y"].mean()
    n_t, n_c = int((d.z == 1).sum()), int((d.z == 0).sum())
    assert (r.p_treated, r.p_comparison) == pytest.approx((p_t, p_c), rel=1e-8)
    assert r.cox.estimate == pytest.approx(float(cox_index(p_t, p_c, n_t, n_c)), rel=1e-7)
    assert r.cox_se_handbook == pytest.approx(float(np.sqrt(cox_index_variance(p_t, p_c, n_t, n_c))), rel=1e-12)


@pytest.mark.parametrize("estimand", ["ATT", "ITT"])
def test_linear_probability_model_matches_statsmodels_cluster_ols(clustered, estimand):
    d = clustered
    X, names = _design(d)
    r = binary_effect(d["y"], X, names, treatment="z", weights=d["w"], clusters=d["school"], method="lpm",
                      estimand=estimand, lpm_vcov="CR1")
    ref = smf.wls("y ~ z + pre", data=d, weights=d["w"]).fit(cov_type="cluster", cov_kwds={"groups": d["school"]})
    assert r.difference.estimate == pytest.approx(100 * ref.params["z"], rel=1e-9)
    assert r.difference.se == pytest.approx(100 * ref.bse["z"], rel=1e-8)
    # the WWC's adjusted proportions: one observed, the other shifted by the adjusted difference
    if estimand == "ATT":
        p_t = np.average(d.loc[d.z == 1, "y"], weights=d.loc[d.z == 1, "w"])
        p_c = p_t - ref.params["z"]
    else:
        p_c = np.average(d.loc[d.z == 0, "y"], weights=d.loc[d.z == 0, "w"])
        p_t = p_c + ref.params["z"]
    omega = hedges_omega(len(d))
    assert r.cox.estimate == pytest.approx(omega * (special.logit(p_t) - special.logit(p_c)) / 1.65, rel=1e-9)
    assert r.cox.ci_low < r.cox.estimate < r.cox.ci_high
    assert r.cox.pvalue == pytest.approx(r.difference.pvalue, rel=1e-12)
    assert "linear-probability" in r.difference.method


def test_default_lpm_covariance_is_cr2(clustered):
    d = clustered
    X, names = _design(d)
    r = binary_effect(d["y"], X, names, treatment="z", clusters=d["school"], method="lpm")
    assert "CR2" in r.difference.method and np.isfinite(r.difference.df) and r.difference.df < 29


def test_separated_outcome_is_a_design_error(clustered):
    d = clustered.assign(y=clustered["z"])
    X, names = _design(d)
    with pytest.raises(DesignError, match="same value"):
        binary_effect(d["y"], X, names, treatment="z", clusters=d["school"])


@pytest.mark.parametrize("method, vcov", [("lpm", "HC1"), ("lpm", "CR1"), ("logit", "CR1"), ("logit", "CR2")])
def test_rows_of_weight_zero_count_for_nothing(clustered, method, vcov):
    """Rows of weight 0 counted in n_treated/n_control, ω and (through them) the small-sample
    factors and df; an arm without two rows of positive weight stopped with a raw numpy error.
    They now count for nothing: the result is the fit on the rows of positive weight."""
    rng = np.random.default_rng(3)
    d = clustered.assign(w=np.where((clustered.school < 2) | (rng.random(len(clustered)) < 0.15), 0.0,
                                    clustered.w))
    pos = d[d.w > 0]
    X, names = _design(d)
    kw = dict(treatment="z", method=method, clusters=d["school"])
    kw.update(lpm_vcov=vcov) if method == "lpm" else kw.update(logit_vcov=vcov)
    r = binary_effect(d["y"], X, names, weights=d["w"], **kw)
    n_t, n_c = int((pos.z == 1).sum()), int((pos.z == 0).sum())
    assert (r.difference.n_treated, r.difference.n_control) == (n_t, n_c)
    assert n_t < (d.z == 1).sum() and n_c < (d.z == 0).sum()
    assert r.omega == pytest.approx(1 - 3 / (4 * (n_t + n_c) - 9), rel=1e-14)
    if vcov != "HC1":
        assert r.difference.n_clusters == pos.school.nunique() == 28
    Xp, _ = _design(pos)
    ref = binary_effect(pos["y"], Xp, names, weights=pos["w"], **{**kw, "clusters": pos["school"]})
    for a, b in ((r.difference, ref.difference), (r.cox, ref.cox)):
        assert (a.estimate, a.se, a.df) == pytest.approx((b.estimate, b.se, b.df), rel=1e-9)
    if (method, vcov) == ("lpm", "HC1"):  # statsmodels' WLS on the rows of positive weight
        wls = sm.WLS(pos["y"].to_numpy(), Xp, weights=pos["w"].to_numpy()).fit(cov_type="HC1")
        assert r.difference.se == pytest.approx(100 * wls.bse[names.index("z")], rel=1e-9)
        assert r.difference.df == len(pos) - Xp.shape[1]


def test_an_arm_without_two_rows_of_positive_weight_is_named(clustered):
    d = clustered
    X, names = _design(d)
    for kept, n in ((0, 0), (1, 1)):  # every PL weight 0 but `kept`
        w = np.where(d.z == 1, 0.0, 1.0)
        w[np.flatnonzero(d.z == 1)[:kept]] = 1.0
        with pytest.raises(DesignError, match=rf"{n} PL row\(s\) of positive weight; the effect needs at least 2"):
            binary_effect(d["y"], X, names, treatment="z", weights=w, clusters=d["school"])


# ----------------------------------------------------------------------------- coding
@pytest.mark.parametrize("values, expected", [
    ([0, 1, 1, np.nan], [0, 1, 1, np.nan]),
    ([True, False, True], [1, 0, 1]),
    (["Yes", "no", " YES ", None], [1, 0, 1, np.nan]),
    (["Y", "N"], [1, 0]),
    (["true", "false"], [1, 0]),
])
def test_yes_no_codes(values, expected):
    s = pd.Series(values)
    assert is_binary(s)
    np.testing.assert_array_equal(binary_values(s, "proficient"), np.array(expected, dtype=float))


@pytest.mark.parametrize("values, message", [
    ([1, 2, 2, 1], "codes 1, 2 are not 0/1"),
    (["yes", "no", "maybe"], "'maybe'"),
    ([1, 1, np.nan], "every non-missing value is 1"),
])
def test_ambiguous_codes_name_the_column(values, message):
    with pytest.raises(DataError, match=f"column 'proficient'.*{message}"):
        binary_values(pd.Series(values), "proficient")


def test_scores_are_not_binary():
    assert not is_binary(pd.Series([181.0, 190.0, 200.5]))
    assert not is_binary(pd.Series([0, 1, 2]))
    assert not is_binary(pd.Series(["yes", "no", "maybe"]))


# ----------------------------------------------------------------------------- simulation
@pytest.mark.slow
@pytest.mark.parametrize("method", ["logit", "lpm"])
def test_ci_coverage_of_the_marginal_difference_in_a_cluster_trial(method):
    """30 schools of 40 students, half randomized to PL; y ~ Bernoulli(expit(−0.3 + 0.4·z + u + x)),
    school intercepts u ~ N(0, 0.6²), pretest x ~ N(0, 1). The true ITT is the population
    difference p₁ − p₀ with p_a = E[expit(−0.3 + 0.4a + v)], v ~ N(0, 1.36) (Gauss–Hermite);
    the adjusted proportions of a canonical-link logit with the treatment indicator are
    consistent for it under randomization even though the model omits u."""
    reps = sim_reps(1000, minimum=200)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    sd_v = np.sqrt(0.6**2 + 1)
    p1, p0 = (float(weights @ special.expit(-0.3 + 0.4 * a + sd_v * nodes) / weights.sum()) for a in (1, 0))
    G, m = 30, 40
    school = np.repeat(np.arange(G), m)
    omega = hedges_omega(G * m)
    true_pp, true_cox = 100 * (p1 - p0), omega * (special.logit(p1) - special.logit(p0)) / 1.65
    rng = np.random.default_rng(1616)
    cover_pp = cover_cox = 0
    est = []
    for _ in range(reps):
        z = rng.permutation(np.repeat([0.0, 1.0], G // 2))[school]
        x = rng.normal(size=G * m)
        y = (rng.random(G * m) < special.expit(-0.3 + 0.4 * z + rng.normal(0, 0.6, G)[school] + x)).astype(float)
        r = binary_effect(y, np.column_stack([np.ones(G * m), z, x]), ["const", "z", "x"], treatment="z",
                          clusters=school, method=method, estimand="ITT")
        cover_pp += r.difference.ci_low <= true_pp <= r.difference.ci_high
        cover_cox += r.cox.ci_low <= true_cox <= r.cox.ci_high
        est.append(r.difference.estimate)
    se = np.sqrt(0.95 * 0.05 / reps)
    for rate in (cover_pp / reps, cover_cox / reps):
        assert abs(rate - 0.95) < 3.5 * se + 0.01, (method, rate)
    assert abs(np.mean(est) - true_pp) < 4 * np.std(est) / np.sqrt(reps)
    print(f"{method}: coverage pp {cover_pp / reps:.3f}, Cox {cover_cox / reps:.3f}; mean {np.mean(est):.3f} "
          f"vs true {true_pp:.3f} pp ({reps} replications)")


def test_cox_index_variance_pairs_series_by_label():
    """Proportion and size Series in another order were paired by position; now by label, the
    result a Series with p_t's labels."""
    p_t = pd.Series([0.6, 0.3], index=["math", "reading"])
    p_c = pd.Series([0.2, 0.5], index=["reading", "math"])
    n_t, n_c = pd.Series([50, 80], index=["math", "reading"]), pd.Series([70, 40], index=["reading", "math"])
    got = cox_index_variance(p_t, p_c, n_t, n_c, correction=None)
    want = (1 / (n_t * p_t) + 1 / (n_t * (1 - p_t)) + 1 / (n_c * p_c) + 1 / (n_c * (1 - p_c))) / 1.65**2
    assert list(got.index) == ["math", "reading"]
    np.testing.assert_allclose(got, want.reindex(got.index), rtol=1e-12)
