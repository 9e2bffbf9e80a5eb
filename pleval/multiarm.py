"""Multi-arm trials: several treatment arms against one control, with multiplicity control.

One model for all arms (students or schools randomized to arm a = 1..A or to control)::

    y_i = α + Σ_a τ_a 1[arm_i = a] + Σ_b γ_b 1[block_i = b] + x_i'β + ε_i

τ̂_a is arm a's ITT against control, with the design's covariance (CR2 + Satterthwaite df by
school for cluster designs, HC2 otherwise; :func:`pleval.inference.ols`). Samples, attrition
rules, block effects and covariates are those of :func:`pleval.rct.analyze_rct`. Each arm's
effect size uses the pooled within-group SD of that arm and the control group (WWC), with
ω = 1 − 3/(4N − 9) for the arm's and control's N students.

Multiplicity across the A comparisons (``adjust``):

* ``"holm"`` (default): Holm's (1979) step-down on the arms' own p-values. It controls the
  family-wise error rate under any dependence between the comparisons and needs no common
  reference distribution, which the arms do not have here: each contrast has its own
  Satterthwaite df and the robust covariance makes the contrasts' correlation data-dependent.
* ``"dunnett"``: single-step max-|t| (Dunnett 1955; Hothorn, Bretz & Westfall 2008, multcomp's
  ``glht(..., mcp(arm = "Dunnett"))``, which uses the same statistic with any covariance):
  ``p_a = P(max_b |T_b| ≥ |t_a|)``, T multivariate t with the correlation of the τ̂_a from the
  fitted covariance and ν = the smallest of the arms' df (conservative when they differ; with
  ``vcov="classical"`` it is exactly multcomp's ``glht`` on ``lm``/``aov``, covariates
  included, and with no covariates Dunnett's test). The probability is integrated by the
  randomized lattice quasi-Monte Carlo rule of Genz & Bretz (2009) that multcomp calls through
  mvtnorm (:class:`scipy.stats.multivariate_t`, 25,000 points per arm, seeded by ``seed``):
  error about 1e−5 in p and in the simultaneous critical value, against 1e−3 for mvtnorm's
  default ``abseps``. With two arms there is no Monte Carlo and no seed: the bivariate normal
  probability is Owen's (1956) T function and the t's is one integral over the χ² of its
  denominator, within 1e−10 (:func:`_bivariate_inside`). Simultaneous CIs use the critical
  value c with ``P(max_b |T_b| < c) = level``. It uses the correlation that the shared control
  group induces (≈ 0.5 with equal arms), so it is less conservative than Holm's first step;
  Holm's later steps can still reject more.
* ``"bonferroni"``, ``"none"``.

Simultaneous intervals (``simultaneous_ci_low``/``_high``) are Dunnett's with ``"dunnett"`` and
Bonferroni's (level ``1 − α/A`` per arm) with ``"holm"`` and ``"bonferroni"``: Holm's step-down
has no compatible interval that is informative (Strassburger & Bretz 2008), so with ``"holm"``
an arm rejected at a later step can keep an interval that covers 0 — a note says so.

``alternative`` (multcomp's ``alternative``): ``"two-sided"`` (default), ``"greater"`` (H1: τ_a > 0;
``p_a = P(max_b T_b ≥ t_a)`` for Dunnett, t(df_a) upper tail for the others; simultaneous lower
bounds) or ``"less"`` (H1: τ_a < 0; upper bounds). The raw ``pvalue`` column follows it; each
arm's own CI and effect-size CI stay two-sided.

Both Holm and Dunnett are offered because neither dominates; Holm is the default because it
makes no distributional assumption about the dependence of the comparisons.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from . import effect_sizes
from ._results import Effect, Estimate, ResultMixin
from .data import Columns, match_label, school_arms
from .errors import DataError, DesignError, PlevalWarning
from .inference import adjust_pvalues, ols

ADJUST = ("holm", "dunnett", "bonferroni", "none")
ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True, repr=False)
class MultiArmResult(ResultMixin):
    """Each arm against control (``effects``), the adjusted p-values and the joint fit."""

    control: object
    arms: tuple
    effects: Mapping[object, Effect]
    pvalue_adjusted: Mapping[object, float]
    adjust: str
    simultaneous_ci: Mapping[object, tuple[float, float]]
    fit: object = field(repr=False)
    options: Mapping[str, object] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    alternative: str = "two-sided"
    pvalue: Mapping[object, float] = field(default_factory=dict)  # raw p under ``alternative``

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for arm, eff in self.effects.items():
            r, es, pp = eff.raw, eff.effect_size, eff.percentile_points
            lo, hi = self.simultaneous_ci[arm]
            rows.append({
                "arm": arm, "control": self.control, "n_arm": r.n_treated, "n_control": r.n_control,
                "estimate": r.estimate, "se": r.se, "df": r.df, "ci_low": r.ci_low, "ci_high": r.ci_high,
                "pvalue": self.pvalue.get(arm, r.pvalue), "alternative": self.alternative,
                "pvalue_adjusted": self.pvalue_adjusted[arm], "adjust": self.adjust,
                "simultaneous_ci_low": lo, "simultaneous_ci_high": hi, "effect_size": es.estimate,
                "es_ci_low": es.ci_low, "es_ci_high": es.ci_high, "sd": eff.sd, "percentile_points": pp.estimate,
            })
        return pd.DataFrame(rows)

    def summary(self) -> str:
        o = self.options
        lines = [f"Multi-arm trial ({o['design']} design), outcome {o['outcome']!r}: {len(self.arms)} arms against "
                 f"control {self.control!r}; {o['vcov']}; p adjusted: {self.adjust}"]
        for r in self.to_frame().itertuples():
            lines.append(f"  {str(r.arm):<16}{r.estimate:>9.4g} (SE {r.se:.3g}, df {r.df:.1f})  p = {r.pvalue:.3g}, "
                         f"adjusted {r.pvalue_adjusted:.3g}; ES {r.effect_size:.3f}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _bivariate_normal_inside(x, rho: float, two_sided: bool):
    """P(|Z₁| < x, |Z₂| < x) (``two_sided``) or P(Z₁ < x, Z₂ < x) for standard bivariate normal Z
    with correlation ρ, elementwise in ``x``, by Owen's (1956) T function: with
    ``a = √((1 − ρ)/(1 + ρ))``, ``Φ₂(x, x; ρ) = Φ(x) − 2T(x, a)`` and, from Owen's formula for
    ``Φ₂(−x, x; ρ) = 2T(x, 1/a)``, the square ``P(|Z₁| < x, |Z₂| < x) = 1 − 4[T(x, a) + T(x, 1/a)]``
    (x > 0). Exact to the rounding of ``scipy.special.owens_t``; |ρ| is kept below 1 − 1e−15."""
    rho = min(max(rho, -1.0 + 1e-15), 1.0 - 1e-15)
    a = math.sqrt((1.0 - rho) / (1.0 + rho))
    if two_sided:
        return np.where(x > 0, 1.0 - 4.0 * (special.owens_t(x, a) + special.owens_t(x, 1.0 / a)), 0.0)
    return special.ndtr(x) - 2.0 * special.owens_t(x, a)


@lru_cache(maxsize=8)
def _chi_rule(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E g(S)``, ``S = √(χ²_df/df)``: composite Gauss–Legendre (16 nodes
    a panel) on panels between quantiles of S from 1e−17 to 1 − 1e−17, the weights times S's
    density."""
    tails = np.array([1e-17, 1e-12, 1e-8, 1e-5, 1e-3, 0.02, 0.1, 0.3, 0.5])
    edges = np.sqrt(np.concatenate([stats.chi2.ppf(tails, df), stats.chi2.isf(tails[-2::-1], df)]) / df)
    x, w = np.polynomial.legendre.leggauss(16)
    half, mid = np.diff(edges)[:, None] / 2, (edges[:-1] + edges[1:])[:, None] / 2
    s = (mid + half * x).ravel()
    root = math.sqrt(df)
    return s, (half * w).ravel() * stats.chi.pdf(s * root, df) * root


def _bivariate_inside(q: float, rho: float, df: float, two_sided: bool) -> float:
    """P(max_b |T_b| < q) or P(max_b T_b < q) for a bivariate t (correlation ρ, ``df``; normal when
    infinite) without Monte Carlo: T = Z/S with S = √(χ²_df/df) independent of Z, so the
    probability is ``E P_Z(qS)`` (Dunnett & Sobel 1954), the normal probability of
    :func:`_bivariate_normal_inside` integrated over S's distribution (:func:`_chi_rule`;
    within 1e−11 of adaptive quadrature and of the conditional-on-the-control integral of
    Dunnett (1955), tested)."""
    if not np.isfinite(df):
        return float(_bivariate_normal_inside(q, rho, two_sided))
    s, w = _chi_rule(float(df))
    return min(1.0, max(0.0, float(w @ _bivariate_normal_inside(q * s, rho, two_sided))))


def _inside(q: float, corr: np.ndarray, df: float, seed: int, points: int, two_sided: bool = True) -> float:
    """P(max_b |T_b| < q) (``two_sided``) or P(max_b T_b < q) for T multivariate t(corr, df)
    (normal when df is infinite). Two arms: the exact one-dimensional integral
    (:func:`_bivariate_inside`). More: the seeded randomized-lattice rule (the same lattice at
    every q: a smooth function of q)."""
    k = corr.shape[0]
    if k == 2:
        return _bivariate_inside(q, float(corr[0, 1]), df, two_sided)
    lo, hi = np.full(k, -q if two_sided else -np.inf), np.full(k, q)
    if not np.isfinite(df):
        return float(stats.multivariate_normal.cdf(hi, cov=corr, lower_limit=lo, maxpts=points, abseps=1e-7,
                                                   releps=0, rng=np.random.default_rng(seed)))
    return float(stats.multivariate_t(shape=corr, df=df).cdf(hi, lower_limit=lo, maxpts=points,
                                                             random_state=np.random.default_rng(seed)))


def _dunnett(t: np.ndarray, corr: np.ndarray, df: float, level: float, seed: int, alternative: str = "two-sided",
             points_per_arm: int = 25_000) -> tuple[np.ndarray, float]:
    """Single-step adjusted p-values ``1 − P(max_b |T_b| < |t_a|)`` and the simultaneous critical
    value c with ``P(max_b |T_b| < c) = level``; one-sided, max_b T_b and t_a ("greater") or
    −t_a ("less": T is symmetric) in place of the absolute values (module docstring)."""
    k, points, two = t.size, points_per_arm * t.size, alternative == "two-sided"
    q_obs = np.abs(t) if two else (t if alternative == "greater" else -t)
    p = np.array([1.0 - _inside(v, corr, df, seed, points, two) for v in q_obs])
    tq = stats.t(df) if np.isfinite(df) else stats.norm()
    a = (1.0 - level) / (2.0 if two else 1.0)
    # c lies between the unadjusted and the Bonferroni critical values
    lo, hi = tq.ppf(1.0 - a), tq.ppf(1.0 - a / k) + 0.01
    crit = optimize.brentq(lambda q: _inside(q, corr, df, seed, points, two) - level, lo, hi,
                           xtol=1e-10 if k == 2 else 1e-6)  # (two arms: no integration error to stop at)
    return np.clip(p, 0.0, 1.0), float(crit)


def _bounds(est: np.ndarray, se: np.ndarray, crit, alternative: str) -> list[tuple[float, float]]:
    lo = np.where(alternative == "less", -np.inf, est - crit * se)
    hi = np.where(alternative == "greater", np.inf, est + crit * se)
    return list(zip(lo.tolist(), hi.tolist()))


def analyze_multiarm(
    df: pd.DataFrame,
    columns: Columns,
    control,
    design: Literal["individual", "blocked", "cluster"] = "cluster",
    *,
    covariates: Sequence[str] | None = None,
    vcov: str | None = None,
    cluster_df: Literal["G-1", "G-p"] = "G-1",
    adjust: Literal["holm", "dunnett", "bonferroni", "none"] = "holm",
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    subject: object = None,
    sd: str | float = "pooled",
    level: float = 0.95,
    baseline_percentile: float = 50.0,
    seed: int = 0,
) -> MultiArmResult:
    """Each arm of ``columns.treatment`` against the ``control`` label (module docstring).

    The treatment column holds arm labels (any values); ``control`` names the control arm.
    ``seed`` fixes the quasi-Monte Carlo integration of the Dunnett adjustment with three or more arms
    (reproducible p-values; two arms are integrated exactly and do not use it).
    ``vcov`` and ``cluster_df`` as in :func:`pleval.rct.analyze_rct`.
    """
    from .inference.robust import check_conventions, convention_label, default_vcov
    from .rct import VCOVS, _model, _unclustered_schools, _validate

    check_conventions(cluster_df, "transformed")
    if adjust not in ADJUST:
        raise DataError(f"adjust must be one of {ADJUST}; got {adjust!r}")
    if alternative not in ALTERNATIVES:
        raise DataError(f"alternative must be one of {ALTERNATIVES}; got {alternative!r}")
    t = columns.treatment
    if t is None or t not in df.columns:
        raise DataError(f"the treatment column {t!r} (arm labels) is not in the data")
    labels = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(df[t]) if pd.notna(v)]  # (0, not np.int64(0))
    spelled = pd.Series([str(v).strip().casefold() for v in labels])
    twice = sorted({repr(v) for v, d in zip(labels, spelled.duplicated(keep=False)) if d})
    if twice:  # (one label spelled two ways became an arm of its own, tested against control, before 2026-12-04)
        raise DataError(f"column {t!r} (treatment): labels {', '.join(twice)} are one label written two ways (case, "
                        "spaces or type); write each arm one way (they would be analysed as different arms)")
    hit = match_label(labels, control)
    if hit is None:
        raise DataError(f"column {t!r} (treatment): control label {control!r} does not occur; arms are "
                        f"{sorted(map(str, labels))[:8]}")
    control = hit
    arms = tuple(sorted((v for v in labels if v != control), key=str))
    if len(arms) < 2:
        raise DataError(f"column {t!r} (treatment) has {len(arms)} arm(s) besides control {control!r}; a multi-arm "
                        "trial needs at least 2 (use analyze_rct for one)")
    work = df.assign(_arm=df[t], _any=(df[t] != control).astype(float).where(df[t].notna()))
    cols = columns.replace(treatment="_any", treated_label=None)
    cols, rand, ana, cov_names, dropped, notes = _validate(work, cols, design, covariates, subject, arms=("_arm", t))
    arm_of = ana["_arm"].to_numpy()
    counts = {a: int((arm_of == a).sum()) for a in (control, *arms)}
    if design == "cluster":
        schools = ana.groupby("_arm", observed=True)[cols.school].nunique()
        few = [a for a in (control, *arms) if schools.get(a, 0) < 2]
        if few:
            raise DesignError(f"arm(s) {few} have fewer than 2 schools in the analytic sample"
                              + ("" if subject is None else f" of subject {subject!r}"))
    elif min(counts.values()) < 2:
        raise DesignError(f"every arm needs at least 2 analysed rows; have {counts}")

    vcov = vcov or default_vcov(design, cols.school)
    if vcov not in VCOVS:
        raise DataError(f"vcov must be one of {VCOVS}; got {vcov!r}")
    if vcov.startswith("CR") and not cols.school:
        raise DataError(f"vcov={vcov!r} clusters by school: name the school column (columns.school)")
    if not vcov.startswith("CR") and cols.school and not len(school_arms(rand[cols.school], rand["_arm"])[1]):
        # (each school one arm; a cluster design's schools: checked above)
        # as analyze_rct warns (before 2026-12-04 the multi-arm model did not)
        why = _unclustered_schools(rand, cols, design, vcov, label=t)  # (the arm column, not '_any')
        if why:
            warnings.warn(why, PlevalWarning, stacklevel=2)
            notes.append(why)
    mod = _model(ana, cols, cov_names, notes)
    D = np.column_stack([(arm_of == a).astype(float) for a in arms])
    arm_names = [f"arm[{a}]" for a in arms]
    if mod.absorbs(vcov):  # blocks absorbed, as in analyze_rct
        X, names = np.column_stack([D, mod.Xa[:, 1:]]), arm_names + mod.names_a[1:]
        fit = ols(mod.y, X, names=names, vcov=vcov, clusters=mod.school if vcov.startswith("CR") else None,
                  cluster_df=cluster_df, absorb=mod.block_codes)
    else:
        keep = [j for j, nm in enumerate(mod.names) if nm != "treatment"]
        X = np.column_stack([mod.X[:, [0]], D, mod.X[:, keep[1:]]])
        names = ["const"] + arm_names + [mod.names[j] for j in keep[1:]]
        fit = ols(mod.y, X, names=names, vcov=vcov, clusters=mod.school if vcov.startswith("CR") else None,
                  cluster_df=cluster_df)
    vc_desc = vcov + (" (Satterthwaite df)" if vcov == "CR2" else " (Bell–McCaffrey df)" if vcov == "HC2"
                      else convention_label(vcov, cluster_df, "", False))

    grades = ana[cols.grade].to_numpy() if cols.grade and ana[cols.grade].nunique() > 1 else None
    effects, est, se, dfs = {}, [], [], []
    for i, a in enumerate(arms):
        b, s_, d_, _ = fit.coef(f"arm[{a}]")
        pair = (arm_of == a) | (arm_of == control)
        sd_value, sd_kind = effect_sizes.outcome_sd(mod.y[pair], arm_of[pair] == a, kind=sd,
                                                    strata=None if grades is None else grades[pair])
        n_a, n_c = counts[a], counts[control]
        omega = float(effect_sizes.hedges_omega(n_a + n_c)) if sd == "pooled" else 1.0
        e = Estimate.from_t(b, s_, d_, level=level, n_treated=n_a, n_control=n_c,
                            n_clusters=mod.n_schools if vcov.startswith("CR") else None,
                            method=f"arm {a} vs {control}: OLS, {vc_desc}", label=f"{a} vs {control}")
        effects[a] = Effect.from_raw(e, sd_value, sd_kind, omega=omega, baseline_percentile=baseline_percentile)
        est.append(b)
        se.append(s_)
        dfs.append(d_)
    est, se, dfs = np.array(est), np.array(se), np.array(dfs)
    tstat = est / se
    p = {"two-sided": np.array([effects[a].raw.pvalue for a in arms]), "greater": stats.t.sf(tstat, dfs),
         "less": stats.t.cdf(tstat, dfs)}[alternative]
    if adjust == "dunnett":
        idx = [names.index(f"arm[{a}]") for a in arms]
        V = fit.vcov[np.ix_(idx, idx)]
        corr = V / np.sqrt(np.outer(np.diag(V), np.diag(V)))
        nu = float(dfs.min())
        p_adj, crit = _dunnett(tstat, corr, nu, level, seed, alternative)
        notes.append(f"Dunnett single-step max-{'|t|' if alternative == 'two-sided' else 't'} ({alternative}): "
                     f"multivariate t with the fitted correlation of the arm effects, {nu:.1f} df (the smallest arm "
                     f"df); simultaneous critical value {crit:.3f}")
    else:
        p_adj = p if adjust == "none" else adjust_pvalues(p, adjust)
        m = 1 if adjust == "none" else len(arms)  # Bonferroni-type simultaneous intervals
        crit = stats.t.ppf(1.0 - (1.0 - level) / ((2.0 if alternative == "two-sided" else 1.0) * m), dfs)
        if adjust == "holm" and len(arms) > 1:
            notes.append("simultaneous intervals are Bonferroni's (Holm's step-down has no informative interval of "
                         "its own), so an arm significant by its Holm-adjusted p-value can have an interval that "
                         "covers 0")
    sim = dict(zip(arms, _bounds(est, se, crit, alternative)))
    options = {
        "design": design, "outcome": cols.outcome, "treatment": t, "vcov": vc_desc, "cluster_df": cluster_df,
        "covariates": tuple(cov_names), "level": level, "seed": seed, "n_analytic": len(ana), "alternative": alternative,
        "n_by_arm": MappingProxyType(counts),
    }
    return MultiArmResult(control, arms, MappingProxyType(effects), MappingProxyType(dict(zip(arms, map(float, p_adj)))),
                          adjust, MappingProxyType(sim), fit, MappingProxyType(options), tuple(notes), alternative,
                          MappingProxyType(dict(zip(arms, map(float, p)))))


__all__ = ["analyze_multiarm", "MultiArmResult", "ADJUST", "ALTERNATIVES"]
