"""The exact t reference of CR2 contrasts (pleval.inference.exact_t): the t distribution where it
is one, Imhof's integral by quadrature on the explicit eigenvalues, the Gram matrices of dense
n × n computations, and the null rejection rate by Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from pleval.errors import DesignError
from pleval.inference import ols
from pleval.inference.exact_t import ExactT, df_with_critical


def _imhof_quad(lams: np.ndarray) -> float:
    """P(Σ λ_j χ²_1 > 0) by Imhof's (1961) formula on explicit eigenvalues, adaptive quadrature."""
    lams = lams[np.abs(lams) > 1e-12 * np.abs(lams).max()]

    def f(u):
        return np.sin(0.5 * np.arctan(lams * u).sum()) / (u * np.exp(0.25 * np.log1p((lams * u) ** 2).sum()))

    return 0.5 + integrate.quad(f, 0, np.inf, limit=500)[0] / np.pi


def _sf_explicit(beta, b, P, x):
    """P(|T| > x) from the eigenvalues of (aa' − x² QQ') via the (G+1) Gram of [a, Q]."""
    B = np.block([[np.array([[beta]]), b[None, :]], [b[:, None], P]])
    L = np.linalg.cholesky(B + 1e-13 * np.trace(B) * np.eye(len(B)))
    C = np.r_[1.0, -x**2 * np.ones(len(b))]
    return _imhof_quad(np.linalg.eigvalsh((L.T * C) @ L))


@pytest.mark.parametrize("G", [1, 2, 3, 7, 40, 400])
def test_equal_clusters_independent_of_the_estimate_give_t(G):
    """c'V̂c = Σ of G equal χ²_1 independent of the estimate: T is t with G df exactly."""
    ref = ExactT(np.full(G, 1.0 / G), np.zeros(G), 1.0)
    for x in (0.3, 1.0, 2.5, 6.0):
        assert ref.sf(x) == pytest.approx(2 * stats.t.sf(x, G), abs=1e-13)
    assert ref.critical(0.95) == pytest.approx(stats.t.ppf(0.975, G), rel=1e-9)
    assert ref.critical(0.90) == pytest.approx(stats.t.ppf(0.95, G), rel=1e-9)
    assert df_with_critical(ref.critical(0.95)) == pytest.approx(G, rel=1e-6)


@pytest.mark.parametrize("G", [1, 3])
@pytest.mark.parametrize("c", [1e-6, 1e4])
def test_critical_values_and_tails_beyond_the_shared_grid(G, c):
    """T = t_G/√c when the variance estimate is c·χ²_G/G independent of the estimate: critical
    values above (c = 10⁻⁶) and below (c = 10⁴) the x range of the shared grid are found on grids
    of their own, and sf there is Student's."""
    ref = ExactT(np.full(G, c / G), np.zeros(G), 1.0)
    crit = ref.critical(0.95)
    assert crit > 256 if c < 1 else crit < 0.25
    assert crit == pytest.approx(stats.t.ppf(0.975, G) / np.sqrt(c), rel=1e-9)
    for x in (0.5 * crit, crit, 3.0 * crit):
        assert ref.sf(x) == pytest.approx(2 * stats.t.sf(x * np.sqrt(c), G), abs=1e-12)


def test_sf_equals_imhof_by_quadrature():
    rng = np.random.default_rng(3)
    for G in (2, 5, 30):
        Q = rng.normal(size=(200, G)) * rng.gamma(0.5, size=G)  # clusters of very unequal weight
        a = rng.normal(size=200) + Q @ rng.normal(size=G) * 0.3  # correlated with the q_g
        beta, b, P = a @ a, Q.T @ a, Q.T @ Q
        ref = ExactT.from_gram(beta, b, P)
        for x in (0.5, 1.7, 3.0) + ((8.0,) if G < 30 else ()):  # quad loses tails of 1e-14
            assert ref.sf(x) == pytest.approx(_sf_explicit(beta, b, P, x), abs=1e-9)


def _design(seed, G=8, treated=2):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(8, 30, G)
    cl = np.repeat(np.arange(G), sizes)
    n = cl.size
    D = (cl < treated).astype(float)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), D, x, D * (x > 0)])
    w = np.where(D == 1, 1.0, rng.gamma(2.0, 0.5, n))  # ATT-style weights, not precisions
    return X, w, cl


def _dense_q(R, B, Z, Mc, cl):
    """``q_g = R_{g·}'A_g Z_g Mc`` with ``A_g = (B_gg)^{+1/2}`` inverted, one column per cluster."""
    Q = []
    for g in np.unique(cl):
        ix = np.flatnonzero(cl == g)
        lam, V = np.linalg.eigh(B[np.ix_(ix, ix)])
        A = (V * np.where(lam > 1e-10, lam, np.inf) ** -0.5) @ V.T
        Q.append(R[ix].T @ (A @ (Z[ix] @ Mc)))
    return np.array(Q).T


def _dense_club(X, w, cl, c):
    """clubSandwich's weighted CR2 by n × n matrices: a (c'β̂ = a'y) and q_g (c'V̂c = Σ(q_g'y)²)."""
    XW = X * w[:, None]
    M = np.linalg.inv(X.T @ XW)
    R = np.eye(len(w)) - X @ M @ XW.T
    return XW @ M @ c, _dense_q(R, R @ R.T, XW, M @ c, cl)


def _dense_transformed(X, w, cl, c):
    """The transformed CR2 (of √w y on √w X) by n × n matrices, in the transformed metric."""
    Xt = X * np.sqrt(w)[:, None]
    M = np.linalg.inv(Xt.T @ Xt)
    R = np.eye(len(w)) - Xt @ M @ Xt.T
    return Xt @ M @ c, _dense_q(R, R, Xt, M @ c, cl)


@pytest.mark.parametrize("form", ["clubsandwich", "transformed"])
def test_gram_equals_dense(form):
    X, w, cl = _design(1)
    y = np.random.default_rng(2).normal(size=len(w))
    fit = ols(y, X, weights=w, clusters=cl, cr2=form)
    dense = _dense_club if form == "clubsandwich" else _dense_transformed
    for c in (np.array([0, 1.0, 0, 0]), np.array([0, 1.0, 0, 0.5])):
        a, Q = dense(X, w, cl, c)
        beta, b, P = fit.cr2_blocks.gram(c)
        yt = y if form == "clubsandwich" else y * np.sqrt(w)
        assert np.sum((Q.T @ yt) ** 2) == pytest.approx(c @ fit.vcov @ c, rel=1e-9)
        assert a @ yt == pytest.approx(c @ fit.params, rel=1e-9)
        assert beta == pytest.approx(a @ a, rel=1e-10)
        np.testing.assert_allclose(b, Q.T @ a, atol=1e-10 * np.abs(Q.T @ a).max() + 1e-14)
        np.testing.assert_allclose(P, Q.T @ Q, atol=1e-10 * np.abs(P).max())
        ref = fit.exact_t(c)
        assert ref.sf(2.0) == pytest.approx(_sf_explicit(a @ a, Q.T @ a, Q.T @ Q, 2.0), abs=1e-9)


def test_gram_under_the_random_effect_working_model_equals_dense():
    """A fit whose df take the school random effect (``df_working="random_effects"``, transformed
    form): its Gram matrices are those of ``Φ = I + ρΣ_c v_cv_c'`` (v = √w on cluster c's rows)
    by n × n matrices, their Satterthwaite df ``(tr P)²/‖P‖²`` are the fit's, and the exact
    reference uses them."""
    X, w, cl = _design(3)
    rng = np.random.default_rng(2)
    y = rng.normal(size=len(w)) + 0.7 * rng.normal(size=8)[cl]
    fit = ols(y, X, weights=w, clusters=cl, df_working="random_effects")
    rho = fit.cr2_blocks.rho
    assert rho > 0.1
    V = np.zeros((len(w), 8))
    V[np.arange(len(w)), cl] = np.sqrt(w)
    Phi = np.eye(len(w)) + rho * V @ V.T
    for c in (np.array([0, 1.0, 0, 0]), np.array([0, 1.0, 0, 0.5])):
        a, Q = _dense_transformed(X, w, cl, c)
        beta, b, P = fit.cr2_blocks.gram(c)
        assert beta == pytest.approx(a @ Phi @ a, rel=1e-10)
        np.testing.assert_allclose(b, Q.T @ Phi @ a, atol=1e-10 * np.abs(b).max())
        np.testing.assert_allclose(P, Q.T @ Phi @ Q, atol=1e-10 * np.abs(P).max())
        assert np.trace(P) ** 2 / np.sum(P * P) == pytest.approx(fit.contrast(c)[2], rel=1e-9)
        want = _sf_explicit(a @ Phi @ a, Q.T @ Phi @ a, Q.T @ Phi @ Q, 2.0)
        assert fit.exact_t(c).sf(2.0) == pytest.approx(want, abs=1e-9)
        assert abs(want - _sf_explicit(a @ a, Q.T @ a, Q.T @ Q, 2.0)) > 1e-3  # the working model matters here


@pytest.mark.parametrize("n", [3, 30, 400])
def test_the_integral_left_beyond_the_range_is_negligible(n):
    """Imhof's integral stops where the bound on the integrand says the rest is below 4e⁻⁴⁰
    (``ExactT._upper``): integrated by explicit eigenvalues of the quadratic form from there to
    the far end used for one eigenvalue, ``|integrand|`` adds less than 1e-15."""
    rng = np.random.default_rng(n)
    lam = rng.gamma(0.7, size=n)
    alpha = rng.normal(size=n) * 0.3 * np.sqrt(lam)
    tot = alpha @ alpha + 0.5
    ref = ExactT(lam / tot, alpha / np.sqrt(tot), 0.5 / tot)
    for x in (0.5, 2.0, 6.0):
        lx = ref.lam * x * x
        cut, end = ExactT._upper(lx), -np.log(min(lx.min(), 1.0)) + 80.0
        assert cut < end - 5.0
        A = np.outer(np.r_[ref.alpha, np.sqrt(ref.alpha_perp2)], np.r_[ref.alpha, np.sqrt(ref.alpha_perp2)])
        A[np.arange(n), np.arange(n)] -= lx
        mu = np.linalg.eigvalsh(A)
        s = np.linspace(cut, end, 20_001)
        u = np.exp(s)[:, None]
        size = np.exp(-0.25 * np.log1p((u * mu) ** 2).sum(axis=1))  # ≥ |sin θ|/ρ, per ds
        assert np.trapezoid(size, s) < 1e-15


def test_null_rejections_are_nominal_by_monte_carlo():
    """Two treated clusters of eight, weights that are not precisions, iid errors (the working
    model of clubSandwich's form): 20,000 null draws of T reject at the exact 5% multiplier in
    5% ± 3.3 MC SE (here Satterthwaite's df reject 2.0%, those of the transformed form 0.7%)."""
    X, w, cl = _design(4)
    c = np.array([0, 1.0, 0, 0])
    a, Q = _dense_club(X, w, cl, c)
    y0 = np.random.default_rng(5).normal(size=len(w))
    club = ols(y0, X, weights=w, clusters=cl, cr2="clubsandwich")
    crit = club.exact_t(c).critical(0.95)
    E = np.random.default_rng(6).normal(size=(len(w), 20_000))
    t = (a @ E) / np.sqrt(((Q.T @ E) ** 2).sum(axis=0))
    rate = np.mean(np.abs(t) > crit)
    assert abs(rate - 0.05) <= 3.3 * np.sqrt(0.05 * 0.95 / E.shape[1]), rate


def test_needs_cr2_without_absorbed_effects():
    X, w, cl = _design(7)
    y = np.random.default_rng(8).normal(size=len(w))
    with pytest.raises(DesignError, match="CR2 fit without absorbed effects"):
        ols(y, X, weights=w, clusters=cl, vcov="CR1").exact_t(np.eye(4)[1])
    groups = (cl // 2).astype(int)
    fit = ols(y, X[:, 1:], clusters=cl, absorb=groups)
    with pytest.raises(DesignError, match="CR2 fit without absorbed effects"):
        fit.exact_t(np.eye(3)[0])


def test_degenerate_contrast_is_refused():
    with pytest.raises(DesignError, match="identically 0"):
        ExactT.from_gram(0.0, np.zeros(3), np.eye(3))
    with pytest.raises(DesignError, match="identically 0"):
        ExactT.from_gram(1.0, np.zeros(3), np.zeros((3, 3)))


def test_df_with_critical_inverts_the_t_quantile():
    for v in (1.3, 2.0, 7.5, 120.0):
        assert df_with_critical(stats.t.ppf(0.975, v)) == pytest.approx(v, rel=1e-6)
    assert df_with_critical(1.5) == np.inf
    assert df_with_critical(np.inf) == 0.0
    assert optimize.brentq(lambda x: ExactT(np.ones(2) / 2, np.zeros(2), 1.0).sf(x) - 0.05, 0.1, 50) == pytest.approx(
        stats.t.ppf(0.975, 2), rel=1e-8)
