"""Trial options of analyze_rct / `pleval rct` (issue 18): the HTZ interaction test, Lin's (2013)
interacted adjustment and the Hedges (2007) cluster-adjusted effect size, each against published
output or an independent computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from typer.testing import CliRunner

from pleval import analyze_rct
from pleval.cli import app
from pleval.errors import DataError
from pleval.inference import ols

from ._rct_sim import make_cluster_rct
from .conftest import sim_reps
from .test_rct import COLS, _analytic
from .test_rct_inference import direct_cr2

runner = CliRunner()
REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def trial():
    return make_cluster_rct(7, n_schools=24, n_blocks=4, effect=3.0, attrition=(0.12, 0.06), takeup=(0.75, 0.1))


def test_three_level_interaction_is_htz_by_default_and_f_on_request(trial):
    htz = analyze_rct(trial, COLS, subgroups=["pretest_tercile"]).interactions.iloc[0]
    f = analyze_rct(trial, COLS, subgroups=["pretest_tercile"], interaction_test="F").interactions.iloc[0]
    assert htz["test"].startswith("HTZ") and f["test"].startswith("Wald F")
    assert f["df2"] == 23 and htz["df1"] == f["df1"] == 2
    # the same model fitted by hand: HTZ is (η − q + 1)/η times the F statistic, on η − q + 1 df
    a = _analytic(trial)
    cuts = np.quantile(a["pretest"], [1 / 3, 2 / 3])
    lev = np.searchsorted(cuts, a["pretest"].to_numpy(), side="right")
    z = a["treatment"].to_numpy(float)
    X = pd.concat([pd.get_dummies(a["block"], drop_first=True, dtype=float), a[["pretest", "frl", "ell"]]], axis=1)
    X.insert(0, "const", 1.0)
    for j in (1, 2):
        X[f"lev{j}"] = (lev == j).astype(float)
    for j in range(3):
        X[f"t{j}"] = z * (lev == j)
    fit = ols(a["posttest"], X, clusters=a["school_id"])
    R = np.zeros((2, X.shape[1]))
    R[:, -3] = -1.0
    R[0, -2] = R[1, -1] = 1.0
    ref = fit.wald_test(R)
    assert htz["statistic"] == pytest.approx(ref.F, rel=1e-8) and htz["df2"] == pytest.approx(ref.df2, rel=1e-8)
    assert htz["pvalue"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert f["statistic"] == pytest.approx(ref.Q / 2, rel=1e-8)
    # CR1 has no working model: the F reference is used whatever is asked
    assert analyze_rct(trial, COLS, vcov="CR1", subgroups=["pretest_tercile"]).interactions.iloc[0]["df2"] == 23


def test_cli_interaction_test_option(tmp_path):
    path = tmp_path / "trial.csv"
    make_cluster_rct(3, n_schools=16, n_blocks=2, effect=2.0).to_csv(path, index=False)
    args = ["rct", str(path), "--outcome", "posttest", "--treatment", "treatment", "--pretest", "pretest",
            "--covariates", "frl,ell", "--school", "school_id", "--block", "block", "--subgroups", "pretest_tercile"]
    for opt, head in (("HTZ", "HTZ"), ("F", "Wald F"), ("htz", "HTZ")):
        out = tmp_path / opt
        r = runner.invoke(app, args + ["--interaction-test", opt, "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert pd.read_csv(out / "interactions.csv")["test"].iloc[0].startswith(head)


def test_lin_reproduces_lin_2013_table_2():
    """Lin (2013, Annals of Applied Statistics 7:295–318) Table 2, Angrist, Lang & Oreopoulos (2009)
    men, first-year GPA on the SFSP arm (data: estimatr's ``alo_star_men``; estimatr's
    test-replicate-lin2013.R checks the same), "classic sandwich" (HC0) SEs: unadjusted −0.036
    (0.158); usual adjustment for high-school GPA −0.083 (0.146); interacted (Lin) −0.081 (0.146)."""
    from pleval.lin import lin_ols

    d = pd.read_csv(REF / "alo_star_men.csv")
    one = np.ones(len(d))
    unadj = ols(d.GPA_year1, np.column_stack([one, d.sfsp]), vcov="HC0").coef("x1")
    usual = ols(d.GPA_year1, np.column_stack([one, d.sfsp, d.gpa0]), vcov="HC0").coef("x1")
    lin = lin_ols(d.GPA_year1, d.sfsp, d[["gpa0"]], vcov="HC0").coef("treatment")
    assert [(round(b, 3), round(se, 3)) for b, se, _, _ in (unadj, usual, lin)] == [
        (-0.036, 0.158), (-0.083, 0.146), (-0.081, 0.146)]
    # Lin's τ̂ is the difference of the two arms' own regression predictions at the overall mean
    x0 = d.gpa0.mean()
    preds = []
    for arm in (1, 0):
        a = d[d.sfsp == arm]
        b = np.polyfit(a.gpa0, a.GPA_year1, 1)
        preds.append(np.polyval(b, x0))
    assert lin[0] == pytest.approx(preds[0] - preds[1], rel=1e-10)
    # estimatr's default for lm_lin is HC2
    assert lin_ols(d.GPA_year1, d.sfsp, d[["gpa0"]]).vcov_type == "HC2"


def test_rct_lin_option_equals_statsmodels_interacted_model(trial):
    res = analyze_rct(trial, COLS, lin=True)
    a = _analytic(trial)
    C = pd.concat([pd.get_dummies(a["block"], prefix="b", drop_first=True, dtype=float),
                   a[["pretest", "frl", "ell"]].astype(float)], axis=1)
    C = C - C.mean()
    z = a["treatment"].to_numpy(float)
    X = pd.concat([C, C.mul(z, axis=0).add_prefix("z:")], axis=1)
    X.insert(0, "treatment", z)
    X.insert(0, "const", 1.0)
    ref = sm.OLS(a["posttest"].to_numpy(), X.to_numpy()).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(a["school_id"])[0]})
    assert res.itt.raw.estimate == pytest.approx(ref.params[1], rel=1e-10)
    cr1 = analyze_rct(trial, COLS, lin=True, vcov="CR1")
    assert cr1.itt.raw.se == pytest.approx(ref.bse[1], rel=1e-8)
    assert "Lin (2013)" in res.options["model"] and res.options["lin"] is True
    # CR2 with Satterthwaite df, as estimatr's lm_lin with clusters
    direct = ols(a["posttest"], X, clusters=a["school_id"], vcov="CR2").coef("treatment")
    assert (res.itt.raw.se, res.itt.raw.df) == (pytest.approx(direct[1], rel=1e-10), pytest.approx(direct[2], rel=1e-10))
    # the additive ITT differs (the interactions matter here) and the other analyses are unchanged
    base = analyze_rct(trial, COLS)
    assert abs(base.itt.raw.estimate - res.itt.raw.estimate) > 1e-6
    assert base.neyman.raw.estimate == res.neyman.raw.estimate


def _lin_additive_blocks_reference(a):
    """Lin's model with the pretest and covariates centred and interacted with assignment and the
    block indicators additive, by hand (statsmodels' design)."""
    C = a[["pretest", "frl", "ell"]].astype(float)
    C = C - C.mean()
    z = a["treatment"].to_numpy(float)
    X = pd.concat([C, C.mul(z, axis=0).add_prefix("z:"), pd.get_dummies(a["block"], drop_first=True, dtype=float)],
                  axis=1)
    X.insert(0, "treatment", z)
    X.insert(0, "const", 1.0)
    return X


def test_lin_with_one_school_in_a_blocks_arm_keeps_the_block_effects_additive():
    """A pair-matched cluster trial: each block × arm cell is one school, whose mean Lin's block ×
    assignment indicators fit exactly, so its cluster-robust SE lost the between-school variation
    (SE 0.0024 beside the additive model's 0.19 in the review's trial). The block effects are
    now additive, the pretest and covariates interacted: statsmodels' OLS with that design and
    its CR1, and the direct n×n CR2 with its Satterthwaite df, and a note naming the blocks."""
    d = make_cluster_rct(3, n_schools=16, n_blocks=8, size_range=(10, 40))
    a = _analytic(d)
    X = _lin_additive_blocks_reference(a)
    g = pd.factorize(a["school_id"])[0]
    ref = sm.OLS(a["posttest"].to_numpy(), X.to_numpy()).fit(cov_type="cluster", cov_kwds={"groups": g})
    cr1 = analyze_rct(d, COLS, lin=True, vcov="CR1")
    assert cr1.itt.raw.estimate == pytest.approx(ref.params[1], rel=1e-10)
    assert cr1.itt.raw.se == pytest.approx(ref.bse[1], rel=1e-9)
    res = analyze_rct(d, COLS, lin=True, bootstrap=199)
    V, df = direct_cr2(X.to_numpy(), a["posttest"].to_numpy(), g)
    assert res.itt.raw.estimate == pytest.approx(ref.params[1], rel=1e-10)
    assert res.itt.raw.se == pytest.approx(np.sqrt(V[1, 1]), rel=1e-9)
    assert res.itt.raw.df == pytest.approx(df[1], rel=1e-9)
    assert res.wild_bootstrap.estimate == pytest.approx(ref.params[1], rel=1e-10)  # the same model
    assert "block FE additive" in res.options["model"]
    note = next(n for n in res.notes if n.startswith("Lin adjustment"))
    assert "8 block(s) of 'block' (d0, d1, d2, d3, d4, …) have a single school in an arm" in note
    # with two or more schools in every cell the block indicators are interacted, as before
    full = analyze_rct(make_cluster_rct(3, n_schools=16, n_blocks=4, size_range=(10, 40)), COLS, lin=True)
    assert "block FE additive" not in full.options["model"] and not any("single school" in n for n in full.notes)


@pytest.mark.slow
def test_lin_in_pair_matched_cluster_trials_holds_its_size():
    """No effect, 10 pairs of schools (10–40 students, ICC 0.2, a pretest): Lin's ITT (CR2,
    Satterthwaite df) and its wild cluster bootstrap reject about 5%. Before 2026-12-05 the block ×
    assignment indicators fitted each school's mean and the SE collapsed: 97.5% (the review's 200
    trials), the bootstrap's p ≤ 0.001 in 5 of 5."""
    reps = sim_reps(1600, minimum=400)
    rejected = np.zeros(2)
    for seed in range(reps):
        res = analyze_rct(make_cluster_rct(seed, n_schools=20, n_blocks=10, size_range=(10, 40)),
                          COLS.replace(covariates=()), lin=True, compliance=False, bootstrap=199, seed=seed)
        rejected += [res.itt.raw.pvalue < 0.05, res.wild_bootstrap.pvalue < 0.05]
    bound = 3 * np.sqrt(0.05 * 0.95 / reps)
    assert np.all(np.abs(rejected / reps - 0.05) < bound), rejected / reps


def test_hedges_2007_cluster_effect_size_labelled(trial):
    """g_T = g·√{1 − 2(n̄ − 1)ρ/(N − 2)}: equal to effect_sizes.hedges2007_effect_size (Hedges 2007's
    d_T) times the WWC's ω, with the ITT as the mean difference and the pooled SD as S_T."""
    from pleval.effect_sizes import hedges2007_effect_size

    res = analyze_rct(trial, COLS)
    gt = res.cluster_effect_size
    n_t, n_c = res.itt.raw.n_treated, res.itt.raw.n_control
    d_t, _ = hedges2007_effect_size(res.itt.raw.estimate, res.itt.sd, n_t, n_c, (n_t + n_c) / 24, 0.20)
    assert gt.effect_size.estimate == pytest.approx(res.itt.omega * float(d_t), rel=1e-12)
    assert gt.effect_size.estimate < res.itt.effect_size.estimate
    ratio = gt.effect_size.estimate / res.itt.effect_size.estimate
    assert gt.effect_size.ci_low == pytest.approx(ratio * res.itt.effect_size.ci_low, rel=1e-12)
    assert gt.raw.estimate == res.itt.raw.estimate
    rows = res.to_frame()
    assert (rows["analysis"] == "g_T (Hedges 2007, ρ=0.20)").sum() == 3
    assert "g_T (Hedges 2007" in res.summary()
    # ρ = 0 leaves g unchanged; icc=None omits the row; individual designs have none
    assert analyze_rct(trial, COLS, icc=0.0).cluster_effect_size.effect_size.estimate == pytest.approx(
        res.itt.effect_size.estimate, rel=1e-12)
    assert analyze_rct(trial, COLS, icc=None).cluster_effect_size is None
    assert analyze_rct(trial, COLS, design="individual").cluster_effect_size is None
    with pytest.raises(DataError, match="icc"):
        analyze_rct(trial, COLS, icc=1.5)


def test_g_t_omega_from_hedges_cluster_df(trial):
    """gt_df="h": ω = 1 − 3/(4h − 1) with Hedges' (2007) cluster-adjusted df
    h = [(N−2) − 2(n̄−1)ρ]² / [(N−2)(1−ρ)² + n̄(N−2n̄)ρ² + 2(N−2n̄)ρ(1−ρ)] (WWC v5.0 eq. E.21) in
    place of the students' ω = 1 − 3/(4N − 9); everything else about g_T unchanged."""
    base = analyze_rct(trial, COLS).cluster_effect_size
    res = analyze_rct(trial, COLS, gt_df="h")
    gt = res.cluster_effect_size
    N = res.itt.raw.n_treated + res.itt.raw.n_control
    nbar, rho = N / 24, 0.20
    h = ((N - 2) - 2 * (nbar - 1) * rho) ** 2 / (
        (N - 2) * (1 - rho) ** 2 + nbar * (N - 2 * nbar) * rho**2 + 2 * (N - 2 * nbar) * rho * (1 - rho))
    ratio = (1 - 3 / (4 * h - 1)) / (1 - 3 / (4 * N - 9))
    assert ratio < 1
    for key in ("estimate", "se", "ci_low", "ci_high"):
        assert getattr(gt.effect_size, key) == pytest.approx(ratio * getattr(base.effect_size, key), rel=1e-12)
    assert gt.raw.estimate == base.raw.estimate and gt.effect_size.pvalue == pytest.approx(base.effect_size.pvalue)
    assert "ω(h)" in gt.effect_size.label and f"h = {h:.1f}" in gt.sd_kind
    assert res.options["gt_df"] == "h"
    with pytest.raises(DataError, match="gt_df"):
        analyze_rct(trial, COLS, gt_df="J")


def test_mixedlm_keeps_the_given_icc(trial):
    """method="mixedlm" reports the model's residual ICC in a note; the g_T row keeps the ICC it
    was given (and icc=None still omits it)."""
    res = analyze_rct(trial, COLS, method="mixedlm", icc=0.15)
    assert res.cluster_effect_size.effect_size.label == "g_T (Hedges 2007, ρ=0.15)"
    assert any("residual intraclass correlation" in n for n in res.notes)
    assert analyze_rct(trial, COLS, method="mixedlm", icc=None).cluster_effect_size is None


def test_cli_lin_and_icc(tmp_path):
    path = tmp_path / "trial.csv"
    make_cluster_rct(3, n_schools=16, n_blocks=2, effect=2.0).to_csv(path, index=False)
    args = ["rct", str(path), "--outcome", "posttest", "--treatment", "treatment", "--pretest", "pretest",
            "--covariates", "frl,ell", "--school", "school_id", "--block", "block"]
    r = runner.invoke(app, args + ["--lin", "--icc", "0.15", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    itt = pd.read_csv(tmp_path / "a" / "itt.csv")
    assert "g_T (Hedges 2007, ρ=0.15)" in set(itt["analysis"])
    api = analyze_rct(pd.read_csv(path), COLS, lin=True, icc=0.15)
    got = itt[(itt.analysis == "ITT") & (itt.scale == "raw")]["estimate"].iloc[0]
    assert got == pytest.approx(api.itt.raw.estimate, rel=1e-9)
    r = runner.invoke(app, args + ["--icc", "none", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0 and not pd.read_csv(tmp_path / "b" / "itt.csv")["analysis"].str.startswith("g_T").any()
    r = runner.invoke(app, args + ["--icc", "lots", "--out", str(tmp_path / "c")])
    assert r.exit_code != 0 and "--icc" in r.output
    r = runner.invoke(app, args + ["--gt-df", "h", "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    itt = pd.read_csv(tmp_path / "d" / "itt.csv")
    got = itt[itt.analysis == "g_T (Hedges 2007, ρ=0.20, ω(h))"].set_index("scale")["estimate"]
    api = analyze_rct(pd.read_csv(path), COLS, gt_df="h").cluster_effect_size.effect_size.estimate
    assert got["effect size"] == pytest.approx(api, rel=1e-9)
