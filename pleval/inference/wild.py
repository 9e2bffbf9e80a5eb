"""Restricted wild cluster bootstrap (WCR) for one coefficient, with Rademacher or Webb weights.

Test ``H0: β_j = r`` in ``y = Xβ + u`` with G clusters (Cameron, Gelbach & Miller 2008; the
"fast" algebra of Roodman, MacKinnon, Nielsen & Webb 2019; fwildclusterboot's ``boottest`` and
Stata's ``boottest`` defaults: restricted, symmetric two-tailed p-value, CR1 t statistic):

1. ``t = (β̂_j − r)/se_CR1`` with ``se²_CR1 = c·Σ_g (e_j'M X_g'û_g)²``,
   ``c = G/(G−1)·(n−1)/(n−k)``, ``M = (X'X)⁻¹``.
2. Restricted fit: regress ``y − r x_j`` on the other columns; residuals ``ũ``.
3. Draw ``v_g`` per cluster (Rademacher ±1; Webb's six points ±√(1/2), ±1, ±√(3/2)) and set
   ``y* = Xβ̃ + ũ∘v``. Because OLS is linear, with ``a_g = e_j'M X_g'ũ_g`` and
   ``C_hg = e_j'M S_h M X_g'ũ_g`` (``S_h = X_h'X_h``) every draw is a G-vector product:
   ``β̂*_j − r = a'v``, cluster scores ``s* = (diag(a) − C) v``, ``t* = a'v / √(c·‖s*‖²)``.
   No bootstrap sample is ever formed: one O(n k²) pass for the ``S_g``, a few O(n k) passes,
   then O(G² B).
4. ``p = #{|t*| > |t|}/B`` (fwildclusterboot's two-tailed p-value; ties, such as the patterns
   ``v = ±1`` that reproduce the data, are not counted). When ``B`` is at least the number of
   weight patterns (``2^G`` Rademacher, ``6^G`` Webb) every pattern is enumerated once (exact,
   deterministic; ``v`` and ``−v`` give the same ``|t*|``, so half of them are formed, in blocks
   of ``_CHUNK`` draws); otherwise B seeded draws and the Monte Carlo SE ``√(p(1−p)/B)``.
5. Confidence interval by test inversion: ũ, a and C are linear in r, so
   ``t*(r) = (A − rB')/√(c(Q₀ − 2rQ₁ + r²Q₂))`` and ``t(r) = (β̂_j − r)/se`` are evaluated for
   any r in O(B) from per-draw sums; the bounds are where p(r) crosses 1 − level (bisection to
   1e−10·se), with the same draws for every r (MacKinnon 2015; Roodman et al. 2019, §3.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, sparse

from .._results import ResultMixin
from .draw_order import value_order
from ..errors import DataError, DesignError
from .robust import cluster_codes, grouped_cross_products

WEIGHTS = ("rademacher", "webb")
_VALUES = {"rademacher": np.array([-1.0, 1.0]),
           "webb": np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])}
_CHUNK = 1 << 16  # draws per block: bounds the G × draws work arrays when every pattern is enumerated


@dataclass(frozen=True, repr=False)
class WildBootstrapResult(ResultMixin):
    """One restricted wild cluster bootstrap test and its inverted confidence interval."""

    param: str
    estimate: float
    r: float
    t: float
    pvalue: float
    mc_se: float
    ci_low: float
    ci_high: float
    level: float
    n_clusters: int
    draws: int
    enumerated: bool
    weights: str
    seed: int | None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "param": self.param, "estimate": self.estimate, "null": self.r, "t_cr1": self.t, "pvalue": self.pvalue,
            "pvalue_mc_se": self.mc_se, "ci_low": self.ci_low, "ci_high": self.ci_high, "level": self.level,
            "n_clusters": self.n_clusters, "draws": self.draws, "enumerated": self.enumerated,
            "weights": self.weights, "seed": self.seed,
        }])

    def summary(self) -> str:
        how = (f"all {self.draws:,} {self.weights} weight patterns (exact)" if self.enumerated
               else f"{self.draws:,} {self.weights} draws, seed {self.seed}; Monte Carlo SE of p {self.mc_se:.4f}")
        return (f"Wild cluster bootstrap (restricted, {self.n_clusters} clusters; {how}): {self.param} = "
                f"{self.estimate:.4g}, t(CR1) = {self.t:.3f}, p = {self.pvalue:.4f}; "
                f"{100 * self.level:.0f}% CI {self.ci_low:.4g} to {self.ci_high:.4g}")


def _weight_chunks(G: int, B: int, weights: str, seed: int | None) -> tuple[Iterator[np.ndarray], int, bool]:
    """Weight matrices (G × at most ``_CHUNK`` draws each), their total number, and whether they
    enumerate every pattern (``L^G ≤ B`` for the L-point distribution: 2^G Rademacher, 6^G Webb)."""
    table = _VALUES[weights]
    L = table.size
    if G * math.log(L) <= math.log(B) + 1e-9:
        N = L**G
        place = L ** np.arange(G, dtype=np.int64)

        def patterns():  # pattern i: weight table[digit g of i in base L] in cluster g
            # v and −v give the same |t*| for every r, so only the patterns whose last cluster
            # has a positive weight are formed (the upper half of the codes): same p(r)
            for s in range(N // 2, N, _CHUNK):
                i = np.arange(s, min(s + _CHUNK, N), dtype=np.int64)
                yield table[(i[None, :] // place[:, None]) % L]

        return patterns(), N, True
    rng = np.random.default_rng(seed)
    codes = (rng.integers(0, 2, size=(G, B), dtype=np.int8) if weights == "rademacher"
             else rng.integers(0, 6, size=(G, B)))
    return (table[codes[:, s:s + _CHUNK]] for s in range(0, B, _CHUNK)), B, False


def wild_cluster_bootstrap(
    y,
    X,
    clusters,
    param: int | str,
    *,
    names: Sequence[str] | None = None,
    r: float = 0.0,
    B: int = 9999,
    weights: Literal["rademacher", "webb"] = "rademacher",
    seed: int | None = 0,
    level: float = 0.95,
    ci: bool = True,
) -> WildBootstrapResult:
    """Restricted wild cluster bootstrap test of ``β_param = r`` and its CI (module docstring).

    ``X`` includes the intercept; ``param`` is a column index or a name in ``names`` (or the
    DataFrame's columns). ``seed`` is recorded in the result.
    """
    if weights not in WEIGHTS:
        raise DataError(f"bootstrap weights must be one of {WEIGHTS}; got {weights!r}")
    if int(B) < 99:
        raise DataError(f"the wild bootstrap needs at least 99 draws; got {B}")
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns] if names is None else list(names)
        X = X.to_numpy(dtype=float)
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    n, k = X.shape
    names = [f"x{j}" for j in range(k)] if names is None else list(names)
    j = names.index(param) if isinstance(param, str) else int(param)
    if not (np.isfinite(y).all() and np.isfinite(X).all()) or y.size != n:
        raise DataError("wild bootstrap: y and X must be finite with one row per observation")
    codes, G = cluster_codes(clusters)
    if G < 3:
        raise DesignError(f"the wild cluster bootstrap needs at least 3 clusters; the data have {G}")
    # clusters numbered by their values (size, outcome and regressor sums), so that cluster g gets
    # the same draws however the rows are sorted (:mod:`.draw_order`)
    rank = np.empty(G, dtype=np.intp)
    rank[value_order(np.bincount(codes, minlength=G), np.bincount(codes, weights=y, minlength=G),
                     *(np.bincount(codes, weights=X[:, i], minlength=G) for i in range(X.shape[1])))] = np.arange(G)
    codes = rank[codes]

    S, _ = grouped_cross_products(X, codes, G)  # S_g = X_g'X_g: the one O(n k²) pass
    XtX, Xty = S.sum(axis=0), X.T @ y
    try:
        M = linalg.cho_solve(linalg.cho_factor(XtX, lower=True), np.eye(k))
    except linalg.LinAlgError:
        raise DesignError("wild bootstrap: the regressors are collinear") from None
    beta = M @ Xty
    A_cl = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(G, n))

    def cluster_scores(e):  # X_g'e_g for every cluster (G×k), O(n k)
        return A_cl @ (X * e[:, None])

    mj = M[:, j]
    c = G / (G - 1.0) * (n - 1.0) / (n - k)
    se = math.sqrt(c * float(np.sum((cluster_scores(y - X @ beta) @ mj) ** 2)))
    t_obs = (beta[j] - r) / se

    # restricted residuals are linear in r: ũ(r) = ũ_y − r ũ_x (the other columns partialled out;
    # their cross-products are blocks of X'X, so no second pass over the rows)
    others = np.delete(np.arange(k), j)
    Mo = linalg.cho_solve(linalg.cho_factor(XtX[np.ix_(others, others)], lower=True), np.eye(k - 1))
    Xo = X[:, others]
    u_y = y - Xo @ (Mo @ Xty[others])
    u_x = X[:, j] - Xo @ (Mo @ XtX[others, j])
    Uy, Ux = cluster_scores(u_y), cluster_scores(u_x)
    Sm = np.einsum("hij,j->hi", S, mj)  # S_h M e_j

    def parts(Ug):  # a_g and D = diag(a) − C for one residual vector
        MU = Ug @ M
        a = MU[:, j]
        return a, np.diag(a) - Sm @ MU.T

    a_y, D_y = parts(Uy)
    a_x, D_x = parts(Ux)
    chunks, draws, enumerated = _weight_chunks(G, int(B), weights, seed)
    sums = []  # per draw: a'v, a_x'v and the three quadratic forms of the bootstrap cluster scores
    for V in chunks:
        P, Q = D_y @ V, D_x @ V
        sums.append((a_y @ V, a_x @ V, np.einsum("gb,gb->b", P, P), np.einsum("gb,gb->b", P, Q),
                     np.einsum("gb,gb->b", Q, Q)))
    A, Bv, Q0, Q1, Q2 = (np.concatenate(col) for col in zip(*sums))

    def pvalue(r0: float) -> float:
        num = A - r0 * Bv
        den = c * (Q0 - 2.0 * r0 * Q1 + r0 * r0 * Q2)
        with np.errstate(divide="ignore", invalid="ignore"):
            tb = np.abs(num) / np.sqrt(den)
        tb = tb[np.isfinite(tb)]
        t0 = abs((beta[j] - r0) / se)
        return float(np.mean(tb > t0 * (1.0 + 1e-12)))

    p = pvalue(r)
    mc = 0.0 if enumerated else math.sqrt(p * (1.0 - p) / draws)
    lo = hi = math.nan
    if ci:
        alpha = 1.0 - level
        lo, hi = (_bound(pvalue, beta[j], se, alpha, side) for side in (-1.0, 1.0))
    return WildBootstrapResult(names[j], float(beta[j]), float(r), float(t_obs), p, mc, lo, hi, level, G, draws,
                               enumerated, weights, None if enumerated else seed)


def _bound(pvalue, est: float, se: float, alpha: float, side: float) -> float:
    """The r on ``side`` of the estimate where the bootstrap p-value falls to α (bisection)."""
    inner, step = est, 2.0 * se
    outer = est + side * step
    for _ in range(60):
        if pvalue(outer) <= alpha:
            break
        inner, step = outer, step * 2.0
        outer = est + side * step
    else:
        return side * math.inf
    for _ in range(200):
        if abs(outer - inner) <= 1e-10 * se:
            break
        mid = 0.5 * (inner + outer)
        if pvalue(mid) > alpha:
            inner = mid
        else:
            outer = mid
    return float(0.5 * (inner + outer))


__all__ = ["wild_cluster_bootstrap", "WildBootstrapResult", "WEIGHTS"]
