"""Subclassification on the propensity score and coarsened exact matching (``method="subclass"``,
``"cem"``) against MatchIt's published lalonde examples (``tests/reference/lalonde.csv``).

Published numbers, from the rendered MatchIt site (gh-pages of
https://github.com/kosukeimai/MatchIt at 58903bc; MatchIt prints four decimals, so the
tolerance is half a unit in the fourth decimal):

* ``reference/method_subclass.html``, example 1: ``matchit(treat ~ age + educ + race + nodegree +
  married + re74 + re75, data = lalonde, method = "subclass", subclass = 7)``,
  ``summary(s.out1, subclass = TRUE)``: sample sizes by subclass and balance within subclasses;
* the same page, example 2: ``method = "subclass", subclass = 10, estimand = "ATE", min.n = 2``,
  ``summary(s.out2)``: "Summary of Balance Across Subclasses" and the sample sizes (ESS);
* ``reference/method_exact.html``, example 1: ``matchit(treat ~ age + race + married + educ,
  data = lalonde, method = "exact")``, ``summary(m.out1)``;
* ``reference/method_cem.html``, example 1: ``matchit(treat ~ age + race + married + educ,
  data = lalonde, method = "cem", cutpoints = list(educ = 5), grouping = list(race =
  list(c("white", "hispan"), c("black"))))``, ``summary(m.out1)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval.data import Columns
from pleval.errors import DataError
from pleval.matching.cem import coarsen, n_bins
from pleval.matching.subclass import subclass_weights, subclassify

LALONDE = Path(__file__).parent / "reference" / "lalonde.csv"
COV = ("age", "educ", "race", "nodegree", "married", "re74", "re75")
COLS = Columns(outcome="re78", treatment="treat", student_id="id", covariates=COV)
STATS = ("mean_treated", "mean_comparison", "smd", "var_ratio", "ecdf_mean", "ecdf_max")
TOL = 5e-5 + 1e-9


@pytest.fixture(scope="module")
def lalonde():
    return pd.read_csv(LALONDE)


def _after(m):
    t = m.balance().table.set_index("variable")
    return {v: tuple(t.loc[v, f"{s}_after"] for s in STATS) for v in t.index}


def test_subclass_att_reproduces_matchit_example_1(lalonde):
    m = pleval.match(lalonde, COLS, method="subclass", subclasses=7, conventions="matchit")
    x = m.matched
    sizes = pd.crosstab(x["treat"], x["_subclass"])
    assert sizes.loc[0].tolist() == [332, 37, 10, 17, 17, 13, 3]
    assert sizes.loc[1].tolist() == [27, 26, 26, 27, 26, 26, 27]
    # subclass means of the PS ("distance") and covariates, treated then control
    x = x.assign(distance=pd.Series(m.propensity.ps, index=m.data.index).loc[x.index])
    means = x.groupby(["_subclass", "treat"])[["distance", "age", "educ", "re74", "re75"]].mean()
    published = {  # subclass: (treated, control) per variable
        0: {"distance": (0.1141, 0.0674), "age": (24.4815, 28.6536), "educ": (10.7407, 10.2590),
            "re74": (3205.1533, 6429.1274), "re75": (1983.7216, 2631.3105)},
        1: {"distance": (0.4522, 0.3958), "age": (29.1154, 29.5135), "educ": (9.1538, 9.7568),
            "re74": (6754.9455, 5617.3241), "re75": (3312.9595, 3257.5161)},
        2: {"distance": (0.5998, 0.6097), "age": (26.6923, 25.9000), "educ": (10.3846, 8.8000),
            "re74": (2416.9731, 1748.8415), "re75": (1350.8111, 1004.3709)},
        3: {"distance": (0.6582, 0.6588), "age": (22.2963, 24.2941), "educ": (10.4074, 11.0588),
            "re74": (663.6473, 1733.6054), "re75": (498.2558, 1882.9978)},
    }
    for s, row in published.items():
        for var, (mt, mc) in row.items():
            np.testing.assert_allclose([means.loc[(s, 1), var], means.loc[(s, 0), var]], [mt, mc], atol=TOL,
                                       err_msg=f"subclass {s + 1}, {var}")
    # ATT weights: comparisons n_1s/n_0s
    w = x.loc[x["treat"] == 0].groupby("_subclass")["_weight"].first()
    np.testing.assert_allclose(w.to_numpy(), sizes.loc[1].to_numpy() / sizes.loc[0].to_numpy())


def test_subclass_ate_reproduces_matchit_example_2(lalonde):
    m = pleval.match(lalonde, COLS, method="subclass", subclasses=10, estimand="ATE", min_n=2,
                     conventions="matchit")
    ss = m.sample_sizes()
    assert ss.loc["matched", "comparison"] == 429 and ss.loc["matched", "treated"] == 185
    np.testing.assert_allclose(ss.loc["matched (ESS)"].tolist(), [332.11, 42.66], atol=5e-3 + 1e-9)
    published = {  # "Summary of Balance Across Subclasses"
        "age": (25.1099, 27.1896, -0.2272, 0.3247, 0.0996, 0.2203),
        "educ": (10.5836, 10.3105, 0.1106, 0.5537, 0.0332, 0.0969),
        "race[black]": (0.4040, 0.3898, 0.0371, np.nan, 0.0142, 0.0142),
        "race[hispan]": (0.0894, 0.1233, -0.1139, np.nan, 0.0340, 0.0340),
        "race[white]": (0.5066, 0.4869, 0.0498, np.nan, 0.0197, 0.0197),
        "nodegree": (0.5194, 0.6163, -0.2049, np.nan, 0.0969, 0.0969),
        "married": (0.2688, 0.4150, -0.3257, np.nan, 0.1462, 0.1462),
        "re74": (2489.2647, 4627.1084, -0.3614, 0.5922, 0.1342, 0.3399),
        "re75": (1532.5437, 2199.1568, -0.2047, 0.9287, 0.0962, 0.1839),
    }
    got = _after(m)
    for var, want in published.items():
        np.testing.assert_allclose(got[var], want, atol=TOL, err_msg=var)
    # the ATE SMD before matching, binary variables by p(1 - p): "Summary of Balance for All Data"
    before = m.balance().table.set_index("variable")["smd_before"]
    np.testing.assert_allclose(before[["age", "race[black]", "married", "re74"]], [-0.2419, 1.6708, -0.7208, -0.5958],
                               atol=TOL)
    assert "average effect" in m.estimate().summary()


def test_cem_reproduces_matchit_example_1(lalonde):
    cols = Columns(outcome="re78", treatment="treat", student_id="id", covariates=("age", "race", "married", "educ"))
    m = pleval.match(lalonde, cols, method="cem", cutpoints={"educ": 5},
                     grouping={"race": [["white", "hispan"], ["black"]]}, conventions="matchit")
    ss = m.sample_sizes()
    assert ss["comparison"].round(2).tolist() == [429, 244, 52.84, 185, 0]
    assert ss["treated"].tolist() == [185, 149, 149, 36, 0]
    published = {
        "age": (24.1007, 23.7091, 0.0547, 0.8882, 0.0140, 0.0897),
        "race[black]": (0.8188, 0.8188, 0.0000, np.nan, 0.0000, 0.0000),
        "race[hispan]": (0.0671, 0.0360, 0.1317, np.nan, 0.0312, 0.0312),
        "race[white]": (0.1141, 0.1452, -0.1051, np.nan, 0.0312, 0.0312),
        "married": (0.1745, 0.1745, -0.0000, np.nan, 0.0000, 0.0000),
        "educ": (10.5369, 10.8649, -0.1631, 0.7974, 0.0177, 0.1865),
    }
    got = _after(m)
    for var, want in published.items():
        np.testing.assert_allclose(got[var], want, atol=TOL, err_msg=var)
    assert m.matched["_set"].eq(-1).all() and m.matched["_subclass"].nunique() == m.diagnostics[
        "subclasses with treated and comparison rows"]
    assert set(m.unmatched["reason"]) == {"no comparison row in its coarsened cell"}


def test_exact_reproduces_matchit_example_1(lalonde):
    cols = Columns(outcome="re78", treatment="treat", student_id="id", covariates=("age", "race", "married", "educ"))
    m = pleval.match(lalonde, cols, method="exact", conventions="matchit")
    ss = m.sample_sizes()
    assert ss["comparison"].round(2).tolist() == [429, 59, 40.36, 370, 0]
    assert ss["treated"].tolist() == [185, 54, 54, 131, 0]
    published = {
        "age": (19.9815, 19.9815, 0, 0.9936, 0, 0), "race[black]": (0.7778, 0.7778, 0, np.nan, 0, 0),
        "race[hispan]": (0.0370, 0.0370, 0, np.nan, 0, 0), "race[white]": (0.1852, 0.1852, 0, np.nan, 0, 0),
        "married": (0.0370, 0.0370, 0, np.nan, 0, 0), "educ": (10.3333, 10.3333, 0, 0.9936, 0, 0),
    }
    got = _after(m)
    for var, want in published.items():
        np.testing.assert_allclose(got[var], want, atol=TOL, err_msg=var)
    assert "exact matching on age" in m.summary()


def test_coarsening_rules():
    x = np.array([0.0, 1.0, 2.0, 2.5, 5.0, 7.5, 10.0])
    assert n_bins(np.arange(614.0), "sturges") == 11  # ceil(log2(614) + 1)
    # 4 equal-width bins: breaks 2.5, 5, 7.5; a value on a break goes up
    assert coarsen(x, 4).tolist() == [1, 1, 1, 2, 3, 4, 4]
    assert coarsen(x, [2.0, 6.0]).tolist() == [1, 1, 2, 2, 2, 3, 3]
    assert coarsen(x, 0).tolist() == list(range(7))
    assert len(set(coarsen(x, "q2"))) == 2
    with pytest.raises(DataError, match="cutpoints rule"):
        coarsen(x, "wide")


def _r_nclass_fd(x, digits=5):
    """R's grDevices::nclass.FD (R >= 4.1, src/library/grDevices/R/calc.R), line by line: h = 2
    IQR(signif(x, 5)); if 0, diff(quantile(x., c(al, 1 - al))) / (1 - 2 al) for al = 1/8, 1/16,
    ..., 1/512 until nonzero; if still 0, 3.5 sd(x); bins ceiling(diff(range(x)) / h * n^(1/3))."""
    xs = np.sort([float(f"{v:.{digits}g}") for v in x])  # signif by decimal formatting

    def q7(p):  # type-7 quantile by hand
        h = (len(xs) - 1) * p
        lo = int(np.floor(h))
        return xs[lo] + (h - lo) * (xs[min(lo + 1, len(xs) - 1)] - xs[lo])

    h = 2 * (q7(0.75) - q7(0.25))
    al = 1 / 4
    while h == 0 and (al := al / 2) >= 1 / 512:
        h = (q7(1 - al) - q7(al)) / (1 - 2 * al)
    if h == 0:
        h = 3.5 * np.std(x, ddof=1)
    return int(np.ceil((max(x) - min(x)) / h * len(x) ** (1 / 3))) if h > 0 else 1


def test_fd_rule_follows_r_when_the_iqr_is_zero():
    """R's nclass.FD widens the quantile range when the IQR is 0 (over half the values equal),
    then falls back to Scott's spread. Before 2026-12-05 pleval gave such a column 1 bin, so CEM
    did not match on it: 1,000 values, 78.8% zeros and the rest Gamma, R gives 45 bins."""
    rng = np.random.default_rng(0)
    zeros = np.where(rng.random(1000) < 0.8, 0.0, rng.gamma(2.0, 3000.0, 1000))
    assert (zeros == 0).mean() == 0.788
    assert n_bins(zeros, "fd") == _r_nclass_fd(zeros) == 45
    assert len(np.unique(coarsen(zeros, "fd"))) > 1
    cases = {
        "97% zeros (1/64 range)": np.where(rng.random(2000) < 0.97, 0.0, rng.exponential(5.0, 2000)),
        "one nonzero (Scott)": np.r_[np.zeros(999), 5.0],
        "flag 0/1, 90% ones": (rng.random(500) < 0.9).astype(float),
        "normal": rng.normal(50, 10, 777),
        "integers": rng.poisson(3.0, 300).astype(float),
        "sign and digits": rng.normal(0, 1, 400) * 1234.56789,
    }
    for name, x in cases.items():
        assert n_bins(x, "fd") == _r_nclass_fd(x), name
    assert n_bins(np.full(10, 3.0), "fd") == 1 == _r_nclass_fd(np.full(10, 3.0))


def test_subclass_weights_and_scoot_by_hand():
    sub = np.array([0, 0, 0, 1, 1, 2, 2, -1])
    t = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(subclass_weights(sub, t, "ATT"), [1, 0.5, 0.5, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(subclass_weights(sub, t, "ATE"), [3, 1.5, 1.5, 2, 2, 0, 0, 0])
    # worked by hand: treated scores 0.1, 0.4, 0.7, 0.8. Three subclasses cut at 0.4 and 0.7
    # leave the top one without a comparison: min_n = 0 drops it; min_n = 1 moves the highest
    # comparison below it (0.6) up
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    t = np.array([1, 0, 0, 1, 0, 0, 1, 1])
    assert subclassify(score, t, n_subclasses=3, min_n=0).tolist() == [0, 0, 0, 1, 1, 1, -1, -1]
    assert subclassify(score, t, n_subclasses=3).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    # four, cut at 0.325, 0.55, 0.725: comparisons by subclass 2, 1, 1, 0. The last takes 0.6
    # from the left; then subclass 3 (index 2) looks left (spare units lie left: (2 - 1)/(0 - 2) < 0)
    # and takes 0.5; then subclass 2 takes 0.3
    assert subclassify(score, t, n_subclasses=4).tolist() == [0, 0, 1, 1, 2, 3, 2, 3]
    with pytest.raises(DataError, match="subclasses"):
        subclassify(score, t, n_subclasses=1)
    with pytest.raises(DataError, match="not enough"):
        subclassify(score, t, n_subclasses=4, min_n=2)
