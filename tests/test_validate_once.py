"""A run validates its data once: :func:`pleval.check`'s validation is taken by
:func:`pleval.estimate` of the very same frame (the CLI's check, or estimate's own), and the
placebo rounds (in this process or a forked worker) reuse it; any other frame or roles are
validated again, with the same results."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
import pleval.checks
import pleval.data
import pleval.heterogeneity.placebo  # noqa: F401 - imports the modules whose validate is counted
import pleval.matching  # noqa: F401
from pleval import _workers
from pleval.checks import CheckReport
from pleval.cli import app
from pleval.errors import PlevalWarning
from pleval.simulate import simulate_matched

est_mod = importlib.import_module("pleval.estimate")  # the module (pleval.estimate is the function)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=10, grades=(4, 5), seed=3,
                            missing_posttest=0.05).data


@pytest.fixture
def calls(monkeypatch, tmp_path) -> Path:
    """A file with a line per call of :func:`pleval.data.validate` from any module (forked
    workers included: they append to the same file)."""
    log = tmp_path / "validate_calls.txt"
    real = pleval.data.validate

    def counted(df, columns, **kw):
        with open(log, "a") as fh:
            fh.write(f"{len(df)}\n")
        return real(df, columns, **kw)

    for mod in list(sys.modules.values()):
        if getattr(mod, "validate", None) is real:
            monkeypatch.setattr(mod, "validate", counted)
    return log


def _n(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _estimate(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(*args, **kw)


def _tables_equal(a, b) -> None:
    for name in ("overall", "schools", "placebo", "balance", "heterogeneity", "dropped", "data_summary"):
        pd.testing.assert_frame_equal(a.table(name), b.table(name), check_exact=True, obj=name)
    assert a.provenance["input"] == b.provenance["input"]


def test_estimate_validates_once_and_equals_validating_each_time(data, calls, monkeypatch):
    ev = _estimate(data, seed=1, workers=1)  # placebo rounds in this process
    assert _n(calls) == 1
    assert len(ev.placebo)  # the rounds did run (on the checks' validation)
    monkeypatch.setattr(CheckReport, "take_validated", lambda self, *a, **k: None)
    real = est_mod._placebo_args
    monkeypatch.setattr(est_mod, "_placebo_args", lambda *a, **k: {**real(*a, **k), "validated": None})  # rounds too
    again = _estimate(data, seed=1, workers=1)
    assert _n(calls) == 1 + 3  # the checks, estimate and the placebo rounds each validate
    _tables_equal(ev, again)


@pytest.mark.skipif(not _workers.can_fork(), reason="fork is not available here")
def test_a_placebo_worker_does_not_validate_again(data, calls, monkeypatch):
    used = []
    real = est_mod._placebo_in_worker
    monkeypatch.setattr(est_mod, "_placebo_in_worker", lambda *a: used.append(real(*a)) or used[-1])
    ev = _estimate(data, seed=1, workers=2)
    assert used == [True] and _n(calls) == 1 and len(ev.placebo)


def test_a_report_of_the_same_frame_gives_its_validation_once(data, calls):
    report = pleval.check(data, keep_validated=True)
    assert _n(calls) == 1
    ev = _estimate(data, report.columns, seed=1, workers=1, checked=report)
    assert _n(calls) == 1
    ev2 = _estimate(data, report.columns, seed=1, workers=1, checked=report)  # given up: validated again, once
    assert _n(calls) == 2
    _tables_equal(ev, ev2)


def test_a_report_of_another_frame_or_without_the_validation_is_validated_again(data, calls):
    ref = _estimate(data, seed=1, workers=1)
    other = pleval.check(data.copy(), keep_validated=True)  # an equal frame, not the same one
    plain = pleval.check(data)
    n = _n(calls)
    for report in (other, plain):
        ev = _estimate(data, report.columns, seed=1, workers=1, checked=report)
        _tables_equal(ev, ref)
    assert _n(calls) == n + 2


def test_take_validated_needs_the_same_frame_and_roles(data):
    cols = pleval.check(data).columns
    assert pleval.check(data).take_validated(data, cols) is None  # not kept by default
    assert pleval.check(data, keep_validated=True).take_validated(data.copy(), cols) is None
    assert pleval.check(data, keep_validated=True).take_validated(data, cols.replace(covariates=())) is None
    assert pleval.check(data, keep_validated=True).take_validated(data, cols, require=("block",)) is None
    path_report = pleval.check(SAMPLE, keep_validated=True)  # a frame read here: no caller holds it
    assert path_report._handover is None
    report = pleval.check(data, keep_validated=True)
    v = report.take_validated(data, cols, require=("outcome", "treatment", "school"))
    ref = pleval.data.validate(data, cols, require=("outcome", "treatment", "school"))
    pd.testing.assert_frame_equal(v.data, ref.data, check_exact=True)
    pd.testing.assert_frame_equal(v.dropped, ref.dropped)
    assert (v.n_input, v.n_missing_outcome, v.input_sha256, v.columns) == (
        ref.n_input, ref.n_missing_outcome, ref.input_sha256, ref.columns)
    assert report.take_validated(data, cols) is None  # given up once taken


def test_a_report_with_errors_keeps_no_validation(data):
    bad = data.assign(treatment=data["treatment"].astype(str).replace({"1": "yes", "0": "no"}))
    report = pleval.check(bad, keep_validated=True)
    assert report.errors and report._handover is None


def test_a_changed_frame_is_validated_again(data, calls):
    """Pretest bands add a column after the checks: the frame validated is no longer the one
    checked, so it is validated again (its record holds the new column)."""
    ev = _estimate(data, seed=1, workers=1, placebo=False, subgroups=("pretest_band",))
    assert _n(calls) == 2 and len(ev.subgroups())


def test_the_cli_validates_once(tmp_path, calls):
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["estimate", str(SAMPLE), "--out", str(out), "-q", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert _n(calls) == 1
    assert json.loads((out / "provenance.json").read_text())["placebo"]



@pytest.mark.parametrize("command", ["match", "sensitivity"])
def test_match_and_sensitivity_validate_once(tmp_path, calls, command):
    """pleval match and pleval sensitivity take the check's own validation (before 2026-12-05 they
    validated the frame again after checking it: 0.2-0.4 s at 1M rows)."""
    r = CliRunner().invoke(app, [command, str(SAMPLE), "--out", str(tmp_path / "o"), "--force"])
    assert r.exit_code == 0, r.output
    assert _n(calls) == 1


def test_a_frame_fixed_in_place_after_its_check_is_checked_again(data):
    """A sentinel 999 the check warns of, set missing in place before estimate(checked=report):
    the report is of other data (its hash differs), so the frame is checked again, with a
    warning, and the evaluation is that of the frame as it is now (before 2026-12-05 it was that
    of the data as checked, 999s included, and the provenance recorded their hash)."""
    df = data.copy()
    rows = df.index[(df["treatment"] == 1) & (df["subject"] == "math") & df["posttest"].notna()][:10]
    df.loc[rows, "posttest"] = 999.0
    report = pleval.check(df, keep_validated=True)
    assert any("'posttest'" in p.line and "robust SDs" in p.line for p in report.warnings)
    df.loc[rows, "posttest"] = float("nan")  # the analyst's fix, in place
    with pytest.warns(PlevalWarning, match="checked again"):
        ev = pleval.estimate(df, report.columns, seed=1, workers=1, checked=report)
    ref = _estimate(df.copy(), report.columns, seed=1, workers=1)  # a frame never checked before
    _tables_equal(ev, ref)
    assert ev.provenance["input"]["sha256"] == pleval.data.frame_sha256(df)
    assert not any("robust SDs" in p.line for p in ev.checks.warnings)
    again = pleval.check(df, keep_validated=True)  # an unchanged frame: its report is used, without a word
    assert again.input_sha256 == pleval.data.frame_sha256(df)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pleval.estimate(df, again.columns, seed=1, workers=1, placebo=False, checked=again)
    assert not [w for w in caught if "checked again" in str(w.message)]
