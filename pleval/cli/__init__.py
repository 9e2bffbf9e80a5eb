"""The ``pleval`` command line: a thin layer that parses options and calls the Python API.

Each command lives in its own module and registers itself on :data:`app`; the imports at
the bottom of this file are the list of commands.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="pleval",
    help=(
        "Did personalized learning work, for whom, and how sure are we? "
        "Matched comparisons, RCTs, school-by-school effects and percentile points."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules (one line each; order is the order of `pleval --help`).
from . import _convert  # noqa: E402,F401
