"""``pleval schools``: meta-analysis and the school-by-school table from per-school estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..data import read_table
from ..errors import DataError
from . import app
from ._common import echo, handle_errors

_DEFAULT_MODERATORS = ("school_poverty", "years_implementing", "enrollment")


@app.command("schools")
@handle_errors
def schools(
    file: Path = typer.Argument(..., help="Table of per-school estimates (CSV, Parquet or Excel)."),
    school_col: str = typer.Option("school_id", "--school-col", help="Column naming the school."),
    estimate_col: str = typer.Option("estimate", "--estimate-col", help="Column of effect sizes (SD units)."),
    se_col: str = typer.Option("se", "--se-col", help="Column of their standard errors."),
    subject_col: str = typer.Option(
        "subject", "--subject-col", help="Analyse each value separately (e.g. subject); '' for one analysis."
    ),
    n_treated_col: str = typer.Option("n_treated", "--n-treated-col", help="Column of PL students per school ('' if none)."),
    n_comparison_col: str = typer.Option(
        "n_comparison", "--n-comparison-col", help="Column of comparison students per school ('' if none)."
    ),
    moderators: Optional[str] = typer.Option(
        None,
        "--moderators",
        help="Comma-separated school-level columns for a meta-regression (default: those of "
        + ", ".join(_DEFAULT_MODERATORS)
        + " present in the file; '' for none).",
    ),
    method: str = typer.Option("REML", "--method", help="tau² estimator: REML, DL, PM or FE."),
    hartung_knapp: bool = typer.Option(False, "--hartung-knapp", help="Hartung-Knapp SE and t(k-1) CI for the pooled effect."),
    adjust: str = typer.Option("bh", "--adjust", help="Multiplicity adjustment: bh (Benjamini-Hochberg) or holm."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level for the counts of schools."),
    level: float = typer.Option(0.95, "--level", help="Confidence level."),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", "-p", help="Baseline of the percentile points."),
    out: Optional[list[Path]] = typer.Option(
        None, "--out", "-o", help="Write the table (.csv, .xlsx, .md or .html; repeatable)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the pooled results, not the table."),
) -> None:
    """Random-effects meta-analysis, empirical-Bayes shrinkage, multiplicity-adjusted counts and
    meta-regression of per-school effects, with the school-by-school table.

    Percentile points are shifts in rank (from the 50th percentile, g = 0.08 moves a student to
    about the 53rd), not percentage points of the score.
    """
    from ..heterogeneity import school_effects_from_estimates
    from ..heterogeneity.export import _readable, export_table

    df = read_table(file)
    if moderators is None:
        mods = [m for m in _DEFAULT_MODERATORS if m in df.columns]
    else:
        mods = [m.strip() for m in moderators.split(",") if m.strip()]
    method = method.upper()
    for target in out or []:
        if target.resolve() == Path(file).resolve():
            raise DataError("--out must differ from the input file: pleval never overwrites its input")
    res = school_effects_from_estimates(
        df,
        school=school_col,
        estimate=estimate_col,
        se=se_col,
        by=subject_col or None,
        n_treated=n_treated_col or None,
        n_comparison=n_comparison_col or None,
        moderators=mods,
        method=method,
        hartung_knapp=hartung_knapp,
        adjust=adjust.lower(),
        alpha=alpha,
        level=level,
        baseline_percentile=baseline_percentile,
    )
    echo(res.summary())
    if mods:
        for key, mr in res.meta_regression(mods, method=method).items():
            echo("")
            echo(f"[{key}] " + mr.summary())
    if not quiet:
        from ..heterogeneity.export import _groups

        for key, label, sub in _groups(res):
            echo("")
            echo(f"[{label}] schools")
            echo(_readable(sub, []).to_markdown(index=False, disable_numparse=True))
    for target in out or []:
        path = export_table(res, target)
        echo(f"wrote {path}")
