"""Exact / "virtual comparison group" (VCG) many-to-one matching.

Each PL (treated) student is matched to comparison students from non-PL schools who share
its exact keys (grade, subject, gender, race/ethnicity, FRL, ... and optional school-level
traits such as urbanicity or a poverty band) and whose pretest lies within ``band`` of its
own (``|x_j − x_i| ≤ band``; ``band = 0`` requires an equal score). When more than ``k``
(default 51, as in the RAND/NWEA virtual comparison groups; Pane et al. 2015, 2017)
qualify, ``k`` of them are drawn as a simple random sample without replacement (seeded);
otherwise all of them are kept. Each PL student's comparisons get weight
``1/m_i`` (``m_i`` comparisons), so a matched set weighs as much as its PL student; a
comparison student can serve several PL students (matching with replacement).

The search is keyed and sort-based: comparison students are sorted once by (cell, pretest)
and each PL student's qualifying range is two ``searchsorted`` lookups; no treated ×
comparison pair table is ever built. Memory is O(n + Σ m_i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError

NO_CELL = "no comparison student in its exact-match cell"
NO_BAND = "no comparison student within the pretest band"


@dataclass(frozen=True)
class VCGMatch:
    """Long-format matches: ``t_row[j]`` (index into the treated rows) is matched to
    ``c_row[j]`` (index into the comparison rows) with ``weight[j] = 1/m``; ``n_qualified``
    and ``n_matched`` per treated row; ``reason`` is "" for matched rows."""

    t_row: np.ndarray
    c_row: np.ndarray
    weight: np.ndarray
    n_qualified: np.ndarray
    n_matched: np.ndarray
    reason: np.ndarray


def _sample_offsets(n: np.ndarray, k: int, rng: np.random.Generator, chunk: int = 1 << 16) -> np.ndarray:
    """For each row, ``k`` distinct offsets drawn uniformly from ``range(n_i)`` (all n_i > k).

    Rows with n_i ≤ 2k: the k smallest of n_i uniform random keys. Larger rows: k iid
    uniform draws; each repeated value is then redrawn (uniformly, rejecting values the row
    already holds or draws it repeats in the same round) until all k are distinct. Both
    procedures treat the n_i labels symmetrically and return k distinct ones, so every
    k-subset is equally likely: a simple random sample without replacement.
    """
    r = len(n)
    out = np.empty((r, k), dtype=np.int64)
    small = n <= 2 * k
    if small.any():
        ns = n[small]
        keys = rng.random((len(ns), int(ns.max())), dtype=np.float32)
        keys[np.arange(keys.shape[1]) >= ns[:, None]] = np.inf
        out[small] = np.argpartition(keys, k - 1, axis=1)[:, :k]
    if (~small).any():
        nl = n[~small]
        A = np.sort((rng.random((len(nl), k)) * nl[:, None]).astype(np.int64), axis=1)
        dup = np.zeros(A.shape, dtype=bool)
        dup[:, 1:] = A[:, 1:] == A[:, :-1]
        flat = A.ravel()
        slot = np.flatnonzero(dup.ravel())
        flat[slot] = -1  # an empty slot; the repeated value stays held by its first copy
        big = int(nl.max()) + 1
        while slot.size:
            need = slot // k
            f = np.minimum((rng.random(slot.size) * nl[need]).astype(np.int64), nl[need] - 1)
            held = np.concatenate(  # is the draw already in its row? (rows of k, in chunks)
                [(A[need[i : i + chunk]] == f[i : i + chunk, None]).any(axis=1) for i in range(0, slot.size, chunk)]
            )
            key = need * big + f
            o = np.argsort(key, kind="stable")
            first = np.empty(slot.size, dtype=bool)
            first[o] = np.concatenate([[True], key[o][1:] != key[o][:-1]])
            ok = first & ~held
            flat[slot[ok]] = f[ok]
            slot = slot[~ok]
        out[~small] = A
    return out


def match_vcg(
    t_cell,
    t_score,
    c_cell,
    c_score,
    *,
    band: float = 1.0,
    k: int = 51,
    seed: int = 0,
) -> VCGMatch:
    """Match treated to comparison rows with equal ``cell`` and ``|score diff| ≤ band``,
    keeping at most ``k`` per treated row (uniform random sample, seeded)."""
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
    rng = np.random.default_rng(seed)

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
    lo_key = t_cell * span + 2 * np.searchsorted(v, t_score - band, side="left")
    hi_key = t_cell * span + 2 * np.searchsorted(v, t_score + band, side="right")
    lo = np.searchsorted(keys, lo_key, side="left")
    hi = np.searchsorted(keys, hi_key, side="left")
    n_q = hi - lo
    m = np.minimum(n_q, k)

    reason = np.full(n_t, "", dtype=object)
    if n_t:
        in_cell = (np.bincount(c_cell, minlength=len(cells) + 1) > 0)[t_cell]
        reason[(m == 0) & ~in_cell] = NO_CELL
        reason[(m == 0) & in_cell] = NO_BAND

    t_row = np.repeat(np.arange(n_t), m)
    starts = np.cumsum(m) - m
    offset = np.arange(len(t_row)) - starts[t_row]  # 0..m_i−1 within each treated row
    big = n_q > k
    if big.any():
        # rows with more than k qualified occupy full blocks of k in the output
        offset[big[t_row]] = _sample_offsets(n_q[big], k, rng).ravel()
    offset += lo[t_row]
    c_row = o[offset]
    weight = (1.0 / np.maximum(m, 1))[t_row]
    return VCGMatch(t_row, c_row, weight, n_q, m, reason)
