"""A new school's effect and shrunken total effects with the between-school variance integrated
out by its generalized-Q confidence distribution (pleval.heterogeneity._predictive), checked
against direct computations (scipy root finding on the unrotated generalized Q, per-draw BLUPs),
and a meta-level coverage check with known covariances."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from pleval.heterogeneity import _predictive as P
from pleval.heterogeneity import calibrate, meta_analysis
from pleval.heterogeneity._unweighted import unweighted_q
from pleval.heterogeneity.shrinkage import blup

from .conftest import sim_reps


def _cov(rng, k, rho=0.3):
    """A positive-definite covariance with unequal variances and correlated errors."""
    se = rng.uniform(0.08, 0.15, k)
    R = np.full((k, k), rho) + (1 - rho) * np.eye(k)
    return R * np.outer(se, se)


def _gen_q(y, V, s):
    """Generalized Q ``r'(V + sI)⁻¹r`` with the GLS residuals, computed directly."""
    W = np.linalg.inv(V + s * np.eye(y.size))
    mu = W.sum(axis=1) @ y / W.sum()
    r = y - mu
    return float(r @ W @ r), mu, 1.0 / W.sum()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    k, m = 12, 30
    V, Vp = _cov(rng, k), _cov(rng, m, 0.1)
    y = 0.05 + rng.normal(0, 0.12, k) + np.linalg.cholesky(V) @ rng.standard_normal(k)
    yp = rng.normal(0, 0.08, m) + np.linalg.cholesky(Vp) @ rng.standard_normal(m)
    return y, V, yp, Vp


def test_cd_quantiles_are_q_profile_limits(data):
    y, V, _, _ = data
    k = y.size
    lam, Q = np.linalg.eigh(V)
    p = np.array([0.01, 0.2, 0.5, 0.8, 0.975])
    got = P.cd_quantiles(Q.T @ y, lam, Q.sum(axis=0), p)
    for pi, g in zip(p, got):
        target = stats.chi2.isf(pi, k - 1)
        want = 0.0 if _gen_q(y, V, 0.0)[0] <= target else optimize.brentq(
            lambda s: _gen_q(y, V, s)[0] - target, 0.0, 10.0, xtol=1e-14)
        assert g == pytest.approx(want, abs=1e-10)
    assert got[-1] > 0 and np.all(np.diff(got) >= 0)  # quantiles increase with p
    # the 2.5% and 97.5% quantiles are the Q-profile interval of the meta-analysis
    m = meta_analysis(y, np.sqrt(np.diag(V)), vcov=V)
    ends = P.cd_quantiles(Q.T @ y, lam, Q.sum(axis=0), np.array([0.025, 0.975]))
    np.testing.assert_allclose(ends, m.tau2_ci, atol=1e-10)


def test_order_restricted_is_the_two_group_isotonic_projection():
    s, d = np.array([0.02, 0.005, 0.0]), np.array([0.01, 0.01, 0.01])
    got = P.order_restricted(s, d, 1.0, 3.0)
    np.testing.assert_allclose(got, [0.02, (0.005 + 3 * 0.01) / 4, 0.03 / 4])
    # the pooled value minimises the weighted squared distance on the order cone s >= d
    for si, di, gi in zip(s, d, got):
        res = optimize.minimize(lambda z: (z[0] - si) ** 2 + 3 * (z[1] - di) ** 2, [di, di],
                                constraints={"type": "ineq", "fun": lambda z: z[0] - z[1]}, tol=1e-14)
        assert gi == pytest.approx(res.x[0], abs=1e-6)


def test_reml_information_is_the_inverse_squared_reml_se(data):
    y, V, _, _ = data
    lam, Q = np.linalg.eigh(V)
    m = meta_analysis(y, np.sqrt(np.diag(V)), vcov=V)
    info = P.reml_information(lam, Q.sum(axis=0), np.array([m.tau2, 0.0, 0.05]))
    assert info[0] == pytest.approx(1 / m.tau2_se**2, rel=1e-10)
    # independent case: ½ tr(P²) with P = W − W11'W/1'W1 formed explicitly
    for s, i in zip((0.0, 0.05), info[1:]):
        W = np.linalg.inv(V + s * np.eye(y.size))
        Pm = W - np.outer(W.sum(1), W.sum(0)) / W.sum()
        assert i == pytest.approx(0.5 * np.trace(Pm @ Pm), rel=1e-10)


def test_variance_nodes_split_the_two_confidence_distributions(data):
    """H's quantiles at the σ² rule's probabilities above its atom at 0 (the atom's mass on the
    first node, 0); with each s_i
    the placebo mass H_p(s_i) at or below it (σ² = s_i) and δ²'s quantiles at the placebo rule's
    probabilities above H_p(s_i), each projected, the weights the products, equal values one
    node (summed here by a dict)."""
    y, V, yp, Vp = data
    k = y.size
    atom = stats.chi2.sf(_gen_q(y, V, 0.0)[0], k - 1)
    u, w = P.tail_probabilities(**P.SIGMA_RULE)
    lam, Q = np.linalg.eigh(V)
    uq = unweighted_q(yp, Vp)  # the placebo variance: confidence distribution of the unweighted Q
    s = P.cd_quantiles(Q.T @ y, lam, Q.sum(axis=0), atom + (1 - atom) * u)
    s[0] = 0.0  # the bottom of the probabilities above the atom
    w = (1 - atom) * w
    w[0] += atom
    info = P.reml_information(lam, Q.sum(axis=0), s)

    def merged(value, rule=P.PLACEBO_RULE):  # the nodes' distinct values with their summed weights
        acc = {}
        u_p, w_p = P.tail_probabilities(**rule)

        def add(v, wt):
            acc[float(v)] = acc.get(float(v), 0.0) + wt

        for i in range(s.size):
            below = float(uq.sf(s[i])[0])
            add(s[i], w[i] * below)
            if value is None:
                continue
            for ul, wl in zip(u_p, w_p):
                d = float(uq.quantiles(min(below + (1 - below) * ul, u_p[-1]))[0])
                add(value(i, d), w[i] * (1 - below) * wl)
        keys = sorted(acc)
        return np.array(keys), np.array([acc[key] for key in keys])

    for restrict, value, rule in (("none", None, None), ("max", lambda i, d: max(s[i], d), P.SIGMA_RULE),
                            ("isotonic", lambda i, d: s[i] if s[i] >= d else
                             (info[i] * s[i] + uq.information(d)[0] * d) / (info[i] + uq.information(d)[0]),
                             P.PLACEBO_RULE)):
        got = P.variance_nodes(y, V, yp, Vp, restrict=restrict)
        want = merged(value, rule) if value else (s[np.argsort(s)], w[np.argsort(s)])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-18)
        assert got[1].sum() == pytest.approx(1.0, abs=1e-14)
    assert 0 < atom < 1 and np.any(uq.sf(s) > 0.5)  # both split points matter here
    with pytest.raises(ValueError):
        P.variance_nodes(y, V, yp, Vp, restrict="floor")


@pytest.mark.parametrize("weights", [None, [0.1, 0.5, 0.3, 0.1]])
def test_predictive_mixture_against_direct_computation(data, weights):
    y, V, _, _ = data
    sig = np.array([0.0, 0.004, 0.01, 0.03])
    (lo, hi), pneg = P.predictive(y, V, sig, weights, level=0.9)
    parts = [_gen_q(y, V, s) for s in sig]
    mu = np.array([q[1] for q in parts])
    sd = np.sqrt(sig + np.array([q[2] for q in parts]))
    w = np.full(4, 0.25) if weights is None else np.array(weights)

    def cdf(x):
        return stats.norm.cdf((x - mu) / sd) @ w

    assert lo == pytest.approx(optimize.brentq(lambda x: cdf(x) - 0.05, -5, 5, xtol=1e-14), abs=1e-10)
    assert hi == pytest.approx(optimize.brentq(lambda x: cdf(x) - 0.95, -5, 5, xtol=1e-14), abs=1e-10)
    assert pneg == pytest.approx(cdf(0.0), abs=1e-12)
    # a single draw is the plug-in normal prediction interval
    (lo1, hi1), _ = P.predictive(y, V, np.array([0.01]), level=0.9)
    q = _gen_q(y, V, 0.01)
    z = stats.norm.ppf(0.95) * math.sqrt(0.01 + q[2])
    assert (lo1, hi1) == pytest.approx((q[1] - z, q[1] + z), abs=1e-10)


@pytest.mark.parametrize("weights", [None, [0.1, 0.5, 0.3, 0.1]])
def test_shrinkage_averages_the_blups_over_the_draws(data, weights):
    y, V, _, _ = data
    sig = np.array([0.0, 0.004, 0.01, 0.03])
    mean, sd, pneg, _, _ = P.shrinkage(y, V, sig, weights)
    w = np.full(4, 0.25) if weights is None else np.array(weights)
    sh, pev = [], []
    for s in sig:  # the per-draw BLUP and its prediction-error SD, from shrinkage.blup
        _, _, th, d, _ = blup(y, V, s)
        sh.append(th)
        pev.append(d**2)
    sh, pev = np.array(sh), np.array(pev)
    np.testing.assert_allclose(mean, w @ sh, atol=1e-12)
    np.testing.assert_allclose(sd, np.sqrt(w @ pev + w @ (sh - w @ sh) ** 2), atol=1e-12)
    # σ² = 0: every school is shrunk to μ̂ (PEV = Var μ̂), so P(θ < 0) is Φ(−μ̂/SD(μ̂)) there
    want = np.where(pev > 1e-14, stats.norm.cdf(-sh / np.sqrt(np.clip(pev, 1e-300, None))), (sh < 0) * 1.0)
    np.testing.assert_allclose(pneg, w @ want, atol=1e-10)


def _posterior_brute_force(y, V, s, big=1e6):
    """School effects' normal posterior at prior variance ``s`` by Bayes' rule on the joint
    normal, with the flat prior on μ approximated by N(0, big): θ ~ N(0, sI + big·11'),
    y | θ ~ N(θ, V); independent of the BLUP algebra."""
    k = y.size
    prior = s * np.eye(k) + big * np.ones((k, k))
    cov = np.linalg.inv(np.linalg.inv(prior) + np.linalg.inv(V))
    return cov @ np.linalg.solve(V, y), np.sqrt(np.diag(cov))


def test_shrunken_interval_is_the_posterior_mixtures_quantiles():
    """Interval ends and P(θ < 0) against a brute-force mixture: each draw's posterior from the
    joint normal, the mixture's CDF integrated numerically from its density (scipy quad), its
    quantiles by brentq."""
    rng = np.random.default_rng(7)
    k = 5
    V = _cov(rng, k)
    y = np.array([0.45, -0.05, 0.02, 0.1, -0.3])  # schools far from the mean: skewed mixtures
    sig = np.array([0.001, 0.008, 0.02, 0.05])
    mix = P.shrinkage(y, V, sig, level=0.9)
    parts = [_posterior_brute_force(y, V, s) for s in sig]
    for i in range(k):
        m = np.array([p[0][i] for p in parts])
        sd = np.array([p[1][i] for p in parts])

        def cdf(x):  # ∫ mixture density, not the normal CDF
            lo = float(np.min(m - 12 * sd))
            return integrate.quad(lambda t: stats.norm.pdf(t, m, sd).mean(), lo, x, epsabs=1e-13, epsrel=1e-12,
                                  limit=200)[0]

        assert mix.low[i] == pytest.approx(optimize.brentq(lambda x: cdf(x) - 0.05, -3, 3, xtol=1e-12), abs=1e-6)
        assert mix.high[i] == pytest.approx(optimize.brentq(lambda x: cdf(x) - 0.95, -3, 3, xtol=1e-12), abs=1e-6)
        assert mix.prob_negative[i] == pytest.approx(cdf(0.0), abs=1e-6)
        assert mix.mean[i] == pytest.approx(m.mean(), abs=1e-6)
    # the interval is not the normal approximation θ̃ ± z·SD: asymmetric where the school is far out
    z = stats.norm.ppf(0.95)
    assert np.max(np.abs((mix.high - mix.mean) - (mix.mean - mix.low))) > 0.005
    assert not np.allclose(mix.low, mix.mean - z * mix.sd, atol=1e-3)
    # one draw: the plug-in normal posterior interval
    one = P.shrinkage(y, V, sig[2:3], level=0.9)
    np.testing.assert_allclose(one.low, one.mean - z * one.sd, atol=1e-10)
    np.testing.assert_allclose(one.high, one.mean + z * one.sd, atol=1e-10)


def test_shrunken_interval_and_risk_of_harm_agree(data):
    """0 lies outside the interval exactly when P(θ < 0) is beyond the tail probability: both are
    the same mixture (its CDF at the interval ends is (1 ∓ level)/2)."""
    y, V, yp, Vp = data
    y = y + np.linspace(-0.4, 0.4, y.size)  # schools on both sides of 0, some far out
    sig, w = P.variance_nodes(y, V, yp, Vp)
    mix = P.shrinkage(y, V, sig, w)
    draws = [blup(y, V, s) for s in sig]
    th, sd = np.array([d[2] for d in draws]), np.array([d[3] for d in draws])
    for end, p in ((mix.low, 0.025), (mix.high, 0.975)):
        np.testing.assert_allclose(w @ stats.norm.cdf((end[None, :] - th) / sd), p, atol=1e-10)
    assert np.any(mix.low > 0) and np.any(mix.high < 0) and np.any((mix.low < 0) & (mix.high > 0))
    np.testing.assert_array_equal(mix.low > 0, mix.prob_negative < 0.025)
    np.testing.assert_array_equal(mix.high < 0, mix.prob_negative > 0.975)


def test_mixture_quantiles_with_a_point_mass():
    """A component with SD 0 is a point mass: the quantile sits on it while the CDF jumps over p."""
    m, sd = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    q = P._mixture_quantiles(m, sd, [0.25, 0.75])
    assert q[0] == pytest.approx(0.0, abs=1e-12)
    want = optimize.brentq(lambda x: 0.5 + 0.5 * stats.norm.cdf(x - 1) - 0.75, 0, 5, xtol=1e-14)
    assert q[1] == pytest.approx(want, abs=1e-10)
    cols = P._mixture_quantiles(np.stack([m, m + 1], axis=1), np.stack([sd, sd], axis=1), [0.75])
    np.testing.assert_allclose(cols[0], [want, want + 1], atol=1e-10)  # one mixture per column


@pytest.mark.parametrize("shape", ["skewed", "two_modes", "spread"])
def test_mixture_quantiles_newton_matches_brentq(shape):
    """The safeguarded Newton roots (smooth mixtures) against brentq on the same CDF, lower and
    upper tails and the middle, including a mixture of two far-apart narrow modes whose CDF is
    flat between them (where an unguarded Newton step would leave the bracket)."""
    rng = np.random.default_rng(3)
    n, k = 60, 7
    if shape == "skewed":
        m, sd = rng.exponential(0.2, (n, k)), rng.uniform(0.01, 0.05, (n, k))
    elif shape == "two_modes":
        m = np.where(np.arange(n)[:, None] < n // 3, -1.0, 1.0) + rng.normal(0, 0.01, (n, k))
        sd = np.full((n, k), 1e-3)
    else:
        m, sd = rng.normal(0, 1, (n, k)), rng.uniform(0.001, 3.0, (n, k))
    probs = [0.001, 0.025, 0.5, 0.975, 0.999]
    got = P._mixture_quantiles(m, sd, probs)
    for j in range(k):
        for i, p in enumerate(probs):
            def gap(x):
                return stats.norm.cdf((x - m[:, j]) / sd[:, j]).mean() - p
            want = optimize.brentq(gap, -10, 10, xtol=1e-15, rtol=1e-15)
            assert abs(gap(got[i, j])) <= 1e-13 or got[i, j] == pytest.approx(want, abs=1e-12)


def test_mixture_quantiles_nan_column_stays_nan_and_alone():
    """A mixture with a NaN component gives NaN quantiles; the other columns are unaffected."""
    rng = np.random.default_rng(5)
    m, sd = rng.normal(0, 1, (50, 3)), np.full((50, 3), 0.2)
    clean = P._mixture_quantiles(m, sd, [0.05, 0.95])
    m[7, 1] = np.nan
    got = P._mixture_quantiles(m, sd, [0.05, 0.95])
    assert np.isnan(got[:, 1]).all()
    np.testing.assert_array_equal(got[:, [0, 2]], clean[:, [0, 2]])


def test_mixture_quantiles_of_a_school_do_not_depend_on_the_others():
    """Each column's quantiles are the same alone, among others, or in another order, to the
    rounding of numpy's vectorized loops (which differs with an element's place in the array)."""
    rng = np.random.default_rng(6)
    m = np.concatenate([rng.normal(0, 0.05, (400, 20)), rng.normal(0, 2.0, (400, 20))], axis=1)
    sd = rng.uniform(0.001, 0.5, (400, 40))
    w = rng.uniform(0.1, 1.0, 400)
    together = P._mixture_quantiles(m, sd, [0.025, 0.975], w)
    order = rng.permutation(40)
    np.testing.assert_allclose(P._mixture_quantiles(m[:, order], sd[:, order], [0.025, 0.975], w), together[:, order],
                               rtol=1e-13, atol=1e-15)
    for j in (0, 25):
        np.testing.assert_allclose(P._mixture_quantiles(m[:, j], sd[:, j], [0.025, 0.975], w), together[:, j],
                                   rtol=1e-13, atol=1e-15)


def test_mixture_quantiles_upper_tail_is_exact_to_its_own_digits():
    """An upper quantile is found from the upper tail's sum (1 − F has its digits where F near 1
    has none): S(q) = 1 − p to relative 1e-12."""
    rng = np.random.default_rng(4)
    m, sd = rng.normal(0, 0.1, (400, 50)), rng.uniform(0.05, 0.07, (400, 50))
    p = 1 - 1e-9
    q = P._mixture_quantiles(m, sd, [p])[0]
    upper = stats.norm.sf((q[None, :] - m) / sd).mean(axis=0)
    np.testing.assert_allclose(upper, 1 - p, rtol=1e-12)  # 1 − p as the float p holds it


def test_diagonal_v_matches_the_independent_formulas(data):
    """With a diagonal V the rotated computations reduce to the textbook independent ones."""
    y, V, _, _ = data
    v = np.diag(V)
    D = np.diag(v)
    sig = np.array([0.002, 0.02])
    mean, sd = P.shrinkage(y, D, sig)[:2]
    th, var = [], []
    for s in sig:
        w = 1 / (v + s)
        mu = w @ y / w.sum()
        B = s / (s + v)
        th.append(mu + B * (y - mu))
        var.append(B * v + (1 - B) ** 2 / w.sum())
    th, var = np.array(th), np.array(var)
    np.testing.assert_allclose(mean, th.mean(0), atol=1e-12)
    np.testing.assert_allclose(sd, np.sqrt(var.mean(0) + th.var(0)), atol=1e-12)


def _two_distribution_integral(y, V, yp, Vp, f, tol=1e-11, restrict="isotonic"):
    """``∫∫ f(σ²(s, d)) dH(s) dH_p(d)`` to absolute ``tol`` by nested scipy quad from the docs'
    formulas (no pleval code): ``H(s) = 1 − F_{χ²(k−1)}(Q(s))``, ``Q(s) = r'Wr``, ``W = (V + sI)⁻¹``
    (from V's eigenvectors), with density ``f_χ²(Q(s))·r'W²r`` (``dQ/ds = −r'W²r``) and an atom
    ``H(0)`` at 0; ``H_p(d) = P_d(Q₁ > q)`` by Pearson's three moments with ``β`` the eigenvalues
    of ``MV_pM`` on 1⊥, its density by a central difference, an atom at 0; ``σ² = s`` where
    ``d ≤ s`` (mass ``H_p(s)``), else ``(I(s)s + I_p(d)d)/(I(s) + I_p(d))`` with ``I(s) = ½ tr P²``
    and ``I_p(d) = (m − 1)²/(2Σ(β + d)²)`` (``restrict="isotonic"``), ``d`` (``"max"``); ``σ² = s``
    whatever ``d`` (``"none"``)."""
    k, m = y.size, yp.size
    lam, U = np.linalg.eigh(V)
    M = np.eye(m) - 1.0 / m
    beta = np.linalg.eigvalsh(M @ Vp @ M)[1:]
    q1 = float((yp - yp.mean()) @ (yp - yp.mean()))

    def gls(s):  # Q(s), −dQ/ds and ½ tr P²
        W = (U / (lam + s)) @ U.T
        Pm = W - np.outer(W.sum(1), W.sum(0)) / W.sum()
        r = y - W.sum(0) @ y / W.sum()
        Wr = W @ r
        return float(r @ Wr), float(Wr @ Wr), 0.5 * float(np.sum(Pm * Pm))

    def Hp(d):
        c = beta + d
        h = (c**2).sum() ** 3 / (c**3).sum() ** 2
        return special.chdtrc(h, h + (q1 - c.sum()) * math.sqrt(h / (c**2).sum()))

    def hp(d):
        e = 1e-6 * max(d, 1e-3)
        return (Hp(d + e) - Hp(d - e)) / (2 * e) if d > e else (Hp(d + e) - Hp(d)) / e

    def pool(s, d):
        if restrict == "max":
            return d
        i, ip = gls(s)[2], (m - 1) ** 2 / (2 * np.sum((beta + d) ** 2))
        return (i * s + ip * d) / (i + ip)

    def given(s):  # the placebo draws at or below s leave σ² = s; those above pool
        below = 1.0 if restrict == "none" else Hp(s)
        if below == 1.0:
            return f(s)
        return below * f(s) + integrate.quad(lambda d: f(pool(s, d)) * hp(d), s, np.inf, limit=200, epsabs=tol,
                                             epsrel=1e-8)[0]

    def h(s):
        q, dq, _ = gls(s)
        return math.exp(special.xlogy(k / 2 - 1.5, q) - q / 2 - special.gammaln((k - 1) / 2)
                        - (k - 1) / 2 * math.log(2)) * dq

    return special.chdtrc(k - 1, gls(0.0)[0]) * given(0.0) + integrate.quad(
        lambda s: given(s) * h(s), 0, np.inf, limit=200, epsabs=tol, epsrel=1e-8)[0]


def test_small_tail_probability_and_interval_against_the_integral():
    """``P(θ_new < 0) ≈ 4·10⁻⁵`` and the prediction interval's ends against the integral over the
    two confidence distributions by nested quad: the Simpson rules are within 1% of that
    small probability (400 equal midpoints paired by a lattice, before 2026-12-05, put it 20%
    low), and the mixture's CDF by quad at each end is its probability within 2·10⁻⁶ (before, 2·10⁻⁵)."""
    rng = np.random.default_rng(4)
    k, m = 12, 30
    V, Vp = _cov(rng, k), _cov(rng, m, 0.1)
    y = 0.85 + rng.normal(0, 0.12, k) + np.linalg.cholesky(V) @ rng.standard_normal(k)
    yp = rng.normal(0, 0.08, m) + np.linalg.cholesky(Vp) @ rng.standard_normal(m)
    c = calibrate([f"s{i}" for i in range(k)], y, V, np.full(k, 30.0), yp, Vp)

    def cdf_at(x):  # the predictive normal's CDF at x given σ²
        def f(s2):
            W = np.linalg.inv(V + s2 * np.eye(k))
            return special.ndtr((x - W.sum(0) @ y / W.sum()) / math.sqrt(s2 + 1 / W.sum()))
        return f

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        want = _two_distribution_integral(y, V, yp, Vp, cdf_at(0.0))
        assert 1e-5 < want < 1e-4
        assert c.prob_negative_new == pytest.approx(want, rel=0.01)
        for end, p in zip(c.pi, (0.025, 0.975)):
            assert _two_distribution_integral(y, V, yp, Vp, cdf_at(end)) == pytest.approx(p, abs=2e-6)


@pytest.mark.parametrize("restrict", ["none", "max"])
def test_variance_nodes_of_each_restriction_against_the_integral(restrict):
    """The nodes and weights of :func:`variance_nodes` for ``restrict="none"`` (σ² = s) and
    ``"max"`` (σ² = max(s, d)) integrate a small tail probability (the predictive normal's CDF at
    0) to within 1% of the nested-quad integral built from the docs' formulas (the isotonic case:
    the test above)."""
    rng = np.random.default_rng(4)
    k, m = 12, 30
    V, Vp = _cov(rng, k), _cov(rng, m, 0.1)
    y = 0.85 + rng.normal(0, 0.12, k) + np.linalg.cholesky(V) @ rng.standard_normal(k)
    yp = rng.normal(0, 0.08, m) + np.linalg.cholesky(Vp) @ rng.standard_normal(m)

    def tail(s2):
        W = np.linalg.inv(V + s2 * np.eye(k))
        return special.ndtr(-(W.sum(0) @ y / W.sum()) / math.sqrt(s2 + 1 / W.sum()))

    nodes, weights = P.variance_nodes(y, V, yp, Vp, restrict=restrict)
    got = sum(w * tail(s2) for s2, w in zip(nodes, weights))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        want = _two_distribution_integral(y, V, yp, Vp, tail, restrict=restrict)
    assert 1e-6 < want < 1e-3
    assert got == pytest.approx(want, rel=0.01)


def test_calibrate_uses_the_order_restricted_confidence_distribution(data, monkeypatch):
    y, V, yp, Vp = data
    k = y.size
    c = calibrate([f"s{i}" for i in range(k)], y, V, np.full(k, 30.0), yp, Vp)
    mpl = meta_analysis(y, np.sqrt(np.diag(V)), vcov=V)
    mpb = meta_analysis(yp, np.sqrt(np.diag(Vp)), "HE", vcov=Vp)  # placebo: Hedges' unweighted estimator
    m = yp.size
    S = (np.eye(m) - 1 / m) @ (Vp + mpb.tau2 * np.eye(m))
    se_pb = np.sqrt(2 * np.trace(S @ S)) / (m - 1)
    assert c.placebo.tau2 == pytest.approx(mpb.tau2) and c.placebo.tau2_se == pytest.approx(se_pb)
    assert c.placebo.tau2_ci == pytest.approx(unweighted_q(yp, Vp).ci())
    w, wp = mpl.tau2_se**-2, se_pb**-2
    want = mpl.tau2 if mpl.tau2 >= mpb.tau2 else (w * mpl.tau2 + wp * mpb.tau2) / (w + wp)
    assert c.tau2_total == pytest.approx(want)
    sig, wt = P.variance_nodes(y, V, yp, Vp)
    assert np.all(sig >= 0) and np.all(np.diff(sig) > 0) and wt.sum() == pytest.approx(1.0)
    pi, pneg = P.predictive(y, V, sig, wt)
    assert c.pi == pytest.approx(pi) and c.prob_negative_new == pytest.approx(pneg)
    mix = P.shrinkage(y, V, sig, wt)
    np.testing.assert_allclose(c.schools.shrunk_total, mix.mean)
    np.testing.assert_allclose(c.schools.shrunk_total_sd, mix.sd)
    np.testing.assert_allclose(c.schools.prob_negative_total, mix.prob_negative)
    np.testing.assert_allclose(c.schools.shrunk_total_ci_low, mix.low)
    np.testing.assert_allclose(c.schools.shrunk_total_ci_high, mix.high)
    _, _, _, _, rel = blup(y, V, c.tau2_total)
    np.testing.assert_allclose(c.schools.reliability_total, rel)
    # δ²'s rule: σ²'s 65 nodes for it too move the interval by far less than its width
    monkeypatch.setattr(P, "PLACEBO_RULE", {})
    fine = P.predictive(y, V, *P.variance_nodes(y, V, yp, Vp))[0]
    assert abs(fine[0] - c.pi[0]) + abs(fine[1] - c.pi[1]) < 1e-3 * (c.pi[1] - c.pi[0])


@pytest.mark.slow
@pytest.mark.parametrize("tau, delta", [(0.0, 0.10), (0.15, 0.10), (0.08, 0.0)])
def test_meta_level_coverage_with_known_covariances(tau, delta):
    """benchmarks/sim_school_meta.py at reduced size, with synthetic covariances of the size
    pleval.estimate produces (15 PL, 60 placebo schools): prediction interval and shrunken
    intervals within [93%, 97%] up to three Monte Carlo SEs."""
    rng = np.random.default_rng(int(1000 * tau + 100 * delta))
    studies = sim_reps(1200, minimum=300)
    k, m = 15, 60
    designs = [(_cov(rng, k, 0.05), _cov(rng, m, 0.02)) for _ in range(5)]
    pi_cov, shr_cov = [], []
    sd_new = math.hypot(tau, delta)
    for b in range(studies):
        V, Vp = designs[b % 5]
        truth = tau * rng.standard_normal(k) + delta * rng.standard_normal(k)
        y = truth + np.linalg.cholesky(V) @ rng.standard_normal(k)
        yp = delta * rng.standard_normal(m) + np.linalg.cholesky(Vp) @ rng.standard_normal(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = calibrate(np.arange(k), y, V, np.full(k, 60.0), yp, Vp)
        pi_cov.append(stats.norm.cdf(c.pi[1] / sd_new) - stats.norm.cdf(c.pi[0] / sd_new))
        shr_cov.append(np.mean((c.schools.shrunk_total_ci_low <= truth) & (truth <= c.schools.shrunk_total_ci_high)))
    for name, v in (("prediction interval", pi_cov), ("shrunken", shr_cov)):
        mean, se = np.mean(v), np.std(v, ddof=1) / math.sqrt(studies)
        assert 0.93 - 3 * se <= mean <= 0.97 + 3 * se, (name, mean, se)
