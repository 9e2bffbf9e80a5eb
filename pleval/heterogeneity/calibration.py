"""Program heterogeneity separated from ordinary school-to-school variation, with placebo schools.

Model for the effect-size estimate of PL school s (k schools) and placebo school j (m schools,
comparison schools analysed as if PL with the same matching):

    y_s = μ + v_s + u_s + e_s,      y_j = μ_0 + u_j + e_j,

with ``v_s ~ (0, τ²_program)`` the program's own variation, ``u ~ (0, τ²_placebo)`` a school's
deviation from its comparisons that arises without any program (the same in PL and placebo
schools when PL schools were selected on observables), and ``e ~ N(0, V)`` the sampling error
with the joint covariance of :attr:`SchoolEffects.vcov` (block-diagonal across placebo rounds).

* ``τ̂²_placebo``: REML on the placebo estimates with their V (:func:`.meta.meta_analysis`,
  ``vcov=``), its Q-profile CI and REML SE ``SE_pb``.
* ``τ̂²_PL``: REML on the PL estimates with their V, Q-profile CI.
* ``τ̂²_program = max(0, τ̂²_PL − τ̂²_placebo)``, CI by MOVER (Zou & Donner 2008) from the two
  Q-profile intervals ``(l₁, u₁)``, ``(l₂, u₂)``:
  ``d ∓ √((d₁ − l₁)² + (u₂ − d₂)²)`` / ``√((u₁ − d₁)² + (d₂ − l₂)²)``, ``d = d₁ − d₂``, both
  ends truncated at 0.
* Per-school calibrated test of "no program effect in school s" (``v_s + μ = 0``, with the
  school's deviation ``u_s`` counted as noise): ``t_s = y_s / √(V_ss + τ̂²_placebo)`` against
  t(ν_s) with the Satterthwaite df of the sum of the two estimated variances,
  ``ν_s = 2(V_ss + τ̂²_pb)² / (2V_ss²/d_s + SE_pb²)`` (``d_s`` the school's own df; the
  placebo term uses ``Var(τ̂²_pb) = SE_pb²``, which is positive even when ``τ̂²_pb = 0``, so
  the uncertainty of τ̂²_placebo widens the reference distribution). p-values are adjusted
  across the k schools (BH by default; with no program effect anywhere, BH's false-discovery
  rate is the chance that any school is flagged, so the default holds that family-wise rate).
* Program-effect shrinkage: the BLUP of ``μ + v_s`` with signal variance τ̂²_program and noise
  covariance ``V + τ̂²_placebo I`` (:func:`.shrinkage.blup`, with the Kackar–Harville term for
  ``Var(τ̂²_program) ≈ SE²(τ̂²_PL) + SE²(τ̂²_placebo)``), and the posterior probability that the
  program's effect in the school is negative, ``Φ(−θ̃_s / SD_s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from ..inference import adjust_pvalues
from .meta import MetaAnalysis, meta_analysis
from .shrinkage import blup


def mover_difference(d1: float, ci1: tuple[float, float], d2: float, ci2: tuple[float, float]) -> tuple[float, float]:
    """MOVER interval for ``d1 − d2`` from the two estimates' intervals (Zou & Donner 2008)."""
    d = d1 - d2
    low = d - math.sqrt((d1 - ci1[0]) ** 2 + (ci2[1] - d2) ** 2)
    high = d + math.sqrt((ci1[1] - d1) ** 2 + (d2 - ci2[0]) ** 2)
    return max(0.0, low), max(0.0, high)


@dataclass(frozen=True, repr=False)
class Calibration(ResultMixin):
    """Result of :func:`calibrate` for one group of PL schools (immutable)."""

    schools: pd.DataFrame
    pl: MetaAnalysis
    placebo: MetaAnalysis
    tau2_program: float
    tau2_program_ci: tuple[float, float]
    alpha: float
    adjust: str
    level: float

    @property
    def positive(self) -> int:
        t = self.schools
        return int(((t["p_calibrated_adjusted"] < self.alpha) & (t["effect_size"] > 0)).sum())

    @property
    def negative(self) -> int:
        t = self.schools
        return int(((t["p_calibrated_adjusted"] < self.alpha) & (t["effect_size"] < 0)).sum())

    def as_dict(self) -> dict:
        k = len(self.schools)
        return {
            "k_pl": k,
            "k_placebo": self.placebo.k,
            "tau2_pl": self.pl.tau2,
            "tau2_pl_ci_low": self.pl.tau2_ci[0],
            "tau2_pl_ci_high": self.pl.tau2_ci[1],
            "tau2_placebo": self.placebo.tau2,
            "tau2_placebo_se": self.placebo.tau2_se,
            "tau2_placebo_ci_low": self.placebo.tau2_ci[0],
            "tau2_placebo_ci_high": self.placebo.tau2_ci[1],
            "tau_placebo": self.placebo.tau,
            "tau2_program": self.tau2_program,
            "tau2_program_ci_low": self.tau2_program_ci[0],
            "tau2_program_ci_high": self.tau2_program_ci[1],
            "tau_program": math.sqrt(self.tau2_program),
            "calibrated_positive": self.positive,
            "calibrated_negative": self.negative,
            "calibrated_adjustment": self.adjust,
            "calibrated_expected_by_chance_raw": self.alpha * k,
        }

    def to_frame(self) -> pd.DataFrame:
        return self.schools.copy()

    def summary(self) -> str:
        d = self.as_dict()
        lv = f"{self.level:.0%}"
        return "\n".join([
            f"Placebo-calibrated school effects (k = {d['k_pl']} PL, {d['k_placebo']} placebo schools)",
            f"  tau² of PL schools {d['tau2_pl']:.4f} ({lv} CI {d['tau2_pl_ci_low']:.4f} to {d['tau2_pl_ci_high']:.4f}); "
            f"of placebo schools {d['tau2_placebo']:.4f} ({lv} CI {d['tau2_placebo_ci_low']:.4f} to "
            f"{d['tau2_placebo_ci_high']:.4f})",
            f"  program heterogeneity tau²_program = {d['tau2_program']:.4f} ({lv} MOVER CI "
            f"{d['tau2_program_ci_low']:.4f} to {d['tau2_program_ci_high']:.4f})",
            f"  schools whose result exceeds the placebo spread ({self.adjust}-adjusted, alpha = {self.alpha:g}): "
            f"{d['calibrated_positive']} positive, {d['calibrated_negative']} negative; with no program effect "
            f"about {d['calibrated_expected_by_chance_raw']:.1f} would pass unadjusted and, after adjustment, "
            f"any school at most {100 * self.alpha:.0f}% of the time",
        ])


def calibrate(
    labels,
    y,
    V,
    df,
    placebo_y,
    placebo_V,
    *,
    alpha: float = 0.05,
    adjust: str = "bh",
    level: float = 0.95,
) -> Calibration:
    """Placebo calibration of one group of PL school effect sizes (module docstring).

    ``y``, ``V``, ``df``: the PL schools' effect sizes, joint covariance and per-school df;
    ``placebo_y``, ``placebo_V``: the placebo schools' effect sizes and joint covariance.
    """
    y = np.asarray(y, dtype=float)
    V = np.asarray(V, dtype=float)
    yp = np.asarray(placebo_y, dtype=float)
    Vp = np.asarray(placebo_V, dtype=float)
    se = np.sqrt(np.diag(V))
    m_pl = meta_analysis(y, se, "REML", level=level, vcov=V, labels=labels)
    m_pb = meta_analysis(yp, np.sqrt(np.diag(Vp)), "REML", level=level, vcov=Vp)
    t2p = m_pb.tau2
    tau2_program = max(0.0, m_pl.tau2 - t2p)
    ci = mover_difference(m_pl.tau2, m_pl.tau2_ci, t2p, m_pb.tau2_ci)

    v = se**2
    d = np.asarray(df, dtype=float)
    own = np.where(np.isfinite(d) & (d > 0), 2 * v**2 / np.where(np.isfinite(d) & (d > 0), d, 1.0), 0.0)
    se_cal = np.sqrt(v + t2p)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = 2 * (v + t2p) ** 2 / (own + m_pb.tau2_se**2)
    nu = np.where(np.isfinite(nu) & (nu > 0), nu, np.inf)
    tstat = y / se_cal
    p_cal = 2 * stats.t.sf(np.abs(tstat), nu)
    crit = stats.t.ppf(0.5 + level / 2, nu)
    mu, _, shrunk, sd, _ = blup(y, V + t2p * np.eye(y.size), tau2_program,
                                m_pl.tau2_se**2 + m_pb.tau2_se**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_neg = stats.norm.cdf(-shrunk / sd)
    schools = pd.DataFrame({
        "school": list(labels),
        "effect_size": y,
        "es_se": se,
        "se_calibrated": se_cal,
        "df_calibrated": nu,
        "ci_low_calibrated": y - crit * se_cal,
        "ci_high_calibrated": y + crit * se_cal,
        "p_calibrated": p_cal,
        "p_calibrated_adjusted": np.asarray(adjust_pvalues(p_cal, adjust)),
        "program_shrunk": shrunk,
        "program_shrunk_sd": sd,
        "prob_negative_program": p_neg,
    })
    return Calibration(schools=schools, pl=m_pl, placebo=m_pb, tau2_program=tau2_program, tau2_program_ci=ci,
                       alpha=float(alpha), adjust=adjust, level=float(level))


__all__ = ["calibrate", "Calibration", "mover_difference"]
