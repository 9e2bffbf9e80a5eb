"""Fast start: the command line and `import pleval` load only what they use.

`pleval --help`, `--version` and `convert 0.08` must not import pandas, scipy, statsmodels,
linearmodels or matplotlib (they take seconds; benchmarks/bench_cli_start.py prints the times),
and the lazily imported package API must behave as if everything were imported up front.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"
HEAVY = ("numpy", "pandas", "scipy", "scipy.stats", "statsmodels", "linearmodels", "matplotlib", "pyarrow", "jinja2")

RUN = """
import json, sys
from pleval.cli import app
try:
    app({args!r})
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def _run(code: str) -> tuple[str, set[str]]:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *printed, modules = r.stdout.strip().splitlines()
    return "\n".join(printed), set(json.loads(modules))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["convert", "0.08"], ["convert", "--help"],
                                  ["estimate", "--help"]])
def test_cli_start_imports_no_heavy_module(args):
    printed, loaded = _run(RUN.format(args=args))
    assert "pleval.cli" in loaded
    assert not [m for m in HEAVY if m in loaded], [m for m in HEAVY if m in loaded]
    if args == ["convert", "0.08"]:  # the conversion really ran
        assert "+3.19 percentile points" in printed


def test_import_pleval_is_light_and_the_api_is_whole():
    code = """
import json, sys
import pleval
light = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
names = {{n: callable(getattr(pleval, n)) for n in pleval.__all__ if n != "__version__"}}
import pleval.estimate  # binds the submodule on the package: the function must stay
from pleval.estimate import Evaluation
print("\\n" + json.dumps(dict(light=light, names=names, version=pleval.__version__,
      estimate=pleval.estimate.__name__, module=type(pleval.estimate).__name__,
      heterogeneity=pleval.heterogeneity.__name__, same=pleval.Evaluation is Evaluation,
      in_dir="school_effects" in dir(pleval))))
""".format(heavy=set(HEAVY))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["light"] == []
    assert all(out["names"].values()) and len(out["names"]) >= 20
    assert out["estimate"] == "estimate" and out["module"] == "function"
    assert out["heterogeneity"] == "pleval.heterogeneity" and out["same"] and out["in_dir"]
    assert out["version"][0].isdigit()


def test_unknown_attribute_is_an_attribute_error():
    import pleval

    with pytest.raises(AttributeError):
        pleval.no_such_name  # noqa: B018


@pytest.mark.parametrize("env, expected", [(None, False), ("1", True)])
def test_cli_process_asks_numpy_for_no_huge_pages_unless_told(env, expected):
    """The command line sets NUMPY_MADVISE_HUGEPAGE=0 for its own process before numpy is
    imported (docs/scale.md); a value in the environment is kept; `import pleval` alone sets nothing."""
    code = ("import pleval.cli, numpy\n"
            "from numpy._core.multiarray import _get_madvise_hugepage\n"
            "print(_get_madvise_hugepage())")
    base = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=base if env is None else {**base, "NUMPY_MADVISE_HUGEPAGE": env})
    assert r.stdout.strip() == str(expected)
    lib = subprocess.run([sys.executable, "-c", "import os, pleval; print(os.environ.get('NUMPY_MADVISE_HUGEPAGE'))"],
                         capture_output=True, text=True, check=True, env=base)
    assert lib.stdout.strip() == "None"


SLOW_WORKER = """
import importlib, json, sys, time
from pleval import _workers
from pleval.cli import app
est = importlib.import_module("pleval.estimate")
seen = {{}}
fork = _workers.Forked.__init__
def forked(self, *a, **k):
    seen.setdefault("at the fork", sorted(m for m in OUTPUTS if m in sys.modules))
    fork(self, *a, **k)
_workers.Forked.__init__ = forked
job = est._placebo_rounds_job
def slow_job(*a):  # the worker ends after the main process's work: the main process waits for it
    time.sleep({sleep})
    return job(*a)
est._placebo_rounds_job = slow_job
placebo = est._matched_placebo
def matched_placebo(*a, **k):
    out = placebo(*a, **k)
    seen["after the wait"] = sorted(m for m in OUTPUTS if m in sys.modules)
    return out
est._matched_placebo = matched_placebo
try:
    app({args!r})
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("\\n" + json.dumps(seen))
"""


@pytest.mark.skipif(sys.platform == "darwin" or not hasattr(__import__("os"), "fork"), reason="no fork here")
@pytest.mark.parametrize("sleep", [3, 0])
def test_estimate_forks_its_worker_before_importing_the_outputs_modules(tmp_path, sleep):
    """`pleval estimate` forks the placebo worker before it imports the outputs' modules (matplotlib,
    reportlab: the worker needs none of them), and imports them while it waits for the worker."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"
    outputs = ["matplotlib", "pleval.plots", "pleval.report.outputs", "reportlab"]  # pleval.report itself is light
    args = ["estimate", str(sample), "--out", str(tmp_path / "out"), "-q", "--workers", "2"]
    code = f"OUTPUTS = {outputs!r}\n" + SLOW_WORKER.format(args=args, sleep=sleep)
    _, seen = _run_seen(code)
    assert seen["at the fork"] == []
    if sleep:  # waited for: imported then; else at the writing of the outputs
        assert seen["after the wait"] == outputs
    assert (tmp_path / "out" / "report.pdf").exists()


def _run_seen(code: str):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *printed, seen = r.stdout.strip().splitlines()
    return "\n".join(printed), json.loads(seen)


def _estimate_then(out, *args: str, then: str) -> str:
    """Code for a fresh interpreter: `pleval estimate` of the sample into ``out`` with ``args``
    (it must succeed), then ``then``."""
    return f"""
import json, sys
from pleval.cli import app
try:
    app(["estimate", {str(SAMPLE)!r}, "--out", {str(out)!r}, *{list(args)!r}])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
""" + then


def test_estimate_loads_the_writers_only_to_write(tmp_path):
    """`pleval estimate` checks the outputs folder (refused here: it is a file) before anything
    is computed without loading matplotlib, reportlab or jinja2 (the writers load them while
    the placebo worker runs, pleval.report.EarlyFigures); pleval.report's lazy names all resolve."""
    (tmp_path / "taken").write_text("not a folder")
    code = f"""
import json, sys
from pleval.cli import app
try:
    app(["estimate", {str(SAMPLE)!r}, "--out", {str(tmp_path / "taken")!r}, "-q"])
except SystemExit as exc:
    code = exc.code
writers = sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "reportlab", "jinja2"))
import pleval.report
names = {{n: getattr(pleval.report, n) is not None for n in pleval.report.__all__}}
print("\\n" + json.dumps(dict(code=code, writers=writers, names=names, pdf=pleval.report.to_pdf.__name__)))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["code"] == 2 and "is not a folder" in r.stdout + r.stderr and out["writers"] == []
    assert all(out["names"].values()) and len(out["names"]) >= 12 and out["pdf"] == "pleval.report.to_pdf"


def test_estimate_without_a_terminal_loads_no_progress_display(tmp_path):
    """With no terminal to show it on (or -q), `pleval estimate` shows no progress and loads no
    rich.progress (0.03 s before the file is read); the outputs are written as ever."""
    out = tmp_path / "o"
    _, got = _run_seen(_estimate_then(out, "--no-placebo", then="""
print("\\n" + json.dumps(sorted(m for m in sys.modules if m.startswith("rich.progress"))))
"""))
    assert got == [] and (out / "report.html").exists()


def test_console_script_freezes_the_collector_at_exit():
    """`pleval` runs `pleval.cli.run`, which runs the command and, at exit, freezes the
    collector (the shutdown's full collection of the run's heap is skipped): an exit handler
    registered before it runs after it and sees the objects frozen; the command's output and
    exit code are those of `app`."""
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="console_scripts") if e.name == "pleval"] == ["pleval.cli:run"]
    code = """
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
sys.argv = ["pleval", "convert", "0.08"]
from pleval.cli import run
print("frozen before:", gc.get_freeze_count() > 0)
run()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "+3.19 percentile points" in r.stdout
    assert "frozen before: False" in r.stdout and r.stdout.rstrip().endswith("frozen at exit: True")


def test_console_script_keeps_freed_memory_unless_the_environment_says(monkeypatch):
    """`pleval.cli.run` sets glibc's mmap and trim thresholds (256 MB) and two arenas before the
    command, unless a MALLOC_* setting is in the environment; elsewhere than glibc it sets nothing."""
    import ctypes

    import pleval.cli as cli

    calls = []

    class Libc:
        gnu_get_libc_version = object()

        def mallopt(self, p, v):
            calls.append((p, v))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    assert cli.keep_freed_memory({}) == [(-3, 256 << 20), (-1, 256 << 20), (-8, 2)] == calls
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_"):
        assert cli.keep_freed_memory({key: "0"}) == []
    assert len(calls) == 3

    class Other:  # a C library without glibc's version function
        def mallopt(self, p, v):  # pragma: no cover - must not be called
            raise AssertionError("mallopt called outside glibc")

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Other())
    assert cli.keep_freed_memory({}) == []
    called = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: called.append(True))
    monkeypatch.setattr(cli, "no_huge_pages", lambda: called.append("thp"))
    monkeypatch.setattr(cli, "app", lambda: called.append("app"))
    monkeypatch.setattr("atexit.register", lambda f: None)
    cli.run()
    assert called == [True, "thp", "app"]  # before the command


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_THP_DISABLE) is Linux's")
@pytest.mark.parametrize("env, off", [(None, "1"), ("0", "1"), ("1", "0")])
def test_the_command_asks_for_no_transparent_huge_pages(env, off):
    """The command's process asks Linux for no transparent huge pages (PR_GET_THP_DISABLE reads 1
    after :func:`pleval.cli.no_huge_pages`), in a fresh process (the setting is the process's);
    NUMPY_MADVISE_HUGEPAGE=1 in the environment leaves huge pages on; the library alone does not
    change the setting."""
    base = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    code = ("import ctypes, pleval.cli as c; c.no_huge_pages(); "
            "print(ctypes.CDLL(None).prctl(42, 0, 0, 0, 0))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=base if env is None else {**base, "NUMPY_MADVISE_HUGEPAGE": env})
    assert got.stdout.strip() == off
    lib = subprocess.run([sys.executable, "-c", "import ctypes, pleval; print(ctypes.CDLL(None).prctl(42, 0, 0, 0, 0))"],
                         capture_output=True, text=True, check=True, env=base)
    assert lib.stdout.strip() == "0"


def test_estimate_imports_matplotlib_without_generating_artist_setter_docs(tmp_path):
    """`pleval estimate` imports the writers within `setters_undocumented` (matplotlib's artist
    classes get a set() without the generated property list: 0.07 CPU-s of the import), and every
    output is still written; set() itself works as ever. Classes defined afterwards, and a process
    importing matplotlib without it, get the generated signature and docstring."""
    out = tmp_path / "out"
    code = _estimate_then(out, "-q", then="""
import inspect
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
line = Line2D([0], [1])
line.set(color="red", linewidth=2)
class Later(Artist):
    pass
print("\\n" + json.dumps(dict(doc=Line2D.set.__doc__, params=len(inspect.signature(Line2D.set).parameters),
                               color=line.get_color(), later="Supported properties" in Later.set.__doc__)))
""")
    _, got = _run_seen(code)
    assert got == dict(doc=None, params=2, color="red", later=True)  # (self, **kwargs)
    assert (out / "report.pdf").exists() and (out / "plots").is_dir()
    plain = subprocess.run([sys.executable, "-c", "from matplotlib.lines import Line2D; print(Line2D.set.__doc__)"],
                           capture_output=True, text=True, check=True).stdout
    assert "Supported properties" in plain and "linewidth" in plain


def test_setters_undocumented_from_two_threads_leaves_matplotlib_as_it_was():
    """Two threads within `setters_undocumented` at once, the first to enter leaving first:
    classes defined after both have left get matplotlib's generated set() again (the second
    thread had saved the first's stand-in and put it back for good)."""
    code = """
import threading
from matplotlib.artist import Artist
from pleval.report.early import setters_undocumented
a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
def a():
    with setters_undocumented():
        a_in.set(); b_in.wait()
    a_out.set()
def b():
    a_in.wait()
    with setters_undocumented():
        b_in.set(); a_out.wait()
        class Within(Artist):
            pass
        assert Within.set.__doc__ is None
threads = [threading.Thread(target=f) for f in (a, b)]
[t.start() for t in threads]; [t.join() for t in threads]
with setters_undocumented():
    with setters_undocumented():
        pass
class Later(Artist):
    pass
print("Supported properties" in Later.set.__doc__)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert r.stdout.strip() == "True"
