"""E-values (VanderWeele & Ding 2017) and Rosenbaum bounds: published examples, an independent
computation (scipy's Wilcoxon test) and brute-force enumeration for tiny matched sets."""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pleval import _workers
from pleval.errors import DataError, DesignError
from pleval.sensitivity import (aligned_rank_pvalue, evalue_ci, evalue_rr, evalue_smd, rosenbaum_bounds, signed_rank_gamma,
                                signed_rank_pvalue)
from pleval.sensitivity.rosenbaum import _set_codes, _Sets
from tests.conftest import sim_reps

# Morton et al. (1982) lead in children's blood, 33 matched pairs (Rosenbaum 2002, ch. 4; rbounds' psens example)
LEAD_T = np.array([38, 23, 41, 18, 37, 36, 23, 62, 31, 34, 24, 14, 21, 17, 16, 20, 15, 10, 45, 39, 22, 35, 49, 48, 44,
                   35, 43, 39, 34, 13, 73, 25, 27], float)
LEAD_C = np.array([16, 18, 18, 24, 19, 11, 10, 15, 16, 18, 18, 13, 19, 10, 16, 16, 24, 13, 9, 14, 21, 19, 7, 18, 19,
                   12, 11, 22, 25, 16, 13, 11, 13], float)


# ---- E-values -------------------------------------------------------------------------------
def test_evalue_published_examples():
    """VanderWeele & Ding (2017), Ann Intern Med 167:268: RR 3.9 (95% CI 1.8–8.7) -> E-values
    7.26 and 3.0; RR 0.80 (0.71–0.91) -> 1.81 and 1.43."""
    assert round(float(evalue_rr(3.9)), 2) == 7.26
    assert round(evalue_ci(3.9, 1.8, 8.7), 2) == 3.00
    assert round(float(evalue_rr(0.80)), 2) == 1.81
    assert round(evalue_ci(0.80, 0.71, 0.91), 2) == 1.43
    assert evalue_ci(1.3, 0.9, 1.8) == 1.0  # the interval contains the null


def test_evalue_smd():
    """RR ≈ exp(0.91·d) (as the EValue package's evalues.MD); the limit closest to the null."""
    d, lo, hi = 0.5, 0.3, 0.7
    e = evalue_smd(d, lo, hi)
    rr = math.exp(0.91 * d)
    assert e.evalue == pytest.approx(rr + math.sqrt(rr * (rr - 1)))
    rl = math.exp(0.91 * lo)
    assert e.evalue_ci == pytest.approx(rl + math.sqrt(rl * (rl - 1)))
    neg = evalue_smd(-d, -hi, -lo)  # a harmful effect: symmetric on the log scale
    assert neg.evalue == pytest.approx(e.evalue) and neg.evalue_ci == pytest.approx(e.evalue_ci)
    assert evalue_smd(0.1, -0.05, 0.25).evalue_ci == 1.0
    with pytest.raises(DataError):
        evalue_smd(0.1, 0.3, 0.2)


# ---- Rosenbaum: pairs -----------------------------------------------------------------------
def test_lead_pairs_gamma_one_matches_wilcoxon():
    """At Γ = 1 the bound is Wilcoxon's signed-rank test: T = 499 (the V that R's wilcox.exact
    reports for these data), the normal-approximation p-value of scipy (ties corrected, no
    continuity correction), and the Hodges–Lehmann estimate is the median of the Walsh
    averages (d_i + d_j)/2, i ≤ j (Hodges & Lehmann 1963), computed independently."""
    d = LEAD_T - LEAD_C
    from pleval.sensitivity.rosenbaum import _signed_rank

    T, S1, S2 = _signed_rank(d)
    assert T == 499
    ref = stats.wilcoxon(d, alternative="greater", zero_method="wilcox", correction=False, method="approx")
    assert signed_rank_pvalue(d, 1.0) == pytest.approx(ref.pvalue, rel=1e-10)
    ids = np.repeat(np.arange(33), 2)
    y = np.column_stack([LEAD_T, LEAD_C]).ravel()
    tr = np.tile([True, False], 33)
    rb = rosenbaum_bounds(y, ids, tr, gammas=[1.0], hl_gammas=[1.0, 2.0])
    row = rb.table.set_index("gamma")
    two = stats.wilcoxon(d, alternative="two-sided", zero_method="wilcox", correction=False, method="approx")
    assert rb.two_sided and row.loc[1.0, "pvalue_upper_two_sided"] == pytest.approx(two.pvalue, rel=1e-10)
    i, j = np.triu_indices(len(d))
    assert row.loc[1.0, "hl_low"] == pytest.approx(np.median((d[i] + d[j]) / 2), abs=1e-4)
    assert row.loc[2.0, "hl_low"] < 15.25 < row.loc[2.0, "hl_high"]
    assert row.loc[2.0, "ci_low"] < row.loc[2.0, "hl_low"]


def test_lead_gamma_search_and_monotone():
    """The closed-form Γ at α has upper-bound p-value exactly α; the bound rises with Γ; the
    lower bound is the mirror image (p with 1/(1+Γ))."""
    d = LEAD_T - LEAD_C
    g = signed_rank_gamma(d, 0.05)
    assert 4 < g < 5
    assert signed_rank_pvalue(d, g) == pytest.approx(0.05, rel=1e-9)
    assert signed_rank_gamma(d, 0.025) < g
    p = signed_rank_pvalue(d, [1, 2, 3, 4, 5, 6])
    assert np.all(np.diff(p) > 0)
    assert signed_rank_gamma(np.array([1.0, -1.0, 2.0, -2.0]), 0.05) == 1.0  # not significant at Γ = 1


def test_lead_two_sided_when_the_direction_is_the_estimates():
    """With the direction taken from the data (the default) the p-value bound is twice the
    one-sided one, capped at 1, and Γ at α is where that reaches α; a direction given in
    advance is tested one-sided at α (unless ``two_sided=True``). Against the bound computed
    here from scipy's ranks: ``1 − Φ((T − pS₁)/√(p(1 − p)S₂))``, p = Γ/(1 + Γ)."""
    d = LEAD_T - LEAD_C
    d = d[d != 0]  # (one zero difference, dropped)
    r = stats.rankdata(np.abs(d))

    def bound(gamma):
        p = gamma / (1 + gamma)
        return stats.norm.sf((r[d > 0].sum() - p * r.sum()) / math.sqrt(p * (1 - p) * (r**2).sum()))

    ids = np.repeat(np.arange(33), 2)
    y = np.column_stack([LEAD_T, LEAD_C]).ravel()
    tr = np.tile([True, False], 33)
    gammas = [1.0, 3.0, 5.0, 30.0]
    two = rosenbaum_bounds(y, ids, tr, gammas=gammas)
    one = rosenbaum_bounds(y, ids, tr, gammas=gammas, direction="greater")
    expect = np.array([bound(g) for g in gammas])
    assert two.two_sided and not one.two_sided and two.direction == one.direction == "greater"
    np.testing.assert_allclose(two.table["pvalue_upper"], expect, rtol=1e-10)
    np.testing.assert_allclose(two.table["pvalue_upper_two_sided"], np.minimum(2 * expect, 1), rtol=1e-10)
    assert two.table["pvalue_upper_two_sided"].iloc[-1] == 1.0  # capped
    assert "pvalue_upper_two_sided" not in one.table
    assert 2 * bound(two.gamma_alpha) == pytest.approx(0.05, rel=1e-9)
    assert bound(one.gamma_alpha) == pytest.approx(0.05, rel=1e-9)
    assert 1 < two.gamma_alpha < one.gamma_alpha
    assert rosenbaum_bounds(y, ids, tr, direction="greater", two_sided=True).gamma_alpha == two.gamma_alpha
    assert rosenbaum_bounds(-y, ids, tr).gamma_alpha == pytest.approx(two.gamma_alpha, rel=1e-12)  # mirrored: "less"
    assert "two-sided" in two.summary() and "one-sided 'greater'" in one.summary()


def test_pairs_moments_brute_force():
    """For 5 pairs, enumerate every unobserved u ∈ {0,1}^10 and every assignment: the largest
    mean of T over u, and its variance, are the E⁺ and V⁺ the bound uses."""
    rng = np.random.default_rng(5)
    d = rng.normal(0.5, 1, 5)
    gamma = 2.5
    r = stats.rankdata(np.abs(d))
    # pair s has units (a, b) with |difference| = |d_s|; T adds r_s when the higher unit is treated
    best = (-np.inf, 0.0)
    for u in itertools.product([0, 1], repeat=10):
        u = np.array(u).reshape(5, 2)
        p_hi = gamma ** u[:, 0] / (gamma ** u[:, 0] + gamma ** u[:, 1])  # unit 0 is the higher one
        mean = float(np.sum(r * p_hi))
        var = float(np.sum(r**2 * p_hi * (1 - p_hi)))
        if mean > best[0] + 1e-12 or (abs(mean - best[0]) <= 1e-12 and var > best[1]):
            best = (mean, var)
    p = gamma / (1 + gamma)
    assert best[0] == pytest.approx(p * r.sum())
    assert best[1] == pytest.approx(p * (1 - p) * np.sum(r**2))


# ---- Rosenbaum: matched sets ----------------------------------------------------------------
def _first_treated(sizes):
    """Set ids of sets of ``sizes``, listed set by set, and the treated flags (each set's first unit)."""
    ids = np.repeat(np.arange(len(sizes)), sizes)
    tr = np.zeros(len(ids), bool)
    tr[np.concatenate([[0], np.cumsum(sizes)[:-1]])] = True
    return ids, tr


def test_sets_separable_brute_force():
    """Tiny matched sets of sizes 2–4: the separable approximation's per-set mean is the
    maximum over every u ∈ {0,1}^{n_s} of the expected rank of the treated unit, and its
    variance the largest among the maximizers (Gastwirth, Krieger & Rosenbaum 2000)."""
    rng = np.random.default_rng(6)
    sizes = [2, 3, 4, 3]
    ids, tr = _first_treated(sizes)
    y = rng.normal(size=len(ids)) + 0.8 * tr
    codes, size = _set_codes(ids, tr)
    s = _Sets.build(y, codes, size, tr)
    mean = np.bincount(codes, weights=y) / size
    q = stats.rankdata(y - mean[codes])
    for gamma in (1.0, 1.7, 3.0):
        E = V = 0.0
        El = 0.0
        for k in range(len(sizes)):
            qs = q[codes == k]
            top = (-np.inf, 0.0)
            low = np.inf
            for u in itertools.product([0, 1], repeat=len(qs)):
                w = gamma ** np.array(u, float)
                pi = w / w.sum()
                m = float(pi @ qs)
                v = float(pi @ qs**2 - m**2)
                if m > top[0] + 1e-12 or (abs(m - top[0]) <= 1e-12 and v > top[1]):
                    top = (m, v)
                low = min(low, m)
            E, V, El = E + top[0], V + top[1], El + low
        Es, Vs = s.moments(gamma)
        assert Es == pytest.approx(E) and Vs == pytest.approx(V)
        assert s.moments(gamma, lower=True)[0] == pytest.approx(El)
    # Γ = 1: the permutation mean and variance of the aligned-rank statistic
    E1 = sum(q[codes == k].mean() for k in range(len(sizes)))
    V1 = sum(q[codes == k].var() for k in range(len(sizes)))
    assert s.moments(1.0) == pytest.approx((E1, V1))


def _worst_case_probabilities(q, gamma):
    """Treatment probabilities of one set's units (aligned ranks ``q``) under the u ∈ {0,1}^n
    that maximizes the expected rank of the treated unit at Γ (largest variance among ties),
    found by trying every u."""
    best = (-np.inf, 0.0, None)
    for u in itertools.product([0, 1], repeat=len(q)):
        w = gamma ** np.array(u, float)
        pi = w / w.sum()
        m, v = float(pi @ q), float(pi @ q**2 - (pi @ q) ** 2)
        if m > best[0] + 1e-12 or (abs(m - best[0]) <= 1e-12 and v > best[1]):
            best = (m, v, pi)
    return best[2]


def test_aligned_rank_pvalue_against_the_enumerated_distribution():
    """Seven sets of 2–4 (864 assignments): the aligned ranks by scipy's ``rankdata`` of each
    response minus its set mean; at each Γ the exact distribution of T = Σ treated ranks over
    every assignment, the treated unit of each set drawn with the worst-case u's probabilities
    (every u tried); ``aligned_rank_pvalue`` is 1 − Φ((T − E)/√V) with that distribution's mean
    and variance. The exact mid-p tail of the same distribution is within 0.035 of it (the normal
    approximation with seven sets)."""
    rng = np.random.default_rng(44)
    sizes = [2, 3, 4, 3, 2, 4, 3]
    ids, tr = _first_treated(sizes)
    y = rng.normal(size=len(ids)) + 0.7 * tr
    members = [np.flatnonzero(ids == k) for k in range(len(sizes))]
    mean = np.array([y[m].mean() for m in members])
    q = stats.rankdata(y - mean[ids])
    T = q[tr].sum()
    gammas = [1.0, 1.5, 3.0]
    got = aligned_rank_pvalue(y, ids, tr, gammas)
    for gamma, p in zip(gammas, got):
        probs = [_worst_case_probabilities(q[m], gamma) for m in members]
        t = np.array([sum(q[m[j]] for m, j in zip(members, pick)) for pick in itertools.product(*map(range, sizes))])
        pr = np.array([math.prod(pi[j] for pi, j in zip(probs, pick)) for pick in itertools.product(*map(range, sizes))])
        E = pr @ t
        V = pr @ t**2 - E**2
        assert p == pytest.approx(stats.norm.sf((T - E) / math.sqrt(V)), rel=1e-10)
        mid_p = pr @ ((t > T + 1e-9) + 0.5 * (np.abs(t - T) <= 1e-9))
        assert abs(p - mid_p) < 0.035
    assert np.all(np.diff(got) > 0)
    assert aligned_rank_pvalue(y, ids, tr)[0] == pytest.approx(got[0], rel=1e-15)  # Γ = 1 by default
    # the direction from the data: the two-sided bound doubles the one-sided one, and its Γ at α
    # (α = 0.2 here: seven sets) is where the enumerated distribution's normal tail is α/2
    rb = rosenbaum_bounds(y, ids, tr, gammas=gammas, alpha=0.2)
    assert rb.two_sided and rb.direction == "greater"
    np.testing.assert_allclose(rb.table["pvalue_upper"], got, rtol=1e-12)
    np.testing.assert_allclose(rb.table["pvalue_upper_two_sided"], np.minimum(2 * got, 1), rtol=1e-12)
    probs = [_worst_case_probabilities(q[m], rb.gamma_alpha) for m in members]
    picks = list(itertools.product(*map(range, sizes)))
    t = np.array([sum(q[m[j]] for m, j in zip(members, pick)) for pick in picks])
    pr = np.array([math.prod(pi[j] for pi, j in zip(probs, pick)) for pick in picks])
    E = pr @ t
    assert 2 * stats.norm.sf((T - E) / math.sqrt(pr @ t**2 - E**2)) == pytest.approx(0.2, abs=1e-5)
    assert rosenbaum_bounds(y, ids, tr, alpha=0.2, direction="greater").gamma_alpha > rb.gamma_alpha


@pytest.mark.slow
def test_aligned_rank_pvalue_holds_its_size():
    """No effect, 120 sets of 2–6 (set effects, t₅ noise): with the treated unit drawn at random
    in each set (Γ = 1 true) the test rejects at 5% about 5% of the time and the Γ = 2 bound
    less; with the treated unit drawn at Γ = 2 under the worst-case u (fixed responses), the
    Γ = 2 bound rejects about 5%: the bound is attained. Full size: 4,000 data sets each."""
    reps = sim_reps(4000, minimum=600)
    rng = np.random.default_rng(2026_12_05)
    S = 120

    def sets():
        sizes = rng.integers(2, 7, S)
        ids = np.repeat(np.arange(S), sizes)
        y = rng.normal(size=S)[ids] + rng.standard_t(5, size=len(ids))
        return sizes, ids, np.concatenate([[0], np.cumsum(sizes)[:-1]]), y

    def draw(w, first, sizes):  # one treated unit per set, with probability ∝ w within its set
        cw = np.cumsum(w)
        before = cw[first] - w[first]
        tr = np.zeros(len(w), bool)
        tr[np.searchsorted(cw, before + rng.random(S) * (cw[first + sizes - 1] - before), side="right")] = True
        return tr

    rej = np.zeros(2)
    for _ in range(reps):
        sizes, ids, first, y = sets()
        rej += aligned_rank_pvalue(y, ids, draw(np.ones(len(y)), first, sizes), [1.0, 2.0]) < 0.05
    sizes, ids, first, y = sets()
    q = stats.rankdata(y - (np.bincount(ids, weights=y) / sizes)[ids])
    w = np.concatenate([_worst_case_probabilities(q[f:f + n], 2.0) for f, n in zip(first, sizes)])
    rej_worst = sum(aligned_rank_pvalue(y, ids, draw(w, first, sizes), 2.0)[0] < 0.05 for _ in range(reps))
    se = math.sqrt(0.05 * 0.95 / reps)
    size1, size2, worst = rej[0] / reps, rej[1] / reps, rej_worst / reps
    assert abs(size1 - 0.05) < 3 * se, f"Γ = 1: {size1:.4f} of {reps}"
    assert size2 < 0.05, f"Γ = 2 bound under random assignment: {size2:.4f}"
    assert abs(worst - 0.05) < 3 * se, f"Γ = 2 worst case: {worst:.4f} of {reps}"


@pytest.mark.slow
def test_rosenbaum_bounds_at_gamma_one_hold_their_size():
    """No effect, 60 pairs and 40 sets of three (pair/set effects, t₅ noise; assignment random
    within sets): the bound at Γ = 1 in a fixed direction rejects about 5% (signed ranks and
    aligned ranks); in the estimate's direction (the default) the test is two-sided, and Γ at α
    exceeds 1 about 5% of the time too — the rejections of the two-sided normal test of T at
    Γ = 1, counted here from T's permutation mean and variance (before 2026-12-05 the test was
    one-sided in the direction chosen from the data: 10.4% and 9.25%, 2α). Full size: 2,000
    data sets."""
    reps = sim_reps(2000, minimum=500)
    rng = np.random.default_rng(2026_12_05)
    designs = [_first_treated([2] * 60), _first_treated([3] * 40)]
    fixed, looked, by_hand = np.zeros(2), np.zeros(2), np.zeros(2)
    z = stats.norm.isf(0.025)
    for _ in range(reps):
        for i, (ids, tr) in enumerate(designs):
            y = rng.normal(size=ids[-1] + 1)[ids] + rng.standard_t(5, size=len(ids))
            fixed[i] += rosenbaum_bounds(y, ids, tr, gammas=[1.0], direction="greater").table["pvalue_upper"].iloc[0] < 0.05
            rb = rosenbaum_bounds(y, ids, tr, gammas=[1.0])
            looked[i] += rb.gamma_alpha > 1
            assert rb.two_sided and (rb.gamma_alpha > 1) == (rb.table["pvalue_upper_two_sided"].iloc[0] < 0.05)
            by_hand[i] += abs(_permutation_deviate(y, ids, tr)) > z
    fixed, looked = fixed / reps, looked / reps
    se = 3 * math.sqrt(0.05 * 0.95 / reps)
    assert np.all(np.abs(fixed - 0.05) < se), fixed
    assert np.all(np.abs(looked - 0.05) < se), looked
    assert np.all(np.abs(looked - by_hand / reps) <= 0.003), (looked, by_hand / reps)  # direction by mean vs by T


def _permutation_deviate(y, ids, tr):
    """(T − E)/√V at Γ = 1 of the signed-rank (pairs) or aligned-rank statistic, by scipy's
    ``rankdata``: T's mean and variance over random assignment within sets."""
    sizes = np.bincount(ids)
    if np.all(sizes == 2):
        d = y[tr] - y[~tr]
        d = d[d != 0]
        r = stats.rankdata(np.abs(d))
        return (r[d > 0].sum() - r.sum() / 2) / math.sqrt((r**2).sum() / 4)
    q = stats.rankdata(y - (np.bincount(ids, weights=y) / sizes)[ids])
    qbar = np.bincount(ids, weights=q) / sizes
    var = np.bincount(ids, weights=q**2) / sizes - qbar**2
    return (q[tr].sum() - qbar.sum()) / math.sqrt(var.sum())


def _moments_every_position(s, gamma, lower=False):
    """The separable bound's sums with μ and v formed at every kept position (s's arrays): v is
    computed only at the positions tied with their set's best, which must give the same bits."""
    g = 1.0 / gamma if lower else gamma
    den = s.a * g + s.b
    mu = (s.top1 * g + (np.repeat(s.total1, s.count) - s.top1)) / den
    var = (s.top2 * g + (np.repeat(s.total2, s.count) - s.top2)) / den - mu * mu
    key = -mu if lower else mu
    best = np.maximum.reduceat(key, s.start)
    tie = key >= np.repeat(best - (1e-12 * np.abs(best) + 1e-12), s.count)
    vbest = np.maximum.reduceat(np.where(tie, var, -np.inf), s.start)
    return float((-best if lower else best).sum()), float(np.maximum(vbest, 0.0).sum())


def test_sets_moments_exact_and_sums_by_set(monkeypatch):
    """Sets of 2–12 and one of 40 with ties (rounded responses) and Huber scores: the bound's
    sums, formed a chunk of whole sets at a time (the default chunks, and chunks of 1 and 64
    positions, a set longer than a chunk on its own), in one thread or two (runs of chunks), are
    bit-identical to those formed at every position in one pass, and each kept position's
    running sums are those of its set's a largest scores (a = 1 … n_s − 1) and of the others."""
    from pleval.sensitivity import rosenbaum
    from pleval.sensitivity.rosenbaum import HuberScores

    rng = np.random.default_rng(11)
    size = rng.integers(2, 13, 300)
    size[::3] = 2
    size[5] = 40
    ids, tr = _first_treated(size)
    perm = rng.permutation(len(ids))
    ids, tr = ids[perm], tr[perm]
    y = np.round(rng.normal(size=len(ids)) + 0.3 * tr, 1)
    codes, size = _set_codes(ids, tr)
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    threads, best = [], _Sets._best

    def recorded(*a):
        threads.append(threading.get_ident())
        return best(*a)

    monkeypatch.setattr(_Sets, "_best", recorded)
    default = rosenbaum._CHUNK
    for chunk in (default, 1, 64):
        monkeypatch.setattr(rosenbaum, "_CHUNK", chunk)
        for scores in (None, HuberScores()):
            s = _Sets.build(y, codes, size, tr, scores)
            for gamma in (1.0, 1.25, 2.0, 7.0, 1e4):
                for lower in (False, True):
                    every = _moments_every_position(s, gamma, lower)
                    for cores in (1, 2):  # the chunks' runs in one thread and in two
                        threads.clear()
                        with _workers.limited(cores):
                            assert s.moments(gamma, lower) == every
                        # every position (Huber scores) by chunks; else each set's peak (_peaks), or
                        # at Γ = 1 the set means (_even)
                        runs = 0 if scores is None else cores if chunk < default else 1
                        assert len(threads) == runs and (threading.get_ident() in threads) == (runs == 1)
    k = 17  # one set, by hand (untied responses)
    y = rng.normal(size=len(ids))
    q = stats.rankdata(y - (np.bincount(codes, weights=y) / size)[codes])
    qk = np.sort(q[codes == k])[::-1]
    at = slice(s.start[k], s.start[k] + s.count[k])
    s = _Sets.build(y, codes, size, tr)
    assert s.a.dtype == np.int8 and s.a[at].tolist() == list(range(1, size[k]))
    assert s.b[at].tolist() == [size[k] - a for a in range(1, size[k])]
    np.testing.assert_allclose(s.top1[at], np.cumsum(qk)[:-1])
    np.testing.assert_allclose(s.total1[k] - s.top1[at], qk.sum() - np.cumsum(qk)[:-1])
    np.testing.assert_allclose(s.top2[at], np.cumsum(qk**2)[:-1])


def test_sets_peaks_equal_every_position(monkeypatch):
    """The bound's sums from each set's peak (:meth:`_Sets._peaks`: μ at about three positions
    a set) are bit-identical to those formed at every position, upper and lower, at Γ from
    within rounding of 1 to 10⁶, on sets of 2–60 with awkward responses: exact ties inside sets
    (whole sets of one value: every position ties), ties up to rounding and continuous values.
    Sets whose peak cannot be told from its neighbours (at least those of one value) are formed
    at every position; at Γ = 2 on untied responses, none. Runs of sets in two threads: the same."""
    from pleval.sensitivity import rosenbaum

    rng = np.random.default_rng(5)
    size = rng.integers(2, 61, 400)
    size[::4] = 2
    ids, tr = _first_treated(size)
    y = np.where(rng.random(len(ids)) < 0.5, np.round(rng.normal(size=len(ids)), 1), rng.normal(size=len(ids)))
    y[ids % 7 == 3] = 1.5  # sets of one value
    y += 0.3 * tr * (ids % 7 != 3)
    perm = rng.permutation(len(ids))
    codes, size = _set_codes(ids[perm], tr[perm])
    s = _Sets.build(y[perm], codes, size, tr[perm])
    assert s.rise is not None
    flat = np.sum((np.bincount(ids, minlength=len(size)) >= 4) & (np.arange(len(size)) % 7 == 3))  # sets
    # of one value and more than three positions, all tied: every position
    redone, at = [], _Sets._at

    def recorded(self, sets, pos, count, g, lower):
        if isinstance(pos, np.ndarray) and len(count) < len(self.start):
            redone.append(len(count))
        return at(self, sets, pos, count, g, lower)

    monkeypatch.setattr(_Sets, "_at", recorded)
    runs, peaks = [], _Sets._peaks

    def ran(self, *a):
        runs.append(a[2:])
        return peaks(self, *a)

    monkeypatch.setattr(_Sets, "_peaks", ran)
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    for gamma in (1 + 1e-15, 1 + 1e-12, 1 + 1e-9, 1.0001, 1.25, 2.0, 3.7, 50.0, 1e4, 1e6):
        for lower in (False, True):
            every = _moments_every_position(s, gamma, lower)
            for cores, chunk in ((1, rosenbaum._CHUNK), (2, 1000)):  # one run of sets; two, in two threads
                monkeypatch.setattr(rosenbaum, "_CHUNK", chunk)
                redone.clear()
                runs.clear()
                with _workers.limited(cores):
                    assert s.moments(gamma, lower) == every
                assert sum(redone) >= flat > 0
                assert runs == ([(0, len(size))] if cores == 1 else [(0, 200), (200, 400)])  # runs of sets
    # Γ = 1: every μ of a set is its mean; exact sums give the lower bound's sums bit for bit
    # (rosenbaum_bounds takes its p-value there from the upper's)
    assert s.moments(1.0, lower=True) == s.moments(1.0)
    y = rng.normal(size=len(ids)) + 0.3 * tr
    s = _Sets.build(y, *_set_codes(ids, tr), tr)
    redone.clear()
    assert s.moments(2.0) == _moments_every_position(s, 2.0) and not redone
    assert _Sets.build(y, *_set_codes(ids, tr), tr, rosenbaum.HuberScores()).rise is None


def _argsort_ranks(a):
    """Average ranks with the tolerance ties, by ``np.argsort`` and the runs of the sorted values
    (the textbook route): two values tie when the sorted sequence steps between them by at most
    ``TIE_TOL`` × the largest |value|."""
    from pleval.sensitivity.rosenbaum import TIE_TOL

    o = np.argsort(-a, kind="stable")
    v = a[o]
    run = np.concatenate([[0], np.cumsum(v[:-1] - v[1:] > TIE_TOL * np.abs(a).max())])
    first = np.searchsorted(run, run, side="left")
    last = np.searchsorted(run, run, side="right") - 1
    q = np.empty(len(a))
    q[o] = len(a) - (first + last) / 2
    return q


def _awkward_values(rng, n):
    """Exact ties, ties up to rounding (tenths computed two ways),
    continuous values, and a few values 3e-9 apart: above the tie tolerance, yet close enough
    to share the float32 key that :func:`_rank_order` sorts by first."""
    k, m = n // 4, min(50, n // 10)
    j = rng.integers(-30, 30, k)
    parts = [np.round(rng.normal(size=k), 1), np.where(rng.random(k) < 0.5, j * 0.1, j / 10),  # 3 * 0.1 > 3 / 10
             rng.normal(size=n - 2 * k - m), 1.0 + 3e-9 * rng.integers(0, 50, m)]
    return rng.permutation(np.concatenate(parts))


def _edge_values(rng):
    """Pairs of values 1 ulp apart, each pair just within the tie tolerance of the next (its
    smallest value ties with the next pair's largest; its largest not with the next's
    smallest): the runs are right only if the step between two pairs is taken between the
    right members."""
    from pleval.sensitivity.rosenbaum import TIE_TOL

    tol = TIE_TOL * 10.0
    out = [10.0]
    for c in np.linspace(1, 9, 40):
        b = c - tol
        while c - b > tol:
            b = np.nextafter(b, np.inf)
        out += [c, np.nextafter(c, np.inf), b, np.nextafter(b, -np.inf)]
    return rng.permutation(np.array(out))


def test_sets_peaks_by_runs_of_sets():
    """``_Sets._peaks`` over any run of sets (empty, one set, the rest) gives those sets' entries
    of the whole: the runs' results put together are the whole's, bit for bit."""
    rng = np.random.default_rng(8)
    size = rng.integers(2, 30, 120)
    ids, tr = _first_treated(size)
    y = rng.normal(size=len(ids)) + 0.4 * tr
    codes, size = _set_codes(ids, tr)
    s = _Sets.build(y, codes, size, tr)
    n = len(size)
    for g, lower in ((1.7, False), (1 / 1.7, True), (np.float64(3.0), False)):
        whole = s._peaks(g, lower, 0, n)
        cuts = [0, 0, 1, 1, 37, 38, n, n]
        parts = [s._peaks(g, lower, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        assert [len(p[0]) for p in parts] == [b - a for a, b in zip(cuts[:-1], cuts[1:])]
        for k in (0, 1):
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k], strict=True)


def test_rank_order_equals_the_argsort_ranks():
    """Aligned ranks from one integer sort (:func:`_rank_order`) equal the argsort's bit for bit,
    with their tolerance ties (the values 3e-9 apart share their float32 keys and are sorted
    again exactly; of values 1e-7 apart more than a quarter would be, and the argsort serves),
    and the order sorts the values decreasingly up to ties."""
    from pleval.sensitivity import rosenbaum

    rng = np.random.default_rng(12)
    for n in (1, 2, 3, 1000, 20_000):
        a = _awkward_values(rng, n) if n > 3 else rng.normal(size=n)
        spread = 1.0 + 1e-7 * rng.permutation(n)  # all apart, sharing their top bits when few are kept
        for x in (a, -a, a[: n // 2] if n > 3 else a, spread, _edge_values(rng)):
            q, o = rosenbaum._ranks_desc(x)
            np.testing.assert_array_equal(q, _argsort_ranks(x))
            assert np.array_equal(np.sort(o), np.arange(len(x))) and np.all(np.diff(q[o]) <= 0)


@pytest.mark.parametrize("bits", [None, 40])
def test_sets_by_set_order_from_one_integer_sort(monkeypatch, bits):
    """The sets' sums are those of an argsort of the aligned ranks set by set (bits 40: the
    sort key ``code·n + rank`` of more than 2^63 places' worth, the branch of huge n)."""
    from pleval.sensitivity import rosenbaum
    from pleval.sensitivity.rosenbaum import HuberScores

    rng = np.random.default_rng(13)
    size = rng.integers(2, 9, 500)
    size[7] = 200  # a set too large for int8 positions
    ids = rng.permutation(np.repeat(np.arange(len(size)), size))
    tr = np.zeros(len(ids), bool)
    tr[np.unique(ids, return_index=True)[1]] = True
    y = _awkward_values(rng, len(ids))
    codes, size = _set_codes(ids, tr)
    if bits is not None:
        monkeypatch.setattr(rosenbaum, "_index_bits", lambda n: bits)
    for scores in (None, HuberScores()):
        s = _Sets.build(y, codes, size, tr, scores)
        q = _argsort_ranks(y - (np.bincount(codes, weights=y) / size)[codes]) if scores is None else scores(y, codes,
                                                                                                                  size)
        assert s.T == q[tr].sum()
        by_set = np.lexsort((-q, codes))
        qs, cs = q[by_set], codes[by_set]
        top = np.concatenate([np.cumsum(qs[cs == k])[:-1] for k in range(len(size))])
        np.testing.assert_allclose(s.top1, top, rtol=1e-13)
        np.testing.assert_allclose(s.total1, np.bincount(cs, weights=qs), rtol=1e-12, atol=1e-9)
        a = np.concatenate([np.arange(1, n) for n in size])  # a = j + 1, b = n_s − a, in the narrowest integers
        assert s.a.dtype == s.b.dtype == np.int16
        assert np.array_equal(s.a, a) and np.array_equal(s.b, np.repeat(size, size - 1) - a)


def test_rosenbaum_bounds_leave_no_reference_cycle():
    """Brent's method (the Γ search, the Hodges–Lehmann roots) must not keep the sets' n-long
    sums alive after the bounds are computed: scipy's brentq wraps its function in a closure
    that refers to itself, which held them until the cyclic garbage collector ran."""
    import gc

    rng = np.random.default_rng(12)
    ids = np.repeat(np.arange(200), 4)
    tr = np.tile([True, False, False, False], 200)
    y = rng.normal(size=800) + 0.5 * tr
    from pleval.sensitivity.rosenbaum import _HL

    gc.collect()
    gc.disable()
    try:
        rb = rosenbaum_bounds(y, ids, tr, gammas=[1.0, 2.0], hl_gammas=[1.5])
        alive = [o for o in gc.get_objects() if isinstance(o, (_Sets, _HL))]
    finally:
        gc.enable()
    assert rb.gamma_alpha > 1
    assert alive == []


@pytest.mark.parametrize("hl", [False, True])
def test_bounds_free_their_inputs_once_read(monkeypatch, hl):
    """Given its arrays in a list it empties (as the matched analysis's Rosenbaum bounds are),
    _bounds frees the responses, set ids and treated flags once the bound's sums are formed:
    the p-values and the Γ search run without them (n-long), unless the Hodges–Lehmann
    estimates re-rank the responses; the same bounds as rosenbaum_bounds."""
    import weakref

    from pleval.sensitivity import rosenbaum

    rng = np.random.default_rng(14)
    ids = np.repeat(np.arange(300), 3)
    tr = np.tile([True, False, False], 300)
    y = rng.normal(size=900) + 0.4 * tr
    data = [y.copy(), ids.copy(), tr.copy()]
    refs = [weakref.ref(a) for a in data]
    alive, moments = [], _Sets.moments

    def recorded(self, *a):
        alive.append([r() is not None for r in refs])
        return moments(self, *a)

    monkeypatch.setattr(_Sets, "moments", recorded)
    kw = dict(gammas=(1.0, 1.5, 2.0), alpha=0.05, direction=None, hl_gammas=(1.5,) if hl else (), statistic="rank",
              trim=2.5, inner=0.0, label="")
    got = rosenbaum._bounds(data, **kw)
    assert data == [] and alive and all(a == [hl, False, False] for a in alive)  # (the flags: read as a copy)
    ref = rosenbaum_bounds(y, ids, tr, **{k: v for k, v in kw.items()})
    pd.testing.assert_frame_equal(got.table, ref.table)
    assert got.gamma_alpha == ref.gamma_alpha and got.n_units == 900


def test_sets_gamma_search_and_hl():
    """1:3 sets: Brent's search lands on a one-sided bound of α/2 (the direction from the data:
    two-sided) or α (a direction given); at Γ = 1 the HL estimate balances T and its mean; a
    negative effect is tested in its direction (mirrored)."""
    rng = np.random.default_rng(7)
    n = 400
    ids = np.repeat(np.arange(n), 4)
    tr = np.tile([True, False, False, False], n)
    y = rng.normal(size=4 * n) + 0.4 * tr
    rb = rosenbaum_bounds(y, ids, tr, gammas=[1.0, 1.5], hl_gammas=[1.0, 1.5])
    assert rb.test.startswith("aligned rank")
    g = rb.gamma_alpha
    assert g > 1
    codes, size = _set_codes(ids, tr)
    s = _Sets.build(y, codes, size, tr)
    assert s.pvalue(g) == pytest.approx(0.025, abs=1e-6)
    assert s.pvalue(rosenbaum_bounds(y, ids, tr, direction="greater").gamma_alpha) == pytest.approx(0.05, abs=1e-6)
    t1 = rb.table.set_index("gamma")
    hl = t1.loc[1.0, "hl_low"]
    assert 0.2 < hl < 0.6
    s_hl = _Sets.build(y - hl * tr, codes, size, tr)
    assert s_hl.T - s_hl.moments(1.0)[0] == pytest.approx(0.0, abs=1.0)  # a step function: within one rank
    assert t1.loc[1.5, "hl_low"] < hl < t1.loc[1.5, "hl_high"]
    neg = rosenbaum_bounds(-y, ids, tr, gammas=[1.0, 1.5], hl_gammas=[1.5])
    assert neg.direction == "less" and neg.gamma_alpha == pytest.approx(g)
    tn = neg.table.set_index("gamma")
    assert tn.loc[1.5, "hl_low"] == pytest.approx(-t1.loc[1.5, "hl_high"], abs=1e-4)


def test_rosenbaum_bad_input():
    with pytest.raises(DesignError):
        rosenbaum_bounds([1.0, 2.0, 3.0], [0, 0, 1], [True, False, True])
    with pytest.raises(DataError):
        rosenbaum_bounds([1.0, np.nan], [0, 0], [True, False])
    with pytest.raises(DataError):
        rosenbaum_bounds([1.0, 2.0], [0, 0], [True, False], gammas=[0.5])


@pytest.mark.parametrize("kw, name", [({"gammas": [1, np.nan, 2]}, "gammas"), ({"gammas": [np.inf]}, "gammas"),
                                      ({"hl_gammas": [np.nan]}, "hl_gammas")])
def test_rosenbaum_gamma_must_be_a_finite_number(kw, name):
    """Γ = NaN passed the check of Γ < 1 (NaN compares false): pairs got a row of NaN, matched sets
    a definite-looking p = 1 before 2026-12-04. A non-finite Γ is now an error naming the option,
    for pairs and for sets of several comparisons alike."""
    rng = np.random.default_rng(3)
    pairs = (rng.normal(size=40), np.repeat(np.arange(20), 2), np.tile([True, False], 20))
    sets = (rng.normal(size=60), np.repeat(np.arange(20), 3), np.tile([True, False, False], 20))
    for y, sid, tr in (pairs, sets):
        with pytest.raises(DataError, match=f"^{name}: every Γ must be a finite number of at least 1"):
            rosenbaum_bounds(y, sid, tr, **kw)


def test_set_codes_by_first_appearance():
    """Set codes in order of first appearance (pandas' factorize) whether the ids come set by set
    (counted, not hashed), shuffled, or as text; the sizes with them."""
    import pandas as pd

    rng = np.random.default_rng(14)
    ids = np.repeat(rng.choice(10**9, 300, replace=False), rng.integers(2, 6, 300))
    for x in (np.sort(ids), np.sort(ids).astype(np.uint32), rng.permutation(ids), ids.astype(str)):
        tr = np.zeros(len(x), bool)
        tr[np.unique(x, return_index=True)[1]] = True
        codes, size = _set_codes(x, tr)
        want = pd.factorize(x, sort=False)[0]
        np.testing.assert_array_equal(codes, want)
        np.testing.assert_array_equal(size, np.bincount(want))
        with pytest.raises(DesignError):
            _set_codes(x, np.zeros(len(x), bool))


# ---- Rosenbaum: Huber M-statistic, published matched-set examples ------------------------------
REF = __import__("pathlib").Path(__file__).parent / "reference"


def _long(wide: np.ndarray):
    n, k = wide.shape
    return wide.ravel(), np.repeat(np.arange(n), k), np.tile(np.r_[True, np.zeros(k - 1, bool)], n)


def test_huber_lead150_reproduces_senmv():
    """1:5 matched sets, 150 smokers: ``senmv(lead150, gamma=2, trim=2)`` (sensitivitymv; part of
    Table 1 of Rosenbaum 2013), printed output pval 0.02665519, deviate 1.932398, statistic
    27.97564, expectation 18.0064, variance 26.61524 (tests/reference/README.md)."""
    import pandas as pd
    from scipy import stats as st

    y, ids, tr = _long(pd.read_csv(REF / "lead150.csv").to_numpy())
    rb = rosenbaum_bounds(y, ids, tr, gammas=[2.0], statistic="huber", trim=2, direction="greater")
    assert rb.test.startswith("Huber M-statistic")
    assert round(float(rb.table["pvalue_upper"].iloc[0]), 8) == 0.02665519
    from pleval.sensitivity.rosenbaum import HuberScores

    codes, size = _set_codes(ids, tr)
    s = _Sets.build(y, codes, size, tr, HuberScores(trim=2))
    E, V = s.moments(2.0)
    assert round(s.T, 5) == 27.97564
    assert round(E, 4) == 18.0064
    assert round(V, 5) == 26.61524
    assert round((s.T - E) / math.sqrt(V), 6) == 1.932398
    assert st.norm.sf((s.T - E) / math.sqrt(V)) == pytest.approx(rb.table["pvalue_upper"].iloc[0])


@pytest.mark.parametrize("seed", [1, 7])
def test_hodges_lehmann_is_the_midpoint_of_the_flat_stretch(seed):
    """With an even number of Walsh averages the signed-rank statistic equals its expectation on
    the whole stretch between the two middle ones; the estimate is its midpoint (the median).
    Before, the root-finder returned some point of it: −0.459365 where the median is −0.458929
    (middle averages −0.460278 and −0.457580)."""
    rng = np.random.default_rng(seed)
    n = 40
    d = rng.normal(-0.5, 1, n)
    y = np.column_stack([d, np.zeros(n)]).ravel()
    rb = rosenbaum_bounds(y, np.repeat(np.arange(n), 2), np.tile([True, False], n), gammas=[1.0], hl_gammas=[1.0])
    i, j = np.triu_indices(n)
    w = np.sort((d[i] + d[j]) / 2)
    assert w.size % 2 == 0 and w[w.size // 2] - w[w.size // 2 - 1] > 1e-4  # a stretch to land anywhere on
    assert rb.table["hl_low"].iloc[0] == pytest.approx(np.median(w), abs=1e-6)


def test_huber_erpcp_hodges_lehmann_reproduces_rosenbaum_2007():
    """39 welder–control pairs, Γ = 2, Huber ψ trimmed at 1: Rosenbaum (2007) Table 1, as stated
    in sensitivitymw's ``senmwCI`` help — point estimates [0.3403, 0.6666] and the one-sided 95%
    interval τ ≥ 0.1812 (pleval's two-sided level 1 − α interval with α = 0.10)."""
    import pandas as pd

    y, ids, tr = _long(pd.read_csv(REF / "erpcp.csv").to_numpy())
    rb = rosenbaum_bounds(y, ids, tr, gammas=[1.0], hl_gammas=[2.0], statistic="huber", trim=1, alpha=0.10)
    row = rb.table.set_index("gamma").loc[2.0]
    assert round(row["hl_low"], 4) == 0.3403
    assert round(row["hl_high"], 4) == 0.6666
    assert round(row["ci_low"], 4) == 0.1812


def test_huber_scores_brute_force_and_pairs():
    """M-scores against a direct double loop (variable set sizes, ψ with inner trimming); for
    pairs the statistic is senmv's vector form: Σ ψ(d_s/h)/2 with h the median |d_s|."""
    from pleval.sensitivity.rosenbaum import HuberScores

    rng = np.random.default_rng(11)
    sizes = [2, 3, 5, 3, 4, 2]
    ids = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.normal(size=len(ids))
    first = np.zeros(len(ids), bool)
    first[np.concatenate([[0], np.cumsum(sizes)[:-1]])] = True
    codes, size = _set_codes(ids, first)
    hs = HuberScores(trim=2.0, inner=0.3)
    diffs = [y[i] - y[j] for i in range(len(y)) for j in range(len(y)) if i != j and ids[i] == ids[j]]
    h = np.quantile(np.abs(diffs), 0.5)

    def psi(x):
        return np.sign(x) * min(1.0, max(0.0, abs(x) - 0.3) / 1.7)

    ref = [sum(psi((y[i] - y[j]) / h) for j in range(len(y)) if j != i and ids[j] == ids[i]) / sizes[ids[i]]
           for i in range(len(y))]
    assert hs(y, codes, size) == pytest.approx(ref, abs=1e-12)
    d = LEAD_T - LEAD_C
    yy, pid, tr = _long(np.column_stack([LEAD_T, LEAD_C]))
    c2, s2 = _set_codes(pid, tr)
    T = _Sets.build(yy, c2, s2, tr, HuberScores()).T
    hd = np.median(np.abs(d))
    assert T == pytest.approx(np.sum(np.sign(d) * np.minimum(1, np.abs(d) / hd / 2.5)) / 2)
    with pytest.raises(DataError):
        HuberScores(trim=1.0, inner=1.0)
    with pytest.raises(DataError):
        rosenbaum_bounds(yy, pid, tr, statistic="mean")


@pytest.mark.parametrize("g", [np.inf, np.nan, 0.5])
def test_estimate_checks_hl_gammas_before_the_run(g):
    """``pleval.estimate(hl_gammas=...)`` checks Γ by the bounds' own rule before reading past the
    options (before 2026-12-04 an infinite Γ passed its own check and the run stopped after the
    match and the effects, in the bounds)."""
    import pandas as pd

    import pleval

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    with pytest.raises(DataError, match="^option hl_gammas: every Γ must be a finite number of at least 1"):
        pleval.estimate(d, hl_gammas=(1.5, g))


def test_series_are_paired_by_label():
    """y, set_id and treated Series with set_id and treated in another row order were paired by
    position (a Γ = 1 p of 0.044 read 0.439). They are now paired by label; other labels are a
    DataError naming one."""
    rng = np.random.default_rng(0)
    n = 60
    idx = [f"u{i}" for i in range(2 * n)]
    y = pd.Series(rng.normal(size=2 * n) + 0.5 * np.tile([1, 0], n), idx)
    s = pd.Series(np.repeat(np.arange(n), 2), idx)
    t = pd.Series(np.tile([1, 0], n), idx)
    perm = rng.permutation(2 * n)
    d = (y[t == 1].groupby(s).sum() - y[t == 0].groupby(s).sum()).to_numpy()  # pair differences, by label
    got = rosenbaum_bounds(y, s.iloc[perm], t.iloc[perm], gammas=[1.0, 2.0], direction="greater")
    np.testing.assert_allclose(got.to_frame()["pvalue_upper"], signed_rank_pvalue(d, [1.0, 2.0]), rtol=1e-12)
    sets = pd.Series(np.repeat(np.arange(40), 3), [f"v{i}" for i in range(120)])
    tr = pd.Series(np.tile([1, 0, 0], 40), sets.index)
    yy = pd.Series(rng.normal(size=120) + 0.4 * tr, sets.index)
    q = rng.permutation(120)
    np.testing.assert_allclose(aligned_rank_pvalue(yy, sets.iloc[q], tr.iloc[q[::-1]].reindex(sets.index[q]), [1.0, 1.5]),
                               aligned_rank_pvalue(yy.to_numpy(), sets.to_numpy(), tr.to_numpy(), [1.0, 1.5]), rtol=1e-12)
    with pytest.raises(DataError, match=r"y and set_id are Series with different labels .*'u0' is in y"):
        rosenbaum_bounds(y, s.rename({"u0": "x"}), t)


def _rank_order_by_np_sort(a):
    """:func:`_rank_order` as it was before 2026-12-05 (one ``np.sort`` of the truncations with
    the index in their low bits), the reference of its radix sort."""
    from pleval.sensitivity import rosenbaum

    n = len(a)
    tol = rosenbaum.TIE_TOL * float(np.max(np.abs(a), initial=0.0))
    bits = rosenbaum._index_bits(n)
    if n < 2 or bits > 40:
        return rosenbaum._argsort_ranks(a, tol)
    u = np.negative(a).view(np.uint64)
    flip = u >> np.uint64(63)
    np.subtract(np.uint64(0), flip, out=flip)
    flip |= np.uint64(1 << 63)
    u ^= flip
    shift, mask = np.uint64(bits), np.uint64((1 << bits) - 1)
    u >>= shift
    u <<= shift
    u |= np.arange(n, dtype=np.uint64)
    u.sort()
    o = (u & mask).view(np.int64)
    v = a[o]
    bad = np.flatnonzero(v[1:] > v[:-1])
    if len(bad):
        key = np.unique(u[bad] >> shift) << shift
        lo, hi = np.searchsorted(u, key), np.searchsorted(u, key | mask, side="right")
        ends = np.column_stack([lo, hi]).ravel()
        ends = ends[:-1] if ends[-1] == n else ends
        top, bottom = np.maximum.reduceat(v, ends)[::2], np.minimum.reduceat(v, ends)[::2]
        wide = top - bottom > tol
        length = (hi - lo)[wide]
        if length.sum() > n // 4:
            return rosenbaum._argsort_ranks(a, tol)
        if len(length):
            at = np.arange(int(length.sum())) + np.repeat(lo[wide] - (np.cumsum(length) - length), length)
            sub = o[at]
            o[at] = sub = sub[np.lexsort((-a[sub], np.repeat(np.arange(len(length)), length)))]
            v[at] = a[sub]
        narrow = ~wide
        v[lo[narrow]], v[hi[narrow] - 1] = top[narrow], bottom[narrow]
    return o, rosenbaum._place_ranks(v, tol)


@pytest.mark.parametrize("bits", [None, 30, 40])
def test_rank_order_by_float32_keys_equals_the_np_sort(monkeypatch, bits):
    """:func:`_rank_order`'s radix sort of float32 keys gives the ranks by place of the single
    ``np.sort`` of float64 truncations (``bits``: the reference's index bits), bit for bit, and
    an order that puts them in their places (within a run of ties its order may differ): ties,
    values apart only below float32's precision, values beyond float32's range, negative values
    and zeros; and it sorts 32-bit keys (two 16-bit passes, not three)."""
    from pleval.sensitivity import rosenbaum

    tops = []
    passes = rosenbaum._radix_passes
    monkeypatch.setattr(rosenbaum, "_radix_passes", lambda key, top: tops.append(top) or passes(key, top))
    rng = np.random.default_rng(48)
    for n in (2, 3, 17, 1000, 70_000):
        a = _awkward_values(rng, n) if n > 16 else rng.normal(size=n)
        huge = a * 1e300  # (beyond float32: ±inf keys)
        for x in (a, -a, np.round(a, 2), np.zeros(n), 1.0 + 1e-7 * rng.permutation(n), _edge_values(rng), huge):
            got = rosenbaum._rank_order(x.copy())
            with monkeypatch.context() as m:
                if bits is not None:
                    m.setattr(rosenbaum, "_index_bits", lambda n: bits)
                want = _rank_order_by_np_sort(x.copy())
            np.testing.assert_array_equal(got[1], want[1], strict=True)
            q_got, q_want = np.empty(len(x)), np.empty(len(x))
            q_got[got[0]], q_want[want[0]] = got[1], want[1]
            np.testing.assert_array_equal(q_got, q_want, strict=True)
    assert tops and set(tops) == {(1 << 32) - 1}


@pytest.mark.parametrize("n_sets", [1, 7, 3000, 70_000])
def test_sets_from_ranks_by_set_order_equals_the_key_sort(n_sets):
    """:meth:`_Sets.from_ranks` given the units' order by place (the radix sort of the set codes
    by place, :meth:`_Sets.build`'s path) holds the arrays of the integer key sort without it, bit
    for bit: aligned ranks with ties, Huber scores, one set, more than 65,536 sets (two 16-bit
    passes)."""
    from pleval.sensitivity import rosenbaum

    rng = np.random.default_rng(n_sets)
    size = rng.integers(2, 6 if n_sets > 1000 else 40, n_sets)
    ids, tr = _first_treated(size)
    perm = rng.permutation(len(ids))  # the units in no set order
    ids, tr = ids[perm], tr[perm]
    codes, size = _set_codes(ids, tr)
    for y in (np.round(rng.normal(size=len(ids)), 1), rng.normal(size=len(ids))):
        for scores in (None, rosenbaum.HuberScores()) if n_sets < 5000 else (None,):
            if scores is None:
                mean = np.bincount(codes, weights=y, minlength=len(size)) / size
                q, (o, place) = None, rosenbaum._rank_order(y - mean[codes])
            else:
                q = scores(y, codes, size)
                o = np.argsort(-q, kind="stable")
                place = q[o]
            rank = np.empty(len(o), dtype=np.int64)
            rank[o] = np.arange(len(o))  # the inverse permutation
            got = _Sets.from_ranks(q, rank, codes, size, tr, place, o)
            want = _Sets.from_ranks(q, rank, codes, size, tr, place)
            for name in ("T", "start", "count", "a", "b", "top1", "top2", "total1", "total2", "rise"):
                g, w = getattr(got, name), getattr(want, name)
                if isinstance(w, np.ndarray):
                    assert g.tobytes() == w.tobytes() and g.dtype == w.dtype, name
                else:
                    assert g == w, name


def test_sets_moments_at_gamma_one_equal_every_positions():
    """At Γ = 1 with exact sums (aligned ranks) :meth:`_Sets.moments` forms the set means and
    the largest variances without a pass over every position's μ (:meth:`_Sets._even`): the
    floats of that pass (the route of sums that are not exact, ``rise`` None), bit for bit,
    either bound; ties, awkward values and sets of two to 40 units."""
    import dataclasses

    rng = np.random.default_rng(51)
    for k in range(3):
        size = rng.integers(2, 40 if k else 3, 300)
        ids, tr = _first_treated(size)
        y = _awkward_values(rng, len(ids)) + 0.3 * tr
        codes, size = _set_codes(ids, tr)
        s = _Sets.build(y, codes, size, tr)
        assert s.rise is not None
        every = dataclasses.replace(s, rise=None)
        for lower in (False, True):
            got, want = s.moments(1.0, lower), every.moments(1.0, lower)
            assert got == want and all(type(v) is float for v in got)
        even, best = np.concatenate(s._even()), np.concatenate(every._best([0, len(size)], 1.0, False))
        np.testing.assert_array_equal(even, best, strict=True)


def test_gamma_search_evaluates_the_brackets_end_once():
    """Γ at α is brentq's root on log Γ over [0, log GAMMA_MAX], the bound evaluated once at the
    bracket's end (brentq's own end, not GAMMA_MAX and then it again); inf when the bound is
    below α even there, 1 when not below it at Γ = 1."""
    from scipy import optimize

    from pleval.sensitivity.rosenbaum import GAMMA_MAX, _gamma_search

    def bound(g):
        seen.append(g)
        return float(stats.norm.sf(3.0 - 2.0 * math.log(g)))

    seen = []
    got = _gamma_search(bound, 0.025)
    assert sum(g > GAMMA_MAX / 2 for g in seen) == 1
    want = math.exp(optimize.brentq(lambda lg: bound(math.exp(lg)) - 0.025, 0.0, math.log(GAMMA_MAX), xtol=1e-6))
    assert got == want
    assert _gamma_search(lambda g: 1e-9, 0.05) == math.inf
    assert _gamma_search(lambda g: 0.5, 0.05) == 1.0
