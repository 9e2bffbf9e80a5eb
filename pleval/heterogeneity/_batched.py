"""One weighted least-squares fit per group, for all groups at once.

For every group s (a PL school, or a site of a multi-site RCT) fit
``y = X β_s + e`` by WLS on the rows of s, where X = [1, T, covariates]. Everything is
built from grouped sufficient statistics (one batched product over tiles of rows sorted by
group, :func:`pleval.inference.robust.grouped_cross_products`), then
solved with one batched ``np.linalg.solve`` — no per-group Python loop:

* ``S_s = Σ_{i∈s} w_i x_i x_i'``, ``u_s = Σ_{i∈s} w_i x_i y_i``, ``β̂_s = S_s⁻¹ u_s``;
* residuals ``e_i = y_i − x_i'β̂_{s(i)}``;
* covariance ``V_s = S_s⁻¹ Ω_s S_s⁻¹`` with meat

  - ``"classical"``: ``Ω_s = σ̂²_s S_s``, ``σ̂²_s = Σ w e² / (n_s − p)``;
  - ``"HC0"/"HC1"/"HC2"``: ``Σ w_i² e_i² x_i x_i' · c_i`` with ``c_i = 1``,
    ``n_s/(n_s − p)``, or ``1/(1 − h_ii)``, ``h_ii = w_i x_i' S_s⁻¹ x_i``
    (MacKinnon & White 1985);
  - ``"CR0"/"CR1"``: ``Σ_g (Σ_{i∈g} w_i e_i x_i)(…)'`` over clusters g within s, CR1 times
    ``G_s/(G_s − 1)·(n_s − 1)/(n_s − p)`` (Liang & Zeger 1986; Stata's small-sample factor);

  these are exactly what statsmodels' ``WLS(...).fit(cov_type=...)`` computes for one group
  (the tests check it). Degrees of freedom: Bell & McCaffrey's Satterthwaite df of the target
  coefficient (HC2, :func:`_hc2_df`), ``n_s − p`` (classical, HC0, HC1), ``G_s − 1`` (CR).

A column that is constant within one group (e.g. a category absent from one school) is
dropped for that group only (batched pseudo-inverse; ``p`` then means the group's rank).
Groups where the target coefficient (the treatment) is not identified — no treated or no
comparison rows, treatment collinear with covariates, no residual df — get NaN and
``ok = False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..inference.robust import _CHUNK_ROWS, grouped_cross_products, hc2_df

_RANK_TOL = 1e-10
VCOV_TYPES = ("HC2", "HC1", "HC0", "CR1", "CR0", "classical")


@dataclass(frozen=True)
class GroupedFit:
    params: np.ndarray  # G × p
    vcov: np.ndarray  # G × p × p
    df: np.ndarray  # G
    n: np.ndarray  # G, rows
    n_clusters: np.ndarray  # G (rows for non-cluster types)
    ok: np.ndarray  # G, bool: target coefficient estimable
    rank: np.ndarray  # G
    bread: np.ndarray  # G × p × p, the (pseudo-)inverse S_s⁻¹
    resid: np.ndarray  # n, y − x'β̂_s
    sq: np.ndarray | None = None  # G × p × p, Σ w² x x' per group (``grouped_wls(..., squares=True)``)
    sse: np.ndarray | None = None  # G, Σ w e² per group (``vcov="classical"``: σ̂²'s numerator)


def _pair_sums(X: np.ndarray, weights: np.ndarray, codes: np.ndarray, G: int) -> np.ndarray:
    """``Σ_{i∈g} weights_i x_i x_i'`` for every group g (G × p × p), by
    :func:`pleval.inference.robust.grouped_cross_products` (batched products over tiles of rows
    sorted by group; no loop over groups or column pairs)."""
    return grouped_cross_products(X, codes, G, w=weights)[0]


def _hc2_df(X, w, h, Sinv, groups, G, target) -> np.ndarray:
    """Bell & McCaffrey's df of each group's HC2 variance of the target coefficient
    (:func:`pleval.inference.robust.hc2_df`, ``l_i = √w_i (S⁻¹x_i)_t``)."""
    g = np.zeros(len(h))
    for b in range(X.shape[1]):
        g += X[:, b] * Sinv[groups, target, b]
    return hc2_df(X, np.sqrt(w) * g, h, Sinv, w=w, groups=groups, G=G)


_RUN_ROWS = 1 << 10
"""Rows per run of one group, on average, from which :func:`_residuals` goes run by run (a run's
``einsum`` call costs about what gathering β̂ for 500 rows does)."""


def _residuals(y: np.ndarray, X: np.ndarray, groups: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``e_i = y_i − x_i'β̂_{s(i)}``. Rows that come in long runs of one group (the school
    effects' blocks, sorted by stratum) take their run's coefficients as they are, a run at a
    time, without gathering β̂ for every row (2¹⁸ rows, p = 11: 2.3 against 4.0 ms); other rows by
    blocks of rows, their coefficients gathered. The same products either way, bit for bit (one
    ``einsum`` reduction over each row's columns)."""
    n = len(y)
    e = np.empty(n)
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]])) if n else np.zeros(0, dtype=np.intp)
    if starts.size * _RUN_ROWS <= n:  # runs of _RUN_ROWS rows on average: a loop over runs is short
        for lo, hi in zip(starts, np.append(starts[1:], n)):  # runs, not rows
            np.subtract(y[lo:hi], np.einsum("ia,a->i", X[lo:hi], beta[groups[lo]]), out=e[lo:hi])
        return e
    for lo in range(0, n, _CHUNK_ROWS):  # blocks of rows: no n × p gather of the coefficients
        rows = slice(lo, lo + _CHUNK_ROWS)
        np.subtract(y[rows], np.einsum("ia,ia->i", X[rows], np.take(beta, groups[rows], axis=0)), out=e[rows])
    return e


def grouped_wls(
    y: np.ndarray,
    X: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    *,
    weights: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    vcov: str = "HC2",
    target: int = 1,
    counts: np.ndarray | None = None,
    squares: bool = False,
) -> GroupedFit:
    """Batched per-group WLS (see the module docstring). ``vcov=None``: the fit alone (β̂, the
    breads, the residuals; the covariance NaN, df ``n_s − p``), for a caller that forms the
    covariance from the residuals itself (the joint covariance's cells). ``groups``: int codes 0..G−1;
    ``clusters``: int codes (any numbering) required for CR0/CR1; ``counts``: the copies each
    row stands for when rows merge copies of one row within a group (weights summed; every
    count — n_s, the residual df, the CR1 factor — then counts copies; not for HC types);
    ``squares``: also ``Σ_{i∈s} w_i² x_i x_i'`` (:attr:`GroupedFit.sq`; the Φ = I joint
    covariance's ``S2_s``, :mod:`._joint_phi`), in the same pass over the rows."""
    if vcov is not None and vcov not in VCOV_TYPES:
        raise ValueError(f"vcov must be one of {VCOV_TYPES}; got {vcov!r}")
    n, p = X.shape
    G = n_groups
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    S, u = grouped_cross_products(X, groups, G, y, (w, w * w) if squares else w)  # S_s = Σ w x x', u_s = Σ w x y: one pass
    S, sq = S if squares else (S, None)
    n_g = np.bincount(groups, weights=counts, minlength=G).astype(float)
    if counts is not None and vcov is not None and vcov.startswith("HC"):
        raise ValueError(f"vcov={vcov!r} gives each copy its own term: fit the copies")

    # Batched pseudo-inverse through the eigen-decomposition of the scale-free matrix
    # C = D⁻¹SD⁻¹ (D = √diag S). A covariate constant within one group (e.g. a category
    # absent from a school) is then dropped for that group only: β̂'s estimable parts, the
    # fitted values and hence the treatment effect and its sandwich variance do not depend
    # on the generalized inverse chosen (as in statsmodels, which also uses pinv).
    diag = np.einsum("gii->gi", S)
    d = np.sqrt(np.where(diag > 0, diag, 1.0))
    C = S / (d[:, :, None] * d[:, None, :])
    lam, Q = np.linalg.eigh(C)
    keep = lam > _RANK_TOL * np.maximum(lam[:, -1:], 1e-300)
    rank = keep.sum(axis=1).astype(float)
    lam_inv = np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    Cinv = np.einsum("gij,gj,gkj->gik", Q, lam_inv, Q)
    Sinv = Cinv / (d[:, :, None] * d[:, None, :])
    # The target coefficient is estimable iff e_t lies in the row space: (S⁺S)_tt = 1.
    proj_tt = np.einsum("gj,gj->g", Sinv[:, target, :], S[:, :, target])
    ok = (np.abs(proj_tt - 1.0) < 1e-8) & (n_g > rank)
    beta = np.einsum("gab,gb->ga", Sinv, u)
    e = _residuals(y, X, groups, beta)

    sse = None
    if vcov is None:
        V = np.full((G, p, p), np.nan)
        df = n_g - rank
        n_cl = n_g.copy()
    elif vcov == "classical":
        sse = np.bincount(groups, weights=w * e**2, minlength=G)
        sigma2 = sse / np.maximum(n_g - rank, 1)
        V = Sinv * sigma2[:, None, None]
        df = n_g - rank
        n_cl = n_g.copy()
    elif vcov.startswith("HC"):
        r2 = (w * e) ** 2
        if vcov == "HC2":
            h = np.zeros(n)
            for a in range(p):  # loop over column pairs; memory stays O(n)
                for b in range(a, p):
                    h += (1.0 if a == b else 2.0) * X[:, a] * X[:, b] * Sinv[groups, a, b]
            h *= w
            with np.errstate(divide="ignore"):
                r2 = r2 / np.where(h < 1 - 1e-12, 1.0 - h, np.inf)
        meat = _pair_sums(X, r2, groups, G)
        if vcov == "HC1":
            meat *= (n_g / np.maximum(n_g - rank, 1))[:, None, None]
        V = Sinv @ meat @ Sinv
        df = _hc2_df(X, w, h, Sinv, groups, G, target) if vcov == "HC2" else n_g - rank
        n_cl = n_g.copy()
    else:
        if clusters is None:
            raise ValueError(f"vcov={vcov!r} needs clusters")
        # Cells = (group, cluster) pairs; sum scores within cells, then outer products by group.
        key = groups.astype(np.int64) * (int(clusters.max()) + 1) + clusters.astype(np.int64)
        inv, uniq = pd.factorize(key)
        cell_group = (uniq // (int(clusters.max()) + 1)).astype(np.intp)
        score = (w * e)[:, None] * X
        U = np.stack([np.bincount(inv, weights=score[:, a], minlength=uniq.size) for a in range(p)], axis=1)
        meat = _pair_sums(U, np.ones(uniq.size), cell_group, G)
        n_cl = np.bincount(cell_group, minlength=G).astype(float)
        if vcov == "CR1":
            with np.errstate(divide="ignore", invalid="ignore"):
                fac = n_cl / (n_cl - 1) * (n_g - 1) / (n_g - rank)
            meat *= np.where(np.isfinite(fac), fac, np.nan)[:, None, None]
        V = Sinv @ meat @ Sinv
        df = n_cl - 1
        ok = ok & (n_cl > 1)
    beta[~ok] = np.nan
    V[~ok] = np.nan
    return GroupedFit(params=beta, vcov=V, df=df.astype(float), n=n_g, n_clusters=n_cl, ok=ok, rank=rank, bread=Sinv,
                      resid=e, sq=sq, sse=sse)
