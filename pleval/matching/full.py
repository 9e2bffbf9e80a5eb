"""Optimal full matching: every unit in exactly one matched set, sets as close as possible.

A full matching (Rosenbaum 1991; Hansen 2004; MatchIt's ``method = "full"``, which calls
``optmatch::fullmatch``) partitions the treated and comparison units of each exact-match cell
into sets holding either one treated unit and one or more comparisons, or one comparison and
one or more treated units, minimizing the total treated–comparison distance within sets,

    Σ_sets Σ_{i treated, j comparison in the set} d(i, j).

Every unit with an eligible counterpart is used; units are discarded only by a caliper or an
empty cell.

**Algorithm.** Without limits on the set ratios (``min.controls = 0, max.controls = ∞``,
optmatch's defaults), a full matching is exactly a minimum-weight *edge cover* of the
bipartite treated–comparison graph: its sets are the stars of the cover, and a minimum edge
cover under non-negative distances can always be taken to be a union of stars (an edge whose
two ends both have other edges can be dropped at no cost). A minimum edge cover reduces to a
matching (Gallai; Schrijver 2003, §19.1): with ``μ(v)`` the distance from ``v`` to its
nearest eligible counterpart,

    min cover = Σ_v μ(v) + min_M Σ_{(i,j) ∈ M} [d(i, j) − μ(i) − μ(j)],

over matchings ``M``; the cover is ``M`` plus, for each unit ``M`` leaves out, the edge to its
nearest counterpart. Only pairs with ``d(i, j) < μ(i) + μ(j)`` can improve on that, so the
graph is sparse: such a pair lies within ``2μ(i)`` of ``i`` or within ``2μ(j)`` of ``j``, and
both neighbourhoods come from one sorted (score) or k-d tree (coordinates) range search. The
matching is a minimum-weight full bipartite matching (``scipy.sparse.csgraph.
min_weight_full_bipartite_matching``, LAPJVsp) in which every treated unit may instead take a
private dummy column at cost 0. This is exact, needs no min-cost-flow solver and never forms
the treated × comparison table; optmatch instead solves a min-cost flow on distances rounded to
its ``tol``, so on ties or near-ties the two can pick different (equally good) sets.

**Weights** (ATT): each set with ``n_t`` treated and ``n_c`` comparison units gives each of its
comparisons weight ``n_t/n_c`` (MatchIt's subclass weights, up to its normalization). In
pleval's matched-set long format each treated unit anchors its own set holding all the set's
comparisons at weight ``1/n_c`` each, which sums to the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from ..errors import DataError
from .optimal import dense_cells


@dataclass(frozen=True)
class FullMatch:
    """A full matching over the treated and comparison rows passed in.

    ``t_set[i]``/``c_set[j]``: the set of treated row ``i`` / comparison row ``j`` (``-1`` when
    unmatched); sets are numbered 0..n_sets−1. ``t_reason[i]`` is "" for matched treated rows.
    ``total`` is the total within-set distance.
    """

    t_set: np.ndarray
    c_set: np.ndarray
    n_sets: int
    total: float
    t_reason: np.ndarray


def _augment(coord, cell, big):
    z = coord[:, None] if coord.ndim == 1 else coord
    return np.column_stack([z, cell * big])


def match_full(t_coord, c_coord, *, caliper: float = np.inf, t_cell=None, c_cell=None) -> FullMatch:
    """Optimal full matching within exact-match cells (module docstring). ``t_coord`` and
    ``c_coord`` are 1-D scores or 2-D coordinates (Euclidean distance); ``caliper`` is an
    absolute distance beyond which a treated and a comparison unit may not share a set."""
    caliper = np.inf if caliper is None or caliper is False else float(caliper)
    if not caliper > 0:
        raise DataError(f"caliper must be positive; got {caliper!r}")
    t_coord = np.asarray(t_coord, dtype=float)
    c_coord = np.asarray(c_coord, dtype=float)
    n_t, n_c = len(t_coord), len(c_coord)
    t_cell, c_cell, _ = dense_cells(t_cell, c_cell, n_t, n_c)
    reason = np.full(n_t, "", dtype=object)
    t_set, c_set = np.full(n_t, -1, np.int64), np.full(n_c, -1, np.int64)
    in_cell = np.isin(t_cell, c_cell)
    reason[~in_cell] = "no comparison in its exact-match cell"
    if n_t == 0 or n_c == 0:
        return FullMatch(t_set, c_set, 0, 0.0, reason)
    # cells apart by more than any within-cell distance (or the caliper)
    allz = np.concatenate([t_coord, c_coord]).reshape(n_t + n_c, -1)
    big = 4.0 * float(np.sqrt((np.ptp(allz, axis=0) ** 2).sum())) + 1.0
    zt, zc = _augment(t_coord, t_cell, big), _augment(c_coord, c_cell, big)
    tree_t, tree_c = cKDTree(zt), cKDTree(zc)
    bound = min(caliper, big / 2)
    mu_t, nn_t = tree_c.query(zt, k=1, distance_upper_bound=bound * (1 + 1e-12))
    mu_c, nn_c = tree_t.query(zc, k=1, distance_upper_bound=bound * (1 + 1e-12))
    ok_t, ok_c = (nn_t < n_c) & (mu_t <= caliper), (nn_c < n_t) & (mu_c <= caliper)
    reason[in_cell & ~ok_t] = "no comparison within the caliper"
    # candidate pairs: within 2μ of either end, then d < μ_i + μ_j
    ti = np.flatnonzero(ok_t)
    cj = np.flatnonzero(ok_c)
    near_t = tree_c.query_ball_point(zt[ti], r=2 * mu_t[ti], return_sorted=False)
    near_c = tree_t.query_ball_point(zc[cj], r=2 * mu_c[cj], return_sorted=False)
    n1 = np.fromiter(map(len, near_t), np.int64, len(ti))
    n2 = np.fromiter(map(len, near_c), np.int64, len(cj))
    pi = np.concatenate([np.repeat(ti, n1), np.concatenate(near_c).astype(np.int64) if n2.sum() else np.zeros(0, np.int64)])
    pj = np.concatenate([np.concatenate(near_t).astype(np.int64) if n1.sum() else np.zeros(0, np.int64), np.repeat(cj, n2)])
    key = np.unique(pi * n_c + pj)
    pi, pj = key // n_c, key % n_c
    d = np.sqrt(((zt[pi] - zc[pj]) ** 2).sum(axis=1))
    red = d - mu_t[pi] - mu_c[pj]
    keep = (red < 0) & ok_t[pi] & ok_c[pj] & (d <= caliper)
    pi, pj, red = pi[keep], pj[keep], red[keep]
    # minimum-weight matching: rows = treated, columns = comparisons then one dummy per treated
    shift = 1.0 + (float(-red.min()) if len(red) else 0.0)  # all costs > 0 (zeros would be absent edges)
    rows = np.concatenate([pi, ti])
    cols = np.concatenate([pj, n_c + np.arange(len(ti))])
    cost = np.concatenate([red + shift, np.full(len(ti), shift)])
    g = sp.csr_matrix((cost, (rows, cols)), shape=(n_t, n_c + len(ti)))
    g = g[ti]
    col = min_weight_full_bipartite_matching(g)[1] if len(ti) else np.zeros(0, np.int64)
    real = col < n_c
    m_t, m_c = ti[real], col[real]
    # the cover: M plus each left-out unit's edge to its nearest counterpart
    covered_t = np.zeros(n_t, bool)
    covered_t[m_t] = True
    covered_c = np.zeros(n_c, bool)
    covered_c[m_c] = True
    lt = np.flatnonzero(ok_t & ~covered_t)
    lc = np.flatnonzero(ok_c & ~covered_c)
    e_t = np.concatenate([m_t, lt, nn_c[lc]])
    e_c = np.concatenate([m_c, nn_t[lt], lc])
    key = np.unique(e_t * n_c + e_c)
    e_t, e_c = key // n_c, key % n_c
    # drop edges joining two units that both have other edges, a matching of them at a time
    while True:
        deg_t = np.bincount(e_t, minlength=n_t)
        deg_c = np.bincount(e_c, minlength=n_c)
        mid = np.flatnonzero((deg_t[e_t] > 1) & (deg_c[e_c] > 1))
        if not len(mid):
            break
        first_t = np.full(n_t, len(e_t))
        np.minimum.at(first_t, e_t[mid], mid)
        first_c = np.full(n_c, len(e_t))
        np.minimum.at(first_c, e_c[mid], mid)
        drop = mid[(first_t[e_t[mid]] == mid) & (first_c[e_c[mid]] == mid)]
        e_t, e_c = np.delete(e_t, drop), np.delete(e_c, drop)
    graph = sp.csr_matrix((np.ones(len(e_t)), (e_t, n_t + e_c)), shape=(n_t + n_c, n_t + n_c))
    _, label = connected_components(graph, directed=False)
    used = np.zeros(n_t + n_c, bool)
    used[e_t] = True
    used[n_t + e_c] = True
    sets = np.full(n_t + n_c, -1, np.int64)
    uniq, dense = np.unique(label[used], return_inverse=True)
    sets[used] = dense
    total = float(np.sqrt(((zt[e_t] - zc[e_c]) ** 2).sum(axis=1)).sum())
    return FullMatch(sets[:n_t], sets[n_t:], len(uniq), total, reason)


def set_pairs(fm: FullMatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched-set long format of a full matching: each matched treated row with every
    comparison of its set at weight ``1/n_c`` (``(t_row, c_row, weight)``, grouped by treated
    row). Sets are stars, so the pairs number ``Σ max(n_t, n_c)`` over sets."""
    c_idx = np.flatnonzero(fm.c_set >= 0)
    o = np.argsort(fm.c_set[c_idx], kind="stable")
    c_sorted = c_idx[o]
    n_c_set = np.bincount(fm.c_set[c_idx], minlength=fm.n_sets)
    start = np.cumsum(n_c_set) - n_c_set
    t_idx = np.flatnonzero(fm.t_set >= 0)
    s = fm.t_set[t_idx]
    m = n_c_set[s]
    t_row = np.repeat(t_idx, m)
    pos = np.repeat(start[s], m) + np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
    return t_row, c_sorted[pos], 1.0 / np.repeat(m, m)


__all__ = ["match_full", "FullMatch", "set_pairs"]
