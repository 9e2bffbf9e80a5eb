"""Permutation test of the pooled effect (Follmann & Proschan 1999; metafor's ``permutest()``).

Under H₀: μ = 0 with school effects distributed symmetrically around 0, flipping the sign of
any subset of the estimates leaves their joint distribution unchanged. For each sign
pattern ``s`` the meta-analysis is refitted on ``s ⊙ y`` (same SEs, same τ² estimator and
Hartung–Knapp choice, τ² re-estimated) and the statistic recomputed: the Wald statistic
``z = μ̂/SE`` (``stat="z"``, default) or the estimate μ̂ (``stat="estimate"``). The
two-sided p-value is the share of patterns with ``|stat| ≥ |stat_obs|``:

* exact (all ``2^k`` patterns, the observed one included) when ``2^k ≤ n_perm``;
* otherwise ``(1 + #{draws with |stat| ≥ |stat_obs|}) / (1 + n_perm)`` over ``n_perm``
  random patterns (Phipson & Smyth 2010), never 0.

The test holds its level with few schools, where the z and even the Hartung–Knapp t
reference can be off (Follmann & Proschan 1999). The refits are vectorized over patterns
(an ``n × k`` array per block): DL, HE, HS, SJ in closed form, REML and ML by Fisher
scoring and PM/EB by Newton steps on ``Q(τ²) = k − 1`` inside a bracket
(:func:`._metareg_batch.q_root`) for all patterns at once; a pattern
whose iteration has not settled is refitted alone by :mod:`._tau2`. REML and ML then take each
pattern's global maximizer on τ² ≥ 0 (:func:`._metareg_batch.global_max`: a grid of the
likelihood and ℓ(0), as :func:`._tau2._fisher_scoring`), so the observed pattern's statistic is
the meta-analysis's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import Frame, ResultMixin
from ..inference.draw_order import value_order
from ..errors import DataError
from . import _metareg_batch as mb
from . import _tau2
from .meta import MetaAnalysis

_BLOCK = 2**21  # array entries per block of patterns
STATS = ("z", "estimate")


@dataclass(frozen=True, repr=False)
class PermutationTest(ResultMixin):
    """Result of :func:`permutation_test` (immutable)."""

    method: str
    k: int
    stat: str
    observed: float
    pvalue: float
    n_perm: int
    exact: bool
    estimate: float
    pvalue_model: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "method": self.method,
                    "k": self.k,
                    "statistic": self.stat,
                    "observed": self.observed,
                    "estimate": self.estimate,
                    "pvalue_permutation": self.pvalue,
                    "pvalue_model": self.pvalue_model,
                    "permutations": self.n_perm,
                    "exact": self.exact,
                }
            ]
        )

    def summary(self) -> str:
        how = f"exact, all {self.n_perm} sign patterns" if self.exact else f"{self.n_perm} random sign patterns"
        return "\n".join(
            [
                f"Permutation test of the pooled effect ({self.method}), k = {self.k}",
                f"  pooled effect {self.estimate:.4f}; statistic {self.stat} = {self.observed:.4f}",
                f"  permutation p = {self.pvalue:.4g} ({how}); model-based p = {self.pvalue_model:.4g}",
            ]
        )


def _q_parts(Y: np.ndarray, v: np.ndarray, t: np.ndarray):
    """Per pattern (row of Y) at τ² = t: ``(Σw, μ̂, Q = Σwr², Σw²r², Σw², Σw³)``."""
    W = 1.0 / (v[None, :] + t[:, None])
    S = W.sum(axis=1)
    mu = (W * Y).sum(axis=1) / S
    R2 = (Y - mu[:, None]) ** 2
    WR2 = W * R2
    W2 = W * W
    return S, mu, WR2.sum(axis=1), (W * WR2).sum(axis=1), W2.sum(axis=1), (W2 * W).sum(axis=1)


def _tau2_patterns(method: str, Y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """τ̂² of the intercept-only model for every row of Y (formulas in :mod:`._tau2`)."""
    n, k = Y.shape
    if method == "FE":
        return np.zeros(n)
    zero = np.zeros(n)
    S, _, q0, _, S2, _ = _q_parts(Y, v, zero)
    if method in ("DL", "REML", "ML"):
        dl = np.maximum(0.0, (q0 - (k - 1)) / (S - S2 / S))
        if method == "DL":
            return dl
    if method == "HS":
        return np.maximum(0.0, (q0 - k) / S)
    rss = ((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    if method == "HE":
        return np.maximum(0.0, (rss - v.sum() * (1.0 - 1.0 / k)) / (k - 1))
    if method == "SJ":
        t0 = rss / k
        return t0 * _q_parts(Y, v, t0)[2] / (k - 1)
    tol = 1e-10 * (np.var(Y, axis=1) + np.mean(v))  # each pattern's, as _tau2._fisher_scoring
    X = np.ones((k, 1))

    def fallback(i):
        return _tau2.estimate_tau2(method, Y[i], v, X)[0]

    if method in ("PM", "EB"):  # the root of Q(τ²) = k − 1, bracketed (as _tau2._solve_q)
        return mb.q_root(lambda t: _q_parts(Y, v, t)[2:4], zero.copy(), q0 <= k - 1, float(k - 1), tol, fallback)

    def step(t):
        S, _, q, w2r2, T, U = _q_parts(Y, v, t)
        if method == "REML":
            return (w2r2 - (S - T / S)) / (T - 2.0 * U / S + (T / S) ** 2)
        return (w2r2 - S) / T

    t = mb.settle(step, dl, np.zeros(n, dtype=bool), tol, fallback)
    # the global maximum, as _tau2._fisher_scoring (two local maxima)
    r0 = Y - (Y @ (1.0 / v) / (1.0 / v).sum())[:, None]  # residuals at τ² = 0
    return mb.global_max(method, Y, np.broadcast_to(v, Y.shape), X, t, r0)


def _statistic(method: str, Y: np.ndarray, v: np.ndarray, hartung_knapp: bool, stat: str) -> np.ndarray:
    t = _tau2_patterns(method, Y, v)
    S, mu, q, *_ = _q_parts(Y, v, t)
    if stat == "estimate":
        return mu
    se = 1.0 / np.sqrt(S)
    if hartung_knapp:
        se = se * np.sqrt(q / (Y.shape[1] - 1))
    return mu / se


def permutation_test(meta: MetaAnalysis, n_perm: int = 1000, *, stat: str = "z", seed: int = 0) -> PermutationTest:
    """Sign-flip permutation test of the pooled effect of ``meta`` (module docstring):
    exact when ``2^k ≤ n_perm``, otherwise ``n_perm`` random sign patterns (``seed``).
    Needs independent estimates (``meta`` fitted without ``vcov``)."""
    if meta.correlated:
        raise DataError("the permutation test needs independent estimates; this meta-analysis used a full vcov")
    if stat not in STATS:
        raise DataError(f"stat must be one of {STATS}; got {stat!r}")
    if not (isinstance(n_perm, (int, np.integer)) and n_perm >= 1):
        raise DataError(f"n_perm must be a positive whole number; got {n_perm!r}")
    y = np.asarray(meta.estimates, dtype=float)
    v = np.asarray(meta.ses, dtype=float) ** 2
    o = value_order(y, v)  # the sign draws meet the schools in the order of their values (not of the rows)
    y, v = y[o], v[o]
    k = y.size
    observed = float(_statistic(meta.method, y[None, :], v, meta.hartung_knapp, stat)[0])
    exact = k < 63 and 2**k <= n_perm
    if exact:
        n = 2**k
        codes = np.arange(n, dtype=np.int64)
    else:
        n = int(n_perm)
        rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK // k)
    count = 0
    tol = 1e-10 * max(1.0, abs(observed))
    for s in range(0, n, rows):
        m = min(rows, n - s)
        if exact:
            signs = 1.0 - 2.0 * ((codes[s : s + m, None] >> np.arange(k)[None, :]) & 1)
        else:
            signs = rng.choice((-1.0, 1.0), size=(m, k))
        values = _statistic(meta.method, signs * y[None, :], v, meta.hartung_knapp, stat)
        count += int((np.abs(values) >= abs(observed) - tol).sum())
    pvalue = count / n if exact else (1 + count) / (1 + n)
    return PermutationTest(
        method=meta.method + (" + Hartung-Knapp" if meta.hartung_knapp else ""),
        k=k,
        stat=stat,
        observed=observed,
        pvalue=float(pvalue),
        n_perm=n,
        exact=bool(exact),
        estimate=meta.estimate,
        pvalue_model=meta.pvalue,
    )




# --------------------------------------------------------------------------------------
# Meta-regression: permuting the moderators
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class ModeratorPermutationTest(ResultMixin):
    """Result of :func:`permutation_test_moderators` (immutable): per term the observed test
    statistic and its permutation p-value beside the model-based one, and the omnibus QM."""

    method: str
    k: int
    coefficients: pd.DataFrame = Frame()
    qm: float
    qm_pvalue: float
    qm_pvalue_model: float
    n_perm: int
    exact: bool

    def to_frame(self) -> pd.DataFrame:
        return self.coefficients.copy()

    def summary(self) -> str:
        how = f"exact, all {self.n_perm} distinct orderings" if self.exact else f"{self.n_perm} random permutations"
        lines = [f"Permutation test of the moderators ({self.method}), k = {self.k} ({how})",
                 f"  moderators together: QM = {self.qm:.4f}, permutation p = {self.qm_pvalue:.4g} "
                 f"(model-based {self.qm_pvalue_model:.4g})",
                 f"  {'term':<22}{'estimate':>11}{'statistic':>11}{'p perm':>10}{'p model':>10}"]
        for name, r in self.coefficients.iterrows():
            lines.append(f"  {str(name):<22}{r.estimate:>11.4g}{r.statistic:>11.3f}{r.pvalue_permutation:>10.4g}"
                         f"{r.pvalue_model:>10.4g}")
        return "\n".join(lines)


def _metareg_statistics(method: str, Y: np.ndarray, V: np.ndarray, X: np.ndarray, knapp_hartung: bool):
    """``(β̂, statistic per term, QM)`` of the meta-regression for every row of (Y, V)."""
    k, p = X.shape
    t = mb.tau2_batch(method, Y, V, X)
    W, A, beta, R = mb.wls_batch(Y, V, X, t)
    if knapp_hartung:
        A = A * ((W * R * R).sum(axis=1) / (k - p))[:, None, None]
    stat = beta / np.sqrt(np.einsum("npp->np", A))
    bm = beta[:, 1:]
    qm = np.einsum("np,np->n", bm, np.linalg.solve(A[:, 1:, 1:], bm[:, :, None])[:, :, 0])
    return beta, stat, qm / (p - 1) if knapp_hartung else qm


def _distinct_orderings(labels: np.ndarray) -> np.ndarray:
    """Every distinct ordering of ``labels`` (a multiset), in lexicographic order, one per row."""
    a = np.sort(labels).tolist()
    out = []
    while True:  # one step per ordering (called only when there are at most n_perm of them)
        out.append(list(a))
        i = len(a) - 2
        while i >= 0 and a[i] >= a[i + 1]:
            i -= 1
        if i < 0:
            return np.array(out)
        j = len(a) - 1
        while a[j] <= a[i]:
            j -= 1
        a[i], a[j] = a[j], a[i]
        a[i + 1:] = a[i + 1:][::-1]


def _n_orderings(labels: np.ndarray) -> float:
    """The number of distinct orderings of ``labels``, ``k!/∏c!`` (∞ beyond a float's range: from
    171 distinct schools on, ``exp`` of the log-count overflowed)."""
    _, counts = np.unique(labels, return_counts=True)
    log_n = math.lgamma(labels.size + 1) - sum(math.lgamma(c + 1) for c in counts)
    return math.inf if log_n > 700.0 else math.exp(log_n)


def permutation_test_moderators(mr, n_perm: int = 1000, *, seed: int = 0) -> ModeratorPermutationTest:
    """Permutation test of the moderators of a meta-regression (metafor's ``permutest()`` on an
    ``rma`` with ``mods``; Higgins & Thompson 2004; Viechtbauer et al. 2015).

    Under H₀ the moderators carry no information about the effects, so every reassignment of
    the rows of the design matrix to the (estimate, SE) pairs is equally likely. Each
    reassignment is refitted — same τ² estimator (re-estimated), same Knapp–Hartung choice —
    and the per-term statistics ``β̂_j/SE_j`` and the omnibus ``QM`` recomputed. Two-sided
    p-values are the share of reassignments with ``|stat_j| ≥ |stat_j,obs|`` (``QM ≥ QM_obs``):
    exact over all distinct orderings of the design rows when there are at most ``n_perm``
    (tied rows counted once, as metafor), otherwise ``(1 + count)/(1 + n_perm)`` over
    ``n_perm`` random permutations (``seed``). The intercept's p-value is reported as metafor
    does, though permuting rows does not test it. The refits are vectorized over
    permutations (blocks of an ``n × k`` array; :mod:`._metareg_batch`). Needs independent estimates."""
    from .metareg import MetaRegression

    if not isinstance(mr, MetaRegression):
        raise DataError(f"permutation_test_moderators needs a MetaRegression; got {type(mr).__name__}")
    if not mr.independent:
        raise DataError("the permutation test needs independent estimates; this meta-regression used a full vcov")
    if mr.design.shape[1] < 2:
        raise DataError("the meta-regression has no moderators to test")
    if not (isinstance(n_perm, (int, np.integer)) and n_perm >= 1):
        raise DataError(f"n_perm must be a positive whole number; got {n_perm!r}")
    y, v, X = np.asarray(mr.estimates), np.asarray(mr.ses) ** 2, np.asarray(mr.design)
    o = value_order(y, v, *X.T)  # the draws meet the schools in the order of their values (not of the rows)
    y, v, X = y[o], v[o], X[o]
    k = y.size
    _, stat_obs, qm_obs = _metareg_statistics(mr.method, y[None, :], v[None, :], X, mr.knapp_hartung)
    stat_obs, qm_obs = stat_obs[0], float(qm_obs[0])
    labels = np.unique(X, axis=0, return_inverse=True)[1].ravel()
    exact = _n_orderings(labels) <= n_perm
    if exact:
        orders = _distinct_orderings(labels)
        # an ordering a puts design row-type a_i on estimate i: σ maps estimates to design rows
        # of those types, and refitting y on X[σ] is refitting y[σ⁻¹] on X
        src = np.argsort(labels, kind="stable")
        sigma = np.empty_like(orders)
        np.put_along_axis(sigma, np.argsort(orders, axis=1, kind="stable"), np.broadcast_to(src, orders.shape), axis=1)
        perms = np.argsort(sigma, axis=1)
        n = len(perms)
    else:
        n = int(n_perm)
        rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK // k)
    count = np.zeros(X.shape[1], dtype=np.int64)
    count_qm = 0
    tol_s = 1e-10 * np.maximum(1.0, np.abs(stat_obs))
    tol_q = 1e-10 * max(1.0, qm_obs)
    for s in range(0, n, rows):
        m = min(rows, n - s)
        P = perms[s:s + m] if exact else rng.permuted(np.broadcast_to(np.arange(k), (m, k)), axis=1)
        _, st, qm = _metareg_statistics(mr.method, y[P], v[P], X, mr.knapp_hartung)
        count += (np.abs(st) >= np.abs(stat_obs) - tol_s).sum(axis=0)
        count_qm += int((qm >= qm_obs - tol_q).sum())
    pv = count / n if exact else (1 + count) / (1 + n)
    pq = count_qm / n if exact else (1 + count_qm) / (1 + n)
    c = mr.coefficients
    coef = pd.DataFrame({"estimate": c["estimate"].to_numpy(), "statistic": stat_obs, "pvalue_permutation": pv,
                         "pvalue_model": c["pvalue"].to_numpy()}, index=c.index)
    return ModeratorPermutationTest(
        method=mr.method + (" + Knapp-Hartung" if mr.knapp_hartung else ""), k=k, coefficients=coef, qm=qm_obs,
        qm_pvalue=float(pq), qm_pvalue_model=float(mr.qm_pvalue), n_perm=n, exact=bool(exact),
    )


__all__ = ["permutation_test", "PermutationTest", "permutation_test_moderators", "ModeratorPermutationTest"]
