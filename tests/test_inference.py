"""Robust least squares: against statsmodels, a direct n×n CR2, Stata/R numbers, simulation."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import linalg, stats

from pleval import DataError, DesignError
from pleval.inference import adjust_pvalues, ols

from .conftest import sim_reps
from .test_heterogeneity_school_effects import dense_hc2_df


def _clustered(seed=1, G=9, weights=False):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, G)
    cl = np.repeat(np.arange(G), sizes)
    n = cl.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), (cl % 2).astype(float), rng.normal(size=n) * (cl % 3)])
    y = X @ [1.0, 2.0, 0.5, -0.3] + rng.normal(size=n) * (1 + cl % 2) + rng.normal(size=G)[cl]
    w = rng.uniform(0.3, 3.0, n) if weights else None
    return y, X, cl, w


def _direct_cr2(y, X, cl, w=None):
    """The obvious O(n²) CR2 with Satterthwaite df (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018)."""
    w = np.ones(len(y)) if w is None else w
    Xt, yt = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    M = np.linalg.inv(Xt.T @ Xt)
    H = Xt @ M @ Xt.T
    e = yt - H @ yt
    n, k = X.shape
    IH = np.eye(n) - H
    meat = np.zeros((k, k))
    adj = []
    for g in np.unique(cl):
        i = cl == g
        A = linalg.fractional_matrix_power(np.eye(i.sum()) - H[np.ix_(i, i)], -0.5).real
        adj.append((i, A))
        v = Xt[i].T @ A @ e[i]
        meat += np.outer(v, v)
    V = M @ meat @ M
    dfs = []
    for j in range(k):
        Q = []
        for i, A in adj:
            p = np.zeros(n)
            p[i] = A @ Xt[i] @ M[:, j]
            Q.append(IH @ p)
        Q = np.array(Q)
        Om = Q @ Q.T
        dfs.append(np.trace(Om) ** 2 / np.sum(Om**2))
    return V, np.array(dfs)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cr2_matches_direct_matrix_implementation(seed, weighted):
    y, X, cl, w = _clustered(seed, weights=weighted)
    fit = ols(y, X, clusters=cl, weights=w, vcov="CR2")
    V, dfs = _direct_cr2(y, X, cl, w)
    np.testing.assert_allclose(fit.vcov, V, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.df, dfs, rtol=1e-8)
    c = np.array([0.0, 1.0, -1.0, 0.5])
    V_c = c @ V @ c
    assert fit.contrast(c)[1] == pytest.approx(np.sqrt(V_c), rel=1e-9)


def _direct_random_effects_df(y, X, cl, w, j):
    """The Satterthwaite df of coefficient j under the working model I + ρvv' within clusters
    (v = √w), ρ by the residual moments, all as dense n × n matrices."""
    w = np.ones(len(y)) if w is None else w
    v = np.sqrt(w)
    Xt, yt = X * v[:, None], y * v
    M = np.linalg.inv(Xt.T @ Xt)
    H = Xt @ M @ Xt.T
    e = yt - H @ yt
    same = cl[:, None] == cl[None, :]
    J = np.where(same, v[:, None] * v[None, :], 0.0)
    IH = np.eye(len(y)) - H
    # ρ: ẽ'ẽ and Σ_g (v_g'ẽ_g)² = ẽ'Jẽ set to their expectations σ² tr(R(I + ρJ)R'), R = I − H
    O1, O2 = e @ e, e @ J @ e
    A1, B1 = np.trace(IH @ IH.T), np.trace(IH @ J @ IH.T)
    A2, B2 = np.trace(J @ IH @ IH.T), np.trace(J @ IH @ J @ IH.T)
    rho = max(0.0, (O2 * A1 - O1 * A2) / (O1 * B2 - O2 * B1))
    Omega = np.eye(len(y)) + rho * J
    Q = []
    for g in np.unique(cl):
        i = cl == g
        A = linalg.fractional_matrix_power(np.eye(i.sum()) - H[np.ix_(i, i)], -0.5).real
        p = np.zeros(len(y))
        p[i] = A @ Xt[i] @ M[:, j]
        Q.append(IH @ p)
    Q = np.array(Q)
    P = Q @ Omega @ Q.T
    return np.trace(P) ** 2 / np.sum(P**2), rho


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cr2_random_effects_df_matches_direct_matrix_implementation(seed, weighted):
    """``df_working="random_effects"``: the df of every coefficient equal the dense computation
    (intercept first, or last, whose cluster sums are then formed from the rows; centred);
    the SEs are those of the independence working model, and ρ = 0 gives its df."""
    from pleval.inference.robust import random_effects_ratio

    y, X, cl, w = _clustered(seed, G=12, weights=weighted)
    y = y + 2.0 * np.random.default_rng(seed).normal(size=12)[cl]  # clearly correlated within clusters
    base = ols(y, X, clusters=cl, weights=w, vcov="CR2")
    fit = ols(y, X, clusters=cl, weights=w, vcov="CR2", df_working="random_effects")
    np.testing.assert_allclose(fit.se, base.se, rtol=1e-12)
    direct = [_direct_random_effects_df(y, X, cl, w, j) for j in range(X.shape[1])]
    assert direct[0][1] > 0.05
    np.testing.assert_allclose(fit.df, [d for d, _ in direct], rtol=1e-8)
    assert not np.allclose(fit.df, base.df, rtol=1e-3)
    last = ols(y, X[:, ::-1], clusters=cl, weights=w, vcov="CR2", df_working="random_effects")
    np.testing.assert_allclose(last.df[::-1], fit.df, rtol=1e-8)
    centred = ols(y, X, clusters=cl, weights=w, vcov="CR2", df_working="random_effects",
                  center=np.r_[0.0, X[:, 1:].mean(axis=0)])
    np.testing.assert_allclose(centred.df[1:], fit.df[1:], rtol=1e-8)
    # residuals negatively correlated within clusters (pairs of +1, −1, an intercept only): ρ = 0
    pairs, one = np.repeat(np.arange(6), 2), np.ones((6, 1)) * 2.0
    assert random_effects_ratio(np.resize([1.0, -1.0], 12), np.ones(12), pairs, 6, one, np.eye(1) / 12) == 0.0
    # perfectly correlated (pairs of equal residuals): no within-cluster variance left, ρ = ∞
    equal = np.resize([1.0, 1.0, -1.0, -1.0], 12)
    assert random_effects_ratio(equal, np.ones(12), pairs, 6, one, np.eye(1) / 12) == np.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cr2_random_effects_df_with_absorbed_groups(seed):
    """``df_working="random_effects"`` with group indicators absorbed (clusters nested in 7
    groups, one a single cluster): ρ and every contrast's df equal those of the fit with the
    indicators as columns, and the dense n × n computation; the same SEs; and they differ from
    the independence working model's."""
    rng = np.random.default_rng(seed)
    per = np.r_[1, rng.integers(2, 5, 6)]
    group_of = np.repeat(np.arange(7), per)
    G = group_of.size
    cl = np.repeat(np.arange(G), rng.integers(3, 12, G))
    grp, n = group_of[cl], cl.size
    t = np.zeros(G)
    for b in range(7):
        idx = np.flatnonzero(group_of == b)
        t[rng.choice(idx, max(1, idx.size // 2), replace=False)] = 1.0
    x = rng.normal(size=n) + 0.3 * grp
    y = 0.2 * t[cl] + 0.5 * x + 0.8 * rng.normal(size=G)[cl] + rng.normal(size=7)[grp] + rng.normal(size=n)
    X = np.column_stack([t[cl], x])
    absorbed = ols(y, X, clusters=cl, absorb=grp, vcov="CR2", df_working="random_effects")
    indep = ols(y, X, clusters=cl, absorb=grp, vcov="CR2")
    D = np.eye(7)[grp]
    full = ols(y, np.column_stack([D, X]), clusters=cl, vcov="CR2", df_working="random_effects")
    assert absorbed.cr2_blocks.rho > 0.05
    assert absorbed.cr2_blocks.rho == pytest.approx(full.cr2_blocks.rho, rel=1e-10)
    np.testing.assert_allclose(absorbed.se, indep.se, rtol=1e-12)
    np.testing.assert_allclose(absorbed.params, full.params[7:], rtol=1e-10)
    for c in ([1.0, 0.0], [0.0, 1.0], [1.0, -0.5]):
        df = absorbed._contrast_df(np.array(c))
        assert df == pytest.approx(full._contrast_df(np.r_[np.zeros(7), c]), rel=1e-10)
        assert abs(df / indep._contrast_df(np.array(c)) - 1) > 0.01
    # the dense computation (its I − H_gg^{-1/2} needs no group of one cluster, whose mean its indicator fits)
    keep = grp > 0
    codes = np.unique(grp[keep], return_inverse=True)[1]
    fit = ols(y[keep], X[keep], clusters=cl[keep], absorb=codes, vcov="CR2", df_working="random_effects")
    direct, rho = _direct_random_effects_df(y[keep], np.column_stack([np.eye(6)[codes], X[keep]]), cl[keep], None, 6)
    assert fit.df[0] == pytest.approx(direct, rel=1e-8) and fit.cr2_blocks.rho == pytest.approx(rho, rel=1e-8)


def test_cr1_equals_statsmodels_and_cr0():
    y, X, cl, _ = _clustered(7, G=12)
    sm_fit = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": cl, "use_correction": True})
    fit = ols(y, X, clusters=cl, vcov="CR1")
    np.testing.assert_allclose(fit.params, sm_fit.params, rtol=1e-10)
    np.testing.assert_allclose(fit.vcov, sm_fit.cov_params(), rtol=1e-9)
    assert np.all(fit.df == 11)
    sm0 = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": cl, "use_correction": False})
    np.testing.assert_allclose(ols(y, X, clusters=cl, vcov="CR0").vcov, sm0.cov_params(), rtol=1e-9)


def test_weighted_cr1_equals_statsmodels_wls():
    y, X, cl, w = _clustered(8, G=15, weights=True)
    sm_fit = sm.WLS(y, X, weights=w).fit(cov_type="cluster", cov_kwds={"groups": cl})
    fit = ols(y, X, weights=w, clusters=cl, vcov="CR1")
    np.testing.assert_allclose(fit.params, sm_fit.params, rtol=1e-10)
    np.testing.assert_allclose(fit.se, sm_fit.bse, rtol=1e-9)


def test_rows_and_clusters_of_weight_zero_count_for_nothing():
    """Rows of weight 0 counted in n, and clusters of them in G: classical, HC1 and CR1 (and every
    df but CR2's) changed when they were added (the classical SE 20% too small, CR1 11 df from 10
    clusters with information). As R's lm, they now count for nothing: the fit is statsmodels'
    WLS on the rows of positive weight, with n₊ − k (and G₊ − 1) df; HC2 Bell & McCaffrey's df of
    those rows."""
    y, X, cl, w = _clustered(8, G=12, weights=True)
    rng = np.random.default_rng(1)
    w = np.where((cl >= 10) | (rng.random(len(w)) < 0.2), 0.0, w)
    keep = w > 0
    n_pos, g_pos, k = int(keep.sum()), len(np.unique(cl[keep])), X.shape[1]
    assert (n_pos, g_pos) == (keep.sum(), 10) and n_pos < len(y)
    wls = sm.WLS(y[keep], X[keep], weights=w[keep])
    for kind, fit_kw, df in [("CR1", dict(cov_type="cluster", cov_kwds={"groups": cl[keep]}), g_pos - 1),
                             ("HC1", dict(cov_type="HC1"), n_pos - k), ("HC2", dict(cov_type="HC2"), n_pos - k),
                             ("classical", {}, n_pos - k)]:
        fit = ols(y, X, weights=w, clusters=cl if kind == "CR1" else None, vcov=kind)
        ref = wls.fit(**fit_kw)
        np.testing.assert_allclose(fit.se, ref.bse, rtol=1e-9)
        if kind == "HC2":  # Bell & McCaffrey's df of the rows of positive weight
            df = [dense_hc2_df(X[keep], w[keep], j) for j in range(k)]
        np.testing.assert_allclose(fit.df, df, rtol=1e-9)
        assert fit.n == n_pos
        assert fit.n_clusters == (g_pos if kind == "CR1" else None)
    # CR2 (either working model of its df): the fit on the rows of positive weight alone
    for dfw in ("independent", "random_effects"):
        a = ols(y, X, weights=w, clusters=cl, df_working=dfw)
        b = ols(y[keep], X[keep], weights=w[keep], clusters=cl[keep], df_working=dfw)
        np.testing.assert_allclose(a.se, b.se, rtol=1e-12)
        np.testing.assert_allclose(a.df, b.df, rtol=1e-9)
    one = np.column_stack([np.ones(len(y)), rng.normal(size=len(y))])
    with pytest.raises(DesignError, match="at least 2 clusters with positive weight; the data have 1"):
        ols(y, one, weights=np.where(cl == 0, 1.0, 0.0), clusters=cl, vcov="CR1")


@pytest.mark.parametrize("kind", ["HC0", "HC1", "HC2"])
def test_hc_equals_statsmodels(kind):
    y, X, _, _ = _clustered(4, G=20)
    sm_fit = sm.OLS(y, X).fit(cov_type=kind)
    fit = ols(y, X, vcov=kind)
    np.testing.assert_allclose(fit.vcov, sm_fit.cov_params(), rtol=1e-9)
    classical = ols(y, X, vcov="classical")
    np.testing.assert_allclose(classical.vcov, sm.OLS(y, X).fit().cov_params(), rtol=1e-9)


def test_hc2_df_are_bell_and_mccaffreys_from_the_dense_matrices():
    """HC2's df of every coefficient and of a contrast are Bell & McCaffrey's Satterthwaite df,
    (tr AM)² / tr(AMAM) from the n × n matrices (n − k before 2026-12-05): unweighted, weighted
    with rows of weight 0, and with group indicators absorbed (against the fit with them); HC1
    and classical keep n − k."""
    rng = np.random.default_rng(5)
    n = 60
    z = (rng.random(n) < 0.15).astype(float)
    x = rng.normal(size=n)
    g = rng.integers(0, 5, n)
    y = rng.normal(size=n)
    w = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.3, 3.0, n))
    D = np.eye(5)[g][:, 1:]
    X = np.column_stack([np.ones(n), z, x, D])
    c = np.array([0.0, 1.0, -0.5, 0.0, 0.0, 0.0, 0.0])
    keep = w > 0
    for wt in (None, w):
        fit = ols(y, X, vcov="HC2", weights=wt)
        Xd, wd = (X, np.ones(n)) if wt is None else (X[keep], w[keep])
        np.testing.assert_allclose(fit.df, [dense_hc2_df(Xd, wd, j) for j in range(X.shape[1])], rtol=1e-9)
        assert fit.contrast(c)[2] == pytest.approx(dense_hc2_df(Xd, wd, c), rel=1e-9)
        absorbed = ols(y, X[:, 1:3], vcov="HC2", weights=wt, absorb=g)
        np.testing.assert_allclose(absorbed.df, [dense_hc2_df(Xd, wd, j) for j in (1, 2)], rtol=1e-9)
        assert absorbed.contrast(c[1:3])[2] == pytest.approx(dense_hc2_df(Xd, wd, c), rel=1e-9)
    assert min(fit.df) < 20  # far from n − k = 47 here
    for kind in ("HC1", "classical"):
        assert np.all(ols(y, X, vcov=kind).df == n - X.shape[1])


def test_hc2_test_holds_its_level_with_few_treated():
    """200 students, 8 of them treated, the treated outcomes' SD twice the others', no effect:
    the HC2 test of the treatment on Bell & McCaffrey's df rejects about 5% (4.9% of 10,000
    trials, benchmarks/sim_hc2_df.py); on n − k = 197 df (before 2026-12-05) it rejected 8.7% (9.2% at this seed)."""
    rng = np.random.default_rng(20261205)
    reps, n = sim_reps(8000), 200
    rejected = 0
    for _ in range(reps):
        z = np.zeros(n)
        z[rng.choice(n, 8, replace=False)] = 1.0
        x = rng.normal(size=n)
        y = 0.5 * x + rng.normal(size=n) * np.where(z == 1, 2.0, 1.0)
        rejected += ols(y, np.column_stack([np.ones(n), z, x]), vcov="HC2").coef("x1")[3] < 0.05
    assert abs(rejected / reps - 0.05) < 3 * np.sqrt(0.05 * 0.95 / reps), rejected / reps


def test_hc2_wald_test_is_htz_with_each_row_its_own_cluster():
    """An HC2 fit's test of several constraints is HTZ (its default; a Wald F on n − k − A before
    2026-12-05) and equals the HTZ test of the CR2 fit with each row its own cluster (the same
    covariance, computed by the cluster path): unweighted, weighted with rows of weight 0, and with
    groups absorbed. For one constraint it is the contrast's t test: F = t², df2 its Bell &
    McCaffrey df."""
    rng = np.random.default_rng(8)
    n = 90
    z = (rng.random(n) < 0.15).astype(float)
    x = rng.normal(size=(n, 2))
    g = rng.integers(0, 6, n)
    y = rng.normal(size=n) * np.where(z == 1, 2.0, 1.0)
    w = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.3, 3.0, n))
    X = np.column_stack([np.ones(n), z, x, z * x[:, 0]])
    R = np.eye(5)[[1, 2, 4]]
    fits = [(ols(y, X, vcov="HC2", weights=wt), ols(y, X, vcov="CR2", clusters=np.arange(n), weights=wt), R)
            for wt in (None, w)]
    fits.append((ols(y, X[:, 1:], vcov="HC2", absorb=g),
                 ols(y, X[:, 1:], vcov="CR2", clusters=np.arange(n), absorb=g), R[:, 1:]))
    for hc2, cr2, C in fits:
        np.testing.assert_allclose(hc2.vcov, cr2.vcov, rtol=1e-9)
        a, b = hc2.wald_test(C), cr2.wald_test(C)
        assert a.test == "HTZ" and a.df2 == pytest.approx(b.df2, rel=1e-9) and a.df2 < 30 < n - 5
        assert a.F == pytest.approx(b.F, rel=1e-9) and a.pvalue == pytest.approx(b.pvalue, rel=1e-9)
        est, se, df, p = hc2.contrast(C[0])
        one = hc2.wald_test(C[0])
        assert one.F == pytest.approx((est / se) ** 2, rel=1e-9) and one.df2 == pytest.approx(df, rel=1e-9)
        assert one.pvalue == pytest.approx(p, rel=1e-9)


@pytest.mark.slow
def test_hc2_wald_test_of_several_constraints_holds_its_level():
    """Three subgroups of 40 students, 4 treated in each, the treated outcomes' SD twice the
    others', equal effects: the HTZ test of equal effects on an HC2 fit rejects about 5% (5.45%
    of 2,000 trials; the Wald F on n − k, before 2026-12-05, 13.4%)."""
    rng = np.random.default_rng(44)
    reps, L, m = sim_reps(8000), 3, 40
    lev = np.repeat(np.arange(L), m)
    z = np.zeros(L * m)
    z[(np.arange(L * m) % m) < 4] = 1.0
    X = np.column_stack([np.ones(L * m), lev[:, None] == np.arange(1, L), z[:, None] * (lev[:, None] == np.arange(L))])
    R = np.zeros((L - 1, X.shape[1]))
    R[:, L] = -1.0
    R[np.arange(L - 1), L + 1 + np.arange(L - 1)] = 1.0
    rejected = 0
    for _ in range(reps):
        y = rng.normal(size=L * m) * np.where(z == 1, 2.0, 1.0)
        rejected += ols(y, X, vcov="HC2").wald_test(R).pvalue < 0.05
    assert abs(rejected / reps - 0.05) < 3 * np.sqrt(0.05 * 0.95 / reps), rejected / reps


def test_grunfeld_published_numbers():
    """Grunfeld, first 10 firms: Stata vce(cluster) SEs; CR2 lies between CR1 and CRV3 (summclust)."""
    from statsmodels.datasets import grunfeld

    d = grunfeld.load_pandas().data
    d = d[d.firm.isin(d.firm.unique()[:10])]
    assert len(d) == 200
    X = np.column_stack([d.value, d.capital, np.ones(len(d))])
    cr1 = ols(d.invest, X, clusters=d.firm, vcov="CR1")
    np.testing.assert_allclose(cr1.params, [0.11556216, 0.23067849, -42.714369], rtol=1e-6)
    np.testing.assert_allclose(cr1.se, [0.01589434, 0.08496711, 20.425203], rtol=1e-6)
    # summclust's CRV3 is the jackknife (G-1)/G * sum (b_-g - b)(b_-g - b)': reproduce it.
    y, cl, G = d.invest.to_numpy(), d.firm.to_numpy(), 10
    b_minus = np.array([np.linalg.lstsq(X[cl != g], y[cl != g], rcond=None)[0] for g in np.unique(cl)])
    dev = b_minus - cr1.params
    crv3 = np.sqrt(np.diag((G - 1) / G * dev.T @ dev))
    np.testing.assert_allclose(crv3, [0.01612997, 0.14733088, 34.813382], rtol=1e-6)
    # CR2 (A_g = (I-H_gg)^-1/2) lies between CR0 and CR3 (A_g = (I-H_gg)^-1, no (G-1)/G factor).
    # With the factor, CRV3 is 0.7% below CR2 for `value`, so "between CR1 and CRV3" holds for
    # capital and the constant only.
    cr2 = ols(d.invest, X, clusters=d.firm, vcov="CR2")
    assert np.all(cr2.se > ols(d.invest, X, clusters=d.firm, vcov="CR0").se)
    assert np.all(cr2.se < crv3 * np.sqrt(G / (G - 1)))
    assert np.all(cr2.se[1:] < crv3[1:]) and np.all(cr2.se[1:] > cr1.se[1:])
    assert np.all(cr2.df < 9) and np.all(cr2.df > 1)


def test_dataframe_names_and_accessors():
    y, X, cl, _ = _clustered(5)
    Xdf = pd.DataFrame(X, columns=["const", "treat", "pre", "z"])
    fit = ols(y, Xdf, clusters=cl)
    est, se, df, p = fit.coef("treat")
    assert est == fit.params[1] and se == fit.se[1] and df == fit.df[1]
    frame = fit.to_frame()
    assert list(frame.index) == ["const", "treat", "pre", "z"]
    assert frame.loc["treat", "ci_low"] < est < frame.loc["treat", "ci_high"]
    assert "CR2" in fit.summary()
    with pytest.raises(KeyError):
        fit.coef("nope")


def test_errors():
    y, X, cl, _ = _clustered(6)
    with pytest.raises(DataError, match="cluster"):
        ols(y, X, vcov="CR2")
    with pytest.raises(DesignError, match="at least 2 clusters"):
        ols(y, X, clusters=np.zeros(len(y)), vcov="CR1")
    with pytest.raises(DesignError, match="collinear"):
        ols(y, np.column_stack([X, X[:, 1]]), clusters=cl)
    y2 = y.copy()
    y2[3] = np.nan
    with pytest.raises(DataError, match="1 row"):
        ols(y2, X, clusters=cl)
    with pytest.raises(DataError, match="vcov"):
        ols(y, X, vcov="HC9")


def _pinv_sqrt(A):
    """Moore–Penrose inverse square root of a symmetric PSD matrix (clubSandwich's Sym_power)."""
    lam, W = np.linalg.eigh(A)
    return (W * np.where(lam > 1e-12, np.clip(lam, 1e-300, None) ** -0.5, 0.0)) @ W.T


def test_cr2_with_cluster_fixed_effects_uses_pseudo_inverse():
    """Students randomized within schools, school fixed effects, SEs clustered by school: every
    cluster's leverage reaches 1 in its fixed effect's direction. CR2 then uses the
    pseudo-inverse root of I − H_gg (clubSandwich); checked against the n×n computation."""
    rng = np.random.default_rng(11)
    G = 10
    sizes = rng.integers(6, 15, G)
    cl = np.repeat(np.arange(G), sizes)
    n = cl.size
    t = rng.integers(0, 2, n).astype(float)
    x = rng.normal(size=n)
    fe = (cl[:, None] == np.arange(1, G)[None, :]).astype(float)
    X = np.column_stack([np.ones(n), t, x, fe])
    y = 0.3 * t + 0.5 * x + rng.normal(0, 0.5, G)[cl] + rng.normal(size=n) * (1 + t)
    w = rng.uniform(0.5, 2.0, n)
    fit = ols(y, X, clusters=cl, weights=w, vcov="CR2")
    Xt, yt = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    M = np.linalg.inv(Xt.T @ Xt)
    H = Xt @ M @ Xt.T
    e = yt - H @ yt
    IH = np.eye(n) - H
    adj = {g: _pinv_sqrt(IH[np.ix_(cl == g, cl == g)]) for g in range(G)}
    assert min(np.linalg.eigvalsh(IH[np.ix_(cl == g, cl == g)]).min() for g in range(G)) < 1e-10  # leverage 1
    U = np.array([Xt[cl == g].T @ adj[g] @ e[cl == g] for g in range(G)])
    V = M @ (U.T @ U) @ M
    np.testing.assert_allclose(fit.vcov[:3, :3], V[:3, :3], rtol=1e-8, atol=1e-14)
    Q = []
    for g in range(G):
        p = np.zeros(n)
        p[cl == g] = adj[g] @ Xt[cl == g] @ M[:, 1]
        Q.append(IH @ p)
    Q = np.array(Q)
    Om = Q @ Q.T
    assert fit.coef_df(1) == pytest.approx(np.trace(Om) ** 2 / np.sum(Om**2), rel=1e-8)
    assert np.isfinite(fit.se[1]) and fit.se[1] > 0


@pytest.mark.slow
def test_cr2_false_positive_rate_and_naive_over_rejection():
    """24 schools randomized 12/12, ICC 0.2: CR2+Satterthwaite holds ~5%; naive HC over-rejects."""
    rng = np.random.default_rng(2018)
    reps, G, m = sim_reps(800, minimum=200), 24, 25
    cl = np.repeat(np.arange(G), m)
    rej_cr2 = rej_naive = covered = 0
    for _ in range(reps):
        treat = np.zeros(G)
        treat[rng.permutation(G)[: G // 2]] = 1
        x = rng.normal(size=G * m)
        y = 0.5 * x + rng.normal(0, np.sqrt(0.2), G)[cl] + rng.normal(0, np.sqrt(0.8), G * m)
        X = np.column_stack([np.ones(G * m), treat[cl], x])
        f = ols(y, X, clusters=cl, vcov="CR2")
        rej_cr2 += f.pvalues[1] < 0.05
        lo, hi = f.conf_int()[1]
        covered += lo <= 0 <= hi
        rej_naive += ols(y, X, vcov="HC1").pvalues[1] < 0.05
    se = np.sqrt(0.05 * 0.95 / reps)
    assert abs(rej_cr2 / reps - 0.05) < 3.5 * se + 0.01
    assert covered / reps > 0.93
    assert rej_naive / reps > 0.25


def test_holm_is_statsmodels_to_the_bit_without_its_garbage_collection(monkeypatch):
    """pleval's Holm (statsmodels' runs gc.collect() on every call) gives statsmodels' numbers
    exactly: random p-values with ties, ones and zeros, sizes 1 to 200; and collects nothing."""
    import gc
    from statsmodels.stats.multitest import multipletests

    collected = []
    monkeypatch.setattr(gc, "collect", lambda *a, **k: collected.append(1) or 0)  # (and the loop runs fast)
    rng = np.random.default_rng(7)
    for m in (1, 2, 3, 10, 57, 200):
        for _ in range(20):
            p = np.round(rng.uniform(0, 1, m) ** 3, 2)  # rounding makes ties (and zeros)
            p[rng.random(m) < 0.05] = 1.0
            ours = adjust_pvalues(p, "holm")
            assert len(collected) == 0
            np.testing.assert_array_equal(ours, multipletests(p, method="holm")[1])
            collected.clear()  # statsmodels collected (if it stops, collecting here is no reason left)


def test_bh_and_holm_hand_computed():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # BH, m = 4: sorted 0.01,0.03,0.04,0.20 -> 0.04, 0.0533, 0.0533, 0.20
    np.testing.assert_allclose(adjust_pvalues(p, "bh")[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.20])
    # Holm: 4*0.01=0.04, 3*0.03=0.09, max(0.09, 2*0.04)=0.09, max(.., 0.2)=0.2
    np.testing.assert_allclose(adjust_pvalues(p, "holm")[:4], [0.04, 0.09, 0.09, 0.20])
    assert np.isnan(adjust_pvalues(p)[4])
    s = adjust_pvalues(pd.Series([0.5, 0.01], index=["a", "b"]))
    assert list(s.index) == ["a", "b"]
    with pytest.raises(DataError):
        adjust_pvalues([0.1, 1.5])


def test_ols_names_a_collinear_regressor_even_when_the_factor_does_not_fail():
    """A regressor that is a linear combination of those before it: the Cholesky factor of X'X
    may not fail (rounding leaves a pivot near 1e-16 of the column's sum of squares) and gave
    standard errors of noise; the pivot test names the column (CollinearError.column), exact
    collinearity or a constant alike, while a column far off the intercept (a year) passes."""
    from pleval.errors import DesignError
    from pleval.inference.robust import CollinearError

    rng = np.random.default_rng(5)
    n = 400
    g = rng.integers(0, 3, n)
    dummies = (g[:, None] == np.arange(3)).astype(float)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, dummies[:, 1], dummies[:, 2], 1 - dummies[:, 0]])
    names = ["const", "x", "g1", "g2", "not_g0"]
    with pytest.raises(CollinearError, match="'not_g0' is constant or a linear combination") as info:
        ols(y, X, names=names, vcov="HC2")
    assert info.value.column == 4 and isinstance(info.value, DesignError)
    with pytest.raises(CollinearError, match="'twice'") as info:
        ols(y, np.column_stack([np.ones(n), x, 2 * x]), names=["const", "x", "twice"], vcov="HC2")
    year = 1970 + 10 * rng.normal(size=n)
    fit = ols(y, np.column_stack([np.ones(n), x, year]), vcov="HC2")
    assert np.isfinite(fit.se).all()


def test_wald_f_denominator_counts_absorbed_groups():
    """The Wald F test of an HC fit with groups absorbed has the residual df of the same fit with
    the group indicators as columns (statsmodels' F test of that fit), not n − k."""
    import statsmodels.api as sm

    rng = np.random.default_rng(11)
    n, A = 200, 20
    grp = rng.integers(0, A, n)
    x = rng.normal(size=(n, 3))
    y = x @ [0.2, -0.1, 0.0] + grp * 0.1 + rng.normal(size=n)
    absorbed = ols(y, x, absorb=grp, vcov="HC1")
    R = np.eye(3)[:2]
    t = absorbed.wald_test(R)
    D = (grp[:, None] == np.arange(A)).astype(float)
    full = sm.OLS(y, np.column_stack([x, D])).fit(cov_type="HC1")
    ref = full.f_test(np.column_stack([R, np.zeros((2, A))]))
    assert t.df2 == pytest.approx(float(ref.df_denom)) == n - 3 - A
    assert t.F == pytest.approx(float(np.squeeze(ref.fvalue)), rel=1e-8)
    assert t.pvalue == pytest.approx(float(ref.pvalue), rel=1e-8)



@pytest.mark.parametrize("vcov", ["CR1", "CR0"])
def test_wald_f_denominator_follows_the_cluster_df_convention(vcov):
    """Under ``cluster_df="G-p"`` the Wald F of a CR0/CR1 fit has the fit's own G − k (− A absorbed)
    df, so one constraint gives the contrast's t test (before 2026-12-05 G − 1: 11 df against the
    contrast's 8 with 12 clusters and 4 coefficients); under "G-1" G − 1."""
    rng = np.random.default_rng(12)
    G, m = 12, 10
    cl = np.repeat(np.arange(G), m)
    blk = cl // 4  # 3 absorbed groups, each cluster within one
    x = rng.normal(size=(G * m, 3))
    y = rng.normal(size=G * m) + rng.normal(size=G)[cl]
    X = np.column_stack([np.ones(G * m), x])
    for fit, k, conv in ((ols(y, X, vcov=vcov, clusters=cl, cluster_df="G-p"), 4, "G-p"),
                         (ols(y, x, vcov=vcov, clusters=cl, cluster_df="G-p", absorb=blk), 3 + 3, "G-p"),
                         (ols(y, X, vcov=vcov, clusters=cl), 4, "G-1")):
        c = np.eye(fit.k)[1]
        df = G - k if conv == "G-p" else G - 1
        t = float(c @ fit.params) / np.sqrt(c @ fit.vcov @ c)
        one = fit.wald_test(c)
        assert one.df2 == df == fit.contrast(c)[2]
        assert one.F == pytest.approx(t**2, rel=1e-10)
        assert one.pvalue == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
        two = fit.wald_test(np.eye(fit.k)[:2])
        assert two.df2 == df and two.pvalue == pytest.approx(stats.f.sf(two.F, 2, df), rel=1e-10)

def test_a_fit_built_without_df_resid_or_htz_takes_them_from_its_fields():
    """An OLSFit built directly (a public dataclass) without ``df_resid``/``htz_eta``: the Wald F's
    denominator is its residual df (n − k − A, or G − 1) and a CR2 fit keeps its HTZ default from
    its blocks (before 2026-12-05 such a fit printed "(q, ∞) df, p = nan" and a CR2 one fell back to F)."""
    import dataclasses
    import math

    rng = np.random.default_rng(5)
    n = 120
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    y = x @ [0.1, 0.3, 0.0, -0.2] + rng.normal(size=n)
    cl = rng.integers(0, 15, n)
    R = np.eye(4)[1:3]
    for fit in (ols(y, x, vcov="HC1"), ols(y, x, clusters=cl, vcov="CR1"), ols(y, x, clusters=cl, vcov="CR2")):
        bare = dataclasses.replace(fit, df_resid=math.nan, htz_eta=None)
        want = fit.wald_test(R)
        got = bare.wald_test(R)
        assert got.test == want.test and got.df2 == pytest.approx(want.df2, rel=1e-12)
        assert got.pvalue == pytest.approx(want.pvalue, rel=1e-12)
    assert ols(y, x, vcov="HC1").df_resid == n - 4
