"""Coarsened exact matching (CEM; Iacus, King & Porro 2012), as MatchIt's ``method = "cem"``.

Each numeric covariate is coarsened into bins, categorical ones are kept (or their levels
grouped), and units are matched exactly on the coarsened values: every cell (stratum) holding
both treated and comparison units is a matched set, the others are unmatched. Weights are the
subclass weights of :func:`pleval.matching.subclass.subclass_weights` (ATT: comparisons get
``n_1s/n_0s``).

Bins, as MatchIt (``cem_matchit``) makes them from all units of the analysed data:

* ``"sturges"`` (default), ``"scott"``, ``"fd"``: that many equal-width bins by R's
  ``nclass.Sturges`` = ⌈log₂ n + 1⌉, ``nclass.scott`` = ⌈range / (3.5 s n^(−1/3))⌉ or
  ``nclass.FD`` = ⌈range / h · n^(1/3)⌉ with h twice the IQR of the values rounded to 5
  significant digits — when that is 0 (over half the values equal) the 1/8–7/8, 1/16–15/16, …,
  1/512–511/512 quantile range divided by 1 − 2α, then Scott's 3.5 s (R ≥ 4.1; before
  2026-12-05 such a column got 1 bin, so it was not matched on);
* a number ``b``: ``b`` equal-width bins between the minimum and maximum;
* ``"q<b>"``: ``b`` bins at the quantiles (type 7);
* a list of cut points; ``0`` keeps the variable exact (no binning).

Given ``b`` bins the breaks are ``min + (max − min)·j/b``, the outer two replaced by ∓∞, and
a value on a break goes to the bin above it (R's ``findInterval``; the cem package puts it
below). Binary 0/1 numeric covariates are binned too, which keeps 0 and 1 apart.
``grouping={"race": [["white", "hispan"]]}`` merges levels of a categorical covariate.

Exact matching (MatchIt's ``method = "exact"``; pleval's ``method="exact"``) is the same with
no coarsening: every distinct combination of the covariates is a subclass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ._design import combine_codes, is_categorical, nonfinite_message
from .subclass import r_quantile


def n_bins(x: np.ndarray, rule: str) -> int:
    """R's ``nclass.Sturges``, ``nclass.scott`` and ``nclass.FD`` (R ≥ 4.1: :func:`fd_spread`,
    then Scott's ``3.5 s`` when that is 0, and ⌈range / h · n^(1/3)⌉)."""
    n = len(x)
    if rule == "sturges":
        return int(np.ceil(np.log2(n) + 1))
    span = float(x.max() - x.min())
    if rule == "scott":
        h = 3.5 * np.sqrt(np.var(x, ddof=1)) * n ** (-1 / 3)
        return max(1, int(np.ceil(span / h))) if h > 0 else 1
    h = fd_spread(x)
    if h == 0:
        h = 3.5 * np.sqrt(np.var(x, ddof=1))
    return int(np.ceil(span / h * n ** (1 / 3))) if h > 0 else 1


def signif(x: np.ndarray, digits: int) -> np.ndarray:
    """R's ``signif``: ``x`` rounded to ``digits`` significant digits (0 stays 0)."""
    x = np.asarray(x, float)
    with np.errstate(divide="ignore"):
        mag = np.floor(np.log10(np.abs(x)))
    scale = 10.0 ** np.where(np.isfinite(mag), digits - 1 - mag, 0)
    return np.round(x * scale) / scale


def fd_spread(x: np.ndarray) -> float:
    """The spread of R's ``nclass.FD`` on ``signif(x, 5)``: twice the IQR; when that is 0 (over
    half the values equal), the first nonzero of the (α, 1 − α) quantile ranges divided by
    1 − 2α for α = 1/8, 1/16, …, 1/512; 0 if all of them are."""
    xs = signif(x, 5)
    q1, q3 = r_quantile(xs, np.array([0.25, 0.75]))
    if q3 > q1:
        return 2.0 * (q3 - q1)
    al = 0.5 ** np.arange(3, 10)
    lo, hi = r_quantile(xs, al), r_quantile(xs, 1 - al)
    wide = np.flatnonzero(hi > lo)
    return float((hi - lo)[wide[0]] / (1 - 2 * al[wide[0]])) if len(wide) else 0.0


def coarsen(x: np.ndarray, cut) -> np.ndarray:
    """Bin index of each value of ``x`` by the rule ``cut`` (module docstring)."""
    if isinstance(cut, str):
        rule = cut.lower()
        if rule.startswith("q") and rule[1:].isdigit():
            b = int(rule[1:])
            inner = r_quantile(x, np.arange(1, b) / b)
            return np.searchsorted(np.concatenate([[-np.inf], np.unique(inner), [np.inf]]), x, side="right")
        if rule not in ("sturges", "scott", "fd"):
            raise DataError(f"cutpoints rule must be 'sturges', 'scott', 'fd', 'q<bins>', a number of bins or a list; got {cut!r}")
        cut = n_bins(x, rule)
    if np.ndim(cut) == 0:
        b = int(cut)
        if b < 0 or b != cut:
            raise DataError(f"a number of bins must be a non-negative integer; got {cut!r}")
        if b == 0:
            return pd.factorize(x, sort=True)[0]
        breaks = np.linspace(x.min(), x.max(), b + 1)
        breaks[0], breaks[-1] = -np.inf, np.inf
    else:
        breaks = np.concatenate([[-np.inf], np.unique(np.asarray(cut, float)), [np.inf]])
    return np.searchsorted(breaks, x, side="right")


def cem_cells(data: pd.DataFrame, covariates, *, cutpoints=None, grouping=None, categorical=(),
              default="sturges") -> np.ndarray:
    """One cell code per row: the combination of the coarsened ``covariates`` (numeric ones not
    in ``cutpoints`` by the ``default`` rule; ``default=0`` is exact matching)."""
    cutpoints = dict(cutpoints or {})
    grouping = dict(grouping or {})
    unknown = [c for c in list(cutpoints) + list(grouping) if c not in covariates]
    if unknown:
        raise DataError(f"cutpoints/grouping name column(s) not among the CEM covariates: {', '.join(map(repr, unknown))}")
    frame = {}
    for c in covariates:
        s = data[c]
        if c in grouping or c in categorical or is_categorical(s):
            if c in cutpoints:
                raise DataError(f"column {c!r} is categorical: merge its levels with grouping=, not cutpoints=")
            v = s.astype(object).to_numpy()
            absent = [x for group in grouping.get(c, []) for x in group if not (s == x).any()]
            if absent:  # a misspelt level would leave its group unmerged without a word
                raise DataError(f"grouping of {c!r} names level(s) not in the data: {', '.join(map(repr, absent))}; "
                                f"its levels are {', '.join(map(repr, sorted(s.dropna().unique(), key=str)[:10]))}")
            for group in grouping.get(c, []):
                v = np.where(pd.Series(v).isin(list(group)).to_numpy(), group[0], v)
            frame[c] = v
        else:
            x = pd.to_numeric(s, errors="coerce").to_numpy(float)
            if not np.isfinite(x).all():
                raise DataError(nonfinite_message(data, c, x))
            frame[c] = coarsen(x, cutpoints.get(c, default))
    return combine_codes(pd.DataFrame(frame, index=data.index), list(covariates))


__all__ = ["cem_cells", "coarsen", "fd_spread", "n_bins", "signif"]
