"""Several outcomes in one run, each on its own scale, with the WWC's multiplicity correction
within outcome domains.

``pleval.estimate(..., outcomes=["posttest", "proficient", "days_absent"])`` (CLI
``--outcomes``) analyses every outcome on the design's analytic sample (the matched sample,
or the trial's randomized sample with that outcome's own attrition):

* a **score** (any other numeric column) by the design's own regression — matched: WLS on the
  matched sets, CR2 by school; trial: the OLS ITT with block effects, CR2 — on the three
  scales (its own units, Hedges' g with the pooled SD of that outcome, percentile points);
* a **yes/no** outcome (0/1, yes/no, true/false; :func:`pleval.binary.is_binary`) by logistic
  regression or the linear-probability model (``binary_method``), as the difference in
  percentage points and the Cox index (:mod:`pleval.binary`); percentile points are not
  defined for it and are left empty with the reason.

The first outcome given by ``columns.outcome`` is the *primary* outcome: the school effects,
placebo schools, subgroups and sensitivity analysis are computed for it alone.

**Domains and the multiplicity correction.** The WWC corrects for multiple comparisons within
an outcome domain (Benjamini–Hochberg; WWC Procedures Handbook v4.1 and v5.0) and not
across domains. pleval adjusts the p-values of the outcomes of each subject
× domain together (``adjust``, BH by default): a domain is a family of tests answering one
question (*did achievement in math improve?*), and math and reading are different domains, as
in WWC reviews. Which outcomes form a domain is a judgement of the review protocol that a
column cannot reveal, so by default every outcome is in the **achievement** domain — the
conservative choice, because an outcome left in the family can only add tests to correct for
— and outcomes that answer a different question are named with ``domains``
(``--domains days_absent=attendance``): each named domain is its own family, so an undesirable
side effect (more absences) is tested beside achievement without diluting it.

**Direction.** An effect is favourable when it is positive, unless the outcome is listed in
``lower_is_better`` (e.g. days absent); the WWC rating and ESSA tier of each outcome (its own
attrition and baseline equivalence in a trial; its own analytic sample in a matched design)
use that direction.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .binary import FIRST_ROWS, METHODS, NO_PERCENTILE, binary_effect, binary_values, is_binary
from .errors import DataError
from .standards import differential_text, overall_text

ACHIEVEMENT = "achievement"


# ----------------------------------------------------------------------------- options
def _names(value, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    if not (isinstance(value, (list, tuple)) and all(isinstance(x, str) and x for x in value)):
        raise DataError(f"option {option} must be column names, e.g. posttest,proficient; got {value!r}")
    return tuple(dict.fromkeys(value))


def check_options(o: dict) -> None:
    """Validate and normalize ``outcomes``, ``domains``, ``binary_method`` and ``lower_is_better``."""
    o["outcomes"] = _names(o["outcomes"], "outcomes")
    o["lower_is_better"] = _names(o["lower_is_better"], "lower_is_better")
    d = o["domains"]
    if isinstance(d, str):
        pairs = [x.strip() for x in d.split(",") if x.strip()]
        if not all(p.count("=") == 1 and all(s.strip() for s in p.split("=")) for p in pairs):
            raise DataError(f"option domains must be OUTCOME=DOMAIN pairs, e.g. days_absent=attendance; got {d!r}")
        d = dict(tuple(s.strip() for s in p.split("=")) for p in pairs)
    if not (isinstance(d, Mapping) and all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in d.items())):
        raise DataError(f"option domains must map outcomes to domain names, e.g. {{days_absent = 'attendance'}}; got {d!r}")
    o["domains"] = dict(d)
    if o["binary_method"] not in METHODS:
        raise DataError(f"option binary_method must be one of {', '.join(METHODS)}; got {o['binary_method']!r}")


def outcome_plan(df: pd.DataFrame, primary: str, opts: Mapping[str, Any]) -> pd.DataFrame:
    """One row per outcome (the primary first): its kind (``score``/``binary``), domain and
    favourable direction. Errors name an absent column, a domain or direction given for an
    outcome not analysed, a column that is neither numeric nor yes/no, and two numeric codes
    other than 0/1 (e.g. 1/2: which one means yes?)."""
    names = tuple(dict.fromkeys((primary, *opts["outcomes"])))
    for n in names:
        if n not in df.columns:
            raise DataError(f"outcome column {n!r} is not in the data")
    for option in ("domains", "lower_is_better"):
        extra = [k for k in opts[option] if k not in names]
        if extra:
            raise DataError(f"option {option} names {', '.join(map(repr, extra))}, which is not among the outcomes "
                            f"({', '.join(names)})")
    rows = []
    for n in names:
        col = as_numbers(df[n])
        if pd.api.types.is_numeric_dtype(col) and _two_values(col):
            binary_values(col, n)  # two numbers other than 0/1: which one means yes is ambiguous
        if is_binary(col):
            kind = "binary"
        elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            kind = "score"
        else:
            codes = ", ".join(map(repr, pd.unique(col.dropna())[:5]))
            raise DataError(f"outcome column {n!r} is neither a score (numbers) nor a yes/no outcome (codes {codes}); "
                            "recode it to numbers or to 1 = yes, 0 = no")
        rows.append({"outcome": n, "kind": kind, "domain": opts["domains"].get(n, ACHIEVEMENT),
                     "favourable": "lower" if n in opts["lower_is_better"] else "higher"})
    if rows[0]["kind"] == "binary":
        raise DataError(f"column {primary!r} (outcome) holds yes/no codes: the primary outcome (school effects, placebo "
                        "schools, subgroups) must be a score; name a score column as the outcome and analyse "
                        f"{primary!r} beside it (--outcome SCORE --outcomes {primary}; in Python, the score as "
                        f"columns' outcome and outcomes=[{primary!r}])")
    return pd.DataFrame(rows)


def _two_values(col: pd.Series) -> bool:
    """Whether ``col`` holds exactly two distinct values (missing ones aside); a column with more
    than two among its first rows (a score) is told so without a pass over every row."""
    return col.iloc[:FIRST_ROWS].nunique() <= 2 and col.nunique() == 2


def as_numbers(col: pd.Series) -> pd.Series:
    """``col`` as floats when it holds text or Python objects every one of which reads as a
    number, as :func:`pleval.data.validate` reads a score column (``pd.to_numeric``: a column of
    dtype object after ``.astype(object)``, ``.where(mask, pd.NA)`` or a merge, missing values as
    NaN, ``None`` or ``pd.NA``); else ``col`` itself (numbers already, yes/no text, dates)."""
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return col
    conv = pd.to_numeric(col, errors="coerce")
    return col if (conv.isna() & col.notna()).any() else conv.astype(float)


def binary_frame(df: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every yes/no outcome coded 1.0/0.0 (NaN where missing); attrs kept."""
    binary = plan.loc[plan["kind"] == "binary", "outcome"]
    if not len(binary):
        return df
    attrs = dict(df.attrs)
    out = df.assign(**{n: binary_values(df[n], n) for n in binary})
    out.attrs = attrs
    return out


# ----------------------------------------------------------------------------- estimation
def _score_row(eff) -> dict:
    r, es, pp = eff.raw, eff.effect_size, eff.percentile_points
    return {"scale": "raw", "estimate": r.estimate, "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "df": r.df,
            "pvalue": r.pvalue, "effect_size": es.estimate, "es_measure": "Hedges g", "es_se": es.se,
            "es_ci_low": es.ci_low, "es_ci_high": es.ci_high, "percentile_points": pp.estimate,
            "pp_ci_low": pp.ci_low, "pp_ci_high": pp.ci_high, "p_treated": math.nan, "p_comparison": math.nan,
            "n_treated": r.n_treated, "n_control": r.n_control, "n_clusters": r.n_clusters, "method": r.method,
            "note": ""}


def _binary_row(b) -> dict:
    d, c = b.difference, b.cox
    return {"scale": "percentage points", "estimate": d.estimate, "se": d.se, "ci_low": d.ci_low, "ci_high": d.ci_high,
            "df": d.df, "pvalue": b.pvalue, "effect_size": c.estimate, "es_measure": "Cox index", "es_se": c.se,
            "es_ci_low": c.ci_low, "es_ci_high": c.ci_high, "percentile_points": math.nan, "pp_ci_low": math.nan,
            "pp_ci_high": math.nan, "p_treated": b.p_treated, "p_comparison": b.p_comparison,
            "n_treated": d.n_treated, "n_control": d.n_control, "n_clusters": d.n_clusters, "method": d.method,
            "note": NO_PERCENTILE}


def _favour(es: float, p: float) -> SimpleNamespace:
    """The shape of an Effect that :func:`pleval.estimate._rate` reads (effect size and p)."""
    e = SimpleNamespace(effect_size=SimpleNamespace(estimate=es, pvalue=p))
    return e


def _outcome_sample(matched: pd.DataFrame, outcome: str, treatment: str) -> tuple[pd.DataFrame, int]:
    """The matched sample of one outcome: rows with that outcome, without the sets whose PL
    student lacks it; the remaining comparisons of a set re-weighted to the set's former total
    (so every set still counts once). Returns the sample and the number of rows left out."""
    has = matched[outcome].notna().to_numpy()
    t = matched[treatment].to_numpy() == 1
    sets = matched["_set"].to_numpy()
    in_set = sets >= 0
    lost_sets = np.unique(sets[in_set & t & ~has])
    keep = has & ~(in_set & np.isin(sets, lost_sets))
    out = matched[keep].copy()
    comp = (~t & in_set)
    before = pd.Series(matched["_weight"].to_numpy()[comp]).groupby(sets[comp]).sum()
    k = keep[comp]
    after = pd.Series(matched["_weight"].to_numpy()[comp][k]).groupby(sets[comp][k]).sum()
    factor = (before / after).reindex(out["_set"].to_numpy()).to_numpy()
    oc = (out[treatment].to_numpy() != 1) & (out["_set"].to_numpy() >= 0)
    w = out["_weight"].to_numpy(dtype=float).copy()
    w[oc] *= factor[oc]
    out["_weight"] = w
    return out, int((~keep).sum())


def matched_outcome(m, subject, outcome: str, kind: str, opts: Mapping[str, Any], rate) -> tuple[dict, Any, str]:
    """One outcome of a matched design for one subject: the table row, its WWC rating and a note."""
    from .inference.robust import default_vcov
    from .matching.balance import pretest_equivalence
    from .matching.effect import effect_design, regression_design, regression_effect

    c = m.columns
    sample = m.matched if subject is None else m.matched[m.matched[c.subject] == subject]
    sample, n_out = _outcome_sample(sample, outcome, c.treatment)
    label = outcome if subject is None else f"{outcome} ({subject})"
    kw = dict(outcome=outcome, treatment=c.treatment, pretests=c.pretest, covariates=c.covariates, strata=m.strata,
              school=c.school)
    if kind == "score":
        # the primary estimate's conventions (MatchResult.group_fits as pleval.estimate calls it): an outcome
        # written twice gave two rows, CR2 df 31.7 beside 32.7, and with --vcov CR1 a CR2 row labelled as such
        # the copies of a reused comparison fitted as one row, as the primary fit does (with a random-effect
        # working model the copies counted apart gave df 31.7 where the primary's is 32.8)
        pos = m.data.index.get_indexer(sample.index) if m.data.index.is_unique else None
        design = effect_design(sample, **kw, rows=pos, label=label) if pos is not None and (pos >= 0).all() else None
        eff = regression_effect(sample, **kw, design=design, sd=opts["sd"],
                                vcov=opts["vcov"] or default_vcov("matched", c.school),
                                cluster_df=opts["cluster_df"], cr2=opts["cr2"], df_working=opts["df_working"],
                                level=opts["level"], baseline_percentile=opts["baseline_percentile"],
                                method=m._method_label(), label=label)
        row, es, p = _score_row(eff), eff.effect_size.estimate, eff.raw.pvalue
    else:
        d = regression_design(sample, **kw, label=label)
        se = binary_se(opts, default=default_vcov("matched", c.school))
        b = binary_effect(d["y"], d["X"], d["names"], treatment=c.treatment, weights=d["weights"],
                          clusters=d["clusters"] if se["lpm_vcov"].startswith("CR") else None,
                          method=opts["binary_method"], estimand="ATT", level=opts["level"], label=label,
                          description=f"; {m._method_label()}; adjusted for {', '.join(d['adjust']) or 'nothing'}", **se)
        row, es, p = _binary_row(b), b.cox.estimate, b.pvalue
        row["n_control"] = int(pd.Index(sample.index[d["t"] == 0]).nunique())
    row.update(estimand="ATT", estimation=kind_estimation(kind, opts))
    eq = pd.DataFrame(columns=["variable", "role", "effect_size", "adjusted_in_model"])
    if c.pretest:
        g = pretest_equivalence(sample, c.treatment, c.main_pretest, strata=m.strata)["hedges_g"]
        eq = pd.DataFrame([{"variable": c.main_pretest, "role": "pretest", "effect_size": g, "adjusted_in_model": True}])
    t = sample[c.treatment].to_numpy() == 1
    school = pd.factorize(sample[c.school])[0]  # a missing id is code −1 in both arms, as isin matches NaN to NaN
    n = int(sample[c.student_id].nunique()) if c.student_id else len(sample)
    counts = (n, int(sample[c.school][t].nunique()), int(sample[c.school][~t].nunique()),
              bool(np.isin(school[t], school[~t]).any()))
    design = SimpleNamespace(sample_counts={subject: counts})  # what _rate reads (MatchResult.sample_counts)
    part = {"details": {"design": design}, "effect": _favour(es, p), "equivalence": eq}
    part["effects"] = {"": part["effect"]}
    r = rate("matched", part, subject, None, c.replace(outcome=outcome), opts)
    note = (f"{label}: {n_out:,} matched row(s) without this outcome (or whose set's PL student lacks it) left out"
            if n_out else "")
    return row, r, note


def binary_se(opts: Mapping[str, Any], default: str) -> dict:
    """The run's SE for a yes/no outcome's model, as the score outcomes': its ``vcov`` (``default``
    when none is given; a CR type without clusters is its HC type) and conventions (``cluster_df``,
    ``df_working``). The logistic regression has CR2/HC2 and CR1/HC1; it takes CR1 for CR1 and HC1
    and CR2 otherwise, as its method text says. Before 2026-12-04 the yes/no outcomes kept CR2
    and the G − 1 df whatever the run asked for."""
    vcov = opts["vcov"] or default
    return dict(lpm_vcov=vcov, logit_vcov="CR1" if vcov in ("CR1", "HC1") else "CR2",
                cluster_df=opts["cluster_df"], df_working=opts["df_working"])


def rct_outcome(df: pd.DataFrame, columns, subject, outcome: str, kind: str, opts: Mapping[str, Any], rate):
    """One outcome of a randomized trial for one subject: the table row, its WWC rating (its own
    attrition and baseline equivalence) and a note."""
    from . import rct
    from .inference.robust import default_vcov

    cols = columns.replace(outcome=outcome)
    design = opts["rct_design"]
    res = rct.analyze_rct(df, cols, design=design, method="ols", subject=subject, sd=opts["sd"], level=opts["level"],
                          baseline_percentile=opts["baseline_percentile"], vcov=opts["vcov"] or None, compliance=False,
                          cluster_df=opts["cluster_df"], df_working=opts["df_working"], lin=bool(opts["lin"]))
    label = outcome if subject is None else f"{outcome} ({subject})"
    if kind == "score":
        eff = res.itt
        row, effects = _score_row(eff), {k: _favour(e.effect_size.estimate, e.raw.pvalue) for k, e in res.effects.items()}
        main = effects["ITT"]
    else:
        c2, _, ana, cov_names, _, notes = rct._validate(df, cols, design, None, subject)
        mod = rct._model(ana, c2, cov_names, notes)
        se = binary_se(opts, default=default_vcov(design, columns.school))  # the ITT's default
        clustered = se["lpm_vcov"].startswith("CR")  # (an HC vcov in a cluster design: unclustered, as the ITT)
        absorb = not clustered and opts["binary_method"] == "lpm" and mod.absorbs("HC2")  # the LPM's HC2, as the ITT
        # the additive model, whatever lin says (the ITT's options["model"] is Lin's under lin: before 2026-12-05
        # the method text said so, and "block FE (absorbed)" where the indicators are columns)
        b = binary_effect(mod.y, *((mod.Xa, mod.names_a) if absorb else (mod.X, mod.names)), treatment="treatment",
                          clusters=mod.school if clustered else None, absorb=mod.block_codes if absorb else None,
                          method=opts["binary_method"], estimand="ITT", level=opts["level"], label=label,
                          description="; " + rct._model_text(c2, cov_names, absorb), **se)
        row = _binary_row(b)
        if opts["lin"]:
            row["note"] += ("; Lin's interacted adjustment (lin) applies to score outcomes: this yes/no outcome is "
                            "fitted by the additive model")
        main = _favour(b.cox.estimate, b.pvalue)
        effects = {"": main}
    row.update(estimand="ITT", estimation=kind_estimation(kind, opts))
    part = {"details": {"design": res}, "effect": main, "effects": effects, "equivalence": res.equivalence}
    r = rate("rct", part, subject, df, cols, opts)
    att = res.attrition[0]
    note = (f"{label}: student attrition {overall_text(att.overall)}% overall, "
            f"{differential_text(att.overall, att.differential)} points differential")
    return row, r, note


def kind_estimation(kind: str, opts: Mapping[str, Any]) -> str:
    if kind == "score":
        return "regression (the design's primary model)"
    return "logit" if opts["binary_method"] == "logit" else "linear-probability model"


# ----------------------------------------------------------------------------- the table
def domain_adjust(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """``pvalue_adjusted`` within each subject × domain (``method``, BH by default) and the
    family size ``n_in_domain``."""
    from .inference import adjust_pvalues

    out = table.copy()
    key = out["subject"].astype(str) + "\x1f" + out["domain"].astype(str)
    out["n_in_domain"] = key.map(key.value_counts()).astype(int)
    adj = np.full(len(out), np.nan)
    for k in pd.unique(key):  # a handful of families
        i = (key == k).to_numpy()
        adj[i] = adjust_pvalues(out["pvalue"].to_numpy(dtype=float)[i], method)
    out["pvalue_adjusted"] = adj
    return out


def overall_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The further outcomes as rows of the overall table (one per outcome × subject × scale:
    points or percentage points, effect size, and percentile points for scores)."""
    rows = []
    for r in table.itertuples(index=False):
        analysis = f"{r.outcome}: {r.estimation}"
        base = dict(subject=r.subject, analysis=analysis, primary=False, df=r.df, pvalue=r.pvalue,
                    n_treated=r.n_treated, n_control=r.n_control, n_clusters=r.n_clusters, method=r.method,
                    label=r.outcome, outcome=r.outcome, domain=r.domain, pvalue_domain_adjusted=r.pvalue_adjusted)
        rows.append({**base, "scale": r.scale, "estimate": r.estimate,
                     "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high})
        rows.append({**base, "scale": "effect size", "estimate": r.effect_size, "se": r.es_se, "ci_low": r.es_ci_low,
                     "ci_high": r.es_ci_high, "sd_kind": r.es_measure})
        if r.kind == "score":
            rows.append({**base, "scale": "percentile points", "estimate": r.percentile_points, "se": math.nan,
                         "ci_low": r.pp_ci_low, "ci_high": r.pp_ci_high})
    return pd.DataFrame(rows)


COLUMNS = ["subject", "outcome", "kind", "domain", "favourable", "estimand", "estimation", "scale", "estimate", "se",
           "ci_low", "ci_high", "df", "pvalue", "pvalue_adjusted", "n_in_domain", "effect_size", "es_measure", "es_se",
           "es_ci_low", "es_ci_high", "percentile_points", "pp_ci_low", "pp_ci_high", "p_treated", "p_comparison",
           "n_treated", "n_control", "n_clusters", "wwc_rating", "essa_tier", "method", "note"]
"""Columns of ``outcomes.csv`` (:attr:`pleval.estimate.Evaluation.outcomes`)."""


def outcome_table(design: str, plan: pd.DataFrame, keys, subjects, parts, df, columns, opts, ratings, rate):
    """Every outcome of the run × subject: the primary outcome's row from its primary analysis,
    the others estimated here; p adjusted within subject × domain. The ESSA condition
    "statistically significant" of an outcome that shares its domain uses the adjusted p (as
    the WWC characterizes findings within a domain). Returns the table, the ratings of the
    further outcomes (``(subject, outcome)`` -> Rating), the primary outcome's ratings (subject
    -> Rating, re-rated with its adjusted p) and notes."""
    from .rating import rate as rate_facts

    rows, found, notes = [], [], []
    for key, s, part in zip(keys, subjects, parts):
        for o in plan.itertuples(index=False):
            if o.outcome == columns.outcome:
                row = _score_row(part["effect"])
                row.update(estimand="ATT" if design == "matched" else "ITT",
                           estimation=kind_estimation("score", opts) + " — the primary outcome")
                r = ratings[key]
            else:
                fn = matched_outcome if design == "matched" else rct_outcome
                args = (part["details"]["design"],) if design == "matched" else (df, columns)
                up = o.favourable == "higher"
                row, r, note = fn(*args, s, o.outcome, o.kind, opts, lambda *a: rate(*a, higher_is_better=up))
                notes += [note] if note else []
            found.append(r)
            rows.append({**row, "subject": key, "outcome": o.outcome, "kind": o.kind, "domain": o.domain,
                         "favourable": o.favourable})
    table = domain_adjust(pd.DataFrame(rows), opts["adjust"])
    extra, primary = {}, {}
    name = {"bh": "BH", "holm": "Holm", "bonferroni": "Bonferroni"}[opts["adjust"]]
    for i, r in enumerate(found):
        t = table.iloc[i]
        if t["n_in_domain"] > 1:
            label = f"p adjusted ({name}) within the {t['domain']} domain of {t['n_in_domain']} outcomes"
            r = rate_facts(dataclasses.replace(r.facts, pvalue=float(t["pvalue_adjusted"]), pvalue_label=label))
        (primary if t["outcome"] == columns.outcome else extra)[
            t["subject"] if t["outcome"] == columns.outcome else (t["subject"], t["outcome"])] = r
        found[i] = r
    table["wwc_rating"] = [r.wwc_rating for r in found]
    table["essa_tier"] = [r.essa_tier for r in found]
    return table[COLUMNS], extra, primary, notes


__all__ = ["outcome_plan", "outcome_table", "domain_adjust", "binary_frame", "check_options", "overall_rows",
           "matched_outcome", "rct_outcome", "ACHIEVEMENT", "COLUMNS"]
