"""Omitted-variable bounds (pleval.sensitivity.ovb): sensemakr's published darfur example, exact
identities against a refit with the confounder included, the cluster-robust adaptation, and a
simulation with a hidden confounder of known strength."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pleval.errors import DataError
from pleval.inference import ols
from pleval.matching._design import encode
from pleval.sensitivity.ovb import Gram, benchmark_r2, omitted_variable_bounds, ovb_from_design, robustness_value

from .conftest import REFERENCE, sim_reps

DARFUR_COVS = ["directlyharmed", "age", "farmer_dar", "herder_dar", "pastvoted", "hhsize_darfur", "female", "village"]


@pytest.fixture(scope="module")
def darfur():
    df = pd.read_csv(REFERENCE / "darfur.csv")
    enc = encode(df, DARFUR_COVS, categorical=("village",), intercept=True)
    return df["peacefactor"].to_numpy(float), enc


def test_darfur_published(darfur):
    """Cinelli & Hazlett (2020) / sensemakr README: the darfur example to the published digits
    (the bounds to the full precision of sensemakr's own test values)."""
    y, enc = darfur
    r = ovb_from_design(y, enc.X, enc.names, "directlyharmed", benchmarks={"female": ["female"]}, kd=[1, 2, 3])
    assert r.dof == 783
    assert round(r.estimate, 5) == 0.09732
    assert round(r.se, 5) == 0.02326
    assert round(r.t, 5) == 4.18445
    assert round(r.r2yd_x, 5) == 0.02187
    assert round(r.rv_q, 5) == 0.13878
    assert round(r.rv_qa, 5) == 0.07626
    b = r.bounds
    assert list(b["bound"]) == ["1x female", "2x female", "3x female"]
    expected = {  # sensemakr tests/testthat/test-02-darfur.R
        "r2dz_x": [0.00916428667504862, 0.0183285733500972, 0.0274928600251459],
        "r2yz_dx": [0.12464092303637, 0.249324064199975, 0.374050471038094],
        "estimate": [0.0752202712144491, 0.0529151723844518, 0.0303960234641548],
        "se": [0.0218733277437572, 0.0203500620779637, 0.0186700648170924],
        "t": [3.43890386024675, 2.60024623913809, 1.62806202131271],
    }
    for col, vals in expected.items():
        np.testing.assert_allclose(b[col], vals, rtol=1e-7, atol=1e-8, err_msg=col)
    # the README's printed interval (critical value t(0.975, dof − 1), as sensemakr computes it today;
    # the long-digit CI values in sensemakr's test file were made with t(0.975, dof) and differ at 1e-7)
    assert list(b["ci_low"].round(4)) == [0.0323, 0.0130, -0.0063]
    assert list(b["ci_high"].round(4)) == [0.1182, 0.0929, 0.0670]


def test_darfur_negative_treatment(darfur):
    """Flipping the treatment's sign flips the adjusted estimates and leaves the R² alone."""
    y, enc = darfur
    X = enc.X.copy()
    X[:, enc.names.index("directlyharmed")] *= -1
    r = ovb_from_design(y, X, enc.names, "directlyharmed", benchmarks={"female": ["female"]})
    np.testing.assert_allclose(r.bounds["estimate"], [-0.0752202712144491, -0.0529151723844518, -0.0303960234641548], rtol=1e-7)
    assert round(r.rv_qa, 5) == 0.07626


def _sim(rng, n=3000, G=60, tau=0.3, gz=0.8, dz=0.6, cluster_sd=0.5):
    """Clustered data with a hidden student-level confounder Z (Z drives both D and Y)."""
    g = rng.integers(0, G, n)
    x1 = rng.normal(size=n) + 0.5 * rng.normal(size=G)[g]
    x2 = rng.binomial(1, 0.4, n).astype(float)
    z = rng.normal(size=n)
    d = (0.5 * x1 + dz * z + rng.normal(size=n) > 0).astype(float)
    y = tau * d + x1 + 0.3 * x2 + gz * z + cluster_sd * rng.normal(size=G)[g] + rng.normal(size=n)
    X = np.column_stack([np.ones(n), d, x1, x2])
    return y, X, z, g


def test_bias_identity_exact_against_refit():
    """With the sample partial R² of Z, the adjusted estimate equals the coefficient of the fit
    that includes Z, and the classical adjusted SE equals that fit's classical SE (exact:
    Cinelli & Hazlett 2020, eq. 11-14), with and without weights."""
    rng = np.random.default_rng(1)
    y, X, z, g = _sim(rng)
    names = ["const", "d", "x1", "x2"]
    for w in (None, rng.uniform(0.2, 2.0, len(y))):
        r = ovb_from_design(y, X, names, "d", weights=w)
        full = np.column_stack([X, z])
        gm = Gram(y, full, w)
        r2dz = gm.partial_r2(1, [4], [0, 2, 3])
        r2yz = gm.partial_r2(gm.y, [4], [0, 1, 2, 3])
        fit = ols(y, full, weights=w, vcov="classical")
        assert fit.params[1] < r.estimate  # Z biases the estimate upwards: reduce=True removes it
        adj = r.adjusted(r2dz, r2yz)
        np.testing.assert_allclose(adj["estimate"], fit.params[1], rtol=1e-9)
        np.testing.assert_allclose(adj["se"], fit.se[1], rtol=1e-9)
        short = ols(y, X, weights=w, vcov="classical")
        np.testing.assert_allclose([r.estimate, r.se_classical], [short.params[1], short.se[1]], rtol=1e-9)


def test_cluster_robust_adaptation():
    """CR2: the point quantities do not depend on the covariance; the adjusted SE is κ times the
    classical one (κ = CR2/classical SE of the fit without Z), which approximates the CR2 SE of
    the refit with Z; at RV_{q,α} the adjusted CR2 interval just reaches zero."""
    rng = np.random.default_rng(2)
    y, X, z, g = _sim(rng)
    names = ["const", "d", "x1", "x2"]
    fit = ols(y, X, clusters=g, vcov="CR2", names=names)
    b, se, df, _ = fit.coef("d")
    classical = ovb_from_design(y, X, names, "d")
    robust = ovb_from_design(y, X, names, "d", se=se, df=df)
    for k in ("estimate", "r2yd_x", "rv_q", "se_classical", "dof"):
        assert getattr(robust, k) == pytest.approx(getattr(classical, k), rel=1e-12)
    assert robust.kappa == pytest.approx(se / classical.se_classical)
    # a wider robust CI (κ > 1) takes a weaker confounder to reach non-significance, and vice versa
    assert robust.kappa != pytest.approx(1.0, abs=0.02)
    assert (robust.rv_qa - classical.rv_qa) * (robust.kappa - 1.0) < 0
    # at RV_{q,α} (equal strengths) the adjusted CR2 interval's lower end is zero
    a = robust.adjusted(robust.rv_qa, robust.rv_qa)
    assert a["ci_low"] == pytest.approx(0.0, abs=1e-10)
    a0 = robust.adjusted(robust.rv_q, robust.rv_q)
    assert a0["estimate"] == pytest.approx(0.0, abs=1e-10)
    # against the refit with Z: the design effect barely moves when a student-level Z is added
    full = np.column_stack([X, z])
    gm = Gram(y, full)
    adj = robust.adjusted(gm.partial_r2(1, [4], [0, 2, 3]), gm.partial_r2(gm.y, [4], [0, 1, 2, 3]))
    refit = ols(y, full, clusters=g, vcov="CR2")
    assert adj["se"] == pytest.approx(refit.se[1], rel=0.10)


def test_robustness_value_formulas():
    """RV closed forms: the confounder at (RV, RV) exactly removes q·|estimate|; the extreme
    case (f_q > 1/f*) uses (f_q² − f*²)/(1 + f_q²); not significant -> 0."""
    r = omitted_variable_bounds(2.0, 0.5, 400, q=0.5)
    a = r.adjusted(r.rv_q, r.rv_q)
    assert a["estimate"] == pytest.approx(1.0, rel=1e-10)
    assert robustness_value(1.0, 100, alpha=0.05) == 0.0
    t, dof = 60.0, 100
    fq, fc = t / np.sqrt(dof), 1.98 / np.sqrt(99)
    from scipy import stats

    fc = stats.t.ppf(0.975, 99) / np.sqrt(99)
    assert fq > 1 / fc
    assert robustness_value(t, dof, alpha=0.05) == pytest.approx((fq**2 - fc**2) / (1 + fq**2))


def test_benchmark_multiple_to_zero():
    """multiple_to_zero solves adjusted estimate = 0 along k_D = k_Y = k."""
    r = omitted_variable_bounds(0.3, 0.1, 1000, benchmarks={"x": (0.02, 0.05)})
    k = r.multiple_to_zero("x")
    r2dz, r2yz = benchmark_r2(0.02, 0.05, k)
    assert r.adjusted(r2dz, r2yz)["estimate"] == pytest.approx(0.0, abs=1e-8)
    assert r.multiple_to_zero("x") > 1


def test_bad_input():
    with pytest.raises(DataError):
        omitted_variable_bounds(np.nan, 0.1, 100)
    with pytest.raises(DataError, match="all of the treatment"):
        benchmark_r2(0.4, 0.1, 2.0)
    # a multiple of 0 or below is no confounder (a negative one leaked a sqrt warning and an error about R²)
    for kd in ([0.0], [-1.0, 2.0]):
        with pytest.raises(DataError, match="kd: the multiples of a benchmark's strength must be positive"):
            omitted_variable_bounds(0.3, 0.1, 1000, benchmarks={"x": (0.02, 0.05)}, kd=kd)
    with pytest.raises(DataError):
        robustness_value(2.0, 100, q=0)


@pytest.mark.slow
def test_simulation_bound_at_true_strength_covers_truth():
    """A hidden confounder of chosen strength: the estimate without it is biased; the bound at
    its true (sample) partial R² recovers the with-Z estimate and its CR2-adapted 95% interval
    covers the true effect in about 95% of replications."""
    rng = np.random.default_rng(3)
    reps = sim_reps(400, minimum=120)
    tau = 0.3
    cover = naive_cover = 0
    names = ["const", "d", "x1", "x2"]
    for _ in range(reps):
        y, X, z, g = _sim(rng, n=1500, G=50, tau=tau)
        fit = ols(y, X, clusters=g, vcov="CR2", names=names)
        b, se, df, _ = fit.coef("d")
        r = ovb_from_design(y, X, names, "d", se=se, df=df)
        gm = Gram(y, np.column_stack([X, z]))
        a = r.adjusted(gm.partial_r2(1, [4], [0, 2, 3]), gm.partial_r2(gm.y, [4], [0, 1, 2, 3]))
        cover += a["ci_low"] <= tau <= a["ci_high"]
        lo, hi = fit.conf_int()[1]
        naive_cover += lo <= tau <= hi
    rate = cover / reps
    se_mc = np.sqrt(0.95 * 0.05 / reps)
    assert abs(rate - 0.95) < 4 * se_mc + 0.01, rate
    assert naive_cover / reps < 0.5  # without the bound the interval misses: the confounder matters


def test_partial_r2_of_a_weak_group_is_accurate():
    """Gram.partial_r2 forms the fall in the residual SS directly (FWL): for a covariate that
    explains ~1e-9 of the outcome's residual variance it agrees with the straightforward
    projection (QR residuals of the outcome and the covariate on the others) to 1e-9, where the
    difference of the two residual sums of squares keeps only a digit or two."""
    rng = np.random.default_rng(7)
    n = 20_000
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(10, 3, n)])
    w = rng.uniform(0.5, 2.0, n)
    sw = np.sqrt(w)
    z, e = rng.normal(size=n), rng.normal(size=n)
    Xz = np.column_stack([X, z])
    e -= Xz @ np.linalg.lstsq(Xz * sw[:, None], e * sw, rcond=None)[0]  # noise ⟂ X and z (weighted)
    y = X @ [1.0, 2.0, 0.5] + e + 3e-5 * z  # z explains ~1e-9 of what X leaves
    Xw, zw, yw = X * sw[:, None], z * sw, y * sw
    ez = zw - Xw @ np.linalg.lstsq(Xw, zw, rcond=None)[0]  # residualized on X (weighted)
    ey = yw - Xw @ np.linalg.lstsq(Xw, yw, rcond=None)[0]
    exact = (ez @ ey) ** 2 / (ez @ ez) / (ey @ ey)
    assert 1e-11 < exact < 1e-7
    g = Gram(y, np.column_stack([X, z]), w)
    assert g.partial_r2(g.y, [3], [0, 1, 2]) == pytest.approx(exact, rel=1e-9, abs=0)


def test_gram_from_fit_equals_gram_of_rows():
    """Gram.from_fit, from the effect design's own cross-products (centred at the weighted means,
    by school or not), equals the Gram formed from the rows to rounding, and gives the same
    residuals (for the Rosenbaum bounds) and omitted-variable bounds."""
    from pleval.matching.effect import effect_design
    from pleval.simulate import simulate_matched

    df = simulate_matched(seed=4, n_schools=30, n_pl_schools=6, students_per_grade=10, grades=(4, 5)).data
    df["_weight"] = np.random.default_rng(1).uniform(0.2, 3.0, len(df))
    df["_weight2"], df["_copies"] = df["_weight"] ** 2, 1
    kw = dict(outcome="posttest", treatment="treatment", pretests=("pretest",), covariates=("female", "frl"),
              strata=("grade",))
    for school, copies in (("school_id", "_copies"), (None, None)):  # y less its mean, or y as it is
        des = effect_design(df, **kw, school=school, copies=copies, weight2=copies and "_weight2")
        assert des.gram is not None and (des.gram[3] != 0) == (school is not None)
        rows = Gram(des.y, des.X, des.weights, constant=[0])
        fit = Gram.from_fit(des.y, des.weights, *des.gram[:4])
        np.testing.assert_allclose(fit.G, rows.G, rtol=0, atol=1e-12 * np.abs(rows.G).max())
        np.testing.assert_allclose(fit.shift, rows.shift, rtol=1e-13, atol=1e-13)
        cols = [j for j in range(fit.k) if j != 1]
        np.testing.assert_allclose(fit.residuals(des.y, des.X, cols), rows.residuals(des.y, des.X, cols),
                                   rtol=0, atol=1e-10 * np.abs(des.y).max())
        bench = {"pretest": ["pretest"], "female": ["female"]}
        a = ovb_from_design(des.y, des.X, des.names, "treatment", weights=des.weights, benchmarks=bench, gram=fit)
        b = ovb_from_design(des.y, des.X, des.names, "treatment", weights=des.weights, benchmarks=bench)
        for f in ("estimate", "se_classical", "r2yd_x", "rv_q", "rv_qa"):
            assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-11), f
        np.testing.assert_allclose(a.benchmarks[["r2dxj_x", "r2yxj_dx"]].to_numpy(float),
                                   b.benchmarks[["r2dxj_x", "r2yxj_dx"]].to_numpy(float), rtol=1e-9)


def test_exactly_fitted_outcome_has_no_bounds():
    """An outcome the design fits exactly (here one value: residual SS 0, or a rounding
    negative) gives no bounds with a DesignError, not a square root of a negative number."""
    from pleval.errors import DesignError

    rng = np.random.default_rng(3)
    d = rng.integers(0, 2, 50).astype(float)
    X = np.column_stack([np.ones(50), d, rng.normal(size=50)])
    for y in (np.full(50, 200.0), 3.0 + 2.0 * d - 0.5 * X[:, 2]):
        with pytest.raises(DesignError, match="fitted exactly"):
            ovb_from_design(y, X, ["const", "d", "x"], "d")


def test_too_few_residual_df_has_no_bounds():
    """A regression with at most 1 residual df (here 5 rows, 4 coefficients) gives no bounds,
    a DesignError the analysis turns into a note, not the summary function's DataError."""
    from pleval.errors import DesignError

    rng = np.random.default_rng(4)
    X = np.column_stack([np.ones(5), [0, 1, 0, 1, 1], rng.normal(size=(5, 2))])
    with pytest.raises(DesignError, match="1 residual df \\(5 observations, 4 coefficients\\)"):
        ovb_from_design(rng.normal(size=5), X, ["const", "d", "x1", "x2"], "d")


def test_bounds_beyond_any_possible_confounder_are_marked_not_given_a_zero_se():
    """With the pretest explaining half the outcome (R²_Y 0.48), a 1x-pretest confounder is
    feasible but 2x and 3x imply R²_Y > 1: those rows printed SE 0, t = −inf and a zero-width
    CI, and the multiple to zero was searched past the feasible range ("76.5 times"). Capped
    rows are now marked, with no SE, t or CI, and the multiple to zero is a feasible one or inf."""
    b = omitted_variable_bounds(0.5, 0.2, 2000, benchmarks={"pretest": (0.0002, 0.48)}, kd=(1, 2, 3))
    rows = b.bounds.set_index("bound")
    assert not rows.loc["1x pretest", "capped"] and np.isfinite(rows.loc["1x pretest", "se"])
    assert rows.loc[["2x pretest", "3x pretest"], "capped"].all()
    assert rows.loc[["2x pretest", "3x pretest"], ["se", "t", "ci_low", "ci_high"]].isna().all().all()
    assert "no such confounder exists" in b.summary()
    assert raw_feasible(b, "pretest")
    strong = omitted_variable_bounds(0.05, 0.2, 2000, benchmarks={"pretest": (0.05, 0.3)})
    k = strong.multiple_to_zero("pretest")
    assert np.isfinite(k) and raw_feasible(strong, "pretest")
    assert float(benchmark_r2(0.05, 0.3, k, cap=False)[1]) < 1


def raw_feasible(b, name):
    """The multiple to zero is inf or one whose confounder explains less than all of the outcome."""
    k = b.multiple_to_zero(name)
    r2d, r2y = b.benchmarks.set_index("benchmark").loc[name, ["r2dxj_x", "r2yxj_dx"]]
    return np.isinf(k) or float(benchmark_r2(r2d, r2y, k, cap=False)[1]) < 1


def test_a_multiple_explaining_all_of_the_treatment_keeps_its_row():
    """A benchmark with R²_D 0.3: 3 times as strong gives R²_{D~Z|X} = 3·0.3/0.7 ≥ 1, a confounder
    that would explain all of PL enrolment. Its row was dropped without a word (`--kd 1,100,1000`
    lost the 1000x rows); it is now kept and marked capped, with R²_D 1 and nothing else, and the
    feasible rows are unchanged."""
    r2d, r2y = 0.3, 0.2
    kd = (1, 2, 3)
    b = omitted_variable_bounds(0.5, 0.1, 1000, benchmarks={"pretest": (r2d, r2y)}, kd=kd)
    impossible = [k * r2d / (1 - r2d) >= 1 for k in kd]
    assert impossible == [False, False, True]
    assert list(b.bounds["bound"]) == [f"{k}x pretest" for k in kd]
    row = b.bounds.set_index("bound").loc["3x pretest"]
    assert row["capped"] and row["r2dz_x"] == 1
    assert row[["r2yz_dx", "estimate", "se", "t", "ci_low", "ci_high"]].isna().all()
    alone = omitted_variable_bounds(0.5, 0.1, 1000, benchmarks={"pretest": (r2d, r2y)}, kd=(1, 2))
    pd.testing.assert_frame_equal(b.bounds.iloc[:2], alone.bounds)
    assert "all of the treatment's" in b.summary()
    from pleval.plots import ovb_contour

    fig = ovb_contour(b)  # named under the plot, not drawn at R²_D = 1
    assert fig.get_supxlabel().startswith("Not drawn: 3x pretest")
    assert all("3x pretest" not in t.get_text() for ax in fig.axes for t in ax.texts)


def test_robustness_value_pairs_series_by_label():
    """t and dof Series in another order were paired by position; now by label, the result a
    Series with t's labels (the robustness value of Cinelli & Hazlett 2020, eq. 18, by hand)."""
    t = pd.Series([2.0, 4.0], index=["math", "reading"])
    dof = pd.Series([400.0, 50.0], index=["reading", "math"])
    got = robustness_value(t, dof)
    f = t / np.sqrt(dof.reindex(t.index))
    want = 0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2)
    assert list(got.index) == ["math", "reading"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
