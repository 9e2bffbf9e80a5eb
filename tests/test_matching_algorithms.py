"""Matching algorithms against slow brute-force versions written here from their definitions.

Nearest neighbour with replacement and ties kept: every eligible comparison (same exact cell,
distance <= caliper) at a distance no larger than the k-th smallest, weight 1/m. Otherwise,
in rounds (every treated row in the greedy order takes one before any takes a second), the best
eligible comparison (unused if without replacement) by (distance, priority), up to k. VCG: every comparison in the cell within the
band qualifies; with more than k, the k closest, ties at the k-th distance sharing the places.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import mahalanobis

import pleval
from pleval.data import Columns
from pleval.errors import DataError, DesignError
from pleval.matching.exact import NO_BAND, NO_CELL, match_vcg
from pleval.matching.nearest import mahalanobis_coordinates, match_nearest


def _idx(m, n_t, k):
    """The long-format pairs of a NearestMatch as an (n_t, k) index matrix (-1 padded)."""
    idx = np.full((n_t, k), -1)
    for i in range(n_t):
        c = m.c_row[m.t_row == i]
        idx[i, : len(c)] = c
    return idx


def brute_ties(tz, cz, tcell, ccell, k, caliper):
    tz, cz = np.asarray(tz, float), np.asarray(cz, float)
    if tz.ndim == 1:
        tz, cz = tz[:, None], cz[:, None]
    out = []
    for i in range(len(tz)):
        d = np.sqrt(np.einsum("ij,ij->i", cz - tz[i], cz - tz[i]))
        ok = (ccell == tcell[i]) & (d <= caliper)
        if not ok.any():
            out.append(set())
            continue
        d_k = np.sort(d[ok])[min(k, ok.sum()) - 1]
        out.append(set(np.flatnonzero(ok & (d <= d_k + 1e-12))))
    return out


def brute_nearest(tz, cz, tcell, ccell, k, caliper, replace, prio, order=None):
    """Rounds r = 0 … k − 1: each treated row in ``order`` that got a comparison in every earlier
    round takes its best by (distance, priority) among those not in its set (and unused, without
    replacement)."""
    tz = np.asarray(tz, float)
    cz = np.asarray(cz, float)
    if tz.ndim == 1:
        tz, cz = tz[:, None], cz[:, None]
    used = np.zeros(len(cz), bool)
    idx = np.full((len(tz), k), -1)
    for r in range(k):
        for i in range(len(tz)) if order is None else order:
            if r and idx[i, r - 1] < 0:
                continue
            d = np.sqrt(np.einsum("ij,ij->i", cz - tz[i], cz - tz[i]))
            cand = np.flatnonzero((ccell == tcell[i]) & (d <= caliper) & ~used & ~np.isin(np.arange(len(cz)), idx[i]))
            if len(cand):
                idx[i, r] = cand[np.lexsort((prio[cand], d[cand]))][0]
                used[idx[i, r]] = not replace
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


def test_ties_kept_equal_brute_force():
    """With replacement, every comparison tied at the k-th distance is in the set, weight 1/m."""
    rng = np.random.default_rng(20241)
    n_ties = 0
    for _ in range(200):
        tz, cz, tc, cc = _random_problem(rng)
        k = int(rng.integers(1, 4))
        caliper = float(rng.choice([np.inf, 0.3, 1.0]))
        got = match_nearest(tz, cz, k=k, caliper=caliper, t_cell=tc, c_cell=cc)
        for i, want in enumerate(brute_ties(tz, cz, tc, cc, k, caliper)):
            sel = got.t_row == i
            assert set(got.c_row[sel]) == want and sel.sum() == len(want) == got.n_matched[i]
            np.testing.assert_allclose(got.weight[sel], 1.0 / max(len(want), 1))
            n_ties += len(want) > k
        t2 = tz if tz.ndim == 2 else tz[:, None]
        c2 = cz if cz.ndim == 2 else cz[:, None]
        np.testing.assert_allclose(got.dist, np.linalg.norm(t2[got.t_row] - c2[got.c_row], axis=1), rtol=1e-12, atol=1e-12)
    assert n_ties > 100  # the problems do exercise ties


@pytest.mark.parametrize("replace", [True, False])
def test_nearest_equals_brute_force(replace):
    """Taking exactly k (ties=False, or without replacement) by (distance, priority)."""
    rng = np.random.default_rng(20240 + replace)
    for _ in range(150):
        tz, cz, tc, cc = _random_problem(rng)
        k = int(rng.integers(1, 4))
        caliper = float(rng.choice([np.inf, 0.3, 1.0]))
        prio = rng.permutation(len(cz))
        got = match_nearest(tz, cz, k=k, caliper=caliper, replace=replace, ties=False, t_cell=tc, c_cell=cc,
                            c_priority=prio)
        want = brute_nearest(tz, cz, tc, cc, k, caliper, replace, prio)
        np.testing.assert_array_equal(_idx(got, len(tz), k), want)


@pytest.mark.parametrize("order", ["largest", "smallest", "random"])
def test_greedy_order_equals_brute_force(order):
    rng = np.random.default_rng(7)
    for _ in range(40):
        tz, cz, tc, cc = _random_problem(rng)
        key = np.round(rng.random(len(tz)), 1)  # equal keys go by the treated priority
        seed = int(rng.integers(0, 100))
        tprio = rng.permutation(len(tz))
        got = match_nearest(tz, cz, k=2, caliper=0.8, replace=False, t_cell=tc, c_cell=cc,
                            order=order, order_key=key, seed=seed, t_priority=tprio)
        if order == "random":
            seq = np.random.default_rng(seed).permutation(len(tz))
        else:
            seq = np.lexsort((tprio, -key if order == "largest" else key))
        want = brute_nearest(tz, cz, tc, cc, 2, 0.8, False, np.arange(len(cz)), order=seq)
        np.testing.assert_array_equal(_idx(got, len(tz), 2), want)


def test_without_replacement_uses_each_comparison_once_and_deep_search():
    # many treated compete for the same comparisons: forces repeated deeper searches
    rng = np.random.default_rng(3)
    tz = rng.normal(1.0, 0.3, 300)
    cz = rng.normal(0.0, 1.0, 700)
    got = match_nearest(tz, cz, k=2, replace=False, seed=5, order="random")
    assert got.c_row.size == np.unique(got.c_row).size == 600
    want = brute_nearest(tz, cz, np.zeros(300, int), np.zeros(700, int), 2, np.inf, False, np.arange(700),
                         order=np.random.default_rng(5).permutation(300))
    np.testing.assert_array_equal(_idx(got, 300, 2), want)


def test_without_replacement_k2_matches_in_rounds():
    """Scarce comparisons: the first treated row in order takes its first comparison, then the
    second row its first, and only then may the first take a second (MatchIt's ``ratio``). Before
    2026-12-05 the first row took both and the second was unmatched."""
    got = match_nearest([0.9, 0.5], [0.85, 0.6, 0.1], k=2, replace=False, order="largest",
                        order_key=np.array([0.9, 0.5]), caliper=0.32)
    assert _idx(got, 2, 2).tolist() == [[0, -1], [1, -1]]
    assert got.reason.tolist() == ["", ""] and got.n_matched.tolist() == [1, 1]


def test_unmatched_reasons():
    got = match_nearest([0.0, 5.0, 0.1], [0.05, 0.2], k=1, caliper=0.5, t_cell=[0, 0, 1], c_cell=[0, 0])
    assert got.t_row.tolist() == [0] and got.c_row.tolist() == [0]
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
    return [set(np.flatnonzero((cc == tc[i]) & (np.abs(cs - ts[i]) <= band + 1e-9))) for i in range(len(tc))]


def test_vcg_equals_brute_force():
    rng = np.random.default_rng(5)
    for trial in range(150):
        n_t, n_c = int(rng.integers(1, 30)), int(rng.integers(0, 60))
        tc, cc = rng.integers(0, 3, n_t), rng.integers(0, 3, n_c)
        ts, cs = rng.integers(0, 10, n_t).astype(float), rng.integers(0, 10, n_c).astype(float)
        if trial % 2:  # non-integer scores: distances with floating-point noise
            ts, cs = ts / 10 + 0.1, cs / 10 + 0.1
        band, k = float(rng.choice([0.0, 1.0, 2.5])), int(rng.integers(1, 8))
        m = match_vcg(tc, ts, cc, cs, band=band if trial % 2 == 0 else band / 10, k=k)
        for i, q in enumerate(brute_vcg_sets(tc, ts, cc, cs, band if trial % 2 == 0 else band / 10)):
            sel = m.t_row == i
            got, w = m.c_row[sel], m.weight[sel]
            assert m.n_qualified[i] == len(q)
            assert len(got) == len(set(got)) == m.n_matched[i]
            q = sorted(q)
            if len(q) <= k:
                assert set(got) == set(q)
                np.testing.assert_allclose(w, 1.0 / max(len(q), 1))
            else:  # the k closest; those tied at the k-th distance share the remaining places
                d = np.round(np.abs(cs[q] - ts[i]), 9)
                d_k = np.sort(d)[k - 1]
                n_closer = int((d < d_k).sum())
                assert set(got) == {j for j, dj in zip(q, d) if dj <= d_k}
                want = {j: (1 / k if dj < d_k else (k - n_closer) / ((d == d_k).sum() * k)) for j, dj in zip(q, d) if dj <= d_k}
                np.testing.assert_allclose(w, [want[j] for j in got], rtol=1e-12)
            if len(got):
                assert w.sum() == pytest.approx(1.0)
                assert m.reason[i] == ""
            elif not (cc == tc[i]).any():
                assert m.reason[i] == NO_CELL
            else:
                assert m.reason[i] == NO_BAND


def test_vcg_has_no_randomness_and_ignores_row_order():
    rng = np.random.default_rng(0)
    tc, ts = rng.integers(0, 2, 50), rng.integers(0, 5, 50).astype(float)
    cc, cs = rng.integers(0, 2, 2000), rng.integers(0, 5, 2000).astype(float)
    a = match_vcg(tc, ts, cc, cs, k=5)
    perm = rng.permutation(2000)
    b = match_vcg(tc, ts, cc[perm], cs[perm], k=5)
    pairs = lambda m, ids: sorted(zip(m.t_row.tolist(), ids[m.c_row].tolist(), m.weight.round(15).tolist()))
    assert pairs(a, np.arange(2000)) == pairs(b, perm)
    assert (a.n_matched > 5).all()  # integer scores: heavy ties at the k-th distance


def test_vcg_bad_options():
    with pytest.raises(DataError, match="band"):
        match_vcg([0], [1.0], [0], [1.0], band=-1)
    with pytest.raises(DataError, match="positive integer"):
        match_vcg([0], [1.0], [0], [1.0], k=0)


@pytest.mark.parametrize("method", ["propensity", "mahalanobis"])
def test_comparisons_equally_far_on_either_side_are_all_kept(method):
    """PL pretests odd, comparison pretests even, nothing else: a PL student at 149 is as far from
    148 as from 150 (the logit score is linear in the pretest). Rounding each coordinate to the
    1e-10 grid moved one of the two distances by a grid step, which the old tolerance (half a
    step) no longer called a tie: 155 of 481 propensity sets (300 Mahalanobis) kept one side."""
    rng = np.random.default_rng(1)
    n = 1500
    pre = rng.integers(150, 230, n).astype(float)
    t = (rng.random(n) < 0.3 / (1 + np.exp(-(pre - 190) / 15))).astype(int)
    pre = np.where(t == 1, pre + (pre % 2 == 0), pre - (pre % 2 == 1))
    school = np.where(t == 1, rng.integers(0, 10, n), rng.integers(10, 60, n))
    df = pd.DataFrame(dict(student_id=[f"S{i:05d}" for i in range(n)], school_id=[f"K{s}" for s in school], treatment=t,
                           grade=5, subject="math", pretest=pre, posttest=pre + rng.normal(0, 5, n)))
    cols = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), covariates=(), school="school_id",
                   student_id="student_id", grade="grade", subject="subject")
    m = pleval.match(df, cols, method=method, caliper=False, tie_cap=0)
    s = m.matched
    comp = m.data[m.data["treatment"] == 0]["pretest"].value_counts()
    size = s[s["treatment"] == 0].groupby("_set").size()
    checked = 0
    for st, x in zip(s.loc[s["treatment"] == 1, "_set"], s.loc[s["treatment"] == 1, "pretest"]):
        lo, hi = comp.get(x - 1, 0), comp.get(x + 1, 0)
        if lo and hi:
            assert size[st] == lo + hi, (x, size[st], lo, hi)
            checked += 1
    assert checked > 100
