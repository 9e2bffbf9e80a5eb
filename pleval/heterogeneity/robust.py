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

``adjust=False`` drops c (CR0), keeping the df. The prediction interval of the pooled effect
for a new school is ``μ̂ ± t_df √(SE_R² + τ̂²)`` (as metafor's ``predict`` on a robust fit).
The sandwich is :func:`pleval.inference.ols` with these weights (``cluster_df``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from ..errors import DataError
from ..inference.robust import ols
from .meta import MetaAnalysis
from .metareg import MetaRegression

DF_CONVENTIONS = ("G-p", "G-1")


@dataclass(frozen=True, repr=False)
class RobustMeta(ResultMixin):
    """Result of :func:`cluster_robust` (immutable). ``coefficients``: one row per term
    (``estimate, se, statistic, df, pvalue, ci_low, ci_high``); ``pi_low``/``pi_high``: the
    prediction interval of a pooled effect (NaN for a meta-regression)."""

    kind: str
    method: str
    k: int
    n_clusters: int
    df: float
    df_convention: str
    adjust: bool
    coefficients: pd.DataFrame
    vcov: np.ndarray
    tau2: float
    qm: float
    qm_df: tuple[int, float]
    qm_pvalue: float
    pi_low: float
    pi_high: float
    level: float

    def to_frame(self) -> pd.DataFrame:
        return self.coefficients.copy()

    def summary(self) -> str:
        c = self.coefficients
        how = ("CR1" if self.adjust else "CR0") + f", df {self.df_convention} = {self.df:g}"
        lines = [f"Cluster-robust {self.kind} ({self.method}), k = {self.k}, {self.n_clusters} clusters ({how})",
                 f"  {'term':<22}{'estimate':>11}{'SE':>11}{'t':>9}{'p':>10}{'CI low':>11}{'CI high':>11}"]
        for name, r in c.iterrows():
            lines.append(f"  {str(name):<22}{r.estimate:>11.4g}{r.se:>11.4g}{r.statistic:>9.3f}{r.pvalue:>10.3g}"
                         f"{r.ci_low:>11.4g}{r.ci_high:>11.4g}")
        if np.isfinite(self.qm):
            lines.append(f"  moderators together: F({self.qm_df[0]}, {self.qm_df[1]:g}) = {self.qm:.4f}, p = {self.qm_pvalue:.3g}")
        if np.isfinite(self.pi_low):
            lines.append(f"  {self.level:.0%} prediction interval for a new school: {self.pi_low:.4g} to {self.pi_high:.4g}")
        return "\n".join(lines)


def cluster_robust(fit: MetaAnalysis | MetaRegression, cluster, *, adjust: bool = True, df: str = "G-p",
                   level: float | None = None) -> RobustMeta:
    """Cluster-robust SEs, tests and intervals for ``fit`` (a :class:`MetaAnalysis` or
    :class:`MetaRegression` of independent estimates) with one cluster label per estimate
    (module docstring). ``level`` defaults to the fit's."""
    if df not in DF_CONVENTIONS:
        raise DataError(f"df must be one of {DF_CONVENTIONS}; got {df!r}")
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
    cl = np.asarray(cluster)
    if cl.shape != y.shape:
        raise DataError(f"cluster must have one label per estimate ({y.size}); got {cl.size}")
    if pd.isna(pd.Series(cl)).any():
        raise DataError("cluster: some estimates have no cluster label")
    level = fit.level if level is None else float(level)
    r = ols(y, X, weights=1.0 / (v + fit.tau2), clusters=cl, vcov="CR1" if adjust else "CR0", names=names,
            cluster_df="G-p" if df == "G-p" else "G-1")
    dfree = float(r.coef_df(0))
    se = r.se
    crit = stats.t.ppf(0.5 + level / 2, dfree)
    stat = r.params / se
    coef = pd.DataFrame({"estimate": r.params, "se": se, "statistic": stat, "df": dfree,
                         "pvalue": 2 * stats.t.sf(np.abs(stat), dfree),
                         "ci_low": r.params - crit * se, "ci_high": r.params + crit * se},
                        index=pd.Index(names, name="term"))
    m = X.shape[1] - 1
    qm = qm_p = math.nan
    if m:
        b = r.params[1:]
        qm = float(b @ np.linalg.solve(r.vcov[1:, 1:], b)) / m
        qm_p = float(stats.f.sf(qm, m, dfree))
    pi = (math.nan, math.nan)
    if kind == "meta-analysis":
        half = crit * math.sqrt(se[0] ** 2 + fit.tau2)
        pi = (float(r.params[0] - half), float(r.params[0] + half))
    return RobustMeta(kind=kind, method=fit.method, k=y.size, n_clusters=int(r.n_clusters), df=dfree, df_convention=df,
                      adjust=bool(adjust), coefficients=coef, vcov=r.vcov, tau2=float(fit.tau2), qm=qm,
                      qm_df=(m, dfree), qm_pvalue=qm_p, pi_low=pi[0], pi_high=pi[1], level=level)


__all__ = ["cluster_robust", "RobustMeta", "DF_CONVENTIONS"]
