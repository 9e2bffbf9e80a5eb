"""Simulation study of effects over time (issue 17's targets): per-year CIs cover the truth at
93–97% when the effect grows 0.05 → 0.10 → 0.15 SD, and the trend test holds its 5% size when
the effect is flat. Reduced size here (PLEVAL_SIM_SCALE); the full-size figures, with their
replications and Monte Carlo SEs, are in docs/validation.md (PLEVAL_SIM_SCALE=1 runs them)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pleval.data import Columns
from pleval.monitor import effects_over_time, simulate_panel

from .conftest import sim_reps

COLS = Columns(outcome="posttest", treatment="treatment", pretest="pretest", school="school_id",
               student_id="student_id", grade="grade", subject="subject", time="year")


def _study(effects, reps, seed0):
    cover, reject = [], []
    for r in range(seed0, seed0 + reps):
        sim = simulate_panel(seed=r, effects=effects, entrants=False, absence=0.0, move=0.0, subjects=("math",),
                             students_per_grade=10, n_schools=30, n_pl_schools=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ot = effects_over_time(sim.data, COLS, cohort="pl_year", equity=False)
        by = ot.by_year.merge(sim.truth.by_year, on=["subject", "time"])
        prog = by[by["program"]]
        cover.append(((prog["ci_low"] <= prog["effect_raw"]) & (prog["effect_raw"] <= prog["ci_high"])).to_numpy())
        tr = ot.trend[ot.trend["per"].str.endswith("(program periods)")].iloc[0]
        reject.append(tr["pvalue"] < 0.05)
    return np.array(cover), np.array(reject)


@pytest.mark.slow
def test_per_year_coverage_and_trend_size():
    reps = sim_reps(80, minimum=20)
    cover, _ = _study((0.05, 0.10, 0.15), reps, 0)
    n = cover.size
    rate = cover.mean()
    # a binomial band around 95% for this many intervals (wider than the 93–97% target, which the
    # full-size study meets; see docs/validation.md)
    half = 3.3 * np.sqrt(0.95 * 0.05 / n)
    assert 0.95 - half - 0.02 <= rate <= 1.0, (rate, n)
    _, reject_flat = _study((0.10, 0.10, 0.10), reps, 10_000)
    size = reject_flat.mean()
    assert size <= 0.05 + 3.3 * np.sqrt(0.05 * 0.95 / reps), (size, reps)
