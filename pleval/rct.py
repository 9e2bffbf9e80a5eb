"""Randomized controlled trials: individual, blocked and cluster-randomized designs.

:func:`analyze_rct` estimates the intent-to-treat (ITT) effect of *assignment* and puts
beside it everything a reviewer asks for: attrition and baseline equivalence judged by the
What Works Clearinghouse (WWC) rules, the design-based (Neyman) estimate, a school-level
analysis, a multilevel model on request, the effect of the program on schools that took it
up (CACE), subgroup effects with multiplicity-adjusted p-values and a randomization test.

Samples
-------
* **Randomized sample**: every row with a known assignment (and school/block where the
  design needs them). Rows without them cannot be counted and are listed in ``dropped``.
* **Analytic sample**: the rows the impact estimate uses — a non-missing outcome and every
  model covariate present. Rows with an outcome but a missing covariate are therefore
  counted as attrition, as the WWC does (Standards Handbook v4.1: attrition is measured from
  the randomized to the analytic sample); ``dropped`` says how many.

ITT (``method="ols"``, the default)
-----------------------------------
OLS of the outcome on the assignment indicator, block fixed effects, the pretest(s) and the
covariates (categorical ones as indicators)::

    y_i = α + τ z_i + Σ_b γ_b 1[block_i = b] + x_i'β + ε_i

τ̂ is the ITT. Its covariance is cluster-robust at the unit of assignment: CR2
(Bell & McCaffrey 2002) with Satterthwaite degrees of freedom (Pustejovsky & Tipton 2018)
by default for cluster designs, HC2 (MacKinnon & White 1985) for individual designs; see
:func:`pleval.inference.ols`.
Under HC and classical covariances, and CR types clustered by school with every school in one
block, the block indicators are absorbed (every variable less its block mean;
Frisch–Waugh–Lovell), with the SEs and df of the fit with indicators
(:func:`pleval.inference.ols`, ``absorb``); otherwise they are columns of X. With block
effects the ITT weights block b by n_b·p_b(1 − p_b) (p_b its share assigned), not by its
students; the notes say so when the shares differ enough to move 5% of the weight
(:func:`block_weight_shift`; the Neyman estimate below weights blocks by their students).

With ``lin=True`` the ITT model is Lin's (2013) fully interacted adjustment
(:mod:`pleval.lin`): the block indicators, pretest(s) and covariates are centred at their
analytic-sample means and interacted with assignment, ``y = α + τz + x̃'β + z·x̃'γ + ε``; τ̂ is
the ITT (estimatr's ``lm_lin``), with the same covariance (CR2 / HC2 by default). Under HC
and classical covariances the block × arm cells are absorbed (:func:`pleval.lin.lin_within`);
blocks without both arms are left out of this model (their own effect is not identified). Under
CR types, when a block has a single school in an arm, the block effects stay additive and only
the pretest(s) and covariates are interacted (:func:`_lin_one_school_blocks`; a note says so);
the wild bootstrap of Lin's ITT fits the same model. The other analyses keep the additive model.

Other estimates
---------------
* **Neyman (design-based) difference in means**, always reported beside the ITT: within
  block b and arm a, the Hájek mean ``ȳ_ba = Σ_u Y_u / Σ_u N_u`` over the units of
  assignment u (students, or schools with outcome total Y_u over N_u students), with
  variance ``v_ba = m_ba/(m_ba − 1) · Σ_u (Y_u − ȳ_ba N_u)² / (Σ_u N_u)²`` (for students
  this is s²/n). ``τ̂ = Σ_b w_b (ȳ_bT − ȳ_bC)``, ``w_b = N_b/N`` (students), and
  ``V = Σ_b w_b² (v_bT + v_bC)`` with Welch–Satterthwaite df
  ``(Σ c)² / Σ c²/(m − 1)`` over the components ``c = w_b² v_ba`` (Neyman 1923; Imbens &
  Rubin 2015 ch. 6 & 9; Middleton & Aronow 2015 for cluster totals). When every block is a
  pair (one treated and one control unit), the pair estimator
  ``V = J/(J − 1) Σ_b (w_b d_b − τ̂/J)²`` with J − 1 df is used (Imai, King & Nall 2009).
* **School means** (``method="cluster_means"``; always shown for cluster designs): OLS of
  school mean outcomes on assignment, block effects and school mean pretest/covariates, each
  school counting once, HC2 with Bell & McCaffrey's df. It estimates the effect for the average school.
  The schools of blocks without both arms are left out of it (note).
* **MixedLM** (``method="mixedlm"``): random school intercepts, REML (statsmodels
  ``MixedLM``), same fixed effects as the ITT model. If the default optimizer fails, the fit
  is retried with Powell and then Nelder–Mead and the result says so. Its t reference uses
  ``G − b − 1`` df (clusters minus cluster-level fixed effects: intercept, treatment,
  b − 1 block effects; the "between-within" rule).
* **Random blocks** (``method="random_blocks"``; needs ``block``): the blocks (districts in a
  cluster trial, schools in a multi-site trial) as a sample of blocks whose effects vary. Each
  block's effect ``δ̂_b = (ȳ_b1 − ȳ_b0) − (x̄_b1 − x̄_b0)'β̂`` (its arms' mean difference, adjusted
  by the pretests' and covariates' common slopes β̂ from the fit within block × arm cells: the
  additive model with one effect per block, Frisch–Waugh–Lovell), and the ITT the blocks'
  average ``δ̄ = Σ_b δ̂_b / K`` with ``SE = s_δ/√K`` (s_δ the δ̂_b's SD) and a t reference on
  K − 1 df: the effect across blocks like these, its SE counting their effects' variation
  (ω in PowerUp!'s BCRA3_2r and BIRA2_1r, whose df K − g − 1 it has; Raudenbush & Bloom
  2015's fixed-intercept, random-effect estimand with equal block weights). Blocks without
  both arms are left out (note); it needs two blocks with both arms.
* **CACE / TOT**: two-stage least squares of the outcome on take-up instrumented by
  assignment, with the ITT model's other regressors. Just identified, it is the ratio of the
  ITTs on the outcome and on take-up, ``θ̂ = τ̂_y / τ̂_d``, and its sandwich variance is the ITT
  model's covariance of the treatment coefficient for the outcome ``y − θ̂·d`` (whose residuals
  are the 2SLS residuals) over ``τ̂_d²`` — so the CACE takes the ITT's covariance and df (CR2
  with Satterthwaite df by default; with ``vcov="CR1"`` or ``"HC1"`` it equals linearmodels'
  ``IV2SLS`` with ``debiased=True``). With one-sided noncompliance the CACE is the effect on the
  treated (Bloom 1984; Angrist, Imbens & Rubin 1996). The **complier share** is the ITT on
  take-up (same model and covariance as the ITT).

Effect sizes (WWC Procedures Handbook v4.1, "effect sizes")
----------------------------------------------------------
``g = ω · τ̂ / S``, with S the pooled within-group SD of the *unadjusted* outcome in the
analytic sample (default; or the comparison-group SD, or a given norm SD) and
``ω = 1 − 3/(4N − 9)`` (N students) for the pooled SD. Percentile points map g from the
baseline percentile (:func:`pleval.percentiles.to_percentile_points`).

Cluster designs also report the **Hedges (2007) cluster-adjusted effect size** the WWC asks
for when schools are assigned (Procedures Handbook v4.1/v5.0, effect sizes in cluster designs):
``g_T = γ·g`` with ``γ = √{1 − 2(n̄ − 1)ρ/(N − 2)}`` (n̄ = N/m students per school, ρ the
intraclass correlation, WWC default 0.20 for achievement; ``icc=``), i.e. g computed with the
pooled SD divided by γ; its CI and percentile points scale the same way. It is labelled
"g_T (Hedges 2007, ρ=…)" in :meth:`RCTResult.to_frame` (and ``all_effects()``) and the summary.
Its small-sample factor is ω = 1 − 3/(4N − 9) (``gt_df="N-2"``, default) or, with
``gt_df="h"``, ``ω = 1 − 3/(4h − 1)`` with Hedges' (2007) cluster-adjusted df
``h = [(N−2) − 2(n̄−1)ρ]² / [(N−2)(1−ρ)² + n̄(N−2n̄)ρ² + 2(N−2n̄)ρ(1−ρ)]`` (WWC v5.0 eq. E.21),
as VIVECampbell computes the WWC's cluster-adjusted g (labelled "…, ω(h)").

Subgroups
---------
One model per subgrouping variable with level-specific treatment effects
``Σ_l τ_l z_i 1[s_i = l]``, level main effects and the other regressors; τ̂_l are the
within-subgroup ITTs (same covariance as the ITT). Equality of the τ_l (the interaction
test) is a t test of the contrast (Satterthwaite df under CR2) for two levels and, for more,
the HTZ test of Pustejovsky & Tipton (2018) under CR2, and under HC2 with each student its own
cluster (``interaction_test="HTZ"``, default), or the Wald F with (L − 1, G − 1) df (``"F"``;
G − k − A for CR0/CR1 under ``cluster_df="G-p"``; n − k − A without clusters, A the absorbed
block effects; always for CR0/CR1/HC0/HC1/classical covariances). Within-subgroup p-values are adjusted across all subgroup rows, interaction
p-values across variables
(:func:`pleval.inference.adjust_pvalues`, Benjamini–Hochberg by default).
``"pretest_tercile"`` names the thirds of the main pretest in the analytic sample.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from . import effect_sizes, standards
from ._results import Effect, Estimate, ResultMixin
from .data import Columns, _coerce_treatment, as_columns, design_matrix, itt_columns, randomized_columns, one_arm_subject, pick_subject, school_arms, schools_across_blocks, subject_arms, validate
from .errors import ConvergenceError, DataError, DesignError, PlevalWarning
from .inference import adjust_pvalues, ols
from .inference.randomization import RandomizationResult, randomization_test
from .inference.robust import DF_WORKING, check_conventions, clusters_nested, convention_label, default_vcov
from .inference.wild import WildBootstrapResult, wild_cluster_bootstrap
from .subgroups import level_codes, single_valued_in_subject, subgroup_effects

DESIGNS = ("individual", "blocked", "cluster")
METHODS = ("ols", "cluster_means", "mixedlm", "random_blocks")
VCOVS = ("CR2", "CR1", "CR0", "HC2", "HC1", "HC0", "classical")
TERCILE = "pretest_tercile"
_TERCILE_ALIASES = (TERCILE, "pretest_third")


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, repr=False)
class RCTResult(ResultMixin):
    """Everything :func:`analyze_rct` estimated. Immutable; tables are returned as copies.

    ``itt`` is the primary estimate (``method``); ``effects`` maps every analysis name to
    its :class:`~pleval._results.Effect` (ITT, Neyman, school means, MixedLM, CACE).
    """

    design: str
    method: str
    itt: Effect
    effects: Mapping[str, Effect]
    complier_share: Estimate | None
    attrition: tuple[standards.Attrition, ...]
    randomization: RandomizationResult | None
    fit: object = field(repr=False)
    options: Mapping[str, object] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    _equivalence: pd.DataFrame = field(default=None, repr=False)
    _subgroups: pd.DataFrame | None = field(default=None, repr=False)
    _interactions: pd.DataFrame | None = field(default=None, repr=False)
    _dropped: pd.DataFrame = field(default=None, repr=False)
    cluster_effect_size: Effect | None = None
    wild_bootstrap: WildBootstrapResult | None = None

    @property
    def neyman(self) -> Effect | None:
        return self.effects.get("Neyman difference in means")

    @property
    def cace(self) -> Effect | None:
        return self.effects.get("CACE (IV)")

    @property
    def equivalence(self) -> pd.DataFrame:
        """Baseline equivalence on the analytic sample: one row per baseline variable/level."""
        return self._equivalence.copy()

    @property
    def equivalence_verdict(self) -> str:
        """WWC verdict for the main pretest (the characteristic the WWC requires)."""
        eq = self._equivalence
        main = eq[eq["role"] == "pretest"]
        return str(main["verdict"].iloc[0]) if len(main) else "not assessed (no pretest)"

    @property
    def equivalence_required(self) -> bool:
        """Whether the WWC requires baseline equivalence: attrition is high (cautious boundary,
        students or schools). A low-attrition RCT meets the standard without it."""
        return any(a.verdict_cautious == "high" for a in self.attrition)

    @property
    def equivalence_note(self) -> str:
        if self.equivalence_required:
            return (
                "WWC: attrition is high, so the trial can meet standards only with reservations and only if "
                f"baseline equivalence holds on the analytic sample (main pretest: {self.equivalence_verdict})"
            )
        if self.design == "cluster":  # the WWC's cluster step: joiners, which pleval cannot see (pleval.rating)
            return (
                "WWC: attrition is low; in a cluster trial baseline equivalence is then not required only if no "
                "students joined the schools after random assignment, which pleval cannot tell: if some did, or it is "
                "unknown, the trial can meet standards only with reservations and with baseline equivalence (main "
                f"pretest: {self.equivalence_verdict}); pleval estimate --design rct --set joiners=false declares none did"
            )
        return (
            "WWC: attrition is low, so baseline equivalence is not required for the trial to meet standards "
            "(shown for information)"
        )

    @property
    def subgroups(self) -> pd.DataFrame | None:
        return None if self._subgroups is None else self._subgroups.copy()

    @property
    def interactions(self) -> pd.DataFrame | None:
        return None if self._interactions is None else self._interactions.copy()

    @property
    def dropped(self) -> pd.DataFrame:
        return self._dropped.copy()

    def attrition_frame(self) -> pd.DataFrame:
        return pd.concat([a.to_frame() for a in self.attrition], ignore_index=True)

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per analysis × scale."""
        parts = []
        for name, eff in self.all_effects():
            f = eff.to_frame()
            f.insert(0, "analysis", name)
            parts.append(f)
        return pd.concat(parts, ignore_index=True)

    def all_effects(self) -> list[tuple[str, Effect]]:
        """Every analysis with its name, then the Hedges (2007) g_T row for cluster designs."""
        out = list(self.effects.items())
        if self.cluster_effect_size is not None:
            out.append((self.cluster_effect_size.raw.label, self.cluster_effect_size))
        return out

    def summary(self) -> str:
        o = self.options
        lines = [
            f"Randomized trial ({self.design} design), outcome {o['outcome']!r}"
            + (f", subject {o['subject']!r}" if o.get("subject") is not None else ""),
            f"  randomized: {o['n_randomized']:,} students"
            + (f" in {o['n_clusters_randomized']:,} schools" if o.get("n_clusters_randomized") else "")
            + f"; analytic: {o['n_analytic']:,} students"
            + (f" in {o['n_clusters_analytic']:,} schools" if o.get("n_clusters_analytic") else "")
            + (f"; {o['n_blocks']} blocks" if o.get("n_blocks") else ""),
            f"  model: {o['model']}; covariance {o['vcov']}",
            "",
            f"  {'analysis':<30}{'raw':>9}{'SE':>9}{format(o.get('level', 0.95), '.0%') + ' CI':>20}{'p':>9}{'ES':>8}"
            f"{'pct pts':>9}",
        ]
        for name, eff in self.all_effects():
            r = eff.raw
            ci = f"{r.ci_low:.3g} to {r.ci_high:.3g}"
            lines.append(
                f"  {name:<30}{r.estimate:>9.4g}{r.se:>9.3g}{ci:>20}{r.pvalue:>9.3g}"
                f"{eff.effect_size.estimate:>8.3f}{eff.percentile_points.estimate:>9.2f}"
            )
        lines.append(
            f"  effect size = ω·raw/SD with SD {self.itt.sd:.4g} ({self.itt.sd_kind}), ω = {self.itt.omega:.4f}; "
            "percentile points are shifts in rank, not in score"
        )
        if self.complier_share is not None:
            c = self.complier_share
            lines.append(f"  complier share (ITT on take-up): {c.estimate:.3f} (SE {c.se:.3f})")
        lines.append("")
        lines.extend("  " + a.summary() for a in self.attrition)
        eq = self._equivalence
        if len(eq):
            lines.append("  Baseline equivalence (analytic sample; WWC):")
            lines.append("    " + self.equivalence_note)
            for r in eq.itertuples():
                lines.append(f"    {r.variable:<24}{r.measure:<10} {r.effect_size:>7.3f}  {r.verdict}")
        if self._interactions is not None and len(self._interactions):
            lines.append(f"  Subgroups (p adjusted: {o['adjust']}):")
            for r in self._subgroups.itertuples():
                lines.append(
                    f"    {r.subgroup}={r.level}: {r.estimate:.4g} (SE {r.se:.3g}), p = {r.pvalue:.3g}, "
                    f"adjusted {r.pvalue_adjusted:.3g}"
                )
            for r in self._interactions.itertuples():
                lines.append(
                    f"    interaction {r.subgroup}: {r.test}, p = {r.pvalue:.3g}, adjusted {r.pvalue_adjusted:.3g}"
                )
        if self.randomization is not None:
            lines.append("  " + self.randomization.summary().replace("\n", "\n  "))
        if self.wild_bootstrap is not None:
            lines.append("  " + self.wild_bootstrap.summary())
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers


def _cluster_checks(rand: pd.DataFrame, cols: Columns, arms: tuple[str, str] | None = None) -> None:
    """The cluster design's checks of the randomized sample (:func:`analyze_rct`'s, and
    :func:`pleval.multiarm.analyze_multiarm`'s with ``arms``, its column of arms and their
    column's name as given, the treatment being any arm against control): each school in one arm
    (:func:`pleval.data.school_arms`), schools nested in blocks, at least 2 treated and 2 control
    schools."""
    school, t = cols.school, cols.treatment
    arm, label = arms or (t, t)
    arm_of, mixed = school_arms(rand[school], rand[arm])
    if len(mixed):
        raise DesignError(
            f"column {label!r} (treatment) varies within {len(mixed):,} school(s) of column {school!r} "
            f"(e.g. {list(mixed[:3])}); a cluster-randomized design assigns whole schools to one arm (students "
            "randomized within schools: the blocked design, each school a block, or the individual design)"
        )
    if cols.block:
        bad = schools_across_blocks(rand, school, cols.block)
        if len(bad):
            raise DesignError(
                f"schools must be nested in blocks: {len(bad):,} school(s) of column {school!r} appear in "
                f"more than one {cols.block!r} (e.g. {list(bad[:3])})"
            )
    _schools_per_arm(rand, cols, "randomized", None if arms else arm_of)  # (every school's one arm, found above)


def _schools_per_arm(sample: pd.DataFrame, cols: Columns, name: str, arm: pd.Series | None = None) -> None:
    """A :class:`DesignError` unless ``sample`` (the ``name`` sample) has at least 2 treated and 2
    control schools: with one school in an arm its effect is that school's own, and a clustered SE
    has nothing to measure its variation with (a null rejected in 41% of trials whose analytic
    sample kept one of two treated schools, before 2026-12-04). ``arm``: each school's arm, when
    already formed."""
    if arm is None:
        arm = sample.groupby(cols.school, sort=False, observed=True)[cols.treatment].first()
    arms = arm.value_counts()
    if arms.get(1, 0) < 2 or arms.get(0, 0) < 2:
        raise DesignError(
            f"a cluster-randomized analysis needs at least 2 treated and 2 control schools (column {cols.school!r}); "
            f"the {name} sample has {arms.get(1, 0)} treated and {arms.get(0, 0)} control"
        )


def _unclustered_schools(rand: pd.DataFrame, cols: Columns, design: str, vcov: str, label: str | None = None) -> str:
    """Why the standard errors are too small, or "": a covariance that ignores the schools
    (``vcov`` HC or classical) when the schools were randomized — the design says so, or every
    school's students share one arm (at least two schools in each). ``label``: the treatment
    column's name as the user knows it (default ``cols.treatment``)."""
    if design == "cluster":
        return (f"vcov={vcov!r} treats students as independent, but the schools were randomized (design "
                "'cluster'): the standard errors are too small; use vcov='CR2' (the default)")
    arm_of, mixed = school_arms(rand[cols.school], rand[cols.treatment])
    if not len(mixed) and min((arm_of == 1).sum(), (arm_of == 0).sum()) >= 2:
        return (f"column {label or cols.treatment!r} (treatment) is constant within each of the {len(arm_of):,} schools "
                f"of {cols.school!r}, so the schools look randomized, but design {design!r} with vcov={vcov!r} treats "
                "students as independent: the standard errors are too small if schools were randomized; use "
                "design='cluster'")
    return ""


def _validate(df, columns: Columns, design: str, covariates, subject, arms: tuple[str, str] | None = None):
    """Randomized sample, analytic sample, the model's covariate names, dropped rows, notes.
    ``arms``: a multi-arm trial's column of arms and its name as given (:func:`_cluster_checks`)."""
    if design not in DESIGNS:
        raise DataError(f"design must be one of {DESIGNS}; got {design!r}")
    columns = as_columns(columns)
    if columns.weight:
        raise DataError(
            f"column {columns.weight!r} (weight): analysis weights are not used in RCT analysis; "
            "leave the weight role unset"
        )
    cov_names = tuple(columns.covariates if covariates is None else ([covariates] if isinstance(covariates, str) else covariates))
    require = ["outcome", "treatment"] + (["school"] if design == "cluster" else []) + (["block"] if design == "blocked" else [])
    notes = []
    if design == "individual" and columns.block:
        notes.append(f"design 'individual' ignores the block column {columns.block!r} (use design='blocked')")
        columns = columns.replace(block=None)
    # The randomized sample: every row whose assignment (and its school, block and subject) is
    # known. A row missing a pretest, covariate, grade or student id was randomized all the same:
    # left out of the analytic sample and counted as attrition. Take-up serves the CACE only.
    base_cols = randomized_columns(columns)
    rand_v = validate(df, base_cols, require=require)
    rand = rand_v.data
    if columns.takeup:
        rand = rand.assign(**{columns.takeup: _coerce_treatment(rand[columns.takeup], columns.takeup, None, "takeup")[0]})
    if columns.subject:
        subjects = pd.unique(rand[columns.subject])
        if subject is None and len(subjects) > 1:
            raise DataError(
                f"column {columns.subject!r} (subject) holds {len(subjects)} subjects ({', '.join(map(str, subjects[:5]))}); "
                "analyse one at a time with subject=... (or use rct_by_subject)"
            )
        if subject is not None:
            subject = pick_subject(subjects, subject, columns.subject)
            rand = rand[rand[columns.subject] == subject]
    elif subject is not None:
        raise DataError("subject=... needs the subject column (columns.subject)")
    # The treatment of `rand` is already coded 0/1: the treated label is not applied twice.
    model_cols = itt_columns(columns.replace(covariates=cov_names, treated_label=None))
    rand.attrs["sha256"] = rand_v.input_sha256  # provenance of the input; avoids hashing twice
    full_v = validate(rand, model_cols, require=require)
    full = full_v.data
    ana = full[full[columns.outcome].notna()]
    dropped = pd.concat(
        [
            rand_v.dropped.assign(stage="randomized sample (not counted)"),
            full_v.dropped.assign(stage="analytic sample (counted as attrition)"),
            pd.DataFrame(
                [{"reason": "missing outcome", "column": columns.outcome,
                  "n_rows": int(full[columns.outcome].isna().sum()), "stage": "analytic sample (counted as attrition)"}]
            ),
        ],
        ignore_index=True,
    )
    dropped = dropped[dropped["n_rows"] > 0].reset_index(drop=True)
    if full_v.n_dropped:
        notes.append(
            f"{full_v.n_dropped:,} randomized row(s){'' if subject is None else f' of {subject}'} lack a pretest, "
            "covariate, grade or student id and are left out of the analytic sample (counted as attrition)"
        )
    if design == "cluster":
        _cluster_checks(rand, columns, arms)
        _schools_per_arm(ana, columns, "analytic (after attrition)")
    for name, sample in (("randomized", rand), ("analytic", ana)):
        n_t = int(sample[columns.treatment].sum())
        if n_t < 2 or len(sample) - n_t < 2:
            raise DesignError(f"the {name} sample needs at least 2 treated and 2 control rows; has {n_t} and {len(sample) - n_t}")
    return columns, rand, ana, cov_names, dropped, notes


@dataclass
class _Model:
    """The ITT model's pieces. ``X``/``names``: the full design (intercept, treatment, block
    indicators, pretests and covariates), formed on first use; ``Xa``/``names_a``: treatment,
    pretests and covariates, for fits that absorb the blocks (:func:`pleval.inference.ols`,
    ``absorb=block_codes``) — n × (blocks − 1) indicators are never formed then."""

    y: np.ndarray
    z: np.ndarray
    names: list[str]
    school: np.ndarray | None  # integer school codes 0..n_schools−1
    n_schools: int
    block_codes: np.ndarray | None
    n_blocks: int
    covX: pd.DataFrame  # pretests + covariates design columns
    block: str | None = None  # the block column's name
    school_labels: np.ndarray | None = None  # the school of each code
    block_labels: np.ndarray | None = None  # the block of each code

    def absorbs(self, vcov: str) -> bool:
        """Whether fits with covariance ``vcov`` absorb the block indicators (more than one
        block): HC and classical types, and CR types clustered by school when every school lies
        in one block (:func:`pleval.inference.ols`, ``absorb``)."""
        if self.n_blocks < 2:
            return False
        return not vcov.startswith("CR") or clusters_nested(self.school, self.n_schools, self.block_codes)

    @property
    def names_a(self) -> list[str]:
        return ["treatment", *self.covX.columns]

    @cached_property
    def both_arm_rows(self) -> tuple[np.ndarray | None, int]:
        """The rows of the blocks with both arms (None: every row) and how many blocks have one arm
        only: with block effects such a block says nothing of the effect."""
        if self.n_blocks < 2:
            return None, 0
        n_t = np.bincount(self.block_codes, weights=self.z, minlength=self.n_blocks)
        n_b = np.bincount(self.block_codes, minlength=self.n_blocks)
        ok = (n_t > 0) & (n_t < n_b)
        return (None if ok.all() else ok[self.block_codes]), int((~ok).sum())

    @cached_property
    def Xa(self) -> np.ndarray:
        return np.column_stack([self.z, self.covX.to_numpy(dtype=float)])

    @cached_property
    def X(self) -> np.ndarray:
        n, nb = len(self.y), max(self.n_blocks - 1, 0)
        k = 2 + nb + self.covX.shape[1]
        if nb:
            from ._workers import available_memory

            need, free = 8.0 * n * k, available_memory()
            if need > free / 2:
                raise DesignError(
                    f"this analysis needs the n × k design with one indicator per block of {self.block!r} as "
                    f"columns: {n:,} rows × {k:,} columns = {need / 2**30:.1f} GB, more than half the memory free "
                    f"({free / 2**30:.1f} GB). MixedLM, school means, the wild bootstrap, the logistic regression of "
                    "yes/no outcomes, Lin's adjustment with cluster-robust SEs and cluster-robust SEs with schools "
                    "across blocks need the indicators; the ITT (HC, or clustered by school within blocks) absorbs them"
                )
        X = np.empty((n, k))
        X[:, 0] = 1.0
        X[:, 1] = self.z
        if nb:
            X[:, 2 : 2 + nb] = 0.0
            rows = np.flatnonzero(self.block_codes > 0)
            X[rows, 1 + self.block_codes[rows]] = 1.0  # block b > 0 in column 2 + b − 1
        X[:, 2 + nb :] = self.covX.to_numpy(dtype=float)
        return X


BLOCK_WEIGHT_NOTE = 0.05
"""Share of the weight that must move between blocks (:func:`block_weight_shift`) for the
trial's notes to say that the OLS ITT does not weight blocks by their students."""


def block_weight_shift(n_treated: np.ndarray, n: np.ndarray) -> tuple[float, float, float]:
    """How far the OLS ITT's implicit block weights are from the students' weights.

    With block fixed effects (and no covariates) the OLS ITT is ``Σ_b w_b (ȳ_b1 − ȳ_b0)`` with
    ``w_b ∝ n_b p_b (1 − p_b)``, ``p_b`` the share assigned in block b (Angrist 1998; Miratrix,
    Weiss & Henderson 2021), while the average effect per student weights blocks by ``n_b``.
    Returns the total-variation distance ``½ Σ_b |w_b − n_b/N|`` over the blocks with both
    arms (the share of weight that moves), and the smallest and largest ``p_b`` among them."""
    n, n_treated = np.asarray(n, dtype=float), np.asarray(n_treated, dtype=float)
    both = (n_treated > 0) & (n_treated < n)
    if both.sum() < 2:
        return 0.0, math.nan, math.nan
    nb, p = n[both], n_treated[both] / n[both]
    w_ols = nb * p * (1.0 - p)
    return 0.5 * float(np.abs(w_ols / w_ols.sum() - nb / nb.sum()).sum()), float(p.min()), float(p.max())


def _model(ana: pd.DataFrame, cols: Columns, cov_names: Sequence[str], notes: list) -> _Model:
    y = ana[cols.outcome].to_numpy(dtype=float)
    z = ana[cols.treatment].to_numpy(dtype=float)
    names = ["const", "treatment"]
    block_codes, nb = None, 0
    if cols.block:
        block_codes, labels = pd.factorize(ana[cols.block], sort=True)
        nb = len(labels)
        n_t_b = np.bincount(block_codes, weights=z, minlength=nb)
        n_b = np.bincount(block_codes, minlength=nb)
        k = int(np.sum((n_t_b == 0) | (n_t_b == n_b)))
        if k:
            notes.append(
                f"{k} block(s) of {cols.block!r} have only treated or only control rows in the analytic sample; "
                "they do not inform the block-adjusted ITT"
            )
        if (n_b == 1).any():
            notes.append(
                f"{int((n_b == 1).sum())} of them have a single analysed student, whom the block's effect fits "
                "exactly: left out of the ITT's fit with the block (no residual, no information)"
            )
        shift, lo, hi = block_weight_shift(n_t_b, n_b)
        if shift >= BLOCK_WEIGHT_NOTE:
            notes.append(
                f"the share of students assigned to PL differs between the blocks of {cols.block!r} ({lo:.0%} to "
                f"{hi:.0%}): the OLS ITT with block effects weights each block by n_b·p_b(1 − p_b), not by its "
                f"students ({shift:.0%} of the weight moves between blocks), so where effects differ between blocks "
                "it is not the average effect per student; the Neyman estimate, blocks weighted by their students, "
                "is (Miratrix, Weiss & Henderson 2021)"
            )
        names += [f"{cols.block}[{labels[j]}]" for j in range(1, nb)]
    covX = design_matrix(ana, list(cols.pretest) + list(cov_names))
    if nb > 1:
        covX = _drop_constant_within(covX, block_codes, nb, f"each block of {cols.block!r}", "the block effects", notes)
    names += list(covX.columns)
    school, n_schools, uniq = None, 0, None
    if cols.school:
        school, uniq = pd.factorize(ana[cols.school])
        n_schools = len(uniq)
    mod = _Model(y, z, names, school, n_schools, block_codes, nb, covX, cols.block,
                 None if uniq is None else np.asarray(uniq, dtype=object),
                 None if block_codes is None else np.asarray(labels, dtype=object))
    rows, n_one = mod.both_arm_rows
    if rows is not None and not rows.any():
        raise DesignError(f"column {cols.block!r} (block): none of its {nb:,} blocks holds both treated and control "
                          "rows with an outcome, so with block effects the effect is not identified; is it the "
                          "randomization block (not, say, the school)?")
    return mod


def _drop_constant_within(X: pd.DataFrame, groups: np.ndarray, n_groups: int, where: str, absorber: str,
                          notes: list) -> pd.DataFrame:
    """``X`` without the columns that hold one value within every group (``groups``, codes
    0..n_groups−1): effects of the groups absorb them, so they carry nothing, and fitted beside
    those effects their slope is the rounding left by the groups' means (before 2026-12-05 such a
    column entered the fit and moved its CR2 SE). A note names them."""
    if not X.shape[1]:
        return X
    v = X.to_numpy(dtype=float)
    rep = np.empty((n_groups, v.shape[1]))
    rep[groups] = v  # one of each group's values (whichever write lands): one value iff every row's is it
    flat = np.zeros(v.shape[1], dtype=bool) if not np.bincount(groups, minlength=n_groups).all() else (
        (v == rep[groups]).all(axis=0) & np.isfinite(v).all(axis=0))
    flat = [c for c, same in zip(X.columns, flat) if same]
    if flat:
        notes.append(f"{', '.join(map(repr, flat))}: one value within {where}, which {absorber} absorb: left out "
                     "(it carries no information here)")
    return X.drop(columns=flat)


def _neyman(y, z, unit, block, sd_notes: list) -> tuple[float, float, float]:
    """Design-based blocked difference in (Hájek) means over units of assignment; see module doc."""
    units, u_idx = np.unique(unit, return_inverse=True)
    m = units.size
    Y = np.bincount(u_idx, weights=y, minlength=m)
    N = np.bincount(u_idx, minlength=m).astype(float)
    zu = np.bincount(u_idx, weights=z, minlength=m) / N
    bu = np.zeros(m, dtype=np.intp) if block is None else np.bincount(u_idx, weights=block, minlength=m).astype(float) / N
    bu = np.rint(bu).astype(np.intp)
    nb = int(bu.max()) + 1
    cell = bu * 2 + zu.astype(np.intp)  # block × arm
    SY = np.bincount(cell, weights=Y, minlength=2 * nb)
    SN = np.bincount(cell, weights=N, minlength=2 * nb)
    cnt = np.bincount(cell, minlength=2 * nb)
    ok = (cnt[0::2] > 0) & (cnt[1::2] > 0)
    if not ok.all():
        sd_notes.append(f"Neyman: {int((~ok).sum())} block(s) without both arms are left out")
    with np.errstate(divide="ignore", invalid="ignore"):
        ybar = SY / SN
        e = Y - ybar[cell] * N
        ss = np.bincount(cell, weights=e**2, minlength=2 * nb)
        v = cnt / (cnt - 1.0) * ss / SN**2
    Nb = SN[0::2] + SN[1::2]
    w = np.where(ok, Nb, 0.0) / Nb[ok].sum()
    d = np.where(ok, ybar[1::2] - ybar[0::2], 0.0)
    tau = float(np.sum(w * d))
    m_t, m_c = cnt[1::2][ok], cnt[0::2][ok]
    if np.all(m_t >= 2) and np.all(m_c >= 2):
        comp = np.concatenate([w[ok] ** 2 * v[1::2][ok], w[ok] ** 2 * v[0::2][ok]])  # (a one-arm block's v is inf)
        mm = np.concatenate([m_t, m_c])
        var = float(comp.sum())
        df = var**2 / float(np.sum(comp**2 / (mm - 1.0)))
    elif np.all(m_t == 1) and np.all(m_c == 1) and ok.sum() >= 2:
        J = int(ok.sum())
        var = J / (J - 1.0) * float(np.sum((w[ok] * d[ok] - tau / J) ** 2))
        df = J - 1.0
        sd_notes.append("Neyman: every block is a pair; the pair-difference variance (Imai, King & Nall 2009) is used")
    else:
        sd_notes.append(
            "Neyman: some blocks have a single treated or control unit (and not all are pairs); no design-based SE"
        )
        var, df = math.nan, math.nan
    return tau, math.sqrt(var) if np.isfinite(var) else math.nan, df


def _model_text(cols: Columns, cov_names: Sequence[str], absorbed: bool) -> str:
    """The additive ITT model in words, as the method column says it:
    ``outcome ~ treatment + block FE [(absorbed)] + pretest + k covariate(s)`` (``absorbed``: the
    fit absorbs the block indicators rather than forming them)."""
    adj = ["pretest"] * bool(cols.pretest) + ([f"{len(cov_names)} covariate(s)"] if cov_names else [])
    blocks = (" + block FE" + (" (absorbed)" if absorbed else "")) if cols.block else ""
    return "outcome ~ treatment" + blocks + "".join(f" + {a}" for a in adj)


def _lin_rows(mod: _Model, notes: list) -> np.ndarray | None:
    """Rows of the blocks with both arms, for Lin's model (None: every row): in a block with one
    arm the block's own effect, and so the average of the blocks' effects, is not identified."""
    rows, n_one = mod.both_arm_rows
    if rows is not None:
        notes.append(f"Lin adjustment: {n_one} block(s) without both arms ({int((~rows).sum()):,} rows) are left "
                     "out of the interacted model: the effect within them is not identified")
    return rows


def _lin_one_school_blocks(mod: _Model, rows: np.ndarray | None) -> list:
    """The blocks (labels) of Lin's model on ``rows`` (None: all) with an arm whose rows all lie in
    one school. The block × assignment indicators fit such a block × arm cell's mean exactly, so
    that school's residuals carry nothing in that direction (CR0/CR1; CR2's Moore–Penrose root
    maps it to 0), and a cluster-robust SE or wild cluster bootstrap leaves out the between-school
    variation of a cell mean that τ̂ weights directly: true nulls rejected in 97.5% of simulated
    pair-matched trials, 92% of multi-site trials under CR2, before 2026-12-05."""
    if mod.n_blocks < 2 or mod.school is None:
        return []
    sel = slice(None) if rows is None else rows
    cell = 2 * mod.block_codes[sel].astype(np.int64) + mod.z[sel].astype(np.int64)
    cell_school = np.unique(cell * mod.n_schools + mod.school[sel])  # the distinct (cell, school) pairs
    schools_in_cell = np.bincount(cell_school // mod.n_schools, minlength=2 * mod.n_blocks)
    return [mod.block_labels[b] for b in np.unique(np.flatnonzero(schools_in_cell == 1) // 2)]


def _lin_dense(mod: _Model, rows: np.ndarray | None, blocks_additive: bool = False) -> tuple[np.ndarray, list[str]]:
    """:func:`pleval.lin.lin_design` on ``rows`` (None: all) with the indicators of the blocks
    present there, the first of them the reference: centred and interacted with assignment, or,
    with ``blocks_additive``, appended as they are (only the pretests and covariates interacted)."""
    from .lin import lin_design

    sel = slice(None) if rows is None else rows
    block_cols = list(range(2, 1 + mod.n_blocks))  # block b ≥ 1 in column 1 + b
    if rows is not None:
        present = set(1 + np.unique(mod.block_codes[rows])[1:])
        block_cols = [j for j in block_cols if j in present]
    cov_cols = list(range(2 + max(mod.n_blocks - 1, 0), len(mod.names)))
    Xs = mod.X[sel]
    if not blocks_additive:
        keep = block_cols + cov_cols
        return lin_design(mod.z[sel], Xs[:, keep], [mod.names[j] for j in keep])
    X, names = lin_design(mod.z[sel], Xs[:, cov_cols], [mod.names[j] for j in cov_cols])
    return np.column_stack([X, Xs[:, block_cols]]), names + [mod.names[j] for j in block_cols]


def _lin_fit(mod: _Model, rows: np.ndarray | None, vcov: str, fit_kw: dict, blocks_additive: bool):
    """Lin's ITT fit on ``rows`` (None: all). HC and classical covariances absorb the block × arm
    cells (:func:`pleval.lin.lin_within`); CR types fit the interacted design with the indicators
    as columns, or, with ``blocks_additive`` (:func:`_lin_one_school_blocks`), the pretests and
    covariates interacted and the block effects additive, absorbed where the covariance allows it
    (:meth:`_Model.absorbs`)."""
    from .lin import lin_design, lin_within

    sel = slice(None) if rows is None else rows
    kw = {**fit_kw, "clusters": None if fit_kw["clusters"] is None else fit_kw["clusters"][sel]}
    C = mod.covX.to_numpy(dtype=float)[sel]
    if mod.absorbs(vcov) and not vcov.startswith("CR"):
        return lin_within(mod.y[sel], mod.z[sel], C, pd.factorize(mod.block_codes[sel])[0], vcov=vcov,
                          names=list(mod.covX.columns))
    if blocks_additive and mod.absorbs(vcov):
        X, names = lin_design(mod.z[sel], C, list(mod.covX.columns))
        return ols(mod.y[sel], X[:, 1:], names=names[1:], absorb=pd.factorize(mod.block_codes[sel])[0], **kw)
    X, names = _lin_dense(mod, rows, blocks_additive)
    return ols(mod.y[sel], X, names=names, **kw)


def _random_blocks_fit(mod: _Model, cols: Columns, notes: list) -> tuple[float, float, float, int]:
    """``(δ̄, SE, df, K)`` of ``method="random_blocks"`` (module docstring): the blocks' effects
    from their block × arm cell means, adjusted by the common slopes of the fit within cells, and
    their average, SE ``s_δ/√K`` and K − 1 df over the K blocks with both arms."""
    if not cols.block or mod.n_blocks < 2:
        raise DataError("method='random_blocks' needs blocks: name the block column (columns.block; in a cluster "
                        "trial the district, in a multi-site trial the school) with at least two blocks")
    rows, one_arm = mod.both_arm_rows
    sel = slice(None) if rows is None else rows
    blocks, z, y = mod.block_codes[sel], mod.z[sel].astype(np.intp), mod.y[sel]
    K = int(np.unique(blocks).size)
    if K < 2:
        raise DesignError(f"method='random_blocks': {K} block(s) with both arms; it needs at least two")
    if one_arm:
        notes.append(f"random blocks: {one_arm} block(s) with one arm only say nothing of their effect and are left out")
    cell, keys = pd.factorize(blocks * 2 + z)  # keys: each cell's block * 2 + arm
    covX = _drop_constant_within(mod.covX.iloc[sel], cell, len(keys),
                                 "each block × arm cell (a school-level covariate in pairs of schools)",
                                 "the blocks' own effects", notes)
    X = covX.to_numpy(dtype=float)
    n = np.bincount(cell)
    means = np.column_stack([np.bincount(cell, weights=c) / n for c in (y, *X.T)])  # y and each covariate by cell
    if X.shape[1]:
        beta = ols(y, X, absorb=cell, vcov="classical").params  # the common slopes, within cells
        adjusted = means[:, 0] - means[:, 1:] @ beta
    else:
        adjusted = means[:, 0]
    delta = np.bincount(pd.factorize(keys // 2)[0], weights=np.where(keys % 2 == 1, adjusted, -adjusted), minlength=K)
    est, sd = float(delta.mean()), float(delta.std(ddof=1))
    return est, sd / math.sqrt(K), float(K - 1), K


def _cluster_means_fit(mod: _Model, cols: Columns, notes: list):
    """School-mean regression (each school once), HC2 with Bell & McCaffrey's df. The schools of blocks without
    both arms are left out (with a note): with block effects they say nothing of the effect, and
    a block of one school would be fitted exactly (leverage 1, where HC2 is undefined)."""
    rows, n_one = mod.both_arm_rows
    sel = slice(None) if rows is None else rows
    kept, codes = np.unique(mod.school[sel], return_inverse=True)
    m = kept.size
    if rows is not None:
        notes.append(f"school-means analysis: the {mod.n_schools - m:,} school(s) of the {n_one:,} block(s) without both "
                     "arms are left out: with block effects they carry no information on the effect")
    cnt = np.bincount(codes, minlength=m).astype(float)

    def mean(v):
        return np.bincount(codes, weights=v, minlength=m) / cnt

    present, bcodes = (np.unique(mod.block_codes[sel], return_inverse=True) if mod.n_blocks > 1
                       else (np.zeros(1, dtype=int), None))
    nb = present.size - 1
    shares = np.zeros((m, nb))  # each school's share of rows in block b ≥ 1 (its indicator, when nested)
    if nb:
        r = bcodes > 0
        np.add.at(shares, (codes[r], bcodes[r] - 1), 1.0)
        shares /= cnt[:, None]
    C = mod.covX.to_numpy(dtype=float)[sel]
    Xc = np.column_stack([np.ones(m), mean(mod.z[sel]), shares, *(mean(C[:, j]) for j in range(C.shape[1]))])
    yc = mean(mod.y[sel])
    block_names = set(mod.names[2:1 + mod.n_blocks]) - {mod.names[1 + b] for b in present[1:]}  # absent or the reference now
    names = [nm for nm in mod.names if nm not in block_names]
    keep = np.ones(len(names), dtype=bool)
    # student-level covariates averaged within schools; drop them if they leave too few df
    if m - Xc.shape[1] < 3 and mod.covX.shape[1] > 1:
        first_cov = 2 + nb
        keep[first_cov + 1 :] = False
        notes.append(f"school-means analysis: only {m} schools, so it adjusts for the school mean pretest only")
    Xc, names = Xc[:, keep], [nm for nm, k in zip(names, keep) if k]
    nz = Xc.std(axis=0) > 0
    nz[0] = True
    if (~nz).any():
        Xc, names = Xc[:, nz], [nm for nm, k in zip(names, nz) if k]
    if m - Xc.shape[1] < 1:
        raise DesignError(f"school-means analysis: {m} schools cannot support {Xc.shape[1]} regressors")
    alone = _leverage_one(Xc)
    later = set(list(mod.covX.columns)[1:])  # the design's columns after the first pretest
    extra = [j for j, nm in enumerate(names) if nm in later]
    if alone.any() and extra:  # a covariate whose school mean only one school has (ell = 1 in one school)
        first = list(mod.covX.columns)[:1]
        kept_what = f"the school mean of {first[0]} only" if first and first[0] in names else "no covariate"
        notes.append(f"school-means analysis: school(s) {', '.join(map(str, mod.school_labels[kept[alone][:5]]))} alone identify a "
                     f"covariate's school mean ({', '.join(names[j] for j in extra)} left out; HC2 is undefined at "
                     f"leverage 1), so it adjusts for {kept_what}")
        keep2 = np.ones(len(names), dtype=bool)
        keep2[extra] = False
        Xc, names = Xc[:, keep2], [nm for nm, k in zip(names, keep2) if k]
        alone = _leverage_one(Xc)
    if alone.any():
        raise DesignError(f"school-means analysis: school(s) {', '.join(map(str, mod.school_labels[kept[alone][:5]]))} alone identify a "
                          "regressor (leverage 1, where HC2 is undefined)")
    # HC2 on Bell & McCaffrey's df (m − k before 2026-12-04: 6.7% of true nulls rejected with 4 of
    # 14 schools treated, against 3.7%)
    fit = ols(yc, Xc, vcov="HC2", names=names)
    return fit, m


def _leverage_one(X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` with leverage 1 (to 1e-8): each alone identifies a direction of the fit."""
    q, r = np.linalg.qr(X)
    full = np.abs(np.diag(r)) > 1e-10 * np.abs(np.diag(r)).max(initial=1.0)
    return (q[:, full] ** 2).sum(axis=1) > 1.0 - 1e-8


def _mixedlm_fit(mod: _Model, notes: list):
    """statsmodels MixedLM with random school intercepts (REML); retry powell, nm on failure."""
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    exog = pd.DataFrame(mod.X, columns=mod.names)
    model = MixedLM(mod.y, exog, groups=mod.school)
    failures = []
    for method in (None, "powell", "nm"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                kw = {} if method is None else {"method": method, "maxiter": 20000}
                res = model.fit(reml=True, **kw)
            except Exception as exc:  # statsmodels raises assorted errors on failure
                failures.append(f"{method or 'default'}: {type(exc).__name__}: {exc}")
                continue
            with np.errstate(invalid="ignore"):  # a negative variance: NaN, a failure below
                bse = np.asarray(res.bse_fe)
        conv_warn = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        # the school variance estimated at 0 is a fit (lme4's "boundary (singular) fit"), not a failure;
        # there the joint Hessian can be singular, and the fixed effects' covariance is taken given the
        # variance estimates
        boundary = [w for w in conv_warn if "on the boundary" in str(w.message)
                    or "Hessian matrix at the estimated parameter values is not positive definite" in str(w.message)]
        if boundary and res.converged:
            bse = np.sqrt(np.diag(_gls_fixed_cov(mod, float(res.scale), float(res.cov_re.iloc[0, 0]))))
        if res.converged and len(boundary) == len(conv_warn) and np.all(np.isfinite(bse)):
            if failures:
                notes.append(
                    f"MixedLM: the default optimizer failed ({'; '.join(failures)}); refitted with {method}"
                )
            if boundary:
                notes.append(f"MixedLM: the school variance is estimated at the boundary ({float(res.cov_re.iloc[0, 0]):.3g}): "
                             "the fixed effects are those of OLS without a school effect, and the model-based SEs do not "
                             "allow for clustering; read the CR2 ITT")
            return res, bse
        reason = str(conv_warn[0].message).splitlines()[0] if conv_warn else "did not converge"
        failures.append(f"{method or 'default'}: {reason}")
    raise ConvergenceError("MixedLM did not converge with the default, powell or nm optimizers: " + "; ".join(failures))


def _gls_fixed_cov(mod: _Model, scale: float, tau2: float) -> np.ndarray:
    """``(X'V⁻¹X)⁻¹`` of the random-intercept model at its variance estimates: ``V_g = σ²I +
    τ²11'`` per school, ``V_g⁻¹ = (I − a_g 11')/σ²`` with ``a_g = τ²/(σ² + n_g τ²)`` (Woodbury),
    so ``X'V⁻¹X = (X'X − Σ_g a_g s_g s_g')/σ²`` with ``s_g`` school g's column sums (the
    covariance lme4 reports for the fixed effects, given θ̂)."""
    X = mod.X
    n_g = np.bincount(mod.school, minlength=mod.n_schools).astype(float)
    S = np.zeros((mod.n_schools, X.shape[1]))
    np.add.at(S, mod.school, X)
    a = tau2 / (scale + n_g * tau2)
    return np.linalg.inv((X.T @ X - (S * a[:, None]).T @ S) / scale)


def _itt_fitter(mod: _Model, vcov: str, fit_kw: dict) -> Callable:
    """The ITT model's fit of a response on ``mod``'s design (its block indicators absorbed where
    the covariance allows it: :meth:`_Model.absorbs`), clustered by ``mod``'s schools for CR types."""
    kw = {**fit_kw, "clusters": mod.school if vcov.startswith("CR") else None}
    absorb = mod.block_codes if mod.absorbs(vcov) else None

    def fit(v):
        if absorb is not None:
            return ols(v, mod.Xa, names=mod.names_a, absorb=absorb, **kw)
        return ols(v, mod.X, names=mod.names, **kw)

    return fit


def _cace(itt_fit, y: np.ndarray, takeup: np.ndarray, share: float,
          itt_y: float | None = None) -> tuple[float, float, float]:
    """The CACE ``θ̂ = τ̂_y / τ̂_d`` (just-identified 2SLS of ``y`` on take-up instrumented by
    assignment, the ITT model's other regressors as exogenous), its SE and df. The 2SLS normal
    equations are those of OLS of ``y − θ̂·d`` on the ITT design with a zero treatment
    coefficient, so its residuals are the 2SLS residuals and the sandwich's treatment row is the
    ITT's over ``τ̂_d``: ``SE(θ̂) = SE_ITT(y − θ̂·d) / |τ̂_d|`` under the ITT's covariance (CR2,
    CR1, HC…) with the ITT's df (the Wald estimator: Angrist & Pischke 2009, §4.1.2; CR2 and its
    Satterthwaite df: Bell & McCaffrey 2002, Imbens & Kolesár 2016). With G − 1 df and CR1 it
    rejected a true null CACE in 9–10% of simulated trials of 8–16 schools; this way 4–6%
    (docs/rct.md). ``itt_y``: the ITT on ``y`` when already fitted (the additive model's)."""
    theta = (itt_fit(y).coef("treatment")[0] if itt_y is None else itt_y) / share
    _, se, df, _ = itt_fit(y - theta * takeup).coef("treatment")
    return float(theta), float(se) / abs(share), float(df)


def _equivalence(ana: pd.DataFrame, cols: Columns, cov_names: Sequence[str], grades: np.ndarray | None) -> pd.DataFrame:
    """Baseline differences in the analytic sample: Hedges g (continuous) or Cox index (0/1).
    With ``grades`` (the grades pooled), g is the difference within grade, averaged, over the SD
    pooled within grade, the impact's yardstick (:func:`pleval.effect_sizes.baseline_difference`);
    ``difference`` and ``sd`` are what it divides."""
    t = ana[cols.treatment].to_numpy() == 1
    n_t, n_c = int(t.sum()), int((~t).sum())
    rows = []
    for role, names in (("pretest", cols.pretest), ("covariate", cov_names)):
        for name in names:
            s = ana[name]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                v = s.to_numpy(dtype=float)
                binary = bool(np.all((v == 0.0) | (v == 1.0)))
                items = [(name, v, binary)]
            else:
                items = [(f"{name}[{lev}]", (s == lev).to_numpy(dtype=float), True)
                         for lev in sorted(pd.unique(s.dropna()), key=str)]  # levels in sorted order, not the rows'
            for label, v, binary in items:
                mt, mc = v[t].mean(), v[~t].mean()
                if binary:
                    if 0 < mt < 1 and 0 < mc < 1:
                        g = float(effect_sizes.cox_index(mt, mc, n_t, n_c))
                    else:
                        g = math.nan
                    measure, sdt, sdc, sd, diff = "Cox index", math.nan, math.nan, math.nan, mt - mc
                else:
                    sdt, sdc = v[t].std(ddof=1), v[~t].std(ddof=1)
                    bd = effect_sizes.baseline_difference(v, t, strata=grades)
                    g, diff, sd = bd.g, bd.difference, bd.sd
                    measure = "Hedges g" if grades is None else "Hedges g (within grade)"
                rows.append(
                    {
                        "variable": label, "role": role, "measure": measure, "mean_treated": mt,
                        "mean_control": mc, "difference": diff, "sd_treated": sdt, "sd_control": sdc, "sd": sd,
                        "n_treated": n_t,
                        "n_control": n_c, "effect_size": g, "adjusted_in_model": True,
                        "verdict": standards.baseline_equivalence(g, adjusted=True),
                    }
                )
    cols_out = ["variable", "role", "measure", "mean_treated", "mean_control", "difference", "sd_treated",
                "sd_control", "sd", "n_treated", "n_control", "effect_size", "adjusted_in_model", "verdict"]
    return pd.DataFrame(rows, columns=cols_out)


def _attrition(rand: pd.DataFrame, ana: pd.DataFrame, cols: Columns, design: str) -> tuple[standards.Attrition, ...]:
    t = cols.treatment
    out = [
        standards.attrition(
            int((rand[t] == 1).sum()), int((rand[t] == 0).sum()),
            int((ana[t] == 1).sum()), int((ana[t] == 0).sum()), level="students",
        )
    ]
    if design == "cluster":
        r = rand.groupby(cols.school, observed=True)[t].first()
        a = ana.groupby(cols.school, observed=True)[t].first()
        out.append(
            standards.attrition(int((r == 1).sum()), int((r == 0).sum()), int((a == 1).sum()), int((a == 0).sum()), level="schools")
        )
    return tuple(out)


def _subgroup_levels(ana: pd.DataFrame, cols: Columns, name: str) -> tuple[np.ndarray, list]:
    if name in _TERCILE_ALIASES:
        if not cols.pretest:
            raise DataError(f"subgroup {name!r} needs a pretest column")
        p = ana[cols.main_pretest].to_numpy(dtype=float)
        cuts = np.quantile(p, [1 / 3, 2 / 3])
        return np.searchsorted(cuts, p, side="right"), ["low third", "middle third", "high third"]
    if name not in ana.columns:
        raise DataError(f"subgroup column {name!r} is not in the data (or use {TERCILE!r})")
    return level_codes(ana[name], name)


def _subgroups(ana, cols, mod: _Model, names: Sequence[str], fit_kw: dict, scale: Callable, adjust: str, level: float,
               notes: list, test: str, absorb: np.ndarray | None):
    """Subgroup effects and tests (:func:`pleval.subgroups.subgroup_effects`), p adjusted across
    rows; the blocks absorbed as in the ITT fit when ``absorb`` is given."""
    rows, tests = [], []
    X, xnames = (mod.X, mod.names) if absorb is None else (mod.Xa, mod.names_a)
    for name in names:
        codes, labels = _subgroup_levels(ana, cols, name)
        r, t = subgroup_effects(mod.y, X, xnames, mod.z, codes, labels, name=name, scale=scale, absorb=absorb,
                                clusters=fit_kw["clusters"], vcov=fit_kw["vcov"], cluster_df=fit_kw["cluster_df"], level=level, notes=notes, test=test,
                                df_working=fit_kw["df_working"])
        rows += r
        if t is not None:
            tests.append(t)
    if not rows:
        return None, None
    sub = pd.DataFrame(rows)
    sub["pvalue_adjusted"] = adjust_pvalues(sub["pvalue"].to_numpy(), adjust)
    inter = pd.DataFrame(tests)
    inter.insert(0, "subgroup", inter.pop("subgroup"))
    inter["pvalue_adjusted"] = adjust_pvalues(inter["pvalue"].to_numpy(), adjust)
    return sub, inter


# ----------------------------------------------------------------------------- API


def analyze_rct(
    df: pd.DataFrame,
    columns: Columns,
    design: Literal["individual", "blocked", "cluster"] = "cluster",
    *,
    covariates: Sequence[str] | None = None,
    vcov: str | None = None,
    cluster_df: Literal["G-1", "G-p"] = "G-1",
    df_working: Literal["independent", "random_effects"] = "independent",
    method: Literal["ols", "cluster_means", "mixedlm", "random_blocks"] = "ols",
    subject: object = None,
    sd: str | float = "pooled",
    level: float = 0.95,
    baseline_percentile: float = 50.0,
    subgroups: Sequence[str] = (),
    adjust: Literal["bh", "holm", "bonferroni"] = "bh",
    interaction_test: Literal["HTZ", "F"] = "HTZ",
    lin: bool = False,
    icc: float | None = 0.20,
    gt_df: Literal["N-2", "h"] = "N-2",
    compliance: bool = True,
    bootstrap: int = 0,
    bootstrap_weights: Literal["rademacher", "webb"] = "rademacher",
    permutations: int = 0,
    seed: int | None = 0,
    progress: Callable[[int, int], None] | None = None,
) -> RCTResult:
    """Analyse a randomized trial (formulas and sources in the module docstring).

    Parameters
    ----------
    df, columns : the data and the role of each column (:class:`pleval.data.Columns`);
        ``school`` is required for cluster designs, ``block`` for blocked designs and used as
        fixed effects in cluster designs when given; ``takeup`` enables the CACE.
    design : ``"individual"``, ``"blocked"`` (students randomized within blocks) or
        ``"cluster"`` (schools randomized, within blocks if ``block`` is set).
    covariates : model covariates besides the pretest(s); default ``columns.covariates``.
    vcov : ``"CR2"`` (default for cluster designs), ``"CR1"``, ``"CR0"``, ``"HC2"`` (default
        otherwise), ``"HC1"``, ``"HC0"`` or ``"classical"``; CR types cluster by ``school``.
    cluster_df : CR1/CR0 convention (:func:`pleval.inference.ols`): ``"G-1"`` (default, Stata:
        G/(G−1)·(n−1)/(n−k), G − 1 df) or ``"G-p"`` (metafor's ``robust()``: G/(G−p), G − p df).
        CR2 is unaffected (Satterthwaite df); the trial's OLS is unweighted, so the weighted-CR2
        form does not arise.
    df_working : the working model of CR2's Satterthwaite df for the OLS ITT, Lin's ITT and the
        subgroup contrasts: ``"independent"`` (default; clubSandwich's) or ``"random_effects"``
        (a school random effect, as the matched designs take; :func:`pleval.inference.ols`, with
        the block effects absorbed as for the default).
    method : the primary ITT: ``"ols"``, ``"cluster_means"``, ``"mixedlm"`` or ``"random_blocks"`` (the
        blocks' effects averaged, K − 1 df; ``lin``, ``bootstrap``, the CACE and the subgroups
        stay with the OLS ITT, as with the other methods).
    subject : the subject to analyse when the data are long by subject.
    sd : ``"pooled"`` (WWC), ``"comparison"`` or a norm SD for the effect size.
    subgroups : columns (or ``"pretest_tercile"``) for subgroup ITTs and interaction tests.
    adjust : multiplicity adjustment for subgroup p-values.
    interaction_test : reference of the equality test across more than two subgroup levels:
        ``"HTZ"`` (Pustejovsky & Tipton 2018; CR2 and HC2) or ``"F"`` (Wald F, G − 1, G − k − A under ``"G-p"``, or n − k − A df).
    lin : Lin's (2013) fully interacted covariate adjustment for the OLS ITT (module docstring).
    icc : intraclass correlation for the Hedges (2007) cluster-adjusted effect size g_T reported
        for cluster designs (WWC default 0.20); ``None`` omits it.
    gt_df : df of g_T's small-sample factor ω = 1 − 3/(4·df − 1): ``"N-2"`` (default; the
        students' ω = 1 − 3/(4N − 9)) or ``"h"`` (Hedges' cluster-adjusted df, module docstring).
    compliance : estimate the CACE when ``columns.takeup`` is set.
    bootstrap : >0 runs a restricted wild cluster bootstrap test of the OLS ITT (schools as
        clusters) with that many draws (all sign patterns when Rademacher and 2^G ≤ B), and its
        inverted CI (:mod:`pleval.inference.wild`); ``bootstrap_weights`` ``"rademacher"`` or
        ``"webb"`` (better with fewer than about 12 schools); ``seed`` is used and recorded.
    permutations : >0 runs a randomization test with that many re-randomizations (exact
        enumeration when the design allows few assignments); ``seed`` and ``progress`` pass through.
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}; got {method!r}")
    if interaction_test not in ("HTZ", "F"):
        raise DataError(f"interaction_test must be 'HTZ' or 'F'; got {interaction_test!r}")
    if icc is not None and not (0.0 <= float(icc) < 1.0):
        raise DataError(f"icc must lie in [0, 1) (or be None); got {icc!r}")
    if gt_df not in ("N-2", "h"):
        raise DataError(f"gt_df must be 'N-2' or 'h'; got {gt_df!r}")
    check_conventions(cluster_df, "transformed")
    if df_working not in DF_WORKING:
        raise DataError(f"df_working must be one of {DF_WORKING}; got {df_working!r}")
    cols, rand, ana, cov_names, dropped, notes = _validate(df, columns, design, covariates, subject)
    clustered_design = design == "cluster"
    vcov = vcov or default_vcov(design, cols.school)
    if vcov not in VCOVS:
        raise DataError(f"vcov must be one of {VCOVS}; got {vcov!r}")
    if vcov.startswith("CR") and not cols.school:
        raise DataError(f"vcov={vcov!r} clusters by school: name the school column (columns.school)")
    if method in ("cluster_means", "mixedlm") and not cols.school:
        raise DataError(f"method={method!r} needs the school column (columns.school)")
    if not vcov.startswith("CR") and cols.school:
        why = _unclustered_schools(rand, cols, design, vcov)
        if why:
            warnings.warn(why, PlevalWarning, stacklevel=2)
            notes.append(why)

    mod = _model(ana, cols, cov_names, notes)
    re_df = vcov == "CR2" and df_working == "random_effects"
    fit_kw = {"vcov": vcov, "clusters": mod.school if vcov.startswith("CR") else None, "cluster_df": cluster_df,
              "df_working": "random_effects" if re_df else "independent"}
    # block indicators absorbed where the covariance allows it (HC types, classical)
    absorb = mod.block_codes if mod.absorbs(vcov) else None
    itt_fit = _itt_fitter(mod, vcov, fit_kw)

    # Lin's block effects additive (a block with one school in an arm): in the bootstrap's model, and the ITT's under CR
    lin_additive = itt_additive = False
    if lin:
        lin_rows = _lin_rows(mod, notes)
        sel = slice(None) if lin_rows is None else lin_rows
        one_school = _lin_one_school_blocks(mod, lin_rows) if vcov.startswith("CR") or bootstrap else []
        if one_school:
            lin_additive, itt_additive = True, vcov.startswith("CR")
            shown = ", ".join(map(str, one_school[:5])) + (", …" if len(one_school) > 5 else "")
            which = "the ITT's" + (" and the wild bootstrap's" if bootstrap else "") if itt_additive else "the wild bootstrap's"
            notes.append(
                f"Lin adjustment: {len(one_school):,} block(s) of {cols.block!r} ({shown}) have a single school in an "
                "arm, whose mean the block × assignment indicators would fit exactly, leaving its between-school "
                "variation out of the school-clustered SE (it collapsed); so in " + which + " model the block "
                "effects are additive and only the pretest(s) and covariates are centred and interacted with "
                "assignment: it weights blocks as the additive ITT does, by n_b·p_b(1 − p_b)")
        fit = _lin_fit(mod, lin_rows, vcov, fit_kw, itt_additive)
    else:
        fit = itt_fit(mod.y)

    t = mod.z == 1
    n_t, n_c = int(t.sum()), int((~t).sum())
    n_cl = mod.n_schools if cols.school and (clustered_design or vcov.startswith("CR")) else None
    # pooled within grade when grades are pooled (WWC per-grade effect sizes; docs/architecture.md, Scales and the SD)
    grades = ana[cols.grade].to_numpy() if cols.grade and ana[cols.grade].nunique() > 1 else None
    sd_value, sd_kind = effect_sizes.outcome_sd(mod.y, t, kind=sd, strata=grades)
    omega = float(effect_sizes.hedges_omega(n_t + n_c)) if sd == "pooled" else 1.0

    # the rows and schools of the blocks with both arms: those the Neyman estimate and the school means use
    both = mod.both_arm_rows[0]
    n_both, cl_both = ((n_t, n_c), n_cl) if both is None else (
        (int(mod.z[both].sum()), int((mod.z[both] == 0).sum())),
        None if n_cl is None else int(np.count_nonzero(np.bincount(mod.school[both], minlength=mod.n_schools))))

    def effect(est, se, df, label, how, n_clusters=n_cl, n=(n_t, n_c)):
        e = Estimate.from_t(est, se, df, level=level, n_treated=n[0], n_control=n[1], n_clusters=n_clusters,
                            method=how, label=label)
        return Effect.from_raw(e, sd_value, sd_kind, omega=omega, baseline_percentile=baseline_percentile)

    def scale(e: Estimate) -> Effect:
        return Effect.from_raw(e, sd_value, sd_kind, omega=omega, baseline_percentile=baseline_percentile)

    # Lin's block effects with CR types: columns when interacted, absorbed as the additive model's when additive
    lin_columns = lin and vcov.startswith("CR") and not itt_additive
    model_desc = _model_text(cols, cov_names, absorb is not None and not lin_columns)
    if itt_additive:
        model_desc = ("Lin (2013), block FE additive: " + model_desc + ", the pretest(s) and covariates centred and "
                      "interacted with treatment (a block has one school in an arm: notes)")
    elif lin:
        model_desc = "Lin (2013): " + model_desc + ", centred and interacted with treatment"
    vc_desc = vcov + ((" (Satterthwaite df" + (" with a school random effect" if re_df else "") + ")") if vcov == "CR2"
                      else " (Bell–McCaffrey df)" if vcov == "HC2" else convention_label(vcov, cluster_df, "", False)) + (f", clustered by {cols.school}" if fit_kw["clusters"] is not None else "")
    effects: dict[str, Effect] = {}
    b, se, df_, _ = fit.coef("treatment")
    ols_effect = effect(b, se, df_, "ITT", f"OLS ITT: {model_desc}; {vc_desc}")

    extra: dict[str, Effect] = {}
    if clustered_design or method == "cluster_means":
        try:
            cfit, m = _cluster_means_fit(mod, cols, notes)
        except DesignError as exc:
            if method == "cluster_means":  # the primary analysis
                raise
            notes.append(f"{exc}: the school-means check is not reported (the primary estimate does not use it)")
        else:
            cb, cse, cdf, _ = cfit.coef("treatment")
            extra["School means"] = effect(cb, cse, cdf, "ITT (school means)",
                                           "OLS on school means (each school once), HC2, Bell–McCaffrey df", n_clusters=m,
                                           n=n_both)
    mixed_res = None
    if method == "mixedlm":
        mixed_res, mixed_se = _mixedlm_fit(mod, notes)
        j = mod.names.index("treatment")
        G = mod.n_schools
        mdf = float(G - max(mod.n_blocks, 1) - 1)
        extra["MixedLM"] = effect(float(mixed_res.fe_params.iloc[j]), float(mixed_se[j]), mdf,
                                  "ITT (MixedLM)", f"MixedLM, random school intercepts (REML); t({mdf:.0f}), between-within df")
        resid_icc = float(mixed_res.cov_re.iloc[0, 0] / (mixed_res.cov_re.iloc[0, 0] + mixed_res.scale))
        notes.append(f"MixedLM: residual intraclass correlation {resid_icc:.3f}")

    if method == "random_blocks":
        rb, rse, rdf, k_blocks = _random_blocks_fit(mod, cols, notes)
        extra["Random blocks"] = effect(
            rb, rse, rdf, "ITT (random blocks)",
            f"the average of the {k_blocks} blocks' effects (common covariate slopes), its SE from their spread; "
            f"t({rdf:.0f})", n=n_both, n_clusters=cl_both)

    if method == "ols":
        effects["ITT"] = ols_effect
    elif method == "random_blocks":
        effects["ITT (random blocks)"] = extra.pop("Random blocks")
        effects["ITT (OLS, students)"] = ols_effect
    elif method == "cluster_means":
        effects["ITT (school means)"] = extra.pop("School means")
        effects["ITT (OLS, students)"] = ols_effect
    else:
        effects["ITT (MixedLM)"] = extra.pop("MixedLM")
        effects["ITT (OLS, students)"] = ols_effect

    unit = mod.school if clustered_design else np.arange(len(mod.y))
    ney_notes: list[str] = []
    nb_, nse, ndf = _neyman(mod.y, mod.z, unit, mod.block_codes, ney_notes)
    notes.extend(ney_notes)
    effects["Neyman difference in means"] = effect(
        nb_, nse, ndf, "ITT (Neyman)",
        "design-based difference in means" + (" of school totals (Hájek)" if clustered_design else "")
        + (", block-weighted" if cols.block else "") + "; Welch df", n=n_both, n_clusters=cl_both,
    )
    effects.update(extra)

    complier = None
    d = ana[cols.takeup].to_numpy(dtype=float) if compliance and cols.takeup else None
    cace_fit, cace_y, cace_n, itt_y = itt_fit, mod.y, (n_t, n_c), None if lin else b
    cace_cl = n_cl  # the schools of the CACE's rows
    if d is not None and np.isnan(d).any():  # the CACE of the rows whose take-up is known (the ITT of all)
        seen = ~np.isnan(d)
        n_seen_t, n_seen = int(mod.z[seen].sum()), int(seen.sum())
        why = (f"take-up ({cols.takeup!r}) is missing for {int((~seen).sum()):,} analysed row(s) "
               f"({int((~seen & t).sum()):,} treated, {int((~seen & ~t).sum()):,} control)")
        d = d[seen]
        try:
            if min(n_seen_t, n_seen - n_seen_t) < 2:
                raise DesignError(f"{min(n_seen_t, n_seen - n_seen_t)} {'treated' if n_seen_t < 2 else 'control'} "
                                  "row(s) with take-up known")
            if clustered_design:
                _schools_per_arm(ana[seen], cols, "take-up-known")
            sub = _model(ana[seen], cols, cov_names, [])
            cace_fit, cace_y, cace_n, itt_y = _itt_fitter(sub, vcov, fit_kw), sub.y, (n_seen_t, n_seen - n_seen_t), None
            cace_cl = None if n_cl is None else sub.n_schools
            notes.append(f"{why}: the CACE is that of the {n_seen:,} rows with take-up known (the ITT's model on them), "
                         "the ITT that of every analysed row; fill take-up in (0 for a student who could not take the "
                         "program up) for the CACE of all")
        except (DataError, DesignError) as exc:
            notes.append(f"no CACE: {why}; {exc}; fill take-up in (0 for a student who could not take the program up)")
            d = None
    if d is not None and not np.ptp(d) > 0:  # no one, or everyone, took the program up: no first stage
        why = (f"no CACE: take-up ({cols.takeup!r}) is {d[0]:g} for every analysed student, so assignment does not "
               "move it (the complier effect is not identified)")
        notes.append(why)
        d = None
    if d is not None:
        cs_fit = cace_fit(d)
        cb, cse, cdf, _ = cs_fit.coef("treatment")
        complier = Estimate.from_t(cb, cse, cdf, level=level, n_treated=cace_n[0], n_control=cace_n[1], n_clusters=cace_cl,
                                   method=f"ITT on take-up ({vc_desc})", label="complier share")
        if cb < 0 and abs(cb) >= 2 * cse:  # take-up higher among controls: the arms are likely swapped
            why = (f"complier share {cb:.3f} (SE {cse:.3f}) is negative: take-up is higher in the control arm than in "
                   f"the treated one; check which value of {cols.treatment!r} means treated (--treated-label)")
            warnings.warn(why, PlevalWarning, stacklevel=2)
            notes.append(why)
        elif abs(cb) < 2 * cse or abs(cb) < 0.1:
            warnings.warn(f"complier share {cb:.3f} (SE {cse:.3f}) is small: the CACE is weakly identified",
                          PlevalWarning, stacklevel=2)
            notes.append(f"weak first stage: complier share {cb:.3f} (SE {cse:.3f})")
        effects["CACE (IV)"] = effect(
            *_cace(cace_fit, cace_y, d, cb, itt_y), "CACE",
            f"2SLS, take-up instrumented by assignment (the ratio of the ITTs); {vc_desc}", n=cace_n,
            n_clusters=cace_cl,
        )

    sub = inter = None
    if subgroups:
        subgroups = [subgroups] if isinstance(subgroups, str) else list(subgroups)  # 'frl' is one column, not three
        analysed, left_out = single_valued_in_subject(ana, df, subgroups, subject)
        notes += left_out
        sub, inter = _subgroups(ana, cols, mod, analysed, fit_kw, scale, adjust, level, notes, interaction_test, absorb)

    boot = None
    if bootstrap:
        if fit_kw["clusters"] is None and not (cols.school and clustered_design):
            raise DataError("the wild cluster bootstrap needs schools as clusters: a cluster design, or a CR covariance "
                            "with the school column")
        if lin:
            Xb, names_b = _lin_dense(mod, lin_rows, lin_additive)
            boot = wild_cluster_bootstrap(mod.y[sel], Xb, mod.school[sel], "treatment", names=names_b,
                                          B=int(bootstrap), weights=bootstrap_weights, seed=seed, level=level)
        else:
            boot = wild_cluster_bootstrap(mod.y, mod.X, mod.school, "treatment", names=mod.names,
                                          B=int(bootstrap), weights=bootstrap_weights, seed=seed, level=level)

    ri = None
    if permutations:
        ri = randomization_test(
            mod.y, mod.z,
            clusters=mod.school if clustered_design else None,
            blocks=mod.block_codes,
            covariates=mod.covX.to_numpy(dtype=float) if mod.covX.shape[1] else None,
            n_permutations=permutations, seed=seed, progress=progress,
        )

    g_t = None
    if clustered_design and icc is not None:
        itt_raw = next(iter(effects.values())).raw
        nbar = (n_t + n_c) / mod.n_schools
        gamma = math.sqrt(1.0 - 2.0 * (nbar - 1.0) * float(icc) / (n_t + n_c - 2.0))
        label = f"g_T (Hedges 2007, ρ={float(icc):.2f})"
        omega_t, how = omega, ""
        if gt_df == "h" and omega != 1.0:
            _, h = effect_sizes.hedges2007_adjusted_t(0.0, n_t + n_c, mod.n_schools, float(icc))
            omega_t, how = 1.0 - 3.0 / (4.0 * float(h) - 1.0), f"; ω = 1 − 3/(4h − 1), h = {float(h):.1f}"
            label = f"g_T (Hedges 2007, ρ={float(icc):.2f}, ω(h))"
        g_t = Effect.from_raw(replace(itt_raw, label=label), sd_value / gamma,
                              f"{sd_kind} ÷ γ = {gamma:.4f} (n̄ = {nbar:.1f}, ρ = {float(icc):.2f}{how})",
                              omega=omega_t, baseline_percentile=baseline_percentile)
    n_cl_r = int(rand[cols.school].nunique()) if clustered_design else None
    options = {
        "design": design, "method": method, "outcome": cols.outcome, "subject": subject,
        "treatment": cols.treatment, "school": cols.school, "block": cols.block,
        "pretest": cols.pretest, "covariates": tuple(cov_names), "vcov": vc_desc, "cluster_df": cluster_df, "df_working": fit_kw["df_working"], "model": model_desc,
        "sd": sd if isinstance(sd, str) else float(sd), "level": level, "baseline_percentile": baseline_percentile,
        "adjust": adjust, "interaction_test": interaction_test, "lin": lin, "icc": icc, "gt_df": gt_df,
        "bootstrap": bootstrap, "bootstrap_weights": bootstrap_weights,
        "permutations": permutations, "seed": seed,
        "n_randomized": len(rand), "n_analytic": len(ana), "n_clusters_randomized": n_cl_r,
        "n_clusters_analytic": mod.n_schools if clustered_design else None,
        "n_blocks": mod.n_blocks or None,
    }
    return RCTResult(
        design=design,
        method=method,
        itt=next(iter(effects.values())),
        effects=MappingProxyType(effects),
        complier_share=complier,
        attrition=_attrition(rand, ana, cols, design),
        randomization=ri,
        fit=fit,
        options=MappingProxyType(options),
        notes=tuple(notes),
        _equivalence=_equivalence(ana, cols, cov_names, grades),
        _subgroups=sub,
        _interactions=inter,
        _dropped=dropped,
        cluster_effect_size=g_t,
        wild_bootstrap=boot,
    )


def subjects_with_both_arms(df: pd.DataFrame, columns: Columns) -> tuple[list, list[str]]:
    """The subjects of ``columns.subject`` whose usable rows with an outcome hold both arms (in
    sorted order, as :func:`pleval.estimate`'s, not the rows'), and why each other one cannot be analysed (:func:`pleval.check` warns
    of them; an error when none is left)."""
    # the randomized sample: a row missing a take-up, pretest or covariate was randomized all the same
    present, n1, n0, n_rows, _ = subject_arms(validate(df, randomized_columns(columns), require=("outcome", "treatment")))
    one = [i for i in range(len(present)) if not (n1[i] and n0[i])]
    if len(one) == len(present):
        raise DataError(f"column {columns.subject!r} (subject): no subject has both treated and comparison rows")
    return (sorted((s for i, s in enumerate(present) if i not in one), key=str),
            [one_arm_subject(columns.subject, present[i], n1[i], n0[i], n_rows[i]) + "; it is left out" for i in one])


def rct_by_subject(df: pd.DataFrame, columns: Columns, **kwargs) -> dict[object, RCTResult]:
    """:func:`analyze_rct` for each subject in ``columns.subject`` (one result per subject). A
    subject whose usable rows with an outcome hold one arm only is left out with a
    :class:`PlevalWarning` (no effect can be estimated for it), as :func:`pleval.estimate` does."""
    if not columns.subject:
        return {None: analyze_rct(df, columns, **kwargs)}
    if columns.subject not in df.columns:
        raise DataError(f"column {columns.subject!r} (subject) is not in the data")
    subjects, left_out = subjects_with_both_arms(df, columns)
    for why in left_out:
        warnings.warn(why, PlevalWarning, stacklevel=2)
    return {s: analyze_rct(df, columns, subject=s, **kwargs) for s in subjects}


__all__ = ["analyze_rct", "rct_by_subject", "RCTResult", "DESIGNS", "METHODS", "TERCILE"]
