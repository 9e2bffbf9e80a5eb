"""The grouped sufficient statistics of the batched per-school fits (``_batched._pair_sums`` and the
``X'Wy`` of ``grouped_wls``) equal a loop over groups, for sorted and unsorted group codes, empty
groups, one-row groups and zero weights; the fits' residuals taken run by run equal those with the
coefficients gathered row by row, bit for bit."""

import numpy as np
import pytest

from pleval.heterogeneity import _batched
from pleval.heterogeneity._batched import _pair_sums, _residuals, grouped_wls


def _data(seed, n=3000, p=7, G=400):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=(n, p - 2))])
    codes = rng.integers(0, G - 3, n)  # the last three groups empty
    codes[:5] = G - 4  # a group of several rows among singletons
    w = rng.uniform(0.2, 4.0, n)
    w[rng.random(n) < 0.05] = 0.0
    return X, w, codes, G, rng.normal(size=n)


@pytest.mark.parametrize("sort", [False, True])
def test_pair_sums_equal_a_loop_over_groups(sort):
    X, w, codes, G, _ = _data(1)
    if sort:
        o = np.argsort(codes, kind="stable")
        X, w, codes = X[o], w[o], codes[o]
    S = _pair_sums(X, w, codes, G)
    ref = np.zeros((G, X.shape[1], X.shape[1]))
    for g in range(G):
        Xg = X[codes == g]
        ref[g] = Xg.T @ (Xg * w[codes == g, None])
    np.testing.assert_allclose(S, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    assert np.all(S[G - 3 :] == 0)


def test_grouped_wls_equals_per_group_wls():
    X, w, codes, G, y = _data(2, n=4000, p=4, G=60)
    fit = grouped_wls(y, X, codes, G, weights=w, vcov="HC1")
    for g in range(G - 3):
        m = codes == g
        Xg, yg, wg = X[m], y[m], w[m]
        b = np.linalg.lstsq(Xg * np.sqrt(wg)[:, None], yg * np.sqrt(wg), rcond=None)[0]
        if fit.ok[g]:
            np.testing.assert_allclose(fit.params[g], b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", ["sorted", "one group", "one-row groups", "unsorted"])
def test_residuals_by_runs_equal_gathered_coefficients(layout, monkeypatch):
    """``_residuals`` takes each run's coefficients as they are where runs are long (the school
    effects' blocks): the same residuals, bit for bit, as gathering the coefficients for every row
    (the blocks of rows it uses otherwise), also with empty groups, one-row groups and groups in
    several runs."""
    rng = np.random.default_rng(7)
    n, p, G = 20000, 11, 6
    X = rng.normal(size=(n, p)) * rng.uniform(0.01, 100.0, p)
    y = rng.normal(size=n)
    beta = rng.normal(size=(G, p)) * 10.0 ** rng.integers(-3, 4, (G, 1))
    groups = {"sorted": np.sort(rng.choice([0, 2, 3, 5], n)),  # groups 1 and 4 empty
              "one group": np.full(n, 4),
              "one-row groups": np.r_[np.sort(rng.integers(0, G, n - 3)), [1, 0, 5]],  # three short runs at the end
              "unsorted": rng.integers(0, G, n)}[layout]
    e = _residuals(y, X, groups, beta)
    monkeypatch.setattr(_batched, "_RUN_ROWS", n + 1)  # never by runs: every row's coefficients gathered
    ref = _residuals(y, X, groups, beta)
    np.testing.assert_array_equal(e, ref)
    np.testing.assert_allclose(e, y - np.einsum("ia,ia->i", X, beta[groups]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_classical_fit_keeps_its_weighted_squared_residual_sums(weighted):
    """The classical fit's ``sse`` (Σ w e² per group, σ̂²'s numerator, which the school effects take
    for ``e2``) is the sum of ``w e²`` over the group's rows, bit for bit as a ``bincount`` of them; the
    other types leave it None."""
    X, w, codes, G, y = _data(3, n=2000, p=5, G=50)
    fit = grouped_wls(y, X, codes, G, weights=w if weighted else None, vcov="classical")
    wt = w if weighted else np.ones(len(y))
    np.testing.assert_array_equal(fit.sse, np.bincount(codes, weights=wt * fit.resid**2, minlength=G))
    ok = fit.ok
    np.testing.assert_allclose(fit.vcov[ok, 1, 1], fit.bread[ok, 1, 1] * fit.sse[ok] / (fit.n[ok] - fit.rank[ok]),
                               rtol=1e-12)
    assert grouped_wls(y, X, codes, G, weights=w, vcov="HC1").sse is None
