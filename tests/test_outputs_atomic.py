"""Outputs folders are swapped in whole: an interrupted run (killed while writing) leaves the
previous outputs intact, or nothing for a new folder, and a rerun needs no --force."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pleval
from pleval.cli import app
from pleval.errors import PlevalError
from pleval.outputs import prepare, recover
from pleval.report import check_outputs, save as write_outputs

SCRIPT = textwrap.dedent("""
    import sys, time
    import pleval
    from pleval import plots, report

    def stalled(*args, **kwargs):  # the first file is being written when the kill comes
        open(sys.argv[2], "w").write("writing")
        time.sleep(120)

    ev = pleval.estimate(pleval.simulate_matched(n_schools=24, n_pl_schools=6, students_per_grade=6, seed=2).data,
                         placebo=False)
    plots.evaluation_figures = lambda ev: {"forest": None}
    plots.to_png = plots.to_png_svg = stalled
    report.save(ev, sys.argv[1])
""")


@pytest.fixture(scope="module")
def ev():
    data = pleval.simulate_matched(n_schools=24, n_pl_schools=6, students_per_grade=6, seed=2).data
    return pleval.estimate(data, placebo=False)


@pytest.fixture(scope="module")
def previous(ev, tmp_path_factory) -> Path:
    """A previous run's outputs folder (written once; tests copy it)."""
    out = tmp_path_factory.mktemp("prev") / "results"
    write_outputs(ev, out)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _killed_while_writing(out: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, "the run ended before writing"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert list(out.parent.glob(f".{out.name}.pleval-tmp-*")), "the run writes into a temporary folder beside"
    finally:
        proc.kill()
        proc.wait()


def test_kill_during_writing_keeps_previous_outputs(previous, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(previous, out)
    (out / "my_notes.txt").write_text("mine")  # not pleval's: kept
    before = _snapshot(out)
    _killed_while_writing(out, tmp_path)
    assert _snapshot(out) == before
    check_outputs(out)  # a rerun is accepted without --force ...
    assert not list(tmp_path.glob(".results.pleval-*"))  # ... and the stale temporary folder is gone


def test_kill_during_writing_leaves_nothing_for_a_new_folder(tmp_path):
    out = tmp_path / "new"
    _killed_while_writing(out, tmp_path)
    assert not out.exists()
    check_outputs(out)
    assert not list(tmp_path.glob(".new.pleval-*"))


def test_swap_keeps_foreign_files_and_undoes_an_interrupted_swap(ev, previous, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(previous, out)
    (out / "my_notes.txt").write_text("mine")
    (out / "plots" / "forest_math.png").write_bytes(b"stale")  # a previous run's file: replaced
    write_outputs(ev, out)
    assert (out / "my_notes.txt").read_text() == "mine"
    assert (out / "plots" / "forest_math.png").read_bytes() != b"stale"
    before = _snapshot(out)
    out.rename(tmp_path / ".results.pleval-old-999999999")  # killed between the two renames
    recover(out)
    assert _snapshot(out) == before


def test_unusable_folder_fails_before_computing(tmp_path):
    """A folder that cannot be created (its parent is a file) or a path that is a file: one line,
    exit 2, before the data are even read."""
    f = tmp_path / "afile"
    f.write_text("x")
    for out, needle in ((f / "results", "cannot create the folder"), (f, "is not a folder")):
        t0 = time.perf_counter()
        r = CliRunner().invoke(app, ["estimate", "sample_data/pl_matched_students.csv", "--out", str(out)])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert time.perf_counter() - t0 < 5
        with pytest.raises(PlevalError, match=needle):
            prepare(out)


def test_single_file_outputs_are_replaced_whole(tmp_path, monkeypatch):
    """pleval schools --out: a failure while writing leaves the previous file as it was and no
    temporary file; a completed write replaces it."""
    from pleval.heterogeneity import export

    out = tmp_path / "schools.xlsx"
    r = CliRunner().invoke(app, ["schools", "sample_data/school_effects.csv", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.stdout + r.stderr
    before = out.read_bytes()

    def broken(res, path, title):
        Path(path).write_bytes(b"half a workbook")
        raise OSError("disk full")

    monkeypatch.setattr(export, "to_excel", broken)
    r = CliRunner().invoke(app, ["schools", "sample_data/school_effects.csv", "--out", str(out), "--quiet"])
    assert r.exit_code != 0
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schools.provenance.json", "schools.xlsx"]
