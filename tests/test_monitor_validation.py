"""Simulation study of effects over time (issue 17's targets): per-year CIs cover the truth at
93–97% when the effect grows 0.05 → 0.10 → 0.15 SD, and the trend test holds its 5% size when
the effect is flat. Reduced size here (PLEVAL_SIM_SCALE); the full-size figures, with their
replications and Monte Carlo SEs, are in docs/validation.md (PLEVAL_SIM_SCALE=1 runs them)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
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


def test_one_pl_school_has_its_students_as_clusters():
    """One PL school: as one cluster its residuals in each period are fitted by that period's
    effect, so its students are the clusters on its side — the SEs and df of the same file with
    each PL student given a school of their own — and a note says so."""
    sim = simulate_panel(seed=3, n_schools=12, n_pl_schools=1, subjects=("math",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = effects_over_time(sim.data, COLS)
        own = sim.data.copy()
        pl = own["treatment"] == 1
        own.loc[pl, "school_id"] = "own-" + own.loc[pl, "student_id"].astype(str)
        b = effects_over_time(own, COLS)
    for name in ("by_year", "by_exposure", "trend", "equity"):
        np.testing.assert_allclose(getattr(a, name)[["se", "df"]], getattr(b, name)[["se", "df"]], rtol=1e-10)
    assert any(n.startswith("[math] one PL school: its students are the clusters") for n in a.notes)
    assert not any("one PL school" in n for n in b.notes)


def _null_panels(n_pl: int, reps: int) -> None:
    """``reps`` panels of 12 schools, ``n_pl`` PL, no program effect: the per-year CIs cover the
    truth and the trend tests hold their size, within 3.3 binomial SEs."""
    cover = n = reject = n_trend = 0
    for r in range(reps):  # a loop over data sets, each a whole analysis
        sim = simulate_panel(seed=r, n_schools=12, n_pl_schools=n_pl, effects=(0.0, 0.0, 0.0), tau=0.0,
                             subjects=("math",))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ot = effects_over_time(sim.data, COLS, equity=False)
        b = ot.by_year.merge(sim.truth.by_year, on=["subject", "time"])
        cover += int(((b["ci_low"] <= b["effect_raw"]) & (b["effect_raw"] <= b["ci_high"])).sum())
        n += len(b)
        reject += int((ot.trend["pvalue"] < 0.05).sum())
        n_trend += len(ot.trend)
    assert cover / n >= 0.95 - 3.3 * np.sqrt(0.95 * 0.05 / n), cover / n
    assert reject / n_trend <= 0.05 + 3.3 * np.sqrt(0.05 * 0.95 / n_trend), reject / n_trend


@pytest.mark.slow
def test_one_pl_school_coverage_and_trend_size(monkeypatch):
    """One PL school among 12, no program effect and no school deviations (the generator's value
    added and yearly shocks set to 0, so every period's truth is 0): per-year CIs cover 0 and the
    trend tests hold their size (150 data sets: 94.3% of 600 CIs, 5.3% of 300 trend tests with the
    exact t reference; with Satterthwaite's t 95.0% and 5.3% (random-effect df), 94.5% and 5.0%
    (independence df); with the school as one cluster 51.8% and 49.3%)."""
    import pleval.monitor.simulate as generator

    monkeypatch.setitem(generator._SD, "va", 0.0)
    monkeypatch.setitem(generator._SD, "shock", 0.0)
    _null_panels(1, sim_reps(150, minimum=30))


@pytest.mark.slow
def test_two_pl_schools_hold_with_the_exact_reference():
    """Two PL schools among 12, no program effect, the generator's school deviations: with the
    exact t reference (the default) the per-year CIs cover and the trend tests hold their size
    (400 data sets: 94.1% of 1,600 CIs, 5.2% of 800 tests; Satterthwaite's t with the school
    random-effect df on the same data 96.9% and 8.5%; docs/monitor.md). 240 data sets at full size."""
    _null_panels(2, sim_reps(240, minimum=40))


def test_two_or_three_pl_schools_get_a_note():
    """Intervals that rest on 2–3 PL clusters get a note (docs/monitor.md); none with 4."""
    for n_pl, noted in ((2, True), (3, True), (4, False)):
        sim = simulate_panel(seed=2, n_schools=12, n_pl_schools=n_pl, subjects=("math",))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ot = effects_over_time(sim.data, COLS, equity=False)
        assert any(n.startswith(f"[math] {n_pl} PL schools: with so few PL clusters") for n in ot.notes) == noted


def _any_school_flagged(seed: int, **design) -> bool:
    """Whether ``monitor``'s school trajectories flag any PL school as diverging in a panel with a
    flat effect and no school deviations (every school's true trajectory is the pooled one):
    the pooled trend and matched rows of ``effects_over_time``, then ``school_trajectories`` as
    ``monitor`` calls it (the equity bands and the exact reference change neither)."""
    import pandas as pd

    from pleval.monitor.schools import school_trajectories

    sim = simulate_panel(seed=seed, effects=(0.1,), tau=0.0, slope_sd=0.0, subjects=("math",), **design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ot = effects_over_time(sim.data, COLS, cohort="pl_year", equity=False, reference="satterthwaite")
    by, ds = ot.by_year, ot._frames["math"]
    trend = ot.trend[ot.trend["per"].str.endswith("(program periods)")]["estimate"].iloc[0]
    st = school_trajectories(ds, outcome=COLS.outcome, treatment=COLS.treatment, grade=COLS.grade,
                             covariates=pd.DataFrame(index=ds.index), pooled_trend=trend,
                             program_periods=list(by.loc[by["program"], "time"]),
                             sd=by.loc[by["program"], "sd"].mean(), subject="math", per="year")
    return st.n_diverging > 0


@pytest.mark.slow
def test_school_trajectories_flag_no_school_at_most_alpha_of_the_time():
    """No school diverges (flat effect 0.10 SD, no school deviations; 12 schools, 6 PL, 40 students
    a grade): the share of panels with any PL school flagged (BH at 0.05) stays within 5% + 3 MC
    SEs. With τ̂²_placebo from 6 placebo slopes plugged in as known and a normal reference (before
    2026-12-05) it was 11.0% of 300 panels (seeds 0–299); with its uncertainty integrated out 1.3%.
    The generator's default design (30 schools, 10 PL): 6.45% before, 2.75% now, of 2,000
    (docs/monitor.md). 300 panels at the default scale, 1,200 at full size."""
    reps = sim_reps(1200, minimum=300)
    flagged = sum(_any_school_flagged(seed, n_schools=12, n_pl_schools=6, students_per_grade=40)
                  for seed in range(reps))
    assert flagged / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps), flagged / reps
