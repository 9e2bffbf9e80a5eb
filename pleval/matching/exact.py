"""Exact / "virtual comparison group" (VCG) many-to-one matching.

Each PL (treated) student is matched to comparison students from non-PL schools who share
its exact keys (grade, subject, gender, race/ethnicity, FRL, ... and optional school-level
traits such as urbanicity or a poverty band) and whose pretest lies within ``band`` of its
own (``|x_j − x_i| ≤ band``, up to ``TIE_TOL`` of floating-point noise; ``band = 0`` requires
an equal score). When at most ``k``
(default 51, as in the RAND/NWEA virtual comparison groups; Pane et al. 2015, 2017) qualify,
all ``n_i`` of them are kept with weight ``1/n_i``. When more qualify, nothing is drawn at
random: the set is the ``k`` closest in pretest, and the comparisons tied at the k-th closest
distance ``d_k`` share the places left. With ``c_i`` comparisons strictly closer than ``d_k``
and ``t_i`` at ``d_k``, the weights are

    1/k                       for |x_j − x_i| < d_k,
    (k − c_i) / (t_i · k)     for |x_j − x_i| = d_k,

summing to 1. The tied comparisons' weights are the exact average over every way of choosing
``k − c_i`` of them at random, so the rule is what a random tie-break gives on average, without
its noise. Closest-first (rather than RAND's uniform draw among all qualifiers) favours the
better-matched comparisons; distances within ``TIE_TOL`` are ties. A comparison student can
serve several PL students (matching with replacement).

The search is keyed and sort-based: comparison students are sorted once by (cell, pretest)
and each PL student's qualifying range is two ``searchsorted`` lookups. ``d_k`` is the k-th
smallest of two sorted runs of distances (the comparisons below the pretest, nearest first,
and those at or above it), found by a binary search for the split between the runs (the
k-th smallest of two sorted sequences): a few lookups per PL student rather than ``2k``
distances each. The set within ``d_k`` is again one contiguous range, and so are the
comparisons strictly closer than ``d_k`` (distances fall, then rise, along the range), so
every set is at most three runs of equal weight. No treated × comparison pair table is ever
built; the pairs are written once, in their final order, and only when asked for: what the
analyses read, each distinct matched row with its copies' summed weights, comes from the
ranges directly, one term per set and pretest value (:meth:`VCGSets.distinct`). Memory is
O(n + Σ m_i) for the pairs, O(n) without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .nearest import TIE_TOL

NO_CELL = "no comparison student in its exact-match cell"
NO_BAND = "no comparison student within the pretest band"


@dataclass(frozen=True)
class VCGMatch:
    """Long-format matches: ``t_row[j]`` (index into the treated rows) is matched to
    ``c_row[j]`` (index into the comparison rows) with ``weight[j]`` (summing to 1 per treated
    row); ``n_qualified`` and ``n_matched`` per treated row; ``reason`` is "" for matched rows."""

    t_row: np.ndarray
    c_row: np.ndarray
    weight: np.ndarray
    n_qualified: np.ndarray
    n_matched: np.ndarray
    reason: np.ndarray


@dataclass(frozen=True)
class VCGSets:
    """The matched sets as ranges: treated row i's set is ``order[lo[i] : lo[i] + n_matched[i]]``
    (comparison rows, sorted by cell and pretest), made of three runs of ``run_len[i]`` rows
    with weights ``run_weight[i]`` (tied at the k-th distance, strictly closer, tied; a set of
    at most k qualifiers is one run). ``groups`` are the positions in ``order`` where a new
    (cell, pretest) value starts: every run begins and ends at one of them (its bounds are
    looked up by pretest value, and whether a comparison is strictly closer than d_k depends
    on its pretest alone)."""

    order: np.ndarray
    lo: np.ndarray
    run_len: np.ndarray
    run_weight: np.ndarray
    n_qualified: np.ndarray
    n_matched: np.ndarray
    reason: np.ndarray
    groups: np.ndarray

    def pairs(self) -> VCGMatch:
        """The sets as treated × comparison pairs, in treated-row order."""
        m = self.n_matched
        t_row = np.repeat(np.arange(len(m)), m)
        c_row = self.order[np.arange(len(t_row)) - np.repeat(np.cumsum(m) - m - self.lo, m)]
        weight = np.repeat(self.run_weight.ravel(), self.run_len.ravel())
        return VCGMatch(t_row, c_row, weight, self.n_qualified, m, self.reason)

    def long(self, t_pos: np.ndarray, c_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Matched-set long format ``(rows, set_id, weight)``: each matched treated row (set ids
        0, 1, ... in treated-row order; its position ``t_pos``, weight 1), then its set's
        comparisons (positions ``c_pos``) in the order of :meth:`pairs`."""
        matched = self.n_matched > 0
        m = self.n_matched[matched]
        size = m + 1
        start = np.cumsum(size) - size
        n = int(size.sum())
        # slot j of a set reads sorted comparison lo + j − 1 (slot 0, the treated row, is overwritten)
        src = np.repeat(self.lo[matched] - start - 1, size)
        src += np.arange(n)
        rows = np.asarray(c_pos, dtype=np.int64)[self.order][np.maximum(src, 0, out=src)]
        rows[start] = t_pos[matched]
        del src
        sets = np.repeat(np.arange(len(m)), size)
        runs = np.column_stack([np.ones(len(m)), self.run_weight[matched]])
        lens = np.column_stack([np.ones(len(m), np.int64), self.run_len[matched]])
        return rows, sets, np.repeat(runs.ravel(), lens.ravel())

    def distinct(self, t_pos: np.ndarray, c_pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The distinct rows of :meth:`long` without writing it: ``(rows, weight, weight2, copies)``,
        rows ascending (positions among ``n``), per row the sum of its copies' weights, of their
        squares and the number of copies — bit for bit the sums over the long format (``bincount``
        in set order). Comparisons with one (cell, pretest) value are in the same runs of the
        same sets, so the sums are taken once per value and run: one term per (set, value) in
        set order, each value's terms added in the order the long format adds a row's copies."""
        matched = self.n_matched > 0
        n_c, n_g = len(self.order), len(self.groups)
        gid = np.zeros(n_c, np.int64)
        gid[self.groups[1:]] = 1
        np.cumsum(gid, out=gid)  # value group of each sorted comparison
        lens = self.run_len[matched].ravel()
        start = np.repeat(self.lo[matched], 3) + np.cumsum(self.run_len[matched], axis=1).ravel() - lens
        full = lens > 0  # the nonempty runs, in set order
        start, lens, wrun = start[full], lens[full], self.run_weight[matched].ravel()[full]
        g0 = gid[start]
        ng = gid[start + lens - 1] + 1 - g0  # values in each run
        total = int(ng.sum())
        g = np.repeat(g0 - (np.cumsum(ng) - ng), ng)
        g += np.arange(total)  # the value of each (run, value) term, runs in set order
        wg = np.repeat(wrun, ng)
        cnt = np.bincount(g, minlength=n_g)
        sw, sw2 = np.bincount(g, wg, n_g), np.bincount(g, np.square(wg), n_g)
        del g, wg
        # each data row's value (n_g: a matched treated row, weight 1; −1: not in the sample)
        at = np.full(n, -1, np.int64)
        at[np.asarray(c_pos, dtype=np.int64)[self.order]] = np.where(cnt[gid] > 0, gid, -1)
        at[np.asarray(t_pos, dtype=np.int64)[matched]] = n_g
        rows = np.flatnonzero(at >= 0)
        at = at[rows]
        return rows, np.append(sw, 1.0)[at], np.append(sw2, 1.0)[at], np.append(cnt, 1)[at]


@dataclass(frozen=True)
class VCGSample:
    """:class:`VCGSets` with the positions of its treated and comparison rows in the data: the
    matched sample (:meth:`long`) and its distinct rows (:meth:`distinct`) on demand."""

    sets: VCGSets
    t_pos: np.ndarray
    c_pos: np.ndarray

    def long(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.sets.long(self.t_pos, self.c_pos)

    def distinct(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.sets.distinct(self.t_pos, self.c_pos, n)


def _kth_smallest_of_runs(left, right, k: int, n: int) -> np.ndarray:
    """Per row, the k-th smallest of the values ``left(i)`` (i = 0, 1, ...) and ``right(j)``,
    each nondecreasing in its index (``inf`` past its end), by bisection on how many come from
    ``left``: the least i with ``left(i) ≥ right(k − 1 − i)`` (``right(−1) = −inf``) splits
    the k smallest into ``left(0..i−1)`` and ``right(0..k−1−i)``; n rows."""
    lo = np.zeros(n, np.int64)
    hi = np.full(n, k, np.int64)
    while True:
        act = lo < hi
        if not act.any():
            break
        mid = (lo + hi) // 2
        ge = left(mid) >= right(k - 1 - mid)
        hi = np.where(act & ge, mid, hi)
        lo = np.where(act & ~ge, mid + 1, lo)
    return np.maximum(np.where(lo >= 1, left(lo - 1), -np.inf), right(k - 1 - lo))


def _first_true(pred, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, the first p in [lo, hi) where ``pred(p)`` holds (hi if none), for a ``pred``
    false then true along p (bisection)."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        act = lo < hi
        if not act.any():
            return lo
        mid = (lo + hi) // 2
        ok = pred(np.where(act, mid, 0))
        hi = np.where(act & ok, mid, hi)
        lo = np.where(act & ~ok, mid + 1, lo)


def vcg_sets(
    t_cell,
    t_score,
    c_cell,
    c_score,
    *,
    band: float = 1.0,
    k: int = 51,
) -> VCGSets:
    """:func:`match_vcg` as ranges of the sorted comparisons (:class:`VCGSets`), before any
    pair is written."""
    if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1):
        raise DataError(f"k (comparisons per PL student) must be a positive integer; got {k!r}")
    band = float(band)
    if not (np.isfinite(band) and band >= 0):
        raise DataError(f"band must be a non-negative number of pretest points; got {band!r}")
    k = int(k)
    t_score = np.asarray(t_score, dtype=float)
    c_score = np.asarray(c_score, dtype=float)
    n_t, n_c = len(t_score), len(c_score)
    cells = np.concatenate([np.asarray(c_cell), np.asarray(t_cell)])
    if not (cells.dtype.kind in "iu" and len(cells) and cells.min() >= 0 and cells.max() < len(cells)):
        cells = pd.factorize(cells)[0]  # small non-negative integer codes are used as given: the cells' order is immaterial
    cells = cells.astype(np.int64, copy=False)
    c_cell, t_cell = cells[:n_c], cells[n_c:]

    # comparisons sorted by (cell, score); keys: cell·span + 2·rank(score) + 1
    o = np.argsort(c_score)
    xs = c_score[o]
    new = np.concatenate([[True], xs[1:] != xs[:-1]]) if n_c else np.zeros(0, bool)
    v = xs[new]
    kx = 2 * (np.cumsum(new) - 1) + 1
    span = 2 * len(v) + 2
    cs = c_cell[o]
    s = np.argsort(cs.astype(np.uint16) if n_c and cs.max() < 2**16 else cs, kind="stable")
    o = o[s]
    keys = cs[s] * span + kx[s]
    groups = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if n_c else np.zeros(0, np.int64)
    # treated rows in (cell, score) order: every lookup below then searches sorted needles (cache-friendly)
    t_order = np.lexsort((t_score, t_cell))
    # qualifying range of each treated row: values in [x − band, x + band] within its cell
    lo_key = t_cell * span + 2 * np.searchsorted(v, t_score - band - TIE_TOL, side="left")
    hi_key = t_cell * span + 2 * np.searchsorted(v, t_score + band + TIE_TOL, side="right")
    lo, hi = np.empty(n_t, np.intp), np.empty(n_t, np.intp)
    lo[t_order] = np.searchsorted(keys, lo_key[t_order], side="left")
    hi[t_order] = np.searchsorted(keys, hi_key[t_order], side="left")
    n_q = hi - lo
    big = n_q > k
    run_len = np.zeros((n_t, 3), np.int64)
    run_weight = np.zeros((n_t, 3))
    if big.any():
        r = t_order[big[t_order]]  # in (cell, score) order
        xs = c_score[o]  # sorted like keys
        tr, lr, hr = t_score[r], lo[r], hi[r]
        base = t_cell[r] * span
        # first comparison at or above the pretest: below it distances rise leftwards, from it rightwards
        mid = np.searchsorted(keys, base + 2 * np.searchsorted(v, tr, side="left"), side="left")

        def dist(p):
            return np.abs(xs[p] - tr)

        def below(i):  # i-th nearest below the pretest (inf past the range or the k nearest)
            p = mid - 1 - i
            ok = (i < k) & (p >= lr)
            return np.where(ok, dist(np.where(ok, p, 0)), np.inf)

        def above(j):  # j-th nearest at or above it; −inf for j = −1
            p = mid + j
            ok = (j >= 0) & (p < hr)
            return np.where(ok, dist(np.where(ok, p, 0)), np.where(j < 0, -np.inf, np.inf))

        d_k = _kth_smallest_of_runs(below, above, k, len(r))
        # the set: pretest within d_k (a sub-range of the band range)
        lr = np.maximum(lr, np.searchsorted(keys, base + 2 * np.searchsorted(v, tr - d_k - TIE_TOL)))
        hr = np.minimum(hr, np.searchsorted(keys, base + 2 * np.searchsorted(v, tr + d_k + TIE_TOL, side="right")))
        lo[r], hi[r] = lr, hr
        # strictly closer than d_k: a run around the pretest
        near = d_k - TIE_TOL
        c_lo = _first_true(lambda p: dist(p) < near, lr, mid)
        c_hi = _first_true(lambda p: ~(dist(p) < near), mid, hr)
        n_closer = (c_hi - c_lo).astype(float)
        share = (k - n_closer) / np.maximum(hr - lr - n_closer, 1) / k  # per tied comparison
        run_len[r] = np.column_stack([c_lo - lr, c_hi - c_lo, hr - c_hi])
        run_weight[r] = np.column_stack([share, np.full(len(r), 1.0 / k), share])
    m = hi - lo
    small = ~big
    run_len[small, 1] = m[small]
    run_weight[small, 1] = 1.0 / np.maximum(m[small], 1)

    reason = np.full(n_t, "", dtype=object)
    if n_t:
        in_cell = (np.bincount(c_cell, minlength=len(cells) + 1) > 0)[t_cell]
        reason[(m == 0) & ~in_cell] = NO_CELL
        reason[(m == 0) & in_cell] = NO_BAND
    return VCGSets(o, lo, run_len, run_weight, n_q, m, reason, groups)


def match_vcg(
    t_cell,
    t_score,
    c_cell,
    c_score,
    *,
    band: float = 1.0,
    k: int = 51,
) -> VCGMatch:
    """Match treated to comparison rows with equal ``cell`` and ``|score diff| ≤ band``:
    all of them when at most ``k`` qualify, else the ``k`` closest with ties at the k-th
    distance sharing the last places (module docstring)."""
    return vcg_sets(t_cell, t_score, c_cell, c_score, band=band, k=k).pairs()
