"""Least squares with heteroskedasticity- and cluster-robust covariance.

Model ``y = Xβ + ε`` fitted by (weighted) least squares, ``β̂ = M X'Wy`` with
``M = (X'WX)⁻¹``. With weights the model is transformed, ``X̃ = W^{1/2}X``,
``ẽ = W^{1/2}e``, and everything below applies to the transformed model.

Cluster-robust covariance (Liang & Zeger 1986), clusters g = 1..G::

    V = M [Σ_g X̃_g' A_g ẽ_g ẽ_g' A_g X̃_g] M

* CR0: ``A_g = I``.
* CR1: CR0 × G/(G−1) · (n−1)/(n−k) with G − 1 df (Stata's ``vce(cluster)``; ``cluster_df="G-1"``,
  the default), or CR0 × G/(G−k) with G − k df (``cluster_df="G-p"``: metafor's
  ``robust(..., adjust=TRUE)``, Hedges, Tipton & Johnson 2010). CR0 takes the df of the same
  convention.
* CR2: ``A_g = (I − H_gg)^{−1/2}``, ``H_gg = X̃_g M X̃_g'`` (Bell & McCaffrey 2002; the
  Moore–Penrose inverse root where ``I − H_gg`` is singular, as clubSandwich),
  with Satterthwaite degrees of freedom for each coefficient/contrast
  (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, working model Φ = I).

HC (each observation its own cluster): HC0/HC1 (× n/(n−k)); HC2 with
``(1 − h_ii)^{−1}`` (MacKinnon & White 1985).

**No n×n or n_g×n_g matrix is formed.** With ``S_g = X̃_g'X̃_g`` and ``u_g = X̃_g'ẽ_g``
(k×k and k, accumulated for all clusters in one pass) and ``M = LL'``, the non-zero
eigenvalues of ``H_gg`` are those of ``C_g = L'S_gL = W_g diag(λ) W_g'`` and, writing
``f(λ) = (1−λ)^{−1/2} − 1`` and ``F_g = W_g diag(f(λ)/λ) W_g'``,

    X̃_g' A_g ẽ_g = u_g + S_g L F_g L' u_g.

For the Satterthwaite df of contrast c, ``p_g = A_g X̃_g M c = X̃_g a_g`` with
``a_g = Mc + L F_g L' S_g M c``; then with ``z_g = S_g a_g``, ``s_g = a_g' S_g a_g``
and ``Z = [z_g]``, ``ν = (Σ s_g − tr(MZ'Z))² / (Σ s_g² − 2 Σ s_g z_g'Mz_g + ‖MZ'Z‖²_F)``,
since ``q_g'q_h = δ_gh s_g − z_g'Mz_h`` for ``q_g = (I−H)_{·g} p_g``. All of this is
batched over clusters (numpy stacked ``eigh``); memory is O(G·k²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, sparse

from .._results import ResultMixin, t_interval
from ..errors import DataError, DesignError

VcovType = Literal["CR2", "CR1", "CR0", "HC2", "HC1", "HC0", "classical"]
_CLUSTER_TYPES = ("CR0", "CR1", "CR2")
_HC_TYPES = ("HC0", "HC1", "HC2")


def _as_2d(X) -> tuple[np.ndarray, list[str]]:
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        X = X.to_numpy(dtype=float)
    else:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        names = [f"x{j}" for j in range(X.shape[1])]
    return X, names


def cluster_codes(clusters) -> tuple[np.ndarray, int]:
    """Integer codes 0..G−1 for any cluster labels, and G."""
    codes, uniques = pd.factorize(pd.Series(clusters).to_numpy(), sort=False)
    if np.any(codes < 0):
        raise DataError(f"cluster ids: {int((codes < 0).sum())} row(s) have a missing cluster id")
    return codes.astype(np.intp), len(uniques)


def grouped_cross_products(X: np.ndarray, codes: np.ndarray, G: int, e: np.ndarray | None = None, w: np.ndarray | None = None):
    """Per-cluster ``S_g = X_g'W_gX_g`` (G×k×k) and, if ``e`` is given, ``u_g = X_g'W_ge_g`` (G×k).

    Sums over the rows of each cluster are products with the sparse G×n matrix ``A`` holding
    the weights (``A[g, r] = w_r`` for r in g). A column constant within every cluster (the
    intercept, a cluster-level treatment, block indicators when clusters nest in blocks)
    needs no pairwise pass: for such a column i, ``S_g[i, j] = c_gi · (A X)_gj``. Only the
    within-cluster-varying columns are multiplied pairwise. O(n·k_v·k) time for k_v varying
    columns, O(G·k²) memory.
    """
    n, k = X.shape
    w = np.ones(n) if w is None else w
    A = sparse.csr_matrix((w, (codes, np.arange(n))), shape=(G, n))
    sums = A @ X
    some_row = np.zeros(G, dtype=np.intp)
    some_row[codes] = np.arange(n)  # any row of each cluster
    level = X[some_row]  # each cluster's value of each column, where the column is cluster-level
    const = np.array([np.array_equal(X[:, j], level[:, j][codes]) for j in range(k)], dtype=bool)
    S = np.empty((G, k, k))
    S[:, const, :] = level[:, const, None] * sums[:, None, :]
    S[:, :, const] = np.swapaxes(S[:, const, :], 1, 2)
    vary = np.flatnonzero(~const)
    for a, i in enumerate(vary):  # loop over varying regressors, not over clusters
        block = A @ (X[:, vary[a:]] * X[:, [i]])
        S[:, i, vary[a:]] = block
        S[:, vary[a:], i] = block
    S[np.bincount(codes, minlength=G) == 0] = 0.0
    U = None if e is None else A @ (X * e[:, None])
    return S, U


def _cr2_factors(S: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``L F_g L'`` for every cluster (G×k×k), ``F_g = W diag(f(λ)/λ) W'``, ``C_g = L'S_gL``.

    A cluster whose leverage reaches 1 in some direction (a regressor identified by that
    cluster alone, e.g. a school fixed effect with SEs clustered by school) gets the
    Moore–Penrose inverse square root of ``I − H_gg`` there, as clubSandwich does
    (Pustejovsky & Tipton 2018): eigenvalue 0 of ``I − H_gg`` maps to 0, i.e.
    ``f(1) = −1``, so that direction of the cluster's residual (which is exactly 0) adds nothing.
    """
    C = np.einsum("ji,gjk,kl->gil", L, S, L, optimize=True)
    lam, W = np.linalg.eigh(C)
    lam = np.clip(lam, 0.0, 1.0)
    one = lam >= 1.0 - 1e-10
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(one, -1.0, (1.0 - np.where(one, 0.0, lam)) ** -0.5 - 1.0)
        ratio = np.where(lam > 1e-12, f / np.where(lam > 1e-12, lam, 1.0), 0.5)
    F = np.einsum("gij,gj,gkj->gik", W, ratio, W, optimize=True)
    return np.einsum("ij,gjk,lk->gil", L, F, L, optimize=True)


@dataclass(frozen=True, repr=False)
class OLSFit(ResultMixin):
    """Result of :func:`ols`. Immutable; every accessor derives from params/vcov/df."""

    params: np.ndarray
    vcov: np.ndarray
    names: tuple[str, ...]
    n: int
    k: int
    n_clusters: int | None
    vcov_type: str
    resid: np.ndarray = field(repr=False)
    _contrast_df: Callable[[np.ndarray], float] = field(repr=False, compare=False)

    @cached_property
    def df(self) -> np.ndarray:
        """Reference df per coefficient (Satterthwaite under CR2; computed on first use)."""
        return np.array([self.coef_df(j) for j in range(self.k)])

    def coef_df(self, j: int) -> float:
        """Reference df of coefficient ``j`` alone (cheaper than all of :attr:`df` under CR2)."""
        cache = self.__dict__.setdefault("_df_cache", {})
        if j not in cache:
            cache[j] = float(self._contrast_df(np.eye(self.k)[j]))
        return cache[j]

    @cached_property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    @cached_property
    def tvalues(self) -> np.ndarray:
        return self.params / self.se

    @cached_property
    def pvalues(self) -> np.ndarray:
        return t_interval(self.params, self.se, self.df)[1]

    def conf_int(self, level: float = 0.95) -> np.ndarray:
        crit = t_interval(0.0, 1.0, self.df, level)[0]
        return np.column_stack([self.params - crit * self.se, self.params + crit * self.se])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no coefficient named {name!r}; have {list(self.names)}") from None

    def coef(self, name: str) -> tuple[float, float, float, float]:
        """``(estimate, se, df, pvalue)`` of one coefficient."""
        j = self.index(name)
        b, se, df = float(self.params[j]), float(self.se[j]), self.coef_df(j)
        return b, se, df, float(t_interval(b, se, df)[1])

    def contrast(self, c) -> tuple[float, float, float, float]:
        """``(c'β̂, se, df, pvalue)`` for a contrast vector ``c`` (Satterthwaite df under CR2)."""
        c = np.asarray(c, dtype=float)
        est = float(c @ self.params)
        se = float(np.sqrt(c @ self.vcov @ c))
        df = float(self._contrast_df(c))
        return est, se, df, float(t_interval(est, se, df)[1])

    def to_frame(self) -> pd.DataFrame:
        ci = self.conf_int()
        return pd.DataFrame(
            {
                "estimate": self.params,
                "se": self.se,
                "t": self.tvalues,
                "df": self.df,
                "pvalue": self.pvalues,
                "ci_low": ci[:, 0],
                "ci_high": ci[:, 1],
            },
            index=pd.Index(self.names, name="term"),
        )

    def summary(self) -> str:
        head = f"OLS, n = {self.n:,}, k = {self.k}, covariance {self.vcov_type}"
        if self.n_clusters:
            head += f", {self.n_clusters:,} clusters"
        return head + "\n" + self.to_frame().to_string(float_format=lambda v: f"{v:.5g}")


def ols(
    y,
    X,
    *,
    weights=None,
    clusters=None,
    vcov: VcovType = "CR2",
    names: Sequence[str] | None = None,
    cluster_df: Literal["G-1", "G-p"] = "G-1",
) -> OLSFit:
    """Weighted least squares with a robust covariance chosen by ``vcov``.

    Parameters
    ----------
    y : array (n,)
    X : array or DataFrame (n, k); include the intercept column yourself.
    weights : analysis weights (n,), non-negative; rows with weight 0 contribute nothing.
    clusters : cluster labels (n,) for CR0/CR1/CR2 (required for them).
    vcov : "CR2" (default; Satterthwaite df), "CR1" (Stata; df G−1), "CR0" (df G−1),
        "HC2", "HC1", "HC0" (df n−k), "classical" (σ²M; df n−k).
    cluster_df : "G-1" (default, Stata) or "G-p" (metafor's ``robust()``): the CR1 small-sample
        factor and the df of CR1/CR0 — G/(G−1)·(n−1)/(n−k) with G − 1 df, or G/(G−k) with
        G − k df.

    Returns
    -------
    OLSFit
    """
    X, default_names = _as_2d(X)
    y = np.asarray(y, dtype=float).ravel()
    n, k = X.shape
    names = tuple(names) if names is not None else tuple(default_names)
    if y.shape[0] != n or len(names) != k:
        raise DataError(f"y has {y.shape[0]} rows and X has {n}; names has {len(names)} for {k} columns")
    bad = ~np.isfinite(y) | ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise DataError(f"{int(bad.sum())} row(s) have missing or non-finite values in y or X; drop them first")
    if weights is not None:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape[0] != n or np.any(~np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite, non-negative and one per row")
        sw = np.sqrt(w)
        Xt, yt = X * sw[:, None], y * sw
    else:
        Xt, yt = X, y
    XtX = Xt.T @ Xt
    try:
        Lc = linalg.cholesky(XtX, lower=True)
    except linalg.LinAlgError:
        raise DesignError(
            "the regressors are collinear (X'X is singular): a covariate is constant or a linear "
            "combination of others within the analysed rows"
        ) from None
    M = linalg.cho_solve((Lc, True), np.eye(k))
    beta = M @ (Xt.T @ yt)
    et = yt - Xt @ beta
    resid = y - X @ beta

    if vcov in _CLUSTER_TYPES:
        if clusters is None:
            raise DataError(f"vcov={vcov!r} needs cluster ids (clusters=...)")
        codes, G = cluster_codes(clusters)
        if G < 2:
            raise DesignError(f"cluster-robust SEs need at least 2 clusters; the data have {G}")
        # per-cluster blocks of the transformed model: X̃'X̃ = X'WX, X̃'ẽ = X'W e
        S, U = grouped_cross_products(X, codes, G, resid, w if weights is not None else None)
        contrast_df = None
        if vcov == "CR2":
            L = linalg.cholesky(M, lower=True)
            LFL = _cr2_factors(S, L)
            U = U + np.einsum("gij,gjk,gk->gi", S, LFL, U, optimize=True)
            contrast_df = _satterthwaite(S, LFL, M)
        meat = U.T @ U
        V = M @ meat @ M
        if cluster_df not in ("G-1", "G-p"):
            raise DataError(f"cluster_df must be 'G-1' or 'G-p'; got {cluster_df!r}")
        if cluster_df == "G-p" and G <= k and vcov != "CR2":
            raise DesignError(f"cluster_df='G-p' needs more clusters ({G}) than coefficients ({k})")
        if vcov == "CR1":
            V *= G / (G - 1) * (n - 1) / (n - k) if cluster_df == "G-1" else G / (G - k)
        if contrast_df is None:
            contrast_df = _constant_df(G - 1.0 if cluster_df == "G-1" else float(G - k))
        return OLSFit(beta, V, names, n, k, G, vcov, resid, contrast_df)

    if vcov in _HC_TYPES:
        e2 = et**2
        if vcov == "HC2":
            h = np.einsum("ij,jk,ik->i", Xt, M, Xt, optimize=True)
            if np.any(h >= 1.0 - 1e-10):
                raise DesignError("HC2: an observation has leverage 1; drop the regressor it alone identifies")
            e2 = e2 / (1.0 - h)
        meat = (Xt * e2[:, None]).T @ Xt
        V = M @ meat @ M
        if vcov == "HC1":
            V *= n / (n - k)
    elif vcov == "classical":
        V = M * (et @ et) / (n - k)
    else:
        raise DataError(f"vcov must be one of {_CLUSTER_TYPES + _HC_TYPES + ('classical',)}; got {vcov!r}")
    return OLSFit(beta, V, names, n, k, None, vcov, resid, _constant_df(float(n - k)))


def _constant_df(value: float) -> Callable[[np.ndarray], float]:
    return lambda c: value


def _satterthwaite(S: np.ndarray, LFL: np.ndarray, M: np.ndarray):
    """Bell–McCaffrey / Pustejovsky–Tipton Satterthwaite df for a contrast, from cluster blocks."""

    def df(c: np.ndarray) -> float:
        Mc = M @ c
        a = Mc + np.einsum("gij,gjk,k->gi", LFL, S, Mc, optimize=True)
        z = np.einsum("gij,gj->gi", S, a)
        s = np.einsum("gi,gi->g", a, z)
        MZZ = M @ (z.T @ z)
        num = (s.sum() - np.trace(MZZ)) ** 2
        den = (s**2).sum() - 2.0 * np.einsum("g,gi,ij,gj->", s, z, M, z, optimize=True) + np.sum(MZZ * MZZ.T)
        return float(num / den) if den > 0 else math.nan

    return df


__all__ = ["ols", "OLSFit", "cluster_codes", "grouped_cross_products"]
