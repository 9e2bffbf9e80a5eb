"""``report.html`` of ``pleval monitor``: the sections of a
:class:`~pleval.monitor.Monitoring` (effects by year and by years of exposure, the trend test,
the staggered-adoption event study, diverging schools, equity bands over time, provenance),
rendered by the template of the estimate report (:func:`pleval.report.to_html.render_sections`).
Data flow one way: this module reads a Monitoring; :mod:`pleval.monitor` never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Mapping

import pandas as pd

from ..findings import ADJUSTMENT_NAMES, fmt, fmt_ci, fmt_int, fmt_p, p_clause, slug, title
from .blocks import Bullets, Figure, Paragraph, Section, Table
from .sections import CAVEAT_MATCHED, CAVEAT_SCHOOL, caveat_multiplicity, caveat_percentile
from .to_html import render_sections

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import Monitoring


def _lvl(m: "Monitoring") -> str:
    return f"{m.over_time.level:.0%}"


def _alpha(m: "Monitoring") -> float:
    """The run's α (the schools' divergence flag's threshold)."""
    return float(m.provenance.get("alpha", 0.05))


def _p(m: "Monitoring"):
    """p as :func:`fmt_p` prints it beside the run's CIs: with the digits that show its side of
    1 − level (0.0496 and 0.0504, not 0.050, beside 95% CIs)."""
    beside = 1.0 - m.over_time.level
    return lambda p: fmt_p(p, beside)


def _flag_p(m: "Monitoring"):
    """p as :func:`fmt_p` prints it beside the schools' divergence flag, at the run's α (0.0996
    and 0.1004, not 0.100, at α = 0.1)."""
    alpha = _alpha(m)
    return lambda p: fmt_p(p, alpha)


def _effects_table(f: pd.DataFrame, key: str, label: str, lvl: str, p_text) -> pd.DataFrame:
    """Rows of ``effects_by_year.csv`` / ``effects_by_exposure.csv`` (or the equity table) as printed,
    p by ``p_text``."""
    out = {label: f[key].astype(str)}
    if "program" in f:
        out["program"] = f["program"].map({True: "yes", False: "no (pre-program)"})
    if "band" in f:
        out["band"] = f["band"].astype(str)
    if "n_treated" in f:
        out["n PL"] = f["n_treated"].map(fmt_int)
    if "n_comparison" in f:
        out["n comparison"] = f["n_comparison"].map(fmt_int)
    out.update({
        "effect size": f["es"].map(lambda v: fmt(v, 3, True)),
        f"{lvl} CI": [fmt_ci(a, b, 3, True) for a, b in zip(f["es_ci_low"], f["es_ci_high"])],
        "points": f["estimate"].map(lambda v: fmt(v, 2, True)),
        "p": f["pvalue"].map(p_text),
    })
    if "pp" in f:
        out["percentile points"] = f["pp"].map(lambda v: fmt(v, 1, True))
    return pd.DataFrame(out).reset_index(drop=True)


def _figure(name: str, caption: str, figures: Collection[str]) -> list[Figure]:
    return [Figure(name, caption)] if name in figures else []


_EFFECTS_NOTE = (
    "Effect size: the matched PL − comparison difference in SD units (the period's pooled within-group SD, "
    "within grade, Hedges' ω); points: the same on the outcome's scale; CIs and p-values are cluster-robust by each "
    "student's first school (CR2; Satterthwaite df under a school random-effect working model)."
)


def by_year(m: "Monitoring", figures: Collection[str]) -> Section:
    """Effects by period: one table per subject and the figure."""
    ot, lvl = m.over_time, _lvl(m)
    tables = [Table(_effects_table(ot.by_year[ot.by_year["subject"] == s], "time", str(ot.columns.time), lvl, _p(m)),
                    title=title(s, f"Effects by {ot.columns.time}"), note=_EFFECTS_NOTE + " Pre-program periods "
                    "estimate a placebo difference, which should be near zero.") for s in ot.subjects]
    return Section("by-year", f"Effects by {ot.columns.time}", (
        *_figure("effects_by_year", f"Effect size by {ot.columns.time} with {lvl} CIs, per subject.", figures),
        *tables))


def by_exposure(m: "Monitoring", figures: Collection[str]) -> Section:
    """Effects by years of exposure (0 = PL students before their school adopted)."""
    ot, lvl = m.over_time, _lvl(m)
    tables = [Table(_effects_table(ot.by_exposure[ot.by_exposure["subject"] == s], "exposure", "years of exposure",
                                   lvl, _p(m)), title=title(s, "Effects by years of exposure"),
                    note=_EFFECTS_NOTE + " Exposure 0: PL students before their school adopted (a placebo).")
              for s in ot.subjects]
    return Section("by-exposure", "Effects by years of exposure", (
        *_figure("effects_by_exposure", f"Effect size by years of exposure with {lvl} CIs, per subject.", figures),
        *tables))


def trend(m: "Monitoring", figures: Collection[str]) -> Section:
    """The trend test: the slope of the effects per unit of the time column and per year of exposure."""
    t, lvl = m.over_time.trend, _lvl(m)
    table = pd.DataFrame({
        "subject": t["subject"].astype(str), "slope over": t["per"].astype(str), "n periods": t["n_points"].map(fmt_int),
        "slope, effect size": t["es"].map(lambda v: fmt(v, 3, True)),
        f"{lvl} CI": [fmt_ci(a, b, 3, True) for a, b in zip(t["es_ci_low"], t["es_ci_high"])],
        "slope, points": t["estimate"].map(lambda v: fmt(v, 2, True)),
        "p": t["pvalue"].map(_p(m)),
    })
    return Section("trend", "Is the effect growing? The trend test", (
        Paragraph("The least-squares slope of the effects over the program periods (and over years of exposure ≥ 1), "
                  "with its CR2 standard error; H₀: the effect is flat. A large p-value is not evidence of a flat "
                  "effect: with few schools the trend is hard to see."),
        Table(table, note="The slope is per unit of what it is over: per year when the time column holds years "
                          "(per period when it holds terms), or per year of exposure. n periods: the number of "
                          "periods (or years of exposure) the slope is fitted to."),
    ))


def staggered(m: "Monitoring", figures: Collection[str]) -> Section | None:
    """The staggered-adoption event study with its pre-trend test (subjects where it was run)."""
    if not m.staggered:
        return None
    from ..monitor.staggered import pretest_text

    lvl, p_text, blocks = _lvl(m), _p(m), []
    for s, gt in m.staggered.items():
        pre, es = gt.pretest, gt.event_study().table
        comp = "not-yet-adopting" if gt.control == "notyet" else "never-adopting"
        overall = gt.aggregate("group").overall
        lines = [f"Overall (cohort-weighted): {fmt(overall.estimate, 2, True)} points ({lvl} CI "
                 f"{fmt_ci(overall.ci_low, overall.ci_high, 2, True)}; {p_clause(overall.pvalue, 1.0 - m.over_time.level)}); "
                 f"comparisons: {comp} schools."]
        lines.append(f"Pre-trend {pretest_text(pre, p_text=p_text)}."
                     " A small p-value is evidence against parallel trends; a large one is not proof of them."
                     if pre["df"] else "Pre-trend test: no pre-adoption cells in the data.")
        blocks.append(Bullets(tuple(lines) + tuple(gt.notes), title=str(s)))
        blocks += _figure(f"event_study_{slug(s)}", f"{s}: event study (school means, points) with {lvl} CIs; negative "
                          "periods are before adoption.", figures)
        blocks.append(Table(pd.DataFrame({
            "periods since adoption": es["event_time"].map(lambda v: f"{int(v):+d}"),
            "points": es["estimate"].map(lambda v: fmt(v, 2, True)),
            f"{lvl} CI": [fmt_ci(a, b, 2, True) for a, b in zip(es["ci_low"], es["ci_high"])],
            "p": es["pvalue"].map(p_text),
        }), title=title(s, "Event study"), note="Callaway & Sant'Anna (2021) group-time effects on school × period "
            "means of the regression-adjusted outcome, aggregated by periods since adoption; schools are the units."))
    return Section("staggered", "Staggered adoption: event study and pre-trends", (
        Paragraph("Schools adopted in different periods: each adoption cohort is compared with schools that had not "
                  "(yet) adopted, never with earlier adopters."), *blocks))


def schools(m: "Monitoring", figures: Collection[str]) -> Section:
    """School trajectories: which PL schools' slopes diverge from the pooled trend."""
    adjustment = ADJUSTMENT_NAMES["bh"]
    alpha, p_text = _alpha(m), _flag_p(m)
    blocks: list = [Paragraph(
        "One slope per PL school: how its effect changed over the program periods (per year when the time column "
        "holds years, as the pooled trend), in effect-size units, beside the "
        "pooled trend. A school diverges (faster or slower) when its slope differs from the pooled trend beyond the "
        f"spread of comparison (placebo) schools' slopes, after the {adjustment} adjustment at α = {alpha:g}.")]
    for s, st in m.schools.items():
        pl = st.slopes[st.slopes["kind"] == "PL"].sort_values("slope", ascending=False)
        blocks.append(Paragraph(f"{s}: {st.n_diverging} of {len(pl)} PL schools diverge from the pooled trend "
                                f"({fmt(st.pooled_trend / st.sd, 3, True)} SD per {st.per})."))
        blocks += _figure(f"school_trajectories_{slug(s)}", f"{s}: school effects by period against the pooled trend.",
                          figures)
        blocks.append(Table(pd.DataFrame({
            "school": pl["school"].astype(str), "periods": pl["n_periods"].map(fmt_int),
            f"slope (SD per {st.per})": pl["slope_es"].map(lambda v: fmt(v, 3, True)),
            "SE": pl["se_es"].map(lambda v: fmt(v, 3)),
            "shrunken ES": pl["slope_shrunk_es"].map(lambda v: fmt(v, 3, True)),
            "p": pl["pvalue"].map(p_text), "adjusted p": pl["p_adjusted"].map(p_text),
            f"diverges (α = {alpha:g})": pl["direction"].replace("", "no"),
        }), title=title(s, "School trajectories"), note=(
            f"adjusted p: adjusted for testing every school at once ({adjustment}). shrunken: empirical-Bayes "
            "estimate, pulled toward the pooled effect in proportion to the school's noise. p tests the slope "
            "against the pooled trend with the placebo schools' spread added to its SE, that spread's "
            "uncertainty (it rests on a few placebo schools) integrated out.")))
    if not m.schools:
        blocks.append(Paragraph("No school trajectories (see the notes under Caveats)."))
    return Section("schools", "Schools whose trajectories diverge", (*blocks, Bullets((CAVEAT_SCHOOL,
                                                                                        caveat_multiplicity(alpha)))))


def equity(m: "Monitoring", figures: Collection[str]) -> Section | None:
    """Effects by baseline band (thirds of the pretest) over time, with the gap."""
    eq, lvl = m.over_time.equity, _lvl(m)
    if not len(eq):
        return None
    blocks: list = []
    within = "grade × subject" if m.over_time.columns.grade else "subject (no grade column)"
    for s in m.over_time.subjects:
        f = eq[eq["subject"] == s]
        blocks += _figure(f"equity_over_time_{slug(s)}", f"{s}: effect size by baseline band over time, {lvl} CIs.", figures)
        blocks.append(Table(_effects_table(f, "time", str(m.over_time.columns.time), lvl, _p(m)),
                            title=title(s, "Equity bands over time"), note=(
                                f"Bands: thirds of the baseline pretest within {within}; the gap (top − bottom) is a "
                                "contrast with its CR2 SE (no percentile points).")))
    return Section("equity", "Equity bands over time", tuple(blocks))


def caveats(m: "Monitoring", figures: Collection[str]) -> Section:
    """The caveats and every note raised during the analysis."""
    blocks: list = [Bullets((caveat_percentile(m.provenance.get("baseline_percentile", 50.0)), CAVEAT_MATCHED))]
    if m.notes:
        blocks.append(Bullets(tuple(m.notes), title="Notes raised during the analysis", style="warn"))
    return Section("caveats", "Caveats", tuple(blocks))


def provenance(m: "Monitoring", figures: Collection[str]) -> Section:
    """Every option, the columns, the pleval version and the input's SHA-256."""
    p = dict(m.provenance)
    cols = p.pop("columns", {})
    rows = [(k, "" if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))) for k, v in p.items()
            if k not in ("input_sha256", "pleval")]
    rows += [(f"column: {role}", ", ".join(c)) for role, c in cols.items()]
    rows += [("input SHA-256", str(p.get("input_sha256", ""))), ("pleval", str(p.get("pleval", "")))]
    return Section("provenance", "Provenance and options", (
        Table(pd.DataFrame(rows, columns=["setting", "value"])),
        Paragraph("provenance.json in the outputs folder holds the same.", style="note")))


SECTIONS = (by_year, by_exposure, trend, staggered, schools, equity, caveats, provenance)
"""The section builders of the monitoring report, in print order."""


def monitoring_sections(m: "Monitoring", figures: Collection[str] = ()) -> list[Section]:
    """The report's sections for ``m`` (those that apply), given the names of its figures."""
    return [s for b in SECTIONS if (s := b(m, figures)) is not None]


def monitoring_html(m: "Monitoring", images: Mapping[str, bytes]) -> str:
    """``report.html`` of ``m``; ``images`` maps figure names (the PNG file names without
    ``.png``) to PNG bytes."""
    sha = str(m.provenance.get("input_sha256", ""))
    sub = (f"Monitoring over {m.over_time.columns.time} · {', '.join(map(str, m.over_time.subjects))}"
           + (f" · input SHA-256 {sha[:12]}…" if sha else "") + f" · pleval {m.provenance.get('pleval', '')}")
    return render_sections(monitoring_sections(m, images.keys()), images,
                           heading="Is personalized learning working over time?", doc_title="PL monitoring",
                           subtitle=sub, source_name=sha[:12] or "(a DataFrame)")


def save_monitoring(m: "Monitoring", out, *, figures: bool = True) -> Path:
    """The outputs folder of :func:`pleval.monitor.save_monitoring` with ``report.html``."""
    from ..monitor import save_monitoring as save

    return save(m, out, figures=figures, html=monitoring_html)


__all__ = ["SECTIONS", "monitoring_sections", "monitoring_html", "save_monitoring"]
