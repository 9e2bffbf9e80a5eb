"""pleval.subgroups: level effects and the equality test against a direct cluster-robust (CR2)
Wald computation; pretest bands, set-level codes and the equity table by hand; the subgroups of
pleval.estimate for both designs; equity-gap CI coverage by simulation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

import pleval
from pleval._results import Effect
from pleval.errors import DataError, PlevalWarning
from pleval.inference import ols
from pleval.simulate import simulate_cluster_rct, simulate_matched
from pleval.subgroups import BAND, equity_table, pretest_bands, set_level_codes, subgroup_effects

from .conftest import sim_reps
from .test_inference import _direct_random_effects_df


def _msqrt_inv(A):
    w, V = np.linalg.eigh(A)
    return (V / np.sqrt(w)) @ V.T


def direct_cr2(X, y, clusters, weights=None):
    """CR2 covariance with explicit n×n matrices, and the Satterthwaite df of a contrast c."""
    if weights is not None:
        sw = np.sqrt(weights)
        X, y = X * sw[:, None], y * sw
    n, k = X.shape
    M = np.linalg.inv(X.T @ X)
    IH = np.eye(n) - X @ M @ X.T
    e = IH @ y
    groups = [np.flatnonzero(clusters == g) for g in pd.unique(clusters)]
    A = [_msqrt_inv(IH[np.ix_(i, i)]) for i in groups]
    meat = sum(np.outer(X[i].T @ a @ e[i], X[i].T @ a @ e[i]) for i, a in zip(groups, A))

    def df(c):
        Q = np.column_stack([IH[:, i] @ (a @ X[i] @ M @ c) for i, a in zip(groups, A)])
        g = Q.T @ Q
        return np.trace(g) ** 2 / np.sum(g**2)

    return M @ meat @ M, df


def direct_htz_eta(X, clusters, weights, C):
    """HTZ η (Pustejovsky & Tipton 2018, eq. 13) from the explicit n-vectors q_sg = (I − H)_{·g} A_g X_g M c_s
    in the √W-transformed model, standardized by Ω^{-1/2}."""
    if weights is not None:
        X = X * np.sqrt(weights)[:, None]
    n = X.shape[0]
    M = np.linalg.inv(X.T @ X)
    IH = np.eye(n) - X @ M @ X.T
    groups = [np.flatnonzero(clusters == g) for g in pd.unique(clusters)]
    A = [_msqrt_inv(IH[np.ix_(i, i)]) for i in groups]
    Qv = np.array([[IH[:, i] @ (a @ X[i] @ M @ c) for i, a in zip(groups, A)] for c in C])
    Om = np.einsum("sgn,tgn->st", Qv, Qv)
    Qv = np.einsum("su,ugn->sgn", _msqrt_inv(Om), Qv)
    P = np.einsum("sgn,thn->sgth", Qv, Qv)
    q = len(C)
    tot = sum(np.sum(P[s, :, t, :] * P[t, :, s, :]) + np.sum(P[s, :, s, :] * P[t, :, t, :]) for s in range(q) for t in range(q))
    return q * (q + 1) / tot


def _data(seed, G=14, m=16, levels=3, weights=False):
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(G), m)
    z = (school % 2).astype(float)
    pre = rng.normal(size=G * m)
    lev = rng.integers(0, levels, size=G * m)
    y = 0.5 * pre + 0.2 * lev + z * (0.1 + 0.15 * lev) + rng.normal(size=G)[school] * 0.5 + rng.normal(size=G * m)
    w = rng.uniform(0.3, 2.0, size=G * m) if weights else None
    X = np.column_stack([np.ones(G * m), z, pre])
    return y, X, z, lev, school, w


def _scale(e):
    return Effect.from_raw(e, 10.0, "given", omega=1.0)


@pytest.mark.parametrize("levels, weighted", [(2, False), (3, False), (4, True)])
def test_levels_and_equality_test_equal_a_direct_cr2_wald(levels, weighted):
    y, X, z, lev, school, w = _data(levels, levels=levels, weights=weighted)
    rows, test = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, lev, list(range(levels)), name="g",
                                  scale=_scale, weights=w, clusters=school)
    # the interacted model by hand: const, pretest, level dummies, treatment × level
    D = (lev[:, None] == np.arange(1, levels)).astype(float)
    Z = z[:, None] * (lev[:, None] == np.arange(levels))
    Xi = np.column_stack([X[:, [0, 2]], D, Z])
    ref = (sm.WLS(y, Xi, weights=w) if weighted else sm.OLS(y, Xi)).fit()
    V, cdf = direct_cr2(Xi, y, school, w)
    k0 = 2 + levels - 1
    for j, r in enumerate(rows):
        c = np.eye(Xi.shape[1])[k0 + j]
        assert r["estimate"] == pytest.approx(ref.params[k0 + j], rel=1e-9)
        assert r["se"] == pytest.approx(np.sqrt(V[k0 + j, k0 + j]), rel=1e-8)
        assert r["df"] == pytest.approx(cdf(c), rel=1e-7)
        assert r["effect_size"] == pytest.approx(r["estimate"] / 10.0)
    R = np.zeros((levels - 1, Xi.shape[1]))
    R[:, k0] = -1
    R[np.arange(levels - 1), k0 + 1 + np.arange(levels - 1)] = 1
    b = R @ ref.params
    W = float(b @ np.linalg.solve(R @ V @ R.T, b))
    G = len(np.unique(school))
    if levels == 2:
        df = cdf(R[0])
        assert test["statistic"] == pytest.approx(np.sqrt(W) * np.sign(b[0]), rel=1e-8)
        assert test["df2"] == pytest.approx(df, rel=1e-7)
        assert test["pvalue"] == pytest.approx(2 * stats.t.sf(np.sqrt(W), df), rel=1e-7)
    else:
        q = levels - 1
        eta = direct_htz_eta(Xi, school, w, R)
        F = (eta - q + 1) / (eta * q) * W
        assert test["statistic"] == pytest.approx(F, rel=1e-8) and test["test"].startswith("HTZ")
        assert (test["df1"], test["df2"]) == (q, pytest.approx(eta - q + 1, rel=1e-8))
        assert test["pvalue"] == pytest.approx(stats.f.sf(F, q, eta - q + 1), rel=1e-7)
        _, f_test = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, lev, list(range(levels)), name="g",
                                     scale=_scale, weights=w, clusters=school, test="F")
        assert f_test["statistic"] == pytest.approx(W / q, rel=1e-8)
        assert (f_test["df1"], f_test["df2"]) == (q, G - 1)
        assert f_test["pvalue"] == pytest.approx(stats.f.sf(W / q, q, G - 1), rel=1e-7)
    g = np.zeros(Xi.shape[1])
    g[k0], g[k0 + levels - 1] = -1, 1
    assert test["gap_estimate"] == pytest.approx(g @ ref.params, rel=1e-9)
    assert test["gap_se"] == pytest.approx(np.sqrt(g @ V @ g), rel=1e-8)
    assert test["gap_df"] == pytest.approx(cdf(g), rel=1e-7)
    half = stats.t.ppf(0.975, cdf(g)) * np.sqrt(g @ V @ g)
    assert test["gap_ci_low"] == pytest.approx(g @ ref.params - half, rel=1e-7)


def test_equality_test_of_an_hc2_fit_is_htz_with_each_student_its_own_cluster():
    """A trial that randomized students (HC2) tests equal effects across 3 levels by HTZ with each
    student its own cluster, η from the explicit n × n matrices (before 2026-12-05 the Wald F on
    n − k, which over-rejects with few treated per level); ``test="F"`` keeps that F on n − k."""
    y, X, z, lev, _, w = _data(7, levels=3, weights=True)
    n, q = len(y), 2
    _, test = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, lev, [0, 1, 2], name="g",
                               scale=_scale, weights=w, vcov="HC2")
    D = (lev[:, None] == np.arange(1, 3)).astype(float)
    Xi = np.column_stack([X[:, [0, 2]], D, z[:, None] * (lev[:, None] == np.arange(3))])
    ref = sm.WLS(y, Xi, weights=w).fit()
    V, _ = direct_cr2(Xi, y, np.arange(n), w)
    R = np.zeros((q, Xi.shape[1]))
    R[:, 4] = -1
    R[np.arange(q), 5 + np.arange(q)] = 1
    b = R @ ref.params
    W = float(b @ np.linalg.solve(R @ V @ R.T, b))
    eta = direct_htz_eta(Xi, np.arange(n), w, R)
    F = (eta - q + 1) / (eta * q) * W
    assert test["test"].startswith("HTZ") and test["statistic"] == pytest.approx(F, rel=1e-8)
    assert test["df2"] == pytest.approx(eta - q + 1, rel=1e-8)
    assert test["pvalue"] == pytest.approx(stats.f.sf(F, q, eta - q + 1), rel=1e-7)
    _, f_test = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, lev, [0, 1, 2], name="g",
                                 scale=_scale, weights=w, vcov="HC2", test="F")
    assert f_test["statistic"] == pytest.approx(W / q, rel=1e-8) and f_test["df2"] == n - Xi.shape[1]


def test_an_undefined_htz_test_of_an_hc2_fit_names_students():
    """10 levels of 20 students, 2 treated in each: η ≤ q − 1 for the 9 constraints under HC2 (each
    student its own cluster), so HTZ is undefined; the note and the label say students, not
    schools or clusters (before 2026-12-05 both spoke of schools/clusters). η against the dense
    n × n computation."""
    rng = np.random.default_rng(3)
    L, m = 10, 20
    lev = np.repeat(np.arange(L), m)
    z = np.zeros(L * m)
    for j in range(L):
        z[j * m + rng.choice(m, 2, replace=False)] = 1
    y = rng.normal(size=L * m) * (1 + z)
    X = np.column_stack([np.ones(L * m), z])
    notes = []
    _, test = subgroup_effects(y, X, ["const", "treatment"], z, lev, list(range(L)), name="g", scale=_scale,
                               vcov="HC2", notes=notes)
    D = (lev[:, None] == np.arange(1, L)).astype(float)
    Xi = np.column_stack([np.ones(L * m), D, z[:, None] * (lev[:, None] == np.arange(L))])
    R = np.zeros((L - 1, Xi.shape[1]))
    R[:, L] = -1
    R[np.arange(L - 1), L + 1 + np.arange(L - 1)] = 1
    eta = direct_htz_eta(Xi, np.arange(L * m), None, R)
    assert eta <= L - 2 and test["df2"] == pytest.approx(eta - (L - 1) + 1, rel=1e-8)
    assert "too few rows (students) for this many constraints" in test["test"]
    assert any("too few students per level" in s for s in notes)
    two = lev < 2  # two levels: a t test, Satterthwaite's df under HC2 only (HC1's are n − k)
    for vcov, named in (("HC2", True), ("HC1", False)):
        _, t2 = subgroup_effects(y[two], X[two], ["const", "treatment"], z[two], lev[two], [0, 1], name="g",
                                 scale=_scale, vcov=vcov)
        assert t2["test"].endswith("(Satterthwaite)") is named


def test_a_level_whose_treated_students_share_one_school_clusters_them_by_student():
    """Level 2's treated students are all in one school: as one cluster, its residuals in the
    level are fitted by the level's effect, so the SE would leave their noise out. Those rows are
    clustered by student instead (the direct n×n CR2 with those clusters), with a note; the other
    levels' rows keep their school clusters."""
    y, X, z, lev, school, _ = _data(9, levels=3)
    rng = np.random.default_rng(9)
    lev = np.where(z == 1, np.where(school == 1, 2, rng.integers(0, 2, z.size)), lev)
    notes = []
    rows, _ = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, lev, [0, 1, 2], name="g", scale=_scale,
                               clusters=school, notes=notes)
    D = (lev[:, None] == np.arange(1, 3)).astype(float)
    Xi = np.column_stack([X[:, [0, 2]], D, z[:, None] * (lev[:, None] == np.arange(3))])
    own = (lev == 2) & (z == 1)
    cl = np.where(own, 1000 + np.arange(z.size), school)
    V, cdf = direct_cr2(Xi, y, cl)
    for j, r in enumerate(rows):
        assert r["se"] == pytest.approx(np.sqrt(V[4 + j, 4 + j]), rel=1e-8)
        assert r["df"] == pytest.approx(cdf(np.eye(7)[4 + j]), rel=1e-7)
    assert notes == ["subgroup g: level(s) 2 (PL) have all their students of that arm in one school; those students "
                     "are the clusters there (one school as a cluster would leave their noise out)"]
    from pleval.inference import ols

    assert ols(y, Xi, clusters=school, vcov="CR2").se[6] < 0.8 * rows[2]["se"]  # what one school cluster gave


def test_a_level_without_both_arms_is_left_out_with_a_note():
    y, X, z, lev, school, _ = _data(7)
    lev = np.where(z == 1, lev, np.minimum(lev, 1))  # level 2 has treated rows only
    notes: list = []
    rows, test = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, lev, ["a", "b", "c"], name="g",
                                  scale=_scale, clusters=school, notes=notes)
    assert [r["level"] for r in rows] == ["a", "b"] and test["n_levels"] == 2
    assert "['c'] lack a treated or comparison row" in notes[0]


def test_a_level_of_comparison_rows_only_in_a_whole_evaluation_warns_nothing_raw():
    """A subgroup level with comparison rows only is left out with a note, and its pretest SMD
    (0/0) no longer prints numpy's "invalid value encountered in divide" among the warnings."""
    d = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=6, seed=5).data
    d["cohort"] = np.where((d.treatment == 0) & (np.arange(len(d)) % 3 == 0), "X", "Y")
    d["band"] = np.where(np.arange(len(d)) // 2 % 2 == 0, "odd", "even")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(d, placebo=False, subgroups=["cohort", "band"])
    assert not [w for w in caught if "invalid value" in str(w.message)]
    assert set(ev.subgroups()["subgroup"]) == {"band"}
    assert any("subgroup cohort (math): level(s) 'X' are held by matched comparison students only" in n and "all have 'Y'" in n
               for n in ev.notes)


def test_an_attribute_only_pl_students_have_is_a_subgroup_in_a_matched_comparison():
    """A program variant recorded for PL students only (missing, or coded 'none', for comparison
    students) stopped the run ("analysed rows are missing") or was left out as a level "without
    a treated row". Each comparison row now takes the level of the PL student it is matched to,
    as it does for a column both arms have: missing, 'none' and arbitrary comparison values give
    the same subgroup effects, with a note. A missing value for a PL row is an error that says
    so; under weighting (no matched sets) a comparison row's own value is needed."""
    d = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=12, grades=(4,), seed=3).data
    pl = d["treatment"] == 1
    variant = pd.Series(np.where(np.arange(len(d)) % 3 == 0, "A", "B"), index=d.index)
    runs = {}
    for kind, comp in (("missing", None), ("none", "none"), ("own", variant.where(d.school_id.str[-1] < "5", "C"))):
        x = d.assign(variant=variant.where(pl, comp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            runs[kind] = ev = pleval.estimate(x, subgroups="variant", subject="math", placebo=False, sensitivity=False,
                                             workers=1)
        assert list(ev.subgroups()["level"]) == ["A", "B"]
    cols = ["estimate", "se", "df", "effect_size"]
    for kind in ("none", "own"):
        assert np.allclose(runs[kind].subgroups()[cols], runs["missing"].subgroups()[cols], rtol=1e-12, atol=0)
    assert any("matched comparison row(s) have no value; each takes the level of the PL student" in n
               for n in runs["missing"].notes)
    assert any("level(s) 'none' are held by matched comparison students only" in n for n in runs["none"].notes)
    bad = d.assign(variant=variant.where(pl & (np.arange(len(d)) % 50 != 0)))
    with pytest.raises(DataError, match=r"subgroup column 'variant' is missing for [\d,]+ analysed PL row"):
        pleval.estimate(bad, subgroups="variant", subject="math", placebo=False, sensitivity=False, workers=1)
    with pytest.raises(DataError, match="comparison row.s. outside matched sets"):
        pleval.estimate(d.assign(variant=variant.where(pl)), method="weighting", subgroups="variant", subject="math",
                        placebo=False, sensitivity=False, workers=1)


def test_pretest_bands_by_hand():
    df = pd.DataFrame({"g": [3] * 6 + [4] * 4, "p": [1, 2, 3, 4, 5, 6, 10, 10, 20, 30], "s": "math"})
    b = pretest_bands(df, "p", ["g", "s"])
    assert list(b[:6]) == ["1: P0–33"] * 2 + ["2: P33–67"] * 2 + ["3: P67–100"] * 2
    # ranks within grade 4: ties share the mid-rank 1.5/4 = 37.5% -> middle band; 3/4 and 4/4 -> top
    assert list(b[6:]) == ["2: P33–67", "2: P33–67", "3: P67–100", "3: P67–100"]
    q = pretest_bands(df.assign(p=df["p"].where(df.index != 0)), "p", cuts=[25, 50, 75])
    assert pd.isna(q[0]) and sorted(q.dropna().unique())[0] == "1: P0–25" and q.dropna().nunique() == 4
    with pytest.raises(DataError, match="increasing percents"):
        pretest_bands(df, "p", cuts=[50, 25])
    with pytest.raises(DataError, match="increasing percents"):
        pretest_bands(df, "p", cuts=[0, 50])


def test_set_level_codes_follow_the_treated_student():
    m = pd.DataFrame({"_set": [0, 0, 0, 1, 1, -1], "t": [1, 0, 0, 1, 0, 0]})
    codes = np.array([2, 0, 1, 0, 2, 1])
    assert list(set_level_codes(m, "t", codes)) == [2, 2, 2, 0, 0, 1]


def test_equity_table_signs_and_verdicts():
    base = {"gap_se": 1.0, "gap_df": 30.0, "gap_pvalue": 0.01, "gap_effect_size": -0.2, "gap_es_ci_low": -0.3,
            "gap_es_ci_high": -0.1}
    tests = pd.DataFrame([
        {"subgroup": BAND, "gap": "3: P67–100 − 1: P0–33", "gap_estimate": -2.0, "gap_ci_low": -3.0, "gap_ci_high": -1.0,
         **base},
        {"subgroup": "frl", "gap": "1 − 0", "gap_estimate": -2.0, "gap_ci_low": -3.0, "gap_ci_high": -1.0, **base},
        {"subgroup": "ell", "gap": "1 − 0", "gap_estimate": 5.0, "gap_ci_low": 4.0, "gap_ci_high": 6.0, **base},
    ])
    e = equity_table(tests)
    assert len(e) == 2  # ell is not an equity gap
    assert e.loc[0, "verdict"] == "narrows the gap" and e.loc[0, "change"] == -2.0
    # FRL: the gap is non-FRL − FRL; τ_FRL − τ_nonFRL = −2 means non-FRL students gained 2 more: it widens
    assert e.loc[1, "change"] == 2.0 and (e.loc[1, "ci_low"], e.loc[1, "ci_high"]) == (1.0, 3.0)
    assert e.loc[1, "verdict"] == "widens the gap" and e.loc[1, "change_es"] == pytest.approx(0.2)
    # FRL coded as text: the same row (a Yes/No or Y/N column gave no FRL row at all)
    for gap in ("Yes − No", "Y − N", "TRUE − FALSE", "y − n"):
        e2 = equity_table(tests.assign(gap=tests["gap"].where(tests["subgroup"] != "frl", gap)))
        pd.testing.assert_frame_equal(e2, e)
    assert len(equity_table(tests.assign(gap=tests["gap"].where(tests["subgroup"] != "frl", "urban − rural")))) == 1


# ------------------------------------------------------------------------- pleval.estimate


@pytest.fixture(scope="module")
def rct_ev():
    sim = simulate_cluster_rct(n_schools=16, n_blocks=4, students_per_school=40, grades=(4, 5), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return sim, pleval.estimate(sim.data, design="rct", subgroups=[BAND, "frl"], bands=[25, 50, 75], placebo=False)


def test_rct_subgroups_in_estimate(rct_ev):
    sim, ev = rct_ev
    sub = ev.subgroups()
    assert set(sub["subgroup"]) == {BAND, "frl"} and set(sub["subject"]) == {"math", "reading"}
    assert sub[sub["subgroup"] == BAND]["level"].nunique() == 4
    np.testing.assert_allclose(sub["pvalue_adjusted"], multipletests(sub["pvalue"], method="fdr_bh")[1], rtol=1e-12)
    # the rows are analyze_rct's on the same band column
    d = sim.data.assign(**{BAND: pretest_bands(sim.data, "pretest", ["grade", "subject"], [25, 50, 75])})
    res = pleval.analyze_rct(d, pleval.data.RCT_SAMPLE_COLUMNS, subject="math", subgroups=[BAND, "frl"])
    mine = ev.subgroups("math").set_index(["subgroup", "level"])
    for r in res.subgroups.itertuples():
        assert mine.loc[(r.subgroup, r.level), "estimate"] == pytest.approx(r.estimate, rel=1e-10)
        assert mine.loc[(r.subgroup, r.level), "pp_ci_high"] == pytest.approx(r.pp_ci_high, rel=1e-10)
    eq = ev.equity
    assert len(eq) == 4 and set(eq["verdict"]) <= {"narrows the gap", "widens the gap", "no clear change in the gap"}
    t = ev.subgroup_tests.set_index(["subject", "subgroup"])
    assert eq.iloc[0]["change"] == pytest.approx(t.loc[("math", BAND), "gap_estimate"])
    assert eq.iloc[1]["change"] == pytest.approx(-t.loc[("math", "frl"), "gap_estimate"])


def test_matched_subgroup_pretest_smd_is_on_the_equivalence_yardstick():
    """A level's pretest difference is read against 0.25 SD: it is now divided by the subject's
    baseline-equivalence SD (pooled within arm × grade), not the level's own SD, which the
    spread of grade means inflated (and a pretest band's narrow range shrank)."""
    sim = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=12, grades=(3, 5, 7), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(sim.data, subgroups="frl", subject="math", placebo=False, seed=1)
    m = ev.details["math"]["design"].matched
    m = m[m["subject"] == "math"]
    ss = dof = 0.0
    for _, cell in m.groupby(["treatment", "grade"]):
        w = cell["_weight"].to_numpy()
        n_eff = w.sum() ** 2 / (w**2).sum()
        ss += (n_eff - 1) * np.cov(cell["pretest"], aweights=w)
        dof += n_eff - 1
    sd = np.sqrt(ss / dof)
    assert ev.equivalence.set_index("subject").loc["math", "sd"] == pytest.approx(sd, rel=1e-12)
    lev = set_level_codes(m, "treatment", m["frl"].to_numpy().astype(int))
    t = m["treatment"].to_numpy() == 1
    sub = ev.subgroups("math").set_index("level")
    for level in (0, 1):
        k = lev == level
        diff = (np.average(m["pretest"][k & t], weights=m["_weight"][k & t])
                - np.average(m["pretest"][k & ~t], weights=m["_weight"][k & ~t]))
        assert sub.loc[level, "pretest_smd"] == pytest.approx(diff / sd, rel=1e-10)


def test_matched_subgroups_equal_the_interacted_wls_on_the_matched_sample():
    sim = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=12, grades=(4,), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(sim.data, subgroups="frl", subject="math", placebo=False, seed=1)
    m = ev.details["math"]["design"].matched
    m = m[m["subject"] == "math"]
    lev = set_level_codes(m, "treatment", m["frl"].to_numpy().astype(int))
    z = m["treatment"].to_numpy(dtype=float)
    X = pd.get_dummies(m[["pretest", "female", "ell", "sped", "race"]], columns=["race"], drop_first=False, dtype=float)
    X = X.drop(columns=[c for c in X if c.startswith("race_")][:1])
    Xi = np.column_stack([np.ones(len(m)), X.to_numpy(), lev, z * (lev == 0), z * (lev == 1)])
    ref = sm.WLS(m["posttest"].to_numpy(), Xi, weights=m["_weight"].to_numpy()).fit()
    sub = ev.subgroups("math").set_index("level")
    assert sub.loc[0, "estimate"] == pytest.approx(ref.params[-2], rel=1e-8)
    assert sub.loc[1, "estimate"] == pytest.approx(ref.params[-1], rel=1e-8)
    assert "pretest_smd" in sub.columns
    # the df: CR2's Satterthwaite df under a school random-effect working model, as the overall
    # effect's (dense n × n computation); the independence working model's differ
    cl = pd.factorize(m["school_id"])[0]
    y, w = m["posttest"].to_numpy(), m["_weight"].to_numpy()
    for j, level in ((-2, 0), (-1, 1)):
        df, rho = _direct_random_effects_df(y, Xi, cl, w, Xi.shape[1] + j)
        assert rho > 0
        assert sub.loc[level, "df"] == pytest.approx(df, rel=1e-8)
        indep = ols(y, Xi, weights=w, clusters=cl, vcov="CR2").df[j]
        assert abs(sub.loc[level, "df"] / indep - 1) > 1e-3


def test_a_subgroup_column_with_one_value_in_a_subject_is_noted_there():
    """A subgroup level found in one subject only (here among math's rows) stopped the whole run
    ("a single value among the analysed rows"); the other subject now gets a note and no
    subgroup rows, the first its effects. A column with one value everywhere is still an error.
    Subgroup columns are not listed as unused."""
    sim = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=12, grades=(4, 5), seed=2)
    d = sim.data.assign(grp=lambda x: np.where((x.subject == "math") & (x.grade == 5), "g5", "other"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(d, subgroups="grp", placebo=False, sensitivity=False, seed=1, workers=1)
    sub = ev.subgroups()
    assert set(sub["subject"]) == {"math"} and sorted(sub["level"]) == ["g5", "other"]
    assert np.isfinite(sub["se"]).all() and (sub["se"] < 5).all()
    assert any("subgroups (reading): column 'grp' has one value ('other')" in n for n in ev.notes)
    assert not any(p.kind == "unused columns" and "grp" in p.message for p in ev.checks.problems)
    with pytest.raises(DataError, match="single value"):
        pleval.estimate(d.assign(grp="one"), subgroups="grp", placebo=False, sensitivity=False, workers=1)


def test_a_trial_subgroup_with_one_value_in_a_subject_is_noted_there(rct_ev):
    sim, _ = rct_ev
    d = sim.data.assign(grp=lambda x: np.where((x.subject == "math") & (x.grade == 5), "g5", "other"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(d, design="rct", subgroups="grp", placebo=False, workers=1)
    assert set(ev.subgroups()["subject"]) == {"math"}
    assert any("subgroups (reading): column 'grp' has one value ('other')" in n for n in ev.notes)


def test_a_subgroup_that_is_a_function_of_the_design_gives_the_same_effects():
    """Grade written as text (or any column the design's exact-match strata already span): its
    level main effects are collinear with the design's grade terms. Math's fit did not fail but
    gave standard errors of rounding noise (127 against 1.75 for grade), reading's was "not
    estimable"; the spanned main effects are now left out and the rows equal grade's."""
    sim = simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=12, grades=(4, 5), seed=2)
    d = sim.data.assign(grade_text=lambda x: "g" + x.grade.astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        by_grade = pleval.estimate(d, subgroups="grade", placebo=False, sensitivity=False, seed=1, workers=1)
        by_text = pleval.estimate(d, subgroups="grade_text", placebo=False, sensitivity=False, seed=1, workers=1)
    a, b = by_grade.subgroups(), by_text.subgroups()
    assert len(a) == len(b) == 4 and not any("not estimable" in n for n in by_text.notes)
    cols = ["estimate", "se", "df", "ci_low", "ci_high", "pvalue"]
    np.testing.assert_allclose(b[cols].to_numpy(float), a[cols].to_numpy(float), rtol=1e-7)


def test_subgroup_option_errors(rct_ev):
    sim, _ = rct_ev
    with pytest.raises(DataError, match="bands"):
        pleval.estimate(sim.data, design="rct", subgroups=BAND, bands="a,b")
    with pytest.raises(DataError, match="'nope' is not in the data"):
        pleval.estimate(sim.data, design="rct", subgroups="nope", placebo=False)
    with pytest.raises(DataError, match=f"column {BAND!r} exists"):
        pleval.estimate(sim.data.assign(**{BAND: 1}), design="rct", subgroups=BAND)


# ------------------------------------------------------------------------------ simulation


@pytest.mark.slow
def test_equity_gap_ci_coverage_with_a_known_gap_change():
    """Cluster RCT, 30 schools of 60 students, ICC ≈ 0.15, outcome SD 1; the effect is 0.10 SD
    larger in the highest pretest third than in the lowest (a widening of 0.10 SD)."""
    reps = sim_reps(1000, minimum=200)
    rng = np.random.default_rng(2024)
    G, m = 30, 60
    school = np.repeat(np.arange(G), m)
    cover, est = 0, []
    for _ in range(reps):
        z = rng.permutation(np.repeat([0.0, 1.0], G // 2))[school]
        pre = rng.normal(size=G * m)
        band = np.searchsorted(np.quantile(pre, [1 / 3, 2 / 3]), pre, side="right")
        tau = 0.05 + 0.10 * (band == 2)
        y = 0.5 * pre + rng.normal(scale=0.4, size=G)[school] + rng.normal(scale=0.75, size=G * m) + z * tau
        X = np.column_stack([np.ones(G * m), z, pre])
        _, t = subgroup_effects(y, X, ["const", "treatment", "pretest"], z, band, ["low", "mid", "high"],
                                name=BAND, scale=_scale, clusters=school)
        cover += t["gap_ci_low"] <= 0.10 <= t["gap_ci_high"]
        est.append(t["gap_estimate"])
    rate = cover / reps
    se = np.sqrt(0.95 * 0.05 / reps)
    assert abs(rate - 0.95) < 3.5 * se + 0.01, rate
    assert abs(np.mean(est) - 0.10) < 4 * np.std(est) / np.sqrt(reps)


def test_outputs_report_and_cli(rct_ev, tmp_path):
    from typer.testing import CliRunner

    from pleval.cli import app
    from pleval.report import save

    sim, ev = rct_ev
    out = save(ev, tmp_path / "out")
    sub = pd.read_csv(out / "subgroups.csv")
    assert len(sub) == len(ev.subgroups()) and {"pp_ci_low", "es_ci_high", "pvalue_adjusted"} <= set(sub.columns)
    assert len(pd.read_csv(out / "equity.csv")) == 4 and (out / "subgroup_tests.csv").is_file()
    assert (out / "plots" / "subgroups_math.png").stat().st_size > 10_000
    html = (out / "report.html").read_text()
    assert "Subgroups and equity" in html and "Equity: does the program narrow or widen the gap?" in html
    assert ev.plot_subgroups("reading") is not None
    src = tmp_path / "trial.csv"
    sim.data.to_csv(src, index=False)
    r = CliRunner().invoke(app, ["estimate", str(src), "--design", "rct", "--out", str(tmp_path / "cli"), "--no-placebo",
                                 "--subgroups", "pretest_band,frl", "--bands", "25,50,75", "--only-subject", "math"])
    assert r.exit_code == 0, r.output
    assert "Subgroups (effect size" in r.output and "gap non-FRL − FRL students" in r.output
    cli = pd.read_csv(tmp_path / "cli" / "subgroups.csv")
    mine = ev.subgroups("math")
    np.testing.assert_allclose(cli["estimate"], mine["estimate"], rtol=1e-10)
    r = CliRunner().invoke(app, ["estimate", str(src), "--design", "rct", "--out", str(tmp_path / "bad"),
                                 "--subgroups", "pretest_band", "--bands", "50,20"])
    assert r.exit_code == 2 and "increasing percents" in r.output


# ----------------------------------------------------------------------------- moderators


def test_context_moderators_equal_a_direct_meta_regression(tmp_path):
    from pathlib import Path

    from pleval.heterogeneity import meta_regression
    from pleval.report import save

    d = pd.read_csv(Path(__file__).parents[1] / "sample_data" / "pl_matched_students.csv")
    d = d[d["subject"] == "math"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(d, moderators="school_poverty,urbanicity", placebo=False)
    m = ev.moderators
    assert list(m["term"]) == ["intercept", "school_poverty", "urbanicity[suburban]", "urbanicity[urban]"]
    sch = ev.schools[np.isfinite(ev.schools["effect_size"])]
    urb = d.drop_duplicates("school_id").set_index("school_id")["urbanicity"].reindex(sch["school"]).to_numpy()
    X = pd.DataFrame({"school_poverty": sch["school_poverty"].to_numpy(), "suburban": (urb == "suburban").astype(float),
                      "urban": (urb == "urban").astype(float)})
    ids = sch["school"]
    V, V0 = ev.school_effects.vcov["math"].loc[ids, ids], ev.school_effects.vcov_raw["math"].loc[ids, ids]
    ref = meta_regression(sch["effect_size"], sch["es_se"], X, knapp_hartung=True, vcov=V.to_numpy(),
                          vcov_unshrunk=V0.to_numpy())
    np.testing.assert_allclose(m["estimate"], ref.coefficients["estimate"], rtol=1e-8)
    np.testing.assert_allclose(m["pvalue"], ref.coefficients["pvalue"], rtol=1e-7)
    assert m["qm"].iloc[0] == pytest.approx(ref.qm, rel=1e-8) and m["qm_df"].iloc[0] == 3
    assert m["qm_test"].iloc[0].startswith("F(3, ")  # Knapp–Hartung by default
    out = save(ev, tmp_path / "out")
    assert len(pd.read_csv(out / "moderators.csv")) == len(m)
    assert "Context moderators" in (out / "report.html").read_text()
    with pytest.raises(DataError, match="moderator column 'nope'"):
        pleval.estimate(d, moderators="nope", placebo=False)


@pytest.mark.slow
def test_a_level_of_one_pl_school_covers_by_simulation():
    """Matched design, 10 PL schools among 40, no program effect, no school deviations; a
    subgroup whose PL students are exactly one PL school's (10% of comparison students, at
    random): that level's 95% CI covers 0 and its SE matches the estimates' spread (150 data
    sets: 96.7%, SE/SD 1.06; with the school as one cluster 88.0% and 0.76)."""
    from ._school_sim import generate

    reps = sim_reps(150, minimum=40)
    est, se, cover = [], [], 0
    for seed in range(reps):  # a loop over data sets, each a whole analysis
        df, _, _ = generate(seed, n_pl=10, n_comp=30, delta=0.0)
        one = sorted(df.loc[df.treatment == 1, "school_id"].unique())[0]
        other = np.random.default_rng(seed).uniform(size=len(df)) < 0.1
        df["flag"] = np.where(df.treatment == 1, df.school_id == one, other).astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            sg = pleval.estimate(df, sd=15.0, placebo=False, sensitivity=False, subgroups=["flag"]).subgroups()
        r = sg[sg["level"].astype(str) == "1"].iloc[0]
        est.append(r["estimate"])
        se.append(r["se"])
        cover += r["ci_low"] <= 0 <= r["ci_high"]
    ratio = np.mean(se) / np.std(est, ddof=1)
    assert cover / reps >= 0.9 and 0.88 < ratio < 1.3, (cover / reps, ratio)


def matched_subgroups(n_schools: int, n_pl_schools: int, r: int, by=("frl",), **match_kw) -> dict:
    """One matched study (``simulate_matched``, seed 5000 + r: school growth deviations with SD
    0.10, a constant effect of 0.10 SD; matched with seed r), math, subgroups by each of ``by``
    ("frl", or "thirds" of the pretest within grade) with the school random-effect df as in
    ``pleval estimate``: for each, the level rows, the test row and the true effect."""
    from pleval.data import SAMPLE_COLUMNS
    from pleval.matching import match
    from pleval.matching.effect import regression_design
    from pleval.subgroups import level_codes

    sim = simulate_matched(n_schools=n_schools, n_pl_schools=n_pl_schools, students_per_grade=12, effect=0.10,
                           tau=0.0, seed=5000 + r)
    m = match(sim.data, SAMPLE_COLUMNS, seed=r, **match_kw)
    c = m.columns
    sample = m.matched[m.matched[c.subject] == "math"]
    d = regression_design(sample, outcome=c.outcome, treatment=c.treatment, pretests=c.pretest,
                          covariates=c.covariates, strata=m.strata, school=c.school)
    names = ["treatment" if nm == c.treatment else nm for nm in d["names"]]
    out = {}
    for name in by:
        levels = sample["frl"] if name == "frl" else pretest_bands(sample, c.pretest[0], ["grade"])
        codes, labels = level_codes(levels, name)
        rows, t = subgroup_effects(d["y"], d["X"], names, d["t"], set_level_codes(sample, c.treatment, codes), labels,
                                   name=name, scale=_scale, weights=d["weights"], clusters=d["clusters"],
                                   units=pd.factorize(sample.index)[0], df_working="random_effects")
        out[name] = (rows, t, sim.truth.att_raw)
    return out


def frl_cover(rows, t, truth) -> tuple[np.ndarray, float]:
    """From :func:`matched_subgroups` by FRL status: whether the two levels' CIs cover the effect
    and the gap's covers 0, and the first level's df."""
    return np.array([rows[0]["ci_low"] <= truth <= rows[0]["ci_high"], rows[1]["ci_low"] <= truth <= rows[1]["ci_high"],
                     t["gap_ci_low"] <= 0 <= t["gap_ci_high"]]), float(rows[0]["df"])


@pytest.mark.slow
def test_matched_subgroup_cis_cover_with_school_deviations():
    """Matched design (``simulate_matched``: 12 PL schools among 60, school growth deviations
    with SD 0.10, a constant effect of 0.10 SD), subgroups by FRL status, df under the school
    random-effect working model as in ``pleval estimate``: each level's CI and the gap's cover
    (1,500 data sets: levels 93.9% and 95.7%, gap 94.5%; with the independence working model's
    df 93.0%, 94.9% and 94.1%)."""
    reps = sim_reps(300, minimum=75)
    cover = np.zeros(3)
    for r in range(reps):  # a loop over data sets, each a whole analysis
        cover += frl_cover(*matched_subgroups(60, 12, r)["frl"])[0]
    se = np.sqrt(0.95 * 0.05 / reps)
    assert np.all(np.abs(cover / reps - 0.95) < 3 * se), cover / reps


def test_matched_subgroup_counts_comparison_students_once():
    """A level's n_control counts the comparison students of its matched sets once each (a
    student reused by several PL students, as the overall n_control counts them). Before, it
    counted set rows: the sample's frl = 1 level had 8,191 'comparison students' where the
    whole math analysis has 7,195."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate("sample_data/pl_matched_students.csv", placebo=False, sensitivity=False,
                             subgroups=["frl"])
    m = ev.details["math"]["design"].matched
    m = m[m["subject"] == "math"]
    level = m.loc[m["treatment"] == 1].set_index("_set")["frl"]  # each set in its PL student's level
    comp = m[m["treatment"] == 0].assign(level=lambda x: x["_set"].map(level))
    want = comp.groupby("level")["student_id"].nunique()
    got = ev.subgroups("math").drop_duplicates("level").set_index("level")["n_control"]
    assert got.to_dict() == {int(k): int(v) for k, v in want.items()}
    assert (got <= ev.effects["math"].raw.n_control).all() and got.sum() < len(comp)


@pytest.mark.parametrize("gap,sign", [("Yes − No", -1.0), ("no − Yes", 1.0), ("y − n", -1.0), ("n − Y", 1.0),
                                      ("1 − 0", -1.0)])
def test_equity_gap_reads_yes_no_codes_in_any_case(gap, sign):
    """FRL coded 'Yes'/'no' sorts as ['Yes', 'no'] (capitals first), so the gap row is 'no − Yes'.
    It was not recognised: no equity row and no word. It now is, with the sign that makes the
    change non-FRL − FRL."""
    from pleval.subgroups import equity_table

    t = pd.DataFrame([dict(subgroup="frl", gap=gap, gap_estimate=1.0, gap_se=0.5, gap_df=20, gap_ci_low=0.0,
                           gap_ci_high=2.0, gap_pvalue=0.05, gap_effect_size=0.1, gap_es_ci_low=0.0, gap_es_ci_high=0.2)])
    (row,) = equity_table(t).itertuples()
    assert row.gap == "non-FRL − FRL students" and row.change == sign
