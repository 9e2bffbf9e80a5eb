"""Effects over time in a matched design: by year, by years of exposure, a trend test and
equity bands, from one stacked regression per subject.

Design. Each student is matched **once, at the first pre-program score** (the ``pretest``
role: the student's score before their own exposure; if it varies within a student the
first period's value is used and counted), with the student's baseline covariates, by any
:func:`pleval.match` method (default ``"weighting"``: ATT odds weights). The matching weight
``w_i`` of a student applies to all of the student's rows. Students whose condition changes
between periods are left out (counted): the comparison is of conditions held throughout.

A PL student's **years of exposure** in period ``t`` is the number of the student's observed
periods up to ``t`` in which the student's school had adopted (``t ≥`` the school's first
program year, ``cohort``; without a cohort column every period of a PL student counts). Rows
of PL students before adoption have exposure 0 and give placebo (pre-program) estimates.

Model (per subject; WLS with weights ``w_i``)::

    y_it = α_{t,grade} + β_t·(pre_i − mean) + Σ_t δ_t·D_i·1{period t} + e_it          (by year)
    y_it = α_{t,grade} + β_t·(pre_i − mean) + Σ_k λ_k·D_i·1{exposure k} + e_it        (by exposure)

with period × grade intercepts and a pretest slope per period, so each ``δ_t`` is the
regression-adjusted matched difference of period ``t`` alone. Students appear in several
periods and share schools, so the covariance is cluster-robust by the student's **first
school** (CR2 in clubSandwich's weighted form, Bell & McCaffrey 2002, Pustejovsky & Tipton
2018; intervals and p-values from the exact distribution of the t statistic under its working
model, Imhof 1961 — :mod:`pleval.inference.exact_t` — which holds with two
or three PL schools where Satterthwaite's t rejects too often).
Clustering by school nests students (each student's rows fall in one cluster), so it covers
the correlation of a student's repeated rows as well as that of schoolmates; two-way
clustering (student and school) would add nothing that school clustering misses when students
are nested, and would lose CR2's small-sample correction (Cameron, Gelbach & Miller 2011).

Trend test: the least-squares slope of the effects on the time values when they are numbers
(years: a slope per year, however the periods are spaced), on the period index when they are
terms (text), or on years of exposure; the contrast ``c'δ`` with ``c_t = (t − t̄)/Σ(t − t̄)²``
over the program periods, tested with its CR2 SE and the same reference (H₀: the effect is flat).

Effect sizes divide by the pooled within-group SD of the period's outcome, pooled within grade
(:func:`pleval.effect_sizes.outcome_sd`), with Hedges' ω; percentile points from the 50th
percentile (:mod:`pleval.percentiles`).

Equity bands: the same model with ``D_i × period × band`` terms, bands the thirds of the
baseline pretest within grade × subject as ``pretest_band`` has them (the grade of the series'
first period; within subject when there is no grade column); the gap is top minus bottom band,
per period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._results import Frame, ResultMixin, t_interval
from ..data import Columns, as_written, design_matrix, validate
from ..effect_sizes import outcome_sd
from ..errors import DataError, DesignError
from ..inference import ols
from ..percentiles import to_percentile_points
from ..subgroups import band_groups, pretest_bands
from .panel import PanelCheck, _time_order, check_panel, date_text

BAND_LABELS = ("bottom third", "middle third", "top third")


@dataclass(frozen=True, repr=False)
class OverTime(ResultMixin):
    """Effects over time of a matched design (see the module docstring).

    Tables (one row per subject and period / exposure / band; raw ``estimate`` with ``se``,
    ``df``, CI and ``pvalue``, then ``es``/``es_ci_*`` in SD units and ``pp``/``pp_ci_*`` in
    percentile points): ``by_year``, ``by_exposure``, ``equity``; ``trend`` has the slope per
    unit of the time column (per year; per period for terms) and per year of exposure.
    """

    by_year: pd.DataFrame = Frame()
    by_exposure: pd.DataFrame = Frame()
    trend: pd.DataFrame = Frame()
    equity: pd.DataFrame = Frame()
    panel: PanelCheck
    columns: Columns
    method: str
    level: float
    notes: tuple[str, ...]
    _frames: dict = field(repr=False, default_factory=dict)
    inference: str = "CR2 by first school"

    @property
    def subjects(self) -> list:
        return list(dict.fromkeys(self.by_year["subject"]))

    def to_frame(self) -> pd.DataFrame:
        return self.by_year.copy()

    def summary(self) -> str:
        lines = [f"Effects over time (matched at the first pre-program score, {self.method}; {self.inference})"]
        for s in self.subjects:
            lines.append(f"[{s}] by {self.columns.time}:")
            for r in self.by_year[self.by_year["subject"] == s].itertuples(index=False):
                tag = "" if r.program else "  (before adoption)"
                lines.append(f"  {r.time!s:>10}  {r.es:+.3f} SD ({self.level:.0%} CI {r.es_ci_low:+.3f} to "
                             f"{r.es_ci_high:+.3f}); {r.estimate:+.2f} points; n = {r.n_treated:,} PL, "
                             f"{r.n_comparison:,} comparison{tag}")
            lines.append(f"[{s}] by years of exposure:")
            for r in self.by_exposure[self.by_exposure["subject"] == s].itertuples(index=False):
                lines.append(f"  {int(r.exposure):>10}  {r.es:+.3f} SD ({r.es_ci_low:+.3f} to {r.es_ci_high:+.3f})")
            for r in self.trend[self.trend["subject"] == s].itertuples(index=False):
                lines.append(f"  trend per {r.per}: {r.es:+.4f} SD (p = {r.pvalue:.3g}, t({r.df:.1f}))")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def plot(self, subject: str | None = None, *, by: str = "year"):
        """Effects over time with CIs (SD units), one panel per subject (or the one given)."""
        from .plots import effects_over_time_plot

        table = self.by_year if by == "year" else self.by_exposure
        key = "time" if by == "year" else "exposure"
        if subject is not None:
            table = table[table["subject"] == subject]
        return effects_over_time_plot(table, key=key, level=self.level,
                                      xlabel=self.columns.time if by == "year" else "years of exposure")


REFERENCES = ("exact", "satterthwaite")

EXACT_BELOW_DF = 100.0
"""The exact reference is computed where the contrast's Satterthwaite df (of the same CR2 form)
are at most this; above, the variance estimate is a sum of many comparable terms, Satterthwaite's
t is used, and either multiplier is within 1.3% of the normal's (t₁₀₀: 1.984). This keeps the
G × G work of the exact reference to the designs that need it (docs/monitor.md)."""


def _reference(fit, c: np.ndarray, level: float, exact: bool) -> tuple[float, float, float, float, float]:
    """``(estimate, se, df, multiplier, p-value)`` of contrast c: the exact distribution of its t
    statistic under the working model (:mod:`pleval.inference.exact_t`; ``df`` the t
    distribution's with the same multiplier) where Satterthwaite's df are at most
    :data:`EXACT_BELOW_DF`, else Satterthwaite's t."""
    est, se, df, p = fit.contrast(c)
    if exact and df <= EXACT_BELOW_DF:
        from ..inference.exact_t import df_with_critical

        ref = fit.exact_t(c)
        crit = ref.critical(level)
        return est, se, df_with_critical(crit, level), crit, ref.sf(abs(est / se)) if se > 0 else float("nan")
    return est, se, df, float(t_interval(est, se, df, level)[0]), p


def _rows(fit, names, keys: dict, sd: float, omega: float, level: float, exact: bool) -> pd.DataFrame:
    est, se, df, crit, p = np.array([_reference(fit, np.eye(fit.k)[fit.index(n)], level, exact)
                                     for n in names]).reshape(-1, 5).T
    k = omega / sd
    lo, hi = est - crit * se, est + crit * se
    es, es_lo, es_hi = est * k, lo * k, hi * k
    return pd.DataFrame({**keys, "estimate": est, "se": se, "df": df, "ci_low": lo, "ci_high": hi, "pvalue": p,
                         "sd": sd, "omega": omega, "es": es, "es_se": se * k, "es_ci_low": es_lo, "es_ci_high": es_hi,
                         "pp": to_percentile_points(es), "pp_ci_low": to_percentile_points(es_lo),
                         "pp_ci_high": to_percentile_points(es_hi)})


def _omega(n: int) -> float:
    return 1.0 - 3.0 / (4.0 * n - 9.0) if n > 3 else 1.0


FEW_PL_SCHOOLS = 4
"""Fewer PL schools than this (and more than one) get a note: the intervals rest on two or three
treated clusters (docs/monitor.md, *Two or three PL schools*)."""


def _clusters(d: pd.DataFrame, c: Columns) -> tuple[np.ndarray, str]:
    """The SE's clusters: each student's first school; when the PL (or comparison) rows all lie
    in one school, that school's students are the clusters on its side instead (a student's
    rows in one), and which side (:func:`pleval.matching.effect.one_school_arms_as_students`:
    as one cluster the school's residuals in each period are fitted by that period's effect or
    intercepts, so the SE would leave its students' noise out)."""
    from ..matching.effect import one_school_arms_as_students

    return one_school_arms_as_students(pd.factorize(d["_cluster"])[0], (d[c.treatment] == 1).to_numpy(),
                                       pd.factorize(d[c.student_id])[0])


def _fit(d: pd.DataFrame, terms: pd.DataFrame, c: Columns, covs: pd.DataFrame, inference: dict):
    """Stacked WLS: period × grade intercepts, a pretest slope per period, covariates, ``terms``;
    ``inference``: :func:`pleval.inference.ols`'s ``vcov``, ``clusters``, ``df_working``, ``cr2``."""
    cells = d["_t"].astype(str) + ("|" + d[c.grade].astype(str) if c.grade else "")
    fe = pd.get_dummies(cells, prefix="cell", dtype=float)
    periods = pd.get_dummies(d["_t"].astype(str), prefix="pre", dtype=float)
    pre = d["_pre"].to_numpy() - d["_pre"].mean()
    X = pd.concat([fe, periods.mul(pre, axis=0), covs, terms], axis=1)
    keep = X.std().gt(0) | X.columns.isin(terms.columns) | X.columns.str.startswith("cell_")
    X = X.loc[:, keep]
    return ols(d[c.outcome].to_numpy(float), X.to_numpy(float), weights=d["_w"].to_numpy(float),
               names=list(X.columns), **inference)


TREND_COLUMNS = ["subject", "per", "n_points", "estimate", "se", "df", "pvalue", "ci_low", "ci_high", "es", "es_se",
                 "es_ci_low", "es_ci_high"]
"""The columns of :attr:`OverTime.trend` (one row per subject and slope; none when no slope has
three points)."""


def _trend(fit, names: list[str], xs: np.ndarray, sd: float, omega: float, per: str, subject, level, exact: bool):
    if len(xs) < 2:  # two points: the slope is their difference, still a test of a flat effect
        return None
    c = np.zeros(fit.k)
    xc = xs - xs.mean()
    c[[fit.index(n) for n in names]] = xc / (xc @ xc)
    est, se, df, crit, p = _reference(fit, c, level, exact)
    k = omega / sd
    return {"subject": subject, "per": per, "n_points": len(xs), "estimate": est, "se": se, "df": df, "pvalue": p,
            "ci_low": est - crit * se, "ci_high": est + crit * se, "es": est * k, "es_se": se * k,
            "es_ci_low": (est - crit * se) * k, "es_ci_high": (est + crit * se) * k}


def _exposure_notes(d: pd.DataFrame, c: Columns, cohort: pd.Series | None, in_program: pd.Series) -> list[str]:
    """Notes where years of exposure, which count the observed periods, fall short of the years
    since adoption: numeric periods with a gap in the file (2021, 2023: 2022 absent), and PL
    schools that adopted before their first observed period."""
    notes = []
    t = d["_t"]
    if not pd.api.types.is_numeric_dtype(t):
        return notes
    times = np.sort(t.unique())
    steps = np.diff(times)
    if len(steps) and steps.min() > 0 and (steps > steps.min() + 1e-9).any():
        notes.append(f"the periods of {c.time!r} are not evenly spaced ({', '.join(_period(x) for x in times[:8])}): "
                     "years of exposure count the periods observed, so across a gap they fall short of the years "
                     "since adoption")
    if cohort is not None:
        first = t[in_program].groupby(d.loc[in_program, c.school]).min()
        start = cohort[in_program].groupby(d.loc[in_program, c.school]).first()
        early = first.index[(start.reindex(first.index) < first).to_numpy()]
        if len(early):
            notes.append(f"{len(early):,} PL school(s) ({', '.join(repr(as_written(x)) for x in early[:3])}) adopted "
                         "before their first period in the file: their years of exposure count the periods in the "
                         "file, fewer than the years since adoption")
    return notes


def _cohort_periods(s: pd.Series, name: str, t: pd.Series, time: str) -> pd.Series:
    """The cohort column's first program periods in the time column's kind, for comparison
    with its ordered values ``t`` (:func:`.panel._time_order`): numbers when the periods are
    numbers, else text (terms such as 2023-fall, compared as sorted text)."""
    if pd.api.types.is_numeric_dtype(t):
        if pd.api.types.is_datetime64_any_dtype(s):  # (to_numeric made them nanoseconds)
            raise DataError(f"column {name!r} (cohort) holds dates, but the time column {time!r} holds numbers (years): "
                            "give each school's first program period as a number of the same kind")
        g = pd.to_numeric(s, errors="coerce")
        bad = g.isna() & s.notna()
        if bad.any():
            raise DataError(f"column {name!r} (cohort): {int(bad.sum()):,} row(s) are not numeric periods, as the time "
                            f"column {time!r} is (such as {', '.join(map(repr, s[bad].astype(str).unique()[:3]))})")
        # 0 means never, as in group_time_effects and R's did (before 2026-12-04 a comparison school's 0
        # was "a first program period within the data"), unless 0 is one of the periods
        return g if (t == 0).any() else g.where(g != 0)
    if pd.api.types.is_datetime64_any_dtype(s):  # dates, as the time column's (.panel.date_text)
        s = date_text(s)
    known = s.notna()
    if known.any() and pd.api.types.is_numeric_dtype(s):
        raise DataError(f"column {name!r} (cohort) holds numbers such as {s[known].iloc[0]:g}, but the time column "
                        f"{time!r} holds terms (text such as {t.iloc[0]!r}): give each school's first program period "
                        "as a term of the same form")
    return s.astype(str).where(known)


def _period(v) -> str:
    """A period as written: 2022, not 2022.0 (a cohort column with empty cells is read as floats)."""
    v = as_written(v)
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _check_cohort(d: pd.DataFrame, g: pd.Series, name: str, c: Columns) -> None:
    """A :class:`DataError` naming the schools when the cohort column is not one first program
    period per school, or when a comparison school (treatment 0) has one within the data's
    periods: the effects over time would take it as a comparison school and the
    staggered-adoption study (which reads the cohort) as an adopting one."""
    known = g.notna()
    per_school = g[known].groupby(d.loc[known, c.school], sort=True, observed=True)
    varies = per_school.nunique() > 1
    if varies.any():
        shown = "; ".join(f"{as_written(k)!r}: {', '.join(map(_period, sorted(per_school.get_group(k).unique())))}"
                          for k in varies[varies].index[:3])
        raise DataError(f"column {name!r} (cohort) must hold one first program period per school; "
                        f"{int(varies.sum()):,} school(s) have several ({shown})")
    by_school = d.groupby(c.school, sort=True, observed=True)[c.treatment]
    switch = by_school.nunique() > 1
    if switch.any():  # a school PL in some periods and comparison in others (one that stopped the program)
        def periods(k, v) -> str:
            rows = d[(d[c.school] == k).to_numpy() & (d[c.treatment] == v).to_numpy()]
            return ", ".join(map(_period, sorted(rows["_t"].unique())))

        shown = "; ".join(f"{as_written(k)!r}: 1 in {periods(k, 1)}, 0 in {periods(k, 0)}"
                          for k in switch[switch].index[:3])
        raise DataError(f"column {c.treatment!r} (treatment): {int(switch.sum()):,} school(s) change it between periods "
                        f"({shown}); with a cohort column the treatment marks a PL school in every period and the "
                        f"cohort when it adopted: for a school that stopped the program, leave out its periods after "
                        f"it stopped, or code them 1 (they then count as years of exposure)")
    adopting = known & (d[c.treatment] == 0) & (g <= d["_t"].max())
    if adopting.any():
        schools = d.loc[adopting, c.school]
        first = g[adopting].groupby(schools, sort=True, observed=True).first()
        shown = ", ".join(f"{as_written(k)!r} ({_period(v)})" for k, v in first.iloc[:3].items())
        raise DataError(f"column {name!r} (cohort): {schools.nunique():,} comparison school(s) (column "
                        f"{c.treatment!r} 0) have a first program period within the data ({shown}); a comparison "
                        "school has none (leave it empty), or, if the school adopted the program, code its "
                        f"{c.treatment!r} 1")


def effects_over_time(
    data: pd.DataFrame,
    columns: Columns,
    *,
    method: str = "weighting",
    cohort: str | None = None,
    level: float = 0.95,
    vcov: str = "CR2",
    match_options: dict | None = None,
    equity: bool = True,
    reference: str | None = None,
    df_working: str | None = None,
    checked=None,
) -> OverTime:
    """Effects by period, by years of exposure, a trend test and equity bands for a matched
    design over several periods (formulas and choices in the module docstring).

    ``data`` has one row per student × subject × period; ``columns`` needs ``time``,
    ``student_id``, ``school``, ``outcome``, ``treatment`` and ``pretest`` (the first
    pre-program score). ``cohort`` names a school-level column with the school's first program
    period (empty for comparison schools), used for years of exposure. ``method`` is a
    :func:`pleval.match` method (``match_options`` are passed on) or ``"regression"``
    (no matching; every student weight 1). ``equity=False`` skips the equity bands.
    ``reference`` (CR2 only): ``"exact"`` (the default) takes each interval's multiplier and
    p-value from the exact distribution of the t statistic under the independence working model
    of clubSandwich's weighted CR2 (:mod:`pleval.inference.exact_t`; the ``df`` columns then
    hold the t df with the same multiplier); ``"satterthwaite"`` takes the transformed CR2's
    Satterthwaite t, its df under ``df_working`` (``"random_effects"``, the default, or
    ``"independent"``, clubSandwich's; :func:`pleval.inference.ols`).
    ``checked``: the :func:`pleval.check` report of ``check(data, columns)``, whose warnings the
    caller has shown; without it every row is checked here, its warnings (outliers in any period,
    with their rows) issued as :class:`~pleval.errors.PlevalWarning` (before 2026-12-05 only the
    first period's rows were, by the matching). Either way its first error stops the run.
    """
    from ..checks import checked_data
    from ..matching import match

    if reference is None:
        reference = "exact" if vcov == "CR2" else "satterthwaite"
    if reference not in REFERENCES:
        raise DataError(f"reference must be one of {REFERENCES}; got {reference!r}")
    if reference == "exact" and vcov != "CR2":
        raise DataError(f"reference='exact' needs vcov='CR2'; got {vcov!r}")
    if reference == "exact" and df_working not in (None, "independent"):
        raise DataError("df_working applies to reference='satterthwaite'; the exact reference takes the "
                        "independence working model")
    exact = reference == "exact"
    df_working = df_working or ("independent" if exact else "random_effects")
    c = columns
    for role in ("time", "student_id", "school", "pretest"):
        if not c.roles().get(role):
            raise DataError(f"effects over time need the {role} column; name it (--{role.replace('_', '-')} COLUMN)")
    if cohort is not None and cohort not in data.columns:
        raise DataError(f"column {cohort!r} (cohort: first program period) is not in the data")
    v = checked_data(data, c, checked)
    d = v.data
    notes = list(v.notes) + [f"dropped {r.n_rows:,} row(s): {r.reason} [{r.column}]" for r in v.dropped.itertuples()]
    c = v.columns
    panel = check_panel(d, c)
    d = d.assign(_t=_time_order(d[c.time], c.time))
    changers = panel.changers.loc[panel.changers["changes"] == "treatment", c.student_id]
    if len(changers):
        d = d[~d[c.student_id].isin(changers)]
        notes.append(f"{len(changers):,} student(s) change condition ({c.treatment!r}) between periods: left out")
    n_miss = int(d[c.outcome].isna().sum())
    if n_miss:
        notes.append(f"{n_miss:,} row(s) without {c.outcome!r} left out of the effects (kept in the panel counts)")
    keys = [c.student_id] + ([c.subject] if c.subject else [])
    d = d.sort_values(keys + ["_t"], kind="stable")
    first = d.groupby(keys, sort=False)
    varies = first[c.main_pretest].transform("nunique") > 1
    if varies.any():
        notes.append(f"{int(varies.groupby([d[k] for k in keys]).any().sum()):,} student series have a "
                     f"{c.main_pretest!r} that changes over time: the first period's value is used (the first "
                     "pre-program score)")
    d["_pre"] = first[c.main_pretest].transform("first")
    if c.grade:  # the grade the baseline pretest was taken in
        d["_grade0"] = first[c.grade].transform("first")
    d["_cluster"] = d.groupby(c.student_id, sort=False)[c.school].transform("first")
    if c.subject is None:
        d["_subject"] = "all"
    subj = c.subject or "_subject"

    # exposure: observed periods at or after the school's adoption, counted per student series
    if cohort is not None:
        g = _cohort_periods(d[cohort], cohort, d["_t"], c.time)
        _check_cohort(d, g, cohort, c)
        in_program = (d[c.treatment] == 1) & g.notna() & (d["_t"] >= g)
        no_year = (d[c.treatment] == 1) & g.isna()
        if no_year.any():
            raise DataError(f"column {cohort!r} (cohort): {int(no_year.sum()):,} PL row(s) have no first program period")
        late = (d[c.treatment] == 1) & g.notna() & (g > d["_t"].max())
        if late.any():
            shown = ", ".join(f"{as_written(k)!r}" for k in d.loc[late, c.school].unique()[:3])
            notes.append(f"column {cohort!r} (cohort): {d.loc[late, c.school].nunique():,} PL school(s) ({shown}) "
                         f"have a first program period after the last period ({_period(d['_t'].max())}): none of "
                         "their periods is a program period")
    else:
        in_program = d[c.treatment] == 1
    d["_exposure"] = in_program.astype(int).groupby([d[k] for k in keys], sort=False).cumsum() * in_program
    notes += _exposure_notes(d, c, g if cohort is not None else None, in_program)

    # matching once per student series at the baseline (first period) row
    base = d.groupby(keys, sort=False).head(1).copy()
    base[c.main_pretest] = base["_pre"]
    if method == "regression":
        w = pd.Series(1.0, index=pd.MultiIndex.from_frame(base[keys]))
    else:
        bc = c.replace(time=None, treated_label=None)  # (the treatment is 0/1 since validation)
        # validated here: every row's values were checked above, so the matching does not warn again
        m = match(validate(base, bc), bc, method=method, require_outcome=False, **(match_options or {}))
        w = m.matched.groupby(keys)["_weight"].sum()
        n_out = int((m.data[c.treatment] == 1).sum() - m.n_treated_matched)
        if n_out:
            notes.append(f"{n_out:,} PL student series found no match at baseline and are left out")
    idx = pd.MultiIndex.from_frame(d[keys])
    d["_w"] = w.reindex(idx).fillna(0.0).to_numpy()
    d = d[(d["_w"] > 0) & d[c.outcome].notna()]
    if d.empty or d[c.treatment].nunique() < 2:
        raise DesignError("after matching at baseline there are no PL or no comparison rows with an outcome")
    # baseline thirds of the pretest within grade × subject, as pretest_band (a vertically scaled pretest
    # ranked across grades would band grades): over student series (one band per series, however many
    # periods it has), by the mid-rank of ties (tied pretests share a band)
    series = d.drop_duplicates(keys)
    if c.grade:
        series = series.assign(**{c.grade: series["_grade0"]})
    elif equity:
        notes.append("no grade column: the equity bands rank the baseline pretest within subject across all "
                     "students; on a vertically scaled pretest the bottom third is then mostly the lowest grade")
    bands = pd.Series(pretest_bands(series, "_pre", band_groups(c)).str[0].astype(int).to_numpy() - 1,
                      index=pd.MultiIndex.from_frame(series[keys]))
    d["_band"] = bands.reindex(pd.MultiIndex.from_frame(d[keys])).to_numpy()
    covs_all = design_matrix(d, [x for x in c.covariates if d[x].nunique() > 1]) if c.covariates else pd.DataFrame(index=d.index)

    by_year, by_exp, trends, eq_rows = [], [], [], []
    numeric = pd.api.types.is_numeric_dtype(d["_t"])
    frames = {}
    for s, ds in d.groupby(subj, sort=False):
        covs = covs_all.loc[ds.index]
        D = ds[c.treatment].to_numpy()
        times = sorted(ds["_t"].unique())
        prog = {t: bool(((ds["_t"] == t) & (ds["_exposure"] > 0)).any()) for t in times}
        yterms = pd.DataFrame({f"D@{t}": D * (ds["_t"] == t).to_numpy() for t in times}, index=ds.index)
        clusters, one_school = _clusters(ds, c)
        n_pl = ds.loc[ds[c.treatment] == 1, "_cluster"].nunique()
        if 2 <= n_pl < FEW_PL_SCHOOLS:
            notes.append(f"[{s}] {n_pl} PL schools: with so few PL clusters the intervals rest on {n_pl} schools' "
                         "differences and are wide (the exact t reference; simulated with no effect: 94-95% coverage "
                         "of 95% intervals, trend test 5-6.5% at 5%; docs/monitor.md)" if exact else
                         f"[{s}] {n_pl} PL schools: with so few PL clusters Satterthwaite's t runs short (simulated "
                         "with no effect: trend test 7-9% at 5%); the default exact reference holds (docs/monitor.md)")
        if one_school:
            notes.append(f"[{s}] one {one_school} school: its students are the clusters on its side of the standard "
                         "errors (one school as a cluster would leave their noise out); the effects include that "
                         "school's own difference from the other side")
        inference = dict(vcov=vcov, clusters=clusters, df_working=df_working,
                         cr2="clubsandwich" if exact else "transformed")
        fit = _fit(ds, yterms, c, covs, inference)
        sds = {t: outcome_sd(ds.loc[ds["_t"] == t, c.outcome], ds.loc[ds["_t"] == t, c.treatment] == 1,
                             weights=ds.loc[ds["_t"] == t, "_w"],
                             strata=ds.loc[ds["_t"] == t, c.grade] if c.grade else None)[0] for t in times}
        cell = ds["_t"].astype(str) + ("|" + ds[c.grade].astype(str) if c.grade else "")
        has_comp = cell.isin(set(cell[ds[c.treatment] == 0]))
        alone = (ds[c.treatment] == 1) & ~has_comp
        if alone.any():  # the cell's intercept fits them: they inform no effect
            notes.append(f"[{s}] {int(alone.sum()):,} PL row(s) in {cell[alone].nunique():,} period"
                         f"{' × grade' if c.grade else ''} cell(s) without comparison rows inform no estimate (the "
                         "cell's own intercept fits them) and are not counted in n_treated")
        rows = []
        for t in times:
            dt = ds[(ds["_t"] == t) & ~alone]
            n1, n0 = int((dt[c.treatment] == 1).sum()), int((dt[c.treatment] == 0).sum())
            r = _rows(fit, [f"D@{t}"], {"subject": [s], "time": [t]}, sds[t], _omega(n1 + n0), level, exact)
            r["n_treated"], r["n_comparison"], r["program"] = n1, n0, prog[t]
            r["n_schools"] = dt.loc[dt[c.treatment] == 1, "_cluster"].nunique()
            rows.append(r)
        by_year.append(pd.concat(rows, ignore_index=True))
        ptimes = [t for t in times if prog[t]]
        mean_sd = float(np.mean([sds[t] for t in ptimes])) if ptimes else float(np.mean(list(sds.values())))
        om = _omega(len(ds))
        xs = np.asarray(ptimes, float) if numeric else np.arange(len(ptimes), dtype=float)  # per year when years
        tr = _trend(fit, [f"D@{t}" for t in ptimes], xs, mean_sd, om, f"{c.time} (program periods)", s, level, exact)
        if tr:
            trends.append(tr)

        ks = sorted(ds.loc[ds[c.treatment] == 1, "_exposure"].unique())
        eterms = pd.DataFrame({f"D@k{k}": D * (ds["_exposure"] == k).to_numpy() for k in ks}, index=ds.index)
        efit = _fit(ds, eterms, c, covs, inference)
        sd_all = outcome_sd(ds[c.outcome], ds[c.treatment] == 1, weights=ds["_w"],
                            strata=ds["_t"].astype(str) + "|" + (ds[c.grade].astype(str) if c.grade else ""))[0]
        erows = _rows(efit, [f"D@k{k}" for k in ks], {"subject": s, "exposure": ks}, sd_all, om, level, exact)
        erows["n_treated"] = [int(((ds[c.treatment] == 1) & (ds["_exposure"] == k)).sum()) for k in ks]
        by_exp.append(erows)
        kpos = [k for k in ks if k >= 1]
        tr = _trend(efit, [f"D@k{k}" for k in kpos], np.asarray(kpos, float), sd_all, om, "year of exposure", s, level,
                    exact)
        if tr:
            trends.append(tr)

        frames[s] = ds
        if not equity:
            continue
        bterms = pd.DataFrame({f"D@{t}#{b}": D * ((ds["_t"] == t) & (ds["_band"] == b)).to_numpy()
                               for t in times for b in range(3)}, index=ds.index)
        bfit = _fit(ds, bterms, c, covs, inference)
        for t in times:
            r = _rows(bfit, [f"D@{t}#{b}" for b in range(3)], {"subject": s, "time": t, "band": list(BAND_LABELS)},
                      sds[t], _omega(int((ds["_t"] == t).sum())), level, exact)
            cvec = np.zeros(bfit.k)
            cvec[bfit.index(f"D@{t}#2")], cvec[bfit.index(f"D@{t}#0")] = 1.0, -1.0
            est, se, df, crit, p = _reference(bfit, cvec, level, exact)
            k = _omega(int((ds["_t"] == t).sum())) / sds[t]
            gap = {"subject": s, "time": t, "band": "gap (top − bottom)", "estimate": est, "se": se, "df": df,
                   "ci_low": est - crit * se, "ci_high": est + crit * se, "pvalue": p, "sd": sds[t],
                   "es": est * k, "es_se": se * k, "es_ci_low": (est - crit * se) * k, "es_ci_high": (est + crit * se) * k}
            eq_rows.append(pd.concat([r, pd.DataFrame([gap])], ignore_index=True))
    trend = pd.DataFrame(trends, columns=TREND_COLUMNS)
    equity_table = pd.concat(eq_rows, ignore_index=True) if eq_rows else pd.DataFrame()
    return OverTime(pd.concat(by_year, ignore_index=True), pd.concat(by_exp, ignore_index=True), trend,
                    equity_table, panel, c, method, level, tuple(notes), frames,
                    f"{vcov} by first school" + (
                        "; clubSandwich's weighted form, exact t reference" if exact
                        else "; df with a school random effect" if vcov == "CR2" and df_working == "random_effects"
                        else ""))


__all__ = ["effects_over_time", "OverTime", "BAND_LABELS"]
