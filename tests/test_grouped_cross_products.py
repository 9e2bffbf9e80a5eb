"""The tiled per-cluster cross-products of the cluster-robust fits against a direct loop over
clusters, and the CR2 built on them against the n×n computation, on clusters of every size."""

import numpy as np
import pytest

from pleval.inference import ols, robust
from pleval.inference.robust import cluster_order, grouped_cross_products, tile_rows


def _sizes(kind, rng):
    if kind == "singletons":
        return np.ones(300, int)
    if kind == "small":
        return rng.integers(1, 4, 200)
    if kind == "large":
        return rng.integers(40, 90, 12)
    return np.concatenate([np.ones(150, int), rng.integers(2, 6, 40), rng.integers(30, 120, 6)])  # mixed


def _data(kind, seed, shuffle=True):
    rng = np.random.default_rng(seed)
    sizes = _sizes(kind, rng)
    labels = rng.permutation(len(sizes) + 5)[: len(sizes)]  # codes with gaps: empty clusters
    cl = np.repeat(labels, sizes)
    if shuffle:
        cl = cl[rng.permutation(cl.size)]
    n = cl.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), (rng.random(n) < 0.3).astype(float),
                         (cl % 3 == 0).astype(float), 200 + rng.normal(size=n) * 10])  # column 3: cluster-level
    return X, cl, rng.normal(size=n), rng.uniform(0.1, 5.0, n)


def _direct(X, cl, G, e, w):
    S = np.zeros((G, X.shape[1], X.shape[1]))
    U = np.zeros((G, X.shape[1]))
    for g in np.unique(cl):  # the obvious loop over clusters
        i = cl == g
        S[g] = (X[i] * w[i, None]).T @ X[i]
        U[g] = X[i].T @ (w[i] * e[i])
    return S, U


@pytest.mark.parametrize("kind", ["singletons", "small", "large", "mixed"])
@pytest.mark.parametrize("chunk", [robust._CHUNK_ROWS, 64])  # 64 rows: clusters span chunks
@pytest.mark.parametrize("b", [None, 1, 2, 8, 32])  # None: the size tile_rows chooses
def test_grouped_cross_products_equal_a_loop_over_clusters(kind, chunk, b, monkeypatch):
    monkeypatch.setattr(robust, "_CHUNK_ROWS", chunk)
    if b is not None:
        monkeypatch.setattr(robust, "tile_rows", lambda counts: b)
    X, cl, e, w = _data(kind, seed=len(kind) + chunk)
    G = int(cl.max()) + 3  # trailing empty clusters too
    S0, U0 = _direct(X, cl, G, e, w)
    for shuffled in (cl, np.sort(cl)):  # rows in any order, or already by cluster
        order = np.argsort(cl, kind="stable") if shuffled is not cl else np.arange(cl.size)
        Xs, es, ws = X[order], e[order], w[order]
        S, U = grouped_cross_products(Xs, shuffled, G, es, ws)
        np.testing.assert_allclose(S, S0, rtol=0, atol=1e-12 * np.abs(S0).max())
        np.testing.assert_allclose(U, U0, rtol=0, atol=1e-12 * np.abs(U0).max())
        assert np.array_equal(S, S.transpose(0, 2, 1))
        assert not S[np.bincount(shuffled, minlength=G) == 0].any()
        S1, U1 = grouped_cross_products(Xs, shuffled, G, es, ws, pairs=False)
        assert S1 is None
        np.testing.assert_allclose(U1, U0, rtol=0, atol=1e-12 * np.abs(U0).max())
        # two weightings in one pass (u from the first)
        w2 = np.cos(ws) + 1.5
        (Sa, Sb), Uab = grouped_cross_products(Xs, shuffled, G, es, (ws, w2))
        np.testing.assert_allclose(Sa, S0, rtol=0, atol=1e-12 * np.abs(S0).max())
        np.testing.assert_allclose(Uab, U0, rtol=0, atol=1e-12 * np.abs(U0).max())
        Sw2 = _direct(Xs, shuffled, G, es, w2)[0]
        np.testing.assert_allclose(Sb, Sw2, rtol=0, atol=1e-12 * np.abs(Sw2).max())
        assert np.array_equal(Sb, Sb.transpose(0, 2, 1))
    S2, U2 = grouped_cross_products(np.asfortranarray(X), cl, G)  # unweighted, no residuals
    np.testing.assert_allclose(S2, _direct(X, cl, G, e, np.ones_like(w))[0], rtol=0, atol=1e-12 * np.abs(S0).max())
    assert U2 is None


def test_tile_size_follows_the_cluster_sizes():
    rng = np.random.default_rng(0)
    assert tile_rows(_sizes("large", rng)) == 32
    assert tile_rows(np.full(50, 32)) == 32
    assert tile_rows(np.full(50, 8)) == 8
    assert tile_rows(_sizes("singletons", rng)) <= 4  # small tiles: padding costs more than it saves


def _pinv_root(B):
    lam, Q = np.linalg.eigh(B)
    return (Q * np.where(lam > 1e-10, np.clip(lam, 1e-10, None) ** -0.5, 0.0)) @ Q.T


@pytest.mark.parametrize("kind", ["singletons", "small", "mixed"])
def test_cr2_on_tiles_equals_the_nxn_computation(kind, monkeypatch):
    """CR2 with Satterthwaite df on weighted data with singleton clusters, clusters of a few
    rows and large ones, one cluster identified by a fixed effect (leverage one: Moore–Penrose
    root), rows in random order, gathered in small chunks."""
    monkeypatch.setattr(robust, "_CHUNK_ROWS", 96)
    X, cl, _, w = _data(kind, seed=7)
    big = np.bincount(cl).argmax()
    X = np.column_stack([X, (cl == big).astype(float)])  # this cluster's own intercept
    rng = np.random.default_rng(1)
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=cl.size) * (1 + X[:, 2])
    fit = ols(y, X, weights=w, clusters=cl, vcov="CR2")
    Xt, yt = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    M = np.linalg.inv(Xt.T @ Xt)
    IH = np.eye(cl.size) - Xt @ M @ Xt.T
    et = IH @ yt
    adj = {g: _pinv_root(IH[np.ix_(cl == g, cl == g)]) for g in np.unique(cl)}
    Ug = np.array([Xt[cl == g].T @ A @ et[cl == g] for g, A in adj.items()])
    V = M @ (Ug.T @ Ug) @ M
    np.testing.assert_allclose(fit.vcov, V, rtol=0, atol=1e-9 * np.abs(V).max())
    for j in (1, 2):
        Q = []
        for g, A in adj.items():
            p = np.zeros(cl.size)
            p[cl == g] = A @ Xt[cl == g] @ M[:, j]
            Q.append(IH @ p)
        Om = np.array(Q) @ np.array(Q).T
        assert fit.coef_df(j) == pytest.approx(np.trace(Om) ** 2 / np.sum(Om**2), rel=1e-8)
    perm = rng.permutation(cl.size)  # another row order: other tiles, the same fit (to rounding; cond(X̃) ≈ 4000)
    refit = ols(y[perm], X[perm], weights=w[perm], clusters=cl[perm], vcov="CR2")
    np.testing.assert_allclose(refit.vcov, fit.vcov, rtol=0, atol=1e-10 * np.abs(V).max())
    assert refit.coef_df(1) == pytest.approx(fit.coef_df(1), rel=1e-10)


@pytest.mark.parametrize("G", [1, 300, 70_000, 200_000])  # one or two 16-bit radix digits
def test_cluster_order_is_the_stable_sort(G):
    rng = np.random.default_rng(G)
    codes = rng.integers(0, G, 50_000).astype(np.intp)
    order, counts = cluster_order(codes, G)
    assert np.array_equal(counts, np.bincount(codes, minlength=G))
    assert np.array_equal(np.arange(codes.size) if order is None else order, np.argsort(codes, kind="stable"))
    assert cluster_order(np.sort(codes), G)[0] is None  # already sorted: no permutation
