"""Matching algorithms against slow brute-force versions written here from their definitions.

Nearest neighbour: for each treated row (in the greedy order), rank eligible comparisons
(same exact cell, distance <= caliper, unused if without replacement) by (distance,
priority) with priority = ``default_rng(seed).permutation(n_comparison)``, and take k.
VCG: every comparison in the cell within the band qualifies; at most k are kept, each
k-subset equally likely.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import mahalanobis

from pleval.errors import DataError, DesignError
from pleval.matching.exact import NO_BAND, NO_CELL, _sample_offsets, match_vcg
from pleval.matching.nearest import mahalanobis_coordinates, match_nearest


def brute_nearest(tz, cz, tcell, ccell, k, caliper, replace, seed, order=None):
    tz = np.asarray(tz, float)
    cz = np.asarray(cz, float)
    if tz.ndim == 1:
        tz, cz = tz[:, None], cz[:, None]
    prio = np.random.default_rng(seed).permutation(len(cz))
    used = np.zeros(len(cz), bool)
    idx = np.full((len(tz), k), -1)
    for i in range(len(tz)) if order is None else order:
        d = np.sqrt(np.einsum("ij,ij->i", cz - tz[i], cz - tz[i]))
        cand = np.flatnonzero((ccell == tcell[i]) & (d <= caliper) & ~used)
        best = cand[np.lexsort((prio[cand], d[cand]))][:k]
        idx[i, : len(best)] = best
        if not replace:
            used[best] = True
    return idx


def _random_problem(rng):
    n_t, n_c = int(rng.integers(1, 40)), int(rng.integers(1, 90))
    dim = int(rng.choice([1, 2, 3]))
    tz = rng.normal(size=(n_t, dim))
    cz = rng.normal(size=(n_c, dim)) + 0.3
    if rng.random() < 0.5:  # discrete coordinates: many exact ties
        tz, cz = np.round(tz * 2) / 2, np.round(cz * 2) / 2
    if dim == 1:
        tz, cz = tz[:, 0], cz[:, 0]
    n_cell = int(rng.integers(1, 4))
    return tz, cz, rng.integers(0, n_cell, n_t), rng.integers(0, n_cell, n_c)


@pytest.mark.parametrize("replace", [True, False])
def test_nearest_equals_brute_force(replace):
    rng = np.random.default_rng(20240 + replace)
    for _ in range(150):
        tz, cz, tc, cc = _random_problem(rng)
        k = int(rng.integers(1, 4))
        caliper = float(rng.choice([np.inf, 0.3, 1.0]))
        seed = int(rng.integers(0, 1000))
        got = match_nearest(tz, cz, k=k, caliper=caliper, replace=replace, t_cell=tc, c_cell=cc, seed=seed)
        want = brute_nearest(tz, cz, tc, cc, k, caliper, replace, seed)
        np.testing.assert_array_equal(got.idx, want)
        # distances reported are the distances of the chosen pairs
        ok = got.idx >= 0
        t2 = tz if tz.ndim == 2 else tz[:, None]
        c2 = cz if cz.ndim == 2 else cz[:, None]
        rows = np.nonzero(ok)[0]
        d = np.linalg.norm(t2[rows] - c2[got.idx[ok]], axis=1)
        np.testing.assert_allclose(got.dist[ok], d, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["largest", "smallest", "random"])
def test_greedy_order_equals_brute_force(order):
    rng = np.random.default_rng(7)
    for _ in range(40):
        tz, cz, tc, cc = _random_problem(rng)
        key = rng.random(len(tz))
        seed = int(rng.integers(0, 100))
        got = match_nearest(tz, cz, k=2, caliper=0.8, replace=False, t_cell=tc, c_cell=cc,
                            order=order, order_key=key, seed=seed)
        if order == "random":
            gen = np.random.default_rng(seed)
            gen.permutation(len(cz))  # the priorities are drawn first
            seq = gen.permutation(len(tz))
        else:
            seq = np.argsort(-key if order == "largest" else key, kind="stable")
        want = brute_nearest(tz, cz, tc, cc, 2, 0.8, False, seed, order=seq)
        np.testing.assert_array_equal(got.idx, want)


def test_without_replacement_uses_each_comparison_once_and_deep_search():
    # many treated compete for the same comparisons: forces repeated deeper searches
    rng = np.random.default_rng(3)
    tz = rng.normal(1.0, 0.3, 300)
    cz = rng.normal(0.0, 1.0, 700)
    got = match_nearest(tz, cz, k=2, replace=False, seed=5, order="random")
    used = got.idx[got.idx >= 0]
    assert used.size == np.unique(used).size == 600
    gen = np.random.default_rng(5)
    gen.permutation(700)
    want = brute_nearest(tz, cz, np.zeros(300, int), np.zeros(700, int), 2, np.inf, False, 5,
                         order=gen.permutation(300))
    np.testing.assert_array_equal(got.idx, want)


def test_unmatched_reasons():
    got = match_nearest([0.0, 5.0, 0.1], [0.05, 0.2], k=1, caliper=0.5, t_cell=[0, 0, 1], c_cell=[0, 0])
    assert got.idx[:, 0].tolist() == [0, -1, -1]
    assert got.reason.tolist() == ["", "no comparison within the caliper", "no comparison in its exact-match cell"]
    got = match_nearest([0.0, 0.01], [0.05], k=1, replace=False, order="data")
    assert got.reason.tolist() == ["", "comparisons in its exact-match cell used up (matching without replacement)"]


def test_nearest_bad_options():
    with pytest.raises(DataError, match="k must be"):
        match_nearest([0.0], [0.0], k=0)
    with pytest.raises(DataError, match="caliper"):
        match_nearest([0.0], [0.0], caliper=-1)
    with pytest.raises(DataError, match="order"):
        match_nearest([0.0], [0.0], replace=False, order="biggest")
    with pytest.raises(DataError, match="propensity score"):
        match_nearest([0.0], [0.0], replace=False, order="largest")


def test_mahalanobis_coordinates_give_mahalanobis_distance():
    rng = np.random.default_rng(11)
    X = rng.multivariate_normal([0, 0, 0], [[1, 0.5, 0.2], [0.5, 2, 0.3], [0.2, 0.3, 1.5]], size=400)
    t = rng.random(400) < 0.3
    z = mahalanobis_coordinates(X, t)
    S = ((t.sum() - 1) * np.cov(X[t].T) + ((~t).sum() - 1) * np.cov(X[~t].T)) / (len(t) - 2)
    VI = np.linalg.inv(S)
    for i, j in [(0, 1), (5, 200), (17, 399)]:
        assert np.linalg.norm(z[i] - z[j]) == pytest.approx(mahalanobis(X[i], X[j], VI), rel=1e-10)
    with pytest.raises(DesignError, match="singular"):
        mahalanobis_coordinates(np.column_stack([X[:, 0], 2 * X[:, 0]]), t)


def brute_vcg_sets(tc, ts, cc, cs, band):
    return [set(np.flatnonzero((cc == tc[i]) & (np.abs(cs - ts[i]) <= band))) for i in range(len(tc))]


def test_vcg_equals_brute_force():
    rng = np.random.default_rng(5)
    for trial in range(150):
        n_t, n_c = int(rng.integers(1, 30)), int(rng.integers(0, 60))
        tc, cc = rng.integers(0, 3, n_t), rng.integers(0, 3, n_c)
        ts, cs = rng.integers(0, 10, n_t).astype(float), rng.integers(0, 10, n_c).astype(float)
        band, k = float(rng.choice([0.0, 1.0, 2.5])), int(rng.integers(1, 8))
        m = match_vcg(tc, ts, cc, cs, band=band, k=k, seed=trial)
        for i, q in enumerate(brute_vcg_sets(tc, ts, cc, cs, band)):
            got = m.c_row[m.t_row == i]
            assert m.n_qualified[i] == len(q)
            assert len(got) == len(set(got)) == min(k, len(q))
            assert set(got) <= q
            if len(q) <= k:
                assert set(got) == q
            if len(got):
                assert m.weight[m.t_row == i].sum() == pytest.approx(1.0)
                assert m.reason[i] == ""
            elif not (cc == tc[i]).any():
                assert m.reason[i] == NO_CELL
            else:
                assert m.reason[i] == NO_BAND


def test_vcg_is_seeded():
    rng = np.random.default_rng(0)
    args = (rng.integers(0, 2, 50), rng.integers(0, 5, 50).astype(float),
            rng.integers(0, 2, 2000), rng.integers(0, 5, 2000).astype(float))
    a, b, c = (match_vcg(*args, k=5, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.c_row, b.c_row)
    assert not np.array_equal(a.c_row, c.c_row)


@pytest.mark.parametrize("n", [60, 80, 500])  # both sampling branches (n <= 2k and n > 2k)
def test_vcg_sampling_is_uniform(n):
    """Each of the n qualifying units is chosen with probability k/n (chi-square test), and
    each pair with probability k(k-1)/(n(n-1))."""
    k, reps = 51, 400
    S = _sample_offsets(np.full(reps, n), k, np.random.default_rng(n))
    assert (np.sort(S, axis=1)[:, 1:] != np.sort(S, axis=1)[:, :-1]).all()
    counts = np.bincount(S.ravel(), minlength=n)
    assert counts.sum() == reps * k
    # under uniform sampling the per-unit counts are hypergeometric-like with mean reps*k/n
    chi2 = ((counts - reps * k / n) ** 2 / (reps * k / n * (1 - k / n))).sum()
    assert stats.chi2.sf(chi2, n - 1) > 1e-3
    pair = np.mean((S == 0).any(axis=1) & (S == 1).any(axis=1))
    p_pair = k * (k - 1) / (n * (n - 1))
    assert abs(pair - p_pair) < 4 * np.sqrt(p_pair * (1 - p_pair) / reps) + 1e-9


def test_vcg_bad_options():
    with pytest.raises(DataError, match="band"):
        match_vcg([0], [1.0], [0], [1.0], band=-1)
    with pytest.raises(DataError, match="positive integer"):
        match_vcg([0], [1.0], [0], [1.0], k=0)
