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
residual, so no weighted total is its own term; the few deleted fits whose sums about μ̂_FE would
still cancel (two very precise schools, :func:`loo_centres`) are summed directly about their own
fit, and ``Σw − Σw²/Σw`` (DL, I²) without the cancelling difference (:func:`_fe_moments`). With ``w_j = 1/(v_j + c)`` at a centre c (the median t_i) and
``δ_i = t_i − c``, ``w_ij^m = w_j^m (1 + δ_i w_j)^{−m} = Σ_n C(m+n−1, n)(−δ_i)^n w_j^{m+n}``,
so the sums are power series in δ_i whose coefficients ``Σ_j w_j^{m+n} y_j^a`` are shared by
every i: O(k) work per term, summed to 1e−20 relative (ratio ``|δ_i| max w ≤ ½``). Deleted
fits farther from c (small k, an outlying school) are computed directly as row blocks of the
k × k matrix (nothing k × k is stored). DL, HE and HS
are closed form; REML and ML take Fisher-scoring steps and PM/EB Newton steps on
``Q(τ²) = k − 2`` (``dQ/dτ² = −Σw²r²``, inside a bracket: :func:`._metareg_batch.q_root`) from
the full-data τ̂², all deleted fits at once; SJ
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


@dataclass(frozen=True)
class Centres:
    """The residuals each deleted fit's sums are taken of (:func:`loo_centres`): ``r``, of the
    full-data fixed-effect fit, for every fit but ``rows``, whose sums about it would cancel; those
    take ``resid`` (one row each), about their own deleted fixed-effect fit, ``shift`` (k × p) from
    β̂_FE (0 for the other fits)."""

    r: np.ndarray
    rows: np.ndarray
    resid: np.ndarray
    shift: np.ndarray


_CANCEL = 1e3  # largest ratio of a deleted fit's sums, about β̂_FE, to what they give (digits lost)


def loo_centres(r: np.ndarray, v: np.ndarray, X: np.ndarray) -> Centres:
    """The deleted fits whose sums about the full-data fixed-effect fit (residuals r, weights
    w = 1/v, design X) would lose more than ``_CANCEL`` to rounding, with their own centres. At FE
    weights, with leverage ``h_i = w_i x_i'(X'WX)⁻¹x_i`` and ``a_i = w_i r_i²``: a total less school
    i's own term keeps ``1 − h_i`` of it, and ``Q₍ᵢ₎ = Q − a_i/(1 − h_i)`` is what is left of the
    total ``Q = Σa`` once the sums are centred — so the fits with ``1 − h_i`` or ``Q₍ᵢ₎/Q`` below
    ``1/_CANCEL``. As ``Σh = p`` and ``Σa = Q``, those are at most about 2p + 1 (the schools that
    carry nearly all the weight, or whose deletion takes nearly all of Q: e.g. two very precise
    schools with different estimates). Their residuals are about the fit of their own k − 1
    schools, solved in two passes (the second on the first's residuals), directly."""
    w = 1.0 / v
    A = np.linalg.inv(X.T @ (X * w[:, None]))
    keep = 1.0 - w * np.einsum("ip,pq,iq->i", X, A, X)  # 1 − h_i
    a = w * r * r
    q = a.sum()
    rows = np.flatnonzero((keep < 1.0 / _CANCEL) | (_CANCEL * (q * keep - a) < q * keep))
    n = rows.size
    W = np.repeat(w[None, :], n, axis=0)
    W[np.arange(n), rows] = 0.0
    M = np.einsum("nk,kp,kq->npq", W, X, X)
    b = np.zeros((n, X.shape[1]))
    resid = np.broadcast_to(r, (n, r.size))
    for _ in range(2):
        b = b + np.linalg.solve(M, np.einsum("nk,kp,nk->np", W, X, resid)[..., None])[..., 0]
        resid = r[None, :] - b @ X.T
    shift = np.zeros(X.shape)
    shift[rows] = b
    return Centres(r, rows, resid, shift)


def loo_weighted_sums(t: np.ndarray, v: np.ndarray, feats, cen: Centres) -> dict[int, np.ndarray]:
    """For each deleted fit i and each power m of ``feats(r)`` (a function of residuals r — k, or
    n × k for n fits — giving m → per-school features, k × f or n × k × f):
    ``Σ_{j≠i} w_ij^m F_m[j]`` (k × f), ``w_ij = 1/(v_j + t_i)``, of the residuals of ``cen``
    (:func:`loo_centres`); m = 0 stands for ``log(v_j + t_i)`` (the likelihood's
    ``Σ log(v + τ²)``: ``log(v_j + c) + log(1 + δ_i w_j)``, whose series has the coefficients
    ``−Σ_j w_j^n F_0[j] / n``). By the power series about the centre c where
    ``|t_i − c| max w ≤ ½``, else directly in row blocks (module docstring), less school i's own
    term; the fits ``cen.rows`` directly, of their own residuals. O(k·f) per series term; nothing
    k × k is stored."""
    F = feats(cen.r)
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
    j = cen.rows
    if j.size:
        own = feats(cen.resid)
        T = v[None, :] + t[j, None]
        for m, f in own.items():
            P = _power(T, m)
            P[np.arange(j.size), j] = 0.0
            out[m][j] = np.einsum("nk,nkf->nf", P, f)
    return out


def _loo_scale(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``var(y) + mean(v)`` of each deleted fit's schools (the data's scale in :mod:`._tau2`)."""
    kd = y.size - 1
    yc = y - y.mean()
    return (yc @ yc - yc**2) / kd - (yc / kd) ** 2 + (v.sum() - v) / kd


def _loo_loglik_grid(feats, cen: Centres, v: np.ndarray, grid: np.ndarray, p: int, restricted: bool) -> np.ndarray:
    """``ℓ_R`` (``restricted``) or ``ℓ`` of every deleted fit (k) at every τ² of ``grid`` (G):
    k × G, from the sums ``Σ_{j≠i} w_j F_j`` (``feats(r)``: the features of
    :func:`._metareg_batch._ll_from_sums`) — at a grid point the weights are every fit's, so the
    sums are the totals less school i's own term (the fits ``cen.rows`` summed directly, of their
    own residuals) — in blocks of schools, one G × k array per feature."""
    F = feats(cen.r)
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
    j = cen.rows
    if j.size:
        own = feats(cen.resid)
        own[np.arange(j.size), j] = 0.0
        out[:, j] = mb._ll_from_sums(np.einsum("gk,nkf->gnf", W, own), L[:, None] - logs[:, j], p, restricted)
    return out.T


def loo_global_max(method: str, cen: Centres, v: np.ndarray, X: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Every deleted fit's REML or ML τ̂², the global maximizer of its (restricted) likelihood on
    τ² ≥ 0 (as :func:`._tau2._fisher_scoring`), given the Fisher-scoring results t: ℓ₍ᵢ₎ on the
    grid of :func:`._metareg_batch.global_max` (:func:`_loo_loglik_grid`) and at t
    (:func:`loo_weighted_sums`), of the residuals of ``cen`` (the same likelihood, smaller sums);
    the fits whose grid beats ℓ₍ᵢ₎(t) refined on their own k − 1 schools
    (:func:`._metareg_batch.highest`). All k fits at once; ``X`` (k × p) the design."""
    restricted = method == "REML"
    k, p = X.shape
    pa, pb = np.triu_indices(p)

    def feats(r):
        return np.concatenate([np.broadcast_to(X[:, pa] * X[:, pb], r.shape + (pa.size,)), X * r[..., None],
                               (r * r)[..., None]], axis=-1)

    grid = _tau2.tau2_grid(float(v.min()), float(_loo_scale(cen.r, v).max()))
    o = loo_weighted_sums(t, v, lambda r: {0: np.ones(r.shape + (1,)), 1: feats(r)}, cen)
    top = mb._ll_from_sums(o[1], o[0][:, 0], p, restricted)

    def deleted(j):  # the data of fits j: their k − 1 schools
        keep = np.arange(k)[None, :] != j[:, None]
        return tuple(np.broadcast_to(z, (j.size,) + z.shape)[keep].reshape((j.size, k - 1) + z.shape[1:])
                     for z in (cen.r, v, X))

    return mb.highest(method, grid, _loo_loglik_grid(feats, cen, v, grid, p, restricted), t, top, deleted)


def fe_fit(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(β̂, r = y − Xβ̂)`` of the full-data fixed-effect fit (weights 1/v). The deleted fits'
    sums are taken of these residuals, not of y, and their estimates as shifts from β̂: a school
    with a tiny SE has a residual of about the others' weight over its own, so its weight times
    its residual (squared) stays of the other schools' size instead of dominating — and
    cancelling in — every total. The fit is :func:`._tau2.wls_pieces`' at τ² = 0 (the QR of the
    weighted design: a nearly singular X'WX loses no digits)."""
    _, beta, _, r = _tau2.wls_pieces(y, v, X, 0.0)
    return beta, r


def _powers(r: np.ndarray) -> np.ndarray:
    """``(1, r, r²)`` on a last axis."""
    return np.stack([np.ones(r.shape), r, r * r], axis=-1)


def by_power(features, cuts: dict):
    """The ``feats`` of :func:`loo_weighted_sums`: ``features(r)`` built once per call, power m
    taking its first ``cuts[m]`` columns (None: all)."""
    def feats(r):
        f = features(r)
        return {m: f if c is None else f[..., :c] for m, c in cuts.items()}
    return feats


def _sums(t: np.ndarray, cen: Centres, v: np.ndarray) -> dict[str, np.ndarray]:
    """For each i: sums over j ≠ i of ``w``, ``wr``, ``wr²``, ``w²``, ``w²r``, ``w²r²`` and
    ``w³``, ``w_ij = 1/(v_j + t_i)``, r the residuals of ``cen`` (:func:`loo_weighted_sums`)."""
    o = loo_weighted_sums(t, v, by_power(_powers, {1: None, 2: None, 3: 1}), cen)
    return dict(zip(("S", "Sy", "Syy", "T", "Ty", "Tyy", "U"), np.column_stack([o[1], o[2], o[3]]).T))


def _fit_parts(s: dict, cen: Centres) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(μ̂ − μ̂_FE, Q = Σwr², Σw²r²)`` from the sums of the residuals of ``cen`` (μ̂_FE: the
    full-data fixed-effect estimate, :func:`fe_fit`; a fit's residuals are about its centre,
    ``cen.shift`` from it, so Q and Σw²r² do not cancel)."""
    shift = s["Sy"] / s["S"]
    q = np.maximum(s["Syy"] - s["Sy"] * shift, 0.0)
    w2r2 = np.maximum(s["Tyy"] - 2.0 * shift * s["Ty"] + shift**2 * s["T"], 0.0)
    return shift + cen.shift[:, 0], q, w2r2


def _fe_moments(cen: Centres, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each deleted fit's FE weight sum ``Σw``, ``tr P₀ = Σw − Σw²/Σw`` and Cochran's Q
    (w = 1/v) from the residuals of ``cen`` (:func:`loo_weighted_sums` at τ² = 0), in O(k).
    ``tr P₀`` is ``Σ_{j≠i} w_j (Σw₍ᵢ₎ − w_j) / Σw₍ᵢ₎``, the heaviest school h's ``Σw₍ᵢ₎ − w_h``
    the sum without h less ``w_i``; the fits without h and ``cen.rows`` are
    :func:`._tau2.fe_trace_p` of their own schools (:func:`_fe_trace_rows`)."""
    k = v.size
    o = loo_weighted_sums(np.zeros(k), v, by_power(_powers, {1: None, 2: 1}), cen)
    S, Sr, Srr = o[1].T
    S2 = o[2][:, 0]
    w = 1.0 / v
    h = int(np.argmin(v))
    rest = S[h] - w  # Σ over j ≠ i, h
    trace = (rest * (S + w[h]) - (S2[h] - w**2)) / S
    j = np.union1d(cen.rows, [h])
    trace[j] = _fe_trace_rows(v, np.ones((k, 1)), j)
    return S, trace, np.maximum(Srr - Sr**2 / S, 0.0)


def _fe_trace_rows(v: np.ndarray, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``tr P₀`` (:func:`._tau2.fe_trace_p`, ``Σw(1 − h)`` from the QR of the weighted design) of the
    deleted fits ``rows``, each on its own k − 1 schools (design X): the fits whose
    ``Σw − tr[(X'WX)⁻¹X'W²X]`` from the shared sums would cancel."""
    keep = np.arange(v.size)[None, :] != rows[:, None]
    return np.array([_tau2.fe_trace_p(v[m], X[m]) for m in keep])


def _deleted_tau2(method: str, cen: Centres, v: np.ndarray, tau2_full: float, fe: tuple) -> np.ndarray:
    """τ̂² of every deleted fit (module docstring) from the residuals of ``cen`` and their
    :func:`_fe_moments` ``fe``."""
    r = cen.r
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
        return t0 * _fit_parts(_sums(t0, cen, v), cen)[1] / (kd - 1)
    # Iterative estimators: vector steps from the full-data τ̂², per-fit fall-back.
    t = np.full(k, float(tau2_full))
    tol = 1e-10 * (1.0 + float(np.var(r) + np.mean(v)))

    def refit(i):  # rare: a fit the vector iteration did not settle, alone
        keep = np.arange(k) != i
        return _tau2.estimate_tau2(method, r[keep], v[keep], np.ones((kd, 1)))[0]

    if method in ("PM", "EB"):
        def q_and_slope(t):
            return _fit_parts(_sums(t, cen, v), cen)[1:]

        done = q <= kd - 1  # Q(0) at or below its target: τ̂² = 0
        return mb.q_root(q_and_slope, np.where(done, 0.0, t), done, float(kd - 1), tol, refit)

    def step(t):
        s = _sums(t, cen, v)
        w2r2 = _fit_parts(s, cen)[2]
        if method == "REML":
            tr_p = s["S"] - s["T"] / s["S"]
            tr_pp = s["T"] - 2.0 * s["U"] / s["S"] + (s["T"] / s["S"]) ** 2
            # tr PP lost to rounding (τ² ≈ 0, one weight nearly all of Σw): no step, the fit is refitted alone
            return (w2r2 - tr_p) / np.where(tr_pp > 0, tr_pp, np.nan)
        return (w2r2 - s["S"]) / s["T"]

    return loo_global_max(method, cen, v, np.ones((k, 1)), _scoring(step, t, tol, refit))


def _scoring(step, t: np.ndarray, tol: float, refit) -> np.ndarray:
    """REML/ML Fisher scoring ``τ² ← max(0, τ² + step(τ²))`` of every deleted fit from t, until
    every step is within ``tol``; a fit not settled in 50 steps, or without a step (NaN: its
    information lost to rounding), is ``refit(i)``, alone (rare)."""
    lost = np.zeros(t.size, dtype=bool)
    for _ in range(50):
        new = np.maximum(0.0, t + step(t))
        lost |= np.isnan(new)
        conv = lost | (np.abs(new - t) <= tol)
        t = np.where(lost, t, new)
        if conv.all():
            break
    for i in np.flatnonzero(~conv | lost):
        t[i] = refit(i)
    return t


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
    cen = loo_centres(r, v, np.ones((k, 1)))
    fe = _fe_moments(cen, v)
    t = _deleted_tau2(meta.method, cen, v, meta.tau2, fe)
    s = _sums(t, cen, v)
    shift, q_t, _ = _fit_parts(s, cen)
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
