"""Staggered adoption (Callaway & Sant'Anna 2021) against the published mpdta results of the R
package did, against csdid's analytic standard errors, and against statsmodels OLS."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from pleval.errors import DataError, DesignError
from pleval.monitor import group_time_effects

REF = Path(__file__).parent / "reference"
MP = pd.read_csv(REF / "mpdta.csv")
KW = dict(outcome="lemp", unit="countyreal", time="year", cohort="first.treat")

# did 2.5.1, README.md and docs/reference/att_gt.md / aggte.md (xformla = ~1, never treated):
# ATT(g,t) to 4 digits (identical for est_method "reg" and "dr") and the Wald pre-test p-value,
# which uses the analytic influence-function variance.
PUBLISHED_ATTGT = {
    (2004, 2004): (-0.0105, 0.0246, 0.0258), (2004, 2005): (-0.0704, 0.0332, 0.0341),
    (2004, 2006): (-0.1373, 0.0397, 0.0384), (2004, 2007): (-0.1008, 0.0357, 0.0354),
    (2006, 2004): (0.0065, 0.0229, 0.0235), (2006, 2005): (-0.0028, 0.0197, 0.0192),
    (2006, 2006): (-0.0046, 0.0179, 0.0184), (2006, 2007): (-0.0412, 0.0192, 0.0207),
    (2007, 2004): (0.0305, 0.0154, 0.0161), (2007, 2005): (-0.0027, 0.0164, 0.0157),
    (2007, 2006): (-0.0311, 0.0184, 0.0184), (2007, 2007): (-0.0261, 0.0170, 0.0176),
}
PUBLISHED_AGG = {  # overall estimate, {key: estimate}
    "simple": (-0.04, {}),
    "dynamic": (-0.0772, {-3: 0.0305, -2: -0.0006, -1: -0.0245, 0: -0.0199, 1: -0.0510, 2: -0.1373, 3: -0.1008}),
    "group": (-0.031, {2004: -0.0797, 2006: -0.0229, 2007: -0.0261}),
    "calendar": (-0.0417, {2004: -0.0105, 2005: -0.0704, 2006: -0.0488, 2007: -0.0371}),
}


@pytest.fixture(scope="module")
def never():
    return group_time_effects(MP, **KW, inference="did")  # the R package's analytic figures


def test_mpdta_group_time_effects_match_published_digits(never):
    t = never.table.set_index(["group", "time"])
    assert len(t) == len(PUBLISHED_ATTGT)
    for (g, tt), (att, *boot_se) in PUBLISHED_ATTGT.items():
        assert round(t.loc[(g, tt), "estimate"], 4) == att, (g, tt)
        # the published SEs are multiplier-bootstrap SEs of two runs (seed-dependent); the analytic
        # SE is the quantity they estimate
        assert min(boot_se) / 1.15 < t.loc[(g, tt), "se"] < max(boot_se) * 1.15, (g, tt)
    assert never.pretest["df"] == 5
    assert round(never.pretest["pvalue"], 5) == 0.16812


@pytest.mark.parametrize("kind", list(PUBLISHED_AGG))
def test_mpdta_aggregations_match_published_digits(never, kind):
    overall, parts = PUBLISHED_AGG[kind]
    agg = never.aggregate(kind)
    assert round(agg.overall.estimate, len(str(overall).split(".")[1])) == overall
    if parts:
        got = dict(zip(agg.table.iloc[:, 0], agg.table["estimate"]))
        assert {k: round(v, 4) for k, v in got.items()} == parts


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_mpdta_matches_csdid_analytic_results(control):
    """Every ATT(g,t), aggregation and analytic SE equals csdid 0.4.3's (tests/reference/make_mpdta_csdid.py)."""
    ref = pd.read_csv(REF / "mpdta_csdid.csv")
    ref = ref[ref["control"] == {"never": "nevertreated", "notyet": "notyettreated"}[control]]
    res = group_time_effects(MP, **KW, control=control, inference="did")
    cells = ref[ref["kind"] == "attgt"].set_index(["key", "time"])
    t = res.table.set_index(["group", "time"])
    np.testing.assert_allclose(t["estimate"], cells.loc[t.index, "estimate"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t["se"], cells.loc[t.index, "se"], rtol=1e-8)
    for kind in ("simple", "dynamic", "group", "calendar"):
        agg = res.aggregate(kind)
        r = ref[ref["kind"] == kind]
        top = r[r["key"].isna()].iloc[0]
        assert agg.overall.estimate == pytest.approx(top["estimate"], rel=1e-9)
        assert agg.overall.se == pytest.approx(top["se"], rel=1e-8)
        if kind != "simple":
            parts = r[r["key"].notna()].set_index("key")
            np.testing.assert_allclose(agg.table["estimate"], parts.loc[agg.table.iloc[:, 0], "estimate"], rtol=1e-9)
            np.testing.assert_allclose(agg.table["se"], parts.loc[agg.table.iloc[:, 0], "se"], rtol=1e-8)


def _cell_ols(df, g, t, base, control, cluster=None, cov="HC0"):
    wide = df.pivot(index="countyreal", columns="year", values="lemp")
    coh = df.groupby("countyreal")["first.treat"].first().replace(0, np.inf)
    dy = wide[t] - wide[base]
    ctrl = np.isinf(coh) if control == "never" else np.isinf(coh) | ((coh > max(t, base)) & (coh != g))
    sub = (coh == g) | ctrl
    X = sm.add_constant((coh[sub] == g).astype(float).to_numpy())
    if cluster is None:
        fit = sm.OLS(dy[sub].to_numpy(), X).fit(cov_type=cov)
    else:
        groups = cluster.reindex(dy[sub].index).to_numpy()
        fit = sm.OLS(dy[sub].to_numpy(), X).fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
        k = len(np.unique(cluster))
        return fit.params[1], fit.bse[1] * np.sqrt(k / (k - 1))
    return fit.params[1], fit.bse[1]


@pytest.mark.parametrize("control", ["never", "notyet"])
@pytest.mark.parametrize("inference", ["did", "welch"])
def test_each_cell_is_a_two_by_two_ols_with_hc0_or_hc2_se(control, inference):
    """Each cell is the OLS of ΔY on the cohort indicator in its subsample, with the HC0 SE
    (``inference="did"``, normal reference) or the HC2 SE — Welch's — and, against never-adopting
    units, Welch's df (``"welch"``)."""
    res = group_time_effects(MP, **KW, control=control, inference=inference)
    wide = MP.pivot(index="countyreal", columns="year", values="lemp")
    coh = MP.groupby("countyreal")["first.treat"].first()
    for r in res.table.itertuples():
        b, se = _cell_ols(MP, r.group, r.time, r.base_time, control, cov="HC0" if inference == "did" else "HC2")
        assert r.estimate == pytest.approx(b, rel=1e-10, abs=1e-13)
        assert r.se == pytest.approx(se, rel=1e-10)
        if inference == "did":
            assert np.isinf(r.df)
        elif control == "never":
            dy = wide[r.time] - wide[r.base_time]
            v1, v0 = (dy[m].var(ddof=1) / m.sum() for m in (coh == r.group, coh == 0))
            welch = (v1 + v0) ** 2 / (v1**2 / ((coh == r.group).sum() - 1) + v0**2 / ((coh == 0).sum() - 1))
            assert r.df == pytest.approx(welch, rel=1e-10)
            assert r.pvalue == pytest.approx(stats.ttest_ind(dy[coh == r.group], dy[coh == 0], equal_var=False).pvalue,
                                             rel=1e-8)


def test_clustered_ses_are_influence_sums_within_clusters():
    """Clustering counties into 40 pseudo-districts: with ``inference="did"`` each cell's SE equals
    statsmodels' cluster-robust SE of the 2×2 regression (no small-sample factor) times √(G/(G−1)),
    a t(G−1) reference and the χ² pre-test; by default each cell's SE and Satterthwaite df are those
    of pleval's matrix CR2 of the 2×2 regression, unweighted and weighted."""
    ids = np.sort(MP["countyreal"].unique())
    district = pd.Series(np.arange(len(ids)) % 40, index=ids)
    df = MP.assign(district=MP["countyreal"].map(district))
    res = group_time_effects(df, **KW, cluster="district")
    assert res.n_clusters == 40 and np.isinf(res.df) and (res.table["df"] < 39).all()
    # the pre-test: Hotelling's T² on the CR2 covariance's Wishart df (χ² with inference="did")
    W, k, d2 = res.pretest["statistic"], res.pretest["df"], res.pretest["df_denominator"]
    assert 0 < d2 < 40 - k
    assert res.pretest["pvalue"] == pytest.approx(stats.f.sf(d2 * W / (k * (d2 + k - 1)), k, d2), rel=1e-12)
    did = group_time_effects(df, **KW, cluster="district", inference="did")
    assert did.df == 39
    assert did.pretest["pvalue"] == pytest.approx(stats.chi2.sf(did.pretest["statistic"], k), rel=1e-12)
    for r in did.table.itertuples():  # CR1: statsmodels' cluster-robust SE × √(G/(G−1))
        b, se = _cell_ols(MP, r.group, r.time, r.base_time, "never", cluster=district)
        assert r.se == pytest.approx(se, rel=1e-9)
    # the default: each cell's CR2 SE and df (pleval's matrix CR2 of the 2×2 regression, checked against clubSandwich)
    from pleval.inference import ols

    wide = MP.pivot(index="countyreal", columns="year", values="lemp")
    coh = MP.groupby("countyreal")["first.treat"].first()
    weight = pd.Series(np.random.default_rng(1).uniform(0.5, 2.0, len(ids)), index=ids)
    weighted = group_time_effects(df.assign(w=df["countyreal"].map(weight)), **KW, cluster="district", weight="w")
    for result, w in ((res, None), (weighted, weight)):
        for r in result.table.itertuples():
            sub = (coh == r.group) | (coh == 0)
            X = np.column_stack([np.ones(int(sub.sum())), (coh[sub] == r.group).to_numpy(float)])
            fit = ols((wide[r.time] - wide[r.base_time])[sub].to_numpy(), X, vcov="CR2",
                      clusters=district.reindex(coh[sub].index).to_numpy(),
                      weights=None if w is None else w[coh[sub].index].to_numpy())
            assert r.se == pytest.approx(fit.se[1], rel=1e-9)
            assert r.df == pytest.approx(np.atleast_1d(fit.df)[1], rel=1e-9)
    # one unit per cluster: the unit-level SEs, times √(G/(G−1)) for CR1; CR2 is then HC2
    own = group_time_effects(MP.assign(c=MP["countyreal"]), **KW, cluster="c", inference="did")
    base = group_time_effects(MP, **KW, inference="did")
    np.testing.assert_allclose(own.table["se"], base.table["se"] * np.sqrt(500 / 499), rtol=1e-12)
    assert own.aggregate("group").overall.se == pytest.approx(base.aggregate("group").overall.se * np.sqrt(500 / 499))
    own2 = group_time_effects(MP.assign(c=MP["countyreal"]), **KW, cluster="c")
    np.testing.assert_allclose(own2.table["se"], group_time_effects(MP, **KW).table["se"], rtol=1e-12)


def test_clustered_satterthwaite_df_by_brute_force():
    """The CR2 df of aggregations and the pre-test's Wishart df, against the cluster sums'
    derivatives with respect to every outcome (each cell's influence function is linear in the
    outcomes): ``ℓ_g`` by setting one outcome to 1 at a time, ``M = ℓ'W⁻¹ℓ``, ``ν = (tr M)²/‖M‖²``
    and η by the total-variance match of Pustejovsky & Tipton (2018)."""
    rng = np.random.default_rng(4)
    g = np.r_[np.zeros(9), np.full(5, 3.0), np.full(6, 4.0)]
    n, T, G = g.size, 5, 6
    cl = rng.permutation(np.arange(n) % G)
    w = rng.uniform(0.5, 2.0, n)

    def panel(y):
        return pd.DataFrame({"unit": np.repeat(np.arange(n), T), "time": np.tile(np.arange(1.0, T + 1), n),
                             "y": y.ravel(), "g": np.repeat(g, T), "c": np.repeat(cl, T), "w": np.repeat(w, T)})

    kw = dict(outcome="y", unit="unit", time="time", cohort="g", control="notyet", cluster="c", weight="w")
    res = group_time_effects(panel(rng.normal(size=(n, T))), **kw)
    K = len(res.table)
    J = np.empty((n * T, G, K))  # ∂(cluster sum of cell k's influence function) / ∂Y_jt
    for jt in range(n * T):  # a loop over the outcomes, one analysis each (brute force)
        e = np.zeros(n * T)
        e[jt] = 1.0
        inf = group_time_effects(panel(e.reshape(n, T)), **kw)._inf
        J[jt] = np.stack([inf[cl == c].sum(axis=0) for c in range(G)])
    winv = np.repeat(1.0 / (w / w.mean()), T)

    def moments(C):
        L = np.einsum("jgk,ks->jgs", J, C)
        return np.einsum("jgs,j,jhu->ghsu", L, winv, L)

    t = res.table
    parts = res.aggregate("group").table
    for row in parts.itertuples():
        c = ((t["group"] == row.group) & t["post"]).to_numpy(float)
        M = moments((c / c.sum())[:, None])[:, :, 0, 0]
        assert row.df == pytest.approx(np.trace(M) ** 2 / (M**2).sum(), rel=1e-9)
    pre = np.flatnonzero(~t["post"].to_numpy())
    M = moments(np.eye(K)[:, pre])
    omega = np.einsum("ggsu->su", M)
    root = np.linalg.inv(np.linalg.cholesky(omega))  # any B with B Ω B' = I gives the same η
    Ms = np.einsum("ghsu,as,bu->ghab", M, root, root)
    q = len(pre)
    var = sum((Ms[:, :, a, a] * Ms[:, :, b, b]).sum() + (Ms[:, :, a, b] * Ms[:, :, a, b].T).sum()
              for a in range(q) for b in range(q))
    eta = q * (q + 1) / var
    assert res.pretest["df_denominator"] == pytest.approx(eta - q + 1, rel=1e-9)


def test_row_order_and_sign_invariance(never):
    shuffled = MP.sample(frac=1.0, random_state=3)
    again = group_time_effects(shuffled, **KW, inference="did")
    pd.testing.assert_frame_equal(again.table, never.table)
    pd.testing.assert_frame_equal(group_time_effects(shuffled, **KW).table, group_time_effects(MP, **KW).table)
    flipped = group_time_effects(MP.assign(lemp=-MP["lemp"]), **KW, inference="did")
    np.testing.assert_allclose(flipped.table["estimate"], -never.table["estimate"], atol=1e-14)
    assert flipped.aggregate("dynamic").overall.estimate == pytest.approx(-never.aggregate("dynamic").overall.estimate)


def test_results_render_and_plot(never):
    text = never.summary()
    assert "pre-trend Wald test" in text and "(pre)" in text
    agg = never.event_study()
    assert list(agg.to_frame()["event_time"]) == [-3, -2, -1, 0, 1, 2, 3]
    assert "ATT (dynamic)" in agg.summary() and "<table" in agg._repr_html_()
    fig = never.plot_event_study()
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) >= 2


def test_bad_panels_name_the_column():
    with pytest.raises(DataError, match=r"'countyreal' × 'year'.*unbalanced.*1 of 500"):
        group_time_effects(MP.iloc[1:], **KW)
    with pytest.raises(DataError, match=r"repeat a unit"):
        group_time_effects(pd.concat([MP, MP.iloc[:1]]), **KW)
    bad = MP.copy()
    bad.loc[0, "first.treat"] = 2006
    with pytest.raises(DataError, match=r"'first.treat' \(cohort\) must be constant within each unit; .* 1 unit"):
        group_time_effects(bad, **KW)
    bad = MP.assign(**{"first.treat": MP["first.treat"].replace(2006, 2005.5)})
    with pytest.raises(DataError, match=r"not one of the periods"):
        group_time_effects(bad, **KW)
    with pytest.raises(DataError, match=r"'lemp' \(outcome\): 1 row"):
        group_time_effects(MP.assign(lemp=MP["lemp"].where(MP.index != 5)), **KW)
    with pytest.raises(DataError, match=r"'nope' \(cluster\) is not in the data"):
        group_time_effects(MP, **KW, cluster="nope")
    treated_only = MP[MP["first.treat"] > 0]
    with pytest.raises(DesignError, match=r"no never-adopting units; use control='notyet'"):
        group_time_effects(treated_only, **KW)
    assert len(group_time_effects(treated_only, **KW, control="notyet").table) > 0


def test_first_period_and_late_adopters_are_counted_not_silently_dropped():
    df = MP.copy()
    early = df["countyreal"].isin(df["countyreal"].unique()[:3])
    df.loc[early, "first.treat"] = 2003
    late = df["countyreal"].isin(df.loc[df["first.treat"] == 0, "countyreal"].unique()[:2])
    df.loc[late, "first.treat"] = 2009
    res = group_time_effects(df, **KW)
    assert res.n_units == 497
    assert any("3 unit(s) adopt in the first period" in n for n in res.notes)
    assert any("2 unit(s) adopt after the last period" in n for n in res.notes)


def test_cells_without_comparison_units_are_named_and_their_cohort_not_counted():
    """control='notyet' with no never-adopting county: from 2007 every county has adopted, so the
    cells of 2007 have no comparison, and cohort 2007 no post-adoption cell. Those cells are left
    out with a note naming the periods and the cohort, and the aggregates count the units of the
    cohorts they hold (before 2026-12-04 nothing was said, and n_treated counted cohort 2007)."""
    df = MP[MP["first.treat"] > 0]  # the adopting counties only
    res = group_time_effects(df, **KW, control="notyet")
    cells = set(zip(res.table["group"], res.table["time"]))
    assert (2007, 2007) not in cells and (2004, 2007) not in cells and (2004, 2006) in cells
    note = next(n for n in res.notes if "have no comparison unit" in n)
    assert "periods 2006, 2007" in note and "cohort(s) 2007 have no post-adoption cell" in note
    held = df.loc[df["first.treat"].isin([2004, 2006]), "countyreal"].nunique()
    assert res.aggregate("group").overall.n_treated == held < df["countyreal"].nunique()


def test_a_blank_cohort_cell_means_never_as_an_empty_one():
    """A text cohort column with '' (or spaces) for never-adopting units reads as empty cells
    (before 2026-12-04 the error said 0 or empty meant never and then refused the empty text)."""
    text = MP.assign(**{"first.treat": MP["first.treat"].map(lambda v: "  " if v == 0 else str(int(v)))})
    a, b = group_time_effects(MP, **KW), group_time_effects(text, **KW)
    np.testing.assert_array_equal(a.table["estimate"], b.table["estimate"])


def test_small_and_one_unit_cohorts_are_named():
    """mpdta's cohorts are large (no note). A cohort cut to 3 units gets did's small-group
    caution; cut to one unit, its own variation cannot be estimated (its influence is ΔY − the
    cohort's mean ΔY = 0), so the comparison units' stands in: each cell's SE² is the comparison
    units' part (their HC0 influence sum, as did computes it) plus their sample variance of ΔY,
    and the cohort's part of the group aggregation adds the sample variance of their mean ΔY over
    its post cells. Cohorts of two or more units are untouched."""
    import dataclasses

    from pleval.monitor.staggered import _se

    assert group_time_effects(MP, **KW).notes == ()
    units = MP.drop_duplicates("countyreal").set_index("countyreal")["first.treat"]

    def cut(keep):
        return MP[(MP["first.treat"] != 2004) | MP["countyreal"].isin(units[units == 2004].index[:keep])]
    three = group_time_effects(cut(3), **KW)
    assert three.notes == ("cohort(s) 2004 have fewer than 5 units: their SEs rest on few units",)
    assert three._standin is None
    one = group_time_effects(cut(1), **KW)
    assert "cohort(s) 2004 have one unit, whose own variation cannot be estimated: its SEs take the comparison " \
           "units' variation in its place" in one.notes[0]
    cells = one.table[one.table["group"] == 2004]
    d = cut(1)
    ctrl = d[d["first.treat"] == 0].pivot(index="countyreal", columns="year", values="lemp")
    for r in cells.itertuples():
        dy = ctrl[r.time] - ctrl[r.base_time]
        own = dy.var(ddof=1) / dy.size  # (HC2: Welch's comparison part)
        assert r.se == pytest.approx(np.sqrt(own + dy.var(ddof=1)), rel=1e-9)
    bare = dataclasses.replace(one, _standin=None)  # the influence-function part alone
    post = cells[cells["post"]]
    mean_dy = sum(ctrl[t] - ctrl[2003] for t in post["time"]) / len(post)
    got = one.aggregate("group").table.set_index("group").loc[2004, "se"]
    base = bare.aggregate("group").table.set_index("group").loc[2004, "se"]
    assert got**2 == pytest.approx(base**2 + mean_dy.var(ddof=1), rel=1e-9)
    others = (one.table["group"] != 2004).to_numpy()
    np.testing.assert_array_equal(one.table["se"].to_numpy()[others], _se(one._inf, one._cluster, None)[others])
    np.testing.assert_array_equal(bare.aggregate("group").table.set_index("group").loc[[2006, 2007], "se"],
                                  one.aggregate("group").table.set_index("group").loc[[2006, 2007], "se"])


def test_one_unit_cohorts_cover_by_simulation():
    """Panels of 60 never-adopting units, a cohort of 20 and two cohorts of one unit, unit and
    period effects and unit-level noise, no program effect, not-yet comparisons: the one-unit
    cohorts' cells and their parts of the group aggregation cover 0 about 95% of the time (95.2%
    and 95.7% at 300 panels; 18% and 24% with the comparison units' variation alone)."""
    from pleval.monitor.staggered import _se
    from .conftest import sim_reps

    rng = np.random.default_rng(1)
    g = np.r_[np.zeros(60), np.full(20, 4.0), [3.0], [5.0]]
    reps, T = sim_reps(300, minimum=100), 6
    cells, parts, bare = [], [], []
    for _ in range(reps):  # a loop over simulated panels, each a whole analysis
        y = rng.normal(size=g.size)[:, None] + rng.normal(size=T)[None, :] + rng.normal(size=(g.size, T))
        d = pd.DataFrame({"unit": np.repeat(np.arange(g.size), T), "time": np.tile(np.arange(1.0, T + 1), g.size),
                          "y": y.ravel(), "g": np.repeat(g, T)})
        res = group_time_effects(d, outcome="y", unit="unit", time="time", cohort="g", control="notyet")
        t = res.table
        one = t["group"].isin([3.0, 5.0]).to_numpy()
        cells.append(((t["ci_low"] <= 0) & (t["ci_high"] >= 0)).to_numpy()[one])
        se = _se(res._inf, res._cluster, res.n_clusters)[one]
        bare.append(np.abs(t["estimate"].to_numpy()[one]) <= 1.96 * se)
        a = res.aggregate("group").table
        a = a[a["group"].isin([3.0, 5.0])]
        parts.append(((a["ci_low"] <= 0) & (a["ci_high"] >= 0)).to_numpy())
    cells, parts, bare = (np.concatenate(x).mean() for x in (cells, parts, bare))
    assert abs(cells - 0.95) < 0.03 and abs(parts - 0.95) < 0.04, (cells, parts)
    assert bare < 0.4, bare


def _null_rates(panels, **kw):
    """Over simulated panels with no effect: the cells' CI coverage and the pre-test's rejection
    rate at 5% with each inference, and the event-time CIs' coverage (welch)."""
    cover, reject, event = {"welch": [], "did": []}, {"welch": [], "did": []}, []
    for d in panels:
        for inference in ("welch", "did"):
            res = group_time_effects(d, outcome="y", unit="unit", time="time", cohort="g", control="notyet",
                                     inference=inference, **kw)
            t = res.table
            cover[inference].append(((t["ci_low"] <= 0) & (t["ci_high"] >= 0)).to_numpy())
            reject[inference].append(res.pretest["pvalue"] < 0.05)
            if inference == "welch":
                e = res.event_study().table
                event.append(((e["ci_low"] <= 0) & (e["ci_high"] >= 0)).to_numpy())
    return ({k: np.concatenate(v).mean() for k, v in cover.items()}, {k: np.mean(v) for k, v in reject.items()},
            np.concatenate(event))


def test_small_samples_hold_their_size_by_simulation():
    """A district's rollout: 20 never-adopting schools and cohorts of 6, 8 and 6 adopting in
    periods 3–5 of 6, unit and period effects, unit-level noise of unequal SDs, no effect,
    not-yet comparisons. With the small-sample inference (HC2 influence functions, Welch df, the
    pre-test's F) the cells' intervals cover about 95% and the pre-trend test rejects at most
    5% (95.6% and 2.2% at 600 panels of benchmarks/sim_staggered_small.py); the R package's
    analytic figures (``inference="did"``: HC0, normal, χ²) cover about 91% and reject about a
    quarter."""
    from .conftest import sim_reps

    rng = np.random.default_rng(11)
    g = np.r_[np.zeros(20), np.full(6, 3.0), np.full(8, 4.0), np.full(6, 5.0)]
    reps, T = sim_reps(600, minimum=150), 6
    def panels():
        for _ in range(reps):  # a loop over simulated panels, each a whole analysis
            y = (rng.normal(size=g.size)[:, None] + rng.normal(size=T)[None, :]
                 + rng.normal(size=(g.size, T)) * rng.uniform(0.5, 1.5, size=(g.size, 1)))
            yield pd.DataFrame({"unit": np.repeat(np.arange(g.size), T), "time": np.tile(np.arange(1.0, T + 1), g.size),
                                "y": y.ravel(), "g": np.repeat(g, T)})

    cover, reject, event = _null_rates(panels())
    assert abs(cover["welch"] - 0.95) < 0.02 and event.mean() > 0.93, cover
    assert reject["welch"] < 0.075, reject
    assert cover["did"] < 0.93 and reject["did"] > 0.15, (cover, reject)


def test_clustered_small_samples_by_simulation():
    """40 schools in 10 districts (a district effect of SD 0.5 in every period), 20 never
    adopting and cohorts of 6, 8 and 6, no effect, not-yet comparisons, ``cluster=`` given: with
    CR2 and Bell–McCaffrey df the cells' and event-time intervals cover at least 95% (96.2% and
    97.1% at 500 panels of ``benchmarks/sim_staggered_small.py --clustered``; t(G − 1) covered
    93.9%) and the HTZ pre-test rejects at most 5% (0.4%: conservative with 10 clusters and 6
    pre-period cells); the R package's CR1 and χ² cover about 93% and reject about 64%."""
    from .conftest import sim_reps

    rng = np.random.default_rng(21)
    G, T = 10, 6
    g = np.r_[np.zeros(20), np.full(6, 3.0), np.full(8, 4.0), np.full(6, 5.0)]
    reps = sim_reps(500, minimum=120)
    def panels():
        for _ in range(reps):  # a loop over simulated panels, each a whole analysis
            cl = rng.permutation(np.arange(g.size) % G)
            y = (rng.normal(size=g.size)[:, None] + rng.normal(size=T)[None, :] + 0.5 * rng.normal(size=(G, T))[cl]
                 + rng.normal(size=(g.size, T)))
            yield pd.DataFrame({"unit": np.repeat(np.arange(g.size), T), "time": np.tile(np.arange(1.0, T + 1), g.size),
                                "y": y.ravel(), "g": np.repeat(g, T), "c": np.repeat(cl, T)})

    cover, reject, event = _null_rates(panels(), cluster="c")
    assert 0.945 <= cover["welch"] <= 0.985 and event.mean() >= 0.945, (cover, event.mean())
    assert reject["welch"] <= 0.05, reject
    assert cover["did"] < 0.94 and reject["did"] > 0.4, (cover, reject)


def test_clustered_pretest_with_too_few_clusters_says_so():
    """Six clusters for six pre-period cells: the CR2 covariance's Wishart df leave the F no
    denominator df: no p-value, a note, and text without a NaN; with more clusters the note
    names the F's few df."""
    rng = np.random.default_rng(3)
    g = np.r_[np.zeros(20), np.full(3, 3.0), np.full(8, 4.0), np.full(3, 5.0)]
    n, T = g.size, 6
    y = rng.normal(size=(n, T))
    for G, usable in ((6, False), (20, True)):
        cl = rng.permutation(np.arange(n) % G)
        d = pd.DataFrame({"unit": np.repeat(np.arange(n), T), "time": np.tile(np.arange(1.0, T + 1), n),
                          "y": y.ravel(), "g": np.repeat(g, T), "c": np.repeat(cl, T)})
        res = group_time_effects(d, outcome="y", unit="unit", time="time", cohort="g", control="notyet", cluster="c")
        pre = res.pretest
        assert pre["df"] == 6 and pre["df_denominator"] < 4
        note = [x for x in res.notes if "joint pre-trend test" in x]
        assert len(note) == 1 and f"with {G} clusters" in note[0]
        assert np.isfinite(pre["pvalue"]) == usable and ("no p-value" in note[0]) != usable
        assert "nan" not in res.summary() and ("no p-value" in res.summary()) != usable


def test_stood_in_covariance_is_semidefinite_with_the_cells_variances_kept():
    """Each entry of a one-unit cohort's stood-in covariance is taken over the units in both
    cells' comparison groups, which differ from pair to pair, so the matrix need not be
    semidefinite: with two PL and two comparison schools of the sample panel, the group
    aggregation's c'Sc was negative and its SE NaN, with numpy's "invalid value in sqrt" on the
    terminal. Now every SE is a number, each cell's SE is unchanged, and a semidefinite block is
    left as it is."""
    import warnings

    from pleval.data import Columns
    from pleval.monitor import monitor
    from pleval.monitor.staggered import _nearest_psd

    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    psd = A @ A.T
    assert _nearest_psd(psd) is psd
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 2.0, 0.9], [-0.9, 0.9, 1.5]])
    assert np.linalg.eigvalsh(bad).min() < 0
    fixed = _nearest_psd(bad)
    np.testing.assert_allclose(np.diag(fixed), np.diag(bad), rtol=1e-12)
    assert np.linalg.eigvalsh(fixed).min() > -1e-12 and np.allclose(fixed, fixed.T)

    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_panel_students.csv")
    pl = sorted(d.loc[d.treatment == 1, "school_id"].unique())[:2]
    comp = sorted(d.loc[d.treatment == 0, "school_id"].unique())[:2]
    d = d[d.school_id.isin([*pl, *comp])]
    cols = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), covariates=("frl",),
                   school="school_id", student_id="student_id", grade="grade", subject="subject", time="year")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = monitor(d, cols, cohort="pl_year")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for r in m.staggered.values():
            assert r._standin is not None
            for kind in ("simple", "dynamic", "group", "calendar"):
                a = r.aggregate(kind)
                assert np.isfinite(a.overall.se) and np.isfinite(a.table["se"].to_numpy(dtype=float)).all(), kind
            assert np.isfinite(r.table["se"]).all()
