"""The order in which random draws meet the units: by their values, not by the rows' order.

A Monte Carlo test with a fixed seed draws its random numbers in sequence and hands the first to
the first unit (school, cluster, student), the second to the next, and so on. If the units come
in the order of the file's rows, re-sorting the same data changes which unit gets which draw,
and so the p-value, by its Monte Carlo error (a bootstrap p moved from 0.046 to 0.054 on a
re-sorted trial file). Putting the units in the order of their own values first makes the draws,
and the p-value, a function of the data alone; units with equal values are exchangeable in the
statistic, so how those ties fall does not matter. Groups of units drawn in turn (a trial's
blocks) are put in the order of their content the same way, not of their labels.
"""

from __future__ import annotations

import numpy as np

DIGITS = 12
"""Values are compared to this many significant digits (relative to each column's largest
magnitude), so that floating-point noise from summing in another order cannot reorder units."""


def _rounded(col) -> np.ndarray:
    x = np.asarray(col, dtype=float).ravel()
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    return np.round(x / scale, DIGITS) if scale > 0 and np.isfinite(scale) else x


def value_order(*columns) -> np.ndarray:
    """Stable order of the units by ``columns`` (the first the primary key), each rounded to
    :data:`DIGITS` significant digits of its largest magnitude."""
    return np.lexsort([_rounded(c) for c in columns][::-1])


def group_codes(groups, *columns) -> np.ndarray:
    """New codes 0..G-1 for group codes ``groups`` (each of 0..G-1 present), numbered by the
    groups' content, not their labels: by size, then by their units' rounded ``columns`` in
    :func:`value_order`, compared in turn. Groups of equal content are interchangeable, so how
    their ties fall does not matter."""
    groups = np.asarray(groups, dtype=np.intp).ravel()
    keys = [_rounded(c) for c in columns]
    o = np.lexsort(keys[::-1] + [groups])  # by group, then by values
    vals = np.column_stack([k[o] for k in keys])
    size = np.bincount(groups)
    start = np.r_[0, np.cumsum(size)[:-1]]
    new = np.empty(size.size, dtype=np.intp)
    done = 0
    for s in np.unique(size):
        same = np.flatnonzero(size == s)
        if same.size > 1:  # equal sizes: by content (one row of values per group)
            content = vals[start[same, None] + np.arange(s)].reshape(same.size, -1)
            same = same[np.lexsort(content.T[::-1])]
        new[same] = done + np.arange(same.size)
        done += same.size
    return new


__all__ = ["value_order", "group_codes", "DIGITS"]
