"""E-values (VanderWeele & Ding 2017): how strong a confounder would have to be, on the risk-ratio
scale, to explain away an estimate.

For a risk ratio RR ≥ 1 (take 1/RR below 1)::

    E = RR + √(RR·(RR − 1))

the minimum strength of association, on the risk-ratio scale, that an unmeasured confounder
would need with both the treatment and the outcome, conditional on the measured covariates,
to move the estimate to the null (VanderWeele & Ding 2017, *Annals of Internal Medicine*
167:268–274). The E-value of the confidence interval is that of the limit closest to the null
(1 if the interval contains the null).

**Continuous outcomes.** An effect size (standardized mean difference) d is put on the
risk-ratio scale by ``RR ≈ exp(0.91·d)`` (VanderWeele 2017, from Hasselblad & Hedges 1995:
the log odds ratio ≈ 1.81·d for a dichotomized normal outcome and RR ≈ √OR for a common
outcome), and the interval limits likewise, ``exp(0.91·d_lo)``, ``exp(0.91·d_hi)``. The
approximation is what the EValue R package's ``evalues.MD`` uses (its interval is d ± 1.96·SE;
pleval maps its own CI for the effect size, whose critical value is t with the design's df).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import ResultMixin
from ..errors import DataError

SMD_TO_LOG_RR = 0.91


def evalue_rr(rr) -> np.ndarray:
    """E-value of risk ratio(s) ``rr`` (> 0): ``RR* + √(RR*(RR* − 1))`` with RR* = max(RR, 1/RR)."""
    rr = np.asarray(rr, dtype=float)
    if np.any(~(rr > 0)):
        raise DataError("risk ratios must be positive")
    r = np.where(rr < 1, 1.0 / rr, rr)
    return r + np.sqrt(r * (r - 1.0))


def evalue_ci(rr, lo, hi) -> float:
    """E-value of the confidence limit closest to the null (1 if the CI contains 1)."""
    if not (0 < lo <= hi):
        raise DataError(f"need 0 < lower <= upper confidence limits; got {lo!r}, {hi!r}")
    if lo <= 1 <= hi:
        return 1.0
    return float(evalue_rr(lo if rr > 1 else hi))


@dataclass(frozen=True, repr=False)
class EValue(ResultMixin):
    """E-values of an effect size and of its CI limit closest to the null."""

    effect_size: float
    ci_low: float
    ci_high: float
    rr: float
    rr_low: float
    rr_high: float
    evalue: float
    evalue_ci: float
    label: str = ""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{k: getattr(self, k) for k in ("effect_size", "ci_low", "ci_high", "rr", "rr_low",
                                                            "rr_high", "evalue", "evalue_ci")}])

    def summary(self) -> str:
        return (
            f"E-value{' — ' + self.label if self.label else ''}: {self.evalue:.3f} for the effect size "
            f"{self.effect_size:.3f} (RR ≈ exp(0.91·d) = {self.rr:.3f}); {self.evalue_ci:.3f} for the CI limit "
            f"closest to the null (CI {self.ci_low:.3f} to {self.ci_high:.3f})"
        )


def evalue_smd(d: float, ci_low: float, ci_high: float, *, label: str = "") -> EValue:
    """E-values for a standardized mean difference ``d`` and its CI via ``RR ≈ exp(0.91·d)``."""
    if not all(math.isfinite(v) for v in (d, ci_low, ci_high)) or ci_low > ci_high:
        raise DataError(f"need a finite effect size inside a finite CI; got {d!r} ({ci_low!r}, {ci_high!r})")
    if max(abs(d), abs(ci_low), abs(ci_high)) * SMD_TO_LOG_RR > 700:  # exp() overflows; no effect is that large
        raise DataError(f"an effect size of {d:g} SD is too large for an E-value (a risk ratio beyond floating point); "
                        "check the SD it is standardized by")
    rr, lo, hi = (math.exp(SMD_TO_LOG_RR * v) for v in (d, ci_low, ci_high))
    return EValue(float(d), float(ci_low), float(ci_high), rr, lo, hi, float(evalue_rr(rr)), evalue_ci(rr, lo, hi), label)


__all__ = ["evalue_rr", "evalue_ci", "evalue_smd", "EValue", "SMD_TO_LOG_RR"]
