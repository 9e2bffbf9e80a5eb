"""What Works Clearinghouse (WWC) rules: the attrition standard and baseline equivalence.

Attrition (WWC Standards Handbook v4.1, section II.B and Table II.1)
--------------------------------------------------------------------
For each arm, attrition is the share of the *randomized* sample missing from the *analytic*
sample (the rows the impact estimate uses)::

    a_T = 1 − n_T^analytic / n_T^randomized,   a_C likewise
    overall      = 1 − (n_T^analytic + n_C^analytic) / (n_T^randomized + n_C^randomized)
    differential = |a_T − a_C|

Table II.1 (shipped as ``pleval/data_files/wwc_attrition_boundaries.csv``) gives, for each
whole-percent overall attrition 0–65, the largest differential (percentage points, one
decimal) that still counts as **low** attrition under the *cautious* and the *optimistic*
boundary. The rules applied here:

* on the boundary is low: low ⇔ differential ≤ bound (compared unrounded, with a 1e−9
  percentage-point allowance for floating-point noise only);
* cautious boundary: overall attrition ≥ 58% is high whatever the differential (blank cells);
* overall attrition above 65% is high under both boundaries;
* **non-integer overall attrition (conservative reading)**: the table only has whole
  percents, so an overall rate x strictly between two whole percents ⌊x⌋ and ⌈x⌉ is held to
  the *smaller* of the two rows' bounds; if either row is blank or beyond 65% (no
  differential is low there), attrition is high. E.g. under the cautious boundary 57.4%
  overall is high (the 58% row is blank), and 10.5% overall allows 6.2 points (min of 6.3
  and 6.2). Neither rounding the overall rate nor rounding the differential is done, since
  both can only turn a high verdict into a low one.

Baseline equivalence (WWC Standards Handbook v4.1, section II.D)
-----------------------------------------------------------------
For the baseline difference expressed as an effect size g (Hedges g for a continuous
measure, Cox index for a dichotomous one) in the analytic sample:

* |g| ≤ 0.05: satisfied;
* 0.05 < |g| ≤ 0.25: satisfied only if the impact model adjusts for the characteristic;
* |g| > 0.25: not satisfied.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from ._results import ResultMixin
from ._text import fixed
from .errors import DataError

BOUNDARIES = ("cautious", "optimistic")
LOW, HIGH = "low", "high"
SATISFIED = "satisfied"
REQUIRES_ADJUSTMENT = "requires statistical adjustment"
SATISFIED_ADJUSTED = "satisfied with statistical adjustment"
NOT_SATISFIED = "not satisfied"
EQUIVALENCE_BANDS = (0.05, 0.25)  # |g| up to the first: satisfied; up to the second: with adjustment
EQUIVALENCE_EDGES = tuple(sorted(s * b for b in EQUIVALENCE_BANDS for s in (-1, 1)))  # the same, as edges of g
_TOL_PCT = 1e-9  # floating-point allowance, in percentage points


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    path = resources.files("pleval").joinpath("data_files/wwc_attrition_boundaries.csv")
    with resources.as_file(path) as p:
        tab = pd.read_csv(p)
    return tab.set_index("overall_attrition_pct")


def attrition_boundaries() -> pd.DataFrame:
    """WWC Table II.1: overall attrition (whole %) -> largest low-attrition differential (points).

    Columns ``cautious_max_differential_pct`` and ``optimistic_max_differential_pct``; NaN where
    no differential counts as low. Returns a copy.
    """
    return _table().reset_index().copy()


def _check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise DataError(f"boundary must be one of {BOUNDARIES}; got {boundary!r}")
    return boundary


def _check_rate(x, name: str) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise DataError(f"{name} attrition must be a number (a proportion between 0 and 1); got {x!r}") from None
    if not (0.0 <= x <= 1.0):
        raise DataError(
            f"{name} attrition must be a proportion between 0 and 1 (e.g. 0.12 for 12%); got {x!r}"
        )
    return x


def max_differential(overall: float, boundary: str = "cautious") -> float:
    """Largest differential attrition (as a proportion) that is still low at ``overall``.

    ``overall`` is a proportion (0.12 = 12%). Returns NaN where no differential is low
    (cautious ≥ 58%, or above 65%). Non-integer percents use the conservative reading
    (smaller bound of the two neighbouring whole-percent rows; see the module docstring).
    """
    col = f"{_check_boundary(boundary)}_max_differential_pct"
    pct = 100.0 * _check_rate(overall, "overall")
    nearest = round(pct)
    if abs(pct - nearest) <= _TOL_PCT:
        rows = [int(nearest)]
    else:
        rows = [int(np.floor(pct)), int(np.ceil(pct))]
    tab = _table()[col]
    bounds = [tab.get(r, np.nan) for r in rows]
    if any(not np.isfinite(b) for b in bounds):
        return float("nan")
    return float(min(bounds)) / 100.0


def attrition_verdict(overall: float, differential: float, boundary: str = "cautious") -> str:
    """``"low"`` or ``"high"`` attrition under the WWC ``boundary`` (proportions in, on-boundary low)."""
    diff = _check_rate(differential, "differential")
    bound = max_differential(overall, boundary)
    if not np.isfinite(bound):
        return HIGH
    return LOW if 100.0 * diff <= 100.0 * bound + _TOL_PCT else HIGH


def overall_text(overall: float) -> str:
    """The overall attrition in percent with one decimal, or more where one would put it on or
    across a whole-percent row of Table II.1 (the rows that choose the bound): 10.004, not 10.0,
    for a rate held to the smaller of the 10% and 11% rows' bounds; exactly 10% is 10.0."""
    pct = 100 * overall
    return fixed(pct, 1, np.floor(pct), np.ceil(pct))


def differential_text(overall: float, differential: float) -> str:
    """The differential attrition in percentage points with one decimal, or more where one would
    put it on or across the cautious or optimistic bound at ``overall``: 6.32 (high), not 6.3,
    against a bound of 6.3 (on the bound is low)."""
    bounds = (max_differential(overall, b) for b in BOUNDARIES)
    return fixed(100 * differential, 1, *(100 * b for b in bounds if np.isfinite(b)))


def g_text(g: float, signed: bool = False) -> str:
    """A baseline difference ``g`` with three decimals, or more where three would put it on or
    across a band of :func:`baseline_equivalence`: 0.0504 (not satisfied without adjustment), not
    0.050."""
    return fixed(g, 3, *EQUIVALENCE_EDGES, signed=signed)


@dataclass(frozen=True, repr=False)
class Attrition(ResultMixin):
    """Attrition from the randomized to the analytic sample, with the WWC verdicts.

    ``level`` names the unit counted ("students", "schools", ...). Rates are proportions.
    """

    level: str
    n_randomized_treated: int
    n_randomized_control: int
    n_analytic_treated: int
    n_analytic_control: int

    def __post_init__(self):
        for arm in ("treated", "control"):
            r, a = getattr(self, f"n_randomized_{arm}"), getattr(self, f"n_analytic_{arm}")
            if r <= 0:
                raise DataError(f"attrition ({self.level}): no randomized {arm} units")
            if not 0 <= a <= r:
                raise DataError(
                    f"attrition ({self.level}): analytic {arm} count {a} is not between 0 and the randomized count {r}"
                )

    @property
    def attrition_treated(self) -> float:
        return 1.0 - self.n_analytic_treated / self.n_randomized_treated

    @property
    def attrition_control(self) -> float:
        return 1.0 - self.n_analytic_control / self.n_randomized_control

    @property
    def overall(self) -> float:
        n_r = self.n_randomized_treated + self.n_randomized_control
        return 1.0 - (self.n_analytic_treated + self.n_analytic_control) / n_r

    @property
    def differential(self) -> float:
        return abs(self.attrition_treated - self.attrition_control)

    def verdict(self, boundary: str = "cautious") -> str:
        return attrition_verdict(self.overall, self.differential, boundary)

    @property
    def verdict_cautious(self) -> str:
        return self.verdict("cautious")

    @property
    def verdict_optimistic(self) -> str:
        return self.verdict("optimistic")

    def as_dict(self) -> dict:
        return {
            "level": self.level,
            "n_randomized_treated": self.n_randomized_treated,
            "n_randomized_control": self.n_randomized_control,
            "n_analytic_treated": self.n_analytic_treated,
            "n_analytic_control": self.n_analytic_control,
            "attrition_treated": self.attrition_treated,
            "attrition_control": self.attrition_control,
            "overall": self.overall,
            "differential": self.differential,
            "max_differential_cautious": max_differential(self.overall, "cautious"),
            "max_differential_optimistic": max_differential(self.overall, "optimistic"),
            "verdict_cautious": self.verdict_cautious,
            "verdict_optimistic": self.verdict_optimistic,
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.as_dict()])

    def summary(self) -> str:
        return (
            f"Attrition ({self.level}): overall {overall_text(self.overall)}%, differential "
            f"{differential_text(self.overall, self.differential)} points (treated {self.attrition_treated:.1%}, "
            f"control {self.attrition_control:.1%}); WWC: {self.verdict_cautious} under the cautious "
            f"boundary, {self.verdict_optimistic} under the optimistic boundary"
        )


def attrition(
    n_randomized_treated: int,
    n_randomized_control: int,
    n_analytic_treated: int,
    n_analytic_control: int,
    *,
    level: str = "students",
) -> Attrition:
    """Attrition rates and WWC verdicts from the four counts (see :class:`Attrition`)."""
    counts = [n_randomized_treated, n_randomized_control, n_analytic_treated, n_analytic_control]
    if any(int(c) != c for c in counts):
        raise DataError(f"attrition ({level}): counts must be whole numbers; got {counts}")
    return Attrition(level, *(int(c) for c in counts))


def baseline_equivalence(g, adjusted: bool | None = None):
    """WWC baseline-equivalence verdict for a baseline difference ``g`` in effect-size units.

    * ``|g| ≤ 0.05``: ``"satisfied"``;
    * ``0.05 < |g| ≤ 0.25``: ``"requires statistical adjustment"`` when ``adjusted`` is None,
      ``"satisfied with statistical adjustment"`` when the impact model adjusts for the
      characteristic (``adjusted=True``), ``"not satisfied"`` when it does not;
    * ``|g| > 0.25``: ``"not satisfied"``; NaN g gives ``"not assessed"``.

    Accepts a scalar (returns a str) or an array/Series (returns the same shape of str).
    Source: WWC Standards Handbook v4.1, section II.D.
    """
    a = np.abs(np.asarray(g, dtype=float))
    middle = REQUIRES_ADJUSTMENT if adjusted is None else (SATISFIED_ADJUSTED if adjusted else NOT_SATISFIED)
    tol = 1e-12
    out = np.select(
        [~np.isfinite(a), a <= EQUIVALENCE_BANDS[0] + tol, a <= EQUIVALENCE_BANDS[1] + tol],
        [np.array("not assessed", dtype=object), np.array(SATISFIED, dtype=object), np.array(middle, dtype=object)],
        default=np.array(NOT_SATISFIED, dtype=object),
    ).astype(object)
    if isinstance(g, pd.Series):
        return pd.Series(out, index=g.index, name=g.name)
    return out.item() if out.ndim == 0 else out


__all__ = [
    "BOUNDARIES",
    "Attrition",
    "attrition",
    "attrition_boundaries",
    "attrition_verdict",
    "max_differential",
    "overall_text",
    "differential_text",
    "baseline_equivalence",
    "g_text",
]
