"""Reporting an :class:`~pleval.estimate.Evaluation`: the figures, a self-contained HTML report,
a Markdown summary, text for the terminal and the outputs folder.

* :func:`figures` — every figure that applies (forest, distribution, love, overlap, percentile
  chart; one per subject), built with :mod:`pleval.plots`.
* :func:`render_html` — ``report.html``: one file, images embedded as base64 PNG, no external
  resources (it opens offline and can be e-mailed). Sections: at a glance, data and design,
  balance and WWC verdicts, overall effect, schools, heterogeneity, caveats, warnings,
  provenance.
* :func:`render_markdown` — ``summary.md``; :func:`render_text` — ``Evaluation.summary()``;
  :func:`render_fragment` — the compact HTML Jupyter shows.
* :func:`write_outputs` — the outputs folder (``Evaluation.save``): summary.md, overall.csv,
  school_effects.csv and .xlsx, balance.csv, equivalence.csv, heterogeneity.csv, attrition.csv
  (trials), placebo.csv, run.toml, provenance.json, plots/*.png, report.html. It never
  overwrites the input file and refuses a non-empty folder that is not a previous pleval
  output (one with a ``provenance.json`` written by pleval) unless ``force=True``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jinja2 import Environment
from markupsafe import Markup
from scipy import stats

from . import percentiles, plots
from .errors import PlevalError

if TYPE_CHECKING:  # pragma: no cover
    from .estimate import Evaluation

PROVENANCE_MARK = "pleval estimate outputs"
"""Value of ``provenance.json``'s ``"kind"``: how a previous pleval output folder is recognised."""

CAVEAT_PERCENTILE = (
    "Percentile points are shifts in rank, not percentage points of the score: +3 percentile points means a "
    "student who would have scored at the 50th percentile of the comparison distribution is expected to score at "
    "about the 53rd, not that the score rose by 3%."
)
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
CAVEAT_MULTIPLICITY = (
    "With many schools, some look significant by chance: about 1 in 20 at p < 0.05 when the program does nothing. "
    "Counts of significantly positive and negative schools are therefore also given after adjustment for "
    "multiplicity."
)
CAVEAT_RCT = (
    "Randomization protects the overall (intent-to-treat) comparison, not comparisons of single schools or of "
    "students who used the program more; the effect on schools that implemented PL (CACE) assumes assignment "
    "affects outcomes only through implementation."
)


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------
def _f(x, nd: int = 3, signed: bool = False) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—"
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def _ci(lo, hi, nd: int = 3, signed: bool = False) -> str:
    return f"{_f(lo, nd, signed)} to {_f(hi, nd, signed)}"


def _p(p) -> str:
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _int(x) -> str:
    try:
        return f"{int(x):,}"
    except (TypeError, ValueError):
        return "—"


def _pp(g, p0) -> float:
    return float(percentiles.to_percentile_points(g, p0)) if np.isfinite(g) else math.nan


def _subject_rows(frame: pd.DataFrame, subject: str) -> pd.DataFrame:
    if len(frame) == 0 or "subject" not in frame.columns:
        return frame.iloc[0:0] if len(frame) else frame
    return frame[frame["subject"] == subject]


def _het_row(ev: "Evaluation", subject: str) -> pd.Series | None:
    h = _subject_rows(ev.heterogeneity, subject)
    return h.iloc[0] if len(h) else None


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------
def _school_plot_frame(ev: "Evaluation", subject: str, level: float) -> pd.DataFrame:
    s = _subject_rows(ev.schools, subject)
    s = s[np.isfinite(s["effect_size"].to_numpy(dtype=float))]
    z = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame(
        {
            "school": s["school"].astype(str).to_numpy(),
            "estimate": s["effect_size"].to_numpy(dtype=float),
            "se": s["es_se"].to_numpy(dtype=float),
            "ci_low": s["es_ci_low"].to_numpy(dtype=float),
            "ci_high": s["es_ci_high"].to_numpy(dtype=float),
            "shrunk": s["shrunk_es"].to_numpy(dtype=float),
            "shrunk_ci_low": (s["shrunk_es"] - z * s["shrunk_es_sd"]).to_numpy(dtype=float),
            "shrunk_ci_high": (s["shrunk_es"] + z * s["shrunk_es_sd"]).to_numpy(dtype=float),
            "pvalue_adj": s["p_adjusted"].to_numpy(dtype=float),
        }
    )


def _placebo_values(ev: "Evaluation", subject: str) -> np.ndarray | None:
    pl = _subject_rows(ev.placebo, subject)
    if not len(pl):
        return None
    g = pl["effect_size"].to_numpy(dtype=float)
    g = g[np.isfinite(g)]
    return g if g.size else None


def _title(ev: "Evaluation", subject: str, what: str) -> str:
    return what + ("" if subject == "all" else f" — {subject}")


def forest_figure(ev: "Evaluation", subject: str, *, shrunk: bool = True):
    lvl = float(ev.options.get("level", 0.95))
    d = _school_plot_frame(ev, subject, lvl)
    if not len(d):
        raise PlevalError(f"no school effects for subject {subject!r}")
    if not shrunk:
        d = d.drop(columns=["shrunk", "shrunk_ci_low", "shrunk_ci_high"])
    h = _het_row(ev, subject)
    pooled = None
    if h is not None:
        pooled = {k: h[k] for k in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high", "tau")}
        pooled["method"] = f"random effects, {h['method']}"
    e = ev.effects[subject]
    return plots.forest(
        d, pooled=pooled, placebo=_placebo_values(ev, subject), baseline_percentile=e.baseline_percentile,
        sd=e.sd, sd_kind=e.sd_kind, level=lvl, alpha=float(ev.options.get("alpha", 0.05)),
        title=_title(ev, subject, "Effect of personalized learning by school"),
    )


def distribution_figure(ev: "Evaluation", subject: str):
    d = _school_plot_frame(ev, subject, float(ev.options.get("level", 0.95)))
    h = _het_row(ev, subject)
    return plots.effect_distribution(
        d["estimate"], shrunk=d["shrunk"], mu=None if h is None else float(h["estimate"]),
        tau=None if h is None else float(h["tau"]), placebo=_placebo_values(ev, subject),
        baseline_percentile=ev.effects[subject].baseline_percentile,
        title=_title(ev, subject, "Distribution of school effects"),
    )


def love_figure(ev: "Evaluation", subject: str):
    b = _subject_rows(ev.balance, subject)
    if not len(b):
        raise PlevalError(f"no balance table for subject {subject!r}")
    title = "Covariate balance" if ev.design == "matched" else "Baseline differences (analytic sample)"
    labels = ("before matching", "after matching") if ev.design == "matched" else ("randomized groups", "")
    return plots.love_plot(b, title=_title(ev, subject, title), labels=labels)


def overlap_figure(ev: "Evaluation", subject: str):
    p = _subject_rows(ev.propensity, subject)
    if not len(p):
        raise PlevalError("no propensity scores: overlap is drawn for propensity-based matched designs")
    w = p["weight"] if "weight" in p.columns else None
    return plots.propensity_overlap(p["score"], p["treated"], weights=w,
                                    title=_title(ev, subject, "Propensity-score overlap"))


def percentile_figure(ev: "Evaluation", subject: str):
    es = ev.effects[subject].effect_size
    return plots.percentile_chart(
        es.estimate, (es.ci_low, es.ci_high), baseline_percentile=ev.effects[subject].baseline_percentile,
        title=_title(ev, subject, "From effect size to percentile points"),
    )


def figures(ev: "Evaluation") -> dict[str, Any]:
    """Every figure that applies, keyed by file stem (e.g. ``forest_math``)."""
    out = {}
    for s in ev.subjects:
        suffix = "" if s == "all" else f"_{_slug(s)}"
        out[f"percentiles{suffix}"] = percentile_figure(ev, s)
        if len(_subject_rows(ev.balance, s)):
            out[f"love{suffix}"] = love_figure(ev, s)
        if len(_subject_rows(ev.propensity, s)):
            out[f"overlap{suffix}"] = overlap_figure(ev, s)
        sch = _subject_rows(ev.schools, s)
        if len(sch) and np.isfinite(sch["effect_size"].to_numpy(dtype=float)).any():
            out[f"forest{suffix}"] = forest_figure(ev, s)
            out[f"distribution{suffix}"] = distribution_figure(ev, s)
    return out


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s)).strip("_") or "x"


# --------------------------------------------------------------------------------------
# Content shared by the HTML, Markdown and text renderings
# --------------------------------------------------------------------------------------
def _design_text(ev: "Evaluation") -> str:
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


def _overall_rows(ev: "Evaluation") -> list[dict]:
    rows = []
    ov = ev.overall
    for s in ev.subjects:
        o = _subject_rows(ov, s)
        for analysis, g in o.groupby("analysis", sort=False):
            by = {r["scale"]: r for _, r in g.iterrows()}
            raw, es, pp = by["raw"], by["effect size"], by["percentile points"]
            rows.append(
                {
                    "subject": s,
                    "analysis": analysis,
                    "primary": bool(raw["primary"]),
                    "raw": _f(raw["estimate"], 2, True),
                    "raw_ci": _ci(raw["ci_low"], raw["ci_high"], 2, True),
                    "es": _f(es["estimate"], 3, True),
                    "es_ci": _ci(es["ci_low"], es["ci_high"], 3, True),
                    "pp": _f(pp["estimate"], 1, True),
                    "pp_ci": _ci(pp["ci_low"], pp["ci_high"], 1, True),
                    "p": _p(raw["pvalue"]),
                    "n_treated": _int(raw["n_treated"]),
                    "n_control": _int(raw["n_control"]),
                    "n_clusters": _int(raw["n_clusters"]) if pd.notna(raw["n_clusters"]) else "—",
                    "sd": f"{float(raw['sd']):.3g} ({raw['sd_kind']})",
                    "method": raw["method"],
                }
            )
    return rows


def _het_rows(ev: "Evaluation") -> list[dict]:
    rows = []
    for s in ev.subjects:
        h = _het_row(ev, s)
        if h is None:
            continue
        p0 = ev.effects[s].baseline_percentile
        row = {
            "subject": s,
            "k": _int(h["k"]),
            "pooled": _f(h["estimate"], 3, True),
            "pooled_ci": _ci(h["ci_low"], h["ci_high"], 3, True),
            "tau": _f(h["tau"], 3),
            "tau_ci": _ci(math.sqrt(max(h["tau2_ci_low"], 0)), math.sqrt(max(h["tau2_ci_high"], 0)), 3),
            "i2": f"{float(h['i2']):.0f}%",
            "q": f"{float(h['q']):.1f} (df {int(h['q_df'])}, p {_p(h['q_pvalue'])})",
            "pi": _ci(h["pi_low"], h["pi_high"], 3, True),
            "pi_pp": _ci(_pp(h["pi_low"], p0), _pp(h["pi_high"], p0), 1, True),
            "pos_raw": _int(h["count_positive_raw"]),
            "neg_raw": _int(h["count_negative_raw"]),
            "pos_adj": _int(h["count_positive_adjusted"]),
            "neg_adj": _int(h["count_negative_adjusted"]),
            "expected": f"{float(h['count_expected_by_chance']):.1f}",
            "pos": f"{_int(h['count_positive_raw'])} / {_int(h['count_positive_adjusted'])}",
            "neg": f"{_int(h['count_negative_raw'])} / {_int(h['count_negative_adjusted'])}",
            "adjustment": {"bh": "Benjamini–Hochberg", "holm": "Holm", "bonferroni": "Bonferroni"}.get(
                str(h["count_adjustment"]), str(h["count_adjustment"])
            ),
            "method": str(h["method"]),
            "placebo_k": _int(h.get("placebo_k")) if pd.notna(h.get("placebo_k", np.nan)) else "—",
            "placebo_tau": _f(h.get("placebo_tau", np.nan), 3),
            "placebo": (f"{_f(h.get('placebo_tau', np.nan), 3)} ({_int(h.get('placebo_k'))})"
                        if pd.notna(h.get("placebo_tau", np.nan)) else "—"),
            "excess": f"{100 * float(h['share_excess']):.0f}%" if pd.notna(h.get("share_excess", np.nan)) else "—",
            "sentence": _het_sentence(ev, s, h),
            "parts": _het_parts(ev, s, h),
        }
        rows.append(row)
    return rows


def _het_sentence(ev: "Evaluation", s: str, h: pd.Series) -> str:
    return " ".join(_het_parts(ev, s, h))


def _het_parts(ev: "Evaluation", s: str, h: pd.Series) -> list[str]:
    p0 = ev.effects[s].baseline_percentile
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    parts = [
        f"Across {int(h['k'])} PL schools the true effects are estimated to vary with SD τ = {float(h['tau']):.3f} "
        f"(I² = {float(h['i2']):.0f}%); the effect in a new, similar school would lie between "
        f"{_f(_pp(h['pi_low'], p0), 1, True)} and {_f(_pp(h['pi_high'], p0), 1, True)} percentile points "
        f"({lvl} prediction interval)."
    ]
    parts.append(
        f"{int(h['count_positive_adjusted'])} school(s) are significantly positive and "
        f"{int(h['count_negative_adjusted'])} significantly negative after adjusting for multiplicity "
        f"({int(h['count_positive_raw'])} and {int(h['count_negative_raw'])} before adjustment; about "
        f"{float(h['count_expected_by_chance']):.1f} would be significant by chance alone)."
    )
    tp = h.get("placebo_tau", np.nan)
    if pd.notna(tp) and np.isfinite(tp):
        share = float(h.get("share_excess", 0.0))
        if share < 0.25:
            judge = "little or none of the spread among PL schools goes beyond what arises without the program"
        elif share < 0.75:
            judge = f"about {100 * share:.0f}% of the PL schools' between-school variance goes beyond what arises without the program"
        else:
            judge = "most of the PL schools' between-school variance goes beyond what arises without the program"
        parts.append(
            f"Placebo schools (comparison schools analysed as if they were PL, k = {int(h['placebo_k'])}) vary with "
            f"τ = {tp:.3f} against τ = {float(h['tau']):.3f} for PL schools: {judge}."
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
                f"(nominal {100 * alpha:.0f}%), {verdict}."
            )
        if pd.notna(h.get("calibrated_positive", np.nan)):
            parts.append(
                f"Allowing for the placebo spread (SE² + τ²_placebo), {int(h['calibrated_positive'])} school(s) remain "
                f"significantly positive and {int(h['calibrated_negative'])} significantly negative (BH-adjusted)."
            )
    return parts


def _verdict_rows(ev: "Evaluation") -> list[dict]:
    rows = []
    eq = ev.equivalence
    for s in ev.subjects:
        e = _subject_rows(eq, s)
        pre = e[e["role"] == "pretest"] if "role" in e.columns else e
        for _, r in pre.iterrows():
            rows.append(
                {"subject": s, "check": f"baseline equivalence: {r['variable']}", "value": f"g = {_f(r['effect_size'], 3, True)}",
                 "verdict": str(r["verdict"])}
            )
        at = _subject_rows(ev.attrition, s)
        for _, r in at.iterrows():
            rows.append(
                {
                    "subject": s,
                    "check": f"attrition ({r['level']})",
                    "value": f"overall {100 * r['overall']:.1f}%, differential {100 * r['differential']:.1f} points",
                    "verdict": f"{r['verdict_cautious']} (cautious boundary), {r['verdict_optimistic']} (optimistic)",
                }
            )
    return rows


def _school_table(ev: "Evaluation", subject: str) -> pd.DataFrame:
    s = _subject_rows(ev.schools, subject).sort_values("effect_size", ascending=False, na_position="last")
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    return pd.DataFrame(
        {
            "school": s["school"].astype(str),
            "n PL": s["n_treated"].map(_int),
            "n comparison": s["n_comparison"].map(_int),
            "effect size": s["effect_size"].map(lambda v: _f(v, 3, True)),
            f"{lvl} CI": [_ci(a, b, 3, True) for a, b in zip(s["es_ci_low"], s["es_ci_high"])],
            "percentile points": s["percentile_points"].map(lambda v: _f(v, 1, True)),
            "p": s["pvalue"].map(_p),
            "adjusted p": s["p_adjusted"].map(_p),
            "shrunken ES": s["shrunk_es"].map(lambda v: _f(v, 3, True)),
            "shrunken pct pts": s["shrunk_pp"].map(lambda v: _f(v, 1, True)),
            "note": s["note"].fillna(""),
        }
    )


def _caveats(ev: "Evaluation") -> list[str]:
    out = [CAVEAT_PERCENTILE]
    out.append(CAVEAT_MATCHED if ev.design == "matched" else CAVEAT_RCT)
    if len(ev.schools):
        out += [CAVEAT_SCHOOL, CAVEAT_MULTIPLICITY]
    sd_kinds = {e.sd_kind for e in ev.effects.values()}
    out.append(
        "Effect sizes divide by the " + "; ".join(sorted(sd_kinds)) + " of the outcome in this sample. A different "
        "SD (for example national norms, or the SD within one grade) gives different effect sizes and percentile "
        "points for the same raw difference; the raw difference in points is reported beside them."
    )
    return out


def _data_rows(ev: "Evaluation") -> list[dict]:
    d = ev.data_summary
    return [{"what": r["reason"], "column": r["column"], "rows": _int(r["n_rows"])} for _, r in d.iterrows()]


def _dropped_rows(ev: "Evaluation") -> list[dict]:
    d = ev.dropped
    if not len(d):
        return []
    return [
        {"stage": r.get("stage", ""), "subject": r.get("subject", ""), "reason": r["reason"], "column": r["column"],
         "rows": _int(r["n_rows"])}
        for _, r in d.iterrows()
    ]


def _options_rows(ev: "Evaluation") -> list[tuple[str, str]]:
    shown = {"subject": "(every subject)", "vcov": "(design default)"}
    rows = [
        (k, shown.get(k, "") if v in (None, "") else (v if isinstance(v, str) else json.dumps(v, default=str)))
        for k, v in ev.options.items()
    ]
    c = ev.columns
    for role, cols in c.roles().items():
        rows.append((f"column: {role}", ", ".join(cols)))
    return rows


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;background:#f6f6f4}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.3em;border-bottom:2px solid #332288;padding-bottom:4px;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}.sub{color:#666;font-size:.92em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}th,td{padding:4px 9px;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
td.wrap{white-space:normal;max-width:420px}
th{background:#f0f0f5;font-weight:600}td.l,th.l{text-align:left}tr.primary td{font-weight:600}
.glance{display:flex;flex-wrap:wrap;gap:16px}.card{flex:1 1 320px;border:1px solid #d8d8e8;border-radius:8px;padding:12px 16px;background:#fafaff}
.big{font-size:2em;font-weight:700;color:#332288}.card p{margin:.4em 0}
.ok{color:#1a7f37;font-weight:600}.warn{color:#b35900;font-weight:600}.bad{color:#b3261e;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.86em}
.caveats li{margin:.4em 0}.scroll{max-height:none;overflow-x:auto}code{background:#f2f2f2;padding:1px 4px;border-radius:3px}
details summary{cursor:pointer;color:#332288;font-weight:600}.ci{color:#666;font-weight:400}
"""

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>PL evaluation — {{ source_name }}</title><style>{{ css }}</style></head>
<body><main>
<h1>Did personalized learning work?</h1>
<p class="sub">{{ design_name }} · input <code>{{ source_name }}</code> (SHA-256 {{ sha_short }}…) · pleval {{ version }} · {{ created }}</p>

<h2 id="glance">At a glance</h2>
<div class="glance">
{% for g in glance %}
<div class="card"><div>{{ g.subject_title }}</div>
<div class="big">{{ g.pp }} percentile points</div>
<p>{{ g.sentence }}</p>
<p>Raw difference {{ g.raw }} points; effect size {{ g.es }} SD ({{ g.es_ci }}).</p>
{% for v in g.verdicts %}<p>{{ v.check }}: <span class="{{ v.cls }}">{{ v.verdict }}</span></p>{% endfor %}
{% if g.het %}<p>{{ g.het }}</p>{% endif %}
</div>
{% endfor %}
</div>

<h2 id="data">1. Data and design</h2>
<p>{{ design_text }}</p>
<table><tr><th class="l">rows</th><th class="l">column</th><th>n</th></tr>
{% for r in data_rows %}<tr><td class="l">{{ r.what }}</td><td class="l">{{ r.column }}</td><td>{{ r.rows }}</td></tr>{% endfor %}
</table>
{% if dropped_rows %}
<h3>Rows and schools left out, by stage</h3>
<table><tr><th class="l">stage</th><th class="l">subject</th><th class="l">reason</th><th class="l">column</th><th>n</th></tr>
{% for r in dropped_rows %}<tr><td class="l">{{ r.stage }}</td><td class="l">{{ r.subject }}</td><td class="l">{{ r.reason }}</td><td class="l">{{ r.column }}</td><td>{{ r.rows }}</td></tr>{% endfor %}
</table>
{% endif %}
{% for n in notes %}<p class="sub">Note: {{ n }}</p>{% endfor %}

<h2 id="balance">2. Balance and WWC verdicts</h2>
<p>What Works Clearinghouse rules: baseline differences of at most 0.05 SD satisfy baseline equivalence; 0.05–0.25 SD
satisfy it only when the impact model adjusts for the characteristic (pleval's models adjust for the pretest and every
covariate); more than 0.25 SD do not.{% if design == 'rct' %} Attrition is judged against the WWC cautious and optimistic boundaries.{% endif %}</p>
<table><tr><th class="l">subject</th><th class="l">check</th><th class="l">value</th><th class="l">WWC verdict</th></tr>
{% for v in verdicts %}<tr><td class="l">{{ v.subject }}</td><td class="l">{{ v.check }}</td><td class="l">{{ v.value }}</td><td class="l"><span class="{{ v.cls }}">{{ v.verdict }}</span></td></tr>{% endfor %}
</table>
{% for t in balance_tables %}<h3>{{ t.title }}</h3><div class="scroll">{{ t.html }}</div>{% endfor %}
{% for f in figs.balance %}<figure><img alt="{{ f.alt }}" src="data:image/png;base64,{{ f.b64 }}"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}

<h2 id="overall">3. Overall effect</h2>
{% for g in glance %}<p><strong>{{ g.subject_title }}.</strong> {{ g.sentence }}</p>{% endfor %}
<div class="scroll"><table><tr><th class="l">subject</th><th class="l">analysis</th><th>raw (points)</th><th>effect size (SD)</th><th>percentile points</th><th>p</th><th>n PL / comparison</th><th>schools</th></tr>
{% for r in overall_rows %}<tr class="{{ 'primary' if r.primary else '' }}"><td class="l">{{ r.subject }}</td><td class="l">{{ r.analysis }}</td><td>{{ r.raw }} <span class="ci">({{ r.raw_ci }})</span></td><td>{{ r.es }} <span class="ci">({{ r.es_ci }})</span></td><td>{{ r.pp }} <span class="ci">({{ r.pp_ci }})</span></td><td>{{ r.p }}</td><td>{{ r.n_treated }} / {{ r.n_control }}</td><td>{{ r.n_clusters }}</td></tr>{% endfor %}
</table></div>
<p class="sub">Bold rows are the primary estimates; {{ lvl }} confidence intervals in brackets. Effect size = ω·(adjusted difference)/SD with ω = 1 − 3/(4N − 9) (Hedges);
SD used: {% for r in overall_rows if r.primary %}{{ r.subject }}: {{ r.sd }}{{ '; ' if not loop.last }}{% endfor %}.
Percentile points = 100·Φ(Φ⁻¹(p/100) + g) − p from the {{ baseline }} percentile.</p>
<details><summary>How each estimate was computed</summary><ul>{% for r in overall_rows %}<li>{{ r.subject }}, {{ r.analysis }}: {{ r.method }}</li>{% endfor %}</ul></details>
{% for f in figs.percentiles %}<figure><img alt="{{ f.alt }}" src="data:image/png;base64,{{ f.b64 }}"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}

<h2 id="schools">4. Schools</h2>
{% if school_tables %}
<p>One estimate per PL school, in effect-size units (the same SD as the overall effect). Colours mark schools significantly
above (blue) or below (red) zero after the {{ adjustment }} adjustment; black dots are empirical-Bayes (shrunken) estimates,
which pull small, noisy schools toward the pooled mean. {% if has_placebo %}The gold row and dashed lines show placebo schools:
comparison schools analysed as if they were PL — the spread to expect with no program at all.{% endif %}</p>
{% for f in figs.forest %}<figure><img alt="{{ f.alt }}" src="data:image/png;base64,{{ f.b64 }}"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}
{% for t in school_tables %}<h3>{{ t.title }}</h3><div class="scroll">{{ t.html }}</div>{% endfor %}
{% else %}<p>No school-by-school effects for this design.</p>{% endif %}

<h2 id="heterogeneity">5. Heterogeneity: how much do schools differ?</h2>
{% if het_rows %}
{% for h in het_rows %}<p><strong>{{ h.subject }}</strong></p><ul>{% for t in h.parts %}<li>{{ t }}</li>{% endfor %}</ul>{% endfor %}
<table><tr><th class="l"></th>{% for h in het_rows %}<th>{{ h.subject }}</th>{% endfor %}</tr>
{% for label, key in het_fields %}<tr><td class="l">{{ label }}</td>{% for h in het_rows %}<td>{{ h[key] }}</td>{% endfor %}</tr>{% endfor %}
</table>
<p class="sub">Random-effects meta-analysis of the school effect sizes ({{ het_rows[0].method }} estimate of τ²; Q-profile CI for τ);
prediction interval μ̂ ± t(k−2)·√(τ̂² + SE²) (Higgins, Thompson &amp; Spiegelhalter 2009). Adjusted counts use {{ het_rows[0].adjustment }}.</p>
{% for f in figs.distribution %}<figure><img alt="{{ f.alt }}" src="data:image/png;base64,{{ f.b64 }}"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}
{% else %}<p>No heterogeneity analysis for this design.</p>{% endif %}

<h2 id="caveats">6. Caveats</h2>
<ul class="caveats">{% for c in caveats %}<li>{{ c }}</li>{% endfor %}</ul>
{% if warnings %}<h3>Warnings raised during the analysis</h3><ul>{% for w in warnings %}<li class="warn">{{ w }}</li>{% endfor %}</ul>{% endif %}

<h2 id="provenance">7. Provenance and options</h2>
<table>{% for k, v in options %}<tr><td class="l">{{ k }}</td><td class="l">{{ v }}</td></tr>{% endfor %}
<tr><td class="l">input</td><td class="l">{{ source }}</td></tr><tr><td class="l">input SHA-256</td><td class="l"><code>{{ sha }}</code></td></tr>
<tr><td class="l">pleval / python</td><td class="l">{{ version }} / {{ python }}</td></tr><tr><td class="l">packages</td><td class="l">{{ packages }}</td></tr></table>
<p class="sub">To repeat this run exactly: <code>pleval estimate --config run.toml</code> (the file <code>run.toml</code> in the outputs folder holds every option; its paths are relative to that folder).</p>
</main></body></html>
"""


def _cls(verdict: str) -> str:
    v = verdict.lower()
    if v.startswith("not") or v.startswith("high"):
        return "bad"
    if "adjustment" in v or "requires" in v:
        return "warn"
    if v.startswith("satisfied") or v.startswith("low"):
        return "ok"
    return ""


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _captions(ev: "Evaluation", name: str) -> str:
    kind = name.split("_", 1)[0]
    return {
        "forest": "School effects (squares: each school's own estimate with its CI; dots: shrunken estimates). "
        "Diamond: pooled random-effects estimate; shaded band: prediction interval for a new school. "
        "Top axis: percentile points.",
        "distribution": "Histogram of school estimates, their shrunken values, the placebo schools and the estimated "
        "distribution of true school effects N(μ, τ²).",
        "love": "Absolute standardized mean differences of each baseline characteristic"
        + (" before and after matching." if ev.design == "matched" else " between the randomized groups (analytic sample).")
        + " Dashed line 0.05, solid line 0.25 (WWC bands).",
        "overlap": "Propensity scores of PL (up) and comparison (down) students, before and after matching.",
        "percentiles": "How an effect size converts to percentile points from different starting percentiles; the "
        "estimate and its confidence interval are marked.",
    }.get(kind, "")


def _fig_payload(ev: "Evaluation", images: dict[str, bytes]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {"balance": [], "percentiles": [], "forest": [], "distribution": []}
    for name, png in images.items():
        kind = name.split("_", 1)[0]
        group = "balance" if kind in ("love", "overlap") else kind
        if group in groups:
            groups[group].append({"alt": name.replace("_", " "), "b64": _b64(png), "caption": _captions(ev, name)})
    return groups


_NUMERIC_CELL = re.compile(r"^(?:[+\-−<>]?\s*[\d.,]+%?(?:\s+to\s+[+\-−]?[\d.,]+)?|—|)$")


def _html_table(df: pd.DataFrame) -> Markup:
    """A plain HTML table; columns whose cells are all numbers (or number ranges) align right."""
    cols = list(df.columns)
    right = [all(_NUMERIC_CELL.match(str(v).strip()) for v in df[c]) for c in cols]
    cls = ['' if r else ' class="l"' for r in right]
    head = "".join(f"<th{k}>{html.escape(str(c))}</th>" for c, k in zip(cols, cls))
    body = "".join(
        "<tr>" + "".join(f"<td{k}>{html.escape(str(v))}</td>" for v, k in zip(row, cls)) + "</tr>"
        for row in df.itertuples(index=False, name=None)
    )
    return Markup(f'<table class="data"><tr>{head}</tr>{body}</table>')


def _balance_display(ev: "Evaluation", subject: str) -> pd.DataFrame | None:
    b = _subject_rows(ev.balance, subject)
    if not len(b):
        return None
    out = pd.DataFrame({"variable": b["variable"].astype(str)})
    before = "before matching" if ev.design == "matched" else "baseline difference"
    out[f"SMD {before}"] = b["smd_before"].map(lambda v: _f(v, 3, True))
    if "smd_after" in b.columns:
        out["SMD after matching"] = b["smd_after"].map(lambda v: _f(v, 3, True))
    for c in ("variance_ratio_after", "var_ratio_after", "measure", "verdict"):
        if c in b.columns:
            out[c.replace("_", " ")] = b[c].map(lambda v: _f(v, 2) if isinstance(v, (float, np.floating)) else str(v))
    return out


def _glance(ev: "Evaluation") -> list[dict]:
    out = []
    verdicts = _verdict_rows(ev)
    for s in ev.subjects:
        e = ev.effects[s]
        h = _het_row(ev, s)
        het = None
        if h is not None:
            het = (
                f"Schools differ: τ = {float(h['tau']):.3f} SD; {int(h['count_positive_adjusted'])} significantly "
                f"positive and {int(h['count_negative_adjusted'])} significantly negative of {int(h['k'])} after "
                "multiplicity adjustment."
            )
        out.append(
            {
                "subject_title": "All students" if s == "all" else s.capitalize(),
                "pp": _f(e.percentile_points.estimate, 1, True),
                "sentence": ev.sentence(s),
                "raw": _f(e.raw.estimate, 2, True),
                "es": _f(e.effect_size.estimate, 3, True),
                "es_ci": f"{e.effect_size.level:.0%} CI " + _ci(e.effect_size.ci_low, e.effect_size.ci_high, 3, True),
                "verdicts": [dict(v, cls=_cls(v["verdict"])) for v in verdicts if v["subject"] == s],
                "het": het,
            }
        )
    return out


def render_html(ev: "Evaluation", images: dict[str, bytes] | None = None) -> str:
    """The self-contained HTML report (``images``: PNG bytes by figure name; made if omitted)."""
    if images is None:
        images = {k: plots.to_png(f, dpi=110) for k, f in figures(ev).items()}
    prov = ev.provenance
    inp = prov.get("input", {})
    source = inp.get("path") or "(a DataFrame)"
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    balance_tables = []
    school_tables = []
    for s in ev.subjects:
        bd = _balance_display(ev, s)
        if bd is not None:
            what = "Balance table" if ev.design == "matched" else "Baseline differences (analytic sample)"
            balance_tables.append({"title": _title(ev, s, what), "html": _html_table(bd)})
        if len(_subject_rows(ev.schools, s)):
            school_tables.append({"title": _title(ev, s, "School table"), "html": _html_table(_school_table(ev, s))})
    env = Environment(autoescape=True)
    tpl = env.from_string(_TEMPLATE)
    verdicts = [dict(v, cls=_cls(v["verdict"])) for v in _verdict_rows(ev)]
    return tpl.render(
        css=Markup(_CSS),
        source_name=Path(source).name if inp.get("path") else source,
        source=source,
        sha=inp.get("sha256", ""),
        sha_short=str(inp.get("sha256", ""))[:12],
        version=prov.get("pleval_version", ""),
        python=prov.get("python", ""),
        packages=", ".join(f"{k} {v}" for k, v in prov.get("packages", {}).items()),
        created=prov.get("created_utc", ""),
        design=ev.design,
        design_name="Matched comparison" if ev.design == "matched" else "Randomized trial",
        design_text=_design_text(ev),
        glance=_glance(ev),
        data_rows=_data_rows(ev),
        dropped_rows=_dropped_rows(ev),
        notes=list(dict.fromkeys(ev.notes)),
        verdicts=verdicts,
        balance_tables=balance_tables,
        overall_rows=_overall_rows(ev),
        lvl=lvl,
        baseline=percentiles._ordinal(next(iter(ev.effects.values())).baseline_percentile),
        figs=_fig_payload(ev, images),
        school_tables=school_tables,
        has_placebo=len(ev.placebo) > 0,
        adjustment={"bh": "Benjamini–Hochberg", "holm": "Holm", "bonferroni": "Bonferroni"}.get(
            str(ev.options.get("adjust")), str(ev.options.get("adjust"))
        ),
        het_rows=_het_rows(ev),
        het_fields=[
            ("PL schools with an estimate", "k"), ("pooled effect size", "pooled"), (f"{lvl} CI", "pooled_ci"),
            ("τ (SD of true school effects)", "tau"), (f"τ {lvl} CI (Q-profile)", "tau_ci"), ("I²", "i2"),
            ("Q (test of no heterogeneity)", "q"), ("prediction interval, effect size", "pi"),
            ("prediction interval, percentile points", "pi_pp"),
            ("significantly positive: raw / adjusted", "pos"), ("significantly negative: raw / adjusted", "neg"),
            ("expected by chance (raw)", "expected"), ("τ of placebo schools (k)", "placebo"),
            ("share of τ² beyond the placebo level", "excess"),
        ],
        caveats=_caveats(ev),
        warnings=list(ev.warnings),
        options=_options_rows(ev),
    )


def render_fragment(ev: "Evaluation") -> str:
    """Compact HTML for Jupyter: the sentences and the primary effects."""
    rows = [r for r in _overall_rows(ev) if r["primary"]]
    body = "".join(
        f"<tr><td style='text-align:left'>{html.escape(r['subject'])}</td><td>{r['raw']}</td><td>{r['es']}</td>"
        f"<td>{r['es_ci']}</td><td>{r['pp']}</td><td>{r['pp_ci']}</td><td>{r['p']}</td><td>{r['n_treated']}</td>"
        f"<td>{r['n_control']}</td></tr>"
        for r in rows
    )
    sentences = "".join(f"<li>{html.escape(ev.sentence(s))}</li>" for s in ev.subjects)
    het = "".join(f"<li>{html.escape(str(h['subject']))}: {html.escape(h['sentence'])}</li>" for h in _het_rows(ev))
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in ev.warnings)
    return (
        f"<div class='pleval-result'><strong>Evaluation</strong> ({html.escape(ev.design)}, {html.escape(ev.method)})"
        "<table><tr><th>subject</th><th>raw (points)</th><th>effect size</th><th>CI</th><th>percentile points</th>"
        f"<th>CI</th><th>p</th><th>n PL</th><th>n comparison</th></tr>{body}</table><ul>{sentences}</ul>"
        + (f"<p><em>Schools</em></p><ul>{het}</ul>" if het else "")
        + (f"<p><em>Warnings</em></p><ul>{warn}</ul>" if warn else "")
        + f"<p style='color:#666'>{html.escape(percentiles.NOTE)}</p></div>"
    )


# --------------------------------------------------------------------------------------
# Text and Markdown
# --------------------------------------------------------------------------------------
def render_text(ev: "Evaluation") -> str:
    """Plain-text summary (``Evaluation.summary()``)."""
    lines = [f"Evaluation: {_design_text(ev)}"]
    ds = ev.data_summary
    if len(ds):
        lines.append("Data: " + "; ".join(f"{r['reason']} {int(r['n_rows']):,}" for _, r in ds.iterrows()))
    for r in _overall_rows(ev):
        star = "*" if r["primary"] else " "
        lines.append(
            f" {star}{r['subject']:<10}{r['analysis'][:28]:<29} raw {r['raw']:>7} ({r['raw_ci']})  ES {r['es']:>7} "
            f"({r['es_ci']})  pct pts {r['pp']:>6} ({r['pp_ci']})  p {r['p']}"
        )
    for s in ev.subjects:
        lines.append("  " + ev.sentence(s))
    for v in _verdict_rows(ev):
        lines.append(f"  WWC [{v['subject']}] {v['check']}: {v['value']} -> {v['verdict']}")
    for h in _het_rows(ev):
        lines.append(f"  Schools [{h['subject']}]: {h['sentence']}")
    for w in ev.warnings:
        lines.append(f"  warning: {w}")
    lines.append(f"  {percentiles.NOTE}")
    return "\n".join(lines)


def _md_table(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True) if len(df) else "_(none)_"


def render_markdown(ev: "Evaluation", plot_files: dict[str, str] | None = None) -> str:
    """``summary.md``: the findings, the tables that matter and links to the plots."""
    prov = ev.provenance
    inp = prov.get("input", {})
    out = [
        "# Did personalized learning work?",
        "",
        f"*{_design_text(ev)}*  ",
        f"Input `{inp.get('path') or '(a DataFrame)'}` (SHA-256 `{inp.get('sha256', '')}`), pleval {prov.get('pleval_version')}, "
        f"{prov.get('created_utc')}.",
        "",
        "## At a glance",
        "",
    ]
    out += [f"- {ev.sentence(s)}" for s in ev.subjects]
    out += ["", "## Overall effect", ""]
    ov = pd.DataFrame(_overall_rows(ev))
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    if len(ov):
        t = ov[["subject", "analysis", "raw", "raw_ci", "es", "es_ci", "pp", "pp_ci", "p", "n_treated", "n_control"]]
        t.columns = ["subject", "analysis", "raw (points)", f"{lvl} CI", "effect size", f"{lvl} CI ", "percentile points",
                     f"{lvl} CI  ", "p", "n PL", "n comparison"]
        out += [_md_table(t), ""]
        out += ["SD used: " + "; ".join(f"{r['subject']}: {r['sd']}" for r in _overall_rows(ev) if r["primary"]) + ".", ""]
    out += ["## Data and design", "", _md_table(pd.DataFrame(_data_rows(ev))), ""]
    if len(ev.dropped):
        out += [_md_table(pd.DataFrame(_dropped_rows(ev))), ""]
    out += ["## Balance and WWC verdicts", "", _md_table(pd.DataFrame(_verdict_rows(ev))), ""]
    het = _het_rows(ev)
    if het:
        out += ["## Schools and heterogeneity", ""]
        out += [f"- **{h['subject']}**: {h['sentence']}" for h in het]
        out += [""]
        for s in ev.subjects:
            if len(_subject_rows(ev.schools, s)):
                out += [f"### {_title(ev, s, 'School table')}", "", _md_table(_school_table(ev, s)), ""]
    if plot_files:
        out += ["## Plots", ""] + [f"- [{k}]({v})" for k, v in plot_files.items()] + [""]
    out += ["## Caveats", ""] + [f"- {c}" for c in _caveats(ev)] + [""]
    if ev.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in ev.warnings] + [""]
    out += ["See `report.html` for the full report and `run.toml` to repeat this run.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# The outputs folder
# --------------------------------------------------------------------------------------
def run_config(ev: "Evaluation", *, file: str | None = None, out: str | None = None) -> dict[str, Any]:
    """The resolved configuration as a TOML-ready dict (no None values): what ``run.toml`` holds
    and ``pleval estimate --config`` reads back."""
    opts = dict(ev.options)
    cfg: dict[str, Any] = {}
    src = file or ev.provenance.get("input", {}).get("path")
    if src:
        cfg["file"] = str(src)
    for k in ("design", "method", "subject", "seed"):
        if opts.get(k) is not None:
            cfg[k] = opts.pop(k)
        else:
            opts.pop(k, None)
    if out:
        cfg["out"] = str(out)
    cols = {}
    for role, cols_ in ev.columns.roles().items():
        cols[role] = list(cols_) if role in ("pretest", "covariates") else cols_[0]
    for role in ("pretest", "covariates"):
        cols.setdefault(role, [])
    if ev.columns.treated_label is not None:
        cols["treated_label"] = ev.columns.treated_label
    cfg["columns"] = cols
    match = opts.pop("match", None)
    cfg["options"] = {k: v for k, v in opts.items() if v is not None}
    if match:
        cfg["match"] = {k: v for k, v in match.items() if v is not None}
    return _toml_safe(cfg)


def _toml_safe(v):
    if isinstance(v, dict):
        return {str(k): _toml_safe(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_toml_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


_OUTPUT_FILES = (
    "summary.md", "overall.csv", "school_effects.csv", "school_effects.xlsx", "balance.csv", "equivalence.csv",
    "heterogeneity.csv", "attrition.csv", "placebo.csv", "run.toml", "provenance.json", "report.html",
)


def _previous_outputs(out: Path) -> list[str] | None:
    """Files a previous pleval run wrote into ``out`` (None if ``out`` is not a pleval output)."""
    p = out / "provenance.json"
    if not p.is_file():
        return None
    try:
        prov = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if prov.get("kind") != PROVENANCE_MARK:
        return None
    return [str(f) for f in prov.get("outputs", [])]


def write_outputs(ev: "Evaluation", out_dir, *, force: bool = False, command: str | None = None,
                  input_path: str | None = None, dpi: int = 130) -> Path:
    """Write the outputs folder for ``ev`` and return its path.

    Refuses (``PlevalError``) a non-empty folder that is not a previous pleval output unless
    ``force``; never writes over the input file (even with ``force``). Files a previous pleval
    run wrote there are replaced; other files are left alone.
    """
    import tomli_w

    out = Path(out_dir)
    src = input_path or ev.provenance.get("input", {}).get("path")
    src_path = Path(src).resolve() if src else None
    if out.exists() and not out.is_dir():
        raise PlevalError(f"--out {out}: exists and is not a folder")
    previous = _previous_outputs(out) if out.exists() else None
    if out.exists() and any(out.iterdir()) and previous is None and not force:
        raise PlevalError(
            f"--out {out}: the folder is not empty and is not a previous pleval output (no pleval provenance.json); "
            "choose another folder or pass --force"
        )
    if src_path is not None:
        here = out.resolve()
        ours = src_path.parent == here and src_path.name in _OUTPUT_FILES
        in_plots = src_path.parent == here / "plots" and src_path.suffix.lower() == ".png"
        listed = previous is not None and any((out / f).resolve() == src_path for f in previous)
        if src_path == here or ours or in_plots or listed:
            raise PlevalError(f"--out {out}: writing there would overwrite the input file {src}; choose another folder")
    figs = figures(ev)
    out.mkdir(parents=True, exist_ok=True)
    for f in previous or []:  # files of the previous run (stale plots of other subjects, ...)
        p = out / f
        if p.is_file() and p.resolve() != src_path:
            p.unlink()
    (out / "plots").mkdir(exist_ok=True)

    written: list[str] = []

    def put(name: str, data: str | bytes) -> None:
        p = out / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data, encoding="utf-8")
        written.append(name)

    images = {}
    plot_files = {}
    for k, fig in figs.items():
        images[k] = plots.to_png(fig, dpi=dpi)
        put(f"plots/{k}.png", images[k])
        plot_files[k] = f"plots/{k}.png"
    put("overall.csv", ev.overall.to_csv(index=False))
    put("school_effects.csv", ev.schools.to_csv(index=False))
    _write_school_xlsx(ev, out / "school_effects.xlsx")
    written.append("school_effects.xlsx")
    put("balance.csv", ev.balance.to_csv(index=False))
    put("equivalence.csv", ev.equivalence.to_csv(index=False))
    put("heterogeneity.csv", ev.heterogeneity.to_csv(index=False))
    if len(ev.attrition):
        put("attrition.csv", ev.attrition.to_csv(index=False))
    if len(ev.placebo):
        put("placebo.csv", ev.placebo.to_csv(index=False))
    put("summary.md", render_markdown(ev, plot_files))
    put("report.html", render_html(ev, images))
    put("run.toml", "# pleval estimate: the resolved configuration of this run.\n"
                    "# Repeat it exactly with: pleval estimate --config run.toml\n"
                    + tomli_w.dumps(run_config(ev, file=_relative(src, out) if src else None, out=".")))
    prov = {
        "kind": PROVENANCE_MARK,
        **json.loads(json.dumps(dict(ev.provenance), default=str)),
        "command": command,
        "design": ev.design,
        "method": ev.method,
        "options": json.loads(json.dumps(dict(ev.options), default=str)),
        "warnings": list(ev.warnings),
        "outputs": sorted(written + ["provenance.json"]),
    }
    (out / "provenance.json").write_text(json.dumps(prov, indent=2), encoding="utf-8")
    return out


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` (how ``run.toml`` stores it: paths in a config file are
    read relative to the file's folder), or absolute where no relative path exists."""
    import os

    try:
        return os.path.relpath(Path(path).resolve(), folder.resolve())
    except ValueError:  # pragma: no cover - different drives on Windows
        return str(Path(path).resolve())


def _write_school_xlsx(ev: "Evaluation", path: Path) -> None:
    """The school table as Excel: :meth:`pleval.heterogeneity.SchoolEffects.export` (one formatted
    sheet per subject, a summary sheet, footnotes); a one-sheet note when there are none."""
    se = ev.school_effects
    if se is not None:
        se.export(path, title="Effect of personalized learning by school")
        return
    pd.DataFrame({"note": ["no school-by-school effects for this design"]}).to_excel(path, sheet_name="schools",
                                                                                        index=False)


__all__ = [
    "figures",
    "render_html",
    "render_markdown",
    "render_text",
    "render_fragment",
    "write_outputs",
    "run_config",
    "PROVENANCE_MARK",
]
