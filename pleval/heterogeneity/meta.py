"""Random-effects meta-analysis of school (or study) estimates.

Model: ``y_i = μ + u_i + e_i``, ``u_i ~ N(0, τ²)`` (true school effects scatter around μ),
``e_i ~ N(0, v_i)`` with ``v_i = SE_i²`` treated as known.

* Fixed effect (``"FE"``): ``τ² = 0``; inverse-variance mean ``μ̂ = Σw_i y_i / Σw_i``,
  ``w_i = 1/v_i``, ``SE = (Σw_i)^{-1/2}``.
* Random effects: weights ``w*_i = 1/(v_i + τ̂²)``, ``μ̂ = Σw*_i y_i / Σw*_i``,
  ``SE = (Σw*_i)^{-1/2}``, with τ̂² by

  - ``"DL"`` DerSimonian & Laird (1986): ``max(0, (Q − (k−1)) / (Σw − Σw²/Σw))``;
  - ``"PM"`` Paule & Mandel (1982): the root of ``Σ w*_i (y_i − μ̂)² = k − 1``;
  - ``"REML"`` restricted maximum likelihood (Viechtbauer 2005): the global maximizer on
    τ² ≥ 0, by Fisher scoring checked against the likelihood at 0 and on a grid (:mod:`._tau2`);
  - ``"ML"`` maximum likelihood, ``"HE"`` Hedges, ``"HS"`` Hunter–Schmidt, ``"SJ"``
    Sidik–Jonkman and ``"EB"`` empirical Bayes (= PM), as metafor's ``rma(method=...)``
    (formulas in :mod:`._tau2`). Standard errors of τ̂² are reported for REML and ML.

  PM is solved by bracketing root-finding on the monotone generalized Q: statsmodels'
  ``combine_effects`` PM Newton iteration resets τ² to 0 whenever a step overshoots the root,
  which returns 0 for some heterogeneous data.
* Cochran's ``Q = Σw_i (y_i − μ̂_FE)²`` ~ χ²(k − 1) under homogeneity, from the centred
  residuals, and the DL denominator ``Σw − Σw²/Σw = Σ_i w_i(1 − h_i)``, ``h_i = w_i/Σw``, with the
  heaviest school's ``1 − h_i`` from the QR's complement (:func:`._tau2.fe_trace_p`): the textbook
  ``Σwy² − (Σwy)²/Σw`` and ``Σw − Σw²/Σw`` cancel when the estimates are far from 0 or one SE is
  tiny (statsmodels' ``combine_effects``, used for Q and DL before 2026-12-04).
* Hartung & Knapp (2001) / Sidik & Jonkman (2002): ``SE²_HK = Σw*_i (y_i − μ̂)² /
  ((k − 1) Σw*_i)`` with a t(k − 1) reference (not truncated, as metafor's ``test="knha"``).
* τ² confidence interval: Q-profile (Viechtbauer 2007); for ``"FE"`` it is reported for
  information only.
* I² and H² (Higgins & Thompson 2002). For the random-effects methods pleval follows
  metafor: ``I² = τ̂² / (τ̂² + s²)``, ``H² = (τ̂² + s²)/s²`` with the "typical" within-school
  variance ``s² = (k − 1)Σw / ((Σw)² − Σw²)``; for DL this equals ``(Q − (k−1))/Q``. For
  ``"FE"`` it is the Q-based ``max(0, (Q − (k−1))/Q)``, ``H² = Q/(k−1)``. (statsmodels
  reports the Q-based value for every method.) Intervals for I² and H² map the τ² CI.
* Prediction interval for the true effect in a new school (Higgins, Thompson &
  Spiegelhalter 2009; Cochrane Handbook §10.10.4.3): ``μ̂ ± t_{k−2} √(τ̂² + SE²)``
  (``prediction="t"``, default), with t(k − 1) (``prediction="t_k1"``: metafor's interval
  with ``test="knha"``, which pairs with ``hartung_knapp=True``) or with a normal quantile
  (``prediction="normal"``, metafor's default). ``SE`` is the Hartung–Knapp SE when that is
  chosen, as in metafor.

**Correlated estimates** (``vcov=V``, a k×k sampling covariance, e.g. school estimates that
share comparison schools; :attr:`SchoolEffects.vcov`): the model becomes
``y ~ N(μ1, V + τ²I)`` and μ̂ its GLS estimate, as metafor's ``rma.mv(y, V, random = ~1|school)``.
pleval rotates by the eigen-decomposition ``V = QΛQ'``: ``ỹ = Q'y ~ N(μ Q'1, Λ + τ²I)`` is an
independent-errors meta-regression on the single column ``Q'1`` with known variances
``λ_i``, so REML, DL (method of moments: ``τ̂² = (Q − (k−1))/tr P``, ``Q = r'V⁻¹r``,
``P = V⁻¹ − V⁻¹1(1'V⁻¹1)⁻¹1'V⁻¹``), PM, the Q-profile CI, Hartung–Knapp and the prediction
interval are the formulas of :mod:`._tau2` applied to ``(ỹ, λ, Q'1)`` (Q, tr P and the
likelihood are invariant to the rotation). The typical within-school variance becomes
``s² = (k − 1)/tr P`` (equal to the expression above when V is diagonal); ``weights`` are the
GLS weights ``(1'W1)⁻¹ W1``, ``W = (V + τ̂²I)⁻¹`` (they can be negative).

**Covariance removed by regularization** (``vcov_unshrunk=V₀``): when ``V`` is a regularized
estimate whose off-diagonal was shrunk toward 0 (:attr:`SchoolEffects.vcov`, Schäfer & Strimmer
2005), the pooled estimate ``μ̂ = w̃'y`` (``w̃`` the GLS weights above, summing to 1) still varies
with the covariance the shrinkage removed, which neither the model variance ``(1'W1)⁻¹`` nor
the Hartung–Knapp factor can see: a component shared by all schools moves every estimate
together and leaves the residuals unchanged. Its cluster-robust estimate is put back into the
pooled SE only, ``SE² = SE²_(model or HK) + max(0, w̃'(V₀ − V)w̃)`` (a quadratic form in one
fixed linear combination, so the unshrunk matrix's noise averages out where it would not in
``V⁻¹``); τ², Q, I², the weights and the shrinkage keep ``V``. ``se2_offdiag`` holds the
term; with ``V₀ = V`` it is 0 and every figure is unchanged.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._align import floats, index_of, paired
from .._results import ResultMixin
from ..errors import DataError, DesignError, PlevalWarning
from . import _tau2

Method = Literal["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"]
METHODS = _tau2.TAU2_METHODS
PREDICTIONS = ("t", "t_k1", "normal")


def _readonly(a) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


def check_inputs(estimates, ses, *, min_k: int = 2, what: str = "school") -> tuple[np.ndarray, np.ndarray]:
    """Validate estimates and standard errors: same length, finite, SE > 0. Two pandas Series
    are paired by their labels (:func:`pleval._align.paired`: the SEs put in the estimates' order);
    Series whose labels differ are an error (pairing them by position would give one school's SE to
    another's estimate). Missing values of any kind (NaN, None, ``pd.NA``) are counted as missing."""
    estimates, ses = paired(("estimates", "ses"), estimates, ses)
    y = floats(estimates, "estimates").ravel()
    se = floats(ses, "ses").ravel()
    if y.shape != se.shape:
        raise DataError(f"estimates ({y.size}) and ses ({se.size}) must have the same length")
    bad_y = int((~np.isfinite(y)).sum())
    if bad_y:
        raise DataError(f"estimates: {bad_y} value(s) are missing or infinite; drop those {what}s first")
    bad_se = int((~np.isfinite(se) | (se <= 0)).sum())
    if bad_se:
        raise DataError(f"ses: {bad_se} value(s) are missing, infinite or not positive; every {what} needs SE > 0")
    if y.size < min_k:
        raise DesignError(f"a meta-analysis needs at least {min_k} {what}s; got {y.size}")
    return y, se


def check_vcov(vcov, se: np.ndarray, name: str = "vcov") -> np.ndarray:
    """A k×k sampling covariance (argument ``name``): finite, symmetric, diagonal = SE² (positive
    definiteness is checked where it is needed, by :func:`rotate`); returned symmetrized,
    ``(V + V')/2``, which is ``V`` itself when it is exactly symmetric (no k × k temporaries
    then)."""
    V = np.asarray(vcov, dtype=float)
    k = se.size
    if V.shape != (k, k):
        raise DataError(f"{name} must be {k}×{k} (one row and column per estimate); got shape {V.shape}")
    if not np.isfinite(V).all():
        raise DataError(f"{name} has missing or infinite entries; drop the schools without an estimate first")
    exact = np.array_equal(V, V.T)
    if not exact and not np.allclose(V, V.T, rtol=1e-10, atol=1e-14 * np.abs(V).max()):
        raise DataError(f"{name} must be symmetric")
    if not np.allclose(np.diag(V), se**2, rtol=1e-8, atol=0):
        raise DataError(f"the diagonal of {name} must equal ses²")
    return V if exact else (V + V.T) / 2


def rotate(y: np.ndarray, V: np.ndarray | None, X: np.ndarray, eigen: tuple | None = None):
    """``(Q'y, λ, Q'X, Q)`` for ``V = QΛQ'``: the rotated model has independent errors with
    variances λ (see the module docstring). Raises if V is not positive definite. ``eigen``:
    ``(λ, Q)`` when already known (:func:`numpy.linalg.eigh` of ``V``; ``V`` then unused:
    ``V + cI`` is ``(λ + c, Q)``)."""
    lam, Q = np.linalg.eigh(V) if eigen is None else eigen
    if not lam[0] > 1e-12 * lam[-1]:
        raise DesignError(
            "the sampling covariance of the school estimates is singular (some combination of schools has no "
            "sampling variance): too few clusters for the number of schools"
        )
    return Q.T @ y, lam, Q.T @ X, Q


@dataclass(frozen=True, repr=False)
class MetaAnalysis(ResultMixin):
    """Result of :func:`meta_analysis` (immutable).

    ``estimate``/``se``/``ci_*``/``pvalue`` describe the pooled effect μ̂ (``df`` = ``inf``
    for a z reference, ``k − 1`` with Hartung–Knapp). ``i2`` is a percentage.
    ``weights`` are the relative weights (%) of each school in μ̂. ``index``: the pandas labels
    of the rows when the estimates or SEs were pandas objects (the first one's index; None for
    arrays), by which :func:`~.robust.cluster_robust` pairs a pandas ``cluster``.
    """

    method: str
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    statistic: float
    pvalue: float
    df: float
    tau2: float
    tau2_se: float
    tau2_ci: tuple[float, float]
    i2: float
    i2_ci: tuple[float, float]
    h2: float
    h2_ci: tuple[float, float]
    q: float
    q_df: int
    q_pvalue: float
    pi_low: float
    pi_high: float
    hartung_knapp: bool
    level: float
    prediction: str
    i2_definition: str
    fe_estimate: float
    fe_se: float
    estimates: np.ndarray
    ses: np.ndarray
    weights: np.ndarray
    labels: tuple
    vcov: np.ndarray | None = None
    se2_offdiag: float = 0.0
    index: pd.Index | None = None

    @property
    def correlated(self) -> bool:
        """True when the analysis used a full sampling covariance (``vcov``)."""
        return self.vcov is not None

    @property
    def tau(self) -> float:
        return math.sqrt(self.tau2)

    @property
    def prob_negative_new(self) -> float:
        """Risk of harm for a new school like these: P(true effect < 0) under the prediction
        distribution, ``F(−μ̂ / √(τ̂² + SE²))`` with F the t(k − 2), t(k − 1) or normal reference of the
        prediction interval. NaN for ``"FE"``."""
        if self.method == "FE":
            return math.nan
        scale = math.sqrt(self.tau2 + self.se**2)
        if self.prediction == "t" and self.k < 3:
            return math.nan
        dist = {"t": stats.t(self.k - 2), "t_k1": stats.t(self.k - 1)}.get(self.prediction, stats.norm)
        return float(dist.cdf(-self.estimate / scale))

    @property
    def tau_ci(self) -> tuple[float, float]:
        return (math.sqrt(self.tau2_ci[0]), math.sqrt(self.tau2_ci[1]))

    def as_dict(self) -> dict:
        return {
            "method": self.method + (" + Hartung-Knapp" if self.hartung_knapp else ""),
            "k": self.k,
            "estimate": self.estimate,
            "se": self.se,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "pvalue": self.pvalue,
            "df": self.df,
            "tau2": self.tau2,
            "tau2_se": self.tau2_se,
            "tau2_ci_low": self.tau2_ci[0],
            "tau2_ci_high": self.tau2_ci[1],
            "tau": self.tau,
            "i2": self.i2,
            "i2_ci_low": self.i2_ci[0],
            "i2_ci_high": self.i2_ci[1],
            "h2": self.h2,
            "q": self.q,
            "q_df": self.q_df,
            "q_pvalue": self.q_pvalue,
            "pi_low": self.pi_low,
            "pi_high": self.pi_high,
            "prob_negative_new": self.prob_negative_new,
            "level": self.level,
        }

    @classmethod
    def nan_dict(cls, k: int) -> dict:
        """:meth:`as_dict`'s keys for a group that cannot be pooled (fewer than 2 schools): NaN
        except ``k``, so tables keep their columns."""
        nan = math.nan
        kw = {f.name: nan for f in fields(cls)}
        kw.update(method="", k=k, tau2_ci=(nan, nan), i2_ci=(nan, nan), h2_ci=(nan, nan), hartung_knapp=False,
                  prediction="", estimates=np.empty(0), ses=np.empty(0), weights=np.empty(0), labels=(), vcov=None,
                  index=None)
        return cls(**kw).as_dict()

    def to_frame(self) -> pd.DataFrame:
        """One row of every pooled statistic."""
        return pd.DataFrame([self.as_dict()])

    def studies_frame(self) -> pd.DataFrame:
        """One row per school: estimate, SE, its own CI and its weight (%) in the pooled mean."""
        crit = stats.norm.ppf(0.5 + self.level / 2)
        return pd.DataFrame(
            {
                "label": list(self.labels),
                "estimate": self.estimates,
                "se": self.ses,
                "ci_low": self.estimates - crit * self.ses,
                "ci_high": self.estimates + crit * self.ses,
                "weight_pct": self.weights,
            }
        )

    def summary(self) -> str:
        lv = f"{self.level:.0%}"
        ref = f"t({self.df:.0f})" if np.isfinite(self.df) else "z"
        hk = " with Hartung-Knapp SE" if self.hartung_knapp else ""
        lines = [
            f"Meta-analysis ({_METHOD_NAMES[self.method]}{hk}{', correlated estimates (GLS with V + tau²I)' if self.correlated else ''}), k = {self.k}",
            f"  pooled effect  {self.estimate:.4f}  (SE {self.se:.4f}; {lv} CI {self.ci_low:.4f} to "
            f"{self.ci_high:.4f}; p = {self.pvalue:.3g}, {ref})",
        ]
        if self.se2_offdiag > 0:
            lines.append(f"  SE² includes {self.se2_offdiag:.3g} for the between-school covariance the regularization of V removed")
        if self.method != "FE":
            se = f", SE {self.tau2_se:.4f}" if np.isfinite(self.tau2_se) else ""
            lines += [
                f"  tau²           {self.tau2:.4f}{se}  ({lv} Q-profile CI {self.tau2_ci[0]:.4f} to {self.tau2_ci[1]:.4f})",
                f"  tau            {self.tau:.4f}  (SD of true effects across schools)",
            ]
        lines += [
            f"  I²             {self.i2:.2f}%  ({self.i2_definition})",
            f"  H²             {self.h2:.4f}",
            f"  Q({self.q_df})          {self.q:.4f}  (p = {self.q_pvalue:.3g}; test of no heterogeneity)",
        ]
        if self.method != "FE":
            lines.append(
                f"  {lv} prediction interval for a new school: {self.pi_low:.4f} to {self.pi_high:.4f} "
                f"({_PREDICTION_NAMES[self.prediction]}); P(effect < 0) for a new school {self.prob_negative_new:.2f}"
            )
        return "\n".join(lines)


_METHOD_NAMES = {
    "FE": "fixed effect, inverse variance",
    "DL": "random effects, DerSimonian-Laird",
    "PM": "random effects, Paule-Mandel",
    "REML": "random effects, REML",
    "ML": "random effects, ML",
    "EB": "random effects, empirical Bayes",
    "HE": "random effects, Hedges",
    "SJ": "random effects, Sidik-Jonkman",
    "HS": "random effects, Hunter-Schmidt",
}
_PREDICTION_NAMES = {"t": "t(k-2)", "t_k1": "t(k-1)", "normal": "normal"}


def check_method(method: str, correlated: bool) -> None:
    """Raise a DataError for an unknown estimator or one not defined with a full ``vcov``."""
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}; got {method!r}")
    if correlated and method not in _tau2.VCOV_METHODS:
        raise DataError(
            f"method {method!r} needs independent estimates; with a full sampling covariance (vcov) use one of "
            f"{_tau2.VCOV_METHODS}"
        )


def typical_variance(v: np.ndarray) -> float:
    """Higgins & Thompson's typical within-study variance ``s² = (k−1)Σw / ((Σw)² − Σw²)``
    ``= (k − 1)/(Σw − Σw²/Σw)``, the denominator by :func:`._tau2.fe_trace_p` (no cancellation)."""
    return (v.size - 1) / _tau2.fe_trace_p(v, np.ones((v.size, 1)))


HK_SMALL = 0.25
"""A Hartung–Knapp factor ``q = Σw*(y − μ̂)²/(k − 1)`` below this (its SE under half the standard
random-effects SE) is warned of: the estimates agree more closely than their SEs imply, and the
untruncated Hartung–Knapp SE (metafor's ``test="knha"``) can then be far too small (Röver et al.
2015; Jackson et al. 2017). At 0 (identical estimates) the standard SE is used (the factor
truncated at 1, metafor's ``test="adhoc"``)."""


def _hk_small_message(factor: float, se2: float) -> str:
    se_re = math.sqrt(se2)
    if factor <= 0:
        return (f"Hartung–Knapp: the school estimates are identical (factor 0), so its SE would be 0; the standard "
                f"random-effects SE {se_re:.4g} is used (the factor truncated at 1)")
    return (f"Hartung–Knapp: the school estimates agree more closely than their SEs imply (factor {factor:.3g}); its "
            f"SE {math.sqrt(se2 * factor):.4g} is under half the standard random-effects SE {se_re:.4g}, and the "
            "interval may be too narrow; --no-hartung-knapp (hartung_knapp=False) gives the standard one")


def meta_analysis(
    estimates,
    ses,
    method: Method = "REML",
    *,
    hartung_knapp: bool = False,
    level: float = 0.95,
    prediction: Literal["t", "t_k1", "normal"] = "t",
    labels: Sequence | None = None,
    vcov=None,
    vcov_unshrunk=None,
    vcov_eigen: tuple | None = None,
) -> MetaAnalysis:
    """Pool per-school estimates with a fixed- or random-effects model.

    Parameters
    ----------
    estimates, ses : array-like
        School estimates and their standard errors (``v_i = SE_i²``, treated as known); two
        pandas Series are paired by label (docs/api.md, "Several vectors"), arrays by position.
        The fit keeps the pandas labels of its rows (:attr:`MetaAnalysis.index`).
    method : {"REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"}
        Estimator of the between-school variance τ² (``"FE"``: τ² = 0); with ``vcov`` every
        one but ``"HS"``.
    hartung_knapp : bool
        Hartung–Knapp–Sidik–Jonkman SE and t(k − 1) reference for μ̂.
    level : float
        Confidence level of every interval.
    prediction : {"t", "t_k1", "normal"}
        Reference distribution of the prediction interval: t(k − 2) (Higgins et al. 2009),
        t(k − 1) (metafor with ``test="knha"``) or normal (metafor's default).
    labels : sequence, optional
        School names (one per estimate), kept for tables and forest plots.
    vcov : array (k, k), optional
        Full sampling covariance of the estimates (diagonal ``ses²``): GLS with ``V + τ²I``.
    vcov_unshrunk : array (k, k), optional
        ``vcov`` before its off-diagonal was shrunk (same diagonal); the pooled SE adds
        ``max(0, w̃'(vcov_unshrunk − vcov)w̃)`` (module docstring). Needs ``vcov``.
    vcov_eigen : tuple, optional
        ``(λ, Q)``, :func:`numpy.linalg.eigh` of ``vcov``, when already computed (a caller that
        needs it again decomposes the k × k matrix once).

    Notes
    -----
    Formulas and sources are in the module docstring and ``docs/heterogeneity.md``.
    """
    check_method(method, vcov is not None)
    if prediction not in PREDICTIONS:
        raise DataError(f"prediction must be one of {PREDICTIONS}; got {prediction!r}")
    if not 0 < level < 1:
        raise DataError(f"level must lie strictly between 0 and 1; got {level!r}")
    index = index_of(estimates, ses)
    y, se = check_inputs(estimates, ses)
    v = se**2
    k = y.size
    labels = tuple(range(1, k + 1)) if labels is None else tuple(labels)
    if len(labels) != k:
        raise DataError(f"labels has {len(labels)} entries for {k} schools")
    X = np.ones((k, 1))
    alpha = 1.0 - level
    V = None if vcov is None else check_vcov(vcov, se)
    if vcov_unshrunk is not None and V is None:
        raise DataError("vcov_unshrunk needs vcov (the shrunk covariance the analysis uses)")
    V0 = None if vcov_unshrunk is None else check_vcov(vcov_unshrunk, se, "vcov_unshrunk")

    if V is None:  # heaviest first, the order of the QR (_tau2.weighted_qr) at every τ²
        o = np.argsort(v, kind="stable")
        yy, vv, XX = y[o], v[o], X
    else:  # λ ascending: the weights come heaviest first
        yy, vv, XX, Qrot = rotate(y, V, X, vcov_eigen)
    q = _tau2.generalized_q(yy, vv, XX, 0.0)
    tau2, tau2_se = _tau2.estimate_tau2(method, yy, vv, XX)

    w, beta, A, r = _tau2.wls_pieces(yy, vv, XX, tau2)
    mu = float(beta[0])
    gls_w = 1.0 / (v + tau2) if V is None else Qrot @ (XX[:, 0] * w)  # in the schools' order
    se2 = A[0, 0]
    df = math.inf
    if hartung_knapp:
        factor = float(w @ r**2) / (k - 1)
        if np.max(np.abs(r)) <= 1e-12 * max(1.0, float(np.max(np.abs(yy)))):  # identical estimates, but for rounding
            factor = 0.0
        if factor < HK_SMALL:
            warnings.warn(_hk_small_message(factor, se2), PlevalWarning, stacklevel=2)
        se2 *= factor if factor > 0 else 1.0
        df = float(k - 1)
    se2_offdiag = 0.0 if V0 is None else offdiag_variance(gls_w / gls_w.sum(), V0, V)
    se_mu = math.sqrt(se2 + se2_offdiag)
    dist = stats.norm if not np.isfinite(df) else stats.t(df)
    crit = dist.ppf(1 - alpha / 2)
    z = mu / se_mu
    pvalue = float(2 * dist.sf(abs(z)))

    tau2_ci = _tau2.q_profile_ci(yy, vv, XX, level)
    s2 = (k - 1) / _tau2.fe_trace_p(vv, XX)
    if method == "FE":
        i2 = 100.0 * max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
        h2 = q / (k - 1)
        i2_def = "Q-based: (Q - df)/Q"
    else:
        i2 = 100.0 * tau2 / (tau2 + s2)
        h2 = (tau2 + s2) / s2
        i2_def = "tau²/(tau² + s²), s² = typical within-school variance"
    i2_ci = tuple(100.0 * t / (t + s2) for t in tau2_ci)
    h2_ci = tuple((t + s2) / s2 for t in tau2_ci)

    if method == "FE":
        pi = (math.nan, math.nan)
    else:
        if prediction == "t":
            if k < 3:
                warnings.warn("prediction interval with t(k-2) needs k >= 3 schools; reported as NaN", PlevalWarning, stacklevel=2)
                pcrit = math.nan
            else:
                pcrit = stats.t.ppf(1 - alpha / 2, k - 2)
        elif prediction == "t_k1":
            pcrit = stats.t.ppf(1 - alpha / 2, k - 1)
        else:
            pcrit = stats.norm.ppf(1 - alpha / 2)
        half = pcrit * math.sqrt(tau2 + se_mu**2)
        pi = (mu - half, mu + half)

    _, b_fe, A_fe, _ = _tau2.wls_pieces(yy, vv, XX, 0.0)
    return MetaAnalysis(
        method=method,
        k=k,
        estimate=mu,
        se=se_mu,
        ci_low=float(mu - crit * se_mu),
        ci_high=float(mu + crit * se_mu),
        statistic=float(z),
        pvalue=pvalue,
        df=df,
        tau2=float(tau2),
        tau2_se=float(tau2_se),
        tau2_ci=(float(tau2_ci[0]), float(tau2_ci[1])),
        i2=float(i2),
        i2_ci=(float(i2_ci[0]), float(i2_ci[1])),
        h2=float(h2),
        h2_ci=(float(h2_ci[0]), float(h2_ci[1])),
        q=q,
        q_df=k - 1,
        q_pvalue=float(stats.chi2.sf(q, k - 1)),
        pi_low=float(pi[0]),
        pi_high=float(pi[1]),
        hartung_knapp=bool(hartung_knapp),
        level=float(level),
        prediction=prediction,
        i2_definition=i2_def,
        fe_estimate=float(b_fe[0]),
        fe_se=float(math.sqrt(A_fe[0, 0])),
        estimates=_readonly(y),
        ses=_readonly(se),
        weights=_readonly(100.0 * gls_w / gls_w.sum()),
        labels=labels,
        vcov=None if V is None else _readonly(V),
        se2_offdiag=float(se2_offdiag),
        index=index,
    )


def offdiag_variance(weights: np.ndarray, V_unshrunk: np.ndarray, V: np.ndarray) -> float:
    """``max(0, w'(V_unshrunk − V)w)``: the variance of the linear combination ``w'y`` carried by
    the covariance that shrinking ``V_unshrunk``'s off-diagonal to ``V`` removed (module
    docstring), floored at 0 so the correction never shortens an interval."""
    return max(0.0, float(weights @ (V_unshrunk - V) @ weights))


__all__ = ["meta_analysis", "MetaAnalysis", "METHODS", "PREDICTIONS", "check_method", "typical_variance", "check_inputs", "check_vcov", "rotate",
           "offdiag_variance"]
