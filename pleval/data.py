"""Reading and validating student files.

``read_table`` (:mod:`pleval.readers`) reads CSV / TSV / Excel / Parquet / Stata / SPSS
by extension. ``Columns`` names the role each column plays. ``validate`` checks a frame against the roles and returns a
:class:`Validated` record: the clean frame, every dropped row counted with its reason,
the number of missing outcomes (kept: they matter for attrition) and the SHA-256 of the
input. Problems that cannot be fixed by dropping rows raise :class:`DataError` naming
the column and the number of offending rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ._results import Frame, ResultMixin
from .errors import DataError
from .readers import read_table


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a frame's content, for provenance, in one pass over the stored values.

    Hashed in order: the column names, the number of rows, then the index (each level) and
    each column as its name's position, its dtype and its values as stored: the bytes of a
    numeric, boolean or datetime array; for a text column stored by Arrow, which rows are
    missing, each value's length in bytes and the UTF-8 bytes of the values; for any other
    column (Python objects, categoricals, nullable integers), pandas' 64-bit hash of each
    value (``pandas.util.hash_array``). So it changes whenever a value, a column name, a
    dtype or the row order changes (0.0 and -0.0, being stored differently, differ too).
    """
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(f"\x1e{len(df)}".encode())
    index = df.index
    arrays = [("index", index.get_level_values(i)) for i in range(index.nlevels)]
    arrays += [(str(j), df.iloc[:, j]) for j in range(df.shape[1])]
    for tag, s in arrays:
        h.update(f"\x1e{tag}\x1f{s.dtype}\x1e".encode())
        _hash_values(h, s.array if not isinstance(s.dtype, np.dtype) else s.to_numpy())
    return h.hexdigest()


_ARROW_TEXT = {"string", "large_string", "binary", "large_binary"}


def _hash_values(h, values) -> None:
    """Feed one column's values to ``h`` (see :func:`frame_sha256`)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biufcmM":
        h.update(np.ascontiguousarray(values).view(np.uint8))
        return
    if getattr(values.dtype, "storage", None) == "pyarrow" or isinstance(values.dtype, pd.ArrowDtype):
        import pyarrow as pa

        a = pa.array(values)
        chunks = a.chunks if isinstance(a, pa.ChunkedArray) else [a]
        if str(a.type) in _ARROW_TEXT and all(c.buffers()[1] is not None for c in chunks):
            wide = str(a.type).startswith("large_")
            parts = []  # per chunk: its offsets (from its first row) and data buffer
            for c in chunks:
                offsets = np.frombuffer(c.buffers()[1], dtype=np.int64 if wide else np.int32)
                parts.append((offsets[c.offset:c.offset + len(c) + 1], c.buffers()[2]))
            for c in chunks:  # chunk boundaries leave no trace: all validity, all lengths, all bytes
                h.update(c.is_valid().to_numpy(zero_copy_only=False).view(np.uint8))
            for offsets, _ in parts:
                h.update(np.diff(offsets).astype(np.int64))
            for offsets, data in parts:
                if data is not None:
                    h.update(np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]])
            return
    h.update(pd.util.hash_array(np.asarray(values, dtype=object) if isinstance(values, np.ndarray) else values))


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)


def _text_fingerprint(s: pd.Series) -> np.ndarray | None:
    """A 64-bit number per row that equal texts share (from each value's length and its first
    and last 8 bytes), for a text column stored by Arrow; None for any other column."""
    if getattr(s.dtype, "storage", None) != "pyarrow" and not isinstance(s.dtype, pd.ArrowDtype):
        return None
    import pyarrow as pa

    a = pa.array(s.array)
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    if str(a.type) not in _ARROW_TEXT or a.buffers()[1] is None:
        return None
    offsets = np.frombuffer(a.buffers()[1], dtype=np.int64 if str(a.type).startswith("large_") else np.int32)
    offsets = offsets[a.offset:a.offset + len(a) + 1].astype(np.int64)
    data = np.zeros(int(offsets[-1]) + 8, dtype=np.uint8)  # 8 spare bytes: every window below is in bounds
    if a.buffers()[2] is not None:
        data[:-8] = np.frombuffer(a.buffers()[2], dtype=np.uint8)[:int(offsets[-1])]
    words = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # 8 bytes from each byte
    length = np.diff(offsets)
    keep = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
    head = words[offsets[:-1]] & keep[np.minimum(length, 8)]
    tail = np.where(length > 8, words[np.maximum(offsets[1:] - 8, 0)], np.uint64(0))
    return head * _MIX[0] ^ tail * _MIX[1] ^ length.astype(np.uint64) * _MIX[2]


_memo: dict | None = None
"""The codes of the Arrow text columns while :func:`codes_once` is active: the id of a column's
Arrow data (immutable; a frame's shallow copies and row-complete selections share it) to
``[data, lock, dtype, codes, uniques]`` (the data held, so that its id stays its own)."""
_memo_lock = threading.Lock()


def _forget_memo() -> None:
    """In a forked child: no memo and a free lock (the threads that held the parent's block or
    its locks do not exist there, so neither would be let go)."""
    global _memo, _memo_lock
    _memo, _memo_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # (not on Windows)
    os.register_at_fork(after_in_child=_forget_memo)


@contextlib.contextmanager
def codes_once():
    """Within the block, :func:`factorized` codes each Arrow text column once (``pleval.check``'s
    value checks and validation, side by side in two threads, coded the subject column four
    times and the school column three times: 12 ms each at 1M rows). A block entered within
    another shares the outer one's codes."""
    global _memo
    with _memo_lock:
        outer = _memo
        if outer is None:
            _memo = {}
    try:
        yield
    finally:
        if outer is None:
            _memo = None


def factorized(s: pd.Series, use_na_sentinel: bool = True) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(s, use_na_sentinel=use_na_sentinel)``; while a :func:`codes_once` block is
    open (in any thread of the process), for an Arrow text column, the codes of the first call on
    its data (read-only, shared by the calls; a thread asking while another codes the column
    waits for its codes). A column with missing values coded without the sentinel (its own code
    for them) is coded anew."""
    memo, data = _memo, getattr(s.array, "_pa_array", None)
    if memo is None or data is None or not isinstance(s.dtype, pd.StringDtype):
        return pd.factorize(s, use_na_sentinel=use_na_sentinel)
    with _memo_lock:
        entry = memo.get(id(data))
        if entry is None or entry[0] is not data:
            entry = memo[id(data)] = [data, threading.Lock(), None, None, None]
    with entry[1]:
        if entry[2] != s.dtype:  # (not yet coded, or coded for another dtype: its uniques differ)
            codes, uniques = pd.factorize(s)
            codes.flags.writeable = False
            entry[2:] = s.dtype, codes, uniques
        codes, uniques = entry[3:]
    if not use_na_sentinel and codes.min(initial=0) < 0:
        return pd.factorize(s, use_na_sentinel=False)
    return codes, uniques


HEAD_ROWS = 4096
"""The rows :func:`levels_in_head` reads."""


def levels_in_head(codes: np.ndarray, n_levels: int) -> np.ndarray | None:
    """The levels 0..n_levels−1 that occur among integer ``codes`` (−1: none), in order of first
    appearance (``pd.factorize``'s), when every one of them occurs in the first
    :data:`HEAD_ROWS` codes: then read from those rows alone, without finding each level's first
    row among all of them (a subject's cells or groups: 1M codes 1.6 against 4.7 ms); None when
    some level first occurs later."""
    head = codes[:HEAD_ROWS]
    seq = pd.unique(head[head >= 0])
    valid = codes if codes.min(initial=0) >= 0 else codes[codes >= 0]
    return seq if len(seq) == np.count_nonzero(np.bincount(valid, minlength=n_levels)) else None


def student_keys(columns: Columns) -> list[str]:
    """The columns that identify a student's row: the student id, with the subject and the term
    (or, without a time column, the grade) when given; a key repeated is a duplicated id."""
    return [c for c in (columns.student_id, columns.subject, columns.time or columns.grade) if c]


DROP_ROLES = ("treatment", "pretest", "covariates", "school", "block", "subject", "grade", "time", "weight", "takeup",
              "student_id")
"""The roles whose missing values leave a row out of :func:`validate`'s frame (all but the outcome)."""


def duplicate_id_message(columns: Columns, n: int, where: str) -> str:
    """The duplicated-id error of ``n`` rows sharing a :func:`student_keys` key (within subject
    and the time column when given); ``where`` says where, e.g. ``", e.g. sid 4 (file rows 2, 9)"``."""
    within = " within subject" if columns.subject else ""
    within += f" and {columns.time!r}" if columns.time else ""
    return (f"column {columns.student_id!r} (student_id): {n:,} row(s) share a student id{within}{where}; each student "
            "should appear once per subject and term")


def _duplicated(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """``df.duplicated(keys, keep=False)`` as an array. When the first key is Arrow text, rows
    are first compared by a 64-bit mix of its :func:`_text_fingerprint` and the other keys'
    codes: equal keys always mix equally, so only rows whose mix recurs can be duplicates, and
    only those are compared exactly (hashing a million distinct ids is the expensive part). The
    candidates are the rows whose mix's high 32 bits recur (:func:`_recurring`: two 16-bit
    counting passes, no sort of 64-bit integers); the mixes that recur are the equal neighbours
    of those rows' sorted mixes."""
    mix = _text_fingerprint(df[keys[0]])
    if mix is None:
        return df.duplicated(keys, keep=False).to_numpy()
    for c in keys[1:]:
        mix = mix * _MIX[0] + factorized(df[c], use_na_sentinel=False)[0].astype(np.uint64)
    out = np.zeros(len(df), dtype=bool)
    near = _recurring(mix >> np.uint64(32))  # rows whose mix's high half recurs: a few hundred at 1M rows
    s = np.sort(mix[near])
    recur = s[1:][s[1:] == s[:-1]]
    if recur.size:
        cand = near[np.isin(mix[near], recur)]
        out[cand] = df.iloc[cand].duplicated(keys, keep=False).to_numpy()
    return out


def _recurring(key: np.ndarray) -> np.ndarray:
    """The positions (increasing) of the values of ``key`` (integers below 2³²) that occur more
    than once: the equal neighbours in its order by two stable passes over 16-bit digits (numpy
    sorts uint16 by counting, 1M keys 0.02 s; a sort of 64-bit integers 0.05–0.08 s here). The
    passes of :func:`pleval.inference.robust.radix_argsort`, written out: importing that module
    (scipy) is work the checks leave to the import thread."""
    order = np.argsort((key & np.uint64(0xFFFF)).astype(np.uint16), kind="stable")
    order = order[np.argsort((key[order] >> np.uint64(16)).astype(np.uint16), kind="stable")]
    ordered = key[order]
    same = ordered[1:] == ordered[:-1]
    near = np.zeros(len(key), dtype=bool)
    near[1:] |= same
    near[:-1] |= same
    return np.sort(order[near])


def _tuple(v, role: str = "", several: bool = True) -> tuple[str, ...]:
    """A role's column names as a tuple (``None``: none; ``several``: one name or an iterable of
    them), each text: a name that is not (``6`` from a frame read with ``header=None``, a tuple
    of a MultiIndex) raises :class:`DataError` naming the role (before 2026-12-05 "'int' object
    is not iterable")."""
    if v is None:
        return ()
    names = tuple(v) if several and isinstance(v, Iterable) and not isinstance(v, str) else (v,)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise DataError(f"column names must be text: {role} names {bad[0]!r} ({type(bad[0]).__name__}); give the "
                        "frame's columns text names (df.columns = df.columns.astype(str), a MultiIndex's levels joined "
                        "into one) and name them so")
    return names


@dataclass(frozen=True)
class Columns:
    """The role each column plays.

    ``outcome`` and ``treatment`` are required; ``pretest`` may be one name or several
    (the first is *the* pretest used for baseline equivalence); ``covariates`` are further
    baseline variables (numeric or categorical). ``treated_label`` says which value of a
    two-label treatment column means treated (0/1 and True/False need none). ``time`` (a
    year or term) makes the file a panel of student × subject × time rows
    (:mod:`pleval.monitor`).
    """

    outcome: str
    treatment: str
    pretest: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    school: str | None = None
    block: str | None = None
    student_id: str | None = None
    grade: str | None = None
    subject: str | None = None
    weight: str | None = None
    takeup: str | None = None
    time: str | None = None
    treated_label: object = None

    def __post_init__(self):
        for f in fields(self):  # every name checked to be text; pretest and covariates made tuples
            if f.name != "treated_label":
                names = _tuple(getattr(self, f.name), f.name, several=f.name in ("pretest", "covariates"))
                if f.name in ("pretest", "covariates"):
                    object.__setattr__(self, f.name, names)

    @property
    def main_pretest(self) -> str | None:
        return self.pretest[0] if self.pretest else None

    def roles(self) -> dict[str, tuple[str, ...]]:
        """Role -> column names (only roles that are set)."""
        out = {}
        for f in fields(self):
            if f.name == "treated_label":
                continue
            v = getattr(self, f.name)
            v = v if isinstance(v, tuple) else () if v is None else (v,)
            if v:
                out[f.name] = v
        return out

    def replace(self, **changes) -> "Columns":
        return replace(self, **changes)


SAMPLE_COLUMNS = Columns(
    outcome="posttest",
    treatment="treatment",
    pretest=("pretest",),
    covariates=("female", "frl", "ell", "sped", "race"),
    school="school_id",
    student_id="student_id",
    grade="grade",
    subject="subject",
)
"""Roles of ``sample_data/pl_matched_students.csv``."""

RCT_SAMPLE_COLUMNS = SAMPLE_COLUMNS.replace(block="block", takeup="takeup")
"""Roles of ``sample_data/pl_cluster_rct.csv``."""

ROLE_FLAGS = {
    "outcome": "--outcome", "treatment": "--treatment", "pretest": "--pretest", "covariates": "--covariates",
    "school": "--school", "block": "--block", "student_id": "--student-id", "grade": "--grade",
    "subject": "--subject", "weight": "--weight", "takeup": "--takeup", "time": "--time",
    "treated_label": "--treated-label",
}
"""The command-line option that names each role (messages name the option, so that the CLI
and the Python API say the same thing)."""


def flag_for(role: str) -> str:
    return ROLE_FLAGS.get(role, f"--{role.replace('_', '-')}")


NONE_WORDS = ("", "none", "-")
"""Values that mean "no column for this role" when roles come from text (CLI, TOML)."""


def resolve_columns(df: pd.DataFrame, base: Columns, given: dict | None = None) -> tuple[Columns, list[str]]:
    """Column roles for ``df``: the roles in ``given``, others from ``base``.

    ``given`` maps role -> value; ``None`` means "not given" (use ``base``), a word in
    :data:`NONE_WORDS` means "no such column", ``pretest``/``covariates`` accept a
    comma-separated string or a sequence. A role taken from ``base`` whose column is not in
    ``df`` is left out (outcome and treatment are always kept, so validation reports them);
    the returned notes say which. Explicitly given names are kept as they are, so a wrong
    name is reported by :func:`validate`.
    """
    given = {r: v for r, v in (given or {}).items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(Columns)})
    if unknown:
        raise DataError(f"unknown column role(s) {unknown}; roles are {[f.name for f in fields(Columns)]}")
    kw, notes = {}, []
    for f in fields(Columns):
        role = f.name
        if role in given:
            v = given[role]
            if role in ("pretest", "covariates"):
                v = _split_names(v) if isinstance(v, str) else tuple(v)
            elif isinstance(v, str) and v.strip().lower() in NONE_WORDS:
                v = None
            kw[role] = v
            continue
        v = getattr(base, role)
        if role in ("outcome", "treatment", "treated_label") or not v:
            kw[role] = v
        elif isinstance(v, tuple):
            kw[role] = tuple(c for c in v if c in df.columns)
            if len(kw[role]) < len(v):
                notes.append(f"default {role} column(s) {[c for c in v if c not in df.columns]} not in the data; left out")
        elif v in df.columns:
            kw[role] = v
        else:
            notes.append(f"default {role} column {v!r} not in the data; not used")
            kw[role] = None
    return Columns(**kw), notes


def _split_names(text: str) -> tuple[str, ...]:
    if text.strip().lower() in NONE_WORDS:
        return ()
    return tuple(v.strip() for v in text.split(",") if v.strip())

_NUMERIC_ROLES = ("outcome", "pretest", "weight")


def pl_rows_frame(log: Iterable[Mapping]) -> pd.DataFrame:
    """The treated rows left out, one row per reason x subject (``reason``, ``column``,
    ``subject``, ``n_rows``), from a log whose entries carry ``"pl"`` (:func:`pl_by_subject`)."""
    rows = [(e["reason"], e["column"], s, n) for e in log for s, n in e.get("pl", {}).items() if n]
    return pd.DataFrame(rows, columns=["reason", "column", "subject", "n_rows"])


@dataclass(frozen=True, repr=False)
class Validated(ResultMixin):
    """A validated frame and the record of what validation did to it."""

    data: pd.DataFrame = Frame()
    columns: Columns
    dropped: pd.DataFrame = Frame()
    n_input: int
    n_missing_outcome: int
    input_sha256: str
    treated_value: object = 1
    notes: tuple[str, ...] = field(default=())
    dropped_pl: pd.DataFrame = Frame(default=pl_rows_frame([]))
    """The treated (PL) rows among ``dropped``, by subject (:func:`pl_rows_frame`)."""
    pl_schools_dropped: tuple = ()
    """Schools (values of the school column) every PL row of which validation dropped: PL schools
    all the same (VCG matching leaves out their comparison rows)."""

    @property
    def n_rows(self) -> int:
        return len(self.data)

    @property
    def n_dropped(self) -> int:
        return int(self.dropped["n_rows"].sum()) if len(self.dropped) else 0

    def to_frame(self) -> pd.DataFrame:
        summary = pd.DataFrame(
            {
                "reason": ["rows read", "rows kept", "of which missing outcome (kept, counted)"],
                "column": ["", "", self.columns.outcome],
                "n_rows": [self.n_input, self.n_rows, self.n_missing_outcome],
            }
        )
        dropped = self.dropped.assign(reason="dropped: " + self.dropped["reason"])
        return pd.concat([summary, dropped], ignore_index=True)

    def summary(self) -> str:
        lines = [f"Data: {self.n_input:,} rows read, {self.n_rows:,} kept, {self.n_dropped:,} dropped"]
        for r in self.dropped.itertuples():
            lines.append(f"  dropped {r.n_rows:,} row(s): {r.reason} [{r.column}]")
        if self.n_missing_outcome:
            lines.append(
                f"  {self.n_missing_outcome:,} row(s) have no {self.columns.outcome!r} (kept for attrition; "
                "left out of outcome analyses)"
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append(f"  input SHA-256: {self.input_sha256}")
        return "\n".join(lines)


def _coerce_treatment(s: pd.Series, name: str, treated_label, role: str = "treatment") -> tuple[pd.Series, object]:
    """Map a treatment column (or the take-up column: ``role``) to 0/1 (missing stays NaN)."""
    present = s.dropna()
    values = pd.unique(present)
    if treated_label is not None:
        hit = match_label(values, treated_label)  # "Y" typed for Y, 2 for "2", pl for PL (typed on a command line)
        treated_label = treated_label if hit is None else hit
        if hit is None:
            raise DataError(
                f"column {name!r} (treatment): treated label {treated_label!r} does not occur; "
                f"values are {sorted(map(str, values))[:6]}"
            )
        if len(values) != 2:
            raise DataError(
                f"column {name!r} (treatment) must have exactly two values; found {len(values)}: "
                f"{sorted(map(str, values))[:6]}"
            )
        out = s.eq(treated_label).astype(float).where(s.notna())
        return out, treated_label
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float), True
    if pd.api.types.is_numeric_dtype(s):  # numbers already (to_numeric would copy them unchanged)
        if set(values) <= {0, 1}:
            return s.astype(float), 1
    else:
        conv = pd.to_numeric(s, errors="coerce")
        if not (conv.isna() & s.notna()).any() and set(conv.dropna().unique()) <= {0, 1}:
            return conv.astype(float), 1
    lowered = s.astype(str).str.strip().str.lower().where(s.notna())
    if set(lowered.dropna().unique()) <= {"true", "false"}:
        return lowered.eq("true").astype(float).where(s.notna()), True
    n_bad = int(len(present))
    labels = ", or two labels with the treated one given (--treated-label)" if role == "treatment" else ""
    raise DataError(
        f"column {name!r} ({role}) must be 0/1 or True/False{labels}; found {len(values)} distinct value(s) such as "
        f"{sorted(map(str, values))[:4]} in {n_bad:,} rows"
    )


def with_binary_treatment(df: pd.DataFrame, columns: Columns) -> tuple[pd.DataFrame, Columns]:
    """``df`` with the treatment column as 0/1 (missing stays missing, as NaN) and ``columns``
    without a treated label, so that later steps (placebo schools relabel schools; trials validate
    twice) never apply the label a second time, nor compare a missing value with 1 (a nullable
    ``Int64`` or ``boolean`` treatment's ``<NA>``, which stopped :func:`pleval.estimate` with
    pandas' "Cannot mask with non-boolean array" before 2026-12-05). A NumPy column of numbers or
    True/False without a label is returned as it is."""
    if columns.treatment not in df.columns:
        return df, columns
    s = df[columns.treatment]
    if columns.treated_label is None and isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
        return df, columns
    t, _ = _coerce_treatment(s, columns.treatment, columns.treated_label)
    out = df.assign(**{columns.treatment: t})
    out.attrs = dict(df.attrs)
    return out, columns.replace(treated_label=None)


def is_date_column(s: pd.Series) -> bool:
    """Whether ``s`` holds dates or durations (a workbook's date-formatted cells), which
    ``pd.to_numeric`` would turn into nanoseconds rather than refuse."""
    return (pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s)
            or isinstance(s.dtype, pd.PeriodDtype))


def date_column_message(c: str, role: str, s: pd.Series) -> str:
    """The error for a score or covariate column of dates (:func:`is_date_column`)."""
    first = s.dropna()
    example = f" such as {str(first.iloc[0])!r}" if len(first) else ""
    if role == "covariates":  # (a date is neither a number the models can use nor a category)
        return f"column {c!r} ({role}) must be numbers or categories: it holds dates{example}"
    return f"column {c!r} ({role}) must be numeric: it holds dates{example} (date-formatted cells in a workbook?)"


DATE_COVARIATE_FIX = "turn the dates into numbers, such as the year or the days since a fixed date"
"""How to fix a covariate of dates: as nanoseconds since 1970 (about 1.6e18) it made the models'
matrices ill-conditioned and the balance table unreadable (before 2026-12-05 it was used so)."""


def validate(
    df: pd.DataFrame,
    columns: Columns,
    *,
    require: Iterable[str] = ("outcome", "treatment"),
    drop_missing: bool = True,
    both_arms: bool = True,
) -> Validated:
    """Check ``df`` against ``columns`` and return a :class:`Validated` record.

    Raises :class:`DataError` (naming the column and counting rows) for: an empty frame; a
    role in ``require`` that is not set; a named column missing from the data;
    non-numeric outcome/pretest/weight values; infinite outcome/pretest/weight/covariate values
    (before 2026-12-05 an infinite covariate passed); a treatment that is not binary; no treated
    or no comparison units; duplicated student ids within subject (and grade, if given).

    Rows with a missing treatment, pretest, covariate, school, block, subject or grade are
    dropped and counted per reason (``drop_missing=False`` raises instead). Rows with a
    missing outcome are **kept** and counted (``n_missing_outcome``): attrition needs them;
    outcome analyses leave them out and say so. ``both_arms=False`` accepts a file of one arm
    (the PL file of a comparison pool given apart, :mod:`pleval.pool`).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame; got {type(df).__name__}")
    if len(df) == 0:
        raise DataError("the data have no rows")
    columns = as_columns(columns)
    roles = columns.roles()
    for role in require:
        if role not in roles:
            raise DataError(f"the {role} column is required for this analysis; name it ({flag_for(role)} COLUMN)")
    twice = sorted({c for cols in roles.values() for c in cols if list(df.columns).count(c) > 1})
    if twice:
        raise DataError(f"the data name column {', '.join(map(repr, twice))} more than once; rename or delete the "
                        "copies (pleval will not guess which one is meant)")
    missing = [(role, c) for role, cols in roles.items() for c in cols if c not in df.columns]
    if missing:
        role, c = missing[0]
        raise DataError(
            f"column {c!r} ({role}) is not in the data; available columns: {', '.join(map(str, df.columns[:30]))}"
        )
    sha = df.attrs.get("sha256") or frame_sha256(df)
    n_input = len(df)
    out = df.copy(deep=False)  # copy-on-write: a column is copied only if written, never the caller's
    if not out.index.is_unique:  # labels repeated (yearly or district frames concatenated): rows by position
        out = out.reset_index(drop=True)
    elif any(n is not None and n in out.columns for n in out.index.names):  # a level named as a column: unnamed
        out = out.rename_axis(index=[None] * out.index.nlevels)
    notes: list[str] = []

    for role in _NUMERIC_ROLES:
        for c in roles.get(role, ()):
            s = out[c]
            if is_date_column(s):
                raise DataError(date_column_message(c, role, s) + "; format the cells as numbers, or name the right column")
            if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
                conv = pd.to_numeric(s, errors="coerce")
                bad = conv.isna() & s.notna()
                if bad.any():
                    examples = ", ".join(map(repr, s[bad].astype(str).unique()[:3]))
                    raise DataError(
                        f"column {c!r} ({role}) must be numeric: {int(bad.sum()):,} row(s) hold non-numeric "
                        f"values such as {examples}"
                    )
                out[c] = conv.astype(float)
            inf = ~np.isfinite(out[c].to_numpy(dtype=float, na_value=np.nan)) & out[c].notna().to_numpy()
            if inf.any():
                raise DataError(f"column {c!r} ({role}): {int(inf.sum()):,} row(s) are infinite")
    for c in roles.get("covariates", ()):  # a covariate of numbers (text ones are categories) has none either
        if is_date_column(out[c]):
            raise DataError(f"{date_column_message(c, 'covariates', out[c])}; {DATE_COVARIATE_FIX}")
        n_inf = int(np.isinf(out[c].to_numpy(dtype=float, na_value=np.nan)).sum()) if pd.api.types.is_float_dtype(
            out[c]) else 0
        if n_inf:
            raise DataError(f"column {c!r} (covariates): {n_inf:,} row(s) are infinite")

    t_col = columns.treatment
    given = out[t_col]
    coded, treated_value = _coerce_treatment(given, t_col, columns.treated_label)
    # 0/1 already stored as integers (none can be missing): kept as given, so that the validated
    # frame shares the column with the caller's instead of holding a copy of it
    same = columns.treated_label is None and isinstance(given.dtype, np.dtype) and given.dtype.kind in "iu"
    out[t_col] = given if same else coded
    for role in ("takeup",):
        for c in roles.get(role, ()):
            out[c], _ = _coerce_treatment(out[c], c, None, role)

    dropped, dropped_pl = [], []
    keep = pd.Series(True, index=out.index)
    for role in DROP_ROLES:
        for c in roles.get(role, ()):
            miss = out[c].isna() & keep
            if miss.any():
                if not drop_missing:
                    raise DataError(f"column {c!r} ({role}): {int(miss.sum()):,} row(s) have missing values")
                dropped.append({"reason": f"missing {role}", "column": c, "n_rows": int(miss.sum())})
                dropped_pl.append({**dropped[-1], "pl": pl_by_subject(out, (miss & (out[t_col] == 1)).to_numpy(),
                                                                     columns.subject)})
                keep &= ~miss
    if columns.weight:
        neg = (out[columns.weight] < 0) & keep
        if neg.any():
            raise DataError(f"column {columns.weight!r} (weight): {int(neg.sum()):,} row(s) are negative")
    lost = _pl_schools_lost(out, keep, t_col, columns.school) if dropped_pl else ()
    out = out if bool(keep.all()) else out.loc[keep]  # every row kept: no copy of every column
    out[t_col] = out[t_col].astype(int)
    if columns.takeup:
        out[columns.takeup] = out[columns.takeup].astype(int)

    if len(out) == 0:
        why = "; ".join(f"{d['n_rows']:,} row(s) {d['reason']} (column {d['column']!r})" for d in dropped)
        raise DataError(f"no usable rows: every row misses a value it needs ({why}); fill them in, or leave out the "
                        "column's role (e.g. --pretest none)")
    n_t = int(out[t_col].sum())
    if n_t == 0:
        raise DataError(f"column {t_col!r} (treatment): no treated units among the {len(out):,} usable rows")
    if n_t == len(out) and both_arms:
        raise DataError(f"column {t_col!r} (treatment): no comparison units among the {len(out):,} usable rows")

    if columns.student_id:
        keys = student_keys(columns)
        dup = _duplicated(out, keys)
        if dup.any():
            apart = [] if columns.subject else [c for c in out.columns if str(c).strip().casefold() == "subject"
                                                and not _duplicated(out, keys + [c]).any()]
            hint = (f"; they differ in column {apart[0]!r}: name it as the subject column (--subject {apart[0]}), "
                    "and each subject is analysed on its own (--only-subject VALUE for one)") if apart else ""
            raise DataError(duplicate_id_message(columns, int(dup.sum()), _first_shared(df, out, keep, keys, dup)) + hint)

    n_missing_outcome = int(out[columns.outcome].isna().sum())
    if n_missing_outcome == len(out):
        raise DataError(f"column {columns.outcome!r} (outcome): every row is missing")
    dropped_df = pd.DataFrame(dropped, columns=["reason", "column", "n_rows"])
    return Validated(
        data=out,
        columns=columns,
        dropped=dropped_df,
        n_input=n_input,
        n_missing_outcome=n_missing_outcome,
        input_sha256=sha,
        treated_value=treated_value,
        notes=tuple(notes),
        dropped_pl=pl_rows_frame(dropped_pl),
        pl_schools_dropped=lost,
    )


def _pl_schools_lost(out: pd.DataFrame, keep: pd.Series, t_col: str, school: str | None) -> tuple:
    """The schools with a PL row in ``out`` and none among the rows ``keep`` keeps."""
    if not school:
        return ()
    pl = (out[t_col] == 1).to_numpy()
    had = pd.unique(out[school].to_numpy()[pl & ~keep.to_numpy()])
    kept = set(pd.unique(out[school].to_numpy()[pl & keep.to_numpy()]))
    return tuple(x for x in had if not pd.isna(x) and x not in kept)


def _first_shared(df: pd.DataFrame, out: pd.DataFrame, keep: pd.Series, keys: list[str], dup: np.ndarray) -> str:
    """Where the first shared key is, for the duplicate-id error: the key and up to three of its
    rows (file rows when ``df`` was read from a file, else index labels)."""
    from .readers import file_rows

    first = out.iloc[int(np.argmax(dup))]
    same = np.ones(len(out), dtype=bool)
    for k in keys:
        same &= (out[k] == first[k]).to_numpy(dtype=bool, na_value=False)
    at = np.flatnonzero(same)[:3]
    pos = at if len(out) == len(df) else np.flatnonzero(keep.to_numpy())[at]
    lines = file_rows(df, pos)
    where = f"file rows {', '.join(map(str, lines))}" if lines is not None else f"index {', '.join(map(str, df.index[pos]))}"
    key = ", ".join(f"{k} {as_written(first[k])!r}" for k in keys)
    return f", e.g. {key} ({where})"


def as_columns(columns) -> Columns:
    """``columns`` as :class:`Columns`: itself, or a mapping of roles to column names
    (``{"outcome": "posttest", ...}``); anything else, or an unknown role, is a :class:`DataError`."""
    if isinstance(columns, Columns):
        return columns
    if isinstance(columns, Mapping):
        known = {f.name for f in fields(Columns)}
        unknown = sorted(set(columns) - known)
        if unknown:
            raise DataError(f"unknown column role(s) {unknown}; roles are {sorted(known)}")
        return Columns(**columns)
    raise DataError(f"columns must be a pleval.data.Columns or a mapping of roles to column names; got "
                    f"{type(columns).__name__}")


def school_arms(school: pd.Series, arm: pd.Series) -> tuple[pd.Series, pd.Index]:
    """``(arm_of, mixed)``: each school's arm (indexed by the schools in order of appearance; the
    first one of a school holding several) and the schools whose rows hold more than one value of
    ``arm`` (students randomized within schools, or a school split between arms). Rows missing
    the school or the arm are left out. The one test of arms within schools: :func:`pleval.check`'s
    note, the cluster design's error in :func:`pleval.analyze_rct` and
    :func:`pleval.multiarm.analyze_multiarm` (on the arms themselves)."""
    codes, ids = factorized(school)
    arm_codes, arms = pd.factorize(arm)
    ok = (codes >= 0) & (arm_codes >= 0)
    n = max(len(arms), 1)
    pairs = pd.unique(codes[ok].astype(np.int64) * n + arm_codes[ok])  # each (school, arm) held, as first seen
    held, first = np.unique(pairs // n, return_index=True)  # the schools with a row (in order), each one's first pair
    arm_of = pd.Series(np.asarray(arms)[pairs[first] % n], index=ids[held])
    return arm_of, ids[np.flatnonzero(np.bincount(pairs // n, minlength=len(ids)) > 1)]


def schools_across_blocks(df: pd.DataFrame, school: str, block: str) -> pd.Index:
    """The schools of ``df`` that appear in more than one block (a cluster trial needs schools
    nested in blocks; most often school codes that restart in each block)."""
    nb = df.groupby(school, sort=False, observed=True)[block].nunique()
    return nb.index[(nb > 1).to_numpy()]


def randomized_columns(columns: Columns) -> Columns:
    """The roles whose missing values leave a row out of a trial's randomized sample (its
    assignment, school, block or subject unknown: it cannot be counted). A row missing anything
    else was randomized all the same: the ITT leaves it out of the analytic sample and counts it
    as attrition (:func:`itt_columns`)."""
    return columns.replace(pretest=(), covariates=(), grade=None, student_id=None, time=None, takeup=None)


def itt_columns(columns: Columns) -> Columns:
    """The roles whose missing values leave a row out of a trial's ITT: all but take-up, which
    only the complier (CACE) estimate needs (:func:`pleval.analyze_rct` estimates it from the
    rows whose take-up is known)."""
    return columns.replace(takeup=None)


def pl_by_subject(data: pd.DataFrame, pl: np.ndarray, subject: str | None) -> dict[str, int]:
    """How many of the rows marked in ``pl`` (treated rows left out) each subject has, keyed as
    :func:`pleval.estimate` names subjects (``str`` of the value; ``"all"`` without a subject
    column; rows missing their subject are not attributed)."""
    if not pl.any():
        return {}
    if not subject:
        return {"all": int(pl.sum())}
    return {str(k): int(n) for k, n in data[subject][pl].value_counts(sort=False).items()}


def design_matrix(df: pd.DataFrame, names: Iterable[str], *, drop_first: bool = True) -> pd.DataFrame:
    """Numeric design columns for ``names``: numeric columns as they are, categorical ones
    expanded to indicator columns (first level dropped), named ``col[level]``.

    A column with a single value (no variation) raises :class:`DataError` naming it.
    """
    parts = []
    for c in names:
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype(float)
        if pd.api.types.is_numeric_dtype(s):
            if s.nunique(dropna=True) < 2:
                raise DataError(f"column {c!r} (covariate) has no variation in the analysed rows; leave it out")
            parts.append(s.astype(float).rename(c))
        else:
            codes, levels = level_codes(s, c)
            for j in range(1 if drop_first else 0, len(levels)):
                parts.append(pd.Series((codes == j).astype(float), index=df.index, name=f"{c}[{levels[j]}]"))
    if not parts:
        return pd.DataFrame(index=df.index)
    return pd.concat(parts, axis=1)


def level_codes(s: pd.Series, name: str) -> tuple[np.ndarray, pd.Index]:
    """``(codes, levels)`` of a categorical covariate as :func:`design_matrix` expands it: a
    Categorical's own categories in their order (those that occur: an unused one would be an
    indicator of zeros, or a reference level absent, both collinear), other values sorted
    (``astype("category")``'s levels); text is coded as stored (Arrow's dictionary encoding), not
    converted. A column with a single level raises :class:`DataError` naming it."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.cat.remove_unused_categories()
        codes, levels = s.cat.codes.to_numpy(), s.cat.categories
    elif isinstance(s.dtype, pd.StringDtype):
        codes, levels = pd.factorize(s, sort=True)
    else:
        cat = s.astype("category")
        codes, levels = cat.cat.codes.to_numpy(), cat.cat.categories
    if len(levels) < 2:
        raise DataError(f"column {name!r} (covariate) has a single category in the analysed rows; leave it out")
    return codes, pd.Index(levels)


def subject_arms(v: Validated) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The subjects of the validated rows ``v`` (in order of appearance; rows missing a subject
    were dropped by :func:`validate`), each one's treated and comparison rows with an outcome
    and its rows, and each row's subject (its index in the first; −1: none). The counts are kept
    on ``v`` for :func:`subject_counts`."""
    codes, levels = factorized(v.data[v.columns.subject])
    n = len(levels)
    arm = np.where(v.data[v.columns.outcome].notna().to_numpy(), v.data[v.columns.treatment].to_numpy() == 1, 2)
    key = np.where(codes >= 0, 3 * codes + arm, 3 * n)  # subject × (comparison, treated, no outcome); none last
    counts = np.bincount(key, minlength=3 * n + 1)[: 3 * n].reshape(n, 3)
    counts.flags.writeable = False  # (shared by the callers of subject_counts)
    kept = v.__dict__[_SUBJECT_COUNTS] = (tuple(levels), counts[:, 1], counts[:, 0], counts.sum(axis=1))
    return list(kept[0]), *kept[1:], codes


_SUBJECT_COUNTS = "_subject_counts"
"""Where :func:`subject_arms` keeps its counts on the (frozen) record, as ``functools.cached_property`` would."""


def subject_counts(v: Validated) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`subject_arms` without each row's subject: the counts an earlier call on this very
    record made (the checks', for ``pleval.estimate``: the subject column coded and its rows
    counted once, 0.03 s at 1M rows), else computed."""
    kept = v.__dict__.get(_SUBJECT_COUNTS)
    if kept is None:
        return subject_arms(v)[:4]
    return list(kept[0]), *kept[1:]


_FACTORIZED_AHEAD = "_factorized_ahead"
"""Where :func:`factorize_ahead` keeps its thread on the (frozen) record."""


def factorize_ahead(v: Validated, column: str) -> None:
    """Start ``pd.factorize(v.data[column])`` in a thread, for :func:`factorized_ahead` to take:
    ``pleval estimate`` codes the student ids (1M rows: Arrow's dictionary encoding, 0.08 CPU-s,
    without the interpreter's lock) as soon as its checks have validated the rows, while the
    checks finish and the analysis's modules are imported, rather than in the analysis's match,
    where the placebo worker's fork waits for them (:func:`pleval.match`'s ``_ids_coded``)."""
    data, out = v.data, {}
    values = data[column]  # read here, not beside this thread's own work on the frame

    def run():
        try:
            out["value"] = pd.factorize(values)
        except Exception:  # coded again (and any error raised) where it is needed
            pass

    thread = threading.Thread(target=run, name="pleval-ahead", daemon=True)
    thread.start()
    v.__dict__[_FACTORIZED_AHEAD] = (column, data.index, thread, out)


def factorized_ahead(v: Validated, column: str):
    """What :func:`factorize_ahead` started on ``v`` for ``column``, given up by ``v``, as a call
    that waits for it: ``(index, (codes, uniques))``, ``index`` the rows it coded, or None (none
    started, or it failed). None when none was started for ``column``."""
    got = v.__dict__.get(_FACTORIZED_AHEAD)
    if got is None or got[0] != column:
        return None
    del v.__dict__[_FACTORIZED_AHEAD]
    _, index, thread, out = got

    def wait():
        thread.join()
        return (index, out["value"]) if "value" in out else None

    return wait


def match_label(values, label):
    """The value among ``values`` that ``label`` names: itself; else the one equal to it as text
    with surrounding spaces aside (the command line gives text, a column may hold numbers: ``2``
    names 2); else the one equal also with letter case aside (``pl`` names ``PL``). None when
    no value, or more than one, is. Numpy scalars come back as Python ones (``0``, which prints
    as itself, not ``np.int64(0)``)."""
    present = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(pd.Series(values)) if pd.notna(v)]
    if label in set(present):
        return label
    for key in (lambda x: str(x).strip(), lambda x: str(x).strip().casefold()):
        same = [v for v in present if key(v) == key(label)]
        if same:
            return same[0] if len(same) == 1 else None
    return None


def pick_subject(values, subject, column: str):
    """The value of the subject column ``column`` (its ``values``) that ``subject`` names
    (:func:`match_label`: ``Math`` names ``math``); a :class:`DataError` listing the subjects
    when none does."""
    hit = match_label(values, subject)
    if hit is None:
        present = [v for v in pd.unique(pd.Series(values)) if pd.notna(v)]
        raise DataError(f"column {column!r} (subject): no rows for subject {subject!r}; subjects are "
                        f"{', '.join(map(str, present))}")
    return hit


def one_arm_subject(column: str, subject, n_treated: int, n_comparison: int, n_rows: int) -> str:
    """Why subject ``subject`` of the subject column ``column`` cannot be analysed: its usable
    rows (``n_rows``) with an outcome hold one arm only, or none."""
    if n_treated + n_comparison == 0:
        why = f"(all {n_rows:,} usable rows) has no outcome in any row"
    else:
        arm = "treated (PL)" if n_treated == 0 else "comparison"
        why = f"has no {arm} rows with an outcome among its {n_rows:,} usable rows"
    return f"column {column!r} (subject): {as_written(subject)!r} {why}, so no effect can be estimated for it"


def as_written(v):
    """A value as the user wrote it: numpy scalars as plain Python (``7``, not ``np.int64(7)``)."""
    return v.item() if isinstance(v, np.generic) else v


__all__ = [
    "Columns",
    "Validated",
    "read_table",
    "validate",
    "design_matrix",
    "level_codes",
    "file_sha256",
    "frame_sha256",
    "SAMPLE_COLUMNS",
    "RCT_SAMPLE_COLUMNS",
    "NONE_WORDS",
    "resolve_columns",
    "with_binary_treatment",
    "ROLE_FLAGS",
]
