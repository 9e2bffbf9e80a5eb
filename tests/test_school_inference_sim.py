"""Simulation study of school-by-school inference with an independent data generator
(tests/_school_sim.py, not pleval.simulate): no program effect, school growth deviations
SD 0.10 in PL and comparison schools alike, PL schools selected on observables. The full-size
study (benchmarks/sim_school_inference.py) is reported in docs/validation.md; here a reduced
run checks that the placebo-calibrated counts hold their error rate while uncalibrated ones do
not, and that the intervals cover their identifiable targets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ._school_sim import generate, replicate
from .conftest import sim_reps


def test_generator_selects_on_observables_with_school_deviations():
    df, truth, par = generate(3, n_pl=15, n_comp=60, delta=0.10)
    assert truth.pl.sum() == 15 and len(truth) == 75
    assert df.groupby("school_id").treatment.nunique().max() == 1  # schools wholly PL or comparison
    pov = df.groupby("school_id").frl.mean()
    pl_schools = truth.loc[truth.pl, "school"]
    assert pov[pov.index.isin(pl_schools)].mean() > pov[~pov.index.isin(pl_schools)].mean()
    assert np.all(truth.loc[~truth.pl, "theta"] == 0) and truth.g.std() > 0.05


@pytest.mark.slow
def test_calibrated_counts_hold_their_error_rate_and_intervals_cover():
    reps = sim_reps(120, minimum=16)
    rows = pd.DataFrame([replicate(500 + r, n_pl=10, n_comp=40, per_school=40, tau=0.0, delta=0.10)
                         for r in range(reps)])
    se_flag = math.sqrt(0.07 * 0.93 / reps)
    assert rows.any_flag.mean() <= 0.07 + 3 * se_flag, rows.any_flag.mean()
    # without the placebo calibration the same data flag schools far more often
    assert rows.any_flag_uncalibrated.mean() > rows.any_flag.mean() + 0.08, rows[["any_flag", "any_flag_uncalibrated"]].mean()
    for col, low in (("school_ci", 0.93), ("cal_ci_program", 0.93)):
        v = rows[col]
        assert v.mean() >= low - 3 * v.std(ddof=1) / math.sqrt(reps) - 0.01, (col, v.mean())
    assert rows.cal_ci_program.mean() <= 0.99
