"""Program heterogeneity separated from ordinary school-to-school variation, with placebo schools.

Model for the effect-size estimate of PL school s (k schools) and placebo school j (m schools,
comparison schools analysed as if PL with the same matching):

    y_s = μ + v_s + u_s + e_s,      y_j = μ_0 + u_j + e_j,

with ``v_s ~ (0, τ²_program)`` the program's own variation, ``u ~ (0, τ²_placebo)`` a school's
deviation from its comparisons that arises without any program (the same in PL and placebo
schools when PL schools were selected on observables), and ``e ~ N(0, V)`` the sampling error
with the joint covariance of :attr:`SchoolEffects.vcov` (block-diagonal across placebo rounds).
A school's deviation from the weighted mean of its comparison schools has variance
``σ²_b (1 + 1/n_eff)`` (``n_eff`` the effective number of comparison schools): where PL and
placebo schools are compared with different numbers of schools (a trial block's placebo school
with one, its PL school with two) the placebo estimates are first put on the PL schools' scale
(:func:`placebo_on_pl_scale`), so ``τ²_placebo`` below is the spread of an average PL school.

* ``τ̂²_placebo``: Hedges' (1983) unweighted moment estimate from ``Q₁ = Σ(y_j − ȳ)²``, its SE
  ``SE_pb`` and the interval that inverts the exact distribution of ``Q₁``
  (:mod:`._unweighted`; Jackson 2013): unlike REML and the Q-profile, whose weights ``1/V̂``
  turn the noise of an estimated placebo covariance into spurious spread (Kulinskaya,
  Dollinger & Bjørkestøl 2011), ``Q₁`` is linear in V̂. :func:`placebo_meta`.
* ``τ̂²_PL``: REML on the PL estimates with their V, Q-profile CI.
* ``τ̂²_program = max(0, τ̂²_PL − τ̂²_placebo)``, CI by the Q-profile (Viechtbauer 2007) with the
  placebo variance as an offset: the ``t ≥ 0`` at which ``Q*(t) = r_t'(V + (τ̂²_placebo + t)I)⁻¹r_t``
  (``r_t`` the GLS residuals) equals the upper and lower ``(1 − level)/2`` quantiles of
  χ²(k − 1). With τ²_placebo known, ``Q*(τ²_program) ~ χ²(k − 1)`` exactly (normal errors, V
  known), so the interval is exact in the interior and, like every equal-tailed interval for a
  variance, covers ``1 − α/2`` at ``τ²_program = 0``, where its upper end cannot miss; ``Q*(0)`` is
  the test that PL schools vary more than placebo schools. τ̂²_placebo is plugged in (its SE
  is small beside τ̂²_PL's when there are several times as many placebo as PL schools). It
  replaced a MOVER interval (Zou & Donner 2008) from the two separate Q-profile intervals, which
  covered 98.0% at τ²_program = 0 and 95.8% at 0.0225 (2,000 meta-level studies each with the
  study's covariances, ``benchmarks/sim_school_meta.py``; the Q*-profile 95.3% and 94.9%).
* Per-school calibrated test of "no program effect in school s" (``v_s + μ = 0``, with the
  school's deviation ``u_s`` counted as noise), with the uncertainty of τ²_placebo integrated
  out by its confidence distribution, as for the prediction interval and shrinkage below: at
  each of its quantiles ``τ²_j`` at the nodes of :func:`._predictive.placebo_nodes` ``y_s`` is referred to
  ``t(ν_j)`` scaled by ``√(V_ss + τ²_j)``, ``ν_j = d_s (V_ss + τ²_j)²/V_ss²`` (Satterthwaite
  with τ²_j known; ``d_s`` the school's own df), and the reference is the mixture with the
  nodes' weights ``w_j`` (a composite Simpson rule over H's probabilities, fine in its upper tail):
  ``p_s = Σ_j w_j 2F_{ν_j}(−|y_s|/√(V_ss + τ²_j))``, the interval ``y_s ± h_s`` with ``h_s`` the
  mixture's ``(1 + level)/2`` quantile (so it excludes 0 exactly when ``p_s < 1 − level``);
  ``SE_cal = √(V_ss + τ̂²_placebo)`` and the df that turn it into ``h_s`` are reported beside
  them (:func:`calibrated_tests`). It replaced one t with the Satterthwaite df of the sum of
  the two estimated variances, ``2(V_ss + τ̂²_pb)²/(2V_ss²/d_s + SE_pb²)``: where τ̂²_pb = 0 that
  is ``≈ 2V_ss²/SE_pb²``, below 1 for a precise school, and the interval was millions of SDs
  wide (the collapse the prediction interval had, below). p-values are adjusted
  across the k schools (BH by default; with no program effect anywhere, BH's false-discovery
  rate is the chance that any school is flagged, so the default holds that family-wise rate).
  The test needs only the school's own estimate and the placebo schools
  (:func:`calibrated_tests`), so it is given for a **single PL school** too (k = 1, a district
  asking whether the program worked in its one PL school, where the school's own deviation
  matters most): the same formula, with nothing to adjust for. What needs the spread of
  several PL schools — τ̂²_PL, τ̂²_program, the pooled mean, the prediction interval and both
  shrinkages — is then not estimable, reported as NaN with :data:`ONE_SCHOOL` as the reason
  (``note``). Fewer than 2 placebo estimates leave τ̂²_placebo, and so every calibrated figure,
  undefined: :func:`calibrate` raises a :class:`DesignError` saying so.
* Between-school variance of a school's total effect (program plus circumstances),
  ``σ² = τ²_program + τ²_placebo ≥ τ²_placebo``: a new PL school's effect is ``μ + v + u``. The
  placebo schools (usually four times as many as PL schools) pin down the second part, which
  REML on 15 PL schools often puts at 0. Point estimate ``τ̂²_total``: the order-restricted
  (precision-weighted isotonic) combination of τ̂²_PL and τ̂²_placebo, ``τ̂²_PL`` when
  ``τ̂²_PL ≥ τ̂²_placebo``, else ``(τ̂²_PL/SE²_PL + τ̂²_pb/SE²_pb)/(1/SE²_PL + 1/SE²_pb)``
  (Robertson, Wright & Dykstra 1988). Its uncertainty is integrated out through the
  confidence distributions of the two variances (the generalized Q of the PL schools, the
  unweighted Q of the placebo schools), projected onto the same order (:mod:`._predictive`,
  which states the formulas):

  - prediction interval: the quantiles of the predictive mixture over the confidence
    distribution, ``N(μ̂(σ²), σ² + Var μ̂(σ²))`` (Nagashima, Noma & Furukawa 2019), and
    ``prob_negative_new`` its CDF at 0;
  - shrunken school effects of ``μ + v_s + u_s``: the posterior is the mixture of the BLUP
    posteriors ``N(θ̃_s(σ²), PEV_s(σ²))`` over the same distribution (Morris 1983; Kass & Steffey
    1989); ``shrunk_total``/``shrunk_total_sd`` its mean and SD, ``shrunk_total_ci_low``/``_high``
    its ``(1 ∓ level)/2`` quantiles (the interval), ``P(effect < 0)`` its CDF at 0.

  It replaced ``max(τ̂²_PL, τ̂²_placebo)`` with a Satterthwaite t reference and the Prasad–Rao
  MSE, which covered 98% at ``τ²_program = 0`` and 92% (shrinkage) or 99.8% (prediction)
  at ``τ²_placebo = 0`` in the meta-level simulation (``benchmarks/sim_school_meta.py``).
  ``mu_total``/``se_total`` are the GLS mean with ``V + τ̂²_total I`` and its (Hartung–Knapp, when
  asked) SE; ``reliability_total`` is ``diag(τ̂²_total W)``.
* Program-effect shrinkage: the BLUP of ``μ + v_s`` with signal variance τ̂²_program and noise
  covariance ``V + τ̂²_placebo I`` (:func:`.shrinkage.blup`, with Prasad–Rao's 2g₃ for
  ``Var(τ̂²_program) ≈ SE²(τ̂²_PL) + SE²(τ̂²_placebo)``; before 2026-12-05 g₃ was the squared
  derivative at the data), and the posterior probability that the
  program's effect in the school is negative, ``Φ(−θ̃_s / SD_s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import special, stats

from .._results import Frame, ResultMixin
from .._text import percent
from ..errors import DesignError
from ..inference import adjust_pvalues
from ._tau2 import generalized_q, q_profile_ci
from .meta import MetaAnalysis, meta_analysis, offdiag_variance, rotate
from ._predictive import normalized, order_restricted, placebo_nodes, predictive, shrinkage, variance_nodes
from ._unweighted import unweighted_q
from .shrinkage import blup


def program_tau2_ci(y: np.ndarray, V: np.ndarray, tau2_placebo: float, level: float = 0.95,
                    eigen: tuple | None = None) -> tuple[float, float]:
    """Q-profile interval for τ²_program with τ²_placebo as an offset (module docstring);
    ``eigen``: ``(λ, Q)`` of ``V`` when already computed (``V + τ²_placebo I`` is ``(λ + τ²_placebo, Q)``)."""
    return _program_q(y, V, tau2_placebo, level, eigen)[:2]


def _program_q(y, V, tau2_placebo: float, level: float, eigen: tuple | None) -> tuple[float, float, float]:
    """:func:`program_tau2_ci`'s interval and ``Q*(0) = r'(V + τ̂²_placebo I)⁻¹r`` (``r`` the GLS
    residuals), from one rotation by V's eigenvectors."""
    lam, Q = np.linalg.eigh(V) if eigen is None else eigen
    yy, lam, XX, _ = rotate(y, None, np.ones((y.size, 1)), (lam + tau2_placebo, Q))
    low, high = q_profile_ci(yy, lam, XX, level)
    return float(low), float(high), generalized_q(yy, lam, XX, 0.0)


ONE_SCHOOL = ("one PL school: the pooled effect, τ² of PL schools, the program's own variation (τ²_program), the "
              "prediction interval for a new school and shrinkage need the spread of at least 2 PL schools' estimates "
              "and are not estimable; the school's own interval and its placebo-calibrated test need no other PL school")
"""Why a single PL school's calibration leaves the between-PL-school quantities NaN."""

ONE_SCHOOL_ESTIMATE = ("one school: the pooled effect, τ², the prediction interval for a new school and shrinkage need "
                       "the spread of at least 2 schools' estimates and are not estimable; the school's own estimate "
                       "and interval need no other school")
"""The same for :class:`~.school_effects.SchoolEffects`, which has no placebo schools (``pleval schools``,
a trial's sites, the uncalibrated school table of a matched design)."""

_GROUP_COLUMNS = ("program_shrunk", "program_shrunk_sd", "prob_negative_program", "shrunk_total", "shrunk_total_sd",
                  "shrunk_total_ci_low", "shrunk_total_ci_high", "reliability_total", "prob_negative_total")
"""Per-school columns of :func:`calibrate` that need at least 2 PL schools."""


def too_few_placebo(n: int) -> str:
    """Why there are no placebo-calibrated figures with ``n`` < 2 placebo estimates."""
    return (f"no placebo-calibrated figures: {n} placebo school(s) have an estimate, and the spread of school "
            "estimates without the program (τ²_placebo) needs at least 2")


def calibrated_tests(y, v, df, tau2_draws, tau2_placebo, level: float = 0.95, weights=None) -> dict:
    """Each school's test and interval against the placebo spread (module docstring), with the
    uncertainty of τ²_placebo integrated out by its confidence distribution: ``v`` the sampling
    variances ``V_ss``, ``df`` the schools' own df ``d`` (missing or infinite: a normal
    reference), ``tau2_draws`` the draws ``τ²_j`` of τ²_placebo (``n``, or ``k × n`` with each
    school's scale) with ``weights`` (default equal; :func:`._predictive.placebo_nodes` gives
    quadrature nodes and weights), ``tau2_placebo`` its estimate (each school's, or one for all). At draw ``j`` school s's
    estimate is ``t(ν_j)`` scaled by ``√(v + τ²_j)``, ``ν_j = d (v + τ²_j)²/v²`` (Satterthwaite
    with τ²_j known: only ``v`` is estimated); the reference is the weighted mixture over the draws:
    ``p = Σ_j w_j 2 F_{ν_j}(−|y|/√(v + τ²_j))`` and the interval ``y ± h``, ``h`` the mixture's
    ``(1 + level)/2`` quantile, so 0 lies outside it exactly when ``p < 1 − level``.
    ``se_calibrated`` is ``√(v + τ̂²_pb)`` and ``df_calibrated`` the df that gives the interval
    with it, ``h = t_{ν, (1+level)/2} se_calibrated`` (∞ where ``h`` is at most the normal
    quantile's). Uses nothing but the school itself and the placebo schools, so k = 1 and k ≥ 2
    get the same figures (tested)."""
    y, v, d = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (y, v, df))
    t2 = np.atleast_2d(np.asarray(tau2_draws, dtype=float))  # k × n (or 1 × n: one scale for every school)
    # a school's draws in one row, each row's weighted sum formed alike whatever k (k = 1 and k ≥ 2 agree to
    # the bit: an elementwise product summed by row, not a matrix product, whose blocking depends on k)
    own = np.where(np.isfinite(d) & (d > 0), d, np.inf)[:, None]
    scale = np.sqrt(v[:, None] + t2)  # k × n
    nu = own * (scale * scale / v[:, None]) ** 2  # (∞ where the own df is)
    q = 0.5 + level / 2
    w = normalized(weights, t2.shape[1])
    p = 2 * (special.stdtr(nu, -np.abs(y)[:, None] / scale) * w).sum(axis=1)
    half = _mixture_half_width(nu, scale, 1.0 - q, own[:, 0], w)
    se_cal = np.sqrt(v + np.asarray(tau2_placebo, dtype=float))
    ratio = half / se_cal
    with np.errstate(over="ignore"):
        df_cal = np.where(ratio > special.ndtri(q), special.stdtridf(q, np.maximum(ratio, special.ndtri(q))), np.inf)
    return {
        "se_calibrated": se_cal,
        "df_calibrated": df_cal,
        "ci_low_calibrated": y - half,
        "ci_high_calibrated": y + half,
        "p_calibrated": p,
    }


def _mixture_half_width(nu: np.ndarray, scale: np.ndarray, tail: float, own: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per row of ``nu``, ``scale`` (k × n), the ``h`` at which the mixture of ``t(ν_j)`` scaled by
    ``s_j`` with weights ``w`` has upper tail ``tail``: ``Σ_j w_j F_{ν_j}(−h/s_j) = tail``. Each
    component's quantile lies between ``z s_j`` and ``t_{d} s_j`` (``ν_j ≥ d``, the row's own
    df ``own``), so the root lies between ``z min s`` and ``t_{d} max s``; Newton's method
    safeguarded by bisection in that bracket (as :func:`._predictive._mixture_quantiles`), the
    tail summed as it is (its small terms keep their digits), until a step is within four units
    in the last place or the bracket closes; a row that has stopped is not moved again, so each
    school's root is the same whatever the other rows hold."""
    lo = special.ndtri(1.0 - tail) * scale.min(axis=1)
    hi = stats.t.isf(tail, own) * scale.max(axis=1)
    finite = np.isfinite(nu)
    nu_f = np.where(finite, nu, 1.0)
    log_c = np.where(finite, special.gammaln((nu_f + 1) / 2) - special.gammaln(nu_f / 2) - 0.5 * np.log(nu_f * np.pi),
                     -0.5 * np.log(2 * np.pi))  # each component's log density at 0
    h = np.clip(special.ndtri(1.0 - tail) * np.sqrt((scale * scale * w).sum(axis=1)), lo, hi)
    settled = np.zeros(h.shape, dtype=bool)
    for _ in range(200):
        x = h[:, None] / scale
        gap = tail - (special.stdtr(nu, -x) * w).sum(axis=1)  # F(h) − (1 − tail)
        with np.errstate(over="ignore"):
            log_pdf = log_c - np.where(finite, (nu_f + 1) / 2 * np.log1p(x * x / nu_f), x * x / 2)
        f = (np.exp(log_pdf) / scale * w).sum(axis=1)
        lo, hi = np.where(gap < 0, h, lo), np.where(gap > 0, h, hi)
        step = h - gap / f
        step = np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
        near = 4.0 * np.spacing(np.abs(step))
        # (a bracket of a few units in the last place is closed: the summed tail's rounding is not monotone there)
        done = (np.abs(step - h) <= near) | (hi - lo <= 4.0 * near) | (gap == 0)
        h = np.where(settled | (gap == 0), h, step)  # a settled row is not moved again: its root is its own
        settled |= done
        if settled.all():
            break
    return h


def placebo_on_pl_scale(yp, Vp, pl_schools, placebo_schools, k: int):
    """The placebo estimates with their deviations put on the PL schools' scale, and each PL
    school's share of that spread: ``(yp', Vp', rel, scale)``.

    A school's deviation from its comparisons, ``u = b_s − Σ_c w_c b_c`` with school effects
    ``b ~ (0, σ²_b)`` independent and comparison weights ``w_c`` summing to 1, has variance
    ``σ²_b (1 + Σ w_c²) = σ²_b a``, ``a = 1 + 1/n_eff`` (``n_eff`` Kish's effective number of
    comparison schools, the ``comparison_schools`` column of :func:`school_effects`). A placebo
    school of a trial with two control schools a block is compared with one school (``a = 2``),
    a PL school with two (``a = 1.5``): the raw placebo spread overstates the PL schools' by a
    third (calibrated tests at 2.4% instead of 5%, docs/validation.md). Each placebo estimate's
    deviation from the placebo mean ``ȳ`` is scaled by ``√(ā/a_j)`` (``ā`` the PL schools'
    mean ``a``), its sampling covariance by the same factors, so the placebo schools' τ̂² (and
    its interval and draws) estimates ``σ²_b ā``, the spread of an average PL school; school
    ``s``'s calibrated test uses ``τ̂²_placebo a_s/ā`` (``rel``). ``scale``: ``ā`` over the
    placebo schools' mean ``a``. With either count missing (None, or any NaN: a design without
    comparison schools) nothing is changed (``rel = 1``, ``scale = 1``)."""
    if pl_schools is None or placebo_schools is None:
        return yp, Vp, 1.0, 1.0
    n_pl = np.asarray(pl_schools, dtype=float).reshape(-1)
    n_pb = np.asarray(placebo_schools, dtype=float).reshape(-1)
    if n_pl.size != k or n_pb.size != yp.size or not ((n_pl >= 1).all() and (n_pb >= 1).all()):  # (NaN fails)
        return yp, Vp, 1.0, 1.0
    a_pl, a_pb = 1.0 + 1.0 / n_pl, 1.0 + 1.0 / n_pb
    a_bar = float(a_pl.mean())
    f = np.sqrt(a_bar / a_pb)
    centre = float(yp.mean())
    return centre + (yp - centre) * f, Vp * np.outer(f, f), a_pl / a_bar, a_bar / float(a_pb.mean())


def placebo_meta(yp: np.ndarray, Vp: np.ndarray, level: float = 0.95, uq=None) -> MetaAnalysis:
    """Meta-analysis of the placebo schools with Hedges' unweighted τ̂²_placebo, its SE and the
    interval from the exact distribution of the unweighted Q (:mod:`._unweighted`; module
    docstring); I² and H² intervals map that interval. ``uq``: :func:`.unweighted_q` of ``yp``,
    ``Vp`` when already computed."""
    m = meta_analysis(yp, np.sqrt(np.diag(Vp)), "HE", level=level, vcov=Vp)
    uq = unweighted_q(yp, Vp) if uq is None else uq
    se = uq.estimate()[1]
    ci = uq.ci(level)
    Vi = np.linalg.inv(Vp)  # typical within-school variance s² = (k − 1)/tr P₀, as meta_analysis
    one = Vi.sum(axis=1)
    s2 = (yp.size - 1) / (np.trace(Vi) - float(one @ one) / float(one.sum()))
    return replace(m, tau2_se=se, tau2_ci=ci, i2_ci=tuple(100.0 * t / (t + s2) for t in ci),
                   h2_ci=tuple((t + s2) / s2 for t in ci))


@dataclass(frozen=True, repr=False)
class Calibration(ResultMixin):
    """Result of :func:`calibrate` for one group of PL schools (immutable). With a single PL
    school ``pl`` is None, the between-PL-school figures are NaN and ``note`` says why
    (:data:`ONE_SCHOOL`). ``q_star``: ``Q*(0) = r'(V + τ̂²_placebo I)⁻¹r`` (``r`` the GLS residuals),
    the statistic of the test that PL schools vary more than placebo schools, χ²(k − 1) when they
    do not (module docstring)."""

    schools: pd.DataFrame = Frame()
    pl: MetaAnalysis | None
    placebo: MetaAnalysis
    tau2_program: float
    tau2_program_ci: tuple[float, float]
    alpha: float
    adjust: str
    level: float
    tau2_total: float = math.nan
    mu_total: float = math.nan
    se_total: float = math.nan
    pi: tuple[float, float] = (math.nan, math.nan)
    prob_negative_new: float = math.nan
    note: str = ""
    q_star: float = math.nan
    placebo_scale: float = 1.0

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
        pl_ci = self.pl.tau2_ci if self.pl is not None else (math.nan, math.nan)
        return {
            "k_pl": k,
            "k_placebo": self.placebo.k,
            "tau2_pl": self.pl.tau2 if self.pl is not None else math.nan,
            "tau2_pl_ci_low": pl_ci[0],
            "tau2_pl_ci_high": pl_ci[1],
            "tau2_placebo": self.placebo.tau2,
            "tau2_placebo_se": self.placebo.tau2_se,
            "tau2_placebo_ci_low": self.placebo.tau2_ci[0],
            "tau2_placebo_ci_high": self.placebo.tau2_ci[1],
            "tau_placebo": self.placebo.tau,
            "placebo_scale": self.placebo_scale,
            "tau2_program": self.tau2_program,
            "tau2_program_ci_low": self.tau2_program_ci[0],
            "tau2_program_ci_high": self.tau2_program_ci[1],
            "tau_program": math.sqrt(self.tau2_program),
            "calibrated_positive": self.positive,
            "calibrated_negative": self.negative,
            "calibrated_adjustment": self.adjust,
            "calibrated_expected_by_chance_raw": self.alpha * k,
            "tau2_total": self.tau2_total,
            "pi_low": self.pi[0],
            "pi_high": self.pi[1],
            "prob_negative_new": self.prob_negative_new,
            "calibration_note": self.note,
        }

    def to_frame(self) -> pd.DataFrame:
        return self.schools.copy()

    def summary(self) -> str:
        d = self.as_dict()
        lv = f"{self.level:.0%}"
        if self.pl is None:
            r = self.schools.iloc[0]
            verdict = ("beyond the placebo spread, " + ("positive" if r["effect_size"] > 0 else "negative")
                       if r["p_calibrated_adjusted"] < self.alpha else "not beyond the placebo spread")
            return "\n".join([
                f"Placebo-calibrated school effect (1 PL school, {d['k_placebo']} placebo schools)",
                f"  tau² of placebo schools {d['tau2_placebo']:.4f} ({lv} CI {d['tau2_placebo_ci_low']:.4f} to "
                f"{d['tau2_placebo_ci_high']:.4f}; SE {d['tau2_placebo_se']:.4f})",
                f"  school {r['school']}: effect size {r['effect_size']:.3f}, SE {r['es_se']:.3f}; with the placebo spread "
                f"SE {r['se_calibrated']:.3f}, {lv} CI {r['ci_low_calibrated']:.3f} to {r['ci_high_calibrated']:.3f} "
                f"(t, {r['df_calibrated']:.1f} df), p = {r['p_calibrated']:.3g}: {verdict} at alpha = {self.alpha:g}",
                f"  {self.note}",
            ])
        return "\n".join([
            f"Placebo-calibrated school effects (k = {d['k_pl']} PL, {d['k_placebo']} placebo schools)",
            f"  tau² of PL schools {d['tau2_pl']:.4f} ({lv} CI {d['tau2_pl_ci_low']:.4f} to {d['tau2_pl_ci_high']:.4f}); "
            f"of placebo schools {d['tau2_placebo']:.4f} ({lv} CI {d['tau2_placebo_ci_low']:.4f} to "
            f"{d['tau2_placebo_ci_high']:.4f})",
            f"  program heterogeneity tau²_program = {d['tau2_program']:.4f} ({lv} Q-profile CI "
            f"{d['tau2_program_ci_low']:.4f} to {d['tau2_program_ci_high']:.4f})",
            f"  a new school's effect (program + circumstances): between-school variance {d['tau2_total']:.4f} "
            f"(PL and placebo spreads, PL at least placebo); {lv} prediction interval {d['pi_low']:.3f} to "
            f"{d['pi_high']:.3f} (variance uncertainty integrated out); P(effect < 0) {d['prob_negative_new']:.2f}",
            f"  schools whose result exceeds the placebo spread ({self.adjust}-adjusted, alpha = {self.alpha:g}): "
            f"{d['calibrated_positive']} positive, {d['calibrated_negative']} negative; with no program effect "
            f"about {d['calibrated_expected_by_chance_raw']:.1f} would pass unadjusted and, after adjustment, "
            f"any school at most {percent(self.alpha)} of the time",
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
    hartung_knapp: bool = True,
    V_raw=None,
    eigen: tuple | None = None,
    comparison_schools=None,
    placebo_comparison_schools=None,
) -> Calibration:
    """Placebo calibration of one group of PL school effect sizes (module docstring).

    ``y``, ``V``, ``df``: the PL schools' effect sizes, joint covariance and per-school df;
    ``placebo_y``, ``placebo_V``: the placebo schools' effect sizes and joint covariance;
    ``hartung_knapp``: the SE of μ̂ reported as ``se_total`` (the prediction interval integrates the
    variance uncertainty instead); ``V_raw``: ``V`` before its off-diagonal shrinkage, whose removed
    covariance ``se_total`` adds back (:func:`~.meta.offdiag_variance`; None: nothing removed); ``eigen``:
    ``(λ, Q)``, :func:`numpy.linalg.eigh` of ``V``, when already computed (e.g.
    :attr:`SchoolEffects.vcov_eigen`, from the pooling of the same matrix);
    ``comparison_schools``, ``placebo_comparison_schools``: the effective number of schools each
    PL and each placebo school is compared with (the ``comparison_schools`` column of
    :func:`school_effects`), which put the placebo spread on the PL schools' scale
    (:func:`placebo_on_pl_scale`; None, or any missing: the spreads are taken as equal).
    """
    y = np.atleast_1d(np.asarray(y, dtype=float))
    V = np.atleast_2d(np.asarray(V, dtype=float))
    yp = np.asarray(placebo_y, dtype=float)
    Vp = np.asarray(placebo_V, dtype=float)
    if yp.size < 2:
        raise DesignError(too_few_placebo(yp.size))
    if y.size < 1:
        raise DesignError("no placebo-calibrated figures: no PL school has an estimate")
    se = np.sqrt(np.diag(V))
    yp, Vp, rel, scale = placebo_on_pl_scale(yp, Vp, comparison_schools, placebo_comparison_schools, y.size)
    uq = unweighted_q(yp, Vp)  # the placebo schools' Q, once for their meta-analysis, nodes and draws
    m_pb = placebo_meta(yp, Vp, level, uq)
    t2p = m_pb.tau2
    nodes, weights = placebo_nodes(yp, Vp, uq)
    tests = calibrated_tests(y, se**2, df, np.atleast_1d(rel)[:, None] * nodes, t2p * rel, level, weights)
    first = {"school": list(labels), "effect_size": y, "es_se": se, **tests,
             "p_calibrated_adjusted": np.asarray(adjust_pvalues(tests["p_calibrated"], adjust))}
    if y.size < 2:
        schools = pd.DataFrame({**first, **{c: np.nan for c in _GROUP_COLUMNS}})
        return Calibration(schools=schools, pl=None, placebo=m_pb, tau2_program=math.nan,
                           tau2_program_ci=(math.nan, math.nan), alpha=float(alpha), adjust=adjust, level=float(level),
                           note=ONE_SCHOOL, placebo_scale=scale)
    eig = lam, Q = np.linalg.eigh(V) if eigen is None else eigen  # once: V + cI below is (λ + c, Q)
    m_pl = meta_analysis(y, se, "REML", level=level, vcov=V, labels=labels, vcov_eigen=eig)
    tau2_program = max(0.0, m_pl.tau2 - t2p)
    *ci, q_star = _program_q(y, V, t2p, level, eig)
    mu, _, shrunk, sd, _ = blup(y, None, tau2_program, m_pl.tau2_se**2 + m_pb.tau2_se**2, eigen=(lam + t2p, Q))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_neg = stats.norm.cdf(-shrunk / sd)

    w_pl, w_pb = 1.0 / m_pl.tau2_se**2, 1.0 / m_pb.tau2_se**2
    t2_tot = float(order_restricted(m_pl.tau2, t2p, w_pl, w_pb))
    sigma2, weights = variance_nodes(y, V, yp, Vp, eigen=eig, uq=uq)
    pi, p_neg_new = predictive(y, V, sigma2, weights, level, eigen=eig)
    mix = shrinkage(y, V, sigma2, weights, level, eigen=eig)
    mu_t, _, _, _, rel_t = blup(y, V, t2_tot, eigen=eig)
    k = y.size
    # W = (V + τ²_total I)⁻¹ = Q(Λ + τ²_total I)⁻¹Q': its sums and quadratic forms from Q'1 and Q'r
    d = 1.0 / (lam + t2_tot)
    q1 = Q.sum(axis=0)
    w_sum = float(q1 @ (d * q1))
    se2 = 1.0 / w_sum
    if hartung_knapp:
        qr = Q.T @ (y - mu_t)
        se2 *= float(qr @ (d * qr)) / (k - 1)
    if V_raw is not None:
        se2 += offdiag_variance(Q @ (d * q1) / w_sum, np.asarray(V_raw, dtype=float), V)
    schools = pd.DataFrame({
        **first,
        "program_shrunk": shrunk,
        "program_shrunk_sd": sd,
        "prob_negative_program": p_neg,
        "shrunk_total": mix.mean,
        "shrunk_total_sd": mix.sd,
        "shrunk_total_ci_low": mix.low,
        "shrunk_total_ci_high": mix.high,
        "reliability_total": rel_t,
        "prob_negative_total": mix.prob_negative,
    })
    return Calibration(schools=schools, pl=m_pl, placebo=m_pb, tau2_program=tau2_program, tau2_program_ci=tuple(ci),
                       alpha=float(alpha), adjust=adjust, level=float(level), tau2_total=float(t2_tot),
                       mu_total=float(mu_t), se_total=math.sqrt(se2), pi=pi, prob_negative_new=p_neg_new,
                       q_star=q_star, placebo_scale=scale)


__all__ = ["calibrate", "calibrated_tests", "Calibration", "program_tau2_ci", "placebo_meta", "placebo_on_pl_scale",
           "ONE_SCHOOL", "ONE_SCHOOL_ESTIMATE", "too_few_placebo"]
