"""ICC and R² of an existing (pilot or prior-year) student file, for planning the next study.

Estimator: one-way random-effects **ANOVA** (method of moments; Searle, Casella & McCulloch
1992, §3.5), per subject, on the outcome centred within grade (grade fixed effects, so the
ICC is the within-grade school share). With k schools, N students, n_j per school::

    MSB = Σ n_j(ȳ_j − ȳ)²/(k − 1),  MSW = Σ (y − ȳ_j)²/(N − k),  n₀ = (N − Σn_j²/N)/(k − 1)
    σ̂²_b = max(0, (MSB − MSW)/n₀),   ICC = σ̂²_b / (σ̂²_b + MSW)

For balanced data this equals the REML estimate of a random-intercept model
(``statsmodels`` ``MixedLM``; the tests check it). Its confidence interval is Searle's
(1971) F interval, exact for balanced data and the usual approximation with n₀ otherwise:
``F = MSB/MSW``, ``F_L = F/F_{1−a/2}(k−1, N−k)``, ``F_U = F/F_{a/2}(k−1, N−k)``,
``ICC ∈ [(F_L − 1)/(F_L + n₀ − 1), (F_U − 1)/(F_U + n₀ − 1)]`` (clipped to [0, 1]).

R² per level (the planning inputs of a covariate-adjusted analysis): the outcome is regressed
(OLS) on each pretest's within-school deviation and its school mean, and the ANOVA is repeated
on the residuals (within df N − k − q for q pretests, between df k − 1 − q):
``R²₁ = 1 − MSW_res/MSW`` and ``R²₂ = 1 − σ̂²_b,res/σ̂²_b`` (clipped to [0, 1)). Only pretests
are used as covariates; rows missing the outcome, school or a pretest are left out and counted.
When the file has a treatment column, only comparison rows (treatment 0) are used by default:
a program effect that differs between schools would otherwise inflate the ICC.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

from .._results import Frame, ResultMixin
from ..checks import id_columns
from ..data import SAMPLE_COLUMNS, Columns, _coerce_treatment, pick_subject, read_table, resolve_columns
from ..errors import DataError


@dataclass(frozen=True, repr=False)
class VarianceComponents(ResultMixin):
    """ICC (with its CI) and R² per level, by subject (:func:`estimate_components`)."""

    table: pd.DataFrame = Frame()
    level: float
    notes: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def row(self, subject=None) -> pd.Series:
        """The estimates of one subject (the first by default)."""
        t = self.table
        if subject is None:
            return t.iloc[0]
        hit = t[t["subject"].astype(str) == str(pick_subject(t["subject"], subject, "subject"))]
        return hit.iloc[0]

    def summary(self) -> str:
        lines = ["Variance components (one-way ANOVA within grade; Searle F interval for the ICC)"]
        for _, r in self.table.iterrows():
            lines.append(
                f"  {r['subject']}: ICC {r['icc']:.3f} ({self.level:.0%} CI {r['icc_ci_low']:.3f} to {r['icc_ci_high']:.3f}), "
                f"R² school {r['r2_school']:.3f}, R² student {r['r2_student']:.3f}; {int(r['n_schools'])} schools, "
                f"{int(r['n_students']):,} students ({r['students_per_school']:.1f} per school)"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _anova(y: np.ndarray, g: np.ndarray, k: int, q: int = 0) -> tuple[float, float, float, float, float]:
    """(σ²_b, MSW, MSB, n₀, df_within) of a one-way layout; ``q`` regressors used at each level."""
    n_j = np.bincount(g, minlength=k).astype(float)
    N = n_j.sum()
    means = np.bincount(g, weights=y, minlength=k) / n_j
    ssb = np.sum(n_j * (means - y.mean()) ** 2)
    ssw = np.sum((y - means[g]) ** 2)
    dfb, dfw = k - 1 - q, N - k - q
    if dfb < 1 or dfw < 1:
        raise DataError(f"too few schools ({k}) or students ({int(N)}) to estimate an ICC")
    msb, msw = ssb / dfb, ssw / dfw
    n0 = (N - np.sum(n_j**2) / N) / (k - 1)
    return max(0.0, (msb - msw) / n0), msw, msb, n0, dfw


def _one(d: pd.DataFrame, outcome: str, school: str, pretests: tuple, grade: str | None, level: float) -> dict:
    g = pd.factorize(d[school])[0]
    k = int(g.max()) + 1
    y = d[outcome].to_numpy(dtype=float)
    X = d[list(pretests)].to_numpy(dtype=float) if pretests else np.empty((len(d), 0))
    if grade:  # grade fixed effects: centre within grade
        gr = pd.factorize(d[grade])[0]
        cnt = np.bincount(gr).astype(float)
        y = y - (np.bincount(gr, weights=y) / cnt)[gr]
        if X.shape[1]:
            X = X - np.column_stack([np.bincount(gr, weights=x) / cnt for x in X.T])[gr]
    if k < 2:
        raise DataError(f"column {school!r} (school) holds one school ({d[school].iloc[0]!r}): an ICC needs at least "
                        "2 schools")
    sb, msw, msb, n0, dfw = _anova(y, g, k)
    if not msw > 0:
        raise DataError(f"column {outcome!r} (outcome) does not vary within schools{' and grades' if grade else ''}: "
                        "no ICC can be estimated (the within-school variance is 0)")
    icc = sb / (sb + msw) if sb + msw > 0 else 0.0
    a = 1 - level
    F = msb / msw
    fl, fu = F / stats.f.ppf(1 - a / 2, k - 1, dfw), F / stats.f.ppf(a / 2, k - 1, dfw)
    lo, hi = (np.clip((f - 1) / (f + n0 - 1), 0.0, 1.0) for f in (fl, fu))
    out = {"icc": icc, "icc_ci_low": float(lo), "icc_ci_high": float(hi), "r2_school": 0.0, "r2_student": 0.0}
    if X.shape[1]:
        n_j = np.bincount(g).astype(float)
        xm = np.column_stack([np.bincount(g, weights=x) / n_j for x in X.T])
        Z = np.column_stack([np.ones(len(y)), X - xm[g], xm[g]])
        beta = np.linalg.lstsq(Z, y, rcond=None)[0]
        sb_r, msw_r, *_ = _anova(y - Z @ beta, g, k, X.shape[1])
        out["r2_student"] = float(np.clip(1 - msw_r / msw, 0.0, 0.999))
        out["r2_school"] = float(np.clip(1 - sb_r / sb, 0.0, 0.999)) if sb > 0 else 0.0
    out.update(n_schools=k, n_students=len(y), students_per_school=len(y) / k)
    return out


def estimate_components(df: pd.DataFrame | str, columns: Columns | None = None, subject=None,
                        level: float = 0.95, comparison_only: bool = True) -> VarianceComponents:
    """ICC, its CI and R² per level of ``df`` (a path or DataFrame), per subject (module docstring).

    ``columns`` defaults to the sample files' roles (outcome ``posttest``, school ``school_id``,
    pretest, grade, subject and treatment where present); ``school`` is required.
    ``comparison_only``: with a treatment column, use its 0 rows only.
    """
    if isinstance(df, str) or hasattr(df, "__fspath__"):
        df = read_table(df, ids=partial(id_columns, columns=columns))  # (the school ids read as text in full: '0042')
    if columns is None:
        columns, _ = resolve_columns(df, SAMPLE_COLUMNS)
    if not columns.school:
        raise DataError("estimating an ICC needs the school column (columns.school)")
    if not 0 < level < 1:
        raise DataError(f"level must lie strictly between 0 and 1; got {level!r}")
    need = [columns.outcome, columns.school, *columns.pretest, *([columns.grade] if columns.grade else [])]
    missing = [c for c in need + ([columns.subject] if columns.subject else []) if c not in df.columns]
    if missing:
        raise DataError(f"column(s) {', '.join(map(repr, missing))} not in the data; columns are {', '.join(map(str, df.columns))}")
    for c in [columns.outcome, *columns.pretest]:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise DataError(f"column {c!r} must be numeric to estimate variance components")
    notes = []
    if comparison_only and columns.treatment and columns.treatment in df.columns:
        try:  # 0/1, True/False, or two labels with columns.treated_label
            t, treated = _coerce_treatment(df[columns.treatment], columns.treatment, columns.treated_label)
        except DataError as exc:
            raise DataError(f"{exc} (to keep comparison rows; or use every row: comparison_only=False)") from None
        what = f"{columns.treatment} = 0" if columns.treated_label is None else f"{columns.treatment} ≠ {treated!r}"
        notes.append(f"comparison rows only ({int((t == 0).sum()):,} of {len(df):,}; {what})")
        df = df[t == 0]
    subjects = [None] if not columns.subject else sorted(pd.unique(df[columns.subject].dropna()), key=str)
    if subject is not None:
        if columns.subject is None:
            raise DataError(f"no rows for subject {subject!r}: no subject column is named")
        subjects = [pick_subject(subjects, subject, columns.subject)]
    rows, empty = [], []
    for s in subjects:  # a handful of subjects
        d = df if s is None else df[df[columns.subject] == s]
        complete = d[need].notna().all(axis=1)
        if not complete.any():  # (a subject not tested yet, a column left empty)
            gaps = ", ".join(f"{c!r} in {int(d[c].isna().sum()):,}" for c in need if d[c].isna().any())
            empty.append(f"{'all rows' if s is None else f'subject {s}'}: no row has every one of "
                         f"{', '.join(map(repr, need))} (missing: {gaps} of {len(d):,} rows)")
            continue
        if (~complete).any():
            notes.append(f"{'all' if s is None else s}: {int((~complete).sum()):,} row(s) missing "
                         f"{' or '.join(need)} left out")
        rows.append({"subject": "all" if s is None else s,
                     **_one(d[complete], columns.outcome, columns.school, tuple(columns.pretest), columns.grade, level)})
    if not rows:
        raise DataError("; ".join(empty) + ": no variance components can be estimated; fill the values in, or leave "
                        "the empty role out (e.g. --pretest none)")
    notes += [f"{e}: no variance components, left out" for e in empty]
    return VarianceComponents(pd.DataFrame(rows), level, tuple(notes))


__all__ = ["estimate_components", "VarianceComponents"]
