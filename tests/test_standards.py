"""WWC attrition boundaries and baseline-equivalence bands.

Reference: WWC Standards Handbook v4.1, Table II.1 (tests/reference/wwc_attrition_boundaries.csv,
an independent copy of the table the package ships) and section II.D.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pleval import standards
from pleval.errors import DataError


@pytest.fixture(scope="module")
def table(reference_dir):
    return pd.read_csv(reference_dir / "wwc_attrition_boundaries.csv")


def test_shipped_table_matches_reference(table):
    pd.testing.assert_frame_equal(standards.attrition_boundaries(), table, check_dtype=False)


@pytest.mark.parametrize("boundary", standards.BOUNDARIES)
def test_every_row_boundary_is_low_and_just_above_is_high(table, boundary):
    col = table[f"{boundary}_max_differential_pct"]
    for overall_pct, bound in zip(table["overall_attrition_pct"], col):
        overall = overall_pct / 100
        if np.isnan(bound):
            assert standards.attrition_verdict(overall, 0.0, boundary) == "high", overall_pct
            assert np.isnan(standards.max_differential(overall, boundary))
            continue
        assert standards.max_differential(overall, boundary) == pytest.approx(bound / 100)
        assert standards.attrition_verdict(overall, bound / 100, boundary) == "low", overall_pct
        assert standards.attrition_verdict(overall, (bound + 0.01) / 100, boundary) == "high", overall_pct
        assert standards.attrition_verdict(overall, 0.0, boundary) == "low"


def test_cautious_58_and_above_is_high_whatever_the_differential():
    for pct in (58, 60, 65):
        assert standards.attrition_verdict(pct / 100, 0.0, "cautious") == "high"
    assert standards.attrition_verdict(0.57, 0.0, "cautious") == "low"
    assert standards.attrition_verdict(0.57, 0.0001, "cautious") == "high"  # bound 0.0 points


def test_above_65_is_high_under_both():
    assert standards.attrition_verdict(0.65, 0.003, "optimistic") == "low"
    for overall in (0.6501, 0.66, 0.9, 1.0):
        for b in standards.BOUNDARIES:
            assert standards.attrition_verdict(overall, 0.0, b) == "high"


def test_non_integer_overall_uses_the_smaller_neighbouring_bound():
    # cautious 10% -> 6.3, 11% -> 6.2: 10.5% is held to 6.2
    assert standards.max_differential(0.105, "cautious") == pytest.approx(0.062)
    assert standards.attrition_verdict(0.105, 0.062, "cautious") == "low"
    assert standards.attrition_verdict(0.105, 0.0625, "cautious") == "high"
    # rising part of the table: 0% -> 5.7, 1% -> 5.8: 0.5% is held to 5.7
    assert standards.max_differential(0.005, "cautious") == pytest.approx(0.057)
    # next row blank (cautious 58%) or beyond the table (65%+): high
    assert standards.attrition_verdict(0.574, 0.0, "cautious") == "high"
    assert standards.attrition_verdict(0.655, 0.0, "optimistic") == "high"
    assert standards.max_differential(0.574, "optimistic") == pytest.approx(0.019)


def test_attrition_from_counts_on_the_exact_boundary():
    # 2000 per arm, 263 and 137 lost: overall exactly 10%, differential exactly 6.3 points
    a = standards.attrition(2000, 2000, 2000 - 263, 2000 - 137)
    assert a.overall == pytest.approx(0.10)
    assert a.differential == pytest.approx(0.063)
    assert a.verdict_cautious == "low" and a.verdict_optimistic == "low"
    b = standards.attrition(2000, 2000, 2000 - 264, 2000 - 136)  # differential 6.4 points
    assert b.verdict_cautious == "high" and b.verdict_optimistic == "low"
    row = b.to_frame().iloc[0]
    assert row["attrition_treated"] == pytest.approx(264 / 2000)
    assert row["attrition_control"] == pytest.approx(136 / 2000)
    assert "high under the cautious" in b.summary()


def test_the_differential_printed_beside_a_verdict_lies_on_its_side_of_the_bound(table):
    """5000 per arm, 658 and 342 lost: overall 10%, differential 6.32 points, above the cautious
    bound of 6.3 (high) and below the optimistic one. Before 2026-12-04 the summary printed 6.3,
    which reads as on the bound (low); an exact 6.3 stays 6.3."""
    import re

    bound = float(table.loc[table["overall_attrition_pct"] == 10, "cautious_max_differential_pct"].iloc[0])
    diff = abs(658 - 342) / 5000 * 100
    a = standards.attrition(5000, 5000, 5000 - 658, 5000 - 342)
    shown = float(re.search(r"differential ([0-9.]+) points", a.summary()).group(1))
    assert a.verdict_cautious == "high" and diff > bound and shown > bound and abs(shown - diff) < 0.005
    on = standards.attrition(2000, 2000, 2000 - 263, 2000 - 137)  # exactly 6.3: low, one decimal
    assert "differential 6.3 points" in on.summary() and on.verdict_cautious == "low"


def test_the_overall_rate_printed_shows_which_rows_set_the_bound(table):
    """50,000 per arm: 6,577 and 3,427 lost is 10.004% overall, differential 6.3 points, held to
    the smaller of the 10% and 11% rows' cautious bounds (6.3, 6.2): high. Before 2026-12-05 the
    summary printed "overall 10.0%", which reads as the 10% row (6.3: low). Exactly 10% (6,575 and
    3,425 lost) is the 10% row alone: low, printed 10.0."""
    import re

    cautious = table.set_index("overall_attrition_pct")["cautious_max_differential_pct"]
    a = standards.attrition(50000, 50000, 50000 - 6577, 50000 - 3427)
    shown = float(re.search(r"overall ([0-9.]+)%", a.summary()).group(1))
    assert 10 < shown < 11 and abs(shown - 100 * 10004 / 100000) < 5e-4
    assert 100 * a.differential > min(cautious[10], cautious[11]) and a.verdict_cautious == "high"
    assert standards.overall_text(10004 / 100000) == "10.004"
    on = standards.attrition(50000, 50000, 50000 - 6575, 50000 - 3425)
    assert "overall 10.0%, differential 6.3 points" in on.summary() and on.verdict_cautious == "low"
    assert 100 * on.differential == pytest.approx(cautious[10])


def test_a_baseline_g_printed_beside_its_verdict_lies_on_its_side_of_the_band():
    """g = 0.0504 is above the 0.05 band (adjustment needed); "0.050" read as within it."""
    for g in (0.0504, -0.0504, 0.2504, 0.0496, 0.05):
        shown, v = float(standards.g_text(g)), standards.baseline_equivalence(g)
        assert (abs(shown) <= 0.05) == (abs(g) <= 0.05) == (v == "satisfied")
        assert (abs(shown) <= 0.25) == (abs(g) <= 0.25) and abs(shown - g) < 5e-4
    assert standards.g_text(0.05) == "0.050" and standards.g_text(0.0123, signed=True) == "+0.012"


def test_attrition_differential_is_symmetric():
    a = standards.attrition(50, 80, 40, 72)
    b = standards.attrition(80, 50, 72, 40)
    assert a.differential == pytest.approx(b.differential)
    assert a.overall == pytest.approx(b.overall)


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="proportion"):
        standards.attrition_verdict(12, 0.01)
    with pytest.raises(DataError, match="boundary"):
        standards.attrition_verdict(0.1, 0.01, "lenient")
    with pytest.raises(DataError, match="analytic treated"):
        standards.attrition(10, 10, 11, 5)
    with pytest.raises(DataError, match="no randomized control"):
        standards.attrition(10, 0, 5, 0)


def test_baseline_equivalence_bands():
    be = standards.baseline_equivalence
    assert be(0.0) == "satisfied"
    assert be(0.05) == be(-0.05) == "satisfied"
    assert be(0.0501) == "requires statistical adjustment"
    assert be(0.25) == be(-0.25) == "requires statistical adjustment"
    assert be(0.25, adjusted=True) == "satisfied with statistical adjustment"
    assert be(0.25, adjusted=False) == "not satisfied"
    assert be(0.2501) == be(0.2501, adjusted=True) == "not satisfied"
    assert be(np.nan) == "not assessed"
    s = pd.Series([0.01, -0.1, 0.4], index=["a", "b", "c"], name="g")
    out = be(s, adjusted=True)
    assert list(out.index) == ["a", "b", "c"]
    assert list(out) == ["satisfied", "satisfied with statistical adjustment", "not satisfied"]
