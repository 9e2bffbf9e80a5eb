"""Blocks absorbed instead of formed: `pleval.inference.ols(absorb=...)` against the fit with one
indicator per block (pleval's own and statsmodels'), and a blocked trial with many blocks in
`analyze_rct` (ITT, complier share, CACE, subgroups) against statsmodels and linearmodels fits
that carry the block indicators; the n × blocks indicator matrix is never formed; a block of one
student adds nothing (as if dropped); indicators too large for memory get a clear error."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from linearmodels.iv import IV2SLS

from pleval.data import Columns
from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.inference import ols
from pleval.rct import analyze_rct

from .conftest import sim_reps
from .test_heterogeneity_school_effects import dense_hc2_df


def _groups(n=600, A=25, seed=1):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, A, n)
    x = rng.normal(size=(n, 2))
    y = x @ [1.0, -0.5] + 0.3 * g + rng.normal(size=n) * (1 + x[:, 0] ** 2)
    return y, x, g, rng.uniform(0.2, 2.0, n)


@pytest.mark.parametrize("vcov", ["HC0", "HC1", "HC2", "classical"])
@pytest.mark.parametrize("weighted", [False, True])
def test_absorbed_fit_equals_the_fit_with_indicators(vcov, weighted):
    y, x, g, w = _groups()
    w = w if weighted else None
    D = pd.get_dummies(g).to_numpy(dtype=float)  # one indicator per group, no intercept
    full = ols(y, np.column_stack([x, D]), vcov=vcov, weights=w)
    fit = ols(y, x, vcov=vcov, weights=w, absorb=g)
    np.testing.assert_allclose(fit.params, full.params[:2], rtol=1e-11)
    np.testing.assert_allclose(fit.vcov, full.vcov[:2, :2], rtol=1e-10)
    np.testing.assert_allclose(fit.resid, full.resid, atol=1e-11)
    if vcov == "HC2":  # Bell & McCaffrey's df of the fit with the indicators
        df = dense_hc2_df(np.column_stack([x, D]), np.ones(len(y)) if w is None else w, 0)
        assert fit.df[0] == pytest.approx(full.df[0], rel=1e-10) and fit.df[0] == pytest.approx(df, rel=1e-9)
    else:
        assert fit.df[0] == full.df[0] == len(y) - 2 - 25
    # and statsmodels' fit with the indicators (an independent computation)
    cov = {"classical": "nonrobust"}.get(vcov, vcov)
    sm_fit = (sm.OLS(y, np.column_stack([x, D])) if w is None else sm.WLS(y, np.column_stack([x, D]), weights=w)).fit(
        cov_type=cov)
    np.testing.assert_allclose(fit.se, np.asarray(sm_fit.bse)[:2], rtol=1e-9)


def test_absorb_is_refused_where_it_cannot_be_exact():
    y, x, g, w = _groups()
    spans = np.arange(len(y)) % 7  # clusters that cut across the groups
    with pytest.raises(DataError, match="each cluster within one absorbed group"):
        ols(y, x, vcov="CR2", clusters=spans, absorb=g)
    with pytest.raises(DataError, match="cluster-robust vcov only unweighted"):
        ols(y, x, vcov="CR1", clusters=g, weights=w, absorb=g)
    with pytest.raises(DataError, match="non-negative integer group codes"):
        ols(y, x, vcov="HC2", absorb=g.astype(float))


def _nested(seed=4, n_clusters=60, n_groups=18):
    """Clusters of unequal size (1 to 39 rows) nested in groups of 1 to several clusters."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, n_clusters)
    cl = np.repeat(np.arange(n_clusters), sizes)
    grp = np.unique(np.sort(rng.integers(0, n_groups, n_clusters))[cl], return_inverse=True)[1]
    z = (rng.random(cl.size) < 0.5).astype(float)
    x = rng.normal(size=(cl.size, 2))
    y = 0.2 * z + x @ [1.0, 1.0] + rng.normal(size=n_groups)[grp % n_groups] + rng.normal(size=cl.size)
    return y, np.column_stack([z, x]), cl, grp


@pytest.mark.parametrize("vcov, cluster_df", [("CR0", "G-1"), ("CR1", "G-1"), ("CR1", "G-p"), ("CR2", "G-1")])
@pytest.mark.parametrize("groups", ["nested", "clusters"])
def test_cluster_robust_fit_with_absorbed_groups_equals_the_fit_with_indicators(vcov, cluster_df, groups):
    """Clusters nested in the absorbed groups (or the clusters themselves absorbed, each
    cluster's effect identified by that cluster alone): coefficients, covariance, the
    Satterthwaite df of every coefficient and the HTZ test equal those of the fit with one
    indicator per group (pleval's CR2 there is checked against clubSandwich elsewhere)."""
    y, X, cl, grp = _nested()
    g = grp if groups == "nested" else cl
    D = pd.get_dummies(g).to_numpy(dtype=float)
    if cluster_df == "G-p" and groups == "clusters":  # as many coefficients as clusters: refused either way
        for Xf, kw in ((np.column_stack([X, D]), {}), (X, {"absorb": g})):
            with pytest.raises(DesignError, match="needs more clusters"):
                ols(y, Xf, clusters=cl, vcov=vcov, cluster_df=cluster_df, **kw)
        return
    full = ols(y, np.column_stack([X, D]), clusters=cl, vcov=vcov, cluster_df=cluster_df)
    fit = ols(y, X, clusters=cl, vcov=vcov, cluster_df=cluster_df, absorb=g)
    np.testing.assert_allclose(fit.params, full.params[:3], rtol=1e-10)
    np.testing.assert_allclose(fit.vcov, full.vcov[:3, :3], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(fit.df, full.df[:3], rtol=1e-9)
    if vcov == "CR2":
        R = np.zeros((2, full.k))
        R[0, 0] = R[1, 2] = 1.0
        a, b = full.wald_test(R), fit.wald_test(R[:, :3])
        assert a.F == pytest.approx(b.F, rel=1e-9) and a.df2 == pytest.approx(b.df2, rel=1e-9)


def _multisite(n_blocks=60, per=40, seed=3):
    """Students randomized within blocks, one-sided noncompliance, a 0/1 subgroup."""
    rng = np.random.default_rng(seed)
    n = n_blocks * per
    block = np.repeat(np.arange(n_blocks), per)
    z = np.concatenate([rng.permutation(np.arange(per) < per // 2) for _ in range(n_blocks)]).astype(int)
    pre = rng.normal(size=n) + 0.2 * rng.normal(size=n_blocks)[block]
    frl = rng.binomial(1, 0.4, n)
    takeup = z * rng.binomial(1, 0.7, n)
    y = 0.4 * takeup + 0.7 * pre - 0.2 * frl + 0.3 * rng.normal(size=n_blocks)[block] + rng.normal(size=n)
    return pd.DataFrame({"student_id": np.arange(n), "school_id": [f"S{b:03d}" for b in block], "treatment": z,
                         "takeup": takeup, "pretest": pre, "frl": frl, "posttest": y})


COLS = Columns(outcome="posttest", treatment="treatment", school="school_id", block="school_id",
               pretest=("pretest",), covariates=("frl",), takeup="takeup", student_id="student_id")


def test_many_blocks_trial_matches_fits_with_block_indicators():
    d = _multisite()
    res = analyze_rct(d, COLS, design="blocked", subgroups=["frl"])
    D = pd.get_dummies(d["school_id"], drop_first=True, dtype=float)
    X = pd.concat([d[["treatment", "pretest", "frl"]].astype(float), D], axis=1)
    X.insert(0, "const", 1.0)
    dof = len(d) - X.shape[1]
    bm = dense_hc2_df(X.to_numpy(), np.ones(len(d)), 1)  # HC2's Bell & McCaffrey df

    itt = sm.OLS(d["posttest"], X).fit(cov_type="HC2")
    e = res.itt.raw
    assert e.estimate == pytest.approx(itt.params["treatment"], rel=1e-10)
    assert e.se == pytest.approx(itt.bse["treatment"], rel=1e-9) and e.df == pytest.approx(bm, rel=1e-9)

    share = sm.OLS(d["takeup"], X).fit(cov_type="HC2")
    assert res.complier_share.estimate == pytest.approx(share.params["treatment"], rel=1e-10)
    assert res.complier_share.se == pytest.approx(share.bse["treatment"], rel=1e-9)

    iv = IV2SLS(d["posttest"], X.drop(columns="treatment"), d[["takeup"]], d[["treatment"]]).fit(
        cov_type="robust", debiased=True)
    cace = res.effects["CACE (IV)"].raw  # the ITT's HC2 for y − θ̂·take-up, over the complier share
    assert cace.estimate == pytest.approx(iv.params["takeup"], rel=1e-10)
    u = sm.OLS(d["posttest"] - cace.estimate * d["takeup"], X).fit(cov_type="HC2")
    assert cace.se == pytest.approx(u.bse["treatment"] / share.params["treatment"], rel=1e-9)
    assert cace.df == pytest.approx(bm, rel=1e-9)
    hc1 = analyze_rct(d, COLS, design="blocked", vcov="HC1").effects["CACE (IV)"].raw
    assert hc1.estimate == pytest.approx(iv.params["takeup"], rel=1e-10)
    assert hc1.se == pytest.approx(iv.std_errors["takeup"], rel=1e-9) and hc1.df == dof

    Xs = pd.concat([X.drop(columns="treatment"), pd.DataFrame({
        "t0": d["treatment"] * (d["frl"] == 0), "t1": d["treatment"] * (d["frl"] == 1)}).astype(float)], axis=1)
    sub = sm.OLS(d["posttest"], Xs).fit(cov_type="HC2")
    rows = res.subgroups.set_index("level")
    for lev, col in ((0, "t0"), (1, "t1")):
        assert rows.loc[lev, "estimate"] == pytest.approx(sub.params[col], rel=1e-9)
        assert rows.loc[lev, "se"] == pytest.approx(sub.bse[col], rel=1e-8)


def test_many_blocks_trial_does_not_form_the_block_indicators():
    d = _multisite(n_blocks=2000, per=10, seed=5)
    dense = len(d) * 2000 * 8  # bytes of the n × blocks indicators
    tracemalloc.start()
    try:
        res = analyze_rct(d, COLS, design="blocked")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.options["n_blocks"] == 2000 and np.isfinite(res.itt.raw.se)
    assert peak < dense / 4, f"peak {peak / 1e6:.0f} MB against {dense / 1e6:.0f} MB of indicators"


def test_cluster_trial_with_many_blocks_absorbs_them_under_cr2():
    """Schools randomized within 40 blocks: the CR2 ITT (estimate, SE, Satterthwaite df) and a
    subgroup HTZ test with the blocks absorbed equal pleval's fits with the indicators."""
    from pleval.simulate import simulate_cluster_rct

    d = simulate_cluster_rct(seed=6, n_blocks=40, n_schools=160, students_per_school=40,
                             subjects=["math"]).data.dropna(subset=["posttest", "pretest"])
    cols = Columns(outcome="posttest", treatment="treatment", school="school_id", block="block", pretest=("pretest",),
                   covariates=("frl",), student_id="student_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        res = analyze_rct(d, cols, design="cluster", subgroups=["ell"])
    assert "block FE (absorbed)" in res.options["model"] and res.fit.names[0] == "treatment"
    X = pd.concat([d[["treatment", "pretest", "frl"]].astype(float),
                   pd.get_dummies(d["block"], drop_first=True, dtype=float)], axis=1)
    X.insert(0, "const", 1.0)
    full = ols(d["posttest"].to_numpy(), X.to_numpy(), names=list(X.columns), clusters=d["school_id"].to_numpy(),
               vcov="CR2")
    b, se, df, _ = full.coef("treatment")
    assert res.itt.raw.estimate == pytest.approx(b, rel=1e-10)
    assert res.itt.raw.se == pytest.approx(se, rel=1e-9) and res.itt.raw.df == pytest.approx(df, rel=1e-9)
    ell = d["ell"].to_numpy(float)  # the subgroup model: level effect, assignment within each level
    Xs = X.drop(columns="treatment").assign(ell=ell, t0=d["treatment"] * (1 - ell), t1=d["treatment"] * ell)
    sub_fit = ols(d["posttest"].to_numpy(), Xs.to_numpy(float), names=list(Xs.columns),
                  clusters=d["school_id"].to_numpy(), vcov="CR2")
    sub = res.subgroups.set_index("level")
    for level, name in ((0, "t0"), (1, "t1")):
        b, se, df, _ = sub_fit.coef(name)
        assert sub.loc[level, "estimate"] == pytest.approx(b, rel=1e-9)
        assert sub.loc[level, "se"] == pytest.approx(se, rel=1e-8) and sub.loc[level, "df"] == pytest.approx(df, rel=1e-8)


def test_cluster_trial_cace_with_blocks_partialled_out_equals_linearmodels_with_indicators():
    from pleval.simulate import simulate_cluster_rct

    d = simulate_cluster_rct(seed=2, n_blocks=5, subjects=["math"]).data.dropna(subset=["posttest"])
    d["takeup"] = d["treatment"] * np.random.default_rng(1).binomial(1, 0.8, len(d))
    cols = Columns(outcome="posttest", treatment="treatment", school="school_id", block="block", pretest=("pretest",),
                   takeup="takeup", student_id="student_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        res = analyze_rct(d, cols, design="cluster", vcov="CR1")
    X = pd.concat([d[["pretest"]], pd.get_dummies(d["block"], drop_first=True, dtype=float)], axis=1)
    X.insert(0, "const", 1.0)
    iv = IV2SLS(d["posttest"], X, d[["takeup"]], d[["treatment"]]).fit(cov_type="clustered", clusters=d["school_id"],
                                                                     debiased=True)
    cace = res.effects["CACE (IV)"].raw
    assert cace.estimate == pytest.approx(iv.params["takeup"], rel=1e-10)
    assert cace.se == pytest.approx(iv.std_errors["takeup"], rel=1e-9)
    assert cace.df == d["school_id"].nunique() - 1


def test_multiarm_blocked_trial_absorbs_blocks_like_statsmodels_with_indicators():
    from pleval.multiarm import analyze_multiarm

    d = _multisite(n_blocks=40, per=30, seed=11)
    rng = np.random.default_rng(12)
    d["arm"] = np.where(d["treatment"] == 0, "control", rng.choice(["A", "B"], len(d)))
    d["posttest"] += 0.3 * (d["arm"] == "B")
    res = analyze_multiarm(d, COLS.replace(treatment="arm", takeup=None), "control", design="blocked",
                           adjust="dunnett")
    X = pd.concat([pd.get_dummies(d["arm"], dtype=float)[["A", "B"]], d[["pretest", "frl"]].astype(float),
                   pd.get_dummies(d["school_id"], drop_first=True, dtype=float)], axis=1)
    X.insert(0, "const", 1.0)
    ref = sm.OLS(d["posttest"], X).fit(cov_type="HC2")
    f = res.to_frame().set_index("arm")
    for arm in ("A", "B"):
        assert f.loc[arm, "estimate"] == pytest.approx(ref.params[arm], rel=1e-10)
        assert f.loc[arm, "se"] == pytest.approx(ref.bse[arm], rel=1e-9)
        assert f.loc[arm, "df"] == pytest.approx(dense_hc2_df(X.to_numpy(), np.ones(len(d)), list(X).index(arm)),
                                                 rel=1e-9)  # HC2: Bell & McCaffrey's df
    assert (f["pvalue_adjusted"] >= f["pvalue"] - 1e-3).all()


def test_indicators_too_large_for_memory_get_a_clear_error(monkeypatch):
    """An analysis that needs the block indicators as columns names the block column, the size
    and the way out, instead of exhausting the machine's memory."""
    import pleval._workers

    d = _multisite(n_blocks=50, per=20, seed=13)
    monkeypatch.setattr(pleval._workers, "available_memory", lambda: 4e5)
    assert np.isfinite(analyze_rct(d, COLS, design="blocked").itt.raw.se)  # absorbed: no indicators formed
    assert np.isfinite(analyze_rct(d, COLS, design="blocked", vcov="CR2").itt.raw.se)  # schools within blocks
    # Lin's model with CR2, each cell one school: the block effects additive, absorbed (as columns before 2026-12-05)
    assert np.isfinite(analyze_rct(d, COLS, design="blocked", vcov="CR2", lin=True).itt.raw.se)
    with pytest.raises(DesignError, match=r"one indicator per block of 'school_id'.*1,000 rows × 53 columns"):
        analyze_rct(d, COLS, design="blocked", vcov="CR2", bootstrap=99)  # the wild bootstrap: as columns


def test_a_block_of_one_student_is_left_out_as_if_dropped():
    """A block with one analysed student (the rest attrited) is fitted exactly by its effect:
    the ITT, its HC2/HC1 SEs and the CACE are those of the fit without that student, where the
    indicators would have made HC2 fail (leverage 1)."""
    d = _multisite(n_blocks=20, per=20, seed=3).iloc[19:]  # block S000 keeps one student
    rest = d[d["school_id"] != "S000"]
    X = pd.concat([rest[["treatment", "pretest", "frl"]].astype(float),
                   pd.get_dummies(rest["school_id"], drop_first=True, dtype=float)], axis=1)
    X.insert(0, "const", 1.0)
    for vcov in ("HC2", "HC1"):
        res = analyze_rct(d, COLS, design="blocked", vcov=vcov)
        ref = sm.OLS(rest["posttest"], X).fit(cov_type=vcov)
        assert res.itt.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-10)
        assert res.itt.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-9)
        df = dense_hc2_df(X.to_numpy(), np.ones(len(rest)), 1) if vcov == "HC2" else len(rest) - X.shape[1]
        assert res.itt.raw.df == pytest.approx(df, rel=1e-9)
    assert any("single analysed student" in n for n in res.notes)
    iv = IV2SLS(rest["posttest"], X.drop(columns="treatment"), rest[["takeup"]], rest[["treatment"]]).fit(
        cov_type="robust", debiased=True)
    assert res.effects["CACE (IV)"].raw.estimate == pytest.approx(iv.params["takeup"], rel=1e-10)
    assert res.effects["CACE (IV)"].raw.se == pytest.approx(iv.std_errors["takeup"], rel=1e-9)
    assert res.options["n_analytic"] == len(d)  # still analysed (and counted): it adds nothing


@pytest.mark.parametrize("vcov", ["HC1", "HC2", "classical"])
def test_weighted_singletons_add_nothing(vcov):
    y, x, g, w = _groups()
    g = g.copy()
    g[:3] = [25, 26, 27]  # three groups of one row
    fit = ols(y, x, vcov=vcov, weights=w, absorb=g)
    rest = slice(3, None)
    D = pd.get_dummies(g[rest]).to_numpy(dtype=float)
    ref = sm.WLS(y[rest], np.column_stack([x[rest], D]), weights=w[rest]).fit(
        cov_type={"classical": "nonrobust"}.get(vcov, vcov))
    np.testing.assert_allclose(fit.params, np.asarray(ref.params)[:2], rtol=1e-10)
    np.testing.assert_allclose(fit.se, np.asarray(ref.bse)[:2], rtol=1e-9)
    df = dense_hc2_df(np.column_stack([x[rest], D]), w[rest], 0) if vcov == "HC2" else ref.df_resid
    assert fit.df[0] == pytest.approx(df, rel=1e-9)


def _lin_reference(d, vcov="HC2"):
    """Lin's model with the block indicators by hand: centred block dummies, pretest and frl,
    each interacted with assignment; statsmodels OLS."""
    C = pd.concat([pd.get_dummies(d["school_id"], drop_first=True, dtype=float), d[["pretest", "frl"]].astype(float)],
                  axis=1)
    Cc = C - C.mean()
    X = pd.concat([Cc, Cc.mul(d["treatment"], axis=0).add_prefix("t:")], axis=1)
    X.insert(0, "treatment", d["treatment"].astype(float))
    X.insert(0, "const", 1.0)
    return sm.OLS(d["posttest"], X).fit(cov_type={"classical": "nonrobust"}.get(vcov, vcov)), X.shape[1]


@pytest.mark.parametrize("vcov", ["HC0", "HC1", "HC2", "classical"])
def test_lin_with_absorbed_blocks_equals_the_interacted_model_with_indicators(vcov):
    from pleval.lin import lin_design, lin_within

    d = _multisite(n_blocks=30, per=24, seed=17)
    res = analyze_rct(d, COLS, design="blocked", lin=True, vcov=vcov)
    ref, k = _lin_reference(d, vcov)
    assert res.itt.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-10)
    assert res.itt.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-9)
    df = dense_hc2_df(ref.model.exog, np.ones(len(d)), 1) if vcov == "HC2" else len(d) - k
    assert res.itt.raw.df == pytest.approx(df, rel=1e-9)
    # the whole covariance of τ̂ and the slopes, against pleval's own fit with the indicators
    z, C = d["treatment"].to_numpy(float), d[["pretest", "frl"]].to_numpy(float)
    codes = pd.factorize(d["school_id"])[0]
    X, xn = lin_design(z, np.column_stack([np.eye(30)[codes][:, 1:], C]))
    full = ols(d["posttest"].to_numpy(), X, names=xn, vcov=vcov)
    fit = lin_within(d["posttest"].to_numpy(), z, C, codes, vcov=vcov)
    j = [xn.index(n) for n in ("treatment", "x29_c", "x30_c", "treatment:x29_c", "treatment:x30_c")]
    np.testing.assert_allclose(fit.params, full.params[j], rtol=1e-9)
    np.testing.assert_allclose(fit.vcov, full.vcov[np.ix_(j, j)], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(fit.df, full.df[j], rtol=1e-8)  # HC2: each coefficient's Bell & McCaffrey df
    # the slopes' interactions tested together: HC2's HTZ (each student its own cluster; a Wald F on
    # n − k before 2026-12-05), the other covariances' F on n − k
    R = np.eye(len(j))[3:]
    a, b = fit.wald_test(R), full.wald_test(np.eye(full.k)[j[3:]])
    assert a.test == b.test == ("HTZ" if vcov == "HC2" else "F")
    assert a.F == pytest.approx(b.F, rel=1e-8) and a.df2 == pytest.approx(b.df2, rel=1e-8)


def test_lin_leaves_out_blocks_without_both_arms():
    """Before, a block with one arm made Lin's design singular (a NaN SE, then an error about the
    effect size); now its rows are left out, with a note, in the absorbed and the dense fit."""
    d = _multisite(n_blocks=20, per=20, seed=3)
    d = d[~((d["school_id"] == "S000") & (d["treatment"] == 0))]
    rest = d[d["school_id"] != "S000"]
    ref, k = _lin_reference(rest)
    hc2 = analyze_rct(d, COLS, design="blocked", lin=True)
    assert hc2.itt.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-10)
    assert hc2.itt.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-9)
    assert hc2.itt.raw.df == pytest.approx(dense_hc2_df(ref.model.exog, np.ones(len(rest)), 1), rel=1e-9)
    assert any("Lin adjustment: 1 block(s) without both arms (10 rows)" in n for n in hc2.notes)
    # clustered by school, each cell one school: the block effects additive (test below), the block left out too
    cr2 = analyze_rct(d, COLS.replace(block="school_id"), design="blocked", lin=True, vcov="CR2")
    C = rest[["pretest", "frl"]].astype(float)
    X = pd.concat([rest["treatment"].astype(float), C - C.mean(), (C - C.mean()).mul(rest["treatment"], axis=0),
                   pd.get_dummies(rest["school_id"], drop_first=True, dtype=float)], axis=1)
    add = sm.OLS(rest["posttest"].to_numpy(), sm.add_constant(X.to_numpy())).fit()
    assert cr2.itt.raw.estimate == pytest.approx(add.params[1], rel=1e-10) and np.isfinite(cr2.itt.raw.se)


def test_lin_with_cr2_by_school_in_a_multisite_trial_keeps_the_block_effects_additive():
    """Students randomized within schools (the blocks), CR2 by school: every block × arm cell lies
    in one school, whose cell means Lin's block × assignment indicators fit exactly, so the SE lost
    their variation (the review's 100 null trials: 92% rejected, mean SE 0.0034 against an SD of
    0.080). The block effects are now additive, the pretest and frl centred and interacted: the
    direct n×n CR2 and Satterthwaite df of that design, statsmodels' CR1, and a note."""
    from .test_rct_inference import direct_cr2

    d = _multisite(n_blocks=12, per=20, seed=7)
    C = d[["pretest", "frl"]].astype(float)
    C = C - C.mean()
    X = pd.concat([C, C.mul(d["treatment"], axis=0).add_prefix("t:"),
                   pd.get_dummies(d["school_id"], drop_first=True, dtype=float)], axis=1)
    X.insert(0, "treatment", d["treatment"].astype(float))
    X.insert(0, "const", 1.0)
    g = pd.factorize(d["school_id"])[0]
    res = analyze_rct(d, COLS, design="blocked", lin=True, vcov="CR2")
    V, df = direct_cr2(X.to_numpy(), d["posttest"].to_numpy(), g)
    ref = sm.OLS(d["posttest"], X).fit(cov_type="cluster", cov_kwds={"groups": g})
    assert res.itt.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-10)
    assert res.itt.raw.se == pytest.approx(np.sqrt(V[1, 1]), rel=1e-9)
    assert res.itt.raw.df == pytest.approx(df[1], rel=1e-9)
    cr1 = analyze_rct(d, COLS, design="blocked", lin=True, vcov="CR1")
    assert cr1.itt.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-9)
    assert any("12 block(s) of 'school_id' (S000, S001, S002, S003, S004, …) have a single school in an arm" in n
               for n in res.notes)
    assert res.options["model"].startswith("Lin (2013), block FE additive: outcome ~ treatment + block FE (absorbed)")


def test_blocked_hc2_tests_hold_their_level_with_few_treated_per_block():
    """4 blocks of 50 students, 2 treated in each, the treated outcomes' SD twice the others', no
    effect: the HC2 tests of the absorbed ITT and of Lin's within-block fit on Bell & McCaffrey's
    df reject about 5% (5.2% and 4.4% of 10,000 trials, benchmarks/sim_hc2_df.py); on n − k df
    (before 2026-12-05) 8.9% and 14.8% (10.5% and 16.1% at this seed)."""
    from pleval.lin import lin_within

    rng = np.random.default_rng(20261205)
    reps = sim_reps(4000)
    block = np.repeat(np.arange(4), 50)
    rejected = np.zeros(2)
    for _ in range(reps):
        z = np.zeros(200)
        for b in range(4):
            z[rng.choice(np.flatnonzero(block == b), 2, replace=False)] = 1.0
        x = rng.normal(size=200)
        y = 0.5 * x + 0.3 * block + rng.normal(size=200) * np.where(z == 1, 2.0, 1.0)
        rejected += [ols(y, np.column_stack([z, x]), vcov="HC2", absorb=block).coef("x0")[3] < 0.05,
                     lin_within(y, z, x[:, None], block).coef("treatment")[3] < 0.05]
    bound = 3 * np.sqrt(0.05 * 0.95 / reps)
    assert np.all(np.abs(rejected / reps - 0.05) < bound), rejected / reps


def test_lin_with_many_blocks_does_not_form_the_indicators():
    d = _multisite(n_blocks=2000, per=10, seed=5)
    tracemalloc.start()
    try:
        res = analyze_rct(d, COLS, design="blocked", lin=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(res.itt.raw.se) and peak < len(d) * 2 * 2000 * 8 / 4


def test_cr2_too_large_for_memory_gets_a_clear_error(monkeypatch):
    import pleval._workers

    y, x, g, _ = _groups()
    X = np.column_stack([np.ones(len(y)), x])
    ok = ols(y, X, clusters=g, vcov="CR2")
    import pleval.inference.robust

    monkeypatch.setattr(pleval.inference.robust, "CR2_ARRAYS", 10**7)  # as if the arrays were large
    monkeypatch.setattr(pleval._workers, "available_memory", lambda: 1.0)
    with pytest.raises(DesignError, match=r"CR2 with 3 regressors and 25 clusters.*vcov='CR1'"):
        ols(y, X, clusters=g, vcov="CR2")
    assert ols(y, X, clusters=g, vcov="CR1").se[1] > 0 and np.isfinite(ok.se).all()


def test_binary_outcome_lpm_in_a_blocked_trial_absorbs_the_blocks(monkeypatch):
    """`pleval.estimate` of a multi-site trial with a yes/no outcome by the linear-probability
    model: the blocks absorbed (no indicators formed: with no memory to spare that would stop
    it), the difference in percentage points and its HC2 SE those of statsmodels with the
    indicators."""
    import pleval
    import pleval._workers
    from pleval.simulate import simulate_multisite_rct

    d = simulate_multisite_rct(n_schools=40, students_per_school=60, subjects=["math"], seed=8).data
    cols = Columns(outcome="posttest", treatment="treatment", school="school_id", block="block",
                   pretest=("pretest",), student_id="student_id", subject="subject")
    monkeypatch.setattr(pleval._workers, "available_memory", lambda: 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(d, columns=cols, design="rct", rct_design="blocked", outcomes=["proficient"],
                             binary_method="lpm", workers=1)
    row = ev.outcomes.set_index("outcome").loc["proficient"]
    a = d.dropna(subset=["proficient", "pretest"])
    X = pd.concat([a[["treatment", "pretest"]].astype(float), pd.get_dummies(a["block"], drop_first=True, dtype=float)],
                  axis=1)
    ref = sm.OLS(a["proficient"].astype(float), sm.add_constant(X)).fit(cov_type="HC2")
    assert row["estimate"] == pytest.approx(100 * ref.params["treatment"], rel=1e-9)
    assert row["se"] == pytest.approx(100 * ref.bse["treatment"], rel=1e-8)
    assert "HC2" in row["method"]
