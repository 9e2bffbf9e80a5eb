"""Entropy balancing (Hainmueller 2012; WeightIt's ``method = "ebal"``).

Weights for the comparison group (ATT) — or for each group (ATE) — that reproduce the target
moments exactly while staying as close as possible to base weights ``q`` (uniform, or the
analysis weights):

    minimize Σ_j w_j log(w_j / q_j)   subject to   Σ_j w_j c_j / Σ_j w_j = m,

where ``c_j`` are the balance columns (covariates, categorical ones as indicators, and with
``moments = k`` their powers up to ``k``) and ``m`` their mean among the treated (ATT) or in
the whole sample (ATE). The solution is ``w_j ∝ q_j exp(λ'c_j)`` with ``λ`` minimizing the
convex dual

    f(λ) = log Σ_j q_j exp(λ'(c_j − m)),

whose gradient is the weighted mean of ``c − m`` (zero at the solution: exact balance) and whose
Hessian is the weighted covariance of ``c``. ``f`` is minimized by
``scipy.optimize.minimize(method="trust-exact")`` with that gradient and Hessian, on columns
centred at the target and standardized by their SD (folded into λ rather than rescaling the
rows) so that the tolerance (``tol``, default 1e-10 SD) means the same for
every column (a solution is accepted when every column is within :data:`ACCEPT` = 1e-6 SD
of its target). Weights are scaled as WeightIt's: comparison weights sum to the number of
treated units (ATT); each group's weights sum to the sample size (ATE). With analysis weights
``a`` (``base=``) the target is the ``a``-weighted mean, ``q = a``, treated rows keep ``a`` (ATT)
and the sums are ``Σa`` in place of the counts, as WeightIt does with ``s.weights``.

A target outside the range of a group's values (or a column constant in the group but not at
the target) has no solution: :class:`~pleval.errors.DesignError` names the column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..errors import ConvergenceError, DataError, DesignError

ESTIMANDS = ("ATT", "ATE")
ACCEPT = 1e-6
"""Largest remaining |weighted mean − target| (in SD units) accepted as exact balance; the
solver aims at ``tol`` (1e-10) and stops short of it only at the limits of float precision."""


@dataclass(frozen=True)
class EntropyWeights:
    weight: np.ndarray  # per row
    max_imbalance: float  # largest |weighted mean − target| after weighting, in SD units
    iterations: int


HESSIAN_ROWS = 100_000
"""The Hessian is computed from at most this many rows (every m-th); the gradient uses all."""


class _Dual:
    """``f``, its gradient and Hessian at the last λ asked for (scipy asks for all three), in
    the standardized coordinates ``(c − m)/s`` without forming them: ``η = D(λ/s)``, gradient
    ``(p'D)/s``, Hessian ``diag(1/s) Cov_p(D) diag(1/s)``.

    On more than :data:`HESSIAN_ROWS` rows the Hessian comes from a systematic subsample: it
    only steers the Newton steps, so the solution (where the exact gradient vanishes) is the
    same, and each step costs a tenth as much at a million rows."""

    def __init__(self, D: np.ndarray, scale: np.ndarray, log_base: np.ndarray | None = None):
        self.D, self.scale, self.log_base = D, scale, log_base
        self.sub = slice(None, None, max(1, len(D) // HESSIAN_ROWS))
        self.D_sub = np.ascontiguousarray(D[self.sub])
        self.lam = None

    def _at(self, lam):
        if self.lam is None or not np.array_equal(lam, self.lam):
            eta = self.D @ (lam / self.scale)
            if self.log_base is not None:
                eta += self.log_base
            top = eta.max()
            e = np.exp(eta - top)
            s = e.sum()
            p = e / s
            g = (p @ self.D) / self.scale
            self.lam, self.f, self.p, self.g = lam.copy(), top + np.log(s), p, g
            self.h = None
        return self

    def fun(self, lam):
        a = self._at(lam)
        return a.f, a.g

    def hess(self, lam):
        a = self._at(lam)
        if a.h is None:
            p = a.p[self.sub]
            Ds = self.D_sub
            g = (p @ Ds) / p.sum()
            Dp = (Ds - g) * np.sqrt(p / p.sum())[:, None]
            a.h = (Dp.T @ Dp) / np.outer(self.scale, self.scale)
        return a.h


def balance_to(C: np.ndarray, target: np.ndarray, names, tol: float = 1e-10,
               base: np.ndarray | None = None) -> tuple[np.ndarray, float, int]:
    """Entropy-balancing weights (summing to 1) of the rows of ``C`` whose weighted mean is
    ``target`` (centred at the target in place: pass a copy), the largest remaining imbalance
    in SD units and the number of iterations. ``base``: positive base weights ``q`` (default
    uniform). One pass each for the centring, the column sums and sums of squares (the SDs) and
    the ranges; then two per function evaluation."""
    n = len(C)
    D = C
    D -= target  # the caller's copy of the group, centred at the target
    mean = np.ones(n) @ D / n  # group mean − target
    sd = np.sqrt(np.maximum(np.einsum("ij,ij->j", D, D) / n - mean**2, 0.0))
    lo, hi = D.min(axis=0), D.max(axis=0)  # the group's range, relative to the target
    tiny = 1e-9 * np.maximum(1.0, np.abs(target))
    flat = sd <= 1e-12 * np.maximum(1.0, np.abs(target))
    bad = (flat & (np.abs(lo) > tiny)) | (~flat & ((lo > 0) | (hi < 0)))
    if bad.any():
        raise DesignError(
            "entropy balancing has no solution: the target mean of "
            + ", ".join(f"{names[j]!r} ({target[j]:.4g}; group range {lo[j] + target[j]:.4g} to {hi[j] + target[j]:.4g})"
                        for j in np.flatnonzero(bad))
            + " lies outside the values of the group to be weighted"
        )
    keep = ~flat
    dual = _Dual(D[:, keep] if not keep.all() else D, sd[keep], None if base is None else np.log(base))
    res = minimize(dual.fun, np.zeros(int(keep.sum())), jac=True, hess=dual.hess, method="trust-exact",
                   options={"gtol": tol, "maxiter": 500})
    a = dual._at(res.x)
    imbalance = float(np.abs(a.g).max(initial=0.0))
    if not imbalance <= ACCEPT:
        raise ConvergenceError(
            f"entropy balancing did not reach balance (largest remaining difference {imbalance:.2g} SD after "
            f"{res.nit} iterations); drop near-collinear or extreme balance columns, or use fewer moments"
        )
    return a.p, imbalance, int(res.nit)


def balance_columns(X: np.ndarray, names, moments: int = 1) -> tuple[np.ndarray, list[str]]:
    """``X`` plus, for non-binary columns, their powers 2..``moments``."""
    if not (isinstance(moments, (int, np.integer)) and 1 <= moments <= 3):
        raise DataError(f"moments must be 1, 2 or 3; got {moments!r}")
    cols, out_names = [X], list(names)
    binary = np.array([np.isin(X[:, j], (0.0, 1.0)).all() for j in range(X.shape[1])], bool)
    for k in range(2, moments + 1):
        cols.append(X[:, ~binary] ** k)
        out_names += [f"{n}^{k}" for n, b in zip(names, binary) if not b]
    return np.column_stack(cols), out_names


def entropy_weights(C, treated, *, estimand: str = "ATT", names=None, tol: float = 1e-10, base=None) -> EntropyWeights:
    """Entropy-balancing weights for balance columns ``C`` (module docstring). ``base``: the rows'
    positive analysis weights ``a`` (default all 1), which define the target (the ``a``-weighted
    treated or overall means), serve as the base weights ``q`` and scale the result: treated
    rows keep ``a`` (ATT), and a group's weights sum to the treated rows' (ATT) or all rows'
    (ATE) ``Σa``."""
    if estimand not in ESTIMANDS:
        raise DataError(f"estimand must be one of {ESTIMANDS}; got {estimand!r}")
    C = np.asarray(C, float)
    t1 = np.asarray(treated).astype(bool)
    names = list(names) if names is not None else [f"column {j}" for j in range(C.shape[1])]
    a = np.ones(len(C)) if base is None else np.asarray(base, float)
    w = a.copy()
    worst, iters = 0.0, 0
    if estimand == "ATT":  # means as matrix-vector products: no copy of the rows
        at = np.where(t1, a, 0.0)
        target, groups, total = (at @ C) / at.sum(), (~t1,), float(at.sum())
    else:
        target, groups, total = a @ C / a.sum(), (t1, ~t1), float(a.sum())
    for g in groups:
        p, imb, it = balance_to(C[g], target, names, tol, None if base is None else a[g])  # C[g] is a copy
        w[g] = p * total
        worst, iters = max(worst, imb), iters + it
    return EntropyWeights(w, worst, iters)


__all__ = ["entropy_weights", "balance_to", "balance_columns", "EntropyWeights"]
