"""Shared CLI plumbing: one-line errors with exit code 2, consoles and tables that never cut
text off, and the parsers of comma-separated and ``--sd`` options."""

from __future__ import annotations

import functools
import inspect
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterable, Optional

import typer

from ..errors import DataError, PlevalError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# Values that mean "no column for this role" (the same words as pleval.data.NONE_WORDS,
# repeated here so that parsing options does not import pandas).
NONE_WORDS = ("", "none", "-")

# Width used when stdout/stderr is not an interactive terminal: wide enough that rich never
# folds or ellipsizes a table cell in a file or a pipe.
_PIPE_WIDTH = 10_000


class _Console:
    """A rich console created on first use, for the stream current at that time.

    Rich is imported only when something is printed, and a console writing to a file or a pipe
    is given an unlimited width, so tables come out whole ("students", not "studen…").
    """

    def __init__(self, stderr: bool = False):
        self.stderr = stderr

    def get(self) -> "Console":
        from rich.console import Console

        c = Console(stderr=self.stderr, soft_wrap=True)
        if not c.is_terminal:
            c = Console(stderr=self.stderr, soft_wrap=True, width=_PIPE_WIDTH)
        return c

    def __getattr__(self, name):
        return getattr(self.get(), name)


console = _Console()
err_console = _Console(stderr=True)


def table(title: str, columns: Iterable[str], left: Iterable[str] = (), **kw) -> "Table":
    """A rich table whose cells wrap rather than being cut off; ``left`` columns are
    left-aligned, the others (numbers) right-aligned; ``kw`` go to ``rich.table.Table``. Text
    cells print a zero as ``0.00``, never ``-0.00`` (:func:`pleval._text.unsigned_zeros`)."""
    left = set(left)
    t = _table_class()(title=title, title_justify="left", **kw)
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right", overflow="fold")
    return t


@functools.cache
def _table_class():
    from rich.table import Table

    from .._text import unsigned_zeros

    class _Table(Table):
        def add_row(self, *cells, **kw):
            super().add_row(*(unsigned_zeros(c) if isinstance(c, str) else c for c in cells), **kw)

    return _Table


INTERNAL_EXIT = 1
"""Exit code of an internal error (a bug in pleval); the user's input or environment gives 2."""

OUT_OF_MEMORY = ("out of memory: the data (or a step's intermediate arrays) do not fit in this machine's memory; "
                 "run it on a smaller file or a machine with more memory")

# The command line's own exits and usage errors, which pass through (click's ClickException,
# whichever click typer uses).
_CLI_EXITS = (typer.Exit, typer.Abort, next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


def handle_errors(func: Callable) -> Callable:
    """Turn pleval/data errors, value errors (a file that does not parse, an option out of
    range), operating-system errors (a missing file, a full disk, a folder that cannot be
    written) and running out of memory (``MemoryError``: its message, or :data:`OUT_OF_MEMORY`)
    into one clear line on stderr and exit code 2. Anything else (a ``KeyError``, a
    ``TypeError``…) is a bug in pleval, not the user's doing: one line saying so, with the
    exception's type and message and a request to report it, and exit code
    :data:`INTERNAL_EXIT`.

    Set the environment variable ``PLEVAL_DEBUG=1`` (or pass ``--debug`` where a command
    offers it) to see the traceback instead. Python-style hints in messages
    (``school='...'``) are rewritten as the command's flags (``--school ...``).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _CLI_EXITS:
            raise
        except MemoryError as exc:  # the machine's limit, not a bug: what ran out, and what to do
            if kwargs.get("debug") or _debug_env():
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            err_console.print(f"[bold red]error:[/] {escape(msg or OUT_OF_MEMORY)}", highlight=False)
            raise typer.Exit(code=2) from None
        except (PlevalError, ValueError, OSError) as exc:
            if kwargs.get("debug") or _debug_env():
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {escape(cli_words(msg))}", highlight=False)
            raise typer.Exit(code=2) from None
        except Exception as exc:
            if kwargs.get("debug") or _debug_env():
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            err_console.print(
                f"[bold red]internal error:[/] {escape(type(exc).__name__ + (f': {msg}' if msg else ''))} — a bug in "
                "pleval, not a problem with your data or options. Please report it with the command you ran and "
                "its output with --debug (or PLEVAL_DEBUG=1), which shows where it happened.", highlight=False)
            raise typer.Exit(code=INTERNAL_EXIT) from None

    return wrapper


def escape(text: str) -> str:
    """Rich markup escaping (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# Python keywords in API messages -> the CLI flag that sets the same thing.
_FLAGS = {
    role: "--" + role.replace("_", "-")
    for role in ("outcome", "treatment", "treated_label", "pretest", "covariates", "school", "block", "student_id",
                 "grade", "subject", "weight", "takeup", "vcov", "seed")
}
_PY_HINT = re.compile(r"\b([a-z][a-z_]*)=('\.\.\.'|\.\.\.)")


def cli_words(message: str) -> str:
    """``school='...'`` -> ``--school NAME``, ``treated_label=...`` -> ``--treated-label VALUE``
    and ``subject=...`` (a subject, not its column) -> ``--only-subject VALUE``."""

    def sub(m: re.Match) -> str:
        role, quoted = m.group(1), m.group(2).startswith("'")
        if role == "subject" and not quoted:
            return "--only-subject VALUE"
        return f"{_FLAGS[role]} {'NAME' if quoted else 'VALUE'}" if role in _FLAGS else m.group(0)

    return _PY_HINT.sub(sub, message)


def _debug_env() -> bool:
    import os

    return os.environ.get("PLEVAL_DEBUG", "") not in ("", "0")


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated option: ``None`` if not given, ``()`` for "none", else the names."""
    if text is None:
        return None
    if text.strip().lower() in NONE_WORDS:
        return ()
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_value(text: str | None):
    """A value read as TOML (numbers, true/false, lists), else as a plain string: ``2`` is the
    number 2 (as a 1/2-coded column holds it), ``PL`` the label "PL"; ``None`` stays ``None``."""
    import tomllib

    if text is None:
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sd(text: str) -> str | float:
    """``--sd``: "pooled", "comparison" or a number (a norm SD)."""
    if text in ("pooled", "comparison"):
        return text
    try:
        return float(text)
    except ValueError:
        raise DataError(f"--sd must be pooled, comparison or a number; got {text!r}") from None


def parse_caliper(caliper: float | None, no_caliper: bool) -> float | bool | None:
    """``--caliper``/``--no-caliper`` as match's ``caliper``: the width, False for none, None for
    the method's default; both given is an error (the width was dropped without a word)."""
    if no_caliper and caliper is not None:
        raise DataError(f"--caliper {caliper:g} and --no-caliper contradict each other; give one")
    return False if no_caliper else caliper


# --------------------------------------------------------------------------------------
# Options shared by commands: one name, one meaning, one help text everywhere.
# --------------------------------------------------------------------------------------
_COLS = "Columns"


def _column(flag: str, help: str):
    return Annotated[Optional[str], typer.Option(flag, help=help, rich_help_panel=_COLS)]


Outcome = _column("--outcome", "Outcome column (default: posttest).")
Treatment = _column("--treatment", "Treatment column: 0/1, True/False, or two labels with --treated-label (default: treatment).")
TreatedLabel = _column("--treated-label", "The treated (PL) value of a two-label treatment column, e.g. PL.")
Pretest = _column("--pretest", "Pretest column(s), comma-separated; 'none' for none (default: pretest).")
Covariates = _column("--covariates", "Covariates, comma-separated; 'none' for none (default: female,frl,ell,sped,race).")
School = _column("--school", "School column (default: school_id).")
Subject = _column("--subject", "Subject column; 'none' for one subject (default: subject).")
Grade = _column("--grade", "Grade column; 'none' for none (default: grade).")
StudentId = _column("--student-id", "Student id column (default: student_id).")
Block = _column("--block", "Randomization block column; 'none' for none (default: block).")
Takeup = _column("--takeup", "Take-up column for the CACE; 'none' to skip (default: takeup).")
Weight = _column("--weight", "Analysis-weight column (default: none).")
OnlySubject = Annotated[Optional[str], typer.Option(
    "--only-subject", help="Analyse only this subject, a value of the --subject column (default: each subject).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of every random step.")]
Force = Annotated[bool, typer.Option("--force", help="Write into a non-empty folder that is not a previous output of this command.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


def check_subject_flag(df, subject: str | None) -> None:
    """``--subject`` names the subject column; a subject given there instead (``--subject math``)
    gets a one-line pointer to ``--only-subject``."""
    if not subject or subject in df.columns or subject.strip().lower() in NONE_WORDS or "subject" not in df.columns:
        return
    if df["subject"].astype(str).eq(subject).any():
        raise DataError(
            f"--subject names the subject column, and {subject!r} is a subject, not a column: "
            f"to analyse it alone use --only-subject {subject}"
        )


def read_students(path, reading: dict, given: dict, *, design: str = "matched", columns=None):
    """The student file at ``path`` read with the reading options (:func:`read_options`), the
    columns of id roles (as ``given`` and ``design`` resolve them: :func:`pleval.checks.id_columns`)
    kept as text, and ``given["subject"]`` checked to name a column (:func:`check_subject_flag`)."""
    from ..checks import id_columns
    from ..readers import read_table

    df = read_table(path, **reading, columns=columns, ids=functools.partial(id_columns, given=given, design=design))
    check_subject_flag(df, given.get("subject"))
    return df


def check_out_folder(out: Path, names: Iterable[str], force: bool) -> None:
    """Refuse to write into a non-empty folder holding files this command does not write,
    unless ``--force``: a previous run's outputs are replaced, anything else is protected."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    if force or not out.exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in set(names))
    if foreign:
        raise DataError(
            f"--out {out} holds files this command does not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose another folder or pass --force"
        )


# Reading options shared by every command that reads a student file.
_READ = "Reading the file"
Sep = Annotated[Optional[str], typer.Option("--sep", help="Text files: the delimiter (default: detected among , ; tab |).", rich_help_panel=_READ)]
Decimal = Annotated[Optional[str], typer.Option("--decimal", help="Text files: the decimal mark, . or , (default: detected).", rich_help_panel=_READ)]
Encoding = Annotated[Optional[str], typer.Option("--encoding", help="Text files: the encoding, e.g. utf-8, cp1252 (default: UTF-8, else Windows-1252).", rich_help_panel=_READ)]
Sheet = Annotated[Optional[str], typer.Option("--sheet", help="Excel: the sheet, by name or number from 0 (default: the first).", rich_help_panel=_READ)]
HeaderRow = Annotated[Optional[int], typer.Option("--header-row", help="Excel and text files: the row number (from 1) holding the column names (default: detected).", rich_help_panel=_READ)]
Na = Annotated[Optional[str], typer.Option("--na", help="Values that mean missing, comma-separated, e.g. '.' or '.,-99' (empty cells always do).", rich_help_panel=_READ)]


_READING = (("sep", Sep), ("decimal", Decimal), ("encoding", Encoding), ("sheet", Sheet), ("header_row", HeaderRow),
            ("na", Na))


def reading_options(func: Callable) -> Callable:
    """A command that reads a file takes the reading options (``--sep`` … ``--na``) as one
    argument, ``reading``: the reader's keyword arguments (:func:`read_options`). The options are
    added to the end of the command's signature, which typer reads."""
    sig = inspect.signature(func, eval_str=True)
    params = [p for name, p in sig.parameters.items() if name != "reading"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
             for name, kind in _READING]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, reading=read_options(**{name: kwargs.pop(name, None) for name, _ in _READING}), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*params, *extra])
    return wrapper


def no_read_options(reading: dict, needs: str) -> None:
    """A :class:`DataError` when reading options (:func:`read_options`) were given but no file is read."""
    given = [k for k, v in reading.items() if v is not None]
    if given:
        raise DataError(f"{', '.join('--' + k.replace('_', '-') for k in given)} reads a file: give {needs}, or leave "
                        f"{'them' if len(given) > 1 else 'it'} out")


def read_options(sep=None, decimal=None, encoding=None, sheet=None, header_row=None, na=None) -> dict:
    """The reader's keyword arguments (:func:`pleval.readers.read_table`) from the reading options."""
    if decimal is not None and decimal not in (".", ","):
        raise DataError(f"--decimal must be . or ,; got {decimal!r}")
    return dict(sep=sep, decimal=decimal, encoding=encoding, sheet=sheet, header_row=header_row, na=na)


def print_checks(report) -> None:
    """Data-check warnings at the top of a command's output; on errors, every error line on
    stderr and exit code 2, before anything is computed."""
    if report.errors:
        for p in report.errors:
            err_console.print(f"[bold red]error:[/] {escape(p.line)}", highlight=False)
        raise typer.Exit(code=2)
    for p in report.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(p.line)}", highlight=False)
