"""``pleval power``: MDES, power and sample size of a planned study (pleval.power)."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import DataError
from . import app
from ._common import (Force, check_out_folder, echo, handle_errors, no_read_options, parse_value,
                      read_students, reading_options)


class PowerDesign(str, Enum):
    individual_rct = "individual-rct"
    blocked_rct = "blocked-rct"
    cluster_rct = "cluster-rct"
    blocked_cluster_rct = "blocked-cluster-rct"
    matched = "matched"


_CLASSES = {
    PowerDesign.individual_rct: "IndividualRCT",
    PowerDesign.blocked_rct: "BlockedRCT",
    PowerDesign.cluster_rct: "ClusterRCT",
    PowerDesign.blocked_cluster_rct: "BlockedClusterRCT",
    PowerDesign.matched: "MatchedComparison",
}
_FROM_FILE = ("icc", "r2_school", "r2_student")
_OUTPUTS = ("plan.json", "power_curve.png", "mdes_curve.png", "provenance.json")
_D = "Design"
_P = "Plan"
_F = "From a file"


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataError(f"--{name} must be comma-separated numbers; got {text!r}") from None


@app.command("power", short_help="Plan a study: MDES, power and sample size.")
@handle_errors
@reading_options
def power(
    design: PowerDesign = typer.Argument(..., help="individual-rct, blocked-rct (students randomized within schools), cluster-rct (schools randomized), blocked-cluster-rct (schools randomized within districts) or matched (PL schools vs matched comparison students)."),
    schools: Optional[float] = typer.Option(None, "--schools", help="Schools (blocked-cluster-rct: per district; matched: PL schools).", rich_help_panel=_D),
    students: Optional[float] = typer.Option(None, "--students", help="Students per school (individual-rct: in all).", rich_help_panel=_D),
    districts: Optional[float] = typer.Option(None, "--districts", help="blocked-cluster-rct: districts (blocks).", rich_help_panel=_D),
    comparison_schools: Optional[float] = typer.Option(None, "--comparison-schools", help="matched: schools the comparison students come from (default: --schools).", rich_help_panel=_D),
    comparison_students: Optional[float] = typer.Option(None, "--comparison-students", help="matched: comparison students per comparison school (default: --students).", rich_help_panel=_D),
    deff_weights: Optional[float] = typer.Option(None, "--deff-weights", help="matched: Kish design effect of the matching weights, 1 + CV² (default: 1).", rich_help_panel=_D),
    icc: Optional[float] = typer.Option(None, "--icc", help="Share of outcome variance between schools.", rich_help_panel=_D),
    icc_district: Optional[float] = typer.Option(None, "--icc-district", help="blocked-cluster-rct: share between districts (default: 0).", rich_help_panel=_D),
    r2_school: Optional[float] = typer.Option(None, "--r2-school", help="Share of school-level variance explained by covariates (default: 0).", rich_help_panel=_D),
    r2_student: Optional[float] = typer.Option(None, "--r2-student", help="Share of student-level variance explained by covariates (default: 0).", rich_help_panel=_D),
    blocks: Optional[str] = typer.Option(None, "--blocks", help="blocked designs: fixed or random block effects (default: blocked-rct fixed, blocked-cluster-rct random).", rich_help_panel=_D),
    block_specific: bool = typer.Option(False, "--block-specific-effects", help="blocked-rct with fixed blocks: one effect per school, averaged (PowerUp! BIRA2_1f).", rich_help_panel=_D),
    omega: Optional[float] = typer.Option(None, "--omega", help="random blocks: effect variance across blocks relative to the block ICC (default: 0).", rich_help_panel=_D),
    r2_effect: Optional[float] = typer.Option(None, "--r2-effect", help="random blocks: share of effect variance explained (default: 0).", rich_help_panel=_D),
    treated: Optional[float] = typer.Option(None, "--treated", help="Proportion assigned to PL (default: 0.5).", rich_help_panel=_D),
    covariates: Optional[int] = typer.Option(None, "--n-covariates", help="Covariates at the level that sets the degrees of freedom (default: 0).", rich_help_panel=_D),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level (default: 0.05).", rich_help_panel=_P),
    one_sided: bool = typer.Option(False, "--one-sided", help="One-sided test (default: two-sided).", rich_help_panel=_P),
    target_power: float = typer.Option(0.80, "--power", help="Power of the MDES and of the sample size (default: 0.80).", rich_help_panel=_P),
    method: str = typer.Option("exact", "--method", help="MDES multiplier: exact (non-central t, default) or powerup (t(1-a/2) + t(power), PowerUp!'s).", rich_help_panel=_P),
    effect: Optional[float] = typer.Option(None, "--effect", help="Report the power for this effect (SD units).", rich_help_panel=_P),
    target_mdes: Optional[float] = typer.Option(None, "--target-mdes", help="Sample size needed for this MDES (SD units; default: 0.20 SD).", rich_help_panel=_P),
    target_pp: Optional[float] = typer.Option(None, "--target-pp", help="Sample size needed for this MDES in percentile points.", rich_help_panel=_P),
    solve_for: Optional[str] = typer.Option(None, "--solve-for", help="The size to solve for: schools (default), students or districts.", rich_help_panel=_P),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", help="Baseline percentile of percentile points (default: 50).", rich_help_panel=_P),
    vary: Optional[str] = typer.Option(None, "--vary", help="Design input with one power curve per value (default: icc; r2_student for individual-rct).", rich_help_panel=_P),
    curve_values: Optional[str] = typer.Option(None, "--curve-values", help="Values of --vary, comma-separated (default: half, own, twice).", rich_help_panel=_P),
    simulate: int = typer.Option(0, "--simulate", help="Also simulate power with this many data sets analysed by pleval (cluster-rct, blocked-rct, blocked-cluster-rct) (default: 0).", rich_help_panel=_P),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulation (default: 0).", rich_help_panel=_P),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for plan.json, power_curve.png, mdes_curve.png and provenance.json.", rich_help_panel=_P),
    force: Force = False,
    fmt: str = typer.Option("text", "--format", help="Terminal output: text or json.", rich_help_panel=_P),
    from_file: Optional[Path] = typer.Option(None, "--from", help="Pilot or prior-year student file: estimate the ICC and R² (and sizes not given) from it.", rich_help_panel=_F),
    outcome: Optional[str] = typer.Option(None, "--outcome", help="Outcome column (default: posttest).", rich_help_panel=_F),
    pretest: Optional[str] = typer.Option(None, "--pretest", help="Pretest column(s), comma-separated; 'none' for none (default: pretest).", rich_help_panel=_F),
    school: Optional[str] = typer.Option(None, "--school", help="School column (default: school_id).", rich_help_panel=_F),
    grade: Optional[str] = typer.Option(None, "--grade", help="Grade column; 'none' for none (default: grade).", rich_help_panel=_F),
    subject: Optional[str] = typer.Option(None, "--subject", help="Subject column; 'none' for one subject (default: subject).", rich_help_panel=_F),
    only_subject: Optional[str] = typer.Option(None, "--only-subject", help="Plan from this subject, a value of the --subject column (default: the first).", rich_help_panel=_F),
    treatment: Optional[str] = typer.Option(None, "--treatment", help="Treatment column; only its comparison rows are used (default: treatment).", rich_help_panel=_F),
    treated_label: Optional[str] = typer.Option(None, "--treated-label", help="The treated (PL) value of a two-label treatment column, e.g. PL.", rich_help_panel=_F),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    *,
    reading: dict,
) -> None:
    """MDES (SD and percentile points), power for an effect, and the sample size for a target MDES.

    Formulas of PowerUp! (Dong & Maynard 2013), exact non-central t.

    --from FILE estimates the ICC and R² of an existing file (one-way ANOVA; Searle F interval).
    --out FOLDER writes the plan, its power and MDES curves (PNG) and provenance.json (version,
    options, the design's inputs as used and, with --from, the file's SHA-256).
    """
    if fmt not in ("text", "json"):
        raise DataError(f"--format must be text or json; got {fmt!r}")
    from .. import outputs
    from .. import power as pw

    if out is not None:
        check_out_folder(out, _OUTPUTS, force)
        outputs.prepare(out)

    cls = getattr(pw, _CLASSES[design])
    given = {
        "schools": schools, "students": students, "districts": districts, "comparison_schools": comparison_schools,
        "comparison_students": comparison_students, "deff_weights": deff_weights, "icc": icc,
        "icc_district": icc_district, "r2_school": r2_school, "r2_student": r2_student, "blocks": blocks,
        "omega": omega, "r2_effect": r2_effect, "treated": treated, "covariates": covariates,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if block_specific:
        given["constant_effect"] = False
    fields = {f.name for f in dataclasses.fields(cls)}
    wrong = [k for k in given if k not in fields]
    if wrong:
        raise DataError(f"{', '.join('--' + k.replace('_', '-') for k in wrong)} does not apply to `pleval power {design.value}`")
    result: dict = {}
    comps = df = cols = None
    if from_file is None:
        no_read_options(reading, "--from FILE")
    else:
        comps, filled, df, cols, from_notes = _from_file(from_file, given, fields, outcome, pretest, school, grade, subject,
                                                         treatment, parse_value(treated_label), only_subject, reading,
                                                         design=cls)
        result["components"] = comps.to_frame().to_dict(orient="records")
        result["filled_from_file"] = from_notes
        given = filled
    need = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in given]
    if target_mdes is None and target_pp is None:
        target_mdes = 0.20
    test = dict(alpha=alpha, two_sided=not one_sided, method=method, baseline_percentile=baseline_percentile)
    solved = None
    if need == [solve_for or cls.sizes[0]]:  # the size solved for: the plan is made at the size it needs
        solved = need.pop()
        trial = cls(**given, **{solved: 1000}, **test).plan(power=target_power, target_mdes=target_mdes,
                                                           target_pp=target_pp, solve_for=solved)
        if trial.required is None:  # no plan without the size
            raise DataError(trial.unreachable)
        given[solved] = trial.required
    if need:
        raise DataError(f"`pleval power {design.value}` needs {', '.join('--' + k.replace('_', '-') for k in need)}")
    d = cls(**given, **test)
    plan = d.plan(power=target_power, effect=effect, target_mdes=target_mdes, target_pp=target_pp, solve_for=solve_for)
    result["plan"] = plan.as_dict()
    text = [comps.summary(), *(f"  note: {x}" for x in from_notes)] if comps is not None else []
    text.append(plan.summary())
    if solved:
        text.append(f"  (--{solved.replace('_', '-')} not given: the plan above is at the {d.unit.get(solved, solved)} "
                    "needed for the target MDES)")
    if comps is not None and hasattr(d, "icc"):
        row = comps.row(only_subject)
        lo, hi = (d.replace(icc=float(row[k])).mdes(target_power) for k in ("icc_ci_low", "icc_ci_high"))
        result["mdes_at_icc_ci"] = [lo, hi]
        text.append(f"  with the ICC at its {comps.level:.0%} CI limits ({row['icc_ci_low']:.3f}, {row['icc_ci_high']:.3f}) "
                    f"the MDES is {lo:.3f} to {hi:.3f} SD")
    if simulate:
        from ..power.simulation import simulate_power

        sim = simulate_power(d, effect=effect, reps=simulate, seed=seed)
        result["simulation"] = {k: v for k, v in sim.to_frame().set_index("quantity")["value"].items()}
        text.append(sim.summary())
    if out is not None:
        vary = vary or ("icc" if hasattr(d, "icc") else "r2_student")  # (an individual RCT has no ICC)
        options = dict(design=design.value, inputs=given, alpha=alpha, one_sided=one_sided, power=target_power,
                       method=method, effect=effect, target_mdes=target_mdes, target_pp=target_pp, solve_for=solve_for,
                       baseline_percentile=baseline_percentile, vary=vary, curve_values=curve_values,
                       simulate=simulate, seed=seed, only_subject=only_subject)
        files = _write(out, d, plan, result, (df, cols, options), effect, target_mdes if target_pp is None else plan.target_mdes,
                       vary, _floats(curve_values, "curve-values"))
        text.append("wrote " + ", ".join(str(out / f) for f in files))
    echo(json.dumps(result, indent=2, default=float) if fmt == "json" else "\n".join(text))


def _from_file(path, plan_inputs, fields, outcome, pretest, school, grade, subject_column, treatment, treated_label,
               subject, reading, design=None):
    """The file's variance components, the design inputs filled from them (and from its schools
    and students) and notes on what was filled. ``design``: the design class, which says what
    ``schools`` counts — every school of a cluster or blocked RCT, the PL schools of a matched
    comparison (its ``comparison_schools`` the others), the schools per district of a
    three-level design (filled only with ``districts``) — and, for a two-level cluster RCT, that
    its ``covariates`` (school level) are the pretests behind the file's R² school."""
    from ..data import SAMPLE_COLUMNS, _coerce_treatment, resolve_columns
    import pandas as pd

    from .. import power as pw
    from ..power.from_data import estimate_components

    given = {"outcome": outcome, "school": school, "treatment": treatment, "treated_label": treated_label,
             "grade": grade, "subject": subject_column, "pretest": pretest}
    df = read_students(path, reading, given)
    cols, _ = resolve_columns(df, SAMPLE_COLUMNS, given)
    comps = estimate_components(df, cols, subject=subject)
    row = comps.row(subject)
    filled = dict(plan_inputs)
    for k in _FROM_FILE:
        if k in fields and k not in filled:
            filled[k] = float(row[k])
    notes = []
    d = df if not cols.subject or pd.isna(row["subject"]) else df[df[cols.subject].astype(str) == str(row["subject"])]
    d = d[d[cols.outcome].notna() & d[cols.school].notna()]
    n_all, n_comp = int(d[cols.school].nunique()), int(row["n_schools"])
    arms = cols.treatment and cols.treatment in d.columns
    pl = _coerce_treatment(d[cols.treatment], cols.treatment, cols.treated_label)[0] == 1 if arms else None
    if "students" in fields and "students" not in filled:
        # what the design's `students` counts (before 2026-12-04 the comparison schools' mean for every design:
        # an individual RCT of 4,862 students was planned with 127)
        if design is pw.IndividualRCT:
            filled["students"] = float(len(d))
            notes.append(f"--students {len(d):,}: the file's students with an outcome, both arms")
        elif design is pw.MatchedComparison and arms and pl.any():
            filled["students"] = float(round(pl.sum() / d.loc[pl, cols.school].nunique(), 1))
            notes.append(f"--students {filled['students']:g}: the file's students per PL school")
            if "comparison_students" in fields and "comparison_students" not in filled:
                filled["comparison_students"] = float(round(row["students_per_school"], 1))
                notes.append(f"--comparison-students {filled['comparison_students']:g}: the file's students per "
                             "comparison school")
        elif design is pw.MatchedComparison:
            filled["students"] = float(round(row["students_per_school"], 1))
        else:  # students per school, both arms
            filled["students"] = float(round(len(d) / n_all, 1))
            if n_all != n_comp:
                notes.append(f"--students {filled['students']:g}: the file's students per school, both arms")
    if "schools" in fields and "schools" not in filled:
        if design is pw.MatchedComparison and arms:
            filled["schools"] = int(d.loc[pl, cols.school].nunique())
            notes.append(f"--schools {filled['schools']}: the file's PL schools")
            if "comparison_schools" in fields and "comparison_schools" not in filled:
                filled["comparison_schools"] = n_comp
                notes.append(f"--comparison-schools {n_comp}: the file's comparison schools")
        elif design is pw.BlockedClusterRCT:  # schools per district: the file's schools over the districts given
            if "districts" in filled:
                filled["schools"] = max(2, round(n_all / float(filled["districts"])))
                notes.append(f"--schools {filled['schools']}: the file's {n_all} schools over {filled['districts']:g} "
                             "districts")
        else:  # the file's design: every school, both arms
            filled["schools"] = n_all
            if n_all != n_comp:
                notes.append(f"--schools {n_all}: every school of the file with an outcome, both arms (the ICC and R² "
                             f"come from its {n_comp} comparison schools)")
    if (design is pw.ClusterRCT and "covariates" not in filled and "r2_school" not in plan_inputs
            and filled.get("r2_school", 0) > 0 and cols.pretest):  # R² school is that of the school mean pretest(s)
        filled["covariates"] = len(cols.pretest)
        notes.append(f"--n-covariates {len(cols.pretest)}: the file's R² school is that of the school mean pretest")
    return comps, filled, df, cols, notes


def _write(out: Path, d, plan, result, provenance: tuple, effect, target, vary, values) -> list[str]:
    """The plan, its curves (PNG at :data:`pleval.outputs.PRINT_DPI`, tight on white, as every
    figure pleval writes) and provenance.json (``provenance``: the file read or None, its columns
    and the options), swapped into ``out`` whole (:func:`pleval.outputs.atomic_folder`)."""
    from .. import outputs, plots
    from ..power.curves import mdes_table, power_table

    key = plan.solve_for or d.sizes[0]
    unit = d.unit.get(key, key)
    g = effect if effect is not None else (target if target is not None else plan.mdes)
    figures = {
        "power_curve.png": plots.power_curve(power_table(d, g, key, vary=vary, values=values), planned=getattr(d, key),
                                             target_power=plan.target_power, unit=unit),
        "mdes_curve.png": plots.mdes_curve(mdes_table(d, key, power=plan.target_power), planned=getattr(d, key),
                                           target=target, baseline_percentile=d.baseline_percentile, unit=unit),
    }
    with outputs.atomic_folder(out, replaced=_OUTPUTS) as tmp:
        (tmp / "plan.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        for name, fig in figures.items():
            (tmp / name).write_bytes(plots.to_png(fig, dpi=outputs.PRINT_DPI))
        outputs.write_provenance(tmp, "pleval power outputs", *provenance)
    return list(_OUTPUTS)
