"""The school effects' shortcuts give what the general route gives: the strata numbered by a
count over the combinations' range, the (stratum, arm) cells formed once, the weights' variation
found among the first rows, the shared-cluster counts in one lane, the cells' keys hashed in 32
bits, the fits without a covariance of their own, rows in runs ordered by their runs, and a lazy
sample's treatment and outcome read from its data's columns (session 50, 2026-12-05)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from pleval.data import SAMPLE_COLUMNS as C
from pleval.data import validate
from pleval.errors import DataError
from pleval.matching import match
from pleval.simulate import simulate_matched


def _factorize_many_by_hash(df, cols):
    """The strata's numbering as ``_factorize_many`` formed it before 2026-12-05: the rows'
    combinations hashed (``pd.factorize``, first appearance), then sorted stably by their values."""
    from pleval.heterogeneity.school_effects import _codes, _sort_key

    codes, levels = np.zeros(len(df), dtype=np.int64), []
    for c in cols:
        cc, u = _codes(df, c)
        codes = codes * len(u) + cc
        levels.append(u)
    inv, comb = pd.factorize(codes)
    parts = []
    for u in reversed(levels):
        parts.append(u[comb % len(u)])
        comb = comb // len(u)
    uniq = list(zip(*reversed(parts)))
    order = sorted(range(len(uniq)), key=lambda i: tuple(_sort_key(v) for v in uniq[i]))
    rank = np.empty(len(uniq), dtype=np.intp)
    rank[order] = np.arange(len(uniq))
    return rank[inv], [uniq[i] for i in order]


@pytest.mark.parametrize("ties", [False, True])
def test_strata_numbered_by_a_count_are_those_of_the_hash(ties):
    """``_factorize_many`` counts the combinations over their range (no hash of the rows) and gives
    the hash's codes and values; where two values sort alike (text '7' and Decimal('7')) the
    rows' order of first appearance breaks the tie, as the hash's stable sort did."""
    from pleval.heterogeneity.school_effects import _factorize_many

    rng = np.random.default_rng(5)
    n = 500
    school = rng.choice(np.array(["b", "a", 3, 10, 2.5, "7"], dtype=object), n)
    if ties:
        school[rng.random(n) < 0.2] = Decimal("7")
    df = pd.DataFrame({"subject": rng.choice(["read", "math"], n), "school": school})
    for cols in (["subject", "school"], ["school"]):
        got, got_uniq = _factorize_many(df, cols)
        want, want_uniq = _factorize_many_by_hash(df, cols)
        np.testing.assert_array_equal(got, want)
        assert got_uniq == want_uniq and [type(v) for u in got_uniq for v in u] == [type(v) for u in want_uniq for v in u]


def test_one_cluster_with_the_arms_formed_once_is_the_same():
    """``_one_cluster`` given the (stratum, arm) cells of ``_arm_cells`` (formed once for its two
    calls) equals its own, with and without clusters."""
    from pleval.heterogeneity.school_effects import _arm_cells, _one_cluster

    rng = np.random.default_rng(2)
    n, G = 2000, 150
    codes = rng.integers(0, G - 5, n).astype(np.int32)
    t = (rng.random(n) < 0.4).astype(np.int8)
    cl = (codes % 17 + (rng.random(n) < 0.05)).astype(np.int32)
    arms = _arm_cells(codes, t, G)
    for clusters in (cl, None):
        got = _one_cluster(codes, t, clusters, G, arms)
        np.testing.assert_array_equal(got, _one_cluster(codes, t, clusters, G))
    assert _one_cluster(codes, t, cl, G, arms).any() and not _one_cluster(codes, t, cl, G, arms).all()


@pytest.mark.parametrize("where", [None, 10, 5000])
def test_weights_vary_within_a_group_found_among_the_first_rows_or_all(where):
    """``_varies_within`` looks among the first 4,096 rows, then all: the answer of a direct
    groupwise count whether the varying weight lies early, late or nowhere."""
    from pleval.heterogeneity._joint import _varies_within

    rng = np.random.default_rng(9)
    n, G = 6000, 40
    groups = rng.integers(0, G, n)
    w = (groups % 3 + 1).astype(float)
    if where is not None:
        w[where] += 0.5
    want = bool((pd.Series(w).groupby(groups).nunique() > 1).any())
    assert want == (where is not None)
    assert _varies_within(w, groups, G) == want


def test_shared_cluster_counts_in_one_lane_are_the_halves_summed():
    """In one thread ``_cross_products`` counts the shared clusters in one lane, not two halves of
    each block's clusters: the same V, S2 and counts, bit for bit, with blocks of a few clusters."""
    from pleval._workers import limited
    from pleval.heterogeneity import _joint

    rng = np.random.default_rng(4)
    G, n_cl, n = 30, 300, 2000
    wide = rng.random(n) < 0.6
    cluster = np.where(wide, rng.integers(0, 40, n), rng.integers(40, n_cl, n))
    key = pd.unique(rng.integers(0, G, n).astype(np.int64) * n_cl + cluster)
    group, cluster = (key // n_cl).astype(np.intp), (key % n_cl).astype(np.intp)
    phi = np.where(rng.random(key.size) < 0.1, 0.0, rng.normal(size=key.size))
    old = _joint._CHUNK
    try:
        _joint._CHUNK = 16 * 7  # blocks of 7 clusters, the last narrower
        with limited(2):
            two = _joint._cross_products(phi, group, cluster, G, n_cl)
        with limited(1):
            one = _joint._cross_products(phi, group, cluster, G, n_cl)
    finally:
        _joint._CHUNK = old
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    P = (np.zeros((G, n_cl)))
    P[group, cluster] = phi
    np.testing.assert_array_equal(one[2], (P != 0).astype(float) @ (P != 0).astype(float).T)


def test_cells_keys_hashed_in_32_bits_are_numbered_as_in_64():
    """``_first_codes`` hashes keys below 2³¹ as 32-bit integers: the codes and keys (int64) of
    ``pd.factorize`` of the 64-bit keys, whichever path (hash, table, wide keys)."""
    from pleval.heterogeneity._joint import _first_codes

    rng = np.random.default_rng(1)
    for bound in (2**20, 3000, 2**40):
        key = rng.integers(0, bound, 1000).astype(np.int64)
        key = key[rng.integers(0, 1000, 4000)]  # repeated keys
        codes, uniq = _first_codes(key, bound)
        want_codes, want_uniq = pd.factorize(key)
        np.testing.assert_array_equal(codes, want_codes)
        np.testing.assert_array_equal(uniq, want_uniq)
        assert uniq.dtype == np.int64


def test_grouped_fit_without_a_covariance_is_the_classical_fit():
    """``grouped_wls(vcov=None)`` (the joint covariance's blocks): the classical fit's
    coefficients, breads, residuals and ranks, bit for bit, its covariance not formed (NaN)."""
    from pleval.heterogeneity._batched import grouped_wls

    rng = np.random.default_rng(3)
    n, G = 900, 12
    groups = np.sort(rng.integers(0, G, n))
    X = np.column_stack([np.ones(n), rng.random(n) < 0.5, rng.normal(size=n)])
    y, w = rng.normal(size=n), rng.uniform(0.5, 2, n)
    full = grouped_wls(y, X, groups, G, weights=w, vcov="classical", squares=True)
    bare = grouped_wls(y, X, groups, G, weights=w, vcov=None, squares=True)
    for k in ("params", "bread", "resid", "rank", "ok", "n", "df", "sq"):
        np.testing.assert_array_equal(getattr(bare, k), getattr(full, k), err_msg=k)
    assert np.isnan(bare.vcov).all() and bare.sse is None and np.isfinite(full.vcov[full.ok]).all()


def test_lazy_sample_with_a_treatment_not_0_1_is_refused_as_its_frame():
    """A lazy school sample's treatment is read as the whole numbers of its data's column: a value
    other than 0 and 1 among the pairs is refused as on the frame, with the same count."""
    from dataclasses import replace

    from pleval.heterogeneity import school_effects

    df = simulate_matched(n_schools=20, n_pl_schools=4, students_per_grade=8, seed=2).data
    m = match(validate(df, C), C, method="propensity")
    keys = [C.student_id, C.school, C.subject]
    lazy = m.school_sample(categorical=keys, lazy=True)
    bad = replace(m, data=m.data.assign(**{C.treatment: np.where(np.arange(len(m.data)) == lazy.rows[0], 2,
                                                                  m.data[C.treatment].to_numpy())}))
    kw = dict(stratum="_pl_school", weight="_weight", treatment=C.treatment, outcome=C.outcome,
              covariates=tuple(C.pretest) + tuple(C.covariates), cluster=C.student_id, school=C.school, by=C.subject)
    messages = []
    for sample in (bad.school_sample(categorical=keys, lazy=True), bad.school_sample(categorical=keys)):
        with pytest.raises(DataError, match="must be 0/1") as err:
            school_effects(sample, **kw)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("run", [1, 3, 30])
def test_cluster_order_by_runs_is_the_stable_sort(run):
    """``cluster_order`` orders rows in long runs of one cluster by their runs (``_run_order``),
    others by radix passes: numpy's stable argsort either way (runs of about 1, 3 and 30 rows,
    codes in 16 and 64 bits, one cluster in several runs)."""
    from pleval.inference.robust import cluster_order

    rng = np.random.default_rng(run)
    for dtype in (np.int16, np.int64):
        k = 4000 // run
        codes = np.repeat(rng.integers(0, 50, k), rng.integers(1, 2 * run + 1, k)).astype(dtype)
        order, counts = cluster_order(codes, 60)
        np.testing.assert_array_equal(order, np.argsort(codes, kind="stable"))
        np.testing.assert_array_equal(counts, np.bincount(codes, minlength=60))
