"""The CR1 df convention (``cluster_df``: G − 1, Stata; G − p, metafor's ``robust()``) and the
weighted CR2 form (``cr2``: transformed; clubSandwich) selected from every command where they
apply — ``pleval rct``, ``pleval match``, ``pleval estimate``, and ``pleval schools --cluster``
(cluster-robust meta-analysis) — each equal to the Python API with the same option, and moving
the numbers as the R references say (the references themselves are checked in
test_heterogeneity_robust.py and test_inference_parity.py)."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
from pleval import analyze_rct
from pleval.cli import app
from pleval.data import RCT_SAMPLE_COLUMNS, SAMPLE_COLUMNS
from pleval.errors import DataError
from pleval.heterogeneity import school_effects_from_estimates
from pleval.inference import ols
from pleval.matching import match
from pleval.matching.effect import effect_design
from pleval.multiarm import analyze_multiarm
from pleval.simulate import simulate_cluster_rct, simulate_matched

from .conftest import REFERENCE

runner = CliRunner()
RCT_COLS = RCT_SAMPLE_COLUMNS.replace(takeup=None)


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    sim = simulate_cluster_rct(n_schools=30, n_blocks=2, students_per_school=12, grades=[4], attrition=0.0,
                               noncompliance=0.0, seed=8)
    path = tmp_path_factory.mktemp("conv") / "trial.csv"
    data = sim.data.drop(columns=["takeup"])
    data.to_csv(path, index=False)
    return path, pd.read_csv(path)


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "students.csv"
    simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=8, seed=9).data.to_csv(path, index=False)
    return path, pd.read_csv(path)


def _itt(frame: pd.DataFrame, analysis: str = "ITT") -> pd.Series:
    return frame[(frame.analysis == analysis) & (frame.scale == "raw")].iloc[0]


def test_rct_cluster_df_cli_equals_api_and_moves_se_and_df(trial, tmp_path):
    """CR1 under G − p: factor G/(G − p) and G − p df (metafor's ``robust(adjust=TRUE)``), against
    Stata's G/(G − 1)·(n − 1)/(n − k) and G − 1 df: the SE ratio is the square root of the ratio
    of the factors, the coefficient unchanged."""
    path, data = trial
    out = {}
    for conv in ("G-1", "G-p"):
        r = runner.invoke(app, ["rct", str(path), "--vcov", "CR1", "--cluster-df", conv, "--only-subject", "math",
                                "--out", str(tmp_path / conv)])
        assert r.exit_code == 0, r.output
        out[conv] = _itt(pd.read_csv(tmp_path / conv / "itt.csv"))
        api = analyze_rct(data, RCT_COLS, subject="math", vcov="CR1", cluster_df=conv)
        assert out[conv]["se"] == pytest.approx(api.itt.raw.se, rel=1e-12)
        assert out[conv]["df"] == pytest.approx(api.itt.raw.df, rel=1e-12)
        assert api.options["cluster_df"] == conv
    api = analyze_rct(data, RCT_COLS, subject="math", vcov="CR1", cluster_df="G-p")
    G, n, k = api.fit.n_clusters, api.fit.n, api.fit.k + api.fit.k_absorbed  # block effects absorbed count
    assert "df G-p" in api.options["vcov"]
    assert out["G-1"]["estimate"] == pytest.approx(out["G-p"]["estimate"], rel=1e-12)
    assert (out["G-1"]["df"], out["G-p"]["df"]) == (G - 1, G - k)
    ratio = np.sqrt((G / (G - k)) / (G / (G - 1) * (n - 1) / (n - k)))
    assert out["G-p"]["se"] / out["G-1"]["se"] == pytest.approx(ratio, rel=1e-12)
    # CR2 is unaffected (Satterthwaite df)
    a = analyze_rct(data, RCT_COLS, subject="math", cluster_df="G-p")
    b = analyze_rct(data, RCT_COLS, subject="math")
    assert a.itt.raw.se == b.itt.raw.se and a.itt.raw.df == b.itt.raw.df
    with pytest.raises(DataError, match="cluster_df"):
        analyze_rct(data, RCT_COLS, subject="math", cluster_df="k-p")
    r = runner.invoke(app, ["rct", str(path), "--cluster-df", "n-1", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "cluster_df" in r.output


def test_multiarm_cluster_df(trial):
    path, data = trial
    arms = data.assign(treatment=np.where(data.treatment == 1, np.where(data.school_id.astype(str).str[-1] < "5", "a", "b"), "c"))
    g1 = analyze_multiarm(arms, RCT_COLS.replace(treated_label=None), "c", subject="math", vcov="CR1")
    gp = analyze_multiarm(arms, RCT_COLS.replace(treated_label=None), "c", subject="math", vcov="CR1",
                          cluster_df="G-p")
    f1, fp = g1.to_frame().set_index("arm"), gp.to_frame().set_index("arm")
    assert (f1.estimate == fp.estimate).all() and (fp.df < f1.df).all() and (fp.se != f1.se).all()
    assert "df G-p" in gp.options["vcov"]


def test_match_cr2_and_cluster_df_cli_equal_api(students, tmp_path):
    """``--cr2 clubsandwich``: clubSandwich's weighted CR2 (checked against clubSandwich's own
    numbers in test_inference_parity.py) on the matched sample, whose weights vary within school;
    it equals :func:`pleval.inference.ols` on the matched rows (copies not merged) and differs
    from the transformed form by well under 1% here."""
    path, data = students
    res = match(data, SAMPLE_COLUMNS, method="propensity", k=3)
    got = {}
    for form in ("transformed", "clubsandwich"):
        r = runner.invoke(app, ["match", str(path), "--k", "3", "--cr2", form, "-o", str(tmp_path / form)])
        assert r.exit_code == 0, r.output
        eff = pd.read_csv(tmp_path / form / "effect.csv")
        got[form] = eff[eff.scale == "raw"].iloc[0]
        api = res.estimate(cr2=form)
        assert got[form]["se"] == pytest.approx(api.raw.se, rel=1e-10)
        assert got[form]["df"] == pytest.approx(api.raw.df, rel=1e-10)
    api = res.estimate(cr2="clubsandwich")
    assert "clubSandwich form" in api.raw.method
    c = SAMPLE_COLUMNS
    d = effect_design(res.matched, outcome=c.outcome, treatment=c.treatment, pretests=c.pretest,
                      covariates=c.covariates, strata=res.strata, school=c.school)  # every copy a row
    direct = ols(d.y, d.X, weights=d.weights, clusters=d.clusters, names=list(d.names), cr2="clubsandwich")
    b, se, df, _ = direct.coef(SAMPLE_COLUMNS.treatment)
    assert (api.raw.estimate, api.raw.se, api.raw.df) == pytest.approx((b, se, df), rel=1e-10)
    assert got["clubsandwich"]["estimate"] == pytest.approx(got["transformed"]["estimate"], rel=1e-12)
    assert 0 < abs(got["clubsandwich"]["se"] / got["transformed"]["se"] - 1) < 0.01
    r = runner.invoke(app, ["match", str(path), "--k", "3", "--vcov", "CR1", "--cluster-df", "G-p", "-o",
                            str(tmp_path / "gp")])
    assert r.exit_code == 0, r.output
    eff = pd.read_csv(tmp_path / "gp" / "effect.csv")
    api = res.estimate(vcov="CR1", cluster_df="G-p")
    assert eff[eff.scale == "raw"].iloc[0]["se"] == pytest.approx(api.raw.se, rel=1e-10)
    assert eff[eff.scale == "raw"].iloc[0]["df"] == api.raw.df == api.raw.n_clusters - len(res.group_fits()[0][2].names)
    with pytest.raises(DataError, match="cr2"):
        res.estimate(cr2="satterthwaite")
    # --df-working independent: clubSandwich's df for the transformed form, the same SE
    r = runner.invoke(app, ["match", str(path), "--k", "3", "--df-working", "independent", "-o", str(tmp_path / "ind")])
    assert r.exit_code == 0, r.output
    eff = pd.read_csv(tmp_path / "ind" / "effect.csv")
    api = res.estimate(df_working="independent")
    assert eff[eff.scale == "raw"].iloc[0]["df"] == pytest.approx(api.raw.df, rel=1e-10)
    assert eff[eff.scale == "raw"].iloc[0]["se"] == pytest.approx(got["transformed"]["se"], rel=1e-12)
    assert api.raw.df != pytest.approx(got["transformed"]["df"], rel=1e-3)


def test_estimate_conventions_reach_results_and_run_toml(students, trial, tmp_path):
    path, data = students
    out = tmp_path / "m"
    r = runner.invoke(app, ["estimate", str(path), "--cr2", "clubsandwich", "--no-placebo", "--set", "sensitivity=false",
                            "--set", "k=3", "--meta-method", "SJ", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = tomllib.loads((out / "run.toml").read_text())
    assert cfg["options"]["cr2"] == "clubsandwich" and cfg["options"]["cluster_df"] == "G-1"
    ov = pd.read_csv(out / "overall.csv")
    ev = pleval.estimate(data, design="matched", cr2="clubsandwich", placebo=False, sensitivity=False, k=3,
                         meta_method="SJ")
    for s in ev.subjects:
        row = ov[(ov.subject == s) & (ov.scale == "raw") & ov.primary].iloc[0]
        assert row["se"] == pytest.approx(ev.effects[s].raw.se, rel=1e-10)
    # every τ² estimator defined for correlated estimates reaches the school meta-analysis (here SJ)
    from pleval.heterogeneity import meta_analysis

    se_ = ev.details[ev.subjects[0]]["schools"]
    key = next(iter(se_.meta))
    m = se_.meta[key]
    again = meta_analysis(m.estimates, m.ses, method="SJ", vcov=se_.vcov[key].to_numpy())
    assert m.method == "SJ" and m.tau2 == pytest.approx(again.tau2, rel=1e-10)
    het = pd.read_csv(out / "heterogeneity.csv")
    assert het["tau2"].iloc[0] == pytest.approx(m.tau2, rel=1e-9)
    base = pleval.estimate(data, design="matched", placebo=False, sensitivity=False, k=3)
    s = ev.subjects[0]
    assert ev.effects[s].raw.se != base.effects[s].raw.se
    assert ev.effects[s].raw.estimate == pytest.approx(base.effects[s].raw.estimate, rel=1e-12)

    tpath, tdata = trial
    out = tmp_path / "r"
    r = runner.invoke(app, ["estimate", str(tpath), "--design", "rct", "--vcov", "CR1", "--cluster-df", "G-p",
                            "--no-placebo", "--only-subject", "math", "--set", "lin=true", "--set", "bootstrap=99",
                            "--permutations", "50", "--seed", "2", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = tomllib.loads((out / "run.toml").read_text())
    assert cfg["options"]["cluster_df"] == "G-p" and cfg["options"]["vcov"] == "CR1" and cfg["options"]["lin"] is True
    ov = pd.read_csv(out / "overall.csv")
    row = _itt(ov)
    api = analyze_rct(tdata, RCT_COLS, subject="math", vcov="CR1", cluster_df="G-p", lin=True, bootstrap=99,
                      permutations=50, seed=2)
    assert (row["se"], row["df"]) == pytest.approx((api.itt.raw.se, api.itt.raw.df), rel=1e-10)
    assert "Lin (2013)" in row["method"]
    # the Hedges (2007) g_T row of a cluster trial, labelled, reaches overall.csv
    g = ov[ov.analysis.str.startswith("g_T (Hedges 2007")].set_index("scale")
    assert g.loc["effect size", "estimate"] == pytest.approx(api.cluster_effect_size.effect_size.estimate, rel=1e-10)
    boot = pd.read_csv(out / "bootstrap.csv").iloc[0]
    assert (boot["pvalue"], boot["ci_low"]) == pytest.approx((api.wild_bootstrap.pvalue, api.wild_bootstrap.ci_low))
    ri = pd.read_csv(out / "randomization.csv").iloc[0]
    assert ri["pvalue"] == pytest.approx(api.randomization.pvalue)
    with pytest.raises(DataError, match="cluster_df"):
        pleval.estimate(tdata, design="rct", cluster_df="G+1")


@pytest.fixture(scope="module")
def bcg_csv(tmp_path_factory):
    b = pd.read_csv(REFERENCE / "bcg.csv")
    y = np.log((b.tpos / (b.tpos + b.tneg)) / (b.cpos / (b.cpos + b.cneg)))
    v = 1 / b.tpos - 1 / (b.tpos + b.tneg) + 1 / b.cpos - 1 / (b.cpos + b.cneg)
    d = pd.DataFrame({"school_id": b.trial, "estimate": y, "se": np.sqrt(v), "trial": b.trial, "ablat": b.ablat,
                      "year": b.year, "pair": (b.trial - 1) // 2})
    path = tmp_path_factory.mktemp("bcg") / "bcg.csv"
    d.to_csv(path, index=False)
    return path, d


def test_schools_cluster_robust_cli_equals_api_and_metafor(bcg_csv):
    """``pleval schools --cluster trial``: metafor's ``robust(rma(yi, vi), cluster=trial)`` on
    dat.bcg, vcov 0.032106 and zval −3.98776 on 12 df, and with ``mods = ~ ablat + year`` zval
    −0.148282, −3.564978, 0.157928 on 10 df (metafor tests/testthat/test_misc_robust.r; at 1e-4
    relative for the meta-regression, metafor's REML convergence gap, as in
    test_heterogeneity_robust.py)."""
    path, d = bcg_csv
    res = school_effects_from_estimates(d, by=None, moderators=["ablat", "year"], cluster="trial", n_treated=None,
                                        n_comparison=None)
    regs = res.meta_regression(["ablat", "year"])
    rob = res.cluster_robust("trial", vcov="CR1", regressions=regs)
    pooled, reg = rob["all"], rob[("all", "meta-regression")]
    assert round(float(pooled.vcov[0, 0]), 6) == 0.032106 and pooled.df == 12
    assert round(float(pooled.coefficients.statistic.iloc[0]), 5) == -3.98776
    np.testing.assert_allclose(reg.coefficients.statistic, [-0.148282, -3.564978, 0.157928], rtol=1e-4)
    assert reg.df == 10
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--n-treated", "none", "--n-comparison", "none",
                            "--moderators", "ablat,year", "--cluster", "trial", "--cluster-vcov", "cr1", "-q"])
    assert r.exit_code == 0, r.output
    assert pooled.summary() in r.output and reg.summary() in r.output
    # the default, CR2: metafor's robust(..., clubSandwich=TRUE), vcov 0.03229357 on 11.04125 df
    # and the moderators' HTZ QM 6.708996 on (2, 2.528214)
    cr2 = res.cluster_robust("trial", regressions=regs)
    assert round(float(cr2["all"].vcov[0, 0]), 8) == 0.03229357 and round(cr2["all"].df, 5) == 11.04125
    assert cr2[("all", "meta-regression")].qm == pytest.approx(6.708996, rel=1e-5)
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--n-treated", "none", "--n-comparison", "none",
                            "--moderators", "ablat,year", "--cluster", "trial", "-q"])
    assert r.exit_code == 0, r.output
    assert cr2["all"].summary() in r.output and cr2[("all", "meta-regression")].summary() in r.output
    # G − 1: df and factor change for the meta-regression (p = 3), as the convention says
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--n-treated", "none", "--n-comparison", "none",
                            "--moderators", "ablat,year", "--cluster", "pair", "--cluster-vcov", "CR1", "--cluster-df", "G-1",
                            "-q"])
    assert r.exit_code == 0, r.output
    res2 = school_effects_from_estimates(d, by=None, moderators=["ablat", "year"], cluster="pair", n_treated=None,
                                         n_comparison=None)
    g1 = res2.cluster_robust("pair", vcov="CR1", df="G-1", regressions=res2.meta_regression(["ablat", "year"]))
    gp = res2.cluster_robust("pair", vcov="CR1", regressions=res2.meta_regression(["ablat", "year"]))
    assert g1[("all", "meta-regression")].summary() in r.output
    G, k, p = 7, 13, 3
    assert (g1[("all", "meta-regression")].df, gp[("all", "meta-regression")].df) == (G - 1, G - p)
    np.testing.assert_allclose(g1[("all", "meta-regression")].vcov,
                               gp[("all", "meta-regression")].vcov * (G - p) / (G - 1) * (k - 1) / (k - p), rtol=1e-10)
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--cluster", "district", "-q"])
    assert r.exit_code == 2 and "district" in r.output


def test_schools_hartung_knapp_prediction_t_k1_matches_metafor_readme(bcg_csv):
    """``rma(yi, vi, data=dat.bcg, test="knha")``: estimate −0.7145, se 0.1808, tval −3.9522 on 12
    df; ``predict(res, transf=exp, digits=2)``: 0.49, CI 0.33–0.73, PI 0.14–1.76 (metafor's
    README, github.com/wviechtb/metafor). metafor's PI uses t(k − 1): ``--prediction t_k1``;
    pleval's default t(k − 2) gives 0.13–1.79."""
    from pleval.heterogeneity import meta_analysis

    path, d = bcg_csv
    m = meta_analysis(d.estimate, d.se, method="REML", hartung_knapp=True, prediction="t_k1")
    assert (round(m.estimate, 4), round(m.se, 4)) == (-0.7145, 0.1808)
    assert [round(float(np.exp(x)), 2) for x in (m.estimate, m.ci_low, m.ci_high, m.pi_low, m.pi_high)] == \
        [0.49, 0.33, 0.73, 0.14, 1.76]
    default = meta_analysis(d.estimate, d.se, method="REML", hartung_knapp=True)
    assert [round(float(np.exp(x)), 2) for x in (default.pi_low, default.pi_high)] == [0.13, 1.79]
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--n-treated", "none", "--n-comparison", "none",
                            "--moderators", "", "--hartung-knapp", "--prediction", "t_k1", "-q"])
    assert r.exit_code == 0, r.output
    assert m.summary() in r.output


def test_school_cr2_reaches_school_effects_placebo_and_run_toml(students, tmp_path):
    """``school_cr2`` (``--school-cr2``): the CR2 form of the school effects' joint covariance and
    of the placebo schools, recorded in run.toml; the overall effect's ``cr2`` is a separate
    option. Under matching weights the forms differ; the estimates do not."""
    path, data = students
    out = tmp_path / "s"
    r = runner.invoke(app, ["estimate", str(path), "--school-cr2", "transformed", "--no-placebo", "--set",
                            "sensitivity=false", "--set", "k=3", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = tomllib.loads((out / "run.toml").read_text())
    assert cfg["options"]["school_cr2"] == "transformed" and cfg["options"]["cr2"] == "transformed"
    kw = dict(design="matched", placebo=False, sensitivity=False, k=3)
    old = pleval.estimate(data, school_cr2="transformed", **kw)
    new = pleval.estimate(data, **kw)
    csv = pd.read_csv(out / "school_effects.csv")
    t_old, t_new = old.school_effects.table, new.school_effects.table
    np.testing.assert_allclose(np.sort(csv["se"].dropna()), np.sort(t_old["se"].dropna()), rtol=1e-6)
    assert new.school_effects.options["cr2"] == "clubsandwich" and old.school_effects.options["cr2"] == "transformed"
    np.testing.assert_allclose(t_new["estimate"], t_old["estimate"], rtol=1e-12)
    assert np.abs(t_new["se"] / t_old["se"] - 1).max() > 1e-4
    s = new.subjects[0]
    assert new.effects[s].raw.se == pytest.approx(old.effects[s].raw.se, rel=1e-12)  # the overall effect: cr2
    plc = pleval.estimate(data, design="matched", sensitivity=False, k=3, school_cr2="transformed", n_placebo=4)
    assert plc.details[s]["placebo"].options["effect_options"]["cr2"] == "transformed"
    with pytest.raises(DataError, match="school_cr2"):
        pleval.estimate(data, school_cr2="precision", **kw)
