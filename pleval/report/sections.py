"""The sections of the report, each built from an :class:`~pleval.estimate.Evaluation`.

:data:`SECTIONS` lists the section builders in the order they are printed. A builder is a
function ``(evaluation, figures) -> Section | None`` where ``figures`` holds the names of the
figures made for this evaluation (:func:`pleval.plots.evaluation_figures`); it returns ``None``
when the section does not apply. To add a section: write a builder that returns a
:class:`~pleval.report.blocks.Section` of blocks and put it in :data:`SECTIONS`; the HTML,
PDF and Markdown renderings all pick it up.

The school table is driven by the columns of the school frame it is given:
:data:`SCHOOL_COLUMNS` lists each printable column once — its label, the frame columns it
needs and how a cell is formatted — and a column is printed when its source columns exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection

import numpy as np
import pandas as pd

from .. import percentiles
from .._text import pl_left_out
from ..findings import (ADJUSTMENT_NAMES, card_significance, design_text, fmt, fmt_ci, fmt_int, fmt_p, het_row, het_rows, lower_is_better,
                        note_text, one_school_parts, overall_rows, p_clause, randomized_in_schools, run_alpha,
                        spread_words, subject_rows, title, verdict_rows)
from ..plots import figure_name
from .blocks import Bullets, Figure, Headline, Paragraph, Section, Table

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation

def caveat_percentile(baseline_percentile: float = 50.0) -> str:
    """The percentile-point caveat, its example from the run's baseline percentile."""
    p0 = float(baseline_percentile)
    return ("Percentile points are shifts in rank, not percentage points of the score: +3 percentile points means a "
            f"student who would have scored at the {percentiles._ordinal(p0, exact=True)} percentile of the comparison "
            f"distribution is expected to score at about the {percentiles._ordinal(p0 + 3)}, not that the score rose "
            "by 3%.")


CAVEAT_MATCHED = (
    "A matched comparison balances the characteristics that were measured (pretest, demographics); it cannot rule "
    "out unobserved differences between PL and comparison students or schools (motivation, leadership, "
    "neighbourhood). Treat the estimate as the effect of PL only if nothing unmeasured also differs."
)
CAVEAT_SCHOOL = (
    "A single school's estimate is the program effect plus that school's own difference from its comparisons "
    "(its staff, its students, its year); student-level standard errors do not cover the second part. Read the "
    "shrunken estimates beside the raw ones, compare the spread with the placebo schools, and do not rank schools "
    "on these numbers alone."
)
def caveat_multiplicity(alpha: float = 0.05) -> str:
    """The multiplicity caveat at the run's α."""
    return (f"With many schools, some look significant by chance: about 1 in {1 / float(alpha):.3g} at p < "
            f"{float(alpha):g} when the program does nothing. Counts of significantly positive and negative schools "
            "are therefore also given after adjustment for multiplicity.")


CAVEAT_RCT = (
    "Randomization protects the overall (intent-to-treat) comparison, not comparisons of single schools or of "
    "students who used the program more; the effect on schools that implemented PL (CACE) assumes assignment "
    "affects outcomes only through implementation."
)

Builder = Callable[["Evaluation", Collection[str]], "Section | None"]


def _lvl(ev: "Evaluation") -> str:
    return f"{float(ev.options.get('level', 0.95)):.0%}"


def _figures(ev: "Evaluation", figures: Collection[str], kind: str, caption: str) -> list[Figure]:
    return [Figure(figure_name(kind, s), caption) for s in ev.subjects if figure_name(kind, s) in figures]


# --------------------------------------------------------------------------------------
# At a glance
# --------------------------------------------------------------------------------------
def glance(ev: "Evaluation", figures: Collection[str]) -> Section:
    """One card per subject: percentile points, the sentence, raw and effect size, the WWC
    verdicts and the school spread."""
    verdicts = verdict_rows(ev)
    cards = []
    for s in ev.subjects:
        e = ev.effects[s]
        lines = [
            ev.sentence(s),
            f"Raw difference {fmt(e.raw.estimate, 2, True)} "  # in the outcome's own units (days absent, say)
            + ("points" if not lower_is_better(ev) else f"({ev.columns.outcome}, lower is better)")
            + f"; effect size {fmt(e.effect_size.estimate, 3, True)} "
            f"SD ({e.effect_size.level:.0%} CI {fmt_ci(e.effect_size.ci_low, e.effect_size.ci_high, 3, True)}).",
        ]
        unmatched = _unmatched_line(ev, s)
        if unmatched:
            lines.append(unmatched)
        r = ev.ratings.get(s)
        if r is not None:
            lines.append(f"Why: {'; '.join(r.reasons)}. ESSA: {r.essa_reason}.")
        h = het_row(ev, s)
        if h is not None and note_text(h, "not_estimable"):  # one PL school
            lines.extend(one_school_parts(ev, s, h)[1:])
        elif h is not None:
            counts = (
                f"beyond the placebo spread (what school circumstances alone produce), {int(h['calibrated_positive'])} "
                f"positive and {int(h['calibrated_negative'])} negative of {int(h['k'])} after multiplicity adjustment "
                f"({int(h['count_positive_adjusted'])} and {int(h['count_negative_adjusted'])} against student-level "
                "standard errors alone)"
                if pd.notna(h.get("calibrated_positive", np.nan))
                else f"{int(h['count_positive_adjusted'])} significantly positive and "
                f"{int(h['count_negative_adjusted'])} significantly negative of {int(h['k'])} after multiplicity "
                "adjustment" + ("" if randomized_in_schools(ev) else " (school circumstances not allowed for: "
                                f"{note_text(h, 'calibration_note') or 'placebo schools were not run'})")
            )
            lines.append(f"{spread_words(ev, h)}; {counts}.")
        status = card_significance(ev, s)
        cards.append(Headline(
            title="All students" if s == "all" else s.capitalize(),
            big=f"{fmt(e.percentile_points.estimate, 1, True)} percentile points",
            status=status[0].upper() + status[1:],
            status_class="warn" if status.startswith("not") else "ok",
            lines=tuple(lines),
            verdicts=tuple((v["check"], v["verdict"]) for v in verdicts if v["subject"] == s)
            + ((("WWC rating", r.wwc_rating), ("ESSA tier", r.essa_tier)) if r is not None else ()),
        ))
    return Section("glance", "At a glance", tuple(cards), numbered=False)


def _unmatched_line(ev: "Evaluation", s: str) -> str | None:
    """Whom the matched estimate is about when PL rows of subject ``s`` are not in it (dropped
    for a missing value, excluded by matching, or without a comparison): how many of how many,
    and why (None when every PL row is in it, and for other designs)."""
    flow = ev.details.get(s, {}).get("pl_rows")
    if flow is None or len(flow) <= 2:
        return None
    n_read, n_in = int(flow["n_rows"].iloc[0]), int(flow["n_rows"].iloc[-1])
    if not n_read:
        return None
    out = flow.iloc[1:-1]
    why = "; ".join(f"{r}: {n:,}" for r, n in out.groupby("reason", sort=False)["n_rows"].sum().items())
    return pl_left_out(n_read, n_in, why)


# --------------------------------------------------------------------------------------
# Data and design
# --------------------------------------------------------------------------------------
def data_checks(ev: "Evaluation", figures: Collection[str]) -> Section | None:
    """The warnings of the checks run before computing (:func:`pleval.check`): roles that fell
    back to nothing and what that means, outliers, mixed codes, dropped rows."""
    report = getattr(ev, "checks", None)
    if report is None or not (report.warnings or report.notes):
        return None
    blocks: list = []
    if report.warnings:
        blocks.append(Bullets(tuple(p.line for p in report.warnings), "Warnings (the analysis ran; read the consequence)",
                              style="warn"))
    if report.notes:
        blocks.append(Bullets(tuple(p.line for p in report.notes), "Notes"))
    blocks.append(Paragraph("pleval check FILE lists every check with the option that fixes it.", style="note"))
    return Section("checks", "Data checks", tuple(blocks))


def data_and_design(ev: "Evaluation", figures: Collection[str]) -> Section:
    """The design, the rows read and kept, and every row or school left out, by stage."""
    d = ev.data_summary
    blocks: list = [Paragraph(design_text(ev))]
    if len(d):
        blocks.append(Table(pd.DataFrame({"rows": d["reason"].astype(str), "column": d["column"].astype(str),
                                          "n": d["n_rows"].map(fmt_int)})))
    dr = ev.dropped
    if len(dr):
        blocks.append(Table(
            pd.DataFrame({
                "stage": dr["stage"].fillna("").astype(str) if "stage" in dr else "",
                "subject": dr["subject"].fillna("").astype(str) if "subject" in dr else "",
                "reason": dr["reason"].astype(str), "column": dr["column"].astype(str), "n": dr["n_rows"].map(fmt_int),
            }),
            title="Rows and schools left out, by stage",
        ))
    blocks += [Paragraph(f"Note: {n}", style="note") for n in dict.fromkeys(ev.notes)]
    return Section("data", "Data and design", tuple(blocks))


# --------------------------------------------------------------------------------------
# Balance and WWC verdicts
# --------------------------------------------------------------------------------------
def _balance_display(ev: "Evaluation", subject: str) -> pd.DataFrame | None:
    b = subject_rows(ev.balance, subject)
    if not len(b):
        return None
    out = pd.DataFrame({"variable": b["variable"].astype(str)})
    before = "before matching" if ev.design == "matched" else "baseline difference"
    out[f"SMD {before}"] = b["smd_before"].map(lambda v: fmt(v, 3, True))
    if "smd_after" in b.columns:
        out["SMD after matching"] = b["smd_after"].map(lambda v: fmt(v, 3, True))
    for c in ("variance_ratio_after", "var_ratio_after", "measure", "verdict"):
        if c in b.columns:
            out[c.replace("_", " ")] = b[c].map(lambda v: fmt(v, 2) if isinstance(v, float) else str(v))
    if "ecdf_max_after" in b.columns:
        out["eCDF max (KS) after"] = b["ecdf_max_after"].map(lambda v: fmt(v, 3))
    if "imbalanced" in b.columns:
        out["flag"] = [", ".join(x for x, on in (("|SMD| > 0.1", i), ("worse after matching", w)) if on)
                       for i, w in zip(b["imbalanced"].astype(bool), b["worse"].astype(bool))]
    return out


def balance(ev: "Evaluation", figures: Collection[str]) -> Section:
    """The WWC rules, the verdicts, the balance tables and the love / overlap plots."""
    text = (
        "What Works Clearinghouse rules: baseline differences of at most 0.05 SD satisfy baseline equivalence; "
        "0.05–0.25 SD satisfy it only when the impact model adjusts for the characteristic (pleval's models adjust "
        "for the pretest and every covariate); more than 0.25 SD do not."
    )
    if ev.design == "rct":
        text += " Attrition is judged against the WWC cautious and optimistic boundaries."
    v = verdict_rows(ev)
    blocks: list = [Paragraph(text)]
    blocks.append(Table(
        pd.DataFrame({"subject": [r["subject"] for r in v], "check": [r["check"] for r in v],
                      "value": [r["value"] for r in v], "WWC verdict": [r["verdict"] for r in v]}),
        verdict_columns=("WWC verdict",),
    ))
    what = "Balance table" if ev.design == "matched" else "Baseline differences (analytic sample)"
    for s in ev.subjects:
        bd = _balance_display(ev, s)
        if bd is not None:
            blocks.append(Table(bd, title=title(s, what)))
    design = ev.details[ev.subjects[0]].get("design") if ev.design == "matched" else None
    if design is not None and design.method not in ("weighting", "ebal"):
        ss = design.sample_sizes()
        show = {r: ("{:,.1f}" if r == "matched (ESS)" else "{:,.0f}") for r in ss.index}
        blocks.append(Table(
            pd.DataFrame({"sample": ss.index, "comparison": [show[r].format(v) for r, v in ss["comparison"].items()],
                          "PL": [show[r].format(v) for r, v in ss["treated"].items()]}),
            title="Sample sizes (student × subject rows, all subjects; ESS = Kish effective sample size)",
        ))
    love = ("Absolute standardized mean differences of each baseline characteristic"
            + (" before and after matching." if ev.design == "matched" else
               " between the randomized groups (analytic sample).") + " Dashed line 0.05, solid line 0.25 (WWC bands); dotted line 0.1, the common rule of "
               "thumb for balance.")
    blocks += _figures(ev, figures, "love", love)
    blocks += _figures(ev, figures, "overlap",
                       "Propensity scores of PL (up) and comparison (down) students, before and after matching.")
    return Section("balance", "Balance and WWC verdicts", tuple(blocks))


def evidence_standards(ev: "Evaluation", figures: Collection[str]) -> Section | None:
    """The WWC rating and the ESSA tier of each subject, every step and condition
    (:mod:`pleval.rating`)."""
    if not ev.ratings:
        return None
    text = (
        "The What Works Clearinghouse rating (Procedures and Standards Handbook v5.0) and the ESSA evidence tier that "
        "the rules give for this analysis. Each WWC step either leaves the highest reachable rating as it is or caps "
        "it; the rating is the lowest cap. Facts a student file cannot show (whether students joined schools after "
        "random assignment, other studies' findings, a logic model) are marked as such. This is not a WWC review."
    )
    blocks: list = [Paragraph(text)]
    for s, r in ev.ratings.items():
        f = r.to_frame()
        blocks.append(Table(
            pd.DataFrame({"part": f["part"], "step": f["step"], "finding": f["finding"], "result": f["result"]}),
            title=title(s, "WWC rating and ESSA tier"), verdict_columns=("result",),
            bold=tuple(f["step"].isin(["rating", "tier"])),
        ))
    return Section("standards", "Evidence standards: WWC rating and ESSA tier", tuple(blocks))


def outcomes(ev: "Evaluation", figures: Collection[str]) -> Section | None:
    """Every outcome of the run on its own scale, p adjusted within subject × domain, with its
    WWC rating and ESSA tier."""
    o = ev.outcomes
    if not len(o):
        return None
    lvl = _lvl(ev)
    adj = ADJUSTMENT_NAMES.get(str(ev.options.get("adjust")), ev.options.get("adjust"))
    blocks: list = [Paragraph(
        f"Each outcome on its own scale: scores in their own units (points, days, ...), effect size (Hedges g) and "
        f"percentile points; yes/no outcomes "
        f"as the difference in percentage points — a difference in the share of students, not percentile points — "
        f"with the WWC's Cox index as the effect size. p-values are adjusted ({adj}) within each subject and outcome "
        f"domain, as the WWC does; outcomes in different domains are not corrected for each other. Each outcome has "
        f"its own WWC rating and ESSA tier (its own analytic sample; ↓ marks outcomes where lower is better).")]
    for s in ev.subjects:
        t = subject_rows(o, s)
        if not len(t):
            continue
        pp = t["scale"] == "percentage points"
        frame = pd.DataFrame({
            "outcome": t["outcome"].astype(str) + np.where(t["favourable"] == "lower", " ↓", ""),
            "domain": t["domain"].astype(str),
            "difference": [f"{fmt(e, 2, True)}{' percentage points' if p else ''} ({fmt_ci(a, b, 2, True)})"
                           for e, a, b, p in zip(t["estimate"], t["ci_low"], t["ci_high"], pp)],
            "effect size": [f"{m.replace(' index', '')} {fmt(e, 3, True)} ({fmt_ci(a, b, 3, True)})"
                            for m, e, a, b in zip(t["es_measure"], t["effect_size"], t["es_ci_low"], t["es_ci_high"])],
            "percentile points": [("not defined" if p else fmt(v, 1, True)) for v, p in zip(t["percentile_points"], pp)],
            "p": t["pvalue"].map(p_at := _p_at(ev)), "adjusted p": t["pvalue_adjusted"].map(p_at),
            "WWC rating": t["wwc_rating"].astype(str), "ESSA tier": t["essa_tier"].astype(str),
        })
        notes = [f"{r.outcome}: {r.estimation}; {r.method}" for r in t.itertuples()]
        if pp.any():
            notes.append(t.loc[pp, "note"].iloc[0] + ".")
        blocks.append(Table(frame, title=title(s, "Outcomes"), note=f"{lvl} CIs in brackets. " + " ".join(
            n if n.endswith(".") else n + "." for n in notes)))
    return Section("outcomes", "Outcomes beyond scale scores", tuple(blocks))


def subgroups(ev: "Evaluation", figures: Collection[str]) -> Section | None:
    """Effects for each group of students, the tests of equal effects and the equity summary."""
    sub = ev.subgroups()
    if not len(sub):
        return None
    lvl = _lvl(ev)
    blocks: list = [Paragraph(
        "The effect within each group of students, from one model per grouping with a separate effect for each group "
        "(same covariates and standard errors as the overall effect). p-values are adjusted for multiplicity across "
        f"every row ({ADJUSTMENT_NAMES.get(str(ev.options.get('adjust')), ev.options.get('adjust'))}). Pretest bands "
        "are ranges of the pretest's percentile rank within grade and subject."
        + (" In a matched comparison each matched set belongs to the group of its PL student; the pretest difference "
           "within each group is shown (pretest SMD)." if ev.design == "matched" else ""))]
    eq = ev.equity
    if len(eq):
        items = [
            (f"{r['subject']}, " if r["subject"] != "all" else "") + f"gap {r['gap']}: change "
            f"{fmt(r['change_es'], 3, True)} SD ({lvl} CI {fmt_ci(r['es_ci_low'], r['es_ci_high'], 3, True)}; "
            f"{fmt(r['change'], 2, True)} points) — {r['verdict']}"
            for _, r in eq.iterrows()
        ]
        blocks.append(Bullets(tuple(items), title="Equity: does the program narrow or widen the gap?"))
    tests = ev.subgroup_tests
    for s in ev.subjects:
        t = subject_rows(sub, s)
        if not len(t):
            continue
        frame = pd.DataFrame({
            "subgroup": t["subgroup"].astype(str), "level": t["level"].astype(str),
            "n PL / comparison": t["n_treated"].map(fmt_int) + " / " + t["n_control"].map(fmt_int),
            "effect size": t["effect_size"].map(lambda v: fmt(v, 3, True)),
            f"{lvl} CI": [fmt_ci(a, b, 3, True) for a, b in zip(t["es_ci_low"], t["es_ci_high"])],
            "percentile points": t["percentile_points"].map(lambda v: fmt(v, 1, True)),
            "raw (points)": t["estimate"].map(lambda v: fmt(v, 2, True)),
            "p": t["pvalue"].map(p_at := _p_at(ev)), "adjusted p": t["pvalue_adjusted"].map(p_at),
        })
        if "pretest_smd" in t.columns:
            frame["pretest SMD"] = t["pretest_smd"].map(lambda v: fmt(v, 3, True))
        ts = subject_rows(tests, s)
        note = "Equal effects across levels: " + "; ".join(
            f"{r['subgroup']}: {r['test']}, {p_clause(r['pvalue'], run_alpha(ev))} (adjusted "
            f"{p_at(r['pvalue_adjusted'])})"
            for _, r in ts.iterrows()) + "."
        blocks.append(Table(frame, title=title(s, "Subgroups"), note=note))
    blocks += _figures(ev, figures, "subgroups",
                       "Effect size by subgroup with CIs; colour marks effects significant after multiplicity adjustment; "
                       "the diamond is the effect for all students.")
    return Section("subgroups", "Subgroups and equity", tuple(blocks))


def moderators(ev: "Evaluation", figures: Collection[str]) -> Section | None:
    """Meta-regression of the school effects on school characteristics."""
    m = ev.moderators
    if not len(m):
        return None
    blocks: list = [Paragraph(
        "Do school characteristics explain why the effect differs between schools? A meta-regression of the school "
        "effect sizes on the characteristics (categorical ones as indicators against their first level), weighting "
        "each school by its precision and the remaining between-school variance; tests "
        + ("with the Knapp–Hartung adjustment (t and F references)." if bool(m["knapp_hartung"].iloc[0]) else
           "with normal and χ² references.") + " Associations across schools, not effects of the characteristics.")]
    for s, g in m.groupby("subject", sort=False):
        r = g.iloc[0]
        frame = pd.DataFrame({"term": g["term"].astype(str), "estimate (SD)": g["estimate"].map(lambda v: fmt(v, 3, True)),
                              f"{_lvl(ev)} CI": [fmt_ci(a, b, 3, True) for a, b in zip(g["ci_low"], g["ci_high"])],
                              "p": g["pvalue"].map(_p_at(ev))})
        note = (f"Moderators together (QM): {r['qm_test']} = {r['qm']:.3f}, {p_clause(r['qm_pvalue'], run_alpha(ev))}; "
                f"k = {int(r['k'])} schools; residual τ² {r['tau2']:.4f} (without moderators "
                f"{r['tau2_without']:.4f}), R² = {100 * r['r2']:.0f}%.")
        blocks.append(Table(frame, title=title(str(s), "Context moderators"), note=note))
    return Section("moderators", "Context moderators", tuple(blocks))


# --------------------------------------------------------------------------------------
# Overall effect
# --------------------------------------------------------------------------------------
def overall(ev: "Evaluation", figures: Collection[str]) -> Section:
    """The sentence per subject, every analysis on the three scales, and the percentile chart."""
    rows = overall_rows(ev)
    lvl = _lvl(ev)
    blocks: list = [Paragraph(ev.sentence(s)) for s in ev.subjects]
    blocks.append(Table(
        pd.DataFrame({
            "subject": [r["subject"] for r in rows],
            "analysis": [r["analysis"] for r in rows],
            "raw (points)": [f"{r['raw']} ({r['raw_ci']})" for r in rows],
            "effect size (SD)": [f"{r['es']} ({r['es_ci']})" for r in rows],
            "percentile points": [f"{r['pp']} ({r['pp_ci']})" for r in rows],
            "p": [r["p"] for r in rows],
            "MDES, SD (pct pts)": [f"{r['mdes']} ({r['mdes_pp']})" for r in rows],
            "n PL / comparison": [f"{r['n_treated']} / {r['n_control']}" for r in rows],
            "clusters": [r["n_clusters"] for r in rows],
        }),
        bold=tuple(r["primary"] for r in rows),
        note=(
            f"Bold rows are the primary estimates; {lvl} confidence intervals in brackets. n PL / comparison: "
            "students in each group. Clusters: the units (schools, or students without a school column) the "
            "standard errors are clustered by, PL and comparison together; — where the standard error is not "
            "clustered. Effect size = "
            "ω·(adjusted difference)/SD with ω = 1 − 3/(4N − 9) (Hedges); SD used: "
            + "; ".join(f"{r['subject']}: {r['sd']}" for r in rows if r["primary"])
            + f". Percentile points = 100·Φ(Φ⁻¹(p/100) + g) − p from the "
            f"{percentiles._ordinal(next(iter(ev.effects.values())).baseline_percentile, exact=True)} percentile. "
            f"MDES: the smallest effect each analysis detects with 80% power at α = {run_alpha(ev):g}."
        ),
    ))
    resampling = resampling_table(ev)
    if resampling is not None:
        blocks.append(resampling)
    blocks.append(Bullets(tuple(f"{r['subject']}, {r['analysis']}: {r['method']}" for r in rows),
                          title="How each estimate was computed"))
    blocks += _figures(ev, figures, "percentiles", "How an effect size converts to percentile points from different "
                       "starting percentiles; the estimate and its confidence interval are marked.")
    return Section("overall", "Overall effect", tuple(blocks))


def resampling_table(ev: "Evaluation") -> Table | None:
    """The wild cluster bootstrap and randomization test of the ITT (``bootstrap.csv``,
    ``randomization.csv``) by subject, with method, draws, weights, seed and the Monte Carlo SE
    of p; ``None`` when neither was run."""
    ci = f"{_lvl(ev)} CI"
    rows = []
    for b in ev.bootstrap.itertuples() if len(ev.bootstrap) else ():
        exact = bool(b.enumerated)
        rows.append({
            "subject": b.subject, "method": f"wild cluster bootstrap-t, restricted ({int(b.n_clusters)} schools)",
            "draws": f"all {int(b.draws):,} weight patterns (exact)" if exact else f"{int(b.draws):,}",
            "weights": b.weights, "seed": "—" if exact else str(b.seed), "estimate": fmt(b.estimate, 4),
            "p": fmt(b.pvalue, 4), "Monte Carlo SE of p": "0 (exact)" if exact else fmt(b.pvalue_mc_se, 4),
            ci: fmt_ci(b.ci_low, b.ci_high, 4),
        })
    for r in ev.randomization.itertuples() if len(ev.randomization) else ():
        exact = bool(r.exact)
        rows.append({
            "subject": r.subject,
            "method": f"randomization test, {r.alternative}" + (" (covariate-adjusted)" if r.covariate_adjusted else ""),
            "draws": (f"all {int(r.n_assignments):,} assignments (exact)" if exact
                      else f"{int(r.n_draws):,} of {float(r.n_assignments):.3g} assignments"),
            "weights": "—", "seed": "—" if exact else str(r.seed), "estimate": fmt(r.statistic, 4),
            "p": fmt(r.pvalue, 4), "Monte Carlo SE of p": "0 (exact)" if exact else fmt(r.mc_se, 4), ci: "—",
        })
    if not rows:
        return None
    order = {s: i for i, s in enumerate(ev.subjects)}
    frame = pd.DataFrame(rows).sort_values("subject", key=lambda c: c.map(order), kind="stable")
    return Table(frame.reset_index(drop=True), title="Resampling checks of the overall effect", note=(
        "The intent-to-treat effect re-tested without the model's standard error. Wild cluster bootstrap: the "
        "restricted bootstrap-t with schools as clusters (null imposed); estimate = the ITT in points, p and the CI "
        "from inverting the test; when the draws cover every weight pattern (2^G Rademacher, 6^G Webb for G "
        "schools) each is used once (exact). "
        "Randomization test: the difference in (school) means recomputed over re-randomizations of the design "
        "(same blocks and clusters); estimate = that observed difference. Monte Carlo SE: the simulation error of p "
        "from the finite number of draws, which the seed reproduces. Full tables: bootstrap.csv, randomization.csv."))


# --------------------------------------------------------------------------------------
# Sensitivity to unobserved confounding
# --------------------------------------------------------------------------------------
def _gamma_text(r, pvalue: float, alpha: float) -> str:
    """The fragility table's Γ at which the rank test's p bound reaches α. When the estimate itself
    (its regression p, ``pvalue``) is not significant at ``alpha``, no Γ is offered as the point
    where significance is lost: the rank test treats matched sets as independent, so it ignores
    school clustering and can be significant where the estimate is not; the row says so, with the
    rank test's p at Γ = 1 and its Γ."""
    if r is None:
        return "— (no matched sets)"
    if not pvalue < alpha:
        at1 = r.pvalue_bound[np.isclose(r.table["gamma"], 1.0)]
        rank = ("" if r.gamma_alpha <= 1 else
                "; the rank test, which ignores school clustering, "
                + (f"has p {fmt_p(at1.iloc[0], alpha)} at Γ = 1 and " if len(at1) else "")
                + f"reaches {alpha:g} at Γ = {'over 10,000' if math.isinf(r.gamma_alpha) else fmt(r.gamma_alpha, 2)}")
        return f"— (the estimate is not significant even without hidden bias: {p_clause(pvalue, alpha)}{rank})"
    if r.gamma_alpha <= 1:
        return "1 (not significant even without hidden bias)"
    return "over 10,000" if r.gamma_alpha == float("inf") else fmt(r.gamma_alpha, 2)


def fragility(ev: "Evaluation", figures: Collection[str]) -> Section | None:
    """How fragile is this result? The plain sentence per subject, robustness values, E-values,
    Rosenbaum's Γ, the placebo outcome and the contour plot (matched designs with the
    sensitivity analysis; pleval.sensitivity)."""
    subs = [(s, ev.details.get(s, {}).get("sensitivity")) for s in ev.subjects]
    subs = [(s, ss) for s, ss in subs if ss is not None]
    if not subs:
        return None
    alpha = run_alpha(ev)
    fixed = ev.options.get("rosenbaum_direction") or ""  # a direction fixed in advance: one-sided
    sides = f"one-sided '{fixed}'" if fixed else "two-sided"
    blocks: list = [Paragraph(f"{'All students' if s == 'all' else s.capitalize()}. {ss.sentence()}") for s, ss in subs]
    fields = {
        "robustness value: share of both residual variances that brings the estimate to zero":
            [f"{fmt(100 * ss.ovb.rv_q, 1, edges=(0,))}%" for _, ss in subs],
        f"… that makes it not significant (α = {alpha:g})": [f"{fmt(100 * ss.ovb.rv_qa, 1, edges=(0,))}%" for _, ss in subs],
        "partial R² of PL with the outcome": [f"{fmt(100 * ss.ovb.r2yd_x, 2, edges=(0,))}%" for _, ss in subs],
        "multiple of the pretest that brings it to zero": [
            "—" if not ss.benchmark else "none possible" if math.isinf(ss.multiple_to_zero)
            else "over 100" if ss.multiple_to_zero > 100 else fmt(ss.multiple_to_zero, 1, edges=(0,))
            for _, ss in subs],
        "E-value: estimate / CI limit": [f"{fmt(ss.evalue.evalue, 2)} / {fmt(ss.evalue.evalue_ci, 2)}" for _, ss in subs],
        f"Rosenbaum Γ at which the {sides} p bound reaches {alpha:g}": [
            _gamma_text(ss.rosenbaum, ss.effect.raw.pvalue, alpha) for _, ss in subs],
    }
    if any(ss.placebo is not None for _, ss in subs):
        fields["placebo outcome: effect size (CI), should be 0"] = [
            "—" if ss.placebo is None else
            f"{ss.placebo_outcome}: {fmt(ss.placebo.effect_size.estimate, 3)} "
            f"({fmt_ci(ss.placebo.effect_size.ci_low, ss.placebo.effect_size.ci_high, 3)})"
            for _, ss in subs]
    table = pd.DataFrame({"": list(fields), **{str(s): [v[i] for v in fields.values()] for i, (s, _) in enumerate(subs)}})
    blocks.append(Table(table, note=(
        "Robustness values and the pretest multiple: Cinelli & Hazlett (2020), on the matched regression; "
        "significance uses its cluster-robust SE (scaled by the same design effect after adjustment). Because "
        "matching balances the pretest, a confounder 'as strong as the pretest' is weakly related to PL "
        "enrolment in the matched sample, so the multiple can be large. E-value: the risk-ratio association "
        "with both PL and the outcome needed to explain the effect away, via RR ≈ exp(0.91·d) (VanderWeele & "
        "Ding 2017). Γ: how much two matched students' odds of PL may differ before the "
        + (f"one-sided p-value bound in the direction fixed in advance ('{fixed}') " if fixed else
           "two-sided p-value bound (twice the one-sided bound in the estimate's direction) ")
        + "reaches α (Rosenbaum 2002; matched sets treated as independent, so school clustering is not counted). "
        "Every number, with benchmark bounds for each covariate, is in sensitivity.csv."
    )))
    blocks += _figures(ev, figures, "sensitivity", "Adjusted estimate and t-value for a hidden confounder of any "
                       "strength (partial R² with PL enrolment across, with the outcome up); dashed red: where the "
                       "estimate reaches zero / loses significance; diamonds: confounders 1, 2, 3 times as strong as "
                       "the pretest, and as strong as each other covariate.")
    return Section("sensitivity", "How fragile is this result?", tuple(blocks))


# --------------------------------------------------------------------------------------
# Schools
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableContext:
    """What a school-table cell may need besides the frame: the CI level and the α of the tests."""

    level: float = 0.95
    alpha: float = 0.05
    lower_is_better: bool = False
    """The primary outcome is better lower: P(effect < 0) is then the chance of a favourable effect."""


OWN_ESTIMATE, CALIBRATED, SHRUNKEN = "own", "placebo-calibrated", "shrunken"
"""What a school-table column shows: the school's own estimate, or an estimate placebo-calibrated
or shrunken. The table has two groups of columns, the own estimate and the others (a table
too wide for the page is printed in parts along them, each keyed by the school;
:func:`school_column_groups`)."""


@dataclass(frozen=True)
class SchoolColumn:
    """One column of the school table: its ``label`` (``{lvl}`` and ``{alpha}`` are filled in),
    the school-frame columns it ``needs``, ``cell(frame, context) -> Series`` of formatted
    strings, ``note``, the sentence under the table that explains it (empty when the label
    says it all), and the ``group`` of columns it belongs to (:data:`OWN_ESTIMATE`,
    :data:`CALIBRATED` or :data:`SHRUNKEN`)."""

    label: str
    needs: tuple[str, ...]
    cell: Callable[[pd.DataFrame, TableContext], pd.Series]
    note: str = ""
    group: str = OWN_ESTIMATE


def _num(col: str, nd: int, signed: bool = True) -> Callable[[pd.DataFrame, TableContext], pd.Series]:
    return lambda f, c: f[col].map(lambda v: fmt(v, nd, signed))


def _p(col: str) -> Callable[[pd.DataFrame, TableContext], pd.Series]:
    return lambda f, c: f[col].map(lambda p: fmt_p(p, c.alpha))


def _p_at(ev: "Evaluation") -> Callable[[float], str]:
    """p as :func:`fmt_p` prints it beside the run's α."""
    return lambda p: fmt_p(p, run_alpha(ev))


def _range(lo: str, hi: str, nd: int) -> Callable[[pd.DataFrame, TableContext], pd.Series]:
    return lambda f, c: pd.Series([fmt_ci(a, b, nd, True) for a, b in zip(f[lo], f[hi])], index=f.index)


SIGNIFICANCE_TESTS: tuple[tuple[str, str], ...] = (
    ("raw", "pvalue"),
    ("adjusted", "p_adjusted"),
    ("placebo-calibrated", "p_calibrated_adjusted"),
)
"""The tests the significance column reports, in order: (name, p-value column of the school
frame). A test is reported when its column is there."""


def _significance(f: pd.DataFrame, c: TableContext) -> pd.Series:
    tests = [(name, f[col].to_numpy(dtype=float)) for name, col in SIGNIFICANCE_TESTS if col in f.columns]
    es = f["effect_size"].to_numpy(dtype=float)
    out = []
    for i in range(len(f)):
        passed = [name for name, p in tests if p[i] < c.alpha]
        if not np.isfinite(es[i]) or not np.isfinite(tests[0][1][i]):
            out.append("—")
        elif not passed:
            out.append("no")
        else:
            out.append(("above zero: " if es[i] > 0 else "below zero: ") + ", ".join(passed))
    return pd.Series(out, index=f.index)


SCHOOL_COLUMNS: tuple[SchoolColumn, ...] = (
    SchoolColumn("school", ("school",), lambda f, c: f["school"].astype(str)),
    SchoolColumn("n PL", ("n_treated",), lambda f, c: f["n_treated"].map(fmt_int),
                 "n PL / n comparison: the school's PL students and their comparison students."),
    SchoolColumn("n comparison", ("n_comparison",), lambda f, c: f["n_comparison"].map(fmt_int)),
    SchoolColumn("effect size", ("effect_size",), _num("effect_size", 3)),
    SchoolColumn("{lvl} CI", ("es_ci_low", "es_ci_high"), _range("es_ci_low", "es_ci_high", 3)),
    SchoolColumn("percentile points", ("percentile_points",), _num("percentile_points", 1)),
    SchoolColumn("p", ("pvalue",), _p("pvalue")),
    SchoolColumn("adjusted p", ("p_adjusted",), _p("p_adjusted"),
                 "adjusted p: adjusted for testing every school at once ({adjustment})."),
    SchoolColumn("significant (α = {alpha:g})", ("effect_size", "pvalue"), _significance,
                 "significant: which tests put the school's effect above or below zero at α = {alpha:g}: raw p, "
                 "adjusted p, and (when placebo schools were analysed) the placebo-calibrated p adjusted for "
                 "multiplicity; \"no\" when none does."),
    SchoolColumn("MDES (SD)", ("mdes_sd",), _num("mdes_sd", 3, False),
                 "MDES: the smallest true effect the school's own test would detect with 80% power at α = {alpha:g}."),
    SchoolColumn("calibrated {lvl} CI", ("ci_low_calibrated", "ci_high_calibrated"),
                 _range("ci_low_calibrated", "ci_high_calibrated", 3),
                 "calibrated: allowing for the spread of placebo schools, i.e. for the school's own difference "
                 "from its comparisons that student-level standard errors do not cover.", CALIBRATED),
    SchoolColumn("calibrated p", ("p_calibrated",), _p("p_calibrated"), group=CALIBRATED),
    SchoolColumn("shrunken ES", ("shrunk_es",), _num("shrunk_es", 3),
                 "shrunken: empirical-Bayes estimate, pulled toward the pooled effect in proportion to the school's "
                 "noise (with placebo schools, the between-school variance is at least their spread). Its interval: "
                 "with placebo schools, the equal-tailed quantiles of the school's posterior with the uncertainty in τ "
                 "integrated out; without them, the estimate ± z × posterior SD, which allows for it (Prasad–Rao).",
                 SHRUNKEN),
    SchoolColumn("shrunken {lvl} interval", ("shrunk_es_ci_low", "shrunk_es_ci_high"),
                 _range("shrunk_es_ci_low", "shrunk_es_ci_high", 3), group=SHRUNKEN),
    SchoolColumn("shrunken pct pts", ("shrunk_pp",), _num("shrunk_pp", 1), group=SHRUNKEN),
    SchoolColumn("P(effect < 0)", ("prob_negative",), _num("prob_negative", 2, False),
                 "P(effect < 0): {harm}the posterior probability that the school's effect is below zero (in a "
                 "matched comparison or a cluster-randomized trial, the program plus the school's circumstances){favourable}.",
                 SHRUNKEN),
    SchoolColumn("P(program effect < 0)", ("prob_negative_program",), _num("prob_negative_program", 2, False),
                 "P(program effect < 0): the same for the program's own effect, the school's circumstances counted "
                 "as noise (placebo schools).", SHRUNKEN),
    SchoolColumn("note", ("note",), lambda f, c: f["note"].fillna("").astype(str), group=SHRUNKEN),
)
"""The printable columns of the school table, in order, each labelled and explained once."""


def _present(frame: pd.DataFrame) -> list[SchoolColumn]:
    """The columns whose sources ``frame`` has, with a value somewhere (a single PL school has
    no shrunken columns)."""
    return [c for c in SCHOOL_COLUMNS if all(n in frame.columns and frame[n].notna().any() for n in c.needs)]


def school_table(schools: pd.DataFrame, context: TableContext = TableContext()) -> pd.DataFrame:
    """The school table to print: one row per school (largest effect first), the
    :data:`SCHOOL_COLUMNS` whose source columns ``schools`` has."""
    f = schools.sort_values("effect_size", ascending=False, na_position="last") if "effect_size" in schools else schools
    lvl = f"{context.level:.0%}"
    cols = {c.label.format(lvl=lvl, alpha=context.alpha): c.cell(f, context) for c in _present(f)}
    return pd.DataFrame({k: v for k, v in cols.items() if (v != "").any()}).reset_index(drop=True)


def school_column_groups(table: pd.DataFrame, context: TableContext = TableContext()) -> tuple[tuple[str, str], ...]:
    """The groups of the columns of ``table`` (a :func:`school_table`): (name, label of its
    first column) of each group present, in order (:attr:`Table.groups`)."""
    lvl = f"{context.level:.0%}"
    group = {c.label.format(lvl=lvl, alpha=context.alpha): c.group for c in SCHOOL_COLUMNS}
    labels = list(table.columns[1:])  # the first, the school, keys every part
    own = [label for label in labels if group[label] == OWN_ESTIMATE]
    others = [label for label in labels if group[label] != OWN_ESTIMATE]
    kinds = " and ".join(dict.fromkeys(group[label] for label in others))
    return tuple((name, part[0]) for name, part in (("the school's own estimate", own), (f"{kinds} estimates", others))
                 if part)


def school_table_note(schools: pd.DataFrame, context: TableContext, adjustment: str) -> str:
    """The explanations of the columns :func:`school_table` prints for ``schools``."""
    lower = context.lower_is_better
    words = dict(alpha=context.alpha, adjustment=adjustment, harm="" if lower else "risk of harm — ",
                 favourable="; the outcome is better lower, so this is the chance of a favourable effect and the risk "
                            "of harm is 1 − P(effect < 0)" if lower else "")
    return " ".join(c.note.format(**words) for c in _present(schools) if c.note)


def schools(ev: "Evaluation", figures: Collection[str]) -> Section:
    """The forest plots and the school tables."""
    ctx = TableContext(float(ev.options.get("level", 0.95)), run_alpha(ev), lower_is_better(ev))
    adjustment = ADJUSTMENT_NAMES.get(str(ev.options.get("adjust")), str(ev.options.get("adjust")))

    def table(f: pd.DataFrame, subject: str) -> Table:
        t = school_table(f, ctx)
        return Table(t, title=title(subject, "School table"), note=school_table_note(f, ctx, adjustment),
                     groups=school_column_groups(t, ctx))

    tables = [table(f, s) for s in ev.subjects if len(f := subject_rows(ev.schools, s))]
    if not tables:
        return Section("schools", "Schools", (Paragraph("No school-by-school effects for this design."),))
    text = (
        ("One estimate per school (its students assigned to PL against its own control students)"
         if randomized_in_schools(ev) else "One estimate per PL school")
        + ", in effect-size units (the same SD as the overall effect). Colours mark schools "
        f"significantly above (blue) or below (red) zero after the {adjustment} adjustment; black dots are "
        "empirical-Bayes (shrunken) estimates, which pull small, noisy schools toward the pooled mean."
    )
    if len(ev.placebo):
        text += (" The gold row and dashed lines show placebo schools: comparison schools analysed as if they were "
                 "PL — the spread to expect with no program at all.")
    forest = ("School effects (squares: each school's own estimate with its CI; dots: shrunken estimates). Diamond: "
              "pooled random-effects estimate; shaded band: prediction interval for a new school. Top axis: "
              "percentile points.")
    return Section("schools", "Schools", (Paragraph(text), *_figures(ev, figures, "forest", forest), *tables))


# --------------------------------------------------------------------------------------
# Heterogeneity
# --------------------------------------------------------------------------------------
def heterogeneity(ev: "Evaluation", figures: Collection[str]) -> Section:
    """How much schools differ: the findings in words, the meta-analysis table and the
    distribution of school effects."""
    rows = het_rows(ev)
    if not rows:
        return Section("heterogeneity", "Heterogeneity: how much do schools differ?",
                       (Paragraph("No heterogeneity analysis for this design."),))
    lvl = _lvl(ev)
    fields = [
        ("PL schools with an estimate", "k"), ("pooled effect size", "pooled"), (f"{lvl} CI", "pooled_ci"),
        ("τ (SD of true school effects)", "tau"), (f"τ {lvl} CI (Q-profile)", "tau_ci"), ("I²", "i2"),
        ("Q (test of no heterogeneity)", "q"), ("prediction interval, effect size", "pi"),
        ("prediction interval, percentile points", "pi_pp"),
        ("significantly positive: raw / adjusted", "pos"), ("significantly negative: raw / adjusted", "neg"),
        ("expected by chance (raw)", "expected"), ("τ of placebo schools (k)", "placebo"),
        ("share of τ² beyond the placebo level", "excess"),
    ]
    table = pd.DataFrame({"": [label for label, _ in fields],
                          **{str(h["subject"]): [h[key] for _, key in fields] for h in rows}})
    blocks: list = [Bullets(tuple(h["parts"]), title=str(h["subject"])) for h in rows]
    method = next((h["method"] for h in rows if h["method"]), "")
    note = [f"Random-effects meta-analysis of the school effect sizes ({method} estimate of τ²; Q-profile CI for τ); "
            f"{_pi_note(rows)}. Adjusted counts use {rows[0]['adjustment']}."] if method else []
    if any(h["k"] == "1" for h in rows):
        note.append("— marks a figure that needs at least 2 PL schools (one PL school here).")
    blocks.append(Table(table, note=" ".join(note)))
    blocks += _figures(ev, figures, "distribution", "Histogram of school estimates, their shrunken values, the "
                       "placebo schools and the estimated distribution of true school effects N(μ, τ²).")
    return Section("heterogeneity", "Heterogeneity: how much do schools differ?", tuple(blocks))


def _pi_note(rows: list[dict]) -> str:
    """How the heterogeneity table's prediction intervals were formed, subject by subject where
    they differ: with placebo schools from τ²_total (at least the placebo schools' τ², its
    uncertainty integrated out), else μ̂ ± t(k−2)·√(τ̂² + SE²). Before 2026-12-04 the note gave
    the second formula for intervals of the first kind."""
    pl_only = "μ̂ ± t(k−2)·√(τ̂² + SE²) (Higgins, Thompson & Spiegelhalter 2009)"
    total = ("from the between-school variance τ²_total, estimated under the order restriction τ²_total ≥ "
             "τ²_placebo (the placebo schools' spread), the uncertainty of both variances integrated out; the PL "
             "schools' own interval " + pl_only
             + " is pi_low_pl_only / pi_high_pl_only in heterogeneity.csv")
    kinds = {bool(h["pi_total"]) for h in rows}
    if len(kinds) == 1:
        return "prediction interval " + (total if kinds.pop() else pl_only)
    names = {kind: ", ".join(str(h["subject"]) for h in rows if bool(h["pi_total"]) == kind) for kind in (True, False)}
    return f"prediction interval of {names[True]} {total}; of {names[False]} {pl_only}"


# --------------------------------------------------------------------------------------
# Caveats, provenance
# --------------------------------------------------------------------------------------
def caveat_list(ev: "Evaluation") -> list[str]:
    """The caveats that apply to this evaluation."""
    out = [caveat_percentile(ev.options.get("baseline_percentile", 50.0)),
           CAVEAT_MATCHED if ev.design == "matched" else CAVEAT_RCT]
    if len(ev.schools):
        out += [CAVEAT_SCHOOL, caveat_multiplicity(ev.options.get("alpha", 0.05))]
    sd_kinds = {e.sd_kind for e in ev.effects.values()}
    out.append(
        "Effect sizes divide by the " + "; ".join(sorted(sd_kinds)) + " of the outcome in this sample. A different "
        "SD (for example national norms, or the SD within one grade) gives different effect sizes and percentile "
        "points for the same raw difference; the raw difference in points is reported beside them."
    )
    return out


def caveats(ev: "Evaluation", figures: Collection[str]) -> Section:
    """The caveats and every warning raised during the analysis."""
    blocks: list = [Bullets(tuple(caveat_list(ev)))]
    if ev.warnings:
        blocks.append(Bullets(tuple(ev.warnings), title="Warnings raised during the analysis", style="warn"))
    return Section("caveats", "Caveats", tuple(blocks))


def provenance(ev: "Evaluation", figures: Collection[str]) -> Section:
    """Every option, the columns, the input's SHA-256 and the package versions."""
    shown = {"subject": "(every subject)", "vcov": "(design default)"}
    rows = [
        (k, shown.get(k, "") if v in (None, "") else (v if isinstance(v, str) else json.dumps(v, default=str)))
        for k, v in ev.options.items()
    ]
    rows += [(f"column: {role}", ", ".join(cols)) for role, cols in ev.columns.roles().items()]
    prov = ev.provenance
    inp = prov.get("input", {})
    rows += [
        ("input", str(inp.get("path") or "(a DataFrame)")),
        ("input SHA-256", str(inp.get("sha256", ""))),
    ]
    pool = prov.get("pool")
    if pool:  # a comparison pool given apart (pleval.pool)
        where = pool.get("path") or pool.get("description", "")
        rows += [("comparison pool", f"{where}" + (f", table {pool['table']}" if pool.get("table") else "")
                  + f" ({pool.get('engine')} engine; {int(pool.get('eligible_rows', 0)):,} eligible rows)"),
                 ("comparison pool fingerprint", f"{pool.get('fingerprint', {}).get('kind', '')} "
                                                 f"{pool.get('fingerprint', {}).get('sha256', '')}")]
    rows += [
        ("pleval / python", f"{prov.get('pleval_version', '')} / {prov.get('python', '')}"),
        ("packages", ", ".join(f"{k} {v}" for k, v in prov.get("packages", {}).items())),
    ]
    return Section("provenance", "Provenance and options", (
        Table(pd.DataFrame(rows, columns=["setting", "value"])),
        Paragraph("To repeat this run exactly: pleval estimate --config run.toml (the file run.toml in the outputs "
                  "folder holds every option; its paths are relative to that folder).", style="note"),
    ))


SECTIONS: tuple[Builder, ...] = (glance, data_checks, data_and_design, balance, evidence_standards, overall, outcomes, fragility,
                                 subgroups, schools, heterogeneity, moderators, caveats, provenance)
"""The section builders, in the order the report prints them."""


def build(ev: "Evaluation", figures: Collection[str] = ()) -> list[Section]:
    """The report's sections for ``ev`` (those that apply), given the names of its figures."""
    return [s for b in SECTIONS if (s := b(ev, figures)) is not None]


def source_name(ev: "Evaluation") -> str:
    """The input file's name, or ``(a DataFrame)``."""
    path = ev.provenance.get("input", {}).get("path")
    return Path(path).name if path else "(a DataFrame)"


def subtitle(ev: "Evaluation") -> str:
    """The line under the report's title: design, input and its SHA-256, pleval version, time."""
    prov = ev.provenance
    sha = str(prov.get("input", {}).get("sha256", ""))
    design = "Matched comparison" if ev.design == "matched" else "Randomized trial"
    return (f"{design} · input {source_name(ev)}" + (f" (SHA-256 {sha[:12]}…)" if sha else "")
            + f" · pleval {prov.get('pleval_version', '')} · {prov.get('created_utc', '')}")


__all__ = ["SECTIONS", "build", "school_table", "school_column_groups", "SCHOOL_COLUMNS", "SchoolColumn", "TableContext", "SIGNIFICANCE_TESTS", "caveat_list", "subtitle", "source_name", "caveat_percentile",
           "CAVEAT_MATCHED", "CAVEAT_SCHOOL", "caveat_multiplicity", "CAVEAT_RCT"]
