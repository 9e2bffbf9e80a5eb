"""pleval.power: published PowerUp!/PowerUpR numbers, an independent non-central t, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from pleval.errors import DesignError
from pleval.power import (
    BlockedClusterRCT,
    BlockedRCT,
    ClusterRCT,
    IndividualRCT,
    MatchedComparison,
    kish_deff,
    mdes_from_se,
    multiplier,
    power_from_ncp,
)

# Documented "cross-check" outputs of PowerUpR (Bulus, Dong, Kelcey & Spybrook), which reproduce
# the PowerUp! workbook (Dong & Maynard 2013): in each man page's examples the MDES of
# mdes.<design>(...) is passed, rounded to 3 digits, as `es` to power.<design>() and mrss.<design>()
# (github.com/metinbulus/PowerUpR, man/ira.Rd, man/bira2.Rd, man/cra2.Rd, man/bcra3r2.Rd).
# Defaults there: alpha .05 two-tailed, power .80, p .50, no covariates (R² 0, g 0).
POWERUPR = [
    # (id, design, documented MDES, documented size: (field, value, design to solve from))
    ("ira: mdes.ira(n=250)", IndividualRCT(students=250), 0.356, ("students", 250)),
    ("bira2c1: mdes.bira2c1(n=15, J=20)", BlockedRCT(schools=20, students=15), 0.325, ("students", 15)),
    ("bira2f1: mdes.bira2f1(n=15, J=20)", BlockedRCT(schools=20, students=15, constant_effect=False), 0.325,
     ("students", 15)),
    ("bira2: mdes.bira2(rho2=.17, omega2=.50, n=15, J=20)",
     BlockedRCT(schools=20, students=15, icc=0.17, omega=0.5, blocks="random"), 0.366, ("schools", 20)),
    ("cra2: mdes.cra2(rho2=.17, n=15, J=20)", ClusterRCT(schools=20, students=15, icc=0.17), 0.629, ("schools", 20)),
    ("bcra3r2: mdes.bcra3r2(rho3=.13, rho2=.10, omega3=.4, n=10, J=6, K=24)",
     BlockedClusterRCT(districts=24, schools=6, students=10, icc=0.10, icc_district=0.13, omega=0.4), 0.246,
     ("districts", 24)),
    ("bcra3f2: mdes.bcra3f2(rho2=.10, n=20, J=44, K=5)",
     BlockedClusterRCT(districts=5, schools=44, students=20, icc=0.10, blocks="fixed"), 0.145, ("schools", 44)),
]


@pytest.mark.parametrize("label,design,mdes,size", POWERUPR, ids=[c[0].split(":")[0] for c in POWERUPR])
def test_powerupr_mdes_power_and_size(label, design, mdes, size):
    pu = design.replace(method="powerup")
    assert round(pu.mdes(), 3) == mdes  # PowerUp!'s multiplier form: the documented number
    assert round(design.mdes(), 3) == mdes  # exact non-central t agrees at 3 digits here
    # power at the documented (rounded) MDES is 0.80 to the 3 digits the rounding allows
    assert abs(design.power(mdes) - 0.80) < 0.003
    # PowerUpR rounds its converged real-valued size; pleval returns the smallest whole size
    # that reaches the target, so it is the documented size or one more.
    key, n_doc = size
    need = pu.replace(**{key: 3}).sample_size(mdes, key)
    assert need in (n_doc, n_doc + 1)
    assert pu.replace(**{key: need}).mdes() <= mdes < pu.replace(**{key: need - 1}).mdes()


def test_matched_comparison_reduces_to_cluster_rct_and_cra2():
    m = MatchedComparison(schools=10, students=15, icc=0.17)
    c = ClusterRCT(schools=20, students=15, icc=0.17)
    assert m.sse == pytest.approx(c.sse, rel=1e-14) and m.df == c.df
    assert round(m.replace(method="powerup").mdes(), 3) == 0.629  # PowerUpR mdes.cra2(rho2=.17, n=15, J=20)
    # unequal arms: P = J_T / J
    m2 = MatchedComparison(schools=6, students=20, comparison_schools=14, icc=0.2, r2_school=0.5, r2_student=0.3)
    c2 = ClusterRCT(schools=20, students=20, icc=0.2, r2_school=0.5, r2_student=0.3, treated=0.3)
    assert m2.sse == pytest.approx(c2.sse, rel=1e-12)


def test_matched_comparison_df_is_welch_of_the_arms_school_means():
    """df: Welch–Satterthwaite's for the difference of the PL and comparison school means, less g
    (before 2026-12-05 J_T + J_C − g − 2, 22 for 4 PL schools against 20 where pleval's analysis
    has about 4.5)."""
    jt, nt, jc, nc, icc, r2s, r2i, dw, g = 4, 30, 20, 25, 0.2, 0.3, 0.5, 1.4, 1
    d = MatchedComparison(schools=jt, students=nt, comparison_schools=jc, comparison_students=nc, icc=icc,
                          r2_school=r2s, r2_student=r2i, deff_weights=dw, covariates=g)
    a = (icc * (1 - r2s) + (1 - icc) * (1 - r2i) / nt) / jt  # variance of the mean of J_T school means
    b = (icc * (1 - r2s) + (1 - icc) * (1 - r2i) * dw / nc) / jc
    assert d.sse == pytest.approx(math.sqrt(a + b), rel=1e-12)
    assert d.df == pytest.approx((a + b) ** 2 / (a**2 / (jt - 1) + b**2 / (jc - 1)) - g, rel=1e-12)
    assert jt - 1 < d.df + g < 5  # near the PL schools' J_T − 1 = 3, not the pooled J_T + J_C − 2 = 22
    assert d.mdes() == pytest.approx(multiplier(d.df) * math.sqrt(a + b), rel=1e-12)
    # unequal school counts, each arm's mean as variable: Welch's df of the school means' t test, as
    # scipy's Welch test computes it from two samples with those variances of a school mean
    va, vb = a * jt, b * jc
    x, y = np.sqrt(va) * np.r_[1, -1, 1, -1], np.sqrt(vb) * np.tile([1.0, -1.0], jc // 2)
    x, y = x * math.sqrt((jt - 1) / jt), y * math.sqrt((jc - 1) / jc)  # sample variances va, vb exactly
    welch = stats.ttest_ind(x, y, equal_var=False).df
    assert d.df + g == pytest.approx(welch, rel=1e-12)
    with pytest.raises(DesignError, match="at least 2 PL schools and 2 comparison schools; got 1 and 20"):
        d.replace(schools=1)


def _t_power_by_integration(lam, df, alpha, two_sided):
    """P(|Z + λ| / √(V/df) > c), V ~ χ²(df): integrate the normal tail over the χ² density
    (no scipy.stats.nct)."""
    c = stats.t.ppf(1 - alpha / 2 if two_sided else 1 - alpha, df)

    def f(v):
        s = c * math.sqrt(v / df)
        tail = stats.norm.sf(s - lam) + (stats.norm.cdf(-s - lam) if two_sided else 0.0)
        return tail * stats.chi2.pdf(v, df)

    lo, hi = stats.chi2.ppf([1e-15, 1 - 1e-15], df)
    return integrate.quad(f, lo, hi, limit=400, epsabs=1e-12, points=[df])[0]


@pytest.mark.parametrize("lam,df,alpha,two_sided", [(2.8, 18, 0.05, True), (1.0, 5, 0.05, True), (3.5, 40, 0.01, False),
                                                    (2.0, 3, 0.10, True), (6.0, 200, 0.05, True)])
def test_power_matches_independent_noncentral_t(lam, df, alpha, two_sided):
    assert power_from_ncp(lam, df, alpha, two_sided) == pytest.approx(
        _t_power_by_integration(lam, df, alpha, two_sided), abs=1e-8)


def test_exact_mdes_solves_the_power_equation_and_normal_limit():
    for df in (3, 10, 38, 500):
        for power in (0.5, 0.8, 0.9):
            m = multiplier(df, 0.05, power)
            assert power_from_ncp(m, df) == pytest.approx(power, abs=1e-9)
    # df = inf, one-sided: both methods are z_{1−α} + z_{power} exactly
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert multiplier(np.inf, 0.05, 0.8, two_sided=False) == pytest.approx(z, abs=1e-9)
    assert multiplier(np.inf, 0.05, 0.8, two_sided=False, method="powerup") == pytest.approx(z, abs=1e-12)
    # PowerUp!'s multiplier is below the exact one at very small df (anti-conservative), within
    # 0.1% of it from df = 10 on (the table in docs/power.md)
    assert multiplier(3, method="powerup") < 0.98 * multiplier(3)
    for df in (10, 18, 38, 100):
        assert multiplier(df, method="powerup") == pytest.approx(multiplier(df), rel=1e-3)


def test_cluster_rct_closed_form_and_issue_example():
    d = ClusterRCT(schools=40, students=60, icc=0.2, r2_school=0.5, r2_student=0.4)
    sse2 = 0.2 * 0.5 / (0.25 * 40) + 0.8 * 0.6 / (0.25 * 40 * 60)
    assert d.sse == pytest.approx(math.sqrt(sse2), rel=1e-14) and d.df == 38
    p = d.plan(effect=0.2, target_mdes=0.2)
    assert p.mdes == pytest.approx(multiplier(38) * math.sqrt(sse2), rel=1e-12)
    assert p.mdes_pp == pytest.approx(100 * stats.norm.cdf(p.mdes) - 50, rel=1e-12)
    assert d.replace(schools=p.required).mdes() <= 0.2 < d.replace(schools=p.required - 1).mdes()
    assert p.power == pytest.approx(_t_power_by_integration(0.2 / d.sse, 38, 0.05, True), abs=1e-8)
    assert "schools needed" in p.summary() and "percentile points" in p.summary()
    assert set(p.to_frame()["quantity"]) >= {"mdes", "mdes_pp", "required", "icc"}
    # a target in percentile points is the same target in SD
    assert d.plan(target_pp=p.target_pp).required == p.required


def test_fixed_blocks_take_powerup_r2_convention():
    # PowerUp!'s fixed-block R² includes the blocks: R²(PowerUp!) = ρ + (1 − ρ)·R²₁
    a = BlockedRCT(schools=12, students=30, icc=0.25, r2_student=0.4)
    b = BlockedRCT(schools=12, students=30, r2_student=0.25 + 0.75 * 0.4)
    assert a.sse == pytest.approx(b.sse, rel=1e-14)
    a3 = BlockedClusterRCT(districts=6, schools=8, students=25, icc=0.1, icc_district=0.1, blocks="fixed")
    assert a3.sse ** 2 == pytest.approx(0.1 / (0.25 * 48) + 0.8 / (0.25 * 48 * 25), rel=1e-14)


def test_kish_design_effect_against_direct_covariance():
    rng = np.random.default_rng(3)
    jt, nt, jc, nc, icc = 4, 5, 6, 8, 0.3
    # weights whose school totals are equal (then the formula is exact)
    w = rng.uniform(0.2, 3.0, (jc, nc))
    w = w / w.sum(axis=1, keepdims=True) * nc
    a_t = np.full(jt * nt, 1 / (jt * nt))
    a_c = -w.ravel() / w.sum()
    a = np.concatenate([a_t, a_c])
    school = np.concatenate([np.repeat(np.arange(jt), nt), jt + np.repeat(np.arange(jc), nc)])
    sigma = icc * (school[:, None] == school[None, :]) + (1 - icc) * np.eye(len(school))
    direct = a @ sigma @ a
    d = MatchedComparison(schools=jt, students=nt, comparison_schools=jc, comparison_students=nc, icc=icc,
                          deff_weights=kish_deff(w))
    assert d.sse ** 2 == pytest.approx(direct, rel=1e-12)
    assert kish_deff(np.ones(10)) == 1.0 and kish_deff([1, 1, 2]) == pytest.approx(3 * 6 / 16)


def test_mdes_from_se_vectorized():
    se = np.array([0.1, np.nan, 0.05, 0.1])
    df = np.array([20, 20, np.inf, 20])
    m = mdes_from_se(se, df)
    assert np.isnan(m[1]) and m[0] == m[3] == pytest.approx(multiplier(20) * 0.1)
    assert m[2] == pytest.approx(multiplier(np.inf) * 0.05)
    assert mdes_from_se(0.1, 20, method="powerup") == pytest.approx(0.1 * (stats.t.ppf(0.975, 20) + stats.t.ppf(0.8, 20)))


@pytest.mark.parametrize("kw,match", [
    (dict(schools=40, students=60, icc=1.2), "icc"),
    (dict(schools=40, students=60, icc=0.2, r2_school=-0.1), "r2_school"),
    (dict(schools=40, students=60, icc=0.2, treated=1.0), "treated"),
    (dict(schools=2, students=60, icc=0.2, covariates=1), "degrees of freedom"),
    (dict(schools=40, students=60, icc=0.2, alpha=1.5), "alpha"),
    (dict(schools=40, students=60, icc=0.2, method="normal"), "method"),
])
def test_bad_inputs_name_the_parameter(kw, match):
    with pytest.raises(DesignError, match=match):
        ClusterRCT(**kw)


def test_a_target_power_at_or_below_alpha_is_an_error():
    """Power at no effect is alpha, so a target power of alpha or less has no MDES (it was
    reported as 0.000 SD with multiplier 0); just above alpha the MDES is small but positive."""
    d = ClusterRCT(schools=40, students=20, icc=0.2)
    for power in (0.03, 0.05):
        with pytest.raises(DesignError, match=f"power \\({power:g}\\) must exceed alpha \\(0.05\\)"):
            d.mdes(power=power)
    assert 0 < d.mdes(power=0.06) < 0.1


def test_unreachable_target_says_why():
    d = ClusterRCT(schools=40, students=60, icc=0.2, r2_school=0.5, r2_student=0.4)
    with pytest.raises(DesignError, match="no number of students per school"):
        d.sample_size(0.1, "students")
    with pytest.raises(DesignError, match="solve_for"):
        d.sample_size(0.1, "districts")


def test_an_unreachable_target_leaves_the_plan_standing():
    """A target MDES no number of PL schools reaches (30 comparison schools set the limit) refused
    the whole plan, even the MDES and power asked for, with advice to add schools (the size being
    solved for). The plan now stands; it says why no size is given, and the CLI prints it."""
    from typer.testing import CliRunner

    from pleval.cli import app
    from pleval.power import MatchedComparison

    d = MatchedComparison(schools=10, students=50, icc=0.2, comparison_schools=30, comparison_students=20)
    plan = d.plan(effect=0.25, target_mdes=0.2)
    assert plan.required is None and plan.mdes == d.mdes() and plan.power == d.power(0.25)
    assert plan.unreachable.startswith("no number of PL schools reaches an MDES of 0.200 SD: even with 10,000,000 the "
                                       f"MDES is {d.replace(schools=10**7).mdes():.3f} SD")
    assert plan.unreachable in plan.summary()
    res = CliRunner().invoke(app, ["power", "matched", "--schools", "10", "--students", "50", "--icc", "0.2",
                                   "--comparison-schools", "30", "--comparison-students", "20", "--effect", "0.25"])
    assert res.exit_code == 0 and plan.unreachable in res.output and "power for an effect of 0.250 SD" in res.output
    res = CliRunner().invoke(app, ["power", "matched", "--students", "50", "--icc", "0.2", "--comparison-schools", "30",
                                   "--comparison-students", "20"])  # the schools solved for: no plan without them
    assert res.exit_code == 2 and "no number of PL schools reaches" in res.output


def test_matched_design_from_a_match_result():
    import pleval
    from pleval.data import SAMPLE_COLUMNS

    sim = pleval.simulate_matched(n_schools=60, n_pl_schools=8, students_per_grade=6, grades=[4, 5], seed=5)
    m = pleval.match(sim.data, SAMPLE_COLUMNS, method="propensity", replace=True, seed=1)
    d = MatchedComparison.from_match(m, icc=0.15, r2_student=0.5, subject="reading")
    mt = m.matched
    mt = mt[mt["subject"] == "reading"]
    tr = mt[mt["treatment"] == 1]
    comp = mt[mt["treatment"] == 0].groupby("student_id").agg(w=("_weight", "sum"), school=("school_id", "first"))
    assert d.schools == tr["school_id"].nunique() and d.students == pytest.approx(len(tr) / d.schools)
    assert d.comparison_schools == comp["school"].nunique()
    assert d.comparison_students == pytest.approx(len(comp) / d.comparison_schools)
    w = comp["w"].to_numpy()
    assert d.deff_weights == pytest.approx(len(w) * (w ** 2).sum() / w.sum() ** 2) and d.deff_weights > 1
    assert d.mdes() > d.replace(deff_weights=1.0).mdes()


def test_summary_names_the_one_sided_direction_and_prints_the_power_it_was_given():
    """`--power 0.999` was printed as "100% power"; a one-sided test's direction was unnamed
    (power for −0.3 is that of the test in its own direction)."""
    from pleval._text import percent

    assert [percent(x) for x in (0.8, 0.999, 0.9, 0.95, 0.9999)] == ["80%", "99.9%", "90%", "95%", "99.99%"]
    d = ClusterRCT(schools=40, students=60, icc=0.15, two_sided=False)
    assert d.power(-0.3) == pytest.approx(d.power(0.3))
    text = d.plan(power=0.999, effect=-0.3).summary()
    assert "one-sided (in the effect's direction)" in text and "MDES at 99.9% power" in text


def test_tiny_alpha_prints_no_raw_scipy_warning_and_keeps_its_value():
    """alpha = 1e-12 printed Boost's "Series did not converge" RuntimeWarnings; the value holds
    (multiplier 11.685 against a numerical integration's 11.6853)."""
    import warnings as w

    with w.catch_warnings():
        w.simplefilter("error", RuntimeWarning)
        d = ClusterRCT(schools=40, students=60, icc=0.15, alpha=1e-12)
        assert multiplier(d.df, 1e-12, 0.8, True, "exact") == pytest.approx(11.685, abs=2e-3)
        assert 0 <= power_from_ncp(1e6, 2, 1e-12, True) <= 1  # far in the tail on two df: the series that warned


def test_cluster_counts_must_be_whole_numbers_averages_need_not():
    """--schools 40.5 gave df 38.5 without a word; students per school (an average) stay free."""
    with pytest.raises(DesignError, match="schools is a count and must be a whole number; got 40.5"):
        ClusterRCT(schools=40.5, students=60, icc=0.15)
    assert ClusterRCT(schools=40.0, students=60.7, icc=0.15).df == 38
    with pytest.raises(DesignError, match="comparison_schools is a count"):
        MatchedComparison(schools=10, students=50, comparison_schools=20.5, comparison_students=50, icc=0.1)


def test_unequal_allocation_says_what_the_analysis_df_does_to_power():
    """5 of 20 schools assigned: the formula's df is J − g − 2 = 17, but pleval's CR2 analysis
    refers to the Welch df of 5 against 15 school means, 6.9; its simulated power at the MDES was
    0.712–0.730 on three seeds, the non-central t at 6.9 df 0.721. The plan now says so (it
    promised 0.80); equal arms add nothing."""
    from scipy import stats

    d = ClusterRCT(schools=20, students=20, icc=0.2, r2_school=0.5, r2_student=0.4, covariates=1, treated=0.25)
    plan = d.plan()
    dfw = (1 / 5 + 1 / 15) ** 2 / (1 / (25 * 4) + 1 / (225 * 14))
    assert d.analysis_df() == pytest.approx(dfw, rel=1e-12) and dfw == pytest.approx(6.89, abs=0.01)
    lam = plan.mdes / d.sse
    crit = stats.t.ppf(0.975, dfw)
    ref = stats.nct.sf(crit, dfw, lam) + stats.nct.cdf(-crit, dfw, lam)
    (note,) = plan.notes
    assert f"about {dfw:.1f} df" in note and f"about {ref:.2f}, not 0.80" in note
    assert ref == pytest.approx(0.72, abs=0.01)
    assert d.replace(treated=0.5).plan().notes == ()


def _dense_cr2_df(K, jt, jc):
    """Satterthwaite df of the CR2 variance of the assignment coefficient in the OLS of K·J school
    means on assignment and K district indicators, schools independent: tr(DM)²/tr(DMDM), formed
    from the matrices (Bell & McCaffrey 2002)."""
    z = np.tile(np.r_[np.ones(jt), np.zeros(jc)], K)
    X = np.column_stack([z, np.kron(np.eye(K), np.ones((jt + jc, 1)))])
    A = np.linalg.solve(X.T @ X, X.T)
    H = X @ A
    M = np.eye(len(z)) - H
    D = np.diag(A[0] ** 2 / (1 - np.diag(H)))
    return np.trace(D @ M) ** 2 / np.trace(D @ M @ D @ M)


@pytest.mark.parametrize("K, jt, jc", [(4, 3, 3), (4, 2, 4), (3, 1, 5), (10, 3, 7), (1, 5, 15)])
def test_cr2_cluster_df_is_the_satterthwaite_df_of_the_blocked_fit(K, jt, jc):
    from pleval.power.designs import cr2_cluster_df

    assert cr2_cluster_df(K, jt, jc) == pytest.approx(_dense_cr2_df(K, jt, jc), rel=1e-10)
    if jt == jc:
        assert cr2_cluster_df(K, jt, jc) == pytest.approx(K * (jt + jc - 1) - 1, rel=1e-12)


def test_blocked_cluster_plan_says_what_pleval_analysis_refers_to():
    """Schools randomized within districts: the formulas are PowerUp!'s (fixed districts: df
    K(J − 2) − g, an effect for each district; random districts: df K − g − 1 and the effect's
    variance across districts ω ρ₃/K), pleval's analysis (district fixed effects, one effect, CR2 by
    school) refers to the CR2 Satterthwaite df (19 for 4 districts of 6 schools) and leaves ω out of
    its SE. The plan says so with that analysis's power at the MDES. Before 2026-12-05 nothing was said."""
    base = dict(districts=4, schools=6, students=20, icc=0.15, icc_district=0.10)

    def at(design, sse, df):
        lam, crit = design.mdes(0.80) / sse, stats.t.ppf(0.975, df)
        return stats.nct.sf(crit, df, lam) + stats.nct.cdf(-crit, df, lam)

    fixed = BlockedClusterRCT(blocks="fixed", **base)
    (note,) = fixed.plan().notes
    assert fixed.df == 16 and fixed.analysis_df() == pytest.approx(_dense_cr2_df(4, 3, 3), rel=1e-10)
    assert "about 19.0 df" in note and "not the formula's 16" in note
    assert f"about {at(fixed, fixed.sse, 19):.2f}, not 0.80" in note and "about 0.81" in note
    # 2 of 6 schools a district: fewer df than the formula's, and the power at the share assigned
    third = fixed.replace(treated=1 / 3)
    (note,) = third.plan().notes
    assert f"about {_dense_cr2_df(4, 2, 4):.1f} df" in note and "2 against 4 schools in each of 4 districts" in note
    assert f"about {at(third, third.sse, _dense_cr2_df(4, 2, 4)):.2f}, not 0.80" in note
    # random districts: the analysis's SE is the fixed design's (no ω term), its df the same
    for omega in (0.0, 0.5):
        rnd = BlockedClusterRCT(omega=omega, **base)
        (note,) = rnd.plan().notes
        assert rnd.df == 3 and "about 19.0 df" in note and "random-effects analysis of the districts" in note
        assert f"about {at(rnd, fixed.sse, 19):.2f}, not 0.80" in note
        assert ("averaged over these districts" in note) == (omega > 0)
    # an immaterial difference (power at the MDES within half a point) is not noted
    big = BlockedClusterRCT(districts=10, schools=10, students=20, icc=0.15, icc_district=0.10, blocks="fixed")
    assert abs(at(big, big.sse, _dense_cr2_df(10, 5, 5)) - 0.80) < 0.005 and big.plan().notes == ()


def test_unequal_allocation_note_only_when_power_differs_visibly():
    """9 of 20 schools: the analysis's 17.2 df against the formula's 18 move the power at the MDES
    by less than half a point; before 2026-12-05 the plan still noted it ("about 0.80, not 0.80")."""
    d = ClusterRCT(schools=20, students=20, icc=0.2, treated=0.45)
    lam, dfw = d.mdes(0.80) / d.replace(treated=9 / 20).sse, d.analysis_df()
    crit = stats.t.ppf(0.975, dfw)
    assert dfw == pytest.approx(17.2, abs=0.05) and dfw < d.df
    assert abs(stats.nct.sf(crit, dfw, lam) + stats.nct.cdf(-crit, dfw, lam) - 0.80) < 0.005
    assert d.plan().notes == ()


def test_mdes_from_se_pairs_series_by_label():
    """se and df Series with the same labels in another order were paired by position (0.280 and
    0.752 where by label they are 0.376 and 0.561). They are now paired by label, the result a
    Series with se's labels; power_from_ncp likewise."""
    import pandas as pd

    se = pd.Series([0.10, 0.20], index=["math", "reading"])
    df = pd.Series([1000.0, 4.0], index=["reading", "math"])
    got = mdes_from_se(se, df)
    assert list(got.index) == ["math", "reading"]
    for lab, s, d in (("math", 0.10, 4.0), ("reading", 0.20, 1000.0)):  # the MDES has 80% power on t(df)
        c, lam = stats.t.ppf(0.975, d), got[lab] / s
        assert stats.nct.sf(c, d, lam) + stats.nct.cdf(-c, d, lam) == pytest.approx(0.8, abs=1e-8)
    pw = power_from_ncp(pd.Series([2.0, 3.0], index=["a", "b"]), pd.Series([30.0, 5.0], index=["b", "a"]))
    c5, c30 = stats.t.ppf(0.975, 5), stats.t.ppf(0.975, 30)
    assert pw["a"] == pytest.approx(stats.nct.sf(c5, 5, 2.0) + stats.nct.cdf(-c5, 5, 2.0), rel=1e-9)
    assert pw["b"] == pytest.approx(stats.nct.sf(c30, 30, 3.0) + stats.nct.cdf(-c30, 30, 3.0), rel=1e-9)


def test_numpy_numbers_are_numbers():
    """Sizes counted from a frame are np.int64, an effect size may be a float32: before
    2026-12-05 they were refused ("schools must be a number >= 2; got np.int64(40)", "effect
    must be a finite number of SD units; got np.float32(0.25)"). They give the Python numbers'
    results, and the design keeps Python numbers (its parameters print and serialize as such)."""
    d = ClusterRCT(schools=np.int64(40), students=np.int64(47), icc=np.float64(0.2), treated=np.float32(0.5))
    ref = ClusterRCT(schools=40, students=47, icc=0.2, treated=0.5)
    assert d.mdes() == ref.mdes() and d.parameters() == ref.parameters()
    assert [type(v) for v in d.parameters().values()] == [type(v) for v in ref.parameters().values()]
    assert d.power(np.float32(0.25)) == ref.power(0.25) and d.power(np.int64(1)) == ref.power(1)
    assert d.sample_size(np.float32(0.25)) == ref.sample_size(0.25)
    assert d.mdes(np.float32(0.75)) == ref.mdes(0.75)
    assert MatchedComparison(schools=np.int32(30), students=np.int16(50), icc=0.15).sse == \
        MatchedComparison(schools=30, students=50, icc=0.15).sse
    for bad in (dict(schools=True), dict(schools=np.bool_(True))):  # True is not a count
        with pytest.raises(DesignError, match="schools must be a number >= 2"):
            ClusterRCT(**{"students": 47, "icc": 0.2, **bad})
