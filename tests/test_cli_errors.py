"""How the command line reports failures, and how printed numbers show zero.

A user's error (bad data, a bad option, a missing file) is one line starting "error:" and exit
code 2; a bug in pleval (an internal KeyError, TypeError…) says it is an internal error, names
the exception and asks for a report, with exit code 1, never a bare "error: 'subject'". Numbers
that round to zero print as 0.00, never -0.00, in the CLI tables, the summary and the forest plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pleval._text import unsigned_zeros
from pleval.cli._common import INTERNAL_EXIT, console, handle_errors, table
from pleval.errors import DataError

runner = CliRunner()


def _app(exc: BaseException | None) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def run(debug: bool = False):
        if exc is not None:
            raise exc
        typer.echo("ran")

    return app


def test_internal_error_says_so_names_the_type_and_asks_for_a_report():
    r = runner.invoke(_app(KeyError("subject")), [])
    assert r.exit_code == INTERNAL_EXIT == 1
    err = " ".join(r.stderr.split())
    assert err.startswith("internal error: KeyError: 'subject'") and "bug in pleval" in err
    assert "report it" in err and "--debug" in err
    assert "Traceback" not in r.stdout + r.stderr
    r = runner.invoke(_app(TypeError()), [])
    assert r.exit_code == 1 and " ".join(r.stderr.split()).startswith("internal error: TypeError —")


@pytest.mark.parametrize("exc, text", [(DataError("column 'score' is not in the data"), "column 'score' is not in the data"),
                                       (FileNotFoundError("no file x.csv"), "no file x.csv"),
                                       (ValueError("icc must lie strictly between 0 and 1"), "icc must lie")])
def test_user_errors_keep_their_one_line_and_exit_2(exc, text):
    r = runner.invoke(_app(exc), [])
    assert r.exit_code == 2 and r.stderr.startswith("error:") and text in r.stderr and "internal" not in r.stderr


def test_debug_shows_the_traceback_and_exits_pass_through():
    r = runner.invoke(_app(KeyError("subject")), ["--debug"])
    assert isinstance(r.exception, KeyError)
    assert runner.invoke(_app(typer.Exit(code=0)), []).exit_code == 0
    assert runner.invoke(_app(typer.Exit(code=3)), []).exit_code == 3
    assert runner.invoke(_app(None), []).stdout.strip() == "ran"


def test_signed_zeros_print_as_zero():
    assert unsigned_zeros("-0.00 (-0.004, +0.000)") == "0.00 (-0.004, 0.000)"
    assert unsigned_zeros("-0.01 to -0.0 at 10-0.00x") == "-0.01 to 0.0 at 10-0.00x"  # not inside words or numbers
    from pleval.findings import fmt, fmt_ci

    assert fmt(-0.0004, 3, True) == "0.000" and fmt(-0.004, 2) == "0.00" and fmt(-0.006, 2, True) == "-0.01"
    # a signed zero bound prints unsigned; a nonzero one keeps its side of zero (since 2026-12-05)
    assert fmt_ci(-0.0, 0.2, 2, True) == "0.00 to +0.20" and fmt_ci(-0.001, 0.2, 2, True) == "-0.001 to +0.20"


def test_cli_tables_and_forest_numbers_print_zero_unsigned():
    from pleval.plots import _forest_numbers

    t = table("x", ("effect",))
    t.add_row(f"{-0.001:+.2f} ({-0.3:+.2f}, {0.0004:+.2f})")
    c = console.get()
    with c.capture() as cap:
        c.print(t)
    assert "0.00 (-0.30, 0.00)" in cap.get() and "-0.00" not in cap.get()
    d = pd.DataFrame({"estimate": [-0.001, 0.2], "ci_low": [-0.2, -0.004], "ci_high": [0.2, 0.4]})
    nums = _forest_numbers(d, np.array([-0.001, 0.001, -0.002]), None, 0.95, None)
    assert nums[0] == "0.00 [-0.20, +0.20]" and nums[1] == "+0.20 [0.00, +0.40]"
    assert "-0.00" not in " ".join(nums)


def test_out_of_memory_is_not_called_a_bug():
    r = runner.invoke(_app(MemoryError()), [])
    assert r.exit_code == 2
    err = " ".join(r.stderr.split())
    assert err.startswith("error: out of memory") and "more memory" in err and "bug" not in err
    r = runner.invoke(_app(MemoryError("out of memory in the step 'x'")), [])
    assert r.exit_code == 2 and " ".join(r.stderr.split()) == "error: out of memory in the step 'x'"
