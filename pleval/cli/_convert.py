"""``pleval convert``: effect sizes <-> percentile points."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import DataError
from . import app
from ._common import echo, handle_errors, no_read_options, reading_options


@app.command("convert", short_help="Effect sizes to percentile points (and back).", context_settings={"ignore_unknown_options": True})
@handle_errors
@reading_options
def convert(
    values: Optional[list[float]] = typer.Argument(None, help="Effect sizes (SD units) to convert."),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", "-p", help="Percentile a student would hold without the program."),
    from_percentile_points: Optional[list[float]] = typer.Option(
        None, "--from-percentile-points", help="Convert percentile points back to effect sizes (repeatable)."
    ),
    ci: Optional[tuple[float, float]] = typer.Option(None, "--ci", help="A confidence interval (LOW HIGH) for the effect size."),
    file: Optional[Path] = typer.Option(None, "--file", help="Table with a column of effect sizes to convert."),
    column: Optional[str] = typer.Option(None, "--column", help="Column of --file holding effect sizes."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the converted table (default: FILE_percentile_points.csv)."),
    *,
    reading: dict,
) -> None:
    """Convert effect sizes to percentile points (and back).

    Percentile points are shifts in rank: from the 50th percentile, g = 0.08 moves a student
    to about the 53rd — not a gain of 3 percentage points in the score.
    """
    from .. import percentiles
    from .._text import unsigned_zeros

    p = baseline_percentile
    if file is None:
        no_read_options(reading, "--file")
    else:
        given = [x for x, on in (("effect sizes", values), ("--from-percentile-points", from_percentile_points),
                                 ("--ci", ci is not None)) if on]
        if given:
            raise DataError(f"--file converts a column of a table; {' and '.join(given)} cannot be given with it "
                            "(run them as a separate pleval convert)")
        _convert_file(file, column, p, out, reading)
        return
    if column is not None or out is not None:
        raise DataError("--column and --out go with --file")
    if not values and not from_percentile_points and ci is None:
        raise DataError("give effect sizes (e.g. `pleval convert 0.08`), --from-percentile-points, --ci or --file")
    _warn_implausible(list(values or []) + list(ci or []), "effect size(s)")
    lines = []  # every conversion before any printing: an error is one line, not a half-printed answer
    for g in values or []:
        pts = percentiles.to_percentile_points(g, p)
        lines += [f"g = {g:g} -> {pts:+.2f} percentile points (from the {percentiles._ordinal(p, exact=True)} percentile)",
                  "  " + percentiles.interpret(pts, p)]
    for pts in from_percentile_points or []:
        g = percentiles.from_percentile_points(pts, p)
        lines.append(f"{pts:+g} percentile points (from the {percentiles._ordinal(p, exact=True)} percentile) -> g = {g:.4f}")
    if ci is not None:
        if values and len(values) > 1:
            raise DataError(f"--ci is one interval; {len(values)} effect sizes were given: convert each with its own --ci")
        if values and not min(ci) <= values[0] <= max(ci):
            raise DataError(f"--ci {ci[0]:g} {ci[1]:g} does not contain the effect size {values[0]:g}; is it its interval?")
        lo, hi = percentiles.percentile_interval(ci[0], ci[1], p)
        lines.append(f"CI for g {ci[0]:g} to {ci[1]:g} -> {lo:+.2f} to {hi:+.2f} percentile points")
    for line in lines:
        echo(unsigned_zeros(line))


def _warn_implausible(values, what: str) -> None:
    """A warning for effect sizes beyond ±2 SD (as ``pleval schools`` warns): more likely score or
    percentile points than SDs, which would convert to nearly the whole percentile range."""
    import warnings

    from ..errors import PlevalWarning
    from ..percentiles import IMPLAUSIBLE_ES

    big = [v for v in values if abs(v) > IMPLAUSIBLE_ES]
    if big:
        warnings.warn(f"{len(big):,} {what} beyond ±{IMPLAUSIBLE_ES:g} SD ({', '.join(f'{v:g}' for v in big[:3])}): "
                      "effect sizes are in SD units, where a program's effect rarely exceeds 0.5; percentile points "
                      "convert back with --from-percentile-points, and score points need dividing by the outcome's SD "
                      "first", PlevalWarning, stacklevel=2)


def _convert_file(file: Path, column: str | None, p: float, out: Path | None, reading: dict) -> None:
    from .. import percentiles
    if not column:
        raise DataError("--file needs --column naming the effect-size column")
    from ..data import read_table

    df = read_table(file, **reading, ids=lambda names: names)  # every column written back: a '0042' on any row kept
    if column not in df.columns:
        raise DataError(f"column {column!r} is not in {file.name}; available: {', '.join(map(str, df.columns))}")
    import numpy as np
    import pandas as pd

    from ..checks import _examples, _rows

    g = pd.to_numeric(df[column], errors="coerce")
    text, miss = (g.isna() & df[column].notna()).to_numpy(), df[column].isna().to_numpy()
    problems = []
    if text.any():
        problems.append(f"{int(text.sum()):,} row(s) hold text such as {_examples(df.loc[text, column])} ({_rows(df, text)})")
    if miss.any():
        problems.append(f"{int(miss.sum()):,} row(s) are missing ({_rows(df, miss)})")
    inf = np.isinf(g.to_numpy(dtype=float, na_value=np.nan))
    if inf.any():  # (named here, with its rows, rather than as "g must be finite" by the conversion)
        problems.append(f"{int(inf.sum()):,} row(s) are infinite ({_rows(df, inf)})")
    if problems:
        raise DataError(f"column {column!r}: {'; '.join(problems)}; correct, fill or drop them first")
    _warn_implausible(g.to_numpy(dtype=float), f"value(s) of column {column!r}")
    df[f"{column}_percentile_points"] = percentiles.to_percentile_points(g.astype(float), p)
    df.attrs = {}
    target = out or file.with_name(f"{file.stem}_percentile_points.csv")
    if target.suffix.lower() not in (".csv", ".xlsx"):  # (a .parquet or .xls name got CSV or xlsx bytes before 2026-12-04)
        raise DataError(f"--out {target.name}: pleval convert writes .csv or .xlsx; give a name ending in one of them")
    if target.resolve() == file.resolve():
        raise DataError("--out must differ from --file: pleval never overwrites its input")
    from ..outputs import atomic_file

    with atomic_file(target) as tmp:  # written beside and renamed: never left half-written
        if target.suffix.lower() == ".xlsx":
            df.to_excel(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    echo(f"wrote {len(df):,} rows with column {column}_percentile_points (baseline percentile {p:g}) to {target}")
