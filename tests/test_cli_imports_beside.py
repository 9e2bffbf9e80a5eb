"""`pleval estimate` imports the analysis' libraries (scipy.stats, statsmodels' GLM) in a thread
while it reads and checks the file, which need none of them, and joins it before the analysis."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pleval.checks
import pleval.outputs
import pleval.readers
from pleval.cli import _estimate as cli_estimate
from pleval.cli import app

est_mod = importlib.import_module("pleval.estimate")  # the module (pleval.estimate is the function)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"


def test_reading_and_checking_import_no_scipy():
    code = ("import sys, pleval.readers, pleval.data, pleval.checks\n"
            "print(sorted(m for m in ('scipy', 'scipy.stats', 'statsmodels') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_import_beside_imports_in_a_thread_and_leaves_a_failure_to_the_analysis(capsys):
    t = cli_estimate._import_beside(("json.tool", "no_such_module_pleval_xyz", "this"))
    assert isinstance(t, threading.Thread) and t.name == "pleval-imports"
    t.join()
    assert "json.tool" in sys.modules and "this" not in sys.modules  # stopped at the failure, silently
    assert capsys.readouterr().err == ""
    assert cli_estimate._ANALYSIS_MODULES["propensity"][-1] == "statsmodels.genmod.generalized_linear_model"
    assert cli_estimate._ANALYSIS_MODULES["rct"] == cli_estimate._ANALYSIS_MODULES["mahalanobis"] == ("scipy.stats",)


@pytest.mark.parametrize("design", ["matched", "rct"])
def test_the_imports_run_beside_the_reading_and_the_checks_and_end_before_the_analysis(design, tmp_path,
                                                                                       monkeypatch):
    """The thread starts as the file is read, after the command's own preparations (whose
    imports it would slow down: both hold the interpreter's lock), and is joined before the
    analysis."""
    events = []
    real_beside, real_read, real_check = cli_estimate._import_beside, pleval.readers.read_table, pleval.checks.check
    real_outputs = pleval.outputs.check_outputs

    class Joined:
        def __init__(self, thread):
            self.thread = thread

        def join(self):
            self.thread.join()
            events.append("joined")

    def beside(names):
        events.append(("imports", names))
        return Joined(real_beside(names))

    def estimate(*a, **k):
        events.append("estimate")
        raise SystemExit(0)

    monkeypatch.setattr(cli_estimate, "_import_beside", beside)
    monkeypatch.setattr(pleval.outputs, "check_outputs", lambda *a, **k: events.append("outputs") or real_outputs(*a, **k))
    monkeypatch.setattr(pleval.readers, "read_table", lambda *a, **k: events.append("read") or real_read(*a, **k))
    monkeypatch.setattr(pleval.checks, "check", lambda *a, **k: events.append("check") or real_check(*a, **k))
    monkeypatch.setattr(est_mod, "estimate", estimate)
    sample = SAMPLE if design == "matched" else SAMPLE.with_name("pl_cluster_rct.csv")
    r = CliRunner().invoke(app, ["estimate", str(sample), "--design", design, "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    names = cli_estimate._ANALYSIS_MODULES["rct" if design == "rct" else "propensity"]
    assert events == ["outputs", ("imports", names), "read", "check", "joined", "estimate"]


def test_the_collector_leaves_what_the_run_keeps_alone(tmp_path, monkeypatch):
    """The garbage collector's passes leave alone the modules imported before the file is read,
    then the analysis' libraries, the data and its checks, made with the collector paused, once
    the estimate starts (each frozen: pleval._workers.collector_frozen, collector_paused); the
    collector runs in the estimate, and nothing is left frozen after the command."""
    import gc

    frozen = {}
    real_read = pleval.readers.read_table

    def read(*a, **k):
        frozen["read"], frozen["collecting while read"] = gc.get_freeze_count(), gc.isenabled()
        frozen["data"] = df = real_read(*a, **k)
        return df

    def estimate(*a, **k):
        frozen["estimate"], frozen["collecting in the estimate"] = gc.get_freeze_count(), gc.isenabled()
        frozen["data frozen"] = not any(o is frozen["data"] for o in gc.get_objects())
        raise SystemExit(0)

    monkeypatch.setattr(pleval.readers, "read_table", read)
    monkeypatch.setattr(est_mod, "estimate", estimate)
    r = CliRunner().invoke(app, ["estimate", str(SAMPLE), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    assert 0 < frozen["read"] < frozen["estimate"] and frozen["data frozen"]
    assert not frozen["collecting while read"] and frozen["collecting in the estimate"]
    assert gc.get_freeze_count() == 0 and gc.isenabled()


@pytest.mark.parametrize("name,msg", [("missing.csv", "no such file"), ("students.foo", "unknown file type"),
                                      ("empty.csv", "the file is empty")])
def test_a_wrong_path_fails_before_the_imports_start(name, msg, tmp_path, monkeypatch):
    """A path that read_table would refuse is refused before the import thread starts, so the
    error does not wait for scipy.stats to finish importing (0.7 s) at the interpreter's exit."""
    started = []
    monkeypatch.setattr(cli_estimate, "_import_beside", lambda names: started.append(names))
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "students.foo").write_text("a,b\n1,2\n")
    r = CliRunner().invoke(app, ["estimate", str(tmp_path / name), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and msg in r.output
    assert started == []


@pytest.mark.parametrize("args,ahead", [([], True), (["--workers", "1"], False), (["--method", "mahalanobis"], False),
                                        (["--design", "rct"], False)])
def test_the_propensity_match_ids_are_factorized_from_the_validation_on(args, ahead, tmp_path, monkeypatch):
    """``pleval estimate`` asks its checks to factorize the student ids once the rows are validated
    (``check(..., _ids_ahead=True)``: :func:`pleval.data.factorize_ahead`) for the default
    propensity match, which takes them, with a core free for it; not for a match that does not."""
    asked = []
    real_check = pleval.checks.check

    def check(*a, **k):
        asked.append(k.get("_ids_ahead"))
        return real_check(*a, **k)

    def estimate(*a, **k):
        raise SystemExit(0)

    monkeypatch.setattr(pleval.checks, "check", check)
    monkeypatch.setattr(est_mod, "estimate", estimate)
    sample = SAMPLE.with_name("pl_cluster_rct.csv") if "rct" in args else SAMPLE
    r = CliRunner().invoke(app, ["estimate", str(sample), *args, "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    assert asked == [ahead]


def test_statsmodels_is_imported_without_its_optional_formula_engine():
    """The import thread imports statsmodels' GLM as if formulaic (its optional formula engine,
    64 CPU-ms with narwhals; pleval fits no formula) were not installed: statsmodels' formulas
    then take patsy; formulaic stays importable afterwards. Not where ``SM_FORMULA_ENGINE``
    asks for an engine."""
    code = ("import sys\n"
            "from pleval.cli._estimate import _import_beside\n"
            "_import_beside(('statsmodels.genmod.generalized_linear_model',)).join()\n"
            "import statsmodels.formula._manager as m\n"
            "print('formulaic' in sys.modules, m.HAVE_FORMULAIC, m.DEFAULT_FORMULA_ENGINE)\n"
            "import formulaic\n"
            "print(formulaic.__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False", "patsy", "formulaic"]
    env = {**os.environ, "SM_FORMULA_ENGINE": "formulaic"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert r.stdout.split() == ["True", "True", "formulaic", "formulaic"]


def test_scipy_stats_is_imported_without_numpys_f2py_and_testing():
    """The import thread lets scipy.stats copy empty stand-ins for numpy.f2py and numpy.testing
    (0.065 s that pleval does not use), then takes them off numpy: both load as numpy's own when
    read or imported afterwards, and scipy.stats works."""
    code = ("import sys, numpy\n"
            "from pleval.cli._estimate import _import_beside\n"
            "_import_beside(('scipy.stats',)).join()\n"
            "print('numpy.f2py' in sys.modules, 'numpy.testing' in sys.modules, 'f2py' in vars(numpy),\n"
            "      'testing' in vars(numpy))\n"
            "numpy.testing.assert_allclose(1.0, 1.0)\n"
            "import numpy.f2py\n"
            "import scipy.stats\n"
            "print(numpy.f2py.__name__, numpy.testing.__file__ is not None, round(float(scipy.stats.norm.ppf(0.975)), 2))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False", "False", "False", "numpy.f2py", "True", "1.96"]
