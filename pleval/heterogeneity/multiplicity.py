"""How many schools are significantly positive or negative — raw and adjusted for multiplicity.

With k schools each tested at level α, about ``α·k`` schools are "significant" by chance
alone when the program does nothing anywhere (``α·k/2`` in each direction, for independent
two-sided tests). Adjusted p-values come from :func:`pleval.inference.adjust_pvalues`:
Benjamini & Hochberg (1995) false-discovery rate (default) or Holm (1979) family-wise error.
Under the global null (no school has any effect) both adjusted procedures declare any school
significant with probability at most α, so the chance expectation of their counts is ≈ 0.
``p_excess`` is the binomial probability ``P(Bin(k, α) ≥ n_significant_raw)`` of at least as
many raw significant schools under no effect (independent tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._align import floats, paired
from .._results import ResultMixin
from ..errors import DataError
from ..inference import adjust_pvalues


@dataclass(frozen=True, repr=False)
class SignificanceCounts(ResultMixin):
    """Counts of significantly positive / negative schools (immutable)."""

    k: int
    alpha: float
    method: str
    positive_raw: int
    negative_raw: int
    positive_adjusted: int
    negative_adjusted: int
    expected_by_chance: float
    p_excess: float
    p_adjusted: np.ndarray

    def as_dict(self) -> dict:
        return {
            "k": self.k,
            "alpha": self.alpha,
            "adjustment": self.method,
            "positive_raw": self.positive_raw,
            "negative_raw": self.negative_raw,
            "positive_adjusted": self.positive_adjusted,
            "negative_adjusted": self.negative_adjusted,
            "expected_by_chance": self.expected_by_chance,
            "expected_by_chance_each_direction": self.expected_by_chance / 2,
            "p_excess": self.p_excess,
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.as_dict()])

    def summary(self) -> str:
        name = {"bh": "Benjamini-Hochberg (FDR)", "holm": "Holm (FWER)", "bonferroni": "Bonferroni (FWER)"}[self.method]
        return "\n".join(
            [
                f"Schools significant at alpha = {self.alpha:g} (k = {self.k}):",
                f"  unadjusted: {self.positive_raw} positive, {self.negative_raw} negative "
                f"(about {self.expected_by_chance:.1f} expected by chance if the program did nothing, "
                f"{self.expected_by_chance / 2:.1f} each way; P(at least this many) = {self.p_excess:.3g})",
                f"  {name} adjusted: {self.positive_adjusted} positive, {self.negative_adjusted} negative",
            ]
        )


def significance_counts(
    estimates, pvalues, *, alpha: float = 0.05, method: Literal["bh", "holm", "bonferroni"] = "bh"
) -> SignificanceCounts:
    """Count schools whose effect is significantly positive / negative, raw and adjusted.

    Schools with a missing p-value or estimate are left out of k, of the counts and of the
    adjustment (their adjusted p-value is NaN): Holm/BH take ``m = k``. Two pandas Series are
    paired by their labels, ``p_adjusted`` in the estimates' order (before 2026-12-05 they were
    paired by position); arrays by position.
    """
    if not 0 < alpha < 1:
        raise DataError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    estimates, pvalues = paired(("estimates", "pvalues"), estimates, pvalues)
    est = floats(estimates, "estimates")
    p = floats(pvalues, "pvalues")
    if est.shape != p.shape:
        raise DataError(f"estimates ({est.size}) and pvalues ({p.size}) must have the same length")
    ok = np.isfinite(p) & np.isfinite(est)
    p_adj = np.asarray(adjust_pvalues(np.where(ok, p, np.nan), method=method), dtype=float)
    k = int(ok.sum())
    raw = ok & (p < alpha)
    adj = ok & (p_adj < alpha)
    n_raw = int(raw.sum())
    return SignificanceCounts(
        k=k,
        alpha=float(alpha),
        method=method,
        positive_raw=int((raw & (est > 0)).sum()),
        negative_raw=int((raw & (est < 0)).sum()),
        positive_adjusted=int((adj & (est > 0)).sum()),
        negative_adjusted=int((adj & (est < 0)).sum()),
        expected_by_chance=float(alpha * k),
        p_excess=float(stats.binom.sf(n_raw - 1, k, alpha)) if k else float("nan"),
        p_adjusted=p_adj,
    )


__all__ = ["significance_counts", "SignificanceCounts"]
