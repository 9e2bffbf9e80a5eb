"""Sensitivity of a matched comparison to unobserved confounding, per subject (or any group).

:func:`sensitivity` takes a :class:`pleval.matching.MatchResult` and, for each group, puts
four answers beside the regression-adjusted matched estimate (:mod:`pleval.matching.effect`):

1. omitted-variable bounds on that very regression (:mod:`.ovb`; its CR2 SE enters as
   documented there), benchmarked on the observed pretests and covariates;
2. E-values of its effect size and CI (:mod:`.evalue`);
3. Rosenbaum bounds on the matched sets (:mod:`.rosenbaum`), on the outcome adjusted for the
   covariates: residuals of the weighted regression of the outcome on the same covariates
   without the treatment (Rosenbaum 2002, "Covariance adjustment in randomized experiments
   and observational studies", *Statistical Science* 17:286–327) — not available for ATT
   weighting, which forms no matched sets;
4. optionally a placebo (negative-control) outcome: a score measured before the program
   (e.g. the year before the pretest), analysed with the same matched sets, weights and
   model. Its "effect" should be zero; a clear non-zero one points to a difference between
   the groups that the adjustment missed. Rows without the placebo score are left out and
   counted (a set whose PL row lacks it is left out whole; the remaining comparisons of a set
   are re-weighted to sum to one).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from .._results import Effect, ResultMixin
from .._text import fixed
from ..errors import DataError, DesignError, PlevalWarning
from .evalue import EValue, evalue_smd
from .ovb import Gram, OmittedVariableBounds, ovb_from_design
from .rosenbaum import HuberScores, RosenbaumBounds, _bounds, check_direction, check_gammas

FRAME_COLUMNS = ["kind", "label", "r2dz_x", "r2yz_dx", "gamma", "estimate", "se", "t", "ci_low", "ci_high",
                 "pvalue", "hl_low", "hl_high", "value"]
"""Columns of :meth:`SubjectSensitivity.to_frame` (``sensitivity.csv`` adds ``subject``)."""


@dataclass(frozen=True, repr=False)
class SubjectSensitivity(ResultMixin):
    """Sensitivity of one group's matched estimate: :attr:`ovb`, :attr:`evalue`,
    :attr:`rosenbaum` (``None`` for weighting), :attr:`placebo` (``None`` unless asked)."""

    label: str
    effect: Effect
    ovb: OmittedVariableBounds
    evalue: EValue
    rosenbaum: RosenbaumBounds | None
    placebo: Effect | None = None
    placebo_outcome: str | None = None
    benchmark: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def multiple_to_zero(self) -> float:
        """How many times as strong as the main benchmark (the pretest) a confounder would have
        to be (k_D = k_Y) to bring the estimate to zero."""
        return self.ovb.multiple_to_zero(self.benchmark) if self.benchmark else math.nan

    def sentence(self) -> str:
        """One plain sentence on how fragile the estimate is."""
        rv = self.ovb.rv_q
        if rv == 0:
            return "The estimate is zero: there is no effect for a hidden difference to explain away."
        k = self.multiple_to_zero
        bench = ""  # what brings the estimate to zero, in multiples of the benchmark
        if self.benchmark and math.isinf(k):
            bench = (f"no multiple of the {self.benchmark}'s strength does it before the confounder would explain all of "
                     "the outcome's remaining variance")
        elif self.benchmark and k <= 100:
            bench = f"a confounder {fixed(k, 1, 0)} times as strongly related to both as the {self.benchmark} (given the other covariates)"
        elif self.benchmark:
            bench = f"more than 100 times as strongly related to both as the {self.benchmark} (given the other covariates)"
        word = "raise" if self.effect.raw.estimate < 0 else "lower"
        q, alpha = self.ovb.q, self.ovb.alpha
        if q == 1:
            goal, within = f"{word} the effect to zero", "no longer statistically significant"
            tail, after = (f" — {bench} —" if bench else ""), ""
        else:  # RV_q moves the estimate by q of itself; RV_{q,α} brings (1 − q)·estimate into the CI
            goal = f"{word} the effect by {100 * q:g}% of its size"
            within = f"consistent with an effect of {100 * (1 - q):g}% of its size"
            tail, after = "", (f" To bring it to zero: {bench}." if bench else "")
        if self.ovb.rv_qa > 0:
            sig = f"{fixed(100 * self.ovb.rv_qa, 1, 0)}% of each would make it {within} (α = {alpha:g})"
        elif q == 1 and (p := self.effect.raw.pvalue) < alpha:  # |t| within the df a confounder takes (√(dof/(dof − 1)))
            sig = (f"a confounder explaining none of either would already make it {within} (α = {alpha:g}): its own "
                   f"p = {p:.3g} is so near α that the degree of freedom a confounder takes is enough")
        else:
            sig = f"the estimate is already {within} (α = {alpha:g})"
        return (
            f"An unmeasured difference between PL and comparison students would have to explain {fixed(100 * rv, 1, 0)}% of the "
            f"remaining variance in both the outcome and PL enrolment{tail} to {goal}; {sig}.{after}"
        )

    def to_frame(self) -> pd.DataFrame:
        """One long table: the unadjusted estimate, robustness values, benchmark bounds,
        E-values, Rosenbaum bounds and the placebo outcome (columns :data:`FRAME_COLUMNS`)."""
        o = self.ovb
        rows = [
            {"kind": "estimate", "label": "regression-adjusted ATT (raw points)", "estimate": o.estimate, "se": o.se,
             "t": o.t, "ci_low": self.effect.raw.ci_low, "ci_high": self.effect.raw.ci_high,
             "pvalue": self.effect.raw.pvalue, "value": o.r2yd_x},
            {"kind": "robustness value", "label": f"RV q={o.q:g}", "value": o.rv_q},
            {"kind": "robustness value", "label": f"RV q={o.q:g} alpha={o.alpha:g}", "value": o.rv_qa},
        ]
        if self.benchmark:
            rows.append({"kind": "robustness value", "label": f"multiple of {self.benchmark} to zero", "value": self.multiple_to_zero})
        for b in o.benchmarks.itertuples():
            rows.append({"kind": "benchmark", "label": b.benchmark, "r2dz_x": b.r2dxj_x, "r2yz_dx": b.r2yxj_dx})
        for b in o.bounds.itertuples():
            rows.append({"kind": "bound", "label": b.bound, "r2dz_x": b.r2dz_x, "r2yz_dx": b.r2yz_dx, "estimate": b.estimate,
                         "se": b.se, "t": b.t, "ci_low": b.ci_low, "ci_high": b.ci_high})
        e = self.evalue
        rows.append({"kind": "e-value", "label": "effect size", "estimate": e.effect_size, "ci_low": e.ci_low,
                     "ci_high": e.ci_high, "value": e.evalue})
        rows.append({"kind": "e-value", "label": "CI limit closest to the null", "value": e.evalue_ci})
        if self.rosenbaum is not None:
            r = self.rosenbaum
            rows.append({"kind": "rosenbaum", "label": f"gamma at alpha={r.alpha:g}, {r.sides} ({r.test})",
                         "gamma": r.gamma_alpha, "value": r.gamma_alpha})
            for g, p in zip(r.table.itertuples(), r.pvalue_bound.tolist()):
                rows.append({"kind": "rosenbaum", "label": f"gamma={g.gamma:g}, {r.sides} p bound", "gamma": g.gamma, "pvalue": p,
                             "hl_low": getattr(g, "hl_low", math.nan), "hl_high": getattr(g, "hl_high", math.nan),
                             "ci_low": getattr(g, "ci_low", math.nan), "ci_high": getattr(g, "ci_high", math.nan)})
        if self.placebo is not None:
            p = self.placebo.raw
            rows.append({"kind": "placebo outcome", "label": f"{self.placebo_outcome} (raw points)", "estimate": p.estimate,
                         "se": p.se, "t": p.estimate / p.se, "ci_low": p.ci_low, "ci_high": p.ci_high, "pvalue": p.pvalue})
            es = self.placebo.effect_size
            rows.append({"kind": "placebo outcome", "label": f"{self.placebo_outcome} (effect size)", "estimate": es.estimate,
                         "se": es.se, "ci_low": es.ci_low, "ci_high": es.ci_high, "pvalue": es.pvalue})
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def summary(self) -> str:
        parts = [f"Sensitivity to unobserved confounding{' — ' + self.label if self.label else ''}", self.sentence(),
                 self.ovb.summary(), self.evalue.summary()]
        if self.rosenbaum is not None:
            parts.append(self.rosenbaum.summary())
        if self.placebo is not None:
            p = self.placebo.effect_size
            parts.append(f"Placebo outcome {self.placebo_outcome}: effect size {p.estimate:.3f} "
                         f"({p.level:.0%} CI {p.ci_low:.3f} to {p.ci_high:.3f}; p = {p.pvalue:.3g}) — should be zero")
        parts += [f"Note: {n}" for n in self.notes]
        return "\n".join(parts)


@dataclass(frozen=True, repr=False)
class Sensitivity(ResultMixin):
    """:class:`SubjectSensitivity` by group (``results`` maps a group key to it)."""

    by: tuple[str, ...]
    results: dict = field(default_factory=dict)

    def __getitem__(self, key) -> SubjectSensitivity:
        return self.results[key if isinstance(key, tuple) else (key,)]

    def __iter__(self):
        return iter(self.results.items())

    def __len__(self):
        return len(self.results)

    def to_frame(self) -> pd.DataFrame:
        parts = []
        for key, res in self.results.items():
            f = res.to_frame()
            for i, (b, v) in enumerate(zip(self.by, key)):
                f.insert(i, b, v)
            parts.append(f)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(self.by) + FRAME_COLUMNS)

    def summary(self) -> str:
        return "\n\n".join(res.summary() for res in self.results.values())


def default_benchmarks(columns) -> list[str]:
    """Every pretest and covariate, the main pretest first."""
    return list(dict.fromkeys(list(columns.pretest) + list(columns.covariates)))


def sensitivity(
    m,
    by=None,
    *,
    benchmarks=None,
    kd=(1, 2, 3),
    q: float = 1.0,
    alpha: float = 0.05,
    gammas=(1.0, 1.5, 2.0, 3.0),
    hl_gammas=(),
    rosenbaum_statistic: str = "rank",
    rosenbaum_direction: str | None = None,
    placebo_outcome: str | None = None,
    sd="pooled",
    level: float = 0.95,
    baseline_percentile: float = 50.0,
    effects=None,
    fits=None,
    vcov: str | None = None,
    cluster_df: str = "G-1",
    cr2: str = "transformed",
    df_working: str = "random_effects",
) -> Sensitivity:
    """Sensitivity of the matched estimate(s) of ``m`` (a :class:`~pleval.matching.MatchResult`)
    to unobserved confounding, one result per group of ``by`` (e.g. ``"subject"``).

    Parameters
    ----------
    benchmarks : covariates to benchmark on (default: every pretest and covariate; a
        categorical covariate is one group of indicators). The first is the main benchmark of
        the plain sentence.
    kd : multiples of each benchmark's strength (k_D = k_Y).
    q, alpha : the robustness values RV_q and RV_{q,α}; α is also Rosenbaum's level.
    gammas : Γ values for the Rosenbaum table of p-value bounds.
    hl_gammas : Γ values at which to add the Hodges–Lehmann range and sensitivity interval.
    rosenbaum_statistic : "rank" (signed ranks for pairs, aligned ranks for sets) or "huber"
        (Huber's M-statistic, trim 2.5; Rosenbaum 2007) — see :func:`.rosenbaum.rosenbaum_bounds`.
    rosenbaum_direction : None or "" (default): the direction of the Rosenbaum test is the sign of
        the estimate, chosen from the data, so the test is two-sided; "greater" or "less": a
        direction fixed in advance (a pre-registered one-sided hypothesis), tested one-sided at
        α. It names the sign of the effect on the outcome's scale ("less" for a fall, whether or
        not lower is better).
    placebo_outcome : a pre-program score to analyse as a negative-control outcome.
    sd, level, baseline_percentile : as :meth:`MatchResult.estimate`.
    vcov, cluster_df, cr2, df_working : the SE of the matched regressions, as
        :meth:`MatchResult.estimate` (default: CR2 by school); the placebo outcome is fitted
        with the same, so that it is read on the same scale of uncertainty as the estimate.
    effects : the result of ``m.estimate(by, ...)`` if already computed (otherwise the matched
        regressions are fitted here; each subject's effect is then ``result.effect``). A group
        without an effect (``EffectTable.left_out``) has no sensitivity analysis either.
    fits : ``m.group_fits(by, ...)`` if already computed (its effects and designs are reused),
        or any iterable of its tuples (e.g. ``group_fits(..., lazy=True)``: each group is analysed
        as it is reached).
    """
    by_t = () if by is None else ((by,) if isinstance(by, str) else tuple(by))
    analyse = group_sensitivity(m, benchmarks=benchmarks, kd=kd, q=q, alpha=alpha, gammas=gammas, hl_gammas=hl_gammas,
                                rosenbaum_statistic=rosenbaum_statistic, rosenbaum_direction=rosenbaum_direction,
                                placebo_outcome=placebo_outcome, sd=sd,
                                level=level, by=by_t, vcov=vcov, cluster_df=cluster_df, cr2=cr2, df_working=df_working)
    if fits is None and effects is None:  # fit the matched regressions here, one group's design at a time
        fits = m.group_fits(by, sd=sd, level=level, baseline_percentile=baseline_percentile, lazy=True,
                            failed="keep" if by_t else "raise", vcov=vcov, cluster_df=cluster_df, cr2=cr2,
                            df_working=df_working)
    if fits is None:
        left_out = getattr(effects, "left_out", {})
        fits = ((key, part, des, effects if not by_t else effects[key], by_t)
                for key, part, des, _ in m.group_designs(by, lazy=True) if key not in left_out)
    results = {}
    for fit in fits:
        key, part, des, eff = fit[:4]
        if isinstance(eff, DesignError):  # a group without an effect (m.estimate(by=) leaves it out, warned)
            continue
        results[key] = analyse(key, part, des, eff)
        del fit, part, des  # (before the next group's design is formed)
    if not results:
        raise DesignError("no group has an effect to analyse for sensitivity")
    return Sensitivity(by_t, results)


def group_sensitivity(m, *, benchmarks=None, kd=(1, 2, 3), q: float = 1.0, alpha: float = 0.05,
                      gammas=(1.0, 1.5, 2.0, 3.0), hl_gammas=(), rosenbaum_statistic: str = "rank",
                      rosenbaum_direction: str | None = None,
                      placebo_outcome: str | None = None, sd="pooled", level: float = 0.95, by=(),
                      vcov: str | None = None, cluster_df: str = "G-1", cr2: str = "transformed",
                      df_working: str = "random_effects"):
    """:func:`sensitivity`'s analysis of one group, its options checked once: returns
    ``analyse(key, part, design, effect) -> SubjectSensitivity`` for the ``(key, part, design,
    effect)`` of each group of ``m.group_fits(by)`` (``by``: the group columns, a tuple), so
    that a caller fitting the groups one at a time can analyse each before the next is formed
    and drop its design. ``part`` is read only for a placebo outcome (else it may be None).
    ``analyse(..., later=True)`` returns ``finish() -> SubjectSensitivity`` instead, having done
    all that reads the design: ``finish`` computes the Rosenbaum bounds, from the residuals of
    the set members alone, so the caller can drop the design before them."""
    from ..inference.robust import check_conventions, default_vcov
    from ..matching.effect import mergeable, regression_effect

    c = m.columns
    vcov = vcov or default_vcov("matched", c.school)
    check_conventions(cluster_df, cr2)
    se_options = dict(vcov=vcov, cluster_df=cluster_df, cr2=cr2, df_working=df_working)
    if not 0 < alpha < 1:
        raise DataError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    for name, values in (("gammas", gammas), ("hl_gammas", hl_gammas)):  # before any fit
        check_gammas(values, name)
    fixed = check_direction(rosenbaum_direction, "rosenbaum_direction")
    bench = default_benchmarks(c) if benchmarks is None else ([benchmarks] if isinstance(benchmarks, str) else list(benchmarks))
    unknown = [b for b in bench if b not in default_benchmarks(c)]
    if unknown:
        raise DataError(f"benchmark(s) {unknown} are not pretests or covariates of the analysis (they must be in the model)")
    if placebo_outcome is not None:
        _check_placebo(m, placebo_outcome)
    kw = dict(outcome=c.outcome, treatment=c.treatment, pretests=c.pretest, covariates=c.covariates,
              strata=m.strata, school=c.school)

    def analyse(key, part, des, eff, later: bool = False):
        label = ", ".join(f"{b} = {v}" for b, v in zip(by, key))
        g = design_gram(des)
        groups_cols = {b: [n for n, s in zip(des.names, des.source) if s == b] for b in bench}
        absent = [b for b, cols in groups_cols.items() if not cols]
        groups_cols = {b: cols for b, cols in groups_cols.items() if cols}
        notes = [f"benchmark {b!r} does not vary in this group and is left out" for b in absent]
        ovb = ovb_from_design(des.y, des.X, des.names, c.treatment, weights=des.weights, benchmarks=groups_cols,
                              se=eff.raw.se, df=eff.raw.df, gram=g, kd=kd, q=q, alpha=alpha, label=label,
                              n_obs=des.n_obs)
        es = eff.effect_size
        ev = evalue_smd(es.estimate, es.ci_low, es.ci_high, label=label)
        bounds = None
        pos, sets, _ = m._group_pairs(des)
        if (sets < 0).all():  # weighting, subclassification, CEM, entropy balancing
            notes.append(f"no Rosenbaum bounds: {m.method} forms no one-PL-row matched sets")
        else:
            d = des.names.index(c.treatment)
            resid = g.residuals(des.y, des.X, [j for j in range(len(des.names)) if j != d])
            del g
            # (reads no part of the design; takes its arrays out of the list: freed once read). The direction is
            # the one fixed in advance, tested one-sided, or the estimate's, chosen from the data: tested two-sided
            direction = fixed or ("less" if eff.raw.estimate < 0 else "greater")
            bounds = partial(_bounds, [resid[pos], sets, (des.t != 0)[pos]], gammas=gammas, alpha=alpha,
                             direction=direction, two_sided=fixed is None, hl_gammas=hl_gammas,
                             statistic=rosenbaum_statistic, trim=HuberScores.trim, inner=HuberScores.inner, label=label)
            del resid
        del pos, sets
        plc = None
        if placebo_outcome is not None:
            try:  # the placebo is a check beside the results: one it cannot estimate is a note, not the end of the run
                psample, pdes, note = _placebo_sample(m, part, des, placebo_outcome, kw, merged=mergeable(vcov, cr2))
                if note:
                    notes.append(note)
                plc = regression_effect(psample, **{**kw, "outcome": placebo_outcome}, sd=sd, level=level,
                                        **se_options, design=pdes,
                                        baseline_percentile=eff.baseline_percentile,
                                        method=f"placebo outcome {placebo_outcome}",
                                        label=f"{placebo_outcome} ({label})" if label else placebo_outcome)
            except (DataError, DesignError) as exc:
                where = f" ({label})" if label else ""
                notes.append(f"placebo outcome {placebo_outcome!r}{where} not estimated: {exc}")
                warnings.warn(notes[-1], PlevalWarning, stacklevel=3)
        main = bench[0] if bench and bench[0] in groups_cols else None

        def finish() -> SubjectSensitivity:
            ros = None if bounds is None else bounds()
            return SubjectSensitivity(label, eff, ovb, ev, ros, plc, placebo_outcome, main, tuple(notes))

        return finish if later else finish()

    return analyse


def design_gram(des) -> Gram:
    """The :class:`~.ovb.Gram` of an :class:`~pleval.matching.effect.EffectDesign`: from the
    cross-products its fit formed when the design holds them (``des.gram``; :meth:`Gram.from_fit`,
    no pass over X), else from the rows."""
    if des.gram is not None:
        return Gram.from_fit(des.y, des.weights, *des.gram[:4])
    return Gram(des.y, des.X, des.weights, constant=[des.names.index("const")])


def _check_placebo(m, col: str) -> None:
    c = m.columns
    if col not in m.data.columns:
        raise DataError(f"placebo outcome column {col!r} is not in the data")
    if col == c.outcome:
        raise DataError(f"the placebo outcome {col!r} is the outcome itself")
    used = set(c.pretest) | set(c.covariates) | set(m.variables) | set(m.options.get("keys", ()))
    if col in used:
        raise DesignError(
            f"placebo outcome {col!r} is a pretest, covariate or matching variable: matched and adjusted on, its "
            "'effect' is zero by construction; name a prior score that the analysis does not use"
        )
    x = pd.to_numeric(m.data[col], errors="coerce")
    bad = x.isna() & m.data[col].notna()
    if bad.any():
        raise DataError(f"column {col!r} (placebo outcome): {int(bad.sum()):,} value(s) are not numbers")


def _placebo_sample(m, part: pd.DataFrame, des, col: str, kw: dict,
                    merged: bool = True) -> tuple[pd.DataFrame, object, str]:
    """The group's matched rows with the placebo score, and their design: sets whose PL row
    lacks it are left out, other missing rows too, and each set's remaining comparisons
    re-weighted to the set's comparison weight before (on the (set, member) pairs). ``merged``:
    the pairs summed per distinct row (for SEs unchanged by merging copies, :func:`mergeable`),
    else every pair a row of its own, as the estimate's fit takes them."""
    from ..matching.effect import effect_design

    y = pd.to_numeric(m.data[col].iloc[des.rows], errors="coerce").to_numpy(dtype=float)
    has = ~np.isnan(y)
    psample = part.assign(**{col: y})
    if has.all() and merged:
        return psample, effect_design(psample, **{**kw, "outcome": col}, rows=des.rows, weight2="_weight2",
                                      copies="_copies"), ""
    t = des.t.astype(bool)
    pos, sets, pair = m._group_pairs(des)
    w = m.weight[pair]
    keep = has[pos]
    if (sets >= 0).any():
        tt = t[pos]
        keep &= ~np.isin(sets, np.unique(sets[tt & ~has[pos]]))
        codes = pd.factorize(sets)[0]
        before = np.bincount(codes, weights=np.where(~tt, w, 0.0))  # (analysis weights: not 1 per set)
        total = np.bincount(codes, weights=np.where(keep & ~tt, w, 0.0))
        keep &= np.bincount(codes, weights=(keep & ~tt).astype(float))[codes] > 0
        w = np.where(tt, w, w * before[codes] / np.where(total[codes] > 0, total[codes], 1.0))
    w = np.where(keep, w, 0.0)
    note = "" if has.all() else (f"placebo outcome {col!r}: {int(len(pos) - keep.sum()):,} matched row(s) without it "
                                 f"left out ({int((t & ~has).sum()):,} PL row(s) missing it)")
    if not merged:
        i = np.flatnonzero(keep)
        long = psample.iloc[pos[i]].assign(_weight=w[i], _set=sets[i])
        return long, effect_design(long, **{**kw, "outcome": col}), note
    n = len(des.rows)
    copies = np.bincount(pos[keep], minlength=n)
    alive = copies > 0
    psample = psample.assign(_weight=np.bincount(pos, w, n), _weight2=np.bincount(pos, w**2, n), _copies=copies)[alive]
    pdes = effect_design(psample, **{**kw, "outcome": col}, rows=des.rows[alive], weight2="_weight2", copies="_copies")
    return psample, pdes, note


__all__ = ["sensitivity", "group_sensitivity", "Sensitivity", "SubjectSensitivity", "default_benchmarks", "FRAME_COLUMNS"]
