"""Permutation test of meta-regression moderators (pleval.heterogeneity.permutation_test_moderators)
against metafor's ``permutest()`` (published test values), refits by ``meta_regression`` and
brute-force enumeration."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from pleval.errors import DataError
from pleval.heterogeneity import meta_analysis, meta_regression, permutation_test_moderators
from pleval.heterogeneity import _metareg_batch as mb
from pleval.heterogeneity import _tau2
from pleval.heterogeneity import permutation as permutation_module

from .conftest import REFERENCE, sim_reps
from .test_heterogeneity_meta import TWO_MAXIMA

# dat.hine1989 (metadat; Normand 1999, Table I): lidocaine, 6 trials
HINE_N1 = np.array([39, 44, 107, 103, 110, 154.0])
HINE_N2 = np.array([43, 44, 110, 100, 106, 146.0])
HINE_AI = np.array([2, 4, 6, 7, 7, 11.0])
HINE_CI = np.array([1, 4, 4, 5, 3, 4.0])


@pytest.fixture(scope="module")
def bcg():
    b = pd.read_csv(REFERENCE / "bcg.csv")
    y = np.log((b.tpos / (b.tpos + b.tneg)) / (b.cpos / (b.cpos + b.cneg))).to_numpy()
    v = (1 / b.tpos - 1 / (b.tpos + b.tneg) + 1 / b.cpos - 1 / (b.cpos + b.cneg)).to_numpy()
    return y, np.sqrt(v), b


def test_hine_exact_matches_metafor():
    """Risk differences (escalc "RD"), REML, fake moderator mod = 3, 1, 2, 2, 4, 5: the exact
    permutation p-values are 1 and 0.0028 (metafor tests/testthat/test_misc_permutest.r); the
    tied rows leave 6!/2! = 360 distinct orderings, and 1/360 = 0.0028."""
    p1, p2 = HINE_AI / HINE_N1, HINE_CI / HINE_N2
    y, v = p1 - p2, p1 * (1 - p1) / HINE_N1 + p2 * (1 - p2) / HINE_N2
    assert round(meta_analysis(y, np.sqrt(v)).estimate, 6) == 0.029444  # the same file's random-effects estimate
    r = permutation_test_moderators(meta_regression(y, np.sqrt(v), pd.DataFrame({"mod": [3, 1, 2, 2, 4, 5.0]})))
    assert r.exact and r.n_perm == 360
    assert [round(p, 4) for p in r.coefficients["pvalue_permutation"]] == [1.0, 0.0028]
    assert r.coefficients["pvalue_permutation"].iloc[1] == 1 / 360
    assert "360 distinct orderings" in r.summary()


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"])
def test_batched_refits_equal_meta_regression(bcg, method):
    y, se, b = bcg
    X = np.column_stack([np.ones(y.size), b.ablat, b.year - 1960.0])
    rng = np.random.default_rng(2)
    P = np.array([rng.permutation(y.size) for _ in range(5)])
    for kh in (False, True):
        _, stat, qm = permutation_module._metareg_statistics(method, y[P], se[P] ** 2, X, kh)
        for i, p in enumerate(P):
            mr = meta_regression(y[p], se[p], X[:, 1:], method=method, knapp_hartung=kh)
            np.testing.assert_allclose(stat[i], mr.coefficients["statistic"], rtol=1e-7)
            assert qm[i] == pytest.approx(mr.qm, rel=1e-7)


def test_exact_equals_brute_force_enumeration(bcg):
    """k = 6, a moderator with one tie: every distinct reassignment refitted by meta_regression
    (itertools over all 6! orderings, duplicates removed)."""
    y, se, b = bcg
    y, se = y[:6], se[:6]
    mod = np.array([44.0, 55, 42, 52, 13, 44])
    mr = meta_regression(y, se, mod, method="DL", knapp_hartung=True)
    seen, zs, qms = set(), [], []
    for perm in itertools.permutations(range(6)):
        key = tuple(mod[list(perm)])
        if key in seen:
            continue
        seen.add(key)
        f = meta_regression(y, se, mod[list(perm)], method="DL", knapp_hartung=True)
        zs.append(f.coefficients["statistic"].to_numpy())
        qms.append(f.qm)
    zs = np.array(zs)
    r = permutation_test_moderators(mr)
    assert r.exact and r.n_perm == len(seen) == 360
    obs = mr.coefficients["statistic"].to_numpy()
    want = (np.abs(zs) >= np.abs(obs) - 1e-10 * np.maximum(1, np.abs(obs))).mean(axis=0)
    np.testing.assert_allclose(r.coefficients["pvalue_permutation"], want)
    assert r.qm_pvalue == pytest.approx(np.mean(np.array(qms) >= mr.qm - 1e-10 * max(1, mr.qm)))


def test_random_permutations_and_errors(bcg):
    y, se, b = bcg
    mr = meta_regression(y, se, b[["ablat"]])
    a = permutation_test_moderators(mr, n_perm=199, seed=4)
    assert not a.exact and a.n_perm == 199
    assert permutation_test_moderators(mr, n_perm=199, seed=4).qm_pvalue == a.qm_pvalue
    assert a.coefficients.loc["ablat", "pvalue_permutation"] == pytest.approx(a.qm_pvalue)  # one moderator: QM = z²
    assert 1 / 200 <= a.qm_pvalue < 0.05  # latitude explains the BCG effects
    V = np.diag(se**2)
    diag = permutation_test_moderators(meta_regression(y, se, b[["ablat"]], vcov=V), n_perm=199, seed=4)
    assert diag.qm_pvalue == a.qm_pvalue  # a diagonal sampling covariance is independent estimates
    V[0, 1] = V[1, 0] = 0.3 * se[0] * se[1]
    with pytest.raises(DataError, match="independent"):
        permutation_test_moderators(meta_regression(y, se, b[["ablat"]], vcov=V))
    with pytest.raises(DataError, match="MetaRegression"):
        permutation_test_moderators(meta_analysis(y, se))
    with pytest.raises(DataError, match="n_perm"):
        permutation_test_moderators(mr, n_perm=0)


def test_many_schools_are_drawn_not_enumerated():
    """k = 200 distinct moderator values: 200! orderings. Before 2026-12-04 counting them overflowed
    (``exp`` of lgamma(201)), so the test failed from 171 schools on."""
    rng = np.random.default_rng(5)
    k = 200
    se = np.sqrt(rng.uniform(0.01, 0.05, k))
    x = rng.normal(size=k)
    y = 0.1 + 0.05 * x + rng.normal(0, np.sqrt(0.01 + se**2))
    r = permutation_test_moderators(meta_regression(y, se, x, method="DL"), n_perm=19, seed=1)
    assert not r.exact and r.n_perm == 19
    assert r.coefficients["pvalue_permutation"].iloc[1] == 1 / 20
    assert permutation_module._n_orderings(np.array([0, 0, 1, 2])) == pytest.approx(12)


# a moderator for each of the first two two-maxima sets of test_heterogeneity_meta: with it the
# likelihood keeps two maxima and Fisher scoring from DL stops at the boundary 0
TWO_MAXIMA_MODERATORS = [
    [0.0138, 0.0035, 0.0048, 0.0055, -0.008, -0.0187, -0.0107, 0.0163, 0.013, -0.0035, -0.003, 0.0104, -0.0017, -0.013],
    np.linspace(-1, 1, 13).tolist(),
]


@pytest.mark.parametrize("case", [0, 1])
def test_moderator_refits_take_the_global_maximum(case):
    """The observed statistics are meta_regression's, and every permuted refit's τ² is the global
    maximizer of :mod:`._tau2` (fitted permutation by permutation). Before 2026-12-04 the batch's
    Fisher scoring stopped at τ² = 0: meta_regression gives τ² = 0.00335 and the moderator's
    z = −0.403 for the first set, the permutation test printed −0.819 (second set: 0.00246, −0.060
    and +0.786; its permutation p 0.83 for 0.99)."""
    method, _, y, se = TWO_MAXIMA[case]
    y, se, x = np.array(y), np.array(se), np.array(TWO_MAXIMA_MODERATORS[case])
    v, k = se**2, y.size
    X = np.column_stack([np.ones(k), x])
    fit = _tau2.reml_tau2 if method == "REML" else _tau2.ml_tau2
    assert fit(y, v, X)[0] > 2e-3
    for kh in (False, True):
        mr = meta_regression(y, se, x, method=method, knapp_hartung=kh)
        r = permutation_test_moderators(mr, n_perm=99, seed=2)
        np.testing.assert_allclose(r.coefficients["statistic"], mr.coefficients["statistic"], rtol=1e-7)
        assert r.qm == pytest.approx(mr.qm, rel=1e-7)
    rng = np.random.default_rng(8)
    P = np.vstack([np.arange(k)] + [rng.permutation(k) for _ in range(60)])
    want = np.array([fit(y[p], v[p], X)[0] for p in P])
    np.testing.assert_allclose(mb.tau2_batch(method, y[P], v[P], X), want, rtol=1e-7, atol=1e-12)


@pytest.mark.slow
def test_moderator_permutation_test_holds_its_size():
    """8 schools, τ = 0.1, SEs 0.05–0.15, a moderator unrelated to the effects (REML, the
    default; 99 random permutations, so p ≤ 0.05 has probability exactly 5/100 when the
    moderator's rows are exchangeable, as here): the permutation p-value of the moderator and
    of QM reject at 5% about 5% of the time, where the model-based z test rejects about 9%.
    Full size: 800 meta-regressions."""
    reps = sim_reps(800, minimum=200)
    rng = np.random.default_rng(2026_12_05)
    rej = np.zeros(3)
    for i in range(reps):
        se = rng.uniform(0.05, 0.15, 8)
        y = rng.normal(0, 0.1, 8) + rng.normal(0, se)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = permutation_test_moderators(meta_regression(y, se, pd.DataFrame({"m": rng.normal(size=8)})),
                                            n_perm=99, seed=i)
        rej += [t.coefficients["pvalue_permutation"].iloc[1] <= 0.05, t.qm_pvalue <= 0.05,
                t.coefficients["pvalue_model"].iloc[1] <= 0.05]
    rej /= reps
    assert np.all(np.abs(rej[:2] - 0.05) < 3 * math.sqrt(0.05 * 0.95 / reps)), rej


@pytest.mark.parametrize("method", ["PM", "EB"])
def test_moderator_pm_refits_with_a_very_precise_school(method):
    """One SE of 1.8e-7 among 0.06–0.19: every permutation's PM/EB τ² is the root of Q(τ²) = k − p
    that :mod:`._tau2` finds (fitted permutation by permutation). Before 2026-12-05 the vector Newton
    steps stopped on the step's size alone, tiny at τ² ≈ 0 where dQ/dτ² is huge: τ² 8.3e-14 for
    0.0421."""
    y = np.array([-0.0762, -0.0531, 0.4111, -0.3148, 0.0314, -0.1377, 0.0015])
    se = np.array([0.1572, 0.057594, 0.15854, 1.8105e-7, 0.11753, 0.060717, 0.18515])
    x = np.array([2.2793, 0.28586, 1.8089, 0.91871, 1.0702, 0.79722, -1.5281])
    v, k = se**2, y.size
    X = np.column_stack([np.ones(k), x])
    rng = np.random.default_rng(4)
    P = np.vstack([np.arange(k)] + [rng.permutation(k) for _ in range(60)])
    want = np.array([_tau2.pm_tau2(y[p], v[p], X) for p in P])
    assert want[0] > 0.04
    np.testing.assert_allclose(mb.tau2_batch(method, y[P], v[P], X), want, rtol=1e-7, atol=1e-12)
