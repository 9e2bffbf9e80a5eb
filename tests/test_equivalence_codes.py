"""The coding shortcuts of the balance's equivalence and the effect design (session 51): each the
same as what it stands in for, bit for bit, including the cases that take the longer way."""

import numpy as np
import pandas as pd
import pytest

from pleval.effect_sizes import _codes, baseline_difference, outcome_sd
from pleval.matching.balance import _first_appearance, balance, pretest_equivalence
from pleval.matching.effect import _varies


def _late(n=10_000, seed=1):
    """Cell codes whose last value first appears after the first 4,096 rows."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 9, n) * 3  # gaps between the values
    a[5000] = 40
    return a


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint32])
def test_codes_of_small_integers_are_pandas_factorize(dtype):
    a = _late().astype(dtype)
    for x in (a, a[:4096], np.where(a == 40, 0, a).astype(dtype), a[::-1].copy()):
        assert np.array_equal(_codes(x), pd.factorize(x)[0])
    for x in (_late() - 1, _late() * 5000, np.repeat([2, 1], 5000)):  # negative, beyond 2**16, two values
        assert np.array_equal(_codes(x), pd.factorize(x)[0])


def test_first_appearance_of_a_level_seen_only_late():
    a = _late()
    levels = np.arange(41)
    codes = np.where(np.arange(len(a)) % 7 == 0, -1, a)  # some missing
    for c in (codes, a, codes[:100]):
        got, lv = _first_appearance(c, levels)
        want, uniq = pd.factorize(np.where(c < 0, np.nan, c.astype(float)))
        assert np.array_equal(got, want) and np.array_equal(lv, uniq.astype(int))


def test_varies_from_codes_and_numbers():
    for k, want in (([2, 2, 2], False), ([2, 3], True), ([-1, 2, 2], False), ([-1, 2, 3], True), ([-1, -1], False),
                    ([], False)):
        assert _varies(None, (np.array(k, dtype=np.int32), None)) is want
    for x, want in (([1.0, 1.0], False), ([np.nan, 1.0, 1.0], False), ([np.nan, 1.0, 2.0], True),
                    ([np.nan, np.nan], False), ([3, 3], False), ([3, 4], True), ([], False)):
        assert _varies(pd.Series(x, dtype=float if any(isinstance(v, float) for v in x) or not x else int)) is want


def test_baseline_difference_is_bit_for_bit_its_parts():
    """Missing values and zero weights dropped, a stratum that only dropped rows hold: the SD is
    outcome_sd's on the rows kept and the means the arms' weighted means, to the bit."""
    rng = np.random.default_rng(5)
    n = 9000
    x = rng.normal(200, 15, n)
    t = rng.random(n) < 0.3
    w = rng.choice([0.0, 0.25, 1.0, 1 / 3], n)
    w2 = w**2 * rng.integers(1, 4, n)
    cells = rng.integers(0, 6, n) * 10
    x[rng.random(n) < 0.02] = np.nan
    x[cells == 50] = np.nan  # stratum 50: no row kept
    bd = baseline_difference(x, t, weights=w, strata=cells, weights2=w2)
    ok = np.isfinite(x) & (w > 0)
    sd = outcome_sd(x[ok], t[ok], weights=w[ok], strata=cells[ok], weights2=w2[ok])[0]
    a, c = ok & t, ok & ~t
    assert bd.sd == sd
    assert (bd.mean_treated, bd.mean_control) == (float(w[a] @ x[a] / w[a].sum()), float(w[c] @ x[c] / w[c].sum()))
    assert bd.n_control == float(w[c].sum() ** 2 / w2[c].sum())


def test_balance_equivalence_by_group_is_each_groups_own():
    """balance(by=...)'s equivalence of each group, its rows taken in a group order: that of the
    group's matched rows alone (pretest_equivalence), to the bit."""
    rng = np.random.default_rng(3)
    n = 12_000
    data = pd.DataFrame({"subject": rng.choice(["math", "reading", "science"], n), "grade": rng.integers(3, 9, n),
                         "t": (rng.random(n) < 0.3).astype(int), "pre": rng.normal(200, 15, n)})
    rows = np.sort(rng.choice(n, 9000, replace=False))
    w = rng.choice([0.5, 1.0, 1 / 3, 2.0], len(rows))
    after = pd.DataFrame({"_weight": w, "_weight2": w**2 * rng.integers(1, 3, len(rows))})
    bal = balance(data, after, "t", ["pre"], "pre", by="subject", weight2="_weight2", rows=rows,
                  strata=("subject", "grade"))
    matched = data.iloc[rows].reset_index(drop=True).join(after)
    eq = bal.equivalence.set_index("group")
    for g in ("math", "reading", "science"):
        own = pretest_equivalence(matched[matched["subject"] == g], "t", "pre", weight2="_weight2",
                                  strata=("subject", "grade"))
        assert own == {k: eq.loc[g, k] for k in own}, g


def test_baseline_difference_sd_when_dropped_rows_reorder_the_strata():
    """A stratum's first rows dropped (missing x), so that another stratum is the first among the
    rows kept: outcome_sd on those rows numbers the strata in that order and sums the SD's terms
    so; baseline_difference's SD is still its, to the bit."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(12, 40))
        x = rng.normal(size=n) * 10 ** rng.uniform(-3, 3)
        t = rng.random(n) < 0.5
        s = rng.integers(0, int(rng.integers(2, 6)), n)
        x[rng.random(n) < 0.2] = np.nan
        x[0] = np.nan
        ok = np.isfinite(x)
        bd = baseline_difference(x, t, strata=s)
        if np.isnan(bd.sd):  # (too few rows or no variation)
            continue
        assert bd.sd == outcome_sd(x[ok], t[ok], strata=s[ok])[0]
