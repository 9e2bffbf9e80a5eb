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


def test_distinct_at_least_equals_counting_every_value():
    """:func:`pleval.checks._distinct_at_least` (a prefix's distinct values first) answers as
    counting all of them: few distinct values, many only after the prefix, NaN-free floats."""
    from pleval.checks import _distinct_at_least

    rng = np.random.default_rng(48)
    for _ in range(300):
        n = int(rng.integers(0, 3000))
        v = rng.integers(0, int(rng.integers(1, 30)), n).astype(float)
        if n > 10 and rng.random() < 0.3:  # the distinct values only past the prefix
            v[: min(n - 5, int(rng.integers(1, 1100)))] = 7.0
        for k in (1, 2, 10):
            for head in (1, 16, 1024):
                assert _distinct_at_least(v, k, head) == (np.unique(v).size >= k)


def test_checks_code_each_text_column_once(monkeypatch):
    """Within :func:`pleval.check` the subject and school columns (Arrow text) are coded once,
    for the value checks and the validation alike (before 2026-12-05: four and three times), and
    the report is the same as with every call coding anew."""
    import pleval.data as data
    from pleval import check

    rng = np.random.default_rng(4)
    n = 4000
    df = pd.DataFrame({"student_id": [f"S{i // 2:05d}" for i in range(n)], "school_id": rng.choice(
        [f"SCH{j}" for j in range(40)], n), "subject": np.tile(["math", "reading"], n // 2),
        "grade": rng.integers(3, 6, n), "treatment": rng.integers(0, 2, n), "pretest": rng.normal(size=n),
        "posttest": rng.normal(size=n), "race": rng.choice(["a", "b", "c"], n)}).astype(
        {"student_id": "str", "school_id": "str", "subject": "str", "race": "str"})
    coded = []
    factorize = pd.factorize

    def counted(values, *args, **kwargs):
        coded.append(getattr(values, "name", None))
        return factorize(values, *args, **kwargs)

    monkeypatch.setattr(data.pd, "factorize", counted)
    given = {"covariates": ["race"]}
    report = check(df, given=given)
    assert coded.count("subject") == 1 and coded.count("school_id") == 1
    monkeypatch.setattr(data, "codes_once", lambda: __import__("contextlib").nullcontext())
    monkeypatch.setattr("pleval.checks.codes_once", data.codes_once)
    coded.clear()
    again = check(df, given=given)
    assert coded.count("subject") > 1 and again.to_frame().equals(report.to_frame())


@pytest.mark.parametrize("dtype", ["str", "string", pd.ArrowDtype(__import__("pyarrow").large_string())])
def test_factorized_equals_pandas_within_and_outside_codes_once(dtype):
    """:func:`pleval.data.factorized` gives ``pd.factorize``'s codes and uniques, with missing
    values and without the sentinel too, inside :func:`codes_once` (codes shared and read-only)
    and outside it (coded anew each call); a copy of the frame shares the codes."""
    from pleval.data import codes_once, factorized

    rng = np.random.default_rng(5)
    values = rng.choice(["x", "y", " z", "é", None], 500)
    s = pd.Series(values, dtype=dtype, name="c")
    for sentinel in (True, False):
        want = pd.factorize(s, use_na_sentinel=sentinel)
        got = factorized(s, use_na_sentinel=sentinel)
        np.testing.assert_array_equal(got[0], want[0])
        pd.testing.assert_index_equal(pd.Index(got[1]), pd.Index(want[1]))
        with codes_once():
            first = factorized(s, use_na_sentinel=sentinel)
            np.testing.assert_array_equal(first[0], want[0])
            pd.testing.assert_index_equal(pd.Index(first[1]), pd.Index(want[1]))
            again = factorized(pd.DataFrame({"c": s}).copy(deep=False)["c"], use_na_sentinel=sentinel)
            np.testing.assert_array_equal(again[0], want[0])
            if sentinel and isinstance(s.dtype, pd.StringDtype):
                assert again[0] is first[0] and not first[0].flags.writeable
    full = pd.Series(rng.choice(["a", "b"], 50), dtype="str")
    with codes_once():
        k1, k2 = factorized(full), factorized(full, use_na_sentinel=False)
        assert k1[0] is k2[0]
        with codes_once():  # (an inner block shares the outer one's codes)
            assert factorized(full)[0] is k1[0]
    assert factorized(full)[0] is not k1[0]


def test_a_forked_child_holds_no_memo_of_codes_nor_its_locks():
    """A process forked while another thread is within :func:`pleval.data.codes_once` (a
    ``check`` in one thread, a forking ``estimate`` in another) starts with no memo and a free
    lock: the child has no thread to end that block or release the lock, so before the fix its
    every :func:`factorized` call returned the parent's read-only codes (the memo never ended
    there), and one taken while the lock was held waited forever."""
    import os
    import threading
    import time
    import warnings

    import pleval.data as data

    s = pd.Series(["a", "b", None, "a"], dtype="str")
    inside, done = threading.Event(), threading.Event()

    def held():  # a check's block, open, with the memo's lock held as a thread coding a column holds it
        with data.codes_once():
            data.factorized(s)
            with data._memo_lock:
                inside.set()
                done.wait(30)

    t = threading.Thread(target=held)
    t.start()
    try:
        assert inside.wait(30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # (fork of a process with threads)
            pid = os.fork()
        if pid == 0:  # the child: exit code 0 if the codes are its own and codes_once does not block
            ok = False
            try:
                codes = data.factorized(s)[0]
                with data.codes_once():
                    data.factorized(s)
                ok = codes.flags.writeable and data._memo is None
            finally:
                os._exit(0 if ok else 1)
        for _ in range(200):
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child waited for a lock no thread of it holds")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        done.set()
        t.join()
