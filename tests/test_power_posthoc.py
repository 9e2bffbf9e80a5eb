"""MDES of the analysis actually run, beside every overall and school estimate (pleval.estimate)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pleval
from pleval import findings
from pleval.estimate import to_json_dict
from pleval.percentiles import to_percentile_points
from pleval.power.posthoc import detectable_sentence
from tests.test_power import _t_power_by_integration


@pytest.fixture(scope="module")
def ev():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pleval.estimate("sample_data/pl_cluster_rct.csv", design="rct", seed=1, placebo=False)


def test_overall_mdes_has_80_percent_power_at_the_runs_alpha(ev):
    ov = ev.overall
    for _, r in ov[ov["scale"] == "effect size"].iterrows():
        # independent: the t-test power integral at the reported MDES is 0.80
        assert _t_power_by_integration(r["mdes"] / r["se"], r["df"], 0.05, True) == pytest.approx(0.80, abs=1e-7)
    es = ov[ov["scale"] == "effect size"].set_index(["subject", "analysis"])["mdes"]
    raw = ov[ov["scale"] == "raw"].set_index(["subject", "analysis"])
    pp = ov[ov["scale"] == "percentile points"].set_index(["subject", "analysis"])["mdes"]
    np.testing.assert_allclose(pp.to_numpy(), to_percentile_points(es.reindex(pp.index).to_numpy()), rtol=1e-12)
    # raw-scale MDES = the same multiplier times the raw SE
    ratio = raw["mdes"] / raw["se"]
    es_ratio = (ov[ov["scale"] == "effect size"].set_index(["subject", "analysis"]).eval("mdes / se"))
    np.testing.assert_allclose(ratio.to_numpy(), es_ratio.reindex(ratio.index).to_numpy(), rtol=1e-10)
    assert ev.mdes("math") == pytest.approx(es[("math", "ITT")])


def test_school_mdes_and_median(ev):
    sc = ev.schools
    ok = np.isfinite(sc["es_se"]) & np.isfinite(sc["df"])
    r = sc[ok].iloc[0]
    assert _t_power_by_integration(r["mdes_sd"] / r["es_se"], r["df"], 0.05, True) == pytest.approx(0.80, abs=1e-7)
    assert r["mdes_pp"] == pytest.approx(to_percentile_points(r["mdes_sd"]))
    h = ev.heterogeneity.set_index("subject")
    for s in ev.subjects:
        assert h.loc[s, "school_mdes_median"] == pytest.approx(sc.loc[sc["subject"] == s, "mdes_sd"].median())


def test_non_significant_headline_says_what_could_be_detected(ev):
    p = {s: ev.effect(s).effect_size.pvalue for s in ev.subjects}
    for s in ev.subjects:
        text = ev.sentence(s)
        assert ("Not significant" in text) == (p[s] >= 0.05)
        if p[s] >= 0.05:
            assert f"{ev.mdes(s):.3f} SD" in text and "could have been missed" in text
    assert any(v >= 0.05 for v in p.values())  # the sample's reading ITT (p ≈ 0.06) exercises the sentence
    assert detectable_sentence(0.01, 0.05, 0.2, 50) == ""
    summary = findings.text_summary(ev)
    assert "MDES" in summary and "A single school's estimate could detect" in summary
    js = to_json_dict(ev)["subjects"]["math"]
    assert js["mdes_sd"] == pytest.approx(ev.mdes("math"))


def test_report_shows_the_mdes(ev):
    from pleval import report

    html = report.render_html(ev, {})  # no figures: the tables and sentences only
    assert "MDES, SD (pct pts)" in html and "MDES (SD)" in html
    assert "could have been missed" in html or all(ev.effect(s).effect_size.pvalue < 0.05 for s in ev.subjects)
