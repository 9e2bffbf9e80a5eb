"""Cluster-robust inference for a meta-analysis or meta-regression (Hedges, Tipton & Johnson
2010; metafor's ``robust()``).

The fitted model keeps its weights ``w_i = 1/(v_i + τ̂²)`` and its estimate
``β̂ = (X'WX)⁻¹X'Wy``; only the covariance changes, from the model-based ``(X'WX)⁻¹`` to the
sandwich over clusters g = 1..G (schools whose estimates share something — a comparison
school, a district; or one cluster per estimate)::

    V_R = c · (X'WX)⁻¹ [Σ_g X_g'W_g e_g e_g'W_g X_g] (X'WX)⁻¹,      e = y − Xβ̂,

with t tests and intervals on ``df`` degrees of freedom and the moderators tested together by
``F = β̂_m'V_m⁻¹β̂_m / m ~ F(m, df)``. Two conventions for the small-sample factor c and df
(``df=``):

* ``"G-p"`` (default; metafor's ``robust(..., adjust=TRUE)``): ``c = G/(G − p)``, df = G − p;
* ``"G-1"`` (Stata's ``vce(cluster)``): ``c = G/(G − 1) · (k − 1)/(k − p)``, df = G − 1;

``adjust=False`` drops c (CR0), keeping the df.

``vcov="CR2"`` (the default of :meth:`SchoolEffects.cluster_robust` and ``pleval schools
--cluster``) adjusts each cluster's residuals instead, ``A_g = (I − H̃_gg)^{−1/2}`` on the
√w-transformed model (Bell & McCaffrey 2002; Tipton 2015; Pustejovsky & Tipton 2018), with
Satterthwaite df for each coefficient and the moderators tested together by the HTZ test
(``F = (η − m + 1)/(η m) · β̂_m'V_m⁻¹β̂_m ~ F(m, η − m + 1)``): metafor's ``robust(...,
clubSandwich=TRUE)``, clubSandwich's CR2 with the inverse-variance working model. CR1 on G − p
df rejects too often when clusters are few or a moderator has high-leverage clusters (the
simulation in docs/heterogeneity.md); CR2 does not.

The prediction interval of the pooled effect for a new school is ``μ̂ ± t_df √(SE_R² + τ̂²)``
(as metafor's ``predict`` on a robust fit; under CR2 on the intercept's Satterthwaite df).
The sandwich is :func:`pleval.inference.ols` with these weights (``cluster_df``, ``vcov``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._align import is_labelled, paired
from .._results import Frame, ResultMixin
from ..errors import DataError
from ..inference.robust import ols
from .meta import MetaAnalysis
from .metareg import MetaRegression

DF_CONVENTIONS = ("G-p", "G-1")
ROBUST_VCOV = ("CR1", "CR2")


@dataclass(frozen=True, repr=False)
class RobustMeta(ResultMixin):
    """Result of :func:`cluster_robust` (immutable). ``coefficients``: one row per term
    (``estimate, se, statistic, df, pvalue, ci_low, ci_high``); ``pi_low``/``pi_high``: the
    prediction interval of a pooled effect (NaN for a meta-regression). ``vcov_type``: ``"CR2"``,
    ``"CR1"`` or ``"CR0"``; ``df`` the df of the tests under CR1/CR0, under CR2 the intercept's
    Satterthwaite df (each term's in ``coefficients.df``)."""

    kind: str
    method: str
    k: int
    n_clusters: int
    df: float
    df_convention: str
    adjust: bool
    coefficients: pd.DataFrame = Frame()
    vcov: np.ndarray
    tau2: float
    qm: float
    qm_df: tuple[int, float]
    qm_pvalue: float
    pi_low: float
    pi_high: float
    level: float
    vcov_type: str = "CR1"

    def to_frame(self) -> pd.DataFrame:
        return self.coefficients.copy()

    def summary(self) -> str:
        c = self.coefficients
        how = ("CR2, Satterthwaite df" if self.vcov_type == "CR2"
               else f"{self.vcov_type}, df {self.df_convention} = {self.df:g}")
        per_df = self.vcov_type == "CR2"
        lines = [f"Cluster-robust {self.kind} ({self.method}), k = {self.k}, {self.n_clusters} clusters ({how})",
                 f"  {'term':<22}{'estimate':>11}{'SE':>11}{'t':>9}" + (f"{'df':>7}" if per_df else "")
                 + f"{'p':>10}{'CI low':>11}{'CI high':>11}"]
        for name, r in c.iterrows():
            lines.append(f"  {str(name):<22}{r.estimate:>11.4g}{r.se:>11.4g}{r.statistic:>9.3f}"
                         + (f"{r.df:>7.2f}" if per_df else "")
                         + f"{r.pvalue:>10.3g}{r.ci_low:>11.4g}{r.ci_high:>11.4g}")
        if np.isfinite(self.qm):
            test = "HTZ " if per_df else ""
            lines.append(f"  moderators together: {test}F({self.qm_df[0]}, {self.qm_df[1]:.4g}) = {self.qm:.4f}, "
                         f"p = {self.qm_pvalue:.3g}")
        if np.isfinite(self.pi_low):
            lines.append(f"  {self.level:.0%} prediction interval for a new school: {self.pi_low:.4g} to {self.pi_high:.4g}")
        return "\n".join(lines)


def cluster_robust(fit: MetaAnalysis | MetaRegression, cluster, *, vcov: str = "CR1", adjust: bool = True,
                   df: str = "G-p", level: float | None = None) -> RobustMeta:
    """Cluster-robust SEs, tests and intervals for ``fit`` (a :class:`MetaAnalysis` or
    :class:`MetaRegression` of independent estimates) with one cluster label per estimate
    (module docstring): a pandas ``cluster`` is paired by label with the rows of a fit built from
    pandas objects (:func:`_clusters`; docs/api.md, "Several vectors"), anything else by position.
    ``vcov``: ``"CR1"`` (metafor's ``robust()`` default; ``adjust`` and ``df`` choose its factor
    and df) or ``"CR2"`` (``robust(..., clubSandwich=TRUE)``). ``level`` defaults to the fit's."""
    if df not in DF_CONVENTIONS:
        raise DataError(f"df must be one of {DF_CONVENTIONS}; got {df!r}")
    if vcov not in ROBUST_VCOV:
        raise DataError(f"vcov must be one of {ROBUST_VCOV}; got {vcov!r}")
    if vcov == "CR2" and not adjust:
        raise DataError("adjust=False (CR0) applies to vcov='CR1'; CR2 has its own adjustment")
    if isinstance(fit, MetaAnalysis):
        if fit.correlated:
            raise DataError("cluster_robust needs a meta-analysis of independent estimates (fitted without vcov)")
        X, names, kind = np.ones((fit.k, 1)), ["intercept"], "meta-analysis"
    elif isinstance(fit, MetaRegression):
        if not fit.independent:
            raise DataError("cluster_robust needs a meta-regression of independent estimates (fitted without vcov)")
        X, names, kind = np.asarray(fit.design), list(fit.coefficients.index), "meta-regression"
    else:
        raise DataError(f"fit must be a MetaAnalysis or MetaRegression; got {type(fit).__name__}")
    y, v = np.asarray(fit.estimates, float), np.asarray(fit.ses, float) ** 2
    cl = _clusters(fit, cluster)
    if cl.shape != y.shape:
        raise DataError(f"cluster must have one label per estimate ({y.size}); got {cl.size}")
    if pd.isna(pd.Series(cl)).any():
        raise DataError("cluster: some estimates have no cluster label")
    level = fit.level if level is None else float(level)
    kind_vcov = vcov if vcov == "CR2" or adjust else "CR0"
    r = ols(y, X, weights=1.0 / (v + fit.tau2), clusters=cl, vcov=kind_vcov, names=names,
            cluster_df="G-p" if df == "G-p" else "G-1")
    dfs = r.df  # Satterthwaite per coefficient under CR2; the convention's df for all under CR1/CR0
    se = r.se
    crit = stats.t.ppf(0.5 + level / 2, dfs)
    stat = r.params / se
    coef = pd.DataFrame({"estimate": r.params, "se": se, "statistic": stat, "df": dfs,
                         "pvalue": 2 * stats.t.sf(np.abs(stat), dfs),
                         "ci_low": r.params - crit * se, "ci_high": r.params + crit * se},
                        index=pd.Index(names, name="term"))
    m = X.shape[1] - 1
    qm = qm_p = math.nan
    qm_df = (m, float(dfs[0]))
    if m and vcov == "CR2":
        test = r.wald_test(np.eye(X.shape[1])[1:], test="HTZ")
        qm, qm_df, qm_p = float(test.F), (m, float(test.df2)), float(test.pvalue)
    elif m:
        b = r.params[1:]
        qm = float(b @ np.linalg.solve(r.vcov[1:, 1:], b)) / m
        qm_p = float(stats.f.sf(qm, m, dfs[0]))
    pi = (math.nan, math.nan)
    if kind == "meta-analysis":
        half = crit[0] * math.sqrt(se[0] ** 2 + fit.tau2)
        pi = (float(r.params[0] - half), float(r.params[0] + half))
    return RobustMeta(kind=kind, method=fit.method, k=y.size, n_clusters=int(r.n_clusters), df=float(dfs[0]),
                      df_convention=df if vcov != "CR2" else "Satterthwaite", adjust=bool(adjust), coefficients=coef,
                      vcov=r.vcov, tau2=float(fit.tau2), qm=qm, qm_df=qm_df, qm_pvalue=qm_p, pi_low=pi[0],
                      pi_high=pi[1], level=level, vcov_type=kind_vcov)


def _clusters(fit: MetaAnalysis | MetaRegression, cluster) -> np.ndarray:
    """``cluster`` in the order of the fit's rows: a Series paired by label with the rows of a fit
    built from pandas objects (``fit.index``; :func:`pleval._align.paired`: a label in one and not
    the other, or held twice, is an error naming both), otherwise by position."""
    if fit.index is not None and is_labelled(cluster):
        _, cluster = paired(("fit.index", "cluster"), pd.DataFrame(index=fit.index), cluster)
    return np.asarray(cluster)


__all__ = ["cluster_robust", "RobustMeta", "DF_CONVENTIONS", "ROBUST_VCOV"]
