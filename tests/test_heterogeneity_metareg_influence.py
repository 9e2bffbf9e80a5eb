"""Leave-one-out and influence diagnostics for meta-regression
(pleval.heterogeneity.leave_one_out_metareg) against metafor's published hat values and Cook's
distances on dat.bcg and against refitting ``meta_regression`` without each school."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pleval.errors import DataError, DesignError
from pleval.heterogeneity import leave_one_out_metareg, meta_analysis, meta_regression

from .conftest import REFERENCE
from .test_heterogeneity_parity import LOO_TWO_MAXIMA, deleted_global_maxima, loglik_written_out


@pytest.fixture(scope="module")
def bcg():
    b = pd.read_csv(REFERENCE / "bcg.csv")
    y = np.log((b.tpos / (b.tpos + b.tneg)) / (b.cpos / (b.cpos + b.cneg))).to_numpy()
    v = (1 / b.tpos - 1 / (b.tpos + b.tneg) + 1 / b.cpos - 1 / (b.cpos + b.cneg)).to_numpy()
    return y, np.sqrt(v), b


def test_bcg_hat_values_and_cooks_distances_match_metafor(bcg):
    """``rma(yi, vi, mods = ~ ablat)`` (REML): hatvalues and cooks.distance published in metafor
    tests/testthat/test_misc_influence.r. The same file gives Cook's distances for the same
    model fitted by ``rma.mv``, which differ from the ``rma`` ones in the last two schools
    (0.0404/0.1434 vs 0.0403/0.1433): pleval's values are 0.040351 and 0.143357, on the
    rounding boundary, where metafor's REML convergence threshold (1e-5 on τ²) decides the
    fourth digit; they equal the rma.mv values at 4 digits and the rma ones within 1e-4."""
    y, se, b = bcg
    r = leave_one_out_metareg(meta_regression(y, se, b[["ablat"]]))
    hat = [0.049, 0.1493, 0.0351, 0.3481, 0.2248, 0.2367, 0.064, 0.357, 0.0926, 0.1157, 0.2309, 0.0189, 0.0778]
    assert list(np.round(r.hat, 4)) == hat
    cook_mv = [0.0048, 0.0489, 0.0104, 0.2495, 0.0072, 0.2883, 0.3643, 0.2719, 0.02, 0.1645, 0.0009, 0.0404, 0.1434]
    cook_uni = [0.0048, 0.0489, 0.0104, 0.2495, 0.0072, 0.2883, 0.3643, 0.2719, 0.02, 0.1645, 0.0009, 0.0403, 0.1433]
    assert list(np.round(r.cooks_d, 4)) == cook_mv
    np.testing.assert_allclose(r.cooks_d, cook_uni, atol=1e-4)
    f = r.to_frame()
    assert {"intercept_del", "ablat_del", "dfbetas_ablat", "cooks_d", "hat", "influential", "drives_tau"} <= set(f.columns)
    assert f["drives_tau"].sum() == 1 and "drives tau" in r.summary()


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"])
@pytest.mark.parametrize("kh", [False, True])
def test_deleted_fits_and_diagnostics_equal_refits(bcg, method, kh):
    """Every deleted fit equals meta_regression without that school; the diagnostics equal
    metafor's formulas evaluated on those refits (one refit per school, the slow way)."""
    y, se, b = bcg
    M = b[["ablat", "year"]].to_numpy(float)
    full = meta_regression(y, se, M, method=method, knapp_hartung=kh)
    r = leave_one_out_metareg(full)
    X, k, p = np.column_stack([np.ones(13), M]), 13, 3
    beta, vb = full.coefficients["estimate"].to_numpy(), full.vcov
    w = 1 / (se**2 + full.tau2)
    hat = w * np.einsum("ip,pq,iq->i", X, np.linalg.inv((X * w[:, None]).T @ X), X)
    for i in range(k):
        keep = np.arange(k) != i
        d = meta_regression(y[keep], se[keep], M[keep], method=method, knapp_hartung=kh)
        bi = d.coefficients["estimate"].to_numpy()
        np.testing.assert_allclose(r.coef_del[i], bi, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(r.se_del[i], d.coefficients["se"], rtol=1e-6)
        assert r.tau2_del[i] == pytest.approx(d.tau2, rel=1e-6, abs=1e-10)
        assert r.qe_del[i] == pytest.approx(d.qe, rel=1e-8)
        s2 = (d.coefficients["se"].iloc[0] ** 2 / np.linalg.inv(
            (X[keep] / (se[keep, None] ** 2 + d.tau2)).T @ X[keep])[0, 0]) if kh else 1.0
        dd = beta - bi
        assert r.cooks_d[i] == pytest.approx(dd @ np.linalg.solve(vb, dd), rel=1e-5, abs=1e-12)
        assert r.cov_ratio[i] == pytest.approx(np.linalg.det(d.vcov) / np.linalg.det(vb), rel=1e-5)
        assert r.dffits[i] == pytest.approx(X[i] @ dd / np.sqrt(s2 * hat[i] * (d.tau2 + se[i] ** 2)), rel=1e-5, abs=1e-9)
        vall = np.linalg.inv((X / (se[:, None] ** 2 + d.tau2)).T @ X)
        np.testing.assert_allclose(r.dfbetas[i], dd / np.sqrt(s2 * np.diag(vall)), rtol=1e-5, atol=1e-9)
        rs = (y[i] - X[i] @ bi) / np.sqrt(se[i] ** 2 * s2 + X[i] @ d.vcov @ X[i] + d.tau2 * s2)
        assert r.rstudent[i] == pytest.approx(rs, rel=1e-5)
    infl = ((np.abs(r.dffits) > 3 * np.sqrt(p / (k - p))) | (stats.chi2.cdf(r.cooks_d, p) > 0.5) | (r.hat > 3 * p / k)
            | (np.abs(r.dfbetas) > 1).any(axis=1))
    np.testing.assert_array_equal(r.influential, infl)


@pytest.mark.parametrize("case, method", [(0, "REML"), (0, "ML"), (1, "ML")])
def test_deleted_fits_take_the_global_maximum(case, method):
    """Where a deleted meta-regression's likelihood has two local maxima, every deleted fit is
    meta_regression on the other schools (whose τ̂² is the global maximizer) and its τ̂²₍ᵢ₎ at
    least as likely as every point of a dense grid. Before 2026-12-05 the vector Fisher steps
    from the full-data τ̂² stopped at the local one (the first set: REML without the fourth and
    the eighth school τ̂² = 0 for 0.0317 and 0.0323; the second: ML without the first 0.0757
    where ℓ(0) is higher)."""
    y, se, x = (np.array(a) for a in LOO_TWO_MAXIMA[case])
    k = y.size
    X = np.column_stack([np.ones(k), x])
    n_max, best = deleted_global_maxima(y, se**2, X, method)
    assert (n_max == 2).any()
    for kh in (False, True):
        r = leave_one_out_metareg(meta_regression(y, se, x[:, None], method=method, knapp_hartung=kh))
        for i in range(k):
            keep = np.arange(k) != i
            d = meta_regression(y[keep], se[keep], x[keep, None], method=method, knapp_hartung=kh)
            assert r.tau2_del[i] == pytest.approx(d.tau2, rel=1e-8, abs=1e-10), i
            np.testing.assert_allclose(r.coef_del[i], d.coefficients["estimate"], rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(r.se_del[i], d.coefficients["se"], rtol=1e-8)
            assert loglik_written_out(y[keep], se[keep] ** 2, X[keep], r.tau2_del[i], method) >= best[i] - 1e-12


def test_input_errors(bcg):
    y, se, b = bcg
    with pytest.raises(DataError, match="MetaRegression"):
        leave_one_out_metareg(meta_analysis(y, se))
    V = np.diag(se**2)
    V[0, 1] = V[1, 0] = 0.3 * se[0] * se[1]
    with pytest.raises(DataError, match="independent"):
        leave_one_out_metareg(meta_regression(y, se, b[["ablat"]], vcov=V))
    with pytest.raises(DesignError, match="at least"):
        leave_one_out_metareg(meta_regression(y[:4], se[:4], b[["ablat", "year"]][:4]))
    with pytest.raises(DataError, match="labels"):
        leave_one_out_metareg(meta_regression(y, se, b[["ablat"]]), labels=["a"])


@pytest.mark.parametrize("method", ["REML", "ML", "PM", "DL", "HE", "SJ", "HS"])
def test_many_schools_equal_refits(method):
    """At 400 schools most deleted τ̂² lie near the median (the power-series route of
    loo_weighted_sums) and two outliers far from it (the direct route): both equal refitting
    meta_regression without the school."""
    rng = np.random.default_rng(11)
    k = 400
    se = rng.uniform(0.05, 0.3, k)
    M = rng.normal(size=(k, 2))
    y = 0.1 + M @ [0.05, -0.03] + rng.normal(0, 0.12, k) + se * rng.standard_normal(k)
    y[:2] += (3.0, -1.2)
    se[0] = 0.05  # precise and far off: its deleted τ̂² lies outside the series' radius (REML, ML, PM)
    full = meta_regression(y, se, M, method=method, knapp_hartung=True)
    r = leave_one_out_metareg(full)
    for i in (0, 1, 2, 57, 399):
        keep = np.arange(k) != i
        d = meta_regression(y[keep], se[keep], M[keep], method=method, knapp_hartung=True)
        assert r.tau2_del[i] == pytest.approx(d.tau2, rel=1e-7, abs=1e-12)
        np.testing.assert_allclose(r.coef_del[i], d.coefficients["estimate"], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(r.se_del[i], d.coefficients["se"], rtol=1e-7)
        assert r.qe_del[i] == pytest.approx(d.qe, rel=1e-9)
    assert r.drives_tau == 0


def fe_weights_fit_written_out(y, se, x, method, hk=False):
    """Intercept + x at FE weights in exact rational arithmetic: ``(b0, b1, se0, se1, tau2, Q_E)``
    for FE, HS and DL (tau² by Raudenbush's moments, ``tr P₀ = Σw − tr[(X'WX)⁻¹X'W²X]``; the SEs at
    the weights ``1/(v + tau²)``, times Knapp–Hartung's ``√(Q(tau²)/(k − 2))`` with ``hk``)."""
    from fractions import Fraction

    w = [1 / Fraction(float(s)) ** 2 for s in se]
    y, x = [Fraction(float(a)) for a in y], [Fraction(float(a)) for a in x]

    def wls(w):
        s0, s1, s2 = sum(w), sum(a * b for a, b in zip(w, x)), sum(a * b * b for a, b in zip(w, x))
        t0, t1 = sum(a * b for a, b in zip(w, y)), sum(a * b * c for a, b, c in zip(w, x, y))
        det = s0 * s2 - s1 * s1
        b0, b1 = (s2 * t0 - s1 * t1) / det, (s0 * t1 - s1 * t0) / det
        return b0, b1, s0, s1, s2, det, sum(a * (c - b0 - b1 * b) ** 2 for a, b, c in zip(w, x, y))

    *_, s0, s1, s2, det, qe = wls(w)
    if method == "HS":
        tau2 = max(Fraction(0), (qe - len(y)) / s0)
    elif method == "DL":
        u0, u1, u2 = sum(a * a for a in w), sum(a * a * b for a, b in zip(w, x)), sum(a * a * b * b for a, b in zip(w, x))
        tau2 = max(Fraction(0), (qe - (len(y) - 2)) / (s0 - (s2 * u0 - 2 * s1 * u1 + s0 * u2) / det))
    else:
        tau2 = Fraction(0)
    b0, b1, s0, _, s2, det, q = wls([1 / (1 / a + tau2) for a in w])
    f = q / (len(y) - 2) if hk else 1
    return np.array([float(b0), float(b1), float(f * s2 / det) ** 0.5, float(f * s0 / det) ** 0.5, float(tau2), float(qe)])


def reml_at_zero_written_out(y, se, x):
    """The REML score ``r'W²r − tr P`` and information ``tr PP / 2`` at tau² = 0 (intercept + x,
    weights 1/v) in exact rational arithmetic (``tr P = Σw − tr(AX'W²X)``,
    ``tr PP = Σw² − 2 tr(AX'W³X) + tr((AX'W²X)²)``, A = (X'WX)⁻¹)."""
    from fractions import Fraction

    w = [1 / Fraction(float(s)) ** 2 for s in se]
    y, x = [Fraction(float(a)) for a in y], [Fraction(float(a)) for a in x]

    def xdx(d):  # X' diag(d) X
        return [[sum(d), sum(a * b for a, b in zip(d, x))], [sum(a * b for a, b in zip(d, x)), sum(a * b * b for a, b in zip(d, x))]]

    def mul(P, Q):
        return [[sum(P[i][m] * Q[m][j] for m in range(2)) for j in range(2)] for i in range(2)]

    M = xdx(w)
    det = M[0][0] * M[1][1] - M[0][1] ** 2
    A = [[M[1][1] / det, -M[0][1] / det], [-M[0][1] / det, M[0][0] / det]]
    t0, t1 = sum(a * b for a, b in zip(w, y)), sum(a * b * c for a, b, c in zip(w, x, y))
    b0, b1 = A[0][0] * t0 + A[0][1] * t1, A[1][0] * t0 + A[1][1] * t1
    r = [c - b0 - b1 * b for b, c in zip(x, y)]
    B2, B3 = mul(A, xdx([a * a for a in w])), mul(A, xdx([a**3 for a in w]))
    B22 = mul(B2, B2)
    tr_p = sum(w) - B2[0][0] - B2[1][1]
    tr_pp = sum(a * a for a in w) - 2 * (B3[0][0] + B3[1][1]) + B22[0][0] + B22[1][1]
    return sum(a * a * b * b for a, b in zip(w, r)) - tr_p, tr_pp / 2


@pytest.mark.parametrize("method", ["FE", "HS", "DL"])
def test_one_very_precise_school(method):
    """One SE of 1e-7 among 0.05–0.2: its weight is nearly all of every FE total. The deleted fit
    without it (coefficients, SEs, tau², Q_E) and every deleted fit's Q_E equal the fit written out
    in exact arithmetic. Before 2026-12-05 the sums were the totals less each school's own term, of
    y: without the precise school DL gave tau² 0.00631 for 0.01303 and the other schools' Q_E were
    0 or 1.8·10⁶ to 1.7·10⁷ for 6.3–10.2."""
    y = np.array([0.31, 0.05, 0.42, -0.12, 0.18, 0.27, 0.60, 0.09])
    se = np.array([1e-7, 0.05, 0.12, 0.20, 0.08, 0.15, 0.10, 0.18])
    x = np.array([0.3, -1.2, 0.8, 0.1, -0.5, 1.5, 0.9, -0.7])
    r = leave_one_out_metareg(meta_regression(y, se, x, method=method))
    for i in range(y.size):
        keep = np.arange(y.size) != i
        exact = fe_weights_fit_written_out(y[keep], se[keep], x[keep], method)
        assert r.qe_del[i] == pytest.approx(exact[5], rel=1e-6), i
        assert r.tau2_del[i] == pytest.approx(exact[4], rel=1e-6), i  # DL: 0 for 0.0014–0.0069 before 2026-12-05
        if i == 0:
            got = np.r_[r.coef_del[0], r.se_del[0], r.tau2_del[0], r.qe_del[0]]
            np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("ratio", [1e-4, 1e-5, 1e-7])
def test_dl_with_a_dominant_school_refits_only_its_own_deleted_fit(ratio, monkeypatch):
    """One school's SE 1e-4 to 1e-7 of the others' (over 99.99% of the FE weight), DL: only the
    deleted fit without it takes tr P₀ from a fit of its own schools; the others' come from the
    full fit's QR (Sherman–Morrison). Before 2026-12-05 every deleted fit that kept it was refitted
    alone (its Σw − tr[(X'WX)⁻¹X'W²X] from the shared sums cancelled): k − 1 refits, O(k²), 4.9 s at
    5,000 schools. The deleted fits equal meta_regression refitted without the school (rtol 1e-10
    at SE ratios 1e-4 and 1e-5; at 1e-7 the deleted Q_E from the shared FE sums, unchanged here,
    keeps about 8 digits)."""
    from pleval.heterogeneity import metareg_influence

    alone = []
    real = metareg_influence._fe_trace_rows
    monkeypatch.setattr(metareg_influence, "_fe_trace_rows", lambda v, X, rows: alone.extend(rows) or real(v, X, rows))
    rng = np.random.default_rng(5)
    k = 300
    M = rng.normal(size=(k, 2))
    se = rng.uniform(0.05, 0.2, k)
    y = 0.1 + M @ [0.05, -0.03] + rng.normal(0, 0.1, k) + se * rng.standard_normal(k)
    se[3] = ratio * 0.1
    r = leave_one_out_metareg(meta_regression(y, se, M, method="DL", knapp_hartung=True))
    assert alone == [3]
    rtol = 1e-10 if ratio > 1e-6 else 1e-7
    for i in (0, 3, 4, 150, 299, *rng.choice(k, 5, replace=False)):
        keep = np.arange(k) != i
        d = meta_regression(y[keep], se[keep], M[keep], method="DL", knapp_hartung=True)
        got = np.r_[r.tau2_del[i], r.qe_del[i], r.coef_del[i], r.se_del[i]]
        np.testing.assert_allclose(got, np.r_[d.tau2, d.qe, d.coefficients.estimate, d.coefficients.se], rtol=rtol,
                                   err_msg=str(i))


def test_rank_deficient_moderators_are_named():
    """A moderator with one value, or one the others span, is named in the error (before, the
    message named none: "moderators are collinear (or one is constant)")."""
    rng = np.random.default_rng(3)
    k = 12
    y, se = rng.normal(0, 0.2, k), np.full(k, 0.1)
    pov = rng.uniform(0.2, 0.9, k)
    years = rng.integers(1, 5, k).astype(float)
    M = pd.DataFrame({"poverty": pov, "years": years, "flat": np.full(k, 0.5)})
    with pytest.raises(DesignError, match=r"moderator 'flat' holds one value \(0\.5\) for every school"):
        meta_regression(y, se, M)
    M = pd.DataFrame({"poverty": pov, "years": years, "both": 2 * pov - 3 * years + 1})
    with pytest.raises(DesignError, match=r"moderator 'both' is a linear combination of the intercept and the moderators "
                                          r"before it \('poverty', 'years'\)"):
        meta_regression(y, se, M)
    assert meta_regression(y, se, M[["poverty", "years"]]).coefficients.shape[0] == 3


def test_a_subject_too_small_for_leave_one_out_leaves_the_others_standing(tmp_path):
    """`pleval schools --influence` with a subject of two schools stopped the run for every
    subject ('leave-one-out diagnostics need at least 3 schools'). That subject's diagnostics
    are now left out with a line saying why; the others' equal those of a table without it."""
    import warnings

    import pandas as pd
    from typer.testing import CliRunner

    from pleval.cli import app
    from pleval.errors import PlevalWarning
    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    d = pd.read_csv("sample_data/school_effects.csv")
    more = pd.concat([d, d[d.subject == "math"].head(2).assign(subject="science")], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ref = school_effects_from_estimates(d).influence()
        res = school_effects_from_estimates(more)
    with pytest.warns(PlevalWarning, match="leave-one-out diagnostics left out for science: .*at least 3 schools; got 2"):
        got = res.influence()
    pd.testing.assert_frame_equal(got, ref)
    more.to_csv(tmp_path / "t.csv", index=False)
    r = CliRunner().invoke(app, ["schools", str(tmp_path / "t.csv"), "--influence", "--moderators", ""])
    assert r.exit_code == 0, r.output
    assert "[science] no leave-one-out diagnostics: leave-one-out diagnostics need at least 3 schools; got 2" in r.output
    assert "[math] Leave-one-out and influence" in r.output


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"])
def test_two_very_precise_schools_qe(method):
    """Two SEs of 1e-7 and 1e-6 with different estimates: every deleted fit's Q_E equals Q_E written
    out in exact arithmetic (meta_regression's own refit loses digits here: 10.217111 for
    10.217077 without the first school, 557.05 for 10.2124 without the second). Before 2026-12-05
    only the heaviest school's deleted fit was summed directly, about the full-data FE fit: 10.217077
    was 10.217111 (3e-6)."""
    y = np.array([0.31, 0.05, 0.42, -0.12, 0.18, 0.27, 0.60, 0.09])
    se = np.array([1e-7, 1e-6, 0.12, 0.20, 0.08, 0.15, 0.10, 0.18])
    x = np.array([0.3, -1.2, 0.8, 0.1, -0.5, 1.5, 0.9, -0.7])
    for kh in (False, True):
        mr = meta_regression(y, se, x, method=method, knapp_hartung=kh)
        r = leave_one_out_metareg(mr)
        for i in range(y.size):
            keep = np.arange(y.size) != i
            assert r.qe_del[i] == pytest.approx(fe_weights_fit_written_out(y[keep], se[keep], x[keep], "FE")[5], rel=1e-12), (i, kh)


TWO_PRECISE = (np.array([0.31, 0.05, 0.42, -0.12, 0.18, 0.27, 0.60, 0.09]),
               np.array([1e-7, 1e-6, 0.12, 0.20, 0.08, 0.15, 0.10, 0.18]),
               np.array([0.3, -1.2, 0.8, 0.1, -0.5, 1.5, 0.9, -0.7]))


@pytest.mark.parametrize("drop", [None, 0, 1])
@pytest.mark.parametrize("method", ["FE", "DL"])
def test_meta_regression_with_very_precise_schools_equals_exact_arithmetic(method, drop):
    """meta_regression on schools of which one or two have SEs of 1e-7 and 1e-6 (the others
    0.05–0.2): Q_E, DL's tau² and the coefficients' SEs (with and without Knapp–Hartung) equal the
    fit written out in exact arithmetic. Before 2026-12-05 X'WX was inverted (its condition number
    the square of the weighted design's) and tr P₀ = Σw − tr[(X'WX)⁻¹X'W²X] cancelled: Q_E was
    10.217111 for 10.217077 (without the first school) and 557.05 for 10.2124 (without the second),
    DL's tau² 0 for 0.0069 (SE 1e-7) and the Knapp–Hartung SE of the slope 0.669 for 0.098."""
    y, se, x = TWO_PRECISE
    keep = np.arange(y.size) != (-1 if drop is None else drop)
    for kh in (False, True):
        mr = meta_regression(y[keep], se[keep], x[keep], method=method, knapp_hartung=kh)
        exact = fe_weights_fit_written_out(y[keep], se[keep], x[keep], method, hk=kh)
        got = np.r_[mr.coefficients["estimate"], mr.coefficients["se"], mr.tau2, mr.qe]
        np.testing.assert_allclose(got, exact, rtol=1e-9, atol=1e-15)


def test_meta_regression_dl_tau2_with_one_very_precise_school():
    """DL with a moderator and one SE of 1e-7 or 1e-4 among 0.05–0.2, each school left out in turn:
    tau² equals Raudenbush's estimator in exact arithmetic. Before 2026-12-05 tr P₀ cancelled: at SE
    1e-7 tau² was 0 for 0.0014–0.0069 (7.5e-8 for 0.0055), still up to 2e-7 relative off at SE 1e-4."""
    y, _, x = TWO_PRECISE
    for s in (1e-7, 1e-4):
        se = np.array([s, 0.05, 0.12, 0.20, 0.08, 0.15, 0.10, 0.18])
        for i in range(1, y.size):
            keep = np.arange(y.size) != i
            mr = meta_regression(y[keep], se[keep], x[keep], method="DL")
            assert mr.tau2 == pytest.approx(fe_weights_fit_written_out(y[keep], se[keep], x[keep], "DL")[4], rel=1e-10), (s, i)


def test_meta_regression_reml_with_two_very_precise_schools():
    """REML on the two-precise-school data: no warning, and where the exact REML score at tau² = 0 is
    negative the fit is tau² = 0 with SE √(1/information) in exact arithmetic. Before 2026-12-05
    tr PP = Σw² − 2 tr(AX'W³X) + tr((AX'W²X)²) was 10²⁸ less 10²⁸: divide by zero and invalid sqrt
    warnings, tau² SE NaN."""
    import warnings

    y, se, x = TWO_PRECISE
    score, info = reml_at_zero_written_out(y, se, x)
    assert score < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mr = meta_regression(y, se, x, method="REML")
    assert mr.tau2 == 0.0
    assert mr.tau2_se == pytest.approx(float(1 / info) ** 0.5, rel=1e-9)
