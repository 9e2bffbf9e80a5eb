"""Speed-ups that must not change a number: each fast path against the slow, literal one."""

from __future__ import annotations

import dataclasses

import numpy as np
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
