"""Between-school variance τ² for the (mixed-effects) meta-analytic model.

Model (Raudenbush 2009; Viechtbauer 2005, 2007): ``y_i = x_i'β + u_i + e_i``,
``u_i ~ N(0, τ²)``, ``e_i ~ N(0, v_i)`` with ``v_i`` known. With ``w_i = 1/(v_i + τ²)``,
``W = diag(w)``, ``A = (X'WX)⁻¹`` and ``P = W − WXAX'W``:

* restricted log-likelihood ``ℓ_R(τ²) = −½[Σ log(v_i+τ²) + log|X'WX| + r'Wr]``,
  ``r = y − Xβ̂(τ²)``;
* REML score ``½[r'W²r − tr P]`` and Fisher information ``½ tr(PP)``, so the Fisher
  scoring step is ``Δ = (r'W²r − tr P) / tr(PP)`` (Viechtbauer 2005, eq. 10–12);
* log-likelihood ``ℓ(τ²) = −½[Σ log(v_i+τ²) + r'Wr]``, ML score ``½[r'W²r − Σw]`` and
  information ``½Σw²`` (Viechtbauer 2005, eq. 6–8);
* REML and ML report the global maximizer on τ² ≥ 0: the likelihood can have two local maxima
  (one at the boundary 0), so the Fisher-scoring result is compared with ℓ(0) and a grid search
  (:func:`_fisher_scoring`);
* the generalized Q statistic ``Q(τ²) = r'Wr``, distributed χ²(k − p) at the true τ² and
  strictly decreasing in τ² (the basis of the Q-profile interval, Viechtbauer 2007).

The other estimators (Viechtbauer 2005, Table 1; Sidik & Jonkman 2005; metafor's ``rma``
help page), with ``H = X(X'X)⁻¹X'`` the unweighted hat matrix, ``RSS = y'(I − H)y``:

* ``"HE"`` Hedges (1983) unweighted method of moments:
  ``max(0, [RSS − tr((I − H)V)] / (k − p))``, ``tr((I − H)V) = Σv − tr((X'X)⁻¹X'VX)``;
* ``"HS"`` Hunter & Schmidt (2004): ``max(0, (Q_E − k) / Σw)``, FE weights ``w = 1/v``;
* ``"SJ"`` Sidik & Jonkman (2005): start ``τ₀² = RSS/k`` (``Σ(y − ȳ)²/k`` without moderators),
  then ``τ² = τ₀² Q(τ₀²)/(k − p)`` (always > 0); metafor (R/rma.uni.r) starts from
  ``Σ(y − ȳ)²/k`` with moderators too, so with moderators the two differ;
* ``"EB"`` empirical Bayes (Morris 1983; Berkey et al. 1995): the fixed point of
  ``τ² = Σw_i[k/(k − p) r_i² − v_i] / Σw_i``, ``w_i = 1/(v_i + τ²)``; multiplying out,
  ``Σw_i(v_i + τ²) = k`` so the fixed point solves ``Q(τ²) = k − p`` — the Paule–Mandel
  equation (Viechtbauer et al. 2015): EB and PM give the same τ̂².

Every fit goes through the QR of the weighted design ``W^{1/2}X`` (:func:`weighted_qr`): β̂,
the residuals, ``log|X'WX|`` and the traces ``tr P = Σw_i(1 − h_i)`` and
``tr PP = Σ_ij w_iw_j(I − H)²_ij`` (:func:`traces`) keep their digits when one school's weight is
nearly all of the total, where ``(X'WX)⁻¹`` (its condition number the square of R's),
``Σw − tr(A X'W²X)`` and ``Σw² − 2 tr(A X'W³X) + tr((A X'W²X)²)`` lose them (before 2026-12-05).
O(k·p²) a fit; nothing k×k is formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize, stats

from ..errors import ConvergenceError


@dataclass(frozen=True)
class WeightedQR:
    """Householder QR of the weighted design ``Z = W^{1/2}X`` (weights w, rows taken heaviest
    first: Householder QR is then accurate row by row, however unequal the weights; Cox & Higham
    1998). ``order`` the rows' order, ``U``/``tau`` the reflectors ``I − τ_j u_j u_j'`` (p × k,
    ``u_j`` 0 before its j-th entry, 1 there), R the p × p factor."""

    w: np.ndarray
    order: np.ndarray
    U: np.ndarray
    tau: np.ndarray
    R: np.ndarray

    def qt(self, B: np.ndarray) -> np.ndarray:
        """``Q'B`` for B (k, or k × n, rows in the data's order), in the QR's row order."""
        B = np.array(np.asarray(B, dtype=float)[self.order])
        for j, t in enumerate(self.tau):
            u = self.U[j, j:]
            B[j:] -= t * np.multiply.outer(u, u @ B[j:])
        return B

    def q(self, C: np.ndarray) -> np.ndarray:
        """``QC`` (C in the QR's row order, k or k × n), rows back in the data's order."""
        C = np.array(C, dtype=float)
        for j in range(self.tau.size - 1, -1, -1):
            u = self.U[j, j:]
            C[j:] -= self.tau[j] * np.multiply.outer(u, u @ C[j:])
        out = np.empty_like(C)
        out[self.order] = C
        return out


def weighted_qr(w: np.ndarray, X: np.ndarray) -> WeightedQR:
    """:class:`WeightedQR` of ``W^{1/2}X`` (no sort when w is already non-increasing)."""
    order = np.arange(w.size) if bool((w[:-1] >= w[1:]).all()) else np.argsort(-w, kind="stable")
    ref, tau = np.linalg.qr(np.sqrt(w[order])[:, None] * X[order], mode="raw")
    p = X.shape[1]
    R = np.triu(ref[:, :p].T)
    U = np.triu(ref, 1)
    U[np.arange(p), np.arange(p)] = 1.0
    return WeightedQR(w, order, U, tau, R)


def wls_pieces(y, v, X, tau2: float):
    """``(w, β̂, A = (X'WX)⁻¹, r)`` for weights ``w = 1/(v + τ²)`` (:func:`_wls`)."""
    w = 1.0 / (v + tau2)
    _, beta, A, r = _wls(y, w, X)
    return w, beta, A, r


def _wls(y, w, X):
    """``(QR, β̂, A, r)`` of the weighted least-squares fit by the QR of the weighted design
    (:func:`weighted_qr`): β̂ from R, the residuals from the part of ``W^{1/2}y`` the design does
    not span (``Q₂Q₂'W^{1/2}y``), so a very precise school's tiny residual keeps its digits and
    ``X'WX``'s conditioning (the square of R's) loses none."""
    qr = weighted_qr(w, X)
    p = X.shape[1]
    c = qr.qt(np.sqrt(w) * y)
    Rinv = linalg.lapack.dtrtri(qr.R)[0]
    beta = Rinv @ c[:p]
    c[:p] = 0.0
    return qr, beta, Rinv @ Rinv.T, qr.q(c) / np.sqrt(w)


def generalized_q(y, v, X, tau2: float) -> float:
    """``Q(τ²) = Σ w_i (y_i − x_i'β̂(τ²))²`` with ``w_i = 1/(v_i + τ²)``: the squared norm of the part
    of ``W^{1/2}y`` the weighted design does not span (:func:`wls_pieces`)."""
    w = 1.0 / (v + tau2)
    c = weighted_qr(w, X).qt(np.sqrt(w) * y)[X.shape[1]:]
    return float(c @ c)


def restricted_loglik(y, v, X, tau2: float) -> float:
    """REML log-likelihood up to a constant (see the module docstring); ``log|X'WX| = 2Σ log|R_jj|``."""
    w = 1.0 / (v + tau2)
    qr, _, _, r = _wls(y, w, X)
    return float(-0.5 * (np.sum(np.log(v + tau2)) + 2.0 * np.log(np.abs(np.diag(qr.R))).sum() + w @ r**2))


def _complement_columns(qr: WeightedQR, j: np.ndarray) -> np.ndarray:
    """The columns j of ``I − H`` (k × |j|) as ``Q₂Q₂'e_j``, from the QR's complement: their
    diagonal entries ``1 − h_j`` keep their digits where ``h_j`` is nearly 1."""
    k, p = qr.w.size, qr.R.shape[0]
    E = np.zeros((k, j.size))
    E[j, np.arange(j.size)] = 1.0
    C = qr.qt(E)
    C[:p] = 0.0
    return qr.q(C)


def _leverages(qr: WeightedQR) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(Q₁, h, heavy, light)``: the first p columns of Q (in the data's row order), the leverages
    ``h_i = |q₁ᵢ|²``, the schools with ``h_i > ½`` (at most 2p, as Σh = p) and the mask of the others."""
    Q1 = qr.q(np.eye(qr.w.size, qr.R.shape[0]))
    h = np.einsum("ip,ip->i", Q1, Q1)
    heavy = h > 0.5
    return Q1, h, np.flatnonzero(heavy), ~heavy


def traces(qr: WeightedQR) -> tuple[float, float]:
    """``(tr P, tr PP)`` of ``P = W − WXAX'W = W^{1/2}(I − H)W^{1/2}`` from the QR of the weighted
    design (:func:`weighted_qr`), ``H = Q₁Q₁'`` with leverages ``h_i = |q₁ᵢ|²``. For the schools
    with ``h_i ≤ ½`` the entries ``δ_ij − q₁ᵢ·q₁ⱼ`` do not cancel; for the others (at most 2p, as
    Σh = p: the schools that carry nearly all the weight, where ``Σw − tr(AX'W²X)`` is 10²⁸ less
    10²⁸ with an SE of 10⁻⁷) the columns of ``I − H`` are ``Q₂Q₂'e_i``, whose diagonal entry
    ``1 − h_i`` keeps its digits. ``tr P = Σw_i(1 − h_i)``, ``tr PP = Σ_ij w_iw_j(I − H)²_ij``:
    among the light schools ``Σw²(1 − 2h) + ‖Σw q₁q₁'‖²`` (all terms ≥ 0), the rest from those
    columns. O(k·p²)."""
    w = qr.w
    Q1, h, j, light = _leverages(qr)
    wl, ql = w[light], Q1[light]
    G = (ql * wl[:, None]).T @ ql
    tr_p = wl @ (1.0 - h[light])
    tr_pp = (wl**2) @ (1.0 - 2.0 * h[light]) + float(np.sum(G * G))
    if j.size:
        M = _complement_columns(qr, j)  # the columns j of I − H
        wm2 = w @ (M * M)  # Σ_l w_l (I − H)²_lj per heavy j
        wm2_heavy = w[j] @ (M[j] ** 2)  # the heavy rows' part of it
        tr_p += w[j] @ M[j, np.arange(j.size)]
        tr_pp += w[j] @ (2.0 * wm2 - wm2_heavy)
    return float(tr_p), float(tr_pp)


def deleted_trace_p(qr: WeightedQR, cancel: float) -> tuple[np.ndarray, np.ndarray]:
    """``tr P`` of every deleted fit (school i left out, the other schools' weights unchanged) from
    the full fit's QR, O(k·p²). With ``M = I − H``, deleting i leaves the others'
    ``M₋ᵢ₋ᵢ − M₋ᵢ,ᵢM_ᵢ,₋ᵢ/M_ii`` (Sherman–Morrison), so ``tr P₍ᵢ₎ = tr P − w_iM_ii − c_i/M_ii``,
    ``c_i = Σ_{j≠i} w_jM_ji²``: over the light schools (``h ≤ ½``) ``q₁ᵢ'Gq₁ᵢ − w_ih_i²``
    (``G = Σ_light w q₁q₁'``), over the heavy ones from their columns of I − H (as :func:`traces`).
    Returns the traces and the fits where this loses more than ``cancel`` to rounding, to be
    computed on their own schools: the heavy schools' (``M_ii`` nearly 0), any whose trace is
    under ``1/cancel`` of tr P, and any whose light part of ``c_i`` is under ``1/cancel`` of the
    own term ``w_ih_i²`` taken from it."""
    w = qr.w
    Q1, h, j, light = _leverages(qr)
    G = (Q1[light] * w[light, None]).T @ Q1[light]
    qgq = np.einsum("ip,pq,iq->i", Q1, G, Q1)
    own = np.where(light, w * h * h, 0.0)  # school i's own term in q₁ᵢ'Gq₁ᵢ
    c = qgq - own
    lost = cancel * c < own
    mii = 1.0 - h
    if j.size:
        M = _complement_columns(qr, j)
        mii[j] = M[j, np.arange(j.size)]
        M[j, np.arange(j.size)] = 0.0  # c_i is over j ≠ i
        c += (M * M) @ w[j]
    tr_p = w @ mii  # as traces()
    out = tr_p - w * mii - c / np.where(light, mii, 1.0)  # (the heavy schools' own fits are redone)
    redo = ~light | lost | (cancel * out < tr_p)
    return out, redo


def _reml_parts(y, v, X, tau2):
    w = 1.0 / (v + tau2)
    qr, _, _, r = _wls(y, w, X)
    tr_p, tr_pp = traces(qr)
    return (w**2) @ r**2 - tr_p, tr_pp


def fe_trace_p(v, X) -> float:
    """``tr P₀ = Σw − tr[(X'WX)⁻¹X'W²X] = Σw_i(1 − h_i)`` at FE weights ``w = 1/v`` (:func:`traces`:
    ``1 − h_i`` of a school that carries nearly all the weight from the QR's complement, where the
    first form cancels)."""
    return traces(weighted_qr(1.0 / v, X))[0]


def dl_tau2(y, v, X) -> float:
    """Method-of-moments τ² (DerSimonian & Laird 1986; Raudenbush 2009 for p > 1):
    ``max(0, (Q_E − (k − p)) / tr P₀)``, ``tr P₀ = Σw − tr[(X'WX)⁻¹X'W²X]`` (:func:`fe_trace_p`),
    ``Q_E = Σw(y − Xβ̂_FE)²`` from the residuals (not ``Σwy² − β̂'X'Wy``, which cancels) with FE
    weights ``w = 1/v``."""
    k, p = X.shape
    return float(max(0.0, (generalized_q(y, v, X, 0.0) - (k - p)) / fe_trace_p(v, X)))


def tau2_grid(v_min: float, scale: float) -> np.ndarray:
    """The τ² of the global search: 0, then 10 a decade from 10⁻⁴ ``v_min`` (the smallest
    sampling variance) to 100·``scale`` (``var(y) + mean(v)``)."""
    lo, hi = 1e-4 * v_min, 100.0 * scale
    return np.concatenate([[0.0], np.geomspace(lo, hi, int(np.ceil(10 * np.log10(hi / lo))) + 1)])


def _loglik_grid(y, v, X, grid: np.ndarray, restricted: bool) -> np.ndarray:
    """``ℓ_R`` (``restricted``) or ``ℓ`` at every τ² of ``grid``, in blocks of ``len(grid) × k``
    weights (the module docstring's formulas; ``r'Wr = Σwy² − β̂'X'Wy``, accurate for locating
    the maximum when y is already a residual)."""
    k, p = X.shape
    F = np.column_stack([(X[:, :, None] * X[:, None, :]).reshape(k, p * p), X * y[:, None], y * y])
    out = np.empty(grid.size)
    for s in np.array_split(np.arange(grid.size), max(1, int(np.ceil(grid.size * k / 2**20)))):
        W = 1.0 / (v[None, :] + grid[s, None])
        S = W @ F
        M = S[:, : p * p].reshape(-1, p, p)
        u = S[:, p * p: p * p + p]
        rwr = S[:, -1] - np.einsum("np,np->n", np.linalg.solve(M, u[..., None])[..., 0], u)
        ll = -np.log(W).sum(axis=1) + rwr
        out[s] = -0.5 * (ll + np.linalg.slogdet(M)[1] if restricted else ll)
    return out


def _bounded_max(step, objective, a: float, b: float, tol: float, scale: float, name: str) -> float:
    """The maximum of ``objective`` on [a, b] by scipy's bounded search; its own stopping rule is
    relative (about 1.5e-8·τ²), so the root of the score beside it (within [a, b]) is taken to
    ``tol`` (row order moved μ̂ by 1e-8 where Fisher scoring converged slowly)."""
    res = optimize.minimize_scalar(lambda t: -objective(t), bounds=(a, b), method="bounded",
                                   options={"xatol": tol * scale})
    if not res.success:
        raise ConvergenceError(f"{name} estimate of tau² did not converge (Fisher scoring and bounded search)")
    x, half = float(res.x), 1e-4 * scale
    lo, hi = max(a, x - half), min(b, x + half)
    if step(lo) > 0.0 > step(hi):
        return float(optimize.brentq(step, lo, hi, xtol=tol * scale, rtol=4 * np.finfo(float).eps))
    return x


def _fisher_scoring(y, v, X, step, objective, restricted: bool, name: str, tol: float, maxiter: int) -> float:
    """The global maximizer of the (restricted) log-likelihood on τ² ≥ 0. Fisher scoring
    ``τ² ← max(0, τ² + step(τ²))`` from the DL value (if it does not settle within ``maxiter``
    steps, a bounded maximization on [0, 100·scale]) finds a local maximum; the likelihood can
    have another, higher one (or be higher at the boundary 0), so it is also evaluated at 0 and on
    a grid of τ² (10 a decade, from 10⁻⁴ min v to 100·scale, ``scale = var(y) + mean(v)``), whose
    best point is refined by a bounded search between its neighbours; the highest of the three is
    kept (the scoring result unless another is higher by more than rounding)."""
    scale = float(np.var(y) + np.mean(v))  # tolerances relative to it: rescaled data, the same fit
    tau2 = dl_tau2(y, v, X)
    for _ in range(maxiter):
        new = max(0.0, tau2 + step(tau2))
        settled = abs(new - tau2) <= tol * scale
        tau2 = new
        if settled:
            break
    else:
        tau2 = _bounded_max(step, objective, 0.0, 100.0 * scale, tol, scale, name)
    grid = tau2_grid(float(v.min()), scale)
    ll = _loglik_grid(wls_pieces(y, v, X, 0.0)[3], v, X, grid, restricted)  # residuals: the same likelihood
    best, top = tau2, objective(tau2)
    margin = 1e-10 * (1.0 + abs(top))
    i = int(np.argmax(ll))
    candidates = [0.0]
    if i > 0 and ll[i] > top + margin:
        candidates.append(_bounded_max(step, objective, grid[i - 1], grid[min(i + 1, grid.size - 1)], tol, scale, name))
    for t in candidates:
        f = objective(t)
        if f > top + margin:
            best, top = t, f
    return best


def reml_tau2(y, v, X, *, tol: float = 1e-10, maxiter: int = 200) -> tuple[float, float]:
    """REML τ², the global maximizer of ``ℓ_R`` on τ² ≥ 0 (:func:`_fisher_scoring`: Fisher scoring
    from the DL value, truncated at 0, checked against ℓ_R(0) and a grid search). Returns
    ``(τ², SE(τ²))``, the SE from the inverse Fisher information ``√(2 / tr PP)`` (0 is reported
    with that SE too)."""
    def step(t):
        score, info = _reml_parts(y, v, X, t)
        return score / info

    tau2 = _fisher_scoring(y, v, X, step, lambda t: restricted_loglik(y, v, X, t), True, "REML", tol, maxiter)
    return float(tau2), reml_se(y, v, X, tau2)


def reml_se(y, v, X, tau2: float) -> float:
    """``√(2 / tr PP)`` at ``tau2``: the SE of τ̂² from the REML Fisher information (:func:`traces`),
    at any estimator's τ̂²."""
    return float(np.sqrt(2.0 / traces(weighted_qr(1.0 / (v + tau2), X))[1]))


def loglik(y, v, X, tau2: float) -> float:
    """ML log-likelihood up to a constant (see the module docstring)."""
    w, _, _, r = wls_pieces(y, v, X, tau2)
    return float(-0.5 * (np.sum(np.log(v + tau2)) + w @ r**2))


def ml_tau2(y, v, X, *, tol: float = 1e-10, maxiter: int = 200) -> tuple[float, float]:
    """ML τ², the global maximizer of ``ℓ`` on τ² ≥ 0 (:func:`_fisher_scoring`), the Fisher step
    ``Δ = (r'W²r − Σw)/Σw²`` (truncated at 0). Returns ``(τ², √(2/Σw²))``."""
    def step(t):
        w, _, _, r = wls_pieces(y, v, X, t)
        return float((w**2) @ r**2 - w.sum()) / float(w @ w)

    tau2 = _fisher_scoring(y, v, X, step, lambda t: loglik(y, v, X, t), False, "ML", tol, maxiter)
    w = 1.0 / (v + tau2)
    return float(tau2), float(np.sqrt(2.0 / (w @ w)))


def _ols_rss(y, X) -> tuple[float, np.ndarray]:
    """``(RSS, (X'X)⁻¹)`` of the unweighted least-squares fit."""
    XtX_inv = np.linalg.inv(X.T @ X)
    r = y - X @ (XtX_inv @ (X.T @ y))
    return float(r @ r), XtX_inv


def he_tau2(y, v, X) -> float:
    """Hedges' unweighted method-of-moments τ² (module docstring)."""
    k, p = X.shape
    rss, XtX_inv = _ols_rss(y, X)
    tr = v.sum() - np.trace(XtX_inv @ ((X * v[:, None]).T @ X))
    return float(max(0.0, (rss - tr) / (k - p)))


def hs_tau2(y, v, X) -> float:
    """Hunter–Schmidt τ² ``max(0, (Q_E − k)/Σw)``, ``w = 1/v`` (module docstring)."""
    k = X.shape[0]
    w = 1.0 / v
    return float(max(0.0, (generalized_q(y, v, X, 0.0) - k) / w.sum()))


def sj_tau2(y, v, X) -> float:
    """Sidik–Jonkman τ² ``τ₀² Q(τ₀²)/(k − p)`` from ``τ₀² = RSS/k`` (module docstring)."""
    k, p = X.shape
    tau0 = _ols_rss(y, X)[0] / k
    if tau0 <= 0:
        return 0.0
    return float(tau0 * generalized_q(y, v, X, tau0) / (k - p))


def pm_tau2(y, v, X, *, tol: float = 1e-12) -> float:
    """Paule–Mandel τ² for meta-regression: the root of ``Q(τ²) = k − p`` (0 if ``Q(0) < k − p``)."""
    k, p = X.shape
    return _solve_q(y, v, X, float(k - p), tol)


def _solve_q(y, v, X, target: float, tol: float) -> float:
    """The τ² ≥ 0 at which ``Q(τ²) = target`` (0 if ``Q(0) ≤ target``); Q is decreasing."""
    if generalized_q(y, v, X, 0.0) <= target:
        return 0.0
    hi = float(np.var(y) + np.mean(v)) + 1e-12
    for _ in range(200):
        if generalized_q(y, v, X, hi) < target:
            break
        hi *= 4.0
    else:  # pragma: no cover - Q(τ²) → 0 as τ² → ∞, so this is unreachable for finite data
        raise ConvergenceError("could not bracket the root of the generalized Q statistic")
    return float(optimize.brentq(lambda t: generalized_q(y, v, X, t) - target, 0.0, hi, xtol=tol * hi, rtol=1e-14))


def q_profile_ci(y, v, X, level: float = 0.95) -> tuple[float, float]:
    """Q-profile confidence interval for τ² (Viechtbauer 2007): the τ² values at which
    ``Q(τ²)`` equals the upper and lower ``(1 − level)/2`` quantiles of χ²(k − p);
    an end is 0 when ``Q(0)`` already lies below its quantile."""
    k, p = X.shape
    a = (1.0 - level) / 2.0
    df = k - p
    low = _solve_q(y, v, X, float(stats.chi2.ppf(1.0 - a, df)), 1e-12)
    high = _solve_q(y, v, X, float(stats.chi2.ppf(a, df)), 1e-12)
    return low, high


TAU2_METHODS = ("REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE")
#: Estimators defined for a full sampling covariance V (they depend on the data only through
#: the likelihood, the generalized Q or unweighted residuals, all invariant to the rotation
#: by V's eigenvectors); HS needs the sum of independent FE weights.
VCOV_METHODS = ("REML", "ML", "DL", "PM", "EB", "HE", "SJ", "FE")


def estimate_tau2(method: str, y, v, X) -> tuple[float, float]:
    """``(τ̂², SE)`` by ``method`` (one of :data:`TAU2_METHODS`); the SE is the
    information-based one for REML and ML and NaN otherwise."""
    if method == "FE":
        return 0.0, math.nan
    if method == "REML":
        return reml_tau2(y, v, X)
    if method == "ML":
        return ml_tau2(y, v, X)
    one = {"DL": dl_tau2, "PM": pm_tau2, "EB": pm_tau2, "HE": he_tau2, "SJ": sj_tau2, "HS": hs_tau2}[method]
    return one(y, v, X), math.nan
