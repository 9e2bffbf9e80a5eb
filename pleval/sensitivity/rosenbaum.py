"""Rosenbaum bounds: how much hidden bias in treatment assignment would overturn the test.

Sensitivity model (Rosenbaum 2002, *Observational Studies*, §4.2): within a matched set, two
units' odds of treatment may differ by at most a factor Γ ≥ 1 because of an unobserved
covariate u ∈ [0, 1]. Γ = 1 is a randomized experiment within sets. For each Γ the
one-sided p-value is bounded above; pleval reports the bound at listed Γ, the Γ at which the
test's p-value bound crosses α, and the interval of Hodges–Lehmann estimates and the
sensitivity confidence interval at listed Γ. The test is two-sided when its direction is taken
from the data (the default): its p-value bound is twice the one-sided bound in the estimate's
direction, capped at 1 (Rosenbaum 2002, ch. 4), so Γ at α is the one-sided bound's Γ at α/2;
a direction fixed in advance is tested one-sided at α.

**Pairs: Wilcoxon's signed-rank statistic** (Rosenbaum 2002, §4.3.3). Pair differences d_s
(zeros dropped), ranks r_s of |d_s| (average ranks for ties), ``T = Σ r_s·1(d_s > 0)``. Under
Γ, T is bounded by a sum of independent terms r_s·Bernoulli(p⁺), ``p⁺ = Γ/(1 + Γ)``::

    E⁺ = p⁺ Σ r_s,   V⁺ = p⁺(1 − p⁺) Σ r_s²,   p-value ≤ 1 − Φ((T − E⁺)/√V⁺)

(the large-sample approximation, as rbounds' ``psens`` and DOS's ``senWilcox``). The Γ at
which the bound equals α (α/2 for the two-sided test) solves ``(T − pS₁)² = z²_α p(1 − p) S₂``
for ``p = Γ/(1+Γ)``: a quadratic, no search.

**Matched sets (1:k, variable k, VCG sets): aligned ranks** (Hodges & Lehmann 1962;
Rosenbaum 2002 §4.4 / 2007). Each response minus its set's mean, all aligned responses ranked
together (q), ``T = Σ_s q_{s,treated}``. The bound uses the *asymptotically separable*
approximation (Gastwirth, Krieger & Rosenbaum 2000): in each set, with its q sorted
decreasingly, u = (1, …, 1, 0, …, 0) with a ones (a = 1 … n_s − 1) gives treatment
probabilities Γ^{u_i}/Σ_j Γ^{u_j}; the set's mean μ_s and variance v_s are taken from the a that
maximizes μ_s (the largest v_s among ties); then ``p ≤ 1 − Φ((T − Σμ_s)/√Σv_s)``. The Γ at
α is found by Brent's method on log Γ. Vectorized over sets: O(N) per Γ after one sort.

**Huber's M-statistic** (Maritz 1979; Rosenbaum 2007; sensitivitymv's ``senmv``), for pairs
and sets alike: unit j of set s scores ``q_sj = (1/n_s) Σ_{k≠j} ψ((y_sj − y_sk)/h)``, ψ Huber's
function trimmed at ``trim`` (see :class:`HuberScores`), T the sum of the treated units'
scores, bounded by the same separable approximation.

**Hodges–Lehmann at Γ** (Rosenbaum 1993; 2002 §4.3.5). For an additive effect τ the
statistic of ``y − τ·treated`` falls with τ. The range of point estimates solves
``T(τ) = E⁺(τ)`` and ``T(τ) = E⁻(τ)`` (E⁻ the lower-bound mean, with 1/(1+Γ)); the sensitivity
interval (two-sided, level 1 − α) solves the standardized deviates ``= ±z_{1−α/2}`` with the
upper and lower bounds. Each evaluation re-ranks the data (O(N log N)).

Caveats: the model treats matched sets as disjoint; with matching *with replacement* a
comparison student may sit in several sets (the bounds then treat the copies as distinct
units); matching weights are not used; students sharing a school are treated as independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from .._align import by_label
from .._results import Frame, ResultMixin
from ..errors import DataError, DesignError
from ..inference.robust import _radix_passes, radix_argsort

GAMMA_MAX = 1e4

TIE_TOL = 1e-10
"""Values within ``TIE_TOL`` × the largest |value| of each other rank as ties: the responses
are covariance-adjusted (residuals), and rounding in that adjustment must not decide whether
two equal responses tie (it differs between, e.g., the same data in another row order)."""


def _norm_sf(z):
    return special.ndtr(-np.asarray(z, dtype=float))


# --------------------------------------------------------------------------------------
# Pairs: signed ranks
# --------------------------------------------------------------------------------------
def _signed_rank(d: np.ndarray) -> tuple[float, float, float]:
    """``(T, S₁, S₂)``: the signed-rank statistic, the sum and the sum of squares of the ranks
    (zero differences, within :data:`TIE_TOL` of the largest, dropped)."""
    d = d[np.abs(d) > TIE_TOL * float(np.max(np.abs(d), initial=0.0))]
    r = _ranks_desc(np.abs(d))[0] if len(d) else np.zeros(0)
    return float(r[d > 0].sum()), float(r.sum()), float(r @ r)


def _pair_differences(y, codes, treated, n_sets) -> np.ndarray:
    """Treated-minus-comparison difference of each pair (sets of two, one treated)."""
    return np.bincount(codes, weights=np.where(treated, y, -y), minlength=n_sets)


def signed_rank_pvalue(d, gamma=1.0) -> np.ndarray:
    """Upper bound on the one-sided (greater) p-value of Wilcoxon's signed-rank test of no
    effect from pair differences ``d`` at each Γ in ``gamma`` (normal approximation)."""
    T, S1, S2 = _signed_rank(np.asarray(d, dtype=float))
    return _sr_p(T, S1, S2, np.asarray(gamma, dtype=float))


def _sr_p(T, S1, S2, gamma, lower: bool = False):
    p = gamma / (1.0 + gamma)
    if lower:
        p = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        return _norm_sf((T - p * S1) / np.sqrt(p * (1 - p) * S2))


def signed_rank_gamma(d, alpha: float = 0.05) -> float:
    """The Γ at which the upper-bound p-value of the signed-rank test equals ``alpha``
    (1.0 if the test is not significant even at Γ = 1; ``inf`` if every difference is positive
    enough that no finite Γ reaches alpha under the normal approximation)."""
    T, S1, S2 = _signed_rank(np.asarray(d, dtype=float))
    if S1 == 0:
        return 1.0
    z = stats.norm.isf(alpha)
    if _sr_p(T, S1, S2, 1.0) >= alpha:
        return 1.0
    # (T − pS₁)² = z² p(1 − p) S₂ with T − pS₁ > 0: the smaller root in p
    a = S1**2 + z**2 * S2
    b = -(2 * T * S1 + z**2 * S2)
    c = T**2
    disc = max(b * b - 4 * a * c, 0.0)
    p = (-b - math.sqrt(disc)) / (2 * a)
    return math.inf if p >= 1 else float(p / (1 - p))


# --------------------------------------------------------------------------------------
# Matched sets: aligned ranks with the separable approximation
# --------------------------------------------------------------------------------------
def _ranks_desc(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1 = smallest) of ``a`` and an order that sorts ``a`` decreasingly up to
    ties (values within :data:`TIE_TOL` of each other, relative to the largest, tie)."""
    o, place = _rank_order(a)
    q = np.empty(len(a))
    q[o] = place
    return q, o


def _place_ranks(v: np.ndarray, tol: float) -> np.ndarray:
    """The average ranks (1 = smallest) place by place of values in decreasing order whose
    consecutive differences are ``v[:-1] − v[1:]``: a difference above ``tol`` starts a new run
    of tied values, which share their average rank."""
    n = len(v)
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.greater(v[:-1] - v[1:], tol, out=new[1:])
    first = np.flatnonzero(new)  # of each run of tied values
    run = np.cumsum(new)
    run -= 1
    del new
    last = np.append(first[1:], n) - 1
    rank = n - (first + last) / 2.0
    del first, last
    return rank if len(rank) == n else rank[run]  # (no ties: each run is one value)


_SIGN = np.uint32(1 << 31)


def _index_bits(n: int) -> int:
    """``b = ⌈log₂ n⌉`` (at least 1): the bits that hold an index below ``n``."""
    return max((n - 1).bit_length(), 1)


def _rank_order(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order ``o`` that sorts ``a`` (finite) decreasingly up to ties, and the average rank
    (1 = smallest; ties as :func:`_ranks_desc`) at each of its places: ``a[o[i]]`` has rank
    ``place[i]``. Exactly the ranks of ``np.argsort(-a)`` and its runs, from a radix sort of
    32-bit integers (two of :func:`~pleval.inference.robust.radix_argsort`'s 16-bit passes:
    several times faster than an argsort of floats).

    Each ``−a`` is rounded to float32 (monotone: a larger value never rounds below a smaller
    one) and its bits mapped to an unsigned integer of the same order (the sign bit set for
    ``≥ 0``, every bit flipped for ``< 0``); the keys are sorted stably, equal ones in index
    order. (Until 2026-12-05 the keys were the top ``64 − ⌈log₂ n⌉`` bits of the float64's:
    three passes; float32 keeps 23 bits of each mantissa against 31, and its exponent's 8 bits
    against 11: at 1M aligned responses 47 against 71 ms.) Only values with equal keys
    (within about 2⁻²⁴ of each other, relative, or beyond float32's range) can be out of
    order. Of such a group, found by an increase of ``a`` along the order: if its values span
    at most the tie tolerance, every difference inside it is at most the tolerance, so it lies
    within one run whatever its order, and the differences at its edges are taken from its
    largest and smallest values (exactly those of the sorted order); otherwise it is sorted
    exactly. ``np.argsort`` when more than a quarter of the values would be. The order within
    a run of ties may differ from the argsort's; the ranks do not."""
    n = len(a)
    tol = TIE_TOL * float(np.max(np.abs(a), initial=0.0))
    if n < 2:
        return _argsort_ranks(a, tol)
    with np.errstate(over="ignore"):  # (beyond float32's range: ±inf, still in order)
        u = np.negative(a).astype(np.float32).view(np.uint32)
    flip = u >> np.uint32(31)
    np.subtract(np.uint32(0), flip, out=flip)  # all ones for a negative value, else 0
    flip |= _SIGN
    u ^= flip
    del flip
    o = _radix_passes(u, (1 << 32) - 1)  # (stable: equal keys in index order)
    v = a[o]
    bad = np.flatnonzero(v[1:] > v[:-1])
    if len(bad):
        u = u[o]
        key = np.unique(u[bad])  # the keys of the groups out of order
        lo, hi = np.searchsorted(u, key), np.searchsorted(u, key, side="right")
        del key
        ends = np.column_stack([lo, hi]).ravel()
        ends = ends[:-1] if ends[-1] == n else ends
        top, bottom = np.maximum.reduceat(v, ends)[::2], np.minimum.reduceat(v, ends)[::2]
        wide = top - bottom > tol
        length = (hi - lo)[wide]
        if length.sum() > n // 4:
            return _argsort_ranks(a, tol)
        if len(length):  # sorted exactly, group by group
            at = np.arange(int(length.sum())) + np.repeat(lo[wide] - (np.cumsum(length) - length), length)
            sub = o[at]
            o[at] = sub = sub[np.lexsort((-a[sub], np.repeat(np.arange(len(length)), length)))]
            v[at] = a[sub]
            del at, sub
        narrow = ~wide
        v[lo[narrow]], v[hi[narrow] - 1] = top[narrow], bottom[narrow]
    del u
    return o, _place_ranks(v, tol)


def _argsort_ranks(a, tol):
    """:func:`_rank_order` by ``np.argsort``."""
    o = np.argsort(-a)
    return o, _place_ranks(a[o], tol)


@dataclass(frozen=True)
class HuberScores:
    """Huber M-scores for matched sets (Maritz 1979; Rosenbaum 2007, §4): unit j of set s
    scores ``q_sj = (1/n_s) Σ_{k≠j} ψ((y_sj − y_sk)/h)`` with
    ``ψ(x) = sign(x)·min(1, max(0, |x| − inner)/(trim − inner))`` and ``h`` the ``lam``-quantile
    of ``|y_sj − y_sk|`` over every ordered pair of every set (``trim = inf`` with ``inner = 0``:
    ψ(x) = x on the unscaled differences, the permutational t). The statistic is the sum of the
    treated units' scores; its bound uses the same separable approximation as the aligned
    ranks. ``trim = 2.5, inner = 0, lam = ½`` is sensitivitymv's default (method "h")."""

    trim: float = 2.5
    inner: float = 0.0
    lam: float = 0.5

    def __post_init__(self):
        if not (0 <= self.inner < self.trim):
            raise DataError(f"Huber scores need 0 <= inner < trim; got inner={self.inner!r}, trim={self.trim!r}")
        if not 0 < self.lam < 1:
            raise DataError(f"lam (the quantile that scales the differences) must lie in (0, 1); got {self.lam!r}")

    def __call__(self, y: np.ndarray, codes: np.ndarray, size: np.ndarray) -> np.ndarray:
        order = np.argsort(codes, kind="stable")
        first = np.concatenate([[0], np.cumsum(size)[:-1]])
        blocks = []
        for n in np.unique(size):  # one block per set size (a few sizes), vectorized over its sets
            idx = order[first[size == n][:, None] + np.arange(n)]
            blocks.append((n, idx, y[idx][:, :, None] - y[idx][:, None, :]))  # memory: Σ n_s² per call
        scale = not (math.isinf(self.trim) and self.inner == 0)
        h = 1.0
        if scale:
            h = float(np.quantile(np.concatenate([np.abs(d[:, ~np.eye(n, dtype=bool)]).ravel() for n, _, d in blocks]),
                                  self.lam))
            if not h > 0:
                raise DataError(f"Huber scores: the {self.lam:g}-quantile of the within-set differences is zero; raise lam")
        q = np.empty(len(y))
        for n, idx, d in blocks:
            x = np.abs(d) / h
            if math.isinf(self.trim):
                ab = np.maximum(x - self.inner, 0.0) if scale else x
            else:
                ab = np.minimum(1.0, np.maximum(x - self.inner, 0.0) / (self.trim - self.inner))
            q[idx] = (np.sign(d) * ab).sum(axis=2) / n
        return q


_CHUNK = 1 << 15
"""Kept positions (of whole sets) :meth:`_Sets.moments` forms at a time."""


@dataclass(frozen=True)
class _Sets:
    """Aligned ranks sorted decreasingly within each set, kept at the positions j = 0 … n_s − 2
    (a = j + 1 ones in u), with the running sums the separable bound needs."""

    T: float
    start: np.ndarray  # first kept position of each set
    count: np.ndarray  # n_s − 1 kept positions per set
    a: np.ndarray  # a = j + 1 (the narrowest integers that hold the largest set: the bound converts them exactly)
    b: np.ndarray  # n_s − a
    top1: np.ndarray  # Σ of the a largest q of the set
    top2: np.ndarray  # the same for q²
    total1: np.ndarray  # Σ q of each set (the others' sum at a position: total − top)
    total2: np.ndarray  # Σ q² of each set
    rise: np.ndarray | None = None  # Γ below which μ rises past each position (:func:`_rises`; exact sums only)

    @classmethod
    def build(cls, y: np.ndarray, codes: np.ndarray, size: np.ndarray, treated: np.ndarray,
              scores: HuberScores | None = None) -> "_Sets":
        """From responses ``y``, set codes 0..S−1, set sizes and the treated flags; the unit
        scores are aligned ranks, or ``scores``' M-scores when given."""
        if scores is None:
            mean = np.bincount(codes, weights=y, minlength=len(size)) / size
            q = None  # (T from the ranks by place: sums of half-integers, exact in any order)
            o, place = _rank_order(y - mean[codes])
        else:
            q = scores(y, codes, size)
            o = np.argsort(-q, kind="stable")
            place = q[o]
        return cls.from_ranks(q, None, codes, size, treated, place, o)

    @classmethod
    def from_ranks(cls, q, rank, codes, size, treated, place=None, order=None) -> "_Sets":
        """From unit scores ``q`` and each unit's place ``rank`` in their decreasing order
        (0 = the largest), or instead of ``q`` (None) the scores by place, ``place``
        (``q[rank] = place``; T is then summed by place: aligned ranks are half-integers, whose
        sums are exact in any order while ``n(n + 1) < 2⁵³``; given ``order``, ``rank`` may be
        None: T summed in place order, no inverse permutation formed). The by-set order (set
        by set, each set's units by place) sorts the integers ``code·2^b + rank`` (``2^b ≥ n``;
        ``code·n + rank`` if ``2b > 63``): a unit's place is unique, so the sorted integers give
        its set and place, and ``place`` its score — one ``np.sort``, no argsort; or, given
        ``order`` (the units by place, the inverse of ``rank``), the set codes by place sorted stably by
        :func:`~pleval.inference.robust.radix_argsort`: the same order, its places the sort's
        indices (one 16-bit pass below 65,536 sets: 29 against 54 ms for 1M units, gathers
        included). Set s's units are the positions ``first_s … first_s + n_s − 1`` of the by-set
        order; at its kept positions (all but the last: a = n_s would put every unit in u's ones)
        ``top`` is the cumulative sum less its value before ``first_s``; the others' sum ``rest``
        is the set's total (summed in that order, ``np.bincount``; for aligned ranks its last
        running sum, the same exact sum) less ``top``, formed where :meth:`moments` reads it (not
        held: n-long). Each n-long temporary is freed as soon as it is read (they dominate the
        memory of the bounds)."""
        n, n_sets = len(codes), len(size)
        if q is not None:
            T = float(q[treated].sum())
        else:
            T = float((place[rank[treated]] if rank is not None else place[treated[order]]).sum())
        if place is None:
            place = np.empty(n)
            place[rank] = q
        bits = _index_bits(n)
        if order is not None:
            narrow = codes.astype(np.uint16 if n_sets <= 1 << 16 else np.uint32)  # (2 or 4 bytes a unit gathered, not 8)
            at = radix_argsort(narrow[order])  # the places, by set
            del narrow
            qs = place[at]
            key = np.repeat(np.arange(n_sets), size)  # (each set's code, n_s times)
            del rank, at
        elif 2 * bits <= 63:
            key = codes << bits
            key |= rank
            del rank
            key.sort()
            qs = place[key & ((1 << bits) - 1)]
            key >>= bits
        else:
            key = codes * n
            key += rank
            del rank
            key.sort()
            qs = place[key % n]
            key //= n
        del place
        cs = key  # the set codes in by-set order
        del key
        qs2 = np.square(qs)
        exact = q is None and n * (n + 1) < 2**53  # (half-integer sums below 2⁵²: exact in any order)
        total1 = None if exact else np.bincount(cs, weights=qs, minlength=n_sets)  # (exact: from the running sums)
        total2 = np.bincount(cs, weights=qs2, minlength=n_sets)
        del cs
        first = np.concatenate([[0], np.cumsum(size)[:-1]])
        count = size - 1
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        kept = np.ones(n, dtype=bool)
        kept[first + count] = False  # each set's last position
        itype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if int(size.max(initial=0)) <= np.iinfo(t).max)
        a = np.ones(n - n_sets, dtype=itype)  # j + 1 over the kept positions: steps of 1, back to 1 at each set
        a[start[1:]] = 1 - count[:-1]
        np.cumsum(a, dtype=itype, out=a)
        b = np.repeat(size.astype(itype), count)
        b -= a

        def top(x):  # the running sums of the a largest scores x in by-set order (x becomes their running sum)
            np.cumsum(x, out=x)
            off = np.zeros(n_sets)
            off[1:] = x[first[1:] - 1]  # the cumulative sum before each set
            t = x[kept]
            t -= np.repeat(off, count)
            return t, off

        top1, off = top(qs)
        if total1 is None:  # each set's last running sum: its total, exactly
            total1 = qs[first + count] - off
        del qs, off
        top2 = top(qs2)[0]
        del qs2
        rise = _rises(top1, a, size, total1, start, count) if exact else None
        return cls(T, start, count, a, b, top1, top2, total1, total2, rise)

    def moments(self, gamma: float, lower: bool = False) -> tuple[float, float]:
        """``(Σ μ_s, Σ v_s)`` of the separable bound (upper; ``lower`` for the lower bound, whose
        minimizing u puts the ones on the smallest ranks: the same sums with 1/Γ). At Γ (g),
        position (s, a) has ``μ = (g·top1 + rest1)/(g·a + b)`` and
        ``v = (g·top2 + rest2)/(g·a + b) − μ²`` (``rest = total − top``); each set takes the largest μ and, among the
        positions tied with it (within 1e-12, relative, + 1e-12), the largest v. With exact
        running sums (aligned ranks) and g ≠ 1, :meth:`_peaks` finds those positions from about
        three a set (in :func:`~pleval._workers.compute_threads` runs of consecutive sets, one a
        thread), and at g = 1, where every position ties, :meth:`_even` forms them from the
        sets' sums; otherwise (Huber scores) μ is formed at every position, whole sets of about
        :data:`_CHUNK` positions at a time, so that the temporaries stay in a core's cache
        (n-long ones streamed through memory and faulted in fresh pages on every call); the
        chunks in :func:`~pleval._workers.compute_threads` runs of consecutive chunks, one a
        thread. Each set's μ and v are computed by the same
        operations whichever way (:meth:`_at`; :meth:`_even` their floats), and summed over the
        sets in set order: the same floats whatever the route and the threads."""
        from .._workers import compute_threads, thread_map

        g = 1.0 / gamma if lower else gamma
        n_sets, n = len(self.start), len(self.a)
        if self.rise is not None and g == 1.0:
            best, vbest = self._even()
            return float(best.sum()), float(np.maximum(vbest, 0.0).sum())
        if self.rise is not None:
            cut = np.linspace(0, n_sets, min(compute_threads(), max(n // _CHUNK, 1)) + 1).astype(int)
            parts = thread_map(lambda r: self._peaks(g, lower, *r), list(zip(cut[:-1].tolist(), cut[1:].tolist())))
        else:
            cut = np.unique(np.append(np.searchsorted(self.start, np.arange(0, n, _CHUNK)), n_sets))
            runs = np.array_split(np.arange(len(cut) - 1), min(compute_threads(), max(len(cut) - 1, 1)))
            parts = thread_map(lambda r: self._best(cut[r[0]:r[-1] + 2].tolist(), g, lower), [r for r in runs if len(r)])
        best = np.concatenate([b for b, _ in parts]) if parts else np.zeros(0)
        vbest = np.concatenate([v for _, v in parts]) if parts else np.zeros(0)
        return float((-best if lower else best).sum()), float(np.maximum(vbest, 0.0).sum())

    def _best(self, cut: list, g: float, lower: bool) -> tuple[np.ndarray, np.ndarray]:
        """The largest μ of each set from ``cut[0]`` to ``cut[-1]`` (negated for ``lower``) and
        the largest v of the positions tied with it (−inf only for a set whose μ is NaN), chunk
        by chunk (sets ``cut[i]`` to ``cut[i + 1]``): :meth:`moments`'s per-set work at every
        position."""
        n_sets, n = len(self.start), len(self.a)
        best = np.empty(cut[-1] - cut[0])
        vbest = np.empty(len(best))
        for s0, s1 in zip(cut[:-1], cut[1:]):  # chunks of whole sets, not sets
            p0, p1 = int(self.start[s0]), (int(self.start[s1]) if s1 < n_sets else n)
            at = slice(s0 - cut[0], s1 - cut[0])
            best[at], vbest[at], _ = self._at(slice(s0, s1), slice(p0, p1), self.count[s0:s1], g, lower)
        return best, vbest

    def _at(self, sets, pos, count, g: float, lower: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the kept positions ``pos`` (slice or array), ``count[i]`` consecutive ones of set
        ``sets[i]`` in turn: each set's largest μ among them (negated for ``lower``), the
        largest v of those tied with it (−inf for a set whose μ is NaN) and μ (negated) at
        each position."""
        den = np.multiply(self.a[pos], g, dtype=float)
        den += self.b[pos]
        top1 = self.top1[pos]
        key = np.repeat(self.total1[sets], count)
        key -= top1  # rest1 = total − top, as summed
        key += np.multiply(top1, g)  # g·top1 + rest1
        key /= den
        if lower:
            np.negative(key, out=key)
        first = np.cumsum(count) - count
        top = np.maximum.reduceat(key, first) if len(key) else np.zeros(0)
        tie = np.greater_equal(key, np.repeat(top - (1e-12 * np.abs(top) + 1e-12), count))  # tied with the best
        ties = np.add.reduceat(tie, first, dtype=np.intp) if len(key) else np.zeros(0, np.intp)  # 0 only for NaN μ
        at = np.flatnonzero(tie) if ties.sum() < len(tie) else slice(None)  # (at Γ = 1 every position ties)
        del tie
        mt = key[at]
        top2 = self.top2[pos][at]
        var = np.repeat(self.total2[sets], ties)  # (the tied positions' sets)
        var -= top2  # rest2
        var += np.multiply(top2, g)
        var /= den[at]
        var -= mt * mt
        some = ties > 0
        vbest = np.full(len(top), -np.inf)
        if len(var):
            vbest[some] = np.maximum.reduceat(var, (np.cumsum(ties) - ties)[some])
        return top, vbest, key

    def _even(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`moments`'s ``(best, vbest)`` at Γ = 1 (either bound) with exact running sums:
        the floats :meth:`_at` forms at every position, with less work. There the denominator
        ``a + b`` is n_s and ``μ = (rest1 + top1)/n_s`` is ``total1/n_s`` at every position
        (half-integer sums: ``total1 − top1`` and adding ``top1`` back are exact), so every
        position ties with the best, and v's largest is ``max((total2 − top2) + top2)/n_s − μ²``
        (``x/n_s − μ²`` never falls as x rises, rounded too: the largest of the roundings is the
        rounding of the largest)."""
        size = self.count + 1
        best = self.total1 / size
        w = np.repeat(self.total2, self.count)
        w -= self.top2  # rest2
        w += self.top2
        vbest = np.maximum.reduceat(w, self.start)
        vbest /= size
        vbest -= best * best
        return best, vbest

    def _peaks(self, g: float, lower: bool, s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`moments`'s ``(best, vbest)`` of sets ``s0`` to ``s1`` from three positions a
        set, for exact running sums and g ≠ 1. Along a set's positions μ (−μ for g < 1, the lower bound) rises strictly
        while q_{a+1} > μ_a and never rises after (:func:`_rises`): its peak a* counts the
        positions whose :attr:`rise` exceeds g. μ is formed at a* − 1, a* and a* + 1 (within
        the set). When each neighbour lies below a*'s μ by more than the tie tolerance and a
        rounding margin (1e-13 of either), the left one is on the rising side and the right one
        on the falling side, so every position beyond them lies lower still: a* is the set's
        best and the only position tied with it, as :meth:`_best` would find them, μ and v
        formed there by the same operations — the same floats. Sets failing this (ties between
        neighbours; g within rounding of a threshold) are formed at every position
        (:meth:`_at`)."""
        start, last = self.start[s0:s1], self.count[s0:s1] - 1
        if not len(start):
            return np.zeros(0), np.zeros(0)
        p0 = int(start[0])
        # the positions that rise, counted set by set (a set's last position never rises)
        j = np.add.reduceat((self.rise[p0:p0 + int(last.sum()) + len(last)] > g).view(np.uint8), start - p0,
                            dtype=np.int32)
        pos = np.stack([np.maximum(j - 1, 0), j, np.minimum(j + 1, last)], axis=1)  # a set's three side by side:
        pos += start[:, None]  # (gathered from the same cache lines)
        den = np.multiply(self.a[pos], g, dtype=float)
        den += self.b[pos]
        top1 = self.top1[pos]
        key = np.repeat(self.total1[s0:s1, None], 3, axis=1)
        key -= top1  # as :meth:`_at`
        key += np.multiply(top1, g)
        key /= den
        del top1
        if lower:
            np.negative(key, out=key)
        best = key[:, 1]
        low = best - (1e-12 * np.abs(best) + 1e-12) - 1e-13 * np.abs(best)  # below the tie band
        ok = (j == 0) | (key[:, 0] < low - 1e-13 * np.abs(key[:, 0]))
        ok &= (j >= last) | (key[:, 2] < low - 1e-13 * np.abs(key[:, 2]))
        top2 = self.top2[pos[:, 1]]
        vbest = self.total2[s0:s1] - top2
        vbest += np.multiply(top2, g)
        vbest /= den[:, 1]
        vbest -= best * best
        redo = np.flatnonzero(~ok)
        if len(redo):  # at every position
            c = last[redo] + 1
            pos = np.repeat(start[redo] - (np.cumsum(c) - c), c) + np.arange(int(c.sum()))
            best[redo], vbest[redo], _ = self._at(redo + s0, pos, c, g, lower)
        return best, vbest

    def pvalue(self, gamma: float, lower: bool = False) -> float:
        E, V = self.moments(gamma, lower)
        return float(_norm_sf((self.T - E) / math.sqrt(V))) if V > 0 else (0.0 if self.T > E else 1.0)


def _rises(top1: np.ndarray, a: np.ndarray, size: np.ndarray, total1: np.ndarray, start: np.ndarray,
           count: np.ndarray) -> np.ndarray:
    """At each kept position (set s, a ones), the Γ below which the separable bound's μ rises
    from a to a + 1, as float32 (a locator: :meth:`_Sets._peaks` checks what it finds):
    ``G = 1 + n_s(q_{a+1} − q̄_s)/(top1_a − a·q_{a+1})``, −inf at each set's last position.
    μ_{a+1} − μ_a has the sign of (g − 1)(q_{a+1} − μ_a), μ_{a+1} being μ_a and q_{a+1} (the
    (a+1)-th largest score, ``top1_{a+1} − top1_a``) averaged with weights g·a + b and g − 1;
    ``q_{a+1} > μ_a`` is ``n_s(q_{a+1} − q̄_s) > (g − 1)(top1_a − a·q_{a+1})``, i.e. g < G (the
    bracket is ≥ 0). Once ``q_{a+1} ≤ μ_a``, μ_{a+1} lies on q_{a+1}'s side no more (between
    them for g > 1, beyond μ_a for g < 1), so ``q_{a+2} ≤ q_{a+1} ≤ μ_{a+1}``: μ (−μ for g < 1)
    rises strictly up to its peak and never after, and the positions below g ≠ 1 are a prefix
    of each set (in exact arithmetic: G only locates the peak)."""
    nxt = np.diff(top1)  # q_{a+1} (across a set's end: its last position, left out)
    den = np.multiply(a[:-1], nxt, dtype=float)
    np.subtract(top1[:-1], den, out=den)
    num = np.repeat(total1 / size, count)[:-1]
    np.subtract(nxt, num, out=num)
    del nxt
    num *= np.repeat(size, count)[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        num /= den
    del den
    num += 1.0
    rise = np.empty(len(top1), dtype=np.float32)
    rise[:-1] = num
    rise[start + count - 1] = -np.inf
    return rise


def _set_codes(set_id, treated) -> tuple[np.ndarray, np.ndarray]:
    """Set codes 0..S−1 in order of first appearance, and the set sizes. Integer ids that never
    decrease (matched sets listed set by set) are coded from the runs of equal ids, no hashing:
    each run's length is its set's size and its code is repeated that often."""
    set_id = np.asarray(set_id)
    if set_id.dtype.kind in "iu" and len(set_id) > 1 and bool(np.all(set_id[1:] >= set_id[:-1])):
        size = np.diff(np.concatenate([[0], np.flatnonzero(set_id[1:] != set_id[:-1]) + 1, [len(set_id)]]))
        n_sets = len(size)
        codes = np.repeat(np.arange(n_sets, dtype=np.int64), size)
    else:
        codes, _ = pd.factorize(set_id, sort=False)
        n_sets = int(codes.max()) + 1 if len(codes) else 0
        size = np.bincount(codes, minlength=n_sets)
    n_t = np.bincount(codes[treated], minlength=n_sets)
    if n_sets == 0 or np.any(size < 2) or np.any(n_t != 1):
        raise DesignError("Rosenbaum bounds need matched sets with exactly one treated unit and at least one comparison")
    return codes.astype(np.int64, copy=False), size


@by_label("y", as_is=("set_id", "treated"), labelled=False)  # (one p-value per Γ)
def aligned_rank_pvalue(y, set_id, treated, gamma=1.0) -> np.ndarray:
    """Upper bound on the one-sided (greater) p-value of the aligned-rank test for matched
    sets at each Γ in ``gamma`` (separable approximation)."""
    treated = np.asarray(treated, bool)
    codes, size = _set_codes(set_id, treated)
    s = _Sets.build(np.asarray(y, float), codes, size, treated)
    return np.array([s.pvalue(float(g)) for g in np.atleast_1d(gamma)])


def _gamma_search(pfun, alpha: float) -> float:
    """The Γ at which the p-value bound ``pfun`` (rising with Γ) reaches ``alpha``: Brent's
    method on log Γ over [0, log :data:`GAMMA_MAX`]; 1.0 if ``pfun(1) ≥ alpha``, ``inf`` if the
    bound is still below alpha at the bracket's end. That end is ``exp(log GAMMA_MAX)``
    (10000.00000000001: GAMMA_MAX to rounding), the Γ brentq evaluates there, so it is evaluated
    once and decides ``inf`` (until 2026-12-05 ``pfun(GAMMA_MAX)`` decided it, one O(N) bound
    more: the two differ only for a bound that reaches alpha between those Γ, or that rounding
    makes fall between them, where brentq then raised)."""
    if pfun(1.0) >= alpha:
        return 1.0
    end = math.log(GAMMA_MAX)
    p_end = pfun(math.exp(end))
    if p_end < alpha:
        return math.inf
    f = lambda lg: (p_end if lg == end else pfun(math.exp(lg))) - alpha  # noqa: E731
    return float(math.exp(_brentq(f, 0.0, end, xtol=1e-6)))


def _brentq(f, a: float, b: float, xtol: float) -> float:
    """``scipy.optimize.brentq(f, a, b, xtol=xtol)``, without keeping ``f`` alive afterwards:
    brentq wraps f in a closure that refers to itself, a reference cycle that held f — and the
    arrays f reads (the sets' sums: n-long) — until the cyclic garbage collector ran."""
    box = [f]
    try:
        return optimize.brentq(lambda x: box[0](x), a, b, xtol=xtol)
    finally:
        box.clear()


# --------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class RosenbaumBounds(ResultMixin):
    """Rosenbaum bounds for one matched comparison (see the module docstring).

    ``test`` names the statistic; ``direction`` is "greater" or "less" (the sign of the effect
    tested); ``two_sided`` whether the test is two-sided (the direction taken from the data) or
    one-sided in a direction fixed in advance; ``gamma_alpha`` the Γ at which the test's
    upper-bound p-value reaches ``alpha``; ``table`` one row per listed Γ: ``gamma,
    pvalue_upper, pvalue_lower`` (the bounds on the one-sided p-value in ``direction``), when
    two-sided ``pvalue_upper_two_sided`` (twice ``pvalue_upper``, capped at 1), and ``hl_low,
    hl_high, ci_low, ci_high`` (HL estimates and the sensitivity interval, in outcome units).
    """

    test: str
    direction: str
    n_sets: int
    n_units: int
    alpha: float
    gamma_alpha: float
    table: pd.DataFrame = Frame()
    label: str = ""
    two_sided: bool = False

    @property
    def sides(self) -> str:
        """Which test Γ at α is about, in words: "two-sided" or "one-sided 'greater'" (or 'less')."""
        return "two-sided" if self.two_sided else f"one-sided '{self.direction}'"

    @property
    def pvalue_bound(self) -> pd.Series:
        """The upper bound on the test's p-value at each Γ of the table (two- or one-sided)."""
        return self.table["pvalue_upper_two_sided" if self.two_sided else "pvalue_upper"]

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        g = "never (not significant at Γ = 1)" if self.gamma_alpha <= 1 else f"Γ = {self.gamma_alpha:.3f}"
        how = (f"two-sided: twice the one-sided bound in the estimate's direction '{self.direction}'" if self.two_sided
               else f"one-sided '{self.direction}', the direction fixed in advance")
        lines = [
            f"Rosenbaum bounds ({self.test}; {how}){' — ' + self.label if self.label else ''}",
            f"  {self.n_sets:,} matched sets, {self.n_units:,} units; the upper bound on the {self.sides} p-value "
            f"reaches α = {self.alpha:g} at {g}",
            self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        ]
        return "\n".join(lines)


@by_label("y", as_is=("set_id", "treated"))
def rosenbaum_bounds(
    y,
    set_id,
    treated,
    *,
    gammas=(1.0, 1.5, 2.0, 3.0),
    alpha: float = 0.05,
    direction: str | None = None,
    two_sided: bool | None = None,
    hl_gammas=(),
    statistic: str = "rank",
    trim: float = 2.5,
    inner: float = 0.0,
    label: str = "",
) -> RosenbaumBounds:
    """Rosenbaum bounds for matched sets in long format: outcome ``y``, matched-set id
    ``set_id`` and ``treated`` (one treated unit per set; Series are paired by label, docs/api.md
    "Several vectors"). ``statistic="rank"``: pairs use the
    signed-rank statistic, any larger set switches to aligned ranks; ``statistic="huber"``:
    Huber's M-statistic (:class:`HuberScores` with ``trim`` and ``inner``; Rosenbaum 2007,
    sensitivitymv's ``senmv``) for pairs and sets alike. ``direction``: "greater" / "less"
    (default: the sign of the mean treated-minus-set-mean difference). ``two_sided`` (default:
    when ``direction`` is not given) tests two-sided, the p-value bound twice the one-sided
    bound in ``direction`` (capped at 1): a direction chosen from the data and tested one-sided
    at α rejects a true null about 2α of the time; give ``two_sided=True`` with a ``direction``
    taken from another estimate of the same effect. The table has one row
    per Γ in ``gammas`` and ``hl_gammas``; the Hodges–Lehmann range and the sensitivity
    interval are computed at ``hl_gammas`` (each takes a few dozen re-rankings of the data)."""
    return _bounds([y, set_id, treated], gammas=gammas, alpha=alpha, direction=direction, two_sided=two_sided,
                   hl_gammas=hl_gammas, statistic=statistic, trim=trim, inner=inner, label=label)


def check_gammas(values, name: str) -> np.ndarray:
    """``values`` as an array of Γ; a DataError naming the option ``name`` unless each is a finite
    number of at least 1 (NaN compares false, so it slipped past a check of Γ < 1)."""
    g = np.atleast_1d(np.asarray(values, dtype=float))
    bad = g[~(np.isfinite(g) & (g >= 1))]
    if bad.size:
        raise DataError(f"{name}: every Γ must be a finite number of at least 1; got {', '.join(f'{v:g}' for v in bad)}")
    return g


def check_direction(value, name: str) -> str | None:
    """The direction of a Rosenbaum test fixed in advance ("greater" or "less"), or None when it
    is to be taken from the estimate (``value`` None or ""); a DataError naming the option
    ``name`` otherwise."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if not (isinstance(value, str) and value in ("greater", "less")):
        raise DataError(f"{name} must be 'greater' or 'less' (the sign of the effect on the outcome's scale, fixed in "
                        f"advance: tested one-sided) or empty (the estimate's sign: tested two-sided); got {value!r}")
    return value


def _bounds(data: list, *, gammas, alpha, direction, hl_gammas, statistic, trim, inner, label,
            two_sided: bool | None = None) -> RosenbaumBounds:
    """:func:`rosenbaum_bounds` of ``data = [y, set_id, treated]``, taken out of the list (emptied):
    a caller that holds the arrays nowhere else has them freed once read — the set ids once
    coded, the responses once the bound's sums are formed, unless the Hodges–Lehmann estimates
    re-rank them — instead of through the p-values and the Γ search."""
    y, set_id, treated = data
    data.clear()
    y = np.asarray(y, dtype=float)
    set_id = np.asarray(set_id)
    treated = np.asarray(treated).astype(bool)
    if not (len(y) == len(set_id) == len(treated)):
        raise DataError("y, set_id and treated must have the same length")
    if not np.all(np.isfinite(y)):
        raise DataError(f"Rosenbaum bounds: {int((~np.isfinite(y)).sum()):,} unit(s) have no outcome")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    hl_set = set(check_gammas(hl_gammas, "hl_gammas").tolist())
    gammas = np.array(sorted(set(check_gammas(gammas, "gammas").tolist()) | hl_set))
    if statistic not in ("rank", "huber"):
        raise DataError(f"statistic must be 'rank' or 'huber'; got {statistic!r}")
    scores = HuberScores(float(trim), float(inner)) if statistic == "huber" else None
    codes, size = _set_codes(set_id, treated)
    del set_id
    n_sets, n_units = len(size), len(y)
    if two_sided is None:
        two_sided = direction is None
    if direction is None:
        mean = np.bincount(codes, weights=y, minlength=n_sets) / size
        direction = "greater" if np.mean(y[treated] - mean[codes[treated]]) >= 0 else "less"
        del mean
    if direction not in ("greater", "less"):
        raise DataError(f"direction must be 'greater' or 'less'; got {direction!r}")
    sign = 1.0 if direction == "greater" else -1.0
    ys = y if sign > 0 else -y
    del y
    level = alpha / 2 if two_sided else alpha  # of the one-sided bound: twice it reaches α where it reaches α/2
    pairs = scores is None and bool(np.all(size == 2))
    hl = _HL(ys, codes, treated, size, pairs, alpha, scores) if hl_set else None
    if pairs:
        d = _pair_differences(ys, codes, treated, n_sets)
        del ys, codes, treated
        T, S1, S2 = _signed_rank(d)
        p_up = _sr_p(T, S1, S2, gammas)
        p_lo = _sr_p(T, S1, S2, gammas, lower=True)
        g_alpha = signed_rank_gamma(d, level)
        test = "Wilcoxon signed rank (pairs)"
    else:
        sets = _Sets.build(ys, codes, size, treated, scores)
        del ys, codes, treated
        p_up = np.array([sets.pvalue(g) for g in gammas])
        # at Γ = 1 every μ of a set is its mean, whichever bound: with exact sums (aligned ranks) the
        # lower bound's sums are the upper's, bit for bit
        p_lo = np.array([p if g == 1 and sets.rise is not None else sets.pvalue(g, lower=True)
                         for g, p in zip(gammas.tolist(), p_up.tolist())])
        known = dict(zip(gammas.tolist(), p_up.tolist()))  # (Γ = 1 is in the table by default)
        g_alpha = _gamma_search(lambda g: known[g] if g in known else sets.pvalue(g), level)
        test = ("aligned rank (matched sets; separable approximation)" if scores is None else
                f"Huber M-statistic (trim {scores.trim:g}, inner {scores.inner:g}; separable approximation)")
    rows = {"gamma": gammas, "pvalue_upper": p_up, "pvalue_lower": p_lo}
    if two_sided:
        rows["pvalue_upper_two_sided"] = np.minimum(2 * p_up, 1.0)
    if hl is not None:
        est = np.array([hl.interval(g) if g in hl_set else (math.nan,) * 4 for g in gammas]) * sign
        if sign < 0:  # the bounds swap when the outcome is mirrored
            est = est[:, [1, 0, 3, 2]]
        rows.update(hl_low=est[:, 0], hl_high=est[:, 1], ci_low=est[:, 2], ci_high=est[:, 3])
    return RosenbaumBounds(test, direction, n_sets, n_units, float(alpha), g_alpha, pd.DataFrame(rows), label,
                           bool(two_sided))


class _HL:
    """Hodges–Lehmann estimates and sensitivity intervals for an additive effect at Γ."""

    def __init__(self, y, codes, treated, size, pairs, alpha, scores=None):
        self.y, self.codes, self.treated, self.size, self.pairs, self.scores = y, codes, treated, size, pairs, scores
        self.z = stats.norm.isf(alpha / 2)
        if pairs:
            self.d = _pair_differences(y, codes, treated, len(size))
            span = np.ptp(self.d)
            self.lo, self.hi = self.d.min() - 1.0 - span, self.d.max() + 1.0 + span
        else:
            span = np.ptp(y)
            self.lo, self.hi = -2 * span - 1.0, 2 * span + 1.0
        self.tol = 1e-6 * max(float(np.std(y)), 1e-12)  # far below any reported digit

    def _deviate(self, tau, gamma, lower, z_only):
        """``T(τ) − E(τ)`` (``z_only`` False) or the standardized deviate."""
        if self.pairs:  # zeros kept and counted half, so that Γ = 1 gives the median of the Walsh averages
            x = self.d - tau
            r = _ranks_desc(np.abs(x))[0]
            T, S1, S2 = float(r @ ((x > 0) + 0.5 * (x == 0))), float(r.sum()), float(r @ r)
            p = gamma / (1 + gamma)
            p = 1 - p if lower else p
            E, V = p * S1, p * (1 - p) * S2
        else:
            s = _Sets.build(self.y - tau * self.treated, self.codes, self.size, self.treated, self.scores)
            E, V = s.moments(gamma, lower)
            T = s.T
        if not z_only:
            return T - E
        return (T - E) / math.sqrt(V) if V > 0 else 0.0

    def _root(self, f):
        a, b = self.lo, self.hi
        fa, fb = f(a), f(b)
        if fa <= 0 or fb >= 0:
            return math.nan
        return float(_brentq(f, a, b, xtol=self.tol))

    def _mid_root(self, f):
        """The Hodges–Lehmann point of a decreasing step function ``f``: the midpoint of
        ``sup{τ: f(τ) > 0}`` and ``inf{τ: f(τ) < 0}`` (Hodges & Lehmann 1963; Rosenbaum 1993),
        which at Γ = 1 for pairs is the median of the Walsh averages. A root-finder's point of a
        flat stretch where ``f = 0`` depends on its path (−0.459365 where the median is −0.458929)."""
        low = self._root(lambda t: 1.0 if f(t) > 0 else -1.0)
        high = self._root(lambda t: 1.0 if f(t) >= 0 else -1.0)
        return 0.5 * (low + high)

    def interval(self, gamma: float) -> tuple[float, float, float, float]:
        """``(HL low, HL high, CI low, CI high)`` at Γ."""
        hl_low = self._mid_root(lambda t: self._deviate(t, gamma, False, False))
        hl_high = hl_low if gamma == 1 else self._mid_root(lambda t: self._deviate(t, gamma, True, False))
        ci_low = self._root(lambda t: self._deviate(t, gamma, False, True) - self.z)
        ci_high = self._root(lambda t: self._deviate(t, gamma, True, True) + self.z)
        return hl_low, hl_high, ci_low, ci_high


__all__ = ["rosenbaum_bounds", "RosenbaumBounds", "HuberScores", "signed_rank_pvalue", "signed_rank_gamma", "aligned_rank_pvalue"]
