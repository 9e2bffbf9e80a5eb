"""pleval.estimate (Python API): wiring against the design modules, independent checks of what
estimate computes itself (cluster-RCT school effects against block comparisons, checked with
statsmodels), options, immutability, reproducibility, dropped rows, Jupyter display and plots."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from matplotlib.figure import Figure

import pleval
from pleval.data import RCT_SAMPLE_COLUMNS, SAMPLE_COLUMNS
from pleval.errors import DataError, PlevalWarning
from pleval.estimate import Evaluation, resolve_options, to_json_dict
from pleval.simulate import simulate_cluster_rct, simulate_matched


@pytest.fixture(scope="module")
def matched_sim():
    return simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=10, grades=(4, 5), seed=3,
                            missing_posttest=0.05)


@pytest.fixture(scope="module")
def rct_sim():
    return simulate_cluster_rct(n_schools=16, n_blocks=4, students_per_school=40, grades=(4, 5), seed=3,
                                noncompliance=0.1, attrition=0.05)


@pytest.fixture(scope="module")
def matched_ev(matched_sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(matched_sim.data, seed=1)


@pytest.fixture(scope="module")
def rct_ev(rct_sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(rct_sim.data, design="rct")


# ---------------------------------------------------------------------------------------------
# Wiring: the numbers are the design modules' numbers
# ---------------------------------------------------------------------------------------------
def test_matched_effects_equal_match_estimate(matched_ev, matched_sim):
    m = pleval.match(matched_sim.data, SAMPLE_COLUMNS, method="propensity", seed=1)
    tab = m.estimate(by="subject")
    for s in ("math", "reading"):
        mine, ref = matched_ev.effect(s), tab[s]
        for a, b in zip(mine.estimates, ref.estimates):
            assert a.estimate == pytest.approx(b.estimate, rel=1e-12) and a.se == pytest.approx(b.se, rel=1e-12)
    assert matched_ev.method == "propensity" and matched_ev.design == "matched"
    # Balance and WWC verdict come from the matched sample's balance table.
    bal = m.balance()
    eq = matched_ev.equivalence.set_index("subject")
    ref_eq = bal.equivalence.set_index("group")
    assert eq.loc["math", "effect_size"] == pytest.approx(ref_eq.loc["math", "hedges_g"])
    assert eq.loc["math", "verdict"] == ref_eq.loc["math", "wwc_with_pretest_in_model"]


def test_df_working_option_reaches_the_matched_effect_and_subgroups(matched_sim):
    """``df_working="independent"`` (``--set df_working=independent``): the matched effect's df are
    ``MatchResult.estimate(df_working="independent")``'s, and the subgroups' follow; a bad value
    is an error naming the option."""
    m = pleval.match(matched_sim.data, SAMPLE_COLUMNS, method="propensity", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(matched_sim.data, seed=1, placebo=False, sensitivity=False, subgroups="frl",
                             df_working="independent")
        ev_re = pleval.estimate(matched_sim.data, seed=1, placebo=False, sensitivity=False, subgroups="frl")
    ref = m.estimate(by="subject", df_working="independent")
    for s in ("math", "reading"):
        assert ev.effect(s).raw.df == pytest.approx(ref[s].raw.df, rel=1e-12)
        assert ev.effect(s).raw.df > ev_re.effect(s).raw.df
    assert (ev.subgroups()["df"] > ev_re.subgroups()["df"]).all()
    with pytest.raises(DataError, match="option df_working must be one of"):
        pleval.estimate(matched_sim.data, df_working="clustered")


def test_propensity_table_is_the_match_scores_by_subject(matched_ev, matched_sim):
    """Each subject's rows of the propensity table are the match's rows of that subject: score,
    treatment and matched weight summed over sets; the subject column is compared as stored
    (Arrow strings stay Arrow strings, no Python object per row)."""
    from pleval.estimate import _propensity_frame

    data = matched_sim.data.astype({"subject": "string[pyarrow]"})
    m = pleval.match(data, SAMPLE_COLUMNS, method="propensity", seed=1)
    assert isinstance(_propensity_frame(m)["_subject"].dtype, pd.StringDtype)
    w = np.bincount(m.rows, weights=m.weight, minlength=len(m.data))
    for s in ("math", "reading"):
        at = (m.data["subject"] == s).to_numpy()
        p = matched_ev.propensity[matched_ev.propensity["subject"] == s]
        assert list(p.columns) == ["subject", "score", "treated", "weight"]
        np.testing.assert_array_equal(p["score"].to_numpy(), m.propensity.ps[at])
        np.testing.assert_array_equal(p["treated"].to_numpy(), m.data["treatment"].to_numpy()[at])
        np.testing.assert_array_equal(p["weight"].to_numpy(), w[at])


def test_propensity_table_is_formed_after_the_school_effects_and_placebo_rounds(matched_sim, matched_ev, monkeypatch):
    """In one process the propensity table (a row per matched row) is not alive while the school
    effects and the placebo rounds run (their peak memory), and the tables are those of before."""
    import importlib

    est = importlib.import_module("pleval.estimate")  # (the module: pleval.estimate is also the function)
    placebo = importlib.import_module("pleval.heterogeneity.placebo")
    seen: list[str] = []

    def spy(name, f):
        def g(*a, **k):
            seen.append(name)
            return f(*a, **k)
        return g

    monkeypatch.setattr(est, "_propensity_frame", spy("propensity", est._propensity_frame))
    monkeypatch.setattr(est, "_school_effects", spy("school effects", est._school_effects))
    monkeypatch.setattr(placebo, "play_rounds", spy("placebo rounds", placebo.play_rounds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(matched_sim.data, seed=1, workers=1)
    assert seen == ["school effects", "placebo rounds", "propensity"]
    assert len(ev.propensity) and set(ev.propensity["subject"]) == {"math", "reading"}
    pd.testing.assert_frame_equal(ev.propensity, matched_ev.propensity)  # (matched_ev: two processes)


def test_rct_effects_equal_analyze_rct(rct_ev, rct_sim):
    ref = pleval.analyze_rct(rct_sim.data, RCT_SAMPLE_COLUMNS, design="cluster", subject="reading")
    e = rct_ev.effect("reading")
    assert e.raw.estimate == pytest.approx(ref.itt.raw.estimate, rel=1e-12)
    assert e.raw.se == pytest.approx(ref.itt.raw.se, rel=1e-12)
    ov = rct_ev.overall
    assert set(ov.loc[ov.subject == "reading", "analysis"]) == {name for name, _ in ref.all_effects()}
    assert "g_T (Hedges 2007, ρ=0.20)" in set(ov["analysis"])  # the WWC's cluster-adjusted effect size, labelled
    assert len(rct_ev.attrition) == 4  # students and schools, two subjects


def _rct_rows(data: pd.DataFrame, subject: str) -> pd.DataFrame:
    cols = ["posttest", "pretest", "female", "frl", "ell", "sped", "race"]
    return data[data.subject == subject].dropna(subset=cols)


def test_rct_tables_do_not_depend_on_the_row_order(rct_ev, rct_sim):
    """The trial's tables for the same students in another row order: the same rows in the same
    order (the equivalence rows of a categorical covariate's levels were in the order the levels
    first appeared in the file) and the same numbers to rounding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(rct_sim.data.sample(frac=1.0, random_state=5), design="rct")
    for name in ("overall", "equivalence", "balance", "attrition", "schools", "placebo", "heterogeneity"):
        a, b = rct_ev.table(name), ev.table(name)
        assert len(a) and a.shape == b.shape, name
        text = [c for c in a.columns if not pd.api.types.is_numeric_dtype(a[c])]
        pd.testing.assert_frame_equal(a[text], b[text], obj=name)
        num = [c for c in a.columns if c not in text]
        np.testing.assert_allclose(b[num].to_numpy(float), a[num].to_numpy(float), rtol=1e-8, atol=1e-12,
                                   err_msg=name)
    eq = rct_ev.table("equivalence")
    levels = [v for v in eq.loc[eq["subject"] == eq["subject"].iloc[0], "variable"] if v.startswith("race[")]
    assert len(levels) > 2 and levels == sorted(levels)


def test_rct_school_effect_is_the_school_against_its_block_controls(rct_ev, rct_sim):
    """One PL school's students against the comparison schools of its block, OLS with the
    pretest and covariates (statsmodels), CR2 with comparison rows clustered by school and
    each treated student its own cluster (pleval.inference.ols, checked against the n×n CR2)."""
    d = _rct_rows(rct_sim.data, "math")
    sch = rct_ev.schools
    sch = sch[sch.subject == "math"].set_index("school")
    for school in sch.index[:3]:
        block = d.loc[d.school_id == school, "block"].iloc[0]
        sub = d[(d.school_id == school) | ((d.block == block) & (d.treatment == 0))]
        fit = smf.ols("posttest ~ treatment + pretest + female + frl + ell + sped + C(race)", data=sub).fit()
        assert sch.loc[school, "estimate"] == pytest.approx(fit.params["treatment"], rel=1e-8)
        cl = np.where(sub.treatment == 1, np.arange(len(sub)).astype(str), sub.school_id)
        cr2 = pleval.inference.ols(sub.posttest, fit.model.exog, clusters=cl, vcov="CR2")
        j = fit.model.exog_names.index("treatment")
        assert sch.loc[school, "se"] == pytest.approx(cr2.se[j], rel=1e-8)
        assert sch.loc[school, "df"] == pytest.approx(cr2.coef_df(j), rel=1e-6)
        assert sch.loc[school, "n_comparison"] == (sub.treatment == 0).sum()
        n_c = sub.loc[sub.treatment == 0, "school_id"].value_counts().to_numpy()
        assert sch.loc[school, "comparison_schools"] == pytest.approx(n_c.sum() ** 2 / (n_c**2).sum(), rel=1e-8)
    # Effect sizes use the overall effect's SD (one yardstick) with Hedges' ω per school.
    e = rct_ev.effect("math")
    n = sch["n_treated"] + sch["n_comparison"]
    assert np.allclose(sch["effect_size"], sch["estimate"] * (1 - 3 / (4 * n - 9)) / e.sd)


def test_rct_site_effects_get_the_joint_covariance_and_placebo_calibration(rct_ev, rct_sim):
    """PL schools of one block share its comparison schools: their estimates covary (raw CR2
    off-diagonal non-zero within a block, exactly zero across blocks), and the school table and
    heterogeneity row carry the placebo calibration (comparison schools of the block as placebo)."""
    d = _rct_rows(rct_sim.data, "math")
    se = rct_ev.school_effects
    raw = se.vcov_raw["math"]
    block = d.groupby("school_id")["block"].first().loc[raw.index].to_numpy()
    same = block[:, None] == block[None, :]
    off = ~np.eye(len(block), dtype=bool)
    assert np.all(raw.to_numpy()[~same] == 0) and np.abs(raw.to_numpy()[same & off]).min() > 0
    sch = rct_ev.schools[rct_ev.schools.subject == "math"]
    assert sch["p_calibrated_adjusted"].notna().all() and sch["ci_low_calibrated"].notna().all()
    h = rct_ev.heterogeneity.set_index("subject").loc["math"]
    assert np.isfinite(h["tau2_placebo"]) and h["tau2_program_ci_low"] <= h["tau2_program_ci_high"]
    # order-restricted: the PL value when it is the larger, else between the two (precision-weighted)
    lo, hi = sorted((h["tau2"], h["tau2_placebo"]))
    assert lo - 1e-12 <= h["tau2_total"] <= hi + 1e-12
    assert h["tau2"] < h["tau2_placebo"] or h["tau2_total"] == pytest.approx(h["tau2"])


def test_rct_placebo_is_each_control_school_against_the_other_controls(rct_ev, rct_sim):
    d = _rct_rows(rct_sim.data, "math")
    pl = rct_ev.placebo
    pl = pl[pl.subject == "math"].set_index("school")
    controls = d.loc[d.treatment == 0, "school_id"].unique()
    assert set(pl.index) <= set(controls) and len(pl) == len(controls)
    school = pl.index[0]
    block = d.loc[d.school_id == school, "block"].iloc[0]
    sub = d[(d.block == block) & (d.treatment == 0)].assign(fake=lambda x: (x.school_id == school).astype(int))
    fit = smf.ols("posttest ~ fake + pretest + female + frl + ell + sped + C(race)", data=sub).fit(cov_type="HC2")
    n = len(sub)
    scale = (1 - 3 / (4 * n - 9)) / rct_ev.effect("math").sd
    assert pl.loc[school, "effect_size"] == pytest.approx(fit.params["fake"] * scale, rel=1e-8)
    # a block's two comparison schools: each is the other's only comparison school, so its students
    # are the clusters (singletons: HC2), and the pair's estimates are mirror images with one SE
    assert sub["school_id"].nunique() == 2
    assert pl.loc[school, "es_se"] == pytest.approx(fit.bse["fake"] * scale, rel=1e-8)
    other = sub.loc[sub.fake == 0, "school_id"].iloc[0]
    assert pl.loc[other, "effect_size"] == pytest.approx(-pl.loc[school, "effect_size"], rel=1e-9)
    assert pl.loc[other, "es_se"] == pytest.approx(pl.loc[school, "es_se"], rel=1e-9)
    # ... compared with one school, where a PL school of the block is compared with two: the placebo
    # spread is put on the PL schools' scale (a = 1 + 1/comparison_schools: 2 against about 1.5)
    assert (pl["comparison_schools"] == 1.0).all()
    sch = rct_ev.schools[rct_ev.schools.subject == "math"]
    a_pl = 1 + 1 / sch["comparison_schools"].to_numpy(dtype=float)
    assert (sch["comparison_schools"] > 1.5).all() and (sch["comparison_schools"] <= 2.0).all()
    het = rct_ev.heterogeneity.set_index("subject")
    assert het.loc["math", "placebo_scale"] == pytest.approx(a_pl.mean() / 2.0, rel=1e-12)
    assert any(f"scaled by {het.loc['math', 'placebo_scale']:.2f}" in n for n in rct_ev.notes)
    assert het.loc["math", "placebo_k"] == len(pl)
    assert het.loc["math", "placebo_sd"] == pytest.approx(np.std(pl["effect_size"], ddof=1))


def test_pair_matched_trial_school_effects_use_student_clusters_and_say_why_no_placebo():
    """Schools randomized in pairs: each PL school's only comparison school is one cluster, whose
    residuals its intercept absorbs, so its students are the clusters (singletons here: HC2, as
    statsmodels on the pair), with a note; and no comparison school has a partner for placebo."""
    sim = simulate_cluster_rct(n_schools=8, n_blocks=4, students_per_school=40, grades=(4, 5), seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(sim.data, design="rct")
    sch = ev.schools[ev.schools.subject == "math"].set_index("school")
    assert len(sch) == 4 and sch["note"].str.startswith("one comparison school: SE clustered by its students").all()
    d = _rct_rows(sim.data, "math")
    school = sch.index[0]
    block = d.loc[d.school_id == school, "block"].iloc[0]
    sub = d[d.block == block].assign(pl=lambda x: (x.school_id == school).astype(int))
    fit = smf.ols("posttest ~ pl + pretest + female + frl + ell + sped + C(race)", data=sub).fit(cov_type="HC2")
    assert sch.loc[school, "effect_size"] / sch.loc[school, "es_se"] == pytest.approx(fit.tvalues["pl"], rel=1e-8)
    note = ev.heterogeneity.set_index("subject").loc["math", "calibration_note"]
    assert "no comparison school has another in its block" in note


@pytest.mark.slow
def test_trial_placebo_calibration_holds_its_size_by_simulation():
    """Cluster trials of 10 blocks (two PL and two control schools each), school value added SD
    0.10, no program: student-level SEs call about 19% of PL schools significant at 5% (their
    own difference from the comparison schools is not in the SE); the placebo-calibrated
    p-values at most 5% (3.6% at 300 data sets, docs/validation.md; 2.4% before the placebo
    spread was put on the PL schools' scale: a placebo school is compared with one school, a
    PL school with two) and the calibrated CIs cover the program effect (0) at least 95% of
    the time. Against the simulation's true school deviations: the rescaled placebo spread
    estimates the PL schools' deviation variance (0.0161 against 0.0142 on these 30 trials; the
    raw spread would be 0.0215), and the PL schools' reported SEs are not too small (mean SE²
    0.0106 against a mean squared sampling error of 0.0071: clustering the comparison rows by
    school puts part of the comparison schools' deviations in the SE, docs/heterogeneity.md)."""
    from ._rct_sim import trial_calibration
    from .conftest import sim_reps

    r = trial_calibration(sim_reps(120, minimum=30), null=True)
    assert r["calibrated_p_below_05"] < 0.06 and r["calibrated_cover"] > 0.94, r
    # and not as long as with the raw placebo spread (98.0% on these 30 trials, 96.7% rescaled)
    assert r["calibrated_cover"] < 0.975, r
    assert r["raw_p_below_05"] > 0.12, r
    assert 0.8 < r["mean_tau2_placebo"] / r["deviation2"] < 1.3, r
    assert r["reported_se2"] > r["sampling_error2"], r


def test_school_meta_regression_passes_the_unshrunk_covariance(matched_ev):
    """SchoolEffects.meta_regression adds back the covariance the shrinkage removed: its fit is
    meta_regression with vcov and vcov_unshrunk taken from the school effects."""
    se = matched_ev.school_effects
    got = se.meta_regression(["n_treated"])["reading"]
    t = se.table[se.table["subject"] == "reading"]
    t = t[np.isfinite(t.effect_size)]
    ids = t["school"].to_numpy()
    V, V0 = se.vcov["reading"].loc[ids, ids].to_numpy(), se.vcov_raw["reading"].loc[ids, ids].to_numpy()
    want = pleval.heterogeneity.meta_regression(t["effect_size"], t["es_se"], t[["n_treated"]], vcov=V, vcov_unshrunk=V0,
                                                knapp_hartung=True)  # SchoolEffects.meta_regression's default
    np.testing.assert_allclose(got.vcov, want.vcov, rtol=1e-12)
    assert got.knapp_hartung
    assert np.trace(got.vcov_offdiag) > 0


def test_heterogeneity_row_is_the_meta_analysis_of_the_school_table(matched_ev):
    sch = matched_ev.schools
    s = sch[(sch.subject == "reading") & np.isfinite(sch.effect_size)]
    V = matched_ev.school_effects.vcov["reading"].loc[s["school"], s["school"]].to_numpy()
    m = pleval.meta_analysis(s["effect_size"], s["es_se"], "REML", vcov=V, hartung_knapp=True)
    raw = matched_ev.school_effects.vcov_raw["reading"].loc[s["school"], s["school"]].to_numpy()
    assert abs(raw - np.diag(np.diag(raw))).max() > 0  # shared comparison schools
    lam = matched_ev.school_effects.vcov_shrinkage["reading"]  # the off-diagonal the meta-analysis uses
    np.testing.assert_allclose(V, np.diag(np.diag(raw)) + (1 - lam) * (raw - np.diag(np.diag(raw))), rtol=1e-12)
    h = matched_ev.heterogeneity.set_index("subject").loc["reading"]
    assert h["estimate"] == pytest.approx(m.estimate) and h["tau2"] == pytest.approx(m.tau2)
    assert h["k"] == len(s)
    assert h["count_positive_adjusted"] == ((s.p_adjusted < 0.05) & (s.effect_size > 0)).sum()
    # with placebo schools, a new school's prediction and the shrunken columns use the placebo spread as a floor
    c = matched_ev.details["reading"]["placebo"].calibration["reading"]
    assert h["pi_low_pl_only"] == pytest.approx(m.pi_low) and h["pi_high_pl_only"] == pytest.approx(m.pi_high)
    w, wp = m.tau2_se**-2, c.placebo.tau2_se**-2
    assert (h["pi_low"], h["pi_high"]) == pytest.approx(c.pi)
    assert h["tau2_total"] == pytest.approx(max(m.tau2, (w * m.tau2 + wp * c.placebo.tau2) / (w + wp)))
    tot = c.schools.set_index("school").loc[s["school"]]
    np.testing.assert_allclose(s["shrunk_es"], tot["shrunk_total"], rtol=1e-12)
    np.testing.assert_allclose(s["prob_negative"], tot["prob_negative_total"], rtol=1e-12)
    np.testing.assert_allclose(s[["shrunk_es_ci_low", "shrunk_es_ci_high"]].to_numpy(),
                               tot[["shrunk_total_ci_low", "shrunk_total_ci_high"]].to_numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
def test_resolve_options_defaults_and_errors():
    method, opts, passthrough = resolve_options("matched", None, {"k": 3, "level": 0.9})
    assert method == "propensity" and opts["level"] == 0.9 and passthrough == {"k": 3}
    assert opts["sd"] == "pooled" and opts["meta_method"] == "REML" and opts["adjust"] == "bh"
    method, opts, _ = resolve_options("rct", None, {})
    assert method == "ols" and opts["rct_design"] == "cluster"
    bad = [
        ("matched", None, {"colour": 1}, "unknown option 'colour'"),
        ("matched", None, {"placebo_cpa": 3}, "unknown option 'placebo_cpa' for design='matched' \\(did you mean "
                                              "'placebo_cap' or 'placebo'\\?\\); known options: adjust, alpha"),
        ("matched", None, {"_reuse": {}}, "unknown option '_reuse'"),  # pleval.match's private argument
        ("rct", None, {"caliper": 0.1}, "unknown option 'caliper'"),
        ("matched", "ols", {}, "method for design='matched'"),
        ("quasi", None, {}, "design must be"),
        ("matched", None, {"level": 1.5}, "level"),
        ("matched", None, {"sd": -2}, "sd"),
        ("matched", None, {"meta_method": "HS"}, "meta_method"),  # needs independent estimates
        ("matched", None, {"cluster_df": "n-1"}, "cluster_df"),
        ("matched", None, {"cr2": "CR3"}, "cr2"),
        ("matched", None, {"vcov": "HC3"}, "vcov"),
        ("rct", None, {"bootstrap": -5}, "bootstrap"),
        ("rct", None, {"icc": 1.2}, "icc"),
        ("rct", None, {"bootstrap_weights": "mammen"}, "bootstrap_weights"),
        ("rct", None, {"gt_df": "N-1"}, "gt_df"),
        ("matched", None, {"adjust": "fdr"}, "adjust"),
        ("matched", None, {"placebo": "yes"}, "placebo"),
        ("matched", None, {"placebo_cap": -1}, "placebo_cap"),
        ("rct", None, {"placebo_cap": 10}, "unknown option 'placebo_cap'"),
        ("rct", None, {"permutations": -1}, "permutations"),
    ]
    for design, method, options, msg in bad:
        with pytest.raises(DataError, match=msg):
            resolve_options(design, method, options)


def test_match_options_pass_through_and_are_recorded(matched_sim):
    ev = pleval.estimate(matched_sim.data, method="mahalanobis", k=2, placebo=False, subject="math")
    m = ev.details["math"]["design"]
    assert m.options["k"] == 2 and m.method == "mahalanobis"
    assert ev.options["match"] == {"k": 2} and ev.options["subject"] == "math"
    assert ev.subjects == ("math",) and set(ev.overall.subject) == {"math"}
    assert not len(ev.placebo) and not len(ev.propensity)  # no placebo asked; no PS for Mahalanobis
    # the other subject's rows are left out on purpose, and counted
    other = ev.dropped[ev.dropped["stage"] == "subject selection"]
    assert list(other["n_rows"]) == [int((matched_sim.data["subject"] == "reading").sum())]
    assert list(other["column"]) == ["subject"] and "only math analysed" in other["reason"].iloc[0]
    assert not (pleval.estimate(matched_sim.data, method="mahalanobis", k=2, placebo=False).dropped
                .get("stage", pd.Series(dtype=str)) == "subject selection").any()
    with pytest.raises(DataError, match="subjects are math, reading"):
        pleval.estimate(matched_sim.data, subject="science")


def test_a_subject_analysed_alone_is_a_file_of_its_rows(matched_sim):
    """subject= fits the propensity model on that subject's rows, as a file of them would
    (docs/matching.md): the same estimate, SE and matched sample."""
    alone = pleval.estimate(matched_sim.data, placebo=False, subject="math")
    rows = matched_sim.data[matched_sim.data["subject"] == "math"]
    own = pleval.estimate(rows, placebo=False)
    a, b = alone.effect("math"), own.effect("math")
    assert (a.raw.estimate, a.raw.se, a.sd) == (b.raw.estimate, b.raw.se, b.sd)
    both = pleval.estimate(matched_sim.data, placebo=False).effect("math")
    assert both.raw.estimate != a.raw.estimate  # one model over both subjects matches differently


def test_placebo_cap_bounds_the_default_and_is_recorded(matched_sim, matched_ev, tmp_path):
    """Matched designs: with more comparison schools than ``placebo_cap``, the first ``cap`` of
    the round order play placebo — the run of ``n_placebo=cap`` — with a note, the extent in the
    provenance and the cap in run.toml; a cap at or above the number of comparison schools (the
    default here: 32 comparison schools) changes nothing."""
    import tomllib

    from pleval.estimate import PLACEBO_CAP
    from pleval.report.outputs import run_config

    assert matched_ev.options["placebo_cap"] == PLACEBO_CAP
    x = matched_ev.provenance["placebo"]
    assert x["comparison_schools"] == 32 and x["placebo_schools"] == 32 and not x["capped"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        capped = pleval.estimate(matched_sim.data, seed=1, placebo_cap=12)
        direct = pleval.estimate(matched_sim.data, seed=1, n_placebo=12, placebo_cap=0)
        at = pleval.estimate(matched_sim.data, seed=1, placebo_cap=32)
    x = capped.provenance["placebo"]
    assert (x["comparison_schools"], x["placebo_schools"], x["cap"], x["capped"]) == (32, 12, 12, True)
    assert any("12 of the 32 comparison schools played placebo (placebo_cap = 12" in n for n in capped.notes)
    pd.testing.assert_frame_equal(capped.placebo, direct.placebo)
    pd.testing.assert_frame_equal(capped.heterogeneity, direct.heterogeneity)
    pd.testing.assert_frame_equal(at.placebo, matched_ev.placebo)
    pd.testing.assert_frame_equal(at.schools, matched_ev.schools)
    assert not any("placebo_cap" in n for n in at.notes)
    assert tomllib.loads(__import__("tomli_w").dumps(run_config(capped)))["options"]["placebo_cap"] == 12


def test_same_seed_same_result(matched_sim, matched_ev):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        again = pleval.estimate(matched_sim.data, seed=1)
    pd.testing.assert_frame_equal(matched_ev.overall, again.overall)
    pd.testing.assert_frame_equal(matched_ev.schools, again.schools)
    pd.testing.assert_frame_equal(matched_ev.placebo, again.placebo)


# ---------------------------------------------------------------------------------------------
# Data summary, dropped rows, warnings, provenance
# ---------------------------------------------------------------------------------------------
def test_dropped_rows_are_counted_with_reasons(rct_sim):
    d = rct_sim.data.copy()
    d.loc[d.index[:7], "frl"] = np.nan  # 7 rows lose a covariate
    ev = pleval.estimate(d, design="rct", placebo=False)
    ds = ev.data_summary.set_index("reason")
    assert ds.loc["rows read", "n_rows"] == len(d)
    assert ds.loc["rows kept", "n_rows"] == len(d)  # randomized all: the 7 are the trial's attrition
    assert ds.loc["of which missing outcome (kept, counted)", "n_rows"] == d["posttest"].isna().sum()
    dr = ev.dropped
    rows = dr[(dr.column == "frl")]
    assert set(rows.stage) == {"randomized-trial analysis"} and "missing" in rows["reason"].iloc[0]
    assert rows["n_rows"].sum() == 7
    assert ev.provenance["input"]["sha256_of"].startswith("frame content")
    assert ev.provenance["input"]["n_rows"] == len(d) and ev.provenance["pleval_version"] == pleval.__version__


def test_warnings_are_kept_and_reissued(rct_sim):
    # Two schools only in one block make a thin comparison: whatever warnings the modules raise
    # are kept on the evaluation and re-issued once as PlevalWarning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(rct_sim.data, design="rct", permutations=0, placebo=True)
    reissued = [str(w.message) for w in caught if w.category is PlevalWarning]
    assert list(ev.warnings) == list(dict.fromkeys(reissued))


def test_no_subject_column_and_columns_as_mapping(matched_sim):
    one = matched_sim.data[matched_sim.data.subject == "math"].drop(columns="subject")
    cols = {"outcome": "posttest", "treatment": "treatment", "pretest": "pretest", "covariates": ["frl", "ell"],
            "school": "school_id", "student_id": "student_id", "grade": "grade"}
    ev = pleval.estimate(one, cols, placebo=False)
    assert ev.subjects == ("all",) and ev.columns.covariates == ("frl", "ell")
    assert ev.sentence().startswith("A student who would have scored at the 50th percentile")
    with pytest.raises(DataError, match="'school'|school column"):
        pleval.estimate(one, {k: v for k, v in cols.items() if k != "school"})


# ---------------------------------------------------------------------------------------------
# The object
# ---------------------------------------------------------------------------------------------
def test_evaluation_is_immutable_and_tables_are_copies(rct_ev):
    with pytest.raises(dataclasses.FrozenInstanceError):
        rct_ev.design = "matched"
    before = rct_ev.overall.to_csv()
    ov = rct_ev.overall
    ov.loc[:, "estimate"] = 999.0
    assert (rct_ev.overall["estimate"] != 999.0).all()
    # A table is a shallow copy: whatever is done to it, copy-on-write keeps the evaluation's as it was.
    ov = rct_ev.overall
    ov.iloc[0, list(ov.columns).index("ci_low")] = -1.0
    ov["subject"] = "x"
    ov.pop("ci_high")
    with pytest.raises(ValueError, match="read-only"):
        rct_ev.overall["estimate"].to_numpy()[0] = 1.0
    assert rct_ev.overall.to_csv() == before
    with pytest.raises(TypeError):
        rct_ev.effects["math"] = None
    with pytest.raises(TypeError):
        rct_ev.options["level"] = 0.5
    with pytest.raises(KeyError, match="tables are"):
        rct_ev.table("nope")


@pytest.mark.parametrize("p, alpha", [(0.0496, 0.05), (0.0504, 0.05), (0.04996, 0.05), (0.0996, 0.1), (0.05, 0.05)])
def test_a_p_value_beside_a_verdict_shows_its_side_of_alpha(p, alpha):
    """p = 0.0496 printed "p = 0.050" beside "statistically significant at α = 0.05", and 0.0504 the
    same "0.050" beside "not significant" before 2026-12-04: the p-value keeps the digits that put
    it on its side of α. The verdict and p are recomputed here from the t statistic."""
    import re

    from scipy import stats

    from pleval._results import Estimate
    from pleval.findings import significance

    t = stats.t.isf(p / 2, 40)
    e = Estimate.from_t(t, 1.0, 40, level=0.99, n_treated=1, n_control=1, n_clusters=None, method="x", scale="effect size")
    text = significance(e, alpha=alpha)
    shown = float(re.search(r"\(p = ([0-9.]+)\)", text).group(1))
    significant = 2 * stats.t.sf(t, 40) < alpha
    assert text.startswith("statistically significant" if significant else "not statistically significant")
    assert (shown < alpha) == significant and abs(shown - p) <= 5e-4 and (shown == alpha) == (p == alpha)


def test_a_p_value_below_a_small_alpha_is_not_printed_as_zero():
    """With α under 0.001 a p below it reads "< α" and one above it keeps its digits, never "0.000"
    (which fmt_p printed for α = 0.0001 on 2026-12-04, before its fix that day)."""
    from pleval.findings import fmt_p

    assert fmt_p(1e-8, 1e-4) == "< 0.0001" and fmt_p(2e-4, 1e-4) == "0.0002" and fmt_p(1e-8) == "< 0.001"


def test_console_tables_print_p_beside_the_runs_alpha(tmp_path):
    """The console's overall table prints p as the report does at the run's α: more digits where
    three would sit on α (before 2026-12-04 it printed "0.100" for p = 0.0996 at α = 0.1)."""
    from pleval._text import fmt_p
    from pleval.cli._estimate import _overall_table

    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    p0 = float(pleval.estimate(d, design="rct", columns=RCT_SAMPLE_COLUMNS, placebo=False).overall["pvalue"].iloc[0])
    alpha = (p0 + round(p0, 3)) / 2  # between p and its three-decimal rounding: "0.xyz" would sit across α
    ev = pleval.estimate(d, design="rct", columns=RCT_SAMPLE_COLUMNS, placebo=False, alpha=alpha)
    cells = [c._cells for c in _overall_table(ev).columns]  # rich's table columns
    ov = ev.overall[ev.overall["scale"] == "raw"]
    assert cells[5] == [fmt_p(p, alpha) for p in ov["pvalue"]] and cells[5][0] != f"{p0:.3f}"


def test_a_lower_is_better_outcome_reads_its_risk_of_harm_above_zero():
    """With the primary outcome better lower, a school's risk of harm is P(effect > 0): the console's
    risk table shows 1 − prob_negative under "above zero", the report's note says P(effect < 0) is
    the chance of a favourable effect, and the card names the outcome's units (before 2026-12-04
    they called P(effect < 0) the risk of harm, about 1.00 in every school of a favourable trial)."""
    from pleval.cli._estimate import _risk_table
    from pleval.report.sections import TableContext, school_table_note

    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    ev = pleval.estimate(d, design="rct", columns=RCT_SAMPLE_COLUMNS, placebo=False, lower_is_better=("posttest",))
    t = _risk_table(ev)
    assert "above zero (posttest: lower is better)" in t.title and t.columns[5].header == "P(>0)"
    s = ev.schools[np.isfinite(ev.schools["shrunk_es"]) & np.isfinite(ev.schools["effect_size"])]
    assert t.columns[5]._cells == [f"{1 - p:.2f}" for p in s["prob_negative"]][:len(t.columns[5]._cells)]
    note = school_table_note(s, TableContext(lower_is_better=True), "BH")
    assert "the risk of harm is 1 − P(effect < 0)" in note and "risk of harm —" not in note
    higher = school_table_note(s, TableContext(), "BH")
    assert "P(effect < 0): risk of harm — the posterior probability" in higher
    from pleval.report import render_markdown

    assert "Raw difference" in (md := render_markdown(ev, {})) and "(posttest, lower is better)" in md


def test_p_values_read_as_sentences(rct_ev):
    """``p < 0.001`` or ``p = 0.087`` in every sentence, never ``p = < 0.001``."""
    from pleval.findings import fmt_p, p_clause
    from pleval.monitor.staggered import pretest_text

    assert (p_clause(4e-4), p_clause(0.0871), p_clause(float("nan"))) == ("p < 0.001", "p = 0.087", "p = —")
    e = rct_ev.effect("math").effect_size
    assert f"; {p_clause(e.pvalue)})." in rct_ev.sentence("math")
    pre = {"statistic": 30.0, "df": 3, "pvalue": 1e-6}
    assert pretest_text(pre, p_text=fmt_p).endswith("= 30.00, p < 0.001")
    assert pretest_text({**pre, "pvalue": 0.2}, p_text=fmt_p).endswith("p = 0.200")
    assert pretest_text({**pre, "pvalue": 0.2}).endswith("p = 0.2")


def test_sentence_summary_and_html(rct_ev):
    e = rct_ev.effect("math")
    q = round(50 + e.percentile_points.estimate)
    s = rct_ev.sentence("math")
    assert s.startswith("In math, a student who would have scored at the 50th percentile")
    assert f"about the {q}" in s
    text = rct_ev.summary()
    assert s in text and "WWC" in text and repr(rct_ev) == text
    from IPython.core.formatters import DisplayFormatter

    shown, _ = DisplayFormatter().format(rct_ev)  # what Jupyter displays
    assert "text/html" in shown and "Evaluation" in shown["text/html"]
    html = rct_ev._repr_html_()
    assert html.count("<tr>") == 1 + len(rct_ev.subjects) and "percentile" in html
    assert rct_ev.to_frame().equals(rct_ev.overall)
    payload = json.loads(json.dumps(to_json_dict(rct_ev)))
    assert payload["subjects"]["math"]["sentence"] == s
    assert payload["subjects"]["math"]["heterogeneity"]["k"] == rct_ev.heterogeneity.set_index("subject").loc["math", "k"]


def test_plot_methods_return_figures(matched_ev, rct_ev):
    figs = [
        matched_ev.plot_forest("math"), matched_ev.plot_love("reading"), matched_ev.plot_overlap("math"),
        matched_ev.plot_percentiles(), matched_ev.plot_distribution("reading"), rct_ev.plot_forest(shrunk=False),
        rct_ev.plot_love("math"),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert all(hasattr(f, "_repr_png_") for f in figs)  # display inline in Jupyter
    # the matched love plot's SMDs use the SD before matching over all grades; its title gives the WWC g
    g = matched_ev.equivalence.set_index("subject").loc["reading", "effect_size"]
    assert f"WWC equivalence: pretest g = {g:+.3f}, " in figs[1].axes[0].get_title(loc="left")
    with pytest.raises(pleval.PlevalError, match="propensity"):
        rct_ev.plot_overlap()
    with pytest.raises(KeyError, match="subjects are"):
        rct_ev.plot_forest("science")
    assert isinstance(matched_ev, Evaluation)


def test_trial_placebo_schools_are_sampled_when_the_stack_is_large(rct_sim, monkeypatch):
    import sys

    mod = sys.modules["pleval.estimate"]
    monkeypatch.setattr(mod, "PLACEBO_MAX_ROWS", 300)
    ev = pleval.estimate(rct_sim.data, design="rct", subject="math")
    n_controls = rct_sim.data.loc[rct_sim.data.treatment == 0, "school_id"].nunique()
    k = ev.heterogeneity["placebo_k"].iloc[0]
    assert 2 <= k < n_controls
    assert any(n.startswith(f"placebo schools: {k} of {n_controls} comparison schools, spread over the range of "
                            "their mean pretest (the same for any seed) (to bound memory)") for n in ev.notes)
    assert ev.dropped.loc[ev.dropped["stage"] == "subject selection", "n_rows"].tolist() == [
        int((rct_sim.data["subject"] != "math").sum())]
    again = pleval.estimate(rct_sim.data, design="rct", subject="math", seed=5)  # by the data alone: the same schools
    assert list(again.placebo["school"]) == list(ev.placebo["school"])


def test_every_public_result_renders_in_jupyter():
    """Issue 7: each results object has summary() and an HTML view (through ResultMixin)."""
    import pleval
    from pleval.data import SAMPLE_COLUMNS

    sim = pleval.simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=5, seed=2)
    m = pleval.match(sim.data, SAMPLE_COLUMNS, method="propensity")
    objects = [sim.truth, m, m.propensity, m.propensity.support, m.balance(), m.estimate(),
               pleval.meta_analysis([0.1, -0.1, 0.3], [0.1, 0.1, 0.1])]
    for obj in objects:
        assert isinstance(obj.summary(), str) and obj.summary()
        assert "<table" in obj._repr_html_(), type(obj).__name__


# ---------------------------------------------------------------------------------------------
# WWC rating and ESSA tier: facts taken from the design's own tables
# ---------------------------------------------------------------------------------------------
def test_rct_rating_uses_the_trials_attrition_and_equivalence(rct_ev, rct_sim):
    from pleval.rating import MWR, StudyFacts, rate

    for s in rct_ev.subjects:
        r = rct_ev.ratings[s]
        att = rct_ev.attrition[rct_ev.attrition["subject"] == s].set_index("level")
        eq = rct_ev.equivalence[(rct_ev.equivalence["subject"] == s) & (rct_ev.equivalence["role"] == "pretest")]
        e = rct_ev.effects[s]
        d = rct_sim.data[(rct_sim.data["subject"] == s)]
        facts = StudyFacts(
            f"posttest ({s})", "rct", "schools", int(e.raw.n_treated + e.raw.n_control),
            int(d.loc[d["treatment"] == 1, "school_id"].nunique()), int(d.loc[d["treatment"] == 0, "school_id"].nunique()),
            attrition_students=(att.loc["students", "overall"], att.loc["students", "differential"]),
            attrition_schools=(att.loc["schools", "overall"], att.loc["schools", "differential"]),
            baseline=tuple(zip(eq["variable"], eq["effect_size"], eq["adjusted_in_model"])),
            effect_size=e.effect_size.estimate, pvalue=e.effect_size.pvalue)
        expected = rate(facts)
        assert (r.wwc_rating, r.essa_tier) == (expected.wwc_rating, expected.essa_tier)
        assert r.steps == expected.steps
        # joiners not declared: the conservative reading caps the rating
        assert [x.cap for x in r.steps if x.step == "risk of bias (students)"] == [MWR]
        ov = rct_ev.overall[rct_ev.overall["subject"] == s]
        assert (ov["wwc_rating"] == r.wwc_rating).all() and (ov["essa_tier"] == r.essa_tier).all()
        assert rct_ev.provenance["rating"][s]["wwc_rating"] == r.wwc_rating
    tab = rct_ev.rating
    assert set(tab["subject"]) == set(rct_ev.subjects) and {"WWC", "ESSA"} == set(tab["part"])
    assert "WWC rating" in rct_ev.summary()


def test_rating_options_change_the_rating(rct_sim):
    from pleval.rating import DNM, MWOR

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(rct_sim.data, design="rct", subject="math", joiners=False, placebo=False)
        assert ev.ratings["math"].wwc_rating == MWOR  # low attrition at both levels, no joiners
        ev = pleval.estimate(rct_sim.data, design="rct", subject="math", confounds="new principals", placebo=False)
        assert ev.ratings["math"].wwc_rating == DNM
        assert "declared confounding factor: new principals" in ev.ratings["math"].reasons
    assert ev.options["confounds"] == ("new principals",)
    with pytest.raises(DataError, match="option joiners must be true or false"):
        resolve_options("rct", None, {"joiners": "yes"})
    with pytest.raises(DataError, match="option boundary"):
        resolve_options("rct", None, {"boundary": "lenient"})
    with pytest.raises(DataError, match="option confounds"):
        resolve_options("matched", None, {"confounds": [1]})
    with pytest.raises(DataError, match="unknown option 'joiners'"):
        resolve_options("matched", None, {"joiners": False})


def test_matched_rating_is_a_qed_with_schools_counted_in_the_matched_sample(matched_ev):
    from pleval.rating import MWR

    for s in matched_ev.subjects:
        r = matched_ev.ratings[s]
        assert r.facts.design == "qed" and r.steps[0].cap == MWR
        eq = matched_ev.equivalence
        g = eq[(eq["subject"] == s) & (eq["role"] == "pretest")]["effect_size"].to_numpy()
        assert [b[1] for b in r.facts.baseline] == pytest.approx(list(g))
        assert r.facts.n_schools_treated == 8
        sch = matched_ev.details[s]["design"].matched
        sch = sch[sch["subject"] == s]
        assert r.facts.n_schools_control == sch.loc[sch["treatment"] == 0, "school_id"].nunique()
        assert r.facts.n_students == sch["student_id"].nunique()


def test_one_pl_school_runs_and_says_there_is_no_school_comparison(matched_sim):
    d = matched_sim.data
    keep = d["school_id"].isin(d.loc[d["treatment"] == 1, "school_id"].unique()[:1]) | (d["treatment"] == 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(d[keep], method="vcg", seed=1)
    assert any("fewer than 2 schools" in str(w.message) for w in caught)
    ref = pleval.match(d[keep], SAMPLE_COLUMNS, method="vcg").estimate(by="subject")
    for s in ("math", "reading"):
        for a, b in zip(ev.effect(s).estimates, ref[s].estimates):
            assert a.estimate == pytest.approx(b.estimate, rel=1e-10) and a.se == pytest.approx(b.se, rel=1e-10)


def test_one_subject_of_a_frame_with_repeated_index_labels(matched_sim):
    """``subject=``: the subject's rows are chosen by their value, not their index labels, so a
    frame whose labels repeat across subjects (a math and a reading row sharing each label) gives
    what its default-indexed copy gives (before, the other subject's rows came along)."""
    df = matched_sim.data.reset_index(drop=True)
    repeated = df.set_axis(df.groupby("subject").cumcount().to_numpy(), axis=0)  # row k of each subject: label k
    assert repeated.groupby(level=0)["subject"].nunique().max() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        a = pleval.estimate(df, subject="math", placebo=False, sensitivity=False)
        b = pleval.estimate(repeated, subject="math", placebo=False, sensitivity=False)
    pd.testing.assert_frame_equal(a.overall, b.overall)
    pd.testing.assert_frame_equal(a.schools, b.schools)


def test_matching_flags_given_as_text_are_refused_and_false_reads_as_false(tmp_path):
    """`--set replace=False` (TOML reads only `false`) passed the text 'False' to the matcher,
    which took it as true and matched with replacement; `penalize=False` turned the penalty on."""
    from pleval.estimate import resolve_options

    for key, bad in (("replace", "False"), ("penalize", "no"), ("ties", "maybe"), ("caliper", "off")):
        with pytest.raises(DataError, match=f"option {key} must be true or false"):
            resolve_options("matched", None, {key: bad})
    assert resolve_options("matched", None, {"replace": False, "caliper": 0.1})[2] == {"replace": False, "caliper": 0.1}
    from typer.testing import CliRunner

    from pleval.cli import app

    res = CliRunner().invoke(app, ["estimate", "sample_data/pl_matched_students.csv", "--only-subject", "math",
                                   "--no-placebo", "--set", "replace=False", "--set", "sensitivity=FALSE", "-q",
                                   "--out", str(tmp_path / "o")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "without replacement" in (tmp_path / "o" / "summary.md").read_text()
    assert tomllib.loads((tmp_path / "o" / "run.toml").read_text())["match"]["replace"] is False


def test_an_exact_fit_is_not_estimable_rather_than_a_zero_width_significant_effect():
    """Six PL rows matched to three comparisons (the rest beyond the caliper) left no residual
    variance: SE 3e-27, CI +1.785 to +1.785, p 0, rated 'Meets WWC Standards With Reservations'.
    An SE of zero (or no df) is now 'could not be estimated', like too few residual df."""
    from pleval.simulate import simulate_matched

    d = simulate_matched(n_schools=100, n_pl_schools=12, students_per_grade=10, seed=7, missing_posttest=0.05).data
    d = d[d["subject"] == "math"].copy()
    pl = d["treatment"] == 1
    d.loc[pl, ["pretest", "posttest"]] += 80
    m = pleval.match(d, pleval.data.SAMPLE_COLUMNS, penalize=True)
    with pytest.raises(pleval.errors.DesignError, match="could not be estimated .*the outcome is fitted exactly"):
        m.estimate()


def test_the_workbook_gives_the_same_prediction_interval_as_every_other_output(tmp_path):
    """school_effects.xlsx printed the PL-only prediction interval (math −0.142 to 0.422,
    P(<0) 0.15) unlabelled, while heterogeneity.csv, the terminal and summary.md gave the one
    widened to at least the placebo spread (−0.248 to 0.508, 0.20)."""
    import openpyxl

    from pleval.report.outputs import _write_school_xlsx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pleval.errors.PlevalWarning)
        ev = pleval.estimate("sample_data/pl_matched_students.csv", sensitivity=False)
    _write_school_xlsx(ev, tmp_path / "s.xlsx")
    rows = list(openpyxl.load_workbook(tmp_path / "s.xlsx")["Summary"].iter_rows(values_only=True))
    head = next(r for r in rows if r and r[0] == "subject")
    got = {r[0]: r for r in rows if r and r[0] in ("math", "reading")}
    het = ev.heterogeneity.set_index("subject")
    assert (het["pi_low"] != het["pi_low_pl_only"]).all()  # the two differ: the test can tell them apart
    for s in ("math", "reading"):
        assert got[s][head.index("prediction interval low")] == pytest.approx(het.loc[s, "pi_low"], rel=1e-12)
        assert got[s][head.index("prediction interval high")] == pytest.approx(het.loc[s, "pi_high"], rel=1e-12)


def test_the_workbook_says_how_the_prediction_interval_was_widened(tmp_path):
    """The trial's reading: the PL schools' spread (SD 0.129) is below the placebo schools'
    (0.134), so the prediction interval uses the two pooled by precision (0.131). The workbook
    said "(at least the placebo spread)" all the same; it now says which."""
    import openpyxl

    from pleval.report.outputs import _write_school_xlsx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pleval.errors.PlevalWarning)
        ev = pleval.estimate("sample_data/pl_cluster_rct.csv", design="rct")
    _write_school_xlsx(ev, tmp_path / "s.xlsx")
    book = openpyxl.load_workbook(tmp_path / "s.xlsx")
    het = ev.heterogeneity.set_index("subject")
    pooled = het["tau2"] < het["tau2_placebo"]
    assert pooled.any()
    for s in het.index:
        head = book[s]["A2"].value
        assert ("(PL and placebo spreads pooled by precision)" in head) == bool(pooled[s])
        assert ("(at least the placebo spread)" in head) == (not pooled[s])


def test_alpha_for_school_counts_does_not_move_the_essa_tier():
    """--alpha 0.2 rated a p = 0.18 estimate ESSA 'Moderate' beside a headline calling it not
    significant; ESSA's significance is the WWC's p < 0.05 whatever alpha the counts use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pleval.errors.PlevalWarning)
        kw = dict(placebo=False, sensitivity=False, subject="math")
        a = pleval.estimate("sample_data/pl_matched_students.csv", alpha=0.05, **kw)
        b = pleval.estimate("sample_data/pl_matched_students.csv", alpha=0.5, **kw)
    p = float(a.overall.loc[a.overall["primary"], "pvalue"].iloc[0])
    assert 0.05 < p < 0.5  # the sample's math estimate (p 0.085) is not significant at 0.05 ...
    assert a.rating.equals(b.rating)  # ... so a lax alpha must not make it so for ESSA


def test_a_student_level_moderator_is_said_to_be_averaged_per_school():
    """`moderators=grade` became each school's mean grade without a word; a school-level
    moderator (school_poverty) stays quiet."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pleval.estimate("sample_data/pl_matched_students.csv", placebo=False, sensitivity=False, subject="math",
                        moderators=("grade", "school_poverty"))
    said = [str(w.message) for w in caught if "varies within" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("moderator 'grade' varies within 32 school(s)")


def test_an_infinite_moderator_stops_estimate_naming_its_rows_and_school():
    """school_poverty infinite in three of a PL school's rows, or in all of them (or written as
    text "inf"): estimate stops before computing, naming the rows and the school. Before
    2026-12-05 the three rows were left out of the school's mean without a word, and a school
    whose rows were all infinite was left out of the meta-regression with a note ("a moderator
    missing")."""
    d = pd.read_csv("sample_data/pl_matched_students.csv", dtype={"school_id": str})
    pl = d.index[d.treatment == 1]
    school = d.loc[pl[0], "school_id"]
    kw = dict(placebo=False, sensitivity=False, subject="math", moderators=("school_poverty",))
    whole = d.index[d.school_id == school]
    for rows, poverty in ((pl[:3], np.inf), (whole, np.inf), (pl[:3], "inf")):
        bad = d.assign(school_poverty=d.school_poverty.astype(object if isinstance(poverty, str) else float))
        bad.loc[rows, "school_poverty"] = poverty
        want = (f"column 'school_poverty' (moderator): {len(rows):,} row(s) are infinite (index "
                f"{', '.join(map(str, rows[:3]))}; school(s) {school!r})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            with pytest.raises(DataError, match=re.escape(want)):
                pleval.estimate(bad, **kw)


def test_an_infinite_moderator_in_rows_never_averaged_does_not_stop_estimate():
    """A school's moderator is the mean over its PL rows: infinite values in comparison schools' rows
    are never read, and the meta-regression is that of the data without them; earlier on
    2026-12-05 they stopped estimate. In a PL row they still stop it (test above)."""
    d = pd.read_csv("sample_data/pl_matched_students.csv", dtype={"school_id": str})
    kw = dict(placebo=False, sensitivity=False, subject="math", moderators=("school_poverty",))
    comp = d.index[d.treatment == 0][:5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        want = pleval.estimate(d, **kw)
        got = pleval.estimate(d.assign(school_poverty=d.school_poverty.where(~d.index.isin(comp), np.inf)), **kw)
    assert len(want.moderators)
    pd.testing.assert_frame_equal(got.moderators, want.moderators)
    pd.testing.assert_frame_equal(got.school_effects.table, want.school_effects.table)


def test_a_moderator_varying_within_a_school_counts_schools_not_subjects():
    """school_poverty changed in one math and one reading row of a PL school: "varies within 1
    school(s)" (as many as pandas finds among the PL rows); before 2026-12-05 it counted school ×
    subject groups: 2."""
    d = pd.read_csv("sample_data/pl_matched_students.csv", dtype={"school_id": str})
    school = d.loc[d.treatment == 1, "school_id"].iloc[0]
    for subject in ("math", "reading"):
        d.loc[d.index[(d.school_id == school) & (d.subject == subject) & (d.treatment == 1)][0], "school_poverty"] = 0.1
    want = int((d[d.treatment == 1].groupby("school_id")["school_poverty"].nunique() > 1).sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pleval.estimate(d, placebo=False, sensitivity=False, moderators=("school_poverty",))
    said = {str(w.message) for w in caught if "varies within" in str(w.message)}
    assert want == 1 and len(said) == 1 and said.pop().startswith(f"moderator 'school_poverty' varies within {want} "
                                                                   "school(s)")


def test_a_moderator_level_found_only_at_comparison_schools_changes_nothing():
    """PL schools are rural or town; some comparison schools are 'city'. The indicators were made
    from every row, so 'city' (first in order) became the reference level absent among the PL
    schools, and the meta-regression stopped as rank deficient (no moderators table). Its levels
    now come from the PL rows: the fit equals the one on a file without any 'city' schools."""
    d = pd.read_csv("sample_data/pl_matched_students.csv")
    pl = d.groupby("school_id")["treatment"].max()
    rng = np.random.default_rng(0)
    loc = np.where(pl.to_numpy() == 1, rng.choice(["rural", "town"], len(pl)), rng.choice(["city", "rural", "town"], len(pl)))
    d["locale"] = d["school_id"].map(dict(zip(pl.index, loc)))
    kw = dict(placebo=False, sensitivity=False, subject="math", moderators=("locale",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pleval.errors.PlevalWarning)
        got = pleval.estimate(d, **kw).table("moderators")
        ref = pleval.estimate(d.assign(locale=d["locale"].replace({"city": "rural"})), **kw).table("moderators")
    assert list(got["term"]) == ["intercept", "locale[town]"]
    np.testing.assert_allclose(got["estimate"], ref["estimate"], rtol=1e-12)
    np.testing.assert_allclose(got["se"], ref["se"], rtol=1e-12)


def test_a_numeric_moderator_with_text_is_not_made_a_category():
    """school_poverty read as text (an 'NA' among the numbers, as R writes missing values): each
    value became a level of its own — 7 indicator terms, or a level 'NA' — without a word. Text
    among numbers is now an error suggesting --na; numbers written as text are a number."""
    d = pd.read_csv("sample_data/pl_matched_students.csv")
    kw = dict(placebo=False, sensitivity=False, subject="math", moderators=("school_poverty",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pleval.errors.PlevalWarning)
        ref = pleval.estimate(d, **kw).table("moderators")
        as_text = pleval.estimate(d.assign(school_poverty=d["school_poverty"].astype(str)), **kw).table("moderators")
        bad = d.assign(school_poverty=d["school_poverty"].astype(str).where(d["school_id"] != d["school_id"].iloc[0], "NA"))
        with pytest.raises(pleval.DataError, match="moderator column .school_poverty. mixes numbers with text that looks like missing values .* --na NA"):
            pleval.estimate(bad, **kw)
    assert list(as_text["term"]) == ["intercept", "school_poverty"]
    np.testing.assert_allclose(as_text["estimate"], ref["estimate"], rtol=1e-12)


def test_a_singular_joint_covariance_keeps_the_school_estimates():
    """All PL students in one grade: the joint covariance of the school estimates was singular,
    and every school effect vanished ('no school effects', empty school_effects.csv). The pooling
    is now left out with a warning, and the per-school estimates stand."""
    from pleval.simulate import simulate_matched

    d = simulate_matched(n_schools=100, n_pl_schools=12, students_per_grade=10, seed=7).data
    d = d[(d["treatment"] == 0) | (d["grade"] == d["grade"].max())]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(d, placebo=False, sensitivity=False)
    said = [str(w.message) for w in caught if "no meta-analysis or shrinkage" in str(w.message)]
    schools = ev.schools
    assert len(schools) and np.isfinite(schools["effect_size"]).sum() >= 20
    for s in ("math", "reading"):
        assert s in set(schools["subject"]) and (s in ev.heterogeneity["subject"].tolist() or any(s in w for w in said))
    assert not any("no school effects" in n for n in ev.notes)


def test_a_subject_without_any_comparison_is_left_out_with_a_warning_not_a_crash():
    """A third subject whose PL rows are all in grades without its comparison students (none
    can be matched) stopped the run with a bare KeyError ('science',). It is now warned of,
    counted as a subject left out, and the other subjects' tables (placebo schools included)
    are those of the file without its rows."""
    df = pd.read_csv("sample_data/pl_matched_students.csv")
    sci = df[df.subject == "math"].assign(subject="science")
    sci = sci[((sci.treatment == 0) & (sci.grade == 3)) | ((sci.treatment == 1) & (sci.grade != 3))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(pd.concat([df, sci], ignore_index=True))
    n_sci_pl = int(((sci.treatment == 1) & sci.posttest.notna()).sum())
    (msg,) = [str(w.message) for w in caught if "science" in str(w.message)]
    assert msg.startswith(f"subject science: not estimated, none of its {n_sci_pl:,} PL rows found a comparison "
                          f"(no comparison in its exact-match cell: {n_sci_pl:,})")
    assert ev.subjects == ("math", "reading") and msg in ev.warnings
    row = ev.dropped[ev.dropped["stage"] == "subject selection"].iloc[0]
    assert (row["reason"], row["n_rows"]) == ("subject science: no PL row found a comparison", len(sci))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ref = pleval.estimate(df)
    for name in ("overall", "schools", "placebo", "heterogeneity", "balance"):
        pd.testing.assert_frame_equal(ev.table(name), ref.table(name), check_exact=True, obj=name)


def test_trial_school_effects_are_those_of_the_itt_rows_and_take_up_gaps_stay_in():
    """A cluster trial's school table reads the ITT's analytic rows. Before, school SCH001 with
    its grades missing was out of the ITT (its rows counted as attrition) but in the school
    table and meta-analysis; and take-up recorded in PL schools only stopped the run ('no
    comparison units', blamed on the treatment column) though the ITT does not need it."""
    df = pd.read_csv("sample_data/pl_cluster_rct.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        base = pleval.estimate(df, design="rct", placebo=False, subject="math")
        no_grade = pleval.estimate(df.assign(grade=df.grade.mask(df.school_id == "SCH001")), design="rct",
                                   placebo=False, subject="math")
        no_takeup = pleval.estimate(df.assign(takeup=df.takeup.where(df.treatment == 1)), design="rct",
                                    placebo=False, subject="math")
    itt = no_grade.effects["math"].raw
    pl_schools = no_grade.schools["school"]
    assert "SCH001" in set(base.schools["school"]) and "SCH001" not in set(pl_schools)
    assert len(pl_schools) == base.schools.shape[0] - 1 == int(no_grade.heterogeneity["k"].iloc[0])
    assert itt.n_treated == base.effects["math"].raw.n_treated - int(((df.school_id == "SCH001")
                                                                      & (df.subject == "math")
                                                                      & df.posttest.notna()).sum())
    assert no_takeup.effects["math"].raw.estimate == base.effects["math"].raw.estimate
    pd.testing.assert_frame_equal(no_takeup.schools, base.schools)
    assert "CACE (IV)" not in set(no_takeup.overall["analysis"]) and "CACE (IV)" in set(base.overall["analysis"])
    report = pleval.check(df.assign(takeup=df.takeup.map({1: "yes", 0: "no"})), design="rct")
    assert any(p.level == "error" and "column 'takeup' (takeup) must be 0/1" in p.line for p in report.problems)
    gaps = pleval.check(df.assign(takeup=df.takeup.where(df.treatment == 1)), design="rct")
    (line,) = [p.line for p in gaps.problems if "'takeup'" in p.line]
    assert ("comparison rows: the comparison arm only): the ITT keeps them; the complier (CACE) estimate is that of "
            "the rows with take-up known; fix: fill them in (0 for a student who could not take the program up)") in line


def test_a_trial_lists_each_row_left_out_once():
    """A trial's rows missing a pretest were dropped by the run's validation ('rows kept 10,608')
    and counted again, per subject, by the trial's analysis as attrition: listed twice. They are
    the trial's attrition only: the rows kept are the randomized rows, and each subject's note
    names it."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    for s in ("math", "reading"):
        d.loc[d.index[d.subject == s][:10], "pretest"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(d, design="rct", placebo=False)
    dropped = ev.dropped
    pre = dropped[dropped["reason"] == "missing pretest"]
    assert pre["stage"].tolist() == ["randomized-trial analysis"] * 2 and pre["n_rows"].tolist() == [10, 10]
    summary = ev.data_summary.set_index("reason")["n_rows"]
    assert summary["rows kept"] == summary["rows read"] == len(d)
    assert all(any(n.startswith(f"10 randomized row(s) of {s} lack a pretest") for n in ev.notes) for s in ("math", "reading"))
    (line,) = [p.line for p in ev.checks.warnings if p.column == "pretest"]
    assert "randomized all the same, they are left out of the analytic sample and counted as attrition; fix" in line


def test_moderator_terms_keep_declared_and_genuine_categories():
    """Numbers written as text become a number, but a declared category ('1', '2', '3' as a
    pandas Categorical) and text levels among number-like ones ('2022', '2023', 'pilot') stay
    categories (indicators); an NA-like text among numbers is the error suggesting --na."""
    from pleval.estimate import _moderator_terms

    d = pd.DataFrame({"a": ["1", "2", "3", "2"], "b": pd.Categorical(["1", "2", "3", "2"]),
                      "c": ["2022", "2023", "pilot", "2022"], "d": ["0.4", "NA", "0.6", "0.5"]})
    assert _moderator_terms(d, ["a"])[1] == ["a"]
    assert _moderator_terms(d, ["b"])[1] == ["b[2]", "b[3]"]
    assert _moderator_terms(d, ["c"])[1] == ["c[2023]", "c[pilot]"]
    with pytest.raises(pleval.DataError, match="give --na NA if they mean missing"):
        _moderator_terms(d, ["d"])


def test_a_pl_school_with_every_row_dropped_is_named():
    """A PL school none of whose rows reaches the school effects (every pretest missing) is a
    named row of the dropped table and a note; before 2026-12-04 it left the school table and the
    meta-analysis's k without a word. PL rows with no comparison in their exact-match cell name
    the exact keys, not the treatment column."""
    df = simulate_matched(seed=4, n_schools=40, n_pl_schools=6, students_per_grade=10, grades=(4, 5)).data
    pl_schools = sorted(df.loc[df["treatment"] == 1, "school_id"].unique())
    gone, alone = pl_schools[0], pl_schools[1]
    df.loc[df["school_id"] == gone, "pretest"] = np.nan
    only_pl = (df["school_id"] == alone) & (df["grade"] == 5)
    df.loc[only_pl, "grade"] = 6  # a grade with PL students only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = pleval.estimate(df, design="matched", placebo=False, sensitivity=False)
    d = ev.dropped
    named = d[d["reason"].str.startswith(f"PL school {gone}:")]
    assert sorted(named["subject"]) == sorted(df["subject"].unique()) and (named["column"] == "school_id").all()
    assert (named["n_rows"] == df[df["school_id"] == gone].groupby("subject").size().sort_index().to_numpy()).all()
    assert "every row dropped by validation" in named["reason"].iloc[0]
    assert not (ev.schools["school"] == gone).any() and any(gone in n for n in ev.notes)
    cell = d[d["reason"] == "no comparison in its exact-match cell"]
    assert list(cell["column"]) == ["subject, grade"] and cell["n_rows"].sum() == only_pl.sum()
