"""``pleval schools``: meta-analysis and the school-by-school table from per-school estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .._text import markdown_table
from ..errors import DataError, DesignError
from . import app
from ._common import NONE_WORDS, School, echo, handle_errors, reading_options

_DEFAULT_MODERATORS = ("school_poverty", "years_implementing", "enrollment")


@app.command("schools", short_help="Meta-analysis and school-by-school table of per-school estimates.")
@handle_errors
@reading_options
def schools(
    file: Path = typer.Argument(..., help="Table of per-school estimates (CSV, Parquet or Excel)."),
    school: School = None,
    estimate: str = typer.Option("estimate", "--estimate", help="Column of effect sizes (SD units).", rich_help_panel="Columns"),
    se: str = typer.Option("se", "--se", help="Column of their standard errors.", rich_help_panel="Columns"),
    df_column: str = typer.Option(
        "df", "--df", help="Column of each school's reference degrees of freedom: t p-values and CIs (pleval's own school_effects.csv has it); 'none', or absent: normal reference.",
        rich_help_panel="Columns",
    ),
    subject: str = typer.Option(
        "subject", "--subject", help="Subject column: each subject analysed separately; 'none' for one analysis.",
        rich_help_panel="Columns",
    ),
    n_treated: str = typer.Option(
        "n_treated", "--n-treated", help="Column of PL students per school; 'none' if absent.", rich_help_panel="Columns"
    ),
    n_comparison: str = typer.Option(
        "n_comparison", "--n-comparison", help="Column of comparison students per school; 'none' if absent.",
        rich_help_panel="Columns",
    ),
    moderators: Optional[str] = typer.Option(
        None,
        "--moderators",
        help="Comma-separated school-level columns for a meta-regression (default: those of "
        + ", ".join(_DEFAULT_MODERATORS)
        + " present in the file; '' for none).",
    ),
    method: str = typer.Option(
        "REML", "--method", help="tau² estimator: REML, ML, DL, PM, EB, HE, SJ, HS (metafor's names) or FE."
    ),
    hartung_knapp: bool = typer.Option(True, "--hartung-knapp/--no-hartung-knapp", help="Hartung-Knapp SE and t(k-1) CI for the pooled effect, and Knapp-Hartung tests for the meta-regression (default: on; off: metafor's z tests, which over-reject with few schools)."),
    prediction: str = typer.Option(
        "t", "--prediction", help="Prediction-interval reference: t (t(k-2)), t_k1 (t(k-1), metafor with knha) or normal (metafor's default)."
    ),
    influence: bool = typer.Option(False, "--influence", help="Leave-one-out fits and influence diagnostics of the pooled effect and the meta-regression (metafor's leave1out/influence); with --out, also written to OUT_influence.csv (one row per school and analysis)."),
    permutations: int = typer.Option(
        0, "--permutations", help="Permutation tests with this many draws (exact when fewer orderings exist): pooled effect and moderators. 0 = none."
    ),
    cluster: Optional[str] = typer.Option(
        None, "--cluster", help="Column of cluster labels (e.g. district): cluster-robust SEs, t tests and intervals for the pooled effect and the meta-regression (metafor's robust()).",
    ),
    cluster_vcov: str = typer.Option("CR2", "--cluster-vcov", help="With --cluster: CR2 (default; Satterthwaite df, HTZ test of the moderators: metafor's robust(clubSandwich=TRUE)) or CR1 (metafor's robust() default, with --cluster-df)."),
    cluster_df: str = typer.Option("G-p", "--cluster-df", help="With --cluster --cluster-vcov CR1: G-p (metafor's robust(), default: factor G/(G-p), G-p df) or G-1 (Stata)."),
    blup: bool = typer.Option(False, "--blup", help="BLUPs of each school's true effect from the meta-regression (metafor's blup)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random permutations."),
    adjust: str = typer.Option("bh", "--adjust", help="Multiplicity adjustment: bh (Benjamini-Hochberg) or holm."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level for the counts of schools."),
    level: float = typer.Option(0.95, "--level", help="Confidence level."),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", "-p", help="Baseline of the percentile points."),
    out: Optional[list[Path]] = typer.Option(
        None, "--out", "-o", help="Write the table (.csv, .xlsx, .md or .html; repeatable), with NAME.provenance.json "
        "beside it (version, options, the input's SHA-256).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the pooled results, not the table."),
    *,
    reading: dict,
) -> None:
    """Random-effects meta-analysis, empirical-Bayes shrinkage, multiplicity-adjusted counts and
    meta-regression of per-school effects, with the school-by-school table.

    Percentile points are shifts in rank (from the 50th percentile, g = 0.08 moves a student to
    about the 53rd), not percentage points of the score.
    """
    import pandas as pd

    from ..data import read_table
    from ..heterogeneity import school_effects_from_estimates
    from ..heterogeneity.export import _readable, export_table
    from ..outputs import write_provenance_file

    df = read_table(file, **reading, ids=lambda names: (school or "school_id", cluster))  # ('0042': text, in full)
    text_defaults = []
    if moderators is None:  # the default columns present; one holding text is left out with a note
        mods = [m for m in _DEFAULT_MODERATORS if m in df.columns]
        text_defaults = [m for m in mods if (pd.to_numeric(df[m], errors="coerce").isna() & df[m].notna()).any()]
        mods = [m for m in mods if m not in text_defaults]
    else:
        mods = [m.strip() for m in moderators.split(",") if m.strip()]
    method = method.upper()
    for target in out or []:
        if target.resolve() == Path(file).resolve():
            raise DataError("--out must differ from the input file: pleval never overwrites its input")
    res = school_effects_from_estimates(
        df,
        school=school or "school_id",
        estimate=estimate,
        se=se,
        by=_column(subject),
        n_treated=_column(n_treated),
        n_comparison=_column(n_comparison),
        moderators=mods,
        method=method,
        hartung_knapp=hartung_knapp,
        adjust=adjust.lower(),
        alpha=alpha,
        level=level,
        baseline_percentile=baseline_percentile,
        prediction=prediction,
        cluster=cluster,
        df=_column(df_column),
    )
    if permutations < 0:
        raise DataError(f"--permutations must be 0 or more; got {permutations}")
    # every computation before any printing: an error is one line, not a half-printed report
    regressions = {}
    skipped = (f"note: default moderator(s) {', '.join(text_defaults)} hold text, not numbers: left out of the "
               "meta-regression" if text_defaults else None)
    if mods:
        try:
            regressions = res.meta_regression(mods, method=method, knapp_hartung=hartung_knapp)
        except (DataError, DesignError) as exc:
            if moderators is not None:  # asked for: an error
                raise
            skipped = "\n".join(filter(None, [skipped, f"note: no meta-regression on the default moderators ({exc})"]))
    extra = _extras(res, regressions, influence=influence, permutations=permutations, blup=blup, seed=seed)
    influence_frame = res.influence(regressions) if influence and out else None
    if cluster:
        extra += [f"[{res._label(k if not isinstance(k, tuple) or k[-1] != 'meta-regression' else k[0])}] {r.summary()}"
                  for k, r in res.cluster_robust(cluster, vcov=cluster_vcov.upper(), df=cluster_df,
                                                 regressions=regressions).items()]
    echo(res.summary())
    for key, mr in regressions.items():
        echo("")
        echo(f"[{key}] " + mr.summary())
    for block in extra:
        echo("")
        echo(block)
    if skipped:
        echo("")
        echo(skipped)
    if not quiet:
        from ..heterogeneity.export import _groups

        for key, label, sub in _groups(res):
            echo("")
            echo(f"[{label}] schools")
            echo(markdown_table(_readable(sub, [], float(res.options.get("alpha", 0.05))), disable_numparse=True))
    options = dict(school=school or "school_id", estimate=estimate, se=se, df=res.options["df"], subject=subject,
                   n_treated=n_treated, n_comparison=n_comparison, moderators=mods, method=method,
                   hartung_knapp=hartung_knapp, prediction=prediction, influence=influence, permutations=permutations,
                   cluster=cluster, cluster_vcov=cluster_vcov.upper(), cluster_df=cluster_df, blup=blup, seed=seed,
                   adjust=adjust, alpha=alpha, level=level, baseline_percentile=baseline_percentile)
    for target in out or []:
        path = export_table(res, target)
        echo(f"wrote {path}")
        if influence_frame is not None:
            extra_path = Path(target).with_name(Path(target).stem + "_influence.csv")
            influence_frame.to_csv(extra_path, index=False)
            echo(f"wrote {extra_path}")
    for record in dict.fromkeys(Path(t).with_name(Path(t).stem + ".provenance.json") for t in out or []):
        write_provenance_file(record, "pleval schools outputs", df, None, options)
        echo(f"wrote {record}")


def _extras(res, regressions: dict, *, influence: bool, permutations: int, blup: bool, seed: int) -> list[str]:
    """The optional analyses of each group, as printable blocks (computed before printing)."""
    from ..heterogeneity import leave_one_out, leave_one_out_metareg, permutation_test, permutation_test_moderators

    out = []
    for key, meta in res.meta.items():  # a handful of subjects
        label = res._label(key)
        if influence:
            try:
                inf = leave_one_out(meta)
            except DesignError as exc:  # (a subject of two schools: the others' diagnostics stand)
                out.append(f"[{label}] no leave-one-out diagnostics: {exc}")
            else:
                flagged = inf.to_frame()
                flagged = flagged[flagged["influential"] | flagged["drives_tau"]]
                out.append(f"[{label}] " + inf.summary() + "\n" + markdown_table(flagged.round(4)))
                if key in regressions:
                    out.append(f"[{label}] " + leave_one_out_metareg(regressions[key]).summary())
        if permutations:
            out.append(f"[{label}] " + permutation_test(meta, n_perm=permutations, seed=seed).summary())
            if key in regressions:
                out.append(f"[{label}] " + permutation_test_moderators(regressions[key], n_perm=permutations, seed=seed).summary())
        if blup and key in regressions:
            b = regressions[key].blup()
            b.insert(0, "school", list(regressions[key].labels))
            out.append(f"[{label}] BLUPs of the true school effects (meta-regression)\n" + markdown_table(b.round(4)))
    return out


def _column(name: str) -> str | None:
    return None if name.strip().lower() in NONE_WORDS else name
