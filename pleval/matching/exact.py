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
and each PL student's qualifying range is two ``searchsorted`` lookups; ``d_k`` comes from the
``k`` nearest on each side of its pretest, and the set within ``d_k`` is again one contiguous
range. No treated × comparison pair table is ever built. Memory is O(n + Σ m_i).
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
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise DataError(f"k (comparisons per PL student) must be a positive integer; got {k!r}")
    band = float(band)
    if not (np.isfinite(band) and band >= 0):
        raise DataError(f"band must be a non-negative number of pretest points; got {band!r}")
    t_score = np.asarray(t_score, dtype=float)
    c_score = np.asarray(c_score, dtype=float)
    n_t, n_c = len(t_score), len(c_score)
    cells = pd.factorize(np.concatenate([np.asarray(c_cell), np.asarray(t_cell)]))[0].astype(np.int64)
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
    # qualifying range of each treated row: values in [x − band, x + band] within its cell
    lo_key = t_cell * span + 2 * np.searchsorted(v, t_score - band - TIE_TOL, side="left")
    hi_key = t_cell * span + 2 * np.searchsorted(v, t_score + band + TIE_TOL, side="right")
    lo = np.searchsorted(keys, lo_key, side="left")
    hi = np.searchsorted(keys, hi_key, side="left")
    n_q = hi - lo
    big = n_q > k
    # d_k for rows with more than k qualified: the k nearest on each side of the pretest
    d_k = np.full(n_t, np.inf)
    if big.any():
        r = np.flatnonzero(big)
        mid = np.searchsorted(keys, t_cell[r] * span + 2 * np.searchsorted(v, t_score[r], side="left"), side="left")
        j = np.arange(k)
        pos = np.concatenate([mid[:, None] - 1 - j, mid[:, None] + j], axis=1)
        ok = (pos >= lo[r, None]) & (pos < hi[r, None])
        d = np.where(ok, np.abs(c_score[o[np.clip(pos, 0, max(n_c - 1, 0))]] - t_score[r, None]), np.inf)
        d_k[r] = np.partition(d, k - 1, axis=1)[:, k - 1]
        # the set: pretest within d_k (a sub-range of the band range)
        base = t_cell[r] * span
        lo[r] = np.maximum(lo[r], np.searchsorted(keys, base + 2 * np.searchsorted(v, t_score[r] - d_k[r] - TIE_TOL)))
        hi[r] = np.minimum(hi[r], np.searchsorted(keys, base + 2 * np.searchsorted(v, t_score[r] + d_k[r] + TIE_TOL,
                                                                                   side="right")))
    m = hi - lo

    reason = np.full(n_t, "", dtype=object)
    if n_t:
        in_cell = (np.bincount(c_cell, minlength=len(cells) + 1) > 0)[t_cell]
        reason[(m == 0) & ~in_cell] = NO_CELL
        reason[(m == 0) & in_cell] = NO_BAND

    t_row = np.repeat(np.arange(n_t), m)
    c_row = o[np.arange(len(t_row)) - np.repeat(np.cumsum(m) - m - lo, m)]
    weight = (1.0 / np.maximum(m, 1))[t_row]
    if big.any():
        dist = np.abs(c_score[c_row] - t_score[t_row])
        dk = d_k[t_row]
        closer = dist < dk - TIE_TOL
        n_closer = np.bincount(t_row, weights=closer, minlength=n_t)
        share = (k - n_closer) / np.maximum(m - n_closer, 1) / k  # per tied comparison
        weight = np.where(big[t_row], np.where(closer, 1.0 / k, share[t_row]), weight)
    return VCGMatch(t_row, c_row, weight, n_q, m, reason)
