"""Omitted-variable bounds for a regression coefficient (Cinelli & Hazlett 2020).

Model ``Y = τ̂·D + X'β̂ + γ̂·Z + error`` with ``Z`` an omitted confounder. With the partial R²
``R²_{D~Z|X}`` (share of the residual variance of the treatment explained by Z) and
``R²_{Y~Z|D,X}`` (share of the residual variance of the outcome explained by Z), the bias of
the estimate without Z is, exactly and in the sample (Cinelli & Hazlett 2020, eq. 11-14)::

    |bias| = se(τ̂) · √dof · √( R²_{Y~Z|D,X} · R²_{D~Z|X} / (1 − R²_{D~Z|X}) )

and the classical standard error with Z included is
``se(τ̂) · √((1 − R²_{Y~Z|D,X}) / (1 − R²_{D~Z|X})) · √(dof / (dof − 1))``, ``dof = n − k``
the residual degrees of freedom of the fitted model and ``se`` its *classical* SE
(``se·√dof = sd(Y⊥D,X) / sd(D⊥X)``: a descriptive quantity).

* Partial R² of the treatment with the outcome: ``R²_{Y~D|X} = t²/(t² + dof)``.
* Robustness value (§4.2): with ``f_q = q·|t|/√dof``, ``RV_q = ½(√(f_q⁴ + 4f_q²) − f_q²)``: a
  confounder explaining ``RV_q`` of the residual variance of both D and Y reduces the estimate
  by ``100·q`` %. ``RV_{q,α}`` replaces ``f_q`` by ``f_q − f*`` with
  ``f* = t*_{α, dof−1}/√(dof − 1)`` (0 if negative); when ``f_q > 1/f*`` the extreme value
  ``(f_q² − f*²)/(1 + f_q²)`` applies (Cinelli & Hazlett 2020, §4.2 and footnote 12; as in the
  sensemakr package).
* Benchmarks (§6.1): a confounder ``k_D`` times as strongly related to D, and ``k_Y`` times to
  Y, as an observed covariate (or group) X_j, with ``R²_{D~Xj|X−j}`` and ``R²_{Y~Xj|D,X−j}``::

      R²_{D~Z|X}   = k_D · R²_{D~Xj|X−j} / (1 − R²_{D~Xj|X−j})
      η            = k_D · R²_{D~Xj|X−j}² / ((1 − k_D·R²_{D~Xj|X−j}) (1 − R²_{D~Xj|X−j}))
      R²_{Y~Z|D,X} = ((√k_Y + √η) / √(1 − η))² · R²_{Y~Xj|D,X−j} / (1 − R²_{Y~Xj|D,X−j})

  (capped at 1: the bound's row is marked ``capped``, its SE, t and CI left empty, since no such
  confounder exists). A multiple with ``R²_{D~Z|X} ≥ 1`` (a confounder explaining all of the
  treatment) keeps its row too, ``capped``, with ``R²_{D~Z|X}`` 1 and no ``R²_{Y~Z|D,X}`` or
  estimate. A group's partial R² is ``(RSS_without − RSS_with)/RSS_without``.

**Cluster-robust standard errors.** The published formulas assume the classical SE. pleval's
adaptation: (1) the *point-estimate* quantities — partial R², ``RV_q``, the bias and the
adjusted estimate — use the classical SE and ``dof`` of the same weighted fit, because
``se_classical·√dof`` is the ratio of residual SDs, not a statement about sampling error
(they do not depend on the covariance estimator at all); (2) for *inference* the
cluster-robust SE enters through its design effect ``κ = se_CR2 / se_classical``, assumed
unchanged by adding Z: the adjusted SE is ``κ`` times the classical adjusted SE, the adjusted
CI uses the Satterthwaite df ``ν`` of the CR2 fit, and ``RV_{q,α}`` uses the critical
``f* = κ · t*_{α,ν} / √(dof − 1)`` — the confounder strength, equal on both axes, at which the
adjusted CR2 interval first reaches ``(1 − q)·τ̂``. With ``κ = 1`` and ``ν = dof − 1`` this is
exactly sensemakr. ``tests/test_sensitivity_ovb.py`` checks both parts against a refit with
the confounder included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from .._align import by_label
from .._results import Frame, ResultMixin
from ..errors import DataError, DesignError


@by_label("t", "dof")
def partial_r2(t, dof):
    """Partial R² of a coefficient from its t-statistic: ``t²/(t² + dof)``."""
    t = np.asarray(t, dtype=float)
    return t**2 / (t**2 + dof)


@by_label("se", "dof", "r2dz_x", "r2yz_dx")
def bias(se, dof, r2dz_x, r2yz_dx):
    """``|bias| = se·√dof·√(R²_{Y~Z|D,X}·R²_{D~Z|X}/(1 − R²_{D~Z|X}))`` (vectorized)."""
    r2dz_x, r2yz_dx = np.asarray(r2dz_x, dtype=float), np.asarray(r2yz_dx, dtype=float)
    _check_r2(r2dz_x, r2yz_dx)
    with np.errstate(divide="ignore"):
        return se * math.sqrt(dof) * np.sqrt(r2yz_dx * r2dz_x / (1.0 - r2dz_x))


def adjusted_estimate(estimate, se, dof, r2dz_x, r2yz_dx, reduce: bool = True):
    """The estimate after removing (``reduce``) or adding the bias, towards/away from zero."""
    sign = -1.0 if estimate < 0 else 1.0
    b = bias(se, dof, r2dz_x, r2yz_dx)
    return sign * (abs(estimate) - b) if reduce else sign * (abs(estimate) + b)


@by_label("se", "dof", "r2dz_x", "r2yz_dx")
def adjusted_se(se, dof, r2dz_x, r2yz_dx):
    """Classical SE with Z included: ``se·√((1 − R²_{Y~Z|D,X})/(1 − R²_{D~Z|X}))·√(dof/(dof − 1))``."""
    r2dz_x, r2yz_dx = np.asarray(r2dz_x, dtype=float), np.asarray(r2yz_dx, dtype=float)
    _check_r2(r2dz_x, r2yz_dx)
    with np.errstate(divide="ignore"):
        return se * np.sqrt((1.0 - r2yz_dx) / (1.0 - r2dz_x)) * math.sqrt(dof / (dof - 1.0))


@by_label("t", "dof", "f_crit")
def robustness_value(t, dof, q: float = 1.0, alpha: float | None = None, *, f_crit=None):
    """``RV_q`` (``alpha`` None) or ``RV_{q,α}``; ``f_crit`` overrides ``t*_{α,dof−1}/√(dof−1)``.
    Vectorized: arrays ``t``, ``dof`` (and ``f_crit``) give an array (scalars a float)."""
    if q <= 0:
        raise DataError(f"q must be positive; got {q!r}")
    scalar = np.ndim(t) == 0 and np.ndim(dof) == 0 and np.ndim(f_crit) == 0
    t, dof = np.asarray(t, dtype=float), np.asarray(dof, dtype=float)
    fq = q * np.abs(t) / np.sqrt(dof)
    if alpha is None and f_crit is None:
        out = _rv(fq)
    else:
        if f_crit is None:
            if not 0 < alpha < 1:
                raise DataError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
            f_crit = stats.t.ppf(1 - alpha / 2, dof - 1) / np.sqrt(dof - 1)
        f_crit = np.asarray(f_crit, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            extreme = (fq**2 - f_crit**2) / (1 + fq**2)  # the constraint R²_{Y~Z} ≤ 1 binds
            out = np.where(fq - f_crit <= 0, 0.0, np.where(fq > 1.0 / f_crit, extreme, _rv(np.maximum(fq - f_crit, 0.0))))
        out = np.where(np.isnan(fq) | np.isnan(f_crit), np.nan, out)
    return float(out) if scalar else out


def _rv(f):
    """½(√(f⁴+4f²) − f²), written stably as 2/(1 + √(1 + 4/f²)); 0 at f = 0."""
    f = np.asarray(f, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(f == 0, 0.0, 2.0 / (1.0 + np.sqrt(1.0 + 4.0 / f**2)))


@by_label("r2dxj_x", "r2yxj_dx")
def benchmark_r2(r2dxj_x, r2yxj_dx, kd=1.0, ky=None, cap: bool = True):
    """Bounds ``(R²_{D~Z|X}, R²_{Y~Z|D,X})`` for a confounder ``kd``/``ky`` times as strong as a
    benchmark with partial R² ``r2dxj_x`` (with D) and ``r2yxj_dx`` (with Y); vectorized in k.
    ``R²_{Y~Z|D,X}`` is capped at 1 (as sensemakr) unless ``cap=False``: above 1 no such
    confounder exists (it would explain more than all of the outcome's residual variance)."""
    kd = np.asarray(kd, dtype=float)
    ky = kd if ky is None else np.asarray(ky, dtype=float)
    r2dz = kd * r2dxj_x / (1.0 - r2dxj_x)
    if np.any(r2dz >= 1):
        raise DataError(f"a confounder {np.max(kd):g} times as strong as this benchmark would explain all of the treatment; use a smaller multiple")
    eta = kd * r2dxj_x**2 / ((1.0 - kd * r2dxj_x) * (1.0 - r2dxj_x))
    r2yz = ((np.sqrt(ky) + np.sqrt(eta)) / np.sqrt(1.0 - eta)) ** 2 * (r2yxj_dx / (1.0 - r2yxj_dx))
    return r2dz, (np.minimum(r2yz, 1.0) if cap else r2yz)


def _check_r2(*arrays):
    for a in arrays:
        if np.any((a < 0) | (a > 1)):
            raise DataError("partial R² values must lie in [0, 1]")


# --------------------------------------------------------------------------------------
# Partial R² from a fitted design
# --------------------------------------------------------------------------------------
class Gram:
    """Weighted cross-products of a design and an outcome, for the partial R² of any column
    group in any of the regressions pleval's bounds need, without refitting: the residual sum
    of squares of column ``r`` on columns ``S`` is ``G_rr − G_rS G_SS⁻¹ G_Sr``. Columns are
    centred at their weighted means first (the intercept absorbs the means), for accuracy."""

    def __init__(self, y: np.ndarray, X: np.ndarray, weights: np.ndarray | None = None, constant=None):
        """``constant``: indices of X's constant columns (the intercept; found if None)."""
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
        Z = np.column_stack([X, y])  # the one copy of the data
        const = np.zeros(Z.shape[1], dtype=bool)
        if constant is None:
            const = np.ptp(Z, axis=0) == 0
        else:
            const[list(constant)] = True
        self.shift = np.where(const, 0.0, (w @ Z) / w.sum())
        Z -= self.shift
        Z *= np.sqrt(w)[:, None]
        self.G = Z.T @ Z
        self.k = X.shape[1]
        self.y = self.k  # the outcome's index

    @classmethod
    def from_fit(cls, y: np.ndarray, weights: np.ndarray, center: np.ndarray, XtX: np.ndarray, Xty: np.ndarray,
                 y0: float = 0.0) -> "Gram":
        """The Gram of ``(y, X, weights)`` from the cross-products a weighted fit of y on X has
        formed (:func:`pleval.matching.effect.regression_design`'s ``gram``): ``XtX = X̃'X̃`` and
        ``Xty = X̃'ỹ``, ``X̃ = W^{1/2}(X − center)`` with ``center`` 0 at the intercept (the first
        column) and the other columns' weighted means, ``ỹ = W^{1/2}(y − y0)``. Only the outcome's
        centred sum of squares ``Σ w(y − ȳ)²`` (ȳ its weighted mean) takes a pass over the rows;
        no n×k copy. ``X̃'W^{1/2}(y − ȳ) = Xty − (ȳ − y0)·XtX[:, 0]`` (``X̃'W^{1/2}1`` is the
        intercept's column; the correction is 0 when y0 is ȳ). The matrix is that of the
        constructor up to rounding (the same sums in another order: ~1e-15 relative)."""
        w = np.asarray(weights, dtype=float)
        ybar = float(w @ y / w.sum())  # (as regression_design's y0)
        e = y - ybar
        e *= np.sqrt(w)
        k = XtX.shape[0]
        g = cls.__new__(cls)
        g.G = np.empty((k + 1, k + 1))
        g.G[:k, :k] = XtX
        g.G[:k, k] = g.G[k, :k] = Xty if ybar == y0 else Xty - (ybar - y0) * XtX[:, 0]
        g.G[k, k] = e @ e
        g.shift = np.append(np.asarray(center, dtype=float), ybar)
        g.k, g.y = k, k
        return g

    def rss(self, r: int, cols) -> float:
        cols = np.asarray(list(cols), dtype=int)
        if cols.size == 0:
            return float(self.G[r, r])
        A = self.G[np.ix_(cols, cols)]
        b = self.G[cols, r]
        return float(self.G[r, r] - b @ linalg.solve(A, b, assume_a="pos"))

    def residuals(self, y: np.ndarray, X: np.ndarray, cols) -> np.ndarray:
        """Residuals of the weighted regression of the outcome on the design columns ``cols``."""
        cols = np.asarray(list(cols), dtype=int)
        beta = np.zeros(self.k)
        beta[cols] = linalg.solve(self.G[np.ix_(cols, cols)], self.G[cols, self.y], assume_a="pos")
        return y - X @ beta - (self.shift[self.y] - self.shift[: self.k] @ beta)

    def partial_r2(self, r: int, group, others) -> float:
        """Share of the residual variance of column ``r`` (given ``others``) that ``group`` explains:
        ``c'D⁻¹c / RSS(r | others)``, ``D`` and ``c`` the cross-products of ``group`` with itself and
        with ``r``, each residualized on ``others`` — the fall in the residual sum of squares when
        the group is added (Frisch–Waugh–Lovell), formed directly. (The difference of the two
        residual sums of squares loses its leading digits to cancellation when the group explains
        little: 7e-9 relative error for a partial R² of 1e-7 at 1M rows, against 1e-12 this way.)"""
        S, idx = list(others), list(group) + [r]
        M = self.G[np.ix_(idx, idx)]
        if S:
            M = M - self.G[np.ix_(idx, S)] @ linalg.solve(self.G[np.ix_(S, S)], self.G[np.ix_(S, idx)], assume_a="pos")
        without = float(M[-1, -1])
        if not without > 0:
            return 0.0
        c = M[:-1, -1]
        return max(0.0, float(c @ linalg.solve(M[:-1, :-1], c, assume_a="pos")) / without)


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class OmittedVariableBounds(ResultMixin):
    """Cinelli–Hazlett sensitivity of one regression coefficient (see the module docstring).

    ``estimate``, ``se`` (the inference SE, cluster-robust if so fitted), ``df`` (its reference
    df), ``se_classical`` and ``dof`` (the residual df); ``r2yd_x`` the treatment's partial R²
    with the outcome; ``rv_q``, ``rv_qa``; ``bounds``: one row per benchmark × multiple with
    ``r2dz_x, r2yz_dx, estimate, se, t, ci_low, ci_high``; ``benchmarks``: each benchmark's own
    partial R² with treatment and outcome.
    """

    label: str
    estimate: float
    se: float
    df: float
    se_classical: float
    dof: float
    q: float
    alpha: float
    reduce: bool
    r2yd_x: float
    rv_q: float
    rv_qa: float
    bounds: pd.DataFrame = Frame()
    benchmarks: pd.DataFrame = Frame()

    @property
    def kappa(self) -> float:
        """Design effect on the SE: inference SE / classical SE."""
        return self.se / self.se_classical

    @property
    def t(self) -> float:
        return self.estimate / self.se

    def adjusted(self, r2dz_x, r2yz_dx) -> dict[str, np.ndarray]:
        """Adjusted estimate, SE, t and CI for any confounder strengths (arrays broadcast)."""
        return _adjusted(self.estimate, self.se_classical, self.dof, self.kappa, self.df, self.alpha,
                         np.asarray(r2dz_x, float), np.asarray(r2yz_dx, float), self.reduce)

    def multiple_to_zero(self, benchmark: str) -> float:
        """The multiple ``k`` (k_D = k_Y = k) of ``benchmark`` at which the adjusted estimate
        reaches zero (``inf`` if no feasible multiple does: one whose confounder explains less
        than all of the treatment and of the outcome's residual variance)."""
        row = self.benchmarks.set_index("benchmark").loc[benchmark]
        r2d, r2y = float(row["r2dxj_x"]), float(row["r2yxj_dx"])
        kmax = (1.0 - r2d) / r2d * (1 - 1e-12) if r2d > 0 else math.inf
        kmax = min(kmax, 1e6)

        def beyond(k):  # R²_{Y~Z|D,X} − 1: above 0 the confounder cannot exist
            return float(benchmark_r2(r2d, r2y, k, cap=False)[1]) - 1.0

        if beyond(kmax) >= 0:
            kmax = optimize.brentq(beyond, 0.0, kmax, xtol=1e-12 * max(1.0, kmax))
            kmax -= 2e-12 * max(1.0, kmax)  # on the feasible side of the root

        def est(k):
            r2dz, r2yz = benchmark_r2(r2d, r2y, k)
            return abs(self.estimate) - float(bias(self.se_classical, self.dof, r2dz, r2yz))

        if est(kmax) > 0:
            return math.inf
        lo, hi = 0.0, kmax
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if est(mid) > 0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-9 * max(1.0, hi):
                break
        return hi

    def to_frame(self) -> pd.DataFrame:
        return self.bounds.copy()

    def summary(self) -> str:
        lines = [
            f"Omitted-variable bounds (Cinelli & Hazlett 2020){' — ' + self.label if self.label else ''}",
            f"  estimate {self.estimate:.4g} (SE {self.se:.4g}, t = {self.t:.3f}; classical SE {self.se_classical:.4g}, dof {self.dof:,.0f})",
            f"  partial R² of treatment with outcome: {self.r2yd_x:.4f}",
            f"  robustness value RV(q={self.q:g}): {self.rv_q:.4f}; RV(q={self.q:g}, α={self.alpha:g}): {self.rv_qa:.4f}",
        ]
        if len(self.bounds):
            lines.append(self.bounds.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            if self.bounds["capped"].any():
                lines.append("  capped: the multiple implies a confounder explaining more than all of the outcome's "
                             "residual variance (R²_Y capped at 1, as sensemakr; the estimate is the extreme) or all "
                             "of the treatment's (R²_D capped at 1; no R²_Y and no estimate): no such confounder "
                             "exists, and SE, t and CI are left empty")
        return "\n".join(lines)


def _adjusted(estimate, se_c, dof, kappa, df, alpha, r2dz, r2yz, reduce):
    est = adjusted_estimate(estimate, se_c, dof, r2dz, r2yz, reduce)
    se = kappa * adjusted_se(se_c, dof, r2dz, r2yz)
    crit = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    return {"estimate": est, "se": se, "t": t, "ci_low": est - crit * se, "ci_high": est + crit * se}


def omitted_variable_bounds(
    estimate: float,
    se_classical: float,
    dof: float,
    *,
    se: float | None = None,
    df: float | None = None,
    benchmarks: dict[str, tuple[float, float]] | None = None,
    kd=(1, 2, 3),
    ky=None,
    q: float = 1.0,
    alpha: float = 0.05,
    reduce: bool = True,
    label: str = "",
) -> OmittedVariableBounds:
    """Sensitivity statistics and benchmark bounds from summary numbers.

    ``estimate``, ``se_classical`` and ``dof`` come from the fitted regression; ``se`` and
    ``df`` are the inference SE and its reference df (default: classical, ``dof − 1`` for the
    adjusted CI, as sensemakr). ``benchmarks`` maps a name to ``(R²_{D~Xj|X−j},
    R²_{Y~Xj|D,X−j})``; ``kd`` (and ``ky``, default ``kd``) are the multiples.
    """
    if not (np.isfinite(estimate) and se_classical > 0 and dof > 1):
        raise DataError("omitted-variable bounds need a finite estimate, a positive SE and more than 1 residual df")
    se = se_classical if se is None else float(se)
    df = dof - 1.0 if df is None else float(df)
    kappa = se / se_classical
    t_c = estimate / se_classical
    f_crit = kappa * stats.t.ppf(1 - alpha / 2, df) / math.sqrt(dof - 1)
    kd = np.atleast_1d(np.asarray(kd, dtype=float))
    ky_arr = kd if ky is None else np.broadcast_to(np.asarray(ky, dtype=float), kd.shape)
    for name, k in (("kd", kd), ("ky", ky_arr)):
        if not np.all(np.isfinite(k) & (k > 0)):
            raise DataError(f"{name}: the multiples of a benchmark's strength must be positive numbers; got "
                            f"{', '.join(f'{x:g}' for x in np.ravel(k))}")
    rows, bench = [], []
    for name, (r2d, r2y) in (benchmarks or {}).items():  # a handful of benchmarks
        bench.append({"benchmark": name, "r2dxj_x": r2d, "r2yxj_dx": r2y})
        # a multiple at which the confounder would explain all of the treatment keeps its row, capped at
        # R²_D = 1 with no R²_Y and no adjusted estimate (no treatment variation would be left)
        feasible = kd * r2d / (1 - r2d) < 1
        r2dz, r2yz = np.ones(kd.shape), np.full(kd.shape, np.nan)
        r2dz[feasible], raw = benchmark_r2(r2d, r2y, kd[feasible], ky_arr[feasible], cap=False)
        r2yz[feasible] = np.minimum(raw, 1.0)
        capped = ~feasible
        capped[feasible] = raw >= 1
        adj = {key: np.full(kd.shape, np.nan) for key in ("estimate", "se", "t", "ci_low", "ci_high")}
        for key, v in _adjusted(estimate, se_classical, dof, kappa, df, alpha, r2dz[feasible], r2yz[feasible],
                                reduce).items():
            adj[key][feasible] = v
        for key in ("se", "t", "ci_low", "ci_high"):  # R² = 1 leaves no residual: no sampling error to speak of
            adj[key] = np.where(capped, np.nan, adj[key])
        for i, (a, b) in enumerate(zip(kd, ky_arr)):
            rows.append({"bound": f"{a:g}x {name}" if a == b else f"{a:g}/{b:g}x {name}", "benchmark": name,
                         "kd": a, "ky": b, "r2dz_x": float(r2dz[i]), "r2yz_dx": float(r2yz[i]),
                         **{k: float(v[i]) for k, v in adj.items()}, "capped": bool(capped[i])})
    cols = ["bound", "benchmark", "kd", "ky", "r2dz_x", "r2yz_dx", "estimate", "se", "t", "ci_low", "ci_high", "capped"]
    return OmittedVariableBounds(
        label=label, estimate=float(estimate), se=se, df=df, se_classical=float(se_classical), dof=float(dof),
        q=float(q), alpha=float(alpha), reduce=reduce,
        r2yd_x=float(partial_r2(t_c, dof)),
        rv_q=robustness_value(t_c, dof, q),
        rv_qa=robustness_value(t_c, dof, q, f_crit=f_crit),
        bounds=pd.DataFrame(rows, columns=cols),
        benchmarks=pd.DataFrame(bench, columns=["benchmark", "r2dxj_x", "r2yxj_dx"]),
    )


def ovb_from_design(
    y: np.ndarray,
    X: np.ndarray,
    names,
    treatment: str,
    *,
    weights: np.ndarray | None = None,
    benchmarks: dict[str, list[str]] | None = None,
    se: float | None = None,
    df: float | None = None,
    gram: Gram | None = None,
    n_obs: int | None = None,
    **kw,
) -> OmittedVariableBounds:
    """:func:`omitted_variable_bounds` for the (weighted) least-squares fit of ``y`` on ``X``
    (which includes the intercept), coefficient ``treatment``; ``benchmarks`` maps a label to
    the design columns of one covariate or group. One pass over the data (the cross-products);
    the rest is k×k algebra. ``se``/``df``: the inference SE and df of the same fit (e.g. CR2);
    ``gram``: the :class:`Gram` of ``(y, X, weights)`` if already computed; ``n_obs``: the
    observations the rows stand for when rows merge copies with their weights summed (the
    classical df ``n − k`` counts the copies; the cross-products are those of the copies)."""
    names = list(names)
    if treatment not in names:
        raise DataError(f"no design column named {treatment!r}")
    n, k = X.shape
    d = names.index(treatment)
    g = Gram(y, X, weights, constant=[names.index("const")] if "const" in names else None) if gram is None else gram
    rest = [j for j in range(k) if j != d]
    dof = (n if n_obs is None else int(n_obs)) - k
    if dof <= 1:
        raise DesignError(f"the regression has {dof} residual df ({dof + k} observations, {k} coefficients): too few for "
                          "omitted-variable bounds")
    rss_full = g.rss(g.y, range(k))
    rss_d = g.rss(d, rest)  # residual SS of the treatment on the covariates
    if rss_d <= 0:
        raise DataError(f"{treatment!r} is collinear with the covariates")
    if not rss_full > 1e-12 * g.G[g.y, g.y] or np.ptp(y) == 0:  # R² of 1 up to rounding, or one value
        raise DesignError("the outcome is fitted exactly (residual sum of squares 0; e.g. it holds one value): "
                          "no omitted-variable bounds")
    sol = linalg.solve(g.G[:k, :k], g.G[:k, g.y], assume_a="sym")
    estimate = float(sol[d])
    se_c = math.sqrt(rss_full / dof / rss_d)
    bench = {}
    for label, cols in (benchmarks or {}).items():
        idx = [names.index(c) for c in cols]
        others_d = [j for j in rest if j not in idx]
        bench[label] = (g.partial_r2(d, idx, others_d), g.partial_r2(g.y, idx, [d] + others_d))
    return omitted_variable_bounds(estimate, se_c, dof, se=se, df=df, benchmarks=bench, **kw)


__all__ = ["partial_r2", "bias", "adjusted_estimate", "adjusted_se", "robustness_value", "benchmark_r2",
           "omitted_variable_bounds", "ovb_from_design", "OmittedVariableBounds", "Gram"]
