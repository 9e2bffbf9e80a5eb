"""Nearest-neighbour matching (1:k) on a score (the logit propensity score) or Mahalanobis distance.

For each treated unit, the ``k`` comparison units closest in distance, within the same
exact-match cell and within the caliper, are its matched set (ATT; Stuart 2010, §3.2).

* **Distance.** On a score, ``d(i, j) = |l_i − l_j|``. Mahalanobis:
  ``d(i, j) = sqrt((x_i − x_j)' S⁻¹ (x_i − x_j))`` with ``S`` the pooled within-group
  covariance of the chosen covariates (Rubin 1980); computed as a Euclidean distance after
  the transform ``z = L⁻¹ x`` (``S = L L'``).
* **Caliper.** Pairs farther apart than the caliper (an absolute distance here; the caller
  converts SD units) are not matched.
* **Ties, with replacement** (``ties=True``, the default): with ``d_k(i)`` the k-th smallest
  eligible distance of treated unit ``i``, its matched set is *every* eligible comparison with
  ``d(i, j) ≤ d_k(i)``, and each of its ``m_i`` members gets weight ``1/m_i`` (Abadie & Imbens
  2006, §2; Sekhon's ``Matching``, ``ties = TRUE``). Nothing is chosen among equals, so no
  seed, row order or label can change the set. Two distances count as equal when they differ
  by at most :data:`TIE_TOL`, 1e-9 (callers round the coordinates to a 1e-10 grid, so that
  distances equal but for floating-point noise are the same set).
* **A cap on kept ties** (``tie_cap=M``, with replacement and ties): when more than ``M``
  comparisons are within ``d_k(i)`` (on data with whole-point scores and categorical covariates
  almost every tie is at distance 0: every comparison of the treated student's covariate
  pattern in the cell, so sets grow in proportion to the pool), the set keeps the fewer than
  ``k`` strictly closer ones and ``M − s_i`` of the tied ones, chosen by a fixed rotation: the
  tied comparisons in order of ``c_key`` (callers pass a hash of the student id, so the order
  is unrelated to schools or row order), the treated rows with the same cell and coordinates
  (hence the same tied comparisons) in order of ``t_key``, and the r-th of them takes the
  ``M − s_i`` consecutive places (cyclically) from place ``r·(M − s_i) mod T_i``. The rows of a
  group so cover the ``T_i`` tied comparisons evenly (each ⌊n(M − s)/T⌋ or ⌈n(M − s)/T⌉
  times): their summed weights are as close to the uncapped ones as ``M`` places allow. No
  seed, and no dependence on row order or labels other than the ids.
* **Without replacement** (or ``ties=False``) the ``k`` best are taken by ``(distance,
  priority)``: ``c_priority`` ranks the comparisons (callers pass the rank of the student id;
  default: position). Greedy matching takes the treated units one at a time in ``order``
  ("largest" score first, as MatchIt's default, "smallest", "data" = by ``t_priority``, or
  "random" = a seeded permutation, the only use of ``seed``); equal scores go by
  ``t_priority``. With ``k ≥ 2`` it goes in rounds, as MatchIt's ``ratio``: every treated unit
  takes its best unused comparison, in ``order``, before any takes a second, and so on; a unit
  that finds none in a round takes no more (before 2026-12-05 each took all ``k`` at once, so
  the first in ``order`` used up comparisons the later ones needed). ``sided=True`` reproduces
  MatchIt's scan on a score instead: among equal distances the comparison with the smaller
  score wins, then the one nearer the treated unit in (score, position) order (among equal
  scores below it, the last in position order). Greedy matching is sequential by definition;
  the loop only walks precomputed candidate lists.

Neighbour search never forms all treated × comparison pairs. On one dimension it is a sorted
search (``searchsorted`` on (cell, value) keys: ``k`` candidates from each side give
``d_k``, and the set ``|l_j − l_i| ≤ d_k`` is one contiguous range, whose runs of equal
values give a capped set's members without listing the uncapped ones); on several it is a
``scipy.spatial.cKDTree`` over distinct comparison points ("sites", with their member counts),
``query`` for ``d_k`` and ``query_ball_point`` for the set, exact cells kept apart by an extra
coordinate far larger than any within-cell distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import DataError, DesignError
from ..inference.robust import radix_argsort

ORDERS = ("largest", "smallest", "random", "data")
TIE_TOL = 1e-9
"""Distances within this of each other are ties. Callers round the coordinates to a 1e-10 grid,
which moves a distance by up to a grid step per coordinate and endpoint (√p·1e-10 in p
dimensions), so the tolerance is ten steps: half a step (5e-11) split exact ties — PL pretests
149 kept only the comparisons at 150, not those at 148 as far away, in 155 of 481 sets (300 of
481 for Mahalanobis)."""


@dataclass(frozen=True)
class Candidates:
    """Per treated row: comparison indices sorted by (distance, priority), ``-1`` padded.

    The first ``n_safe[i]`` entries of row ``i`` are exactly the ``n_safe[i]`` best eligible
    comparisons; ``complete[i]`` means there are no eligible comparisons beyond them.
    """

    idx: np.ndarray
    dist: np.ndarray
    n_safe: np.ndarray
    complete: np.ndarray


def _positions_dtype(n: int):
    """The integer type of positions 0 … n − 1 and ranks: ``int32`` below 2³¹ (half the bytes of
    the search's per-comparison arrays), else ``int64``."""
    return np.int32 if n < 2**31 else np.int64


def _searchsorted(a, v) -> np.ndarray:
    """``np.searchsorted(a, v)`` with the needles looked up in sorted order: numpy then starts
    each search where the last ended (4× faster for 100,000 needles in 900,000 keys)."""
    o = np.argsort(v)
    out = np.empty(len(v), np.int64)
    out[o] = np.searchsorted(a, v[o])
    return out


def _lex_rows(dist, prio):
    """Per-row permutation sorting each row by (dist, prio)."""
    return np.lexsort((prio, dist), axis=1)


def _kth_of(dist, count, k):
    """Per row of ascending finite-first ``dist`` with member ``count``s: the distance at which
    the cumulative count reaches ``k`` (the last finite one if it never does; inf if none)."""
    dist = np.where(np.isfinite(dist), dist, np.inf)
    cum = np.cumsum(np.where(np.isfinite(dist), count, 0), axis=1)
    reach = cum >= k
    col = np.where(reach.any(axis=1), reach.argmax(axis=1), np.isfinite(dist).sum(axis=1) - 1)
    out = dist[np.arange(len(dist)), np.maximum(col, 0)]
    out[col < 0] = np.inf
    return out


class _SortedSearch:
    """One-dimensional search on (cell, value) keys."""

    def __init__(self, c_x, c_cell, prio, t_x, t_cell, caliper, sided=False, by_prio=None):
        """``prio`` ranks the comparisons 0 … n − 1; ``by_prio``: the comparisons in that order
        (its inverse), when already at hand."""
        self.c_x, self.t_x, self.caliper = c_x, t_x, caliper
        self.prio, self.sided = prio, sided
        self._run_of = None  # (run_of's table)
        n = len(c_x)
        if by_prio is None:
            by_prio = np.empty(n, _positions_dtype(n))
            by_prio[prio] = np.arange(n)
        codes, v = pd.factorize(c_x)  # equal values (0.0 and -0.0 too) share a code
        value_order = np.argsort(v)
        v = v[value_order]  # the distinct values, ascending
        value_rank = np.empty(len(v), np.int64)
        value_rank[value_order] = np.arange(len(v))
        u = _searchsorted(v, t_x)
        eq = (u < len(v)) & (v[np.minimum(u, len(v) - 1)] == t_x)
        tkx = 2 * u + eq  # value keys: even for a treated value between two comparison values ...
        span = 2 * len(v) + 2
        key = value_rank[codes]
        del codes
        key *= 2
        key += 1  # ... odd for the comparison values
        self.v = v
        self.t_base = np.zeros(len(t_x), np.int64)
        if c_cell.max(initial=0) > 0 or t_cell.max(initial=0) > 0:  # (int64 products: the cells may be int32)
            key += np.multiply(c_cell, span, dtype=np.int64)
            self.t_base = np.multiply(t_cell, span, dtype=np.int64)
            self.t_key = self.t_base + tkx
            self.t_lo, self.t_hi = self.t_base, self.t_base + span
        else:
            self.t_key = tkx
            self.t_lo, self.t_hi = np.full(len(t_x), -1), np.full(len(t_x), span)
        # comparisons sorted by (cell, value, priority): in priority order, then stably by their
        # (cell, value) key (a radix sort: few distinct values on whole-point scores)
        o = by_prio[radix_argsort(key[by_prio])]  # (positions: by_prio's type)
        self.keys = key[o]
        del key
        self.right = o  # ties in ascending priority
        # runs of equal keys (one cell and value each) and, for the left side, the same order with
        # each run reversed (descending priority): place j of a run [a, b] takes place a + b − j.
        # Sided (MatchIt's scan leftwards over the sorted scores), the run is not reversed: the
        # last in data order comes first (before 2026-12-05 the first did)
        newk = np.concatenate([[True], self.keys[1:] != self.keys[:-1]])
        self.run_start = np.flatnonzero(newk)

    @cached_property
    def left(self) -> np.ndarray:
        """The sorted comparisons with each run reversed (formed when first read: the searches
        that keep every tie read none of it)."""
        n, o = len(self.keys), self.right
        if len(self.run_start) == n or self.sided:  # MatchIt's scan meets a run's last row first going left
            return o
        ends = np.append(self.run_start[1:], n)
        mirror = np.repeat(self.run_start + ends - 1, ends - self.run_start)
        mirror -= np.arange(n)
        return o[mirror]

    def run_of(self, pos) -> np.ndarray:
        """The run of each sorted position ``pos`` (``np.searchsorted(run_start, pos, "right") − 1``),
        from a table over the positions (formed once: a search of unsorted positions costs more)."""
        if self._run_of is None:
            self._run_of = np.zeros(len(self.keys), _positions_dtype(len(self.keys)))
            self._run_of[self.run_start[1:]] = 1
            np.cumsum(self._run_of, out=self._run_of)
        return self._run_of[pos].astype(np.int64)

    def _sides(self, rows, K, left=True):
        """``K`` nearest comparisons on each side (left columns first), -1 where none. ``left=False``:
        for the distances only, the left side's in the right side's order (a run's comparisons share
        its value), without :attr:`left`."""
        n = len(self.keys)
        tk = self.t_key[rows]
        p = _searchsorted(self.keys, tk)
        j = np.arange(K)
        rpos = p[:, None] + j
        lpos = p[:, None] - 1 - j
        rok = rpos < n
        lok = lpos >= 0
        rpos_c = np.minimum(rpos, n - 1)
        lpos_c = np.maximum(lpos, 0)
        rok &= self.keys[rpos_c] < self.t_hi[rows, None]
        lok &= self.keys[lpos_c] >= self.t_lo[rows, None]
        ridx = np.where(rok, self.right[rpos_c], -1)
        lidx = np.where(lok, (self.left if left else self.right)[lpos_c], -1)
        idx = np.concatenate([lidx, ridx], axis=1)
        x = self.t_x[rows, None]
        dist = np.where(idx >= 0, np.abs(self.c_x[np.maximum(idx, 0)] - x), np.inf)
        dist[dist > self.caliper] = np.inf
        idx[~np.isfinite(dist)] = -1
        return idx, dist

    def kth(self, rows, k):
        """``d_k``: the k-th smallest eligible distance (the largest if fewer; inf if none)."""
        _, dist = self._sides(rows, k, left=False)  # the k-th nearest lies among the k nearest of each side
        if k == 1:  # the nearest (ineligible ones are inf)
            return dist.min(axis=1)
        return _kth_of(np.sort(dist, axis=1), np.ones_like(dist, dtype=np.int64), k)

    def span(self, rows, bound):
        """``(lo, n)``: the comparisons whose values lie within ``bound`` of each row's (give or
        take rounding: :meth:`within` checks the distances) are positions ``lo … lo + n − 1`` of
        the sorted comparisons."""
        o = np.argsort(self.t_key[rows])  # looked up in (cell, value) order: over sorted keys
        x, base, bound = self.t_x[rows][o], self.t_base[rows][o], np.broadcast_to(bound, len(rows))[o]
        lo_key = base + 2 * np.searchsorted(self.v, x - bound, side="left")
        hi_key = base + 2 * np.searchsorted(self.v, x + bound, side="right")
        lo = np.searchsorted(self.keys, lo_key, side="left")
        out = np.empty((2, len(rows)), np.int64)
        out[0, o], out[1, o] = lo, np.searchsorted(self.keys, hi_key, side="left") - lo
        return out[0], out[1]

    def within(self, rows, bound):
        """Every comparison at distance ≤ ``bound`` (one contiguous range per row): pairs
        ``(row, comparison, distance)``."""
        lo, n = self.span(rows, bound)
        t_row = np.repeat(rows, n)
        pos = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n - lo, n)
        c_row = self.right[pos]
        dist = np.abs(self.c_x[c_row] - self.t_x[t_row])
        ok = dist <= np.repeat(bound, n)  # exact, as the candidates' distances
        return t_row[ok], c_row[ok], dist[ok]

    def __call__(self, rows, K):
        idx, dist = self._sides(rows, K)
        if self.sided:  # MatchIt's scan: left side (smaller score) first, then nearer in the scan
            j = np.arange(K)
            side = np.concatenate([j, len(self.keys) + j])[None, :]
            prio = np.where(idx >= 0, side, np.iinfo(np.int64).max)
        else:
            prio = np.where(idx >= 0, self.prio[np.maximum(idx, 0)].astype(np.int64), np.iinfo(np.int64).max)
        # a side whose K-th candidate is still eligible may hold more beyond it: entries ranked
        # after that candidate are not yet certain
        lfull, rfull = idx[:, K - 1] >= 0, idx[:, 2 * K - 1] >= 0
        bd = np.full(len(rows), np.inf)
        bp = np.full(len(rows), np.iinfo(np.int64).max)
        for full, col in ((lfull, K - 1), (rfull, 2 * K - 1)):
            d_, p_ = dist[:, col], prio[:, col]
            tighter = full & ((d_ < bd) | ((d_ == bd) & (p_ < bp)))
            bd = np.where(tighter, d_, bd)
            bp = np.where(tighter, p_, bp)
        o = _lex_rows(dist, prio)
        idx = np.take_along_axis(idx, o, 1)
        dist = np.take_along_axis(dist, o, 1)
        prio = np.take_along_axis(prio, o, 1)
        safe = (idx >= 0) & ((dist < bd[:, None]) | ((dist == bd[:, None]) & (prio <= bp[:, None])))
        return Candidates(idx, dist, safe.sum(axis=1), ~(lfull | rfull))


def _row_groups(A):
    """Group identical rows of ``A`` (hash-based): returns (group id per row, first row of
    each group)."""
    gid = np.zeros(len(A), dtype=np.int64)
    for j in range(A.shape[1]):
        k, lev = pd.factorize(A[:, j])
        gid = pd.factorize(gid * (len(lev) + 1) + k)[0].astype(np.int64)
    cm = np.maximum.accumulate(gid)  # factorize numbers groups in order of first appearance
    first = np.flatnonzero(np.concatenate([[True], cm[1:] > cm[:-1]]))
    return gid, first


class _TreeSearch:
    """Multi-dimensional search: cKDTree over distinct comparison points ("sites")."""

    def __init__(self, c_z, c_cell, prio, t_z, t_cell, caliper, sided=False):
        self.caliper = caliper
        self.prio = prio
        span = np.ptp(np.vstack([c_z, t_z]), axis=0)
        big = 4.0 * float(np.sqrt((span**2).sum())) + 1.0
        self.bound = min(caliper, big / 2.0)
        if c_cell.max(initial=0) > 0 or t_cell.max(initial=0) > 0:
            c_aug = np.column_stack([c_z, c_cell * big])
            self.t_aug = np.column_stack([t_z, t_cell * big])
        else:
            c_aug, self.t_aug = c_z, t_z
        site, first = _row_groups(c_aug)
        self.site_xyz = c_aug[first]
        self.n_sites = len(first)
        n = len(prio)
        mem = np.argsort(site * n + prio.astype(np.int64))  # members of each site by ascending priority
        self.members = mem
        self.start = np.searchsorted(site[mem], np.arange(self.n_sites), side="left")
        self.count = np.bincount(site, minlength=self.n_sites)
        self.tree = cKDTree(self.site_xyz, balanced_tree=False, compact_nodes=False)

    def _site_dist(self, t, s):
        """Exact distances from query points ``t`` to sites ``s`` (one formula everywhere)."""
        diff = self.site_xyz[s] - t
        return np.sqrt(np.einsum("...k,...k->...", diff, diff))

    def kth(self, rows, k):
        Ks = min(k, self.n_sites)  # k sites hold at least k comparisons
        t = self.t_aug[rows]
        _, s = self.tree.query(t, k=Ks, distance_upper_bound=self.bound * (1 + 1e-9) + 1e-12)
        s = s.reshape(len(rows), Ks)
        found = s < self.n_sites
        s_c = np.where(found, s, 0)
        sd = self._site_dist(t[:, None, :], s_c)
        found &= sd <= self.caliper
        sd[~found] = np.inf
        o = np.argsort(sd, axis=1, kind="stable")
        return _kth_of(np.take_along_axis(sd, o, 1), np.take_along_axis(np.where(found, self.count[s_c], 0), o, 1), k)

    def within(self, rows, bound):
        t = self.t_aug[rows]
        sites = self.tree.query_ball_point(t, r=bound * (1 + 1e-9) + 1e-12, return_sorted=False)
        n = np.fromiter(map(len, sites), dtype=np.int64, count=len(rows))
        s = np.concatenate(sites).astype(np.int64) if n.sum() else np.zeros(0, np.int64)
        r = np.repeat(np.arange(len(rows)), n)
        sd = self._site_dist(t[r], s)
        ok = sd <= bound[r]
        r, s, sd = r[ok], s[ok], sd[ok]
        m = self.count[s]
        pair = np.repeat(np.arange(len(s)), m)
        pos = self.start[s][pair] + np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
        return rows[r][pair], self.members[pos], sd[pair]

    def __call__(self, rows, K):
        Ks = min(K + 1, self.n_sites)
        t = self.t_aug[rows]
        _, s = self.tree.query(t, k=Ks, distance_upper_bound=self.bound * (1 + 1e-9) + 1e-12)
        s = s.reshape(len(rows), Ks)
        found = s < self.n_sites
        s_c = np.where(found, s, 0)
        sd = self._site_dist(t[:, None, :], s_c)
        sd[~found] = np.inf
        found &= sd <= self.caliper
        sd[~found] = np.inf
        take = np.minimum(self.count[s_c], K)
        j = np.arange(K)
        ok = found[:, :, None] & (j < take[:, :, None])
        pos = np.minimum(self.start[s_c][:, :, None] + j, len(self.members) - 1)
        idx = np.where(ok, self.members[pos], -1).reshape(len(rows), Ks * K)
        dist = np.where(ok, sd[:, :, None], np.inf).reshape(len(rows), Ks * K)
        big_p = np.iinfo(np.int64).max
        prio = np.where(idx >= 0, self.prio[np.maximum(idx, 0)].astype(np.int64), big_p)
        # not yet certain: anything at or beyond the farthest site fetched when the query was
        # full, and anything ranked after a site's last fetched member when it has more
        full = found[:, -1] & (Ks < self.n_sites)
        bd = np.where(full, sd[:, -1], np.inf)
        bp = np.where(full, -1, big_p)
        trunc = found & (self.count[s_c] > K)
        if trunc.any():
            last_p = self.prio[self.members[np.minimum(self.start[s_c] + K - 1, len(self.members) - 1)]].astype(np.int64)
            d_t = np.where(trunc, sd, np.inf)
            p_t = np.where(trunc, last_p, big_p)
            o = _lex_rows(d_t, p_t)[:, 0]  # lexicographic minimum of (d_t, p_t) per row
            dmin = d_t[np.arange(len(rows)), o]
            pmin = p_t[np.arange(len(rows)), o]
            tighter = (dmin < bd) | ((dmin == bd) & (pmin < bp))
            bd = np.where(tighter, dmin, bd)
            bp = np.where(tighter, pmin, bp)
        o = _lex_rows(dist, prio)
        idx = np.take_along_axis(idx, o, 1)
        dist = np.take_along_axis(dist, o, 1)
        prio = np.take_along_axis(prio, o, 1)
        safe = (idx >= 0) & ((dist < bd[:, None]) | ((dist == bd[:, None]) & (prio <= bp[:, None])))
        complete = ~full & ~trunc.any(axis=1)
        return Candidates(idx, dist, safe.sum(axis=1), complete)


def mahalanobis_coordinates(X: np.ndarray, treated: np.ndarray, names=None) -> np.ndarray:
    """``z = L⁻¹(x − x̄)`` with ``L L' = S`` the pooled within-group covariance, so that
    Euclidean distance between rows of ``z`` is the Mahalanobis distance. ``names``: the
    columns' names, for the error on a singular ``S``."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    t1 = np.asarray(treated).astype(bool)
    n1, n0 = int(t1.sum()), int((~t1).sum())
    Xt, Xc = X[t1], X[~t1]
    S = ((n1 - 1) * np.atleast_2d(np.cov(Xt, rowvar=False)) + (n0 - 1) * np.atleast_2d(np.cov(Xc, rowvar=False))) / (
        n1 + n0 - 2
    )
    # Rank is decided explicitly, not by Cholesky failing (some LAPACK builds factor an exactly
    # singular S): S counts as singular when its correlation matrix's condition number exceeds 1e10
    # (scale-free, as the distance is; before 2026-12-04 S's own, so a column in small units failed).
    d = np.diag(S)
    eig = np.linalg.eigvalsh(S / np.sqrt(np.outer(d, d))) if (d > 0).all() else np.zeros(1)
    if not (eig[-1] > 0 and eig[0] > 1e-10 * eig[-1]):
        raise DesignError(_singular(X, t1, S, names))
    L = np.linalg.cholesky(S)
    from scipy.linalg import solve_triangular

    return solve_triangular(L, (X - X.mean(axis=0)).T, lower=True).T


def _singular(X: np.ndarray, t1: np.ndarray, S: np.ndarray, names) -> str:
    """The error for a singular pooled covariance ``S`` of the columns of ``X``: it names the first
    column that is constant (in every row, or within the PL and the comparison rows) or a
    combination of the columns before it, when the pivots find one."""
    from ..inference.robust import dependent_column

    names = list(names) if names is not None else [f"column {j + 1}" for j in range(X.shape[1])]
    j = dependent_column(S)
    culprit = ""
    if j >= 0:
        if np.ptp(X[:, j]) == 0:
            culprit = f"; {names[j]!r} takes one value in every row"
        elif np.ptp(X[t1, j]) == 0 and np.ptp(X[~t1, j]) == 0:
            culprit = f"; {names[j]!r} takes one value among the PL rows and one among the comparison rows"
        else:
            culprit = f"; {names[j]!r} is a combination of the columns before it (within the PL and comparison rows)"
    return (f"the Mahalanobis covariates have a singular covariance matrix ({', '.join(names)}){culprit}; drop the "
            "redundant covariate or match exactly on it")


@dataclass(frozen=True)
class NearestMatch:
    """Matches in long format over the treated and comparison rows passed in.

    Pair ``p`` matches treated row ``t_row[p]`` with comparison row ``c_row[p]`` at distance
    ``dist[p]`` with weight ``weight[p] = 1/m_i`` (``m_i = n_matched[i]`` comparisons in the
    set; None when not asked for); pairs come grouped by treated row in ascending order.
    ``reason[i]`` is "" for a matched treated row, otherwise why it has no match.
    """

    t_row: np.ndarray
    c_row: np.ndarray
    dist: np.ndarray
    weight: np.ndarray
    n_matched: np.ndarray
    reason: np.ndarray


def _order_ranks(x) -> tuple[np.ndarray, np.ndarray]:
    """``(order, ranks)``: the stable sort order of ``x`` and its inverse, the 0..n−1 ranks (ties
    by position), both of :func:`_positions_dtype`."""
    x = np.asarray(x)
    o = radix_argsort(x) if x.dtype.kind in "iu" and x.size and x.min() >= 0 else np.argsort(x, kind="stable")
    o = o.astype(_positions_dtype(len(o)), copy=False)
    r = np.empty(len(o), dtype=o.dtype)
    r[o] = np.arange(len(o), dtype=o.dtype)
    return o, r


def _ranks(x) -> np.ndarray:
    """0..n−1 ranks of ``x`` (ties by position)."""
    return _order_ranks(x)[1]


def _weights(t_row, n_t) -> tuple:
    """Set sizes m_i and pair weights 1/m_i."""
    m = np.bincount(t_row, minlength=n_t)
    return (1.0 / np.maximum(m, 1))[t_row], m  # 1/m_i per treated row, then per pair: one per-pair array


def match_nearest(
    t_coord,
    c_coord,
    *,
    k: int = 1,
    caliper: float = np.inf,
    replace: bool = True,
    ties: bool = True,
    t_cell=None,
    c_cell=None,
    order: str = "data",
    order_key=None,
    c_priority=None,
    t_priority=None,
    sided: bool = False,
    seed: int = 0,
    tie_cap: int = 0,
    c_key=None,
    t_key=None,
    weights: bool = True,
) -> NearestMatch:
    """1:k nearest-neighbour matching of treated rows to comparison rows (module docstring).

    ``t_coord``/``c_coord`` are 1-D (a score) or 2-D (already-transformed coordinates, e.g.
    :func:`mahalanobis_coordinates`). ``caliper`` is an absolute distance. ``t_cell``/``c_cell``
    are integer exact-match cells. ``ties`` keeps every comparison tied at the k-th distance
    (with replacement only). ``c_priority``/``t_priority`` are sort keys breaking ties when
    something must be chosen (without replacement, or ``ties=False``; default: position).
    ``order_key`` (e.g. the PS of the treated rows) drives ``order`` without replacement;
    ``seed`` is used by ``order="random"`` only. ``sided`` applies MatchIt's tie rule on a score.
    ``tie_cap`` (with ``ties``; 0 = none) keeps at most ``max(tie_cap, k)`` comparisons per set,
    the tied ones chosen by the rotation of the module docstring over the comparisons' ``c_key``
    and the treated rows' ``t_key`` (distinct sortable keys, e.g. ranks of hashed ids).
    ``weights=False`` leaves the pairs' weights ``1/m_i`` out (``weight`` None), for a caller that
    forms them from ``n_matched`` (at 10M rows an array of 24M pairs).
    """
    if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1):
        raise DataError(f"k must be a positive integer; got {k!r}")
    if order not in ORDERS:
        raise DataError(f"order must be one of {ORDERS}; got {order!r}")
    caliper = np.inf if caliper is None else float(caliper)
    if not caliper > 0:
        raise DataError(f"caliper must be positive; got {caliper!r}")
    t_coord = np.asarray(t_coord, dtype=float)
    c_coord = np.asarray(c_coord, dtype=float)
    n_t, n_c = len(t_coord), len(c_coord)
    t_cell = np.zeros(n_t, np.int64) if t_cell is None else np.asarray(t_cell, np.int64)
    c_cell = np.zeros(n_c, np.int64) if c_cell is None else np.asarray(c_cell, np.int64)
    if n_t and n_c:  # dense cell codes 0..m-1 shared by both groups
        cells = pd.factorize(np.concatenate([c_cell, t_cell]))[0]
        cells = cells.astype(_positions_dtype(len(cells)), copy=False)
        c_cell, t_cell = cells[:n_c], cells[n_c:].copy()  # (t_cell outlives the search's build, c_cell not)
        del cells
    if tie_cap and replace and ties:  # the searches order equal points by priority: here, as the cap's rotation
        c_priority = c_key
    by_prio, prio = (None, np.arange(n_c, dtype=_positions_dtype(n_c))) if c_priority is None else _order_ranks(c_priority)
    t_prio = np.arange(n_t, dtype=np.int64) if t_priority is None else _ranks(t_priority)
    reason = np.full(n_t, "", dtype=object)
    empty = np.zeros(0, np.int64)
    if n_t == 0:
        return NearestMatch(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0, np.int64), reason)
    # why a treated row can have no match at all
    in_cell = (np.bincount(c_cell, minlength=int(t_cell.max(initial=0)) + 1) > 0)[t_cell] if n_c else np.zeros(n_t, bool)
    reason[~in_cell] = "no comparison in its exact-match cell"
    if n_c == 0:
        return NearestMatch(empty, empty, np.zeros(0), np.zeros(0), np.zeros(n_t, np.int64), reason)
    one_d = t_coord.ndim == 1 or t_coord.shape[1] == 1
    if one_d:
        search = _SortedSearch(c_coord.ravel(), c_cell, prio, t_coord.ravel(), t_cell, caliper, sided, by_prio)
    else:
        search = _TreeSearch(c_coord, c_cell, prio, t_coord, t_cell, caliper)
    del by_prio, prio, c_cell  # the search holds what it reads of them

    if replace and ties:
        d_k = search.kth(np.arange(n_t), k)
        rows = np.flatnonzero(np.isfinite(d_k))
        if tie_cap:
            capped = _capped_ranges if one_d else _capped_within
            t_row, c_row, dist = capped(search, rows, d_k, caliper, max(int(tie_cap), k),
                                        _group_ranks(t_coord, t_cell, np.asarray(t_key)), np.asarray(c_key))
        else:
            t_row, c_row, dist = search.within(rows, np.minimum(d_k[rows] + TIE_TOL, caliper))
        del search  # its sorted keys are not needed for the weights
    else:
        if replace:
            idx, dmat = _with_replacement(search, n_t, k)
        else:
            idx, dmat = _greedy(search, n_t, n_c, k, order, order_key, t_prio, np.random.default_rng(seed))
        ok = idx >= 0
        t_row = np.nonzero(ok)[0]
        c_row, dist = idx[ok], dmat[ok]
    weight, m = _weights(t_row, n_t) if weights else (None, np.bincount(t_row, minlength=n_t))
    unmatched = (m == 0) & (reason == "")
    if replace:
        reason[unmatched] = "no comparison within the caliper"
    elif np.isfinite(caliper):
        reason[unmatched] = "no unused comparison within the caliper (matching without replacement)"
    else:
        reason[unmatched] = "comparisons in its exact-match cell used up (matching without replacement)"
    return NearestMatch(t_row, c_row, dist, weight, m, reason)


def hashed_ranks(ids, factorized=None) -> np.ndarray:
    """Per value of ``ids``, its rank by a fixed 64-bit hash of its text (pandas' SipHash with
    its fixed key: the same on every run and machine), then by the text: an order of the ids
    unrelated to how they are numbered (e.g. by school) and independent of row order — the
    ``c_key``/``t_key`` of ``tie_cap``. Each distinct id is hashed once. ``factorized``:
    ``pd.factorize(ids)``, when already computed."""
    if factorized is None:
        factorized = pd.factorize(np.asarray(ids, dtype=object) if not isinstance(ids, pd.Series) else ids)
    codes, uniq = factorized
    return np.where(codes >= 0, distinct_hashed_ranks(uniq)[codes], -1)


def distinct_hashed_ranks(uniq) -> np.ndarray:
    """:func:`hashed_ranks` of distinct values ``uniq`` (0, 1, ... in the hash order; ``int32``
    below 2³¹ values)."""
    text = np.asarray(pd.Index(uniq).astype(str), dtype=object)
    h = pd.util.hash_array(text, categorize=False)
    o = np.argsort(h)  # distinct hashes: one order (equal ones are ordered below)
    if (h[o][1:] == h[o][:-1]).any():  # a 64-bit collision: those ids by their text
        o = np.lexsort((text, h))
    rank = np.empty(len(text), _positions_dtype(len(text)))
    rank[o] = np.arange(len(text))
    return rank


def _group_ranks(t_coord, t_cell, t_key) -> np.ndarray:
    """Per treated row, its rank by ``t_key`` among the treated rows of the same cell and
    coordinates (which have the same distances to every comparison, hence the same ties)."""
    coords = t_coord.reshape(len(t_cell), -1)
    if coords.shape[1] == 1 and not np.isnan(coords).any():
        # the rows by group (cell and coordinate: any numbering of the groups), then key and position,
        # by radix passes over integer codes (not a lexsort of the coordinates)
        value, values = pd.factorize(coords[:, 0])  # equal coordinates (0.0 and -0.0 too) share a code
        group = np.multiply(t_cell, len(values), dtype=np.int64)
        group += value
        o = _order_ranks(t_key)[0]
        o = o[radix_argsort(group[o])]
        group = group[o]
        same = group[1:] == group[:-1]
    elif coords.shape[1] == 1:
        o = np.lexsort((t_key, coords[:, 0], t_cell))
        same = (t_cell[o][1:] == t_cell[o][:-1]) & (coords[o, 0][1:] == coords[o, 0][:-1])
    else:
        gid = _row_groups(np.column_stack([coords, t_cell]))[0]
        o = np.lexsort((t_key, gid))
        same = gid[o][1:] == gid[o][:-1]
    pos = np.arange(len(o))
    start = np.maximum.accumulate(np.where(np.concatenate([[True], ~same]), pos, 0))
    rank = np.empty(len(o), np.int64)
    rank[o] = pos - start
    return rank


def _capped_within(search, rows, d_k, caliper, cap, rank, c_key, chunk: int = 4096):
    """:meth:`within` with at most ``cap`` comparisons per treated row: the strictly closer ones
    and the rotation's share of those tied at ``d_k`` (module docstring; ``rank``: the rows'
    :func:`_group_ranks`). Treated rows go in chunks, so the uncapped pairs of only ``chunk``
    rows exist at once."""
    out = []
    for lo in range(0, len(rows), chunk):
        r = rows[lo : lo + chunk]
        t_row, c_row, dist = search.within(r, np.minimum(d_k[r] + TIE_TOL, caliper))
        if not len(t_row):
            continue
        new = np.concatenate([[True], t_row[1:] != t_row[:-1]])  # pairs come grouped by treated row
        run = np.cumsum(new) - 1
        m = np.bincount(run)
        over = (m > cap)[run]
        if over.any():
            strict = dist < d_k[t_row] - TIE_TOL  # fewer than k of them
            tie = np.flatnonzero(over & ~strict)
            ck, rt = c_key[c_row[tie]], run[tie]
            down = (rt[1:] == rt[:-1]) & (ck[1:] < ck[:-1])  # equal points come in c_key order (the search's
            if down.any():  # priority): only ties at two distances or several points need a sort
                tie = tie[np.lexsort((ck, rt))]
                rt = run[tie]
            first = np.concatenate([[True], rt[1:] != rt[:-1]])
            pos = np.arange(len(tie))
            j = pos - np.maximum.accumulate(np.where(first, pos, 0))  # place among the row's ties
            n_tie = np.bincount(rt, minlength=len(m))
            places = cap - np.bincount(run, strict & over, minlength=len(m)).astype(np.int64)
            tr = t_row[tie]
            off = (rank[tr] * places[rt]) % n_tie[rt]
            keep = ~over | strict
            keep[tie[(j - off) % n_tie[rt] < places[rt]]] = True
            t_row, c_row, dist = t_row[keep], c_row[keep], dist[keep]
        out.append((t_row, c_row, dist))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate(a) for a in zip(*out))


def _capped_ranges(search: _SortedSearch, rows, d_k, caliper, cap, rank, c_key):
    """:func:`_capped_within` on one dimension without forming the uncapped pairs. A row's
    comparisons within ``d_k`` are one range of the sorted comparisons, made of runs of one
    (cell, value) each, so of one distance: the runs closer than ``d_k`` are kept whole, and a
    row with more than ``cap`` keeps of its run tied at ``d_k`` the rotation's places, one or two
    stretches of the run (a run lists its comparisons in ``c_key`` order, the rotation's).
    Rows with ties in two runs (at ``x − d_k`` and ``x + d_k``) go through
    :func:`_capped_within`. The same pairs, in the same order."""
    run_start = search.run_start
    run_size = np.diff(np.append(run_start, len(search.keys)))
    run_x = search.c_x[search.right[run_start]]
    bound = np.minimum(d_k[rows] + TIE_TOL, caliper)
    lo, n = search.span(rows, bound)
    has = n > 0
    rows, lo, n, bound = rows[has], lo[has], n[has], bound[has]
    first = search.run_of(lo)  # the runs of the first and last positions
    n_runs = search.run_of(lo + n - 1) - first + 1
    row = np.repeat(np.arange(len(rows)), n_runs)  # (row, run) entries, in position order per row
    run = np.arange(int(n_runs.sum())) - np.repeat(np.cumsum(n_runs) - n_runs - first, n_runs)
    dist = np.abs(run_x[run] - search.t_x[rows[row]])  # as within() computes each pair's
    size = np.where(dist <= bound[row], run_size[run], 0)  # runs beyond the bound: none kept
    over = (np.bincount(row, size, len(rows)) > cap)[row]
    strict = dist < d_k[rows][row] - TIE_TOL
    tie = over & ~strict & (size > 0)
    slow = np.bincount(row[tie], minlength=len(rows)) > 1  # ties in two runs
    whole = ~(over & ~strict) & ~slow[row]
    one = tie & ~slow[row]
    places = cap - np.bincount(row, np.where(over & strict, size, 0), len(rows)).astype(np.int64)
    t_ = size[one]
    p_ = places[row[one]]
    off = (rank[rows[row[one]]] * p_) % t_
    wrap = off + p_ > t_
    start = np.zeros((len(run), 2), np.int64)
    length = np.zeros((len(run), 2), np.int64)
    start[whole, 0], length[whole, 0] = run_start[run[whole]], size[whole]
    start[one, 0] = run_start[run[one]] + np.where(wrap, 0, off)  # places off … off + p − 1, cyclically
    length[one, 0] = np.where(wrap, off + p_ - t_, p_)
    start[one, 1], length[one, 1] = run_start[run[one]] + off, np.where(wrap, t_ - off, 0)
    length, start = length.ravel(), start.ravel()
    t_row = np.repeat(np.repeat(rows[row], 2), length)
    # the stretches' positions: 1 after 1 within a stretch, and the jump to the next one's start
    pos = np.ones(int(length.sum()), np.int64)
    on = length > 0
    first_at = (np.cumsum(length) - length)[on]
    pos[first_at] = np.diff(start[on], prepend=0) - np.append(0, length[on][:-1] - 1)
    np.cumsum(pos, out=pos)
    c_row = search.right[pos]
    del pos
    dist = np.repeat(np.repeat(dist, 2), length)
    if slow.any():
        extra = _capped_within(search, rows[slow], d_k, caliper, cap, rank, c_key)
        t_row, c_row, dist = (np.concatenate(a) for a in zip((t_row, c_row, dist), extra))
        o = radix_argsort(t_row)  # each row's pairs from one of the two, in its order
        t_row, c_row, dist = t_row[o], c_row[o], dist[o]
    return t_row, c_row, dist


def _with_replacement(search, n_t, k):
    """The k best by (distance, priority) for every treated row, deepening the candidate
    lists where ties leave the k-th place uncertain."""
    idx = np.full((n_t, k), -1, dtype=np.int64)
    dist = np.full((n_t, k), np.inf)
    rows, K = np.arange(n_t), k
    while len(rows):
        cand = search(rows, K)
        done = (cand.n_safe >= k) | cand.complete
        take = np.minimum(cand.n_safe, k)
        r = rows[done]
        sel = np.arange(k)[None, :] < take[done][:, None]
        idx[r] = np.where(sel, cand.idx[done][:, :k], -1)
        dist[r] = np.where(sel, cand.dist[done][:, :k], np.inf)
        rows, K = rows[~done], K * 4
    return idx, dist


def _greedy(search, n_t, n_c, k, order, order_key, t_prio, rng, batch: int = 512):
    """Greedy matching without replacement in rounds: in round r every treated row still in play
    takes its best unused comparison, the rows in ``order`` (equal keys by ``t_prio``), so every
    row gets its r-th comparison before any gets its (r+1)-th (MatchIt's ``ratio``); a row that
    finds none in a round takes no further ones. The first round is 1:1 greedy matching.

    Candidate lists do not depend on which comparisons are used, so they are computed in
    vectorized batches: all rows at depth ``k`` first, and deeper lists for the next ``batch``
    rows of the round whenever a row runs out of certain candidates. A row's place in its list
    carries over to the next round (the entries before it are its own or used).
    """
    if order in ("largest", "smallest"):
        if order_key is None:
            raise DataError(f"order={order!r} needs a propensity score; use order='random' or 'data'")
        key = np.asarray(order_key, dtype=float)
        seq = np.lexsort((t_prio, -key if order == "largest" else key))
    elif order == "random":
        seq = rng.permutation(n_t)
    else:
        seq = np.argsort(t_prio, kind="stable")
    base = search(np.arange(n_t), k)
    b_idx, b_dist = base.idx, base.dist
    first = b_idx[:, 0].tolist()
    b_ns = base.n_safe.tolist()
    b_comp = base.complete.tolist()
    depth = [k] * n_t
    lists = {}  # row -> [idx list, dist list, n_safe, complete, place reached]
    used = bytearray(n_c)
    idx = np.full((n_t, k), -1, dtype=np.int64)
    dist = np.full((n_t, k), np.inf)
    active = seq.tolist()
    for r in range(k):
        still = []
        for p, i in enumerate(active):
            if r == 0 and b_ns[i] and not used[first[i]]:  # fast path: best candidate is free
                used[first[i]] = 1
                idx[i, 0] = first[i]
                dist[i, 0] = b_dist[i, 0]
                still.append(i)
                continue
            st = lists.get(i)
            if st is None:
                st = lists[i] = [b_idx[i].tolist(), b_dist[i].tolist(), b_ns[i], b_comp[i], 0]
            while True:
                row, drow, ns, comp, j = st
                while j < ns and used[row[j]]:
                    j += 1
                st[4] = j
                if j < ns or comp:
                    break
                K = depth[i] * 4
                ahead = active[p : p + max(1, batch * 8 // K)]  # bounded work per refill
                rows = np.array([a for a in ahead if depth[a] < K])
                c1 = search(rows, K)
                for a, ai, ad, an, ac in zip(
                    rows.tolist(), c1.idx.tolist(), c1.dist.tolist(), c1.n_safe.tolist(), c1.complete.tolist()
                ):
                    depth[a] = K
                    lists[a] = [ai, ad, an, ac, 0]
                st = lists[i]
            if j < ns:
                used[row[j]] = 1
                idx[i, r] = row[j]
                dist[i, r] = drow[j]
                st[4] = j + 1
                still.append(i)
        active = still
    return idx, dist
