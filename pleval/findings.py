"""What an :class:`~pleval.estimate.Evaluation` found, in words and formatted numbers.

The sentences, the rows of the overall, heterogeneity and WWC-verdict tables and the number
formats are shared by ``Evaluation.summary()`` (:func:`text_summary`), the compact HTML Jupyter
shows (:func:`html_fragment`) and every format of the report (:mod:`pleval.report`), so the
terminal, the notebook, ``report.html``, ``report.pdf`` and ``summary.md`` say the same thing.
This module reads an Evaluation's tables; it imports neither :mod:`pleval.estimate` nor
:mod:`pleval.report`.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import percentiles
from ._text import fixed, fmt_p, percent, unsigned_zeros
from .standards import EQUIVALENCE_EDGES, differential_text, overall_text

if TYPE_CHECKING:  # pragma: no cover
    from .estimate import Evaluation

ADJUSTMENT_NAMES = {"bh": "Benjamini–Hochberg", "holm": "Holm", "bonferroni": "Bonferroni"}


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------
def fmt(x, nd: int = 3, signed: bool = False, edges: tuple[float, ...] = ()) -> str:
    """``x`` with ``nd`` decimals ("—" if missing), more where they would put it on or across
    one of ``edges`` (:func:`pleval._text.fixed`)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—"
    return unsigned_zeros(fixed(v, nd, *edges, signed=signed))


def fmt_ci(lo, hi, nd: int = 3, signed: bool = False) -> str:
    """An interval ``lo to hi`` with ``nd`` decimals, each bound with more where ``nd`` would put it
    on zero or across it: a bound on one side of zero never prints as 0 (0.034 percentile points
    reads ``+0.03``, not ``0.0``, under "the interval lies above zero")."""
    return f"{fmt(lo, nd, signed, edges=(0,))} to {fmt(hi, nd, signed, edges=(0,))}"


def p_clause(p, alpha: float = 0.05) -> str:
    """The p-value in a sentence: ``p = 0.087``, ``p < 0.001`` (never ``p = < 0.001``), ``p = —``;
    on the side of ``alpha`` it lies (:func:`fmt_p`)."""
    shown = fmt_p(p, alpha)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def fmt_int(x) -> str:
    try:
        return f"{int(x):,}"
    except (TypeError, ValueError):
        return "—"


def pp(g, p0) -> float:
    return float(percentiles.to_percentile_points(g, p0)) if np.isfinite(g) else math.nan


def subject_rows(frame: pd.DataFrame, subject: str) -> pd.DataFrame:
    if len(frame) == 0 or "subject" not in frame.columns:
        return frame.iloc[0:0] if len(frame) else frame
    return frame[frame["subject"] == subject]


def het_row(ev: "Evaluation", subject: str) -> pd.Series | None:
    h = subject_rows(ev.heterogeneity, subject)
    return h.iloc[0] if len(h) else None


def title(subject: str, what: str) -> str:
    """``what``, followed by the subject unless the data have none."""
    return what + ("" if subject == "all" else f" — {subject}")


def slug(s: str) -> str:
    """``s`` as a file-name part (figure files are named ``<kind>_<slug(subject)>``): letters,
    digits, ``-`` and ``_`` kept, any other character ``_``; when a character was replaced, the
    first 6 hex digits of the text's SHA-1 follow, so two subjects that differ only there
    (``ELA*Reading``, ``ELA?Reading``) keep files of their own."""
    text = str(s)
    out = "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "x"
    if out != text:
        import hashlib

        out += "-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]
    return out


# --------------------------------------------------------------------------------------
# Content shared by the HTML, Markdown and text renderings
# --------------------------------------------------------------------------------------
def significance(estimate, alpha: float | None = None) -> str:
    """Whether an :class:`~pleval._results.Estimate` is statistically significant, in words: by
    its confidence interval (the same verdict as the test at 1 − level); by its p-value against
    ``alpha`` when ``alpha`` is given and is not 1 − level (``--level 0.9`` with α = 0.05: one
    verdict per card, the sentence's, not the interval's)."""
    if alpha is not None and abs((1 - estimate.level) - alpha) > 1e-9 and np.isfinite(estimate.pvalue):
        verdict = "statistically significant" if estimate.pvalue < alpha else "not statistically significant"
        return f"{verdict} at α = {alpha:g} ({p_clause(estimate.pvalue, alpha)})"
    lvl = f"{estimate.level:.0%}"
    if not (np.isfinite(estimate.ci_low) and np.isfinite(estimate.ci_high)):
        return "statistical significance unknown (no confidence interval)"
    if estimate.ci_low <= 0 <= estimate.ci_high:
        return f"not statistically significant: the {lvl} confidence interval includes zero"
    side = "above" if estimate.ci_low > 0 else "below"
    return f"statistically significant: the {lvl} confidence interval lies {side} zero"


def domain_row(ev: "Evaluation", subject: str) -> pd.Series | None:
    """The primary outcome's row of ``ev.outcomes`` for ``subject`` when other outcomes share its
    domain (``n_in_domain`` > 1): its p is then also judged adjusted within the domain, as the
    WWC does and the ESSA tier reads it (:func:`pleval.outcomes.outcome_table`); None when the
    outcome is alone in its domain."""
    o = ev.outcomes
    if not len(o):
        return None
    r = o[(o["subject"] == subject) & (o["outcome"] == ev.columns.outcome)]
    return r.iloc[0] if len(r) and int(r["n_in_domain"].iloc[0]) > 1 else None


def domain_family(ev: "Evaluation", r: pd.Series) -> str:
    """The family a domain-adjusted p is adjusted over, in words: ``the 2 outcomes of the
    achievement domain (Benjamini–Hochberg)``."""
    how = ADJUSTMENT_NAMES.get(str(ev.options.get("adjust")), str(ev.options.get("adjust")))
    return f"the {int(r['n_in_domain'])} outcomes of the {r['domain']} domain ({how})"


def domain_clause(ev: "Evaluation", subject: str) -> str:
    """``; adjusted for the 2 outcomes of the achievement domain (Benjamini–Hochberg), p = 0.095``
    after the primary estimate's p when other outcomes share its domain ("" otherwise)."""
    r = domain_row(ev, subject)
    if r is None:
        return ""
    return f"; adjusted for {domain_family(ev, r)}, {p_clause(r['pvalue_adjusted'], run_alpha(ev))}"


def card_significance(ev: "Evaluation", subject: str) -> str:
    """The verdict on ``subject``'s primary estimate that its card gives: :func:`significance`;
    when other outcomes share its domain, by the p adjusted within the domain — the rule of the
    ESSA tier's "statistically significant" — with the p before adjustment beside it."""
    alpha, e, r = run_alpha(ev), ev.effects[subject].effect_size, domain_row(ev, subject)
    if r is None or not (np.isfinite(r["pvalue"]) and np.isfinite(r["pvalue_adjusted"])):
        return significance(e, alpha)
    before, after = p_clause(r["pvalue"], alpha), "adjusted " + p_clause(r["pvalue_adjusted"], alpha)
    family = domain_family(ev, r)
    if r["pvalue_adjusted"] < alpha:
        return f"statistically significant at α = {alpha:g} after adjusting for {family}: {after} ({before} before adjustment)"
    if r["pvalue"] < alpha:
        return (f"not statistically significant at α = {alpha:g} after adjusting for {family}: {after}; significant "
                f"before adjustment ({before})")
    return f"not statistically significant at α = {alpha:g}, before ({before}) or after adjusting for {family} ({after})"


def design_text(ev: "Evaluation") -> str:
    """One paragraph on the design, from the primary estimate's own description."""
    how = next(iter(ev.effects.values())).raw.method
    if ev.design == "rct":
        return (
            f"Randomized trial ({ev.options.get('rct_design', 'cluster')} design): the intent-to-treat effect of "
            f"assignment to PL. Primary estimate: {how}."
        )
    c = ev.columns
    return (
        f"Matched comparison ({ev.method}): students in PL schools compared with similar students in comparison "
        f"schools, matched on {', '.join(c.pretest + c.covariates) or 'the covariates'}; the effect on the treated "
        f"(ATT). Primary estimate: {how}."
    )


def overall_rows(ev: "Evaluation") -> list[dict]:
    rows, alpha = [], run_alpha(ev)
    ov = ev.overall
    if "outcome" in ov.columns:  # the primary outcome's analyses (further outcomes: ev.outcomes)
        ov = ov[ov["outcome"] == ev.columns.outcome]
    for s in ev.subjects:
        o = subject_rows(ov, s)
        for analysis, g in o.groupby("analysis", sort=False):
            by = {r["scale"]: r for _, r in g.iterrows()}
            raw, es, pp = by["raw"], by["effect size"], by["percentile points"]
            rows.append(
                {
                    "subject": s,
                    "analysis": analysis,
                    "primary": bool(raw["primary"]),
                    "raw": fmt(raw["estimate"], 2, True),
                    "raw_ci": fmt_ci(raw["ci_low"], raw["ci_high"], 2, True),
                    "es": fmt(es["estimate"], 3, True),
                    "es_ci": fmt_ci(es["ci_low"], es["ci_high"], 3, True),
                    "pp": fmt(pp["estimate"], 1, True),
                    "pp_ci": fmt_ci(pp["ci_low"], pp["ci_high"], 1, True),
                    "p": fmt_p(raw["pvalue"], alpha),
                    "mdes": fmt(es.get("mdes", np.nan), 3),
                    "mdes_pp": fmt(pp.get("mdes", np.nan), 1, True),
                    "n_treated": fmt_int(raw["n_treated"]),
                    "n_control": fmt_int(raw["n_control"]),
                    "n_clusters": fmt_int(raw["n_clusters"]) if pd.notna(raw["n_clusters"]) else "—",
                    "sd": f"{float(raw['sd']):.3g} ({raw['sd_kind']})",
                    "method": raw["method"],
                }
            )
    return rows


def het_rows(ev: "Evaluation") -> list[dict]:
    rows, alpha = [], run_alpha(ev)
    for s in ev.subjects:
        h = het_row(ev, s)
        if h is None:
            continue
        p0 = ev.effects[s].baseline_percentile
        row = {
            "subject": s,
            "k": fmt_int(h["k"]),
            "pooled": fmt(h["estimate"], 3, True),
            "pooled_ci": fmt_ci(h["ci_low"], h["ci_high"], 3, True),
            "tau": fmt(h["tau"], 3),
            "tau_ci": fmt_ci(math.sqrt(max(h["tau2_ci_low"], 0)), math.sqrt(max(h["tau2_ci_high"], 0)), 3),
            "i2": f"{float(h['i2']):.0f}%" if pd.notna(h["i2"]) else "—",
            "q": f"{float(h['q']):.1f} (df {int(h['q_df'])}, p {fmt_p(h['q_pvalue'], alpha)})" if pd.notna(h["q"]) else "—",
            "pi": fmt_ci(h["pi_low"], h["pi_high"], 3, True),
            "pi_pp": fmt_ci(pp(h["pi_low"], p0), pp(h["pi_high"], p0), 1, True),
            "expected": f"{float(h['count_expected_by_chance']):.1f}",
            "pos": f"{fmt_int(h['count_positive_raw'])} / {fmt_int(h['count_positive_adjusted'])}",
            "neg": f"{fmt_int(h['count_negative_raw'])} / {fmt_int(h['count_negative_adjusted'])}",
            "adjustment": ADJUSTMENT_NAMES.get(str(h["count_adjustment"]), str(h["count_adjustment"])),
            "method": str(h["method"]),
            "placebo": (f"{fmt(h.get('placebo_tau', np.nan), 3)} ({fmt_int(h.get('placebo_k'))})"
                        if pd.notna(h.get("placebo_tau", np.nan)) else "—"),
            "excess": f"{100 * float(h['share_excess']):.0f}%" if pd.notna(h.get("share_excess", np.nan)) else "—",
            "pi_total": pd.notna(h.get("tau2_total", np.nan)),  # the interval from τ²_total (placebo schools)
            "parts": het_parts(ev, s, h),
        }
        rows.append(row)
    return rows


def note_text(h: pd.Series, col: str) -> str:
    """A text column of the heterogeneity row ("" when absent)."""
    v = h.get(col, "")
    return v if isinstance(v, str) else ""


def run_alpha(ev: "Evaluation") -> float:
    """The run's α (its significance level for verdicts and counts)."""
    return float(ev.options.get("alpha", 0.05))


def lower_is_better(ev: "Evaluation") -> bool:
    """Whether the evaluation's primary outcome is better lower (``lower_is_better``, e.g. days
    absent): a school's risk of harm is then P(effect > 0), not P(effect < 0)."""
    return ev.columns.outcome in tuple(ev.options.get("lower_is_better") or ())


def randomized_in_schools(ev: "Evaluation") -> bool:
    """Whether the evaluation's school effects are a multi-site trial's (students randomized
    within each school): each school's estimate is then the program's effect there alone."""
    from .heterogeneity.school_effects import MULTISITE

    se = ev.school_effects
    return se is not None and se.options.get("design") == MULTISITE


def one_school_parts(ev: "Evaluation", s: str, h: pd.Series) -> list[str]:
    """A single PL school: why nothing is pooled, and the school's estimate against the placebo
    spread (or why that comparison is missing)."""
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    alpha = float(h.get("count_alpha", 0.05))
    why = note_text(h, "not_estimable")
    parts = [why[0].upper() + why[1:] + "."]
    sch = subject_rows(ev.schools, s)
    r = sch[np.isfinite(sch["effect_size"].to_numpy(dtype=float))].iloc[0]
    within = randomized_in_schools(ev)
    own = (f"School {r['school']}: effect size {fmt(r['effect_size'], 3, True)} ({lvl} CI "
           f"{fmt_ci(r['es_ci_low'], r['es_ci_high'], 3, True)} from student-level standard errors, an interval for the "
           + ("program's effect in the school, its students randomized within it" if within
              else "program plus the school's own circumstances"))
    if within:
        parts.append(own + ").")
    elif pd.notna(r.get("p_calibrated", np.nan)):
        beyond = r["p_calibrated_adjusted"] < alpha
        verdict = (f"beyond what school circumstances alone produce ({'above' if r['effect_size'] > 0 else 'below'} zero)"
                   if beyond else "not beyond what school circumstances alone produce")
        parts.append(
            own + f"). Counting the spread that placebo schools show without any program (τ_placebo = "
            f"{fmt(h.get('tau_placebo', np.nan), 3)}, {fmt_int(h.get('placebo_k'))} placebo schools) as noise, with "
            f"its uncertainty, the {lvl} interval for the program's effect in the school is "
            f"{fmt_ci(r['ci_low_calibrated'], r['ci_high_calibrated'], 3, True)} ({p_clause(r['p_calibrated'], alpha)}): "
            f"{verdict} at α = {alpha:g}."
        )
    else:
        parts.append(own + f"); {note_text(h, 'calibration_note') or 'no placebo-calibrated figures'}, so the "
                     "program's effect cannot be told apart from the school's own circumstances.")
    why = two_estimates(ev, s, r, calibrated=not within and pd.notna(r.get("p_calibrated", np.nan)))
    return parts + ([why] if why else [])


def _extra_adjusters(ev: "Evaluation", s: str) -> list[str]:
    """The columns the primary matched regression of subject ``s`` adjusts for that the
    school-effects model does not: the matching strata (grade; subject when pooled) that vary in
    the matched sample (:mod:`pleval.matching.effect`), which the school model, adjusted for the
    pretest and covariates only, leaves out. [] for other designs."""
    m, se = ev.details.get(s, {}).get("design"), ev.school_effects
    strata = getattr(m, "strata", None)
    if not strata or se is None:
        return []
    covs = set(se.options.get("covariates", ()))
    sample = m.distinct([c for c in strata if c not in covs] + [ev.columns.subject])
    if ev.columns.subject and s != "all":
        sample = sample[sample[ev.columns.subject] == s]
    return [c for c in strata if c not in covs and sample[c].nunique() > 1]


def two_estimates(ev: "Evaluation", s: str, r: pd.Series, calibrated: bool) -> str:
    """With one PL school, why the headline's effect and the school's own differ and which answers
    what ("" when they print alike): the same students, but the primary regression also adjusts
    for the matching strata (:func:`_extra_adjusters`) and the school-effects model, the same for
    every school, does not; the headline is the effect on these students, program and school
    circumstances together, and the placebo-calibrated interval (``calibrated``) the one for the
    program alone."""
    e = ev.effects[s]
    overall, own = fmt(e.effect_size.estimate, 3, True), fmt(r["effect_size"], 3, True)
    if overall == own:
        return ""
    same = (int(e.raw.n_treated), int(e.raw.n_control)) == (int(r["n_treated"]), int(r["n_comparison"]))
    students = (f"the same {int(r['n_treated']):,} PL and {int(r['n_comparison']):,} comparison students" if same
                else "the school's students")
    extra = _extra_adjusters(ev, s)
    how = (f"the headline's regression also adjusts for {' and '.join(extra)}, which the school-effects model (the same "
           "model for every school, adjusted for the pretest and covariates) leaves out" if extra else
           "the headline comes from the design's primary regression, the school's from the school-effects model (the same "
           "model for every school, adjusted for the pretest and covariates)")
    answer = ("The headline is the primary estimate: the effect on these students, the program and the school's own "
              "circumstances together; whether the program itself worked in this school is the placebo-calibrated "
              "interval above." if calibrated else "The headline is the primary estimate.")
    return f"Why two estimates ({overall} and {own} SD): both compare {students}, but {how}. {answer}"


def _spread_words(h: pd.Series) -> str:
    """What the prediction interval's between-school variance is: the PL schools' own when it is at
    least the placebo schools', else the two pooled by their precision (it then lies between them,
    not at or above the placebo schools'; docs/heterogeneity.md, order restriction)."""
    tau2_pl, tau2_placebo = float(h.get("tau2", np.nan)), float(h.get("tau2_placebo", np.nan))
    if not (tau2_pl < tau2_placebo):
        return "the PL schools' spread, at least the placebo schools'"
    return ("the PL schools' spread (SD {:.3f}) below the placebo schools' ({:.3f}), so the two pooled by their "
            "precision".format(math.sqrt(max(tau2_pl, 0.0)), math.sqrt(tau2_placebo)))


def schools_differ(h: pd.Series, alpha: float) -> bool:
    """Whether the data show that the schools' true effects differ: the Q test of no heterogeneity
    rejects at ``alpha`` (without a Q, the CI of τ² lies above 0)."""
    q = float(h.get("q_pvalue", np.nan))
    return q < alpha if np.isfinite(q) else float(h.get("tau2_ci_low", np.nan)) > 0


def spread_words(ev: "Evaluation", h: pd.Series) -> str:
    """τ on a card, with its CI and the Q test, and whether the schools differ by that evidence:
    "Schools differ: τ = 0.253 SD (95% CI ...; Q test p < 0.001)" or "The data cannot tell whether
    schools differ: τ = 0.083 SD (95% CI 0.000 to 0.234; Q test p = 0.191)"."""
    alpha, lvl = run_alpha(ev), f"{float(ev.options.get('level', 0.95)):.0%}"
    ci = fmt_ci(math.sqrt(max(h["tau2_ci_low"], 0)), math.sqrt(max(h["tau2_ci_high"], 0)), 3)
    q = f"; Q test {p_clause(h['q_pvalue'], alpha)}" if pd.notna(h.get("q_pvalue", np.nan)) else ""
    lead = "Schools differ" if schools_differ(h, alpha) else "The data cannot tell whether schools differ"
    return f"{lead}: τ = {float(h['tau']):.3f} SD ({lvl} CI {ci}{q})"


SMALL_SHARE = 0.25
"""A share of the PL schools' between-school variance below which "little or none" of it is the program's."""


def program_share_words(h: pd.Series, lvl: str) -> str:
    """A sentence (without its full stop) on how much of the PL schools' between-school variance
    goes beyond the placebo schools', judged on the CI of τ²_program, not on its estimate: the
    share τ²/(τ² + τ²_placebo) at the CI's ends (at the estimate it is ``share_excess``). "Little
    or none" only when the upper end is below :data:`SMALL_SHARE`; a CI from 0 to more says the
    data cannot tell; a CI above 0, the share with its range. "" without the CI."""
    lo, hi = float(h.get("tau2_program_ci_low", np.nan)), float(h.get("tau2_program_ci_high", np.nan))
    t2p, t2 = float(h.get("tau2_placebo", np.nan)), float(h.get("tau2_program", np.nan))
    if not all(np.isfinite([lo, hi, t2p, t2])):
        return ""

    def share(t: float) -> float:
        return t / (t + t2p) if t + t2p > 0 else 0.0

    ci = f"the {lvl} CI of τ_program below"
    if lo > 0:
        return (f"The PL schools vary more than schools do without the program: about {100 * share(t2):.0f}% of their "
                f"between-school variance goes beyond what arises without it ({fixed(100 * share(lo), 0, 0)}% to "
                f"{100 * share(hi):.0f}% over {ci})")
    top = f"{fixed(100 * share(hi), 0, 100 * SMALL_SHARE)}%"
    if share(hi) < SMALL_SHARE:
        return ("Little or none of the spread among PL schools goes beyond what arises without the program (at most "
                f"about {top} of their between-school variance over {ci})")
    return ("The data cannot tell how much of the spread among PL schools goes beyond what arises without the program: "
            f"from none to about {top} of their between-school variance over {ci} (estimate {100 * share(t2):.0f}%)")


def het_parts(ev: "Evaluation", s: str, h: pd.Series) -> list[str]:
    if note_text(h, "not_estimable"):
        return one_school_parts(ev, s, h)
    p0 = ev.effects[s].baseline_percentile
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    floor = pd.notna(h.get("tau2_total", np.nan))
    within = randomized_in_schools(ev)
    parts = [
        f"Across {int(h['k'])} {'' if within else 'PL '}schools the true effects are estimated to vary with SD "
        f"τ = {float(h['tau']):.3f} (I² = {float(h['i2']):.0f}%); the effect in a new, similar school "
        + ("(the program plus that school's own circumstances) " if floor else "")
        + f"would lie between {fmt(pp(h['pi_low'], p0), 1, True)} and {fmt(pp(h['pi_high'], p0), 1, True)} percentile "
        f"points ({lvl} prediction interval"
        + (f", with a between-school SD of {math.sqrt(float(h['tau2_total'])):.3f}: " + _spread_words(h)
           + ", since schools differ at least as much as they do without any program, and allowing for the uncertainty "
           "of both)." if floor else ").")
    ]
    parts.append(
        "Students were randomized within each school, so each school's estimate is unbiased for the program's effect "
        "in that school, and τ is the program's own variation across schools." if within else
        "Each school's estimate measures the program's effect there together with the school's own circumstances "
        "relative to comparable schools (its students' growth that year, its staff): for a single school the two "
        "cannot be told apart, so its interval is an interval for that sum."
    )
    pn = h.get("prob_negative_new", np.nan)
    if pd.notna(pn):
        parts.append(f"For a new school like these, the chance that its effect is below zero is {100 * float(pn):.0f}% "
                     "(from the prediction distribution).")
    calibrated = pd.notna(h.get("calibrated_positive", np.nan))  # then the verdicts the summary counts come below
    parts.append(
        ("Against student-level standard errors alone (which leave out a school's own circumstances; the verdicts "
         "beyond the placebo spread follow), " if calibrated and not within else "")
        + f"{int(h['count_positive_adjusted'])} school(s) are significantly positive and "
        f"{int(h['count_negative_adjusted'])} significantly negative after adjusting for multiplicity "
        f"({int(h['count_positive_raw'])} and {int(h['count_negative_raw'])} before adjustment; about "
        f"{float(h['count_expected_by_chance']):.1f} would be significant by chance alone if the program did nothing"
        + (")." if within else ", even more when schools differ for reasons of their own).")
    )
    med = h.get("school_mdes_median", np.nan)
    if pd.notna(med):
        parts.append(
            f"A single school's estimate could detect (80% power) only effects of about {float(med):.3f} SD "
            f"({fmt(pp(med, p0), 1, True)} percentile points) or larger (median over schools); a school without a "
            "significant effect may still have had a smaller one."
        )
    tp = h.get("placebo_tau", np.nan)
    if pd.notna(tp) and np.isfinite(tp):
        judge = program_share_words(h, lvl)
        parts.append(
            f"Placebo schools (comparison schools analysed as if they were PL, k = {int(h['placebo_k'])}) vary with "
            f"τ = {tp:.3f} against τ = {float(h['tau']):.3f} for PL schools." + (f" {judge}." if judge else "")
        )
        share_sig = h.get("placebo_significant_share", np.nan)
        if pd.notna(share_sig):
            alpha = float(h.get("count_alpha", 0.05))
            verdict = (
                "so single-school verdicts from student-level standard errors are over-confident"
                if share_sig > 2 * alpha else "about the nominal rate"
            )
            parts.append(
                f"{100 * share_sig:.0f}% of placebo schools look 'significant' at p < {alpha:g} "
                f"(nominal {percent(alpha)}), {verdict}."
            )
        if pd.notna(h.get("tau2_program", np.nan)):
            parts.append(
                f"The program's own variation across schools, τ_program = √(τ²_PL − τ²_placebo) = "
                f"{math.sqrt(float(h['tau2_program'])):.3f} ({lvl} CI "
                f"{fmt_ci(math.sqrt(float(h['tau2_program_ci_low'])), math.sqrt(float(h['tau2_program_ci_high'])), 3)})."
            )
        if pd.notna(h.get("calibrated_positive", np.nan)):
            adj = ADJUSTMENT_NAMES.get(str(h.get("calibrated_adjustment", "bh")), str(h.get("calibrated_adjustment", "bh")))
            parts.append(
                f"Compared against the placebo spread (school circumstances counted as noise, with the uncertainty of "
                f"τ_placebo carried into the test), {int(h['calibrated_positive'])} school(s) show a result beyond what "
                f"circumstances alone produce in the positive direction and {int(h['calibrated_negative'])} in the "
                f"negative direction ({adj}). If the program did nothing anywhere, about "
                f"{float(h['calibrated_expected_by_chance_raw']):.1f} school(s) would pass before adjustment by chance, "
                f"and any school at all after adjustment at most {percent(float(h.get('count_alpha', 0.05)))} of the time."
            )
    if note_text(h, "calibration_note") and not within:
        parts.append(note_text(h, "calibration_note")[0].upper() + note_text(h, "calibration_note")[1:] + ": school "
                     "verdicts rest on student-level standard errors, which do not cover a school's own circumstances.")
    return parts


def verdict_rows(ev: "Evaluation") -> list[dict]:
    rows = []
    eq = ev.equivalence
    for s in ev.subjects:
        e = subject_rows(eq, s)
        pre = e[e["role"] == "pretest"] if "role" in e.columns else e
        for _, r in pre.iterrows():
            rows.append(
                {"subject": s, "check": f"baseline equivalence: {r['variable']}",
                 "value": f"g = {fmt(r['effect_size'], 3, True, edges=EQUIVALENCE_EDGES)}", "verdict": str(r["verdict"])}
            )
        at = subject_rows(ev.attrition, s)
        for _, r in at.iterrows():
            rows.append(
                {
                    "subject": s,
                    "check": f"attrition ({r['level']})",
                    "value": f"overall {overall_text(r['overall'])}%, differential "
                             f"{differential_text(r['overall'], r['differential'])} points",
                    "verdict": f"{r['verdict_cautious']} (cautious boundary), {r['verdict_optimistic']} (optimistic)",
                }
            )
    return rows


def outcome_lines(ev: "Evaluation") -> list[str]:
    """One line per subject × outcome of ``ev.outcomes`` (several outcomes in one run)."""
    out, alpha = [], run_alpha(ev)
    for r in ev.outcomes.to_dict("records"):
        unit = " percentage points" if r["scale"] == "percentage points" else ""
        es = "Cox index" if r["es_measure"] == "Cox index" else "g"
        pp = "" if r["scale"] == "percentage points" else f", {fmt(r['percentile_points'], 1, True)} percentile points"
        out.append(f"[{r['subject']}] {r['outcome']} ({r['domain']}): {fmt(r['estimate'], 2, True)}{unit} "
                   f"({fmt_ci(r['ci_low'], r['ci_high'], 2, True)}), {es} {fmt(r['effect_size'], 3, True)}{pp}; "
                   f"p {fmt_p(r['pvalue'], alpha)}, adjusted within domain {fmt_p(r['pvalue_adjusted'], alpha)}; "
                   f"{r['wwc_rating']}; ESSA {r['essa_tier']}")
    return out


def text_summary(ev: "Evaluation") -> str:
    """Plain-text summary (``Evaluation.summary()``)."""
    lines = [f"Evaluation: {design_text(ev)}"]
    ds = ev.data_summary
    if len(ds):
        lines.append("Data: " + "; ".join(f"{r['reason']} {int(r['n_rows']):,}" for _, r in ds.iterrows()))
    for r in overall_rows(ev):
        star = "*" if r["primary"] else " "
        lines.append(
            f" {star}{r['subject']:<10}{r['analysis'][:28]:<29} raw {r['raw']:>7} ({r['raw_ci']})  ES {r['es']:>7} "
            f"({r['es_ci']})  pct pts {r['pp']:>6} ({r['pp_ci']})  p {r['p']}  MDES {r['mdes']} SD ({r['mdes_pp']})"
        )
    for s in ev.subjects:
        lines.append("  " + ev.sentence(s))
    for v in verdict_rows(ev):
        lines.append(f"  WWC [{v['subject']}] {v['check']}: {v['value']} -> {v['verdict']}")
    for s, r in ev.ratings.items():
        lines.append(f"  WWC rating [{s}]: {r.wwc_rating}; ESSA tier: {r.essa_tier} ({r.essa_reason})")
        lines.extend(f"    {x}" for x in r.reasons)
    for r in outcome_lines(ev):
        lines.append(f"  Outcome {r}")
    for h in het_rows(ev):
        lines.append(f"  Schools [{h['subject']}]: {' '.join(h['parts'])}")
    for w in ev.warnings:
        lines.append(f"  warning: {w}")
    lines.append(f"  {percentiles.NOTE}")
    return "\n".join(lines)


def html_fragment(ev: "Evaluation") -> str:
    """Compact HTML for Jupyter: the sentences and the primary effects."""
    rows = [r for r in overall_rows(ev) if r["primary"]]
    body = "".join(
        f"<tr><td style='text-align:left'>{html.escape(r['subject'])}</td><td>{r['raw']}</td><td>{r['es']}</td>"
        f"<td>{r['es_ci']}</td><td>{r['pp']}</td><td>{r['pp_ci']}</td><td>{r['p']}</td><td>{r['n_treated']}</td>"
        f"<td>{r['n_control']}</td></tr>"
        for r in rows
    )
    sentences = "".join(f"<li>{html.escape(ev.sentence(s))}</li>" for s in ev.subjects)
    het = "".join(f"<li>{html.escape(str(h['subject']))}: {html.escape(' '.join(h['parts']))}</li>" for h in het_rows(ev))
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in ev.warnings)
    return (
        f"<div class='pleval-result'><strong>Evaluation</strong> ({html.escape(ev.design)}, {html.escape(ev.method)})"
        "<table><tr><th>subject</th><th>raw (points)</th><th>effect size</th><th>CI</th><th>percentile points</th>"
        f"<th>CI</th><th>p</th><th>n PL</th><th>n comparison</th></tr>{body}</table><ul>{sentences}</ul>"
        + (f"<p><em>Schools</em></p><ul>{het}</ul>" if het else "")
        + (f"<p><em>Warnings</em></p><ul>{warn}</ul>" if warn else "")
        + f"<p style='color:#666'>{html.escape(percentiles.NOTE)}</p></div>"
    )



__all__ = [
    "significance", "card_significance", "domain_clause", "domain_row", "design_text", "overall_rows", "outcome_lines", "het_rows", "het_parts", "verdict_rows", "text_summary", "html_fragment",
    "schools_differ", "spread_words", "program_share_words", "fmt", "fmt_ci", "fmt_p", "fmt_int", "subject_rows", "het_row", "note_text", "one_school_parts", "title", "slug", "ADJUSTMENT_NAMES",
]
