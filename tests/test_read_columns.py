"""A Parquet file read in part (:func:`pleval.readers.read_table`'s ``columns``): the columns
chosen, as a whole read gives them; every name of the file kept for :func:`pleval.check`, whose
report is that of the whole file; :func:`pleval.checks.columns_needed` picks the roles' columns
and those the options name; `pleval estimate` on a Parquet file with columns no role uses writes
what it writes from the same file as CSV (read whole)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
from pleval.checks import columns_needed
from pleval.cli import app
from pleval.readers import file_columns, read_table
from pleval.simulate import simulate_matched


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    d = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=10, grades=(4, 5), seed=11,
                         missing_posttest=0.05).data
    n = len(d)
    return d.assign(extra_score=pd.array([1, None, 3] * (n // 3) + [1] * (n % 3), dtype="Int64"),
                    district_note=["a", None] * (n // 2) + ["b"] * (n % 2), poverty=d.index % 7 / 10)


def test_parquet_read_in_part_is_the_whole_read_of_those_columns(data, tmp_path):
    path = tmp_path / "s.parquet"
    data.to_parquet(path, index=False)
    seen = []
    part = read_table(path, columns=lambda names: seen.append(names) or ["posttest", "school_id", "district_note"])
    whole = read_table(path)
    assert seen == [list(data.columns)]
    assert list(part.columns) == ["school_id", "posttest", "district_note"]  # the file's order
    pd.testing.assert_frame_equal(part, whole[list(part.columns)], check_exact=True)
    assert part.attrs["file_columns"] == tuple(data.columns) and "file_columns" not in whole.attrs
    assert part.attrs["sha256"] == whole.attrs["sha256"]
    assert file_columns(part) == file_columns(whole) == list(data.columns)
    assert file_columns(part.assign(new=1)) == [*data.columns, "new"]
    assert "file_columns" not in read_table(path, columns=lambda names: None).attrs  # None: every column
    stored = tmp_path / "indexed.parquet"
    data.set_index("student_id").to_parquet(stored)  # a stored index: read whole
    assert "file_columns" not in read_table(stored, columns=lambda names: ["posttest"]).attrs
    csv = tmp_path / "s.csv"
    data.to_csv(csv, index=False)
    assert list(read_table(csv, columns=lambda names: ["posttest"]).columns) == list(data.columns)


def test_columns_needed_are_the_roles_and_the_columns_options_name(data):
    names = list(data.columns)
    roles = ["student_id", "school_id", "treatment", "grade", "subject", "pretest", "posttest", "female", "frl", "ell",
             "sped", "race"]
    assert set(roles) <= set(names)
    assert columns_needed(names) == [c for c in names if c in roles]
    got = columns_needed(names, options={"subgroups": "frl, poverty", "domains": {"extra_score": "achievement"},
                                         "match": {"calipers": {"pretest": 0.1}}, "level": 0.9})
    assert got == [c for c in names if c in roles + ["poverty", "extra_score"]]
    assert columns_needed(names, options={"domains": "district_note=attendance"}) == [
        c for c in names if c in roles + ["district_note"]]
    assert columns_needed(names, given={"covariates": "female"}) == [c for c in names if c in roles and c not in (
        "frl", "ell", "sped", "race")]
    assert columns_needed(names, given={"school": "no_such_school"}) is None  # an error: check sees every column
    assert columns_needed([c for c in names if c != "posttest"]) is None


def test_check_of_a_part_reports_the_whole_file(data, tmp_path):
    path = tmp_path / "s.parquet"
    data.to_parquet(path, index=False)
    whole = pleval.check(read_table(path))
    part = pleval.check(read_table(path, columns=columns_needed))
    assert [p.line for p in part.problems] == [p.line for p in whole.problems]
    assert any(p.kind == "unused columns" and "extra_score, district_note, poverty" in p.message for p in part.problems)
    assert (part.n_rows, part.n_columns, part.columns) == (whole.n_rows, whole.n_columns, whole.columns)
    pd.testing.assert_frame_equal(part.roles, whole.roles)


def test_estimate_of_a_parquet_file_read_in_part_equals_the_csv_read_whole(data, tmp_path, monkeypatch):
    read = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda path, columns=None, **kw: read.append(columns) or real(
        path, columns=columns, **kw))
    pq_path, csv_path = tmp_path / "s.parquet", tmp_path / "s.csv"
    data.to_parquet(pq_path, index=False)
    data.to_csv(csv_path, index=False)
    outs = {}
    for name, path in (("parquet", pq_path), ("csv", csv_path)):
        outs[name] = tmp_path / name
        r = CliRunner().invoke(app, ["estimate", str(path), "--out", str(outs[name]), "--seed", "2", "-q",
                                     "--workers", "1", "--subgroups", "poverty", "--no-placebo"])
        assert r.exit_code == 0, r.output + (r.stderr or "")
    unread = ["proficient", "school_poverty", "urbanicity", "extra_score", "district_note"]
    assert read == [[c for c in data.columns if c not in unread]]  # the roles' columns and --subgroups'
    for f in sorted(p.name for p in outs["csv"].glob("*.csv")):
        assert (outs["parquet"] / f).read_text() == (outs["csv"] / f).read_text(), f
    assert "subgroups.csv" in {p.name for p in outs["csv"].glob("*.csv")}
    prov = {k: json.loads((outs[k] / "provenance.json").read_text())["input"] for k in outs}
    assert prov["parquet"]["n_columns"] == prov["csv"]["n_columns"] == data.shape[1]
    notes = {k: [ln for ln in (outs[k] / "summary.md").read_text().splitlines() if "not used by any role" in ln]
             for k in outs}
    # the --subgroups column is read by the analysis: not listed as unused
    assert notes["parquet"] == notes["csv"] and notes["csv"][0].endswith("urbanicity, extra_score, district_note")
