"""Nearest-neighbour matching on one distance within calipers on others.

Two MatchIt designs share this search:

* **Mahalanobis matching within a propensity-score caliper** (``mahvars``; Rubin & Thomas
  2000; Rosenbaum & Rubin 1985): a comparison unit is eligible for a treated unit when their
  propensity scores differ by at most the PS caliper, and among the eligible the nearest in
  Mahalanobis distance of the ``mahvars`` are matched.
* **Per-variable calipers** (``calipers={"re74": 0.2}``): eligible only when
  ``|x_i − x_j| ≤ c_v · SD(x_v)`` for every named variable (SD over all analysed rows, as
  MatchIt's ``std.caliper``), whatever the matching distance.

Each constraint coordinate is divided by its caliper, so the eligible comparisons of a treated
unit are those within a Chebyshev (max-coordinate) distance of 1 — one
``cKDTree.query_ball_point(p=∞)`` per batch of treated units, exact-match cells kept apart by
an extra coordinate. The eligible pairs are sorted by (treated unit, distance, priority) and

* with replacement: each treated unit takes its ``k`` first;
* without replacement: treated units take turns in the greedy order, in rounds (MatchIt's
  ``ratio``): each takes its first still-unused candidate, and only when every unit has had
  its turn does any take a second, up to ``k`` (sequential by definition; the loop walks the
  sorted lists). Before 2026-12-05 each unit took its ``k`` at once.

Ties in distance go by ``c_priority`` (the student-id rank, or data order under MatchIt
conventions). Work and memory grow with the number of eligible pairs, which the calipers bound.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import DataError
from .nearest import NearestMatch, _weights

def eligible_pairs(t_box, c_box, t_cell, c_cell, *, batch: int = 4096):
    """All (treated, comparison) pairs in the same cell with every ``|Δ box| ≤ 1``."""
    cells = pd.factorize(np.concatenate([np.asarray(t_cell), np.asarray(c_cell)]))[0] * 4.0  # cells ≥ 4 apart
    t_box = np.column_stack([t_box, cells[: len(t_box)]])
    c_box = np.column_stack([c_box, cells[len(t_box) :]])
    tree = cKDTree(c_box)
    t_parts, c_parts = [], []
    for lo in range(0, len(t_box), batch):  # batches bound the memory of the lists
        near = tree.query_ball_point(t_box[lo : lo + batch], r=1.0 + 1e-12, p=np.inf, return_sorted=False)
        n = np.fromiter(map(len, near), np.int64, len(near))
        t_parts.append(np.repeat(np.arange(lo, lo + len(near)), n))
        c_parts.append(np.concatenate(near).astype(np.int64) if n.sum() else np.zeros(0, np.int64))
    t_row = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
    c_row = np.concatenate(c_parts) if c_parts else np.zeros(0, np.int64)
    # the tree's tolerance aside, keep exactly |Δ| ≤ 1
    ok = (np.abs(t_box[t_row, :-1] - c_box[c_row, :-1]) <= 1.0).all(axis=1) & (t_box[t_row, -1] == c_box[c_row, -1])
    return t_row[ok], c_row[ok]


def match_constrained(t_z, c_z, t_box, c_box, *, k: int = 1, replace: bool = True, t_cell=None, c_cell=None,
                      seq=None, c_priority=None, caliper: float = np.inf) -> NearestMatch:
    """Match each treated unit to its ``k`` nearest comparisons (Euclidean in ``t_z``/``c_z``:
    a score or Mahalanobis coordinates) among those within every caliper (``t_box``/``c_box``:
    constraint coordinates divided by their calipers). ``seq``: greedy order of the treated
    units without replacement (default: position); ``c_priority``: tie ranks (default:
    position); ``caliper``: a further caliper on the matching distance itself."""
    if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1):
        raise DataError(f"k must be a positive integer; got {k!r}")
    t_z = np.asarray(t_z, float).reshape(len(t_z), -1)
    c_z = np.asarray(c_z, float).reshape(len(c_z), -1)
    n_t, n_c = len(t_z), len(c_z)
    t_cell = np.zeros(n_t, np.int64) if t_cell is None else np.asarray(t_cell, np.int64)
    c_cell = np.zeros(n_c, np.int64) if c_cell is None else np.asarray(c_cell, np.int64)
    prio = np.arange(n_c) if c_priority is None else np.asarray(c_priority)
    reason = np.full(n_t, "", dtype=object)
    reason[~np.isin(t_cell, c_cell)] = "no comparison in its exact-match cell"
    pt, pc = eligible_pairs(np.asarray(t_box, float).reshape(n_t, -1), np.asarray(c_box, float).reshape(n_c, -1),
                            t_cell, c_cell)
    d = np.sqrt(((t_z[pt] - c_z[pc]) ** 2).sum(axis=1))
    if np.isfinite(caliper):
        pt, pc, d = pt[d <= caliper], pc[d <= caliper], d[d <= caliper]
    o = np.lexsort((prio[pc], d, pt))
    pt, pc, d = pt[o], pc[o], d[o]
    start = np.searchsorted(pt, np.arange(n_t + 1))
    if replace:
        rank = np.arange(len(pt)) - start[pt]
        keep = rank < k
        t_row, c_row, dist = pt[keep], pc[keep], d[keep]
    else:
        used = bytearray(n_c)
        chosen = []
        pc_l = pc.tolist()
        end = start[1:].tolist()
        place = start[:-1].tolist()  # per unit, its first candidate not yet passed (those before: its own or used)
        active = list(range(n_t)) if seq is None else np.asarray(seq).tolist()
        for _ in range(k):  # rounds: one comparison per unit still in play
            still = []
            for i in active:
                p = place[i]
                while p < end[i] and used[pc_l[p]]:
                    p += 1
                if p < end[i]:
                    used[pc_l[p]] = 1
                    chosen.append(p)
                    still.append(i)
                place[i] = p + 1
            active = still
        sel = np.sort(np.asarray(chosen, np.int64))
        t_row, c_row, dist = pt[sel], pc[sel], d[sel]
    weight, m = _weights(t_row, n_t)
    has_pairs = np.diff(start) > 0
    reason[(m == 0) & (reason == "") & ~has_pairs] = "no comparison within the calipers"
    reason[(m == 0) & (reason == "")] = "comparisons within the calipers used up (matching without replacement)"
    return NearestMatch(t_row, c_row, dist, weight, m, reason)


__all__ = ["match_constrained", "eligible_pairs"]
