"""The meta layer of school-by-school inference, from the school estimates alone.

Everything :func:`pleval.estimate` reports about schools after the school estimates exist —
significance counts, the pooled effect with τ², Hartung–Knapp and the prediction interval,
empirical-Bayes shrinkage, and the placebo calibration (τ²_placebo, τ²_program with CIs,
calibrated intervals and adjusted p-values, the placebo-informed prediction interval and
shrinkage) — is a function of

* the PL schools' effect sizes ``y``, their joint covariance ``V`` (:attr:`SchoolEffects.vcov`),
  per-school df and p-values, and
* the placebo schools' effect sizes and joint covariance (:attr:`PlaceboResult.placebo_vcov`).

:func:`pool_schools` is the pooling and shrinkage step that
:func:`~.school_effects.school_effects` runs for every ``by`` group; :func:`school_inference`
runs that step, the counts (:func:`~.multiplicity.significance_counts`) and the calibration
(:func:`~.calibration.calibrate`, as :func:`~.placebo.placebo_schools` does) from stored
ingredients, so a simulation study can score a method on saved estimates without re-running
the matching (``benchmarks/sim_school_inference.py``). The formulas are those of the modules
named; nothing is computed here. With a single PL school there is nothing to pool or shrink
(``meta`` and ``shrinkage`` are None, ``note`` says why) and the calibration gives that school's
test and interval (:data:`~.calibration.ONE_SCHOOL`; ``benchmarks/sim_one_school.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import ResultMixin
from .calibration import ONE_SCHOOL, Calibration, calibrate
from .meta import MetaAnalysis, Method, meta_analysis
from .multiplicity import SignificanceCounts, significance_counts
from .shrinkage import Shrinkage, empirical_bayes


def pool_schools(y, se, V=None, *, method: Method = "REML", hartung_knapp: bool = True, level: float = 0.95,
                 prediction: str = "t", labels=None, V_raw=None, eigen: tuple | None = None) -> tuple[MetaAnalysis, Shrinkage]:
    """Random-effects pooling (GLS with ``V + τ²I``; independent schools when ``V`` is None)
    and empirical-Bayes shrinkage of one group of school effect sizes
    (:func:`~.meta.meta_analysis`, :func:`~.shrinkage.empirical_bayes` with the τ² uncertainty);
    ``V_raw``, ``V`` before its off-diagonal shrinkage, adds the covariance it removed to the
    pooled SE (``vcov_unshrunk``); ``eigen``: ``(λ, Q)``, :func:`numpy.linalg.eigh` of ``V``, when
    already computed."""
    eig = None if V is None else np.linalg.eigh(V) if eigen is None else eigen  # once, for the GLS and the BLUP
    m = meta_analysis(y, se, method=method, hartung_knapp=hartung_knapp, level=level, labels=labels, vcov=V,
                      prediction=prediction, vcov_unshrunk=V_raw, vcov_eigen=eig)
    return m, empirical_bayes(y, se, m, level=level, labels=labels, tau2_uncertainty=True, vcov_eigen=eig)


@dataclass(frozen=True, repr=False)
class SchoolInference(ResultMixin):
    """Result of :func:`school_inference`: ``counts`` (uncalibrated, student-level p-values),
    ``meta`` and ``shrinkage`` (:func:`pool_schools`; None for a single PL school, with ``note``
    saying why), ``calibration`` (None without placebo schools)."""

    counts: SignificanceCounts
    meta: MetaAnalysis | None
    shrinkage: Shrinkage | None
    calibration: Calibration | None = None
    note: str = ""

    def to_frame(self) -> pd.DataFrame:
        if self.calibration is not None:
            return self.calibration.schools.copy()
        return self.shrinkage.to_frame() if self.shrinkage is not None else pd.DataFrame()

    def summary(self) -> str:
        parts = [self.meta.summary() if self.meta is not None else f"Not estimable: {self.note}", self.counts.summary()]
        if self.calibration is not None:
            parts.append(self.calibration.summary())
        return "\n".join(parts)


def school_inference(labels, y, V, df, pvalue, placebo_y=None, placebo_V=None, *, method: Method = "REML",
                     hartung_knapp: bool = True, adjust: str = "bh", alpha: float = 0.05, level: float = 0.95,
                     prediction: str = "t", V_raw=None, comparison_schools=None,
                     placebo_comparison_schools=None) -> SchoolInference:
    """The meta layer of one group of PL schools from its ingredients (module docstring).

    ``labels, y, V, df, pvalue``: the PL schools with an estimate, their effect sizes, joint
    covariance (diagonal ``es_se²``), df and student-level p-values; ``V_raw``: the joint
    covariance before its off-diagonal shrinkage (:attr:`SchoolEffects.vcov_raw`; None: none
    was shrunk), which the pooled SEs use; ``placebo_y, placebo_V``:
    the placebo schools' effect sizes and joint covariance (no calibration when None). The
    options are :func:`pleval.estimate`'s (``meta_method``, ``hartung_knapp``, ``adjust``,
    ``alpha``, ``level``).
    """
    y = np.asarray(y, dtype=float)
    V = np.asarray(V, dtype=float)
    se = np.sqrt(np.diag(V))
    counts = significance_counts(y, np.asarray(pvalue, dtype=float), alpha=alpha, method=adjust)
    meta = shrink = None
    if y.size > 1:
        meta, shrink = pool_schools(y, se, V, method=method, hartung_knapp=hartung_knapp, level=level,
                                    prediction=prediction, labels=labels, V_raw=V_raw)
    cal = None
    if placebo_y is not None:
        cal = calibrate(labels, y, V, df, placebo_y, placebo_V, alpha=alpha, adjust=adjust, level=level,
                        hartung_knapp=hartung_knapp, V_raw=V_raw, comparison_schools=comparison_schools,
                        placebo_comparison_schools=placebo_comparison_schools)
    return SchoolInference(counts=counts, meta=meta, shrinkage=shrink, calibration=cal,
                           note=ONE_SCHOOL if y.size == 1 else "")


__all__ = ["school_inference", "pool_schools", "SchoolInference"]
