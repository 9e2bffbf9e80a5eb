"""Joint covariance of school effects (pleval.heterogeneity._joint) and the correlated-error
meta-analysis (meta_analysis / empirical_bayes / meta_regression with vcov=V): against
statsmodels on the stacked design, a direct n×n CR2, a restricted likelihood maximized by
scipy, and a Bayesian posterior computed from the joint Gaussian."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

from pleval.errors import DataError, PlevalWarning
from pleval.heterogeneity import calibrate, empirical_bayes, meta_analysis, meta_regression, school_effects
from pleval.inference import ols

from .conftest import sim_reps


def stacked(n_pl=5, n_comp=8, per_set=3, seed=0, share=True, tau_school=0.3):
    """Matched-set long format: each PL school's treated students plus the students of
    ``per_set`` comparison schools (shared between sets when ``share``), rows repeated per set."""
    rng = np.random.default_rng(seed)
    comp_size = rng.integers(4, 9, n_comp)
    comp_school = np.repeat(np.arange(n_comp), comp_size)
    shock = rng.normal(0, tau_school, n_pl + n_comp)
    comp = pd.DataFrame({"student_id": [f"c{i}" for i in range(comp_school.size)],
                         "school_id": [f"C{s}" for s in comp_school], "treatment": 0,
                         "pretest": rng.normal(size=comp_school.size)})
    comp["posttest"] = 0.6 * comp["pretest"] + shock[n_pl + comp_school] + rng.normal(size=len(comp))
    parts = []
    for s in range(n_pl):  # a loop over a handful of test schools
        nt = int(rng.integers(5, 12))
        tr = pd.DataFrame({"student_id": [f"t{s}_{i}" for i in range(nt)], "school_id": f"P{s}", "treatment": 1,
                           "pretest": rng.normal(size=nt)})
        tr["posttest"] = 0.2 + 0.6 * tr["pretest"] + shock[s] + rng.normal(size=nt)
        chosen = rng.choice(n_comp, per_set, replace=False) if share else np.arange(s * per_set, (s + 1) * per_set)
        c = comp[comp["school_id"].isin([f"C{j}" for j in chosen])]
        parts.append(pd.concat([tr, c]).assign(_pl_school=f"P{s}"))
    d = pd.concat(parts, ignore_index=True)
    d["_weight"] = rng.uniform(0.5, 2.0, len(d))
    return d


def stacked_design(d):
    """Fully interacted stacked design: per set an intercept, treatment and pretest slope."""
    sets = pd.factorize(d["_pl_school"])[0]
    k = sets.max() + 1
    ind = (sets[:, None] == np.arange(k)[None, :]).astype(float)
    X = np.hstack([ind, ind * d["treatment"].to_numpy()[:, None], ind * (d["pretest"] - d["pretest"].mean()).to_numpy()[:, None]])
    cl = np.where(d["treatment"] == 1, "T" + d["student_id"], d["school_id"])
    return X, cl, k


def _pinv_sqrt(A):
    lam, W = np.linalg.eigh(A)
    return (W * np.where(lam > 1e-12, np.clip(lam, 1e-300, None) ** -0.5, 0.0)) @ W.T


def direct_cr2(y, X, cl, w, cols):
    """The n×n CR2 of the stacked fit and Satterthwaite df for coefficients ``cols``."""
    Xt, yt = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    M = np.linalg.pinv(Xt.T @ Xt)
    H = Xt @ M @ Xt.T
    e = yt - H @ yt
    IH = np.eye(len(y)) - H
    groups = [cl == g for g in pd.unique(cl)]
    A = [_pinv_sqrt(IH[np.ix_(i, i)]) for i in groups]
    U = np.array([Xt[i].T @ a @ e[i] for i, a in zip(groups, A)])
    V = M @ (U.T @ U) @ M
    dfs = []
    for j in cols:
        Q = []
        for i, a in zip(groups, A):
            p = np.zeros(len(y))
            p[i] = a @ Xt[i] @ M[:, j]
            Q.append(IH @ p)
        Q = np.array(Q)
        Om = Q @ Q.T
        dfs.append(np.trace(Om) ** 2 / np.sum(Om**2))
    return V[np.ix_(cols, cols)], np.array(dfs)


def _se(d, vcov, **kw):
    """The transformed CR2 form (direct_cr2's); the Φ = I form is tested in test_joint_phi.py."""
    return school_effects(d, covariates=["pretest"], cluster="student_id", school="school_id", vcov=vcov, sd=1.0,
                          cr2="transformed", **kw)


def test_joint_cr0_cr1_match_statsmodels_on_the_stacked_design():
    d = stacked(seed=1)
    X, cl, k = stacked_design(d)
    y, w = d["posttest"].to_numpy(), d["_weight"].to_numpy()
    fit = sm.WLS(y, X, weights=w).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(cl)[0], "use_correction": False})
    res = _se(d, "CR0")
    V = res.vcov_raw["all"].to_numpy()
    np.testing.assert_allclose(res.table["estimate"], fit.params[k : 2 * k], rtol=1e-10)
    np.testing.assert_allclose(V, fit.cov_params()[k : 2 * k, k : 2 * k], rtol=1e-8, atol=1e-14)
    assert np.abs(V - np.diag(np.diag(V))).max() > 1e-4  # shared comparison schools correlate the estimates
    # CR1: each school's diagonal is its own CR1 (statsmodels on that school's set alone)
    res1 = _se(d, "CR1")
    for s, sub in d.groupby("_pl_school"):
        Xs = sm.add_constant(np.column_stack([sub["treatment"], sub["pretest"]]))
        cls = np.where(sub["treatment"] == 1, "T" + sub["student_id"], sub["school_id"])
        f = sm.WLS(sub["posttest"], Xs, weights=sub["_weight"]).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(cls)[0]})
        row = res1.table.set_index("school").loc[s]
        assert row["se"] == pytest.approx(np.asarray(f.bse)[1], rel=1e-9)
        assert row["df"] == len(np.unique(cls)) - 1


def test_off_diagonal_shrinkage_matches_a_direct_computation():
    """The covariance the meta-analysis uses: the raw CR0 off-diagonal times 1 − λ, with
    λ = Σ_{s≠t} Var̂(V_st) / Σ_{s≠t} V_st², Var̂ the unbiased variance of the sum of the shared
    clusters' score products φ_sc φ_tc (each cluster's scores on the explicit stacked design;
    Schäfer & Strimmer 2005, target D); the diagonal untouched."""
    d = stacked(seed=5)
    X, cl, k = stacked_design(d)
    y, w = d["posttest"].to_numpy(), d["_weight"].to_numpy()
    M = np.linalg.inv((X * w[:, None]).T @ X)
    e = y - X @ (M @ (X * w[:, None]).T @ y)
    codes = pd.factorize(cl)[0]
    U = np.zeros((codes.max() + 1, X.shape[1]))
    np.add.at(U, codes, X * (w * e)[:, None])
    phi = U @ M[:, k : 2 * k]  # clusters × schools
    V = phi.T @ phi
    off = ~np.eye(k, dtype=bool)
    both = [[(phi[:, s] != 0) & (phi[:, t] != 0) for t in range(k)] for s in range(k)]  # shared clusters
    prod = [[phi[both[s][t], s] * phi[both[s][t], t] for t in range(k)] for s in range(k)]
    var = np.array([[len(a) * np.var(a, ddof=1) if len(a) > 1 else np.sum(a**2) for a in row] for row in prod])
    lam = np.sum(var[off]) / np.sum(V[off] ** 2)
    res = _se(d, "CR0", hartung_knapp=False)  # the model SE (Hartung–Knapp rescales it)
    assert 0 < lam < 1
    assert res.vcov_shrinkage["all"] == pytest.approx(lam, rel=1e-8)
    want = np.diag(np.diag(V)) + (1 - lam) * (V - np.diag(np.diag(V)))
    np.testing.assert_allclose(res.vcov["all"].to_numpy(), want, rtol=1e-8, atol=1e-14)
    assert res.meta["all"].vcov is not None and np.allclose(res.meta["all"].vcov, want, rtol=1e-8, atol=1e-14)
    # the pooled SE: the model SE with the shrunk V plus the covariance the shrinkage removed
    m = res.meta["all"]
    W = np.linalg.inv(want + m.tau2 * np.eye(k))
    wt = W.sum(axis=1) / W.sum()
    assert m.se**2 == pytest.approx(1 / W.sum() + max(0.0, wt @ (V - want) @ wt), rel=1e-8)
    assert m.se2_offdiag > 0


def test_joint_cr2_matches_direct_n_by_n_computation():
    d = stacked(n_pl=4, n_comp=6, per_set=3, seed=2)
    X, cl, k = stacked_design(d)
    res = _se(d, "CR2")
    V, dfs = direct_cr2(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-7)
    np.testing.assert_allclose(res.table["se"], np.sqrt(np.diag(V)), rtol=1e-8)


def test_no_shared_comparisons_gives_todays_per_school_estimates():
    """No comparison school in two sets: V is diagonal and each school's SE and df are those
    of its own CR2 regression (pleval.inference.ols) with the same clusters."""
    d = stacked(n_pl=4, n_comp=12, per_set=3, seed=3, share=False)
    res = _se(d, "CR2")
    V = res.vcov["all"].to_numpy()
    assert np.abs(V - np.diag(np.diag(V))).max() == 0.0
    for s, sub in d.groupby("_pl_school"):
        Xs = np.column_stack([np.ones(len(sub)), sub["treatment"], sub["pretest"] - d["pretest"].mean()])
        cls = np.where(sub["treatment"] == 1, "T" + sub["student_id"], sub["school_id"])
        f = ols(sub["posttest"], Xs, weights=sub["_weight"], clusters=cls, vcov="CR2")
        row = res.table.set_index("school").loc[s]
        assert row["estimate"] == pytest.approx(f.params[1], rel=1e-10)
        assert row["se"] == pytest.approx(f.se[1], rel=1e-9)
        assert row["df"] == pytest.approx(f.coef_df(1), rel=1e-8)


def one_comparison_school(seed=2):
    """``stacked`` with PL school P0's comparison rows cut to one comparison school (which
    other sets share)."""
    d = stacked(n_pl=4, n_comp=6, per_set=3, seed=seed)
    p0 = (d["_pl_school"] == "P0") & (d["treatment"] == 0)
    lone = d.loc[p0, "school_id"].iloc[0]
    assert (d.loc[d["_pl_school"] != "P0", "school_id"] == lone).any()  # shared with another set
    return d[~p0 | (d["school_id"] == lone)].reset_index(drop=True)


def test_a_comparison_side_of_one_school_is_clustered_by_student():
    """All of a PL school's comparisons from one comparison school: as one cluster, its residuals
    sum to zero (the set's intercept fits them), so the SE would leave the comparison side's
    noise out. Its students are then the clusters in that set (the direct n×n CR2 with those
    clusters), with a note; the other sets keep their school clusters."""
    d = one_comparison_school()
    X, cl, k = stacked_design(d)
    lone = (d["_pl_school"] == "P0") & (d["treatment"] == 0)
    cl = np.where(lone, "T" + d["student_id"], cl)
    res = _se(d, "CR2")
    V, dfs = direct_cr2(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-7)
    t = res.table.set_index("school")
    assert t.loc["P0", "note"].startswith("one comparison school: SE clustered by its students")
    assert (t.drop(index="P0")["note"] == "").all()
    # what one school cluster gives: a far smaller SE
    X, cl_school, _ = stacked_design(d)
    V_school, _ = direct_cr2(d["posttest"].to_numpy(), X, cl_school, d["_weight"].to_numpy(), [k])
    assert np.sqrt(V_school[0, 0]) < 0.6 * t.loc["P0", "se"]


def test_a_comparison_side_of_one_student_is_not_estimable():
    """One comparison student (cluster) in a set: a robust SE cannot estimate its deviation
    either, so the school has no estimate and a note, as with one treated student."""
    d = one_comparison_school()
    p0c = d.index[(d["_pl_school"] == "P0") & (d["treatment"] == 0)]
    d = d.drop(p0c[1:])
    with pytest.warns(PlevalWarning, match="1 of 4 school"):
        t = _se(d, "CR2").table.set_index("school")
    assert np.isnan(t.loc["P0", "se"]) and t.loc["P0", "note"].startswith("not estimable: one comparison student")
    assert np.isfinite(t.drop(index="P0")["se"]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_cluster_per_stratum_is_a_groupwise_count_of_distinct_clusters(seed):
    """``_one_cluster``: a stratum's rows of each arm lie in one cluster (or, without clusters, are
    one row) — as pandas counts the distinct clusters of each stratum and arm; empty arms are False."""
    from pleval.heterogeneity.school_effects import _one_cluster

    rng = np.random.default_rng(seed)
    n, G = 3000, 400
    codes = rng.integers(0, G - 20, n).astype(np.int16)  # the last 20 strata have no rows
    cl = (codes.astype(np.int64) * 3 % 50 + (rng.uniform(size=n) < 0.02)).astype(np.int32)
    t = (rng.uniform(size=n) < 0.5).astype(np.int8)
    got, got_single = _one_cluster(codes, t, cl, G), _one_cluster(codes, t, None, G)
    assert got.shape == got_single.shape == (G, 2)
    for arm in (0, 1):
        rows = t == arm
        g = pd.DataFrame({"g": codes[rows], "c": cl[rows]}).groupby("g")["c"]
        one = np.zeros(G, dtype=bool)
        one[g.nunique().index[g.nunique() == 1]] = True
        single = np.zeros(G, dtype=bool)
        single[g.size().index[g.size() == 1]] = True
        assert 0 < one.sum() < G - 20 and single.any()
        np.testing.assert_array_equal(got[:, arm], one)
        np.testing.assert_array_equal(got_single[:, arm], single)


def pair_design(n_pairs, n_per, seed):
    """Pair-matched schools (each PL school compared with one comparison school), no school
    effects, no program effect: y = 0.6·pretest + N(0, 1)."""
    rng = np.random.default_rng(seed)
    pl = np.repeat(np.arange(n_pairs), n_per)
    d = pd.concat([pd.DataFrame({"_pl_school": pl, "school_id": 2 * pl + arm, "treatment": 1 - arm})
                   for arm in (0, 1)], ignore_index=True)
    d["pretest"] = rng.normal(size=len(d))
    d["posttest"] = 0.6 * d["pretest"] + rng.normal(size=len(d))
    d["student_id"] = np.arange(len(d))
    return d


@pytest.mark.parametrize("cluster", [None, "student_id"])
def test_pair_matched_school_effects_hold_their_size(cluster):
    """Null simulation: 2,000 pairs of schools, 30 students each, no effect anywhere. Each
    school's test rejects at about 5% and its CI covers 0 about 95% of the time (a comparison
    school as one cluster gave SEs 1/√2 of the truth: 15% rejections)."""
    d = pair_design(2000, 30, seed=11)
    t = school_effects(d, treatment="treatment", outcome="posttest", covariates=["pretest"], school="school_id",
                       cluster=cluster, sd=1.0).table
    assert t["note"].str.startswith("one comparison school: SE clustered by its students").all()
    reject = float((t["pvalue"] < 0.05).mean())
    assert 0.035 < reject < 0.065, reject
    assert 0.935 < float(((t["ci_low"] < 0) & (t["ci_high"] > 0)).mean()) < 0.965
    assert t["se"].mean() == pytest.approx(t["estimate"].std(), rel=0.05)


def test_student_clusters_only_cover_reuse():
    """cluster= without school=: students are the clusters; a reused comparison student is one
    cluster across sets (statsmodels on the stacked design, CR0)."""
    d = stacked(seed=4)
    X, _, k = stacked_design(d)
    res = school_effects(d, covariates=["pretest"], cluster="student_id", vcov="CR0", sd=1.0)
    fit = sm.WLS(d["posttest"].to_numpy(), X, weights=d["_weight"].to_numpy()).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(d["student_id"])[0], "use_correction": False})
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), fit.cov_params()[k : 2 * k, k : 2 * k], rtol=1e-8, atol=1e-14)


# ---------------------------------------------------------------- correlated meta-analysis
def _corr_data(k=12, seed=0, tau=0.2):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(k, k + 5)) * 0.05
    V = B @ B.T + np.diag(rng.uniform(0.005, 0.03, k))
    y = 0.1 + tau * rng.standard_normal(k) + np.linalg.cholesky(V) @ rng.standard_normal(k)
    return y, V


@pytest.mark.parametrize("method", ["REML", "DL", "PM", "FE"])
@pytest.mark.parametrize("hk", [False, True])
def test_diagonal_vcov_equals_independent_analysis(method, hk):
    rng = np.random.default_rng(5)
    y = rng.normal(0.1, 0.25, 15)
    se = rng.uniform(0.05, 0.2, 15)
    a = meta_analysis(y, se, method, hartung_knapp=hk)
    b = meta_analysis(y, se, method, hartung_knapp=hk, vcov=np.diag(se**2))
    for f in ("estimate", "se", "ci_low", "ci_high", "pvalue", "tau2", "i2", "h2", "q", "pi_low", "pi_high",
              "fe_estimate", "fe_se"):
        assert getattr(b, f) == pytest.approx(getattr(a, f), abs=1e-10, rel=1e-10, nan_ok=True), f
    np.testing.assert_allclose(b.tau2_ci, a.tau2_ci, atol=1e-10)
    np.testing.assert_allclose(b.weights, a.weights, atol=1e-10)
    sa, sb = empirical_bayes(y, se, a), empirical_bayes(y, se, b)
    np.testing.assert_allclose(sb.shrunk, sa.shrunk, atol=1e-10)
    np.testing.assert_allclose(sb.shrunk_sd, sa.shrunk_sd, atol=1e-10)
    np.testing.assert_allclose(sb.reliability, sa.reliability, atol=1e-10)
    if method != "FE":
        mod = rng.normal(size=15)
        ra = meta_regression(y, se, mod, method=method, knapp_hartung=hk)
        rb = meta_regression(y, se, mod, method=method, knapp_hartung=hk, vcov=np.diag(se**2))
        np.testing.assert_allclose(rb.coefficients.to_numpy(), ra.coefficients.to_numpy(), atol=1e-10)
        for f in ("tau2", "qe", "qm", "i2", "r2"):
            assert getattr(rb, f) == pytest.approx(getattr(ra, f), abs=1e-10), f


def test_correlated_reml_maximizes_the_restricted_likelihood_written_directly():
    y, V = _corr_data(seed=1)
    k = y.size
    one = np.ones(k)

    def neg_lr(t2):
        S = V + t2 * np.eye(k)
        Si = np.linalg.inv(S)
        mu = one @ Si @ y / (one @ Si @ one)
        r = y - mu
        return 0.5 * (np.linalg.slogdet(S)[1] + np.log(one @ Si @ one) + r @ Si @ r)

    opt = optimize.minimize_scalar(neg_lr, bounds=(0, 5), method="bounded", options={"xatol": 1e-12})
    m = meta_analysis(y, np.sqrt(np.diag(V)), "REML", vcov=V)
    assert m.tau2 == pytest.approx(opt.x, rel=1e-6, abs=1e-9)
    S = V + m.tau2 * np.eye(k)
    Si = np.linalg.inv(S)
    assert m.estimate == pytest.approx(one @ Si @ y / (one @ Si @ one), rel=1e-9)
    assert m.se == pytest.approx(1 / np.sqrt(one @ Si @ one), rel=1e-9)
    # DL (method of moments with the GLS projection) and generalized Q, written with matrices
    Vi = np.linalg.inv(V)
    P = Vi - np.outer(Vi @ one, one @ Vi) / (one @ Vi @ one)
    q = y @ P @ y
    assert m.q == pytest.approx(q, rel=1e-9)
    dl = meta_analysis(y, np.sqrt(np.diag(V)), "DL", vcov=V)
    assert dl.tau2 == pytest.approx(max(0.0, (q - (k - 1)) / np.trace(P)), rel=1e-9)
    y2, V2 = _corr_data(seed=1, tau=0.6)
    pm = meta_analysis(y2, np.sqrt(np.diag(V2)), "PM", vcov=V2)
    assert pm.tau2 > 0
    Sp = np.linalg.inv(V2 + pm.tau2 * np.eye(k))
    Pp = Sp - np.outer(Sp @ one, one @ Sp) / (one @ Sp @ one)
    assert y2 @ Pp @ y2 == pytest.approx(k - 1, rel=1e-8)
    # Hartung-Knapp and the prediction interval
    hk = meta_analysis(y, np.sqrt(np.diag(V)), "REML", vcov=V, hartung_knapp=True)
    r = y - m.estimate
    assert hk.se == pytest.approx(np.sqrt((r @ Si @ r) / (k - 1) / (one @ Si @ one)), rel=1e-8)
    half = stats.t.ppf(0.975, k - 2) * np.sqrt(m.tau2 + m.se**2)
    assert m.pi_high - m.estimate == pytest.approx(half, rel=1e-9)


def test_correlated_shrinkage_is_the_flat_prior_posterior():
    """BLUP and prediction-error covariance = posterior of θ under μ ~ N(0, s²), s² → ∞,
    computed from the joint Gaussian of (θ, y)."""
    y, V = _corr_data(seed=2, tau=0.25)
    k = y.size
    m = meta_analysis(y, np.sqrt(np.diag(V)), "REML", vcov=V)
    sh = empirical_bayes(y, np.sqrt(np.diag(V)), m)
    s2 = 1e7
    Stt = s2 * np.ones((k, k)) + m.tau2 * np.eye(k)
    Syy = Stt + V
    G = np.linalg.solve(Syy, Stt).T
    post_mean = G @ y
    post_cov = Stt - G @ Stt
    np.testing.assert_allclose(sh.shrunk, post_mean, atol=1e-5)
    np.testing.assert_allclose(sh.shrunk_sd, np.sqrt(np.diag(post_cov)), rtol=1e-4)


def test_correlated_metaregression_against_gls():
    y, V = _corr_data(seed=3)
    x = np.linspace(-1, 1, y.size)
    r = meta_regression(y, np.sqrt(np.diag(V)), x, vcov=V)
    S = V + r.tau2 * np.eye(y.size)
    X = np.column_stack([np.ones(y.size), x])
    g = sm.GLS(y, X, sigma=S).fit()
    np.testing.assert_allclose(r.coefficients["estimate"], g.params, rtol=1e-8)
    np.testing.assert_allclose(r.vcov, g.normalized_cov_params, rtol=1e-8)


def _shrunk(V, lam):
    D = np.diag(np.diag(V))
    return D + (1 - lam) * (V - D)


@pytest.mark.parametrize("hk", [False, True])
def test_pooled_se_adds_back_the_covariance_the_shrinkage_removed(hk):
    """With ``vcov_unshrunk=V0`` and ``vcov=V`` (V0's off-diagonal times 0.3), μ̂, τ², Q, the
    weights and I² are those of V alone, and SE² = (1'W1)⁻¹ (times the Hartung–Knapp factor
    r'Wr/(k − 1)) + w̃'(V0 − V)w̃, W = (V + τ̂²I)⁻¹, w̃ = W1/1'W1, written with matrices; the CI,
    p-value and prediction interval use that SE."""
    y, V0 = _corr_data(seed=6)
    k = y.size
    V0 = V0 + 0.004  # a component shared by every school (as shared comparison schools give)
    V = _shrunk(V0, 0.7)
    se = np.sqrt(np.diag(V))
    a = meta_analysis(y, se, "REML", vcov=V, hartung_knapp=hk)
    b = meta_analysis(y, se, "REML", vcov=V, hartung_knapp=hk, vcov_unshrunk=V0)
    for f in ("estimate", "tau2", "q", "i2", "h2", "fe_estimate", "fe_se"):
        assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-12), f
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-12)
    W = np.linalg.inv(V + b.tau2 * np.eye(k))
    wt = W.sum(axis=1) / W.sum()
    r = y - wt @ y
    base = 1 / W.sum() * ((r @ W @ r) / (k - 1) if hk else 1.0)
    extra = wt @ (V0 - V) @ wt
    assert extra > 0.05 * base  # the removed covariance matters in this example
    assert b.se2_offdiag == pytest.approx(extra, rel=1e-9)
    assert b.se == pytest.approx(np.sqrt(base + extra), rel=1e-9)
    assert a.se == pytest.approx(np.sqrt(base), rel=1e-9)
    dist = stats.t(k - 1) if hk else stats.norm
    assert b.ci_high - b.estimate == pytest.approx(dist.ppf(0.975) * b.se, rel=1e-9)
    assert b.pvalue == pytest.approx(2 * dist.sf(abs(b.estimate) / b.se), rel=1e-9)
    assert b.pi_high - b.estimate == pytest.approx(stats.t.ppf(0.975, k - 2) * np.sqrt(b.tau2 + b.se**2), rel=1e-9)
    assert "regularization of V removed" in b.summary()


def test_pooled_se_unchanged_when_nothing_or_negative_covariance_was_removed():
    """``vcov_unshrunk = vcov`` changes nothing (term 0); a removed off-diagonal whose quadratic
    form is negative is floored at 0, so the SE never falls below the model's."""
    y, V0 = _corr_data(seed=7)
    se = np.sqrt(np.diag(V0))
    a = meta_analysis(y, se, "REML", vcov=V0, hartung_knapp=True)
    b = meta_analysis(y, se, "REML", vcov=V0, hartung_knapp=True, vcov_unshrunk=V0)
    assert b.se2_offdiag == 0.0
    for f in ("estimate", "se", "ci_low", "ci_high", "pvalue", "pi_low", "pi_high"):
        assert getattr(b, f) == getattr(a, f), f
    D = np.diag(np.diag(V0))
    V_neg = 2 * D - V0  # the "unshrunk" matrix with every covariance of the opposite sign
    c = meta_analysis(y, se, "REML", vcov=D, hartung_knapp=True, vcov_unshrunk=V_neg)
    d = meta_analysis(y, se, "REML", vcov=D, hartung_knapp=True)
    assert c.se2_offdiag == 0.0 and c.se == d.se


def test_calibrated_pooled_se_adds_back_the_removed_covariance():
    """``calibrate(..., V_raw=V0)``: se_total² = the HK-scaled GLS variance at τ̂²_total plus
    w̃'(V0 − V)w̃ with that GLS's weights; the rest of the calibration is unchanged."""
    y, V0 = _corr_data(seed=8)
    V0 = V0 + 0.004
    yp, Vp = _corr_data(k=20, seed=9, tau=0.1)
    V = _shrunk(V0, 0.6)
    lab, df = [f"s{i}" for i in range(y.size)], np.full(y.size, 40.0)
    a = calibrate(lab, y, V, df, yp, Vp)
    b = calibrate(lab, y, V, df, yp, Vp, V_raw=V0)
    pd.testing.assert_frame_equal(a.schools, b.schools)
    assert b.tau2_total == a.tau2_total and b.mu_total == a.mu_total and b.pi == a.pi
    W = np.linalg.inv(V + b.tau2_total * np.eye(y.size))
    wt = W.sum(axis=1) / W.sum()
    r = y - b.mu_total
    want = (r @ W @ r) / (y.size - 1) / W.sum() + max(0.0, wt @ (V0 - V) @ wt)
    assert b.se_total**2 == pytest.approx(want, rel=1e-9)
    assert b.se_total > a.se_total


@pytest.mark.parametrize("hk", [False, True])
def test_metaregression_vcov_adds_back_the_covariance_the_shrinkage_removed(hk):
    """``meta_regression(..., vcov=V, vcov_unshrunk=V0)``: β̂, τ², QE, R² and I² are V's alone;
    Var(β̂) = (X'Σ⁻¹X)⁻¹ (times the Knapp–Hartung factor) + the positive part of L(V0 − V)L',
    L = (X'Σ⁻¹X)⁻¹X'Σ⁻¹, Σ = V + τ̂²I, written in the unrotated space; SEs, CIs, p and QM use it."""
    y, V0 = _corr_data(k=16, seed=10)
    k = y.size
    V0 = V0 + 0.004
    V = _shrunk(V0, 0.7)
    se = np.sqrt(np.diag(V))
    x = np.cos(np.arange(k))
    a = meta_regression(y, se, x, vcov=V, knapp_hartung=hk)
    b = meta_regression(y, se, x, vcov=V, knapp_hartung=hk, vcov_unshrunk=V0)
    for f in ("tau2", "qe", "r2", "i2", "df"):
        assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-12), f
    np.testing.assert_allclose(b.coefficients["estimate"], a.coefficients["estimate"], rtol=1e-12)
    X = np.column_stack([np.ones(k), x])
    Si = np.linalg.inv(V + b.tau2 * np.eye(k))
    A = np.linalg.inv(X.T @ Si @ X)
    L = A @ X.T @ Si
    r = y - X @ (L @ y)
    base = A * ((r @ Si @ r) / (k - 2) if hk else 1.0)
    e, E = np.linalg.eigh(L @ (V0 - V) @ L.T)
    extra = (E * np.clip(e, 0, None)) @ E.T
    assert extra[0, 0] > 0.05 * base[0, 0]  # the shared component moves the intercept
    np.testing.assert_allclose(b.vcov_offdiag, extra, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(b.vcov, base + extra, rtol=1e-8)
    np.testing.assert_allclose(a.vcov, base, rtol=1e-8)
    dist = stats.t(k - 2) if hk else stats.norm
    c = b.coefficients
    np.testing.assert_allclose(c["ci_high"] - c["estimate"], dist.ppf(0.975) * np.sqrt(np.diag(base + extra)), rtol=1e-8)
    np.testing.assert_allclose(c["pvalue"], 2 * dist.sf(np.abs(c["estimate"]) / np.sqrt(np.diag(base + extra))), rtol=1e-8)
    qm = c["estimate"].iloc[1] ** 2 / (base + extra)[1, 1]
    assert b.qm == pytest.approx(qm, rel=1e-8)
    assert "regularization of V removed" in b.summary() and "regularization" not in a.summary()


def test_metaregression_offdiag_term_is_the_pooled_se_term_without_moderators():
    """With no moderators the added variance is meta_analysis's w̃'(V0 − V)w̃; with V0 = V nothing
    changes; a removed covariance of the wrong sign adds nothing (its eigenvalues floored)."""
    y, V0 = _corr_data(k=14, seed=11)
    V0 = V0 + 0.004
    V = _shrunk(V0, 0.5)
    se = np.sqrt(np.diag(V))
    none = pd.DataFrame(index=range(y.size))
    r = meta_regression(y, se, none, vcov=V, vcov_unshrunk=V0, knapp_hartung=True)
    m = meta_analysis(y, se, "REML", vcov=V, vcov_unshrunk=V0, hartung_knapp=True)
    assert r.vcov_offdiag[0, 0] == pytest.approx(m.se2_offdiag, rel=1e-9)
    assert r.coefficients["se"].iloc[0] == pytest.approx(m.se, rel=1e-9)
    x = np.linspace(0, 1, y.size)
    same = meta_regression(y, se, x, vcov=V, vcov_unshrunk=V)
    plain = meta_regression(y, se, x, vcov=V)
    np.testing.assert_allclose(same.vcov, plain.vcov, rtol=1e-12, atol=1e-16)
    D = np.diag(np.diag(V0))
    neg = meta_regression(y, np.sqrt(np.diag(D)), x, vcov=D, vcov_unshrunk=2 * D - V0)
    pos = meta_regression(y, np.sqrt(np.diag(D)), x, vcov=D)
    assert np.all(np.diag(neg.vcov) >= np.diag(pos.vcov) * (1 - 1e-12))
    with pytest.raises(DataError, match="vcov_unshrunk needs vcov"):
        meta_regression(y, se, x, vcov_unshrunk=V0)


def test_vcov_input_errors():
    y, V = _corr_data(k=5)
    se = np.sqrt(np.diag(V))
    with pytest.raises(DataError, match="5×5"):
        meta_analysis(y, se, vcov=V[:4, :4])
    with pytest.raises(DataError, match="diagonal"):
        meta_analysis(y, se * 1.1, vcov=V)
    bad = V.copy()
    bad[0, 1] += 0.01
    with pytest.raises(DataError, match="symmetric"):
        meta_analysis(y, se, vcov=bad)
    with pytest.raises(DataError, match="vcov_unshrunk needs vcov"):
        meta_analysis(y, se, vcov_unshrunk=V)
    with pytest.raises(DataError, match="diagonal of vcov_unshrunk"):
        meta_analysis(y, se, vcov=V, vcov_unshrunk=V * 1.1)


def _small_schools(seed=4):
    """Comparison schools of 1 to 8 students, three more covariates (p = 6 per set): cells of
    one row, of fewer rows than columns (2–5) and of more, in sets sharing schools."""
    rng = np.random.default_rng(seed)
    d = stacked(n_pl=5, n_comp=10, per_set=4, seed=seed)
    for c in ("x1", "x2", "x3"):
        d[c] = rng.normal(size=len(d))
    size = d[d.treatment == 0].groupby("school_id")["student_id"].transform(lambda s: pd.factorize(s)[0])
    cut = d.loc[d.treatment == 0, "school_id"].map(dict(zip(sorted(d.school_id.unique()), rng.integers(1, 9, 99))))
    return d.drop(index=size.index[size.to_numpy() >= cut.to_numpy()]).reset_index(drop=True)


def _design(d, covs):
    """The stacked design with per-set intercept, treatment and covariate slopes."""
    sets = pd.factorize(d["_pl_school"])[0]
    k = sets.max() + 1
    ind = (sets[:, None] == np.arange(k)[None, :]).astype(float)
    cols = [ind, ind * d["treatment"].to_numpy()[:, None]]
    cols += [ind * (d[c] - d[c].mean()).to_numpy()[:, None] for c in covs]
    cl = np.where(d["treatment"] == 1, "T" + d["student_id"], d["school_id"])
    return np.hstack(cols), cl, k


@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 15])
def test_joint_cr2_by_cell_size_and_in_blocks_equals_the_direct_computation(monkeypatch, chunk):
    """Multi-row cells of fewer rows than columns go through their r × r leverage, larger ones
    through the p × p form, in blocks of ``_CHUNK`` cells (and the quadratic forms in blocks of
    rows): blocks of 1, 2, 5 cells and one block give the direct n×n CR2, its df and the
    off-diagonal variance behind λ."""
    from pleval.heterogeneity import _joint

    covs = ["pretest", "x1", "x2", "x3"]
    d = _small_schools()
    X, cl, k = _design(d, covs)
    sizes = pd.Series(cl).groupby([d["_pl_school"].to_numpy(), cl]).size()
    assert (sizes == 1).any() and ((sizes > 1) & (sizes < 6)).sum() >= 5 and (sizes >= 6).sum() >= 5  # every kind
    monkeypatch.setattr(_joint, "_CHUNK", chunk)
    res = school_effects(d, covariates=covs, cluster="student_id", school="school_id", vcov="CR2", sd=1.0,
                         cr2="transformed")
    V, dfs = direct_cr2(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-7)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_joint_cr2_in_blocks_of_cells_equals_the_direct_computation(monkeypatch, chunk):
    """The multi-row cells (and the rows of the quadratic forms) go in blocks of ``_CHUNK``:
    blocks of 1, 2 and 5 cells give the direct n×n CR2 and its df, as one block does."""
    from pleval.heterogeneity import _joint

    d = stacked(n_pl=4, n_comp=6, per_set=3, seed=3)
    X, cl, k = stacked_design(d)
    whole = _se(d, "CR2")
    monkeypatch.setattr(_joint, "_CHUNK", chunk)
    res = _se(d, "CR2")
    V, dfs = direct_cr2(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-7)
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), whole.vcov_raw["all"].to_numpy(), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(res.table["df"], whole.table["df"], rtol=1e-10)


def _cells(rng, G=12, n_cl=40, n=600):
    """Cells of G groups over n_cl clusters: a few clusters serve most groups (the dense path of
    ``_cross_products``), the rest a group or two (the sparse path)."""
    from pleval.heterogeneity._joint import JointCells

    wide = rng.random(n) < 0.5
    cluster = np.where(wide, rng.integers(0, 4, n), rng.integers(4, n_cl, n))
    group = rng.integers(0, G, n)
    key = pd.unique(group.astype(np.int64) * n_cl + cluster)  # one cell per (group, cluster)
    group, cluster = (key // n_cl).astype(np.intp), (key % n_cl).astype(np.intp)
    return JointCells(phi=rng.normal(size=key.size), group=group, cluster=cluster,
                      df=np.full(G, 5.0), n_clusters=np.bincount(group, minlength=G).astype(float))


def test_joint_covariance_within_parts_is_the_whole_matrix_blocks(monkeypatch):
    """``parts``: V, its entries' variances and the df within each part are those of the whole
    matrix (to rounding), the entries between parts are not formed (NaN), and each product is
    over one part's groups only."""
    from pleval.heterogeneity import _joint

    rng = np.random.default_rng(11)
    G = 12
    cells = _cells(rng, G=G)
    ok = np.ones(G, dtype=bool)
    ok[5] = False
    parts = rng.permutation(np.arange(G) % 3)
    whole = _joint.joint_from_cells(cells, G, 40, ok)
    sizes = []
    products = _joint._cross_products
    monkeypatch.setattr(_joint, "_cross_products", lambda *a: sizes.append(a[3]) or products(*a))
    split = _joint.joint_from_cells(cells, G, 40, ok, parts)
    assert sizes == [4, 4, 4]
    same = parts[:, None] == parts[None, :]
    assert np.all(np.abs(whole.vcov[~same & ok[:, None] & ok[None, :]]) > 0)  # clusters span parts
    for a, b in ((split.vcov, whole.vcov), (split.vcov_var, whole.vcov_var)):
        assert np.isnan(a[~same]).all()
        np.testing.assert_allclose(a[same], b[same], rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(split.df, whole.df)


@pytest.mark.parametrize("sorted_groups,chunk", [(True, None), (False, None), (False, 48)])
def test_cross_products_are_those_of_the_dense_score_matrix(sorted_groups, chunk, monkeypatch):
    """``_cross_products`` (sparse rows for clusters in few groups, dense blocks for the others)
    gives ``ΦΦ'``, ``(Φ∘Φ)(Φ∘Φ)'`` and the counts of clusters with a nonzero φ in both groups
    of the dense k × clusters matrix Φ, exact zeros in φ (leverage-one cells) not counted,
    whatever the order of the cells; with blocks of a few clusters (``_CHUNK // 16``), several
    blocks and a last one narrower, the block matrices reused, exactly the one-block result."""
    from pleval.heterogeneity import _joint

    rng = np.random.default_rng(13)
    G, n_cl = 40, 400
    cells = _cells(rng, G=G, n_cl=n_cl)
    phi = np.where(rng.random(cells.phi.size) < 0.1, 0.0, cells.phi)
    order = np.argsort(cells.group, kind="stable") if sorted_groups else rng.permutation(phi.size)
    phi, group, cluster = phi[order], cells.group[order], cells.cluster[order]
    P = np.zeros((G, n_cl))
    P[group, cluster] = phi
    V, S2, m = _joint._cross_products(phi, group, cluster, G, n_cl)
    per = np.bincount(cluster, minlength=n_cl)
    if chunk is not None:
        monkeypatch.setattr(_joint, "_CHUNK", chunk)
        width = chunk // 16
        assert (per * 8 > G).sum() > width and (per * 8 > G).sum() % width  # blocks, the last narrower
        for got, want in zip(_joint._cross_products(phi, group, cluster, G, n_cl), (V, S2, m)):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(V, P @ P.T, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(S2, (P * P) @ (P * P).T, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(m, (P != 0).astype(float) @ (P != 0).astype(float).T)
    cell = np.zeros((G, n_cl))
    cell[group, cluster] = 1.0
    assert (m < cell @ cell.T).any()  # a zero φ is not counted
    assert (per * 8 > G).any() and ((per > 0) & (per * 8 <= G)).any()  # both paths


def test_a_score_zero_but_for_rounding_is_not_a_shared_cluster():
    """A cell whose terms cancel has φ exactly 0 in one row order and 1e-17 of the largest in
    another. Before, the second counted as a shared cluster: the counts m, Var̂(V) and the
    off-diagonal shrinkage λ moved (0.8775 vs 0.8798 in a placebo round of a shuffled comparison
    pool, school-table columns by 8e-7). Both now give the same m and Var̂(V)."""
    from pleval.heterogeneity import _joint

    rng = np.random.default_rng(5)
    G, n_cl = 12, 60
    cells = _cells(rng, G=G, n_cl=n_cl)
    exact = np.where(rng.random(cells.phi.size) < 0.1, 0.0, cells.phi)
    noisy = np.where(exact == 0.0, 1e-17 * np.abs(exact).max() * rng.choice([-1.0, 1.0], exact.size), exact)
    a = _joint._entry_variances(*_joint._cross_products(exact, cells.group, cells.cluster, G, n_cl))
    b = _joint._entry_variances(*_joint._cross_products(noisy, cells.group, cells.cluster, G, n_cl))
    np.testing.assert_allclose(b[0], a[0], rtol=1e-13, atol=1e-30)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-13, atol=1e-30)
    assert _joint.regularize(*b)[1] == _joint.regularize(*a)[1]


@pytest.mark.parametrize("with_parts", [False, True])
def test_joint_covariance_of_blocks_of_cells_is_that_of_all_cells(with_parts):
    """Cells passed as blocks of consecutive groups (as the school-effects fits make them, each
    block's groups' df and cluster counts its own) give exactly the matrices, df and counts of the
    same cells in one :class:`JointCells`, with and without ``parts``."""
    from pleval.heterogeneity import _joint

    rng = np.random.default_rng(12)
    G = 12
    cells = _cells(rng, G=G)
    order = np.argsort(cells.group, kind="stable")  # the blocks' cells come group by group
    cells = _joint.JointCells(phi=cells.phi[order], group=cells.group[order], cluster=cells.cluster[order],
                              df=rng.uniform(2, 9, G), n_clusters=cells.n_clusters)
    ok = np.ones(G, dtype=bool)
    ok[3] = False
    parts = rng.permutation(np.arange(G) % 2) if with_parts else None
    whole = _joint.joint_from_cells(cells, G, 40, ok, parts)
    blocks = []
    for g0, g1 in ((0, 5), (5, 6), (6, G)):
        m = (cells.group >= g0) & (cells.group < g1)
        blocks.append(_joint.JointCells(phi=cells.phi[m], group=cells.group[m], cluster=cells.cluster[m],
                                        df=cells.df[g0:g1], n_clusters=cells.n_clusters[g0:g1]))
    split = _joint.joint_from_cells(blocks, G, 40, ok, parts)
    narrow = _joint.joint_from_cells([_joint.JointCells(phi=b.phi, group=b.group.astype(np.int32),
                                                        cluster=b.cluster.astype(np.int32), df=b.df,
                                                        n_clusters=b.n_clusters) for b in blocks], G, 40, ok, parts)
    for f in ("vcov", "vcov_var", "df", "n_clusters"):
        np.testing.assert_array_equal(getattr(split, f), getattr(whole, f), err_msg=f)
        np.testing.assert_array_equal(getattr(narrow, f), getattr(whole, f), err_msg=f)  # codes in 32 bits
    assert np.isfinite(split.vcov[np.ix_(ok, ok)]).any() and np.isnan(split.df[3])


@pytest.mark.parametrize("cr2", ["transformed", "clubsandwich"])
def test_school_effects_keep_the_cells_codes_in_32_bits(cr2, monkeypatch):
    """The cells' group and cluster codes, held from the fits to the cross-products, are int32
    (both CR2 forms' paths)."""
    import importlib

    module = importlib.import_module("pleval.heterogeneity.school_effects")
    seen = []
    inner = module.joint_from_cells
    monkeypatch.setattr(module, "joint_from_cells", lambda cells, *a: seen.extend(cells) or inner(cells, *a))
    d = stacked(seed=3)
    d["w"] = np.where(d["treatment"] == 1, 1.0, np.random.default_rng(3).uniform(0.5, 2.0, len(d)))
    school_effects(d, covariates=["pretest"], cluster="student_id", school="school_id", vcov="CR2", sd=1.0,
                   cr2=cr2, weight="w")
    assert seen and all(c.group.dtype == np.int32 and c.cluster.dtype == np.int32 for c in seen)


def test_school_effects_by_subject_pool_each_subject_on_its_own_block():
    """With two subjects sharing comparison schools, each subject's joint covariance is that
    subject's block of the whole matrix (what a fit of that subject alone gives)."""
    d = stacked(n_pl=4, n_comp=6, per_set=3, seed=5)
    two = pd.concat([d.assign(subject="math"), d.assign(subject="reading",
                                                        posttest=d["posttest"] + np.random.default_rng(1).normal(size=len(d)))],
                    ignore_index=True)
    res = _se(two, "CR2", by="subject")
    for s in ("math", "reading"):
        alone = _se(two[two["subject"] == s], "CR2", by="subject")
        np.testing.assert_allclose(res.vcov_raw[s].to_numpy(), alone.vcov_raw[s].to_numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(res.vcov[s].to_numpy(), alone.vcov[s].to_numpy(), rtol=1e-12, atol=1e-15)


def test_calibration_and_pooling_decompose_the_covariance_once(monkeypatch):
    """``calibrate`` and ``pool_schools`` take one eigen-decomposition of the k × k covariance
    and reuse it (``V + cI`` is ``(λ + c, Q)``): the same figures as decomposing each matrix,
    to rounding."""
    from pleval.heterogeneity import _predictive
    from pleval.heterogeneity.calibration import calibrate, program_tau2_ci
    from pleval.heterogeneity.school_inference import pool_schools
    from pleval.heterogeneity.shrinkage import blup

    y, V0 = _corr_data(seed=8)
    V = _shrunk(V0 + 0.004, 0.6)
    yp, Vp = _corr_data(k=20, seed=9, tau=0.1)
    lab, df = [f"s{i}" for i in range(y.size)], np.full(y.size, 40.0)
    eigh, sizes = np.linalg.eigh, []
    monkeypatch.setattr(np.linalg, "eigh", lambda a, *r, **kw: sizes.append(np.shape(a)) or eigh(a, *r, **kw))
    c = calibrate(lab, y, V, df, yp, Vp, V_raw=V0 + 0.004)
    assert sizes.count(V.shape) == 1
    sizes.clear()
    m, sh = pool_schools(y, np.sqrt(np.diag(V)), V, labels=lab)
    assert sizes.count(V.shape) == 1
    monkeypatch.setattr(np.linalg, "eigh", eigh)
    # each piece against its own decomposition of the matrix it stands for
    t2p, t2 = c.placebo.tau2, c.tau2_program
    I = np.eye(y.size)
    assert c.tau2_program_ci == pytest.approx(program_tau2_ci(y, V, t2p), rel=1e-10, abs=1e-14)
    want = blup(y, V + t2p * I, t2, c.pl.tau2_se**2 + c.placebo.tau2_se**2)
    np.testing.assert_allclose(c.schools["program_shrunk"], want[2], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(c.schools["program_shrunk_sd"], want[3], rtol=1e-10)
    nodes = _predictive.variance_nodes(y, V, yp, Vp)
    assert c.pi == pytest.approx(_predictive.predictive(y, V, *nodes)[0], rel=1e-12)
    np.testing.assert_allclose(c.schools["shrunk_total"], _predictive.shrinkage(y, V, *nodes).mean, rtol=1e-12)
    W = np.linalg.inv(V + c.tau2_total * I)
    wt = W.sum(axis=1) / W.sum()
    r = y - c.mu_total
    se2 = (r @ W @ r) / (y.size - 1) / W.sum() + max(0.0, wt @ (V0 + 0.004 - V) @ wt)
    assert c.se_total**2 == pytest.approx(se2, rel=1e-12)
    m2 = meta_analysis(y, np.sqrt(np.diag(V)), vcov=V, hartung_knapp=True, labels=lab)
    sh2 = empirical_bayes(y, np.sqrt(np.diag(V)), m2, labels=lab, tau2_uncertainty=True)
    assert (m.estimate, m.se, m.tau2) == (m2.estimate, m2.se, m2.tau2)
    np.testing.assert_array_equal(sh.shrunk, sh2.shrunk)
    np.testing.assert_array_equal(sh.shrunk_sd, sh2.shrunk_sd)


@pytest.mark.parametrize("scale", [0.0, 0.05, 0.5, 50.0])
def test_regularize_is_the_convex_combination_to_the_last_bit(scale):
    """regularize's V* is ``D + (1 − λ)(V − D)`` bit for bit (off the diagonal (1 − λ)V_st, a
    negative entry times 0 a +0 as in the sum; the diagonal kept), with
    ``λ = min(1, Σ_{s≠t} Var̂(V_st) / Σ_{s≠t} V_st²)``, from no shrinkage to full."""
    from pleval.heterogeneity._joint import regularize

    rng = np.random.default_rng(21)
    A = rng.normal(0, 1, (30, 30))
    V = A @ A.T / 30
    V_var = scale * V**2 * rng.uniform(0.5, 1.5, V.shape)
    V_var = (V_var + V_var.T) / 2
    got, lam = regularize(V, V_var)
    off = ~np.eye(30, dtype=bool)
    assert lam == min(1.0, float(np.sum(V_var[off])) / float(np.sum(V[off] ** 2)))
    assert (lam == 0.0) == (scale == 0.0) and (lam == 1.0) == (scale == 50.0)
    D = np.diag(np.diag(V))
    want = D + (1.0 - lam) * (V - D)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_entry_variances_in_place_are_the_formula():
    """``_entry_variances`` (in place on one k × k array) gives ``(m·S2 − V²)/(m − 1)`` where more
    than one cluster is shared, ``S2`` where one or none is (and where m is undefined), bit for bit."""
    from pleval.heterogeneity._joint import _entry_variances

    rng = np.random.default_rng(5)
    V, S2 = rng.normal(size=(40, 40)), rng.random((40, 40))
    m = rng.integers(0, 5, (40, 40)).astype(float)
    m[0, 0], V[1, 1] = np.nan, np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.where(m > 1, (m * S2 - V**2) / (m - 1), S2)
    got_V, got = _entry_variances(V, S2, m.copy())
    assert got_V is V and {0.0, 1.0, 2.0, 4.0} <= set(np.unique(m[1:, 1:]))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("chunk", [None, 48])
def test_cross_products_in_threads_are_those_of_one_thread(chunk, monkeypatch):
    """``_cross_products``' lanes (V, S2 and the counts in two halves of each block's clusters) in
    two threads give one thread's matrices bit for bit, with one block of clusters and with
    several (the last narrower); the dense blocks' updates by :func:`_joint._syrk` are those of
    ``scipy.linalg.blas`` bit for bit."""
    from scipy.linalg import blas

    from pleval import _workers
    from pleval.heterogeneity import _joint

    if chunk is not None:
        monkeypatch.setattr(_joint, "_CHUNK", chunk)
    rng = np.random.default_rng(21)
    G, n_cl = 40, 400
    cells = _cells(rng, G=G, n_cl=n_cl)
    args = (cells.phi, cells.group, cells.cluster, G, n_cl)
    monkeypatch.setattr(_workers, "compute_threads", lambda: 1)
    one = _joint._cross_products(*args)
    monkeypatch.setattr(_workers, "compute_threads", lambda: 2)
    two = _joint._cross_products(*args)
    for a, b in zip(two, one):
        np.testing.assert_array_equal(a, b)
    assert np.count_nonzero(one[2] - np.diag(np.diag(one[2])))  # clusters shared
    for dtype, ref in ((np.float64, blas.dsyrk), (np.float32, blas.ssyrk)):
        A = np.asfortranarray(rng.normal(size=(30, 7)).astype(dtype))
        C = np.asfortranarray(rng.normal(size=(30, 30)).astype(dtype))
        want = ref(1.0, A, beta=1.0, c=C.copy(order="F"), overwrite_c=1)
        _joint._syrk(A, C)
        np.testing.assert_array_equal(C, want)


@pytest.mark.slow
def test_pool_schools_intervals_cover_with_correlated_schools():
    """``pool_schools`` (REML, Hartung–Knapp, V + τ²I) on 12 schools whose estimates share a
    known covariance (five fixed designs: SEs 0.16–0.30, correlations of SD 0.17 reaching ±0.5),
    τ = 0.1, μ = 0.1: the pooled 95% CI covers μ within 3 binomial SEs of 0.95 (from below:
    Hartung–Knapp's interval may run wide with few schools). The shrunken intervals cover the
    schools' true effects on average at least 93% up to 3 Monte Carlo SEs, the lower end of the
    criterion of ``test_heterogeneity_predictive``, and at most 99%: with 12 schools this noisy τ̂²
    is 0 in about a third of the studies and Prasad–Rao's g3 (REML information for Var(τ̂²)) errs
    on the safe side, 97.8% at full size (93.8% before 2026-12-05, with g3 the squared
    derivative at the data)."""
    from pleval.heterogeneity.school_inference import pool_schools

    rng = np.random.default_rng(20261205)
    reps, k, mu, tau = sim_reps(1600), 12, 0.1, 0.1
    designs = [_corr_data(k, seed=s)[1] for s in range(5)]
    pooled, shrunk = 0, []
    for r in range(reps):
        V = designs[r % 5]
        theta = mu + tau * rng.standard_normal(k)
        y = theta + np.linalg.cholesky(V) @ rng.standard_normal(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            m, sh = pool_schools(y, np.sqrt(np.diag(V)), V)
        pooled += m.ci_low <= mu <= m.ci_high
        shrunk.append(np.mean((sh.ci_low <= theta) & (theta <= sh.ci_high)))
    assert pooled / reps >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / reps), pooled / reps
    mean, se = np.mean(shrunk), np.std(shrunk, ddof=1) / np.sqrt(reps)
    assert 0.93 - 3 * se <= mean <= 0.99, (mean, se)


@pytest.mark.parametrize("spread", [1, 3, 4, 5, 1000])
def test_first_codes_number_keys_as_factorize(spread):
    """``_joint._first_codes`` numbers keys in order of first appearance, with the keys so numbered,
    as ``pd.factorize`` does: by a table over the keys' range (at most four per key) or, beyond it, by
    ``pd.factorize`` itself; keys in runs of one stratum as the cells' keys are, and in any order."""
    from pleval.heterogeneity._joint import _first_codes

    rng = np.random.default_rng(spread)
    n = 5000
    bound = spread * n
    for key in (rng.integers(0, bound, n), np.sort(rng.integers(0, bound // 50, n)) * 50 + rng.integers(0, 50, n),
                np.full(n, bound - 1), np.zeros(0, dtype=np.int64)):
        codes, uniq = _first_codes(key.astype(np.int64), bound)
        ref_codes, ref_uniq = pd.factorize(key.astype(np.int64))
        np.testing.assert_array_equal(codes, ref_codes)
        np.testing.assert_array_equal(uniq, ref_uniq)
