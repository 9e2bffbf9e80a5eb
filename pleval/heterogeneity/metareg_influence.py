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

**Vectorized.** Every deleted-fit quantity is p × p algebra on weighted sums over the other
schools, ``Σ_{j≠i} w_ij^m F_j`` (m = 1, 2, 3) of the features ``F_j = (x_jx_j', x_jr_j, r_j², 1)``
with ``w_ij = 1/(v_j + τ̂²₍ᵢ₎)`` and r the residuals of the full-data fixed-effect fit
(:func:`.influence.fe_fit`): ``X'W₍ᵢ₎X``, ``A₍ᵢ₎``, ``β̂₍ᵢ₎ − β̂_FE``, ``Q₍ᵢ₎ = Σwr² − b'Σwxr``,
``r'W²r``, ``tr P = Σw − tr(A X'W²X)`` and ``tr PP = Σw² − 2 tr(A X'W³X) + tr((A X'W²X)²)``.
At unit weights (HE and SJ's start) the sums are the totals minus school i's own term (rank-one
downdates); at FE weights (QE, DL, HS) those of :func:`.influence.loo_weighted_sums` at τ² = 0,
whose fits that would cancel about β̂_FE are summed directly about their own
(:func:`.influence.loo_centres`); DL's ``tr P₀`` of every deleted fit from the full fit's QR
(:func:`._tau2.deleted_trace_p`; the fit without a school that carries nearly all the weight on
its own schools). At
the deleted τ̂²₍ᵢ₎ they are power series in ``τ̂²₍ᵢ₎ − c`` whose coefficients all k fits share
(:func:`.influence.loo_weighted_sums`, as for the meta-analysis without moderators), so a
τ² iteration — Fisher scoring (REML, ML) or Newton steps on ``Q(τ²) = k − 1 − p`` (PM/EB) from the
full-data τ̂², all deleted fits at once — costs O(k·p²) per series term instead of O(k²p²).
A deleted fit the vector iteration has not settled is refitted alone by :mod:`._tau2`; REML and
ML then take each deleted fit's global maximizer on τ² ≥ 0 (:func:`.influence.loo_global_max`),
as :func:`.metareg.meta_regression` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from ..errors import DataError, DesignError
from . import _metareg_batch as mb
from . import _tau2
from .influence import (_CANCEL, Centres, _fe_trace_rows, _scoring, by_power, fe_fit, loo_centres, loo_global_max,
                        loo_weighted_sums)
from .meta import _readonly


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
    estimates (module docstring). ``labels``: school names (default: the fit's, ``mr.labels``)."""
    from .metareg import MetaRegression

    if not isinstance(mr, MetaRegression):
        raise DataError(f"leave_one_out_metareg needs a MetaRegression; got {type(mr).__name__}")
    if not mr.independent:
        raise DataError("leave-one-out needs independent estimates; this meta-regression used a full vcov")
    y, v, X = np.asarray(mr.estimates), np.asarray(mr.ses) ** 2, np.asarray(mr.design)
    k, p = X.shape
    if k - 1 - p < 1:
        raise DesignError(f"leave-one-out with {p} coefficients needs at least {p + 2} schools; got {k}")
    labels = tuple(mr.labels) if labels is None else tuple(labels)
    if len(labels) != k:
        raise DataError(f"labels has {len(labels)} entries for {k} schools")
    kh = mr.knapp_hartung
    kd = k - 1  # schools in each deleted fit
    beta = mr.coefficients["estimate"].to_numpy()
    vb = np.asarray(mr.vcov)
    w = 1.0 / (v + mr.tau2)
    A0 = np.linalg.inv((X * w[:, None]).T @ X)
    hat = w * np.einsum("ip,pq,iq->i", X, A0, X)
    beta_fe, r = fe_fit(y, v, X)
    cen = loo_centres(r, v, X)
    F = _features(X)
    fe = _sums(np.zeros(k), v, F, cen)
    t = _deleted_tau2(mr.method, cen, v, X, F, fe, float(mr.tau2))
    S = _sums(t, v, F, cen)
    A, b, q = _fit(S, p)
    b = b + cen.shift
    s2 = q / (kd - p) if kh else np.ones(k)
    qe = _fit(fe, p)[2]
    Vd = A * s2[:, None, None]
    pred = np.einsum("np,np->n", X, b)
    vpred = np.einsum("np,npq,nq->n", X, Vd, X)
    own = 1.0 / (v + t)  # all k schools at the deleted τ̂², for DFBETAS
    varall = np.einsum("npp->np", np.linalg.inv(S[:, : p * p].reshape(k, p, p)
                                                 + own[:, None, None] * np.einsum("np,nq->npq", X, X)))
    coef, var = beta_fe + b, Vd
    d = beta[None, :] - coef
    dffits = (X @ (beta - beta_fe) - pred) / np.sqrt(s2 * hat * (t + v))
    dfbetas = d / np.sqrt(s2[:, None] * varall)
    cooks = np.einsum("np,pq,nq->n", d, np.linalg.inv(vb), d)
    cov_ratio = np.linalg.det(var) / np.linalg.det(vb)
    rstudent = (r - pred) / np.sqrt(v * s2 + vpred + t * s2)
    influential = ((np.abs(dffits) > 3 * np.sqrt(p / (k - p))) | (stats.chi2.cdf(cooks, p) > 0.5) | (hat > 3 * p / k)
                   | (np.abs(dfbetas) > 1).any(axis=1))
    return MetaRegressionInfluence(
        method=mr.method + (" + Knapp-Hartung" if kh else ""), k=k, terms=tuple(mr.coefficients.index), labels=labels,
        tau2=float(mr.tau2), coef_del=_readonly(coef), se_del=_readonly(np.sqrt(np.einsum("npp->np", var))),
        tau2_del=_readonly(t), qe_del=_readonly(qe), rstudent=_readonly(rstudent), dffits=_readonly(dffits),
        cooks_d=_readonly(cooks), cov_ratio=_readonly(cov_ratio), hat=_readonly(hat), dfbetas=_readonly(dfbetas),
        influential=np.array(influential, dtype=bool),
    )


def _downdate(F: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Σ_{j≠i} w_j F_j`` for every i at weights shared by all deleted fits (total − own; for
    unit weights, where no school's term dominates the totals)."""
    return (w @ F)[None, :] - w[:, None] * F


def _features(X: np.ndarray):
    """The features ``(x x', x r, r², 1)`` of residuals r (k, or n × k for n deleted fits) on the
    last axis."""
    k, p = X.shape
    xx = np.einsum("jp,jq->jpq", X, X).reshape(k, p * p)
    return lambda r: np.concatenate([np.broadcast_to(xx, r.shape + (p * p,)), X * r[..., None], (r * r)[..., None],
                                     np.ones(r.shape + (1,))], axis=-1)


def _sums(t: np.ndarray, v: np.ndarray, F, cen: Centres) -> np.ndarray:
    """``Σ_{j≠i} w_j F_j`` of every deleted fit i at the weights ``w = 1/(v + t_i)``
    (:func:`.influence.loo_weighted_sums` of the residuals of ``cen``: the fits whose sums about
    β̂_FE would cancel summed directly about their own); ``t`` 0 gives the FE weights."""
    return loo_weighted_sums(t, v, lambda r: {1: F(r)}, cen)[1]


def _fit(S: np.ndarray, p: int):
    """From the sums ``S = Σ w (xx', xr, r², 1)`` of each deleted fit (r the full-data FE
    residuals): ``A = (X'WX)⁻¹``, β̂ − β̂_FE and ``Q = Σ w (r − x'(β̂ − β̂_FE))² = Σwr² − b'Σwxr``."""
    pp = p * p
    A = np.linalg.inv(S[:, :pp].reshape(-1, p, p))
    xy = S[:, pp: pp + p]
    b = np.einsum("npq,nq->np", A, xy)
    return A, b, np.maximum(S[:, pp + p] - np.einsum("np,np->n", b, xy), 0.0)


def _fe_traces(v: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``tr P₀`` of every deleted fit at the FE weights ``w = 1/v``, from the full fit's QR
    (:func:`._tau2.deleted_trace_p`); the few fits where that loses digits — the schools that carry
    nearly all the weight left out — on their own schools (:func:`.influence._fe_trace_rows`).
    (Before 2026-12-05 every fit whose ``Σw − tr[(X'WX)⁻¹X'W²X]`` from the shared sums cancelled
    was refitted alone: all k − 1 that keep a school with over 99.9% of the weight, O(k²).)"""
    trace, redo = _tau2.deleted_trace_p(_tau2.weighted_qr(1.0 / v, X), _CANCEL)
    lost = np.flatnonzero(redo)
    trace[lost] = _fe_trace_rows(v, X, lost)
    return trace


def _deleted_tau2(method: str, cen: Centres, v: np.ndarray, X: np.ndarray, F, fe: np.ndarray,
                  tau2_full: float) -> np.ndarray:
    """τ̂² of every deleted fit (module docstring; the estimators of :mod:`._tau2`) from the
    residuals of ``cen``, their features ``F(r)`` (:func:`_features`) and FE-weight sums ``fe``
    (:func:`_sums` at τ² = 0)."""
    r = cen.r
    k, p = X.shape
    kd, pp = k - 1, p * p
    if method == "FE":
        return np.zeros(k)
    if method in ("HE", "SJ"):  # unweighted least squares of the other schools
        Fr = F(r)
        S1 = _downdate(Fr, np.ones(k))
        B, bo, rss = _fit(S1, p)
        if method == "HE":
            xvx = _downdate(Fr[:, :pp] * v[:, None], np.ones(k)).reshape(k, p, p)
            tr = (v.sum() - v) - np.einsum("npq,nqp->n", B, xvx)
            return np.maximum(0.0, (rss - tr) / (kd - p))
        t0 = rss / kd
        q = _fit(_sums(t0, v, F, cen), p)[2]
        return np.where(t0 > 0, t0 * q / (kd - p), 0.0)
    q0 = _fit(fe, p)[2]
    if method == "HS":
        return np.maximum(0.0, (q0 - kd) / fe[:, -1])
    if method == "DL":
        return np.maximum(0.0, (q0 - (kd - p)) / _fe_traces(v, X))
    tol = 1e-10 * (1.0 + float(np.var(r) + np.mean(v)))
    xy = slice(pp, pp + p)

    def parts(t):  # the sums at t, A, Q and r'W²r of every deleted fit
        o = loo_weighted_sums(t, v, by_power(F, {1: None, 2: None, 3: pp} if method == "REML"
                                       else {1: None, 2: None}), cen)
        A, b, q = _fit(o[1], p)
        S2 = o[2]
        wr2 = np.maximum(S2[:, pp + p] - 2 * np.einsum("np,np->n", b, S2[:, xy])
                         + np.einsum("np,npq,nq->n", b, S2[:, :pp].reshape(k, p, p), b), 0.0)
        return o, A, q, wr2

    def refit(i):  # rare: a fit the vector iteration did not settle, alone
        keep = np.arange(k) != i
        return _tau2.estimate_tau2(method, r[keep], v[keep], X[keep])[0]

    t = np.full(k, tau2_full)
    if method in ("PM", "EB"):
        done = q0 <= kd - p  # Q(0) at or below its target: τ̂² = 0
        return mb.q_root(lambda t: parts(t)[2:], np.where(done, 0.0, t), done, float(kd - p), tol, refit)

    def step(t):
        o, A, _, wr2 = parts(t)
        S2 = o[2]
        if method == "REML":
            B2 = A @ S2[:, :pp].reshape(k, p, p)
            tr_p = o[1][:, -1] - np.trace(B2, axis1=1, axis2=2)
            tr_pp = S2[:, -1] - 2 * np.einsum("npq,nqp->n", A, o[3].reshape(k, p, p)) + np.einsum("npq,nqp->n", B2, B2)
            return (wr2 - tr_p) / tr_pp
        return (wr2 - o[1][:, -1]) / S2[:, -1]

    return loo_global_max(method, cen, v, X, _scoring(step, t, tol, refit))


__all__ = ["leave_one_out_metareg", "MetaRegressionInfluence"]
