"""Meta-analysis, shrinkage, multiplicity counts and meta-regression (pleval.heterogeneity).

Published numbers: tests/reference/README.md (BCG trials, Colditz et al. 1994 / metafor
``dat.bcg``; Kacker 2004 interlaboratory data, metafor values shipped in statsmodels' tests).
Independent computations: statsmodels WLS / MixedLM / combine_effects and brute-force
maximization of the restricted likelihood written out in the test.
"""

from __future__ import annotations

import math

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats
from statsmodels.stats.meta_analysis import combine_effects

from pleval.errors import DataError, DesignError
from pleval.heterogeneity import (
    empirical_bayes,
    meta_analysis,
    meta_regression,
    significance_counts,
)

from .conftest import REFERENCE, sim_reps


@pytest.fixture(scope="module")
def bcg():
    b = pd.read_csv(REFERENCE / "bcg.csv")
    y = np.log((b.tpos / (b.tpos + b.tneg)) / (b.cpos / (b.cpos + b.cneg))).to_numpy()
    v = (1 / b.tpos - 1 / (b.tpos + b.tneg) + 1 / b.cpos - 1 / (b.cpos + b.cneg)).to_numpy()
    return y, np.sqrt(v), b


@pytest.fixture(scope="module")
def kacker():
    k = pd.read_csv(REFERENCE / "kacker_labs.csv")
    return k.eff.to_numpy(), np.sqrt(k.var_eff.to_numpy())


def close(a, b, digits=4):
    """Equal to the published number at its printed precision (half a unit in the last place)."""
    assert abs(a - b) <= 0.5 * 10**-digits + 1e-12, (a, b)


# ---------------------------------------------------------------- published numbers (BCG)


def test_bcg_fixed_effect(bcg):
    y, se, _ = bcg
    r = meta_analysis(y, se, "FE")
    close(r.estimate, -0.4303)
    close(r.se, 0.0405)
    close(r.ci_low, -0.5097)
    close(r.ci_high, -0.3509)
    close(r.q, 152.2330)
    assert r.q_df == 12 and r.tau2 == 0.0


def test_bcg_dersimonian_laird(bcg):
    y, se, _ = bcg
    r = meta_analysis(y, se, "DL")
    close(r.estimate, -0.7141)
    close(r.se, 0.1787)
    close(r.ci_low, -1.0644)
    close(r.ci_high, -0.3638)
    close(r.tau2, 0.3088)
    close(r.i2, 92.12, 2)
    close(r.q, 152.2330)


def test_bcg_reml(bcg):
    y, se, _ = bcg
    r = meta_analysis(y, se, "REML")
    close(r.estimate, -0.7145)
    close(r.se, 0.1798)
    close(r.ci_low, -1.0669)
    close(r.ci_high, -0.3622)
    close(r.tau2, 0.3132)
    close(r.tau2_se, 0.1664)
    close(r.i2, 92.22, 2)
    close(r.q, 152.2330)
    assert r.i2_definition.startswith("tau²")


def test_bcg_q_profile_interval(bcg):
    """Q-profile CI: metafor's ``confint()`` for the REML fit of dat.bcg prints
    tau² 0.1197 to 1.1115; independently, Q(τ²) computed as the weighted SSR of a
    statsmodels WLS fit equals the χ²(12) quantiles at the two ends (Viechtbauer 2007)."""
    y, se, _ = bcg
    r = meta_analysis(y, se, "REML")
    close(r.tau2_ci[0], 0.1197)
    close(r.tau2_ci[1], 1.1115)
    for t2, q in zip(r.tau2_ci, (0.975, 0.025)):
        ssr = sm.WLS(y, np.ones_like(y), weights=1 / (se**2 + t2)).fit().ssr
        assert ssr == pytest.approx(stats.chi2.ppf(q, 12), rel=1e-8)
    assert r.tau2_ci[0] < r.tau2 < r.tau2_ci[1]
    # the I² interval maps the τ² interval
    assert r.i2_ci[0] < r.i2 < r.i2_ci[1]


# ---------------------------------------------------------------- published numbers (Kacker)


def test_kacker_fe_dl_pm(kacker):
    y, se = kacker
    fe = meta_analysis(y, se, "FE")
    assert fe.estimate == pytest.approx(62.5833970939982, rel=1e-10)
    assert fe.se == pytest.approx(0.107845705498231, rel=1e-9)
    assert fe.q == pytest.approx(24.801897741835, rel=1e-9)
    dl = meta_analysis(y, se, "DL")
    assert dl.estimate == pytest.approx(62.3901386044504, rel=1e-10)
    assert dl.se == pytest.approx(0.245749668040304, rel=1e-8)
    assert dl.tau2 == pytest.approx(0.288049246973751, rel=1e-8)
    assert dl.i2 == pytest.approx(67.744403741711, rel=1e-8)
    assert dl.h2 == pytest.approx(3.10023721772938, rel=1e-8)
    pm = meta_analysis(y, se, "PM")
    assert pm.estimate == pytest.approx(62.4076199113286, rel=1e-9)
    assert pm.se == pytest.approx(0.338030602684471, rel=1e-7)
    assert pm.tau2 == pytest.approx(0.705395309224248, rel=1e-7)
    # metafor's PM I² and H² (statsmodels' results_meta.py, exk1_metafor): τ²-based, not Q-based
    assert pm.i2 == pytest.approx(83.7218626490482, rel=1e-7)
    assert pm.h2 == pytest.approx(6.14320900751909, rel=1e-7)


def test_kacker_hartung_knapp(kacker):
    y, se = kacker
    r = meta_analysis(y, se, "DL", hartung_knapp=True)
    assert r.estimate == pytest.approx(62.3901386044504, rel=1e-10)
    assert r.se == pytest.approx(0.29477605699879, rel=1e-8)
    assert r.ci_low == pytest.approx(61.710383798052, rel=1e-10)
    assert r.ci_high == pytest.approx(63.0698934108488, rel=1e-10)
    assert r.df == 8


# ---------------------------------------------------------------- independent computations


def test_reml_maximizes_restricted_likelihood(kacker, bcg):
    """Brute force: maximize ℓ_R(τ²) = −½[Σlog(v+τ²) + log Σw + Σw(y − μ̂)²] numerically."""
    for y, se in (kacker, bcg[:2]):
        v = se**2

        def neg(t2):
            w = 1 / (v + t2)
            mu = w @ y / w.sum()
            return 0.5 * (np.log(v + t2).sum() + np.log(w.sum()) + w @ (y - mu) ** 2)

        best = optimize.minimize_scalar(neg, bounds=(0, 20), method="bounded", options={"xatol": 1e-10})
        assert meta_analysis(y, se, "REML").tau2 == pytest.approx(best.x, rel=1e-5)


# Likelihoods with two local maxima: Fisher scoring from DL (= 0) stayed at the boundary although
# the interior maximum is higher (the first two), or stopped at an interior maximum below ℓ(0).
TWO_MAXIMA = [
    ("REML", 0.0, [0.3878, 0.2711, 0.0769, 0.1311, 0.7671, -0.3859, 0.0407, 0.0338, -0.5267, 0.1775, -1.7074,
                          0.6977, 0.1223, 0.2104],
     [0.10683, 0.11969, 0.36917, 0.02778, 2.26761, 0.70956, 0.55553, 0.06099, 1.87519, 0.09484, 2.09192, 0.71988,
      0.04289, 0.08087]),
    ("ML", 0.0, [0.0493, 0.1024, 0.209, 0.5782, -0.5568, 0.0764, 0.1903, -0.1274, 0.0833, -0.0452, -0.462, 0.1979,
                        0.1365],
     [0.01225, 0.23271, 0.05484, 0.67228, 1.10325, 0.125, 0.51044, 0.54637, 0.17739, 0.10889, 0.686, 0.31389, 0.10846]),
    ("REML", 0.0117465, [0.1125, 0.1038, -0.2727, 0.0324, 0.2485, -1.5715, 0.589, 0.3276],
     [0.01207, 0.05127, 0.49584, 0.07515, 0.22291, 0.68561, 0.1631, 0.21614]),
    ("ML", 0.0147416, [0.2693, 1.1579, 0.203, 0.1604, -0.087], [0.21382, 0.58326, 0.44347, 0.90933, 0.04662]),
]


@pytest.mark.parametrize("method, local, y, se", TWO_MAXIMA)
def test_reml_and_ml_find_the_global_maximum(method, local, y, se):
    """τ̂² is the global maximizer on [0, ∞): brute force over a dense grid of τ² (ℓ_R or ℓ written
    out here), refined by scipy's bounded search. Before 2026-12-04 pleval reported ``local``."""
    y, se = np.array(y), np.array(se)
    v = se**2

    def ll(t2):
        w = 1 / (v + t2)
        mu = w @ y / w.sum()
        return -0.5 * (np.log(v + t2).sum() + (np.log(w.sum()) if method == "REML" else 0.0) + w @ (y - mu) ** 2)

    grid = np.concatenate([[0.0], np.geomspace(1e-8, 10, 3000)])
    vals = np.array([ll(t) for t in grid])
    assert ((vals[1:-1] > vals[:-2]) & (vals[1:-1] > vals[2:])).sum() + (vals[0] > vals[1]) == 2  # two maxima
    i = int(vals.argmax())
    best = 0.0 if i == 0 else optimize.minimize_scalar(lambda t: -ll(t), bounds=(grid[i - 1], grid[i + 1]),
                                                        method="bounded", options={"xatol": 1e-14}).x
    got = meta_analysis(y, se, method)
    assert abs(got.tau2 - local) > 1e-3
    assert got.tau2 == pytest.approx(best, rel=1e-7, abs=1e-12)
    assert ll(got.tau2) >= ll(best) - 1e-12
    assert meta_regression(y, se, np.empty((y.size, 0)), method=method).tau2 == pytest.approx(got.tau2, rel=1e-9, abs=1e-12)


def test_pooled_matches_statsmodels_given_tau2(bcg):
    """For DL/PM pleval's pooled mean, SE and HK SE equal statsmodels' combine_effects;
    for REML they equal a statsmodels WLS with weights 1/(v + τ̂²) (HK = estimated scale)."""
    y, se, _ = bcg
    v = se**2
    for method, sm_method in (("DL", "dl"), ("PM", "pm")):
        r = meta_analysis(y, se, method)
        hk = meta_analysis(y, se, method, hartung_knapp=True)
        c = combine_effects(y, v, method_re=sm_method, atol=1e-12, maxiter=500)
        assert r.estimate == pytest.approx(c.mean_effect_re, rel=1e-8)
        assert r.se == pytest.approx(c.sd_eff_w_re, rel=1e-6)
        assert hk.se == pytest.approx(c.sd_eff_w_re_hksj, rel=1e-6)
    r = meta_analysis(y, se, "REML")
    hk = meta_analysis(y, se, "REML", hartung_knapp=True)
    f = sm.WLS(y, np.ones_like(y), weights=1 / (v + r.tau2))
    assert r.se == pytest.approx(f.fit(cov_type="fixed scale").bse[0], rel=1e-10)
    assert hk.se == pytest.approx(f.fit().bse[0], rel=1e-10)
    assert hk.ci_low == pytest.approx(f.fit().conf_int()[0, 0], rel=1e-10)


def test_dl_truncated_at_zero():
    """statsmodels' combine_effects returns a negative DL τ² when Q < k − 1; pleval truncates."""
    y = np.array([0.10, 0.11, 0.09, 0.10, 0.12])
    se = np.full(5, 0.2)
    assert combine_effects(y, se**2, method_re="dl").tau2 < 0
    for method in ("DL", "REML", "PM"):
        r = meta_analysis(y, se, method)
        assert r.tau2 == 0.0 and r.i2 == 0.0
        assert r.estimate == pytest.approx(y.mean())
    assert meta_analysis(y, se, "REML").tau2_ci == (0.0, 0.0)


@pytest.mark.parametrize("shift, se", [(0.0, [0.1, 0.1, 1e-9, 0.1, 0.1]), (1e6, [0.1] * 5)])
def test_q_and_dl_tau2_against_exact_rational_arithmetic(shift, se):
    """Q = Σw(y − ȳ_w)², the DL τ² and the DL I² against exact fractions. Before 2026-12-04 Q came
    from statsmodels' Σwy² − (Σwy)²/Σw: 240 instead of 249 with one SE of 1e-9 (DL τ² 0.2305 for
    0.30625; Σw − Σw²/Σw cancelled too), 80.75 for 80.8 with the estimates offset by 10⁶."""
    from fractions import Fraction as F

    y = np.array([0.1, 0.5, -0.3, 0.2, 0.9]) + shift
    se = np.array(se)
    w = [1 / F(s) ** 2 for s in se]
    sw = sum(w)
    mu = sum(a * F(b) for a, b in zip(w, y)) / sw
    q = sum(a * (F(b) - mu) ** 2 for a, b in zip(w, y))
    c = sw - sum(a * a for a in w) / sw
    tau2 = max(F(0), (q - 4) / c)
    r = meta_analysis(y, se, method="DL")
    assert r.q == pytest.approx(float(q), rel=1e-9)
    assert r.tau2 == pytest.approx(float(tau2), rel=1e-9)
    assert r.i2 == pytest.approx(float(100 * tau2 / (tau2 + 4 / c)), rel=1e-9)
    mr = meta_regression(y, se, np.empty((5, 0)), method="DL")
    assert (mr.qe, mr.tau2) == pytest.approx((float(q), float(tau2)), rel=1e-9)


def test_pm_solves_its_estimating_equation():
    """PM τ² is the root of Q(τ²) = k − 1 (Q as a statsmodels WLS weighted SSR), in any row
    order. (statsmodels' own PM iteration returns 0 for one order of these data when run to a
    tight tolerance: a Newton step overshoots and it resets τ² to 0.)"""
    y, se = np.array([0.0, 0.0, 0.75]), np.array([1.0, 0.5, 0.125])
    for order in ([0, 1, 2], [2, 0, 1]):
        r = meta_analysis(y[order], se[order], "PM")
        ssr = sm.WLS(y[order], np.ones(3), weights=1 / (se[order] ** 2 + r.tau2)).fit().ssr
        assert r.tau2 > 0 and ssr == pytest.approx(2.0, rel=1e-9)


def test_prediction_interval(bcg):
    y, se, _ = bcg
    r = meta_analysis(y, se, "REML")
    half = stats.t.ppf(0.975, 11) * math.sqrt(r.tau2 + r.se**2)
    assert (r.pi_low, r.pi_high) == pytest.approx((r.estimate - half, r.estimate + half))
    z = meta_analysis(y, se, "REML", prediction="normal")
    half = 1.959963984540054 * math.sqrt(r.tau2 + r.se**2)
    assert z.pi_high == pytest.approx(r.estimate + half)
    assert math.isnan(meta_analysis(y, se, "FE").pi_low)


def test_fe_i2_is_q_based(bcg):
    y, se, _ = bcg
    r = meta_analysis(y, se, "FE")
    assert r.i2 == pytest.approx(100 * (r.q - 12) / r.q)
    assert r.h2 == pytest.approx(r.q / 12)


def test_level_and_outputs(kacker):
    y, se = kacker
    r90 = meta_analysis(y, se, level=0.90, labels=list("abcdefghi"))
    r95 = meta_analysis(y, se)
    assert (r90.ci_high - r90.ci_low) < (r95.ci_high - r95.ci_low)
    f = r95.to_frame()
    assert f.loc[0, "tau2"] == r95.tau2 and f.loc[0, "k"] == 9
    s = r90.studies_frame()
    assert list(s.label) == list("abcdefghi") and s.weight_pct.sum() == pytest.approx(100)
    assert "REML" in r95.summary() and "prediction interval" in repr(r95)
    assert "<table" in r95._repr_html_()
    with pytest.raises(Exception):
        r95.tau2 = 1.0  # immutable
    with pytest.raises(ValueError):
        r95.estimates[0] = 0.0


@pytest.mark.parametrize(
    "est, se, kw, err",
    [
        ([1, 2], [0.1], {}, DataError),
        ([1, np.nan, 2], [0.1, 0.1, 0.1], {}, DataError),
        ([1, 2, 3], [0.1, 0.0, 0.1], {}, DataError),
        ([1], [0.1], {}, DesignError),
        ([1, 2], [0.1, 0.1], {"method": "XX"}, DataError),
        ([1, 2], [0.1, 0.1], {"level": 95}, DataError),
    ],
)
def test_bad_input(est, se, kw, err):
    with pytest.raises(err):
        meta_analysis(est, se, **kw)


@pytest.mark.parametrize("labels", [["A", "B", "C"], ["A", "B", "C", "D", "E"]])
def test_labels_of_another_length_are_an_error(labels):
    """Before 2026-12-04 they were accepted and the tables failed later ("All arrays must be of
    the same length", IndexError)."""
    with pytest.raises(DataError, match="labels has .* entries for 4 schools"):
        meta_analysis([0.1, 0.3, 0.2, 0.5], [0.1, 0.1, 0.2, 0.1], labels=labels)
    assert meta_analysis([0.1, 0.3, 0.2, 0.5], [0.1, 0.1, 0.2, 0.1], labels=iter("ABCD")).labels == tuple("ABCD")


# ---------------------------------------------------------------- simulation: Q test size


@pytest.mark.slow
def test_q_test_size_when_tau_is_zero():
    """With no true heterogeneity, Cochran's Q rejects at about the nominal 5%."""
    reps = sim_reps(2000, minimum=400)
    rng = np.random.default_rng(20240501)
    k = 30
    se = rng.uniform(0.05, 0.3, k)
    rejections = sum(
        meta_analysis(0.1 + se * rng.standard_normal(k), se, "DL").q_pvalue < 0.05 for _ in range(reps)
    )
    rate = rejections / reps
    tol = 3.5 * math.sqrt(0.05 * 0.95 / reps)
    assert abs(rate - 0.05) < tol, rate


@pytest.mark.slow
def test_reml_ci_and_q_profile_coverage():
    """With τ² = 0.04 the pooled-effect CI (HK) and the Q-profile CI for τ² cover ~95%."""
    reps = sim_reps(800, minimum=200)
    rng = np.random.default_rng(7)
    k, mu, tau2 = 25, 0.1, 0.04
    se = rng.uniform(0.05, 0.3, k)
    cov_mu = cov_tau = 0
    for _ in range(reps):
        y = mu + rng.normal(0, math.sqrt(tau2), k) + se * rng.standard_normal(k)
        r = meta_analysis(y, se, "REML", hartung_knapp=True)
        cov_mu += r.ci_low <= mu <= r.ci_high
        cov_tau += r.tau2_ci[0] <= tau2 <= r.tau2_ci[1]
    lo, hi = 0.95 - 3.5 * math.sqrt(0.95 * 0.05 / reps), 0.95 + 3.5 * math.sqrt(0.95 * 0.05 / reps)
    assert lo < cov_mu / reps < min(hi, 1.0), cov_mu / reps
    assert lo < cov_tau / reps < min(hi, 1.0), cov_tau / reps


# ---------------------------------------------------------------- shrinkage


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:Random effects covariance is singular")
def test_shrinkage_matches_mixedlm_blups():
    """Random-intercept model y_ij = μ + u_i + e_ij fitted by statsmodels MixedLM (REML).
    With v_i = σ̂²/n_i (MixedLM's residual variance), the meta-analytic REML τ² equals
    MixedLM's (the REML likelihood factorizes), and pleval's EB estimates μ̂ + B_i(ȳ_i − μ̂)
    equal MixedLM's fixed intercept + predicted random effects; the posterior variance minus
    the (1 − B)²Var(μ̂) term equals MixedLM's conditional variance of u_i."""
    rng = np.random.default_rng(11)
    n_i = rng.integers(5, 60, 40)
    g = np.repeat(np.arange(40), n_i)
    y = 0.3 + rng.normal(0, 0.25, 40)[g] + rng.normal(0, 1.0, g.size)
    # Converge MixedLM tightly (its lbfgs default stops ~1e-5 short in some versions) so the
    # comparison can be tight too.
    fit = sm.MixedLM(y, np.ones((g.size, 1)), groups=g).fit(reml=True, method="bfgs", gtol=1e-10)
    assert fit.converged
    sigma2 = fit.scale
    tau2_mlm = float(np.asarray(fit.cov_re)[0, 0])
    means = np.bincount(g, weights=y) / n_i
    se = np.sqrt(sigma2 / n_i)
    r = empirical_bayes(means, se, method="REML")
    assert r.tau2 == pytest.approx(tau2_mlm, rel=1e-7)
    assert r.mu == pytest.approx(fit.fe_params[0], rel=1e-8)
    blup = fit.fe_params[0] + np.array([np.asarray(fit.random_effects[i])[0] for i in range(40)])
    np.testing.assert_allclose(r.shrunk, blup, rtol=0, atol=1e-8)
    cond = np.array([np.asarray(fit.random_effects_cov[i])[0, 0] for i in range(40)])
    np.testing.assert_allclose(r.shrunk_sd**2 - (1 - r.reliability) ** 2 * r.mu_var, cond, rtol=1e-6)


def test_shrinkage_toward_mean_and_properties(kacker):
    y, se = kacker
    m = meta_analysis(y, se, "REML")
    r = empirical_bayes(y, se, m)
    # each estimate moves toward μ̂ by the factor 1 − B_i; noisier labs move more
    np.testing.assert_allclose(r.shrunk - m.estimate, r.reliability * (y - m.estimate))
    assert np.all(np.abs(r.shrunk - m.estimate) <= np.abs(y - m.estimate) + 1e-12)
    assert np.all(np.diff(r.reliability[np.argsort(se)]) <= 1e-12)
    f = r.to_frame()
    assert {"shrunk", "shrunk_sd", "prob_negative"} <= set(f.columns)
    ranks = r.rank_intervals(n_draws=500, seed=1)
    assert np.all((ranks.rank_low <= ranks.rank_median) & (ranks.rank_median <= ranks.rank_high))
    assert (ranks.rank_high - ranks.rank_low).max() >= 3  # ranks are uncertain
    with pytest.raises(ValueError):
        empirical_bayes(y[:-1], se[:-1], m)
    # τ² = 0: everything collapses to the pooled mean
    z = empirical_bayes([0.1, 0.11, 0.09], [0.2, 0.2, 0.2])
    np.testing.assert_allclose(z.shrunk, np.full(3, z.mu))


def test_shrinkage_lowers_mse_with_known_school_effects():
    """Known true school effects θ_i ~ N(0.1, 0.1²), noisy estimates: the EB estimates have
    lower total squared error than the raw ones in nearly every replication."""
    rng = np.random.default_rng(3)
    wins, ratio = 0, []
    reps = 100
    for _ in range(reps):
        k = 60
        theta = rng.normal(0.1, 0.1, k)
        se = rng.uniform(0.05, 0.25, k)
        y = theta + se * rng.standard_normal(k)
        sh = empirical_bayes(y, se).shrunk
        mse_raw, mse_eb = np.mean((y - theta) ** 2), np.mean((sh - theta) ** 2)
        wins += mse_eb < mse_raw
        ratio.append(mse_eb / mse_raw)
    assert wins >= 0.9 * reps
    assert np.mean(ratio) < 0.8


# ---------------------------------------------------------------- multiplicity


def test_bh_and_holm_hand_computed():
    """p = (0.01, 0.045, 0.032, 0.005, 0.20), m = 5. Sorted: 0.005, 0.01, 0.032, 0.045, 0.20.
    BH: m·p_(i)/i = 0.025, 0.025, 0.05333, 0.05625, 0.20 (already monotone) ->
    in input order (0.025, 0.05625, 0.05333, 0.025, 0.20).
    Holm: (m − i + 1)·p_(i) = 0.025, 0.04, 0.096, 0.09, 0.20 -> running max 0.025, 0.04, 0.096,
    0.096, 0.20 -> in input order (0.04, 0.096, 0.096, 0.025, 0.20)."""
    p = np.array([0.01, 0.045, 0.032, 0.005, 0.20])
    est = np.array([1.0, -1.0, 2.0, -3.0, 1.0])
    bh = significance_counts(est, p)
    np.testing.assert_allclose(bh.p_adjusted, [0.025, 0.05625, 0.16 / 3, 0.025, 0.20])
    assert (bh.positive_raw, bh.negative_raw) == (2, 2)
    assert (bh.positive_adjusted, bh.negative_adjusted) == (1, 1)
    assert bh.expected_by_chance == pytest.approx(0.25)
    assert bh.p_excess == pytest.approx(stats.binom.sf(3, 5, 0.05))
    holm = significance_counts(est, p, method="holm")
    np.testing.assert_allclose(holm.p_adjusted, [0.04, 0.096, 0.096, 0.025, 0.20])
    assert (holm.positive_adjusted, holm.negative_adjusted) == (1, 1)
    assert "Benjamini" in bh.summary() and "Holm" in holm.summary()
    # NaN p-values are left out of m
    nan = significance_counts(np.append(est, 1.0), np.append(p, np.nan))
    assert nan.k == 5 and np.isnan(nan.p_adjusted[-1])
    np.testing.assert_allclose(nan.p_adjusted[:5], bh.p_adjusted)
    with pytest.raises(DataError):
        significance_counts(est, p, alpha=5)


@pytest.mark.parametrize("method, sm_method", [("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")])
def test_counts_adjust_only_over_the_schools_counted(method, sm_method):
    """A school with a NaN estimate but a finite p-value is left out of k, of the counts and of
    the adjustment (before 2026-12-04 it stayed in the adjustment: Holm over m = 3, no school
    significant)."""
    from statsmodels.stats.multitest import multipletests

    est = np.array([np.nan, 0.10, 0.20, -0.3, 0.05])
    p = np.array([0.90, 0.020, 0.024, 0.011, np.nan])
    c = significance_counts(est, p, method=method)
    ref = multipletests(p[1:4], method=sm_method)[1]
    np.testing.assert_allclose(c.p_adjusted[1:4], ref, rtol=1e-12)
    assert np.isnan(c.p_adjusted[[0, 4]]).all()
    assert c.k == 3
    assert (c.positive_adjusted, c.negative_adjusted) == (int((ref[:2] < 0.05).sum()), int(ref[2] < 0.05))


def test_counts_under_no_effect_match_chance():
    """With no effect anywhere, raw significant counts average α·k; BH counts are ~0."""
    rng = np.random.default_rng(5)
    k, reps = 200, 100
    raw, adj = [], []
    for _ in range(reps):
        z = rng.standard_normal(k)
        c = significance_counts(z, 2 * stats.norm.sf(np.abs(z)))
        raw.append(c.positive_raw + c.negative_raw)
        adj.append(c.positive_adjusted + c.negative_adjusted)
    assert abs(np.mean(raw) - 0.05 * k) < 3.5 * math.sqrt(k * 0.05 * 0.95 / reps)
    assert np.mean(np.array(adj) > 0) < 0.05 + 3.5 * math.sqrt(0.05 * 0.95 / reps)


# ---------------------------------------------------------------- meta-regression


def test_metaregression_bcg_ablat(bcg):
    """metafor: rma(yi, vi, mods = ~ ablat, data = dat.bcg) (Viechtbauer 2010, J Stat Softw
    36(3), and the metafor documentation): τ² = 0.0764 (SE 0.0591), QE(11) = 30.7331,
    R² = 75.62%, residual I² = 68.39%; intercept 0.2515 (SE 0.2491), ablat −0.0291 (SE 0.0072).
    τ² is compared to 1e-4: metafor stops Fisher scoring when the change is below 1e-5, and the
    fully converged value (checked by brute force below) is 0.07635."""
    y, se, b = bcg
    r = meta_regression(y, se, b[["ablat"]])
    assert r.tau2 == pytest.approx(0.0764, abs=1e-4)
    assert r.tau2_se == pytest.approx(0.0591, abs=1e-4)
    close(r.qe, 30.7331)
    assert r.qe_df == 11
    assert 100 * r.r2 == pytest.approx(75.62, abs=0.02)  # follows τ² (see above)
    close(r.i2, 68.39, 2)
    c = r.coefficients
    close(c.loc["intercept", "estimate"], 0.2515)
    close(c.loc["intercept", "se"], 0.2491)
    close(c.loc["ablat", "estimate"], -0.0291)
    close(c.loc["ablat", "se"], 0.0072)
    assert r.qm == pytest.approx(c.loc["ablat", "statistic"] ** 2)


def test_metaregression_against_statsmodels_and_brute_force(bcg):
    y, se, b = bcg
    v = se**2
    X = np.column_stack([np.ones_like(y), b.ablat, b.year])
    for kh in (False, True):
        r = meta_regression(y, se, b[["ablat", "year"]], knapp_hartung=kh)
        f = sm.WLS(y, X, weights=1 / (v + r.tau2)).fit(**({} if kh else {"cov_type": "fixed scale"}))
        np.testing.assert_allclose(r.coefficients.estimate, f.params, rtol=1e-9)
        np.testing.assert_allclose(r.coefficients.se, f.bse, rtol=1e-9)
        np.testing.assert_allclose(r.coefficients.pvalue, f.pvalues, rtol=1e-7)
        if kh:
            ft = f.f_test(np.eye(3)[1:])
            assert r.qm == pytest.approx(float(ft.fvalue), rel=1e-9)
            assert r.qm_pvalue == pytest.approx(float(ft.pvalue), rel=1e-7)

    def neg(t2):
        w = 1 / (v + t2)
        XtWX = X.T @ (X * w[:, None])
        beta = np.linalg.solve(XtWX, X.T @ (w * y))
        return 0.5 * (np.log(v + t2).sum() + np.linalg.slogdet(XtWX)[1] + w @ (y - X @ beta) ** 2)

    best = optimize.minimize_scalar(neg, bounds=(0, 5), method="bounded", options={"xatol": 1e-10})
    r = meta_regression(y, se, b[["ablat", "year"]])
    assert r.tau2 == pytest.approx(best.x, rel=1e-5)
    # Q-profile ends: residual Q equals the χ²(10) quantiles
    for t2, q in zip(r.tau2_ci, (0.975, 0.025)):
        if t2 > 0:
            ssr = sm.WLS(y, X, weights=1 / (v + t2)).fit().ssr
            assert ssr == pytest.approx(stats.chi2.ppf(q, 10), rel=1e-8)
    assert "ablat" in r.summary()


def test_metaregression_methods_and_errors(bcg):
    y, se, b = bcg
    fe = meta_regression(y, se, b.ablat, method="FE")
    assert fe.tau2 == 0
    dl = meta_regression(y, se, b.ablat.to_numpy(), method="DL", names=["lat"])
    assert "lat" in dl.coefficients.index and dl.tau2 > 0
    pm = meta_regression(y, se, b[["ablat"]], method="PM")
    X = np.column_stack([np.ones_like(y), b.ablat])
    ssr = sm.WLS(y, X, weights=1 / (se**2 + pm.tau2)).fit().ssr
    assert ssr == pytest.approx(11, rel=1e-8)  # PM: Q(τ²) = k − p
    bad = b[["ablat"]].astype(float).copy()
    bad.iloc[2, 0] = np.nan
    with pytest.raises(DataError, match="ablat"):
        meta_regression(y, se, bad)
    with pytest.raises(DesignError):
        meta_regression(y, se, pd.DataFrame({"a": b.ablat, "b": 2 * b.ablat}))
    with pytest.raises(DataError):
        meta_regression(y, se, b[["ablat"]].iloc[:5])


ALL_METHODS = ("REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_metaregression_refuses_a_nearly_collinear_moderator(method):
    """A moderator that is another plus noise of 1e-9, or a constant plus such noise, leaves a
    part the columns before it do not span of about 1e-9 of its size: below R's qr() tolerance
    1e-7, as metafor (lm on the unweighted design) drops it. Every method stops with an error
    naming it; before 2026-12-05 numpy's matrix_rank passed it and DL, PM, EB, HE, SJ, HS and FE
    returned coefficients of ±4e7 (SE 6e7) without a word, REML and ML "Singular matrix"."""
    rng = np.random.default_rng(7)
    k = 30
    y, se = rng.normal(0, 0.3, k), rng.uniform(0.05, 0.2, k)
    pov = rng.uniform(0.2, 0.9, k)
    twin = pov + 1e-9 * rng.standard_normal(k)
    ols = sm.OLS(twin, np.column_stack([np.ones(k), pov])).fit()
    share = math.sqrt(ols.ssr) / np.linalg.norm(twin)  # the part of it the intercept and poverty do not span
    assert share < 1e-7
    with pytest.raises(DesignError, match=rf"moderator 'twin' is a linear combination of the intercept and the "
                                          rf"moderators before it \('poverty'\) over these schools \(the part they do "
                                          rf"not span is {share:.1g} of it; below 1e-07 counts as none\): the design is "
                                          rf"rank deficient; leave it out"):
        meta_regression(y, se, pd.DataFrame({"poverty": pov, "twin": twin}), method=method)
    flat = 0.5 + 1e-9 * rng.standard_normal(k)
    with pytest.raises(DesignError, match=rf"moderator 'flat' holds nearly one value for every school "
                                          rf"\({flat.mean():g}, varying by only {np.ptp(flat):.3g} in all\), which the "
                                          rf"intercept spans: the design is rank deficient"):
        meta_regression(y, se, pd.DataFrame({"poverty": pov, "flat": flat}), method=method)
    both = pd.DataFrame({"twin": twin, "poverty": pov, "flat": flat, "years": rng.integers(1, 5, k).astype(float)})
    with pytest.raises(DesignError, match=r"moderator 'poverty' is a linear combination of the intercept and the "
                                          r"moderators before it \('twin'\).*; moderator 'flat' holds nearly one "
                                          r"value.*: the design is rank deficient; leave them out"):
        meta_regression(y, se, both, method=method)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_metaregression_fits_ill_scaled_moderators(method):
    """Moderators in units of 1e6 and 1e-6 and uncentred years 2020..2025 are not collinear (each
    column's part the others do not span is ≥ 8e-4 of it): the fit is not refused, τ̂² equals the
    well-scaled design's, and the coefficients and SEs equal statsmodels' WLS at that τ̂² on the
    well-scaled design, carried back to the units (β = Tβ_well, Var = T Var_well T'). A school
    with an SE of 1e-9 among 0.05-0.2 (nearly all the weight) does not make an ordinary
    moderator redundant either: the criterion is on the unweighted design."""
    rng = np.random.default_rng(11)
    k = 40
    a, b = rng.uniform(0, 1, k), rng.uniform(0, 1, k)
    year = rng.integers(2020, 2026, k).astype(float)
    se = rng.uniform(0.05, 0.2, k)
    y = rng.normal(0, 0.3, k) + 0.3 * a - 0.2 * b + 0.05 * (year - 2022)
    well = np.column_stack([np.ones(k), a, b, year - 2022])
    T = np.eye(4)
    T[1, 1], T[2, 2], T[0, 3] = 1e-6, 1e6, -2022.0  # β for a·1e6, b·1e-6, year uncentred
    r = meta_regression(y, se, pd.DataFrame({"a": a * 1e6, "b": b * 1e-6, "year": year}), method=method)
    r_well = meta_regression(y, se, well[:, 1:], method=method)
    assert r.tau2 == pytest.approx(r_well.tau2, rel=1e-9, abs=1e-15)
    f = sm.WLS(y, well, weights=1 / (se**2 + r.tau2)).fit(cov_type="fixed scale")
    np.testing.assert_allclose(r.coefficients.estimate, T @ f.params, rtol=1e-9)
    np.testing.assert_allclose(r.coefficients.se, np.sqrt(np.diag(T @ f.cov_params() @ T.T)), rtol=1e-9)
    se[0] = 1e-9
    r = meta_regression(y, se, pd.DataFrame({"a": a}), method=method)
    f = sm.WLS(y, well[:, :2], weights=1 / (se**2 + r.tau2)).fit(cov_type="fixed scale")
    np.testing.assert_allclose(r.coefficients.estimate, f.params, rtol=1e-9)
    np.testing.assert_allclose(r.coefficients.se, f.bse, rtol=1e-9)


@pytest.mark.slow
def test_metaregression_moderator_test_size_and_power():
    """No moderator effect: the Knapp–Hartung moderator test rejects ~5%; a real
    moderator (slope 0.2 per SD) is detected most of the time."""
    reps = sim_reps(1000, minimum=200)
    rng = np.random.default_rng(99)
    k = 40
    x = rng.standard_normal(k)
    se = rng.uniform(0.05, 0.3, k)
    rej0 = rej1 = 0
    for _ in range(reps):
        u = rng.normal(0, 0.1, k) + se * rng.standard_normal(k)
        rej0 += meta_regression(0.1 + u, se, x, knapp_hartung=True).coefficients.pvalue.iloc[1] < 0.05
        rej1 += meta_regression(0.1 + 0.2 * x + u, se, x, knapp_hartung=True).coefficients.pvalue.iloc[1] < 0.05
    assert abs(rej0 / reps - 0.05) < 3.5 * math.sqrt(0.05 * 0.95 / reps), rej0 / reps
    assert rej1 / reps > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("test, k", [("pooled", 5), ("pooled", 10), ("moderator", 10), ("moderator", 20)])
def test_hartung_knapp_holds_the_size_the_z_test_exceeds(test, k):
    """No pooled effect (or no moderator effect, one moderator) with heterogeneity (τ = 0.1, SEs
    0.05–0.12), REML: Hartung–Knapp rejects about 5%, the z test too often (2,000 sets: the
    pooled effect, 5 schools 5.7% against 10.8%, 10 schools 5.9% against 8.9%; the moderator, 10
    schools 5.6% against 9.3%, 20 schools 5.4% against 6.8%; docs/heterogeneity.md) — why
    ``pleval schools``, ``school_effects`` and ``pleval estimate`` use it by default."""
    reps = sim_reps(2000, minimum=300)
    rng = np.random.default_rng(k)
    hk = z = 0
    for _ in range(reps):  # a loop over data sets
        x = rng.standard_normal(k) if test == "moderator" else None
        se = rng.uniform(0.05, 0.12, k)
        y = rng.normal(0.0, np.sqrt(0.1**2 + se**2))
        if test == "pooled":
            p_hk = meta_analysis(y, se, method="REML", hartung_knapp=True).pvalue
            p_z = meta_analysis(y, se, method="REML").pvalue
        else:
            p_hk = meta_regression(y, se, x, knapp_hartung=True).coefficients.pvalue.iloc[1]
            p_z = meta_regression(y, se, x).coefficients.pvalue.iloc[1]
        hk, z = hk + (p_hk < 0.05), z + (p_z < 0.05)
    assert hk / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps), hk / reps
    print(f"{test}, k = {k}: Hartung–Knapp {hk / reps:.4f}, z {z / reps:.4f} ({reps} sets)")


def test_per_school_tables_default_to_hartung_knapp():
    import warnings

    from pleval.heterogeneity import school_effects_from_estimates

    d = pd.DataFrame({"school_id": [f"S{i}" for i in range(6)], "estimate": [0.1, -0.05, 0.2, 0.0, 0.15, 0.3],
                      "se": [0.05, 0.08, 0.06, 0.1, 0.07, 0.09]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = school_effects_from_estimates(d)
    want = meta_analysis(d.estimate, d.se, method="REML", hartung_knapp=True)
    m = r.meta["all"]
    assert m.hartung_knapp and (m.se, m.pvalue) == pytest.approx((want.se, want.pvalue), rel=1e-10)
    assert not meta_analysis(d.estimate, d.se).hartung_knapp  # metafor's rma default stays z


# ---------------------------------------------------------------- properties


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(-2, 2), st.floats(0.02, 1.0)), min_size=3, max_size=25
    ),
    shift=st.floats(-5, 5),
    scale=st.floats(0.1, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_meta_analysis_equivariance(data, shift, scale, seed):
    """Row order does not matter; shifting every estimate shifts μ̂ and leaves τ² alone;
    rescaling estimates and SEs rescales μ̂ by c and τ² by c²."""
    y = np.array([d[0] for d in data])
    se = np.array([d[1] for d in data])
    perm = np.random.default_rng(seed).permutation(y.size)
    for method in ("REML", "DL", "PM"):
        base = meta_analysis(y, se, method)
        p = meta_analysis(y[perm], se[perm], method)
        s = meta_analysis(y + shift, se, method)
        c = meta_analysis(scale * y, scale * se, method)
        tol = 1e-6 * (1 + base.tau2)
        assert p.estimate == pytest.approx(base.estimate, abs=1e-8) and abs(p.tau2 - base.tau2) < tol
        assert s.estimate == pytest.approx(base.estimate + shift, abs=1e-7) and abs(s.tau2 - base.tau2) < tol
        assert c.estimate == pytest.approx(scale * base.estimate, abs=1e-7 * scale)
        assert abs(c.tau2 - scale**2 * base.tau2) < 1e-6 * scale**2 * (1 + base.tau2)
        assert base.tau2_ci[0] <= base.tau2_ci[1] and base.tau2 >= 0


def test_rank_intervals_report_monte_carlo_error(kacker):
    """Mean ranks come with their Monte Carlo SE; across seeds they move by what it says, and
    with the default draws far less than the rank's own uncertainty (< 0.1 posterior SD)."""
    y, se = kacker
    r = empirical_bayes(y, se, meta_analysis(y, se, "REML"))
    runs = [r.rank_intervals(seed=s) for s in range(5)]
    mean = np.array([x["rank_mean"].to_numpy() for x in runs])
    mc = runs[0]["rank_mean_mc_se"].to_numpy()
    assert np.all(np.abs(mean - mean.mean(axis=0)) <= 4 * mc + 1e-12)
    posterior_sd = mc * np.sqrt(2000)
    assert np.all(mc < 0.1 * posterior_sd + 1e-12)
    assert np.all(np.ptp(mean, axis=0) < 0.1 * posterior_sd + 1e-12)


def test_shrinkage_with_estimated_tau2_uses_the_prasad_rao_mse():
    """tau2_uncertainty: g1 + g2 + 2 g3 (Prasad & Rao 1990; Datta & Lahiri 2000 for REML),
    g3 = v²/(τ̂² + v)³ Var(τ̂²), the expectation of the squared derivative (v w² (y − μ))², written
    out for independent estimates and matched by the correlated-error path with a diagonal V
    (before 2026-12-05 the squared derivative at the observed y, 0 for a school at μ̂)."""
    rng = np.random.default_rng(8)
    se = rng.uniform(0.05, 0.15, 14)
    y = 0.1 + rng.normal(0, 0.12, 14) + rng.normal(0, se)
    r = empirical_bayes(y, se, tau2_uncertainty=True)
    m = meta_analysis(y, se)
    v, t2 = se**2, m.tau2
    w = 1 / (v + t2)
    B = t2 * w
    g3 = v**2 / (t2 + v) ** 3 * m.tau2_se**2
    np.testing.assert_allclose(r.shrunk_sd, np.sqrt(B * v + (1 - B) ** 2 / w.sum() + 2 * g3), rtol=1e-10)
    rv = empirical_bayes(y, se, tau2_uncertainty=True, vcov=np.diag(v))
    np.testing.assert_allclose(rv.shrunk_sd, r.shrunk_sd, rtol=1e-8)


@pytest.mark.parametrize("method", ["DL", "PM", "HE", "SJ", "HS"])
def test_shrinkage_of_other_estimators_uses_the_reml_information_for_tau2(method):
    """With estimators that report no SE of τ̂², the Prasad–Rao term uses the REML inverse
    information at the method's τ̂², 2/tr(PP), P = Σ⁻¹ − Σ⁻¹11'Σ⁻¹/1'Σ⁻¹1, Σ = V + τ̂²I (explicit
    inverses here): independent schools and (but HS) a known correlated covariance. Before 2026-12-05 the
    term was 0 for them (τ̂² silently treated as known)."""
    rng = np.random.default_rng(21)
    k = 14
    se = rng.uniform(0.05, 0.15, k)
    A = rng.normal(0, 0.02, (k, k))
    C = A @ A.T / k
    for V in (np.diag(se**2), np.diag(se**2) + C - np.diag(np.diag(C))):
        V = V + np.eye(k) * max(0.0, -np.linalg.eigvalsh(V)[0] + 1e-4)
        s = np.sqrt(np.diag(V))
        y = 0.1 + rng.normal(0, 0.2, k) + np.linalg.cholesky(V) @ rng.standard_normal(k)
        diagonal = not np.any(V - np.diag(np.diag(V)))
        if method == "HS" and not diagonal:  # HS needs independent estimates
            continue
        m = meta_analysis(y, s, method=method, vcov=None if diagonal else V)
        r = empirical_bayes(y, s, m, tau2_uncertainty=True)
        t2 = m.tau2
        assert t2 > 0 and not np.isfinite(m.tau2_se)
        S = np.linalg.inv(V + t2 * np.eye(k))
        one = np.ones(k)
        P = S - np.outer(S @ one, S @ one) / (one @ S @ one)
        var_t2 = 2 / np.trace(P @ P)
        M = np.eye(k) - t2 * S
        pev = np.diag(t2 * np.eye(k) - t2**2 * S + np.outer(M @ one, M @ one) / (one @ S @ one))
        np.testing.assert_allclose(r.shrunk_sd, np.sqrt(pev + 2 * np.diag(M @ S @ M) * var_t2), rtol=1e-9)
    fe = empirical_bayes(y, se, meta_analysis(y, se, method="FE"), tau2_uncertainty=True)
    np.testing.assert_allclose(fe.shrunk_sd, np.sqrt(1 / np.sum(1 / se**2)), rtol=1e-12)  # τ² = 0 taken as known


@pytest.mark.parametrize("method", ["REML", "DL"])
def test_shrunken_intervals_cover_with_few_schools(method):
    """The shrunken 95% intervals θ̃ ± z·SD that pool_schools gives school_effects (g1 + g2 + 2g3)
    cover the true school effects 93–97% of the time: 15 independent schools, SEs 0.06–0.16,
    τ = 0.05, μ = 0.1, 300 studies (seed 3; the regime where τ̂² is least certain). Before
    2026-12-05 (the squared derivative at the data for g3) REML covered 91%, and DL, with no g3
    at all, 82%."""
    from pleval.heterogeneity.school_inference import pool_schools

    rng = np.random.default_rng(3)
    k, reps = 15, 300
    se = np.linspace(0.06, 0.16, k)
    z = stats.norm.ppf(0.975)
    covered = np.empty(reps)
    for i in range(reps):
        theta = 0.1 + 0.05 * rng.standard_normal(k)
        y = theta + se * rng.standard_normal(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, sh = pool_schools(y, se, method=method)
        covered[i] = np.mean(np.abs(sh.shrunk - theta) <= z * sh.shrunk_sd)
    assert 0.93 <= covered.mean() <= 0.97, (covered.mean(), covered.std(ddof=1) / np.sqrt(reps))


@pytest.mark.parametrize("tau2_var", [0.0, 2e-5])
def test_blup_with_correlated_errors_equals_the_matrix_formulas(tau2_var):
    """shrinkage.blup forms W = (V + τ²I)⁻¹ only through products with vectors (O(k²)): its
    μ̂, Var μ̂, θ̃, prediction-error SD (with the Prasad–Rao term 2g₃, g₃ the expected squared
    derivative of θ̃ in τ², diag((I − τ²W)W(V + τ²I)W(I − τ²W)') Var(τ̂²)) and reliability equal
    the matrix formulas of the module docstring written with an explicit inverse."""
    from pleval.heterogeneity.shrinkage import blup

    rng = np.random.default_rng(11)
    k = 40
    A = rng.normal(0, 0.03, (k, k))
    V = A @ A.T / k + np.diag(rng.uniform(0.005, 0.02, k))
    y = 0.1 + rng.normal(0, 0.1, k)
    t2 = 0.004
    W = np.linalg.inv(V + t2 * np.eye(k))
    one = np.ones(k)
    mu_var = 1 / (one @ W @ one)
    mu = (one @ W @ y) * mu_var
    M = np.eye(k) - t2 * W
    pev = np.diag(t2 * np.eye(k) - t2**2 * W + np.outer(M @ one, M @ one) * mu_var)
    D = M @ W  # ∂(τ²W)/∂τ²: θ̃ = μ1 + τ²W(y − μ1), y − μ1 ~ N(0, V + τ²I)
    pev = pev + 2 * np.diag(D @ (V + t2 * np.eye(k)) @ D.T) * tau2_var
    for got in (blup(y, V, t2, tau2_var), blup(y, None, t2, tau2_var, eigen=np.linalg.eigh(V))):
        np.testing.assert_allclose(got[:2], (mu, mu_var), rtol=1e-12)
        np.testing.assert_allclose(got[2], mu + t2 * W @ (y - mu), rtol=1e-12)
        np.testing.assert_allclose(got[3], np.sqrt(pev), rtol=1e-12)
        np.testing.assert_allclose(got[4], t2 * np.diag(W), rtol=1e-12)


def test_check_vcov_symmetrizes_and_keeps_an_exactly_symmetric_matrix():
    """check_vcov returns (V + V')/2: V itself (equal values, no copy needed) when V is exactly
    symmetric, the average when it is symmetric up to rounding; it refuses an asymmetric V."""
    from pleval.heterogeneity.meta import check_vcov

    rng = np.random.default_rng(3)
    A = rng.normal(0, 0.1, (6, 6))
    V = A @ A.T + np.eye(6)
    se = np.sqrt(np.diag(V))
    assert np.array_equal(V, V.T)
    np.testing.assert_array_equal(check_vcov(V, se), V)
    near = V.copy()
    near[0, 1] *= 1 + 1e-13
    got = check_vcov(near, se)
    np.testing.assert_array_equal(got, (near + near.T) / 2)
    assert np.array_equal(got, got.T)
    far = V.copy()
    far[0, 1] += 0.01
    with pytest.raises(DataError, match="symmetric"):
        check_vcov(far, se)


def test_reml_where_fisher_scoring_crawls_does_not_depend_on_row_order_or_scale():
    """Hypothesis found data where Fisher scoring converges slowly (each step 0.9 of the last) and
    the bounded search that follows stopped within its relative tolerance of 1.5e-8·τ²: the row
    order moved μ̂ by 1.2e-8 and rescaling by 0.125 by 1.1e-7. The score's root beside that
    search, and tolerances relative to the data's scale, leave both at rounding."""
    data = [(0.0, 1.0), (0.0, 1.0), (1.0, 0.875), (0.75, 0.53125), (0.25, 0.875), (-1.0, 1.0), (-1.0, 0.0625),
            (-1.5, 0.5), (-0.875, 0.125), (-0.90625, 0.0625), (-0.6484375, 0.0625)]
    y, se = np.array(data).T
    base = meta_analysis(y, se, "REML")
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(y.size)
        p = meta_analysis(y[perm], se[perm], "REML")
        assert p.estimate == pytest.approx(base.estimate, abs=1e-13) and p.tau2 == pytest.approx(base.tau2, abs=1e-13)
    for scale in (0.125, 10.0):
        c = meta_analysis(scale * y, scale * se, "REML")
        assert c.estimate / scale == pytest.approx(base.estimate, abs=1e-12)
        assert c.tau2 / scale**2 == pytest.approx(base.tau2, abs=1e-12)


def test_nearly_equal_estimates_raise_no_overflow_warning():
    """Estimates equal but for 2.5e-162: Q ≈ 1e-323, whose reciprocal in statsmodels' I²
    overflowed into a RuntimeWarning the user could do nothing about (found by the property
    test above); pleval's own I² is 0."""
    y = np.array([0.0, 0.0, 2.5297608573056033e-162])
    se = np.array([1.0, 0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("REML", "DL", "PM"):
            r = meta_analysis(y, se, method)
            assert r.tau2 == 0.0 and r.i2 == 0.0 and abs(r.estimate) < 1e-160


def test_hartung_knapp_warns_when_estimates_agree_more_than_their_ses_and_survives_identical_ones():
    """Five schools with SE 0.08 whose estimates differ by at most 0.02: the untruncated HK SE is
    0.0033 (a tenth of the standard 0.0358) and p = 7e-6 — a warning now says so. Identical
    estimates crashed (ZeroDivisionError); the standard SE is used, with a warning."""
    import warnings as w

    from pleval.errors import PlevalWarning

    y, se = np.array([0.10, 0.11, 0.09, 0.10, 0.105]), np.full(5, 0.08)
    with pytest.warns(PlevalWarning, match=r"agree more closely than their SEs imply \(factor 0.00"):
        hk = meta_analysis(y, se, hartung_knapp=True)
    std = meta_analysis(y, se)
    assert hk.se == pytest.approx(std.se * np.sqrt(np.sum((y - y.mean()) ** 2 / 0.08**2) / 4), rel=1e-6)
    with pytest.warns(PlevalWarning, match="identical"):
        same = meta_analysis(np.full(4, 0.1), np.full(4, 0.05), hartung_knapp=True)
    assert same.se == pytest.approx(0.05 / 2) and np.isfinite(same.pvalue)
    with w.catch_warnings():
        w.simplefilter("error", PlevalWarning)
        meta_analysis(np.array([0.0, 0.2, -0.1, 0.3]), np.full(4, 0.1), hartung_knapp=True)  # factor > 0.25: quiet


def test_series_of_estimates_and_ses_are_paired_by_label():
    """Two labelled Series in different orders were paired by position (each school given
    another's SE, without a word). They are now paired by label, as pandas pairs them; Series with
    different labels are an error."""
    t = pd.read_csv("sample_data/school_effects.csv")
    t = t[t.subject == "math"].set_index("school_id")
    ref = meta_analysis(t["estimate"].to_numpy(), t["se"].to_numpy())
    shuffled = t["se"].sample(frac=1.0, random_state=3)
    got = meta_analysis(t["estimate"], shuffled)
    assert got.estimate == ref.estimate and got.tau2 == ref.tau2
    with pytest.raises(DataError, match="Series with different labels"):
        meta_analysis(t["estimate"], shuffled.reset_index(drop=True))


def test_school_table_meta_regression_uses_the_runs_level():
    """SchoolEffects.meta_regression gives intervals at the school effects' own level (as the
    pooled meta-analysis does). Before, they were always 95% — under a column the report headed
    "90% CI" with --level 0.9 (intercept −0.158 to +0.924 where the 90% interval is −0.066 to
    +0.832); the residual τ² interval and the BLUPs' were 95% too."""
    from scipy import stats

    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    t = pd.read_csv("sample_data/school_effects.csv")
    res = school_effects_from_estimates(t, level=0.9, moderators=["school_poverty"])
    for key, reg in res.meta_regression(["school_poverty"]).items():
        c = reg.coefficients
        q = stats.t.ppf(0.95, reg.df)
        np.testing.assert_allclose(c["ci_low"], c["estimate"] - q * c["se"], rtol=1e-10)
        assert reg.level == 0.9
        assert res.meta_regression(["school_poverty"], level=0.95)[key].level == 0.95


def _math_schools():
    t = pd.read_csv("sample_data/school_effects.csv")
    return t[t.subject == "math"].set_index("school_id")


def test_missing_values_of_any_kind_are_the_missing_value_error():
    """An SE (or estimate) Series of dtype object holding pd.NA (what ``.where(mask, pd.NA)`` or a
    merge gives) is the DataError that NaN and Float64 <NA> give. Before 2026-12-05 it was a bare
    TypeError from float()."""
    est = pd.Series([0.1, -0.2, 0.3, 0.05, 0.2], index=list("ABCDE"))
    se = pd.Series([0.1, 0.12, 0.1, 0.1, 0.11], index=list("ABCDE"))
    na_se = se.astype(object).where(se.index != "C", pd.NA)
    na_est = est.astype(object).where(est.index != "B", pd.NA)
    mods = pd.Series([1.0, 2.0, 3.0, 4.0, 6.0], index=list("ABCDE"))
    for call in (lambda e, s: meta_analysis(e, s), lambda e, s: empirical_bayes(e, s),
                 lambda e, s: meta_regression(e, s, mods)):
        with pytest.raises(DataError, match=r"ses: 1 value\(s\) are missing"):
            call(est, na_se)
        with pytest.raises(DataError, match=r"estimates: 1 value\(s\) are missing"):
            call(na_est, se)
    with pytest.raises(DataError, match="ses must hold numbers; it holds 'n/a'"):
        meta_analysis(est, se.astype(object).where(se.index != "C", "n/a"))


def test_significance_counts_pairs_series_by_label():
    """Two Series with the same labels in another order were paired by position: "2 positive,
    0 negative" read "0 positive, 2 negative". They are now paired by label (p_adjusted in the
    estimates' order); Series with other labels are a DataError naming a label."""
    est = pd.Series([0.30, 0.25, -0.02, -0.01, 0.05], index=list("ABCDE"))
    p = pd.Series([0.001, 0.002, 0.6, 0.7, 0.03], index=list("ABCDE"))
    shuffled = p.sort_values(ascending=False)
    got = significance_counts(est, shuffled)
    sig = p < 0.05  # by label, as pandas pairs them
    assert (got.positive_raw, got.negative_raw) == (int((sig & (est > 0)).sum()), int((sig & (est < 0)).sum())) == (3, 0)
    np.testing.assert_allclose(got.p_adjusted, stats.false_discovery_control(p.to_numpy()), rtol=1e-12)
    assert got.positive_adjusted == int(((stats.false_discovery_control(p.to_numpy()) < 0.05) & (est > 0)).sum())
    with pytest.raises(DataError, match=r"estimates and pvalues are Series with different labels .*'E' is in estimates but not in pvalues"):
        significance_counts(est, shuffled.rename({"E": "F"}))


def test_meta_regression_pairs_moderators_by_label():
    """A moderator frame (or Series) with the estimates' labels in another order was paired by
    position: the years_implementing slope 0.035 (p 0.23) became 0.012 (p 0.70). It is now paired
    by label, as the SEs were; other labels are a DataError naming a label."""
    t = _math_schools()
    est, se = t["estimate"], t["se"]
    x = t["years_implementing"].to_numpy(dtype=float)
    # independent: weighted least squares with the REML tau2 the aligned arrays give
    ref = meta_regression(est.to_numpy(), se.to_numpy(), x)
    w = 1.0 / (se.to_numpy() ** 2 + ref.tau2)
    X = np.column_stack([np.ones(len(x)), x])
    beta = np.linalg.solve(X.T @ (X * w[:, None]), X.T @ (w * est.to_numpy()))
    mods = t[["years_implementing"]].sample(frac=1.0, random_state=0)
    for m in (mods, mods["years_implementing"], mods.astype("Int64")):
        got = meta_regression(est, se.sample(frac=1.0, random_state=1), m)
        np.testing.assert_allclose(got.coefficients["estimate"].to_numpy(), beta, rtol=1e-8)
        assert got.tau2 == pytest.approx(ref.tau2, rel=1e-10)
    with pytest.raises(DataError, match=r"estimates and moderators are pandas objects with different labels .*'PL001'"):
        meta_regression(est, se, mods.rename(index={"PL001": "PL999"}))
    with pytest.raises(DataError, match=r"holds the label 'PL002' more than once"):
        meta_regression(est, se, mods.rename(index={"PL001": "PL002"}))
