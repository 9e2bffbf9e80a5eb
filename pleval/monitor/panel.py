"""Panel structure of a student file with a time role (year or term).

A monitoring file has one row per student × subject × time. :func:`check_panel` counts what
matters before effects over time are estimated: rows and students per period, duplicated
student × subject × time rows (an error, as in :func:`pleval.data.validate`), gaps (a student
absent from a period between their first and last), and students who change school or
condition (treatment) between periods. Nothing is dropped here; each count names its column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import Frame, ResultMixin
from ..data import Columns
from ..errors import DataError


@dataclass(frozen=True, repr=False)
class PanelCheck(ResultMixin):
    """Counts describing a student × subject × time panel.

    ``counts`` has one row per check (``check``, ``column``, ``n``, ``of``, ``note``);
    ``periods`` one row per time value and subject (``rows``, ``students``, ``treated``,
    ``comparison``). ``changers`` lists the students who change school or condition.
    """

    counts: pd.DataFrame = Frame()
    periods: pd.DataFrame = Frame()
    changers: pd.DataFrame = Frame()
    times: tuple

    def count(self, check: str) -> int:
        return int(self.counts.set_index("check").loc[check, "n"])

    def to_frame(self) -> pd.DataFrame:
        return self.counts.copy()

    def summary(self) -> str:
        lines = [f"Panel: {len(self.times)} periods ({', '.join(map(str, self.times))})"]
        for r in self.counts.itertuples(index=False):
            lines.append(f"  {r.check}: {r.n:,} of {r.of:,}" + (f" [{r.column}]" if r.column else "")
                         + (f" — {r.note}" if r.note else ""))
        return "\n".join(lines)


def date_text(s: pd.Series) -> pd.Series:
    """Dates as ISO text, periods in date order: the local date (a time zone dropped, the wall
    time kept), with the time of day only when some row has one; missing dates stay missing."""
    if s.dt.tz is not None:
        s = s.dt.tz_localize(None)
    fmt = "%Y-%m-%d" if (s.dropna().dt.normalize() == s.dropna()).all() else "%Y-%m-%dT%H:%M:%S"
    return s.dt.strftime(fmt).where(s.notna())


def _time_order(s: pd.Series, name: str) -> pd.Series:
    """Integer order of the time values: numeric values as numbers, text (terms such as
    '2023-fall') in sorted order. Terms named before their year ('Fall 2021', 'Spring 2022') are
    an error: sorted as text they would be out of time order. Dates are periods written as ISO
    text ('2021-05-01'; to_numeric made them nanoseconds, and the trend a slope per nanosecond)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        if s.isna().any():
            raise DataError(f"column {name!r} (time): {int(s.isna().sum()):,} row(s) have no date; fill or drop them")
        return date_text(s)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all():
        return num
    if num.notna().any():
        bad = s[num.isna()].astype(str).unique()[:3]
        raise DataError(f"column {name!r} (time) mixes numbers and text such as {', '.join(map(repr, bad))}; "
                        "use one kind (years as numbers, or terms as sortable text such as 2023-1)")
    text = s.astype(str)
    parts = text.str.strip().str.extract(r"^(?P<term>\D*?)\s*(?P<year>(?:19|20)\d\d)")
    if parts["year"].notna().all() and parts["term"].str.len().gt(0).all() and parts["term"].nunique() > 1 \
            and parts["year"].nunique() > 1:
        order = sorted(text.unique())
        raise DataError(f"column {name!r} (time) names terms before their year ({', '.join(map(repr, order[:4]))}, ...): "
                        "sorted as text, which is how periods are ordered, they are out of time order; write the year "
                        "first, with the terms numbered in their order (e.g. 2021-1, 2021-2)")
    return text


def check_panel(df: pd.DataFrame, columns: Columns) -> PanelCheck:
    """Count the panel problems of ``df`` (a frame already through :func:`pleval.data.validate`
    or with the same roles). Requires ``columns.time`` and ``columns.student_id``; raises
    :class:`DataError` for duplicated student × subject × time rows."""
    if not columns.time:
        raise DataError("monitoring over time needs the time column (--time COLUMN): a year or term")
    if not columns.student_id:
        raise DataError("monitoring over time needs the student id column (--student-id COLUMN)")
    for role, c in (("time", columns.time), ("student_id", columns.student_id)):
        if c not in df.columns:
            raise DataError(f"column {c!r} ({role}) is not in the data; available columns: "
                            f"{', '.join(map(str, df.columns[:30]))}")
    sid, tcol = columns.student_id, columns.time
    keys = [sid] + ([columns.subject] if columns.subject else [])
    t = _time_order(df[tcol], tcol)
    times = tuple(sorted(t.unique()))
    dup = df.assign(_t=t).duplicated(keys + ["_t"], keep=False)
    if dup.any():
        raise DataError(f"columns {sid!r} × {tcol!r}: {int(dup.sum()):,} row(s) repeat a student"
                        + (f" in a subject ({columns.subject!r})" if columns.subject else "")
                        + " in the same period; each student should appear once per subject and period")
    text = not pd.api.types.is_numeric_dtype(t)  # terms as text (pandas' str dtype or object)
    pos = pd.Series(np.searchsorted(np.asarray(times, dtype=object if text else float),
                                    t.to_numpy(dtype=object if text else float)), index=df.index)
    grp = pos.groupby([df[k] for k in keys])
    span = grp.max() - grp.min() + 1
    present = grp.size()
    n_gap = int((span > present).sum())
    n_units = len(present)
    students = df[sid].nunique()
    rows = [
        ("rows", "", len(df), len(df), ""),
        ("students", sid, students, students, ""),
        ("student × subject series with a gap", tcol, n_gap, n_units,
         "absent from a period between their first and last (kept; exposure counts observed periods)"),
        ("student × subject series observed once", tcol, int((present == 1).sum()), n_units, ""),
    ]
    changers = []
    for role, col in (("school", columns.school), ("treatment", columns.treatment)):
        if not col or col not in df.columns:
            continue
        k = df.groupby(sid)[col].nunique(dropna=True)
        moved = k[k > 1].index
        label = "students changing school" if role == "school" else "students changing condition"
        note = ("clustered by their first school" if role == "school"
                else "left out of the matched analysis over time (which compares conditions held throughout)")
        rows.append((label, col, len(moved), students, note if len(moved) else ""))
        changers.append(pd.DataFrame({sid: moved, "changes": role}))
    counts = pd.DataFrame(rows, columns=["check", "column", "n", "of", "note"])
    by = [df[tcol].rename("time")] + ([df[columns.subject]] if columns.subject else [])
    periods = df.groupby(by, sort=True).agg(rows=(sid, "size"), students=(sid, "nunique"))
    if columns.treatment in df.columns:
        tr = pd.to_numeric(df[columns.treatment], errors="coerce")
        periods["treated"] = tr.groupby(by, sort=True).sum().astype(int)
        periods["comparison"] = periods["rows"] - periods["treated"]
    changers = pd.concat(changers, ignore_index=True) if changers else pd.DataFrame(columns=[sid, "changes"])
    return PanelCheck(counts, periods.reset_index(), changers, times)


__all__ = ["check_panel", "PanelCheck"]
