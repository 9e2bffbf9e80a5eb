"""The school-fixed-effects propensity model (``ps_model="fixed"``) against a published R fit of
the same model: R package bife's static probit with individual fixed effects on its ``psid``
data (Hyslop 1999; 1,461 married women × 9 years, Panel Study of Income Dynamics; the copy
shipped in bife 0.7.3, github.com/amrei-stammann/bife commit 3d289a75, ``data/psid.rda``:
tests/reference/psid_lfp.csv.gz).

bife vignette "How to use bife" (vignettes/howto.Rmd, bife 0.7.1–0.7.3)::

    bife(LFP ~ KID1 + KID2 + KID3 + log(INCH) + AGE + I(AGE^2) | ID, data = psid, model = "probit")
    KID1 -0.7144667 (0.0562414)   KID2 -0.4114554 (0.0515524)   KID3 -0.1298776 (0.0415477)
    log(INCH) -0.2417657 (0.0541720)   AGE 0.2319724 (0.0375351)   I(AGE^2) -0.0028846 (0.0004989)
    residual deviance= 6058.88, null deviance= 8152.05, n= 5976, N= 664
    ( 7173 observation(s) deleted due to perfect classification )
    Number of Fisher Scoring Iterations: 6;  Average individual fixed effect= -1.121

The structure is pleval's: a binary "treatment" (LFP) on covariates plus one indicator per
cluster (woman ↔ school, year ↔ student), clusters without both values left out (bife's
"perfect classification", pleval's schools without a within-school contrast).

The printed coefficients are not the converged maximum-likelihood estimate: bife stops its Fisher
scoring when the deviance changes by less than 1e-8 relatively (``bife_control(dev_tol = 1e-8)``,
R/bife.R ``bife_fit``), which for this probit (Fisher scoring converges linearly) leaves the
coefficients up to 6.4e-5 relatively (2.6e-5 absolutely) from the MLE; bife 0.6 printed KID1 −0.7144874 for the same
model. The test therefore (1) re-implements ``bife_fit`` (start β = 0, α_i = Φ⁻¹((ȳ_i + 0.5)/2),
IRLS with step-halving, the same stopping rule) and checks that it reproduces every printed
digit — coefficients, expected-information SEs, deviances, iterations, mean fixed effect — and
(2) checks that pleval's fit equals the same algorithm run to convergence, and the printed
deviance, sample sizes and exclusions exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pleval
from pleval.data import Columns

REF = Path(__file__).parent / "reference"
NAMES = ["kid1", "kid2", "kid3", "log_inch", "age", "age2"]
PRINTED = [-0.7144667, -0.4114554, -0.1298776, -0.2417657, 0.2319724, -0.0028846]
PRINTED_SE = [0.0562414, 0.0515524, 0.0415477, 0.0541720, 0.0375351, 0.0004989]


def _psid() -> pd.DataFrame:
    d = pd.read_csv(REF / "psid_lfp.csv.gz")
    return pd.DataFrame({"row": np.arange(len(d)), "woman": d.ID.astype(str), "lfp": d.LFP, "kid1": d.KID1,
                         "kid2": d.KID2, "kid3": d.KID3, "log_inch": np.log(d.INCH), "age": d.AGE.astype(float),
                         "age2": d.AGE.astype(float) ** 2, "y": 0.0})


def _bife_probit(y, X, g, dev_tol=1e-8, iter_max=25):
    """bife 0.7.3 ``bife_fit`` for the probit: IRLS on the within-cluster (pseudo-demeaned)
    design, step-halving on the deviance, stop when |Δdev|/(0.1 + dev) < dev_tol."""
    G = g.max() + 1

    def gsum(v):
        return np.bincount(g, weights=v, minlength=G)

    def dev(eta):
        return -2.0 * np.sum(np.where(y == 1, stats.norm.logcdf(eta), stats.norm.logsf(eta)))

    def demean(M, w, den):  # rows of M·w less w × the weighted cluster mean (bife's center_variables)
        return M * w[:, None] - w[:, None] * (np.column_stack([gsum(M[:, j] * w * w) for j in range(M.shape[1])])
                                              / den[:, None])[g]

    beta = np.zeros(X.shape[1])
    alpha = stats.norm.ppf((gsum(y) / np.bincount(g) + 0.5) / 2.0)
    D = dev(X @ beta + alpha[g])
    for it in range(1, iter_max + 1):
        eta = X @ beta + alpha[g]
        mu, dens = stats.norm.cdf(eta), stats.norm.pdf(eta)
        w = dens / np.sqrt(mu * (1 - mu))
        nu = (y - mu) / dens
        den = gsum(w * w)
        b_upd = np.linalg.lstsq(demean(X, w, den), nu * w, rcond=None)[0]
        a_upd = gsum((nu - X @ b_upd) * w * w) / den
        D_old, rho = D, 1.0
        for _ in range(iter_max):
            D = dev(X @ (beta + rho * b_upd) + (alpha + rho * a_upd)[g])
            if np.isfinite(D) and (D - D_old) / (0.1 + abs(D)) <= -dev_tol:
                beta, alpha = beta + rho * b_upd, alpha + rho * a_upd
                break
            rho /= 2.0
        if abs(D - D_old) / (0.1 + abs(D)) < dev_tol:
            break
    eta = X @ beta + alpha[g]
    mu, dens = stats.norm.cdf(eta), stats.norm.pdf(eta)
    w = dens / np.sqrt(mu * (1 - mu))
    MX = demean(X, w, gsum(w * w))
    se = np.sqrt(np.diag(np.linalg.inv(MX.T @ MX)))  # expected information, as bife
    return beta, se, D, alpha, it


def test_bife_fixed_effects_probit_vignette():
    df = _psid()
    varies = df.groupby("woman").lfp.transform("nunique") == 2
    kept = df[varies]
    y, X = kept.lfp.to_numpy(float), kept[NAMES].to_numpy()
    g = pd.factorize(kept.woman)[0]

    # (1) bife's own algorithm reproduces the vignette's printed digits
    beta, se, D, alpha, iters = _bife_probit(y, X, g)
    np.testing.assert_array_equal(np.round(beta, 7), PRINTED)
    np.testing.assert_array_equal(np.round(se, 7), PRINTED_SE)
    assert (round(D, 2), iters, round(alpha.mean(), 3)) == (6058.88, 6, -1.121)
    null = -2 * len(y) * (y.mean() * np.log(y.mean()) + (1 - y.mean()) * np.log(1 - y.mean()))
    assert round(null, 2) == 8152.05

    # (2) pleval: the same exclusions and sample, and the MLE the same algorithm converges to
    cols = Columns(outcome="y", treatment="lfp", school="woman", student_id="row")
    m = pleval.match(df, cols, method="weighting", covariates=NAMES, ps_model="fixed", link="probit")
    ex = m.exclusions.set_index("column")
    assert ex.loc["woman", "n_rows"] == 7173 and m.propensity.n == 5976 == len(kept)
    assert m.data["woman"].nunique() == 664 and m.propensity.link == "probit"
    mle, _, D_mle, _, _ = _bife_probit(y, X, g, dev_tol=1e-15, iter_max=200)
    np.testing.assert_allclose(m.propensity.params[NAMES], mle, rtol=1e-6)
    ps = m.propensity.ps
    t = m.data["lfp"].to_numpy()
    deviance = -2 * np.sum(t * np.log(ps) + (1 - t) * np.log1p(-ps))
    assert deviance == pytest.approx(D_mle, abs=1e-6) and round(deviance, 2) == 6058.88
    # so pleval and the printed coefficients agree to 4 significant digits; the rest (at most
    # 2.6e-5 absolute, 6.4e-5 relative) is the distance of bife's stopped iterate from the MLE
    sig4 = [float(f"{v:.4g}") for v in PRINTED]
    assert [float(f"{v:.4g}") for v in m.propensity.params[NAMES]] == sig4
