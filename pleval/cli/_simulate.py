"""``pleval simulate``: synthetic PL evaluation data with a known truth."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import DataError
from . import app
from ._common import echo, handle_errors


class Design(str, Enum):
    matched = "matched"
    rct = "rct"
    multisite_rct = "multisite-rct"
    school_effects = "school-effects"
    panel = "panel"


_FUNCS = {Design.matched: "simulate_matched", Design.rct: "simulate_cluster_rct",
          Design.multisite_rct: "simulate_multisite_rct", Design.school_effects: "simulate_school_effects",
          Design.panel: "simulate_panel"}


def _int_list(text: str, name: str) -> list[int]:
    """'3-8' or '3,4,5' -> [3, ..]."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataError(f"--{name} must look like 3-8 or 3,4,5; got {text!r}") from None


def write_frame(df, out: Path) -> None:
    """Write CSV (``.csv``) or Parquet (``.parquet``/``.pq``), choosing by extension."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"--out must end in .csv, .parquet or .pq; got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)


@app.command("simulate", short_help="Simulated evaluation data with a known truth.")
@handle_errors
def simulate(
    design: Design = typer.Argument(..., help="matched (PL vs comparison schools), rct (cluster-randomized), multisite-rct (students randomized within schools), school-effects (per-school estimates) or panel (students over several years)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output table (.csv or .parquet)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Also write the truth record as JSON to this file."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: fresh entropy, printed)."),
    n_schools: Optional[int] = typer.Option(None, "--n-schools", help="Number of schools (matched: PL + comparison; school-effects: PL schools)."),
    n_pl_schools: Optional[int] = typer.Option(None, "--n-pl-schools", help="matched: Number of PL schools."),
    students_per_grade: Optional[float] = typer.Option(None, "--students-per-grade", help="matched: Mean students per school and grade."),
    students_per_school: Optional[float] = typer.Option(None, "--students-per-school", help="rct, multisite-rct: Mean students per school."),
    n_blocks: Optional[int] = typer.Option(None, "--n-blocks", help="rct: Number of district blocks."),
    share_treated: Optional[float] = typer.Option(None, "--share-treated", help="rct: Share of each block's schools assigned to PL; multisite-rct: of each school's students."),
    grades: Optional[str] = typer.Option(None, "--grades", help="Grades, e.g. 3-8 or 4,5."),
    subjects: Optional[str] = typer.Option(None, "--subjects", help="Subjects, e.g. math,reading."),
    effect: Optional[float] = typer.Option(None, "--effect", help="True mean effect (SD units)."),
    tau: Optional[float] = typer.Option(None, "--tau", help="SD of true school effects (SD units)."),
    icc: Optional[float] = typer.Option(None, "--icc", help="Intraclass correlation of the untreated posttest."),
    school_value_added_sd: Optional[float] = typer.Option(None, "--school-value-added-sd", help="SD of schools' own growth deviations (SD units)."),
    pretest_slope: Optional[float] = typer.Option(None, "--pretest-slope", help="Slope of posttest on pretest (SD units)."),
    missing_posttest: Optional[float] = typer.Option(None, "--missing-posttest", help="matched: Share of students missing the posttest."),
    noncompliance: Optional[float] = typer.Option(None, "--noncompliance", help="rct: Share of assigned schools that did not implement."),
    attrition: Optional[float] = typer.Option(None, "--attrition", help="rct: Share of students missing the posttest."),
    differential_attrition: Optional[float] = typer.Option(None, "--differential-attrition", help="rct: Treatment minus control attrition rate."),
    attrition_pretest_slope: Optional[float] = typer.Option(None, "--attrition-pretest-slope", help="rct: Probit slope of attrition on −pretest."),
    schools_lost: Optional[int] = typer.Option(None, "--schools-lost", help="rct: Schools losing every posttest."),
    years_slope: Optional[float] = typer.Option(None, "--years-slope", help="school-effects: Change in true effect per year implementing."),
    comparison_ratio: Optional[float] = typer.Option(None, "--comparison-ratio", help="school-effects: Comparison students per PL student."),
    years: Optional[str] = typer.Option(None, "--years", help="panel: Years, e.g. 2021-2024."),
    adoption: Optional[str] = typer.Option(None, "--adoption", help="panel: PL schools' first program years, e.g. 2022,2023 (staggered)."),
    effects: Optional[str] = typer.Option(None, "--effects", help="panel: True effect (SD) after 1, 2, ... years of exposure, e.g. 0.05,0.10,0.15."),
    slope_sd: Optional[float] = typer.Option(None, "--slope-sd", help="panel: SD of schools' own growth of the effect per year (SD units)."),
    decimals: Optional[int] = typer.Option(None, "--decimals", help="Round scores (matched, rct, multisite-rct; default 0) or estimates and SEs (school-effects; default 4) to this many decimals."),
) -> None:
    """Simulate PL evaluation data with a known truth and write it to --out.

    Each option not given takes the Python function's default (pleval.simulate). Prints a
    summary of the true values; --truth writes them (with every school's true effect) as JSON.
    """
    given = {k: v for k, v in locals().items() if k not in ("design", "out", "truth") and v is not None}
    if "grades" in given:
        given["grades"] = _int_list(given["grades"], "grades")
    if "subjects" in given:
        given["subjects"] = [s.strip() for s in given["subjects"].split(",") if s.strip()]
    for key in ("years", "adoption"):
        if key in given:
            given[key] = _int_list(given[key], key)
    if "effects" in given:
        try:
            given["effects"] = [float(v) for v in given["effects"].split(",") if v.strip()]
        except ValueError:
            raise DataError(f"--effects must be comma-separated numbers; got {given['effects']!r}") from None
    if design is Design.panel and "students_per_grade" in given:
        given["students_per_grade"] = int(round(given["students_per_grade"]))
    if design is Design.panel:
        from .. import monitor as sim
    else:
        from .. import simulate as sim

    func = getattr(sim, _FUNCS[design])
    accepted = inspect.signature(func).parameters
    wrong = [k for k in given if k not in accepted]
    if wrong:
        opts = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise DataError(f"{opts} does not apply to `pleval simulate {design.value}`")
    result = func(**given)
    write_frame(result.data, out)
    n_schools_out = result.data["school_id"].nunique()
    echo(f"wrote {len(result.data):,} rows ({n_schools_out} schools) to {out}")
    echo(result.truth.summary())
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_text(result.truth.to_json() + "\n")
        echo(f"wrote the truth record to {truth}")
