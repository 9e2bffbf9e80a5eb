"""Tables behind the planning plots: power and MDES over a range of sample sizes.

:func:`power_table` varies one size (``solve_for``, e.g. schools) and one design input
(``vary``, e.g. ``icc`` or ``r2_school``) and gives the power for a fixed effect;
:func:`mdes_table` gives the MDES (SD and percentile points) over the same sizes. Both
return long DataFrames that :func:`pleval.plots.power_curve` and
:func:`pleval.plots.mdes_curve` draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DesignError
from ..percentiles import to_percentile_points
from .designs import Design


def default_sizes(design: Design, solve_for: str) -> np.ndarray:
    """About 40 whole sizes from the smallest workable one to three times the planned size."""
    now = float(getattr(design, solve_for))
    top = max(10, int(np.ceil(3 * now)))
    sizes = np.unique(np.linspace(2, top, 40).round().astype(int))
    ok = []
    for s in sizes:  # at most 40 sizes
        try:
            design.replace(**{solve_for: int(s)})
            ok.append(int(s))
        except DesignError:
            continue
    return np.array(ok)


def power_table(design: Design, effect: float, solve_for: str | None = None, sizes=None, vary: str = "icc",
                values=None) -> pd.DataFrame:
    """Power for ``effect`` (SD) at each size, one curve per value of ``vary``.

    ``values`` default: the design's own value of ``vary`` with half and twice it (capped below 1).
    Columns: size, solve_for, vary, value, power, effect.
    """
    key = design._solve_key(solve_for)
    if not hasattr(design, vary) or vary in design.sizes:
        raise DesignError(f"{design.name}: vary must name a design input such as icc or r2_school; got {vary!r}")
    own = float(getattr(design, vary))
    if values is None:
        values = sorted({round(v, 4) for v in (own / 2, own, min(2 * own, 0.95)) if 0 <= v < 1}) or [own]
    sizes = default_sizes(design, key) if sizes is None else np.asarray(sizes, dtype=int)
    rows = []
    for v in values:  # a few curves
        base = design.replace(**{vary: float(v)})
        for s in sizes:  # a few dozen points each
            rows.append({"size": int(s), "solve_for": key, "vary": vary, "value": float(v),
                         "power": base.replace(**{key: int(s)}).power(effect), "effect": float(effect)})
    return pd.DataFrame(rows)


def mdes_table(design: Design, solve_for: str | None = None, sizes=None, power: float = 0.80) -> pd.DataFrame:
    """MDES at ``power`` for each size. Columns: size, solve_for, mdes, mdes_pp, power."""
    key = design._solve_key(solve_for)
    sizes = default_sizes(design, key) if sizes is None else np.asarray(sizes, dtype=int)
    m = np.array([design.replace(**{key: int(s)}).mdes(power) for s in sizes])
    return pd.DataFrame({"size": sizes.astype(int), "solve_for": key, "mdes": m,
                         "mdes_pp": to_percentile_points(m, design.baseline_percentile), "power": power})


__all__ = ["power_table", "mdes_table", "default_sizes"]
