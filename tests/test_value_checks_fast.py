"""The one-pass forms of validation's checks against the plain pandas computations they replace:
the duplicated-id check, the per-cell medians of the outlier rule and the mixed-code check."""

import numpy as np
import pandas as pd
import pytest

from pleval.checks import _cells, _median, _mixed_codes
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


def _sample(rng, n):
    x = np.round(rng.normal(200, 10, n), int(rng.integers(0, 3)))
    x[rng.random(n) < 0.2] = np.nan
    grade = rng.integers(3, 6, n).astype(float)
    grade[rng.random(n) < 0.1] = np.nan
    return x, pd.DataFrame({"grade": grade, "subject": rng.choice(["m", "r"], n)})


def test_cells_are_the_subject_grade_groups_numbered_below_the_row_count():
    rng = np.random.default_rng(2)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        _, df = _sample(rng, n)
        if trial % 4 == 0:  # more levels than rows in the product: renumbered
            df = df.assign(grade=rng.normal(size=n), subject=rng.choice([f"s{i}" for i in range(n)], n))
        cell = _cells(df, Columns(outcome="y", treatment="t", grade="grade", subject="subject"))
        g = df.groupby(["subject", "grade"], dropna=False, sort=False).ngroup().to_numpy()
        assert cell.min() >= 0 and cell.max() < n
        assert len(np.unique(cell)) == len(np.unique(g))
        assert (pd.crosstab(cell, g).to_numpy() > 0).sum() == len(np.unique(g))  # the same partition


def test_median_of_the_values_present():
    rng = np.random.default_rng(6)
    for n in (0, 1, 2, 5, 6, 101):
        v = np.round(rng.normal(size=n), 1)
        v[rng.random(n) < 0.3] = np.nan
        keep = v.copy()
        ref = pd.Series(v).median()
        assert np.array_equal(_median(v), ref, equal_nan=True) and np.array_equal(v, keep, equal_nan=True)


def test_outliers_are_the_rows_beyond_the_rule_computed_with_pandas():
    """:func:`_outliers` flags exactly the rows with |x − m| > 8·1.4826·MAD in their cell (m and
    MAD the cell's medians by pandas' groupby), and its message shows the first of them."""
    from pleval.checks import OUTLIER_K, _outliers, _rows

    rng = np.random.default_rng(5)
    cols = Columns(outcome="y", treatment="t", grade="grade", subject="subject")
    found = 0
    for trial in range(40):
        n = int(rng.integers(1, 400))
        x, df = _sample(rng, n)
        far = rng.random(n) < 0.03
        x[far] = x[far] * rng.choice([-1, 10, 1e6], far.sum())
        if trial % 4 == 0:
            x[: n // 2] = 200.0  # cells with no spread: nothing flagged there
        df = df.set_index(rng.permutation(n) + 11)
        g = df.groupby(["subject", "grade"], dropna=False, sort=False).ngroup().to_numpy()
        med = pd.Series(x).groupby(g).transform("median").to_numpy()
        mad = (pd.Series(x) - med).abs().groupby(g).transform("median").to_numpy() * 1.4826
        with np.errstate(invalid="ignore", divide="ignore"):
            flag = np.isfinite(x) & (mad > 0) & (np.abs(x - med) / mad > OUTLIER_K)
        got = [p for p in _outliers(df.assign(y=x), cols, {"y": ("outcome", x)}) if p.kind == "outlier"]
        assert len(got) == int(flag.any())
        if got:
            p = got[0]
            assert p.n_rows == int(flag.sum())
            assert f"e.g. {', '.join(f'{v:.6g}' for v in x[flag][:3])} ({_rows(df, flag)})" in p.message
            found += 1
    assert found > 10


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


def test_constant_columns_found_as_by_counting_distinct_values():
    """The constant-column warning (a quick min < max test first) names exactly the pretest and
    covariate columns whose non-missing values are all one value (``nunique() == 1``)."""
    from pleval.checks import _value_problems, _varies

    n = 50
    rng = np.random.default_rng(4)
    cols = {
        "int_const": np.full(n, 3), "int_var": rng.integers(0, 2, n), "float_const_nan": np.where(rng.random(n) < 0.3, np.nan, 2.5),
        "float_var_nan": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)), "all_nan": np.full(n, np.nan),
        "zeros_signed": np.where(rng.random(n) < 0.5, 0.0, -0.0), "text_const": ["a"] * n,
        "text_var": rng.choice(["a", "b"], n), "nullable_const": pd.array([1] * (n - 1) + [None], dtype="Int64"),
        "bool_var": rng.random(n) < 0.5,
    }
    df = pd.DataFrame({"y": rng.normal(size=n), "t": np.arange(n) % 2, **cols})
    c = Columns(outcome="y", treatment="t", pretest=("float_var_nan",), covariates=tuple(k for k in cols if k != "float_var_nan"))
    found = {p.column for p in _value_problems(df, c, "matched") if p.kind == "constant"}
    assert found == {k for k in cols if df[k].dropna().nunique() == 1}
    assert found == {"int_const", "float_const_nan", "zeros_signed", "text_const", "nullable_const"}
    assert _varies(df["int_var"]) and not _varies(df["all_nan"]) and not _varies(df["text_var"])


def _coerce_with_to_numeric(s):
    """The treatment's 0/1 coding through ``pd.to_numeric`` (the plain computation)."""
    conv = pd.to_numeric(s, errors="coerce")
    if not (conv.isna() & s.notna()).any() and set(conv.dropna().unique()) <= {0, 1}:
        return conv.astype(float)
    return None


@pytest.mark.parametrize("values", [
    [0, 1, 1, 0], [0.0, 1.0, np.nan, 1.0], pd.array([0, 1, None, 1], dtype="Int64"), [1, 2, 2, 1],
    [0.0, 0.5, 1.0, np.nan], [1, 1, 1, 1], np.array([0, 1, 1, 0], dtype=np.uint8),
])
def test_numeric_treatments_coded_as_by_to_numeric(values):
    """Numeric treatment columns skip ``to_numeric``: the same 0/1 coding, the same findings."""
    from pleval.checks import _treatment_problems
    from pleval.data import _coerce_treatment
    from pleval.errors import DataError

    s = pd.Series(values, name="t")
    ref = _coerce_with_to_numeric(s)
    try:
        got, label = _coerce_treatment(s, "t", None)
    except DataError:
        got = None
    if ref is None:
        assert got is None
    else:
        pd.testing.assert_series_equal(got, ref, check_exact=True)
        assert label == 1
    found = _treatment_problems(pd.DataFrame({"t": s}), Columns(outcome="y", treatment="t"))
    assert (found == []) == (ref is not None)
