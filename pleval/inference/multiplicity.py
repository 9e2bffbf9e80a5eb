"""Multiplicity adjustment of p-values.

* ``"bh"``: Benjamini & Hochberg (1995) step-up false-discovery-rate adjustment,
  ``p_(i)^adj = min_{j ≥ i} min(1, m·p_(j)/j)``.
* ``"holm"``: Holm (1979) step-down family-wise adjustment,
  ``p_(i)^adj = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``.
* ``"bonferroni"``: ``min(1, m·p)``.

The arithmetic is statsmodels' ``multipletests``; this wrapper keeps NaNs in place
(they are left out of m) and preserves a pandas index.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from ..errors import DataError

_METHODS = {"bh": "fdr_bh", "holm": "holm", "bonferroni": "bonferroni"}


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
        out[ok] = multipletests(p[ok], method=_METHODS[method])[1]
    if isinstance(pvalues, pd.Series):
        return pd.Series(out, index=pvalues.index, name=pvalues.name)
    return out


__all__ = ["adjust_pvalues"]
