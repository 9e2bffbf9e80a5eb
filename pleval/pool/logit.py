"""The propensity model fitted out of core: Newton–Raphson (IRLS) on sufficient statistics.

The model is the one :func:`pleval.matching.fit_propensity` fits in memory,
``logit P(T = 1 | x) = x'β`` (intercept, numeric covariates as they are, an indicator for each
non-reference level of a categorical covariate, the reference being the most frequent level).
Newton's step for the logit log-likelihood ``ℓ(β) = Σ y η − log(1 + e^η)`` is

    β ← β + (X'WX)⁻¹ X'(y − p),    p = 1/(1 + e^{−η}),  W = diag(p(1 − p)),

and both ``X'WX`` and ``X'(y − p)`` are sums over rows. The PL rows (all ``y = 1``) are summed
in memory; the pool rows (all ``y = 0``) by one aggregate query per iteration
(``Σ p(1 − p) x_j x_l``, ``Σ p x_j``, ``Σ log(1 − p)``), computed where the pool lives (DuckDB
or Spark SQL), so nothing of the pool is held in memory. The iteration stops when no
coefficient moves by more than ``1e-10``; a step that lowers ``ℓ`` is halved. The result is
the full-data maximum-likelihood estimate, exactly (no sampling): it agrees with statsmodels'
``Logit`` on the same rows to rounding (``tests/test_pool.py``).

Separation, collinearity and perfect prediction are checked the way the in-memory fit checks
them (level counts by group, numeric ranges by group, the rank of ``X'X``, fitted
``|η| > 30``), from aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import ConvergenceError, DesignError
from ..inference.robust import dependent_column
from ..matching.propensity import _SEPARATION_LOGIT


@dataclass(frozen=True)
class Term:
    """One design column: ``level is None`` for a numeric covariate (or the intercept,
    ``source == "const"``), else the indicator of ``source == level``."""

    name: str
    source: str
    level: object = None


def design_terms(levels: dict, covariates) -> tuple[Term, ...]:
    """The design of :func:`pleval.matching._design.encode` (``intercept=True``): ``levels``
    maps each categorical covariate to a Series of counts indexed by level (PL and pool
    together); the others are numeric."""
    terms = [Term("const", "const")]
    for c in covariates:
        if c in levels:
            counts = levels[c].sort_index()
            ref = counts.index[int(np.argmax(counts.to_numpy()))]
            terms += [Term(f"{c}[{lev}]", c, lev) for lev in counts.index if lev != ref]
        else:
            terms.append(Term(c, c))
    return tuple(terms)


def term_matrix(df: pd.DataFrame, terms) -> np.ndarray:
    """The design matrix of ``terms`` on the rows of ``df`` (float64, one column per term)."""
    X = np.empty((len(df), len(terms)))
    for j, t in enumerate(terms):
        if t.source == "const":
            X[:, j] = 1.0
        elif t.level is None:
            X[:, j] = pd.to_numeric(df[t.source]).to_numpy(dtype=float)
        else:
            X[:, j] = (df[t.source] == t.level).to_numpy(dtype=float)
    return X


def sql_terms(terms, quote: Callable[[str], str], literal: Callable[[object], str]) -> list[str]:
    """Each term as a SQL expression (the same in DuckDB and Spark SQL)."""
    out = []
    for t in terms:
        if t.source == "const":
            out.append("1.0")
        elif t.level is None:
            out.append(f"CAST({quote(t.source)} AS DOUBLE)")
        else:
            out.append(f"(CASE WHEN {quote(t.source)} = {literal(t.level)} THEN 1.0 ELSE 0.0 END)")
    return out


def linear_sql(xs: list[str], beta: np.ndarray) -> str:
    return " + ".join(f"({float(b)!r}) * {x}" for b, x in zip(beta, xs))


def pass_sql(xs: list[str], beta: np.ndarray) -> tuple[str, list[str]]:
    """The inner select (``eta``, the terms) and the aggregates of one Newton pass over
    comparison rows (``y = 0``): ``Σ w x_j x_l`` (j ≤ l), ``Σ p x_j``, ``Σ log(1 − p)``,
    ``max |η|``, with ``p`` and ``log(1 − p)`` written to stay finite for any ``η``."""
    inner = f"{linear_sql(xs, beta)} AS eta, " + ", ".join(f"{x} AS x{j}" for j, x in enumerate(xs))
    p = "(CASE WHEN eta >= 0 THEN 1.0 / (1.0 + exp(-eta)) ELSE exp(eta) / (1.0 + exp(eta)) END)"
    w = f"({p} * (1.0 - {p}))"
    k = len(xs)
    aggs = [f"sum({w} * x{j} * x{m})" for j in range(k) for m in range(j, k)]
    aggs += [f"sum({p} * x{j})" for j in range(k)]
    aggs += ["sum(-(greatest(eta, 0.0) + ln(1.0 + exp(-abs(eta)))))", "max(abs(eta))"]
    return inner, aggs


def unpack(row, k: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(Σ w x x', Σ p x, Σ log(1 − p), max |η|)`` from the aggregates of :func:`pass_sql`."""
    vals = np.array([np.nan if v is None else float(v) for v in row])
    H = np.zeros((k, k))
    iu = np.triu_indices(k)
    H[iu] = vals[: len(iu[0])]
    H = H + np.triu(H, 1).T
    n = len(iu[0])
    return H, vals[n : n + k], float(vals[n + k]), float(vals[n + k + 1])


@dataclass(frozen=True)
class LogitFit:
    params: np.ndarray
    iterations: int
    max_abs_eta_pool: float


def warm_start(X_t: np.ndarray, X_s: np.ndarray, fraction: float) -> np.ndarray | None:
    """Starting values from the PL rows and a random ``fraction`` of the pool, in memory: the
    logit of that case-control sample has the full-data slopes and an intercept larger by
    ``−log(fraction)`` (Prentice & Pyke 1979), so the intercept is moved back. Only the number
    of Newton passes depends on it; the passes converge to the full-data MLE from any start.
    None when the sample fit fails."""
    from statsmodels.discrete.discrete_model import Logit

    if not len(X_s):
        return None
    y = np.concatenate([np.ones(len(X_t)), np.zeros(len(X_s))])
    try:
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            r = Logit(y, np.vstack([X_t, X_s])).fit(method="newton", maxiter=50, disp=0)
    except (np.linalg.LinAlgError, ValueError):
        return None
    b = np.asarray(r.params, dtype=float).copy()
    if not np.all(np.isfinite(b)):
        return None
    b[0] += np.log(fraction)
    return b


def fit_logit(X_t: np.ndarray, pool_pass: Callable[[np.ndarray], tuple], names, *, tol: float = 1e-10,
              maxiter: int = 50, progress=None, start: np.ndarray | None = None) -> LogitFit:
    """Newton–Raphson for the logit MLE with treated rows ``X_t`` (in memory) and comparison
    rows summed by ``pool_pass(beta) -> (Σ w x x', Σ p x, Σ log(1 − p), max |η|)``, from
    ``start`` (default zeros)."""
    k = X_t.shape[1]
    beta = np.zeros(k) if start is None else np.asarray(start, dtype=float)
    prev = None  # (beta, ll) of the last accepted point
    step = None
    for it in range(1, maxiter + 1):
        if progress is not None:
            progress("propensity model (out of core, Newton pass)", it, None)
        H_c, s_c, ll_c, max_eta = pool_pass(beta)
        eta = X_t @ beta
        p = 1.0 / (1.0 + np.exp(-eta))
        ll = float(-np.logaddexp(0.0, -eta).sum()) + ll_c
        if prev is not None and ll < prev[1] - 1e-9 * abs(prev[1]) and np.max(np.abs(step)) > tol:
            step = step / 2.0  # the step overshot: halve it
            beta = prev[0] + step
            continue
        if prev is not None and np.max(np.abs(step)) <= tol:
            return LogitFit(beta, it, max_eta)
        H = (X_t * (p * (1.0 - p))[:, None]).T @ X_t + H_c
        g = X_t.T @ (1.0 - p) - s_c
        if it == 1 or (it == 2 and start is not None):
            scale = np.sqrt(np.diag(H))  # Jacobi scaling: the rank of a correlation-like matrix
            scale[scale == 0] = 1.0
            Hs = H / np.outer(scale, scale)
            rank = int(np.linalg.matrix_rank(Hs, hermitian=True))
            j = dependent_column(Hs)  # pivots, relative to each column: the SQL sums' rounding (1e-12) stays below
            if rank < k or j >= 0:  # (matrix_rank alone missed frl + female written as a third column)
                rank = min(rank, k - 1)
                culprit = (f"; {names[j]!r} is a combination of the intercept and the columns before it (or constant)"
                           if j > 0 else "")
                raise DesignError(f"the propensity covariates are collinear (design rank {rank} < {k} columns: "
                                  f"{', '.join(names[1:])}){culprit}; drop a redundant covariate")
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            raise DesignError("the propensity model could not be fitted (singular Hessian); check for separation "
                              "or collinearity") from None
        prev = (beta, ll)
        beta = beta + step
    raise ConvergenceError(f"the out-of-core propensity model did not converge in {maxiter} Newton steps")


def check_fit(fit: LogitFit, X_t: np.ndarray, names) -> None:
    """Separation after the fit: fitted ``|η|`` beyond twice the separation threshold (as the
    in-memory fit)."""
    lin_t = X_t @ fit.params
    if max(float(np.abs(lin_t).max()), fit.max_abs_eta_pool) > _SEPARATION_LOGIT * 2:
        raise DesignError(
            "the propensity model shows separation (no finite maximum-likelihood estimate); covariate(s) "
            f"{', '.join(names[1:])}. Match exactly on them, drop them, or pass penalize=True (in memory)."
        )
