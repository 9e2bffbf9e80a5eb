"""Several outcomes in one run: yes/no outcomes in percentage points with the Cox index beside
scores, the within-domain Benjamini–Hochberg correction (against statsmodels' multipletests),
each outcome's WWC rating, the errors, and the done-when run of `pleval estimate` on the
sample file (rating and tier with reasons, subgroups and the equity gap, a yes/no outcome,
several outcomes and a categorical moderator at once)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import statsmodels.api as sm
from scipy import special
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

import pleval
from pleval import DataError
from pleval.cli import app
from pleval.data import read_table
from pleval.effect_sizes import hedges_omega
from pleval.outcomes import _outcome_sample, domain_adjust

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def test_domain_adjustment_is_bh_within_subject_and_domain():
    rng = np.random.default_rng(3)
    t = pd.DataFrame({"subject": np.repeat(["math", "reading"], 6),
                      "domain": ["achievement"] * 4 + ["attendance"] * 2 + ["achievement"] * 3 + ["behaviour"] * 3,
                      "pvalue": rng.uniform(0, 0.2, 12)})
    out = domain_adjust(t, "bh")
    for _, g in out.groupby(["subject", "domain"]):
        np.testing.assert_allclose(g["pvalue_adjusted"], multipletests(g["pvalue"], method="fdr_bh")[1], rtol=1e-12)
        assert (g["n_in_domain"] == len(g)).all()
    # families are separate: adjusting everything together gives other values
    assert not np.allclose(out["pvalue_adjusted"], multipletests(t["pvalue"], method="fdr_bh")[1])


@pytest.mark.parametrize("method, sm", [("holm", "holm"), ("bonferroni", "bonferroni")])
def test_domain_adjustment_holm_and_bonferroni_against_statsmodels(method, sm):
    """The other ``adjust`` options, family by family, equal statsmodels' multipletests (ties
    and p-values whose adjustment reaches 1 included)."""
    t = pd.DataFrame({"subject": ["math"] * 7, "domain": ["achievement"] * 4 + ["attendance"] * 3,
                      "pvalue": [0.01, 0.04, 0.04, 0.30, 0.002, 0.6, 0.02]})
    out = domain_adjust(t, method)
    for _, g in out.groupby(["subject", "domain"]):
        np.testing.assert_allclose(g["pvalue_adjusted"], multipletests(g["pvalue"], method=sm)[1], rtol=1e-12)


def test_outcome_sample_drops_sets_without_the_outcome_and_reweights():
    m = pd.DataFrame({"treatment": [1, 0, 0, 1, 0, 0], "_set": [0, 0, 0, 1, 1, 1],
                      "_weight": [1, 0.5, 0.5, 1, 0.5, 0.5], "y": [1, np.nan, 0, np.nan, 1, 1]})
    out, n_out = _outcome_sample(m, "y", "treatment")
    assert n_out == 4  # the comparison without y, and the whole set 1 (its PL student has no y)
    assert out["_set"].tolist() == [0, 0] and out["_weight"].tolist() == [1.0, 1.0]
    # weighting-type designs (no sets): rows without the outcome leave, the others keep their weights
    w = m.assign(_set=-1, _weight=[1, 0.3, 0.7, 1, 0.2, 0.9])
    out, n_out = _outcome_sample(w, "y", "treatment")
    assert n_out == 2 and out["_weight"].tolist() == [1.0, 0.7, 0.2, 0.9]


# ----------------------------------------------------------------------------- a trial
@pytest.fixture(scope="module")
def trial():
    df = read_table(SAMPLE / "pl_cluster_rct.csv")
    rng = np.random.default_rng(8)
    df["days_absent"] = rng.poisson(9, len(df)) - 2 * df["treatment"].to_numpy() * (rng.random(len(df)) < 0.5)
    df["attended"] = np.where(df["days_absent"] <= 8, "yes", "no")
    ev = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient", "days_absent"],
                         domains={"days_absent": "attendance"}, lower_is_better=["days_absent"])
    return df, ev


def test_trial_binary_outcome_against_a_direct_statsmodels_fit(trial):
    df, ev = trial
    row = ev.outcomes.set_index("outcome").loc["proficient"]
    a = df[(df["subject"] == "math") & df["proficient"].notna()]
    fit = smf.glm("proficient ~ treatment + C(block) + pretest + female + frl + ell + sped + C(race)", data=a,
                  family=sm.families.Binomial()).fit(cov_type="cluster", cov_kwds={"groups": a["school_id"]})
    p1 = fit.predict(a.assign(treatment=1)).mean()
    p0 = fit.predict(a.assign(treatment=0)).mean()
    omega = hedges_omega(len(a))
    assert (row["p_treated"], row["p_comparison"]) == pytest.approx((p1, p0), rel=1e-6)
    assert row["estimate"] == pytest.approx(100 * (p1 - p0), rel=1e-6)
    assert row["scale"] == "percentage points" and row["es_measure"] == "Cox index"
    assert row["effect_size"] == pytest.approx(omega * (special.logit(p1) - special.logit(p0)) / 1.65, rel=1e-6)
    assert np.isnan(row["percentile_points"]) and "not defined" in row["note"]
    G = a["school_id"].nunique()  # CR2 by school with Satterthwaite df (tests/test_binary.py: the dense computation)
    assert row["estimand"] == "ITT" and "logistic" in row["method"] and "Satterthwaite" in row["method"]
    assert 1 < row["df"] < G - 1
    # the overall table: percentage points and the Cox index, no percentile points
    ov = ev.overall[ev.overall["outcome"] == "proficient"]
    assert sorted(ov["scale"]) == ["effect size", "percentage points"]


def test_yes_no_outcomes_take_the_runs_standard_error_conventions(trial):
    """A yes/no outcome's model takes the run's vcov, cluster_df and df_working, as the score
    outcomes do. Before 2026-12-04 it kept CR2 (the logit) and the G − 1 df: with vcov CR1 and
    cluster_df G-p the linear-probability SE was 1.885 points on 39 df where G − p gives 2.627 on
    20 (statsmodels' CR1, rescaled), and df_working had no effect on it."""
    df, _ = trial
    a = df[(df["subject"] == "math") & df["proficient"].notna()]
    ev = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient"], binary_method="lpm",
                         vcov="CR1", cluster_df="G-p")
    row = ev.outcomes.set_index("outcome").loc["proficient"]
    f = smf.ols("proficient ~ treatment + C(block) + pretest + female + frl + ell + sped + C(race)", a)
    fit = f.fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(a["school_id"])[0]})  # G/(G-1)·(n-1)/(n-k)
    G, n, k = a["school_id"].nunique(), len(a), f.exog.shape[1]
    se = fit.bse["treatment"] / np.sqrt(G / (G - 1) * (n - 1) / (n - k)) * np.sqrt(G / (G - k))
    assert row["estimate"] == pytest.approx(100 * fit.params["treatment"], rel=1e-9)
    assert row["se"] == pytest.approx(100 * se, rel=1e-9) and row["df"] == G - k and "df G-p" in row["method"]
    logit = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient"], vcov="CR1")
    assert "CR1 by school, t(G − 1)" in logit.outcomes.set_index("outcome").loc["proficient", "method"]
    dfs = [pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient"], binary_method="lpm",
                           df_working=w).outcomes.set_index("outcome").loc["proficient", "df"]
           for w in ("independent", "random_effects")]
    assert dfs[0] != pytest.approx(dfs[1], rel=1e-3)
    # an HC covariance in a cluster trial clusters neither model, as the ITT (the logit took CR1 by school)
    for method, text in (("logit", "HC1, t(n − k)"), ("lpm", "; HC1")):
        r = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient"], vcov="HC1",
                            binary_method=method).outcomes.set_index("outcome").loc["proficient"]
        assert text in r["method"] and "by school" not in r["method"] and pd.isna(r["n_clusters"])


def test_logit_g_minus_p_needs_more_clusters_than_coefficients():
    """CR1 under G − p with G ≤ k is the DesignError the linear-probability model gives (a
    ZeroDivisionError or a math domain error before)."""
    from pleval.binary import binary_effect
    from pleval.errors import DesignError

    rng = np.random.default_rng(2)
    n, G = 120, 6
    school = np.repeat(np.arange(G), n // G)
    t = (school % 2).astype(float)
    X = np.column_stack([np.ones(n), t, rng.normal(size=(n, 5))])
    y = (rng.random(n) < 0.4 + 0.1 * t).astype(float)
    names = ["const", "treatment", *[f"x{i}" for i in range(5)]]
    for method in ("logit", "lpm"):
        with pytest.raises(DesignError, match=r"needs more clusters \(6\) than coefficients \(7\)"):
            binary_effect(y, X, names, treatment="treatment", clusters=school, method=method, lpm_vcov="CR1",
                          logit_vcov="CR1", cluster_df="G-p")


def test_trial_outcomes_table_p_adjustment_and_ratings(trial):
    df, ev = trial
    o = ev.outcomes.set_index("outcome")
    assert list(o.index) == ["posttest", "proficient", "days_absent"]
    e = ev.effect("math")
    assert o.loc["posttest", "estimate"] == pytest.approx(e.raw.estimate)
    assert o.loc["posttest", "effect_size"] == pytest.approx(e.effect_size.estimate)
    ach = o[o["domain"] == "achievement"]
    np.testing.assert_allclose(ach["pvalue_adjusted"], multipletests(ach["pvalue"], method="fdr_bh")[1], rtol=1e-12)
    assert o.loc["days_absent", "pvalue_adjusted"] == pytest.approx(o.loc["days_absent", "pvalue"])
    # a score beside: the trial's OLS ITT on that outcome
    res = pleval.rct.analyze_rct(df, ev.columns.replace(outcome="days_absent"), subject="math")
    assert o.loc["days_absent", "estimate"] == pytest.approx(res.itt.raw.estimate, rel=1e-10)
    assert o.loc["days_absent", "scale"] == "raw" and o.loc["days_absent", "es_measure"] == "Hedges g"
    assert o.loc["days_absent", "percentile_points"] == pytest.approx(res.itt.percentile_points.estimate, rel=1e-10)
    ov_abs = ev.overall[ev.overall["outcome"] == "days_absent"]
    assert sorted(ov_abs["scale"]) == ["effect size", "percentile points", "raw"]
    # ratings: each outcome's own facts, its direction and Cox index as the effect size
    r = ev.outcome_ratings[("math", "proficient")]
    assert r.facts.effect_size == pytest.approx(o.loc["proficient", "effect_size"])
    # ESSA's "statistically significant" uses the p adjusted within the domain (2 achievement outcomes)
    assert r.facts.pvalue == pytest.approx(o.loc["proficient", "pvalue_adjusted"])
    assert "adjusted (BH) within the achievement domain of 2 outcomes" in r.conditions[0].detail
    assert ev.ratings["math"].facts.pvalue == pytest.approx(o.loc["posttest", "pvalue_adjusted"])
    assert (ev.rating["outcome"] == "proficient (math)").any()  # rating.csv has every outcome's steps
    ov = ev.overall
    assert (ov.loc[ov["outcome"] == "days_absent", "essa_tier"] == o.loc["days_absent", "essa_tier"]).all()
    assert r.facts.attrition_students == pytest.approx(ev.ratings["math"].facts.attrition_students)
    assert r.wwc_rating == o.loc["proficient", "wwc_rating"] == ev.ratings["math"].wwc_rating
    assert o.loc["proficient", "essa_tier"] == "Moderate"  # significant favourable, ≥ 350 students in ≥ 2 schools
    d = ev.outcome_ratings[("math", "days_absent")]
    assert d.facts.higher_is_better is False and o.loc["days_absent", "favourable"] == "lower"
    assert o.loc["days_absent", "effect_size"] < 0
    assert d.essa_tier == "Moderate"  # fewer absences: significant and favourable; alone in its domain
    assert d.facts.pvalue == o.loc["days_absent", "pvalue"] and not d.facts.unfavorable_elsewhere
    assert ev.provenance["outcomes"][1]["outcome"] == "proficient"
    text = ev.summary()
    assert "Outcome [math] proficient (achievement): +" in text and "percentage points" in text and "Cox index" in text


def test_text_yes_no_outcome_and_lpm(trial):
    df, _ = trial
    ev = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["attended"], binary_method="lpm")
    row = ev.outcomes.set_index("outcome").loc["attended"]
    a = df[df["subject"] == "math"].assign(y=(df["attended"] == "yes").astype(float))
    ref = smf.ols("y ~ treatment + C(block) + pretest + female + frl + ell + sped + C(race)", data=a).fit()
    assert row["estimate"] == pytest.approx(100 * ref.params["treatment"], rel=1e-8)
    assert row["estimation"] == "linear-probability model" and "CR2" in row["method"]


@pytest.mark.filterwarnings("ignore:vcov='HC1' treats students as independent")
def test_yes_no_outcome_method_text_names_the_additive_model_it_fits(trial):
    """Lin's adjustment is for score outcomes: with lin=True a yes/no outcome is still the
    additive model's (statsmodels' OLS with the block indicators, CR1 by school), and its method
    text says so, with "(absorbed)" only where the fit absorbs the indicators (the LPM without
    clusters). Before 2026-12-05 the text was the ITT's, "Lin (2013): ... centred and interacted
    with treatment", and "block FE (absorbed)" beside the indicator columns of a clustered fit."""
    df, _ = trial
    a = df[(df["subject"] == "math") & df["proficient"].notna()]
    ref = smf.ols("proficient ~ treatment + C(block) + pretest + female + frl + ell + sped + C(race)", a).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(a["school_id"])[0]})
    model = "outcome ~ treatment + block FE{} + pretest + 5 covariate(s))"
    for method in ("lpm", "logit"):
        for vcov, absorbed in (("CR1", False), ("HC1", method == "lpm")):
            ev = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient"], lin=True,
                                 binary_method=method, vcov=vcov)
            row = ev.outcomes.set_index("outcome").loc["proficient"]
            assert "Lin" not in row["method"] and model.format(" (absorbed)" if absorbed else "") in row["method"]
            assert "this yes/no outcome is fitted by the additive model" in row["note"]
            if method == "lpm" and vcov == "CR1":
                assert row["estimate"] == pytest.approx(100 * ref.params["treatment"], rel=1e-9)
                assert row["se"] == pytest.approx(100 * ref.bse["treatment"], rel=1e-9)
    plain = pleval.estimate(df, design="rct", subject="math", placebo=False, outcomes=["proficient"])
    assert "Lin" not in plain.outcomes["note"].iloc[0]


@pytest.mark.parametrize("opts, message", [
    (dict(outcomes=["nope"]), "outcome column 'nope' is not in the data"),
    (dict(outcomes=["race"]), "outcome column 'race' is neither a score"),
    (dict(outcomes=["proficient"], domains={"other": "x"}), "option domains names 'other'"),
    (dict(outcomes=["proficient"], domains="proficient"), "OUTCOME=DOMAIN"),
    (dict(outcomes=["proficient"], binary_method="probit"), "binary_method"),
])
def test_bad_outcome_options(trial, opts, message):
    df, _ = trial
    with pytest.raises(DataError, match=message):
        pleval.estimate(df, design="rct", subject="math", placebo=False, **opts)


def test_yes_no_primary_outcome_and_ambiguous_codes_are_errors(trial):
    df, _ = trial
    with pytest.raises(DataError, match="column 'proficient' \\(outcome\\) holds yes/no codes.*--outcome SCORE --outcomes proficient"):
        pleval.estimate(df, {"outcome": "proficient", "treatment": "treatment", "school": "school_id"}, design="rct")
    bad = df.assign(passed=np.where(df["proficient"] == 1, 2, 1))
    with pytest.raises(DataError, match="column 'passed'.*ambiguous"):
        pleval.estimate(bad, design="rct", subject="math", placebo=False, outcomes=["passed"])


# ----------------------------------------------------------------------------- matched, and the CLI
def test_done_when_matched_sample_on_the_command_line(tmp_path):
    """`pleval estimate` on the sample file: the WWC rating and ESSA tier with reasons,
    subgroups.csv and the equity gap, a yes/no outcome in percentage points with the Cox index,
    several outcomes and a categorical moderator in one run."""
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["estimate", str(SAMPLE / "pl_matched_students.csv"), "--out", str(out),
                                 "--outcomes", "posttest,proficient", "--subgroups", "pretest_band,frl",
                                 "--moderators", "school_poverty,urbanicity", "--no-placebo",
                                 "--set", "sensitivity=false"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    text = r.output
    assert "WWC rating and ESSA tier" in text and "Meets WWC Standards With Reservations" not in text  # short form
    assert "Meets With Reservations" in text and "cannot exceed With Reservations" in text and "ESSA:" in text
    assert "Outcomes (scores in their own units; p adjusted within subject × domain" in text and " %-points (" in text and "Cox +" in text
    assert "not defined for a yes/no outcome" in text
    assert "gap highest − lowest pretest band" in text and "urbanicity[" in text
    for f in ("subgroups.csv", "equity.csv", "outcomes.csv", "moderators.csv", "rating.csv"):
        assert (out / f).is_file(), f
    o = pd.read_csv(out / "outcomes.csv")
    assert set(o["outcome"]) == {"posttest", "proficient"} and set(o["subject"]) == {"math", "reading"}
    p = o[o["outcome"] == "proficient"]
    assert (p["scale"] == "percentage points").all() and (p["es_measure"] == "Cox index").all()
    assert p["estimate"].between(-10, 10).all() and p["percentile_points"].isna().all()
    assert (p["estimand"] == "ATT").all() and p["method"].str.contains("logistic").all()
    for s, g in o.groupby("subject"):
        np.testing.assert_allclose(g["pvalue_adjusted"], multipletests(g["pvalue"], method="fdr_bh")[1], rtol=1e-9)
    ov = pd.read_csv(out / "overall.csv")
    assert {"outcome", "domain", "pvalue_domain_adjusted"} <= set(ov.columns)
    assert ((ov["outcome"] == "proficient") & (ov["scale"] == "percentage points")).sum() == 2
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Outcomes beyond scale scores" in html and "percentage points (" in html
    assert "Equity: does the program narrow or widen the gap?" in html and "Context moderators" in html
    import json

    prov = json.loads((out / "provenance.json").read_text())
    assert {r["outcome"] for r in prov["outcomes"]} == {"posttest", "proficient"}
    # the matched binary estimate against a direct statsmodels logit on the matched sample (ATT)
    df = read_table(SAMPLE / "pl_matched_students.csv")
    m = pleval.match(df, pleval.data.SAMPLE_COLUMNS)
    s = m.matched[(m.matched["subject"] == "math")]
    s, _ = _outcome_sample(s, "proficient", "treatment")
    fit = smf.glm("proficient ~ treatment + pretest + female + frl + ell + sped + C(race) + C(grade)", data=s,
                  family=sm.families.Binomial(), var_weights=s["_weight"]).fit()
    t = s[s["treatment"] == 1]
    p1, p0 = fit.predict(t.assign(treatment=1)).mean(), fit.predict(t.assign(treatment=0)).mean()
    row = p[p["subject"] == "math"].iloc[0]
    assert row["estimate"] == pytest.approx(100 * (p1 - p0), rel=1e-5)


@pytest.mark.parametrize("design,kw", [("matched", {}), ("matched", {"vcov": "CR1"}),
                                       ("matched", {"df_working": "independent"}),
                                       ("rct", {"df_working": "random_effects"}), ("rct", {"lin": True})])
def test_an_outcome_written_twice_gives_the_primary_row_twice(design, kw):
    """A further outcome is fitted as the primary one is: with the run's vcov, CR2 form, df
    convention and working model, and (matched) with a reused comparison's copies as one row.
    Before, an exact copy of the posttest got CR2 beside the primary's CR1 (SE 0.5555 vs 0.5467,
    its method text still saying CR2), df 31.7 beside 32.8 by default, and in a trial df 25.8
    beside 22.7 with df_working='random_effects'."""
    import warnings

    f = SAMPLE / ("pl_matched_students.csv" if design == "matched" else "pl_cluster_rct.csv")
    d = pd.read_csv(f).assign(copy=lambda x: x["posttest"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o = pleval.estimate(d, design=design, placebo=False, subject="math", outcomes=["posttest", "copy"], **kw).outcomes
    a, b = o.iloc[0], o.iloc[1]
    for col in ("estimate", "se", "df", "pvalue", "effect_size"):
        assert b[col] == pytest.approx(a[col], rel=1e-10), col


def test_outcomes_of_dtype_object_holding_numbers_are_scores(trial):
    """An outcome of dtype object holding numbers (after .astype(object), or .where(mask, pd.NA),
    missing as NaN, None or pd.NA) was refused before 2026-12-05 as 'neither a score (numbers)
    nor a yes/no outcome (codes 208.0, ...)' while such a pretest was read as numbers; both are
    read as validate reads a score (pd.to_numeric), with the evaluation of the float columns."""
    df, _ = trial
    df = df.assign(posttest=df["posttest"].mask(np.arange(len(df)) % 17 == 0))
    gone = df["posttest"].isna().to_numpy()
    as_objects = df.assign(posttest=df["posttest"].astype(object).where(~gone, pd.Series(
        np.where(np.arange(len(df)) % 2 == 0, None, pd.NA), index=df.index)),
        days_absent=df["days_absent"].astype(object), proficient=df["proficient"].astype(object))
    assert as_objects["posttest"].dtype == object and as_objects["posttest"].isna().sum() == gone.sum()
    kw = dict(design="rct", subject="math", placebo=False, outcomes=["proficient", "days_absent"])
    ev, ref = pleval.estimate(as_objects, **kw), pleval.estimate(df, **kw)
    pd.testing.assert_frame_equal(ev.outcomes, ref.outcomes)
    pd.testing.assert_frame_equal(ev.table("overall"), ref.table("overall"))
    assert list(ev.outcomes["kind"][:3]) == ["score", "binary", "score"]
    with pytest.raises(DataError, match="outcome column 'attended' is neither a score"):  # text stays text
        pleval.estimate(as_objects.assign(attended=as_objects["attended"].replace("yes", "maybe")), **{
            **kw, "outcomes": ["attended"]})
