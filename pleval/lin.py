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
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .errors import DataError
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


__all__ = ["lin_design", "lin_ols"]
