"""Effect sizes against metafor's published values and independent computations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pleval import DataError
from pleval.effect_sizes import (
    baseline_difference,
    cohens_d,
    cox_index,
    glass_delta,
    hedges2007_adjusted_t,
    hedges2007_effect_size,
    hedges_g,
    hedges_g_from_samples,
    hedges_g_variance,
    hedges_j,
    hedges_omega,
    outcome_sd,
    pooled_sd,
)


@pytest.fixture
def six(reference_dir):
    """Six two-group studies with metafor escalc('SMD') results (tests/reference/README.md)."""
    return pd.read_csv(reference_dir / "smd_six_studies.csv")


def test_hedges_g_exact_matches_metafor(six):
    g = hedges_g(six.mean_t, six.mean_c, six.sd_t, six.sd_c, six.n_t, six.n_c, correction="exact")
    np.testing.assert_allclose(g, six.yi_metafor, rtol=1e-12)
    v = hedges_g_variance(g, six.n_t, six.n_c, kind="unbiased")
    np.testing.assert_allclose(v, six.vi_ub_metafor, rtol=1e-10)


def test_wwc_omega_close_to_exact_j(six):
    g = hedges_g(six.mean_t, six.mean_c, six.sd_t, six.sd_c, six.n_t, six.n_c)
    np.testing.assert_allclose(g, six.yi_metafor, rtol=1e-5)
    assert hedges_omega(20) == pytest.approx(1 - 3 / 71)
    assert hedges_j(18) == pytest.approx(hedges_omega(20), rel=2e-4)


def test_from_samples_matches_hand_computation():
    rng = np.random.default_rng(3)
    yt, yc = rng.normal(0.4, 1, 23), rng.normal(0, 1.3, 31)
    N = yt.size + yc.size
    sp = np.sqrt(((yt.size - 1) * yt.var(ddof=1) + (yc.size - 1) * yc.var(ddof=1)) / (N - 2))
    g_hand = (1 - 3 / (4 * N - 9)) * (yt.mean() - yc.mean()) / sp
    g, v = hedges_g_from_samples(yt, yc)
    assert g == pytest.approx(g_hand, rel=1e-12)
    assert v == pytest.approx(N / (yt.size * yc.size) + g_hand**2 / (2 * N), rel=1e-12)
    assert cohens_d(yt.mean(), yc.mean(), yt.std(ddof=1), yc.std(ddof=1), yt.size, yc.size) == pytest.approx(
        g_hand / (1 - 3 / (4 * N - 9))
    )
    assert pooled_sd(yt.std(ddof=1), yc.std(ddof=1), yt.size, yc.size) == pytest.approx(sp)


def test_glass_and_cox():
    assert glass_delta(12, 10, 4) == 0.5
    # p_T = .6, p_C = .4: logit difference 2*ln(1.5) = 0.81093; / 1.65 * omega(200)
    expected = (1 - 3 / (4 * 200 - 9)) * 2 * np.log(1.5) / 1.65
    assert cox_index(0.6, 0.4, 100, 100) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(DataError):
        cox_index(1.0, 0.4, 100, 100)


def test_invariances():
    rng = np.random.default_rng(5)
    yt, yc = rng.normal(1, 2, 40), rng.normal(0, 2, 50)
    g, _ = hedges_g_from_samples(yt, yc)
    g_flip, _ = hedges_g_from_samples(yc, yt)
    g_scaled, _ = hedges_g_from_samples(10 * yt + 3, 10 * yc + 3)
    assert g_flip == pytest.approx(-g)
    assert g_scaled == pytest.approx(g)


def test_hedges_g_variance_covers_by_simulation():
    """The large-sample variance matches the Monte Carlo variance of g within ~10%."""
    rng = np.random.default_rng(11)
    nt, nc, delta, reps = 30, 40, 0.5, 4000
    yt = rng.normal(delta, 1, (reps, nt))
    yc = rng.normal(0, 1, (reps, nc))
    g = hedges_g(yt.mean(1), yc.mean(1), yt.std(1, ddof=1), yc.std(1, ddof=1), nt, nc)
    assert abs(g.mean() - delta) < 0.02  # omega removes the small-sample bias
    assert hedges_g_variance(delta, nt, nc) == pytest.approx(g.var(), rel=0.1)


def test_outcome_sd_rules():
    y = np.array([1.0, 2, 3, 4, 10, 12, 14, 20])
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    sd, kind = outcome_sd(y, t)
    assert sd == pytest.approx(pooled_sd(y[t == 1].std(ddof=1), y[t == 0].std(ddof=1), 4, 4))
    assert "pooled" in kind
    sd_c, kind_c = outcome_sd(y, t, "comparison")
    assert sd_c == pytest.approx(y[:4].std(ddof=1)) and "comparison" in kind_c
    assert outcome_sd(y, t, 15.0) == (15.0, "given norm SD (15)")
    # integer weights behave like repeated rows
    w = np.array([1, 2, 1, 1, 1, 1, 3, 1.0])
    sd_w, _ = outcome_sd(y, t, "comparison", weights=w)
    assert sd_w > 0
    with pytest.raises(DataError):
        outcome_sd(y, t, "median")


@pytest.mark.parametrize("level", [0.0, 200.0, 1e9])
def test_outcome_sd_of_a_constant_outcome_is_an_error(level):
    """An outcome with one value in each arm (or stratum) has SD 0, which rounding leaves at about
    1e-15 of the values: an error, not an effect size of rounding noise; a tiny real SD passes."""
    t = np.array([0, 0, 0, 1, 1, 1])
    g = np.array([0, 1, 1, 0, 1, 1])
    for kw in ({}, {"strata": g}, {"weights": np.array([0.3, 1.7, 1.1, 2.0, 0.9, 1.3])}):
        with pytest.raises(DataError, match="outcome SD is 0"):
            outcome_sd(np.full(6, level) + 0.1 * (t if level else 0), t, **kw)
    if level < 1e9:  # (at 1e9 a spread of 1e-6 is at the values' own rounding)
        small = level + np.array([0.0, 1e-6, 2e-6, 0.0, 1e-6, 3e-6])
        assert outcome_sd(small, t)[0] == pytest.approx(np.sqrt((2e-12 + 4.667e-12) / 4), rel=1e-3)


def test_hedges2007_t_adjustment_worked_example():
    """Worked by hand: t = 2.5, N = 400 students in m = 20 schools, rho = 0.2."""
    N, m, rho, t = 400, 20, 0.2, 2.5
    nbar = N / m  # 20
    a = (N - 2) - 2 * (nbar - 1) * rho  # 398 - 7.6 = 390.4
    assert a == pytest.approx(390.4)
    t_expected = t * np.sqrt(390.4 / (398 * (1 + 19 * 0.2)))  # sqrt(390.4/1910.4) = 0.452055
    h_expected = 390.4**2 / (398 * 0.64 + 20 * 360 * 0.04 + 2 * 360 * 0.2 * 0.8)  # 152412.16 / (254.72 + 288 + 115.2) = 152412.16 / 657.92
    t_a, h = hedges2007_adjusted_t(t, N, m, rho)
    assert t_a == pytest.approx(t_expected) and t_a == pytest.approx(1.130137, rel=1e-5)
    assert h == pytest.approx(h_expected) and h == pytest.approx(231.6576, rel=1e-5)
    # no clustering -> no change
    t0, h0 = hedges2007_adjusted_t(t, N, m, 0.0)
    assert t0 == pytest.approx(t) and h0 == pytest.approx(N - 2)


def test_hedges2007_df_against_published_r_output():
    """h of Hedges (2007) (WWC Procedures Handbook v5.0, eq. E.21) for N = 100 students in
    clusters of n = 5 (m = 20) with ρ = 0.1: the R package VIVECampbell documents
    ``df_h(N_total = 100, ICC = 0.1, avg_grp_size = 5)`` → 94.4 (rounded to 2 decimals; its
    pkgdown reference page, reference/df_h.md)."""
    _, h = hedges2007_adjusted_t(1.0, 100, 20, 0.1)
    assert round(float(h), 2) == 94.4


def test_hedges2007_effect_size_by_simulation():
    """d_T is unbiased for delta_T and V(d_T) matches its Monte Carlo variance."""
    rng = np.random.default_rng(2007)
    m_per_arm, n, rho, delta, reps = 10, 15, 0.2, 0.3, 3000
    u = rng.normal(0, np.sqrt(rho), (reps, 2 * m_per_arm, 1))
    e = rng.normal(0, np.sqrt(1 - rho), (reps, 2 * m_per_arm, n))
    y = u + e
    y[:, :m_per_arm] += delta
    yt, yc = y[:, :m_per_arm].reshape(reps, -1), y[:, m_per_arm:].reshape(reps, -1)
    s_total = np.sqrt(((yt - yt.mean(1, keepdims=True)) ** 2).sum(1) + ((yc - yc.mean(1, keepdims=True)) ** 2).sum(1))
    s_total /= np.sqrt(yt.shape[1] + yc.shape[1] - 2)
    d, v = hedges2007_effect_size(yt.mean(1) - yc.mean(1), s_total, yt.shape[1], yc.shape[1], n, rho)
    assert abs(d.mean() - delta) < 0.015
    assert v.mean() == pytest.approx(d.var(), rel=0.12)


def test_bad_sizes():
    with pytest.raises(DataError):
        hedges_g(1, 0, 1, 1, 1, 10)


def test_bad_sds_and_iccs_are_errors():
    """Before 2026-12-04: glass_delta with a negative SD flipped the effect's sign, constant
    samples gave inf or NaN, hedges2007_effect_size took any ICC (ρ = −0.1 gave a variance below
    the unclustered one, ρ = 1 and 1.5 plausible numbers) and a NaN ICC passed the t
    adjustment's check; a numpy integer norm SD was 'not a positive number'."""
    with pytest.raises(DataError, match="comparison group's SD must be a positive number"):
        glass_delta(1, 0, -1)
    with pytest.raises(DataError, match="pooled SD must be a positive number"):
        hedges_g_from_samples([2, 2, 2], [1, 1, 1])
    with pytest.raises(DataError, match="pooled SD"):
        hedges_g(1, 0, 0, 0, 10, 10)
    with pytest.raises(DataError, match="non-negative"):
        pooled_sd(-1, 1, 10, 10)
    for rho in (-0.1, 1.0, 1.5, np.nan):
        with pytest.raises(DataError, match=r"icc must lie in \[0, 1\)"):
            hedges2007_effect_size(5, 10, 100, 100, 10, rho)
    with pytest.raises(DataError, match="icc"):
        hedges2007_adjusted_t(2.0, 100, 10, np.nan)
    with pytest.raises(DataError, match="cluster_size"):
        hedges2007_effect_size(5, 10, 100, 100, 150, 0.2)
    d, v = hedges2007_effect_size(5, 10, 100, 100, 10, 0.0)  # ρ = 0: the unclustered d and variance
    assert d == 0.5 and v == pytest.approx(200 / 100**2 + 0.25 / (2 * 198), rel=1e-12)
    y = np.r_[np.arange(10.0), np.arange(10.0) + 1]
    t = np.r_[np.zeros(10), np.ones(10)]
    assert outcome_sd(y, t, np.int64(15)) == (15.0, "given norm SD (15)")


def test_outcome_sd_within_strata_ignores_grade_mean_differences():
    rng = np.random.default_rng(8)
    grade = np.repeat([3, 4, 5, 6], 500)
    t = rng.integers(0, 2, grade.size)
    y = rng.normal(0, 15, grade.size) + 10 * grade  # grade means 10 points apart
    sd_pooled, _ = outcome_sd(y, t)
    sd_within, kind = outcome_sd(y, t, strata=grade)
    assert sd_pooled > 18 and "within strata" in kind
    assert sd_within == pytest.approx(15, rel=0.04)
    # by hand: pool the 8 grade-by-arm variances with their n - 1
    num = den = 0.0
    for g in np.unique(grade):
        for a in (0, 1):
            yy = y[(grade == g) & (t == a)]
            num += (yy.size - 1) * yy.var(ddof=1)
            den += yy.size - 1
    assert sd_within == pytest.approx(np.sqrt(num / den), rel=1e-12)
    # a list of arrays defines strata by their combinations
    subject = np.tile(["math", "reading"], grade.size // 2)
    assert outcome_sd(y, t, strata=[grade, subject])[0] == pytest.approx(
        outcome_sd(y, t, strata=np.char.add(grade.astype(str), subject))[0], rel=1e-12
    )


def _outcome_sd_per_arm(y, t, kind, w, w2, codes):
    """outcome_sd's weighted, stratified SD taken arm by arm on the arm's rows (its earlier form)."""
    ok = np.isfinite(y) & (w > 0)
    ss = dof = 0.0
    S = int(codes.max()) + 1
    for arm in ((~t,) if kind == "comparison" else (~t, t)):
        m = arm & ok
        c, yy, ww = codes[m], y[m], w[m]
        sw, sw2 = np.bincount(c, ww, S), np.bincount(c, w2[m], S)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(c, ww * yy, S) / sw
            n_eff = sw**2 / sw2
            var = np.bincount(c, ww * (yy - mean[c]) ** 2, S) / sw * n_eff / (n_eff - 1.0)
        use = n_eff > 1.0 + 1e-9
        ss += float(np.sum((n_eff[use] - 1.0) * var[use]))
        dof += float(np.sum(n_eff[use] - 1.0))
    return float(np.sqrt(ss / dof))


@pytest.mark.parametrize("kind", ["pooled", "comparison"])
def test_outcome_sd_in_one_pass_is_the_sd_arm_by_arm(kind):
    """All arms and strata in one set of bincounts: bit for bit the arm-by-arm sums, with
    missing outcomes, zero weights, strata empty in an arm and single-row strata."""
    rng = np.random.default_rng(11)
    n = 3000
    y = rng.normal(200, 15, n)
    y[rng.random(n) < 0.03] = np.nan
    t = rng.random(n) < 0.3
    w = rng.choice([0.0, 0.2, 0.5, 1.0, 1 / 3], n)
    w2 = w**2 * rng.integers(1, 4, n)
    codes = rng.integers(0, 12, n)
    codes[(codes == 5) & t] = 4  # stratum 5: comparison rows only
    codes[np.flatnonzero(codes == 7)[1:]] = 6  # stratum 7: one row
    got = outcome_sd(y, t, kind, weights=w, strata=codes, weights2=w2)[0]
    assert got == _outcome_sd_per_arm(y, t, kind, w, w2, pd.factorize(codes)[0])
    with pytest.raises(DataError, match="strata"):
        outcome_sd(y, t, kind, strata=np.where(codes == 3, np.nan, codes))


def test_a_norm_sd_far_from_the_outcomes_own_is_warned_of_and_huge_effects_do_not_overflow():
    """--sd 0.01 on scores with SD 15 gave '236.9 SD' without a word, and --sd 0.001 crashed in
    the E-value's exp() (OverflowError)."""
    import warnings as w

    from pleval.effect_sizes import outcome_sd
    from pleval.errors import PlevalWarning
    from pleval.sensitivity.evalue import evalue_smd

    rng = np.random.default_rng(0)
    y, t = rng.normal(200, 15, 400), np.repeat([0, 1], 200)
    with pytest.warns(PlevalWarning, match="norm SD 0.01 is [\\d,]+ times smaller than the outcome's own SD"):
        outcome_sd(y, t, kind=0.01)
    with w.catch_warnings():
        w.simplefilter("error", PlevalWarning)
        assert outcome_sd(y, t, kind=12.0)[0] == 12.0  # a norm near the sample's: quiet
    with pytest.raises(DataError, match="too large for an E-value"):
        evalue_smd(2368.9, 2000.0, 2700.0)


def test_baseline_difference_is_hedges_g_on_the_impacts_sd():
    """Without strata: hedges_g of the groups' means and SDs (weighted: Kish effective n). With
    strata: the same raw difference over the SD pooled within strata (outcome_sd's), which grade
    means do not inflate; NaN when no SD can be computed."""
    rng = np.random.default_rng(7)
    n = 400
    grade = rng.integers(3, 9, n)
    t = rng.random(n) < 0.4
    x = 180 + 8 * grade + rng.normal(0, 12, n) - 3 * t
    ref = hedges_g(x[t].mean(), x[~t].mean(), x[t].std(ddof=1), x[~t].std(ddof=1), t.sum(), (~t).sum())
    bd = baseline_difference(x, t)
    assert bd.g == pytest.approx(ref, rel=1e-12)
    assert (bd.mean_treated, bd.mean_control) == pytest.approx((x[t].mean(), x[~t].mean()), rel=1e-14)
    within = baseline_difference(x, t, strata=grade)
    assert within.sd == pytest.approx(outcome_sd(x, t, strata=grade)[0], rel=1e-14)
    assert within.sd < 0.8 * bd.sd and abs(within.g) > abs(bd.g)
    f = pd.DataFrame({"x": x, "t": t, "grade": grade})
    cells = f.groupby(["grade", "t"])["x"].mean().unstack()
    diff = np.average(cells[True] - cells[False], weights=f.groupby("grade").size())
    assert within.difference == pytest.approx(diff, rel=1e-12)
    assert within.g == pytest.approx(hedges_omega(n) * diff / within.sd, rel=1e-12)
    # equal arms within every grade, the arms' grade mix apart: no baseline difference
    older = np.where(t, grade + 2, grade)
    same = 180 + 8 * older + np.tile([-1.0, 1.0], n // 2)
    assert abs(baseline_difference(same, t, strata=older).g) < 0.1 < abs(baseline_difference(same, t).g)
    w = rng.uniform(0.2, 3, n)
    wg = baseline_difference(x, t, weights=w)
    mt, mc = np.average(x[t], weights=w[t]), np.average(x[~t], weights=w[~t])
    vt, vc = np.cov(x[t], aweights=w[t]), np.cov(x[~t], aweights=w[~t])
    nt, nc = w[t].sum() ** 2 / (w[t] ** 2).sum(), w[~t].sum() ** 2 / (w[~t] ** 2).sum()
    assert (wg.n_treated, wg.n_control) == pytest.approx((nt, nc), rel=1e-12)
    assert wg.g == pytest.approx(hedges_g(mt, mc, np.sqrt(vt), np.sqrt(vc), nt, nc), rel=1e-10)
    assert np.isnan(baseline_difference(np.ones(6), np.array([1, 1, 1, 0, 0, 0])).g)
    with pytest.raises(DataError, match="the strata have missing values"):  # (a NaN grade made a treated row control)
        baseline_difference(x, t, strata=np.where(np.arange(n) == 0, np.nan, grade))


def test_series_are_paired_by_label():
    """Series with the same labels in another order were paired by position (hedges_g of
    math 210 − 205 and reading 220 − 215 read −0.332 and 0.996, where both are 0.332) and came
    back as bare arrays. They are now paired by label, the result a Series with the first
    argument's labels; Series with other labels are a DataError naming a label."""
    mt = pd.Series([210.0, 220.0, 200.0], index=["math", "reading", "science"])
    mc = pd.Series([215.0, 205.0, 190.0], index=["reading", "math", "science"])
    sd_t = pd.Series([15.0, 12.0, 14.0], index=mt.index)
    sd_c = pd.Series([11.0, 16.0, 13.0], index=["science", "reading", "math"])
    n_t, n_c = 100, pd.Series([80, 90, 120], index=["math", "science", "reading"])
    # independent, by pandas' own label arithmetic
    sp = np.sqrt(((n_t - 1) * sd_t**2 + (n_c - 1) * sd_c**2) / (n_t + n_c - 2))
    omega = 1 - 3 / (4 * (n_t + n_c) - 9)
    want = (omega * (mt - mc) / sp).reindex(mt.index)
    got = hedges_g(mt, mc, sd_t, sd_c, n_t, n_c)
    assert isinstance(got, pd.Series) and list(got.index) == list(mt.index)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(cohens_d(mt, mc, sd_t, sd_c, n_t, n_c), ((mt - mc) / sp).reindex(mt.index), rtol=1e-12)
    np.testing.assert_allclose(pooled_sd(sd_t, sd_c, n_t, n_c), sp.reindex(sd_t.index), rtol=1e-12)
    np.testing.assert_allclose(glass_delta(mt, mc, sd_c), ((mt - mc) / sd_c).reindex(mt.index), rtol=1e-12)
    g = pd.Series([0.2, 0.4, 0.1], index=mt.index)
    np.testing.assert_allclose(hedges_g_variance(g, n_t, n_c),
                               ((n_t + n_c) / (n_t * n_c) + g**2 / (2 * (n_t + n_c))).reindex(g.index), rtol=1e-12)
    pt, pc = pd.Series([0.6, 0.5], index=["math", "reading"]), pd.Series([0.55, 0.4], index=["reading", "math"])
    lo = np.log(pt / (1 - pt)) - np.log(pc / (1 - pc))
    np.testing.assert_allclose(cox_index(pt, pc, 100, 100), (1 - 3 / 791) * lo.reindex(pt.index) / 1.65, rtol=1e-12)
    t_a, h = hedges2007_adjusted_t(pd.Series([2.0, 3.0], index=["a", "b"]), 400,
                                   pd.Series([10, 40], index=["b", "a"]), 0.2)
    ref_t, ref_h = hedges2007_adjusted_t(np.array([2.0, 3.0]), 400, np.array([40, 10]), 0.2)
    np.testing.assert_allclose(t_a, ref_t, rtol=1e-12)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12)
    assert list(t_a.index) == ["a", "b"]
    with pytest.raises(DataError, match=r"mean_t and mean_c are Series with different labels .*'math' is in mean_t"):
        hedges_g(mt, mc.rename({"math": "maths"}), 15, 15, 100, 100)
    mc_na = mc.astype(object).where(mc.index != "math", pd.NA)  # pd.NA counts as missing: NaN, as for NaN
    assert np.isnan(cohens_d(mt, mc_na, 15, 15, 100, 100)["math"])


def test_row_vectors_are_paired_by_label():
    """outcome_sd and baseline_difference pair y (x), treated, weights and strata Series by label:
    rows of ``treated`` in another order gave another SD and another difference."""
    rng = np.random.default_rng(5)
    idx = [f"s{i}" for i in range(60)]
    y = pd.Series(rng.normal(size=60) + np.repeat([0.0, 1.0], 30), idx)
    t = pd.Series(np.repeat([0, 1], 30), idx)
    grade = pd.Series(np.tile([3, 4, 5], 20), idx)
    perm = rng.permutation(60)
    sd, _ = outcome_sd(y, t.iloc[perm], strata=grade.iloc[perm[::-1]])
    ref = outcome_sd(y.to_numpy(), t.to_numpy(), strata=grade.to_numpy())[0]
    # independent: the within arm × grade variances pooled
    cells = y.groupby([t, grade])
    want = np.sqrt(((cells.count() - 1) * cells.var()).sum() / (cells.count() - 1).sum())
    assert sd == pytest.approx(want, rel=1e-12) and ref == pytest.approx(want, rel=1e-12)
    bd = baseline_difference(y, t.iloc[perm])
    assert bd.difference == pytest.approx(y[t == 1].mean() - y[t == 0].mean(), rel=1e-12)
