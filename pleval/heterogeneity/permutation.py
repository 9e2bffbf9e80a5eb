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
scoring and PM/EB by Newton steps on ``Q(τ²) = k − 1`` for all patterns at once; a pattern
whose iteration has not settled is refitted alone by :mod:`._tau2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import ResultMixin
from ..errors import DataError
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
    scale = float(np.var(Y[0]) + np.mean(v))
    if method in ("PM", "EB"):
        t, done = zero.copy(), q0 <= k - 1
    else:
        t, done = dl, np.zeros(n, dtype=bool)
    for _ in range(100):
        S, _, q, w2r2, T, U = _q_parts(Y, v, t)
        if method == "REML":
            step = (w2r2 - (S - T / S)) / (T - 2.0 * U / S + (T / S) ** 2)
        elif method == "ML":
            step = (w2r2 - S) / T
        else:
            step = np.where(w2r2 > 0, (q - (k - 1)) / np.where(w2r2 > 0, w2r2, 1.0), 0.0)
        new = np.where(done, t, np.maximum(0.0, t + step))
        conv = np.abs(new - t) <= 1e-10 * (1.0 + scale)
        t = new
        if conv.all():
            return t
    X = np.ones((k, 1))
    for i in np.flatnonzero(~conv):  # rare: a pattern the vector iteration did not settle
        t[i] = _tau2.estimate_tau2(method, Y[i], v, X)[0]
    return t


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


__all__ = ["permutation_test", "PermutationTest"]
