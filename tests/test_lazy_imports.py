"""The package's names imported on first use (pleval._lazy.lazy_getattr), run in fresh
interpreters so that nothing was imported before."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_names_resolve_on_first_use_and_unknown_names_raise():
    out = _run("""
        import sys, pleval, pleval.report
        heavy = ("pandas", "matplotlib", "reportlab")
        print(any(m in sys.modules for m in heavy))            # nothing heavy at import
        print(pleval.estimate.__module__, pleval.Evaluation.__module__)
        print(pleval.report.check_outputs.__module__)          # ".outputs": pleval's own module
        print(pleval.report.to_markdown.__name__)              # a submodule not imported yet
        print(isinstance(pleval.__version__, str) and "__version__" in vars(pleval))  # computed, then bound
        for mod, name in ((pleval, "no_such_name"), (pleval.report, "no_such_module"), (pleval, "__wrapped__")):
            try:
                getattr(mod, name)
            except AttributeError as exc:
                print(f"AttributeError:{name}" if name in str(exc) else "wrong-message")
    """)
    assert out == ["False", "pleval.estimate", "pleval.estimate", "pleval.outputs", "pleval.report.to_markdown", "True",
                   "AttributeError:no_such_name", "AttributeError:no_such_module", "AttributeError:__wrapped__"]


def test_a_broken_submodule_import_is_not_reported_as_a_missing_name(tmp_path):
    """A submodule that exists but fails to import raises its own error, not AttributeError."""
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pleval._lazy import lazy_getattr\n__getattr__ = lazy_getattr(__name__, {})\n")
    (pkg / "broken.py").write_text("import no_such_dependency_xyz\n")
    r = subprocess.run([sys.executable, "-c", "import lazypkg; lazypkg.broken"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in r.stderr
