"""Speed-ups that must not change a number: each fast path against the slow, literal one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pleval.data import SAMPLE_COLUMNS as C
from pleval.data import validate
from pleval.inference import ols
from pleval.matching import match
from pleval.matching.effect import regression_effect
from pleval.simulate import simulate_matched


@pytest.fixture(scope="module")
def tied():
    """Rounded scores: many exact ties, so every tie kept reuses comparison students heavily."""
    df = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=12, seed=3).data
    return match(validate(df, C), C, method="propensity")


@pytest.mark.parametrize("vcov", ["CR2", "CR0", "CR1"])
def test_reused_rows_merged_give_the_same_fit(tied, vcov):
    """Copies of a reused comparison student fitted as one row (weights summed): the same
    coefficient, SE and df as the regression on every copy (CR0/CR2 exactly; CR1 counts rows
    and stays on the copies), and the same SD, to 1e-10."""
    assert np.unique(tied.rows).size < 0.9 * len(tied.rows)  # reuse is real here
    for key, part, des, eff, _ in tied.group_fits("subject", vcov=vcov):
        assert des.rows is not None
        full = ols(des.y, des.X, weights=des.weights, clusters=des.clusters, vcov=vcov, names=list(des.names))
        b, se, df, _ = full.coef(C.treatment)
        assert eff.raw.estimate == pytest.approx(b, rel=1e-10, abs=1e-10)
        assert eff.raw.se == pytest.approx(se, rel=1e-10)
        assert eff.raw.df == pytest.approx(df, rel=1e-10)
        long = regression_effect(part, outcome=C.outcome, treatment=C.treatment, strata=tied.strata, school=C.school,
                                 vcov=vcov, design=dataclasses.replace(des, rows=None))
        assert eff.sd == pytest.approx(long.sd, rel=1e-12)
        assert eff.raw.n_control == long.raw.n_control
        assert eff.effect_size.estimate == pytest.approx(long.effect_size.estimate, rel=1e-10, abs=1e-12)


def test_forest_with_thousands_of_schools_summarizes_the_middle():
    """max_rows: the highest and lowest schools get rows, the rest one summary row; the figure
    height no longer grows with the number of schools and no labels overlap."""
    from pleval import plots

    rng = np.random.default_rng(4)
    k = 3000
    est = rng.normal(0, 0.1, k)
    df = pd.DataFrame({"school": [f"S{i}" for i in range(k)], "estimate": est, "se": np.full(k, 0.05),
                       "pvalue_adj": np.where(np.abs(est) > 0.2, 0.001, 0.5)})
    pooled = {"estimate": 0.0, "ci_low": -0.01, "ci_high": 0.01}
    fig = plots.forest(df, pooled=pooled, max_rows=20)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 20 + 1 + 1  # 20 schools, the summary row, the pooled row
    order = np.argsort(est, kind="stable")
    assert labels[:10] == [f"S{i}" for i in order[:10]] and labels[11:21] == [f"S{i}" for i in order[-10:]]
    mid = est[order[10:-10]]
    n_pos, n_neg = int((mid > 0.2).sum()), int((mid < -0.2).sum())
    assert labels[10] == f"{k - 20:,} schools between ({n_pos:,} sig. +, {n_neg:,} sig. −)"
    boxes = sorted((t.get_window_extent() for t in ax.get_yticklabels()), key=lambda b: b.y0)
    assert all(b.y0 >= a.y1 - 0.5 for a, b in zip(boxes, boxes[1:]))
    small = plots.forest(df.iloc[:20], pooled=pooled, max_rows=20)  # 20 rows: all drawn
    assert len(small.axes[0].get_yticklabels()) == 21
    assert fig.get_size_inches()[1] == pytest.approx(small.get_size_inches()[1] + plots.ROW_INCH)


def test_balance_on_merged_rows_is_the_balance_of_every_copy(tied):
    """MatchResult.balance merges a reused student's copies (weights and squared weights
    summed): the table and the WWC equivalence equal those computed on the long matched sample."""
    from pleval.matching.balance import balance

    merged = tied.balance()
    long = balance(tied.data, tied.matched, C.treatment, tied.variables, C.main_pretest, by=C.subject,
                   categorical=tied.categorical)
    num = long.table.select_dtypes("number").columns
    np.testing.assert_allclose(merged.table[num].to_numpy(float), long.table[num].to_numpy(float), rtol=1e-10, atol=1e-12)
    assert merged.table.drop(columns=num).equals(long.table.drop(columns=num))
    num = long.equivalence.select_dtypes("number").columns
    np.testing.assert_allclose(merged.equivalence[num].to_numpy(float), long.equivalence[num].to_numpy(float),
                               rtol=1e-10)
    assert (merged.equivalence["wwc_baseline_equivalence"] == long.equivalence["wwc_baseline_equivalence"]).all()
