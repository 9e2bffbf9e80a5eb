"""``pleval rct``: analyse a randomized trial (ITT, attrition, baseline equivalence)."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Optional

from typing import TYPE_CHECKING

import typer

from . import app
from ._common import (
    Block, Covariates, Debug, Force, Grade, OnlySubject, Outcome, Pretest, School,
    Seed, StudentId, Subject, Takeup, TreatedLabel, Treatment, check_out_folder,
    console, err_console, escape, handle_errors, parse_names, parse_sd, parse_value, print_checks,
    read_students, reading_options, table,
)

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

_TABLES = ("itt", "attrition", "equivalence", "subgroups", "interactions", "randomization", "bootstrap")
_OUTPUTS = tuple(f"{name}.csv" for name in _TABLES) + ("arms.csv", "provenance.json")


class DesignOpt(str, Enum):
    cluster = "cluster"
    blocked = "blocked"
    individual = "individual"


class MethodOpt(str, Enum):
    ols = "ols"
    cluster_means = "cluster_means"
    mixedlm = "mixedlm"
    random_blocks = "random_blocks"


_SHORT = {
    "satisfied with statistical adjustment": "satisfied (adjusted)",
    "requires statistical adjustment": "needs adjustment",
    "Neyman difference in means": "Neyman diff. in means",
}


def _multiarm(df, given: dict, need, control: str, adjust: str, alternative: str, design: str, vcov, cluster_df: str,
              sd, baseline_percentile, only_subject, seed: int, out: Path) -> None:
    """``--control``: each arm against control (:func:`pleval.multiarm.analyze_multiarm`), arms.csv."""
    import pandas as pd

    from .. import outputs
    from ..checks import check
    from ..data import RCT_SAMPLE_COLUMNS, match_label, pick_subject
    from ..errors import DataError
    from ..multiarm import analyze_multiarm
    from ..rct import analyze_rct

    if given.get("treated_label") is not None:
        raise DataError("--control (multi-arm trial) and --treated-label cannot be combined")
    t = given.get("treatment") or RCT_SAMPLE_COLUMNS.treatment
    if t not in df.columns:
        raise DataError(f"the treatment column {t!r} is not in the data")
    hit = match_label(df[t], control)
    if hit is None:  # (the checks below read the column as control / any arm)
        labels = sorted(map(str, pd.unique(df[t].dropna())))
        raise DataError(f"column {t!r} (treatment): control label {control!r} does not occur; arms are {labels[:8]}")
    arm_is_control = df[t] == hit
    report = check(df.assign(**{t: (~arm_is_control).astype(float).where(df[t].notna())}), given=given, design="rct",
                   require=need, arms=df[t])  # the column checks, with the arms read as control / any arm
    print_checks(report)
    cols = report.columns
    subjects = [only_subject] if not cols.subject else \
        [pick_subject(df[cols.subject], only_subject, cols.subject)] if only_subject is not None else \
        sorted((s for s in pd.unique(df[cols.subject]) if pd.notna(s)), key=str)
    frames, attrition, equivalence = [], [], []
    for s in subjects:
        res = analyze_multiarm(df, cols, control, design, vcov=vcov, cluster_df=cluster_df, adjust=adjust,
                               alternative=alternative, subject=s, sd=sd, baseline_percentile=baseline_percentile, seed=seed)
        frame = res.to_frame().assign(subject=s)
        frames.append(frame[["subject"] + [c for c in frame.columns if c != "subject"]])
        tab = table(f"Arms against control {res.control!r} — {res.options['outcome']}" + ("" if s is None else f", {s}")
                    + f" ({res.options['vcov']}; p adjusted: {adjust}"
                    + ("" if alternative == "two-sided" else f", {alternative}") + ")",
                    ("arm", "raw", "SE", "df", "p", "p adj.", "effect size"), left=("arm",))
        for r in frame.itertuples():
            tab.add_row(escape(str(r.arm)), f"{r.estimate:.3f}", f"{r.se:.3f}", f"{r.df:.1f}", f"{r.pvalue:.3g}",
                        f"{r.pvalue_adjusted:.3g}", f"{r.effect_size:.3f}")
        console.print(tab)
        for n in res.notes:
            console.print(f"[yellow]note:[/] {escape(n)}", highlight=False)
        for arm in frame["arm"]:  # the WWC reviews each arm against control as a two-arm trial of its own
            pair = analyze_rct(df[df[t].isin([arm, hit])], cols.replace(treated_label=arm), design=design, vcov=vcov,
                               cluster_df=cluster_df, subject=s, sd=sd, baseline_percentile=baseline_percentile)
            attrition.append(pair.attrition_frame().assign(subject=s, arm=arm))
            equivalence.append(pair.equivalence.assign(subject=s, arm=arm))
    attrition_all, equivalence_all = pd.concat(attrition, ignore_index=True), pd.concat(equivalence, ignore_index=True)
    for frame, show in ((attrition_all, _attrition_table), (equivalence_all, _equivalence_table)):
        console.print(show(frame.assign(subject=[f"{a} vs {hit}" if x is None else f"{x}: {a} vs {hit}"
                                                 for x, a in zip(frame["subject"], frame["arm"])])))
    with outputs.atomic_folder(out, replaced=_OUTPUTS) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp / "arms.csv", index=False)
        for name, frame in (("attrition", attrition_all), ("equivalence", equivalence_all)):
            frame[["subject", "arm"] + [c for c in frame.columns if c not in ("subject", "arm")]].to_csv(
                tmp / f"{name}.csv", index=False)
        outputs.write_provenance(tmp, "pleval rct outputs", df, cols, dict(control=control,
                                 design=design, vcov=vcov, cluster_df=cluster_df, adjust=adjust, alternative=alternative,
                                 sd=sd, baseline_percentile=baseline_percentile, only_subject=only_subject, seed=seed))
    console.print(f"wrote arms.csv, attrition.csv, equivalence.csv, provenance.json to {escape(str(out))}",
                  highlight=False)


def _parse_icc(value: str) -> float | None:
    from ..errors import DataError

    if value.strip().lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(f"--icc must be a number in [0, 1) or 'none'; got {value!r}") from None


def _effects_table(res, title: str) -> Table:
    t = table(title, ("analysis", "raw", "SE", "95% CI", "p", "df", "effect size", "pct points"), left=("analysis",))
    for name, eff in res.all_effects():
        r = eff.raw
        se = math.isfinite(r.se)  # (a Neyman estimate without a design-based SE: see the notes)
        t.add_row(
            escape(_SHORT.get(name, name)), f"{r.estimate:.3f}", f"{r.se:.3f}" if se else "no SE",
            f"{r.ci_low:.2f} to {r.ci_high:.2f}" if se else "—", f"{r.pvalue:.3g}" if se else "—",
            f"{r.df:.1f}" if math.isfinite(r.df) else "—", f"{eff.effect_size.estimate:.3f}",
            f"{eff.percentile_points.estimate:+.2f}",
        )
    return t


def _attrition_table(frame: pd.DataFrame) -> Table:
    from ..standards import differential_text, overall_text

    cols = ("subject", "level", "randomized T/C", "analytic T/C", "overall", "differential", "cautious", "optimistic")
    t = table("Attrition (WWC)", cols, left=cols)
    for r in frame.itertuples():
        t.add_row(
            escape(str(r.subject)), r.level, f"{r.n_randomized_treated}/{r.n_randomized_control}",
            f"{r.n_analytic_treated}/{r.n_analytic_control}", f"{overall_text(r.overall)}%",
            f"{differential_text(r.overall, r.differential)} pts", r.verdict_cautious, r.verdict_optimistic,
        )
    return t


def _subgroup_table(sub: pd.DataFrame, inter: pd.DataFrame) -> Table:
    cols = ("subject", "subgroup", "raw", "SE", "p", "p adj.", "effect size")
    t = table("Subgroup ITTs (p adjusted for multiplicity)", cols, left=cols)
    for r in sub.itertuples():
        t.add_row(escape(str(r.subject)), escape(f"{r.subgroup}={r.level}"), f"{r.estimate:.3f}", f"{r.se:.3f}",
                  f"{r.pvalue:.3g}", f"{r.pvalue_adjusted:.3g}", f"{r.effect_size:.3f}")
    for r in inter.itertuples():
        t.add_row(escape(str(r.subject)), escape(f"{r.subgroup}: interaction"), "", "", f"{r.pvalue:.3g}",
                  f"{r.pvalue_adjusted:.3g}", "")
    return t


def _equivalence_table(frame: pd.DataFrame) -> Table:
    from ..standards import g_text

    cols = ("subject", "variable", "measure", "mean T", "mean C", "difference", "SD", "effect size", "verdict")
    t = table("Baseline equivalence (analytic sample, WWC; with grades: the difference within grade, averaged, "
              "over the SD within grade)", cols, left=cols)
    for r in frame.itertuples():
        sd = getattr(r, "sd", math.nan)
        t.add_row(escape(str(r.subject)), escape(r.variable), r.measure, f"{r.mean_treated:.3f}",
                  f"{r.mean_control:.3f}", f"{r.difference:+.3f}", "—" if not math.isfinite(sd) else f"{sd:.3f}",
                  g_text(r.effect_size), _SHORT.get(r.verdict, r.verdict))
    return t


@app.command("rct", short_help="Randomized trial: ITT, WWC attrition and baseline equivalence.")
@handle_errors
@reading_options
def rct(
    data: Path = typer.Argument(..., help="Student file (CSV, TSV, Excel, Parquet, Stata or SPSS), one row per student × subject."),
    design: DesignOpt = typer.Option(DesignOpt.cluster, "--design", help="cluster (schools randomized), blocked or individual."),
    method: MethodOpt = typer.Option(MethodOpt.ols, "--method", help="Primary ITT: ols, cluster_means, mixedlm or random_blocks (the blocks' effects averaged, SE from their spread, K − 1 df: effects that vary across districts or sites)."),
    only_subject: OnlySubject = None,
    out: Path = typer.Option(Path("results/rct"), "--out", "-o", help="Folder for the CSV tables."),
    force: Force = False,
    seed: Seed = 0,
    debug: Debug = False,
    outcome: Outcome = None,
    treatment: Treatment = None,
    treated_label: TreatedLabel = None,
    pretest: Pretest = None,
    covariates: Covariates = None,
    school: School = None,
    block: Block = None,
    takeup: Takeup = None,
    subject: Subject = None,
    student_id: StudentId = None,
    grade: Grade = None,
    vcov: Optional[str] = typer.Option(None, "--vcov", help="CR2 (cluster default), CR1, CR0, HC2 (individual default), HC1, HC0, classical."),
    cluster_df: str = typer.Option("G-1", "--cluster-df", help="CR1/CR0 convention: G-1 (Stata; default) or G-p (metafor's robust(): factor G/(G-p), G-p df)."),
    df_working: str = typer.Option("independent", "--df-working", help="Working model of CR2's Satterthwaite df: independent (clubSandwich's; default) or random_effects (a school random effect, as matched designs take)."),
    sd: str = typer.Option("pooled", "--sd", help="Effect-size SD: pooled, comparison, or a number (norm SD)."),
    baseline_percentile: float = typer.Option(50.0, "--baseline-percentile", help="Baseline percentile for percentile points."),
    subgroups: Optional[str] = typer.Option(None, "--subgroups", help="Subgroup columns, comma-separated (pretest_tercile for pretest thirds)."),
    adjust: str = typer.Option("bh", "--adjust", help="Multiplicity adjustment for subgroups: bh, holm, bonferroni."),
    lin: bool = typer.Option(False, "--lin", help="Lin (2013) fully interacted covariate adjustment for the OLS ITT."),
    icc: str = typer.Option("0.20", "--icc", help="ICC for the Hedges (2007) cluster-adjusted effect size g_T (cluster designs; WWC default 0.20); 'none' omits it."),
    gt_df: str = typer.Option("N-2", "--gt-df", help="df of g_T's small-sample factor ω = 1 - 3/(4 df - 1): N-2 (students, default) or h (Hedges 2007 cluster-adjusted df, as VIVECampbell computes WWC's g)."),
    interaction_test: str = typer.Option("HTZ", "--interaction-test", help="Test of equal subgroup effects (3+ levels): HTZ (CR2, HC2; Pustejovsky-Tipton) or F (Wald F on the fit's residual df: G-1, G-k-A under --cluster-df G-p, or n-k-A)."),
    permutations: int = typer.Option(0, "--permutations", help="Re-randomizations for a randomization test (0: none)."),
    control: Optional[str] = typer.Option(None, "--control", help="Multi-arm trial: the control label of the treatment column; every other label is an arm compared with it (writes arms.csv)."),
    multiarm_adjust: str = typer.Option("holm", "--arms-adjust", help="Multiplicity adjustment across arms: holm, dunnett, bonferroni, none."),
    multiarm_alternative: str = typer.Option("two-sided", "--arms-alternative", help="Alternative of the arm tests: two-sided, greater (arm better) or less (one-sided p and simultaneous bounds)."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Wild cluster bootstrap draws for the ITT (restricted; 0: none; e.g. 9999)."),
    bootstrap_weights: str = typer.Option("rademacher", "--bootstrap-weights", help="Wild bootstrap weights: rademacher or webb (fewer than ~12 schools)."),
    *,
    reading: dict,
) -> None:
    """ITT effect of assignment with WWC attrition and baseline-equivalence verdicts.

    Writes itt.csv, attrition.csv and equivalence.csv (and subgroups.csv, interactions.csv,
    randomization.csv, bootstrap.csv when asked; arms.csv with --control) and provenance.json
    (version, options, the input's SHA-256) to --out, and prints the tables. Column options default
    to the names in sample_data/pl_cluster_rct.csv; the grade column pools the effect-size SD
    within grade.
    """
    import pandas as pd

    from .. import outputs
    from ..checks import check
    from ..data import pick_subject
    from ..inference import adjust_pvalues
    from ..rct import analyze_rct, subjects_with_both_arms

    sd_value = parse_sd(sd)
    check_out_folder(out, _OUTPUTS, force)
    outputs.prepare(out)
    given = {
        "outcome": outcome, "treatment": treatment, "treated_label": parse_value(treated_label), "pretest": pretest,
        "covariates": covariates, "school": school, "block": block, "takeup": takeup, "subject": subject,
        "student_id": student_id, "grade": grade,
    }
    df = read_students(data, reading, given, design="rct")
    need = ("outcome", "treatment") + (("school",) if design.value == "cluster" else ())
    if control is not None:
        from ..data import NONE_WORDS
        from ..errors import DataError

        if df_working != "independent":
            raise DataError("--df-working applies to two-arm trials; multi-arm trials (--control) keep the independence "
                            "working model")
        unused = [flag for flag, on in (("--method " + method.value, method.value != "ols"), ("--lin", lin),
                                        ("--subgroups", bool(subgroups)), ("--permutations", permutations > 0),
                                        ("--bootstrap", bootstrap > 0),
                                        ("--takeup", takeup is not None and takeup.strip().lower() not in NONE_WORDS))
                  if on]
        if unused:  # a multi-arm run fits each arm against control by OLS, nothing else: said, not ignored
            raise DataError(f"{', '.join(unused)} apply to two-arm trials; a multi-arm trial (--control) compares each "
                            "arm with control by the OLS ITT (no CACE, subgroups, randomization test or bootstrap): "
                            "leave them out, or analyse one arm against control as a two-arm trial")
        _multiarm(df, given, need, control, multiarm_adjust, multiarm_alternative, design.value, vcov, cluster_df, sd_value,
                  baseline_percentile, only_subject, seed, out)
        return
    report = check(df, given=given, design="rct", require=need)
    print_checks(report)
    cols = report.columns
    if cols.subject and only_subject is None:  # (the checks warned of a subject with one arm: left out)
        subjects = subjects_with_both_arms(df, cols)[0]
    else:
        subjects = [only_subject if not cols.subject else pick_subject(df[cols.subject], only_subject, cols.subject)]
    kw = dict(
        design=design.value, vcov=vcov, cluster_df=cluster_df, df_working=df_working, method=method.value, sd=sd_value,
        baseline_percentile=baseline_percentile,
        subgroups=parse_names(subgroups) or (), adjust=adjust, interaction_test=interaction_test.upper(), lin=lin,
        icc=_parse_icc(icc), gt_df=gt_df,
        permutations=permutations, bootstrap=bootstrap, bootstrap_weights=bootstrap_weights, seed=seed,
    )
    results = {}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console.get(), transient=True, disable=permutations <= 0,
    ) as bar:
        for s in subjects:
            task = bar.add_task(f"randomization test{'' if s is None else f' ({s})'}", total=max(permutations, 1))
            results[s] = analyze_rct(
                df, cols, subject=s,
                progress=lambda done, total, _t=task: bar.update(_t, completed=done, total=total), **kw,
            )

    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in _TABLES}
    for s, res in results.items():
        tables["itt"].append(res.to_frame().assign(subject=s))
        tables["attrition"].append(res.attrition_frame().assign(subject=s))
        tables["equivalence"].append(res.equivalence.assign(subject=s))
        if res.subgroups is not None:
            tables["subgroups"].append(res.subgroups.assign(subject=s))
            tables["interactions"].append(res.interactions.assign(subject=s))
        if res.randomization is not None:
            tables["randomization"].append(res.randomization.to_frame().assign(subject=s))
        if res.wild_bootstrap is not None:
            tables["bootstrap"].append(res.wild_bootstrap.to_frame().assign(subject=s))
        console.print(_effects_table(res, f"ITT — {res.options['outcome']}" + ("" if s is None else f", {s}")
                                     + f" ({res.design} design; " + ("" if res.options["method"] == "ols" else "OLS rows: ")
                                     + f"{res.options['vcov']})"))
        if res.complier_share is not None:
            c = res.complier_share
            console.print(f"complier share (ITT on take-up): {c.estimate:.3f} (SE {c.se:.3f})", highlight=False)
        if res.randomization is not None:
            console.print(escape(res.randomization.summary()), highlight=False)
        if res.wild_bootstrap is not None:
            console.print(escape(res.wild_bootstrap.summary()), highlight=False)
        for n in res.notes:
            console.print(f"[yellow]note:[/] {escape(n)}", highlight=False)
    written = []
    with outputs.atomic_folder(out, replaced=_OUTPUTS) as tmp:  # swapped in whole (pleval.outputs)
        for name, parts in tables.items():
            if parts:
                frame = pd.concat(parts, ignore_index=True)
                frame = frame[["subject"] + [c for c in frame.columns if c != "subject"]]
                if name in ("subgroups", "interactions") and len(parts) > 1:  # every subject's rows at once, as
                    # pleval estimate adjusts them (each analyze_rct adjusts its own subject's only)
                    frame["pvalue_adjusted"] = adjust_pvalues(frame["pvalue"].to_numpy(), adjust)
                frame.to_csv(tmp / f"{name}.csv", index=False)
                tables[name] = frame
                written.append(f"{name}.csv")
        outputs.write_provenance(tmp, "pleval rct outputs", df, cols, dict(kw, only_subject=only_subject))
        written.append("provenance.json")
    console.print(_attrition_table(tables["attrition"]))
    console.print(_equivalence_table(tables["equivalence"]))
    if written and "subgroups.csv" in written:
        console.print(_subgroup_table(tables["subgroups"], tables["interactions"]))
    for s, res in results.items():  # each subject's own WWC verdict: attrition may be high in one only
        console.print(escape(res.equivalence_note if s is None else f"{s} — {res.equivalence_note}"), highlight=False)
    console.print(f"wrote {', '.join(written)} to {escape(str(out))}", highlight=False)
