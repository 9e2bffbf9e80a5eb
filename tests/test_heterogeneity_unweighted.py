"""The unweighted Q and Hedges' τ² for correlated estimates (pleval.heterogeneity._unweighted),
checked against closed forms (equal variances), an explicit basis of 1⊥, pleval's HE estimator,
Imhof's numerical inversion of the characteristic function and brute-force simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, linalg, stats

from pleval.heterogeneity import meta_analysis
from pleval.heterogeneity._unweighted import UnweightedQ, unweighted_q

from .conftest import sim_reps


def _cov(rng, m, rho=0.2):
    se = rng.uniform(0.08, 0.2, m)
    R = np.full((m, m), rho) + (1 - rho) * np.eye(m)
    return R * np.outer(se, se)


def _imhof_sf(q, c):
    """P(Σ c_i χ²₁ > q) by Imhof's (1961) formula, numerical integration."""
    def f(u):
        theta = 0.5 * np.sum(np.arctan(c * u)) - 0.5 * q * u
        rho = np.prod((1 + (c * u) ** 2) ** 0.25)
        return np.sin(theta) / (u * rho)

    val, _ = integrate.quad(f, 0, np.inf, limit=500, epsabs=1e-11)
    return 0.5 + val / np.pi


def test_equal_variances_closed_form():
    """V = vI: Q₁/(v + τ²) ~ χ²(m − 1) exactly, so the interval and estimate are closed forms."""
    rng = np.random.default_rng(1)
    m, v = 40, 0.01
    y = rng.normal(0, np.sqrt(v + 0.02), m)
    uq = unweighted_q(y, v * np.eye(m))
    q = float(np.sum((y - y.mean()) ** 2))
    assert uq.q == pytest.approx(q, rel=1e-12) and uq.df == m - 1
    np.testing.assert_allclose(uq.beta, v, rtol=1e-10)
    lo, hi = uq.ci(0.95)
    assert lo == pytest.approx(max(0.0, q / stats.chi2.ppf(0.975, m - 1) - v), abs=1e-10)
    assert hi == pytest.approx(q / stats.chi2.ppf(0.025, m - 1) - v, abs=1e-10)
    t2, se = uq.estimate()
    assert t2 == pytest.approx(max(0.0, q / (m - 1) - v), rel=1e-12)
    assert se == pytest.approx(np.sqrt(2 * (m - 1)) * (v + t2) / (m - 1), rel=1e-12)
    for s in (0.0, 0.01, 0.05):  # three-moment approximation exact here
        assert uq.sf(s)[0] == pytest.approx(stats.chi2.sf(q / (v + s), m - 1), abs=1e-12)


def test_eigenvalues_statistic_and_hedges_estimate():
    rng = np.random.default_rng(2)
    m = 25
    V = _cov(rng, m)
    y = 0.3 + rng.normal(0, 0.1, m) + np.linalg.cholesky(V) @ rng.standard_normal(m)
    uq = unweighted_q(y, V)
    N = linalg.null_space(np.ones((1, m)))  # orthonormal basis of 1⊥
    np.testing.assert_allclose(uq.beta, np.linalg.eigvalsh(N.T @ V @ N), rtol=1e-10)
    assert uq.q == pytest.approx(float(np.sum((N.T @ y) ** 2)), rel=1e-12)
    # Hedges' unweighted moment estimator, as pleval's HE with a full covariance
    t2, se = uq.estimate()
    assert t2 > 0
    assert t2 == pytest.approx(meta_analysis(y, np.sqrt(np.diag(V)), "HE", vcov=V).tau2, rel=1e-10)
    M = np.eye(m) - 1 / m
    assert t2 == pytest.approx((y @ M @ y - np.trace(M @ V)) / (m - 1), rel=1e-10)
    S = M @ (V + t2 * np.eye(m))
    assert se == pytest.approx(np.sqrt(2 * np.trace(S @ S)) / (m - 1), rel=1e-10)
    assert uq.information(t2)[0] == pytest.approx(1 / se**2, rel=1e-10)


def test_tail_against_imhof_and_simulation():
    rng = np.random.default_rng(3)
    m = 30
    V = _cov(rng, m, 0.1)
    y = rng.normal(0, 0.15, m)
    uq = unweighted_q(y, V)
    for s in (0.0, 0.005, 0.03):
        exact = _imhof_sf(uq.q, uq.beta + s)
        assert uq.sf(s)[0] == pytest.approx(exact, abs=2e-3)
    # brute force: Q₁ of data drawn from the model, at τ² = 0.01
    L = np.linalg.cholesky(V + 0.01 * np.eye(m))
    Y = rng.standard_normal((40_000, m)) @ L.T
    Q = np.sum((Y - Y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    for q in np.quantile(Q, [0.05, 0.5, 0.95]):
        emp = np.mean(Q > q)
        assert UnweightedQ(q=float(q), beta=uq.beta).sf(0.01)[0] == pytest.approx(
            emp, abs=4 * np.sqrt(emp * (1 - emp) / Q.size) + 2e-3)


def test_confidence_distribution_quantiles_invert_the_tail():
    rng = np.random.default_rng(4)
    m = 60
    V = _cov(rng, m, 0.05)
    y = rng.normal(0, 0.12, m) + np.linalg.cholesky(V) @ rng.standard_normal(m)
    uq = unweighted_q(y, V)
    p = np.array([0.01, 0.025, 0.3, 0.5, 0.9, 0.975])
    qs = uq.quantiles(p)
    assert np.all(np.diff(qs) >= 0)
    pos = qs > 0
    np.testing.assert_allclose(uq.sf(qs[pos]), p[pos], atol=1e-9)
    assert np.all(uq.sf(0.0)[0] >= p[~pos])  # the atom at 0
    assert uq.ci(0.95) == pytest.approx((qs[1], qs[-1]))


def test_quantiles_search_only_roots_above_zero():
    """quantiles bisects only the probabilities below the atom H(0) — each its own search, so
    bit-identical to bisecting every probability and putting 0 where H(0) ≥ p (the straightforward
    form), with probabilities on both sides of the atom and all of them at it."""
    from pleval.heterogeneity._roots import bisect, bracket_above

    rng = np.random.default_rng(9)
    m = 40
    V = _cov(rng, m, 0.05)
    y = rng.normal(0, 0.03, m) + np.linalg.cholesky(V) @ rng.standard_normal(m)
    uq = unweighted_q(y, V)
    h0 = float(uq.sf(0.0)[0])
    assert 0.05 < h0 < 0.95
    for p in ((np.arange(400) + 0.5) / 400, np.array([h0 / 3, h0 / 2])):
        zero = h0 >= p
        hi = bracket_above(lambda t: uq.sf(t) < p, np.full(p.size, max(uq.q / uq.df, float(uq.beta.max()))), zero, 2.0)
        every = np.where(zero, 0.0, bisect(lambda t: uq.sf(t) < p, np.zeros(p.size), hi, 50))
        np.testing.assert_array_equal(uq.quantiles(p), every, strict=True)


def test_interval_robust_to_noise_in_v():
    """With V̂ unbiased but noisy (each variance on 10 df), the unweighted interval keeps its
    level at τ² = 0.005 while the weighted Q-profile over-states the spread (200 estimates)."""
    rng = np.random.default_rng(5)
    m, reps, t2 = 200, sim_reps(400, 100), 0.005
    cover_u, cover_w = [], []
    for _ in range(reps):
        v = rng.uniform(0.01, 0.03, m)
        y = rng.normal(0, np.sqrt(v + t2))
        vhat = v * rng.chisquare(10, m) / 10
        lo, hi = unweighted_q(y, np.diag(vhat)).ci()
        cover_u.append(lo <= t2 <= hi)
        lo, hi = meta_analysis(y, np.sqrt(vhat)).tau2_ci
        cover_w.append(lo <= t2 <= hi)
    assert abs(np.mean(cover_u) - 0.95) < 3 * np.sqrt(0.05 * 0.95 / reps)
    assert np.mean(cover_w) < 0.95 - 3 * np.sqrt(0.05 * 0.95 / reps)


def test_needs_positive_definite_v():
    with pytest.raises(ValueError):
        unweighted_q([0.1, 0.2, 0.3], np.zeros((3, 3)))


def test_chi2_tail_is_scipys():
    """The tail the bisection reads is scipy.stats.chi2.sf's, bit for bit: inside the support,
    at and below 0, at infinity and for NaN, over a wide range of df."""
    from pleval.heterogeneity._unweighted import _chi2_sf

    rng = np.random.default_rng(2)
    x = np.concatenate([rng.gamma(2.0, 50.0, 5000), rng.uniform(0, 1e-3, 50), -rng.random(20),
                        [0.0, -0.0, np.inf, np.nan, 1e-300, 1e300]])
    df = rng.uniform(0.05, 3000.0, len(x))
    np.testing.assert_array_equal(_chi2_sf(x, df), stats.chi2.sf(x, df), strict=True)
