"""Multiplicity adjustment of p-values.

* ``"bh"``: Benjamini & Hochberg (1995) step-up false-discovery-rate adjustment,
  ``p_(i)^adj = min_{j ≥ i} min(1, m·p_(j)/j)``.
* ``"holm"``: Holm (1979) step-down family-wise adjustment,
  ``p_(i)^adj = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``.
* ``"bonferroni"``: ``min(1, m·p)``.

The arithmetic is statsmodels' ``multipletests``, but for Holm: statsmodels' Holm branch runs a
full garbage collection (``gc.collect()``) on every call, 0.06 s each in a small analysis
process and more in a large one (still in statsmodels 0.15; pull request #8671 to drop it was
closed), so Holm is the same three steps here (:func:`_holm`: the same products, running maximum and clip, tested to be
bit-for-bit statsmodels'). This wrapper keeps NaNs in place (they are left out of m) and
preserves a pandas index.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from ..errors import DataError

_METHODS = {"bh": "fdr_bh", "holm": "holm", "bonferroni": "bonferroni"}


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values of the finite ``p`` (module docstring): sorted ascending, the
    i-th (from 0) times m − i, the running maximum, at most 1 — statsmodels' arithmetic."""
    order = np.argsort(p, kind="stable")
    adj = np.minimum(np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)), 1.0)
    out = np.empty_like(adj)
    out[order] = adj
    return out


def adjust_pvalues(pvalues, method: Literal["bh", "holm", "bonferroni"] = "bh"):
    """Adjusted p-values (same shape; NaN stays NaN and does not count towards m)."""
    if method not in _METHODS:
        raise DataError(f"method must be one of {sorted(_METHODS)}; got {method!r}")
    p = np.asarray(pvalues, dtype=float)
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise DataError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    if ok.any():
        out[ok] = _holm(p[ok]) if method == "holm" else multipletests(p[ok], method=_METHODS[method])[1]
    if isinstance(pvalues, pd.Series):
        return pd.Series(out, index=pvalues.index, name=pvalues.name)
    return out


__all__ = ["adjust_pvalues"]
