"""Leave-one-out meta-analyses and influence diagnostics (Viechtbauer & Cheung 2010;
metafor's ``leave1out()`` and ``influence()``).

For each school i the random-effects model is refitted without it, with the same τ²
estimator: ``μ̂₍ᵢ₎``, ``SE₍ᵢ₎``, ``τ̂²₍ᵢ₎``, ``Q₍ᵢ₎``, I²₍ᵢ₎ and H²₍ᵢ₎. With the full-data fit
``μ̂``, ``SE``, weights ``w_i = 1/(v_i + τ̂²)``:

* hat value ``h_i = w_i / Σw`` (weight = 100·h_i %);
* externally standardized residual ``(y_i − μ̂₍ᵢ₎) / √(s²₍ᵢ₎(v_i + τ̂²₍ᵢ₎) + SE²₍ᵢ₎)``;
* DFFITS ``(μ̂ − μ̂₍ᵢ₎) / √(s²₍ᵢ₎ h_i (τ̂²₍ᵢ₎ + v_i))``;
* Cook's distance ``(μ̂ − μ̂₍ᵢ₎)² / SE²`` (the Mahalanobis distance with the full-data
  ``(X'WX)⁻¹``);
* covariance ratio ``SE²₍ᵢ₎ / SE²`` (below 1: dropping the school makes μ̂ more precise);
* DFBETAS ``(μ̂ − μ̂₍ᵢ₎) / √(s²₍ᵢ₎/Σ_j w̃_ij)``, ``w̃_ij = 1/(v_j + τ̂²₍ᵢ₎)`` over all k schools
  (metafor's scaling: the SE of μ̂ at the deleted τ̂²).

``s²₍ᵢ₎ = Σ_{j≠i} w_ij (y_j − μ̂₍ᵢ₎)² / (k − 2)`` is the deleted fit's Hartung–Knapp factor with
``hartung_knapp=True`` (already in ``SE₍ᵢ₎``), else 1, as metafor's ``influence.rma.uni`` and
:func:`.metareg_influence.leave_one_out_metareg`; 1 too where the other schools' estimates are
identical, as :func:`.meta.meta_analysis` takes it.

A school is *influential* (metafor's cut-offs) if ``|DFFITS| > 3√(p/(k − p))``, the χ²(p)
lower tail at Cook's distance exceeds 0.5, ``h_i > 3p/k`` or ``|DFBETAS| > 1`` (p = 1).
The school that *drives τ* is the one whose removal lowers τ̂² the most.

**Vectorized.** The k deleted fits are computed together: every quantity needs only the sums
``Σ_{j≠i} w_ij^m r_j^a`` (m = 1, 2, 3; a = 0, 1, 2) with ``w_ij = 1/(v_j + t_i)``, one ``t_i``
per deleted fit, of the residuals ``r = y − μ̂_FE`` from the full-data fixed-effect estimate
(:func:`fe_fit`; μ̂₍ᵢ₎ is μ̂_FE plus the shift the sums give). A school with a tiny SE has a tiny
residual, so no weighted total is its own term; the heaviest school's deleted fit is summed
directly, and ``Σw − Σw²/Σw`` (DL, I²) is taken as in :func:`._tau2.fe_trace_p`. With ``w_j = 1/(v_j + c)`` at a centre c (the median t_i) and
``δ_i = t_i − c``, ``w_ij^m = w_j^m (1 + δ_i w_j)^{−m} = Σ_n C(m+n−1, n)(−δ_i)^n w_j^{m+n}``,
so the sums are power series in δ_i whose coefficients ``Σ_j w_j^{m+n} y_j^a`` are shared by
every i: O(k) work per term, summed to 1e−20 relative (ratio ``|δ_i| max w ≤ ½``). Deleted
fits farther from c (small k, an outlying school) are computed directly as row blocks of the
k × k matrix (nothing k × k is stored). DL, HE and HS
are closed form; REML and ML take Fisher-scoring steps and PM/EB Newton steps on
``Q(τ²) = k − 2`` (``dQ/dτ² = −Σw²r²``) from the full-data τ̂², all deleted fits at once; SJ
evaluates Q at its k starting values. A deleted fit that has not converged after the vector
iterations is refitted on its own by :mod:`._tau2`. REML and ML then take each deleted fit's
global maximizer on τ² ≥ 0, as :func:`.meta.meta_analysis` does (:func:`loo_global_max`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from .._results import ResultMixin
from ..errors import DataError, DesignError
from . import _metareg_batch as mb
from . import _tau2
from .meta import MetaAnalysis, _readonly

_BLOCK = 2**21  # matrix entries per block of deleted fits
_SERIES_RATIO = 0.5  # largest |δ_i| max w summed as a power series


def _power(T: np.ndarray, m: int) -> np.ndarray:
    """``T^{−m}``, or ``log T`` for m = 0 (``T = v_j + t_i``)."""
    return np.log(T) if m == 0 else (1.0 / T) ** m


def loo_weighted_sums(t: np.ndarray, v: np.ndarray, F: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """For each deleted fit i and each power m of ``F`` (m → a k × f matrix of per-school
    features): ``Σ_{j≠i} w_ij^m F_m[j]`` (k × f), ``w_ij = 1/(v_j + t_i)``; m = 0 stands for
    ``log(v_j + t_i)`` (the likelihood's ``Σ log(v + τ²)``: ``log(v_j + c) + log(1 + δ_i w_j)``,
    whose series has the coefficients ``−Σ_j w_j^n F_0[j] / n``). By the power series about the
    centre c where ``|t_i − c| max w ≤ ½``, else directly in row blocks (module docstring); the
    heaviest school's own term is most of the total, so its deleted fit is summed directly.
    O(k·f) per series term; nothing k × k is stored."""
    k = v.size
    out = {m: np.empty((k, f.shape[1])) for m, f in F.items()}
    c = float(np.median(t))
    wc = 1.0 / (v + c)
    wmax = float(wc.max())
    rho = (t - c) * wmax  # ratio of the geometric series in (t_i − c)
    series = np.abs(rho) <= _SERIES_RATIO
    if series.any():
        n_terms = int(np.ceil(np.log(1e-20) / np.log(max(float(np.abs(rho[series]).max()), 1e-20)))) + 1
        n_terms = min(max(n_terms, 1), 70)
        U = np.cumprod(np.broadcast_to(wc / wmax, (n_terms + max(F) - 1, k)), axis=0)  # U[n-1] = u^n
        D = np.cumprod(np.column_stack([np.ones(series.sum()), np.broadcast_to(-rho[series, None], (series.sum(), n_terms - 1))]), axis=1)
        n = np.arange(n_terms)
        for m, f in F.items():
            if m == 0:
                coef = np.vstack([np.log(v + c) @ f, -(U[: n_terms - 1] @ f) / n[1:, None]])
            else:
                coef = wmax**m * special.comb(m + n - 1, n)[:, None] * (U[m - 1: m - 1 + n_terms] @ f)
            out[m][series] = D @ coef
    rest = np.flatnonzero(~series)
    for s in np.array_split(rest, max(1, int(np.ceil(rest.size * k / _BLOCK)))):
        if s.size:
            T = v[None, :] + t[s, None]
            for m, f in F.items():
                out[m][s] = _power(T, m) @ f
    for m, f in F.items():
        out[m] -= _power(v + t, m)[:, None] * f
    h = int(np.argmin(v))
    others = np.arange(k) != h
    for m, f in F.items():
        out[m][h] = _power(v[others] + t[h], m) @ f[others]
    return out


def _loo_scale(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``var(y) + mean(v)`` of each deleted fit's schools (the data's scale in :mod:`._tau2`)."""
    kd = y.size - 1
    yc = y - y.mean()
    return (yc @ yc - yc**2) / kd - (yc / kd) ** 2 + (v.sum() - v) / kd


def _loo_loglik_grid(F: np.ndarray, v: np.ndarray, grid: np.ndarray, p: int, restricted: bool) -> np.ndarray:
    """``ℓ_R`` (``restricted``) or ``ℓ`` of every deleted fit (k) at every τ² of ``grid`` (G):
    k × G, from the sums ``Σ_{j≠i} w_j F_j`` (``F``: the features of
    :func:`._metareg_batch._ll_from_sums`) — at a grid point the weights are every fit's, so the
    sums are the totals less school i's own term (the heaviest school's fit summed directly) —
    in blocks of schools, one G × k array per feature."""
    k, f = F.shape
    T = v[None, :] + grid[:, None]
    W = 1.0 / T
    logs = np.log(T, out=T)
    total, L = W @ F, logs.sum(axis=1)
    out = np.empty((grid.size, k))
    rows = max(1, _BLOCK // (grid.size * f))
    for s in range(0, k, rows):
        b = slice(s, s + rows)
        S = np.empty((f, grid.size, min(rows, k - s)))
        for c in range(f):
            np.multiply(W[:, b], F[b, c], out=S[c])
            np.subtract(total[:, c, None], S[c], out=S[c])
        out[:, b] = mb._ll_from_sums(np.moveaxis(S, 0, -1), L[:, None] - logs[:, b], p, restricted)
    h = int(np.argmin(v))
    Fh = F.copy()
    Fh[h] = 0.0
    out[:, h] = mb._ll_from_sums(W @ Fh, L - logs[:, h], p, restricted)
    return out.T


def loo_global_max(method: str, y: np.ndarray, v: np.ndarray, X: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Every deleted fit's REML or ML τ̂², the global maximizer of its (restricted) likelihood on
    τ² ≥ 0 (as :func:`._tau2._fisher_scoring`), given the Fisher-scoring results t: ℓ₍ᵢ₎ on the
    grid of :func:`._metareg_batch.global_max` (:func:`_loo_loglik_grid`) and at t
    (:func:`loo_weighted_sums`), of the residuals at τ² = 0 (the same likelihood, smaller sums);
    the fits whose grid beats ℓ₍ᵢ₎(t) refined on their own k − 1 schools
    (:func:`._metareg_batch.highest`). All k fits at once; ``X`` (k × p) the design."""
    restricted = method == "REML"
    k, p = X.shape
    r = fe_fit(y, v, X)[1]
    pa, pb = np.triu_indices(p)
    F = np.column_stack([X[:, pa] * X[:, pb], X * r[:, None], r * r])
    grid = _tau2.tau2_grid(float(v.min()), float(_loo_scale(y, v).max()))
    o = loo_weighted_sums(t, v, {0: np.ones((k, 1)), 1: F})
    top = mb._ll_from_sums(o[1], o[0][:, 0], p, restricted)

    def deleted(j):  # the data of fits j: their k − 1 schools
        keep = np.arange(k)[None, :] != j[:, None]
        return tuple(np.broadcast_to(z, (j.size,) + z.shape)[keep].reshape((j.size, k - 1) + z.shape[1:])
                     for z in (y, v, X))

    return mb.highest(method, grid, _loo_loglik_grid(F, v, grid, p, restricted), t, top, deleted)


def fe_fit(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(β̂, r = y − Xβ̂)`` of the full-data fixed-effect fit (weights 1/v). The deleted fits'
    sums are taken of these residuals, not of y, and their estimates as shifts from β̂: a school
    with a tiny SE has a residual of about the others' weight over its own, so its weight times
    its residual (squared) stays of the other schools' size instead of dominating — and
    cancelling in — every total."""
    Xw = X / v[:, None]
    beta = np.linalg.solve(X.T @ Xw, Xw.T @ y)
    return beta, y - X @ beta


def _sums(t: np.ndarray, r: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """For each i: sums over j ≠ i of ``w``, ``wr``, ``wr²``, ``w²``, ``w²r``, ``w²r²`` and
    ``w³``, ``w_ij = 1/(v_j + t_i)``, r the residuals of :func:`fe_fit`
    (:func:`loo_weighted_sums`)."""
    R = np.column_stack([np.ones(r.size), r, r * r])
    o = loo_weighted_sums(t, v, {1: R, 2: R, 3: R[:, :1]})
    return dict(zip(("S", "Sy", "Syy", "T", "Ty", "Tyy", "U"), np.column_stack([o[1], o[2], o[3]]).T))


def _fit_parts(s: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(μ̂ − μ̂_FE, Q = Σwr², Σw²r²)`` from the sums of the residuals (μ̂_FE: the full-data
    fixed-effect estimate they are taken from, :func:`fe_fit`)."""
    shift = s["Sy"] / s["S"]
    q = np.maximum(s["Syy"] - s["Sy"] * shift, 0.0)
    w2r2 = np.maximum(s["Tyy"] - 2.0 * shift * s["Ty"] + shift**2 * s["T"], 0.0)
    return shift, q, w2r2


def _fe_moments(r: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each deleted fit's FE weight sum ``Σw``, ``tr P₀ = Σw − Σw²/Σw`` and Cochran's Q
    (w = 1/v) from the residuals r (:func:`loo_weighted_sums` at τ² = 0), in O(k). ``tr P₀`` is
    ``Σ_{j≠i} w_j (Σw₍ᵢ₎ − w_j) / Σw₍ᵢ₎`` (:func:`._tau2.fe_trace_p`): the heaviest school h's
    ``Σw₍ᵢ₎ − w_h`` is the sum without h less ``w_i``, and h's own deleted fit is summed directly."""
    k = r.size
    R = np.column_stack([np.ones(k), r, r * r])
    o = loo_weighted_sums(np.zeros(k), v, {1: R, 2: R[:, :1]})
    S, Sr, Srr = o[1].T
    S2 = o[2][:, 0]
    w = 1.0 / v
    h = int(np.argmin(v))  # as loo_weighted_sums: its deleted fit's sums are direct
    rest = S[h] - w  # Σ over j ≠ i, h
    trace = (rest * (S + w[h]) - (S2[h] - w**2)) / S
    trace[h] = _tau2.fe_trace_p(np.delete(v, h), np.ones((k - 1, 1)))
    return S, trace, np.maximum(Srr - Sr**2 / S, 0.0)


def _deleted_tau2(method: str, r: np.ndarray, v: np.ndarray, tau2_full: float, fe: tuple) -> np.ndarray:
    """τ̂² of every deleted fit (module docstring) from the residuals r of :func:`fe_fit` and
    their :func:`_fe_moments` ``fe``."""
    k = r.size
    kd = k - 1  # schools in each deleted fit (p = 1)
    if method == "FE":
        return np.zeros(k)
    S, trace, q = fe
    if method == "DL":
        return np.maximum(0.0, (q - (kd - 1)) / trace)
    if method == "HS":
        return np.maximum(0.0, (q - kd) / S)
    rbar = (r.sum() - r) / kd
    rss = (r * r).sum() - r * r - kd * rbar**2
    if method == "HE":
        vs = v.sum() - v
        return np.maximum(0.0, (rss - vs * (1.0 - 1.0 / kd)) / (kd - 1))
    if method == "SJ":
        t0 = rss / kd
        return t0 * _fit_parts(_sums(t0, r, v))[1] / (kd - 1)
    # Iterative estimators: vector steps from the full-data τ̂², per-fit fall-back.
    t = np.full(k, float(tau2_full))
    scale = float(np.var(r) + np.mean(v))
    done = np.zeros(k, dtype=bool)
    if method in ("PM", "EB"):
        done = q <= kd - 1  # Q(0) at or below its target: τ̂² = 0
        t[done] = 0.0
    for _ in range(50):
        s = _sums(t, r, v)
        _, qt, w2r2 = _fit_parts(s)
        if method == "REML":
            tr_p = s["S"] - s["T"] / s["S"]
            tr_pp = s["T"] - 2.0 * s["U"] / s["S"] + (s["T"] / s["S"]) ** 2
            step = (w2r2 - tr_p) / tr_pp
        elif method == "ML":
            step = (w2r2 - s["S"]) / s["T"]
        else:
            step = np.where(w2r2 > 0, (qt - (kd - 1)) / np.where(w2r2 > 0, w2r2, 1.0), 0.0)
        new = np.where(done, t, np.maximum(0.0, t + step))
        conv = np.abs(new - t) <= 1e-10 * (1.0 + scale)
        t = new
        if conv.all():
            break
    else:
        keep = np.ones(k, dtype=bool)
        for i in np.flatnonzero(~conv):  # rare: only fits the vector iteration did not settle
            keep[i] = False
            t[i] = _tau2.estimate_tau2(method, r[keep], v[keep], np.ones((kd, 1)))[0]
            keep[i] = True
    return loo_global_max(method, r, v, np.ones((k, 1)), t) if method in ("REML", "ML") else t


def _readonly_bool(a) -> np.ndarray:
    a = np.array(a, dtype=bool)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, repr=False)
class Influence(ResultMixin):
    """Result of :func:`leave_one_out` (immutable arrays, one entry per school)."""

    method: str
    k: int
    estimate: float
    tau2: float
    labels: tuple
    estimate_del: np.ndarray
    se_del: np.ndarray
    ci_low_del: np.ndarray
    ci_high_del: np.ndarray
    pvalue_del: np.ndarray
    tau2_del: np.ndarray
    q_del: np.ndarray
    i2_del: np.ndarray
    h2_del: np.ndarray
    rstudent: np.ndarray
    dffits: np.ndarray
    cooks_d: np.ndarray
    cov_ratio: np.ndarray
    hat: np.ndarray
    dfbetas: np.ndarray
    influential: np.ndarray

    @property
    def drives_tau(self) -> int:
        """Position of the school whose removal lowers τ̂² the most."""
        return int(np.argmin(self.tau2_del))

    def to_frame(self) -> pd.DataFrame:
        """One row per school: the leave-one-out fit and the influence diagnostics."""
        return pd.DataFrame(
            {
                "label": list(self.labels),
                "estimate_del": self.estimate_del,
                "se_del": self.se_del,
                "ci_low_del": self.ci_low_del,
                "ci_high_del": self.ci_high_del,
                "pvalue_del": self.pvalue_del,
                "tau2_del": self.tau2_del,
                "q_del": self.q_del,
                "i2_del": self.i2_del,
                "h2_del": self.h2_del,
                "rstudent": self.rstudent,
                "dffits": self.dffits,
                "cooks_d": self.cooks_d,
                "cov_ratio": self.cov_ratio,
                "hat": self.hat,
                "weight_pct": 100.0 * self.hat,
                "dfbetas": self.dfbetas,
                "influential": self.influential,
                "drives_tau": np.arange(self.k) == self.drives_tau,
            }
        )

    def summary(self) -> str:
        i = self.drives_tau
        drop = self.tau2 - self.tau2_del[i]
        share = f" ({100 * drop / self.tau2:.0f}% of it)" if self.tau2 > 0 else ""
        n_inf = int(self.influential.sum())
        names = ", ".join(str(self.labels[j]) for j in np.flatnonzero(self.influential)[:10])
        return "\n".join(
            [
                f"Leave-one-out and influence ({self.method}), k = {self.k}",
                f"  pooled effect {self.estimate:.4f}; without one school it ranges "
                f"{self.estimate_del.min():.4f} to {self.estimate_del.max():.4f}",
                f"  tau² {self.tau2:.4f}; the school that drives tau is {self.labels[i]!s}: "
                f"without it tau² = {self.tau2_del[i]:.4f}, {drop:.4f} lower{share}",
                f"  influential schools (metafor cut-offs): {n_inf}" + (f" ({names}{', ...' if n_inf > 10 else ''})" if n_inf else ""),
            ]
        )


def leave_one_out(meta: MetaAnalysis) -> Influence:
    """Refit ``meta`` without each school in turn and compute influence diagnostics
    (formulas in the module docstring), with its τ² estimator, Hartung–Knapp choice and
    level. Needs independent estimates (``meta`` fitted without ``vcov``) and k ≥ 3."""
    if meta.correlated:
        raise DataError("leave-one-out diagnostics need independent estimates; this meta-analysis used a full vcov")
    k = meta.k
    if k < 3:
        raise DesignError(f"leave-one-out diagnostics need at least 3 schools; got {k}")
    y = np.asarray(meta.estimates, dtype=float)
    v = np.asarray(meta.ses, dtype=float) ** 2
    kd = k - 1
    mu_fe, r = fe_fit(y, v, np.ones((k, 1)))
    fe = _fe_moments(r, v)
    t = _deleted_tau2(meta.method, r, v, meta.tau2, fe)
    s = _sums(t, r, v)
    shift, q_t, _ = _fit_parts(s)
    mu_d = mu_fe[0] + shift
    se_d = 1.0 / np.sqrt(s["S"])
    df = math.inf
    s2w = np.ones(k)  # the deleted fits' Hartung–Knapp factors
    if meta.hartung_knapp:
        # as meta_analysis: a deleted fit whose estimates are identical but for rounding takes factor 1
        o = np.argsort(y)
        hi = np.where(np.arange(k) == o[-1], y[o[-2]], y[o[-1]])  # max and min of the other schools
        lo = np.where(np.arange(k) == o[0], y[o[1]], y[o[0]])
        same = np.maximum(hi - mu_d, mu_d - lo) <= 1e-12 * np.maximum(1.0, np.maximum(np.abs(hi), np.abs(lo)))
        s2w = np.where(same, 1.0, q_t / (kd - 1))
        se_d = np.sqrt(s2w) * se_d
        df = float(kd - 1)
    dist = stats.norm if not np.isfinite(df) else stats.t(df)
    crit = dist.ppf(0.5 + meta.level / 2)
    _, trace, q_fe = fe
    s2 = (kd - 1) / trace  # typical within-school variance of each deleted set (meta.typical_variance)
    if meta.method == "FE":
        i2 = 100.0 * np.where(q_fe > 0, np.maximum(0.0, (q_fe - (kd - 1)) / np.where(q_fe > 0, q_fe, 1.0)), 0.0)
        h2 = q_fe / (kd - 1)
    else:
        i2 = 100.0 * t / (t + s2)
        h2 = (t + s2) / s2

    w = 1.0 / (v + meta.tau2)
    hat = w / w.sum()
    diff = meta.estimate - mu_d
    dffits = diff / np.sqrt(s2w * hat * (t + v))
    cooks = diff**2 / meta.se**2
    dfbetas = diff * np.sqrt((s["S"] + 1.0 / (v + t)) / s2w)
    p = 1
    influential = (
        (np.abs(dffits) > 3.0 * math.sqrt(p / (k - p)))
        | (stats.chi2.cdf(cooks, p) > 0.5)
        | (hat > 3.0 * p / k)
        | (np.abs(dfbetas) > 1.0)
    )
    z = mu_d / se_d
    return Influence(
        method=meta.method,
        k=k,
        estimate=meta.estimate,
        tau2=meta.tau2,
        labels=meta.labels,
        estimate_del=_readonly(mu_d),
        se_del=_readonly(se_d),
        ci_low_del=_readonly(mu_d - crit * se_d),
        ci_high_del=_readonly(mu_d + crit * se_d),
        pvalue_del=_readonly(2.0 * dist.sf(np.abs(z))),
        tau2_del=_readonly(t),
        q_del=_readonly(q_fe),
        i2_del=_readonly(i2),
        h2_del=_readonly(h2),
        rstudent=_readonly((y - mu_d) / np.sqrt(s2w * (v + t) + se_d**2)),
        dffits=_readonly(dffits),
        cooks_d=_readonly(cooks),
        cov_ratio=_readonly(se_d**2 / meta.se**2),
        hat=_readonly(hat),
        dfbetas=_readonly(dfbetas),
        influential=_readonly_bool(influential),
    )


__all__ = ["leave_one_out", "Influence"]
