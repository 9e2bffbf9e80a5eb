"""Leave-one-out meta-regressions and influence diagnostics (Viechtbauer & Cheung 2010;
metafor's ``leave1out()`` and ``influence()`` for an ``rma`` with moderators).

For each school i the meta-regression is refitted without it, with the same τ² estimator and
Knapp–Hartung choice: ``β̂₍ᵢ₎``, its covariance ``Var₍ᵢ₎`` (× ``s²₍ᵢ₎ = Σw r²/(k − 1 − p)`` with
Knapp–Hartung, else 1), ``τ̂²₍ᵢ₎`` and the residual heterogeneity ``QE₍ᵢ₎``. With the full fit
``β̂``, ``Var(β̂)``, weights ``w_i = 1/(v_i + τ̂²)`` and ``A = (X'WX)⁻¹`` (metafor's definitions):

* hat value ``h_i = w_i x_i'Ax_i`` (the diagonal of ``X A X'W``);
* externally standardized residual ``(y_i − x_i'β̂₍ᵢ₎) / √(s²₍ᵢ₎(v_i + τ̂²₍ᵢ₎) + x_i'Var₍ᵢ₎x_i)``;
* DFFITS ``x_i'(β̂ − β̂₍ᵢ₎) / √(s²₍ᵢ₎ h_i (τ̂²₍ᵢ₎ + v_i))``;
* Cook's distance ``(β̂ − β̂₍ᵢ₎)' Var(β̂)⁻¹ (β̂ − β̂₍ᵢ₎)``;
* covariance ratio ``det Var₍ᵢ₎ / det Var(β̂)``;
* DFBETAS per coefficient ``(β̂ − β̂₍ᵢ₎) / √(s²₍ᵢ₎ diag[(X'W̃₍ᵢ₎X)⁻¹])``, ``W̃₍ᵢ₎`` the weights
  ``1/(v_j + τ̂²₍ᵢ₎)`` of all k schools.

A school is *influential* if ``|DFFITS| > 3√(p/(k − p))``, the χ²(p) lower tail at Cook's
distance exceeds 0.5, ``h_i > 3p/k`` or some ``|DFBETAS| > 1``; the school that *drives τ* is
the one whose removal lowers the residual τ̂² the most.

**Vectorized.** The k deleted fits are rows of one batch (:mod:`._metareg_batch`): the full
data in every row with a 0/1 mask removing one school, p × p algebra per row, computed in
blocks of rows (an ``m × k`` array at a time; the work is O(k²p²) per τ² iteration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from ..errors import DataError, DesignError
from . import _metareg_batch as mb
from .meta import _readonly

_BLOCK = 2**21  # array entries per block of deleted fits


@dataclass(frozen=True, repr=False)
class MetaRegressionInfluence(ResultMixin):
    """Result of :func:`leave_one_out_metareg` (immutable; one row per school, ``coef_del`` and
    ``dfbetas`` one column per term)."""

    method: str
    k: int
    terms: tuple
    labels: tuple
    tau2: float
    coef_del: np.ndarray
    se_del: np.ndarray
    tau2_del: np.ndarray
    qe_del: np.ndarray
    rstudent: np.ndarray
    dffits: np.ndarray
    cooks_d: np.ndarray
    cov_ratio: np.ndarray
    hat: np.ndarray
    dfbetas: np.ndarray
    influential: np.ndarray

    @property
    def drives_tau(self) -> int:
        """Position of the school whose removal lowers the residual τ̂² the most."""
        return int(np.argmin(self.tau2_del))

    def to_frame(self) -> pd.DataFrame:
        f = pd.DataFrame({"label": list(self.labels)})
        for j, t in enumerate(self.terms):
            f[f"{t}_del"] = self.coef_del[:, j]
            f[f"{t}_se_del"] = self.se_del[:, j]
        f = f.assign(tau2_del=self.tau2_del, qe_del=self.qe_del, rstudent=self.rstudent, dffits=self.dffits,
                     cooks_d=self.cooks_d, cov_ratio=self.cov_ratio, hat=self.hat, weight_pct=100 * self.hat / self.hat.sum())
        for j, t in enumerate(self.terms):
            f[f"dfbetas_{t}"] = self.dfbetas[:, j]
        return f.assign(influential=self.influential, drives_tau=np.arange(self.k) == self.drives_tau)

    def summary(self) -> str:
        i = self.drives_tau
        n_inf = int(self.influential.sum())
        names = ", ".join(str(self.labels[j]) for j in np.flatnonzero(self.influential)[:10])
        lines = [f"Leave-one-out and influence, meta-regression ({self.method}), k = {self.k}"]
        for j, t in enumerate(self.terms):
            lines.append(f"  {t}: without one school {self.coef_del[:, j].min():.4g} to {self.coef_del[:, j].max():.4g}")
        lines += [f"  residual tau² {self.tau2:.4f}; the school that drives tau is {self.labels[i]!s}: without it "
                  f"{self.tau2_del[i]:.4f}",
                  f"  influential schools (metafor cut-offs): {n_inf}" + (f" ({names}{', ...' if n_inf > 10 else ''})" if n_inf else "")]
        return "\n".join(lines)


def leave_one_out_metareg(mr, labels=None) -> MetaRegressionInfluence:
    """Leave-one-out refits and influence diagnostics of a meta-regression of independent
    estimates (module docstring). ``labels``: school names (default 0..k−1)."""
    from .metareg import MetaRegression

    if not isinstance(mr, MetaRegression):
        raise DataError(f"leave_one_out_metareg needs a MetaRegression; got {type(mr).__name__}")
    if not mr.independent:
        raise DataError("leave-one-out needs independent estimates; this meta-regression used a full vcov")
    y, v, X = np.asarray(mr.estimates), np.asarray(mr.ses) ** 2, np.asarray(mr.design)
    k, p = X.shape
    if k - 1 - p < 1:
        raise DesignError(f"leave-one-out with {p} coefficients needs at least {p + 2} schools; got {k}")
    labels = tuple(range(k)) if labels is None else tuple(labels)
    if len(labels) != k:
        raise DataError(f"labels has {len(labels)} entries for {k} schools")
    kh = mr.knapp_hartung
    beta = mr.coefficients["estimate"].to_numpy()
    vb = np.asarray(mr.vcov)
    w = 1.0 / (v + mr.tau2)
    A0 = np.linalg.inv((X * w[:, None]).T @ X)
    hat = w * np.einsum("ip,pq,iq->i", X, A0, X)
    out = {name: np.empty(k) for name in ("tau2", "qe", "s2", "pred", "vpred")}
    coef, var, varall = np.empty((k, p)), np.empty((k, p, p)), np.empty((k, p))
    rows = max(1, _BLOCK // k)
    for s in range(0, k, rows):  # blocks of deleted fits
        idx = np.arange(s, min(k, s + rows))
        Y, V = np.broadcast_to(y, (idx.size, k)), np.broadcast_to(v, (idx.size, k))
        M = np.ones((idx.size, k))
        M[np.arange(idx.size), idx] = 0.0
        t = mb.tau2_batch(mr.method, Y, V, X, M)
        W, A, b, R = mb.wls_batch(Y, V, X, t, M)
        s2 = (W * R * R).sum(axis=1) / (k - 1 - p) if kh else np.ones(idx.size)
        W0, _, _, R0 = mb.wls_batch(Y, V, X, np.zeros(idx.size), M)
        Vd = A * s2[:, None, None]
        xi = X[idx]
        out["tau2"][idx], out["qe"][idx], out["s2"][idx] = t, (W0 * R0 * R0).sum(axis=1), s2
        out["pred"][idx] = np.einsum("np,np->n", xi, b)
        out["vpred"][idx] = np.einsum("np,npq,nq->n", xi, Vd, xi)
        coef[idx], var[idx] = b, Vd
        varall[idx] = np.einsum("npp->np", mb.wls_batch(Y, V, X, t)[1])
    t, s2 = out["tau2"], out["s2"]
    d = beta[None, :] - coef
    dffits = (X @ beta - out["pred"]) / np.sqrt(s2 * hat * (t + v))
    dfbetas = d / np.sqrt(s2[:, None] * varall)
    cooks = np.einsum("np,pq,nq->n", d, np.linalg.inv(vb), d)
    cov_ratio = np.linalg.det(var) / np.linalg.det(vb)
    rstudent = (y - out["pred"]) / np.sqrt(v * s2 + out["vpred"] + t * s2)
    influential = ((np.abs(dffits) > 3 * np.sqrt(p / (k - p))) | (stats.chi2.cdf(cooks, p) > 0.5) | (hat > 3 * p / k)
                   | (np.abs(dfbetas) > 1).any(axis=1))
    return MetaRegressionInfluence(
        method=mr.method + (" + Knapp-Hartung" if kh else ""), k=k, terms=tuple(mr.coefficients.index), labels=labels,
        tau2=float(mr.tau2), coef_del=_readonly(coef), se_del=_readonly(np.sqrt(np.einsum("npp->np", var))),
        tau2_del=_readonly(t), qe_del=_readonly(out["qe"]), rstudent=_readonly(rstudent), dffits=_readonly(dffits),
        cooks_d=_readonly(cooks), cov_ratio=_readonly(cov_ratio), hat=_readonly(hat), dfbetas=_readonly(dfbetas),
        influential=np.array(influential, dtype=bool),
    )


__all__ = ["leave_one_out_metareg", "MetaRegressionInfluence"]
