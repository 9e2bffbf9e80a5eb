"""``pleval sensitivity``: how strong would a hidden difference have to be to erase the effect?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from ._common import (
    Covariates, Debug, Force, Grade, Outcome, Pretest, School, Seed,
    StudentId, Subject, TreatedLabel, Treatment, Weight, check_out_folder, console, escape,
    handle_errors, parse_caliper, parse_names, parse_sd, parse_value, print_checks, read_students, reading_options,
)
from ._match import Method


def parse_numbers(text: str | None, flag: str) -> tuple[float, ...]:
    """A comma-separated list of finite numbers (empty for none)."""
    import math

    from ..errors import DataError

    names = parse_names(text) or ()
    try:
        values = tuple(float(v) for v in names)
    except ValueError:
        values = (math.nan,)  # not a number: the same error
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{flag} must be comma-separated finite numbers; got {text!r}")
    return values


@app.command("sensitivity", short_help="How fragile is the matched effect: RV, E-values, Rosenbaum bounds.")
@handle_errors
@reading_options
def sensitivity_cmd(
    data: Path = typer.Argument(..., help="Student file (CSV, Parquet or Excel), one row per student × subject."),
    method: Method = typer.Option(Method.propensity, "--method", "-m", metavar="METHOD", help="Matching method, as for pleval match (propensity, mahalanobis, vcg, weighting, optimal, full, subclass, cem, exact, ebal)."),
    out: Path = typer.Option(Path("results/sensitivity"), "--out", "-o", help="Folder for the outputs."),
    force: Force = False,
    seed: Seed = 0,
    debug: Debug = False,
    outcome: Outcome = None,
    treatment: Treatment = None,
    treated_label: TreatedLabel = None,
    pretest: Pretest = None,
    covariates: Covariates = None,
    school: School = None,
    grade: Grade = None,
    subject: Subject = None,
    student_id: StudentId = None,
    weight: Weight = None,
    k: Optional[int] = typer.Option(None, "--k", help="Comparisons per PL student (default: 1; 51 for vcg)."),
    band: float = typer.Option(1.0, "--band", help="VCG: pretest band in points (0 = equal)."),
    exact: Optional[str] = typer.Option(None, "--exact", help="Exact-match columns, comma-separated (default: subject,grade), as for pleval match."),
    caliper: Optional[float] = typer.Option(None, "--caliper", help="Caliper, as for pleval match."),
    no_caliper: bool = typer.Option(False, "--no-caliper", help="Match without a caliper."),
    replace: Optional[bool] = typer.Option(None, "--replace/--no-replace", help="Nearest neighbour with or without replacement, as for pleval match."),
    penalize: bool = typer.Option(False, "--penalize", help="Ridge-penalized propensity model instead of an error on separation, as for pleval match."),
    benchmarks: Optional[str] = typer.Option(None, "--benchmarks", help="Covariates to benchmark on, comma-separated; the first is the main one (default: every pretest and covariate)."),
    kd: str = typer.Option("1,2,3", "--kd", help="Multiples of each benchmark's strength."),
    q: float = typer.Option(1.0, "--q", help="Robustness value for a reduction of q times the estimate (1 = to zero)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level for RV(q, alpha) and Rosenbaum's Gamma."),
    gammas: str = typer.Option("1,1.5,2,3", "--gammas", help="Gamma values for the table of Rosenbaum p-value bounds."),
    hl_gamma: Optional[str] = typer.Option(None, "--hl-gamma", help="Gamma values at which to add the Hodges-Lehmann range and interval, comma-separated."),
    statistic: str = typer.Option("rank", "--statistic", help="Rosenbaum test statistic: rank (signed/aligned ranks) or huber (Huber M-statistic)."),
    rosenbaum_direction: Optional[str] = typer.Option(None, "--rosenbaum-direction", help="The direction of the Rosenbaum test fixed in advance, one-sided at --alpha: greater or less, the sign of the effect on the outcome's scale (less = a fall, even where lower is better) (default: the estimate's sign, tested two-sided)."),
    placebo_outcome: Optional[str] = typer.Option(None, "--placebo-outcome", help="A pre-program score to analyse as a placebo (negative-control) outcome."),
    sd: str = typer.Option("pooled", "--sd", help="Effect-size SD: pooled, comparison, or a number (norm SD)."),
    vcov: Optional[str] = typer.Option(None, "--vcov", help="Covariance of the effect, as for pleval match: CR2 (default, by school), CR1, CR0, HC2, HC1, HC0, classical."),
    cluster_df: str = typer.Option("G-1", "--cluster-df", help="CR1/CR0 convention, as for pleval match: G-1 (default) or G-p."),
    cr2: str = typer.Option("transformed", "--cr2", help="Weighted CR2 form, as for pleval match: transformed (default) or clubsandwich."),
    df_working: str = typer.Option("random_effects", "--df-working", help="Working model of CR2's Satterthwaite df, as for pleval match: random_effects (default) or independent."),
    *,
    reading: dict,
) -> None:
    """Sensitivity of the matched estimate, by subject, to unobserved confounding.

    Robustness values and bounds benchmarked on the covariates (Cinelli & Hazlett 2020), E-values
    (VanderWeele & Ding 2017), Rosenbaum bounds on the matched sets, and optionally a placebo
    outcome. Writes sensitivity.csv, one contour plot per subject (contour_SUBJECT.png) and
    provenance.json (version, options, the input's SHA-256) to --out. The matching and file-reading
    options are pleval match's, so the same match can be analysed. Column options default to
    sample_data/pl_matched_students.csv.
    """
    from .. import outputs
    from ..checks import check
    from ..findings import slug
    from ..matching import match
    from ..plots import ovb_contour, to_png
    from ..sensitivity import sensitivity

    caliper = parse_caliper(caliper, no_caliper)
    given = {"outcome": outcome, "treatment": treatment, "treated_label": parse_value(treated_label),
             "pretest": pretest, "covariates": covariates, "school": school, "grade": grade, "subject": subject,
             "student_id": student_id, "weight": weight}
    df = read_students(data, reading, given)
    report = check(df, given=given, keep_validated=True)  # every data problem first, as pleval match and estimate
    print_checks(report)
    cols = report.columns
    match_options = dict(method=method.value, k=k, band=band, seed=seed, exact=parse_names(exact),
                         caliper=caliper, replace=replace, penalize=penalize)
    options = dict(benchmarks=parse_names(benchmarks) or None, kd=parse_numbers(kd, "--kd"), q=q, alpha=alpha,
                   gammas=parse_numbers(gammas, "--gammas") or (1.0,), hl_gammas=parse_numbers(hl_gamma, "--hl-gamma"),
                   rosenbaum_statistic=statistic, rosenbaum_direction=rosenbaum_direction,
                   placebo_outcome=placebo_outcome, sd=parse_sd(sd), vcov=vcov,
                   cluster_df=cluster_df, cr2=cr2, df_working=df_working)
    # the check's own validation (once; its warnings are not repeated: before 2026-12-05 each outlier line twice)
    m = match(report.validated(df, cols), cols, **match_options)
    res = sensitivity(m, by=cols.subject, **options)
    figures = {"contour" + "".join(f"_{slug(v)}" for v in key) + ".png": r for key, r in res}
    written = ["sensitivity.csv", *figures, "provenance.json"]
    check_out_folder(out, written, force)
    with outputs.atomic_folder(out, replaced=written) as tmp:  # swapped in whole (pleval.outputs)
        res.to_frame().to_csv(tmp / "sensitivity.csv", index=False)
        for name, r in figures.items():
            (tmp / name).write_bytes(to_png(ovb_contour(r.ovb, main=r.benchmark), dpi=outputs.PRINT_DPI))
        outputs.write_provenance(tmp, "pleval sensitivity outputs", df, cols, {**match_options, **options})
    for r in figures.values():
        console.print(escape(r.summary()), highlight=False)
        console.print()
    console.print(f"wrote {', '.join(written)} to {escape(str(out))}", highlight=False)
