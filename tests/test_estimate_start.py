"""The work `pleval estimate` does before its placebo worker's fork, done once and no more than
needed: the subjects' arms counted by the checks are not counted again, a score column is told
from a yes/no one by its first rows, and the text levels of a code column are read as numbers
without an Arrow scalar per level (docs/scale.md, target 3)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest

from pleval import check
from pleval.binary import FIRST_ROWS, is_binary
from pleval.checks import _mixed_codes
from pleval.outcomes import _two_values


def _frame(n=3000, seed=5):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "student_id": [f"S{i // 2:05d}" for i in range(n)],
        "school_id": rng.choice([f"SCH{j}" for j in range(30)], n),
        "subject": np.tile(["math", "reading"], n // 2),
        "grade": rng.integers(3, 6, n), "treatment": rng.integers(0, 2, n), "pretest": rng.normal(size=n),
        "posttest": rng.normal(size=n)}).astype({"student_id": "str", "school_id": "str", "subject": "str"})


def test_estimate_counts_the_subjects_arms_the_checks_counted(monkeypatch):
    """The validated record the checks hand over keeps their count of each subject's arms: the
    analysis takes it without coding the subject column again (1M rows: 0.03 s before the fork);
    a record made anew (another subset of rows) counts its own."""
    import pleval.data as data
    import pleval.estimate  # noqa: F401  (binds the module in sys.modules; pleval.estimate stays the function)

    est = sys.modules["pleval.estimate"]
    df = _frame()
    report = check(df, given={}, keep_validated=True)
    v = report.take_validated(df, report.columns, ("outcome", "treatment", "school"))
    assert v is not None
    expected = data.subject_arms(dataclasses.replace(v))[:4]
    coded = []
    factorize = pd.factorize
    monkeypatch.setattr(data.pd, "factorize",
                        lambda values, *a, **k: coded.append(getattr(values, "name", None)) or factorize(values, *a, **k))
    subjects, rows, left_out = est._subjects(v, df, None)
    assert "subject" not in coded
    assert subjects == ["math", "reading"] and rows is df and left_out is None
    got = data.subject_counts(v)
    assert got[0] == expected[0] and all(np.array_equal(a, b) for a, b in zip(got[1:], expected[1:]))
    fresh = dataclasses.replace(v, data=v.data.iloc[:1000])
    assert data.subject_counts(fresh)[3].sum() == 1000 and "subject" in coded


def test_a_score_is_told_from_a_yes_no_column_by_its_first_rows(monkeypatch):
    """A numeric column with a value other than 0 and 1 (or a third value) among its first rows
    is answered from them; one whose first rows are all 0/1 (or two values) is read whole."""
    n = 200_000
    score = pd.Series(np.random.default_rng(1).normal(500, 50, n))
    seen = []
    isin, nunique = pd.Series.isin, pd.Series.nunique
    monkeypatch.setattr(pd.Series, "isin", lambda self, *a, **k: seen.append(len(self)) or isin(self, *a, **k))
    monkeypatch.setattr(pd.Series, "nunique", lambda self, *a, **k: seen.append(len(self)) or nunique(self, *a, **k))
    assert not is_binary(score) and not _two_values(score)
    assert max(seen) <= FIRST_ROWS
    late = pd.Series(np.r_[np.zeros(FIRST_ROWS), np.ones(n - FIRST_ROWS - 1), 2.0])  # a third value in the last row
    assert not is_binary(late) and not _two_values(late)
    assert is_binary(pd.Series(np.r_[np.zeros(n - 2), np.nan, 1.0])) and _two_values(late.iloc[:-1])
    assert not _two_values(pd.Series(np.r_[np.zeros(n - 1), 1.0]).where(lambda s: s < 1))  # one value left


@pytest.mark.parametrize("dtype", ["str", "string"])
def test_mixed_codes_read_text_levels_without_isin(monkeypatch, dtype):
    """The text path of the mixed-codes check finds the same rows as the object path without
    pandas' ``isin`` over Arrow text (which makes a scalar of each level: 8 ms for 2,000 ids)."""
    from pandas.core.arrays.string_arrow import ArrowStringArray

    vals = np.array([f"SCH{i % 40}" for i in range(300)] + ["sch7", " SCH8", None, "12", "SCH 9"], dtype=object)
    ref = _mixed_codes(pd.DataFrame({"c": pd.Series(vals, dtype=object)}), "c", "school")
    assert len(ref) == 1 and "spells one value several ways" in ref[0].line  # (the object path: isin, as it was)

    def no_isin(self, values):
        raise AssertionError("isin over Arrow text")

    monkeypatch.setattr(ArrowStringArray, "isin", no_isin)
    got = _mixed_codes(pd.DataFrame({"c": pd.Series(vals, dtype=dtype)}), "c", "school")
    assert [p.line for p in got] == [p.line for p in ref]


def test_recurring_values_found_by_16_bit_passes():
    """The duplicated-key check's candidates: the positions of the values that occur more than
    once, from two counting passes over 16-bit digits (no sort of 64-bit integers), equal to
    counting every value; the duplicated rows found from them equal pandas'."""
    from pleval.data import _duplicated, _recurring

    rng = np.random.default_rng(8)
    for n, top in ((0, 10), (1, 10), (5000, 2**32 - 1), (5000, 300), (70_000, 2**20)):
        key = rng.integers(0, top, n, dtype=np.int64).astype(np.uint64)
        counts = pd.Series(key).value_counts()
        expected = np.flatnonzero(pd.Series(key).map(counts).to_numpy() > 1) if n else np.zeros(0, np.int64)
        assert np.array_equal(_recurring(key), expected)
    df = _frame(6000)
    df = pd.concat([df, df.iloc[[3, 70, 70, 4100]]], ignore_index=True)
    keys = ["student_id", "subject", "grade"]
    assert np.array_equal(_duplicated(df, keys), df.duplicated(keys, keep=False).to_numpy())
