"""Effect sizes as percentile points, and back.

A percentile-point effect is a shift in *rank*: a student who would have scored at the
``p``-th percentile of the comparison distribution without the program is expected to
score at the ``p + Δ``-th percentile with it. It is **not** a change of Δ percentage
points in the test score. Under normality of the outcome, for a standardized effect g,

    Δ(g; p) = 100·Φ(Φ⁻¹(p/100) + g) − p                        (1)

and at the median (p = 50) this is the What Works Clearinghouse *improvement index*

    I(g) = 100·Φ(g) − 50                                        (2)

(WWC Procedures and Standards Handbook v5.0, "improvement index"; Cohen's U3 − 50).
The inverse of (1) is g = Φ⁻¹((p + Δ)/100) − Φ⁻¹(p/100). Because (1) is strictly
increasing in g, a confidence interval for g maps to one for Δ by its endpoints.
"""

from __future__ import annotations

import math
import numbers
from statistics import NormalDist

from .errors import DataError

IMPLAUSIBLE_ES = 2.0
"""Effect sizes beyond this many SDs are flagged as probably on another scale (score or
percentile points): effects of education programs are rarely above 0.5 SD (Kraft 2020,
"Interpreting effect sizes of education interventions", Educational Researcher 49(4));
``pleval schools`` and ``pleval convert`` warn of them."""

NOTE = "Percentile points are shifts in rank, not percentage points of the score."

# A single number is computed with the standard library (NormalDist: Φ by erfc, Φ⁻¹ by Wichura's
# AS241, relative error about 1e-16), arrays with numpy and scipy.special (ndtr, ndtri: what
# scipy.stats.norm.cdf/ppf call). Both are exact to double precision (tests compare them with
# scipy.stats.norm); converting one number (`pleval convert 0.08`) loads neither numpy nor scipy.
_N = NormalDist()


def _numbers(*xs) -> bool:
    return all(isinstance(x, numbers.Real) for x in xs)


def _baseline(p):
    if _numbers(p):
        if not (math.isfinite(p) and 0 < p < 100):
            raise DataError(f"baseline_percentile must lie strictly between 0 and 100; got {[float(p)]}")
        return float(p)
    import numpy as np

    from ._align import floats

    p = floats(p, "baseline_percentile")
    if not np.all(np.isfinite(p)) or np.any((p <= 0) | (p >= 100)):
        raise DataError(
            f"baseline_percentile must lie strictly between 0 and 100; got {np.ravel(p)[:5].tolist()}"
        )
    return p


def _finite(x, name: str):
    if _numbers(x):
        if not math.isfinite(x):
            raise DataError(f"{name} must be finite; 1 value(s) are NaN or infinite")
        return float(x)
    import numpy as np

    from ._align import floats

    x = floats(x, name)
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise DataError(f"{name} must be finite; {bad} value(s) are NaN or infinite")
    return x


def _paired(names: tuple[str, ...], *xs):
    """``xs`` ready to combine element by element: pandas Series paired by their labels
    (:func:`pleval._align.paired`: in the first Series' order), then checked to broadcast. A
    :class:`DataError` names the arguments whose labels or shapes do not match."""
    if _numbers(*xs):
        return xs
    import numpy as np

    from ._align import paired

    xs = paired(names, *xs)
    try:
        np.broadcast_shapes(*(np.shape(x) for x in xs))
    except ValueError:
        raise DataError(", ".join(f"{n} has shape {np.shape(x)}" for n, x in zip(names, xs))
                        + ": they must have the same length (or be single numbers)") from None
    return xs


def _cdf(x):
    """Φ (see the note above on numbers and arrays)."""
    if _numbers(x):
        return _N.cdf(x)
    from scipy.special import ndtr

    return ndtr(x)


def _ppf(q):
    """Φ⁻¹ (see the note above on numbers and arrays)."""
    if _numbers(q):
        return _N.inv_cdf(q)
    from scipy.special import ndtri

    return ndtri(q)


def _out(values, like):
    """Return a float for scalar input, an array (or pandas object) otherwise."""
    if _numbers(values):
        return float(values)
    import numpy as np

    if np.ndim(values) == 0:
        return float(values)
    try:
        import pandas as pd

        if isinstance(like, pd.Series):
            return pd.Series(values, index=like.index, name=like.name)
    except ImportError:  # pragma: no cover
        pass
    return values


def to_percentile_points(g, baseline_percentile=50.0):
    """Percentile-point shift for standardized effect ``g`` from a baseline percentile.

    ``Δ = 100·Φ(Φ⁻¹(p/100) + g) − p`` (equation 1 of this module). Vectorized over ``g``
    and ``baseline_percentile`` (numpy broadcasting); a pandas Series keeps its index.

    >>> round(to_percentile_points(0.08), 2)
    3.19
    """
    g, baseline_percentile = _paired(("g", "baseline_percentile"), g, baseline_percentile)
    gg = _finite(g, "effect size g")
    z = _ppf(_baseline(baseline_percentile) / 100.0)
    # Φ(z + g) − Φ(z), not − p: Φ(Φ⁻¹(p)) misses p by an ulp, so g = 0 gave −1.8e−15 ("a loss of 0.00")
    return _out(100.0 * (_cdf(z + gg) - _cdf(z)), g)


def from_percentile_points(points, baseline_percentile=50.0):
    """Standardized effect that moves the ``p``-th percentile by ``points``.

    The exact inverse of :func:`to_percentile_points`:
    ``g = Φ⁻¹((p + Δ)/100) − Φ⁻¹(p/100)``; requires ``0 < p + Δ < 100``.
    """
    points, baseline_percentile = _paired(("points", "baseline_percentile"), points, baseline_percentile)
    d = _finite(points, "percentile points")
    p = _baseline(baseline_percentile)
    target = p + d
    bad = not 0 < target < 100 if _numbers(target) else bool(((target <= 0) | (target >= 100)).any())
    if bad:
        import numpy as np

        raise DataError(
            "baseline_percentile + percentile points must lie strictly between 0 and 100 "
            f"(a student cannot move past the 0th or 100th percentile); got {np.ravel(target)[:5].tolist()}"
        )
    return _out(_ppf(target / 100.0) - _ppf(p / 100.0), points)


def improvement_index(g):
    """WWC improvement index ``100·Φ(g) − 50``: percentile points from the median."""
    return to_percentile_points(g, 50.0)


def percentile_points_se(g, se, baseline_percentile=50.0):
    """Delta-method standard error of Δ(g; p): ``100·φ(Φ⁻¹(p/100) + g)·se``.

    Use the mapped interval (:func:`percentile_interval`) for inference; this SE is for
    tables that want one.
    """
    import numpy as np

    from ._align import floats

    g, se, baseline_percentile = _paired(("g", "se", "baseline_percentile"), g, se, baseline_percentile)
    gg = _finite(g, "effect size g")
    ss = floats(se, "standard error se")
    if np.any(ss < 0):  # (a missing SE stays missing)
        raise DataError(f"standard error se must not be negative; {int((ss < 0).sum())} value(s) are")
    p = _baseline(baseline_percentile)
    z = np.asarray(_ppf(p / 100.0) + gg, dtype=float)
    return _out(100.0 * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * ss, g)


def percentile_interval(ci_low, ci_high, baseline_percentile=50.0):
    """Map a confidence interval for g to percentile points by its endpoints.

    Valid because Δ(g; p) is strictly increasing in g. Returns ``(low, high)``; a ``ci_low``
    above its ``ci_high`` is an error (the ends given the wrong way round).
    """
    ci_low, ci_high, baseline_percentile = _paired(("ci_low", "ci_high", "baseline_percentile"), ci_low, ci_high,
                                                   baseline_percentile)
    if _numbers(ci_low, ci_high):
        lo, hi = float(ci_low), float(ci_high)
    else:
        import numpy as np

        lo, hi = (np.ravel(a) for a in np.broadcast_arrays(np.asarray(ci_low, float), np.asarray(ci_high, float)))
        i = int(np.argmax(np.nan_to_num(lo - hi, nan=-np.inf))) if lo.size else 0  # (NaN ends: a missing CI)
        lo, hi = (float(lo[i]), float(hi[i])) if lo.size else (0.0, 0.0)
    if lo > hi:  # (of arrays: the pair most out of order)
        raise DataError(f"a confidence interval's low end ({lo:g}) exceeds its high end ({hi:g}); give it as LOW HIGH")
    return (
        to_percentile_points(ci_low, baseline_percentile),
        to_percentile_points(ci_high, baseline_percentile),
    )


def interpret(points: float, baseline_percentile: float = 50.0) -> str:
    """One plain-language sentence for a percentile-point effect."""
    q = baseline_percentile + points
    if round(abs(points), 2) == 0:  # "a loss of 0.00" or "a gain of 0.00" says more than the number does
        return (f"No shift to two decimals ({points:+.2g} percentile points): a student who would have scored at "
                f"the {_ordinal(baseline_percentile, exact=True)} percentile without the program is expected to score there with "
                f"it. {NOTE}")
    direction = "gain" if points > 0 else "loss"
    return (
        f"A {direction} of {abs(points):.2f} percentile points: a student who would have scored at the "
        f"{_ordinal(baseline_percentile, exact=True)} percentile without the program is expected to score at about the "
        f"{_ordinal(q)} with it. {NOTE}"
    )


def _ordinal(x: float, exact: bool = False) -> str:
    """``x`` as an ordinal percentile. A percentile reached (``exact=False``) is rounded, halves
    up: "53rd"; outside 1–99 with the decimals that keep it inside (0, 100) ("99.97th", "0.4th"),
    since no student scores at the 0th or 100th. A given one (``exact=True``, a baseline) is
    written as given: "50th", "50.5th"."""
    if exact:
        n = round(x)
        return f"{x:.10g}th" if abs(x - n) > 1e-9 else _suffixed(int(n))
    n = math.floor(x + 0.5)
    if not 1 <= n <= 99:
        for d in range(1, 16):
            if 0 < round(x, d) < 100:
                return f"{x:.{d}f}".rstrip("0") + "th"
        return "100th (to the precision of the arithmetic)" if x > 50 else "0th (to the precision of the arithmetic)"
    return _suffixed(n)


def _suffixed(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


__all__ = [
    "to_percentile_points",
    "from_percentile_points",
    "improvement_index",
    "percentile_points_se",
    "percentile_interval",
    "interpret",
    "NOTE",
]
