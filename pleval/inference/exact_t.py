"""The exact distribution of a CR2 t statistic under its working model.

For a contrast ``c`` of a CR2 fit, ``c'β̂ = a'y`` and ``c'V̂c = Σ_g (q_g'y)²``
(:class:`pleval.inference.robust.CR2Blocks`). With ``y ~ N(Xβ, σ²Φ)`` and ``Φ`` the working
model, ``T = c'(β̂ − β)/√(c'V̂c)`` satisfies

    P(|T| > x) = P(F_x > 0),   F_x = (a'e)² − x² Σ_g (q_g'e)²,   e ~ N(0, Φ),

a quadratic form in normal variables, whose distribution follows from its eigenvalues by
Imhof's (1961) inversion of the characteristic function. Satterthwaite's approximation matches
two moments of ``c'V̂c`` to a scaled χ² and takes it independent of the estimate; with few
clusters dominating ``c'V̂c`` (two or three treated schools) it can be far off in either
direction, while this distribution is exact whenever the working model is true.

Computation. With ``P = Q'ΦQ = VΛV'`` (G × G, ``Q = [q_g]``), ``b = Q'Φa`` and
``β = a'Φa``, write ``α_j = (V'b)_j/√λ_j`` and ``α_⊥² = β − Σα_j²``; then
``F_x/σ² = (α'ξ)² − x²Σ_j λ_jξ_j²`` with ``ξ`` standard normal, and
``det(I − iuA_x) = Π_j(1 + iux²λ_j) · s(u)``, ``s(u) = 1 − iu[Σ_j α_j²/(1 + iux²λ_j) + α_⊥²]``
(the matrix determinant lemma). ``Im s(u) < 0`` for ``u > 0``, so its argument is continuous
and Imhof's integral

    P(F_x > 0) = 1/2 + (1/π) ∫_0^∞ sin θ(u) / (u ρ(u)) du,
    θ(u) = −½[Σ_j arctan(ux²λ_j) + arg s(u)],   ρ(u) = |det(I − iuA_x)|^{1/2},

costs O(G) per point after one tridiagonal reduction per contrast (:meth:`ExactT.from_gram`);
in ``v = ux²`` those O(G) sums do not depend on ``x``, so one grid of them serves a critical
value's whole root search and the p-value (:class:`_Grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import linalg, optimize, special, stats
from scipy.linalg import lapack

from ..errors import DesignError


@dataclass(frozen=True)
class ExactT:
    """The null distribution of ``|T|`` for one contrast (module docstring); ``lam`` the
    non-zero eigenvalues of ``Q'ΦQ``, ``alpha`` the estimate's coordinates on their vectors,
    ``alpha_perp2`` its remaining variance (all scaled so that ``a'Φa = 1``)."""

    lam: np.ndarray
    alpha: np.ndarray
    alpha_perp2: float

    @classmethod
    def from_gram(cls, beta: float, b: np.ndarray, P: np.ndarray) -> "ExactT":
        """From ``β = a'Φa``, ``b = Q'Φa`` and ``P = Q'ΦQ``. Only ``P``'s eigenvalues and ``b``'s
        squared coordinates on its eigenvectors enter, so no G × G eigenvectors are formed: the
        bordered matrix ``[[β, b'], [b, P]]`` is reduced to tridiagonal form by Householder
        reflections from its first column (LAPACK ``dsytrd``, lower), the first of which maps
        ``b`` to ``±‖b‖e₁`` and the rest leave that coordinate alone; so ``P = ZTZ'`` with
        ``Z'b = ±‖b‖e₁``, and with ``T = WΘW'`` (``eigh_tridiagonal``) the coordinates are
        ``‖b‖²W₁ⱼ²`` (Golub & Van Loan 2013, §8.3; 0.5 s against 0.9 s for ``eigh`` at G = 1,500)."""
        G = len(b)
        B = np.empty((G + 1, G + 1))
        B[0, 0], B[1:, 0], B[1:, 1:] = beta, b, (P + P.T) / 2.0
        _, d, e, _, info = lapack.dsytrd(B, lower=1, lwork=max(int(lapack.dsytrd_lwork(G + 1, lower=1)[0]), 1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dsytrd failed (info {info})")
        lam, W = linalg.eigh_tridiagonal(d[1:], e[1:])
        keep = lam > 1e-12 * max(float(lam.max()), 1e-300)
        if not beta > 0 or not keep.any() or float(lam.max()) <= 0:
            raise DesignError("the contrast or its CR2 variance estimate is identically 0: no t statistic")
        lam = lam[keep]
        alpha = abs(float(e[0])) * np.abs(W[0, keep]) / np.sqrt(lam)
        scale = 1.0 / beta
        perp = max(beta - float(alpha @ alpha), 0.0) * scale
        return cls(lam * scale, alpha * math.sqrt(scale), perp)

    def sf(self, x: float) -> float:
        """``P(|T| > x)``: Imhof's integral over ``t = log v``, ``v = ux²``, by the trapezoid rule,
        whose error falls as ``exp(−2πd/h)`` for an integrand analytic and bounded in the strip
        ``|Im t| < d`` (Trefethen & Weideman 2014; the singularities are at ``Im t = ±π/2``). The
        integrand's size in the strip grows with the number of comparable eigenvalues, so the step
        is ``h = 0.1·min(1, (100/n)^{1/2})`` with ``n = (Σλ)²/Σλ²``: within 10⁻¹³ of Student's t
        for up to 10,000 equal eigenvalues and of a step of 0.005 for spread ones. The range
        leaves out tails below e⁻⁴⁰ (:meth:`_upper`). In ``v`` the sums over eigenvalues do not
        depend on ``x`` (:class:`_Grid`): ``x`` in :data:`SHARED_RANGE` is integrated on one grid
        of them, formed once, so every further ``x`` costs O(grid) rather than O(grid × G)."""
        if x <= 0:
            return 1.0
        lo, hi = SHARED_RANGE
        return (self._shared if lo <= x <= hi else self._grid(x, x)).sf(x)

    @cached_property
    def _shared(self) -> "_Grid":
        return self._grid(*SHARED_RANGE)

    def _grid(self, x_lo: float, x_hi: float) -> "_Grid":
        """The grid in ``t = log v`` covering the ranges of every ``x`` in ``[x_lo, x_hi]``: each
        ``x``'s range in ``s = log u`` (start ``−log max(λx², 1) − 40``, end :meth:`_upper`)
        shifted by ``2 log x``; the start rises with ``x``, the end is that of ``x_lo`` or ``x_hi``
        (the bound on ``ρ`` is one of ``v``; its cap ``−log min(λx², 1) + 80`` rises with ``x``)."""
        def shifted(x):
            lx = self.lam * x * x
            return -math.log(max(float(lx.max()), 1.0)) - 40.0 + 2.0 * math.log(x), self._upper(lx) + 2.0 * math.log(x)

        start, end = shifted(x_lo)
        if x_hi != x_lo:
            end = max(end, shifted(x_hi)[1])
        h = 0.1 * min(1.0, math.sqrt(100.0 * float(np.sum(self.lam**2)) / float(np.sum(self.lam)) ** 2))
        return _Grid.of(self, np.arange(start, end, h), h)

    @staticmethod
    def _upper(lx: np.ndarray) -> float:
        """Where Imhof's integral over ``s = log u`` may stop. (Its start: ``|sin θ| ≤ |θ| ≤
        ½u(Σλx² + 1)``, so starting at ``−log max(λx², 1) − 40`` leaves out at most
        ``½(n + 1)e⁻⁴⁰``.) Its end: ``|integrand| ≤ 1/ρ(u)`` and, as the eigenvalues of
        ``A_x = α̃α̃' − x²diag(λ, 0)`` interlace those of ``−x²diag(λ, 0)``, all but one are at
        least the second-largest, third-largest, … ``x²λ`` in size, so
        ``log ρ ≥ L(s) = ¼Σ' log(1 + e^{2s}x⁴λ²)`` over all but the largest. ``L`` and ``L'`` rise
        with s; from the first s with ``L ≥ 40`` and ``L' ≥ ¼`` the tail is below ``4e⁻⁴⁰``. With
        one eigenvalue the bound is void and the range runs to ``−log min(λx², 1) + 80`` (the
        integrand falls as ``e^{−s}`` there)."""
        end = -math.log(min(float(lx.min()), 1.0)) + 80.0
        if lx.size < 2:
            return end
        log_rest = 2.0 * np.log(np.sort(lx)[:-1])

        def enough(s: float) -> bool:  # L ≥ 40 and L' ≥ ¼, in logs (no overflow)
            z = 2.0 * s + log_rest
            return 0.25 * float(np.logaddexp(0.0, z).sum()) >= 40.0 and 0.5 * float(special.expit(z).sum()) >= 0.25

        lo = -math.log(max(float(lx.max()), 1.0)) - 40.0
        if not enough(end):
            return end
        hi = end
        while hi - lo > 0.01:  # bisection; ``hi`` always satisfies the bound
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if enough(mid) else (mid, hi)
        return hi

    def critical(self, level: float = 0.95) -> float:
        """The ``x`` with ``P(|T| > x) = 1 − level``, found on one grid (:meth:`sf`): the shared
        one when the root lies in :data:`SHARED_RANGE`, else one covering the bracket found by
        doubling (or halving) its ends."""
        alpha = 1.0 - level
        lo, hi = SHARED_RANGE
        grid = self._shared
        if grid.sf(hi) > alpha:
            while self.sf(hi) > alpha:
                lo, hi = hi, 2.0 * hi
                if hi > 1e8:
                    return math.inf
            grid = self._grid(lo, hi)
        elif grid.sf(lo) < alpha:
            while self.sf(lo) < alpha:
                lo, hi = lo / 2.0, lo
                if lo < 1e-8:
                    return 0.0
            grid = self._grid(lo, hi)
        return float(optimize.brentq(lambda x: grid.sf(x) - alpha, lo, hi, xtol=1e-12, rtol=1e-12))


SHARED_RANGE = (0.25, 256.0)
"""The ``x`` whose :meth:`ExactT.sf` is integrated on one shared grid (p-values and critical
values of practical size); outside it each ``x`` has a grid of its own."""


@dataclass(frozen=True)
class _Grid:
    """Imhof's integrand's sums over eigenvalues on the grid ``t`` (``v = e^t = ux²``, ``λv = uλx²``):
    ``S1 = vΣα²λv/(1 + λ²v²)`` and ``S2 = v(Σα²/(1 + λ²v²) + α_⊥²)``, so ``s(u) = 1 − (S1 +
    iS2)/x²``; ``A = Σ arctan λv`` and ``L = Σ log(1 + λ²v²)``, so ``θ = −½(A + arg s)`` and
    ``log ρ = ¼(L + log|s|²)``."""

    h: float
    s1: np.ndarray
    s2: np.ndarray
    arc: np.ndarray
    log_det: np.ndarray

    @classmethod
    def of(cls, ref: ExactT, t: np.ndarray, h: float) -> "_Grid":
        v = np.exp(t)
        lv = v[:, None] * ref.lam[None, :]
        den = 1.0 + lv**2
        a2 = ref.alpha**2
        return cls(h, v * ((lv / den) @ a2), v * ((1.0 / den) @ a2 + ref.alpha_perp2), np.arctan(lv).sum(axis=1),
                   np.log1p(lv**2).sum(axis=1))

    def sf(self, x: float) -> float:
        """:meth:`ExactT.sf` at ``x > 0`` on this grid."""
        w = 1.0 / (x * x)
        re, im = 1.0 - w * self.s1, -w * self.s2
        theta = -0.5 * (self.arc + np.arctan2(im, re))
        log_rho = 0.25 * self.log_det + 0.25 * np.log(re * re + im * im)
        total = self.h * float(np.sum(np.sin(theta) * np.exp(-log_rho)))  # du/u = dv/v = dt
        return float(min(max(0.5 + total / math.pi, 0.0), 1.0))


def df_with_critical(crit: float, level: float = 0.95) -> float:
    """The df of the t distribution whose two-sided ``level`` critical value is ``crit`` (∞ when
    ``crit`` is at most the normal's, 0 when it is infinite)."""
    q = 1.0 - (1.0 - level) / 2.0
    if not math.isfinite(crit):
        return 0.0
    if crit <= stats.norm.ppf(q):
        return math.inf
    # stats.t.ppf(q, v) is special.stdtrit(v, q), here without its per-call argument checks
    return float(optimize.brentq(lambda v: special.stdtrit(v, q) - crit, 1e-3, 1e9, xtol=1e-10, rtol=1e-12))


__all__ = ["ExactT", "df_with_critical"]
