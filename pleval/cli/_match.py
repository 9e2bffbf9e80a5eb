"""``pleval match``: build a matched comparison and estimate the effect on PL students."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import DataError
from . import app
from ._common import (
    Covariates, Debug, Force, Grade, Outcome, Pretest, School, Seed,
    StudentId, Subject, TreatedLabel, Treatment, Weight, check_out_folder, console, err_console, escape,
    handle_errors, parse_caliper, parse_names, parse_sd, parse_value, print_checks, read_students, reading_options,
    table,
)

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

_OUTPUTS = ("matched.csv", "balance.csv", "equivalence.csv", "effect.csv", "unmatched.csv", "counts.csv",
            "sample_sizes.csv", "weights.csv", "provenance.json")


class Method(str, Enum):
    propensity = "propensity"
    mahalanobis = "mahalanobis"
    vcg = "vcg"
    weighting = "weighting"
    optimal = "optimal"
    full = "full"
    subclass = "subclass"
    cem = "cem"
    exact = "exact"
    ebal = "ebal"


def _cutpoints(text: str | None) -> dict | None:
    """``educ=5,age=sturges,pretest=q4`` or ``income=20000;40000``: CEM bins per column."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, rule = item.partition("=")
        if not rule:
            raise typer.BadParameter(f"--cutpoints: {item!r} is not column=rule", param_hint="--cutpoints")
        rule = rule.strip()
        try:
            out[name.strip()] = [float(v) for v in rule.split(";")] if ";" in rule else int(rule)
        except ValueError:
            out[name.strip()] = rule
    return out


def _calipers(text: str | None) -> dict | None:
    """``re74=0.2,re75=0.15``: per-variable calipers in SD units."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, width = item.partition("=")
        try:
            out[name.strip()] = float(width)
        except ValueError:
            raise typer.BadParameter(f"{item!r} is not column=SDs", param_hint="--calipers") from None
    return out


def _grouping(text: str | None) -> dict | None:
    """``race=white+hispan,frl=reduced+free``: CEM level groups per column."""
    if not text:
        return None
    out: dict = {}
    for item in text.split(","):
        name, _, levels = item.partition("=")
        if not levels:
            raise typer.BadParameter(f"--grouping: {item!r} is not column=level+level", param_hint="--grouping")
        out.setdefault(name.strip(), []).append([v.strip() for v in levels.split("+")])
    return out


def _effect_table(frame: pd.DataFrame, title: str, keys: list[str]) -> Table:
    """The console's effect table: a row per scale, after the ``--by`` columns ``keys`` that name
    each row's group (a group left out: one 'not estimated' row)."""
    t = table(title, keys + ["scale", "estimate", "SE", "95% CI", "p", "n PL / comparison"], left=keys + ["scale"])
    for r in frame.to_dict("records"):
        if r.get("not_estimated"):  # a group left out: its reason is in the warning and effect.csv
            t.add_row(*[escape(str(r[k])) for k in keys], "not estimated", *[""] * 5)
            continue
        t.add_row(*[escape(str(r[k])) for k in keys], r["scale"], f"{r['estimate']:.3f}", f"{r['se']:.3f}",
                  f"{r['ci_low']:.3f} to {r['ci_high']:.3f}", f"{r['pvalue']:.3g}",
                  f"{r['n_treated']:,} / {r['n_control']:,}")
    return t


@app.command("match", short_help="Matched comparison: match, check balance, estimate the effect.")
@handle_errors
@reading_options
def match_cmd(
    data: Path = typer.Argument(..., help="Student file (CSV, TSV, Excel, Parquet, Stata or SPSS), one row per student × subject."),
    method: Method = typer.Option(Method.propensity, "--method", "-m", metavar="METHOD", help="propensity, mahalanobis, vcg, weighting, optimal (optimal pair matching), full (optimal full matching), subclass (propensity-score subclasses), cem (coarsened exact matching), exact (exact matching on the covariates) or ebal (entropy balancing)."),
    pool: Optional[str] = typer.Option(None, "--pool", help="Comparison pool given apart from DATA, which then holds PL students only: a folder of Parquet files, a .parquet file or a DuckDB database file (or, with --engine spark, a Spark table or path). Matched out of core, vcg or propensity (docs/scale.md)."),
    pool_table: Optional[str] = typer.Option(None, "--pool-table", help="The table of a DuckDB --pool file (default: its only table)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="With --pool: duckdb (default: out of core), spark (the active Spark session) or memory."),
    out: Path = typer.Option(Path("results/match"), "--out", "-o", help="Folder for the outputs."),
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
    exact: Optional[str] = typer.Option(None, "--exact", help="Exact-match columns, comma-separated (default: subject,grade)."),
    k: Optional[int] = typer.Option(None, "--k", help="Comparisons per PL student (default: 1; 51 for vcg)."),
    caliper: Optional[float] = typer.Option(None, "--caliper", help="Caliper: SD of the logit PS (propensity, default 0.2) or Mahalanobis units."),
    no_caliper: bool = typer.Option(False, "--no-caliper", help="Match without a caliper."),
    replace: Optional[bool] = typer.Option(None, "--replace/--no-replace", help="Nearest neighbour with or without replacement (default: with; without under --conventions matchit)."),
    conventions: str = typer.Option("pleval", "--conventions", help="pleval, or matchit: MatchIt's nearest-neighbour defaults and MatchIt's SMD."),
    band: float = typer.Option(1.0, "--band", help="VCG: pretest band in points (0 = equal)."),
    school_keys: Optional[str] = typer.Option(None, "--school-keys", help="VCG: school-level exact keys, comma-separated (e.g. urbanicity)."),
    discard: str = typer.Option("none", "--discard", help="Common support: none, treated, control, both."),
    penalize: bool = typer.Option(False, "--penalize", help="Ridge-penalized propensity model instead of an error on separation."),
    link: str = typer.Option("logit", "--link", help="Propensity model link: logit or probit."),
    ps_model: str = typer.Option("student", "--ps-model", help="Propensity model: student, school_means (adds school means: PL chosen by school) or fixed (school fixed effects)."),
    subclasses: int = typer.Option(6, "--subclasses", help="subclass: number of propensity-score subclasses."),
    min_n: int = typer.Option(1, "--min-n", help="subclass: fewest PL and comparison rows per subclass (0 drops subclasses lacking one)."),
    estimand: str = typer.Option("ATT", "--estimand", help="subclass, cem, weighting, ebal: ATT (default) or ATE weights."),
    moments: int = typer.Option(1, "--moments", help="ebal: balance means (1), also variances (2) or third moments (3)."),
    truncate: Optional[float] = typer.Option(None, "--truncate", help="Weighting: cap weights at this quantile (e.g. 0.99)."),
    cutpoints: Optional[str] = typer.Option(None, "--cutpoints", help="cem: bins per column, e.g. educ=5,age=q4,income=20000;40000 (default: Sturges' rule)."),
    grouping: Optional[str] = typer.Option(None, "--grouping", help="cem: merged levels, e.g. race=white+hispan."),
    mahvars: Optional[str] = typer.Option(None, "--mahvars", help="propensity: match on the Mahalanobis distance of these columns within the PS caliper."),
    calipers: Optional[str] = typer.Option(None, "--calipers", help="Per-variable calipers in SDs, e.g. re74=0.2,re75=0.15 (propensity, mahalanobis)."),
    distance: Optional[str] = typer.Option(None, "--distance", help="Mahalanobis variables, comma-separated (mahalanobis; optimal and full match on them instead of the PS)."),
    trim: Optional[float] = typer.Option(None, "--trim", help="Weighting: drop units whose PS is below a or above 1 - a."),
    by: Optional[str] = typer.Option(None, "--by", help="Effects by group, e.g. subject or subject,grade (default: one pooled effect)."),
    vcov: Optional[str] = typer.Option(None, "--vcov", help="Covariance of the effect: CR2 (default, by school), CR1 (default without a school column), CR0, HC2, HC1, HC0, classical."),
    cluster_df: str = typer.Option("G-1", "--cluster-df", help="CR1/CR0 convention: G-1 (Stata; default) or G-p (metafor's robust(): factor G/(G-p), G-p df)."),
    cr2: str = typer.Option("transformed", "--cr2", help="Weighted CR2 form (matched weights vary within school): transformed (default; CR2 of the sqrt(W)-transformed model) or clubsandwich (clubSandwich's)."),
    df_working: str = typer.Option("random_effects", "--df-working", help="Working model of the transformed CR2's Satterthwaite df: random_effects (a school random effect; default) or independent (clubSandwich's)."),
    sd: str = typer.Option("pooled", "--sd", help="Effect-size SD: pooled, comparison, or a number (norm SD)."),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", help="Baseline percentile for percentile points."),
    weight: Weight = None,
    *,
    reading: dict,
) -> None:
    """Match PL students to comparison students, check balance and estimate the effect.

    Writes matched.csv (matched-set long format with _set, _weight, _pl_school), balance.csv,
    equivalence.csv (WWC baseline equivalence on the pretest), effect.csv, unmatched.csv,
    counts.csv, sample_sizes.csv (all / matched / ESS / unmatched / discarded per group), weights.csv (weight range, coefficient of variation, MAD, entropy, ESS per group) and provenance.json (version, options, the input's SHA-256 and, with --pool, the pool's path, engine, eligible rows and fingerprint) to --out. Column options default to sample_data/pl_matched_students.csv.
    """
    from .. import outputs
    from ..checks import check
    from ..matching import match

    sd_value = parse_sd(sd)
    caliper = parse_caliper(caliper, no_caliper)
    check_out_folder(out, _OUTPUTS, force)
    if (pool_table or engine) and pool is None:
        raise DataError("--pool-table and --engine go with --pool (a comparison pool given apart)")
    outputs.prepare(out)
    given = {"outcome": outcome, "treatment": treatment, "treated_label": parse_value(treated_label),
             "pretest": pretest, "covariates": covariates, "school": school, "grade": grade, "subject": subject,
             "student_id": student_id, "weight": weight}
    df = read_students(data, reading, given)
    options = dict(method=method.value, exact=parse_names(exact), k=k, caliper=caliper,
                   replace=replace, band=band, school_keys=parse_names(school_keys) or ())
    if pool is not None:
        from ..pool import match_pool
        from ..pool.evaluate import pl_columns
        from ..pool.match import record_of
        from ._estimate import _Steps

        _no_pool_options(dict(conventions=conventions, discard=discard, penalize=penalize, link=link, ps_model=ps_model,
                              subclasses=subclasses, min_n=min_n, estimand=estimand, moments=moments, truncate=truncate,
                              cutpoints=cutpoints, grouping=grouping, mahvars=mahvars, calipers=calipers,
                              distance=distance, trim=trim))
        pl, cols = pl_columns(df, given)
        with _Steps(enabled=err_console.is_terminal) as steps:
            res = match_pool(pl, pool, cols, engine=engine or "duckdb", table=pool_table, progress=steps, **options)
        pool_info = record_of(res, pool, pool_table)
    else:
        # a school column is required unless --school none says so (then a warning: SEs by student)
        report = check(df, given=given, require=("outcome", "treatment") if school is not None else None,
                       keep_validated=True)
        print_checks(report)
        cols = report.columns
        options.update(link=link, ps_model=ps_model, distance=parse_names(distance), subclasses=subclasses,
                       min_n=min_n, estimand=estimand, cutpoints=_cutpoints(cutpoints), grouping=_grouping(grouping),
                       mahvars=parse_names(mahvars), calipers=_calipers(calipers), moments=moments, truncate=truncate,
                       discard=discard, penalize=penalize, trim=trim, seed=seed, conventions=conventions)
        # the check's own validation (once; the checks above are not repeated as warnings)
        res = match(report.validated(df, cols), cols, **options)
        pool_info = None
    by_cols = parse_names(by) or None
    eff = res.estimate(by=by_cols, sd=sd_value, baseline_percentile=baseline_percentile, vcov=vcov,
                       cluster_df=cluster_df, cr2=cr2, df_working=df_working)
    bal = res.balance()

    eff_frame = eff.to_frame()
    sizes = res.sample_sizes().rename_axis("sample").reset_index()  # (weighting too: its ESS, as MatchIt's)
    frames = (res.matched, bal.table, bal.equivalence, eff_frame, res.unmatched, res.to_frame(), sizes,
              res.weight_summary())
    with outputs.atomic_folder(out, replaced=_OUTPUTS) as tmp:  # swapped in whole (pleval.outputs)
        for name, frame in zip(_OUTPUTS, frames):
            frame.to_csv(tmp / name, index=False)
        outputs.write_provenance(tmp, "pleval match outputs", df, cols, dict(
            options, by=by_cols, sd=sd, baseline_percentile=baseline_percentile, vcov=vcov, cluster_df=cluster_df,
            cr2=cr2, df_working=df_working), pool=pool_info)

    console.print(escape(res.summary()), highlight=False)
    console.print(escape(bal.summary()), highlight=False)
    console.print(_effect_table(eff_frame, f"Effect on PL students — {cols.outcome} ({res.method})", list(by_cols or ())))
    if by_cols is None and eff.note:  # PL rows not in the estimate, few comparison schools (also effect.csv's note)
        console.print(escape(eff.note), highlight=False)
    for key, e in (() if by_cols is None else eff.effects.items()):  # a group's few comparison schools
        if e.note:
            console.print(escape(f"{', '.join(map(str, key))}: {e.note}"), highlight=False)
    # each group's own SD (before 2026-12-04 the first group's was printed for all)
    sds = {(): eff} if by_cols is None else eff.effects
    sd_text = "; ".join(f"{', '.join(map(str, k)) + ': ' if k else ''}{e.sd:.4g}" for k, e in sds.items())
    kinds = "; ".join(dict.fromkeys(e.sd_kind for e in sds.values()))
    console.print(f"SD used for the effect size: {escape(sd_text)} ({escape(kinds)}). Percentile points are "
                  "shifts in rank, not percentage points of the score.", highlight=False)
    console.print(f"wrote {', '.join(_OUTPUTS)} to {escape(str(out))}", highlight=False)


_POOL_DEFAULTS = dict(conventions="pleval", discard="none", penalize=False, link="logit", ps_model="student",
                      subclasses=6, min_n=1, estimand="ATT", moments=1)


def _no_pool_options(given: dict) -> None:
    """With --pool, matching is vcg or propensity with pleval's conventions: other options are refused."""
    bad = [k for k, v in given.items() if v != _POOL_DEFAULTS.get(k)]
    if bad:
        raise DataError("with --pool these options do not apply (matching is vcg or propensity with pleval's "
                        f"conventions, docs/scale.md): {', '.join('--' + k.replace('_', '-') for k in bad)}")
