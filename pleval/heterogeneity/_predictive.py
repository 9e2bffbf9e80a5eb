"""A new school's effect and each school's total effect, with the uncertainty of the
between-school variance integrated out by its confidence distribution.

Model (:mod:`.calibration`): PL estimates ``y ~ N(μ1, V + σ²I)`` with ``σ² = τ²_program +
τ²_placebo`` the variance of a school's total effect (program plus circumstances), placebo
estimates ``y_p ~ N(μ₀1, V_p + δ²I)`` with ``δ² = τ²_placebo``, so ``σ² ≥ δ²``.

**Confidence distributions of the variances.** With ``V = QΛQ'``, ``ỹ = Q'y``, ``x̃ = Q'1``, the
generalized statistic ``Q(s) = Σ_i (ỹ_i − x̃_i μ̂(s))² / (λ_i + s)`` is χ²(k − 1) at the true
``s = σ²`` and strictly decreasing in ``s`` (Viechtbauer 2007), so

    H(s) = 1 − F_{χ²(k−1)}(Q(s)),   s ≥ 0,

is a confidence distribution for σ² (Xie & Singh 2013): its quantiles are the Q-profile
confidence limits, with an atom ``1 − F(Q(0))`` at 0. The ``p``-quantile is the root of
``Q(s) = χ²_{k−1, 1−p}`` (0 when ``Q(0)`` is already below it). For δ² the placebo schools'
confidence distribution of the *unweighted* Q (:mod:`._unweighted`), ``H_p(d) = P_d(Q₁ > q)``:
their covariance is estimated, and the weights of the generalized Q would turn its noise into
spurious spread (many placebo schools make that visible). The two are independent, and every
figure below is an integral ``∫∫ f(σ²(s, d)) dH(s) dH_p(d)`` over them, taken by composite Simpson
rules over their probabilities (:func:`tail_probabilities`, the rule of the calibrated per-school
tests; :func:`variance_nodes`): H's quantiles ``s_i`` at the 85 nodes of :data:`SIGMA_RULE` over
its probabilities above the atom ``H(0)`` at 0 (which joins the first node, 0), fine in the upper
tail, where a small tail probability such as ``P(θ_new < 0)`` far from 0 is decided; for each
``s_i`` the placebo mass
``H_p(s_i)`` at or below it, where the projection below leaves ``s_i``, and δ²'s quantiles ``d_il``
at the 7 nodes of :data:`PLACEBO_RULE` over the probabilities above ``H_p(s_i)``, each pair with the
product of its weights. Splitting at ``s_i`` and at the atom keeps the kinks of the projection and
of the atom out of the rules' pieces. Before 2026-12-05 they were 400 equal-probability midpoints
``(j + ½)/400`` of each, paired by a rank-1 lattice, which leave the upper tail out:
``P(θ_new < 0) = 4.2·10⁻⁵`` came out 20% low, ``5.7·10⁻⁴`` 3.4% low, and the prediction interval's
ends 6·10⁻⁵ off (now within 0.3% and 2·10⁻⁶; ``tests/test_heterogeneity_predictive.py``).

**Order restriction.** Schools differ at least as much with the program as without it
(``σ² ≥ δ²``). Each pair is projected onto that order by the precision-weighted isotonic
(pool-adjacent-violators) rule for two ordered parameters (Robertson, Wright & Dykstra 1988,
ch. 1): ``σ²_j = s_j`` if ``s_j ≥ d_j``, else the pooled value
``(w s_j + w_p d_j)/(w + w_p)``, with ``w = I(s_j)`` the REML Fisher information ``½ tr P²``
of σ² and ``w_p = I_p(d_j)`` that of the placebo moment estimator, ``(m − 1)²/(2Σ(β_i + d)²)``,
each evaluated at the pair (the precisions of the two estimates there). Nodes with the same
``σ²_j`` are one with their summed weight. The same rule on the two estimates, whose
informations are ``1/SE²``, gives the point estimate ``τ̂²_total``.

**Prediction for a new school** (Nagashima, Noma & Furukawa 2019, with the generalized-Q
confidence distribution): ``θ_new | σ²_j ~ N(μ̂(σ²_j), σ²_j + Var μ̂(σ²_j))``, μ̂ the GLS mean
with ``V + σ²_j I``; the predictive distribution is the mixture over ``j`` with the nodes'
weights ``w_j``, the prediction interval its ``(1 ∓ level)/2`` quantiles and ``P(θ_new < 0)`` its CDF at 0.

**Shrunken school effects.** At each node school s's effect has the normal posterior
``N(θ̃_s(σ²_j), PEV_s(σ²_j))``, θ̃ and PEV the BLUP and its prediction-error variance
(:func:`.shrinkage.blup`) at prior variance σ²_j; with σ² integrated out by its distribution its
posterior is the mixture of these normals over ``j`` with weights ``w_j`` (Kass & Steffey 1989,
who approximate this integral to first order; Morris 1983). Its mean and SD are
``θ̃_s = Σ_j w_j θ̃_s(σ²_j)`` and ``SD_s² = Σ_j w_j PEV_s(σ²_j) + Σ_j w_j (θ̃_s(σ²_j) − θ̃_s)²`` (Morris's
``Var(θ̃)`` term, driven by ``(y_s − μ̂)²``); the **interval is the mixture's ``(1 ∓ level)/2``
quantiles** — not ``θ̃ ± z·SD``: the mixture is skewed toward the school's own estimate and
heavier-tailed than a normal of the same SD — and ``P(θ_s < 0)`` is the same mixture's CDF at 0,
so the interval excludes 0 exactly when that probability is below ``(1 − level)/2`` or above
``(1 + level)/2``.

Everything is vectorized over the nodes (and schools); roots by bisection on the monotone
``Q``. Weighted sums over the nodes are formed node by node for each school, so a school's
mixture is summed alike whatever the other schools.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from ._roots import bisect, bracket_above
from ._unweighted import unweighted_q

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SUM_DIGITS = 16 * np.finfo(float).eps  # relative rounding of a weighted sum of a few hundred CDF values
SIGMA_RULE = {"body": 12, "tail": 30}
""":func:`tail_probabilities` for σ² in :func:`variance_nodes` (85 nodes): with the calibrated tests'
20 tail pieces ``P(θ_new < 0) ≈ 4·10⁻⁵`` was 1.3% high and the prediction interval's ends 3·10⁻⁵ off,
with 30 0.3% and 2·10⁻⁶."""
PLACEBO_RULE = {"body": 1, "tail": 2}
""":func:`tail_probabilities` for δ² above each ``s_i`` in :func:`variance_nodes` (7 nodes): finer rules
(11 to 65 nodes) moved the interval's ends by at most 10⁻⁵ and ``P(θ_new < 0)`` by 0.05% of itself;
85 + 85 × 7 nodes at most, 0.06–0.075 s for 400 schools' prediction and shrinkage (0.05–0.07 s before)."""


def _q_stat(yy: np.ndarray, lam: np.ndarray, x: np.ndarray, s: np.ndarray):
    """``(Q(s), μ̂(s), Var μ̂(s))`` of the rotated model for each entry of ``s``."""
    w = 1.0 / (lam[None, :] + s[:, None])
    sxx = w @ (x * x)
    sxy = w @ (x * yy)
    return w @ (yy * yy) - sxy**2 / sxx, sxy / sxx, 1.0 / sxx


def cd_quantiles(yy: np.ndarray, lam: np.ndarray, x: np.ndarray, p: np.ndarray, iters: int = 44) -> np.ndarray:
    """Quantiles at probabilities ``p`` of the generalized-Q confidence distribution of σ²
    for rotated data (module docstring): the roots of ``Q(s) = χ²_{k−1, 1−p}``, 0 where
    ``Q(0)`` is below the target. Bisection, all ``p`` at once."""
    p = np.asarray(p, dtype=float)
    target = stats.chi2.isf(p, yy.size - 1)
    zero = _q_stat(yy, lam, x, np.zeros(1))[0][0] <= target

    def above(s):
        return _q_stat(yy, lam, x, s)[0] > target

    # Q(s) → 0 as s → ∞: quadruple until every root is bracketed
    hi = bracket_above(above, np.full(p.size, float(np.var(yy) + lam.mean())), zero, 4.0)
    return np.where(zero, 0.0, bisect(above, np.zeros(p.size), hi, iters))


def order_restricted(s, d, w: float, w_p: float):
    """Precision-weighted isotonic projection of ``(s, d)`` onto ``s ≥ d`` (module docstring):
    ``s`` where ``s ≥ d``, else ``(w s + w_p d)/(w + w_p)``."""
    s = np.asarray(s, dtype=float)
    return np.where(s >= d, s, (w * s + w_p * np.asarray(d, dtype=float)) / (w + w_p))


def reml_information(lam: np.ndarray, x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """REML Fisher information ``½ tr(P²)`` of σ² at each entry of ``s`` (rotated model with the
    single column ``x``; :mod:`._tau2`), ``1/SE²`` of the REML estimate when evaluated there."""
    w = 1.0 / (lam[None, :] + s[:, None])
    sxx = w @ (x * x)
    b2 = (w * w) @ (x * x) / sxx
    return 0.5 * ((w * w).sum(axis=1) - 2.0 * ((w**3) @ (x * x)) / sxx + b2 * b2)


RESTRICTIONS = ("isotonic", "max", "none")


def variance_nodes(y, V, yp, Vp, restrict: str = "isotonic", eigen: tuple | None = None,
                   uq=None) -> tuple[np.ndarray, np.ndarray]:
    """``(σ²_j, w_j)``: nodes of a school's total between-school variance and their weights, in
    increasing order (module docstring): H's quantiles ``s_i`` at :data:`SIGMA_RULE` over the
    probabilities above its atom at 0, the atom's mass on the first (0); with each, the placebo
    mass ``H_p(s_i)`` at or below it (σ² = ``s_i``) and δ²'s quantiles above it at
    :data:`PLACEBO_RULE` (:data:`SIGMA_RULE` under ``"max"``).

    ``restrict``: ``"isotonic"`` (pleval), the precision-weighted projection with each pair's
    informations; ``"max"``, ``max(s_i, d)`` (the placebo quantile as a floor); ``"none"``,
    σ²'s quantiles alone (the placebo schools unused). ``eigen``: ``(λ, Q)``,
    :func:`numpy.linalg.eigh` of ``V``, and ``uq``: :func:`.unweighted_q` of the placebo
    schools, when already computed."""
    if restrict not in RESTRICTIONS:
        raise ValueError(f"restrict must be one of {RESTRICTIONS}; got {restrict!r}")
    lam, Q = np.linalg.eigh(V) if eigen is None else eigen
    x, yy = Q.sum(axis=0), Q.T @ y
    u, w = tail_probabilities(**SIGMA_RULE)
    atom = float(special.chdtrc(y.size - 1, _q_stat(yy, lam, x, np.zeros(1))[0][0]))  # H(0) = 1 − F(Q(0))
    s = np.where(u > 0, cd_quantiles(yy, lam, x, atom + (1.0 - atom) * u), 0.0)  # (u = 0: the atom, exactly 0)
    w = (1.0 - atom) * w
    w[0] += atom
    if restrict == "none":
        return _merged(s, w)
    uq = unweighted_q(yp, Vp) if uq is None else uq
    below = uq.sf(s)  # H_p(s_i): the placebo mass at or below s_i, where σ² = s_i
    # (σ² = d above s_i under "max", undamped by pooling: the 7 nodes put P(θ_new < 0) ≈ 4·10⁻⁵ twice too
    # high, σ²'s rule 0.3%; the comparison benchmarks' option, its cost unmeasured by the run)
    u_p, w_p = tail_probabilities(**(SIGMA_RULE if restrict == "max" else PLACEBO_RULE))
    v = np.minimum(below[:, None] + (1.0 - below[:, None]) * u_p, u_p[-1])  # (1 where H_p(s_i) rounds to it)
    d = uq.quantiles(v.ravel()).reshape(v.shape)
    if restrict == "max":
        above = np.maximum(s[:, None], d)
    else:
        above = order_restricted(s[:, None], d, reml_information(lam, x, s)[:, None],
                                 uq.information(d.ravel()).reshape(d.shape))
    return _merged(np.concatenate([s, above.ravel()]),
                   np.concatenate([w * below, np.outer(w * (1.0 - below), w_p).ravel()]))


def _merged(sigma2: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``sigma2`` in increasing order, each with the summed weight of its
    copies (one component of the mixture, not several equal ones)."""
    values, which = np.unique(sigma2, return_inverse=True)
    return values, np.bincount(which.ravel(), weights=w, minlength=values.size)


def normalized(weights, n: int) -> np.ndarray:
    """``weights`` scaled to sum to 1; ``n`` equal weights when None."""
    return np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)


def tail_probabilities(body: int = 12, tail: int = 20, split: float = 0.9, top: float = 1e-10):
    """``(u, w)``: probabilities and weights of the composite Simpson rule on ``[0, 1]`` over
    ``body`` equal pieces of ``[0, split]`` and ``tail`` pieces of ``[split, 1 − (1 − split)·top]`` whose
    widths fall geometrically (the mass left above joins the last node): the quadrature
    of ``∫₀¹ f(H⁻¹(u)) du`` for an ``f`` that rises steeply as τ² grows, as a small p-value does,
    whose value the top of ``H`` decides. Equal midpoints leave that tail out (64 of them put
    p = 2·10⁻⁴ 32% low, 400 9% low); these 65 nodes are within 2% of the integral down to p = 10⁻⁵
    (the tests check a mixture against ``scipy.integrate.quad``)."""
    edges = np.concatenate([np.linspace(0.0, split, body + 1), 1.0 - (1.0 - split) * np.geomspace(1.0, top, tail + 1)[1:]])
    width = np.diff(edges)
    u = np.concatenate([edges, (edges[:-1] + edges[1:]) / 2])
    w = np.concatenate([np.zeros(edges.size), 4.0 * width / 6.0])
    w[:-1 - width.size] += width / 6.0
    w[1:edges.size] += width / 6.0
    w[edges.size - 1] += 1.0 - edges[-1]
    order = np.argsort(u, kind="stable")
    return u[order], w[order]


def placebo_nodes(yp, Vp, uq=None) -> tuple[np.ndarray, np.ndarray]:
    """``(τ²_j, w_j)``: quantiles of τ²_placebo's confidence distribution at
    :func:`tail_probabilities` and their weights, for the placebo-calibrated per-school tests
    (:func:`.calibration.calibrated_tests`); ``uq``: :func:`.unweighted_q` of ``yp``, ``Vp`` when
    already computed."""
    u, w = tail_probabilities()
    return (unweighted_q(yp, Vp) if uq is None else uq).quantiles(u), w


def _mixture_quantiles(m: np.ndarray, sd: np.ndarray, probs, weights=None, iters: int = 48) -> np.ndarray:
    """Quantiles at ``probs`` of the mixture of ``N(m_j, sd_j²)`` over the first axis with weights
    ``weights`` (default equal): shape ``(len(probs),)`` for 1-d ``m``, ``sd``, ``(len(probs), k)``
    for ``n × k`` (one mixture per column). The ``p``-quantile lies between the smallest and the
    largest of the components' ``p``-quantiles (the mixture's CDF is below ``p`` at the first and
    above it at the last), so that is the starting bracket.

    Root of ``F(t) = p``, ``F(t) = Σ_j w_j Φ((t − m_j)/sd_j)``, by Newton's method safeguarded by
    bisection (Press et al., *Numerical Recipes*, 3rd ed., §9.4, ``rtsafe``): from the normal
    with the mixture's mean and variance, each step ``t − (F(t) − p)/f(t)`` (``f`` the mixture's
    density) is taken when it falls inside the bracket that every evaluation of ``F`` narrows,
    the bracket's midpoint otherwise; it stops when every step (or bracket) is below ``2⁻⁴⁸`` of
    the starting bracket or four units in the last place of the root, or ``|F(t) − p|`` is within
    the rounding of the sum of the CDFs (``iters`` halvings' precision, which plain bisection
    takes ``iters`` evaluations for; Newton's steps take 4–8). A root that has stopped is not
    moved again, so each column's quantile is the same whatever the other columns hold. With a
    point mass (``sd_j = 0``, a jump in ``F``) it is bisection alone, ``iters`` halvings."""
    probs = np.asarray(probs, dtype=float)
    m2, sd2 = (np.asarray(a, dtype=float).reshape(a.shape[0], -1) for a in (m, sd))
    w = normalized(weights, m2.shape[0])[None, :, None]  # each (p, column)'s sum over the nodes in one order
    z = special.ndtri(probs)[:, None, None]
    comp = m2[None] + sd2[None] * z  # probs × n × k
    lo, hi = comp.min(axis=1), comp.max(axis=1)
    c = comp  # reused for every evaluation of the CDFs (probs × n × k)
    if not np.all(sd2 > 0):
        point, p = sd2[None] <= 0, probs[:, None]

        def below(t):
            with np.errstate(divide="ignore", invalid="ignore"):
                np.subtract(t[:, None, :], m2[None], out=c)
                np.divide(c, sd2[None], out=c)
                special.ndtr(c, out=c)
                np.copyto(c, t[:, None, :] >= m2[None], where=point)  # point masses: 1 at or above m_j
            return (c * w).sum(axis=1) < p

        q = bisect(below, lo, hi, iters)
        return q[:, 0] if np.ndim(m) == 1 else q
    inv_sd = 1.0 / sd2
    dens = np.empty_like(c)
    tol = np.ldexp(hi - lo, -iters)
    sign = np.where(probs > 0.5, -1.0, 1.0)[:, None, None]  # upper quantiles from the upper tail:
    tail = np.minimum(probs, 1.0 - probs)[:, None]  # its small sums keep their digits
    mean = (m2 * w[0]).sum(axis=0)
    t = np.clip(mean + np.sqrt(((sd2 * sd2 + (m2 - mean) ** 2) * w[0]).sum(axis=0)) * z[:, 0], lo, hi)
    settled = np.zeros(t.shape, dtype=bool)
    for _ in range(4 * iters):
        np.subtract(t[:, None, :], m2[None], out=c)
        np.multiply(c, inv_sd[None], out=c)
        np.multiply(c, c, out=dens)
        np.multiply(dens, -0.5, out=dens)
        np.exp(dens, out=dens)
        np.multiply(dens, inv_sd[None], out=dens)
        np.multiply(c, sign, out=c)
        special.ndtr(c, out=c)
        np.multiply(c, w, out=c)
        np.multiply(dens, w, out=dens)
        gap = (c.sum(axis=1) - tail) * sign[:, 0]  # F(t) − p
        f = dens.sum(axis=1) * _INV_SQRT_2PI
        lo = np.where(gap < 0, t, lo)
        hi = np.where(gap > 0, t, hi)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = t - gap / f
        step = np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
        step[gap == 0] = t[gap == 0]
        near = np.maximum(tol, 4.0 * np.spacing(np.abs(step)))  # (adjacent floats: as close as it gets)
        done = (np.abs(step - t) <= near) | (hi - lo <= near) | (np.abs(gap) <= _SUM_DIGITS * tail)  # or F's rounding
        done |= np.isnan(step)  # a NaN mixture stays NaN, as under bisection
        t = np.where(settled, t, step)  # a settled root is not moved by the others' further steps
        settled |= done
        if settled.all():
            break
    return t[:, 0] if np.ndim(m) == 1 else t


def predictive(y, V, sigma2: np.ndarray, weights=None, level: float = 0.95,
               eigen: tuple | None = None) -> tuple[tuple[float, float], float]:
    """Prediction interval and ``P(θ_new < 0)`` of the mixture over the nodes ``sigma2`` with
    ``weights`` (default equal; :func:`variance_nodes` gives both; ``eigen``: ``(λ, Q)`` of ``V``
    when already computed)."""
    lam, Q = np.linalg.eigh(V) if eigen is None else eigen
    _, mu, mu_var = _q_stat(Q.T @ y, lam, Q.sum(axis=0), sigma2)
    sd = np.sqrt(sigma2 + mu_var)
    w = normalized(weights, sigma2.size)
    a = (1.0 - level) / 2.0
    lo, hi = _mixture_quantiles(mu, sd, [a, 1.0 - a], w)
    return (float(lo), float(hi)), float((special.ndtr(-mu / sd) * w).sum())


class MixtureShrinkage(NamedTuple):
    """Per school: the posterior mixture's mean, SD, ``P(θ < 0)`` and interval ends (module
    docstring)."""

    mean: np.ndarray
    sd: np.ndarray
    prob_negative: np.ndarray
    low: np.ndarray
    high: np.ndarray


def shrinkage(y, V, sigma2: np.ndarray, weights=None, level: float = 0.95,
              eigen: tuple | None = None) -> MixtureShrinkage:
    """Each school's posterior mixture over the nodes ``sigma2`` with ``weights`` (default equal;
    :func:`variance_nodes` gives both; module docstring): the BLUP
    ``μ̂ + σ²W(y − μ̂1)`` and ``PEV = σ² − σ⁴ diag W + c²Var μ̂``, ``c = 1 − σ²W1``,
    ``W = (V + σ²I)⁻¹``, at each node; its mean and SD, ``P(θ < 0)`` (its CDF at 0) and its
    ``(1 ∓ level)/2`` quantiles. ``eigen``: ``(λ, Q)`` of ``V`` when already computed."""
    lam, Q = np.linalg.eigh(V) if eigen is None else eigen
    yy, x = Q.T @ y, Q.sum(axis=0)
    w = 1.0 / (lam[None, :] + sigma2[:, None])  # n × k: eigenvalues of W per node
    sxx = w @ (x * x)
    mu = (w @ (x * yy)) / sxx
    s2 = sigma2[:, None]
    shr = mu[:, None] + s2 * ((w * (yy[None, :] - mu[:, None] * x[None, :])) @ Q.T)
    c = 1.0 - s2 * ((w * x[None, :]) @ Q.T)
    pev = np.clip(s2 - s2**2 * (w @ (Q * Q).T) + c**2 / sxx[:, None], 0.0, None)
    wt = normalized(weights, sigma2.size)[:, None]  # summed node by node: each school's sums alike whatever k
    mean = (shr * wt).sum(axis=0)
    sd = np.sqrt(((pev + (shr - mean) ** 2) * wt).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        pneg = (np.where(pev > 0, special.ndtr(-shr / np.sqrt(pev)), (shr < 0).astype(float)) * wt).sum(axis=0)
    a = (1.0 - level) / 2.0
    low, high = _mixture_quantiles(shr, np.sqrt(pev), [a, 1.0 - a], wt[:, 0])
    return MixtureShrinkage(mean, sd, pneg, low, high)


__all__ = ["cd_quantiles", "order_restricted", "reml_information", "variance_nodes", "predictive", "shrinkage",
           "MixtureShrinkage", "PLACEBO_RULE", "SIGMA_RULE", "RESTRICTIONS", "normalized"]
