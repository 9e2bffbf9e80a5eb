"""Optimal pair (1:k) matching: the matched pairs that minimize the *total* distance.

Within each exact-match cell, every treated unit gets ``k`` comparison units (without
replacement) so that the sum of the treated–comparison distances over all pairs is as small
as possible (Rosenbaum 1989; Hansen & Klopfer 2006; MatchIt's ``method = "optimal"``, which
calls ``optmatch::pairmatch``). Greedy nearest-neighbour matching minimizes each distance in
turn; optimal matching minimizes their sum, so a pair is never formed at the cost of much
worse pairs later.

This is the linear assignment problem

    minimize Σ_ij d(i, j) x_ij   subject to  Σ_j x_ij = k (treated i),  Σ_i x_ij ≤ 1,  x_ij ∈ {0, 1},

solved exactly per cell by ``scipy.optimize.linear_sum_assignment`` (the shortest augmenting
path algorithm of Crouse 2016) on the dense cost matrix with each treated row repeated ``k``
times. When a cell holds fewer than ``k·n_t`` comparisons, all of them are used and the
treated units left without (or with fewer than ``k``) matches are those whose absence costs
least (as ``pairmatch`` does, MatchIt warning that not every treated unit gets a match).

* **Caliper.** Pairs farther apart than the caliper cost a penalty larger than any feasible
  total, so the solution has as many within-caliper pairs as possible and, among those, the
  smallest total distance; the over-caliper pairs are then dropped.
* **Size.** Each cell's cost matrix is dense (``k·n_t × n_c`` float64); a cell larger than
  :data:`MAX_CELL` entries raises :class:`~pleval.errors.DesignError` asking for exact-match
  keys or a caliper, rather than exhausting memory.

Optimal solutions need not be unique (on a score, swapping two crossing pairs often leaves
the total unchanged); the solver's choice follows the row order, so :func:`pleval.match` puts
the rows in one order first (by cell, score and student id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from ..errors import DataError, DesignError
from .nearest import NearestMatch, _weights

MAX_CELL = 60_000_000
"""Largest cost matrix (entries) solved in one exact-match cell (~480 MB)."""


def pair_distances(t_coord: np.ndarray, c_coord: np.ndarray) -> np.ndarray:
    """Dense ``n_t × n_c`` matrix of Euclidean distances (absolute differences on a score)."""
    if t_coord.ndim == 1:
        return np.abs(t_coord[:, None] - c_coord[None, :])
    sq = (t_coord**2).sum(1)[:, None] + (c_coord**2).sum(1)[None, :] - 2.0 * t_coord @ c_coord.T
    return np.sqrt(np.maximum(sq, 0.0))


def dense_cells(t_cell, c_cell, n_t, n_c):
    """Shared dense cell codes for the two groups and, per cell, the treated and comparison
    positions (cells present in both groups only)."""
    t_cell = np.zeros(n_t, np.int64) if t_cell is None else np.asarray(t_cell, np.int64)
    c_cell = np.zeros(n_c, np.int64) if c_cell is None else np.asarray(c_cell, np.int64)
    codes = pd.factorize(np.concatenate([t_cell, c_cell]))[0]
    t_cell, c_cell = codes[:n_t], codes[n_t:]
    n_cells = int(codes.max(initial=-1)) + 1
    t_order = np.argsort(t_cell, kind="stable")
    c_order = np.argsort(c_cell, kind="stable")
    t_bounds = np.searchsorted(t_cell[t_order], np.arange(n_cells + 1))
    c_bounds = np.searchsorted(c_cell[c_order], np.arange(n_cells + 1))
    cells = [
        (t_order[t_bounds[g] : t_bounds[g + 1]], c_order[c_bounds[g] : c_bounds[g + 1]])
        for g in range(n_cells)  # one solve per cell
    ]
    return t_cell, c_cell, cells


def match_optimal(
    t_coord,
    c_coord,
    *,
    k: int = 1,
    caliper: float = np.inf,
    t_cell=None,
    c_cell=None,
) -> NearestMatch:
    """Optimal 1:k matching without replacement (module docstring).

    ``t_coord``/``c_coord``: 1-D scores or 2-D coordinates (Euclidean distance, e.g. after
    :func:`pleval.matching.nearest.mahalanobis_coordinates`); ``caliper``: absolute distance;
    ``t_cell``/``c_cell``: integer exact-match cells. Returns pairs in the same long format
    as nearest-neighbour matching (weight ``1/m_i`` within each treated unit's set).
    """
    if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1):
        raise DataError(f"k must be a positive integer; got {k!r}")
    caliper = np.inf if caliper is None or caliper is False else float(caliper)
    if not caliper > 0:
        raise DataError(f"caliper must be positive; got {caliper!r}")
    t_coord = np.asarray(t_coord, dtype=float)
    c_coord = np.asarray(c_coord, dtype=float)
    if t_coord.ndim == 2 and t_coord.shape[1] == 1:
        t_coord, c_coord = t_coord.ravel(), c_coord.ravel()
    n_t, n_c = len(t_coord), len(c_coord)
    _, _, cells = dense_cells(t_cell, c_cell, n_t, n_c)
    reason = np.full(n_t, "", dtype=object)
    t_parts, c_parts, d_parts = [], [], []
    for tp, cp in cells:
        if len(tp) == 0:
            continue
        if len(cp) == 0:
            reason[tp] = "no comparison in its exact-match cell"
            continue
        size = k * len(tp) * len(cp)
        if size > MAX_CELL:
            raise DesignError(
                f"optimal matching: an exact-match cell has {len(tp):,} treated and {len(cp):,} comparison "
                f"rows ({size:,} candidate pairs, more than {MAX_CELL:,}); add exact-match keys (exact=...) "
                "to split it, or use nearest-neighbour matching"
            )
        d = pair_distances(t_coord[tp], c_coord[cp])
        rows = np.repeat(np.arange(len(tp)), k)
        cost = d[rows]
        over = cost > caliper
        if over.any():
            finite = np.where(over, 0.0, cost)
            cost = np.where(over, finite.sum() + 1.0, cost)  # one over-caliper pair costs more than all others
        r, c = linear_sum_assignment(cost)
        ok = ~over[r, c]
        t_parts.append(tp[rows[r[ok]]])
        c_parts.append(cp[c[ok]])
        d_parts.append(d[rows[r[ok]], c[ok]])
    t_row = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
    c_row = np.concatenate(c_parts) if c_parts else np.zeros(0, np.int64)
    dist = np.concatenate(d_parts) if d_parts else np.zeros(0)
    o = np.lexsort((dist, t_row))  # grouped by treated row, nearest first
    t_row, c_row, dist = t_row[o], c_row[o], dist[o]
    weight, m = _weights(t_row, n_t)
    unmatched = (m == 0) & (reason == "")
    reason[unmatched] = (
        "no comparison within the caliper left by the optimal matching"
        if np.isfinite(caliper)
        else "comparisons in its exact-match cell used up (optimal matching without replacement)"
    )
    return NearestMatch(t_row, c_row, dist, weight, m, reason)


__all__ = ["match_optimal", "pair_distances", "MAX_CELL"]
