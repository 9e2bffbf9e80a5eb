"""Meta-regression of school effects on school-level moderators.

Mixed-effects model (Raudenbush 2009; Viechtbauer 2005): ``y_i = x_i'β + u_i + e_i``,
``u_i ~ N(0, τ²)`` the residual between-school variance, ``e_i ~ N(0, v_i)``, v_i known.
Given τ̂² (REML by default; DL = Raudenbush's method of moments; PM; ML, EB, HE, SJ, HS
as in :mod:`._tau2` — SJ starts from the moderators' residuals, where metafor starts from
Σ(y − ȳ)²/k; FE = 0), β̂ is the
weighted least-squares fit with ``w_i = 1/(v_i + τ̂²)``: ``β̂ = (X'WX)⁻¹X'Wy``,
``Var(β̂) = (X'WX)⁻¹``. Tests:

* each moderator: ``z = β̂_j / SE_j`` (or Knapp & Hartung 2003: ``Var(β̂)`` multiplied by
  ``s² = Σw_i r_i² / (k − p)``, t(k − p) reference);
* all moderators together (``QM``): Wald ``β̂_m' Var(β̂_m)⁻¹ β̂_m`` ~ χ²(m), or divided by
  m ~ F(m, k − p) with Knapp–Hartung;
* residual heterogeneity (``QE``): ``Σ(1/v_i)(y_i − x_i'β̂_FE)²`` ~ χ²(k − p);
* ``R² = max(0, (τ̂²₀ − τ̂²)/τ̂²₀)``, the share of between-school variance accounted for,
  τ̂²₀ from the model without moderators (Raudenbush 2009, eq. 16.45);
* residual I² = ``τ̂²/(τ̂² + s²)`` with ``s² = (k − p)/tr P₀``, ``P₀`` the FE projection
  (metafor's definition).

With a full sampling covariance (``vcov=V``; correlated school estimates) the model is
``y ~ N(Xβ, V + τ²I)`` (metafor's ``rma.mv`` with mods): everything above is computed on the
rotated data ``(Q'y, Q'X)`` with independent variances λ_i, ``V = QΛQ'`` (see
:mod:`.meta`); ``QE = r'V⁻¹r`` and ``s² = (k − p)/tr P₀`` follow.

**Covariance removed by regularization** (``vcov_unshrunk=V₀``, as in :mod:`.meta`): β̂ = Ly
with ``L = (X'WX)⁻¹X'W`` still varies with the covariance that shrinking ``V₀``'s off-diagonal
to ``V`` removed, ``L(V₀ − V)L'``; its positive part (the eigenvalues of that p × p matrix
floored at 0, so no coefficient's SE can shrink) is added to ``Var(β̂)`` after the
Knapp–Hartung factor, and the tests, CIs and QM use the sum. ``vcov_offdiag`` holds the term;
τ², QE, R², I² and the BLUPs' shrinkage keep ``V``. With one column (no moderators) it is the
pooled SE's term of :func:`.meta.meta_analysis`.

**BLUPs** (:meth:`MetaRegression.blup`; metafor's ``blup()`` and ``ranef()``): the best linear
unbiased prediction of school i's true effect ``θ_i = x_i'β + u_i`` given the fit is
``θ̃ = Xβ̂ + û``, ``û = τ̂²W(y − Xβ̂)``, ``W = (V + τ̂²I)⁻¹`` (Henderson 1975; Raudenbush & Bryk
2002, eq. 3.56 with moderators) — with independent estimates ``û_i = B_i(y_i − x_i'β̂)``,
``B_i = τ̂²/(τ̂² + v_i)``. Its prediction-error covariance, treating τ̂² as known, is
``τ̂²I − τ̂⁴W + (I − τ̂²W)X Var(β̂) X'(I − τ̂²W)'`` (diagonal ``B_i v_i + (1 − B_i)² x_i'Var(β̂)x_i``
with independent estimates); intervals use a normal quantile, as metafor's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._align import floats, index_of, paired
from .._results import Frame, ResultMixin
from ..errors import DataError, DesignError
from . import _tau2
from .meta import Method, _readonly, check_inputs, check_method, check_vcov, rotate


@dataclass(frozen=True, repr=False)
class MetaRegression(ResultMixin):
    """Result of :func:`meta_regression` (immutable). ``index``: the pandas labels of the rows when
    the estimates, SEs or moderators were pandas objects (the first one's index; None for arrays),
    by which :func:`~.robust.cluster_robust` pairs a pandas ``cluster``."""

    method: str
    k: int
    coefficients: pd.DataFrame = Frame()
    vcov: np.ndarray
    df: float
    tau2: float
    tau2_se: float
    tau2_ci: tuple[float, float]
    tau2_null: float
    r2: float
    i2: float
    qe: float
    qe_df: int
    qe_pvalue: float
    qm: float
    qm_df: int
    qm_pvalue: float
    qm_distribution: str
    knapp_hartung: bool
    level: float
    estimates: np.ndarray | None = None
    ses: np.ndarray | None = None
    design: np.ndarray | None = None
    sampling_vcov: np.ndarray | None = None
    vcov_offdiag: np.ndarray | None = None
    labels: tuple = ()
    index: pd.Index | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.coefficients.copy()

    @property
    def independent(self) -> bool:
        """True when the estimates are independent (no sampling covariance, or a diagonal one)."""
        V = self.sampling_vcov
        return V is None or not np.any(V - np.diag(np.diag(V)))

    def blup(self) -> pd.DataFrame:
        """Per school: fitted value ``x_i'β̂``, random effect ``û_i``, BLUP ``θ̃_i = x_i'β̂ + û_i``,
        its prediction-error SD and ``level`` interval (formulas in the module docstring)."""
        y, X, b = self.estimates, self.design, self.coefficients["estimate"].to_numpy()
        V = np.diag(self.ses**2) if self.sampling_vcov is None else self.sampling_vcov
        k = y.size
        fitted = X @ b
        lam, Q = np.linalg.eigh(V)
        W = (Q / (lam + self.tau2)) @ Q.T
        u = self.tau2 * (W @ (y - fitted))
        R = np.eye(k) - self.tau2 * W
        RX = R @ X
        pev = self.tau2 * (np.eye(k) - self.tau2 * W) + RX @ self.vcov @ RX.T
        sd = np.sqrt(np.clip(np.diag(pev), 0.0, None))
        crit = stats.norm.ppf(0.5 + self.level / 2)
        blup = fitted + u
        return pd.DataFrame(
            {"fitted": fitted, "ranef": u, "blup": blup, "se": sd, "pi_low": blup - crit * sd, "pi_high": blup + crit * sd}
        )

    def summary(self) -> str:
        kh = " with Knapp-Hartung" if self.knapp_hartung else ""
        ref = "t" if self.knapp_hartung else "z"
        c = self.coefficients
        lines = [
            f"Meta-regression ({self.method}{kh}), k = {self.k}",
            f"  residual tau² {self.tau2:.4g} ({self.level:.0%} Q-profile CI {self.tau2_ci[0]:.4g} to {self.tau2_ci[1]:.4g}); "
            f"tau² without moderators {self.tau2_null:.4g}; R² = {100 * self.r2:.1f}%; residual I² = {self.i2:.1f}%",
            f"  residual heterogeneity QE({self.qe_df}) = {self.qe:.4f}, p = {self.qe_pvalue:.3g}",
            f"  moderators together QM: {self.qm_distribution} = {self.qm:.4f}, p = {self.qm_pvalue:.3g}",
        ]
        if self.vcov_offdiag is not None and np.any(self.vcov_offdiag):
            lines.append("  Var(β) includes the between-school covariance the regularization of V removed "
                         f"(SE² added: {', '.join(f'{x:.3g}' for x in np.diag(self.vcov_offdiag))})")
        lines += [
            f"  {'term':<22}{'estimate':>11}{'SE':>11}{ref:>9}{'p':>10}{'CI low':>11}{'CI high':>11}",
        ]
        for name, r in c.iterrows():
            lines.append(
                f"  {str(name):<22}{r.estimate:>11.4g}{r.se:>11.4g}{r.statistic:>9.3f}{r.pvalue:>10.3g}"
                f"{r.ci_low:>11.4g}{r.ci_high:>11.4g}"
            )
        return "\n".join(lines)


def _moderator_matrix(moderators, k: int, names) -> tuple[np.ndarray, list[str]]:
    if isinstance(moderators, pd.Series):
        moderators = moderators.to_frame()
    if isinstance(moderators, pd.DataFrame):
        frame = moderators
    else:
        arr = floats(moderators, "moderators")
        if arr.ndim == 1:
            arr = arr[:, None]
        frame = pd.DataFrame(arr, columns=list(names) if names else [f"x{j + 1}" for j in range(arr.shape[1])])
    if len(frame) != k:
        raise DataError(f"moderators have {len(frame)} rows but there are {k} estimates")
    cols = []
    for col in frame.columns:
        vals = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        n_inf, n_nan = int(np.isinf(vals).sum()), int(np.isnan(vals).sum())
        if n_inf or n_nan:  # (before 2026-12-05 an infinite value was "missing or not numeric" too)
            said = [f"{n_inf} value(s) are infinite"] * bool(n_inf)
            said += [f"{n_nan} value(s) are missing or not numeric"] * bool(n_nan)
            raise DataError(f"moderator {col!r}: " + "; ".join(said))
        cols.append(vals)
    return np.column_stack(cols) if cols else np.empty((k, 0)), [str(c) for c in frame.columns]


RANK_TOL = 1e-7
"""A moderator whose part not spanned by the intercept and the moderators before it is below this
share of its own norm is taken as their linear combination: R's ``qr()`` tolerance, which
metafor's ``rma`` applies to the unweighted design (through ``lm``) and then drops the column.
Exact collinearity leaves about 1e-16, another moderator (values near 1) plus noise of 1e-9 about 1e-9, an
informative moderator far more (years 2020 to 2025 beside the intercept about 1e-3). Relative to
each column, so units (1e6 or 1e-6) do not matter; on the unweighted design, as the weights do not
change which columns are redundant (a school that carries nearly all the weight would shrink an
ordinary moderator's share in the weighted design to its SE ratio). A rule of its own beside
:func:`pleval.inference.robust.dependent_column` (Cholesky pivots, 1e-11 of the squared norm): it is
metafor's criterion, on the QR, and names every redundant moderator, not the first."""


def _redundant(X: np.ndarray) -> list[tuple[int, float]]:
    """The columns of X after the first that the columns before them (less those already found
    redundant) span to within :data:`RANK_TOL` of their own norm, each with the share of it they
    do not span (R's ``qr()``: LINPACK's ``dqrdc2``, which moves such a column to the end)."""
    norms = np.linalg.norm(X, axis=0)
    Z = X / np.where(norms > 0, norms, 1.0)
    kept, out = [0], []
    for j in range(1, X.shape[1]):
        Q = np.linalg.qr(Z[:, kept])[0]
        share = float(np.linalg.norm(Z[:, j] - Q @ (Q.T @ Z[:, j])))
        if share < RANK_TOL:
            out.append((j, share))
        else:
            kept.append(j)
    return out


def _rank_message(X: np.ndarray, names: Sequence[str], redundant: list[tuple[int, float]]) -> str:
    """The error for a design with ``redundant`` columns (:func:`_redundant`; X's column 0 the
    intercept): each such moderator named, with what spans it: the intercept alone (one value, or
    nearly one), else the intercept and the moderators kept before it."""
    said, dropped = [], {j for j, _ in redundant}
    for j, share in redundant:
        x, name = X[:, j], names[j - 1]
        if np.ptp(x) == 0:
            said.append(f"moderator {name!r} holds one value ({x[0]:g}) for every school, so it cannot explain "
                        "differences between schools")
        elif np.linalg.norm(x - x.mean()) < RANK_TOL * np.linalg.norm(x):
            said.append(f"moderator {name!r} holds nearly one value for every school ({x.mean():g}, varying by only "
                        f"{np.ptp(x):.3g} in all), which the intercept spans")
        else:
            among = [repr(names[i - 1]) for i in range(1, j) if i not in dropped]
            said.append(f"moderator {name!r} is a linear combination of the intercept and the moderators before it "
                        f"({', '.join(among) or 'none'}) over these schools (the part they do not span is "
                        f"{share:.1g} of it; below {RANK_TOL:g} counts as none)")
    return "; ".join(said) + f": the design is rank deficient; leave {'it' if len(said) == 1 else 'them'} out"


def meta_regression(
    estimates,
    ses,
    moderators,
    *,
    method: Method = "REML",
    knapp_hartung: bool = False,
    level: float = 0.95,
    names: Sequence[str] | None = None,
    vcov=None,
    vcov_unshrunk=None,
    labels: Sequence | None = None,
) -> MetaRegression:
    """Regress school effects on school-level moderators (formulas in the module docstring).

    ``moderators`` is a DataFrame (column names kept), a Series, or a k×m array (``names``). pandas
    ``estimates``, ``ses`` and ``moderators`` are paired by their labels (the rows put in the first
    one's order; before 2026-12-05 the moderators were paired by position), arrays by position.
    An intercept is always included. ``vcov``: full k×k sampling covariance (diagonal ``ses²``).
    ``vcov_unshrunk``: the covariance before the off-diagonal shrinkage that gave ``vcov``;
    ``Var(β̂)`` adds the positive part of ``L(vcov_unshrunk − vcov)L'`` (module docstring).
    ``labels``: one per estimate (school ids; default 1..k), kept as :attr:`MetaRegression.labels`;
    the pandas labels of the rows as :attr:`MetaRegression.index`.
    """
    check_method(method, vcov is not None)
    estimates, ses, moderators = paired(("estimates", "ses", "moderators"), estimates, ses, moderators)
    index = index_of(estimates, ses, moderators)
    y, se = check_inputs(estimates, ses)
    v = se**2
    k = y.size
    M, mod_names = _moderator_matrix(moderators, k, names)
    if labels is not None and len(labels) != k:
        raise DataError(f"labels has {len(labels)} entries for {k} estimates")
    X = np.column_stack([np.ones(k), M])
    p = X.shape[1]
    if k - p < 1:
        raise DesignError(f"meta-regression with {p - 1} moderator(s) needs more than {p} schools; got {k}")
    redundant = _redundant(X)  # (before 2026-12-05 numpy's matrix_rank, whose tolerance a moderator 1e-9 off passed)
    if redundant:
        raise DesignError(_rank_message(X, mod_names, redundant))
    y0, X0 = y, X
    V = None if vcov is None else check_vcov(vcov, se)
    if vcov_unshrunk is not None and V is None:
        raise DataError("vcov_unshrunk needs vcov (the shrunk covariance the analysis uses)")
    V0 = None if vcov_unshrunk is None else check_vcov(vcov_unshrunk, se, "vcov_unshrunk")
    if V is not None:
        y, v, X, Q = rotate(y, V, X)  # λ ascending: the weights come heaviest first
    else:  # heaviest first, the order of the QR (_tau2.weighted_qr) at every τ²
        o = np.argsort(v, kind="stable")
        y, v, X = y[o], v[o], X[o]

    def fit_tau2(Xm):
        return _tau2.estimate_tau2(method, y, v, Xm)

    tau2, tau2_se = fit_tau2(X)
    tau2_null = fit_tau2(X[:, :1])[0]
    w, beta, A, r = _tau2.wls_pieces(y, v, X, tau2)
    df = math.inf
    vcov = A
    if knapp_hartung:
        vcov = A * float(w @ r**2) / (k - p)
        df = float(k - p)
    offdiag = None
    if V0 is not None:
        offdiag = offdiag_vcov(A @ (X * w[:, None]).T @ Q.T, V0, V)
        vcov = vcov + offdiag
    se_b = np.sqrt(np.diag(vcov))
    dist = stats.norm if not np.isfinite(df) else stats.t(df)
    crit = dist.ppf(0.5 + level / 2)
    stat = beta / se_b
    coef = pd.DataFrame(
        {
            "estimate": beta,
            "se": se_b,
            "statistic": stat,
            "pvalue": 2 * dist.sf(np.abs(stat)),
            "ci_low": beta - crit * se_b,
            "ci_high": beta + crit * se_b,
        },
        index=pd.Index(["intercept", *mod_names], name="term"),
    )
    m = p - 1
    if m:
        bm = beta[1:]
        qm = float(bm @ np.linalg.solve(vcov[1:, 1:], bm))
        if knapp_hartung:
            qm /= m
            qm_p = float(stats.f.sf(qm, m, k - p))
            qm_dist = f"F({m}, {k - p})"
        else:
            qm_p = float(stats.chi2.sf(qm, m))
            qm_dist = f"chi2({m})"
    else:
        qm, qm_p, qm_dist = math.nan, math.nan, "none"

    qe = _tau2.generalized_q(y, v, X, 0.0)
    s2 = (k - p) / _tau2.fe_trace_p(v, X)
    r2 = max(0.0, (tau2_null - tau2) / tau2_null) if tau2_null > 0 else 0.0
    return MetaRegression(
        method=method,
        k=k,
        coefficients=coef,
        vcov=vcov,
        df=df,
        tau2=float(tau2),
        tau2_se=float(tau2_se),
        tau2_ci=_tau2.q_profile_ci(y, v, X, level),
        tau2_null=float(tau2_null),
        r2=float(r2),
        i2=float(100 * tau2 / (tau2 + s2)),
        qe=qe,
        qe_df=k - p,
        qe_pvalue=float(stats.chi2.sf(qe, k - p)),
        qm=qm,
        qm_df=m,
        qm_pvalue=qm_p,
        qm_distribution=qm_dist,
        knapp_hartung=bool(knapp_hartung),
        level=float(level),
        estimates=_readonly(y0),
        ses=_readonly(se),
        design=_readonly(X0),
        sampling_vcov=None if V is None else _readonly(V),
        vcov_offdiag=None if offdiag is None else _readonly(offdiag),
        labels=tuple(labels) if labels is not None else tuple(range(1, k + 1)),
        index=index,
    )


def offdiag_vcov(L: np.ndarray, V_unshrunk: np.ndarray, V: np.ndarray) -> np.ndarray:
    """The positive part of ``L(V_unshrunk − V)L'``: the covariance of the linear combinations
    ``Ly`` carried by what shrinking ``V_unshrunk``'s off-diagonal to ``V`` removed, its negative
    eigenvalues set to 0 so that no combination's variance is lowered (for one row,
    :func:`.meta.offdiag_variance`)."""
    M = L @ (V_unshrunk - V) @ L.T
    e, E = np.linalg.eigh((M + M.T) / 2)
    return (E * np.clip(e, 0.0, None)) @ E.T


__all__ = ["meta_regression", "MetaRegression", "offdiag_vcov"]
