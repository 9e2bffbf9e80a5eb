"""Percentile-point conversion: hand-checked values, WWC improvement index, round trips."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from pleval import DataError
from pleval.percentiles import (
    from_percentile_points,
    improvement_index,
    interpret,
    percentile_interval,
    percentile_points_se,
    to_percentile_points,
)


def test_hand_checked_values():
    # 100*Phi(0.08) - 50 = 3.188..., 100*Phi(0.25) - 50 = 9.870...
    assert to_percentile_points(0.08) == pytest.approx(3.19, abs=0.005)
    assert to_percentile_points(0.25) == pytest.approx(9.87, abs=0.005)
    assert to_percentile_points(0.0) == 0.0


def test_other_baseline_hand_computed():
    # From the 25th percentile: z25 = -0.6744898; Phi(z25 + 0.25) = Phi(-0.4244898) = 0.335606
    z25 = -0.6744897501960817
    expected = 100 * 0.5 * math.erfc(-(z25 + 0.25) / math.sqrt(2)) - 25
    got = to_percentile_points(0.25, baseline_percentile=25)
    assert got == pytest.approx(expected, abs=1e-10)
    assert got == pytest.approx(8.5606, abs=1e-3)
    assert got != pytest.approx(to_percentile_points(0.25), abs=0.5)


def test_wwc_improvement_index_table(reference_dir):
    ref = pd.read_csv(reference_dir / "improvement_index.csv")
    got = improvement_index(ref["g"])
    np.testing.assert_allclose(got, ref["percentile_points"], atol=0.006)
    assert isinstance(got, pd.Series)


def test_vectorized_and_broadcast():
    g = np.array([-0.2, 0.0, 0.3])
    p = np.array([[10.0], [50.0], [90.0]])
    out = to_percentile_points(g, p)
    assert out.shape == (3, 3)
    assert out[1, 1] == 0.0


@given(
    g=st.floats(-3, 3, allow_nan=False),
    p=st.floats(0.5, 99.5, allow_nan=False),
)
def test_round_trip(g, p):
    pts = to_percentile_points(g, p)
    if 0 < p + pts < 100 and abs(p + pts - 50) < 49.999:
        assert from_percentile_points(pts, p) == pytest.approx(g, abs=1e-7)


@given(
    g1=st.floats(-3, 3, allow_nan=False),
    g2=st.floats(-3, 3, allow_nan=False),
    p=st.floats(1, 99, allow_nan=False),
)
def test_monotone(g1, g2, p):
    a, b = sorted([g1, g2])
    assert to_percentile_points(a, p) <= to_percentile_points(b, p)


def test_interval_maps_endpoints_and_se_is_delta_method():
    lo, hi = percentile_interval(-0.05, 0.2, 40)
    assert lo == pytest.approx(to_percentile_points(-0.05, 40))
    assert hi == pytest.approx(to_percentile_points(0.2, 40))
    eps = 1e-6
    numeric = (to_percentile_points(0.1 + eps, 40) - to_percentile_points(0.1 - eps, 40)) / (2 * eps)
    assert percentile_points_se(0.1, 0.05, 40) == pytest.approx(numeric * 0.05, rel=1e-6)
    assert percentile_points_se(0.0, 1.0) == pytest.approx(100 * norm.pdf(0))
    with pytest.raises(DataError, match="low end \\(0.2\\) exceeds its high end \\(0\\); give it as LOW HIGH"):
        percentile_interval(0.2, 0.0)
    with pytest.raises(DataError, match="low end \\(0.3\\) exceeds its high end \\(0.1\\)"):
        percentile_interval([0.0, 0.3], [0.1, 0.1])


@pytest.mark.parametrize("p", [0, 100, -5, 150, float("nan")])
def test_bad_baseline(p):
    with pytest.raises(DataError, match="baseline_percentile"):
        to_percentile_points(0.1, p)


def test_non_finite_g_and_impossible_inverse():
    with pytest.raises(DataError, match="finite"):
        to_percentile_points([0.1, float("inf")])
    with pytest.raises(DataError, match="between 0 and 100"):
        from_percentile_points(60, 50)


def test_interpretation_says_rank_not_percentage():
    text = interpret(to_percentile_points(0.08))
    assert "53rd" in text and "not percentage points" in text


@pytest.mark.parametrize("g, p0, start, end", [(5.0, 50, "50th", "99.99997th"), (0.1, 0.5, "0.5th", "1st"),
                                               (-3.0, 2, "2nd", "0.00002th"), (0.3, 98, "98th", "99th"),
                                               (6.0, 50, "50th", "99.9999999th"), (10.0, 10, "10th", "100th (to the precision of the arithmetic)"),
                                               (0.1, 50.5, "50.5th", "54th"), (0.1, 49.5, "49.5th", "53rd"),
                                               (0.01, 97.5, "97.5th", "98th")])
def test_interpretation_never_says_the_0th_or_100th_percentile(g, p0, start, end):
    """Percentiles outside 1–99 keep the decimals that place them inside (0, 100): a large
    effect from the median ends at the 99.99997th, not the '100th' (before 2026-12-04 six
    decimals at most: g = 6 ended at the "100th"). The baseline is written as given: from 50.5
    and from 49.5 both read "from the 50th" before (rounded halves to even)."""
    text = interpret(to_percentile_points(g, p0), p0)
    assert f"at the {start} percentile without" in text and f"at about the {end} with it" in text


def test_docs_table_matches_code():
    """The worked table in docs/effect_sizes.md is what the code computes."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "effect_sizes.md").read_text()
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| 0.")]
    assert len(rows) == 3
    for row in rows:
        g, *cells = (float(c) for c in row)
        for p, cell in zip((50, 25, 10), cells):
            assert round(to_percentile_points(g, p), 2) == pytest.approx(cell, abs=1e-9)


def test_numbers_and_arrays_agree_with_scipy_norm():
    """A single number goes through the standard library, arrays through scipy.special: both equal
    scipy.stats.norm's formula to double precision, across effects, baselines and both directions."""
    g = np.linspace(-3, 3, 61)
    for p in (1.0, 10.0, 25.0, 50.0, 90.0, 99.5):
        exact = 100 * norm.cdf(norm.ppf(p / 100) + g) - p
        arr = to_percentile_points(g, p)
        one = np.array([to_percentile_points(float(x), p) for x in g])
        assert np.max(np.abs(arr - exact)) < 1e-12 and np.max(np.abs(one - exact)) < 1e-12
        pts = np.linspace(-0.9 * p, 0.9 * (100 - p), 41)
        back = norm.ppf((p + pts) / 100) - norm.ppf(p / 100)
        assert np.max(np.abs(from_percentile_points(pts, p) - back)) < 1e-12
        assert max(abs(from_percentile_points(float(d), p) - b) for d, b in zip(pts, back)) < 1e-12
        se = 100 * norm.pdf(norm.ppf(p / 100) + 0.2) * 0.05
        assert percentile_points_se(0.2, 0.05, p) == pytest.approx(se, rel=1e-12)
    assert isinstance(to_percentile_points(np.float64(0.1)), float)
    assert isinstance(to_percentile_points(np.array(0.1)), float)


def test_series_are_paired_by_label_and_lengths_must_match():
    """A Series of effects and a Series of baselines in another order were paired by position
    (school a's effect at school b's baseline); arrays of different lengths raised numpy's
    broadcast error. Series are now paired by label; mismatches are a DataError naming them."""
    g = pd.Series([0.1, 0.2, -0.3], index=["a", "b", "c"])
    p = pd.Series([40.0, 70.0, 55.0], index=["c", "a", "b"])
    want = 100 * norm.cdf(norm.ppf(np.array([70.0, 55.0, 40.0]) / 100) + g.to_numpy()) - np.array([70.0, 55.0, 40.0])
    got = to_percentile_points(g, p)
    assert got.index.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(from_percentile_points(got.iloc[::-1], p).reindex(g.index), g, rtol=1e-10)
    lo, hi = percentile_interval(g - 0.1, (g + 0.1).iloc[::-1], p)
    np.testing.assert_allclose(lo, to_percentile_points(g - 0.1, p.reindex(g.index).to_numpy()), rtol=1e-12)
    np.testing.assert_allclose(hi, to_percentile_points(g + 0.1, p.reindex(g.index).to_numpy()), rtol=1e-12)
    se = percentile_points_se(g, pd.Series([0.05, 0.1, 0.2], index=["c", "b", "a"]))
    np.testing.assert_allclose(se, 100 * norm.pdf(g.to_numpy()) * np.array([0.2, 0.1, 0.05]), rtol=1e-12)
    with pytest.raises(DataError, match=r"g has shape \(3,\), baseline_percentile has shape \(2,\)"):
        to_percentile_points([0.1, 0.2, 0.3], [50, 60])
    with pytest.raises(DataError, match="g and baseline_percentile are Series with different labels"):
        to_percentile_points(g, pd.Series([50.0, 50.0, 50.0], index=["a", "b", "d"]))


@pytest.mark.parametrize("p0", [5, 10, 25, 50, 90])
def test_no_effect_is_no_shift(p0):
    """g = 0 is 0 percentile points exactly, said as no shift. Before, Φ(Φ⁻¹(p)) − p left
    −1.8e−15 at the 10th percentile and `pleval convert 0 -p 10` said "−0.00 ... A loss of 0.00"."""
    assert to_percentile_points(0.0, p0) == 0.0
    assert interpret(to_percentile_points(0.0, p0), p0).startswith("No shift")
    assert interpret(to_percentile_points(0.05, p0), p0).startswith("A gain of")


def test_a_percentile_reached_rounds_halves_up():
    """52.5 is "about the 53rd" (Python's round gave the 52nd: halves to even)."""
    from pleval.percentiles import _ordinal

    assert [_ordinal(x) for x in (52.5, 53.5, 0.99999, 1.5)] == ["53rd", "54th", "1st", "2nd"]


def test_a_negative_standard_error_is_an_error():
    """Before, percentile_points_se(0.2, se=-0.05) returned a negative SE (−1.955)."""
    from pleval.percentiles import percentile_points_se

    with pytest.raises(DataError, match="must not be negative"):
        percentile_points_se(0.2, -0.05)
    assert percentile_points_se(0.2, 0.05) == pytest.approx(100 * norm.pdf(0.2) * 0.05, rel=1e-12)
