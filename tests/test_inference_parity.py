"""CR2, its weighted forms and the HTZ test against published clubSandwich output.

References (each number below is quoted from its source, to the digits published):

* MLDA: Angrist & Pischke's (2014) minimum-legal-drinking-age panel (``deaths.dta``, shipped in
  clubSandwich's ``auxilliary/`` folder), motor-vehicle deaths of 18–20 year-olds 1970–1983,
  51 states × 14 years, state and year fixed effects, clustered by state. Published output:
  J. E. Pustejovsky, "Clustered standard errors and hypothesis tests in fixed effects models"
  (jepusto.com, 2016, updated 2024-04-09; ``coef_test`` and ``Wald_test`` printouts).
* Achievement Awards (Angrist & Lavy 2009; clubSandwich ``data(AchievementAwardsRCT)``), girls,
  years 2000–2002, school fixed effects, clustered by school (35 schools): Pustejovsky & Tipton
  (2018, JBES 36:672–683), Table 2 ("AHT" rows), made by ``paper_ClusterRobustTesting/R/
  Achievement-Awards-example.R`` in the clubSandwich repository.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pleval import DataError
from pleval.inference import ols

from .test_inference import _clustered, _pinv_sqrt

REF = Path(__file__).parent / "reference"


def _dummies(s: pd.Series, prefix: str, drop_first: bool) -> pd.DataFrame:
    return pd.get_dummies(s, prefix=prefix, drop_first=drop_first, dtype=float)


@pytest.fixture(scope="module")
def mlda():
    d = pd.read_csv(REF / "mlda_deaths.csv")
    fe = pd.concat([_dummies(d.state, "state", False), _dummies(d.year, "year", True)], axis=1)
    return d, fe


def _R(names, columns):
    R = np.zeros((len(names), len(columns)))
    for i, nm in enumerate(names):
        R[i, list(columns).index(nm)] = 1.0
    return R


def test_mlda_unweighted_cr2_matches_clubsandwich(mlda):
    """coef_test(lm_unweighted, "CR2", Satterthwaite)["legal",]: 7.59, SE 2.43, t 3.12, df 25.7,
    p 0.00442 — identical under both CR2 forms (no weights)."""
    d, fe = mlda
    X = pd.concat([d[["legal"]], fe], axis=1)
    for form in ("transformed", "clubsandwich"):
        b, se, df, p = ols(d.mrate, X, clusters=d.state, cr2=form).coef("legal")
        assert (round(b, 2), round(se, 2), round(b / se, 2), round(df, 1), round(p, 5)) == (7.59, 2.43, 3.12, 25.7, 0.00442)


def test_mlda_weighted_cr2_clubsandwich_form(mlda):
    """Population-weighted: coef_test(lm_weighted, "CR2", Satterthwaite)["legal",] prints 7.5, SE 2.3,
    t 3.27, df 8.65, p 0.0103 (clubSandwich's default working model Φ = I). pleval's default
    (√W-transformed) CR2 gives SE 2.286 with 14.0 df on the same fit — the forms differ when
    weights vary within clusters."""
    d, fe = mlda
    X = pd.concat([d[["legal"]], fe], axis=1)
    fit = ols(d.mrate, X, clusters=d.state, weights=d["pop"], cr2="clubsandwich")
    b, se, df, p = fit.coef("legal")
    assert (round(b, 1), round(se, 1), round(b / se, 2), round(df, 2), round(p, 4)) == (7.5, 2.3, 3.27, 8.65, 0.0103)
    tr = ols(d.mrate, X, clusters=d.state, weights=d["pop"])
    assert tr.params[0] == pytest.approx(b, rel=1e-12)
    assert tr.se[0] == pytest.approx(2.2864, abs=1e-4) and tr.df[0] == pytest.approx(14.005, abs=1e-3)
    # the clubSandwich form is invariant to rescaling the weights, as the transformed one is
    again = ols(d.mrate, X, clusters=d.state, weights=d["pop"] / 1e6, cr2="clubsandwich")
    np.testing.assert_allclose(again.vcov, fit.vcov, rtol=1e-8)
    assert again.df[0] == pytest.approx(df, rel=1e-8)


def test_mlda_two_regressors_and_hausman_htz(mlda):
    """lm_FE (legal + beertaxa + FE): legal 7.59, SE 2.51, t 3.019, df 24.58, p 0.00583; beertaxa
    3.82, SE 5.27, t 0.725, df 5.77, p 0.49663. Hausman (legal, beertaxa, their state-centred
    versions, year FE, no state FE): Wald_test(..., constrain_zero(c("legal_cent","beer_cent")),
    "CR2") -> HTZ F 2.57 on (2, 12.4), p 0.117; coef_test rows legal −9.180 (7.62, df 24.94),
    beertaxa 3.395 (9.40, 6.44), legal_cent 16.768 (8.53, 33.98), beer_cent 0.424 (9.25, 5.86)."""
    d = mlda[0]
    d = d[d.beertaxa.notna()].reset_index(drop=True)
    state, year = _dummies(d.state, "state", False), _dummies(d.year, "year", True)
    X = pd.concat([d[["legal", "beertaxa"]], state, year], axis=1)
    fit = ols(d.mrate, X, clusters=d.state)
    got = [tuple(round(v, r) for v, r in zip((b, se, b / se, df, p), (2, 2, 3, 2, 5)))
           for b, se, df, p in (fit.coef("legal"), fit.coef("beertaxa"))]
    assert got == [(7.59, 2.51, 3.019, 24.58, 0.00583), (3.82, 5.27, 0.725, 5.77, 0.49663)]

    cent = d[["legal", "beertaxa"]] - d.groupby("state")[["legal", "beertaxa"]].transform("mean")
    cent.columns = ["legal_cent", "beer_cent"]
    Xh = pd.concat([d[["legal", "beertaxa"]], cent, _dummies(d.year, "year", False)], axis=1)
    h = ols(d.mrate, Xh, clusters=d.state)
    rows = [(round(b, 3), round(se, 2), round(df, 2)) for b, se, df, _ in (h.coef(c) for c in Xh.columns[:4])]
    assert rows == [(-9.180, 7.62, 24.94), (3.395, 9.40, 6.44), (16.768, 8.53, 33.98), (0.424, 9.25, 5.86)]
    t = h.wald_test(_R(["legal_cent", "beer_cent"], Xh.columns))
    assert t.test == "HTZ" and t.df1 == 2
    assert (round(t.F, 2), round(t.df2, 1), round(t.pvalue, 3)) == (2.57, 12.4, 0.117)


@pytest.fixture(scope="module")
def awards():
    g = pd.read_csv(REF / "achievement_awards_girls.csv.gz")
    t01 = (g.treated * (g.year == 2001)).astype(float)
    cols = {f"school{s}": (g.school_id == s).astype(float) for s in sorted(g.school_id.unique())}
    for yv in (2001, 2002):
        cols[f"y{yv}"] = (g.year == yv).astype(float)
        for st in ("Religious", "Secular"):
            cols[f"y{yv}:{st}"] = ((g.year == yv) & (g.school_type == st)).astype(float)
    for c in ("father_ed", "mother_ed", "immigrant"):
        cols[c] = g[c].astype(float)
    cols["sibs_4"] = (g.siblings >= 4).astype(float)
    for q in (2, 3, 4):
        cols[f"qrtl{q}"] = (g.qrtl == q).astype(float)
    for h in (1, 2):
        cols[f"t01:half{h}"] = t01 * (g.half == h)
    ate = pd.DataFrame(cols)
    for st in ("Religious", "Secular"):
        for h in (1, 2):
            cols[f"t01:half{h}:{st}"] = t01 * (g.half == h) * (g.school_type == st)
    return g, ate, pd.DataFrame(cols)


def test_achievement_awards_htz_table(awards):
    """Pustejovsky & Tipton (2018) Table 2, AHT rows (F, df, p): ATE upper half 5.169, 18.13,
    0.03539; ATE joint 3.389, 16.97, 0.05775; moderation upper half 1.665, 7.84, 0.24959;
    moderation joint 3.091, 3.69, 0.16057. School dummies stand in for plm's within transform."""
    g, ate, mod = awards
    assert g.school_id.nunique() == 35 and len(g) == 5921
    fa = ols(g.Bagrut_status, ate, clusters=g.school_id)
    fm = ols(g.Bagrut_status, mod, clusters=g.school_id)
    tests = [
        fa.wald_test(_R(["t01:half2"], ate.columns)),
        fa.wald_test(_R(["t01:half1", "t01:half2"], ate.columns)),
        fm.wald_test(_R(["t01:half2:Religious", "t01:half2:Secular"], mod.columns)),
        fm.wald_test(_R(["t01:half1:Religious", "t01:half1:Secular", "t01:half2:Religious", "t01:half2:Secular"],
                        mod.columns)),
    ]
    got = [(round(t.F, 3), round(t.df2, 2), round(t.pvalue, 5)) for t in tests]
    assert got == [(5.169, 18.13, 0.03539), (3.389, 16.97, 0.05775), (1.665, 7.84, 0.24959), (3.091, 3.69, 0.16057)]
    # q = 1: HTZ is the Satterthwaite t test of the coefficient
    b, se, df, p = fa.coef("t01:half2")
    assert tests[0].F == pytest.approx((b / se) ** 2, rel=1e-10) and tests[0].df2 == pytest.approx(df, rel=1e-10)
    # F and chi2 references on the same statistic
    f = fa.wald_test(_R(["t01:half1", "t01:half2"], ate.columns), test="F")
    assert f.df2 == 34 and f.Q == pytest.approx(tests[1].Q, rel=1e-12)
    assert fa.wald_test(_R(["t01:half1", "t01:half2"], ate.columns), test="chi2").df2 == np.inf


@pytest.mark.parametrize("seed", [1, 2])
def test_clubsandwich_form_equals_direct_matrix_implementation(seed):
    """The weighted clubSandwich form against the n×n definition: A_g = (B_g^+)^{1/2} inverted,
    B_g = [(I − H)(I − H)']_gg, H = X M X'W; Satterthwaite df and HTZ η from the explicit q_g."""
    y, X, cl, w = _clustered(seed, G=9, weights=True)
    n, k = X.shape
    W = np.diag(w)
    M = np.linalg.inv(X.T @ W @ X)
    IH = np.eye(n) - X @ M @ X.T @ W
    e = IH @ y
    groups = [np.flatnonzero(cl == g) for g in np.unique(cl)]
    A = [_pinv_sqrt(IH[i] @ IH[i].T) for i in groups]
    meat = sum(np.outer(v, v) for v in (X[i].T @ W[np.ix_(i, i)] @ a @ e[i] for i, a in zip(groups, A)))
    V = M @ meat @ M
    fit = ols(y, X, clusters=cl, weights=w, cr2="clubsandwich")
    np.testing.assert_allclose(fit.vcov, V, rtol=1e-9)

    def q_vectors(C):
        return np.array([[IH[i].T @ (a @ W[np.ix_(i, i)] @ X[i] @ M @ c) for i, a in zip(groups, A)] for c in C])

    def eta(C):
        Qv = q_vectors(C)  # q × G × n
        Om = np.einsum("sgn,tgn->st", Qv, Qv)
        lam, vec = np.linalg.eigh(Om)
        Qv = np.einsum("su,ugn->sgn", (vec / np.sqrt(lam)) @ vec.T, Qv)
        P = np.einsum("sgn,thn->sgth", Qv, Qv)
        q = len(C)
        tot = sum(np.sum(P[s, :, t, :] * P[t, :, s, :]) + np.sum(P[s, :, s, :] * P[t, :, t, :])
                  for s in range(q) for t in range(q))
        return q * (q + 1) / tot

    for j in range(k):
        assert fit.df[j] == pytest.approx(eta(np.eye(k)[[j]]), rel=1e-8)
    C = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    assert fit.cr2_blocks.eta(C) == pytest.approx(eta(C), rel=1e-8)
    # with weights varying within clusters the two forms differ
    tr = ols(y, X, clusters=cl, weights=w)
    assert not np.allclose(tr.vcov, fit.vcov, rtol=1e-3)


def test_wald_test_errors():
    y, X, cl, _ = _clustered(3)
    fit = ols(y, X, clusters=cl, vcov="CR1")
    with pytest.raises(DataError, match="HTZ test needs a CR2 or HC2 fit"):
        fit.wald_test(np.eye(4)[1:3], test="HTZ")
    assert fit.wald_test(np.eye(4)[1:3]).test == "F"
    with pytest.raises(DataError, match="columns"):
        fit.wald_test(np.eye(3))
    with pytest.raises(DataError, match="cr2 must be one of"):
        ols(y, X, clusters=cl, cr2="sandwich")
