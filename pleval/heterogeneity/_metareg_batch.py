"""Many meta-regression fits on one design matrix at once (permutation tests).

Each row b of ``(Y, V)`` (n × k) is a data set of k estimates and sampling variances fitted on
the same design X (k × p). Everything is p × p algebra per row (``einsum`` over the k
estimates): ``X'WX``, ``A = (X'WX)⁻¹``, β̂, residuals, and the τ² estimators of :mod:`._tau2` —
closed forms for DL, HE, HS, SJ and FE; vector Fisher scoring for REML and ML and vector Newton
steps on ``Q(τ²) = k − p`` (``dQ/dτ² = −r'W²r``) for PM/EB, from the DL value (PM/EB: from 0).
A row whose iteration has not settled is refitted alone by :mod:`._tau2`.
"""

from __future__ import annotations

import numpy as np

from . import _tau2


def wls_batch(Y: np.ndarray, V: np.ndarray, X: np.ndarray, t: np.ndarray):
    """Per row at τ² = t: weights ``W``, ``A = (X'WX)⁻¹``, β̂ and residuals R."""
    W = 1.0 / (V + t[:, None])
    A = np.linalg.inv(np.einsum("nk,kp,kq->npq", W, X, X, optimize=True))
    beta = np.einsum("npq,nq->np", A, (W * Y) @ X, optimize=True)
    return W, A, beta, Y - beta @ X.T


def ax(A: np.ndarray, X: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``A X' diag(D) X`` per row (n × p × p)."""
    return np.einsum("npq,nk,kq,kr->npr", A, D, X, X, optimize=True)


def tau2_batch(method: str, Y: np.ndarray, V: np.ndarray, X: np.ndarray) -> np.ndarray:
    """τ̂² of the meta-regression of every row of (Y, V) on X."""
    n, k = Y.shape
    p = X.shape[1]
    kb = np.full(n, float(k))
    ones = np.ones((n, k))
    zero = np.zeros(n)
    if method == "FE":
        return zero
    if method in ("HE", "SJ"):  # unweighted least squares of the estimates in each fit
        B = np.linalg.inv(np.einsum("nk,kp,kq->npq", ones, X, X, optimize=True))
        bo = np.einsum("npq,nq->np", B, (ones * Y) @ X, optimize=True)
        rss = (ones * (Y - bo @ X.T) ** 2).sum(axis=1)
        if method == "HE":
            tr = (ones * V).sum(axis=1) - np.trace(ax(B, X, ones * V), axis1=1, axis2=2)
            return np.maximum(0.0, (rss - tr) / (kb - p))
        t0 = rss / kb
        W, _, _, R = wls_batch(Y, V, X, t0)
        return np.where(t0 > 0, t0 * (W * R * R).sum(axis=1) / (kb - p), 0.0)
    W, A, _, R = wls_batch(Y, V, X, zero)
    q0 = (W * R * R).sum(axis=1)
    if method == "HS":
        return np.maximum(0.0, (q0 - kb) / W.sum(axis=1))
    dl = np.maximum(0.0, (q0 - (kb - p)) / (W.sum(axis=1) - np.trace(ax(A, X, W * W), axis1=1, axis2=2)))
    if method == "DL":
        return dl
    scale = float(np.var(Y[0]) + np.mean(V[0]))
    t, done = (zero.copy(), q0 <= kb - p) if method in ("PM", "EB") else (dl, np.zeros(n, dtype=bool))
    for _ in range(100):
        W, A, _, R = wls_batch(Y, V, X, t)
        wr2 = (W * W * R * R).sum(axis=1)
        if method == "REML":
            B2 = ax(A, X, W * W)
            tr_p = W.sum(axis=1) - np.trace(B2, axis1=1, axis2=2)
            tr_pp = ((W * W).sum(axis=1) - 2 * np.trace(ax(A, X, W**3), axis1=1, axis2=2)
                     + np.einsum("npq,nqp->n", B2, B2))
            step = (wr2 - tr_p) / tr_pp
        elif method == "ML":
            step = (wr2 - W.sum(axis=1)) / (W * W).sum(axis=1)
        else:  # PM / EB
            q = (W * R * R).sum(axis=1)
            step = np.where(wr2 > 0, (q - (kb - p)) / np.where(wr2 > 0, wr2, 1.0), 0.0)
        new = np.where(done, t, np.maximum(0.0, t + step))
        conv = np.abs(new - t) <= 1e-10 * (1.0 + scale)
        t = new
        if conv.all():
            return t
    for i in np.flatnonzero(~conv):  # rare: a row the vector iteration did not settle
        t[i] = _tau2.estimate_tau2(method, Y[i], V[i], X)[0]
    return t
