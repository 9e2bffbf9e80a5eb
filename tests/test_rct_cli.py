"""`pleval rct` through typer's runner: tables written match the Python API, errors are one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
from pleval import analyze_rct
from pleval.cli import app
from pleval.data import RCT_SAMPLE_COLUMNS, file_sha256
from pleval.simulate import simulate_cluster_rct

runner = CliRunner()


@pytest.fixture(scope="module")
def trial_csv(tmp_path_factory):
    sim = simulate_cluster_rct(n_schools=16, n_blocks=4, students_per_school=30, grades=[4, 5],
                               attrition=0.1, noncompliance=0.15, seed=21)
    path = tmp_path_factory.mktemp("rct") / "trial.csv"
    sim.data.to_csv(path, index=False)
    return path, sim.data


def test_rct_cli_writes_tables_equal_to_the_api(trial_csv, tmp_path):
    path, data = trial_csv
    out = tmp_path / "out"
    r = runner.invoke(app, ["rct", str(path), "--subgroups", "frl", "--permutations", "300", "--seed", "4",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("itt", "attrition", "equivalence", "subgroups", "interactions", "randomization"):
        assert (out / f"{name}.csv").exists(), name
    itt = pd.read_csv(out / "itt.csv")
    api = analyze_rct(pd.read_csv(path), RCT_SAMPLE_COLUMNS, subject="math", subgroups=["frl"],
                      permutations=300, seed=4)
    mine = itt[(itt.subject == "math") & (itt.analysis == "ITT")].set_index("scale")
    for e in api.itt.estimates:
        assert mine.loc[e.scale, "estimate"] == pytest.approx(e.estimate, rel=1e-9)
        assert mine.loc[e.scale, "se"] == pytest.approx(e.se, rel=1e-9)
    att = pd.read_csv(out / "attrition.csv")
    assert set(att["level"]) == {"students", "schools"} and set(att["subject"]) == {"math", "reading"}
    ri = pd.read_csv(out / "randomization.csv")
    assert ri.loc[ri.subject == "math", "pvalue"].iloc[0] == pytest.approx(api.randomization.pvalue)
    assert "Attrition (WWC)" in r.output and "Baseline equivalence" in r.output
    assert "CACE (IV)" in r.output  # take-up column of the sample layout
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["kind"] == "pleval rct outputs" and prov["pleval_version"] == pleval.__version__
    assert prov["input"]["sha256"] == file_sha256(path) and prov["input"]["n_rows"] == len(data)
    assert prov["options"]["seed"] == 4 and prov["options"]["permutations"] == 300
    assert prov["options"]["subgroups"] == ["frl"] and prov["columns"]["treatment"] == ["treatment"]


def test_rct_cli_one_subject_and_missing_default_columns(trial_csv, tmp_path):
    path, data = trial_csv
    slim = tmp_path / "slim.csv"
    data.drop(columns=["takeup", "race"]).to_csv(slim, index=False)
    r = runner.invoke(app, ["rct", str(slim), "--only-subject", "reading", "--vcov", "CR1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "warning: no take-up column: no complier (CACE) estimate (default 'takeup' not in the data)" in r.output
    assert "default covariates 'race' not in the data: left out" in r.output
    itt = pd.read_csv(tmp_path / "o" / "itt.csv")
    assert set(itt["subject"]) == {"reading"} and "CACE (IV)" not in set(itt["analysis"])


def test_rct_cli_df_working(trial_csv, tmp_path):
    """``--df-working random_effects`` gives the API's df (no block column here: nothing absorbed)."""
    path, data = trial_csv
    flat = tmp_path / "flat.csv"
    data.drop(columns=["block"]).to_csv(flat, index=False)
    r = runner.invoke(app, ["rct", str(flat), "--only-subject", "math", "--df-working", "random_effects",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    itt = pd.read_csv(tmp_path / "o" / "itt.csv")
    got = itt[(itt.analysis == "ITT") & (itt.scale == "raw")].iloc[0]
    cols = RCT_SAMPLE_COLUMNS.replace(block=None)
    api = analyze_rct(pd.read_csv(flat), cols, subject="math", df_working="random_effects").itt.raw
    base = analyze_rct(pd.read_csv(flat), cols, subject="math").itt.raw
    assert got["df"] == pytest.approx(api.df, rel=1e-9) and abs(api.df / base.df - 1) > 1e-3
    r = runner.invoke(app, ["rct", str(flat), "--control", "0", "--df-working", "random_effects",
                            "--out", str(tmp_path / "o2")])
    assert r.exit_code != 0 and "--df-working applies to two-arm trials" in r.output


def test_a_subject_without_treated_rows_is_left_out_of_pleval_rct_and_rct_by_subject(trial_csv, tmp_path):
    """A subject with no treated row is left out with the checks' warning, by the command and
    by rct_by_subject, and the other subject's ITT is that of analysing it alone (the command
    warned, then stopped with 'no treated units')."""
    import warnings

    from pleval import analyze_rct, rct_by_subject
    from pleval.data import RCT_SAMPLE_COLUMNS
    from pleval.errors import PlevalWarning

    path, data = trial_csv
    d = data[~((data["subject"] == "reading") & (data["treatment"] == 1))]
    p = tmp_path / "noread.csv"
    d.to_csv(p, index=False)
    r = runner.invoke(app, ["rct", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "warning: column 'subject' (subject): 'reading' has no treated (PL) rows with an outcome" in r.output
    itt = pd.read_csv(tmp_path / "o" / "itt.csv")
    assert set(itt["subject"]) == {"math"}
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        res = rct_by_subject(d, RCT_SAMPLE_COLUMNS)
    assert list(res) == ["math"] and any("'reading' has no treated" in str(w.message) for w in got
                                         if issubclass(w.category, PlevalWarning))
    assert res["math"].itt.raw.estimate == analyze_rct(d, RCT_SAMPLE_COLUMNS, subject="math").itt.raw.estimate


def test_rct_cli_prints_each_subjects_equivalence_note(trial_csv, tmp_path):
    """Each subject gets its own WWC note: reading's high attrition requires equivalence while
    math's is low (the command printed the first subject's note alone)."""
    import numpy as np

    path, data = trial_csv
    d = data.copy()
    lost = (d["subject"] == "reading") & (d["treatment"] == 1) & (np.random.default_rng(0).random(len(d)) < 0.35)
    d.loc[lost, "posttest"] = np.nan
    p = tmp_path / "lost.csv"
    d.to_csv(p, index=False)
    r = runner.invoke(app, ["rct", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    for s in ("math", "reading"):
        res = analyze_rct(d, RCT_SAMPLE_COLUMNS, subject=s)
        assert res.equivalence_required == (s == "reading")
        assert f"{s} — {res.equivalence_note}" in r.output


def test_rct_cli_errors_are_one_line(trial_csv, tmp_path):
    path, _ = trial_csv
    r = runner.invoke(app, ["rct", str(path), "--block", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "column 'nope' (block) is not in the data" in r.output
    r = runner.invoke(app, ["rct", str(path), "--sd", "wide", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--sd" in r.output


def test_rct_stops_on_an_infinite_covariate_as_check_does(trial_csv, tmp_path):
    """An infinite covariate (file rows 3, 6: the header is row 1) is check's error in pleval rct
    and in analyze_rct (before 2026-12-05 check passed it and rct said "2 row(s) have missing or
    non-finite values in y or X; drop them first", no column named)."""
    path, data = trial_csv
    bad = data.assign(frl=data.frl.astype(float))
    bad.loc[[1, 4], "frl"] = np.inf
    p = tmp_path / "inf.csv"
    bad.to_csv(p, index=False)
    line = "column 'frl' (covariates): 2 row(s) are infinite (file row(s) 3, 6)"
    for cmd in (["check", str(p), "--design", "rct"], ["rct", str(p), "--out", str(tmp_path / "out")]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2 and f"error: {line}" in r.output, r.output
    n_math = int((np.isinf(bad.frl) & (bad.subject == "math")).sum())  # the API analyses one subject
    with pytest.raises(pleval.errors.DataError, match=re.escape(f"column 'frl' (covariates): {n_math} row(s) are "
                                                                "infinite")):
        analyze_rct(bad, RCT_SAMPLE_COLUMNS, subject="math")


def test_check_finds_school_codes_that_restart_in_each_block():
    """School codes restarting in each block (T1, T2, C1, C2 in every district): pleval check said
    'no problems found' and estimate then stopped on the nesting; check now reports it as an
    error with the fix, and estimate stops on the same line."""
    import pleval
    from pleval.errors import DataError

    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    assert not [p for p in pleval.check(d, design="rct").problems if p.level == "error"]
    d["school_id"] = (d.treatment.map({1: "T", 0: "C"})
                      + d.groupby(["block", "treatment"]).school_id.rank(method="dense").astype(int).astype(str))
    (err,) = [p for p in pleval.check(d, design="rct").problems if p.level == "error"]
    assert err.line.startswith("column 'school_id' (school): 4 school(s) appear in more than one 'block'")
    with pytest.raises(DataError, match="appear in more than one 'block'"):
        pleval.estimate(d, design="rct", placebo=False)
