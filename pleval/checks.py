"""Checking a student file before anything is computed: :func:`check`.

``pleval.check(file_or_frame, ...)`` reads the file, resolves every column role and lists
*every* problem at once, each as one line that names the column and the exact ``pleval``
option that fixes it, at one of three levels:

* **error** — the analysis cannot run or would be wrong (a named column that is absent, a
  default column that is absent while a near-namesake is present, non-numeric scores, a
  treatment that is not two-valued, duplicated students, a header naming a column twice, ...);
* **warning** — the analysis runs, but read the consequence (a role that fell back to
  nothing: "subjects pooled", "no covariates"; outliers; numbers mixed with text; a
  constant column; rows dropped for missing values);
* **note** — worth knowing (what the reader detected, unused columns, missing outcomes
  kept for attrition).

:meth:`CheckReport.exit_code` is 0 (clean), 1 (warnings) or 2 (errors), as ``pleval check``
exits. ``pleval.estimate`` runs the same checks first and stops on the first error before
computing anything (:meth:`CheckReport.raise_errors`).

Outlier rule (stated in every message): an outcome, pretest or weight value lies more than
:data:`OUTLIER_K` = 8 scaled median absolute deviations (1.4826·MAD, the normal-consistent
SD) from the median of its grade × subject cell (covariates are not checked: earnings and
the like are legitimately skewed). For normal data a false flag has probability about 1e-15 per value;
the rule is for gross errors (a score of 1e12, a sentinel 999), not for trimming.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ._results import Frame, ResultMixin
from .data import (DATE_COVARIATE_FIX, NONE_WORDS, RCT_SAMPLE_COLUMNS, SAMPLE_COLUMNS, Columns, Validated,
                   _coerce_treatment, _split_names, _tuple, as_columns, as_written, codes_once, date_column_message,
                   factorize_ahead, factorized, flag_for, frame_sha256, is_date_column, itt_columns, match_label,
                   one_arm_subject, school_arms, schools_across_blocks, subject_arms, validate)
from .errors import DataError, DesignError, PlevalError
from .readers import MIXED_ENCODING, POINT_NUMBERS_AS_TEXT, duplicate_header_message, file_columns, read_raw

LEVELS = ("error", "warning", "note")
OUTLIER_K = 8.0
"""Flag values more than this many scaled MADs from their grade × subject cell's median."""
NA_LIKE = {".", "-", "--", "na", "n/a", "nan", "null", "none", "missing", "#n/a", "*", "?", "x", "-99", "-999", "999", "9999"}
"""Text that usually means "missing": non-numeric values all among these suggest ``--na``."""

# Consequence of each optional role that is absent (not given, default not in the data).
_ABSENT = {
    "pretest": "no pretest: effects are not adjusted for prior achievement and WWC baseline equivalence cannot be checked",
    "covariates": "no covariates: the design adjusts for the pretest only",
    "grade": "no grade column: grades are not matched exactly and the effect-size SD is not pooled within grade",
    "subject": "no subject column: all rows are analysed as one subject (subjects pooled)",
    "student_id": "no student id column: duplicated students cannot be detected",
    "block": "no block column: the trial is analysed as unblocked",
    "takeup": "no take-up column: no complier (CACE) estimate",
    "school": "no school column: standard errors cannot be clustered by school",
}
_RCT_ONLY = ("block", "takeup")


@dataclass(frozen=True)
class Problem:
    """One finding: ``level`` (error / warning / note), what kind, the column, a one-line
    ``message`` and the option that fixes it (``fix``), with the rows concerned."""

    level: str
    kind: str
    message: str
    column: str | None = None
    fix: str = ""
    n_rows: int | None = None

    @property
    def line(self) -> str:
        """The one-line message, with the fix."""
        return self.message + (f"; fix: {self.fix}" if self.fix else "")


class _Handover:
    """:func:`check`'s :class:`~pleval.data.Validated` record of a frame, kept for the
    :func:`pleval.estimate` of that same frame (``check(..., keep_validated=True)``) and given
    up by :meth:`take` once, so that a run validates its data once and the report holds no
    copy of the data afterwards."""

    def __init__(self, frame: pd.DataFrame, validated: Validated):
        self._held: tuple[pd.DataFrame, Validated] | None = (frame, validated)

    def take(self, frame: pd.DataFrame, columns: Columns, require) -> Validated | None:
        """The record if it is what ``validate(frame, columns, require=require)`` returns: the
        same frame object (not a copy, not a frame read again) with equal roles, every role in
        ``require`` among them (:func:`~pleval.data.validate` returns the same record for any
        such ``require``); else ``None``. Either way the report no longer holds it."""
        held, self._held = self._held, None
        if held is None:
            return None
        f, v = held
        same = f is frame and v.columns == columns and set(require) <= set(columns.roles())
        return v if same else None


@dataclass(frozen=True, repr=False)
class CheckReport(ResultMixin):
    """Every problem found in a student file (immutable). ``columns`` is the resolved
    :class:`~pleval.data.Columns` (``None`` when the file could not be read); ``roles``
    says where each role's column came from (given, default, absent)."""

    source: str
    design: str
    n_rows: int
    n_columns: int
    columns: Columns | None
    problems: tuple[Problem, ...]
    roles: pd.DataFrame = Frame(default=pd.DataFrame())
    _handover: _Handover | None = field(default=None, repr=False, compare=False)
    unused: tuple[str, ...] = ()
    input_sha256: str | None = None

    def used_also(self, names) -> "CheckReport":
        """This report with ``names`` — columns an analysis reads beside the roles (subgroups,
        moderators, further outcomes, a placebo outcome) — no longer listed as unused."""
        taken = {str(n) for n in names}
        left = tuple(c for c in self.unused if c not in taken)
        if left == self.unused:
            return self
        problems = tuple(p for p in (_unused_note(left) if p.kind == "unused columns" else p for p in self.problems)
                         if p is not None)
        return replace(self, problems=problems, unused=left)

    def take_validated(self, df: pd.DataFrame, columns: Columns, require=("outcome", "treatment")) -> Validated | None:
        """The :class:`~pleval.data.Validated` record of the check's own validation of ``df``
        (kept by ``check(df, ..., keep_validated=True)``) when it is the one
        ``validate(df, columns, require=require)`` would return: ``df`` the very frame checked
        (unchanged since), ``columns`` equal to the roles validated; else ``None``. Given up
        on the first call: a second one returns ``None``."""
        return None if self._handover is None else self._handover.take(df, columns, require)

    def validated(self, df: pd.DataFrame, columns: Columns) -> Validated:
        """The check's own validation of ``df`` (:meth:`take_validated`), else
        :func:`~pleval.data.validate`'s."""
        return self.take_validated(df, columns) or validate(df, columns)

    def _level(self, level: str) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.level == level)

    errors = property(lambda self: self._level("error"), doc="The errors (the analysis cannot run).")
    warnings = property(lambda self: self._level("warning"), doc="The warnings (it runs; read the consequence).")
    notes = property(lambda self: self._level("note"), doc="Notes (what was detected, unused columns).")

    @property
    def exit_code(self) -> int:
        """0 clean, 1 warnings, 2 errors (``pleval check``'s exit code)."""
        return 2 if self.errors else 1 if self.warnings else 0

    def raise_errors(self) -> None:
        """Raise :class:`DataError` with the first error's line (and how many more there are)."""
        errs = self.errors
        if errs:
            more = f" (and {len(errs) - 1} more error(s): run `pleval check` to list them)" if len(errs) > 1 else ""
            raise DataError(errs[0].line + more)

    def to_frame(self) -> pd.DataFrame:
        """One row per problem: level, kind, column, rows, message, fix."""
        return pd.DataFrame(
            [{"level": p.level, "kind": p.kind, "column": p.column, "n_rows": p.n_rows, "message": p.message, "fix": p.fix}
             for p in self.problems],
            columns=["level", "kind", "column", "n_rows", "message", "fix"],
        )

    def summary(self) -> str:
        name = Path(self.source).name if self.source else "data"
        unread = any(p.kind == "file" for p in self.problems)  # (its error says why; no rows or columns were seen)
        head = f"{name}: not read" if unread else f"{name}: {self.n_rows:,} rows, {self.n_columns} columns"
        counts = ", ".join(f"{len(self._level(lv))} {lv}(s)" for lv in LEVELS)
        lines = [f"{head} — {counts}"]
        if len(self.roles):
            lines.append("Column roles:")
            for r in self.roles.itertuples():
                lines.append(f"  {r.role:<11} {r.column or '—':<28} ({r.source})")
        for lv in LEVELS:
            for p in self._level(lv):
                lines.append(f"{lv}: {p.line}")
        if not self.problems:
            lines.append("no problems found")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------
def check(
    data,
    columns: Columns | None = None,
    *,
    given: Mapping[str, Any] | None = None,
    design: str = "matched",
    require: tuple[str, ...] | None = None,
    keep_validated: bool = False,
    arms: pd.Series | None = None,
    _ids_ahead: bool = False,
    **read_options,
) -> CheckReport:
    """Check a student file (a path or a DataFrame) and return a :class:`CheckReport`.

    Parameters
    ----------
    data : path or DataFrame. A path is read with :func:`pleval.readers.read_table`'s
        ``read_options`` (``sep``, ``decimal``, ``encoding``, ``sheet``, ``header_row``, ``na``).
    columns : the roles, every one explicit (a :class:`~pleval.data.Columns`); or ``None``
        for the sample files' default names overridden by ``given``.
    given : role -> column name(s) given by the user (``"none"`` for "no such column"), as
        the CLI's column options; roles not given take their default name if it exists.
    design : ``"matched"`` or ``"rct"`` (which roles matter, whether weights can be used).
    require : roles that must be present (default: outcome, treatment and school).
    keep_validated : keep the :class:`~pleval.data.Validated` record of the data frame
        ``data`` (when it passes every check) in the report, for :func:`pleval.estimate` of
        this same frame to take (:meth:`CheckReport.take_validated`) instead of validating it
        again. A frame changed in between is checked again there (:func:`current_report`).
        Default False: a report kept holds no copy of the data.
    arms : a multi-arm trial's treatment as given, one value per row of ``data``, whose
        treatment column reads it as control (0) / any arm (1) (``pleval rct --control``): the
        note on schools whose students were randomized to different arms counts the arms in it.
    _ids_ahead : with ``keep_validated``, the student ids of the record kept are factorized in a
        thread from the moment the rows are validated (:func:`pleval.data.factorize_ahead`), for
        the analysis's match to take (``pleval estimate``'s propensity match).
    """
    if columns is None and isinstance(given, Columns):  # (roles given whole: they are the columns)
        columns, given = given, None
    explicit = None if columns is None else as_columns(columns)
    if isinstance(data, (str, Path)):
        src = str(data)
        try:  # (the id columns read as text in full when one holds '0042': id_columns)
            df = read_raw(data, **{"ids": partial(id_columns, given=given, design=design, columns=explicit),
                                   **read_options})
        except DataError as exc:
            return CheckReport(src, design, 0, 0, None, (Problem("error", "file", str(exc), fix=""),))
    elif isinstance(data, pd.DataFrame):
        df, src = data, str(data.attrs.get("source", ""))
    else:
        raise DataError(f"expected a file path or a pandas DataFrame; got {type(data).__name__}")
    if design not in ("matched", "rct"):
        raise DataError(f"design must be matched or rct; got {design!r}")
    known = df  # the data as given (a frame) or read, before a column named twice is set aside
    require = ("outcome", "treatment", "school") if require is None else tuple(require)
    problems: list[Problem] = [Problem("warning" if n.startswith((MIXED_ENCODING, POINT_NUMBERS_AS_TEXT)) else "note",
                                       "reading", n)
                               for n in df.attrs.get("read_notes", ())]
    name = Path(src).name if src else "the data"
    dups = list(df.attrs.get("duplicate_headers", ()))
    dups += [str(c) for c in pd.unique(df.columns[df.columns.duplicated()]) if str(c) not in dups]
    for d in dups:
        problems.append(Problem("error", "duplicated header", duplicate_header_message(name, [d]), d))
    if df.columns.duplicated().any():  # check the rest on the first copies (the error above stands)
        df = df.loc[:, ~df.columns.duplicated()]
    if len(df) == 0:
        problems.append(Problem("error", "empty", "the data have no rows"))
        return CheckReport(src, design, 0, df.shape[1], None, tuple(problems), input_sha256=input_sha256(known))
    base = RCT_SAMPLE_COLUMNS if design == "rct" else SAMPLE_COLUMNS
    listed = df if "file_columns" not in df.attrs else pd.DataFrame(columns=file_columns(df))  # the file's names
    if explicit is None:
        cols, roles, found = resolve_roles(listed, base, given, design=design, require=require)
    else:
        cols, roles, found = _explicit_roles(listed, explicit, require)
    problems += found
    with codes_once():  # (the subject and school columns coded once for all the checks)
        values, found, validated = _values_and_validation(df, cols, require, design, problems, arms,
                                                          ahead=_ids_ahead and keep_validated and df is data)
    problems += values + found
    handover = _Handover(data, validated) if keep_validated and validated is not None and df is data else None
    used = {c for v in cols.roles().values() for c in v}
    unused = [str(c) for c in listed.columns if c not in used]
    if unused:
        problems.append(_unused_note(unused))
    order = {lv: i for i, lv in enumerate(LEVELS)}
    problems.sort(key=lambda p: order[p.level])
    sha = validated.input_sha256 if validated is not None else input_sha256(known)  # (hashed once)
    return CheckReport(src, design, len(df), listed.shape[1], cols, tuple(problems), roles, handover, tuple(unused),
                       sha)


def input_sha256(df: pd.DataFrame) -> str | None:
    """The hash by which a frame is known, as :func:`pleval.data.validate` records it: its file's,
    when pleval read it (``attrs["sha256"]``), else its content's (:func:`~pleval.data.frame_sha256`);
    ``None`` for a frame without rows."""
    return df.attrs.get("sha256") or (frame_sha256(df) if len(df) else None)


def current_report(df: pd.DataFrame, checked: CheckReport, design: str, stacklevel: int = 3) -> CheckReport:
    """``checked`` when it is a report of ``df`` as ``df`` is now (the hash it recorded is
    :func:`input_sha256` of ``df``), else a new :func:`check` of ``df`` with the report's roles
    (``keep_validated``), after a :class:`~pleval.errors.PlevalWarning` that says so: a frame
    fixed in place after its check (the sentinel scores its warning named set missing) was
    analysed as it had been checked before 2026-12-05, and its provenance recorded the old hash."""
    import warnings

    from .errors import PlevalWarning

    if checked.input_sha256 == input_sha256(df):
        return checked
    warnings.warn("the data differ from those the report given as checked= was made of (changed since "
                  "pleval.check ran, or another frame): they are checked again and this check is used",
                  PlevalWarning, stacklevel=stacklevel)
    return check(df, checked.columns, design=design, keep_validated=True)


def _unused_note(unused) -> Problem | None:
    """The note listing the columns no role uses (the first 20), or None without any."""
    if not unused:
        return None
    return Problem("note", "unused columns", f"columns not used by any role: {', '.join(unused[:20])}"
                   + (f" (and {len(unused) - 20} more)" if len(unused) > 20 else ""))


def columns_needed(names: list[str], given: Mapping[str, Any] | None = None, *, design: str = "matched",
                   require: tuple[str, ...] | None = None, options: Mapping[str, Any] | None = None) -> list[str] | None:
    """The columns among a file's ``names`` that :func:`check` and :func:`pleval.estimate` read
    with these roles (``given``, ``design``, ``require`` as :func:`check` takes them) and
    ``options``: every role's column as :func:`check` resolves them, and every column an option
    names (any text among the options' values and keys, lists, comma-separated words and
    ``OUTCOME=DOMAIN`` pairs included); None, every column, when the roles hold an error (:func:`check` then names the
    columns that look like the one meant among all of them). For
    :func:`pleval.readers.read_table`'s ``columns``."""
    require = ("outcome", "treatment", "school") if require is None else tuple(require)
    base = RCT_SAMPLE_COLUMNS if design == "rct" else SAMPLE_COLUMNS
    cols, _, found = resolve_roles(pd.DataFrame(columns=names), base, given, design=design, require=require)
    if any(p.level == "error" for p in found):
        return None
    used = {c for v in cols.roles().values() for c in v} | (_words(options) & set(names))
    return [c for c in names if c in used]


ID_ROLES = ("student_id", "school", "block")
"""The roles whose columns hold ids (codes): a text file's are read as text in full when a value
is written with leading zeros ('0042'), :func:`id_columns`."""


def id_columns(names: list[str], given: Mapping[str, Any] | None = None, *, design: str = "matched",
               columns: Columns | None = None) -> list[str]:
    """The columns among a file's ``names`` holding ids (:data:`ID_ROLES`): those of the roles
    ``columns`` (or ``given`` whole, a :class:`Columns`), else as :func:`check` resolves the roles
    ``given`` (an unknown role is left for it to name) for ``design``. For
    :func:`pleval.readers.read_table`'s ``ids``."""
    if isinstance(given, Columns):
        columns, given = given, None
    if columns is None:
        known = {f.name for f in fields(Columns)}
        base = RCT_SAMPLE_COLUMNS if design == "rct" else SAMPLE_COLUMNS
        columns, _, _ = resolve_roles(pd.DataFrame(columns=names), base,
                                      {r: v for r, v in (given or {}).items() if r in known}, design=design, require=())
    roles = columns.roles()
    ids = {c for r in ID_ROLES for c in roles.get(r, ())}
    return [c for c in names if c in ids]


def _words(value) -> set[str]:
    """Every text in ``value`` (mappings' keys and values, sequences), whole and split at commas
    and equals signs (``--domains days_absent=attendance``), stripped."""
    if isinstance(value, str):
        return {value.strip(), *(w.strip() for w in re.split(r"[,=]", value))}
    if isinstance(value, Mapping):
        return _words(list(value.keys())) | _words(list(value.values()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return set().union(*map(_words, value)) if value else set()
    return set()


# --------------------------------------------------------------------------------------
# Roles
# --------------------------------------------------------------------------------------
def _norm(s: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(s).lower())


def suggest(name: str, available, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Columns that look like ``name`` (case, spaces and punctuation ignored first)."""
    available = [str(c) for c in available]
    exact = [c for c in available if _norm(c) == _norm(name)]
    by_norm = {_norm(c): c for c in available}
    close = [by_norm[m] for m in difflib.get_close_matches(_norm(name), list(by_norm), n=n, cutoff=cutoff)]
    return list(dict.fromkeys(exact + close))[:n]


def _near_namesake(name: str, available) -> str | None:
    """A column that is very likely the one meant by a default name (same letters, or the
    default as a word of it, or 80% similar), e.g. 'School ID' for 'school_id'."""
    key = _norm(name)
    for c in map(str, available):
        k = _norm(c)
        if k == key or (len(key) >= 4 and re.search(rf"(^|[^0-9a-z]){re.escape(name.lower())}([^0-9a-z]|$)", c.lower())):
            return c
    close = difflib.get_close_matches(key, [_norm(c) for c in available], n=1, cutoff=0.8)
    if close:
        return next(c for c in map(str, available) if _norm(c) == close[0])
    return None


def _q(name: str) -> str:
    """A column name as typed on a command line."""
    return name if re.fullmatch(r"[\w.,-]+", name) else f'"{name}"'


def _missing_named(df, role: str, col: str) -> Problem:
    hint = suggest(col, df.columns)
    did = f"; did you mean {' or '.join(map(repr, hint))}?" if hint else f"; columns: {', '.join(map(str, df.columns[:20]))}"
    fix = f"{flag_for(role)} {_q(hint[0])}" if hint and role not in ("pretest", "covariates") else (
        f"{flag_for(role)} with the right name")
    return Problem("error", "missing column", f"column {col!r} ({role}) is not in the data{did}", col, fix)


def resolve_roles(df: pd.DataFrame, base: Columns, given: Mapping[str, Any] | None = None, *, design: str = "matched",
                  require: tuple[str, ...] = ("outcome", "treatment")) -> tuple[Columns, pd.DataFrame, list[Problem]]:
    """Roles for ``df``: those ``given``, the others by their default name in ``base`` when the
    column exists. Returns the :class:`Columns`, a table of where each role came from, and the
    problems: a given column that is absent (error, with close matches), a required role
    that is absent (error), a default that is absent while a near-namesake is present
    (error: name it or say ``none``), and any other absent default (warning stating the
    consequence)."""
    given = {r: v for r, v in (given or {}).items() if v is not None}
    roles_known = [f.name for f in fields(Columns)]
    unknown = sorted(set(given) - set(roles_known))
    if unknown:
        raise DataError(f"unknown column role(s) {unknown}; roles are {roles_known}")
    for r, v in given.items():  # names must be text (a frame read with header=None has numbers)
        if r != "treated_label" and not isinstance(v, str):
            _tuple(v, r, several=r in ("pretest", "covariates"))
    kw: dict[str, Any] = {}
    rows, problems = [], []
    cols_present = set(map(str, df.columns))
    claimed = set()  # columns that play a role already: never suggested for another one
    for role in roles_known:
        if role != "treated_label":
            v = given.get(role, getattr(base, role))
            names = _split_names(v) if isinstance(v, str) and role in ("pretest", "covariates") else v
            claimed |= {c for c in ((names,) if isinstance(names, str) else tuple(names or ())) if c in cols_present}
    for role in roles_known:
        if role == "treated_label":
            kw[role] = given.get(role, base.treated_label)
            continue
        multi = role in ("pretest", "covariates")
        if role in given:
            v = given[role]
            if multi:
                v = _split_names(v) if isinstance(v, str) else tuple(v)
            elif isinstance(v, str) and v.strip().lower() in NONE_WORDS:
                v = None
            kw[role] = v
            names = v if multi else ((v,) if v else ())
            for c in names:
                if c not in cols_present:
                    problems.append(_missing_named(df, role, c))
            rows.append((role, ", ".join(names), "given" if names else "given: none"))
            if not names and role in require:
                problems.append(Problem("error", "required role", f"the {role} column is required for this analysis "
                                        f"({flag_for(role)} none was given)", None, f"{flag_for(role)} COLUMN"))
            elif not names and role == "school":
                problems.append(Problem("warning", "no school", "no school column (--school none): standard errors "
                                        "are clustered by student, which understates them when students in a school "
                                        "resemble each other", None, "--school COLUMN"))
            continue
        default = getattr(base, role)
        names = default if multi else ((default,) if default else ())
        if role in _RCT_ONLY and design != "rct":
            names = ()
        present = tuple(c for c in names if c in cols_present)
        absent = [c for c in names if c not in cols_present]
        kw[role] = present if multi else (present[0] if present else None)
        rows.append((role, ", ".join(present), "default" if present else ("default absent" if absent else "not used")))
        for c in absent:
            free = [x for x in df.columns if x not in claimed]
            near = _near_namesake(c, free)
            if near is not None or role in require:
                hint = near or (suggest(c, free) or [None])[0]
                did = f"; {hint!r} looks like it" if hint else ""
                flag = flag_for(role)
                if multi:
                    fix = f"{flag} {_q(','.join([*present, *( [hint] if hint else [])]))}" if hint else f"{flag} NAMES"
                else:
                    fix = f"{flag} {_q(hint)}" if hint else f"{flag} COLUMN"
                if role not in require:
                    fix += f" (or {flag} none)"
                problems.append(Problem("error", "missing column",
                                        f"{role} not given and the default {c!r} is not in the data{did}", c, fix))
        if absent and not present and role not in require and not any(p.column in absent for p in problems):
            problems.append(Problem("warning", "absent role", _ABSENT.get(role, f"no {role} column")
                                    + f" (default {', '.join(map(repr, absent))} not in the data)", None,
                                    f"{flag_for(role)} COLUMN, or {flag_for(role)} none to silence this"))
        elif absent and present:
            left = [c for c in absent if not any(p.column == c for p in problems)]
            if left:
                problems.append(Problem("warning", "absent role", f"default {role} {', '.join(map(repr, left))} not in "
                                        f"the data: left out", None, f"{flag_for(role)} NAMES"))
    roles = pd.DataFrame(rows, columns=["role", "column", "source"])
    return Columns(**kw), roles, problems


def _explicit_roles(df, columns: Columns, require) -> tuple[Columns, pd.DataFrame, list[Problem]]:
    problems, rows = [], []
    roles = columns.roles()
    for role in [f.name for f in fields(Columns) if f.name != "treated_label"]:
        names = roles.get(role, ())
        rows.append((role, ", ".join(names), "given" if names else "not used"))
        for c in names:
            if c not in df.columns:
                problems.append(_missing_named(df, role, c))
        if not names and role in require:
            problems.append(Problem("error", "required role", f"the {role} column is required for this analysis; name it",
                                    None, f"{flag_for(role)} COLUMN"))
    return columns, pd.DataFrame(rows, columns=["role", "column", "source"]), problems


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------
def _examples(values, k: int = 3) -> str:
    return ", ".join(repr(v) for v in list(dict.fromkeys(map(str, values)))[:k])


def _rows(df: pd.DataFrame, mask: np.ndarray, k: int = 3) -> str:
    """Where the rows are: file row numbers when read from a file, else index labels."""
    from .readers import file_rows

    pos = np.flatnonzero(mask)[:k]
    lines = file_rows(df, pos)
    if lines is not None:
        return "file row(s) " + ", ".join(map(str, lines))
    return "index " + ", ".join(map(str, df.index[pos]))


def _present(cols: Columns, df: pd.DataFrame) -> Columns:
    """The roles whose columns exist (so that every other problem is still listed)."""
    kw = {}
    for f in fields(Columns):
        v = getattr(cols, f.name)
        if f.name == "treated_label":
            kw[f.name] = v
        elif isinstance(v, tuple):
            kw[f.name] = tuple(c for c in v if c in df.columns)
        else:
            kw[f.name] = v if v in df.columns else None
    return Columns(**kw)


def _value_problems(df: pd.DataFrame, cols: Columns, design: str, arms: pd.Series | None = None) -> list[Problem]:
    out: list[Problem] = []
    roles = cols.roles()
    numeric = {}
    for role in ("outcome", "pretest", "weight"):
        for c in roles.get(role, ()):
            s = df[c]
            if is_date_column(s):
                out.append(Problem("error", "non-numeric", date_column_message(c, role, s), c,
                                   "format the cells as numbers, or name the right column", int(s.notna().sum())))
                continue
            if pd.api.types.is_bool_dtype(s):
                x = s.astype(float)
            elif pd.api.types.is_numeric_dtype(s):
                x = s  # numbers already (to_numeric would copy them unchanged): none can be text
            else:
                x = pd.to_numeric(s, errors="coerce")
            bad = (x.isna() & s.notna()).to_numpy() if x is not s else None
            if bad is not None and bad.any():
                vals = s[bad].astype(str).str.strip()
                na_like = vals.str.lower().isin(NA_LIKE).all()
                codes = list(dict.fromkeys(vals))[:3]
                fix = f"--na {_q(','.join(codes))} if they mean missing" if na_like else "correct or remove those values"
                out.append(Problem("error", "non-numeric", f"column {c!r} ({role}) must be numeric: {int(bad.sum()):,} "
                                   f"row(s) hold text such as {_examples(vals)} ({_rows(df, bad)})", c, fix, int(bad.sum())))
            # the numbers among text and infinities are checked too (every problem at once: before 2026-12-04
            # an outlier beside a text cell showed only once the text was fixed)
            xv = x.to_numpy(dtype=float, na_value=np.nan)
            inf = np.isinf(xv)
            if inf.any():
                out.append(_infinite(df, c, role, inf))
                xv = np.where(inf, np.nan, xv)
            numeric[c] = (role, xv)
    for c in roles.get("covariates", ()):  # a covariate of numbers (text ones are categories)
        if is_date_column(df[c]):
            out.append(Problem("error", "non-numeric", date_column_message(c, "covariates", df[c]), c,
                               DATE_COVARIATE_FIX, int(df[c].notna().sum())))
        elif pd.api.types.is_float_dtype(df[c]):
            inf = np.isinf(df[c].to_numpy(dtype=float, na_value=np.nan))
            if inf.any():
                out.append(_infinite(df, c, "covariates", inf))
    if cols.weight and cols.weight in numeric:
        w = numeric[cols.weight][1]
        neg = w < 0
        if neg.any():
            out.append(Problem("error", "negative weight", f"column {cols.weight!r} (weight): {int(neg.sum()):,} row(s) "
                               f"are negative ({_rows(df, neg)})", cols.weight, "correct them", int(neg.sum())))
        if design == "rct":
            out.append(Problem("error", "weights unsupported", f"column {cols.weight!r} (weight): randomized-trial "
                               "analyses do not use analysis weights", cols.weight, "leave out --weight"))
    if cols.treatment:
        out += _treatment_problems(df, cols)
    out += _outliers(df, cols, numeric)
    for role in ("covariates", "grade", "subject", "school", "block", "takeup"):
        for c in roles.get(role, ()):
            out += _mixed_codes(df, c, role)
    for role in ("pretest", "covariates"):
        for c in roles.get(role, ()):
            if _varies(df[c]):
                continue
            vals = df[c].dropna()
            if len(vals) and vals.nunique() == 1:
                rest = [x for x in roles[role] if x != c]
                one = as_written(vals.iloc[0])
                out.append(Problem("warning", "constant", f"column {c!r} ({role}) holds one value ({one!r}) in "
                                   "every row: it carries no information", c,
                                   f"{flag_for(role)} {_q(','.join(rest)) if rest else 'none'}"))
    if design == "matched" and cols.school in df.columns:
        out += _one_school(df[cols.school], cols.school)
        if cols.treatment in df.columns:
            out += _mixed_schools(df, cols)
    if design == "rct" and cols.school in df.columns and cols.treatment in df.columns:
        out += _randomized_within_schools(df, cols, arms)
    if (design == "rct" and cols.school in df.columns and cols.block in df.columns and cols.treatment in df.columns
            and cols.block != cols.school):
        out += _schools_across_blocks(df, cols)
    out += _missing_problems(df, cols, design)
    return out


def _infinite(df: pd.DataFrame, c: str, role: str, inf: np.ndarray) -> Problem:
    """The error for the infinite values (``inf``, a row mask) of column ``c``, naming their rows."""
    return Problem("error", "infinite", f"column {c!r} ({role}): {int(inf.sum()):,} row(s) are infinite "
                   f"({_rows(df, inf)})", c, "correct or remove those values", int(inf.sum()))


def _treatment01(df: pd.DataFrame, cols: Columns) -> pd.Series | None:
    """The treatment read as 0/1 (missing where unreadable), or None when the column cannot be
    read (the treatment check says why)."""
    try:
        return _coerce_treatment(df[cols.treatment], cols.treatment, cols.treated_label)[0]
    except DataError:
        return None


def _randomized_within_schools(df: pd.DataFrame, cols: Columns, arms: pd.Series | None = None) -> list[Problem]:
    """A note when a trial's treatment varies within schools (:func:`pleval.data.school_arms`;
    ``arms``: a multi-arm trial's arms, when the treatment column reads them as control / any arm):
    students were randomized within them (a blocked or individual trial), which the cluster
    analysis, ``pleval rct``'s default, refuses (:func:`pleval.rct.analyze_rct`,
    :func:`pleval.multiarm.analyze_multiarm`)."""
    arm = _treatment01(df, cols) if arms is None else arms
    if arm is None:
        return []
    mixed = school_arms(df[cols.school], arm)[1]
    if not len(mixed):
        return []
    shown = ", ".join(repr(as_written(s)) for s in mixed[:3])
    varies = "varies" if arms is None else "holds more than one arm"
    return [Problem("note", "randomized within schools", f"column {cols.treatment!r} (treatment) {varies} within "
                    f"{len(mixed):,} school(s) of column {cols.school!r} ({shown}{', ...' if len(mixed) > 3 else ''}): "
                    "a trial that randomized students within schools is a blocked or individual design; the cluster "
                    "design (pleval rct's default) assigns whole schools and stops on it", cols.treatment,
                    "pleval rct --design blocked (the schools as blocks) or --design individual", len(mixed))]


def _mixed_schools(df: pd.DataFrame, cols: Columns) -> list[Problem]:
    """A warning when a matched design's school holds both PL and comparison students (in any
    subject): those comparison students may be touched by the program (spillover, which pulls
    the effect toward zero); such a school does not play placebo (its comparison students stay in
    the placebo rounds' pool)."""
    t = _treatment01(df, cols)
    if t is None:
        return []
    mixed = school_arms(df[cols.school], t)[1]
    if not len(mixed):
        return []
    codes, ids = factorized(df[cols.school])
    t = t.to_numpy(dtype=float)
    ok = (codes >= 0) & ~np.isnan(t)
    at = ids.get_indexer(mixed)  # each mixed school's PL and comparison rows
    pl = np.bincount(codes[ok], weights=t[ok], minlength=len(ids))[at]
    comp = np.bincount(codes[ok], minlength=len(ids))[at] - pl
    shown = ", ".join(f"{as_written(s)!r} ({int(p):,} PL, {int(c):,} comparison rows)"
                      for s, p, c in zip(mixed[:3], pl, comp))
    n_comp = int(comp.sum())
    return [Problem("warning", "mixed school", f"column {cols.school!r} (school): {len(mixed):,} school(s) have both "
                    f"PL and comparison students ({shown}{', ...' if len(mixed) > 3 else ''}): comparison students "
                    "who share a school (or are PL in another subject) may be touched by the program, which pulls "
                    "the effect toward zero; such a school does not play placebo (its comparison students stay in "
                    "the placebo rounds' pool)", cols.school,
                    "leave those schools' comparison rows out, or check the treatment coding", n_comp)]


def _schools_across_blocks(df: pd.DataFrame, cols: Columns) -> list[Problem]:
    """An error when schools were randomized whole (the treatment constant within each) and a
    school appears in more than one block: the cluster analysis, a trial's default, needs schools
    nested in blocks (:func:`pleval.rct.analyze_rct` stops on it); most often school codes that
    restart in each block."""
    keep = df[cols.school].notna() & df[cols.block].notna() & df[cols.treatment].notna()
    d = df.loc[keep, [cols.school, cols.block, cols.treatment]]
    if (d.groupby(cols.school, sort=False, observed=True)[cols.treatment].nunique() > 1).any():
        return []  # students assigned within schools: not a cluster trial
    bad = schools_across_blocks(d, cols.school, cols.block)
    if not len(bad):
        return []
    shown = ", ".join(repr(as_written(s)) for s in bad[:3])
    return [Problem("error", "schools across blocks", f"column {cols.school!r} (school): {len(bad):,} school(s) appear in "
                    f"more than one {cols.block!r} ({shown}{', ...' if len(bad) > 3 else ''}), but a cluster-randomized "
                    "analysis needs schools nested in blocks", cols.school,
                    "make school ids unique across blocks (school codes that restart in each block: combine block and "
                    "school), or check the block column", len(bad))]


def _one_school(s: pd.Series, c: str) -> list[Problem]:
    """An error when every row with a school is in one school: a matched design's effect is
    clustered by school (its standard errors need at least two)."""
    known = s.notna().to_numpy()
    if not known.any():
        return []  # (every row missing: the missing-values check says so)
    first = s.iloc[int(known.argmax())]
    if not bool(((s == first).to_numpy(dtype=bool, na_value=False) | ~known).all()):
        return []
    return [Problem("error", "one school", f"column {c!r} (school) holds one school ({as_written(first)!r}) in every "
                    "row: the matched effect's standard errors are clustered by school and need at least 2 schools "
                    "(PL and comparison students in other schools)", c, "--school COLUMN (the column naming each "
                    "student's school)")]


def _varies(s: pd.Series) -> bool:
    """Whether a column of numpy integers or floats holds two different values: its smallest
    non-missing value is below its largest (a quick test before counting distinct values);
    False for any other column."""
    x = s.to_numpy() if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf" else None
    return x is not None and x.size > 0 and bool(np.fmin.reduce(x) < np.fmax.reduce(x))


def checked_data(df: pd.DataFrame, columns: Columns, checked: CheckReport | None = None) -> Validated:
    """``df`` checked as :func:`check` checks it, for an analysis of every row of a frame
    (:func:`pleval.monitor.effects_over_time`): by the report ``checked`` of ``check(df, columns)``
    (its warnings shown by the caller) while ``df`` is unchanged since (:func:`current_report`),
    else by a new one whose warnings are issued as :class:`PlevalWarning`; its first error raised
    (:meth:`CheckReport.raise_errors`). Returns
    the validated data: the check's own record when it kept it, else :func:`~pleval.data.validate`'s."""
    import warnings

    from .errors import PlevalWarning

    if checked is None:
        checked, new = check(df, columns, keep_validated=True), True
    else:  # a report of a frame changed since: checked again (with a warning), its warnings issued
        fresh = current_report(df, checked, "matched", stacklevel=4)
        checked, new = fresh, fresh is not checked
    checked.raise_errors()
    for p in checked.warnings if new else ():
        warnings.warn(p.line, PlevalWarning, stacklevel=3)
    return checked.validated(df, checked.columns)


def warn_values(df: pd.DataFrame, cols: Columns) -> None:
    """Issue the outlier and mixed-code findings of ``df`` as :class:`PlevalWarning` (for entry
    points such as :func:`pleval.match` that take a frame without :func:`check`)."""
    import warnings

    from .errors import PlevalWarning

    cols = _present(cols, df)
    numeric = {}
    for role in ("outcome", "pretest"):
        for c in cols.roles().get(role, ()):
            x = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            numeric[c] = (role, x)
    found = _outliers(df, cols, numeric)
    for role in ("covariates", "grade", "subject", "school", "block"):
        for c in cols.roles().get(role, ()):
            found += _mixed_codes(df, c, role)
    for p in found:
        warnings.warn(p.line, PlevalWarning, stacklevel=3)


def _treatment_problems(df, cols: Columns) -> list[Problem]:
    t = cols.treatment
    s = df[t]
    vals = pd.unique(s.dropna())
    shown = sorted(map(str, vals))[:6]
    label = cols.treated_label
    if label is not None:
        if match_label(vals, label) is None:
            return [Problem("error", "treatment", f"column {t!r} (treatment): treated label {label!r} does not occur; "
                            f"values are {shown}", t, f"--treated-label {_q(shown[-1]) if shown else 'VALUE'}")]
        if len(vals) != 2:
            folded = {str(v).strip().casefold() for v in vals}
            same = " (they differ only in letter case or spaces: make the spellings agree)" if len(folded) == 2 else ""
            return [Problem("error", "treatment", f"column {t!r} (treatment) must hold exactly two values; found "
                            f"{len(vals)}: {shown}{same}", t, "recode the column to two values")]
        return []
    if pd.api.types.is_bool_dtype(s):
        return []
    if pd.api.types.is_numeric_dtype(s):  # numbers already (to_numeric would copy them unchanged)
        if set(vals) <= {0, 1}:
            return []
    else:
        x = pd.to_numeric(s, errors="coerce")
        if not (x.isna() & s.notna()).any() and set(x.dropna().unique()) <= {0, 1}:
            return []
    if set(s.dropna().astype(str).str.strip().str.lower().unique()) <= {"true", "false"}:
        return []
    if len(vals) == 2:
        if pd.to_numeric(pd.Series(shown), errors="coerce").notna().all():  # codes such as 1/2: no guess
            fix = f"--treated-label {_q(shown[0])} or --treated-label {_q(shown[1])}, whichever code means PL"
        else:
            guess = next((v for v in shown if str(v).strip().lower() in ("y", "yes", "pl", "t", "treated", "treatment")),
                         None)
            fix = f"--treated-label {_q(guess or shown[-1])}"
        return [Problem("error", "treatment", f"column {t!r} (treatment) holds two values {shown}, not 0/1: say which one "
                        "means treated", t, fix)]
    counts = s.value_counts()
    rare = [v for v in counts.index[counts <= 3] if counts.size > 2]  # a stray value: a total row, a typo
    stray = (f"; {', '.join(repr(as_written(v)) for v in rare[:3])} only in {_rows(df, s.isin(rare).to_numpy())} "
             "(a total or note row?)") if rare and len(rare) < counts.size - 1 else ""
    return [Problem("error", "treatment", f"column {t!r} (treatment) must be 0/1, True/False or two labels; found "
                    f"{len(vals)} distinct values such as {shown[:4]}{stray}", t,
                    "recode the column to two values (a multi-arm trial: pleval rct --control VALUE)",
                    int(s.notna().sum()))]


def _cells(df, cols: Columns) -> np.ndarray:
    """A code per row for its grade × subject cell (missing keys a cell of their own), below the
    number of rows (the subject × grade numbering, renumbered in order of appearance when the
    product of their numbers of levels is not)."""
    code = np.zeros(len(df), dtype=np.int64)
    for c in (cols.subject, cols.grade):
        if c and c in df.columns:
            k, levels = factorized(df[c], use_na_sentinel=False)
            code = code * len(levels) + k
    return code if code.max(initial=0) < len(code) else pd.factorize(code)[0]


def _median(v: np.ndarray) -> float:
    """The median of the non-missing values of ``v`` (``np.median``); NaN when there are none."""
    v = v[~np.isnan(v)]  # a copy: the median may reorder it
    return float(np.median(v, overwrite_input=True)) if v.size else np.nan


PILED_SHARE = 0.2
"""A grade × subject cell with at least this share of its outcome values at the cell's maximum (or
minimum), among ten or more distinct values, is a ceiling (floor): warned of by :func:`_outliers`."""


def _distinct_at_least(v: np.ndarray, k: int, head: int = 1024) -> bool:
    """Whether ``v`` holds at least ``k`` distinct values: found among its first ``head`` values
    when they hold as many (those are among ``v``'s), else counted in all of ``v`` (a sort of an
    83,000-value cell, 3-7 ms, against 0.02 ms for the first 1,024)."""
    return np.unique(v[:head]).size >= k or np.unique(v).size >= k


def _piled_up(v: np.ndarray) -> tuple[float, str]:
    """The larger share of a cell's values at its maximum or minimum, and which (ten or more
    distinct values: a score, not a rating scale or a 0/1 outcome)."""
    v = v[np.isfinite(v)]
    if v.size < 20 or not _distinct_at_least(v, 10):
        return 0.0, ""
    top, bottom = float(np.mean(v == v.max())), float(np.mean(v == v.min()))
    return (top, "maximum") if top >= bottom else (bottom, "minimum")


SCALE_K = 10.0
"""A grade × subject cell whose robust SD is more than this many times the median cell's (or less
than its 1/SCALE_K) is flagged by :func:`_scale_cells`: scores of one cell on another scale."""


def _scale_cells(df, keys: list[str], cols: Columns, c: str, role: str, spread: np.ndarray,
                 first: np.ndarray) -> list[Problem]:
    """A warning naming the grade × subject cells of column ``c`` whose robust SD (``spread``,
    one per cell; ``first``: a row of each) differs from the median cell's by more than
    :data:`SCALE_K` times — a grade's scores on another scale (0–1 against 100–300): the outlier
    check, within cells, cannot see it, and a model without grade terms mixes the scales."""
    ok = np.isfinite(spread) & (spread > 0)
    if ok.sum() < 2:
        return []
    typical = float(np.median(spread[ok]))
    odd = ok & ((spread > SCALE_K * typical) | (spread < typical / SCALE_K))
    if not odd.any():
        return []
    names = [cols.subject if k == "subject" else cols.grade for k in keys]
    shown = [", ".join(f"{n} {as_written(df[n].iloc[i])}" for n in names) + f" (robust SD {spread[j]:.3g})"
             for j, i in zip(np.flatnonzero(odd)[:3], first[odd][:3])]
    return [Problem("warning", "scale", f"column {c!r} ({role}): the spread of {int(odd.sum())} cell(s) differs from "
                    f"the typical cell's (robust SD {typical:.3g}) by more than {SCALE_K:g} times: {'; '.join(shown)}; "
                    "scores on another scale in those cells?", c,
                    "put every grade on one scale (or analyse them apart)", None)]


def _outliers(df, cols: Columns, numeric: dict) -> list[Problem]:
    """Outcome, pretest and weight values beyond median ± OUTLIER_K·1.4826·MAD of their
    grade × subject cell: ``|x − m| / (1.4826·median(|x − m|)) > OUTLIER_K`` with ``m`` the
    cell's median (non-missing values; a cell whose MAD is 0 flags nothing). The rows are
    sorted by cell once; each cell is then a slice of each column so sorted. The cells' robust
    SDs also give :func:`_scale_cells`' warning for the scores (kind "scale")."""
    # scores and weights only: covariates such as earnings are legitimately skewed
    cand = dict(numeric)
    if not cand:
        return []
    cell = _cells(df, cols)
    keys = [k for k, c in (("subject", cols.subject), ("grade", cols.grade)) if c and c in df.columns]
    where = f"of their {' × '.join(reversed(keys))} cell" if keys else "of the column"
    order = np.argsort(cell.astype(np.int16) if cell.max(initial=0) < 2**15 else cell, kind="stable")  # int16: radix
    size = np.bincount(cell)
    bounds = np.concatenate([[0], np.cumsum(size[size > 0])])  # the cells in code order, as sorted
    out = []
    for c, (role, x) in cand.items():
        xs = x[order]
        flag_sorted = np.zeros(len(x), dtype=bool)
        spread, piled = [], []
        for lo, hi in zip(bounds[:-1], bounds[1:]):  # a handful of cells
            v = xs[lo:hi]
            if role == "outcome":
                piled.append(_piled_up(v))
            dev = np.abs(v - _median(v))
            mad = _median(dev) * 1.4826
            spread.append(mad)
            with np.errstate(invalid="ignore", divide="ignore"):
                flag_sorted[lo:hi] = np.isfinite(v) & (mad > 0) & (dev / mad > OUTLIER_K)
        if role != "weight":
            out += _scale_cells(df, keys, cols, c, role, np.array(spread), order[bounds[:-1]])
        hit = [(share, end, i) for (share, end), i in zip(piled, order[bounds[:-1]]) if share >= PILED_SHARE]
        if hit:
            share, end, _ = max(hit)
            cells = f"{' × '.join(reversed(keys))} cell(s)" if keys else "the column"
            limit, side = ("ceiling", "above") if end == "maximum" else ("floor", "below")
            out.append(Problem("warning", "ceiling", f"column {c!r} ({role}): in {len(hit)} {cells} at least "
                               f"{PILED_SHARE:.0%} of the scores sit at the {end} (up to {share:.0%}): a {limit} hides "
                               f"how far those students are {side} it, so effects there are understated, and the "
                               "outlier rule's robust SD shrinks (values it flags may be genuine)", c,
                               f"read effects with the {limit} in mind (a score without it, or a censored-outcome "
                               "model)", None))
        flag = np.zeros(len(x), dtype=bool)
        flag[order] = flag_sorted
        if flag.any():
            vals = x[flag]
            out.append(Problem(
                "warning", "outlier",
                f"column {c!r} ({role}): {int(flag.sum()):,} value(s) lie more than {OUTLIER_K:g} robust SDs "
                f"(1.4826·MAD) from the median {where}, e.g. {', '.join(f'{v:.6g}' for v in vals[:3])} "
                f"({_rows(df, flag)}); they move means, SDs and effect sizes", c,
                "correct or remove those rows (declare missing-value codes with --na)", int(flag.sum())))
    return out


def _mixed_codes(df, c: str, role: str) -> list[Problem]:
    s = df[c]
    if pd.api.types.is_numeric_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
        return []
    valid = s.notna().to_numpy()
    if isinstance(s.dtype, pd.StringDtype):  # text: strip each distinct value once, not each row
        codes, written = factorized(s)
        written = pd.Series(written)
        distinct = written.str.strip()
        levels = pd.unique(distinct)
    else:  # Python objects: 1, 1.0 and True are one key to a hash table, yet print differently
        codes = np.where(valid, np.arange(len(s)), -1)
        written = s.astype(str)
        distinct = written.str.strip()
        levels = pd.unique(distinct[valid])
        written = pd.Series(pd.unique(written[valid]))
    if not len(levels):
        return []
    lev_num = pd.to_numeric(pd.Series(levels), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    text_levels = levels[np.isnan(lev_num)]
    if isinstance(s.dtype, pd.StringDtype):  # the distinct values read as numbers (isin over Arrow text makes a
        # scalar of each text level: 8 ms for 2,000 school ids)
        is_text = np.isnan(pd.to_numeric(distinct, errors="coerce").to_numpy(dtype=float, na_value=np.nan))
    else:
        is_text = distinct.isin(set(text_levels)).to_numpy()
    bad = valid & is_text[codes]
    n_text, n = int(bad.sum()), int(valid.sum())
    out = []
    if 0 < n_text <= n / 2:
        nums = sorted(set(lev_num[~np.isnan(lev_num)]))[:4]
        shown = _examples(distinct.to_numpy()[codes[bad]])
        out.append(Problem("warning", "mixed codes",
                           f"column {c!r} ({role}) mixes numbers ({', '.join(f'{v:g}' for v in nums)}, ...) with text "
                           f"in {n_text:,} row(s) such as {shown} ({_rows(df, bad)}): each text becomes a "
                           "category of its own", c,
                           (f"--na {_q(','.join(map(str, text_levels[:3])))} if they mean missing"
                            if pd.Series(text_levels).astype(str).str.strip().str.lower().isin(NA_LIKE).all()
                            else "recode the text to the numeric codes"), n_text))
    # every spelling as written, however many (school ids run to thousands): one vectorized pass
    # over the distinct values; a group of spellings is shown together, e.g. 'SCH0001' beside
    # 'sch0001' or 'SCH0001 ' (a text file's cells are trimmed as read; a Parquet file's are not),
    # or a number written two ways, '3' beside '03' or '3.0' (a text column: two exports merged)
    folded = written.str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
    as_number = pd.to_numeric(folded, errors="coerce")
    folded = folded.where(as_number.isna(), as_number.map(lambda v: f"{v:.15g}"))
    clash = folded.duplicated(keep=False).to_numpy()
    if not clash.any():
        return out
    groups = written[clash].groupby(folded[clash].to_numpy(), sort=False).agg(list)
    shown = "; ".join(_examples(g, 4) for g in groups.iloc[:2])
    more = f"; and {len(groups) - 2:,} more value(s) spelled several ways" if len(groups) > 2 else ""
    return out + [Problem("warning", "mixed codes", f"column {c!r} ({role}) spells one value several ways "
                          f"({shown}{more}): each spelling becomes a category of its own", c,
                          "make the spellings agree")]


def _arm_rows(df, cols: Columns) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of the treated arm and of the comparison arm (rows without a treatment in
    neither) when the treatment column reads as two arms (:func:`pleval.data._coerce_treatment`),
    else None (its own check reports why)."""
    t = cols.treatment
    if not t or t not in df.columns:
        return None
    try:
        coded = _coerce_treatment(df[t], t, cols.treated_label)[0]
    except DataError:
        return None
    return (coded == 1).to_numpy(), (coded == 0).to_numpy()


def _missing_problems(df, cols: Columns, design: str) -> list[Problem]:
    out = []
    roles = cols.roles()
    arms_of = _arm_rows(df, cols)
    for role in ("treatment", "pretest", "covariates", "school", "block", "subject", "grade", "weight", "takeup",
                 "student_id"):
        for c in roles.get(role, ()):
            miss = df[c].isna().to_numpy()
            n = int(miss.sum())
            if n:
                arms = ""
                if arms_of is not None and role != "treatment":  # missing in one arm only is another problem than both
                    treated, comparison = arms_of
                    n_t, n_c = int((miss & treated).sum()), int((miss & comparison).sum())
                    only = ": the treated arm only" if n_t == n else ": the comparison arm only" if n_c == n else ""
                    arms = (f" ({n_t:,} of {int(treated.sum()):,} treated, {n_c:,} of {int(comparison.sum()):,} "
                            f"comparison rows{only})")
                if role == "takeup" and design == "rct":
                    out.append(Problem("warning", "missing values", f"column {c!r} ({role}): {n:,} row(s) are missing{arms}: "
                                       "the ITT keeps them; the complier (CACE) estimate is that of the rows with take-up "
                                       "known", c, "fill them in (0 for a student who could not take the program up)", n))
                    continue
                if design == "rct" and role in ("pretest", "covariates", "grade", "student_id"):
                    out.append(Problem("warning", "missing values", f"column {c!r} ({role}): {n:,} row(s) are missing{arms}: "
                                       "randomized all the same, they are left out of the analytic sample and counted as "
                                       "attrition", c, "fill them in, or accept the attrition", n))
                    continue
                out.append(Problem("warning", "missing values", f"column {c!r} ({role}): {n:,} row(s) are missing{arms} "
                                   "and will be dropped (counted in the report)", c, "fill them in, or accept the drop",
                                   n))
    n = int(df[cols.outcome].isna().sum()) if cols.outcome else 0
    if n:
        out.append(Problem("note", "missing outcome", f"column {cols.outcome!r} (outcome): {n:,} row(s) have no outcome; "
                           "kept for attrition, left out of outcome analyses", cols.outcome, "", n))
    return out


def _values_and_validation(df, cols: Columns, require, design: str, found: list[Problem],
                           arms: pd.Series | None = None, ahead: bool = False
                           ) -> tuple[list[Problem], list[Problem], Validated | None]:
    """The value problems (:func:`_value_problems`) and then :func:`_validation_problem` given every
    problem before it, as one after the other, computed side by side
    (:func:`pleval._workers.thread_map`, where a core is free) when ``found`` holds no error: the
    validation then runs whatever the value checks find, and is set aside (an exception it raised
    too) when they find an error. Each is computed as alone, so the results are those of the loop.
    ``ahead``: the student ids factorized ahead once validated (:func:`check`'s ``_ids_ahead``)."""
    present = _present(cols, df)
    if any(p.level == "error" for p in found):
        return _value_problems(df, present, design, arms), _duplicate_ids(df, cols, present, design), None
    from ._workers import side_by_side

    def validation():
        try:
            return _validation_problem(df, cols, require, [], design, ahead), None
        except Exception as exc:  # raised only if the value checks find no error
            return None, exc

    values, (done, exc) = side_by_side(partial(_value_problems, df, present, design, arms), validation)
    if any(p.level == "error" for p in values):
        return values, _duplicate_ids(df, cols, present, design), None
    if exc is not None:
        raise exc
    return values, *done


def _duplicate_ids(df: pd.DataFrame, cols: Columns, present: Columns, design: str) -> list[Problem]:
    """Duplicated student ids (per subject and term or grade), as the validation finds them, for
    when other errors set the validation aside: every error is then listed at once (before
    2026-12-04 a duplicated id showed only once the other errors were fixed). ``cols``: the roles
    asked for, ``present``: those in the data; none when a key column asked for is absent (its
    own error), and among the rows the validation keeps (no missing value a role needs)."""
    from .data import DROP_ROLES, _duplicated, duplicate_id_message, student_keys

    keys = student_keys(cols)
    if not cols.student_id or any(k not in df.columns for k in keys):
        return []
    roles = (itt_columns(present) if design == "rct" else present).roles()  # (a trial keeps rows missing take-up)
    needed = [c for role in DROP_ROLES for c in roles.get(role, ()) if c in df.columns]
    kept = df[needed].notna().all(axis=1).to_numpy() & df[cols.student_id].notna().to_numpy()
    dup = np.zeros(len(df), dtype=bool)
    dup[kept] = _duplicated(df[kept], keys)
    if not dup.any():
        return []
    return [Problem("error", "duplicated id", duplicate_id_message(cols, int(dup.sum()), f" ({_rows(df, dup)})"),
                    cols.student_id, n_rows=int(dup.sum()))]


def _validation_problem(df, cols: Columns, require, found: list[Problem],
                        design: str = "matched", ahead: bool = False) -> tuple[list[Problem], Validated | None]:
    """What :func:`pleval.data.validate` still objects to (duplicated ids, no treated rows,
    ...) when no earlier check has already raised it, and its record when it objects to nothing.
    A trial is validated as its ITT is (:func:`pleval.data.itt_columns`: rows missing take-up
    stay), its take-up values checked as the trial checks them."""
    if any(p.level == "error" for p in found):
        return [], None
    try:
        if design == "rct" and cols.takeup and cols.takeup in df.columns:
            _coerce_treatment(df[cols.takeup], cols.takeup, None, "takeup")
            cols = itt_columns(cols)
        v = validate(df, cols, require=[r for r in require if r in cols.roles()])
    except (DataError, DesignError) as exc:
        col = next((c for c in map(str, df.columns) if f"'{c}'" in str(exc)), None)
        return [Problem("error", "validation", str(exc), col)], None
    except PlevalError:  # pragma: no cover - every validation error is a DataError
        raise
    if ahead and v.columns.student_id:
        factorize_ahead(v, v.columns.student_id)
    found = (_one_arm_subjects(v) if cols.subject else _constant_outcomes(v)) if cols.outcome else []
    found += _weightless_arms(v) if cols.weight else []
    return found, None if any(p.level == "error" for p in found) else v


def _one_arm_subjects(v: Validated) -> list[Problem]:
    """A warning for each subject whose usable rows with an outcome hold one arm only, or none
    (left out of the analysis: :func:`pleval.estimate`), or an error when every subject does;
    an error for each analysed subject whose outcome holds one value (no effect size: SD 0)."""
    c, y = v.columns.subject, v.columns.outcome
    subjects, n1, n0, n, codes = subject_arms(v)
    one = [i for i in range(len(subjects)) if not (n1[i] and n0[i])]
    if len(one) == len(subjects):
        return [Problem("error", "no subject with both arms", f"column {c!r} (subject): no subject has both treated and "
                        "comparison rows with an outcome (" + "; ".join(
                            f"{as_written(subjects[i])!r}: " + ("no outcome" if not (n1[i] or n0[i]) else
                                                    "comparison only" if n0[i] else "treated only") for i in one) + ")",
                        c, "check the treatment and outcome columns")]
    out = [Problem("warning", "subject left out", one_arm_subject(c, subjects[i], n1[i], n0[i], n[i]) + "; it is left "
                   "out", c, "check the treatment and outcome columns for that subject, or accept it", int(n[i]))
           for i in one]
    return out + _constant_outcomes(v, codes, subjects, skip=one)


def _weightless_arms(v: Validated) -> list[Problem]:
    """An error for each arm whose analysis weights are all 0 (it would count for nothing)."""
    c = v.columns.weight
    w = v.data[c].to_numpy(dtype=float)
    t = v.data[v.columns.treatment].to_numpy() == 1
    return [Problem("error", "zero weights", f"column {c!r} (weight): every {arm} row has weight 0, so the {arm} group "
                    "counts for nothing", c, "correct the weights") for arm, rows in (("treated (PL)", t), ("comparison", ~t))
            if rows.any() and not (w[rows] > 0).any()]


def _constant_outcomes(v: Validated, codes: np.ndarray | None = None, subjects: list | None = None,
                       skip=()) -> list[Problem]:
    """An error for each subject (``codes``: each row's index in ``subjects``; None: the data
    as one group) whose outcome holds one value in every row with an outcome, but those in
    ``skip``: no variation, so no effect size (SD 0)."""
    y = v.columns.outcome
    values = v.data[y]
    if not pd.api.types.is_numeric_dtype(values):
        return []
    yv = values.to_numpy(dtype=float, na_value=np.nan)
    if codes is None:
        codes, subjects = np.zeros(len(yv), dtype=np.intp), [None]
    ok = codes >= 0
    at, yv = (codes, yv) if ok.all() else (codes[ok], yv[ok])
    lo, hi = np.full(len(subjects), np.inf), np.full(len(subjects), -np.inf)  # smallest and largest (NaN ignored)
    np.fmin.at(lo, at, yv)
    np.fmax.at(hi, at, yv)
    return [Problem("error", "constant outcome", f"column {y!r} (outcome) holds one value ({lo[i]:g}) in every row"
                    + ("" if s is None else f" of subject {s!r}") + " with an outcome: there is no variation for an "
                    "effect (its SD is 0)", y, "check the outcome column" + ("" if s is None else " for that subject"))
            for i, s in enumerate(subjects) if lo[i] == hi[i] and i not in skip]


__all__ = ["check", "checked_data", "CheckReport", "Problem", "resolve_roles", "columns_needed", "id_columns", "suggest", "warn_values", "OUTLIER_K"]
