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


# Command modules (one line each; order is the order of `pleval --help`).
from . import _convert  # noqa: E402,F401
from . import _simulate  # noqa: E402,F401
from . import _rct  # noqa: E402,F401
from . import _schools  # noqa: E402,F401
from . import _match  # noqa: E402,F401
from . import _estimate  # noqa: E402,F401
from . import _power  # noqa: E402,F401
