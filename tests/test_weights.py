"""Analysis weights in matched designs (pleval.matching.analysis_weights): each matched set, cell
or subclass weighs as much as its PL rows' analysis weights, so the effect is the weighted PL
students' (checked against the weighted average of known effects), the regression checked
against statsmodels WLS with school-clustered standard errors; never ignored; rows of weight 0
left out and counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import pleval
from pleval.data import SAMPLE_COLUMNS, Columns


@pytest.fixture(scope="module")
def data():
    d = pleval.simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=8, seed=11).data
    d = d[d.posttest.notna()].reset_index(drop=True)
    return d.assign(w=np.random.default_rng(3).uniform(0.2, 3.0, len(d)))


@pytest.mark.parametrize("method", ["propensity", "weighting"])
def test_weighted_effect_matches_statsmodels_wls(data, method):
    cols = SAMPLE_COLUMNS.replace(weight="w")
    m = pleval.match(data, cols, method=method)
    eff = m.estimate(vcov="CR1")
    m0 = pleval.match(data, SAMPLE_COLUMNS, method=method)  # the same matches: the PS model is unweighted
    s = m0.matched
    s = s.assign(_w=m.matched["_weight"].to_numpy())
    assert (s[["student_id", "subject", "_set"]].to_numpy() == m.matched[["student_id", "subject", "_set"]].to_numpy()).all()
    fit = smf.wls("posttest ~ treatment + pretest + female + frl + ell + sped + C(race) + C(subject) + C(grade)",
                  data=s, weights=s["_w"]).fit(cov_type="cluster", cov_kwds={"groups": s["school_id"].to_numpy()})
    assert eff.raw.estimate == pytest.approx(fit.params["treatment"], rel=1e-8)
    assert eff.raw.se == pytest.approx(fit.bse["treatment"], rel=1e-6)
    unweighted = m0.estimate(vcov="CR1")
    assert abs(eff.raw.estimate - unweighted.raw.estimate) > 1e-6  # the weights are used, not ignored
    assert eff.sd != pytest.approx(unweighted.sd, rel=1e-9)  # and so is the SD of the effect size


def test_unit_weights_change_nothing_and_zero_weights_remove_rows(data):
    one = pleval.match(data.assign(w=1.0), SAMPLE_COLUMNS.replace(weight="w")).estimate()
    ref = pleval.match(data, SAMPLE_COLUMNS).estimate()
    assert one.raw.estimate == pytest.approx(ref.raw.estimate, rel=1e-12)
    zero = pleval.match(data.assign(w=np.where(data.index % 7 == 0, 0.0, 1.0)), SAMPLE_COLUMNS.replace(weight="w"))
    dropped = pleval.match(data[data.index % 7 != 0].assign(w=1.0), SAMPLE_COLUMNS.replace(weight="w"))
    assert zero.estimate().raw.estimate == pytest.approx(dropped.estimate().raw.estimate, rel=1e-12)
    assert abs(zero.estimate().raw.estimate - ref.raw.estimate) > 1e-6
    # counted, not silently gone: before, a PL row of weight 0 stayed in n_treated (and took comparisons)
    ex = zero.exclusions.set_index("reason")
    assert ex.loc["analysis weight 0", "n_rows"] == int((data.index % 7 == 0).sum())
    assert zero.sample_sizes().equals(dropped.sample_sizes())


def _two_grades(seed=1):
    """Grade 3 (effect 2) and grade 8 (effect 6), 100 PL and 300 comparison students each; PL
    weights 1 (grade 3) and 3 (grade 8), comparison weights 2 and 1: the weighted PL students'
    effect is (100·2 + 300·6)/400 = 5."""
    rng = np.random.default_rng(seed)
    parts = []
    for grade, eff, w_pl, w_c in ((3, 2.0, 1.0, 2.0), (8, 6.0, 3.0, 1.0)):
        for t, n, w in ((1, 100, w_pl), (0, 300, w_c)):
            pre = rng.normal(200 + 5 * grade, 10, n)
            parts.append(pd.DataFrame({
                "student_id": [f"{grade}-{t}-{i}" for i in range(n)], "school_id": [f"{grade}-{t}-{i % 10}" for i in range(n)],
                "grade": grade, "subject": "math", "treatment": t, "pretest": pre,
                "posttest": pre + 10 * (grade == 8) + eff * t, "effect": eff * t, "w": w}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("method", ["weighting", "ebal", "subclass", "cem", "propensity", "mahalanobis", "vcg"])
def test_weighted_effect_is_the_weighted_pl_students_effect(method):
    """Each exact-match cell weighs as much as its PL rows' analysis weights. Before, the matching
    weights were multiplied by the analysis weights afterwards (MatchIt's rule), so a cell's
    comparison rows weighed n_PL·mean(w) and every method gave 4.11–4.12 here."""
    d = _two_grades()
    cols = Columns(student_id="student_id", school="school_id", grade="grade", subject="subject",
                   treatment="treatment", pretest="pretest", outcome="posttest", weight="w")
    m = pleval.match(d, cols, method=method)
    s = m.matched
    pl = s[s["treatment"] == 1]
    truth = float((pl["w"] * pl["effect"]).sum() / pl["w"].sum())  # the matched PL rows' (all of them but a few)
    assert truth == pytest.approx(5.0, abs=0.05)
    assert m.estimate().raw.estimate == pytest.approx(truth, abs=0.02)  # (pretest balance is near, not exact)
    # per cell, the comparison weights sum to the PL rows' analysis weights
    by = s.assign(wt=s["_weight"]).groupby(["grade", "treatment"])["wt"].sum().unstack()
    np.testing.assert_allclose(by[0], by[1], rtol=1e-9)
    np.testing.assert_allclose(by[1], pl.groupby("grade")["w"].sum(), rtol=1e-12)


def test_sets_share_their_pl_students_weight_in_proportion_to_their_own(data):
    """Matched sets: the PL row keeps its weight; its comparisons share it in proportion to
    matching weight × their own analysis weight (ties and k = 5 here give unequal sets)."""
    m = pleval.match(data, SAMPLE_COLUMNS.replace(weight="w"), method="vcg")
    m0 = pleval.match(data, SAMPLE_COLUMNS, method="vcg")
    s, s0 = m.matched, m0.matched
    t = s["treatment"].to_numpy() == 1
    np.testing.assert_allclose(s.loc[t, "_weight"], s.loc[t, "w"])
    wa = (s0["_weight"] * s0["w"]).where(~t)
    share = wa / wa.groupby(s0["_set"]).transform("sum")
    pl_w = s["w"].where(t).groupby(s["_set"]).transform("max")
    np.testing.assert_allclose(s.loc[~t, "_weight"], (share * pl_w)[~t], rtol=1e-12)


def test_entropy_balancing_balances_the_weighted_pl_means(data):
    m = pleval.match(data, SAMPLE_COLUMNS.replace(weight="w"), method="ebal")
    s = m.matched
    for (subj, grade), g in s.groupby(["subject", "grade"]):
        t = g["treatment"] == 1
        for x in ("pretest", "frl"):
            pl_mean = np.average(g.loc[t, x], weights=g.loc[t, "w"])
            assert np.average(g.loc[~t, x], weights=g.loc[~t, "_weight"]) == pytest.approx(pl_mean, abs=1e-6)
        assert g.loc[~t, "_weight"].sum() == pytest.approx(g.loc[t, "w"].sum(), rel=1e-9)


def test_weights_in_the_whole_evaluation_and_refused_by_trials(data):
    ev = pleval.estimate(data, SAMPLE_COLUMNS.replace(weight="w"), placebo=False)
    ref = pleval.estimate(data, SAMPLE_COLUMNS, placebo=False)
    assert ev.overall["estimate"].tolist() != pytest.approx(ref.overall["estimate"].tolist())
    assert ev.schools["effect_size"].tolist() != pytest.approx(ref.schools["effect_size"].tolist())
    with pytest.raises(pleval.DataError, match="'w' \\(weight\\): randomized-trial analyses do not use analysis weights"):
        pleval.estimate(data, SAMPLE_COLUMNS.replace(weight="w"), design="rct")
