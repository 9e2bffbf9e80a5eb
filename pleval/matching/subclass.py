"""Subclassification on the propensity score, and the weights of any subclassification.

**Subclasses** (Rosenbaum & Rubin 1984; MatchIt's ``method = "subclass"``): the propensity
score is cut at its quantiles into ``n`` subclasses — quantiles of the treated units' scores
for the ATT, of all units' for the ATE — with R's default (type 7, linear) quantiles and
``findInterval(..., all.inside = TRUE)``: subclass ``s`` holds scores in ``[q_{s−1}, q_s)``,
the lowest and highest scores going to the first and last subclass. Within exact-match cells
(subject, and grade by default) the quantiles are taken per cell. A cell without treated or
without comparison units forms no subclass (its PL units are unmatched), and of several cells
one with fewer than ``min_n`` units of a group per subclass gets as many subclasses as it can
fill (one at the least; ``MatchResult.diagnostics`` counts such cells). Until 2026-12-04 either
stopped the whole match with "not enough … rows to put 1 in each of 6 subclasses", which fewer
subclasses could not cure. A single cell too small for the subclasses asked is an error, as in
MatchIt.

A subclass with fewer than ``min_n`` treated or comparison units (default 1) is filled as
MatchIt's ``subclass_scoot`` does: for each group and each round ``r = 1..min_n``, while some
subclass holds fewer than ``r`` units of the group, the first such subclass ``s`` takes one
unit from the nearest subclass that can spare one on one side — the left when ``s`` is the
last subclass, the right when it is the first, otherwise the left when
``Σ_{s' ≠ s, m_{s'} > r} (m_{s'} − r)/(s' − s) ≤ 0`` (the spare units lie more to the left) —
namely that subclass's unit with the score nearest ``s`` (the highest when taking from the
left, the lowest from the right; among equal scores the last in data order). ``min_n = 0``
instead drops subclasses lacking a group, their units unmatched.

**Weights** (MatchIt's ``get_weights_from_subclass``, the same for coarsened exact matching):
with ``n_{1s}`` treated and ``n_{0s}`` comparison units in subclass ``s``,

    ATT:  treated 1,                 comparison n_{1s}/n_{0s};
    ATE:  treated 1 + n_{0s}/n_{1s}, comparison 1 + n_{1s}/n_{0s}.

Weighted means within each group are then the subclass means averaged with the treated
(ATT) or all-unit (ATE) subclass shares — the subclassification estimator as a weighted
difference in means (Imbens & Rubin 2015, ch. 17).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError

ESTIMANDS = ("ATT", "ATE")


def subclass_weights(subclass, treated, estimand: str = "ATT") -> np.ndarray:
    """MatchIt's subclass weights (module docstring); 0 where ``subclass`` is −1 or the
    subclass lacks a treated or a comparison unit."""
    if estimand not in ESTIMANDS:
        raise DataError(f"estimand must be one of {ESTIMANDS}; got {estimand!r}")
    s = np.asarray(subclass, np.int64)
    t1 = np.asarray(treated).astype(bool)
    ok = s >= 0
    n = int(s.max(initial=-1)) + 1
    n1 = np.bincount(s[ok & t1], minlength=n).astype(float)
    n0 = np.bincount(s[ok & ~t1], minlength=n).astype(float)
    both = (n1 > 0) & (n0 > 0)
    sc = np.where(ok, s, 0)
    keep = ok & both[sc]
    r10 = np.divide(n1, n0, out=np.zeros(n), where=n0 > 0)[sc]
    r01 = np.divide(n0, n1, out=np.zeros(n), where=n1 > 0)[sc]
    if estimand == "ATT":
        w = np.where(t1, 1.0, r10)
    else:
        w = np.where(t1, 1.0 + r01, 1.0 + r10)
    return np.where(keep, w, 0.0)


def r_quantile(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's default (type 7) quantiles, the same as numpy's "linear" method."""
    return np.quantile(x, probs, method="linear")


def _scoot(sub: np.ndarray, score: np.ndarray, treated: np.ndarray, n: int, min_n: int) -> np.ndarray:
    """Fill subclasses ``0..n−1`` holding fewer than ``min_n`` units of either group (module
    docstring). Moves at most ``2·n·min_n`` units, one vectorized step each."""
    sub = sub.copy()
    for grp in (False, True):
        idx = np.flatnonzero(treated == grp)
        if len(idx) < n * min_n:
            raise DataError(f"not enough {'treated' if grp else 'comparison'} rows to put {min_n} in each of "
                            f"{n} subclasses; ask for fewer subclasses")
        count = np.bincount(sub[idx], minlength=n).astype(float)
        for _ in range(min_n):
            while count.min() <= 0:
                s = int(np.argmax(count <= 0))
                if s == n - 1:
                    left = True
                elif s == 0:
                    left = False
                else:
                    s2 = np.flatnonzero((count > 1) & (np.arange(n) != s))
                    left = float(((count[s2] - 1) / (s2 - s)).sum()) <= 0
                side = np.arange(s - 1, -1, -1) if left else np.arange(s + 1, n)
                src = int(side[np.argmax(count[side] > 0)])
                members = idx[sub[idx] == src]
                x = score[members]
                best = x.max() if left else x.min()
                take = members[np.flatnonzero(x == best)[-1]]
                sub[take] = s
                count[s] += 1
                count[src] -= 1
            count -= 1
    return sub


def subclassify(score, treated, *, n_subclasses: int = 6, estimand: str = "ATT", cells=None,
                min_n: int = 1) -> np.ndarray:
    """Subclass per unit (``-1`` when its subclass lacks a treated or a comparison unit);
    subclasses of different cells get different numbers (module docstring)."""
    if not (isinstance(n_subclasses, (int, np.integer)) and n_subclasses >= 2):
        raise DataError(f"subclasses must be an integer of at least 2; got {n_subclasses!r}")
    if not (isinstance(min_n, (int, np.integer)) and not isinstance(min_n, bool) and min_n >= 0):
        raise DataError(f"min_n must be a whole number of at least 0; got {min_n!r}")
    if estimand not in ESTIMANDS:
        raise DataError(f"estimand must be one of {ESTIMANDS}; got {estimand!r}")
    score = np.asarray(score, float)
    t1 = np.asarray(treated).astype(bool)
    cells = np.zeros(len(score), np.int64) if cells is None else pd.factorize(np.asarray(cells))[0]
    out = np.full(len(score), -1, np.int64)
    n_cells = int(cells.max(initial=-1)) + 1
    for g in range(n_cells):  # one pass per exact-match cell
        in_g = cells == g
        n_t, n_c = int((in_g & t1).sum()), int((in_g & ~t1).sum())
        if not (n_t and n_c):  # a cell without one group: its rows in no subclass
            continue
        # of several cells, one too small to put min_n of each group in each subclass gets fewer
        # (one at the least); a single cell too small is an error (_scoot's, MatchIt's)
        n_g = max(1, min(n_subclasses, n_t // min_n, n_c // min_n)) if min_n > 0 and n_cells > 1 else n_subclasses
        ref = score[in_g & t1] if estimand == "ATT" else score[in_g]
        q = r_quantile(ref, np.linspace(0.0, 1.0, n_g + 1))
        k = np.clip(np.searchsorted(q, score[in_g], side="right"), 1, n_g) - 1  # findInterval
        if min_n > 0:  # over the subclasses that have units (as MatchIt)
            present, k = np.unique(k, return_inverse=True)
            k = present[_scoot(k, score[in_g], t1[in_g], len(present), min_n)]
        out[in_g] = g * n_subclasses + k
    out[subclass_weights(out, t1, "ATT") == 0] = -1  # subclasses missing a group
    ok = out >= 0
    dense = np.full(len(out), -1, np.int64)
    dense[ok] = np.unique(out[ok], return_inverse=True)[1]
    return dense

__all__ = ["subclassify", "subclass_weights", "r_quantile", "ESTIMANDS"]
