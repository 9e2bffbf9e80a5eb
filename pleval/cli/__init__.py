"""The ``pleval`` command line: a thin layer that parses options and calls the Python API.

Each command lives in its own module and registers itself on :data:`app`; the imports at
the bottom of this file are the list of commands.
"""

from __future__ import annotations

import os
import sys
import warnings

# The command's own process: numpy (imported later, on first use) asks for no transparent huge
# pages, whose faults compact memory after large allocations (1M-row `pleval estimate`: 16.4
# instead of 18.1 CPU-s, the same results; docs/scale.md, "System time and huge pages"). A value
# already in the environment wins; `import pleval` as a library leaves numpy's default alone.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import typer
from typer.core import TyperGroup

try:  # recent typer vendors click as typer._click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import UsageError


class _Group(TyperGroup):
    """Usage errors (an unknown option, a bad number) are one line on stderr with exit code 2,
    like every other pleval error."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            from ._common import err_console, escape

            where = exc.ctx.command_path if exc.ctx is not None else "pleval"
            msg = " ".join(exc.format_message().split())
            err_console.print(f"[bold red]error:[/] {escape(msg)} (see {where} --help)", highlight=False)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    cls=_Group,
    name="pleval",
    help=(
        "Did personalized learning work, for whom, and how sure are we? "
        "Matched comparisons, RCTs, school-by-school effects and percentile points."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


HEAP_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": (-3, 256 << 20), "MALLOC_TRIM_THRESHOLD_": (-1, 256 << 20),
                 "MALLOC_ARENA_MAX": (-8, 2)}
"""glibc's allocator settings of the command's process (environment variable: ``mallopt``
parameter and value; :func:`keep_freed_memory`)."""


def keep_freed_memory(environ=os.environ) -> list[tuple[int, int]]:
    """Have glibc's allocator serve arrays up to 256 MB from its heap and keep up to 256 MB
    freed at the heap's top (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``),
    instead of mapping every array above its (at most 32 MB) threshold afresh and unmapping it
    when freed: a freed array's pages then serve the next one instead of faulting in again, the
    system time of a large run (10M-row ``pleval estimate``: 128 → 93 CPU-s, 46 → 17.5 of them
    system time, the largest process 6.37 → 6.58 GB; docs/scale.md, *glibc's allocator*). Two
    arenas (``mallopt(M_ARENA_MAX, 2)``, one per thread of :func:`pleval._workers.thread_map` on
    two cores): with an arena per thread each keeps its freed memory apart from the others'; with
    one, the threads queue for it and compute one after the other (10M rows, idle machine: one
    arena 97.2 s wall and 6,160 MB, two 78.2 s and 5,757 MB, no limit 83.3 s and 5,658 MB;
    docs/scale.md, *Threads*). A setting already
    in the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
    ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_MAX_``) is left to glibc; not on glibc, nothing is set. Returns the
    ``(parameter, value)`` pairs set. For the command's own process: ``import pleval`` as a
    library leaves the allocator alone."""
    if any(k in environ for k in (*HEAP_SETTINGS, "MALLOC_MMAP_MAX_")):
        return []
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's; mallopt elsewhere takes other parameters
    except (OSError, AttributeError):
        return []
    return [(p, v) for p, v in HEAP_SETTINGS.values() if libc.mallopt(p, v) == 1]


PR_SET_THP_DISABLE = 41
"""Linux ``prctl`` option: no transparent huge pages for the calling process and its children."""


def no_huge_pages(environ=os.environ) -> bool:
    """Ask Linux for no transparent huge pages in the command's process and its forked workers
    (``prctl(PR_SET_THP_DISABLE)``); True if set. Arrow's allocator (mimalloc, which reads the
    Parquet file) asks for huge pages as numpy did before ``NUMPY_MADVISE_HUGEPAGE=0``; on a
    machine whose ``transparent_hugepage/defrag`` is ``madvise`` a fault on such memory may first
    compact memory, so a run's system time varied with what the machine had done before. 10M-row
    ``pleval estimate``, idle machine, alternating: 62.2 and 63.0 s wall, 14.5–15.7 s system time,
    largest process 5,626–5,656 MB, against 80.9 s, 26.5 s and 5,771 MB with huge pages (62.0–65.2 s
    in other runs of the same code); the 10M read alone 1.10–1.17 s instead of 1.77–2.51 s; the same
    results (docs/scale.md, *System time and huge pages*). ``NUMPY_MADVISE_HUGEPAGE=1`` in the
    environment (huge pages wanted) leaves them on; elsewhere than Linux nothing is set."""
    if environ.get("NUMPY_MADVISE_HUGEPAGE") == "1" or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - a C library without prctl
        return False


def run() -> None:
    """The ``pleval`` console script (and ``python cli.py``): :data:`app`, in a process whose
    allocator keeps freed memory for reuse (:func:`keep_freed_memory`) and that asks for no
    transparent huge pages (:func:`no_huge_pages`), with the cyclic
    garbage collector told at exit to leave the run's objects alone (:func:`gc.freeze`, an exit
    handler registered before the command's own, so run after them). Otherwise the
    interpreter's shutdown spends 0.5–1 s after a 1M-row ``pleval estimate`` on a last full
    collection of the run's ~194,000 objects and the teardown after it, memory the process's
    exit frees anyway (docs/scale.md, fifteenth round). The exit handlers still run and the
    streams are flushed; only objects in reference cycles are left to the system. Callers of
    :data:`app` in a process of their own (the tests) are unaffected."""
    import atexit
    import gc

    keep_freed_memory()
    no_huge_pages()
    atexit.register(gc.freeze)
    app()


_python_format = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """pleval's own warnings as one plain ``warning: …`` line, like the data checks' warnings;
    other libraries' warnings keep Python's form (file and line say where they come from)."""
    from ..errors import PlevalWarning

    if issubclass(category, PlevalWarning):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"pleval {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """pleval: evaluate personalized learning (matched comparisons, RCTs, school effects)."""
    warnings.formatwarning = _format_warning


# Command modules, one line each, in the order a user needs them (the order of `pleval --help`):
# the whole evaluation first, then its building blocks. Each module imports its heavy
# dependencies inside the command, so `pleval --help` and `pleval convert` start fast.
from . import _check  # noqa: E402,F401
from . import _estimate  # noqa: E402,F401
from . import _match  # noqa: E402,F401
from . import _sensitivity  # noqa: E402,F401
from . import _rct  # noqa: E402,F401
from . import _schools  # noqa: E402,F401
from . import _monitor  # noqa: E402,F401
from . import _power  # noqa: E402,F401
from . import _convert  # noqa: E402,F401
from . import _simulate  # noqa: E402,F401
