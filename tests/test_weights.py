"""Analysis weights in matched designs: the matching weights times the analysis weights, checked
against statsmodels WLS with school-clustered standard errors; never ignored."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.formula.api as smf

import pleval
from pleval.data import SAMPLE_COLUMNS


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
    s = s.assign(_w=s["_weight"] * s["w"])
    np.testing.assert_allclose(m.matched["_weight"], s["_w"])
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
    assert abs(zero.estimate().raw.estimate - ref.raw.estimate) > 1e-6


def test_weights_in_the_whole_evaluation_and_refused_by_trials(data):
    ev = pleval.estimate(data, SAMPLE_COLUMNS.replace(weight="w"), placebo=False)
    ref = pleval.estimate(data, SAMPLE_COLUMNS, placebo=False)
    assert ev.overall["estimate"].tolist() != pytest.approx(ref.overall["estimate"].tolist())
    assert ev.schools["effect_size"].tolist() != pytest.approx(ref.schools["effect_size"].tolist())
    with pytest.raises(pleval.DataError, match="'w' \\(weight\\): randomized-trial analyses do not use analysis weights"):
        pleval.estimate(data, SAMPLE_COLUMNS.replace(weight="w"), design="rct")
