"""``pleval check``: every problem of a student file at once, before anything is computed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import DataError
from . import app
from ._common import (
    Block, Covariates, Grade, Outcome, Pretest, School, StudentId,
    Subject, Takeup, TreatedLabel, Treatment, Weight, console, escape, handle_errors, parse_value, reading_options,
)

_STYLE = {"error": "bold red", "warning": "bold yellow", "note": "dim"}


@app.command("check", short_help="Every problem of a student file at once, before computing anything.")
@handle_errors
@reading_options
def check_cmd(
    file: Path = typer.Argument(..., help="Student file (CSV, TSV, Excel, Parquet, Stata .dta or SPSS .sav)."),
    design: str = typer.Option("matched", "--design", help="matched or rct (which roles matter)."),
    fmt: str = typer.Option("text", "--format", help="text or json."),
    outcome: Outcome = None,
    treatment: Treatment = None,
    treated_label: TreatedLabel = None,
    pretest: Pretest = None,
    covariates: Covariates = None,
    school: School = None,
    block: Block = None,
    student_id: StudentId = None,
    grade: Grade = None,
    subject: Subject = None,
    weight: Weight = None,
    takeup: Takeup = None,
    *,
    reading: dict,
) -> None:
    """List every problem of a student file at once, with the option that fixes each.

    Reads the file, resolves every column role (given, found by its default name, or absent,
    and what that means), and checks values: missing or misspelled columns (with close
    matches), non-numeric scores, treatment coding, duplicated students and headers, outliers
    (beyond 8 robust SDs of their grade x subject cell), numbers mixed with text, constant
    columns and missing values. Exit code: 0 clean, 1 warnings, 2 errors. pleval estimate runs
    the same checks first.
    """
    from ..checks import check

    if design not in ("matched", "rct"):
        raise DataError(f"--design must be matched or rct; got {design!r}")
    if fmt not in ("text", "json"):
        raise DataError(f"--format must be text or json; got {fmt!r}")
    given = dict(outcome=outcome, treatment=treatment, treated_label=parse_value(treated_label), pretest=pretest,
                 covariates=covariates, school=school, block=block, student_id=student_id, grade=grade,
                 subject=subject, weight=weight, takeup=takeup)
    report = check(file, given=given, design=design,
                   **reading)
    if fmt == "json":
        payload = {"file": str(file), "exit_code": report.exit_code, "n_rows": report.n_rows,
                   "roles": report.roles.to_dict("records"), "problems": report.to_frame().to_dict("records")}
        console.print_json(json.dumps(payload, default=str))
    else:
        head = report.summary().splitlines()[0]
        console.print(escape(head), highlight=False)
        for r in report.roles.itertuples():
            console.print(f"  {r.role:<11} {escape(r.column or '—'):<28} [dim]({r.source})[/]", highlight=False)
        for p in report.problems:
            console.print(f"[{_STYLE[p.level]}]{p.level}:[/] {escape(p.line)}", highlight=False)
        if not report.errors and not report.warnings:
            console.print("[green]no problems found[/]")
    raise typer.Exit(code=report.exit_code)
