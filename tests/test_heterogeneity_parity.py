"""metafor parity: τ² estimators ML, HE, SJ, EB, HS; the t(k−1) prediction interval;
leave-one-out and influence diagnostics (pleval.heterogeneity.influence); the sign-flip
permutation test of the pooled effect (pleval.heterogeneity.permutation).

Reference numbers are metafor's published test values (wviechtb/metafor, tests/testthat/;
the file is named next to each). Independent checks: brute-force likelihood maximization,
closed forms written out here, and refitting without each school.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from pleval.errors import DataError, DesignError
from pleval.heterogeneity import influence as influence_module
from pleval.heterogeneity import (
    empirical_bayes,
    leave_one_out,
    leave_one_out_metareg,
    meta_analysis,
    meta_regression,
    permutation_test,
)
from pleval.heterogeneity import _metareg_batch as mb
from pleval.heterogeneity import _tau2
from pleval.heterogeneity import permutation as permutation_module

from .conftest import REFERENCE, sim_reps
from .test_heterogeneity_meta import TWO_MAXIMA

# Viechtbauer (2005) example 1, data and results as in metafor's
# tests/testthat/test_analysis_example_viechtbauer2005.r (results on page 271).
V05_Y = np.array([-0.581, 0.530, 0.771, 1.031, 0.553, 0.295, 0.078, 0.573, -0.176, -0.232])
V05_V = np.array([0.023, 0.052, 0.060, 0.115, 0.095, 0.203, 0.200, 0.211, 0.051, 0.040])
V05_METHODS = ("HS", "HE", "DL", "ML", "REML", "EB", "SJ")
V05_TAU2 = (0.2282, 0.1484, 0.2768, 0.1967, 0.2232, 0.192, 0.1992)
V05_I2 = (77.2284, 68.7988, 80.4447, 74.5098, 76.8399, 74.0511, 74.7545)
V05_H2 = (4.3914, 3.205, 5.1137, 3.9231, 4.3178, 3.8537, 3.9611)
# Example 2 (page 272), same file.
V05B_Y = np.array([0.100, -0.162, -0.090, -0.049, -0.046, -0.010, -0.431, -0.261, 0.134, 0.019, 0.175, 0.056,
                   0.045, 0.103, 0.121, -0.482, 0.290, 0.342])
V05B_V = np.array([0.016, 0.015, 0.050, 0.050, 0.032, 0.052, 0.036, 0.024, 0.034, 0.033, 0.031, 0.034, 0.039,
                   0.167, 0.134, 0.096, 0.016, 0.035])
V05B_TAU2 = (0.0099, 0, 0.0126, 0.0132, 0.0157, 0.0104, 0.0248)


def close(a, b, digits=4):
    """Equal to the published number at its printed precision (half a unit in the last place)."""
    assert abs(a - b) <= 0.5 * 10**-digits + 1e-12, (a, b)


@pytest.fixture(scope="module")
def bcg():
    b = pd.read_csv(REFERENCE / "bcg.csv")
    y = np.log((b.tpos / (b.tpos + b.tneg)) / (b.cpos / (b.cpos + b.cneg))).to_numpy()
    v = (1 / b.tpos - 1 / (b.tpos + b.tneg) + 1 / b.cpos - 1 / (b.cpos + b.cneg)).to_numpy()
    return y, np.sqrt(v), b


@pytest.mark.parametrize("i", range(len(V05_METHODS)))
def test_viechtbauer2005_tau2_i2_h2(i):
    m = V05_METHODS[i]
    r = meta_analysis(V05_Y, np.sqrt(V05_V), method=m)
    close(r.tau2, V05_TAU2[i])
    assert r.i2 == pytest.approx(V05_I2[i], abs=5e-3)  # tau² printed to 4 digits drives the 4th
    assert r.h2 == pytest.approx(V05_H2[i], abs=5e-4)
    r2 = meta_analysis(V05B_Y, np.sqrt(V05B_V), method=m)
    close(r2.tau2, V05B_TAU2[i])


def test_ml_tau2_se_matches_metafor():
    # se.tau2 for ML, examples 1 and 2: 0.1255 and 0.0151 (test_analysis_example_viechtbauer2005.r)
    close(meta_analysis(V05_Y, np.sqrt(V05_V), method="ML").tau2_se, 0.1255)
    close(meta_analysis(V05B_Y, np.sqrt(V05B_V), method="ML").tau2_se, 0.0151)


def test_clasp_estimators_tau_mu_se():
    """DerSimonian & Kacker (2007) CLASP example, Tables 3-4, as in metafor's
    tests/testthat/test_analysis_example_dersimonian2007.r (CA = HE)."""
    n1 = np.array([156, 303, 565, 1570, 103, 4659.0])
    n2 = np.array([74, 303, 477, 1565, 105, 4650.0])
    a = np.array([5, 5, 12, 69, 9, 313.0])
    c = np.array([8, 17, 9, 94, 11, 352.0])
    b, d = n1 - a, n2 - c
    y = np.log(a * d / (b * c))
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    expected = {  # method: (tau, mu, se)
        "PM": (0.3681, -0.3811, 0.2060), "HE": (0.4410, -0.4035, 0.2327), "DL": (0.2323, -0.3240, 0.1540),
        "EB": (0.3681, -0.3811, 0.2060), "REML": (0.1843, -0.2980, 0.1343), "HS": (0.1330, -0.2666, 0.1125),
        "SJ": (0.4572, -0.4079, 0.2386),
    }
    for m, (tau, mu, s) in expected.items():
        r = meta_analysis(y, se, method=m)
        close(r.tau, tau), close(r.estimate, mu), close(r.se, s)
    # ML: the article prints tau 0.0023; the ML maximum is at the boundary (tau² = 0, as metafor
    # returns), so mu and SE agree to the printed digits within one unit.
    r = meta_analysis(y, se, method="ML")
    assert r.tau < 0.005 and abs(r.estimate + 0.1974) <= 1e-4 and abs(r.se - 0.0694) <= 1e-4


def test_berkey1995_empirical_bayes_on_bcg(bcg):
    """Berkey et al. (1995, p. 408) on dat.bcg with smoothed variances, as in metafor's
    tests/testthat/test_analysis_example_berkey1995.r."""
    _, _, b = bcg
    y = np.log((b.tpos / (b.tpos + b.tneg)) / (b.cpos / (b.cpos + b.cneg))).to_numpy()
    v = (np.sum(b.tneg / b.tpos) / (13 * (b.tneg + b.tpos)) + np.sum(b.cneg / b.cpos) / (13 * (b.cneg + b.cpos))).to_numpy()
    r = meta_analysis(y, np.sqrt(v), method="EB")
    close(r.estimate, -0.5429), close(r.se, 0.1842), close(r.tau2, 0.2682)
    mr = meta_regression(y, np.sqrt(v), b.ablat - 33.46, method="EB")
    c = mr.coefficients
    close(c.estimate.iloc[0], -0.6303), close(c.estimate.iloc[1], -0.0268)
    close(c.se.iloc[0], 0.1591), close(c.se.iloc[1], 0.0110)
    close(mr.tau2, 0.1572)
    assert 100 * mr.r2 == pytest.approx(41.3844, abs=5e-3)


def test_estimators_against_their_definitions(bcg):
    """Each estimator from its defining formula written out here (meta-regression on ablat)."""
    y, se, b = bcg
    v = se**2
    X = np.column_stack([np.ones(13), b.ablat.to_numpy(float)])
    k, p = X.shape
    H = X @ np.linalg.solve(X.T @ X, X.T)
    rss = y @ (np.eye(k) - H) @ y

    def q_at(t):
        W = np.diag(1 / (v + t))
        P = W - W @ X @ np.linalg.solve(X.T @ W @ X, X.T @ W)
        return y @ P @ y

    def fit(m):
        return meta_regression(y, se, b.ablat, method=m).tau2

    assert fit("HE") == pytest.approx(max(0.0, (rss - np.trace((np.eye(k) - H) @ np.diag(v))) / (k - p)), rel=1e-10)
    assert fit("HS") == pytest.approx(max(0.0, (q_at(0.0) - k) / np.sum(1 / v)), rel=1e-10, abs=1e-14)
    t0 = rss / k
    assert fit("SJ") == pytest.approx(t0 * q_at(t0) / (k - p), rel=1e-10)
    assert q_at(fit("EB")) == pytest.approx(k - p, rel=1e-8)
    assert fit("EB") == pytest.approx(fit("PM"), rel=1e-10)

    def negll(t):
        W = 1 / (v + t)
        beta = np.linalg.solve(X.T @ (X * W[:, None]), X.T @ (W * y))
        r = y - X @ beta
        return 0.5 * (np.sum(np.log(v + t)) + np.sum(W * r**2))

    brute = optimize.minimize_scalar(negll, bounds=(0, 5), method="bounded", options={"xatol": 1e-12}).x
    assert fit("ML") == pytest.approx(brute, abs=1e-7)


def test_estimators_with_full_vcov_reduce_to_diagonal(bcg):
    y, se, _ = bcg
    for m in ("ML", "HE", "SJ", "EB"):
        a = meta_analysis(y, se, method=m)
        b = meta_analysis(y, se, method=m, vcov=np.diag(se**2))
        assert b.tau2 == pytest.approx(a.tau2, rel=1e-9, abs=1e-12) and b.estimate == pytest.approx(a.estimate, rel=1e-9)
    with pytest.raises(DataError, match="HS.*independent estimates"):
        meta_analysis(y, se, method="HS", vcov=np.diag(se**2))
    with pytest.raises(DataError, match="method must be one of"):
        meta_analysis(y, se, method="XX")


def test_prediction_interval_t_k_minus_1(bcg):
    y, se, _ = bcg
    r = meta_analysis(y, se, "REML", hartung_knapp=True, prediction="t_k1")
    half = stats.t.ppf(0.975, 12) * math.sqrt(r.tau2 + r.se**2)
    assert (r.pi_low, r.pi_high) == pytest.approx((r.estimate - half, r.estimate + half))
    assert "t(k-1)" in r.summary()
    default = meta_analysis(y, se, "REML", hartung_knapp=True)
    assert default.pi_high - default.pi_low > r.pi_high - r.pi_low  # t(k-2) is wider
    with pytest.raises(DataError, match="prediction"):
        meta_analysis(y, se, prediction="t(k-1)")


# ---------------------------------------------------------------- leave-one-out and influence


def test_influence_matches_metafor_on_bcg(bcg):
    """Study 1 of dat.bcg, REML: metafor's tests/testthat/test_misc_influence.r
    (influence() and leave1out())."""
    y, se, _ = bcg
    inf = leave_one_out(meta_analysis(y, se))
    ref = {  # value for study 1 as published there
        "rstudent": -0.218142474344442, "dffits": -0.0407075604868486, "cooks_d": 0.00171654236729195,
        "cov_ratio": 1.11644891104804, "tau2_del": 0.336156745300306, "q_del": 151.582572747109,
        "hat": 0.0505948307931551, "weight_pct": 5.05948307931551, "dfbetas": -0.0402659025974144,
        "estimate_del": -0.707083788031436, "se_del": 0.189961024702717, "ci_low_del": -1.07940055491509,
        "ci_high_del": -0.334767021147788, "pvalue_del": 0.000197449759023198, "i2_del": 93.2259349111223,
        "h2_del": 14.762184698253,
    }
    row = inf.to_frame().iloc[0]
    for key, val in ref.items():
        assert row[key] == pytest.approx(val, rel=1e-6), key
    assert not inf.influential[0]


def test_influence_flags_as_many_studies_as_metafor(bcg):
    """metafor's tests/testthat/test_misc_influence.r: with the equal-effects model (method="EE",
    pleval's "FE") print(influence(res), infonly=TRUE) lists 3 of the 13 dat.bcg trials as
    influential (under REML, trial 1 is not: is.infl FALSE, the test above)."""
    y, se, _ = bcg
    assert leave_one_out(meta_analysis(y, se, method="FE")).influential.sum() == 3


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"])
@pytest.mark.parametrize("hk", [False, True])
def test_leave_one_out_equals_refitting(bcg, method, hk):
    y, se, _ = bcg
    inf = leave_one_out(meta_analysis(y, se, method=method, hartung_knapp=hk))
    for i in range(y.size):
        keep = np.arange(y.size) != i
        d = meta_analysis(y[keep], se[keep], method=method, hartung_knapp=hk)
        got = (inf.estimate_del[i], inf.se_del[i], inf.tau2_del[i], inf.q_del[i], inf.i2_del[i], inf.pvalue_del[i])
        assert got == pytest.approx((d.estimate, d.se, d.tau2, d.q, d.i2, d.pvalue), rel=1e-8, abs=1e-10)


# Sets whose deleted fits' likelihoods have two local maxima: the last two of TWO_MAXIMA, a school
# added (the moderator is for the meta-regression's leave-one-out). Before 2026-12-05 the vector
# Fisher steps from the full-data τ̂² stopped at the local one: in the first set, REML without the
# fourth school gave τ̂² = 0 for 0.0216 and ML without the first 0 for 0.0183; in the second, ML
# without the first 0.0675 where ℓ(0) is higher.
LOO_TWO_MAXIMA = [
    (TWO_MAXIMA[2][2] + [-0.2171], TWO_MAXIMA[2][3] + [0.54605], [-0.5, -0.1, 0.3, -0.3, -1.9, -0.1, 0.2, 1.1, 0.6]),
    (TWO_MAXIMA[3][2] + [0.6118], TWO_MAXIMA[3][3] + [0.38984], [-0.96, 1.6, 0.2, -1.73, -0.08, -1.16]),
]


def deleted_global_maxima(y, v, X, method):
    """Per school i, the deleted fit's (restricted) log-likelihood written out (``ℓ_R`` or ``ℓ``)
    on a dense grid of τ²: the number of its local maxima and the grid's best value."""
    k = y.size
    grid = np.concatenate([[0.0], np.geomspace(1e-8, 10, 3000)])
    n_max, best = np.empty(k, dtype=int), np.empty(k)
    for i in range(k):
        keep = np.arange(k) != i
        vals = np.array([loglik_written_out(y[keep], v[keep], X[keep], t, method) for t in grid])
        n_max[i] = ((vals[1:-1] > vals[:-2]) & (vals[1:-1] > vals[2:])).sum() + (vals[0] > vals[1])
        best[i] = vals.max()
    return n_max, best


def loglik_written_out(y, v, X, t, method):
    w = 1 / (v + t)
    A = X.T @ (X * w[:, None])
    r = y - X @ np.linalg.solve(A, X.T @ (w * y))
    return -0.5 * (np.log(v + t).sum() + (np.linalg.slogdet(A)[1] if method == "REML" else 0.0) + w @ r**2)


@pytest.mark.parametrize("case, method", [(0, "REML"), (0, "ML"), (1, "ML")])  # (1, REML): one maximum each
def test_leave_one_out_takes_the_global_maximum(case, method):
    """Where a deleted fit's likelihood has two local maxima, every row of leave_one_out is
    meta_analysis on the other schools (whose τ̂² is the global maximizer), and its τ̂²₍ᵢ₎ is at
    least as likely as every point of a dense grid; the diagnostics follow (Cook's distance from
    the refit)."""
    y, se = np.array(LOO_TWO_MAXIMA[case][0]), np.array(LOO_TWO_MAXIMA[case][1])
    k = y.size
    n_max, best = deleted_global_maxima(y, se**2, np.ones((k, 1)), method)
    assert (n_max == 2).any()
    for hk in (False, True):
        full = meta_analysis(y, se, method, hartung_knapp=hk)
        inf = leave_one_out(full)
        for i in range(k):
            keep = np.arange(k) != i
            d = meta_analysis(y[keep], se[keep], method=method, hartung_knapp=hk)
            got = (inf.estimate_del[i], inf.se_del[i], inf.tau2_del[i], inf.i2_del[i], inf.ci_low_del[i], inf.pvalue_del[i])
            assert got == pytest.approx((d.estimate, d.se, d.tau2, d.i2, d.ci_low, d.pvalue), rel=1e-8, abs=1e-9), i
            assert inf.cooks_d[i] == pytest.approx((full.estimate - d.estimate) ** 2 / full.se**2, rel=1e-8, abs=1e-12)
            ll = loglik_written_out(y[keep], se[keep] ** 2, np.ones((k - 1, 1)), inf.tau2_del[i], method)
            assert ll >= best[i] - 1e-12


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")  # five schools: a small HK factor
@pytest.mark.parametrize("method", ["REML", "DL"])
def test_leave_one_out_hartung_knapp_diagnostics_take_the_deleted_fits_factor(bcg, method):
    """With Hartung–Knapp, rstudent, DFFITS and DFBETAS carry the deleted fit's factor
    s²₍ᵢ₎ = Σw(y − μ̂₍ᵢ₎)²/(k − 2) (metafor's influence.rma.uni; before 2026-12-04 it was left out):
    equal to the intercept-only Knapp–Hartung meta-regression's diagnostics and, for one school,
    to metafor's formulas on a refit without it."""
    five = (np.array([0.02, 0.05, 0.08, 0.11, 0.60]), np.array([0.10, 0.10, 0.10, 0.10, 0.12]))
    for y, se in (bcg[:2], five):
        k = y.size
        full = meta_analysis(y, se, method=method, hartung_knapp=True)
        got = leave_one_out(full).to_frame()
        mr = leave_one_out_metareg(meta_regression(y, se, np.empty((k, 0)), method=method, knapp_hartung=True)).to_frame()
        for a, b in [("rstudent", "rstudent"), ("dffits", "dffits"), ("dfbetas", "dfbetas_intercept"),
                     ("cooks_d", "cooks_d"), ("cov_ratio", "cov_ratio"), ("influential", "influential")]:
            np.testing.assert_allclose(got[a].to_numpy(float), mr[b].to_numpy(float), rtol=1e-8, atol=1e-10, err_msg=a)
        i = k - 1
        keep = np.arange(k) != i
        v = se**2
        d = meta_analysis(y[keep], se[keep], method=method, hartung_knapp=True)
        wd = 1 / (v[keep] + d.tau2)
        s2w = wd @ (y[keep] - d.estimate) ** 2 / (k - 2)
        hat = (1 / (v[i] + full.tau2)) / np.sum(1 / (v + full.tau2))
        diff = full.estimate - d.estimate
        assert got.dffits[i] == pytest.approx(diff / np.sqrt(s2w * hat * (d.tau2 + v[i])), rel=1e-8)
        assert got.dfbetas[i] == pytest.approx(diff / np.sqrt(s2w / np.sum(1 / (v + d.tau2))), rel=1e-8)
        assert got.rstudent[i] == pytest.approx((y[i] - d.estimate) / np.sqrt(s2w * (v[i] + d.tau2) + d.se**2), rel=1e-8)


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_leave_one_out_hartung_knapp_with_identical_other_schools_uses_the_standard_se():
    """Without school 4 the estimates are identical: as meta_analysis, the deleted fit takes the
    standard SE (factor 1), and the diagnostics stay finite (they divided by 0)."""
    y, se = np.array([0.1, 0.1, 0.1, 0.5]), np.array([0.1, 0.1, 0.2, 0.1])
    inf = leave_one_out(meta_analysis(y, se, hartung_knapp=True))
    d = meta_analysis(y[:3], se[:3], hartung_knapp=True)
    assert inf.se_del[3] == pytest.approx(d.se, rel=1e-12) == pytest.approx(1 / np.sqrt(np.sum(1 / se[:3] ** 2)))
    assert inf.rstudent[3] == pytest.approx(0.4 / np.sqrt(se[3] ** 2 + d.tau2 + d.se**2), rel=1e-10)
    assert np.isfinite(inf.dffits).all() and np.isfinite(inf.dfbetas).all()


# Eight schools, the first far more precise than the rest: its weight 1/v is most of every
# fixed-effect total. Before 2026-12-05 the deleted fits' sums were those totals less each school's
# own term, of y rather than of residuals: at SE 1e-7, without the first school DL gave tau²
# 0.0306 for the refit's 0.0435 (Σw² was 10²⁸ less 10²⁸), REML I² 85.0% for 79.9% and Q 31.2590
# for 31.2598.
PRECISE_Y = np.array([0.31, 0.05, 0.42, -0.12, 0.18, 0.27, 0.60, 0.09])
PRECISE_SE = np.array([1e-7, 0.05, 0.12, 0.20, 0.08, 0.15, 0.10, 0.18])


def dl_written_out(y, se):
    """DerSimonian–Laird tau² in exact rational arithmetic (Q about the FE mean, Σw − Σw²/Σw)."""
    from fractions import Fraction

    w = [1 / Fraction(float(s)) ** 2 for s in se]
    y = [Fraction(float(a)) for a in y]
    mu = sum(a * b for a, b in zip(w, y)) / sum(w)
    q = sum(a * (b - mu) ** 2 for a, b in zip(w, y))
    return float(max(Fraction(0), (q - (len(y) - 1)) / (sum(w) - sum(a * a for a in w) / sum(w))))


def _loo_against_refits(y, se, method):
    """Asserts every row of leave_one_out (with and without Hartung–Knapp) equals meta_analysis on
    the other schools (estimate, SE, tau², Q, I², p); yields ``(i, keep, inf, hk)`` for more checks."""
    k = y.size
    for hk in (False, True):
        inf = leave_one_out(meta_analysis(y, se, method=method, hartung_knapp=hk))
        for i in range(k):
            keep = np.arange(k) != i
            d = meta_analysis(y[keep], se[keep], method=method, hartung_knapp=hk)
            got = (inf.estimate_del[i], inf.se_del[i], inf.tau2_del[i], inf.q_del[i], inf.i2_del[i], inf.pvalue_del[i])
            assert got == pytest.approx((d.estimate, d.se, d.tau2, d.q, d.i2, d.pvalue), rel=1e-8, abs=1e-10), (i, hk)
            yield i, keep, inf, hk


@pytest.mark.parametrize("tiny", [1e-7, 1e-6])
@pytest.mark.parametrize("method", _tau2.TAU2_METHODS)
def test_leave_one_out_with_one_very_precise_school_equals_refitting(method, tiny):
    """Every row of leave_one_out is meta_analysis on the other seven schools (estimate, SE, tau²,
    Q, I², p) when one SE is 1e-7 or 1e-6 and the others 0.05–0.2; DL's deleted tau² is also
    checked against the estimator written out in exact arithmetic."""
    y, se = PRECISE_Y, PRECISE_SE.copy()
    se[0] = tiny
    for i, keep, inf, _ in _loo_against_refits(y, se, method):
        if method == "DL":
            assert inf.tau2_del[i] == pytest.approx(dl_written_out(y[keep], se[keep]), rel=1e-10, abs=1e-14)


def test_power_series_equals_direct_sums(monkeypatch):
    """The series route (large k) against the direct k × k route, and spot refits."""
    rng = np.random.default_rng(7)
    k = 400
    se = rng.uniform(0.05, 0.3, k)
    y = rng.normal(0.1, 0.15, k) + se * rng.standard_normal(k)
    y[3] += 1.5  # an outlying school: its deleted fit is far from the others
    for method in ("REML", "PM", "SJ"):
        m = meta_analysis(y, se, method=method)
        fast = leave_one_out(m)
        monkeypatch.setattr(influence_module, "_SERIES_RATIO", -1.0)
        direct = leave_one_out(m)
        monkeypatch.undo()
        np.testing.assert_allclose(fast.tau2_del, direct.tau2_del, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(fast.estimate_del, direct.estimate_del, rtol=1e-10, atol=1e-13)
        for i in (0, 3):
            keep = np.arange(k) != i
            d = meta_analysis(y[keep], se[keep], method=method)
            assert fast.tau2_del[i] == pytest.approx(d.tau2, rel=1e-8)
    assert leave_one_out(meta_analysis(y, se)).drives_tau == 3


def test_influence_flags_the_school_that_drives_tau():
    rng = np.random.default_rng(3)
    se = np.full(20, 0.1)
    y = rng.normal(0.2, 0.02, 20)
    y[11] = 1.2
    inf = leave_one_out(meta_analysis(y, se, labels=[f"s{i}" for i in range(20)]))
    assert inf.drives_tau == 11 and inf.influential[11] and inf.to_frame().drives_tau.sum() == 1
    assert "s11" in inf.summary() and inf._repr_html_()
    assert inf.tau2_del[11] < 0.2 * inf.tau2


def test_leave_one_out_input_errors(bcg):
    y, se, _ = bcg
    with pytest.raises(DataError, match="independent"):
        leave_one_out(meta_analysis(y, se, vcov=np.diag(se**2)))
    with pytest.raises(DesignError, match="at least 3"):
        leave_one_out(meta_analysis(y[:2], se[:2], prediction="normal"))


# ---------------------------------------------------------------- permutation test


def test_permutation_follmann_proschan_exact():
    """Follmann & Proschan (1999) Table 1, Peto log odds ratios, DL, exact test on the
    estimate: p = 10/256 (metafor tests/testthat/test_misc_permutest.r)."""
    ai = np.array([173, 157, 131, 56, 52, 36, 62, 2.0])
    n1 = np.array([5331, 1906, 4541, 2051, 424, 1149, 6582, 88.0])
    ci = np.array([210, 193, 121, 84, 65, 42, 20, 2.0])
    n2 = np.array([5296, 1900, 4516, 2030, 422, 1129, 1663, 30.0])
    n, m1 = n1 + n2, ai + ci
    var = m1 * (n - m1) * n1 * n2 / (n**2 * (n - 1))  # Peto: y = (O - E)/V, v = 1/V
    y = (ai - m1 * n1 / n) / var
    p = permutation_test(meta_analysis(y, np.sqrt(1 / var), method="DL"), stat="estimate")
    assert p.exact and p.n_perm == 256 and p.pvalue == 10 / 256
    assert "exact" in p.summary() and p.to_frame().pvalue_permutation.iloc[0] == p.pvalue


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"])
def test_permutation_refits_equal_meta_analysis(bcg, method):
    y, se, _ = bcg
    rng = np.random.default_rng(1)
    signs = rng.choice((-1.0, 1.0), size=(6, y.size))
    for hk in (False, True):
        got = permutation_module._statistic(method, signs * y, se**2, hk, "z")
        want = [meta_analysis(s * y, se, method=method, hartung_knapp=hk).statistic for s in signs]
        np.testing.assert_allclose(got, want, rtol=1e-8)


def test_permutation_exact_equals_brute_force_enumeration(bcg):
    y, se, _ = bcg
    y, se = y[:7], se[:7]
    meta = meta_analysis(y, se, method="REML", hartung_knapp=True)
    zs = []
    for code in range(2**7):
        s = np.where((code >> np.arange(7)) & 1, -1.0, 1.0)
        zs.append(meta_analysis(s * y, se, method="REML", hartung_knapp=True).statistic)
    want = np.mean(np.abs(zs) >= abs(meta.statistic) - 1e-10)
    assert permutation_test(meta).pvalue == pytest.approx(want)


def test_permutation_random_patterns(bcg):
    y, se, _ = bcg
    meta = meta_analysis(y, se)
    a = permutation_test(meta, n_perm=499, seed=3)
    assert not a.exact and a.n_perm == 499 and 1 / 500 <= a.pvalue <= 1
    assert permutation_test(meta, n_perm=499, seed=3).pvalue == a.pvalue
    assert a.pvalue < 0.05  # BCG: the vaccine effect is clear
    with pytest.raises(DataError, match="independent"):
        permutation_test(meta_analysis(y, se, vcov=np.diag(se**2)))
    with pytest.raises(DataError, match="stat"):
        permutation_test(meta, stat="t")
    with pytest.raises(DataError, match="n_perm"):
        permutation_test(meta, n_perm=0)


@pytest.mark.parametrize("method, local, y, se", TWO_MAXIMA)
def test_permutation_refits_take_the_global_maximum(method, local, y, se):
    """On likelihoods with two local maxima the observed statistic is the meta-analysis's, and
    every sign-flipped refit's τ² is the global maximizer of :mod:`._tau2` (fitted pattern by
    pattern). Before 2026-12-04 the vector Fisher scoring stopped at the local one: the first
    set's observed z was 6.96 (τ² = 0) for the meta-analysis's 5.06 (τ² = 0.00203), the second's
    4.88 for 2.59."""
    y, se = np.array(y), np.array(se)
    v, k = se**2, y.size
    for hk in (False, True):
        meta = meta_analysis(y, se, method, hartung_knapp=hk)
        assert permutation_test(meta, n_perm=99, seed=2).observed == pytest.approx(meta.statistic, rel=1e-9)
    signs = np.vstack([np.ones(k), np.random.default_rng(7).choice((-1.0, 1.0), size=(60, k))])
    fit = _tau2.reml_tau2 if method == "REML" else _tau2.ml_tau2
    want = np.array([fit(s * y, v, np.ones((k, 1)))[0] for s in signs])
    np.testing.assert_allclose(permutation_module._tau2_patterns(method, signs * y, v), want, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(mb.tau2_batch(method, signs * y, np.broadcast_to(v, signs.shape), np.ones((k, 1))),
                               want, rtol=1e-7, atol=1e-12)


def test_permutation_size_under_the_null():
    """Exact test, k = 6 schools, symmetric effects around 0: rejection rate at 5% is at most
    5% (up to simulation error), while the z test with REML over-rejects."""
    rng = np.random.default_rng(11)
    reps, k = sim_reps(400), 6
    rej_perm = rej_z = 0
    for _ in range(reps):
        se = rng.uniform(0.05, 0.3, k)
        y = rng.normal(0, 0.2, k) + se * rng.standard_normal(k)
        meta = meta_analysis(y, se, prediction="normal")
        rej_perm += permutation_test(meta, n_perm=64).pvalue <= 0.05
        rej_z += meta.pvalue <= 0.05
    assert rej_perm / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    assert rej_z >= rej_perm


def test_influence_small_example_matches_metafor():
    """yi = 3, 2, 5, 4, 6 with vi = 1 (REML): metafor tests/testthat/test_misc_handling_nas.r
    (leave1out estimates, Cook's distances, DFBETAS, hat values, deleted residuals)."""
    y = np.array([3, 2, 5, 4, 6.0])
    inf = leave_one_out(meta_analysis(y, np.ones(5)))
    np.testing.assert_allclose(inf.estimate_del, [4.25, 4.5, 3.75, 4, 3.5], atol=1e-10)
    np.testing.assert_allclose(inf.cooks_d, [0.125, 0.5, 0.125, 0, 0.5], atol=1e-10)
    np.testing.assert_allclose(inf.dfbetas, [-0.3273, -0.8660, 0.3273, 0, 0.8660], atol=5e-5)
    np.testing.assert_allclose(inf.hat, 0.2, atol=1e-12)
    np.testing.assert_allclose(y - inf.estimate_del, [-1.25, -2.5, 1.25, 0, 2.5], atol=1e-10)


# ---------------------------------------------------------------- BLUPs for meta-regression


def test_metaregression_blup_matches_metafor():
    """yi = 2, 5, 4, 6, vi = 1, xi = 3..6 (REML): blup() and ranef() predictions from metafor
    tests/testthat/test_misc_handling_nas.r."""
    b = meta_regression([2, 5, 4, 6.0], np.ones(4), [3, 4, 5, 6.0]).blup()
    np.testing.assert_allclose(b.blup, [2.4444, 4.0370, 4.5926, 5.9259], atol=5e-5)
    np.testing.assert_allclose(b.ranef, [-0.1556, 0.3370, -0.2074, 0.0259], atol=5e-5)
    np.testing.assert_allclose(b.fitted, [2.6, 3.7, 4.8, 5.9], atol=1e-10)


def test_metaregression_blup_against_empirical_bayes_and_vcov(bcg):
    y, se, b = bcg
    none = pd.DataFrame(index=range(y.size))  # no moderators: the BLUP is the shrinkage estimate
    eb = empirical_bayes(y, se)
    bl = meta_regression(y, se, none).blup()
    np.testing.assert_allclose(bl.blup, eb.shrunk, rtol=1e-8)
    np.testing.assert_allclose(bl.se, eb.shrunk_sd, rtol=1e-8)
    rng = np.random.default_rng(2)
    L = rng.normal(0, 0.02, (y.size, y.size))
    V = np.diag(se**2) + L @ L.T
    Vs = V * np.outer(se, se) / np.sqrt(np.outer(np.diag(V), np.diag(V)))  # keep diag = se²
    blv = meta_regression(y, se, none, vcov=Vs).blup()
    ebv = empirical_bayes(y, se, vcov=Vs)
    np.testing.assert_allclose(blv.blup, ebv.shrunk, rtol=1e-8)
    np.testing.assert_allclose(blv.se, ebv.shrunk_sd, rtol=1e-8)
    a = meta_regression(y, se, b.ablat).blup()
    d = meta_regression(y, se, b.ablat, vcov=np.diag(se**2)).blup()
    np.testing.assert_allclose(a.to_numpy(), d.to_numpy(), rtol=1e-8, atol=1e-12)


def q_written_out(y, se):
    """Cochran's Q in exact rational arithmetic."""
    from fractions import Fraction

    w = [1 / Fraction(float(s)) ** 2 for s in se]
    y = [Fraction(float(a)) for a in y]
    mu = sum(a * b for a, b in zip(w, y)) / sum(w)
    return float(sum(a * (b - mu) ** 2 for a, b in zip(w, y)))


# Two very precise schools with different estimates. The eight schools above with the second SE
# 1e-6 too: before 2026-12-05 only the single heaviest school's deleted fit was summed directly,
# still about the full-data FE mean, so without the first school Q was 45.320580 for 45.320563
# (4e-7); and six schools (a random set, rounded) whose PM/EB deleted fit without the first school
# stopped at tau² 0 (estimate 0.0866, SE 3.2e-6) where meta_analysis finds 0.000927 (0.0639, 0.027):
# the Newton step overshot to 0, where the step is 1e-12 because dQ/dtau² is huge.
TWO_PRECISE = {
    "eight": (PRECISE_Y, np.r_[1e-7, 1e-6, PRECISE_SE[2:]]),
    "six": (np.array([0.4111, 0.0866, -0.2024, -0.0263, -0.0361, 0.0009]),
            np.array([3.2273e-6, 3.2290e-6, 0.1782, 0.1765, 0.1447, 0.0782])),
}


@pytest.mark.parametrize("data", sorted(TWO_PRECISE))
@pytest.mark.parametrize("method", _tau2.TAU2_METHODS)
def test_leave_one_out_with_two_very_precise_schools_equals_refitting(method, data):
    """Every row of leave_one_out is meta_analysis on the other schools (estimate, SE, tau², Q, I²,
    p) with two very precise schools, and Q is Cochran's Q written out in exact arithmetic."""
    y, se = TWO_PRECISE[data]
    for i, keep, inf, hk in _loo_against_refits(y, se, method):
        assert inf.q_del[i] == pytest.approx(q_written_out(y[keep], se[keep]), rel=1e-12), (i, hk)


@pytest.mark.parametrize("method", ["PM", "EB"])
def test_permutation_pm_refits_with_two_very_precise_schools(method):
    """Two SEs of 2.4e-7 and 4.0e-7: every sign pattern's PM/EB τ² is meta_analysis's root of
    Q(τ²) = k − 1, and the exact p-value (Hartung–Knapp) equals the enumeration of meta_analysis
    refits. Before 2026-12-05 the vector Newton steps stopped on the step's size alone: from 0 the
    first step is about 1e-13 (dQ/dτ² is huge), so the observed pattern's τ² was 1.1e-13 for
    0.0532, and the exact p-value 0.375 for 0.75."""
    y = np.array([0.1595, 0.1881, 0.1341, -0.3099])
    se = np.array([2.4478e-7, 4.0245e-7, 0.074968, 0.056202])
    k = y.size
    signs = np.array([np.where((c >> np.arange(k)) & 1, -1.0, 1.0) for c in range(2**k)])
    fits = [meta_analysis(s * y, se, method=method, hartung_knapp=True) for s in signs]
    np.testing.assert_allclose(permutation_module._tau2_patterns(method, signs * y, se**2), [f.tau2 for f in fits],
                               rtol=1e-8, atol=1e-15)
    zs = np.abs([f.statistic for f in fits])
    assert permutation_test(fits[0]).pvalue == pytest.approx(np.mean(zs >= zs[0] - 1e-10 * zs[0]))
