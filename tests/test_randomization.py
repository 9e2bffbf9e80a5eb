"""Randomization inference: exact enumeration against a brute-force loop, Monte Carlo against exact,
the design respected by every draw, and the size of the test under the null."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.inference.randomization import randomization_test


def _cluster_design(rng, block_sizes=(4, 3, 4), treated=(2, 1, 2), effect=0.0):
    """Clusters of 3-8 students in blocks; complete randomization of clusters within blocks."""
    block_of = np.repeat(np.arange(len(block_sizes)), block_sizes)
    z = np.concatenate([rng.permutation(np.r_[np.ones(t, int), np.zeros(m - t, int)])
                        for m, t in zip(block_sizes, treated)])  # a handful of blocks
    sizes = rng.integers(3, 9, block_of.size)
    cl = np.repeat(np.arange(block_of.size), sizes)
    x = rng.normal(size=cl.size)
    y = rng.normal(size=block_of.size)[cl] + rng.normal(size=cl.size) + effect * z[cl] + 0.8 * x
    return pd.DataFrame({"school": np.char.add("s", cl.astype(str)), "block": np.char.add("b", block_of[cl].astype(str)),
                         "z": z[cl], "x": x, "y": y})


def _brute_force(df, value="y"):
    """Every assignment of clusters within blocks, the statistic computed directly with pandas."""
    cl = df.groupby("school").agg(u=(value, "mean"), z=("z", "first"), block=("block", "first"))
    blocks = sorted(cl["block"].unique())
    per_block = []
    for b in blocks:
        schools = list(cl.index[cl["block"] == b])
        t = int(cl.loc[schools, "z"].sum())
        per_block.append([set(c) for c in itertools.combinations(schools, t)])
    m = len(cl)

    def stat(treated):
        total = 0.0
        for b in blocks:
            sub = cl[cl["block"] == b]
            is_t = sub.index.isin(treated)
            total += len(sub) / m * (sub["u"][is_t].mean() - sub["u"][~is_t].mean())
        return total

    observed = stat(set(cl.index[cl["z"] == 1]))
    null = np.array([stat(set().union(*combo)) for combo in itertools.product(*per_block)])
    return observed, null


def test_exact_enumeration_equals_brute_force():
    df = _cluster_design(np.random.default_rng(11), effect=0.7)
    res = randomization_test(df["y"], df["z"], clusters=df["school"], blocks=df["block"])
    observed, null = _brute_force(df)
    assert res.exact and res.n_assignments == 6 * 3 * 6 == null.size
    assert res.statistic == pytest.approx(observed, rel=1e-12)
    np.testing.assert_allclose(np.sort(res.null_distribution), np.sort(null), rtol=1e-10, atol=1e-12)
    p_brute = np.mean(np.abs(null) >= abs(observed) - 1e-12)
    assert res.pvalue == pytest.approx(p_brute, abs=1e-12)
    assert res.n_units == 11 and res.n_treated_units == 5 and res.n_blocks == 3


def test_covariate_adjusted_statistic_uses_residuals_without_treatment():
    df = _cluster_design(np.random.default_rng(5), effect=0.3)
    df["r"] = sm.OLS(df["y"], sm.add_constant(df[["x"]])).fit().resid
    res = randomization_test(df["y"], df["z"], clusters=df["school"], blocks=df["block"], covariates=df[["x"]])
    observed, null = _brute_force(df, value="r")
    assert res.covariate_adjusted
    assert res.statistic == pytest.approx(observed, rel=1e-10)
    assert res.pvalue == pytest.approx(np.mean(np.abs(null) >= abs(observed) - 1e-12), abs=1e-12)


def test_individual_randomization_statistic_is_difference_in_means():
    rng = np.random.default_rng(2)
    z = np.r_[np.ones(6), np.zeros(7)]
    y = rng.normal(size=13) + z
    res = randomization_test(y, z)
    assert res.unit == "student" and res.n_assignments == 1716  # C(13, 6)
    assert res.statistic == pytest.approx(y[z == 1].mean() - y[z == 0].mean())
    # brute force over all C(13, 6) treated sets
    null = np.array([y[list(c)].mean() - np.delete(y, list(c)).mean() for c in itertools.combinations(range(13), 6)])
    assert res.pvalue == pytest.approx(np.mean(np.abs(null) >= abs(res.statistic) - 1e-12))


def test_one_sided_p_values_add_up():
    df = _cluster_design(np.random.default_rng(8), effect=0.5)
    args = (df["y"], df["z"])
    kw = dict(clusters=df["school"], blocks=df["block"])
    g = randomization_test(*args, alternative="greater", **kw)
    less = randomization_test(*args, alternative="less", **kw)
    at_obs = np.mean(np.isclose(g.null_distribution, g.statistic, rtol=1e-10, atol=1e-12))
    assert g.pvalue + less.pvalue == pytest.approx(1.0 + at_obs)


def test_monte_carlo_matches_exact_and_respects_the_design():
    df = _cluster_design(np.random.default_rng(3), block_sizes=(5, 6, 4), treated=(2, 3, 2), effect=0.4)
    kw = dict(clusters=df["school"], blocks=df["block"])
    exact = randomization_test(df["y"], df["z"], **kw)
    assert exact.exact and exact.n_assignments == 10 * 20 * 6
    mc = randomization_test(df["y"], df["z"], exact=False, n_permutations=20_000, seed=7, **kw)
    assert not mc.exact and mc.n_draws == 20_000
    assert mc.statistic == pytest.approx(exact.statistic)
    assert abs(mc.pvalue - exact.pvalue) < 4 * np.sqrt(exact.pvalue * (1 - exact.pvalue) / 20_000) + 1e-4
    # every drawn assignment is one the design allows: its statistic is in the exact support
    support = np.unique(np.round(exact.null_distribution, 9))
    drawn = np.unique(np.round(mc.null_distribution, 9))
    assert np.isin(drawn, support).all()
    # and draws cover the support roughly uniformly (each of 1200 assignments ~ 16.7 times)
    assert drawn.size > 0.95 * support.size


def test_seeded_reproducible_and_batch_size_invariant():
    df = _cluster_design(np.random.default_rng(4), block_sizes=(12, 12), treated=(6, 6))
    kw = dict(clusters=df["school"], blocks=df["block"], exact=False, n_permutations=3000)
    a = randomization_test(df["y"], df["z"], seed=1, **kw)
    b = randomization_test(df["y"], df["z"], seed=1, batch_size=101, **kw)
    c = randomization_test(df["y"], df["z"], seed=2, **kw)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert a.pvalue == b.pvalue
    assert not np.array_equal(a.null_distribution, c.null_distribution)


def test_progress_callback_reports_batches():
    df = _cluster_design(np.random.default_rng(4), block_sizes=(12, 12), treated=(6, 6))
    calls = []
    randomization_test(
        df["y"], df["z"], clusters=df["school"], exact=False, n_permutations=1000, batch_size=300,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]


def test_size_under_the_null_is_nominal():
    """200 null data sets, 20 clusters in 4 blocks (10,000 exact assignments each): the
    rejection rate at 5% lies within the binomial 99.9% range for p = 0.05."""
    rng = np.random.default_rng(2024)
    reps = 200
    p = np.empty(reps)
    for r in range(reps):
        df = _cluster_design(rng, block_sizes=(5, 5, 5, 5), treated=(2, 2, 2, 2))
        p[r] = randomization_test(df["y"], df["z"], clusters=df["school"], blocks=df["block"]).pvalue
    rate = np.mean(p <= 0.05)
    se = np.sqrt(0.05 * 0.95 / reps)
    assert abs(rate - 0.05) < 3.3 * se, rate
    # and it has power against a real effect
    df = _cluster_design(np.random.default_rng(1), block_sizes=(5, 5, 5, 5), treated=(2, 2, 2, 2), effect=3.0)
    assert randomization_test(df["y"], df["z"], clusters=df["school"], blocks=df["block"]).pvalue < 0.01


def test_design_errors_are_clear():
    df = _cluster_design(np.random.default_rng(1))
    z = df["z"].copy()
    z.iloc[0] = 1 - z.iloc[0]
    with pytest.raises(DesignError, match="varies within 1 cluster"):
        randomization_test(df["y"], z, clusters=df["school"])
    blocks = df["block"].copy()
    blocks.iloc[0] = "b2"
    with pytest.raises(DesignError, match="nested in blocks"):
        randomization_test(df["y"], df["z"], clusters=df["school"], blocks=blocks)
    y = df["y"].copy()
    y.iloc[3] = np.nan
    with pytest.raises(DataError, match="outcome: 1 row"):
        randomization_test(y, df["z"], clusters=df["school"])
    with pytest.raises(DataError, match="alternative"):
        randomization_test(df["y"], df["z"], alternative="both")


def test_blocks_without_contrast_are_left_out_with_a_warning():
    df = _cluster_design(np.random.default_rng(6), block_sizes=(4, 3, 4), treated=(2, 3, 2))
    with pytest.warns(PlevalWarning, match="1 block"):
        res = randomization_test(df["y"], df["z"], clusters=df["school"], blocks=df["block"])
    assert res.n_blocks == 2 and res.n_assignments == 36


def test_monte_carlo_error_is_reported_and_honest():
    """The p-value is printed with its Monte Carlo SE, and p-values from different seeds differ
    by what that SE says (all within 4 SE of their mean)."""
    rng = np.random.default_rng(12)
    y = rng.normal(size=400) + np.repeat(rng.normal(0, 0.3, 40), 10)
    school = np.repeat(np.arange(40), 10)
    z = np.repeat(rng.permutation(np.r_[np.ones(20), np.zeros(20)]), 10)
    runs = [randomization_test(y, z, clusters=school, n_permutations=4000, seed=s, exact=False) for s in range(8)]
    p = np.array([r.pvalue for r in runs])
    se = runs[0].mc_se
    assert se == pytest.approx(np.sqrt(p[0] * (1 - p[0]) / 4000))
    assert np.all(np.abs(p - p.mean()) < 4 * se)
    assert f"± {se:.2g} (Monte Carlo SE)" in runs[0].summary()
