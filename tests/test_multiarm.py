"""Multi-arm trials: the joint model against statsmodels, Holm against statsmodels' multipletests,
Dunnett against scipy.stats.dunnett on Dunnett's (1955) example, against multcomp's printed R output
(recovery, tox, litter) and against an exact quadrature, and `pleval rct --control`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from pleval.cli import app
from pleval.data import Columns, file_sha256
from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.multiarm import analyze_multiarm
from pleval.rct import analyze_rct

REF = Path(__file__).parent / "reference"

from ._rct_sim import make_cluster_rct
from .test_rct import COLS

# Dunnett (1955), blood counts (millions of cells per mm³) of a control group and two drug groups,
# the example of scipy.stats.dunnett's documentation.
CONTROL = [7.40, 8.50, 7.20, 8.24, 9.84, 8.32]
DRUG_A = [9.76, 8.80, 7.68, 9.36]
DRUG_B = [12.80, 9.68, 12.16, 9.20, 10.55]


def test_dunnett_equals_scipy_on_dunnetts_example():
    df = pd.DataFrame({"y": CONTROL + DRUG_A + DRUG_B, "arm": ["c"] * 6 + ["a"] * 4 + ["b"] * 5})
    res = analyze_multiarm(df, Columns(outcome="y", treatment="arm"), "c", design="individual", vcov="classical",
                           adjust="dunnett")
    ref = stats.dunnett(DRUG_A, DRUG_B, control=CONTROL, random_state=0)
    f = res.to_frame().set_index("arm")
    np.testing.assert_allclose(f.loc[["a", "b"], "estimate"], [np.mean(DRUG_A) - np.mean(CONTROL),
                                                               np.mean(DRUG_B) - np.mean(CONTROL)], rtol=1e-12)
    np.testing.assert_allclose(f.loc[["a", "b"], "estimate"] / f.loc[["a", "b"], "se"], ref.statistic, rtol=1e-10)
    # both integrate the multivariate t numerically: agreement to their Monte Carlo error
    np.testing.assert_allclose(f.loc[["a", "b"], "pvalue_adjusted"], ref.pvalue, atol=1e-3)
    ci = ref.confidence_interval()
    np.testing.assert_allclose(f.loc[["a", "b"], "simultaneous_ci_low"], ci.low, atol=0.01)
    np.testing.assert_allclose(f.loc[["a", "b"], "simultaneous_ci_high"], ci.high, atol=0.01)
    assert (f["df"] == 12).all()
    # seeded: reproducible
    again = analyze_multiarm(df, Columns(outcome="y", treatment="arm"), "c", design="individual", vcov="classical",
                             adjust="dunnett")
    assert again.pvalue_adjusted == res.pvalue_adjusted


def _dunnett_exact_crit(n_control, n_arms, df, level=0.95, two_sided=True):
    """Dunnett critical value by quadrature (no Monte Carlo): with one control and classical
    variances corr(T_a, T_b) = λ_a λ_b, λ_a = √{n_a/(n_a + n_0)}, so
    P(max|T_a| < q) = E_{s,z} Π_a [Φ((qs + λ_a z)/√(1 − λ_a²)) − Φ((−qs + λ_a z)/√(1 − λ_a²))]
    (one-sided P(max T_a < q): without the second term), z ~ N(0, 1) and s ~ √(χ²_df/df)
    (Dunnett 1955), on a Gauss–Legendre grid in s and a fine grid in z."""
    lam = np.sqrt(np.asarray(n_arms, float) / (np.asarray(n_arms, float) + n_control))
    z = np.linspace(-9.0, 9.0, 201)
    wz = stats.norm.pdf(z) * (z[1] - z[0])
    x, w = np.polynomial.legendre.leggauss(101)
    lo, hi = 1e-6, 1.0 + 12.0 / np.sqrt(df)
    s = (hi - lo) / 2 * x + (hi + lo) / 2
    ws = w * (hi - lo) / 2 * stats.chi.pdf(s * np.sqrt(df), df) * np.sqrt(df)
    S, Z, L = s[:, None, None], z[None, :, None], lam[None, None, :]
    r = np.sqrt(1.0 - L**2)

    def inside(q):
        below = special.ndtr((-q * S + L * Z) / r) if two_sided else 0.0
        return ws @ (special.ndtr((q * S + L * Z) / r) - below).prod(-1) @ wz

    return optimize.brentq(lambda q: inside(q) - level, 1.0, 4.0, xtol=1e-10)


def test_two_arm_dunnett_is_exact_and_needs_no_seed():
    """Two arms: Owen's T and one integral over the t's denominator, no Monte Carlo. Orthant
    probabilities P(T₁ < 0, T₂ < 0) = 1/4 + arcsin(ρ)/2π for any df; independent normals give
    (2Φ(x) − 1)² and Φ(x)²; adaptive quadrature of the same integral (QUADPACK) to 1e−10; the
    critical value to 1e−8 of Dunnett's (1955) conditional-on-the-control quadrature; and the
    p-values and critical value of a two-arm analysis are the same for every seed."""
    from scipy import integrate
    from pleval.multiarm import _bivariate_inside, _bivariate_normal_inside, _dunnett

    for rho in (-0.9, -0.3, 0.0, 0.5, 0.95):
        for df in (1.0, 3.5, 20.0, np.inf):
            orthant = 0.25 + np.arcsin(rho) / (2 * np.pi)
            assert _bivariate_inside(0.0, rho, df, False) == pytest.approx(orthant, abs=1e-14)
    for x in (0.5, 1.96, 3.0):
        assert _bivariate_inside(x, 0.0, np.inf, True) == pytest.approx((2 * special.ndtr(x) - 1) ** 2, abs=1e-14)
        assert _bivariate_inside(x, 0.0, np.inf, False) == pytest.approx(special.ndtr(x) ** 2, abs=1e-14)
    # ρ → ±1: the square is P(|T| < x) for one t
    assert _bivariate_inside(1.5, 1.0, 10.0, True) == pytest.approx(2 * stats.t.cdf(1.5, 10) - 1, abs=1e-6)
    assert _bivariate_inside(1.5, -1.0, 10.0, False) == pytest.approx(2 * stats.t.cdf(1.5, 10) - 1, abs=1e-6)

    def adaptive(q, rho, df, two):
        lo, hi = np.sqrt(stats.chi2.ppf(1e-17, df) / df), np.sqrt(stats.chi2.isf(1e-17, df) / df)
        r = np.sqrt(df)
        f = lambda s: float(_bivariate_normal_inside(q * s, rho, two)) * stats.chi.pdf(s * r, df) * r
        return integrate.quad(f, lo, hi, points=[1.0] if lo < 1 < hi else None, epsabs=1e-14, epsrel=1e-13,
                              limit=500)[0]

    for df in (1.7, 9.0, 37.2, 5000.0):
        for rho in (-0.8, 0.5, 0.9):
            for q in (0.3, 2.0, 4.0):
                for two in (True, False):
                    assert abs(_bivariate_inside(q, rho, df, two) - adaptive(q, rho, df, two)) < 1e-10
    for n0, arms, df in ((20, [3, 15], 35), (4, [4, 4], 9), (50, [50, 50], 147)):
        lam = np.sqrt(np.array(arms) / (np.array(arms) + n0))
        corr = np.array([[1.0, lam[0] * lam[1]], [lam[0] * lam[1], 1.0]])
        for alt in ("two-sided", "greater"):
            _, crit = _dunnett(np.array([1.5, -2.0]), corr, df, 0.95, 0, alt)
            assert crit == pytest.approx(_dunnett_exact_crit(n0, arms, df, 0.95, alt == "two-sided"), abs=1e-8)
    df = pd.DataFrame({"y": CONTROL + DRUG_A + DRUG_B, "arm": ["c"] * 6 + ["a"] * 4 + ["b"] * 5})
    runs = [analyze_multiarm(df, Columns(outcome="y", treatment="arm"), "c", design="individual", vcov="classical",
                             adjust="dunnett", seed=seed).to_frame() for seed in (0, 1, 12345)]
    for r in runs[1:]:
        pd.testing.assert_frame_equal(r, runs[0])


def test_dunnett_against_multcomp_recovery():
    """multcomp's ``glht(aov(minutes ~ blanket, data = recovery), mcp(blanket = "Dunnett"))``,
    printed in multcomp's inst/MCMT/MCMT.Rout.save (R 2.6.1, 2007) and MCMT.Rout (R 3.0.2, 2013),
    reproducing Westfall et al. (1999), Multiple Comparisons and Multiple Tests Using the SAS
    System, pp. 78–79; data multcomp ``recovery`` (tests/reference/multcomp_recovery.csv).
    ``summary()``: estimates −2.1333, −7.4667, −1.6667; SEs 1.6038, 1.6038, 0.8848; t −1.330,
    −4.656, −1.884; adjusted p 0.456, < 0.001, 0.182 (both runs). ``confint()``: quantile 2.4887
    (2007) / 2.4884 (2013); b1 − b0 −6.1247 to 1.8581 (2007) / −6.1241 to 1.8575 (2013), b2 − b0
    −11.4581 to −3.4753 / b3 − b0 −3.8686 to 0.5353 (2007). The two R runs differ by 3e−4 in the
    quantile: mvtnorm's randomized QMC with its default abseps = 0.001. pleval's integration
    error is about 1e−5, checked against the exact quadrature."""
    df = pd.read_csv(REF / "multcomp_recovery.csv")
    res = analyze_multiarm(df, Columns(outcome="minutes", treatment="blanket"), "b0", design="individual",
                           vcov="classical", adjust="dunnett")
    f = res.to_frame().set_index("arm").loc[["b1", "b2", "b3"]]
    np.testing.assert_allclose(f["estimate"].round(4), [-2.1333, -7.4667, -1.6667], atol=1e-12)
    np.testing.assert_allclose(f["se"].round(4), [1.6038, 1.6038, 0.8848], atol=1e-12)
    np.testing.assert_allclose((f["estimate"] / f["se"]).round(3), [-1.330, -4.656, -1.884], atol=1e-12)
    # adjusted p: printed to 3 digits, identical in both runs
    np.testing.assert_allclose(f.loc[["b1", "b3"], "pvalue_adjusted"].round(3), [0.456, 0.182], atol=1e-12)
    assert f.loc["b2", "pvalue_adjusted"] < 0.001
    # the critical value: exact to 1e-4, and inside the spread of the two R runs ± mvtnorm's error
    crit = (f["simultaneous_ci_high"] - f["estimate"]) / f["se"]
    np.testing.assert_allclose(crit, crit.iloc[0], rtol=1e-12)
    exact = _dunnett_exact_crit(20, [3, 3, 15], 37)
    assert crit.iloc[0] == pytest.approx(exact, abs=1e-4)
    assert abs(crit.iloc[0] - 2.4887) < 5e-4 and abs(crit.iloc[0] - 2.4884) < 5e-4
    for r_lo, r_hi, lo, hi in [((-6.1247, -6.1241), (1.8581, 1.8575), *f.loc["b1", ["simultaneous_ci_low", "simultaneous_ci_high"]]),
                               ((-11.4581, -11.4575), (-3.4753, -3.4759), *f.loc["b2", ["simultaneous_ci_low", "simultaneous_ci_high"]])]:
        assert min(r_lo) - 1e-3 < lo < max(r_lo) + 1e-3 and min(r_hi) - 1e-3 < hi < max(r_hi) + 1e-3
    assert f.loc["b3", "simultaneous_ci_low"] == pytest.approx(-3.8686, abs=1e-3)
    assert f.loc["b3", "simultaneous_ci_high"] == pytest.approx(0.5353, abs=1e-3)


def test_one_sided_dunnett_against_multcomp_recovery():
    """``glht(amod, mcp(blanket = "Dunnett"), alternative = "less")`` on ``recovery``
    (Westfall et al. 1999, p. 80; multcomp inst/MCMT and ``?recovery``): ``summary()`` adjusted p
    0.2412 / < 1e−4 / 0.0926 (R 2.6.1) and 0.2411 / 0.0924 (R 3.0.2); ``confint(level = 0.9)``
    quantile −1.8426 / −1.8428 and upper bounds 0.82186, −4.51148, −0.03635 (2007) / 0.82218,
    −0.03618 (2013). The exact one-sided quantile is 1.84307."""
    df = pd.read_csv(REF / "multcomp_recovery.csv")
    kw = dict(design="individual", vcov="classical", adjust="dunnett", alternative="less")
    cols = Columns(outcome="minutes", treatment="blanket")
    f = analyze_multiarm(df, cols, "b0", **kw).to_frame().set_index("arm").loc[["b1", "b2", "b3"]]
    assert (f["alternative"] == "less").all()
    np.testing.assert_allclose(f["pvalue"], stats.t.cdf(f["estimate"] / f["se"], 37), rtol=1e-12)
    assert 0.2411 - 1e-3 < f.loc["b1", "pvalue_adjusted"] < 0.2412 + 1e-3 and f.loc["b2", "pvalue_adjusted"] < 1e-4
    assert 0.0924 - 1e-3 < f.loc["b3", "pvalue_adjusted"] < 0.0926 + 1e-3
    g = analyze_multiarm(df, cols, "b0", level=0.9, **kw).to_frame().set_index("arm").loc[["b1", "b2", "b3"]]
    assert np.isneginf(g["simultaneous_ci_low"]).all()
    crit = (g["simultaneous_ci_high"] - g["estimate"]) / g["se"]
    assert crit.iloc[0] == pytest.approx(_dunnett_exact_crit(20, [3, 3, 15], 37, 0.9, two_sided=False), abs=1e-4)
    assert 1.8426 - 1e-3 < crit.iloc[0] < 1.8428 + 1e-3
    for arm, lo_r, hi_r in (("b1", 0.82186, 0.82218), ("b2", -4.51148, -4.51116), ("b3", -0.03635, -0.03618)):
        assert lo_r - 2e-3 < g.loc[arm, "simultaneous_ci_high"] < hi_r + 2e-3
    # the one-sided raw p and Holm on it
    h = analyze_multiarm(df, cols, "b0", design="individual", vcov="classical", alternative="greater").to_frame()
    np.testing.assert_allclose(h["pvalue"], stats.t.sf(h["estimate"] / h["se"], 37), rtol=1e-12)
    np.testing.assert_allclose(h["pvalue_adjusted"], multipletests(h["pvalue"], method="holm")[1], rtol=1e-12)
    assert np.isposinf(h["simultaneous_ci_high"]).all()


def test_covariate_adjusted_dunnett_against_multcomp_ratgrwth():
    """ANCOVA with four baseline weights: ``glht(aov(w4 ~ ., data = ratgrwth), mcp(trt =
    "Dunnett"), alternative = "less")`` (Westfall et al. 1999, p. 100; multcomp inst/MCMT, both
    R runs print the same; data tests/reference/multcomp_ratgrwth.csv): Thiouracil − Control
    −9.458 (SE 3.328, t −2.842, adjusted p 0.00982), Thyroxin − Control −2.113 (3.196, −0.661,
    0.42184); ``confint()`` quantile −2.06, upper bounds −2.6036 and 4.4699."""
    df = pd.read_csv(REF / "multcomp_ratgrwth.csv")
    res = analyze_multiarm(df, Columns(outcome="w4", treatment="trt", covariates=("w0", "w1", "w2", "w3")), "Control",
                           design="individual", vcov="classical", adjust="dunnett", alternative="less")
    f = res.to_frame().set_index("arm").loc[["Thiouracil", "Thyroxin"]]
    np.testing.assert_allclose(f["estimate"].round(3), [-9.458, -2.113], atol=1e-12)
    np.testing.assert_allclose(f["se"].round(3), [3.328, 3.196], atol=1e-12)
    np.testing.assert_allclose((f["estimate"] / f["se"]).round(3), [-2.842, -0.661], atol=1e-12)
    np.testing.assert_allclose(f["pvalue_adjusted"].round(5), [0.00982, 0.42184], atol=1e-12)
    np.testing.assert_allclose(f["simultaneous_ci_high"].round(4), [-2.6036, 4.4699], atol=1e-12)
    crit = (f["simultaneous_ci_high"] - f["estimate"]) / f["se"]
    assert round(crit.iloc[0], 2) == 2.06 and (f["df"] == 20).all()


def test_dunnett_against_multcomp_tox_six_arms():
    """multcomp ``glht(aov(gain ~ g, data = tox), mcp(g = "Dunnett"))``, ``confint()``
    (Westfall et al. 1999, p. 56; multcomp inst/MCMT; data tests/reference/multcomp_tox.csv):
    residual SE 14.49154 on 21 df; estimates −9.48, −24.90, −33.24, −13.50, −20.70, −31.14;
    quantile 2.7909 (R 2.6.1) / 2.7894 (R 3.0.2); g1 − g0 −38.0785 to 19.1185 (2007) /
    −38.0628 to 19.1028 (2013). The R runs differ by 1.5e−3 in the quantile (mvtnorm abseps
    0.001); the exact quadrature gives 2.78972."""
    df = pd.read_csv(REF / "multcomp_tox.csv")
    res = analyze_multiarm(df, Columns(outcome="gain", treatment="group"), "g0", design="individual",
                           vcov="classical", adjust="dunnett")
    f = res.to_frame().set_index("arm").loc[[f"g{i}" for i in range(1, 7)]]
    np.testing.assert_allclose(f["estimate"].round(4), [-9.48, -24.90, -33.24, -13.50, -20.70, -31.14], atol=1e-12)
    sigma = f["se"].iloc[0] / np.sqrt(1 / 4 + 1 / 4)
    assert round(sigma, 5) == 14.49154 and (f["df"] == 21).all()
    crit = (f["simultaneous_ci_high"] - f["estimate"]) / f["se"]
    assert crit.iloc[0] == pytest.approx(_dunnett_exact_crit(4, [4] * 6, 21), abs=1e-4)
    assert 2.7894 - 1e-3 < crit.iloc[0] < 2.7909 + 1e-3
    lo, hi = f.loc["g1", ["simultaneous_ci_low", "simultaneous_ci_high"]]
    assert -38.0785 - 0.01 < lo < -38.0628 + 0.01 and 19.1028 - 0.01 < hi < 19.1185 + 0.01


def test_covariate_adjusted_arms_against_multcomp_litter():
    """multcomp ``glht(aov(weight ~ dose + gesttime + number, data = litter), mcp(dose = K))``,
    ``summary(gh, test = univariate())`` (Westfall et al. 1999, p. 110; multcomp inst/MCMT;
    data multcomp ``litter``, tests/reference/multcomp_litter.csv): control − dose 5, 50, 500 is
    3.3524 (SE 1.2908, t 2.597, p 0.0115), 2.2909 (1.3384, 1.712, 0.0915), 2.6752 (1.3343,
    2.005, 0.0490); pleval reports dose − control, so the signs flip."""
    df = pd.read_csv(REF / "multcomp_litter.csv")
    res = analyze_multiarm(df, Columns(outcome="weight", treatment="dose", covariates=("gesttime", "number")), 0,
                           design="individual", vcov="classical", adjust="none")
    f = res.to_frame().set_index("arm").loc[[5, 50, 500]]
    np.testing.assert_allclose(f["estimate"].round(4), [-3.3524, -2.2909, -2.6752], atol=1e-12)
    np.testing.assert_allclose(f["se"].round(4), [1.2908, 1.3384, 1.3343], atol=1e-12)
    np.testing.assert_allclose((f["estimate"] / f["se"]).round(3), [-2.597, -1.712, -2.005], atol=1e-12)
    np.testing.assert_allclose(f["pvalue"].round(4), [0.0115, 0.0915, 0.0490], atol=1e-12)
    assert (f["df"] == 74 - 6).all()


@pytest.fixture(scope="module")
def three_arm():
    d = make_cluster_rct(5, n_schools=30, n_blocks=3, effect=3.0)
    treated = np.sort(d.loc[d.treatment == 1, "school_id"].unique())
    arm_b = set(treated[::2])
    d["arm"] = np.where(d.treatment == 0, "control", np.where(d.school_id.isin(arm_b), "B", "A"))
    return d


def test_cluster_three_arms_joint_model_and_holm(three_arm):
    cols = COLS.replace(treatment="arm")
    res = analyze_multiarm(three_arm, cols, "control")
    a = three_arm[three_arm.posttest.notna()]
    ref = smf.ols("posttest ~ C(arm, Treatment('control')) + C(block) + pretest + frl + ell", a).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(a.school_id)[0]})
    f = res.to_frame().set_index("arm")
    for arm in ("A", "B"):
        name = f"C(arm, Treatment('control'))[T.{arm}]"
        assert f.loc[arm, "estimate"] == pytest.approx(ref.params[name], rel=1e-10)
    assert res.options["vcov"].startswith("CR2") and (f["df"] < 29).all()
    np.testing.assert_allclose(f["pvalue_adjusted"], multipletests(f["pvalue"], method="holm")[1], rtol=1e-12)
    cr1 = analyze_multiarm(three_arm, cols, "control", vcov="CR1").to_frame().set_index("arm")
    assert cr1.loc["A", "se"] == pytest.approx(ref.bse["C(arm, Treatment('control'))[T.A]"], rel=1e-8)
    # each arm's effect size: its pooled SD with the control group, times ω
    pair = a[a.arm.isin(["A", "control"])]
    g = pair.groupby("arm").posttest
    sp = np.sqrt(((g.count() - 1) * g.var()).sum() / (len(pair) - 2))
    omega = 1 - 3 / (4 * len(pair) - 9)
    assert f.loc["A", "effect_size"] == pytest.approx(omega * f.loc["A", "estimate"] / sp, rel=1e-10)
    # Dunnett on the same fit: less conservative than Bonferroni, never below the raw p-value
    dn = analyze_multiarm(three_arm, cols, "control", adjust="dunnett").to_frame().set_index("arm")
    bf = analyze_multiarm(three_arm, cols, "control", adjust="bonferroni").to_frame().set_index("arm")
    assert (dn["pvalue_adjusted"] >= dn["pvalue"] - 1e-3).all() and (dn["pvalue_adjusted"] <= bf["pvalue_adjusted"] + 1e-3).all()
    assert "B" in res.summary()


def test_holm_says_its_simultaneous_intervals_are_bonferronis(three_arm):
    cols = COLS.replace(treatment="arm")
    holm = analyze_multiarm(three_arm, cols, "control")
    bf = analyze_multiarm(three_arm, cols, "control", adjust="bonferroni")
    h, b = holm.to_frame(), bf.to_frame()
    np.testing.assert_allclose(h[["simultaneous_ci_low", "simultaneous_ci_high"]],
                               b[["simultaneous_ci_low", "simultaneous_ci_high"]], rtol=1e-12)
    assert any("Bonferroni" in n and "Holm" in n for n in holm.notes)
    assert "interval that covers 0" in holm.summary()
    assert not any("Holm" in n for n in bf.notes)


def test_errors(three_arm):
    cols = COLS.replace(treatment="arm")
    with pytest.raises(DataError, match="control label 'none'"):
        analyze_multiarm(three_arm, cols, "none")
    with pytest.raises(DataError, match="at least 2"):
        analyze_multiarm(three_arm[three_arm.arm != "B"], cols, "control")
    mixed = three_arm.copy()
    mixed.loc[mixed.index[:3], "arm"] = "B" if mixed["arm"].iloc[0] != "B" else "A"
    with pytest.raises(DesignError, match="varies within"):
        analyze_multiarm(mixed, cols, "control")
    with pytest.raises(DataError, match="adjust"):
        analyze_multiarm(three_arm, cols, "control", adjust="sidak")
    with pytest.raises(DataError, match="alternative"):
        analyze_multiarm(three_arm, cols, "control", alternative="two.sided")


def test_a_school_split_between_two_arms_is_noted_and_refused_with_the_designs_that_fit(three_arm, tmp_path):
    """A school whose students hold two arms, none of them control, is one of students randomized
    within schools: check (given the arms, as pleval rct --control runs it) notes it, and the cluster
    analysis (API and CLI) stops with the same hint as analyze_rct's (the blocked or individual
    design). Before 2026-12-05 check, run on control / any arm, saw nothing in such a school, and
    the multi-arm error gave no hint."""
    from pleval import check

    d = three_arm.copy()
    ab = d.loc[d["arm"] != "control", "school_id"].iloc[0]  # an arm school, split between A and B
    ctl = d.loc[d["arm"] == "control", "school_id"].iloc[0]  # a control school, half of it given arm A
    for school, other in ((ab, {"A": "B", "B": "A"}[d.loc[d.school_id == ab, "arm"].iloc[0]]), (ctl, "A")):
        rows = d.index[d.school_id == school]
        d.loc[rows[: len(rows) // 2], "arm"] = other
    split = d.groupby("school_id")["arm"].nunique()
    assert sorted(split.index[split > 1]) == sorted([ab, ctl])
    given = {"outcome": "posttest", "treatment": "arm", "school": "school_id", "pretest": "pretest", "block": "block",
             "subject": "none", "grade": "none"}
    recoded = d.assign(arm=(d["arm"] != "control").astype(float))
    notes = [p for p in check(recoded, given=given, design="rct", arms=d["arm"]).notes
             if p.kind == "randomized within schools"]
    assert len(notes) == 1 and notes[0].n_rows == 2 and repr(ab) in notes[0].message and repr(ctl) in notes[0].message
    assert "more than one arm" in notes[0].message and "--design blocked" in notes[0].fix
    hint = "blocked design, each school a block, or the individual design"
    with pytest.raises(DesignError, match=f"'arm'.*varies within 2 school.*{hint}"):
        analyze_multiarm(d, COLS.replace(treatment="arm"), "control")
    path = tmp_path / "split.csv"
    d.to_csv(path, index=False)
    r = CliRunner().invoke(app, ["rct", str(path), "--outcome", "posttest", "--treatment", "arm", "--pretest", "pretest",
                                 "--school", "school_id", "--block", "block", "--control", "control",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and hint in " ".join(r.output.split())


def test_cli_control_option(three_arm, tmp_path):
    path = tmp_path / "arms.csv"
    three_arm.to_csv(path, index=False)
    args = ["rct", str(path), "--outcome", "posttest", "--treatment", "arm", "--pretest", "pretest",
            "--covariates", "frl,ell", "--school", "school_id", "--block", "block", "--control", "control",
            "--arms-alternative", "greater", "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "o" / "arms.csv").set_index("arm")
    api = analyze_multiarm(three_arm, COLS.replace(treatment="arm"), "control",
                           alternative="greater").to_frame().set_index("arm")
    np.testing.assert_allclose(got.loc[["A", "B"], "pvalue_adjusted"], api.loc[["A", "B"], "pvalue_adjusted"], rtol=1e-9)
    assert (got["alternative"] == "greater").all()
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["kind"] == "pleval rct outputs" and prov["input"]["sha256"] == file_sha256(path)
    assert prov["options"]["control"] == "control" and prov["options"]["alternative"] == "greater"
    # WWC attrition and baseline equivalence per arm against control, each a two-arm trial (the
    # help promised attrition.csv and equivalence.csv; a multi-arm run wrote neither)
    att = pd.read_csv(tmp_path / "o" / "attrition.csv")
    eq = pd.read_csv(tmp_path / "o" / "equivalence.csv")
    for arm in ("A", "B"):
        pair = analyze_rct(three_arm[three_arm["arm"].isin([arm, "control"])],
                           COLS.replace(treatment="arm", treated_label=arm))
        want = pair.attrition_frame()
        got_a = att[att["arm"] == arm]
        assert len(got_a) == len(want)
        np.testing.assert_allclose(got_a["overall"], want["overall"], rtol=1e-12)
        np.testing.assert_allclose(got_a["differential"], want["differential"], rtol=1e-12)
        np.testing.assert_allclose(eq.loc[eq["arm"] == arm, "effect_size"], pair.equivalence["effect_size"], rtol=1e-12)
    r = CliRunner().invoke(app, args[:-4] + ["--arms-adjust", "dunnett", "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "d" / "arms.csv").set_index("arm")
    api = analyze_multiarm(three_arm, COLS.replace(treatment="arm"), "control", adjust="dunnett").to_frame().set_index("arm")
    np.testing.assert_allclose(got.loc[["A", "B"], "pvalue_adjusted"], api.loc[["A", "B"], "pvalue_adjusted"], rtol=1e-6)


def test_cli_names_a_missing_control_label_and_the_subject_short_of_schools(tmp_path):
    """``pleval rct --control``: a control label absent from the column is named with the arms
    (it was 'no comparison units among the ... usable rows'), and an arm with too few schools
    in one subject names the subject."""
    r = pd.read_csv("sample_data/pl_cluster_rct.csv")
    first = r.groupby("school_id")["treatment"].first()
    pl = sorted(first[first == 1].index)
    arm = {s: ("PL-A" if pl.index(s) % 2 else "PL-B") for s in pl}
    d = r.assign(arm=r["school_id"].map(arm).fillna("control"))
    base = ["--treatment", "arm", "--out", str(tmp_path / "o")]
    p = tmp_path / "arms.csv"
    d.to_csv(p, index=False)
    res = CliRunner().invoke(app, ["rct", str(p), "--control", "ctrl", *base])
    assert res.exit_code == 2 and "column 'arm' (treatment): control label 'ctrl' does not occur; arms are " \
                                   "['PL-A', 'PL-B', 'control']" in res.output
    d[~((d["subject"] == "reading") & (d["arm"] == "PL-B"))].to_csv(p, index=False)
    res = CliRunner().invoke(app, ["rct", str(p), "--control", "control", *base])
    assert res.exit_code == 2 and "arm(s) ['PL-B'] have fewer than 2 schools in the analytic sample of subject " \
                                   "'reading'" in res.output


@pytest.mark.slow
def test_null_familywise_error_and_coverage_by_simulation():
    """Three-arm cluster trials (30 schools in 3 blocks, ICC 0.2, 15–45 students a school; 15
    control schools, two arms of 7–8) with no effect anywhere. Holm and Dunnett keep the
    family-wise error rate at 5% or below; Dunnett's simultaneous CIs cover both zeros and each
    arm's own CI covers its zero about 95% of the time (CR2, Satterthwaite df); without an
    adjustment some arm is 'significant' more often than 5%."""
    from .conftest import sim_reps

    reps = sim_reps(600, minimum=120)
    cols = COLS.replace(treatment="arm")
    any_sig = {"holm": 0, "dunnett": 0, "none": 0}
    sim_cover = arm_cover = 0
    for s in range(reps):  # a loop over replications (each one the whole analysis)
        d = make_cluster_rct(1000 + s, n_schools=30, n_blocks=3, effect=0.0)
        treated = np.sort(d.loc[d.treatment == 1, "school_id"].unique())
        d["arm"] = np.where(d.treatment == 0, "control", np.where(d.school_id.isin(set(treated[::2])), "B", "A"))
        holm = analyze_multiarm(d, cols, "control").to_frame()
        dun = analyze_multiarm(d, cols, "control", adjust="dunnett", seed=s).to_frame()
        any_sig["holm"] += bool((holm["pvalue_adjusted"] < 0.05).any())
        any_sig["none"] += bool((holm["pvalue"] < 0.05).any())
        any_sig["dunnett"] += bool((dun["pvalue_adjusted"] < 0.05).any())
        sim_cover += bool(((dun["simultaneous_ci_low"] < 0) & (dun["simultaneous_ci_high"] > 0)).all())
        arm_cover += int(((holm["ci_low"] < 0) & (holm["ci_high"] > 0)).sum())
    mc = np.sqrt(0.05 * 0.95 / reps)  # Monte Carlo SE of a 5% rate
    rate = {k: v / reps for k, v in any_sig.items()}
    assert rate["holm"] < 0.05 + 2.5 * mc and rate["dunnett"] < 0.05 + 2.5 * mc, rate
    assert sim_cover / reps > 0.95 - 2.5 * mc, sim_cover / reps
    assert abs(arm_cover / (2 * reps) - 0.95) < 2.5 * np.sqrt(0.05 * 0.95 / (2 * reps)), arm_cover / (2 * reps)
    assert rate["none"] > rate["holm"] and rate["none"] >= rate["dunnett"]


def test_cli_control_refuses_the_two_arm_options_it_would_not_apply(three_arm, tmp_path):
    """--control with --method mixedlm, --lin, --subgroups, --permutations or --bootstrap
    exited 0 with arms.csv byte-identical to a run without them (no mixed model, no Lin
    adjustment, no randomization p-value, without a word). They are now an error naming them."""
    path = tmp_path / "arms.csv"
    three_arm.to_csv(path, index=False)
    base = ["rct", str(path), "--outcome", "posttest", "--treatment", "arm", "--pretest", "pretest",
            "--covariates", "frl,ell", "--school", "school_id", "--block", "block", "--control", "control",
            "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(app, base + ["--method", "mixedlm", "--lin", "--subgroups", "frl", "--permutations", "100"])
    assert r.exit_code == 2 and not (tmp_path / "o").exists()
    assert "--method mixedlm, --lin, --subgroups, --permutations apply to two-arm trials" in r.output
    assert CliRunner().invoke(app, base).exit_code == 0


def test_an_arm_spelled_two_ways_is_an_error(three_arm):
    """Some control schools labelled 'Control': before 2026-12-04 a third arm, tested against
    'control' and counted in Holm's adjustment, without a word."""
    d = three_arm.copy()
    ctrl = np.sort(d.loc[d["arm"] == "control", "school_id"].unique())[:3]
    d.loc[d["school_id"].isin(ctrl), "arm"] = "Control"
    with pytest.raises(DataError, match=r"labels .Control., .control. are one label written two ways"):
        analyze_multiarm(d, COLS.replace(treatment="arm"), "control")


def test_standard_errors_that_ignore_school_randomization_are_warned_of(three_arm):
    """As analyze_rct warns and notes (before 2026-12-04 the multi-arm model said nothing): HC2
    in a cluster design, and arms constant within schools under design 'individual'."""
    cols = COLS.replace(treatment="arm")
    with pytest.warns(PlevalWarning, match="schools were randomized"):
        res = analyze_multiarm(three_arm, cols, "control", vcov="HC2")
    assert any("schools were randomized" in n for n in res.notes)
    with pytest.warns(PlevalWarning, match="column 'arm' \\(treatment\\) is constant within each"):
        analyze_multiarm(three_arm, cols, "control", design="individual")


def test_labels_typed_two_ways_and_arms_mixed_within_schools(three_arm):
    """1 and '1' are one label written two ways (the error names both, before the control is
    looked up); arms mixed within schools under design 'individual' are not called school
    randomized."""
    d = three_arm.assign(arm=three_arm["arm"].map({"control": 0, "A": 1, "B": 2}).astype(object))
    d.loc[d.index[:5], "arm"] = "1"
    with pytest.raises(DataError, match="labels '1', 1 are one label written two ways"):
        analyze_multiarm(d, COLS.replace(treatment="arm"), 0)
    mixed = three_arm.copy()
    t = mixed["arm"] != "control"
    mixed.loc[t, "arm"] = np.where(np.arange(int(t.sum())) % 2 == 0, "A", "B")  # both arms in every treated school
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlevalWarning)
        try:
            analyze_multiarm(mixed, COLS.replace(treatment="arm"), "control", design="individual")
        except PlevalWarning as w:
            assert "constant within each" not in str(w)
