"""Propensity weighting (ATT, ATE) and entropy balancing against WeightIt's published output.

Data: ``tests/reference/lalonde.csv`` (the lalonde data of MatchIt and cobalt, same rows in the
same order, so WeightIt's unit numbers are row positions). Published numbers, from the
rendered WeightIt site (gh-pages of https://github.com/ngreifer/WeightIt at d44d120):

* "Getting started" vignette (``articles/WeightIt.html``): ``weightit(treat ~ age + educ + race
  + married + nodegree + re74 + re75, data = lalonde, estimand = "ATT", method = "glm")`` and
  the same with ``method = "ebal"``: ``summary()`` (weight range, top weights and their units,
  coefficient of variation, MAD, entropy, ESS) and ``bal.tab(stats = c("m", "v"))``
  (standardized differences for continuous covariates, raw differences for binary ones, variance
  ratios);
* ``?method_glm`` example 1 (``reference/method_glm.html``): ``treat ~ age + educ + married +
  nodegree + re74``, ``estimand = "ATT"``, ``link = "probit"``;
* ``?method_ebal`` examples 1 and 2 (``reference/method_ebal.html``): the same covariates, ATT
  for ``treat``, and ATE for the three-level ``race`` (each race group balanced to the whole
  sample's means), whose per-group weights check :func:`pleval.matching.ebal.balance_to`.

WeightIt prints two to four decimals (three for weight statistics); tolerances are half a unit
in the last printed digit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval.data import Columns
from pleval.errors import DataError, DesignError
from pleval.matching._design import encode
from pleval.matching.ebal import balance_columns, balance_to, entropy_weights
from pleval.matching.weighting import ipw_weights, weight_summary

LALONDE = Path(__file__).parent / "reference" / "lalonde.csv"
C7 = ("age", "educ", "race", "married", "nodegree", "re74", "re75")
C5 = ("age", "educ", "married", "nodegree", "re74")


@pytest.fixture(scope="module")
def lalonde():
    return pd.read_csv(LALONDE)


def _cols(cov):
    return Columns(outcome="re78", treatment="treat", student_id="id", covariates=cov)


def _check_summary(m, published, top_units=None):
    ws = m.weight_summary().set_index("group").loc["comparison"]
    for key, (value, tol) in published.items():
        assert ws[key] == pytest.approx(value, abs=tol), key
    if top_units is not None:  # WeightIt's unit numbers = row positions (1-based)
        w = np.bincount(m.rows, weights=m.weight, minlength=len(m.data))
        control = np.flatnonzero(m.data["treat"].to_numpy() == 0)
        top = control[np.argsort(w[control])[-5:]] + 1
        assert top.tolist() == top_units


def _diff_adj(m):
    """cobalt's Diff.Adj: standardized (treated SD) for continuous, raw for binary variables."""
    t = m.balance().table.set_index("variable")
    raw = t["mean_treated_after"] - t["mean_comparison_after"]
    return t["smd_after"].where(~t["binary"], raw), t["var_ratio_after"]


def test_glm_att_weights_reproduce_weightit_vignette(lalonde):
    m = pleval.match(lalonde, _cols(C7), method="weighting", stabilize=False, conventions="matchit")
    _check_summary(m, {"ess": (99.82, 5e-3), "min": (0.009, 5e-4), "max": (3.743, 5e-4), "coef_of_var": (1.818, 5e-4),
                       "mad": (1.289, 5e-4), "entropy": (1.098, 5e-4), "n_zero": (0, 0)}, [597, 573, 381, 411, 303])
    diff, vr = _diff_adj(m)
    published = {"age": 0.119, "educ": -0.028, "race[black]": -0.002, "race[hispan]": 0.000, "race[white]": 0.002,
                 "married": 0.019, "nodegree": 0.018, "re74": -0.002, "re75": 0.011}
    np.testing.assert_allclose(diff[list(published)], list(published.values()), atol=5e-4 + 1e-9)
    np.testing.assert_allclose(vr[["age", "educ", "re74", "re75"]], [0.458, 0.664, 1.321, 1.394], atol=5e-4 + 1e-9)


def test_ebal_att_reproduces_weightit_vignette(lalonde):
    m = pleval.match(lalonde, _cols(C7), method="ebal", conventions="matchit")
    _check_summary(m, {"ess": (98.46, 5e-3), "min": (0.008, 5e-4), "max": (4.062, 5e-4), "coef_of_var": (1.834, 5e-4),
                       "mad": (1.287, 5e-4), "entropy": (1.101, 5e-4)}, [608, 381, 597, 303, 411])
    diff, vr = _diff_adj(m)
    assert np.abs(diff).max() < 1e-6  # exact balance on every mean
    np.testing.assert_allclose(vr[["age", "educ", "re74", "re75"]], [0.410, 0.664, 1.326, 1.335], atol=5e-4 + 1e-9)
    assert m.diagnostics["largest remaining imbalance (SD)"] < 1e-6
    # comparison weights sum to the number of treated units, as WeightIt scales them
    w = m.matched.loc[m.matched["treat"] == 0, "_weight"]
    assert w.sum() == pytest.approx(185)


def test_method_glm_and_ebal_examples(lalonde):
    m = pleval.match(lalonde, _cols(C5), method="weighting", link="probit", stabilize=False, conventions="matchit")
    _check_summary(m, {"ess": (260.83, 5e-3), "min": (0.018, 5e-4), "max": (1.834, 5e-4), "coef_of_var": (0.804, 5e-4),
                       "mad": (0.691, 5e-4), "entropy": (0.322, 5e-4)}, [612, 595, 269, 409, 296])
    diff, _ = _diff_adj(m)
    np.testing.assert_allclose(diff[list(C5)], [0.0716, -0.0565, 0.0058, 0.0128, -0.0507], atol=5e-5 + 1e-9)
    e = pleval.match(lalonde, _cols(C5), method="ebal", conventions="matchit")
    _check_summary(e, {"ess": (252.12, 5e-3), "min": (0.017, 5e-4), "max": (2.263, 5e-4), "coef_of_var": (0.839, 5e-4),
                       "mad": (0.707, 5e-4), "entropy": (0.341, 5e-4)}, [589, 595, 269, 409, 296])


def test_ebal_ate_per_group_reproduces_method_ebal_example_2(lalonde):
    X = encode(lalonde, list(C5)).X
    target = X.mean(axis=0)
    published = {  # ESS, min, max, coef of var, MAD, entropy
        "black": (180.47, 1.397, 13.517, 0.59, 0.413, 0.131),
        "hispan": (52.71, 1.201, 28.417, 0.609, 0.44, 0.163),
        "white": (262.93, 0.817, 3.949, 0.371, 0.306, 0.068),
    }
    for race, want in published.items():
        g = (lalonde["race"] == race).to_numpy()
        p, imbalance, _ = balance_to(X[g].copy(), target, list(C5))
        w = p * len(lalonde)  # each group's weights sum to N
        s = weight_summary(np.concatenate([w, [1.0, 1.0]]), np.r_[np.zeros(len(w)), 1, 1]).set_index("group")
        got = s.loc["comparison", ["ess", "min", "max", "coef_of_var", "mad", "entropy"]].to_numpy(float)
        tol = np.array([5e-3, 5e-4, 5e-4, 5e-3, 5e-3, 5e-4])  # half a unit in the last printed digit
        assert (np.abs(got - np.array(want)) <= tol + 1e-9).all(), (race, got)
        assert imbalance < 1e-6 and (np.abs(p @ X[g] - target) <= 1e-6 * X[g].std(axis=0)).all()


def test_ipw_ate_reproduces_weightit_readme(lalonde):
    """``weightit(treat ~ age + educ + nodegree + married + race + re74 + re75, data = lalonde,
    method = "ps", estimand = "ATE")`` ("ps" is the old name of "glm"): ``summary(W)`` and
    ``bal.tab(W, un = TRUE)`` as printed in WeightIt's README.md at commit 02ccf0fd (github.com/
    ngreifer/WeightIt) — weight ranges, the five largest weights of each group and their units,
    coefficients of variation, ESS 58.327 / 329.008, and the balance table (standardized
    differences, pooled SD, for continuous covariates; raw differences for binary ones). The
    README lists each group's five units in another order than their weights; the sets agree."""
    m = pleval.match(lalonde, _cols(C7), method="weighting", estimand="ATE", stabilize=False, conventions="matchit")
    ws = m.weight_summary().set_index("group")
    published = {"treated": (1.1721, 40.0773, 1.4777, 58.327), "comparison": (1.0092, 4.7432, 0.5519, 329.008)}
    for g, (lo, hi, cv, ess) in published.items():
        assert ws.loc[g, ["min", "max", "coef_of_var"]].to_numpy(float) == pytest.approx([lo, hi, cv], abs=5e-5)
        assert ws.loc[g, "ess"] == pytest.approx(ess, abs=5e-4)
    w = np.bincount(m.rows, weights=m.weight, minlength=len(m.data))
    t = m.data["treat"].to_numpy() == 1
    tops = {"treated": ({137, 124, 116, 68, 10}, [13.5451, 15.9884, 23.2967, 23.3891, 40.0773]),
            "comparison": ({597, 573, 411, 381, 303}, [4.0301, 4.0592, 4.2397, 4.5231, 4.7432])}
    for g, rows in (("treated", np.flatnonzero(t)), ("comparison", np.flatnonzero(~t))):
        top = rows[np.argsort(w[rows])[-5:]]
        assert set((top + 1).tolist()) == tops[g][0]
        np.testing.assert_allclose(w[top], tops[g][1], atol=5e-5)
    b = m.balance().table.set_index("variable")
    raw = b["mean_treated_after"] - b["mean_comparison_after"]
    adj = b["smd_after"].where(~b["binary"], raw)
    published = {"age": -0.1676, "educ": 0.1296, "nodegree": -0.0547, "married": -0.0944, "race[black]": 0.0499,
                 "race[hispan]": 0.0047, "race[white]": -0.0546, "re74": -0.2740, "re75": -0.1579}
    np.testing.assert_allclose(adj[list(published)], list(published.values()), atol=5e-5 + 1e-9)
    np.testing.assert_allclose(b.loc[["age", "educ", "re74", "re75"], "smd_before"], [-0.2419, 0.0448, -0.5958, -0.2870],
                               atol=5e-5 + 1e-9)


def test_ipw_ate_against_closed_form(lalonde):
    m = pleval.match(lalonde, _cols(C7), method="weighting", estimand="ATE", stabilize=False)
    ps = m.propensity.ps
    t = m.data["treat"].to_numpy() == 1
    np.testing.assert_allclose(m.weight, np.where(t, 1 / ps, 1 / (1 - ps)), rtol=1e-12)
    y = m.data["re78"].to_numpy()
    w = m.weight
    hajek = (w[t] @ y[t]) / w[t].sum() - (w[~t] @ y[~t]) / w[~t].sum()
    # the unadjusted weighted difference in means is the WLS slope of y on T alone
    X = np.column_stack([np.ones(len(y)), t])
    beta = np.linalg.solve(X.T @ (X * w[:, None]), X.T @ (w * y))
    assert beta[1] == pytest.approx(hajek, rel=1e-10)
    assert "average effect" in m.estimate().summary() and "ATE inverse-probability" in m.summary()
    st = ipw_weights(ps, t, estimand="ATE")
    assert st.weight[t].sum() == pytest.approx(len(t)) and st.weight[~t].sum() == pytest.approx(len(t))
    with pytest.raises(DataError, match="estimand"):
        ipw_weights(ps, t, estimand="ATC")


def test_ebal_moments_ate_and_errors(lalonde):
    X = encode(lalonde, ["age", "educ", "re74"]).X
    t = lalonde["treat"].to_numpy()
    C, names = balance_columns(X, ["age", "educ", "re74"], 2)
    assert names[-3:] == ["age^2", "educ^2", "re74^2"]
    ew = entropy_weights(C, t, estimand="ATE", names=names)
    for g in (t == 1, t == 0):
        gap = np.abs(ew.weight[g] @ C[g] / ew.weight[g].sum() - C.mean(axis=0))
        assert (gap <= 1e-6 * C[g].std(axis=0)).all()
        assert ew.weight[g].sum() == pytest.approx(len(t))
    with pytest.raises(DesignError, match="'age'"):
        entropy_weights(np.column_stack([X[:, 0] + 100 * t]), t, names=["age"])
    with pytest.raises(DataError, match="moments"):
        balance_columns(X, ["a", "b", "c"], 4)
    m = pleval.match(lalonde, _cols(("age", "educ", "re74")), method="ebal", moments=2)
    assert "moments up to 2" in m.summary()
    v = m.balance().table.set_index("variable")["var_ratio_after"]
    # means and variances of the treated reproduced: variance ratios are (nearly) 1
    np.testing.assert_allclose(v[["age", "educ", "re74"]], 1.0, atol=0.02)
