"""Empirical-Bayes shrinkage of school effects toward the pooled mean.

Under the random-effects model ``y_i | θ_i ~ N(θ_i, v_i)``, ``θ_i ~ N(μ, τ²)``, the best
linear unbiased predictor of school i's true effect, with μ and τ² replaced by their
estimates, is (Raudenbush & Bryk 2002, eq. 3.56; Morris 1983)

    θ̃_i = μ̂ + B_i (y_i − μ̂),     B_i = τ̂² / (τ̂² + v_i)

(``B_i`` is the reliability of school i's estimate; 1 − B_i is its shrinkage). Its
posterior (prediction-error) variance, including the uncertainty of μ̂ but treating τ̂² as
known (as metafor's ``blup()`` and MixedLM do), is

    Var(θ_i − θ̃_i) = B_i v_i + (1 − B_i)² Var(μ̂),   Var(μ̂) = 1 / Σ_j (v_j + τ̂²)^{-1}.

Small, noisy schools (large v_i) are pulled hardest toward μ̂, so a school's shrunken
estimate is a better guess of its true effect than its raw estimate (lower mean squared
error summed over schools, James & Stein 1961) — but shrinkage reorders schools of
different size, and **ranks remain very uncertain**: see :meth:`Shrinkage.rank_intervals`.

With correlated estimates (``y ~ N(θ, V)``, the meta-analysis run with ``vcov=V``) the BLUP
is ``θ̃ = μ̂1 + τ̂²W(y − μ̂1)``, ``W = (V + τ̂²I)⁻¹`` (Henderson 1975; metafor's ``blup`` for
``rma.mv``), and its prediction-error covariance

    Var(θ − θ̃) = τ̂²I − τ̂⁴W + (I − τ̂²W)11'(I − τ̂²W)' / (1'W1),

whose diagonal is the formula above when V is diagonal (``B_i = τ̂²w_i``). ``reliability``
is then the diagonal of ``τ̂²W``.

Both treat τ̂² as known, and with few schools the intervals ``θ̃ ± z·SD`` then cover less than
stated (about 88% at a nominal 95% with 15 schools in pleval's simulation study). With
``tau2_uncertainty=True`` (what :func:`~.school_effects.school_effects` uses) pleval uses the
second-order mean-squared-error estimate of Prasad & Rao (1990), which Datta & Lahiri (2000)
show holds for REML: ``g₁(τ̂²) + g₂(τ̂²) + 2g₃``, with ``g₁ + g₂`` the variance above and ``g₃`` the
Kackar & Harville (1984) term for the estimated τ² in Prasad & Rao's form: the squared derivative
``∂θ̃/∂τ² = (I − τ²W)W(y − μ1)`` replaced by its expectation over ``y − μ1 ~ N(0, V + τ²I)``,
times ``Var(τ̂²)``:

    g₃ = diag((I − τ̂²W) W (I − τ̂²W)) Var(τ̂²),

``v_i²/(τ̂² + v_i)³ Var(τ̂²)`` when V is diagonal, ``(Q∘Q)(λ²/(λ + τ̂²)³) Var(τ̂²)`` for
``V = QΛQ'``; ``Var(τ̂²)`` the REML inverse Fisher information (:func:`tau2_variance`: ML's own;
the REML one at the method's τ̂² for DL, PM, EB, HE, SJ, HS, which before 2026-12-05 got no g₃;
0 for FE). g₃ counts twice because ``g₁(τ̂²)``
underestimates ``g₁(τ²)`` by about g₃. 15 independent schools (SEs 0.06–0.16, τ = 0.05–0.15):
coverage 92.9–95.4% against 82.6–91.9% with τ̂² taken as known
(``benchmarks/sim_shrunken_cover.py``). Before 2026-12-05 g₃ was the squared derivative at the
observed y, ``(v_i w_i² (y_i − μ̂))² Var(τ̂²)``, 0 for a school at μ̂ (91.3–94.1% there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from . import _tau2
from .meta import MetaAnalysis, Method, _readonly, check_inputs, meta_analysis, rotate


@dataclass(frozen=True, repr=False)
class Shrinkage(ResultMixin):
    """Result of :func:`empirical_bayes` (immutable arrays, one entry per school)."""

    estimates: np.ndarray
    ses: np.ndarray
    shrunk: np.ndarray
    shrunk_sd: np.ndarray
    reliability: np.ndarray
    mu: float
    mu_var: float
    tau2: float
    method: str
    level: float
    labels: tuple

    @property
    def ci_low(self) -> np.ndarray:
        return self.shrunk - stats.norm.ppf(0.5 + self.level / 2) * self.shrunk_sd

    @property
    def ci_high(self) -> np.ndarray:
        return self.shrunk + stats.norm.ppf(0.5 + self.level / 2) * self.shrunk_sd

    @property
    def prob_negative(self) -> np.ndarray:
        """Posterior probability that a school's true effect is below zero, ``Φ(−θ̃_i / SD_i)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return stats.norm.cdf(-self.shrunk / self.shrunk_sd)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "label": list(self.labels),
                "estimate": self.estimates,
                "se": self.ses,
                "reliability": self.reliability,
                "shrunk": self.shrunk,
                "shrunk_sd": self.shrunk_sd,
                "shrunk_ci_low": self.ci_low,
                "shrunk_ci_high": self.ci_high,
                "prob_negative": self.prob_negative,
            }
        )

    def summary(self) -> str:
        raw_sd = float(np.std(self.estimates, ddof=1)) if self.estimates.size > 1 else float("nan")
        eb_sd = float(np.std(self.shrunk, ddof=1)) if self.shrunk.size > 1 else float("nan")
        return "\n".join(
            [
                f"Empirical-Bayes shrinkage toward the pooled mean ({self.method}), k = {self.estimates.size}",
                f"  pooled mean {self.mu:.4f}; tau = {np.sqrt(self.tau2):.4f}",
                f"  SD of raw estimates {raw_sd:.4f} -> SD of shrunken estimates {eb_sd:.4f}",
                f"  reliability B = tau²/(tau² + SE²): median {np.median(self.reliability):.3f} "
                f"(range {self.reliability.min():.3f} to {self.reliability.max():.3f})",
                "  Ranks of schools are uncertain: see rank_intervals().",
            ]
        )

    def rank_intervals(self, n_draws: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
        """Simulated rank (1 = largest effect) of each school under its posterior.

        Draws ``θ_i ~ N(θ̃_i, SD_i²)`` independently (ignoring the small correlation through
        μ̂) and ranks each draw; returns the median rank and the central ``level`` interval,
        and the mean rank with its Monte Carlo SE ``sd(rank)/√n_draws`` (with the default 2,000
        draws, under 0.025 of the rank's posterior SD: other seeds move it by far less than its
        uncertainty). Wide intervals are the rule: a school's place in a league table is rarely
        known.
        """
        rng = np.random.default_rng(seed)
        k = self.shrunk.size
        draws = self.shrunk + self.shrunk_sd * rng.standard_normal((n_draws, k))
        ranks = np.empty((n_draws, k), dtype=np.int32)
        order = np.argsort(-draws, axis=1)
        np.put_along_axis(ranks, order, np.arange(1, k + 1, dtype=np.int32)[None, :], axis=1)
        a = (1 - level) / 2
        lo, med, hi = np.quantile(ranks, [a, 0.5, 1 - a], axis=0)
        point = np.empty(k, dtype=int)
        point[np.argsort(-self.shrunk)] = np.arange(1, k + 1)
        return pd.DataFrame(
            {"label": list(self.labels), "rank": point, "rank_median": med, "rank_low": lo, "rank_high": hi,
             "rank_mean": ranks.mean(axis=0), "rank_mean_mc_se": ranks.std(axis=0, ddof=1) / np.sqrt(n_draws)}
        )


def blup(y: np.ndarray, V: np.ndarray | None, tau2: float, tau2_var: float = 0.0, eigen: tuple | None = None):
    """BLUP with correlated sampling errors (module docstring): ``(μ̂, Var μ̂, θ̃, SD(θ − θ̃),
    diag τ²W)`` for ``y ~ N(μ1 + u, V)``, ``u ~ N(0, τ²I)``; ``tau2_var`` (``Var(τ̂²)``) adds
    Prasad–Rao's 2g₃ for an estimated τ², ``g₃ = (Q∘Q)(λ²d³) Var(τ̂²)`` (module docstring).
    ``eigen``: ``(λ, Q)`` of ``V`` when already known (``V`` then unused). With
    ``W = Q(Λ + τ²I)⁻¹Q'`` every quantity is a product of ``W`` with a vector,
    ``Wv = Q(d ∘ Q'v)``, ``d = 1/(λ + τ²)``, and ``diag W = (Q∘Q)d``: O(k²), W itself (k³) is
    not formed. The prediction error variance ``PEV = τ² − τ⁴ diag W + c² Var μ̂``,
    ``c = (I − τ²W)1``."""
    lam, Q = np.linalg.eigh(V) if eigen is None else eigen
    d = 1.0 / (lam + tau2)

    def W(v):  # W v
        return Q @ (d * (Q.T @ v))

    W1 = W(np.ones(y.size))
    mu_var = 1.0 / float(W1.sum())
    mu = float(W1 @ y) * mu_var
    Wr = W(y - mu)
    shrunk = mu + tau2 * Wr
    c = 1.0 - tau2 * W1
    QQ = Q * Q
    diag_w = QQ @ d
    pev = tau2 - tau2**2 * diag_w + c * c * mu_var
    if tau2_var > 0:  # 2g₃: diag((I − τ²W)W(I − τ²W)) = (Q∘Q)(λ²d³), as I − τ²W = Q diag(λd) Q'
        pev = pev + 2.0 * (QQ @ (lam**2 * d**3)) * tau2_var
    return mu, mu_var, shrunk, np.sqrt(np.clip(pev, 0.0, None)), tau2 * diag_w


def tau2_variance(meta: MetaAnalysis, eigen: tuple | None = None) -> float:
    """``Var(τ̂²)`` for the Prasad–Rao term (module docstring): ``meta.tau2_se²`` where the estimator
    has one (REML, ML: their inverse Fisher information); for DL, PM, EB, HE, SJ and HS the REML
    inverse information ``2/tr PP`` at the method's τ̂² (metafor's ``se.tau2`` of REML, in the
    rotated model when ``meta`` has a covariance; ``eigen`` its ``(λ, Q)`` when known); 0 for FE,
    which takes τ² = 0 as known."""
    if np.isfinite(meta.tau2_se):
        return float(meta.tau2_se) ** 2
    if meta.method == "FE":
        return 0.0
    X = np.ones((meta.k, 1))
    if meta.vcov is None:
        return _tau2.reml_se(meta.estimates, meta.ses**2, X, meta.tau2) ** 2
    yy, lam, XX, _ = rotate(meta.estimates, meta.vcov, X, eigen)
    return _tau2.reml_se(yy, lam, XX, meta.tau2) ** 2


def empirical_bayes(
    estimates,
    ses,
    meta: MetaAnalysis | None = None,
    *,
    method: Method = "REML",
    level: float = 0.95,
    labels: Sequence | None = None,
    vcov=None,
    tau2_uncertainty: bool = False,
    vcov_eigen: tuple | None = None,
) -> Shrinkage:
    """Shrink school estimates toward the pooled mean (formulas in the module docstring).

    ``meta`` supplies μ̂ and τ̂² (a :class:`MetaAnalysis` of the same estimates); otherwise
    :func:`meta_analysis` is run with ``method`` (and ``vcov``, a full sampling covariance).
    ``tau2_uncertainty`` uses the Prasad–Rao mean squared error for the estimated τ² (2g₃ added,
    ``Var(τ̂²)`` by :func:`tau2_variance`: every estimator but FE; before 2026-12-05 REML and ML
    only, the others' intervals silently treating τ̂² as known). ``vcov_eigen``: ``(λ, Q)``,
    :func:`numpy.linalg.eigh` of the covariance (``vcov``, or ``meta``'s), when already computed.
    """
    y, se = check_inputs(estimates, ses)
    if meta is None:
        meta = meta_analysis(y, se, method=method, level=level, vcov=vcov, vcov_eigen=vcov_eigen)
    elif meta.k != y.size or not np.allclose(meta.estimates, y):
        raise ValueError("meta must be the meta-analysis of these same estimates")
    v = se**2
    tau2 = meta.tau2
    t2var = tau2_variance(meta, vcov_eigen) if tau2_uncertainty else 0.0
    if meta.vcov is None:
        B = tau2 / (tau2 + v)
        w = 1.0 / (v + tau2)
        mu = float(w @ y / w.sum())
        mu_var = 1.0 / float(w.sum())
        shrunk = mu + B * (y - mu)
        sd = np.sqrt(B * v + (1.0 - B) ** 2 * mu_var + 2.0 * v**2 * w**3 * t2var)
    else:
        mu, mu_var, shrunk, sd, B = blup(y, meta.vcov, tau2, t2var, eigen=vcov_eigen)
    return Shrinkage(
        estimates=_readonly(y),
        ses=_readonly(se),
        shrunk=_readonly(shrunk),
        shrunk_sd=_readonly(sd),
        reliability=_readonly(B),
        mu=mu,
        mu_var=mu_var,
        tau2=float(tau2),
        method=meta.method,
        level=float(level),
        labels=tuple(labels) if labels is not None else meta.labels,
    )


__all__ = ["empirical_bayes", "Shrinkage", "blup", "tau2_variance"]
