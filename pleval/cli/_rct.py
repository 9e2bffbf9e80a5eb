"""``pleval rct``: analyse a randomized trial (ITT, attrition, baseline equivalence)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table

from ..data import RCT_SAMPLE_COLUMNS, read_table, resolve_columns
from ..rct import analyze_rct
from . import app
from ._common import console, handle_errors, parse_names, parse_sd


class DesignOpt(str, Enum):
    cluster = "cluster"
    blocked = "blocked"
    individual = "individual"


class MethodOpt(str, Enum):
    ols = "ols"
    cluster_means = "cluster_means"
    mixedlm = "mixedlm"


_SHORT = {
    "satisfied with statistical adjustment": "satisfied (adjusted)",
    "requires statistical adjustment": "needs adjustment",
    "Neyman difference in means": "Neyman diff. in means",
}


def _effects_table(res, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("analysis", "raw", "SE", "95% CI", "p", "df", "effect size", "pct points"):
        t.add_column(c, justify="left" if c == "analysis" else "right")
    for name, eff in res.effects.items():
        r = eff.raw
        t.add_row(
            escape(_SHORT.get(name, name)), f"{r.estimate:.3f}", f"{r.se:.3f}", f"{r.ci_low:.2f} to {r.ci_high:.2f}", f"{r.pvalue:.3g}",
            f"{r.df:.1f}", f"{eff.effect_size.estimate:.3f}", f"{eff.percentile_points.estimate:+.2f}",
        )
    return t


def _attrition_table(frame: pd.DataFrame) -> Table:
    t = Table(title="Attrition (WWC)", title_justify="left")
    for c in ("subject", "level", "randomized T/C", "analytic T/C", "overall", "differential", "cautious", "optimistic"):
        t.add_column(c)
    for r in frame.itertuples():
        t.add_row(
            escape(str(r.subject)), r.level, f"{r.n_randomized_treated}/{r.n_randomized_control}",
            f"{r.n_analytic_treated}/{r.n_analytic_control}", f"{r.overall:.1%}",
            f"{100 * r.differential:.1f} pts", r.verdict_cautious, r.verdict_optimistic,
        )
    return t


def _subgroup_table(sub: pd.DataFrame, inter: pd.DataFrame) -> Table:
    t = Table(title="Subgroup ITTs (p adjusted for multiplicity)", title_justify="left")
    for c in ("subject", "subgroup", "raw", "SE", "p", "p adj.", "effect size"):
        t.add_column(c)
    for r in sub.itertuples():
        t.add_row(escape(str(r.subject)), escape(f"{r.subgroup}={r.level}"), f"{r.estimate:.3f}", f"{r.se:.3f}",
                  f"{r.pvalue:.3g}", f"{r.pvalue_adjusted:.3g}", f"{r.effect_size:.3f}")
    for r in inter.itertuples():
        t.add_row(escape(str(r.subject)), escape(f"{r.subgroup}: interaction"), "", "", f"{r.pvalue:.3g}",
                  f"{r.pvalue_adjusted:.3g}", "")
    return t


def _equivalence_table(frame: pd.DataFrame) -> Table:
    t = Table(title="Baseline equivalence (analytic sample, WWC)", title_justify="left")
    for c in ("subject", "variable", "measure", "mean T", "mean C", "effect size", "verdict"):
        t.add_column(c)
    for r in frame.itertuples():
        t.add_row(escape(str(r.subject)), escape(r.variable), r.measure, f"{r.mean_treated:.3f}",
                  f"{r.mean_control:.3f}", f"{r.effect_size:.3f}", _SHORT.get(r.verdict, r.verdict))
    return t


@app.command("rct")
@handle_errors
def rct(
    data: Path = typer.Argument(..., help="Student file (CSV, Parquet or Excel), one row per student × subject."),
    design: DesignOpt = typer.Option(DesignOpt.cluster, "--design", help="cluster (schools randomized), blocked or individual."),
    outcome: Optional[str] = typer.Option(None, "--outcome", help="Outcome column (default: posttest)."),
    treatment: Optional[str] = typer.Option(None, "--treatment", help="Assignment column, 0/1 (default: treatment)."),
    pretest: Optional[str] = typer.Option(None, "--pretest", help="Pretest column(s), comma-separated; 'none' for none (default: pretest)."),
    covariates: Optional[str] = typer.Option(None, "--covariates", help="Covariates, comma-separated; 'none' for none (default: female,frl,ell,sped,race)."),
    school: Optional[str] = typer.Option(None, "--school", help="School (cluster) column (default: school_id)."),
    block: Optional[str] = typer.Option(None, "--block", help="Randomization block column; 'none' for none (default: block)."),
    takeup: Optional[str] = typer.Option(None, "--takeup", help="Take-up column for the CACE; 'none' to skip (default: takeup)."),
    subject_column: Optional[str] = typer.Option(None, "--subject-column", help="Subject column; 'none' if one subject (default: subject)."),
    student_id: Optional[str] = typer.Option(None, "--student-id", help="Student id column (default: student_id)."),
    grade: Optional[str] = typer.Option(None, "--grade", help="Grade column (effect-size SD pooled within grade); 'none' for none (default: grade)."),
    subject: Optional[str] = typer.Option(None, "--subject", help="Analyse only this subject (default: each subject)."),
    vcov: Optional[str] = typer.Option(None, "--vcov", help="CR2 (cluster default), CR1, CR0, HC2 (individual default), HC1, HC0, classical."),
    method: MethodOpt = typer.Option(MethodOpt.ols, "--method", help="Primary ITT: ols, cluster_means or mixedlm."),
    sd: str = typer.Option("pooled", "--sd", help="Effect-size SD: pooled, comparison, or a number (norm SD)."),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", help="Baseline percentile for percentile points."),
    subgroups: Optional[str] = typer.Option(None, "--subgroups", help="Subgroup columns, comma-separated (pretest_tercile for pretest thirds)."),
    adjust: str = typer.Option("bh", "--adjust", help="Multiplicity adjustment for subgroups: bh, holm, bonferroni."),
    permutations: int = typer.Option(0, "--permutations", help="Re-randomizations for a randomization test (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the randomization test."),
    out_dir: Path = typer.Option(Path("results/rct"), "--out-dir", "-o", help="Folder for the CSV tables."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """ITT effect of assignment with WWC attrition and baseline-equivalence verdicts.

    Writes itt.csv, attrition.csv and equivalence.csv (and subgroups.csv, interactions.csv,
    randomization.csv when asked) to --out-dir, and prints the tables. Column options default
    to the names in sample_data/pl_cluster_rct.csv.
    """
    df = read_table(data)
    given = {
        "outcome": outcome, "treatment": treatment, "pretest": pretest, "covariates": covariates, "school": school,
        "block": block, "takeup": takeup, "subject": subject_column, "student_id": student_id, "grade": grade,
    }
    cols, notes = resolve_columns(df, RCT_SAMPLE_COLUMNS, given)
    for n in notes:
        console.print(f"[yellow]note:[/] {escape(n)}", highlight=False)
    sd_value = parse_sd(sd)
    if cols.subject and subject is None:
        subjects = [s for s in pd.unique(df[cols.subject]) if pd.notna(s)]
    else:
        subjects = [subject]
    kw = dict(
        design=design.value, vcov=vcov, method=method.value, sd=sd_value, baseline_percentile=baseline_percentile,
        subgroups=parse_names(subgroups) or (), adjust=adjust, permutations=permutations, seed=seed,
    )
    results = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=permutations <= 0,
    ) as bar:
        for s in subjects:
            task = bar.add_task(f"randomization test{'' if s is None else f' ({s})'}", total=max(permutations, 1))
            results[s] = analyze_rct(
                df, cols, subject=s,
                progress=lambda done, total, _t=task: bar.update(_t, completed=done, total=total), **kw,
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in ("itt", "attrition", "equivalence", "subgroups", "interactions", "randomization")}
    for s, res in results.items():
        tables["itt"].append(res.to_frame().assign(subject=s))
        tables["attrition"].append(res.attrition_frame().assign(subject=s))
        tables["equivalence"].append(res.equivalence.assign(subject=s))
        if res.subgroups is not None:
            tables["subgroups"].append(res.subgroups.assign(subject=s))
            tables["interactions"].append(res.interactions.assign(subject=s))
        if res.randomization is not None:
            tables["randomization"].append(res.randomization.to_frame().assign(subject=s))
        console.print(_effects_table(res, f"ITT — {res.options['outcome']}" + ("" if s is None else f", {s}")
                                     + f" ({res.design} design; {res.options['vcov']})"))
        if res.complier_share is not None:
            c = res.complier_share
            console.print(f"complier share (ITT on take-up): {c.estimate:.3f} (SE {c.se:.3f})", highlight=False)
        if res.randomization is not None:
            console.print(escape(res.randomization.summary()), highlight=False)
        for n in res.notes:
            console.print(f"[yellow]note:[/] {escape(n)}", highlight=False)
    written = []
    for name, parts in tables.items():
        if parts:
            frame = pd.concat(parts, ignore_index=True)
            frame = frame[["subject"] + [c for c in frame.columns if c != "subject"]]
            frame.to_csv(out_dir / f"{name}.csv", index=False)
            tables[name] = frame
            written.append(f"{name}.csv")
    console.print(_attrition_table(tables["attrition"]))
    console.print(_equivalence_table(tables["equivalence"]))
    if written and "subgroups.csv" in written:
        console.print(_subgroup_table(tables["subgroups"], tables["interactions"]))
    first = next(iter(results.values()))
    console.print(first.equivalence_note, highlight=False)
    console.print(f"wrote {', '.join(written)} to {out_dir}", highlight=False)
