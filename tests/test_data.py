"""Reading and validation: every DataError names the column and counts the rows."""

import numpy as np
import pandas as pd
import pytest

from pleval import DataError
from pleval.data import Columns, design_matrix, frame_sha256, read_table, validate

COLS = Columns(outcome="post", treatment="pl", pretest="pre", covariates=("frl", "race"), school="school",
               student_id="sid", subject="subject")


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "sid": np.repeat(np.arange(n // 2), 2),
            "subject": np.tile(["math", "reading"], n // 2),
            "school": np.repeat(["A", "B", "C", "D"], n // 4),
            "pl": np.repeat([1, 0, 1, 0], n // 4),
            "pre": rng.normal(200, 15, n),
            "post": rng.normal(205, 15, n),
            "frl": rng.integers(0, 2, n),
            "race": rng.choice(["white", "black", "hispanic"], n),
        }
    )


def test_clean_data_passes_through(df):
    v = validate(df, COLS)
    assert v.n_rows == len(df) and v.n_dropped == 0 and v.n_missing_outcome == 0
    assert v.data["pl"].dtype.kind == "i"
    assert len(v.input_sha256) == 64
    assert "40 rows read" in v.summary()


def test_missing_values_dropped_and_counted_outcome_kept(df):
    df.loc[[0, 1, 2], "pre"] = np.nan
    df.loc[[5], "race"] = None
    df.loc[[7, 8], "post"] = np.nan
    v = validate(df, COLS)
    assert v.n_rows == len(df) - 4
    rec = v.dropped.set_index("column")["n_rows"].to_dict()
    assert rec == {"pre": 3, "race": 1}
    assert v.n_missing_outcome == 2  # kept, counted
    assert v.data["post"].isna().sum() == 2
    frame = v.to_frame()
    assert frame["n_rows"].iloc[0] == 40
    with pytest.raises(DataError, match="'pre'.*3 row"):
        validate(df, COLS, drop_missing=False)


def test_dropped_pl_rows_are_counted_by_subject(df):
    """The treated rows among those dropped, by reason and subject (what a report says of whom
    the estimate leaves out); comparison rows are not among them."""
    df.loc[[0, 1, 2, 12], "pre"] = np.nan  # rows 0-9 are treated (school A), row 12 a comparison
    df.loc[[5], "race"] = None
    v = validate(df, COLS)
    got = {(r.reason, r.subject): r.n_rows for r in v.dropped_pl.itertuples()}
    assert got == {("missing pretest", "math"): 2, ("missing pretest", "reading"): 1,
                   ("missing covariates", "reading"): 1}
    assert v.dropped.set_index("column")["n_rows"].to_dict() == {"pre": 4, "race": 1}
    no_subject = validate(df.drop(columns="subject"), COLS.replace(subject=None, student_id=None))
    assert no_subject.dropped_pl.groupby("reason")["n_rows"].sum().to_dict() == {"missing pretest": 3,
                                                                               "missing covariates": 1}
    assert set(no_subject.dropped_pl["subject"]) == {"all"}


def test_missing_column_named(df):
    with pytest.raises(DataError, match=r"'frl' \(covariates\) is not in the data"):
        validate(df.drop(columns="frl"), COLS)


def test_non_numeric_outcome_named_and_counted(df):
    df["post"] = df["post"].astype(object)
    df.loc[[3, 4], "post"] = "absent"
    with pytest.raises(DataError, match=r"'post' \(outcome\) must be numeric: 2 row.*'absent'"):
        validate(df, COLS)


def test_numeric_strings_are_accepted(df):
    df["pre"] = df["pre"].round(1).astype(str)
    assert validate(df, COLS).data["pre"].dtype == float


def test_validation_leaves_the_callers_frame_untouched(df):
    """validate copies shallowly (pandas' copy-on-write): converting a column of numeric strings
    and coding the treatment in its result never writes into the caller's frame or arrays."""
    df["pre"] = df["pre"].round(1).astype(str)
    df["pl"] = df["pl"].map({1: "True", 0: "False"})
    before = df.copy(deep=True)
    v = validate(df, COLS)
    assert v.data["pre"].dtype == float and v.data["pl"].tolist() == before["pl"].eq("True").astype(int).tolist()
    data = v.data
    data.loc[data.index[:3], "post"] = -1.0  # writing into the result's frame ...
    pd.testing.assert_frame_equal(df, before)  # ... leaves the input as it was


def test_treatment_variants(df):
    for coded in (df["pl"].astype(bool), df["pl"].map({1: "True", 0: "False"})):
        assert validate(df.assign(pl=coded), COLS).data["pl"].tolist() == df["pl"].tolist()
    labelled = df.assign(pl=df["pl"].map({1: "PL", 0: "comparison"}))
    with pytest.raises(DataError, match=r"'pl' \(treatment\).*--treated-label"):
        validate(labelled, COLS)
    v = validate(labelled, COLS.replace(treated_label="PL"))
    assert v.data["pl"].tolist() == df["pl"].tolist() and v.treated_value == "PL"
    assert validate(labelled, COLS.replace(treated_label="pl")).treated_value == "PL"  # case aside (data.match_label)
    with pytest.raises(DataError, match="does not occur"):
        validate(labelled, COLS.replace(treated_label="P"))
    three = df.assign(pl=np.arange(len(df)) % 3)
    with pytest.raises(DataError, match=r"'pl' \(treatment\)"):
        validate(three, COLS)


def test_no_treated_or_no_comparison(df):
    with pytest.raises(DataError, match="no treated units"):
        validate(df.assign(pl=0), COLS)
    with pytest.raises(DataError, match="no comparison units"):
        validate(df.assign(pl=1), COLS)


def test_duplicate_ids_within_subject(df):
    df.loc[2, "sid"] = df.loc[0, "sid"]  # same student, math twice
    with pytest.raises(DataError, match=r"'sid' \(student_id\): 2 row\(s\) share a student id within subject"):
        validate(df, COLS)


def test_duplicate_id_error_names_the_first_shared_id_and_its_file_rows(tmp_path, df):
    """The error says which id is shared and where (file rows, counting a blank line; index
    labels for a frame), not only how many rows share one."""
    df.loc[2, "sid"] = df.loc[0, "sid"]
    with pytest.raises(DataError, match=r"share a student id within subject, e\.g\. sid 0, subject 'math' "
                                        r"\(index 0, 2\);"):
        validate(df, COLS)
    p = tmp_path / "dup.csv"
    text = df.to_csv(index=False).splitlines()
    p.write_text("\n".join(text[:2] + [""] + text[2:]) + "\n")  # a blank line after the first row
    with pytest.raises(DataError, match=r"e\.g\. sid 0, subject 'math' \(file rows 2, 5\);"):
        validate(read_table(p), COLS)


def test_ids_written_with_leading_zeros_are_read_as_text(tmp_path):
    """'0042' and '42' are two students; read as numbers they were one (a duplicate-id error, or
    two students merged). A CSV column of whole numbers written with leading zeros is read as
    text, with a note; other columns keep their types."""
    p = tmp_path / "ids.csv"
    p.write_text("sid,grade,score,share\n0042,3,0,0.5\n42,3,1,0.25\n0007,4,2,0.125\n")
    d = read_table(p)
    assert d["sid"].tolist() == ["0042", "42", "0007"] and not d["sid"].duplicated().any()
    assert d["grade"].dtype.kind == "i" and d["score"].dtype.kind == "i" and d["share"].dtype.kind == "f"
    assert "read as text (whole numbers written with leading zeros, e.g. '0042'): 'sid'" in d.attrs["read_notes"]


def _sample_with_school_codes(tmp_path, codes: dict, last: str):
    """Six schools of the sample file renamed by ``codes`` (SCH id -> code), the rows of school
    ``last`` moved to the end (hundreds of rows below the first), written as a CSV; its path."""
    from pathlib import Path

    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv",
                    dtype={"school_id": str})
    d = d[d["school_id"].isin(codes)].assign(school_id=lambda x: x["school_id"].map(codes))
    p = tmp_path / "schools.csv"
    pd.concat([d[d["school_id"] != last], d[d["school_id"] == last]]).to_csv(p, index=False)
    return p


def test_an_id_written_with_leading_zeros_far_down_the_file_is_read_as_text(tmp_path):
    """A PL school '0042' first seen hundreds of rows down, below the rows the reader looks at,
    was read as 42: one school with the PL school '42' above it, without a word (pleval.check,
    pleval.estimate and pleval estimate alike). The columns of the id roles (student, school,
    block) are now read as text in full; other columns keep the first-rows rule."""
    import csv

    import pleval

    p = _sample_with_school_codes(tmp_path, {"SCH0001": "42", "SCH0009": "0042", "SCH0002": "7", "SCH0003": "13",
                                             "SCH0004": "99", "SCH0005": "5"}, last="0042")
    with open(p, newline="") as f:
        raw = list(csv.DictReader(f))  # the file as written: every school's spelling
    assert next(i for i, r in enumerate(raw) if r["school_id"] == "0042") > 500
    report = pleval.check(p)
    assert any("spells one value several ways ('42', '0042')" in w.line for w in report.warnings)
    assert not any("have both PL and comparison students" in w.line for w in report.warnings)
    with pytest.warns(pleval.PlevalWarning, match=r"spells one value several ways \('42', '0042'\)"):
        ev = pleval.estimate(p, subject="math", placebo=False, workers=1)
    assert sorted(ev.schools["school"]) == sorted({r["school_id"] for r in raw if r["treatment"] == "1"}) == ["0042", "42"]
    d = read_table(p, ids=lambda names: ["school_id"])
    assert d["school_id"].tolist() == [r["school_id"] for r in raw]
    assert "read as text (whole numbers written with leading zeros, e.g. '0042'): 'school_id'" in d.attrs["read_notes"]
    assert read_table(p)["school_id"].dtype.kind == "i"  # (no id roles named: the first rows decide, as before)


def test_ids_without_leading_zeros_stay_numbers(tmp_path):
    """An id column read as text in full is numbers again when no value has a leading zero, as
    pandas reads it (int64; float64 with a missing value): school 9 before school 100, not after
    it as text would sort."""
    p = _sample_with_school_codes(tmp_path, {"SCH0001": "100", "SCH0009": "9", "SCH0002": "7", "SCH0003": "1000",
                                             "SCH0004": "99", "SCH0005": "5"}, last="9")
    kw = dict(keep_default_na=False, na_values=[""])
    plain = pd.read_csv(p, **kw)
    pd.testing.assert_frame_equal(read_table(p, ids=lambda names: names), plain)  # every column checked in full
    q = tmp_path / "gap.csv"
    plain.assign(school_id=plain["school_id"].astype("Int64").mask(plain.index == 700)).to_csv(q, index=False)
    d = read_table(q, ids=lambda names: ["school_id"])
    assert d["school_id"].dtype == np.float64
    np.testing.assert_array_equal(d["school_id"], pd.read_csv(q, **kw)["school_id"])
    import pleval

    with pytest.warns(pleval.PlevalWarning, match="prediction interval"):  # (two PL schools)
        ev = pleval.estimate(p, subject="math", placebo=False, workers=1)
    assert ev.schools["school"].tolist() == [9, 100] and ev.schools["school"].dtype.kind == "i"


def test_id_columns_are_the_student_school_and_block_roles():
    from pleval.checks import id_columns

    names = ["student_id", "campus", "block", "school_id", "grade", "posttest"]
    assert id_columns(names) == ["student_id", "school_id"]
    assert id_columns(names, {"school": "campus"}, design="rct") == ["student_id", "campus", "block"]
    assert id_columns(names, columns=Columns(outcome="posttest", treatment="t", school="campus")) == ["campus"]


def test_students_twice_because_the_subject_column_is_not_named():
    """With the subject column left unnamed (--subject none) every student appears once per
    subject: the duplicate-id error says which column tells the rows apart and how to name it;
    a real duplicate gets no such hint."""
    from pathlib import Path

    from pleval.data import SAMPLE_COLUMNS

    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv").head(400)
    cols = SAMPLE_COLUMNS.replace(subject=None)
    with pytest.raises(DataError, match=r"they differ in column 'subject': name it as the subject column "
                                        r"\(--subject subject\)"):
        validate(d, cols)
    one = d[d["subject"] == "math"].copy()
    one.loc[one.index[1], "student_id"] = one["student_id"].iloc[0]
    one.loc[one.index[1], "grade"] = one["grade"].iloc[0]
    with pytest.raises(DataError, match="share a student id") as exc:
        validate(one, cols)
    assert "they differ in column" not in str(exc.value)


def test_empty_inputs(tmp_path, df):
    with pytest.raises(DataError, match="no rows"):
        validate(df.iloc[:0], COLS)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(header)
    with pytest.raises(DataError, match="unknown file type"):
        read_table(tmp_path / "x.sas7bdat")
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".xlsx", ".tsv"])
def test_round_trip_formats(tmp_path, df, ext):
    path = tmp_path / f"students{ext}"
    {".csv": lambda: df.to_csv(path, index=False), ".parquet": lambda: df.to_parquet(path),
     ".xlsx": lambda: df.to_excel(path, index=False), ".tsv": lambda: df.to_csv(path, sep="\t", index=False)}[ext]()
    back = read_table(path)
    assert back.shape == df.shape
    assert len(back.attrs["sha256"]) == 64
    v = validate(back, COLS)
    assert v.input_sha256 == back.attrs["sha256"]


@pytest.mark.parametrize("dtype", ["int64", "int32", "float64", "bool"])
def test_validated_treatment_is_0_1_integers_sharing_0_1_int64_with_the_callers_frame(df, dtype):
    given = df.assign(pl=df["pl"].astype(dtype))
    v = validate(given, COLS)
    assert v.data["pl"].dtype == np.dtype(int)
    assert v.data["pl"].tolist() == df["pl"].tolist()
    assert np.shares_memory(v.data["pl"].to_numpy(), given["pl"].to_numpy()) == (dtype == "int64")
    data = v.data
    data.loc[data.index[0], "pl"] = 7  # copy-on-write: the caller's frame never changes
    assert given["pl"].iloc[0] == df["pl"].iloc[0]


def test_parquet_is_read_as_pandas_reads_it(tmp_path, df):
    """The same frame as ``pd.read_parquet`` (values, dtypes, missing values, a nullable integer
    and text with gaps)."""
    df = df.assign(score=pd.array([1, None] * 20, dtype="Int64"), note=[None, "x"] * 20,
                   post=df["post"].where(df.index % 7 > 0), frl=df["frl"].astype("int8"))
    path = tmp_path / "students.parquet"
    df.to_parquet(path)
    back, plain = read_table(path), pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, plain, check_exact=True)


def test_frame_hash_sensitive_to_content(df):
    h = frame_sha256(df)
    assert frame_sha256(df.copy()) == h
    df2 = df.copy()
    df2.loc[0, "post"] += 1e-9
    assert frame_sha256(df2) != h


def test_frame_hash_changes_with_any_value_name_dtype_or_order():
    """The one-pass hash (buffers as stored) against every kind of column: a change to one value
    of any column, a column name, a dtype, the index or the row order changes it; equal content
    stored differently (a sliced or chunked Arrow column, a copy) does not."""
    base = pd.DataFrame({
        "num": [1.5, 2.0, np.nan, 4.0], "int": [1, 2, 3, 4], "flag": [True, False, True, True],
        "txt": pd.array(["a", "bb", None, "dddd"], dtype="str"),
        "obj": pd.Series(["x", 1, None, "z"], dtype=object),
        "cat": pd.Categorical(["u", "v", "u", "v"]), "nint": pd.array([1, None, 3, 4], dtype="Int64"),
        "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]),
    })
    assert base["txt"].array.__class__.__name__ == "ArrowStringArray"
    h = frame_sha256(base)
    assert frame_sha256(base.copy()) == h
    sliced = pd.concat([base.iloc[:0], base]).iloc[1:]  # an Arrow column with a non-zero offset
    assert frame_sha256(pd.concat([base.iloc[:1], sliced]).reset_index(drop=True)) == h  # two chunks
    shifted = pd.concat([base.iloc[[3]], base]).iloc[1:].reset_index(drop=True)
    assert frame_sha256(shifted) == h
    changed = {
        "num": 2.5, "int": 9, "flag": True, "txt": "ba", "obj": 2, "cat": "u", "nint": 5,
        "when": pd.Timestamp("2025-01-01"),
    }
    seen = {h}
    for col, value in changed.items():
        other = base.copy()
        other.loc[1, col] = value
        seen.add(frame_sha256(other))
    other = base.copy()
    other.loc[2, "txt"] = ""  # missing and empty text differ
    seen.add(frame_sha256(other))
    other = base.copy()
    other.loc[0, "txt"], other.loc[1, "txt"] = "ab", "b"  # same bytes, other boundaries
    seen.add(frame_sha256(other))
    seen.add(frame_sha256(base.rename(columns={"num": "num2"})))
    seen.add(frame_sha256(base.astype({"int": float})))
    seen.add(frame_sha256(base.iloc[[1, 0, 2, 3]].reset_index(drop=True)))  # row order
    seen.add(frame_sha256(base.iloc[[1, 0, 2, 3]]))  # rows and index labels reordered together
    seen.add(frame_sha256(base.set_axis([10, 11, 12, 13])))  # the index
    seen.add(frame_sha256(base.iloc[:3]))
    assert len(seen) == 1 + len(changed) + 8


def test_design_matrix_expands_categoricals(df):
    X = design_matrix(df, ["frl", "race"])
    assert list(X.columns) == ["frl", "race[hispanic]", "race[white]"]
    assert X["race[white]"].sum() == (df["race"] == "white").sum()
    with pytest.raises(DataError, match="'const'"):
        design_matrix(df.assign(const=1.0), ["const"])


def test_resolve_columns_defaults_given_and_none_words(df):
    from pleval.data import SAMPLE_COLUMNS, resolve_columns

    cols, notes = resolve_columns(df, SAMPLE_COLUMNS)
    # the frame has none of the sample names: optional roles drop out with notes, required stay
    assert cols.outcome == "posttest" and cols.school is None and cols.pretest == ()
    assert any("'school_id'" in n for n in notes)
    cols, notes = resolve_columns(
        df, SAMPLE_COLUMNS,
        {"outcome": "post", "treatment": "pl", "pretest": "pre", "covariates": ["frl", "race"],
         "school": "school", "grade": "none", "student_id": None},
    )
    assert (cols.outcome, cols.pretest, cols.covariates, cols.school, cols.grade) == (
        "post", ("pre",), ("frl", "race"), "school", None)
    assert not any("school" in n for n in notes)
    with pytest.raises(DataError, match="unknown column role"):
        resolve_columns(df, SAMPLE_COLUMNS, {"pupil": "sid"})


def test_a_subject_is_named_whatever_its_case_and_spaces():
    """--only-subject Math names the subject 'math' (as the rest of pleval reads labels: the
    answer does not depend on their spelling); an exact match comes first, a number column is
    named by its text, and a name that matches none (or two) lists the subjects."""
    import pleval
    from pleval import analyze_rct
    from pleval.data import RCT_SAMPLE_COLUMNS, pick_subject
    from pleval.errors import DataError
    from pleval.simulate import simulate_cluster_rct, simulate_matched

    assert pick_subject(["math", "reading"], "Math", "subject") == "math"
    assert pick_subject(["math", "Math"], "Math", "subject") == "Math"
    assert pick_subject([1, 2], "2", "subject") == 2
    with pytest.raises(DataError, match=r"no rows for subject 'MATH'; subjects are math, Math"):
        pick_subject(["math", "Math", "reading"], "MATH", "subject")
    with pytest.raises(DataError, match=r"no rows for subject 'mat'; subjects are math, reading"):
        pick_subject(["math", "reading"], "mat", "subject")

    d = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=6, seed=5).data
    a, b = (pleval.estimate(d, subject=s, placebo=False) for s in ("math", " MATH "))
    assert tuple(a.subjects) == tuple(b.subjects) == ("math",) and a.effect().effect_size.estimate == b.effect().effect_size.estimate
    trial = simulate_cluster_rct(n_schools=12, n_blocks=3, students_per_school=30, grades=(4,), seed=2).data
    r1, r2 = (analyze_rct(trial, RCT_SAMPLE_COLUMNS, subject=s) for s in ("reading", "Reading"))
    assert r1.itt.raw.estimate == r2.itt.raw.estimate


def test_treated_and_control_labels_are_named_whatever_their_case():
    """--treated-label pl names PL and --control Control names control, as a subject's name
    does; a label equal to two values but for case names neither (an error lists the values)."""
    from pleval.data import _coerce_treatment, match_label
    from pleval.errors import DataError
    from pleval.multiarm import analyze_multiarm
    from pleval.simulate import simulate_cluster_rct
    from pleval.data import RCT_SAMPLE_COLUMNS

    assert match_label(["PL", "Comparison"], "pl") == "PL" and match_label([1, 0], "1") == 1
    assert match_label(["PL", "pl"], "Pl") is None and match_label(["PL", "pl"], "pl") == "pl"
    s = pd.Series(["PL", "Comparison", None, "PL"])
    out, label = _coerce_treatment(s, "t", " pl ")
    assert label == "PL" and out.tolist()[:2] == [1.0, 0.0] and np.isnan(out[2])
    with pytest.raises(DataError, match="treated label 'P' does not occur"):
        _coerce_treatment(s, "t", "P")

    trial = simulate_cluster_rct(n_schools=18, n_blocks=3, students_per_school=20, grades=(4,), seed=3).data
    school_arm = {k: "control" if v == 0 else ("A" if i % 2 else "B")
                  for i, (k, v) in enumerate(trial.groupby("school_id")["treatment"].first().items())}
    trial["arm"] = trial["school_id"].map(school_arm)
    cols = RCT_SAMPLE_COLUMNS.replace(treatment="arm")
    a, b = (analyze_multiarm(trial, cols, c, "cluster", subject="math") for c in ("control", "CONTROL"))
    assert a.to_frame().equals(b.to_frame())


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_frames_with_repeated_or_column_named_index_labels_analyse_as_reset():
    """Frames concatenated from yearly or district files repeat index labels; a frame indexed by
    set_index(['school_id', 'student_id'], drop=False) names levels as columns. Before, the
    matched binary outcome counted comparison students by label (6,216 instead of 7,195), the
    monitor stopped on pandas' 'Reindexing only valid with uniquely valued Index objects', and
    analyze_rct on 'is both an index level and a column label'. Validation now tells rows apart
    by position, and unnames such levels: each analysis equals that of the reset frame."""
    from pathlib import Path

    import pleval
    from pleval.data import RCT_SAMPLE_COLUMNS
    from pleval.monitor import effects_over_time

    root = Path(__file__).resolve().parents[1] / "sample_data"
    d = pd.read_csv(root / "pl_matched_students.csv")
    halves = pd.concat([d.iloc[: len(d) // 2], d.iloc[len(d) // 2:].reset_index(drop=True)])  # labels repeat
    kw = dict(placebo=False, sensitivity=False, outcomes=["proficient"])
    pd.testing.assert_frame_equal(pleval.estimate(halves, **kw).outcomes, pleval.estimate(d, **kw).outcomes)
    p = pd.read_csv(root / "pl_panel_students.csv")
    cols = Columns(outcome="posttest", treatment="treatment", pretest="pretest", school="school_id",
                   student_id="student_id", grade="grade", subject="subject", time="year")
    years = pd.concat([g.reset_index(drop=True) for _, g in p.groupby("year")])
    pd.testing.assert_frame_equal(effects_over_time(years, cols, equity=False).by_year,
                                  effects_over_time(years.reset_index(drop=True), cols, equity=False).by_year)
    r = pd.read_csv(root / "pl_cluster_rct.csv")
    indexed = r.set_index(["school_id", "student_id"], drop=False)
    assert (pleval.analyze_rct(indexed, RCT_SAMPLE_COLUMNS, subject="math").itt.raw.estimate
            == pleval.analyze_rct(r, RCT_SAMPLE_COLUMNS, subject="math").itt.raw.estimate)


def test_roles_as_a_mapping_are_taken_by_every_entry_point():
    """pleval.estimate took roles as a mapping; pleval.match and analyze_rct stopped on
    AttributeError ('dict' object has no attribute 'roles'), check(given=Columns) on another,
    and analyze_rct(subgroups='frl') looked for columns 'f', 'r', 'l'. Each now takes them."""
    from dataclasses import asdict
    from pathlib import Path

    import pleval
    from pleval.data import RCT_SAMPLE_COLUMNS, SAMPLE_COLUMNS

    root = Path(__file__).resolve().parents[1] / "sample_data"
    d = pd.read_csv(root / "pl_matched_students.csv")
    r = pd.read_csv(root / "pl_cluster_rct.csv")
    roles = {k: v for k, v in asdict(SAMPLE_COLUMNS).items() if v not in (None, ())}
    assert (pleval.match(d, roles, method="vcg").estimate().raw.estimate
            == pleval.match(d, SAMPLE_COLUMNS, method="vcg").estimate().raw.estimate)
    rct_roles = {k: v for k, v in asdict(RCT_SAMPLE_COLUMNS).items() if v not in (None, ())}
    a = pleval.analyze_rct(r, rct_roles, subject="math", subgroups="frl")
    b = pleval.analyze_rct(r, RCT_SAMPLE_COLUMNS, subject="math", subgroups=["frl"])
    assert a.itt.raw.estimate == b.itt.raw.estimate and a.subgroups.equals(b.subgroups)
    assert pleval.check(d, given=SAMPLE_COLUMNS).columns == pleval.check(d, SAMPLE_COLUMNS).columns
    with pytest.raises(DataError, match="columns must be a pleval.data.Columns or a mapping"):
        pleval.match(d, ["posttest"])


def test_column_names_must_be_text():
    """A frame read with header=None (or transposed) has integer labels, a MultiIndex tuples:
    roles naming them stopped Columns, check, match and estimate with "TypeError: 'int' object
    is not iterable" before 2026-12-05; now a DataError names the role and the fix, and the
    same frame with text labels named as text is clean."""
    import pleval

    df = pd.read_csv("sample_data/pl_matched_students.csv", nrows=2000)
    names = list(df.columns)
    ix = {n: i for i, n in enumerate(names)}
    numbered = df.set_axis(range(len(names)), axis=1)
    roles = dict(outcome=ix["posttest"], treatment=ix["treatment"], pretest=(ix["pretest"],), covariates=[ix["frl"]],
                 school=ix["school_id"], student_id=ix["student_id"], grade=ix["grade"], subject=ix["subject"])
    fix = "df.columns = df.columns.astype(str)"
    with pytest.raises(DataError, match=f"column names must be text: outcome names {ix['posttest']} \\(int\\)") as e:
        Columns(**roles)
    assert fix in str(e.value)
    with pytest.raises(DataError, match=f"column names must be text: pretest names {ix['pretest']} \\(int\\)"):
        Columns(outcome="posttest", treatment="treatment", pretest=(ix["pretest"],))
    with pytest.raises(DataError, match="column names must be text: outcome names \\('a', 'posttest'\\) \\(tuple\\)"):
        Columns(outcome=("a", "posttest"), treatment=("a", "treatment"))
    with pytest.raises(DataError, match="column names must be text: covariates names"):
        pleval.check(numbered, given={"outcome": "posttest", "covariates": [ix["frl"]]})
    with pytest.raises(DataError, match="column names must be text: outcome names"):
        pleval.estimate(numbered, roles, placebo=False)
    as_text = numbered.set_axis(numbered.columns.astype(str), axis=1)
    text_roles = {r: str(v) if isinstance(v, int) else [str(x) for x in v] for r, v in roles.items()}
    assert not pleval.check(as_text, Columns(**text_roles)).errors
