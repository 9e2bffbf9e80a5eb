"""``pleval monitor``: effects over several years or terms, school trajectories and staggered
adoption, from a student × subject × time file to an outputs folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from ._common import (
    Covariates, Force, Grade, Outcome, Pretest, School, StudentId, Subject,
    TreatedLabel, Treatment, check_out_folder, echo, handle_errors, parse_value, print_checks, read_students,
    reading_options,
)

_OUTPUTS = ("panel_checks.csv", "panel_periods.csv", "effects_by_year.csv", "effects_by_exposure.csv", "trend.csv",
            "equity_over_time.csv", "school_trajectories.csv", "school_years.csv", "group_time_effects.csv",
            "event_study.csv", "summary.md", "provenance.json", "report.html", "figures")


@app.command("monitor", short_help="Effects over years or terms: by year, by exposure, schools, staggered adoption.")
@handle_errors
@reading_options
def monitor(
    file: Path = typer.Argument(..., help="Student × subject × time file (CSV, Parquet or Excel)."),
    time: str = typer.Option(..., "--time", help="Time column: a year or a term (sortable).", rich_help_panel="Columns"),
    cohort: Optional[str] = typer.Option(
        None, "--cohort",
        help="School's first program period (empty for comparison schools): years of exposure and, when schools "
             "adopt in different periods, the staggered-adoption event study (default: pl_year if present; "
             "'none' for none).", rich_help_panel="Columns"),
    outcome: Outcome = None,
    treatment: Treatment = None,
    treated_label: TreatedLabel = None,
    pretest: Pretest = None,
    covariates: Covariates = None,
    school: School = None,
    subject: Subject = None,
    grade: Grade = None,
    student_id: StudentId = None,
    method: str = typer.Option("weighting", "--method",
                               help="Matching at the first pre-program score: weighting, propensity, mahalanobis, "
                                    "vcg, or regression (no matching)."),
    control: str = typer.Option("notyet", "--control",
                                help="Staggered adoption comparisons: notyet (not-yet-adopting schools) or never."),
    staggered_inference: str = typer.Option(
        "welch", "--staggered-inference",
        help="Staggered adoption's inference: welch (HC2, Welch df, F pre-test; for few schools per cohort) or did "
             "(the R package's analytic figures: HC0, normal, chi2)."),
    level: float = typer.Option(0.95, "--level", help="Confidence level."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level for diverging schools (BH-adjusted)."),
    out: Path = typer.Option(Path("results_monitor"), "--out", "-o", help="Outputs folder."),
    force: Force = False,
    no_figures: bool = typer.Option(False, "--no-figures", help="Skip the PNG figures."),
    *,
    reading: dict,
) -> None:
    """Monitor a program over several years or terms: effects by year and by years of exposure
    (matched once at the first pre-program score; CR2 by first school), a trend test, equity
    bands over time, schools whose trajectories diverge from the pooled trend (beyond the spread
    of comparison schools), and, for schools adopting in different years, the group-time effects
    and event study with pre-trends (Callaway & Sant'Anna 2021).

    Percentile points are shifts in rank, not percentage points of the score.
    """
    from ..checks import check
    from ..data import NONE_WORDS, SAMPLE_COLUMNS, resolve_columns
    from ..monitor import monitor as run
    from ..outputs import prepare
    from ..report import save_monitoring

    check_out_folder(out, _OUTPUTS, force)
    prepare(out)
    given = {"outcome": outcome, "treatment": treatment, "pretest": pretest, "covariates": covariates,
             "school": school, "subject": subject, "grade": grade, "student_id": student_id, "time": time,
             "treated_label": parse_value(treated_label)}
    df = read_students(file, reading, given)
    cols, notes = resolve_columns(df, SAMPLE_COLUMNS, given)
    if cohort is None:
        cohort = "pl_year" if "pl_year" in df.columns else None
    elif cohort.strip().lower() in NONE_WORDS:
        cohort = None
    report = check(df, cols, keep_validated=True)  # every row, as `pleval check` (before 2026-12-05 none)
    print_checks(report)  # errors: every line, exit 2; warnings: at the top
    result = run(df, cols, cohort=cohort, method=method, control=control, level=level, alpha=alpha,
                 staggered_inference=staggered_inference, input_sha256=df.attrs.get("sha256"), checked=report)
    save_monitoring(result, out, figures=not no_figures)
    for n in notes:
        echo(f"note: {n}")
    echo(result.summary())
    echo(f"\nwrote {out}/")
