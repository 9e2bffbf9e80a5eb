"""Between-school variance from the unweighted Q, robust to noise in an estimated V.

Model: ``y ~ N(μ1, V + τ²I)`` (m schools). The weighted generalized ``Q(τ²) = r'(V + τ²I)⁻¹r``
behind REML and the Q-profile interval is χ²(m − 1) only when V is known. With an *estimated*
V (a cluster-robust matrix, each diagonal entry resting on a few dozen clusters) its weights
are noisy, and ``E[e²/V̂] > 1`` even when ``E[V̂] = V`` (Jensen's inequality; ``d/(d − 2)`` for a
V̂ on d degrees of freedom): every term of Q is inflated by the same few percent, and with
200 schools a few percent is a whole standard deviation of Q, read as spurious spread
(Kulinskaya, Dollinger & Bjørkestøl 2011 show the χ² reference of Q failing for this reason).

The **unweighted** statistic ``Q₁ = y'My = Σ_j (y_j − ȳ)²``, ``M = I − 11'/m``, is linear in the
data's covariance: ``E[Q₁] = tr(MV) + (m − 1)τ²``, so an unbiased V̂ gives an unbiased moment
equation whatever its noise. Its exact distribution for a given V: ``MVM`` and ``M`` commute,
so on the ``m − 1`` dimensions orthogonal to 1 they share eigenvectors and

    Q₁ ~ Σ_{i=1}^{m−1} (β_i + τ²) χ²₁,    β the eigenvalues of MVM on 1⊥

(Biggerstaff & Jackson 2008 for Cochran's Q; Jackson 2013 for generalized Cochran statistics
with arbitrary fixed weights, here all 1). pleval uses

* the estimate ``τ̂² = max(0, (Q₁ − Σβ)/(m − 1))`` — Hedges' (1983) unweighted method of
  moments, ``(RSS − tr((I − H)V))/(m − 1)`` (DerSimonian & Kacker 2007), with
  ``SE = √(2 Σ(β_i + τ̂²)²)/(m − 1)`` (``Var Q₁ = 2Σ(β_i + τ²)²``), positive at ``τ̂² = 0``;
* the confidence distribution ``H(τ²) = P_{τ²}(Q₁ > q)`` (increasing in τ²: adding ``τ²I``
  makes Q₁ stochastically larger), with an atom ``H(0)`` at 0; its ``α/2`` and ``1 − α/2``
  quantiles are the interval (test inversion, as the Q-profile; Jackson 2013);
* the tail of ``Σ c_i χ²₁`` by Pearson's (1959) three-moment approximation (Imhof 1961):
  with cumulant sums ``κ_r = Σ c_i^r``, ``h = κ₂³/κ₃²``,
  ``P(Q₁ > q) ≈ P(χ²_h > h + (q − κ₁)√(h/κ₂))`` — exact when all ``c_i`` are equal, and
  checked against Imhof's numerical inversion in the tests;
* the Fisher information of the moment estimator at ``τ²``, ``(m − 1)²/(2Σ(β_i + τ²)²)``, as
  its precision where estimates are combined (:mod:`._predictive`).

The price is efficiency when the schools' variances differ widely (the weighted estimator
then uses the precise schools better); with V known both are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special

from ._roots import bisect, bracket_above


def _chi2_sf(x: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``scipy.stats.chi2.sf(x, df)`` for ``df > 0``, the same floats without the distribution
    machinery (its argument checks and masks cost as much as the tail at the sizes bisection
    calls it with): ``scipy.special.chdtrc`` inside the support (0, ∞), 1 at or below 0, 0 at ∞."""
    with np.errstate(invalid="ignore"):
        out = special.chdtrc(df, x)
    out[x <= 0] = 1.0
    out[np.isposinf(x)] = 0.0
    return out


@dataclass(frozen=True)
class UnweightedQ:
    """``q = Q₁`` and the eigenvalues ``beta`` of MVM on 1⊥ (module docstring)."""

    q: float
    beta: np.ndarray

    @property
    def df(self) -> int:
        return self.beta.size

    @cached_property
    def _power_sums(self) -> tuple[float, float, float]:
        return float(self.beta.sum()), float((self.beta**2).sum()), float((self.beta**3).sum())

    def sf(self, tau2) -> np.ndarray:
        """``P_{τ²}(Q₁ > q)`` for each entry of ``tau2`` (Pearson's three-moment approximation).
        The cumulant sums ``κ_r = Σ(β_i + τ²)^r`` from the power sums ``S_r = Σβ_i^r`` by the
        binomial theorem (every term positive: no cancellation), so that each τ² costs O(1),
        not O(m)."""
        k1, k2, k3 = self._cumulant_sums(tau2)
        h = k2**3 / k3**2
        return _chi2_sf(h + (self.q - k1) * np.sqrt(h / k2), h)

    def _cumulant_sums(self, tau2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``κ_r = Σ(β_i + τ²)^r``, r = 1, 2, 3, at each entry of ``tau2`` (:meth:`sf`)."""
        t = np.atleast_1d(np.asarray(tau2, dtype=float))
        s1, s2, s3 = self._power_sums
        m = self.beta.size
        return (s1 + m * t, s2 + t * (2.0 * s1 + m * t), s3 + t * (3.0 * s2 + t * (3.0 * s1 + m * t)))

    def estimate(self) -> tuple[float, float]:
        """``(τ̂², SE)`` of Hedges' unweighted moment estimator (module docstring)."""
        t2 = max(0.0, (self.q - float(self.beta.sum())) / self.df)
        return t2, float(np.sqrt(2.0 * np.sum((self.beta + t2) ** 2)) / self.df)

    def information(self, tau2) -> np.ndarray:
        """``(m − 1)²/(2Σ(β_i + τ²)²)`` at each entry of ``tau2``."""
        return self.df**2 / (2.0 * self._cumulant_sums(tau2)[1])

    def quantiles(self, p, iters: int = 50) -> np.ndarray:
        """Quantiles at probabilities ``p`` of the confidence distribution ``H`` (module
        docstring): 0 where ``H(0) ≥ p``, else the root of ``H(τ²) = p``; bisection, all ``p`` at once."""
        p = np.atleast_1d(np.asarray(p, dtype=float))
        out = np.zeros(p.size)
        search = self.sf(0.0)[0] < p
        if not search.any():
            return out
        ps = p[search]  # only roots above 0 are searched (each p's bisection its own: the same floats)

        def below(t):
            return self.sf(t) < ps

        # H(τ²) → 1 as τ² → ∞: double until every root is bracketed
        hi = bracket_above(below, np.full(ps.size, max(self.q / self.df, float(self.beta.max()))),
                           np.zeros(ps.size, dtype=bool), 2.0)
        out[search] = bisect(below, np.zeros(ps.size), hi, iters)
        return out

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed interval: the ``(1 ∓ level)/2`` quantiles of the confidence distribution."""
        a = (1.0 - level) / 2.0
        lo, hi = self.quantiles([a, 1.0 - a])
        return float(lo), float(hi)


def unweighted_q(y, V) -> UnweightedQ:
    """``Q₁ = y'My`` and the eigenvalues of ``MVM`` on 1⊥ (module docstring)."""
    y = np.asarray(y, dtype=float)
    V = np.asarray(V, dtype=float)
    m = y.size
    r = y - y.mean()
    MV = V - V.mean(axis=0)[None, :]
    MVM = MV - MV.mean(axis=1)[:, None]
    beta = np.linalg.eigvalsh((MVM + MVM.T) / 2.0)[1:]  # the smallest is the 0 of the direction 1
    if m < 2 or not beta[0] > 0:
        raise ValueError("unweighted Q needs at least 2 estimates and a positive definite V")
    return UnweightedQ(q=float(r @ r), beta=beta)


__all__ = ["UnweightedQ", "unweighted_q"]
