""":func:`pleval.check` computes the value checks and the validation side by side
(:func:`pleval._workers.thread_map`) when a core is free: the same report as one after the other,
the validation set aside when the value checks find an error."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
import pleval.checks
from pleval import _workers
from pleval.cli import app
from pleval.simulate import simulate_matched

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=10, grades=(4, 5), seed=5,
                            missing_posttest=0.05).data


def _frames(data: pd.DataFrame) -> dict[str, pd.DataFrame]:
    outlier = data.copy()
    outlier.loc[outlier.index[3], "posttest"] = 1e9
    text = data.assign(posttest=data["posttest"].astype(object))
    text.loc[text.index[:2], "posttest"] = "n/a"
    twice = pd.concat([data, data.iloc[:3]], ignore_index=True)  # three students listed twice: validation's error
    return {"clean": data, "outlier": outlier, "non-numeric": text, "duplicated": twice}


def _report(df, threads: int, monkeypatch):
    monkeypatch.setattr(_workers, "compute_threads", lambda: threads)
    return pleval.check(df, keep_validated=True)


def test_side_by_side_equals_one_after_the_other(data, monkeypatch):
    seen = []
    real = _workers.thread_map
    monkeypatch.setattr(_workers, "thread_map", lambda fn, items, threads=None: seen.append(len(items)) or real(
        fn, items, threads))
    for name, df in _frames(data).items():
        one = _report(df, 1, monkeypatch)
        two = _report(df, 2, monkeypatch)
        assert [p.line for p in two.problems] == [p.line for p in one.problems], name
        assert (two._handover is None) == (one._handover is None), name
        if one._handover is not None:
            a = one.take_validated(df, one.columns)
            b = two.take_validated(df, two.columns)
            pd.testing.assert_frame_equal(a.data, b.data, check_exact=True)
            assert (a.n_input, a.n_missing_outcome, a.input_sha256) == (b.n_input, b.n_missing_outcome, b.input_sha256)
    assert seen == [2] * 8  # every frame's checks went through thread_map, two parts each
    kinds = {name: {p.kind for p in _report(df, 2, monkeypatch).problems} for name, df in _frames(data).items()}
    assert "outlier" in kinds["outlier"] and "non-numeric" in kinds["non-numeric"]
    assert "validation" in kinds["duplicated"] and not _report(data, 2, monkeypatch).errors


@pytest.mark.parametrize("threads", [1, 2])
def test_validation_set_aside_when_the_value_checks_find_an_error(data, threads, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("validation ran into something")

    monkeypatch.setattr(pleval.checks, "validate", broken)
    text = _frames(data)["non-numeric"]
    report = _report(text, threads, monkeypatch)  # the value checks' error, validation's exception set aside
    assert [p.kind for p in report.errors] == ["non-numeric"] and report._handover is None
    with pytest.raises(RuntimeError, match="validation ran into something"):  # no value error: it is raised
        _report(data, threads, monkeypatch)


def test_no_validation_after_an_error_of_the_roles(data, monkeypatch):
    calls = []
    monkeypatch.setattr(pleval.checks, "validate", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(_workers, "compute_threads", lambda: 2)
    report = pleval.check(data.drop(columns="treatment"))
    assert report.errors and calls == []


@pytest.mark.parametrize("workers", [None, "1", "2"])
def test_the_command_checks_in_at_most_its_workers_threads(workers, tmp_path, monkeypatch):
    threads = []
    real = _workers.thread_map

    def spy(fn, items, threads_=None):
        threads.append(_workers.compute_threads())
        return real(fn, items, threads_)

    def estimate(*a, **k):
        raise SystemExit(0)  # the checks are done: stop before the analysis

    monkeypatch.setattr(_workers, "thread_map", spy)
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    monkeypatch.setattr(importlib.import_module("pleval.estimate"), "estimate", estimate)
    args = ["estimate", str(SAMPLE), "--out", str(tmp_path / "o"), "-q"] + (["--workers", workers] if workers else [])
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert threads == [1 if workers == "1" else 2]
