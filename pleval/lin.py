"""Lin's (2013) fully interacted covariate adjustment for randomized experiments.

Regress the outcome on the treatment indicator, the covariates centred at their sample means
and the treatment × centred-covariate interactions::

    y_i = α + τ z_i + (x_i − x̄)'β + z_i (x_i − x̄)'γ + ε_i

τ̂ equals the difference of the two arms' regression predictions at the overall covariate mean
x̄ — the average treatment effect estimated by separate regressions in each arm. Unlike the
usual (non-interacted) adjustment it cannot hurt asymptotic precision, and with a robust
covariance it is consistent without a constant effect (Lin 2013, Annals of Applied
Statistics 7:295–318, Theorems 1–2; Freedman 2008's critique answered). estimatr's ``lm_lin``
with ``se_type = "HC2"`` (``"CR2"`` with clusters) is this estimator; so is pleval's with
``vcov="HC2"`` / ``"CR2"``.

With block indicators among the covariates the treatment is interacted with the blocks too,
so τ̂ is the block-size-weighted average of the within-block effects (the blocked difference in
means when blocks are the only covariates).

:func:`lin_within` fits that model without forming the 2·(B − 1) block columns. Block and
block × treatment indicators span the block × arm cells, so with the cells absorbed the slopes
θ = (β, γ) come from the within-cell regression on ``[x − x̄, z(x − x̄)]`` (Frisch–Waugh–Lovell),
and τ̂ is the average of the blocks' adjusted differences at x̄, blocks weighted by their share of
students π_b::

    τ̂ = Σ_b π_b (ȳ_b1 − ȳ_b0) − β̂'Σ_b π_b (x̄_b1 − x̄_b0) − γ̂'Σ_b π_b (x̄_b1 − x̄)

(x̄_ba the cell means). It is linear in y, τ̂ = a'y with ``a = c + R̃Mg`` (c_i = ±π_b/n_ba, R̃
the within-cell regressors, M = (R̃'R̃)⁻¹, g the coefficients of θ̂ above), so its HC covariance
with θ̂ is ``A' diag(ω) A`` for ``A = [a, R̃M]``, ω_i = e_i² (HC0), × n/(n − k) (HC1) or
÷ (1 − h_ii) (HC2, h_ii = 1/n_cell + r̃_i'Mr̃_i) — the sandwich of the fit with indicators, row
for row; k = 2B + 2p and the df n − k (HC0, HC1, classical) are that fit's too. HC2's df are Bell &
McCaffrey's of that fit (:func:`pleval.inference.robust.hc2_df` with the cells absorbed; n − k
before 2026-12-05).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from scipy import linalg

from .errors import DataError, DesignError
from .inference import OLSFit, ols


def lin_design(z, covariates, names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Regressors ``[1, z, x − x̄, z·(x − x̄)]`` and their names (covariates as an n×p array or frame).

    Covariates constant in the sample, or collinear once centred, are the caller's to drop: the
    fit raises :class:`~pleval.errors.DesignError` naming the collinearity.
    """
    z = np.asarray(z, dtype=float).ravel()
    if isinstance(covariates, pd.DataFrame):
        names = [str(c) for c in covariates.columns] if names is None else list(names)
        C = covariates.to_numpy(dtype=float)
    else:
        C = np.asarray(covariates, dtype=float)
        C = C[:, None] if C.ndim == 1 else C
        names = [f"x{j}" for j in range(C.shape[1])] if names is None else list(names)
    if C.shape[0] != z.size or len(names) != C.shape[1]:
        raise DataError(f"Lin adjustment: {C.shape[0]} covariate rows for {z.size} outcomes, {len(names)} names for "
                        f"{C.shape[1]} columns")
    if not np.isin(z, (0.0, 1.0)).all():
        raise DataError("Lin adjustment: the treatment must be coded 0/1")
    Cc = C - C.mean(axis=0)
    X = np.column_stack([np.ones(z.size), z, Cc, z[:, None] * Cc])
    return X, ["const", "treatment"] + [f"{n}_c" for n in names] + [f"treatment:{n}_c" for n in names]


def lin_ols(y, z, covariates, *, clusters=None, vcov: str | None = None, names: Sequence[str] | None = None) -> OLSFit:
    """Lin's estimator: :func:`lin_design` fitted by :func:`pleval.inference.ols`; the effect is
    the ``"treatment"`` coefficient. ``vcov`` defaults to CR2 with clusters, HC2 without
    (estimatr's ``lm_lin`` defaults)."""
    X, xn = lin_design(z, covariates, names)
    vcov = vcov or ("CR2" if clusters is not None else "HC2")
    return ols(y, X, names=xn, clusters=clusters, vcov=vcov)


def lin_within(y, z, covariates, blocks, *, vcov: str = "HC2", names: Sequence[str] | None = None) -> OLSFit:
    """Lin's estimator with the block indicators among the covariates, the block × arm cells
    absorbed (module docstring): the same τ̂ (coefficient ``"treatment"``), slopes, HC/classical
    covariance and df as :func:`lin_design` with the indicators and :func:`pleval.inference.ols`.
    ``blocks``: integer codes 0..B−1, every block with both arms (the caller leaves the others
    out)."""
    from .inference.robust import _constant_df, _hc2_contrast_df, within_transform

    if vcov not in ("HC0", "HC1", "HC2", "classical"):
        raise DataError(f"lin_within: vcov must be HC0, HC1, HC2 or classical; got {vcov!r}")
    X, xn = lin_design(z, covariates, names)
    y, z = np.asarray(y, dtype=float).ravel(), X[:, 1]
    codes = np.asarray(blocks)
    n, B = y.size, int(codes.max()) + 1
    cell = 2 * codes + z.astype(np.intp)
    n_cell = np.bincount(cell, minlength=2 * B).astype(float)
    if (n_cell == 0).any():
        raise DesignError("lin_within: every block needs treated and control rows")
    p = (X.shape[1] - 2) // 2
    yw, R, n_cells, h_cell = within_transform(y, X[:, 2:], cell, None)
    XtX = R.T @ R
    try:
        M = linalg.cho_solve((linalg.cholesky(XtX, lower=True), True), np.eye(2 * p)) if p else np.zeros((0, 0))
    except linalg.LinAlgError:
        raise DesignError("Lin adjustment: the centred covariates are collinear within the block × arm cells") from None
    theta = M @ (R.T @ yw)
    e = yw - R @ theta
    pi = np.bincount(codes, minlength=B) / n

    def cell_means(v):
        m = np.bincount(cell, weights=v, minlength=2 * B) / n_cell
        return m[1::2], m[0::2]  # treated, control per block

    y1, y0 = cell_means(y)
    Cc = X[:, 2 : 2 + p]
    mc = [cell_means(Cc[:, j]) for j in range(p)]
    g = np.concatenate([[-pi @ (m1 - m0) for m1, m0 in mc], [-pi @ m1 for m1, _ in mc]])
    tau = float(pi @ (y1 - y0) + g @ theta)
    RM = R @ M
    sign = np.where(z == 1, 1.0, -1.0)
    a = pi[codes] * sign / n_cell[cell] + RM @ g
    A = np.column_stack([a, RM])
    k = n_cells + 2 * p
    if vcov == "classical":
        V = A.T @ A * float(e @ e) / (n - k)
    else:
        w = e**2
        if vcov == "HC2":
            h = h_cell + np.einsum("ij,ij->i", RM, R)
            if np.any(h >= 1.0 - 1e-10):
                raise DesignError("Lin adjustment, HC2: a block has a single treated or control student (leverage 1): "
                                  "its effect has no variance estimate; use the additive model (lin=False)")
            w = w / (1.0 - h)
        elif vcov == "HC1":
            w = w * n / (n - k)
        V = A.T @ (w[:, None] * A)
    params = np.concatenate([[tau], theta])
    if vcov == "HC2":  # Bell & McCaffrey's df of c'(τ̂, θ̂) = (Ac)'y and HTZ (n − k before 2026-12-05)
        df, eta = _hc2_contrast_df(R, None, h, M, (cell, n_cell), weights_of=lambda C: A @ C.T)
    else:
        df, eta = _constant_df(float(n - k)), None
    return OLSFit(params, V, tuple(["treatment", *xn[2:]]), n, 1 + 2 * p, None, vcov, e,
                  df, None, n_cells - 1, eta)  # cells less the one τ̂ stands in for (df_resid: n − k)


__all__ = ["lin_design", "lin_ols", "lin_within"]
