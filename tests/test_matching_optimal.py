"""Optimal pair matching and optimal full matching (``method="optimal"``, ``"full"``).

Optimality is checked against an independent solver: the linear-programming relaxations of the
assignment and bipartite edge-cover problems have integral optima, so scipy's HiGHS
``linprog`` gives the minimum total distance, which the matchings must attain.

Published numbers (MatchIt on its ``lalonde`` data, ``tests/reference/lalonde.csv``):

* full matching — "MatchIt: Getting Started" vignette (rendered site, gh-pages of
  https://github.com/kosukeimai/MatchIt at 58903bc, ``articles/MatchIt.html``),
  ``matchit(treat ~ age + educ + race + married + nodegree + re74 + re75, data = lalonde,
  method = "full", distance = "glm", link = "probit")``, ``summary(m.out2, un = FALSE)``;
* optimal pair matching — ``?method_optimal`` example 1 (same site,
  ``reference/method_optimal.html``), ``matchit(treat ~ age + educ + race + nodegree + married +
  re74 + re75, data = lalonde, method = "optimal", exact = ~race)``, ``summary(m.out1)``.

What is determined by the problem is compared to MatchIt's four printed decimals: sample sizes,
the treated means, the mean propensity score of the matched groups after optimal pair matching,
and the exactly balanced race indicators. The covariate means of the matched comparison group
are *not* determined: several matchings attain the same minimum total distance (shown below for
full matching: pleval's solution and HiGHS's share the optimum but differ in balance), and
optmatch solves a problem whose distances are rounded to its ``tol`` (resolution ≈ 0.001 on the
propensity score here). Those published values are compared within 0.05 SD (SMD), the spread
between equally optimal solutions, not to four decimals; docs/validation.md says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

import pleval
from pleval.data import Columns
from pleval.errors import DataError, DesignError
from pleval.matching.full import match_full, set_pairs
from pleval.matching.optimal import match_optimal

LALONDE = Path(__file__).parent / "reference" / "lalonde.csv"
COLS = Columns(outcome="re78", treatment="treat", student_id="id",
               covariates=("age", "educ", "race", "married", "nodegree", "re74", "re75"))


def _lp_edge_cover(d: np.ndarray) -> tuple[float, np.ndarray]:
    """Minimum-weight edge cover of the complete bipartite graph with costs ``d`` (HiGHS)."""
    nt, nc = d.shape
    e = np.arange(nt * nc)
    A = sp.vstack([sp.csr_matrix((np.ones(nt * nc), (np.repeat(np.arange(nt), nc), e)), shape=(nt, nt * nc)),
                   sp.csr_matrix((np.ones(nt * nc), (np.tile(np.arange(nc), nt), e)), shape=(nc, nt * nc))])
    r = linprog(d.ravel(), A_ub=-A, b_ub=-np.ones(nt + nc), bounds=(0, 1), method="highs")
    return r.fun, r.x.reshape(nt, nc) > 0.5


def _lp_assignment(d: np.ndarray, k: int = 1) -> float:
    """Minimum total distance giving each treated row k distinct comparisons (HiGHS)."""
    nt, nc = d.shape
    e = np.arange(nt * nc)
    A_t = sp.csr_matrix((np.ones(nt * nc), (np.repeat(np.arange(nt), nc), e)), shape=(nt, nt * nc))
    A_c = sp.csr_matrix((np.ones(nt * nc), (np.tile(np.arange(nc), nt), e)), shape=(nc, nt * nc))
    r = linprog(d.ravel(), A_ub=A_c, b_ub=np.ones(nc), A_eq=A_t, b_eq=np.full(nt, float(k)), bounds=(0, 1),
                method="highs")
    return r.fun


@pytest.fixture(scope="module")
def lalonde():
    return pd.read_csv(LALONDE)


@pytest.fixture(scope="module")
def full(lalonde):
    return pleval.match(lalonde, COLS, method="full", link="probit", conventions="matchit")


@pytest.fixture(scope="module")
def pair(lalonde):
    return pleval.match(lalonde, COLS, method="optimal", exact="race", conventions="matchit")


def _ps(m):
    """The scores matched on (pleval puts coordinates on a 1e-10 grid before matching)."""
    return pd.Series(np.round(m.propensity.ps, 10), index=m.data.index)


def test_full_matching_attains_the_minimum_and_is_not_unique(lalonde, full):
    ps = _ps(full)
    t = full.data["treat"].to_numpy() == 1
    d = np.abs(ps[t].to_numpy()[:, None] - ps[~t].to_numpy()[None, :])
    opt, x = _lp_edge_cover(d)
    assert full.diagnostics["total within-set distance"] == pytest.approx(opt, rel=1e-10, abs=1e-12)
    # every unit used; each set has one treated or one comparison unit; weights sum to 1 per treated
    x_ = full.matched
    assert x_.loc[x_["treat"] == 1, "_set"].is_unique
    assert np.allclose(x_[x_["treat"] == 0].groupby("_set")["_weight"].sum(), 1.0)
    # pleval's matching does not depend on the row order
    again = pleval.match(lalonde.iloc[::-1], COLS, method="full", link="probit", conventions="matchit")
    assert again.diagnostics["total within-set distance"] == pytest.approx(opt, rel=1e-10, abs=1e-12)
    ages = [m.balance().table.set_index("variable").loc["age", "mean_comparison_after"] for m in (full, again)]
    assert ages[0] == pytest.approx(ages[1], rel=1e-12)
    # but the optimum is not unique: HiGHS's optimal cover, its connected sets weighted n_t/n_c as
    # MatchIt weights subclasses, has the same total and another balance
    nt, nc = x.shape
    g = sp.bmat([[None, sp.csr_matrix(x)], [sp.csr_matrix(x).T, None]])
    label = connected_components(g, directed=False)[1]
    n_t = np.bincount(label[:nt], minlength=label.max() + 1)
    n_c = np.bincount(label[nt:], minlength=label.max() + 1)
    w_lp = (n_t / np.maximum(n_c, 1))[label[nt:]]
    age_lp = float((w_lp * full.data.loc[~t, "age"].to_numpy()).sum() / w_lp.sum())
    assert abs(age_lp - ages[0]) > 0.005


def test_full_matching_reproduces_matchit_vignette(full):
    ss = full.sample_sizes()
    assert ss.loc[["all", "matched", "unmatched", "discarded"], "comparison"].tolist() == [429, 429, 0, 0]
    assert ss.loc[["all", "matched", "unmatched", "discarded"], "treated"].tolist() == [185, 185, 0, 0]
    ps = _ps(full)
    t = full.data["treat"] == 1
    assert round(ps[t].mean(), 4) == 0.5773  # the probit "distance", Means Treated
    b = full.balance().table.set_index("variable")
    # Means Control and Std. Mean Diff. after full matching (not unique: module docstring)
    published = {"age": (25.5347, 0.0393), "educ": (10.5381, -0.0956), "race[black]": (0.8389, 0.0119),
                 "race[hispan]": (0.0492, 0.0435), "race[white]": (0.1119, -0.0493), "married": (0.1633, 0.0660),
                 "nodegree": (0.6577, 0.1110), "re74": (2100.2150, -0.0009), "re75": (1561.4420, -0.0091)}
    for v, (_, smd) in published.items():
        assert abs(b.loc[v, "smd_after"] - smd) < 0.05, v
    # ESS of the comparison group: 50.76 published; equally optimal matchings range ~50-55
    assert 45 < ss.loc["matched (ESS)", "comparison"] < 60


def test_optimal_pair_matching_reproduces_matchit_example(pair):
    ss = pair.sample_sizes()
    assert ss["comparison"].tolist()[:2] == [429, 116] and ss.loc["unmatched", "comparison"] == 313
    assert ss["treated"].tolist()[:2] == [185, 116] and ss.loc["unmatched", "treated"] == 69
    x = pair.matched
    ps = _ps(pair).loc[x.index]
    t = x["treat"].to_numpy() == 1
    assert (round(ps[t].mean(), 4), round(ps[~t].mean(), 4)) == (0.4972, 0.4901)
    b = pair.balance().table.set_index("variable")
    for v in ("race[black]", "race[hispan]", "race[white]"):
        assert b.loc[v, "smd_after"] == 0.0
    np.testing.assert_allclose(b.loc[["race[black]", "race[hispan]", "race[white]"], "mean_treated_after"],
                               [0.7500, 0.0948, 0.1552], atol=5e-5)
    published = {"age": -0.0241, "educ": -0.1501, "married": -0.0660, "nodegree": 0.1517, "re74": -0.0376,
                 "re75": -0.0272}
    for v, smd in published.items():
        assert abs(b.loc[v, "smd_after"] - smd) < 0.05, v
    assert x.loc[~t].index.is_unique  # without replacement


def test_optimal_pair_total_is_the_minimum_in_each_cell(lalonde, pair):
    ps = _ps(pair)
    t = pair.data["treat"] == 1
    total = 0.0
    for race, g in pair.data.groupby("race"):
        gt, gc = g.index[t[g.index]], g.index[~t[g.index]]
        d = np.abs(ps[gt].to_numpy()[:, None] - ps[gc].to_numpy()[None, :])
        total += _lp_assignment(d) if len(gt) <= len(gc) else _lp_assignment(d.T)
    x = pair.matched
    got = np.abs(ps[x.index[x["treat"] == 1]].to_numpy() - ps[x.index[x["treat"] == 0]].to_numpy()).sum()
    assert got == pytest.approx(total, rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimal_k_and_caliper_against_lp(seed):
    rng = np.random.default_rng(seed)
    zt, zc = rng.normal(0.5, 1, (12, 2)), rng.normal(0, 1, (40, 2))
    d = np.sqrt(((zt[:, None, :] - zc[None, :, :]) ** 2).sum(-1))
    for k in (1, 3):
        om = match_optimal(zt, zc, k=k)
        assert np.bincount(om.t_row, minlength=12).tolist() == [k] * 12
        assert len(np.unique(om.c_row)) == len(om.c_row)
        assert om.dist.sum() == pytest.approx(_lp_assignment(d, k), rel=1e-9)
    # caliper: as many pairs within it as possible, none beyond it
    cal = float(np.quantile(d.min(axis=1), 0.7))
    om = match_optimal(zt, zc, caliper=cal)
    assert (om.dist <= cal).all() and (om.n_matched == 0).sum() >= 1
    assert set(om.reason[om.n_matched == 0]) == {"no comparison within the caliper left by the optimal matching"}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_full_matching_against_lp_with_ties_and_cells(seed):
    rng = np.random.default_rng(seed)
    # a coarse score, so many distances tie (including zeros), in two exact cells
    st, sc = rng.integers(0, 8, 30) / 8, rng.integers(0, 8, 70) / 8
    ct, cc = rng.integers(0, 2, 30), rng.integers(0, 2, 70)
    fm = match_full(st, sc, t_cell=ct, c_cell=cc)
    opt = 0.0
    for g in (0, 1):
        opt += _lp_edge_cover(np.abs(st[ct == g][:, None] - sc[cc == g][None, :]))[0]
    assert fm.total == pytest.approx(opt, abs=1e-9)
    assert (fm.t_set >= 0).all() and (fm.c_set >= 0).all()
    n_t = np.bincount(fm.t_set, minlength=fm.n_sets)
    n_c = np.bincount(fm.c_set, minlength=fm.n_sets)
    assert ((n_t >= 1) & (n_c >= 1) & ((n_t == 1) | (n_c == 1))).all()  # stars
    for s in range(fm.n_sets):  # sets never cross cells
        assert len(set(ct[fm.t_set == s]) | set(cc[fm.c_set == s])) == 1
    t_row, c_row, w = set_pairs(fm)
    assert np.allclose(np.bincount(t_row, weights=w), 1.0)
    np.testing.assert_allclose(np.bincount(c_row, weights=w, minlength=70), (n_t / n_c)[fm.c_set])


def test_full_matching_caliper_and_empty_cells():
    st, sc = np.array([0.1, 0.5, 0.9]), np.array([0.12, 0.48, 0.2])
    fm = match_full(st, sc, caliper=0.05, t_cell=[0, 0, 1], c_cell=[0, 0, 0])
    assert fm.t_set[2] == -1 and fm.t_reason[2] == "no comparison in its exact-match cell"
    assert fm.c_set[2] == -1  # 0.2 is beyond the caliper of every treated unit in its cell
    fm = match_full(st, sc, caliper=0.05)
    assert fm.t_reason[2] == "no comparison within the caliper"
    with pytest.raises(DataError, match="caliper"):
        match_full(st, sc, caliper=0)


def test_optimal_methods_in_match(lalonde):
    m = pleval.match(lalonde, COLS, method="optimal", k=2, caliper=0.1)
    assert "optimal 1:2 pair matching" in m.summary() and "caliper 0.1" in m.summary()
    assert (m.matched.groupby("_set").size() <= 3).all()
    mf = pleval.match(lalonde, COLS, method="full", distance=["age", "educ", "re74", "re75"])
    assert "Mahalanobis" in mf.summary() and mf.propensity is None
    assert mf.n_treated_matched == 185
    assert np.isfinite(mf.estimate().raw.estimate)
    with pytest.raises(DataError, match="link"):
        pleval.match(lalonde, COLS, method="full", link="cloglog")
    with pytest.raises(DesignError, match="exact-match keys"):
        from pleval.matching import optimal

        old = optimal.MAX_CELL
        optimal.MAX_CELL = 100
        try:
            pleval.match(lalonde, COLS, method="optimal")
        finally:
            optimal.MAX_CELL = old
