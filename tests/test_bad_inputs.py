"""The bad-input corpus: every messy-file case of issue 13 (and those pleval already handled),
through ``pleval check``, ``pleval estimate`` and the Python API.

Each case is a small file made here from one simulated district (about 1,500 rows). For each:
the exit code (0 clean, 1 warnings, 2 errors), a one-line message naming the column or the
file, no traceback, the same line from ``pleval.check`` / ``pleval.estimate`` as a
:class:`DataError`, the row count read, and, for errors, that ``pleval estimate`` leaves no
outputs folder behind.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
from pleval.checks import check
from pleval.cli import app
from pleval.errors import DataError, PlevalWarning
from pleval.readers import read_table

runner = CliRunner()
RENAMED = {"school_id": "School Name", "posttest": "Spring RIT", "pretest": "Fall RIT", "treatment": "PL Flag",
           "subject": "Subject", "grade": "Grade Level"}
DISTRICT = ["--school", "School Name", "--outcome", "Spring RIT", "--pretest", "Fall RIT", "--treatment", "PL Flag",
            "--treated-label", "Y", "--subject", "Subject", "--grade", "Grade Level"]


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    d = pleval.simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=6, seed=5).data
    return d.reset_index(drop=True)


def _district(d: pd.DataFrame) -> pd.DataFrame:
    out = d.rename(columns=RENAMED)
    out["PL Flag"] = np.where(out["PL Flag"] == 1, "Y", "N")
    return out


def _set(d, col, pos, value):
    d = d.copy()
    if not pd.api.types.is_object_dtype(d[col]) and isinstance(value, str):
        d[col] = d[col].astype(object)
    d.loc[pos, col] = value
    return d


def _write_title_xlsx(d, p):
    with pd.ExcelWriter(p) as w:
        pd.DataFrame([["District export"], ["Spring 2024"]]).to_excel(w, index=False, header=False)
        d.to_excel(w, index=False, startrow=3)


def _write_two_sheets(d, p):
    with pd.ExcelWriter(p) as w:
        pd.DataFrame({"note": ["read me"]}).to_excel(w, sheet_name="Notes", index=False)
        d.to_excel(w, sheet_name="Data", index=False)


def _write_sav(d, p):
    import pyreadstat

    s = d.copy()
    s["race"] = s["race"].map({"white": 1, "black": 2, "hispanic": 3, "asian": 4, "other": 5}).astype(float)
    s["subject"] = s["subject"].map({"math": 1, "reading": 2}).astype(float)
    pyreadstat.write_sav(s, str(p), variable_value_labels={
        "race": {1.0: "white", 2.0: "black", 3.0: "hispanic", 4.0: "asian", 5.0: "other"},
        "subject": {1.0: "math", 2.0: "reading"}})


def _write_dta(d, p):
    s = d.copy()
    s["race"] = s["race"].astype("category")
    s.to_stata(p, write_index=False)


def _dup_header(d, p):
    s = d.copy()
    s.insert(len(s.columns), "posttest_copy", s["posttest"] * 0)
    text = s.to_csv(index=False).replace("posttest_copy", "posttest", 1)
    p.write_text(text)


def _ragged(d, p):
    lines = d.to_csv(index=False).splitlines()
    lines[5] += ",extra,fields"
    p.write_text("\n".join(lines) + "\n")


def _latin1(d, p):
    s = d.copy()
    s["school_id"] = s["school_id"].str.replace("SCH0001", "École1", regex=False)
    s.to_csv(p, index=False, encoding="cp1252")


def _csv(d, p, **kw):
    d.to_csv(p, index=False, **kw)


# name: (file name, writer(base, path), extra CLI args, exit code, needles in the first line, rows read)
CASES = {
    "clean": ("clean.csv", _csv, [], 0, [], None),
    "district with flags": ("district.csv", lambda d, p: _csv(_district(d), p), DISTRICT, 0, [], None),
    "misspelled school": ("district.csv", lambda d, p: _csv(_district(d), p),
                          [*DISTRICT[:0], "--school", "School name", *DISTRICT[2:]], 2,
                          ["'School name'", "did you mean 'School Name'", '--school "School Name"'], None),
    "near-namesake defaults": ("district.csv", lambda d, p: _csv(_district(d), p), DISTRICT[:10], 2,
                               ['--grade "Grade Level"'], None),
    "subject absent": ("nosubj.csv", lambda d, p: _csv(d[d.subject == "math"].drop(columns="subject"), p), [], 1,
                       ["subjects pooled"], None),
    "covariates absent": ("nocov.csv", lambda d, p: _csv(d.drop(columns=["female", "frl", "ell", "sped", "race"]), p),
                          [], 1, ["no covariates"], None),
    "pretest absent": ("nopre.csv", lambda d, p: _csv(d.drop(columns="pretest"), p), [], 1, ["no pretest"], None),
    "school absent": ("nosch.csv", lambda d, p: _csv(d.drop(columns="school_id"), p), [], 2, ["school_id", "--school"],
                      None),
    "duplicated header": ("duphead.csv", _dup_header, [], 2, ["duphead.csv", "'posttest'", "more than once"], None),
    "outcome outlier": ("out_y.csv", lambda d, p: _csv(_set(d, "posttest", 3, 1e12), p), [], 1,
                        ["'posttest'", "robust SDs", "1e+12"], None),
    "pretest outlier": ("out_x.csv", lambda d, p: _csv(_set(d, "pretest", 7, 1e12), p), [], 1, ["'pretest'", "1e+12"],
                        None),
    "yes/no among 0/1": ("frl.csv", lambda d, p: _csv(_set(d, "frl", [1, 2, 3], "yes"), p), [], 1,
                         ["'frl'", "mixes numbers", "'yes'"], None),
    "Grade 4 beside 4": ("grade.csv", lambda d, p: _csv(_set(d, "grade", [4, 5], "Grade 4"), p), [], 1,
                         ["'grade'", "'Grade 4'"], None),
    "constant covariate": ("const.csv", lambda d, p: _csv(d.assign(ell=0), p), [], 1, ["'ell'", "one value"], None),
    "semicolon, decimal comma": ("semi.csv", lambda d, p: _csv(d.assign(pretest=d.pretest + 0.5), p, sep=";",
                                                               decimal=","), [], 0, [], None),
    "Windows-1252": ("latin1.csv", _latin1, [], 0, [], None),
    "Excel title rows": ("title.xlsx", _write_title_xlsx, [], 0, [], None),
    "Excel header row given": ("title.xlsx", _write_title_xlsx, ["--header-row", "4"], 0, [], None),
    "Excel sheet": ("sheets.xlsx", _write_two_sheets, ["--sheet", "Data"], 0, [], None),
    "Excel no such sheet": ("sheets.xlsx", _write_two_sheets, ["--sheet", "Daten"], 2,
                            ["sheets.xlsx", "no sheet 'Daten'", "'Data'"], None),
    "Stata": ("stata.dta", _write_dta, [], 0, [], None),
    "SPSS with value labels": ("spss.sav", _write_sav, [], 0, [], None),
    "Parquet": ("data.parquet", lambda d, p: d.to_parquet(p), [], 0, [], None),
    "dot missing code": ("dot.csv", lambda d, p: _csv(_set(d, "pretest", [2, 9], "."), p), [], 2,
                         ["'pretest'", "--na ."], None),
    "dot declared": ("dot.csv", lambda d, p: _csv(_set(d, "pretest", [2, 9], "."), p), ["--na", "."], 1,
                     ["'pretest'", "2 row(s) are missing"], None),
    "labels without treated label": ("labels.csv", lambda d, p: _csv(d.assign(
        treatment=np.where(d.treatment == 1, "PL", "comparison")), p), [], 2, ["'treatment'", "--treated-label PL"], None),
    "treated label absent": ("labels.csv", lambda d, p: _csv(d.assign(
        treatment=np.where(d.treatment == 1, "PL", "comparison")), p), ["--treated-label", "Z"], 2,
        ["'treatment'", "'Z' does not occur"], None),
    "text in outcome": ("texty.csv", lambda d, p: _csv(_set(d, "posttest", [1, 4], "absent"), p), [], 2,
                        ["'posttest'", "must be numeric", "'absent'"], None),
    "infinite outcome": ("inf.csv", lambda d, p: _csv(_set(d, "posttest", 2, np.inf), p), [], 2,
                         ["'posttest'", "infinite"], None),
    # an infinite covariate (file rows 4, 7, 11: the header is row 1) passed check, then estimate called it
    # "missing or non-numeric" and a trial "2 row(s) ... in y or X; drop them first" (before 2026-12-05)
    "infinite covariate": ("infcov.csv", lambda d, p: _csv(_set(d.assign(frl=d.frl.astype(float)), "frl", [2, 5, 9],
                                                                np.inf), p), [], 2,
                           ["column 'frl' (covariates): 3 row(s) are infinite (file row(s) 4, 7, 11)"], None),
    "infinite covariate in a trial": ("infcov.csv", lambda d, p: _csv(_set(d.assign(frl=d.frl.astype(float)), "frl",
                                                                           [2, 5, 9], np.inf), p), ["--design", "rct"], 2,
                                      ["column 'frl' (covariates): 3 row(s) are infinite (file row(s) 4, 7, 11)"], None),
    "duplicated students": ("dupid.csv", lambda d, p: _csv(pd.concat([d, d.head(3)]), p), [], 2,
                            ["'student_id'", "share a student id"], None),
    "negative weight": ("negw.csv", lambda d, p: _csv(d.assign(w=np.where(d.index == 0, -1.0, 1.0)), p),
                        ["--weight", "w"], 2, ["'w'", "negative"], None),
    "weight in a trial": ("w.csv", lambda d, p: _csv(d.assign(w=1.0), p), ["--weight", "w", "--design", "rct"], 2,
                          ["'w'", "randomized-trial"], None),
    "ragged rows": ("ragged.csv", _ragged, [], 2, ["ragged.csv", "--sep"], None),
    "wrong encoding given": ("latin1.csv", _latin1, ["--encoding", "utf-8"], 2, ["latin1.csv", "--encoding cp1252"],
                             None),
    "unknown file type": ("data.sas7bdat", lambda d, p: p.write_text("x"), [], 2, ["data.sas7bdat", "unknown file type"],
                          None),
    "empty file": ("empty.csv", lambda d, p: p.write_text(""), [], 2, ["empty.csv", "empty"], None),
    "header only": ("head.csv", lambda d, p: p.write_text("a,b\n"), [], 2, ["head.csv", "no data rows"], None),
    "subject without PL rows": ("noplread.csv", lambda d, p: _csv(d[~((d.subject == "reading") & (d.treatment == 1))], p),
                                [], 1, ["'subject'", "'reading' has no treated (PL) rows", "left out"], None),
    "no subject with both arms": ("split.csv", lambda d, p: _csv(d[(d.subject == "math") == (d.treatment == 1)], p),
                                  [], 2, ["'subject'", "no subject has both", "'math': treated only",
                                          "'reading': comparison only"], None),
    "no outcome in a subject": ("noyread.csv", lambda d, p: _csv(d.assign(posttest=d.posttest.where(d.subject != "reading")),
                                                                   p), [], 1,
                                ["'subject'", "'reading'", "has no outcome in any row", "left out"], None),
    "constant outcome in a subject": ("consty.csv", lambda d, p: _csv(d.assign(
        posttest=d.posttest.where(d.subject != "reading", 200.0)), p), [], 2,
        ["'posttest'", "one value (200)", "'reading'", "SD is 0"], None),
    "weights 0 in one arm": ("w0.csv", lambda d, p: _csv(d.assign(w=np.where(d.treatment == 1, 0.0, 1.0)), p),
                             ["--weight", "w"], 2, ["'w'", "every treated (PL) row has weight 0"], None),
    "every pretest missing": ("nopre.csv", lambda d, p: _csv(d.assign(pretest=np.nan), p), [], 2,
                              ["no usable rows", "row(s) missing pretest (column 'pretest')"], None),
    "one school": ("one.csv", lambda d, p: _csv(d.assign(school_id="SCH0001"), p), [], 2,
                   ["'school_id'", "one school", "'SCH0001'", "at least 2 schools"], None),
}


@pytest.fixture(scope="module")
def corpus(base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    paths = {}
    for name, (fname, writer, *_rest) in CASES.items():
        p = folder / name.replace(" ", "_").replace("/", "_") / fname
        p.parent.mkdir()
        writer(base, p)
        paths[name] = p
    return paths


def _read_kw(args: list[str]) -> dict:
    flags = {"--sep": "sep", "--decimal": "decimal", "--encoding": "encoding", "--sheet": "sheet",
             "--header-row": "header_row", "--na": "na"}
    kw = {flags[a]: args[i + 1] for i, a in enumerate(args) if a in flags}
    if "header_row" in kw:
        kw["header_row"] = int(kw["header_row"])
    return kw


def _given(args: list[str]) -> tuple[dict, str]:
    roles = {"--school": "school", "--outcome": "outcome", "--pretest": "pretest", "--treatment": "treatment",
             "--treated-label": "treated_label", "--subject": "subject", "--grade": "grade", "--weight": "weight"}
    given = {roles[a]: args[i + 1] for i, a in enumerate(args) if a in roles}
    design = args[args.index("--design") + 1] if "--design" in args else "matched"
    return given, design


@pytest.mark.parametrize("name", list(CASES))
def test_check_cli_and_api(name, corpus, base):
    _, _, args, code, needles, _ = CASES[name]
    path = corpus[name]
    r = runner.invoke(app, ["check", str(path), *args])
    out = r.stdout + (r.stderr or "")
    assert r.exit_code == code, (name, out)
    assert "Traceback" not in out
    given, design = _given(args)
    report = check(path, given=given, design=design, **_read_kw(args))
    assert report.exit_code == code, (name, report.summary())
    if code:
        first = (report.errors or report.warnings)[0].line
        assert "\n" not in first and all(n in first for n in needles), (name, first)
        assert first in out  # the CLI prints the API's line
    if code < 2:
        rows = len(base) - {"subject absent": int((base.subject != "math").sum()),
                            "subject without PL rows": int(((base.subject == "reading") & (base.treatment == 1)).sum())
                            }.get(name, 0)
        assert report.n_rows == rows, (name, report.n_rows)


def test_readers_read_the_values(corpus, base):
    semi = read_table(corpus["semicolon, decimal comma"])
    assert semi["pretest"].tolist() == (base["pretest"] + 0.5).tolist()
    assert "École1" in set(read_table(corpus["Windows-1252"])["school_id"])
    title = read_table(corpus["Excel title rows"])
    assert list(title.columns) == list(base.columns) and len(title) == len(base)
    assert read_table(corpus["Excel sheet"], sheet="Data").shape == base.shape
    sav = read_table(corpus["SPSS with value labels"])
    assert sav["race"].astype(str).tolist() == base["race"].tolist()
    assert sav["subject"].astype(str).tolist() == base["subject"].tolist()
    dta = read_table(corpus["Stata"])
    assert dta["race"].astype(str).tolist() == base["race"].tolist()
    dot = read_table(corpus["dot declared"], na=".")
    assert dot["pretest"].isna().sum() == 2 and dot["pretest"].dtype == float


ERROR_CASES = [n for n, c in CASES.items() if c[3] == 2]


@pytest.mark.parametrize("name", ERROR_CASES)
def test_estimate_stops_before_computing(name, corpus, tmp_path):
    """``pleval estimate``: exit 2, the check's error lines only, and no outputs folder."""
    _, _, args, _, needles, _ = CASES[name]
    out = tmp_path / "results"
    r = runner.invoke(app, ["estimate", str(corpus[name]), *args, "--out", str(out)])
    lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
    assert r.exit_code == 2, (name, r.stdout, r.stderr)
    assert lines and all(ln.startswith("error:") for ln in lines), lines
    assert all(n in lines[0] for n in needles), (name, lines[0])
    assert "Traceback" not in r.stdout + r.stderr
    assert not out.exists() and not list(tmp_path.glob(".results*"))


@pytest.mark.parametrize("name", ERROR_CASES)
def test_api_raises_the_same_line(name, corpus):
    """The Python API raises DataError with the line the CLI prints (never KeyError, TypeError,
    UnicodeDecodeError or a pandas ParserError): from the reader for file problems, else from
    ``pleval.estimate`` before it computes anything."""
    _, _, args, _, needles, _ = CASES[name]
    given, design = _given(args)
    report = check(corpus[name], given=given, design=design, **_read_kw(args))
    with pytest.raises(DataError) as exc:
        df = read_table(corpus[name], **_read_kw(args))
        if given:
            pleval.estimate(df, checked=check(df, given=given, design=design), design=design)
        else:
            pleval.estimate(df, design=design)
    assert str(exc.value).startswith(report.errors[0].line), (str(exc.value), report.errors[0].line)
    assert all(n in str(exc.value) for n in needles)


def test_check_lists_every_problem_at_once(base, tmp_path):
    d = _district(base)
    d = _set(d, "Spring RIT", 3, 1e12)
    d = _set(d, "frl", [1, 2], "yes")
    p = tmp_path / "messy.csv"
    d.to_csv(p, index=False)
    r = check(p, given={"school": "School name", "outcome": "Spring RIT", "treatment": "PL Flag", "pretest": "Fall RIT"})
    kinds = {(q.level, q.kind) for q in r.problems}
    assert {("error", "missing column"), ("error", "treatment"), ("warning", "outlier"),
            ("warning", "mixed codes")} <= kinds
    assert sum(q.kind == "missing column" for q in r.errors) == 3  # school, grade (near 'Grade Level'), subject
    frame = r.to_frame()
    assert list(frame.columns) == ["level", "kind", "column", "n_rows", "message", "fix"] and len(frame) == len(r.problems)
    assert r.exit_code == 2 and "Column roles" in r.summary()


def test_writing_into_the_roles_read_from_a_report_leaves_its_summary_unchanged(base):
    """CheckReport.roles is read as a shallow copy (pleval._results.Frame, a field with a default):
    before 2026-12-05 a write into it changed what the report's summary listed."""
    c = pleval.data.SAMPLE_COLUMNS
    r = check(base, c)
    roles = r.roles
    roles.loc[:, "column"] = "zzz"
    roles["source"] = "written"
    listed = [line.split()[:2] for line in r.summary().split("Column roles:\n")[1].splitlines()[:5]]
    assert listed == [["outcome", c.outcome], ["treatment", c.treatment], ["pretest", c.pretest[0]],
                      ["covariates", c.covariates[0] + ","], ["school", c.school]]
    assert "zzz" not in r.summary() and not r.roles["column"].eq("zzz").any()


def test_school_ids_spelled_two_ways_are_found_among_hundreds_of_schools():
    """A school id typed in two cases ('SCH0001', 'sch0001') would make a school of its own: the
    spelling check covers every level, not only short lists (the sample has 300 schools)."""
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv")
    assert d["school_id"].nunique() > 200
    assert not [p for p in check(d).problems if p.kind == "mixed codes"]
    first, second = d["school_id"].iloc[0], d["school_id"].iloc[-1]
    d.loc[d.index[:5], "school_id"] = first.lower()
    d.loc[d.index[-3:], "school_id"] = " " + second.swapcase() + " "
    (p,) = [p for p in check(d).problems if p.kind == "mixed codes"]
    assert p.level == "warning" and p.column == "school_id"
    assert f"{first.lower()!r}, {first!r}" in p.message or f"{first!r}, {first.lower()!r}" in p.message
    assert repr(" " + second.swapcase() + " ") in p.message and "more value" not in p.message


def _padded(d: pd.DataFrame) -> pd.DataFrame:
    """Some text cells padded with spaces, as fixed-width exports and hand edits leave them."""
    d = d.copy()
    every = d.index % 7 == 0
    d.loc[every, "subject"] = d.loc[every, "subject"] + "   "
    d.loc[d.index % 5 == 0, "school_id"] = " " + d.loc[d.index % 5 == 0, "school_id"] + "\t"
    return d


@pytest.mark.parametrize("ext", [".csv", ".xlsx"])
def test_spaces_around_text_cells_are_removed_as_read(base, tmp_path, ext):
    """'math   ' in a text file or sheet is 'math' (as R's readr and readxl read): the padded
    file gives the clean file's estimates, with a note that counts the cells; a cell of spaces
    alone is missing, and a declared code with spaces around it ('. ') is missing too. Before,
    'math   ' was a subject of its own, analysed apart, and no check said so."""
    d = _padded(base)
    d = _set(d, "race", [4], "   ")
    d = _set(d, "pretest", [6], ". ")
    p = tmp_path / f"padded{ext}"
    d.to_csv(p, index=False) if ext == ".csv" else d.to_excel(p, index=False)
    got = read_table(p, na=".")
    assert got["subject"].tolist() == base["subject"].tolist()
    assert got["school_id"].tolist() == base["school_id"].tolist()
    assert pd.isna(got.loc[4, "race"]) and pd.isna(got.loc[6, "pretest"]) and got["pretest"].dtype == float
    note = [n for n in got.attrs["read_notes"] if n.startswith("spaces around text removed")]
    n_subject, n_school = int((base.index % 7 == 0).sum()), int((base.index % 5 == 0).sum())
    (note,) = note
    assert note.startswith(f"spaces around text removed (cells by column: 'school_id' {n_school:,}, "
                           f"'subject' {n_subject:,}, 'pretest' 1")
    if ext == ".xlsx":  # (pandas' CSV reader reads a field of spaces as missing itself)
        assert note.endswith(", 'race' 1 (1 of only spaces, read as missing))")
    assert not [q for q in check(p, na=".").problems if q.kind == "mixed codes"]
    clean = base.copy()
    clean.loc[[4], "race"], clean.loc[[6], "pretest"] = np.nan, np.nan
    a, b = pleval.estimate(got).overall, pleval.estimate(clean.dropna(subset=["race"])).overall
    assert a["subject"].tolist() == b["subject"].tolist() and set(a["subject"]) == set(base["subject"])
    assert np.allclose(a["estimate"], b["estimate"], rtol=1e-12, atol=0)


def test_spaces_around_text_in_parquet_are_flagged(base, tmp_path):
    """A Parquet file's text is kept as written (a program wrote it), so spellings that differ by
    spaces alone are a warning, each spelling shown as written."""
    p = tmp_path / "padded.parquet"
    _padded(base).to_parquet(p)
    found = {q.column: q for q in check(p).problems if q.kind == "mixed codes"}
    assert set(found) == {"subject", "school_id"}
    assert "'math   '" in found["subject"].message and "'math'" in found["subject"].message


def test_values_in_messages_read_as_the_user_wrote_them(base):
    """Numbers in messages print as in the file (``7``), not as numpy reprs (``np.int64(7)``)."""
    one = base.assign(school_id=7, female=1)
    lines = [p.line for p in check(one).problems]
    assert any("holds one school (7) in every row" in x for x in lines), lines
    assert any("holds one value (1) in every row" in x for x in lines), lines
    coded = base.assign(subject=base["subject"].factorize()[0] + 1)
    coded.loc[coded["subject"] == 2, "treatment"] = 1
    lines = [p.line for p in check(coded).problems]
    assert any(x.startswith("column 'subject' (subject): 2 has no comparison rows") for x in lines), lines
    assert not any("np." in x for x in lines)


def test_a_school_with_pl_and_comparison_students_is_named(base):
    """A matched design whose school holds both arms (here a PL school's reading rows coded as
    comparison) gets a warning naming the school and its counts; trials do not (students
    randomized within schools)."""
    assert not [p for p in check(base).problems if p.kind == "mixed school"]
    pl_school = base.loc[base["treatment"] == 1, "school_id"].iloc[0]
    rows = (base["school_id"] == pl_school) & (base["subject"] == "reading")
    mixed = base.assign(treatment=np.where(rows, 0, base["treatment"]))
    (p,) = [p for p in check(mixed).problems if p.kind == "mixed school"]
    n_pl = int(((mixed["school_id"] == pl_school) & (mixed["treatment"] == 1)).sum())
    assert p.level == "warning" and p.column == "school_id" and p.n_rows == int(rows.sum())
    assert f"1 school(s) have both PL and comparison students ({pl_school!r} ({n_pl:,} PL, {int(rows.sum()):,} " \
           "comparison rows))" in p.message and "placebo" in p.message
    assert not [p for p in check(mixed, design="rct").problems if p.kind == "mixed school"]


def test_outlier_rule_flags_only_gross_errors(base):
    """No flag on clean simulated scores; a sentinel 999 in one grade x subject cell is flagged."""
    assert not [p for p in check(base).problems if p.kind == "outlier"]
    bad = _set(base, "posttest", 11, 999.0)
    (p,) = [p for p in check(bad).problems if p.kind == "outlier"]
    assert p.n_rows == 1 and "999" in p.message


def test_a_grade_on_another_scale_is_warned_of(base):
    """One grade's outcome on a 0–1 scale beside 100–300 scores: no outlier within any cell, so
    `pleval check` found no problem and the RCT's ITT without grade terms went negative. The
    cells whose spread differs tenfold from the typical cell's are now named; clean files and
    ordinary differences in spread between grades are not flagged."""
    assert not [p for p in check(base).problems if p.kind == "scale"]
    wider = base.assign(posttest=np.where(base["grade"] == base["grade"].max(), base["posttest"] * 3, base["posttest"]))
    assert not [p for p in check(wider).problems if p.kind == "scale"]
    g = base["grade"].min()
    bad = base.assign(posttest=np.where(base["grade"] == g, base["posttest"] / 300, base["posttest"]))
    (p,) = [p for p in check(bad).problems if p.kind == "scale"]
    assert p.level == "warning" and p.column == "posttest" and f"grade {g}" in p.message
    assert p.message.count("robust SD") == 1 + base["subject"].nunique()  # the typical cell and each odd one


def test_clean_sample_file_is_clean():
    r = check("sample_data/pl_matched_students.csv")
    assert r.exit_code == 0 and not r.errors and not r.warnings


def test_warnings_head_the_output_and_the_report(base, tmp_path, monkeypatch):
    """A role that fell back to nothing: the consequence heads the CLI output and is in the report."""
    import pleval.plots

    monkeypatch.setattr(pleval.plots, "evaluation_figures", lambda ev: {})  # the report without figures: fast
    p = tmp_path / "nocov.csv"
    base.drop(columns=["female", "frl", "ell", "sped", "race"]).to_csv(p, index=False)
    out = tmp_path / "res"
    r = runner.invoke(app, ["estimate", str(p), "--out", str(out), "--no-placebo"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith("warning: no covariates")
    html = (out / "report.html").read_text()
    assert "Data checks" in html and "no covariates" in html


def test_match_never_clusters_by_student_silently(base, tmp_path):
    p = tmp_path / "nosch.csv"
    base.drop(columns="school_id").to_csv(p, index=False)
    r = runner.invoke(app, ["match", str(p), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "'school_id'" in r.stderr and "--school" in r.stderr
    assert not (tmp_path / "m").exists()
    r = runner.invoke(app, ["match", str(p), "--school", "none", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith("warning: no school column (--school none): standard errors are "
                                               "clustered by student")


def test_matched_effect_in_one_school_names_the_school_column(base):
    """A matched sample all in one school (the API's match takes such a frame) stops at the
    effect with the school column named, not robust.ols' count of clusters."""
    from pleval.errors import DesignError

    m = pleval.match(base.assign(school_id="SCH0001"), pleval.data.SAMPLE_COLUMNS, method="propensity")
    with pytest.raises(DesignError, match=r"column 'school_id' \(school\): every row of .* is in one school "
                                          r"\('SCH0001'\).*at least 2 schools"):
        m.estimate()
    two = base.assign(school_id=np.where(base.treatment == 1, "SCH0001", "SCH0002"))
    assert np.isfinite(pleval.match(two, pleval.data.SAMPLE_COLUMNS, method="propensity").estimate().raw.se)  # two schools: fitted


@pytest.mark.parametrize("name", ["one school", "constant outcome in a subject", "duplicated students",
                                  "subject without PL rows"])
def test_sensitivity_command_checks_the_data_first(name, corpus, tmp_path):
    """``pleval sensitivity`` runs the data checks first, as ``pleval match`` and ``estimate``
    do (it resolved the columns only, so such files failed deep in the analysis or lost a
    subject without a word): errors exit 2 with the check's line, warnings head the output."""
    _, _, args, code, needles, _ = CASES[name]
    r = runner.invoke(app, ["sensitivity", str(corpus[name]), *args, "--out", str(tmp_path / "s")])
    out = r.stdout + (r.stderr or "")
    assert r.exit_code == (2 if code == 2 else 0), out
    first = next(ln for ln in out.splitlines() if ln.startswith(("error:", "warning:")))
    assert first.startswith("error:" if code == 2 else "warning:") and all(n in first for n in needles), first


def test_sensitivity_shows_a_check_warning_once(base, tmp_path):
    """The check's outlier line heads ``pleval sensitivity``'s output once, as estimate's and
    match's (before 2026-12-05 the matching warned of it again: on a terminal, twice)."""
    p = tmp_path / "big.csv"
    _csv(_set(base, "posttest", [3, 8], 1e12), p)
    (line,) = [w.line for w in check(p).warnings if w.kind == "outlier"]
    with warnings.catch_warnings(record=True) as caught:  # (the CLI prints warnings on stderr)
        warnings.simplefilter("always")
        r = runner.invoke(app, ["sensitivity", str(p), "--out", str(tmp_path / "s")])
    shown = r.stdout + (r.stderr or "") + "\n".join(str(w.message) for w in caught)
    assert r.exit_code == 0 and shown.count(line) == 1, shown


def test_subject_without_pl_rows_is_left_out_and_counted(base):
    """A subject whose rows hold no PL student is left out with a warning and a dropped-rows
    entry (it used to stop with an internal KeyError); the other subject's results are those
    of analysing it alone; asked for by name, it is an error naming it."""
    from pleval.errors import PlevalWarning

    d = base[~((base.subject == "reading") & (base.treatment == 1))]
    n_read = int((d.subject == "reading").sum())
    opts = dict(design="matched", placebo=False, sensitivity=False)
    with pytest.warns(PlevalWarning, match="'reading' has no treated \\(PL\\) rows"):
        ev = pleval.estimate(d, **opts)
    assert ev.subjects == ("math",)
    drop = ev.table("dropped")
    row = drop[drop["stage"] == "subject selection"]
    assert row[["reason", "column", "n_rows"]].values.tolist() == [
        ["subject reading: no treated rows with an outcome", "subject", n_read]]
    alone = pleval.estimate(d, subject="math", **opts)
    assert ev.effects["math"].effect_size.estimate == alone.effects["math"].effect_size.estimate
    with pytest.raises(DataError, match=f"'reading' has no treated \\(PL\\) rows with an outcome among its {n_read:,} "):
        pleval.estimate(d, subject="reading", **opts)


def test_separation_message_gives_the_command_line_fix(base, tmp_path):
    """A covariate level with no PL student stops the propensity fit; the message names the
    command line's fix, which then runs."""
    d = base.copy()
    d.loc[d.index[d.treatment == 0][:5], "race"] = "pacific"
    p = tmp_path / "sep.csv"
    d.to_csv(p, index=False)
    r = runner.invoke(app, ["estimate", str(p), "--out", str(tmp_path / "a"), "-q"])
    assert r.exit_code == 2 and "race = 'pacific' (no treated rows among 5)" in r.stderr
    assert "--set penalize=true in pleval estimate" in r.stderr
    r = runner.invoke(app, ["estimate", str(p), "--out", str(tmp_path / "b"), "-q", "--set", "penalize=true"])
    assert r.exit_code == 0, r.stdout + r.stderr


def test_too_small_a_matched_sample_says_so(base):
    """VCG matching of one PL school against two comparison schools keeps a handful of pairs:
    the pooled SD (within grade) has no degrees of freedom, or the CR2 SE cannot be estimated
    (3 + 3 rows, one school each side, so every student its own cluster, and 5 coefficients:
    one residual df, a near-exact fit whose SE was 2e-7). Each is an error saying the matched
    sample is too small, with its counts (they were 'each group needs at least 2 non-missing
    outcomes' and a NaN conversion error)."""
    from pleval.errors import DesignError

    cases = [(pd.read_csv("sample_data/pl_matched_students.csv"),
              r"\(3 treated, 3 comparison rows matched, 6 clusters\): the effect's CR2 standard error could not be "
              r"estimated \(5 coefficients, 1 residual df\)"),
             (base, r"\(5 treated, 5 comparison rows matched\): outcome SD: each group needs at least 2 non-missing "
                    r"outcomes within grade")]
    for d, what in cases:
        pl, comp = d[d.treatment == 1].school_id.unique()[:1], d[d.treatment == 0].school_id.unique()[:2]
        m = pleval.match(d[d.school_id.isin([*pl, *comp])], pleval.data.SAMPLE_COLUMNS, method="vcg")
        try:  # math left out of the effects by subject, or (no subject estimable) the error is math's
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pleval.PlevalWarning)
                why = m.estimate(by="subject").left_out[("math",)]
        except DesignError as exc:
            why = str(exc)
        assert re.search(r"\(subject = math\) " + what + r"; the matched sample is too small", why), why
    # a norm SD needs no SD df; then reading's one pair (2 rows, 2 coefficients: an exact fit) has no SE, and
    # reading is left out of the effects by subject with that reason
    with pytest.warns(pleval.PlevalWarning, match="group reading not estimated"):
        tab = m.estimate(by="subject", sd=10.0)
    assert list(tab.effects) == [("math",)]
    assert re.search(r"\(subject = reading\) \(1 treated, 1 comparison rows matched, 2 schools\): the effect's CR2 "
                     r"standard error could not be estimated \(2 coefficients, 0 residual df\)", tab.left_out[("reading",)])
    # the table's frame (pleval match's effect.csv) keeps the group, without numbers, with its reason
    # (before 2026-12-04 it was left out of the frame and named only on the console)
    fr = tab.to_frame()
    assert fr["subject"].tolist() == ["math"] * 3 + ["reading"]  # math's three scales, reading's reason
    assert fr.loc[3, "not_estimated"] == tab.left_out[("reading",)] and (fr.loc[:2, "not_estimated"] == "").all()
    assert fr.loc[3, ["estimate", "se"]].isna().all() and np.isfinite(fr.loc[:2, "estimate"]).all()


def test_treated_label_in_trials_and_placebo_schools(base):
    """The label is applied once: an RCT and matched placebo schools accept a two-label treatment."""
    labelled = base.assign(treatment=np.where(base.treatment == 1, "PL", "comparison"))
    cols = pleval.data.SAMPLE_COLUMNS.replace(treated_label="PL")
    ev = pleval.estimate(labelled, cols, n_placebo=4)
    ref = pleval.estimate(base, pleval.data.SAMPLE_COLUMNS, n_placebo=4)
    assert ev.overall["estimate"].tolist() == pytest.approx(ref.overall["estimate"].tolist())
    assert len(ev.placebo) and ev.placebo["effect_size"].tolist() == pytest.approx(ref.placebo["effect_size"].tolist())
    rct = pleval.estimate(labelled, cols, design="rct", placebo=False)
    rct_ref = pleval.estimate(base, pleval.data.SAMPLE_COLUMNS, design="rct", placebo=False)
    assert rct.overall["estimate"].tolist() == pytest.approx(rct_ref.overall["estimate"].tolist())
    assert ev.columns.treated_label == "PL"  # run.toml keeps it


def test_no_pretest_works(base):
    cols = pleval.data.SAMPLE_COLUMNS.replace(pretest=())
    ev = pleval.estimate(base, cols, placebo=False)
    assert len(ev.overall) and ev.equivalence.empty
    ev = pleval.estimate(base.drop(columns="pretest"), placebo=False)  # absent: runs, with a warning
    assert any("no pretest" in p.line for p in ev.checks.warnings)


def test_schools_infinite_moderator_is_an_error(tmp_path):
    """An infinite moderator stops pleval schools, named with its row and school, whether the
    moderators are asked for or the defaults (before 2026-12-05: "missing or not numeric", with no
    row or school; for the defaults a note, and no meta-regression at all); a missing value still
    leaves that school out with a warning."""
    table = pd.read_csv("sample_data/school_effects.csv")
    p = tmp_path / "infmod.csv"
    table.assign(years_implementing=table.years_implementing.astype(float).where(table.index != 3, np.inf)).to_csv(
        p, index=False)
    line = (f"error: column 'years_implementing' (moderator): 1 row(s) are infinite (file row(s) 5; school(s) "
            f"{table.school_id.iloc[3]!r}); correct or remove them")
    for args in ([], ["--moderators", "years_implementing"]):
        r = runner.invoke(app, ["schools", str(p), *args])
        assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1] == line, (args, r.output)
    table.assign(years_implementing=table.years_implementing.where(table.index != 3)).to_csv(p, index=False)
    with pytest.warns(PlevalWarning, match=f"{table.school_id.iloc[3]!r} left out of the meta-regression"):
        r = runner.invoke(app, ["schools", str(p)])
    assert r.exit_code == 0


def test_schools_infinite_estimate_and_two_schools(tmp_path):
    table = pd.read_csv("sample_data/school_effects.csv")
    math = table[table.subject == "math"]
    inf = tmp_path / "inf.csv"
    math.assign(estimate=np.where(np.arange(len(math)) == 1, np.inf, math.estimate)).to_csv(inf, index=False)
    r = runner.invoke(app, ["schools", str(inf)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == (f"error: column 'estimate' (estimate): 1 row(s) are infinite (file "
                                                 f"row(s) 3; school(s) {math.school_id.iloc[1]!r}); correct or remove them")
    school = math.school_id.iloc[2]
    for se, line in [("abc", f"column 'se' (se) must be numeric: 1 row(s) hold text such as 'abc' (file row(s) 4; "
                             f"school(s) {school!r}); correct or remove them"),
                     ("0", f"column 'se' (se): 1 row(s) are zero or negative (file row(s) 4; school(s) {school!r}); a "
                           "standard error must be positive"),
                     ("", "rows/schools left out: 1 (missing estimate or SE, estimate/se)")]:
        bad = tmp_path / "se.csv"
        math.assign(se=np.where(np.arange(len(math)) == 2, se, math.se.astype(str))).to_csv(bad, index=False)
        r = runner.invoke(app, ["schools", str(bad)])
        assert line in r.stdout + r.stderr, (se, r.stdout + r.stderr)
        assert r.exit_code == (0 if se == "" else 2)
    from pleval.errors import PlevalWarning
    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    with pytest.warns(PlevalWarning, match=f"1 school row\\(s\\) with a missing estimate or SE were left out "
                                           f"\\(index 2; school\\(s\\) {school!r}\\)"):
        school_effects_from_estimates(math.reset_index(drop=True).assign(
            se=np.where(np.arange(len(math)) == 2, np.nan, math.se)))
    two = tmp_path / "two.csv"
    math.head(2).to_csv(two, index=False)
    r = runner.invoke(app, ["schools", str(two)])  # default moderators cannot be fitted: a note, exit 0
    assert r.exit_code == 0 and "note: no meta-regression on the default moderators" in r.stdout
    r = runner.invoke(app, ["schools", str(two), "--moderators", "school_poverty,years_implementing,enrollment"])
    assert r.exit_code == 2 and r.stdout == "" and "meta-regression" in r.stderr  # asked for: an error, nothing printed


def test_school_rows_without_a_subject_or_school_are_left_out_with_a_warning():
    """A school row with an empty subject (or school) cell left every analysis without a word
    (pandas' groupby drops missing keys): the sample's reading pooled 39 schools where the
    header said 80 estimates. It is now left out with a warning naming its file row, and
    counted; the analysis equals that of the table without it. A column headed 'Subject' is
    named, not silently ignored."""
    from pleval.errors import DataError, PlevalWarning
    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    table = pd.read_csv("sample_data/school_effects.csv")
    for col in ("subject", "school_id"):
        gap = table.copy()
        gap.loc[3, col] = np.nan
        with pytest.warns(PlevalWarning, match=f"column '{col}' \\((by|school)\\): 1 school row\\(s\\) have no value "
                                               f"and were left out \\(index 3; school\\(s\\) "):
            got = school_effects_from_estimates(gap)
        ref = school_effects_from_estimates(table.drop(index=3).reset_index(drop=True))
        pd.testing.assert_frame_equal(got.to_frame(), ref.to_frame())
        assert got.dropped.iloc[-1][["reason", "n_rows"]].tolist() == [f"missing {'by' if col == 'subject' else 'school'}", 1]
    with pytest.raises(DataError, match="no column 'subject', but 'Subject': name it as the subject column"):
        school_effects_from_estimates(table.rename(columns={"subject": "Subject"}))


def test_per_school_estimates_on_another_scale_are_flagged():
    """Per-school estimates in percentile or score points (|estimate| > 2) are read as SDs only
    with a warning that names the column, the values and the schools; effect sizes pass quietly."""
    import warnings

    from pleval.errors import PlevalWarning
    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "school_effects.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlevalWarning)
        school_effects_from_estimates(d)
    pct = d.assign(estimate=d["estimate"] * 100)
    n_big = int((pct["estimate"].abs() > 2).sum())
    first = pct["estimate"].iloc[0]
    with pytest.warns(PlevalWarning, match=f"column 'estimate' \\(estimate\\): {n_big} of {len(d)} row\\(s\\) "
                                           f"exceed 2 in absolute value \\({first:g}, .*school\\(s\\) 'PL001'"):
        school_effects_from_estimates(pct)
    gap = pct.assign(se=pct["se"].where(pct.index != 0))  # row 0 left out: the rows named are still data's
    with pytest.warns(PlevalWarning, match=f"{n_big - 1} of {len(d) - 1} row\\(s\\) exceed 2 in absolute value "
                                           f"\\({pct['estimate'].iloc[1]:g}, .*index 1, 2, 3; school\\(s\\) "
                                           f"{pct.school_id[1]!r}, {pct.school_id[2]!r}"):
        school_effects_from_estimates(gap)
    # variances given as SEs: implausibly small for one school
    var = d.assign(se=d["se"] ** 2)
    n_tiny = int((var["se"] < 0.005).sum())
    with pytest.warns(PlevalWarning, match=f"column 'se' \\(se\\): {n_tiny} of {len(d)} row\\(s\\) are below 0.005 "
                                           f"\\({var['se'].iloc[0]:g}, .*school\\(s\\) 'PL001'.*take their square root"):
        school_effects_from_estimates(var)


def test_pleval_schools_text_in_a_moderator(tmp_path):
    """Text among a moderator's values: asked for, an error naming the column, row and school;
    a default moderator, left out with a note while the others are fitted."""
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "school_effects.csv")
    d["enrollment"] = d["enrollment"].astype(object)
    d.loc[4, "enrollment"] = "large"
    p = tmp_path / "text.csv"
    d.to_csv(p, index=False)
    r = CliRunner().invoke(app, ["schools", str(p), "-q", "--moderators", "enrollment"])
    assert r.exit_code == 2 and ("column 'enrollment' (moderator) must be numeric: 1 row(s) hold text such as 'large' "
                                 f"(file row(s) 6; school(s) {d.school_id[4]!r})") in r.output
    r = CliRunner().invoke(app, ["schools", str(p), "-q"])
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "note: default moderator(s) enrollment hold text, not numbers" in out
    assert "Meta-regression (REML with Knapp-Hartung), k = 40" in out


def test_api_warns_on_outliers_and_mixed_codes(base):
    bad = _set(_set(base, "posttest", 3, 1e12), "frl", [1, 2], "yes")
    with pytest.warns(pleval.PlevalWarning) as rec:
        pleval.match(bad, pleval.data.SAMPLE_COLUMNS, method="mahalanobis")
    msgs = [str(w.message) for w in rec]
    assert any("'posttest'" in m and "robust SDs" in m for m in msgs)
    assert any("'frl'" in m and "mixes numbers" in m for m in msgs)
    with pytest.warns(pleval.PlevalWarning, match="'posttest' \\(outcome\\).*robust SDs"):
        pleval.estimate(_set(base, "posttest", 3, 1e12), placebo=False)


def test_excel_workbook_is_closed_on_every_path(tmp_path):
    """Reading a workbook closes it, also when the sheet asked for is missing (it was left open:
    a ResourceWarning when the garbage collector found it)."""
    import gc
    import warnings

    p = tmp_path / "sheets.xlsx"
    _write_two_sheets(pd.read_csv("sample_data/pl_matched_students.csv", nrows=50), p)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="no sheet 'Daten'"):
            read_table(p, sheet="Daten")
        with pytest.raises(DataError, match="no sheet number 7"):
            read_table(p, sheet=7)
        assert len(read_table(p, sheet="Data")) == 50
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)], [str(w.message) for w in seen]


def test_trimming_skips_columns_of_objects_without_text():
    """A sheet's column of objects that are not text (numbers with a gap, booleans) is left as it
    is: pandas' .str accessor refuses such a column, which would have stopped the read."""
    from pleval.readers import _trim_text

    df = pd.DataFrame({"a": pd.Series([1, 2, None], dtype=object), "b": pd.Series([True, False, True], dtype=object),
                       "c": [" x", "y", "z "]})
    notes: list[str] = []
    assert _trim_text(df, notes) == ["c"] and df["c"].tolist() == ["x", "y", "z"]
    assert df["a"].tolist() == [1, 2, None] and notes == ["spaces around text removed (cells by column: 'c' 2)"]


def test_a_treatment_label_spelled_two_ways_is_named_as_such(base):
    """'PL', 'pl' and 'Comparison': three values, two of them one spelling; the error says so."""
    d = base.assign(treatment=np.where(base["treatment"] == 1, "PL", "Comparison"))
    d.loc[d.index[:3], "treatment"] = "pl"
    (p,) = [q for q in check(d, given={"treated_label": "PL"}).errors if q.kind == "treatment"]
    assert "found 3: ['Comparison', 'PL', 'pl'] (they differ only in letter case or spaces" in p.message


def test_file_rows_count_blank_lines(tmp_path):
    """A blank line in a CSV shifted every file row named after it by one (pandas skips blank
    lines); the rows are now numbered by their lines in the file."""
    from pleval.readers import file_rows

    f = tmp_path / "gaps.csv"
    f.write_text("school,es\nA,0.1\n\nB,0.2\n\n\nC,abc\n")
    df = read_table(f)
    assert list(df["school"]) == ["A", "B", "C"] and file_rows(df, [0, 1, 2]) == [2, 4, 7]
    res = CliRunner().invoke(app, ["convert", "--file", str(f), "--column", "es"])
    assert "file row(s) 7" in res.output
    plain = tmp_path / "plain.csv"
    plain.write_text("school,es\nA,0.1\nB,0.2\n")
    assert file_rows(read_table(plain), [1]) == [3] and "file_rows" not in read_table(plain).attrs


def test_file_rows_are_shared_not_copied_by_each_pandas_operation(tmp_path):
    """pandas deep-copies a frame's ``attrs`` whenever an operation makes a new frame (a shallow
    copy, a results object's frame as handed out, a row subset): the line numbers of a file with
    a blank line were a list of every row's line, copied each time (half a second per copy at 1M
    rows). They are shared now, and still number the rows of a subset as read."""
    import copy

    from pleval.readers import file_rows

    f = tmp_path / "gaps.csv"
    f.write_text("school,es\n" + "".join(f"S{i},{i / 10}\n" + ("\n" if i == 3 else "") for i in range(8)))
    df = read_table(f)
    lines = df.attrs["file_rows"]
    assert copy.deepcopy(df.attrs)["file_rows"] is lines and df.copy(deep=False).attrs["file_rows"] is lines
    assert df[df["es"] > 0.45].attrs["file_rows"] is lines
    assert file_rows(df, [3, 4, 7]) == [5, 7, 10]
    df.to_parquet(tmp_path / "gaps.parquet")  # the metadata is written as JSON
    assert pd.read_parquet(tmp_path / "gaps.parquet").attrs["file_rows"] == list(lines)


def test_school_table_counts_must_be_counts():
    """n_treated = −3 was printed in the school table without a word; so were '12a' and inf (until
    2026-12-04)."""
    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    t = pd.read_csv("sample_data/school_effects.csv")
    t = t[t["subject"] == "math"].reset_index(drop=True)
    school_effects_from_estimates(t, by=())  # the sample file's counts pass
    school_effects_from_estimates(t.assign(n_treated=t["n_treated"].where(t.index != 0)), by=())  # a missing count too
    for bad in (-3, 2.5, "12a", np.inf):
        with pytest.raises(DataError, match=r"column 'n_treated': 1 row\(s\) are not counts"):
            school_effects_from_estimates(t.assign(n_treated=t["n_treated"].where(t.index != 0, bad)), by=())


def test_school_table_labels_spelled_two_ways_are_warned_of():
    """'pl001' beside 'PL001', or 'Math' beside 'math', were analysed as different schools or
    subjects without a word."""
    from pleval.errors import PlevalWarning
    from pleval.heterogeneity.school_effects import school_effects_from_estimates

    t = pd.read_csv("sample_data/school_effects.csv")
    t = t[t["subject"] == "math"].reset_index(drop=True)
    t.loc[1, "school_id"] = t.loc[0, "school_id"].lower()
    with pytest.warns(PlevalWarning, match=r"column 'school_id' \(school\) spells one value several ways"):
        school_effects_from_estimates(t, by=())
    t2 = pd.read_csv("sample_data/school_effects.csv")
    t2.loc[t2.index[:3], "subject"] = t2.loc[t2.index[:3], "subject"].str.capitalize()
    with pytest.warns(PlevalWarning, match=r"column 'subject' \(by\) spells one value several ways"):
        school_effects_from_estimates(t2, by=("subject",))


def test_missing_values_are_counted_by_arm(base):
    """A pretest missing for 40% of PL rows was one count of rows 'dropped', the arm unsaid."""
    pl = base["treatment"] == 1
    bad = base.assign(pretest=base["pretest"].where(~pl | (np.arange(len(base)) % 5 != 0)))
    (p,) = [p for p in check(bad).problems if p.kind == "missing values" and p.column == "pretest"]
    n_t = int((pl & bad["pretest"].isna()).sum())
    assert f"({n_t:,} of {int(pl.sum()):,} treated, 0 of {int((~pl).sum()):,} comparison rows: the treated arm only)" \
        in p.message


def test_a_ceiling_is_warned_of(base):
    """Scores capped at their cell's 60th percentile (40% at the maximum): the check flagged
    genuine low scores as outliers and said nothing of the ceiling."""
    cell = base.groupby(["subject", "grade"])["posttest"]
    capped = base.assign(posttest=np.minimum(base["posttest"], cell.transform(lambda s: s.quantile(0.6))))
    (p,) = [p for p in check(capped).problems if p.kind == "ceiling"]
    assert p.level == "warning" and "sit at the maximum" in p.message and "ceiling" in p.message
    assert not [p for p in check(base).problems if p.kind == "ceiling"]
    binary = base.assign(posttest=(base["posttest"] > base["posttest"].median()).astype(float))
    assert not [p for p in check(binary).problems if p.kind == "ceiling"]  # a 0/1 outcome is no ceiling


def test_a_stray_treatment_value_names_its_file_rows(tmp_path):
    """An Excel 'Total' row (treatment 5182) gave 'found 3 distinct values' without saying where."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    f = tmp_path / "total.csv"
    pd.concat([d, pd.DataFrame([{"student_id": "Total", "treatment": 5182}])]).to_csv(f, index=False)
    (p,) = [p for p in check(f).problems if p.kind == "treatment"]
    assert f"5182 only in file row(s) {len(d) + 2} (a total or note row?)" in p.message


def test_missing_value_counts_by_arm_leave_rows_without_a_treatment_out_of_both_arms():
    """The missing-value warning's denominators counted rows with a blank treatment as
    comparison rows ('49 of 47,377 comparison rows' with 5 blank): they are in neither arm."""
    d = pd.read_csv("sample_data/pl_matched_students.csv").astype({"treatment": float})
    comp = d.index[d.treatment == 0]
    d.loc[comp[:5], "treatment"] = np.nan
    d.loc[comp[100:149], "pretest"] = np.nan
    (line,) = [p.line for p in pleval.check(d).problems if p.column == "pretest" and "missing" in p.line]
    n_t, n_c = int((d.treatment == 1).sum()), int((d.treatment == 0).sum())
    assert f"(0 of {n_t:,} treated, 49 of {n_c:,} comparison rows: the comparison arm only)" in line


def test_a_number_written_two_ways_in_a_text_column_is_warned_of(base):
    """Grades '3' beside '03' (two exports merged; a few 'KG' rows make the column text) were two
    exact-match cells and the matched comparison fell from 7,193 to 4,966 students, with a warning
    about 'KG' alone: the mixed-codes warning returned before the spellings were compared, and
    '03' was not the spelling of 3 it is."""
    d = base.copy()
    d["grade"] = d["grade"].astype(str)
    half = d["school_id"].str[-1].astype(int) % 2 == 0
    d.loc[half, "grade"] = "0" + d.loc[half, "grade"]
    d.loc[d.index[:5], "grade"] = "KG"
    lines = [p.line for p in check(d).problems if p.kind == "mixed codes" and p.column == "grade"]
    assert len(lines) == 2 and "with text in 5 row(s) such as 'KG'" in lines[0]
    assert "column 'grade' (grade) spells one value several ways ('3', '03'" in lines[1] or \
           "column 'grade' (grade) spells one value several ways ('03', '3'" in lines[1]
    d.loc[d.index[:5], "grade"] = "3.0"
    (line,) = [p.line for p in check(d).problems if p.kind == "mixed codes" and p.column == "grade"]
    assert "spells one value several ways" in line and "'3.0'" in line
    assert not [p for p in check(base.assign(grade=base["grade"].astype(str))).problems if p.kind == "mixed codes"]


@pytest.mark.parametrize("ext", [".csv", ".xlsx"])
def test_text_like_na_is_text_unless_declared(base, tmp_path, ext):
    """Only empty cells are missing unless --na says otherwise. Before, pandas' default list read a
    race code 'NA' (e.g. Native American) as missing, its rows dropped as if unrecorded, and an
    outcome 'N/A' or 'NULL' as attrition, under "no problems found"; the --na hint never fired."""
    d = _set(_set(base, "race", [3, 8], "NA"), "posttest", [5], "N/A")
    p = tmp_path / f"na_text{ext}"
    d.to_csv(p, index=False) if ext == ".csv" else d.to_excel(p, index=False)
    got = read_table(p)
    assert got.loc[3, "race"] == "NA" and got.loc[8, "race"] == "NA"
    (q,) = [q for q in check(p).problems if q.kind == "non-numeric"]
    assert q.column == "posttest" and "--na" in q.fix
    declared = read_table(p, na="N/A")
    assert pd.isna(declared.loc[5, "posttest"]) and declared.loc[3, "race"] == "NA"
    # an R export's 'NA' among a 0/1 covariate: a category of its own, said, with --na as the fix
    q = tmp_path / f"frl_na{ext}"
    f = _set(base.assign(frl=base["frl"].astype("Int64").astype(str)), "frl", [2, 9], "NA")
    f.to_csv(q, index=False) if ext == ".csv" else f.to_excel(q, index=False)
    (mixed,) = [x for x in check(q).problems if x.kind == "mixed codes" and x.column == "frl"]
    assert mixed.fix == "--na NA if they mean missing"


@pytest.mark.parametrize("col", ["pretest", "posttest"])
def test_date_formatted_scores_are_refused(base, tmp_path, col):
    """A workbook's date-formatted score column. Before, a date pretest was used as nanoseconds
    since 1970 (baseline difference −1.7e11, SD 1.2e12) and a date outcome passed `pleval check`
    with its blank cells as −9.2e18 outliers; now both are the error that names the column."""
    d = base.copy()
    d[col] = pd.Timestamp("2024-07-01") + pd.to_timedelta(d[col].fillna(0).round(), unit="D")
    p = tmp_path / "dates.xlsx"
    d.to_excel(p, index=False)
    with pytest.raises(DataError, match=f"column '{col}' .* must be numeric: it holds dates such as '20"):
        pleval.estimate(read_table(p), placebo=False)
    (q,) = [q for q in check(p).problems if q.level == "error"]
    assert q.column == col and "holds dates" in q.message


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".parquet"])
def test_a_numeric_missing_value_code_is_missing_in_every_format(base, tmp_path, ext):
    """--na -99: a workbook's numeric -99 cells stayed scores (read_excel's na_values match text
    only) while CSV and Parquet read them as missing; now every format does."""
    d = _set(_set(base, "pretest", [2], -99), "posttest", [3], -99)
    p = tmp_path / f"code99{ext}"
    {".csv": lambda: d.to_csv(p, index=False), ".xlsx": lambda: d.to_excel(p, index=False),
     ".parquet": lambda: d.to_parquet(p, index=False)}[ext]()
    got = read_table(p, na="-99")
    assert pd.isna(got.loc[2, "pretest"]) and pd.isna(got.loc[3, "posttest"])
    assert got["pretest"].notna().sum() == base["pretest"].notna().sum() - 1


def test_a_trailing_delimiter_on_every_row_keeps_the_columns_in_place(base, tmp_path):
    """Rows ending with a delimiter the header lacks: before 2026-12-04 pandas took the first
    column as the index and shifted the others one place left (the treatment read from the
    grades) with no message; now they are read as the clean file, with a note, and a row whose
    extra field holds a value is an error naming its line."""
    clean = tmp_path / "clean.csv"
    base.head(200).to_csv(clean, index=False)
    lines = clean.read_text().splitlines()
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("\n".join([lines[0], *(x + "," for x in lines[1:])]) + "\n")
    got, want = read_table(trailing), read_table(clean)
    pd.testing.assert_frame_equal(got, want)
    assert any("a delimiter ends every data row" in n for n in got.attrs["read_notes"])
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], *(x + "," for x in lines[1:150]), lines[150] + ",7", *(x + "," for x in lines[151:])]))
    with pytest.raises(DataError, match="bad.csv: line 151 has"):
        read_table(bad)


def test_a_utf16_text_file_is_read_by_its_byte_order_mark(base, tmp_path):
    """Excel's "Unicode Text" (UTF-16 with a byte-order mark, tab-separated) was decoded as
    Windows-1252 before 2026-12-04: column names full of NUL bytes."""
    clean = tmp_path / "clean.txt"
    base.head(100).to_csv(clean, index=False, sep="\t")
    u16 = tmp_path / "u16.txt"
    u16.write_bytes(clean.read_text().encode("utf-16"))
    got = read_table(u16)
    pd.testing.assert_frame_equal(got, read_table(clean))
    assert any("UTF-16" in n for n in got.attrs["read_notes"])


def test_point_numbers_in_a_comma_decimal_file(tmp_path):
    """A semicolon file with point decimals and one free-text cell '3,5' is read with decimal
    commas. A column of numbers written with a point is read as numbers when that is unambiguous
    ('0.14', with a note); one where a value could be thousands ('1.037') or two values would
    become one number (codes '10.10' and '10.1') stays text with a warning naming it. Before
    2026-12-04 all stayed text without a word: a covariate became a category per value."""
    src = tmp_path / "semi.csv"
    src.write_text("school;poverty;comment;code;money\nA;0.14;ok;10.10;1.037\nB;0.27;3,5;10.1;950\n"
                   "C;0.5;fine;3.2;12.500\n")
    df = read_table(src)
    assert df["poverty"].tolist() == [0.14, 0.27, 0.5] and df["comment"].tolist() == ["ok", "3,5", "fine"]
    assert df["code"].tolist() == ["10.10", "10.1", "3.2"] and df["money"].tolist() == ["1.037", "950", "12.500"]
    assert any("decimal point read as numbers: 'poverty'" in n for n in df.attrs["read_notes"])
    r = check(src, given={"outcome": "poverty", "school": "school"})
    warned = [p.message for p in r.problems if p.level == "warning" and p.kind == "reading"]
    assert len(warned) == 1 and "'code', 'money'" in warned[0]
    comma = tmp_path / "comma.csv"
    comma.write_text("school;poverty\nA;0,14\nB;0,27\n")
    assert read_table(comma)["poverty"].tolist() == [0.14, 0.27]


def test_a_file_in_two_encodings_is_warned_of(tmp_path):
    """Rows appended in UTF-8 to a Windows-1252 file are read as cp1252 (the whole file, as one
    encoding: reading each run of bytes by its own misread cp1252 text that is valid UTF-8 by
    accident, 'JOSÉ’S'), and the UTF-8 rows' 'hispÃ¡nico' is a warning naming the mix: before
    2026-12-04 nothing said so and the levels split without a word."""
    head = "student_id,race\n" + "".join(f"s{i},hispánico\n" for i in range(5))
    tail = "".join(f"t{i},hispánico\n" for i in range(5))
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(head.encode("utf-8") + tail.encode("cp1252"))
    r = check(mixed)
    assert any(p.level == "warning" and "look like UTF-8 read as Windows-1252" in p.message for p in r.problems)
    pure = tmp_path / "pure.csv"
    pure.write_bytes(("student_id,school\n" + "".join(f"s{i},SAN JOSÉ\u2019S\n" for i in range(5)) + "s9,Bogotá\n")
                     .encode("cp1252"))
    df = read_table(pure)
    assert df["school"].unique().tolist() == ["SAN JOSÉ\u2019S", "Bogotá"]
    assert not any("look like UTF-8" in n for n in df.attrs["read_notes"])


def test_trailing_tabs_and_european_decimals(tmp_path):
    """A tab file with a tab ending every row reads as the clean file (the first version of the
    trailing-delimiter reading refused it); a semicolon file of comma decimals keeps its
    thousands written with points ('1.037') as text, not 1.037."""
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\tgrade\tscore\n1\t3\t201.5\t\n2\t4\t199\t\n")
    assert read_table(tsv)["score"].tolist() == [201.5, 199.0]
    euro = tmp_path / "e.csv"
    euro.write_text("id;score;enrolment\n1;201,1;1.037\n2;199,5;2.410\n")
    d = read_table(euro)
    assert d["score"].tolist() == [201.1, 199.5] and d["enrolment"].tolist() == ["1.037", "2.410"]


def test_a_missing_grade_column_is_not_read_as_duplicated_ids(base, tmp_path):
    """With the grade column misnamed, the duplicated-id check beside other errors does not run on
    id × subject alone (it reported students with several grades as duplicates)."""
    d = base.head(400).copy()
    i, j = d.index[0], d[(d["subject"] == d.loc[d.index[0], "subject"]) & (d["grade"] != d.loc[d.index[0], "grade"])].index[0]
    d.loc[j, "student_id"] = d.loc[i, "student_id"]  # one student in two grades: two terms, not a duplicate
    p = tmp_path / "g.csv"
    d.to_csv(p, index=False)
    r = check(p, given={"grade": "grde"})
    assert any(q.kind == "missing column" for q in r.errors) and not any(q.kind == "duplicated id" for q in r.problems)


def test_duplicated_ids_in_a_trial_count_rows_missing_take_up():
    """Beside another error, the duplicated-id check keeps a trial's rows that miss take-up, as
    its validation does (it hid a student whose second row missed take-up)."""
    from pleval.data import Columns

    d = pd.DataFrame({"sid": ["a", "a", "b", "b", "c", "d"], "school": ["s1", "s1", "s2", "s2", "s1", "s2"],
                      "treat": [1, 1, 0, 0, 1, 0], "took": [1, np.nan, 0, 0, 1, 0],
                      "y": ["x", 1.0, 2.0, 3.0, 4.0, 5.0], "pre": [1.0, 2, 3, 4, 5, 6]})
    cols = Columns(outcome="y", treatment="treat", pretest=("pre",), school="school", student_id="sid", takeup="took")
    r = check(d, given=cols, design="rct")
    dup = [p for p in r.problems if p.kind == "duplicated id"]
    assert len(dup) == 1 and dup[0].n_rows == 4


def test_reading_options_of_another_kind_of_file_are_errors(base, tmp_path):
    """--sheet on a CSV and --sep on a workbook were ignored without a word before 2026-12-04."""
    csv = tmp_path / "a.csv"
    base.head(20).to_csv(csv, index=False)
    with pytest.raises(DataError, match="a.csv: --sheet does not apply to .csv files"):
        read_table(csv, sheet=2)
    xlsx = tmp_path / "a.xlsx"
    base.head(20).to_excel(xlsx, index=False)
    with pytest.raises(DataError, match="a.xlsx: --sep, --decimal do not apply to .xlsx files"):
        read_table(xlsx, sep=";", decimal=",")
    assert len(read_table(xlsx, sheet=0)) == 20
    pq = tmp_path / "a.parquet"
    base.head(20).to_parquet(pq, index=False)
    with pytest.raises(DataError, match="a.parquet: --header-row does not apply to .parquet files"):
        read_table(pq, header_row=3)


def test_check_of_an_unreadable_file_says_it_was_not_read(tmp_path):
    """A file that cannot be read (here a header without rows) is summarized as not read, not as
    "0 rows, 0 columns" (its header named two columns)."""
    from pleval import check

    p = tmp_path / "head.csv"
    p.write_text("a,b\n")
    report = check(p)
    assert report.summary().splitlines()[0].startswith("head.csv: not read — 1 error(s)")
    assert "no data rows" in report.errors[0].message


@pytest.mark.parametrize("dtype", ["Int64", "boolean"])
def test_a_nullable_treatment_with_missing_values_is_dropped_and_counted(base, dtype):
    """A nullable treatment's <NA> (convert_dtypes, read_csv's dtype_backend) stopped
    pleval.estimate with pandas' 'Cannot mask with non-boolean array containing NA' before
    2026-12-05; its rows are now dropped and counted as a float column's NaN are, with the
    same evaluation."""
    rows = base.index[:4]
    as_float = base.assign(treatment=base["treatment"].astype(float))
    as_float.loc[rows, "treatment"] = np.nan
    nullable = base.assign(treatment=base["treatment"].astype(dtype))
    nullable.loc[rows, "treatment"] = pd.NA
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(nullable, placebo=False, workers=1)
    assert any("column 'treatment' (treatment): 4 row(s) are missing and will be dropped" in str(w.message)
               for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ref = pleval.estimate(as_float, placebo=False, workers=1)
    for name in ("overall", "schools", "balance", "dropped"):
        pd.testing.assert_frame_equal(ev.table(name), ref.table(name), obj=name)
    dropped = ev.table("dropped")
    assert dropped.loc[dropped["reason"] == "missing treatment", "n_rows"].tolist() == [len(rows)]


def test_a_covariate_of_dates_is_refused_with_its_fix(base):
    """An enrolment date as a covariate passed `pleval.check` without a word before 2026-12-05,
    then entered the models as microseconds since 1970 (33 ill-conditioned-matrix warnings, a
    balance mean of 1.6e15); now check, validate and estimate name the column and the fix, and
    the same dates as days since a fixed date are used as any number."""
    days = pd.Series(np.arange(len(base)) % 700, index=base.index, dtype=float)
    d = base.assign(enrolled=pd.Timestamp("2019-08-01") + pd.to_timedelta(days, unit="D"), enroll_days=days)
    cols = pleval.data.SAMPLE_COLUMNS.replace(covariates=("frl", "enrolled"))
    (q,) = [q for q in check(d, cols).problems if q.level == "error"]
    assert (q.column, q.n_rows) == ("enrolled", len(d))
    assert q.message == "column 'enrolled' (covariates) must be numbers or categories: it holds dates such as " \
        "'2019-08-01 00:00:00'"
    assert "days since a fixed date" in q.fix
    for call in (lambda: pleval.estimate(d, cols, placebo=False), lambda: pleval.data.validate(d, cols)):
        with pytest.raises(DataError, match="column 'enrolled' \\(covariates\\) .* holds dates.*the year or the days"):
            call()
    assert not [q for q in check(d, cols.replace(covariates=("frl", "enroll_days"))).problems if q.level == "error"]
