"""``tie_cap``: at most M comparisons per nearest-neighbour set when ties are kept, the tied ones
by a fixed rotation over hashed ids — checked against a literal, row-by-row construction."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pleval.data import SAMPLE_COLUMNS as C
from pleval.data import validate
from pleval.matching import match
from pleval.matching.nearest import (TIE_TOL, _capped_ranges, _capped_within, _group_ranks, _ranks, _SortedSearch,
                                     hashed_ranks, match_nearest)


def _literal(t_x, c_x, t_cell, c_cell, k, cap, caliper, c_key, t_key):
    """The capped sets one treated row at a time: every comparison of the cell within the
    caliper by distance; d_k; all within d_k when at most ``cap``, else the strictly closer ones
    and the rotation's window of the tied ones (in c_key order), the window of the r-th treated
    row of its (cell, coordinates) group (by t_key) starting at r·places mod T."""
    t_x, c_x = np.atleast_2d(t_x.T).T, np.atleast_2d(c_x.T).T
    cap = max(cap, k)
    group = {}
    for i in np.argsort(t_key, kind="stable"):
        g = (t_cell[i], *t_x[i])
        group.setdefault(g, []).append(i)
    rank = {i: r for g in group.values() for r, i in enumerate(g)}
    sets = {}
    for i in range(len(t_x)):
        js = np.flatnonzero(c_cell == t_cell[i])
        d = np.sqrt(((c_x[js] - t_x[i]) ** 2).sum(axis=1))
        ok = d <= caliper
        js, d = js[ok], d[ok]
        if not len(js):
            continue
        dk = np.sort(d)[min(k, len(d)) - 1]
        inside = d <= dk + TIE_TOL
        js, d = js[inside], d[inside]
        if len(js) <= cap:
            sets[i] = set(js.tolist())
            continue
        strict = js[d < dk - TIE_TOL]
        tied = js[d >= dk - TIE_TOL]
        tied = tied[np.argsort(c_key[tied], kind="stable")]
        places, T = cap - len(strict), len(tied)
        off = (rank[i] * places) % T
        sets[i] = set(strict.tolist()) | {int(tied[(off + j) % T]) for j in range(places)}
    return sets


def _as_sets(nm):
    out = {}
    for t, c in zip(nm.t_row.tolist(), nm.c_row.tolist()):
        out.setdefault(t, set()).add(c)
    return out


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("k,cap", [(1, 1), (1, 3), (2, 3), (3, 5), (2, 40)])
def test_capped_sets_are_the_literal_rotation(dim, k, cap):
    """On heavily tied coordinates (a coarse grid: many distances of 0 and equal distances on
    both sides), with cells and a caliper, the capped sets and their weights 1/m are the literal
    construction's, for 1-D scores (sorted search) and 2-D coordinates (KD-tree)."""
    rng = np.random.default_rng(11 + dim + 10 * k + cap)
    n_capped = 0
    for rep in range(6):
        n_t, n_c = int(rng.integers(5, 60)), int(rng.integers(5, 200))
        shape = (n_t,) if dim == 1 else (n_t, 2)
        t_x = rng.integers(0, 6, shape).astype(float) * 0.5
        c_x = rng.integers(0, 6, (n_c,) if dim == 1 else (n_c, 2)).astype(float) * 0.5
        t_cell, c_cell = rng.integers(0, 3, n_t), rng.integers(0, 3, n_c)
        c_key, t_key = rng.permutation(n_c), rng.permutation(n_t)
        caliper = [np.inf, 1.0][rep % 2]
        nm = match_nearest(t_x, c_x, k=k, caliper=caliper, t_cell=t_cell, c_cell=c_cell, tie_cap=cap,
                           c_key=c_key, t_key=t_key)
        want = _literal(t_x, c_x, t_cell, c_cell, k, cap, caliper, c_key, t_key)
        assert _as_sets(nm) == want, rep
        m = np.bincount(nm.t_row, minlength=n_t)
        np.testing.assert_array_equal(nm.n_matched, m)
        np.testing.assert_array_equal(nm.weight, 1.0 / m[nm.t_row])
        assert np.all(np.diff(nm.t_row) >= 0)  # grouped by treated row, ascending
        full = _as_sets(match_nearest(t_x, c_x, k=k, caliper=caliper, t_cell=t_cell, c_cell=c_cell))
        n_capped += sum(len(full[i]) > max(cap, k) for i in full)
        assert all(want[i] == full[i] for i in full if len(full[i]) <= max(cap, k))  # the rest as uncapped
    assert n_capped > 0 or cap == 40


def test_rotation_covers_the_tied_comparisons_evenly_and_chunks_change_nothing():
    """n treated rows of one pattern and T comparisons tied at distance 0: each comparison serves
    ⌊nM/T⌋ or ⌈nM/T⌉ sets; and the chunks of treated rows do not change the pairs."""
    n, T, M = 7, 30, 4
    t_x, c_x = np.zeros(n), np.zeros(T)
    nm = match_nearest(t_x, c_x, k=1, tie_cap=M, c_key=np.arange(T)[::-1], t_key=np.arange(n))
    uses = np.bincount(nm.c_row, minlength=T)
    assert uses.sum() == n * M and set(uses.tolist()) <= {n * M // T, -(-n * M // T)}
    rng = np.random.default_rng(2)
    t_x, c_x = rng.integers(0, 4, 300) * 1.0, rng.integers(0, 4, 500) * 1.0
    s = _SortedSearch(c_x, np.zeros(500, np.int64), np.arange(500), t_x, np.zeros(300, np.int64), np.inf)
    d_k = s.kth(np.arange(300), 2)
    c_key, t_key = rng.permutation(500), rng.permutation(300)
    rank = _group_ranks(t_x, np.zeros(300, np.int64), t_key)
    a = _capped_within(s, np.arange(300), d_k, np.inf, 6, rank, c_key)
    b = _capped_within(s, np.arange(300), d_k, np.inf, 6, rank, c_key, chunk=7)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_pairs_without_their_weights_are_the_same_pairs():
    """``weights=False`` leaves the pairs' weights out and nothing else: the same pairs,
    distances, set sizes and reasons (the weights ``1/m_i`` formed from the set sizes)."""
    rng = np.random.default_rng(5)
    t_x, c_x = rng.integers(0, 200, 400) * 1.0, rng.integers(0, 200, 900) * 1.0
    kw = dict(k=2, tie_cap=5, caliper=2.5, t_cell=rng.integers(0, 4, 400), c_cell=rng.integers(0, 3, 900),
              c_key=rng.permutation(900), t_key=rng.permutation(400))  # (cell 3: no comparison)
    full, bare = match_nearest(t_x, c_x, **kw), match_nearest(t_x, c_x, **kw, weights=False)
    assert bare.weight is None and (full.n_matched == 0).any() and len(np.unique(full.n_matched)) > 3
    for f in ("t_row", "c_row", "dist", "n_matched", "reason"):
        np.testing.assert_array_equal(getattr(bare, f), getattr(full, f))
    np.testing.assert_array_equal(full.weight, 1.0 / bare.n_matched[bare.t_row])


def test_capped_ranges_are_the_capped_pairs():
    """On one dimension the capped sets come from the ranges of the sorted comparisons, without
    the uncapped pairs (:func:`_capped_ranges`): the same pairs, distances and order as capping
    the uncapped pairs (:func:`_capped_within`) — whole-point and noisy scores, cells, calipers,
    k = 1-3, caps small and large, ties at d_k > 0 on both sides (the rows that fall back) and
    rotations that wrap around a run."""
    rng = np.random.default_rng(11)
    slow = wrapped = 0
    for case in range(60):
        n_t, n_c = int(rng.integers(1, 80)), int(rng.integers(1, 400))
        t_x = rng.integers(0, 6, n_t) * 1.0
        c_x = rng.integers(0, 6, n_c) * 1.0
        if case % 3 == 2:
            c_x[rng.random(n_c) < 0.3] += 0.25  # values between the whole points
        t_cell, c_cell = rng.integers(0, 1 + case % 3, n_t), rng.integers(0, 1 + case % 3, n_c)
        caliper = [np.inf, 1.0, 2.5][case % 3]
        k, cap = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        cap = max(cap, k)
        c_key, t_key = rng.permutation(n_c), rng.permutation(n_t)
        s = _SortedSearch(c_x, c_cell, _ranks(c_key), t_x, t_cell, caliper)  # as match_nearest builds it
        d_k = s.kth(np.arange(n_t), k)
        rows = np.flatnonzero(np.isfinite(d_k))
        rank = _group_ranks(t_x, t_cell, t_key)
        want = _capped_within(s, rows, d_k, caliper, cap, rank, c_key)
        got = _capped_ranges(s, rows, d_k, caliper, cap, rank, c_key)
        for x, y in zip(got, want):
            assert x.dtype == y.dtype and np.array_equal(x, y), case
        tied = want[2] >= d_k[want[0]] - TIE_TOL
        m = np.bincount(want[0], minlength=n_t)
        below, above = np.zeros(n_t, bool), np.zeros(n_t, bool)
        below[want[0][tied & (c_x[want[1]] < t_x[want[0]])]] = True
        above[want[0][tied & (c_x[want[1]] > t_x[want[0]])]] = True
        slow += int((below & above & (m == cap)).sum())
        at = np.empty(n_c, np.int64)
        at[s.right] = np.arange(n_c)  # each comparison's place in the sorted order
        p, r = at[want[1][tied]], want[0][tied]
        span = np.zeros(n_t, np.int64)
        np.maximum.at(span, r, p)
        low = np.full(n_t, n_c)
        np.minimum.at(low, r, p)
        one_run = below ^ above | (np.bincount(r, minlength=n_t) > 0) & ~below & ~above
        wrapped += int((one_run & (m == cap) & (span - low + 1 > np.bincount(r, minlength=n_t))).sum())
    assert slow > 0 and wrapped > 0


def test_sorted_search_orders_runs_and_mirrors_them():
    """_SortedSearch: the comparisons sorted by (cell, value, priority) (``right``), its runs of
    one (cell, value) each (``run_start``), and ``left`` each run reversed — against a lexsort,
    with cells and without, one-row runs only, and the order given (``by_prio``) or not."""
    rng = np.random.default_rng(4)
    for case in range(30):
        n_c, n_t = int(rng.integers(1, 300)), int(rng.integers(1, 50))
        c_x = rng.integers(0, [3, 8, 10_000][case % 3], n_c) * 0.5
        c_cell = rng.integers(0, 1 + case % 2 * 3, n_c)
        t_x, t_cell = rng.integers(0, 8, n_t) * 0.5, rng.integers(0, 1 + case % 2 * 3, n_t)
        prio = _ranks(rng.permutation(n_c))
        by_prio = np.argsort(prio)
        want = np.lexsort((prio, c_x, c_cell))
        for s in (_SortedSearch(c_x, c_cell, prio, t_x, t_cell, np.inf),
                  _SortedSearch(c_x, c_cell, prio, t_x, t_cell, np.inf, by_prio=by_prio)):
            assert np.array_equal(s.right, want)
            cx, cc = c_x[want], c_cell[want]
            new = np.concatenate([[True], (cx[1:] != cx[:-1]) | (cc[1:] != cc[:-1])])
            assert np.array_equal(s.run_start, np.flatnonzero(new))
            run = np.cumsum(new) - 1
            assert np.array_equal(s.left, want[np.lexsort((-prio[want], run))])


def test_positions_and_ranks_are_int32_below_two_to_the_31():
    """The sorted search's arrays of positions and ranks (``right``, ``left``, ``prio``), the ranks
    of ``_order_ranks`` and of :func:`distinct_hashed_ranks` are ``int32`` (half the bytes of the
    per-comparison arrays at 10M rows), chosen by the count: ``int64`` from 2³¹ on."""
    from pleval.matching.nearest import _order_ranks, _positions_dtype, distinct_hashed_ranks

    assert _positions_dtype(2**31 - 1) == np.int32 and _positions_dtype(2**31) == np.int64
    rng = np.random.default_rng(5)
    key = rng.integers(0, 1000, 500)
    o, r = _order_ranks(key)
    assert o.dtype == r.dtype == np.int32
    np.testing.assert_array_equal(o, np.argsort(key, kind="stable"))
    np.testing.assert_array_equal(r[o], np.arange(500))
    c_x = rng.integers(0, 20, 500) * 0.5
    s = _SortedSearch(c_x, rng.integers(0, 3, 500), r, c_x[:40], rng.integers(0, 3, 40), np.inf, by_prio=o)
    assert s.right.dtype == s.left.dtype == s.prio.dtype == np.int32
    assert distinct_hashed_ranks(pd.Index([f"S{i}" for i in range(50)])).dtype == np.int32


def test_long_format_in_blocks_is_that_of_the_pairs(monkeypatch):
    """_long with the comparison rows and sets looked up a block of pairs at a time (``c_map``,
    ``s_map``: what match passes, no per-pair copies) is _long of the looked-up pairs, for blocks
    smaller than, equal to and larger than the pairs."""
    import pleval.matching as pm

    rng = np.random.default_rng(9)
    n_t, n_c = 60, 500
    m = rng.integers(0, 5, n_t)  # pairs per treated row, some none
    t_row = np.repeat(np.arange(n_t), m)
    c_row = rng.integers(0, n_c, len(t_row))
    weight = 1.0 / m[t_row]
    tpos, cpos = np.sort(rng.choice(5000, n_t, replace=False)), rng.choice(5000, n_c)
    matched = m > 0
    set_index = np.cumsum(matched) - 1
    want = pm._long(tpos[matched], cpos[c_row], set_index[t_row], weight, int(matched.sum()))
    for block in (7, len(t_row), 1 << 16):
        monkeypatch.setattr(pm, "_BLOCK_PAIRS", block)
        got = pm._long(tpos[matched], c_row, t_row, weight, int(matched.sum()), c_map=cpos, s_map=set_index)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        lazy = pm.NearestSets(tpos[matched], cpos, c_row.astype(np.int32), m[matched])  # weights 1/size: the same bits
        for a, b in zip(lazy.long(), want):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_the_long_format_is_let_go_and_formed_again(tied_data):
    """A nearest-neighbour match forms its long format when first read (:class:`NearestSets`);
    ``let_go_long`` drops it and the next read forms the same arrays; the distinct rows are those
    of the long format. A match without the matcher's sets (analysis weights) keeps its own."""
    import pleval.matching as pm
    from pleval.matching.results import distinct_rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = match(validate(tied_data, C), C, method="propensity", tie_cap=4)
        weighted = match(validate(tied_data.assign(w=1.0), pm.replace(C, weight="w")), pm.replace(C, weight="w"),
                         method="propensity", tie_cap=4)
    assert isinstance(m.sets, pm.NearestSets) and "rows" not in m.__dict__
    first = [m.rows, m.set_id, m.weight]
    m.let_go_long()
    assert not {"rows", "set_id", "weight"} & set(m.__dict__)
    for a, b in zip([m.rows, m.set_id, m.weight], first):
        assert a is not b and a.dtype == b.dtype and np.array_equal(a, b)
    for a, b in zip(m._distinct, distinct_rows(m.rows, m.weight, len(m.data))):
        np.testing.assert_array_equal(a, b)
    assert weighted.sets is None
    # the rows' summed weights and the sample sizes from the distinct rows, the same as from the long
    # format (the weighted match's, all its weights 1 x the same): the long format not formed again
    want_w = np.bincount(m.rows, m.weight, len(m.data))
    m.let_go_long()
    np.testing.assert_array_equal(m.row_weights(), want_w)
    pd.testing.assert_frame_equal(m.sample_sizes(), weighted.sample_sizes())
    assert not {"rows", "set_id", "weight"} & set(m.__dict__)
    rows = weighted.rows
    weighted.let_go_long()
    assert weighted.rows is rows
    for f in ("rows", "set_id", "weight"):
        np.testing.assert_array_equal(getattr(weighted, f), getattr(m, f))


def test_hashed_ranks_depend_on_the_ids_only():
    """A total order of the distinct ids, the same for any row order or storage type, and not
    the order of the ids themselves (sequential ids are spread)."""
    ids = pd.Series([f"STU{i:07d}" for i in range(2000)])
    r = hashed_ranks(ids)
    assert sorted(r.tolist()) == list(range(2000))
    perm = np.random.default_rng(0).permutation(2000)
    np.testing.assert_array_equal(hashed_ranks(ids.iloc[perm]), r[perm])
    np.testing.assert_array_equal(hashed_ranks(ids.astype("string[pyarrow]")), r)
    np.testing.assert_array_equal(hashed_ranks(ids.to_numpy(dtype=object)), r)
    assert abs(np.corrcoef(r, np.arange(2000))[0, 1]) < 0.1
    rep = hashed_ranks(pd.Series(["b", "a", "b"]))
    assert rep[0] == rep[2] != rep[1]


def test_hashed_ranks_order_colliding_hashes_by_text(monkeypatch):
    """Ids whose 64-bit hashes collide are ranked by their text (the order is by hash, then
    text), whatever the sort of the hashes."""
    ids = pd.Series(["d", "b", "a", "c", "b", "e"])
    fake = {"a": 7, "b": 3, "c": 7, "d": 3, "e": 1}  # a/c and b/d collide
    monkeypatch.setattr(pd.util, "hash_array", lambda text, categorize: np.array([fake[t] for t in text], np.uint64))
    want = {t: i for i, t in enumerate(sorted(fake, key=lambda t: (fake[t], t)))}
    np.testing.assert_array_equal(hashed_ranks(ids), [want[t] for t in ids])


def test_searchsorted_in_sorted_order_is_numpys():
    from pleval.matching.nearest import _searchsorted

    rng = np.random.default_rng(4)
    a = np.sort(rng.integers(0, 50, 300))
    for v in (rng.integers(-5, 60, 1000), np.zeros(0, np.int64), np.array([3])):
        np.testing.assert_array_equal(_searchsorted(a, v), np.searchsorted(a, v))


@pytest.fixture(scope="module")
def tied_data():
    from pleval.simulate import simulate_matched

    return simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=12, seed=3).data


def _pairs(m, c):
    sid = m.data[c.student_id].to_numpy()
    anchor = {s: sid[r] for s, r in zip(m.set_id, m.rows) if m.data[c.treatment].iat[r] == 1}
    subj = m.data[c.subject].to_numpy()
    return sorted((anchor[s], sid[r], subj[r], round(float(w), 12)) for s, r, w in zip(m.set_id, m.rows, m.weight))


def test_match_caps_ties_the_same_way_in_any_row_order(tied_data):
    """``match(tie_cap=M)``: every set has at most M comparisons, the matched pairs (by student
    id) and weights are the same for shuffled rows, and a cap at least the largest set, or 0, is
    the uncapped match; without a student id nothing is capped."""
    df = tied_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = match(validate(df, C), C, method="propensity", tie_cap=0)
        tr = full.data[C.treatment].to_numpy()[full.rows] == 1
        biggest = int(np.bincount(full.set_id[~tr]).max())
        assert biggest > 4  # ties are heavy here
        capped = match(validate(df, C), C, method="propensity", tie_cap=4)
        shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
        capped2 = match(validate(shuffled, C), C, method="propensity", tie_cap=4)
        same = match(validate(df, C), C, method="propensity", tie_cap=biggest)
    t2 = capped.data[C.treatment].to_numpy()[capped.rows] == 1
    assert np.bincount(capped.set_id[~t2]).max() == 4
    assert capped.options["tie_cap"] == 4 and full.options["tie_cap"] == 0
    assert _pairs(capped, C) == _pairs(capped2, C)
    assert _pairs(same, C) == _pairs(full, C)
    with pytest.raises(Exception, match="tie_cap"):
        match(validate(df, C), C, method="propensity", tie_cap=-1)


def test_default_cap_leaves_the_sample_data_uncapped():
    """The sample data's largest set (22) is below the default cap: the default match has every
    tie (the same sets and weights; members within a set in hashed-id order)."""
    from pleval.data import read_table
    from pleval.matching import TIE_CAP

    df = read_table("sample_data/pl_matched_students.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = match(df, C, method="propensity")
        b = match(df, C, method="propensity", tie_cap=0)
    assert a.options["tie_cap"] == TIE_CAP
    o, p = np.lexsort((a.rows, a.set_id)), np.lexsort((b.rows, b.set_id))
    for x in ("rows", "set_id", "weight"):
        np.testing.assert_array_equal(getattr(a, x)[o], getattr(b, x)[p])


def test_ids_of_some_rows_are_their_own_factorization():
    """``_ids_of``: the ids' factorization of some rows, taken from that of more rows, is
    ``pd.factorize`` of those rows (codes and distinct ids, including when an id's first row is
    not taken, so the order of first appearance changes), and their ranks order the ids as
    :func:`hashed_ranks` of those rows does; a missing id gives None (factorized afresh)."""
    from pleval.matching import _ids_of
    from pleval.matching.nearest import distinct_hashed_ranks

    rng = np.random.default_rng(7)
    ids = pd.Series([f"S{i:04d}" for i in rng.integers(0, 300, 2000)], dtype="str")
    f = pd.factorize(ids)
    value = (f, distinct_hashed_ranks(f[1]))
    first_rows = np.unique(f[0], return_index=True)[1]
    for pos in (np.sort(rng.choice(2000, 1500, replace=False)),  # some ids' first rows left out
                np.setdiff1d(np.arange(2000), first_rows[:40]),  # certainly
                np.arange(0, 2000, 2), np.arange(2000)):
        (codes, uniq), ranks = _ids_of(value, pos)
        want_codes, want_uniq = pd.factorize(ids.iloc[pos])
        np.testing.assert_array_equal(codes, want_codes)
        pd.testing.assert_index_equal(uniq, want_uniq)
        np.testing.assert_array_equal(np.argsort(ranks[codes], kind="stable"),
                                      np.argsort(hashed_ranks(ids.iloc[pos]), kind="stable"))
    gap = pd.Series(["a", None, "b", "a"], dtype="str")
    fg = pd.factorize(gap)
    assert _ids_of((fg, distinct_hashed_ranks(fg[1])), np.array([0, 1, 3])) is None


def test_a_store_marked_for_its_last_use_gives_its_entries_up():
    """``_reused``: a store keeps what it makes and gives it again; marked by ``last_use``, it gives
    an entry once (letting it go) and keeps nothing new, so a later call makes it afresh."""
    from pleval.matching import _LAST_USE, _reused, last_use

    made = []

    def make():
        made.append(1)
        return np.arange(3)

    idx = pd.Index([4, 5, 6])
    store: dict = {}
    a = _reused(store, "x", idx, make)
    assert _reused(store, "x", idx, make) is a and len(made) == 1 and "x" in store
    last_use(store)
    assert _reused(store, "x", idx, make) is a and len(made) == 1
    assert set(store) == {_LAST_USE}
    assert _reused(store, "x", idx, make) is not a and len(made) == 2 and set(store) == {_LAST_USE}


def test_kept_codes_are_int32(tied_data):
    """The codes a match keeps beside the data (the student ids' factorization) and those a school
    sample keeps (its columns' ``pd.factorize``, the sorted levels') are ``int32``: the same
    codes as pandas', half the bytes."""
    from pleval.matching._design import factorize

    s = pd.Series(["b", "a", None, "b"], dtype="str")
    codes, uniq = factorize(s)
    assert codes.dtype == np.int32
    np.testing.assert_array_equal(codes, pd.factorize(s)[0])
    codes, uniq = factorize(s, sort=True)
    np.testing.assert_array_equal(codes, pd.factorize(s, sort=True)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = match(validate(tied_data, C), C, method="propensity", tie_cap=4)
    assert m.factorized[C.student_id][0].dtype == np.int32
    ss = m.school_sample([C.treatment, C.student_id, C.school, C.subject], categorical={C.student_id, C.school},
                         lazy=True)
    ss.codes(C.school), ss.level_codes(C.subject)
    assert ss.distinct_in_data([C.student_id, C.subject])
    assert {f[0].dtype for f in ss.factorized.values()} == {np.dtype(np.int32)}


@pytest.mark.parametrize("discard", ["none", "both"])
def test_ids_coded_beside_the_fit_change_nothing(tied_data, monkeypatch, discard):
    """With a free core, ``match`` codes the student ids (the tie cap's) in a second thread while
    the propensity model is fitted, on the rows before the fit's exclusions (then taken for the
    rows left), and forms the exact-match cells of the rows left in the fit's thread: the same
    match as in one thread, and the ids are coded once."""
    import threading

    import pleval.matching as pm
    from pleval import _workers

    calls, threads_of = [], {}
    real, real_fit, real_cells = pm._student_ids, pm.fit_propensity, pm.combine_codes
    monkeypatch.setattr(pm, "_student_ids", lambda data, sid: calls.append(len(data)) or real(data, sid))
    monkeypatch.setattr(pm, "fit_propensity", lambda *a, **k: threads_of.setdefault("fit", threading.get_ident())
                        and real_fit(*a, **k))
    monkeypatch.setattr(pm, "combine_codes", lambda *a, **k: threads_of.setdefault("cells", threading.get_ident())
                        and real_cells(*a, **k))
    got = {}
    for threads in (1, 2):
        monkeypatch.setattr(_workers, "compute_threads", lambda n=threads: n)
        threads_of.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got[threads] = match(validate(tied_data, C), C, method="propensity", tie_cap=4, discard=discard,
                                 caliper=0.05)
        assert set(threads_of) == {"fit", "cells"} and threads_of["fit"] == threads_of["cells"]
    a, b = got[1], got[2]
    assert calls == [len(a.data), len(tied_data)] and len(a.data) == len(b.data)
    assert discard == "none" or len(a.data) < len(tied_data)
    for f in ("rows", "set_id", "weight", "set_school"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    np.testing.assert_array_equal(a.factorized[C.student_id][0], b.factorized[C.student_id][0])
    np.testing.assert_array_equal(np.argsort(a.id_ranks), np.argsort(b.id_ranks))
    pd.testing.assert_frame_equal(a.unmatched, b.unmatched)


def test_positions_of_labels_among_more_labels():
    """``_positions``: where labels are in a unique parent index (binary search when both are
    increasing integers, a hash lookup otherwise); None when a label is not there or the parent
    repeats labels."""
    from pleval.matching import _positions

    parent = pd.Index([2, 3, 5, 8, 13, 21])
    np.testing.assert_array_equal(_positions(parent, pd.Index([3, 8, 21])), [1, 3, 5])
    np.testing.assert_array_equal(_positions(parent, pd.Index([21, 3])), [5, 1])
    assert _positions(parent, pd.Index([3, 4])) is None
    assert _positions(parent, pd.Index([3, 34])) is None
    assert _positions(pd.Index([1, 1, 2]), pd.Index([1])) is None
    np.testing.assert_array_equal(_positions(pd.Index(["b", "a", "c"]), pd.Index(["c", "b"])), [2, 0])
    assert len(_positions(parent, parent[:0])) == 0


@pytest.mark.parametrize("parent", [pd.RangeIndex(0, 5_000), pd.RangeIndex(7, 5_007), pd.RangeIndex(5, 15_005, 3),
                                    pd.RangeIndex(10, -20, -2), pd.RangeIndex(0, 0)])
def test_positions_in_a_range_index_are_those_of_a_lookup(parent):
    """``_positions`` in a ``RangeIndex`` (a file's rows), found by arithmetic: the positions of
    ``get_indexer`` for labels in increasing or any order, the whole index, and None for a label
    between or beyond its labels (also labels near the int64 limits, which the arithmetic must
    not wrap)."""
    from pleval.matching import _positions

    rng = np.random.default_rng(len(parent))
    n = len(parent)
    cases = [pd.Index(np.array([], dtype=np.int64)), pd.Index([0, 10**18]), pd.Index([-2**63, 2**63 - 1])]
    if n:
        cases += [parent[np.sort(rng.choice(n, n // 2, replace=False))], parent[rng.permutation(n)[:10]], parent,
                  pd.Index(parent.to_numpy()), pd.Index([parent[0], parent[-1] + parent.step]), pd.Index([parent[0] + 1])]
    for index in cases:
        want = parent.get_indexer(index)
        got = _positions(parent, index)
        if (want < 0).any():
            assert got is None, index
        else:
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("parent", [pd.RangeIndex(-30_000, 30_000), pd.RangeIndex(-2**63, 2**63 - 1, 2**62),
                                    pd.RangeIndex(2**63 - 1, -2**63, -2**62)])
def test_positions_in_a_range_index_do_not_wrap(parent):
    """``_positions`` in a ``RangeIndex`` whose positions do not fit the labels' integer type
    (int16 labels 60,000 positions apart; before the fix they wrapped to negative positions, and
    int8 labels raised OverflowError), or whose labels span more than int64 holds (the
    differences to its start wrapped): the positions of ``get_indexer``."""
    from pleval.matching import _positions

    labels = parent[[-1, 0, len(parent) // 2]].to_numpy()
    cases = [pd.Index(labels)]
    for t in (np.int8, np.int16, np.int32):
        fits = labels[(labels >= np.iinfo(t).min) & (labels <= np.iinfo(t).max)]
        cases.append(pd.Index(fits.astype(t), dtype=t))
    for index in cases:
        if len(index):
            np.testing.assert_array_equal(_positions(parent, index), parent.get_indexer(index), err_msg=str(index))


@pytest.mark.parametrize("threads, discard", [(1, "none"), (2, "none"), (2, "both")])
def test_a_match_of_some_rows_takes_the_ids_of_a_match_of_more(tied_data, monkeypatch, threads, discard):
    """``match(..., _reuse=reuse_store(m))`` on some of ``m.data``'s rows (with another
    treatment, as a placebo round) is the fresh match of those rows, without hashing the ids;
    with a free core the ids are taken in a second thread beside the fit (for the rows before its
    exclusions, then for the rows left), the same match."""
    import pleval.matching as pm
    from pleval import _workers

    monkeypatch.setattr(_workers, "compute_threads", lambda: threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = validate(tied_data, C)
        m = match(v, C, method="propensity", tie_cap=4)
        comp = v.data[v.data[C.treatment] == 0]
        schools = comp[C.school].unique()
        sub = comp.assign(**{C.treatment: comp[C.school].isin(schools[::4]).astype(int)})
        vs = pm.replace(v, data=sub)
        fresh = match(vs, C, method="propensity", tie_cap=4, discard=discard, caliper=0.05)
        calls = []
        monkeypatch.setattr(pm, "distinct_hashed_ranks", lambda *a: calls.append(a))
        store = pm.reuse_store(m)
        taken = match(vs, C, method="propensity", tie_cap=4, discard=discard, caliper=0.05, _reuse=store)
    assert not calls and store[("ids", C.student_id)][0].equals(sub.index if threads > 1 else taken.data.index)
    assert discard == "none" or len(taken.data) < len(sub)
    for f in ("rows", "set_id", "weight", "set_school"):
        np.testing.assert_array_equal(getattr(taken, f), getattr(fresh, f))
    (a, ua), (b, ub) = taken.factorized[C.student_id], fresh.factorized[C.student_id]
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_index_equal(ua, ub)


def test_a_binding_cap_is_counted_and_named_in_the_method():
    """Which tied comparisons fill a set at the cap depends on the hashed student ids, so a run
    whose cap binds says so: the diagnostic counts the sets at the cap (exactly those whose
    uncapped set has at least tie_cap members) and the method text names the cap. Before
    2026-12-04 Mahalanobis matching on the sample (221 sets at the cap) read "ties kept" as if
    every tie were."""
    from pleval.matching.results import AT_TIE_CAP

    df = pd.read_csv("sample_data/pl_matched_students.csv")
    capped = match(df, C, method="mahalanobis")
    every = match(df, C, method="mahalanobis", tie_cap=0)
    sizes = every.matched[every.matched["treatment"] == 0].groupby("_set").size()
    n = int((sizes >= 25).sum())
    assert n > 0 and capped.diagnostics[AT_TIE_CAP] == n
    assert f"ties kept up to 25 per set, {n:,} sets at the cap" in capped._method_label()
    assert AT_TIE_CAP not in every.diagnostics and every._method_label().endswith("ties kept)")
    plain = match(df, C, method="propensity")  # the sample's propensity sets (at most 22) are not capped
    assert plain.diagnostics[AT_TIE_CAP] == 0 and plain._method_label().endswith("ties kept)")


def test_the_cap_named_is_the_one_applied_when_k_exceeds_it():
    """The cap applied is max(tie_cap, k): with k = 3 and tie_cap = 2 the text says 3 (it said 2
    beside sets of 3)."""
    df = pd.read_csv("sample_data/pl_matched_students.csv")
    m = match(df, C, method="mahalanobis", k=3, tie_cap=2)
    assert "ties kept up to 3 per set" in m._method_label()
    sizes = m.matched[m.matched["treatment"] == 0].groupby("_set").size()
    assert sizes.max() == 3


def test_a_search_that_keeps_every_tie_forms_no_left_order_and_finds_runs_by_table():
    """``_SortedSearch``: ``left`` (each run reversed) is formed when first read, as before, and a
    tie-capped match (``kth``, ``_capped_ranges``) reads none of it; ``run_of`` is the run of each
    sorted position (a search of the run starts); ``kth`` with k = 1 is the nearest eligible
    distance, as the k-th of the sorted candidates."""
    from pleval.matching.nearest import _kth_of

    rng = np.random.default_rng(9)
    c_x, t_x = rng.integers(0, 30, 400).astype(float), rng.integers(0, 30, 150).astype(float)
    c_cell, t_cell = rng.integers(0, 3, 400), rng.integers(0, 3, 150)
    c_key, t_key = rng.permutation(400), rng.permutation(150)
    s = _SortedSearch(c_x, c_cell, _ranks(c_key), t_x, t_cell, 2.0)
    rows = np.arange(150)
    both = _SortedSearch(c_x, c_cell, _ranks(c_key), t_x, t_cell, 2.0)  # (reads the left order: a search of its own)
    for k in (1, 2, 3):  # the distances of the left order (each run reversed), as before
        _, dist = both._sides(rows, k)
        np.testing.assert_array_equal(s.kth(rows, k), _kth_of(np.sort(dist, axis=1), np.ones_like(dist), k))
    d_k = s.kth(rows, 1)
    got = _capped_ranges(s, np.flatnonzero(np.isfinite(d_k)), d_k, 2.0, 4, _group_ranks(t_x, t_cell, t_key), c_key)
    assert len(got[0]) and "left" not in s.__dict__
    pos = np.arange(len(s.keys))
    np.testing.assert_array_equal(s.run_of(pos), np.searchsorted(s.run_start, pos, side="right") - 1)
    ends = np.append(s.run_start[1:], len(s.keys))
    want = np.concatenate([s.right[a:b][::-1] for a, b in zip(s.run_start, ends)])
    np.testing.assert_array_equal(s.left, want)


def test_group_ranks_by_codes_are_those_of_the_lexsort():
    """``_group_ranks`` on one coordinate (radix passes over the groups' codes): each treated row's
    rank by key among the rows of its cell and coordinate, ties by position, as by a lexsort of
    (cell, coordinate, key) — with 0.0 and -0.0 one coordinate, repeated keys and infinite
    coordinates."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, 2_000) * 0.5
    x[rng.random(2_000) < 0.05] = -0.0
    x[rng.random(2_000) < 0.02] = np.inf
    cell, key = rng.integers(0, 4, 2_000), rng.integers(0, 300, 2_000)
    o = np.lexsort((key, x, cell))
    same = np.concatenate([[False], (cell[o][1:] == cell[o][:-1]) & (x[o][1:] == x[o][:-1])])
    pos = np.arange(len(o))
    want = np.empty(len(o), np.int64)
    want[o] = pos - np.maximum.accumulate(np.where(~same, pos, 0))
    np.testing.assert_array_equal(_group_ranks(x, cell, key), want)


def test_patterns_cells_and_codes_of_some_rows_from_those_of_more_rows():
    """The ``_reuse`` entries of some rows taken from those of more rows (the placebo rounds'
    first match, from the analysis's): the covariate patterns and their first rows, renumbered
    in order of first appearance among the rows taken, and the categorical codes over the levels
    that occur — ``design_patterns`` of those rows alone; a column's codes as ``codes_and_levels``
    gives them (narrowed); the cells equal where the rows' cells are."""
    from pleval.matching import _cells_of, _codes_of, _patterns_of, _renumbered
    from pleval.matching._design import codes_and_levels, combine_codes
    from pleval.matching.propensity import design_patterns

    rng = np.random.default_rng(2)
    n = 3_000
    d = pd.DataFrame({"x": rng.integers(0, 6, n), "race": pd.array(rng.choice(list("abcd"), n), dtype="str"),
                      "subject": pd.array(rng.choice(["math", "reading"], n), dtype="str")})
    d.loc[:1000, "race"] = "a"  # "b", "c" and "d" first seen later; and rows taken without "d"
    d.loc[d.index % 7 == 0, "race"] = "d"
    pats = design_patterns(d, ["x", "race"])
    cells = combine_codes(d, ["subject", "x"])
    for pos in (np.flatnonzero(d.index % 7 != 0), np.flatnonzero(rng.random(n) < 0.5), np.arange(n), np.arange(0)):
        sub = d.iloc[pos].reset_index(drop=True)
        want, got = design_patterns(sub, ["x", "race"]), _patterns_of(pats, pos)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2].keys() == want[2].keys() == {"race"}
        np.testing.assert_array_equal(got[2]["race"][0], want[2]["race"][0])
        np.testing.assert_array_equal(got[2]["race"][1], want[2]["race"][1])
        codes, levels = _codes_of(codes_and_levels(d["race"]), pos)
        want_codes, want_levels = codes_and_levels(sub["race"])
        assert codes.dtype == np.int32
        np.testing.assert_array_equal(codes, want_codes)
        np.testing.assert_array_equal(levels, want_levels)
        fresh, taken = combine_codes(sub, ["subject", "x"]), _cells_of(cells, pos)
        np.testing.assert_array_equal(pd.factorize(taken)[0], pd.factorize(fresh)[0])
    assert _renumbered(np.array([0, -1, 1]), 2, np.array([0, 1])) is None
    new, old = _renumbered(np.array([2, 0, 1, 2, 0]), 3, np.array([4, 3, 2, 0]))
    np.testing.assert_array_equal(new, [0, 1, 2, 1])
    np.testing.assert_array_equal(old, [0, 2, 1])


@pytest.mark.parametrize("block", [3, 7, 1 << 16])
def test_nearest_sets_long_format_is_that_of_the_pairs(monkeypatch, block):
    """``NearestSets.long`` (each set's number and weights repeated, the comparisons' rows placed
    a block of pairs at a time): the long format ``_long`` forms from the pairs, with blocks that
    start and end inside sets."""
    import pleval.matching as pm

    rng = np.random.default_rng(block)
    sizes = rng.integers(1, 9, 40)
    t_pos = np.sort(rng.choice(500, 40, replace=False))
    c_pos = np.sort(rng.choice(500, 90, replace=False))
    c_row = rng.integers(0, 90, int(sizes.sum()))
    want = pm._long(t_pos, c_row, np.repeat(np.arange(40), sizes), None, 40, c_map=c_pos)
    monkeypatch.setattr(pm, "_BLOCK_PAIRS", block)
    got = pm.NearestSets(t_pos, c_pos, c_row, sizes).long()
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("some_without_outcome", [False, True])
def test_ids_factorized_ahead_are_the_ones_the_match_takes(tied_data, monkeypatch, some_without_outcome):
    """``check(..., keep_validated=True, _ids_ahead=True)`` (``pleval estimate``) starts
    ``pd.factorize`` of the validated rows' student ids in a thread
    (:func:`pleval.data.factorize_ahead`); the propensity match of that record takes it — for its
    rows with an outcome too, renumbered, when some rows have none — instead of coding the ids
    itself beside the fit, and matches exactly as without it (the ids' codes, distinct ids and
    ranks equal, with their types). The record gives it up to the match."""
    import pleval.matching as pm
    from pleval import _workers
    from pleval.checks import check
    from pleval.data import factorized_ahead

    df = tied_data.copy()
    if some_without_outcome:  # (among them rows where an id first appears: its numbering changes)
        df.loc[df.index[::7], C.outcome] = np.nan
    calls = []
    real = pm._student_ids
    monkeypatch.setattr(pm, "_student_ids", lambda data, sid: calls.append(len(data)) or real(data, sid))
    monkeypatch.setattr(_workers, "compute_threads", lambda: 2)
    got = {}
    for ahead in (False, True):
        report = check(df, C, keep_validated=True, _ids_ahead=ahead)
        v = report.take_validated(df, C)
        assert v is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got[ahead] = match(v, C, method="propensity", tie_cap=4)
        assert factorized_ahead(v, C.student_id) is None  # (given up, or none started)
    assert calls == [len(got[False].data)]  # coded by the match without the ids ahead only
    a, b = got[False], got[True]
    for f in ("rows", "set_id", "weight", "set_school", "id_ranks"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert getattr(a, f).dtype == getattr(b, f).dtype
    (ca, ua), (cb, ub) = a.factorized[C.student_id], b.factorized[C.student_id]
    np.testing.assert_array_equal(ca, cb)
    assert ca.dtype == cb.dtype == np.int32
    pd.testing.assert_index_equal(ua, ub, exact=True)


def test_ids_factorized_ahead_of_other_rows():
    """``_ids_ahead``: the factorization of the rows asked for from that of the rows coded ahead
    (``pd.factorize``'s, narrowed); None when one of those rows was not coded, has no id, or the
    coding failed."""
    from pleval.data import factorize_ahead, factorized_ahead
    from pleval.matching import _ids_ahead

    ids = pd.Series(["b", "a", "b", "c", None, "a"], dtype="str", index=[3, 4, 5, 6, 7, 8])
    want = pd.factorize(ids.loc[[4, 5, 6]])
    wait = lambda: (ids.index, pd.factorize(ids))  # noqa: E731
    codes, uniq = _ids_ahead(wait, pd.Index([4, 5, 6]))
    np.testing.assert_array_equal(codes, want[0])
    pd.testing.assert_index_equal(uniq, want[1])
    assert codes.dtype == np.int32
    assert _ids_ahead(wait, pd.Index([4, 7])) is None and _ids_ahead(wait, pd.Index([4, 9])) is None
    assert _ids_ahead(lambda: None, pd.Index([4])) is None

    class Record:  # (a Validated record's __dict__ is where factorize_ahead keeps its thread)
        data = pd.DataFrame({"sid": ids})

    v = Record()
    factorize_ahead(v, "sid")
    assert factorized_ahead(v, "other") is None
    index, (codes, uniq) = factorized_ahead(v, "sid")()
    assert index is v.data.index
    np.testing.assert_array_equal(codes, pd.factorize(ids)[0])
    assert factorized_ahead(v, "sid") is None


def test_ids_factorized_ahead_are_waited_for_by_a_match_that_does_not_take_them(tied_data, monkeypatch):
    """A match that does not code the student ids beside its fit (here: no tie cap) still waits for
    the thread factorizing them ahead, and gives it up: no thread of it is left running into a
    later fork (the placebo worker's)."""
    import threading
    import time

    from pleval.data import _FACTORIZED_AHEAD, factorize_ahead, factorized_ahead

    real = pd.factorize
    monkeypatch.setattr(pd, "factorize", lambda *a, **k: (time.sleep(0.5) if threading.current_thread().name
                                                          == "pleval-ahead" else None) or real(*a, **k))
    v = validate(tied_data, C)
    factorize_ahead(v, C.student_id)
    thread = v.__dict__[_FACTORIZED_AHEAD][2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        match(v, C, method="propensity", tie_cap=0)
    assert not thread.is_alive() and factorized_ahead(v, C.student_id) is None
