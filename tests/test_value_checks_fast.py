"""The one-pass forms of validation's checks against the plain pandas computations they replace:
the duplicated-id check, the per-cell medians of the outlier rule and the mixed-code check."""

import numpy as np
import pandas as pd
import pytest

from pleval.checks import _cell_median, _cells, _mixed_codes
from pleval.data import Columns, _duplicated, _text_fingerprint

IDS = ["", "a", "ab", "abcdefgh", "abcdefghi", "abcdefgh1", "xbcdefghi", "abcdefghijklmnopq", "abcdefghXjklmnopq",
       "é", "éé", "student-000000000000-01", "student-000000000001-01", "student-00000000000-01"]


@pytest.mark.parametrize("dtype", ["str", "string", object])
def test_duplicated_equals_pandas(dtype):
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(1, 200))
        df = pd.DataFrame({"sid": pd.Series(rng.choice(IDS + [f"S{i}" for i in range(40)], n), dtype=dtype),
                           "subject": rng.choice(["m", "r"], n), "grade": rng.integers(3, 5, n)})
        if trial % 3 == 0:  # an Arrow column in two chunks, sliced
            df = pd.concat([df.iloc[: n // 2], df.iloc[n // 2:]]).iloc[1:]
        for keys in (["sid"], ["sid", "subject"], ["sid", "subject", "grade"]):
            assert np.array_equal(_duplicated(df, keys), df.duplicated(keys, keep=False).to_numpy())


def test_text_fingerprint_shared_by_equal_texts_and_tells_these_apart():
    s = pd.Series(IDS + IDS[::-1], dtype="str")
    fp = _text_fingerprint(s)
    n = len(IDS)
    assert np.array_equal(fp[:n], fp[n:][::-1])  # equal texts, equal numbers (the check relies on it)
    # length, first 8 and last 8 bytes: only the middle of a long text can hide a difference
    assert len(set(fp[:n].tolist())) == n - 1
    assert fp[IDS.index("abcdefghijklmnopq")] == fp[IDS.index("abcdefghXjklmnopq")]
    assert _text_fingerprint(pd.Series(IDS, dtype=object)) is None


def test_cell_medians_equal_pandas_groupby_bit_for_bit():
    rng = np.random.default_rng(2)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        x = np.round(rng.normal(200, 10, n), int(rng.integers(0, 3)))
        x[rng.random(n) < 0.2] = np.nan
        grade = rng.integers(3, 6, n).astype(float)
        grade[rng.random(n) < 0.1] = np.nan
        df = pd.DataFrame({"grade": grade, "subject": rng.choice(["m", "r"], n)})
        cell = _cells(df, Columns(outcome="y", treatment="t", grade="grade", subject="subject"))
        order = np.argsort(cell, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(cell[order])) + 1)
        g = df.groupby(["subject", "grade"], dropna=False, sort=False).ngroup().to_numpy()
        med = pd.Series(x).groupby(g).transform("median").to_numpy()
        assert np.array_equal(_cell_median(x, groups), med, equal_nan=True)
        mad = (pd.Series(x) - med).abs().groupby(g).transform("median").to_numpy()
        assert np.array_equal(_cell_median(np.abs(x - med), groups), mad, equal_nan=True)


def test_mixed_codes_same_for_text_and_object_columns():
    """Text columns take the distinct-values path, Python-object columns the row path: the same
    values give the same findings, examples and row numbers."""
    rng = np.random.default_rng(3)
    found = 0
    for trial in range(60):
        n = int(rng.integers(5, 200))
        pool = [["1", "2", " 3", "x ", "Y"], ["12", "13", "A ", "14", "15", "16"],
                ["White", "white ", "  wHite", "b"]][trial % 3]
        vals = rng.choice(pool, n).astype(object)
        vals[rng.random(n) < 0.1] = None
        index = rng.permutation(n) + 7
        ref = _mixed_codes(pd.DataFrame({"c": pd.Series(vals, dtype=object, index=index)}), "c", "covariates")
        for dtype in ("str", "string"):
            got = _mixed_codes(pd.DataFrame({"c": pd.Series(vals, dtype=dtype, index=index)}), "c", "covariates")
            assert [p.line for p in got] == [p.line for p in ref]
        found += bool(ref)
    assert found > 20


def test_outlier_rule_on_no_rows():
    from pleval.checks import _outliers

    df = pd.DataFrame({"y": pd.Series([], dtype=float), "grade": pd.Series([], dtype=int),
                       "subject": pd.Series([], dtype="str")})
    cols = Columns(outcome="y", treatment="t", grade="grade", subject="subject")
    assert _outliers(df, cols, {"y": ("outcome", df["y"].to_numpy())}) == []
    assert not _duplicated(df.assign(sid=pd.Series([], dtype="str")), ["sid", "subject"]).size
